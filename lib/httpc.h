/* A small HTTP/1.1 client for plain http:// URLs: one request per
 * connection, JSON in and out, a deadline over the whole exchange.  For the
 * coordinator's calls to node daemons, so that the coordinator does not map
 * libcurl and everything libcurl pulls in (OpenSSL, Kerberos, LDAP, ssh,
 * nghttp2...): see bench/coordinator-memory.sh.  Programs that need TLS or
 * proxies use myce_http_call (libcurl). */
#ifndef MYCE_HTTPC_H
#define MYCE_HTTPC_H

#include "error.h"

#include <cjson/cJSON.h>

/* Largest response body accepted (as myce_http_call). */
#define MYCE_HTTPC_MAX_BODY (16 * 1024 * 1024)

/* Same contract as myce_http_call: sends body (may be NULL), parses the JSON
 * answer into *out (may be NULL); returns the HTTP status (>= 100) or a
 * negative error (ETIMEDOUT, ECONNREFUSED, EPROTO for a reply that is not
 * HTTP, EINVAL for a URL that is not http://IPv4:PORT/path); a non-2xx
 * status is returned with the server's "error" message in *err. */
int myce_httpc_call(const char *method, const char *url, const char *token, const cJSON *body, long timeout_ms,
		    cJSON **out, struct myce_error **err);

#endif
