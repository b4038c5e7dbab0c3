/*-------------------------------------------------------------------------
 *
 * clickhouse.c
 *	  Everything walship knows about ClickHouse: the values of the NDJSON
 *	  'clickhouse' dialect, the ClickHouse column type of each PostgreSQL
 *	  type, the CREATE TABLE for a relation (walship.clickhouse_type(),
 *	  walship.clickhouse_ddl(), walship.clickhouse_ident()), which
 *	  ClickHouse errors are permanent, and the URL that runs a statement.
 *
 * Two dialects (dialect.h): 'clickhouse' for current ClickHouse (22.x and
 * later, ClickHouse Cloud; tested against 26.7): DateTime64(6, 'UTC'),
 * Date32, Bool, Decimal up to 76 digits, Nullable, ReplacingMergeTree
 * (_version, _deleted) with a deduplication window; and 'clickhouse_18'
 * for ClickHouse 18.16, whose JSONEachRow has no DateTime64, no
 * Nullable(Array) and a strict Decimal.  ws_clickhouse_type() is the one
 * place that says which ClickHouse column type takes the JSON value
 * ws_clickhouse_append_value() writes for a PostgreSQL type in a dialect:
 * keep them in step (t/045_clickhouse_types.pl feeds every type into a real
 * ClickHouse 18.16, t/046_clickhouse26_types.pl into ClickHouse 26).
 * docs/clickhouse.md describes both.
 *
 * ws_clickhouse_create_table() builds the DDL from a relation description
 * (a WsRelation, as a RELATION record gives it), so that the worker can
 * create tables from the stream as well as walship.clickhouse_ddl() from
 * the catalogs.
 *
 * IDENTIFICATION
 *	  src/clickhouse.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "clickhouse.h"
#include "format.h"
#include "http_transport.h"
#include "record_json.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(walship_clickhouse_ident);
PG_FUNCTION_INFO_V1(walship_clickhouse_type);
PG_FUNCTION_INFO_V1(walship_clickhouse_ddl);

/* The flat shape's metadata columns, which no table column may be named. */
static const char *const metadata_names[] = {
	"_op", "_lsn", "_seq", "_version", "_commit_ts", "_deleted",
	"_unchanged", "_schema", "_table"
};

#define CH_MIN_DAYS		WS_CLICKHOUSE_MIN_DAYS
#define CH_MAX_DAYS		WS_CLICKHOUSE_MAX_DAYS
#define CH_USECS_PER_DAY	INT64CONST(86400000000)
#define CH_MIN_USECS	WS_CLICKHOUSE_MIN_USECS
#define CH_MAX_USECS	WS_CLICKHOUSE_MAX_USECS

/* ---------------------------------------------------------------------
 * The NDJSON 'clickhouse' dialect
 * ---------------------------------------------------------------------
 */

/* Whether a RELATION record's column is an array ("integer[]", "public.mood[]"). */
static bool
column_is_array(const WsColumn *column)
{
	size_t		len = strlen(column->type_name);

	return len > 2 && strcmp(column->type_name + len - 2, "[]") == 0;
}

/*
 * Values as ClickHouse 18.16's JSONEachRow takes them (docs/clickhouse.md):
 * timestamps as integer microseconds since 1970 (no DateTime64 there),
 * bytea as lowercase hex for unhex(), json as a JSON string, numeric NaN
 * and infinities as null, infinite dates as the ends of ClickHouse's
 * Date range.  Everything else as in the standard dialect.
 */
