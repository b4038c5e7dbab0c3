/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  Backfills: the rows a table already holds, read in key order in
 *	  chunks by the shipping worker and shipped as READ records,
 *	  consistently with the change stream.
 *
 * Each chunk follows DBLog's watermark algorithm, tightened so that a
 * receiver keeping the row with the highest version (_version in the flat
 * NDJSON shape) never keeps a backfilled row over a newer change:
 *
 *	1. The worker writes a low watermark L, a non-transactional logical
 *	   message, and waits out commits that are in the WAL before L but not
 *	   yet visible (the moment between a commit record and the end of the
 *	   transaction), so that everything committed before L is in the
 *	   snapshot it then takes.
 *	2. Under that snapshot it reads the next chunk_size rows after the last
 *	   key, and encodes them.
 *	3. The live stream goes on while the worker waits for every transaction
 *	   that was running when the snapshot was taken to end; then it writes
 *	   the high watermark H.
 *	4. Decoding reaches L, then every transaction committed between L and
 *	   H, then H.  A row whose key one of those transactions touched is
 *	   dropped from the chunk: the stream already carries a newer version of
 *	   it.  The other rows go out as READ records at H.
 *
 * A READ row's version is L's LSN (precisely: the end of L's WAL record,
 * less one, which no record starts at), its position H's, likewise.
 * Changes that precede the row are committed before L, so their WAL
 * positions, their versions, are below L.  Changes that follow it come
 * from transactions that were not running when the snapshot was taken
 * (those that were committed before H and dropped the row), so they were
 * written after the snapshot, after L.  Waiting for running transactions
 * (step 3) is what plain DBLog leaves out: a
 * transaction that changed a row before L and commits after H has a WAL
 * position below L, and its change would lose to the stale backfilled row.
 * A long-running writing transaction therefore delays a backfill, never the
 * stream.
 *
 * Chunks are acknowledged like the stream's batches: walship.backfills
 * records a chunk's last key only once the batch that ends it, and every
 * batch before it, was acknowledged.  After a crash the worker reads again
 * from there, with new watermarks; those of the lost chunk are ignored.
 *
 * Rows are read as the role that queued the backfill, with row security
 * off (a policy that would hide rows is an error, not a partial copy).
 *
 * A backfill that is part of a resync after a lost slot (resync_version
 * set, see worker.c) ends its last chunk with a RESYNC record of that
 * version, after the chunk's rows and in the same batch: every row the
 * table holds went out at that version or above (a READ row's version is a
 * low watermark written after the new slot existed), so a receiver drops
 * the rows with a lower version that were not sent again.  The backfill is
 * done only once that batch is acknowledged.
 *
 * IDENTIFICATION
 *	  src/backfill.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/message.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "backfill.h"
#include "format.h"
#include "progress.h"
#include "relation_cache.h"
#include "row_filter.h"
#include "settings.h"
#include "shared_state.h"

/* Pause before reading again after a chunk could not be used. */
#define WS_BACKFILL_RETRY_MS		100
/* Looking for a backfill just queued, until its transaction commits. */
#define WS_BACKFILL_EAGER_POLL_MS	20
/*
 * Most rows fetched at a time by the chunk query's cursor.  A chunk's
 * fetches start with one row and double up to this: a fetch cut short by
 * walship.backfill_chunk_timeout loses its rows, and a chunk of slow rows
 * still keeps some.
 */
#define WS_BACKFILL_FETCH_ROWS		1000
/*
 * Most bytes of encoded rows a chunk holds: its rows are all in memory
 * until its high watermark.  Sixteen times walship.batch_max_bytes (64 MB
 * at the default), so a chunk is a few batches.
 */
#define WS_BACKFILL_CHUNK_BYTES		((int64) walship_batch_max_bytes * 1024 * 16)
/*
 * Chunks of one backfill in a row that may read no row within
 * walship.backfill_chunk_timeout (a stall of the machine) before it fails.
 */
#define WS_BACKFILL_EMPTY_TIMEOUTS	3
/* Longest wait for commits ending before a chunk is read. */
#define WS_BACKFILL_COMMIT_WAIT_MS	1000

/* One row of a chunk. */
typedef struct WsChunkRow
{
	char	   *tuple;			/* encoded: count and values */
	int			tuple_len;
	char	   *key;			/* the encoded key values, in column order */
	int			key_len;
	uint32		hash;
	int			next;			/* next row in the same bucket, or -1 */
	bool		dropped;		/* the stream changed its key */
} WsChunkRow;

typedef struct WsChunk
{
	MemoryContext context;
	uint64		token;			/* in the watermarks of this chunk */
	int64		job_id;

	/* the rows' relation, as READ records refer to it */
	Oid			relation_oid;
	StringInfoData relation_record;
	const char *schema;			/* RELATION body after the rel_id */
	int			schema_len;
	int			ncolumns;		/* published columns */
	bool	   *key_column;		/* by published column: in the key */

	int			nrows;
	int			rows_allocated;
	WsChunkRow *rows;
	int64		bytes;			/* of the rows' encoded tuples */
	int		   *buckets;		/* first row of each hash bucket, or -1 */
	int			nbuckets;		/* a power of two */
	int64		read_time;		/* us since the Unix epoch */
	int			nkeys;
	char	  **last_key;		/* of the last row read, as text */
	uint64		nread;			/* rows read, before the row filter */
	bool		final;			/* fewer rows than asked: the last chunk */

	TransactionId *xids;		/* running when the rows were read */
	int			nxids;
	TimestampTz waiting_since;

	/*
	 * The ends of the watermarks' WAL records, as decoding reports them;
	 * high_written is invalid while the chunk waits for transactions.
	 */
	XLogRecPtr	low_written;
	XLogRecPtr	high_written;
	XLogRecPtr	low_lsn;		/* the rows' version, once decoding saw L */
	bool		invalid;		/* cannot be matched with the stream */
	XLogRecPtr	resync_version; /* the backfill is part of a resync: its
								 * last chunk ends with a RESYNC record */
} WsChunk;

/* A chunk sent, waiting for its acknowledgement. */
typedef struct WsShippedChunk
{
	int64		job_id;
	uint64		tag;			/* batch tag; 0 when nothing was pending */
	int64		rows;
	int			nkeys;
	char	  **last_key;
	bool		final;
} WsShippedChunk;

/* A relation of the change stream, from its latest RELATION record. */
typedef struct WsStreamRelation
{
	uint64		rel_id;			/* hash key */
	Oid			relation_oid;
	char	   *schema;			/* RELATION body after the rel_id */
	int			schema_len;
} WsStreamRelation;

