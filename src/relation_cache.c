/*-------------------------------------------------------------------------
 *
 * relation_cache.c
 *	  Which relations the output plugin publishes, and how it encodes them.
 *
 * For every relation a change arrives for, this cache answers from the
 * publications named in the publication_names option: which actions are
 * published, under which relation the rows go out (publish_via_partition_
 * root), which columns (column lists), the row filters (row_filter.c),
 * and, once per schema version, the
 * pre-encoded RELATION record and one value encoder per column.
 *
 * Entries are invalidated by relcache invalidations (DDL on the relation or
 * an ancestor), by changes to publications, their tables and schemas, and
 * by changes to schemas themselves (ALTER SCHEMA ... RENAME changes the
 * name every RELATION record of its tables carries, without a relcache
 * invalidation of those tables), so ALTER TABLE, ALTER SCHEMA and ALTER
 * PUBLICATION take effect at the exact point of the WAL stream where they
 * committed: decoding runs catalog lookups under the
 * historic snapshot of each change.
 *
 * Invalidation callbacks cannot be unregistered and receive no decoding
 * context, so the cache of the one active decoding session of this backend
 * is reachable through a file-level pointer, set by ws_relation_cache_start
 * and cleared by ws_relation_cache_stop.
 *
 * IDENTIFICATION
 *	  src/relation_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_publication_rel.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "format.h"
#include "relation_cache.h"

typedef struct WsRelationId
{
	Oid			relid;			/* hash key */
	uint64		rel_id;
} WsRelationId;

typedef struct WsRelationCache
{
	MemoryContext context;
	HTAB	   *entries;		/* Oid -> WsRelationEntry */
	HTAB	   *ids;			/* Oid -> WsRelationId, never invalidated */
	uint64		next_rel_id;
	uint64		fixed_rel_id;	/* standalone entries: the id to use */
	List	   *publication_names;
	List	   *publications;	/* Publication *, valid when
								 * publications_valid */
	bool		publications_valid;
	Oid			extension_oid;	/* of extension walship, when installed */
	MemoryContextCallback reset_callback;
} WsRelationCache;

static WsRelationCache *active_cache = NULL;
static bool callbacks_registered = false;

static void relation_invalidated(Datum arg, Oid relid);
static void cache_context_gone(void *arg);
#if PG_VERSION_NUM < 180000
static int	listable_attribute_count(Relation relation);
#endif
static void publications_invalidated(Datum arg, int cacheid, uint32 hashvalue);
static void namespace_invalidated(Datum arg, int cacheid, uint32 hashvalue);

void
ws_relation_cache_start(MemoryContext parent, List *publication_names)
{
	MemoryContext context;
	HASHCTL		ctl;
	WsRelationCache *cache;

	ws_relation_cache_stop();

	context = AllocSetContextCreate(parent, "walship relation cache",
									ALLOCSET_DEFAULT_SIZES);
	cache = MemoryContextAllocZero(context, sizeof(WsRelationCache));
	cache->context = context;
	cache->next_rel_id = 1;

	/*
	 * An error during decoding frees the decoding context without calling
	 * the shutdown callback; forget the cache when its memory goes.
	 */
	cache->reset_callback.func = cache_context_gone;
	cache->reset_callback.arg = cache;
	MemoryContextRegisterResetCallback(context, &cache->reset_callback);

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(WsRelationEntry);
	ctl.hcxt = context;
	cache->entries = hash_create("walship relation entries", 128, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.entrysize = sizeof(WsRelationId);
	cache->ids = hash_create("walship relation ids", 128, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	{
		MemoryContext old = MemoryContextSwitchTo(context);
		ListCell   *lc;

		foreach(lc, publication_names)
			cache->publication_names = lappend(cache->publication_names,
											   pstrdup((char *) lfirst(lc)));
		MemoryContextSwitchTo(old);
	}

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(relation_invalidated, (Datum) 0);
		CacheRegisterSyscacheCallback(PUBLICATIONOID,
									  publications_invalidated, (Datum) 0);
		CacheRegisterSyscacheCallback(PUBLICATIONRELMAP,
									  publications_invalidated, (Datum) 0);
		CacheRegisterSyscacheCallback(PUBLICATIONNAMESPACEMAP,
									  publications_invalidated, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID,
									  namespace_invalidated, (Datum) 0);
		callbacks_registered = true;
	}

	active_cache = cache;
}

void
ws_relation_cache_stop(void)
{
	if (active_cache != NULL)
		MemoryContextDelete(active_cache->context); /* clears active_cache */
}

static void
cache_context_gone(void *arg)
{
	if (active_cache == (WsRelationCache *) arg)
		active_cache = NULL;
}

/*
 * Relcache invalidation: the relation's definition may have changed.  The
 * entries publishing through it (partitions published as this ancestor)
 * are invalidated too.  InvalidOid means everything.
 */
static void
relation_invalidated(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	WsRelationEntry *entry;

	if (active_cache == NULL)
		return;

	hash_seq_init(&status, active_cache->entries);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || entry->relid == relid ||
			entry->publish_as_relid == relid)
			entry->valid = false;
	}
}