static void
append_value(StringInfo out, const WsValue *value, Oid type_oid,
			 bool is_array, bool json_trusted)
{
	switch (value->tag)
	{
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
			ws_append_int64(out, value->int_value);
			break;
		case WS_VAL_NULL:
			/* ClickHouse has no Nullable(Array): a NULL array is empty */
			appendStringInfoString(out, is_array ? "[]" : "null");
			break;
		case WS_VAL_POS_INFINITY:
		case WS_VAL_NEG_INFINITY:
			if (type_oid == DATEOID || type_oid == DATEARRAYOID)
				appendStringInfoString(out, value->tag == WS_VAL_POS_INFINITY ?
									   "\"2105-12-31\"" : "\"1970-01-01\"");
			else
				appendStringInfoString(out, value->tag == WS_VAL_POS_INFINITY ?
									   "9223372036854775807" : "-9223372036854775808");
			break;
		case WS_VAL_BYTES:
			{
				static const char hex[] = "0123456789abcdef";

				appendStringInfoChar(out, '"');
				for (Size i = 0; i < value->len; i++)
				{
					appendStringInfoChar(out, hex[(unsigned char) value->data[i] >> 4]);
					appendStringInfoChar(out, hex[(unsigned char) value->data[i] & 0xF]);
				}
				appendStringInfoChar(out, '"');
			}
			break;
		case WS_VAL_JSON:
			{
				StringInfoData json;

				/* the JSON text, in the server encoding, as a string */
				initStringInfo(&json);
				ws_value_to_json(&json, value, json_trusted);
				escape_json(out, json.data);
				pfree(json.data);
			}
			break;
		case WS_VAL_NUMERIC:
			if (ws_numeric_is_finite(value->data, value->len))
				ws_value_to_json(out, value, json_trusted);
			else
				appendStringInfoString(out, "null");	/* NaN, infinities */
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
					/* elements of date[] keep date semantics; NULLs stay null */
					append_value(out, &element, type_oid, false, json_trusted);
				}
				appendStringInfoChar(out, ']');
			}
			break;
		default:
			ws_value_to_json(out, value, json_trusted);
			break;
	}
}

/* Appends n as exactly width digits (n >= 0, n < 10^width). */
static char *
put_digits(char *p, int64 n, int width)
{
	for (int i = width - 1; i >= 0; i--)
	{
		p[i] = '0' + (char) (n % 10);
		n /= 10;
	}
	return p + width;
}

/*
 * Writes the day days since 1970-01-01 (proleptic Gregorian) as
 * YYYY-MM-DD; the year must have four digits.  Returns the end.
 */
static char *
put_date(char *p, int64 days)
{
	/* days to civil date, by 400-year eras counted from 0000-03-01 */
	int64		z = days + 719468;
	int64		era = (z >= 0 ? z : z - 146096) / 146097;
	int64		doe = z - era * 146097;
	int64		yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64		doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64		mp = (5 * doy + 2) / 153;
	int64		day = doy - (153 * mp + 2) / 5 + 1;
	int64		month = mp < 10 ? mp + 3 : mp - 9;
	int64		year = yoe + era * 400 + (month <= 2 ? 1 : 0);

	p = put_digits(p, year, 4);
	*p++ = '-';
	p = put_digits(p, month, 2);
	*p++ = '-';
	return put_digits(p, day, 2);
}

/* A date (days since 1970) as a Date32 string, within Date32's range. */
static void
append_date32(StringInfo out, int64 days)
{
	char		buf[16];
	char	   *p = buf;

	days = Max(CH_MIN_DAYS, Min(CH_MAX_DAYS, days));
	*p++ = '"';
	p = put_date(p, days);
	*p++ = '"';
	appendBinaryStringInfo(out, buf, p - buf);
}

/*
 * A timestamp (us since 1970, UTC or wall clock) as a DateTime64(6) string
 * "YYYY-MM-DD hh:mm:ss.ffffff" (what date_time_input_format 'basic'
 * reads), within DateTime64's range.
 */
