/*-------------------------------------------------------------------------
 *
 * rowbinary.h
 *	  Encoding of walship change records as ClickHouse RowBinary rows
 *	  (walship.format = rowbinary).
 *
 * IDENTIFICATION
 *	  src/rowbinary.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_ROWBINARY_H
#define WALSHIP_ROWBINARY_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "dialect.h"
#include "format.h"
#include "record_json.h"

typedef struct WsRbType WsRbType;

/*
 * What a relation's rows look like in ClickHouse: the columns of the
 * relation's table as ws_clickhouse_create_table() declares them, then
 * the metadata columns.  Shapes are made once per relation definition and
 * cached until ws_rowbinary_release_shapes() frees those not in use.
 */
typedef struct WsRowBinaryShape
{
	WsDialect	dialect;		/* clickhouse or clickhouse_18 */
	char	   *schema_name;	/* the PostgreSQL table's */
	char	   *table_name;		/* also the ClickHouse table's name */
	int			ncolumns;		/* the table's columns, metadata excluded */
	char	  **names;			/* ncolumns + metadata column names */
	char	  **types;			/* their ClickHouse types, as declared */
	WsRbType  **parsed;
	int			nall;			/* ncolumns + metadata columns */
	char	   *signature;		/* "name type\n" per column: equal
								 * signatures need the same table */
	char	   *column_list;	/* "(`a`, `b`, ..., `_deleted`)" */
	char	   *problem;		/* why no row can be encoded, or NULL */
	WsRelation	relation;		/* a copy of the relation it was made from */
} WsRowBinaryShape;

/*
 * The shape of rel's rows in dialect (clickhouse or clickhouse_18).  Looks the types up in the catalog the first
 * time a relation definition is seen (starting a transaction when none is
 * in progress); cached afterwards.
 */
extern const WsRowBinaryShape *ws_rowbinary_shape(const WsRelation *rel,
												  WsDialect dialect);

/*
 * The CREATE TABLE IF NOT EXISTS of the shape's table in database, as
 * walship.clickhouse_ddl() prints it (the key in column order); NULL with
 * *problem set when the relation has no key.  Needs catalog access, and
 * starts a transaction when none is in progress.  palloc'd.
 */
extern char *ws_rowbinary_create_table(const WsRowBinaryShape *shape,
									   const char *database, char **problem);

/*
 * base with other column types (types[base->nall]), each one that holds
 * every value of base's (the ClickHouse table's own, wider ones): rows are
 * then written in these types.  Cached like base.
 */
extern const WsRowBinaryShape *ws_rowbinary_shape_with_types(const WsRowBinaryShape *base,
															 const char *const *types);

/* How many shapes are cached. */
extern int	ws_rowbinary_shape_count(void);

/*
 * Frees the cached shapes that are not in in_use (const WsRowBinaryShape
 * *), nor shared by one that is; returns how many.  Whoever keeps a shape
 * pointer across calls (delivery.c's requests, managed_tables.c's tables)
 * must list it.
 */
extern int	ws_rowbinary_release_shapes(List *in_use);

/* "INSERT INTO `database`.`table` (columns) FORMAT RowBinary"; palloc'd */
extern char *ws_rowbinary_insert_statement(const WsRowBinaryShape *shape,
										   const char *database);

/*
 * Appends the RowBinary rows of one INSERT, UPDATE, DELETE or READ record
 * of relation rel (shape: ws_rowbinary_shape(rel)) to out: the same rows
 * as the flat NDJSON shape in the clickhouse dialect (an UPDATE that
 * changes the key first gives a delete row for the old key).  Returns the
 * number of rows, or -1 with *problem set (palloc'd) when a row cannot be
 * encoded as the table declares it (an unchanged TOAST value, a value the
 * column's type cannot hold); out is then left as it was.
 */
extern int	ws_rowbinary_append(StringInfo out, const WsRecord *record,
								const WsStreamContext *stream,
								const WsRelation *rel,
								const WsRowBinaryShape *shape,
								char **problem);

#endif							/* WALSHIP_ROWBINARY_H */