/* Marks every cached relation for rebuilding. */
static void
invalidate_all_entries(void)
{
	HASH_SEQ_STATUS status;
	WsRelationEntry *entry;

	hash_seq_init(&status, active_cache->entries);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/* A publication, its tables or its schemas changed: re-derive everything. */
static void
publications_invalidated(Datum arg, int cacheid, uint32 hashvalue)
{
	if (active_cache == NULL)
		return;

	active_cache->publications_valid = false;
	invalidate_all_entries();
}

/*
 * A schema changed, most likely its name: the RELATION records of its
 * tables must be built and sent again.  The hash value does not say which
 * schema, and schemas change rarely, so every entry is rebuilt, as pgoutput
 * does.  What the publications say is unaffected.
 */
static void
namespace_invalidated(Datum arg, int cacheid, uint32 hashvalue)
{
	if (active_cache == NULL)
		return;

	invalidate_all_entries();
}

static void
load_publications(WsRelationCache *cache)
{
	MemoryContext old;
	ListCell   *lc;

	/* the previous list is left to the cache context: invalidations are rare */
	cache->extension_oid = get_extension_oid("walship", true);

	old = MemoryContextSwitchTo(cache->context);
	cache->publications = NIL;
	foreach(lc, cache->publication_names)
	{
		char	   *name = (char *) lfirst(lc);
		Publication *pub = GetPublicationByName(name, true);

		if (pub == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("publication \"%s\" does not exist", name),
					 errdetail("The walship output plugin was asked to decode changes for publication \"%s\", which did not exist when the change being decoded was committed.",
							   name),
					 errhint("Create the publication, or name an existing one in option \"publication_names\".")));
		cache->publications = lappend(cache->publications, pub);
	}
	MemoryContextSwitchTo(old);
	cache->publications_valid = true;
}

static uint64
small_id_for(WsRelationCache *cache, Oid relid)
{
	bool		found;
	WsRelationId *id = hash_search(cache->ids, &relid, HASH_ENTER, &found);

	if (!found)
		id->rel_id = cache->next_rel_id++;
	return id->rel_id;
}

/*
 * The column list of relid in publication pub, or NULL when the
 * publication publishes every column of it.
 */
static Bitmapset *
publication_column_list(Publication *pub, Oid relid, MemoryContext mcxt)
{
	HeapTuple	tuple;
	Bitmapset  *columns = NULL;
	bool		isnull;
	Datum		datum;

	if (pub->alltables)
		return NULL;

	tuple = SearchSysCache2(PUBLICATIONRELMAP, ObjectIdGetDatum(relid),
							ObjectIdGetDatum(pub->oid));
	if (!HeapTupleIsValid(tuple))
		return NULL;			/* published through its schema */

	datum = SysCacheGetAttr(PUBLICATIONRELMAP, tuple,
							Anum_pg_publication_rel_prattrs, &isnull);
	if (!isnull)
		columns = pub_collist_to_bitmapset(NULL, datum, mcxt);
	ReleaseSysCache(tuple);
	return columns;
}

/*
 * Decides from the publications whether and how relation is published, as
 * pgoutput does: actions are the union over all publications that include
 * the relation; with publish_via_partition_root the topmost published
 * ancestor is used, and only the publications at that level decide the
 * column list.
 */
