/*-------------------------------------------------------------------------
 *
 * wal_budget.c
 *	  walship.max_retained_wal: the most WAL the worker's slot may keep in
 *	  pg_wal before walship gives the slot up rather than fill the disk.
 *
 * The worker checks the budget about once a second, wherever it is: in its
 * main loop, while it waits for its prerequisites (or is paused or
 * disabled), and while a large transaction waits for the endpoint inside
 * decoding.  The retained WAL is measured as walship.status shows it: the
 * flush position minus the slot's restart_lsn.
 *
 * - Past WS_BUDGET_WARN_PERCENT of the budget it logs a WARNING with the
 *   amount, the budget and what to do, at most once a minute, and a LOG
 *   line once the slot is back under.
 * - Past the budget it drops the slot, on purpose, and raises an ERROR
 *   naming the exact range of changes abandoned: everything committed after
 *   the slot's confirmed position.  The worker restarts like after any
 *   error and creates a new slot; when it starts shipping from that one it
 *   warns again with the whole gap, from the old confirmed position to the
 *   new slot's start.  The walship.progress row keeps the old confirmed
 *   position, so the gap can also be told from the catalog.
 *
 * On a standby (in recovery) nothing is checked: a slot synchronized from
 * the primary is the primary's to keep or drop.  PostgreSQL's own
 * max_slot_wal_keep_size stays the last resort: it also acts when the
 * worker does not run.
 *
 * IDENTIFICATION
 *	  src/wal_budget.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "shared_state.h"
#include "wal_budget.h"

/* How often the budget is checked at most. */
#define WS_BUDGET_CHECK_MS		1000
/* How often the warning is repeated at most while it holds. */
#define WS_BUDGET_WARN_REPEAT_MS 60000

static TimestampTz last_check = 0;
static TimestampTz last_warning = 0;
static bool warned = false;

int64
ws_wal_budget_bytes(void)
{
	if (walship_max_retained_wal < 0)
		return -1;
	return (int64) walship_max_retained_wal * 1024 * 1024;
}

/* A size in MB, for messages; buf holds WS_SIZE_TEXT bytes. */
#define WS_SIZE_TEXT 32
static const char *
size_text(char *buf, int64 bytes)
{
	snprintf(buf, WS_SIZE_TEXT, "%.1f MB", bytes / (1024.0 * 1024.0));
	return buf;
}

/*
 * The restart and confirmed positions of the worker's slot: the one it
 * holds, or else the walship slot of its name and database that nobody
 * holds.  False when there is none, or it retains nothing (invalidated).
 */
static bool
read_own_slot(XLogRecPtr *restart, XLogRecPtr *confirmed)
{
	ReplicationSlot *slot = MyReplicationSlot;
	bool		found = false;

	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		*restart = slot->data.restart_lsn;
		*confirmed = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
		return !XLogRecPtrIsInvalid(*restart);
	}

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(walship_slot_name, false);
	if (slot != NULL && SlotIsLogical(slot) &&
		slot->data.database == MyDatabaseId &&
		strcmp(NameStr(slot->data.plugin), "walship") == 0)
	{
		SpinLockAcquire(&slot->mutex);
		found = slot->active_pid == 0;
		*restart = slot->data.restart_lsn;
		*confirmed = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return found && !XLogRecPtrIsInvalid(*restart);
}

/*
 * Drops the slot and raises the error that says what was abandoned; the
 * worker then restarts as after any error.  May run inside decoding: the
 * error unwinds it, nothing touches the slot again.
 */
