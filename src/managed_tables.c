/*-------------------------------------------------------------------------
 *
 * managed_tables.c
 *	  The ClickHouse target tables of walship.format = rowbinary: before
 *	  the first rows of a relation shape go to a table, its columns are
 *	  read from system.columns and compared with the shape's (names and
 *	  types as walship.clickhouse_ddl() declares them).  RowBinary carries
 *	  no names or types, so a table with other types would read the bytes
 *	  as something else: no row is sent until the table matches.  NDJSON
 *	  (flat shape, a ClickHouse dialect) is checked and managed the same
 *	  way, but only with walship.clickhouse_manage_tables: it names its
 *	  columns, so ClickHouse refuses what does not fit by itself, and its
 *	  endpoint may be no ClickHouse (ws_managed_tables_ndjson()).
 *
 * With walship.clickhouse_manage_tables = on the worker makes the table
 * match (zero-touch tables): a missing table is created (CREATE TABLE IF
 * NOT EXISTS, the DDL of clickhouse_ddl()), missing columns are added
 * (ADD COLUMN ... AFTER, in the shape's order), a column whose type widens
 * is modified (MODIFY COLUMN), and a column that the previous shape had
 * and the new one has not is dropped (DROP COLUMN).  Policies:
 *
 * - A rename looks like a drop and an add in the same new shape: the new
 *   column is added and the old one is kept (with its values), and a
 *   WARNING says so; rows shipped from then on fill the new column only.
 *   Columns that were never part of a shape this process saw (after a
 *   restart, or added by hand) are never dropped.
 * - A column that is wider in ClickHouse than the shape writes it (Int64
 *   for an integer: rows of an older shape, sent again after a restart,
 *   once the table was widened) is not narrowed: the rows are written in
 *   the table's type instead (ws_rowbinary_shape_with_types()), which
 *   delivery.c does by preparing their batch again (WS_TABLE_REENCODE).
 * - A type change that ClickHouse cannot make without losing or changing
 *   values (anything but wider integers, Float32 to Float64, small
 *   integers to Float64, a Decimal of more precision with the same scale,
 *   adding or removing Nullable) is not made: nothing of the table is sent
 *   and the status says which column to change.
 *
 * Memory: what a check reads and plans lives in tables->scratch, reset
 * after each request and result; the statements and types of a step in
 * the table's step_context, reset when a step starts or ends.  The shapes
 * are rowbinary.c's, freed by delivery.c once unused
 * (ws_managed_tables_shapes_in_use()).
 *
 * A table is checked when its first rows are due in this process, and
 * again for every new shape; delivery.c never starts a check (nor DDL)
 * while earlier rows of the table are unacknowledged, nor sends rows of
 * the table while a check runs, so rows of an old shape are stored before
 * the table changes and rows of a new shape only after.  Statements go to
 * ws_clickhouse_statement_url() one by one (an endpoint that answers the
 * column query with 204 No Content is no ClickHouse but a proxy or a null
 * sink: its tables are not checked); failures are retried with
 * backoff, and ClickHouse's refusals follow walship.on_rejected: with stop
 * the check is repeated every walship.retry_max_delay, with dead_letter
 * the shape's rows are set aside as rejected for that long.
 *
 * IDENTIFICATION
 *	  src/managed_tables.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "nodes/pg_list.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "clickhouse.h"
#include "managed_tables.h"
#include "ndjson.h"
#include "rowbinary.h"
#include "settings.h"
#include "shared_state.h"

typedef enum MtPhase
{
	MT_IDLE,					/* nothing to do, or the step is done */
	MT_READ_DUE,				/* read system.columns at retry_at */
	MT_READING,
	MT_ALTER_DUE,				/* run linitial(statements) at retry_at */
	MT_ALTERING
} MtPhase;

typedef struct MtTable
{
	char	   *database;
	char	   *table;
	const WsRowBinaryShape *shape;	/* the table matches it; NULL: unknown */
	const WsRowBinaryShape *base;	/* shape is base in the table's wider
									 * types, or NULL */
	MemoryContext step_context; /* the step's statements and types; reset
								 * when a step starts or ends */
	char	  **types;			/* the step's: the table's types where they
								 * hold wanted's values, else wanted's */
	const WsRowBinaryShape *wanted; /* the step's goal, or NULL */
	MtPhase		phase;
	List	   *statements;		/* char *: DDL still to run */
	uint64		request_id;
	int			attempts;
	TimestampTz retry_at;
	char	   *refused;		/* dead_letter: why wanted's rows are
								 * refused, until retry_at */
	bool		reported;		/* it set walship.status's error */
} MtTable;

