/*-------------------------------------------------------------------------
 *
 * http_transport.h
 *	  Delivery of batches over HTTP(S) with libcurl's multi interface.
 *
 * The shipping worker hands finished request bodies to the transport and
 * polls it; the transport keeps connections alive, runs up to the caller's
 * number of requests at once, and classifies every response.  It never
 * raises an error from inside libcurl callbacks and never logs secrets.
 *
 * IDENTIFICATION
 *	  src/http_transport.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_HTTP_TRANSPORT_H
#define WALSHIP_HTTP_TRANSPORT_H

#include "nodes/pg_list.h"

typedef struct WsHttpClient WsHttpClient;

/* How the endpoint answered, from the worker's point of view. */
typedef enum WsHttpOutcome
{
	WS_HTTP_ACKNOWLEDGED,		/* 2xx */
	WS_HTTP_RETRY,				/* network error, timeout, 408, 429, 5xx */
	WS_HTTP_TOO_LARGE,			/* 413: split the batch and retry */
	WS_HTTP_REJECTED			/* any other status: permanent */
} WsHttpOutcome;

/* Connection settings, copied by ws_http_client_configure(). */
typedef struct WsHttpSettings
{
	int			connect_timeout_ms;
	int			timeout_ms;		/* whole request */
	bool		tls_verify;		/* peer and host name */
	const char *tls_ca_file;	/* NULL or "" for the system store */
	const char *auth_token;		/* bearer token, NULL or "" for none */
	const char *basic_auth_user;	/* HTTP Basic authentication, NULL for
									 * none */
	const char *basic_auth_password;
	List	   *headers;		/* of char *, "Name: value" */
	List	   *secret_headers; /* the same, from walship.headers_file */
} WsHttpSettings;

/* One request.  body must stay valid until its result was returned. */
typedef struct WsHttpRequest
{
	uint64		request_id;		/* the caller's, returned in the result */
	const char *url;			/* http:// or https:// only */
	const char *content_type;
	const char *content_encoding;	/* NULL, "gzip" or "zstd" */
	const char *batch_id;		/* sent as the Walship-Batch-Id header */
	const char *body;
	size_t		body_len;
	bool		keep_body;		/* return the whole response body (up to
								 * WS_HTTP_MAX_BODY) in the result */
} WsHttpRequest;

#define WS_HTTP_MAX_ERROR		256
#define WS_HTTP_MAX_RESPONSE	1024
#define WS_HTTP_MAX_BODY		(16 * 1024 * 1024)

typedef struct WsHttpResult
{
	uint64		request_id;
	WsHttpOutcome outcome;
	long		status;			/* HTTP status, 0 when none was received */
	int			retry_after_ms;	/* from Retry-After, -1 when absent */
	double		elapsed_ms;
	char		error[WS_HTTP_MAX_ERROR];	/* "" on success; never a secret */
	char		response[WS_HTTP_MAX_RESPONSE]; /* start of the response body */
	char		clickhouse_exception_code[32];	/* X-ClickHouse-Exception-Code */
	char	   *body;			/* keep_body: the response body as received,
								 * malloc'd (the caller free()s it), NULL
								 * when empty */
	size_t		body_len;
	bool		body_truncated; /* longer than WS_HTTP_MAX_BODY */
} WsHttpResult;

/* Creates a client; call once per process.  Registers libcurl cleanup. */
extern WsHttpClient *ws_http_client_create(void);
extern void ws_http_client_configure(WsHttpClient *client,
									 const WsHttpSettings *settings);
extern void ws_http_client_destroy(WsHttpClient *client);

/* Checks a URL as the worker's GUC check hook needs; NULL when fine. */
extern const char *ws_http_url_problem(const char *url);

extern void ws_http_start(WsHttpClient *client, const WsHttpRequest *request);
extern int	ws_http_inflight(WsHttpClient *client);

/*
 * Drives transfers, waiting at most timeout_ms for progress, and copies up
 * to max_results finished requests into results.  Returns their number.
 */
extern int	ws_http_poll(WsHttpClient *client, int timeout_ms,
						 WsHttpResult *results, int max_results);

#endif							/* WALSHIP_HTTP_TRANSPORT_H */
