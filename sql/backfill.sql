\pset format unaligned
--
-- Backfills: walship.backfill(), walship.cancel_backfill() and
-- walship.backfill_publication(), the walship.backfills queue and who may
-- use them; the output plugin's format_version 2 and backfill_watermarks
-- option; and the READ records backfilled rows are shipped as.
--
-- This instance has no worker (walship is not preloaded), so a queued
-- backfill stays queued; walship.publication is not set, so the SQL
-- functions use the publication named walship.  Backfill ids come from a
-- sequence: the output compares them rather than showing them.
--
\set SHOW_CONTEXT never

-- bf_error() runs a statement and returns its error, with the backfill id
-- given written as <id>: no row if it succeeds.
CREATE FUNCTION bf_error(stmt text, id bigint)
RETURNS TABLE (sqlstate text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
DECLARE
    st  text;
    msg text;
    det text;
    hnt text;
BEGIN
    EXECUTE stmt;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN QUERY SELECT st, regexp_replace(msg, '\m' || id || '\M', '<id>', 'g'),
                        regexp_replace(det, '\m' || id || '\M', '<id>', 'g'),
                        regexp_replace(hnt, '\m' || id || '\M', '<id>', 'g');
END
$$;

CREATE TABLE bf_t (id int PRIMARY KEY, v text);
CREATE TABLE bf_unpub (id int PRIMARY KEY);
CREATE TABLE bf_nopk (a int, b text);
CREATE TABLE bf_nothing (id int PRIMARY KEY);
ALTER TABLE bf_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE bf_full (a int, b text);
ALTER TABLE bf_full REPLICA IDENTITY FULL;
CREATE TABLE bf_full_pk (id int PRIMARY KEY, b text);
ALTER TABLE bf_full_pk REPLICA IDENTITY FULL;
CREATE TABLE bf_idx (a int NOT NULL, b text);
CREATE UNIQUE INDEX bf_idx_a ON bf_idx (a);
ALTER TABLE bf_idx REPLICA IDENTITY USING INDEX bf_idx_a;
CREATE TABLE bf_ops (id int PRIMARY KEY);
CREATE TABLE bf_parts (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE bf_parts_1 PARTITION OF bf_parts FOR VALUES FROM (0) TO (100);
CREATE TABLE bf_parts_2 PARTITION OF bf_parts FOR VALUES FROM (100) TO (200);
CREATE VIEW bf_v AS SELECT * FROM bf_t;
CREATE SEQUENCE bf_seq;
CREATE PUBLICATION walship FOR TABLE bf_t, bf_nopk, bf_nothing, bf_full,
    bf_full_pk, bf_idx, bf_ops, bf_parts;

--
-- Queueing and cancelling
--
SELECT walship.backfill('bf_t') AS t_job \gset
SELECT id = :t_job AS same_id, relation = 'bf_t'::regclass AS relation_ok,
       schema_name, table_name, state, chunk_size, condition,
       queued_by = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS queued_by_me,
       chunks_done, rows_sent, last_key, error,
       queued_at <= now() AS queued_at_ok, updated_at = queued_at AS updated_at_ok,
       started_at, finished_at
  FROM walship.backfills WHERE relation = 'bf_t'::regclass;
-- one backfill per table at a time; the hint names the one in progress
SELECT * FROM bf_error($$SELECT walship.backfill('bf_t', 50)$$, :t_job);
SELECT * FROM bf_error($$SELECT walship.backfill('public.bf_t', 50, 'id > 1')$$, :t_job);
-- the index enforces it for rows inserted directly too (the detail, left
-- out, names the table's OID)
\set VERBOSITY terse
INSERT INTO walship.backfills (relation, schema_name, table_name, chunk_size)
VALUES ('bf_t'::regclass, 'public', 'bf_t', 10);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
-- cancelling: true once, then false
SELECT walship.cancel_backfill(:t_job) AS cancelled;
SELECT state, finished_at IS NOT NULL AS finished, finished_at >= queued_at AS after_queued,
       updated_at = finished_at AS updated
  FROM walship.backfills WHERE id = :t_job;
SELECT walship.cancel_backfill(:t_job) AS cancelled_again;
SELECT walship.cancel_backfill(-1) AS unknown_id,
       walship.cancel_backfill(:t_job + 1000000) AS unknown_id_2;
SELECT state FROM walship.backfills WHERE id = :t_job;
-- after the cancel, the table can be backfilled again, with a chunk size
-- and a condition
SELECT walship.backfill('bf_t', 500, 'id > 10 AND v IS NOT NULL') AS t_job2 \gset
SELECT id > :t_job AS new_id, table_name, state, chunk_size, condition
  FROM walship.backfills WHERE id = :t_job2;
SELECT table_name, state, count(*)
  FROM walship.backfills WHERE relation = 'bf_t'::regclass
 GROUP BY 1, 2 ORDER BY 1, 2;

--
-- Tables that cannot be backfilled, and some that can
--
-- not in the publication
SELECT walship.backfill('bf_unpub');
\echo :LAST_ERROR_SQLSTATE
-- no key to read in order by
SELECT walship.backfill('bf_nopk');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_nothing');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_full');
\echo :LAST_ERROR_SQLSTATE
-- REPLICA IDENTITY FULL with a primary key, and USING INDEX without one,
-- are fine (chunk sizes at both ends of the range)
SELECT walship.backfill('bf_full_pk', 1000000) > :t_job2 AS queued;
SELECT walship.backfill('bf_idx', 1) > :t_job2 AS queued;
SELECT table_name, state, chunk_size FROM walship.backfills
 WHERE relation IN ('bf_full_pk'::regclass, 'bf_idx'::regclass) ORDER BY 1;
-- not tables
SELECT walship.backfill('bf_v');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_seq');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_no_such_table');
-- chunk sizes out of range
SELECT walship.backfill('bf_ops', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_ops', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_ops', 2000000);
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_ops', -5);
\echo :LAST_ERROR_SQLSTATE
-- conditions are checked against the table when queued
SELECT walship.backfill('bf_ops', 10, 'id >');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_ops', 10, 'nope = 1');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_ops', 10, 'id = ''x''');
\echo :LAST_ERROR_SQLSTATE
-- a condition is one expression: it cannot slip out of its parentheses,
-- hold a second statement, or comment out the rest of the chunk query
SELECT walship.backfill('bf_ops', 10, 'false) OR (true');
SELECT walship.backfill('bf_ops', 10, 'id > 0)');
SELECT walship.backfill('bf_ops', 10, '(id > 0');
SELECT walship.backfill('bf_ops', 10, 'true; SELECT 1');
SELECT walship.backfill('bf_ops', 10, 'id > 0 /* open');
SELECT walship.check_backfill_condition('id IN (1, 2) AND v = '')'' AND a[1] = 2');
SELECT walship.check_backfill_condition('id > 0 -- a comment');
-- none of these queued anything
SELECT count(*) AS queued_for_errors FROM walship.backfills
 WHERE relation IN ('bf_unpub'::regclass, 'bf_nopk'::regclass, 'bf_nothing'::regclass,
                    'bf_full'::regclass, 'bf_v'::regclass, 'bf_seq'::regclass,
                    'bf_ops'::regclass);