static void
resolve_publications(WsRelationCache *cache, WsRelationEntry *entry,
					 Relation relation, List **rel_publications)
{
	Oid			relid = RelationGetRelid(relation);
	bool		am_partition = relation->rd_rel->relispartition;
	char		relkind = relation->rd_rel->relkind;
	List	   *table_pubids = GetRelationPublications(relid);
	List	   *schema_pubids = GetSchemaPublications(RelationGetNamespace(relation));
	List	   *ancestors = am_partition ? get_partition_ancestors(relid) : NIL;
	int			publish_level = 0;
	ListCell   *lc;

	entry->publish_as_relid = relid;
	*rel_publications = NIL;

	/*
	 * The extension's own tables (the worker's progress) are never
	 * published, even by FOR ALL TABLES: shipping them would loop.
	 */
	if (OidIsValid(cache->extension_oid) &&
		getExtensionOfObject(RelationRelationId, relid) == cache->extension_oid)
	{
		list_free(table_pubids);
		list_free(schema_pubids);
		list_free(ancestors);
		return;
	}

	foreach(lc, cache->publications)
	{
		Publication *pub = (Publication *) lfirst(lc);
		bool		publish = false;
		Oid			pub_relid = relid;
		int			level = 0;

		if (pub->alltables)
		{
			publish = true;
			if (pub->pubviaroot && am_partition)
			{
				pub_relid = llast_oid(ancestors);
				level = list_length(ancestors);
			}
		}
		else
		{
			int			ancestor_level = 0;
			Oid			ancestor = InvalidOid;

			if (am_partition)
				ancestor = GetTopMostAncestorInPublication(pub->oid, ancestors,
														   &ancestor_level);
			if (OidIsValid(ancestor) && pub->pubviaroot)
			{
				pub_relid = ancestor;
				level = ancestor_level;
			}
			publish = OidIsValid(ancestor) ||
				list_member_oid(table_pubids, pub->oid) ||
				list_member_oid(schema_pubids, pub->oid);
		}

		/* a partitioned table's own changes go out only as the root */
		if (!publish || (relkind == RELKIND_PARTITIONED_TABLE && !pub->pubviaroot))
			continue;

		entry->publish_insert |= pub->pubactions.pubinsert;
		entry->publish_update |= pub->pubactions.pubupdate;
		entry->publish_delete |= pub->pubactions.pubdelete;
		entry->publish_truncate |= pub->pubactions.pubtruncate;

		/* the topmost ancestor wins */
		if (level < publish_level)
			continue;
		if (level > publish_level)
		{
			list_free(*rel_publications);
			*rel_publications = NIL;
			publish_level = level;
		}
		entry->publish_as_relid = pub_relid;
		*rel_publications = lappend(*rel_publications, pub);
	}

	list_free(table_pubids);
	list_free(schema_pubids);
	list_free(ancestors);
}

#if PG_VERSION_NUM >= 180000
/*
 * The publish_generated_columns setting of the publications of the relation
 * that have no column list for it (a column list names the generated
 * columns to publish itself).  They must agree, as in pgoutput, when the
 * relation has generated columns.
 */
static PublishGencolsType
resolve_generated_columns(WsRelationEntry *entry, Relation publish_rel,
						  List *rel_publications)
{
	TupleDesc	desc = RelationGetDescr(publish_rel);
	PublishGencolsType result = PUBLISH_GENCOLS_NONE;
	bool		has_generated = false;
	bool		first = true;
	ListCell   *lc;

	for (int i = 0; i < desc->natts; i++)
	{
		if (TupleDescAttr(desc, i)->attgenerated)
		{
			has_generated = true;
			break;
		}
	}
	if (!has_generated)
		return PUBLISH_GENCOLS_NONE;

	foreach(lc, rel_publications)
	{
		Publication *pub = (Publication *) lfirst(lc);

		if (check_and_fetch_column_list(pub, entry->publish_as_relid, NULL, NULL))
			continue;
		if (first)
			result = pub->pubgencols_type;
		else if (result != pub->pubgencols_type)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot use different values of publish_generated_columns for table \"%s.%s\" in different publications",
							get_namespace_name(RelationGetNamespace(publish_rel)),
							RelationGetRelationName(publish_rel)),
					 errhint("Give every publication named in \"publication_names\" the same publish_generated_columns setting.")));
		first = false;
	}
	return result;
}
#endif

