/*-------------------------------------------------------------------------
 *
 * plugin.c
 *	  The walship logical decoding output plugin.
 *
 * Turns decoded transactions into walship binary change records (format
 * versions 1 and 2, docs/format.md): BEGIN, RELATION, INSERT, UPDATE,
 * DELETE, TRUNCATE, MESSAGE and COMMIT, one record per OutputPluginWrite.
 * READ records, the rows of a backfill, are written by the shipping worker
 * (backfill.c), which asks this plugin for the watermark messages that
 * bracket its chunks with the backfill_watermarks option.  Tables
 * are selected by the publications named in the publication_names option,
 * exactly as pgoutput selects them: relation_cache.c holds that logic,
 * row_filter.c the publications' WHERE clauses.
 *
 * BEGIN is sent lazily with the first record of a transaction, so
 * transactions whose changes were all filtered out emit nothing.  Every
 * change gets an ordinal: its 1-based position among all changes the
 * decoder passes for the transaction, filtered or not, so that (commit LSN,
 * ordinal) identifies a change stably whatever the options.
 *
 * IDENTIFICATION
 *	  src/plugin.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_publication.h"
#include "commands/defrem.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "format.h"
#include "relation_cache.h"
#include "row_filter.h"
#include "tuple_encode.h"
#include "walship.h"

/* Options and memory of one decoding session. */
typedef struct WsPluginData
{
	MemoryContext change_context;	/* reset after every change */
	List	   *publication_names;
	int			format_version; /* of the records, as asked for */
	bool		messages;		/* emit logical decoding messages */
	bool		watermarks;		/* emit backfill watermark messages */
	bool		only_local;		/* skip changes that have an origin */
} WsPluginData;

/* Per transaction, in txn->output_plugin_private. */
typedef struct WsTxnState
{
	bool		begin_sent;
	uint64		ordinal;		/* of the change being processed */
	uint64		nrecords;		/* change and message records sent */
} WsTxnState;

static void ws_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
					   bool is_init);
static void ws_shutdown(LogicalDecodingContext *ctx);
static void ws_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn);
static void ws_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					  XLogRecPtr commit_lsn);
static void ws_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					  Relation relation, ReorderBufferChange *change);
static void ws_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						int nrelations, Relation relations[],
						ReorderBufferChange *change);
static void ws_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					   XLogRecPtr message_lsn, bool transactional,
					   const char *prefix, Size message_size,
					   const char *message);
static bool ws_filter_by_origin(LogicalDecodingContext *ctx,
								RepOriginId origin_id);

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = ws_startup;
	cb->begin_cb = ws_begin;
	cb->change_cb = ws_change;
	cb->truncate_cb = ws_truncate;
	cb->message_cb = ws_message;
	cb->commit_cb = ws_commit;
	cb->filter_by_origin_cb = ws_filter_by_origin;
	cb->shutdown_cb = ws_shutdown;
}

static void
reject_duplicate(bool seen, const char *name)
{
	if (seen)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("conflicting or redundant options"),
				 errdetail("Option \"%s\" was given more than once.", name)));
}

static bool
bool_option(DefElem *elem)
{
	bool		result;

	if (elem->arg == NULL)
		return true;
	if (!parse_bool(strVal(elem->arg), &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value \"%s\" for walship option \"%s\"",
						strVal(elem->arg), elem->defname),
				 errhint("Use a Boolean value: on or off, true or false.")));
	return result;
}

static char *
string_option(DefElem *elem)
{
	if (elem->arg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("walship option \"%s\" requires a value",
						elem->defname)));
	return strVal(elem->arg);
}

