/*-------------------------------------------------------------------------
 *
 * delivery.c
 *	  Delivery of sealed batches to the endpoint: building the requests,
 *	  sending them, and acting on the answers.
 *
 * Each sealed batch is prepared once, with the settings in force then:
 * encoded per walship.format (binary, or NDJSON grouped into one request
 * per table when walship.endpoint has {schema}/{table} placeholders, whose
 * values are percent-encoded into the URL), compressed, and kept as the
 * batch's parts (WsBatchPart).  Up to walship.max_inflight requests are in
 * flight at once, oldest batches first.
 *
 * A reload of walship.endpoint reaches prepared requests: before a
 * request is (re)started, its URL is made again from the endpoint in force
 * (retarget_batch); a change of grouping (placeholders added or removed)
 * prepares the batch anew, without the lines of tables whose request was
 * done already (batch->done_tables).
 *
 * Answers: 2xx marks a part done; failures worth retrying wait with capped
 * exponential backoff and jitter; a Retry-After lengthens the wait up to
 * walship.retry_max_delay and holds every request to the endpoint until it
 * has passed.  413 splits the batch (batch.c) once none of its requests is
 * in flight; the halves skip the tables whose request was done already.  Other 4xx (and
 * ClickHouse errors in the data) are rejections, which either stop the
 * pipeline at that batch, retried slowly so a fixed endpoint recovers, or
 * go to walship.dead_letter, per walship.on_rejected.  A dead letter owns a
 * copy of its batch and its request's body, whatever happens to the batch
 * afterwards; dead letters are written by the worker's main loop
 * (ws_delivery_write_dead_letters), never inside decoding.
 *
 * In the clickhouse dialect every request carries an
 * insert_deduplication_token in its URL, the same on every retry of the
 * request (dedup_token): ClickHouse drops a retried insert that it had
 * stored already, whose acknowledgement was lost.
 *
 * Status and counters go to shared memory through shared_state.c; the
 * state is backoff, not streaming, while a request waits to be retried.
 *
 * IDENTIFICATION
 *	  src/delivery.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "access/xlog.h"
#include "common/pg_prng.h"
#include "port/pg_crc32c.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "clickhouse.h"
#include "compression.h"
#include "delivery.h"
#include "format.h"
#include "http_transport.h"
#include "managed_tables.h"
#include "ndjson.h"
#include "progress.h"
#include "record_json.h"
#include "rowbinary.h"
#include "secrets.h"
#include "settings.h"
#include "shared_state.h"

#define WS_CONTENT_TYPE_BINARY	"application/vnd.walship.v2"
#define WS_CONTENT_TYPE_NDJSON	"application/x-ndjson"
#define WS_CONTENT_TYPE_ROWBINARY	"application/octet-stream"

/* Cached relation shapes that make the unused ones be freed, at least. */
#define WS_SHAPE_SWEEP_MIN	64

static void free_dead_letter(WsRejectedBatch *rejected);

WsDelivery *
ws_delivery_create(MemoryContext context, WsHttpClient *http,
				   WsBatcher *batcher)
{
	WsDelivery *delivery = MemoryContextAllocZero(context, sizeof(WsDelivery));

	delivery->context = context;
	delivery->http = http;
	delivery->batcher = batcher;
	delivery->tables = ws_managed_tables_create(context, http,
												&delivery->last_request_id);
	delivery->shape_sweep_at = WS_SHAPE_SWEEP_MIN;
	return delivery;
}

/*
 * Frees the cached relation shapes (rowbinary.c) that no request in the
 * queue and no managed table uses any more, once there are
 * delivery->shape_sweep_at of them: a long-lived worker sees a new shape
 * for every ALTER TABLE of a published table.
 */
static void
release_unused_shapes(WsDelivery *delivery)
{
	List	   *in_use = NIL;
	ListCell   *lc;
	int			released;

	if (ws_rowbinary_shape_count() < delivery->shape_sweep_at)
		return;
	foreach(lc, delivery->batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);
		ListCell   *plc;

		foreach(plc, batch->parts)
		{
			WsBatchPart *part = lfirst(plc);

			if (part->shape)
				in_use = lappend(in_use, (void *) part->shape);
			if (part->base_shape)
				in_use = lappend(in_use, (void *) part->base_shape);
		}
	}
	ws_managed_tables_shapes_in_use(delivery->tables, &in_use);
	released = ws_rowbinary_release_shapes(in_use);
	list_free(in_use);
	delivery->shape_sweep_at = Max(WS_SHAPE_SWEEP_MIN,
								   2 * ws_rowbinary_shape_count());
	ereport(DEBUG1,
			(errmsg("walship freed %d relation shapes no longer used, keeping %d",
					released, ws_rowbinary_shape_count())));
}

/* Writes the dead letters, which own copies of their batches and bodies. */
void
ws_delivery_write_dead_letters(WsDelivery *delivery)
{
	ListCell   *lc;

	if (delivery->rejected == NIL)
		return;
	ws_progress_write_dead_letters(delivery->rejected);
	foreach(lc, delivery->rejected)
		free_dead_letter(lfirst(lc));
	list_free(delivery->rejected);
	delivery->rejected = NIL;
}

/* Whether counters changed (for walship.progress) since the last call. */
bool
ws_delivery_take_progress(WsDelivery *delivery)
{
	bool		dirty = delivery->progress_dirty;

	delivery->progress_dirty = false;
	return dirty;
}

/*
 * Appends str percent-encoded for use anywhere in a URL.  Dots are encoded
 * too: a name "." or ".." (or placeholders side by side making one) would
 * otherwise be a dot segment, which clients and servers resolve to another
 * path.
 */
static void
append_url_escaped(StringInfo out, const char *str)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) str; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '~')
			appendStringInfoChar(out, (char) *p);
		else
		{
			appendStringInfoChar(out, '%');
			appendStringInfoChar(out, hex[*p >> 4]);
			appendStringInfoChar(out, hex[*p & 0xF]);
		}
	}
}

/* Whether an endpoint has placeholders: one request per table. */
static bool
endpoint_per_table(const char *endpoint)
{
	return strstr(endpoint, "{table}") != NULL ||
		strstr(endpoint, "{schema}") != NULL;
}

/* The endpoint with {schema} and {table} replaced, URL-encoded. */
static char *
endpoint_for(const char *endpoint, const char *schema, const char *table)
{
	StringInfoData url;
	const char *p = endpoint;

	initStringInfo(&url);
	while (*p)
	{
		if (strncmp(p, "{schema}", 8) == 0)
		{
			append_url_escaped(&url, schema);
			p += 8;
		}
		else if (strncmp(p, "{table}", 7) == 0)
		{
			append_url_escaped(&url, table);
			p += 7;
		}
		else
			appendStringInfoChar(&url, *p++);
	}
	return url.data;
}

