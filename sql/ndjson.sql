\pset format unaligned
--
-- walship.encode_ndjson(): the NDJSON lines the shipping worker sends, in
-- the envelope and flat shapes (docs/format.md, "NDJSON encoding").
--
-- The lines are shown as text, so key order and spacing are checked, with
-- the values that vary by run replaced by placeholders (LSN, XID, TS).  The
-- replacements only match values of the documented form, and ok checks the
-- replaced values against the BEGIN record of the change's transaction as
-- walship.decode_stream() renders it.
--
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';

CREATE TABLE ndjson_t (id int PRIMARY KEY, name text, qty numeric);
CREATE TABLE ndjson_t2 (id serial PRIMARY KEY, v text);
CREATE TABLE ndjson_full (id int, name text, note text);
ALTER TABLE ndjson_full REPLICA IDENTITY FULL;
CREATE TABLE ndjson_toast (id int PRIMARY KEY, note text, big text);
ALTER TABLE ndjson_toast ALTER big SET STORAGE EXTERNAL;
CREATE TABLE ndjson_toast_full (id int PRIMARY KEY, note text, big text);
ALTER TABLE ndjson_toast_full ALTER big SET STORAGE EXTERNAL;
ALTER TABLE ndjson_toast_full REPLICA IDENTITY FULL;
CREATE TABLE ndjson_types (
    id int PRIMARY KEY, i2 int2, i8 int8, n numeric, f4 float4, f8 float8,
    b bool, t text, vc varchar(10), ba bytea, j json, jb jsonb, u uuid,
    d date, tm time, ts timestamp, tstz timestamptz, iv interval,
    ai int[], at text[], ip inet, nul text);
-- FULL with a primary key: the key is the primary key.
CREATE TABLE ndjson_full_pk (id int PRIMARY KEY, name text);
ALTER TABLE ndjson_full_pk REPLICA IDENTITY FULL;
-- every value family the clickhouse dialect writes differently
CREATE TABLE ndjson_ch (
    id int PRIMARY KEY, ts timestamp, tstz timestamptz, d date, ba bytea,
    j json, jb jsonb, n numeric, f8 float8, t text, u uuid, tm time,
    iv interval, ai int[], ats timestamp[], atz timestamptz[], ad date[],
    aba bytea[], ajb jsonb[], an numeric[]);
CREATE PUBLICATION ndjson_pub FOR TABLE ndjson_t, ndjson_t2, ndjson_full,
    ndjson_toast, ndjson_toast_full, ndjson_types, ndjson_full_pk, ndjson_ch;
SELECT 'init' FROM pg_create_logical_replication_slot('ndjson_slot', 'walship');

-- The slot's output, one row per record, by batch name.
CREATE TABLE ndjson_rows (batch text, n bigint, data bytea,
    PRIMARY KEY (batch, n));
CREATE FUNCTION ndjson_take(batch text) RETURNS bigint
LANGUAGE sql AS $$
INSERT INTO ndjson_rows
SELECT batch, c.n, c.data
  FROM pg_logical_slot_get_binary_changes('ndjson_slot', NULL, NULL,
         'publication_names', 'ndjson_pub', 'messages', 'true')
       WITH ORDINALITY AS c(lsn, xid, data, n);
SELECT count(*) FROM ndjson_rows WHERE ndjson_rows.batch = ndjson_take.batch;
$$;
-- A batch's records, concatenated.
CREATE FUNCTION ndjson_batch(batch text) RETURNS bytea
LANGUAGE sql AS $$
SELECT coalesce(string_agg(data, ''::bytea ORDER BY n), ''::bytea)
  FROM ndjson_rows WHERE ndjson_rows.batch = ndjson_batch.batch
