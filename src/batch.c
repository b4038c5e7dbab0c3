/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Assembly of the output plugin's records into batches for shipping.
 *
 * Records arrive in WAL order from the worker's decoding context.  They are
 * appended to the open batch, which is sealed when adding a change would
 * exceed walship.batch_max_changes or walship.batch_max_bytes, or when it
 * is older than walship.batch_max_delay.  A batch may end inside a
 * transaction; a COMMIT always stays in the batch of the transaction's
 * last change.
 *
 * Every batch is a self-contained walship record stream: it repeats the
 * RELATION records of the relations it refers to and, when it starts
 * inside a transaction, that transaction's BEGIN.  A receiver can decode
 * any batch on its own, in whatever order concurrent requests arrive.
 *
 * A batch's confirm_lsn is the end of the last COMMIT it holds: once it and
 * every batch before it are acknowledged, the slot may be confirmed there.
 *
 * IDENTIFICATION
 *	  src/batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "format.h"
#include "rowbinary.h"

typedef struct WsRelationRecord
{
	uint64		rel_id;			/* hash key */
	char	   *data;
	int			len;
} WsRelationRecord;

/*
 * The fields of a record the batcher needs, from format_decode.c's header
 * reader: nothing is decoded past them (no tuple, no column list).
 */
typedef struct WsRecordHeader
{
	char		kind;
	uint64		rel_id;			/* INSERT, UPDATE, DELETE, READ, RESYNC,
								 * RELATION */
	uint64		ordinal;		/* changes and messages */
	XLogRecPtr	commit_lsn;		/* BEGIN */
	int64		commit_time;	/* BEGIN, us since 1970 */
	XLogRecPtr	end_lsn;		/* COMMIT */
	XLogRecPtr	position;		/* READ, RESYNC */
	bool		transactional;	/* MESSAGE */
	List	   *truncated;		/* TRUNCATE: rel_ids, as uint64 * */
} WsRecordHeader;

static void
read_header(WsReader *reader, WsRecordHeader *header)
{
	WsRecord	record;

	ws_read_record_header(reader, &record);

	header->kind = record.kind;
	header->rel_id = record.kind == WS_REC_RELATION ?
		record.relation.rel_id : record.rel_id;
	header->ordinal = record.ordinal;
	header->commit_lsn = record.commit_lsn;
	header->commit_time = record.commit_time;
	header->end_lsn = record.end_lsn;
	header->position = record.read_position;
	header->transactional = (record.message_flags & WS_MESSAGE_TRANSACTIONAL) != 0;
	header->truncated = NIL;
	for (uint64 i = 0; i < record.nrelations; i++)
	{
		uint64	   *id = palloc(sizeof(uint64));

		*id = record.rel_ids[i];
		header->truncated = lappend(header->truncated, id);
	}
	if (record.rel_ids)
		pfree(record.rel_ids);
}

