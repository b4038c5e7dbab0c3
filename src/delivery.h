/*-------------------------------------------------------------------------
 *
 * delivery.h
 *	  Delivery of sealed batches to the endpoint: requests, retries,
 *	  rejections and dead letters.
 *
 * IDENTIFICATION
 *	  src/delivery.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_DELIVERY_H
#define WALSHIP_DELIVERY_H

#include "batch.h"
#include "http_transport.h"
#include "shared_state.h"

/*
 * The delivery side of the worker, owned by it.  The batcher and the HTTP
 * client are the worker's; delivery sends the batcher's sealed batches
 * with the client and marks them done when acknowledged (or set aside as
 * dead letters); the worker releases done batches and confirms the slot.
 */
typedef struct WsDelivery
{
	MemoryContext context;		/* the worker's */
	WsHttpClient *http;
	WsBatcher  *batcher;
	List	   *rejected;		/* WsRejectedBatch * for walship.dead_letter */
	uint64		last_error_batch;	/* batch whose error is being reported */
	uint64		last_request_id;	/* of the request started last */
	bool		settings_problem;	/* settings that cannot work together */
	bool		progress_dirty; /* counters changed since last taken */
	char	   *held_endpoint;	/* walship.endpoint a Retry-After holds, */
	TimestampTz held_until;		/* until then; NULL when none */
	struct WsManagedTables *tables; /* rowbinary: the ClickHouse tables */
	int			shape_sweep_at; /* cached relation shapes that make
								 * the ones no longer used be freed */
} WsDelivery;

extern WsDelivery *ws_delivery_create(MemoryContext context,
									  WsHttpClient *http, WsBatcher *batcher);
extern void ws_delivery_pump(WsDelivery *delivery, int timeout_ms);
extern void ws_delivery_write_dead_letters(WsDelivery *delivery);
extern bool ws_delivery_take_progress(WsDelivery *delivery);
extern WsWorkerState ws_delivery_state(WsDelivery *delivery);

#endif							/* WALSHIP_DELIVERY_H */
