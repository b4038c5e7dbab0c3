/*-------------------------------------------------------------------------
 *
 * compression.c
 *	  Compression of request bodies: none, gzip (libdeflate) or zstd.
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

#include <libdeflate.h>
#include <zstd.h>

#include "utils/memutils.h"

#include "compression.h"
#include "settings.h"

/*
 * Levels when walship.compression_level is 0: speed first, as measured on
 * NDJSON batches (docs/benchmarks.md): libdeflate's level 1 and zstd's
 * level 1 are the fastest with a ratio as good as the next levels'.
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
 * gzip with libdeflate: bodies are whole buffers, which its one-shot API
 * compresses several times faster than zlib's streaming deflate() at a
 * similar or better ratio (docs/benchmarks.md).  One compressor per level,
 * reused across calls; malloc'd by libdeflate, it lives as long as the
 * process.
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
