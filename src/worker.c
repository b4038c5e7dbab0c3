/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The walship shipping worker: decodes the slot in-process, batches the
 *	  records, POSTs the batches, and confirms the slot only past what the
 *	  endpoint acknowledged.
 *
 * One long-lived logical decoding context reads WAL up to the flush
 * position in short slices, so reading never blocks the HTTP side.  The
 * output plugin's records go to batch.c; delivery.c sends the sealed
 * batches, up to walship.max_inflight at a time, and handles retries,
 * rejections and dead letters.  Acknowledgements may come back in any
 * order, but the slot is confirmed only up to the end of the last
 * transaction whose every batch, and every batch before it, was
 * acknowledged.  With nothing pending the slot is confirmed up to what was
 * read, so an idle or filtered database holds no WAL back.
 *
 * With walship.encoder_workers > 0 the sealed batches go to encoder/sender
 * background workers instead (encoder.c), which report each batch back
 * once it is acknowledged; the confirmation bookkeeping is the same.
 *
 * This file keeps the loop: startup and prerequisites, settings and
 * interrupts, decoding slices, waiting, and the confirmation bookkeeping.
 *
 * Backfills (backfill.c) read chunks of tables from the main loop and see
 * every record before it is batched: their rows join the stream as READ
 * records at the chunk's high watermark, and are acknowledged with it.
 *
 * Catalog writes (walship.progress, walship.dead_letter, walship.backfills)
 * happen only in the main loop, in short transactions, never inside
 * decoding callbacks.
 *
 * On a hot standby the worker waits for promotion (state standby).  A slot
 * that is missing (a failover on PostgreSQL 15/16) or invalidated while
 * walship.progress has a row for it is a gap, never skipped: it is
 * reported with its exact range, and under walship.on_slot_lost = resync
 * the worker records it ('pending', committed before the new slot exists,
 * so a worker that ends meanwhile takes it up again), creates a new slot
 * and queues a backfill of every published table carrying the slot's start
 * as the resync's version (backfill.c); under stop it is an error.
 *
 * walship.max_retained_wal is checked about once a second wherever the
 * worker is, inside decoding included (wal_budget.c).  On PostgreSQL 17+
 * the slot is a failover slot, and decoding goes no further than the
 * standbys of synchronized_standby_slots confirmed (failover.c).
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <sys/stat.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
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
#include "delivery.h"
#include "encoder.h"
#include "failover.h"
#include "format.h"
#include "http_transport.h"
#include "managed_tables.h"
#include "progress.h"
#include "secrets.h"
#include "settings.h"
#include "shared_state.h"
#include "wal_budget.h"
#include "walship.h"

/* Longest slice of WAL reading between two looks at the HTTP side. */
#define WS_DECODE_SLICE_MS		20
/* Records read between two looks at the clock in a slice. */
#define WS_DECODE_CHECK_RECORDS	32
/* Wait between polls when there is nothing to do. */
#define WS_IDLE_POLL_MS			10
/* How often a worker on a standby looks whether it was promoted. */
#define WS_STANDBY_POLL_MS		500
/* How often counters are written to walship.progress at most. */
#define WS_PROGRESS_INTERVAL_MS 1000

typedef struct WsWorker
{
	MemoryContext context;
	WsHttpClient *http;
	WsBatcher  *batcher;
	WsDelivery *delivery;
	WsEncoders *encoders;		/* encoder workers, or NULL: in-process */
	int			encoder_setting;	/* walship.encoder_workers they follow */
	WsBackfill *backfill;
	WsBackfillOutput backfill_output;	/* where backfilled rows go */
	LogicalDecodingContext *decoding;
	char	   *decoding_publication;	/* publication the context decodes */
	XLogRecPtr	confirmed_lsn;
	XLogRecPtr	pending_confirm;	/* released inside decoding, to confirm */
	int64		pending_bound;	/* pending bytes at most, see add_record() */
	bool		progress_dirty;
	TimestampTz progress_written_at;
} WsWorker;

PGDLLEXPORT void walship_worker_main(Datum main_arg);

static void run_pipeline(WsWorker *worker);

/* ---------------------------------------------------------------------
 * Status in shared memory
 * ---------------------------------------------------------------------
 */
/* Reports a condition the operator must fix, in the log and the status. */
static void
report_problem(WsWorkerState state, const char *message, const char *hint)
{
	ws_shared_report_problem(state, message, hint);
}

static void
worker_shmem_exit(int code, Datum arg)
{
	ws_shared_worker_exited();
}

/* ---------------------------------------------------------------------
 * Settings
 * ---------------------------------------------------------------------
 */

