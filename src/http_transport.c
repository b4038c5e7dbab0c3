/*-------------------------------------------------------------------------
 *
 * http_transport.c
 *	  Delivery of batches over HTTP(S) with libcurl's multi interface.
 *
 * One CURLM per client runs all requests; its connection cache keeps
 * connections to the endpoint alive between batches, and finished easy
 * handles are kept for reuse.  Every request is a POST of the caller's
 * body, which libcurl reads in place (it is not copied), so the caller
 * must keep it until ws_http_poll() returned the request's result.
 *
 * Security: only http and https are allowed, redirects are never
 * followed, TLS peer and host name verification are on unless the
 * settings turn them off, CURLOPT_VERBOSE is never set, and neither the
 * bearer token, the Basic authentication password nor the configured
 * headers ever appear in an error message or in a result; credentials the
 * URL carries are masked in libcurl's error messages and in the start of
 * the response that a result keeps.
 *
 * libcurl's write and header callbacks run inside curl_multi_perform();
 * an ereport() there would longjmp across libcurl and leave it in an
 * undefined state.  So they only copy bytes into fixed buffers of the
 * request's state, which is malloc'd, and never palloc, elog or ereport.
 * The rest of this file runs outside libcurl and may use palloc (in the
 * client's own memory context under TopMemoryContext) and ereport.
 *
 * IDENTIFICATION
 *	  src/http_transport.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <time.h>

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "http_transport.h"
#include "secrets.h"
#include "walship.h"

/* curl_multi_poll() appeared in libcurl 7.66.0 */
#if LIBCURL_VERSION_NUM < 0x074200
#error "walship requires libcurl 7.66.0 or later"
#endif

#define WS_HTTP_MIN_CURL_VERSION	0x074200
#define WS_HTTP_USER_AGENT			"walship/" WALSHIP_VERSION

/*
 * Connections: requests beyond this many to one host wait inside libcurl
 * for a free connection (their timeout runs meanwhile); the connection
 * cache keeps up to WS_HTTP_MAX_CONNECTIONS idle connections alive.  The
 * worker's own in-flight limit should stay at or below this.
 */
#define WS_HTTP_MAX_CONNECTIONS		64

/* Finished easy handles kept for reuse. */
#define WS_HTTP_MAX_IDLE_HANDLES	16

/* Defaults until ws_http_client_configure() is called. */
#define WS_HTTP_DEFAULT_CONNECT_TIMEOUT_MS	10000
#define WS_HTTP_DEFAULT_TIMEOUT_MS			30000

#define WS_HTTP_EXCEPTION_CODE_SIZE \
	((int) sizeof(((WsHttpResult *) NULL)->clickhouse_exception_code))

/*
 * State of one request from ws_http_start() until its result is returned.
 * malloc'd, because libcurl's callbacks write into it.
 */
typedef struct WsHttpTransfer
{
	struct WsHttpTransfer *prev;
	struct WsHttpTransfer *next;
	CURL	   *easy;
	struct curl_slist *headers;
	uint64		request_id;

	/* written by the callbacks */
	int			retry_after_ms;
	char		exception_code[WS_HTTP_EXCEPTION_CODE_SIZE];
	size_t		response_len;
	char		response[WS_HTTP_MAX_RESPONSE];
	char		errbuf[CURL_ERROR_SIZE];

	/* the whole body, when the request asked for it (malloc'd) */
	bool		keep_body;
	bool		body_truncated;
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
} WsHttpTransfer;

struct WsHttpClient
{
	MemoryContext mcxt;
	CURLM	   *multi;
	int			inflight;		/* started, result not yet returned */
	WsHttpTransfer *transfers;	/* all of them, doubly linked */
	int			nidle;
	CURL	   *idle[WS_HTTP_MAX_IDLE_HANDLES];

	/* settings, copies in mcxt */
	long		connect_timeout_ms;
	long		timeout_ms;
	bool		tls_verify;
	char	   *tls_ca_file;	/* NULL for the system store */
	char	   *auth_header;	/* "Authorization: Bearer ...", or NULL */
	char	   *basic_user;		/* HTTP Basic authentication, or NULL */
	char	   *basic_password;
	List	   *headers;		/* of char *, "Name: value" */
};

