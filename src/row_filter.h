/*-------------------------------------------------------------------------
 *
 * row_filter.h
 *	  Publication row filters for the walship output plugin.
 *
 * IDENTIFICATION
 *	  src/row_filter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_ROW_FILTER_H
#define WALSHIP_ROW_FILTER_H

#include "access/htup.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"

typedef struct WsRowFilter WsRowFilter;

/* What a change is published as once its row filter was applied. */
typedef enum WsFilteredAction
{
	WS_ACTION_SKIP,
	WS_ACTION_INSERT,
	WS_ACTION_UPDATE,
	WS_ACTION_DELETE
} WsFilteredAction;

extern WsRowFilter *ws_row_filter_build(Relation publish_rel,
										List *publications);
extern WsFilteredAction ws_row_filter_apply(WsRowFilter *filter,
											WsFilteredAction action,
											HeapTuple old_tuple,
											HeapTuple *new_tuple);

#endif							/* WALSHIP_ROW_FILTER_H */
