\pset format unaligned
--
-- TRUNCATE: one record for all the published tables of a statement, after
-- their relation records.
--
CREATE TABLE trunc_a (id int PRIMARY KEY, v text);
CREATE TABLE trunc_b (id int PRIMARY KEY);
CREATE TABLE trunc_c (id int PRIMARY KEY);
CREATE TABLE trunc_parent (id int PRIMARY KEY);
CREATE TABLE trunc_child (id int PRIMARY KEY,
    parent_id int REFERENCES trunc_parent (id));
CREATE TABLE trunc_seq (id serial PRIMARY KEY, v text);
CREATE TABLE trunc_unpub (id int PRIMARY KEY);
CREATE PUBLICATION trunc_pub FOR TABLE trunc_a, trunc_b, trunc_c,
    trunc_parent, trunc_child, trunc_seq;
CREATE PUBLICATION trunc_no_truncate FOR TABLE trunc_a, trunc_b
    WITH (publish = 'insert, update, delete');
SELECT 'init' FROM pg_create_logical_replication_slot('trunc_slot', 'walship');

-- one table
INSERT INTO trunc_a VALUES (1, 'one');
TRUNCATE trunc_a;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_pub');

-- (TRUNCATE gives the table new storage, which invalidates it: its relation
-- record is sent again)
-- several tables in one statement: one record, after a relation record for
-- each table
INSERT INTO trunc_a VALUES (2, 'two');
TRUNCATE trunc_a, trunc_b, trunc_c;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_pub');

-- a truncate among other changes: it has its ordinal
BEGIN;
INSERT INTO trunc_a VALUES (3, 'three');
TRUNCATE trunc_b;
INSERT INTO trunc_a VALUES (4, 'four');
COMMIT;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_pub');

-- CASCADE truncates the referencing table too
INSERT INTO trunc_parent VALUES (1);
INSERT INTO trunc_child VALUES (1, 1);
TRUNCATE trunc_parent CASCADE;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_pub');

-- RESTART IDENTITY
INSERT INTO trunc_seq (v) VALUES ('a');
TRUNCATE trunc_seq RESTART IDENTITY;
TRUNCATE trunc_seq CONTINUE IDENTITY;
TRUNCATE trunc_seq, trunc_parent RESTART IDENTITY CASCADE;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_pub');

-- tables that are not published: nothing, not even the transaction
TRUNCATE trunc_unpub;
-- and only the published ones of a statement
TRUNCATE trunc_unpub, trunc_c;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_pub');

-- a publication without the truncate action: nothing
INSERT INTO trunc_a VALUES (5, 'five');
TRUNCATE trunc_a;
TRUNCATE trunc_a, trunc_b;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_no_truncate');
-- unless another publication of the table publishes it
INSERT INTO trunc_a VALUES (6, 'six');
TRUNCATE trunc_a, trunc_c;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_no_truncate,trunc_pub');

-- a truncate in a rolled back transaction: nothing
BEGIN;
TRUNCATE trunc_a;
ROLLBACK;
SELECT * FROM changes('trunc_slot', 'publication_names', 'trunc_pub');

SELECT pg_drop_replication_slot('trunc_slot');
DROP PUBLICATION trunc_pub, trunc_no_truncate;
DROP TABLE trunc_a, trunc_b, trunc_c, trunc_child, trunc_parent, trunc_seq,
    trunc_unpub;
