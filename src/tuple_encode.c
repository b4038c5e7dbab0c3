/*-------------------------------------------------------------------------
 *
 * tuple_encode.c
 *	  Encoding of column values into walship's typed compact values.
 *
 * The type of a column is examined once, when the output plugin builds its
 * per-relation cache (relation_cache.c), and turned into a WsTypeEncoder:
 * the encoding to use, and the output function for types without a native
 * encoding.  Encoding a row is then a switch per value with no catalog
 * lookups.  docs/format.md lists which types get which value tag.
 *
 * IDENTIFICATION
 *	  src/tuple_encode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "format.h"
#include "tuple_encode.h"

static WsEncoding
encoding_for_type(Oid type_oid)
{
	switch (type_oid)
	{
		case BOOLOID:
			return WS_ENC_BOOL;
		case INT2OID:
			return WS_ENC_INT2;
		case INT4OID:
			return WS_ENC_INT4;
		case INT8OID:
			return WS_ENC_INT8;
		case OIDOID:
			return WS_ENC_OID;
		case FLOAT4OID:
			return WS_ENC_FLOAT4;
		case FLOAT8OID:
			return WS_ENC_FLOAT8;
		case NUMERICOID:
			return WS_ENC_NUMERIC;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return WS_ENC_TEXT;
		case NAMEOID:
			return WS_ENC_NAME;
		case JSONOID:
			return WS_ENC_JSON;
		case JSONBOID:
			return WS_ENC_JSONB;
		case BYTEAOID:
			return WS_ENC_BYTEA;
		case UUIDOID:
			return WS_ENC_UUID;
		case DATEOID:
			return WS_ENC_DATE;
		case TIMESTAMPOID:
			return WS_ENC_TIMESTAMP;
		case TIMESTAMPTZOID:
			return WS_ENC_TIMESTAMPTZ;
		case TIMEOID:
			return WS_ENC_TIME;
		default:
			return type_is_array(type_oid) ? WS_ENC_ARRAY : WS_ENC_OUTPUT;
	}
}

/*
 * Prepares the encoder for values of type_oid.  Domains are encoded as
 * their base type.  Everything the encoder points to is allocated in mcxt.
 */
void
ws_type_encoder_init(WsTypeEncoder *encoder, Oid type_oid, MemoryContext mcxt)
{
	Oid			base_type = getBaseType(type_oid);
	Oid			output_oid;
	bool		is_varlena;

	memset(encoder, 0, sizeof(WsTypeEncoder));
	encoder->type_oid = base_type;
	encoder->encoding = encoding_for_type(base_type);

	getTypeOutputInfo(base_type, &output_oid, &is_varlena);
	fmgr_info_cxt(output_oid, &encoder->output_fn, mcxt);

	if (encoder->encoding == WS_ENC_ARRAY)
	{
		Oid			elem_type = get_element_type(base_type);

		get_typlenbyvalalign(elem_type, &encoder->elem_len,
							 &encoder->elem_byval, &encoder->elem_align);
		encoder->element = MemoryContextAlloc(mcxt, sizeof(WsTypeEncoder));
		ws_type_encoder_init(encoder->element, elem_type, mcxt);
	}
}

static void
put_server_string(StringInfo out, char tag, const char *str, int len)
{
	appendStringInfoChar(out, tag);
	ws_put_text(out, str, len);
}

static void
put_output_text(StringInfo out, char tag, const WsTypeEncoder *encoder,
				Datum value)
{
	char	   *text = OutputFunctionCall((FmgrInfo *) &encoder->output_fn,
										  value);

	put_server_string(out, tag, text, strlen(text));
	pfree(text);
}

static void
put_timestamp(StringInfo out, char tag, const WsTypeEncoder *encoder,
			  Datum value)
{
	Timestamp	ts = DatumGetTimestamp(value);
	int64		unix_usecs;

	if (TIMESTAMP_IS_NOBEGIN(ts))
		appendStringInfoChar(out, WS_VAL_NEG_INFINITY);
	else if (TIMESTAMP_IS_NOEND(ts))
		appendStringInfoChar(out, WS_VAL_POS_INFINITY);
	else if (pg_add_s64_overflow(ts, WS_UNIX_TO_PG_EPOCH_USECS, &unix_usecs))
	{
		/* the last 29 years before year 294277 do not fit: send as text */
		put_output_text(out, WS_VAL_TEXT, encoder, value);
	}
	else
	{
		appendStringInfoChar(out, tag);
		ws_put_svarint(out, unix_usecs);
	}
}

/* Encodes a one-dimensional array element by element, else as text. */
static void
put_array(StringInfo out, const WsTypeEncoder *encoder, Datum value)
{
	ArrayType  *array = DatumGetArrayTypeP(value);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;

	if (ARR_NDIM(array) > 1 || (ARR_NDIM(array) == 1 && ARR_LBOUND(array)[0] != 1))
	{
		put_output_text(out, WS_VAL_TEXT, encoder, PointerGetDatum(array));
		return;
	}

	deconstruct_array(array, encoder->element->type_oid, encoder->elem_len,
					  encoder->elem_byval, encoder->elem_align,
					  &elems, &nulls, &nelems);
	appendStringInfoChar(out, WS_VAL_ARRAY);
	ws_put_uvarint(out, nelems);
	for (int i = 0; i < nelems; i++)
		ws_encode_value(out, encoder->element, elems[i], nulls[i]);
	pfree(elems);
	pfree(nulls);
}