struct WsBackfill
{
	MemoryContext context;
	MemoryContext scratch;		/* reset after every observed record */
	WsChunk    *chunk;			/* the chunk being read, or NULL */
	List	   *shipped;		/* WsShippedChunk *, oldest first */
	HTAB	   *relations;		/* rel_id -> WsStreamRelation */
	uint64		next_token;
	uint64		released_tag;	/* highest batch tag acknowledged */

	/* the backfill being read and where its next chunk starts */
	int64		cursor_job;
	int			cursor_nkeys;
	char	  **cursor_key;
	bool		cursor_finished;	/* its last chunk is shipped */
	int			empty_timeouts; /* its chunks in a row that read no row in
								 * time */
	TimestampTz next_read;		/* no chunk is read before this */
	char		activity[128];	/* what it waits for, or "" */
	uint64		seen_requests;	/* ws_shared_backfill_requests() seen */
	TimestampTz eager_until;	/* look for new backfills often until */
};

WsBackfill *
ws_backfill_create(MemoryContext parent)
{
	MemoryContext context = AllocSetContextCreate(parent, "walship backfill",
												  ALLOCSET_DEFAULT_SIZES);
	WsBackfill *backfill = MemoryContextAllocZero(context, sizeof(WsBackfill));
	HASHCTL		ctl;

	backfill->context = context;
	backfill->scratch = AllocSetContextCreate(context, "walship backfill scratch",
											  ALLOCSET_DEFAULT_SIZES);
	/*
	 * Watermarks of an earlier run of the worker may still be ahead in the
	 * WAL: tokens start at a random point, and grow (batch tags rely on it).
	 */
	backfill->next_token = (pg_prng_uint64(&pg_global_prng_state) >> 2) + 1;
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(WsStreamRelation);
	ctl.hcxt = context;
	backfill->relations = hash_create("walship stream relations", 64, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return backfill;
}

static void
discard_chunk(WsBackfill *backfill)
{
	backfill->activity[0] = '\0';
	if (backfill->chunk == NULL)
		return;
	MemoryContextDelete(backfill->chunk->context);
	pfree(backfill->chunk);
	backfill->chunk = NULL;
}

void
ws_backfill_reset(WsBackfill *backfill)
{
	HASH_SEQ_STATUS status;
	WsStreamRelation *rel;

	discard_chunk(backfill);
	hash_seq_init(&status, backfill->relations);
	while ((rel = hash_seq_search(&status)) != NULL)
	{
		pfree(rel->schema);
		hash_search(backfill->relations, &rel->rel_id, HASH_REMOVE, NULL);
	}
}

/* ---------------------------------------------------------------------
 * Keys
 * ---------------------------------------------------------------------
 */

/*
 * Appends the encoded values of the key columns of a tuple to key; with
 * key_only the tuple holds exactly the key columns.  Returns false when a
 * key value is not in the tuple (an unchanged TOAST value).
 */
static bool
extract_key(const WsChunk *chunk, const WsTuple *tuple, bool key_only,
			StringInfo key)
{
	WsReader	reader = tuple->values;

	if (!key_only && tuple->nvalues != (uint64) chunk->ncolumns)
		return false;
	for (uint64 i = 0; i < tuple->nvalues; i++)
	{
		Size		start = reader.pos;
		WsValue		value;

		ws_read_value(&reader, &value);
		if (!key_only && !chunk->key_column[i])
			continue;
		if (value.tag == WS_VAL_UNCHANGED)
			return false;
		appendBinaryStringInfo(key, (const char *) reader.data + start,
							   reader.pos - start);
	}
	return true;
}

/* The key of an encoded tuple, as ws_relation_write_tuple wrote it. */
static bool
extract_encoded_key(const WsChunk *chunk, const char *data, int len,
					StringInfo key)
{
	WsTuple		tuple;

	ws_tuple_init(&tuple, data, len);
	return extract_key(chunk, &tuple, false, key);
}

/* Drops the chunk's row with this key, if it has one. */
static void
drop_key(WsChunk *chunk, const StringInfo key)
{
	uint32		hash = hash_bytes((const unsigned char *) key->data, key->len);

	for (int i = chunk->buckets[hash & (chunk->nbuckets - 1)]; i >= 0;
		 i = chunk->rows[i].next)
	{
		WsChunkRow *row = &chunk->rows[i];

		if (row->hash == hash && row->key_len == key->len &&
			memcmp(row->key, key->data, key->len) == 0)
			row->dropped = true;
	}
}

/* ---------------------------------------------------------------------
 * Reading a chunk
 * ---------------------------------------------------------------------
 */

/*
 * walship.backfill_chunk_timeout: the chunk query is cancelled, as by
 * statement_timeout, once it has read rows that long.  The rows taken
 * before stay: processing them holds cancels off, so only a fetch is cut.
 */
static TimeoutId chunk_timeout_id = MAX_TIMEOUTS;	/* not registered yet */
static volatile sig_atomic_t chunk_timed_out = false;

static void
chunk_timeout_handler(void)
{
	chunk_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

static void
arm_chunk_timeout(void)
{
	chunk_timed_out = false;
	if (walship_backfill_chunk_timeout <= 0)
		return;
	if (chunk_timeout_id == MAX_TIMEOUTS)
		chunk_timeout_id = RegisterTimeout(USER_TIMEOUT, chunk_timeout_handler);
	enable_timeout_after(chunk_timeout_id, walship_backfill_chunk_timeout);
}

static void
disarm_chunk_timeout(void)
{
	if (chunk_timeout_id != MAX_TIMEOUTS)
		disable_timeout(chunk_timeout_id, false);
	/* a cancel the timeout asked for and no fetch took up is for nothing else */
	if (chunk_timed_out)
		QueryCancelPending = false;
}

static XLogRecPtr
write_watermark(const char *kind, uint64 token)
{
	char	   *content = psprintf("%s " UINT64_FORMAT, kind, token);
	XLogRecPtr	lsn;

#if PG_VERSION_NUM >= 170000
	lsn = LogLogicalMessage(WS_WATERMARK_PREFIX, content, strlen(content),
							false, true);
#else
	lsn = LogLogicalMessage(WS_WATERMARK_PREFIX, content, strlen(content),
							false);
	XLogFlush(lsn);
#endif
	pfree(content);
	return lsn;
}

/*
 * Waits until every transaction whose commit record is in the WAL before
 * now has marked itself committed, as a checkpoint does.
 */
static void
wait_for_commits_in_flight(void)
{
	int			nvxids;
	VirtualTransactionId *vxids = GetVirtualXIDsDelayingChkpt(&nvxids,
															  DELAY_CHKPT_START);

	while (HaveVirtualXIDsDelayingChkpt(vxids, nvxids, DELAY_CHKPT_START))
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(100L);
	}
	pfree(vxids);
}

/*
 * A snapshot in which every transaction that committed before the low
 * watermark is visible.  Such a transaction is marked committed by now
 * (wait_for_commits_in_flight), but may not have ended yet, and until it
 * ends snapshots do not see it.  Those of a first snapshot that are marked
 * committed are waited for, and a second snapshot taken: a transaction
 * still running in it that committed before the watermark would have been
 * running, and marked, in the first.  NULL if they do not end within
 * WS_BACKFILL_COMMIT_WAIT_MS (a synchronous standby that does not answer):
 * the stream must go on.
 */
static Snapshot
snapshot_after_low_watermark(void)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TransactionId *ending = palloc(sizeof(TransactionId) *
								   (snapshot->xcnt + Max(snapshot->subxcnt, 0) + 1));
	int			nending = 0;
	TimestampTz deadline;

	for (uint32 i = 0; i < snapshot->xcnt; i++)
		if (TransactionIdDidCommit(snapshot->xip[i]))
			ending[nending++] = snapshot->xip[i];
	for (int32 i = 0; i < snapshot->subxcnt; i++)
		if (TransactionIdDidCommit(snapshot->subxip[i]))
			ending[nending++] = snapshot->subxip[i];
	if (nending == 0)
	{
		pfree(ending);
		return snapshot;
	}

	UnregisterSnapshot(snapshot);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   WS_BACKFILL_COMMIT_WAIT_MS);
	for (int i = 0; i < nending; i++)
	{
		while (TransactionIdIsInProgress(ending[i]))
		{
			if (GetCurrentTimestamp() >= deadline)
			{
				pfree(ending);
				return NULL;
			}
			CHECK_FOR_INTERRUPTS();
			pg_usleep(100L);
		}
	}
	pfree(ending);
	return RegisterSnapshot(GetLatestSnapshot());
}

