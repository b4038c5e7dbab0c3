/*-------------------------------------------------------------------------
 *
 * wal_budget.h
 *	  walship.max_retained_wal: warning about, and giving up, a slot that
 *	  retains too much WAL.
 *
 * IDENTIFICATION
 *	  src/wal_budget.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_WAL_BUDGET_H
#define WALSHIP_WAL_BUDGET_H

#include "access/xlogdefs.h"

/* Past this share of walship.max_retained_wal the worker warns. */
#define WS_BUDGET_WARN_PERCENT	80

/* In the worker: checks the slot against the budget (see wal_budget.c). */
extern void ws_wal_budget_check(void);

/* In the worker, once it decodes a slot from start on. */
extern void ws_wal_budget_started(XLogRecPtr start);

/* The budget in bytes, -1 for no limit. */
extern int64 ws_wal_budget_bytes(void);

/* walship.status.wal_budget; NULL when it cannot be told. */
extern const char *ws_wal_budget_state(bool slot_given_up, bool retained_known,
									   int64 retained);

#endif							/* WALSHIP_WAL_BUDGET_H */
