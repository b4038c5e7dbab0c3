/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The walship shipping worker: decodes the slot in-process, batches the
 *	  records, POSTs the batches, and confirms the slot only past what the
 *	  endpoint acknowledged.
 *
 * One long-lived logical decoding context reads WAL up to the flush
 * position in short slices, so reading never blocks the HTTP side.  The
 * output plugin's records go to batch.c; sealed batches are encoded
 * (binary or NDJSON), compressed and sent, up to walship.max_inflight at a
 * time.  Acknowledgements may come back in any order, but the slot is
 * confirmed only up to the end of the last transaction whose every batch,
 * and every batch before it, was acknowledged.  With nothing pending the
 * slot is confirmed up to what was read, so an idle or filtered database
 * holds no WAL back.
 *
 * Failures are retried with capped exponential backoff and jitter,
 * honouring Retry-After; 413 splits the batch; other 4xx either stop the
 * pipeline at that batch (retrying slowly, so a fixed endpoint recovers)
 * or send the batch to walship.dead_letter, per walship.on_rejected.
 *
 * Backfills (backfill.c) read chunks of tables from the main loop and see
 * every record before it is batched: their rows join the stream as READ
 * records at the chunk's high watermark, and are acknowledged with it.
 *
 * Catalog writes (walship.progress, walship.dead_letter, walship.backfills)
 * happen only in the main loop, in short transactions, never inside
 * decoding callbacks.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>
#include <sys/stat.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "common/pg_prng.h"
#include "catalog/pg_publication.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "backfill.h"
#include "batch.h"
#include "compression.h"
#include "format.h"
#include "http_transport.h"
#include "ndjson.h"
#include "progress.h"
#include "record_json.h"
#include "settings.h"
#include "shared_state.h"
#include "walship.h"

#define WS_CONTENT_TYPE_BINARY	"application/vnd.walship.v2"
#define WS_CONTENT_TYPE_NDJSON	"application/x-ndjson"

/* Longest slice of WAL reading between two looks at the HTTP side. */
#define WS_DECODE_SLICE_MS		20
/* Wait between polls when there is nothing to do. */
#define WS_IDLE_POLL_MS			10
/* How often counters are written to walship.progress at most. */
#define WS_PROGRESS_INTERVAL_MS 1000

typedef struct WsWorker
{
	MemoryContext context;
	WsHttpClient *http;
	WsBatcher  *batcher;
	WsBackfill *backfill;
	WsBackfillOutput backfill_output;	/* where backfilled rows go */
	LogicalDecodingContext *decoding;
	char	   *decoding_publication;	/* publication the context decodes */
	XLogRecPtr	confirmed_lsn;
	XLogRecPtr	pending_confirm;	/* released inside decoding, to confirm */
	char	   *auth_token;
	List	   *rejected;		/* WsRejectedBatch * for walship.dead_letter */
	bool		progress_dirty;
	TimestampTz progress_written_at;
	uint64		last_error_batch;	/* batch whose error is being reported */
	bool		settings_problem;	/* settings that cannot work together */
} WsWorker;

PGDLLEXPORT void walship_worker_main(Datum main_arg);

static void pump_http(WsWorker *worker, int timeout_ms);
static void run_pipeline(WsWorker *worker);

/* ---------------------------------------------------------------------
 * Status in shared memory
 * ---------------------------------------------------------------------
 */
static void
set_state(WsWorkerState state)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->state = state;
	SpinLockRelease(&ws_shared->mutex);
}

static void
clear_error(void)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->last_error[0] = '\0';
	SpinLockRelease(&ws_shared->mutex);
}

/* Reports a condition the operator must fix, in the log and the status. */
static void
report_problem(WsWorkerState state, const char *message, const char *hint)
{
	bool		changed;

	SpinLockAcquire(&ws_shared->mutex);
	changed = ws_shared->state != state ||
		strncmp(ws_shared->last_error, message, WS_MAX_ERROR_LEN - 1) != 0;
	SpinLockRelease(&ws_shared->mutex);

	if (changed)
	{
		ereport(WARNING,
				(errmsg("walship: %s", message),
				 hint ? errhint("%s", hint) : 0));
		ws_shared_set_error(message);
	}
	set_state(state);
}

static void
worker_shmem_exit(int code, Datum arg)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->worker_pid = 0;
	ws_shared->worker_latch = NULL;
	ws_shared->inflight = 0;
	SpinLockRelease(&ws_shared->mutex);
}

/* ---------------------------------------------------------------------
 * Settings
 * ---------------------------------------------------------------------
 */

/* Reads the bearer token; NULL with a reported problem if unreadable. */
static char *
read_auth_token(void)
{
	FILE	   *file;
	StringInfoData token;
	int			c;

	if (walship_auth_token_file == NULL || walship_auth_token_file[0] == '\0')
		return NULL;

	file = AllocateFile(walship_auth_token_file, "r");
	if (file == NULL)
	{
		char	   *message = psprintf("could not read walship.auth_token_file \"%s\": %m",
									   walship_auth_token_file);

		report_problem(WS_STATE_ERROR, message,
					   "Make the file readable by the operating system user running PostgreSQL.");
		pfree(message);
		return NULL;
	}
	initStringInfo(&token);
	while ((c = fgetc(file)) != EOF)
		appendStringInfoChar(&token, (char) c);
	FreeFile(file);

	/* the token is the file's content without surrounding white space */
	while (token.len > 0 && isspace((unsigned char) token.data[token.len - 1]))
		token.data[--token.len] = '\0';
	{
		char	   *start = token.data;
		char	   *result;

		while (isspace((unsigned char) *start))
			start++;
		result = MemoryContextStrdup(TopMemoryContext, start);
		/* overwrite the copy: secrets do not linger in freed memory */
		explicit_bzero(token.data, token.len);
		pfree(token.data);
		return result;
	}
}

