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
#      and their ratio are printed for each format/compression case, with the
#      worker's peak memory (VmHWM of /proc/PID/status, reset before each case
#      through /proc/PID/clear_refs, and the largest sampled RssAnon).
#   2. Latency.  pgbench runs a one-row INSERT per transaction at LAT_RATE
#      tx/s for LAT_SECONDS while the worker ships to t/http_sink.py at the
#      default walship settings (NDJSON envelope, no compression, 50 ms batch
#      delay, 4 in flight).  For every line of every acknowledged body, the
#      latency is the request's t_answered (the sink's clock just before it
#      sends 204) minus the line's source.commit_ts.  p50/p90/p99/max.
#   3. Cost to the primary.  pgbench's built-in TPC-B-like script (scale
#      PGBENCH_SCALE, PGBENCH_CLIENTS clients, PGBENCH_SECONDS seconds; the
#      pgbench tables are in the published publication) with
#      walship.enabled = off and with the worker shipping to nginx at the
#      default settings, PGBENCH_ROUNDS rounds in the order off/on, on/off,
#      off/on, ... (ABBA, to cancel drift).  Before each run the worker has
#      caught up, so no backlog of an earlier run is shipped during it.
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
#     RUNS=3              plugin-only decodes per case; the median is reported
#     CASES="binary/none ndjson/none ndjson/gzip"
#                         throughput cases, walship.format/walship.compression
#     LAT_RATE=1000       latency: transactions per second (pgbench -R)
#     LAT_SECONDS=30      latency: duration
#     LAT_CLIENTS=2       latency: pgbench clients
#     PGBENCH_SCALE=10    cost: pgbench scale
#     PGBENCH_CLIENTS=4   cost: pgbench clients (-c; -j is min(clients, CPUs))
#     PGBENCH_SECONDS=30  cost: duration of each run
#     PGBENCH_ROUNDS=2    cost: runs with and without the worker, each
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
CASES=${CASES:-binary/none ndjson/none ndjson/gzip}
LAT_RATE=${LAT_RATE:-1000}
LAT_SECONDS=${LAT_SECONDS:-30}
LAT_CLIENTS=${LAT_CLIENTS:-2}
PGBENCH_SCALE=${PGBENCH_SCALE:-10}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-4}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-30}
PGBENCH_ROUNDS=${PGBENCH_ROUNDS:-2}
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

die() { echo "worker_bench: error: $*" >&2; exit 1; }
log() { echo "worker_bench: [$(date -u +%H:%M:%S)] $*" >&2; }

# The recording sink of the test suite, next to this script's directory.
SINK_SCRIPT=${WORKER_BENCH_SINK:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../t/http_sink.py}
SINK_SCRIPT=$(readlink -f "$SINK_SCRIPT" 2>/dev/null || echo "$SINK_SCRIPT")

# ---------------------------------------------------------------------------
# Run as an unprivileged user.  setpriv replaces this process (unlike su or
# runuser, which would stay in between), so signals reach the cleanup below.
# If that user cannot read this file, the script's text is passed instead.
# ---------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
	[ -z "${WORKER_BENCH_REEXEC:-}" ] || die "still root after switching user"
	id "$BENCH_USER" >/dev/null 2>&1 ||
		die "user '$BENCH_USER' does not exist; set BENCH_USER to an unprivileged user"
	self=$(readlink -f "${BASH_SOURCE[0]}")
	as_user=(setpriv --reuid="$BENCH_USER" --regid="$(id -g "$BENCH_USER")" --init-groups
		env WORKER_BENCH_REEXEC=1 WORKER_BENCH_SINK="$SINK_SCRIPT"
		USER="$BENCH_USER" LOGNAME="$BENCH_USER"
		HOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)")
	cd /
	if "${as_user[@]}" test -r "$self"; then
		exec "${as_user[@]}" bash "$self" "$@"
	else
		exec "${as_user[@]}" bash -c "$(cat "$self")" worker_bench.sh "$@"
	fi
fi

