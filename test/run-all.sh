#!/usr/bin/env bash
#
# test/run-all.sh
#	  Runs the whole walship test suite: the pg_regress tests (sql/ against
#	  expected/, `make installcheck`, each on its own --temp-instance) and the TAP
#	  tests (t/*.pl, PostgreSQL::Test::Cluster, through PGXS's
#	  prove_installcheck).
#
# Usage:
#	  sudo bash test/run-all.sh       (or, as root: bash test/run-all.sh)
#	  sudo bash test/run-all.sh [TEST ...]
#	      only the named tests: pg_regress test names (e.g. ddl) and TAP
#	      files (e.g. t/020_worker_failures.pl); setup always runs first
#
# As root (a fresh Debian 12 machine, CI):
#	  1. installs the packages in PACKAGES below that are missing, with
#	     apt-get (nothing is fetched when all are installed already);
#	  2. copies the source tree to a fresh temporary directory, builds it
#	     there (any compiler warning fails the run) and `make install`s it;
#	  3. hands the copy to the unprivileged user $WALSHIP_TEST_USER
#	     (default postgres; initdb refuses to run as root) and runs the tests
#	     as that user.
#	  The checkout itself is never written to.
#
# As any other user: skips steps 1 and 2 (no apt, no build, no install) and
# runs the tests on a temporary copy against the walship that is installed
# already (`make && sudo make install` first).
#
# Environment:
#	  PG_CONFIG            pg_config of the server to test
#	                       (default /usr/lib/postgresql/15/bin/pg_config)
#	  WALSHIP_TEST_USER    user the tests run as when started as root
#	                       (default postgres)
#	  WALSHIP_TEST_ENCODER_WORKERS=N  run the worker TAP tests with
#	                       walship.encoder_workers = N (see t/WalshipTest.pm)
#	  WALSHIP_KEEP_TMP=1   keep the temporary directory even on success
#	                       (it is always kept on failure)
#	  WALSHIP_CHDB_CACHE   where the ClickHouse 26 engine for the tests (npm
#	                       chdb, t/chdb/package-lock.json) is installed with
#	                       npm and reused while the lock file is
#	                       unchanged (default /var/cache/walship-test/chdb)
#	  WALSHIP_REQUIRE_CHDB=1  fail, instead of skipping the ClickHouse 26
#	                       tests, when chdb cannot be installed
#
# On failure it prints regression.diffs, the pg_regress server log and the
# TAP logs (tmp_check/log), and exits non-zero.  The last line of output is
# always "N passed, N failed", where N counts pg_regress tests plus TAP
# assertions (each "ok"/"not ok" line of every t/*.pl); a build failure, a
# TAP script that dies or misses its plan, or a phase that fails without a
# failing test (e.g. pg_regress cannot start its server) counts as one more
# failure.
#

set -u
set -o pipefail

# Every package the build and the tests need, in one place.
PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	libcurl4-openssl-dev
	libzstd-dev
	zlib1g-dev
	libdeflate-dev
	libisal-dev
	libipc-run-perl
	perl
	make
	gcc
	python3
	python3-zstandard
	zstd
	curl
	clickhouse-server
	clickhouse-client
	prometheus
	prometheus-postgres-exporter
	nodejs
)

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
TEST_USER=${WALSHIP_TEST_USER:-postgres}

# Deterministic locale for initdb and psql output, whatever the caller's.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
unset LANGUAGE

passed=0
failed=0
work=

section() { printf '\n===== %s =====\n' "$*"; }

finish()
{
	if [ -n "$work" ] && [ -d "$work" ]; then
		if [ "$failed" -eq 0 ] && [ "${WALSHIP_KEEP_TMP:-0}" != 1 ]; then
			rm -rf "$work"
		else
			echo "test files kept in $work"
		fi
	fi
	echo "$passed passed, $failed failed"
	if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
}

# Runs a command as the test user (root mode) or as ourselves.
as_test_user()
{
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$TEST_USER" -- env HOME="$work" "$@"
	else
		"$@"
	fi
}

