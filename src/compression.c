/*-------------------------------------------------------------------------
 *
 * compression.c
 *	  Compression of request bodies: none, gzip (ISA-L's igzip at level 1,
 *	  libdeflate above) or zstd.
 *
 * gzip output is a complete gzip stream (RFC 1952 header and trailer, as
 * "Content-Encoding: gzip" requires), not a raw zlib stream.  The level is
 * walship.compression_level, or each method's default when that is 0.  zstd output
 * is a single zstd frame with the content size recorded.  Both compress the
 * whole body in one call into an output buffer sized by the library's
 * bound, so they never need to grow the buffer midway.
 *
 * IDENTIFICATION
 *	  src/compression.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <zstd.h>

#include "utils/memutils.h"

#include "compression.h"
#include "settings.h"

/*
 * Levels when walship.compression_level is 0: speed first, as measured on
 * NDJSON batches (docs/benchmarks.md): gzip level 1 (ISA-L's igzip) and
 * zstd's level 1 are the fastest with a ratio as good as the next levels'.
 */
#define WS_GZIP_DEFAULT_LEVEL	1
#define WS_ZSTD_DEFAULT_LEVEL	1

/*
 * zstd compression context, reused across calls: creating one per batch
 * costs more than compressing a small batch.  Allocated with malloc by
 * libzstd, lives as long as the process.
 */
static ZSTD_CCtx *zstd_cctx = NULL;

static void ws_compress_gzip(const char *data, size_t len, StringInfo out);
static void ws_compress_zstd(const char *data, size_t len, StringInfo out);

/*
 * Returns the Content-Encoding header value for method, NULL for none.
 */
const char *
ws_compression_encoding(WsCompression method)
{
	switch (method)
	{
		case WS_COMPRESSION_NONE:
			return NULL;
		case WS_COMPRESSION_GZIP:
			return "gzip";
		case WS_COMPRESSION_ZSTD:
			return "zstd";
	}

	elog(ERROR, "unrecognized compression method: %d", (int) method);
	return NULL;				/* keep compiler quiet */
}

/*
 * Appends len bytes at data, compressed with method, to out.
 */
void
ws_compress(WsCompression method, const char *data, size_t len,
			StringInfo out)
{
	switch (method)
	{
		case WS_COMPRESSION_NONE:
			if (len > (size_t) (MaxAllocSize - 1))
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("request body of %zu bytes is too large", len)));
			appendBinaryStringInfo(out, data, (int) len);
			return;
		case WS_COMPRESSION_GZIP:
			ws_compress_gzip(data, len, out);
			return;
		case WS_COMPRESSION_ZSTD:
			ws_compress_zstd(data, len, out);
			return;
	}

	elog(ERROR, "unrecognized compression method: %d", (int) method);
}

/*
 * Makes room for bound more bytes in out, or reports that the compressed
 * body could not fit in a StringInfo.
 */
static void
ws_reserve(StringInfo out, size_t bound, const char *method, size_t len)
{
	if (bound >= (size_t) (MaxAllocSize - 1) ||
		(size_t) out->len + bound >= (size_t) (MaxAllocSize - 1))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("could not compress %zu bytes with %s: the result could exceed the maximum allocation size",
						len, method)));
	enlargeStringInfo(out, (int) bound);
}

/*
 * The level of method: walship.compression_level, or the method's default
 * when that is 0, clamped to what the library accepts.
 */
static int
compression_level(WsCompression method)
{
	int			level = walship_compression_level;

	if (method == WS_COMPRESSION_GZIP)
	{
		if (level == 0)
			return WS_GZIP_DEFAULT_LEVEL;
		return Max(1, Min(level, 12));
	}
	if (level == 0)
		return WS_ZSTD_DEFAULT_LEVEL;
	return Max(ZSTD_minCLevel(), Min(level, ZSTD_maxCLevel()));
}

/*
 * gzip at level 1 with ISA-L's igzip: on NDJSON batches it compresses about
 * three times as fast as libdeflate's level 1 at the same ratio
 * (docs/benchmarks.md, "Compression, measured").  Its one-shot API needs
 * an output buffer that fits the whole result; the bound below is the
 * input stored uncompressed plus block, gzip and header overheads, and a
 * body that still does not fit (never seen) is compressed by libdeflate
 * instead.  Returns false then, with out unchanged.  The level buffer is
 * malloc'd once and lives as long as the process.
 */
