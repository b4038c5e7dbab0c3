/*-------------------------------------------------------------------------
 *
 * sql_metrics.c
 *	  walship.metrics(): the shipping worker's figures in the Prometheus
 *	  text exposition format (0.0.4), and the same figures as rows for
 *	  prometheus-postgres-exporter (walship.metrics_values(),
 *	  walship.metrics_states(), walship.metrics_backfills();
 *	  contrib/prometheus/walship-queries.yaml).
 *
 * Every figure is gathered once per call (gather_metrics) from the
 * worker's shared state, the slot's row of pg_replication_slots, the WAL
 * flush position, the settings that bound retained WAL, and
 * walship.backfills; the text and the rows are made from that one set, so
 * walship.metrics() and the exporter's series carry the same names and
 * values.
 *
 * The LSN ladder: decoded (WAL read) >= sent (the end of the last
 * transaction a request carried) >= acknowledged (the end of the last
 * transaction the endpoint acknowledged, or set aside as a dead letter) >=
 * confirmed (the slot).  Each rung is reported as at least the one below
 * it: WAL before the confirmed position was shipped, and decoding reads
 * it again after a start.
 *
 * Nothing here is secret: no endpoint, header or error text.  The SQL
 * functions are SECURITY DEFINER (walship.backfills is for walship_admin
 * only; only counts leave it) and executable by walship_admin and
 * pg_monitor.
 *
 * IDENTIFICATION
 *	  src/sql_metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "shared_state.h"
#include "sql_worker.h"

PG_FUNCTION_INFO_V1(walship_metrics);
PG_FUNCTION_INFO_V1(walship_metrics_values);
PG_FUNCTION_INFO_V1(walship_metrics_states);
PG_FUNCTION_INFO_V1(walship_metrics_backfills);

/* walship.backfills states, in the order the metrics list them */
static const char *const backfill_states[] = {
	"queued", "running", "done", "cancelled", "failed"
};

#define NUM_BACKFILL_STATES ((int) lengthof(backfill_states))

/* "stopped" and every WsWorkerState, as walship.status names them */
#define NUM_STATES (WS_STATE_ERROR + 2)

typedef struct WsMetrics
{
	WsSharedState snap;
	WsSlotFigures slot;
	XLogRecPtr	current;		/* WAL flush position */
	XLogRecPtr	decoded;		/* the ladder, each rung at least the next */
	XLogRecPtr	sent;
	XLogRecPtr	acknowledged;
	const char *state;			/* as walship.status shows it */
	double		freshness;		/* seconds */
	double		budget;			/* bytes; < 0 when none */
	bool		backfills_read; /* false outside walship.database */
	int64		backfill_tables[NUM_BACKFILL_STATES];
	int64		backfill_rows[NUM_BACKFILL_STATES];
} WsMetrics;

/*
 * A size setting (as SHOW prints it, with its unit) in bytes; -1 when the
 * setting does not exist, is not a size, or is not positive.
 */
static double
size_setting_bytes(const char *name)
{
	char	   *value = GetConfigOptionByName(name, NULL, true);
	double		bytes;

	if (value == NULL || !parse_real(value, &bytes, GUC_UNIT_BYTE, NULL) ||
		bytes <= 0)
		return -1;
	return bytes;
}

/*
 * Counts and rows sent of walship.backfills by state.  The table is the
 * one of the schema the calling function lives in.
 */
static void
read_backfills(WsMetrics *m, Oid fn_oid)
{
	char	   *schema = get_namespace_name(get_func_namespace(fn_oid));
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT b.state, pg_catalog.count(*), "
					 "pg_catalog.sum(b.rows_sent)::pg_catalog.int8 "
					 "FROM %s.backfills b GROUP BY b.state",
					 quote_identifier(schema));
	SPI_connect();
	if (SPI_execute(sql.data, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read walship.backfills");
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[row];
		TupleDesc	tupdesc = SPI_tuptable->tupdesc;
		char	   *state = SPI_getvalue(tuple, tupdesc, 1);
		bool		isnull;

		for (int i = 0; i < NUM_BACKFILL_STATES; i++)
		{
			if (strcmp(state, backfill_states[i]) != 0)
				continue;
			m->backfill_tables[i] =
				DatumGetInt64(SPI_getbinval(tuple, tupdesc, 2, &isnull));
			m->backfill_rows[i] =
				DatumGetInt64(SPI_getbinval(tuple, tupdesc, 3, &isnull));
		}
	}
	SPI_finish();
	m->backfills_read = true;
}