skipped() { case " $SKIP " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------------------
# Check the installation.  Nothing is installed from here.
# ---------------------------------------------------------------------------
command -v "$PG_CONFIG" >/dev/null 2>&1 ||
	die "$PG_CONFIG not found; install postgresql-15 (apt-get install postgresql-15 postgresql-server-dev-15)"
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
for prog in initdb pg_ctl psql pgbench; do
	[ -x "$BINDIR/$prog" ] || die "$BINDIR/$prog not found; install postgresql-15 and postgresql-client-15"
done
[ -f "$PKGLIBDIR/walship.so" ] ||
	die "walship is not installed in $PKGLIBDIR; run 'make && make install' in the walship source tree"
NGINX_BIN=$(command -v "$NGINX" 2>/dev/null || true)
[ -z "$NGINX_BIN" ] && [ -x /usr/sbin/nginx ] && NGINX_BIN=/usr/sbin/nginx
[ -n "$NGINX_BIN" ] || die "nginx not found; apt-get install nginx-light"
command -v python3 >/dev/null 2>&1 || die "python3 not found; apt-get install python3"
if ! skipped latency; then
	[ -r "$SINK_SCRIPT" ] ||
		die "cannot read the test sink $SINK_SCRIPT as user $(id -un); run from a checkout that user can read, or SKIP=latency"
fi

# Which walship build is measured; checked again at the end, since a
# reinstall during the run would mix two builds in the timings.
walship_build() {
	echo "$(sha256sum "$PKGLIBDIR/walship.so" | cut -c1-12), installed $(date -u -r "$PKGLIBDIR/walship.so" '+%Y-%m-%d %H:%M:%S UTC')"
}
WALSHIP_BUILD=$(walship_build)

for n in "$CHANGES" "$TXN_SIZE" "$PREFILL" "$RUNS" "$LAT_RATE" "$LAT_SECONDS" "$LAT_CLIENTS" \
	"$PGBENCH_SCALE" "$PGBENCH_CLIENTS" "$PGBENCH_SECONDS" "$PGBENCH_ROUNDS" "$SHIP_TIMEOUT" "$STALL_SECONDS" "$BENCH_PORT" "$HTTP_PORT"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "the numeric settings must be positive integers (got '$n')"
done
for c in $CASES; do
	[[ "$c" =~ ^(binary|ndjson)/(none|gzip|zstd)$ ]] ||
		die "CASES entries are FORMAT/COMPRESSION, e.g. binary/none or ndjson/gzip (got '$c')"
done

for kv in $BACKLOG_SETTINGS; do
	[[ "$kv" =~ ^[a-z_]+=[A-Za-z0-9_.]+$ ]] ||
		die "BACKLOG_SETTINGS entries are NAME=VALUE without the walship. prefix, e.g. batch_max_bytes=32MB (got '$kv')"
done

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open "$HTTP_PORT" && die "port $HTTP_PORT on 127.0.0.1 is in use; set HTTP_PORT"

# ---------------------------------------------------------------------------
# Throwaway cluster, nginx and sink: everything in a temporary directory,
# stopped and removed on exit.
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/walship-worker-bench.XXXXXX")
PGDATA_DIR="$TMP/data"
SERVER_LOG="$TMP/server.log"
server_started=0
nginx_pid=""
sink_pid=""
sampler_pid=""

stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$sampler_pid"
	stop_pid "$sink_pid"
	stop_pid "$nginx_pid"
	if [ "$server_started" -eq 1 ]; then
		"$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$SERVER_LOG" ]; then
		echo "worker_bench: last lines of the server log:" >&2
		tail -n 20 "$SERVER_LOG" >&2 || true
	fi
	if [ "$KEEP_TMP" = 1 ]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- nginx: the null sink ----------------------------------------------------
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
# worker_bench.sh: a null HTTP sink answering 204 to everything.
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	keepalive_requests 100000;
	keepalive_timeout 120s;
	server {
		listen 127.0.0.1:$HTTP_PORT;
		client_max_body_size 0;
		client_body_buffer_size 16m;
		location / { return 204; }
	}
}
EOF
log "starting nginx ($NGINX_BIN) on 127.0.0.1:$HTTP_PORT"
"$NGINX_BIN" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
	-g 'daemon off;' >"$TMP/nginx/stdout.log" 2>&1 &
