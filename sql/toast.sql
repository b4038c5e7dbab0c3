\pset format unaligned
--
-- TOASTed values: an UPDATE that leaves an out-of-line value alone does not
-- carry it, and the plugin says so with {"unchanged_toast": true}, which is
-- never confused with NULL; values that are written are sent in full.
--
-- big_x is stored uncompressed out of line, big_r does not compress, bin
-- is random bytes; big_c compresses well enough to stay in the row.
CREATE TABLE toast_t (
    id int PRIMARY KEY,
    note text,
    big_x text,
    big_r text,
    bin bytea,
    big_c text);
ALTER TABLE toast_t ALTER big_x SET STORAGE EXTERNAL;
CREATE PUBLICATION toast_pub FOR TABLE toast_t;
SELECT 'init' FROM pg_create_logical_replication_slot('toast_slot', 'walship');

-- The big values the records are checked against, by name.
CREATE TABLE toast_ref (name text PRIMARY KEY, json_string text);
-- uncompressed, so that copies of the values start uncompressed
ALTER TABLE toast_ref ALTER json_string SET STORAGE EXTERNAL;
INSERT INTO toast_ref
SELECT 'x100k', repeat('x', 100000)
UNION ALL
SELECT 'y100k', repeat('y', 100000)
UNION ALL
SELECT 'md5_3000', string_agg(md5(i::text), '' ORDER BY i)
  FROM generate_series(1, 3000) i
UNION ALL
SELECT 'md5_3000_rev', string_agg(md5(i::text), '' ORDER BY i DESC)
  FROM generate_series(1, 3000) i
UNION ALL
SELECT 'bin_48k', '\x' || string_agg(md5('b' || i), '' ORDER BY i)
  FROM generate_series(1, 3000) i
UNION ALL
SELECT 'ab100k', repeat('ab', 50000)
UNION ALL
SELECT 'k2500', repeat('k', 2500)
UNION ALL
SELECT 'k2500_2', repeat('k', 2499) || '2';

