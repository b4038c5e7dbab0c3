/*-------------------------------------------------------------------------
 *
 * sql_decode.c
 *	  SQL functions that turn walship binary records into jsonb:
 *	  walship.decode(bytea) and walship.decode_stream(bytea).
 *
 * decode() takes exactly one record, as returned per row by
 * pg_logical_slot_get_binary_changes(); decode_stream() takes any number
 * of concatenated records (a batch body, or a pg_recvlogical output file,
 * whose newline after each record it skips) and resolves relation names
 * and commit LSNs from the stream's own RELATION and BEGIN records.
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
#include "record_json.h"

PG_FUNCTION_INFO_V1(walship_decode);
PG_FUNCTION_INFO_V1(walship_decode_stream);

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

Datum
walship_decode_stream(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bytea	   *input = PG_GETARG_BYTEA_PP(0);
	MemoryContext per_record;
	MemoryContext old;
	WsStreamContext stream;
	WsReader	reader;
	StringInfoData json;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	ws_stream_context_init(&stream);
	ws_reader_init(&reader, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input));
	initStringInfo(&json);
	per_record = AllocSetContextCreate(CurrentMemoryContext,
									   "walship decode_stream record",
									   ALLOCSET_DEFAULT_SIZES);

	while (!ws_reader_done(&reader))
	{
		WsRecord	record;
		Datum		value;
		bool		isnull = false;

		/* pg_recvlogical writes a newline after each record */
		if (reader.data[reader.pos] == '\n')
		{
			reader.pos++;
			continue;
		}

		old = MemoryContextSwitchTo(per_record);
		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		resetStringInfo(&json);
		ws_record_to_json(&json, &record, &stream);
		value = json_text_to_jsonb(&json);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_record);
	}
	return (Datum) 0;
}
