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
 * Values are checked as they are rendered: text that is not UTF-8 or holds
 * a zero byte, json text that is not one JSON value, numeric text that is
 * not what numeric_out() writes, and dates and times out of range raise
 * ERRCODE_DATA_CORRUPTED, as format_decode.c does for the framing, so that
 * corrupt input gives no other SQLSTATE (docs/format.md, "Errors").
 *
 * The NDJSON encoder (ndjson.c) renders values with ws_value_to_json() too,
 * and keeps the JSON text of each relation's names in the stream context,
 * so that it is rendered once rather than once per change.
 *
 * IDENTIFICATION
 *	  src/record_json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
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
	WsRelationJson json;		/* its names as JSON, filled in on use */
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
	context->transaction_json = palloc0(sizeof(WsTransactionJson));
	context->json_trusted = false;
}

/* Remembers what later records of the stream refer to. */
void
ws_stream_context_track(WsStreamContext *context, const WsRecord *record)
{
	if (record->kind == WS_REC_BEGIN || record->kind == WS_REC_READ)
	{
		/*
		 * Backfilled rows stand outside transactions: they go out at their
		 * chunk's position (by its high watermark), stamped with the time
		 * they were read.
		 */
		bool		read = record->kind == WS_REC_READ;

		if (read && context->commit_lsn == record->read_position &&
			context->commit_time == record->read_time)
			return;				/* the chunk's rows share it all */
		context->commit_lsn = read ? record->read_position : record->commit_lsn;
		context->xid = read ? InvalidTransactionId : record->xid;
		context->commit_time = read ? record->read_time : record->commit_time;
		context->transaction_json->valid = false;
		/* rendered once per transaction, not once per change */
		{
			StringInfoData text;
			WsValue		ts = {.tag = WS_VAL_TIMESTAMPTZ,.int_value = context->commit_time};

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
		/* a relation sent again may have other names: render them anew */
		memset(&slot->json, 0, sizeof(WsRelationJson));
		slot->json.column_keys = palloc0(sizeof(WsJsonText) * Max(rel->ncolumns, 1));
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

/*
 * The relation rel_id, or NULL if the stream defines no such relation; and
 * unless json is NULL, its JSON text cache in *json (NULL with it), from
 * the same lookup.  The caller fills the cache in with
 * ws_cached_json_string().
 */
const WsRelation *
ws_stream_relation_and_json(const WsStreamContext *context, uint64 rel_id,
							WsRelationJson **json)
{
	WsRelationSlot *slot;

	if (context == NULL)
		slot = NULL;
	else
		slot = hash_search(context->relations, &rel_id, HASH_FIND, NULL);
	if (json != NULL)
		*json = slot ? &slot->json : NULL;
	return slot ? &slot->relation : NULL;
}

/*
 * The text prefix, then str as a JSON string as ws_append_json_string()
 * writes it, then suffix: rendered into cache on first use (in the stream
 * context's memory), and taken from there after.
 */
const WsJsonText *
ws_cached_json_string(const WsStreamContext *context, WsJsonText *cache,
					  const char *prefix, const char *str, const char *suffix)
{
	if (cache->data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(context->memory);
		StringInfoData text;

		initStringInfo(&text);
		ws_append_str(&text, prefix);
		ws_append_json_string(&text, str);
		ws_append_str(&text, suffix);
		/* kept for the stream's life: no bigger than needed */
		cache->data = pnstrdup(text.data, text.len);
		cache->len = text.len;
		pfree(text.data);
		MemoryContextSwitchTo(old);
	}
	return cache;
}

/* Integers without going through printf. */
void
ws_append_int64(StringInfo out, int64 value)
{
	char		buf[MAXINT8LEN + 1];

	ws_append_bytes(out, buf, pg_lltoa(value, buf));
}

void
ws_append_uint64(StringInfo out, uint64 value)
{
	char		buf[MAXINT8LEN + 1];

	ws_append_bytes(out, buf, pg_ulltoa_n(value, buf));
}

/* Starts an object member: a separator unless first, then "key": */
void
ws_append_json_key(StringInfo out, bool *first, const char *key)
{
	if (!*first)
		ws_append_str(out, ", ");
	*first = false;
	escape_json(out, key);
	ws_append_str(out, ": ");
}

/*
 * Text in a record is UTF-8 without zero bytes (PostgreSQL text holds
 * none); anything else is corrupt.  what names the text in the message.
 */
static void
check_utf8(const char *data, Size len, const char *what)
{
	const char *zero = memchr(data, '\0', len);
	int			valid;

	if (zero != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: %s contains a zero byte", what),
				 errdetail("The %s has %zu bytes; byte %zu is zero.",
						   what, len, (Size) (zero - data))));
	if (len > (Size) PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: %s is too long", what)));
	valid = pg_encoding_verifymbstr(PG_UTF8, data, (int) len);
	if ((Size) valid < len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: %s is not valid UTF-8", what),
				 errdetail("The %s has %zu bytes; the invalid sequence starts at byte %d.",
						   what, len, valid)));
}

/*
 * What append_escaped_json() does with each byte: JSON_BYTE_PLAIN copies
 * it; JSON_BYTE_CHECK copies it too, but it is a zero byte or not ASCII,
 * so the text must first pass check_utf8(); JSON_BYTE_ESCAPE escapes it.
 */
#define JSON_BYTE_PLAIN		0
#define JSON_BYTE_CHECK		1
#define JSON_BYTE_ESCAPE	2

static const uint8 json_byte_class[256] = {
	1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/*
 * Appends UTF-8 text as a JSON string, as escape_json() does but without
 * needing a terminated copy: runs of plain bytes are copied whole.  Text
 * that is all ASCII without zero bytes is valid UTF-8, so check_utf8() runs
 * only for text with other bytes, once, on the first one, unless checked
 * says the caller ran it already; what names the text for its messages.
 */
static void
append_escaped_json(StringInfo out, const char *data, Size len,
					const char *what, bool checked)
{
	Size		run = 0;

	if (len > (Size) PG_INT32_MAX && !checked)
		check_utf8(data, len, what);
	ws_append_char(out, '"');
	for (Size i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) data[i];
		uint8		cls = json_byte_class[c];

		if (likely(cls == JSON_BYTE_PLAIN))
			continue;
		if (cls == JSON_BYTE_CHECK)
		{
			/* raises an error for a zero byte, so c is not ASCII after */
			if (!checked)
				check_utf8(data, len, what);
			checked = true;
			continue;
		}
		ws_append_bytes(out, data + run, i - run);
		run = i + 1;
		switch (c)
		{
			case '\b':
				ws_append_bytes(out, "\\b", 2);
				break;
			case '\f':
				ws_append_bytes(out, "\\f", 2);
				break;
			case '\n':
				ws_append_bytes(out, "\\n", 2);
				break;
			case '\r':
				ws_append_bytes(out, "\\r", 2);
				break;
			case '\t':
				ws_append_bytes(out, "\\t", 2);
				break;
			case '"':
				ws_append_bytes(out, "\\\"", 2);
				break;
			case '\\':
				ws_append_bytes(out, "\\\\", 2);
				break;
			default:
				appendStringInfo(out, "\\u%04x", c);
				break;
		}
	}
	ws_append_bytes(out, data + run, len - run);
	ws_append_char(out, '"');
}

/*
 * A UTF-8 byte string from a record, as a JSON string.  In a server
 * encoding other than UTF-8, a character that encoding lacks raises
 * ERRCODE_UNTRANSLATABLE_CHARACTER: the record is fine, the server cannot
 * show it.
 */
static void
append_utf8_string(StringInfo out, const char *data, Size len,
				   const char *what)
{
	char	   *server;

	if (GetDatabaseEncoding() == PG_UTF8)
	{
		/* checked as it is escaped */
		append_escaped_json(out, data, len, what, false);
		return;
	}
	check_utf8(data, len, what);
	server = pg_any_to_server(data, len, PG_UTF8);

	/* pg_any_to_server may return data itself */
	if (server == data)
		append_escaped_json(out, data, len, what, true);
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
	append_utf8_string(out, str, strlen(str), "name");
}

/*
 * Writes value in uppercase hex digits, as printf's %X does, to buf;
 * returns the number of digits.
 */
static int
format_hex32(char *buf, uint32 value)
{
	static const char hex[] = "0123456789ABCDEF";
	char		digits[8];
	int			n = 0;

	do
	{
		digits[n++] = hex[value & 0xF];
		value >>= 4;
	} while (value != 0);
	for (int i = 0; i < n; i++)
		buf[i] = digits[n - 1 - i];
	return n;
}

/* An LSN as a JSON string, "%X/%X" as PostgreSQL writes it. */
void
ws_append_lsn(StringInfo out, XLogRecPtr lsn)
{
	char		buf[20];
	int			len = 0;

	buf[len++] = '"';
	len += format_hex32(buf + len, (uint32) (lsn >> 32));
	buf[len++] = '/';
	len += format_hex32(buf + len, (uint32) lsn);
	buf[len++] = '"';
	ws_append_bytes(out, buf, len);
}

static void
append_bytea_hex(StringInfo out, const char *data, Size len)
{
	static const char hex[] = "0123456789abcdef";
	char	   *p;

	ws_append_str(out, "\"\\\\x");
	enlargeStringInfo(out, len * 2 + 1);
	p = out->data + out->len;
	for (Size i = 0; i < len; i++)
	{
		*p++ = hex[(unsigned char) data[i] >> 4];
		*p++ = hex[(unsigned char) data[i] & 0xF];
	}
	*p++ = '"';
	*p = '\0';
	out->len = p - out->data;
}

/* A UUID as a JSON string, in the usual 8-4-4-4-12 lowercase hex form. */
static void
append_uuid(StringInfo out, const unsigned char *u)
{
	static const char hex[] = "0123456789abcdef";
	char		buf[2 + 32 + 4];
	int			len = 0;

	buf[len++] = '"';
	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[len++] = '-';
		buf[len++] = hex[u[i] >> 4];
		buf[len++] = hex[u[i] & 0xF];
	}
	buf[len++] = '"';
	ws_append_bytes(out, buf, len);
}

static void
append_float(StringInfo out, double value, bool is_float4)
{
	char		buf[32];

	if (isnan(value))
		ws_append_str(out, "\"NaN\"");
	else if (isinf(value))
		ws_append_str(out, value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else if (is_float4)
		ws_append_bytes(out, buf,
						float_to_shortest_decimal_bufn((float) value, buf));
	else
		ws_append_bytes(out, buf,
						double_to_shortest_decimal_bufn(value, buf));
}

/*
 * Writes a date (year as j2date() returns it, 0 for 1 BC) as
 * JsonEncodeDateTime() does, but for the " BC" suffix, which comes last:
 * the year with at least 4 digits, month and day with 2.  Returns the end.
 */
static char *
format_date(char *p, int year, int month, int day)
{
	p = pg_ultostr_zeropad(p, (year > 0) ? year : -(year - 1), 4);
	*p++ = '-';
	p = pg_ultostr_zeropad(p, month, 2);
	*p++ = '-';
	return pg_ultostr_zeropad(p, day, 2);
}

/*
 * A finite date or timestamp in range, with the text JsonEncodeDateTime()
 * gives it (timestamptz in UTC), but without its detour through struct
 * pg_tm and EncodeDateTime(): ISO 8601 with a 'T', fractional seconds only
 * when not zero and without trailing zeros, "+00:00" for timestamptz, and
 * " BC" after it all for years before 1 AD.  pg_days and pg_usecs count
 * from 2000-01-01; for a date pg_usecs is unused, else pg_days.  Compared
 * with JsonEncodeDateTime() over millions of values across the whole range,
 * BC included: keep them in step.
 */
static void
append_datetime_text(StringInfo out, int32 pg_days, Timestamp pg_usecs,
					 Oid typid)
{
	char		buf[MAXDATELEN + 3];
	char	   *p = buf;
	int			year;
	int			month;
	int			day;

	*p++ = '"';
	if (typid == DATEOID)
	{
		j2date(pg_days + POSTGRES_EPOCH_JDATE, &year, &month, &day);
		p = format_date(p, year, month, day);
	}
	else
	{
		int64		days = pg_usecs / USECS_PER_DAY;
		int64		time = pg_usecs - days * USECS_PER_DAY;
		int			hour;
		int			minute;
		int			second;
		int			fsec;

		/* as timestamp2tm(): the time of day is never negative */
		if (time < 0)
		{
			time += USECS_PER_DAY;
			days--;
		}
		j2date((int) (days + POSTGRES_EPOCH_JDATE), &year, &month, &day);
		hour = (int) (time / USECS_PER_HOUR);
		time -= hour * USECS_PER_HOUR;
		minute = (int) (time / USECS_PER_MINUTE);
		time -= minute * USECS_PER_MINUTE;
		second = (int) (time / USECS_PER_SEC);
		fsec = (int) (time - second * USECS_PER_SEC);

		p = format_date(p, year, month, day);
		*p++ = 'T';
		p = pg_ultostr_zeropad(p, hour, 2);
		*p++ = ':';
		p = pg_ultostr_zeropad(p, minute, 2);
		*p++ = ':';
		p = pg_ultostr_zeropad(p, second, 2);
		if (fsec != 0)
		{
			int			ndigits = 6;

			/* six digits, less the trailing zeros */
			while (fsec % 10 == 0)
			{
				fsec /= 10;
				ndigits--;
			}
			*p++ = '.';
			p = pg_ultostr_zeropad(p, fsec, ndigits);
		}
		if (typid == TIMESTAMPTZOID)
		{
			memcpy(p, "+00:00", 6);
			p += 6;
		}
	}
	if (year <= 0)
	{
		memcpy(p, " BC", 3);
		p += 3;
	}
	*p++ = '"';
	ws_append_bytes(out, buf, p - buf);
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
	if (typid == TIMEOID)
	{
		JsonEncodeDateTime(buf, datum, typid, &utc);
		ws_append_char(out, '"');
		ws_append_str(out, buf);
		ws_append_char(out, '"');
	}
	else if (typid == DATEOID)
		append_datetime_text(out, DatumGetDateADT(datum), 0, typid);
	else
		append_datetime_text(out, 0, DatumGetTimestamp(datum), typid);
}

/*
 * Whether numeric text is a finite number, which is also a JSON number;
 * false for NaN, Infinity and -Infinity.  Anything else numeric_out()
 * does not write (an optional minus, "0" or digits without a leading
 * zero, optionally a point and digits; at most 131072 digits before the
 * point and 16383 after it, numeric's limits) is corrupt.
 */
bool
ws_numeric_is_finite(const char *data, Size len)
{
	Size		i = 0;
	Size		int_start;
	Size		int_digits;
	Size		frac_digits = 0;
	bool		valid;

	if ((len == 3 && memcmp(data, "NaN", 3) == 0) ||
		(len == 8 && memcmp(data, "Infinity", 8) == 0) ||
		(len == 9 && memcmp(data, "-Infinity", 9) == 0))
		return false;

	if (i < len && data[i] == '-')
		i++;
	int_start = i;
	while (i < len && data[i] >= '0' && data[i] <= '9')
		i++;
	int_digits = i - int_start;
	valid = int_digits >= 1 && int_digits <= 131072 &&
		!(int_digits > 1 && data[int_start] == '0');
	if (valid && i < len && data[i] == '.')
	{
		Size		frac_start = ++i;

		while (i < len && data[i] >= '0' && data[i] <= '9')
			i++;
		frac_digits = i - frac_start;
		valid = frac_digits >= 1 && frac_digits <= 16383;
	}
	if (!valid || i != len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: numeric value is not a number"),
				 errdetail("A numeric value must be NaN, Infinity, -Infinity, or digits with an optional minus sign and decimal point, as PostgreSQL writes them; this one (%zu bytes) starts \"%s\".",
						   len, ws_printable_prefix(data, len))));
	return true;
}

/*
 * The start of possibly corrupt text, for an error message: at most 20
 * bytes, with bytes other than printable ASCII as '?'.
 */
char *
ws_printable_prefix(const char *data, Size len)
{
	Size		n = Min(len, 20);
	char	   *result = palloc(n + 1);

	for (Size i = 0; i < n; i++)
		result[i] = (data[i] >= 0x20 && data[i] < 0x7f) ? data[i] : '?';
	result[n] = '\0';
	return result;
}

/*
 * Checks that json text from a record is exactly one JSON value, as
 * json_in() does, but as corruption: embedded as is, anything else could
 * change the structure of the output.
 */
static void
check_json(const char *data, Size len)
{
	JsonParseErrorType error;
#if PG_VERSION_NUM >= 170000
	JsonLexContext lex_data;
	JsonLexContext *lex = &lex_data;
#else
	JsonLexContext *lex;
#endif

	check_utf8(data, len, "json value");
#if PG_VERSION_NUM >= 170000
	makeJsonLexContextCstringLen(lex, (char *) data, len, PG_UTF8, false);
#else
	lex = makeJsonLexContextCstringLen((char *) data, (int) len, PG_UTF8, false);
#endif
	error = pg_parse_json(lex, &nullSemAction);
	if (error != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record: json value is not valid JSON"),
				 errdetail("%s", json_errdetail(error, lex))));
#if PG_VERSION_NUM >= 170000
	freeJsonLexContext(lex);
#endif
}