struct WsManagedTables
{
	MemoryContext context;
	MemoryContext scratch;		/* one request or result; reset after it */
	WsHttpClient *http;
	uint64	   *last_request_id;	/* delivery's: ids stay unique */
	List	   *tables;			/* MtTable * */
};

/* A column as system.columns shows it. */
typedef struct ChColumn
{
	char	   *name;
	char	   *type;
	char	   *default_kind;	/* "" for an ordinary column */
} ChColumn;

WsManagedTables *
ws_managed_tables_create(MemoryContext context, WsHttpClient *http,
						 uint64 *last_request_id)
{
	WsManagedTables *tables = MemoryContextAllocZero(context,
													 sizeof(WsManagedTables));

	tables->context = context;
	tables->scratch = AllocSetContextCreate(context,
											"walship table checks",
											ALLOCSET_SMALL_SIZES);
	tables->http = http;
	tables->last_request_id = last_request_id;
	return tables;
}

static bool
same_shape(const WsRowBinaryShape *a, const WsRowBinaryShape *b)
{
	return a == b || (a != NULL && b != NULL &&
					  strcmp(a->signature, b->signature) == 0);
}

static MtTable *
lookup(WsManagedTables *tables, const char *database, const char *table)
{
	ListCell   *lc;
	MtTable    *t;
	MemoryContext old;

	foreach(lc, tables->tables)
	{
		t = lfirst(lc);
		if (strcmp(t->database, database) == 0 && strcmp(t->table, table) == 0)
			return t;
	}
	old = MemoryContextSwitchTo(tables->context);
	t = palloc0(sizeof(MtTable));
	t->database = pstrdup(database);
	t->table = pstrdup(table);
	t->step_context = AllocSetContextCreate(tables->context,
											"walship table step",
											ALLOCSET_SMALL_SIZES);
	tables->tables = lappend(tables->tables, t);
	MemoryContextSwitchTo(old);
	return t;
}

/* A string literal for ClickHouse: quotes and backslashes escaped. */
static void
append_literal(StringInfo out, const char *str)
{
	appendStringInfoChar(out, '\'');
	for (const char *p = str; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			appendStringInfoChar(out, '\\');
		appendStringInfoChar(out, *p);
	}
	appendStringInfoChar(out, '\'');
}

static char *
qualified_name(const MtTable *t)
{
	return psprintf("%s.%s", ws_clickhouse_quote_ident(t->database),
					ws_clickhouse_quote_ident(t->table));
}

/* Starts the request of the step's current phase. */
static void
start_request(WsManagedTables *tables, MtTable *t)
{
	WsHttpRequest request;
	StringInfoData statement;
	MemoryContext old = MemoryContextSwitchTo(tables->scratch);

	initStringInfo(&statement);
	if (t->phase == MT_READ_DUE)
	{
		appendStringInfoString(&statement,
							   "SELECT name, type, default_kind FROM system.columns WHERE database = ");
		append_literal(&statement, t->database);
		appendStringInfoString(&statement, " AND table = ");
		append_literal(&statement, t->table);
		appendStringInfoString(&statement, " FORMAT TabSeparated");
		t->phase = MT_READING;
	}
	else
	{
		Assert(t->phase == MT_ALTER_DUE && t->statements != NIL);
		appendStringInfoString(&statement, linitial(t->statements));
		t->phase = MT_ALTERING;
	}

	memset(&request, 0, sizeof(request));
	t->request_id = ++(*tables->last_request_id);
	request.request_id = t->request_id;
	request.url = ws_clickhouse_statement_url(statement.data);
	request.content_type = "text/plain; charset=utf-8";
	request.body = "";
	request.body_len = 0;
	request.keep_body = true;
	t->attempts++;
	ws_http_start(tables->http, &request);	/* copies the URL */
	MemoryContextSwitchTo(old);
	MemoryContextReset(tables->scratch);
}