-- A value as a short word: a reference name, "unchanged", null, or itself.
CREATE FUNCTION toast_word(v jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT CASE
    WHEN v IS NULL THEN 'absent'
    WHEN v = '{"unchanged_toast": true}' THEN 'unchanged'
    WHEN jsonb_typeof(v) = 'null' THEN 'null'
    WHEN jsonb_typeof(v) = 'string' AND length(v #>> '{}') > 64 THEN
        coalesce((SELECT 'ref:' || name FROM toast_ref
                   WHERE json_string = v #>> '{}'),
                 'len:' || length(v #>> '{}') || ' md5:' || md5(v #>> '{}'))
    ELSE v::text
END
$$;
-- A tuple as column=word pairs in column order.
CREATE FUNCTION toast_tuple(t jsonb, cols text[]) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN t IS NULL THEN NULL ELSE
    (SELECT string_agg(c || '=' || toast_word(t->c), ' ' ORDER BY o)
       FROM unnest(cols) WITH ORDINALITY AS x(c, o)
      WHERE t ? c) END
$$;


INSERT INTO toast_t
SELECT 1, 'one',
       (SELECT json_string FROM toast_ref WHERE name = 'x100k'),
       (SELECT json_string FROM toast_ref WHERE name = 'md5_3000'),
       (SELECT decode(substr(json_string, 3), 'hex') FROM toast_ref WHERE name = 'bin_48k'),
       (SELECT json_string FROM toast_ref WHERE name = 'ab100k');
INSERT INTO toast_t VALUES (2, 'two', NULL, NULL, NULL, NULL);

-- Where the values live: out of line (toasted) or in the row.
SELECT id, pg_column_size(big_x) AS big_x, pg_column_size(big_r) AS big_r,
       pg_column_size(bin) AS bin, pg_column_size(big_c) < 2000 AS big_c_inline
  FROM toast_t ORDER BY id;

-- 1: nothing big touched
UPDATE toast_t SET note = 'one, updated' WHERE id = 1;
-- 2: one big value replaced
UPDATE toast_t SET big_r = (SELECT json_string FROM toast_ref WHERE name = 'md5_3000_rev')
 WHERE id = 1;
-- 3: NULLs stay NULL
UPDATE toast_t SET note = 'two, updated' WHERE id = 2;
-- 4: NULL to a big value, and a big value to NULL
UPDATE toast_t SET big_x = (SELECT json_string FROM toast_ref WHERE name = 'y100k')
 WHERE id = 2;
UPDATE toast_t SET big_x = NULL WHERE id = 1;
-- 5: set to itself: PostgreSQL keeps the stored value, so it is unchanged
UPDATE toast_t SET bin = bin WHERE id = 1;
-- 6: a key change carries the key, and unchanged big values stay unchanged
UPDATE toast_t SET id = 10 WHERE id = 1;
DELETE FROM toast_t WHERE id = 10;

SELECT r->>'kind' AS kind,
       toast_tuple(coalesce(r->'key', r->'old'), '{id,note,big_x,big_r,bin,big_c}') AS old,
       toast_tuple(r->'new', '{id,note,big_x,big_r,bin,big_c}') AS new
  FROM changes('toast_slot', 'publication_names', 'toast_pub') AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete');

-- The raw values, for the first UPDATE: the marker object, never null.
INSERT INTO toast_t
SELECT 3, 'three', json_string, json_string, NULL, NULL
  FROM toast_ref WHERE name = 'md5_3000';
UPDATE toast_t SET note = 'three, updated' WHERE id = 3;
SELECT r->'new'->'big_x' AS big_x, r->'new'->'big_r' AS big_r,
       r->'new'->'bin' AS bin, r->'new'->'big_c' AS big_c,
       jsonb_typeof(r->'new'->'big_x') AS type_x
  FROM changes('toast_slot', 'publication_names', 'toast_pub') AS r
 WHERE r->>'kind' = 'update';
-- decode() without the relation shows the marker in the array too.
UPDATE toast_t SET note = 'three, again' WHERE id = 3;
SELECT walship.decode(data)->'new' AS new
  FROM pg_logical_slot_get_binary_changes('toast_slot', NULL, NULL,
         'publication_names', 'toast_pub')
 WHERE get_byte(data, 0) = ascii('U');

-- REPLICA IDENTITY FULL: the old tuple carries every old value in full
-- (PostgreSQL detoasts it), while unchanged values of the new tuple are
-- still not sent.
ALTER TABLE toast_t REPLICA IDENTITY FULL;
UPDATE toast_t SET note = 'three, full' WHERE id = 3;
UPDATE toast_t SET big_r = 'short now' WHERE id = 3;
UPDATE toast_t SET note = 'two, full' WHERE id = 2;
DELETE FROM toast_t WHERE id = 3;
SELECT r->>'kind' AS kind,
       toast_tuple(coalesce(r->'key', r->'old'), '{id,note,big_x,big_r,bin,big_c}') AS old,
       toast_tuple(r->'new', '{id,note,big_x,big_r,bin,big_c}') AS new
  FROM changes('toast_slot', 'publication_names', 'toast_pub') AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete');

-- A key big enough to be stored out of line: PostgreSQL logs the old key
-- whenever it is external, so the key is always known even though the new
-- tuple leaves it unchanged.
CREATE TABLE toast_k (k text PRIMARY KEY, v int);
ALTER TABLE toast_k ALTER k SET STORAGE EXTERNAL;
ALTER PUBLICATION toast_pub ADD TABLE toast_k;
INSERT INTO toast_k SELECT json_string, 1 FROM toast_ref WHERE name = 'k2500';
UPDATE toast_k SET v = 2;
UPDATE toast_k SET k = (SELECT json_string FROM toast_ref WHERE name = 'k2500_2');
DELETE FROM toast_k;
SELECT r->>'kind' AS kind,
       toast_tuple(r->'key', '{k,v}') AS key,
       toast_tuple(r->'new', '{k,v}') AS new
  FROM changes('toast_slot', 'publication_names', 'toast_pub') AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete');

SELECT pg_drop_replication_slot('toast_slot');
DROP PUBLICATION toast_pub;
DROP TABLE toast_t, toast_k, toast_ref;
DROP FUNCTION toast_tuple(jsonb, text[]);
DROP FUNCTION toast_word(jsonb);
