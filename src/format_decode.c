/*-------------------------------------------------------------------------
 *
 * format_decode.c
 *	  Reader of the walship binary format: bounds-checked primitives,
 *	  records (whole, or their headers for routing) and values.  The only
 *	  code that knows the layout of a record body.
 *
 * Input may come from anywhere (a user calling walship.decode() on any
 * bytea), so every read checks the remaining length first and any
 * malformed input raises an ERRCODE_DATA_CORRUPTED error naming what was
 * wrong and where; nothing reads past the buffer.  The one other error is
 * ERRCODE_FEATURE_NOT_SUPPORTED for a BEGIN record of a format version
 * newer than this library reads (docs/format.md, "Errors").
 *
 * IDENTIFICATION
 *	  src/format_decode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "format.h"

/* Array nesting accepted from input; the encoder writes at most 2 levels. */
#define WS_MAX_VALUE_DEPTH	8

#if PG_VERSION_NUM >= 180000
pg_noreturn static void corrupted(const WsReader *reader, const char *what);
#else
static void corrupted(const WsReader *reader, const char *what) pg_attribute_noreturn();
#endif

static void
corrupted(const WsReader *reader, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid walship record: %s", what),
			 errdetail("The problem was found at byte %zu of %zu.",
					   reader->pos, reader->len)));
}

void
ws_reader_init(WsReader *reader, const void *data, Size len)
{
	reader->data = (const uint8 *) data;
	reader->len = len;
	reader->pos = 0;
}

bool
ws_reader_done(const WsReader *reader)
{
	return reader->pos >= reader->len;
}

/* ws_get_byte, inlined into this file's hot paths */
static inline uint8
get_byte(WsReader *reader)
{
	if (reader->pos >= reader->len)
		corrupted(reader, "unexpected end of data");
	return reader->data[reader->pos++];
}

uint8
ws_get_byte(WsReader *reader)
{
	return get_byte(reader);
}

/* ws_get_uvarint, inlined into this file's hot paths */
static inline uint64
get_uvarint(WsReader *reader)
{
	uint64		result = 0;

	/* most varints are a single byte */
	if (reader->pos < reader->len && (reader->data[reader->pos] & 0x80) == 0)
		return reader->data[reader->pos++];

	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8		b = get_byte(reader);

		if (shift == 63 && b > 1)
			break;
		result |= (uint64) (b & 0x7F) << shift;
		if ((b & 0x80) == 0)
			return result;
	}
	corrupted(reader, "varint longer than 64 bits");
}

uint64
ws_get_uvarint(WsReader *reader)
{
	return get_uvarint(reader);
}

/* ws_get_svarint, inlined into this file's hot paths */
static inline int64
get_svarint(WsReader *reader)
{
	uint64		u = get_uvarint(reader);

	return (int64) (u >> 1) ^ -(int64) (u & 1);
}

int64
ws_get_svarint(WsReader *reader)
{
	return get_svarint(reader);
}

const char *
ws_get_bytes(WsReader *reader, Size len)
{
	const char *result;

	if (len > reader->len - reader->pos)
		corrupted(reader, "length runs past the end of the data");
	result = (const char *) reader->data + reader->pos;
	reader->pos += len;
	return result;
}

uint64
ws_get_uint64_le(WsReader *reader)
{
	const uint8 *p = (const uint8 *) ws_get_bytes(reader, 8);
	uint64		result = 0;

	for (int i = 7; i >= 0; i--)
		result = (result << 8) | p[i];
	return result;
}

static uint32
get_uint32_le(WsReader *reader)
{
	const uint8 *p = (const uint8 *) ws_get_bytes(reader, 4);

	return (uint32) p[0] | ((uint32) p[1] << 8) |
		((uint32) p[2] << 16) | ((uint32) p[3] << 24);
}

/* A length-prefixed byte string; *len receives its length. */
static const char *
get_counted(WsReader *reader, Size *len)
{
	uint64		n = get_uvarint(reader);

	if (n > reader->len - reader->pos)
		corrupted(reader, "length runs past the end of the data");
	*len = (Size) n;
	return ws_get_bytes(reader, *len);
}

/* A length-prefixed string, as a palloc'd NUL-terminated copy. */
static char *
get_string(WsReader *reader)
{
	Size		len;
	const char *p = get_counted(reader, &len);

	if (memchr(p, '\0', len) != NULL)
		corrupted(reader, "name contains a zero byte");
	return pnstrdup(p, len);
}