/*
 * The column list shared by all publications of the relation, NULL for
 * every column except generated ones.  Different lists in different
 * publications are an error, as in pgoutput.
 *
 * From PostgreSQL 18 on, a column list may name stored generated columns,
 * and publications without a list publish the stored generated columns
 * when publish_generated_columns is 'stored'; as in pgoutput, such a
 * publication stands for the list of all the columns it publishes, and
 * when none of the publications has a list but they publish generated
 * columns, that list is the result.
 */
static Bitmapset *
resolve_column_list(WsRelationEntry *entry, Relation publish_rel,
					List *rel_publications)
{
	Bitmapset  *result = NULL;
	bool		first = true;
	ListCell   *lc;
#if PG_VERSION_NUM >= 180000
	PublishGencolsType gencols = resolve_generated_columns(entry, publish_rel,
														   rel_publications);
	MemoryContext old = MemoryContextSwitchTo(entry->context);
	Bitmapset  *all_columns = pub_form_cols_map(publish_rel, gencols);
	bool		found_list = false;

	MemoryContextSwitchTo(old);
#endif

	foreach(lc, rel_publications)
	{
		Publication *pub = (Publication *) lfirst(lc);
		Bitmapset  *columns = publication_column_list(pub, entry->publish_as_relid,
													  entry->context);

#if PG_VERSION_NUM < 180000
		/* a list of every column is the same as no list, as in pgoutput */
		if (columns != NULL &&
			bms_num_members(columns) == listable_attribute_count(publish_rel))
			columns = NULL;
#else
		/*
		 * A list may name generated columns: it is compared with the columns
		 * a publication without a list publishes instead, as in pgoutput.
		 */
		if (columns != NULL)
			found_list = true;
		else
			columns = all_columns;
#endif
		if (!first && !bms_equal(result, columns))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot use different column lists for table \"%s.%s\" in different publications",
							get_namespace_name(RelationGetNamespace(publish_rel)),
							RelationGetRelationName(publish_rel)),
					 errhint("Give the table the same column list in every publication named in \"publication_names\".")));
		result = columns;
		first = false;
	}
#if PG_VERSION_NUM >= 180000
	if (!found_list)
		result = gencols == PUBLISH_GENCOLS_STORED ? all_columns : NULL;
#endif
	return result;
}

#if PG_VERSION_NUM < 180000
/* Number of attributes a publication can list: not dropped, not generated. */
static int
listable_attribute_count(Relation relation)
{
	TupleDesc	desc = RelationGetDescr(relation);
	int			count = 0;

	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped &&
			!TupleDescAttr(desc, i)->attgenerated)
			count++;
	return count;
}
#endif

/*
 * The SQL name of a type, independent of search_path: built-in types as
 * format_type() writes them ("integer", "text[]"), others schema-qualified.
 */
static char *
type_display_name(Oid type_oid)
{
	HeapTuple	tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type_oid));
	bool		builtin;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for type %u", type_oid);
	builtin = ((Form_pg_type) GETSTRUCT(tuple))->typnamespace == PG_CATALOG_NAMESPACE;
	ReleaseSysCache(tuple);
	return format_type_extended(type_oid, -1,
								builtin ? 0 : FORMAT_TYPE_FORCE_QUALIFY);
}