WsTableReadiness
ws_managed_tables_ready(WsManagedTables *tables, const WsRowBinaryShape *shape,
						bool may_change, TimestampTz now, char **why)
{
	MtTable    *t = lookup(tables, walship_clickhouse_database,
						   shape->table_name);

	*why = NULL;
	if (t->wanted == NULL && same_shape(t->shape, shape))
		return WS_TABLE_READY;
	if (t->wanted == NULL && t->base != NULL && same_shape(t->base, shape))
		return WS_TABLE_REENCODE;
	if (t->refused != NULL && same_shape(t->wanted, shape) &&
		now < t->retry_at)
	{
		*why = pstrdup(t->refused);
		return WS_TABLE_REFUSED;
	}
	if (!may_change || t->phase == MT_READING || t->phase == MT_ALTERING)
		return WS_TABLE_WAIT;

	/* a new goal, or a refusal that is over: check the table (again) */
	if (!same_shape(t->wanted, shape) || t->refused != NULL)
	{
		t->wanted = shape;
		t->phase = MT_READ_DUE;
		MemoryContextReset(t->step_context);
		t->statements = NIL;
		t->types = NULL;
		t->attempts = 0;
		t->retry_at = 0;
		if (t->refused)
			pfree(t->refused);
		t->refused = NULL;
	}
	if (now >= t->retry_at &&
		(t->phase == MT_READ_DUE || t->phase == MT_ALTER_DUE))
		start_request(tables, t);
	return WS_TABLE_WAIT;
}

const WsRowBinaryShape *
ws_managed_tables_effective(WsManagedTables *tables,
							const WsRowBinaryShape *shape)
{
	ListCell   *lc;

	foreach(lc, tables->tables)
	{
		MtTable    *t = lfirst(lc);

		if (t->base != NULL && same_shape(t->base, shape) &&
			strcmp(t->database, walship_clickhouse_database) == 0 &&
			strcmp(t->table, shape->table_name) == 0)
			return t->shape;
	}
	return shape;
}

void
ws_managed_tables_shapes_in_use(WsManagedTables *tables, List **in_use)
{
	ListCell   *lc;

	foreach(lc, tables->tables)
	{
		MtTable    *t = lfirst(lc);

		if (t->shape)
			*in_use = lappend(*in_use, (void *) t->shape);
		if (t->base)
			*in_use = lappend(*in_use, (void *) t->base);
		if (t->wanted)
			*in_use = lappend(*in_use, (void *) t->wanted);
	}
}

bool
ws_managed_tables_ndjson(void)
{
	return walship_clickhouse_manage_tables &&
		walship_format == WS_FORMAT_NDJSON &&
		walship_ndjson_shape == WS_NDJSON_FLAT &&
		(WsDialect) walship_dialect != WS_DIALECT_STANDARD &&
		walship_clickhouse_database != NULL &&
		walship_clickhouse_database[0] != '\0';
}

void
ws_managed_tables_check_settings(void)
{
	const char *why = NULL;

	if (!walship_clickhouse_manage_tables ||
		walship_format == WS_FORMAT_ROWBINARY || ws_managed_tables_ndjson())
		return;					/* rowbinary reports what it misses itself */
	if (walship_format == WS_FORMAT_BINARY)
		why = "walship.format is binary";
	else if (walship_ndjson_shape != WS_NDJSON_FLAT)
		why = "walship.ndjson_shape is envelope";
	else if ((WsDialect) walship_dialect == WS_DIALECT_STANDARD)
		why = "walship.dialect is standard";
	else
		why = "walship.clickhouse_database is not set";
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("walship.clickhouse_manage_tables = on has no effect: %s",
					why),
			 errdetail("Managed ClickHouse tables need walship.format = 'rowbinary', or walship.format = 'ndjson' with walship.ndjson_shape = 'flat', and walship.dialect 'clickhouse' or 'clickhouse_18' and walship.clickhouse_database.  Rows go to walship.endpoint as it is, and no table is created or altered."),
			 errhint("Set walship.ndjson_shape = 'flat', walship.dialect = 'clickhouse' (or 'clickhouse_18') and walship.clickhouse_database, and reload; or set walship.clickhouse_manage_tables = off.")));
}

