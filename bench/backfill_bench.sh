#!/usr/bin/env bash
#
# backfill_bench.sh - backfills by the walship worker, against the ways of
# copying the same table without it, and their cost to the live stream
#
# Starts a throwaway PostgreSQL cluster in a temporary directory with walship
# in shared_preload_libraries and nginx answering 204 to every request (a
# null sink), loads ROWS rows into the 11-column "orders" table of the other
# benchmarks (bigint key, in key order), and measures, in one run on that
# table:
#
#   1. Throughput.  walship.backfill('orders', CHUNK) for each format of
#      FORMATS (ndjson in the flat shape, binary) and each chunk size of
#      CHUNKS, timed on the server from the call until walship.backfills
#      shows the backfill 'done' (every chunk acknowledged by nginx; polled
#      every 10 ms).  Side by side, on the same table:
#        - COPY (SELECT * FROM orders) TO STDOUT through psql into /dev/null:
#          the floor, reading and sending the rows alone;
#        - COPY ... (FORMAT csv) piped into curl POSTing it to the same nginx
#          (one streamed, chunked request): what one would script by hand;
#        - PostgreSQL's logical replication initial table sync: a second
#          local cluster, CREATE SUBSCRIPTION ... WITH (copy_data = true),
#          timed until pg_subscription_rel shows the table ready ('r'); the
#          built-in peer (the table sync COPYs the rows over a walsender
#          connection, then catches up through pgoutput), which also writes
#          them into a table with its primary key on the subscriber.
#      Every method runs ROUNDS times, in turn, the order reversed in even
#      rounds; medians are printed: rows/s, MB/s of what went over the wire,
#      elapsed seconds, rows/s relative to the floor, every round's time; and
#      the CPU seconds of everything involved (clusters, nginx, psql, curl),
#      which moves less than wall time when other work shares the machine;
#      for walship also batches, body bytes, the worker's own CPU seconds and
#      the delay before it picked the backfill up.  A peer that cannot run
#      here is reported with the reason.
#   2. Freshness of live changes during a backfill.  pgbench updates one row
#      per transaction of another published table, "live" (LIVE_ROWS rows),
#      at FRESH_RATE tx/s while the worker ships ndjson (flat shape) to
#      http://127.0.0.1:ROUTER_PORT/ingest/{schema}/{table}: a second nginx
#      that answers /ingest/public/orders itself (204, the null sink) and
#      proxies every other request to the test suite's recording sink
#      (t/http_sink.py).  As in worker_bench.sh, the latency of a change is
#      the sink's t_answered for the request carrying it minus its
#      _commit_ts.  Three cases: no backfill (FRESH_SECONDS), a backfill of
#      "orders" at the defaults, and one with walship.backfill_max_rate =
#      FRESH_MAX_RATE; in the backfill cases only the changes committed
#      while the backfill ran (started_at to finished_at) count.  Printed:
#      p50/p95/p99/max, live changes per second, and the backfill's rows/s.
#
# Usage (from the repository root, as root or as any user; about 4 minutes):
#
#     bash bench/backfill_bench.sh
#
# As root, the script re-runs itself as the "postgres" user (initdb refuses
# to run as root); nginx, the sink, curl and pgbench then run as that user
# too.  It installs nothing; it needs PostgreSQL 15 with pgbench, an
# installed walship, nginx, python3 and curl:
#
#     apt-get install postgresql-15 postgresql-client-15 nginx-light python3 curl
#     make && make install
#
# Environment (all optional):
#     ROWS=2000000        rows of "orders"
#     ROUNDS=5            throughput: rounds of every method (the order
#                         reversed in even rounds); medians are reported
#     FORMATS="ndjson binary"  throughput: walship.format of the backfills
#                         (ndjson in the flat shape)
#     CHUNKS="10000 50000"     throughput: chunk sizes (walship.backfill's
#                         chunk_size), each with each format
#     FRESH_RATE=500      freshness: live transactions per second (pgbench -R)
#     FRESH_CLIENTS=2     freshness: pgbench clients
#     FRESH_SECONDS=20    freshness: duration of the case without a backfill
#     FRESH_CHUNK=10000   freshness: chunk size of its backfills
#     FRESH_MAX_RATE=100000  freshness: walship.backfill_max_rate of the
#                         rate-limited case
#     LIVE_ROWS=10000     rows of "live"
#     BACKFILL_TIMEOUT=300  seconds a backfill may take
#     SKIP="..."          any of: walship copy curl subscription freshness
#                         (parts or peers not run)
#     BENCH_PORT=5496     port of the throwaway cluster (unix socket only)
#     SUB_PORT=5495       port of the subscriber cluster (unix socket only)
#     HTTP_PORT=18496     port of the nginx null sink on 127.0.0.1
#     ROUTER_PORT=18495   port of the routing nginx of part 2 on 127.0.0.1
#     BENCH_USER=postgres user everything runs as when started as root
#     PG_CONFIG=pg_config selects the PostgreSQL installation
#     NGINX=nginx         the nginx binary
#     KEEP_TMP=1          keep the temporary directory (data, logs, bodies)
#
set -euo pipefail

ROWS=${ROWS:-2000000}
ROUNDS=${ROUNDS:-5}
FORMATS=${FORMATS:-ndjson binary}
CHUNKS=${CHUNKS:-10000 50000}
FRESH_RATE=${FRESH_RATE:-500}
FRESH_CLIENTS=${FRESH_CLIENTS:-2}
FRESH_SECONDS=${FRESH_SECONDS:-30}
FRESH_CHUNK=${FRESH_CHUNK:-10000}
FRESH_MAX_RATE=${FRESH_MAX_RATE:-100000}
LIVE_ROWS=${LIVE_ROWS:-10000}
BACKFILL_TIMEOUT=${BACKFILL_TIMEOUT:-300}
SKIP=${SKIP:-}
BENCH_PORT=${BENCH_PORT:-5496}
SUB_PORT=${SUB_PORT:-5495}
HTTP_PORT=${HTTP_PORT:-18496}
ROUTER_PORT=${ROUTER_PORT:-18495}
BENCH_USER=${BENCH_USER:-postgres}
PG_CONFIG=${PG_CONFIG:-pg_config}
NGINX=${NGINX:-nginx}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_NAME=backfill_bench
BENCH_LOG_CLOCK=1
# shellcheck source=bench/lib.sh
declare -F drop_root >/dev/null || . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

