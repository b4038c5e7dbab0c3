/*-------------------------------------------------------------------------
 *
 * backfill.h
 *	  Backfills in the shipping worker: chunks read between watermarks and
 *	  shipped as READ records.
 *
 * IDENTIFICATION
 *	  src/backfill.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_BACKFILL_H
#define WALSHIP_BACKFILL_H

#include "nodes/pg_list.h"

typedef struct WsBackfill WsBackfill;

/* Where the READ records of a chunk go: the worker's batcher. */
typedef struct WsBackfillOutput
{
	/* appends one record, as the output plugin's records are appended */
	void		(*emit) (void *arg, const char *record, int len);
	/* ws_batcher_tag_last */
	uint64		(*tag) (void *arg, uint64 tag);
	void	   *arg;
} WsBackfillOutput;

extern WsBackfill *ws_backfill_create(MemoryContext parent);

/*
 * Called from the main loop, outside decoding and transactions: starts
 * the next chunk when may_read, or writes the high watermark of the chunk
 * being read once the transactions it waits for are over.
 */
extern void ws_backfill_step(WsBackfill *backfill, bool may_read,
							 const WsBackfillOutput *output);

/*
 * Called with every record the output plugin writes, before it is
 * batched.  Returns true when the record is a watermark, which is not
 * shipped.
 */
extern bool ws_backfill_observe(WsBackfill *backfill, const char *record,
								int len, const WsBackfillOutput *output);

/* Records the chunks whose batches were acknowledged (batch tags). */
extern void ws_backfill_acknowledged(WsBackfill *backfill, List *tags);

/* What the worker should show in pg_stat_activity, or NULL. */
extern const char *ws_backfill_activity(const WsBackfill *backfill);

/* Forgets the chunk in progress and the stream's relations. */
extern void ws_backfill_reset(WsBackfill *backfill);

/* sql_backfill.c: raises an error unless condition is one expression */
extern void ws_check_backfill_condition(const char *condition);

#endif							/* WALSHIP_BACKFILL_H */
