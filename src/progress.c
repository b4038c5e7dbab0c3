/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  The shipping worker's catalog: the walship.progress row of its slot,
 *	  walship.dead_letter, the state of walship.backfills, and creating the
 *	  slot.
 *
 * The worker writes here from its main loop only, in short transactions
 * wrapped the worker_spi way.  Its own writes are never shipped: the
 * output plugin never publishes the extension's tables.
 *
 * The worker trusts nothing it finds by name.  Every transaction resolves
 * the catalog through the extension: the schema recorded in pg_extension,
 * and in it the tables (and the function) that are members of the
 * extension, of the expected kind, owned by the extension's owner, which
 * must be a superuser; the schema must be owned by a superuser too, and no
 * other role may create objects in it.  Anything else is refused with an error in the log
 * and walship.status, before any query runs.  The queries then run as the
 * extension's owner in a security-restricted operation under search_path
 * pg_catalog, pg_temp (as VACUUM and index builds run user code), naming
 * the resolved tables by their qualified names while holding a lock on
 * them, so no name in them can be redirected.
 *
 * IDENTIFICATION
 *	  src/progress.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "progress.h"
#include "settings.h"
#include "shared_state.h"

/* The worker's catalog, resolved through the extension. */
typedef struct WsCatalog
{
	Oid			extension;
	Oid			owner;			/* the extension's owner, a superuser */
	Oid			schema;
	char	   *schema_name;
	/* qualified, quoted names of the member tables, locked */
	char	   *progress;
	char	   *dead_letter;
	char	   *backfills;
} WsCatalog;

/* Why the catalog cannot be trusted: a message and a hint. */
typedef struct WsCatalogProblem
{
	char	   *message;
	char	   *hint;
} WsCatalogProblem;

static void finish_resync_if_complete(const WsCatalog *catalog,
									  const char *slot_name);

/* What the restricted context saved, to restore it. */
typedef struct WsRestricted
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} WsRestricted;

static bool
catalog_problem(WsCatalogProblem *problem, char *message, char *hint)
{
	problem->message = message;
	problem->hint = hint;
	return false;
}

/* The owner and schema of an extension, from pg_extension. */
static bool
extension_owner_and_schema(Oid extension, Oid *owner, Oid *schema)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extension));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_extension form = (Form_pg_extension) GETSTRUCT(tuple);

		*owner = form->extowner;
		*schema = form->extnamespace;
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

static char *
role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("%u", role);
}

static Oid
function_owner(Oid function)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(function));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		return InvalidOid;
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Resolves a table of the extension by name in its schema and locks it;
 * it must be a member of the extension, a plain table, and owned by the
 * extension's owner.  Returns its qualified name, or NULL with a problem.
 */
static char *
member_table(const WsCatalog *catalog, const char *name,
			 WsCatalogProblem *problem)
{
	Oid			relid = get_relname_relid(name, catalog->schema);
	HeapTuple	tuple;
	Form_pg_class form;
	char	   *qualified = psprintf("%s.%s", catalog->schema_name, name);
	bool		ok;

	if (!OidIsValid(relid))
	{
		catalog_problem(problem,
						psprintf("table \"%s\" of extension \"walship\" is missing",
								 qualified),
						pstrdup("Drop the extension and its schema, and create the extension again."));
		return NULL;
	}

	/* no rename or drop from here on; the lock makes us see any before */
	LockRelationOid(relid, AccessShareLock);
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
	{
		catalog_problem(problem,
						psprintf("table \"%s\" of extension \"walship\" was dropped concurrently",
								 qualified),
						NULL);
		return NULL;
	}
	form = (Form_pg_class) GETSTRUCT(tuple);
	if (form->relnamespace != catalog->schema ||
		strcmp(NameStr(form->relname), name) != 0)
		ok = catalog_problem(problem,
							 psprintf("table \"%s\" of extension \"walship\" was renamed concurrently",
									  qualified),
							 NULL);
	else if (form->relkind != RELKIND_RELATION ||
			 getExtensionOfObject(RelationRelationId, relid) != catalog->extension)
		ok = catalog_problem(problem,
							 psprintf("relation \"%s\" is not a table of extension \"walship\"",
									  qualified),
							 pstrdup("The walship worker uses only the tables CREATE EXTENSION walship created, and runs nothing else found under their names. "
									 "Put the extension's table back (ALTER EXTENSION walship ADD TABLE), or drop the extension and its schema and create the extension again."));
	else if (form->relowner != catalog->owner)
		ok = catalog_problem(problem,
							 psprintf("table \"%s\" of extension \"walship\" is owned by role \"%s\", not by the extension's owner \"%s\"",
									  qualified, role_name(form->relowner),
									  role_name(catalog->owner)),
							 psprintf("The owner of a table can make the worker run its code. Give it back with ALTER TABLE %s OWNER TO %s.",
									  quote_qualified_identifier(catalog->schema_name, name),
									  quote_identifier(role_name(catalog->owner))));
	else
		ok = true;
	ReleaseSysCache(tuple);
	if (!ok)
		return NULL;
	return quote_qualified_identifier(catalog->schema_name, name);
}