/*
 * Hands the settings to the HTTP client.  Runs on every reload and every
 * few seconds while a secret file cannot be read, so everything it
 * allocates goes into a short-lived context: the client copies what it
 * keeps, and secrets.c keeps its values in a context of its own.  The
 * encoder workers (encoder.c) configure their clients with it too.
 */
void
ws_worker_configure_http(WsHttpClient *http, MemoryContext context)
{
	WsHttpSettings settings;
	MemoryContext temp = AllocSetContextCreate(context,
											   "walship settings",
											   ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(temp);

	memset(&settings, 0, sizeof(settings));
	settings.connect_timeout_ms = walship_connect_timeout;
	settings.timeout_ms = walship_http_timeout;
	settings.tls_verify = walship_tls_verify;
	settings.tls_ca_file = walship_tls_ca_file;
	settings.headers = ws_parse_headers(walship_headers);
	ws_secrets_load(&settings);
	ws_http_client_configure(http, &settings);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(temp);
}

static void
apply_settings(WsWorker *worker)
{
	ws_worker_configure_http(worker->http, worker->context);
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
		ws_managed_tables_check_settings();
	}
	else if (ws_secrets_reread_due())
		apply_settings(worker);
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

/* Commits what the transaction did so far, and starts another. */
static void
restart_transaction(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* Where the worker's slot, just created, starts: the first version. */
static XLogRecPtr
slot_start_lsn(void)
{
	ReplicationSlot *slot;
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(walship_slot_name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		lsn = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (XLogRecPtrIsInvalid(lsn))
		elog(ERROR, "replication slot \"%s\" just created has no start",
			 walship_slot_name);
	return lsn;
}

/*
 * Starts the resync on the new slot: the gap [start_lsn, the slot's start)
 * is recorded in walship.progress and reported, and every published table
 * is queued for a backfill whose last chunk carries a RESYNC record.
 */
static void
begin_resync(XLogRecPtr start_lsn, const char *reason, int64 resyncs)
{
	XLogRecPtr	version = slot_start_lsn();
	int			tables = ws_progress_begin_resync(walship_slot_name,
												  start_lsn, version);

	ereport(WARNING,
			(errmsg("walship replication slot \"%s\" was lost (%s): changes from %X/%X to %X/%X were not shipped",
					walship_slot_name, reason, LSN_FORMAT_ARGS(start_lsn),
					LSN_FORMAT_ARGS(version)),
			 errdetail("walship.progress says the endpoint acknowledged the changes before %X/%X; the new slot starts at %X/%X. Changes committed in between, deletes included, may be missing at the endpoint.",
					   LSN_FORMAT_ARGS(start_lsn), LSN_FORMAT_ARGS(version)),
			 errhint("walship resyncs (walship.on_slot_lost = resync): it backfills every published table (%d queued), then tells the endpoint which rows the gap may have deleted. Follow it in walship.status (resync_state) and walship.backfills.",
					 tables)));
	ws_shared_set_gap(start_lsn, version, GetCurrentTimestamp(), resyncs + 1,
					  "running");
}

/*
 * The slot exists: a resync whose new slot was created by a worker that
 * ended before it recorded the resync is started now.  Nothing has
 * confirmed the slot since: its start is still the resync's version.
 */
static void
resume_pending_resync(void)
{
	WsGap		gap;

	ws_progress_read_gap(walship_slot_name, &gap);
	if (strcmp(gap.resync_state, "pending") == 0)
		begin_resync(gap.start_lsn, "found again after a restart", gap.resyncs);
}

/*
 * The slot is missing, or invalidated.  Without a walship.progress row
 * (and not invalidated), this is a new pipeline: the slot is created, with
 * the initial backfills.  Otherwise the changes after the last confirmed
 * position are a gap: under walship.on_slot_lost = stop that is an error
 * (returns false with message, detail and hint); under resync the gap is
 * recorded ('pending', committed, so that a worker that ends now takes up
 * the resync again), an invalidated slot is dropped, a new slot is created
 * and the resync begins.
 */
static bool
slot_lost(bool invalidated, XLogRecPtr slot_confirmed,
		  char **message, char **detail, char **hint)
{
	WsGap		gap;
	XLogRecPtr	start_lsn;
	const char *reason = invalidated ? "invalidated" : "missing";

	ws_progress_read_gap(walship_slot_name, &gap);
	if (!invalidated && !gap.has_row)
	{
		ws_progress_create_slot(walship_slot_name);
		ereport(LOG,
				(errmsg("walship created logical replication slot \"%s\"",
						walship_slot_name)));
		/* a new pipeline starts with the rows the tables hold */
		if (walship_initial_backfill)
			ws_progress_queue_initial_backfills();
		return true;
	}

	if (strcmp(gap.resync_state, "pending") == 0)
		start_lsn = gap.start_lsn;
	else
		start_lsn = Max(gap.confirmed_lsn, slot_confirmed);

	if (walship_on_slot_lost == WS_ON_SLOT_LOST_STOP)
	{
		XLogRecPtr	now_lsn = GetFlushRecPtr(NULL);

		*message = psprintf("replication slot \"%s\" is %s: changes from %X/%X on were not shipped",
							walship_slot_name, reason, LSN_FORMAT_ARGS(start_lsn));
		*detail = psprintf("walship.progress says the endpoint acknowledged the changes before %X/%X, and no slot keeps the WAL after it: changes committed from %X/%X to the current position %X/%X, deletes included, may be missing at the endpoint. walship.on_slot_lost = stop: nothing is created or shipped.",
						   LSN_FORMAT_ARGS(start_lsn), LSN_FORMAT_ARGS(start_lsn),
						   LSN_FORMAT_ARGS(now_lsn));
		*hint = pstrdup("Set walship.on_slot_lost = resync and reload to send every published table again and tell the endpoint which rows are gone; or reload the target yourself, drop any invalidated slot and delete the slot's row of walship.progress to start a new pipeline.");
		ws_shared_set_gap(start_lsn, InvalidXLogRecPtr, GetCurrentTimestamp(),
						  gap.resyncs, "stopped");
		return false;
	}

	if (invalidated)
		ws_progress_drop_slot(walship_slot_name);
	if (strcmp(gap.resync_state, "pending") != 0)
		ws_progress_mark_gap(walship_slot_name, start_lsn, "pending");
	/* the gap is recorded before the slot exists; a slot needs no writes before */
	restart_transaction();
	ws_progress_create_slot(walship_slot_name);
	ereport(LOG,
			(errmsg("walship created logical replication slot \"%s\"",
					walship_slot_name)));
	begin_resync(start_lsn, reason, gap.resyncs);
	return true;
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
	char	   *detail = NULL;
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
			XLogRecPtr	slot_confirmed = slot->data.confirmed_flush;
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
			else if (active_pid != 0 && active_pid != MyProcPid)
			{
				ok = false;
				message = psprintf("replication slot \"%s\" is in use by process %d",
								   walship_slot_name, active_pid);
				hint = pstrdup("Stop the other consumer of the slot.");
			}
			else if (invalidated)
				ok = slot_lost(true, slot_confirmed, &message, &detail, &hint);
			else
				resume_pending_resync();
		}
		else
		{
			LWLockRelease(ReplicationSlotControlLock);
			ok = slot_lost(false, InvalidXLogRecPtr, &message, &detail, &hint);
		}
	}

	/* message, detail and hint live in the transaction's memory */
	if (!ok && detail != NULL)
		ws_shared_report_problem_detail(WS_STATE_ERROR, message, detail, hint);
	else if (!ok)
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
max_pending_bytes(WsWorker *worker)
{
	/* a full pipe plus one batch being filled */
	int64		batches = walship_max_inflight + 1;

	/* with encoder workers, what all of them may have at once */
	if (worker->encoders)
		batches = (int64) ws_encoders_count(worker->encoders) *
			ws_encoders_max_outstanding() + 1;
	return batches * walship_batch_max_bytes * 1024;
}

/*
 * Sends sealed batches and collects the answers, in this process or
 * through the encoder workers, waiting at most timeout_ms for progress.
 */
static void
pump(WsWorker *worker, int timeout_ms)
{
	if (worker->encoders)
		ws_encoders_pump(worker->encoders, worker->batcher, timeout_ms);
	else
		ws_delivery_pump(worker->delivery, timeout_ms);
}

/*
 * Requests in flight in this process: none with encoder workers, whose
 * requests are theirs to wait for (the queue of batches says what is
 * pending).
 */
static int
inflight_here(WsWorker *worker)
{
	return worker->encoders ? 0 : ws_http_inflight(worker->http);
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
	 * Pending bytes only shrink between records, as batches are done, so
	 * the queue is walked only when what was pending at the last walk plus
	 * what was added since may be too much.  (A batch also repeats its
	 * BEGIN and RELATION records, a few bytes this bound leaves out.)
	 */
	worker->pending_bound += len;
	if (worker->pending_bound <= max_pending_bytes(worker))
		return;
	worker->pending_bound = ws_batcher_pending_bytes(worker->batcher);

	/*
	 * Inside a large transaction the decoder calls this for every change
	 * before returning: ship from here so memory stays bounded.
	 */
	while (worker->pending_bound > max_pending_bytes(worker))
	{
		CHECK_FOR_INTERRUPTS();
		/* an endpoint that stays down must not fill the disk meanwhile */
		ws_wal_budget_check();
		pump(worker, WS_IDLE_POLL_MS);

		/*
		 * Free acknowledged batches now, or memory grows with the
		 * transaction.  The slot is confirmed later, in advance(), after
		 * the dead letters are written (outside decoding); a dead letter
		 * owns a copy of its batch and body, so releasing the batch here
		 * takes nothing from it.
		 */
		{
			XLogRecPtr	lsn = ws_batcher_release_done(worker->batcher);

			if (lsn > worker->pending_confirm)
				worker->pending_confirm = lsn;
		}
		worker->pending_bound = ws_batcher_pending_bytes(worker->batcher);
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

	ws_failover_prepare_slot(walship_slot_name);
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

	ws_shared_start_ladder(worker->confirmed_lsn);

	ereport(LOG,
			(errmsg("walship started shipping slot \"%s\" from %X/%X",
					walship_slot_name, LSN_FORMAT_ARGS(worker->confirmed_lsn))));
	/* a new slot in place of one given up: say what was not shipped */
	ws_wal_budget_started(worker->confirmed_lsn);
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
	/* on 17+, only what the standbys of synchronized_standby_slots have */
	XLogRecPtr	flush = ws_failover_read_limit(GetFlushRecPtr(NULL));
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   WS_DECODE_SLICE_MS);
	uint32		records = 0;

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

		/*
		 * The clock and the pending bytes every WS_DECODE_CHECK_RECORDS
		 * records only: reading the clock for every record cost about 5%
		 * of the decoding worker's time.  add_record() bounds memory by
		 * itself.
		 */
		if (++records % WS_DECODE_CHECK_RECORDS == 0 &&
			(GetCurrentTimestamp() >= deadline ||
			 ws_batcher_pending_bytes(worker->batcher) > max_pending_bytes(worker)))
			break;
	}

	ws_shared_set_decoded_lsn(reader->EndRecPtr);

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
	ws_shared_set_confirmed_lsn(lsn);
	if (acknowledged)
		worker->progress_dirty = true;
}

/* Writes dead letters, then confirms what is acknowledged, in order. */
static void
advance(WsWorker *worker)
{
	XLogRecPtr	lsn;

	ws_delivery_write_dead_letters(worker->delivery);

	lsn = ws_batcher_release_done(worker->batcher);
	{
		List	   *tags = ws_batcher_take_released(worker->batcher);

		ws_backfill_acknowledged(worker->backfill, tags);

		/*
		 * Backfill rows acknowledged: walship.progress is written (which
		 * also finishes a resync whose last table is done) even when no
		 * commit moved the slot, and whichever process sent them.
		 */
		if (tags != NIL)
			worker->progress_dirty = true;
		list_free_deep(tags);
	}
	if (worker->pending_confirm > lsn)
		lsn = worker->pending_confirm;
	worker->pending_confirm = InvalidXLogRecPtr;
	confirm(worker, lsn, true);

	/* nothing pending: what was read holds nothing to ship */
	if (ws_batcher_idle(worker->batcher) && worker->decoding != NULL)
		confirm(worker, worker->decoding->reader->EndRecPtr, false);

	if (ws_delivery_take_progress(worker->delivery))
		worker->progress_dirty = true;
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
	bool		paused = ws_shared_pause_requested();

	if (!walship_enabled)
		ws_shared_set_state(WS_STATE_DISABLED);
	else if (walship_endpoint == NULL || walship_endpoint[0] == '\0')
		ws_shared_set_state(WS_STATE_UNCONFIGURED);
	else if (paused)
		ws_shared_set_state(WS_STATE_PAUSED);
	else if (ws_secrets_missing())
		ws_shared_set_state(WS_STATE_ERROR);	/* secrets.c reported which */
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

	ws_shared_worker_started(MyProcPid, MyLatch);
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
	worker->delivery = ws_delivery_create(context, worker->http,
										  worker->batcher);
	worker->backfill = ws_backfill_create(context);
	worker->backfill_output.emit = add_record;
	worker->backfill_output.tag = tag_last_batch;
	worker->backfill_output.arg = worker;
	apply_settings(worker);
	ws_managed_tables_check_settings();

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
		ws_shared_set_state(WS_STATE_ERROR);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Starts walship.encoder_workers encoder workers; with none (0, or none
 * could start) batches are encoded and sent in this process.
 */
static void
start_encoders(WsWorker *worker)
{
	worker->encoder_setting = walship_encoder_workers;
	if (walship_encoder_workers > 0)
		worker->encoders = ws_encoders_start(worker->context,
											 walship_encoder_workers);
}

/*
 * On a standby the worker only waits: it may neither create a slot nor
 * write its catalog, and the primary's walship ships the changes.  It
 * starts shipping once the server is promoted.
 */
static void
wait_for_promotion(WsWorker *worker)
{
	if (!RecoveryInProgress())
		return;
	ereport(LOG,
			(errmsg("walship worker waits: the server is a standby"),
			 errdetail("The walship worker starts shipping when the server is promoted.")));
	ws_shared_set_state(WS_STATE_STANDBY);
	pgstat_report_activity(STATE_IDLE, "walship: waiting for promotion");
	while (RecoveryInProgress())
	{
		process_interrupts(worker);
		wait_for_work(WS_STANDBY_POLL_MS);
	}
	ws_shared_set_state(WS_STATE_STARTING);
	ereport(LOG,
			(errmsg("walship worker starts: the server was promoted")));
}

/* Waits for the prerequisites, then ships until the process ends. */
static void
run_pipeline(WsWorker *worker)
{
	wait_for_promotion(worker);

	/* wait until the extension, publications and slot are in order */
	for (;;)
	{
		process_interrupts(worker);
		ws_wal_budget_check();
		if (may_ship(worker) && pipeline_prerequisites())
			break;
		wait_for_work(5000);
	}
	ws_progress_load(walship_slot_name);
	ws_shared_clear_error();
	start_decoding(worker);
	ws_shared_set_state(WS_STATE_STREAMING);
	start_encoders(worker);

	for (;;)
	{
		bool		more_wal = false;
		bool		shipping;

		process_interrupts(worker);
		ws_wal_budget_check();
		shipping = may_ship(worker);

		/* another number of encoder workers, once nothing is pending */
		if (walship_encoder_workers != worker->encoder_setting &&
			ws_batcher_idle(worker->batcher) &&
			inflight_here(worker) == 0)
		{
			ereport(LOG,
					(errmsg("walship switches from %d to %d encoder workers",
							ws_encoders_count(worker->encoders),
							walship_encoder_workers)));
			if (worker->encoders)
				ws_encoders_stop(worker->encoders);
			worker->encoders = NULL;
			start_encoders(worker);
		}

		/* a new publication list needs a new decoding context */
		if (strcmp(worker->decoding_publication, walship_publication) != 0 &&
			ws_batcher_idle(worker->batcher) &&
			inflight_here(worker) == 0)
		{
			ereport(LOG,
					(errmsg("walship restarts decoding for publications \"%s\"",
							walship_publication)));
			stop_decoding(worker);
			while (!pipeline_prerequisites())
			{
				wait_for_work(5000);
				process_interrupts(worker);
				ws_wal_budget_check();
			}
			start_decoding(worker);
		}

		if (shipping)
		{
			const char *activity = ws_backfill_activity(worker->backfill);

			pgstat_report_activity(STATE_RUNNING,
								   activity ? activity : "walship: shipping changes");
			if (strcmp(worker->decoding_publication, walship_publication) == 0)
			{
				more_wal = decode_slice(worker);

				/* backfill chunks while the endpoint keeps up */
				ws_backfill_step(worker->backfill,
								 ws_batcher_pending_bytes(worker->batcher) < max_pending_bytes(worker) / 2,
								 &worker->backfill_output);
			}
			ws_batcher_seal_due(worker->batcher, GetCurrentTimestamp(),
								walship_batch_max_delay);
			ws_shared_change_state(WS_STATE_BIT(WS_STATE_PAUSED) |
								   WS_STATE_BIT(WS_STATE_DISABLED) |
								   WS_STATE_BIT(WS_STATE_UNCONFIGURED) |
								   WS_STATE_BIT(WS_STATE_STARTING),
								   ws_delivery_state(worker->delivery));
		}
		else
			pgstat_report_activity(STATE_IDLE, "walship: not shipping");

		pump(worker, more_wal ? 0 :
			 (inflight_here(worker) > 0 ? WS_IDLE_POLL_MS : 0));
		advance(worker);

		if (!more_wal && inflight_here(worker) == 0)
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
	/* on a hot standby it starts, and waits for promotion */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "walship");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "walship_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "walship worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "walship worker");
	RegisterBackgroundWorker(&worker);
}
