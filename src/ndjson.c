/*-------------------------------------------------------------------------
 *
 * ndjson.c
 *	  Encoding of walship change records as newline-delimited JSON.
 *
 * Each INSERT, UPDATE and DELETE record becomes one line, each TRUNCATE
 * record one line per truncated relation; BEGIN, COMMIT, RELATION and
 * MESSAGE records produce no lines.  Two shapes:
 *
 * envelope (Debezium-like):
 *	  {"op": "c"|"u"|"d"|"t", "before": {...}|null, "after": {...}|null,
 *	   ["unchanged_columns": [...],]
 *	   "source": {"schema", "table", "commit_lsn", "xid", "commit_ts",
 *				  "ordinal"[, "cascade", "restart_identity"]},
 *	   "id": "<commit LSN, 16 uppercase hex digits>-<ordinal>"}
 *
 * flat (one row per line, for ReplacingMergeTree-style tables):
 *	  {<columns>..., "_op", "_lsn", "_seq", "_commit_ts", "_deleted"
 *	   [, "_unchanged": [...]]}
 *	  and for TRUNCATE {"_op": "t", "_schema", "_table", "_lsn", "_seq",
 *	  "_commit_ts", "_deleted": 0}.
 *
 * Columns are written in column order, keyed by name; values are rendered
 * by ws_value_to_json() exactly as walship.decode() renders them, or in
 * the clickhouse dialect as clickhouse.c writes them (which owns every
 * ClickHouse-specific rule: values, _commit_ts, TRUNCATE).  An
 * unchanged TOAST value is replaced by the old row's value when the record
 * carries a full old row, and otherwise left out of the row and listed by
 * name.  docs/format.md ("NDJSON encoding") specifies both shapes.
 *
 * IDENTIFICATION
 *	  src/ndjson.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/json.h"

#include "clickhouse.h"
#include "format.h"
#include "ndjson.h"
#include "record_json.h"

/* A decoded tuple, indexed by column number of its relation. */
typedef WsFlatRow NdjsonRow;

/*
 * Relations with at most this many columns have their rows decoded into
 * ws_ndjson_append()'s own arrays, without allocating them per change.
 */
#define NDJSON_STACK_COLUMNS	32


/* One of this file's own key names (plain ASCII): no escaping needed. */
static inline void
append_literal_key(StringInfo out, bool *first, const char *key)
{
	char		buf[64];
	size_t		keylen = strlen(key);
	int			len = 0;

	/* assembled here, so that it takes one append */
	Assert(keylen + 6 <= sizeof(buf));
	if (!*first)
	{
		buf[len++] = ',';
		buf[len++] = ' ';
	}
	*first = false;
	buf[len++] = '"';
	memcpy(buf + len, key, keylen);
	len += keylen;
	buf[len++] = '"';
	buf[len++] = ':';
	buf[len++] = ' ';
	ws_append_bytes(out, buf, len);
}

/*
 * A column name, which records hold in UTF-8, as a key.  Rendered once per
 * relation and kept in the stream context's cache of the relation's names.
 */
static void
append_column_key(StringInfo out, bool *first, const WsStreamContext *stream,
				  WsRelationJson *names, const WsRelation *rel, int column)
{
	const WsJsonText *key = &names->column_keys[column];

	if (unlikely(key->data == NULL))
		key = ws_cached_json_string(stream, &names->column_keys[column],
									", ", rel->columns[column].name, ": ");

	/* the cached key starts with the separator, which a first one skips */
	if (*first)
		ws_append_bytes(out, key->data + 2, key->len - 2);
	else
		ws_append_bytes(out, key->data, key->len);
	*first = false;
}

/* A relation name, which records hold in UTF-8, as a JSON string. */
static void
append_relation_name(StringInfo out, const WsStreamContext *stream,
					 WsJsonText *cache, const char *name)
{
	const WsJsonText *text = ws_cached_json_string(stream, cache, "", name, "");

	ws_append_bytes(out, text->data, text->len);
}