static bool curl_initialized = false;
static bool exit_callback_registered = false;
static WsHttpClient *live_client = NULL;

static void ws_http_atexit(int code, Datum arg);
static void ws_http_release_curl(WsHttpClient *client);
static void ws_http_free_headers(struct curl_slist *headers);
static void ws_http_finish_transfer(WsHttpClient *client,
									WsHttpTransfer *transfer);
static void ws_http_fill_result(WsHttpClient *client,
								WsHttpTransfer *transfer, CURLcode code,
								WsHttpResult *result);
static void ws_http_copy_text(char *dst, const char *src, size_t len);
static size_t ws_http_write_cb(char *ptr, size_t size, size_t nmemb,
							   void *userdata);
static size_t ws_http_header_cb(char *buffer, size_t size, size_t nitems,
								void *userdata);
static int	ws_http_parse_retry_after(const char *value, size_t len);
static bool ws_http_has_line_break(const char *s);

/*
 * Creates the client and its multi handle.  The first call in a process
 * initializes libcurl and registers its cleanup at process exit.
 */
WsHttpClient *
ws_http_client_create(void)
{
	curl_version_info_data *info;
	WsHttpClient *client;
	MemoryContext mcxt;
	CURLMcode	mc;

	if (!curl_initialized)
	{
		info = curl_version_info(CURLVERSION_NOW);
		if (info == NULL || (unsigned int) info->version_num < WS_HTTP_MIN_CURL_VERSION)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("libcurl %s is too old", info ? info->version : "?"),
					 errdetail("walship requires libcurl 7.66.0 or later.")));

		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not initialize libcurl")));
		curl_initialized = true;
	}
	if (!exit_callback_registered)
	{
		on_proc_exit(ws_http_atexit, (Datum) 0);
		exit_callback_registered = true;
	}

	mcxt = AllocSetContextCreate(TopMemoryContext, "walship HTTP client",
								 ALLOCSET_SMALL_SIZES);
	client = MemoryContextAllocZero(mcxt, sizeof(WsHttpClient));
	client->mcxt = mcxt;
	client->connect_timeout_ms = WS_HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
	client->timeout_ms = WS_HTTP_DEFAULT_TIMEOUT_MS;
	client->tls_verify = true;

	client->multi = curl_multi_init();
	if (client->multi == NULL)
	{
		MemoryContextDelete(mcxt);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	}

	mc = curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
						   (long) WS_HTTP_MAX_CONNECTIONS);
	if (mc == CURLM_OK)
		mc = curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS,
							   (long) WS_HTTP_MAX_CONNECTIONS);
	if (mc != CURLM_OK)
	{
		curl_multi_cleanup(client->multi);
		MemoryContextDelete(mcxt);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not configure the libcurl multi handle: %s",
						curl_multi_strerror(mc))));
	}

	live_client = client;
	return client;
}

/*
 * Copies settings into the client.  Requests already started keep the
 * settings they were started with; later ones use the new ones.  On error
 * the previous settings stay in force.
 */