static void
append_datetime64(StringInfo out, int64 usecs)
{
	char		buf[40];
	char	   *p = buf;
	int64		days;
	int64		rest;

	usecs = Max(CH_MIN_USECS, Min(CH_MAX_USECS, usecs));
	days = usecs / CH_USECS_PER_DAY;
	rest = usecs % CH_USECS_PER_DAY;
	if (rest < 0)
	{
		days--;
		rest += CH_USECS_PER_DAY;
	}
	*p++ = '"';
	p = put_date(p, days);
	*p++ = ' ';
	p = put_digits(p, rest / INT64CONST(3600000000), 2);
	*p++ = ':';
	p = put_digits(p, rest / 60000000 % 60, 2);
	*p++ = ':';
	p = put_digits(p, rest / 1000000 % 60, 2);
	*p++ = '.';
	p = put_digits(p, rest % 1000000, 6);
	*p++ = '"';
	appendBinaryStringInfo(out, buf, p - buf);
}

/*
 * Values as current ClickHouse's JSONEachRow reads them into the types of
 * ws_clickhouse_type() (docs/clickhouse.md): timestamps as DateTime64(6)
 * strings and dates as Date32 strings, clamped to their range 1900-01-01
 * ... 2299-12-31 (infinity and -infinity are its ends); bytea as lowercase
 * hex for unhex(), json as a JSON string, a NULL array as [].  numeric
 * NaN and infinities stay the strings "NaN", "Infinity", "-Infinity":
 * exact in the String column of an unbounded numeric, refused by a
 * Decimal (never stored as 0 or NULL).  Everything else as in the
 * standard dialect.
 */
static void
append_value_modern(StringInfo out, const WsValue *value, Oid type_oid,
					bool is_array, bool json_trusted)
{
	bool		is_date = (type_oid == DATEOID || type_oid == DATEARRAYOID);

	switch (value->tag)
	{
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
			append_datetime64(out, value->int_value);
			break;
		case WS_VAL_DATE:
			append_date32(out, value->int_value);
			break;
		case WS_VAL_POS_INFINITY:
		case WS_VAL_NEG_INFINITY:
			if (is_date)
				append_date32(out, value->tag == WS_VAL_POS_INFINITY ?
							  CH_MAX_DAYS : CH_MIN_DAYS);
			else
				append_datetime64(out, value->tag == WS_VAL_POS_INFINITY ?
								  CH_MAX_USECS : CH_MIN_USECS);
			break;
		case WS_VAL_NULL:
			/* ClickHouse has no Nullable(Array): a NULL array is empty */
			appendStringInfoString(out, is_array ? "[]" : "null");
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
					append_value_modern(out, &element, type_oid, false,
										json_trusted);
				}
				appendStringInfoChar(out, ']');
			}
			break;
		case WS_VAL_BYTES:
		case WS_VAL_JSON:
			/* as in 18.16: hex, and JSON text as a string */
			append_value(out, value, type_oid, is_array, json_trusted);
			break;
		default:
			/* numeric NaN and infinities included: see above */
			ws_value_to_json(out, value, json_trusted);
			break;
	}
}

void
ws_clickhouse_append_value(StringInfo out, const WsValue *value,
						   const WsColumn *column, WsDialect dialect,
						   bool json_trusted)
{
	if (dialect == WS_DIALECT_CLICKHOUSE_18)
		append_value(out, value, column->type_oid, column_is_array(column),
					 json_trusted);
	else
		append_value_modern(out, value, column->type_oid,
							column_is_array(column), json_trusted);
}

/*
 * The commit time (us since 1970): DateTime64(6, 'UTC'), or Int64
 * microseconds in 18.16, which has no DateTime64.
 */
void
ws_clickhouse_append_commit_ts(StringInfo out, int64 commit_time,
							   WsDialect dialect)
{
	if (dialect == WS_DIALECT_CLICKHOUSE_18)
		ws_append_int64(out, commit_time);
	else
		append_datetime64(out, commit_time);
}

/*
 * ClickHouse has no row that means "empty the table": a line would insert
 * a row of defaults or be refused.  Say so instead.
 */
