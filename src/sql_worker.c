/*-------------------------------------------------------------------------
 *
 * sql_worker.c
 *	  SQL functions over the shipping worker: walship.status (through
 *	  walship.status_internal()), walship.pause() and walship.resume().
 *
 * They read and set the worker's shared state, which exists only when the
 * library is in shared_preload_libraries.  Endpoint details are shown to
 * superusers and members of walship_admin only; secrets never.
 *
 * IDENTIFICATION
 *	  src/sql_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "shared_state.h"

PG_FUNCTION_INFO_V1(walship_status_internal);
PG_FUNCTION_INFO_V1(walship_pause);
PG_FUNCTION_INFO_V1(walship_resume);
PG_FUNCTION_INFO_V1(walship_notify_backfill);

#define STATUS_COLUMNS 24

static void
require_worker(void)
{
	if (ws_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the walship worker is not available"),
				 errdetail("The walship library was not loaded through \"shared_preload_libraries\"."),
				 errhint("Add walship to shared_preload_libraries in postgresql.conf and restart the server.")));
}

static bool
is_walship_admin(void)
{
	Oid			admin = get_role_oid("walship_admin", true);

	return superuser() || (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin));
}

Datum
walship_status_internal(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[STATUS_COLUMNS];
	bool		nulls[STATUS_COLUMNS];
	WsSharedState snap;
	XLogRecPtr	current = GetFlushRecPtr(NULL);
	TimestampTz now = GetCurrentTimestamp();
	bool		admin = is_walship_admin();
	int			i = 0;

	require_worker();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	ws_shared_snapshot(&snap);

	memset(nulls, 0, sizeof(nulls));
	values[i++] = CStringGetTextDatum(snap.worker_pid == 0 && snap.state != WS_STATE_ERROR ?
									  "stopped" : ws_worker_state_name(snap.state));
	values[i++] = BoolGetDatum(snap.pause_requested);
	values[i] = Int32GetDatum(snap.worker_pid);
	nulls[i++] = snap.worker_pid == 0;
	values[i++] = CStringGetTextDatum(walship_database);
	values[i++] = CStringGetTextDatum(walship_slot_name);
	values[i++] = CStringGetTextDatum(walship_publication);
	if (admin && walship_endpoint[0] != '\0')
		values[i++] = CStringGetTextDatum(ws_endpoint_for_display(walship_endpoint));
	else
		nulls[i++] = true;
	values[i++] = CStringGetTextDatum(walship_format == WS_FORMAT_BINARY ? "binary" :
									  walship_ndjson_shape == WS_NDJSON_FLAT ? "ndjson (flat)" :
									  "ndjson (envelope)");
	values[i] = LSNGetDatum(snap.confirmed_lsn);
	nulls[i++] = XLogRecPtrIsInvalid(snap.confirmed_lsn);
	values[i++] = LSNGetDatum(current);
	values[i] = Int64GetDatum(current > snap.confirmed_lsn ? current - snap.confirmed_lsn : 0);
	nulls[i++] = XLogRecPtrIsInvalid(snap.confirmed_lsn);
	values[i++] = Float8GetDatum(snap.oldest_pending_commit == 0 ? 0.0 :
								 Max(0, now - snap.oldest_pending_commit) / 1000000.0);
	values[i++] = Int64GetDatum(snap.batches_shipped);
	values[i++] = Int64GetDatum(snap.changes_shipped);
	values[i++] = Int64GetDatum(snap.bytes_shipped);
	values[i++] = Int64GetDatum(snap.retries);
	values[i++] = Int64GetDatum(snap.rejected_batches);
	values[i++] = Int32GetDatum(snap.inflight);
	values[i] = Int32GetDatum(snap.last_http_status);
	nulls[i++] = snap.last_http_status == 0;
	values[i] = TimestampTzGetDatum(snap.last_success_at);
	nulls[i++] = snap.last_success_at == 0;
	values[i] = CStringGetTextDatum(snap.last_error);
	nulls[i++] = snap.last_error[0] == '\0';
	values[i] = TimestampTzGetDatum(snap.last_error_at);
	nulls[i++] = snap.last_error_at == 0 || snap.last_error[0] == '\0';
	values[i] = TimestampTzGetDatum(snap.started_at);
	nulls[i++] = snap.started_at == 0;
	values[i] = LSNGetDatum(snap.decoded_lsn);
	nulls[i++] = XLogRecPtrIsInvalid(snap.decoded_lsn);
	Assert(i == STATUS_COLUMNS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

static void
set_paused(bool paused)
{
	Latch	   *latch;

	require_worker();
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->pause_requested = paused;
	latch = ws_shared->worker_latch;
	SpinLockRelease(&ws_shared->mutex);
	if (latch)
		SetLatch(latch);
}

Datum
walship_pause(PG_FUNCTION_ARGS)
{
	set_paused(true);
	PG_RETURN_VOID();
}

Datum
walship_resume(PG_FUNCTION_ARGS)
{
	set_paused(false);
	PG_RETURN_VOID();
}

/*
 * Tells the worker a backfill was queued: it looks for it often for a
 * while, rather than once a second, so it starts as soon as the queuing
 * transaction commits.  Without a worker (walship not preloaded) it does
 * nothing: the backfill starts whenever a worker runs.
 */
Datum
walship_notify_backfill(PG_FUNCTION_ARGS)
{
	Latch	   *latch;

	if (ws_shared == NULL)
		PG_RETURN_VOID();
	SpinLockAcquire(&ws_shared->mutex);
	ws_shared->backfill_requests++;
	latch = ws_shared->worker_latch;
	SpinLockRelease(&ws_shared->mutex);
	if (latch)
		SetLatch(latch);
	PG_RETURN_VOID();
}
