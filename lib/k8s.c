/* Requests to the Kubernetes API server: one JSON object in, the HTTP status
 * and one JSON object out.  Easy handles are pooled per configuration so that
 * consecutive requests reuse their TLS connection (libcurl keeps the
 * connection cache of an easy handle across curl_easy_reset). */
#include "config.h"
#include "http.h"
#include "k8s_internal.h"
#include "util.h"

#include <errno.h>
#include <string.h>

#define MAX_BODY (64 * 1024 * 1024) /* a big list; objects themselves are < 1.5 MB */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void myce_k8s_curl_init(void)
{
	pthread_once(&curl_once, curl_init_once);
}

char *myce_k8s_token(struct myce_k8s *c, bool force)
{
	pthread_mutex_lock(&c->lock);
	if (c->token_file && (force || myce_now_us() - c->token_read_us > MYCE_K8S_TOKEN_MAX_AGE_US)) {
		char *t = myce_token_load(c->token_file, NULL);
		if (t) { /* a failed read (file being replaced) keeps the old token */
			if (c->token)
				explicit_bzero(c->token, strlen(c->token));
			free(c->token);
			c->token = t;
			c->token_read_us = myce_now_us();
		}
	}
	char *t = c->token ? xstrdup(c->token) : NULL;
	pthread_mutex_unlock(&c->lock);
	return t;
}

void myce_k8s_curl_setup(struct myce_k8s *c, CURL *h, const char *url, const char *token, const char *extra_header,
			 struct curl_slist **hdrs)
{
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "mycedrive/" MYCE_VERSION);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* gzip when the server offers it */
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* HTTP/1.1: with HTTP/2, libcurl 7.88 reported "Transferred a partial
	 * file" for a 401 to a POST (the apiserver resets the stream whose body it
	 * did not read).  Each pooled handle keeps its own connection, so HTTP/2's
	 * multiplexing would gain nothing here. */
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	if (c->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (c->ca.data) {
		struct curl_blob ca = {.data = c->ca.data, .len = c->ca.len, .flags = CURL_BLOB_COPY};
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
	}
	if (c->cert.data) {
		struct curl_blob cert = {.data = c->cert.data, .len = c->cert.len, .flags = CURL_BLOB_COPY};
		struct curl_blob key = {.data = c->key.data, .len = c->key.len, .flags = CURL_BLOB_COPY};
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	}
	struct curl_slist *l = NULL;
	l = curl_slist_append(l, "Accept: application/json");
	l = curl_slist_append(l, "Expect:");
	if (token) {
		_cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", token);
		l = curl_slist_append(l, auth);
		explicit_bzero(auth, strlen(auth));
	}
	if (extra_header)
		l = curl_slist_append(l, extra_header);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	*hdrs = l;
}

/* ---- the handle pool --------------------------------------------------- */

static CURL *pool_get(struct myce_k8s *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->npool > 0)
		h = c->pool[--c->npool];
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_reset(h);
	else
		h = curl_easy_init();
	return h;
}

