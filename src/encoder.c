/*-------------------------------------------------------------------------
 *
 * encoder.c
 *	  The parallel stage of the shipping worker: encoder/sender background
 *	  workers that encode, compress and send the batches the decoding
 *	  worker seals, as PostgreSQL's parallel apply hands transactions to its
 *	  workers.
 *
 * With walship.encoder_workers = N > 0 the decoding worker (worker.c)
 * starts N dynamic background workers ("walship encoder").  Each has a
 * dynamic shared memory segment of its own holding two shm_mq queues: the
 * decoding worker sends it sealed batches (a WsEncoderBatch header and the
 * batch's self-contained record stream, RELATION and BEGIN records
 * included, see batch.c), and it sends back, in order, the decoding
 * worker's sequence number of every batch it finished (every request
 * acknowledged, or set aside in walship.dead_letter, which it writes
 * itself first: it is connected to walship.database).
 *
 * An encoder keeps the batches it was given in a WsBatcher of its own
 * and sends them with delivery.c, exactly as the decoding worker does with
 * walship.encoder_workers = 0: the same encoding, compression, retries,
 * 413 splits and rejections.  The decoding worker's sequence number
 * travels as the batch's backfill_tag, which batch.c reports once the
 * batch (after a split: both halves) and every batch before it are done.
 *
 * The decoding worker marks its own copy of a batch done when an encoder
 * reports it, and confirms the slot exactly as before: in order, only up to
 * the last transaction every batch of which, and of every batch before it,
 * is done.  Nothing is confirmed for a batch an encoder merely received.
 *
 * Back-pressure: a batch goes to the encoder with the fewest batches
 * outstanding, and only while that number is below
 * ws_encoders_max_outstanding(); sends never block (shm_mq nowait, a
 * partial send continues on the next call), so the decoding worker keeps
 * its loop, and its own bound on pending batches holds memory bounded.
 *
 * Failures: when an encoder exits (an error, pg_terminate_backend) its
 * queues detach; the decoding worker raises an error, so it exits and the
 * postmaster starts it again, decoding from the slot's confirmed position:
 * every batch not done is decoded and sent again.  When the decoding worker
 * exits, its encoders see the queues detach and exit too.  A kill -9 of
 * either makes the postmaster restart every process anyway.  Settings
 * reloads reach the encoders directly: the postmaster signals them too.
 *
 * What the encoders share beyond the queues: under walship.on_rejected =
 * stop an encoder reports its rejected batch ("held"), and the decoding
 * worker hands out nothing after it until it is done; a Retry-After holds
 * the endpoint for every process, and the state is backoff while any
 * process waits to retry (shared_state.c); walship.status adds up their
 * requests in flight.
 *
 * IDENTIFICATION
 *	  src/encoder.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "delivery.h"
#include "encoder.h"
#include "http_transport.h"
#include "secrets.h"
#include "settings.h"
#include "shared_state.h"

#define WS_ENCODER_MAGIC			0x77736865
#define WS_ENCODER_KEY_SHARED		1
#define WS_ENCODER_KEY_BATCHES		2
#define WS_ENCODER_KEY_DONE			3

/* Ring sizes: batches are larger, but go through in pieces. */
#define WS_ENCODER_BATCH_QUEUE_SIZE (1024 * 1024)
#define WS_ENCODER_DONE_QUEUE_SIZE	(16 * 1024)

StaticAssertDecl(lengthof(((WsSharedState *) NULL)->encoder_inflight) ==
				 WS_MAX_ENCODER_WORKERS,
				 "shared_state.h keeps a slot per encoder worker");

/* Wait between polls while requests are in flight or waiting to retry. */
#define WS_ENCODER_POLL_MS			10

/* What the decoding worker tells an encoder about itself. */
typedef struct WsEncoderShared
{
	int			index;			/* 0-based */
	Oid			database;
} WsEncoderShared;

/* The header of a batch in the batch queue; its records follow. */
typedef struct WsEncoderBatch
{
	uint64		seq;			/* the decoding worker's batch seq */
	XLogRecPtr	confirm_lsn;	/* end of its last COMMIT, for the metrics */
	int			nchanges;
	TimestampTz oldest_commit_time;
	char		first_change[WS_CHANGE_ID_LEN];
	char		last_change[WS_CHANGE_ID_LEN];
} WsEncoderBatch;