static bool
ws_compress_gzip_isal(const char *data, size_t len, StringInfo out)
{
	static uint8_t *level_buf = NULL;
	struct isal_zstream stream;
	size_t		bound;
	int			rc;

	if (level_buf == NULL)
	{
		level_buf = malloc(ISAL_DEF_LVL1_DEFAULT);
		if (level_buf == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not compress with gzip: out of memory")));
	}

	/* stored blocks: 5 bytes per 65535; gzip header and trailer: 18 */
	bound = len + (len / 65535 + 1) * 5 + 18 + ISAL_DEF_MAX_HDR_SIZE;
	ws_reserve(out, bound, "gzip", len);

	/*
	 * isal_deflate_stateless_init() leaves hist_bits, the window size that
	 * deflate reads, as it was (valgrind showed it): start from zeros.
	 */
	memset(&stream, 0, sizeof(stream));
	isal_deflate_stateless_init(&stream);
	stream.level = 1;
	stream.level_buf = level_buf;
	stream.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
	stream.gzip_flag = IGZIP_GZIP;
	stream.flush = NO_FLUSH;
	stream.end_of_stream = 1;
	stream.next_in = (uint8_t *) data;
	stream.avail_in = (uint32_t) len;
	stream.next_out = (uint8_t *) (out->data + out->len);
	stream.avail_out = (uint32_t) bound;

	rc = isal_deflate_stateless(&stream);
	if (rc == STATELESS_OVERFLOW)
		return false;
	if (rc != COMP_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress %zu bytes with gzip: ISA-L error %d",
						len, rc)));
	out->len += (int) stream.total_out;
	out->data[out->len] = '\0';
	return true;
}

/*
 * gzip: level 1 with ISA-L (above), levels 2 to 12 with libdeflate, whose
 * one-shot API compresses whole buffers several times faster than zlib's
 * streaming deflate() at a similar or better ratio.  One libdeflate
 * compressor per level, reused across calls; malloc'd by libdeflate, it
 * lives as long as the process.
 */
static void
ws_compress_gzip(const char *data, size_t len, StringInfo out)
{
	static struct libdeflate_compressor *compressor = NULL;
	static int	compressor_level = 0;
	int			level = compression_level(WS_COMPRESSION_GZIP);
	size_t		bound;
	size_t		written;

	if (len > (size_t) (MaxAllocSize - 1))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("could not compress %zu bytes with gzip: the input is too large",
						len)));

	if (level == 1 && ws_compress_gzip_isal(data, len, out))
		return;

	if (compressor != NULL && compressor_level != level)
	{
		libdeflate_free_compressor(compressor);
		compressor = NULL;
	}
	if (compressor == NULL)
	{
		compressor = libdeflate_alloc_compressor(level);
		if (compressor == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not compress with gzip: out of memory")));
		compressor_level = level;
	}

	bound = libdeflate_gzip_compress_bound(compressor, len);
	ws_reserve(out, bound, "gzip", len);
	written = libdeflate_gzip_compress(compressor, data, len,
									   out->data + out->len, bound);
	if (written == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress %zu bytes with gzip: the output did not fit its bound",
						len)));
	out->len += (int) written;
	out->data[out->len] = '\0';
}

static void
ws_compress_zstd(const char *data, size_t len, StringInfo out)
{
	size_t		bound;
	size_t		written;

	bound = ZSTD_compressBound(len);
	if (ZSTD_isError(bound) || bound == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("could not compress %zu bytes with zstd: the input is too large",
						len)));
	ws_reserve(out, bound, "zstd", len);

	if (zstd_cctx == NULL)
	{
		zstd_cctx = ZSTD_createCCtx();
		if (zstd_cctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not compress with zstd: out of memory")));
	}

	written = ZSTD_compressCCtx(zstd_cctx, out->data + out->len, bound,
								data, len,
								compression_level(WS_COMPRESSION_ZSTD));
	if (ZSTD_isError(written))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress with zstd: %s",
						ZSTD_getErrorName(written))));

	out->len += (int) written;
	out->data[out->len] = '\0';
}