/*
 * A count of items that each take at least min_item_size bytes; rejects
 * counts the remaining data cannot hold, so corrupt counts cannot make
 * callers allocate or loop without bound.
 */
static uint64
get_count(WsReader *reader, Size min_item_size)
{
	uint64		n = get_uvarint(reader);

	if (n > (reader->len - reader->pos) / Max(min_item_size, 1))
		corrupted(reader, "count larger than the data can hold");
	return n;
}

/*
 * Steps over a value: its framing (tag, lengths, nesting) is checked, its
 * content is left to whoever reads it with ws_read_value().  Tuples and
 * arrays are stepped over once to find their end, then read, so this is
 * the decoders' hot path.
 */
static void
skip_value_at_depth(WsReader *reader, int depth)
{
	uint8		tag = get_byte(reader);

	switch (tag)
	{
		case WS_VAL_NULL:
		case WS_VAL_UNCHANGED:
		case WS_VAL_FALSE:
		case WS_VAL_TRUE:
		case WS_VAL_POS_INFINITY:
		case WS_VAL_NEG_INFINITY:
			break;
		case WS_VAL_INT:
		case WS_VAL_DATE:
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
			(void) get_uvarint(reader);
			break;
		case WS_VAL_TIME:
			/* checked here too, so that the message names the record's byte */
			if (get_uvarint(reader) > PG_INT64_MAX)
				corrupted(reader, "time value out of range");
			break;
		case WS_VAL_FLOAT4:
			(void) ws_get_bytes(reader, 4);
			break;
		case WS_VAL_FLOAT8:
			(void) ws_get_bytes(reader, 8);
			break;
		case WS_VAL_NUMERIC:
		case WS_VAL_TEXT:
		case WS_VAL_JSON:
		case WS_VAL_BYTES:
			{
				Size		len;

				(void) get_counted(reader, &len);
			}
			break;
		case WS_VAL_UUID:
			(void) ws_get_bytes(reader, 16);
			break;
		case WS_VAL_ARRAY:
			{
				uint64		n;

				if (depth >= WS_MAX_VALUE_DEPTH)
					corrupted(reader, "arrays nested too deeply");
				n = get_count(reader, 1);
				for (uint64 i = 0; i < n; i++)
					skip_value_at_depth(reader, depth + 1);
			}
			break;
		default:
			corrupted(reader, psprintf("unknown value tag 0x%02x", tag));
	}
}

static void
skip_values(WsReader *reader, uint64 n, int depth)
{
	for (uint64 i = 0; i < n; i++)
		skip_value_at_depth(reader, depth);
}

static void
read_value_at_depth(WsReader *reader, WsValue *value, int depth)
{
	memset(value, 0, sizeof(WsValue));
	value->tag = (char) get_byte(reader);

	switch (value->tag)
	{
		case WS_VAL_NULL:
		case WS_VAL_UNCHANGED:
		case WS_VAL_FALSE:
		case WS_VAL_TRUE:
		case WS_VAL_POS_INFINITY:
		case WS_VAL_NEG_INFINITY:
			break;
		case WS_VAL_INT:
		case WS_VAL_DATE:
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
			value->int_value = get_svarint(reader);
			break;
		case WS_VAL_TIME:
			{
				uint64		t = get_uvarint(reader);

				if (t > PG_INT64_MAX)
					corrupted(reader, "time value out of range");
				value->int_value = (int64) t;
			}
			break;
		case WS_VAL_FLOAT4:
			{
				uint32		bits = get_uint32_le(reader);
				float4		f;

				memcpy(&f, &bits, sizeof(f));
				value->float_value = f;
			}
			break;
		case WS_VAL_FLOAT8:
			{
				uint64		bits = ws_get_uint64_le(reader);

				memcpy(&value->float_value, &bits, sizeof(double));
			}
			break;
		case WS_VAL_NUMERIC:
		case WS_VAL_TEXT:
		case WS_VAL_JSON:
		case WS_VAL_BYTES:
			value->data = get_counted(reader, &value->len);
			break;
		case WS_VAL_UUID:
			value->len = 16;
			value->data = ws_get_bytes(reader, 16);
			break;
		case WS_VAL_ARRAY:
			{
				Size		start;

				if (depth >= WS_MAX_VALUE_DEPTH)
					corrupted(reader, "arrays nested too deeply");
				value->nelements = get_count(reader, 1);
				start = reader->pos;
				skip_values(reader, value->nelements, depth + 1);
				ws_reader_init(&value->elements, reader->data + start,
							   reader->pos - start);
			}
			break;
		default:
			corrupted(reader, psprintf("unknown value tag 0x%02x",
									   (unsigned char) value->tag));
	}
}