/* An op name ("c", "u", ...) as a JSON string; none needs escaping. */
static void
append_op(StringInfo out, char kind)
{
	ws_append_char(out, '"');
	ws_append_str(out, ws_flat_op_name(kind));
	ws_append_char(out, '"');
}

static void
append_commit_ts(StringInfo out, const WsStreamContext *stream)
{
	ws_append_str(out, stream->commit_time_json);
}

const char *
ws_flat_op_name(char kind)
{
	switch (kind)
	{
		case WS_REC_INSERT:
			return "c";
		case WS_REC_UPDATE:
			return "u";
		case WS_REC_DELETE:
			return "d";
		case WS_REC_TRUNCATE:
			return "t";
		case WS_REC_READ:
			return "r";
	}
	elog(ERROR, "unexpected walship record kind %d", kind);
	return NULL;				/* keep compiler quiet */
}

/*
 * The relation rel_id; with names not NULL, also the cache of its names as
 * JSON in *names.
 */
static const WsRelation *
lookup_relation(const WsStreamContext *stream, const WsRecord *record,
				uint64 rel_id, WsRelationJson **names)
{
	const WsRelation *rel = ws_stream_relation_and_json(stream, rel_id, names);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record stream: %s record refers to relation id " UINT64_FORMAT ", which no earlier RELATION record defines",
						ws_record_kind_name(record->kind), rel_id),
				 record->kind == WS_REC_READ ?
				 errdetail("The row has ordinal " UINT64_FORMAT " in the backfill chunk at %X/%X.",
						   record->ordinal, LSN_FORMAT_ARGS(record->read_position)) :
				 record->kind == WS_REC_RESYNC ?
				 errdetail("The resync record is at %X/%X, with version %X/%X.",
						   LSN_FORMAT_ARGS(record->read_position),
						   LSN_FORMAT_ARGS(record->change_lsn)) :
				 errdetail("The change has ordinal " UINT64_FORMAT " in the transaction with commit LSN %X/%X.",
						   record->ordinal, LSN_FORMAT_ARGS(stream->commit_lsn))));
	return rel;
}

/*
 * Decodes a tuple into row, by column number.  A key tuple holds the key
 * columns only.  The value count must be what docs/format.md section 4.9
 * prescribes, so that no column is silently lost.  The row's arrays are
 * values_buf and present_buf, of rel->ncolumns entries, or else allocated.
 */
static void
read_row(NdjsonRow *row, const WsTuple *tuple, const WsRelation *rel,
		 bool key_only, WsValue *values_buf, bool *present_buf)
{
	WsReader	values = tuple->values;
	int			expected = 0;
	int			col = 0;

	for (int i = 0; i < rel->ncolumns; i++)
		if (!key_only || (rel->columns[i].flags & WS_COL_KEY))
			expected++;
	if (tuple->nvalues != (uint64) expected)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: %s tuple has " UINT64_FORMAT " values but relation \"%s.%s\" has %d %s",
						key_only ? "key" : "row", tuple->nvalues,
						rel->schema_name, rel->table_name, expected,
						key_only ? "key columns" : "columns")));

	row->valid = true;
	if (values_buf != NULL)
	{
		row->values = values_buf;
		row->present = present_buf;
		/* ws_read_value() sets every value a full row has */
		if (key_only)
			memset(row->values, 0, sizeof(WsValue) * rel->ncolumns);
		memset(row->present, 0, sizeof(bool) * rel->ncolumns);
	}
	else
	{
		row->values = palloc0(sizeof(WsValue) * Max(rel->ncolumns, 1));
		row->present = palloc0(sizeof(bool) * Max(rel->ncolumns, 1));
	}
	for (uint64 i = 0; i < tuple->nvalues; i++)
	{
		while (key_only && !(rel->columns[col].flags & WS_COL_KEY))
			col++;
		ws_read_value(&values, &row->values[col]);
		row->present[col] = true;
		col++;
	}
}

