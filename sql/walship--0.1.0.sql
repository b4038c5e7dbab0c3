/* sql/walship--0.1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION walship" to load this file. \quit

-- Operators of the shipping worker: may pause and resume it, and see
-- endpoint details, the progress catalog and dead letters.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'walship_admin') THEN
        CREATE ROLE walship_admin NOLOGIN;
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
'Encodes concatenated walship binary change records as NDJSON as the shipping worker sends them: shape ''envelope'' or ''flat'', dialect ''standard'' or ''clickhouse''';

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
    updated_at       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE progress IS
'Progress of the walship worker: LSN confirmed after acknowledgement, and totals';

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
    OUT decoded_lsn pg_lsn)
RETURNS record
AS 'MODULE_PATHNAME', 'walship_status_internal'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW status AS SELECT * FROM status_internal();

COMMENT ON VIEW status IS
'State of the walship shipping worker; endpoint shown to walship_admin only';

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
