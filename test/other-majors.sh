#!/usr/bin/env bash
#
# test/other-majors.sh
#	  Builds walship and runs its pg_regress suite against another PostgreSQL
#	  major version, inside a Debian chroot made with debootstrap: a Debian 12
#	  host only has PostgreSQL 15, while trixie has 17 and sid 18.
#
# Usage (as root):
#	  bash test/other-majors.sh SUITE MAJOR [t/NNN_x.pl ...]
#	  e.g. bash test/other-majors.sh trixie 17
#	       bash test/other-majors.sh sid 18 t/001_pg_recvlogical.pl
#
# What it does:
#	  1. installs debootstrap on the host if it is missing;
#	  2. creates the chroot $WALSHIP_CHROOT_DIR/SUITE with debootstrap
#	     (minbase, from $WALSHIP_MIRROR), or reuses it when it exists, and
#	     installs the build and test packages in it (postgresql-MAJOR,
#	     postgresql-server-dev-MAJOR, libcurl, zstd, zlib, make, gcc,
#	     IPC::Run; with TAP files also python3, python3-zstandard, zstd and
#	     curl for the scripted HTTP sink);
#	  3. copies the working tree (git ls-files: tracked and untracked files,
#	     not the ignored ones) to /srv/walship in the chroot, builds it with
#	     `make WERROR=1` against that major's pg_config (any warning fails)
#	     and `make install`s it into the chroot's PostgreSQL;
#	  4. runs `make installcheck TAP_TESTS=` (pg_regress) as the unprivileged
#	     user postgres, then the TAP files given as further arguments with
#	     `make installcheck REGRESS= PROVE_TESTS=...`.
#	  /proc and /dev/shm are mounted in the chroot while it runs and always
#	  unmounted on exit.  The host's PostgreSQL is never touched.
#
# Environment:
#	  WALSHIP_CHROOT_DIR   parent of the chroots
#	                       (default /var/tmp/walship-chroots)
#	  WALSHIP_MIRROR       Debian mirror (default http://deb.debian.org/debian)
#
# The last lines are a summary; the exit status is non-zero if the build, the
# install or any test failed.  Diffs and logs stay in the chroot under
# /srv/walship (regression.diffs, log/, tmp_check/log/).
#

set -u
set -o pipefail

if [ "$#" -lt 2 ]; then
	echo "usage: $0 SUITE MAJOR [t/NNN_x.pl ...]" >&2
	exit 2
fi
SUITE=$1
MAJOR=$2
shift 2
TAP_FILES=("$@")

if [ "$(id -u)" -ne 0 ]; then
	echo "other-majors.sh: must run as root (debootstrap, chroot, mount)" >&2
	exit 2
