/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  The shipping worker's catalog: the walship.progress row of its slot,
 *	  walship.dead_letter, and creating the slot.
 *
 * The worker writes here from its main loop only, in short transactions
 * wrapped the worker_spi way.  Its own writes are never shipped: the
 * output plugin never publishes the extension's tables.
 *
 * IDENTIFICATION
 *	  src/progress.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "progress.h"
#include "settings.h"
#include "shared_state.h"

bool
ws_progress_extension_installed(void)
{
	return OidIsValid(get_extension_oid("walship", true));
}

void
ws_progress_create_slot(const char *slot_name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(slot_name)};

	SPI_connect();
	if (SPI_execute_with_args("SELECT pg_catalog.pg_create_logical_replication_slot($1, 'walship')",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not create replication slot \"%s\"", slot_name);
	SPI_finish();
}

static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Loads the slot's totals into shared memory, so they count on. */
void
ws_progress_load(const char *slot_name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(slot_name)};

	begin_work("walship: loading progress");
	if (SPI_execute_with_args("SELECT batches, changes, bytes, retries, rejected_batches, last_success_at "
							  "FROM walship.progress WHERE slot_name = $1",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read walship.progress");
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		counters[5];

		for (int i = 0; i < 5; i++)
		{
			Datum		d = SPI_getbinval(tuple, desc, i + 1, &isnull);

			counters[i] = isnull ? 0 : DatumGetInt64(d);
		}
		{
			Datum		d = SPI_getbinval(tuple, desc, 6, &isnull);

			SpinLockAcquire(&ws_shared->mutex);
			ws_shared->batches_shipped = counters[0];
			ws_shared->changes_shipped = counters[1];
			ws_shared->bytes_shipped = counters[2];
			ws_shared->retries = counters[3];
			ws_shared->rejected_batches = counters[4];
			if (!isnull)
				ws_shared->last_success_at = DatumGetTimestampTz(d);
			SpinLockRelease(&ws_shared->mutex);
		}
	}
	end_work();
}

void
ws_progress_write(const char *slot_name, XLogRecPtr confirmed_lsn)
{
	Oid			argtypes[9] = {TEXTOID, PG_LSNOID, INT8OID, INT8OID, INT8OID,
	INT8OID, INT8OID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[9];
	char		nulls[9] = "         ";
	char		last_error[WS_MAX_ERROR_LEN];

	SpinLockAcquire(&ws_shared->mutex);
	values[2] = Int64GetDatum(ws_shared->batches_shipped);
	values[3] = Int64GetDatum(ws_shared->changes_shipped);
	values[4] = Int64GetDatum(ws_shared->bytes_shipped);
	values[5] = Int64GetDatum(ws_shared->retries);
	values[6] = Int64GetDatum(ws_shared->rejected_batches);
	values[7] = TimestampTzGetDatum(ws_shared->last_success_at);
	if (ws_shared->last_success_at == 0)
		nulls[7] = 'n';
	strlcpy(last_error, ws_shared->last_error, sizeof(last_error));
	SpinLockRelease(&ws_shared->mutex);

	values[0] = CStringGetTextDatum(slot_name);
	values[1] = LSNGetDatum(confirmed_lsn);
	if (last_error[0] == '\0')
	{
		nulls[8] = 'n';
		values[8] = (Datum) 0;
	}
	else
		values[8] = CStringGetTextDatum(last_error);

	begin_work("walship: recording progress");
	if (SPI_execute_with_args("INSERT INTO walship.progress AS p "
							  "(slot_name, confirmed_lsn, batches, changes, bytes, retries, rejected_batches, last_success_at, last_error, updated_at) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) "
							  "ON CONFLICT (slot_name) DO UPDATE SET "
							  "confirmed_lsn = excluded.confirmed_lsn, "
							  "batches = excluded.batches, changes = excluded.changes, "
							  "bytes = excluded.bytes, retries = excluded.retries, "
							  "rejected_batches = excluded.rejected_batches, "
							  "last_success_at = excluded.last_success_at, "
							  "last_error = excluded.last_error, updated_at = now()",
							  9, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update walship.progress");
	end_work();
}

void
ws_progress_write_dead_letters(List *rejected)
{
	Oid			argtypes[11] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID,
	BYTEAOID, BYTEAOID, INT4OID, TEXTOID, TEXTOID, TEXTOID};
	ListCell   *lc;

	begin_work("walship: writing dead letters");
	foreach(lc, rejected)
	{
		WsRejectedBatch *r = lfirst(lc);
		WsBatch    *batch = r->batch;
		WsBatchPart *part = r->part;
		Datum		values[11];
		char		nulls[11] = "           ";
		bytea	   *records = palloc(VARHDRSZ + batch->records.len);
		bytea	   *body = palloc(VARHDRSZ + part->body_len);

		SET_VARSIZE(records, VARHDRSZ + batch->records.len);
		memcpy(VARDATA(records), batch->records.data, batch->records.len);
		SET_VARSIZE(body, VARHDRSZ + part->body_len);
		if (part->body_len > 0)
			memcpy(VARDATA(body), part->body, part->body_len);

		values[0] = CStringGetTextDatum(batch->first_change);
		values[1] = CStringGetTextDatum(batch->last_change);
		values[2] = Int32GetDatum(batch->nchanges);
		values[3] = CStringGetTextDatum(part->content_type);
		if (part->content_encoding)
			values[4] = CStringGetTextDatum(part->content_encoding);
		else
			nulls[4] = 'n';
		values[5] = PointerGetDatum(records);
		values[6] = PointerGetDatum(body);
		values[7] = Int32GetDatum((int32) r->http_status);
		values[8] = CStringGetTextDatum(r->error);
		values[9] = CStringGetTextDatum(r->response);
		values[10] = CStringGetTextDatum(ws_endpoint_for_display(part->url));

		if (SPI_execute_with_args("INSERT INTO walship.dead_letter "
								  "(first_change, last_change, changes, content_type, content_encoding, records, body, http_status, error, response, endpoint) "
								  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
								  11, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not insert into walship.dead_letter");
	}
	end_work();
}
