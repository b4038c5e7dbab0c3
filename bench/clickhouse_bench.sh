#!/usr/bin/env bash
#
# clickhouse_bench.sh - walship delivering into a real ClickHouse
#
# Starts, in one temporary directory, a throwaway PostgreSQL cluster with
# walship in shared_preload_libraries, a local ClickHouse server (Debian's
# clickhouse-server 18.16, through demo/clickhouse.pl and the test suite's
# t/WalshipClickHouse.pm: 127.0.0.1 only, free ports) and a null HTTP sink
# (nginx answering 204), and measures:
#
#   1. Throughput into ClickHouse.  The worker ships with the settings the
#      README gives for ClickHouse 18.16 (ndjson, flat shape, clickhouse_18 dialect,
#      gzip, an endpoint "INSERT INTO shop.{table} FORMAT JSONEachRow") into
#      ReplacingMergeTree tables created from walship.clickhouse_ddl().
#      With the worker paused (walship.pause()), a backlog of CHANGES row
#      changes on an 11-column "orders" table is committed (the workload of
#      bench/plugin_bench.sh and bench/worker_bench.sh: transactions of
#      TXN_SIZE, 50% INSERT, 30% UPDATE, 20% DELETE); then walship.resume()
#      and the time until walship.status shows every change shipped and
#      acknowledged.  The same is done with walship.endpoint pointed at
#      nginx answering 204 (every other setting unchanged, {table} kept in
#      the URL so that requests are split the same way), on "orders_null",
#      a copy of "orders" with the same prefill: the null-sink figure for an
#      identical backlog in the same run, while ClickHouse's "orders" stays
#      complete.  ROUNDS backlogs per sink, in ABBA order.  Each sink is
#      measured in every format of FORMATS: "ndjson" as above, "rowbinary"
#      with walship.format = 'rowbinary' (walship.clickhouse_database =
#      'shop', walship.endpoint ClickHouse's base URL, or nginx's, which
#      answers the worker's column check with 204: unchecked), gzip too.
#      The first null-sink backlog is also decoded once by the output plugin
#      alone (a slot created before it, consumed with
#      pg_logical_slot_get_binary_changes): the plugin decode rate of the
#      same backlog, the ceiling of any sink.  At the end,
#      ClickHouse's count() and sum(total) FINAL WHERE NOT _deleted must
#      equal PostgreSQL's for "orders" (and the row counts of "events").
#   2. Freshness at steady load.  pgbench inserts one small row per
#      transaction into "events" (its created_at column set with
#      clock_timestamp()) at FRESH_RATE tx/s for FRESH_SECONDS, walship at
#      its default batching settings plus the ClickHouse settings above.  A
#      poller queries ClickHouse every POLL_MS ms for the ids it has not seen
#      yet; an id's "visible" time is the end of the first poll that returned
#      it (an upper bound; the start of the poll before is a lower bound).
#      Freshness = visible - the row's commit time (_commit_ts, which walship
#      ships with every row), p50/p90/p99/max; walship.status
#      freshness_seconds is sampled every 0.5 s alongside.
#
# Usage (from the repository root, as root or as any user; about 2 minutes with the default FORMATS):
#
#     bash bench/clickhouse_bench.sh
#
# As root, the script re-runs itself as the "postgres" user (initdb refuses to
# run as root); ClickHouse, nginx, the poller and pgbench run as that user
# too.  It installs nothing; it needs PostgreSQL 15 with pgbench, an installed
# walship, clickhouse-server, nginx, perl, python3 and curl:
#
#     apt-get install postgresql-15 postgresql-client-15 clickhouse-server nginx-light perl python3 curl
#     make && make install
#
# Environment (all optional):
#     CHANGES=500000      row changes in each throughput backlog
#     FORMATS="ndjson rowbinary"  throughput: the request formats compared;
#                         FORMAT:N runs that format with walship.encoder_workers
#                         = N (e.g. "ndjson:0", the one-process path of
#                         before the encoder workers), otherwise the default
#     COMPRESSION=gzip    walship.compression of every case (none, gzip, zstd;
#                         18.16 knows no zstd)
#     ROUNDS=2            throughput: backlogs per sink, in ABBA order
#     TXN_SIZE=1000       row changes per transaction of that backlog
#     PREFILL=100000      orders inserted (and shipped into ClickHouse) first
#     FRESH_RATE=500      freshness: transactions per second (pgbench -R)
#     FRESH_SECONDS=30    freshness: duration
#     FRESH_CLIENTS=2     freshness: pgbench clients
#     POLL_MS=50          freshness: ClickHouse polling interval
#     SHIP_TIMEOUT=300    seconds a throughput case may take to ship
#     STALL_SECONDS=30    a throughput case fails when changes_shipped does
#                         not move for this long
#     SKIP="..."          any of: throughput freshness (parts not run)
#     WALSHIP_SETTINGS="" more walship settings for every case, as name=value
#                         words (e.g. "batch_max_changes=50000"); shown under
#                         "settings"
#     BENCH_PORT=5497     port of the throwaway cluster (unix socket only)
#     HTTP_PORT=18497     port of nginx on 127.0.0.1
#     BENCH_USER=postgres user everything runs as when started as root
#     PG_CONFIG=pg_config selects the PostgreSQL installation
#     NGINX=nginx         the nginx binary
#     KEEP_TMP=1          keep the temporary directory (data, logs)
#
set -euo pipefail