void
ws_http_client_configure(WsHttpClient *client, const WsHttpSettings *settings)
{
	MemoryContext oldcxt;
	const char *token = settings->auth_token;
	size_t		token_len = 0;
	List	   *headers = NIL;
	List	   *all_headers;
	char	   *auth_header = NULL;
	char	   *basic_user = NULL;
	char	   *basic_password = NULL;
	char	   *tls_ca_file = NULL;
	ListCell   *lc;
	int			n = 0;

	/* Validate everything first, without echoing a value: they may be secret */
	all_headers = list_concat_copy(settings->headers, settings->secret_headers);
	foreach(lc, all_headers)
	{
		const char *h = (const char *) lfirst(lc);
		const char *colon = strchr(h, ':');

		n++;
		if (colon == NULL || colon == h || ws_http_has_line_break(h))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid HTTP header number %d", n),
					 errdetail("A header must have the form \"Name: value\" on one line.")));
	}
	if ((settings->basic_auth_user &&
		 ws_http_has_line_break(settings->basic_auth_user)) ||
		(settings->basic_auth_password &&
		 ws_http_has_line_break(settings->basic_auth_password)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid user name or password for HTTP Basic authentication"),
				 errdetail("They must be on one line.")));
	if (token != NULL)
	{
		/* ignore the surrounding white space that token files often have */
		while (*token == ' ' || *token == '\t' || *token == '\r' || *token == '\n')
			token++;
		token_len = strlen(token);
		while (token_len > 0 &&
			   (token[token_len - 1] == ' ' || token[token_len - 1] == '\t' ||
				token[token_len - 1] == '\r' || token[token_len - 1] == '\n'))
			token_len--;
		if (memchr(token, '\r', token_len) || memchr(token, '\n', token_len))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid bearer token"),
					 errdetail("The token must be a single line.")));
	}

	oldcxt = MemoryContextSwitchTo(client->mcxt);
	foreach(lc, all_headers)
		headers = lappend(headers, pstrdup((const char *) lfirst(lc)));
	if (settings->basic_auth_user != NULL)
	{
		basic_user = pstrdup(settings->basic_auth_user);
		basic_password = pstrdup(settings->basic_auth_password ?
								 settings->basic_auth_password : "");
	}
	if (token_len > 0)
		auth_header = psprintf("Authorization: Bearer %.*s",
							   (int) token_len, token);
	if (settings->tls_ca_file != NULL && settings->tls_ca_file[0] != '\0')
		tls_ca_file = pstrdup(settings->tls_ca_file);
	MemoryContextSwitchTo(oldcxt);
	list_free(all_headers);

	/* Out with the old */
	if (client->auth_header != NULL)
	{
		explicit_bzero(client->auth_header, strlen(client->auth_header));
		pfree(client->auth_header);
	}
	if (client->basic_user != NULL)
	{
		explicit_bzero(client->basic_user, strlen(client->basic_user));
		pfree(client->basic_user);
	}
	if (client->basic_password != NULL)
	{
		explicit_bzero(client->basic_password, strlen(client->basic_password));
		pfree(client->basic_password);
	}
	if (client->tls_ca_file != NULL)
		pfree(client->tls_ca_file);
	foreach(lc, client->headers)
	{
		char	   *h = (char *) lfirst(lc);

		explicit_bzero(h, strlen(h));
		pfree(h);
	}
	list_free(client->headers);

	client->connect_timeout_ms = Max(settings->connect_timeout_ms, 0);
	client->timeout_ms = Max(settings->timeout_ms, 0);
	client->tls_verify = settings->tls_verify;
	client->tls_ca_file = tls_ca_file;
	client->auth_header = auth_header;
	client->basic_user = basic_user;
	client->basic_password = basic_password;
	client->headers = headers;
}

/*
 * Aborts whatever is in flight and frees the client.  The caller may free
 * the bodies of unfinished requests afterwards.
 */
void
ws_http_client_destroy(WsHttpClient *client)
{
	ListCell   *lc;

	if (client == NULL)
		return;

	ws_http_release_curl(client);

	if (client->auth_header != NULL)
		explicit_bzero(client->auth_header, strlen(client->auth_header));
	if (client->basic_user != NULL)
		explicit_bzero(client->basic_user, strlen(client->basic_user));
	if (client->basic_password != NULL)
		explicit_bzero(client->basic_password, strlen(client->basic_password));
	foreach(lc, client->headers)
	{
		char	   *h = (char *) lfirst(lc);

		explicit_bzero(h, strlen(h));
	}

	if (live_client == client)
		live_client = NULL;
	MemoryContextDelete(client->mcxt);
}

/*
 * Frees everything libcurl and malloc hold for the client; its memory
 * context is left alone.
 */
static void
ws_http_release_curl(WsHttpClient *client)
{
	while (client->transfers != NULL)
	{
		WsHttpTransfer *transfer = client->transfers;

		client->transfers = transfer->next;
		curl_multi_remove_handle(client->multi, transfer->easy);
		curl_easy_cleanup(transfer->easy);
		ws_http_free_headers(transfer->headers);
		free(transfer->body);
		free(transfer);
	}
	client->inflight = 0;

	while (client->nidle > 0)
		curl_easy_cleanup(client->idle[--client->nidle]);

	if (client->multi != NULL)
	{
		curl_multi_cleanup(client->multi);
		client->multi = NULL;
	}
}

/*
 * on_proc_exit callback: closes connections and cleans libcurl up.
 */