/*
 * A message in the done queue: a finished batch, or (held) a batch the
 * endpoint rejected under walship.on_rejected = stop, after which nothing
 * more is handed out until it is finished.
 */
typedef struct WsEncoderDone
{
	uint64		seq;
	bool		held;
} WsEncoderDone;

/* The decoding worker's end of one encoder. */
typedef struct WsEncoderLink
{
	int			index;
	dsm_segment *segment;
	BackgroundWorkerHandle *handle;
	shm_mq_handle *batches;		/* we send */
	shm_mq_handle *done;		/* we receive */
	int			outstanding;	/* batches handed over, not done */
	WsBatch    *sending;		/* a batch only partly in the queue */
	WsEncoderBatch header;		/* of that batch: a retried send needs the
								 * same bytes */
} WsEncoderLink;

struct WsEncoders
{
	int			nworkers;
	WsEncoderLink *links;
	uint64		held_seq;		/* a batch rejected under on_rejected = stop:
								 * none after it is handed out; 0 if none */
};

/* ---------------------------------------------------------------------
 * The decoding worker's side
 * ---------------------------------------------------------------------
 */

/*
 * Most batches an encoder has at once: one per request it may have in
 * flight, and one more being encoded or waiting in its queue.
 */
int
ws_encoders_max_outstanding(void)
{
	return walship_max_inflight + 1;
}

int
ws_encoders_count(const WsEncoders *encoders)
{
	return encoders ? encoders->nworkers : 0;
}

static void
link_detach(WsEncoderLink *link)
{
	if (link->handle)
		TerminateBackgroundWorker(link->handle);
	if (link->segment)
		dsm_detach(link->segment);
	link->segment = NULL;
	link->handle = NULL;
}

/*
 * Creates encoder index's segment and queues and starts its worker.
 * Returns false, with everything undone, when the worker could not start.
 */
static bool
link_start(WsEncoderLink *link, int index)
{
	shm_toc_estimator estimator;
	Size		size;
	shm_toc    *toc;
	WsEncoderShared *shared;
	shm_mq	   *batches;
	shm_mq	   *done;
	BackgroundWorker worker;
	BgwHandleStatus status;
	pid_t		pid;

	memset(link, 0, sizeof(*link));
	link->index = index;

	shm_toc_initialize_estimator(&estimator);
	shm_toc_estimate_chunk(&estimator, sizeof(WsEncoderShared));
	shm_toc_estimate_chunk(&estimator, WS_ENCODER_BATCH_QUEUE_SIZE);
	shm_toc_estimate_chunk(&estimator, WS_ENCODER_DONE_QUEUE_SIZE);
	shm_toc_estimate_keys(&estimator, 3);
	size = shm_toc_estimate(&estimator);

	link->segment = dsm_create(size, 0);
	/* the segment lives as long as the link, not a resource owner */
	dsm_pin_mapping(link->segment);
	toc = shm_toc_create(WS_ENCODER_MAGIC, dsm_segment_address(link->segment),
						 size);

	shared = shm_toc_allocate(toc, sizeof(WsEncoderShared));
	shared->index = index;
	shared->database = MyDatabaseId;
	shm_toc_insert(toc, WS_ENCODER_KEY_SHARED, shared);

	batches = shm_mq_create(shm_toc_allocate(toc, WS_ENCODER_BATCH_QUEUE_SIZE),
							WS_ENCODER_BATCH_QUEUE_SIZE);
	shm_toc_insert(toc, WS_ENCODER_KEY_BATCHES, batches);
	shm_mq_set_sender(batches, MyProc);
	link->batches = shm_mq_attach(batches, link->segment, NULL);

	done = shm_mq_create(shm_toc_allocate(toc, WS_ENCODER_DONE_QUEUE_SIZE),
						 WS_ENCODER_DONE_QUEUE_SIZE);
	shm_toc_insert(toc, WS_ENCODER_KEY_DONE, done);
	shm_mq_set_receiver(done, MyProc);
	link->done = shm_mq_attach(done, link->segment, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "walship");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "walship_encoder_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "walship encoder %d", index + 1);
	snprintf(worker.bgw_type, BGW_MAXLEN, "walship encoder");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(link->segment));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &link->handle))
	{
		link->handle = NULL;
		link_detach(link);
		return false;
	}
	/* the queues now notice a worker that exits before attaching */
	shm_mq_set_handle(link->batches, link->handle);
	shm_mq_set_handle(link->done, link->handle);

	status = WaitForBackgroundWorkerStartup(link->handle, &pid);
	if (status != BGWH_STARTED)
	{
		link_detach(link);
		return false;
	}
	return true;
}