bool
ws_managed_tables_busy(WsManagedTables *tables)
{
	ListCell   *lc;

	foreach(lc, tables->tables)
	{
		MtTable    *t = lfirst(lc);

		if (t->phase != MT_IDLE)
			return true;
	}
	return false;
}

/* ---------------------------------------------------------------------
 * Comparing the table with the shape
 * ---------------------------------------------------------------------
 */

/* Unescapes a TabSeparated field in place. */
static void
tsv_unescape(char *field)
{
	char	   *in = field;
	char	   *out = field;

	while (*in)
	{
		if (*in == '\\' && in[1] != '\0')
		{
			in++;
			switch (*in)
			{
				case 't':
					*out++ = '\t';
					break;
				case 'n':
					*out++ = '\n';
					break;
				case 'r':
					*out++ = '\r';
					break;
				case '0':
					*out++ = '\0';
					break;
				default:
					*out++ = *in;
					break;
			}
			in++;
		}
		else
			*out++ = *in++;
	}
	*out = '\0';
}

/* The rows of "name, type, default_kind" in TabSeparated. */
static List *
parse_columns(const char *body, size_t len)
{
	char	   *text = pnstrdup(body ? body : "", len);
	char	   *line;
	char	   *save = NULL;
	List	   *columns = NIL;

	for (line = strtok_r(text, "\n", &save); line != NULL;
		 line = strtok_r(NULL, "\n", &save))
	{
		char	   *tab1 = strchr(line, '\t');
		char	   *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
		ChColumn   *col;

		if (tab2 == NULL)
			continue;
		*tab1 = '\0';
		*tab2 = '\0';
		col = palloc(sizeof(ChColumn));
		col->name = pstrdup(line);
		col->type = pstrdup(tab1 + 1);
		col->default_kind = pstrdup(tab2 + 1);
		tsv_unescape(col->name);
		tsv_unescape(col->type);
		tsv_unescape(col->default_kind);
		columns = lappend(columns, col);
	}
	return columns;
}

static ChColumn *
find_column(List *columns, const char *name)
{
	ListCell   *lc;

	foreach(lc, columns)
		if (strcmp(((ChColumn *) lfirst(lc))->name, name) == 0)
			return lfirst(lc);
	return NULL;
}

static bool
shape_has_column(const WsRowBinaryShape *shape, const char *name)
{
	for (int i = 0; i < shape->nall; i++)
		if (strcmp(shape->names[i], name) == 0)
			return true;
	return false;
}

/* "Nullable(X)" -> "X", else NULL */
static char *
strip_wrapper(const char *type, const char *wrapper)
{
	size_t		wlen = strlen(wrapper);
	size_t		len = strlen(type);

	if (len > wlen + 2 && strncmp(type, wrapper, wlen) == 0 &&
		type[wlen] == '(' && type[len - 1] == ')')
		return pnstrdup(type + wlen + 1, len - wlen - 2);
	return NULL;
}

static int
int_rank(const char *type)
{
	static const char *const ints[] = {"Int8", "Int16", "Int32", "Int64"};

	for (int i = 0; i < (int) lengthof(ints); i++)
		if (strcmp(type, ints[i]) == 0)
			return i + 1;
	if (strcmp(type, "UInt8") == 0)
		return 1;				/* boolean: widens to Int16 and up */
	if (strcmp(type, "UInt32") == 0)
		return 4;				/* oid: only Int64 holds it */
	return 0;
}

/*
 * Whether ClickHouse's MODIFY COLUMN from one type to the other keeps
 * every value: wider integers, floats, Decimal precision, Nullable.
 */