void
ws_clickhouse_report_truncate(const WsRelation *rel)
{
	ereport(WARNING,
			(errmsg("walship does not ship TRUNCATE of \"%s.%s\" in the ClickHouse dialect",
					rel->schema_name, rel->table_name),
			 errdetail("The flat shape has no row that empties a table."),
			 errhint("Truncate the ClickHouse table yourself, or reload it from PostgreSQL.")));
}

/* ---------------------------------------------------------------------
 * Types and DDL
 * ---------------------------------------------------------------------
 */

char *
ws_clickhouse_quote_ident(const char *name)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfoChar(&out, '`');
	for (const char *p = name; *p; p++)
	{
		switch (*p)
		{
			case '\\':
				appendStringInfoString(&out, "\\\\");
				break;
			case '`':
				appendStringInfoString(&out, "\\`");
				break;
			case '\n':
				appendStringInfoString(&out, "\\n");
				break;
			case '\r':
				appendStringInfoString(&out, "\\r");
				break;
			case '\t':
				appendStringInfoString(&out, "\\t");
				break;
			default:
				appendStringInfoChar(&out, *p);
				break;
		}
	}
	appendStringInfoChar(&out, '`');
	return out.data;
}

/*
 * The ClickHouse type of numeric(p,s): a bare JSON number with exactly the
 * scale's fraction digits, which Decimal takes (and nothing else, no NaN).
 * Without a fitting numeric(p,s): in 18.16, whose String takes no number
 * at all, Float64 (lossy); in current ClickHouse (Decimal up to 76 digits),
 * String, which keeps the number's text exactly.
 */
static char *
numeric_type(int32 typmod, WsDialect dialect)
{
	if (typmod >= (int32) VARHDRSZ)
	{
		int32		prec = ((typmod - VARHDRSZ) >> 16) & 0xFFFF;
		int32		scale = (((typmod - VARHDRSZ) & 0x7FF) ^ 1024) - 1024;

		if (scale < 0)			/* numeric(3,-1): integers */
		{
			prec -= scale;
			scale = 0;
		}
		prec = Max(prec, scale);
		if (prec >= 1 && prec <= (dialect == WS_DIALECT_CLICKHOUSE_18 ? 38 : 76))
			return psprintf("Decimal(%d, %d)", prec, scale);
	}
	/* current ClickHouse: the exact text, NaN and infinities included */
	return pstrdup(dialect == WS_DIALECT_CLICKHOUSE_18 ? "Float64" : "String");
}

/*
 * ws_clickhouse_type(), and whether the type is a domain that is NOT NULL
 * (or over one) in *domain_not_null.
 */
static char *
clickhouse_type(Oid type_oid, int32 typmod, WsDialect dialect,
				bool *domain_not_null)
{
	bool		modern = (dialect != WS_DIALECT_CLICKHOUSE_18);

	HeapTuple	tuple;
	Form_pg_type typ;
	Oid			element = InvalidOid;

	*domain_not_null = false;

	/* domains are shipped as their base type; a domain carries the modifier */
	for (;;)
	{
		tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type_oid));
		if (!HeapTupleIsValid(tuple))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("type with OID %u does not exist", type_oid)));
		typ = (Form_pg_type) GETSTRUCT(tuple);
		if (typ->typtype != TYPTYPE_DOMAIN)
			break;
		if (typ->typnotnull)
			*domain_not_null = true;
		if (typmod == -1)
			typmod = typ->typtypmod;
		type_oid = typ->typbasetype;
		ReleaseSysCache(tuple);
	}
	if (OidIsValid(typ->typelem) &&
		typ->typsubscript == F_ARRAY_SUBSCRIPT_HANDLER)
		element = typ->typelem;
	ReleaseSysCache(tuple);

	/* arrays: JSON arrays, elements may be NULL (the modifier applies to them) */
	if (OidIsValid(element))
	{
		bool		ignored;

		return psprintf("Array(Nullable(%s))",
						clickhouse_type(element, typmod, dialect, &ignored));
	}

	switch (type_oid)
	{
		case BOOLOID:
			return pstrdup(modern ? "Bool" : "UInt8");	/* true / false */
		case INT2OID:
			return pstrdup("Int16");
		case INT4OID:
			return pstrdup("Int32");
		case INT8OID:
			return pstrdup("Int64");
		case OIDOID:
			return pstrdup("UInt32");
		case FLOAT4OID:
			return pstrdup("Float32");
		case FLOAT8OID:
			return pstrdup("Float64");
		case NUMERICOID:
			return numeric_type(typmod, dialect);
		case DATEOID:
			return pstrdup(modern ? "Date32" : "Date");	/* "YYYY-MM-DD" */
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			/* 18.16: microseconds since 1970 */
			return pstrdup(modern ? "DateTime64(6, 'UTC')" : "Int64");
		case UUIDOID:
			return pstrdup("UUID");
		default:

			/*
			 * text, varchar, char, name, json/jsonb (as JSON text), bytea
			 * (lowercase hex, read with unhex()), time, interval, enums,
			 * inet, money, ranges, composites...: the type's text
			 */
			return pstrdup("String");
	}
}