-- A partitioned table whose partitions are published one by one: each
-- partition can be backfilled, the partitioned table cannot.
SELECT walship.backfill('bf_parts');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.backfill('bf_parts_1') > :t_job2 AS queued;
SELECT walship.cancel_backfill(id) AS cancelled FROM walship.backfills
 WHERE relation = 'bf_parts_1'::regclass AND state = 'queued';
-- with publish_via_partition_root the partitioned table is published
-- itself, and its partitions no longer are
ALTER PUBLICATION walship SET (publish_via_partition_root = true);
SELECT walship.backfill('bf_parts', 100) > :t_job2 AS queued;
SELECT walship.backfill('bf_parts_2');
\echo :LAST_ERROR_SQLSTATE
SELECT table_name, state, chunk_size FROM walship.backfills
 WHERE relation IN ('bf_parts'::regclass, 'bf_parts_1'::regclass, 'bf_parts_2'::regclass)
 ORDER BY id;

--
-- Who may queue backfills
--
CREATE ROLE bf_plain;
CREATE ROLE bf_op IN ROLE walship_admin;
SELECT r.rolname, f.fn, has_function_privilege(r.rolname, f.fn, 'EXECUTE') AS can_execute
  FROM (VALUES ('bf_plain'), ('bf_op')) r(rolname),
       (VALUES ('walship.backfill(regclass,integer,text)'),
               ('walship.cancel_backfill(bigint)'),
               ('walship.backfill_publication(integer)')) f(fn)
 ORDER BY 1, 2;
