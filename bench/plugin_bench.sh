#!/usr/bin/env bash
#
# plugin_bench.sh - compare logical decoding output plugins on the same WAL
#
# Starts a throwaway PostgreSQL cluster in a temporary directory, creates an
# "orders" table of 11 columns of mixed types and a publication for it, makes
# one logical replication slot per output plugin, runs a mixed
# INSERT/UPDATE/DELETE workload, and then decodes exactly that WAL range with
# every plugin through pg_logical_slot_peek_(binary_)changes().  Each decode
# runs RUNS times (default 5); the median wall time is reported.
#
# Plugins: walship, pgoutput (text values), pgoutput (binary 'true'),
# wal2json (format-version 2), decoderbufs, test_decoding.
#
# Usage (from the repository root, as root or as any user):
#
#     bash bench/plugin_bench.sh
#
# As root, the script re-runs itself as the "postgres" user (initdb refuses
# to run as root).  It installs nothing; it needs PostgreSQL 15 with
# wal2json, decoderbufs and an installed walship:
#
#     apt-get install postgresql-15 postgresql-15-wal2json postgresql-15-decoderbufs
#     make && make install
#
# Environment (all optional):
#     CHANGES=500000    row changes in the workload
#     TXN_SIZE=1000     row changes per transaction
#     RUNS=5            decodes per plugin; the median time is reported
#     PREFILL=200000    rows loaded before the slots exist (not decoded)
#     BENCH_PORT=5499   port of the throwaway cluster (unix socket only)
#     BENCH_USER=postgres  user the cluster runs as when started as root
#     PG_CONFIG=pg_config  selects the PostgreSQL installation
#     KEEP_TMP=1        keep the temporary directory (data, server log)
#
set -euo pipefail

CHANGES=${CHANGES:-500000}
TXN_SIZE=${TXN_SIZE:-1000}
RUNS=${RUNS:-5}
PREFILL=${PREFILL:-200000}
BENCH_PORT=${BENCH_PORT:-5499}
BENCH_USER=${BENCH_USER:-postgres}
PG_CONFIG=${PG_CONFIG:-pg_config}
KEEP_TMP=${KEEP_TMP:-0}

die() { echo "plugin_bench: error: $*" >&2; exit 1; }
log() { echo "plugin_bench: $*" >&2; }

# ---------------------------------------------------------------------------
# Run as an unprivileged user.  setpriv replaces this process (unlike su or
# runuser, which would stay in between), so signals reach the cleanup below.
# If that user cannot read this file, the script's text is passed instead.
# ---------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
	[ -z "${PLUGIN_BENCH_REEXEC:-}" ] || die "still root after switching user"
	id "$BENCH_USER" >/dev/null 2>&1 ||
		die "user '$BENCH_USER' does not exist; set BENCH_USER to an unprivileged user"
	self=$(readlink -f "${BASH_SOURCE[0]}")
	as_user=(setpriv --reuid="$BENCH_USER" --regid="$(id -g "$BENCH_USER")" --init-groups
		env PLUGIN_BENCH_REEXEC=1 USER="$BENCH_USER" LOGNAME="$BENCH_USER"
		HOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)")
	cd /
	if "${as_user[@]}" test -r "$self"; then
		exec "${as_user[@]}" bash "$self" "$@"
	else
		exec "${as_user[@]}" bash -c "$(cat "$self")" plugin_bench.sh "$@"
	fi
fi

# ---------------------------------------------------------------------------
# Check the installation.  Nothing is installed from here.
# ---------------------------------------------------------------------------
command -v "$PG_CONFIG" >/dev/null 2>&1 ||
	die "$PG_CONFIG not found; install postgresql-15 (apt-get install postgresql-15 postgresql-server-dev-15)"
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
for prog in initdb pg_ctl psql; do
	[ -x "$BINDIR/$prog" ] || die "$BINDIR/$prog not found; install postgresql-15"
done