static void
ws_http_atexit(int code, Datum arg)
{
	if (live_client != NULL)
	{
		ws_http_release_curl(live_client);
		live_client = NULL;
	}
	if (curl_initialized)
	{
		curl_global_cleanup();
		curl_initialized = false;
	}
}

/*
 * Checks that url is an absolute http:// or https:// URL with a host.
 * Returns NULL when it is, else a sentence saying what is wrong.  The
 * placeholders {schema} and {table} count as ordinary URL characters.
 */
const char *
ws_http_url_problem(const char *url)
{
	StringInfoData copy;
	const char *p;
	const char *problem = NULL;
	CURLU	   *h;
	CURLUcode	uc;
	char	   *scheme = NULL;
	char	   *host = NULL;

	if (url == NULL || url[0] == '\0')
		return "The URL is empty.";
	if (pg_strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return "The URL scheme must be http or https.";
	/* libcurl would read "http:///x" as host x */
	if (*p == '\0' || *p == '/')
		return "The URL must name a host.";

	initStringInfo(&copy);
	for (p = url; *p != '\0';)
	{
		if (strncmp(p, "{schema}", 8) == 0)
		{
			appendStringInfoChar(&copy, 'x');
			p += 8;
		}
		else if (strncmp(p, "{table}", 7) == 0)
		{
			appendStringInfoChar(&copy, 'x');
			p += 7;
		}
		else
			appendStringInfoChar(&copy, *p++);
	}

	h = curl_url();
	if (h == NULL)
	{
		pfree(copy.data);
		return "The URL could not be checked: out of memory.";
	}

	uc = curl_url_set(h, CURLUPART_URL, copy.data, 0);
	if (uc != CURLUE_OK)
	{
		if (uc == CURLUE_NO_HOST)
			problem = "The URL must name a host.";
		else
			problem = "The URL is not a valid absolute URL.";
	}
	else if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 (pg_strcasecmp(scheme, "http") != 0 &&
			  pg_strcasecmp(scheme, "https") != 0))
		problem = "The URL scheme must be http or https.";
	else if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
			 host[0] == '\0')
		problem = "The URL must name a host.";

	if (scheme != NULL)
		curl_free(scheme);
	if (host != NULL)
		curl_free(host);
	curl_url_cleanup(h);
	pfree(copy.data);

	return problem;
}

static bool
ws_http_has_line_break(const char *s)
{
	return strchr(s, '\r') != NULL || strchr(s, '\n') != NULL;
}

/*
 * curl_slist_free_all(), zeroing the strings first: one of them may be
 * the bearer token.
 */
static void
ws_http_free_headers(struct curl_slist *headers)
{
	struct curl_slist *h;

	for (h = headers; h != NULL; h = h->next)
	{
		if (h->data != NULL)
			explicit_bzero(h->data, strlen(h->data));
	}
	curl_slist_free_all(headers);
}

/* Appends one header line; NULL, with list freed, when out of memory. */
static struct curl_slist *
ws_http_append_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *result = curl_slist_append(list, line);

	if (result == NULL)
		ws_http_free_headers(list);
	return result;
}

/*
 * Starts a POST of request->body to request->url.  The body is not
 * copied.  Errors here are resource shortages or programming errors;
 * everything that can go wrong on the network shows in the result.
 */
