#!/usr/bin/env bash
#
# resync_bench.sh - how long walship takes to resync after its slot was
# lost, and how fresh live changes stay meanwhile
#
# Starts a throwaway PostgreSQL cluster in a temporary directory with walship
# in shared_preload_libraries, loads ROWS rows into "big" (bigint key, 5
# columns) and LIVE_ROWS into "live", both published, and lets the worker
# ship to http://127.0.0.1:ROUTER_PORT/ingest/{schema}/{table}: an nginx that
# answers /ingest/public/big itself (204, a null sink) and proxies the rest
# to the test suite's recording sink (t/http_sink.py).  Then, ROUNDS times:
#
#   - pgbench updates one row of "live" per transaction at FRESH_RATE tx/s;
#   - the slot is lost, as after a failover on PostgreSQL 15/16: the worker
#     is terminated and the slot dropped while walship.progress keeps its
#     row (on a real failover the new primary has no slot either);
#   - the next worker finds the gap and resyncs (walship.on_slot_lost =
#     resync): a new slot, a backfill of both tables (10,000 rows per
#     chunk, as the resync queues them), a resync record per table.
#
# Printed, per round and as medians: the time from the slot's loss to
# resync_state = 'done' in walship.status (both tables sent again and their
# resync records acknowledged), which includes the restart of the
# terminated worker (bgw_restart_time, 5 s; after a real failover the worker
# waiting on the standby starts within half a second of the promotion),
# the time from the gap's detection (gap_detected_at) to 'done', the rows
# per second of the latter, and the
# freshness of the live changes committed meanwhile: the sink's answer to
# the request carrying a change minus the change's _commit_ts, p50, p95,
# p99 and max.
#
# Usage (from the repository root, as root or as any user):
#
#     bash bench/resync_bench.sh                  # 1,000,000 rows, 3 rounds
#     ROWS=20000 ROUNDS=1 bash bench/resync_bench.sh
#
# As root, the script re-runs itself as the "postgres" user.  It installs
# nothing; it needs PostgreSQL 15 with pgbench, an installed walship, nginx
# and python3.
#
# Settings (environment): ROWS (1000000), ROUNDS (3),
# LIVE_ROWS (10000), FRESH_RATE (200 tx/s), RESYNC_TIMEOUT (600 s),
# BENCH_PORT (5497), ROUTER_PORT (18497), BENCH_USER (postgres), PG_CONFIG,
# NGINX, KEEP_TMP=1 (keep the temporary directory).

set -euo pipefail

ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-3}
LIVE_ROWS=${LIVE_ROWS:-10000}
FRESH_RATE=${FRESH_RATE:-200}
RESYNC_TIMEOUT=${RESYNC_TIMEOUT:-600}
BENCH_PORT=${BENCH_PORT:-5497}
ROUTER_PORT=${ROUTER_PORT:-18497}
BENCH_USER=${BENCH_USER:-postgres}
PG_CONFIG=${PG_CONFIG:-pg_config}
NGINX=${NGINX:-nginx}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_NAME=resync_bench
BENCH_LOG_CLOCK=1
declare -F drop_root >/dev/null || . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

SINK_SCRIPT=${RESYNC_BENCH_SINK:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../t/http_sink.py}
SINK_SCRIPT=$(readlink -f "$SINK_SCRIPT" 2>/dev/null || echo "$SINK_SCRIPT")

drop_root RESYNC_BENCH_SINK="$SINK_SCRIPT" -- "$@"

require_postgres "install postgresql-15 and postgresql-client-15" initdb pg_ctl psql pgbench
require_walship
find_nginx
command -v python3 >/dev/null 2>&1 || die "python3 not found; apt-get install python3"
[ -r "$SINK_SCRIPT" ] || die "cannot read the test sink $SINK_SCRIPT as user $(id -un)"
require_positive_ints ROWS ROUNDS LIVE_ROWS FRESH_RATE RESYNC_TIMEOUT BENCH_PORT ROUTER_PORT
port_open "$ROUTER_PORT" && die "port $ROUTER_PORT on 127.0.0.1 is in use; set ROUTER_PORT"
WALSHIP_BUILD=$(walship_build)

router_pid=""
sink_pid=""
live_pid=""
make_workdir
stop_on_exit live_pid sink_pid router_pid

# --- the recording sink and the router --------------------------------------------
mkdir -p "$TMP/sink" "$TMP/router"
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

# the big table to a null sink, the rest to the recording sink
start_router /ingest/public/big

# --- the cluster --------------------------------------------------------------------
start_cluster 'pgoutput, walship' <<CONF
shared_buffers = 512MB
shared_preload_libraries = 'walship'
walship.database = 'postgres'
# the tables are loaded first; the resyncs are what is measured
walship.initial_backfill = off
walship.publication = 'bench_pub'
walship.endpoint = 'http://127.0.0.1:$ROUTER_PORT/ingest/{schema}/{table}'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
CONF

log "loading $ROWS rows into big, $LIVE_ROWS into live"
psql_cmd <<SQL >/dev/null
CREATE TABLE big (id bigint PRIMARY KEY, grp int NOT NULL, name text, amount numeric(12,2), at timestamptz);
INSERT INTO big SELECT g, g % 1000, md5(g::text), g % 100000 / 100.0, '2026-01-01'::timestamptz + g * interval '1 s'
  FROM generate_series(1, $ROWS) g;