missing=()
[ -f "$PKGLIBDIR/walship.so" ] || missing+=("walship: run 'make && make install' in the walship source tree")
[ -f "$PKGLIBDIR/wal2json.so" ] || missing+=("wal2json: apt-get install postgresql-15-wal2json")
[ -f "$PKGLIBDIR/decoderbufs.so" ] || missing+=("decoderbufs: apt-get install postgresql-15-decoderbufs")
[ -f "$PKGLIBDIR/test_decoding.so" ] || missing+=("test_decoding: apt-get install postgresql-15 (contrib)")
[ -f "$PKGLIBDIR/pgoutput.so" ] || missing+=("pgoutput: apt-get install postgresql-15")
if [ ${#missing[@]} -gt 0 ]; then
	echo "plugin_bench: missing output plugins in $PKGLIBDIR:" >&2
	printf '  - %s\n' "${missing[@]}" >&2
	exit 1
fi

# Which walship build is measured; checked again at the end, since a
# reinstall during the run would mix two builds in the timings.
walship_build() {
	echo "$(sha256sum "$PKGLIBDIR/walship.so" | cut -c1-12), installed $(date -u -r "$PKGLIBDIR/walship.so" '+%Y-%m-%d %H:%M:%S UTC')"
}
WALSHIP_BUILD=$(walship_build)

for n in "$CHANGES" "$TXN_SIZE" "$RUNS" "$PREFILL" "$BENCH_PORT"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "CHANGES, TXN_SIZE, RUNS, PREFILL and BENCH_PORT must be positive integers"
done

# ---------------------------------------------------------------------------
# Throwaway cluster: data directory and unix socket in a temporary directory,
# no TCP listener, removed on exit.
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/walship-plugin-bench.XXXXXX")
PGDATA_DIR="$TMP/data"
SERVER_LOG="$TMP/server.log"
server_started=0

cleanup() {
	local rc=$?
	if [ "$server_started" -eq 1 ]; then
		"$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$SERVER_LOG" ]; then
		echo "plugin_bench: last lines of the server log:" >&2
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

log "initdb in $TMP"
"$BINDIR/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
	>"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }

cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# --- plugin_bench.sh ---
listen_addresses = ''
port = $BENCH_PORT
unix_socket_directories = '$TMP'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_buffers = 256MB
# The peek functions collect their result in a tuplestore that spills to
# disk beyond work_mem; keep it in memory so the plugins are what is timed.
work_mem = 1GB
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

# PostgreSQL 15.19+ loads only the output plugins listed here; older servers
# do not know the setting and would refuse to start with it.
server_settings=$("$BINDIR/postgres" --describe-config 2>/dev/null | cut -f1 || true)
if grep -qx output_plugin_libraries <<<"$server_settings"; then
	echo "output_plugin_libraries = 'pgoutput, test_decoding, walship, wal2json, decoderbufs'" \
		>>"$PGDATA_DIR/postgresql.conf"
fi

"$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$SERVER_LOG" -w -t 60 start >/dev/null ||
	die "the server did not start"
server_started=1

# client_min_messages: decoderbufs reports its startup at INFO level.
psql_cmd() {
	PGOPTIONS="-c client_min_messages=warning" \
		"$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h "$TMP" -p "$BENCH_PORT" -U postgres -d postgres "$@"
}

# ---------------------------------------------------------------------------
# Schema, workload procedure and timing helper.  All created before the slots,
# so the decoded range holds only the workload.
# ---------------------------------------------------------------------------
log "creating the table and prefilling $PREFILL rows"
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

CREATE PUBLICATION bench_pub FOR TABLE orders;
-- Publishes nothing: pgoutput over it measures the decoding floor.
CREATE PUBLICATION bench_empty_pub;

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
psql_cmd -c "VACUUM ANALYZE orders" -c "CHECKPOINT"

# ---------------------------------------------------------------------------
# One slot per plugin, created before the workload.  pgoutput gets two slots
# (text and binary values) only so that each decode has its own slot.
# ---------------------------------------------------------------------------
# label | slot | plugin | peek function | options
PLUGINS=(
	"walship|bench_walship|walship|pg_logical_slot_peek_binary_changes|'publication_names', 'bench_pub'"
	"pgoutput (text)|bench_pgoutput_text|pgoutput|pg_logical_slot_peek_binary_changes|'proto_version', '1', 'publication_names', 'bench_pub'"
	"pgoutput (binary)|bench_pgoutput_bin|pgoutput|pg_logical_slot_peek_binary_changes|'proto_version', '1', 'publication_names', 'bench_pub', 'binary', 'true'"
	"wal2json (v2)|bench_wal2json|wal2json|pg_logical_slot_peek_changes|'format-version', '2'"
	"decoderbufs|bench_decoderbufs|decoderbufs|pg_logical_slot_peek_binary_changes|"
	"test_decoding|bench_test_decoding|test_decoding|pg_logical_slot_peek_changes|'skip-empty-xacts', '1'"
)

# Runs a psql command, retrying a few times: the walship library may be
# reinstalled while the benchmark runs, which can fail a load momentarily.
psql_retry() {
	local attempt out
	for attempt in 1 2 3; do
		if out=$(psql_cmd "$@" 2>"$TMP/psql.err"); then
			printf '%s\n' "$out"
			return 0
		fi
		log "attempt $attempt failed: $(cat "$TMP/psql.err")"
		sleep 2
	done
	return 1
}

log "creating ${#PLUGINS[@]} slots"
for entry in "${PLUGINS[@]}"; do
	IFS='|' read -r label slot plugin fn opts <<<"$entry"
	psql_retry -c "SELECT pg_create_logical_replication_slot('$slot', '$plugin')" >/dev/null ||
		die "could not create a slot for $label"
done

# ---------------------------------------------------------------------------
# The workload.
# ---------------------------------------------------------------------------
START_LSN=$(psql_cmd -c "SELECT pg_current_wal_lsn()")
log "workload: $CHANGES row changes in transactions of $TXN_SIZE"
wl_t0=$(date +%s.%N)
ROW_CHANGES=$(psql_cmd -c "SELECT setseed(0.17)" -c "CALL orders_workload($CHANGES, $TXN_SIZE)" | tail -n 1)
wl_t1=$(date +%s.%N)
END_LSN=$(psql_cmd -c "SELECT pg_current_wal_lsn()")
[ "$(psql_cmd -c "SELECT pg_current_wal_flush_lsn() >= '$END_LSN'")" = t ] ||
	die "WAL up to $END_LSN is not flushed; decoding would miss the end of the workload"
WAL_BYTES=$(psql_cmd -c "SELECT pg_wal_lsn_diff('$END_LSN', '$START_LSN')::bigint")
N_TXNS=$(( (CHANGES + TXN_SIZE - 1) / TXN_SIZE ))
psql_cmd -c "CHECKPOINT" >/dev/null
log "workload done in $(awk -v a="$wl_t0" -v b="$wl_t1" 'BEGIN { printf "%.1f", b - a }') s:" \
	"$ROW_CHANGES row changes, $WAL_BYTES bytes of WAL ($START_LSN .. $END_LSN)"
[ "$ROW_CHANGES" -gt 0 ] || die "the workload made no row changes"

# Cross-check the change count against test_decoding, which prints one line
# per row change.
DECODED_CHANGES=$(psql_retry -c "SELECT count(*) FROM pg_logical_slot_peek_changes('bench_test_decoding', '$END_LSN', NULL) WHERE data LIKE 'table public.orders: %'")
[ "$DECODED_CHANGES" = "$ROW_CHANGES" ] ||
	die "test_decoding decodes $DECODED_CHANGES row changes, the workload reports $ROW_CHANGES"

# ---------------------------------------------------------------------------
# Decode the same WAL range with every plugin, RUNS times each.  The runs go
# round robin over the plugins so that a moment of noise on the machine does
# not fall on one plugin only.
#
# Also timed: the floor under every plugin, reading the WAL and reassembling
# the transactions, as pgoutput over a publication of no tables (no output).
# ---------------------------------------------------------------------------
FLOOR_QUERY="SELECT count(*), 0 FROM pg_logical_slot_peek_binary_changes('bench_pgoutput_text', '$END_LSN', NULL, 'proto_version', '1', 'publication_names', 'bench_empty_pub')"

median() {
	printf '%s\n' "$@" | sort -g | awk '{ t[NR] = $1 }
		END { if (NR % 2) print t[(NR + 1) / 2]; else print (t[NR / 2] + t[NR / 2 + 1]) / 2 }'
}

# Prints "rows bytes seconds" of one timed query.
timed_decode() {
	local label=$1 query=$2 out r b s
	out=$(psql_retry -F ' ' -c "SELECT * FROM bench_decode(\$q\$$query\$q\$)") ||
		die "decoding with $label failed"
	read -r r b s <<<"$out"
	[[ "$r" =~ ^[0-9]+$ && "$b" =~ ^[0-9]+$ && "$s" =~ ^[0-9.e+-]+$ ]] ||
		die "unexpected result from decoding with $label: $out"
	echo "$r $b $s"
}

declare -A ROWS BYTES TIMES
FLOOR_TIMES=()
for run in $(seq 1 "$RUNS"); do
	for entry in "${PLUGINS[@]}"; do
		IFS='|' read -r label slot plugin fn opts <<<"$entry"
		query="SELECT count(*), coalesce(sum(octet_length(data)), 0) FROM $fn('$slot', '$END_LSN', NULL${opts:+, $opts})"
		out=$(timed_decode "$label" "$query") || exit 1
		read -r r b s <<<"$out"
		if [ "$r" -eq 0 ] || [ "$b" -eq 0 ]; then
			die "$label returned no data for the workload ($query)"
		fi
		if [ -n "${ROWS[$label]:-}" ] &&
			{ [ "$r" != "${ROWS[$label]}" ] || [ "$b" != "${BYTES[$label]}" ]; }; then
			die "$label returned different output on run $run ($r rows, $b bytes; before ${ROWS[$label]} rows, ${BYTES[$label]} bytes)"
		fi
		ROWS[$label]=$r
		BYTES[$label]=$b
		TIMES[$label]="${TIMES[$label]:-} $s"
		log "run $run: $label: $r rows, $b bytes, $s s"
	done
	out=$(timed_decode "the empty publication" "$FLOOR_QUERY") || exit 1
	read -r r b s <<<"$out"
	[ "$r" -eq 0 ] || die "pgoutput over an empty publication returned $r rows"
	FLOOR_TIMES+=("$s")
	log "run $run: floor: $s s"
done

RESULTS=()
for entry in "${PLUGINS[@]}"; do
	IFS='|' read -r label _ <<<"$entry"
	# shellcheck disable=SC2086 # the times are a space-separated list
	RESULTS+=("$label|${ROWS[$label]}|${BYTES[$label]}|$(median ${TIMES[$label]})")
done
FLOOR=$(median "${FLOOR_TIMES[@]}")

# Where the bytes go: walship and pgoutput frame every output row with a
# one-byte record kind (B, R, I, U, D, C), so the rows group by it.  Untimed.
BREAKDOWN_PLUGINS=("walship" "pgoutput (text)" "pgoutput (binary)")
declare -A KIND_COUNT KIND_BYTES
for entry in "${PLUGINS[@]}"; do
	IFS='|' read -r label slot plugin fn opts <<<"$entry"
	case " ${BREAKDOWN_PLUGINS[*]} " in *" $label "*) ;; *) continue ;; esac
	out=$(psql_retry -F ' ' -c "SELECT chr(get_byte(data, 0)), count(*), sum(octet_length(data)) FROM $fn('$slot', '$END_LSN', NULL${opts:+, $opts}) GROUP BY 1 ORDER BY 1") ||
		die "decoding with $label failed"
	while read -r kind n b; do
		KIND_COUNT[$kind]=$n
		KIND_BYTES[$label,$kind]=$b
	done <<<"$out"
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
SERVER_VERSION=$(psql_cmd -c "SHOW server_version")
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)

