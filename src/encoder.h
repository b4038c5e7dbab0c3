/*-------------------------------------------------------------------------
 *
 * encoder.h
 *	  The parallel stage of the shipping worker: encoder/sender workers
 *	  fed through shared memory queues.
 *
 * IDENTIFICATION
 *	  src/encoder.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_ENCODER_H
#define WALSHIP_ENCODER_H

#include "batch.h"

typedef struct WsEncoders WsEncoders;

/*
 * The decoding worker's side.  ws_encoders_start() returns NULL when not
 * one encoder worker could be started (the caller then encodes and sends
 * in-process); ws_encoders_pump() hands sealed batches over and marks the
 * batches the encoders finished as done, waiting at most timeout_ms for
 * either when there is nothing to do.
 */
extern WsEncoders *ws_encoders_start(MemoryContext context, int nworkers);
extern void ws_encoders_stop(WsEncoders *encoders);
extern void ws_encoders_pump(WsEncoders *encoders, WsBatcher *batcher,
							 int timeout_ms);
extern int	ws_encoders_count(const WsEncoders *encoders);
extern int	ws_encoders_max_outstanding(void);

/* The encoder worker's entry point. */
extern PGDLLEXPORT void walship_encoder_main(Datum main_arg);

/* worker.c: the HTTP client's settings, shared with the encoders */
struct WsHttpClient;
extern void ws_worker_configure_http(struct WsHttpClient *http,
									 MemoryContext context);

#endif							/* WALSHIP_ENCODER_H */