WsEncoders *
ws_encoders_start(MemoryContext context, int nworkers)
{
	WsEncoders *encoders = MemoryContextAllocZero(context, sizeof(WsEncoders));
	MemoryContext old = MemoryContextSwitchTo(context);
	int			started = 0;

	encoders->links = palloc0(sizeof(WsEncoderLink) * nworkers);
	/* numbers of an earlier decoding worker mean nothing now */
	ws_shared_set_encoders_done_below(0);
	while (started < nworkers &&
		   link_start(&encoders->links[started], started))
		started++;
	MemoryContextSwitchTo(old);

	if (started < nworkers)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("walship could start only %d of %d encoder workers",
						started, nworkers),
				 started == 0 ?
				 errdetail("The decoding worker encodes and sends the batches itself.") :
				 errdetail("The encoder workers that started do the work."),
				 errhint("Raise max_worker_processes: walship's encoder workers count against it, as parallel query workers do.")));
	if (started == 0)
	{
		pfree(encoders->links);
		pfree(encoders);
		return NULL;
	}
	encoders->nworkers = started;
	ereport(LOG,
			(errmsg("walship started %d encoder workers", started)));
	return encoders;
}

/*
 * Stops the encoder workers, once nothing is pending (the caller makes
 * sure), e.g. for another walship.encoder_workers, and frees encoders.
 */
void
ws_encoders_stop(WsEncoders *encoders)
{
	for (int i = 0; i < encoders->nworkers; i++)
	{
		WsEncoderLink *link = &encoders->links[i];
		BackgroundWorkerHandle *handle = link->handle;

		/* detaching tells the encoder to exit; wait until it did */
		link->handle = NULL;
		link_detach(link);
		if (handle)
		{
			TerminateBackgroundWorker(handle);
			(void) WaitForBackgroundWorkerShutdown(handle);
			pfree(handle);
		}
	}
	pfree(encoders->links);
	pfree(encoders);
}

/* An encoder went away: start again from the slot (see the file header). */
static void
encoder_gone(WsEncoderLink *link)
{
	char		last_error[WS_MAX_ERROR_LEN];
	WsSharedTotals totals;

	ws_shared_get_totals(&totals, last_error, sizeof(last_error));
	ereport(ERROR,
			(errcode(ERRCODE_ADMIN_SHUTDOWN),
			 errmsg("walship encoder worker %d exited%s%s", link->index + 1,
					ws_shared_get_state() == WS_STATE_ERROR && last_error[0] ? ": " : "",
					ws_shared_get_state() == WS_STATE_ERROR ? last_error : ""),
			 errdetail("The decoding worker restarts and sends every batch not acknowledged again.")));
}

/* Continues writing link's batch into its queue; true once it is all in. */
static bool
continue_send(WsEncoderLink *link)
{
	shm_mq_iovec iov[2];
	shm_mq_result result;

	iov[0].data = (const char *) &link->header;
	iov[0].len = sizeof(WsEncoderBatch);
	iov[1].data = link->sending->records.data;
	iov[1].len = link->sending->records.len;
	result = shm_mq_sendv(link->batches, iov, 2, true, true);
	if (result == SHM_MQ_DETACHED)
		encoder_gone(link);
	if (result == SHM_MQ_WOULD_BLOCK)
		return false;
	link->sending = NULL;
	return true;
}

static void
start_send(WsEncoderLink *link, WsBatch *batch)
{
	memset(&link->header, 0, sizeof(link->header));
	link->header.seq = batch->seq;
	link->header.confirm_lsn = batch->confirm_lsn;
	link->header.nchanges = batch->nchanges;
	link->header.oldest_commit_time = batch->oldest_commit_time;
	strlcpy(link->header.first_change, batch->first_change, WS_CHANGE_ID_LEN);
	strlcpy(link->header.last_change, batch->last_change, WS_CHANGE_ID_LEN);
	link->sending = batch;
	link->outstanding++;
	/* handed over: neither sent here nor handed over again */
	batch->status = WS_BATCH_SENDING;
	(void) continue_send(link);
}

