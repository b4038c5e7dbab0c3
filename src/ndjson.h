/*-------------------------------------------------------------------------
 *
 * ndjson.h
 *	  Encoding of walship change records as newline-delimited JSON, for
 *	  endpoints that ingest JSON (walship.format = ndjson).
 *
 * IDENTIFICATION
 *	  src/ndjson.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_NDJSON_H
#define WALSHIP_NDJSON_H

#include "dialect.h"
#include "format.h"
#include "record_json.h"

typedef enum WsNdjsonShape
{
	WS_NDJSON_ENVELOPE,			/* before / after / op / source */
	WS_NDJSON_FLAT				/* the row plus _op, _lsn, _seq, ... */
} WsNdjsonShape;

typedef struct WsNdjsonOptions
{
	WsNdjsonShape shape;
	WsDialect	dialect;		/* how values are written */
} WsNdjsonOptions;

/*
 * Appends the line(s) for one record to out, each ending in '\n'.  Only
 * INSERT, UPDATE, DELETE and TRUNCATE produce lines; the stream context
 * (already updated with ws_stream_context_track for this record) supplies
 * relation names and the transaction's commit LSN, xid and time.
 * Returns the number of lines appended.
 */
/*
 * A decoded tuple, indexed by column number of its relation (for the flat
 * shape's encoders: ndjson.c and rowbinary.c).
 */
typedef struct WsFlatRow
{
	bool		valid;			/* false: the record has no such tuple */
	WsValue    *values;			/* ncolumns entries */
	bool	   *present;		/* has the tuple a value for the column? */
} WsFlatRow;

/*
 * Decodes a tuple into row, by column number (a key tuple holds the key
 * columns only); raises an error unless it has the values docs/format.md
 * section 4.9 prescribes.
 */
extern void ws_flat_read_row(WsFlatRow *row, const WsTuple *tuple,
							 const WsRelation *rel, bool key_only);

/* Whether an UPDATE moved the row to another key (before: its old row). */
extern bool ws_flat_key_changed(const WsFlatRow *before,
								const WsFlatRow *after,
								const WsRelation *rel);

/* The flat shape's _op of a change: "c", "u", "d", "t" or "r". */
extern const char *ws_flat_op_name(char kind);

/*
 * The relation of a record the flat shape writes a row for (INSERT,
 * UPDATE, DELETE, READ), or NULL for any other record; a TRUNCATE is
 * reported as not shipped (the flat shape has no row that empties a
 * table).  Raises an error when the relation was never described.
 */
extern const WsRelation *ws_flat_row_relation(const WsStreamContext *stream,
											  const WsRecord *record);

extern int	ws_ndjson_append(StringInfo out, const WsRecord *record,
							 const WsStreamContext *stream,
							 const WsNdjsonOptions *options);

#endif							/* WALSHIP_NDJSON_H */