void
ws_http_start(WsHttpClient *client, const WsHttpRequest *request)
{
	WsHttpTransfer *transfer;
	struct curl_slist *headers = NULL;
	CURL	   *easy;
	CURLcode	rc = CURLE_OK;
	CURLMcode	mc;
	char	   *line;
	ListCell   *lc;

	if (client->multi == NULL)
		elog(ERROR, "walship HTTP client was released");
	if (request->url == NULL || ws_http_has_line_break(request->url))
		elog(ERROR, "invalid URL for HTTP request");
	if ((request->content_type && ws_http_has_line_break(request->content_type)) ||
		(request->content_encoding && ws_http_has_line_break(request->content_encoding)) ||
		(request->batch_id && ws_http_has_line_break(request->batch_id)))
		elog(ERROR, "line break in an HTTP header value");

	/* Header list; libcurl copies each line */
	line = psprintf("Content-Type: %s",
					request->content_type ? request->content_type :
					"application/octet-stream");
	headers = ws_http_append_header(headers, line);
	pfree(line);
	if (headers != NULL && request->content_encoding != NULL &&
		request->content_encoding[0] != '\0')
	{
		line = psprintf("Content-Encoding: %s", request->content_encoding);
		headers = ws_http_append_header(headers, line);
		pfree(line);
	}
	if (headers != NULL && request->batch_id != NULL)
	{
		line = psprintf("Walship-Batch-Id: %s", request->batch_id);
		headers = ws_http_append_header(headers, line);
		pfree(line);
	}
	if (headers != NULL && client->auth_header != NULL)
		headers = ws_http_append_header(headers, client->auth_header);
	if (headers != NULL)
		headers = ws_http_append_header(headers,
										"User-Agent: " WS_HTTP_USER_AGENT);
	foreach(lc, client->headers)
	{
		if (headers == NULL)
			break;
		headers = ws_http_append_header(headers, (const char *) lfirst(lc));
	}
	/* no "Expect: 100-continue" round trip before large bodies */
	if (headers != NULL)
		headers = ws_http_append_header(headers, "Expect:");
	if (headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not build the headers of an HTTP request.")));

	transfer = calloc(1, sizeof(WsHttpTransfer));
	if (transfer == NULL)
	{
		ws_http_free_headers(headers);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	transfer->headers = headers;
	transfer->request_id = request->request_id;
	transfer->keep_body = request->keep_body;
	transfer->retry_after_ms = -1;

	/* idle handles were reset when their previous transfer finished */
	if (client->nidle > 0)
		easy = client->idle[--client->nidle];
	else
		easy = curl_easy_init();
	if (easy == NULL)
	{
		ws_http_free_headers(headers);
		free(transfer);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl easy handle")));
	}
	transfer->easy = easy;

#define WS_SETOPT(option, value) \
	do { \
		if (rc == CURLE_OK) \
			rc = curl_easy_setopt(easy, option, value); \
	} while (0)

	WS_SETOPT(CURLOPT_PRIVATE, (void *) transfer);
	WS_SETOPT(CURLOPT_ERRORBUFFER, transfer->errbuf);
	WS_SETOPT(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	WS_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	WS_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	WS_SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	WS_SETOPT(CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	WS_SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	WS_SETOPT(CURLOPT_SSL_VERIFYPEER, client->tls_verify ? 1L : 0L);
	WS_SETOPT(CURLOPT_SSL_VERIFYHOST, client->tls_verify ? 2L : 0L);
	if (client->tls_ca_file != NULL)
		WS_SETOPT(CURLOPT_CAINFO, client->tls_ca_file);
	WS_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, client->connect_timeout_ms);
	WS_SETOPT(CURLOPT_TIMEOUT_MS, client->timeout_ms);
	WS_SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	WS_SETOPT(CURLOPT_URL, request->url);

	/*
	 * Send the path as it is.  Newer libcurl (8.14 in Debian 13, not 7.88)
	 * resolves dot segments even when they are percent-encoded ("%2E%2E"),
	 * which would send a table named ".." to the parent of its {table}
	 * path.
	 */
	WS_SETOPT(CURLOPT_PATH_AS_IS, 1L);
	if (client->basic_user != NULL)
	{
		WS_SETOPT(CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		WS_SETOPT(CURLOPT_USERNAME, client->basic_user);
		WS_SETOPT(CURLOPT_PASSWORD, client->basic_password);
	}
	WS_SETOPT(CURLOPT_HTTPHEADER, headers);
	WS_SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) request->body_len);
	WS_SETOPT(CURLOPT_POSTFIELDS,
			  request->body != NULL ? request->body : "");
	WS_SETOPT(CURLOPT_WRITEFUNCTION, ws_http_write_cb);
	WS_SETOPT(CURLOPT_WRITEDATA, (void *) transfer);
	WS_SETOPT(CURLOPT_HEADERFUNCTION, ws_http_header_cb);
	WS_SETOPT(CURLOPT_HEADERDATA, (void *) transfer);

#undef WS_SETOPT

	if (rc != CURLE_OK)
	{
		curl_easy_cleanup(easy);
		ws_http_free_headers(headers);
		free(transfer);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not set up an HTTP request: %s",
						curl_easy_strerror(rc))));
	}

	mc = curl_multi_add_handle(client->multi, easy);
	if (mc != CURLM_OK)
	{
		curl_easy_cleanup(easy);
		ws_http_free_headers(headers);
		free(transfer);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start an HTTP request: %s",
						curl_multi_strerror(mc))));
	}

	transfer->next = client->transfers;
	if (client->transfers != NULL)
		client->transfers->prev = transfer;
	client->transfers = transfer;
	client->inflight++;
}

