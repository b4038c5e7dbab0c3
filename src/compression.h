/*-------------------------------------------------------------------------
 *
 * compression.h
 *	  Compression of request bodies: none, gzip (ISA-L at level 1,
 *	  libdeflate above) or zstd.
 *
 * IDENTIFICATION
 *	  src/compression.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_COMPRESSION_H
#define WALSHIP_COMPRESSION_H

#include "lib/stringinfo.h"

typedef enum WsCompression
{
	WS_COMPRESSION_NONE,
	WS_COMPRESSION_GZIP,
	WS_COMPRESSION_ZSTD
} WsCompression;

/* The Content-Encoding header value, NULL for none. */
extern const char *ws_compression_encoding(WsCompression method);

/* Appends data compressed with method to out (a copy for NONE). */
extern void ws_compress(WsCompression method, const char *data, size_t len,
						StringInfo out);

#endif							/* WALSHIP_COMPRESSION_H */
