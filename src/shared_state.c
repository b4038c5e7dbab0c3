/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Shared memory for the shipping worker's state: allocation, and every
 *	  read and write of it the worker makes.
 *
 * The worker is the only writer of its progress fields; SQL functions read
 * them (walship.status, through ws_shared_snapshot) and set
 * pause_requested.  A spinlock guards every access; critical sections are
 * a few assignments long, and only the functions here take it, so the
 * worker's code never holds it.
 *
 * IDENTIFICATION
 *	  src/shared_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "shared_state.h"

WsSharedState *ws_shared = NULL;
int			ws_shared_encoder_index = -1;

/*
 * Upper bounds (seconds) of the commit-to-ack latency buckets; fixed, as
 * README.md documents them.
 */
const double ws_ack_latency_bounds[WS_ACK_LATENCY_BUCKETS] = {
	0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600
};

void
ws_shared_state_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(WsSharedState)));
}

void
ws_shared_state_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ws_shared = ShmemInitStruct("walship", sizeof(WsSharedState), &found);
	if (!found)
	{
		memset(ws_shared, 0, sizeof(WsSharedState));
		SpinLockInit(&ws_shared->mutex);
		ws_shared->state = WS_STATE_STARTING;
	}
	LWLockRelease(AddinShmemInitLock);
}

const char *
ws_worker_state_name(WsWorkerState state)
{
	switch (state)
	{
		case WS_STATE_STARTING:
			return "starting";
		case WS_STATE_STREAMING:
			return "streaming";
		case WS_STATE_BACKOFF:
			return "backoff";
		case WS_STATE_PAUSED:
			return "paused";
		case WS_STATE_DISABLED:
			return "disabled";
		case WS_STATE_UNCONFIGURED:
			return "unconfigured";
		case WS_STATE_ERROR:
			return "error";
		case WS_STATE_STANDBY:
			return "standby";
	}
	return "unknown";
}

void
ws_shared_set_error(const char *message)
{
	SpinLockAcquire(&ws_shared->mutex);
	strlcpy(ws_shared->last_error, message, WS_MAX_ERROR_LEN);
	ws_shared->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&ws_shared->mutex);
}

/* Clears the error shown in walship.status. */
void
ws_shared_clear_error(void)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->last_error[0] = '\0';
	SpinLockRelease(&ws_shared->mutex);
}

void
ws_shared_set_state(WsWorkerState state)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->state = state;
	SpinLockRelease(&ws_shared->mutex);
}

WsWorkerState
ws_shared_get_state(void)
{
	WsWorkerState state;

	SpinLockAcquire(&ws_shared->mutex);
	state = ws_shared->state;
	SpinLockRelease(&ws_shared->mutex);
	return state;
}

/*
 * Sets the state to to, but only if it is one of the states in from (a
 * bitmask of 1 << WsWorkerState).  Returns whether it changed.
 */
bool
ws_shared_change_state(uint32 from, WsWorkerState to)
{
	bool		changed = false;

	SpinLockAcquire(&ws_shared->mutex);
	if ((from & WS_STATE_BIT(ws_shared->state)) != 0 && ws_shared->state != to)
	{
		ws_shared->state = to;
		changed = true;
	}
	SpinLockRelease(&ws_shared->mutex);
	return changed;
}

/*
 * Reports a condition the operator must fix, in the log (once, while it
 * lasts) and in walship.status.  Never pass secrets.
 */
void
ws_shared_report_problem(WsWorkerState state, const char *message,
						 const char *hint)
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
	ws_shared_set_state(state);
}

/* The same, with a detail for the log. */
void
ws_shared_report_problem_detail(WsWorkerState state, const char *message,
								const char *detail, const char *hint)
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
				 detail ? errdetail("%s", detail) : 0,
				 hint ? errhint("%s", hint) : 0));
		ws_shared_set_error(message);
	}
	ws_shared_set_state(state);
}

/* The last gap and resync, for walship.status. */
void
ws_shared_set_gap(XLogRecPtr start_lsn, XLogRecPtr end_lsn,
				  TimestampTz detected_at, int64 resyncs,
				  const char *resync_state)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->gap_start_lsn = start_lsn;
	ws_shared->gap_end_lsn = end_lsn;
	ws_shared->gap_detected_at = detected_at;
	ws_shared->resyncs = resyncs;
	strlcpy(ws_shared->resync_state, resync_state,
			sizeof(ws_shared->resync_state));
	SpinLockRelease(&ws_shared->mutex);
}

