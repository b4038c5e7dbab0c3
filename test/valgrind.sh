#!/usr/bin/env bash
#
# test/valgrind.sh
#	  Runs TAP tests with the PostgreSQL server under Valgrind memcheck and
#	  reports the memory errors found in walship's code.
#
# Usage (as root, like test/run-all.sh):
#	  bash test/valgrind.sh [t/NNN_name.pl ...]     (default: every t/*.pl)
#
# The TAP tests start `postgres` through pg_ctl from the bindir of the
# installation they test, so this script:
#	  1. makes a private copy of the PostgreSQL installation of $PG_CONFIG
#	     (Debian layout: <root>/usr/lib/postgresql/N, <root>/usr/share/
#	     postgresql/N, <root>/usr/include/postgresql; PostgreSQL finds its
#	     files relative to its binaries, so the copy works where it is);
#	  2. renames its bin/postgres to postgres.real and puts in its place a
#	     wrapper that execs valgrind (memcheck, --trace-children=yes,
#	     --error-exitcode=128, the suppressions, one log per process) on
#	     the real binary; initdb's bootstrap and single-user runs and
#	     version queries go to the real binary directly (walship is not
#	     loaded there, and they would take minutes under Valgrind);
#	  3. runs test/run-all.sh against that copy (which builds walship, installs
#	     it into the copy and runs the TAP files) with generous timeouts
#	     (PG_TEST_TIMEOUT_DEFAULT, default 900 s);
#	  4. reads the Valgrind logs: prints every error whose stack passes
#	     through walship (walship.so, or a file of src/), and counts the
#	     others.
#
# Exit status: 1 if Valgrind reported an error in walship's code, else 0.
# Test failures are reported by run-all.sh's output (timing-sensitive
# assertions may fail under Valgrind's slowdown) but do not change the
# exit status: this script is about memory errors.
#
# The server is a release build without USE_VALGRIND, so memory inside
# PostgreSQL's memory contexts is not tracked chunk by chunk: a use of a
# pfree'd chunk that the context still holds is invisible; reads of memory
# that went back to malloc (large chunks, deleted contexts), uninitialised
# values, and crashes are seen.
#
# Environment:
#	  PG_CONFIG                pg_config of the installation to copy
#	                           (default /usr/lib/postgresql/15/bin/pg_config)
#	  PG_TEST_TIMEOUT_DEFAULT  TAP timeout in seconds (default 900)
#	  WALSHIP_VALGRIND_DIR     where the copy and the logs go (default: a new
#	                           directory in $TMPDIR, kept, printed at the end)
#	  VALGRIND_EXTRA           more valgrind options, e.g. --track-origins=yes
#	                           or --gen-suppressions=all
#	  WALSHIP_VALGRIND_EXITCODE  --error-exitcode (default 128: a process with
#	                           an error exits with 128, so the postmaster
#	                           restarts everything and the test notices;
#	                           0 lets the tests run on past errors)
#
# Suppressions: test/valgrind.supp (PostgreSQL's own, see its header), and
# test/valgrind-debian.supp: the same false positives as they show in a
# distribution's stripped server binary, whose static functions have no
# names (the frames PostgreSQL's file names do not match there).
#

set -u
set -o pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
TEST_USER=${WALSHIP_TEST_USER:-postgres}
export PG_TEST_TIMEOUT_DEFAULT=${PG_TEST_TIMEOUT_DEFAULT:-900}

die() { echo "valgrind.sh: $*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "run as root (the tests run as $TEST_USER, as in test/run-all.sh)"
if ! command -v valgrind >/dev/null; then
	echo "valgrind.sh: installing valgrind"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind ||
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind; } ||
		die "could not install valgrind"
fi
[ -x "$PG_CONFIG" ] || die "no pg_config at $PG_CONFIG"

# -------------------------------------------------------------------------
# 1. A private copy of the installation
# -------------------------------------------------------------------------
bindir=$("$PG_CONFIG" --bindir)
sharedir=$("$PG_CONFIG" --sharedir)
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
case "$bindir" in
	*/usr/lib/postgresql/"$major"/bin) root=${bindir%/usr/lib/postgresql/"$major"/bin} ;;
	*) die "$bindir is not a Debian-style installation (<root>/usr/lib/postgresql/$major/bin)" ;;
esac
[ "$sharedir" = "$root/usr/share/postgresql/$major" ] ||
	die "unexpected sharedir $sharedir"