$$;
-- The lines of a batch, volatile values replaced, and whether those are
-- the commit LSN, xid and commit time of the transaction that has a change
-- with the line's ordinal (from the BEGIN records), and in the flat shape
-- the change LSN of that change (_version; TRUNCATE lines have none).
CREATE FUNCTION ndjson_show(batch text, shape text DEFAULT 'envelope',
                            dialect text DEFAULT 'standard')
RETURNS TABLE (line text, ok boolean)
LANGUAGE sql AS $$
WITH b AS (
  SELECT r->>'commit_lsn' AS lsn, (r->>'xid')::bigint AS xid,
         r->>'commit_time' AS ts
    FROM walship.decode_stream(ndjson_batch(batch)) AS r
   WHERE r->>'kind' = 'begin'),
c AS (
  SELECT r->>'commit_lsn' AS lsn, (r->>'ordinal')::bigint AS ordinal,
         r->>'lsn' AS change_lsn
    FROM walship.decode_stream(ndjson_batch(batch)) AS r
   WHERE r->>'kind' IN ('insert', 'update', 'delete', 'truncate')),
l AS (
  SELECT x.t, x.n, x.t::jsonb AS j
    FROM regexp_split_to_table(walship.encode_ndjson(ndjson_batch(batch), shape,
                                                     dialect),
                               E'\n') WITH ORDINALITY AS x(t, n)
   WHERE x.t <> '')
SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(
       regexp_replace(regexp_replace(regexp_replace(regexp_replace(l.t,
         '"commit_lsn": "[0-9A-F]{1,8}/[0-9A-F]{1,8}"', '"commit_lsn": "LSN"', 'g'),
         '"xid": [0-9]+', '"xid": XID', 'g'),
         '"(_?commit_ts)": "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?\+00:00"',
         '"\1": "TS"', 'g'),
         '"_commit_ts": [0-9]+', '"_commit_ts": TS', 'g'),
         '"id": "[0-9A-F]{16}-([0-9]+)"', '"id": "LSN-\1"', 'g'),
         '"_lsn": [0-9]+', '"_lsn": LSN', 'g'),
         '"_version": [0-9]+', '"_version": V', 'g'),
         '(x{100}){30}', 'x*3000', 'g'),
       EXISTS (SELECT 1 FROM b JOIN c USING (lsn) WHERE
         CASE WHEN shape = 'envelope' THEN
           l.j->'source'->>'commit_lsn' = b.lsn
           AND (l.j->'source'->>'ordinal')::bigint = c.ordinal
           AND (l.j->'source'->>'xid')::bigint = b.xid
           AND l.j->'source'->>'commit_ts' = b.ts
           AND l.j->>'id' = lpad(split_part(b.lsn, '/', 1), 8, '0')
                            || lpad(split_part(b.lsn, '/', 2), 8, '0')
                            || '-' || c.ordinal
         ELSE
           (l.j->>'_lsn')::numeric = (b.lsn::pg_lsn - '0/0'::pg_lsn)::numeric
           AND (l.j->>'_seq')::bigint = c.ordinal
           AND CASE WHEN dialect = 'clickhouse_18'  -- integer microseconds
                    THEN (l.j->>'_commit_ts')::numeric
                         = extract(epoch FROM b.ts::timestamptz) * 1000000
                    ELSE l.j->>'_commit_ts' = b.ts END
           AND CASE WHEN l.j->>'_op' = 't' THEN NOT l.j ? '_version'
                    ELSE (l.j->>'_version')::numeric
                         = (c.change_lsn::pg_lsn - '0/0'::pg_lsn)::numeric END
         END)
  FROM l ORDER BY l.n
$$;
-- The flat lines' _version against the changes' LSNs in decode_stream():
-- equal, and increasing with _seq within a transaction; the delete line of
-- a key change has its update's _seq and _version.
CREATE FUNCTION ndjson_versions(batch text)
RETURNS TABLE (lines bigint, same_as_change_lsn boolean, increasing boolean)
LANGUAGE sql AS $$
WITH c AS (
  SELECT r->>'commit_lsn' AS lsn, (r->>'ordinal')::bigint AS ordinal,
         ((r->>'lsn')::pg_lsn - '0/0'::pg_lsn)::numeric AS version
    FROM walship.decode_stream(ndjson_batch(batch)) AS r
   WHERE r->>'kind' IN ('insert', 'update', 'delete')),
