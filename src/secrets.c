/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  The worker's secrets: reading walship.auth_token_file,
 *	  walship.basic_auth_file and walship.headers_file, and keeping
 *	  credentials out of what walship shows or logs.
 *
 * PostgreSQL writes every changed setting to the server log on reload, so
 * credentials belong in files that only the worker reads, never in
 * walship.endpoint or walship.headers; the worker warns, once per value,
 * when those carry something that looks like a credential.
 *
 * A secret file is read at worker start, on every reload, and, while it
 * cannot be read, every WS_SECRETS_RETRY_MS.  When a read fails (the file
 * is missing, unreadable, empty or malformed) the value last read from the
 * same path stays in force: a reload never makes the worker send requests
 * without the credentials it had.  The problem is reported as a WARNING
 * naming the file and the operating system error (never the content) and
 * in walship.status.last_error, and cleared once the files read well again.
 * A configured file that has never been read has no value, and neither has
 * one whose setting now names another path that cannot be read (a value
 * from another file may be meant for another endpoint): then nothing is
 * sent (state "error") until it can be.
 *
 * The values live in their own memory context and are overwritten before
 * they are freed.
 *
 * IDENTIFICATION
 *	  src/secrets.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "secrets.h"
#include "settings.h"
#include "shared_state.h"

/* A secret file larger than this is refused. */
#define WS_SECRET_FILE_MAX		(64 * 1024)

/* One secret file setting and what was last read from it. */
typedef struct WsSecretFile
{
	const char *setting;		/* the setting's name */
	char	  **path;			/* the setting's variable */
	bool		has_value;		/* a good value was read (and is kept) */
	char	   *value_path;		/* the path it was read from, when has_value */
	bool		failed;			/* the last read failed */
} WsSecretFile;

static WsSecretFile token_file = {"walship.auth_token_file", &walship_auth_token_file, false, NULL, false};
static WsSecretFile basic_file = {"walship.basic_auth_file", &walship_basic_auth_file, false, NULL, false};
static WsSecretFile headers_file = {"walship.headers_file", &walship_headers_file, false, NULL, false};

static MemoryContext secrets_context = NULL;

/* the values, in secrets_context */
static char *auth_token = NULL;
static char *basic_user = NULL;
static char *basic_password = NULL;
static List *file_headers = NIL;	/* of char *, "Name: value" */

/* a configured secret has no value, or the settings conflict */
static bool secrets_missing = false;
static TimestampTz last_read_at = 0;

/* the message this file last put into walship.status.last_error */
static char *reported = NULL;

/* this file put the worker into state "error" (a secret is missing) */
static bool reported_missing = false;

/* hashes of the values last warned about, so each is warned about once */
static uint32 warned_endpoint_hash = 0;
static uint32 warned_headers_hash = 0;

/* ---------------------------------------------------------------------
 * Reporting
 * ---------------------------------------------------------------------
 */

/* A problem found while loading; the first one is reported. */
typedef struct WsSecretProblem
{
	char	   *message;
	char	   *detail;
	char	   *hint;
	bool		missing;		/* a secret has no value because of it */
} WsSecretProblem;

static void
note_problem(WsSecretProblem *problem, char *message, char *detail, char *hint)
{
	if (problem->message != NULL)
		return;
	problem->message = message;
	problem->detail = detail;
	problem->hint = hint;
}

/*
 * Reports a problem in the log and walship.status, unless it is the one
 * reported last.  When a secret is missing the state becomes "error".
 */
static void
report(const WsSecretProblem *problem, bool missing)
{
	if (reported == NULL || strcmp(reported, problem->message) != 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("walship: %s", problem->message),
				 problem->detail ? errdetail("%s", problem->detail) : 0,
				 problem->hint ? errhint("%s", problem->hint) : 0));
		ws_shared_set_error(problem->message);
		if (reported)
			pfree(reported);
		reported = MemoryContextStrdup(secrets_context, problem->message);
	}
	if (missing)
		ws_shared_set_state(WS_STATE_ERROR);
	else if (reported_missing)
		ws_shared_leave_error_state();	/* the value kept is back in use */
	reported_missing = missing;
}

/*
 * The files read well: clears the problem reported before, if
 * walship.status still shows it, and leaves the "error" state a missing
 * secret caused, whatever walship.status shows meanwhile.
 */
static void
resolve(void)
{
	if (reported == NULL)
		return;
	ws_shared_resolve_error(reported, reported_missing);
	ereport(LOG,
			(errmsg("walship read its secret files again")));
	pfree(reported);
	reported = NULL;
	reported_missing = false;
}