/* The encoder that takes the next batch, or NULL while all are full. */
static WsEncoderLink *
pick_link(WsEncoders *encoders)
{
	WsEncoderLink *best = NULL;

	for (int i = 0; i < encoders->nworkers; i++)
	{
		WsEncoderLink *link = &encoders->links[i];

		if (link->sending != NULL ||
			link->outstanding >= ws_encoders_max_outstanding())
			continue;
		if (best == NULL || link->outstanding < best->outstanding)
			best = link;
	}
	return best;
}

static void
mark_done(WsBatcher *batcher, WsEncoderLink *link, uint64 seq)
{
	ListCell   *lc;

	foreach(lc, batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);

		if (batch->seq == seq)
		{
			if (batch->status != WS_BATCH_SENDING)
				elog(ERROR, "walship encoder worker %d finished batch " UINT64_FORMAT " twice",
					 link->index + 1, seq);
			batch->status = WS_BATCH_DONE;
			link->outstanding--;
			return;
		}
	}
	elog(ERROR, "walship encoder worker %d finished unknown batch " UINT64_FORMAT,
		 link->index + 1, seq);
}

void
ws_encoders_pump(WsEncoders *encoders, WsBatcher *batcher, int timeout_ms)
{
	bool		moved = false;
	ListCell   *lc;

	/* what the encoders finished */
	for (int i = 0; i < encoders->nworkers; i++)
	{
		WsEncoderLink *link = &encoders->links[i];

		for (;;)
		{
			Size		nbytes;
			void	   *data;
			shm_mq_result result = shm_mq_receive(link->done, &nbytes, &data,
												  true);
			WsEncoderDone done;

			if (result == SHM_MQ_WOULD_BLOCK)
				break;
			if (result == SHM_MQ_DETACHED)
				encoder_gone(link);
			if (nbytes != sizeof(WsEncoderDone))
				elog(ERROR, "walship encoder worker %d sent a message of %zu bytes",
					 link->index + 1, nbytes);
			memcpy(&done, data, sizeof(done));
			if (done.held)
			{
				if (encoders->held_seq == 0 || done.seq < encoders->held_seq)
					encoders->held_seq = done.seq;
				continue;
			}
			mark_done(batcher, link, done.seq);
			if (done.seq == encoders->held_seq)
				encoders->held_seq = 0;
			moved = true;
		}
	}

	/* which batches are done, for delivery.c's ClickHouse table changes */
	{
		uint64		done_below = batcher->next_seq;

		foreach(lc, batcher->queue)
		{
			WsBatch    *batch = lfirst(lc);

			if (batch->status != WS_BATCH_DONE)
			{
				done_below = batch->seq;
				break;
			}
		}
		ws_shared_set_encoders_done_below(done_below);
	}

	/* batches partly in a queue go on first */
	for (int i = 0; i < encoders->nworkers; i++)
		if (encoders->links[i].sending != NULL &&
			continue_send(&encoders->links[i]))
			moved = true;

	/* then sealed batches, oldest first, while an encoder has room */
	foreach(lc, batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);
		WsEncoderLink *link;

		if (batch->status == WS_BATCH_OPEN)
			break;
		if (batch->status != WS_BATCH_READY)
			continue;
		/* under on_rejected = stop nothing after a rejected batch goes */
		if (encoders->held_seq != 0 && batch->seq > encoders->held_seq)
			break;
		link = pick_link(encoders);
		if (link == NULL)
			break;
		start_send(link, batch);
		moved = true;
	}

	ws_shared_set_pipeline(0, ws_batcher_oldest_commit(batcher));

	if (!moved && timeout_ms > 0)
	{
		int			rc = WaitLatch(MyLatch,
								   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   timeout_ms, PG_WAIT_EXTENSION);

		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * The encoder worker
 * ---------------------------------------------------------------------
 */
typedef struct WsEncoderWorker
{
	MemoryContext context;
	WsHttpClient *http;
	WsBatcher  *batcher;
	WsDelivery *delivery;
	shm_mq_handle *batches;		/* we receive */
	shm_mq_handle *done;		/* we send */
	uint64		reported_held;	/* seq last reported held, 0: none */
	int			reported_batches;	/* in pg_stat_activity, -1: nothing */
	int			reported_inflight;
} WsEncoderWorker;

static void
encoder_shmem_exit(int code, Datum arg)
{
	ws_shared_encoder_exited();
}

/* Appends a batch from the queue to this encoder's batches. */
static void
take_batch(WsEncoderWorker *encoder, const char *data, Size nbytes)
{
	WsBatcher  *batcher = encoder->batcher;
	MemoryContext old;
	WsEncoderBatch header;
	WsBatch    *batch;
	Size		len;

	if (nbytes < sizeof(WsEncoderBatch) ||
		nbytes - sizeof(WsEncoderBatch) >= MaxAllocSize)
		elog(ERROR, "walship encoder received a message of %zu bytes", nbytes);
	memcpy(&header, data, sizeof(header));
	len = nbytes - sizeof(WsEncoderBatch);

	old = MemoryContextSwitchTo(batcher->context);
	batch = palloc0(sizeof(WsBatch));
	batch->seq = batcher->next_seq++;
	batch->status = WS_BATCH_READY;
	batch->records.data = palloc(len + 1);
	memcpy(batch->records.data, data + sizeof(WsEncoderBatch), len);
	batch->records.data[len] = '\0';
	batch->records.len = (int) len;
	batch->records.maxlen = (int) len + 1;
	batch->nchanges = header.nchanges;
	/*
	 * Only walship.metrics() reads it here (sent and acknowledged
	 * positions): the encoder confirms nothing, the decoding worker does.
	 */
	batch->confirm_lsn = header.confirm_lsn;
	/* reported by ws_batcher_take_released() once done, in order */
	batch->backfill_tag = header.seq;
	batch->opened_at = GetCurrentTimestamp();
	batch->oldest_commit_time = header.oldest_commit_time;
	strlcpy(batch->first_change, header.first_change, WS_CHANGE_ID_LEN);
	strlcpy(batch->last_change, header.last_change, WS_CHANGE_ID_LEN);
	batcher->queue = lappend(batcher->queue, batch);
	MemoryContextSwitchTo(old);
}

static void
send_done(WsEncoderWorker *encoder, uint64 seq, bool held)
{
	WsEncoderDone done;

	memset(&done, 0, sizeof(done));
	done.seq = seq;
	done.held = held;
	/* never blocks long: the queue holds far more than we may have */
	if (shm_mq_send(encoder->done, sizeof(done), &done, false, true) ==
		SHM_MQ_DETACHED)
		proc_exit(0);
}

/*
 * Tells the decoding worker about the oldest batch rejected under
 * walship.on_rejected = stop, once: it hands out nothing after it, as
 * delivery.c starts nothing after it here.  A batch split by a 413 reports
 * as the batch it came from (the half that carries its seq).
 */
static void
report_held(WsEncoderWorker *encoder)
{
	ListCell   *lc;
	bool		rejected = false;

	if (walship_on_rejected != WS_ON_REJECTED_STOP)
		return;
	foreach(lc, encoder->batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);
		ListCell   *plc;

		if (!rejected && batch->status != WS_BATCH_DONE)
		{
			foreach(plc, batch->parts)
			{
				WsBatchPart *part = lfirst(plc);

				if (part->rejected && part->status != WS_BATCH_DONE)
					rejected = true;
			}
		}
		if (rejected && batch->backfill_tag != 0)
		{
			if (batch->backfill_tag != encoder->reported_held)
			{
				encoder->reported_held = batch->backfill_tag;
				send_done(encoder, batch->backfill_tag, true);
			}
			return;
		}
	}
}

