/*-------------------------------------------------------------------------
 *
 * rowbinary.c
 *	  Encoding of walship change records as ClickHouse RowBinary rows, the
 *	  body of "INSERT INTO db.t (columns) FORMAT RowBinary"
 *	  (walship.format = rowbinary), and walship.encode_rowbinary().
 *
 * The rows are those of the flat NDJSON shape in the clickhouse dialect
 * (ndjson.c), value for value: one row per INSERT, UPDATE, DELETE and READ
 * record, a delete row for the old key first when an UPDATE changes the
 * key, the table's columns then _op, _lsn, _seq, _version, _commit_ts and
 * _deleted.  What a value becomes is decided by the ClickHouse type the
 * column is declared with (ws_clickhouse_column_type(), the type in
 * walship.clickhouse_ddl()), parsed once per relation definition into a
 * WsRbType tree; so the encoder and the DDL cannot disagree.  RowBinary
 * has no field names: every row carries every column of the INSERT's
 * explicit column list, in order.  A column the record does not carry (the
 * non-key columns of a DELETE with a key-only old tuple) gets the type's
 * default, as JSONEachRow fills a missing field: NULL for Nullable, 0, '',
 * [].
 *
 * Values follow ClickHouse 18.16's JSONEachRow reading of the NDJSON
 * dialect's text: timestamps as Int64 microseconds, bytea as lowercase hex
 * in a String, json as its text, numeric NaN and infinities as NULL, a
 * NULL array as [], dates outside 18.16's Date range (1970-01-01 ..
 * 2105-12-31) as 0, date infinities as the ends of that range, UUIDs in
 * ClickHouse's byte order (each 8-byte half reversed).
 *
 * A row that cannot be written as declared is never written approximately:
 * an unchanged TOAST value (the flat shape leaves such a column out and
 * names it in _unchanged, which ClickHouse rejects), a timestamp beyond
 * 2^63 microseconds sent as text, an array sent as text (several
 * dimensions), NaN into a column that is not Nullable.  The caller gets a
 * problem instead, and delivery.c treats the request as rejected
 * (walship.on_rejected), as ClickHouse would treat the NDJSON line.
 *
 * IDENTIFICATION
 *	  src/rowbinary.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "clickhouse.h"
#include "format.h"
#include "ndjson.h"
#include "record_json.h"
#include "rowbinary.h"

PG_FUNCTION_INFO_V1(walship_encode_rowbinary);

/* The ClickHouse types RowBinary rows are written for. */
typedef enum WsRbKind
{
	RB_UINT8,
	RB_UINT16,
	RB_UINT32,
	RB_UINT64,
	RB_INT8,
	RB_INT16,
	RB_INT32,
	RB_INT64,
	RB_FLOAT32,
	RB_FLOAT64,
	RB_DECIMAL,					/* width 4, 8, 16 or 32 bytes by precision */
	RB_STRING,
	RB_DATE,					/* UInt16 days since 1970 (18.16's Date) */
	RB_DATE32,					/* Int32 days since 1970 */
	RB_DATETIME64,				/* Int64 ticks since 1970: DateTime64(6) */
	RB_BOOL,
	RB_UUID,
	RB_NULLABLE,
	RB_ARRAY
} WsRbKind;

struct WsRbType
{
	WsRbKind	kind;
	int			width;			/* bytes of a fixed-width value */
	int			precision;		/* Decimal */
	int			scale;			/* Decimal */
	WsRbType   *inner;			/* Nullable, Array */
};

/* The largest day number 18.16's Date takes: 2105-12-31. */
#define RB_MAX_DATE18	49672

/*
 * Shapes made so far, each in a memory context of its own, until
 * ws_rowbinary_release_shapes() frees those no longer in use.
 */
static MemoryContext shape_context = NULL;
static List *shapes = NIL;		/* ShapeEntry * */

typedef struct ShapeEntry
{
	MemoryContext context;		/* holds the entry and its shape */
	char	   *key;			/* relation_key() */
	struct ShapeEntry *base;	/* with_types: the entry whose names and
								 * relation the shape shares, else NULL */
	WsRowBinaryShape shape;
} ShapeEntry;