l AS (
  SELECT x.n, (x.t::jsonb->>'_lsn')::numeric AS lsn,
         (x.t::jsonb->>'_seq')::bigint AS seq,
         (x.t::jsonb->>'_version')::numeric AS version
    FROM regexp_split_to_table(walship.encode_ndjson(ndjson_batch(batch), 'flat'),
                               E'\n') WITH ORDINALITY AS x(t, n)
   WHERE x.t <> '' AND x.t::jsonb->>'_op' <> 't'),
w AS (
  SELECT l.*, lag(seq) OVER (PARTITION BY lsn ORDER BY n) AS prev_seq,
         lag(version) OVER (PARTITION BY lsn ORDER BY n) AS prev_version
    FROM l)
SELECT count(*),
       bool_and(EXISTS (SELECT 1 FROM c
                         WHERE (c.lsn::pg_lsn - '0/0'::pg_lsn)::numeric = w.lsn
                           AND c.ordinal = w.seq AND c.version = w.version)),
       bool_and(prev_seq IS NULL
                OR (seq > prev_seq AND version > prev_version)
                OR (seq = prev_seq AND version = prev_version))
  FROM w
$$;

-- Inserts, an update, a key change, a delete, in two transactions, and a
-- transactional message (no line; it takes ordinal 3 of the second one).
BEGIN;
INSERT INTO ndjson_t VALUES (1, 'one', 1.50), (2, 'two', NULL);
COMMIT;
BEGIN;
UPDATE ndjson_t SET name = 'uno' WHERE id = 1;
UPDATE ndjson_t SET id = 20 WHERE id = 2;
SELECT 'msg' FROM pg_logical_emit_message(true, 'ndjson', 'hello');
DELETE FROM ndjson_t WHERE id = 1;
COMMIT;
SELECT ndjson_take('dml');
SELECT * FROM ndjson_show('dml');
SELECT * FROM ndjson_show('dml', 'flat');
SELECT * FROM ndjson_versions('dml');
-- the default shape is envelope; every line ends in a newline
SELECT walship.encode_ndjson(ndjson_batch('dml'))
       = walship.encode_ndjson(ndjson_batch('dml'), 'envelope') AS same,
       right(walship.encode_ndjson(ndjson_batch('dml'), 'flat'), 1) = E'\n' AS nl,
       length(walship.encode_ndjson(ndjson_batch('dml'), 'flat'))
       - length(replace(walship.encode_ndjson(ndjson_batch('dml'), 'flat'), E'\n', '')) AS lines;
-- pg_recvlogical's newline after each record is skipped
SELECT walship.encode_ndjson(string_agg(data || '\x0a'::bytea, ''::bytea ORDER BY n), 'flat')
       = walship.encode_ndjson(ndjson_batch('dml'), 'flat') AS same
  FROM ndjson_rows WHERE batch = 'dml';

-- REPLICA IDENTITY FULL: before is the whole old row; a flat delete
-- carries it too.  Without a primary key the whole row is the key, so the
-- flat UPDATE is a delete of the old row, then the new row.
INSERT INTO ndjson_full VALUES (1, 'a', 'first');
UPDATE ndjson_full SET note = 'second' WHERE id = 1;
DELETE FROM ndjson_full WHERE id = 1;
SELECT ndjson_take('full');
SELECT * FROM ndjson_show('full');
SELECT * FROM ndjson_show('full', 'flat');
SELECT * FROM ndjson_versions('full');