WsBatcher *
ws_batcher_create(MemoryContext parent)
{
	MemoryContext context = AllocSetContextCreate(parent, "walship batches",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(context);
	WsBatcher  *batcher = palloc0(sizeof(WsBatcher));
	HASHCTL		ctl;

	batcher->context = context;
	batcher->next_seq = 1;
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(WsRelationRecord);
	ctl.hcxt = context;
	batcher->relations = hash_create("walship batch relations", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	initStringInfo(&batcher->begin);
	MemoryContextSwitchTo(old);
	return batcher;
}

static bool
rel_id_included(List *ids, uint64 rel_id)
{
	ListCell   *lc;

	foreach(lc, ids)
		if (*(uint64 *) lfirst(lc) == rel_id)
			return true;
	return false;
}

static void
mark_included(WsBatcher *batcher, uint64 rel_id)
{
	uint64	   *id = palloc(sizeof(uint64));

	*id = rel_id;
	batcher->open_rel_ids = lappend(batcher->open_rel_ids, id);
}

/* Appends the stored RELATION record unless the open batch has it. */
static void
include_relation(WsBatcher *batcher, uint64 rel_id)
{
	WsRelationRecord *rel;

	if (rel_id_included(batcher->open_rel_ids, rel_id))
		return;
	rel = hash_search(batcher->relations, &rel_id, HASH_FIND, NULL);
	if (rel == NULL)
		elog(ERROR, "walship change refers to relation id " UINT64_FORMAT " before its RELATION record",
			 rel_id);
	appendBinaryStringInfo(&batcher->open->records, rel->data, rel->len);
	mark_included(batcher, rel_id);
}

static void
seal_open(WsBatcher *batcher)
{
	WsBatch    *batch = batcher->open;

	if (batch == NULL)
		return;
	if (batch->nchanges > 0)
		snprintf(batch->last_change, WS_CHANGE_ID_LEN, "%X/%X:" UINT64_FORMAT,
				 LSN_FORMAT_ARGS(batch->last_change_lsn),
				 batch->last_change_ordinal);
	batch->status = WS_BATCH_READY;
	batcher->sealed_len = batch->records.len;
	batcher->open = NULL;
	list_free_deep(batcher->open_rel_ids);
	batcher->open_rel_ids = NIL;
}

/* The open batch, created when needed with the BEGIN it must repeat. */
static WsBatch *
open_batch(WsBatcher *batcher)
{
	WsBatch    *batch;

	if (batcher->open)
		return batcher->open;

	batch = palloc0(sizeof(WsBatch));
	batch->seq = batcher->next_seq++;
	batch->status = WS_BATCH_OPEN;
	initStringInfo(&batch->records);
	/* not grown by doubling, copying and faulting in pages all the way */
	if (batcher->sealed_len > batch->records.maxlen)
		enlargeStringInfo(&batch->records, batcher->sealed_len);
	batch->opened_at = GetCurrentTimestamp();
	if (batcher->begin.len > 0)
	{
		appendBinaryStringInfo(&batch->records, batcher->begin.data,
							   batcher->begin.len);
		batch->oldest_commit_time = batcher->commit_time;
	}
	batcher->queue = lappend(batcher->queue, batch);
	batcher->open = batch;
	return batch;
}

/*
 * Counts a change and remembers its id: the commit LSN of its transaction,
 * or the position of a backfill chunk, and its ordinal there.  The last
 * change's id is written out only when the batch is sealed: formatting it
 * for every change took 7% of the decoding worker's time.
 */
static void
note_change(WsBatch *batch, XLogRecPtr lsn, uint64 ordinal)
{
	if (batch->nchanges == 0)
		snprintf(batch->first_change, WS_CHANGE_ID_LEN, "%X/%X:" UINT64_FORMAT,
				 LSN_FORMAT_ARGS(lsn), ordinal);
	batch->last_change_lsn = lsn;
	batch->last_change_ordinal = ordinal;
	batch->nchanges++;
}

/* Seals the open batch if one more change would go over the limits. */
static void
make_room(WsBatcher *batcher, const WsBatchLimits *limits, int len)
{
	WsBatch    *batch = batcher->open;

	if (batch == NULL || batch->nchanges == 0)
		return;
	if (batch->nchanges >= limits->max_changes ||
		batch->records.len + len > limits->max_bytes)
		seal_open(batcher);
}

/*
 * Adds one record from the output plugin.  The record is copied.
 */
void
ws_batcher_add(WsBatcher *batcher, const char *record, int len,
			   const WsBatchLimits *limits)
{
	MemoryContext old = MemoryContextSwitchTo(batcher->context);
	WsReader	reader;
	WsRecordHeader header;
	WsBatch    *batch;

	ws_reader_init(&reader, record, len);
	read_header(&reader, &header);

	switch (header.kind)
	{
		case WS_REC_RELATION:
			{
				bool		found;
				WsRelationRecord *rel = hash_search(batcher->relations,
													&header.rel_id,
													HASH_ENTER, &found);

				if (found)
					pfree(rel->data);
				rel->data = palloc(len);
				memcpy(rel->data, record, len);
				rel->len = len;

				/* a changed schema must be repeated in the open batch */
				if (batcher->open)
				{
					ListCell   *lc;

					foreach(lc, batcher->open_rel_ids)
					{
						if (*(uint64 *) lfirst(lc) == header.rel_id)
						{
							batcher->open_rel_ids =
								foreach_delete_current(batcher->open_rel_ids, lc);
							break;
						}
					}
				}
				/* written before the change that needs it, in its batch */
			}
			break;

		case WS_REC_BEGIN:
			resetStringInfo(&batcher->begin);
			appendBinaryStringInfo(&batcher->begin, record, len);
			batcher->commit_lsn = header.commit_lsn;
			batcher->commit_time = header.commit_time - WS_UNIX_TO_PG_EPOCH_USECS;
			{
				bool		had_open = batcher->open != NULL;

				/* a new batch starts with the BEGIN just stored */
				batch = open_batch(batcher);
				if (had_open)
					appendBinaryStringInfo(&batch->records, record, len);
				if (batch->oldest_commit_time == 0)
					batch->oldest_commit_time = batcher->commit_time;
			}
			break;

		case WS_REC_COMMIT:
			batch = open_batch(batcher);
			appendBinaryStringInfo(&batch->records, record, len);
			batch->confirm_lsn = header.end_lsn;
			resetStringInfo(&batcher->begin);
			if (batch->nchanges >= limits->max_changes ||
				batch->records.len >= limits->max_bytes)
				seal_open(batcher);
			break;

		case WS_REC_INSERT:
		case WS_REC_UPDATE:
		case WS_REC_DELETE:
			make_room(batcher, limits, len);
			batch = open_batch(batcher);
			include_relation(batcher, header.rel_id);
			appendBinaryStringInfo(&batch->records, record, len);
			note_change(batch, batcher->commit_lsn, header.ordinal);
			break;

		case WS_REC_READ:
		case WS_REC_RESYNC:
			make_room(batcher, limits, len);
			batch = open_batch(batcher);
			include_relation(batcher, header.rel_id);
			appendBinaryStringInfo(&batch->records, record, len);
			note_change(batch, header.position, header.ordinal);
			break;

		case WS_REC_TRUNCATE:
			{
				ListCell   *lc;

				make_room(batcher, limits, len);
				batch = open_batch(batcher);
				foreach(lc, header.truncated)
					include_relation(batcher, *(uint64 *) lfirst(lc));
				appendBinaryStringInfo(&batch->records, record, len);
				note_change(batch, batcher->commit_lsn, header.ordinal);
				list_free_deep(header.truncated);
			}
			break;

		case WS_REC_MESSAGE:
			make_room(batcher, limits, len);
			batch = open_batch(batcher);
			appendBinaryStringInfo(&batch->records, record, len);
			note_change(batch, batcher->commit_lsn,
						header.transactional ? header.ordinal : 0);
			break;
	}
	MemoryContextSwitchTo(old);
}

/* Seals the open batch once it holds changes and is old enough. */
void
ws_batcher_seal_due(WsBatcher *batcher, TimestampTz now, int max_delay_ms)
{
	WsBatch    *batch = batcher->open;

	if (batch == NULL || batch->nchanges == 0)
		return;
	if (TimestampDifferenceExceeds(batch->opened_at, now, max_delay_ms))
		seal_open(batcher);
}

/* Forgets the prepared requests, e.g. to prepare the batch again. */
void
ws_batch_free_parts(WsBatch *batch)
{
	ListCell   *lc;

	foreach(lc, batch->parts)
	{
		WsBatchPart *part = lfirst(lc);

		pfree(part->url);
		if (part->endpoint)
			pfree(part->endpoint);
		if (part->schema)
			pfree(part->schema);
		if (part->table)
			pfree(part->table);
		if (part->statement)
			pfree(part->statement);
		if (part->local_error)
			pfree(part->local_error);
		if (part->body)
			pfree(part->body);
		if (part->dedup_token)
			pfree(part->dedup_token);
		pfree(part);
	}
	list_free(batch->parts);
	batch->parts = NIL;
}

/*
 * How done_tables names schema.table, unambiguously; for RowBinary, whose
 * requests are per table and relation shape, with the shape's columns.
 */
char *
ws_batch_table_key(const char *schema, const char *table,
				   const WsRowBinaryShape *shape)
{
	return psprintf("%d:%s.%s%s%s", (int) strlen(schema), schema, table,
					shape ? "\n" : "", shape ? shape->signature : "");
}

/*
 * Adds the tables whose request is done (acknowledged or dead-lettered) to
 * batch->done_tables, before the parts are prepared anew (split or
 * regrouped): those lines are never sent again, whatever URL the tables
 * get meanwhile.  A request of the whole batch names no table; when it is
 * done, so is the batch.
 */
void
ws_batch_note_done_tables(WsBatch *batch)
{
	MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(batch));
	ListCell   *lc;

	foreach(lc, batch->parts)
	{
		WsBatchPart *part = lfirst(lc);

		if (part->status == WS_BATCH_DONE && part->nlines > 0 &&
			part->table != NULL &&
			!ws_batch_table_done(batch, part->schema, part->table,
								 part->base_shape))
			batch->done_tables = lappend(batch->done_tables,
										 ws_batch_table_key(part->schema,
															part->table,
															part->base_shape));
	}
	MemoryContextSwitchTo(old);
}

/* Whether the lines of schema.table were sent before a split or regroup. */
bool
ws_batch_table_done(const WsBatch *batch, const char *schema,
					const char *table, const WsRowBinaryShape *shape)
{
	char	   *key;
	ListCell   *lc;
	bool		found = false;

	if (batch->done_tables == NIL)
		return false;
	key = ws_batch_table_key(schema, table, shape);
	foreach(lc, batch->done_tables)
		if (strcmp((char *) lfirst(lc), key) == 0)
			found = true;
	pfree(key);
	return found;
}

static void
free_batch(WsBatch *batch)
{
	ws_batch_free_parts(batch);
	list_free_deep(batch->done_tables);
	pfree(batch->records.data);
	pfree(batch);
}

/*
 * Removes acknowledged batches from the head of the queue, in order, and
 * returns the LSN the slot may now be confirmed up to (invalid if none).
 */
XLogRecPtr
ws_batcher_release_done(WsBatcher *batcher)
{
	XLogRecPtr	confirm = InvalidXLogRecPtr;

	while (batcher->queue != NIL)
	{
		WsBatch    *head = linitial(batcher->queue);

		if (head->status != WS_BATCH_DONE)
			break;
		if (!XLogRecPtrIsInvalid(head->confirm_lsn))
			confirm = head->confirm_lsn;
		if (head->backfill_tag != 0)
		{
			uint64	   *tag = palloc(sizeof(uint64));

			*tag = head->backfill_tag;
			batcher->released_tags = lappend(batcher->released_tags, tag);
		}
		batcher->queue = list_delete_first(batcher->queue);
		free_batch(head);
	}
	return confirm;
}

/*
 * Tags the newest batch, unless it already has a tag, and returns the tag
 * it now has: ws_batcher_take_released reports that tag once the batch and
 * every batch before it are acknowledged.  Returns 0 when no batch is
 * pending, so everything so far is acknowledged.
 */
uint64
ws_batcher_tag_last(WsBatcher *batcher, uint64 tag)
{
	WsBatch    *last;

	Assert(tag != 0);
	if (batcher->queue == NIL)
		return 0;
	last = llast(batcher->queue);
	if (last->backfill_tag == 0)
		last->backfill_tag = tag;
	return last->backfill_tag;
}

/* The tags of released batches, oldest first; the caller frees the list. */
List *
ws_batcher_take_released(WsBatcher *batcher)
{
	List	   *tags = batcher->released_tags;

	batcher->released_tags = NIL;
	return tags;
}

/* True when nothing decoded is waiting to be sent or acknowledged. */
bool
ws_batcher_idle(const WsBatcher *batcher)
{
	return batcher->queue == NIL && batcher->begin.len == 0;
}

/* Bytes of the batches not yet acknowledged: what memory back-pressure counts. */
int64
ws_batcher_pending_bytes(const WsBatcher *batcher)
{
	int64		total = 0;
	ListCell   *lc;

	foreach(lc, batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);

		if (batch->status != WS_BATCH_DONE)
			total += batch->records.len;
	}
	return total;
}

