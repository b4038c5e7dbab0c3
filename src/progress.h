/*-------------------------------------------------------------------------
 *
 * progress.h
 *	  The worker's catalog: walship.progress, walship.dead_letter and
 *	  walship.backfills, resolved through the extension.
 *
 * IDENTIFICATION
 *	  src/progress.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_PROGRESS_H
#define WALSHIP_PROGRESS_H

#include "access/xlogdefs.h"
#include "nodes/pg_list.h"

#include "batch.h"
#include "http_transport.h"

/* A batch the endpoint rejected, on its way to walship.dead_letter. */
typedef struct WsRejectedBatch
{
	WsBatch    *batch;
	WsBatchPart *part;			/* the rejected request */
	long		http_status;
	char		error[WS_HTTP_MAX_ERROR + 64];
	char		response[WS_HTTP_MAX_RESPONSE];
} WsRejectedBatch;

/* A row of walship.backfills, as the worker needs it. */
typedef struct WsBackfillJob
{
	int64		id;
	Oid			relid;
	Oid			role;			/* queued_by: the table is read as it */
	int			chunk_size;
	char	   *condition;		/* NULL for none */
	char	   *schema_name;
	char	   *table_name;
	int			nkeys;			/* of last_key; 0 before the first chunk */
	char	  **last_key;
	bool		starting;		/* it was queued until now */
	XLogRecPtr	resync_version; /* part of a resync: the version its RESYNC
								 * record carries; invalid otherwise */
} WsBackfillJob;

/*
 * What walship.progress says of lost slots: the last gap (the WAL whose
 * changes may never have been shipped) and the resync that followed.
 */
typedef struct WsGap
{
	bool		has_row;		/* the slot has a walship.progress row */
	XLogRecPtr	confirmed_lsn;	/* acknowledged up to here */
	XLogRecPtr	start_lsn;		/* the last gap: [start_lsn, end_lsn) */
	XLogRecPtr	end_lsn;		/* invalid until the new slot exists */
	TimestampTz detected_at;	/* 0 when there never was one */
	int64		resyncs;
	char		resync_state[16];	/* "" (none), pending, running, done,
									 * incomplete, stopped */
	XLogRecPtr	resync_version;
} WsGap;

/*
 * These run inside the caller's transaction.  ws_progress_check_catalog()
 * says whether the extension is installed and its catalog can be trusted;
 * if not, why and what to do, allocated in the transaction.
 */
extern bool ws_progress_check_catalog(char **message, char **hint);
extern void ws_progress_create_slot(const char *slot_name);
extern void ws_progress_queue_initial_backfills(void);
extern void ws_progress_drop_slot(const char *slot_name);
extern void ws_progress_read_gap(const char *slot_name, WsGap *gap);
extern void ws_progress_mark_gap(const char *slot_name, XLogRecPtr start_lsn,
								 const char *state);
extern int	ws_progress_begin_resync(const char *slot_name,
									 XLogRecPtr start_lsn,
									 XLogRecPtr version);

/* These run their own transactions. */
extern void ws_progress_load(const char *slot_name);
extern void ws_progress_write(const char *slot_name, XLogRecPtr confirmed_lsn);
extern void ws_progress_write_dead_letters(List *rejected);
extern bool ws_progress_next_backfill(WsBackfillJob *job, MemoryContext mcxt);
extern void ws_progress_backfill_acknowledged(int64 id, int64 chunks,
											  int64 rows, int nkeys,
											  char **last_key, bool done);
extern void ws_progress_backfill_failed(int64 id, const char *error);

#endif							/* WALSHIP_PROGRESS_H */