static bool
type_widens(const char *from, const char *to)
{
	char	   *inner_from;
	char	   *inner_to;
	int			p1,
				s1,
				p2,
				s2;

	if (strcmp(from, to) == 0)
		return true;
	/* Nullable added or removed: the base type decides */
	if ((inner_from = strip_wrapper(from, "Nullable")) != NULL)
		return type_widens(inner_from, (inner_to = strip_wrapper(to, "Nullable")) ? inner_to : to);
	if ((inner_to = strip_wrapper(to, "Nullable")) != NULL)
		return type_widens(from, inner_to);
	if ((inner_from = strip_wrapper(from, "Array")) != NULL &&
		(inner_to = strip_wrapper(to, "Array")) != NULL)
		return type_widens(inner_from, inner_to);
	if (int_rank(from) > 0 && int_rank(to) > 0 && strncmp(to, "UInt", 4) != 0)
		return int_rank(to) > int_rank(from) ||
			(int_rank(to) == int_rank(from) && strncmp(from, "UInt", 4) == 0 &&
			 strcmp(from, "UInt32") != 0);
	if (strcmp(to, "Float64") == 0 &&
		(strcmp(from, "Float32") == 0 ||
		 (int_rank(from) > 0 && int_rank(from) <= 3 && strcmp(from, "UInt32") != 0)))
		return true;
	if (sscanf(from, "Decimal(%d, %d)", &p1, &s1) == 2 &&
		sscanf(to, "Decimal(%d, %d)", &p2, &s2) == 2)
		return s1 == s2 && p2 >= p1;
	return false;
}

/*
 * Whether a column of ClickHouse type ch holds every value of type ours,
 * so rows can be written in ch instead (a table widened by an earlier
 * shape, which a restart sends rows of again).
 */
static bool
type_holds(const char *ch, const char *ours)
{
	char	   *ch_inner;
	char	   *ours_inner;

	if (strcmp(ch, ours) == 0)
		return true;
	ch_inner = strip_wrapper(ch, "Nullable");
	ours_inner = strip_wrapper(ours, "Nullable");
	if (ours_inner != NULL)
		return ch_inner != NULL && type_holds(ch_inner, ours_inner);
	if (ch_inner != NULL)
		return type_holds(ch_inner, ours);
	if ((ch_inner = strip_wrapper(ch, "Array")) != NULL &&
		(ours_inner = strip_wrapper(ours, "Array")) != NULL)
		return type_holds(ch_inner, ours_inner);
	return type_widens(ours, ch);
}

/*
 * The statements that make the table match t->wanted, given its columns;
 * NULL with *problem when it cannot be made to (or may not be changed).
 * Sets t->types: the types rows are to be written in.
 */
static List *
plan_statements(MtTable *t, List *columns, char **problem)
{
	const WsRowBinaryShape *wanted = t->wanted;
	char	   *table = qualified_name(t);
	List	   *statements = NIL;
	bool		manage = walship_clickhouse_manage_tables;
	bool		added = false;

	*problem = NULL;
	t->types = MemoryContextAlloc(t->step_context,
								  sizeof(char *) * wanted->nall);
	for (int i = 0; i < wanted->nall; i++)
		t->types[i] = wanted->types[i];
	if (columns == NIL)
	{
		char	   *ddl;

		if (!manage)
		{
			*problem = psprintf("ClickHouse table %s does not exist", table);
			return NIL;
		}
		ddl = ws_rowbinary_create_table(wanted, t->database, problem);
		return ddl ? list_make1(ddl) : NIL;
	}

	for (int i = 0; i < wanted->nall; i++)
	{
		ChColumn   *col = find_column(columns, wanted->names[i]);
		char	   *name = ws_clickhouse_quote_ident(wanted->names[i]);

		if (col == NULL)
		{
			if (!manage)
			{
				*problem = psprintf("ClickHouse table %s has no column %s, which walship writes",
									table, name);
				return NIL;
			}
			statements = lappend(statements,
								 i == 0 ?
								 psprintf("ALTER TABLE %s ADD COLUMN %s %s",
										  table, name, wanted->types[i]) :
								 psprintf("ALTER TABLE %s ADD COLUMN %s %s AFTER %s",
										  table, name, wanted->types[i],
										  ws_clickhouse_quote_ident(wanted->names[i - 1])));
			added = true;
		}
		else if (strcmp(col->type, wanted->types[i]) != 0 &&
				 type_holds(col->type, wanted->types[i]))
		{
			/* wider in ClickHouse: rows are written in its type */
			t->types[i] = MemoryContextStrdup(t->step_context, col->type);
		}
		else if (strcmp(col->type, wanted->types[i]) != 0)
		{
			if (!manage || !type_widens(col->type, wanted->types[i]))
			{
				*problem = psprintf("column %s of ClickHouse table %s has type %s, but walship writes %s",
									name, table, col->type, wanted->types[i]);
				return NIL;
			}
			statements = lappend(statements,
								 psprintf("ALTER TABLE %s MODIFY COLUMN %s %s",
										  table, name, wanted->types[i]));
		}
	}

	/* columns the previous shape had and this one has not */
	if (manage && t->shape != NULL)
	{
		for (int i = 0; i < t->shape->ncolumns; i++)
		{
			const char *gone = t->shape->names[i];
			ChColumn   *col;

			if (shape_has_column(wanted, gone) ||
				(col = find_column(columns, gone)) == NULL ||
				col->default_kind[0] != '\0')
				continue;
			if (added)
				ereport(WARNING,
						(errmsg("walship keeps column %s of ClickHouse table %s, which \"%s.%s\" no longer has",
								ws_clickhouse_quote_ident(gone), table,
								wanted->schema_name, wanted->table_name),
						 errdetail("Columns were added in the same change: it may have been a rename, which a relation description cannot tell from a drop and an add."),
						 errhint("If it was a rename, copy the values over in ClickHouse (ALTER TABLE %s UPDATE <new> = %s WHERE 1) or backfill the table, then drop the old column.",
								 table, ws_clickhouse_quote_ident(gone))));
			else
				statements = lappend(statements,
									 psprintf("ALTER TABLE %s DROP COLUMN %s",
											  table,
											  ws_clickhouse_quote_ident(gone)));
		}
	}
	return statements;
}

