/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  The shipping worker's catalog: the walship.progress row of its slot,
 *	  walship.dead_letter, the state of walship.backfills, and creating the
 *	  slot.
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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
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
	Datum		values[1];

	/* arguments are built in the transaction, so their memory goes with it */
	begin_work("walship: loading progress");
	values[0] = CStringGetTextDatum(slot_name);
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
	char		nulls[9];
	char		last_error[WS_MAX_ERROR_LEN];

	begin_work("walship: recording progress");
	memset(nulls, ' ', sizeof(nulls));
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
		char		nulls[11];
		bytea	   *records = palloc(VARHDRSZ + batch->records.len);
		bytea	   *body = palloc(VARHDRSZ + part->body_len);

		memset(nulls, ' ', sizeof(nulls));

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

/*
 * Queues a backfill of every published table, when the worker has just
 * created its slot and walship.initial_backfill is on.
 */
void
ws_progress_queue_initial_backfills(void)
{
	SPI_connect();
	if (SPI_execute("SELECT walship.backfill_publication()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not queue the initial backfills");
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("walship queued backfills of %d published tables",
						(int) SPI_processed)));
	SPI_finish();
}

static char **
text_array_to_strings(Datum array, int *n, MemoryContext mcxt)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **result;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, n);
	result = MemoryContextAlloc(mcxt, sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		result[i] = nulls[i] ? NULL :
			MemoryContextStrdup(mcxt, TextDatumGetCString(elems[i]));
	return result;
}

static Datum
strings_to_text_array(int n, char **strings)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(strings[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

static char *
copy_text_column(HeapTuple tuple, TupleDesc desc, int column,
				 MemoryContext mcxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, column, &isnull);

	return isnull ? NULL : MemoryContextStrdup(mcxt, TextDatumGetCString(d));
}

/*
 * Loads the oldest queued or running backfill into job, allocated in mcxt,
 * marking it running.  Returns false when there is none.
 */
bool
ws_progress_next_backfill(WsBackfillJob *job, MemoryContext mcxt)
{
	bool		found = false;

	begin_work("walship: looking for backfills");
	if (SPI_execute("SELECT id, relation, queued_by, chunk_size, condition, "
					"schema_name, table_name, last_key, state "
					"FROM walship.backfills WHERE state IN ('queued', 'running') "
					"ORDER BY id LIMIT 1", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read walship.backfills");
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		char	   *state;

		memset(job, 0, sizeof(WsBackfillJob));
		job->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		job->relid = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		job->role = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
		job->chunk_size = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
		job->condition = copy_text_column(tuple, desc, 5, mcxt);
		job->schema_name = copy_text_column(tuple, desc, 6, mcxt);
		job->table_name = copy_text_column(tuple, desc, 7, mcxt);
		d = SPI_getbinval(tuple, desc, 8, &isnull);
		if (!isnull)
			job->last_key = text_array_to_strings(d, &job->nkeys, mcxt);
		state = copy_text_column(tuple, desc, 9, CurrentMemoryContext);
		found = true;

		job->starting = strcmp(state, "queued") == 0;
		if (job->starting)
		{
			Oid			argtypes[1] = {INT8OID};
			Datum		values[1] = {Int64GetDatum(job->id)};

			if (SPI_execute_with_args("UPDATE walship.backfills SET state = 'running', "
									  "started_at = now(), updated_at = now() WHERE id = $1",
									  1, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not update walship.backfills");
			ereport(LOG,
					(errmsg("walship started backfill %lld of table \"%s.%s\"",
							(long long) job->id, job->schema_name,
							job->table_name)));
		}
	}
	end_work();
	return found;
}

/*
 * Records chunks of a backfill the endpoint acknowledged; done when the
 * last of them was its last chunk.  A cancelled backfill is left alone.
 */
void
ws_progress_backfill_acknowledged(int64 id, int64 chunks, int64 rows,
								  int nkeys, char **last_key, bool done)
{
	Oid			argtypes[5] = {INT8OID, INT8OID, INT8OID, TEXTARRAYOID, BOOLOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	begin_work("walship: recording backfill progress");
	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(chunks);
	values[2] = Int64GetDatum(rows);
	if (nkeys > 0)
		values[3] = strings_to_text_array(nkeys, last_key);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	values[4] = BoolGetDatum(done);
	if (SPI_execute_with_args("UPDATE walship.backfills SET "
							  "chunks_done = chunks_done + $2, rows_sent = rows_sent + $3, "
							  "last_key = coalesce($4, last_key), "
							  "state = CASE WHEN $5 THEN 'done' ELSE state END, "
							  "finished_at = CASE WHEN $5 THEN now() END, "
							  "updated_at = now() "
							  "WHERE id = $1 AND state = 'running'",
							  5, argtypes, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update walship.backfills");
	if (done && SPI_processed == 1)
		ereport(LOG,
				(errmsg("walship finished backfill %lld", (long long) id)));
	end_work();
}

void
ws_progress_backfill_failed(int64 id, const char *error)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2];

	begin_work("walship: recording a failed backfill");
	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(error);
	if (SPI_execute_with_args("UPDATE walship.backfills SET state = 'failed', error = $2, "
							  "finished_at = now(), updated_at = now() "
							  "WHERE id = $1 AND state = 'running'",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update walship.backfills");
	end_work();
}
