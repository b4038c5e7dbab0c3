#!/usr/bin/env bash
#
# demo/run.sh
#	  walship end to end in one command: an `orders` table in PostgreSQL,
#	  shipped by the walship worker into a local ClickHouse, and the same
#	  "revenue by country" query answered by both.
#
# Usage:
#	  sudo bash demo/run.sh [--keep] [--csv FILE] [--seconds N]
#
#	  --keep       leave PostgreSQL and ClickHouse running at the end and
#	               print how to connect to them and how to stop them
#	  --csv FILE   write walship.status samples taken every 0.5 s (time,
#	               lag_bytes, freshness_seconds, changes_shipped) to FILE;
#	               bench/plot_lag.sh turns it into a PNG
#	  --seconds N  length of the workload (default 20)
#
# On a fresh Debian 12 machine, as root (or through sudo), it:
#	  1. installs the Debian packages in PACKAGES that are missing;
#	  2. builds walship from this checkout (in a copy: the checkout is not
#	     written to) and installs it;
#	  3. starts, as the unprivileged user "postgres", a throwaway PostgreSQL
#	     15 cluster and a ClickHouse server, both in one temporary directory
#	     and listening on 127.0.0.1 only, on free ports;
#	  4. creates the table with 100,000 orders that exist before walship
#	     does, the publication and the ClickHouse table; runs a mixed
#	     workload (inserts, updates, key changes, deletes) in small
#	     transactions with pgbench, backfills the existing orders meanwhile
#	     (walship.backfill), and shows walship.status as it ships;
#	  5. waits until everything is acknowledged, prints PostgreSQL's and
#	     ClickHouse's revenue by country side by side, and exits 0 only if
#	     they are equal.
#	  Both servers are stopped and the temporary directory is removed on
#	  exit, unless --keep is given.
#

set -u
set -o pipefail

PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	libcurl4-openssl-dev
	libzstd-dev
	zlib1g-dev
	make
	gcc
	perl
	clickhouse-server
	clickhouse-client
)

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
RUN_AS=postgres
COUNTRIES="AU BR DE FR GB IN JP US"

keep=0
csv=
seconds=20
while [ $# -gt 0 ]; do
	case $1 in
		--keep) keep=1 ;;
		--csv)
			[ $# -ge 2 ] || { echo "run.sh: --csv needs a file name" >&2; exit 2; }
			csv=$2; shift ;;
		--csv=*) csv=${1#--csv=} ;;
		--seconds)
			[ $# -ge 2 ] || { echo "run.sh: --seconds needs a number" >&2; exit 2; }
			seconds=$2; shift ;;
		--seconds=*) seconds=${1#--seconds=} ;;
		-h|--help) sed -n '3,18p' "${BASH_SOURCE[0]}" | sed 's/^#\t\{0,1\}//'; exit 0 ;;
		*) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
