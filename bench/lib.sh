# shellcheck shell=bash
#
# lib.sh - machinery shared by the benchmark scripts of bench/
#
# Sourced by plugin_bench.sh, worker_bench.sh and clickhouse_bench.sh; not
# run on its own.  It only defines functions.  Before sourcing it a script
# sets BENCH_NAME (its file name without ".sh", used in messages, in the
# temporary directory's name and for the *_REEXEC guard) and, to stamp its
# log lines with the time, BENCH_LOG_CLOCK=1.  The functions read the
# script's settings (BENCH_USER, PG_CONFIG, BENCH_PORT, HTTP_PORT, NGINX,
# KEEP_TMP, SKIP, CHANGES, TXN_SIZE, ...) when they are called, and set the
# globals named in their comments (BINDIR, PKGLIBDIR, TMP, WORKER_PID, ...).
#
# What is here: dropping root, installation checks, the temporary directory
# and the exit trap that stops everything, the throwaway cluster, psql and
# pgbench wrappers, the nginx null sink, the "orders" table and its
# workload, the SQL helpers that wait for and time the walship worker, and
# the common lines and tables of the reports.

# --- messages -----------------------------------------------------------------

# die MESSAGE: prints the error and exits 1 (the exit trap cleans up).
die() { echo "$BENCH_NAME: error: $*" >&2; exit 1; }

# log MESSAGE: a progress line on stderr, with the UTC time if BENCH_LOG_CLOCK=1.
log() {
	if [ "${BENCH_LOG_CLOCK:-0}" = 1 ]; then
		echo "$BENCH_NAME: [$(date -u +%H:%M:%S)] $*" >&2
	else
		echo "$BENCH_NAME: $*" >&2
	fi
}

