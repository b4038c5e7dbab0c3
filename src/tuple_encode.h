/*-------------------------------------------------------------------------
 *
 * tuple_encode.h
 *	  Per-type value encoders for the walship binary format.
 *
 * IDENTIFICATION
 *	  src/tuple_encode.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_TUPLE_ENCODE_H
#define WALSHIP_TUPLE_ENCODE_H

#include "fmgr.h"
#include "lib/stringinfo.h"

/* How values of one type are written; chosen once per column. */
typedef enum WsEncoding
{
	WS_ENC_BOOL,
	WS_ENC_INT2,
	WS_ENC_INT4,
	WS_ENC_INT8,
	WS_ENC_OID,
	WS_ENC_FLOAT4,
	WS_ENC_FLOAT8,
	WS_ENC_NUMERIC,
	WS_ENC_TEXT,				/* text, varchar, bpchar: the varlena bytes */
	WS_ENC_NAME,
	WS_ENC_JSON,				/* json: the varlena bytes */
	WS_ENC_JSONB,				/* jsonb: its output function, tagged JSON */
	WS_ENC_BYTEA,
	WS_ENC_UUID,
	WS_ENC_DATE,
	WS_ENC_TIMESTAMP,
	WS_ENC_TIMESTAMPTZ,
	WS_ENC_TIME,
	WS_ENC_ARRAY,				/* one-dimensional arrays, element by element */
	WS_ENC_OUTPUT				/* anything else: the type's output function */
} WsEncoding;

typedef struct WsTypeEncoder
{
	WsEncoding	encoding;
	Oid			type_oid;		/* after domains are resolved */
	FmgrInfo	output_fn;		/* for textual fallbacks, always set */

	/* WS_ENC_ARRAY */
	int16		elem_len;
	bool		elem_byval;
	char		elem_align;
	struct WsTypeEncoder *element;
} WsTypeEncoder;

extern void ws_type_encoder_init(WsTypeEncoder *encoder, Oid type_oid,
								 MemoryContext mcxt);
extern void ws_encode_value(StringInfo out, const WsTypeEncoder *encoder,
							Datum value, bool isnull);

#endif							/* WALSHIP_TUPLE_ENCODE_H */