void
ws_read_value(WsReader *reader, WsValue *value)
{
	read_value_at_depth(reader, value, 0);
}

static void
read_tuple(WsReader *reader, WsTuple *tuple)
{
	Size		start;

	tuple->nvalues = get_count(reader, 1);
	start = reader->pos;
	skip_values(reader, tuple->nvalues, 0);
	ws_reader_init(&tuple->values, reader->data + start, reader->pos - start);
}

/* A RELATION body after its relation id and OID. */
static void
read_relation(WsReader *body, WsRelation *rel)
{
	rel->schema_name = get_string(body);
	rel->table_name = get_string(body);
	rel->replica_identity = (char) ws_get_byte(body);
	/* a column takes at least 5 bytes: flags, name, type, typmod, type name */
	rel->ncolumns = (int) get_count(body, 5);
	rel->columns = palloc0(sizeof(WsColumn) * Max(rel->ncolumns, 1));
	for (int i = 0; i < rel->ncolumns; i++)
	{
		WsColumn   *col = &rel->columns[i];
		int64		typmod;

		col->flags = ws_get_byte(body);
		col->name = get_string(body);
		col->type_oid = (Oid) ws_get_uvarint(body);
		typmod = ws_get_svarint(body);
		if (typmod < PG_INT32_MIN || typmod > PG_INT32_MAX)
			corrupted(body, "type modifier out of range");
		col->typmod = (int32) typmod;
		col->type_name = get_string(body);
	}
}

static void
read_old_tuple(WsReader *body, WsRecord *record)
{
	record->old_kind = (char) ws_get_byte(body);
	if (record->old_kind == WS_OLD_KEY || record->old_kind == WS_OLD_FULL)
		read_tuple(body, &record->old_tuple);
	else if (record->old_kind != WS_OLD_NONE)
		corrupted(body, "unknown old tuple kind");
}

/*
 * Reads one framed record up to what routing it takes: its kind, and the
 * fields that come before any tuple, column list or message text (see
 * format.h).  record->body is left after those fields, for
 * ws_read_record_rest(); the reader after the record.  Fields a newer minor
 * revision may append to a body are ignored: the frame says where the next
 * record starts.
 */