static void
apply_settings(WsWorker *worker)
{
	WsHttpSettings settings;
	MemoryContext old = MemoryContextSwitchTo(worker->context);

	if (worker->auth_token)
	{
		explicit_bzero(worker->auth_token, strlen(worker->auth_token));
		pfree(worker->auth_token);
	}
	worker->auth_token = read_auth_token();

	memset(&settings, 0, sizeof(settings));
	settings.connect_timeout_ms = walship_connect_timeout;
	settings.timeout_ms = walship_http_timeout;
	settings.tls_verify = walship_tls_verify;
	settings.tls_ca_file = walship_tls_ca_file;
	settings.auth_token = worker->auth_token;
	settings.headers = ws_parse_headers(walship_headers);
	ws_http_client_configure(worker->http, &settings);
	list_free_deep(settings.headers);
	MemoryContextSwitchTo(old);
}

static void
process_interrupts(WsWorker *worker)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		apply_settings(worker);
	}
}

/* ---------------------------------------------------------------------
 * Startup checks: extension, publications, slot
 * ---------------------------------------------------------------------
 */

/*
 * Whether this server lets walship be an output plugin.  PostgreSQL 15.19,
 * 17.11 and 18.6 introduced output_plugin_libraries; older servers have no
 * such setting and allow any plugin.
 */
static bool
walship_allowed_as_output_plugin(void)
{
	const char *value = GetConfigOption("output_plugin_libraries", true, false);
	char	   *copy;
	List	   *names = NIL;
	ListCell   *lc;
	bool		found = false;

	if (value == NULL)
		return true;
	copy = pstrdup(value);
	if (!SplitIdentifierString(copy, ',', &names))
		return true;			/* let the server itself say what is wrong */
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), "walship") == 0)
			found = true;
	list_free(names);
	pfree(copy);
	return found;
}

/*
 * Whether everything the pipeline needs exists; if not, the problem is
 * reported and the caller waits and checks again.
 */
static bool
pipeline_prerequisites(void)
{
	bool		ok = true;
	char	   *message = NULL;
	char	   *hint = NULL;
	ReplicationSlot *slot;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "checking walship prerequisites");

	if (wal_level < WAL_LEVEL_LOGICAL)
	{
		ok = false;
		message = pstrdup("walship needs wal_level = logical");
		hint = pstrdup("Set wal_level = logical in postgresql.conf and restart the server.");
	}
	else if (max_replication_slots == 0)
	{
		ok = false;
		message = pstrdup("walship needs a replication slot, but max_replication_slots = 0");
		hint = pstrdup("Set max_replication_slots to at least 1 in postgresql.conf and restart the server.");
	}
	else if (!walship_allowed_as_output_plugin())
	{
		ok = false;
		message = pstrdup("walship is not listed in output_plugin_libraries");
		hint = pstrdup("Add walship to output_plugin_libraries in postgresql.conf and reload.");
	}
	else if (!ws_progress_check_catalog(&message, &hint))
		ok = false;
	else
	{
		char	   *names = pstrdup(walship_publication);
		List	   *list = NIL;
		ListCell   *lc;

		(void) SplitIdentifierString(names, ',', &list);
		foreach(lc, list)
		{
			if (GetPublicationByName((char *) lfirst(lc), true) == NULL)
			{
				ok = false;
				message = psprintf("publication \"%s\" named in walship.publication does not exist in database \"%s\"",
								   (char *) lfirst(lc), walship_database);
				hint = pstrdup("Create it with CREATE PUBLICATION, or change walship.publication and reload.");
				break;
			}
		}
	}

	if (ok)
	{
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		slot = SearchNamedReplicationSlot(walship_slot_name, false);
		if (slot != NULL)
		{
			bool		logical = SlotIsLogical(slot);
			bool		ours = strcmp(NameStr(slot->data.plugin), "walship") == 0;
			bool		same_db = slot->data.database == MyDatabaseId;
			int			active_pid = slot->active_pid;
#if PG_VERSION_NUM >= 160000
			bool		invalidated = slot->data.invalidated != RS_INVAL_NONE;
#else
			bool		invalidated = XLogRecPtrIsInvalid(slot->data.restart_lsn) &&
				!XLogRecPtrIsInvalid(slot->data.invalidated_at);
#endif

			LWLockRelease(ReplicationSlotControlLock);
			if (!logical || !ours || !same_db)
			{
				ok = false;
				message = psprintf("replication slot \"%s\" is not a walship slot of database \"%s\"",
								   walship_slot_name, walship_database);
				hint = pstrdup("Set walship.slot_name to another name, or drop that slot.");
			}
			else if (invalidated)
			{
				ok = false;
				message = psprintf("replication slot \"%s\" was invalidated: WAL it needed was removed, and changes made since were lost for shipping",
								   walship_slot_name);
				hint = pstrdup("Drop the slot with pg_drop_replication_slot(), reload the target from a fresh copy (it is recreated on the next start), and consider raising max_slot_wal_keep_size.");
			}
			else if (active_pid != 0 && active_pid != MyProcPid)
			{
				ok = false;
				message = psprintf("replication slot \"%s\" is in use by process %d",
								   walship_slot_name, active_pid);
				hint = pstrdup("Stop the other consumer of the slot.");
			}
		}
		else
		{
			LWLockRelease(ReplicationSlotControlLock);
			ws_progress_create_slot(walship_slot_name);
			ereport(LOG,
					(errmsg("walship created logical replication slot \"%s\"",
							walship_slot_name)));
			/* a new pipeline starts with the rows the tables hold */
			if (walship_initial_backfill)
				ws_progress_queue_initial_backfills();
		}
	}

	/* message and hint live in the transaction's memory */
	if (!ok)
		report_problem(WS_STATE_ERROR, message, hint);

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* ---------------------------------------------------------------------
 * Decoding
 * ---------------------------------------------------------------------
 */
