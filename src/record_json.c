/*-------------------------------------------------------------------------
 *
 * record_json.c
 *	  Rendering of decoded walship records as JSON text.
 *
 * Used by walship.decode() and walship.decode_stream().  A record is
 * rendered on its own (values as arrays, relations by id) or, when the
 * caller tracks the stream's RELATION and BEGIN records in a
 * WsStreamContext, with column and relation names and the change's commit
 * LSN.  docs/format.md shows the output for every record kind.
 *
 * IDENTIFICATION
 *	  src/record_json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "format.h"
#include "record_json.h"

typedef struct WsRelationSlot
{
	uint64		rel_id;			/* hash key */
	WsRelation	relation;
} WsRelationSlot;

void
ws_stream_context_init(WsStreamContext *context)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(WsRelationSlot);
	context->memory = CurrentMemoryContext;
	ctl.hcxt = CurrentMemoryContext;
	context->relations = hash_create("walship decoded relations", 16, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	context->commit_lsn = InvalidXLogRecPtr;
	context->commit_time_json[0] = '\0';
}

/* Remembers what later records of the stream refer to. */
void
ws_stream_context_track(WsStreamContext *context, const WsRecord *record)
{
	if (record->kind == WS_REC_BEGIN)
	{
		context->commit_lsn = record->commit_lsn;
		context->xid = record->xid;
		context->commit_time = record->commit_time;
		/* rendered once per transaction, not once per change */
		{
			StringInfoData text;
			WsValue		ts = {.tag = WS_VAL_TIMESTAMPTZ,.int_value = record->commit_time};

			initStringInfo(&text);
			ws_append_datetime(&text, &ts);
			strlcpy(context->commit_time_json, text.data,
					sizeof(context->commit_time_json));
			pfree(text.data);
		}
	}
	else if (record->kind == WS_REC_COMMIT)
		context->commit_lsn = InvalidXLogRecPtr;
	else if (record->kind == WS_REC_RELATION)
	{
		const WsRelation *rel = &record->relation;
		MemoryContext old = MemoryContextSwitchTo(context->memory);
		WsRelationSlot *slot = hash_search(context->relations, &rel->rel_id,
										   HASH_ENTER, NULL);

		/* records are freed one by one; the relation must outlive its record */
		slot->relation = *rel;
		slot->relation.schema_name = pstrdup(rel->schema_name);
		slot->relation.table_name = pstrdup(rel->table_name);
		slot->relation.columns = palloc(sizeof(WsColumn) * Max(rel->ncolumns, 1));
		for (int i = 0; i < rel->ncolumns; i++)
		{
			slot->relation.columns[i] = rel->columns[i];
			slot->relation.columns[i].name = pstrdup(rel->columns[i].name);
			slot->relation.columns[i].type_name = pstrdup(rel->columns[i].type_name);
		}
		MemoryContextSwitchTo(old);
	}
}

const WsRelation *
ws_stream_relation(const WsStreamContext *context, uint64 rel_id)
{
	WsRelationSlot *slot;

	if (context == NULL)
		return NULL;
	slot = hash_search(context->relations, &rel_id, HASH_FIND, NULL);
	return slot ? &slot->relation : NULL;
}

/* Integers without going through printf. */
void
ws_append_int64(StringInfo out, int64 value)
{
	char		buf[MAXINT8LEN + 1];

	appendBinaryStringInfo(out, buf, pg_lltoa(value, buf));
}

void
ws_append_uint64(StringInfo out, uint64 value)
{
	char		buf[MAXINT8LEN + 1];

	appendBinaryStringInfo(out, buf, pg_ulltoa_n(value, buf));
}

/* Starts an object member: a separator unless first, then "key": */
void
ws_append_json_key(StringInfo out, bool *first, const char *key)
{
	if (!*first)
		appendStringInfoString(out, ", ");
	*first = false;
	escape_json(out, key);
	appendStringInfoString(out, ": ");
}

/*
 * Appends data as a JSON string, as escape_json() does but without needing
 * a terminated copy: runs of plain bytes are copied whole.  Text holds no
 * zero bytes, so one means the record is corrupt.
 */
