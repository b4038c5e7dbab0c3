/*-------------------------------------------------------------------------
 *
 * row_filter.c
 *	  Publication row filters (CREATE PUBLICATION ... FOR TABLE t WHERE ...)
 *	  for the walship output plugin, with pgoutput's semantics.
 *
 * For each published action the filters of all publications that publish
 * that action are ORed; a publication that publishes the action without a
 * filter (including FOR ALL TABLES and FOR TABLES IN SCHEMA) disables
 * filtering for it.  An INSERT is checked on its new row, a DELETE on its
 * old row.  An UPDATE is checked on both: matching only the new row turns
 * it into an INSERT, only the old row into a DELETE, neither drops it.
 *
 * IDENTIFICATION
 *	  src/row_filter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_publication_rel.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "row_filter.h"

/* Filter actions, in the order of the filters array. */
enum
{
	FILTER_INSERT,
	FILTER_UPDATE,
	FILTER_DELETE,
	NUM_FILTER_ACTIONS
};

struct WsRowFilter
{
	EState	   *estate;
	ExprState  *filters[NUM_FILTER_ACTIONS];	/* NULL: action unfiltered */
	TupleTableSlot *slot;
};

/* The row filter of relid in pub as an expression, or NULL if none. */
static Node *
publication_row_filter(Publication *pub, Oid relid)
{
	HeapTuple	tuple;
	Datum		datum;
	bool		isnull;
	Node	   *filter = NULL;

	if (pub->alltables)
		return NULL;
	tuple = SearchSysCache2(PUBLICATIONRELMAP, ObjectIdGetDatum(relid),
							ObjectIdGetDatum(pub->oid));
	if (!HeapTupleIsValid(tuple))
		return NULL;			/* published through its schema */
	datum = SysCacheGetAttr(PUBLICATIONRELMAP, tuple,
							Anum_pg_publication_rel_prqual, &isnull);
	if (!isnull)
		filter = stringToNode(TextDatumGetCString(datum));
	ReleaseSysCache(tuple);
	return filter;
}

/*
 * Builds the filters of a relation published as publish_rel by the given
 * publications, in the current memory context; NULL when no action is
 * filtered.
 */
WsRowFilter *
ws_row_filter_build(Relation publish_rel, List *publications)
{
	List	   *quals[NUM_FILTER_ACTIONS] = {NIL, NIL, NIL};
	bool		unfiltered[NUM_FILTER_ACTIONS] = {false, false, false};
	bool		any = false;
	WsRowFilter *result;
	ListCell   *lc;

	foreach(lc, publications)
	{
		Publication *pub = (Publication *) lfirst(lc);
		Node	   *qual = publication_row_filter(pub, RelationGetRelid(publish_rel));
		bool		publishes[NUM_FILTER_ACTIONS] = {
			pub->pubactions.pubinsert,
			pub->pubactions.pubupdate,
			pub->pubactions.pubdelete
		};

		for (int action = 0; action < NUM_FILTER_ACTIONS; action++)
		{
			if (!publishes[action])
				continue;
			if (qual == NULL)
				unfiltered[action] = true;
			else
				quals[action] = lappend(quals[action], qual);
		}
	}

	for (int action = 0; action < NUM_FILTER_ACTIONS; action++)
		if (!unfiltered[action] && quals[action] != NIL)
			any = true;
	if (!any)
		return NULL;

	result = palloc0(sizeof(WsRowFilter));
	result->estate = CreateExecutorState();
	/* a private copy of the descriptor: relcache ones are refcounted */
	result->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(publish_rel)),
											&TTSOpsHeapTuple);
	for (int action = 0; action < NUM_FILTER_ACTIONS; action++)
	{
		Expr	   *expr;

		if (unfiltered[action] || quals[action] == NIL)
			continue;
		expr = list_length(quals[action]) == 1 ?
			(Expr *) linitial(quals[action]) :
			makeBoolExpr(OR_EXPR, quals[action], -1);
		result->filters[action] = ExecPrepareExpr(expr, result->estate);
	}
	return result;
}

