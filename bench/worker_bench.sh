#!/usr/bin/env bash
#
# worker_bench.sh - end-to-end benchmark of the walship shipping worker
#
# Starts a throwaway PostgreSQL cluster in a temporary directory with walship
# in shared_preload_libraries, a null HTTP sink (nginx answering 204 to every
# POST) and, for the latency part, the test suite's recording sink
# (t/http_sink.py), and measures:
#
#   1. Throughput.  With the worker paused (walship.pause()), a workload of
#      CHANGES row changes on an 11-column "orders" table (the same table and
#      workload as bench/plugin_bench.sh) is committed; then the worker is
#      resumed and timed until every change is shipped and acknowledged
#      (changes_shipped of walship.status grows by the row changes of the
#      workload, and confirmed_lsn passes the end of its WAL).  The same WAL
#      range is decoded by the walship plugin alone, through
#      pg_logical_slot_peek_binary_changes() on a second slot created before
#      the workload (median of RUNS decodes).  Delivered and decoded changes/s
#      and their ratio are printed for each format/compression case and each
#      number of encoder workers (ENCODERS, walship.encoder_workers, set by
#      reload), with the worker's peak memory (VmHWM of /proc/PID/status,
#      reset before each case through /proc/PID/clear_refs, and the largest
#      sampled RssAnon) and the encoder workers' summed VmHWM.
#   2. Latency.  pgbench runs a one-row INSERT per transaction at LAT_RATE
#      tx/s for LAT_SECONDS while the worker ships to t/http_sink.py at the
#      default walship settings (NDJSON envelope, no compression, 50 ms batch
#      delay, 4 in flight), once per number of encoder workers in
#      LAT_ENCODERS.  For every line of every acknowledged body, the
#      latency is the request's t_answered (the sink's clock just before it
#      sends 204) minus the line's source.commit_ts.  p50/p90/p99/max.
#   3. Cost to the primary.  pgbench's built-in TPC-B-like script (scale
#      PGBENCH_SCALE, PGBENCH_CLIENTS clients, PGBENCH_SECONDS seconds; the
#      pgbench tables are in the published publication) with
#      walship.enabled = off and with the worker shipping to nginx at the
#      default settings, PGBENCH_ROUNDS pairs of runs in the order off/on,
#      on/off, off/on, ... (ABBA, to cancel drift), for each number of
#      encoder workers in COST_ENCODERS.  The cost is the median over the
#      pairs of each pair's drop, (off - on) / off, reported with its spread
#      (lowest and highest pair).  Before each run the worker has caught up,
#      so no backlog of an earlier run is shipped during it.
#
# Usage (from the repository root, as root or as any user):
#
#     bash bench/worker_bench.sh
#
# As root, the script re-runs itself as the "postgres" user (initdb refuses
# to run as root); nginx, the sink and pgbench then run as that user too.
# It installs nothing; it needs PostgreSQL 15 with pgbench, an installed
# walship, nginx and python3:
#
#     apt-get install postgresql-15 postgresql-client-15 nginx-light python3
#     make && make install
#
# Environment (all optional):
#     CHANGES=500000      row changes in each throughput workload
#     TXN_SIZE=1000       row changes per transaction of that workload
#     PREFILL=200000      rows of "orders" loaded before the worker's slot exists
#     RUNS=3              plugin-only decodes per backlog; the median is used
#     SHIP_ROUNDS=3       throughput: backlogs shipped (and decoded) per case;
#                         the medians of ship and decode times are reported,
#                         with the lowest and highest ratio of one round
#     CASES="binary/none ndjson/none ndjson/gzip"
#                         throughput cases, walship.format/walship.compression
#     ENCODERS="0 1 2"    walship.encoder_workers values of the throughput
#                         cases (every case runs with each)
#     LAT_ENCODERS=$ENCODERS  encoder_workers values of the latency part
#     COST_ENCODERS=$ENCODERS encoder_workers values of the cost part
#     LAT_RATE=1000       latency: transactions per second (pgbench -R)
#     LAT_SECONDS=30      latency: duration
#     LAT_CLIENTS=2       latency: pgbench clients
#     PGBENCH_SCALE=10    cost: pgbench scale
#     PGBENCH_CLIENTS=4   cost: pgbench clients (-c; -j is min(clients, CPUs))
#     PGBENCH_SECONDS=30  cost: duration of each run
#     PGBENCH_ROUNDS=5    cost: off/on pairs per encoder_workers value
#     SHIP_TIMEOUT=300    seconds a throughput case may take to ship
#     STALL_SECONDS=15    a throughput case fails when changes_shipped does
#                         not move for this long
#     BACKLOG_SETTINGS="" walship settings applied only while a backlog is
#                         shipped: the throughput cases, and the catch-up
#                         after each pgbench run with the worker off; as
#                         NAME=VALUE words, e.g. "batch_max_bytes=32MB"
#                         (default: none, walship's defaults throughout)
#     SKIP="..."          any of: throughput latency cost (parts not run)
#     BENCH_PORT=5498     port of the throwaway cluster (unix socket only)
#     HTTP_PORT=18498     port of nginx on 127.0.0.1
#     BENCH_USER=postgres user everything runs as when started as root
#     PG_CONFIG=pg_config selects the PostgreSQL installation
#     NGINX=nginx         the nginx binary
#     KEEP_TMP=1          keep the temporary directory (data, logs, bodies)
#
set -euo pipefail