static void
append_escaped_json(StringInfo out, const char *data, Size len)
{
	Size		run = 0;

	appendStringInfoChar(out, '"');
	for (Size i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) data[i];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(out, data + run, i - run);
		run = i + 1;
		switch (c)
		{
			case '\b':
				appendStringInfoString(out, "\\b");
				break;
			case '\f':
				appendStringInfoString(out, "\\f");
				break;
			case '\n':
				appendStringInfoString(out, "\\n");
				break;
			case '\r':
				appendStringInfoString(out, "\\r");
				break;
			case '\t':
				appendStringInfoString(out, "\\t");
				break;
			case '"':
				appendStringInfoString(out, "\\\"");
				break;
			case '\\':
				appendStringInfoString(out, "\\\\");
				break;
			case '\0':
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("invalid walship record: a text value contains a zero byte")));
				break;
			default:
				appendStringInfo(out, "\\u%04x", c);
				break;
		}
	}
	appendBinaryStringInfo(out, data + run, len - run);
	appendStringInfoChar(out, '"');
}

/* A UTF-8 byte string from a record, as a JSON string. */
static void
append_utf8_string(StringInfo out, const char *data, Size len)
{
	char	   *server = pg_any_to_server(data, len, PG_UTF8);

	/* pg_any_to_server verified the encoding; it may return data itself */
	if (server == data)
		append_escaped_json(out, data, len);
	else
	{
		escape_json(out, server);
		pfree(server);
	}
}

/* A NUL-terminated UTF-8 string from a record (a name), as a JSON string. */
void
ws_append_json_string(StringInfo out, const char *str)
{
	append_utf8_string(out, str, strlen(str));
}

static void
append_lsn(StringInfo out, XLogRecPtr lsn)
{
	appendStringInfo(out, "\"%X/%X\"", LSN_FORMAT_ARGS(lsn));
}

static void
append_bytea_hex(StringInfo out, const char *data, Size len)
{
	static const char hex[] = "0123456789abcdef";

	appendStringInfoString(out, "\"\\\\x");
	for (Size i = 0; i < len; i++)
	{
		appendStringInfoChar(out, hex[(unsigned char) data[i] >> 4]);
		appendStringInfoChar(out, hex[(unsigned char) data[i] & 0xF]);
	}
	appendStringInfoChar(out, '"');
}

static void
append_float(StringInfo out, double value, bool is_float4)
{
	char		buf[32];

	if (isnan(value))
		appendStringInfoString(out, "\"NaN\"");
	else if (isinf(value))
		appendStringInfoString(out, value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
	{
		if (is_float4)
			float_to_shortest_decimal_buf((float) value, buf);
		else
			double_to_shortest_decimal_buf(value, buf);
		appendStringInfoString(out, buf);
	}
}

/* Dates and times in ISO 8601, timestamptz in UTC, as to_json() writes. */
void
ws_append_datetime(StringInfo out, const WsValue *value)
{
	char		buf[MAXDATELEN + 1];
	int			utc = 0;
	Datum		datum;
	Oid			typid;

	switch (value->tag)
	{
		case WS_VAL_DATE:
			/* bound first, so the epoch shift cannot overflow */
			if (value->int_value < PG_INT32_MIN || value->int_value > PG_INT32_MAX ||
				!IS_VALID_DATE(value->int_value - WS_UNIX_TO_PG_EPOCH_DAYS))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("invalid walship record: date out of range")));
			datum = DateADTGetDatum((DateADT) (value->int_value - WS_UNIX_TO_PG_EPOCH_DAYS));
			typid = DATEOID;
			break;
		case WS_VAL_TIME:
			datum = TimeADTGetDatum(value->int_value);
			typid = TIMEOID;
			break;
		default:
			if (value->int_value < MIN_TIMESTAMP + WS_UNIX_TO_PG_EPOCH_USECS ||
				value->int_value - WS_UNIX_TO_PG_EPOCH_USECS >= END_TIMESTAMP)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("invalid walship record: timestamp out of range")));
			datum = TimestampGetDatum(value->int_value - WS_UNIX_TO_PG_EPOCH_USECS);
			typid = value->tag == WS_VAL_TIMESTAMP ? TIMESTAMPOID : TIMESTAMPTZOID;
			break;
	}
	if (typid == TIMEOID && (value->int_value > USECS_PER_DAY))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: time out of range")));
	JsonEncodeDateTime(buf, datum, typid, &utc);
	appendStringInfoChar(out, '"');
	appendStringInfoString(out, buf);
	appendStringInfoChar(out, '"');
}

