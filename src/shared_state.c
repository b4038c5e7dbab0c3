/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Shared memory for the shipping worker's state: allocation and the
 *	  few helpers that write it.
 *
 * The worker is the only writer of its progress fields; SQL functions read
 * them (walship.status) and set pause_requested.  A spinlock guards every
 * access; critical sections are a few assignments long.
 *
 * IDENTIFICATION
 *	  src/shared_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "shared_state.h"

WsSharedState *ws_shared = NULL;

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
