# walship: change data capture from PostgreSQL to HTTP analytics endpoints

EXTENSION = walship
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")

MODULE_big = walship
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
DATA = $(wildcard sql/$(EXTENSION)--*.sql)

# setup defines the helpers the other tests use, so it runs first.
TESTS = $(filter-out test/sql/setup.sql,$(wildcard test/sql/*.sql))
REGRESS = setup $(patsubst test/sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=test --temp-config=test/walship.conf \
	--temp-instance=./tmp_check --load-extension=$(EXTENSION)
TAP_TESTS = 1

EXTRA_CLEAN = tmp_check test/results test/regression.diffs test/regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The plain prove_installcheck of PGXS expects a source tree; this runs the
# TAP tests against the installed server and the library installed from here.