-- An UPDATE that changes the key gives two flat lines: a delete of the old
-- key, then the update (REPLICA IDENTITY DEFAULT: the dml batch above).
-- Under FULL with a primary key, the key is the primary key: an UPDATE of
-- another column gives one line, one of the primary key two, the delete
-- line holding the whole old row.
INSERT INTO ndjson_full_pk VALUES (1, 'a');
UPDATE ndjson_full_pk SET name = 'b' WHERE id = 1;
UPDATE ndjson_full_pk SET id = 2 WHERE id = 1;
UPDATE ndjson_full_pk SET id = 3, name = 'c' WHERE id = 2;
SELECT ndjson_take('keys');
SELECT * FROM ndjson_show('keys');
SELECT * FROM ndjson_show('keys', 'flat');
SELECT * FROM ndjson_versions('keys');

-- Unchanged TOAST values.  Without a full old row the column is left out
-- and listed; with one (REPLICA IDENTITY FULL) its old value is sent.
INSERT INTO ndjson_toast VALUES (1, 'a', repeat('x', 3000));
INSERT INTO ndjson_toast_full VALUES (1, 'a', repeat('x', 3000));
UPDATE ndjson_toast SET note = 'b' WHERE id = 1;
UPDATE ndjson_toast_full SET note = 'b' WHERE id = 1;
DELETE FROM ndjson_toast WHERE id = 1;
SELECT ndjson_take('toast');
-- the records: u in the first update's new row, and in the second's
SELECT r->>'kind' AS kind, r->>'relation' AS relation,
       r->'new'->'big' AS new_big, length(r->'old'->>'big') AS old_big
  FROM walship.decode_stream(ndjson_batch('toast')) AS r
 WHERE r->>'kind' = 'update';
SELECT * FROM ndjson_show('toast');
SELECT * FROM ndjson_show('toast', 'flat');
SELECT * FROM ndjson_versions('toast');

-- TRUNCATE of two tables: one line per table, with the same change id.
INSERT INTO ndjson_t2 (v) VALUES ('x');
TRUNCATE ndjson_t, ndjson_t2 RESTART IDENTITY CASCADE;
TRUNCATE ndjson_t2;
SELECT ndjson_take('truncate');
SELECT * FROM ndjson_show('truncate');
SELECT * FROM ndjson_show('truncate', 'flat');

-- Values of many types, rendered as walship.decode_stream() renders them.
-- The json value's line breaks become spaces: a line stays one line.
INSERT INTO ndjson_types VALUES
    (1, -32768, 9223372036854775807, '-12.50', 'NaN', 0.1,
     true, E'quote " backslash \\ newline \n tab \t é 漢字 😀', 'vc',
     '\x00ff'::bytea, E'{"a":\n [1, 2.50],\r\n "b": "x\\ny"}', '{"k": [1, {"z": null}]}',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '2024-02-29', '12:34:56.789', '1969-12-31 23:59:59.5',
     '2024-01-01 12:00+01', '1 day 02:03:04', '{1,NULL,3}', '{"a b",c}',
     '192.168.0.1/24', NULL),
    (2, NULL, NULL, 'Infinity', '-Infinity', 'Infinity', false, '', NULL,
     '\x'::bytea, 'null', '[]', NULL, 'infinity', '00:00', '-infinity',
     'infinity', NULL, '{}', '{{a,b},{c,d}}', NULL, NULL);
SELECT ndjson_take('types');
SELECT * FROM ndjson_show('types');
SELECT * FROM ndjson_show('types', 'flat');
-- after (envelope) and the flat row's columns equal decode_stream's new row
SELECT e.n, e.line::jsonb->'after' = d.r->'new' AS envelope_same,
       f.line::jsonb - '{_op,_lsn,_seq,_version,_commit_ts,_deleted}'::text[]
       = d.r->'new' AS flat_same
  FROM regexp_split_to_table(walship.encode_ndjson(ndjson_batch('types')), E'\n')
       WITH ORDINALITY AS e(line, n)
  JOIN regexp_split_to_table(walship.encode_ndjson(ndjson_batch('types'), 'flat'), E'\n')
       WITH ORDINALITY AS f(line, n) USING (n)
  JOIN (SELECT r, row_number() OVER () AS n
          FROM walship.decode_stream(ndjson_batch('types')) AS r
         WHERE r->>'kind' = 'insert') AS d USING (n)
 ORDER BY n;

