/*-------------------------------------------------------------------------
 *
 * batch.h
 *	  Assembly of decoded records into self-contained batches.
 *
 * IDENTIFICATION
 *	  src/batch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_BATCH_H
#define WALSHIP_BATCH_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"

typedef enum WsBatchStatus
{
	WS_BATCH_OPEN,				/* batch: still receiving records */
	WS_BATCH_READY,				/* sealed, or part not sent yet */
	WS_BATCH_SENDING,			/* part: a request is in flight */
	WS_BATCH_WAITING,			/* part: failed, waiting for retry_at */
	WS_BATCH_DONE				/* acknowledged, or nothing to send */
} WsBatchStatus;

#define WS_CHANGE_ID_LEN	48

/* One request of a batch. */
typedef struct WsBatchPart
{
	int			index;			/* in the batch's parts */
	char	   *url;			/* the endpoint, placeholders filled in */
	char	   *endpoint;		/* walship.endpoint that url was made from */
	char	   *schema;			/* the table's, for {schema}/{table} URLs; */
	char	   *table;			/* NULL for a request of the whole batch */
	char	   *statement;		/* a ClickHouse statement its URL runs (a
								 * rowbinary INSERT, the DELETE after a
								 * resync), or NULL */
	const struct WsRowBinaryShape *shape;	/* rowbinary: its rows' shape */
	const struct WsRowBinaryShape *base_shape;	/* ... as the relation has
												 * it (shape may be it in
												 * the table's wider types) */
	char	   *local_error;	/* rowbinary: why its rows cannot be sent
								 * (a rejection without a request), or NULL */
	const char *content_type;
	const char *content_encoding;	/* NULL for none */
	char	   *body;			/* encoded and compressed; NULL once sent to
								 * walship.dead_letter, which owns it then */
	size_t		body_len;
	int			nlines;			/* NDJSON lines, or changes for binary */
	WsBatchStatus status;		/* READY, SENDING, WAITING or DONE */
	bool		rejected;		/* the endpoint refused it permanently */
	int			attempts;
	TimestampTz retry_at;
	uint64		request_id;		/* of its latest request, unique per worker */
	char	   *dedup_token;	/* insert_deduplication_token sent with it
								 * (clickhouse dialect), or NULL */
} WsBatchPart;

typedef struct WsBatch
{
	uint64		seq;			/* unique id, 1-based; the queue gives order */
	WsBatchStatus status;
	StringInfoData records;		/* a self-contained walship record stream */
	int			nchanges;		/* change and message records */
	XLogRecPtr	confirm_lsn;	/* end of its last COMMIT, or invalid */
	uint64		backfill_tag;	/* backfill chunk that ends here, or 0 */
	TimestampTz opened_at;
	TimestampTz oldest_commit_time; /* of its first transaction, or 0 */
	char		first_change[WS_CHANGE_ID_LEN];
	char		last_change[WS_CHANGE_ID_LEN];	/* written when sealed */
	XLogRecPtr	last_change_lsn;	/* last_change while the batch is open */
	uint64		last_change_ordinal;

	/* delivery: one part per request (one per table with {table} URLs) */
	List	   *parts;			/* WsBatchPart *, NIL until prepared */
	bool		split_pending;	/* 413: split once no part is in flight */
	List	   *done_tables;	/* char *, ws_batch_table_key(): tables whose
								 * request was done (acknowledged or
								 * dead-lettered) before the batch was split
								 * or regrouped; their lines are not sent
								 * again */
} WsBatch;

typedef struct WsBatchLimits
{
	int			max_changes;
	int			max_bytes;
} WsBatchLimits;

typedef struct WsBatcher
{
	MemoryContext context;
	List	   *queue;			/* WsBatch *, oldest first; the open one last */
	WsBatch    *open;			/* batch receiving records, or NULL */
	uint64		next_seq;

	/* what a new batch must repeat to be self-contained */
	HTAB	   *relations;		/* rel_id -> latest RELATION record */
	StringInfoData begin;		/* BEGIN of the transaction in progress */
	List	   *open_rel_ids;	/* rel_ids whose RELATION the open batch has */
	List	   *released_tags;	/* uint64 *: backfill tags of released
								 * batches, not yet taken */

	/* the transaction in progress */
	XLogRecPtr	commit_lsn;
	TimestampTz commit_time;

	int			sealed_len;		/* record bytes of the last sealed batch: a
								 * new one gets room for as many at once */
} WsBatcher;

extern WsBatcher *ws_batcher_create(MemoryContext parent);
extern void ws_batcher_add(WsBatcher *batcher, const char *record, int len,
						   const WsBatchLimits *limits);
extern void ws_batcher_seal_due(WsBatcher *batcher, TimestampTz now,
								int max_delay_ms);
extern void ws_batcher_split(WsBatcher *batcher, WsBatch *batch);
extern XLogRecPtr ws_batcher_release_done(WsBatcher *batcher);
extern uint64 ws_batcher_tag_last(WsBatcher *batcher, uint64 tag);
extern List *ws_batcher_take_released(WsBatcher *batcher);
extern bool ws_batcher_idle(const WsBatcher *batcher);
extern int64 ws_batcher_pending_bytes(const WsBatcher *batcher);
extern TimestampTz ws_batcher_oldest_commit(const WsBatcher *batcher);
extern void ws_batch_free_parts(WsBatch *batch);
extern char *ws_batch_table_key(const char *schema, const char *table,
								const struct WsRowBinaryShape *shape);
extern void ws_batch_note_done_tables(WsBatch *batch);
extern bool ws_batch_table_done(const WsBatch *batch, const char *schema,
								const char *table,
								const struct WsRowBinaryShape *shape);

#endif							/* WALSHIP_BATCH_H */