void
ws_shared_set_resync_state(const char *resync_state)
{
	SpinLockAcquire(&ws_shared->mutex);
	strlcpy(ws_shared->resync_state, resync_state,
			sizeof(ws_shared->resync_state));
	SpinLockRelease(&ws_shared->mutex);
}

/* The worker announces itself: it starts, and its latch can be set. */
void
ws_shared_worker_started(int pid, Latch *latch)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->worker_pid = pid;
	ws_shared->worker_latch = latch;
	ws_shared->state = WS_STATE_STARTING;
	ws_shared->started_at = GetCurrentTimestamp();
	SpinLockRelease(&ws_shared->mutex);
}

/* The worker is exiting: nothing of it is running any more. */
void
ws_shared_worker_exited(void)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->worker_pid = 0;
	ws_shared->worker_latch = NULL;
	ws_shared->inflight = 0;
	SpinLockRelease(&ws_shared->mutex);
}

/* An encoder worker is exiting: it has no request in flight any more. */
void
ws_shared_encoder_exited(void)
{
	if (ws_shared_encoder_index < 0)
		return;
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->encoder_inflight[ws_shared_encoder_index] = 0;
	ws_shared->encoder_parked[ws_shared_encoder_index] = false;
	SpinLockRelease(&ws_shared->mutex);
}

/*
 * With encoder workers: every batch the decoding worker numbered below seq
 * is done, in whichever process it was sent.  delivery.c changes a
 * ClickHouse table only once every batch before the one that needs it is.
 */
void
ws_shared_set_encoders_done_below(uint64 seq)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->encoders_done_below = seq;
	SpinLockRelease(&ws_shared->mutex);
}

uint64
ws_shared_encoders_done_below(void)
{
	uint64		seq;

	SpinLockAcquire(&ws_shared->mutex);
	seq = ws_shared->encoders_done_below;
	SpinLockRelease(&ws_shared->mutex);
	return seq;
}

/*
 * Whether this process has a request waiting to retry (or a Retry-After
 * holding the endpoint): streaming becomes backoff, and backoff becomes
 * streaming again once no process, encoder workers included, has one.
 */
void
ws_shared_set_parked(bool parked)
{
	SpinLockAcquire(&ws_shared->mutex);
	if (ws_shared_encoder_index >= 0)
		ws_shared->encoder_parked[ws_shared_encoder_index] = parked;
	for (int i = 0; i < (int) lengthof(ws_shared->encoder_parked); i++)
		parked = parked || ws_shared->encoder_parked[i];
	if (parked && ws_shared->state == WS_STATE_STREAMING)
		ws_shared->state = WS_STATE_BACKOFF;
	else if (!parked && ws_shared->state == WS_STATE_BACKOFF)
		ws_shared->state = WS_STATE_STREAMING;
	SpinLockRelease(&ws_shared->mutex);
}

static uint32
endpoint_hash(const char *endpoint)
{
	return hash_bytes((const unsigned char *) endpoint, strlen(endpoint));
}

/* A Retry-After holds endpoint until then, for every process. */
void
ws_shared_hold_endpoint(const char *endpoint, TimestampTz until)
{
	uint32		hash = endpoint_hash(endpoint);

	SpinLockAcquire(&ws_shared->mutex);
	if (ws_shared->held_endpoint_hash != hash || ws_shared->held_until < until)
	{
		ws_shared->held_endpoint_hash = hash;
		ws_shared->held_until = until;
	}
	SpinLockRelease(&ws_shared->mutex);
}

/* Whether a Retry-After any process received holds endpoint at now. */
bool
ws_shared_endpoint_held(const char *endpoint, TimestampTz now)
{
	uint32		hash = endpoint_hash(endpoint);
	bool		held;

	SpinLockAcquire(&ws_shared->mutex);
	held = ws_shared->held_until > now && ws_shared->held_endpoint_hash == hash;
	SpinLockRelease(&ws_shared->mutex);
	return held;
}

bool
ws_shared_pause_requested(void)
{
	bool		paused;

	SpinLockAcquire(&ws_shared->mutex);
	paused = ws_shared->pause_requested;
	SpinLockRelease(&ws_shared->mutex);
	return paused;
}

/*
 * The slot is confirmed up to lsn: everything before it was acknowledged,
 * or had nothing to ship, so it counts as sent and acknowledged too.
 */
void
ws_shared_set_confirmed_lsn(XLogRecPtr lsn)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->confirmed_lsn = lsn;
	if (ws_shared->acknowledged_lsn < lsn)
		ws_shared->acknowledged_lsn = lsn;
	if (ws_shared->sent_lsn < lsn)
		ws_shared->sent_lsn = lsn;
	SpinLockRelease(&ws_shared->mutex);
}