/* Fills attrs, replica identity and the pre-encoded RELATION record body. */
static void
build_schema(WsRelationEntry *entry, Relation publish_rel, Bitmapset *columns)
{
	TupleDesc	desc = RelationGetDescr(publish_rel);
	/* the decoding-only variant, outside decoding for backfills */
	Bitmapset  *identity = HistoricSnapshotActive() ?
		RelationGetIdentityKeyBitmap(publish_rel) :
		RelationGetIndexAttrBitmap(publish_rel, INDEX_ATTR_BITMAP_IDENTITY_KEY);
	Bitmapset  *primary_key = RelationGetIndexAttrBitmap(publish_rel,
													 INDEX_ATTR_BITMAP_PRIMARY_KEY);
	bool		full = publish_rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL;
	StringInfo	body = &entry->relation_body;
	int			npublished = 0;
	StringInfoData cols;

	entry->replica_identity = publish_rel->rd_rel->relreplident;
	entry->natts = desc->natts;
	entry->nkey = 0;
	entry->attrs = MemoryContextAllocZero(entry->context,
										  sizeof(WsAttribute) * Max(desc->natts, 1));

	initStringInfo(&cols);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			bit = att->attnum - FirstLowInvalidHeapAttributeNumber;
		uint8		flags = 0;
		char	   *type_name;

		if (att->attisdropped)
			continue;
		/* a list names the generated columns to publish (PostgreSQL 18) */
		if (columns != NULL ? !bms_is_member(att->attnum, columns) :
			att->attgenerated != '\0')
			continue;

		entry->attrs[i].published = true;
		entry->attrs[i].key = full || bms_is_member(bit, identity);
		ws_type_encoder_init(&entry->attrs[i].encoder, att->atttypid,
							 entry->context);
		npublished++;
		if (entry->attrs[i].key)
			entry->nkey++;

		if (entry->attrs[i].key)
			flags |= WS_COL_KEY;
		if (att->attnotnull)
			flags |= WS_COL_NOT_NULL;
		if (bms_is_member(bit, primary_key))
			flags |= WS_COL_PRIMARY_KEY;

		appendStringInfoChar(&cols, (char) flags);
		ws_put_text(&cols, NameStr(att->attname), strlen(NameStr(att->attname)));
		ws_put_uvarint(&cols, att->atttypid);
		ws_put_svarint(&cols, att->atttypmod);
		type_name = type_display_name(att->atttypid);
		ws_put_text(&cols, type_name, strlen(type_name));
		pfree(type_name);
	}

	{
		char	   *nspname = get_namespace_name(RelationGetNamespace(publish_rel));
		char	   *relname = RelationGetRelationName(publish_rel);
		MemoryContext old = MemoryContextSwitchTo(entry->context);

		initStringInfo(body);
		MemoryContextSwitchTo(old);
		ws_put_uvarint(body, entry->rel_id);
		ws_put_uvarint(body, entry->publish_as_relid);
		ws_put_text(body, nspname, strlen(nspname));
		ws_put_text(body, relname, strlen(relname));
		appendStringInfoChar(body, entry->replica_identity);
		ws_put_uvarint(body, npublished);
		appendBinaryStringInfo(body, cols.data, cols.len);
	}
	entry->npublished = npublished;
	pfree(cols.data);
	bms_free(identity);
	bms_free(primary_key);
}