static void
decoding_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
					   TransactionId xid, bool last_write)
{
	resetStringInfo(ctx->out);
}

static int64
max_pending_bytes(void)
{
	/* a full pipe plus one batch being filled */
	return (int64) (walship_max_inflight + 1) * walship_batch_max_bytes * 1024;
}

/* Batches one record, shipping first while too much is pending. */
static void
add_record(void *arg, const char *record, int len)
{
	WsWorker   *worker = arg;
	WsBatchLimits limits;

	limits.max_changes = walship_batch_max_changes;
	limits.max_bytes = walship_batch_max_bytes * 1024;
	ws_batcher_add(worker->batcher, record, len, &limits);

	/*
	 * Inside a large transaction the decoder calls this for every change
	 * before returning: ship from here so memory stays bounded.
	 */
	while (ws_batcher_pending_bytes(worker->batcher) > max_pending_bytes())
	{
		CHECK_FOR_INTERRUPTS();
		pump_http(worker, WS_IDLE_POLL_MS);

		/*
		 * Free acknowledged batches now, or memory grows with the
		 * transaction; the slot is confirmed later, in advance().  Dead
		 * letters must be written first, outside decoding.
		 */
		if (worker->rejected == NIL)
		{
			XLogRecPtr	lsn = ws_batcher_release_done(worker->batcher);

			if (lsn > worker->pending_confirm)
				worker->pending_confirm = lsn;
		}
	}
}

static uint64
tag_last_batch(void *arg, uint64 tag)
{
	WsWorker   *worker = arg;

	return ws_batcher_tag_last(worker->batcher, tag);
}

static void
decoding_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
			   TransactionId xid, bool last_write)
{
	WsWorker   *worker = ctx->output_writer_private;

	/* watermarks are for the backfill, which may send its rows now */
	if (ws_backfill_observe(worker->backfill, ctx->out->data, ctx->out->len,
							&worker->backfill_output))
		return;
	add_record(worker, ctx->out->data, ctx->out->len);
}

static void
start_decoding(WsWorker *worker)
{
	List	   *options;
	MemoryContext old;

#if PG_VERSION_NUM >= 180000
	ReplicationSlotAcquire(walship_slot_name, true, true);
#else
	ReplicationSlotAcquire(walship_slot_name, true);
#endif

	old = MemoryContextSwitchTo(worker->context);
	options = list_make3(makeDefElem("publication_names",
									 (Node *) makeString(pstrdup(walship_publication)), -1),
						 makeDefElem("format_version",
									 (Node *) makeString("2"), -1),
						 makeDefElem("backfill_watermarks",
									 (Node *) makeString("on"), -1));
	worker->decoding_publication = pstrdup(walship_publication);
	MemoryContextSwitchTo(old);

	worker->decoding = CreateDecodingContext(InvalidXLogRecPtr, options, false,
											 XL_ROUTINE(.page_read = read_local_xlog_page,
														.segment_open = wal_segment_open,
														.segment_close = wal_segment_close),
											 decoding_prepare_write,
											 decoding_write, NULL);
	worker->decoding->output_writer_private = worker;
	/* a new context numbers relations anew */
	ws_backfill_reset(worker->backfill);
	XLogBeginRead(worker->decoding->reader, MyReplicationSlot->data.restart_lsn);
	worker->confirmed_lsn = MyReplicationSlot->data.confirmed_flush;

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->confirmed_lsn = worker->confirmed_lsn;
	SpinLockRelease(&ws_shared->mutex);

	ereport(LOG,
			(errmsg("walship started shipping slot \"%s\" from %X/%X",
					walship_slot_name, LSN_FORMAT_ARGS(worker->confirmed_lsn))));
}

static void
stop_decoding(WsWorker *worker)
{
	if (worker->decoding == NULL)
		return;
	FreeDecodingContext(worker->decoding);
	worker->decoding = NULL;
	ReplicationSlotRelease();
}

/*
 * Reads WAL up to the flush position for at most WS_DECODE_SLICE_MS, or
 * until enough is pending.  Returns true when more WAL is waiting.
 */
