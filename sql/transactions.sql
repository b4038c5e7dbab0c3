\pset format unaligned
--
-- Transaction boundaries: BEGIN and COMMIT around the published changes of
-- each committed transaction, nothing for rolled back work.
--
CREATE TABLE txn_t (id int PRIMARY KEY, v text);
CREATE TABLE txn_big (id int PRIMARY KEY);
CREATE PUBLICATION txn_pub FOR TABLE txn_t, txn_big;
SELECT 'init' FROM pg_create_logical_replication_slot('txn_slot', 'walship');

-- a rolled back transaction emits nothing
BEGIN;
INSERT INTO txn_t VALUES (1, 'rolled back');
UPDATE txn_t SET v = 'still rolled back';
ROLLBACK;
SELECT * FROM changes('txn_slot', 'publication_names', 'txn_pub');

-- savepoints: what is rolled back to a savepoint is gone, what is released
-- stays; ordinals count the changes decoded, so they stay contiguous
BEGIN;
INSERT INTO txn_t VALUES (1, 'kept');
SAVEPOINT s1;
INSERT INTO txn_t VALUES (2, 'rolled back to s1');
UPDATE txn_t SET v = 'rolled back to s1' WHERE id = 1;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO txn_t VALUES (3, 'after rollback to s1');
SAVEPOINT s2;
INSERT INTO txn_t VALUES (4, 'released');
SAVEPOINT s3;
DELETE FROM txn_t WHERE id = 3;
RELEASE SAVEPOINT s3;
RELEASE SAVEPOINT s2;
SAVEPOINT s4;
INSERT INTO txn_t VALUES (5, 'nested, rolled back');
SAVEPOINT s5;
INSERT INTO txn_t VALUES (6, 'nested deeper, rolled back');
ROLLBACK TO SAVEPOINT s4;
UPDATE txn_t SET v = 'kept, updated' WHERE id = 1;
COMMIT;
SELECT * FROM changes('txn_slot', 'publication_names', 'txn_pub');

-- a transaction whose changes were all rolled back to a savepoint emits
-- nothing
BEGIN;
SAVEPOINT s1;
INSERT INTO txn_t VALUES (7, 'rolled back to s1');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT * FROM changes('txn_slot', 'publication_names', 'txn_pub');

-- several transactions, each with its own begin, commit and count
INSERT INTO txn_t VALUES (10, 'single');
BEGIN;
INSERT INTO txn_t VALUES (11, 'first of two');
INSERT INTO txn_t VALUES (12, 'second of two');
COMMIT;
BEGIN;
UPDATE txn_t SET v = 'updated' WHERE id IN (10, 11, 12);
DELETE FROM txn_t WHERE id = 1;
COMMIT;
SELECT * FROM changes('txn_slot', 'publication_names', 'txn_pub');

-- a large transaction, checked through aggregates: the n-th row inserted
-- is change n
INSERT INTO txn_big SELECT g FROM generate_series(1, 100000) AS g;
SELECT count(*) FILTER (WHERE r->>'kind' = 'begin') AS begins,
       count(*) FILTER (WHERE r->>'kind' = 'relation') AS relations,
       count(*) FILTER (WHERE r->>'kind' = 'insert') AS inserts,
       sum((r->'new'->>'id')::bigint) AS id_sum,
       count(DISTINCT r->'new'->>'id') AS distinct_ids,
       min((r->>'ordinal')::bigint) AS min_ordinal,
       max((r->>'ordinal')::bigint) AS max_ordinal,
       count(DISTINCT r->>'ordinal') AS distinct_ordinals,
       max((r->>'changes')::bigint) FILTER (WHERE r->>'kind' = 'commit') AS commit_changes,
       count(*) FILTER (WHERE r->>'kind' = 'commit') AS commits,
       count(*) FILTER (WHERE r->>'kind' = 'insert' AND
                        (r->>'ordinal')::bigint <> (r->'new'->>'id')::bigint) AS ordinal_not_row
  FROM changes('txn_slot', 'publication_names', 'txn_pub') AS r;

SELECT pg_drop_replication_slot('txn_slot');
DROP PUBLICATION txn_pub;
DROP TABLE txn_t, txn_big;
