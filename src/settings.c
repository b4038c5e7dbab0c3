/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  Definition and validation of the walship.* configuration parameters.
 *
 * Every parameter is checked when it is set or reloaded, so a bad value in
 * postgresql.conf is refused at SIGHUP with a message saying why, and the
 * running pipeline keeps the last good value.  Values that may carry
 * credentials (the endpoint URL and extra headers) and the names of the
 * secret files are visible to superusers only.  The secrets themselves
 * belong in the files (read by secrets.c), since PostgreSQL writes every
 * changed setting to the server log.
 *
 * IDENTIFICATION
 *	  src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include <ctype.h>

#include "utils/guc.h"
#include "utils/varlena.h"

#include "http_transport.h"
#include "settings.h"

bool		walship_enabled = true;
char	   *walship_database = NULL;
char	   *walship_slot_name = NULL;
char	   *walship_publication = NULL;
char	   *walship_endpoint = NULL;
int			walship_format = WS_FORMAT_NDJSON;
int			walship_ndjson_shape = WS_NDJSON_ENVELOPE;
int			walship_dialect = WS_DIALECT_STANDARD;
int			walship_compression = WS_COMPRESSION_NONE;
int			walship_batch_max_changes = 10000;
int			walship_batch_max_bytes = 4096;
int			walship_batch_max_delay = 50;
int			walship_max_inflight = 4;
int			walship_http_timeout = 30000;
int			walship_connect_timeout = 10000;
int			walship_retry_min_delay = 100;
int			walship_retry_max_delay = 60000;
char	   *walship_headers = NULL;
char	   *walship_auth_token_file = NULL;
char	   *walship_basic_auth_file = NULL;
char	   *walship_headers_file = NULL;
char	   *walship_tls_ca_file = NULL;
bool		walship_tls_verify = true;
int			walship_on_rejected = WS_ON_REJECTED_STOP;
int			walship_backfill_max_rate = 0;
int			walship_backfill_chunk_timeout = 1000;
bool		walship_initial_backfill = true;
int			walship_on_slot_lost = WS_ON_SLOT_LOST_RESYNC;
char	   *walship_clickhouse_database = NULL;
int			walship_max_retained_wal = -1;
int			walship_encoder_workers = WS_DEFAULT_ENCODER_WORKERS;
int			walship_compression_level = 0;
bool		walship_clickhouse_manage_tables = false;

static const struct config_enum_entry format_options[] = {
	{"binary", WS_FORMAT_BINARY, false},
	{"ndjson", WS_FORMAT_NDJSON, false},
	{"rowbinary", WS_FORMAT_ROWBINARY, false},
	{NULL, 0, false}
};

static const struct config_enum_entry shape_options[] = {
	{"envelope", WS_NDJSON_ENVELOPE, false},
	{"flat", WS_NDJSON_FLAT, false},
	{NULL, 0, false}
};

static const struct config_enum_entry dialect_options[] = {
	{"standard", WS_DIALECT_STANDARD, false},
	{"clickhouse", WS_DIALECT_CLICKHOUSE, false},
	{"clickhouse_18", WS_DIALECT_CLICKHOUSE_18, false},
	{NULL, 0, false}
};

static const struct config_enum_entry compression_options[] = {
	{"none", WS_COMPRESSION_NONE, false},
	{"gzip", WS_COMPRESSION_GZIP, false},
	{"zstd", WS_COMPRESSION_ZSTD, false},
	{NULL, 0, false}
};

static const struct config_enum_entry on_slot_lost_options[] = {
	{"resync", WS_ON_SLOT_LOST_RESYNC, false},
	{"stop", WS_ON_SLOT_LOST_STOP, false},
	{NULL, 0, false}
};

static const struct config_enum_entry on_rejected_options[] = {
	{"stop", WS_ON_REJECTED_STOP, false},
	{"dead_letter", WS_ON_REJECTED_DEAD_LETTER, false},
	{NULL, 0, false}
};

