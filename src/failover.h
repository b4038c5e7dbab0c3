/*-------------------------------------------------------------------------
 *
 * failover.h
 *	  Failover slots (PostgreSQL 17 and later): the worker's slot is
 *	  synchronized to standbys, and decoding waits for them.
 *
 * IDENTIFICATION
 *	  src/failover.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_FAILOVER_H
#define WALSHIP_FAILOVER_H

#include "access/xlogdefs.h"

/* Before the worker acquires its slot: makes it a failover slot. */
extern void ws_failover_prepare_slot(const char *name);

/* How far the worker may decode, given the flush position. */
extern XLogRecPtr ws_failover_read_limit(XLogRecPtr flush);

#endif							/* WALSHIP_FAILOVER_H */
