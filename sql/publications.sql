\pset format unaligned
--
-- Which tables, actions and columns the publications named in
-- publication_names select, as pgoutput selects them.
--
CREATE TABLE pub_a (id int PRIMARY KEY, v text);
CREATE TABLE pub_b (id int PRIMARY KEY, v text);
CREATE TABLE pub_c (id int PRIMARY KEY, v text);
CREATE SCHEMA pub_s;
CREATE TABLE pub_s.t1 (id int PRIMARY KEY, v text);
SELECT 'init' FROM pg_create_logical_replication_slot('pub_slot', 'walship');

--
-- FOR TABLE
--
CREATE PUBLICATION pub_tab FOR TABLE pub_a, pub_c;
BEGIN;
INSERT INTO pub_a VALUES (1, 'a1');
INSERT INTO pub_b VALUES (1, 'b1');
INSERT INTO pub_c VALUES (1, 'c1');
UPDATE pub_a SET v = 'a1 again' WHERE id = 1;
DELETE FROM pub_b WHERE id = 1;
DELETE FROM pub_c WHERE id = 1;
COMMIT;
-- a transaction touching only unpublished tables emits nothing at all
INSERT INTO pub_b VALUES (2, 'b2');
INSERT INTO pub_s.t1 VALUES (1, 's1');
-- ordinals count the filtered changes too: 1, 3, 4, 6
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_tab');

--
-- FOR TABLES IN SCHEMA, also for tables created in the schema later and
-- tables moved into it
--
CREATE PUBLICATION pub_sch FOR TABLES IN SCHEMA pub_s;
CREATE TABLE pub_s.t2 (id int PRIMARY KEY);
INSERT INTO pub_s.t1 VALUES (2, 's2');
INSERT INTO pub_s.t2 VALUES (1);
INSERT INTO pub_a VALUES (2, 'a2');
ALTER TABLE pub_b SET SCHEMA pub_s;
INSERT INTO pub_s.pub_b VALUES (3, 'b3');
ALTER TABLE pub_s.pub_b SET SCHEMA public;
INSERT INTO pub_b VALUES (4, 'b4');
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_sch');

--
-- FOR ALL TABLES
--
CREATE PUBLICATION pub_all FOR ALL TABLES;
BEGIN;
INSERT INTO pub_a VALUES (3, 'a3');
INSERT INTO pub_b VALUES (5, 'b5');
INSERT INTO pub_s.t2 VALUES (2);
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_all');
DROP PUBLICATION pub_all;

--
-- Several publications: the union of their tables
--
BEGIN;
INSERT INTO pub_a VALUES (4, 'a4');
INSERT INTO pub_b VALUES (6, 'b6');
INSERT INTO pub_s.t2 VALUES (3);
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_tab,pub_sch');

--
-- Published actions
--
CREATE TABLE pub_act (id int PRIMARY KEY, v text);
CREATE PUBLICATION pub_ins FOR TABLE pub_act WITH (publish = 'insert');
CREATE PUBLICATION pub_upd FOR TABLE pub_act WITH (publish = 'update');
CREATE PUBLICATION pub_del FOR TABLE pub_act WITH (publish = 'delete');
CREATE PUBLICATION pub_none FOR TABLE pub_act WITH (publish = '');
BEGIN;
INSERT INTO pub_act VALUES (1, 'one');
UPDATE pub_act SET v = 'uno' WHERE id = 1;
DELETE FROM pub_act WHERE id = 1;
COMMIT;
-- each alone
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_ins');
BEGIN;
INSERT INTO pub_act VALUES (2, 'two');
UPDATE pub_act SET v = 'dos' WHERE id = 2;
DELETE FROM pub_act WHERE id = 2;
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_upd');
BEGIN;
INSERT INTO pub_act VALUES (3, 'three');
UPDATE pub_act SET v = 'tres' WHERE id = 3;
DELETE FROM pub_act WHERE id = 3;
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_del');
-- nothing published: no transaction at all
BEGIN;
INSERT INTO pub_act VALUES (4, 'four');
UPDATE pub_act SET v = 'cuatro' WHERE id = 4;
DELETE FROM pub_act WHERE id = 4;
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_none');
-- the union of the actions of all publications of the table
BEGIN;
INSERT INTO pub_act VALUES (5, 'five');
UPDATE pub_act SET v = 'cinco' WHERE id = 5;
DELETE FROM pub_act WHERE id = 5;
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_none,pub_ins,pub_del');

