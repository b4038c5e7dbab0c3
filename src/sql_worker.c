/*-------------------------------------------------------------------------
 *
 * sql_worker.c
 *	  SQL functions over the shipping worker: walship.status (through
 *	  walship.status_internal()), walship.pause() and walship.resume().
 *
 * They read and set the worker's shared state, which exists only when the
 * library is in shared_preload_libraries.  The endpoint and the text of the
 * last error (which may name hosts and files) are shown to superusers and
 * members of walship_admin only; secrets never.  The slot's WAL figures
 * come from pg_replication_slots, computed there as for any slot.
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
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "shared_state.h"
#include "sql_worker.h"
#include "wal_budget.h"

PG_FUNCTION_INFO_V1(walship_status_internal);
PG_FUNCTION_INFO_V1(walship_pause);
PG_FUNCTION_INFO_V1(walship_resume);
PG_FUNCTION_INFO_V1(walship_notify_backfill);

#define STATUS_COLUMNS 35

void
ws_require_worker(void)
{
	if (ws_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the walship worker is not available"),
				 errdetail("The walship library was not loaded through \"shared_preload_libraries\"."),
				 errhint("Add walship to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Reads the slot's row of pg_replication_slots, so that wal_status and
 * safe_wal_size mean exactly what they mean there.  Every name in the
 * query is qualified: it runs under the caller's search_path.
 */
void
ws_read_slot_figures(WsSlotFigures *figures)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext caller = CurrentMemoryContext;

	memset(figures, 0, sizeof(WsSlotFigures));
	values[0] = CStringGetTextDatum(walship_slot_name);
	SPI_connect();
	if (SPI_execute_with_args("SELECT s.restart_lsn, s.confirmed_flush_lsn, s.wal_status, s.safe_wal_size "
							  "FROM pg_catalog.pg_replication_slots s "
							  "WHERE s.slot_name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_replication_slots");
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	tupdesc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		figures->exists = true;
		d = SPI_getbinval(tuple, tupdesc, 1, &isnull);
		figures->restart_lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
		d = SPI_getbinval(tuple, tupdesc, 2, &isnull);
		figures->confirmed_flush = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
		d = SPI_getbinval(tuple, tupdesc, 3, &isnull);
		/* in the caller's memory: SPI_finish frees SPI's */
		if (!isnull)
			figures->wal_status = MemoryContextStrdup(caller, TextDatumGetCString(d));
		d = SPI_getbinval(tuple, tupdesc, 4, &isnull);
		figures->safe_wal_size_null = isnull;
		figures->safe_wal_size = isnull ? 0 : DatumGetInt64(d);
	}
	SPI_finish();
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
	WsSlotFigures slot;
	XLogRecPtr	current;
	TimestampTz now = GetCurrentTimestamp();
	bool		admin = is_walship_admin();
	int			i = 0;

	ws_require_worker();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* the flush position after the slot's: no negative distances */
	ws_read_slot_figures(&slot);
	current = GetFlushRecPtr(NULL);

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
									  walship_format == WS_FORMAT_ROWBINARY ? "rowbinary" :
									  walship_ndjson_shape == WS_NDJSON_FLAT ? "ndjson (flat)" :
									  "ndjson (envelope)");
	values[i] = LSNGetDatum(snap.confirmed_lsn);
	nulls[i++] = XLogRecPtrIsInvalid(snap.confirmed_lsn);
	values[i++] = LSNGetDatum(current);
	/* not yet acknowledged: the slot's confirmed_flush_lsn */
	values[i] = Int64GetDatum(current > slot.confirmed_flush ? current - slot.confirmed_flush : 0);
	nulls[i++] = XLogRecPtrIsInvalid(slot.confirmed_flush);
	/* kept for the slot: from its restart_lsn */
	values[i] = Int64GetDatum(current > slot.restart_lsn ? current - slot.restart_lsn : 0);
	nulls[i++] = XLogRecPtrIsInvalid(slot.restart_lsn);
	if (slot.wal_status != NULL)
		values[i] = CStringGetTextDatum(slot.wal_status);
	nulls[i++] = slot.wal_status == NULL;
	values[i] = Int64GetDatum(slot.safe_wal_size);
	nulls[i++] = !slot.exists || slot.safe_wal_size_null;
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
	/* may name hosts, paths and files: operators only */
	values[i] = CStringGetTextDatum(snap.last_error);
	nulls[i++] = !admin || snap.last_error[0] == '\0';
	values[i] = TimestampTzGetDatum(snap.last_error_at);
	nulls[i++] = snap.last_error_at == 0 || snap.last_error[0] == '\0';
	values[i] = TimestampTzGetDatum(snap.started_at);
	nulls[i++] = snap.started_at == 0;
	values[i] = LSNGetDatum(snap.decoded_lsn);
	nulls[i++] = XLogRecPtrIsInvalid(snap.decoded_lsn);
	/* the last lost slot: gap and resync */
	values[i] = LSNGetDatum(snap.gap_start_lsn);
	nulls[i++] = XLogRecPtrIsInvalid(snap.gap_start_lsn);
	values[i] = LSNGetDatum(snap.gap_end_lsn);
	nulls[i++] = XLogRecPtrIsInvalid(snap.gap_end_lsn);
	values[i] = TimestampTzGetDatum(snap.gap_detected_at);
	nulls[i++] = snap.gap_detected_at == 0;
	values[i++] = Int64GetDatum(snap.resyncs);
	if (snap.resync_state[0] != '\0')
		values[i] = CStringGetTextDatum(snap.resync_state);
	nulls[i++] = snap.resync_state[0] == '\0';
	/* walship.max_retained_wal (wal_budget.c) */
	{
		int64		budget = ws_wal_budget_bytes();
		const char *budget_state;

		values[i] = Int64GetDatum(budget);
		nulls[i++] = budget < 0;
		budget_state = ws_wal_budget_state(snap.slot_given_up,
										   !XLogRecPtrIsInvalid(slot.restart_lsn),
										   current > slot.restart_lsn ?
										   (int64) (current - slot.restart_lsn) : 0);
		if (budget_state != NULL)
			values[i] = CStringGetTextDatum(budget_state);
		nulls[i++] = budget_state == NULL;
		values[i] = TimestampTzGetDatum(snap.slot_given_up_at);
		nulls[i++] = snap.slot_given_up_at == 0;
	}
	Assert(i == STATUS_COLUMNS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

static void
set_paused(bool paused)
{
	ws_require_worker();
	ws_shared_request_pause(paused);
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
	if (ws_shared != NULL)
		ws_shared_request_backfill();
	PG_RETURN_VOID();
}