CHANGES=${CHANGES:-500000}
FORMATS=${FORMATS:-ndjson rowbinary}
COMPRESSION=${COMPRESSION:-gzip}
ROUNDS=${ROUNDS:-2}
TXN_SIZE=${TXN_SIZE:-1000}
PREFILL=${PREFILL:-100000}
FRESH_RATE=${FRESH_RATE:-500}
FRESH_SECONDS=${FRESH_SECONDS:-30}
FRESH_CLIENTS=${FRESH_CLIENTS:-2}
POLL_MS=${POLL_MS:-50}
SHIP_TIMEOUT=${SHIP_TIMEOUT:-300}
STALL_SECONDS=${STALL_SECONDS:-30}
SKIP=${SKIP:-}
BENCH_PORT=${BENCH_PORT:-5497}
HTTP_PORT=${HTTP_PORT:-18497}
BENCH_USER=${BENCH_USER:-postgres}
PG_CONFIG=${PG_CONFIG:-pg_config}
NGINX=${NGINX:-nginx}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_NAME=clickhouse_bench
BENCH_LOG_CLOCK=1
# shellcheck source=bench/lib.sh
declare -F drop_root >/dev/null || . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

# The repository (demo/clickhouse.pl and t/WalshipClickHouse.pm start ClickHouse).
SRC_DIR=${CLICKHOUSE_BENCH_SRC:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/..}
SRC_DIR=$(readlink -f "$SRC_DIR" 2>/dev/null || echo "$SRC_DIR")

# As root, re-run as BENCH_USER: initdb refuses to run as root.
drop_root CLICKHOUSE_BENCH_SRC="$SRC_DIR" -- "$@"

# ---------------------------------------------------------------------------
# Check the installation.  Nothing is installed from here.
# ---------------------------------------------------------------------------
require_postgres "install postgresql-15 and postgresql-client-15" initdb pg_ctl psql pgbench
require_walship
find_nginx
for prog in perl python3 curl; do
	command -v "$prog" >/dev/null 2>&1 || die "$prog not found; apt-get install $prog"
done
for f in demo/clickhouse.pl t/WalshipClickHouse.pm; do
	[ -r "$SRC_DIR/$f" ] || die "cannot read $SRC_DIR/$f as user $(id -un); run from a checkout that user can read"
done
CH_AVAILABLE=$(perl -I "$SRC_DIR/t" -MWalshipClickHouse -e 'my ($ok, $why) = WalshipClickHouse->available; print $ok ? "" : $why') ||
	die "cannot load t/WalshipClickHouse.pm"
[ -z "$CH_AVAILABLE" ] || die "clickhouse-server is not installed ($CH_AVAILABLE)"

WALSHIP_BUILD=$(walship_build)
require_positive_ints CHANGES ROUNDS TXN_SIZE PREFILL FRESH_RATE FRESH_SECONDS FRESH_CLIENTS POLL_MS \
	SHIP_TIMEOUT STALL_SECONDS BENCH_PORT HTTP_PORT

port_open "$HTTP_PORT" && die "port $HTTP_PORT on 127.0.0.1 is in use; set HTTP_PORT"

# ---------------------------------------------------------------------------
# Temporary directory: cluster, ClickHouse, nginx, poller; all stopped and
# removed on exit, ^C included.
# ---------------------------------------------------------------------------
nginx_pid=""
ch_keeper_pid=""
poller_pid=""
sampler_pid=""

# on_exit STATUS: called by the exit trap of lib.sh once the cluster is
# stopped: stops ClickHouse and, on failure, prints the end of its error log.
on_exit() {
	# demo/clickhouse.pl stops the server on SIGTERM (SIGTERM, then SIGKILL
	# after 30 s); if it dies otherwise, the harness's watchdog does it
	if [ -n "$ch_keeper_pid" ]; then
		stop_pid "$ch_keeper_pid" 400
	fi
	if [ "$1" -ne 0 ] && [ -s "$TMP/clickhouse/log/clickhouse-server.err.log" ]; then
		echo "clickhouse_bench: last lines of the ClickHouse error log:" >&2
		tail -n 10 "$TMP/clickhouse/log/clickhouse-server.err.log" >&2 || true
	fi
}
make_workdir
stop_on_exit sampler_pid poller_pid nginx_pid

# --- ClickHouse (started first: it takes a few seconds) -------------------------
mkdir -p "$TMP/clickhouse"
log "starting ClickHouse (demo/clickhouse.pl) in $TMP/clickhouse"
perl -I "$SRC_DIR/t" "$SRC_DIR/demo/clickhouse.pl" "$TMP/clickhouse" \
	</dev/null >"$TMP/clickhouse.out" 2>&1 &
ch_keeper_pid=$!

start_nginx
# {table} kept, so that requests are split per table exactly as for ClickHouse
NGINX_URL="http://127.0.0.1:$HTTP_PORT/ingest/{table}"
# RowBinary: the base URL; the worker adds ?query=INSERT ... per table
NGINX_BASE_URL="http://127.0.0.1:$HTTP_PORT/ingest/"

# --- wait for ClickHouse ---------------------------------------------------------
for _ in $(seq 1 1200); do
	[ -f "$TMP/clickhouse/ports" ] && break
	kill -0 "$ch_keeper_pid" 2>/dev/null || break
	sleep 0.1
done
[ -f "$TMP/clickhouse/ports" ] || { cat "$TMP/clickhouse.out" >&2 || true; die "ClickHouse did not start"; }
read -r CH_HTTP _ <"$TMP/clickhouse/ports"
CH_URL="http://127.0.0.1:$CH_HTTP/"
CH_PID=$(ps -o pid=,comm= --ppid "$ch_keeper_pid" | awk '$2 ~ /^clickhouse/ { print $1; exit }')
[ -n "$CH_PID" ] || die "cannot find the clickhouse-server process"