/* ---------------------------------------------------------------------
 * Reading the files
 * ---------------------------------------------------------------------
 */

static void
wipe(char *s)
{
	if (s != NULL)
	{
		explicit_bzero(s, strlen(s));
		pfree(s);
	}
}

static void
wipe_list(List *list)
{
	ListCell   *lc;

	foreach(lc, list)
		wipe((char *) lfirst(lc));
	list_free(list);
}

/*
 * Reads the whole file into a palloc'd, NUL-terminated buffer.  NULL, with
 * the problem noted, when it cannot be read or holds a NUL byte.
 */
static char *
read_whole_file(WsSecretFile *file, WsSecretProblem *problem)
{
	const char *path = *file->path;
	FILE	   *f;
	StringInfoData buf;
	char		chunk[4096];
	size_t		n;
	const char *hint = "Make the file readable by the operating system user running PostgreSQL; walship reads it again every 5 seconds and on reload.";

	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL)
	{
		note_problem(problem,
					 psprintf("could not open %s \"%s\": %m", file->setting, path),
					 NULL, pstrdup(hint));
		return NULL;
	}
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
	{
		if (buf.len + n > WS_SECRET_FILE_MAX)
		{
			FreeFile(f);
			explicit_bzero(chunk, sizeof(chunk));
			explicit_bzero(buf.data, buf.len);
			pfree(buf.data);
			note_problem(problem,
						 psprintf("%s \"%s\" is larger than %d kB",
								  file->setting, path, WS_SECRET_FILE_MAX / 1024),
						 NULL, NULL);
			return NULL;
		}
		appendBinaryStringInfo(&buf, chunk, (int) n);
	}
	explicit_bzero(chunk, sizeof(chunk));
	if (ferror(f))
	{
		char	   *message = psprintf("could not read %s \"%s\": %m",
									   file->setting, path);

		FreeFile(f);
		explicit_bzero(buf.data, buf.len);
		pfree(buf.data);
		note_problem(problem, message, NULL, pstrdup(hint));
		return NULL;
	}
	FreeFile(f);
	if (memchr(buf.data, '\0', buf.len) != NULL)
	{
		explicit_bzero(buf.data, buf.len);
		pfree(buf.data);
		note_problem(problem,
					 psprintf("%s \"%s\" contains a NUL byte", file->setting, path),
					 NULL, NULL);
		return NULL;
	}
	return buf.data;
}