static bool
decode_slice(WsWorker *worker)
{
	XLogReaderState *reader = worker->decoding->reader;
	XLogRecPtr	flush = GetFlushRecPtr(NULL);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   WS_DECODE_SLICE_MS);

	while (reader->EndRecPtr < flush)
	{
		XLogRecord *record;
		char	   *errm = NULL;

		record = XLogReadRecord(reader, &errm);
		if (errm)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("walship could not read WAL at %X/%X: %s",
							LSN_FORMAT_ARGS(reader->EndRecPtr), errm)));
		if (record != NULL)
			LogicalDecodingProcessRecord(worker->decoding, reader);

		CHECK_FOR_INTERRUPTS();
		if (GetCurrentTimestamp() >= deadline ||
			ws_batcher_pending_bytes(worker->batcher) > max_pending_bytes())
			break;
	}

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->decoded_lsn = reader->EndRecPtr;
	SpinLockRelease(&ws_shared->mutex);

	return reader->EndRecPtr < flush;
}

/*
 * Confirms the slot up to lsn.  Only confirmations that follow
 * acknowledgements are recorded in walship.progress: recording the idle
 * ones would write WAL that causes the next idle confirmation.
 */
static void
confirm(WsWorker *worker, XLogRecPtr lsn, bool acknowledged)
{
	if (XLogRecPtrIsInvalid(lsn) || lsn <= worker->confirmed_lsn)
		return;
	LogicalConfirmReceivedLocation(lsn);
	worker->confirmed_lsn = lsn;
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->confirmed_lsn = lsn;
	SpinLockRelease(&ws_shared->mutex);
	if (acknowledged)
		worker->progress_dirty = true;
}

/* ---------------------------------------------------------------------
 * Delivery
 * ---------------------------------------------------------------------
 */

/* Appends str percent-encoded for use anywhere in a URL. */
static void
append_url_escaped(StringInfo out, const char *str)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) str; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(out, (char) *p);
		else
		{
			appendStringInfoChar(out, '%');
			appendStringInfoChar(out, hex[*p >> 4]);
			appendStringInfoChar(out, hex[*p & 0xF]);
		}
	}
}

static bool
endpoint_per_table(void)
{
	return strstr(walship_endpoint, "{table}") != NULL ||
		strstr(walship_endpoint, "{schema}") != NULL;
}

/* The endpoint with {schema} and {table} replaced, URL-encoded. */
static char *
endpoint_for(const char *schema, const char *table)
{
	StringInfoData url;
	const char *p = walship_endpoint;

	initStringInfo(&url);
	while (*p)
	{
		if (strncmp(p, "{schema}", 8) == 0)
		{
			append_url_escaped(&url, schema);
			p += 8;
		}
		else if (strncmp(p, "{table}", 7) == 0)
		{
			append_url_escaped(&url, table);
			p += 7;
		}
		else
			appendStringInfoChar(&url, *p++);
	}
	return url.data;
}

/* A part under construction: the lines for one URL. */
typedef struct WsPartBuilder
{
	char	   *schema;
	char	   *table;
	StringInfoData lines;
	int			nlines;
} WsPartBuilder;

static WsPartBuilder *
builder_for(List **builders, const WsRelation *rel)
{
	ListCell   *lc;
	WsPartBuilder *builder;

	foreach(lc, *builders)
	{
		builder = lfirst(lc);
		if (rel == NULL ||
			(strcmp(builder->schema, rel->schema_name) == 0 &&
			 strcmp(builder->table, rel->table_name) == 0))
			return builder;
	}
	builder = palloc0(sizeof(WsPartBuilder));
	builder->schema = rel ? pstrdup(rel->schema_name) : "";
	builder->table = rel ? pstrdup(rel->table_name) : "";
	initStringInfo(&builder->lines);
	*builders = lappend(*builders, builder);
	return builder;
}

/*
 * Encodes a batch's records as NDJSON lines, grouped by table when the
 * endpoint has placeholders, else all in one group.
 */
static List *
encode_ndjson_groups(WsBatch *batch, bool per_table)
{
	List	   *builders = NIL;
	WsStreamContext stream;
	WsReader	reader;
	StringInfoData lines;
	WsNdjsonOptions options;

	options.shape = (WsNdjsonShape) walship_ndjson_shape;
	options.dialect = (WsNdjsonDialect) walship_ndjson_dialect;

	initStringInfo(&lines);
	ws_stream_context_init(&stream);
	/* the records come from walship's own output plugin */
	stream.json_trusted = true;
	ws_reader_init(&reader, batch->records.data, batch->records.len);
	if (!per_table)
		(void) builder_for(&builders, NULL);

	while (!ws_reader_done(&reader))
	{
		WsRecord	record;
		int			n;
		char	   *line;

		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		if (!per_table)
		{
			WsPartBuilder *only = linitial(builders);

			/* one group: the lines go straight into it */
			only->nlines += ws_ndjson_append(&only->lines, &record, &stream,
											 &options);
			continue;
		}
		resetStringInfo(&lines);
		n = ws_ndjson_append(&lines, &record, &stream, &options);
		if (n == 0)
			continue;

		/* a TRUNCATE has a line per truncated table, others one table */
		line = lines.data;
		for (int i = 0; i < n; i++)
		{
			uint64		rel_id = record.kind == WS_REC_TRUNCATE ?
				record.rel_ids[i] : record.rel_id;
			WsPartBuilder *builder = builder_for(&builders,
												 ws_stream_relation(&stream, rel_id));
			char	   *end = strchr(line, '\n');

			appendBinaryStringInfo(&builder->lines, line, end - line + 1);
			builder->nlines++;
			line = end + 1;
		}
	}
	return builders;
}