/* ---------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------
 */

static void
step_done(MtTable *t)
{
	bool		other_types = false;

	for (int i = 0; t->types != NULL && i < t->wanted->nall; i++)
		if (strcmp(t->types[i], t->wanted->types[i]) != 0)
			other_types = true;
	if (other_types)
	{
		t->shape = ws_rowbinary_shape_with_types(t->wanted,
												 (const char *const *) t->types);
		t->base = t->wanted;
	}
	else
	{
		t->shape = t->wanted;
		t->base = NULL;
	}
	/* the shapes copied what they keep */
	MemoryContextReset(t->step_context);
	t->statements = NIL;
	t->types = NULL;
	t->wanted = NULL;
	t->phase = MT_IDLE;
	t->attempts = 0;
	if (t->reported)
	{
		t->reported = false;
		ws_shared_clear_error();
		ws_shared_change_state(WS_STATE_BIT(WS_STATE_ERROR), WS_STATE_STREAMING);
	}
}

/*
 * The table cannot take the shape's rows now: under on_rejected = stop
 * nothing of the table is sent and the check is repeated every
 * retry_max_delay; under dead_letter the rows are refused until then.
 */
static void
step_failed(MtTable *t, const char *problem, const char *hint)
{
	TimestampTz now = GetCurrentTimestamp();
	int			delay = Max(walship_retry_max_delay, walship_retry_min_delay);

	MemoryContextReset(t->step_context);
	t->statements = NIL;
	t->types = NULL;
	t->retry_at = TimestampTzPlusMilliseconds(now, delay);
	if (walship_on_rejected == WS_ON_REJECTED_DEAD_LETTER)
	{
		ereport(WARNING,
				(errmsg("walship sets rows of \"%s.%s\" aside: %s",
						t->wanted->schema_name, t->wanted->table_name, problem),
				 errhint("%s", hint)));
		t->refused = MemoryContextStrdup(GetMemoryChunkContext(t), problem);
		t->phase = MT_IDLE;
	}
	else
	{
		ws_shared_report_problem(WS_STATE_ERROR, problem, hint);
		t->reported = true;
		t->phase = MT_READ_DUE;
	}
}

static int
backoff_delay(int attempts)
{
	double		delay = walship_retry_min_delay * pow(2.0, Min(attempts - 1, 30));

	delay = Min(delay, Max(walship_retry_max_delay, walship_retry_min_delay));
	return (int) (delay / 2 + (delay / 2) * pg_prng_double(&pg_global_prng_state));
}