-- The clickhouse_18 dialect: timestamps and timestamptz as integer
-- microseconds since 1970, their infinities as the int64 extremes, infinite
-- dates as the ends of ClickHouse's Date range, bytea as bare lowercase
-- hex, json and jsonb as a string holding the JSON text, numeric NaN and
-- infinities as null; arrays element by element; everything else (the
-- metadata too) as in the standard dialect.
INSERT INTO ndjson_ch VALUES
    (1, '2024-02-29 12:34:56.789012', '2024-01-01 12:00+01', '2024-02-29',
     '\xDEADbeef00'::bytea, E'{"a":\n "x\\ny", "b": [1, 2.50]}', '{"k": [1, {"z": null}]}',
     '-12.50', 'NaN', E'q " \\ é', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '12:34:56.789', '1 day 02:03:04', '{1,NULL,-3}',
     '{"1969-12-31 23:59:59.5",infinity,-infinity,NULL}',
     '{"1970-01-01 00:00:01+00",-infinity,infinity}',
     '{1970-01-02,infinity,-infinity,NULL}',
     ARRAY['\x00ff'::bytea, '\x'::bytea, NULL], ARRAY['{"a": 1}'::jsonb, 'null', NULL],
     '{1.50,NaN,Infinity,-Infinity,NULL}'),
    (2, 'infinity', '-infinity', 'infinity', '\x'::bytea, 'null', '"s"',
     'NaN', 'Infinity', '', NULL, NULL, NULL, '{}', '{}', '{}', '{}', '{}',
     '{}', '{}'),
    (3, '-infinity', 'infinity', '-infinity', NULL, '[]', '0', 'Infinity',
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (4, '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '1970-01-01', NULL,
     NULL, NULL, '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL);
UPDATE ndjson_ch SET id = 5 WHERE id = 4;
SELECT ndjson_take('clickhouse');
SELECT * FROM ndjson_show('clickhouse', 'flat', 'clickhouse_18');
SELECT * FROM ndjson_show('clickhouse', 'envelope', 'clickhouse_18');
-- TRUNCATE gives no flat ClickHouse line (ClickHouse has no row that
-- empties a table), but a warning per table; the envelope has its lines.
SELECT * FROM ndjson_show('truncate', 'flat', 'clickhouse_18');
SELECT count(*) AS truncate_lines
  FROM ndjson_show('truncate', 'envelope', 'clickhouse_18') WHERE line LIKE '{"op": "t"%';
-- the standard dialect is the default, for both shapes
SELECT walship.encode_ndjson(ndjson_batch('clickhouse'), 'flat')
       = walship.encode_ndjson(ndjson_batch('clickhouse'), 'flat', 'standard') AS flat_same,
       walship.encode_ndjson(ndjson_batch('clickhouse'))
       = walship.encode_ndjson(ndjson_batch('clickhouse'), 'envelope', 'standard') AS envelope_same;
-- ... and the dialects differ only in values: the same lines and keys
SELECT count(*) AS lines,
       bool_and((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(s.line::jsonb) AS k)
                = (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(c.line::jsonb) AS k))
       AS same_keys
  FROM regexp_split_to_table(walship.encode_ndjson(ndjson_batch('clickhouse'), 'flat'), E'\n')
       WITH ORDINALITY AS s(line, n)
  JOIN regexp_split_to_table(walship.encode_ndjson(ndjson_batch('clickhouse'), 'flat', 'clickhouse_18'), E'\n')
       WITH ORDINALITY AS c(line, n) USING (n)
 WHERE s.line <> '';

-- The clickhouse dialect (ClickHouse 22.x and later): timestamps as
-- DateTime64(6) strings and dates as Date32 strings, within 1900-01-01 ..
-- 2299-12-31 (infinity and -infinity at its ends), numeric NaN and
-- infinities as strings, _commit_ts as a DateTime64(6) string; bytea, json
-- and NULL arrays as in clickhouse_18; everything else as in standard.
SELECT regexp_replace(regexp_replace(regexp_replace(line,
         '"_commit_ts": "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}"', '"_commit_ts": TS'),
         '"_lsn": [0-9]+', '"_lsn": LSN'), '"_version": [0-9]+', '"_version": V') AS line
  FROM regexp_split_to_table(walship.encode_ndjson(ndjson_batch('clickhouse'), 'flat', 'clickhouse'), E'\n')
       AS line
 WHERE line <> '';
-- _commit_ts is the commit time, in UTC, to the microsecond
SELECT count(*) AS lines,
       bool_and((c.line::jsonb->>'_commit_ts')::timestamp
                = (s.line::jsonb->>'_commit_ts')::timestamptz AT TIME ZONE 'UTC') AS same_commit_ts
  FROM regexp_split_to_table(walship.encode_ndjson(ndjson_batch('clickhouse'), 'flat'), E'\n')
       WITH ORDINALITY AS s(line, n)
  JOIN regexp_split_to_table(walship.encode_ndjson(ndjson_batch('clickhouse'), 'flat', 'clickhouse'), E'\n')
       WITH ORDINALITY AS c(line, n) USING (n)
 WHERE s.line <> '';
-- no TRUNCATE lines in the flat shape either
SELECT count(*) AS truncate_lines
  FROM regexp_split_to_table(walship.encode_ndjson(ndjson_batch('truncate'), 'flat', 'clickhouse'), E'\n') AS line
 WHERE line LIKE '%"_op": "t"%';

-- Nothing in, nothing out; BEGIN, COMMIT and RELATION give no lines.
SELECT walship.encode_ndjson(''::bytea) = '' AS empty,
       walship.encode_ndjson(string_agg(data, ''::bytea ORDER BY n)) = '' AS none
  FROM ndjson_rows
 WHERE batch = 'dml' AND get_byte(data, 0) IN (66, 67, 82);  -- B, C, R

-- Errors, with their SQLSTATEs.
SELECT walship.encode_ndjson(ndjson_batch('dml'), 'debezium');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT walship.encode_ndjson(ndjson_batch('dml'), 'FLAT');
SELECT walship.encode_ndjson(ndjson_batch('dml'), 'flat', 'bigquery');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT walship.encode_ndjson(ndjson_batch('dml'), 'envelope', 'ClickHouse');
-- a change whose RELATION record is missing is an error, not dropped (the
-- detail, left out here, names its ordinal and commit LSN)
\set VERBOSITY terse
SELECT walship.encode_ndjson(string_agg(data, ''::bytea ORDER BY n), 'flat')
  FROM ndjson_rows WHERE batch = 'dml' AND get_byte(data, 0) <> 82;  -- R
\set VERBOSITY default
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- a change outside a transaction has no change id
SELECT walship.encode_ndjson(string_agg(data, ''::bytea ORDER BY n))
  FROM ndjson_rows WHERE batch = 'dml' AND get_byte(data, 0) IN (73, 82);  -- I, R
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

SELECT pg_drop_replication_slot('ndjson_slot');
DROP PUBLICATION ndjson_pub;
DROP FUNCTION ndjson_show(text, text, text);
DROP FUNCTION ndjson_versions(text);
DROP FUNCTION ndjson_batch(text);
DROP FUNCTION ndjson_take(text);
DROP TABLE ndjson_rows, ndjson_t, ndjson_t2, ndjson_full, ndjson_toast,
    ndjson_toast_full, ndjson_types, ndjson_full_pk, ndjson_ch;