static void
add_part(WsWorker *worker, WsBatch *batch, const char *url,
		 const char *payload, int payload_len, int nlines,
		 const char *content_type)
{
	MemoryContext old = MemoryContextSwitchTo(worker->batcher->context);
	WsBatchPart *part = palloc0(sizeof(WsBatchPart));
	StringInfoData compressed;

	initStringInfo(&compressed);
	ws_compress((WsCompression) walship_compression, payload, payload_len,
				&compressed);
	part->index = list_length(batch->parts);
	part->url = pstrdup(url);
	part->content_type = content_type;
	part->content_encoding = ws_compression_encoding((WsCompression) walship_compression);
	part->body = compressed.data;
	part->body_len = compressed.len;
	part->nlines = nlines;
	part->status = nlines > 0 ? WS_BATCH_READY : WS_BATCH_DONE;
	batch->parts = lappend(batch->parts, part);
	MemoryContextSwitchTo(old);
}

/*
 * Prepares a batch's requests with the settings in force now: encoded per
 * walship.format, one per table when the endpoint has placeholders, and
 * compressed.  Retries send exactly these bodies again.  Returns false
 * when the settings cannot be used together.
 */
static bool
prepare_parts(WsWorker *worker, WsBatch *batch)
{
	MemoryContext encode_context = AllocSetContextCreate(CurrentMemoryContext,
														 "walship encode",
														 ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(encode_context);
	bool		per_table = endpoint_per_table();

	if (walship_format == WS_FORMAT_BINARY)
	{
		if (per_table)
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(encode_context);
			worker->settings_problem = true;
			report_problem(WS_STATE_ERROR,
						   "walship.endpoint has {schema} or {table} placeholders, which need walship.format = ndjson",
						   "Set walship.format = 'ndjson', or use an endpoint without placeholders, and reload.");
			return false;
		}
		add_part(worker, batch, walship_endpoint, batch->records.data,
				 batch->records.len, batch->nchanges, WS_CONTENT_TYPE_BINARY);
	}
	else
	{
		ListCell   *lc;

		foreach(lc, encode_ndjson_groups(batch, per_table))
		{
			WsPartBuilder *builder = lfirst(lc);
			char	   *url = per_table ?
				endpoint_for(builder->schema, builder->table) : walship_endpoint;

			add_part(worker, batch, url, builder->lines.data,
					 builder->lines.len, builder->nlines,
					 WS_CONTENT_TYPE_NDJSON);
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(encode_context);
	return true;
}

/* request ids: batch sequence number and part index */
#define REQUEST_ID(batch, part)	(((batch)->seq << 16) | (uint64) (part)->index)
#define MAX_PARTS				65536

static void
start_part(WsWorker *worker, WsBatch *batch, WsBatchPart *part)
{
	WsHttpRequest request;
	char		batch_id[2 * WS_CHANGE_ID_LEN + 16];

	snprintf(batch_id, sizeof(batch_id), "%s..%s",
			 batch->first_change, batch->last_change);
	memset(&request, 0, sizeof(request));
	request.request_id = REQUEST_ID(batch, part);
	request.url = part->url;
	request.content_type = part->content_type;
	request.content_encoding = part->content_encoding;
	request.batch_id = batch_id;
	request.body = part->body;
	request.body_len = part->body_len;
	ws_http_start(worker->http, &request);
	part->status = WS_BATCH_SENDING;
	part->attempts++;
}

/* Marks the batch done when every part is. */
static void
check_batch_done(WsWorker *worker, WsBatch *batch)
{
	ListCell   *lc;

	foreach(lc, batch->parts)
		if (((WsBatchPart *) lfirst(lc))->status != WS_BATCH_DONE)
			return;
	batch->status = WS_BATCH_DONE;
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->batches_shipped++;
	ws_shared->changes_shipped += batch->nchanges;
	SpinLockRelease(&ws_shared->mutex);
	worker->progress_dirty = true;
}

static WsBatch *
find_batch(WsWorker *worker, uint64 request_id, WsBatchPart **part)
{
	ListCell   *lc;

	foreach(lc, worker->batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);

		if (batch->seq == (request_id >> 16) && batch->status == WS_BATCH_READY)
		{
			ListCell   *plc;

			foreach(plc, batch->parts)
			{
				WsBatchPart *candidate = lfirst(plc);

				if (candidate->index == (int) (request_id & 0xFFFF) &&
					candidate->status == WS_BATCH_SENDING)
				{
					*part = candidate;
					return batch;
				}
			}
		}
	}
	return NULL;
}

/* Capped exponential backoff with full jitter above half the delay. */
static int
backoff_ms(int attempts, int retry_after_ms)
{
	double		delay = walship_retry_min_delay * pow(2.0, Min(attempts - 1, 30));
	int			max_delay = Max(walship_retry_max_delay, walship_retry_min_delay);

	if (delay > max_delay)
		delay = max_delay;
	delay = delay / 2 + (delay / 2) * pg_prng_double(&pg_global_prng_state);
	if (retry_after_ms >= 0)
		delay = Max(delay, Min(retry_after_ms, 24 * 3600 * 1000));
	return (int) delay;
}

static void
describe_failure(StringInfo message, const WsHttpResult *result)
{
	if (result->status != 0)
		appendStringInfo(message, "HTTP %ld", result->status);
	else
		appendStringInfoString(message, "no response");
	if (result->clickhouse_exception_code[0] != '\0')
		appendStringInfo(message, " (ClickHouse exception %s)",
						 result->clickhouse_exception_code);
	if (result->error[0] != '\0')
		appendStringInfo(message, ": %s", result->error);
	/*
	 * ClickHouse puts its error in the body.  Only its code is kept: the
	 * text may quote row data, and walship.status is readable by everyone
	 * (walship.dead_letter, for admins, keeps the whole response).
	 */
	{
		int			code;

		if (sscanf(result->response, "Code: %d", &code) == 1)
			appendStringInfo(message, " (ClickHouse error code %d)", code);
	}
}

/*
 * ClickHouse reports errors in the data (parse errors, unknown columns,
 * types that do not fit, unknown tables) as HTTP 500 with "Code: N" at the
 * start of the body: retrying them cannot succeed.
 */
static bool
clickhouse_permanent_error(const WsHttpResult *result)
{
	static const int permanent_codes[] = {
		6,						/* CANNOT_PARSE_TEXT */
		26,						/* CANNOT_PARSE_QUOTED_STRING */
		27,						/* CANNOT_PARSE_INPUT_ASSERTION_FAILED */
		38,						/* CANNOT_PARSE_DATE */
		41,						/* CANNOT_PARSE_DATETIME */
		53,						/* TYPE_MISMATCH */
		60,						/* UNKNOWN_TABLE */
		69,						/* ARGUMENT_OUT_OF_BOUND */
		70,						/* CANNOT_CONVERT_TYPE */
		72,						/* CANNOT_PARSE_NUMBER */
		81,						/* UNKNOWN_DATABASE */
		117,					/* INCORRECT_DATA */
		1000					/* POCO_EXCEPTION, e.g. unsupported encoding */
	};
	int			code;

	if (result->outcome != WS_HTTP_RETRY || result->status != 500 ||
		sscanf(result->response, "Code: %d", &code) != 1)
		return false;
	for (size_t i = 0; i < lengthof(permanent_codes); i++)
		if (permanent_codes[i] == code)
			return true;
	return false;
}

static void
handle_result(WsWorker *worker, const WsHttpResult *given)
{
	WsHttpResult adjusted = *given;
	const WsHttpResult *result = &adjusted;
	WsBatchPart *part = NULL;
	WsBatch    *batch = find_batch(worker, result->request_id, &part);
	TimestampTz now = GetCurrentTimestamp();
	StringInfoData message;

	if (batch == NULL)
		elog(ERROR, "walship received a result for unknown request " UINT64_FORMAT,
			 result->request_id);

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->last_http_status = (int) result->status;
	SpinLockRelease(&ws_shared->mutex);

	if (clickhouse_permanent_error(result))
		adjusted.outcome = WS_HTTP_REJECTED;

	initStringInfo(&message);
	switch (result->outcome)
	{
		case WS_HTTP_ACKNOWLEDGED:
			part->status = WS_BATCH_DONE;
			part->rejected = false;
			SpinLockAcquire(&ws_shared->mutex);
			ws_shared->bytes_shipped += part->body_len;
			ws_shared->last_success_at = now;
			if (ws_shared->state == WS_STATE_BACKOFF ||
				(ws_shared->state == WS_STATE_ERROR && worker->last_error_batch == batch->seq))
				ws_shared->state = WS_STATE_STREAMING;
			SpinLockRelease(&ws_shared->mutex);
			if (worker->last_error_batch == batch->seq)
			{
				ereport(LOG,
						(errmsg("walship endpoint accepted batch %s..%s after %d attempts",
								batch->first_change, batch->last_change,
								part->attempts)));
				worker->last_error_batch = 0;
				clear_error();
			}
			pfree(part->body);
			part->body = NULL;
			check_batch_done(worker, batch);
			break;

		case WS_HTTP_TOO_LARGE:
			if (batch->nchanges >= 2)
			{
				ereport(LOG,
						(errmsg("walship endpoint refused a batch of %d changes as too large (HTTP 413); splitting it",
								batch->nchanges)));
				part->status = WS_BATCH_WAITING;
				part->retry_at = DT_NOEND;
				batch->split_pending = true;
				break;
			}
			/* a single change that is too large is a permanent rejection */
			/* FALLTHROUGH */

		case WS_HTTP_REJECTED:
			describe_failure(&message, result);
			if (!part->rejected)
			{
				SpinLockAcquire(&ws_shared->mutex);
				ws_shared->rejected_batches++;
				SpinLockRelease(&ws_shared->mutex);
			}
			part->rejected = true;
			if (walship_on_rejected == WS_ON_REJECTED_DEAD_LETTER)
			{
				MemoryContext old = MemoryContextSwitchTo(worker->context);
				WsRejectedBatch *rejected = palloc0(sizeof(WsRejectedBatch));

				ereport(WARNING,
						(errmsg("walship endpoint rejected batch %s..%s (%s); moving it to walship.dead_letter",
								batch->first_change, batch->last_change, message.data)));
				rejected->batch = batch;
				rejected->part = part;
				rejected->http_status = result->status;
				strlcpy(rejected->error, message.data, sizeof(rejected->error));
				strlcpy(rejected->response, result->response, sizeof(rejected->response));
				worker->rejected = lappend(worker->rejected, rejected);
				MemoryContextSwitchTo(old);
				/* its body is kept until the dead letter is written */
				part->status = WS_BATCH_DONE;
				check_batch_done(worker, batch);
			}
			else
			{
				char	   *error = psprintf("endpoint rejected batch %s..%s: %s",
											 batch->first_change, batch->last_change,
											 message.data);

				report_problem(WS_STATE_ERROR, error,
							   "Fix the endpoint or the data; walship retries this batch every walship.retry_max_delay, or set walship.on_rejected = 'dead_letter' to set rejected batches aside.");
				worker->last_error_batch = batch->seq;
				worker->progress_dirty = true;
				part->status = WS_BATCH_WAITING;
				part->retry_at = TimestampTzPlusMilliseconds(now, Max(walship_retry_max_delay, walship_retry_min_delay));
				pfree(error);
			}
			break;

		case WS_HTTP_RETRY:
			describe_failure(&message, result);
			{
				int			delay = backoff_ms(part->attempts, result->retry_after_ms);
				char	   *error = psprintf("could not deliver batch %s..%s (attempt %d, retrying in %d ms): %s",
											 batch->first_change, batch->last_change,
											 part->attempts, delay, message.data);

				part->status = WS_BATCH_WAITING;
				part->retry_at = TimestampTzPlusMilliseconds(now, delay);
				SpinLockAcquire(&ws_shared->mutex);
				ws_shared->retries++;
				SpinLockRelease(&ws_shared->mutex);
				ereport(part->attempts == 1 ? LOG : DEBUG1,
						(errmsg("walship %s", error)));
				ws_shared_set_error(error);
				worker->last_error_batch = batch->seq;
				worker->progress_dirty = true;
				set_state(WS_STATE_BACKOFF);
				pfree(error);
			}
			break;
	}
	pfree(message.data);

	/* split once the batch's other requests, whose bodies curl uses, are over */
	if (batch->split_pending)
	{
		ListCell   *lc;

		foreach(lc, batch->parts)
			if (((WsBatchPart *) lfirst(lc))->status == WS_BATCH_SENDING)
				return;
		batch->split_pending = false;
		ws_batcher_split(worker->batcher, batch);
	}
}

/* Starts requests for due batches, in order, and collects results. */
static void
pump_http(WsWorker *worker, int timeout_ms)
{
	WsHttpResult results[16];
	int			n;
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;
	bool		paused;
	bool		stop_here = false;

	SpinLockAcquire(&ws_shared->mutex);
	paused = ws_shared->pause_requested;
	SpinLockRelease(&ws_shared->mutex);

	if (!paused && walship_endpoint[0] != '\0')
	{
		foreach(lc, worker->batcher->queue)
		{
			WsBatch    *batch = lfirst(lc);
			ListCell   *plc;

			if (ws_http_inflight(worker->http) >= walship_max_inflight)
				break;
			if (batch->status != WS_BATCH_READY || batch->split_pending)
				continue;
			if (stop_here)
				break;
			if (batch->parts == NIL)
			{
				if (!prepare_parts(worker, batch))
					break;
				if (worker->settings_problem)
				{
					worker->settings_problem = false;
					clear_error();
					set_state(WS_STATE_STREAMING);
				}
				check_batch_done(worker, batch);	/* nothing to send */
			}
			foreach(plc, batch->parts)
			{
				WsBatchPart *part = lfirst(plc);

				if (ws_http_inflight(worker->http) >= walship_max_inflight)
					break;
				if (part->status == WS_BATCH_READY ||
					(part->status == WS_BATCH_WAITING && part->retry_at <= now))
					start_part(worker, batch, part);

				/* under on_rejected = stop nothing after a rejected batch goes */
				if (part->rejected && part->status != WS_BATCH_DONE &&
					walship_on_rejected == WS_ON_REJECTED_STOP)
					stop_here = true;
			}
		}
	}

	n = ws_http_poll(worker->http, timeout_ms, results, lengthof(results));
	for (int i = 0; i < n; i++)
		handle_result(worker, &results[i]);

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->inflight = ws_http_inflight(worker->http);
	ws_shared->oldest_pending_commit = ws_batcher_oldest_commit(worker->batcher);
	SpinLockRelease(&ws_shared->mutex);
}

/* Writes dead letters, then confirms what is acknowledged, in order. */
static void
advance(WsWorker *worker)
{
	XLogRecPtr	lsn;

	if (worker->rejected != NIL)
	{
		ws_progress_write_dead_letters(worker->rejected);
		list_free_deep(worker->rejected);
		worker->rejected = NIL;
	}

	lsn = ws_batcher_release_done(worker->batcher);
	{
		List	   *tags = ws_batcher_take_released(worker->batcher);

		ws_backfill_acknowledged(worker->backfill, tags);
		list_free_deep(tags);
	}
	if (worker->pending_confirm > lsn)
		lsn = worker->pending_confirm;
	worker->pending_confirm = InvalidXLogRecPtr;
	confirm(worker, lsn, true);

	/* nothing pending: what was read holds nothing to ship */
	if (ws_batcher_idle(worker->batcher) && worker->decoding != NULL)
		confirm(worker, worker->decoding->reader->EndRecPtr, false);

	if (worker->progress_dirty &&
		TimestampDifferenceExceeds(worker->progress_written_at,
								   GetCurrentTimestamp(),
								   WS_PROGRESS_INTERVAL_MS))
	{
		ws_progress_write(walship_slot_name, worker->confirmed_lsn);
		worker->progress_dirty = false;

		/*
		 * Make the confirmed position durable too: otherwise only a
		 * checkpoint writes it, and a crash would resend everything
		 * shipped since the last one.
		 */
		ReplicationSlotMarkDirty();
		ReplicationSlotSave();
		worker->progress_written_at = GetCurrentTimestamp();
	}
}

/* ---------------------------------------------------------------------
 * Main loop
 * ---------------------------------------------------------------------
 */
static void
wait_for_work(int timeout_ms)
{
	int			rc = WaitLatch(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   timeout_ms, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
}

/*
 * Whether the pipeline may run now; otherwise reports why and lets
 * requests in flight finish.
 */
static bool
may_ship(WsWorker *worker)
{
	bool		paused;

	SpinLockAcquire(&ws_shared->mutex);
	paused = ws_shared->pause_requested;
	SpinLockRelease(&ws_shared->mutex);

	if (!walship_enabled)
		set_state(WS_STATE_DISABLED);
	else if (walship_endpoint == NULL || walship_endpoint[0] == '\0')
		set_state(WS_STATE_UNCONFIGURED);
	else if (paused)
		set_state(WS_STATE_PAUSED);
	else
		return true;
	return false;
}

void
walship_worker_main(Datum main_arg)
{
	WsWorker   *worker;
	MemoryContext context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->worker_pid = MyProcPid;
	ws_shared->worker_latch = MyLatch;
	ws_shared->state = WS_STATE_STARTING;
	ws_shared->started_at = GetCurrentTimestamp();
	SpinLockRelease(&ws_shared->mutex);
	on_shmem_exit(worker_shmem_exit, (Datum) 0);

	BackgroundWorkerInitializeConnection(walship_database, NULL, 0);
	pgstat_report_appname("walship");
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "walship worker");

	context = AllocSetContextCreate(TopMemoryContext, "walship worker",
									ALLOCSET_DEFAULT_SIZES);
	worker = MemoryContextAllocZero(context, sizeof(WsWorker));
	worker->context = context;
	worker->http = ws_http_client_create();
	worker->batcher = ws_batcher_create(context);
	worker->backfill = ws_backfill_create(context);
	worker->backfill_output.emit = add_record;
	worker->backfill_output.tag = tag_last_batch;
	worker->backfill_output.arg = worker;
	apply_settings(worker);

	/*
	 * An error ends the process and the postmaster starts it again after
	 * bgw_restart_time; walship.status keeps the error meanwhile.
	 */
	PG_TRY();
	{
		run_pipeline(worker);
	}
	PG_CATCH();
	{
		MemoryContext error_context = MemoryContextSwitchTo(worker->context);
		ErrorData  *edata = CopyErrorData();

		MemoryContextSwitchTo(error_context);
		ws_shared_set_error(edata->message);
		set_state(WS_STATE_ERROR);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Waits for the prerequisites, then ships until the process ends. */
static void
run_pipeline(WsWorker *worker)
{
	/* wait until the extension, publications and slot are in order */
	for (;;)
	{
		process_interrupts(worker);
		if (may_ship(worker) && pipeline_prerequisites())
			break;
		wait_for_work(5000);
	}
	ws_progress_load(walship_slot_name);
	clear_error();
	start_decoding(worker);
	set_state(WS_STATE_STREAMING);

	for (;;)
	{
		bool		more_wal = false;
		bool		shipping;

		process_interrupts(worker);
		shipping = may_ship(worker);

		/* a new publication list needs a new decoding context */
		if (strcmp(worker->decoding_publication, walship_publication) != 0 &&
			ws_batcher_idle(worker->batcher) &&
			ws_http_inflight(worker->http) == 0)
		{
			ereport(LOG,
					(errmsg("walship restarts decoding for publications \"%s\"",
							walship_publication)));
			stop_decoding(worker);
			while (!pipeline_prerequisites())
			{
				wait_for_work(5000);
				process_interrupts(worker);
			}
			start_decoding(worker);
		}

		if (shipping)
		{
			WsWorkerState state;
			const char *activity = ws_backfill_activity(worker->backfill);

			pgstat_report_activity(STATE_RUNNING,
								   activity ? activity : "walship: shipping changes");
			if (strcmp(worker->decoding_publication, walship_publication) == 0)
			{
				more_wal = decode_slice(worker);

				/* backfill chunks while the endpoint keeps up */
				ws_backfill_step(worker->backfill,
								 ws_batcher_pending_bytes(worker->batcher) < max_pending_bytes() / 2,
								 &worker->backfill_output);
			}
			ws_batcher_seal_due(worker->batcher, GetCurrentTimestamp(),
								walship_batch_max_delay);
			SpinLockAcquire(&ws_shared->mutex);
			state = ws_shared->state;
			if (state == WS_STATE_PAUSED || state == WS_STATE_DISABLED ||
				state == WS_STATE_UNCONFIGURED || state == WS_STATE_STARTING)
				ws_shared->state = WS_STATE_STREAMING;
			SpinLockRelease(&ws_shared->mutex);
		}
		else
			pgstat_report_activity(STATE_IDLE, "walship: not shipping");

		pump_http(worker, more_wal ? 0 :
				  (ws_http_inflight(worker->http) > 0 ? WS_IDLE_POLL_MS : 0));
		advance(worker);

		if (!more_wal && ws_http_inflight(worker->http) == 0)
			wait_for_work(shipping ? WS_IDLE_POLL_MS : 1000);
	}
}

/* Registers the worker; called from _PG_init during preloading. */
void
ws_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "walship");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "walship_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "walship worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "walship worker");
	RegisterBackgroundWorker(&worker);
}