/* A part under construction: the lines for one URL. */
typedef struct WsPartBuilder
{
	char	   *schema;
	char	   *table;
	StringInfoData lines;
	int			nlines;
} WsPartBuilder;

/* The builder of rel's lines (of all lines when NULL); lines in lines_context. */
static WsPartBuilder *
builder_for(List **builders, const WsRelation *rel, MemoryContext lines_context)
{
	MemoryContext old;

	ListCell   *lc;
	WsPartBuilder *builder;

	foreach(lc, *builders)
	{
		builder = lfirst(lc);
		if (rel == NULL ||
			(strcmp(builder->schema, rel->schema_name) == 0 &&
			 strcmp(builder->table, rel->table_name) == 0))
			return builder;
	}
	builder = palloc0(sizeof(WsPartBuilder));
	builder->schema = rel ? pstrdup(rel->schema_name) : "";
	builder->table = rel ? pstrdup(rel->table_name) : "";
	old = MemoryContextSwitchTo(lines_context);
	initStringInfo(&builder->lines);
	MemoryContextSwitchTo(old);
	*builders = lappend(*builders, builder);
	return builder;
}

/*
 * Encodes a batch's records as NDJSON lines, grouped by table when the
 * endpoint has placeholders, else all in one group.  The lines of tables
 * in batch->done_tables (sent before a split or regroup) are left out.
 */
static List *
encode_ndjson_groups(WsBatch *batch, bool per_table, MemoryContext lines_context)
{
	List	   *builders = NIL;
	WsStreamContext stream;
	WsReader	reader;
	StringInfoData lines;
	WsNdjsonOptions options;

	options.shape = (WsNdjsonShape) walship_ndjson_shape;
	options.dialect = (WsDialect) walship_dialect;

	initStringInfo(&lines);
	ws_stream_context_init(&stream);
	/* the records come from walship's own output plugin */
	stream.json_trusted = true;
	ws_reader_init(&reader, batch->records.data, batch->records.len);
	if (!per_table)
	{
		WsPartBuilder *only = builder_for(&builders, NULL, lines_context);

		/*
		 * NDJSON takes about 3 to 5 times the bytes of the records: room
		 * for 4 times at once spares the copies (and fresh pages) of
		 * doubling the buffer from 1 kB; pages not written cost nothing.
		 */
		if ((Size) batch->records.len < (MaxAllocSize - 1) / 4)
			enlargeStringInfo(&only->lines, batch->records.len * 4);
	}

	while (!ws_reader_done(&reader))
	{
		WsRecord	record;
		int			n;
		char	   *line;

		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		if (!per_table && batch->done_tables == NIL)
		{
			WsPartBuilder *only = linitial(builders);

			/* one group: the lines go straight into it */
			only->nlines += ws_ndjson_append(&only->lines, &record, &stream,
											 &options);
			continue;
		}
		resetStringInfo(&lines);
		n = ws_ndjson_append(&lines, &record, &stream, &options);
		if (n == 0)
			continue;

		/* a TRUNCATE has a line per truncated table, others one table */
		line = lines.data;
		for (int i = 0; i < n; i++)
		{
			uint64		rel_id = record.kind == WS_REC_TRUNCATE ?
				record.rel_ids[i] : record.rel_id;
			const WsRelation *rel = ws_stream_relation(&stream, rel_id);
			char	   *end = strchr(line, '\n');

			if (rel == NULL ||
				!ws_batch_table_done(batch, rel->schema_name, rel->table_name,
									 NULL))
			{
				WsPartBuilder *builder = builder_for(&builders,
													 per_table ? rel : NULL,
													 lines_context);

				appendBinaryStringInfo(&builder->lines, line, end - line + 1);
				builder->nlines++;
			}
			line = end + 1;
		}
	}
	return builders;
}

/*
 * The insert_deduplication_token of a request: what it carries, named so
 * that no other request has the same (docs/clickhouse.md, "Redelivery").
 * The system identifier and slot tell pipelines apart (two PostgreSQL
 * servers may ship the same LSNs into one table), the batch's first and
 * last change ids and the table the rows, and the CRC-32C of the payload
 * its content, should the same rows be encoded otherwise after a reload.
 */
static char *
make_dedup_token(const WsBatch *batch, const char *schema, const char *table,
				 const char *payload, int payload_len)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, payload, payload_len);
	FIN_CRC32C(crc);
	return psprintf("walship-" UINT64_FORMAT "-%s-%s..%s%s%s%s%s-%08x",
					GetSystemIdentifier(),
					walship_slot_name ? walship_slot_name : "",
					batch->first_change, batch->last_change,
					table ? "-" : "", schema ? schema : "",
					table ? "." : "", table ? table : "", crc);
}

/*
 * Adds a request to the batch: payload, compressed, to url (made from
 * walship.endpoint for schema.table, or for the whole batch when they are
 * NULL).  With adopt_payload (a palloc'd payload in the batcher's context)
 * an uncompressed body is the payload itself instead of a copy.
 */
static WsBatchPart *
add_part(WsDelivery *delivery, WsBatch *batch, const char *url,
		 const char *schema, const char *table,
		 const char *payload, int payload_len, int nlines,
		 const char *content_type, bool adopt_payload)
{
	MemoryContext old;
	WsBatchPart *part;
	StringInfoData compressed;

	old = MemoryContextSwitchTo(delivery->batcher->context);
	part = palloc0(sizeof(WsBatchPart));
	if (adopt_payload && walship_compression == WS_COMPRESSION_NONE)
	{
		Assert(GetMemoryChunkContext((void *) payload) == delivery->batcher->context);
		compressed.data = (char *) payload;
		compressed.len = payload_len;
	}
	else
	{
		initStringInfo(&compressed);
		ws_compress((WsCompression) walship_compression, payload, payload_len,
					&compressed);
	}
	part->index = list_length(batch->parts);
	part->url = pstrdup(url);
	part->endpoint = pstrdup(walship_endpoint);
	part->schema = schema ? pstrdup(schema) : NULL;
	part->table = table ? pstrdup(table) : NULL;
	part->content_type = content_type;
	part->content_encoding = ws_compression_encoding((WsCompression) walship_compression);
	part->body = compressed.data;
	part->body_len = compressed.len;
	part->nlines = nlines;
	part->status = nlines > 0 ? WS_BATCH_READY : WS_BATCH_DONE;
	if ((WsDialect) walship_dialect == WS_DIALECT_CLICKHOUSE)
		part->dedup_token = make_dedup_token(batch, schema, table, payload,
											 payload_len);
	batch->parts = lappend(batch->parts, part);
	MemoryContextSwitchTo(old);
	return part;
}