# chq SQL: runs SQL on ClickHouse, prints the answer; fails with its message
chq() {
	curl -sS --fail-with-body --data-binary "$1" "$CH_URL" ||
		die "ClickHouse query failed: $1"
}
CH_VERSION=$(chq 'SELECT version()')
log "ClickHouse $CH_VERSION on 127.0.0.1:$CH_HTTP (pid $CH_PID)"
chq 'CREATE DATABASE shop' >/dev/null
CH_ENDPOINT="${CH_URL}?query=INSERT%20INTO%20shop.{table}%20FORMAT%20JSONEachRow"
# Waits (at most $1 seconds) until ClickHouse is quiet: no merge in
# system.merges and clickhouse-server using under 5% of a CPU over 0.5 s
# (merges are scheduled a moment after the inserts, so system.merges alone
# can be empty while work is pending); prints the seconds waited.
ch_wait_quiet() {
	local t0 t1 a b
	t0=$(date +%s.%N)
	for _ in $(seq 1 $(($1 * 2))); do
		a=$(cpu_ticks "$CH_PID")
		sleep 0.5
		b=$(cpu_ticks "$CH_PID")
		if [ $((b - a)) -le $((CLK_TCK / 40)) ] &&
			[ "$(chq "SELECT count() FROM system.merges FORMAT TSV")" = 0 ]; then
			break
		fi
	done
	t1=$(date +%s.%N)
	# the last 0.5 s were quiet: not counted
	awk -v a="$t0" -v b="$t1" 'BEGIN { d = b - a - 0.5; printf "%.1f", d < 0 ? 0 : d }'
}
# rows inserted into ClickHouse tables so far (a ProfileEvents counter)
ch_inserted_rows() {
	chq "SELECT sum(value) FROM system.events WHERE event = 'InsertedRows' FORMAT TSV"
}

# --- the cluster ---------------------------------------------------------------
start_cluster 'pgoutput, test_decoding, walship' <<EOF
shared_preload_libraries = 'walship'
walship.database = 'postgres'
# only the changes of the bench's workload are measured
walship.initial_backfill = off
walship.publication = 'bench_pub'
# README, "ClickHouse" (18.16): flat shape, clickhouse_18 dialect, gzip, {table} endpoint
# (the throwaway ClickHouse has a password-less default user: no headers)
walship.endpoint = '$CH_ENDPOINT'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.dialect = 'clickhouse_18'
walship.compression = '$COMPRESSION'
EOF

