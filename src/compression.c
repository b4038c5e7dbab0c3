/*-------------------------------------------------------------------------
 *
 * compression.c
 *	  Compression of request bodies: none, gzip (zlib) or zstd.
 *
 * gzip output is a complete gzip stream (RFC 1952 header and trailer, as
 * "Content-Encoding: gzip" requires), not a raw zlib stream.  zstd output
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

#include <zlib.h>
#include <zstd.h>

#include "utils/memutils.h"

#include "compression.h"

#define WS_GZIP_LEVEL		1	/* speed first: the worker is single-threaded */
#define WS_ZSTD_LEVEL		3

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
 * zlib allocator callbacks: palloc in the current memory context, so that
 * an error raised while the stream is open (enlargeStringInfo running out
 * of memory, for instance) leaks nothing.  They return NULL instead of
 * raising an error, so no error ever unwinds through zlib.
 */
static voidpf
ws_zalloc(voidpf opaque, uInt items, uInt size)
{
	return palloc_extended((Size) items * size, MCXT_ALLOC_NO_OOM);
}

static void
ws_zfree(voidpf opaque, voidpf address)
{
	if (address != NULL)
		pfree(address);
}

static void
ws_compress_gzip(const char *data, size_t len, StringInfo out)
{
	z_stream	zs;
	uLong		bound;
	int			rc;

	/* zlib counts input and output in uInt; our bodies are < 1 GB anyway */
	if (len > (size_t) (MaxAllocSize - 1))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("could not compress %zu bytes with gzip: the input is too large",
						len)));

	memset(&zs, 0, sizeof(zs));
	zs.zalloc = ws_zalloc;
	zs.zfree = ws_zfree;
	zs.opaque = Z_NULL;

	/* windowBits 15 + 16: a gzip header and trailer instead of zlib's */
	rc = deflateInit2(&zs, WS_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8,
					  Z_DEFAULT_STRATEGY);
	if (rc != Z_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress with gzip: %s",
						zs.msg ? zs.msg : (rc == Z_MEM_ERROR ? "out of memory" : "could not initialize zlib"))));

	bound = deflateBound(&zs, (uLong) len);
	ws_reserve(out, (size_t) bound, "gzip", len);

	zs.next_in = (Bytef *) unconstify(char *, data);
	zs.avail_in = (uInt) len;
	zs.next_out = (Bytef *) (out->data + out->len);
	zs.avail_out = (uInt) bound;

	rc = deflate(&zs, Z_FINISH);
	if (rc != Z_STREAM_END)
	{
		const char *msg = zs.msg ? zs.msg : "unexpected deflate() result";

		/* zs.msg is a static string, still valid after deflateEnd() */
		(void) deflateEnd(&zs);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress with gzip: %s", msg)));
	}

	out->len += (int) zs.total_out;
	out->data[out->len] = '\0';

	rc = deflateEnd(&zs);
	if (rc != Z_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress with gzip: could not end the deflate stream")));
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
								data, len, WS_ZSTD_LEVEL);
	if (ZSTD_isError(written))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress with zstd: %s",
						ZSTD_getErrorName(written))));

	out->len += (int) written;
	out->data[out->len] = '\0';
}