/*
 * The transactions the snapshot does not see that may have written before
 * it was taken: its running ones, and those that got an id since.
 */
static void
note_running_transactions(WsChunk *chunk, Snapshot snapshot)
{
	TransactionId next = ReadNextTransactionId();
	int			capacity = snapshot->xcnt + Max(snapshot->subxcnt, 0) + 16;
	MemoryContext old = MemoryContextSwitchTo(chunk->context);

	chunk->xids = palloc(sizeof(TransactionId) * capacity);
	chunk->nxids = 0;
	for (uint32 i = 0; i < snapshot->xcnt; i++)
		chunk->xids[chunk->nxids++] = snapshot->xip[i];
	for (int32 i = 0; i < snapshot->subxcnt; i++)
		chunk->xids[chunk->nxids++] = snapshot->subxip[i];
	for (TransactionId xid = snapshot->xmax; TransactionIdPrecedes(xid, next);)
	{
		if (chunk->nxids == capacity)
		{
			capacity *= 2;
			chunk->xids = repalloc(chunk->xids, sizeof(TransactionId) * capacity);
		}
		chunk->xids[chunk->nxids++] = xid;
		TransactionIdAdvance(xid);
	}
	MemoryContextSwitchTo(old);
}

/* The columns that order a backfill: its replica identity key. */
static List *
chunk_key_attnums(Relation relation, const WsBackfillJob *job)
{
	Oid			index_oid = InvalidOid;
	Relation	index;
	List	   *attnums = NIL;

	if (relation->rd_rel->relreplident == REPLICA_IDENTITY_DEFAULT ||
		relation->rd_rel->relreplident == REPLICA_IDENTITY_INDEX)
		index_oid = RelationGetReplicaIndex(relation);
	else if (relation->rd_rel->relreplident == REPLICA_IDENTITY_FULL)
#if PG_VERSION_NUM >= 180000
		index_oid = RelationGetPrimaryKeyIndex(relation, false);
#else
		index_oid = RelationGetPrimaryKeyIndex(relation);
#endif
	if (relation->rd_rel->relreplident == REPLICA_IDENTITY_NOTHING)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s.%s\" has REPLICA IDENTITY NOTHING",
						job->schema_name, job->table_name),
				 errdetail("A backfill matches its rows with changes by the key the changes carry, and under REPLICA IDENTITY NOTHING deletes carry none."),
				 errhint("Set REPLICA IDENTITY DEFAULT (with a primary key) or USING INDEX.")));
	if (!OidIsValid(index_oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s.%s\" has no primary key",
						job->schema_name, job->table_name),
				 errdetail("A backfill reads the table in key order, and matches its rows with changes by the key the changes carry."),
				 errhint("Add a primary key, or set REPLICA IDENTITY USING INDEX on a unique index of NOT NULL columns.")));

	index = index_open(index_oid, AccessShareLock);
	for (int i = 0; i < index->rd_index->indnkeyatts; i++)
		attnums = lappend_int(attnums, index->rd_index->indkey.values[i]);
	index_close(index, AccessShareLock);
	return attnums;
}

/*
 * The chunk query: the whole row and its key columns, after the last key
 * ($1, as text), in key order.
 */
static char *
chunk_query(Relation relation, const WsBackfillJob *job, List *key_attnums)
{
	StringInfoData query;
	StringInfoData keys;
	StringInfoData params;
	TupleDesc	desc = RelationGetDescr(relation);
	ListCell   *lc;
	int			n = 0;
	const char *alias = "\"walship backfill row\"";

	initStringInfo(&keys);
	initStringInfo(&params);
	foreach(lc, key_attnums)
	{
		Form_pg_attribute att = TupleDescAttr(desc, lfirst_int(lc) - 1);

		n++;
		appendStringInfo(&keys, "%s%s.%s", n > 1 ? ", " : "", alias,
						 quote_identifier(NameStr(att->attname)));
		appendStringInfo(&params, "%s$1[%d]::%s", n > 1 ? ", " : "", n,
						 format_type_be_qualified(att->atttypid));
	}

	initStringInfo(&query);
	appendStringInfo(&query, "SELECT %s, %s FROM %s%s %s", alias, keys.data,
					 relation->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(relation)),
												RelationGetRelationName(relation)),
					 alias);
	if (job->nkeys > 0)
		appendStringInfo(&query, " WHERE ROW(%s) > ROW(%s)", keys.data,
						 params.data);
	/* on lines of its own: a "--" comment in it ends there */
	if (job->condition != NULL)
		appendStringInfo(&query, " %s (\n%s\n)", job->nkeys > 0 ? "AND" : "WHERE",
						 job->condition);
	appendStringInfo(&query, " ORDER BY %s LIMIT %d", keys.data, job->chunk_size);
	return query.data;
}