static void
parse_options(List *options, WsPluginData *data)
{
	bool		seen_publications = false;
	bool		seen_version = false;
	bool		seen_messages = false;
	bool		seen_origin = false;
	bool		seen_watermarks = false;
	ListCell   *lc;

	data->format_version = WALSHIP_FORMAT_VERSION_MIN;

	foreach(lc, options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "publication_names") == 0)
		{
			char	   *names = pstrdup(string_option(elem));

			reject_duplicate(seen_publications, elem->defname);
			seen_publications = true;
			if (!SplitIdentifierString(names, ',', &data->publication_names) ||
				data->publication_names == NIL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_NAME),
						 errmsg("invalid publication list \"%s\" in walship option \"publication_names\"",
								string_option(elem)),
						 errhint("Give one or more publication names separated by commas.")));
		}
		else if (strcmp(elem->defname, "format_version") == 0)
		{
			char	   *value = string_option(elem);

			reject_duplicate(seen_version, elem->defname);
			seen_version = true;
			if (strcmp(value, "1") == 0)
				data->format_version = 1;
			else if (strcmp(value, "2") == 0)
				data->format_version = 2;
			else
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("walship format version \"%s\" is not supported", value),
						 errdetail("This walship library writes format versions %d to %d.",
								   WALSHIP_FORMAT_VERSION_MIN,
								   WALSHIP_FORMAT_VERSION),
						 errhint("Ask for format_version '%d', or install the walship version your consumer expects.",
								 WALSHIP_FORMAT_VERSION)));
		}
		else if (strcmp(elem->defname, "backfill_watermarks") == 0)
		{
			reject_duplicate(seen_watermarks, elem->defname);
			seen_watermarks = true;
			data->watermarks = bool_option(elem);
		}
		else if (strcmp(elem->defname, "messages") == 0)
		{
			reject_duplicate(seen_messages, elem->defname);
			seen_messages = true;
			data->messages = bool_option(elem);
		}
		else if (strcmp(elem->defname, "origin") == 0)
		{
			char	   *value = string_option(elem);

			reject_duplicate(seen_origin, elem->defname);
			seen_origin = true;
			if (pg_strcasecmp(value, "any") == 0)
				data->only_local = false;
			else if (pg_strcasecmp(value, "none") == 0)
				data->only_local = true;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for walship option \"origin\"", value),
						 errhint("Use \"any\" to decode all changes or \"none\" to skip changes replicated from elsewhere.")));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is not recognized by the walship output plugin",
							elem->defname),
					 errhint("Valid options are publication_names, format_version, messages, origin and backfill_watermarks.")));
	}

	if (!seen_publications)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("walship output plugin requires option \"publication_names\""),
				 errhint("Name the publications whose tables to decode, for example 'publication_names', 'my_pub'.")));
}

static void
ws_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	WsPluginData *data = MemoryContextAllocZero(ctx->context,
												sizeof(WsPluginData));

	data->change_context = AllocSetContextCreate(ctx->context,
												 "walship change",
												 ALLOCSET_DEFAULT_SIZES);
	ctx->output_plugin_private = data;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;

	/* creating the slot decodes nothing and passes no options */
	if (is_init)
		return;

	parse_options(ctx->output_plugin_options, data);
	ws_relation_cache_start(ctx->context, data->publication_names);
}

static void
ws_shutdown(LogicalDecodingContext *ctx)
{
	ws_relation_cache_stop();
}

static bool
ws_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	WsPluginData *data = ctx->output_plugin_private;

	return data->only_local && origin_id != InvalidRepOriginId;
}

static inline int64
unix_usecs(TimestampTz ts)
{
	return ts + WS_UNIX_TO_PG_EPOCH_USECS;
}

static void
ws_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	txn->output_plugin_private = MemoryContextAllocZero(ctx->context,
														sizeof(WsTxnState));
}

/* Sends BEGIN before the transaction's first record. */
static void
send_begin_if_needed(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	WsPluginData *data = ctx->output_plugin_private;
	WsTxnState *state = txn->output_plugin_private;
	WsRecordMark mark;

	if (state->begin_sent)
		return;

	OutputPluginPrepareWrite(ctx, false);
	mark = ws_record_start(ctx->out, WS_REC_BEGIN);
	appendStringInfoChar(ctx->out, (char) data->format_version);
	ws_put_uvarint(ctx->out, txn->xid);
	ws_put_uint64_le(ctx->out, txn->final_lsn);
	ws_put_svarint(ctx->out, unix_usecs(txn->xact_time.commit_time));
	ws_record_end(ctx->out, mark);
	OutputPluginWrite(ctx, false);
	state->begin_sent = true;
}