static void
gather_metrics(WsMetrics *m, Oid fn_oid)
{
	TimestampTz now = GetCurrentTimestamp();

	ws_require_worker();
	memset(m, 0, sizeof(WsMetrics));
	ws_read_slot_figures(&m->slot);
	m->current = GetFlushRecPtr(NULL);
	ws_shared_snapshot(&m->snap);

	m->acknowledged = Max(m->snap.acknowledged_lsn, m->snap.confirmed_lsn);
	m->sent = Max(m->snap.sent_lsn, m->acknowledged);
	m->decoded = Max(m->snap.decoded_lsn, m->sent);
	m->state = m->snap.worker_pid == 0 && m->snap.state != WS_STATE_ERROR ?
		"stopped" : ws_worker_state_name(m->snap.state);
	m->freshness = m->snap.oldest_pending_commit == 0 ? 0.0 :
		Max(0, now - m->snap.oldest_pending_commit) / 1000000.0;

	/* walship.max_retained_wal (MB) where set, else the server's bound */
	m->budget = walship_max_retained_wal > 0 ?
		(double) walship_max_retained_wal * 1024 * 1024 :
		size_setting_bytes("max_slot_wal_keep_size");

	/* backfills are queued in the worker's database */
	if (strcmp(get_database_name(MyDatabaseId), walship_database) == 0)
		read_backfills(m, fn_oid);
}