nginx_pid=$!
for _ in $(seq 1 100); do
	port_open "$HTTP_PORT" && break
	kill -0 "$nginx_pid" 2>/dev/null || { cat "$TMP/nginx/error.log" "$TMP/nginx/stdout.log" >&2 || true; die "nginx exited"; }
	sleep 0.1
done
port_open "$HTTP_PORT" || die "nginx does not listen on 127.0.0.1:$HTTP_PORT"
NGINX_URL="http://127.0.0.1:$HTTP_PORT/ingest"
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary 'x' "$NGINX_URL" 2>/dev/null || true)
[ "$code" = 204 ] || die "nginx answers a POST with '$code', not 204"

# --- the cluster ---------------------------------------------------------------
log "initdb in $TMP"
"$BINDIR/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
	>"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }

cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# --- worker_bench.sh ---
listen_addresses = ''
port = $BENCH_PORT
unix_socket_directories = '$TMP'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_buffers = 256MB
# The peek functions collect their result in a tuplestore that spills to
# disk beyond work_mem; keep it in memory so the plugin is what is timed.
work_mem = 1GB
logical_decoding_work_mem = 256MB
max_wal_size = 8GB
checkpoint_timeout = 1h
# A throwaway cluster: durability does not matter, decoding is unaffected.
fsync = off
full_page_writes = off
autovacuum = off
timezone = 'UTC'

shared_preload_libraries = 'walship'
walship.database = 'postgres'
walship.publication = 'bench_pub'
walship.endpoint = '$NGINX_URL'
EOF

server_settings=$("$BINDIR/postgres" --describe-config 2>/dev/null | cut -f1 || true)
if grep -qx output_plugin_libraries <<<"$server_settings"; then
	echo "output_plugin_libraries = 'pgoutput, test_decoding, walship'" >>"$PGDATA_DIR/postgresql.conf"
fi

"$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$SERVER_LOG" -w -t 60 start >/dev/null ||
	die "the server did not start"
server_started=1

psql_cmd() {
	PGOPTIONS="-c client_min_messages=warning" \
		"$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h "$TMP" -p "$BENCH_PORT" -U postgres -d postgres "$@"
}
pgbench_cmd() {
	"$BINDIR/pgbench" -h "$TMP" -p "$BENCH_PORT" -U postgres "$@" postgres
}