# The recording sink of the test suite, next to this script's directory.
SINK_SCRIPT=${BACKFILL_BENCH_SINK:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../t/http_sink.py}
SINK_SCRIPT=$(readlink -f "$SINK_SCRIPT" 2>/dev/null || echo "$SINK_SCRIPT")

# As root, re-run as BENCH_USER: initdb refuses to run as root.
drop_root BACKFILL_BENCH_SINK="$SINK_SCRIPT" -- "$@"

# ---------------------------------------------------------------------------
# Check the installation and the settings.  Nothing is installed from here.
# ---------------------------------------------------------------------------
require_postgres "install postgresql-15 and postgresql-client-15" initdb pg_ctl psql pgbench
require_walship
find_nginx
command -v curl >/dev/null 2>&1 || die "curl not found; apt-get install curl"
if ! skipped freshness; then
	command -v python3 >/dev/null 2>&1 || die "python3 not found; apt-get install python3, or SKIP=freshness"
	[ -r "$SINK_SCRIPT" ] ||
		die "cannot read the test sink $SINK_SCRIPT as user $(id -un); run from a checkout that user can read, or SKIP=freshness"
fi
for part in $SKIP; do
	case $part in
		walship | copy | curl | subscription | freshness) ;;
		*) die "SKIP takes any of: walship copy curl subscription freshness (got '$part')" ;;
	esac
done

WALSHIP_BUILD=$(walship_build)
# The optimization level walship.so was compiled with, from its debug info
# (the last -O of DW_AT_producer): an -O0 build of a debugging session
# costs the worker about half again as much CPU.
walship_opt() {
	local producer
	command -v readelf >/dev/null 2>&1 || { echo "unknown (no readelf)"; return; }
	producer=$(readelf --debug-dump=info "$PKGLIBDIR/walship.so" 2>/dev/null | grep -m 1 DW_AT_producer || true)
	grep -o -- ' -O[0-9a-z]*' <<<"$producer" | tail -n 1 | tr -d ' ' | grep . || echo "unknown (no debug info)"
}
WALSHIP_OPT=$(walship_opt)
[ "$WALSHIP_OPT" != -O0 ] ||
	log "WARNING: $PKGLIBDIR/walship.so was compiled with -O0; the timings will not be representative"
require_positive_ints ROWS ROUNDS FRESH_RATE FRESH_CLIENTS FRESH_SECONDS FRESH_CHUNK FRESH_MAX_RATE \
	LIVE_ROWS BACKFILL_TIMEOUT BENCH_PORT SUB_PORT HTTP_PORT ROUTER_PORT
for f in $FORMATS; do
	[[ "$f" =~ ^(ndjson|binary)$ ]] || die "FORMATS entries are ndjson or binary (got '$f')"
done
for c in $CHUNKS $FRESH_CHUNK; do
	if ! [[ "$c" =~ ^[1-9][0-9]{0,6}$ ]] || [ "$c" -gt 1000000 ]; then
		die "chunk sizes are integers from 1 to 1000000 (got '$c')"
	fi
done
[ "$BENCH_PORT" != "$SUB_PORT" ] || die "BENCH_PORT and SUB_PORT must differ"
[ "$HTTP_PORT" != "$ROUTER_PORT" ] || die "HTTP_PORT and ROUTER_PORT must differ"
port_open "$HTTP_PORT" && die "port $HTTP_PORT on 127.0.0.1 is in use; set HTTP_PORT"
if ! skipped freshness; then
	port_open "$ROUTER_PORT" && die "port $ROUTER_PORT on 127.0.0.1 is in use; set ROUTER_PORT"
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------
# Throwaway cluster and nginx: everything in a temporary directory, stopped
# and removed on exit (the subscriber cluster by on_exit below).
# ---------------------------------------------------------------------------
nginx_pid=""
router_pid=""
sink_pid=""
live_pid=""
sub_started=0
make_workdir
stop_on_exit live_pid sink_pid router_pid nginx_pid
SUB_DATA="$TMP/sub-data"
SUB_LOG="$TMP/sub-server.log"

# on_exit STATUS: called by the exit trap of lib.sh; stops the subscriber.
on_exit() {
	if [ "$sub_started" -eq 1 ]; then
		"$BINDIR/pg_ctl" -D "$SUB_DATA" -m immediate -w stop >/dev/null 2>&1 || true
		if [ "$1" -ne 0 ] && [ -f "$SUB_LOG" ]; then
			echo "$BENCH_NAME: last lines of the subscriber's log:" >&2
			tail -n 10 "$SUB_LOG" >&2 || true
		fi
	fi
}

start_nginx
NGINX_URL="http://127.0.0.1:$HTTP_PORT/ingest"

start_cluster 'pgoutput, walship' <<EOF
# the whole table and its index stay in shared buffers
shared_buffers = 1GB

shared_preload_libraries = 'walship'
walship.database = 'postgres'
# the bench queues its own backfills and times them
walship.initial_backfill = off
walship.publication = 'bench_pub'
walship.endpoint = '$NGINX_URL'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
EOF

# ---------------------------------------------------------------------------
# Schema and data.  "orders" is loaded in key order in one statement, then
# vacuumed (hint bits and visibility map set, as on a table at rest), so
# every method reads the same clean table.
# ---------------------------------------------------------------------------
log "creating the tables; loading $ROWS rows into orders"
{
	sql_orders_table
	cat <<SQL
-- live changes: pgbench updates one row per transaction
CREATE TABLE live (
	id          integer PRIMARY KEY,
	balance     bigint NOT NULL DEFAULT 0,
	note        text,
	updated_at  timestamptz
);
INSERT INTO live (id, note) SELECT g, 'account ' || g FROM generate_series(1, $LIVE_ROWS) g;
SQL
	sql_orders_workload
} | psql_cmd
t0=$(date +%s.%N)
psql_cmd -c "SELECT setseed(0.42)" -c "CALL orders_insert(1, $ROWS)" >/dev/null
psql_cmd -c "VACUUM (FREEZE, ANALYZE) orders" -c "VACUUM ANALYZE live" -c "CHECKPOINT" >/dev/null
LOAD_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
read -r TABLE_MB INDEX_MB <<<"$(psql_cmd -F ' ' -c "SELECT round(pg_table_size('orders') / 1048576.0, 1), round(pg_indexes_size('orders') / 1048576.0, 1)")"
[ "$(psql_cmd -c "SELECT count(*) FROM orders")" = "$ROWS" ] || die "orders does not hold $ROWS rows"
log "loaded in $LOAD_SECS s: table $TABLE_MB MB, index $INDEX_MB MB"