static void
build_buckets(WsChunk *chunk)
{
	chunk->nbuckets = 16;
	while (chunk->nbuckets < chunk->nrows * 2)
		chunk->nbuckets *= 2;
	chunk->buckets = MemoryContextAlloc(chunk->context,
										sizeof(int) * chunk->nbuckets);
	memset(chunk->buckets, -1, sizeof(int) * chunk->nbuckets);
	for (int i = 0; i < chunk->nrows; i++)
	{
		WsChunkRow *row = &chunk->rows[i];
		int			bucket = row->hash & (chunk->nbuckets - 1);

		row->next = chunk->buckets[bucket];
		chunk->buckets[bucket] = i;
	}
}

/* Fills in the relation the rows go out as, and which columns are keys. */
static void
describe_rows(WsChunk *chunk, WsRelationEntry *entry, TupleDesc desc,
			  List *key_attnums, const WsBackfillJob *job)
{
	WsRecordMark mark;
	WsReader	reader;
	WsRecord	record;
	int			column = 0;
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(chunk->context);

	chunk->relation_oid = entry->publish_as_relid;
	initStringInfo(&chunk->relation_record);
	mark = ws_record_start(&chunk->relation_record, WS_REC_RELATION);
	appendBinaryStringInfo(&chunk->relation_record, entry->relation_body.data,
						   entry->relation_body.len);
	ws_record_end(&chunk->relation_record, mark);

	/* compared with the stream's RELATION records of the table */
	ws_reader_init(&reader, chunk->relation_record.data,
				   chunk->relation_record.len);
	ws_read_record_header(&reader, &record);
	chunk->schema = record.definition;
	chunk->schema_len = record.definition_len;

	chunk->ncolumns = entry->npublished;
	chunk->key_column = palloc0(sizeof(bool) * Max(entry->npublished, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		if (!entry->attrs[i].published)
			continue;
		if (list_member_int(key_attnums, TupleDescAttr(desc, i)->attnum))
			chunk->key_column[column] = true;
		column++;
	}
	MemoryContextSwitchTo(old);

	foreach(lc, key_attnums)
	{
		int			attnum = lfirst_int(lc);

		if (!entry->attrs[attnum - 1].published)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the publication's column list of table \"%s.%s\" leaves out key column \"%s\"",
							job->schema_name, job->table_name,
							NameStr(TupleDescAttr(desc, attnum - 1)->attname)),
					 errdetail("Backfilled rows are matched with changes by their key.")));
	}
}

/* Keeps one row read by the chunk query, unless the row filter drops it. */
static void
add_row(WsChunk *chunk, const WsBackfillJob *job, Relation relation,
		WsRelationEntry *entry, HeapTuple result, TupleDesc result_desc,
		StringInfo buffer, StringInfo key)
{
	TupleDesc	desc = RelationGetDescr(relation);
	bool		isnull;
	Datum		whole = SPI_getbinval(result, result_desc, 1, &isnull);
	HeapTupleHeader header = DatumGetHeapTupleHeader(whole);
	HeapTupleData tuple;
	HeapTuple	row_tuple = &tuple;
	WsChunkRow *row;

	/* a whole-row value holds every value inline: nothing is TOASTed */
	tuple.t_len = HeapTupleHeaderGetDatumLength(header);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = RelationGetRelid(relation);
	tuple.t_data = header;

	/* the publication's row filter, as for an INSERT */
	if (entry->row_filter != NULL &&
		ws_row_filter_apply(entry->row_filter, WS_ACTION_INSERT, NULL,
							&row_tuple) == WS_ACTION_SKIP)
		return;

	resetStringInfo(buffer);
	ws_relation_write_tuple(buffer, entry, desc, row_tuple, false);
	resetStringInfo(key);
	if (!extract_encoded_key(chunk, buffer->data, buffer->len, key))
		elog(ERROR, "backfilled row of \"%s.%s\" has no key",
			 job->schema_name, job->table_name);

	if (chunk->nrows == chunk->rows_allocated)
	{
		chunk->rows_allocated *= 2;
		chunk->rows = repalloc(chunk->rows,
							   sizeof(WsChunkRow) * chunk->rows_allocated);
	}
	row = &chunk->rows[chunk->nrows++];
	memset(row, 0, sizeof(WsChunkRow));
	row->tuple = MemoryContextAlloc(chunk->context, buffer->len);
	memcpy(row->tuple, buffer->data, buffer->len);
	row->tuple_len = buffer->len;
	row->key = MemoryContextAlloc(chunk->context, key->len);
	memcpy(row->key, key->data, key->len);
	row->key_len = key->len;
	row->hash = hash_bytes((const unsigned char *) key->data, key->len);
	chunk->bytes += buffer->len;
}

static void finish_rows(WsChunk *chunk, const WsBackfillJob *job, bool ended);

/*
 * Reads the chunk's rows; called inside a transaction, under SPI.  The
 * rows are fetched through a cursor, and the chunk ends early once its
 * encoded rows reach WS_BACKFILL_CHUNK_BYTES, so that a chunk of large rows
 * does not take the worker's memory with it, or once the query has run for
 * walship.backfill_chunk_timeout, so that the stream, which waits
 * meanwhile, keeps its freshness.
 */
