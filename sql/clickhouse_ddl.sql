\pset format unaligned
--
-- walship.clickhouse_ddl(): ClickHouse 18.16 target tables for the flat
-- NDJSON shape in the clickhouse_18 dialect (docs/clickhouse.md).  The DDL is
-- checked against a real ClickHouse by t/045_clickhouse_types.pl.
--
CREATE SCHEMA ch;
CREATE TYPE ch.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN ch.posint AS integer NOT NULL CHECK (VALUE > 0);
CREATE DOMAIN ch.money2 AS numeric(12,2);
CREATE DOMAIN ch.tags AS text[];

-- A realistic orders table, into a named database.
CREATE TABLE ch.orders (
    id         bigint PRIMARY KEY,
    customer   text NOT NULL,
    country    text,
    total      numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    note       text);
SELECT walship.clickhouse_ddl('ch.orders', 'analytics', 'clickhouse_18');

-- Every mapped type family: domains resolved (with their modifier and NOT
-- NULL), numeric without a fitting Decimal as Float64, arrays never
-- Nullable, dropped and generated columns left out (walship does not send
-- them), identifiers quoted with backticks.
CREATE TABLE ch.types (
    id int PRIMARY KEY, qty ch.posint, amount ch.money2, big numeric(40,2),
    anyn numeric, neg numeric(3,-1), wide numeric(2,4), m ch.mood,
    ts timestamp, tz timestamptz(3), d date, b bytea, j json, jb jsonb,
    u uuid, f4 real, f8 float8, bo bool, s2 int2, i8 int8, o oid, t text,
    vc varchar(10), c3 char(3), nm name, tm time, iv interval, ip inet,
    r int4range, ia int[] NOT NULL, ta text[], na numeric(5,1)[],
    tg ch.tags, "Odd `name"" \" text,
    dropped int,
    g int GENERATED ALWAYS AS (qty * 2) STORED);
ALTER TABLE ch.types DROP COLUMN dropped;
SELECT walship.clickhouse_ddl('ch.types', 'default', 'clickhouse_18');

-- The type mapping on its own.
SELECT t, walship.clickhouse_type(t::regtype, -1, 'clickhouse_18')
  FROM unnest('{bool,int2,int4,int8,oid,float4,float8,numeric,date,timestamp,timestamptz,uuid,text,bytea,json,jsonb,time,interval,inet,ch.mood,ch.posint,ch.money2,int[],ch.tags}'::text[]) AS t;
-- with a modifier: numeric(p,s) is Decimal(p,s) while p <= 38
SELECT p, s, walship.clickhouse_type('numeric', ((p << 16) | (s & 2047)) + 4, 'clickhouse_18')
  FROM (VALUES (12, 2), (38, 10), (39, 2), (10, 0), (3, -1), (37, -1), (2, 4)) AS v(p, s);
SELECT walship.clickhouse_type('numeric[]', ((12 << 16) | 2) + 4, 'clickhouse_18');

-- A composite primary key, in index order; REPLICA IDENTITY FULL keeps it.
CREATE TABLE ch.lines (line int, order_id bigint, sku text NOT NULL,
                       qty int NOT NULL, PRIMARY KEY (order_id, line));
ALTER TABLE ch.lines REPLICA IDENTITY FULL;
SELECT walship.clickhouse_ddl('ch.lines', 'shop', 'clickhouse_18');

-- REPLICA IDENTITY USING INDEX: deletes carry the index's columns, so the
-- table is ordered by them, not by the primary key.
CREATE TABLE ch.events (id bigserial PRIMARY KEY, source text NOT NULL,
                        seq int NOT NULL, payload jsonb);
CREATE UNIQUE INDEX events_source_seq ON ch.events (source, seq);
ALTER TABLE ch.events REPLICA IDENTITY USING INDEX events_source_seq;
SELECT walship.clickhouse_ddl('ch.events', 'shop', 'clickhouse_18');

-- A partitioned table has its primary key too.
CREATE TABLE ch.measures (at date NOT NULL, sensor int NOT NULL, v float8,
                          PRIMARY KEY (sensor, at)) PARTITION BY RANGE (at);
SELECT walship.clickhouse_ddl('ch.measures', 'default', 'clickhouse_18');

-- The key is the index's key columns, not its INCLUDE columns: rows with
-- the same key are versions of one row.
CREATE TABLE ch.incl (id int, v text NOT NULL, PRIMARY KEY (id) INCLUDE (v));
SELECT walship.clickhouse_ddl('ch.incl', 'default', 'clickhouse_18');

-- Errors (with their SQLSTATE).
\set SHOW_CONTEXT never
-- no primary key, no replica identity index: ReplacingMergeTree needs a key
CREATE TABLE ch.nokey (a int, b text);
SELECT walship.clickhouse_ddl('ch.nokey', 'default', 'clickhouse_18');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ch.nokey REPLICA IDENTITY FULL;
SELECT walship.clickhouse_ddl('ch.nokey', 'default', 'clickhouse_18');
\echo :LAST_ERROR_SQLSTATE
-- a column named like walship's metadata would give a duplicate JSON key
CREATE TABLE ch.clash (id int PRIMARY KEY, _version int);
SELECT walship.clickhouse_ddl('ch.clash', 'default', 'clickhouse_18');
\echo :LAST_ERROR_SQLSTATE
-- not a table
CREATE VIEW ch.v AS SELECT 1 AS x;
SELECT walship.clickhouse_ddl('ch.v', 'default', 'clickhouse_18');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.clickhouse_ddl('ch.no_such_table', 'default', 'clickhouse_18');
\set SHOW_CONTEXT errors

-- A name with a line break stays out of the comment lines.
CREATE TABLE ch."two
lines" (id int PRIMARY KEY);
SELECT walship.clickhouse_ddl('ch."two
lines"', 'default', 'clickhouse_18');

-- The clickhouse dialect (ClickHouse 22.x and later; the default):
-- DateTime64(6, 'UTC'), Date32, Bool, Decimal up to 76 digits, numeric
-- without a fitting Decimal as String, ReplacingMergeTree(_version,
-- _deleted) with a deduplication window for insert_deduplication_token.
-- t/046_clickhouse26_types.pl checks it against ClickHouse 26.
SELECT walship.clickhouse_ddl('ch.orders', 'analytics');
SELECT walship.clickhouse_ddl('ch.types', 'default', 'clickhouse');
SELECT t, walship.clickhouse_type(t::regtype)
  FROM unnest('{bool,int2,int4,int8,oid,float4,float8,numeric,date,timestamp,timestamptz,uuid,text,bytea,json,jsonb,time,interval,inet,ch.mood,ch.posint,ch.money2,int[],date[],ch.tags}'::text[]) AS t;
SELECT p, s, walship.clickhouse_type('numeric', ((p << 16) | (s & 2047)) + 4)
  FROM (VALUES (12, 2), (38, 10), (39, 2), (76, 10), (77, 2), (3, -1), (2, 4)) AS v(p, s);
-- only the ClickHouse dialects have ClickHouse types
\set SHOW_CONTEXT never
SELECT walship.clickhouse_type('int4', -1, 'standard');
\echo :LAST_ERROR_SQLSTATE
SELECT walship.clickhouse_ddl('ch.orders', 'analytics', 'clickhouse_26');
\echo :LAST_ERROR_SQLSTATE
\set SHOW_CONTEXT errors

DROP SCHEMA ch CASCADE;
