/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  The worker's secrets: the files walship.auth_token_file,
 *	  walship.basic_auth_file and walship.headers_file, and keeping
 *	  credentials out of what walship shows or logs.
 *
 * IDENTIFICATION
 *	  src/secrets.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_SECRETS_H
#define WALSHIP_SECRETS_H

#include "http_transport.h"

/* How often a secret file that could not be read is tried again. */
#define WS_SECRETS_RETRY_MS		5000

/*
 * Reads every configured secret file (at worker start, on reload, and when
 * ws_secrets_reread_due() says so) and points settings' auth_token,
 * basic_auth_user, basic_auth_password and secret_headers at the values,
 * which stay valid until the next call.  A file that cannot be read, or
 * whose content is malformed, keeps the value last read from it (reported
 * as a WARNING and in walship.status); one that never could be read leaves
 * its secret missing.  Also warns, once per value, about credentials in
 * walship.endpoint and walship.headers.
 */
extern void ws_secrets_load(WsHttpSettings *settings);

/* Whether a configured secret has no value: then nothing may be sent. */
extern bool ws_secrets_missing(void);

/* Whether a secret file that failed to be read is due to be read again. */
extern bool ws_secrets_reread_due(void);

/*
 * The URL for display (walship.status, walship.dead_letter): without any
 * user:password part, and with the values of query parameters that look
 * like credentials (password, token, key, signature, ...) shown as ***.
 */
extern char *ws_endpoint_for_display(const char *url);

/* Whether a URL query parameter or HTTP header name looks like a credential. */
extern bool ws_secret_param_name(const char *name, int len);
extern bool ws_secret_header_name(const char *name, int len);

/*
 * Overwrites, in text, every occurrence of a credential that url carries
 * (its user name and password, values of credential-like query
 * parameters) with '*'.  For error messages that may quote the URL.
 */
extern void ws_mask_url_secrets(char *text, const char *url);

#endif							/* WALSHIP_SECRETS_H */