static bool
check_endpoint(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;			/* not configured: the worker waits */

	problem = ws_http_url_problem(*newval);
	if (problem == NULL)
		return true;

	/* the URL itself may hold credentials: it is not repeated */
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid URL in \"walship.endpoint\"");
	GUC_check_errdetail("%s", problem);
	GUC_check_errhint("Set \"walship.endpoint\" to an http:// or https:// URL, for example 'https://ingest.example.com/v1/events'.");
	return false;
}

static bool
check_database(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0' &&
		strlen(*newval) < NAMEDATALEN)
		return true;

	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid database name in \"walship.database\"");
	GUC_check_errdetail("A database name must have 1 to %d characters.",
						NAMEDATALEN - 1);
	return false;
}

static bool
check_slot_name(char **newval, void **extra, GucSource source)
{
	const char *name = *newval;

	if (name != NULL && name[0] != '\0' && strlen(name) < NAMEDATALEN)
	{
		const char *p;

		for (p = name; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
				break;
		if (*p == '\0')
			return true;
	}

	GUC_check_errcode(ERRCODE_INVALID_NAME);
	GUC_check_errmsg("invalid replication slot name \"%s\" in \"walship.slot_name\"",
					 name ? name : "");
	GUC_check_errhint("Replication slot names may only contain lower case letters, numbers, and the underscore character, and have at most %d characters.",
					  NAMEDATALEN - 1);
	return false;
}

static bool
check_publication(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	List	   *names = NIL;
	bool		ok;

	if (*newval == NULL)
		return false;
	copy = pstrdup(*newval);
	ok = SplitIdentifierString(copy, ',', &names) && names != NIL;
	list_free(names);
	pfree(copy);
	if (ok)
		return true;

	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid publication list in \"walship.publication\"");
	GUC_check_errhint("Give one or more publication names separated by commas.");
	return false;
}

/*
 * Parses "Name: value; Name2: value2".  Returns NIL for an empty setting
 * and raises no error: the check hook reports problems through *problem.
 */
static List *
parse_headers_internal(const char *value, const char **problem)
{
	List	   *result = NIL;
	char	   *copy = pstrdup(value ? value : "");
	char	   *entry;
	char	   *saveptr = NULL;

	*problem = NULL;
	for (entry = strtok_r(copy, ";", &saveptr); entry != NULL;
		 entry = strtok_r(NULL, ";", &saveptr))
	{
		char	   *colon;
		char	   *name = entry;
		char	   *val;

		while (isspace((unsigned char) *name))
			name++;
		if (*name == '\0')
			continue;
		colon = strchr(name, ':');
		if (colon == NULL || colon == name)
		{
			*problem = "Each header must have the form \"Name: value\".";
			break;
		}
		for (char *p = name; p < colon; p++)
			if (!(isalnum((unsigned char) *p) || strchr("!#$%&'*+-.^_`|~", *p)))
			{
				*problem = "A header name may only contain letters, digits and !#$%&'*+-.^_`|~.";
				break;
			}
		if (*problem)
			break;
		val = colon + 1;
		while (isspace((unsigned char) *val))
			val++;
		for (char *p = val; *p; p++)
			if (*p == '\r' || *p == '\n')
			{
				*problem = "A header value may not contain line breaks.";
				break;
			}
		if (*problem)
			break;
		/* trailing spaces of the value */
		{
			char	   *end = val + strlen(val);

			while (end > val && isspace((unsigned char) end[-1]))
				*--end = '\0';
		}
		*colon = '\0';
		result = lappend(result, psprintf("%s: %s", name, val));
	}
	pfree(copy);
	return result;
}

List *
ws_parse_headers(const char *value)
{
	const char *problem;
	List	   *result = parse_headers_internal(value, &problem);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid header list in \"walship.headers\""),
				 errdetail("%s", problem)));
	return result;
}