/*
 * A value as JSON.  json_trusted skips the check that a json value is
 * valid JSON: only for records walship itself wrote.
 */
void
ws_value_to_json(StringInfo out, const WsValue *value, bool json_trusted)
{
	switch (value->tag)
	{
		case WS_VAL_NULL:
			ws_append_bytes(out, "null", 4);
			break;
		case WS_VAL_UNCHANGED:
			ws_append_str(out, "{\"unchanged_toast\": true}");
			break;
		case WS_VAL_FALSE:
			ws_append_bytes(out, "false", 5);
			break;
		case WS_VAL_TRUE:
			ws_append_bytes(out, "true", 4);
			break;
		case WS_VAL_INT:
			ws_append_int64(out, value->int_value);
			break;
		case WS_VAL_FLOAT4:
		case WS_VAL_FLOAT8:
			append_float(out, value->float_value, value->tag == WS_VAL_FLOAT4);
			break;
		case WS_VAL_NUMERIC:
			if (ws_numeric_is_finite(value->data, value->len))
				ws_append_bytes(out, value->data, value->len);
			else
			{
				/* NaN and the infinities are not JSON numbers */
				ws_append_char(out, '"');
				ws_append_bytes(out, value->data, value->len);
				ws_append_char(out, '"');
			}
			break;
		case WS_VAL_TEXT:
			append_utf8_string(out, value->data, value->len, "text value");
			break;
		case WS_VAL_JSON:
			{
				char	   *server;

				/*
				 * Embedded as is, so it must be exactly one JSON value, or a
				 * corrupt record could change the structure of the output.
				 */
				if (!json_trusted)
					check_json(value->data, value->len);
				else if (GetDatabaseEncoding() == PG_UTF8)
				{
					/* the server's own text: nothing to convert or check */
					ws_append_bytes(out, value->data, value->len);
					break;
				}
				server = pg_any_to_server(value->data, value->len, PG_UTF8);
				if (server == value->data)
					ws_append_bytes(out, value->data, value->len);
				else
				{
					ws_append_str(out, server);
					pfree(server);
				}
			}
			break;
		case WS_VAL_BYTES:
			append_bytea_hex(out, value->data, value->len);
			break;
		case WS_VAL_UUID:
			append_uuid(out, (const unsigned char *) value->data);
			break;
		case WS_VAL_DATE:
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
		case WS_VAL_TIME:
			ws_append_datetime(out, value);
			break;
		case WS_VAL_POS_INFINITY:
			ws_append_str(out, "\"infinity\"");
			break;
		case WS_VAL_NEG_INFINITY:
			ws_append_str(out, "\"-infinity\"");
			break;
		case WS_VAL_ARRAY:
			{
				WsReader	elements = value->elements;
				WsValue		element;

				ws_append_char(out, '[');
				for (uint64 i = 0; i < value->nelements; i++)
				{
					if (i > 0)
						ws_append_str(out, ", ");
					ws_read_value(&elements, &element);
					ws_value_to_json(out, &element, json_trusted);
				}
				ws_append_char(out, ']');
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
		ws_append_char(out, '[');
		for (uint64 i = 0; i < tuple->nvalues; i++)
		{
			if (i > 0)
				ws_append_str(out, ", ");
			ws_read_value(&values, &value);
			ws_value_to_json(out, &value, false);
		}
		ws_append_char(out, ']');
		return;
	}

	ws_append_char(out, '{');
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
		ws_value_to_json(out, &value, false);
		col++;
	}
	ws_append_char(out, '}');
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
	append_utf8_string(out, rel->schema_name, strlen(rel->schema_name), "schema name");
	ws_append_json_key(out, first, "table");
	append_utf8_string(out, rel->table_name, strlen(rel->table_name), "table name");
	ws_append_json_key(out, first, "replica_identity");
	escape_json(out, replica_identity_name(rel->replica_identity));
	ws_append_json_key(out, first, "columns");
	ws_append_char(out, '[');
	for (int i = 0; i < rel->ncolumns; i++)
	{
		const WsColumn *col = &rel->columns[i];
		bool		cfirst = true;

		if (i > 0)
			ws_append_str(out, ", ");
		ws_append_char(out, '{');
		ws_append_json_key(out, &cfirst, "name");
		append_utf8_string(out, col->name, strlen(col->name), "column name");
		ws_append_json_key(out, &cfirst, "type");
		append_utf8_string(out, col->type_name, strlen(col->type_name), "type name");
		ws_append_json_key(out, &cfirst, "type_oid");
		appendStringInfo(out, "%u", col->type_oid);
		ws_append_json_key(out, &cfirst, "typmod");
		appendStringInfo(out, "%d", col->typmod);
		ws_append_json_key(out, &cfirst, "key");
		ws_append_str(out, (col->flags & WS_COL_KEY) ? "true" : "false");
		ws_append_json_key(out, &cfirst, "not_null");
		ws_append_str(out, (col->flags & WS_COL_NOT_NULL) ? "true" : "false");
		ws_append_json_key(out, &cfirst, "primary_key");
		ws_append_str(out, (col->flags & WS_COL_PRIMARY_KEY) ? "true" : "false");
		ws_append_char(out, '}');
	}
	ws_append_char(out, ']');
}

