/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The walship.* configuration parameters.
 *
 * IDENTIFICATION
 *	  src/settings.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_SETTINGS_H
#define WALSHIP_SETTINGS_H

#include "nodes/pg_list.h"

#include "compression.h"
#include "ndjson.h"
#include "secrets.h"			/* ws_endpoint_for_display() */

typedef enum WsFormat
{
	WS_FORMAT_BINARY,
	WS_FORMAT_NDJSON,
	WS_FORMAT_ROWBINARY			/* ClickHouse INSERT ... FORMAT RowBinary */
} WsFormat;

typedef enum WsOnRejected
{
	WS_ON_REJECTED_STOP,
	WS_ON_REJECTED_DEAD_LETTER
} WsOnRejected;

/* walship.on_slot_lost */
typedef enum WsOnSlotLost
{
	WS_ON_SLOT_LOST_RESYNC,		/* new slot, backfill, RESYNC records */
	WS_ON_SLOT_LOST_STOP		/* error state until the operator acts */
} WsOnSlotLost;

/* Longest walship.clickhouse_database accepted. */
#define WS_CLICKHOUSE_MAX_IDENT 127

extern bool walship_enabled;
extern char *walship_database;
extern char *walship_slot_name;
extern char *walship_publication;
extern char *walship_endpoint;
extern int	walship_format;
extern int	walship_ndjson_shape;
extern int	walship_dialect;	/* WsDialect */
extern int	walship_compression;
extern int	walship_batch_max_changes;
extern int	walship_batch_max_bytes;	/* kB */
extern int	walship_batch_max_delay;	/* ms */
extern int	walship_max_inflight;
extern int	walship_http_timeout;	/* ms */
extern int	walship_connect_timeout;	/* ms */
extern int	walship_retry_min_delay;	/* ms */
extern int	walship_retry_max_delay;	/* ms */
extern char *walship_headers;
extern char *walship_auth_token_file;
extern char *walship_basic_auth_file;
extern char *walship_headers_file;
extern char *walship_tls_ca_file;
extern bool walship_tls_verify;
extern int	walship_on_rejected;
extern int	walship_backfill_max_rate;	/* rows per second, 0: no limit */
extern int	walship_backfill_chunk_timeout;	/* ms, 0: no limit */
extern bool walship_initial_backfill;
extern int	walship_on_slot_lost;
extern char *walship_clickhouse_database;	/* "": not set */
extern int	walship_max_retained_wal;	/* MB, -1: no limit */

/*
 * walship.encoder_workers: its default, chosen from bench/worker_bench.sh,
 * and its most (the slots shared_state.c keeps for encoders).
 */
#define WS_DEFAULT_ENCODER_WORKERS	2
#define WS_MAX_ENCODER_WORKERS		16
extern int	walship_encoder_workers;
extern int	walship_compression_level;	/* 0: the method's default */
extern bool walship_clickhouse_manage_tables;

extern void ws_define_settings(void);

/* walship.headers as a list of "Name: value" strings */
extern List *ws_parse_headers(const char *value);

#endif							/* WALSHIP_SETTINGS_H */