static void
rebuild_entry(WsRelationCache *cache, WsRelationEntry *entry, Relation relation)
{
	List	   *rel_publications;
	Relation	publish_rel;
	Bitmapset  *columns;
	StringInfoData sent;

	/*
	 * Invalidated only by a flush of every cache: the RELATION record sent
	 * stands if the rebuilt entry has the same one.
	 */
	sent.data = NULL;
	if (entry->flushed && entry->schema_sent)
	{
		initStringInfo(&sent);
		appendBinaryStringInfo(&sent, entry->relation_body.data,
							   entry->relation_body.len);
	}
	entry->flushed = false;

	if (entry->context == NULL)
		entry->context = AllocSetContextCreate(cache->context,
											   "walship relation entry",
											   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(entry->context);

	entry->publish_insert = false;
	entry->publish_update = false;
	entry->publish_delete = false;
	entry->publish_truncate = false;
	entry->attrmap = NULL;
	entry->row_filter = NULL;
	entry->attrs = NULL;
	entry->natts = 0;
	entry->schema_sent = false;

	if (!cache->publications_valid)
		load_publications(cache);

	resolve_publications(cache, entry, relation, &rel_publications);
	entry->rel_id = cache->fixed_rel_id != 0 ? cache->fixed_rel_id :
		small_id_for(cache, entry->publish_as_relid);

	if (entry->publish_insert || entry->publish_update ||
		entry->publish_delete || entry->publish_truncate)
	{
		if (entry->publish_as_relid == entry->relid)
			publish_rel = relation;
		else
			publish_rel = RelationIdGetRelation(entry->publish_as_relid);
		if (!RelationIsValid(publish_rel))
			elog(ERROR, "could not open relation with OID %u",
				 entry->publish_as_relid);

		columns = resolve_column_list(entry, publish_rel, rel_publications);
		build_schema(entry, publish_rel, columns);
		{
			MemoryContext old = MemoryContextSwitchTo(entry->context);

			entry->row_filter = ws_row_filter_build(publish_rel, rel_publications);
			MemoryContextSwitchTo(old);
		}

		if (publish_rel != relation)
		{
			MemoryContext old = MemoryContextSwitchTo(entry->context);

			entry->attrmap = convert_tuples_by_name(RelationGetDescr(relation),
													RelationGetDescr(publish_rel));
			MemoryContextSwitchTo(old);
			RelationClose(publish_rel);
		}
	}
	list_free(rel_publications);
	if (sent.data != NULL)
	{
		entry->schema_sent = entry->attrs != NULL &&
			entry->relation_body.len == sent.len &&
			memcmp(entry->relation_body.data, sent.data, sent.len) == 0;
		pfree(sent.data);
	}
	entry->valid = true;
}

WsRelationEntry *
ws_relation_cache_get(Relation relation)
{
	Oid			relid = RelationGetRelid(relation);
	bool		found;
	WsRelationEntry *entry;

	Assert(active_cache != NULL);

	entry = hash_search(active_cache->entries, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->context = NULL;
		entry->valid = false;
		entry->flushed = false;
		entry->publish_as_relid = InvalidOid;
	}
	if (!entry->valid)
		rebuild_entry(active_cache, entry, relation);
	return entry;
}

/*
 * Flushes every catalog cache of the backend: the relcache, the syscaches
 * and the caches hooked to their invalidations.  Logical decoding fills
 * them under historic snapshots, ordinary transactions from the current
 * catalogs, and neither may use entries the other built: a backend that
 * does both (the shipping worker, which reads backfill chunks between
 * slices of decoding) flushes them at each boundary, as
 * pg_logical_slot_get_changes() does around its decoding.  The entries of
 * the active decoding session are rebuilt on their next use, under that
 * change's historic snapshot; their RELATION record is not sent again
 * unless it changed.
 */
void
ws_relation_cache_flush_catalog_caches(void)
{
	if (active_cache != NULL)
	{
		HASH_SEQ_STATUS status;
		WsRelationEntry *entry;

		hash_seq_init(&status, active_cache->entries);
		while ((entry = hash_seq_search(&status)) != NULL)
			if (entry->valid)
				entry->flushed = true;
	}
	InvalidateSystemCaches();
}

/*
 * Builds an entry for relation outside the cache, under the current
 * snapshot rather than a historic one: the backfill encodes the rows it
 * reads with it.  Its RELATION record carries rel_id.  Everything is
 * allocated in mcxt, which the caller creates for it and deletes after.
 */
WsRelationEntry *
ws_relation_entry_build(Relation relation, List *publication_names,
						uint64 rel_id, MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	WsRelationCache *cache = palloc0(sizeof(WsRelationCache));
	WsRelationEntry *entry = palloc0(sizeof(WsRelationEntry));
	ListCell   *lc;

	cache->context = mcxt;
	cache->fixed_rel_id = rel_id;
	foreach(lc, publication_names)
		cache->publication_names = lappend(cache->publication_names,
										   pstrdup((char *) lfirst(lc)));
	entry->relid = RelationGetRelid(relation);
	rebuild_entry(cache, entry, relation);
	MemoryContextSwitchTo(old);
	return entry;
}

/*
 * Appends a tuple: the number of values, then the values of the published
 * attributes (only the key attributes when key_only) in attribute order.
 * A value TOASTed on disk that the tuple does not carry is written as
 * unchanged.
 */
void
ws_relation_write_tuple(StringInfo out, WsRelationEntry *entry,
						TupleDesc desc, HeapTuple tuple, bool key_only)
{
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *isnull = palloc(sizeof(bool) * desc->natts);

	heap_deform_tuple(tuple, desc, values, isnull);
	ws_put_uvarint(out, key_only ? entry->nkey : entry->npublished);

	for (int i = 0; i < desc->natts; i++)
	{
		WsAttribute *attr = &entry->attrs[i];

		if (!attr->published || (key_only && !attr->key))
			continue;

		if (!isnull[i] && TupleDescAttr(desc, i)->attlen == -1 &&
			VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(values[i])))
		{
			appendStringInfoChar(out, WS_VAL_UNCHANGED);
			continue;
		}
		ws_encode_value(out, &attr->encoder, values[i], isnull[i]);
	}
	pfree(values);
	pfree(isnull);
}
