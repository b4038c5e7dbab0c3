\pset format unaligned
--
-- walship.metrics() and its rows for prometheus-postgres-exporter without
-- the library preloaded (as in this test instance), and who may call them.
-- t/080_metrics.pl tests their values with a running worker.
--
SELECT walship.metrics();
SELECT * FROM walship.metrics_values();
SELECT * FROM walship.metrics_states();
SELECT * FROM walship.metrics_backfills();
-- SECURITY DEFINER with a fixed search_path; executable by walship_admin
-- and pg_monitor only (and the owner).
SELECT p.oid::regprocedure AS function, p.prosecdef, p.proconfig,
       array(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                         WHEN a.grantee = p.proowner THEN 'owner'
                         ELSE a.grantee::regrole::text END
               FROM aclexplode(p.proacl) a WHERE a.privilege_type = 'EXECUTE'
              ORDER BY 1) AS execute
  FROM pg_proc p
 WHERE p.pronamespace = 'walship'::regnamespace AND p.proname LIKE 'metrics%'
 ORDER BY 1;
CREATE ROLE walship_metrics_plain;
SET ROLE walship_metrics_plain;
SELECT walship.metrics();
RESET ROLE;
DROP ROLE walship_metrics_plain;