-- without walship_admin: no function, no direct insert, no reading
SET ROLE bf_plain;
SELECT walship.backfill('bf_ops');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.cancel_backfill(:t_job2);
SELECT walship.backfill_publication();
INSERT INTO walship.backfills (relation, schema_name, table_name, chunk_size)
VALUES ('bf_ops'::regclass, 'public', 'bf_ops', 10);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM walship.backfills;
RESET ROLE;
-- walship_admin without SELECT on the table: the worker would read it as
-- this role
SET ROLE bf_op;
SELECT walship.backfill('bf_ops');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT ON bf_ops TO bf_op;
SET ROLE bf_op;
SELECT walship.backfill('bf_ops', 20) AS ops_job \gset
SELECT table_name, state, chunk_size, queued_by::regrole FROM walship.backfills
 WHERE id = :ops_job;
SELECT walship.cancel_backfill(:ops_job) AS cancelled;
-- a direct insert cannot name the role, state or progress ...
INSERT INTO walship.backfills (relation, schema_name, table_name, chunk_size, queued_by)
VALUES ('bf_ops'::regclass, 'public', 'bf_ops', 30, 'bf_plain'::regrole);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO walship.backfills (relation, schema_name, table_name, chunk_size, state)
VALUES ('bf_ops'::regclass, 'public', 'bf_ops', 30, 'done');
-- no walship_admin member may change a backfill but through the functions
UPDATE walship.backfills SET state = 'queued' WHERE id = :ops_job;
\echo :LAST_ERROR_SQLSTATE
-- ... and is queued as the role that inserts it
INSERT INTO walship.backfills (relation, schema_name, table_name, chunk_size)
VALUES ('bf_ops'::regclass, 'public', 'bf_ops', 30)
RETURNING id > :ops_job AS new_id, state, queued_by::regrole;
RESET ROLE;
-- the trigger overrides even what a superuser writes
INSERT INTO walship.backfills (relation, schema_name, table_name, chunk_size,
                               queued_by, state, chunks_done, rows_sent, last_key,
                               error, started_at, finished_at)
VALUES ('bf_nopk'::regclass, 'public', 'bf_nopk', 40, 'bf_plain'::regrole, 'done',
        7, 70, '{7}', 'forged', now(), now())
RETURNING queued_by = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS queued_by_me,
          state, chunks_done, rows_sent, last_key, error, started_at, finished_at;
DELETE FROM walship.backfills WHERE relation = 'bf_nopk'::regclass;

--
-- walship.backfill_publication()
--
-- cancel all but bf_t's and bf_ops's
SELECT count(*) FILTER (WHERE walship.cancel_backfill(id)) AS cancelled
  FROM walship.backfills
 WHERE state = 'queued' AND relation NOT IN ('bf_t'::regclass, 'bf_ops'::regclass);
