/* JSON over HTTP: a small server on libmicrohttpd (thread per connection, so
 * handlers may block), optionally over TLS, and a client on libcurl
 * (http_client.c; httpc.c is a smaller one without TLS).  Every request carries a bearer
 * token compared in constant time. */
#ifndef MYCE_HTTP_H
#define MYCE_HTTP_H

#include "error.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

#define MYCE_HTTP_MAX_BODY (256 * 1024)

struct myce_http_req {
	const char *method;
	const char *path;  /* without the query string */
	const char *query; /* raw "a=b&c=d" or "" */
	cJSON *body;       /* NULL when the request had no body */
};

struct myce_http_resp {
	int status;
	cJSON *json;       /* owned; serialised as the body */
	char *text;        /* owned; used instead of json when set */
	const char *content_type;
};

typedef void (*myce_http_handler)(void *ctx, const struct myce_http_req *req, struct myce_http_resp *resp);

struct myce_http_server;

/* Listens on addr ("IP:PORT"); token NULL disables authentication (tests
 * only).  /healthz needs no token. */
struct myce_http_server *myce_http_server_new(const char *addr, const char *token, myce_http_handler h,
					      void *ctx, struct myce_error **err);
/* The same over TLS (libmicrohttpd's HTTPS on GnuTLS) when cert_file and
 * key_file (PEM) are given; both NULL: plain HTTP.  A certificate and key
 * that cannot be read or do not match are an error before listening. */
struct myce_http_server *myce_http_server_new_tls(const char *addr, const char *token, const char *cert_file,
						  const char *key_file, myce_http_handler h, void *ctx,
						  struct myce_error **err);
void myce_http_server_free(struct myce_http_server *s);
/* Checks that cert_file and key_file (PEM) can be read and form a pair, as
 * myce_http_server_new_tls will: a program can refuse a bad configuration
 * before it touches anything. */
int myce_http_tls_check(const char *cert_file, const char *key_file, struct myce_error **err);

/* Fills resp with {"error": msg} and status. */
void myce_http_error(struct myce_http_resp *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Client: sends body (may be NULL) and parses the JSON answer into *out (may be
 * NULL).  Returns the HTTP status (>= 100) or a negative error; a non-2xx
 * status is returned, not turned into an error, with the server's "error"
 * message put into *err. */
int myce_http_call(const char *method, const char *url, const char *token, const cJSON *body,
		   long timeout_ms, cJSON **out, struct myce_error **err);
/* The same; an https:// URL is verified against the CA certificates in
 * ca_file (PEM) instead of the system's, and its host name or IP address
 * against the certificate.  ca_file NULL: the system's CAs. */
int myce_http_call_ca(const char *method, const char *url, const char *token, const char *ca_file,
		      const cJSON *body, long timeout_ms, cJSON **out, struct myce_error **err);

/* Reads a token file (first line, trimmed). NULL and err on failure. */
char *myce_token_load(const char *path, struct myce_error **err);

static inline void cjson_freep(cJSON **j)
{
	if (*j)
		cJSON_Delete(*j);
}
#define _cleanup_json_ __attribute__((cleanup(cjson_freep)))

/* Typed getters: NULL/def when absent or of another type. */
const char *myce_json_str(const cJSON *o, const char *key);
double myce_json_num(const cJSON *o, const char *key, double def);
bool myce_json_bool(const cJSON *o, const char *key, bool def);

#endif