# Prints a file with a header, or says it is missing.
show_file()
{
	local file=$1 lines=${2:-}
	[ -f "$file" ] || return 0
	echo "----- ${file#"$work"/} -----"
	if [ -n "$lines" ]; then tail -n "$lines" "$file"; else cat "$file"; fi
}

# -------------------------------------------------------------------------
# 1. Packages (root only)
# -------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
	missing=()
	for pkg in "${PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)
		[ "$status" = installed ] || missing+=("$pkg")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		section "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		# The tests start their own servers (PostgreSQL, ClickHouse, the
		# exporter) on free ports: keep the packages' services from starting
		# on the default ones.
		policy_added=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			policy_added=1
		fi
		apt_ok=1
		if ! apt-get update ||
		   ! apt-get install -y --no-install-recommends "${missing[@]}"; then
			apt_ok=
		fi
		[ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
		if [ -z "$apt_ok" ]; then
			echo "run-all.sh: could not install ${missing[*]}" >&2
			failed=$((failed + 1))
			finish
		fi
	fi
	if ! id -u "$TEST_USER" >/dev/null 2>&1; then
		echo "run-all.sh: user \"$TEST_USER\" does not exist (set WALSHIP_TEST_USER)" >&2
		failed=$((failed + 1))
		finish
	fi
fi

# -------------------------------------------------------------------------
# 1b. ClickHouse 26 for the tests: chdb from npm (root only; needs the npm
#     registry the first time and whenever t/chdb/package-lock.json changes)
# -------------------------------------------------------------------------
# The TAP files that use it say "use WalshipChdb"; t/chdb_http.js finds the
# modules through WALSHIP_CHDB_MODULES.  When it cannot be installed, those
# tests skip with WALSHIP_CHDB_UNAVAILABLE as the reason (or fail, with
# WALSHIP_REQUIRE_CHDB=1).
CHDB_CACHE=${WALSHIP_CHDB_CACHE:-/var/cache/walship-test/chdb}
chdb_wanted=0
if [ "$#" -eq 0 ]; then
	chdb_wanted=1
else
	for test in "$@"; do
		case "$test" in
			t/*.pl) grep -q 'use WalshipChdb' "$SRC_DIR/$test" 2>/dev/null && chdb_wanted=1 ;;
		esac
	done
fi
chdb_warning=
chdb_install()
{
	local lock="$SRC_DIR/t/chdb/package-lock.json" staging
	if [ -f "$CHDB_CACHE/walship-package-lock.json" ] && [ -d "$CHDB_CACHE/node_modules/chdb" ] &&
	   cmp -s "$lock" "$CHDB_CACHE/walship-package-lock.json"; then
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || { echo "chdb is not installed in $CHDB_CACHE (run test/run-all.sh as root once)"; return 1; }
	if ! command -v npm >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm >&2 ||
			{ echo "npm could not be installed"; return 1; }
	fi
	mkdir -p "$(dirname "$CHDB_CACHE")" || { echo "cannot create $(dirname "$CHDB_CACHE")"; return 1; }
	staging=$(mktemp -d "$(dirname "$CHDB_CACHE")/chdb.XXXXXX") || return 1
	cp "$SRC_DIR/t/chdb/package.json" "$lock" "$staging/"
	cp "$lock" "$staging/walship-package-lock.json"
	# Not `npm ci`: chdb lists optional engine packages for other platforms
	# that the registry does not have, which npm ci counts as a lock file
	# out of sync.  npm install installs what the lock pins (versions and
	# integrity) and skips the missing optional ones; the versions are
	# checked below.
	if ! (cd "$staging" && timeout 900 npm install --no-audit --no-fund --loglevel=error >&2) ||
	   ! (cd "$staging" && node -e '
			const lock = require("./walship-package-lock.json").packages;
			for (const p of ["chdb", "@chdb/lib-linux-x64-gnu"])
				if (require(p + "/package.json").version !== lock["node_modules/" + p].version)
					throw new Error(p + " is not the version of t/chdb/package-lock.json");' >&2); then
		rm -rf "$staging"
		echo "npm install of t/chdb/package-lock.json failed (is the npm registry reachable?)"
		return 1
	fi
	chmod -R a+rX "$staging"
	rm -rf "$CHDB_CACHE"
	mv "$staging" "$CHDB_CACHE"
}
if [ "$chdb_wanted" -eq 1 ]; then
	section "chdb (ClickHouse 26) for the tests in $CHDB_CACHE"
	if why=$(chdb_install); then
		export WALSHIP_CHDB_MODULES="$CHDB_CACHE/node_modules"
		echo "chdb: $(cd "$CHDB_CACHE" && node -p 'require("chdb/package.json").version') in $WALSHIP_CHDB_MODULES"
	else
		chdb_warning="ClickHouse 26 (chdb) is not available: $why"
		export WALSHIP_CHDB_UNAVAILABLE="$why"
		printf '\n!!!!! WARNING: %s\n!!!!! The ClickHouse 26 tests will %s.\n\n' "$chdb_warning" \
			"$([ "${WALSHIP_REQUIRE_CHDB:-0}" = 1 ] && echo FAIL || echo be SKIPPED)"
	fi
fi

if [ ! -x "$PG_CONFIG" ]; then
	PG_CONFIG=$(command -v pg_config || true)
fi
if [ -z "$PG_CONFIG" ]; then
	echo "run-all.sh: pg_config not found; install postgresql-server-dev-15 or set PG_CONFIG" >&2
	failed=$((failed + 1))
	finish
fi
# Put the server's own binaries (initdb, pg_ctl, pg_recvlogical) first.
PATH="$("$PG_CONFIG" --bindir):$PATH"
export PATH
MAKE=(make --no-print-directory PG_CONFIG="$PG_CONFIG")

# -------------------------------------------------------------------------
# 2. A private copy of the tree; build and install it (root only)
# -------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/walship-test.XXXXXX")
tar -C "$SRC_DIR" --exclude=./.git --exclude=./bench/out -cf - . |
	tar -C "$work" -xf - || { failed=$((failed + 1)); finish; }
cd "$work" || { failed=$((failed + 1)); finish; }
# Drop anything built in the checkout (objects, results, tmp_check).
"${MAKE[@]}" clean >/dev/null 2>&1

if [ "$(id -u)" -eq 0 ]; then
	section "build ($("$PG_CONFIG" --version))"
	"${MAKE[@]}" -j"$(nproc)" WERROR=1 >build.log 2>&1
	build_rc=$?
	cat build.log
	if [ "$build_rc" -ne 0 ]; then
		echo "run-all.sh: build failed"
		failed=$((failed + 1))
		finish
	fi
	if grep -q 'warning:' build.log; then
		echo "run-all.sh: the build has compiler warnings:"
		grep 'warning:' build.log
		failed=$((failed + 1))
		finish
	fi
	section "install"
	if ! "${MAKE[@]}" install; then
		echo "run-all.sh: make install failed"
		failed=$((failed + 1))
		finish
	fi
	chown -R "$TEST_USER" "$work"
fi

# -------------------------------------------------------------------------
# 3. pg_regress: make installcheck without the TAP part
# -------------------------------------------------------------------------
# The test list exactly as the Makefile computes it.
printf 'walship-print-regress:\n\t@echo $(REGRESS)\n' >"$work/.print-regress.mk"
regress_tests=$("${MAKE[@]}" -s -f Makefile -f .print-regress.mk walship-print-regress)
rm -f "$work/.print-regress.mk"
selected_tap=()
if [ "$#" -gt 0 ]; then
	selected_regress=setup
	for test in "$@"; do
		case "$test" in
			t/*.pl) selected_tap+=("$test") ;;
			setup) ;;
			*) selected_regress+=" $test" ;;
		esac
	done
	[ "$selected_regress" = setup ] && selected_regress=
	regress_tests=$selected_regress
fi
n_regress=$(wc -w <<<"$regress_tests")

if [ "$n_regress" -gt 0 ]; then
	section "pg_regress: $n_regress tests"
	as_test_user "${MAKE[@]}" installcheck TAP_TESTS= REGRESS="$regress_tests" 2>&1 | tee regress.log
	regress_rc=$?
	# "test name ... ok" (serial) or "     name ... ok" (parallel group)
	r_passed=$(grep -cE '^(test )?[[:space:]]*[^[:space:]]+[[:space:]]+\.\.\. ok' regress.log)
	r_failed=$((n_regress - r_passed))
	if [ "$regress_rc" -ne 0 ] && [ "$r_failed" -le 0 ]; then
		r_failed=1
	fi
	passed=$((passed + r_passed))
	failed=$((failed + r_failed))
	if [ "$r_failed" -gt 0 ]; then
		section "pg_regress failed: diagnostics"
		show_file "$work/regression.diffs"
		show_file "$work/test/regression.diffs"
		[ "$r_passed" -gt 0 ] || show_file "$work/log/initdb.log" 50
		show_file "$work/log/postmaster.log" 200
	fi
fi

# -------------------------------------------------------------------------
# 4. TAP: make installcheck without the pg_regress part (prove_installcheck)
# -------------------------------------------------------------------------
shopt -s nullglob
tap_files=(t/*.pl)
shopt -u nullglob
[ "$#" -gt 0 ] && tap_files=("${selected_tap[@]}")

if [ "${#tap_files[@]}" -gt 0 ]; then
	section "TAP: ${#tap_files[@]} files"
	as_test_user "${MAKE[@]}" installcheck REGRESS= PROVE_TESTS="${tap_files[*]}" 2>&1 | tee tap.log
	tap_rc=$?
	t_passed=0
	t_failed=0
	stamp='^(\[[0-9:.]+\]\([0-9.]+s\) )?'
	for f in "${tap_files[@]}"; do
		name=$(basename "$f" .pl)
		log="$work/tmp_check/log/regress_log_$name"
		if [ ! -f "$log" ]; then
			echo "run-all.sh: $f left no log (did not start)"
			t_failed=$((t_failed + 1))
			continue
		fi
		ok=$(grep -cE "${stamp}ok [0-9]+" "$log")
		todo=$(grep -cE "${stamp}not ok [0-9]+.*# TODO" "$log")
		notok=$(($(grep -cE "${stamp}not ok [0-9]+" "$log") - todo))
		t_passed=$((t_passed + ok + todo))
		t_failed=$((t_failed + notok))
		plan=$(grep -oE "${stamp}1\.\.[0-9]+" "$log" | tail -n 1 | sed 's/.*1\.\.//')
		if [ -z "$plan" ] || [ "$plan" -ne $((ok + todo + notok)) ]; then
			echo "run-all.sh: $f died or ran $((ok + todo + notok)) of ${plan:-?} planned tests"
			t_failed=$((t_failed + 1))
		fi
	done
	if [ "$tap_rc" -ne 0 ] && [ "$t_failed" -eq 0 ]; then
		t_failed=1
	fi
	passed=$((passed + t_passed))
	failed=$((failed + t_failed))
	if [ "$t_failed" -gt 0 ]; then
		section "TAP failed: logs"
		for log in "$work"/tmp_check/log/regress_log_*; do
			show_file "$log"
		done
		for log in "$work"/tmp_check/log/*.log; do
			show_file "$log" 200
		done
	fi
fi

section "summary"
[ -n "$chdb_warning" ] && printf '!!!!! WARNING: %s: the ClickHouse 26 tests were %s\n' \
	"$chdb_warning" "$([ "${WALSHIP_REQUIRE_CHDB:-0}" = 1 ] && echo failed || echo skipped)"
finish
