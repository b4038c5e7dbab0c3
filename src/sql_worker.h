/*-------------------------------------------------------------------------
 *
 * sql_worker.h
 *	  What the SQL functions over the shipping worker share: the check that
 *	  its shared state exists, and the worker's slot as
 *	  pg_replication_slots shows it (walship.status, walship.metrics()).
 *
 * IDENTIFICATION
 *	  src/sql_worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_SQL_WORKER_H
#define WALSHIP_SQL_WORKER_H

#include "access/xlogdefs.h"

/* The worker's slot as pg_replication_slots shows it. */
typedef struct WsSlotFigures
{
	bool		exists;
	XLogRecPtr	restart_lsn;	/* Invalid when NULL */
	XLogRecPtr	confirmed_flush;	/* Invalid when NULL */
	char	   *wal_status;		/* NULL when NULL */
	bool		safe_wal_size_null;
	int64		safe_wal_size;
} WsSlotFigures;

extern void ws_require_worker(void);
extern void ws_read_slot_figures(WsSlotFigures *figures);

#endif							/* WALSHIP_SQL_WORKER_H */