/*
 * Decoding (re)starts at the slot's confirmed position: what was sent or
 * acknowledged past it before is sent again.
 */
void
ws_shared_start_ladder(XLogRecPtr confirmed)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->confirmed_lsn = confirmed;
	ws_shared->acknowledged_lsn = confirmed;
	ws_shared->sent_lsn = confirmed;
	SpinLockRelease(&ws_shared->mutex);
}

void
ws_shared_set_decoded_lsn(XLogRecPtr lsn)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->decoded_lsn = lsn;
	SpinLockRelease(&ws_shared->mutex);
}

/* Requests in flight and the oldest commit not yet acknowledged. */
void
ws_shared_set_pipeline(int inflight, TimestampTz oldest_pending_commit)
{
	SpinLockAcquire(&ws_shared->mutex);
	if (ws_shared_encoder_index >= 0)
		ws_shared->encoder_inflight[ws_shared_encoder_index] = inflight;
	else
	{
		ws_shared->inflight = inflight;
		ws_shared->oldest_pending_commit = oldest_pending_commit;
	}
	SpinLockRelease(&ws_shared->mutex);
}

/* An HTTP response (or 0: none) arrived. */
void
ws_shared_note_http_status(long status)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->last_http_status = (int) status;
	SpinLockRelease(&ws_shared->mutex);
}

/* The endpoint acknowledged a request with a body of bytes. */
void
ws_shared_count_acknowledged(int64 bytes, TimestampTz at)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->bytes_shipped += bytes;
	ws_shared->last_success_at = at;
	SpinLockRelease(&ws_shared->mutex);
}

/* Every request of a batch of nchanges changes is done. */
void
ws_shared_count_batch(int nchanges)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->batches_shipped++;
	ws_shared->changes_shipped += nchanges;
	SpinLockRelease(&ws_shared->mutex);
}

void
ws_shared_count_retry(void)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->retries++;
	SpinLockRelease(&ws_shared->mutex);
}

void
ws_shared_count_rejected(void)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->rejected_batches++;
	SpinLockRelease(&ws_shared->mutex);
}

/*
 * A request of a batch ending with the commit at end_lsn was sent (invalid
 * for a batch that ends inside a transaction).  Once per request start.
 */
void
ws_shared_note_sent(XLogRecPtr end_lsn)
{
	if (XLogRecPtrIsInvalid(end_lsn))
		return;
	SpinLockAcquire(&ws_shared->mutex);
	if (ws_shared->sent_lsn < end_lsn)
		ws_shared->sent_lsn = end_lsn;
	SpinLockRelease(&ws_shared->mutex);
}

/*
 * Every request of a batch is done at `at`: acknowledged, or set aside as
 * a dead letter.  Raises acknowledged_lsn to the end of its last commit
 * (when it has one), and records its commit-to-ack latency: from the
 * commit of its oldest transaction (when it has one: a batch of backfilled
 * rows alone has none).  Once per batch.
 */
void
ws_shared_note_batch_done(XLogRecPtr end_lsn, TimestampTz oldest_commit,
						  TimestampTz at)
{
	double		seconds = 0;
	int			bucket = 0;

	if (oldest_commit != 0)
	{
		seconds = Max(0, at - oldest_commit) / 1000000.0;
		while (bucket < WS_ACK_LATENCY_BUCKETS &&
			   seconds > ws_ack_latency_bounds[bucket])
			bucket++;
	}

	SpinLockAcquire(&ws_shared->mutex);
	if (!XLogRecPtrIsInvalid(end_lsn))
	{
		if (ws_shared->acknowledged_lsn < end_lsn)
			ws_shared->acknowledged_lsn = end_lsn;
		if (ws_shared->sent_lsn < end_lsn)
			ws_shared->sent_lsn = end_lsn;
	}
	if (oldest_commit != 0)
	{
		ws_shared->ack_latency_counts[bucket]++;
		ws_shared->ack_latency_count++;
		ws_shared->ack_latency_sum += seconds;
	}
	SpinLockRelease(&ws_shared->mutex);
}

/* A consistent copy of the whole state, for walship.status. */
void
ws_shared_snapshot(WsSharedState *snapshot)
{
	SpinLockAcquire(&ws_shared->mutex);
	memcpy(snapshot, ws_shared, sizeof(WsSharedState));
	SpinLockRelease(&ws_shared->mutex);
	/* the decoding worker's requests and its encoder workers' */
	for (int i = 0; i < (int) lengthof(snapshot->encoder_inflight); i++)
		snapshot->inflight += snapshot->encoder_inflight[i];
}