static void
read_rows(WsChunk *chunk, const WsBackfillJob *job, Relation relation,
		  WsRelationEntry *entry, List *key_attnums, SPIPlanPtr plan,
		  Snapshot snapshot)
{
	Datum		values[1];
	char		nulls[1] = {' '};
	StringInfoData buffer;
	StringInfoData key;
	int			nkeys = list_length(key_attnums);
	int64		max_bytes = WS_BACKFILL_CHUNK_BYTES;
	long		fetch = 1;
	bool		ended = false;
	Portal		portal;

	if (job->nkeys > 0)
	{
		Datum	   *elems = palloc(sizeof(Datum) * job->nkeys);

		for (int i = 0; i < job->nkeys; i++)
			elems[i] = CStringGetTextDatum(job->last_key[i]);
		values[0] = PointerGetDatum(construct_array(elems, job->nkeys, TEXTOID,
													-1, false, TYPALIGN_INT));
	}
	else
		nulls[0] = 'n';

	chunk->read_time = GetCurrentTimestamp() + WS_UNIX_TO_PG_EPOCH_USECS;
	chunk->rows_allocated = Min(job->chunk_size, WS_BACKFILL_FETCH_ROWS);
	chunk->rows = MemoryContextAlloc(chunk->context,
									 sizeof(WsChunkRow) * chunk->rows_allocated);
	initStringInfo(&buffer);
	initStringInfo(&key);

	/* a read-only cursor reads under the active snapshot */
	arm_chunk_timeout();
	PushActiveSnapshot(snapshot);
	portal = SPI_cursor_open(NULL, plan, values, nulls, true);
	PopActiveSnapshot();

	/*
	 * Cancels (the timeout's) are held off but while fetching: the rows
	 * taken, and the last key, are always whole.  A fetch cancelled raises
	 * an error, and start_chunk() keeps the rows of the fetches before.
	 */
	HOLD_CANCEL_INTERRUPTS();
	while (!ended && chunk->bytes < max_bytes && !chunk_timed_out)
	{
		uint64		nfetched;
		uint64		i;

		RESUME_CANCEL_INTERRUPTS();
		SPI_cursor_fetch(portal, true, fetch);
		HOLD_CANCEL_INTERRUPTS();
		nfetched = SPI_processed;
		for (i = 0; i < nfetched && chunk->bytes < max_bytes; i++)
		{
			HeapTuple	result = SPI_tuptable->vals[i];

			add_row(chunk, job, relation, entry, result, SPI_tuptable->tupdesc,
					&buffer, &key);

			/* the next chunk starts after the last row read */
			if (chunk->last_key == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(chunk->context);

				chunk->nkeys = nkeys;
				chunk->last_key = palloc0(sizeof(char *) * Max(nkeys, 1));
				MemoryContextSwitchTo(old);
			}
			for (int k = 0; k < nkeys; k++)
			{
				if (chunk->last_key[k])
					pfree(chunk->last_key[k]);
				chunk->last_key[k] = MemoryContextStrdup(chunk->context,
														 SPI_getvalue(result, SPI_tuptable->tupdesc, k + 2));
			}
			chunk->nread++;
		}
		/* the query is out of rows only if every row it gave was kept */
		ended = nfetched < (uint64) fetch && i == nfetched;
		SPI_freetuptable(SPI_tuptable);
		fetch = Min(fetch * 2, WS_BACKFILL_FETCH_ROWS);
	}
	RESUME_CANCEL_INTERRUPTS();
	disarm_chunk_timeout();
	SPI_cursor_close(portal);
	pfree(buffer.data);
	pfree(key.data);
	finish_rows(chunk, job, ended);
}

/*
 * Ends the reading of a chunk's rows: the query ended (ran out of rows) or
 * was cut short (by the chunk's bytes or time).
 */
