/*-------------------------------------------------------------------------
 *
 * format.h
 *	  The walship binary change-record format, versions 1 and 2: record
 *	  kinds, value tags, and the encoder and decoder interfaces.
 *
 * docs/format.md is the human-readable specification of these bytes.  This
 * header is its single source of truth in code: the output plugin writes
 * records only through format_encode.c, and everything that reads records
 * (walship.decode(), the shipping worker's encoders, batch assembly, the
 * backfill's watch on the stream) goes through format_decode.c.
 *
 * IDENTIFICATION
 *	  src/format.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_FORMAT_H
#define WALSHIP_FORMAT_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"

/*
 * Version 2 adds the READ record (rows of a backfill) and the RESYNC record
 * (a table resynced after the slot was lost: rows with a lower version
 * that were not sent again are gone).  A consumer asks for a version; BEGIN
 * records carry the one asked for, and a version 1 stream never holds a
 * READ or RESYNC record.  Only the shipping worker writes either.
 */
#define WALSHIP_FORMAT_VERSION		2
#define WALSHIP_FORMAT_VERSION_MIN	1

/*
 * Record kinds.  Every record is framed as
 *		kind (1 byte) | body length (uvarint) | body
 * so that fields appended to a body in a later minor revision can be
 * skipped.  A new kind or value tag needs a new format version.
 */
#define WS_REC_BEGIN		'B'
#define WS_REC_COMMIT		'C'
#define WS_REC_RELATION		'R'
#define WS_REC_INSERT		'I'
#define WS_REC_UPDATE		'U'
#define WS_REC_DELETE		'D'
#define WS_REC_TRUNCATE		'T'
#define WS_REC_MESSAGE		'M'
#define WS_REC_READ			'S'		/* a backfilled row (version 2) */
#define WS_REC_RESYNC		'X'		/* a table resynced (version 2) */

/*
 * READ records refer to RELATION records with ids from this value on, one
 * per backfill, so that they never collide with the small ids the output
 * plugin gives the relations of the change stream.
 */
#define WS_BACKFILL_REL_ID_BASE		(UINT64CONST(1) << 32)

/* Prefix of the logical messages that bracket a backfill chunk. */
#define WS_WATERMARK_PREFIX			"walship.watermark"

/* Value tags: one byte in front of every value in a tuple or array. */
#define WS_VAL_NULL			'n'
#define WS_VAL_UNCHANGED	'u'		/* unchanged TOASTed value, not sent */
#define WS_VAL_FALSE		'f'
#define WS_VAL_TRUE			't'
#define WS_VAL_INT			'i'		/* zigzag varint */
#define WS_VAL_FLOAT4		'r'		/* 4 bytes, IEEE 754, little-endian */
#define WS_VAL_FLOAT8		'd'		/* 8 bytes, IEEE 754, little-endian */
#define WS_VAL_NUMERIC		'e'		/* uvarint length + decimal text */
#define WS_VAL_TEXT			's'		/* uvarint length + UTF-8 text */
#define WS_VAL_JSON			'j'		/* uvarint length + JSON text */
#define WS_VAL_BYTES		'b'		/* uvarint length + raw bytes */
#define WS_VAL_UUID			'g'		/* 16 bytes, RFC 4122 order */
#define WS_VAL_DATE			'D'		/* zigzag varint days since 1970-01-01 */
#define WS_VAL_TIMESTAMP	'T'		/* zigzag varint us since 1970-01-01 */
#define WS_VAL_TIMESTAMPTZ	'Z'		/* same, UTC */
#define WS_VAL_TIME			'h'		/* uvarint us since midnight */
#define WS_VAL_POS_INFINITY	'P'		/* date or timestamp 'infinity' */
#define WS_VAL_NEG_INFINITY	'N'		/* date or timestamp '-infinity' */
#define WS_VAL_ARRAY		'a'		/* uvarint count + that many values */

/* Flags of a column in a RELATION record. */
#define WS_COL_KEY			0x01	/* part of the replica identity */
#define WS_COL_NOT_NULL		0x02
#define WS_COL_PRIMARY_KEY	0x04

/* Which old tuple an UPDATE or DELETE carries. */
#define WS_OLD_NONE			'n'
#define WS_OLD_KEY			'k'		/* replica identity columns only */
#define WS_OLD_FULL			'f'		/* every column (REPLICA IDENTITY FULL) */

/* TRUNCATE flags. */
#define WS_TRUNCATE_CASCADE			0x01
#define WS_TRUNCATE_RESTART_SEQS	0x02

/* MESSAGE flags. */
#define WS_MESSAGE_TRANSACTIONAL	0x01

/* Seconds between the Unix epoch and the PostgreSQL epoch (2000-01-01). */
#define WS_UNIX_TO_PG_EPOCH_DAYS	10957
#define WS_UNIX_TO_PG_EPOCH_USECS	INT64CONST(946684800000000)

/* ---------------------------------------------------------------------
 * Encoder (format_encode.c): appends to a StringInfo.
 * ---------------------------------------------------------------------
 */
extern void ws_put_uvarint(StringInfo out, uint64 value);
extern void ws_put_svarint(StringInfo out, int64 value);
extern void ws_put_uint32_le(StringInfo out, uint32 value);
extern void ws_put_uint64_le(StringInfo out, uint64 value);
extern void ws_put_bytes(StringInfo out, const char *data, Size len);
extern void ws_put_text(StringInfo out, const char *str, Size len);