static void
append_qualified_name(StringInfo out, const WsRelation *rel)
{
	char	   *name = psprintf("%s.%s", rel->schema_name, rel->table_name);

	append_utf8_string(out, name, strlen(name), "relation name");
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
		ws_append_lsn(out, context->commit_lsn);
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

	ws_append_char(out, '{');
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
			ws_append_lsn(out, record->commit_lsn);
			ws_append_json_key(out, &first, "commit_time");
			{
				WsValue		ts = {.tag = WS_VAL_TIMESTAMPTZ,.int_value = record->commit_time};

				ws_append_datetime(out, &ts);
			}
			break;
		case WS_REC_COMMIT:
			ws_append_json_key(out, &first, "commit_lsn");
			ws_append_lsn(out, record->commit_lsn);
			ws_append_json_key(out, &first, "end_lsn");
			ws_append_lsn(out, record->end_lsn);
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
			ws_append_lsn(out, record->change_lsn);
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
		case WS_REC_READ:
			rel = ws_stream_relation(context, record->rel_id);
			append_relation_ref(out, &first, record->rel_id, rel);
			ws_append_json_key(out, &first, "position");
			ws_append_lsn(out, record->read_position);
			ws_append_json_key(out, &first, "ordinal");
			appendStringInfo(out, UINT64_FORMAT, record->ordinal);
			ws_append_json_key(out, &first, "read_time");
			{
				WsValue		ts = {.tag = WS_VAL_TIMESTAMPTZ,.int_value = record->read_time};

				ws_append_datetime(out, &ts);
			}
			ws_append_json_key(out, &first, "version");
			ws_append_lsn(out, record->change_lsn);
			ws_append_json_key(out, &first, "new");
			append_tuple(out, &record->new_tuple, rel, false);
			break;
		case WS_REC_RESYNC:
			rel = ws_stream_relation(context, record->rel_id);
			append_relation_ref(out, &first, record->rel_id, rel);
			ws_append_json_key(out, &first, "position");
			ws_append_lsn(out, record->read_position);
			ws_append_json_key(out, &first, "ordinal");
			appendStringInfo(out, UINT64_FORMAT, record->ordinal);
			ws_append_json_key(out, &first, "version");
			ws_append_lsn(out, record->change_lsn);
			break;
		case WS_REC_TRUNCATE:
			append_change_id(out, &first, record, context);
			ws_append_json_key(out, &first, "cascade");
			ws_append_str(out, (record->truncate_flags & WS_TRUNCATE_CASCADE) ? "true" : "false");
			ws_append_json_key(out, &first, "restart_identity");
			ws_append_str(out, (record->truncate_flags & WS_TRUNCATE_RESTART_SEQS) ? "true" : "false");
			ws_append_json_key(out, &first, "relation_ids");
			ws_append_char(out, '[');
			for (uint64 i = 0; i < record->nrelations; i++)
				appendStringInfo(out, "%s" UINT64_FORMAT, i > 0 ? ", " : "",
								 record->rel_ids[i]);
			ws_append_char(out, ']');
			if (context)
			{
				ws_append_json_key(out, &first, "relations");
				ws_append_char(out, '[');
				for (uint64 i = 0; i < record->nrelations; i++)
				{
					const WsRelation *r = ws_stream_relation(context, record->rel_ids[i]);

					if (i > 0)
						ws_append_str(out, ", ");
					if (r)
						append_qualified_name(out, r);
					else
						ws_append_str(out, "null");
				}
				ws_append_char(out, ']');
			}
			break;
		case WS_REC_MESSAGE:
			ws_append_json_key(out, &first, "transactional");
			ws_append_str(out, (record->message_flags & WS_MESSAGE_TRANSACTIONAL) ? "true" : "false");
			ws_append_json_key(out, &first, "lsn");
			ws_append_lsn(out, record->message_lsn);
			if (record->message_flags & WS_MESSAGE_TRANSACTIONAL)
				append_change_id(out, &first, record, context);
			ws_append_json_key(out, &first, "prefix");
			append_utf8_string(out, record->prefix, strlen(record->prefix), "message prefix");
			ws_append_json_key(out, &first, "content");
			append_bytea_hex(out, record->content, record->content_len);
			break;
	}
	ws_append_char(out, '}');
}
