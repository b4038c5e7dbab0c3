# walship: change data capture from PostgreSQL to HTTP analytics endpoints

EXTENSION = walship
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")

MODULE_big = walship
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
SHLIB_LINK += -lcurl -lz -lzstd
DATA = $(wildcard sql/$(EXTENSION)--*.sql)

# setup defines the helpers the other tests use, so it runs first.
TESTS = $(filter-out test/sql/setup.sql,$(wildcard test/sql/*.sql))
REGRESS = setup $(patsubst test/sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=test --temp-config=test/walship.conf \
	--temp-instance=./tmp_check --load-extension=$(EXTENSION)
# t/*.pl run after the pg_regress tests in `make installcheck`: PGXS's
# prove_installcheck works out of tree as is (prove -I <pgxs>/src/test/perl,
# PG_REGRESS=<pgxs>/src/test/regress/pg_regress, PATH=$(bindir):...).
# `make installcheck TAP_TESTS=` runs only pg_regress, `make installcheck
# REGRESS=` only TAP (test/run-all.sh does both, in that order).
TAP_TESTS = 1

EXTRA_CLEAN = tmp_check results regression.diffs regression.out log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: rebuild everything when one changes.
$(OBJS): $(wildcard src/*.h)