/* Seconds since 1970 of a timestamp. */
static double
unix_seconds(TimestampTz ts)
{
	return (double) ts / USECS_PER_SEC +
		((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
}

/* ---------------------------------------------------------------------
 * The scalar series: one list for the text and for metrics_values()
 * ---------------------------------------------------------------------
 */
typedef enum WsMetricKind
{
	WS_GAUGE,
	WS_COUNTER
} WsMetricKind;

typedef struct WsScalar
{
	const char *name;			/* after "walship_"; metrics_values() column */
	WsMetricKind kind;
	const char *help;
	bool		isnull;			/* no sample */
	double		value;
} WsScalar;

#define NUM_SCALARS 20

static void
scalars(const WsMetrics *m, WsScalar *out)
{
	const WsSharedState *s = &m->snap;
	int			i = 0;

#define SCALAR(n, k, h, null, v) \
	do { \
		out[i].name = (n); out[i].kind = (k); out[i].help = (h); \
		out[i].isnull = (null); out[i].value = (null) ? 0 : (double) (v); \
		i++; \
	} while (0)

	SCALAR("decoded_lsn_bytes", WS_GAUGE,
		   "WAL position the worker has read up to, in bytes.",
		   XLogRecPtrIsInvalid(m->decoded), m->decoded);
	SCALAR("sent_lsn_bytes", WS_GAUGE,
		   "End of the last transaction sent to the endpoint, in bytes.",
		   XLogRecPtrIsInvalid(m->sent), m->sent);
	SCALAR("acknowledged_lsn_bytes", WS_GAUGE,
		   "End of the last transaction the endpoint acknowledged (or set aside as a dead letter), in bytes.",
		   XLogRecPtrIsInvalid(m->acknowledged), m->acknowledged);
	SCALAR("confirmed_lsn_bytes", WS_GAUGE,
		   "Position the worker confirmed the replication slot up to, in bytes.",
		   XLogRecPtrIsInvalid(s->confirmed_lsn), s->confirmed_lsn);
	SCALAR("current_lsn_bytes", WS_GAUGE,
		   "The server's WAL flush position, in bytes.",
		   false, m->current);
	SCALAR("lag_bytes", WS_GAUGE,
		   "WAL written but not yet acknowledged: flush position minus the slot's confirmed_flush_lsn.",
		   XLogRecPtrIsInvalid(m->slot.confirmed_flush),
		   m->current > m->slot.confirmed_flush ? m->current - m->slot.confirmed_flush : 0);
	SCALAR("retained_wal_bytes", WS_GAUGE,
		   "WAL the slot makes the server keep: flush position minus the slot's restart_lsn.",
		   XLogRecPtrIsInvalid(m->slot.restart_lsn),
		   m->current > m->slot.restart_lsn ? m->current - m->slot.restart_lsn : 0);
	SCALAR("retained_wal_budget_bytes", WS_GAUGE,
		   "WAL the slot may retain: walship.max_retained_wal if set, else max_slot_wal_keep_size.",
		   m->budget < 0, m->budget);
	SCALAR("safe_wal_size_bytes", WS_GAUGE,
		   "WAL that can still be written before the slot is in danger of losing WAL (pg_replication_slots.safe_wal_size).",
		   !m->slot.exists || m->slot.safe_wal_size_null, m->slot.safe_wal_size);
	SCALAR("freshness_seconds", WS_GAUGE,
		   "Age of the oldest commit decoded but not yet acknowledged; 0 when nothing is pending.",
		   false, m->freshness);
	SCALAR("last_success_timestamp_seconds", WS_GAUGE,
		   "Time of the last acknowledgement, in seconds since 1970.",
		   s->last_success_at == 0, unix_seconds(s->last_success_at));
	SCALAR("worker_up", WS_GAUGE,
		   "1 while the shipping worker process runs.",
		   false, s->worker_pid != 0 ? 1 : 0);
	SCALAR("paused", WS_GAUGE,
		   "1 while walship.pause() is in effect.",
		   false, s->pause_requested ? 1 : 0);
	SCALAR("inflight_requests", WS_GAUGE,
		   "HTTP requests in flight.",
		   false, s->inflight);
	SCALAR("last_http_status", WS_GAUGE,
		   "Status of the last HTTP response.",
		   s->last_http_status == 0, s->last_http_status);
	SCALAR("shipped_batches_total", WS_COUNTER,
		   "Batches done: acknowledged, or set aside as dead letters.",
		   false, s->batches_shipped);
	SCALAR("shipped_changes_total", WS_COUNTER,
		   "Changes in the batches done.",
		   false, s->changes_shipped);
	SCALAR("shipped_bytes_total", WS_COUNTER,
		   "Request bodies acknowledged, in bytes as sent (after compression).",
		   false, s->bytes_shipped);
	SCALAR("retries_total", WS_COUNTER,
		   "Failed requests that were retried.",
		   false, s->retries);
	SCALAR("rejected_batches_total", WS_COUNTER,
		   "Batches the endpoint rejected permanently.",
		   false, s->rejected_batches);
#undef SCALAR
	Assert(i == NUM_SCALARS);
}

#define LATENCY_HELP "Time from the commit of a batch's oldest transaction to the end of its last request (acknowledged, or set aside as a dead letter), since the server started."

/* ---------------------------------------------------------------------
 * walship.metrics(): the text exposition format
 * ---------------------------------------------------------------------
 */
static void
append_header(StringInfo out, const char *name, const char *type,
			  const char *help)
{
	appendStringInfo(out, "# HELP walship_%s %s\n# TYPE walship_%s %s\n",
					 name, help, name, type);
}

/* A sample value: integers as such, others with every digit they need. */
static void
append_value(StringInfo out, double value)
{
	if (fabs(value) < 1e15 && value == (double) (int64) value)
		appendStringInfo(out, INT64_FORMAT "\n", (int64) value);
	else
		appendStringInfo(out, "%.17g\n", value);
}

Datum
walship_metrics(PG_FUNCTION_ARGS)
{
	WsMetrics	m;
	WsScalar	list[NUM_SCALARS];
	StringInfoData out;
	uint64		cumulative = 0;

	gather_metrics(&m, fcinfo->flinfo->fn_oid);
	scalars(&m, list);
	initStringInfo(&out);

	for (int i = 0; i < NUM_SCALARS; i++)
	{
		if (list[i].isnull)
			continue;
		append_header(&out, list[i].name,
					  list[i].kind == WS_COUNTER ? "counter" : "gauge",
					  list[i].help);
		appendStringInfo(&out, "walship_%s ", list[i].name);
		append_value(&out, list[i].value);
	}

	append_header(&out, "state_active", "gauge",
				  "1 for the state the worker is in (as walship.status shows it), 0 for the others.");
	for (int st = 0; st < NUM_STATES; st++)
	{
		const char *name = st == 0 ? "stopped" :
			ws_worker_state_name((WsWorkerState) (st - 1));

		appendStringInfo(&out, "walship_state_active{state=\"%s\"} %d\n",
						 name, strcmp(name, m.state) == 0 ? 1 : 0);
	}

	append_header(&out, "commit_to_ack_seconds", "histogram", LATENCY_HELP);
	for (int b = 0; b <= WS_ACK_LATENCY_BUCKETS; b++)
	{
		cumulative += m.snap.ack_latency_counts[b];
		if (b < WS_ACK_LATENCY_BUCKETS)
			appendStringInfo(&out, "walship_commit_to_ack_seconds_bucket{le=\"%g\"} " UINT64_FORMAT "\n",
							 ws_ack_latency_bounds[b], cumulative);
		else
			appendStringInfo(&out, "walship_commit_to_ack_seconds_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n",
							 cumulative);
	}
	appendStringInfoString(&out, "walship_commit_to_ack_seconds_sum ");
	append_value(&out, m.snap.ack_latency_sum);
	appendStringInfo(&out, "walship_commit_to_ack_seconds_count " UINT64_FORMAT "\n",
					 m.snap.ack_latency_count);

	if (m.backfills_read)
	{
		append_header(&out, "backfill_tables", "gauge",
					  "Backfills in walship.backfills, by state.");
		for (int b = 0; b < NUM_BACKFILL_STATES; b++)
			appendStringInfo(&out, "walship_backfill_tables{state=\"%s\"} " INT64_FORMAT "\n",
							 backfill_states[b], m.backfill_tables[b]);
		append_header(&out, "backfill_rows_sent", "gauge",
					  "Rows the endpoint acknowledged for the backfills in each state.");
		for (int b = 0; b < NUM_BACKFILL_STATES; b++)
			appendStringInfo(&out, "walship_backfill_rows_sent{state=\"%s\"} " INT64_FORMAT "\n",
							 backfill_states[b], m.backfill_rows[b]);
	}

	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/* ---------------------------------------------------------------------
 * The same figures as rows, for prometheus-postgres-exporter
 * ---------------------------------------------------------------------
 */

/*
 * One row: a column per scalar series (named as the series without
 * "walship_"), then the histogram as the exporter's HISTOGRAM usage reads
 * it: bounds, cumulative counts per bound, sum and count.
 */
Datum
walship_metrics_values(PG_FUNCTION_ARGS)
{
	WsMetrics	m;
	WsScalar	list[NUM_SCALARS];
	TupleDesc	desc;
	Datum		values[NUM_SCALARS + 4];
	bool		nulls[NUM_SCALARS + 4];
	Datum		bounds[WS_ACK_LATENCY_BUCKETS];
	Datum		counts[WS_ACK_LATENCY_BUCKETS];
	uint64		cumulative = 0;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (desc->natts != NUM_SCALARS + 4)
		elog(ERROR, "walship.metrics_values() must return %d columns",
			 NUM_SCALARS + 4);

	gather_metrics(&m, fcinfo->flinfo->fn_oid);
	scalars(&m, list);
	memset(nulls, 0, sizeof(nulls));
	for (i = 0; i < NUM_SCALARS; i++)
	{
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), list[i].name) != 0)
			elog(ERROR, "column %d of walship.metrics_values() must be %s",
				 i + 1, list[i].name);
		values[i] = Float8GetDatum(list[i].value);
		nulls[i] = list[i].isnull;
	}
	for (int b = 0; b < WS_ACK_LATENCY_BUCKETS; b++)
	{
		cumulative += m.snap.ack_latency_counts[b];
		bounds[b] = Float8GetDatum(ws_ack_latency_bounds[b]);
		counts[b] = Int64GetDatum((int64) cumulative);
	}
	values[i++] = PointerGetDatum(construct_array(bounds, WS_ACK_LATENCY_BUCKETS,
												  FLOAT8OID, sizeof(float8),
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[i++] = PointerGetDatum(construct_array(counts, WS_ACK_LATENCY_BUCKETS,
												  INT8OID, sizeof(int64),
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[i++] = Float8GetDatum(m.snap.ack_latency_sum);
	values[i++] = Int64GetDatum((int64) m.snap.ack_latency_count);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* Rows (state, active): walship_state_active. */
Datum
walship_metrics_states(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WsMetrics	m;

	gather_metrics(&m, fcinfo->flinfo->fn_oid);
	InitMaterializedSRF(fcinfo, 0);
	for (int st = 0; st < NUM_STATES; st++)
	{
		const char *name = st == 0 ? "stopped" :
			ws_worker_state_name((WsWorkerState) (st - 1));
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(name);
		values[1] = Int32GetDatum(strcmp(name, m.state) == 0 ? 1 : 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Rows (state, tables, rows_sent): walship_backfill_tables and
 * walship_backfill_rows_sent; none outside walship.database.
 */
Datum
walship_metrics_backfills(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WsMetrics	m;

	gather_metrics(&m, fcinfo->flinfo->fn_oid);
	InitMaterializedSRF(fcinfo, 0);
	for (int b = 0; m.backfills_read && b < NUM_BACKFILL_STATES; b++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(backfill_states[b]);
		values[1] = Int64GetDatum(m.backfill_tables[b]);
		values[2] = Int64GetDatum(m.backfill_rows[b]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