char *
ws_clickhouse_type(Oid type_oid, int32 typmod, WsDialect dialect)
{
	bool		ignored;

	return clickhouse_type(type_oid, typmod, dialect, &ignored);
}

char *
ws_clickhouse_column_type(const WsColumn *col, WsDialect dialect)
{
	bool		domain_not_null;
	char	   *type = clickhouse_type(col->type_oid, col->typmod, dialect,
									   &domain_not_null);

	/* ClickHouse has no Nullable(Array(...)): a NULL array cannot be stored */
	if ((col->flags & WS_COL_NOT_NULL) || domain_not_null ||
		strncmp(type, "Array(", 6) == 0)
		return type;
	return psprintf("Nullable(%s)", type);
}

bool
ws_clickhouse_is_metadata_name(const char *name)
{
	for (int m = 0; m < (int) lengthof(metadata_names); m++)
		if (strcmp(name, metadata_names[m]) == 0)
			return true;
	return false;
}

int
ws_clickhouse_metadata_columns(const char *const **names,
							   const char *const **types, WsDialect dialect)
{
	static const char *const meta_names[] = {
		"_op", "_lsn", "_seq", "_version", "_commit_ts", "_deleted"
	};
	/* 18.16 ... */
	static const char *const meta_types_18[] = {
		"String", "UInt64", "UInt64", "UInt64", "Int64", "UInt8"
	};
	/* ... and current ClickHouse */
	static const char *const meta_types[] = {
		"LowCardinality(String)", "UInt64", "UInt64", "UInt64",
		"DateTime64(6, 'UTC')", "UInt8"
	};

	*names = meta_names;
	*types = dialect == WS_DIALECT_CLICKHOUSE_18 ? meta_types_18 : meta_types;
	return lengthof(meta_names);
}