/*
 * A value as ws_value_to_json() renders it, or in the clickhouse dialect
 * as clickhouse.c writes it.  A json value is embedded as typed, and may
 * contain line breaks as whitespace: they would end the line, so they
 * become spaces.  Outside JSON strings (where escape_json has escaped them)
 * a raw line break can only be whitespace, and no server encoding uses
 * these bytes inside a multibyte character.
 */
static void
append_value(StringInfo out, const WsValue *value, const WsColumn *column,
			 WsDialect dialect, bool json_trusted)
{
	int			start = out->len;

	if (dialect != WS_DIALECT_STANDARD)
		ws_clickhouse_append_value(out, value, column, dialect, json_trusted);
	else
		ws_value_to_json(out, value, json_trusted);

	/* only json values, alone or in arrays, are embedded unescaped */
	if (value->tag != WS_VAL_JSON && value->tag != WS_VAL_ARRAY)
		return;
	for (int i = start; i < out->len; i++)
		if (out->data[i] == '\n' || out->data[i] == '\r')
			out->data[i] = ' ';
}

/*
 * Writes a row as the members of a JSON object (without braces).  Values
 * that are unchanged TOAST values are left out and flagged in unchanged.
 */
static void
append_row_members(StringInfo out, bool *first, const NdjsonRow *row,
				   const WsRelation *rel, WsRelationJson *names,
				   const WsStreamContext *stream, bool *unchanged,
				   WsDialect dialect)
{
	for (int i = 0; i < rel->ncolumns; i++)
	{
		if (!row->present[i])
			continue;
		if (row->values[i].tag == WS_VAL_UNCHANGED)
		{
			unchanged[i] = true;
			continue;
		}
		append_column_key(out, first, stream, names, rel, i);
		append_value(out, &row->values[i], &rel->columns[i], dialect,
					 stream->json_trusted);
	}
}

static void
append_row_object(StringInfo out, const NdjsonRow *row, const WsRelation *rel,
				  WsRelationJson *names, const WsStreamContext *stream,
				  bool *unchanged, WsDialect dialect)
{
	bool		first = true;

	if (!row->valid)
	{
		ws_append_str(out, "null");
		return;
	}
	ws_append_char(out, '{');
	append_row_members(out, &first, row, rel, names, stream, unchanged,
					   dialect);
	ws_append_char(out, '}');
}

/* The names of the flagged columns, as a JSON array; false if none. */
static bool
append_unchanged(StringInfo out, bool *first, const char *key,
				 const WsRelation *rel, const bool *unchanged)
{
	bool		any = false;

	for (int i = 0; i < rel->ncolumns; i++)
	{
		if (!unchanged[i])
			continue;
		if (!any)
		{
			append_literal_key(out, first, key);
			ws_append_char(out, '[');
		}
		else
			ws_append_str(out, ", ");
		ws_append_json_string(out, rel->columns[i].name);
		any = true;
	}
	if (any)
		ws_append_char(out, ']');
	return any;
}

/*
 * The envelope members that are the same on every line of the open
 * transaction: rendered on its first line, copied on the others.
 */
static const WsTransactionJson *
transaction_json(const WsStreamContext *stream)
{
	static const char hex[] = "0123456789ABCDEF";
	WsTransactionJson *text = stream->transaction_json;
	StringInfoData buf;
	bool		first = false;

	if (likely(text->valid))
		return text;

	initStringInfo(&buf);
	append_literal_key(&buf, &first, "commit_lsn");
	ws_append_lsn(&buf, stream->commit_lsn);
	append_literal_key(&buf, &first, "xid");
	ws_append_uint64(&buf, stream->xid);
	append_literal_key(&buf, &first, "commit_ts");
	append_commit_ts(&buf, stream);
	append_literal_key(&buf, &first, "ordinal");
	/* an LSN, a 32-bit xid and a timestamp of at most 63 bytes */
	Assert(buf.len <= (int) sizeof(text->source));
	memcpy(text->source, buf.data, buf.len);
	text->source_len = buf.len;

	resetStringInfo(&buf);
	append_literal_key(&buf, &first, "id");
	ws_append_char(&buf, '"');
	for (int i = 0; i < 16; i++)
		ws_append_char(&buf, hex[(stream->commit_lsn >> (60 - 4 * i)) & 0xF]);
	ws_append_char(&buf, '-');
	Assert(buf.len <= (int) sizeof(text->id));
	memcpy(text->id, buf.data, buf.len);
	text->id_len = buf.len;

	pfree(buf.data);
	text->valid = true;
	return text;
}