CHANGES=${CHANGES:-500000}
TXN_SIZE=${TXN_SIZE:-1000}
PREFILL=${PREFILL:-200000}
RUNS=${RUNS:-3}
SHIP_ROUNDS=${SHIP_ROUNDS:-3}
CASES=${CASES:-binary/none ndjson/none ndjson/gzip}
ENCODERS=${ENCODERS:-0 1 2}
LAT_ENCODERS=${LAT_ENCODERS:-$ENCODERS}
COST_ENCODERS=${COST_ENCODERS:-$ENCODERS}
LAT_RATE=${LAT_RATE:-1000}
LAT_SECONDS=${LAT_SECONDS:-30}
LAT_CLIENTS=${LAT_CLIENTS:-2}
PGBENCH_SCALE=${PGBENCH_SCALE:-10}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-4}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-30}
PGBENCH_ROUNDS=${PGBENCH_ROUNDS:-5}
SHIP_TIMEOUT=${SHIP_TIMEOUT:-300}
STALL_SECONDS=${STALL_SECONDS:-15}
BACKLOG_SETTINGS=${BACKLOG_SETTINGS:-}
SKIP=${SKIP:-}
BENCH_PORT=${BENCH_PORT:-5498}
HTTP_PORT=${HTTP_PORT:-18498}
BENCH_USER=${BENCH_USER:-postgres}
PG_CONFIG=${PG_CONFIG:-pg_config}
NGINX=${NGINX:-nginx}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_NAME=worker_bench
BENCH_LOG_CLOCK=1
# shellcheck source=bench/lib.sh
declare -F drop_root >/dev/null || . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

# The recording sink of the test suite, next to this script's directory.
SINK_SCRIPT=${WORKER_BENCH_SINK:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../t/http_sink.py}
SINK_SCRIPT=$(readlink -f "$SINK_SCRIPT" 2>/dev/null || echo "$SINK_SCRIPT")

# As root, re-run as BENCH_USER: initdb refuses to run as root.
drop_root WORKER_BENCH_SINK="$SINK_SCRIPT" -- "$@"

# ---------------------------------------------------------------------------
# Check the installation.  Nothing is installed from here.
# ---------------------------------------------------------------------------
require_postgres "install postgresql-15 and postgresql-client-15" initdb pg_ctl psql pgbench
require_walship
find_nginx
command -v python3 >/dev/null 2>&1 || die "python3 not found; apt-get install python3"
if ! skipped latency; then
	[ -r "$SINK_SCRIPT" ] ||
		die "cannot read the test sink $SINK_SCRIPT as user $(id -un); run from a checkout that user can read, or SKIP=latency"
fi

WALSHIP_BUILD=$(walship_build)
require_positive_ints CHANGES TXN_SIZE PREFILL RUNS SHIP_ROUNDS LAT_RATE LAT_SECONDS LAT_CLIENTS \
	PGBENCH_SCALE PGBENCH_CLIENTS PGBENCH_SECONDS PGBENCH_ROUNDS SHIP_TIMEOUT STALL_SECONDS BENCH_PORT HTTP_PORT
for c in $CASES; do
	[[ "$c" =~ ^(binary|ndjson)/(none|gzip|zstd)$ ]] ||
		die "CASES entries are FORMAT/COMPRESSION, e.g. binary/none or ndjson/gzip (got '$c')"
