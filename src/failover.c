/*-------------------------------------------------------------------------
 *
 * failover.c
 *	  Failover slots, on PostgreSQL 17 and later: the worker's slot is a
 *	  failover slot, so a standby with sync_replication_slots = on keeps a
 *	  copy of it that the worker continues from once the standby is
 *	  promoted; and the worker decodes only WAL that the standbys named in
 *	  synchronized_standby_slots have confirmed, so the endpoint never gets a
 *	  change that a promoted standby would not have.
 *
 * progress.c creates the slot with failover = true; a slot an older walship
 * created without it is altered here (ReplicationSlotAlter) before the
 * worker acquires it.  The wait for the standbys is what
 * pg_logical_slot_get_changes() does on these versions
 * (WaitForStandbyConfirmation), at the same record granularity, but
 * without blocking: the worker reads up to the oldest position the
 * standbys' physical slots confirmed, and goes on serving the HTTP side
 * meanwhile.
 *
 * On PostgreSQL 15 and 16 there are no failover slots: these functions do
 * nothing, and a failover loses the slot (the resync path recovers).
 *
 * IDENTIFICATION
 *	  src/failover.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "replication/slot.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/elog.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "failover.h"

/* How often a misconfigured synchronized_standby_slots is reported at most. */
#define WS_STANDBY_WARN_MS		10000

void
ws_failover_prepare_slot(const char *name)
{
#if PG_VERSION_NUM >= 170000
	ReplicationSlot *slot;
	bool		failover = true;

	/* a standby's slots are synchronized, not altered */
	if (RecoveryInProgress())
		return;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		failover = slot->data.failover;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (failover)
		return;

#if PG_VERSION_NUM >= 180000
	{
		bool		on = true;

		ReplicationSlotAlter(name, &on, NULL);
	}
#else
	ReplicationSlotAlter(name, true);
#endif
	ereport(LOG,
			(errmsg("walship made replication slot \"%s\" a failover slot", name),
			 errdetail("Standbys with sync_replication_slots = on keep a copy of it, and the worker of a promoted standby continues from that copy.")));
#endif
}

#if PG_VERSION_NUM >= 170000
/*
 * The oldest position the physical slots named in synchronized_standby_slots
 * confirmed; InvalidXLogRecPtr when one of them is missing, not physical or
 * invalidated (then nothing may be decoded, as in PostgreSQL's walsenders).
 */
static XLogRecPtr
standbys_confirmed(void)
{
	char	   *names = pstrdup(synchronized_standby_slots);
	List	   *list = NIL;
	ListCell   *lc;
	XLogRecPtr	oldest = InvalidXLogRecPtr;
	bool		usable = true;

	if (!SplitIdentifierString(names, ',', &list))
		usable = false;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	foreach(lc, list)
	{
		ReplicationSlot *slot = SearchNamedReplicationSlot((char *) lfirst(lc), false);
		XLogRecPtr	restart;

		if (slot == NULL || !SlotIsPhysical(slot))
		{
			usable = false;
			break;
		}
		SpinLockAcquire(&slot->mutex);
		restart = slot->data.restart_lsn;
		if (slot->data.invalidated != RS_INVAL_NONE)
			restart = InvalidXLogRecPtr;
		SpinLockRelease(&slot->mutex);
		if (XLogRecPtrIsInvalid(restart))
		{
			usable = false;
			break;
		}
		if (XLogRecPtrIsInvalid(oldest) || restart < oldest)
			oldest = restart;
	}
	LWLockRelease(ReplicationSlotControlLock);
	list_free(list);
	pfree(names);
	return usable ? oldest : InvalidXLogRecPtr;
}
#endif

XLogRecPtr
ws_failover_read_limit(XLogRecPtr flush)
{
#if PG_VERSION_NUM >= 170000
	static TimestampTz last_report = 0;
	TimestampTz now;
	int			elevel = DEBUG1;
	XLogRecPtr	confirmed;

	if (MyReplicationSlot == NULL || !MyReplicationSlot->data.failover ||
		synchronized_standby_slots == NULL ||
		synchronized_standby_slots[0] == '\0')
		return flush;

	/* what is wrong with the setting is reported, but not every few ms */
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(last_report, now, WS_STANDBY_WARN_MS))
	{
		elevel = WARNING;
		last_report = now;
	}
	if (StandbySlotsHaveCaughtup(flush, elevel))
		return flush;
	confirmed = standbys_confirmed();
	return Min(confirmed, flush);
#else
	return flush;
#endif
}
