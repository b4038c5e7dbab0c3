/* walship--0.1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION walship" to load this file. \quit

-- The worker runs as a superuser, so its schema must be one nobody else
-- controls.  PostgreSQL creates the schema the control file names when it
-- does not exist (owned by the role running CREATE EXTENSION, recorded as
-- a dependency of the extension, not a member), and takes an existing one
-- as it is.  An existing schema is accepted only if it is as safe as a new
-- one: owned by a superuser, empty, and no other role may create objects in
-- it.  That is the case of the schema DROP EXTENSION leaves behind, and of
-- the one pg_dump recreates before CREATE EXTENSION on a restore; a schema
-- a database owner made (who could rename it, or plant objects under the
-- names the extension uses) is refused.
DO $$
DECLARE
    s record;
BEGIN
    SELECT n.nspname, n.nspowner::pg_catalog.regrole AS owner, o.rolsuper AS owner_is_superuser,
           EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                      AND d.refobjid OPERATOR(pg_catalog.=) n.oid
                      AND NOT (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
                               AND d.objid OPERATOR(pg_catalog.=) e.oid)) AS holds_objects,
           EXISTS (SELECT FROM pg_catalog.aclexplode(n.nspacl) a
                    WHERE a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
                      AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner) AS others_may_create
      INTO s
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
      JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) n.nspowner
     WHERE e.extname OPERATOR(pg_catalog.=) 'walship';
    IF NOT s.owner_is_superuser THEN
        RAISE EXCEPTION 'schema "%" already exists and is owned by role %, which is not a superuser', s.nspname, s.owner
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'The walship worker runs as a superuser: whoever owns its schema could make it run their code.',
                  HINT = pg_catalog.format('Check what schema %I holds, drop or rename it, and run CREATE EXTENSION walship again.', s.nspname);
    END IF;
    IF s.holds_objects THEN
        RAISE EXCEPTION 'schema "%" already exists and is not empty', s.nspname
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'walship takes an existing schema only when it holds nothing: objects someone else created in it could make the walship worker, which runs as a superuser, run their code.',
                  HINT = pg_catalog.format('Check what schema %I holds and who created it, drop or rename it, and run CREATE EXTENSION walship again.', s.nspname);
    END IF;
    IF s.others_may_create THEN
        RAISE EXCEPTION 'roles other than its owner may create objects in schema "%"', s.nspname
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The walship worker runs as a superuser: whoever may create objects in its schema could make it run their code.',
                  HINT = pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM the roles that have it (and check the default privileges for schemas, ALTER DEFAULT PRIVILEGES ... ON SCHEMAS), and run CREATE EXTENSION walship again.', s.nspname);
    END IF;
END
$$;

-- Operators of the shipping worker: may pause and resume it, queue
-- backfills, and see endpoint details, the last error, the progress
-- catalog and dead letters.  Roles are shared by every database of the
-- cluster: an existing walship_admin (walship installed in another
-- database, or created by someone else) is used as it is, once checked:
-- one that can log in or has any role attribute walship would never give
-- it is refused; roles that may grant it (ADMIN OPTION) without being
-- superusers are named in a warning (a CREATEROLE role that created it
-- on PostgreSQL 16 and later holds that option).
DO $$
DECLARE
    r       record;
    admins  text;
BEGIN
    SELECT * INTO r FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'walship_admin';
    IF NOT FOUND THEN
        CREATE ROLE walship_admin NOLOGIN;
        RETURN;
    END IF;
    IF r.rolsuper OR r.rolcanlogin OR r.rolcreaterole OR r.rolcreatedb
       OR r.rolreplication OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role "walship_admin" already exists with attributes walship does not give it'
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'walship creates walship_admin NOLOGIN and without any other attribute: its members operate the walship worker and read the batches the endpoint rejected.',
                  HINT = 'Check who created the role and who is a member of it; then drop it, or ALTER ROLE walship_admin NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS, and run CREATE EXTENSION walship again.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.rolname), ', ' ORDER BY a.rolname)
      INTO admins
      FROM pg_catalog.pg_auth_members m
      JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) m.member
     WHERE m.roleid OPERATOR(pg_catalog.=) r.oid AND m.admin_option AND NOT a.rolsuper;
    IF admins IS NOT NULL THEN
        RAISE WARNING 'roles that are not superusers may grant membership in the existing role "walship_admin": %', admins
            USING DETAIL = 'Members of walship_admin operate the walship worker of this database too, and read the batches its endpoint rejects.',
                  HINT = 'If that is not intended, REVOKE ADMIN OPTION FOR walship_admin FROM those roles.';
    END IF;
END
$$;

GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

CREATE FUNCTION decode(record bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'walship_decode'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION decode(bytea) IS
'Decodes one walship binary change record into jsonb';

CREATE FUNCTION decode_stream(records bytea)
RETURNS SETOF jsonb
AS 'MODULE_PATHNAME', 'walship_decode_stream'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION decode_stream(bytea) IS
'Decodes concatenated walship binary change records into jsonb, one row per record, with relation names resolved';

CREATE FUNCTION encode_ndjson(records bytea, shape text DEFAULT 'envelope',
                              dialect text DEFAULT 'standard')
RETURNS text
AS 'MODULE_PATHNAME', 'walship_encode_ndjson'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION encode_ndjson(bytea, text, text) IS
'Encodes concatenated walship binary change records as NDJSON as the shipping worker sends them: shape ''envelope'' or ''flat'', dialect ''standard'', ''clickhouse'' (ClickHouse 22.x and later) or ''clickhouse_18'' (ClickHouse 18.16)';

-- The shipping worker's durable progress, one row per slot.
CREATE TABLE progress (
    slot_name        text PRIMARY KEY,
    confirmed_lsn    pg_lsn NOT NULL,
    batches          bigint NOT NULL DEFAULT 0,
    changes          bigint NOT NULL DEFAULT 0,
    bytes            bigint NOT NULL DEFAULT 0,
    retries          bigint NOT NULL DEFAULT 0,
    rejected_batches bigint NOT NULL DEFAULT 0,
    last_success_at  timestamptz,
    last_error       text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    gap_start_lsn    pg_lsn,
    gap_end_lsn      pg_lsn,
    gap_detected_at  timestamptz,
    resyncs          bigint NOT NULL DEFAULT 0,
    resync_state     text CHECK (resync_state IN ('pending', 'running', 'done', 'incomplete')),
    resync_version   pg_lsn
);

COMMENT ON TABLE progress IS
'Progress of the walship worker: LSN confirmed after acknowledgement, and totals';
COMMENT ON COLUMN progress.gap_start_lsn IS 'The last lost slot: changes from here on may never have been shipped';
COMMENT ON COLUMN progress.gap_end_lsn IS 'The last lost slot: where its replacement starts (the end of the gap)';
COMMENT ON COLUMN progress.resync_state IS 'The resync after the last lost slot: pending (starting), running (backfilling), done, incomplete (a backfill failed or was cancelled)';
COMMENT ON COLUMN progress.resync_version IS 'The version of the last resync: rows with a lower version that were not sent again are gone';

-- Batches the endpoint rejected permanently, with walship.on_rejected = dead_letter.
CREATE TABLE dead_letter (
    id               bigserial PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    first_change     text NOT NULL,
    last_change      text NOT NULL,
    changes          integer NOT NULL,
    endpoint         text NOT NULL,
    content_type     text NOT NULL,
    content_encoding text,
    records          bytea NOT NULL,
    body             bytea NOT NULL,
    http_status      integer,
    error            text,
    response         text
);

COMMENT ON TABLE dead_letter IS
'Batches the endpoint rejected permanently; records decode with walship.decode_stream()';
COMMENT ON COLUMN dead_letter.records IS 'The batch as walship binary records';
COMMENT ON COLUMN dead_letter.body IS 'The request body as sent (encoded and compressed)';
COMMENT ON COLUMN dead_letter.endpoint IS 'The URL the body was sent to, without any user:password part';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.progress', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.dead_letter', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.dead_letter_id_seq', '');

REVOKE ALL ON progress, dead_letter FROM PUBLIC;
GRANT SELECT ON progress TO walship_admin;
GRANT SELECT, DELETE ON dead_letter TO walship_admin;

CREATE FUNCTION status_internal(
    OUT state text,
    OUT paused boolean,
    OUT worker_pid integer,
    OUT database text,
    OUT slot_name text,
    OUT publication text,
    OUT endpoint text,
    OUT format text,
    OUT confirmed_lsn pg_lsn,
    OUT current_lsn pg_lsn,
    OUT lag_bytes bigint,
    OUT retained_wal_bytes bigint,
    OUT wal_status text,
    OUT safe_wal_size bigint,
    OUT freshness_seconds double precision,
    OUT batches_shipped bigint,
    OUT changes_shipped bigint,
    OUT bytes_shipped bigint,
    OUT retries bigint,
    OUT rejected_batches bigint,
    OUT inflight integer,
    OUT last_http_status integer,
    OUT last_success_at timestamptz,
    OUT last_error text,
    OUT last_error_at timestamptz,
    OUT started_at timestamptz,
    OUT decoded_lsn pg_lsn,
    OUT gap_start_lsn pg_lsn,
    OUT gap_end_lsn pg_lsn,
    OUT gap_detected_at timestamptz,
    OUT resyncs bigint,
    OUT resync_state text,
    OUT max_retained_wal bigint,
    OUT wal_budget text,
    OUT slot_given_up_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'walship_status_internal'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW status AS SELECT * FROM status_internal();

COMMENT ON VIEW status IS
'State of the walship shipping worker; endpoint and last_error shown to walship_admin only';

GRANT SELECT ON status TO PUBLIC;

CREATE FUNCTION pause()
RETURNS void
AS 'MODULE_PATHNAME', 'walship_pause'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION pause() IS
'Stops the walship worker from sending new batches; requests in flight finish';

CREATE FUNCTION resume()
RETURNS void
AS 'MODULE_PATHNAME', 'walship_resume'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION resume() IS 'Lets a paused walship worker ship again';

REVOKE ALL ON FUNCTION pause(), resume() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pause(), resume() TO walship_admin;

-- Backfills: the rows a table already holds, read in key order in chunks by
-- the shipping worker and shipped as READ records, consistently with the
-- change stream (docs/backfill.md).  The worker reads each table as the
-- role that queued its backfill.
CREATE TABLE backfills (
    id           bigserial PRIMARY KEY,
    relation     oid NOT NULL,
    schema_name  text NOT NULL,
    table_name   text NOT NULL,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'cancelled', 'failed')),
    chunk_size   integer NOT NULL CHECK (chunk_size BETWEEN 1 AND 1000000),
    condition    text,
    queued_by    oid NOT NULL,
    chunks_done  bigint NOT NULL DEFAULT 0,
    rows_sent    bigint NOT NULL DEFAULT 0,
    last_key     text[],
    error        text,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    resync_version pg_lsn
);

COMMENT ON TABLE backfills IS
'Backfills queued with walship.backfill(): state, chunks and rows acknowledged by the endpoint, the last key shipped, errors';
COMMENT ON COLUMN backfills.relation IS 'OID of the table; the names are kept in case it is dropped';
COMMENT ON COLUMN backfills.condition IS 'Optional WHERE condition: only matching rows are backfilled';
COMMENT ON COLUMN backfills.queued_by IS 'Role the worker reads the table as';
COMMENT ON COLUMN backfills.resync_version IS 'Set when the backfill is part of a resync after a lost slot: its last chunk ends with a RESYNC record of this version';
COMMENT ON COLUMN backfills.last_key IS 'Key of the last row read in the last acknowledged chunk; the backfill resumes after it';

-- one active backfill per table
CREATE UNIQUE INDEX backfills_active ON backfills (relation)
    WHERE state IN ('queued', 'running');

-- A backfill is read as the role that queued it, whoever inserts the row.
CREATE FUNCTION backfills_enforce_queued_by()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.queued_by := (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user);
    NEW.state := 'queued';
    NEW.chunks_done := 0;
    NEW.rows_sent := 0;
    NEW.last_key := NULL;
    NEW.error := NULL;
    NEW.started_at := NULL;
    NEW.finished_at := NULL;
    NEW.resync_version := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER backfills_enforce_queued_by BEFORE INSERT ON backfills
    FOR EACH ROW EXECUTE FUNCTION backfills_enforce_queued_by();

REVOKE ALL ON backfills FROM PUBLIC;
GRANT SELECT ON backfills TO walship_admin;
GRANT INSERT (relation, schema_name, table_name, chunk_size, condition)
    ON backfills TO walship_admin;
GRANT USAGE ON SEQUENCE backfills_id_seq TO walship_admin;

CREATE FUNCTION check_backfill_condition(condition text)
RETURNS void
AS 'MODULE_PATHNAME', 'walship_check_backfill_condition'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

REVOKE ALL ON FUNCTION check_backfill_condition(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION check_backfill_condition(text) TO walship_admin;

COMMENT ON FUNCTION check_backfill_condition(text) IS
'Raises an error unless the text is one expression: balanced parentheses, no semicolon';

CREATE FUNCTION notify_backfill()
RETURNS void
AS 'MODULE_PATHNAME', 'walship_notify_backfill'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION notify_backfill() IS
'Tells the worker a backfill was queued, so that it starts as soon as the transaction commits';

REVOKE ALL ON FUNCTION notify_backfill() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION notify_backfill() TO walship_admin;

CREATE FUNCTION backfill(relation regclass, chunk_size integer DEFAULT 10000,
                         condition text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel       record;
    pubs      text[];
    published boolean;
    active    bigint;
    job       bigint;
BEGIN
    IF relation IS NULL THEN
        RAISE EXCEPTION 'the table to backfill must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_has_role(current_user, 'walship_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to backfill table %', relation
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only superusers and members of walship_admin may queue backfills.',
                  HINT = 'Ask an administrator to GRANT walship_admin TO your role.';
    END IF;
    IF NOT has_table_privilege(relation, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %', relation
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The worker reads the table as the role that queues the backfill, which needs the SELECT privilege on it.';
    END IF;
    IF chunk_size IS NULL OR chunk_size NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'invalid chunk size %', coalesce(chunk_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a chunk size between 1 and 1000000 rows.';
    END IF;

    SELECT c.oid, c.relkind, c.relreplident, n.nspname, c.relname,
           c.relispartition,
           EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
           EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS has_ri_index
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = relation;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Only tables and partitioned tables can be backfilled.';
    END IF;

    pubs := ARRAY(SELECT (parse_ident(btrim(p)))[1]
                    FROM unnest(string_to_array(coalesce(current_setting('walship.publication', true), 'walship'), ',')) p);
    published := EXISTS (
        SELECT FROM pg_publication_tables t JOIN pg_publication p ON p.pubname = t.pubname
         WHERE t.pubname = ANY (pubs) AND p.pubinsert
           AND t.schemaname = rel.nspname AND t.tablename = rel.relname);
    IF NOT published THEN
        IF rel.relkind = 'p' AND EXISTS (
               SELECT FROM pg_publication_tables t
                WHERE t.pubname = ANY (pubs)
                  AND format('%I.%I', t.schemaname, t.tablename)::regclass
                      IN (SELECT pt.relid FROM pg_partition_tree(relation) pt WHERE pt.isleaf)) THEN
            RAISE EXCEPTION 'walship publishes the partitions of table % one by one', relation
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Backfill each partition, or run walship.backfill_publication(); with publish_via_partition_root the partitioned table itself can be backfilled.';
        END IF;
        RAISE EXCEPTION 'table % is not published by walship.publication "%"',
                relation, coalesce(current_setting('walship.publication', true), 'walship')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A backfill ships rows as inserts of a table the worker''s publication publishes inserts of.',
                  HINT = 'Add the table to the publication, or change walship.publication.';
    END IF;

    IF rel.relreplident = 'n' THEN
        RAISE EXCEPTION 'table % has REPLICA IDENTITY NOTHING', relation
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A backfill matches its rows with changes by the key the changes carry, and under REPLICA IDENTITY NOTHING deletes carry none.',
                  HINT = 'Set REPLICA IDENTITY DEFAULT (with a primary key) or USING INDEX.';
    END IF;
    IF (rel.relreplident IN ('d', 'f') AND NOT rel.has_pk)
       OR (rel.relreplident = 'i' AND NOT rel.has_ri_index) THEN
        RAISE EXCEPTION 'table % has no primary key', relation
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A backfill reads the table in key order, and matches its rows with changes by the key the changes carry.',
                  HINT = 'Add a primary key, or set REPLICA IDENTITY USING INDEX on a unique index of NOT NULL columns.';
    END IF;

    IF condition IS NOT NULL THEN
        -- checked here, as the calling role; the worker reads as that role too
        PERFORM @extschema@.check_backfill_condition(condition);
        EXECUTE format(E'SELECT FROM %s WHERE (\n%s\n) LIMIT 0', relation, condition);
    END IF;

    SELECT b.id INTO active FROM @extschema@.backfills b
     WHERE b.relation = rel.oid AND b.state IN ('queued', 'running');
    IF FOUND THEN
        RAISE EXCEPTION 'table % already has a backfill in progress', relation
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Backfill %s is queued or running.', active),
                  HINT = format('Wait for it, or cancel it with walship.cancel_backfill(%s).', active);
    END IF;

    INSERT INTO @extschema@.backfills (relation, schema_name, table_name, chunk_size, condition)
    VALUES (rel.oid, rel.nspname, rel.relname, chunk_size, condition)
    RETURNING id INTO job;
    PERFORM @extschema@.notify_backfill();
    RETURN job;
END
$$;

COMMENT ON FUNCTION backfill(regclass, integer, text) IS
'Queues a backfill of a table: its rows are shipped as READ records, in key order, consistently with the change stream';

-- SECURITY DEFINER: walship_admin may not change backfills otherwise (a
-- backfill set back to queued would be read again as the role that queued
-- it); EXECUTE is granted to walship_admin only.
CREATE FUNCTION cancel_backfill(id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.backfills b
       SET state = 'cancelled', finished_at = now(), updated_at = now()
     WHERE b.id = cancel_backfill.id AND b.state IN ('queued', 'running');
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- the worker looks at once: a resync may end with this backfill
    PERFORM @extschema@.notify_backfill();
    RETURN true;
END
$$;

COMMENT ON FUNCTION cancel_backfill(bigint) IS
'Cancels a queued or running backfill; rows already shipped stay shipped.  Returns false if it was not active';

CREATE FUNCTION backfill_publication(chunk_size integer DEFAULT 10000)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t      record;
    pubs   text[];
    job    bigint;
BEGIN
    IF chunk_size IS NULL OR chunk_size NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'invalid chunk size %', coalesce(chunk_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a chunk size between 1 and 1000000 rows.';
    END IF;
    pubs := ARRAY(SELECT (parse_ident(btrim(p)))[1]
                    FROM unnest(string_to_array(coalesce(current_setting('walship.publication', true), 'walship'), ',')) p);
    FOR t IN
        SELECT DISTINCT format('%I.%I', pt.schemaname, pt.tablename)::regclass AS rel
          FROM pg_publication_tables pt JOIN pg_publication p ON p.pubname = pt.pubname
         WHERE pt.pubname = ANY (pubs) AND p.pubinsert
         ORDER BY 1
    LOOP
        IF EXISTS (SELECT FROM @extschema@.backfills b
                    WHERE b.relation = t.rel AND b.state IN ('queued', 'running')) THEN
            CONTINUE;
        END IF;
        IF NOT has_table_privilege(t.rel, 'SELECT') THEN
            RAISE WARNING 'walship does not backfill table %: permission denied for table %',
                t.rel, t.rel;
            CONTINUE;
        END IF;
        BEGIN
            job := @extschema@.backfill(t.rel, chunk_size);
            RETURN NEXT job;
        EXCEPTION WHEN object_not_in_prerequisite_state OR feature_not_supported THEN
            RAISE WARNING 'walship does not backfill table %: %', t.rel, SQLERRM;
        END;
    END LOOP;
END
$$;

COMMENT ON FUNCTION backfill_publication(integer) IS
'Queues a backfill of every table walship.publication publishes that has none in progress; returns the backfill ids';

REVOKE ALL ON FUNCTION backfill(regclass, integer, text), cancel_backfill(bigint),
    backfill_publication(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backfill(regclass, integer, text), cancel_backfill(bigint),
    backfill_publication(integer) TO walship_admin;

-- ClickHouse target tables for the flat NDJSON shape in a ClickHouse
-- dialect (docs/clickhouse.md), from src/clickhouse.c, which owns every
-- ClickHouse rule: clickhouse_type() maps a PostgreSQL type to the
-- ClickHouse column type that takes the value walship writes for it in the
-- dialect ('clickhouse': 22.x and later, 'clickhouse_18': 18.16);
-- clickhouse_ddl() prints a CREATE TABLE.
CREATE FUNCTION clickhouse_ident(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'walship_clickhouse_ident'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION clickhouse_ident(text) IS
'A ClickHouse identifier quoted with backticks';

CREATE FUNCTION clickhouse_type(typid regtype, typmod integer DEFAULT -1,
                                dialect text DEFAULT 'clickhouse')
RETURNS text
AS 'MODULE_PATHNAME', 'walship_clickhouse_type'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION clickhouse_type(regtype, integer, text) IS
'ClickHouse column type (without Nullable) for a PostgreSQL type and modifier, as walship writes it in the dialect (''clickhouse'' or ''clickhouse_18'')';

CREATE FUNCTION clickhouse_ddl(rel regclass, database text DEFAULT 'default',
                               dialect text DEFAULT 'clickhouse')
RETURNS text
AS 'MODULE_PATHNAME', 'walship_clickhouse_ddl'
LANGUAGE C STABLE STRICT;

COMMENT ON FUNCTION clickhouse_ddl(regclass, text, text) IS
'Suggested ClickHouse CREATE TABLE (ReplacingMergeTree) for a published table, for the flat NDJSON shape in the dialect (''clickhouse'' or ''clickhouse_18'')';

-- Metrics for Prometheus (src/sql_metrics.c): walship.metrics() in the
-- text exposition format, and the same series as rows for
-- prometheus-postgres-exporter (contrib/prometheus/walship-queries.yaml).
-- No secrets: counts, positions and states only.  SECURITY DEFINER: the
-- backfill counts come from walship.backfills, which only walship_admin
-- may read.
CREATE FUNCTION metrics()
RETURNS text
AS 'MODULE_PATHNAME', 'walship_metrics'
LANGUAGE C STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION metrics() IS
'The walship worker''s metrics in the Prometheus text exposition format';

CREATE FUNCTION metrics_values(
    OUT decoded_lsn_bytes double precision,
    OUT sent_lsn_bytes double precision,
    OUT acknowledged_lsn_bytes double precision,
    OUT confirmed_lsn_bytes double precision,
    OUT current_lsn_bytes double precision,
    OUT lag_bytes double precision,
    OUT retained_wal_bytes double precision,
    OUT retained_wal_budget_bytes double precision,
    OUT safe_wal_size_bytes double precision,
    OUT freshness_seconds double precision,
    OUT last_success_timestamp_seconds double precision,
    OUT worker_up double precision,
    OUT paused double precision,
    OUT inflight_requests double precision,
    OUT last_http_status double precision,
    OUT shipped_batches_total double precision,
    OUT shipped_changes_total double precision,
    OUT shipped_bytes_total double precision,
    OUT retries_total double precision,
    OUT rejected_batches_total double precision,
    OUT commit_to_ack_seconds double precision[],
    OUT commit_to_ack_seconds_bucket bigint[],
    OUT commit_to_ack_seconds_sum double precision,
    OUT commit_to_ack_seconds_count bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'walship_metrics_values'
LANGUAGE C STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION metrics_values() IS
'The values of walship.metrics() as one row, a column per series (without the walship_ prefix), for prometheus-postgres-exporter';

CREATE FUNCTION metrics_states(OUT state text, OUT active integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'walship_metrics_states'
LANGUAGE C STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION metrics_states() IS
'walship_state_active of walship.metrics() as rows: 1 for the worker''s state, 0 for the others';

CREATE FUNCTION metrics_backfills(OUT state text, OUT tables bigint, OUT rows_sent bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'walship_metrics_backfills'
LANGUAGE C STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION metrics_backfills() IS
'walship_backfill_tables and walship_backfill_rows_sent of walship.metrics() as rows, by backfill state';

REVOKE ALL ON FUNCTION metrics(), metrics_values(), metrics_states(),
    metrics_backfills() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION metrics(), metrics_values(), metrics_states(),
    metrics_backfills() TO walship_admin, pg_monitor;

CREATE FUNCTION encode_rowbinary(records bytea, database text DEFAULT 'default',
                                 dialect text DEFAULT 'clickhouse')
RETURNS TABLE (statement text, body bytea, rows integer)
AS 'MODULE_PATHNAME', 'walship_encode_rowbinary'
LANGUAGE C STRICT STABLE;

COMMENT ON FUNCTION encode_rowbinary(bytea, text, text) IS
'Encodes concatenated walship binary change records as the ClickHouse RowBinary requests the shipping worker sends with walship.format = ''rowbinary'': one row per table and relation shape, with its INSERT statement; dialect ''clickhouse'' or ''clickhouse_18''';