static void
give_up(XLogRecPtr restart, XLogRecPtr confirmed, XLogRecPtr current,
		int64 retained, int64 budget)
{
	char		retained_text[WS_SIZE_TEXT];
	char		budget_text[WS_SIZE_TEXT];

	if (MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	ReplicationSlotDrop(walship_slot_name, true);
	ws_shared_note_slot_given_up(confirmed, current);

	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("walship gave up replication slot \"%s\" over walship.max_retained_wal: changes committed after %X/%X were not shipped (WAL written up to %X/%X)",
					walship_slot_name, LSN_FORMAT_ARGS(confirmed),
					LSN_FORMAT_ARGS(current)),
			 errdetail("The slot retained %s of WAL from %X/%X on, more than walship.max_retained_wal (%s); it was dropped so that the WAL can be removed. Changes committed until a new slot is created are not shipped either.",
					   size_text(retained_text, retained),
					   LSN_FORMAT_ARGS(restart),
					   size_text(budget_text, budget)),
			 errhint("The worker creates a new slot when it restarts. Resynchronize the target to recover the changes not shipped, and fix what held the slot back (see walship.status).")));
}

void
ws_wal_budget_check(void)
{
	TimestampTz now = GetCurrentTimestamp();
	XLogRecPtr	restart;
	XLogRecPtr	confirmed;
	XLogRecPtr	current;
	int64		budget = ws_wal_budget_bytes();
	int64		retained;
	char		retained_text[WS_SIZE_TEXT];
	char		budget_text[WS_SIZE_TEXT];

	if (budget < 0 || RecoveryInProgress() ||
		!TimestampDifferenceExceeds(last_check, now, WS_BUDGET_CHECK_MS))
		return;
	last_check = now;
	if (!read_own_slot(&restart, &confirmed))
		return;
	current = GetFlushRecPtr(NULL);
	retained = current > restart ? (int64) (current - restart) : 0;

	if (retained > budget)
		give_up(restart, confirmed, current, retained, budget);
	else if (retained >= budget / 100 * WS_BUDGET_WARN_PERCENT)
	{
		if (!warned ||
			TimestampDifferenceExceeds(last_warning, now, WS_BUDGET_WARN_REPEAT_MS))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("replication slot \"%s\" retains %s of WAL, %d%% of walship.max_retained_wal (%s)",
							walship_slot_name, size_text(retained_text, retained),
							(int) (retained * 100.0 / budget),
							size_text(budget_text, budget)),
					 errdetail("The slot is confirmed up to %X/%X and keeps WAL from %X/%X on. Past walship.max_retained_wal walship drops the slot, and the changes not shipped by then need a resync.",
							   LSN_FORMAT_ARGS(confirmed), LSN_FORMAT_ARGS(restart)),
					 errhint("Make the endpoint accept the batches (see walship.status), end long-running transactions, or raise walship.max_retained_wal.")));
			warned = true;
			last_warning = now;
		}
	}
	else if (warned)
	{
		ereport(LOG,
				(errmsg("replication slot \"%s\" retains %s of WAL again, under %d%% of walship.max_retained_wal",
						walship_slot_name, size_text(retained_text, retained),
						WS_BUDGET_WARN_PERCENT)));
		warned = false;
	}
}

void
ws_wal_budget_started(XLogRecPtr start)
{
	XLogRecPtr	confirmed;
	XLogRecPtr	end;

	if (!ws_shared_take_slot_given_up(&confirmed, &end))
		return;
	warned = false;
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("walship ships from a new replication slot \"%s\" from %X/%X on: changes committed between %X/%X and %X/%X were not shipped",
					walship_slot_name, LSN_FORMAT_ARGS(start),
					LSN_FORMAT_ARGS(confirmed), LSN_FORMAT_ARGS(start)),
			 errdetail("The previous slot was given up over walship.max_retained_wal when WAL was written up to %X/%X.",
					   LSN_FORMAT_ARGS(end)),
			 errhint("Resynchronize the target, for example with walship.backfill_publication().")));
}

const char *
ws_wal_budget_state(bool slot_given_up, bool retained_known, int64 retained)
{
	int64		budget = ws_wal_budget_bytes();

	if (slot_given_up)
		return "slot given up";
	if (budget < 0)
		return "unlimited";
	if (!retained_known)
		return NULL;
	if (retained > budget)
		return "exceeded";
	if (retained >= budget / 100 * WS_BUDGET_WARN_PERCENT)
		return "warning";
	return "ok";
}