fi

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHROOT_PARENT=${WALSHIP_CHROOT_DIR:-/var/tmp/walship-chroots}
ROOT=$CHROOT_PARENT/$SUITE
MIRROR=${WALSHIP_MIRROR:-http://deb.debian.org/debian}
PG_CONFIG=/usr/lib/postgresql/$MAJOR/bin/pg_config
TEST_USER=postgres
WORK=/srv/walship

PACKAGES=(
	"postgresql-$MAJOR"
	"postgresql-server-dev-$MAJOR"
	libcurl4-openssl-dev
	libzstd-dev
	zlib1g-dev
	libdeflate-dev
	libisal-dev
	make
	gcc
	perl
	libipc-run-perl
)
# What the TAP tests need besides: the scripted HTTP sink (t/http_sink.py)
# and its zstd decoder, curl for t/000_http_sink.pl, promtool and the
# exporter for t/080_metrics.pl.  Installed only when TAP files are given.
TAP_PACKAGES=(
	python3
	python3-zstandard
	zstd
	curl
	prometheus
	prometheus-postgres-exporter
)
[ "${#TAP_FILES[@]}" -gt 0 ] && PACKAGES+=("${TAP_PACKAGES[@]}")

export LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive
unset LANGUAGE

mounted=()
result_build=skipped
result_regress=skipped
result_tap=skipped

section() { printf '\n===== %s =====\n' "$*"; }

cleanup()
{
	local i
	# Unmount in reverse order of mounting.
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}"
	done
	mounted=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summary()
{
	section "summary: PostgreSQL $MAJOR ($SUITE)"
	echo "build (WERROR) + install: $result_build"
	echo "pg_regress:               $result_regress"
	echo "TAP ${TAP_FILES[*]:-(none)}: $result_tap"
	echo "logs: $ROOT$WORK"
	if [ "$result_build" = ok ] && [ "$result_regress" = ok ] &&
	   { [ "$result_tap" = ok ] || [ "$result_tap" = skipped ]; }; then
		echo "PASS"
		exit 0
	fi
	echo "FAIL"
	exit 1
}

in_chroot() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# Runs a command in the chroot's $WORK as the unprivileged test user.
as_test_user() { in_chroot runuser -u "$TEST_USER" -- \
	env HOME="$WORK" PATH="/usr/lib/postgresql/$MAJOR/bin:/usr/bin:/bin" \
	sh -c 'cd "$0" && exec "$@"' "$WORK" "$@"; }

# -------------------------------------------------------------------------
# 1. The chroot
# -------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null; then
	section "installing debootstrap on the host"
	apt-get update && apt-get install -y debootstrap || exit 1
fi

if [ ! -e "$ROOT/.walship-debootstrap-done" ]; then
	section "debootstrap $SUITE into $ROOT"
	mkdir -p "$CHROOT_PARENT"
	include=$(IFS=,; echo "${PACKAGES[*]}")
	if ! debootstrap --variant=minbase --include="$include" \
			"$SUITE" "$ROOT" "$MIRROR"; then
		echo "other-majors.sh: debootstrap failed (see $ROOT/debootstrap/debootstrap.log)" >&2
		exit 1
	fi
	touch "$ROOT/.walship-debootstrap-done"
fi

mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc") || exit 1
mkdir -p "$ROOT/dev/shm"
mount -t tmpfs -o mode=1777 shm "$ROOT/dev/shm" && mounted+=("$ROOT/dev/shm") || exit 1
# Name resolution for apt in a reused chroot.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(in_chroot dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)
	[ "$status" = installed ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	section "installing ${missing[*]} in the chroot"
	# no service of the chroot's packages (prometheus, the exporter) starts
	[ -e "$ROOT/usr/sbin/policy-rc.d" ] ||
		printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 755 "$ROOT/usr/sbin/policy-rc.d"
	# sid's Release file is only valid for a week: an archive copy that
	# is older (or a clock that is ahead) would fail the update.
	in_chroot apt-get -o Acquire::Check-Valid-Until=false update &&
		in_chroot apt-get install -y --no-install-recommends "${missing[@]}" ||
		exit 1
fi
if [ ! -x "$ROOT$PG_CONFIG" ]; then
	echo "other-majors.sh: $PG_CONFIG missing in the chroot" >&2
	exit 1
fi

# -------------------------------------------------------------------------
# 2. Copy, build, install
# -------------------------------------------------------------------------
rm -rf "${ROOT:?}$WORK"
mkdir -p "$ROOT$WORK"
(cd "$SRC_DIR" && git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	tar --null -T - -cf -) | tar -C "$ROOT$WORK" -xf - || exit 1

section "build ($(in_chroot "$PG_CONFIG" --version))"
in_chroot make -C "$WORK" --no-print-directory -j"$(nproc)" WERROR=1 \
	PG_CONFIG="$PG_CONFIG" 2>&1 | tee "$ROOT$WORK/build.log"
build_rc=$?
if [ "$build_rc" -ne 0 ] || grep -q 'warning:' "$ROOT$WORK/build.log"; then
	result_build=FAILED
	summary
fi
if ! in_chroot make -C "$WORK" --no-print-directory install \
		PG_CONFIG="$PG_CONFIG" >"$ROOT$WORK/install.log" 2>&1; then
	cat "$ROOT$WORK/install.log"
	result_build="FAILED (make install)"
	summary
fi
result_build=ok
in_chroot chown -R "$TEST_USER" "$WORK"

# -------------------------------------------------------------------------
# 3. pg_regress, then the TAP files asked for
# -------------------------------------------------------------------------
section "pg_regress"
as_test_user make --no-print-directory installcheck TAP_TESTS= \
	PG_CONFIG="$PG_CONFIG" 2>&1 | tee "$ROOT$WORK/regress.log"
if [ "$?" -eq 0 ]; then
	result_regress=ok
else
	n_failed=$(grep -cE '\.\.\. FAILED' "$ROOT$WORK/regress.log")
	result_regress="FAILED ($n_failed tests; $WORK/regression.diffs)"
	[ -f "$ROOT$WORK/regression.diffs" ] && cat "$ROOT$WORK/regression.diffs"
fi

if [ "${#TAP_FILES[@]}" -gt 0 ]; then
	section "TAP: ${TAP_FILES[*]}"
	as_test_user make --no-print-directory installcheck REGRESS= \
		PG_CONFIG="$PG_CONFIG" PROVE_TESTS="${TAP_FILES[*]}" 2>&1 |
		tee "$ROOT$WORK/tap.log"
	if [ "$?" -eq 0 ]; then
		result_tap=ok
	else
		result_tap="FAILED ($WORK/tmp_check/log)"
	fi
fi

summary