bool
ws_managed_tables_handle_result(WsManagedTables *tables, WsHttpResult *result)
{
	ListCell   *lc;
	MtTable    *t = NULL;
	WsHttpOutcome outcome = result->outcome;
	MemoryContext old;
	int			code = 0;

	foreach(lc, tables->tables)
	{
		MtTable    *candidate = lfirst(lc);

		if ((candidate->phase == MT_READING || candidate->phase == MT_ALTERING) &&
			candidate->request_id == result->request_id)
			t = candidate;
	}
	if (t == NULL)
		return false;

	/* what a check computes is needed only until it is over */
	old = MemoryContextSwitchTo(tables->scratch);
	ws_shared_note_http_status(result->status);
	if (ws_clickhouse_error_is_permanent(result) || outcome == WS_HTTP_TOO_LARGE)
		outcome = WS_HTTP_REJECTED;
	(void) sscanf(result->response, "Code: %d", &code);

	if (outcome == WS_HTTP_ACKNOWLEDGED && t->phase == MT_READING &&
		result->status == 204)
	{
		/*
		 * ClickHouse answers a SELECT with 200 and the rows.  204 No Content
		 * comes from an endpoint that only takes inserts (a proxy, a null
		 * sink): there is nothing to check, it is trusted.
		 */
		ereport(LOG,
				(errmsg("walship cannot check ClickHouse table %s: the endpoint answered its query with 204 No Content; sending rows unchecked",
						qualified_name(t))));
		step_done(t);
	}
	else if (outcome == WS_HTTP_ACKNOWLEDGED && t->phase == MT_READING)
	{
		List	   *columns = parse_columns(result->body, result->body_len);
		char	   *problem;

		if (result->body_truncated)
		{
			columns = NIL;
			t->statements = NIL;
			problem = psprintf("the columns of ClickHouse table %s are too many to read",
							   qualified_name(t));
		}
		else
		{
			List	   *statements = plan_statements(t, columns, &problem);
			ListCell   *slc;

			/* kept until they ran */
			MemoryContextSwitchTo(t->step_context);
			t->statements = NIL;
			foreach(slc, statements)
				t->statements = lappend(t->statements, pstrdup(lfirst(slc)));
			MemoryContextSwitchTo(tables->scratch);
		}
		t->attempts = 0;
		if (problem)
			step_failed(t, problem,
						walship_clickhouse_manage_tables ?
						"Change the ClickHouse column yourself (ALTER TABLE ... MODIFY COLUMN, or a new column and a backfill), or recreate the table: walship checks it again every walship.retry_max_delay." :
						"Create or alter the ClickHouse table as walship.clickhouse_ddl() prints it, or set walship.clickhouse_manage_tables = on: walship checks it again every walship.retry_max_delay.");
		else if (t->statements == NIL)
			step_done(t);
		else
		{
			t->phase = MT_ALTER_DUE;
			t->retry_at = 0;
		}
	}
	else if (outcome == WS_HTTP_ACKNOWLEDGED)
	{
		ereport(LOG,
				(errmsg("walship ran on ClickHouse: %s",
						(char *) linitial(t->statements))));
		pfree(linitial(t->statements));
		t->statements = list_delete_first(t->statements);
		t->attempts = 0;
		if (t->statements == NIL)
			step_done(t);
		else
		{
			t->phase = MT_ALTER_DUE;
			t->retry_at = 0;
		}
	}
	else if (outcome == WS_HTTP_RETRY)
	{
		int			delay = backoff_delay(t->attempts);

		ereport(t->attempts == 1 ? LOG : DEBUG1,
				(errmsg("walship could not %s ClickHouse table %s (attempt %d, retrying in %d ms): HTTP %ld%s%s",
						t->phase == MT_READING ? "check" : "alter",
						qualified_name(t), t->attempts, delay, result->status,
						result->error[0] ? ": " : "", result->error)));
		ws_shared_count_retry();
		t->phase = t->phase == MT_READING ? MT_READ_DUE : MT_ALTER_DUE;
		t->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
	}
	else
	{
		char	   *problem = psprintf("ClickHouse refused to %s table %s: HTTP %ld%s",
									   t->phase == MT_READING ? "show the columns of" : "alter",
									   qualified_name(t), result->status,
									   code ? psprintf(" (ClickHouse error code %d)", code) : "");

		if (t->phase == MT_ALTERING)
			ereport(LOG,
					(errmsg("walship's statement failed on ClickHouse: %s",
							(char *) linitial(t->statements))));
		step_failed(t, problem,
					"Check the ClickHouse user's rights and the table; walship tries again every walship.retry_max_delay.");
	}
	free(result->body);
	result->body = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextReset(tables->scratch);
	return true;
}