void
ws_value_to_json(StringInfo out, const WsValue *value)
{
	switch (value->tag)
	{
		case WS_VAL_NULL:
			appendStringInfoString(out, "null");
			break;
		case WS_VAL_UNCHANGED:
			appendStringInfoString(out, "{\"unchanged_toast\": true}");
			break;
		case WS_VAL_FALSE:
			appendStringInfoString(out, "false");
			break;
		case WS_VAL_TRUE:
			appendStringInfoString(out, "true");
			break;
		case WS_VAL_INT:
			ws_append_int64(out, value->int_value);
			break;
		case WS_VAL_FLOAT4:
		case WS_VAL_FLOAT8:
			append_float(out, value->float_value, value->tag == WS_VAL_FLOAT4);
			break;
		case WS_VAL_NUMERIC:
			{
				char	   *text = pnstrdup(value->data, value->len);

				/* NaN and the infinities are not JSON numbers */
				if (strspn(text, "+-0123456789.eE") != value->len ||
					value->len == 0 || strpbrk(text, "0123456789") == NULL)
					escape_json(out, text);
				else
					appendStringInfoString(out, text);
				pfree(text);
			}
			break;
		case WS_VAL_TEXT:
			append_utf8_string(out, value->data, value->len);
			break;
		case WS_VAL_JSON:
			{
				char	   *server = pg_any_to_server(value->data, value->len, PG_UTF8);

				if (server == value->data)
					server = pnstrdup(value->data, value->len);

				/*
				 * Embedded as is, so it must be exactly one JSON value, or a
				 * corrupt record could change the structure of the output.
				 */
				(void) DirectFunctionCall1(json_in, CStringGetDatum(server));
				appendStringInfoString(out, server);
				pfree(server);
			}
			break;
		case WS_VAL_BYTES:
			append_bytea_hex(out, value->data, value->len);
			break;
		case WS_VAL_UUID:
			{
				const unsigned char *u = (const unsigned char *) value->data;

				appendStringInfo(out,
								 "\"%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x\"",
								 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
								 u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
			}
			break;
		case WS_VAL_DATE:
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
		case WS_VAL_TIME:
			ws_append_datetime(out, value);
			break;
		case WS_VAL_POS_INFINITY:
			appendStringInfoString(out, "\"infinity\"");
			break;
		case WS_VAL_NEG_INFINITY:
			appendStringInfoString(out, "\"-infinity\"");
			break;
		case WS_VAL_ARRAY:
			{
				WsReader	elements = value->elements;
				WsValue		element;

				appendStringInfoChar(out, '[');
				for (uint64 i = 0; i < value->nelements; i++)
				{
					if (i > 0)
						appendStringInfoString(out, ", ");
					ws_read_value(&elements, &element);
					ws_value_to_json(out, &element);
				}
				appendStringInfoChar(out, ']');
			}
			break;
		default:
			elog(ERROR, "unexpected walship value tag %d", value->tag);
	}
}

/*
 * A tuple as a JSON object keyed by column name when the relation is known,
 * else as an array.  Old key tuples hold only the key columns.
 */
static void
append_tuple(StringInfo out, const WsTuple *tuple, const WsRelation *rel,
			 bool key_only)
{
	WsReader	values = tuple->values;
	WsValue		value;
	int			col = 0;
	bool		first = true;

	if (rel == NULL)
	{
		appendStringInfoChar(out, '[');
		for (uint64 i = 0; i < tuple->nvalues; i++)
		{
			if (i > 0)
				appendStringInfoString(out, ", ");
			ws_read_value(&values, &value);
			ws_value_to_json(out, &value);
		}
		appendStringInfoChar(out, ']');
		return;
	}

	appendStringInfoChar(out, '{');
	for (uint64 i = 0; i < tuple->nvalues; i++)
	{
		while (col < rel->ncolumns && key_only &&
			   !(rel->columns[col].flags & WS_COL_KEY))
			col++;
		if (col >= rel->ncolumns)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid walship record: tuple has more values than relation \"%s.%s\" has columns",
							rel->schema_name, rel->table_name)));
		ws_append_json_key(out, &first, rel->columns[col].name);
		ws_read_value(&values, &value);
		ws_value_to_json(out, &value);
		col++;
	}
	appendStringInfoChar(out, '}');
}

