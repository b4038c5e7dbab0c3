/*-------------------------------------------------------------------------
 *
 * relation_cache.h
 *	  The output plugin's per-relation cache: what publications say about a
 *	  relation, and everything needed to encode its rows.
 *
 * IDENTIFICATION
 *	  src/relation_cache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_RELATION_CACHE_H
#define WALSHIP_RELATION_CACHE_H

#include "access/tupconvert.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/rel.h"

#include "row_filter.h"
#include "tuple_encode.h"

/* What the record writer needs to know about one attribute. */
typedef struct WsAttribute
{
	bool		published;		/* sent at all: not dropped, in the column
								 * list, not generated unless published */
	bool		key;			/* sent in an old key tuple */
	WsTypeEncoder encoder;
} WsAttribute;

typedef struct WsRelationEntry
{
	Oid			relid;			/* hash key: the relation changes come from */
	bool		valid;			/* false after an invalidation */
	bool		schema_sent;	/* RELATION record sent since (re)build */
	bool		flushed;		/* invalidated by a flush of every cache
								 * (ws_relation_cache_flush_catalog_caches)
								 * while valid */

	bool		publish_insert;
	bool		publish_update;
	bool		publish_delete;
	bool		publish_truncate;

	/*
	 * Rows are published as rows of this relation: relid itself, or the
	 * topmost published ancestor under publish_via_partition_root.
	 */
	Oid			publish_as_relid;
	TupleConversionMap *attrmap;	/* relid's rows to publish_as_relid's */
	uint64		rel_id;			/* the small id records use */
	char		replica_identity;
	int			natts;
	int			npublished;		/* attributes with published set */
	int			nkey;			/* of those, attributes with key set */
	WsAttribute *attrs;			/* natts entries, by attnum - 1 */
	WsRowFilter *row_filter;	/* NULL when no action is filtered */
	StringInfoData relation_body;	/* pre-encoded RELATION record body */

	MemoryContext context;		/* owns everything the entry points to */
} WsRelationEntry;

extern void ws_relation_cache_start(MemoryContext parent,
									List *publication_names);
extern void ws_relation_cache_stop(void);
extern WsRelationEntry *ws_relation_cache_get(Relation relation);
extern void ws_relation_cache_flush_catalog_caches(void);
extern WsRelationEntry *ws_relation_entry_build(Relation relation,
												List *publication_names,
												uint64 rel_id,
												MemoryContext mcxt);
extern void ws_relation_write_tuple(StringInfo out, WsRelationEntry *entry,
									TupleDesc desc, HeapTuple tuple,
									bool key_only);

#endif							/* WALSHIP_RELATION_CACHE_H */