echo
echo "walship plugin decode benchmark"
echo "  machine:   $(nproc) CPUs${CPU_MODEL:+ ($CPU_MODEL)}, $(uname -sr)"
echo "  server:    PostgreSQL $SERVER_VERSION ($BINDIR)"
echo "  walship:   $PKGLIBDIR/walship.so (sha256 $WALSHIP_BUILD)"
echo "  workload:  $ROW_CHANGES row changes (50% INSERT, 30% UPDATE, 20% DELETE)" \
	"in $N_TXNS transactions of $TXN_SIZE, table of 11 columns; $WAL_BYTES bytes of WAL"
echo "  decode:    peek of the same WAL range per plugin, median of $RUNS runs;" \
	"bytes/change and changes/s over the $ROW_CHANGES row changes"
echo
printf '| %-18s | %11s | %13s | %12s | %8s | %10s |\n' \
	"plugin" "output rows" "total bytes" "bytes/change" "seconds" "changes/s"
printf '|%s|%s|%s|%s|%s|%s|\n' \
	"--------------------" "------------:" "--------------:" "-------------:" "---------:" "-----------:"
for res in "${RESULTS[@]}"; do
	IFS='|' read -r label rows bytes secs <<<"$res"
	awk -v l="$label" -v r="$rows" -v b="$bytes" -v s="$secs" -v c="$ROW_CHANGES" 'BEGIN {
		printf "| %-18s | %11d | %13d | %12.1f | %8.3f | %10.0f |\n", l, r, b, b / c, s, c / s
	}'