/* Number of requests started whose result was not yet returned. */
int
ws_http_inflight(WsHttpClient *client)
{
	return client->inflight;
}

/*
 * Reads finished transfers from the multi handle into results.
 */
static int
ws_http_collect(WsHttpClient *client, WsHttpResult *results, int max_results)
{
	int			n = 0;

	while (n < max_results)
	{
		CURLMsg    *msg;
		int			left;
		WsHttpTransfer *transfer = NULL;

		msg = curl_multi_info_read(client->multi, &left);
		if (msg == NULL)
			break;
		if (msg->msg != CURLMSG_DONE)
			continue;

		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
							  (char **) &transfer) != CURLE_OK ||
			transfer == NULL)
			elog(ERROR, "finished libcurl transfer without walship state");

		/* msg is invalid once the handle is removed: read it first */
		ws_http_fill_result(client, transfer, msg->data.result, &results[n++]);
		ws_http_finish_transfer(client, transfer);
	}

	return n;
}

/*
 * Drives transfers and returns finished ones; see http_transport.h.
 *
 * With nothing in flight it returns at once rather than sleep: the caller
 * should wait on its latch then.  curl_multi_poll() does not wake up for
 * the process latch, so a caller that must react quickly to signals should
 * keep timeout_ms short.
 */
int
ws_http_poll(WsHttpClient *client, int timeout_ms,
			 WsHttpResult *results, int max_results)
{
	CURLMcode	mc;
	int			running = 0;
	int			n;

	if (client->multi == NULL)
		elog(ERROR, "walship HTTP client was released");
	if (client->inflight == 0)
		return 0;

	mc = curl_multi_perform(client->multi, &running);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not drive HTTP requests: %s",
						curl_multi_strerror(mc))));

	n = ws_http_collect(client, results, max_results);
	if (n > 0 || timeout_ms <= 0 || max_results <= 0 || running == 0)
		return n;

	mc = curl_multi_poll(client->multi, NULL, 0, timeout_ms, NULL);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not wait for HTTP requests: %s",
						curl_multi_strerror(mc))));

	mc = curl_multi_perform(client->multi, &running);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not drive HTTP requests: %s",
						curl_multi_strerror(mc))));

	return ws_http_collect(client, results, max_results);
}

/*
 * Removes a finished transfer from the multi handle, keeps its easy
 * handle for reuse and frees its state.
 */
static void
ws_http_finish_transfer(WsHttpClient *client, WsHttpTransfer *transfer)
{
	curl_multi_remove_handle(client->multi, transfer->easy);

	if (transfer->prev != NULL)
		transfer->prev->next = transfer->next;
	else
		client->transfers = transfer->next;
	if (transfer->next != NULL)
		transfer->next->prev = transfer->prev;

	if (client->nidle < WS_HTTP_MAX_IDLE_HANDLES)
	{
		/* drop the pointers into transfer before it goes away */
		curl_easy_reset(transfer->easy);
		client->idle[client->nidle++] = transfer->easy;
	}
	else
		curl_easy_cleanup(transfer->easy);

	ws_http_free_headers(transfer->headers);
	free(transfer->body);
	free(transfer);
	client->inflight--;
}

/* Overwrites every occurrence of secret in text with '*'. */
static void
ws_http_mask(char *text, const char *secret)
{
	size_t		len;
	char	   *p;

	if (secret == NULL || (len = strlen(secret)) < 4)
		return;
	for (p = text; (p = strstr(p, secret)) != NULL; p += len)
		memset(p, '*', len);
}

/*
 * Classifies a finished transfer.
 */