# skipped PART: true if PART is one of the words of SKIP.
skipped() { case " ${SKIP:-} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- running as an unprivileged user ---------------------------------------------

# drop_root [NAME=VALUE ...] -- ARGS...: as root, re-runs the script as
# BENCH_USER (initdb refuses to run as root) with ARGS and these extra
# environment variables; returns at once when not root.  setpriv replaces
# this process (unlike su or runuser, which would stay in between), so
# signals reach the exit trap.  If that user cannot read the script, the
# text of this file and of the script is passed instead.
drop_root() {
	local guard="${BENCH_NAME^^}_REEXEC" self lib extra_env=() as_user
	[ "$(id -u)" -eq 0 ] || return 0
	[ -z "${!guard:-}" ] || die "still root after switching user"
	id "$BENCH_USER" >/dev/null 2>&1 ||
		die "user '$BENCH_USER' does not exist; set BENCH_USER to an unprivileged user"
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		extra_env+=("$1")
		shift
	done
	[ $# -eq 0 ] || shift
	self=$(readlink -f "${BASH_SOURCE[-1]}")
	lib=$(readlink -f "${BASH_SOURCE[0]}")
	as_user=(setpriv --reuid="$BENCH_USER" --regid="$(id -g "$BENCH_USER")" --init-groups
		env "$guard=1" "${extra_env[@]}" USER="$BENCH_USER" LOGNAME="$BENCH_USER"
		HOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)")
	cd /
	if "${as_user[@]}" test -r "$self" && "${as_user[@]}" test -r "$lib"; then
		exec "${as_user[@]}" bash "$self" "$@"
	else
		exec "${as_user[@]}" bash -c "$(cat "$lib" "$self")" "$BENCH_NAME.sh" "$@"
	fi
}

# --- checks -------------------------------------------------------------------------

# require_postgres HINT PROGRAM...: sets BINDIR and PKGLIBDIR from PG_CONFIG;
# dies with HINT if a PROGRAM is not in BINDIR.  Nothing is installed.
require_postgres() {
	local hint=$1 prog
	shift
	command -v "$PG_CONFIG" >/dev/null 2>&1 ||
		die "$PG_CONFIG not found; install postgresql-15 (apt-get install postgresql-15 postgresql-server-dev-15)"
	BINDIR=$("$PG_CONFIG" --bindir)
	PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
	for prog in "$@"; do
		[ -x "$BINDIR/$prog" ] || die "$BINDIR/$prog not found; $hint"
	done
}

# require_walship: dies unless walship.so is in PKGLIBDIR.
require_walship() {
	[ -f "$PKGLIBDIR/walship.so" ] ||
		die "walship is not installed in $PKGLIBDIR; run 'make && make install' in the walship source tree"
}

# find_nginx: sets NGINX_BIN to the NGINX binary (or /usr/sbin/nginx).
find_nginx() {
	NGINX_BIN=$(command -v "$NGINX" 2>/dev/null || true)
	[ -z "$NGINX_BIN" ] && [ -x /usr/sbin/nginx ] && NGINX_BIN=/usr/sbin/nginx
	[ -n "$NGINX_BIN" ] || die "nginx not found; apt-get install nginx-light"
}

# require_positive_ints NAME...: dies unless each named variable holds a
# positive integer.
require_positive_ints() {
	local name
	for name in "$@"; do
		[[ "${!name}" =~ ^[1-9][0-9]*$ ]] ||
			die "$name must be a positive integer (got '${!name}')"
	done
}

# walship_build: the hash and install time of walship.so.  Taken at the
# start and checked again at the end (warn_if_rebuilt), since a reinstall
# during the run would mix two builds in the timings.
walship_build() {
	echo "$(sha256sum "$PKGLIBDIR/walship.so" | cut -c1-12), installed $(date -u -r "$PKGLIBDIR/walship.so" '+%Y-%m-%d %H:%M:%S UTC')"
}

# port_open PORT: true if something listens on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- temporary directory, background processes, exit trap ----------------------------

# make_workdir: creates the temporary directory TMP (PGDATA_DIR and
# SERVER_LOG go in it) and sets the exit trap: on exit, ^C included, the
# processes registered with stop_on_exit are stopped, then the cluster; on
# failure the end of the server log is printed; the script's on_exit
# function (if it has one) runs with the exit status; TMP is removed unless
# KEEP_TMP=1.
make_workdir() {
	STOP_ON_EXIT=()
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/walship-${BENCH_NAME//_/-}.XXXXXX")
	PGDATA_DIR="$TMP/data"
	SERVER_LOG="$TMP/server.log"
	server_started=0
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# stop_on_exit VARIABLE...: on exit, stop the processes whose PIDs these
# variables hold then (empty: nothing to stop), in this order.
stop_on_exit() { STOP_ON_EXIT+=("$@"); }

# bench_cleanup: the exit trap set by make_workdir.
bench_cleanup() {
	local rc=$? var
	trap - EXIT INT TERM
	for var in "${STOP_ON_EXIT[@]}"; do
		stop_pid "${!var:-}"
	done
	if [ "$server_started" -eq 1 ]; then
		"$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$SERVER_LOG" ]; then
		echo "$BENCH_NAME: last lines of the server log:" >&2
		tail -n 20 "$SERVER_LOG" >&2 || true
	fi
	if declare -F on_exit >/dev/null; then
		on_exit "$rc"
	fi
	if [ "$KEEP_TMP" = 1 ]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}

# stop_pid PID [TENTHS]: SIGTERM, up to TENTHS tenths of a second (default
# 50) for it to exit, then SIGKILL; reaps it.  Nothing if PID is empty.
stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 "${2:-50}"); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# --- nginx: the null sink -------------------------------------------------------------

# nginx_conf_head DIR: the start of an nginx.conf for one worker process
# whose pid, error log and temporary files are in DIR, up to and including
# the settings of its open "http {" block.
nginx_conf_head() {
	cat <<EOF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $1/body;
	proxy_temp_path $1/proxy;
	fastcgi_temp_path $1/fastcgi;
	uwsgi_temp_path $1/uwsgi;
	scgi_temp_path $1/scgi;
	keepalive_requests 100000;
	keepalive_timeout 120s;
EOF
}

# start_nginx: starts nginx in $TMP/nginx on 127.0.0.1:HTTP_PORT answering
# 204 to every request (bodies read and discarded, one worker process),
# sets nginx_pid and checks that a POST gets its 204.
start_nginx() {
	local code
	mkdir -p "$TMP/nginx"
	cat >"$TMP/nginx/nginx.conf" <<EOF
# $BENCH_NAME.sh: a null HTTP sink answering 204 to everything.
$(nginx_conf_head "$TMP/nginx")
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
	code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary 'x' "http://127.0.0.1:$HTTP_PORT/ingest" 2>/dev/null || true)
	[ "$code" = 204 ] || die "nginx answers a POST with '$code', not 204"
}

# nginx_version: the version nginx reports, e.g. 1.22.1.
nginx_version() { "$NGINX_BIN" -v 2>&1 | sed 's|.*nginx/||'; }

# --- the throwaway cluster ------------------------------------------------------------------

# start_cluster LIBRARIES: initdb in PGDATA_DIR, the settings every benchmark
# uses (unix socket in TMP on BENCH_PORT, no TCP listener, wal_level =
# logical, no durability) followed by the script's own settings read from
# stdin, output_plugin_libraries = LIBRARIES if the server knows that
# setting (PostgreSQL 15.19+ loads only the output plugins listed there;
# older servers would refuse to start with it), then starts the server.
start_cluster() {
	local libraries=$1 server_settings
	log "initdb in $TMP"
	"$BINDIR/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
		>"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
	{
		cat <<EOF

# --- $BENCH_NAME.sh ---
listen_addresses = ''
port = $BENCH_PORT
unix_socket_directories = '$TMP'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_buffers = 256MB
logical_decoding_work_mem = 256MB
max_wal_size = 8GB
checkpoint_timeout = 1h
# A throwaway cluster: durability does not matter, decoding is unaffected.
# (synchronous_commit stays on: decoding reads only flushed WAL.)
fsync = off
full_page_writes = off
autovacuum = off
timezone = 'UTC'
EOF
		cat
	} >>"$PGDATA_DIR/postgresql.conf"
	server_settings=$("$BINDIR/postgres" --describe-config 2>/dev/null | cut -f1 || true)
	if grep -qx output_plugin_libraries <<<"$server_settings"; then
		echo "output_plugin_libraries = '$libraries'" >>"$PGDATA_DIR/postgresql.conf"
	fi
	"$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$SERVER_LOG" -w -t 60 start >/dev/null ||
		die "the server did not start"
	server_started=1
}

# psql_cmd ARGS...: psql on the cluster, unaligned tuples only, stopping at
# the first error.  client_min_messages: decoderbufs reports its startup at
# INFO level.
psql_cmd() {
	PGOPTIONS="-c client_min_messages=warning" \
		"$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h "$TMP" -p "$BENCH_PORT" -U postgres -d postgres "$@"
}

# pgbench_cmd ARGS...: pgbench on the cluster's postgres database.
pgbench_cmd() {
	"$BINDIR/pgbench" -h "$TMP" -p "$BENCH_PORT" -U postgres "$@" postgres
}

# pgbench_tps LOG: the tps pgbench reported in LOG.
pgbench_tps() { awk '/^tps = / { print $3; exit }' "$1"; }

# set_walship NAME=VALUE...: sets walship.NAME with ALTER SYSTEM (VALUE
# unquoted; NAME= resets it) and reloads the configuration.
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

# walship_settings NAME...: "walship.NAME=value " for each named setting,
# units included, in the order of the names sorted.
walship_settings() {
	local names
	names=$(printf "'walship.%s', " "$@")
	psql_cmd -F '=' -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN (${names%, }) ORDER BY name" | tr '\n' ' '
}

# --- SQL: the orders table and its workload ----------------------------------------------

# sql_orders_table: prints the CREATE TABLE of "orders", 11 columns of mixed
# types, the table every workload changes.
sql_orders_table() {
	cat <<'SQL'
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
SQL
}

# sql_orders_workload: prints the procedures orders_insert(lo, hi) and
# orders_workload(n_changes, txn_size) on "orders".  clickhouse_bench.sh has
# its own, with the table as a parameter.
sql_orders_workload() {
	cat <<'SQL'
-- Inserts the rows with ids lo..hi.
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

-- The workload: transactions of txn_size row changes, of which 50% are
-- INSERTs of new ids, 30% UPDATEs of live rows (cycling through them) and 20%
-- DELETEs of the oldest rows.  Returns the row changes actually made.
CREATE PROCEDURE orders_workload(n_changes bigint, txn_size int, INOUT changes bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	next_id   bigint;			-- next id to insert
	oldest    bigint;			-- lowest live id
	upd_at    bigint;			-- next id to update
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
SQL
}

# sql_bench_decode: prints bench_decode(query), which runs a query returning
# (rows, bytes) and times it on the server with clock_timestamp().
sql_bench_decode() {
	cat <<'SQL'
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
}

# run_orders_workload ARGS: commits the workload, "CALL orders_workload(ARGS)"
# with the random seed 0.17, and sets WL_START_LSN, WL_END_LSN, WL_CHANGES
# (the row changes it made), WL_WAL_BYTES and WL_SECONDS (its duration,
# "%.1f"); then CHECKPOINT.
# shellcheck disable=SC2034 # the WL_ variables are the result
run_orders_workload() {
	local t0 t1
	WL_START_LSN=$(psql_cmd -c "SELECT pg_current_wal_lsn()")
	t0=$(date +%s.%N)
	WL_CHANGES=$(psql_cmd -c "SELECT setseed(0.17)" -c "CALL orders_workload($1)" | tail -n 1)
	t1=$(date +%s.%N)
	WL_END_LSN=$(psql_cmd -c "SELECT pg_current_wal_lsn()")
	[ "$(psql_cmd -c "SELECT pg_current_wal_flush_lsn() >= '$WL_END_LSN'")" = t ] ||
		die "WAL up to $WL_END_LSN is not flushed; decoding would miss the end of the workload"
	WL_WAL_BYTES=$(psql_cmd -c "SELECT pg_wal_lsn_diff('$WL_END_LSN', '$WL_START_LSN')::bigint")
	WL_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	[ "$WL_CHANGES" -gt 0 ] || die "the workload made no row changes"
	psql_cmd -c "CHECKPOINT" >/dev/null
}

# median NUMBER...: the median.
# cpu_ticks PID: CPU ticks (user + system, all threads) of process PID so
# far, in CLK_TCK units; 0 if there is none.
cpu_ticks() {
	if [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ]; then
		sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
	else
		echo 0
	fi
}

# cpu_ns PID...: nanoseconds the processes (their main threads) have run on
# a CPU so far, summed, from /proc/PID/schedstat; gone processes count 0.
cpu_ns() {
	local pid total=0 ns
	for pid in "$@"; do
		ns=$(cut -d' ' -f1 "/proc/$pid/schedstat" 2>/dev/null) || ns=0
		total=$((total + ${ns:-0}))
	done
	echo "$total"
}

# steal_ticks: ticks the hypervisor gave to others while this machine's CPUs
# wanted to run ("steal" in /proc/stat, all CPUs; CLK_TCK units).
steal_ticks() { awk '/^cpu / { print $9; exit }' /proc/stat; }

median() {
	printf '%s\n' "$@" | sort -g | awk '{ t[NR] = $1 }
		END { if (NR % 2) print t[(NR + 1) / 2]; else print (t[NR / 2] + t[NR / 2 + 1]) / 2 }'
}

# --- the walship worker ---------------------------------------------------------------------

# sql_worker_helpers: prints the SQL functions that wait for and time the
# worker through walship.status, each polling every 10 ms in one backend:
# bench_wait(cond, timeout), bench_wait_caught_up(timeout) and
# bench_ship(target, end_lsn, stall, timeout).  They need the extension.
sql_worker_helpers() {
	cat <<'SQL'
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
			SELECT format('state %s, paused %s, confirmed %s, current %s, changes_shipped %s, inflight %s, retries %s, last_http_status %s, last_error %s',
						  state, paused, confirmed_lsn, current_lsn, changes_shipped, inflight,
						  retries, last_http_status, last_error)
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
				USING DETAIL = format('after %s s: state %s, confirmed_lsn %s (target %s), decoded_lsn %s, inflight %s, batches_shipped %s, retries %s, last_http_status %s, last_error %s',
									  round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1),
									  s.state, s.confirmed_lsn, end_lsn, s.decoded_lsn, s.inflight,
									  s.batches_shipped, s.retries, s.last_http_status, s.last_error);
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	seconds := extract(epoch FROM clock_timestamp() - t0);
	SELECT extract(epoch FROM last_success_at - t0) INTO last_ack_seconds FROM walship.status;
END;
$$;
SQL
}

# wait_worker_streaming: reloads the configuration (the worker starts once
# the extension exists), waits until it streams and sets WORKER_PID.
wait_worker_streaming() {
	psql_cmd -c "SELECT pg_reload_conf()" >/dev/null
	psql_cmd -c "SELECT bench_wait('state = ''streaming''', 60)" >/dev/null ||
		die "the walship worker did not start streaming ($(psql_cmd -c 'SELECT state, last_error FROM walship.status'))"
	WORKER_PID=$(psql_cmd -c "SELECT worker_pid FROM walship.status")
}

# use_encoders N: walship.encoder_workers = N (by reload; the worker
# switches once nothing is pending), waits until N encoders run and sets
# ENCODER_PIDS.
use_encoders() {
	local n=$1 i
	set_walship "encoder_workers=$n"
	for i in $(seq 1 600); do
		[ "$(psql_cmd -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walship encoder'")" = "$n" ] &&
			break
		[ "$i" -lt 600 ] || die "$n encoder workers did not start"
		sleep 0.1
	done
	ENCODER_PIDS=$(psql_cmd -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walship encoder'" | tr '\n' ' ')
}

# start_router PATH: nginx on 127.0.0.1:ROUTER_PORT that answers requests
# for PATH itself (204, body discarded, like the null sink) and passes every
# other request to the recording sink on SINK_PORT; sets router_pid.
start_router() {
	local null_path=$1
	mkdir -p "$TMP/router"
	cat >"$TMP/router/nginx.conf" <<EOF
# $BENCH_NAME.sh: $null_path to a null sink, the rest to the recording sink.
$(nginx_conf_head "$TMP/router")
	upstream sink {
		server 127.0.0.1:$SINK_PORT;
		keepalive 8;
	}
	server {
		listen 127.0.0.1:$ROUTER_PORT;
		client_max_body_size 0;
		client_body_buffer_size 16m;
		location $null_path { return 204; }
		location / {
			proxy_pass http://sink;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
EOF
	log "starting the routing nginx on 127.0.0.1:$ROUTER_PORT"
	"$NGINX_BIN" -p "$TMP/router" -e "$TMP/router/error.log" -c "$TMP/router/nginx.conf" \
		-g 'daemon off;' >"$TMP/router/stdout.log" 2>&1 &
	router_pid=$!
	for _ in $(seq 1 100); do
		port_open "$ROUTER_PORT" && break
		kill -0 "$router_pid" 2>/dev/null || { cat "$TMP/router/error.log" >&2 || true; die "the routing nginx exited"; }
		sleep 0.1
	done
	port_open "$ROUTER_PORT" || die "the routing nginx does not listen on 127.0.0.1:$ROUTER_PORT"
}

# ship_backlog TARGET END_LSN WHAT: resumes the paused worker and times it
# (bench_ship, STALL_SECONDS, SHIP_TIMEOUT) until changes_shipped reaches
# TARGET and confirmed_lsn END_LSN; sets SHIP_SECS and ACK_SECS (last
# acknowledgement).  On a stall or timeout, prints the error and the
# worker's stack (with gdb, if installed) and dies: "the worker did not ship
# WHAT".
# shellcheck disable=SC2034 # SHIP_SECS and ACK_SECS are the result
ship_backlog() {
	local out
	if ! out=$(psql_cmd -F ' ' -c "SELECT * FROM bench_ship($1, '$2', $STALL_SECONDS, $SHIP_TIMEOUT)" 2>"$TMP/ship.err"); then
		cat "$TMP/ship.err" >&2
		echo "$BENCH_NAME: the worker's stack now (if gdb is installed):" >&2
		gdb -p "$WORKER_PID" -batch -ex bt 2>/dev/null | grep '^#' | head -n 12 >&2 || true
		die "the worker did not ship $3"
	fi
	read -r SHIP_SECS ACK_SECS <<<"$out"
}

# --- reports --------------------------------------------------------------------------------

# load_avg: the 1, 5 and 15 minute load averages.
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# print_header TITLE [SERVER_NOTE]: a blank line, TITLE, and the machine,
# server (followed by SERVER_NOTE) and walship lines of a report.
print_header() {
	local cpu_model
	cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
	echo
	echo "$1"
	echo "  machine:   $(nproc) CPUs${cpu_model:+ ($cpu_model)}, $(uname -sr)"
	echo "  server:    PostgreSQL $(psql_cmd -c "SHOW server_version") ($BINDIR)${2:-}"
	echo "  walship:   $PKGLIBDIR/walship.so (sha256 $WALSHIP_BUILD)"
}

# print_load_line: the "load avg" line of a report, LOAD_START (taken with
# load_avg before the measurements) against now.
print_load_line() {
	echo "  load avg:  $LOAD_START at the start, $(load_avg) at the end (1, 5, 15 min; other work on the machine shows here)"
}

# print_worker_totals: the retries, rejected batches and last error of the
# worker since it started.
print_worker_totals() {
	local retries rejected error
	read -r retries rejected error <<<"$(psql_cmd -F ' ' -c "SELECT retries, rejected_batches, coalesce(last_error, '-') FROM walship.status")"
	echo "worker totals at the end: retries $retries, rejected batches $rejected, last error: $error"
}

# warn_if_rebuilt WHAT: a warning if walship.so changed since WALSHIP_BUILD
# was taken, in which case WHAT ("the timings") may mix two builds.
warn_if_rebuilt() {
	if [ "$(walship_build)" != "$WALSHIP_BUILD" ]; then
		echo
		echo "WARNING: walship.so was reinstalled during the run ($(walship_build));" \
			"$1 may mix two builds: run again."
	fi
}

# table_header SPEC TITLE [SPEC TITLE]...: the header row and the separator
# row of a markdown table.  SPEC is the column's printf width, prefixed "l"
# (left-aligned, plain separator), "r" (right-aligned, separator ending in
# ":") or "p" (right-aligned text in a column whose separator is plain).
table_header() {
	local head="|" sep="|" spec width dashes
	while [ $# -ge 2 ]; do
		spec=$1
		width=${spec#?}
		printf -v dashes '%*s' $((width + 2)) ''
		dashes=${dashes// /-}
		case $spec in
			l*) printf -v head '%s %-*s |' "$head" "$width" "$2" ;;
			*) printf -v head '%s %*s |' "$head" "$width" "$2" ;;
		esac
		case $spec in
			r*) sep+="${dashes%?}:|" ;;
			*) sep+="$dashes|" ;;
		esac
		shift 2
	done
	printf '%s\n%s\n' "$head" "$sep"
}