TimestampTz
ws_batcher_oldest_commit(const WsBatcher *batcher)
{
	ListCell   *lc;

	foreach(lc, batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);

		if (batch->oldest_commit_time != 0)
			return batch->oldest_commit_time;
	}
	return 0;
}

/*
 * Splits a batch the endpoint found too large (HTTP 413) into two, in
 * place in the queue: the first half of its changes, and the rest with the
 * BEGIN and RELATION records it needs repeated.
 *
 * The batch's prepared requests are freed: both halves are prepared again.
 * Requests that were done already (acknowledged, or handed to
 * walship.dead_letter, which keeps its own copy) are remembered by URL in
 * both halves' done_tables, so the halves do not send those lines again.
 * The caller makes sure no request of the batch is in flight.
 */
void
ws_batcher_split(WsBatcher *batcher, WsBatch *batch)
{
	MemoryContext old = MemoryContextSwitchTo(batcher->context);
	WsBatch    *second = palloc0(sizeof(WsBatch));
	StringInfoData first_records;
	StringInfoData prefix;
	StringInfoData begin;
	WsReader	reader;
	int			target = batch->nchanges / 2;
	int			seen = 0;
	Size		split_at = 0;
	XLogRecPtr	first_confirm = InvalidXLogRecPtr;
	XLogRecPtr	commit_lsn = InvalidXLogRecPtr;
	int64		commit_time = 0;
	char		first_last[WS_CHANGE_ID_LEN] = "";
	char		second_first[WS_CHANGE_ID_LEN] = "";
	ListCell   *lc;

	Assert(batch->nchanges >= 2);
#ifdef USE_ASSERT_CHECKING
	foreach(lc, batch->parts)
		Assert(((WsBatchPart *) lfirst(lc))->status != WS_BATCH_SENDING);
#endif
	ws_batch_note_done_tables(batch);
	foreach(lc, batch->done_tables)
		second->done_tables = lappend(second->done_tables,
									  pstrdup((char *) lfirst(lc)));

	initStringInfo(&prefix);
	initStringInfo(&begin);

	/* find the start of change number target + 1, noting what precedes */
	ws_reader_init(&reader, batch->records.data, batch->records.len);
	while (!ws_reader_done(&reader))
	{
		Size		start = reader.pos;
		WsRecordHeader header;
		char		kind;

		read_header(&reader, &header);
		kind = header.kind;
		if (kind == WS_REC_INSERT || kind == WS_REC_UPDATE ||
			kind == WS_REC_DELETE || kind == WS_REC_TRUNCATE ||
			kind == WS_REC_MESSAGE || kind == WS_REC_READ ||
			kind == WS_REC_RESYNC)
		{
			XLogRecPtr	id_lsn = (kind == WS_REC_READ || kind == WS_REC_RESYNC) ?
				header.position : commit_lsn;

			if (seen == target)
			{
				split_at = start;
				snprintf(second_first, WS_CHANGE_ID_LEN, "%X/%X:" UINT64_FORMAT,
						 LSN_FORMAT_ARGS(id_lsn), header.ordinal);
				list_free_deep(header.truncated);
				break;
			}
			seen++;
			snprintf(first_last, WS_CHANGE_ID_LEN, "%X/%X:" UINT64_FORMAT,
					 LSN_FORMAT_ARGS(id_lsn), header.ordinal);
		}
		else if (kind == WS_REC_RELATION)
			appendBinaryStringInfo(&prefix, batch->records.data + start,
								   reader.pos - start);
		else if (kind == WS_REC_BEGIN)
		{
			resetStringInfo(&begin);
			appendBinaryStringInfo(&begin, batch->records.data + start,
								   reader.pos - start);
			commit_lsn = header.commit_lsn;
			commit_time = header.commit_time - WS_UNIX_TO_PG_EPOCH_USECS;
		}
		else if (kind == WS_REC_COMMIT)
		{
			resetStringInfo(&begin);
			first_confirm = header.end_lsn;
		}
		list_free_deep(header.truncated);
	}

	/* second: [BEGIN] RELATIONs rest */
	initStringInfo(&second->records);
	appendBinaryStringInfo(&second->records, begin.data, begin.len);
	appendBinaryStringInfo(&second->records, prefix.data, prefix.len);
	appendBinaryStringInfo(&second->records, batch->records.data + split_at,
						   batch->records.len - split_at);
	second->seq = batcher->next_seq++;	/* request ids must stay unique */
	second->status = WS_BATCH_READY;
	second->nchanges = batch->nchanges - target;
	second->confirm_lsn = batch->confirm_lsn;
	second->backfill_tag = batch->backfill_tag;
	batch->backfill_tag = 0;
	second->opened_at = batch->opened_at;
	second->oldest_commit_time = begin.len > 0 ? commit_time : 0;
	strlcpy(second->first_change, second_first, WS_CHANGE_ID_LEN);
	strlcpy(second->last_change, batch->last_change, WS_CHANGE_ID_LEN);
	strlcpy(batch->last_change, first_last, WS_CHANGE_ID_LEN);

	/* first: the records before the split */
	initStringInfo(&first_records);
	appendBinaryStringInfo(&first_records, batch->records.data, split_at);
	pfree(batch->records.data);
	batch->records = first_records;
	batch->nchanges = target;
	batch->confirm_lsn = first_confirm;
	batch->status = WS_BATCH_READY;
	/* both halves are prepared again */
	ws_batch_free_parts(batch);

	/* insert the second right after the first */
	foreach(lc, batcher->queue)
	{
		if (lfirst(lc) == batch)
		{
			batcher->queue = list_insert_nth(batcher->queue,
											 foreach_current_index(lc) + 1,
											 second);
			break;
		}
	}
	pfree(prefix.data);
	pfree(begin.data);
	MemoryContextSwitchTo(old);
}