static void
ws_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		  XLogRecPtr commit_lsn)
{
	WsTxnState *state = txn->output_plugin_private;
	bool		sent = state->begin_sent;
	WsRecordMark mark;

	txn->output_plugin_private = NULL;

	/* lets a walsender confirm progress past skipped transactions too */
	OutputPluginUpdateProgress(ctx, !sent);

	if (!sent)
	{
		elog(DEBUG1, "walship skipped transaction %u: none of its changes are published",
			 txn->xid);
		pfree(state);
		return;
	}

	OutputPluginPrepareWrite(ctx, true);
	mark = ws_record_start(ctx->out, WS_REC_COMMIT);
	ws_put_uint64_le(ctx->out, commit_lsn);
	ws_put_uint64_le(ctx->out, txn->end_lsn);
	ws_put_svarint(ctx->out, unix_usecs(txn->xact_time.commit_time));
	ws_put_uvarint(ctx->out, state->nrecords);
	ws_record_end(ctx->out, mark);
	OutputPluginWrite(ctx, true);
	pfree(state);
}

/* Sends the RELATION record once per schema version of the entry. */
static void
send_relation_if_needed(LogicalDecodingContext *ctx, WsRelationEntry *entry)
{
	WsRecordMark mark;

	if (entry->schema_sent)
		return;

	OutputPluginPrepareWrite(ctx, false);
	mark = ws_record_start(ctx->out, WS_REC_RELATION);
	appendBinaryStringInfo(ctx->out, entry->relation_body.data,
						   entry->relation_body.len);
	ws_record_end(ctx->out, mark);
	OutputPluginWrite(ctx, false);
	entry->schema_sent = true;
}

static inline HeapTuple
change_tuple(ReorderBufferChange *change, bool old)
{
#if PG_VERSION_NUM >= 170000
	return old ? change->data.tp.oldtuple : change->data.tp.newtuple;
#else
	ReorderBufferTupleBuf *buf = old ? change->data.tp.oldtuple :
		change->data.tp.newtuple;

	return buf ? &buf->tuple : NULL;
#endif
}

static void
ws_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		  Relation relation, ReorderBufferChange *change)
{
	WsPluginData *data = ctx->output_plugin_private;
	WsTxnState *state = txn->output_plugin_private;
	WsRelationEntry *entry;
	MemoryContext old_context;
	HeapTuple	old_tuple;
	HeapTuple	new_tuple;
	TupleDesc	desc;
	WsFilteredAction action;
	char		kind = WS_REC_INSERT;
	char		old_kind = WS_OLD_NONE;
	WsRecordMark mark;

	state->ordinal++;

	if (!is_publishable_relation(relation))
		return;

	entry = ws_relation_cache_get(relation);
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			if (!entry->publish_insert)
				return;
			action = WS_ACTION_INSERT;
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			if (!entry->publish_update)
				return;
			action = WS_ACTION_UPDATE;
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			if (!entry->publish_delete)
				return;
			action = WS_ACTION_DELETE;
			break;
		default:
			elog(ERROR, "unexpected change action %d", (int) change->action);
	}

	old_context = MemoryContextSwitchTo(data->change_context);

	old_tuple = action == WS_ACTION_INSERT ? NULL : change_tuple(change, true);
	new_tuple = action == WS_ACTION_DELETE ? NULL : change_tuple(change, false);
	desc = RelationGetDescr(relation);
	if (entry->attrmap != NULL)
	{
		if (old_tuple)
			old_tuple = execute_attr_map_tuple(old_tuple, entry->attrmap);
		if (new_tuple)
			new_tuple = execute_attr_map_tuple(new_tuple, entry->attrmap);
		desc = entry->attrmap->outdesc;
	}

	/* a row filter may drop the change, or turn an UPDATE into another */
	action = ws_row_filter_apply(entry->row_filter, action, old_tuple, &new_tuple);
	switch (action)
	{
		case WS_ACTION_SKIP:
			MemoryContextSwitchTo(old_context);
			MemoryContextReset(data->change_context);
			return;
		case WS_ACTION_INSERT:
			kind = WS_REC_INSERT;
			old_tuple = NULL;
			break;
		case WS_ACTION_UPDATE:
			kind = WS_REC_UPDATE;
			break;
		case WS_ACTION_DELETE:
			kind = WS_REC_DELETE;
			new_tuple = NULL;
			break;
	}
	if (old_tuple)
		old_kind = entry->replica_identity == REPLICA_IDENTITY_FULL ?
			WS_OLD_FULL : WS_OLD_KEY;

	send_begin_if_needed(ctx, txn);
	send_relation_if_needed(ctx, entry);

	OutputPluginPrepareWrite(ctx, true);
	mark = ws_record_start(ctx->out, kind);
	ws_put_uvarint(ctx->out, entry->rel_id);
	ws_put_uvarint(ctx->out, state->ordinal);
	if (kind != WS_REC_INSERT)
	{
		appendStringInfoChar(ctx->out, old_kind);
		if (old_tuple)
			ws_relation_write_tuple(ctx->out, entry, desc, old_tuple,
						old_kind == WS_OLD_KEY);
	}
	if (kind != WS_REC_DELETE)
		ws_relation_write_tuple(ctx->out, entry, desc, new_tuple, false);
	/* the change's own WAL position: a per-row version for consumers */
	ws_put_uvarint(ctx->out, change->lsn);
	ws_record_end(ctx->out, mark);
	OutputPluginWrite(ctx, true);
	state->nrecords++;

	MemoryContextSwitchTo(old_context);
	MemoryContextReset(data->change_context);
}