static void
finish_rows(WsChunk *chunk, const WsBackfillJob *job, bool ended)
{
	/* the last chunk: the query ran out of rows, not of memory or time */
	chunk->final = ended && chunk->nread < (uint64) job->chunk_size;
	build_buckets(chunk);

	/* an empty chunk keeps the last key where it was */
	if (chunk->nread == 0)
	{
		MemoryContext old = MemoryContextSwitchTo(chunk->context);

		chunk->nkeys = job->nkeys;
		chunk->last_key = palloc(sizeof(char *) * Max(job->nkeys, 1));
		for (int k = 0; k < job->nkeys; k++)
			chunk->last_key[k] = pstrdup(job->last_key[k]);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Writes the low watermark and reads the next chunk of job.  Returns false,
 * with the chunk discarded, when no usable snapshot could be had.  Errors
 * (a dropped table, a bad condition, missing privileges) propagate.
 */
static bool
read_chunk(WsBackfill *backfill, const WsBackfillJob *job)
{
	WsChunk    *chunk = backfill->chunk;
	Relation	relation;
	WsRelationEntry *entry;
	List	   *key_attnums;
	List	   *publications = NIL;
	char	   *names = pstrdup(walship_publication);
	Oid			save_userid;
	int			save_sec_context;
	SPIPlanPtr	plan;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Snapshot	snapshot;
	MemoryContext entry_context;

	relation = try_table_open(job->relid, AccessShareLock);
	if (relation == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"%s.%s\" was dropped",
						job->schema_name, job->table_name)));
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(job->role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that queued the backfill of \"%s.%s\" was dropped",
						job->schema_name, job->table_name)));

	(void) SplitIdentifierString(names, ',', &publications);
	entry_context = AllocSetContextCreate(chunk->context, "walship backfill relation",
										  ALLOCSET_SMALL_SIZES);
	entry = ws_relation_entry_build(relation, publications,
									WS_BACKFILL_REL_ID_BASE + job->id,
									entry_context);
	if (!entry->publish_insert || entry->publish_as_relid != job->relid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s.%s\" is no longer published as itself by walship.publication \"%s\"",
						job->schema_name, job->table_name, walship_publication)));

	if (job->condition != NULL)
		ws_check_backfill_condition(job->condition);
	key_attnums = chunk_key_attnums(relation, job);
	describe_rows(chunk, entry, RelationGetDescr(relation), key_attnums, job);

	/* read as the role that queued the backfill, all rows or an error */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(job->role, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("row_security", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	/* the condition means what it meant when walship.backfill() checked it */
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	/*
	 * Rows come out of the key's index as they are read, not after a sort
	 * of the whole range: a chunk cut short by walship.backfill_chunk_timeout
	 * keeps the rows read so far.
	 */
	(void) set_config_option("enable_sort", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	plan = SPI_prepare(chunk_query(relation, job, key_attnums), 1, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the chunk query of \"%s.%s\": %s",
			 job->schema_name, job->table_name,
			 SPI_result_code_string(SPI_result));

	chunk->token = backfill->next_token++;
	chunk->low_written = write_watermark("low", chunk->token);
	wait_for_commits_in_flight();
	snapshot = snapshot_after_low_watermark();
	if (snapshot == NULL)
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
		table_close(relation, AccessShareLock);
		return false;
	}
	note_running_transactions(chunk, snapshot);
	read_rows(chunk, job, relation, entry, key_attnums, plan, snapshot);
	UnregisterSnapshot(snapshot);

	SetUserIdAndSecContext(save_userid, save_sec_context);
	table_close(relation, AccessShareLock);
	MemoryContextDelete(entry_context);
	return true;
}

static void
free_shipped(WsShippedChunk *shipped)
{
	for (int i = 0; i < shipped->nkeys; i++)
		pfree(shipped->last_key[i]);
	pfree(shipped->last_key);
	pfree(shipped);
}

/* Sets the key the next chunk of the cursor's backfill starts after. */
static void
move_cursor(WsBackfill *backfill, int nkeys, char **last_key)
{
	MemoryContext old = MemoryContextSwitchTo(backfill->context);

	if (backfill->cursor_key)
	{
		for (int i = 0; i < backfill->cursor_nkeys; i++)
			pfree(backfill->cursor_key[i]);
		pfree(backfill->cursor_key);
	}
	backfill->cursor_nkeys = nkeys;
	backfill->cursor_key = palloc(sizeof(char *) * Max(nkeys, 1));
	for (int i = 0; i < nkeys; i++)
		backfill->cursor_key[i] = pstrdup(last_key[i]);
	MemoryContextSwitchTo(old);
}

/*
 * Queues a chunk for its acknowledgement, which comes with the batch tag,
 * and moves the cursor past it.
 */
static void
ship_chunk(WsBackfill *backfill, WsChunk *chunk, int64 rows, uint64 tag)
{
	MemoryContext old = MemoryContextSwitchTo(backfill->context);
	WsShippedChunk *shipped = palloc0(sizeof(WsShippedChunk));

	shipped->job_id = chunk->job_id;
	shipped->tag = tag;
	shipped->rows = rows;
	shipped->final = chunk->final;
	shipped->nkeys = chunk->nkeys;
	shipped->last_key = palloc(sizeof(char *) * Max(chunk->nkeys, 1));
	for (int i = 0; i < chunk->nkeys; i++)
		shipped->last_key[i] = pstrdup(chunk->last_key[i]);
	backfill->shipped = lappend(backfill->shipped, shipped);

	MemoryContextSwitchTo(old);

	/* the next chunk starts after this one */
	move_cursor(backfill, shipped->nkeys, shipped->last_key);
	backfill->cursor_finished = chunk->final;
}

static void
set_cursor(WsBackfill *backfill, const WsBackfillJob *job)
{
	backfill->cursor_job = job->id;
	backfill->cursor_finished = false;
	backfill->empty_timeouts = 0;
	move_cursor(backfill, job->nkeys, job->last_key);
}

/*
 * The RESYNC record that ends the last chunk of a resync's backfill: every
 * row of the table was sent again at a version of at least
 * chunk->resync_version, so rows a receiver holds with a lower version
 * that were not sent again are gone.  It counts as shipped with the chunk
 * it ends: the backfill is done once its batch is acknowledged.
 */
static void
emit_resync(WsChunk *chunk, XLogRecPtr position,
			const WsBackfillOutput *output)
{
	StringInfoData record;
	WsRecordMark mark;

	initStringInfo(&record);
	mark = ws_record_start(&record, WS_REC_RESYNC);
	ws_put_uvarint(&record, WS_BACKFILL_REL_ID_BASE + chunk->job_id);
	ws_put_uvarint(&record, 0);
	ws_put_uint64_le(&record, position);
	ws_put_uint64_le(&record, chunk->resync_version);
	ws_record_end(&record, mark);
	output->emit(output->arg, record.data, record.len);
	pfree(record.data);
}

/* Starts the next chunk of the oldest active backfill, if any. */
static void
start_chunk(WsBackfill *backfill, const WsBackfillOutput *output)
{
	MemoryContext job_context = AllocSetContextCreate(CurrentMemoryContext,
													  "walship backfill job",
													  ALLOCSET_SMALL_SIZES);
	WsBackfillJob job;
	WsChunk    *chunk;
	volatile bool read = false;
	ErrorData  *volatile failure = NULL;
	TimestampTz started = GetCurrentTimestamp();

	chunk_timed_out = false;

	/* none queued: look again in a second, or soon after a request */
	backfill->next_read = TimestampTzPlusMilliseconds(started,
													  started < backfill->eager_until ?
													  WS_BACKFILL_EAGER_POLL_MS : 1000);
	if (!ws_progress_next_backfill(&job, job_context))
	{
		MemoryContextDelete(job_context);
		return;
	}

	/*
	 * A new backfill, or one taken up again after a restart or a cancel,
	 * starts from the catalog (a backfill just starting may reuse the id of
	 * one that ran before the extension was created again).
	 */
	if (job.id != backfill->cursor_job || job.starting)
		set_cursor(backfill, &job);
	else if (backfill->cursor_finished)
	{
		/* its last chunk waits for its acknowledgement */
		MemoryContextDelete(job_context);
		return;
	}
	job.nkeys = backfill->cursor_nkeys;
	job.last_key = backfill->cursor_key;

	chunk = MemoryContextAllocZero(backfill->context, sizeof(WsChunk));
	chunk->context = AllocSetContextCreate(backfill->context,
										   "walship backfill chunk",
										   ALLOCSET_DEFAULT_SIZES);
	chunk->job_id = job.id;
	chunk->resync_version = job.resync_version;
	backfill->chunk = chunk;

	pgstat_report_activity(STATE_RUNNING, "walship: reading a backfill chunk");
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		/*
		 * The catalog caches hold what decoding built under historic
		 * snapshots: the table as it was at the decoding position, maybe
		 * without a column added since, or not yet published.  The chunk is
		 * read, described and checked under the current catalogs.
		 */
		ws_relation_cache_flush_catalog_caches();
		SPI_connect();
		read = read_chunk(backfill, &job);
		SPI_finish();
		CommitTransactionCommand();
		/* and decoding must not find what the read built */
		ws_relation_cache_flush_catalog_caches();
	}
	PG_CATCH();
	{
		MemoryContext old = MemoryContextSwitchTo(job_context);
		ErrorData  *edata = CopyErrorData();

		MemoryContextSwitchTo(old);
		FlushErrorState();
		AbortCurrentTransaction();
		ws_relation_cache_flush_catalog_caches();
		disarm_chunk_timeout();
		if (chunk_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			chunk->nread > 0)
		{
			/* cut short by walship.backfill_chunk_timeout: keep what it read */
			finish_rows(chunk, &job, false);
			read = true;
		}
		else if (chunk_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
				 ++backfill->empty_timeouts < WS_BACKFILL_EMPTY_TIMEOUTS)
		{
			/* no row in time: read it again soon, a stall may have passed */
			read = false;
		}
		else
		{
			failure = edata;
			if (chunk_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			{
				/* its first row alone takes longer */
				MemoryContext current = MemoryContextSwitchTo(job_context);

				edata->message =
					psprintf("reading table \"%s.%s\" found no row within walship.backfill_chunk_timeout (%d ms)",
							 job.schema_name, job.table_name,
							 walship_backfill_chunk_timeout);
				edata->detail =
					psprintf("A chunk is read in the worker's main loop, which neither decodes nor ships meanwhile; a chunk cut short ships the rows read so far, and %d chunks in a row had read none after %d ms.",
							 WS_BACKFILL_EMPTY_TIMEOUTS,
							 walship_backfill_chunk_timeout);
				edata->hint = pstrdup("Make the backfill's condition cheaper, or raise walship.backfill_chunk_timeout.");
				MemoryContextSwitchTo(current);
			}
		}
	}
	PG_END_TRY();

	if (failure != NULL)
	{
		ErrorData  *edata = failure;

		discard_chunk(backfill);
		ereport(WARNING,
				(errmsg("walship backfill %lld of table \"%s.%s\" failed: %s",
						(long long) job.id, job.schema_name, job.table_name,
						edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0));
		ws_progress_backfill_failed(job.id, edata->message);
		backfill->cursor_job = 0;
		backfill->next_read = 0;
		MemoryContextDelete(job_context);
		pgstat_report_activity(STATE_IDLE, NULL);
		return;
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	if (read && chunk->nread > 0)
		backfill->empty_timeouts = 0;

	if (!read)
	{
		discard_chunk(backfill);
		backfill->next_read = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  WS_BACKFILL_RETRY_MS);
	}
	else if (chunk->nrows == 0 && chunk->final)
	{
		/* nothing left: done once the chunks before are acknowledged */
		if (!XLogRecPtrIsInvalid(chunk->resync_version))
		{
			output->emit(output->arg, chunk->relation_record.data,
						 chunk->relation_record.len);
			emit_resync(chunk, XLogRecPtrIsInvalid(chunk->low_written) ?
						chunk->resync_version : chunk->low_written - 1,
						output);
		}
		ship_chunk(backfill, chunk, 0, output->tag(output->arg, chunk->token));
		discard_chunk(backfill);
		backfill->next_read = 0;
	}
	else
	{
		chunk->waiting_since = GetCurrentTimestamp();
		backfill->next_read = 0;

		/* the rate limit counts the rows read */
		if (walship_backfill_max_rate > 0)
			backfill->next_read =
				started + (TimestampTz) ((double) chunk->nrows * USECS_PER_SEC /
										 walship_backfill_max_rate);
	}
	MemoryContextDelete(job_context);
}

void
ws_backfill_step(WsBackfill *backfill, bool may_read,
				 const WsBackfillOutput *output)
{
	WsChunk    *chunk = backfill->chunk;

	if (chunk == NULL)
	{
		TimestampTz now = GetCurrentTimestamp();
		uint64		requests;

		requests = ws_shared_backfill_requests();
		if (requests != backfill->seen_requests)
		{
			/* walship.backfill() ran; its transaction commits any moment */
			backfill->seen_requests = requests;
			backfill->eager_until = TimestampTzPlusMilliseconds(now, 2000);
			backfill->next_read = 0;
		}
		if (may_read && now >= backfill->next_read)
			start_chunk(backfill, output);
		return;
	}
	if (!XLogRecPtrIsInvalid(chunk->high_written))
		return;					/* decoding has H to reach */

	/* wait for the transactions that were running to end */
	while (chunk->nxids > 0)
	{
		TransactionId xid = chunk->xids[chunk->nxids - 1];

		if (TransactionIdIsInProgress(xid))
		{
			if (TimestampDifferenceExceeds(chunk->waiting_since,
										   GetCurrentTimestamp(), 1000))
				snprintf(backfill->activity, sizeof(backfill->activity),
						 "walship: shipping changes; backfill %lld waits for transaction %u to end",
						 (long long) chunk->job_id, xid);
			return;
		}
		chunk->nxids--;
	}
	backfill->activity[0] = '\0';
	chunk->high_written = write_watermark("high", chunk->token);
}

/* What the worker should show in pg_stat_activity, or NULL. */
const char *
ws_backfill_activity(const WsBackfill *backfill)
{
	return backfill->activity[0] != '\0' ? backfill->activity : NULL;
}

/* ---------------------------------------------------------------------
 * Watching the stream
 * ---------------------------------------------------------------------
 */

static WsStreamRelation *
stream_relation(WsBackfill *backfill, uint64 rel_id)
{
	return hash_search(backfill->relations, &rel_id, HASH_FIND, NULL);
}

static bool
same_schema(const WsChunk *chunk, const WsStreamRelation *rel)
{
	return rel->schema_len == chunk->schema_len &&
		memcmp(rel->schema, chunk->schema, chunk->schema_len) == 0;
}

static void
note_relation(WsBackfill *backfill, const WsRecord *record)
{
	WsStreamRelation *rel;
	bool		found;

	rel = hash_search(backfill->relations, &record->relation.rel_id,
					  HASH_ENTER, &found);
	if (found)
		pfree(rel->schema);
	rel->relation_oid = record->relation.relation_oid;
	rel->schema_len = record->definition_len;
	rel->schema = MemoryContextAlloc(backfill->context, Max(rel->schema_len, 1));
	memcpy(rel->schema, record->definition, rel->schema_len);
}

/*
 * Drops the rows whose keys a change between the watermarks touched.  A
 * change whose key cannot be told makes the chunk unusable.
 */
static void
track_change(WsChunk *chunk, const WsStreamRelation *rel,
			 const WsRecord *record)
{
	StringInfoData key;
	bool		known = false;

	/* rows and changes of different schemas cannot be matched */
	if (!same_schema(chunk, rel))
	{
		chunk->invalid = true;
		return;
	}

	initStringInfo(&key);
	if (record->kind != WS_REC_INSERT && record->old_kind != WS_OLD_NONE)
	{
		known = extract_key(chunk, &record->old_tuple,
							record->old_kind == WS_OLD_KEY, &key);
		if (known)
			drop_key(chunk, &key);
	}
	if (record->kind != WS_REC_DELETE)
	{
		resetStringInfo(&key);
		if (extract_key(chunk, &record->new_tuple, false, &key))
		{
			drop_key(chunk, &key);
			known = true;
		}
	}
	pfree(key.data);
	if (!known)
		chunk->invalid = true;
}

/* Sends the rows of a chunk that the stream did not change, at H. */
static void
emit_rows(WsBackfill *backfill, WsChunk *chunk, XLogRecPtr high_lsn,
		  const WsBackfillOutput *output)
{
	StringInfoData record;
	int64		sent = 0;

	output->emit(output->arg, chunk->relation_record.data,
				 chunk->relation_record.len);
	initStringInfo(&record);
	for (int i = 0; i < chunk->nrows; i++)
	{
		WsChunkRow *row = &chunk->rows[i];
		WsRecordMark mark;

		if (row->dropped)
			continue;
		resetStringInfo(&record);
		mark = ws_record_start(&record, WS_REC_READ);
		ws_put_uvarint(&record, WS_BACKFILL_REL_ID_BASE + chunk->job_id);
		ws_put_uvarint(&record, i + 1);
		ws_put_uint64_le(&record, high_lsn);
		ws_put_svarint(&record, chunk->read_time);
		appendBinaryStringInfo(&record, row->tuple, row->tuple_len);
		ws_put_uvarint(&record, chunk->low_lsn);
		ws_record_end(&record, mark);
		output->emit(output->arg, record.data, record.len);
		sent++;
	}
	pfree(record.data);
	if (chunk->final && !XLogRecPtrIsInvalid(chunk->resync_version))
		emit_resync(chunk, high_lsn, output);
	ship_chunk(backfill, chunk, sent, output->tag(output->arg, chunk->token));
	elog(DEBUG1, "walship backfill %lld: chunk of %d rows at %X/%X, %lld sent",
		 (long long) chunk->job_id, chunk->nrows, LSN_FORMAT_ARGS(high_lsn),
		 (long long) sent);
}

/* A watermark: opens the chunk's window, or closes it and sends the rows. */
static void
watermark(WsBackfill *backfill, const WsRecord *record,
		  const WsBackfillOutput *output)
{
	WsChunk    *chunk = backfill->chunk;
	char	   *content = pnstrdup(record->content, record->content_len);
	char		kind[8];
	uint64		token;

	/*
	 * Only the chunk's own watermarks count, known by their token and their
	 * WAL position: watermarks of chunks given up, or of an earlier run of
	 * the worker, may come first.
	 */
	if (sscanf(content, "%7s " UINT64_FORMAT, kind, &token) != 2 ||
		chunk == NULL || token != chunk->token)
		return;

	/*
	 * Decoding reports a message at the end of its WAL record, which is
	 * where the next record may start: one less lies between the positions
	 * of the records before the watermark and after it.  That is the rows'
	 * version (low) and position (high), never a change's or a commit's.
	 */
	if (strcmp(kind, "low") == 0 && record->message_lsn == chunk->low_written)
	{
		chunk->low_lsn = record->message_lsn - 1;
	}
	else if (strcmp(kind, "high") == 0 &&
			 !XLogRecPtrIsInvalid(chunk->high_written) &&
			 record->message_lsn == chunk->high_written)
	{
		if (!XLogRecPtrIsInvalid(chunk->low_lsn) && !chunk->invalid)
			emit_rows(backfill, chunk, record->message_lsn - 1, output);
		else
			elog(DEBUG1, "walship backfill %lld: reading the chunk again",
				 (long long) chunk->job_id);
		discard_chunk(backfill);
	}
}

bool
ws_backfill_observe(WsBackfill *backfill, const char *data, int len,
					const WsBackfillOutput *output)
{
	WsChunk    *chunk = backfill->chunk;
	MemoryContext old;
	WsReader	reader;
	WsRecord	record;
	bool		consumed = false;
	bool		in_window = chunk != NULL && !XLogRecPtrIsInvalid(chunk->low_lsn) &&
		!chunk->invalid;

	/*
	 * Most records are changes while no window is open, BEGIN or COMMIT:
	 * their first byte, the kind, says there is nothing to observe.
	 */
	if (len > 0 && (data[0] == WS_REC_BEGIN || data[0] == WS_REC_COMMIT ||
					(!in_window && (data[0] == WS_REC_INSERT ||
									data[0] == WS_REC_UPDATE ||
									data[0] == WS_REC_DELETE ||
									data[0] == WS_REC_TRUNCATE))))
		return false;

	old = MemoryContextSwitchTo(backfill->scratch);
	ws_reader_init(&reader, data, len);
	ws_read_record_header(&reader, &record);

	switch (record.kind)
	{
		case WS_REC_RELATION:
			note_relation(backfill, &record);
			break;
		case WS_REC_MESSAGE:
			if (!(record.message_flags & WS_MESSAGE_TRANSACTIONAL))
			{
				ws_read_record_rest(&record);
				if (strcmp(record.prefix, WS_WATERMARK_PREFIX) == 0)
				{
					watermark(backfill, &record, output);
					consumed = true;
				}
			}
			break;
		case WS_REC_TRUNCATE:
			if (!in_window)
				break;
			for (uint64 i = 0; i < record.nrelations; i++)
			{
				WsStreamRelation *rel = stream_relation(backfill, record.rel_ids[i]);

				if (rel && rel->relation_oid == chunk->relation_oid)
					for (int r = 0; r < chunk->nrows; r++)
						chunk->rows[r].dropped = true;
			}
			break;
		case WS_REC_INSERT:
		case WS_REC_UPDATE:
		case WS_REC_DELETE:
			/* changes matter only while a window is open */
			if (in_window)
			{
				WsStreamRelation *rel = stream_relation(backfill, record.rel_id);

				if (rel && rel->relation_oid == chunk->relation_oid)
				{
					ws_read_record_rest(&record);
					track_change(chunk, rel, &record);
				}
			}
			break;
		default:
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(backfill->scratch);
	return consumed;
}

/*
 * Records acknowledged chunks in walship.backfills, in order, one update
 * per backfill.  Tags are chunk tokens, which grow, and batches are
 * released in order: every chunk tagged up to the highest released tag is
 * acknowledged.
 */
void
ws_backfill_acknowledged(WsBackfill *backfill, List *tags)
{
	ListCell   *lc;

	foreach(lc, tags)
		backfill->released_tag = Max(backfill->released_tag, *(uint64 *) lfirst(lc));

	while (backfill->shipped != NIL)
	{
		WsShippedChunk *first = linitial(backfill->shipped);
		List	   *acknowledged = NIL;
		WsShippedChunk *last;
		int64		rows = 0;
		bool		done = false;

		/* the acknowledged chunks of one backfill */
		while (backfill->shipped != NIL)
		{
			WsShippedChunk *next = linitial(backfill->shipped);

			if (next->job_id != first->job_id ||
				(next->tag != 0 && next->tag > backfill->released_tag))
				break;
			rows += next->rows;
			done |= next->final;
			acknowledged = lappend(acknowledged, next);
			backfill->shipped = list_delete_first(backfill->shipped);
		}
		if (acknowledged == NIL)
			break;

		last = llast(acknowledged);
		ws_progress_backfill_acknowledged(first->job_id,
										  list_length(acknowledged), rows,
										  last->nkeys, last->last_key, done);
		if (done && backfill->cursor_job == first->job_id)
		{
			backfill->cursor_job = 0;
			backfill->next_read = 0;
		}
		foreach(lc, acknowledged)
			free_shipped(lfirst(lc));
		list_free(acknowledged);
	}
}
