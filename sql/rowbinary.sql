--
-- walship.encode_rowbinary(): the ClickHouse RowBinary requests the
-- shipping worker sends with walship.format = 'rowbinary' (rowbinary.c).
-- The table's columns of a row are shown as hex bytes (the metadata
-- columns after them hold LSNs and times that vary by run: only _op and
-- _deleted, at fixed offsets from the end, are shown).
--
CREATE TABLE rb_t (
    id int PRIMARY KEY, t text, n numeric(5,2), u uuid, d date, a int[],
    b bool NOT NULL DEFAULT true, big numeric(30,3), ts timestamptz,
    ba bytea, j jsonb);
CREATE TABLE rb_toast (id int PRIMARY KEY, note text);
ALTER TABLE rb_toast ALTER note SET STORAGE EXTERNAL;
CREATE PUBLICATION rb_pub FOR TABLE rb_t, rb_toast;
SELECT 'init' FROM pg_create_logical_replication_slot('rb_slot', 'walship');

INSERT INTO rb_t VALUES (1, 'ab', 1.5, '00112233-4455-6677-8899-aabbccddeeff',
    '1970-01-03', '{1,NULL}', true, -12345678901234567.125,
    '1970-01-01 00:00:01+00', '\x00ff', '{"k": 1}');
INSERT INTO rb_t (id) VALUES (2);
UPDATE rb_t SET id = 3 WHERE id = 2;        -- a delete row for key 2 first
DELETE FROM rb_t WHERE id = 1;              -- key only: defaults elsewhere
ALTER TABLE rb_t ADD COLUMN extra int2;     -- a new shape, a new request
INSERT INTO rb_t (id, extra) VALUES (4, -2);

CREATE TEMP TABLE rb_records AS
SELECT string_agg(data, ''::bytea ORDER BY n) AS records
  FROM pg_logical_slot_get_binary_changes('rb_slot', NULL, NULL,
       'publication_names', 'rb_pub') WITH ORDINALITY AS c(lsn, xid, data, n);

-- one request per table and shape, with the INSERT's column list
SELECT statement, rows, length(body) AS bytes
  FROM rb_records, walship.encode_rowbinary(records, 'shop', 'clickhouse_18');

-- The rows of the first request.  Each row ends with _op (String: length
-- 1, the letter), _lsn, _seq, _version (UInt64), _commit_ts (Int64) and
-- _deleted (UInt8): 36 bytes; the table's columns come before.
WITH req AS (
  SELECT body FROM rb_records, walship.encode_rowbinary(records, 'shop', 'clickhouse_18')
   WHERE rows = 5)
SELECT encode(substr(body, 1, 83), 'hex') AS row1_columns,
       encode(substr(body, 84, 2), 'hex') AS row1_op,
       get_byte(body, 83 + 34) AS row1_deleted,
       get_byte(body, length(body) - 1) AS last_deleted
  FROM req;

-- The clickhouse dialect (current ClickHouse): Bool, Date32, DateTime64(6)
-- as Int64 microseconds, _op LowCardinality(String).  Row 1's columns.
WITH req AS (
  SELECT statement, body FROM rb_records, walship.encode_rowbinary(records, 'shop', 'clickhouse')
   WHERE rows = 5)
SELECT statement, encode(substr(body, 1, 85), 'hex') AS row1_columns
  FROM req;

-- An UPDATE that leaves a TOASTed value unchanged does not carry it: no
-- RowBinary row can be written for it.
INSERT INTO rb_toast SELECT 1, string_agg(md5(i::text), '') FROM generate_series(1, 200) i;
UPDATE rb_toast SET id = id;
\set VERBOSITY terse
SELECT statement, rows FROM walship.encode_rowbinary(
  (SELECT string_agg(data, ''::bytea ORDER BY n)
     FROM pg_logical_slot_get_binary_changes('rb_slot', NULL, NULL,
          'publication_names', 'rb_pub') WITH ORDINALITY AS c(lsn, xid, data, n)), 'shop',
  'clickhouse_18');
\set VERBOSITY default

SELECT pg_drop_replication_slot('rb_slot');
DROP PUBLICATION rb_pub;
DROP TABLE rb_t, rb_toast;