work=${WALSHIP_VALGRIND_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/walship-valgrind.XXXXXX")}
mkdir -p "$work"
chmod 755 "$work"
pg="$work/pg"
logs="$work/valgrind-logs"
rm -rf "$pg" "$logs"
mkdir -p "$pg/usr/lib/postgresql" "$pg/usr/share/postgresql" "$pg/usr/include" "$logs"
cp -a "$root/usr/lib/postgresql/$major" "$pg/usr/lib/postgresql/" || die "copy failed"
cp -a "$root/usr/share/postgresql/$major" "$pg/usr/share/postgresql/" || die "copy failed"
cp -a "$root/usr/include/postgresql" "$pg/usr/include/" || die "copy failed"
cp "$SRC_DIR/test/valgrind.supp" "$SRC_DIR/test/valgrind-debian.supp" "$work/"
chown "$TEST_USER" "$logs"
chmod 1777 "$logs"

# -------------------------------------------------------------------------
# 2. bin/postgres runs under Valgrind
# -------------------------------------------------------------------------
vbin="$pg/usr/lib/postgresql/$major/bin"
exitcode=${WALSHIP_VALGRIND_EXITCODE:-128}
mv "$vbin/postgres" "$vbin/postgres.real"
cat >"$vbin/postgres" <<EOF
#!/bin/sh
# Written by walship's test/valgrind.sh: the server under Valgrind memcheck.
real="\$(dirname "\$0")/postgres.real"
for arg in "\$@"; do
	case "\$arg" in
		--boot|--single|-V|--version|--describe-config|-C)
			exec "\$real" "\$@" ;;
	esac
done
exec valgrind --quiet --tool=memcheck --trace-children=yes \\
	--error-exitcode=$exitcode --leak-check=no --num-callers=40 \\
	--read-var-info=yes --error-limit=no \\
	--suppressions="$work/valgrind.supp" \\
	--suppressions="$work/valgrind-debian.supp" \\
	--log-file="$logs/%p.log" ${VALGRIND_EXTRA:-} \\
	"\$real" "\$@"
EOF
chmod 755 "$vbin/postgres"

# -------------------------------------------------------------------------
# 3. The tests
# -------------------------------------------------------------------------
if [ "$#" -gt 0 ]; then
	tests=("$@")
else
	tests=()
	for f in "$SRC_DIR"/t/*.pl; do tests+=("t/$(basename "$f")"); done
fi
echo "valgrind.sh: running ${tests[*]} with the server under Valgrind (logs in $logs)"
PG_CONFIG="$vbin/pg_config" WALSHIP_KEEP_TMP=1 \
	bash "$SRC_DIR/test/run-all.sh" "${tests[@]}" 2>&1 | tee "$work/run-all.log"
tests_rc=$?

# -------------------------------------------------------------------------
# 4. The errors
# -------------------------------------------------------------------------
# Frames in walship: the library, or one of its source files.
src_files=$(cd "$SRC_DIR/src" && ls -- *.c | sed 's/\./\\./g' | paste -sd'|')
walship_frame="walship\\.so|[( ]($src_files):[0-9]+\\)"

report="$work/walship-errors.txt"
: >"$report"
total_errors=0
walship_errors=0
for log in "$logs"/*.log; do
	[ -f "$log" ] || continue
	# An error is a block of "==PID== " lines between empty "==PID== " lines
	# that has a stack ("at 0x").  It is walship's when the innermost frame
	# of its first stack that is in the server or in walship (not in libc
	# or another library) is walship's.
	counts=$(awk -v re="$walship_frame" -v file="$log" -v out="$report" '
		function flush() {
			if (block != "" && block ~ /(at|by) 0x/) {
				total++
				if (verdict == "walship") { ours++; print "----- " file " -----\n" block > out }
			}
			block = ""; verdict = ""; stack_done = 0
		}
		/^==[0-9]+== *$/ { flush(); next }
		/^==[0-9]+== / {
			block = block $0 "\n"
			if (/(at|by) 0x/ && !stack_done && verdict == "") {
				if ($0 ~ re) verdict = "walship"
				else if (/postgres(\.real)?\)/ || /\/bin\/postgres/) verdict = "server"
			}
			else if (!/(at|by) 0x/ && block ~ /(at|by) 0x/)
				stack_done = 1
			next
		}
		END { flush(); print total + 0, ours + 0 }
	' "$log")
	total_errors=$((total_errors + ${counts% *}))
	walship_errors=$((walship_errors + ${counts#* }))
done

echo
echo "===== valgrind summary ====="
echo "tests: ${tests[*]} (run-all.sh exit status $tests_rc; see $work/run-all.log)"
echo "processes logged: $(find "$logs" -name '*.log' | wc -l)"
echo "errors reported by Valgrind: $total_errors, of which in walship's code: $walship_errors"
if [ "$walship_errors" -gt 0 ]; then
	echo "errors in walship's code (also in $report):"
	cat "$report"
	exit 1
fi
if [ "$total_errors" -gt 0 ]; then
	echo "errors outside walship's code: see $logs"
fi
exit 0