/* The rows of one table and relation shape: one RowBinary request. */
typedef struct WsRowBinaryGroup
{
	const WsRowBinaryShape *base;	/* the relation's */
	const WsRowBinaryShape *shape;
	StringInfoData rows;
	int			nrows;
	char	   *problem;		/* the first row that cannot be written */
} WsRowBinaryGroup;

/* Which group a relation id's rows go to, while its description holds. */
typedef struct RelGroup
{
	uint64		rel_id;
	WsRowBinaryGroup *group;	/* NULL: done before, left out */
} RelGroup;

/*
 * The group of a row of rel (relation id rel_id) in a batch prepared as one
 * request per table and relation shape: looked up once per relation
 * description through *by_rel, made on the shape's first row and appended
 * to *groups.  NULL when that table and shape were done before a split or
 * a new preparation.  With widen, the rows are written in the ClickHouse
 * table's wider types where it has them (RowBinary; ClickHouse converts
 * NDJSON values itself).
 */
static WsRowBinaryGroup *
shape_group_for(WsDelivery *delivery, WsBatch *batch, List **groups,
				List **by_rel, const WsRelation *rel, uint64 rel_id,
				bool widen)
{
	const WsRowBinaryShape *base;
	const WsRowBinaryShape *shape;
	WsRowBinaryGroup *group = NULL;
	RelGroup   *known;
	ListCell   *lc;

	foreach(lc, *by_rel)
		if (((RelGroup *) lfirst(lc))->rel_id == rel_id)
			return ((RelGroup *) lfirst(lc))->group;

	base = ws_rowbinary_shape(rel, (WsDialect) walship_dialect);
	shape = widen ? ws_managed_tables_effective(delivery->tables, base) : base;
	foreach(lc, *groups)
		if (((WsRowBinaryGroup *) lfirst(lc))->shape == shape)
			group = lfirst(lc);
	if (group == NULL &&
		!ws_batch_table_done(batch, base->schema_name, base->table_name, base))
	{
		group = palloc0(sizeof(WsRowBinaryGroup));
		group->base = base;
		group->shape = shape;
		initStringInfo(&group->rows);
		*groups = lappend(*groups, group);
	}
	known = palloc(sizeof(RelGroup));
	known->rel_id = rel_id;
	known->group = group;
	*by_rel = lappend(*by_rel, known);
	return group;
}

/*
 * Adds the request of a group made by shape_group_for(): statement run by
 * ClickHouse on body, with the group's shapes for managed_tables.c.
 */
static WsBatchPart *
add_statement_part(WsDelivery *delivery, WsBatch *batch,
				   const WsRowBinaryGroup *group, const char *statement,
				   const char *body, int body_len, int nrows,
				   const char *content_type)
{
	WsBatchPart *part;
	MemoryContext old;

	part = add_part(delivery, batch, ws_clickhouse_statement_url(statement),
					group->base->schema_name, group->base->table_name,
					body, body_len, nrows, content_type, false);
	old = MemoryContextSwitchTo(delivery->batcher->context);
	part->statement = pstrdup(statement);
	part->shape = group->shape;
	part->base_shape = group->base;
	MemoryContextSwitchTo(old);
	return part;
}

/*
 * Prepares a batch as RowBinary requests: one per table and relation
 * shape, in order of first appearance, each an INSERT with the shape's
 * column list into walship.clickhouse_database.  Rows of tables and shapes
 * done before a split are left out.  A group with a row that cannot be
 * written gets no body but the problem, and is rejected without a
 * request (start_or_reject).
 */
static void
prepare_rowbinary_parts(WsDelivery *delivery, WsBatch *batch)
{
	List	   *groups = NIL;
	WsStreamContext stream;
	WsReader	reader;
	ListCell   *lc;
	List	   *by_rel = NIL;	/* RelGroup *: each relation id's group */

	ws_stream_context_init(&stream);
	stream.json_trusted = true;
	ws_reader_init(&reader, batch->records.data, batch->records.len);
	while (!ws_reader_done(&reader))
	{
		WsRecord	record;
		const WsRelation *rel;
		WsRowBinaryGroup *group;
		char	   *problem;
		int			n;

		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		/* a relation described anew may have another shape */
		if (record.kind == WS_REC_RELATION)
		{
			list_free_deep(by_rel);
			by_rel = NIL;
			continue;
		}
		if ((rel = ws_flat_row_relation(&stream, &record)) == NULL)
			continue;

		group = shape_group_for(delivery, batch, &groups, &by_rel, rel,
								record.rel_id, true);
		if (group == NULL || group->problem)
			continue;
		n = ws_rowbinary_append(&group->rows, &record, &stream, rel,
								group->shape, &problem);
		if (n < 0)
			group->problem = problem;
		else
			group->nrows += n;
	}

	foreach(lc, groups)
	{
		WsRowBinaryGroup *group = lfirst(lc);
		WsBatchPart *part;

		part = add_statement_part(delivery, batch, group,
								  ws_rowbinary_insert_statement(group->shape,
																walship_clickhouse_database),
								  group->problem ? "" : group->rows.data,
								  group->problem ? 0 : group->rows.len,
								  Max(group->nrows, group->problem ? 1 : 0),
								  WS_CONTENT_TYPE_ROWBINARY);
		if (group->problem)
			part->local_error = MemoryContextStrdup(delivery->batcher->context,
													group->problem);
	}
}

/*
 * Prepares a batch as NDJSON requests to managed ClickHouse tables
 * (ws_managed_tables_ndjson()): like RowBinary, one request per table and
 * relation shape, in order of first appearance, each running
 * INSERT INTO walship.clickhouse_database.table FORMAT JSONEachRow, so
 * that no request holds rows of two shapes and managed_tables.c can
 * change the table between them.  Lines of tables and shapes done before
 * a split are left out.
 */
