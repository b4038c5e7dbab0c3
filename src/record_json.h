/*-------------------------------------------------------------------------
 *
 * record_json.h
 *	  JSON rendering of decoded walship records.
 *
 * IDENTIFICATION
 *	  src/record_json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_RECORD_JSON_H
#define WALSHIP_RECORD_JSON_H

#include "utils/hsearch.h"

#include "format.h"

/*
 * Text that every envelope line of one transaction repeats, rendered by
 * ndjson.c on its first line; ws_stream_context_track() marks it stale at
 * the next transaction.
 */
typedef struct WsTransactionJson
{
	bool		valid;
	int			source_len;
	char		source[256];	/* , "commit_lsn": ..., "ordinal": */
	int			id_len;
	char		id[32];			/* , "id": "<commit LSN, 16 hex digits>- */
} WsTransactionJson;

/* What a reader of a record stream remembers between records. */
typedef struct WsStreamContext
{
	MemoryContext memory;		/* holds the relations */
	HTAB	   *relations;		/* rel_id -> latest RELATION record */
	XLogRecPtr	commit_lsn;		/* of the open transaction, or invalid */
	TransactionId xid;			/* of the open transaction */
	int64		commit_time;	/* of the open transaction, us since 1970 */
	char		commit_time_json[64];	/* commit_time as a JSON string */
	WsTransactionJson *transaction_json;	/* in memory */

	/*
	 * Whether json values are known to be valid JSON, as in records walship's
	 * own output plugin just wrote.  When false (the default, for records
	 * from anywhere) each one is parsed before being embedded.
	 */
	bool		json_trusted;
} WsStreamContext;

/* JSON text rendered once and kept, or data NULL when not yet rendered. */
typedef struct WsJsonText
{
	char	   *data;
	int			len;
} WsJsonText;

/* A relation's names as JSON, rendered on first use (by ndjson.c). */
typedef struct WsRelationJson
{
	WsJsonText	schema;			/* JSON string */
	WsJsonText	table;			/* JSON string */
	WsJsonText *column_keys;	/* per column: ", ", JSON string, ": " */
} WsRelationJson;

/*
 * appendBinaryStringInfo(), appendStringInfoChar() and
 * appendStringInfoString() with the common case, room enough in out's
 * buffer, inline: the encoders call them for every key and value.
 */
static inline void
ws_append_bytes(StringInfo out, const char *data, int len)
{
	if (likely(out->maxlen - out->len > len))
	{
		memcpy(out->data + out->len, data, len);
		out->len += len;
		out->data[out->len] = '\0';
	}
	else
		appendBinaryStringInfo(out, data, len);
}

static inline void
ws_append_char(StringInfo out, char c)
{
	if (likely(out->maxlen - out->len > 1))
	{
		out->data[out->len++] = c;
		out->data[out->len] = '\0';
	}
	else
		appendStringInfoChar(out, c);
}

static inline void
ws_append_str(StringInfo out, const char *str)
{
	ws_append_bytes(out, str, strlen(str));
}

extern void ws_stream_context_init(WsStreamContext *context);
extern void ws_stream_context_track(WsStreamContext *context,
									const WsRecord *record);
extern const WsRelation *ws_stream_relation(const WsStreamContext *context,
											uint64 rel_id);
extern const WsRelation *ws_stream_relation_and_json(const WsStreamContext *context,
													uint64 rel_id,
													WsRelationJson **json);
extern const WsJsonText *ws_cached_json_string(const WsStreamContext *context,
											  WsJsonText *cache,
											  const char *prefix,
											  const char *str,
											  const char *suffix);
extern bool ws_numeric_is_finite(const char *data, Size len);
extern char *ws_printable_prefix(const char *data, Size len);
extern void ws_value_to_json(StringInfo out, const WsValue *value,
							 bool json_trusted);
extern void ws_append_lsn(StringInfo out, XLogRecPtr lsn);
extern void ws_append_datetime(StringInfo out, const WsValue *value);
extern void ws_append_json_string(StringInfo out, const char *str);
extern void ws_append_json_key(StringInfo out, bool *first, const char *key);
extern void ws_append_int64(StringInfo out, int64 value);
extern void ws_append_uint64(StringInfo out, uint64 value);
extern void ws_record_to_json(StringInfo out, const WsRecord *record,
							  const WsStreamContext *context);

#endif							/* WALSHIP_RECORD_JSON_H */