static bool
has_control_char(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

/* The bearer token: the file's content without surrounding white space. */
static bool
load_token(WsSecretProblem *problem)
{
	char	   *content = read_whole_file(&token_file, problem);
	char	   *start;
	size_t		len;
	bool		ok = false;

	if (content == NULL)
		return false;
	start = content;
	while (isspace((unsigned char) *start))
		start++;
	len = strlen(start);
	while (len > 0 && isspace((unsigned char) start[len - 1]))
		len--;
	if (len == 0)
		note_problem(problem,
					 psprintf("walship.auth_token_file \"%s\" is empty", walship_auth_token_file),
					 NULL, pstrdup("Write the token into the file; an empty file does not remove the token, setting walship.auth_token_file to '' does."));
	else if (has_control_char(start, len))
		note_problem(problem,
					 psprintf("walship.auth_token_file \"%s\" does not hold a single-line token", walship_auth_token_file),
					 pstrdup("The token must be one line without control characters."), NULL);
	else
	{
		wipe(auth_token);
		auth_token = MemoryContextAlloc(secrets_context, len + 1);
		memcpy(auth_token, start, len);
		auth_token[len] = '\0';
		ok = true;
	}
	explicit_bzero(content, strlen(content));
	pfree(content);
	return ok;
}

/* "user:password" on one line; a final line break is ignored. */
static bool
load_basic_auth(WsSecretProblem *problem)
{
	char	   *content = read_whole_file(&basic_file, problem);
	size_t		len;
	char	   *colon;
	bool		ok = false;

	if (content == NULL)
		return false;
	len = strlen(content);
	while (len > 0 && (content[len - 1] == '\n' || content[len - 1] == '\r'))
		content[--len] = '\0';
	colon = strchr(content, ':');
	if (len == 0 || colon == NULL || colon == content ||
		has_control_char(content, len))
		note_problem(problem,
					 psprintf("walship.basic_auth_file \"%s\" does not hold one line user:password", walship_basic_auth_file),
					 pstrdup("The file must hold a user name, a colon and the password, on one line without control characters."),
					 NULL);
	else
	{
		wipe(basic_user);
		wipe(basic_password);
		basic_user = MemoryContextAlloc(secrets_context, colon - content + 1);
		memcpy(basic_user, content, colon - content);
		basic_user[colon - content] = '\0';
		basic_password = MemoryContextStrdup(secrets_context, colon + 1);
		ok = true;
	}
	explicit_bzero(content, len);
	pfree(content);
	return ok;
}

/*
 * "Name: value" lines; blank lines and lines starting with # are skipped,
 * a line may end with CR LF.  A bad line is reported by its number, never
 * its content.
 */
static bool
load_headers(WsSecretProblem *problem)
{
	char	   *content = read_whole_file(&headers_file, problem);
	size_t		content_len;
	List	   *headers = NIL;
	char	   *line;
	char	   *next;
	int			lineno = 0;
	const char *bad = NULL;

	if (content == NULL)
		return false;
	content_len = strlen(content);
	for (line = content; line != NULL && bad == NULL; line = next)
	{
		char	   *end;
		char	   *colon;
		char	   *value;

		lineno++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		end = line + strlen(line);
		if (end > line && end[-1] == '\r')
			*--end = '\0';
		while (isspace((unsigned char) *line))
			line++;
		if (*line == '\0' || *line == '#')
			continue;
		while (end > line && isspace((unsigned char) end[-1]))
			*--end = '\0';
		if (has_control_char(line, end - line))
		{
			/* tabs within a value are fine */
			for (char *p = line; p < end; p++)
				if (*p != '\t' && ((unsigned char) *p < 0x20 || *p == 0x7f))
					bad = "A line may not contain control characters such as a carriage return.";
			if (bad)
				break;
		}
		colon = strchr(line, ':');
		if (colon == NULL || colon == line)
		{
			bad = "Each line must have the form \"Name: value\".";
			break;
		}
		for (char *p = line; p < colon; p++)
			if (!(isalnum((unsigned char) *p) || strchr("!#$%&'*+-.^_`|~", *p)))
				bad = "A header name may only contain letters, digits and !#$%&'*+-.^_`|~.";
		if (bad)
			break;
		value = colon + 1;
		while (isspace((unsigned char) *value))
			value++;
		if (*value == '\0')
		{
			bad = "A header value may not be empty.";
			break;
		}
		headers = lappend(headers,
						  psprintf("%.*s: %s", (int) (colon - line), line, value));
	}

	if (bad == NULL && headers == NIL)
		note_problem(problem,
					 psprintf("walship.headers_file \"%s\" has no headers", walship_headers_file),
					 NULL, pstrdup("Write \"Name: value\" lines into the file, or set walship.headers_file to '' to send none."));
	else if (bad != NULL)
		note_problem(problem,
					 psprintf("invalid line %d in walship.headers_file \"%s\"",
							  lineno, walship_headers_file),
					 pstrdup(bad), NULL);
	explicit_bzero(content, content_len);
	pfree(content);

	if (bad != NULL || headers == NIL)
	{
		wipe_list(headers);
		return false;
	}
	wipe_list(file_headers);
	file_headers = NIL;
	{
		MemoryContext old = MemoryContextSwitchTo(secrets_context);
		ListCell   *lc;

		foreach(lc, headers)
			file_headers = lappend(file_headers, pstrdup((char *) lfirst(lc)));
		MemoryContextSwitchTo(old);
	}
	wipe_list(headers);
	return true;
}

/* The file's value is no longer in force (the caller wipes it). */
static void
forget_value(WsSecretFile *file)
{
	file->has_value = false;
	if (file->value_path != NULL)
		pfree(file->value_path);
	file->value_path = NULL;
}

/*
 * Reads one file when configured; forgets its value when not.  A value is
 * kept when its file cannot be read again only if the setting still names
 * the path it came from.  Returns false when it is configured and has no
 * value.
 */
static bool
load_secret_file(WsSecretFile *file, bool (*load) (WsSecretProblem *),
				 WsSecretProblem *problem)
{
	const char *path = *file->path;
	WsSecretProblem mine;

	if (path == NULL || path[0] == '\0')
	{
		forget_value(file);
		file->failed = false;
		return true;
	}
	if (file->has_value && strcmp(file->value_path, path) != 0)
		forget_value(file);
	memset(&mine, 0, sizeof(mine));
	if (load(&mine))
	{
		if (file->value_path == NULL)
			file->value_path = MemoryContextStrdup(secrets_context, path);
		file->has_value = true;
		file->failed = false;
		return true;
	}
	file->failed = true;

	/* say whether the value read before stays in use */
	mine.missing = !file->has_value;
	mine.message = psprintf(mine.missing ?
							"%s; walship sends nothing until it can read it" :
							"%s; walship keeps using what it read from the file before",
							mine.message);
	/* the first problem is reported, a missing secret before a kept one */
	if (problem->message == NULL || (mine.missing && !problem->missing))
		*problem = mine;
	return file->has_value;
}

/* ---------------------------------------------------------------------
 * Credentials in the settings
 * ---------------------------------------------------------------------
 */

/* What a piece of a URL is, as walk_url() hands them out. */
typedef enum WsUrlPiece
{
	WS_URL_PLAIN,				/* nothing secret */
	WS_URL_USERINFO,			/* user[:password], before the host */
	WS_URL_AT,					/* the '@' after it */
	WS_URL_SECRET_VALUE			/* value of a credential-like parameter */
} WsUrlPiece;

typedef void (*WsUrlPieceFn) (const char *start, int len, WsUrlPiece kind,
							  void *arg);

static void walk_url(const char *url, WsUrlPieceFn piece, void *arg);

/* The first credential walk_url() finds in a URL. */
typedef struct WsUrlFinding
{
	bool		userinfo;		/* user information before the host */
	const char *name;			/* name of a credential-like parameter */
	int			name_len;
	const char *previous;		/* the piece before, "name=" for a value */
	int			previous_len;
} WsUrlFinding;

static void
find_piece(const char *start, int len, WsUrlPiece kind, void *arg)
{
	WsUrlFinding *finding = (WsUrlFinding *) arg;

	if (kind == WS_URL_USERINFO)
		finding->userinfo = true;
	else if (kind == WS_URL_SECRET_VALUE && finding->name == NULL)
	{
		finding->name = finding->previous;
		finding->name_len = finding->previous_len - 1;	/* without '=' */
	}
	finding->previous = start;
	finding->previous_len = len;
}

/* Warns, once per value, when walship.endpoint or walship.headers hold credentials. */
static void
warn_inline_credentials(void)
{
	const char *url = walship_endpoint ? walship_endpoint : "";
	const char *headers = walship_headers ? walship_headers : "";
	uint32		hash;

	hash = hash_bytes((const unsigned char *) url, strlen(url));
	if (url[0] != '\0' && hash != warned_endpoint_hash)
	{
		WsUrlFinding finding;
		char	   *what = NULL;

		memset(&finding, 0, sizeof(finding));
		walk_url(url, find_piece, &finding);
		if (finding.userinfo)
			what = pstrdup("The URL has a user name or password before the host name.");
		else if (finding.name != NULL)
			what = psprintf("The URL's query parameter \"%.*s\" looks like a credential.",
							finding.name_len, finding.name);
		if (what != NULL)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("walship.endpoint holds credentials, which the server log records whenever the setting changes"),
					 errdetail("%s", what),
					 errhint("Put the user name and password into walship.basic_auth_file, a token into walship.auth_token_file, or a header into walship.headers_file, and remove them from the URL.")));
		warned_endpoint_hash = hash;
	}

	hash = hash_bytes((const unsigned char *) headers, strlen(headers));
	if (headers[0] != '\0' && hash != warned_headers_hash)
	{
		List	   *list = ws_parse_headers(headers);
		ListCell   *lc;

		foreach(lc, list)
		{
			const char *h = lfirst(lc);
			int			name_len = (int) strcspn(h, ":");

			if (ws_secret_header_name(h, name_len))
			{
				ereport(WARNING,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("walship.headers holds the credential-like header \"%.*s\", which the server log records whenever the setting changes",
								name_len, h),
						 errhint("Move the header into walship.headers_file, or the token into walship.auth_token_file.")));
				break;
			}
		}
		wipe_list(list);
		warned_headers_hash = hash;
	}
}