static void
prepare_ndjson_managed_parts(WsDelivery *delivery, WsBatch *batch)
{
	List	   *groups = NIL;	/* WsRowBinaryGroup *, rows as lines */
	List	   *by_rel = NIL;	/* RelGroup *: each relation id's group */
	WsStreamContext stream;
	WsReader	reader;
	WsNdjsonOptions options;
	ListCell   *lc;

	options.shape = WS_NDJSON_FLAT;
	options.dialect = (WsDialect) walship_dialect;
	ws_stream_context_init(&stream);
	stream.json_trusted = true;
	ws_reader_init(&reader, batch->records.data, batch->records.len);
	while (!ws_reader_done(&reader))
	{
		WsRecord	record;
		const WsRelation *rel;
		WsRowBinaryGroup *group;

		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		/* a relation described anew may have another shape */
		if (record.kind == WS_REC_RELATION)
		{
			list_free_deep(by_rel);
			by_rel = NIL;
			continue;
		}
		/* TRUNCATE is reported here; RESYNC gets a statement of its own */
		if ((rel = ws_flat_row_relation(&stream, &record)) == NULL)
			continue;

		group = shape_group_for(delivery, batch, &groups, &by_rel, rel,
								record.rel_id, false);
		if (group != NULL)
			group->nrows += ws_ndjson_append(&group->rows, &record, &stream,
											 &options);
	}

	foreach(lc, groups)
	{
		WsRowBinaryGroup *group = lfirst(lc);
		char	   *statement = psprintf("INSERT INTO %s.%s FORMAT JSONEachRow",
										 ws_clickhouse_quote_ident(walship_clickhouse_database),
										 ws_clickhouse_quote_ident(group->base->table_name));

		(void) add_statement_part(delivery, batch, group, statement,
								  group->rows.data, group->rows.len,
								  group->nrows, WS_CONTENT_TYPE_NDJSON);
	}
}

/*
 * The ClickHouse statement that makes a table equal to PostgreSQL's again
 * after a resync: the rows it holds with a lower version than the resync's
 * were not sent again, so they are gone.
 */
static char *
resync_statement(const WsRelation *rel, XLogRecPtr version)
{
	return psprintf("ALTER TABLE %s.%s DELETE WHERE _version < " UINT64_FORMAT,
					ws_clickhouse_quote_ident(walship_clickhouse_database),
					ws_clickhouse_quote_ident(rel->table_name),
					(uint64) version);
}

/*
 * In the clickhouse dialect a RESYNC record has no line: it becomes a
 * request of its own that runs resync_statement() through ClickHouse's
 * HTTP interface.  Naming the table needs walship.clickhouse_database;
 * without it nothing of the batch is sent (state error) until it is set.
 * Returns false then.
 */
static bool
add_resync_statements(WsDelivery *delivery, WsBatch *batch)
{
	WsStreamContext stream;
	WsReader	reader;

	ws_stream_context_init(&stream);
	stream.json_trusted = true;
	ws_reader_init(&reader, batch->records.data, batch->records.len);
	while (!ws_reader_done(&reader))
	{
		WsRecord	record;
		const WsRelation *rel;
		WsBatchPart *part;
		MemoryContext old;
		char	   *statement;

		ws_read_record(&reader, &record);
		ws_stream_context_track(&stream, &record);
		if (record.kind != WS_REC_RESYNC)
			continue;
		rel = ws_stream_relation(&stream, record.rel_id);
		if (rel == NULL)
			elog(ERROR, "walship batch has a RESYNC record of an unknown relation");
		if (walship_clickhouse_database == NULL ||
			walship_clickhouse_database[0] == '\0')
		{
			char	   *message = psprintf("walship cannot delete the rows of table \"%s.%s\" that the resync did not send again: walship.clickhouse_database is not set",
										   rel->schema_name, rel->table_name);

			delivery->settings_problem = true;
			ws_shared_report_problem(WS_STATE_ERROR, message,
									 "Set walship.clickhouse_database to the ClickHouse database of the tables and reload; nothing after the resync is sent until then.");
			return false;
		}
		/* idempotent: sent again, if need be, after a split or regroup */
		statement = resync_statement(rel, record.change_lsn);

		old = MemoryContextSwitchTo(delivery->batcher->context);
		part = palloc0(sizeof(WsBatchPart));
		part->index = list_length(batch->parts);
		part->statement = pstrdup(statement);
		part->url = ws_clickhouse_statement_url(statement);
		part->endpoint = pstrdup(walship_endpoint);
		part->content_type = WS_CONTENT_TYPE_NDJSON;
		part->content_encoding = NULL;
		part->body = pstrdup("");
		part->body_len = 0;
		part->nlines = 1;
		part->status = WS_BATCH_READY;
		batch->parts = lappend(batch->parts, part);
		MemoryContextSwitchTo(old);
		ereport(LOG,
				(errmsg("walship asks ClickHouse to delete the rows of table \"%s.%s\" with a version below %X/%X, which the resync did not send again",
						rel->schema_name, rel->table_name,
						LSN_FORMAT_ARGS(record.change_lsn))));
	}
	return true;
}

/*
 * Prepares a batch's requests with the settings in force now: encoded per
 * walship.format, one per table when the endpoint has placeholders, and
 * compressed.  Retries send exactly these bodies again.  Returns false
 * when the settings cannot be used together.
 */
