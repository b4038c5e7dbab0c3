/*-------------------------------------------------------------------------
 *
 * managed_tables.h
 *	  The ClickHouse target tables of walship.format = rowbinary (and of
 *	  NDJSON with managed tables): checking that each has the columns a
 *	  relation shape writes, and with walship.clickhouse_manage_tables
 *	  creating and altering it until it does, before any row of the shape
 *	  is sent.
 *
 * IDENTIFICATION
 *	  src/managed_tables.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_MANAGED_TABLES_H
#define WALSHIP_MANAGED_TABLES_H

#include "datatype/timestamp.h"

#include "http_transport.h"
#include "rowbinary.h"

typedef struct WsManagedTables WsManagedTables;

/* Whether rows of a shape may be sent to its table now. */
typedef enum WsTableReadiness
{
	WS_TABLE_READY,				/* the table has the shape's columns */
	WS_TABLE_WAIT,				/* being checked or altered, or blocked */
	WS_TABLE_REENCODE,			/* write the rows in the table's wider
								 * types: ws_managed_tables_effective() */
	WS_TABLE_REFUSED			/* cannot take the shape: reject its rows
								 * (on_rejected = dead_letter) */
} WsTableReadiness;

extern WsManagedTables *ws_managed_tables_create(MemoryContext context,
												 WsHttpClient *http,
												 uint64 *last_request_id);

/*
 * Whether rows of shape may go to its ClickHouse table now.  may_change is
 * false while earlier rows of the same table are not acknowledged: then
 * nothing is started that could change the table under them.  Otherwise
 * the first call for a table (per process) and every call with another
 * shape than the table was last found or made to have start a check: the
 * table's columns are read from system.columns and, with
 * walship.clickhouse_manage_tables, the table is created or altered; the
 * answer is WAIT until that is done.  REFUSED sets *why (palloc'd).
 */
extern WsTableReadiness ws_managed_tables_ready(WsManagedTables *tables,
												const WsRowBinaryShape *shape,
												bool may_change,
												TimestampTz now, char **why);

/*
 * The shape to write shape's rows in: shape, or shape in the wider types
 * its table was found to have.
 */
extern const WsRowBinaryShape *ws_managed_tables_effective(WsManagedTables *tables,
														   const WsRowBinaryShape *shape);

/* Takes a result if it answers one of this module's requests. */
extern bool ws_managed_tables_handle_result(WsManagedTables *tables,
											WsHttpResult *result);

/* Whether a request of this module is in flight or waits for a retry. */
extern bool ws_managed_tables_busy(WsManagedTables *tables);

/* Appends the shapes the tables keep (for ws_rowbinary_release_shapes). */
extern void ws_managed_tables_shapes_in_use(WsManagedTables *tables,
											List **in_use);

/*
 * Whether the settings make NDJSON requests go to managed tables:
 * walship.clickhouse_manage_tables with format ndjson, the flat shape, a
 * ClickHouse dialect and walship.clickhouse_database.  delivery.c then
 * makes each request's INSERT itself, per table and relation shape.
 */
extern bool ws_managed_tables_ndjson(void);

/*
 * Warns when walship.clickhouse_manage_tables is on but the other
 * settings give it no effect (worker start and reloads).
 */
extern void ws_managed_tables_check_settings(void);

#endif							/* WALSHIP_MANAGED_TABLES_H */
