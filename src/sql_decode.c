/*-------------------------------------------------------------------------
 *
 * sql_decode.c
 *	  SQL functions that turn walship binary records into jsonb:
 *	  walship.decode(bytea) and walship.decode_stream(bytea), and into
 *	  NDJSON text: walship.encode_ndjson(bytea, text).
 *
 * decode() takes exactly one record, as returned per row by
 * pg_logical_slot_get_binary_changes(); decode_stream() takes any number
 * of concatenated records (a batch body, or a pg_recvlogical output file,
 * whose newline after each record it skips) and resolves relation names
 * and commit LSNs from the stream's own RELATION and BEGIN records.
 * encode_ndjson() reads its input as decode_stream() does and returns the
 * lines the shipping worker's NDJSON encoder (ndjson.c) makes of it.
 *
 * IDENTIFICATION
 *	  src/sql_decode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "format.h"
#include "ndjson.h"
#include "record_json.h"

PG_FUNCTION_INFO_V1(walship_decode);
PG_FUNCTION_INFO_V1(walship_decode_stream);
PG_FUNCTION_INFO_V1(walship_encode_ndjson);

static Datum
json_text_to_jsonb(StringInfo json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json->data));
}

Datum
walship_decode(PG_FUNCTION_ARGS)
{
	bytea	   *input = PG_GETARG_BYTEA_PP(0);
	WsReader	reader;
	WsRecord	record;
	StringInfoData json;

	ws_reader_init(&reader, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input));
	ws_read_record(&reader, &record);
	if (!ws_reader_done(&reader))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: %zu bytes after the end of the record",
						reader.len - reader.pos),
				 errhint("Use walship.decode_stream() to decode several concatenated records.")));

	initStringInfo(&json);
	ws_record_to_json(&json, &record, NULL);
	PG_RETURN_DATUM(json_text_to_jsonb(&json));
}

/* Called for each record of a stream, after the context has tracked it. */
typedef void (*WsRecordCallback) (const WsRecord *record,
								  const WsStreamContext *stream, void *arg);

/*
 * Reads the concatenated records of input in order, tracking them in a
 * stream context, and passes each one to callback.  The record and what
 * the callback allocates in CurrentMemoryContext are freed after the call.
 */
static void
for_each_record(bytea *input, WsRecordCallback callback, void *arg)
{
	MemoryContext per_record;
	MemoryContext old;
	WsStreamContext stream;
	WsReader	reader;

	ws_stream_context_init(&stream);
	ws_reader_init(&reader, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input));
	per_record = AllocSetContextCreate(CurrentMemoryContext,
									   "walship record stream record",
									   ALLOCSET_DEFAULT_SIZES);

	while (!ws_reader_done(&reader))
	{
		WsRecord	record;

		/* pg_recvlogical writes a newline after each record */
		if (reader.data[reader.pos] == '\n')
		{
			reader.pos++;
			continue;
		}

		old = MemoryContextSwitchTo(per_record);
		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		callback(&record, &stream, arg);
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_record);
	}
	MemoryContextDelete(per_record);
}

typedef struct DecodeStreamState
{
	ReturnSetInfo *rsinfo;
	StringInfoData json;
} DecodeStreamState;

static void
decode_stream_record(const WsRecord *record, const WsStreamContext *stream,
					 void *arg)
{
	DecodeStreamState *state = arg;
	Datum		value;
	bool		isnull = false;

	resetStringInfo(&state->json);
	ws_record_to_json(&state->json, record, stream);
	value = json_text_to_jsonb(&state->json);
	tuplestore_putvalues(state->rsinfo->setResult, state->rsinfo->setDesc,
						 &value, &isnull);
}

Datum
walship_decode_stream(PG_FUNCTION_ARGS)
{
	bytea	   *input = PG_GETARG_BYTEA_PP(0);
	DecodeStreamState state;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	state.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	initStringInfo(&state.json);
	for_each_record(input, decode_stream_record, &state);
	return (Datum) 0;
}

typedef struct EncodeNdjsonState
{
	WsNdjsonOptions options;
	StringInfoData out;
} EncodeNdjsonState;

static void
encode_ndjson_record(const WsRecord *record, const WsStreamContext *stream,
					 void *arg)
{
	EncodeNdjsonState *state = arg;

	/* out's buffer lives in the caller's context, not the per-record one */
	(void) ws_ndjson_append(&state->out, record, stream, &state->options);
}

/*
 * walship.encode_ndjson(records bytea, shape text, dialect text) -> text:
 * the NDJSON lines the shipping worker would send for concatenated records.
 */
Datum
walship_encode_ndjson(PG_FUNCTION_ARGS)
{
	bytea	   *input = PG_GETARG_BYTEA_PP(0);
	char	   *shape = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *dialect = text_to_cstring(PG_GETARG_TEXT_PP(2));
	EncodeNdjsonState state;

	if (strcmp(shape, "envelope") == 0)
		state.options.shape = WS_NDJSON_ENVELOPE;
	else if (strcmp(shape, "flat") == 0)
		state.options.shape = WS_NDJSON_FLAT;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized NDJSON shape \"%s\"", shape),
				 errhint("Valid shapes are \"envelope\" and \"flat\".")));
	if (!ws_dialect_from_name(dialect, &state.options.dialect))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized dialect \"%s\"", dialect),
				 errhint(WS_DIALECT_NAMES_HINT)));

	initStringInfo(&state.out);
	for_each_record(input, encode_ndjson_record, &state);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(state.out.data, state.out.len));
}