static bool
prepare_parts(WsDelivery *delivery, WsBatch *batch)
{
	MemoryContext encode_context = AllocSetContextCreate(CurrentMemoryContext,
														 "walship encode",
														 ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(encode_context);
	bool		per_table = endpoint_per_table(walship_endpoint);

	if (walship_format == WS_FORMAT_ROWBINARY)
	{
		const char *problem = NULL;

		if ((WsDialect) walship_dialect == WS_DIALECT_STANDARD)
			problem = "walship.format = rowbinary needs walship.dialect = clickhouse or clickhouse_18";
		else if (walship_clickhouse_database[0] == '\0')
			problem = "walship.format = rowbinary needs walship.clickhouse_database";
		if (problem)
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(encode_context);
			delivery->settings_problem = true;
			ws_shared_report_problem(WS_STATE_ERROR, problem,
									 "RowBinary rows are written for the ClickHouse table walship.clickhouse_ddl() declares: set walship.dialect = 'clickhouse' (or 'clickhouse_18' for ClickHouse 18.16) and walship.clickhouse_database to the ClickHouse database of the tables, set walship.endpoint to ClickHouse's HTTP interface (http://host:8123/), and reload.");
			return false;
		}
		prepare_rowbinary_parts(delivery, batch);
		/* RowBinary has no line for RESYNC either: the DELETE is run */
		if (!add_resync_statements(delivery, batch))
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(encode_context);
			ws_batch_free_parts(batch);
			return false;
		}
	}
	else if (walship_format == WS_FORMAT_BINARY)
	{
		if (per_table)
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(encode_context);
			delivery->settings_problem = true;
			ws_shared_report_problem(WS_STATE_ERROR,
									 "walship.endpoint has {schema} or {table} placeholders, which need walship.format = ndjson",
									 "Set walship.format = 'ndjson', or use an endpoint without placeholders, and reload.");
			return false;
		}
		add_part(delivery, batch, walship_endpoint, NULL, NULL,
				 batch->records.data, batch->records.len, batch->nchanges,
				 WS_CONTENT_TYPE_BINARY, false);
	}
	else if (ws_managed_tables_ndjson())
	{
		prepare_ndjson_managed_parts(delivery, batch);
		if (!add_resync_statements(delivery, batch))
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(encode_context);
			ws_batch_free_parts(batch);
			return false;
		}
	}
	else
	{
		ListCell   *lc;

		/*
		 * Uncompressed, the lines are the bodies: built where the batch's
		 * parts live, and not copied (a body is the largest thing a batch
		 * holds).
		 */
		bool		adopt = walship_compression == WS_COMPRESSION_NONE;

		foreach(lc, encode_ndjson_groups(batch, per_table,
										 adopt ? delivery->batcher->context :
										 encode_context))
		{
			WsPartBuilder *builder = lfirst(lc);
			char	   *url = per_table ?
				endpoint_for(walship_endpoint, builder->schema, builder->table) :
				walship_endpoint;

			add_part(delivery, batch, url,
					 per_table ? builder->schema : NULL,
					 per_table ? builder->table : NULL,
					 builder->lines.data, builder->lines.len, builder->nlines,
					 WS_CONTENT_TYPE_NDJSON, adopt);
		}
		if (walship_dialect != WS_DIALECT_STANDARD &&
			!add_resync_statements(delivery, batch))
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(encode_context);
			ws_batch_free_parts(batch);
			return false;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(encode_context);
	return true;
}

static void
start_part(WsDelivery *delivery, WsBatch *batch, WsBatchPart *part)
{
	WsHttpRequest request;
	char		batch_id[2 * WS_CHANGE_ID_LEN + 16];

	snprintf(batch_id, sizeof(batch_id), "%s..%s",
			 batch->first_change, batch->last_change);
	memset(&request, 0, sizeof(request));

	/*
	 * Every request gets an id of its own, whatever the number of parts: a
	 * result can only ever be matched with the request it answers.
	 */
	part->request_id = ++delivery->last_request_id;
	request.request_id = part->request_id;
	request.url = part->url;
	if (part->dedup_token != NULL)
	{
		StringInfoData url;

		/* libcurl copies the URL */
		initStringInfo(&url);
		appendStringInfo(&url, "%s%cinsert_deduplication_token=", part->url,
						 strchr(part->url, '?') ? '&' : '?');
		append_url_escaped(&url, part->dedup_token);
		request.url = url.data;
	}
	request.content_type = part->content_type;
	request.content_encoding = part->content_encoding;
	request.batch_id = batch_id;
	request.body = part->body;
	request.body_len = part->body_len;
	ws_http_start(delivery->http, &request);
	if (request.url != part->url)
		pfree((char *) request.url);
	part->status = WS_BATCH_SENDING;
	part->attempts++;
	ws_shared_note_sent(batch->confirm_lsn);
}

/* Marks the batch done when every part is. */
static void
check_batch_done(WsDelivery *delivery, WsBatch *batch)
{
	ListCell   *lc;

	foreach(lc, batch->parts)
		if (((WsBatchPart *) lfirst(lc))->status != WS_BATCH_DONE)
			return;
	batch->status = WS_BATCH_DONE;
	ws_shared_count_batch(batch->nchanges);
	ws_shared_note_batch_done(batch->confirm_lsn, batch->oldest_commit_time,
							  GetCurrentTimestamp());
	delivery->progress_dirty = true;
}

static WsBatch *
find_batch(WsDelivery *delivery, uint64 request_id, WsBatchPart **part)
{
	ListCell   *lc;

	foreach(lc, delivery->batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);
		ListCell   *plc;

		if (batch->status != WS_BATCH_READY)
			continue;
		foreach(plc, batch->parts)
		{
			WsBatchPart *candidate = lfirst(plc);

			if (candidate->request_id == request_id &&
				candidate->status == WS_BATCH_SENDING)
			{
				*part = candidate;
				return batch;
			}
		}
	}
	return NULL;
}

/*
 * Capped exponential backoff with full jitter above half the delay; a
 * Retry-After (-1: none) lengthens it, up to walship.retry_max_delay too.
 */
static int
backoff_ms(int attempts, int retry_after_ms)
{
	double		delay = walship_retry_min_delay * pow(2.0, Min(attempts - 1, 30));
	int			max_delay = Max(walship_retry_max_delay, walship_retry_min_delay);

	if (delay > max_delay)
		delay = max_delay;
	delay = delay / 2 + (delay / 2) * pg_prng_double(&pg_global_prng_state);
	if (retry_after_ms >= 0)
		delay = Max(delay, Min(retry_after_ms, max_delay));
	return (int) delay;
}

/*
 * A copy of a rejected request and its batch, for walship.dead_letter: the
 * batch may be split (413 of another of its requests) or released before
 * the dead letter is written, so the dead letter owns what it shows.  The
 * body is taken over from the part, which keeps no body afterwards.
 */
static WsRejectedBatch *
make_dead_letter(WsDelivery *delivery, WsBatch *batch, WsBatchPart *part,
				 const WsHttpResult *result, const char *error)
{
	MemoryContext old = MemoryContextSwitchTo(delivery->context);
	WsRejectedBatch *rejected = palloc0(sizeof(WsRejectedBatch));
	WsBatch    *batch_copy = palloc0(sizeof(WsBatch));
	WsBatchPart *part_copy = palloc0(sizeof(WsBatchPart));

	batch_copy->seq = batch->seq;
	batch_copy->nchanges = batch->nchanges;
	strlcpy(batch_copy->first_change, batch->first_change, WS_CHANGE_ID_LEN);
	strlcpy(batch_copy->last_change, batch->last_change, WS_CHANGE_ID_LEN);
	initStringInfo(&batch_copy->records);
	appendBinaryStringInfo(&batch_copy->records, batch->records.data,
						   batch->records.len);

	part_copy->index = part->index;
	part_copy->url = pstrdup(part->url);
	part_copy->content_type = part->content_type;	/* static strings */
	part_copy->content_encoding = part->content_encoding;
	part_copy->nlines = part->nlines;
	part_copy->status = WS_BATCH_DONE;
	part_copy->rejected = true;
	part_copy->attempts = part->attempts;
	part_copy->body_len = part->body_len;
	part_copy->body = part->body;
	part->body = NULL;

	rejected->batch = batch_copy;
	rejected->part = part_copy;
	rejected->http_status = result->status;
	strlcpy(rejected->error, error, sizeof(rejected->error));
	strlcpy(rejected->response, result->response, sizeof(rejected->response));
	MemoryContextSwitchTo(old);
	return rejected;
}