# ---------------------------------------------------------------------------
# Schema and helpers.  The extension comes first here (unlike
# worker_bench.sh): ClickHouse must receive every row, the prefill included.
# ---------------------------------------------------------------------------
log "creating the tables and the extension"
{
	sql_orders_table
	cat <<'SQL'

-- freshness probes: one small row per transaction, stamped at insert time
CREATE TABLE events (
	id          bigserial PRIMARY KEY,
	kind        text NOT NULL,
	amount      numeric(10,2),
	created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- the same table for the null-sink cases: the ClickHouse cases change only
-- orders, the null-sink cases only orders_null, so ClickHouse's orders stays
-- complete and both get identical backlogs
CREATE TABLE orders_null (LIKE orders INCLUDING ALL);

CREATE PROCEDURE orders_insert(tbl regclass, lo bigint, hi bigint)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format($q$
	INSERT INTO %s
	SELECT g,
		   (random() * 100000)::int,
		   (ARRAY['DE','FR','US','GB','JP','BR','IN','NL'])[1 + g %% 8],
		   round((random() * 1000)::numeric, 2),
		   timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second',
		   random() < 0.5,
		   gen_random_uuid(),
		   jsonb_build_object('items', 1 + g %% 5,
							  'channel', CASE WHEN g %% 3 = 0 THEN 'web' ELSE 'store' END),
		   'order ' || g || ' via bench',
		   random() * 100,
		   date '2025-01-01' + (g %% 365)::int
	FROM generate_series($1, $2) AS g$q$, tbl) USING lo, hi;
END;
$$;

-- The workload of bench/plugin_bench.sh and bench/worker_bench.sh, on table
-- tbl: transactions of txn_size row changes, 50% INSERTs, 30% UPDATEs of
-- live rows, 20% DELETEs of the oldest rows.  Returns the row changes made.
CREATE PROCEDURE orders_workload(tbl regclass, n_changes bigint, txn_size int, INOUT changes bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	next_id   bigint;
	oldest    bigint;
	upd_at    bigint;
	batch     bigint;
	n_ins     bigint;
	n_upd     bigint;
	n_del     bigint;
	n         bigint;
BEGIN
	EXECUTE format('SELECT min(id), max(id) + 1 FROM %s', tbl) INTO oldest, next_id;
	upd_at := oldest;
	changes := 0;
	WHILE changes < n_changes LOOP
		batch := least(txn_size, n_changes - changes);
		n_ins := batch * 5 / 10;
		n_upd := batch * 3 / 10;
		n_del := batch - n_ins - n_upd;

		CALL orders_insert(tbl, next_id, next_id + n_ins - 1);
		next_id := next_id + n_ins;
		changes := changes + n_ins;

		IF upd_at < oldest OR upd_at + n_upd > next_id THEN
			upd_at := oldest + n_del;
		END IF;
		EXECUTE format($q$
		UPDATE %s
		   SET paid = true,
			   total = total + 1.50,
			   score = random() * 100,
			   note = 'order ' || id || ' paid'
		 WHERE id >= $1 AND id < $2$q$, tbl) USING upd_at, upd_at + n_upd;
		GET DIAGNOSTICS n = ROW_COUNT;
		upd_at := upd_at + n_upd;
		changes := changes + n;

		EXECUTE format('DELETE FROM %s WHERE id >= $1 AND id < $2', tbl) USING oldest, oldest + n_del;
		GET DIAGNOSTICS n = ROW_COUNT;
		oldest := oldest + n_del;
		changes := changes + n;

		COMMIT;
	END LOOP;
END;
$$;

CREATE PUBLICATION bench_pub FOR TABLE orders, orders_null, events;
CREATE EXTENSION walship;
SQL
	sql_worker_helpers
} | psql_cmd

# The ClickHouse tables, as walship suggests them
for t in orders orders_null events; do
	ddl=$(psql_cmd -c "SELECT walship.clickhouse_ddl('public.$t', 'shop', 'clickhouse_18')")
	chq "$ddl" >/dev/null
	echo "$ddl" >"$TMP/clickhouse-$t.sql"
done
log "ClickHouse tables: $(chq "SELECT name || ' ' || engine FROM system.tables WHERE database = 'shop' ORDER BY name FORMAT TSV" | paste -sd, -)"

CH_INSERTED0=$(ch_inserted_rows)
[ -n "$CH_INSERTED0" ] || CH_INSERTED0=0
wait_worker_streaming
log "worker streaming (pid $WORKER_PID) to ClickHouse"
# shellcheck disable=SC2086 # WALSHIP_SETTINGS is a list of words
set_walship "clickhouse_database=shop" ${WALSHIP_SETTINGS:-}
SETTINGS=$(walship_settings ndjson_shape dialect clickhouse_database compression batch_max_changes \
	batch_max_bytes batch_max_delay max_inflight encoder_workers)
DEFAULT_ENCODERS=$(psql_cmd -c "SELECT current_setting('walship.encoder_workers')")
use_encoders "$DEFAULT_ENCODERS"
LOAD_START=$(load_avg)

# "changes_shipped bytes_shipped batches_shipped retries" of walship.status
shipped_counters() {
	psql_cmd -F ' ' -c "SELECT changes_shipped, bytes_shipped, batches_shipped, retries FROM walship.status"
}
# CPU ticks of the walship worker and its encoder workers (ENCODER_PIDS)
walship_cpu_ticks() {
	local t pid
	t=$(cpu_ticks "$WORKER_PID")
	for pid in $ENCODER_PIDS; do
		t=$((t + $(cpu_ticks "$pid")))
	done
	echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)
NGINX_WORKER=$(ps -o pid= --ppid "$nginx_pid" | head -n 1 | tr -d ' ')

# --- the prefill, shipped into ClickHouse (insert-only initial load) ----------
log "prefill: $PREFILL rows in orders and in orders_null, shipped into ClickHouse"
read -r c0 _ _ _ <<<"$(shipped_counters)"
t0=$(date +%s.%N)
psql_cmd -c "SELECT setseed(0.42)" -c "CALL orders_insert('orders', 1, $PREFILL)" >/dev/null
psql_cmd -c "SELECT bench_wait_caught_up(300)" >/dev/null ||
	die "the worker did not ship the prefill into ClickHouse"
t1=$(date +%s.%N)
read -r c1 _ _ _ <<<"$(shipped_counters)"
PREFILL_LINE="$PREFILL rows inserted in one transaction and shipped into ClickHouse in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s (the INSERT included; $((c1 - c0)) changes)"
log "prefill: $PREFILL_LINE"
psql_cmd -c "SELECT setseed(0.42)" -c "CALL orders_insert('orders_null', 1, $PREFILL)" >/dev/null
psql_cmd -c "SELECT bench_wait_caught_up(300)" >/dev/null
psql_cmd -c "VACUUM ANALYZE orders" -c "VACUUM ANALYZE orders_null" -c "CHECKPOINT" >/dev/null
NGINX_CHANGES=0    # changes shipped to nginx, not into ClickHouse

# ---------------------------------------------------------------------------
# 1. Throughput: identical backlogs into ClickHouse and into nginx.
# ---------------------------------------------------------------------------
TP_RESULTS=()
DECODE_RESULT=""
# ship_case SINK ROUND FORMAT: switch the endpoint and format, pause, commit
# a backlog on the sink's table, resume, time it; appends to TP_RESULTS.
# The first nginx case also times the plugin decoding the same backlog.
ship_case() {
	local sink=$1 round=$2 spec=$3 format=${3%%:*} encoders=$DEFAULT_ENCODERS table sink_pid url
	local c0 b0 n0 r0 c1 b1 n1 r1 w0 w1 s0 s1 s2 merge_secs d0 d1 decoded
	[ "$spec" = "$format" ] || encoders=${spec#*:}
	if [ "$sink" = clickhouse ]; then
		table=orders sink_pid=$CH_PID url=$CH_ENDPOINT
		[ "$format" = rowbinary ] && url=$CH_URL
	else
		table=orders_null sink_pid=${NGINX_WORKER:-$nginx_pid} url=$NGINX_URL
		[ "$format" = rowbinary ] && url=$NGINX_BASE_URL
	fi
	psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
	# ClickHouse idle: no merge left over from what was inserted before
	ch_wait_quiet 120 >/dev/null
	set_walship "endpoint=$url" "format=$format"
	use_encoders "$encoders"
	psql_cmd -c "SELECT walship.pause()" >/dev/null
	psql_cmd -c "SELECT bench_wait('state = ''paused'' AND inflight = 0', 60)" >/dev/null
	if [ "$sink" = nginx ] && [ -z "$DECODE_RESULT" ]; then
		psql_cmd -c "SELECT 'x' FROM pg_create_logical_replication_slot('bench_decode', 'walship')" >/dev/null
	fi
	log "throughput $sink $format ($round): worker paused; backlog of $CHANGES row changes on $table in transactions of $TXN_SIZE"
	run_orders_workload "'$table', $CHANGES, $TXN_SIZE"
	if [ "$sink" = nginx ] && [ -z "$DECODE_RESULT" ]; then
		# the output plugin alone, on the same backlog (in one backend)
		d0=$(date +%s.%N)
		decoded=$(psql_cmd -c "SELECT count(*) FROM pg_logical_slot_get_binary_changes('bench_decode', '$WL_END_LSN', NULL,
			'publication_names', 'bench_pub', 'format_version', '2') WHERE get_byte(data, 0) IN (73, 85, 68)")
		d1=$(date +%s.%N)
		psql_cmd -c "SELECT pg_drop_replication_slot('bench_decode')" >/dev/null
		DECODE_RESULT="$decoded $(awk -v a="$d0" -v b="$d1" 'BEGIN { printf "%.3f", b - a }')"
		log "plugin decode: $decoded change records in $(awk -v a="$d0" -v b="$d1" 'BEGIN { printf "%.2f", b - a }') s"
	fi
	log "throughput $sink ($round): backlog committed in $WL_SECONDS s:" \
		"$WL_CHANGES row changes, $WL_WAL_BYTES bytes of WAL; resuming"
	read -r c0 b0 n0 r0 <<<"$(shipped_counters)"
	w0=$(walship_cpu_ticks)
	s0=$(cpu_ticks "$sink_pid")
	ship_backlog $((c0 + WL_CHANGES)) "$WL_END_LSN" "the backlog of case $sink ($round)"
	w1=$(walship_cpu_ticks)
	s1=$(cpu_ticks "$sink_pid")
	read -r c1 b1 n1 r1 <<<"$(shipped_counters)"
	# the work (merges) ClickHouse does after the inserts: time and its CPU
	merge_secs=$(ch_wait_quiet 120)
	s2=$(cpu_ticks "$sink_pid")
	[ $((c1 - c0)) -eq "$WL_CHANGES" ] ||
		log "WARNING: changes_shipped grew by $((c1 - c0)), the backlog has $WL_CHANGES row changes"
	[ "$sink" = nginx ] && NGINX_CHANGES=$((NGINX_CHANGES + c1 - c0))
	log "throughput $sink $spec ($round): shipped in $SHIP_SECS s (last acknowledgement at $ACK_SECS s)"
	TP_RESULTS+=("$sink $spec|$round|$WL_CHANGES|$WL_WAL_BYTES|$SHIP_SECS|$((n1 - n0))|$((b1 - b0))|$((w1 - w0))|$((s1 - s0))|$((r1 - r0))|$merge_secs|$((s2 - s1))")
}

if ! skipped throughput; then
	# ABBA order over the rounds, so that a drift in the machine's load cancels
	for round in $(seq 1 "$ROUNDS"); do
		for format in $FORMATS; do
			if [ $((round % 2)) -eq 1 ]; then
				ship_case clickhouse "$round" "$format"
				ship_case nginx "$round" "$format"
			else
				ship_case nginx "$round" "$format"
				ship_case clickhouse "$round" "$format"
			fi
		done
	done
fi
# from here on everything is shipped into ClickHouse
set_walship "endpoint=$CH_ENDPOINT" "format=ndjson"
use_encoders "$DEFAULT_ENCODERS"
psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null

# ---------------------------------------------------------------------------
# 2. Freshness at steady load: commit to visible in ClickHouse.
# ---------------------------------------------------------------------------
FRESH_RESULT=""
if ! skipped freshness; then
	set_walship "endpoint=$CH_ENDPOINT"
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	# settle: a first request on the connection
	psql_cmd -c "INSERT INTO events (kind, amount) VALUES ('warmup', 0)" >/dev/null
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	ch_wait_quiet 120 >/dev/null
	EV0=$(psql_cmd -c "SELECT coalesce(max(id), 0) FROM events")
	read -r fc0 _ fn0 fr0 <<<"$(shipped_counters)"

	# The poller: every POLL_MS ms, the ids above the highest id below which
	# all have been seen; per id first seen: poll start, poll end, previous
	# poll start, and the row's _commit_ts and created_at (µs).
	cat >"$TMP/poller.py" <<'PY'
import http.client, os, signal, sys, time

port, ev0, interval, out, stopfile = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000, sys.argv[4], sys.argv[5]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)

conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
def query(sql):
    global conn
    for attempt in range(3):
        try:
            conn.request('POST', '/', body=sql.encode())
            r = conn.getresponse()
            body = r.read().decode()
            if r.status != 200:
                raise RuntimeError('HTTP %d: %s' % (r.status, body.strip()))
            return body
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    raise RuntimeError('ClickHouse does not answer')

seen = set()
low = ev0            # every id in (ev0, low] has been seen
prev_start = None
polls = []
f = open(out, 'w')
while not stop:
    t_start = time.time()
    body = query('SELECT id, _commit_ts, created_at FROM shop.events WHERE id > %d FORMAT TSV' % low)
    t_end = time.time()
    for line in body.splitlines():
        i, cts, cat = (int(x) for x in line.split('\t'))
        if i in seen:
            continue
        seen.add(i)
        f.write('%d %d %d %.6f %.6f %.6f\n' % (i, cts, cat, t_start, t_end, prev_start if prev_start else t_start))
    while low + 1 in seen:
        low += 1
    polls.append((t_start, t_end))
    prev_start = t_start
    if os.path.exists(stopfile):
        break
    delay = t_start + interval - time.time()
    if delay > 0:
        time.sleep(delay)
f.close()
with open(out + '.polls', 'w') as p:
    for a, b in polls:
        p.write('%.6f %.6f\n' % (a, b))
PY
	rm -f "$TMP/poller.stop"
	python3 "$TMP/poller.py" "$CH_HTTP" "$EV0" "$POLL_MS" "$TMP/visible.txt" "$TMP/poller.stop" \
		>"$TMP/poller.log" 2>&1 &
	poller_pid=$!

	# walship.status sampled every 0.5 s
	(
		while :; do
			psql_cmd -F ' ' -c "SELECT extract(epoch FROM clock_timestamp()), state, lag_bytes, freshness_seconds, changes_shipped, inflight FROM walship.status" || exit 0
			sleep 0.5
		done
	) >"$TMP/status.txt" 2>/dev/null &
	sampler_pid=$!

	cat >"$TMP/fresh.sql" <<'EOF'
INSERT INTO events (kind, amount, created_at) VALUES ('probe', random() * 100, clock_timestamp());
EOF
	T_LOAD0=$(date +%s.%N)
	log "freshness: pgbench -R $FRESH_RATE -T $FRESH_SECONDS -c $FRESH_CLIENTS, one INSERT per transaction; polling ClickHouse every $POLL_MS ms"
	pgbench_cmd -n -f "$TMP/fresh.sql" -R "$FRESH_RATE" -T "$FRESH_SECONDS" \
		-c "$FRESH_CLIENTS" -j "$FRESH_CLIENTS" >"$TMP/pgbench-fresh.log" 2>&1 ||
		{ cat "$TMP/pgbench-fresh.log" >&2; die "pgbench failed"; }
	T_LOAD1=$(date +%s.%N)
	FRESH_TPS=$(awk -v t="$(pgbench_tps "$TMP/pgbench-fresh.log")" 'BEGIN { printf "%.1f", t }')
	psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null ||
		die "the worker did not catch up after the freshness load"
	FRESH_ROWS=$(psql_cmd -c "SELECT count(*) FROM events WHERE id > $EV0")
	# let the poller see the last rows
	for _ in $(seq 1 100); do
		[ "$(wc -l <"$TMP/visible.txt")" -ge "$FRESH_ROWS" ] && break
		kill -0 "$poller_pid" 2>/dev/null || break
		sleep 0.1
	done
	touch "$TMP/poller.stop"
	for _ in $(seq 1 50); do kill -0 "$poller_pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$poller_pid" 2>/dev/null && stop_pid "$poller_pid"
	wait "$poller_pid" 2>/dev/null || { cat "$TMP/poller.log" >&2; die "the ClickHouse poller failed"; }
	poller_pid=""
	stop_pid "$sampler_pid"
	sampler_pid=""
	read -r fc1 _ fn1 fr1 <<<"$(shipped_counters)"
	CH_EVENTS=$(chq "SELECT count() FROM shop.events FINAL WHERE NOT _deleted AND id > $EV0 FORMAT TSV")

	FRESH_RESULT=$(python3 - "$TMP/visible.txt" "$TMP/status.txt" "$T_LOAD0" "$T_LOAD1" <<'PY'
import sys, statistics

vis, status, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
upper, lower, ins = [], [], []
for line in open(vis):
    i, cts, cat, ts, te, tp = line.split()
    cts, cat = int(cts) / 1e6, int(cat) / 1e6
    upper.append(float(te) - cts)
    lower.append(float(tp) - cts)
    ins.append(float(te) - cat)
polls = [tuple(map(float, l.split())) for l in open(vis + '.polls')]
periods = [b[0] - a[0] for a, b in zip(polls, polls[1:])]
durs = [b - a for a, b in polls]

def pct(v, p):
    v = sorted(v)
    if not v:
        return float('nan')
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))  # nearest rank
    return v[k]
def row(v):
    return ' '.join('%.1f' % (1000 * pct(v, p)) for p in (50, 90, 99, 100))

print('UPPER', len(upper), row(upper))
print('LOWER', len(lower), row(lower))
print('INSERT', len(ins), row(ins))
print('POLL', len(polls), '%.1f' % (1000 * statistics.median(periods)) if periods else 'nan',
      '%.1f' % (1000 * statistics.median(durs)) if durs else 'nan',
      '%.1f' % (1000 * max(durs)) if durs else 'nan')
# walship.status samples during the load
fr = []
for line in open(status):
    parts = line.split()
    if len(parts) < 6:
        continue
    t = float(parts[0])
    if t0 <= t <= t1:
        fr.append((t - t0, parts[1], int(parts[2]), float(parts[3]), int(parts[4]), int(parts[5])))
f = [x[3] for x in fr]
print('FSTAT', len(f), sum(1 for x in f if x == 0), '%.3f' % pct(f, 50), '%.3f' % pct(f, 90), '%.3f' % max(f) if f else 'nan',
      max(x[2] for x in fr) if fr else 0)
# one sample every ~3 s for the printed table
last = -10
for x in fr:
    if x[0] - last >= 3:
        last = x[0]
        print('FSAMPLE %.1f %s %d %.3f %d %d' % x)
PY
)
	FRESH_RESULT="$FRESH_TPS $FRESH_ROWS $CH_EVENTS $((fc1 - fc0)) $((fn1 - fn0)) $((fr1 - fr0))