case $seconds in ''|*[!0-9]*|0) echo "run.sh: --seconds wants a positive whole number" >&2; exit 2 ;; esac
if [ -n "$csv" ]; then
	case $csv in /*) ;; *) csv=$PWD/$csv ;; esac
fi

if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo bash "${BASH_SOURCE[0]}" --seconds "$seconds" \
			${csv:+--csv "$csv"} $([ "$keep" = 1 ] && echo --keep)
	fi
	echo "run.sh: run it as root, or install sudo" >&2
	exit 1
fi

export LANG=C.UTF-8 LC_ALL=C.UTF-8
unset LANGUAGE PGHOST PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

tmp=
pg_started=0
ch_started=0
workload_pid=
finished=0

as_user() { runuser -u "$RUN_AS" -- env HOME="$tmp" "$@"; }

stop_all()
{
	[ -n "$workload_pid" ] && kill "$workload_pid" 2>/dev/null && wait "$workload_pid" 2>/dev/null
	workload_pid=
	if [ "$pg_started" = 1 ]; then
		as_user "$PG_BIN/pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null 2>&1
		pg_started=0
	fi
	if [ "$ch_started" = 1 ] && [ -f "$tmp/clickhouse/keeper.pid" ]; then
		local kpid
		kpid=$(cat "$tmp/clickhouse/keeper.pid")
		kill "$kpid" 2>/dev/null
		for _ in $(seq 1 300); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
		ch_started=0
	fi
}

print_keep_help()
{
	cat <<EOF

Left running (--keep), in $tmp:
  PostgreSQL:  $PG_BIN/psql -h 127.0.0.1 -p $pg_port -U postgres shop
               SELECT * FROM walship.status;
  ClickHouse:  clickhouse-client --host 127.0.0.1 --port $ch_tcp
               (or HTTP: http://127.0.0.1:$ch_http/?query=SELECT%201)
  Logs:        $tmp/pg.log, $tmp/clickhouse/log/
  Stop both and remove everything:
               sudo bash $tmp/stop.sh
EOF
}

write_stop_script()
{
	cat >"$tmp/stop.sh" <<EOF
#!/usr/bin/env bash
# stops the walship demo's servers and removes $tmp
runuser -u $RUN_AS -- $PG_BIN/pg_ctl -D '$tmp/pg' -m fast -w stop >/dev/null
[ -f '$tmp/clickhouse/keeper.pid' ] && kpid=\$(cat '$tmp/clickhouse/keeper.pid') && kill "\$kpid" 2>/dev/null &&
	while kill -0 "\$kpid" 2>/dev/null; do sleep 0.1; done
rm -rf '$tmp'
echo "walship demo stopped; $tmp removed"
EOF
}

on_exit()
{
	local rc=$?
	trap - EXIT INT TERM
	if [ -z "$tmp" ] || [ ! -d "$tmp" ]; then
		exit "$rc"
	fi
	if [ "$keep" = 1 ] && [ "$pg_started" = 1 ]; then
		print_keep_help
		exit "$rc"
	fi
	if [ "$finished" != 1 ] && [ "$rc" -ne 0 ]; then
		show_logs
	fi
	stop_all
	rm -rf "$tmp"
	exit "$rc"
}
trap on_exit EXIT
trap 'echo; echo "interrupted: stopping the servers"; finished=1; exit 130' INT TERM

show_logs()
{
	[ -f "$tmp/pg.log" ] && { say "--- PostgreSQL log (last 30 lines) ---"; tail -n 30 "$tmp/pg.log"; }
	[ -s "$tmp/clickhouse/log/clickhouse-server.err.log" ] &&
		{ say "--- ClickHouse error log (last 15 lines) ---"; tail -n 15 "$tmp/clickhouse/log/clickhouse-server.err.log"; }
	[ -f "$tmp/clickhouse.out" ] && [ -s "$tmp/clickhouse.out" ] &&
		{ say "--- demo/clickhouse.pl ---"; cat "$tmp/clickhouse.out"; }
}

# ---------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)
	[ "$status" = installed ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	step "Installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null &&
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/walship-demo-apt.log 2>&1 ||
		{ tail -n 20 /tmp/walship-demo-apt.log; die "could not install ${missing[*]} (log: /tmp/walship-demo-apt.log)"; }
fi
id -u "$RUN_AS" >/dev/null 2>&1 || die "user \"$RUN_AS\" does not exist (it comes with postgresql-15)"

# ---------------------------------------------------------------------------
# 2. Build and install walship
# ---------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/walship-demo.XXXXXX") || die "mktemp failed"
chmod 755 "$tmp"
step "Building and installing walship"
mkdir "$tmp/src"
tar -C "$SRC_DIR" --exclude=./.git --exclude=./bench/out --exclude=./tmp_check -cf - . |
	tar -C "$tmp/src" -xf - || die "cannot copy $SRC_DIR"
(
	cd "$tmp/src" &&
	make --no-print-directory PG_CONFIG="$PG_BIN/pg_config" clean &&
	make --no-print-directory PG_CONFIG="$PG_BIN/pg_config" -j"$(nproc)" &&
	make --no-print-directory PG_CONFIG="$PG_BIN/pg_config" install
) >"$tmp/build.log" 2>&1 || { tail -n 30 "$tmp/build.log"; die "build failed (the log is above)"; }
say "installed $("$PG_BIN/pg_config" --pkglibdir)/walship.so"
chown -R "$RUN_AS" "$tmp"

free_port()
{
	perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
		LocalPort => 0, Listen => 1) or die $!; print $s->sockport, "\n"'
}

# ---------------------------------------------------------------------------
# 3. ClickHouse and PostgreSQL
# ---------------------------------------------------------------------------
step "Starting ClickHouse and PostgreSQL (in $tmp)"
mkdir "$tmp/clickhouse" && chown "$RUN_AS" "$tmp/clickhouse"
# clickhouse.pl runs in its own session: ^C here reaches only this script,
# whose exit trap then stops the server in order.
as_user setsid perl -I "$tmp/src/t" "$tmp/src/demo/clickhouse.pl" "$tmp/clickhouse" \
	</dev/null >"$tmp/clickhouse.out" 2>&1 &
ch_started=1
for _ in $(seq 1 1200); do
	[ -f "$tmp/clickhouse/ports" ] && break
	kill -0 $! 2>/dev/null || break
	sleep 0.1
done
[ -f "$tmp/clickhouse/ports" ] || die "ClickHouse did not start"
read -r ch_http ch_tcp <"$tmp/clickhouse/ports"
ch_url="http://127.0.0.1:$ch_http/"

# query in ClickHouse (over HTTP, with perl's HTTP::Tiny: no curl needed)
chq()
{
	perl -MHTTP::Tiny -e '
		my $r = HTTP::Tiny->new(timeout => 60)->post($ARGV[0], { content => $ARGV[1] });
		print $r->{content};
		exit($r->{success} ? 0 : 1);' "$ch_url" "$1"
}
say "ClickHouse $(chq 'SELECT version()')   http://127.0.0.1:$ch_http"

chq 'CREATE DATABASE shop' >/dev/null || die "ClickHouse: CREATE DATABASE failed"

pg_port=$(free_port)
as_user "$PG_BIN/initdb" -D "$tmp/pg" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
	--no-sync >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log"; die "initdb failed"; }
endpoint="${ch_url}?query=INSERT%20INTO%20shop.{table}%20FORMAT%20JSONEachRow"
cat >>"$tmp/pg/postgresql.conf" <<EOF

# ---- walship demo ----
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$tmp'
fsync = off
wal_level = logical
max_replication_slots = 4
max_wal_senders = 4
shared_preload_libraries = 'walship'
walship.database = 'shop'
walship.publication = 'shop'
walship.endpoint = '$endpoint'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.dialect = 'clickhouse_18'
walship.compression = 'gzip'
EOF
# PostgreSQL 15.19 and later only use output plugins listed here (older
# servers do not know the setting and would refuse to start)
if "$PG_BIN/postgres" --describe-config 2>/dev/null | grep -q '^output_plugin_libraries'; then
	echo "output_plugin_libraries = 'pgoutput, test_decoding, walship'" >>"$tmp/pg/postgresql.conf"
fi
# the database first (single-user mode), so the worker finds it at once
echo 'CREATE DATABASE shop' | as_user "$PG_BIN/postgres" --single -D "$tmp/pg" postgres >"$tmp/single.log" 2>&1 ||
	{ cat "$tmp/single.log"; die "CREATE DATABASE shop failed"; }
as_user "$PG_BIN/pg_ctl" -D "$tmp/pg" -l "$tmp/pg.log" -w -t 60 start >/dev/null ||
	{ tail -n 30 "$tmp/pg.log"; die "PostgreSQL did not start"; }
pg_started=1
write_stop_script

psql_shop() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d shop "$@"; }
pgv() { psql_shop -At -c "$1"; }

say "PostgreSQL $(pgv 'SHOW server_version')   127.0.0.1:$pg_port"

# ---------------------------------------------------------------------------
# 4. Table, publication, extension; the worker starts shipping
# ---------------------------------------------------------------------------
countries_sql="'{$(tr ' ' , <<<"$COUNTRIES")}'::text[]"
step "Creating the orders table, with 100,000 orders from before walship, and the publication"
cat <<SQL | tee "$tmp/setup.sql" | sed 's/^/  /'
CREATE TABLE orders (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    country    text NOT NULL,
    total      numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (country, total, created_at)
SELECT ($countries_sql)[1 + floor(random() * 8)::int], round((5 + random() * 495)::numeric, 2),
       now() - random() * interval '365 days'
  FROM generate_series(1, 100000);
CREATE PUBLICATION shop FOR TABLE orders;
CREATE EXTENSION walship;
SQL
psql_shop -f "$tmp/setup.sql" >/dev/null || die "setup failed"

# The ClickHouse table, as walship suggests it for orders (the flat shape:
# the row, then _op, _lsn, _seq, _version, _commit_ts, _deleted).
step "Creating the ClickHouse table: SELECT walship.clickhouse_ddl('orders', 'shop', 'clickhouse_18')"
ch_ddl=$(pgv "SELECT walship.clickhouse_ddl('orders', 'shop', 'clickhouse_18')") || die "walship.clickhouse_ddl failed"
grep -v '^--' <<<"$ch_ddl" | sed 's/^/  /'
chq "$ch_ddl" >/dev/null || die "ClickHouse: CREATE TABLE failed"

for _ in $(seq 1 300); do
	[ "$(pgv 'SELECT state FROM walship.status' 2>/dev/null)" = streaming ] && break
	sleep 0.1
done
state=$(pgv 'SELECT state FROM walship.status')
[ "$state" = streaming ] ||
	die "the walship worker is not streaming (state: $state; $(pgv 'SELECT last_error FROM walship.status'))"
say "walship worker pid $(pgv 'SELECT worker_pid FROM walship.status') is streaming to ClickHouse table shop.orders"

# ---------------------------------------------------------------------------
# 5. Workload
# ---------------------------------------------------------------------------
mkdir "$tmp/workload"
# a random existing order among the most recent 1000
pick="(SELECT id FROM orders WHERE id <= (SELECT max(id) FROM orders) - :k ORDER BY id DESC LIMIT 1)"
cat >"$tmp/workload/new_orders.sql" <<EOF
\set n random(1, 3)
INSERT INTO orders (country, total)
SELECT ($countries_sql)[1 + floor(random() * 8)::int], round((5 + random() * 495)::numeric, 2)
  FROM generate_series(1, :n);
EOF
cat >"$tmp/workload/change_total.sql" <<EOF
\set k random(0, 1000)
UPDATE orders SET total = round(total * (0.5 + random())::numeric, 2) WHERE id = $pick;
EOF
cat >"$tmp/workload/change_country.sql" <<EOF
\set k random(0, 1000)
UPDATE orders SET country = ($countries_sql)[1 + floor(random() * 8)::int] WHERE id = $pick;
EOF
cat >"$tmp/workload/change_key.sql" <<EOF
\set k random(0, 1000)
UPDATE orders SET id = nextval(pg_get_serial_sequence('orders', 'id')) WHERE id = $pick;
EOF
cat >"$tmp/workload/cancel.sql" <<EOF
\set k random(0, 1000)
DELETE FROM orders WHERE id = $pick;
EOF

step "Workload: ${seconds} s of small transactions (new orders, updates, key changes, deletes)"
as_user "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$pg_port" -U postgres -c 4 -R 100 -T "$seconds" \
	-f "$tmp/workload/new_orders.sql@10" -f "$tmp/workload/change_total.sql@4" \
	-f "$tmp/workload/change_country.sql@2" -f "$tmp/workload/change_key.sql@1" \
	-f "$tmp/workload/cancel.sql@2" shop >"$tmp/pgbench.log" 2>&1 &
workload_pid=$!

# The orders that existed before the slot are in no change: backfill them,
# while the workload changes some of them.
step "Backfill of the existing orders: SELECT walship.backfill('orders')"
say "  backfill $(pgv "SELECT walship.backfill('orders')") queued"

[ -n "$csv" ] && echo "time,lag_bytes,freshness_seconds,changes_shipped" >"$csv"
t0=$(date +%s.%N)
printf '  %6s  %-10s %12s %11s %16s\n' time state lag_bytes freshness changes_shipped
sample()
{
	local now row elapsed
	now=$(date +%s.%N)
	elapsed=$(awk -v a="$now" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
	row=$(pgv "SELECT state, lag_bytes, round(freshness_seconds::numeric, 2), changes_shipped FROM walship.status") || return 1
	IFS='|' read -r s_state s_lag s_fresh s_changes <<<"$row"
	[ -n "$csv" ] && echo "$elapsed,$s_lag,$s_fresh,$s_changes" >>"$csv"
	if [ "$1" = print ]; then
		printf '  %5ss  %-10s %12s %10ss %16s\n' "$elapsed" "$s_state" "$s_lag" "$s_fresh" "$s_changes"
	fi
}
n=0
while kill -0 "$workload_pid" 2>/dev/null; do
	if [ $((n % 8)) -eq 0 ]; then sample print; else sample quiet; fi
	n=$((n + 1))
	sleep 0.5
done
wait "$workload_pid"
workload_rc=$?
workload_pid=
[ "$workload_rc" -eq 0 ] || { cat "$tmp/pgbench.log"; die "the workload (pgbench) failed"; }

# ---------------------------------------------------------------------------
# 6. Wait until ClickHouse has everything
# ---------------------------------------------------------------------------
end_lsn=$(pgv 'SELECT pg_current_wal_lsn()')
caught_up=0
for _ in $(seq 1 240); do
	if [ "$(pgv "SELECT confirmed_lsn >= '$end_lsn' AND inflight = 0 FROM walship.status")" = t ] &&
		[ "$(pgv "SELECT bool_and(state = 'done') FROM walship.backfills")" = t ]; then
		caught_up=1
		break
	fi
	if [ $((n % 8)) -eq 0 ]; then sample print; else sample quiet; fi
	n=$((n + 1))
	sleep 0.5
done
sample print
for _ in 1 2 3; do sleep 0.5; sample quiet; done
if [ "$caught_up" != 1 ]; then
	pgv 'SELECT * FROM walship.status' | sed 's/^/  /'
	pgv 'SELECT id, state, chunks_done, rows_sent, error FROM walship.backfills' | sed 's/^/  walship.backfills: /'
	die "walship did not catch up within 2 minutes"
fi

tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$tmp/pgbench.log")
keychanges=$(awk '/^SQL script .*change_key/ { f = 1; next } f && /transactions/ { sub(/^ *- */, ""); print $1; exit }' "$tmp/pgbench.log")
counts=$(pgv "SELECT n_tup_ins || ' rows inserted, ' || n_tup_upd || ' updated, ' || n_tup_del || ' deleted'
                FROM pg_stat_user_tables WHERE relname = 'orders'")
say "  caught up: ${tx:-?} transactions (${keychanges:-?} of them changed an order's id), $counts"
say "  $(pgv "SELECT 'backfill ' || id || ': ' || state || ', ' || chunks_done || ' chunks, ' || rows_sent || ' rows sent (rows the workload changed meanwhile came with the stream)' FROM walship.backfills")"

# ---------------------------------------------------------------------------
# 7. The same question to both
# ---------------------------------------------------------------------------
query="SELECT country, sum(total) FROM orders GROUP BY country ORDER BY country"
ch_query="SELECT country, sum(total) FROM shop.orders FINAL WHERE NOT _deleted GROUP BY country ORDER BY country"
step "Revenue by country"
say "  PostgreSQL: $query"
say "  ClickHouse: $ch_query"
pg_rows=$(pgv "SELECT country, sum(total) FROM orders GROUP BY country ORDER BY country" | tr '|' '\t')
ch_rows=$(chq "$ch_query FORMAT TSV") || die "ClickHouse query failed: $ch_rows"
pg_n=$(pgv 'SELECT count(*) FROM orders')
ch_n=$(chq 'SELECT count() FROM shop.orders FINAL WHERE NOT _deleted FORMAT TSV')

finished=1
# join the two answers on country; amounts compared exactly as decimals
# (ClickHouse may print fewer fraction digits: 12.5 for 12.50)
join -t $'\t' -a 1 -a 2 -e '-' -o 0,1.2,2.2 <(sort <<<"$pg_rows") <(sort <<<"$ch_rows") |
	awk -F '\t' -v pg_n="$pg_n" -v ch_n="$ch_n" '
	function norm(x) { if (x ~ /\./) { sub(/0+$/, "", x); sub(/\.$/, "", x) } return x }
	BEGIN { printf "\n  %-10s %16s %16s\n", "country", "PostgreSQL", "ClickHouse"; bad = 0 }
	{
		mark = (norm($2) == norm($3)) ? "" : "   <-- differs"
		if (mark != "") bad++
		printf "  %-10s %16s %16s%s\n", $1, $2, $3, mark
		n++
	}
	END {
		mark = (pg_n == ch_n) ? "" : "   <-- differs"
		if (mark != "") bad++
		printf "  %-10s %16s %16s%s\n", "(orders)", pg_n, ch_n, mark
		exit(bad > 0)
	}' >"$tmp/compare.txt"
cmp_rc=$?
cat "$tmp/compare.txt"
echo
if [ "$cmp_rc" -eq 0 ] && [ -n "$pg_rows" ]; then
	say "MATCH: ClickHouse gives exactly PostgreSQL's answer ($(wc -l <<<"$pg_rows") countries, $pg_n orders)."
	rc=0
else
	say "MISMATCH: ClickHouse's answer differs from PostgreSQL's."
	pgv 'SELECT state, confirmed_lsn, lag_bytes, changes_shipped, retries, rejected_batches, last_http_status, last_error FROM walship.status' | sed 's/^/  walship.status: /'
	rc=1
fi
[ -n "$csv" ] && say "lag samples written to $csv (plot: bash bench/plot_lag.sh $csv)"

exit "$rc"