static void pool_put(struct myce_k8s *c, CURL *h)
{
	pthread_mutex_lock(&c->lock);
	if (c->npool < MYCE_K8S_POOL) {
		c->pool[c->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_cleanup(h);
}

/* ---- one request ------------------------------------------------------- */

struct body {
	char *p;
	size_t n;
	bool too_big;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t add = size * nmemb;
	if (b->n + add > MAX_BODY) {
		b->too_big = true;
		return 0;
	}
	b->p = xrealloc(b->p, b->n + add + 1);
	memcpy(b->p + b->n, ptr, add);
	b->n += add;
	b->p[b->n] = '\0';
	return add;
}

static int curl_errno(CURLcode cr)
{
	switch (cr) {
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return EHOSTUNREACH;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		return EPROTO;
	case CURLE_URL_MALFORMAT:
		return EINVAL;
	default:
		return EIO;
	}
}

/* Sends once with token; returns the status or a negative error. */
static int send_once(struct myce_k8s *c, const char *method, const char *url, const char *token,
		     const char *content_type, const char *payload, struct body *b, struct myce_error **err)
{
	CURL *h = pool_get(c);
	if (!h)
		return myce_error_set(err, ENOMEM, "%s %s: curl init", method, url);
	_cleanup_slist_ struct curl_slist *hdrs = NULL;
	_cleanup_free_ char *ctype = content_type ? xasprintf("Content-Type: %s", content_type) : NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	myce_k8s_curl_setup(c, h, url, token, ctype, &hdrs);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms < 10000 ? c->timeout_ms : 10000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	if (payload) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
	} else if (!strcmp(method, "GET")) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	CURLcode cr = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	pool_put(c, h);
	if (b->too_big)
		return myce_error_set(err, EFBIG, "%s %s: answer larger than %d MB", method, url, MAX_BODY >> 20);
	if (cr != CURLE_OK)
		return myce_error_set(err, curl_errno(cr), "%s %s: %s", method, url,
				      *errbuf ? errbuf : curl_easy_strerror(cr));
	return (int)status;
}

static int request(struct myce_k8s *c, const char *method, const char *path, const char *content_type,
		   const cJSON *obj, cJSON **out, struct myce_error **err)
{
	if (out)
		*out = NULL;
	if (!path || path[0] != '/')
		return myce_error_set(err, EINVAL, "%s %s: API path must start with '/'", method, path ? path : "(null)");
	myce_k8s_curl_init();
	_cleanup_free_ char *url = xasprintf("%s%s", c->server, path);
	_cleanup_free_ char *payload = NULL;
	if (obj && !(payload = cJSON_PrintUnformatted(obj)))
		abort();
	_cleanup_free_ char *token = myce_k8s_token(c, false);
	struct body b = {0};
	int status = send_once(c, method, url, token, content_type, payload, &b, err);
	if (status == 401 && c->token_file) {
		/* The projected token may have rotated since it was read. */
		_cleanup_free_ char *fresh = myce_k8s_token(c, true);
		if (fresh && (!token || strcmp(fresh, token))) {
			free(b.p);
			b = (struct body){0};
			status = send_once(c, method, url, fresh, content_type, payload, &b, err);
		}
	}
	if (status >= 0 && out && b.n)
		*out = cJSON_ParseWithLength(b.p, b.n);
	free(b.p);
	return status;
}

int myce_k8s_get(struct myce_k8s *c, const char *path, cJSON **out, struct myce_error **err)
{
	return request(c, "GET", path, NULL, NULL, out, err);
}

int myce_k8s_create(struct myce_k8s *c, const char *path, const cJSON *obj, cJSON **out, struct myce_error **err)
{
	if (!obj)
		return myce_error_set(err, EINVAL, "POST %s: no object", path);
	return request(c, "POST", path, "application/json", obj, out, err);
}

int myce_k8s_replace(struct myce_k8s *c, const char *path, const cJSON *obj, cJSON **out, struct myce_error **err)
{
	if (!obj)
		return myce_error_set(err, EINVAL, "PUT %s: no object", path);
	return request(c, "PUT", path, "application/json", obj, out, err);
}

int myce_k8s_patch(struct myce_k8s *c, const char *path, enum myce_k8s_patch type, const cJSON *patch, cJSON **out,
		   struct myce_error **err)
{
	if (out)
		*out = NULL;
	if (!patch)
		return myce_error_set(err, EINVAL, "PATCH %s: no patch", path);
	switch (type) {
	case MYCE_K8S_PATCH_MERGE:
		return request(c, "PATCH", path, "application/merge-patch+json", patch, out, err);
	case MYCE_K8S_PATCH_STRATEGIC:
		return request(c, "PATCH", path, "application/strategic-merge-patch+json", patch, out, err);
	case MYCE_K8S_PATCH_JSON:
		if (!cJSON_IsArray(patch))
			return myce_error_set(err, EINVAL, "PATCH %s: a JSON patch is an array of operations", path);
		return request(c, "PATCH", path, "application/json-patch+json", patch, out, err);
	case MYCE_K8S_PATCH_APPLY: {
		_cleanup_free_ char *p = NULL;
		if (!strstr(path, "fieldManager="))
			p = xasprintf("%s%sfieldManager=mycedrive", path, strchr(path, '?') ? "&" : "?");
		return request(c, "PATCH", p ? p : path, "application/apply-patch+yaml", patch, out, err);
	}
	}
	return myce_error_set(err, EINVAL, "PATCH %s: unknown patch type %d", path, (int)type);
}

int myce_k8s_delete(struct myce_k8s *c, const char *path, const cJSON *delete_options, cJSON **out,
		    struct myce_error **err)
{
	return request(c, "DELETE", path, delete_options ? "application/json" : NULL, delete_options, out, err);
}

/* ---- errors ------------------------------------------------------------ */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Request Entity Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status >= 500 ? "Server Error" : "Error";
	}
}

int myce_k8s_status_error(int http_status, const cJSON *body, const char *what, struct myce_error **err)
{
	int code;
	const char *reason = myce_json_str(body, "reason");
	switch (http_status) {
	case 404: code = ENOENT; break;
	case 409: code = reason && !strcmp(reason, "AlreadyExists") ? EEXIST : EBUSY; break;
	case 401:
	case 403: code = EACCES; break;
	case 410: code = ESTALE; break;
	case 400:
	case 422: code = EINVAL; break;
	case 429: code = EAGAIN; break;
	default: code = http_status >= 500 ? EAGAIN : EPROTO;
	}
	const char *msg = myce_json_str(body, "message");
	if (what)
		return myce_error_set(err, code, "%s: %d %s: %s", what, http_status, reason_phrase(http_status),
				      msg ? msg : "(no message)");
	return myce_error_set(err, code, "%d %s: %s", http_status, reason_phrase(http_status),
			      msg ? msg : "(no message)");
}

char *myce_k8s_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = xmalloc(3 * n + 1), *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '.' || *p == '_' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}