/* "source" of the envelope shape, up to and including the ordinal */
static void
append_source(StringInfo out, bool *first, const WsRecord *record,
			  const WsStreamContext *stream, const WsRelation *rel,
			  WsRelationJson *names)
{
	const WsTransactionJson *text = transaction_json(stream);
	bool		sfirst = true;

	append_literal_key(out, first, "source");
	ws_append_char(out, '{');
	append_literal_key(out, &sfirst, "schema");
	append_relation_name(out, stream, &names->schema, rel->schema_name);
	append_literal_key(out, &sfirst, "table");
	append_relation_name(out, stream, &names->table, rel->table_name);
	/* commit_lsn, xid, commit_ts and the "ordinal" key */
	ws_append_bytes(out, text->source, text->source_len);
	ws_append_uint64(out, record->ordinal);
	if (record->kind == WS_REC_TRUNCATE)
	{
		append_literal_key(out, &sfirst, "cascade");
		ws_append_str(out, (record->truncate_flags & WS_TRUNCATE_CASCADE) ? "true" : "false");
		append_literal_key(out, &sfirst, "restart_identity");
		ws_append_str(out, (record->truncate_flags & WS_TRUNCATE_RESTART_SEQS) ? "true" : "false");
	}
	ws_append_char(out, '}');
}

/*
 * The change id: commit LSN as 16 uppercase hex digits, '-', ordinal.  It
 * follows "source", so it is never the first member.
 */
static void
append_id(StringInfo out, const WsRecord *record,
		  const WsStreamContext *stream)
{
	const WsTransactionJson *text = transaction_json(stream);

	ws_append_bytes(out, text->id, text->id_len);
	ws_append_uint64(out, record->ordinal);
	ws_append_char(out, '"');
}

/*
 * The metadata members of the flat shape, after the row's columns.
 * _version is the change's own WAL position: for any one row it grows with
 * every change, so a ReplacingMergeTree(_version) keeps the latest.
 */
static void
append_flat_meta(StringInfo out, bool *first, const WsRecord *record,
				 const WsStreamContext *stream, char kind,
				 WsDialect dialect)
{
	XLogRecPtr	version = XLogRecPtrIsInvalid(record->change_lsn) ?
		stream->commit_lsn : record->change_lsn;

	append_literal_key(out, first, "_op");
	append_op(out, kind);
	append_literal_key(out, first, "_lsn");
	ws_append_uint64(out, (uint64) stream->commit_lsn);
	append_literal_key(out, first, "_seq");
	ws_append_uint64(out, record->ordinal);
	append_literal_key(out, first, "_version");
	ws_append_uint64(out, (uint64) version);
	append_literal_key(out, first, "_commit_ts");
	if (dialect != WS_DIALECT_STANDARD)
		ws_clickhouse_append_commit_ts(out, stream->commit_time, dialect);
	else
		append_commit_ts(out, stream);
	append_literal_key(out, first, "_deleted");
	ws_append_str(out, kind == WS_REC_DELETE ? "1" : "0");
}

static bool
values_equal(const WsValue *a, const WsValue *b)
{
	if (a->tag != b->tag)
		return false;
	switch (a->tag)
	{
		case WS_VAL_INT:
		case WS_VAL_DATE:
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
		case WS_VAL_TIME:
			return a->int_value == b->int_value;
		case WS_VAL_FLOAT4:
		case WS_VAL_FLOAT8:
			return a->float_value == b->float_value;
		case WS_VAL_NUMERIC:
		case WS_VAL_TEXT:
		case WS_VAL_JSON:
		case WS_VAL_BYTES:
		case WS_VAL_UUID:
			return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
		case WS_VAL_ARRAY:
			return a->elements.len == b->elements.len &&
				memcmp(a->elements.data, b->elements.data, a->elements.len) == 0;
		default:
			return true;		/* tags without payload */
	}
}

