/*-------------------------------------------------------------------------
 *
 * shared_state.h
 *	  The shipping worker's state in shared memory, read by walship.status.
 *
 * IDENTIFICATION
 *	  src/shared_state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_SHARED_STATE_H
#define WALSHIP_SHARED_STATE_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

typedef enum WsWorkerState
{
	WS_STATE_STARTING,
	WS_STATE_STREAMING,			/* shipping, or caught up and waiting for WAL */
	WS_STATE_BACKOFF,			/* waiting to retry a failed request */
	WS_STATE_PAUSED,
	WS_STATE_DISABLED,			/* walship.enabled = off */
	WS_STATE_UNCONFIGURED,		/* walship.endpoint is empty */
	WS_STATE_ERROR,				/* stopped by an error; see last_error */
	WS_STATE_STANDBY			/* the server is a standby: waits for promotion */
} WsWorkerState;

#define WS_MAX_ERROR_LEN	512

/*
 * The commit-to-acknowledgement latency histogram (walship.metrics()):
 * upper bounds in seconds of its buckets, not counting +Inf.
 */
#define WS_ACK_LATENCY_BUCKETS	16
extern const double ws_ack_latency_bounds[WS_ACK_LATENCY_BUCKETS];

typedef struct WsSharedState
{
	slock_t		mutex;			/* protects everything below */

	bool		pause_requested;
	uint64		backfill_requests;	/* bumped by walship.backfill() */
	int			worker_pid;		/* 0 when not running */
	Latch	   *worker_latch;	/* to wake the worker */

	WsWorkerState state;
	TimestampTz started_at;
	XLogRecPtr	confirmed_lsn;	/* slot confirmed up to here */
	XLogRecPtr	decoded_lsn;	/* WAL read up to here */
	TimestampTz oldest_pending_commit;	/* 0 when nothing is pending */
	int64		batches_shipped;
	int64		changes_shipped;
	int64		bytes_shipped;	/* request bodies as sent */
	int64		retries;
	int64		rejected_batches;
	int			inflight;
	int			encoder_inflight[16];	/* per encoder worker, see
										 * ws_shared_encoder_index */
	bool		encoder_parked[16]; /* an encoder's request waits to retry */
	uint64		encoders_done_below;	/* every batch the decoding worker
										 * numbered lower is done (encoder
										 * workers; 0: none known) */
	uint32		held_endpoint_hash; /* a Retry-After holds the endpoint */
	TimestampTz held_until;		/* with this hash until then */
	int			last_http_status;
	TimestampTz last_success_at;
	TimestampTz last_error_at;
	char		last_error[WS_MAX_ERROR_LEN];

	/*
	 * For walship.metrics(): the ends of the last transactions sent and
	 * acknowledged (each at least confirmed_lsn), and the commit-to-ack
	 * latency histogram, counts per bucket (the last one +Inf), not
	 * cumulative.  Since the server started.
	 */
	XLogRecPtr	sent_lsn;
	XLogRecPtr	acknowledged_lsn;
	uint64		ack_latency_counts[WS_ACK_LATENCY_BUCKETS + 1];
	uint64		ack_latency_count;
	double		ack_latency_sum;	/* seconds */

	/* the last lost slot's gap and resync, as walship.progress has them */
	XLogRecPtr	gap_start_lsn;
	XLogRecPtr	gap_end_lsn;
	TimestampTz gap_detected_at;
	int64		resyncs;
	char		resync_state[16];

	/* walship.max_retained_wal: the last slot the worker gave up */
	bool		slot_given_up;	/* and no new slot since */
	TimestampTz slot_given_up_at;	/* 0: never since the server started */
	XLogRecPtr	given_up_confirmed; /* it was confirmed up to here */
	XLogRecPtr	given_up_end;	/* WAL was written up to here then */
} WsSharedState;

extern WsSharedState *ws_shared;

extern void ws_shared_state_request(void);
extern void ws_shared_state_startup(void);
extern const char *ws_worker_state_name(WsWorkerState state);

