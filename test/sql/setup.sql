\pset format unaligned
--
-- Helpers shared by the regression tests (run first).
--
-- stable_json() removes what changes from run to run (xids, LSNs, commit
-- times, OIDs of objects the tests create) so expected output is exact.
-- changes() consumes a slot and returns its records as stable jsonb, with
-- relation and column names resolved by walship.decode_stream().
--
CREATE FUNCTION stable_json(r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN r->>'kind' = 'relation' THEN
    (r - 'oid') || jsonb_build_object('columns',
        (SELECT coalesce(jsonb_agg(CASE WHEN (c->>'type_oid')::bigint >= 16384
                                        THEN c - 'type_oid' ELSE c END
                                   ORDER BY o), '[]'::jsonb)
           FROM jsonb_array_elements(r->'columns') WITH ORDINALITY AS x(c, o)))
  ELSE r - '{xid,commit_lsn,end_lsn,commit_time,lsn}'::text[]
END
$$;

CREATE FUNCTION changes(slot name, VARIADIC options text[] DEFAULT '{publication_names,p}')
RETURNS SETOF jsonb
LANGUAGE sql AS $$
SELECT stable_json(r)
  FROM walship.decode_stream(
         (SELECT coalesce(string_agg(c.data, ''::bytea ORDER BY c.n), ''::bytea)
            FROM pg_logical_slot_get_binary_changes(slot, NULL, NULL, VARIADIC options)
                 WITH ORDINALITY AS c(lsn, xid, data, n))) AS r
$$;

-- The extension is in place and the plugin loads without preloading.
SELECT extname, extversion FROM pg_extension WHERE extname = 'walship';
SHOW shared_preload_libraries;
SELECT 'init' FROM pg_create_logical_replication_slot('setup_slot', 'walship');
CREATE TABLE setup_t (id int PRIMARY KEY, v text);
CREATE PUBLICATION p FOR TABLE setup_t;
INSERT INTO setup_t VALUES (1, 'one');
SELECT * FROM changes('setup_slot');
SELECT pg_drop_replication_slot('setup_slot');
DROP PUBLICATION p;
DROP TABLE setup_t;