/* Whether an UPDATE moved the row to another key. */
static bool
key_changed(const NdjsonRow *before, const NdjsonRow *after,
			const WsRelation *rel)
{
	uint8		key_flag = WS_COL_KEY;

	if (!before->valid || !after->valid)
		return false;

	/*
	 * Under REPLICA IDENTITY FULL every column is flagged as key: the row's
	 * key is then its primary key, when it has one.
	 */
	if (rel->replica_identity == 'f')
		for (int i = 0; i < rel->ncolumns; i++)
			if (rel->columns[i].flags & WS_COL_PRIMARY_KEY)
				key_flag = WS_COL_PRIMARY_KEY;

	for (int i = 0; i < rel->ncolumns; i++)
	{
		if (!(rel->columns[i].flags & key_flag) || !before->present[i])
			continue;
		if (!values_equal(&before->values[i], &after->values[i]))
			return true;
	}
	return false;
}

static int
append_truncate(StringInfo out, const WsRecord *record,
				const WsStreamContext *stream, WsNdjsonShape shape)
{
	for (uint64 i = 0; i < record->nrelations; i++)
	{
		WsRelationJson *names;
		const WsRelation *rel = lookup_relation(stream, record,
												record->rel_ids[i], &names);
		bool		first = true;

		ws_append_char(out, '{');
		if (shape == WS_NDJSON_ENVELOPE)
		{
			append_literal_key(out, &first, "op");
			escape_json(out, "t");
			append_literal_key(out, &first, "before");
			ws_append_str(out, "null");
			append_literal_key(out, &first, "after");
			ws_append_str(out, "null");
			append_source(out, &first, record, stream, rel, names);
			append_id(out, record, stream);
		}
		else
		{
			append_literal_key(out, &first, "_op");
			escape_json(out, "t");
			append_literal_key(out, &first, "_schema");
			ws_append_json_string(out, rel->schema_name);
			append_literal_key(out, &first, "_table");
			ws_append_json_string(out, rel->table_name);
			append_literal_key(out, &first, "_lsn");
			ws_append_uint64(out, (uint64) stream->commit_lsn);
			append_literal_key(out, &first, "_seq");
			ws_append_uint64(out, record->ordinal);
			append_literal_key(out, &first, "_commit_ts");
			append_commit_ts(out, stream);
			append_literal_key(out, &first, "_deleted");
			ws_append_char(out, '0');
		}
		ws_append_str(out, "}\n");
	}
	return (int) record->nrelations;
}

/*
 * The control line of a RESYNC record: table T was sent again after the
 * slot was lost, every row it holds with a version of at least V; rows a
 * receiver has with a lower version that were not sent again are gone.
 * Envelope:
 *	{"op": "resync", "source": {"schema": S, "table": T}, "version": V,
 *	 "id": "resync-<V, 16 hex digits>-<table OID>"}
 * Flat:
 *	{"_op": "resync", "_schema": S, "_table": T, "_version": V,
 *	 "_lsn": position, "_seq": 0}
 */