#define WS_STATE_BIT(state)	(1U << (state))

/* Errors and state; never pass secrets. */
extern void ws_shared_set_error(const char *message);
extern void ws_shared_clear_error(void);
extern void ws_shared_set_state(WsWorkerState state);
extern WsWorkerState ws_shared_get_state(void);
extern bool ws_shared_change_state(uint32 from, WsWorkerState to);
extern void ws_shared_report_problem(WsWorkerState state, const char *message,
									 const char *hint);
extern void ws_shared_report_problem_detail(WsWorkerState state,
											const char *message,
											const char *detail,
											const char *hint);
extern void ws_shared_set_gap(XLogRecPtr start_lsn, XLogRecPtr end_lsn,
							  TimestampTz detected_at, int64 resyncs,
							  const char *resync_state);
extern void ws_shared_set_resync_state(const char *resync_state);

/* The worker's life and progress */
extern void ws_shared_worker_started(int pid, Latch *latch);
extern void ws_shared_worker_exited(void);
extern bool ws_shared_pause_requested(void);
extern void ws_shared_set_confirmed_lsn(XLogRecPtr lsn);
extern void ws_shared_set_decoded_lsn(XLogRecPtr lsn);
extern void ws_shared_start_ladder(XLogRecPtr confirmed);
extern void ws_shared_set_pipeline(int inflight,
								   TimestampTz oldest_pending_commit);

/*
 * In an encoder worker (encoder.c), its index: ws_shared_set_pipeline()
 * then sets only its requests in flight, which walship.status adds up.
 * -1 in the decoding worker.
 */
extern int	ws_shared_encoder_index;
extern void ws_shared_encoder_exited(void);

/*
 * Backoff and Retry-After across processes: the state is backoff while any
 * process has a request waiting to retry; a Retry-After holds the endpoint
 * for every process.
 */
extern void ws_shared_set_parked(bool parked);
extern void ws_shared_hold_endpoint(const char *endpoint, TimestampTz until);
extern bool ws_shared_endpoint_held(const char *endpoint, TimestampTz now);

/*
 * With encoder workers, every batch the decoding worker numbered below this
 * is done (0: none known); ClickHouse tables change only past it.
 */
extern void ws_shared_set_encoders_done_below(uint64 seq);
extern uint64 ws_shared_encoders_done_below(void);

/* Delivery counters */
extern void ws_shared_note_http_status(long status);
extern void ws_shared_count_acknowledged(int64 bytes, TimestampTz at);
extern void ws_shared_count_batch(int nchanges);
extern void ws_shared_count_retry(void);
extern void ws_shared_count_rejected(void);
extern void ws_shared_note_sent(XLogRecPtr end_lsn);
extern void ws_shared_note_batch_done(XLogRecPtr end_lsn,
									  TimestampTz oldest_commit,
									  TimestampTz at);

/* For walship.status */
extern void ws_shared_snapshot(WsSharedState *snapshot);

/* The totals walship.progress keeps */
typedef struct WsSharedTotals
{
	int64		batches;
	int64		changes;
	int64		bytes;
	int64		retries;
	int64		rejected_batches;
	TimestampTz last_success_at;	/* 0 if never */
} WsSharedTotals;

extern void ws_shared_restore_totals(const WsSharedTotals *totals);
extern void ws_shared_get_totals(WsSharedTotals *totals, char *last_error,
								 Size size);
extern void ws_shared_resolve_error(const char *message,
									bool leave_error_state);
extern void ws_shared_leave_error_state(void);

/* The WAL budget (wal_budget.c) */
extern void ws_shared_note_slot_given_up(XLogRecPtr confirmed, XLogRecPtr end);
extern bool ws_shared_take_slot_given_up(XLogRecPtr *confirmed,
										 XLogRecPtr *end);

/* Requests from other backends; they wake the worker */
extern void ws_shared_request_pause(bool paused);
extern void ws_shared_request_backfill(void);
extern uint64 ws_shared_backfill_requests(void);

#endif							/* WALSHIP_SHARED_STATE_H */