static void
ws_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			int nrelations, Relation relations[], ReorderBufferChange *change)
{
	WsPluginData *data = ctx->output_plugin_private;
	WsTxnState *state = txn->output_plugin_private;
	MemoryContext old_context;
	uint64	   *rel_ids;
	int			nsent = 0;
	uint8		flags = 0;
	WsRecordMark mark;

	state->ordinal++;

	old_context = MemoryContextSwitchTo(data->change_context);
	rel_ids = palloc(sizeof(uint64) * nrelations);

	for (int i = 0; i < nrelations; i++)
	{
		Relation	relation = relations[i];
		WsRelationEntry *entry;

		if (!is_publishable_relation(relation))
			continue;
		entry = ws_relation_cache_get(relation);
		if (!entry->publish_truncate)
			continue;
		/* partitions published through their root go out as the root */
		if (relation->rd_rel->relispartition &&
			entry->publish_as_relid != RelationGetRelid(relation))
			continue;

		send_begin_if_needed(ctx, txn);
		send_relation_if_needed(ctx, entry);
		rel_ids[nsent++] = entry->rel_id;
	}

	if (nsent > 0)
	{
		if (change->data.truncate.cascade)
			flags |= WS_TRUNCATE_CASCADE;
		if (change->data.truncate.restart_seqs)
			flags |= WS_TRUNCATE_RESTART_SEQS;

		OutputPluginPrepareWrite(ctx, true);
		mark = ws_record_start(ctx->out, WS_REC_TRUNCATE);
		ws_put_uvarint(ctx->out, state->ordinal);
		appendStringInfoChar(ctx->out, (char) flags);
		ws_put_uvarint(ctx->out, nsent);
		for (int i = 0; i < nsent; i++)
			ws_put_uvarint(ctx->out, rel_ids[i]);
		ws_record_end(ctx->out, mark);
		OutputPluginWrite(ctx, true);
		state->nrecords++;
	}

	MemoryContextSwitchTo(old_context);
	MemoryContextReset(data->change_context);
}

static void
ws_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		   XLogRecPtr message_lsn, bool transactional, const char *prefix,
		   Size message_size, const char *message)
{
	WsPluginData *data = ctx->output_plugin_private;
	WsTxnState *state = transactional ? txn->output_plugin_private : NULL;
	WsRecordMark mark;

	/* a transactional message is a change of its transaction */
	if (state)
		state->ordinal++;

	/*
	 * The shipping worker's backfill watermarks reach it whatever the
	 * messages option says; they are not changes of anything.
	 */
	if (!data->messages &&
		!(data->watermarks && !transactional &&
		  strcmp(prefix, WS_WATERMARK_PREFIX) == 0))
		return;

	if (state)
		send_begin_if_needed(ctx, txn);

	OutputPluginPrepareWrite(ctx, true);
	mark = ws_record_start(ctx->out, WS_REC_MESSAGE);
	ws_put_uvarint(ctx->out, state ? state->ordinal : 0);
	appendStringInfoChar(ctx->out,
						 transactional ? WS_MESSAGE_TRANSACTIONAL : 0);
	ws_put_uint64_le(ctx->out, message_lsn);
	ws_put_text(ctx->out, prefix, strlen(prefix));
	ws_put_bytes(ctx->out, message, message_size);
	ws_record_end(ctx->out, mark);
	OutputPluginWrite(ctx, true);
	if (state)
		state->nrecords++;
}