static void
ws_http_fill_result(WsHttpClient *client, WsHttpTransfer *transfer,
					CURLcode code, WsHttpResult *result)
{
	long		status = 0;
	curl_off_t	total_us = 0;

	memset(result, 0, sizeof(WsHttpResult));
	result->request_id = transfer->request_id;
	result->retry_after_ms = transfer->retry_after_ms;

	if (curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE,
						  &status) != CURLE_OK)
		status = 0;
	result->status = status;
	if (curl_easy_getinfo(transfer->easy, CURLINFO_TOTAL_TIME_T,
						  &total_us) == CURLE_OK)
		result->elapsed_ms = (double) total_us / 1000.0;

	strlcpy(result->clickhouse_exception_code, transfer->exception_code,
			sizeof(result->clickhouse_exception_code));
	ws_http_copy_text(result->response, transfer->response,
					  transfer->response_len);
	/* the body goes to the caller, who frees it */
	result->body = transfer->body;
	result->body_len = transfer->body_len;
	result->body_truncated = transfer->body_truncated;
	transfer->body = NULL;

	if (code != CURLE_OK)
	{
		const char *what = curl_easy_strerror(code);

		result->outcome = WS_HTTP_RETRY;
		/* the error buffer often repeats strerror's text, or is empty */
		if (transfer->errbuf[0] != '\0' &&
			strcmp(transfer->errbuf, what) != 0)
			snprintf(result->error, sizeof(result->error), "%s: %s",
					 what, transfer->errbuf);
		else
			strlcpy(result->error, what, sizeof(result->error));
		/* drop the trailing new line some messages end with */
		result->error[strcspn(result->error, "\r\n")] = '\0';
	}
	else if (status >= 200 && status <= 299)
	{
		if (transfer->exception_code[0] != '\0')
		{
			result->outcome = WS_HTTP_REJECTED;
			snprintf(result->error, sizeof(result->error),
					 "endpoint answered HTTP status %ld with ClickHouse exception code %s",
					 status, result->clickhouse_exception_code);
		}
		else
			result->outcome = WS_HTTP_ACKNOWLEDGED;
	}
	else
	{
		if (status == 408 || status == 429 || (status >= 500 && status <= 599))
			result->outcome = WS_HTTP_RETRY;
		else if (status == 413)
			result->outcome = WS_HTTP_TOO_LARGE;
		else
			result->outcome = WS_HTTP_REJECTED;
		snprintf(result->error, sizeof(result->error),
				 "endpoint answered HTTP status %ld", status);
	}

	/* messages and answers may quote the URL: hide what it carries */
	{
		char	   *url = NULL;

		if (curl_easy_getinfo(transfer->easy, CURLINFO_EFFECTIVE_URL,
							  &url) == CURLE_OK && url != NULL)
		{
			ws_mask_url_secrets(result->error, url);
			ws_mask_url_secrets(result->response, url);
		}
		ws_http_mask(result->error, client->basic_password);
		ws_http_mask(result->response, client->basic_password);
		if (client->auth_header != NULL)
		{
			const char *token = client->auth_header + strlen("Authorization: Bearer ");

			ws_http_mask(result->error, token);
			ws_http_mask(result->response, token);
		}
	}
}

/*
 * Copies len bytes of a response body into dst (WS_HTTP_MAX_RESPONSE
 * bytes) as text fit for a status view: NUL-terminated, control characters
 * other than new lines and tabs replaced by spaces, and bytes that do not
 * form valid UTF-8 replaced by '?' (or every non-ASCII byte, when the
 * database encoding is not UTF-8).
 */
static void
ws_http_copy_text(char *dst, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *) src;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	size_t		i = 0;
	size_t		o = 0;

	while (i < len && o < WS_HTTP_MAX_RESPONSE - 1)
	{
		unsigned char c = s[i];

		if (c < 0x80)
		{
			dst[o++] = (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ?
				' ' : (char) c;
			i++;
			continue;
		}
		if (utf8)
		{
			int			l = pg_utf_mblen(&s[i]);

			if (i + l <= len && o + l <= WS_HTTP_MAX_RESPONSE - 1 &&
				pg_utf8_islegal(&s[i], l))
			{
				memcpy(dst + o, s + i, l);
				o += l;
				i += l;
				continue;
			}
			if (i + l > len || o + l > WS_HTTP_MAX_RESPONSE - 1)
				break;			/* cut off in the middle of a character */
		}
		dst[o++] = '?';
		i++;
	}
	dst[o] = '\0';
}

/*
 * libcurl write callback: keeps the start of the response body.  Must not
 * palloc, elog or ereport.
 */