--
-- Column lists: only the listed columns, in the relation and in tuples
--
CREATE TABLE pub_cols (id int PRIMARY KEY, a text, b int, c text);
CREATE PUBLICATION pub_cl FOR TABLE pub_cols (id, b, c);
CREATE PUBLICATION pub_cl_same FOR TABLE pub_cols (c, id, b);
CREATE PUBLICATION pub_cl_other FOR TABLE pub_cols (id, a);
CREATE PUBLICATION pub_cl_all FOR TABLE pub_cols;
BEGIN;
INSERT INTO pub_cols VALUES (1, 'a', 10, 'c');
UPDATE pub_cols SET a = 'A', b = 11 WHERE id = 1;
UPDATE pub_cols SET id = 2 WHERE id = 1;
DELETE FROM pub_cols WHERE id = 2;
COMMIT;
-- the same list in two publications, in any order, is fine
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_cl,pub_cl_same');
-- different lists for the same table are an error (the context shows an LSN)
\set SHOW_CONTEXT never
INSERT INTO pub_cols VALUES (3, 'a', 30, 'c');
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_cl,pub_cl_other');
-- a list and no list are different lists too
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_cl,pub_cl_all');
\set SHOW_CONTEXT errors
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_cl_other');
DROP PUBLICATION pub_cl_other, pub_cl_all;
-- but a list of every column is no list, as in pgoutput
CREATE TABLE pub_cols2 (id int PRIMARY KEY, v text);
CREATE PUBLICATION pub_cl2_list FOR TABLE pub_cols2 (v, id);
CREATE PUBLICATION pub_cl2_all FOR TABLE pub_cols2;
INSERT INTO pub_cols2 VALUES (1, 'one');
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_cl2_list,pub_cl2_all');
-- (consumes the change, whatever happened above)
SELECT 'drained' FROM (SELECT count(*) FROM pg_logical_slot_get_binary_changes('pub_slot',
    NULL, NULL, 'publication_names', 'pub_cl2_list')) AS s;
DROP PUBLICATION pub_cl2_list, pub_cl2_all;
DROP TABLE pub_cols2;

--
-- Row filters, with pgoutput's semantics: an INSERT is checked on its new
-- row, a DELETE on its old row, an UPDATE on both, becoming an INSERT when
-- only the new row matches and a DELETE when only the old row does
--
CREATE TABLE pub_rf (id int PRIMARY KEY, v text);
CREATE PUBLICATION pub_where FOR TABLE pub_rf WHERE (id > 10);
BEGIN;
INSERT INTO pub_rf VALUES (1, 'one'), (20, 'twenty');
UPDATE pub_rf SET v = 'twenty!' WHERE id = 20;  -- matches: update
UPDATE pub_rf SET v = 'one!' WHERE id = 1;      -- no match: nothing
UPDATE pub_rf SET id = 5 WHERE id = 20;         -- leaves the filter: delete
UPDATE pub_rf SET id = 30 WHERE id = 1;         -- enters the filter: insert
UPDATE pub_rf SET id = 6 WHERE id = 5;          -- neither: nothing
DELETE FROM pub_rf WHERE id = 30;               -- matches: delete
DELETE FROM pub_rf WHERE id = 6;                -- no match: nothing
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_where');
-- the filters of several publications are ORed, and a publication without
-- a filter disables filtering (peeked, to decode the same changes thrice)
CREATE FUNCTION pub_peek(slot name, VARIADIC options text[])
RETURNS SETOF jsonb
LANGUAGE sql AS $$
SELECT stable_json(r)
  FROM walship.decode_stream(
         (SELECT coalesce(string_agg(c.data, ''::bytea ORDER BY c.n), ''::bytea)
            FROM pg_logical_slot_peek_binary_changes(slot, NULL, NULL, VARIADIC options)
                 WITH ORDINALITY AS c(lsn, xid, data, n))) AS r