/* ---------------------------------------------------------------------
 * Counters kept in walship.progress
 * ---------------------------------------------------------------------
 */

/* Restores the totals walship.progress kept across restarts. */
void
ws_shared_restore_totals(const WsSharedTotals *totals)
{
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->batches_shipped = totals->batches;
	ws_shared->changes_shipped = totals->changes;
	ws_shared->bytes_shipped = totals->bytes;
	ws_shared->retries = totals->retries;
	ws_shared->rejected_batches = totals->rejected_batches;
	if (totals->last_success_at != 0)
		ws_shared->last_success_at = totals->last_success_at;
	SpinLockRelease(&ws_shared->mutex);
}

/* The totals and the last error, for walship.progress. */
void
ws_shared_get_totals(WsSharedTotals *totals, char *last_error, Size size)
{
	SpinLockAcquire(&ws_shared->mutex);
	totals->batches = ws_shared->batches_shipped;
	totals->changes = ws_shared->changes_shipped;
	totals->bytes = ws_shared->bytes_shipped;
	totals->retries = ws_shared->retries;
	totals->rejected_batches = ws_shared->rejected_batches;
	totals->last_success_at = ws_shared->last_success_at;
	strlcpy(last_error, ws_shared->last_error, size);
	SpinLockRelease(&ws_shared->mutex);
}

/*
 * Clears last_error if it still is the given message.  With
 * leave_error_state, the caller had put the worker into the "error" state
 * and the condition is over: the worker leaves it (for "starting", which
 * the main loop replaces by the delivery's state) even if another message
 * has replaced the caller's meanwhile.
 */
void
ws_shared_resolve_error(const char *message, bool leave_error_state)
{
	SpinLockAcquire(&ws_shared->mutex);
	if (strncmp(ws_shared->last_error, message, WS_MAX_ERROR_LEN - 1) == 0)
		ws_shared->last_error[0] = '\0';
	if (leave_error_state && ws_shared->state == WS_STATE_ERROR)
		ws_shared->state = WS_STATE_STARTING;
	SpinLockRelease(&ws_shared->mutex);
}

/* The condition that put the worker into the "error" state is over. */
void
ws_shared_leave_error_state(void)
{
	(void) ws_shared_change_state(WS_STATE_BIT(WS_STATE_ERROR),
								  WS_STATE_STARTING);
}

/* ---------------------------------------------------------------------
 * Requests from other backends
 * ---------------------------------------------------------------------
 */

/* walship.pause() and walship.resume(): sets the flag, wakes the worker. */
void
ws_shared_request_pause(bool paused)
{
	Latch	   *latch;

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->pause_requested = paused;
	latch = ws_shared->worker_latch;
	SpinLockRelease(&ws_shared->mutex);
	if (latch)
		SetLatch(latch);
}

/* walship.backfill(): counts a request and wakes the worker. */
void
ws_shared_request_backfill(void)
{
	Latch	   *latch;

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->backfill_requests++;
	latch = ws_shared->worker_latch;
	SpinLockRelease(&ws_shared->mutex);
	if (latch)
		SetLatch(latch);
}

/* How many backfill requests were made since the server started. */
uint64
ws_shared_backfill_requests(void)
{
	uint64		requests;

	SpinLockAcquire(&ws_shared->mutex);
	requests = ws_shared->backfill_requests;
	SpinLockRelease(&ws_shared->mutex);
	return requests;
}

/* ---------------------------------------------------------------------
 * The WAL budget
 * ---------------------------------------------------------------------
 */

/* The worker gave its slot up over walship.max_retained_wal. */
void
ws_shared_note_slot_given_up(XLogRecPtr confirmed, XLogRecPtr end)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->slot_given_up = true;
	ws_shared->slot_given_up_at = now;
	ws_shared->given_up_confirmed = confirmed;
	ws_shared->given_up_end = end;
	SpinLockRelease(&ws_shared->mutex);
}

/*
 * Whether a slot was given up and no new one streams since; if so, returns
 * where the old one was confirmed and how far WAL went then, and forgets
 * it (slot_given_up_at stays).
 */
bool
ws_shared_take_slot_given_up(XLogRecPtr *confirmed, XLogRecPtr *end)
{
	bool		given_up;

	SpinLockAcquire(&ws_shared->mutex);
	given_up = ws_shared->slot_given_up;
	*confirmed = ws_shared->given_up_confirmed;
	*end = ws_shared->given_up_end;
	ws_shared->slot_given_up = false;
	SpinLockRelease(&ws_shared->mutex);
	return given_up;
}
