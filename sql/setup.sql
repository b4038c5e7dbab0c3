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

-- change_lsns() checks the change LSN ("lsn") of every INSERT, UPDATE and
-- DELETE in records, the rows of a slot in order: a valid, non-zero pg_lsn,
-- the same from walship.decode() alone as from walship.decode_stream(),
-- below the commit LSN of its transaction, and strictly increasing within
-- the transaction.  The tests show decode()'s output without "lsn", as it
-- varies from run to run.
CREATE FUNCTION change_lsns(records bytea[])
RETURNS TABLE (changes bigint, valid boolean, same_in_decode boolean,
               below_commit boolean, increasing boolean)
LANGUAGE sql AS $$
WITH s AS (
  SELECT d.n, d.r
    FROM walship.decode_stream(
           (SELECT string_agg(x, ''::bytea ORDER BY o)
              FROM unnest(records) WITH ORDINALITY AS u(x, o)))
         WITH ORDINALITY AS d(r, n)),
c AS (
  SELECT s.n, s.r->>'commit_lsn' AS commit_lsn,
         walship.decode(records[array_lower(records, 1) + s.n - 1])->>'lsn' AS decoded,
         CASE WHEN s.r->>'lsn' ~ '^[0-9A-F]{1,8}/[0-9A-F]{1,8}$'
                   AND s.r->>'lsn' <> '0/0'
              THEN (s.r->>'lsn')::pg_lsn END AS lsn
    FROM s
   WHERE s.r->>'kind' IN ('insert', 'update', 'delete')),
w AS (
  SELECT c.*, lag(lsn) OVER (PARTITION BY commit_lsn ORDER BY n) AS prev,
         row_number() OVER (PARTITION BY commit_lsn ORDER BY n) AS k
    FROM c)
SELECT count(*),
       coalesce(bool_and(lsn IS NOT NULL), false),
       coalesce(bool_and(coalesce(decoded::pg_lsn = lsn, false)), false),
       coalesce(bool_and(coalesce(lsn < commit_lsn::pg_lsn, false)), false),
       coalesce(bool_and(k = 1 OR coalesce(lsn > prev, false)), false)
  FROM w
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

--
-- Crafting walship records by hand (decode_errors, backfill): wire_uv() and
-- wire_sv() write unsigned and zigzag varints, wire_rec() frames a body,
-- wire_le64() writes 8 bytes little-endian.
--
CREATE FUNCTION wire_uv(v numeric) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result bytea := '';
BEGIN
    WHILE v >= 128 LOOP
        result := result || set_byte('\x00'::bytea, 0, (mod(v, 128) + 128)::int);
        v := div(v, 128);
    END LOOP;
    RETURN result || set_byte('\x00'::bytea, 0, v::int);
END
$$;
CREATE FUNCTION wire_sv(v numeric) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT wire_uv(CASE WHEN v >= 0 THEN 2 * v ELSE -2 * v - 1 END)
$$;
CREATE FUNCTION wire_rec(kind text, body bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT convert_to(kind, 'UTF8') || wire_uv(length(body)) || body
$$;
CREATE FUNCTION wire_le64(v numeric) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
SELECT string_agg(set_byte('\x00'::bytea, 0, mod(div(v, 256::numeric ^ k), 256)::int), ''::bytea ORDER BY k)
  FROM generate_series(0, 7) AS k
$$;