/*
 * Resolves the worker's catalog through the extension (in the current
 * transaction).  False, with the problem, if it is not installed or cannot
 * be trusted.
 */
static bool
resolve_catalog(WsCatalog *catalog, WsCatalogProblem *problem)
{
	HeapTuple	tuple;
	Oid			schema_owner;
	Datum		acl_datum;
	bool		acl_isnull;
	bool		others_may_create = false;

	memset(catalog, 0, sizeof(WsCatalog));
	catalog->extension = get_extension_oid("walship", true);
	if (!OidIsValid(catalog->extension) ||
		!extension_owner_and_schema(catalog->extension, &catalog->owner,
									&catalog->schema))
		return catalog_problem(problem,
							   psprintf("extension \"walship\" is not installed in database \"%s\"",
										walship_database),
							   psprintf("Run CREATE EXTENSION walship in database \"%s\".",
										walship_database));

	/* the owner of the catalog decides what the worker runs: a superuser */
	if (!superuser_arg(catalog->owner))
		return catalog_problem(problem,
							   psprintf("extension \"walship\" is owned by role \"%s\", which is not a superuser",
										role_name(catalog->owner)),
							   pstrdup("The walship worker trusts its catalog only when a superuser owns it: drop the extension and its schema, and create the extension again as a superuser."));

	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(catalog->schema));
	if (!HeapTupleIsValid(tuple))
		return catalog_problem(problem,
							   pstrdup("the schema of extension \"walship\" does not exist"),
							   NULL);
	catalog->schema_name = pstrdup(NameStr(((Form_pg_namespace) GETSTRUCT(tuple))->nspname));
	schema_owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	acl_datum = SysCacheGetAttr(NAMESPACEOID, tuple, Anum_pg_namespace_nspacl,
								&acl_isnull);
	if (!acl_isnull)
	{
		Datum	   *items;
		int			nitems;
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(ACLITEMOID, &typlen, &typbyval, &typalign);
		deconstruct_array(DatumGetArrayTypeP(acl_datum), ACLITEMOID,
						  typlen, typbyval, typalign, &items, NULL, &nitems);
		for (int i = 0; i < nitems; i++)
		{
			AclItem    *item = (AclItem *) DatumGetPointer(items[i]);

			if ((ACLITEM_GET_PRIVS(*item) & ACL_CREATE) != 0 &&
				item->ai_grantee != schema_owner)
				others_may_create = true;
		}
	}
	ReleaseSysCache(tuple);
	if (!superuser_arg(schema_owner))
		return catalog_problem(problem,
							   psprintf("schema \"%s\" of extension \"walship\" is owned by role \"%s\", which is not a superuser",
										catalog->schema_name, role_name(schema_owner)),
							   psprintf("The owner of a schema can replace what is in it. Check what was created in it, then ALTER SCHEMA %s OWNER TO %s.",
										quote_identifier(catalog->schema_name),
										quote_identifier(role_name(catalog->owner))));

	if (others_may_create)
		return catalog_problem(problem,
							   psprintf("roles other than its owner may create objects in schema \"%s\" of extension \"walship\"",
										catalog->schema_name),
							   psprintf("Whoever may create objects in the schema could make the worker run their code: REVOKE CREATE ON SCHEMA %s FROM the roles it was granted to.",
										quote_identifier(catalog->schema_name)));

	if ((catalog->progress = member_table(catalog, "progress", problem)) == NULL ||
		(catalog->dead_letter = member_table(catalog, "dead_letter", problem)) == NULL ||
		(catalog->backfills = member_table(catalog, "backfills", problem)) == NULL)
		return false;
	return true;
}