static const char *
replica_identity_name(char identity)
{
	switch (identity)
	{
		case 'd':
			return "default";
		case 'n':
			return "nothing";
		case 'f':
			return "full";
		case 'i':
			return "index";
	}
	return "unknown";
}

static void
append_relation(StringInfo out, bool *first, const WsRelation *rel)
{
	ws_append_json_key(out, first, "relation_id");
	appendStringInfo(out, UINT64_FORMAT, rel->rel_id);
	ws_append_json_key(out, first, "oid");
	appendStringInfo(out, "%u", rel->relation_oid);
	ws_append_json_key(out, first, "schema");
	append_utf8_string(out, rel->schema_name, strlen(rel->schema_name));
	ws_append_json_key(out, first, "table");
	append_utf8_string(out, rel->table_name, strlen(rel->table_name));
	ws_append_json_key(out, first, "replica_identity");
	escape_json(out, replica_identity_name(rel->replica_identity));
	ws_append_json_key(out, first, "columns");
	appendStringInfoChar(out, '[');
	for (int i = 0; i < rel->ncolumns; i++)
	{
		const WsColumn *col = &rel->columns[i];
		bool		cfirst = true;

		if (i > 0)
			appendStringInfoString(out, ", ");
		appendStringInfoChar(out, '{');
		ws_append_json_key(out, &cfirst, "name");
		append_utf8_string(out, col->name, strlen(col->name));
		ws_append_json_key(out, &cfirst, "type");
		append_utf8_string(out, col->type_name, strlen(col->type_name));
		ws_append_json_key(out, &cfirst, "type_oid");
		appendStringInfo(out, "%u", col->type_oid);
		ws_append_json_key(out, &cfirst, "typmod");
		appendStringInfo(out, "%d", col->typmod);
		ws_append_json_key(out, &cfirst, "key");
		appendStringInfoString(out, (col->flags & WS_COL_KEY) ? "true" : "false");
		ws_append_json_key(out, &cfirst, "not_null");
		appendStringInfoString(out, (col->flags & WS_COL_NOT_NULL) ? "true" : "false");
		ws_append_json_key(out, &cfirst, "primary_key");
		appendStringInfoString(out, (col->flags & WS_COL_PRIMARY_KEY) ? "true" : "false");
		appendStringInfoChar(out, '}');
	}
	appendStringInfoChar(out, ']');
}

static void
append_qualified_name(StringInfo out, const WsRelation *rel)
{
	char	   *name = psprintf("%s.%s", rel->schema_name, rel->table_name);

	append_utf8_string(out, name, strlen(name));
	pfree(name);
}

/* relation_id, and with a stream context the relation's name */
static void
append_relation_ref(StringInfo out, bool *first, uint64 rel_id,
					const WsRelation *rel)
{
	ws_append_json_key(out, first, "relation_id");
	appendStringInfo(out, UINT64_FORMAT, rel_id);
	if (rel)
	{
		ws_append_json_key(out, first, "relation");
		append_qualified_name(out, rel);
	}
}

static void
append_change_id(StringInfo out, bool *first, const WsRecord *record,
				 const WsStreamContext *context)
{
	if (context && !XLogRecPtrIsInvalid(context->commit_lsn))
	{
		ws_append_json_key(out, first, "commit_lsn");
		append_lsn(out, context->commit_lsn);
	}
	ws_append_json_key(out, first, "ordinal");
	appendStringInfo(out, UINT64_FORMAT, record->ordinal);
}

