\pset format unaligned
--
-- Robustness of walship.decode() and walship.decode_stream() against
-- malformed input: truncated and bit-flipped real records, and crafted
-- ones.  Every malformed record must be a clean error, data_corrupted
-- (XX001) for the framing and the values, never a crash or a wrong result.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
-- the text fallback of the far-future timestamp depends on these
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';

CREATE TABLE de_t (
    id int PRIMARY KEY, i8 bigint, f4 real, f8 float8, n numeric, t text,
    j json, jb jsonb, b bytea, u uuid, d date, ts timestamp, tz timestamptz,
    tm time, bo bool, ai int[], at text[], big text);
ALTER TABLE de_t ALTER big SET STORAGE EXTERNAL;
CREATE TABLE de_full (id int, t text);
ALTER TABLE de_full REPLICA IDENTITY FULL;
CREATE PUBLICATION de_pub FOR TABLE de_t, de_full;
SELECT 'init' FROM pg_create_logical_replication_slot('de_slot', 'walship');

BEGIN;
INSERT INTO de_t VALUES
    (1, -9223372036854775808, 1.5, -2.25e-300, -123.456, 'é漢😀 "q" \',
     '{"a": [1, "ü", null]}', '{"b": {"c": true}}', '\x00ff00', 
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29',
     '2024-02-29 12:34:56.789012', '0044-03-15 12:00:00+00 BC', '23:59:59.999999',
     true, '{1,NULL,-3}', '{"x",NULL,"é"}', NULL),
    (2, NULL, 'NaN', '-Infinity', 'NaN', '', 'null', '[]', '', NULL,
     'infinity', '-infinity', '294276-12-31 23:59:59+00', '00:00', false,
     '{}', '{{a,b},{c,d}}', repeat('x', 3000));
UPDATE de_t SET id = 3, t = 'moved' WHERE id = 1;
UPDATE de_t SET t = 'big unchanged' WHERE id = 2;
DELETE FROM de_t WHERE id = 3;
INSERT INTO de_full VALUES (1, 'one');
UPDATE de_full SET t = 'uno';
DELETE FROM de_full;
SELECT 'msg' FROM pg_logical_emit_message(true, 'de_prefix', 'content é');
COMMIT;
-- (a non-transactional message is decoded once later WAL is flushed)
SELECT 'msg' FROM pg_logical_emit_message(false, 'de_nontx', '\x00ff'::bytea);
TRUNCATE de_full;

CREATE TABLE de_recs AS
SELECT n::int AS n, data, chr(get_byte(data, 0)) AS kind
  FROM pg_logical_slot_get_binary_changes('de_slot', NULL, NULL,
         'publication_names', 'de_pub', 'messages', 'true')
       WITH ORDINALITY AS c(lsn, xid, data, n);
-- The records, and what they decode to.  BEGIN and COMMIT records carry
-- xids, LSNs and times, so their lengths are not shown.
SELECT n, kind,
       CASE WHEN kind IN ('B', 'C') THEN NULL ELSE length(data) END AS length,
       replace((SELECT r - '{ordinal,lsn}'::text[] FROM walship.decode_stream(data) AS r
                 WHERE r->>'kind' NOT IN ('begin', 'commit', 'relation'))::text,
               repeat('x', 3000), '<3000 x>') AS change
  FROM de_recs ORDER BY n;
SELECT count(*) AS stream_records
  FROM walship.decode_stream((SELECT string_agg(data, ''::bytea ORDER BY n) FROM de_recs));
-- The change LSNs left out above (they vary by run).  The truncation and
-- bit flip counts below depend on their size: 4 bytes as uvarints, from
-- 0/200000 to 0/FFFFFFF.
SELECT * FROM change_lsns((SELECT array_agg(data ORDER BY n) FROM de_recs));
SELECT bool_and((walship.decode(data)->>'lsn')::pg_lsn BETWEEN '0/200000' AND '0/FFFFFFF')
       AS four_byte_lsns
  FROM de_recs WHERE kind IN ('I', 'U', 'D');

-- The outcome of decoding: 'ok' or the SQLSTATE of the error, with
-- ' version' after 0A000 when it is the one error for input that is not
-- corrupt but newer, a BEGIN of a format version this library does not
-- read.  mode: 'decode' (walship.decode()), 'stream'
-- (walship.decode_stream()) or 'ndjson' (walship.encode_ndjson() in every
-- shape and dialect).
CREATE FUNCTION de_try(data bytea, mode text DEFAULT 'decode') RETURNS text
LANGUAGE plpgsql SET client_min_messages = error AS $$
DECLARE
    shape text;
    dialect text;
