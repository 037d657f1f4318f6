#include "http.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

struct myce_http_server {
	struct MHD_Daemon *d;
	char *token;
	char *cert, *key; /* PEM, kept while the daemon runs (TLS only) */
	myce_http_handler handler;
	void *ctx;
};

struct conn_state {
	char *buf;
	size_t len;
	bool too_big;
};

void myce_http_error(struct myce_http_resp *resp, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (resp->json)
		cJSON_Delete(resp->json);
	resp->json = cJSON_CreateObject();
	cJSON_AddStringToObject(resp->json, "error", msg);
	resp->status = status;
	free(msg);
}

/* cJSON prints large integers (microsecond timestamps) as 1.79e+15, which
 * strict clients cannot read into an int64: print them as integers. */
static void integers_plain(cJSON *j)
{
	for (cJSON *x = j ? j->child : NULL; x; x = x->next) {
		if (cJSON_IsNumber(x) && (x->valuedouble > 2147483647.0 || x->valuedouble < -2147483648.0) &&
		    x->valuedouble == (double)(long long)x->valuedouble) {
			char buf[32];
			snprintf(buf, sizeof(buf), "%lld", (long long)x->valuedouble);
			cJSON *raw = cJSON_CreateRaw(buf);
			if (x->string) { /* ReplaceItemViaPointer keeps no key */
				raw->string = xstrdup(x->string);
				raw->type &= ~cJSON_StringIsConst;
			}
			cJSON_ReplaceItemViaPointer(j, x, raw);
			x = raw;
		} else if (cJSON_IsObject(x) || cJSON_IsArray(x)) {
			integers_plain(x);
		}
	}
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct myce_http_resp *r)
{
	char *body;
	const char *ctype = r->content_type;
	if (r->text) {
		body = steal_pointer(&r->text);
		if (!ctype)
			ctype = "text/plain; charset=utf-8";
	} else {
		integers_plain(r->json);
		body = r->json ? cJSON_PrintUnformatted(r->json) : xstrdup("{}");
		if (!body)
			abort();
		ctype = "application/json";
	}
	size_t n = strlen(body);
	char *withnl = xrealloc(body, n + 2);
	withnl[n] = '\n';
	withnl[n + 1] = '\0';
	struct MHD_Response *resp = MHD_create_response_from_buffer(n + 1, withnl, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, "Content-Type", ctype);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static bool token_ok(struct myce_http_server *s, struct MHD_Connection *c)
{
	if (!s->token)
		return true;
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!auth || strncmp(auth, "Bearer ", 7) != 0)
		return false;
	return myce_const_eq(auth + 7, s->token);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct myce_http_server *s = cls;
	struct conn_state *st = *con_cls;
	if (!st) {
		st = xzalloc(sizeof(*st));
		*con_cls = st;
		return MHD_YES;
	}
	if (*upload_size) {
		if (st->len + *upload_size > MYCE_HTTP_MAX_BODY) {
			st->too_big = true;
		} else {
			st->buf = xrealloc(st->buf, st->len + *upload_size + 1);
			memcpy(st->buf + st->len, upload, *upload_size);
			st->len += *upload_size;
			st->buf[st->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}

	struct myce_http_resp resp = {.status = 200};
	bool open_path = !strcmp(url, "/healthz");
	if (!open_path && !token_ok(s, c)) {
		myce_http_error(&resp, 401, "missing or wrong bearer token");
	} else if (st->too_big) {
		myce_http_error(&resp, 413, "request body larger than %d bytes", MYCE_HTTP_MAX_BODY);
	} else {
		cJSON *body = NULL;
		bool bad = false;
		if (st->len > 0) {
			/* The whole body, nothing after the value, no NUL inside. */
			if (strlen(st->buf) == st->len)
				body = cJSON_ParseWithLengthOpts(st->buf, st->len + 1, NULL, true);
			if (!body)
				bad = true;
		}
		if (bad) {
			myce_http_error(&resp, 400, "request body is not valid JSON");
		} else {
			struct myce_http_req req = {.method = method, .path = url, .query = "", .body = body};
			s->handler(s->ctx, &req, &resp);
		}
		if (body)
			cJSON_Delete(body);
	}
	enum MHD_Result r = send_resp(c, &resp);
	if (resp.json)
		cJSON_Delete(resp.json);
	free(resp.text);
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct conn_state *st = *con_cls;
	if (st) {
		free(st->buf);
		free(st);
	}
	*con_cls = NULL;
}

/* Reads cert and key and checks that GnuTLS takes them as a pair, so that a
 * bad file is reported as such rather than as a failure to listen. */
static int tls_load(struct myce_http_server *s, const char *cert_file, const char *key_file, struct myce_error **err)
{
	size_t cn = 0, kn = 0;
	s->cert = myce_read_file(cert_file, &cn);
	if (!s->cert)
		return myce_error_errno(err, "TLS certificate %s", cert_file);
	s->key = myce_read_file(key_file, &kn);
	if (!s->key)
		return myce_error_errno(err, "TLS key %s", key_file);
	gnutls_certificate_credentials_t cred;
	if (gnutls_certificate_allocate_credentials(&cred) < 0)
		return myce_error_set(err, ENOMEM, "TLS credentials");
	gnutls_datum_t c = {.data = (unsigned char *)s->cert, .size = (unsigned)cn};
	gnutls_datum_t k = {.data = (unsigned char *)s->key, .size = (unsigned)kn};
	int r = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
	gnutls_certificate_free_credentials(cred);
	if (r < 0)
		return myce_error_set(err, EINVAL, "TLS certificate %s with key %s: %s", cert_file, key_file,
				      gnutls_strerror(r));
	return 0;
}

int myce_http_tls_check(const char *cert_file, const char *key_file, struct myce_error **err)
{
	struct myce_http_server s = {0};
	int r = tls_load(&s, cert_file, key_file, err);
	free(s.cert);
	if (s.key)
		explicit_bzero(s.key, strlen(s.key));
	free(s.key);
	return r;
}

static void server_free(struct myce_http_server *s)
{
	free(s->token);
	free(s->cert);
	if (s->key) /* a private key: do not leave it in freed memory */
		explicit_bzero(s->key, strlen(s->key));
	free(s->key);
	free(s);
}

struct myce_http_server *myce_http_server_new(const char *addr, const char *token, myce_http_handler h,
					      void *ctx, struct myce_error **err)
{
	return myce_http_server_new_tls(addr, token, NULL, NULL, h, ctx, err);
}

struct myce_http_server *myce_http_server_new_tls(const char *addr, const char *token, const char *cert_file,
						  const char *key_file, myce_http_handler h, void *ctx,
						  struct myce_error **err)
{
	char host[64];
	int port;
	const char *colon = strrchr(addr, ':');
	if (!colon || (size_t)(colon - addr) >= sizeof(host) || (port = atoi(colon + 1)) <= 0 || port > 65535) {
		myce_error_set(err, EINVAL, "listen address %s: expected IP:PORT", addr);
		return NULL;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		myce_error_set(err, EINVAL, "listen address %s: bad IPv4 address", addr);
		return NULL;
	}
	if (!cert_file != !key_file) {
		myce_error_set(err, EINVAL, "TLS needs both a certificate and a key");
		return NULL;
	}
	struct myce_http_server *s = xzalloc(sizeof(*s));
	s->token = token ? xstrdup(token) : NULL;
	s->handler = h;
	s->ctx = ctx;
	if (cert_file && tls_load(s, cert_file, key_file, err) < 0) {
		server_free(s);
		return NULL;
	}
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (cert_file)
		flags |= MHD_USE_TLS;
	/* A handler needs little stack (SQLite, cJSON, one HTTP call): 512 KiB
	 * instead of the default 8 MiB keeps the virtual size of many open
	 * connections small. */
	s->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &sa,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)600, MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
				cert_file ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->cert,
				MHD_OPTION_HTTPS_MEM_KEY, s->key, MHD_OPTION_END);
	if (!s->d) {
		server_free(s);
		myce_error_set(err, EADDRINUSE, "cannot listen on %s (address in use or not configured)", addr);
		return NULL;
	}
	return s;
}

void myce_http_server_free(struct myce_http_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	server_free(s);
}

char *myce_token_load(const char *path, struct myce_error **err)
{
	char *t = myce_read_file(path, NULL);
	if (!t) {
		myce_error_errno(err, "read token %s", path);
		return NULL;
	}
	t[strcspn(t, "\r\n")] = '\0';
	if (!*t) {
		free(t);
		myce_error_set(err, EINVAL, "token file %s is empty", path);
		return NULL;
	}
	return t;
}

const char *myce_json_str(const cJSON *o, const char *key)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

double myce_json_num(const cJSON *o, const char *key, double def)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

bool myce_json_bool(const cJSON *o, const char *key, bool def)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}