/* ---------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------
 */
void
ws_secrets_load(WsHttpSettings *settings)
{
	WsSecretProblem problem;
	bool		have_all = true;

	memset(&problem, 0, sizeof(problem));
	if (secrets_context == NULL)
		secrets_context = AllocSetContextCreate(TopMemoryContext,
												"walship secrets",
												ALLOCSET_SMALL_SIZES);

	/* once, by the decoding worker: its encoder workers read the same */
	if (ws_shared_encoder_index < 0)
		warn_inline_credentials();

	have_all &= load_secret_file(&token_file, load_token, &problem);
	have_all &= load_secret_file(&basic_file, load_basic_auth, &problem);
	have_all &= load_secret_file(&headers_file, load_headers, &problem);
	last_read_at = GetCurrentTimestamp();

	if (!token_file.has_value)
	{
		wipe(auth_token);
		auth_token = NULL;
	}
	if (!basic_file.has_value)
	{
		wipe(basic_user);
		wipe(basic_password);
		basic_user = basic_password = NULL;
	}
	if (!headers_file.has_value)
	{
		wipe_list(file_headers);
		file_headers = NIL;
	}

	if (walship_auth_token_file[0] != '\0' && walship_basic_auth_file[0] != '\0')
	{
		/* both would be an Authorization header: refuse to guess */
		memset(&problem, 0, sizeof(problem));
		note_problem(&problem,
					 pstrdup("walship.auth_token_file and walship.basic_auth_file are both set; walship sends nothing until one is unset"),
					 pstrdup("A request has one Authorization header, with a bearer token or with a user name and password."),
					 pstrdup("Set one of them to '' and reload."));
		have_all = false;
	}

	secrets_missing = !have_all;
	if (problem.message != NULL)
		report(&problem, secrets_missing);
	else
		resolve();

	settings->auth_token = auth_token;
	settings->basic_auth_user = basic_user;
	settings->basic_auth_password = basic_password;
	settings->secret_headers = file_headers;
}