CREATE TABLE live (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO live SELECT g FROM generate_series(1, $LIVE_ROWS) g;
VACUUM ANALYZE big, live;
CREATE PUBLICATION bench_pub FOR TABLE big, live;
CREATE EXTENSION walship;
SQL
cat >"$TMP/live.sql" <<SQL
\set id random(1, $LIVE_ROWS)
UPDATE live SET n = n + 1 WHERE id = :id;
SQL

wait_sql() {
	local sql=$1 timeout=$2 deadline
	deadline=$((SECONDS + timeout))
	until [ "$(psql_cmd -c "$sql" 2>/dev/null || true)" = t ]; do
		[ $SECONDS -lt $deadline ] || die "timed out after $timeout s waiting for: $sql"
		sleep 0.05
	done
}
server_now() { psql_cmd -c "SELECT extract(epoch FROM clock_timestamp())"; }

wait_sql "SELECT state = 'streaming' FROM walship.status" 60
LOAD_START=$(load_avg)

# one_round N: loses the slot under the live workload and times the resync;
# appends "n|lo|hi|seconds" to ROUND_LINES (lo..hi: epoch seconds of the
# commits that count).
ROUND_LINES=()
one_round() {
	local n=$1 lo hi secs pid resyncs detected
	resyncs=$(psql_cmd -c "SELECT resyncs FROM walship.status")
	"$BINDIR/pgbench" -h "$TMP" -p "$BENCH_PORT" -U postgres -n -f "$TMP/live.sql" \
		-R "$FRESH_RATE" -T $((RESYNC_TIMEOUT + 60)) -c 2 -j 2 \
		postgres >"$TMP/pgbench-$n.log" 2>&1 &
	live_pid=$!
	sleep 2
	log "round $n: the slot is lost (worker terminated, slot dropped)"
	lo=$(server_now)
	pid=$(psql_cmd -c "SELECT worker_pid FROM walship.status")
	psql_cmd -c "SELECT pg_terminate_backend($pid)" >/dev/null
	wait_sql "SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'walship'" 30
	psql_cmd -c "SELECT pg_drop_replication_slot('walship')" >/dev/null
	wait_sql "SELECT resyncs = $resyncs + 1 AND resync_state = 'done' FROM walship.status" "$RESYNC_TIMEOUT"
	hi=$(server_now)
	detected=$(psql_cmd -c "SELECT extract(epoch FROM gap_detected_at) FROM walship.status")
	secs=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%.2f", b - a }')
	detected=$(awk -v a="$detected" -v b="$hi" 'BEGIN { printf "%.2f", b - a }')
	log "round $n: resync done in $secs s ($detected s after the gap was detected)"
	stop_pid "$live_pid"
	live_pid=""
	wait_sql "SELECT inflight = 0 AND lag_bytes < 65536 FROM walship.status" 60
	ROUND_LINES+=("$n|$lo|$hi|$secs|$detected")
}
for n in $(seq 1 "$ROUNDS"); do
	one_round "$n"
done

printf '%s\n' "${ROUND_LINES[@]}" >"$TMP/rounds"
RESULT=$(python3 - "$TMP/sink" "$TMP/rounds" <<'PY'
import json, os, sys
from datetime import datetime
sink, rounds_file = sys.argv[1], sys.argv[2]
points = []
for raw in open(os.path.join(sink, 'requests.jsonl')):
    r = json.loads(raw)
    if r.get('status') is None or not (200 <= r['status'] < 300) or not r.get('body_file'):
        continue
    if not r['path'].startswith('/ingest/public/live'):
        continue
    with open(os.path.join(sink, r['body_file']), 'rb') as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            if e.get('_op') != 'u':
                continue
            ts = datetime.fromisoformat(e['_commit_ts']).timestamp()
            points.append((ts, r['t_answered'] - ts))
def pct(v, p):
    if not v:
        return float('nan')
    return v[max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))]
for raw in open(rounds_file):
    n, lo, hi, secs, detected = raw.rstrip('\n').split('|')
    lat = sorted(l for t, l in points if float(lo) <= t <= float(hi))
    print('|'.join([n, secs, detected, str(len(lat))] + ['%.1f' % (1000 * pct(lat, p)) for p in (50, 95, 99, 100)]))
PY
)

print_header "walship resync benchmark" ", fsync = off, shared_buffers = 512MB"
echo "  tables:    big, $ROWS rows (bigint key, 5 columns), to nginx answering 204; live, $LIVE_ROWS rows, to t/http_sink.py"
echo "  loss:      worker terminated and slot dropped with its walship.progress row kept (a failover on PostgreSQL 15/16 looks the same to the worker)"
echo "  live:      pgbench -R $FRESH_RATE (2 clients) updating live during the resync; latency = sink answer - _commit_ts"
echo "  settings:  $(walship_settings format ndjson_shape batch_max_changes batch_max_bytes batch_max_delay max_inflight backfill_max_rate) chunks of 10000 rows"
print_load_line
echo
table_header r5 round r16 "loss to done (s)" r20 "detected to done (s)" r10 "rows/s" r12 "live changes" r8 "p50 ms" r8 "p95 ms" r8 "p99 ms" r8 "max ms"
SECS=()
DETS=()
while IFS='|' read -r n secs detected count p50 p95 p99 pmax; do
	SECS+=("$secs")
	DETS+=("$detected")
	printf '| %5s | %16s | %20s | %10s | %12s | %8s | %8s | %8s | %8s |\n' "$n" "$secs" "$detected" \
		"$(awk -v r="$ROWS" -v l="$LIVE_ROWS" -v s="$detected" 'BEGIN { printf "%.0f", (r + l) / s }')" \
		"$count" "$p50" "$p95" "$p99" "$pmax"
done <<<"$RESULT"
echo
echo "median resync time: $(median "${SECS[@]}") s from the loss, $(median "${DETS[@]}") s from the detection, for $((ROWS + LIVE_ROWS)) rows"
echo "(from the loss includes the terminated worker's restart, bgw_restart_time = 5 s; live changes: those committed from the loss to done)"
print_worker_totals
warn_if_rebuilt "the timings"
