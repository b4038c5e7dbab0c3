\pset format unaligned
--
-- DDL between changes: each change is decoded with the table definition in
-- force when it was made, and a new relation record for the same
-- relation_id precedes the first change after the DDL.
--
CREATE TABLE ddl_t (id int PRIMARY KEY, a int, b text);
CREATE PUBLICATION ddl_pub FOR TABLE ddl_t;
SELECT 'init' FROM pg_create_logical_replication_slot('ddl_slot', 'walship');

INSERT INTO ddl_t VALUES (1, 10, 'one');
ALTER TABLE ddl_t ADD COLUMN c numeric(10,2) DEFAULT 1.5;
INSERT INTO ddl_t VALUES (2, 20, 'two', 2.25);
UPDATE ddl_t SET a = 11 WHERE id = 1;
ALTER TABLE ddl_t DROP COLUMN b;
INSERT INTO ddl_t VALUES (3, 30, 3.5);
ALTER TABLE ddl_t ALTER COLUMN a TYPE bigint;
INSERT INTO ddl_t VALUES (4, 4000000000, 4.5);
ALTER TABLE ddl_t ADD COLUMN d text;
INSERT INTO ddl_t VALUES (5, 50, 5.5, 'five');
ALTER TABLE ddl_t ALTER COLUMN d TYPE varchar(20);
INSERT INTO ddl_t VALUES (6, 60, 6.5, 'six');
ALTER TABLE ddl_t RENAME COLUMN d TO label;
INSERT INTO ddl_t VALUES (7, 70, 7.5, 'seven');
ALTER TABLE ddl_t REPLICA IDENTITY FULL;
UPDATE ddl_t SET label = 'seven!' WHERE id = 7;
DELETE FROM ddl_t WHERE id = 6;
ALTER TABLE ddl_t REPLICA IDENTITY DEFAULT;
DELETE FROM ddl_t WHERE id = 5;
ALTER TABLE ddl_t RENAME TO ddl_renamed;
INSERT INTO ddl_renamed VALUES (8, 80, 8.5, 'eight');
ALTER TABLE ddl_renamed RENAME TO ddl_t;
SELECT * FROM changes('ddl_slot', 'publication_names', 'ddl_pub');

-- DDL inside the transaction of the changes
BEGIN;
INSERT INTO ddl_t VALUES (9, 90, 9.5, 'nine');
ALTER TABLE ddl_t ADD COLUMN e boolean;
INSERT INTO ddl_t VALUES (10, 100, 10.5, 'ten', true);
ALTER TABLE ddl_t DROP COLUMN label;
UPDATE ddl_t SET e = false WHERE id = 10;
COMMIT;
SELECT * FROM changes('ddl_slot', 'publication_names', 'ddl_pub');

-- DDL that does not change the columns may re-send the same relation
-- record, but the rows are unchanged
INSERT INTO ddl_t VALUES (11, 110, 11.5, NULL);
CREATE INDEX ddl_t_a ON ddl_t (a);
INSERT INTO ddl_t VALUES (12, 120, 12.5, NULL);
SELECT r->>'kind' AS kind, r->'new' AS new
  FROM changes('ddl_slot', 'publication_names', 'ddl_pub') AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete');

-- generated columns are not sent, as by pgoutput on PostgreSQL 15
CREATE TABLE ddl_gen (id int PRIMARY KEY, a int,
    doubled int GENERATED ALWAYS AS (a * 2) STORED, b text);
ALTER PUBLICATION ddl_pub ADD TABLE ddl_gen;
INSERT INTO ddl_gen (id, a, b) VALUES (1, 21, 'x');
UPDATE ddl_gen SET a = 22 WHERE id = 1;
ALTER TABLE ddl_gen ADD COLUMN tripled int GENERATED ALWAYS AS (a * 3) STORED;
INSERT INTO ddl_gen (id, a, b) VALUES (2, 5, 'y');
SELECT * FROM changes('ddl_slot', 'publication_names', 'ddl_pub');

-- a table dropped after its changes were made
CREATE TABLE ddl_gone (id int PRIMARY KEY, v text);
ALTER PUBLICATION ddl_pub ADD TABLE ddl_gone;
INSERT INTO ddl_gone VALUES (1, 'still decoded');
DROP TABLE ddl_gone;
SELECT * FROM changes('ddl_slot', 'publication_names', 'ddl_pub');

-- a renamed schema: the relation record is sent again with the new name,
-- also for a table whose own definition did not change
CREATE SCHEMA ddl_s2;
CREATE TABLE ddl_s2.t (id int PRIMARY KEY);
ALTER PUBLICATION ddl_pub ADD TABLE ddl_s2.t;
INSERT INTO ddl_s2.t VALUES (1);
ALTER SCHEMA ddl_s2 RENAME TO ddl_s3;
INSERT INTO ddl_s3.t VALUES (2);
BEGIN;
INSERT INTO ddl_s3.t VALUES (3);
ALTER SCHEMA ddl_s3 RENAME TO ddl_s4;
INSERT INTO ddl_s4.t VALUES (4);
COMMIT;
SELECT r->>'kind' AS kind, coalesce(r->>'relation', r->>'schema' || '.' || (r->>'table')) AS relation,
       r->'new' AS new
  FROM changes('ddl_slot', 'publication_names', 'ddl_pub') AS r
 WHERE r->>'kind' IN ('relation', 'insert');

SELECT pg_drop_replication_slot('ddl_slot');
DROP PUBLICATION ddl_pub;
DROP TABLE ddl_t, ddl_gen;
DROP SCHEMA ddl_s4 CASCADE;