SELECT table_name, chunk_size FROM walship.backfills WHERE state = 'queued' ORDER BY 1;
-- every published table with a key and no backfill in progress, with a
-- warning for those without a key
CREATE TABLE bf_pub_ids AS SELECT id FROM walship.backfill_publication(250) AS id;
SELECT b.table_name, b.state, b.chunk_size FROM bf_pub_ids JOIN walship.backfills b USING (id)
 ORDER BY b.table_name;
-- the ids returned are the backfills queued, all of them
SELECT count(*) AS returned, count(DISTINCT id) AS distinct_ids,
       (SELECT count(*) FROM walship.backfills WHERE chunk_size = 250) AS queued_with_250
  FROM bf_pub_ids;
-- again: every table is queued already
SELECT count(*) AS returned FROM walship.backfill_publication();
SELECT table_name, chunk_size FROM walship.backfills WHERE state = 'queued' ORDER BY 1;
SELECT walship.cancel_backfill(id) FROM bf_pub_ids;
-- an invalid chunk size is an error
SELECT count(*) FROM walship.backfill_publication(0);
\echo :LAST_ERROR_SQLSTATE
-- a walship_admin member may run it too; the tables the role may not read
-- are skipped with a warning
SET ROLE bf_op;
SELECT count(*) FROM walship.backfill_publication();
RESET ROLE;
SELECT count(*) AS queued FROM walship.backfills WHERE state = 'queued';

--
-- The output plugin
--
SELECT 'init' FROM pg_create_logical_replication_slot('bf_slot', 'walship');
INSERT INTO bf_t VALUES (1, 'one');
-- BEGIN records carry the format version asked for: 1 by default, or 2
SELECT walship.decode(data)->>'kind' AS kind, walship.decode(data)->'format_version' AS format_version
  FROM pg_logical_slot_peek_binary_changes('bf_slot', NULL, NULL,
         'publication_names', 'walship') WITH ORDINALITY AS c(lsn, xid, data, n)
 WHERE n = 1;
SELECT walship.decode(data)->>'kind' AS kind, walship.decode(data)->'format_version' AS format_version
  FROM pg_logical_slot_peek_binary_changes('bf_slot', NULL, NULL,
         'publication_names', 'walship', 'format_version', '2') WITH ORDINALITY AS c(lsn, xid, data, n)
 WHERE n = 1;
SELECT * FROM changes('bf_slot', 'publication_names', 'walship', 'format_version', '2');

-- backfill_watermarks: a Boolean
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bf_slot', NULL, NULL,
    'publication_names', 'walship', 'backfill_watermarks', 'maybe');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bf_slot', NULL, NULL,
    'publication_names', 'walship', 'backfill_watermarks', '');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bf_slot', NULL, NULL,
    'publication_names', 'walship', 'backfill_watermarks', 'on', 'backfill_watermarks', 'on');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bf_slot', NULL, NULL,
    'publication_names', 'walship', 'backfill_watermarks', 'true');

-- With backfill_watermarks, non-transactional messages with the watermark
-- prefix are emitted whatever the messages option says; other messages,
-- and transactional ones with that prefix, are not.
SELECT 'emitted' FROM pg_logical_emit_message(false, 'walship.watermark', 'low 1');
SELECT 'emitted' FROM pg_logical_emit_message(false, 'bf_other', 'low 1');
SELECT 'emitted' FROM pg_logical_emit_message(true, 'walship.watermark', 'transactional');
SELECT 'emitted' FROM pg_logical_emit_message(false, 'walship.watermarks', 'low 2');
SELECT 'emitted' FROM pg_logical_emit_message(false, 'walship.watermark', 'high 1');
-- (the commit of this change flushes the non-transactional messages)
INSERT INTO bf_t VALUES (2, 'two');
CREATE FUNCTION bf_peek(VARIADIC options text[])
RETURNS SETOF jsonb
LANGUAGE sql AS $$
SELECT stable_json(r)
  FROM walship.decode_stream(
         (SELECT coalesce(string_agg(c.data, ''::bytea ORDER BY c.n), ''::bytea)
            FROM pg_logical_slot_peek_binary_changes('bf_slot', NULL, NULL,
                   VARIADIC '{publication_names,walship,format_version,2}'::text[] || options)
                 WITH ORDINALITY AS c(lsn, xid, data, n))) AS r