$FRESH_RESULT"
fi

# ---------------------------------------------------------------------------
# Check: ClickHouse answers like PostgreSQL.  Everything is acknowledged, so
# ClickHouse has every change of orders and events.
# ---------------------------------------------------------------------------
psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
PG_ORDERS=$(psql_cmd -F ' ' -c "SELECT count(*), sum(total) FROM orders")
CH_ORDERS=$(chq "SELECT count(), sum(total) FROM shop.orders FINAL WHERE NOT _deleted FORMAT TSV" | tr '\t' ' ')
PG_EVENTS=$(psql_cmd -c "SELECT count(*) FROM events")
CH_EVENTS_ALL=$(chq "SELECT count() FROM shop.events FINAL WHERE NOT _deleted FORMAT TSV")
CH_RAW=$(chq "SELECT count() FROM shop.orders FORMAT TSV")
CH_PARTS=$(chq "SELECT count() FROM system.parts WHERE database = 'shop' AND table = 'orders' AND active FORMAT TSV")
# Rows ClickHouse's INSERTs wrote (ProfileEvents InsertedRows, since the
# tables were created) against the changes walship sent to ClickHouse: more
# would be redelivered duplicates.  Merges have already collapsed versions,
# so count() cannot tell.
CH_INSERTED=$(ch_inserted_rows)
CH_SENT=$(( $(psql_cmd -c "SELECT changes_shipped FROM walship.status") - NGINX_CHANGES ))
read -r PG_N PG_SUM <<<"$PG_ORDERS"
read -r CH_N CH_SUM <<<"$CH_ORDERS"
if [ -n "$CH_SUM" ] && [ "$PG_N" = "$CH_N" ] && awk -v a="$PG_SUM" -v b="$CH_SUM" 'BEGIN { exit !(a + 0 == b + 0) }' &&
	[ "$PG_EVENTS" = "$CH_EVENTS_ALL" ]; then
	VERDICT=MATCH