static bool
check_headers(char **newval, void **extra, GucSource source)
{
	const char *problem;

	list_free_deep(parse_headers_internal(*newval, &problem));
	if (problem == NULL)
		return true;

	/* header values may be secrets: they are not repeated */
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid header list in \"walship.headers\"");
	GUC_check_errdetail("%s", problem);
	GUC_check_errhint("Separate headers with semicolons, for example 'X-Source: walship; X-Tenant: shop'.");
	return false;
}

/*
 * The secret file settings name files; the secrets themselves never belong
 * in a setting, since PostgreSQL logs every changed setting.  So a value
 * that looks like a "Name: value" header or user:password rather than a
 * file name is refused, without repeating it.
 */
static bool
check_secret_file(const char *setting, const char *value, bool colon_is_secret)
{
	const char *problem = NULL;

	if (value == NULL || value[0] == '\0')
		return true;
	for (const char *p = value; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			problem = "The file name contains a control character.";
	if (problem == NULL && colon_is_secret &&
		strchr(value, ':') != NULL && strchr(value, '/') == NULL)
		problem = "The value looks like the secret itself rather than the name of a file holding it.";
	if (problem == NULL)
		return true;

	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid file name in \"%s\"", setting);
	GUC_check_errdetail("%s", problem);
	GUC_check_errhint("Write the secret into a file that only the operating system user running PostgreSQL can read, and set \"%s\" to its path (absolute, or relative to the data directory).",
					  setting);
	return false;
}

static bool
check_auth_token_file(char **newval, void **extra, GucSource source)
{
	return check_secret_file("walship.auth_token_file", *newval, false);
}

static bool
check_basic_auth_file(char **newval, void **extra, GucSource source)
{
	return check_secret_file("walship.basic_auth_file", *newval, true);
}

static bool
check_headers_file(char **newval, void **extra, GucSource source)
{
	return check_secret_file("walship.headers_file", *newval, true);
}

/*
 * walship.clickhouse_database: empty (not set), or a ClickHouse database
 * name that needs no quoting: a letter or underscore, then letters, digits
 * and underscores.
 */
static bool
check_clickhouse_database(char **newval, void **extra, GucSource source)
{
	const char *name = *newval;
	const char *p;

	if (name == NULL || name[0] == '\0')
		return true;			/* not set */
	if (strlen(name) <= WS_CLICKHOUSE_MAX_IDENT &&
		!(name[0] >= '0' && name[0] <= '9'))
	{
		for (p = name; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				  (*p >= '0' && *p <= '9') || *p == '_'))
				break;
		if (*p == '\0')
			return true;
	}

	GUC_check_errcode(ERRCODE_INVALID_NAME);
	GUC_check_errmsg("invalid ClickHouse database name \"%s\" in \"walship.clickhouse_database\"",
					 name);
	GUC_check_errdetail("A ClickHouse database name here must start with a letter or an underscore and contain only letters, digits and underscores, at most %d characters.",
						WS_CLICKHOUSE_MAX_IDENT);
	GUC_check_errhint("Create the database in ClickHouse under such a name, for example 'shop'.");
	return false;
}

/*
 * walship.max_retained_wal: -1 (no limit) or a size.  0 is refused: it
 * would give the slot up as soon as it holds any WAL at all.
 */
static bool
check_max_retained_wal(int *newval, void **extra, GucSource source)
{
	if (*newval == -1 || *newval > 0)
		return true;

	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid value for \"walship.max_retained_wal\": %d", *newval);
	GUC_check_errdetail("A budget of 0 would give up the replication slot as soon as it retains any WAL.");
	GUC_check_errhint("Set it to -1 for no limit, or to a size such as '10GB'.");
	return false;
}