done

for n in $ENCODERS $LAT_ENCODERS $COST_ENCODERS; do
	[[ "$n" =~ ^([0-9]|1[0-6])$ ]] ||
		die "ENCODERS, LAT_ENCODERS and COST_ENCODERS hold walship.encoder_workers values, 0 to 16 (got '$n')"
done

for kv in $BACKLOG_SETTINGS; do
	[[ "$kv" =~ ^[a-z_]+=[A-Za-z0-9_.]+$ ]] ||
		die "BACKLOG_SETTINGS entries are NAME=VALUE without the walship. prefix, e.g. batch_max_bytes=32MB (got '$kv')"
done

port_open "$HTTP_PORT" && die "port $HTTP_PORT on 127.0.0.1 is in use; set HTTP_PORT"

# ---------------------------------------------------------------------------
# Throwaway cluster, nginx and sink: everything in a temporary directory,
# stopped and removed on exit.
# ---------------------------------------------------------------------------
nginx_pid=""
sink_pid=""
sampler_pid=""
make_workdir
stop_on_exit sampler_pid sink_pid nginx_pid

start_nginx
NGINX_URL="http://127.0.0.1:$HTTP_PORT/ingest"

start_cluster 'pgoutput, test_decoding, walship' <<EOF
# The peek functions collect their result in a tuplestore that spills to
# disk beyond work_mem; keep it in memory so the plugin is what is timed.
work_mem = 1GB

shared_preload_libraries = 'walship'
walship.database = 'postgres'
# only the changes of the bench's workload are measured
walship.initial_backfill = off
walship.publication = 'bench_pub'
walship.endpoint = '$NGINX_URL'
# room for the encoder workers
max_worker_processes = 24
EOF