log "CREATE EXTENSION walship; waiting for the worker to stream"
{
	cat <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE orders, live;
CREATE EXTENSION walship;

-- Queues a backfill of rel, commits, and waits (polling every 10 ms) until
-- walship.backfills shows it done.  seconds: from the call until done was
-- seen; pickup: until the worker marked it running (started_at).
CREATE PROCEDURE bench_backfill(rel regclass, chunk int, timeout_s float8,
	INOUT job bigint DEFAULT NULL, INOUT seconds float8 DEFAULT NULL,
	INOUT pickup float8 DEFAULT NULL, INOUT rows_sent bigint DEFAULT NULL,
	INOUT chunks bigint DEFAULT NULL, INOUT started float8 DEFAULT NULL,
	INOUT finished float8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	b record;
	s record;
BEGIN
	t0 := clock_timestamp();
	job := walship.backfill(rel, chunk);
	COMMIT;
	LOOP
		SELECT * INTO b FROM walship.backfills WHERE id = job;
		EXIT WHEN b.state = 'done';
		IF b.state NOT IN ('queued', 'running') THEN
			RAISE EXCEPTION 'backfill % of % ended in state %: %', job, rel, b.state, b.error;
		END IF;
		IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
			SELECT * INTO s FROM walship.status;
			RAISE EXCEPTION 'backfill % of % not done after % s', job, rel, timeout_s
				USING DETAIL = format('backfill: state %s, chunks_done %s, rows_sent %s; worker: state %s, inflight %s, retries %s, last_http_status %s, last_error %s',
									  b.state, b.chunks_done, b.rows_sent, s.state, s.inflight,
									  s.retries, s.last_http_status, s.last_error);
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	seconds := extract(epoch FROM clock_timestamp() - t0);
	pickup := extract(epoch FROM b.started_at - t0);
	rows_sent := b.rows_sent;
	chunks := b.chunks_done;
	started := extract(epoch FROM b.started_at);
	finished := extract(epoch FROM b.finished_at);
END;
$$;
SQL
	sql_worker_helpers
} | psql_cmd
wait_worker_streaming
psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
log "worker streaming (pid $WORKER_PID)"
LOAD_START=$(load_avg)

# now: the server's clock, seconds since the epoch
server_now() { psql_cmd -c "SELECT extract(epoch FROM clock_timestamp())"; }
# "bytes_shipped batches_shipped" of walship.status
shipped_counters() { psql_cmd -F ' ' -c "SELECT bytes_shipped, batches_shipped FROM walship.status"; }

# run_backfill CHUNK: backfills orders and sets BF_JOB BF_SECS BF_PICKUP
# BF_ROWS BF_CHUNKS BF_STARTED BF_FINISHED; dies with the reason on failure.
run_backfill() {
	local out
	if ! out=$(psql_cmd -F ' ' -c "CALL bench_backfill('orders', $1, $BACKFILL_TIMEOUT)" 2>"$TMP/backfill.err"); then
		cat "$TMP/backfill.err" >&2
		die "the backfill of orders (chunk $1) did not finish"
	fi
	read -r BF_JOB BF_SECS BF_PICKUP BF_ROWS BF_CHUNKS BF_STARTED BF_FINISHED <<<"$out"
	if [ "$BF_ROWS" -ne "$ROWS" ]; then
		log "WARNING: backfill $BF_JOB sent $BF_ROWS rows, the table has $ROWS"
		BF_WARNINGS+=("backfill $BF_JOB (chunks of $1, walship.format $(psql_cmd -c 'SHOW walship.format')) is done with rows_sent $BF_ROWS and $BF_CHUNKS chunks; the table has $ROWS rows")
	fi
}
BF_WARNINGS=()

# timed COMMAND: runs the command line COMMAND with bash -o pipefail, sets
# ELAPSED (wall seconds, "%.3f");
# returns its status.
timed() {
	local t0 rc=0
	t0=$(date +%s.%N)
	bash -o pipefail -c "$1" || rc=$?
	ELAPSED=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
	return "$rc"
}

# ---------------------------------------------------------------------------
# 1. Throughput: every method ROUNDS times, in the order of STEPS, reversed
# in even rounds (ABBA: a drift of the machine's load over the part weighs
# on every method alike); medians are reported.
# ---------------------------------------------------------------------------
# Per method KEY: M_LABEL, M_CHUNK, and one word per round in M_SECS (wall
# seconds), M_ROWS (rows that arrived), M_BYTES (bytes sent, - if not
# meaningful), M_PICKUP, M_BATCHES, M_CPU (walship worker CPU s), M_SINK
# (nginx worker CPU s), M_IDLE (% of the machine's CPU time left idle),
# M_ALL (CPU s of everything involved, see probe_end).
declare -A M_LABEL M_CHUNK M_SECS M_ROWS M_BYTES M_PICKUP M_BATCHES M_CPU M_SINK M_IDLE M_ALL
METHODS=()
TP_NOTES=()
COPY_BYTES=""
FLOOR_KEY=""

# "total idle" jiffies of all CPUs, from /proc/stat
cpu_stat() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat; }
NGINX_WORKER=$(pgrep -P "$nginx_pid" 2>/dev/null | head -n 1 || true)