else
	VERDICT=MISMATCH
fi

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
print_header "walship delivery into ClickHouse benchmark" ", fsync = off"
echo "  settings:  ${SETTINGS% }"
echo "  compression: $COMPRESSION"
echo "  formats:   $FORMATS (ndjson: flat shape, clickhouse dialect; rowbinary: INSERT INTO shop.<table> (columns) FORMAT RowBinary;" \
	"FORMAT:N with N encoder workers, otherwise $DEFAULT_ENCODERS)"
echo "  endpoint:  ClickHouse $CH_VERSION (Debian clickhouse-server, HTTP, INSERT INTO shop.{table} FORMAT JSONEachRow," \
	"ReplacingMergeTree(_version) from walship.clickhouse_ddl()); null sink: nginx" \
	"$(nginx_version) (return 204, 1 worker process); all on 127.0.0.1"
print_load_line
echo "  prefill:   $PREFILL_LINE"

if [ ${#TP_RESULTS[@]} -gt 0 ]; then
	echo
	echo "1. throughput: backlog of $CHANGES row changes (50% INSERT, 30% UPDATE, 20% DELETE, transactions of $TXN_SIZE," \
		"11-column orders table) committed while paused, shipped after walship.resume(); the same settings for both sinks," \
		"only walship.endpoint differs; $ROUNDS rounds, ABBA order"
	echo
	table_header r3 "run" l20 "sink" r7 "changes" r7 "WAL MB" r7 "batches" r8 "body MB" r8 "ship s" r10 "changes/s" \
		r12 "worker CPU s" r10 "sink CPU s" r7 "retries" r18 "ClickHouse after"
	: >"$TMP/rates"
	for res in "${TP_RESULTS[@]}"; do
		IFS='|' read -r name round ch wal ship nb bytes wcpu scpu retr msecs mcpu <<<"$res"
		awk -v rd="$round" -v f="$name" -v n="$ch" -v w="$wal" -v s="$ship" -v nb="$nb" -v by="$bytes" -v wc="$wcpu" -v sc="$scpu" -v r="$retr" -v hz="$CLK_TCK" \
			-v ms="$msecs" -v mc="$mcpu" 'BEGIN {
			m = (f ~ /^clickhouse/) ? sprintf("%.1f s, %.1f CPU s", ms, mc / hz) : "-"
			printf "| %3s | %-20s | %7d | %7.1f | %7d | %8.1f | %8.3f | %10.0f | %12.2f | %10.2f | %7d | %18s |\n",
				rd, f, n, w / 1048576, nb, by / 1048576, s, n / s, wc / hz, sc / hz, r, m
		}'
		echo "${name// /_} $ch $ship" >>"$TMP/rates"
	done
	echo
	awk -v decode="$DECODE_RESULT" -v formats="$FORMATS" '{ n[$1] += $2; s[$1] += $3 }
		END {
			split(decode, d, " ")
			dr = (d[2] > 0) ? d[1] / d[2] : 0
			if (dr > 0)
				printf "  plugin decode (pg_logical_slot_get_binary_changes, one backend, the first null-sink backlog): %.0f changes/s\n", dr
			nf = split(formats, fs, " ")
			for (i = 1; i <= nf; i++) {
				f = fs[i]; c = "clickhouse_" f; g = "nginx_" f
				if ((c in s) && (g in s)) {
					a = n[c] / s[c]; b = n[g] / s[g]
					printf "  %-9s into ClickHouse: %.0f changes/s, %.1f%% of its null-sink rate (%.0f changes/s)", f, a, 100 * a / b, b
					if (dr > 0)
						printf "; null sink %.1f%% of the plugin decode rate", 100 * b / dr
					printf "\n"
					rate[f] = a
				}
			}
			if ("rowbinary" in rate)
				for (i = 1; i <= nf; i++)
					if (fs[i] != "rowbinary" && (fs[i] in rate))
						printf "  RowBinary into ClickHouse: %.2fx the %s rate (same compression)\n", rate["rowbinary"] / rate[fs[i]], fs[i]
			print "  (all changes over all ship seconds, per sink and format, for the same backlogs)"
		}' "$TMP/rates"
	echo "  ship s = walship.resume() until changes_shipped has grown by the backlog's row changes and confirmed_lsn" \
		"passed its last WAL record (polled every 10 ms); body = request bodies as sent (after walship.compression);"
	echo "  CPU s = user + system time during the case: the walship worker with its encoder workers, and the sink (clickhouse-server, or nginx's worker);" \
		"every case starts with ClickHouse quiet (no merge, under 5% CPU);" \
		"ClickHouse after = how long it kept working (merging) after the last acknowledgement, and its CPU seconds then" \
		"(in neither ship s nor sink CPU s)"
	echo "  the ClickHouse cases change table orders, the nginx cases orders_null (created LIKE orders, the same prefill)"
fi

if [ -n "$FRESH_RESULT" ]; then
	{
		read -r ftps frows chev dch dn dr
		while read -r tag rest; do
			case $tag in
				UPPER) read -r un u50 u90 u99 umax <<<"$rest" ;;
				LOWER) read -r _ l50 l90 l99 lmax <<<"$rest" ;;
				INSERT) read -r _ i50 i90 i99 imax <<<"$rest" ;;
				POLL) read -r npolls pperiod pdur pdurmax <<<"$rest" ;;
				FSTAT) read -r fn fzero f50 f90 fmax flagmax <<<"$rest" ;;
				FSAMPLE) echo "$rest" >>"$TMP/fsamples" ;;
			esac
		done
	} <<<"$FRESH_RESULT"
	echo
	echo "2. freshness: pgbench -R $FRESH_RATE -T $FRESH_SECONDS -c $FRESH_CLIENTS, one INSERT of a small row per transaction" \
		"(created_at = clock_timestamp()); walship defaults plus the ClickHouse settings; ClickHouse polled every $POLL_MS ms" \
		"for the ids it had not shown yet"
	echo
	table_header l46 "from -> to" r6 "rows" r8 "p50 ms" r8 "p90 ms" r8 "p99 ms" r8 "max ms"
	printf '| %-46s | %6s | %8s | %8s | %8s | %8s |\n' "commit (_commit_ts) -> visible (upper bound)" "$un" "$u50" "$u90" "$u99" "$umax"
	printf '| %-46s | %6s | %8s | %8s | %8s | %8s |\n' "commit (_commit_ts) -> visible (lower bound)" "$un" "$l50" "$l90" "$l99" "$lmax"
	printf '| %-46s | %6s | %8s | %8s | %8s | %8s |\n' "INSERT (clock_timestamp()) -> visible (upper)" "$un" "$i50" "$i90" "$i99" "$imax"
	echo
	echo "  visible (upper bound) = end of the first poll whose answer held the row; lower bound = start of the poll before" \
		"(the row was not visible yet then)."
	echo "  polls: $npolls, median period $pperiod ms, median duration $pdur ms (max $pdurmax ms)." \
		"tx/s $ftps; rows inserted $frows, seen by the poller $un, in ClickHouse (FINAL WHERE NOT _deleted) $chev;" \
		"shipped in $dn requests ($(awk -v a="$dch" -v b="$dn" 'BEGIN { printf "%.1f", b ? a / b : 0 }') changes/request), $dr retries"
	echo
	echo "  walship.status during the load (sampled every 0.5 s): $fn samples, freshness_seconds = 0 in $fzero," \
		"p50 $f50 s, p90 $f90 s, max $fmax s; lag_bytes max $flagmax"
	echo
	table_header r6 "t s" l10 "state" r9 "lag_bytes" r17 "freshness_seconds" r15 "changes_shipped" r8 "inflight"
	while read -r t st lag fr chs inf; do
		printf '| %6s | %-10s | %9s | %17s | %15s | %8s |\n' "$t" "$st" "$lag" "$fr" "$chs" "$inf"
	done <"$TMP/fsamples"
fi

echo
echo "check at the end: $VERDICT: orders: PostgreSQL count(*) $PG_N, sum(total) $PG_SUM;" \
	"ClickHouse count() FINAL WHERE NOT _deleted $CH_N, sum(total) $CH_SUM; events: PostgreSQL $PG_EVENTS rows, ClickHouse $CH_EVENTS_ALL"
if [[ "$CH_INSERTED" =~ ^[0-9]+$ ]]; then
	echo "  ClickHouse inserted $((CH_INSERTED - CH_INSERTED0)) rows (system.events InsertedRows) for $CH_SENT changes walship" \
		"sent to it: $((CH_INSERTED - CH_INSERTED0 - CH_SENT)) duplicates; shop.orders holds $CH_RAW rows in $CH_PARTS active parts" \
		"(background merges collapse versions)"
fi
print_worker_totals

warn_if_rebuilt "the timings"