# ---------------------------------------------------------------------------
# Schema, workloads, helpers.  Tables, data and publication exist before the
# extension, so the worker's slot starts after all of it.
# ---------------------------------------------------------------------------
log "creating the tables, prefilling $PREFILL orders, pgbench -i -s $PGBENCH_SCALE"
{
	sql_orders_table
	cat <<'SQL'
-- latency probes: one small row per transaction
CREATE TABLE events (
	id          bigserial PRIMARY KEY,
	kind        text NOT NULL,
	amount      numeric(10,2),
	created_at  timestamptz NOT NULL DEFAULT now()
);
SQL
	sql_orders_workload
	sql_bench_decode
} | psql_cmd
psql_cmd -c "SELECT setseed(0.42)" -c "CALL orders_insert(1, $PREFILL)" >/dev/null
pgbench_cmd -i -q -s "$PGBENCH_SCALE" >"$TMP/pgbench-init.log" 2>&1 ||
	{ cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_cmd <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE orders, events,
	pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
VACUUM ANALYZE;
CHECKPOINT;
SQL

log "CREATE EXTENSION walship; waiting for the worker to stream"
{
	echo "CREATE EXTENSION walship;"
	sql_worker_helpers
} | psql_cmd
wait_worker_streaming
psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
log "worker streaming (pid $WORKER_PID)"
DEFAULTS=$(walship_settings format compression compression_level batch_max_changes batch_max_bytes batch_max_delay max_inflight encoder_workers)
LOAD_START=$(load_avg)

# "changes_shipped bytes_shipped batches_shipped" of walship.status
shipped_counters() {
	psql_cmd -F ' ' -c "SELECT changes_shipped, bytes_shipped, batches_shipped FROM walship.status"
}

# --- worker memory ----------------------------------------------------------
# Largest RssAnon seen, sampled every 50 ms into $1 until killed.
rss_sampler() {
	local pid=$1 out=$2 peak=0 key value
	trap 'echo "$peak" >"$out"; exit 0' TERM
	while :; do
		while read -r key value _; do
			if [ "$key" = "RssAnon:" ] && [ "$value" -gt "$peak" ]; then
				peak=$value
			fi
		done <"/proc/$pid/status" || break
		sleep 0.05
	done
	echo "$peak" >"$out"
}
proc_kb() {
	awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------------------
# 1. Throughput: ship a backlog to nginx, compare with plugin-only decoding.
# ---------------------------------------------------------------------------
TP_RESULTS=()
HWM_RESET=yes
if ! skipped throughput; then
	for enc in $ENCODERS; do
	use_encoders "$enc"
	for tcase in $CASES; do
		fmt=${tcase%/*}
		comp=${tcase#*/}
		ship_list=() dec_list=() ratio_list=() wcpu_list=() ecpu_list=() scpu_list=() steal_list=()
		for round in $(seq 1 "$SHIP_ROUNDS"); do
			log "throughput $fmt/$comp, $enc encoders, round $round: pausing the worker"
			# shellcheck disable=SC2086 # BACKLOG_SETTINGS is a list of words
			set_walship "format=$fmt" "compression=$comp" $BACKLOG_SETTINGS
			psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
			psql_cmd -c "SELECT walship.pause()" >/dev/null
			psql_cmd -c "SELECT bench_wait('state = ''paused'' AND inflight = 0', 60)" >/dev/null
			psql_cmd -c "SELECT pg_create_logical_replication_slot('bench_peek', 'walship')" >/dev/null

			log "throughput $fmt/$comp: workload of $CHANGES row changes in transactions of $TXN_SIZE"
			run_orders_workload "$CHANGES, $TXN_SIZE"
			ROW_CHANGES=$WL_CHANGES
			END_LSN=$WL_END_LSN
			WAL_BYTES=$WL_WAL_BYTES
			log "throughput $fmt/$comp: workload done in $WL_SECONDS s:" \
				"$ROW_CHANGES row changes, $WAL_BYTES bytes of WAL"

			read -r c0 b0 n0 <<<"$(shipped_counters)"
			# peak memory of this case only: clear_refs 5 resets VmHWM
			echo 5 >"/proc/$WORKER_PID/clear_refs" 2>/dev/null || HWM_RESET=no
			for epid in $ENCODER_PIDS; do
				echo 5 >"/proc/$epid/clear_refs" 2>/dev/null || HWM_RESET=no
			done
			rss_sampler "$WORKER_PID" "$TMP/rssanon" &
			sampler_pid=$!

			nginx_workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ')
			# shellcheck disable=SC2086 # lists of pids
			read -r wcpu0 ecpu0 scpu0 <<<"$(cpu_ns "$WORKER_PID") $(cpu_ns $ENCODER_PIDS) $(cpu_ns $nginx_workers)"
			steal0=$(steal_ticks)
			log "throughput $fmt/$comp: resuming the worker"
			ship_backlog $((c0 + ROW_CHANGES)) "$END_LSN" \
				"the workload of case $fmt/$comp${BACKLOG_SETTINGS:+ (BACKLOG_SETTINGS: $BACKLOG_SETTINGS)}"
			ship_secs=$SHIP_SECS
			ack_secs=$ACK_SECS
			# shellcheck disable=SC2086 # lists of pids
			read -r wcpu1 ecpu1 scpu1 <<<"$(cpu_ns "$WORKER_PID") $(cpu_ns $ENCODER_PIDS) $(cpu_ns $nginx_workers)"
			steal_list+=("$(awk -v a="$steal0" -v b="$(steal_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')")
			wcpu_list+=("$(awk -v a="$wcpu0" -v b="$wcpu1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
			ecpu_list+=("$(awk -v a="$ecpu0" -v b="$ecpu1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
			scpu_list+=("$(awk -v a="$scpu0" -v b="$scpu1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
			VMHWM=$(proc_kb "$WORKER_PID" VmHWM)
			ENC_HWM=0
			for epid in $ENCODER_PIDS; do
				ENC_HWM=$((ENC_HWM + $(proc_kb "$epid" VmHWM)))
			done
			stop_pid "$sampler_pid"
			sampler_pid=""
			RSSANON=$(cat "$TMP/rssanon" 2>/dev/null || echo 0)
			read -r c1 b1 n1 <<<"$(shipped_counters)"
			d_changes=$((c1 - c0))
			[ "$d_changes" -eq "$ROW_CHANGES" ] ||
				log "WARNING: changes_shipped grew by $d_changes, the workload made $ROW_CHANGES row changes"
			log "throughput $fmt/$comp: shipped in $ship_secs s (last acknowledgement at $ack_secs s)"

			# plugin-only decode of the same WAL, RUNS times
			query="SELECT count(*), coalesce(sum(octet_length(data)), 0) FROM pg_logical_slot_peek_binary_changes('bench_peek', '$END_LSN', NULL, 'publication_names', 'bench_pub')"
			times=()
			for run in $(seq 1 "$RUNS"); do
				out=$(psql_cmd -F ' ' -c "SELECT * FROM bench_decode(\$q\$$query\$q\$)") ||
					die "plugin-only decoding failed"
				read -r r b s <<<"$out"
				[ "$r" -gt 0 ] || die "plugin-only decoding returned nothing"
				times+=("$s")
				log "throughput $fmt/$comp: plugin-only decode run $run: $r rows, $b bytes, $s s"
			done
			dec_secs=$(median "${times[@]}")
			psql_cmd -c "SELECT pg_drop_replication_slot('bench_peek')" >/dev/null

			ship_list+=("$ship_secs")
			dec_list+=("$dec_secs")
			ratio_list+=("$(awk -v d="$dec_secs" -v s="$ship_secs" 'BEGIN { printf "%.1f", 100 * d / s }')")
		done
		ship_secs=$(median "${ship_list[@]}")
		dec_secs=$(median "${dec_list[@]}")
		ratio_lo=$(printf '%s\n' "${ratio_list[@]}" | sort -g | head -n 1)
		ratio_hi=$(printf '%s\n' "${ratio_list[@]}" | sort -g | tail -n 1)
		log "throughput $fmt/$comp, $enc encoders: ratios per round ${ratio_list[*]}"
		TP_RESULTS+=("$fmt|$comp|$ROW_CHANGES|$WAL_BYTES|$b|$dec_secs|$ship_secs|$ack_secs|$((n1 - n0))|$((b1 - b0))|$VMHWM|$RSSANON|$enc|$ENC_HWM|$ratio_lo|$ratio_hi|$(median "${wcpu_list[@]}")|$(median "${ecpu_list[@]}")|$(median "${scpu_list[@]}")|$(median "${steal_list[@]}")")
	done
	done
	psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
	for kv in $BACKLOG_SETTINGS; do
		set_walship "${kv%%=*}="
	done
fi

# ---------------------------------------------------------------------------
# 2. Latency at a steady rate, default settings, to the recording sink.
# ---------------------------------------------------------------------------
LAT_RESULTS=()
if ! skipped latency; then
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

	# the default settings of walship, only the endpoint changes
	set_walship "endpoint=http://127.0.0.1:$SINK_PORT/latency" "format=" "compression="
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	for enc in $LAT_ENCODERS; do
	use_encoders "$enc"
	# settle: the first request opens the connection
	psql_cmd -c "INSERT INTO events (kind, amount) VALUES ('warmup', 0)" >/dev/null
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	EV0=$(psql_cmd -c "SELECT coalesce(max(id), 0) FROM events")

	cat >"$TMP/latency.sql" <<'EOF'
INSERT INTO events (kind, amount) VALUES ('probe', random() * 100);
EOF
	log "latency, $enc encoders: pgbench -R $LAT_RATE -T $LAT_SECONDS -c $LAT_CLIENTS, one INSERT per transaction"
	steal0=$(steal_ticks)
	pgbench_cmd -n -f "$TMP/latency.sql" -R "$LAT_RATE" -T "$LAT_SECONDS" \
		-c "$LAT_CLIENTS" -j "$LAT_CLIENTS" >"$TMP/pgbench-latency.log" 2>&1 ||
		{ cat "$TMP/pgbench-latency.log" >&2; die "pgbench (latency) failed"; }
	LAT_TPS=$(pgbench_tps "$TMP/pgbench-latency.log")
	LAT_STEAL=$(awk -v a="$steal0" -v b="$(steal_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')
	psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
	LAT_ROWS=$(psql_cmd -c "SELECT count(*) FROM events WHERE id > $EV0")

	LAT_RESULT=$(python3 - "$TMP/sink" "$EV0" <<'PY'
import json, os, sys
from datetime import datetime

sink, ev0 = sys.argv[1], int(sys.argv[2])
answered, received = [], []
ids = set()
requests = 0
lines = 0
for raw in open(os.path.join(sink, 'requests.jsonl')):
    r = json.loads(raw)
    if r.get('status') is None or not (200 <= r['status'] < 300) or not r.get('body_file'):
        continue
    requests += 1
    with open(os.path.join(sink, r['body_file']), 'rb') as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            src = e.get('source') or {}
            if src.get('table') != 'events' or e.get('op') != 'c':
                continue
            if (e.get('after') or {}).get('id', 0) <= ev0:
                continue
            ts = datetime.fromisoformat(src['commit_ts']).timestamp()
            answered.append(r['t_answered'] - ts)
            received.append(r['t_received'] - ts)
            ids.add(e['after']['id'])
            lines += 1

def pct(v, p):
    v = sorted(v)
    if not v:
        return float('nan')
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))  # nearest rank
    return v[k]

print(lines, len(ids), requests,
      *('%.1f' % (1000 * pct(answered, p)) for p in (50, 90, 99, 100)),
      '%.1f' % (1000 * pct(received, 50)), '%.1f' % (1000 * pct(received, 99)))
PY
)
	LAT_RESULTS+=("$enc $LAT_TPS $LAT_ROWS $LAT_RESULT $LAT_STEAL")
	done
	stop_pid "$sink_pid"
	sink_pid=""
	set_walship "endpoint=$NGINX_URL"
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
fi

# ---------------------------------------------------------------------------
# 3. Cost to the primary: pgbench TPS without and with the worker shipping.
# ---------------------------------------------------------------------------
COST_RESULTS=()
if ! skipped cost; then
	set_walship "endpoint=$NGINX_URL" "format=" "compression="
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	jobs=$PGBENCH_CLIENTS
	[ "$jobs" -le "$(nproc)" ] || jobs=$(nproc)
	i=0
	for enc in $COST_ENCODERS; do
	use_encoders "$enc"
	order=()
	for round in $(seq 1 "$PGBENCH_ROUNDS"); do
		if [ $((round % 2)) -eq 1 ]; then order+=(off on); else order+=(on off); fi
	done
	for mode in "${order[@]}"; do
		i=$((i + 1))
		if [ "$mode" = off ]; then
			set_walship "enabled=off"
			psql_cmd -c "SELECT bench_wait('state = ''disabled'' AND inflight = 0', 60)" >/dev/null
		else
			# catch up on the backlog of the run before, then defaults
			# shellcheck disable=SC2086 # BACKLOG_SETTINGS is a list of words
			set_walship "enabled=" $BACKLOG_SETTINGS
			psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null ||
				die "the worker did not catch up after a run with it off${BACKLOG_SETTINGS:+ (BACKLOG_SETTINGS: $BACKLOG_SETTINGS)}"
			for kv in $BACKLOG_SETTINGS; do
				set_walship "${kv%%=*}="
			done
			psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
		fi
		psql_cmd -c "CHECKPOINT" >/dev/null
		read -r c0 _ _ <<<"$(shipped_counters)"
		log "cost run $i, $enc encoders: worker $mode: pgbench -c $PGBENCH_CLIENTS -j $jobs -T $PGBENCH_SECONDS"
		pgbench_cmd -c "$PGBENCH_CLIENTS" -j "$jobs" -T "$PGBENCH_SECONDS" >"$TMP/pgbench-cost-$i.log" 2>&1 ||
			{ cat "$TMP/pgbench-cost-$i.log" >&2; die "pgbench failed"; }
		tps=$(pgbench_tps "$TMP/pgbench-cost-$i.log")
		lag_end=$(psql_cmd -c "SELECT lag_bytes FROM walship.status")
		drain="-"
		if [ "$mode" = on ]; then
			drain=$(psql_cmd -c "SELECT round(bench_wait_caught_up(120)::numeric, 2)")
		fi
		read -r c1 _ _ <<<"$(shipped_counters)"
		log "cost run $i: worker $mode: $tps tps; lag at the end $lag_end bytes; shipped $((c1 - c0)) changes"
		COST_RESULTS+=("$i|$mode|$tps|$lag_end|$drain|$((c1 - c0))|$enc")
	done
	done
	# shellcheck disable=SC2086 # BACKLOG_SETTINGS is a list of words
	set_walship "enabled=" $BACKLOG_SETTINGS
	psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
fi

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
print_header "walship worker end-to-end benchmark" ", fsync = off"
echo "  defaults:  ${DEFAULTS% }"
print_load_line
echo "  sinks:     nginx $(nginx_version) (return 204, 1 worker process) on 127.0.0.1;" \
	"t/http_sink.py for latency"

if [ ${#TP_RESULTS[@]} -gt 0 ]; then
	echo
	echo "1. throughput: backlog of one workload (50% INSERT, 30% UPDATE, 20% DELETE, transactions of $TXN_SIZE," \
		"11-column table) shipped to nginx after walship.resume(), against plugin-only decoding of the same WAL" \
		"(pg_logical_slot_peek_binary_changes, median of $RUNS); $SHIP_ROUNDS backlogs (rounds) per case: median ship and decode times"
	echo "  settings: walship defaults${BACKLOG_SETTINGS:+ except $BACKLOG_SETTINGS}, format and compression per row"
	echo
	table_header l6 "format" l11 "compression" r8 "encoders" r7 "changes" r9 "WAL MB" r9 "decode s" r10 "decoded/s" \
		r9 "ship s" r10 "shipped/s" r6 "ratio" r13 "rounds' ratios"
	for res in "${TP_RESULTS[@]}"; do
		IFS='|' read -r fmt comp ch wal _ dec ship _ _ _ _ _ enc _ rlo rhi <<<"$res"
		awk -v f="$fmt" -v c="$comp" -v e="$enc" -v n="$ch" -v w="$wal" -v d="$dec" -v s="$ship" -v lo="$rlo" -v hi="$rhi" 'BEGIN {
			printf "| %-6s | %-11s | %8d | %7d | %9.1f | %9.3f | %10.0f | %9.3f | %10.0f | %5.1f%% | %5.1f-%5.1f%% |\n",
				f, c, e, n, w / 1048576, d, n / d, s, n / s, 100 * d / s, lo, hi
		}'
	done
	echo
	table_header l6 "format" l11 "compression" r8 "encoders" r7 "batches" r13 "changes/batch" r12 "body MB" r12 "bytes/change" \
		r10 "body MB/s" r11 "VmHWM MB" r12 "RssAnon MB" r14 "encoders' MB" r10 "worker s" r12 "encoders s" r8 "nginx s" r8 "steal s"
	for res in "${TP_RESULTS[@]}"; do
		IFS='|' read -r fmt comp ch _ _ _ ship _ nb bytes hwm anon enc ehwm _ _ wcpu ecpu scpu steal <<<"$res"
		awk -v f="$fmt" -v c="$comp" -v e="$enc" -v n="$ch" -v s="$ship" -v nb="$nb" -v by="$bytes" -v h="$hwm" -v a="$anon" -v eh="$ehwm" \
			-v wc="$wcpu" -v ec="$ecpu" -v sc="$scpu" -v st="$steal" 'BEGIN {
			printf "| %-6s | %-11s | %8d | %7d | %13.0f | %12.1f | %12.1f | %10.1f | %11.1f | %12.1f | %14.1f | %10.3f | %12.3f | %8.3f | %8.2f |\n",
				f, c, e, nb, (nb ? n / nb : 0), by / 1048576, by / n, by / 1048576 / s, h / 1024, a / 1024, eh / 1024, wc, ec, sc, st
		}'
	done
	echo
	echo "  rounds' ratios = lowest and highest ratio of a single round (its own backlog, ship and decodes); batches, body, memory: the last round."
	echo "  ratio = shipped/s over decoded/s of the medians (targets: binary >= 80%, ndjson >= 85%, ndjson+gzip >= 70%); encoders = walship.encoder_workers; ship s = walship.resume() until changes_shipped" \
		"has grown by the workload's row changes and confirmed_lsn passed its last WAL record (polled every 10 ms)."
	echo "  body = request bodies as sent (after compression); VmHWM = peak RSS of the worker during the case" \
		"$( [ "$HWM_RESET" = yes ] && echo "(reset through clear_refs before it)" || echo "(since the worker started: clear_refs was not writable)"),"
	echo "  shared memory it touched included; RssAnon = largest private resident memory sampled every 50 ms;" \
		"encoders' MB = the encoder workers' VmHWM, summed."
	echo "  worker s, encoders s, nginx s = CPU seconds (/proc/PID/schedstat) of the walship worker (decoding), of its encoder" \
		"workers (summed) and of nginx's worker while the backlog shipped; steal s = CPU time the hypervisor took from this" \
		"machine meanwhile (all CPUs, /proc/stat); medians of the rounds."

fi

if [ ${#LAT_RESULTS[@]} -gt 0 ]; then
	echo
	echo "2. latency: pgbench -R $LAT_RATE -T $LAT_SECONDS -c $LAT_CLIENTS, one INSERT of a small row per transaction;" \
		"default settings (ndjson envelope, no compression) to t/http_sink.py;" \
		"latency = request answered (sink clock) - source.commit_ts of the line"
	echo
	table_header r8 "encoders" r9 "tx/s" r9 "rows" r8 "lines" r8 "requests" r10 "lines/req" r8 "p50 ms" r8 "p90 ms" r8 "p99 ms" r8 "max ms" \
		r14 "arrival p50" r14 "arrival p99" r8 "steal s"
	for res in "${LAT_RESULTS[@]}"; do
		read -r enc ltps lrows llines _ lreq p50 p90 p99 pmax r50 r99 lsteal <<<"$res"
		awk -v e="$enc" -v t="$ltps" -v r="$lrows" -v l="$llines" -v q="$lreq" -v a="$p50" -v b="$p90" -v c="$p99" -v m="$pmax" \
			-v r50="$r50" -v r99="$r99" -v st="$lsteal" 'BEGIN {
			printf "| %8d | %9.1f | %9d | %8d | %8d | %10.1f | %8.1f | %8.1f | %8.1f | %8.1f | %14.1f | %14.1f | %8.2f |\n",
				e, t, r, l, q, (q ? l / q : 0), a, b, c, m, r50, r99, st
		}'
	done
	echo
	echo "  rows = rows inserted by pgbench; lines = lines for them in acknowledged bodies;" \
		"arrival = request headers read by the sink - commit (ms); steal s = CPU time the hypervisor took from this machine during the pgbench run."
	echo "  targets: p50 < 100 ms, p99 < 1000 ms; with encoders, p99 no worse than with 0"
fi

if [ ${#COST_RESULTS[@]} -gt 0 ]; then
	echo
	echo "3. cost to the primary: pgbench tpcb-like, scale $PGBENCH_SCALE, -c $PGBENCH_CLIENTS -j $jobs -T $PGBENCH_SECONDS," \
		"pgbench tables published; worker off (walship.enabled = off) or shipping to nginx at default settings;" \
		"$PGBENCH_ROUNDS off/on pairs (ABBA) per encoders value"
	echo
	table_header r8 "encoders" r3 "run" p6 "worker" r9 "tps" r16 "lag at end bytes" r9 "drain s" r15 "changes shipped"
	for res in "${COST_RESULTS[@]}"; do
		IFS='|' read -r i mode tps lag drain shipped enc <<<"$res"
		printf '| %8s | %3s | %6s | %9.1f | %16s | %9s | %15s |\n' "$enc" "$i" "$mode" "$tps" \
			"$([ "$mode" = on ] && echo "$lag" || echo "-")" "$drain" "$([ "$mode" = on ] && echo "$shipped" || echo "-")"
	done
	echo
	table_header r8 "encoders" r6 "pairs" r12 "off tps" r12 "on tps" r14 "median drop" r10 "lowest" r10 "highest"
	for enc in $COST_ENCODERS; do
		# consecutive runs of one encoders value form the pairs
		printf '%s\n' "${COST_RESULTS[@]}" | awk -F'|' -v e="$enc" '
			$7 == e { n++; tps[n] = $3; mode[n] = $2 }
			END {
				pairs = 0
				for (k = 1; k + 1 <= n; k += 2) {
					if (mode[k] == "off") { off = tps[k]; on = tps[k + 1] } else { off = tps[k + 1]; on = tps[k] }
					pairs++; drop[pairs] = 100 * (off - on) / off; so += off; sn += on
				}
				if (pairs == 0) exit
				# sort the drops (insertion sort: a handful of pairs)
				for (a = 2; a <= pairs; a++) { v = drop[a]; for (b = a - 1; b >= 1 && drop[b] > v; b--) drop[b + 1] = drop[b]; drop[b + 1] = v }
				med = (pairs % 2) ? drop[(pairs + 1) / 2] : (drop[pairs / 2] + drop[pairs / 2 + 1]) / 2
				printf "| %8d | %6d | %12.1f | %12.1f | %13.1f%% | %9.1f%% | %9.1f%% |\n",
					e, pairs, so / pairs, sn / pairs, med, drop[1], drop[pairs]
			}'
	done
	echo
	echo "  drop = (off - on) / off of each pair of consecutive runs; median over the pairs (target < 5%)," \
		"lowest and highest pair as its spread; off/on tps = means."
	echo "  lag at end = walship.status lag_bytes when pgbench returned; drain s = time until the worker" \
		"had confirmed everything after that."
fi

echo
print_worker_totals

warn_if_rebuilt "the timings"