done

echo
echo "mean bytes per output row, by record kind:"
echo
printf '| %-15s | %7s |' "kind" "rows"
for label in "${BREAKDOWN_PLUGINS[@]}"; do printf ' %17s |' "$label"; done
echo
printf '|-----------------|--------:|'
for _ in "${BREAKDOWN_PLUGINS[@]}"; do printf -- '------------------:|'; done
echo
for kind in B R I U D C; do
	[ -n "${KIND_COUNT[$kind]:-}" ] || continue
	case $kind in
		B) name="BEGIN" ;; R) name="RELATION" ;; I) name="INSERT" ;;
		U) name="UPDATE" ;; D) name="DELETE" ;; C) name="COMMIT" ;;
	esac
	printf '| %-15s | %7d |' "$name ($kind)" "${KIND_COUNT[$kind]}"
	for label in "${BREAKDOWN_PLUGINS[@]}"; do
		awk -v b="${KIND_BYTES[$label,$kind]:-0}" -v n="${KIND_COUNT[$kind]}" \
			'BEGIN { printf " %17.1f |", b / n }'
	done
	echo
done

echo
awk -v f="$FLOOR" 'BEGIN {
	printf "floor (WAL read and transaction reassembly, pgoutput with an empty publication): %.3f s\n", f
}'

# walship against pgoutput in binary mode, the design target.
ws=""
pb=""
for res in "${RESULTS[@]}"; do
	case "$res" in
		"walship|"*) ws=$res ;;
		"pgoutput (binary)|"*) pb=$res ;;
	esac
done
IFS='|' read -r _ _ ws_bytes ws_secs <<<"$ws"
IFS='|' read -r _ _ pb_bytes pb_secs <<<"$pb"
awk -v wb="$ws_bytes" -v ws="$ws_secs" -v pb="$pb_bytes" -v ps="$pb_secs" 'BEGIN {
	printf "walship vs pgoutput (binary): %.1f%% of the bytes (%s), %.2fx the changes/s (%s)\n",
		100 * wb / pb, (wb < pb ? "fewer bytes: target met" : "more bytes: target missed"),
		ps / ws, (ws < ps ? "faster: target met" : "slower: target missed")
}'

if [ "$(walship_build)" != "$WALSHIP_BUILD" ]; then
	echo
	echo "WARNING: walship.so was reinstalled during the run ($(walship_build));" \
		"the walship timings may mix two builds: run again."
fi
