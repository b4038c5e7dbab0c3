/*-------------------------------------------------------------------------
 *
 * clickhouse.h
 *	  Everything walship knows about ClickHouse (18.16 and later): how the
 *	  NDJSON 'clickhouse' dialect writes values, which ClickHouse column type
 *	  takes them, the CREATE TABLE for a relation, and which ClickHouse
 *	  errors are permanent.
 *
 * docs/clickhouse.md is the human-readable description of these rules.
 *
 * IDENTIFICATION
 *	  src/clickhouse.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_CLICKHOUSE_H
#define WALSHIP_CLICKHOUSE_H

#include "lib/stringinfo.h"

#include "dialect.h"
#include "format.h"
#include "http_transport.h"

/* ---------------------------------------------------------------------
 * The NDJSON 'clickhouse' dialect (ndjson.c calls these).
 * ---------------------------------------------------------------------
 */

/*
 * Appends a value of column as ClickHouse's JSONEachRow takes it, in
 * dialect (WS_DIALECT_CLICKHOUSE or WS_DIALECT_CLICKHOUSE_18), into the
 * column ws_clickhouse_type() gives for the column's type in that dialect.
 */
extern void ws_clickhouse_append_value(StringInfo out, const WsValue *value,
									   const WsColumn *column,
									   WsDialect dialect, bool json_trusted);

/* Appends a commit time (us since 1970) as the flat shape's _commit_ts. */
extern void ws_clickhouse_append_commit_ts(StringInfo out, int64 commit_time,
										   WsDialect dialect);

/*
 * The flat shape has no line for a TRUNCATE of rel: warns that it is not
 * shipped.
 */
extern void ws_clickhouse_report_truncate(const WsRelation *rel);

/* ---------------------------------------------------------------------
 * Types and DDL (need catalog access: inside a transaction).
 * ---------------------------------------------------------------------
 */

/*
 * The non_replicated_deduplication_window of the tables the clickhouse
 * dialect's DDL creates: how many of a table's latest inserts ClickHouse
 * remembers to drop a retried one (docs/clickhouse.md, "Redelivery").
 */
#define WS_CLICKHOUSE_DEDUP_WINDOW	1000

/*
 * The range of current ClickHouse's Date32 and DateTime64 (dialect
 * clickhouse): dates in days and timestamps in microseconds since
 * 1970-01-01, 1900-01-01 ... 2299-12-31 23:59:59.999999.  Values outside,
 * and infinity and -infinity, are written as its ends (docs/clickhouse.md).
 */
#define WS_CLICKHOUSE_MIN_DAYS		(-25567)
#define WS_CLICKHOUSE_MAX_DAYS		120529
#define WS_CLICKHOUSE_MIN_USECS		(INT64CONST(-25567) * INT64CONST(86400000000))
#define WS_CLICKHOUSE_MAX_USECS		(INT64CONST(120530) * INT64CONST(86400000000) - 1)

/* A name as a ClickHouse identifier, quoted with backticks; palloc'd. */
extern char *ws_clickhouse_quote_ident(const char *name);

/*
 * The ClickHouse column type (without Nullable) for a PostgreSQL type and
 * modifier in dialect (WS_DIALECT_CLICKHOUSE or WS_DIALECT_CLICKHOUSE_18);
 * domains are resolved.  palloc'd.
 */
extern char *ws_clickhouse_type(Oid type_oid, int32 typmod, WsDialect dialect);

/*
 * The ClickHouse column type a RELATION record's column is declared with
 * in the CREATE TABLE: ws_clickhouse_type() of its type, Nullable unless
 * NOT NULL (by the column's flag or a domain) or an array.  palloc'd.
 */
extern char *ws_clickhouse_column_type(const WsColumn *col, WsDialect dialect);

/* Whether a table column may not have this name (a metadata column's). */
extern bool ws_clickhouse_is_metadata_name(const char *name);

/*
 * The flat shape's metadata columns, after the table's own, and their
 * ClickHouse types: sets the two static arrays, returns their length.
 */
extern int	ws_clickhouse_metadata_columns(const char *const **names,
										   const char *const **types,
										   WsDialect dialect);

/*
 * Appends to out the CREATE TABLE of the ReplacingMergeTree table that
 * takes the flat NDJSON shape of rel's rows in dialect: database.table
 * (table is rel's table name), rel's columns in order, Nullable unless NOT
 * NULL (by the column's flag or a domain) or an array, then walship's
 * metadata columns, ordered by the key; in the clickhouse dialect
 * ReplacingMergeTree(_version, _deleted) with a deduplication window.
 *
 * key_names are the key's column names in key order; NULL takes the
 * columns of the replica identity index (replica identity 'i'), else those
 * of the primary key, from the column flags, in column order (a RELATION
 * record does not say the index's column order).  Raises an error when
 * there is no key or a column has a metadata column's name.
 */
extern void ws_clickhouse_create_table(StringInfo out, const WsRelation *rel,
									   const char *database,
									   const char *const *key_names,
									   int nkey_names, WsDialect dialect);

/*
 * The ClickHouse dialect a SQL function's argument names; raises an error
 * for any other name (standard included).
 */
extern WsDialect ws_clickhouse_dialect_from_name(const char *name);

/* ---------------------------------------------------------------------
 * Delivery.
 * ---------------------------------------------------------------------
 */

/*
 * Whether a response is a ClickHouse error that retrying cannot fix (a
 * parse error, an unknown table...): HTTP 500 with "Code: N" at the start
 * of the body, N one of the data errors.
 */
extern bool ws_clickhouse_error_is_permanent(const WsHttpResult *result);

/*
 * The URL that runs one statement on the ClickHouse of walship.endpoint:
 * the endpoint's scheme://authority/path, its query parameters other than
 * query (settings, user...) as written, then query= and the statement
 * percent-encoded.  The fragment is dropped.  palloc'd.
 */
extern char *ws_clickhouse_statement_url(const char *statement);

#endif							/* WALSHIP_CLICKHOUSE_H */