/*
 * A record is written with ws_record_start(), its body appended with the
 * ws_put_* functions, and closed with ws_record_end(), which fills in the
 * body length.  The returned mark must be passed back unchanged.
 */
typedef struct WsRecordMark
{
	int			body_start;		/* offset of the body in the StringInfo */
} WsRecordMark;

extern WsRecordMark ws_record_start(StringInfo out, char kind);
extern void ws_record_end(StringInfo out, WsRecordMark mark);

/* ---------------------------------------------------------------------
 * Decoder (format_decode.c): bounds-checked reads from a byte range.
 * Every malformed input raises ERRCODE_DATA_CORRUPTED.
 * ---------------------------------------------------------------------
 */
typedef struct WsReader
{
	const uint8 *data;
	Size		len;
	Size		pos;
} WsReader;

/* One value from a tuple or an array. */
typedef struct WsValue
{
	char		tag;			/* WS_VAL_* */
	int64		int_value;		/* INT, DATE, TIMESTAMP(TZ), TIME */
	double		float_value;	/* FLOAT4, FLOAT8 */
	const char *data;			/* NUMERIC, TEXT, JSON, BYTES, UUID; not
								 * NUL-terminated */
	Size		len;
	WsReader	elements;		/* ARRAY: the encoded elements */
	uint64		nelements;
} WsValue;

typedef struct WsColumn
{
	uint8		flags;			/* WS_COL_* */
	char	   *name;
	Oid			type_oid;
	int32		typmod;
	char	   *type_name;
} WsColumn;

typedef struct WsRelation
{
	uint64		rel_id;
	Oid			relation_oid;
	char	   *schema_name;
	char	   *table_name;
	char		replica_identity;
	int			ncolumns;
	WsColumn   *columns;
} WsRelation;

/* A tuple: a count and the still-encoded values, read with ws_read_value. */
typedef struct WsTuple
{
	uint64		nvalues;
	WsReader	values;
} WsTuple;

typedef struct WsRecord
{
	char		kind;			/* WS_REC_* */
	WsReader	body;			/* the whole body, for skipping */

	/* BEGIN */
	uint8		format_version;
	TransactionId xid;
	/* BEGIN, COMMIT */
	XLogRecPtr	commit_lsn;
	int64		commit_time;	/* us since the Unix epoch */
	/* COMMIT */
	XLogRecPtr	end_lsn;
	uint64		nchanges;

	/* RELATION */
	WsRelation	relation;
	const char *definition;		/* the body after the relation id: what
								 * the record says of the relation */
	Size		definition_len;

	/* INSERT, UPDATE, DELETE, TRUNCATE, MESSAGE, READ */
	uint64		ordinal;
	/* INSERT, UPDATE, DELETE, READ */
	uint64		rel_id;
	char		old_kind;		/* WS_OLD_*, UPDATE and DELETE */
	WsTuple		old_tuple;
	WsTuple		new_tuple;
	XLogRecPtr	change_lsn;		/* of the change's WAL record; invalid if
								 * the record does not carry it.  READ: the
								 * row's version (the chunk's low watermark) */

	/* READ, RESYNC */
	XLogRecPtr	read_position;	/* where the rows go out: just before the
								 * end of the chunk's high watermark */
	/* RESYNC: its version is change_lsn, like a READ's */
	int64		read_time;		/* us since the Unix epoch */

	/* TRUNCATE */
	uint8		truncate_flags;
	uint64		nrelations;
	uint64	   *rel_ids;

	/* MESSAGE */
	uint8		message_flags;
	XLogRecPtr	message_lsn;
	const char *prefix;			/* NUL-terminated copy */
	const char *content;
	Size		content_len;
} WsRecord;

extern void ws_reader_init(WsReader *reader, const void *data, Size len);
extern bool ws_reader_done(const WsReader *reader);
extern uint64 ws_get_uvarint(WsReader *reader);
extern int64 ws_get_svarint(WsReader *reader);
extern uint64 ws_get_uint64_le(WsReader *reader);
extern uint8 ws_get_byte(WsReader *reader);
extern const char *ws_get_bytes(WsReader *reader, Size len);

/*
 * Reads the next record.  Relation, tuple and truncate parts are decoded
 * into palloc'd memory in the current memory context.
 */
extern void ws_read_record(WsReader *reader, WsRecord *record);

/*
 * The same in two steps, for readers that route records and decode few of
 * them (batch assembly, the backfill's watch on the stream).  The header is
 * the framing and every field before a tuple, a column list or a message's
 * text: kind; BEGIN and COMMIT whole; RELATION relation.rel_id,
 * relation.relation_oid and definition; INSERT, UPDATE,
 * DELETE rel_id and ordinal; READ those and read_position, read_time;
 * RESYNC whole; TRUNCATE whole; MESSAGE ordinal, message_flags, message_lsn.
 * ws_read_record_rest() reads the remaining fields.
 */
extern void ws_read_record_header(WsReader *reader, WsRecord *record);
extern void ws_read_record_rest(WsRecord *record);

extern void ws_tuple_init(WsTuple *tuple, const void *data, Size len);
extern void ws_read_value(WsReader *reader, WsValue *value);
extern const char *ws_record_kind_name(char kind);

#endif							/* WALSHIP_FORMAT_H */
