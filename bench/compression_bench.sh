#!/usr/bin/env bash
#
# compression_bench.sh - the compressors walship can use, on an NDJSON batch
#
# Compresses one 4 MB buffer of NDJSON lines shaped like walship's envelope
# output for the 11-column "orders" table of the other benchmarks (made with
# a fixed seed) in one call, as compression.c does with a batch, with:
# zlib's deflate (what walship used for gzip before libdeflate), libdeflate's
# gzip (what walship uses for gzip levels 2 to 12), ISA-L's igzip (what it
# uses for level 1, the default) and zstd, at several levels; ROUNDS calls
# each, the best one reported.  Prints MB/s of input and the compression
# ratio.
#
# Usage:  bash bench/compression_bench.sh
# Needs:  gcc, python3, zlib1g-dev, libdeflate-dev, libisal-dev, libzstd-dev
# Environment: ROUNDS=10, BATCH_MB=4
#
set -euo pipefail

ROUNDS=${ROUNDS:-10}
BATCH_MB=${BATCH_MB:-4}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/walship-compression-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

python3 - "$tmp/batch.ndjson" "$BATCH_MB" <<'PY'
import json, random, sys
random.seed(1)
path, mb = sys.argv[1], int(sys.argv[2])
size, i = 0, 0
with open(path, 'w') as out:
    while size < mb * 1024 * 1024:
        i += 1
        line = json.dumps({
            "id": "000000010A2B3C40-%d" % i, "op": random.choice("ccccuud"),
            "before": None,
            "after": {"id": i, "customer_id": random.randint(1, 100000),
                      "country": random.choice(["DE", "FR", "US", "JP", "BR"]),
                      "status": random.choice(["new", "paid", "shipped"]),
                      "total": "%d.%02d" % (random.randint(1, 5000), random.randint(0, 99)),
                      "items": random.randint(1, 9), "note": "order %d" % random.randint(1, 10**6),
                      "created_at": "2026-12-03T07:%02d:%02d.%06dZ" % (random.randint(0, 59), random.randint(0, 59), random.randint(0, 999999)),
                      "updated_at": None, "flag": True, "discount": "0.00"},
            "source": {"schema": "public", "table": "orders", "commit_lsn": "1/0A2B3C40",
                       "commit_ts": "2026-12-03T07:00:00.123456Z", "xid": 1234 + i // 1000,
                       "ordinal": i % 1000, "lsn": "1/0A2B3C40"}},
            separators=(',', ':')) + "\n"
        out.write(line)
        size += len(line)
PY

cat >"$tmp/bench.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>
#include <libdeflate.h>
#include <isa-l/igzip_lib.h>

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void
report(const char *name, int level, size_t in, size_t out, double best)
{
	printf("| %-10s | %5d | %9.0f | %6.2f |\n", name, level, in / best / 1e6,
		   (double) in / out);
}

int
main(int argc, char **argv)
{
	FILE	   *f = fopen(argv[1], "rb");
	int			rounds = atoi(argv[2]);
	long		n;
	char	   *in;
	size_t		cap;
	char	   *out;
	int			zlib_levels[] = {1, 6};
	int			deflate_levels[] = {1, 3, 6};
	int			zstd_levels[] = {-1, 1, 3};

	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	in = malloc(n);
	if (fread(in, 1, n, f) != (size_t) n)
		return 1;
	cap = n * 2 + 4096;
	out = malloc(cap);
	printf("| library    | level |      MB/s |  ratio |\n|---|---:|---:|---:|\n");
	for (int k = 0; k < 2; k++)
	{
		double		best = 1e9;
		size_t		o = 0;

		for (int r = 0; r < rounds; r++)
		{
			z_stream	zs;
			double		t = now();

			memset(&zs, 0, sizeof(zs));
			deflateInit2(&zs, zlib_levels[k], Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
			zs.next_in = (Bytef *) in;
			zs.avail_in = n;
			zs.next_out = (Bytef *) out;
			zs.avail_out = cap;
			deflate(&zs, Z_FINISH);
			o = zs.total_out;
			deflateEnd(&zs);
			t = now() - t;
			if (t < best)
				best = t;
		}
		report("zlib gzip", zlib_levels[k], n, o, best);
	}
	for (int k = 0; k < 3; k++)
	{
		struct libdeflate_compressor *c = libdeflate_alloc_compressor(deflate_levels[k]);
		double		best = 1e9;
		size_t		o = 0;

		for (int r = 0; r < rounds; r++)
		{
			double		t = now();

			o = libdeflate_gzip_compress(c, in, n, out, cap);
			t = now() - t;
			if (t < best)
				best = t;
		}
		report("libdeflate", deflate_levels[k], n, o, best);
		libdeflate_free_compressor(c);
	}
	for (int k = 0; k < 3; k++)
	{
		ZSTD_CCtx  *cc = ZSTD_createCCtx();
		double		best = 1e9;
		size_t		o = 0;

		for (int r = 0; r < rounds; r++)
		{
			double		t = now();

			o = ZSTD_compressCCtx(cc, out, cap, in, n, zstd_levels[k]);
			t = now() - t;
			if (t < best)
				best = t;
		}
		report("zstd", zstd_levels[k], n, o, best);
		ZSTD_freeCCtx(cc);
	}
	for (int lvl = 0; lvl <= 3; lvl++)
	{
		static const int bufsz[] = {ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};
		unsigned char *lb = malloc(bufsz[lvl]);
		double		best = 1e9;
		size_t		o = 0;

		for (int r = 0; r < rounds; r++)
		{
			struct isal_zstream s;
			double		t = now();

			isal_deflate_stateless_init(&s);
			s.level = lvl;
			s.level_buf = lb;
			s.level_buf_size = bufsz[lvl];
			s.gzip_flag = IGZIP_GZIP;
			s.next_in = (uint8_t *) in;
			s.avail_in = n;
			s.next_out = (uint8_t *) out;
			s.avail_out = cap;
			s.end_of_stream = 1;
			s.flush = NO_FLUSH;
			if (isal_deflate_stateless(&s) != COMP_OK)
				return 2;
			o = s.total_out;
			t = now() - t;
			if (t < best)
				best = t;
		}
		report("isa-l", lvl, n, o, best);
		free(lb);
	}
	return 0;
}
C
gcc -O2 -o "$tmp/bench" "$tmp/bench.c" -lz -ldeflate -lzstd -lisal
echo "one $(($(stat -c %s "$tmp/batch.ndjson") / 1024)) kB NDJSON batch, best of $ROUNDS calls each (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$tmp/bench" "$tmp/batch.ndjson" "$ROUNDS"