/* Reports the batches done, in order, once their dead letters are written. */
static void
report_done(WsEncoderWorker *encoder)
{
	List	   *seqs;
	ListCell   *lc;

	ws_delivery_write_dead_letters(encoder->delivery);
	(void) ws_batcher_release_done(encoder->batcher);
	seqs = ws_batcher_take_released(encoder->batcher);
	foreach(lc, seqs)
		send_done(encoder, *(uint64 *) lfirst(lc), false);
	list_free_deep(seqs);
	report_held(encoder);
}

static void
report_activity(WsEncoderWorker *encoder)
{
	int			batches = list_length(encoder->batcher->queue);
	int			inflight = ws_http_inflight(encoder->http);
	char		activity[128];

	if (batches == encoder->reported_batches &&
		inflight == encoder->reported_inflight)
		return;
	encoder->reported_batches = batches;
	encoder->reported_inflight = inflight;
	snprintf(activity, sizeof(activity),
			 "walship encoder: %d batches, %d requests in flight",
			 batches, inflight);
	pgstat_report_activity(batches > 0 ? STATE_RUNNING : STATE_IDLE, activity);
}

static void
encoder_loop(WsEncoderWorker *encoder)
{
	for (;;)
	{
		bool		received = false;
		int			inflight;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ws_worker_configure_http(encoder->http, encoder->context);
		}
		else if (ws_secrets_reread_due())
			ws_worker_configure_http(encoder->http, encoder->context);

		/* every batch waiting; the decoding worker bounds their number */
		for (;;)
		{
			Size		nbytes;
			void	   *data;
			shm_mq_result result = shm_mq_receive(encoder->batches, &nbytes,
												  &data, true);

			if (result == SHM_MQ_WOULD_BLOCK)
				break;
			if (result == SHM_MQ_DETACHED)
			{
				/* the decoding worker exited: it sends these again */
				proc_exit(0);
			}
			take_batch(encoder, data, nbytes);
			received = true;
		}

		inflight = ws_http_inflight(encoder->http);
		ws_delivery_pump(encoder->delivery,
						 !received && inflight > 0 ? WS_ENCODER_POLL_MS : 0);
		report_done(encoder);
		report_activity(encoder);

		if (!received && ws_http_inflight(encoder->http) == 0)
		{
			int			rc = WaitLatch(MyLatch,
									   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									   encoder->batcher->queue != NIL ?
									   WS_ENCODER_POLL_MS : 1000,
									   PG_WAIT_EXTENSION);

			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
		}
	}
}