void
ws_read_record_header(WsReader *reader, WsRecord *record)
{
	Size		body_len;
	const char *body_data;
	WsReader   *body = &record->body;

	memset(record, 0, sizeof(WsRecord));
	record->kind = (char) ws_get_byte(reader);
	body_data = get_counted(reader, &body_len);
	ws_reader_init(body, body_data, body_len);

	switch (record->kind)
	{
		case WS_REC_BEGIN:
			record->format_version = ws_get_byte(body);
			/* versions count from 1: 0 is corrupt, a larger one newer */
			if (record->format_version == 0)
				corrupted(body, "format version 0");
			if (record->format_version < WALSHIP_FORMAT_VERSION_MIN ||
				record->format_version > WALSHIP_FORMAT_VERSION)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("walship format version %d is not supported",
								record->format_version),
						 errdetail("This walship library reads format versions %d to %d.",
								   WALSHIP_FORMAT_VERSION_MIN,
								   WALSHIP_FORMAT_VERSION)));
			record->xid = (TransactionId) ws_get_uvarint(body);
			record->commit_lsn = ws_get_uint64_le(body);
			record->commit_time = ws_get_svarint(body);
			break;
		case WS_REC_COMMIT:
			record->commit_lsn = ws_get_uint64_le(body);
			record->end_lsn = ws_get_uint64_le(body);
			record->commit_time = ws_get_svarint(body);
			record->nchanges = ws_get_uvarint(body);
			break;
		case WS_REC_RELATION:
			record->relation.rel_id = ws_get_uvarint(body);
			record->definition = (const char *) body->data + body->pos;
			record->definition_len = body->len - body->pos;
			record->relation.relation_oid = (Oid) ws_get_uvarint(body);
			break;
		case WS_REC_INSERT:
		case WS_REC_UPDATE:
		case WS_REC_DELETE:
			record->rel_id = ws_get_uvarint(body);
			record->ordinal = ws_get_uvarint(body);
			break;
		case WS_REC_READ:
			record->rel_id = ws_get_uvarint(body);
			record->ordinal = ws_get_uvarint(body);
			record->read_position = ws_get_uint64_le(body);
			record->read_time = ws_get_svarint(body);
			break;
		case WS_REC_RESYNC:
			record->rel_id = ws_get_uvarint(body);
			record->ordinal = ws_get_uvarint(body);
			record->read_position = ws_get_uint64_le(body);
			record->change_lsn = ws_get_uint64_le(body);
			break;
		case WS_REC_TRUNCATE:
			record->ordinal = ws_get_uvarint(body);
			record->truncate_flags = ws_get_byte(body);
			record->nrelations = get_count(body, 1);
			record->rel_ids = palloc(sizeof(uint64) * Max(record->nrelations, 1));
			for (uint64 i = 0; i < record->nrelations; i++)
				record->rel_ids[i] = ws_get_uvarint(body);
			break;
		case WS_REC_MESSAGE:
			record->ordinal = ws_get_uvarint(body);
			record->message_flags = ws_get_byte(body);
			record->message_lsn = ws_get_uint64_le(body);
			break;
		default:
			corrupted(reader, psprintf("unknown record kind 0x%02x",
									   (unsigned char) record->kind));
	}
}

/*
 * Reads the rest of a record ws_read_record_header() read: a RELATION's
 * names and columns, a change's tuples and change LSN, a READ's tuple and
 * version, a MESSAGE's prefix and content.
 */
void
ws_read_record_rest(WsRecord *record)
{
	WsReader   *body = &record->body;

	switch (record->kind)
	{
		case WS_REC_RELATION:
			read_relation(body, &record->relation);
			break;
		case WS_REC_INSERT:
		case WS_REC_UPDATE:
		case WS_REC_DELETE:
			if (record->kind != WS_REC_INSERT)
				read_old_tuple(body, record);
			if (record->kind != WS_REC_DELETE)
				read_tuple(body, &record->new_tuple);
			record->change_lsn = ws_get_uvarint(body);
			break;
		case WS_REC_READ:
			record->old_kind = WS_OLD_NONE;
			read_tuple(body, &record->new_tuple);
			record->change_lsn = ws_get_uvarint(body);
			break;
		case WS_REC_MESSAGE:
			record->prefix = get_string(body);
			record->content = get_counted(body, &record->content_len);
			break;
		default:
			/* BEGIN, COMMIT, TRUNCATE, RESYNC: the header is the record */
			break;
	}
}

/*
 * Reads one framed record, whole.  Relation, tuple and truncate parts are
 * decoded into palloc'd memory in the current memory context.
 */
void
ws_read_record(WsReader *reader, WsRecord *record)
{
	ws_read_record_header(reader, record);
	ws_read_record_rest(record);
}

/*
 * A tuple that is the whole of data (as ws_relation_write_tuple writes
 * one): its count, and its values to read with ws_read_value(), which
 * checks each as it reads it.
 */
void
ws_tuple_init(WsTuple *tuple, const void *data, Size len)
{
	WsReader	reader;

	ws_reader_init(&reader, data, len);
	tuple->nvalues = get_count(&reader, 1);
	ws_reader_init(&tuple->values, reader.data + reader.pos,
				   reader.len - reader.pos);
}

const char *
ws_record_kind_name(char kind)
{
	switch (kind)
	{
		case WS_REC_BEGIN:
			return "begin";
		case WS_REC_COMMIT:
			return "commit";
		case WS_REC_RELATION:
			return "relation";
		case WS_REC_INSERT:
			return "insert";
		case WS_REC_UPDATE:
			return "update";
		case WS_REC_DELETE:
			return "delete";
		case WS_REC_TRUNCATE:
			return "truncate";
		case WS_REC_MESSAGE:
			return "message";
		case WS_REC_READ:
			return "read";
		case WS_REC_RESYNC:
			return "resync";
	}
	return "unknown";
}