static void
free_dead_letter(WsRejectedBatch *rejected)
{
	pfree(rejected->batch->records.data);
	pfree(rejected->batch);
	pfree(rejected->part->url);
	if (rejected->part->body)
		pfree(rejected->part->body);
	pfree(rejected->part);
	pfree(rejected);
}

/*
 * Holds back every request to the endpoint for delay_ms: it asked for that
 * with Retry-After (already capped by walship.retry_max_delay).
 */
static void
hold_endpoint(WsDelivery *delivery, TimestampTz now, int delay_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(now, delay_ms);

	if (delivery->held_endpoint == NULL ||
		strcmp(delivery->held_endpoint, walship_endpoint) != 0)
	{
		if (delivery->held_endpoint)
			pfree(delivery->held_endpoint);
		delivery->held_endpoint = MemoryContextStrdup(delivery->context,
													  walship_endpoint);
		delivery->held_until = until;
	}
	else if (until > delivery->held_until)
		delivery->held_until = until;
	/* the encoder workers' other processes hold it too */
	ws_shared_hold_endpoint(walship_endpoint, until);
}

/* Whether a Retry-After holds the endpoint at now. */
static bool
endpoint_held(WsDelivery *delivery, TimestampTz now)
{
	if (delivery->held_endpoint == NULL)
		return ws_shared_endpoint_held(walship_endpoint, now);
	/* over, or for another endpoint than the one now configured */
	if (now >= delivery->held_until ||
		strcmp(delivery->held_endpoint, walship_endpoint) != 0)
	{
		pfree(delivery->held_endpoint);
		delivery->held_endpoint = NULL;
		return ws_shared_endpoint_held(walship_endpoint, now);
	}
	return true;
}

/*
 * Points the batch's requests at walship.endpoint, when it changed by
 * reload since they were prepared: requests waiting for a retry go to the
 * new endpoint, at once.  When the change adds or removes placeholders,
 * the requests are grouped differently, so the batch is prepared anew once
 * none is in flight, without the lines of tables whose request was done
 * (acknowledged or dead-lettered).  Returns false while the batch must
 * wait for that.
 */
static bool
retarget_batch(WsBatch *batch, TimestampTz now)
{
	ListCell   *lc;
	bool		regroup = false;
	bool		sending = false;

	foreach(lc, batch->parts)
	{
		WsBatchPart *part = lfirst(lc);

		if (part->status == WS_BATCH_SENDING)
			sending = true;
		if (strcmp(part->endpoint, walship_endpoint) != 0 &&
			part->statement == NULL &&
			endpoint_per_table(part->endpoint) != endpoint_per_table(walship_endpoint))
			regroup = true;
	}
	if (regroup)
	{
		if (sending)
			return false;
		ws_batch_note_done_tables(batch);
		ws_batch_free_parts(batch);
		return true;
	}

	foreach(lc, batch->parts)
	{
		WsBatchPart *part = lfirst(lc);
		MemoryContext old;

		if (part->status == WS_BATCH_DONE || part->status == WS_BATCH_SENDING ||
			strcmp(part->endpoint, walship_endpoint) == 0)
			continue;
		old = MemoryContextSwitchTo(GetMemoryChunkContext(part->url));
		pfree(part->url);
		pfree(part->endpoint);
		part->url = part->statement ?
			ws_clickhouse_statement_url(part->statement) :
			part->table ?
			endpoint_for(walship_endpoint, part->schema, part->table) :
			pstrdup(walship_endpoint);
		part->endpoint = pstrdup(walship_endpoint);
		MemoryContextSwitchTo(old);
		if (part->status == WS_BATCH_WAITING && part->retry_at != DT_NOEND)
			part->retry_at = now;
	}
	return true;
}

/*
 * Whether a request that failed waits to be retried, or is being retried
 * (a 413 waiting for its split does not count, nor a rejected batch under
 * on_rejected = stop, which is an error), or a Retry-After holds the
 * endpoint.
 */
static bool
delivery_parked(WsDelivery *delivery, TimestampTz now)
{
	ListCell   *lc;

	if (endpoint_held(delivery, now))
		return true;
	foreach(lc, delivery->batcher->queue)
	{
		WsBatch    *batch = lfirst(lc);
		ListCell   *plc;

		if (batch->status != WS_BATCH_READY || batch->split_pending)
			continue;
		foreach(plc, batch->parts)
		{
			WsBatchPart *part = lfirst(plc);

			if (!part->rejected &&
				(part->status == WS_BATCH_WAITING ||
				 (part->status == WS_BATCH_SENDING && part->attempts > 1)))
				return true;
		}
	}
	return false;
}

/* The state while shipping: streaming, or backoff while a batch is parked. */
WsWorkerState
ws_delivery_state(WsDelivery *delivery)
{
	return delivery_parked(delivery, GetCurrentTimestamp()) ?
		WS_STATE_BACKOFF : WS_STATE_STREAMING;
}

static void
describe_failure(StringInfo message, const WsHttpResult *result)
{
	if (result->status != 0)
		appendStringInfo(message, "HTTP %ld", result->status);
	else
		appendStringInfoString(message, "no response");
	if (result->clickhouse_exception_code[0] != '\0')
		appendStringInfo(message, " (ClickHouse exception %s)",
						 result->clickhouse_exception_code);
	if (result->error[0] != '\0')
		appendStringInfo(message, ": %s", result->error);
	/*
	 * ClickHouse puts its error in the body.  Only its code is kept: the
	 * text may quote row data, and walship.status is readable by everyone
	 * (walship.dead_letter, for admins, keeps the whole response).
	 */
	{
		int			code;

		if (sscanf(result->response, "Code: %d", &code) == 1)
			appendStringInfo(message, " (ClickHouse error code %d)", code);
	}
}