bool
ws_secrets_missing(void)
{
	return secrets_missing;
}

bool
ws_secrets_reread_due(void)
{
	if (!token_file.failed && !basic_file.failed && !headers_file.failed)
		return false;
	return TimestampDifferenceExceeds(last_read_at, GetCurrentTimestamp(),
									  WS_SECRETS_RETRY_MS);
}

/* ---------------------------------------------------------------------
 * Credentials in URLs
 * ---------------------------------------------------------------------
 */

/* name (len bytes) percent-decoded and in lower case */
static char *
decoded_lower(const char *name, int len)
{
	char	   *out = palloc(len + 1);
	int			o = 0;

	for (int i = 0; i < len; i++)
	{
		char		c = name[i];

		if (c == '%' && i + 2 < len &&
			isxdigit((unsigned char) name[i + 1]) &&
			isxdigit((unsigned char) name[i + 2]))
		{
			char		hex[3] = {name[i + 1], name[i + 2], '\0'};

			c = (char) strtol(hex, NULL, 16);
			i += 2;
		}
		else if (c == '+')
			c = ' ';
		out[o++] = (char) tolower((unsigned char) c);
	}
	out[o] = '\0';
	return out;
}

static bool
contains_any(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strstr(s, *words) != NULL)
			return true;
	return false;
}

static bool
equals_any(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strcmp(s, *words) == 0)
			return true;
	return false;
}

static bool
ends_with_any(const char *s, const char *const *words)
{
	size_t		len = strlen(s);

	for (; *words; words++)
	{
		size_t		wlen = strlen(*words);

		if (len >= wlen && strcmp(s + len - wlen, *words) == 0)
			return true;
	}
	return false;
}

bool
ws_secret_param_name(const char *name, int len)
{
	static const char *const exact[] = {
		"pass", "pwd", "key", "sig", "auth", "authorization", "jwt", "sas",
		NULL
	};
	static const char *const parts[] = {
		"password", "passwd", "secret", "token", "signature", "credential",
		"apikey", "api_key", "api-key", "accesskey", "access_key", NULL
	};
	static const char *const suffixes[] = {"_key", "-key", ".key", NULL};
	char	   *lower = decoded_lower(name, len);
	bool		result;

	result = equals_any(lower, exact) || contains_any(lower, parts) ||
		ends_with_any(lower, suffixes);
	pfree(lower);
	return result;
}

bool
ws_secret_header_name(const char *name, int len)
{
	static const char *const parts[] = {
		"auth", "token", "key", "secret", "password", "passwd", "cookie",
		"signature", "credential", NULL
	};
	char	   *lower = decoded_lower(name, len);
	bool		result = contains_any(lower, parts);

	pfree(lower);
	return result;
}

/*
 * Hands url to piece() in order, piece by piece, saying what each is; the
 * pieces put together are the URL.  Query parameters are separated by &
 * or ;, and the fragment is left as it is.
 */
