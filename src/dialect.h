/*-------------------------------------------------------------------------
 *
 * dialect.h
 *	  The dialects walship writes values in (walship.dialect): which rules
 *	  an encoder follows for the target that reads the values.
 *
 * standard is how walship.decode() renders values; clickhouse is what a
 * current ClickHouse (22.x and later, ClickHouse Cloud) reads into the
 * column types src/clickhouse.c maps to; clickhouse_18 is what ClickHouse
 * 18.16 reads.  docs/clickhouse.md describes both ClickHouse dialects.
 *
 * IDENTIFICATION
 *	  src/dialect.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_DIALECT_H
#define WALSHIP_DIALECT_H

typedef enum WsDialect
{
	WS_DIALECT_STANDARD,		/* as walship.decode() renders values */
	WS_DIALECT_CLICKHOUSE,		/* ClickHouse 22.x and later */
	WS_DIALECT_CLICKHOUSE_18	/* ClickHouse 18.16 */
} WsDialect;

/* The names, as walship.dialect and the SQL functions take them. */
#define WS_DIALECT_NAMES_HINT \
	"Valid dialects are \"standard\", \"clickhouse\" and \"clickhouse_18\"."

/* Whether name is a dialect's name; if so, the dialect in *dialect. */
static inline bool
ws_dialect_from_name(const char *name, WsDialect *dialect)
{
	if (strcmp(name, "standard") == 0)
		*dialect = WS_DIALECT_STANDARD;
	else if (strcmp(name, "clickhouse") == 0)
		*dialect = WS_DIALECT_CLICKHOUSE;
	else if (strcmp(name, "clickhouse_18") == 0)
		*dialect = WS_DIALECT_CLICKHOUSE_18;
	else
		return false;
	return true;
}

#endif							/* WALSHIP_DIALECT_H */