void
ws_clickhouse_create_table(StringInfo out, const WsRelation *rel,
						   const char *database,
						   const char *const *key_names, int nkey_names,
						   WsDialect dialect)
{
	char	   *relname = quote_qualified_identifier(rel->schema_name,
													 rel->table_name);
	List	   *keys = NIL;
	ListCell   *lc;

	if (key_names != NULL)
	{
		for (int i = 0; i < nkey_names; i++)
			keys = lappend(keys, (char *) key_names[i]);
	}
	else
	{
		uint8		flag = rel->replica_identity == 'i' ?
			WS_COL_KEY : WS_COL_PRIMARY_KEY;

		for (int i = 0; i < rel->ncolumns; i++)
			if (rel->columns[i].flags & flag)
				keys = lappend(keys, rel->columns[i].name);
	}
	if (keys == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s has no primary key or replica identity index",
						relname),
				 errdetail("A ClickHouse ReplacingMergeTree table needs a key to collapse the versions of a row (ORDER BY)."),
				 errhint("Add a primary key, or use ALTER TABLE ... REPLICA IDENTITY USING INDEX with a unique index on NOT NULL columns.")));

	appendStringInfo(out, "CREATE TABLE %s.%s\n(",
					 ws_clickhouse_quote_ident(database),
					 ws_clickhouse_quote_ident(rel->table_name));
	for (int i = 0; i < rel->ncolumns; i++)
	{
		const WsColumn *col = &rel->columns[i];

		if (ws_clickhouse_is_metadata_name(col->name))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" of table %s has the name of a walship metadata column",
							col->name, relname),
					 errdetail("The flat NDJSON shape adds _op, _lsn, _seq, _version, _commit_ts and _deleted to every row."),
					 errhint("Rename the column, or leave it out of the publication with a column list.")));

		appendStringInfo(out, "%s\n    %s %s", i > 0 ? "," : "",
						 ws_clickhouse_quote_ident(col->name),
						 ws_clickhouse_column_type(col, dialect));
	}
	{
		const char *const *meta_names;
		const char *const *meta_types;
		int			nmeta = ws_clickhouse_metadata_columns(&meta_names,
														   &meta_types,
														   dialect);

		for (int m = 0; m < nmeta; m++)
			appendStringInfo(out, "%s\n    `%s` %s",
							 rel->ncolumns + m > 0 ? "," : "",
							 meta_names[m], meta_types[m]);
	}

	/*
	 * Current ClickHouse: FINAL leaves out the rows whose newest version is
	 * a delete, and a retried request (same insert_deduplication_token) is
	 * dropped by a plain MergeTree only with a deduplication window.
	 */
	appendStringInfoString(out, dialect == WS_DIALECT_CLICKHOUSE_18 ?
						   "\n)\nENGINE = ReplacingMergeTree(_version)\nORDER BY (" :
						   "\n)\nENGINE = ReplacingMergeTree(_version, _deleted)\nORDER BY (");
	foreach(lc, keys)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoString(out, ", ");
		appendStringInfoString(out, ws_clickhouse_quote_ident(lfirst(lc)));
	}
	appendStringInfoChar(out, ')');
	if (dialect != WS_DIALECT_CLICKHOUSE_18)
		appendStringInfo(out, "\nSETTINGS non_replicated_deduplication_window = %d",
						 WS_CLICKHOUSE_DEDUP_WINDOW);
	list_free(keys);
}

/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

/* walship.clickhouse_ident(name text) -> text */
Datum
walship_clickhouse_ident(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(ws_clickhouse_quote_ident(name)));
}

WsDialect
ws_clickhouse_dialect_from_name(const char *name)
{
	WsDialect	dialect;

	if (!ws_dialect_from_name(name, &dialect) || dialect == WS_DIALECT_STANDARD)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized ClickHouse dialect \"%s\"", name),
				 errhint("Valid ClickHouse dialects are \"clickhouse\" (ClickHouse 22.x and later) and \"clickhouse_18\" (ClickHouse 18.16).")));
	return dialect;
}

/* walship.clickhouse_type(typid regtype, typmod integer, dialect text) -> text */
Datum
walship_clickhouse_type(PG_FUNCTION_ARGS)
{
	WsDialect	dialect =
		ws_clickhouse_dialect_from_name(text_to_cstring(PG_GETARG_TEXT_PP(2)));

	PG_RETURN_TEXT_P(cstring_to_text(ws_clickhouse_type(PG_GETARG_OID(0),
														PG_GETARG_INT32(1),
														dialect)));
}

/* A comment line: a name with a line break must not end the comment. */
static void
append_comment(StringInfo out, const char *text)
{
	appendStringInfoString(out, "-- ");
	for (const char *p = text; *p; p++)
		appendStringInfoChar(out, (*p == '\n' || *p == '\r') ? ' ' : *p);
	appendStringInfoChar(out, '\n');
}