$$;
SELECT r, convert_from(decode(substr(r->>'content', 3), 'hex'), 'UTF8') AS content
  FROM bf_peek('backfill_watermarks', 'on') AS r;
SELECT r->>'prefix' AS prefix, convert_from(decode(substr(r->>'content', 3), 'hex'), 'UTF8') AS content
  FROM bf_peek('backfill_watermarks', 'on', 'messages', 'off') AS r
 WHERE r->>'kind' = 'message';
-- without it (the default), none
SELECT count(*) AS messages FROM bf_peek('backfill_watermarks', 'off') AS r
 WHERE r->>'kind' = 'message';
SELECT count(*) AS messages FROM bf_peek(VARIADIC '{}') AS r
 WHERE r->>'kind' = 'message';
-- with messages, all of them
SELECT r->>'prefix' AS prefix, convert_from(decode(substr(r->>'content', 3), 'hex'), 'UTF8') AS content,
       r->'transactional' AS transactional
  FROM bf_peek('messages', 'on') AS r
 WHERE r->>'kind' = 'message';
SELECT r->>'prefix' AS prefix, convert_from(decode(substr(r->>'content', 3), 'hex'), 'UTF8') AS content,
       r->'transactional' AS transactional
  FROM bf_peek('messages', 'on', 'backfill_watermarks', 'on') AS r
 WHERE r->>'kind' = 'message';
SELECT pg_drop_replication_slot('bf_slot');

