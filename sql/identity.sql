\pset format unaligned
--
-- Replica identity: which old data UPDATE and DELETE records carry ("key"
-- with the identity columns, "old" with the whole row, or nothing), and
-- what the RELATION record says about it.
--
-- DEFAULT with a primary key whose column order differs from the table's.
CREATE TABLE id_def (a int, b text, c int, PRIMARY KEY (c, a));
-- USING INDEX on NOT NULL columns, behind a dropped column, besides a
-- different primary key.
CREATE TABLE id_idx (id int PRIMARY KEY, gone int, x int NOT NULL,
                     y text NOT NULL, z text);
ALTER TABLE id_idx DROP COLUMN gone;
CREATE UNIQUE INDEX id_idx_xy ON id_idx (y, x);
ALTER TABLE id_idx REPLICA IDENTITY USING INDEX id_idx_xy;
-- FULL, with a generated column, which is not published.
CREATE TABLE id_full (id int PRIMARY KEY, a text, b int,
                      g int GENERATED ALWAYS AS (b * 2) STORED);
ALTER TABLE id_full REPLICA IDENTITY FULL;
-- FULL without any key.
CREATE TABLE id_full_nokey (a text, b int);
ALTER TABLE id_full_nokey REPLICA IDENTITY FULL;
-- NOTHING, and DEFAULT without a primary key: no identity at all.
CREATE TABLE id_nothing (id int PRIMARY KEY, a text);
ALTER TABLE id_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE id_nopk (id int, a text);

CREATE PUBLICATION id_pub FOR TABLE id_def, id_idx, id_full, id_full_nokey;
-- Tables without identity can only be in publications that do not
-- publish UPDATE or DELETE.
CREATE PUBLICATION id_pub_ins FOR TABLE id_nothing, id_nopk
  WITH (publish = 'insert');
SELECT 'init' FROM pg_create_logical_replication_slot('id_slot', 'walship');

-- stable_json() records without what is the same for every change
CREATE FUNCTION id_show(slot name)
RETURNS TABLE (kind text, relation text, data jsonb)
LANGUAGE sql AS $$
SELECT r->>'kind', r->>'relation', r - '{kind,relation,relation_id,ordinal}'::text[]
  FROM changes(slot, 'publication_names', 'id_pub,id_pub_ins') AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete')
$$;
CREATE FUNCTION id_relations(slot name)
RETURNS TABLE ("table" text, replica_identity text, name text, key jsonb,
               not_null jsonb, primary_key jsonb)
LANGUAGE sql AS $$
SELECT r->>'table', r->>'replica_identity', c->>'name', c->'key',
       c->'not_null', c->'primary_key'
  FROM changes(slot, 'publication_names', 'id_pub,id_pub_ins') WITH ORDINALITY AS x(r, n),
       jsonb_array_elements(r->'columns') WITH ORDINALITY AS y(c, o)
 WHERE r->>'kind' = 'relation'
 ORDER BY n, o
$$;

INSERT INTO id_def VALUES (1, 'one', 10), (2, 'two', 20);
INSERT INTO id_idx VALUES (1, 1, 'one', 'z1'), (2, 2, 'two', NULL);
INSERT INTO id_full VALUES (1, 'one', 10), (2, NULL, NULL);
INSERT INTO id_full_nokey VALUES ('one', 1), ('one', 1);
INSERT INTO id_nothing VALUES (1, 'one');
INSERT INTO id_nopk VALUES (1, 'one');

SELECT * FROM id_relations('id_slot');

-- UPDATE without and with a key change, then DELETE.
UPDATE id_def SET b = 'one, updated' WHERE a = 1;
UPDATE id_def SET a = 11 WHERE a = 1;
UPDATE id_def SET c = 21, b = NULL WHERE a = 2;
DELETE FROM id_def WHERE a = 11;
SELECT * FROM id_show('id_slot');