static void
handle_result(WsDelivery *delivery, const WsHttpResult *given)
{
	WsHttpResult adjusted = *given;
	const WsHttpResult *result = &adjusted;
	WsBatchPart *part = NULL;
	WsBatch    *batch = find_batch(delivery, result->request_id, &part);
	TimestampTz now = GetCurrentTimestamp();
	StringInfoData message;

	if (batch == NULL)
		elog(ERROR, "walship received a result for unknown request " UINT64_FORMAT,
			 result->request_id);

	ws_shared_note_http_status(result->status);

	if (ws_clickhouse_error_is_permanent(result))
		adjusted.outcome = WS_HTTP_REJECTED;

	initStringInfo(&message);
	switch (result->outcome)
	{
		case WS_HTTP_ACKNOWLEDGED:
			part->status = WS_BATCH_DONE;
			part->rejected = false;
			ws_shared_count_acknowledged(part->body_len, now);
			/* backoff ends in ws_delivery_pump, once nothing is parked */
			if (delivery->last_error_batch == batch->seq)
			{
				ws_shared_change_state(WS_STATE_BIT(WS_STATE_ERROR),
									   ws_delivery_state(delivery));
				ereport(LOG,
						(errmsg("walship endpoint accepted batch %s..%s after %d attempts",
								batch->first_change, batch->last_change,
								part->attempts)));
				delivery->last_error_batch = 0;
				ws_shared_clear_error();
			}
			pfree(part->body);
			part->body = NULL;
			check_batch_done(delivery, batch);
			break;

		case WS_HTTP_TOO_LARGE:
			if (batch->nchanges >= 2)
			{
				ereport(LOG,
						(errmsg("walship endpoint refused a batch of %d changes as too large (HTTP 413); splitting it",
								batch->nchanges)));
				part->status = WS_BATCH_WAITING;
				part->retry_at = DT_NOEND;
				batch->split_pending = true;
				break;
			}
			/* a single change that is too large is a permanent rejection */
			/* FALLTHROUGH */

		case WS_HTTP_REJECTED:
			describe_failure(&message, result);
			if (!part->rejected)
				ws_shared_count_rejected();
			part->rejected = true;
			if (walship_on_rejected == WS_ON_REJECTED_DEAD_LETTER)
			{
				MemoryContext old;

				ereport(WARNING,
						(errmsg("walship endpoint rejected batch %s..%s (%s); moving it to walship.dead_letter",
								batch->first_change, batch->last_change, message.data)));
				old = MemoryContextSwitchTo(delivery->context);
				delivery->rejected = lappend(delivery->rejected,
											 make_dead_letter(delivery, batch, part,
															  result, message.data));
				MemoryContextSwitchTo(old);
				part->status = WS_BATCH_DONE;
				check_batch_done(delivery, batch);
			}
			else
			{
				char	   *error = psprintf("endpoint rejected batch %s..%s: %s",
											 batch->first_change, batch->last_change,
											 message.data);

				ws_shared_report_problem(WS_STATE_ERROR, error,
							   "Fix the endpoint or the data; walship retries this batch every walship.retry_max_delay, or set walship.on_rejected = 'dead_letter' to set rejected batches aside.");
				delivery->last_error_batch = batch->seq;
				delivery->progress_dirty = true;
				part->status = WS_BATCH_WAITING;
				part->retry_at = TimestampTzPlusMilliseconds(now, Max(walship_retry_max_delay, walship_retry_min_delay));
				pfree(error);
			}
			break;

		case WS_HTTP_RETRY:
			describe_failure(&message, result);
			{
				int			delay = backoff_ms(part->attempts, result->retry_after_ms);
				char	   *error = psprintf("could not deliver batch %s..%s (attempt %d, retrying in %d ms): %s",
											 batch->first_change, batch->last_change,
											 part->attempts, delay, message.data);

				part->status = WS_BATCH_WAITING;
				part->retry_at = TimestampTzPlusMilliseconds(now, delay);
				/* Retry-After is about the endpoint, not this batch */
				if (result->retry_after_ms >= 0)
					hold_endpoint(delivery, now, delay);
				ws_shared_count_retry();
				ereport(part->attempts == 1 ? LOG : DEBUG1,
						(errmsg("walship %s", error)));
				/*
				 * Never over an "error" another condition reported (a
				 * missing secret, a rejection under on_rejected = stop):
				 * whoever reported it clears it.
				 */
				if (ws_shared_get_state() != WS_STATE_ERROR)
				{
					ws_shared_set_error(error);
					delivery->last_error_batch = batch->seq;
				}
				delivery->progress_dirty = true;
				ws_shared_change_state(WS_STATE_BIT(WS_STATE_STREAMING) |
									   WS_STATE_BIT(WS_STATE_BACKOFF),
									   WS_STATE_BACKOFF);
				pfree(error);
			}
			break;
	}
	pfree(message.data);

	/* split once the batch's other requests, whose bodies curl uses, are over */
	if (batch->split_pending)
	{
		ListCell   *lc;

		foreach(lc, batch->parts)
			if (((WsBatchPart *) lfirst(lc))->status == WS_BATCH_SENDING)
				return;
		batch->split_pending = false;
		ws_batcher_split(delivery->batcher, batch);
	}
}

/*
 * A RowBinary request whose rows cannot be written as the table declares
 * them (rowbinary.c) is rejected without being sent, as ClickHouse rejects
 * the NDJSON line: walship.on_rejected decides what happens to it.
 */
static void
reject_locally(WsDelivery *delivery, WsBatch *batch, WsBatchPart *part)
{
	WsHttpResult result;

	memset(&result, 0, sizeof(result));
	part->request_id = ++delivery->last_request_id;
	part->status = WS_BATCH_SENDING;
	part->attempts++;
	result.request_id = part->request_id;
	result.outcome = WS_HTTP_REJECTED;
	result.retry_after_ms = -1;
	snprintf(result.error, sizeof(result.error), "not sent: %s",
			 part->local_error);
	handle_result(delivery, &result);
}

static bool
list_has_string(List *list, const char *str)
{
	ListCell   *lc;

	foreach(lc, list)
		if (strcmp((char *) lfirst(lc), str) == 0)
			return true;
	return false;
}

/*
 * With encoder workers: whether every batch the decoding worker sealed
 * before this one is done, in whichever process (encoder.c publishes it).
 */
static bool
earlier_batches_done(WsDelivery *delivery, WsBatch *batch)
{
	uint64		seq = batch->backfill_tag;

	/* one process: its queue, which the caller looks at, has them all */
	if (ws_shared_encoder_index < 0)
		return true;
	/* the decoding worker's number; a split leaves it on the last half */
	if (seq == 0)
	{
		bool		after = false;
		ListCell   *lc;

		foreach(lc, delivery->batcher->queue)
		{
			WsBatch    *later = lfirst(lc);

			if (later == batch)
				after = true;
			else if (after && later->backfill_tag != 0)
			{
				seq = later->backfill_tag;
				break;
			}
		}
	}
	return ws_shared_encoders_done_below() >= seq;
}