--
-- READ records, crafted with the wire_*() helpers of setup.sql.
--
CREATE FUNCTION bf_str(s text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT wire_uv(octet_length(s)) || convert_to(s, 'UTF8')
$$;
-- a column of a RELATION record: flags, name, type OID, typmod, type name
CREATE FUNCTION bf_col(flags int, name text, type_oid int, type_name text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT set_byte('\x00'::bytea, 0, flags) || bf_str(name) || wire_uv(type_oid) || wire_sv(-1)
       || bf_str(type_name)
$$;
-- the RELATION record of a backfill: relation id 2^32 + 7, OID 16384,
-- public.bf_r (id integer key, v text, at timestamptz), identity default
CREATE FUNCTION bf_relation() RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT wire_rec('R', wire_uv(4294967303) || wire_uv(16384) || bf_str('public') || bf_str('bf_r')
                   || 'd'::bytea || wire_uv(3)
                   || bf_col(7, 'id', 23, 'integer') || bf_col(0, 'v', 25, 'text')
                   || bf_col(0, 'at', 1184, 'timestamp with time zone'))
$$;
-- the body of a READ record of that relation: ordinal, id and v, at
-- position (the high watermark) 0/3000028, read at
-- 2024-05-06 07:08:09.123456 UTC, with version (the low watermark) 0/3000000
CREATE FUNCTION bf_read_body(ordinal int, id int, v text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT wire_uv(4294967303) || wire_uv(ordinal) || wire_le64(x'3000028'::bigint)
       || wire_sv(extract(epoch FROM timestamptz '2024-05-06 07:08:09.123456+00') * 1000000)
       || wire_uv(3) || 'i'::bytea || wire_sv(id)
       || CASE WHEN v IS NULL THEN 'n'::bytea ELSE 's'::bytea || bf_str(v) END
       || 'Z'::bytea || wire_sv(extract(epoch FROM timestamptz '2024-01-01 00:00:00+00') * 1000000)
       || wire_uv(x'3000000'::bigint)
$$;
CREATE TABLE bf_stream AS
SELECT bf_relation() || wire_rec('S', bf_read_body(1, 1, 'one'))
       || wire_rec('S', bf_read_body(2, 2, NULL)) AS s;

SELECT wire_rec('S', bf_read_body(1, 1, 'one')) AS read_record;
-- decode() alone: values by position
SELECT walship.decode(wire_rec('S', bf_read_body(1, 1, 'one')));
-- decode_stream(): with names
SELECT r FROM bf_stream, walship.decode_stream(s) AS r;
-- as the shipping worker sends them
SELECT walship.encode_ndjson(s) FROM bf_stream;
SELECT walship.encode_ndjson(s, 'flat') FROM bf_stream;
SELECT walship.encode_ndjson(s, 'flat', 'clickhouse_18') FROM bf_stream;
-- _lsn is the position, _version the version
SELECT (line::jsonb->>'_lsn')::numeric = x'3000028'::bigint AS lsn_is_position,
       (line::jsonb->>'_version')::numeric = x'3000000'::bigint AS version_is_version
  FROM bf_stream, regexp_split_to_table(rtrim(walship.encode_ndjson(s, 'flat'), E'\n'), E'\n') AS line;
-- a READ record of a relation the stream has not described
SELECT walship.encode_ndjson(wire_rec('S', bf_read_body(1, 1, 'one')));
\echo :LAST_ERROR_SQLSTATE

-- Truncated by one byte: the record, or its body in a record of that
-- length.
SELECT walship.decode(substr(r, 1, length(r) - 1))
  FROM wire_rec('S', bf_read_body(1, 1, 'one')) AS r;
\echo :LAST_ERROR_SQLSTATE
SELECT walship.decode(wire_rec('S', substr(b, 1, length(b) - 1)))
  FROM bf_read_body(1, 1, 'one') AS b;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM bf_stream, walship.decode_stream(substr(s, 1, length(s) - 1));
\echo :LAST_ERROR_SQLSTATE
SELECT walship.encode_ndjson(substr(s, 1, length(s) - 1)) FROM bf_stream;
\echo :LAST_ERROR_SQLSTATE
-- every truncation of the READ record fails; in the stream, every one but
-- the one that ends after the first READ record
SELECT coalesce(e.sqlstate, 'ok') AS outcome, count(*) AS truncations, min(k), max(k)
  FROM wire_rec('S', bf_read_body(1, 1, 'one')) AS r, generate_series(0, length(r) - 1) AS k
       LEFT JOIN LATERAL bf_error(format('SELECT walship.decode(%L::bytea)', substr(r, 1, k)), 0) AS e ON true
 GROUP BY 1 ORDER BY 1;
SELECT coalesce(e.sqlstate, 'ok') AS outcome, count(*) AS truncations,
       min(k - length(bf_relation())), max(k - length(bf_relation()))
  FROM bf_stream, generate_series(length(bf_relation()) + 1, length(s) - 1) AS k
       LEFT JOIN LATERAL bf_error(format('SELECT count(*) FROM walship.decode_stream(%L::bytea)', substr(s, 1, k)), 0) AS e ON true
 GROUP BY 1 ORDER BY 1;

DELETE FROM walship.backfills WHERE table_name LIKE 'bf\_%';
DROP FUNCTION bf_error(text, bigint), bf_peek(text[]),
    bf_str(text), bf_col(int, text, int, text),
    bf_relation(), bf_read_body(int, int, text);
DROP TABLE bf_stream, bf_pub_ids;
DROP PUBLICATION walship;
DROP VIEW bf_v;
DROP SEQUENCE bf_seq;
DROP TABLE bf_t, bf_unpub, bf_nopk, bf_nothing, bf_full, bf_full_pk, bf_idx,
    bf_ops, bf_parts;
DROP ROLE bf_plain, bf_op;