void
ws_define_settings(void)
{
	DefineCustomBoolVariable("walship.enabled",
							 "Whether the walship worker ships changes.",
							 "When off, the worker stays connected but decodes and sends nothing.",
							 &walship_enabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("walship.database",
							   "Database whose changes walship ships.",
							   NULL,
							   &walship_database, "postgres",
							   PGC_POSTMASTER, 0, check_database, NULL, NULL);

	DefineCustomStringVariable("walship.slot_name",
							   "Logical replication slot the walship worker uses (created if missing).",
							   NULL,
							   &walship_slot_name, "walship",
							   PGC_POSTMASTER, 0, check_slot_name, NULL, NULL);

	DefineCustomStringVariable("walship.publication",
							   "Publications (comma-separated) whose tables walship ships.",
							   NULL,
							   &walship_publication, "walship",
							   PGC_SIGHUP, 0, check_publication, NULL, NULL);

	DefineCustomStringVariable("walship.endpoint",
							   "URL that batches of changes are POSTed to.",
							   "Empty means not configured: the worker waits.",
							   &walship_endpoint, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_endpoint, NULL, NULL);

	DefineCustomEnumVariable("walship.format",
							 "Body format of the requests: binary, ndjson or rowbinary.",
							 NULL,
							 &walship_format, WS_FORMAT_NDJSON, format_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomEnumVariable("walship.ndjson_shape",
							 "Shape of NDJSON lines: envelope or flat.",
							 NULL,
							 &walship_ndjson_shape, WS_NDJSON_ENVELOPE, shape_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomEnumVariable("walship.dialect",
							 "How values are written: standard, clickhouse or clickhouse_18.",
							 "clickhouse writes values as current ClickHouse (22.x and later) reads them into the types walship.clickhouse_ddl() gives, clickhouse_18 as ClickHouse 18.16 reads them.",
							 &walship_dialect, WS_DIALECT_STANDARD, dialect_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomEnumVariable("walship.compression",
							 "Compression of request bodies: none, gzip or zstd.",
							 NULL,
							 &walship_compression, WS_COMPRESSION_NONE,
							 compression_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.batch_max_changes",
							"Most changes in one batch.",
							NULL,
							&walship_batch_max_changes, 10000, 1, 10000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.batch_max_bytes",
							"Largest uncompressed batch body.",
							"A single change larger than this is sent in a batch of its own.",
							&walship_batch_max_bytes, 4096, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.batch_max_delay",
							"Longest time a change waits for its batch to fill.",
							NULL,
							&walship_batch_max_delay, 50, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.max_inflight",
							"Most requests in flight at once.",
							NULL,
							&walship_max_inflight, 4, 1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.http_timeout",
							"Time limit of one request, response included.",
							NULL,
							&walship_http_timeout, 30000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.connect_timeout",
							"Time limit for connecting to the endpoint.",
							NULL,
							&walship_connect_timeout, 10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.retry_min_delay",
							"First delay before retrying a failed request.",
							"Later retries double it, up to walship.retry_max_delay, with jitter.",
							&walship_retry_min_delay, 100, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.retry_max_delay",
							"Longest delay between retries of a failed request.",
							NULL,
							&walship_retry_max_delay, 60000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomStringVariable("walship.headers",
							   "Extra request headers, as 'Name: value; Name2: value2'.",
							   "The server log records the value whenever it changes: put credentials into walship.headers_file instead.",
							   &walship_headers, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_headers, NULL, NULL);

	DefineCustomStringVariable("walship.auth_token_file",
							   "File holding a bearer token sent as the Authorization header.",
							   "Read at worker start and on every configuration reload.",
							   &walship_auth_token_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_auth_token_file, NULL, NULL);

	DefineCustomStringVariable("walship.basic_auth_file",
							   "File holding user:password for HTTP Basic authentication.",
							   "Read at worker start and on every configuration reload.",
							   &walship_basic_auth_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_basic_auth_file, NULL, NULL);

	DefineCustomStringVariable("walship.headers_file",
							   "File of 'Name: value' lines sent as request headers.",
							   "Read at worker start and on every configuration reload; for headers that carry credentials.",
							   &walship_headers_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_headers_file, NULL, NULL);

	DefineCustomStringVariable("walship.tls_ca_file",
							   "File of CA certificates to verify the endpoint with, instead of the system's.",
							   NULL,
							   &walship_tls_ca_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomBoolVariable("walship.tls_verify",
							 "Whether to verify the endpoint's TLS certificate and host name.",
							 NULL,
							 &walship_tls_verify, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomEnumVariable("walship.on_rejected",
							 "What to do with a batch the endpoint rejects permanently: stop or dead_letter.",
							 "stop keeps retrying it slowly and ships nothing after it; dead_letter stores it in walship.dead_letter and moves on.",
							 &walship_on_rejected, WS_ON_REJECTED_STOP,
							 on_rejected_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.backfill_max_rate",
							"Most rows per second a backfill reads; 0 means no limit.",
							"Backfills also wait while the endpoint falls behind, so the live stream keeps its freshness.",
							&walship_backfill_max_rate, 0, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.backfill_chunk_timeout",
							"Longest time a backfill chunk's query may read rows; 0 means no limit.",
							"Nothing is decoded or sent while a chunk is read.  A chunk cut short ships the rows read so far, and the next chunk starts after them; three chunks in a row that read no row in time fail the backfill.",
							&walship_backfill_chunk_timeout, 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomBoolVariable("walship.initial_backfill",
							 "Whether to backfill every published table when the worker creates its slot.",
							 "The backfills are queued once, when the slot is created, as if by walship.backfill_publication().",
							 &walship_initial_backfill, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.encoder_workers",
							"Number of encoder/sender workers next to the decoding worker; 0 encodes and sends in the decoding worker.",
							"Each encoder worker encodes, compresses and sends the batches handed to it, with its own connections.  Each one is a background worker: max_worker_processes must leave room for them.  A new value takes effect once every batch pending is acknowledged.",
							&walship_encoder_workers, WS_DEFAULT_ENCODER_WORKERS,
							0, WS_MAX_ENCODER_WORKERS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("walship.compression_level",
							"Compression level of request bodies; 0 means the method's default.",
							"gzip takes 1 (fastest, with ISA-L) to 12 (smallest, with libdeflate), default 1; zstd takes -7 to 19, default 1.  Values beyond a method's range are clamped to it.",
							&walship_compression_level, 0, -7, 19,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomEnumVariable("walship.on_slot_lost",
							 "What to do when the slot is missing or invalidated while walship.progress says changes were shipped: resync or stop.",
							 "resync creates a new slot, backfills every published table and tells the endpoint which rows the gap may have deleted; stop reports the gap and ships nothing.",
							 &walship_on_slot_lost, WS_ON_SLOT_LOST_RESYNC,
							 on_slot_lost_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("walship.clickhouse_database",
							   "ClickHouse database that walship's ClickHouse statements name.",
							   "Empty means not set.  The RowBinary format and managed tables insert into and create tables of this database.",
							   &walship_clickhouse_database, "",
							   PGC_SIGHUP, 0, check_clickhouse_database, NULL, NULL);

	DefineCustomIntVariable("walship.max_retained_wal",
							"Most WAL the walship slot may retain before walship gives it up; -1 means no limit.",
							"Past 80% of it the worker warns; past it the worker drops its slot, logging the range of changes it abandons, so that a resync recovers instead of the WAL filling the disk.",
							&walship_max_retained_wal, -1, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MB,
							check_max_retained_wal, NULL, NULL);

	DefineCustomBoolVariable("walship.clickhouse_manage_tables",
							 "Whether the worker creates and alters its ClickHouse tables (walship.format = rowbinary, or ndjson with the flat shape and a ClickHouse dialect).",
							 "Missing tables are created as walship.clickhouse_ddl() prints them, and columns are added, dropped or widened as the published tables change, before rows of the new shape are sent.  The tables are those of walship.clickhouse_database; with ndjson walship makes each request's INSERT itself.",
							 &walship_clickhouse_manage_tables, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("walship");
}
