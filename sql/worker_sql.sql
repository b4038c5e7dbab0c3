\pset format unaligned
--
-- The worker's SQL surface when the library is not preloaded (as in this
-- test instance), and its privileges.
--
-- Without shared_preload_libraries there is no worker: clear errors.
SELECT * FROM walship.status;
SELECT walship.pause();
-- The catalog exists and is registered for pg_dump.
SELECT c.relname, c.oid IN (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'walship') AS dumped
  FROM pg_class c WHERE c.relnamespace = 'walship'::regnamespace AND c.relkind IN ('r', 'S', 'v')
 ORDER BY 1;
-- Role for operators.
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'walship_admin';
-- The columns of walship.status (README, "Monitoring: walship.status").
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute WHERE attrelid = 'walship.status'::regclass AND attnum > 0
 ORDER BY attnum;
-- The extension's schema is the one CREATE EXTENSION made: owned by the
-- extension's owner, and nobody else may create objects in it.
SELECT n.nspowner = e.extowner AS owned_by_extension_owner,
       (SELECT array_agg(a.privilege_type || ' to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                                          WHEN a.grantee = n.nspowner THEN 'owner'
                                                          ELSE a.grantee::regrole::text END
                         ORDER BY 1)
          FROM aclexplode(n.nspacl) a) AS privileges
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'walship';
--
-- CREATE EXTENSION takes an existing schema walship only if a superuser
-- owns it, it is empty and nobody else may create objects in it (in a
-- database of its own: this one has the extension).
--
\set regress_db :DBNAME
\set SHOW_CONTEXT never
CREATE ROLE walship_db_owner;
CREATE DATABASE walship_schema_test OWNER walship_db_owner;
\c walship_schema_test
-- a database owner makes the schema, and plants an object in it
SET ROLE walship_db_owner;
CREATE SCHEMA walship;
CREATE VIEW walship.progress AS SELECT 1 AS planted;
RESET ROLE;
CREATE EXTENSION walship;
\echo :LAST_ERROR_SQLSTATE
-- handed over to a superuser, it still holds what the owner put there
ALTER SCHEMA walship OWNER TO CURRENT_USER;
CREATE EXTENSION walship;
\echo :LAST_ERROR_SQLSTATE
-- empty, but the old owner may still create objects in it
DROP VIEW walship.progress;
GRANT CREATE ON SCHEMA walship TO walship_db_owner;
CREATE EXTENSION walship;
\echo :LAST_ERROR_SQLSTATE
-- as safe as a new one: taken
REVOKE CREATE ON SCHEMA walship FROM walship_db_owner;
CREATE EXTENSION walship;
-- DROP EXTENSION leaves the schema (PostgreSQL never drops the schema a
-- control file names); CREATE EXTENSION takes it again
DROP EXTENSION walship;
SELECT nspname, nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS ours,
       (SELECT count(*) FROM pg_depend WHERE refobjid = n.oid AND refclassid = 'pg_namespace'::regclass) AS objects
  FROM pg_namespace n WHERE nspname = 'walship';
CREATE EXTENSION walship;
DROP EXTENSION walship;
DROP SCHEMA walship;
-- a new schema other roles may create objects in (default privileges): refused
ALTER DEFAULT PRIVILEGES GRANT CREATE ON SCHEMAS TO walship_db_owner;
CREATE EXTENSION walship;
\echo :LAST_ERROR_SQLSTATE
ALTER DEFAULT PRIVILEGES REVOKE CREATE ON SCHEMAS FROM walship_db_owner;
SELECT count(*) AS schemas_left FROM pg_namespace WHERE nspname = 'walship';
-- an existing walship_admin that can log in (or has any attribute) is refused
ALTER ROLE walship_admin LOGIN;
CREATE EXTENSION walship;
\echo :LAST_ERROR_SQLSTATE
-- one that roles other than superusers may grant is used, with a warning
ALTER ROLE walship_admin NOLOGIN;
CREATE ROLE walship_granter;
GRANT walship_admin TO walship_granter WITH ADMIN OPTION;
CREATE EXTENSION walship;
DROP ROLE walship_granter;
SELECT extname FROM pg_extension WHERE extname = 'walship';
\c :regress_db
DROP DATABASE walship_schema_test;
DROP ROLE walship_db_owner;
\set SHOW_CONTEXT errors
-- Privileges: everyone may decode and read the status view; only
-- walship_admin may pause, resume and read the catalog.
CREATE ROLE walship_plain_user;
CREATE ROLE walship_operator IN ROLE walship_admin;
SELECT r.rolname, f.fn, has_function_privilege(r.rolname, f.fn, 'EXECUTE') AS can_execute
  FROM (VALUES ('walship_plain_user'), ('walship_operator')) r(rolname),
       (VALUES ('walship.pause()'), ('walship.resume()'), ('walship.decode(bytea)'),
               ('walship.decode_stream(bytea)'), ('walship.encode_ndjson(bytea,text,text)')) f(fn)
 ORDER BY 1, 2;
SELECT r.rolname, t.tbl, has_table_privilege(r.rolname, t.tbl, 'SELECT') AS can_select
  FROM (VALUES ('walship_plain_user'), ('walship_operator')) r(rolname),
       (VALUES ('walship.status'), ('walship.progress'), ('walship.dead_letter')) t(tbl)
 ORDER BY 1, 2;
SET ROLE walship_plain_user;
SELECT walship.pause();
SELECT count(*) FROM walship.progress;
SELECT walship.decode('\x4312000000000000000000000000000000000000'::bytea)->>'kind' AS decodes;
RESET ROLE;
DROP ROLE walship_plain_user;
DROP ROLE walship_operator;