$$;
CREATE PUBLICATION pub_where_neg FOR TABLE pub_rf WHERE (id < 0);
CREATE PUBLICATION pub_nowhere FOR TABLE pub_rf;
INSERT INTO pub_rf VALUES (-1, 'negative'), (2, 'small'), (12, 'big');
SELECT r->'new' FROM pub_peek('pub_slot', 'publication_names', 'pub_where') AS r
 WHERE r->>'kind' = 'insert';
SELECT r->'new' FROM pub_peek('pub_slot', 'publication_names', 'pub_where,pub_where_neg') AS r
 WHERE r->>'kind' = 'insert';
SELECT r->'new' FROM changes('pub_slot', 'publication_names', 'pub_where,pub_nowhere') AS r
 WHERE r->>'kind' = 'insert';
-- filters are per action: only the publications publishing an action
-- filter it
CREATE PUBLICATION pub_where_ins FOR TABLE pub_rf WHERE (id > 10)
    WITH (publish = 'insert');
CREATE PUBLICATION pub_del_all FOR TABLE pub_rf WITH (publish = 'delete');
DELETE FROM pub_rf;
INSERT INTO pub_rf VALUES (3, 'three'), (13, 'thirteen');
DELETE FROM pub_rf;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_where_ins,pub_del_all');
-- the filter in force when a change was committed applies
INSERT INTO pub_rf VALUES (14, 'fourteen');
ALTER PUBLICATION pub_where SET TABLE pub_rf WHERE (id > 100);
INSERT INTO pub_rf VALUES (15, 'fifteen');
INSERT INTO pub_rf VALUES (115, 'one hundred fifteen');
ALTER PUBLICATION pub_where SET TABLE pub_rf;
INSERT INTO pub_rf VALUES (16, 'sixteen');
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_where');
-- with REPLICA IDENTITY FULL the old row has every column
CREATE TABLE pub_rff (id int, v text);
ALTER TABLE pub_rff REPLICA IDENTITY FULL;
CREATE PUBLICATION pub_where_full FOR TABLE pub_rff WHERE (v <> 'hidden');
INSERT INTO pub_rff VALUES (1, 'shown'), (2, 'hidden');
UPDATE pub_rff SET v = 'hidden' WHERE id = 1;
UPDATE pub_rff SET v = 'shown' WHERE id = 2;
UPDATE pub_rff SET id = 3 WHERE id = 2;
DELETE FROM pub_rff;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_where_full');
-- An UPDATE that leaves a toasted column unchanged logs only a pointer to
-- it in the new row; with REPLICA IDENTITY FULL the old row holds the
-- value, and pgoutput evaluates the filter and builds an INSERT with it.
CREATE TABLE pub_rft (id int, n int, b text);
ALTER TABLE pub_rft ALTER COLUMN b SET STORAGE EXTERNAL;
ALTER TABLE pub_rft REPLICA IDENTITY FULL;
CREATE PUBLICATION pub_where_n FOR TABLE pub_rft WHERE (n > 0);
CREATE PUBLICATION pub_where_b FOR TABLE pub_rft WHERE (length(b) > 100);
INSERT INTO pub_rft VALUES (1, 0, repeat('x', 5000));
-- enters the filter: an INSERT, with the whole value of b
UPDATE pub_rft SET n = 1;
SELECT r->>'kind' AS kind, r->'new'->'n' AS n, length(r->'new'->>'b') AS b_length
  FROM changes('pub_slot', 'publication_names', 'pub_where_n') AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete');