static void
walk_url(const char *url, WsUrlPieceFn piece, void *arg)
{
	const char *scheme_end = strstr(url, "://");
	const char *host;
	const char *path;
	const char *at = NULL;
	const char *query;
	const char *fragment;
	const char *p;

	if (scheme_end == NULL)
	{
		piece(url, (int) strlen(url), WS_URL_PLAIN, arg);
		return;
	}
	host = scheme_end + 3;
	piece(url, (int) (host - url), WS_URL_PLAIN, arg);
	path = host + strcspn(host, "/?#");
	for (p = host; p < path; p++)
		if (*p == '@')
			at = p;
	if (at != NULL)
	{
		piece(host, (int) (at - host), WS_URL_USERINFO, arg);
		piece(at, 1, WS_URL_AT, arg);
		host = at + 1;
	}
	query = strchr(path, '?');
	fragment = strchr(path, '#');
	if (query == NULL || (fragment != NULL && fragment < query))
	{
		piece(host, (int) strlen(host), WS_URL_PLAIN, arg);
		return;
	}
	p = query + 1;
	piece(host, (int) (p - host), WS_URL_PLAIN, arg);
	while (*p != '\0' && *p != '#')
	{
		int			name_len = (int) strcspn(p, "=&;#");
		int			len = (int) strcspn(p, "&;#");

		if (p[name_len] == '=' && ws_secret_param_name(p, name_len))
		{
			piece(p, name_len + 1, WS_URL_PLAIN, arg);
			piece(p + name_len + 1, len - name_len - 1, WS_URL_SECRET_VALUE, arg);
		}
		else
			piece(p, len, WS_URL_PLAIN, arg);
		p += len;
		if (*p == '&' || *p == ';')
		{
			piece(p, 1, WS_URL_PLAIN, arg);
			p++;
		}
	}
	piece(p, (int) strlen(p), WS_URL_PLAIN, arg);
}

static void
display_piece(const char *start, int len, WsUrlPiece kind, void *arg)
{
	StringInfo	out = (StringInfo) arg;

	/* user information is left out entirely, a secret value shows as *** */
	if (kind == WS_URL_PLAIN)
		appendBinaryStringInfo(out, start, len);
	else if (kind == WS_URL_SECRET_VALUE && len > 0)
		appendStringInfoString(out, "***");
}

char *
ws_endpoint_for_display(const char *url)
{
	StringInfoData out;

	if (url == NULL)
		return NULL;
	initStringInfo(&out);
	walk_url(url, display_piece, &out);
	return out.data;
}

typedef struct WsMaskState
{
	char	   *text;
} WsMaskState;

/* Overwrites every occurrence of secret (len bytes) in text with '*'. */
static void
mask_occurrences(char *text, const char *secret, int len)
{
	char	   *p;

	/* too short to find without hiding unrelated text */
	if (len < 4)
		return;
	for (p = text; (p = strstr(p, secret)) != NULL; p += len)
		memset(p, '*', len);
}

static void
mask_piece(const char *start, int len, WsUrlPiece kind, void *arg)
{
	WsMaskState *state = (WsMaskState *) arg;
	char	   *copy;
	char	   *decoded;
	char	   *colon;
	int			o = 0;

	if ((kind != WS_URL_USERINFO && kind != WS_URL_SECRET_VALUE) || len == 0)
		return;
	copy = pnstrdup(start, len);
	mask_occurrences(state->text, copy, len);
	/* the password of user:password on its own */
	colon = strchr(copy, ':');
	if (kind == WS_URL_USERINFO && colon != NULL)
		mask_occurrences(state->text, colon + 1, (int) strlen(colon + 1));
	/* and percent-decoded, as messages may quote it */
	decoded = palloc(len + 1);
	for (int i = 0; i < len; i++)
	{
		if (start[i] == '%' && i + 2 < len &&
			isxdigit((unsigned char) start[i + 1]) &&
			isxdigit((unsigned char) start[i + 2]))
		{
			char		hex[3] = {start[i + 1], start[i + 2], '\0'};

			decoded[o++] = (char) strtol(hex, NULL, 16);
			i += 2;
		}
		else
			decoded[o++] = start[i];
	}
	decoded[o] = '\0';
	if (o != len)
		mask_occurrences(state->text, decoded, (int) strlen(decoded));
	explicit_bzero(copy, len);
	explicit_bzero(decoded, o);
	pfree(copy);
	pfree(decoded);
}

void
ws_mask_url_secrets(char *text, const char *url)
{
	WsMaskState state;

	if (text == NULL || url == NULL || text[0] == '\0')
		return;
	state.text = text;
	walk_url(url, mask_piece, &state);
}
