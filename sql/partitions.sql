\pset format unaligned
--
-- Partitioned tables, published as their leaf partitions or, with
-- publish_via_partition_root, as the root.
--
CREATE TABLE part_root (id int, region text, v text, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE part_eu PARTITION OF part_root FOR VALUES IN ('eu');
CREATE TABLE part_us PARTITION OF part_root FOR VALUES IN ('us')
    PARTITION BY RANGE (id);
CREATE TABLE part_us_low PARTITION OF part_us FOR VALUES FROM (0) TO (100);
CREATE TABLE part_us_high PARTITION OF part_us FOR VALUES FROM (100) TO (1000);
-- a partition whose columns are in another order, after a dropped column
CREATE TABLE part_asia (dropme int, v text, region text NOT NULL, id int NOT NULL);
ALTER TABLE part_asia DROP COLUMN dropme;
ALTER TABLE part_root ATTACH PARTITION part_asia FOR VALUES IN ('asia');
CREATE PUBLICATION part_leaves FOR TABLE part_root;
CREATE PUBLICATION part_via_root FOR TABLE part_root
    WITH (publish_via_partition_root = true);
SELECT 'init' FROM pg_create_logical_replication_slot('part_slot', 'walship');
CREATE FUNCTION part_peek(slot name, VARIADIC options text[])
RETURNS SETOF jsonb
LANGUAGE sql AS $$
SELECT stable_json(r)
  FROM walship.decode_stream(
         (SELECT coalesce(string_agg(c.data, ''::bytea ORDER BY c.n), ''::bytea)
            FROM pg_logical_slot_peek_binary_changes(slot, NULL, NULL, VARIADIC options)
                 WITH ORDINALITY AS c(lsn, xid, data, n))) AS r
$$;

BEGIN;
INSERT INTO part_root VALUES (1, 'eu', 'one'), (2, 'us', 'two'),
    (200, 'us', 'two hundred'), (3, 'asia', 'three');
UPDATE part_root SET v = 'three!' WHERE id = 3;
-- moves a row to another partition: a delete and an insert
UPDATE part_root SET region = 'asia' WHERE id = 1;
-- moves a row between sub-partitions
UPDATE part_root SET id = 150 WHERE id = 2;
DELETE FROM part_root WHERE id = 200;
COMMIT;
-- the same changes, as the leaves and as the root
SELECT * FROM part_peek('part_slot', 'publication_names', 'part_leaves');
SELECT * FROM changes('part_slot', 'publication_names', 'part_via_root');

-- a partition published directly, and through its root: as the root when
-- the root's publication publishes via the root
CREATE PUBLICATION part_eu_only FOR TABLE part_eu;
INSERT INTO part_root VALUES (4, 'eu', 'four'), (5, 'asia', 'five');
SELECT * FROM part_peek('part_slot', 'publication_names', 'part_eu_only');
SELECT * FROM part_peek('part_slot', 'publication_names', 'part_eu_only,part_leaves');
SELECT * FROM changes('part_slot', 'publication_names', 'part_eu_only,part_via_root');

-- a key change inside the reordered partition: the old key maps to the
-- root's columns too; and a column list on the root
CREATE PUBLICATION part_root_cols FOR TABLE part_root (region, id)
    WITH (publish_via_partition_root = true, publish = 'insert, update');
UPDATE part_root SET id = 50 WHERE id = 5;
SELECT * FROM part_peek('part_slot', 'publication_names', 'part_leaves');
SELECT * FROM changes('part_slot', 'publication_names', 'part_root_cols');
DROP PUBLICATION part_root_cols;

-- TRUNCATE of the root
TRUNCATE part_root;
SELECT * FROM part_peek('part_slot', 'publication_names', 'part_leaves');
SELECT * FROM changes('part_slot', 'publication_names', 'part_via_root');
-- TRUNCATE of one partition
INSERT INTO part_root VALUES (6, 'eu', 'six');
TRUNCATE part_eu;
SELECT * FROM part_peek('part_slot', 'publication_names', 'part_leaves');
SELECT * FROM changes('part_slot', 'publication_names', 'part_via_root');

-- a partition attached and detached between changes
CREATE TABLE part_af (id int NOT NULL, region text NOT NULL, v text);
INSERT INTO part_af VALUES (7, 'af', 'not yet a partition');
ALTER TABLE part_root ATTACH PARTITION part_af FOR VALUES IN ('af');
INSERT INTO part_root VALUES (8, 'af', 'a partition');
ALTER TABLE part_root DETACH PARTITION part_af;
INSERT INTO part_af VALUES (9, 'af', 'no longer a partition');
SELECT * FROM part_peek('part_slot', 'publication_names', 'part_leaves');
SELECT * FROM changes('part_slot', 'publication_names', 'part_via_root');

SELECT pg_drop_replication_slot('part_slot');
DROP FUNCTION part_peek(name, text[]);
DROP PUBLICATION part_leaves, part_via_root, part_eu_only;
DROP TABLE part_root, part_af;