-- the filter on b reads b from the old row, not from the table: the toast
-- data is gone by the time the change is decoded
UPDATE pub_rft SET n = 2;
DELETE FROM pub_rft;
VACUUM pub_rft;
SELECT r->>'kind' AS kind, r->'old'->'n' AS old_n, length(r->'old'->>'b') AS old_b_length,
       r->'new'->'n' AS new_n
  FROM changes('pub_slot', 'publication_names', 'pub_where_b') AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete');
-- (consumes the changes, whatever happened above)
SELECT 'drained' FROM (SELECT count(*) FROM pg_logical_slot_get_binary_changes('pub_slot',
    NULL, NULL, 'publication_names', 'pub_where_n')) AS s;
DROP FUNCTION pub_peek(name, text[]);
DROP PUBLICATION pub_where, pub_where_neg, pub_nowhere, pub_where_ins,
    pub_del_all, pub_where_full, pub_where_n, pub_where_b;
DROP TABLE pub_rf, pub_rff, pub_rft;

--
-- Publications changed between changes: each change is decoded with the
-- definition in force when it was committed
--
CREATE TABLE pub_m1 (id int PRIMARY KEY, v text);
CREATE TABLE pub_m2 (id int PRIMARY KEY, v text);
CREATE PUBLICATION pub_mid FOR TABLE pub_m1;
INSERT INTO pub_m1 VALUES (1, 'before add');
INSERT INTO pub_m2 VALUES (1, 'before add');
ALTER PUBLICATION pub_mid ADD TABLE pub_m2;
INSERT INTO pub_m1 VALUES (2, 'after add');
INSERT INTO pub_m2 VALUES (2, 'after add');
ALTER PUBLICATION pub_mid DROP TABLE pub_m1;
INSERT INTO pub_m1 VALUES (3, 'after drop');
INSERT INTO pub_m2 VALUES (3, 'after drop');
ALTER PUBLICATION pub_mid SET (publish = 'update');
INSERT INTO pub_m2 VALUES (4, 'insert not published');
UPDATE pub_m2 SET v = 'update published' WHERE id = 4;
ALTER PUBLICATION pub_mid SET (publish = 'insert, update, delete, truncate');
DELETE FROM pub_m2 WHERE id = 4;
ALTER PUBLICATION pub_mid SET TABLE pub_m1 (id);
INSERT INTO pub_m1 VALUES (5, 'only the id');
INSERT INTO pub_m2 VALUES (5, 'not published');
ALTER PUBLICATION pub_mid SET TABLE pub_m1;
INSERT INTO pub_m1 VALUES (6, 'all columns again');
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_mid');

-- in the middle of a transaction
ALTER PUBLICATION pub_mid SET TABLE pub_m1;
BEGIN;
INSERT INTO pub_m1 VALUES (7, 'published');
INSERT INTO pub_m2 VALUES (7, 'not yet');
ALTER PUBLICATION pub_mid ADD TABLE pub_m2;
INSERT INTO pub_m1 VALUES (8, 'published');
INSERT INTO pub_m2 VALUES (8, 'published now');
COMMIT;
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_mid');

-- a dropped publication: the changes before the DROP decode, those after
-- are an error
INSERT INTO pub_m1 VALUES (9, 'before drop');
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_mid');
INSERT INTO pub_m1 VALUES (10, 'before drop');
DROP PUBLICATION pub_mid;
INSERT INTO pub_m1 VALUES (11, 'after drop');
\set SHOW_CONTEXT never
SELECT * FROM changes('pub_slot', 'publication_names', 'pub_mid');
\set SHOW_CONTEXT errors

SELECT pg_drop_replication_slot('pub_slot');
DROP PUBLICATION pub_tab, pub_sch, pub_ins, pub_upd, pub_del, pub_none,
    pub_cl, pub_cl_same;
DROP TABLE pub_a, pub_b, pub_c, pub_act, pub_cols, pub_m1, pub_m2;
DROP SCHEMA pub_s CASCADE;