/* Resolves the catalog, or raises an error saying why it cannot. */
static void
require_catalog(WsCatalog *catalog)
{
	WsCatalogProblem problem;

	if (!resolve_catalog(catalog, &problem))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s", problem.message),
				 errdetail("The walship worker refuses to use a catalog it cannot trust."),
				 problem.hint ? errhint("%s", problem.hint) : 0));
}

/*
 * Runs what follows as role, in a security-restricted operation, with
 * search_path = pg_catalog, pg_temp, until restrict_end().
 */
static void
restrict_begin(WsRestricted *saved, Oid role)
{
	GetUserIdAndSecContext(&saved->save_userid, &saved->save_sec_context);
	SetUserIdAndSecContext(role,
						   saved->save_sec_context | SECURITY_RESTRICTED_OPERATION);
	saved->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
restrict_end(WsRestricted *saved)
{
	AtEOXact_GUC(false, saved->save_nestlevel);
	SetUserIdAndSecContext(saved->save_userid, saved->save_sec_context);
}

bool
ws_progress_check_catalog(char **message, char **hint)
{
	WsCatalog	catalog;
	WsCatalogProblem problem;

	if (resolve_catalog(&catalog, &problem))
		return true;
	*message = problem.message;
	*hint = problem.hint;
	return false;
}

void
ws_progress_create_slot(const char *slot_name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(slot_name)};
	WsRestricted saved;

	/* on 17+ a failover slot, which standbys keep a copy of (failover.c) */
#if PG_VERSION_NUM >= 170000
	const char *query = "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'walship', false, false, true)";
#else
	const char *query = "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'walship')";
#endif

	/* as the worker's own role, which may create slots */
	SPI_connect();
	restrict_begin(&saved, GetUserId());
	if (SPI_execute_with_args(query,
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not create replication slot \"%s\"", slot_name);
	restrict_end(&saved);
	SPI_finish();
}

/* A short transaction of catalog work. */
typedef struct WsWork
{
	WsCatalog	catalog;
	WsRestricted saved;
} WsWork;

static void
begin_work(WsWork *work, const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	require_catalog(&work->catalog);
	restrict_begin(&work->saved, work->catalog.owner);
}

static void
end_work(WsWork *work)
{
	restrict_end(&work->saved);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Loads the slot's totals into shared memory, so they count on. */
void
ws_progress_load(const char *slot_name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	WsWork		work;

	/* arguments are built in the transaction, so their memory goes with it */
	begin_work(&work, "walship: loading progress");
	{
		WsGap		gap;

		restrict_end(&work.saved);
		ws_progress_read_gap(slot_name, &gap);
		restrict_begin(&work.saved, work.catalog.owner);
		ws_shared_set_gap(gap.start_lsn, gap.end_lsn, gap.detected_at,
						  gap.resyncs, gap.resync_state);
	}
	values[0] = CStringGetTextDatum(slot_name);
	if (SPI_execute_with_args(psprintf("SELECT batches, changes, bytes, retries, rejected_batches, last_success_at "
									   "FROM %s WHERE slot_name = $1",
									   work.catalog.progress),
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read walship.progress");
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		counters[5];

		for (int i = 0; i < 5; i++)
		{
			Datum		d = SPI_getbinval(tuple, desc, i + 1, &isnull);

			counters[i] = isnull ? 0 : DatumGetInt64(d);
		}
		{
			Datum		d = SPI_getbinval(tuple, desc, 6, &isnull);

			WsSharedTotals totals;

			totals.batches = counters[0];
			totals.changes = counters[1];
			totals.bytes = counters[2];
			totals.retries = counters[3];
			totals.rejected_batches = counters[4];
			totals.last_success_at = isnull ? 0 : DatumGetTimestampTz(d);
			ws_shared_restore_totals(&totals);
		}
	}
	end_work(&work);
}

void
ws_progress_write(const char *slot_name, XLogRecPtr confirmed_lsn)
{
	Oid			argtypes[9] = {TEXTOID, PG_LSNOID, INT8OID, INT8OID, INT8OID,
	INT8OID, INT8OID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[9];
	char		nulls[9];
	char		last_error[WS_MAX_ERROR_LEN];
	WsSharedTotals totals;
	WsWork		work;

	begin_work(&work, "walship: recording progress");
	memset(nulls, ' ', sizeof(nulls));
	ws_shared_get_totals(&totals, last_error, sizeof(last_error));
	values[2] = Int64GetDatum(totals.batches);
	values[3] = Int64GetDatum(totals.changes);
	values[4] = Int64GetDatum(totals.bytes);
	values[5] = Int64GetDatum(totals.retries);
	values[6] = Int64GetDatum(totals.rejected_batches);
	values[7] = TimestampTzGetDatum(totals.last_success_at);
	if (totals.last_success_at == 0)
		nulls[7] = 'n';

	values[0] = CStringGetTextDatum(slot_name);
	values[1] = LSNGetDatum(confirmed_lsn);
	if (last_error[0] == '\0')
	{
		nulls[8] = 'n';
		values[8] = (Datum) 0;
	}
	else
		values[8] = CStringGetTextDatum(last_error);

	if (SPI_execute_with_args(psprintf("INSERT INTO %s AS p "
									   "(slot_name, confirmed_lsn, batches, changes, bytes, retries, rejected_batches, last_success_at, last_error, updated_at) "
									   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) "
									   "ON CONFLICT (slot_name) DO UPDATE SET "
									   "confirmed_lsn = excluded.confirmed_lsn, "
									   "batches = excluded.batches, changes = excluded.changes, "
									   "bytes = excluded.bytes, retries = excluded.retries, "
									   "rejected_batches = excluded.rejected_batches, "
									   "last_success_at = excluded.last_success_at, "
									   "last_error = excluded.last_error, updated_at = now()",
									   work.catalog.progress),
							  9, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update walship.progress");
	finish_resync_if_complete(&work.catalog, slot_name);
	end_work(&work);
}

void
ws_progress_write_dead_letters(List *rejected)
{
	Oid			argtypes[11] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID,
	BYTEAOID, BYTEAOID, INT4OID, TEXTOID, TEXTOID, TEXTOID};
	ListCell   *lc;
	WsWork		work;
	char	   *query;

	begin_work(&work, "walship: writing dead letters");
	query = psprintf("INSERT INTO %s "
					 "(first_change, last_change, changes, content_type, content_encoding, records, body, http_status, error, response, endpoint) "
					 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
					 work.catalog.dead_letter);
	foreach(lc, rejected)
	{
		WsRejectedBatch *r = lfirst(lc);
		WsBatch    *batch = r->batch;
		WsBatchPart *part = r->part;
		Datum		values[11];
		char		nulls[11];
		bytea	   *records = palloc(VARHDRSZ + batch->records.len);
		bytea	   *body = palloc(VARHDRSZ + part->body_len);

		memset(nulls, ' ', sizeof(nulls));

		SET_VARSIZE(records, VARHDRSZ + batch->records.len);
		memcpy(VARDATA(records), batch->records.data, batch->records.len);
		SET_VARSIZE(body, VARHDRSZ + part->body_len);
		if (part->body_len > 0)
			memcpy(VARDATA(body), part->body, part->body_len);

		values[0] = CStringGetTextDatum(batch->first_change);
		values[1] = CStringGetTextDatum(batch->last_change);
		values[2] = Int32GetDatum(batch->nchanges);
		values[3] = CStringGetTextDatum(part->content_type);
		if (part->content_encoding)
			values[4] = CStringGetTextDatum(part->content_encoding);
		else
			nulls[4] = 'n';
		values[5] = PointerGetDatum(records);
		values[6] = PointerGetDatum(body);
		values[7] = Int32GetDatum((int32) r->http_status);
		values[8] = CStringGetTextDatum(r->error);
		values[9] = CStringGetTextDatum(r->response);
		values[10] = CStringGetTextDatum(ws_endpoint_for_display(part->url));

		if (SPI_execute_with_args(query, 11, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not insert into walship.dead_letter");
	}
	end_work(&work);
}

/*
 * Checks that walship.backfill_publication(integer) is the extension's own
 * function, owned by the catalog's owner: the worker calls it by name.
 */
static void
require_backfill_publication(const WsCatalog *catalog)
{
	Oid			argtypes[1] = {INT4OID};
	Oid			function;

	function = LookupFuncName(list_make2(makeString(catalog->schema_name),
										 makeString("backfill_publication")),
							  1, argtypes, true);
	if (!OidIsValid(function) ||
		getExtensionOfObject(ProcedureRelationId, function) != catalog->extension ||
		function_owner(function) != catalog->owner)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function \"%s.backfill_publication(integer)\" is not a function of extension \"walship\"",
						catalog->schema_name),
				 errdetail("The walship worker refuses to use a catalog it cannot trust."),
				 errhint("Drop the extension and its schema, and create the extension again.")));
}

/*
 * Queues a backfill of every published table, when the worker has just
 * created its slot and walship.initial_backfill is on.
 */
void
ws_progress_queue_initial_backfills(void)
{
	WsCatalog	catalog;
	WsRestricted saved;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(10000)};

	require_catalog(&catalog);
	require_backfill_publication(&catalog);

	SPI_connect();
	restrict_begin(&saved, catalog.owner);
	/* the argument's type makes the call name exactly that function */
	if (SPI_execute_with_args(psprintf("SELECT %s($1)",
									   quote_qualified_identifier(catalog.schema_name,
																  "backfill_publication")),
							  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not queue the initial backfills");
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("walship queued backfills of %d published tables",
						(int) SPI_processed)));
	restrict_end(&saved);
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * Lost slots: the gap and the resync
 * ---------------------------------------------------------------------
 */

/* Drops the worker's (invalidated) slot, as the worker's own role. */
void
ws_progress_drop_slot(const char *slot_name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(slot_name)};
	WsRestricted saved;

	SPI_connect();
	restrict_begin(&saved, GetUserId());
	if (SPI_execute_with_args("SELECT pg_catalog.pg_drop_replication_slot($1)",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not drop replication slot \"%s\"", slot_name);
	restrict_end(&saved);
	SPI_finish();
}

static XLogRecPtr
lsn_column(HeapTuple tuple, TupleDesc desc, int column)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, column, &isnull);

	return isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
}

/* Reads the gap and resync columns of the slot's walship.progress row. */
void
ws_progress_read_gap(const char *slot_name, WsGap *gap)
{
	WsCatalog	catalog;
	WsRestricted saved;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(slot_name)};

	memset(gap, 0, sizeof(WsGap));
	require_catalog(&catalog);
	SPI_connect();
	restrict_begin(&saved, catalog.owner);
	if (SPI_execute_with_args(psprintf("SELECT confirmed_lsn, gap_start_lsn, gap_end_lsn, "
									   "gap_detected_at, resyncs, resync_state, resync_version "
									   "FROM %s WHERE slot_name = $1",
									   catalog.progress),
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read walship.progress");
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		gap->has_row = true;
		gap->confirmed_lsn = lsn_column(tuple, desc, 1);
		gap->start_lsn = lsn_column(tuple, desc, 2);
		gap->end_lsn = lsn_column(tuple, desc, 3);
		d = SPI_getbinval(tuple, desc, 4, &isnull);
		gap->detected_at = isnull ? 0 : DatumGetTimestampTz(d);
		d = SPI_getbinval(tuple, desc, 5, &isnull);
		gap->resyncs = isnull ? 0 : DatumGetInt64(d);
		d = SPI_getbinval(tuple, desc, 6, &isnull);
		if (!isnull)
			strlcpy(gap->resync_state, TextDatumGetCString(d),
					sizeof(gap->resync_state));
		gap->resync_version = lsn_column(tuple, desc, 7);
	}
	restrict_end(&saved);
	SPI_finish();
}

/*
 * Records a gap found, before anything is done about it: state 'pending'
 * (a resync is starting; a worker that restarts finishes starting it) or
 * 'stopped' (walship.on_slot_lost = stop).
 */
void
ws_progress_mark_gap(const char *slot_name, XLogRecPtr start_lsn,
					 const char *state)
{
	WsCatalog	catalog;
	WsRestricted saved;
	Oid			argtypes[3] = {TEXTOID, PG_LSNOID, TEXTOID};
	Datum		values[3];

	require_catalog(&catalog);
	values[0] = CStringGetTextDatum(slot_name);
	values[1] = LSNGetDatum(start_lsn);
	values[2] = CStringGetTextDatum(state);
	SPI_connect();
	restrict_begin(&saved, catalog.owner);
	if (SPI_execute_with_args(psprintf("INSERT INTO %s AS p (slot_name, confirmed_lsn, gap_start_lsn, "
									   "gap_end_lsn, gap_detected_at, resync_state, updated_at) "
									   "VALUES ($1, $2, $2, NULL, now(), $3, now()) "
									   "ON CONFLICT (slot_name) DO UPDATE SET "
									   "gap_start_lsn = $2, gap_end_lsn = NULL, "
									   "gap_detected_at = CASE WHEN p.resync_state IS DISTINCT FROM $3 "
									   "OR p.gap_start_lsn IS DISTINCT FROM $2 THEN now() "
									   "ELSE p.gap_detected_at END, "
									   "resync_state = $3, updated_at = now()",
									   catalog.progress),
							  3, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update walship.progress");
	restrict_end(&saved);
	SPI_finish();
}

/*
 * Starts the resync after a gap, in the transaction that created the new
 * slot, whose start is version: the gap ends there; backfills in progress
 * are cancelled (what they shipped predates the gap) and every published
 * table is queued, each backfill carrying version for the RESYNC record
 * that ends it.  Returns the number of tables queued.
 */
int
ws_progress_begin_resync(const char *slot_name, XLogRecPtr start_lsn,
						 XLogRecPtr version)
{
	WsCatalog	catalog;
	WsRestricted saved;
	Oid			argtypes[3] = {TEXTOID, PG_LSNOID, PG_LSNOID};
	Datum		values[3];
	Oid			fargtypes[1] = {INT4OID};
	Datum		fvalues[1] = {Int32GetDatum(10000)};
	Datum	   *ids;
	int			nids;

	require_catalog(&catalog);
	require_backfill_publication(&catalog);

	values[0] = CStringGetTextDatum(slot_name);
	values[1] = LSNGetDatum(start_lsn);
	values[2] = LSNGetDatum(version);
	SPI_connect();
	restrict_begin(&saved, catalog.owner);
	if (SPI_execute_with_args(psprintf("INSERT INTO %s AS p (slot_name, confirmed_lsn, gap_start_lsn, "
									   "gap_end_lsn, gap_detected_at, resyncs, resync_state, "
									   "resync_version, updated_at) "
									   "VALUES ($1, $3, $2, $3, now(), 1, 'running', $3, now()) "
									   "ON CONFLICT (slot_name) DO UPDATE SET "
									   "confirmed_lsn = $3, gap_start_lsn = $2, gap_end_lsn = $3, "
									   "gap_detected_at = coalesce(p.gap_detected_at, now()), "
									   "resyncs = p.resyncs + 1, resync_state = 'running', "
									   "resync_version = $3, updated_at = now()",
									   catalog.progress),
							  3, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update walship.progress");

	/* what backfills in progress shipped predates the gap */
	if (SPI_execute(psprintf("UPDATE %s SET state = 'cancelled', "
							 "error = 'superseded by the resync after the slot was lost', "
							 "finished_at = now(), updated_at = now() "
							 "WHERE state IN ('queued', 'running')",
							 catalog.backfills),
					false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update walship.backfills");

	/* the argument's type makes the call name exactly that function */
	if (SPI_execute_with_args(psprintf("SELECT %s($1)",
									   quote_qualified_identifier(catalog.schema_name,
																  "backfill_publication")),
							  1, fargtypes, fvalues, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not queue the resync's backfills");
	nids = (int) SPI_processed;
	ids = palloc(sizeof(Datum) * Max(nids, 1));
	for (int i = 0; i < nids; i++)
	{
		bool		isnull;

		ids[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
							   1, &isnull);
	}
	if (nids > 0)
	{
		Oid			uargtypes[2] = {PG_LSNOID, INT8ARRAYOID};
		Datum		uvalues[2];

		uvalues[0] = LSNGetDatum(version);
		uvalues[1] = PointerGetDatum(construct_array(ids, nids, INT8OID, 8,
													 FLOAT8PASSBYVAL,
													 TYPALIGN_DOUBLE));
		if (SPI_execute_with_args(psprintf("UPDATE %s SET resync_version = $1 "
										   "WHERE id = ANY ($2)",
										   catalog.backfills),
								  2, uargtypes, uvalues, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update walship.backfills");
	}

	/*
	 * A published table backfill_publication() skipped (it warned why: no
	 * key, no SELECT privilege, ...) gets no RESYNC record: it is recorded
	 * as a failed backfill of the resync, which so ends incomplete.  (The
	 * insert trigger makes a new row queued; the update fails it.)
	 */
	{
		Oid			sargtypes[1] = {PG_LSNOID};
		Datum		svalues[1] = {LSNGetDatum(version)};
		int			nskipped;

		if (SPI_execute_with_args(psprintf("INSERT INTO %s (relation, schema_name, table_name, chunk_size) "
										   "SELECT DISTINCT format('%%I.%%I', pt.schemaname, pt.tablename)::regclass, "
										   "pt.schemaname, pt.tablename, 10000 "
										   "FROM pg_publication_tables pt JOIN pg_publication p ON p.pubname = pt.pubname "
										   "WHERE p.pubinsert AND pt.pubname = ANY (ARRAY("
										   "SELECT (parse_ident(btrim(n)))[1] FROM unnest(string_to_array("
										   "coalesce(current_setting('walship.publication', true), 'walship'), ',')) n)) "
										   "AND NOT EXISTS (SELECT FROM %s b WHERE b.resync_version = $1 "
										   "AND b.relation = format('%%I.%%I', pt.schemaname, pt.tablename)::regclass) "
										   "RETURNING id",
										   catalog.backfills, catalog.backfills),
								  1, sargtypes, svalues, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not update walship.backfills");
		nskipped = (int) SPI_processed;
		if (nskipped > 0)
		{
			Oid			uargtypes[2] = {PG_LSNOID, INT8ARRAYOID};
			Datum		uvalues[2];
			Datum	   *skipped = palloc(sizeof(Datum) * nskipped);

			for (int i = 0; i < nskipped; i++)
			{
				bool		isnull;

				skipped[i] = SPI_getbinval(SPI_tuptable->vals[i],
										   SPI_tuptable->tupdesc, 1, &isnull);
			}
			uvalues[0] = LSNGetDatum(version);
			uvalues[1] = PointerGetDatum(construct_array(skipped, nskipped, INT8OID, 8,
														 FLOAT8PASSBYVAL,
														 TYPALIGN_DOUBLE));
			if (SPI_execute_with_args(psprintf("UPDATE %s SET state = 'failed', resync_version = $1, "
											   "error = 'not backfilled: walship.backfill_publication() skipped the table (see its WARNING), so it got no RESYNC record', "
											   "finished_at = now(), updated_at = now() "
											   "WHERE id = ANY ($2)",
											   catalog.backfills),
									  2, uargtypes, uvalues, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not update walship.backfills");
		}
	}
	restrict_end(&saved);
	SPI_finish();
	return nids;
}

/*
 * Once no backfill of the running resync is active any more, the resync
 * is done, or incomplete when one of them failed or was cancelled (those
 * tables got no RESYNC record).  Runs in the caller's work transaction.
 */
static void
finish_resync_if_complete(const WsCatalog *catalog, const char *slot_name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(slot_name)};

	if (SPI_execute_with_args(psprintf("UPDATE %s AS p SET resync_state = "
									   "CASE WHEN EXISTS (SELECT FROM %s b WHERE b.resync_version = p.resync_version "
									   "AND b.state IN ('failed', 'cancelled')) THEN 'incomplete' ELSE 'done' END, "
									   "updated_at = now() "
									   "WHERE p.slot_name = $1 AND p.resync_state = 'running' "
									   "AND NOT EXISTS (SELECT FROM %s b WHERE b.resync_version = p.resync_version "
									   "AND b.state IN ('queued', 'running')) "
									   "RETURNING p.resync_state",
									   catalog->progress, catalog->backfills,
									   catalog->backfills),
							  1, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not update walship.progress");
	if (SPI_processed == 1)
	{
		char	   *state = SPI_getvalue(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1);

		ws_shared_set_resync_state(state);
		ereport(LOG,
				(errmsg("walship resync %s", state),
				 strcmp(state, "done") == 0 ?
				 errdetail("Every published table was sent again and the endpoint was told which rows the gap may have deleted.") :
				 errdetail("The backfill of at least one table failed or was cancelled; see walship.backfills.")));
	}
}

static char **
text_array_to_strings(Datum array, int *n, MemoryContext mcxt)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **result;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, n);
	result = MemoryContextAlloc(mcxt, sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		result[i] = nulls[i] ? NULL :
			MemoryContextStrdup(mcxt, TextDatumGetCString(elems[i]));
	return result;
}

static Datum
strings_to_text_array(int n, char **strings)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(strings[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

static char *
copy_text_column(HeapTuple tuple, TupleDesc desc, int column,
				 MemoryContext mcxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, column, &isnull);

	return isnull ? NULL : MemoryContextStrdup(mcxt, TextDatumGetCString(d));
}

/*
 * Loads the oldest queued or running backfill into job, allocated in mcxt,
 * marking it running.  Returns false when there is none.
 */
bool
ws_progress_next_backfill(WsBackfillJob *job, MemoryContext mcxt)
{
	bool		found = false;
	WsWork		work;

	begin_work(&work, "walship: looking for backfills");

	/*
	 * A backfill cancelled while none of its chunks was in flight causes no
	 * progress write: a resync it was the last active backfill of ends here.
	 */
	finish_resync_if_complete(&work.catalog, walship_slot_name);
	if (SPI_execute(psprintf("SELECT id, relation, queued_by, chunk_size, condition, "
							 "schema_name, table_name, last_key, state, resync_version "
							 "FROM %s WHERE state IN ('queued', 'running') "
							 "ORDER BY id LIMIT 1", work.catalog.backfills),
					false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read walship.backfills");
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		char	   *state;

		memset(job, 0, sizeof(WsBackfillJob));
		job->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		job->relid = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		job->role = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
		job->chunk_size = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
		job->condition = copy_text_column(tuple, desc, 5, mcxt);
		job->schema_name = copy_text_column(tuple, desc, 6, mcxt);
		job->table_name = copy_text_column(tuple, desc, 7, mcxt);
		d = SPI_getbinval(tuple, desc, 8, &isnull);
		if (!isnull)
			job->last_key = text_array_to_strings(d, &job->nkeys, mcxt);
		state = copy_text_column(tuple, desc, 9, CurrentMemoryContext);
		d = SPI_getbinval(tuple, desc, 10, &isnull);
		job->resync_version = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
		found = true;

		job->starting = strcmp(state, "queued") == 0;
		if (job->starting)
		{
			Oid			argtypes[1] = {INT8OID};
			Datum		values[1] = {Int64GetDatum(job->id)};

			if (SPI_execute_with_args(psprintf("UPDATE %s SET state = 'running', "
											   "started_at = now(), updated_at = now() WHERE id = $1",
											   work.catalog.backfills),
									  1, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not update walship.backfills");
			ereport(LOG,
					(errmsg("walship started backfill %lld of table \"%s.%s\"",
							(long long) job->id, job->schema_name,
							job->table_name)));
		}
	}
	end_work(&work);
	return found;
}

/*
 * Records chunks of a backfill the endpoint acknowledged; done when the
 * last of them was its last chunk.  A cancelled backfill is left alone.
 */
void
ws_progress_backfill_acknowledged(int64 id, int64 chunks, int64 rows,
								  int nkeys, char **last_key, bool done)
{
	Oid			argtypes[5] = {INT8OID, INT8OID, INT8OID, TEXTARRAYOID, BOOLOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	WsWork		work;

	begin_work(&work, "walship: recording backfill progress");
	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(chunks);
	values[2] = Int64GetDatum(rows);
	if (nkeys > 0)
		values[3] = strings_to_text_array(nkeys, last_key);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	values[4] = BoolGetDatum(done);
	if (SPI_execute_with_args(psprintf("UPDATE %s SET "
									   "chunks_done = chunks_done + $2, rows_sent = rows_sent + $3, "
									   "last_key = coalesce($4, last_key), "
									   "state = CASE WHEN $5 THEN 'done' ELSE state END, "
									   "finished_at = CASE WHEN $5 THEN now() END, "
									   "updated_at = now() "
									   "WHERE id = $1 AND state = 'running'",
									   work.catalog.backfills),
							  5, argtypes, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update walship.backfills");
	if (done && SPI_processed == 1)
		ereport(LOG,
				(errmsg("walship finished backfill %lld", (long long) id)));
	end_work(&work);
}

void
ws_progress_backfill_failed(int64 id, const char *error)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	WsWork		work;

	begin_work(&work, "walship: recording a failed backfill");
	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(error);
	if (SPI_execute_with_args(psprintf("UPDATE %s SET state = 'failed', error = $2, "
									   "finished_at = now(), updated_at = now() "
									   "WHERE id = $1 AND state = 'running'",
									   work.catalog.backfills),
							  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update walship.backfills");
	end_work(&work);
}