# Sets walship.* settings with ALTER SYSTEM and reloads.  Arguments:
# name=value (value unquoted) or name= to reset.
set_walship() {
	local kv name value args=()
	for kv in "$@"; do
		name=${kv%%=*}
		value=${kv#*=}
		if [ -z "$value" ]; then
			args+=(-c "ALTER SYSTEM RESET walship.$name")
		else
			args+=(-c "ALTER SYSTEM SET walship.$name = '$value'")
		fi
	done
	psql_cmd "${args[@]}" -c "SELECT pg_reload_conf()" >/dev/null
}

# ---------------------------------------------------------------------------
# Schema, workloads, helpers.  Tables, data and publication exist before the
# extension, so the worker's slot starts after all of it.
# ---------------------------------------------------------------------------
log "creating the tables, prefilling $PREFILL orders, pgbench -i -s $PGBENCH_SCALE"
psql_cmd <<'SQL'
CREATE TABLE orders (
	id          bigint PRIMARY KEY,
	customer_id integer NOT NULL,
	country     text NOT NULL,
	total       numeric(12,2) NOT NULL,
	created_at  timestamptz NOT NULL,
	paid        boolean NOT NULL,
	ref         uuid NOT NULL,
	doc         jsonb,
	note        text,
	score       float8,
	ship_date   date
);

-- latency probes: one small row per transaction
CREATE TABLE events (
	id          bigserial PRIMARY KEY,
	kind        text NOT NULL,
	amount      numeric(10,2),
	created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE PROCEDURE orders_insert(lo bigint, hi bigint)
LANGUAGE sql AS $$
	INSERT INTO orders
	SELECT g,
		   (random() * 100000)::int,
		   (ARRAY['DE','FR','US','GB','JP','BR','IN','NL'])[1 + g % 8],
		   round((random() * 1000)::numeric, 2),
		   timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second',
		   random() < 0.5,
		   gen_random_uuid(),
		   jsonb_build_object('items', 1 + g % 5,
							  'channel', CASE WHEN g % 3 = 0 THEN 'web' ELSE 'store' END),
		   'order ' || g || ' via bench',
		   random() * 100,
		   date '2025-01-01' + (g % 365)::int
	FROM generate_series(lo, hi) AS g;
$$;

-- The workload of bench/plugin_bench.sh: transactions of txn_size row
-- changes, 50% INSERTs, 30% UPDATEs of live rows, 20% DELETEs of the
-- oldest rows.  Returns the row changes actually made.
CREATE PROCEDURE orders_workload(n_changes bigint, txn_size int, INOUT changes bigint DEFAULT 0)
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
	SELECT min(id), max(id) + 1 INTO oldest, next_id FROM orders;
	upd_at := oldest;
	changes := 0;
	WHILE changes < n_changes LOOP
		batch := least(txn_size, n_changes - changes);
		n_ins := batch * 5 / 10;
		n_upd := batch * 3 / 10;
		n_del := batch - n_ins - n_upd;

		CALL orders_insert(next_id, next_id + n_ins - 1);
		next_id := next_id + n_ins;
		changes := changes + n_ins;

		IF upd_at < oldest OR upd_at + n_upd > next_id THEN
			upd_at := oldest + n_del;
		END IF;
		UPDATE orders
		   SET paid = true,
			   total = total + 1.50,
			   score = random() * 100,
			   note = 'order ' || id || ' paid'
		 WHERE id >= upd_at AND id < upd_at + n_upd;
		GET DIAGNOSTICS n = ROW_COUNT;
		upd_at := upd_at + n_upd;
		changes := changes + n;

		DELETE FROM orders WHERE id >= oldest AND id < oldest + n_del;
		GET DIAGNOSTICS n = ROW_COUNT;
		oldest := oldest + n_del;
		changes := changes + n;

		COMMIT;
	END LOOP;
END;
$$;

-- Runs a query returning (rows, bytes) and times it on the server.
CREATE FUNCTION bench_decode(query text, OUT out_rows bigint, OUT out_bytes bigint,
							 OUT seconds float8)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	EXECUTE query INTO out_rows, out_bytes;
	seconds := extract(epoch FROM clock_timestamp() - t0);
END;
$$;
SQL
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
psql_cmd <<'SQL'
CREATE EXTENSION walship;

-- Waits until cond (a boolean expression over walship.status) holds;
-- returns the seconds waited.  Polls every 10 ms in one backend.
CREATE FUNCTION bench_wait(cond text, timeout_s float8) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	ok boolean;
	st text;
BEGIN
	LOOP
		EXECUTE 'SELECT ' || cond || ' FROM walship.status' INTO ok;
		EXIT WHEN ok;
		IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
			SELECT format('state %s, paused %s, confirmed %s, current %s, changes_shipped %s, inflight %s, last_http_status %s, last_error %s',
						  state, paused, confirmed_lsn, current_lsn, changes_shipped, inflight,
						  last_http_status, last_error)
			  INTO st FROM walship.status;
			RAISE EXCEPTION 'timed out after % s waiting for: %', timeout_s, cond
				USING DETAIL = st;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN extract(epoch FROM clock_timestamp() - t0);
END;
$$;

-- Waits until the worker has confirmed everything written so far.
CREATE FUNCTION bench_wait_caught_up(timeout_s float8) RETURNS float8
LANGUAGE plpgsql AS $$
BEGIN
	RETURN bench_wait(format('state = ''streaming'' AND inflight = 0 AND confirmed_lsn >= %L::pg_lsn',
							 pg_current_wal_lsn()), timeout_s);
END;
$$;

-- Resumes the paused worker and times it until changes_shipped reaches
-- target and confirmed_lsn reaches end_lsn.  Fails if changes_shipped does
-- not move for stall_s seconds, or after timeout_s.
CREATE FUNCTION bench_ship(target bigint, end_lsn pg_lsn, stall_s float8, timeout_s float8,
						   OUT seconds float8, OUT last_ack_seconds float8)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	moved_at timestamptz;
	last bigint := -1;
	s record;
BEGIN
	t0 := clock_timestamp();
	moved_at := t0;
	PERFORM walship.resume();
	LOOP
		SELECT * INTO s FROM walship.status;
		EXIT WHEN s.changes_shipped >= target AND s.confirmed_lsn >= end_lsn;
		IF s.changes_shipped <> last THEN
			last := s.changes_shipped;
			moved_at := clock_timestamp();
		ELSIF clock_timestamp() - moved_at > make_interval(secs => stall_s)
			OR clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
			RAISE EXCEPTION 'the worker stalled: changes_shipped % (target %) has not moved for % s',
				s.changes_shipped, target, round(extract(epoch FROM clock_timestamp() - moved_at)::numeric, 1)
				USING DETAIL = format('after %s s: state %s, confirmed_lsn %s (target %s), decoded_lsn %s, inflight %s, batches_shipped %s, last_http_status %s, last_error %s',
									  round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1),
									  s.state, s.confirmed_lsn, end_lsn, s.decoded_lsn, s.inflight,
									  s.batches_shipped, s.last_http_status, s.last_error);
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	seconds := extract(epoch FROM clock_timestamp() - t0);
	SELECT extract(epoch FROM last_success_at - t0) INTO last_ack_seconds FROM walship.status;
END;
$$;
SQL
psql_cmd -c "SELECT pg_reload_conf()" >/dev/null
psql_cmd -c "SELECT bench_wait('state = ''streaming''', 60)" >/dev/null ||
	die "the walship worker did not start streaming"
psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
WORKER_PID=$(psql_cmd -c "SELECT worker_pid FROM walship.status")
log "worker streaming (pid $WORKER_PID)"
DEFAULTS=$(psql_cmd -F '=' -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN ('walship.format', 'walship.compression', 'walship.batch_max_changes', 'walship.batch_max_bytes', 'walship.batch_max_delay', 'walship.max_inflight') ORDER BY name" | tr '\n' ' ')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# "changes_shipped bytes_shipped batches_shipped" of walship.status
shipped_counters() {
	psql_cmd -F ' ' -c "SELECT changes_shipped, bytes_shipped, batches_shipped FROM walship.status"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ t[NR] = $1 }
		END { if (NR % 2) print t[(NR + 1) / 2]; else print (t[NR / 2] + t[NR / 2 + 1]) / 2 }'
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
	for tcase in $CASES; do
		fmt=${tcase%/*}
		comp=${tcase#*/}
		log "throughput $fmt/$comp: pausing the worker"
		# shellcheck disable=SC2086 # BACKLOG_SETTINGS is a list of words
		set_walship "format=$fmt" "compression=$comp" $BACKLOG_SETTINGS
		psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
		psql_cmd -c "SELECT walship.pause()" >/dev/null
		psql_cmd -c "SELECT bench_wait('state = ''paused'' AND inflight = 0', 60)" >/dev/null
		psql_cmd -c "SELECT pg_create_logical_replication_slot('bench_peek', 'walship')" >/dev/null

		START_LSN=$(psql_cmd -c "SELECT pg_current_wal_lsn()")
		log "throughput $fmt/$comp: workload of $CHANGES row changes in transactions of $TXN_SIZE"
		wl_t0=$(date +%s.%N)
		ROW_CHANGES=$(psql_cmd -c "SELECT setseed(0.17)" -c "CALL orders_workload($CHANGES, $TXN_SIZE)" | tail -n 1)
		wl_t1=$(date +%s.%N)
		END_LSN=$(psql_cmd -c "SELECT pg_current_wal_lsn()")
		WAL_BYTES=$(psql_cmd -c "SELECT pg_wal_lsn_diff('$END_LSN', '$START_LSN')::bigint")
		[ "$ROW_CHANGES" -gt 0 ] || die "the workload made no row changes"
		psql_cmd -c "CHECKPOINT" >/dev/null
		log "throughput $fmt/$comp: workload done in $(awk -v a="$wl_t0" -v b="$wl_t1" 'BEGIN { printf "%.1f", b - a }') s:" \
			"$ROW_CHANGES row changes, $WAL_BYTES bytes of WAL"

		read -r c0 b0 n0 <<<"$(shipped_counters)"
		# peak memory of this case only: clear_refs 5 resets VmHWM
		echo 5 >"/proc/$WORKER_PID/clear_refs" 2>/dev/null || HWM_RESET=no
		rss_sampler "$WORKER_PID" "$TMP/rssanon" &
		sampler_pid=$!

		log "throughput $fmt/$comp: resuming the worker"
		if ! out=$(psql_cmd -F ' ' -c "SELECT * FROM bench_ship($((c0 + ROW_CHANGES)), '$END_LSN', $STALL_SECONDS, $SHIP_TIMEOUT)" 2>"$TMP/ship.err"); then
			cat "$TMP/ship.err" >&2
			echo "worker_bench: the worker's stack now (if gdb is installed):" >&2
			gdb -p "$WORKER_PID" -batch -ex bt 2>/dev/null | grep '^#' | head -n 12 >&2 || true
			die "the worker did not ship the workload of case $fmt/$comp${BACKLOG_SETTINGS:+ (BACKLOG_SETTINGS: $BACKLOG_SETTINGS)}"
		fi
		read -r ship_secs ack_secs <<<"$out"
		VMHWM=$(proc_kb "$WORKER_PID" VmHWM)
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

		TP_RESULTS+=("$fmt|$comp|$ROW_CHANGES|$WAL_BYTES|$b|$dec_secs|$ship_secs|$ack_secs|$((n1 - n0))|$((b1 - b0))|$VMHWM|$RSSANON")
	done
	psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
	for kv in $BACKLOG_SETTINGS; do
		set_walship "${kv%%=*}="
	done
fi

# ---------------------------------------------------------------------------
# 2. Latency at a steady rate, default settings, to the recording sink.
# ---------------------------------------------------------------------------
LAT_RESULT=""
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
	# settle: the first request opens the connection
	psql_cmd -c "INSERT INTO events (kind, amount) VALUES ('warmup', 0)" >/dev/null
	psql_cmd -c "SELECT bench_wait_caught_up(60)" >/dev/null
	EV0=$(psql_cmd -c "SELECT coalesce(max(id), 0) FROM events")

	cat >"$TMP/latency.sql" <<'EOF'
INSERT INTO events (kind, amount) VALUES ('probe', random() * 100);
EOF
	log "latency: pgbench -R $LAT_RATE -T $LAT_SECONDS -c $LAT_CLIENTS, one INSERT per transaction"
	pgbench_cmd -n -f "$TMP/latency.sql" -R "$LAT_RATE" -T "$LAT_SECONDS" \
		-c "$LAT_CLIENTS" -j "$LAT_CLIENTS" >"$TMP/pgbench-latency.log" 2>&1 ||
		{ cat "$TMP/pgbench-latency.log" >&2; die "pgbench (latency) failed"; }
	LAT_TPS=$(awk '/^tps = / { print $3; exit }' "$TMP/pgbench-latency.log")
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
	LAT_RESULT="$LAT_TPS $LAT_ROWS $LAT_RESULT"
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
	order=()
	for round in $(seq 1 "$PGBENCH_ROUNDS"); do
		if [ $((round % 2)) -eq 1 ]; then order+=(off on); else order+=(on off); fi
	done
	i=0
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
		log "cost run $i/${#order[@]}: worker $mode: pgbench -c $PGBENCH_CLIENTS -j $jobs -T $PGBENCH_SECONDS"
		pgbench_cmd -c "$PGBENCH_CLIENTS" -j "$jobs" -T "$PGBENCH_SECONDS" >"$TMP/pgbench-cost-$i.log" 2>&1 ||
			{ cat "$TMP/pgbench-cost-$i.log" >&2; die "pgbench failed"; }
		tps=$(awk '/^tps = / { print $3; exit }' "$TMP/pgbench-cost-$i.log")
		lag_end=$(psql_cmd -c "SELECT lag_bytes FROM walship.status")
		drain="-"
		if [ "$mode" = on ]; then
			drain=$(psql_cmd -c "SELECT round(bench_wait_caught_up(120)::numeric, 2)")
		fi
		read -r c1 _ _ <<<"$(shipped_counters)"
		log "cost run $i: worker $mode: $tps tps; lag at the end $lag_end bytes; shipped $((c1 - c0)) changes"
		COST_RESULTS+=("$i|$mode|$tps|$lag_end|$drain|$((c1 - c0))")
	done
	# shellcheck disable=SC2086 # BACKLOG_SETTINGS is a list of words
	set_walship "enabled=" $BACKLOG_SETTINGS
	psql_cmd -c "SELECT bench_wait_caught_up(120)" >/dev/null
fi

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
SERVER_VERSION=$(psql_cmd -c "SHOW server_version")
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
FINAL_STATUS=$(psql_cmd -F ' ' -c "SELECT retries, rejected_batches, coalesce(last_error, '-') FROM walship.status")

echo
echo "walship worker end-to-end benchmark"
echo "  machine:   $(nproc) CPUs${CPU_MODEL:+ ($CPU_MODEL)}, $(uname -sr)"
echo "  server:    PostgreSQL $SERVER_VERSION ($BINDIR), fsync = off"
echo "  walship:   $PKGLIBDIR/walship.so (sha256 $WALSHIP_BUILD)"
echo "  defaults:  ${DEFAULTS% }"
echo "  load avg:  $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min; other work on the machine shows here)"
echo "  sinks:     nginx $("$NGINX_BIN" -v 2>&1 | sed 's|.*nginx/||') (return 204, 1 worker process) on 127.0.0.1;" \
	"t/http_sink.py for latency"

if [ ${#TP_RESULTS[@]} -gt 0 ]; then
	echo
	echo "1. throughput: backlog of one workload (50% INSERT, 30% UPDATE, 20% DELETE, transactions of $TXN_SIZE," \
		"11-column table) shipped to nginx after walship.resume(), against plugin-only decoding of the same WAL" \
		"(pg_logical_slot_peek_binary_changes, median of $RUNS)"
	echo "  settings: walship defaults${BACKLOG_SETTINGS:+ except $BACKLOG_SETTINGS}, format and compression per row"
	echo
	printf '| %-6s | %-11s | %7s | %9s | %9s | %10s | %9s | %10s | %6s |\n' \
		"format" "compression" "changes" "WAL MB" "decode s" "decoded/s" "ship s" "shipped/s" "ratio"
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------" "-------------" "--------:" "----------:" \
		"----------:" "-----------:" "----------:" "-----------:" "-------:"
	for res in "${TP_RESULTS[@]}"; do
		IFS='|' read -r fmt comp ch wal _ dec ship _ _ _ _ _ <<<"$res"
		awk -v f="$fmt" -v c="$comp" -v n="$ch" -v w="$wal" -v d="$dec" -v s="$ship" 'BEGIN {
			printf "| %-6s | %-11s | %7d | %9.1f | %9.3f | %10.0f | %9.3f | %10.0f | %5.1f%% |\n",
				f, c, n, w / 1048576, d, n / d, s, n / s, 100 * d / s
		}'
	done
	echo
	printf '| %-6s | %-11s | %7s | %13s | %12s | %12s | %10s | %11s | %12s |\n' \
		"format" "compression" "batches" "changes/batch" "body MB" "bytes/change" "body MB/s" "VmHWM MB" "RssAnon MB"
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------" "-------------" "--------:" "--------------:" \
		"-------------:" "-------------:" "-----------:" "------------:" "-------------:"
	for res in "${TP_RESULTS[@]}"; do
		IFS='|' read -r fmt comp ch _ _ _ ship _ nb bytes hwm anon <<<"$res"
		awk -v f="$fmt" -v c="$comp" -v n="$ch" -v s="$ship" -v nb="$nb" -v by="$bytes" -v h="$hwm" -v a="$anon" 'BEGIN {
			printf "| %-6s | %-11s | %7d | %13.0f | %12.1f | %12.1f | %10.1f | %11.1f | %12.1f |\n",
				f, c, nb, (nb ? n / nb : 0), by / 1048576, by / n, by / 1048576 / s, h / 1024, a / 1024
		}'
	done
	echo
	echo "  ratio = shipped/s over decoded/s (target >= 80%); ship s = walship.resume() until changes_shipped" \
		"has grown by the workload's row changes and confirmed_lsn passed its last WAL record (polled every 10 ms)."
	echo "  body = request bodies as sent (after compression); VmHWM = peak RSS of the worker during the case" \
		"$( [ "$HWM_RESET" = yes ] && echo "(reset through clear_refs before it)" || echo "(since the worker started: clear_refs was not writable)"),"
	echo "  shared memory it touched included; RssAnon = largest private resident memory sampled every 50 ms."
fi

if [ -n "$LAT_RESULT" ]; then
	read -r ltps lrows llines lids lreq p50 p90 p99 pmax r50 r99 <<<"$LAT_RESULT"
	echo
	echo "2. latency: pgbench -R $LAT_RATE -T $LAT_SECONDS -c $LAT_CLIENTS, one INSERT of a small row per transaction;" \
		"default settings (ndjson envelope, no compression) to t/http_sink.py;" \
		"latency = request answered (sink clock) - source.commit_ts of the line"
	echo
	printf '| %9s | %9s | %8s | %8s | %10s | %8s | %8s | %8s | %8s |\n' \
		"tx/s" "rows" "lines" "requests" "lines/req" "p50 ms" "p90 ms" "p99 ms" "max ms"
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "----------:" "----------:" "---------:" "---------:" \
		"-----------:" "---------:" "---------:" "---------:" "---------:"
	awk -v t="$ltps" -v r="$lrows" -v l="$llines" -v q="$lreq" -v a="$p50" -v b="$p90" -v c="$p99" -v m="$pmax" 'BEGIN {
		printf "| %9.1f | %9d | %8d | %8d | %10.1f | %8.1f | %8.1f | %8.1f | %8.1f |\n",
			t, r, l, q, (q ? l / q : 0), a, b, c, m
	}'
	echo
	echo "  rows = rows inserted by pgbench; lines = lines for them in acknowledged bodies ($lids distinct ids);" \
		"arrival (request headers read by the sink) - commit: p50 $r50 ms, p99 $r99 ms."
	echo "  targets: p50 < 100 ms, p99 < 1000 ms"
fi

if [ ${#COST_RESULTS[@]} -gt 0 ]; then
	echo
	echo "3. cost to the primary: pgbench tpcb-like, scale $PGBENCH_SCALE, -c $PGBENCH_CLIENTS -j $jobs -T $PGBENCH_SECONDS," \
		"pgbench tables published; worker off (walship.enabled = off) or shipping to nginx at default settings"
	echo
	printf '| %3s | %6s | %9s | %16s | %9s | %15s |\n' "run" "worker" "tps" "lag at end bytes" "drain s" "changes shipped"
	printf '|%s|%s|%s|%s|%s|%s|\n' "----:" "--------" "----------:" "-----------------:" "----------:" "----------------:"
	off=()
	on=()
	for res in "${COST_RESULTS[@]}"; do
		IFS='|' read -r i mode tps lag drain shipped <<<"$res"
		printf '| %3s | %6s | %9.1f | %16s | %9s | %15s |\n' "$i" "$mode" "$tps" \
			"$([ "$mode" = on ] && echo "$lag" || echo "-")" "$drain" "$([ "$mode" = on ] && echo "$shipped" || echo "-")"
		if [ "$mode" = on ]; then on+=("$tps"); else off+=("$tps"); fi
	done
	echo
	printf '%s\n' "${off[@]}" >"$TMP/off"
	printf '%s\n' "${on[@]}" >"$TMP/on"
	awk 'FNR == NR { so += $1; no++; next } { sn += $1; nn++ }
		END {
			a = so / no; b = sn / nn
			printf "  mean tps: worker off %.1f, worker shipping %.1f: drop %.1f%% (target < 5%%)\n", a, b, 100 * (a - b) / a
		}' "$TMP/off" "$TMP/on"
	echo "  lag at end = walship.status lag_bytes when pgbench returned; drain s = time until the worker" \
		"had confirmed everything after that."
fi

echo
read -r f_retries f_rejected f_error <<<"$FINAL_STATUS"
echo "worker totals at the end: retries $f_retries, rejected batches $f_rejected, last error: $f_error"

if [ "$(walship_build)" != "$WALSHIP_BUILD" ]; then
	echo
	echo "WARNING: walship.so was reinstalled during the run ($(walship_build));" \
		"the timings may mix two builds: run again."
fi
