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
