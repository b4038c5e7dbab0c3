#!/usr/bin/env bash
#
# test/assert-build.sh
#	  Builds an assert-enabled PostgreSQL (--enable-cassert, -DUSE_VALGRIND,
#	  TAP tests on) from the Debian source package of the installed major,
#	  into a directory of its own, so the walship tests can run against it:
#
#	    sudo bash test/assert-build.sh /opt/pg-assert
#	    sudo PG_CONFIG=/opt/pg-assert/bin/pg_config bash test/run-all.sh
#
#	  Assertions in the server catch misuse of its APIs (memory contexts,
#	  snapshots, locks, catalog access outside a transaction) that a
#	  production build lets pass silently; USE_VALGRIND makes memory
#	  contexts tell valgrind (test/valgrind.sh) about their chunks.
#
#	  As root: installs the build dependencies with apt-get and adds a
#	  deb-src entry for Debian's archive (in a file of its own, removed
#	  afterwards).  Takes about 10 minutes on 2 cores.  The source is the
#	  release's (bookworm, e.g. 15.18): the security archive serves no
#	  sources, so the build may be a minor version older than the server
#	  Debian installs; older than 15.19 it has no output_plugin_libraries,
#	  which the tests then leave out of their configuration.
#
# Environment:
#	  PG_MAJOR   major version to build (default: the installed server's)
#
set -euo pipefail

prefix=${1:?usage: test/assert-build.sh PREFIX}
PG_MAJOR=${PG_MAJOR:-$(/usr/lib/postgresql/*/bin/postgres --version 2>/dev/null |
	sed -E 's/.* ([0-9]+)\..*/\1/' | sort -n | tail -n 1)}
[ -n "$PG_MAJOR" ] || { echo "assert-build.sh: set PG_MAJOR" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
	echo "assert-build.sh: run as root (it installs build dependencies)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
src_list=/etc/apt/sources.list.d/walship-assert-build-src.sources
trap 'rm -f "$src_list"' EXIT
cat >"$src_list" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt-get update -qq
apt-get install -y -qq --no-install-recommends dpkg-dev bison flex gcc make \
	libipc-run-perl zlib1g-dev libssl-dev libxml2-dev pkg-config valgrind >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/pg-assert-build.XXXXXX")
cd "$work"
apt-get source -qq --download-only "postgresql-$PG_MAJOR" >/dev/null
# Without Debian's patches: they move pkglibdir to /usr/lib/postgresql/N/lib
# whatever the prefix, so `make install` would overwrite the installed
# server's modules.
dpkg-source -x --skip-patches ./*.dsc src >/dev/null
cd src
./configure --prefix="$prefix" --enable-cassert --enable-debug \
	--enable-tap-tests --without-readline --without-icu --with-openssl --with-libxml \
	CFLAGS="-O1 -g -DUSE_VALGRIND" >configure.log
make -s -j"$(nproc)" >make.log 2>&1 || { tail -n 50 make.log; exit 1; }
make -s -C contrib/test_decoding >/dev/null
case "$(./src/bin/pg_config/pg_config --pkglibdir 2>/dev/null || echo "$prefix")" in
	"$prefix"*) ;;
	*) echo "assert-build.sh: the build would install outside $prefix" >&2; exit 1 ;;
esac
make -s install >/dev/null
make -s -C contrib/test_decoding install >/dev/null
cd /
rm -rf "$work"
echo "assert-enabled PostgreSQL $PG_MAJOR installed in $prefix"
echo "PG_CONFIG=$prefix/bin/pg_config"