BEGIN
    IF mode = 'decode' THEN
        PERFORM walship.decode(data);
    ELSIF mode = 'stream' THEN
        PERFORM count(*) FROM walship.decode_stream(data);
    ELSE
        FOREACH shape IN ARRAY '{envelope,flat}'::text[] LOOP
            FOREACH dialect IN ARRAY '{standard,clickhouse,clickhouse_18}'::text[] LOOP
                PERFORM walship.encode_ndjson(data, shape, dialect);
            END LOOP;
        END LOOP;
    END IF;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || CASE WHEN SQLSTATE = '0A000'
                                 AND SQLERRM LIKE 'walship format version % is not supported'
                            THEN ' version' ELSE '' END;
END
$$;
-- The outcomes docs/format.md ("Errors") allows for corrupt input:
-- data_corrupted (XX001), and feature_not_supported (0A000) for a BEGIN
-- of a newer format version.
CREATE FUNCTION de_documented(outcome text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
SELECT outcome IN ('ok', 'XX001', '0A000 version')
$$;

-- Every truncation of every record fails with data_corrupted.
SELECT kind, CASE WHEN kind IN ('B', 'C') THEN NULL ELSE count(*) END AS truncations,
       de_try(substr(data, 1, k)) AS outcome
  FROM de_recs, generate_series(0, length(data) - 1) AS k
 GROUP BY kind, outcome
 ORDER BY kind, outcome;
-- The same through decode_stream(), which also decodes prefixes of the
-- whole stream exactly when they end at a record boundary.
SELECT kind, CASE WHEN kind IN ('B', 'C') THEN NULL ELSE count(*) END AS truncations,
       de_try(substr(data, 1, k), 'stream') AS outcome
  FROM de_recs, generate_series(1, length(data) - 1) AS k
 GROUP BY kind, outcome
 ORDER BY kind, outcome;
WITH stream AS (
    SELECT string_agg(data, ''::bytea ORDER BY n) AS s FROM de_recs
     WHERE n <= (SELECT min(n) FROM de_recs WHERE kind = 'C')),
boundaries AS (
    SELECT sum(length(data)) OVER (ORDER BY n) AS k FROM de_recs
     WHERE n <= (SELECT min(n) FROM de_recs WHERE kind = 'C')),
outcomes AS (
    SELECT k, de_try(substr(s, 1, k::int), 'stream') AS outcome
      FROM stream, generate_series(1, length(s)) AS k)
SELECT string_agg(DISTINCT outcome, ', ' ORDER BY outcome) AS outcomes,
       count(*) FILTER (WHERE k IN (SELECT k FROM boundaries)) AS boundaries,
       bool_and((outcome = 'ok') = (k IN (SELECT k FROM boundaries))) AS ok_exactly_at_boundaries
  FROM outcomes;

-- Every single bit flip of every record: a clean error or a success.
CREATE TABLE de_flips AS
SELECT n, kind, bit, de_try(set_bit(data, bit, 1 - get_bit(data, bit))) AS outcome
  FROM de_recs, generate_series(0, 8 * length(data) - 1) AS bit
 WHERE length(data) < 1000;
-- The kinds of errors seen: only the documented ones.
SELECT string_agg(DISTINCT outcome, ', ' ORDER BY outcome) AS outcomes,
       bool_and(de_documented(outcome)) AS all_documented
  FROM de_flips;
-- Per record kind; BEGIN and COMMIT (xids, LSNs, times) only as a set, and
-- MESSAGE too: a flipped ordinal or length can make the reader take bytes
-- of its 8-byte LSN as other fields, so its counts depend on the LSN.
SELECT kind, string_agg(DISTINCT outcome, ', ' ORDER BY outcome) AS outcomes
  FROM de_flips WHERE kind IN ('B', 'C', 'M') GROUP BY kind ORDER BY kind;
SELECT n, kind, outcome, count(*)
  FROM de_flips WHERE kind NOT IN ('B', 'C', 'M')
 GROUP BY n, kind, outcome ORDER BY n, outcome;

-- The whole first transaction as a stream (its records under 1000 bytes),
-- where the RELATION records name the columns of the changes after them,
-- mutated systematically: every truncation, every single bit flip, and
-- every byte replaced by each of 00, 0a, 7f, 80 and ff; decoded by
-- walship.decode_stream() and encoded by walship.encode_ndjson() in every
-- shape and dialect.  Only the documented outcomes occur.
CREATE TABLE de_stream AS
SELECT string_agg(data, ''::bytea ORDER BY n) AS s FROM de_recs
 WHERE n <= (SELECT min(n) FROM de_recs WHERE kind = 'C') AND length(data) < 1000;
SELECT r->>'kind' AS kind, count(*)
  FROM de_stream, walship.decode_stream(s) AS r GROUP BY 1 ORDER BY 1;
SELECT length(walship.encode_ndjson(s, 'flat', 'clickhouse')) > 0 AS encodes
  FROM de_stream;
CREATE TABLE de_mutants AS
SELECT 'truncation' AS mutation, substr(s, 1, k) AS data
  FROM de_stream, generate_series(0, length(s) - 1) AS k
UNION ALL
SELECT 'bit flip', set_bit(s, bit, 1 - get_bit(s, bit))
  FROM de_stream, generate_series(0, 8 * length(s) - 1) AS bit
UNION ALL
SELECT 'byte ' || b, set_byte(s, k, b)
  FROM de_stream, generate_series(0, length(s) - 1) AS k,
       unnest('{0, 10, 127, 128, 255}'::int[]) AS b
 WHERE get_byte(s, k) <> b;
CREATE TABLE de_stream_flips AS
SELECT mutation, mode, de_try(data, mode) AS outcome
  FROM de_mutants, unnest('{stream,ndjson}'::text[]) AS mode;
SELECT mode, string_agg(DISTINCT outcome, ', ' ORDER BY outcome) AS outcomes,
       bool_and(de_documented(outcome)) AS all_documented,
       count(*) > 10000 AS many
  FROM de_stream_flips GROUP BY mode ORDER BY mode;
-- (what is not documented, if anything)
SELECT mode, mutation, outcome, count(*)
  FROM de_stream_flips WHERE NOT de_documented(outcome)
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
-- The server is still here.
SELECT 'alive' AS server;

-- Trailing bytes after one record: decode() takes exactly one.
SELECT walship.decode(data || '\x00'::bytea) FROM de_recs WHERE kind = 'I' AND n = 3;
SELECT walship.decode(a.data || b.data)
  FROM de_recs a, de_recs b WHERE a.n = 3 AND b.n = 4;
-- decode_stream() takes both, and skips pg_recvlogical's newlines.
SELECT replace((r - '{ordinal,lsn}'::text[])::text, repeat('x', 3000), '<3000 x>') AS decoded
  FROM de_recs a, de_recs b,
       walship.decode_stream('\x0a'::bytea || a.data || '\x0a0a'::bytea || b.data || '\x0a'::bytea) AS r
 WHERE a.n = 3 AND b.n = 4;

-- Crafted records, with the wire_*() helpers of setup.sql.  Crafted
-- INSERT, UPDATE and DELETE bodies end with the change LSN 0/1000
-- (wire_uv(4096), 80 20).
-- an INSERT of relation 1, ordinal 1, with the given encoded values, at
-- change LSN 0/1000
CREATE FUNCTION de_insert(nvalues int, vals bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT wire_rec('I', '\x0101'::bytea || wire_uv(nvalues) || vals || wire_uv(4096))
$$;
-- a RELATION record: relation 1, OID 16384, public.t, identity default,
-- columns (flags, name, type OID, typmod, type name)
CREATE FUNCTION de_relation(cols bytea[]) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT wire_rec('R', '\x01'::bytea || wire_uv(16384) || '\x067075626c6963'::bytea
                   || '\x0174'::bytea || 'd'::bytea || wire_uv(cardinality(cols))
                   || coalesce((SELECT string_agg(c, ''::bytea ORDER BY o)
                                  FROM unnest(cols) WITH ORDINALITY AS x(c, o)), ''))
$$;
-- a value with a length: tag, uvarint length, bytes
CREATE FUNCTION de_val(tag text, data bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT convert_to(tag, 'UTF8') || wire_uv(length(data)) || data
$$;
CREATE FUNCTION de_col(flags int, name text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT set_byte('\x00'::bytea, 0, flags) || wire_uv(octet_length(name)) || convert_to(name, 'UTF8')
       || wire_uv(23) || wire_sv(-1) || '\x07696e7465676572'::bytea
$$;

-- The helpers write what the plugin writes.
SELECT de_insert(2, '\x69026e'::bytea) AS crafted,
       walship.decode(de_insert(2, '\x69026e'::bytea)) AS decoded;
SELECT r FROM walship.decode_stream(
    de_relation(ARRAY[de_col(7, 'id'), de_col(0, 'v')])
    || de_insert(2, '\x6902'::bytea || '\x73'::bytea || wire_uv(2) || 'hi'::bytea)) AS r;

-- Empty input.
SELECT walship.decode(''::bytea);
SELECT count(*) AS records FROM walship.decode_stream(''::bytea);
SELECT count(*) AS records FROM walship.decode_stream('\x0a0a'::bytea);
-- Unknown record kind, alone and in a stream.
SELECT walship.decode(wire_rec('Z', ''));
SELECT walship.decode(wire_rec('Z', '\x010203'));
SELECT count(*) FROM walship.decode_stream(de_insert(0, '') || wire_rec('z', '\x00'));
-- A BEGIN of format version 3, and of version 0.
SELECT walship.decode(wire_rec('B', '\x03' || wire_uv(1000) || '\x0000000000000000'::bytea || wire_sv(0)));
SELECT walship.decode(wire_rec('B', '\x00' || wire_uv(1000) || '\x0000000000000000'::bytea || wire_sv(0)));
-- ... and of version 1, for comparison.
SELECT walship.decode(wire_rec('B', '\x01' || wire_uv(1000) || '\x0001000000000000'::bytea || wire_sv(0)));
-- Fields appended to a body by a later minor revision are skipped.
SELECT walship.decode(wire_rec('I', '\x0101' || wire_uv(1) || '\x6902' || wire_uv(4096) || '\xfffefd'::bytea));
SELECT walship.decode(wire_rec('B', '\x01' || wire_uv(1000) || '\x0001000000000000'::bytea || wire_sv(0) || '\x42'::bytea));

-- Huge and overlong varints: as the body length ...
SELECT walship.decode('\x49ffffffffffffffffff01'::bytea);
SELECT walship.decode('\x49ffffffffffffffff7f'::bytea);
SELECT walship.decode('\x49ffffffffffffffffff02'::bytea);
SELECT walship.decode('\x49ffffffffffffffffffff01'::bytea);
SELECT walship.decode('\x4980'::bytea);
-- ... as a value's length, a tuple's count, an array's count
SELECT walship.decode(de_insert(1, '\x73' || wire_uv(18446744073709551615)));
SELECT walship.decode(de_insert(1, '\x73' || wire_uv(4)) || 'abc'::bytea);
SELECT walship.decode(wire_rec('I', '\x0101' || wire_uv(18446744073709551615) || '\x6e'::bytea || wire_uv(4096)));
-- (5 values: the 4 bytes left, 2 NULLs and the change LSN, cannot hold them)
SELECT walship.decode(wire_rec('I', '\x0101' || wire_uv(5) || '\x6e6e'::bytea || wire_uv(4096)));
SELECT walship.decode(de_insert(1, '\x61' || wire_uv(1000000) || '\x6e6e'::bytea));
SELECT walship.decode(wire_rec('R', '\x01' || wire_uv(16384) || '\x0170' || '\x0174' || 'd'::bytea || wire_uv(4294967297)));
SELECT walship.decode(wire_rec('T', '\x0100'::bytea || wire_uv(1000000000000) || '\x01'::bytea));
-- ... as an integer value: 64 bits, zigzag
SELECT walship.decode(de_insert(2, '\x69' || wire_sv(-9223372036854775808) || '\x69' || wire_sv(9223372036854775807)));
SELECT walship.decode(de_insert(1, '\x69' || wire_uv(18446744073709551616)));

-- Unknown tags and kinds inside a record.
SELECT walship.decode(de_insert(1, '\x51'::bytea));
SELECT walship.decode(de_insert(1, '\x00'::bytea));
SELECT walship.decode(wire_rec('U', '\x0101' || 'x'::bytea || wire_uv(0) || wire_uv(0) || wire_uv(4096)));
SELECT walship.decode(wire_rec('D', '\x0101' || 'n'::bytea || wire_uv(4096)));
-- Arrays nest up to 8 levels.
SELECT walship.decode(de_insert(1, decode(repeat('6101', 8) || '6e', 'hex')))->'new';
SELECT walship.decode(de_insert(1, decode(repeat('6101', 9) || '6e', 'hex')));
SELECT walship.decode(de_insert(1, decode(repeat('6101', 100000) || '6e', 'hex')));

-- Text that is not UTF-8, and names with a zero byte.
SELECT walship.decode(de_insert(1, '\x73' || wire_uv(2) || '\xc328'::bytea));
SELECT walship.decode(de_insert(1, '\x73' || wire_uv(3) || '\x610062'::bytea));
SELECT walship.decode(de_insert(1, '\x6a' || wire_uv(3) || '\x22ff22'::bytea));
SELECT walship.decode(de_relation(ARRAY[de_col(0, E'a\u00e9')]))->'columns'->0->'name';
SELECT walship.decode(de_relation(ARRAY['\x00026100' || wire_uv(23) || wire_sv(-1) || '\x0169'::bytea]));
-- A text value with a zero byte cannot come from PostgreSQL: corrupt.
SELECT walship.decode(de_insert(1, '\x7303610062'::bytea));
SELECT walship.decode(de_relation(ARRAY['\x0001' || '\xff'::bytea || wire_uv(23) || wire_sv(-1) || '\x0169'::bytea]));
SELECT walship.decode(wire_rec('M', wire_uv(0) || '\x00' || '\x0000000000000000' || wire_uv(2) || '\xc328'::bytea || wire_uv(0)));
-- JSON values that are not JSON, and numerics that are not what
-- PostgreSQL writes for a numeric, are corrupt (data_corrupted), and cannot
-- change the structure of the rendered record.
SELECT de_try(de_insert(1, de_val('j', '{"a'))) AS outcome;
SELECT de_try(de_insert(1, de_val('j', ''))) AS outcome;
SELECT de_try(de_insert(1, de_val('j', '1, 2'))) AS outcome;
SELECT de_try(de_insert(2, de_val('j', '[1') || de_val('j', '2]'))) AS outcome;
SELECT de_try(de_insert(1, de_val('j', '1 2'))) AS outcome;
SELECT de_try(de_relation(ARRAY[de_col(7, 'id'), de_col(0, 'v')])
              || de_insert(1, de_val('j', '1, "v": "forged"')), 'stream')
       AS outcome;
SELECT de_try(de_relation(ARRAY[de_col(7, 'id')])
              || de_insert(1, de_val('j', '1}, "kind": "forged", "x": {"y": 1')), 'stream')
       AS outcome;
SELECT de_try(de_insert(1, de_val('e', '1-2'))) AS outcome;
SELECT de_try(de_insert(1, de_val('e', '0012'))) AS outcome;
-- (PostgreSQL writes no exponent, and at most 131072 digits before the
-- point and 16383 after it)
SELECT de_try(de_insert(1, de_val('e', '1e999999999'))) AS outcome;
SELECT de_try(de_insert(1, de_val('e', '-0.5'))) AS outcome;
SELECT de_try(de_insert(1, de_val('e', (repeat('9', 131072) || '.' || repeat('9', 16383))::bytea))) AS outcome;
SELECT de_try(de_insert(1, de_val('e', repeat('9', 131073)::bytea))) AS outcome;
SELECT de_try(de_insert(1, de_val('e', ('0.' || repeat('9', 16384))::bytea))) AS outcome;
-- A json value that is valid JSON but has no jsonb form (a \u0000 escape,
-- a number beyond numeric's range) is not corrupt: walship.decode() and
-- decode_stream(), which return jsonb, fail as jsonb does (22P05, 22003,
-- documented in docs/format.md), and the NDJSON encoding has it as is.
SELECT de_try(de_insert(1, de_val('j', convert_to('"a\u0000"', 'UTF8')))) AS decode,
       de_try(de_relation(ARRAY[de_col(7, 'id')]) || wire_rec('B', '\x02' || wire_uv(1000) || '\x0001000000000000'::bytea || wire_sv(0))
              || de_insert(1, de_val('j', convert_to('"a\u0000"', 'UTF8'))), 'ndjson') AS ndjson;
SELECT de_try(de_insert(1, de_val('j', '1e999999'))) AS decode;
SELECT walship.encode_ndjson(de_relation(ARRAY[de_col(7, 'id')]) || wire_rec('B', '\x02' || wire_uv(1000) || '\x0001000000000000'::bytea || wire_sv(0))
              || de_insert(1, de_val('j', convert_to('"a\u0000"', 'UTF8'))), 'flat', 'standard');
-- valid JSON values of each kind pass
SELECT walship.decode(de_insert(4, de_val('j', ' {"a": [1, {}]} ') || de_val('j', '"s"')
                                   || de_val('j', 'null') || de_val('j', '-1.5e3')))->'new';
-- numeric NaN and infinities are shown as strings; other text is corrupt
SELECT walship.decode(de_insert(3, '\x65' || wire_uv(8) || 'Infinity'::bytea || '\x65' || wire_uv(3) || 'NaN'::bytea
                                   || '\x65' || wire_uv(9) || '-Infinity'::bytea))->'new';
SELECT walship.decode(de_insert(1, '\x65' || wire_uv(4) || '1e5x'::bytea));
SELECT walship.decode(de_insert(1, '\x65' || wire_uv(0)));
-- A typmod beyond 32 bits.
SELECT walship.decode(de_relation(ARRAY['\x0001' || 'a'::bytea || wire_uv(23) || wire_sv(2147483648) || '\x0169'::bytea]));
SELECT walship.decode(de_relation(ARRAY['\x0001' || 'a'::bytea || wire_uv(23) || wire_sv(-2147483649) || '\x0169'::bytea]));

-- Dates, times and timestamps outside PostgreSQL's ranges.  Dates are days
-- since 1970-01-01: -2440588 is 4714-11-24 BC, the first day PostgreSQL
-- has, and 2145042905 is 5874897-12-31, the last.
SELECT walship.decode(de_insert(2, '\x44' || wire_sv(-2440588) || '\x44' || wire_sv(2145042905)))->'new';
SELECT walship.decode(de_insert(1, '\x44' || wire_sv(-2440589)));
SELECT walship.decode(de_insert(1, '\x44' || wire_sv(2145042906)));
SELECT walship.decode(de_insert(1, '\x44' || wire_sv(-100000000)));
SELECT walship.decode(de_insert(1, '\x44' || wire_sv(2147483000)));
SELECT walship.decode(de_insert(1, '\x44' || wire_sv(-9223372036854775808)));
-- Times are microseconds since midnight, 24:00:00 included.
SELECT walship.decode(de_insert(1, '\x68' || wire_uv(86400000000)))->'new';
SELECT walship.decode(de_insert(1, '\x68' || wire_uv(86400000001)));
SELECT walship.decode(de_insert(1, '\x68' || wire_uv(18446744073709551615)));
-- Timestamps are microseconds since 1970-01-01 UTC.
-- Every int64 after the first microsecond PostgreSQL has is in range.
SELECT walship.decode(de_insert(2, '\x54' || wire_sv(-210866803200000000)
                                   || '\x5a' || wire_sv(9223372036854775807)))->'new';
SELECT walship.decode(de_insert(1, '\x54' || wire_sv(-210866803200000001)));
SELECT walship.decode(de_insert(1, '\x54' || wire_sv(-9223372036854775808)));
SELECT walship.decode(wire_rec('B', '\x01' || wire_uv(1000) || '\x0001000000000000'::bytea || wire_sv(9223372036854775807)));

-- Tuples that do not fit the stream's RELATION record.
SELECT r->>'kind' AS kind, r->'new' AS new FROM walship.decode_stream(
    de_relation(ARRAY[de_col(7, 'id')]) || de_insert(1, '\x6901')) AS r;
SELECT count(*) FROM walship.decode_stream(
    de_relation(ARRAY[de_col(7, 'id')]) || de_insert(2, '\x69016902'));
SELECT count(*) FROM walship.decode_stream(
    de_relation(ARRAY[de_col(7, 'id'), de_col(0, 'v')])
    || wire_rec('U', '\x0101' || 'k'::bytea || wire_uv(2) || '\x69016902' || wire_uv(2) || '\x69016902'::bytea
              || wire_uv(4096)));
-- ... fewer values than columns are shown as they are
SELECT r->'new' AS new FROM walship.decode_stream(
    de_relation(ARRAY[de_col(7, 'id'), de_col(0, 'v')]) || de_insert(1, '\x6901')) AS r
 WHERE r->>'kind' = 'insert';
-- ... and a change of a relation the stream has not described is shown
-- without names, as decode() shows it
SELECT r - 'ordinal' AS decoded FROM walship.decode_stream(de_insert(1, '\x6901')) AS r;

SELECT pg_drop_replication_slot('de_slot');
DROP PUBLICATION de_pub;
DROP FUNCTION de_try(bytea, text), de_documented(text),
    de_insert(int, bytea), de_relation(bytea[]),
    de_col(int, text);
DROP TABLE de_t, de_full, de_recs, de_flips, de_stream, de_mutants, de_stream_flips;