void
walship_encoder_main(Datum main_arg)
{
	dsm_segment *segment;
	shm_toc    *toc;
	WsEncoderShared *shared;
	shm_mq	   *batches;
	shm_mq	   *done;
	WsEncoderWorker *encoder;
	MemoryContext context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	segment = dsm_attach(DatumGetUInt32(main_arg));
	if (segment == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("walship encoder could not map its dynamic shared memory segment")));
	toc = shm_toc_attach(WS_ENCODER_MAGIC, dsm_segment_address(segment));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("walship encoder found a bad magic number in its dynamic shared memory segment")));
	shared = shm_toc_lookup(toc, WS_ENCODER_KEY_SHARED, false);
	ws_shared_encoder_index = shared->index;
	on_shmem_exit(encoder_shmem_exit, (Datum) 0);

	batches = shm_toc_lookup(toc, WS_ENCODER_KEY_BATCHES, false);
	shm_mq_set_receiver(batches, MyProc);
	done = shm_toc_lookup(toc, WS_ENCODER_KEY_DONE, false);
	shm_mq_set_sender(done, MyProc);

	/* for walship.dead_letter, written here */
	BackgroundWorkerInitializeConnectionByOid(shared->database, InvalidOid, 0);
	pgstat_report_appname("walship encoder");
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "walship encoder");

	context = AllocSetContextCreate(TopMemoryContext, "walship encoder",
									ALLOCSET_DEFAULT_SIZES);
	encoder = MemoryContextAllocZero(context, sizeof(WsEncoderWorker));
	encoder->context = context;
	encoder->batches = shm_mq_attach(batches, segment, NULL);
	encoder->done = shm_mq_attach(done, segment, NULL);
	encoder->http = ws_http_client_create();
	encoder->batcher = ws_batcher_create(context);
	encoder->delivery = ws_delivery_create(context, encoder->http,
										   encoder->batcher);
	encoder->reported_batches = -1;
	ws_worker_configure_http(encoder->http, context);

	/* an error ends this worker, and so the decoding worker's run */
	PG_TRY();
	{
		encoder_loop(encoder);
	}
	PG_CATCH();
	{
		MemoryContext error_context = MemoryContextSwitchTo(context);
		ErrorData  *edata = CopyErrorData();

		MemoryContextSwitchTo(error_context);
		ws_shared_set_error(edata->message);
		ws_shared_set_state(WS_STATE_ERROR);
		PG_RE_THROW();
	}
	PG_END_TRY();
}