void
ws_record_to_json(StringInfo out, const WsRecord *record,
				  const WsStreamContext *context)
{
	bool		first = true;
	const WsRelation *rel = NULL;

	appendStringInfoChar(out, '{');
	ws_append_json_key(out, &first, "kind");
	escape_json(out, ws_record_kind_name(record->kind));

	switch (record->kind)
	{
		case WS_REC_BEGIN:
			ws_append_json_key(out, &first, "format_version");
			appendStringInfo(out, "%d", record->format_version);
			ws_append_json_key(out, &first, "xid");
			appendStringInfo(out, "%u", record->xid);
			ws_append_json_key(out, &first, "commit_lsn");
			append_lsn(out, record->commit_lsn);
			ws_append_json_key(out, &first, "commit_time");
			{
				WsValue		ts = {.tag = WS_VAL_TIMESTAMPTZ,.int_value = record->commit_time};

				ws_append_datetime(out, &ts);
			}
			break;
		case WS_REC_COMMIT:
			ws_append_json_key(out, &first, "commit_lsn");
			append_lsn(out, record->commit_lsn);
			ws_append_json_key(out, &first, "end_lsn");
			append_lsn(out, record->end_lsn);
			ws_append_json_key(out, &first, "commit_time");
			{
				WsValue		ts = {.tag = WS_VAL_TIMESTAMPTZ,.int_value = record->commit_time};

				ws_append_datetime(out, &ts);
			}
			ws_append_json_key(out, &first, "changes");
			appendStringInfo(out, UINT64_FORMAT, record->nchanges);
			break;
		case WS_REC_RELATION:
			append_relation(out, &first, &record->relation);
			break;
		case WS_REC_INSERT:
		case WS_REC_UPDATE:
		case WS_REC_DELETE:
			rel = ws_stream_relation(context, record->rel_id);
			append_relation_ref(out, &first, record->rel_id, rel);
			append_change_id(out, &first, record, context);
			ws_append_json_key(out, &first, "lsn");
			append_lsn(out, record->change_lsn);
			if (record->kind != WS_REC_INSERT && record->old_kind != WS_OLD_NONE)
			{
				ws_append_json_key(out, &first,
						   record->old_kind == WS_OLD_FULL ? "old" : "key");
				append_tuple(out, &record->old_tuple, rel,
							 record->old_kind == WS_OLD_KEY);
			}
			if (record->kind != WS_REC_DELETE)
			{
				ws_append_json_key(out, &first, "new");
				append_tuple(out, &record->new_tuple, rel, false);
			}
			break;
		case WS_REC_TRUNCATE:
			append_change_id(out, &first, record, context);
			ws_append_json_key(out, &first, "cascade");
			appendStringInfoString(out, (record->truncate_flags & WS_TRUNCATE_CASCADE) ? "true" : "false");
			ws_append_json_key(out, &first, "restart_identity");
			appendStringInfoString(out, (record->truncate_flags & WS_TRUNCATE_RESTART_SEQS) ? "true" : "false");
			ws_append_json_key(out, &first, "relation_ids");
			appendStringInfoChar(out, '[');
			for (uint64 i = 0; i < record->nrelations; i++)
				appendStringInfo(out, "%s" UINT64_FORMAT, i > 0 ? ", " : "",
								 record->rel_ids[i]);
			appendStringInfoChar(out, ']');
			if (context)
			{
				ws_append_json_key(out, &first, "relations");
				appendStringInfoChar(out, '[');
				for (uint64 i = 0; i < record->nrelations; i++)
				{
					const WsRelation *r = ws_stream_relation(context, record->rel_ids[i]);

					if (i > 0)
						appendStringInfoString(out, ", ");
					if (r)
						append_qualified_name(out, r);
					else
						appendStringInfoString(out, "null");
				}
				appendStringInfoChar(out, ']');
			}
			break;
		case WS_REC_MESSAGE:
			ws_append_json_key(out, &first, "transactional");
			appendStringInfoString(out, (record->message_flags & WS_MESSAGE_TRANSACTIONAL) ? "true" : "false");
			ws_append_json_key(out, &first, "lsn");
			append_lsn(out, record->message_lsn);
			if (record->message_flags & WS_MESSAGE_TRANSACTIONAL)
				append_change_id(out, &first, record, context);
			ws_append_json_key(out, &first, "prefix");
			append_utf8_string(out, record->prefix, strlen(record->prefix));
			ws_append_json_key(out, &first, "content");
			append_bytea_hex(out, record->content, record->content_len);
			break;
	}
	appendStringInfoChar(out, '}');
}