/*
 * Appends one tagged value.  The caller handles unchanged TOAST values,
 * which only occur at the top level of a tuple.
 */
void
ws_encode_value(StringInfo out, const WsTypeEncoder *encoder, Datum value,
				bool isnull)
{
	if (isnull)
	{
		appendStringInfoChar(out, WS_VAL_NULL);
		return;
	}

	switch (encoder->encoding)
	{
		case WS_ENC_BOOL:
			appendStringInfoChar(out, DatumGetBool(value) ? WS_VAL_TRUE : WS_VAL_FALSE);
			break;
		case WS_ENC_INT2:
			appendStringInfoChar(out, WS_VAL_INT);
			ws_put_svarint(out, DatumGetInt16(value));
			break;
		case WS_ENC_INT4:
			appendStringInfoChar(out, WS_VAL_INT);
			ws_put_svarint(out, DatumGetInt32(value));
			break;
		case WS_ENC_INT8:
			appendStringInfoChar(out, WS_VAL_INT);
			ws_put_svarint(out, DatumGetInt64(value));
			break;
		case WS_ENC_OID:
			appendStringInfoChar(out, WS_VAL_INT);
			ws_put_svarint(out, DatumGetObjectId(value));
			break;
		case WS_ENC_FLOAT4:
			{
				float4		f = DatumGetFloat4(value);
				uint32		bits;

				memcpy(&bits, &f, sizeof(bits));
				appendStringInfoChar(out, WS_VAL_FLOAT4);
				ws_put_uint32_le(out, bits);
			}
			break;
		case WS_ENC_FLOAT8:
			{
				float8		f = DatumGetFloat8(value);
				uint64		bits;

				memcpy(&bits, &f, sizeof(bits));
				appendStringInfoChar(out, WS_VAL_FLOAT8);
				ws_put_uint64_le(out, bits);
			}
			break;
		case WS_ENC_NUMERIC:
			/* numeric output is plain ASCII, no conversion needed */
			{
				char	   *text = OutputFunctionCall((FmgrInfo *) &encoder->output_fn, value);

				appendStringInfoChar(out, WS_VAL_NUMERIC);
				ws_put_bytes(out, text, strlen(text));
				pfree(text);
			}
			break;
		case WS_ENC_TEXT:
		case WS_ENC_JSON:
			{
				text	   *t = DatumGetTextPP(value);

				put_server_string(out,
								  encoder->encoding == WS_ENC_JSON ? WS_VAL_JSON : WS_VAL_TEXT,
								  VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				if ((Pointer) t != DatumGetPointer(value))
					pfree(t);
			}
			break;
		case WS_ENC_NAME:
			{
				const char *name = NameStr(*DatumGetName(value));

				put_server_string(out, WS_VAL_TEXT, name, strlen(name));
			}
			break;
		case WS_ENC_JSONB:
			put_output_text(out, WS_VAL_JSON, encoder, value);
			break;
		case WS_ENC_BYTEA:
			{
				bytea	   *b = DatumGetByteaPP(value);

				appendStringInfoChar(out, WS_VAL_BYTES);
				ws_put_bytes(out, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
				if ((Pointer) b != DatumGetPointer(value))
					pfree(b);
			}
			break;
		case WS_ENC_UUID:
			appendStringInfoChar(out, WS_VAL_UUID);
			appendBinaryStringInfoNT(out, (const char *) DatumGetUUIDP(value)->data,
									 UUID_LEN);
			break;
		case WS_ENC_DATE:
			{
				DateADT		d = DatumGetDateADT(value);

				if (DATE_IS_NOBEGIN(d))
					appendStringInfoChar(out, WS_VAL_NEG_INFINITY);
				else if (DATE_IS_NOEND(d))
					appendStringInfoChar(out, WS_VAL_POS_INFINITY);
				else
				{
					appendStringInfoChar(out, WS_VAL_DATE);
					ws_put_svarint(out, (int64) d + WS_UNIX_TO_PG_EPOCH_DAYS);
				}
			}
			break;
		case WS_ENC_TIMESTAMP:
			put_timestamp(out, WS_VAL_TIMESTAMP, encoder, value);
			break;
		case WS_ENC_TIMESTAMPTZ:
			put_timestamp(out, WS_VAL_TIMESTAMPTZ, encoder, value);
			break;
		case WS_ENC_TIME:
			appendStringInfoChar(out, WS_VAL_TIME);
			ws_put_uvarint(out, (uint64) DatumGetTimeADT(value));
			break;
		case WS_ENC_ARRAY:
			put_array(out, encoder, value);
			break;
		case WS_ENC_OUTPUT:
			put_output_text(out, WS_VAL_TEXT, encoder, value);
			break;
	}
}