# cluster_ticks DATADIR: CPU ticks used so far by the cluster in DATADIR,
# 0 if it is not running: its postmaster, the postmaster's live children,
# and its reaped children (cutime and cstime of the postmaster).
cluster_ticks() {
	local pm c total
	[ -r "$1/postmaster.pid" ] || { echo 0; return; }
	pm=$(head -n 1 "$1/postmaster.pid")
	total=$(sed 's/.*) //' "/proc/$pm/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }')
	for c in $(pgrep -P "$pm" 2>/dev/null); do
		total=$((total + $(cpu_ticks "$c")))
	done
	echo "${total:-0}"
}
# own_ticks: CPU ticks of the children this shell has waited for (psql,
# curl, pgbench, and their own children), from its cutime and cstime.
own_ticks() { sed 's/.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }
# ticks_to_s TICKS: seconds, "%.2f"
ticks_to_s() { awk -v d="$1" -v h="$CLK_TCK" 'BEGIN { if (d < 0) print "-"; else printf "%.2f", d / h }'; }

# probe_start, probe_end: set, for what ran in between, P_CPU (walship
# worker), P_SINK (nginx's worker) and P_ALL (everything the method
# involves: both clusters, nginx, and the clients this script ran), in CPU
# seconds, and P_IDLE (% of the machine's CPU time left idle).  The probes'
# own processes are left out of P_ALL.
probe_start() {
	P0_W=$(cpu_ticks "$WORKER_PID")
	P0_N=$(cpu_ticks "$NGINX_WORKER")
	P0_A=$(($(cluster_ticks "$PGDATA_DIR") + $(cluster_ticks "$SUB_DATA") + $(cpu_ticks "$nginx_pid") + P0_N))
	read -r P0_T P0_I <<<"$(cpu_stat)"
	P0_O=$(own_ticks)
}
probe_end() {
	local o w n a t i
	# the backends of the method's clients end after them: let the
	# postmaster reap them, so that their CPU is in its cutime
	sleep 0.2
	o=$(own_ticks)
	w=$(cpu_ticks "$WORKER_PID")
	n=$(cpu_ticks "$NGINX_WORKER")
	a=$(($(cluster_ticks "$PGDATA_DIR") + $(cluster_ticks "$SUB_DATA") + $(cpu_ticks "$nginx_pid") + n))
	read -r t i <<<"$(cpu_stat)"
	# a worker that restarted in between has a new PID: its CPU is unknown
	P_CPU=$(ticks_to_s $((w - P0_W)))
	P_SINK=$(ticks_to_s $((n - P0_N)))
	P_ALL=$(ticks_to_s $((a - P0_A + o - P0_O)))
	P_IDLE=$(awk -v a=$((i - P0_I)) -v b=$((t - P0_T)) 'BEGIN { printf "%.0f", (b > 0) ? 100 * a / b : 0 }')
}

# record KEY LABEL CHUNK ROWS SECS BYTES PICKUP BATCHES CPU SINK IDLE ALL:
# one round of a method ("-" for what does not apply).
record() {
	local key=$1
	[[ " ${METHODS[*]} " == *" $key "* ]] || METHODS+=("$key")
	M_LABEL[$key]=$2
	M_CHUNK[$key]=$3
	M_ROWS[$key]+="$4 "
	M_SECS[$key]+="$5 "
	M_BYTES[$key]+="$6 "
	M_PICKUP[$key]+="$7 "
	M_BATCHES[$key]+="$8 "
	M_CPU[$key]+="$9 "
	M_SINK[$key]+="${10} "
	M_IDLE[$key]+="${11} "
	M_ALL[$key]+="${12} "
}
# note MESSAGE: a line under the table, once.
note() {
	[[ " ${TP_NOTES[*]} " == *" $1 "* ]] || TP_NOTES+=("$1")
}

PSQL_COPY="PGOPTIONS='-c client_min_messages=warning' '$BINDIR/psql' -X -q -At -v ON_ERROR_STOP=1 -h '$TMP' -p $BENCH_PORT -U postgres -d postgres"

# The floor: COPY text through psql into /dev/null.
tp_copy() {
	probe_start
	if timed "$PSQL_COPY -c 'COPY (SELECT * FROM orders) TO STDOUT' >/dev/null" 2>"$TMP/copy.err"; then
		probe_end
		log "throughput: COPY into /dev/null: $ELAPSED s, all CPU $P_ALL s"
		record copy "COPY text into /dev/null (floor)" - "$ROWS" "$ELAPSED" "${COPY_BYTES:--}" - - - - "$P_IDLE" "$P_ALL"
		FLOOR_KEY=copy
	else
		note "COPY text into /dev/null: failed: $(tr '\n' ' ' <"$TMP/copy.err")"
	fi
}

# walship.backfill() of the whole table, format $1, chunks of $2 rows.
tp_walship() {
	local fmt=$1 chunk=$2 b0 n0 b1 n1 label
	set_walship "format=$fmt"
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	read -r b0 n0 <<<"$(shipped_counters)"
	probe_start
	run_backfill "$chunk"
	probe_end
	read -r b1 n1 <<<"$(shipped_counters)"
	label="walship.backfill(), $fmt"
	[ "$fmt" = binary ] || label+=" (flat)"
	record "walship-$fmt-$chunk" "$label" "$chunk" "$BF_ROWS" "$BF_SECS" $((b1 - b0)) "$BF_PICKUP" $((n1 - n0)) "$P_CPU" "$P_SINK" "$P_IDLE" "$P_ALL"
	log "throughput: walship $fmt, chunks of $chunk: $BF_ROWS rows in $BF_CHUNKS chunks," \
		"$(printf '%.2f' "$BF_SECS") s (picked up after $(printf '%.2f' "$BF_PICKUP") s), worker CPU $P_CPU s, all CPU $P_ALL s"
}

# COPY csv piped into curl, one streamed (chunked) POST to nginx.
tp_curl() {
	local code up
	probe_start
	if timed "$PSQL_COPY -c 'COPY (SELECT * FROM orders) TO STDOUT (FORMAT csv)' |
			curl -sS -X POST -T - -H 'Content-Type: text/csv' -H 'Expect:' -o /dev/null \
				-w '%{http_code} %{size_upload}\n' '$NGINX_URL/csv' >'$TMP/curl.out'" 2>"$TMP/curl.err"; then
		probe_end
		read -r code up <"$TMP/curl.out"
		if [ "$code" = 204 ]; then
			log "throughput: COPY csv | curl: $ELAPSED s, all CPU $P_ALL s, $up bytes uploaded"
			record curl "COPY csv piped into curl POST to nginx" - "$ROWS" "$ELAPSED" "${up%.*}" - 1 - "$P_SINK" "$P_IDLE" "$P_ALL"
		else
			note "COPY csv into curl: nginx answered '$code'"
		fi
	else
		note "COPY csv into curl: failed: $(tr '\n' ' ' <"$TMP/curl.err")"
	fi
}

# The built-in peer: logical replication's initial table sync into a second
# cluster, set up at its first round.  A failure is reported, not fatal;
# SUB_STATE: "" (not set up), "ready", or "failed".
sub_psql() {
	PGOPTIONS="-c client_min_messages=warning" \
		"$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP" -p "$SUB_PORT" -U postgres -d postgres "$@"
}
SUB_STATE=""
sub_setup() {
	"$BINDIR/initdb" -D "$SUB_DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
		>"$TMP/sub-initdb.log" 2>&1 || { SUB_ERROR="initdb failed: $(tail -n 3 "$TMP/sub-initdb.log" | tr '\n' ' ')"; return 1; }
	cat >>"$SUB_DATA/postgresql.conf" <<EOF

# --- $BENCH_NAME.sh: the subscriber, with the publisher's settings ---
listen_addresses = ''
port = $SUB_PORT
unix_socket_directories = '$TMP'
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 1h
fsync = off
full_page_writes = off
autovacuum = off
timezone = 'UTC'
# The launcher starts workers at most once per wal_retrieve_retry_interval
# (5 s by default): with the default, every round after the first would
# wait for it.
wal_retrieve_retry_interval = '100ms'
EOF
	"$BINDIR/pg_ctl" -D "$SUB_DATA" -l "$SUB_LOG" -w -t 60 start >/dev/null ||
		{ SUB_ERROR="the subscriber did not start: $(tail -n 3 "$SUB_LOG" | tr '\n' ' ')"; return 1; }
	sub_started=1
	{
		sql_orders_table
		cat <<'SQL'
-- Waits until the subscription's table is ready; returns the epoch at which
-- its copy was seen finished (state f, s or r) and at which it was ready.
CREATE FUNCTION sub_wait(timeout_s float8, OUT copied float8, OUT ready float8)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	st char;
BEGIN
	LOOP
		SELECT srsubstate INTO st FROM pg_subscription_rel WHERE srrelid = 'orders'::regclass;
		IF copied IS NULL AND st IN ('f', 's', 'r') THEN
			copied := extract(epoch FROM clock_timestamp());
		END IF;
		IF st = 'r' THEN
			ready := extract(epoch FROM clock_timestamp());
			RETURN;
		END IF;
		IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
			RAISE EXCEPTION 'the table is not ready after % s (state %)', timeout_s, coalesce(st, '?');
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
END;
$$;
SQL
	} | sub_psql >/dev/null 2>"$TMP/sub.err" || { SUB_ERROR="subscriber schema: $(tr '\n' ' ' <"$TMP/sub.err")"; return 1; }
	psql_cmd -c "CREATE PUBLICATION bench_sync FOR TABLE orders" >/dev/null 2>"$TMP/sub.err" ||
		{ SUB_ERROR="CREATE PUBLICATION failed: $(tr '\n' ' ' <"$TMP/sub.err")"; return 1; }
}
# One initial sync into the emptied table; sets SUB_SECS, SUB_COPY_SECS, SUB_ROWS.
sub_round() {
	local t0 out copied ready
	sub_psql -c "TRUNCATE orders" >/dev/null 2>"$TMP/sub.err" ||
		{ SUB_ERROR="TRUNCATE on the subscriber: $(tr '\n' ' ' <"$TMP/sub.err")"; return 1; }
	t0=$(server_now)
	sub_psql -c "CREATE SUBSCRIPTION bench_sync CONNECTION 'host=$TMP port=$BENCH_PORT user=postgres dbname=postgres' PUBLICATION bench_sync WITH (copy_data = true)" \
		>/dev/null 2>"$TMP/sub.err" || { SUB_ERROR="CREATE SUBSCRIPTION failed: $(tr '\n' ' ' <"$TMP/sub.err")"; return 1; }
	out=$(sub_psql -F ' ' -c "SELECT * FROM sub_wait($BACKFILL_TIMEOUT)" 2>"$TMP/sub.err") ||
		{ SUB_ERROR="$(tr '\n' ' ' <"$TMP/sub.err") (subscriber log: $(grep -E 'ERROR|FATAL' "$SUB_LOG" | tail -n 2 | tr '\n' ' '))"; return 1; }
	read -r copied ready <<<"$out"
	SUB_SECS=$(awk -v a="$t0" -v b="$ready" 'BEGIN { printf "%.3f", b - a }')
	SUB_COPY_SECS=$(awk -v a="$t0" -v b="$copied" 'BEGIN { printf "%.3f", b - a }')
	SUB_ROWS=$(sub_psql -c "SELECT count(*) FROM orders" 2>/dev/null || echo 0)
	sub_psql -c "DROP SUBSCRIPTION bench_sync" >/dev/null 2>"$TMP/sub.err" ||
		{ SUB_ERROR="DROP SUBSCRIPTION failed: $(tr '\n' ' ' <"$TMP/sub.err")"; return 1; }
}
# sub_stop: stops the subscriber; drops what is left on the publisher.
sub_stop() {
	if [ "$sub_started" -eq 1 ]; then
		sub_psql -c "DROP SUBSCRIPTION IF EXISTS bench_sync" >/dev/null 2>&1 || true
		"$BINDIR/pg_ctl" -D "$SUB_DATA" -m fast -w stop >/dev/null 2>&1 || true
		sub_started=0
	fi
	psql_cmd -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active AND (slot_name = 'bench_sync' OR slot_name LIKE 'pg\_%\_sync\_%')" \
		-c "DROP PUBLICATION IF EXISTS bench_sync" >/dev/null ||
		log "WARNING: could not drop the slots and publication of the subscription"
}
tp_sub() {
	[ "$SUB_STATE" != failed ] || return 0
	SUB_ERROR=""
	if [ -z "$SUB_STATE" ]; then
		if sub_setup; then SUB_STATE=ready; else SUB_STATE=failed; fi
	fi
	if [ "$SUB_STATE" = ready ]; then
		probe_start
		if sub_round; then
			probe_end
			record sub "logical replication initial sync" - "$SUB_ROWS" "$SUB_SECS" "${COPY_BYTES:+~$COPY_BYTES}" - - - - "$P_IDLE" "$P_ALL"
			log "throughput: subscription ready after $SUB_SECS s (copy finished at $SUB_COPY_SECS s), $SUB_ROWS rows, all CPU $P_ALL s"
			SUB_COPY_ALL+="$SUB_COPY_SECS "
			[ "$SUB_ROWS" = "$ROWS" ] || note "WARNING: the subscriber received $SUB_ROWS rows, the publisher has $ROWS"
			return 0
		fi
		SUB_STATE=failed
	fi
	note "logical replication initial sync: not measured: $SUB_ERROR"
	log "throughput: logical replication not measured: $SUB_ERROR"
	sub_stop
}
SUB_COPY_ALL=""

STEPS=()
skipped copy || STEPS+=(copy)
if ! skipped walship; then
	for fmt in $FORMATS; do
		for chunk in $CHUNKS; do STEPS+=("walship:$fmt:$chunk"); done
	done
fi
skipped curl || STEPS+=(curl)
skipped subscription || STEPS+=(sub)

if [ ${#STEPS[@]} -gt 0 ]; then
	# warm-up (every method then reads the table from memory), and the size of COPY text
	log "throughput: COPY (SELECT * FROM orders) TO STDOUT into wc -c (warm-up, size)"
	COPY_BYTES=$(bash -o pipefail -c "$PSQL_COPY -c 'COPY (SELECT * FROM orders) TO STDOUT' | wc -c") ||
		die "COPY (SELECT * FROM orders) TO STDOUT failed"
fi
for round in $(seq 1 "$ROUNDS"); do
	[ ${#STEPS[@]} -gt 0 ] || break
	order=("${STEPS[@]}")
	if [ $((round % 2)) -eq 0 ]; then
		order=()
		for ((i = ${#STEPS[@]} - 1; i >= 0; i--)); do order+=("${STEPS[i]}"); done
	fi
	log "throughput: round $round of $ROUNDS: ${order[*]}"
	for step in "${order[@]}"; do
		case $step in
			copy) tp_copy ;;
			curl) tp_curl ;;
			sub) tp_sub ;;
			walship:*)
				IFS=: read -r _ fmt chunk <<<"$step"
				tp_walship "$fmt" "$chunk"
				;;
		esac
	done
done
if [[ " ${STEPS[*]} " == *" sub "* ]]; then
	sub_stop
	# shellcheck disable=SC2086 # a list of numbers
	[ -z "$SUB_COPY_ALL" ] ||
		note "logical replication: the table sync's COPY was over (state f) after $(printf '%.2f' "$(median $SUB_COPY_ALL)") s (median); the subscriber writes the rows into its own orders table, primary key included"
fi
set_walship "format="
psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
LOAD_MID=$(load_avg)

# ---------------------------------------------------------------------------
# 2. Freshness of live changes, without and during a backfill.
# ---------------------------------------------------------------------------

# fresh_case NAME MAX_RATE: one freshness case; MAX_RATE "-" runs no
# backfill.  Appends "name|max_rate|lo|hi|rows|seconds|pickup" to FRESH_CASES,
# where lo..hi (epoch seconds) is the window of commits that count.
FRESH_CASES=()
fresh_case() {
	local name=$1 rate=$2 lo hi
	if [ "$rate" = - ]; then
		log "freshness: $name: pgbench -R $FRESH_RATE -T $FRESH_SECONDS -c $FRESH_CLIENTS"
		lo=$(server_now)
		pgbench_cmd -n -f "$TMP/live.sql" -R "$FRESH_RATE" -T "$FRESH_SECONDS" \
			-c "$FRESH_CLIENTS" -j "$FRESH_CLIENTS" >"$TMP/pgbench-$name.log" 2>&1 ||
			{ cat "$TMP/pgbench-$name.log" >&2; die "pgbench failed"; }
		hi=$(server_now)
		# the first second warms up the connections
		lo=$(awk -v a="$lo" 'BEGIN { printf "%.6f", a + 1 }')
		FRESH_CASES+=("$name|-|$lo|$hi|-|-|-")
	else
		set_walship "backfill_max_rate=$rate"
		psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
		log "freshness: $name: pgbench -R $FRESH_RATE -c $FRESH_CLIENTS in the background, then walship.backfill('orders', $FRESH_CHUNK)"
		# pgbench itself, not pgbench_cmd: $! must be pgbench's PID, to stop it
		"$BINDIR/pgbench" -h "$TMP" -p "$BENCH_PORT" -U postgres -n -f "$TMP/live.sql" \
			-R "$FRESH_RATE" -T $((BACKFILL_TIMEOUT + 60)) -c "$FRESH_CLIENTS" -j "$FRESH_CLIENTS" \
			postgres >"$TMP/pgbench-$name.log" 2>&1 &
		live_pid=$!
		sleep 2
		kill -0 "$live_pid" 2>/dev/null || { cat "$TMP/pgbench-$name.log" >&2; die "pgbench exited"; }
		run_backfill "$FRESH_CHUNK"
		sleep 1
		kill -0 "$live_pid" 2>/dev/null || { cat "$TMP/pgbench-$name.log" >&2; die "pgbench exited during the backfill"; }
		stop_pid "$live_pid"
		live_pid=""
		log "freshness: $name: backfill of $BF_ROWS rows in $BF_SECS s"
		FRESH_CASES+=("$name|$rate|$BF_STARTED|$BF_FINISHED|$BF_ROWS|$BF_SECS|$BF_PICKUP")
		set_walship "backfill_max_rate="
	fi
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
}

FRESH_RESULT=""
if ! skipped freshness; then
	mkdir -p "$TMP/sink"
	log "starting the recording sink ($SINK_SCRIPT)"
	python3 "$SINK_SCRIPT" --dir "$TMP/sink" --port-file "$TMP/sink/port" --port 0 \
		--watch-pid $$ >>"$TMP/sink/sink.log" 2>&1 &
	sink_pid=$!
	for _ in $(seq 1 150); do
		[ -s "$TMP/sink/port" ] && break
		kill -0 "$sink_pid" 2>/dev/null || { cat "$TMP/sink/sink.log" >&2; die "the sink exited"; }
		sleep 0.1
	done
	SINK_PORT=$(head -n 1 "$TMP/sink/port" 2>/dev/null || true)
	[[ "$SINK_PORT" =~ ^[0-9]+$ ]] || die "the sink did not start"
	start_router /ingest/public/orders

	set_walship "endpoint=http://127.0.0.1:$ROUTER_PORT/ingest/{schema}/{table}" "format=ndjson"
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	UPD0=$(psql_cmd -c "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'live'")
	# settle: the first requests open the connections
	psql_cmd -c "UPDATE live SET note = 'warmup' WHERE id = 1" >/dev/null
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	FRESH_SETTINGS=$(walship_settings format ndjson_shape batch_max_changes batch_max_bytes batch_max_delay max_inflight)

	cat >"$TMP/live.sql" <<EOF
\set id random(1, $LIVE_ROWS)
UPDATE live SET balance = balance + 1, updated_at = clock_timestamp() WHERE id = :id;
EOF
	fresh_case "no backfill" -
	fresh_case "backfill" 0
	fresh_case "backfill, rate-limited" "$FRESH_MAX_RATE"

	UPD1=$(psql_cmd -c "SELECT pg_stat_force_next_flush(); SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'live'" | tail -n 1)
	printf '%s\n' "${FRESH_CASES[@]}" >"$TMP/fresh-cases"
	FRESH_RESULT=$(python3 - "$TMP/sink" "$TMP/fresh-cases" <<'PY'
import json, os, sys
from datetime import datetime

sink, cases_file = sys.argv[1], sys.argv[2]
points = []             # (commit epoch, latency seconds)
updates = 0
requests = 0
for raw in open(os.path.join(sink, 'requests.jsonl')):
    r = json.loads(raw)
    if r.get('status') is None or not (200 <= r['status'] < 300) or not r.get('body_file'):
        continue
    if not r['path'].startswith('/ingest/public/live'):
        continue
    requests += 1
    with open(os.path.join(sink, r['body_file']), 'rb') as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            if e.get('_op') != 'u':
                continue
            updates += 1
            ts = datetime.fromisoformat(e['_commit_ts']).timestamp()
            points.append((ts, r['t_answered'] - ts))

def pct(v, p):
    if not v:
        return float('nan')
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))  # nearest rank
    return v[k]

print('total', updates, requests)
for raw in open(cases_file):
    name, rate, lo, hi, rows, secs, pickup = raw.rstrip('\n').split('|')
    lo, hi = float(lo), float(hi)
    lat = sorted(l for t, l in points if lo <= t <= hi)
    print('|'.join([name, rate, rows, secs, pickup, '%.3f' % (hi - lo), str(len(lat))] +
                   ['%.1f' % (1000 * pct(lat, p)) for p in (50, 95, 99, 100)]))
PY
)
	set_walship "endpoint=$NGINX_URL" "format="
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	stop_pid "$router_pid"
	router_pid=""
	stop_pid "$sink_pid"
	sink_pid=""
fi

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
print_header "walship backfill benchmark" ", fsync = off, shared_buffers = 1GB"
echo "  build:     walship.so compiled with $WALSHIP_OPT$([ "$WALSHIP_OPT" != -O0 ] || echo " (WARNING: not an optimized build; the timings are not representative)")"
echo "  table:     orders, $ROWS rows of 11 columns (bigint key, integer, text, numeric, timestamptz, boolean, uuid, jsonb, text, float8, date)," \
	"in key order, vacuumed: $TABLE_MB MB heap, $INDEX_MB MB primary key (loaded in $LOAD_SECS s)"
echo "  load avg:  $LOAD_START at the start, $LOAD_MID after part 1, $(load_avg) at the end (1, 5, 15 min; other work on the machine shows here)"
echo "  sinks:     nginx $(nginx_version) (return 204, 1 worker process) on 127.0.0.1; part 2: a second nginx routing orders to 204, the rest to t/http_sink.py"

# words KEY ARRAY: the words of M_<ARRAY>[KEY]
words() { local -n arr="M_$2"; echo "${arr[$1]}"; }
# med KEY ARRAY: the median of those words, or - if they are not numbers
med() {
	local w
	w=$(words "$1" "$2")
	# shellcheck disable=SC2086 # a list of numbers
	if [[ "$w" =~ ^(~?[0-9.]+ )+$ ]]; then median ${w//\~/}; else echo -; fi
}

if [ ${#METHODS[@]} -gt 0 ] || [ ${#TP_NOTES[@]} -gt 0 ]; then
	echo
	echo "1. throughput: the whole of orders ($ROWS rows) by each method; $ROUNDS rounds, the methods in turn (reversed in even rounds); medians"
	echo
	floor_secs=""
	[ -z "$FLOOR_KEY" ] || floor_secs=$(med "$FLOOR_KEY" SECS)
	table_header l41 "method" r6 "chunk" r9 "elapsed s" r9 "rows/s" r11 "best rows/s" r8 "MB" r7 "MB/s" r8 "vs floor" l32 "elapsed s, each round"
	for key in "${METHODS[@]}"; do
		rows=$(words "$key" ROWS | awk '{ print $NF }')
		secs=$(med "$key" SECS)
		bytes=$(words "$key" BYTES | awk '{ print $NF }')
		each=$(words "$key" SECS | awk '{ for (i = 1; i <= NF; i++) printf "%s%.2f", (i > 1 ? " " : ""), $i }')
		best=$(words "$key" SECS | tr ' ' '\n' | grep . | sort -g | head -n 1)
		awk -v m="${M_LABEL[$key]}" -v c="${M_CHUNK[$key]}" -v n="$rows" -v s="$secs" -v t="$best" -v b="$bytes" -v f="$floor_secs" -v e="$each" 'BEGIN {
			approx = (substr(b, 1, 1) == "~"); if (approx) b = substr(b, 2)
			mb = (b == "-") ? "-" : sprintf("%s%.1f", approx ? "~" : "", b / 1048576)
			mbs = (b == "-") ? "-" : sprintf("%s%.1f", approx ? "~" : "", b / 1048576 / s)
			vs = (f == "") ? "-" : sprintf("%.0f%%", 100 * (n / s) / (n / f))
			printf "| %-41s | %6s | %9.2f | %9.0f | %11.0f | %8s | %7s | %8s | %-32s |\n", m, c, s, n / s, n / t, mb, mbs, vs, e
		}'
	done
	echo
	echo "  elapsed: walship: from walship.backfill() until walship.backfills.state = 'done', i.e. every chunk acknowledged (polled every 10 ms on the server);"
	echo "  COPY: the psql command (and curl) from start to exit; logical replication: from CREATE SUBSCRIPTION until pg_subscription_rel.srsubstate = 'r' (polled every 10 ms)."
	echo "  rows/s: over the median elapsed; best: over the shortest round. MB: request bodies as sent (walship: walship.status.bytes_shipped; curl: its size_upload)"
	echo "  or the COPY text output; ~: COPY text, which is what the table sync sends over its walsender connection. vs floor: rows/s over those of COPY text into /dev/null."
	for n in "${TP_NOTES[@]}"; do
		echo "  $n"
	done
	echo
	table_header l41 "method" r6 "chunk" r8 "pickup s" r10 "rows/s run" r7 "batches" r9 "bytes/row" r12 "worker CPU s" r11 "nginx CPU s" r10 "all CPU s" r13 "all CPU us/row" r6 "idle %"
	for key in "${METHODS[@]}"; do
		rows=$(words "$key" ROWS | awk '{ print $NF }')
		bytes=$(words "$key" BYTES | awk '{ print $NF }')
		awk -v m="${M_LABEL[$key]}" -v c="${M_CHUNK[$key]}" -v n="$rows" -v s="$(med "$key" SECS)" \
			-v p="$(med "$key" PICKUP)" -v nb="$(med "$key" BATCHES)" -v b="$bytes" -v u="$(med "$key" CPU)" \
			-v x="$(med "$key" SINK)" -v a="$(med "$key" ALL)" -v i="$(med "$key" IDLE)" 'BEGIN {
			if (substr(b, 1, 1) == "~") b = substr(b, 2)
			printf "| %-41s | %6s | %8s | %10s | %7s | %9s | %12s | %11s | %10s | %13s | %6s |\n", m, c,
				(p == "-") ? "-" : sprintf("%.2f", p),
				(p == "-") ? "-" : sprintf("%.0f", n / (s - p)),
				(nb == "-") ? "-" : sprintf("%d", nb),
				(b == "-") ? "-" : sprintf("%.1f", b / n),
				(u == "-") ? "-" : sprintf("%.2f", u),
				(x == "-") ? "-" : sprintf("%.2f", x),
				(a == "-") ? "-" : sprintf("%.2f", a),
				(a == "-") ? "-" : sprintf("%.2f", 1e6 * a / n),
				(i == "-") ? "-" : sprintf("%.0f", i)
		}'
	done
	echo
	echo "  medians over the rounds. pickup: from walship.backfill() until the worker marked the backfill running (walship.backfill() wakes"
	echo "  the worker); rows/s run: rows over (elapsed - pickup). worker CPU: user + system time of the walship worker,"
	echo "  which reads the table itself (SPI), encodes the rows and sends them; nginx CPU: its worker process. all CPU: every process involved:"
	echo "  the cluster(s) (postmaster, backends, walship worker, walsenders, subscriber workers), nginx, psql and curl; it moves much less than"
	echo "  the elapsed time when other work competes for the CPUs. idle %: share of the machine's CPU time ($(nproc) CPUs) left idle during the method."
fi

if [ -n "$FRESH_RESULT" ]; then
	total_line=$(head -n 1 <<<"$FRESH_RESULT")
	read -r _ live_lines live_requests <<<"$total_line"
	echo
	echo "2. freshness: pgbench -R $FRESH_RATE -c $FRESH_CLIENTS, one UPDATE of a row of live ($LIVE_ROWS rows) per transaction;" \
		"walship.backfill('orders', $FRESH_CHUNK) meanwhile, or not;" \
		"latency = request answered (t/http_sink.py clock) - _commit_ts of the live change"
	echo "  settings: ${FRESH_SETTINGS% }; endpoint http://127.0.0.1:$ROUTER_PORT/ingest/{schema}/{table}"
	echo
	table_header l24 "case" r17 "backfill_max_rate" r10 "backfill s" r15 "backfill rows/s" r8 "window s" r8 "changes" r9 "changes/s" r8 "p50 ms" r8 "p95 ms" r8 "p99 ms" r8 "max ms"
	tail -n +2 <<<"$FRESH_RESULT" | while IFS='|' read -r name rate rows secs _ window n p50 p95 p99 pmax; do
		awk -v m="$name" -v r="$rate" -v n="$rows" -v s="$secs" -v w="$window" -v c="$n" \
			-v a="$p50" -v b="$p95" -v d="$p99" -v x="$pmax" 'BEGIN {
			bs = (s == "-") ? "-" : sprintf("%.2f", s)
			br = (s == "-") ? "-" : sprintf("%.0f", n / s)
			rr = (r == "-") ? "-" : (r == "0" ? "0 (none)" : r)
			printf "| %-24s | %17s | %10s | %15s | %8.1f | %8d | %9.1f | %8s | %8s | %8s | %8s |\n",
				m, rr, bs, br, w, c, c / w, a, b, d, x
		}'
	done
	echo
	echo "  window: the commits that count: the run after its first second (no backfill), or from the backfill's started_at to its finished_at;"
	echo "  changes: live UPDATEs committed in the window and found in acknowledged bodies; backfill s and rows/s: from walship.backfill() until done."
	echo "  every live change arrived: $live_lines UPDATE lines for live in $live_requests acknowledged requests;" \
		"pg_stat_user_tables counted $((UPD1 - UPD0)) updates of live meanwhile$([ "$live_lines" -eq $((UPD1 - UPD0)) ] && echo " (equal)" || echo " (NOT EQUAL)")"
fi

echo
print_worker_totals
for w in "${BF_WARNINGS[@]}"; do
	echo "WARNING: $w"
done

warn_if_rebuilt "the timings"