static bool
row_matches(WsRowFilter *filter, ExprState *state, HeapTuple tuple)
{
	ExprContext *econtext = GetPerTupleExprContext(filter->estate);
	Datum		result;
	bool		isnull;

	ExecStoreHeapTuple(tuple, filter->slot, false);
	econtext->ecxt_scantuple = filter->slot;
	result = ExecEvalExprSwitchContext(state, econtext, &isnull);
	ExecClearTuple(filter->slot);
	ResetExprContext(econtext);
	return !isnull && DatumGetBool(result);
}

/*
 * The new row of an UPDATE with the old row's values in place of unchanged
 * TOASTed values, which the new row only points to: the filter must see
 * real values (the pointed-to data may be gone by decoding time), and an
 * UPDATE published as an INSERT must carry them.  NULL when nothing needed
 * replacing.
 */
static HeapTuple
new_row_with_old_toast(WsRowFilter *filter, HeapTuple old_tuple,
					   HeapTuple new_tuple)
{
	TupleDesc	desc = filter->slot->tts_tupleDescriptor;
	Datum	   *old_values = palloc(sizeof(Datum) * desc->natts);
	bool	   *old_nulls = palloc(sizeof(bool) * desc->natts);
	Datum	   *new_values = palloc(sizeof(Datum) * desc->natts);
	bool	   *new_nulls = palloc(sizeof(bool) * desc->natts);
	bool		replaced = false;
	HeapTuple	result = NULL;

	heap_deform_tuple(old_tuple, desc, old_values, old_nulls);
	heap_deform_tuple(new_tuple, desc, new_values, new_nulls);
	for (int i = 0; i < desc->natts; i++)
	{
		if (TupleDescAttr(desc, i)->attlen != -1 || new_nulls[i] ||
			!VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(new_values[i])))
			continue;
		new_values[i] = old_values[i];
		new_nulls[i] = old_nulls[i];
		replaced = true;
	}
	if (replaced)
		result = heap_form_tuple(desc, new_values, new_nulls);
	pfree(old_values);
	pfree(old_nulls);
	pfree(new_values);
	pfree(new_nulls);
	return result;
}

/*
 * Applies the filter to a change whose tuples are in the published
 * relation's layout.  Returns the action to publish it as, or
 * WS_ACTION_SKIP to drop it.  An UPDATE published as an INSERT may get a
 * new *new_tuple that carries its unchanged TOASTed values.
 */
WsFilteredAction
ws_row_filter_apply(WsRowFilter *filter, WsFilteredAction action,
					HeapTuple old_tuple, HeapTuple *new_tuple)
{
	bool		old_matches;
	bool		new_matches;
	HeapTuple	complete_new;

	if (filter == NULL)
		return action;

	switch (action)
	{
		case WS_ACTION_INSERT:
			if (filter->filters[FILTER_INSERT] == NULL)
				return action;
			return row_matches(filter, filter->filters[FILTER_INSERT], *new_tuple) ?
				action : WS_ACTION_SKIP;
		case WS_ACTION_DELETE:
			if (filter->filters[FILTER_DELETE] == NULL || old_tuple == NULL)
				return action;
			return row_matches(filter, filter->filters[FILTER_DELETE], old_tuple) ?
				action : WS_ACTION_SKIP;
		case WS_ACTION_UPDATE:
			if (filter->filters[FILTER_UPDATE] == NULL)
				return action;
			/* without an old row the key did not change: the new row decides */
			if (old_tuple == NULL)
				return row_matches(filter, filter->filters[FILTER_UPDATE], *new_tuple) ?
					action : WS_ACTION_SKIP;
			complete_new = new_row_with_old_toast(filter, old_tuple, *new_tuple);
			new_matches = row_matches(filter, filter->filters[FILTER_UPDATE],
									  complete_new ? complete_new : *new_tuple);
			old_matches = row_matches(filter, filter->filters[FILTER_UPDATE], old_tuple);
			if (old_matches && new_matches)
				return WS_ACTION_UPDATE;
			if (new_matches)
			{
				if (complete_new)
					*new_tuple = complete_new;
				return WS_ACTION_INSERT;
			}
			if (old_matches)
				return WS_ACTION_DELETE;
			return WS_ACTION_SKIP;
		case WS_ACTION_SKIP:
			break;
	}
	return action;
}
