/* sql/walship--0.1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION walship" to load this file. \quit

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

CREATE FUNCTION encode_ndjson(records bytea, shape text DEFAULT 'envelope')
RETURNS text
AS 'MODULE_PATHNAME', 'walship_encode_ndjson'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION encode_ndjson(bytea, text) IS
'Encodes concatenated walship binary change records as NDJSON, one line per change, in the shape ''envelope'' or ''flat'' the shipping worker sends';