static int
append_resync(StringInfo out, const WsRecord *record,
			  const WsStreamContext *stream, WsNdjsonShape shape)
{
	WsRelationJson *names;
	const WsRelation *rel = lookup_relation(stream, record, record->rel_id,
											&names);
	bool		first = true;

	ws_append_char(out, '{');
	if (shape == WS_NDJSON_ENVELOPE)
	{
		bool		sfirst = true;
		static const char hex[] = "0123456789ABCDEF";
		char		buf[16];

		append_literal_key(out, &first, "op");
		ws_append_str(out, "\"resync\"");
		append_literal_key(out, &first, "source");
		ws_append_char(out, '{');
		append_literal_key(out, &sfirst, "schema");
		append_relation_name(out, stream, &names->schema, rel->schema_name);
		append_literal_key(out, &sfirst, "table");
		append_relation_name(out, stream, &names->table, rel->table_name);
		ws_append_char(out, '}');
		append_literal_key(out, &first, "version");
		ws_append_uint64(out, (uint64) record->change_lsn);
		append_literal_key(out, &first, "id");
		for (int i = 0; i < 16; i++)
			buf[i] = hex[(record->change_lsn >> (60 - 4 * i)) & 0xF];
		ws_append_str(out, "\"resync-");
		ws_append_bytes(out, buf, 16);
		appendStringInfo(out, "-%u\"", rel->relation_oid);
	}
	else
	{
		append_literal_key(out, &first, "_op");
		ws_append_str(out, "\"resync\"");
		append_literal_key(out, &first, "_schema");
		append_relation_name(out, stream, &names->schema, rel->schema_name);
		append_literal_key(out, &first, "_table");
		append_relation_name(out, stream, &names->table, rel->table_name);
		append_literal_key(out, &first, "_version");
		ws_append_uint64(out, (uint64) record->change_lsn);
		append_literal_key(out, &first, "_lsn");
		ws_append_uint64(out, (uint64) record->read_position);
		append_literal_key(out, &first, "_seq");
		ws_append_char(out, '0');
	}
	ws_append_str(out, "}\n");
	return 1;
}