/*
 * Whether a RowBinary (or managed NDJSON) request, not yet done, may be
 * started now as far as its ClickHouse table goes (managed_tables.c).
 * Requests of a table go in
 * queue order across shape changes: once one must wait, later ones of the
 * table wait too (*blocked), and a table is checked or altered only when
 * no earlier request of it is unfinished (*unfinished), so no row of an
 * old shape is in flight while the table changes.  In an encoder worker,
 * whose queue holds only some of the batches, a table is also checked or
 * altered only once every earlier batch of the decoding worker is done,
 * whichever encoder sent it (earlier_batches_done()).  A table that refuses
 * the shape makes the request a local rejection; one with wider types
 * than the shape asks for the batch to be prepared again (REENCODE).
 */
static WsTableReadiness
rowbinary_table_ready(WsDelivery *delivery, WsBatch *batch, WsBatchPart *part,
					  TimestampTz now, List **unfinished, List **blocked)
{
	bool		startable = part->status == WS_BATCH_READY ||
		(part->status == WS_BATCH_WAITING && part->retry_at <= now);
	char	   *why;
	WsTableReadiness readiness;

	if (list_has_string(*blocked, part->table))
		return WS_TABLE_WAIT;
	if (!startable || part->local_error != NULL)
	{
		*unfinished = lappend(*unfinished, part->table);
		return WS_TABLE_READY;	/* in flight, waiting, or rejected anyway */
	}
	readiness = ws_managed_tables_ready(delivery->tables, part->shape,
										!list_has_string(*unfinished, part->table) &&
										earlier_batches_done(delivery, batch),
										now, &why);
	*unfinished = lappend(*unfinished, part->table);

	/*
	 * NDJSON names its columns and writes values as text: ClickHouse reads
	 * them into the table's wider types itself
	 */
	if (readiness == WS_TABLE_REENCODE &&
		strcmp(part->content_type, WS_CONTENT_TYPE_NDJSON) == 0)
		readiness = WS_TABLE_READY;
	if (readiness == WS_TABLE_WAIT || readiness == WS_TABLE_REENCODE)
		*blocked = lappend(*blocked, part->table);
	if (readiness == WS_TABLE_REFUSED)
	{
		part->local_error = MemoryContextStrdup(GetMemoryChunkContext(part), why);
		pfree(why);
		readiness = WS_TABLE_READY;
	}
	return readiness;
}

/* Starts requests for due batches, in order, and collects results. */
void
ws_delivery_pump(WsDelivery *delivery, int timeout_ms)
{
	WsHttpResult results[16];
	int			n;
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;
	bool		paused;
	bool		stop_here = false;
	List	   *unfinished = NIL;	/* RowBinary tables with rows not done */
	List	   *blocked = NIL;	/* ... whose later rows must wait */

	paused = ws_shared_pause_requested();

	/* nothing starts while the endpoint's Retry-After lasts */
	if (!paused && walship_endpoint[0] != '\0' && !ws_secrets_missing() &&
		!endpoint_held(delivery, now))
	{
		foreach(lc, delivery->batcher->queue)
		{
			WsBatch    *batch = lfirst(lc);
			ListCell   *plc;
			bool		reprepare = false;

			if (ws_http_inflight(delivery->http) >= walship_max_inflight)
				break;
			if (batch->status != WS_BATCH_READY || batch->split_pending)
				continue;
			if (stop_here)
				break;
			if (batch->parts == NIL)
			{
				if (!prepare_parts(delivery, batch))
					break;
				if (delivery->settings_problem)
				{
					delivery->settings_problem = false;
					ws_shared_clear_error();
					ws_shared_set_state(WS_STATE_STREAMING);
				}
				check_batch_done(delivery, batch);	/* nothing to send */
			}
			/* later batches wait while this one is regrouped, keeping order */
			else if (!retarget_batch(batch, now) || batch->parts == NIL)
				break;
			foreach(plc, batch->parts)
			{
				WsBatchPart *part = lfirst(plc);

				if (ws_http_inflight(delivery->http) >= walship_max_inflight)
					break;
				if (part->shape != NULL && part->status != WS_BATCH_DONE)
				{
					WsTableReadiness readiness =
						rowbinary_table_ready(delivery, batch, part, now,
											  &unfinished, &blocked);

					if (readiness == WS_TABLE_REENCODE)
					{
						reprepare = true;
						break;
					}
					if (readiness != WS_TABLE_READY)
						continue;
				}
				if ((part->status == WS_BATCH_READY ||
					 (part->status == WS_BATCH_WAITING && part->retry_at <= now)) &&
					part->local_error != NULL)
					reject_locally(delivery, batch, part);
				else if (part->status == WS_BATCH_READY ||
						 (part->status == WS_BATCH_WAITING && part->retry_at <= now))
					start_part(delivery, batch, part);

				/* under on_rejected = stop nothing after a rejected batch goes */
				if (part->rejected && part->status != WS_BATCH_DONE &&
					walship_on_rejected == WS_ON_REJECTED_STOP)
					stop_here = true;
			}

			/*
			 * A table has wider types than the batch's rows were written in:
			 * the batch is prepared again (once none of its requests is in
			 * flight), without what was done already.
			 */
			if (reprepare)
			{
				ListCell   *plc2;
				bool		sending = false;

				foreach(plc2, batch->parts)
					if (((WsBatchPart *) lfirst(plc2))->status == WS_BATCH_SENDING)
						sending = true;
				if (!sending)
				{
					ws_batch_note_done_tables(batch);
					ws_batch_free_parts(batch);
				}
				break;			/* later batches wait, keeping order */
			}
		}
	}

	list_free(unfinished);
	list_free(blocked);
	release_unused_shapes(delivery);

	n = ws_http_poll(delivery->http, timeout_ms, results, lengthof(results));
	for (int i = 0; i < n; i++)
		if (!ws_managed_tables_handle_result(delivery->tables, &results[i]))
			handle_result(delivery, &results[i]);

	/*
	 * backoff while a batch waits for its retry, or the endpoint is held,
	 * here or in another encoder worker
	 */
	ws_shared_set_parked(ws_delivery_state(delivery) == WS_STATE_BACKOFF);

	ws_shared_set_pipeline(ws_http_inflight(delivery->http),
						   ws_batcher_oldest_commit(delivery->batcher));
}