/*
 * The columns of the replica identity index (replica identity 'i') or else
 * of the primary key, in index order; NIL if there is none.
 */
static List *
key_column_names(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		HeapTuple	tuple = SearchSysCache1(INDEXRELID,
											ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for index %u", lfirst_oid(lc));
		index = (Form_pg_index) GETSTRUCT(tuple);
		if (rel->rd_rel->relreplident == REPLICA_IDENTITY_INDEX ?
			index->indisreplident : index->indisprimary)
		{
			/* the key columns, not the INCLUDE ones */
			for (int i = 0; i < index->indnkeyatts; i++)
			{
				AttrNumber	attnum = index->indkey.values[i];

				if (attnum > 0)
					names = lappend(names,
									pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel),
																  attnum - 1)->attname)));
			}
			ReleaseSysCache(tuple);
			break;
		}
		ReleaseSysCache(tuple);
	}
	list_free(indexes);
	return names;
}

/*
 * walship.clickhouse_ddl(rel regclass, database text, dialect text) ->
 * text: comments for people, then ws_clickhouse_create_table() for the
 * table's columns as walship sends them (not dropped, not generated).
 */
Datum
walship_clickhouse_ddl(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *database = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WsDialect	dialect =
		ws_clickhouse_dialect_from_name(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	Relation	rel = relation_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	WsRelation	wsrel = {0};
	char	   *relname;
	List	   *keys;
	const char **key_names;
	StringInfoData toasted;
	StringInfoData ddl;
	int			nkeys;

	wsrel.relation_oid = relid;
	wsrel.schema_name = get_namespace_name(RelationGetNamespace(rel));
	wsrel.table_name = pstrdup(RelationGetRelationName(rel));
	wsrel.replica_identity = rel->rd_rel->relreplident;
	relname = quote_qualified_identifier(wsrel.schema_name, wsrel.table_name);

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot generate ClickHouse DDL for \"%s\"", relname),
				 errdetail("Only tables can be published.")));

	keys = key_column_names(rel);
	nkeys = list_length(keys);
	key_names = palloc(sizeof(char *) * Max(nkeys, 1));
	for (int i = 0; i < nkeys; i++)
		key_names[i] = list_nth(keys, i);

	initStringInfo(&toasted);
	wsrel.columns = palloc0(sizeof(WsColumn) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		WsColumn   *col;

		if (att->attisdropped || att->attgenerated != '\0')
			continue;
		col = &wsrel.columns[wsrel.ncolumns++];
		col->name = pstrdup(NameStr(att->attname));
		col->type_oid = att->atttypid;
		col->typmod = att->atttypmod;
		col->type_name = "";
		col->flags = att->attnotnull ? WS_COL_NOT_NULL : 0;
		if (att->attstorage == TYPSTORAGE_EXTENDED ||
			att->attstorage == TYPSTORAGE_EXTERNAL)
			appendStringInfo(&toasted, "%s%s", toasted.len > 0 ? ", " : "",
							 quote_identifier(col->name));
	}

	initStringInfo(&ddl);
	{
		StringInfoData comment;
		char	   *target = psprintf("%s.%s",
									  ws_clickhouse_quote_ident(database),
									  ws_clickhouse_quote_ident(wsrel.table_name));

		initStringInfo(&comment);
		appendStringInfo(&comment, "ClickHouse table for %s, generated by walship.clickhouse_ddl()",
						 relname);
		append_comment(&ddl, comment.data);
		resetStringInfo(&comment);
		if (dialect == WS_DIALECT_CLICKHOUSE_18)
			appendStringInfo(&comment, "Current rows: SELECT ... FROM %s FINAL WHERE NOT _deleted",
							 target);
		else
			appendStringInfo(&comment, "Current rows: SELECT ... FROM %s FINAL (deleted rows are left out)",
							 target);
		append_comment(&ddl, comment.data);
		if (wsrel.replica_identity != REPLICA_IDENTITY_FULL && toasted.len > 0)
		{
			resetStringInfo(&comment);
			appendStringInfo(&comment, "%s can be stored out of line (TOAST); an UPDATE that leaves such a value unchanged does not carry it: ALTER TABLE %s REPLICA IDENTITY FULL",
							 toasted.data, relname);
			append_comment(&ddl, comment.data);
		}
	}

	/* the key is checked first: a table without one fails on that alone */
	ws_clickhouse_create_table(&ddl, &wsrel, database,
							   nkeys > 0 ? key_names : NULL, nkeys, dialect);
	relation_close(rel, AccessShareLock);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(ddl.data, ddl.len));
}

