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

BENCH_NAME=plugin_bench
# shellcheck source=bench/lib.sh
declare -F drop_root >/dev/null || . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

# As root, re-run as BENCH_USER: initdb refuses to run as root.
drop_root -- "$@"

# ---------------------------------------------------------------------------
# Check the installation.  Nothing is installed from here.
# ---------------------------------------------------------------------------
require_postgres "install postgresql-15" initdb pg_ctl psql

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

WALSHIP_BUILD=$(walship_build)
require_positive_ints CHANGES TXN_SIZE RUNS PREFILL BENCH_PORT

# ---------------------------------------------------------------------------
# Throwaway cluster: data directory and unix socket in a temporary directory,
# no TCP listener, removed on exit.
# ---------------------------------------------------------------------------
make_workdir
start_cluster 'pgoutput, test_decoding, walship, wal2json, decoderbufs' <<'EOF'
# The peek functions collect their result in a tuplestore that spills to
# disk beyond work_mem; keep it in memory so the plugins are what is timed.
work_mem = 1GB
EOF

# ---------------------------------------------------------------------------
# Schema, workload procedure and timing helper.  All created before the slots,
# so the decoded range holds only the workload.
# ---------------------------------------------------------------------------
log "creating the table and prefilling $PREFILL rows"
{
	sql_orders_table
	cat <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE orders;
-- Publishes nothing: pgoutput over it measures the decoding floor.
CREATE PUBLICATION bench_empty_pub;
SQL
	sql_orders_workload
	sql_bench_decode
} | psql_cmd
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
log "workload: $CHANGES row changes in transactions of $TXN_SIZE"
run_orders_workload "$CHANGES, $TXN_SIZE"
ROW_CHANGES=$WL_CHANGES
END_LSN=$WL_END_LSN
WAL_BYTES=$WL_WAL_BYTES
N_TXNS=$(( (CHANGES + TXN_SIZE - 1) / TXN_SIZE ))
log "workload done in $WL_SECONDS s:" \
	"$ROW_CHANGES row changes, $WAL_BYTES bytes of WAL ($WL_START_LSN .. $END_LSN)"

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
print_header "walship plugin decode benchmark"
echo "  workload:  $ROW_CHANGES row changes (50% INSERT, 30% UPDATE, 20% DELETE)" \
	"in $N_TXNS transactions of $TXN_SIZE, table of 11 columns; $WAL_BYTES bytes of WAL"
echo "  decode:    peek of the same WAL range per plugin, median of $RUNS runs;" \
	"bytes/change and changes/s over the $ROW_CHANGES row changes"
echo
table_header l18 "plugin" r11 "output rows" r13 "total bytes" r12 "bytes/change" r8 "seconds" r10 "changes/s"
for res in "${RESULTS[@]}"; do
	IFS='|' read -r label rows bytes secs <<<"$res"
	awk -v l="$label" -v r="$rows" -v b="$bytes" -v s="$secs" -v c="$ROW_CHANGES" 'BEGIN {
		printf "| %-18s | %11d | %13d | %12.1f | %8.3f | %10.0f |\n", l, r, b, b / c, s, c / s
	}'
done

echo
echo "mean bytes per output row, by record kind:"
echo
columns=(l15 "kind" r7 "rows")
for label in "${BREAKDOWN_PLUGINS[@]}"; do columns+=(r17 "$label"); done
table_header "${columns[@]}"
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

warn_if_rebuilt "the walship timings"
