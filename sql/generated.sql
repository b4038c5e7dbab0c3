\pset format unaligned
--
-- Generated columns (PostgreSQL 18 and later): published when a column list
-- names them or when publish_generated_columns is 'stored', as in pgoutput.
-- Before 18 neither exists, and generated columns are never published.
--
SELECT current_setting('server_version_num')::int < 180000 AS skip_test \gset
\if :skip_test
\quit
\endif

CREATE TABLE gen (id int PRIMARY KEY, b int,
                  g int GENERATED ALWAYS AS (b * 2) STORED);
CREATE PUBLICATION gen_none FOR TABLE gen;
CREATE PUBLICATION gen_stored FOR TABLE gen
  WITH (publish_generated_columns = stored);
CREATE PUBLICATION gen_list FOR TABLE gen (id, g);
CREATE PUBLICATION gen_list_all FOR TABLE gen (id, b, g);
SELECT 'init' FROM pg_create_logical_replication_slot('gen_slot', 'walship');

CREATE FUNCTION gen_show(pubs text)
RETURNS TABLE (kind text, columns jsonb, data jsonb)
LANGUAGE sql AS $$
SELECT r->>'kind',
       (SELECT jsonb_agg(c->'name') FROM jsonb_array_elements(r->'columns') AS c),
       coalesce(r->'new', r->'old')
  FROM changes('gen_slot', 'publication_names', pubs) AS r
 WHERE r->>'kind' IN ('relation', 'insert', 'update', 'delete')
$$;

-- not published by default
INSERT INTO gen VALUES (1, 5);
SELECT * FROM gen_show('gen_none');
-- published with publish_generated_columns = stored
INSERT INTO gen VALUES (2, 6);
SELECT * FROM gen_show('gen_stored');
-- and when a column list names them
INSERT INTO gen VALUES (3, 7);
SELECT * FROM gen_show('gen_list');
-- a list of all the columns a publication without a list publishes is the
-- same as no list
INSERT INTO gen VALUES (4, 8);
SELECT * FROM gen_show('gen_list_all,gen_stored');
-- publications that disagree are an error, as in pgoutput
\set SHOW_CONTEXT never
INSERT INTO gen VALUES (5, 9);
SELECT * FROM gen_show('gen_none,gen_stored');
SELECT * FROM gen_show('gen_list_all,gen_none');
\set SHOW_CONTEXT errors
SELECT * FROM gen_show('gen_stored');

-- REPLICA IDENTITY FULL: PostgreSQL refuses UPDATE and DELETE while a
-- publication publishes them without the generated columns of the identity
ALTER TABLE gen REPLICA IDENTITY FULL;
UPDATE gen SET b = 10 WHERE id = 1;
DROP PUBLICATION gen_none, gen_list, gen_list_all;
UPDATE gen SET b = 10 WHERE id = 1;
DELETE FROM gen WHERE id = 2;
SELECT * FROM gen_show('gen_stored');

SELECT pg_drop_replication_slot('gen_slot');
DROP PUBLICATION gen_stored;
DROP TABLE gen;
DROP FUNCTION gen_show(text);
