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
	WS_STATE_ERROR				/* stopped by an error; see last_error */
} WsWorkerState;

#define WS_MAX_ERROR_LEN	512

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
	int			last_http_status;
	TimestampTz last_success_at;
	TimestampTz last_error_at;
	char		last_error[WS_MAX_ERROR_LEN];
} WsSharedState;

extern WsSharedState *ws_shared;

extern void ws_shared_state_request(void);
extern void ws_shared_state_startup(void);
extern const char *ws_worker_state_name(WsWorkerState state);

/* Records an error for walship.status; never pass secrets. */
extern void ws_shared_set_error(const char *message);

#endif							/* WALSHIP_SHARED_STATE_H */