static size_t
ws_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	WsHttpTransfer *transfer = (WsHttpTransfer *) userdata;
	size_t		n = size * nmemb;
	size_t		room = (WS_HTTP_MAX_RESPONSE - 1) - transfer->response_len;

	if (room > 0)
	{
		size_t		take = Min(n, room);

		memcpy(transfer->response + transfer->response_len, ptr, take);
		transfer->response_len += take;
	}
	if (transfer->keep_body && !transfer->body_truncated)
	{
		if (transfer->body_len + n > WS_HTTP_MAX_BODY)
			transfer->body_truncated = true;
		else
		{
			if (transfer->body_len + n > transfer->body_cap)
			{
				size_t		cap = Max(transfer->body_cap * 2,
									  transfer->body_len + n);
				char	   *grown = realloc(transfer->body, cap);

				if (grown == NULL)
					return 0;	/* libcurl fails the transfer */
				transfer->body = grown;
				transfer->body_cap = cap;
			}
			memcpy(transfer->body + transfer->body_len, ptr, n);
			transfer->body_len += n;
		}
	}
	return n;
}

/*
 * libcurl header callback: picks up Retry-After and
 * X-ClickHouse-Exception-Code.  Called once per header line, status line
 * included.  Must not palloc, elog or ereport.
 */
static size_t
ws_http_header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	WsHttpTransfer *transfer = (WsHttpTransfer *) userdata;
	size_t		n = size * nitems;
	size_t		len = n;
	const char *colon;
	const char *value;
	size_t		name_len;
	size_t		value_len;

	while (len > 0 && (buffer[len - 1] == '\n' || buffer[len - 1] == '\r'))
		len--;

	/* A new response (after 1xx, say): forget the previous one's headers */
	if (len >= 5 && strncmp(buffer, "HTTP/", 5) == 0)
	{
		transfer->retry_after_ms = -1;
		transfer->exception_code[0] = '\0';
		transfer->response_len = 0;
		transfer->body_len = 0;
		transfer->body_truncated = false;
		return n;
	}

	colon = memchr(buffer, ':', len);
	if (colon == NULL)
		return n;
	name_len = colon - buffer;
	value = colon + 1;
	value_len = len - name_len - 1;
	while (value_len > 0 && (*value == ' ' || *value == '\t'))
	{
		value++;
		value_len--;
	}
	while (value_len > 0 &&
		   (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
		value_len--;

	if (name_len == 11 && pg_strncasecmp(buffer, "Retry-After", 11) == 0)
		transfer->retry_after_ms = ws_http_parse_retry_after(value, value_len);
	else if (name_len == 27 &&
			 pg_strncasecmp(buffer, "X-ClickHouse-Exception-Code", 27) == 0)
	{
		size_t		o = 0;
		size_t		i;

		/* keep it printable: it is shown in the status view */
		for (i = 0; i < value_len && o < WS_HTTP_EXCEPTION_CODE_SIZE - 1; i++)
		{
			unsigned char c = (unsigned char) value[i];

			transfer->exception_code[o++] = (c >= 0x20 && c < 0x7f) ? c : '?';
		}
		transfer->exception_code[o] = '\0';
	}

	return n;
}

/*
 * Parses a Retry-After value, delta-seconds or an HTTP-date, into
 * milliseconds from now (0 for a date in the past).  -1 when unparsable.
 * Runs inside the header callback: no palloc, elog or ereport.
 */
static int
ws_http_parse_retry_after(const char *value, size_t len)
{
	char		buf[128];
	size_t		i;
	bool		digits = (len > 0);
	time_t		when;
	time_t		now;
	double		ms;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	for (i = 0; i < len; i++)
	{
		if (value[i] < '0' || value[i] > '9')
		{
			digits = false;
			break;
		}
	}

	if (digits)
	{
		ms = 0;
		for (i = 0; i < len && ms < (double) INT_MAX; i++)
			ms = ms * 10 + (value[i] - '0');
		ms *= 1000;
	}
	else
	{
		memcpy(buf, value, len);
		buf[len] = '\0';
		when = curl_getdate(buf, NULL);
		if (when == (time_t) -1)
			return -1;
		now = time(NULL);
		ms = when > now ? ((double) when - (double) now) * 1000 : 0;
	}

	return ms >= (double) INT_MAX ? INT_MAX : (int) ms;
}
