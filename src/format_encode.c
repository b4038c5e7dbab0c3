/*-------------------------------------------------------------------------
 *
 * format_encode.c
 *	  Low-level writers of the walship binary format: varints, fixed-width
 *	  little-endian integers and record framing.
 *
 * What goes into each record is decided by the output plugin (plugin.c and
 * tuple_encode.c); this file only knows how bytes are laid out, as specified
 * in docs/format.md.
 *
 * IDENTIFICATION
 *	  src/format_encode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "format.h"

/* Largest uvarint: 64 bits in 7-bit groups. */
#define WS_MAX_UVARINT_LEN	10

/* Writes value as LEB128 into buf; returns the number of bytes used. */
static int
uvarint_to_buffer(char *buf, uint64 value)
{
	int			len = 0;

	while (value >= 0x80)
	{
		buf[len++] = (char) ((value & 0x7F) | 0x80);
		value >>= 7;
	}
	buf[len++] = (char) value;
	return len;
}

void
ws_put_uvarint(StringInfo out, uint64 value)
{
	char		buf[WS_MAX_UVARINT_LEN];

	appendBinaryStringInfoNT(out, buf, uvarint_to_buffer(buf, value));
}

void
ws_put_svarint(StringInfo out, int64 value)
{
	/* zigzag: 0, -1, 1, -2, ... map to 0, 1, 2, 3, ... */
	ws_put_uvarint(out, ((uint64) value << 1) ^ (uint64) (value >> 63));
}

void
ws_put_uint32_le(StringInfo out, uint32 value)
{
	char		buf[4];

	for (int i = 0; i < 4; i++)
		buf[i] = (char) ((value >> (8 * i)) & 0xFF);
	appendBinaryStringInfoNT(out, buf, 4);
}

void
ws_put_uint64_le(StringInfo out, uint64 value)
{
	char		buf[8];

	for (int i = 0; i < 8; i++)
		buf[i] = (char) ((value >> (8 * i)) & 0xFF);
	appendBinaryStringInfoNT(out, buf, 8);
}

void
ws_put_bytes(StringInfo out, const char *data, Size len)
{
	ws_put_uvarint(out, len);
	appendBinaryStringInfoNT(out, data, len);
}

/*
 * Starts a record.  One byte is reserved for the body length, which is
 * enough for bodies under 128 bytes; ws_record_end() moves longer bodies to
 * make room for a longer varint.
 */
WsRecordMark
ws_record_start(StringInfo out, char kind)
{
	WsRecordMark mark;

	appendStringInfoChar(out, kind);
	appendStringInfoChar(out, 0);
	mark.body_start = out->len;
	return mark;
}

void
ws_record_end(StringInfo out, WsRecordMark mark)
{
	uint64		body_len = out->len - mark.body_start;
	char		lenbuf[WS_MAX_UVARINT_LEN];
	int			lenlen = uvarint_to_buffer(lenbuf, body_len);

	if (lenlen > 1)
	{
		enlargeStringInfo(out, lenlen - 1);
		memmove(out->data + mark.body_start + lenlen - 1,
				out->data + mark.body_start, body_len);
		out->len += lenlen - 1;
		out->data[out->len] = '\0';
	}
	memcpy(out->data + mark.body_start - 1, lenbuf, lenlen);
}

/*
 * Writes a string from the server encoding as length-prefixed UTF-8, as
 * every string in the format is.
 */
void
ws_put_text(StringInfo out, const char *str, Size len)
{
	char	   *utf8 = pg_server_to_any(str, len, PG_UTF8);

	if (utf8 == str)
		ws_put_bytes(out, str, len);
	else
	{
		ws_put_bytes(out, utf8, strlen(utf8));
		pfree(utf8);
	}
}