-- USING INDEX: the key is (x, y), not the primary key id.
UPDATE id_idx SET z = 'z1, updated' WHERE id = 1;
UPDATE id_idx SET id = 10 WHERE id = 1;
UPDATE id_idx SET y = 'one, new' WHERE id = 10;
UPDATE id_idx SET x = 20, z = 'z2' WHERE id = 2;
DELETE FROM id_idx WHERE id = 10;
SELECT * FROM id_show('id_slot');

-- FULL: the whole old row, NULLs included, whatever changed.
UPDATE id_full SET a = 'one, updated' WHERE id = 1;
UPDATE id_full SET id = 10 WHERE id = 1;
UPDATE id_full SET b = 3 WHERE id = 2;
UPDATE id_full SET a = a WHERE id = 2;
DELETE FROM id_full WHERE id = 10;
-- and without a key, duplicate rows are told apart only by position
UPDATE id_full_nokey SET b = 2;
DELETE FROM id_full_nokey;
SELECT * FROM id_show('id_slot');

-- NOTHING, and DEFAULT without a primary key: PostgreSQL refuses UPDATE
-- and DELETE while a publication of the table publishes them ...
ALTER PUBLICATION id_pub_ins SET (publish = 'insert, update');
UPDATE id_nothing SET a = 'refused';
ALTER PUBLICATION id_pub_ins SET (publish = 'insert, delete');
DELETE FROM id_nopk;
ALTER PUBLICATION id_pub_ins SET (publish = 'insert');
-- ... and allows them when none does; then they are not decoded.
UPDATE id_nothing SET a = 'one, updated';
UPDATE id_nopk SET a = 'one, updated';
DELETE FROM id_nothing;
DELETE FROM id_nopk;
INSERT INTO id_nothing VALUES (2, 'two');
SELECT * FROM id_show('id_slot');

-- Changing the identity takes effect at that point of the stream, with a
-- new RELATION record.
UPDATE id_def SET a = 100 WHERE a = 2;
ALTER TABLE id_def REPLICA IDENTITY FULL;
UPDATE id_def SET a = 200 WHERE a = 100;
ALTER TABLE id_def REPLICA IDENTITY NOTHING;
ALTER PUBLICATION id_pub SET (publish = 'insert');
UPDATE id_def SET a = 300 WHERE a = 200;
ALTER PUBLICATION id_pub SET (publish = 'insert, update, delete, truncate');
ALTER TABLE id_def REPLICA IDENTITY DEFAULT;
DELETE FROM id_def WHERE a = 300;
SELECT r->>'kind' AS kind, r->>'replica_identity' AS replica_identity,
       (SELECT jsonb_agg(c->'name') FROM jsonb_array_elements(r->'columns') c
         WHERE (c->>'key')::bool) AS key_columns,
       r - '{kind,relation,relation_id,ordinal,table,schema,columns,replica_identity}'::text[] AS data
  FROM changes('id_slot', 'publication_names', 'id_pub,id_pub_ins') AS r
 WHERE r->>'kind' NOT IN ('begin', 'commit');

-- decode() without the stream: old key and full rows are arrays, the key
-- one holding only the key columns.
INSERT INTO id_def VALUES (7, 'seven', 70);
UPDATE id_def SET a = 8 WHERE a = 7;
UPDATE id_full SET b = 4 WHERE id = 2;
CREATE TEMP TABLE id_raw AS
SELECT n, data
  FROM pg_logical_slot_get_binary_changes('id_slot', NULL, NULL,
         'publication_names', 'id_pub,id_pub_ins')
       WITH ORDINALITY AS c(lsn, xid, data, n);
SELECT walship.decode(data) - '{ordinal,lsn}'::text[] AS decoded
  FROM id_raw
 WHERE get_byte(data, 0) IN (ascii('I'), ascii('U'), ascii('D'))
 ORDER BY n;
-- ... and their change LSNs (left out above: they vary by run)
SELECT * FROM change_lsns((SELECT array_agg(data ORDER BY n) FROM id_raw));

SELECT pg_drop_replication_slot('id_slot');
DROP PUBLICATION id_pub, id_pub_ins;
DROP FUNCTION id_show(name), id_relations(name);
DROP TABLE id_def, id_idx, id_full, id_full_nokey, id_nothing, id_nopk;