/* ---------------------------------------------------------------------
 * Delivery
 * ---------------------------------------------------------------------
 */

/*
 * ClickHouse reports errors in the data (parse errors, unknown columns,
 * types that do not fit, unknown tables) as HTTP 500 with "Code: N" at the
 * start of the body: retrying them cannot succeed.
 */
bool
ws_clickhouse_error_is_permanent(const WsHttpResult *result)
{
	static const int permanent_codes[] = {
		6,						/* CANNOT_PARSE_TEXT */
		26,						/* CANNOT_PARSE_QUOTED_STRING */
		27,						/* CANNOT_PARSE_INPUT_ASSERTION_FAILED */
		38,						/* CANNOT_PARSE_DATE */
		41,						/* CANNOT_PARSE_DATETIME */
		53,						/* TYPE_MISMATCH */
		60,						/* UNKNOWN_TABLE */
		69,						/* ARGUMENT_OUT_OF_BOUND */
		70,						/* CANNOT_CONVERT_TYPE */
		72,						/* CANNOT_PARSE_NUMBER */
		81,						/* UNKNOWN_DATABASE */
		117,					/* INCORRECT_DATA */
		1000					/* POCO_EXCEPTION, e.g. unsupported encoding */
	};
	int			code;

	if (result->outcome != WS_HTTP_RETRY || result->status != 500 ||
		sscanf(result->response, "Code: %d", &code) != 1)
		return false;
	for (size_t i = 0; i < lengthof(permanent_codes); i++)
		if (permanent_codes[i] == code)
			return true;
	return false;
}

/* Appends str percent-encoded: everything but letters, digits and -_.~ */
static void
append_url_encoded(StringInfo out, const char *str)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) str; *p; p++)
	{
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
			*p == '.' || *p == '~')
			appendStringInfoChar(out, (char) *p);
		else
		{
			appendStringInfoChar(out, '%');
			appendStringInfoChar(out, hex[*p >> 4]);
			appendStringInfoChar(out, hex[*p & 0xF]);
		}
	}
}

char *
ws_clickhouse_statement_url(const char *statement)
{
	const char *endpoint = walship_endpoint ? walship_endpoint : "";
	size_t		base_len = strcspn(endpoint, "?#");
	StringInfoData url;

	initStringInfo(&url);
	appendBinaryStringInfo(&url, endpoint, base_len);
	appendStringInfoChar(&url, '?');
	if (endpoint[base_len] == '?')
	{
		const char *param = endpoint + base_len + 1;

		/* the parameters up to the fragment, but query */
		while (*param != '\0' && *param != '#')
		{
			size_t		len = strcspn(param, "&#");
			size_t		name_len = strcspn(param, "=&#");

			if (len > 0 &&
				!(name_len == 5 && strncmp(param, "query", 5) == 0))
			{
				appendBinaryStringInfo(&url, param, len);
				appendStringInfoChar(&url, '&');
			}
			param += len;
			if (*param == '&')
				param++;
		}
	}
	appendStringInfoString(&url, "query=");
	append_url_encoded(&url, statement);
	return url.data;
}