int
ws_ndjson_append(StringInfo out, const WsRecord *record,
				 const WsStreamContext *stream, const WsNdjsonOptions *options)
{
	WsNdjsonShape shape = options->shape;
	int			nlines = 1;
	const WsRelation *rel;
	WsRelationJson *names;
	NdjsonRow	before = {0};
	NdjsonRow	after = {0};
	bool	   *unchanged;
	bool		first = true;
	bool		on_stack;
	WsValue		before_values[NDJSON_STACK_COLUMNS];
	WsValue		after_values[NDJSON_STACK_COLUMNS];
	bool		before_present[NDJSON_STACK_COLUMNS];
	bool		after_present[NDJSON_STACK_COLUMNS];
	bool		unchanged_buf[NDJSON_STACK_COLUMNS];

	switch (record->kind)
	{
		case WS_REC_INSERT:
		case WS_REC_UPDATE:
		case WS_REC_DELETE:
		case WS_REC_TRUNCATE:
		case WS_REC_READ:
			break;
		case WS_REC_RESYNC:
			/* ClickHouse gets a statement instead (delivery.c) */
			if (options->dialect != WS_DIALECT_STANDARD)
				return 0;
			return append_resync(out, record, stream, shape);
		default:
			return 0;
	}

	if (XLogRecPtrIsInvalid(stream->commit_lsn))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record stream: %s record outside a transaction",
						ws_record_kind_name(record->kind)),
				 errdetail("No BEGIN record precedes it, so it has no commit LSN.")));

	if (record->kind == WS_REC_TRUNCATE)
	{
		/* the flat shape has no line that empties a ClickHouse table */
		if (options->dialect != WS_DIALECT_STANDARD && shape == WS_NDJSON_FLAT)
		{
			for (uint64 i = 0; i < record->nrelations; i++)
				ws_clickhouse_report_truncate(lookup_relation(stream, record,
															  record->rel_ids[i],
															  NULL));
			return 0;
		}
		return append_truncate(out, record, stream, shape);
	}

	rel = lookup_relation(stream, record, record->rel_id, &names);
	on_stack = rel->ncolumns <= NDJSON_STACK_COLUMNS;
	if (record->kind != WS_REC_INSERT && record->old_kind != WS_OLD_NONE)
		read_row(&before, &record->old_tuple, rel,
				 record->old_kind == WS_OLD_KEY,
				 on_stack ? before_values : NULL,
				 on_stack ? before_present : NULL);
	if (record->kind != WS_REC_DELETE)
		read_row(&after, &record->new_tuple, rel, false,
				 on_stack ? after_values : NULL,
				 on_stack ? after_present : NULL);

	/* never send an unchanged-TOAST marker where the real value is known */
	if (after.valid && record->old_kind == WS_OLD_FULL &&
		record->kind == WS_REC_UPDATE)
	{
		for (int i = 0; i < rel->ncolumns; i++)
			if (after.values[i].tag == WS_VAL_UNCHANGED &&
				before.values[i].tag != WS_VAL_UNCHANGED)
				after.values[i] = before.values[i];
	}

	if (on_stack)
	{
		unchanged = unchanged_buf;
		memset(unchanged, 0, sizeof(bool) * rel->ncolumns);
	}
	else
		unchanged = palloc0(sizeof(bool) * Max(rel->ncolumns, 1));
	ws_append_char(out, '{');
	if (shape == WS_NDJSON_ENVELOPE)
	{
		append_literal_key(out, &first, "op");
		append_op(out, record->kind);
		append_literal_key(out, &first, "before");
		append_row_object(out, &before, rel, names, stream, unchanged,
						  options->dialect);
		append_literal_key(out, &first, "after");
		append_row_object(out, &after, rel, names, stream, unchanged,
						  options->dialect);
		append_unchanged(out, &first, "unchanged_columns", rel, unchanged);
		append_source(out, &first, record, stream, rel, names);
		append_id(out, record, stream);
	}
	else
	{
		/* the new row; for a delete the old row or key, if any */
		const NdjsonRow *row = record->kind == WS_REC_DELETE ? &before : &after;

		/*
		 * A row moved to another key leaves its old key: a delete line for
		 * it goes first, so a table keyed on the primary key drops it.
		 */
		if (record->kind == WS_REC_UPDATE && key_changed(&before, &after, rel))
		{
			bool	   *ignored = palloc0(sizeof(bool) * Max(rel->ncolumns, 1));

			append_row_members(out, &first, &before, rel, names, stream,
							   ignored, options->dialect);
			append_flat_meta(out, &first, record, stream, WS_REC_DELETE,
							 options->dialect);
			ws_append_str(out, "}\n{");
			first = true;
			nlines++;
			pfree(ignored);
		}
		if (row->valid)
			append_row_members(out, &first, row, rel, names, stream,
							   unchanged, options->dialect);
		append_flat_meta(out, &first, record, stream, record->kind,
						 options->dialect);
		append_unchanged(out, &first, "_unchanged", rel, unchanged);
	}
	ws_append_str(out, "}\n");

	if (on_stack)
		return nlines;
	pfree(unchanged);
	if (before.valid)
	{
		pfree(before.values);
		pfree(before.present);
	}
	if (after.valid)
	{
		pfree(after.values);
		pfree(after.present);
	}
	return nlines;
}

void
ws_flat_read_row(WsFlatRow *row, const WsTuple *tuple, const WsRelation *rel,
				 bool key_only)
{
	read_row(row, tuple, rel, key_only, NULL, NULL);
}

bool
ws_flat_key_changed(const WsFlatRow *before, const WsFlatRow *after,
					const WsRelation *rel)
{
	return key_changed(before, after, rel);
}

const WsRelation *
ws_flat_row_relation(const WsStreamContext *stream, const WsRecord *record)
{
	const WsRelation *rel;

	if (record->kind == WS_REC_TRUNCATE)
	{
		for (uint64 i = 0; i < record->nrelations; i++)
			if ((rel = ws_stream_relation(stream, record->rel_ids[i])) != NULL)
				ws_clickhouse_report_truncate(rel);
		return NULL;
	}
	if (record->kind != WS_REC_INSERT && record->kind != WS_REC_UPDATE &&
		record->kind != WS_REC_DELETE && record->kind != WS_REC_READ)
		return NULL;
	rel = ws_stream_relation(stream, record->rel_id);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record stream: %s record refers to relation id " UINT64_FORMAT ", which no earlier RELATION record defines",
						ws_record_kind_name(record->kind), record->rel_id)));
	return rel;
}
