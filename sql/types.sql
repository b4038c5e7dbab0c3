\pset format unaligned
--
-- Every built-in type family through the output plugin, checked through
-- the values walship.decode_stream() and walship.decode() render.
--
-- Session settings the textual fallbacks (the types' output functions)
-- depend on; pg_regress would otherwise use DateStyle Postgres and PST8PDT.
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';

SELECT 'init' FROM pg_create_logical_replication_slot('types_slot', 'walship');

CREATE TYPE types_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN types_posint AS int CHECK (VALUE > 0);
CREATE DOMAIN types_label AS text;
CREATE TYPE types_pair AS (a int, b text);

-- Numbers and booleans.
CREATE TABLE types_num (
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, o oid,
    n numeric, n52 numeric(5,2),
    f4 float4, f8 float8, b bool);
-- Strings, bytes and JSON.
CREATE TABLE types_str (
    id int PRIMARY KEY,
    t text, vc varchar(10), c char(5), nm name,
    ba bytea, j json, jb jsonb);
-- Dates and times.
CREATE TABLE types_time (
    id int PRIMARY KEY,
    d date, tm time, ttz timetz, ts timestamp, tstz timestamptz,
    ts3 timestamp(3), iv interval);
-- Everything else: native uuid, text fallbacks, domains.
CREATE TABLE types_misc (
    id int PRIMARY KEY,
    u uuid, e types_mood, dpos types_posint, dlab types_label,
    comp types_pair, r4 int4range, rtz tstzrange,
    ip inet, net cidr, mac macaddr, m money, pt point,
    tsv tsvector, b4 bit(4), vb varbit, x xml);
-- Arrays.
CREATE TABLE types_arr (
    id int PRIMARY KEY,
    ai int[], at text[], an numeric[], ats timestamptz[], au uuid[],
    ab bool[], ajb jsonb[], ae types_mood[], a2 int[], alb int[]);

CREATE PUBLICATION types_pub FOR TABLE types_num, types_str, types_time,
    types_misc, types_arr;

INSERT INTO types_num VALUES
    (1, -32768, -2147483648, -9223372036854775808, 0,
        0, -999.99, 'NaN', 'NaN', false),
    (2, 32767, 2147483647, 9223372036854775807, 4294967295,
        '-12345678901234567890.123456789012345678901234567890', 999.99,
        'Infinity', 'Infinity', true),
    (3, 0, 0, 0, 1,
        'NaN', 1.5, '-Infinity', '-Infinity', true),
    (4, -1, -1, -1, 12345,
        'Infinity', 0, '-0', '-0', false),
    (5, 1, 1, 1, 2,
        '-Infinity', -0.01, 1.17549435e-38, 2.2250738585072014e-308, true),
    (6, 42, 42, 42, 42,
        '1.50', 3.14, 3.4028235e38, 1.7976931348623157e308, false),
    (7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (8, 2, 2, 2, 3,
        '0.000000000000000000000000000001', 0.5, 1.4e-45, 5e-324, NULL),
    (9, 3, 3, 3, 4,
        '-0.5', 0.1, 0.1, 0.1, NULL);

INSERT INTO types_str VALUES
    (1, 'plain', 'vc', 'ab', 'a_name',
        '\x00010200ff'::bytea, '{"a": [1, 2.50, {"b": null}], "ü": "漢字"}',
        '{"a": [1, 2.50, {"b": null}], "ü": "漢字", "e": "😀"}'),
    (2, 'é 漢字 😀', 'ü漢😀', 'é', '名前',
        ''::bytea, '"just a string"', '[]'),
    (3, '', '', '', '',
        '\x00'::bytea, '  [1,  2 ,3]  ', '{}'),
    (4, E'quote " backslash \\ newline \n tab \t cr \r bell \x07 end', E'a\\b"c',
        E'\'"\\', 'Mixed Case',
        '\x5c6e0a22'::bytea, E'{"esc": "\\"\\\\\\n\\u00e9"}',
        E'{"esc": "\\"\\\\\\n\\u00e9\\u0001"}'),
    (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (6, 'null', 'true', '1', 'null',
        decode(repeat('00ff', 8), 'hex'), 'null', 'null');

INSERT INTO types_time VALUES
    (1, '2024-02-29', '00:00:00', '00:00:00+00', '2024-02-29 12:34:56.789012',
        '2024-02-29 12:34:56.789012+02', '2024-02-29 12:34:56.789',
        '1 year 2 mons 3 days 04:05:06.789'),
    (2, 'infinity', '23:59:59.999999', '23:59:59.999999-12',
        'infinity', 'infinity', 'infinity', '-178000000 years'),
    (3, '-infinity', '24:00:00', '12:00:00+05:30',
        '-infinity', '-infinity', '-infinity', '0'),
    (4, '0044-03-15 BC', '12:00:00.000001', '01:02:03.5+14',
        '0044-03-15 12:00:00 BC', '0044-03-15 12:00:00+00 BC',
        '0001-01-01 00:00:00 BC', '-1 day -00:00:00.000001'),
    (5, '4713-11-24 BC', '06:30', '06:30:00-00:30',
        '4713-11-24 00:00:00 BC', '4713-11-24 00:00:00+00 BC',
        '1970-01-01 00:00:00', '1 mon -1 days'),
    (6, '5874897-12-31', '13:00', '13:00+00',
        '294276-12-31 23:59:59', '294276-12-31 23:59:59.999999+00',
        '294247-01-10 04:00:54.775', '178000000 years'),
    (7, '1970-01-01', '00:00:00.5', '00:00:00.5+00',
        '1969-12-31 23:59:59.999999', '1970-01-01 00:00:00+00',
        '2000-01-01 00:00:00', '-0.000001 seconds'),
    (8, '1999-12-31', '12:00', '12:00+00',
        '294247-01-10 04:00:54.775807', '294247-01-10 04:00:54.775807+00',
        '294247-01-10 04:00:54.776', '1 second'),
    (9, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

INSERT INTO types_misc VALUES
    (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', 7, 'label',
        ROW(1, 'x "y"'), '[1,10)', '[2024-01-01 00:00+00,2024-01-02 00:00+00)',
        '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34,
        '(1.5,-2)', 'a fat cat sat', B'1010', B'101', '<a b="c">é</a>'),
    (2, '00000000-0000-0000-0000-000000000000', 'sad', 2147483647, '',
        ROW(NULL, NULL), 'empty', '(,)',
        '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', -0.01,
        '(0,0)', '', B'0000', B'', '<x/>'),
    (3, 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'ok', 1, E'multi\nline 漢字',
        ROW(-1, E'a\\b,c'), '(,5]', '[-infinity,infinity]',
        '0.0.0.0', '0.0.0.0/0', '00:00:00:00:00:00', 0,
        '(-1e+300,1e-300)', E'\'quoted\' 漢字:1A', B'1111', B'1', 'text only'),
    (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL);

INSERT INTO types_arr VALUES
    (1, '{1,-2,2147483647}', '{a,NULL,"NULL","with \"quote\"","back\\slash","a,b","",é漢😀}',
        '{1.50,NaN,-Infinity,0}',
        '{"2024-02-29 12:34:56.789012+00",infinity,-infinity,NULL,"0044-03-15 00:00+00 BC"}',
        '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}',
        '{t,f,NULL}', ARRAY['{"a": 1}'::jsonb, '[null]', NULL],
        '{sad,happy}', '{{1,2},{3,NULL}}', '[0:2]={7,8,9}'),
    (2, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '[5:5]={5}'),
    (3, '{NULL}', '{NULL,""}', NULL, NULL, NULL, NULL, NULL, NULL,
        '{{{1}},{{2}}}', '[1:1]={1}'),
    (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- Keep the raw records: decode_stream() renders them with names, decode()
-- one by one without.
CREATE TEMP TABLE types_raw AS
SELECT n, data
  FROM pg_logical_slot_get_binary_changes('types_slot', NULL, NULL,
         'publication_names', 'types_pub')
       WITH ORDINALITY AS c(lsn, xid, data, n);
CREATE TEMP TABLE types_out AS
SELECT n, stable_json(r) AS r
  FROM walship.decode_stream(
         (SELECT string_agg(data, ''::bytea ORDER BY n) FROM types_raw))
       WITH ORDINALITY AS d(r, n);

-- One record per row of the slot.
SELECT (SELECT count(*) FROM types_raw) AS raw_rows,
       (SELECT count(*) FROM types_out) AS records;
SELECT r->>'kind' AS kind, r->>'table' AS "table", count(*)
  FROM types_out GROUP BY 1, 2 ORDER BY min(n);

-- The relation records: column types as format_type() writes them, with
-- typmods; types created here are schema-qualified.
SELECT r->>'table' AS "table", c->>'name' AS name, c->>'type' AS type,
       c->'typmod' AS typmod, c ? 'type_oid' AS builtin,
       c->'key' AS key, c->'not_null' AS not_null, c->'primary_key' AS pk
  FROM types_out, jsonb_array_elements(r->'columns') WITH ORDINALITY AS x(c, o)
 WHERE r->>'kind' = 'relation'
 ORDER BY n, o;
-- The built-in types' OIDs are reported.
SELECT DISTINCT c->>'type' AS type, (c->>'type_oid')::regtype AS type_oid
  FROM types_out, jsonb_array_elements(r->'columns') AS c
 WHERE r->>'kind' = 'relation' AND c ? 'type_oid'
 ORDER BY 1;

-- The rows as decoded.
SELECT r->>'relation' AS relation, r->'new' AS new
  FROM types_out WHERE r->>'kind' = 'insert'
 ORDER BY n;

-- Cross-check against to_jsonb() of the rows still in the tables: every
-- column renders as to_jsonb() renders it, except where listed here.
CREATE FUNCTION types_diff(rel text, src jsonb)
RETURNS TABLE (id int, col text, decoded jsonb, sql jsonb)
LANGUAGE sql AS $$
SELECT (s->>'id')::int, k, d.v, e.v
  FROM jsonb_array_elements(src) AS s,
       LATERAL (SELECT o.r->'new' AS new FROM types_out o
                 WHERE o.r->>'kind' = 'insert'
                   AND o.r->>'relation' = rel
                   AND o.r->'new'->'id' = s->'id') AS dec,
       LATERAL jsonb_each(dec.new) AS d(k, v)
       FULL JOIN jsonb_each(s) AS e(k, v) USING (k)
 WHERE d.v IS DISTINCT FROM e.v
 ORDER BY 1, 2
$$;
SELECT * FROM types_diff('public.types_num',
    (SELECT jsonb_agg(to_jsonb(t)) FROM types_num t));
SELECT * FROM types_diff('public.types_str',
    (SELECT jsonb_agg(to_jsonb(t)) FROM types_str t));
SELECT * FROM types_diff('public.types_time',
    (SELECT jsonb_agg(to_jsonb(t)) FROM types_time t));
SELECT * FROM types_diff('public.types_misc',
    (SELECT jsonb_agg(to_jsonb(t)) FROM types_misc t));
SELECT * FROM types_diff('public.types_arr',
    (SELECT jsonb_agg(to_jsonb(t)) FROM types_arr t));

-- Floats: the extremes round-trip exactly.
SELECT (r->'new'->>'id')::int AS id,
       (r->'new'->>'f4')::float4 = f4 AS f4_exact,
       (r->'new'->>'f8')::float8 = f8 AS f8_exact,
       (r->'new'->>'f8')::float8::text AS f8
  FROM types_out JOIN types_num t ON t.id = (r->'new'->>'id')::int
 WHERE r->>'relation' = 'public.types_num' AND r->>'kind' = 'insert'
   AND f8 <> 'NaN' AND f8 NOT IN ('Infinity', '-Infinity')
 ORDER BY 1;
-- Strings round-trip byte for byte; bytea too.
SELECT t.id, r->'new'->>'t' = t AS t, r->'new'->>'vc' = vc AS vc,
       r->'new'->>'c' = c::text || repeat(' ', 5 - length(c)) AS c_padded,
       octet_length(r->'new'->>'c') AS c_octets,
       r->'new'->>'nm' = nm::text AS nm,
       decode(substr(r->'new'->>'ba', 3), 'hex') = ba AS ba
  FROM types_out JOIN types_str t ON t.id = (r->'new'->>'id')::int
 WHERE r->>'relation' = 'public.types_str' AND r->>'kind' = 'insert'
 ORDER BY 1;

-- The stateless decode() of the same INSERTs: values as an array, in
-- column order, no names.
SELECT walship.decode(data) - '{ordinal,lsn}'::text[] AS decoded
  FROM types_raw WHERE get_byte(data, 0) = ascii('I')
 ORDER BY n;
-- ... and their change LSNs (left out above: they vary by run)
SELECT * FROM change_lsns((SELECT array_agg(data ORDER BY n) FROM types_raw));
-- ... the same values as decode_stream() gave by name.
SELECT count(*) AS inserts,
       count(*) FILTER (WHERE (SELECT jsonb_agg(v ORDER BY o)
                                 FROM jsonb_array_elements(walship.decode(w.data)->'new')
                                      WITH ORDINALITY AS x(v, o))
                              = (SELECT jsonb_agg(o.r->'new'->(c->>'name') ORDER BY i)
                                   FROM types_out rel,
                                        jsonb_array_elements(rel.r->'columns')
                                        WITH ORDINALITY AS y(c, i)
                                  WHERE rel.r->>'kind' = 'relation'
                                    AND rel.r->'relation_id' = o.r->'relation_id')) AS same
  FROM types_raw w JOIN types_out o USING (n)
 WHERE get_byte(w.data, 0) = ascii('I');

-- The text fallbacks are the output functions' text in the decoding
-- session's settings (as pgoutput's text mode): far-future timestamps, the
-- ranges and the intervals change with DateStyle, TimeZone, IntervalStyle.
SET DateStyle = 'Postgres, MDY';
SET TimeZone = 'Asia/Tokyo';
SET IntervalStyle = 'iso_8601';
UPDATE types_time SET id = id WHERE id = 6;
UPDATE types_misc SET id = id WHERE id = 1;
SELECT r->'new' AS new FROM changes('types_slot', 'publication_names', 'types_pub') AS r
 WHERE r->>'kind' = 'update';
RESET DateStyle;
RESET TimeZone;
RESET IntervalStyle;

SELECT pg_drop_replication_slot('types_slot');
DROP PUBLICATION types_pub;
DROP FUNCTION types_diff(text, jsonb);
DROP TABLE types_num, types_str, types_time, types_misc, types_arr;
DROP TYPE types_pair;
DROP DOMAIN types_posint, types_label;
DROP TYPE types_mood;
