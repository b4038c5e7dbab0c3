# walship: change data capture from PostgreSQL to HTTP analytics endpoints

EXTENSION = walship
# The version, defined here only: walship.control, META.json and the
# library (WALSHIP_VERSION) are made from it.
EXTVERSION = 0.1.0

MODULE_big = walship
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
SHLIB_LINK += -lcurl -lisal -ldeflate -lzstd
PG_CPPFLAGS += -DWALSHIP_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter
# `make WERROR=1` (test/run-all.sh does) makes every warning an error.
ifdef WERROR
PG_CFLAGS += -Werror
endif
DATA = $(wildcard $(EXTENSION)--*.sql)

# pg_regress: sql/*.sql against expected/*.out; setup defines the helpers
# the other tests use, so it runs first.
TESTS = $(filter-out sql/setup.sql,$(wildcard sql/*.sql))
REGRESS = setup $(patsubst sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --temp-config=$(TEMP_CONFIG) --temp-instance=./tmp_check \
	--load-extension=$(EXTENSION)
REGRESS_PREP = $(TEMP_CONFIG)
# t/*.pl run after the pg_regress tests in `make installcheck`: PGXS's
# prove_installcheck works out of tree as is (prove -I <pgxs>/src/test/perl,
# PG_REGRESS=<pgxs>/src/test/regress/pg_regress, PATH=$(bindir):...).
# `make installcheck TAP_TESTS=` runs only pg_regress, `make installcheck
# REGRESS=` only TAP (test/run-all.sh does both, in that order).
TAP_TESTS = 1

# The temporary instance's configuration: test/walship.conf, plus
# output_plugin_libraries where the server has that setting (15.19 and
# later; older servers refuse to start on a setting they do not know).
TEMP_CONFIG = test/walship.temp.conf

EXTRA_CLEAN = tmp_check results regression.diffs regression.out log \
	$(TEMP_CONFIG) $(EXTENSION).control META.json

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: $(EXTENSION).control META.json

$(EXTENSION).control: $(EXTENSION).control.in Makefile
	sed -e 's/@EXTVERSION@/$(EXTVERSION)/g' $< >$@

META.json: META.json.in Makefile
	sed -e 's/@EXTVERSION@/$(EXTVERSION)/g' $< >$@

$(TEMP_CONFIG): test/walship.conf Makefile
	cp test/walship.conf $@
	if $(bindir)/postgres --describe-config 2>/dev/null | \
		grep -q '^output_plugin_libraries'; then \
		echo "output_plugin_libraries = 'pgoutput, test_decoding, walship'" >>$@; \
	fi

# PGXS tracks no header dependencies: rebuild everything when one changes.
$(OBJS): $(wildcard src/*.h) Makefile