/* A new entry in a context of its own, which is current on return. */
static ShapeEntry *
new_shape_entry(const char *key)
{
	MemoryContext context;
	ShapeEntry *entry;

	if (shape_context == NULL)
		shape_context = AllocSetContextCreate(TopMemoryContext,
											  "walship RowBinary shapes",
											  ALLOCSET_SMALL_SIZES);
	context = AllocSetContextCreate(shape_context, "walship RowBinary shape",
									ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(context);
	entry = palloc0(sizeof(ShapeEntry));
	entry->context = context;
	entry->key = pstrdup(key);
	return entry;
}

/* ---------------------------------------------------------------------
 * Types
 * ---------------------------------------------------------------------
 */

static void
skip_spaces(const char **p)
{
	while (**p == ' ')
		(*p)++;
}

/* Reads a non-negative integer argument; -1 if there is none. */
static int
parse_int_arg(const char **p)
{
	int			value = 0;

	skip_spaces(p);
	if (**p < '0' || **p > '9')
		return -1;
	while (**p >= '0' && **p <= '9')
		value = value * 10 + (*(*p)++ - '0');
	skip_spaces(p);
	return value;
}

/*
 * Parses a ClickHouse type as clickhouse.c declares one ("Int64",
 * "Nullable(Decimal(12, 2))", "Array(Nullable(String))"); NULL for a type
 * this encoder does not write.
 */
static WsRbType *
parse_type(const char **p)
{
	static const struct
	{
		const char *name;
		WsRbKind	kind;
		int			width;
	}			simple[] = {
		{"UInt8", RB_UINT8, 1}, {"UInt16", RB_UINT16, 2},
		{"UInt32", RB_UINT32, 4}, {"UInt64", RB_UINT64, 8},
		{"Int8", RB_INT8, 1}, {"Int16", RB_INT16, 2},
		{"Int32", RB_INT32, 4}, {"Int64", RB_INT64, 8},
		{"Float32", RB_FLOAT32, 4}, {"Float64", RB_FLOAT64, 8},
		{"String", RB_STRING, 0}, {"Date", RB_DATE, 2},
		{"Date32", RB_DATE32, 4}, {"Bool", RB_BOOL, 1},
		{"UUID", RB_UUID, 16}
	};
	WsRbType   *type = palloc0(sizeof(WsRbType));
	const char *start = *p;
	size_t		len;

	while ((**p >= 'a' && **p <= 'z') || (**p >= 'A' && **p <= 'Z') ||
		   (**p >= '0' && **p <= '9') || **p == '_')
		(*p)++;
	len = *p - start;

	if ((len == 8 && strncmp(start, "Nullable", 8) == 0) ||
		(len == 5 && strncmp(start, "Array", 5) == 0))
	{
		type->kind = len == 8 ? RB_NULLABLE : RB_ARRAY;
		if (**p != '(')
			return NULL;
		(*p)++;
		type->inner = parse_type(p);
		if (type->inner == NULL || **p != ')')
			return NULL;
		(*p)++;
		return type;
	}
	/* LowCardinality changes how ClickHouse stores, not how RowBinary reads */
	if (len == 14 && strncmp(start, "LowCardinality", 14) == 0)
	{
		if (**p != '(')
			return NULL;
		(*p)++;
		type = parse_type(p);
		if (type == NULL || **p != ')')
			return NULL;
		(*p)++;
		return type;
	}
	/* DateTime64(6[, 'time zone']): microseconds, whatever the zone */
	if (len == 10 && strncmp(start, "DateTime64", 10) == 0)
	{
		type->kind = RB_DATETIME64;
		type->width = 8;
		if (**p != '(')
			return NULL;
		(*p)++;
		if (parse_int_arg(p) != 6)
			return NULL;
		if (**p == ',')
		{
			(*p)++;
			skip_spaces(p);
			if (**p != '\'')
				return NULL;
			for ((*p)++; **p && **p != '\''; (*p)++)
				;
			if (**p != '\'')
				return NULL;
			(*p)++;
			skip_spaces(p);
		}
		if (**p != ')')
			return NULL;
		(*p)++;
		return type;
	}
	if (len == 7 && strncmp(start, "Decimal", 7) == 0)
	{
		type->kind = RB_DECIMAL;
		if (**p != '(')
			return NULL;
		(*p)++;
		type->precision = parse_int_arg(p);
		if (**p != ',')
			return NULL;
		(*p)++;
		type->scale = parse_int_arg(p);
		if (**p != ')' || type->precision < 1 || type->precision > 76 ||
			type->scale < 0 || type->scale > type->precision)
			return NULL;
		(*p)++;
		type->width = type->precision <= 9 ? 4 : type->precision <= 18 ? 8 :
			type->precision <= 38 ? 16 : 32;
		return type;
	}
	for (int i = 0; i < (int) lengthof(simple); i++)
	{
		if (strlen(simple[i].name) == len &&
			strncmp(start, simple[i].name, len) == 0 && **p != '(')
		{
			type->kind = simple[i].kind;
			type->width = simple[i].width;
			return type;
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------------
 * Shapes
 * ---------------------------------------------------------------------
 */

/*
 * What of a relation definition decides its shape: names, types and
 * NOT NULL of the columns, and the table's names.
 */
static char *
relation_key(const WsRelation *rel, WsDialect dialect)
{
	StringInfoData key;

	initStringInfo(&key);
	appendStringInfo(&key, "%d%c%s%c%s", (int) dialect, '\x01',
					 rel->schema_name, '\x01', rel->table_name);
	for (int i = 0; i < rel->ncolumns; i++)
	{
		const WsColumn *col = &rel->columns[i];

		appendStringInfo(&key, "%c%s%c%u%c%d%c%d", '\x01', col->name, '\x02',
						 col->type_oid, '\x02', col->typmod, '\x02',
						 (col->flags & WS_COL_NOT_NULL) != 0);
	}
	return key.data;
}

/* Sets the shape's signature and column list from its names and types. */
static void
finish_shape(WsRowBinaryShape *shape)
{
	StringInfoData signature;
	StringInfoData list;

	initStringInfo(&signature);
	initStringInfo(&list);
	appendStringInfoChar(&list, '(');
	for (int i = 0; i < shape->nall; i++)
	{
		appendStringInfo(&signature, "%s %s\n", shape->names[i], shape->types[i]);
		appendStringInfo(&list, "%s%s", i > 0 ? ", " : "",
						 ws_clickhouse_quote_ident(shape->names[i]));
	}
	appendStringInfoChar(&list, ')');
	shape->signature = signature.data;
	shape->column_list = list.data;
}

/* Fills shape for rel; needs catalog access. */
static void
make_shape(WsRowBinaryShape *shape, const WsRelation *rel, WsDialect dialect)
{
	const char *const *meta_names;
	const char *const *meta_types;
	int			nmeta = ws_clickhouse_metadata_columns(&meta_names, &meta_types,
													   dialect);
	shape->dialect = dialect;
	shape->schema_name = pstrdup(rel->schema_name);
	shape->table_name = pstrdup(rel->table_name);
	shape->relation = *rel;
	shape->relation.schema_name = shape->schema_name;
	shape->relation.table_name = shape->table_name;
	shape->relation.columns = palloc(sizeof(WsColumn) * Max(rel->ncolumns, 1));
	for (int i = 0; i < rel->ncolumns; i++)
	{
		shape->relation.columns[i] = rel->columns[i];
		shape->relation.columns[i].name = pstrdup(rel->columns[i].name);
		shape->relation.columns[i].type_name = pstrdup(rel->columns[i].type_name);
	}
	shape->ncolumns = rel->ncolumns;
	shape->nall = rel->ncolumns + nmeta;
	shape->names = palloc(sizeof(char *) * shape->nall);
	shape->types = palloc(sizeof(char *) * shape->nall);
	shape->parsed = palloc(sizeof(WsRbType *) * shape->nall);
	for (int i = 0; i < shape->nall; i++)
	{
		const char *p;

		if (i < rel->ncolumns)
		{
			shape->names[i] = pstrdup(rel->columns[i].name);
			shape->types[i] = ws_clickhouse_column_type(&rel->columns[i],
														dialect);
			if (ws_clickhouse_is_metadata_name(shape->names[i]) &&
				shape->problem == NULL)
				shape->problem = psprintf("column \"%s\" of \"%s.%s\" has the name of a walship metadata column",
										  shape->names[i], rel->schema_name,
										  rel->table_name);
		}
		else
		{
			shape->names[i] = pstrdup(meta_names[i - rel->ncolumns]);
			shape->types[i] = pstrdup(meta_types[i - rel->ncolumns]);
		}
		p = shape->types[i];
		shape->parsed[i] = parse_type(&p);
		if ((shape->parsed[i] == NULL || *p != '\0') && shape->problem == NULL)
			shape->problem = psprintf("walship does not know ClickHouse type %s (column \"%s\" of \"%s.%s\")",
									  shape->types[i], shape->names[i],
									  rel->schema_name, rel->table_name);
	}

	finish_shape(shape);
}

const WsRowBinaryShape *
ws_rowbinary_shape(const WsRelation *rel, WsDialect dialect)
{
	char	   *key = relation_key(rel, dialect);
	ListCell   *lc;
	ShapeEntry *entry;
	MemoryContext caller = CurrentMemoryContext;
	bool		started = false;

	foreach(lc, shapes)
	{
		entry = lfirst(lc);
		if (strcmp(entry->key, key) == 0)
		{
			pfree(key);
			return &entry->shape;
		}
	}

	/* the column types come from the catalog */
	if (!IsTransactionState())
	{
		StartTransactionCommand();
		started = true;
	}
	entry = new_shape_entry(key);
	make_shape(&entry->shape, rel, dialect);
	MemoryContextSwitchTo(TopMemoryContext);
	shapes = lappend(shapes, entry);
	MemoryContextSwitchTo(caller);
	if (started)
		CommitTransactionCommand();
	/* committing leaves TopMemoryContext current */
	MemoryContextSwitchTo(caller);
	pfree(key);
	return &entry->shape;
}

const WsRowBinaryShape *
ws_rowbinary_shape_with_types(const WsRowBinaryShape *base,
							  const char *const *types)
{
	StringInfoData key;
	ListCell   *lc;
	ShapeEntry *entry;
	WsRowBinaryShape *shape;
	MemoryContext old;

	initStringInfo(&key);
	appendStringInfo(&key, "%s%c", base->signature, '\x03');
	for (int i = 0; i < base->nall; i++)
		appendStringInfo(&key, "%s%c", types[i], '\x02');
	foreach(lc, shapes)
	{
		entry = lfirst(lc);
		if (strcmp(entry->key, key.data) == 0)
		{
			pfree(key.data);
			return &entry->shape;
		}
	}

	old = CurrentMemoryContext;
	entry = new_shape_entry(key.data);
	foreach(lc, shapes)
		if (&((ShapeEntry *) lfirst(lc))->shape == base)
			entry->base = lfirst(lc);
	Assert(entry->base != NULL);
	shape = &entry->shape;
	*shape = *base;
	shape->types = palloc(sizeof(char *) * base->nall);
	shape->parsed = palloc(sizeof(WsRbType *) * base->nall);
	for (int i = 0; i < base->nall; i++)
	{
		const char *p;

		shape->types[i] = pstrdup(types[i]);
		p = shape->types[i];
		shape->parsed[i] = parse_type(&p);
		if ((shape->parsed[i] == NULL || *p != '\0') && shape->problem == NULL)
			shape->problem = psprintf("walship does not know ClickHouse type %s (column \"%s\" of \"%s.%s\")",
									  shape->types[i], shape->names[i],
									  shape->schema_name, shape->table_name);
	}
	finish_shape(shape);
	MemoryContextSwitchTo(TopMemoryContext);
	shapes = lappend(shapes, entry);
	MemoryContextSwitchTo(old);
	pfree(key.data);
	return shape;
}

int
ws_rowbinary_shape_count(void)
{
	return list_length(shapes);
}

static bool
shape_listed(List *list, const WsRowBinaryShape *shape)
{
	ListCell   *lc;

	foreach(lc, list)
		if (lfirst(lc) == shape)
			return true;
	return false;
}

int
ws_rowbinary_release_shapes(List *in_use)
{
	List	   *kept = NIL;
	List	   *gone = NIL;
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	int			released;

	/*
	 * kept: those in use, and the ones whose memory the shapes made with
	 * other types share (their bases, and their bases' bases)
	 */
	foreach(lc, shapes)
	{
		ShapeEntry *entry = lfirst(lc);

		if (shape_listed(in_use, &entry->shape))
			for (; entry != NULL; entry = entry->base)
				kept = list_append_unique_ptr(kept, entry);
	}
	foreach(lc, shapes)
		if (!list_member_ptr(kept, lfirst(lc)))
			gone = lappend(gone, lfirst(lc));
	released = list_length(gone);
	foreach(lc, gone)
	{
		ShapeEntry *entry = lfirst(lc);

		shapes = list_delete_ptr(shapes, entry);
		MemoryContextDelete(entry->context);
	}
	list_free(kept);
	list_free(gone);
	MemoryContextSwitchTo(old);
	return released;
}

char *
ws_rowbinary_create_table(const WsRowBinaryShape *shape, const char *database,
						  char **problem)
{
	const WsRelation *rel = &shape->relation;
	uint8		key_flag = rel->replica_identity == 'i' ?
		WS_COL_KEY : WS_COL_PRIMARY_KEY;
	bool		has_key = false;
	bool		started = false;
	StringInfoData ddl;
	char	   *result;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext temp;

	*problem = NULL;
	if (shape->problem)
	{
		*problem = pstrdup(shape->problem);
		return NULL;
	}
	for (int i = 0; i < rel->ncolumns; i++)
		if (rel->columns[i].flags & key_flag)
			has_key = true;
	if (!has_key)
	{
		*problem = psprintf("table \"%s.%s\" has no primary key or replica identity index, which the ClickHouse table needs as its ORDER BY",
							rel->schema_name, rel->table_name);
		return NULL;
	}
	if (!IsTransactionState())
	{
		StartTransactionCommand();
		started = true;
	}
	/* outlives the transaction, if one is started here */
	temp = AllocSetContextCreate(TopMemoryContext, "walship CREATE TABLE",
								 ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(temp);
	initStringInfo(&ddl);
	ws_clickhouse_create_table(&ddl, rel, database, NULL, 0, shape->dialect);
	MemoryContextSwitchTo(caller);
	if (started)
		CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	/* "CREATE TABLE db.t" */
	Assert(strncmp(ddl.data, "CREATE TABLE ", 13) == 0);
	result = psprintf("CREATE TABLE IF NOT EXISTS %s", ddl.data + 13);
	MemoryContextDelete(temp);
	return result;
}

char *
ws_rowbinary_insert_statement(const WsRowBinaryShape *shape,
							  const char *database)
{
	return psprintf("INSERT INTO %s.%s %s FORMAT RowBinary",
					ws_clickhouse_quote_ident(database),
					ws_clickhouse_quote_ident(shape->table_name),
					shape->column_list);
}

/* ---------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------
 */

static inline void
put_le(StringInfo out, uint64 value, int bytes)
{
	char		buf[8];

	for (int i = 0; i < bytes; i++)
		buf[i] = (char) (value >> (8 * i));
	appendBinaryStringInfo(out, buf, bytes);
}

/* ClickHouse's VarUInt: unsigned LEB128, as walship's uvarint. */
static inline void
put_varuint(StringInfo out, uint64 value)
{
	char		buf[10];
	int			len = 0;

	while (value >= 0x80)
	{
		buf[len++] = (char) ((value & 0x7F) | 0x80);
		value >>= 7;
	}
	buf[len++] = (char) value;
	appendBinaryStringInfo(out, buf, len);
}

static inline void
put_string(StringInfo out, const char *data, Size len)
{
	put_varuint(out, len);
	appendBinaryStringInfo(out, data, len);
}

/* The type's default: what ClickHouse fills in for a missing field. */
static void
put_default(StringInfo out, const WsRbType *type)
{
	static const char zeros[16] = {0};

	switch (type->kind)
	{
		case RB_NULLABLE:
			appendStringInfoChar(out, 1);
			break;
		case RB_ARRAY:
		case RB_STRING:
			appendStringInfoChar(out, 0);
			break;
		default:
			appendBinaryStringInfo(out, zeros, type->width);
			break;
	}
}

/* The name of a value's tag, for problems. */
static const char *
tag_name(char tag)
{
	switch (tag)
	{
		case WS_VAL_NULL:
			return "NULL";
		case WS_VAL_UNCHANGED:
			return "unchanged TOAST";
		case WS_VAL_FALSE:
		case WS_VAL_TRUE:
			return "boolean";
		case WS_VAL_INT:
			return "integer";
		case WS_VAL_FLOAT4:
		case WS_VAL_FLOAT8:
			return "float";
		case WS_VAL_NUMERIC:
			return "numeric";
		case WS_VAL_TEXT:
			return "text";
		case WS_VAL_JSON:
			return "json";
		case WS_VAL_BYTES:
			return "bytea";
		case WS_VAL_UUID:
			return "uuid";
		case WS_VAL_DATE:
			return "date";
		case WS_VAL_TIMESTAMP:
		case WS_VAL_TIMESTAMPTZ:
			return "timestamp";
		case WS_VAL_TIME:
			return "time";
		case WS_VAL_POS_INFINITY:
			return "infinity";
		case WS_VAL_NEG_INFINITY:
			return "-infinity";
		case WS_VAL_ARRAY:
			return "array";
	}
	return "unknown";
}

/*
 * A finite numeric's decimal text as an integer scaled by 10^scale, in
 * bytes little-endian two's complement (what RowBinary's Decimal32 ...
 * Decimal256 are); false if it has more fraction digits than scale or more
 * than 76 digits.
 */
static bool
numeric_scaled(const char *data, Size len, int scale, uint8 result[32])
{
	uint32		limbs[8] = {0};	/* 256 bits, least significant first */
	int			digits = 0;
	int			frac = -1;		/* fraction digits seen, -1 before '.' */
	bool		negative = false;
	bool		nonzero = false;
	Size		i = 0;

	if (i < len && data[i] == '-')
	{
		negative = true;
		i++;
	}
	for (;;)
	{
		int			d;

		if (i < len)
		{
			char		c = data[i++];

			if (c == '.' && frac < 0)
			{
				frac = 0;
				continue;
			}
			if (c < '0' || c > '9')
				return false;
			if (frac >= 0 && ++frac > scale)
			{
				if (c != '0')
					return false;	/* would be rounded */
				continue;
			}
			d = c - '0';
		}
		else if (Max(frac, 0) < scale)
		{
			/* pad to the scale */
			frac = Max(frac, 0) + 1;
			d = 0;
		}
		else
			break;
		if (nonzero || d != 0)
		{
			nonzero = true;
			if (++digits > 76)
				return false;
		}
		/* limbs = limbs * 10 + d */
		{
			uint64		carry = d;

			for (int l = 0; l < 8; l++)
			{
				uint64		v = (uint64) limbs[l] * 10 + carry;

				limbs[l] = (uint32) v;
				carry = v >> 32;
			}
		}
	}
	if (negative)
	{
		uint64		carry = 1;

		for (int l = 0; l < 8; l++)
		{
			uint64		v = (uint64) (uint32) ~limbs[l] + carry;

			limbs[l] = (uint32) v;
			carry = v >> 32;
		}
	}
	for (int l = 0; l < 8; l++)
		for (int b = 0; b < 4; b++)
			result[4 * l + b] = (uint8) (limbs[l] >> (8 * b));
	return true;
}

static char *put_value(StringInfo out, const WsRbType *type,
					   const WsValue *value, bool json_trusted,
					   WsDialect dialect);

/* Whether a value is written as NULL (into a Nullable column). */
static bool
value_is_null(const WsRbType *inner, const WsValue *value, WsDialect dialect)
{
	if (value->tag == WS_VAL_NULL)
		return true;

	/*
	 * 18.16: NaN and the infinities, which numeric's Decimal and Float64 have
	 * not, are NULL.  Current ClickHouse: a Decimal refuses them (never NULL
	 * or 0), the String of an unbounded numeric keeps them.
	 */
	if (dialect == WS_DIALECT_CLICKHOUSE_18 && value->tag == WS_VAL_NUMERIC &&
		!ws_numeric_is_finite(value->data, value->len))
		return true;
	return false;
}

/*
 * A value's text as ClickHouse reads the dialect's JSON string into a
 * String column (time, and any other value rendered as a JSON string).
 */
static void
put_json_text(StringInfo out, const WsValue *value, bool json_trusted)
{
	StringInfoData json;
	StringInfoData text;
	const char *p;

	initStringInfo(&json);
	ws_value_to_json(&json, value, json_trusted);
	if (json.len < 2 || json.data[0] != '"')
	{
		put_string(out, json.data, json.len);
		pfree(json.data);
		return;
	}
	/* a JSON string: its characters */
	initStringInfo(&text);
	for (p = json.data + 1; p < json.data + json.len - 1; p++)
	{
		if (*p != '\\')
		{
			appendStringInfoChar(&text, *p);
			continue;
		}
		p++;
		switch (*p)
		{
			case 'b':
				appendStringInfoChar(&text, '\b');
				break;
			case 'f':
				appendStringInfoChar(&text, '\f');
				break;
			case 'n':
				appendStringInfoChar(&text, '\n');
				break;
			case 'r':
				appendStringInfoChar(&text, '\r');
				break;
			case 't':
				appendStringInfoChar(&text, '\t');
				break;
			case 'u':
				{
					unsigned int code = 0;

					/* escape_json writes \u only for control characters */
					for (int i = 1; i <= 4 && p[i]; i++)
						code = code * 16 + (p[i] <= '9' ? p[i] - '0' :
											(p[i] | 0x20) - 'a' + 10);
					appendStringInfoChar(&text, (char) code);
					p += 4;
				}
				break;
			default:
				appendStringInfoChar(&text, *p);
				break;
		}
	}
	put_string(out, text.data, text.len);
	pfree(text.data);
	pfree(json.data);
}

/*
 * A timestamp as DateTime64(6): microseconds clamped to its range, the
 * infinities its ends.
 */
static int64
datetime64_usecs(const WsValue *value)
{
	if (value->tag == WS_VAL_POS_INFINITY)
		return WS_CLICKHOUSE_MAX_USECS;
	if (value->tag == WS_VAL_NEG_INFINITY)
		return WS_CLICKHOUSE_MIN_USECS;
	return Max(WS_CLICKHOUSE_MIN_USECS,
			   Min(WS_CLICKHOUSE_MAX_USECS, value->int_value));
}

/*
 * Appends value as the ClickHouse type declares it; returns NULL, or a
 * problem (palloc'd) when the type cannot hold it.
 */
static char *
put_value(StringInfo out, const WsRbType *type, const WsValue *value,
		  bool json_trusted, WsDialect dialect)
{
	char		tag = value->tag;

	if (type->kind == RB_NULLABLE)
	{
		if (value_is_null(type->inner, value, dialect))
		{
			appendStringInfoChar(out, 1);
			return NULL;
		}
		appendStringInfoChar(out, 0);
		return put_value(out, type->inner, value, json_trusted, dialect);
	}

	/* ClickHouse has no Nullable(Array): a NULL array is empty */
	if (tag == WS_VAL_NULL && type->kind == RB_ARRAY)
	{
		appendStringInfoChar(out, 0);
		return NULL;
	}

	switch (type->kind)
	{
		case RB_ARRAY:
			if (tag == WS_VAL_ARRAY)
			{
				WsReader	elements = value->elements;
				WsValue		element;

				put_varuint(out, value->nelements);
				for (uint64 i = 0; i < value->nelements; i++)
				{
					char	   *problem;

					ws_read_value(&elements, &element);
					problem = put_value(out, type->inner, &element, json_trusted,
										dialect);
					if (problem)
						return problem;
				}
				return NULL;
			}
			break;

		case RB_STRING:
			switch (tag)
			{
				case WS_VAL_TEXT:
					put_string(out, value->data, value->len);
					return NULL;
				case WS_VAL_JSON:
					/* the JSON text, which the dialect sends as a string */
					if (json_trusted)
						put_string(out, value->data, value->len);
					else
					{
						StringInfoData json;

						initStringInfo(&json);
						ws_value_to_json(&json, value, false);	/* checks it */
						put_string(out, json.data, json.len);
						pfree(json.data);
					}
					return NULL;
				case WS_VAL_BYTES:
					{
						static const char hex[] = "0123456789abcdef";

						/* lowercase hex, read with unhex() */
						put_varuint(out, value->len * 2);
						enlargeStringInfo(out, value->len * 2);
						for (Size i = 0; i < value->len; i++)
						{
							out->data[out->len++] = hex[(unsigned char) value->data[i] >> 4];
							out->data[out->len++] = hex[(unsigned char) value->data[i] & 0xF];
						}
						out->data[out->len] = '\0';
						return NULL;
					}
				case WS_VAL_NULL:
				case WS_VAL_UNCHANGED:
				case WS_VAL_ARRAY:
					break;
				default:
					put_json_text(out, value, json_trusted);
					return NULL;
			}
			break;

		case RB_UINT8:
		case RB_UINT16:
		case RB_UINT32:
		case RB_UINT64:
		case RB_INT8:
		case RB_INT16:
		case RB_INT32:
		case RB_INT64:
			if (tag == WS_VAL_INT || tag == WS_VAL_TIMESTAMP ||
				tag == WS_VAL_TIMESTAMPTZ)
			{
				put_le(out, (uint64) value->int_value, type->width);
				return NULL;
			}
			if ((tag == WS_VAL_TRUE || tag == WS_VAL_FALSE) &&
				type->kind == RB_UINT8)
			{
				appendStringInfoChar(out, tag == WS_VAL_TRUE ? 1 : 0);
				return NULL;
			}
			/* timestamp infinities: the ends of Int64 */
			if ((tag == WS_VAL_POS_INFINITY || tag == WS_VAL_NEG_INFINITY) &&
				type->kind == RB_INT64)
			{
				put_le(out, tag == WS_VAL_POS_INFINITY ?
					   (uint64) PG_INT64_MAX : (uint64) PG_INT64_MIN, 8);
				return NULL;
			}
			break;

		case RB_FLOAT32:
			if (tag == WS_VAL_INT)
			{
				float4		f = (float4) value->int_value;
				uint32		bits;

				memcpy(&bits, &f, 4);
				put_le(out, bits, 4);
				return NULL;
			}
			if (tag == WS_VAL_FLOAT4 || tag == WS_VAL_FLOAT8)
			{
				float4		f = (float4) value->float_value;
				uint32		bits;

				memcpy(&bits, &f, 4);
				put_le(out, bits, 4);
				return NULL;
			}
			break;

		case RB_FLOAT64:
			if (tag == WS_VAL_FLOAT4 || tag == WS_VAL_FLOAT8 || tag == WS_VAL_INT ||
				(tag == WS_VAL_NUMERIC &&
				 ws_numeric_is_finite(value->data, value->len)))
			{
				float8		f;
				uint64		bits;

				if (tag == WS_VAL_INT)
					f = (float8) value->int_value;
				else if (tag == WS_VAL_NUMERIC)
				{
					char	   *text = pnstrdup(value->data, value->len);

					/* lossy, as documented: no exact type for such numerics */
					f = strtod(text, NULL);
					pfree(text);
				}
				else
					f = value->float_value;
				memcpy(&bits, &f, 8);
				put_le(out, bits, 8);
				return NULL;
			}
			break;

		case RB_DECIMAL:
			if (tag == WS_VAL_NUMERIC &&
				ws_numeric_is_finite(value->data, value->len))
			{
				uint8		scaled[32];

				if (!numeric_scaled(value->data, value->len, type->scale,
									scaled))
					return psprintf("a numeric value does not fit Decimal(%d, %d)",
									type->precision, type->scale);
				appendBinaryStringInfo(out, (char *) scaled, type->width);
				return NULL;
			}
			break;

		case RB_BOOL:
			if (tag == WS_VAL_TRUE || tag == WS_VAL_FALSE)
			{
				appendStringInfoChar(out, tag == WS_VAL_TRUE ? 1 : 0);
				return NULL;
			}
			break;

		case RB_DATE32:
			if (tag == WS_VAL_DATE || tag == WS_VAL_POS_INFINITY ||
				tag == WS_VAL_NEG_INFINITY)
			{
				int64		days = value->int_value;

				/* clamped to Date32's range; infinities are its ends */
				if (tag == WS_VAL_POS_INFINITY)
					days = WS_CLICKHOUSE_MAX_DAYS;
				else if (tag == WS_VAL_NEG_INFINITY)
					days = WS_CLICKHOUSE_MIN_DAYS;
				days = Max(WS_CLICKHOUSE_MIN_DAYS, Min(WS_CLICKHOUSE_MAX_DAYS, days));
				put_le(out, (uint64) days, 4);
				return NULL;
			}
			break;

		case RB_DATETIME64:
			if (tag == WS_VAL_TIMESTAMP || tag == WS_VAL_TIMESTAMPTZ ||
				tag == WS_VAL_POS_INFINITY || tag == WS_VAL_NEG_INFINITY)
			{
				put_le(out, (uint64) datetime64_usecs(value), 8);
				return NULL;
			}
			break;

		case RB_DATE:
			if (tag == WS_VAL_DATE || tag == WS_VAL_POS_INFINITY ||
				tag == WS_VAL_NEG_INFINITY)
			{
				int64		days = value->int_value;

				/* 18.16 stores a date outside its range as 0 (0000-00-00) */
				if (tag == WS_VAL_POS_INFINITY)
					days = RB_MAX_DATE18;
				else if (tag == WS_VAL_NEG_INFINITY)
					days = 0;
				else if (days < 0 || days > RB_MAX_DATE18)
					days = 0;
				put_le(out, (uint64) days, 2);
				return NULL;
			}
			break;

		case RB_UUID:
			if (tag == WS_VAL_UUID && value->len == 16)
			{
				char		buf[16];

				/* two little-endian UInt64: each half of RFC 4122 reversed */
				for (int i = 0; i < 8; i++)
				{
					buf[i] = value->data[7 - i];
					buf[8 + i] = value->data[15 - i];
				}
				appendBinaryStringInfo(out, buf, 16);
				return NULL;
			}
			break;

		case RB_NULLABLE:
			break;				/* handled above */
	}

	if (tag == WS_VAL_NULL)
		return pstrdup("NULL in a column that is not Nullable");
	if (tag == WS_VAL_NUMERIC && !ws_numeric_is_finite(value->data, value->len))
		return pstrdup("a numeric NaN or infinity, which the column's type cannot hold");
	return psprintf("a %s value (tag '%c') does not fit the column's ClickHouse type",
					tag_name(tag), tag);
}

/* ---------------------------------------------------------------------
 * Rows
 * ---------------------------------------------------------------------
 */

/* One row: the table's columns, then the metadata columns. */
static char *
put_row(StringInfo out, const WsFlatRow *row, const WsRecord *record,
		const WsStreamContext *stream, const WsRelation *rel,
		const WsRowBinaryShape *shape, char kind)
{
	XLogRecPtr	version = XLogRecPtrIsInvalid(record->change_lsn) ?
		stream->commit_lsn : record->change_lsn;

	for (int i = 0; i < shape->ncolumns; i++)
	{
		if (!row->valid || !row->present[i])
			put_default(out, shape->parsed[i]);
		else if (row->values[i].tag == WS_VAL_UNCHANGED)
			return psprintf("column \"%s\" has an unchanged TOAST value, which the UPDATE did not carry",
							shape->names[i]);
		else
		{
			char	   *problem = put_value(out, shape->parsed[i],
											&row->values[i],
											stream->json_trusted,
											shape->dialect);

			if (problem)
				return psprintf("column \"%s\": %s", shape->names[i], problem);
		}
	}
	/*
	 * _op String, _lsn, _seq, _version UInt64, _commit_ts Int64 (18.16) or
	 * DateTime64(6), _deleted UInt8
	 */
	put_string(out, ws_flat_op_name(kind), 1);
	put_le(out, (uint64) stream->commit_lsn, 8);
	put_le(out, record->ordinal, 8);
	put_le(out, (uint64) version, 8);
	if (shape->dialect == WS_DIALECT_CLICKHOUSE_18)
		put_le(out, (uint64) stream->commit_time, 8);
	else
	{
		WsValue		ts = {.tag = WS_VAL_TIMESTAMPTZ,.int_value = stream->commit_time};

		put_le(out, (uint64) datetime64_usecs(&ts), 8);
	}
	appendStringInfoChar(out, kind == WS_REC_DELETE ? 1 : 0);
	return NULL;
}

int
ws_rowbinary_append(StringInfo out, const WsRecord *record,
					const WsStreamContext *stream, const WsRelation *rel,
					const WsRowBinaryShape *shape, char **problem)
{
	WsFlatRow	before = {0};
	WsFlatRow	after = {0};
	int			start = out->len;
	int			nrows = 0;
	char	   *failed = NULL;

	*problem = NULL;
	if (record->kind != WS_REC_INSERT && record->kind != WS_REC_UPDATE &&
		record->kind != WS_REC_DELETE && record->kind != WS_REC_READ)
		return 0;
	if (shape->problem)
	{
		*problem = pstrdup(shape->problem);
		return -1;
	}
	if (XLogRecPtrIsInvalid(stream->commit_lsn))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid walship record stream: %s record outside a transaction",
						ws_record_kind_name(record->kind)),
				 errdetail("No BEGIN record precedes it, so it has no commit LSN.")));

	if (record->kind != WS_REC_INSERT && record->kind != WS_REC_READ &&
		record->old_kind != WS_OLD_NONE)
		ws_flat_read_row(&before, &record->old_tuple, rel,
						 record->old_kind == WS_OLD_KEY);
	if (record->kind != WS_REC_DELETE)
		ws_flat_read_row(&after, &record->new_tuple, rel, false);

	/* an unchanged TOAST value that the full old row has is that value */
	if (after.valid && record->old_kind == WS_OLD_FULL &&
		record->kind == WS_REC_UPDATE)
	{
		for (int i = 0; i < rel->ncolumns; i++)
			if (after.values[i].tag == WS_VAL_UNCHANGED &&
				before.values[i].tag != WS_VAL_UNCHANGED)
				after.values[i] = before.values[i];
	}

	/* a row moved to another key: a delete row for the old key first */
	if (record->kind == WS_REC_UPDATE && ws_flat_key_changed(&before, &after, rel))
	{
		failed = put_row(out, &before, record, stream, rel, shape,
						 WS_REC_DELETE);
		nrows++;
	}
	if (failed == NULL)
	{
		failed = put_row(out, record->kind == WS_REC_DELETE ? &before : &after,
						 record, stream, rel, shape, record->kind);
		nrows++;
	}

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
	if (failed)
	{
		out->len = start;
		out->data[start] = '\0';
		*problem = psprintf("%s of \"%s.%s\" cannot be written as RowBinary: %s",
							ws_record_kind_name(record->kind),
							rel->schema_name, rel->table_name, failed);
		return -1;
	}
	return nrows;
}

/* ---------------------------------------------------------------------
 * walship.encode_rowbinary(records bytea, database text, dialect text)
 *	  -> setof (statement text, body bytea, rows integer)
 * ---------------------------------------------------------------------
 */

/* The rows of one table and shape, in order of first appearance. */
typedef struct RbGroup
{
	const WsRowBinaryShape *shape;
	StringInfoData rows;
	int			nrows;
	char	   *problem;
} RbGroup;

Datum
walship_encode_rowbinary(PG_FUNCTION_ARGS)
{
	bytea	   *input = PG_GETARG_BYTEA_PP(0);
	char	   *database = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WsDialect	dialect = ws_clickhouse_dialect_from_name(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WsStreamContext stream;
	WsReader	reader;
	List	   *groups = NIL;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	ws_stream_context_init(&stream);
	ws_reader_init(&reader, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input));
	while (!ws_reader_done(&reader))
	{
		WsRecord	record;
		const WsRelation *rel;
		const WsRowBinaryShape *shape;
		RbGroup    *group = NULL;
		char	   *problem;

		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		if ((rel = ws_flat_row_relation(&stream, &record)) == NULL)
			continue;
		shape = ws_rowbinary_shape(rel, dialect);
		foreach(lc, groups)
		{
			RbGroup    *candidate = lfirst(lc);

			if (strcmp(candidate->shape->schema_name, shape->schema_name) == 0 &&
				strcmp(candidate->shape->table_name, shape->table_name) == 0 &&
				strcmp(candidate->shape->signature, shape->signature) == 0)
				group = candidate;
		}
		if (group == NULL)
		{
			group = palloc0(sizeof(RbGroup));
			group->shape = shape;
			initStringInfo(&group->rows);
			groups = lappend(groups, group);
		}
		if (group->problem)
			continue;
		{
			int			n = ws_rowbinary_append(&group->rows, &record, &stream,
												rel, shape, &problem);

			if (n < 0)
				group->problem = problem;
			else
				group->nrows += n;
		}
	}

	foreach(lc, groups)
	{
		RbGroup    *group = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		bytea	   *body;

		if (group->problem)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("%s", group->problem)));
		body = palloc(VARHDRSZ + group->rows.len);
		SET_VARSIZE(body, VARHDRSZ + group->rows.len);
		memcpy(VARDATA(body), group->rows.data, group->rows.len);
		values[0] = CStringGetTextDatum(ws_rowbinary_insert_statement(group->shape,
																	  database));
		values[1] = PointerGetDatum(body);
		values[2] = Int32GetDatum(group->nrows);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
