/* A small HTTP/1.1 client over plain sockets (see httpc.h). */
#include "httpc.h"

#include "frame.h"
#include "http.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define HEAD_MAX (64 * 1024)

struct url {
	char host[64];
	int port;
	const char *path;
};

static int url_parse(const char *s, struct url *u, struct myce_error **err)
{
	if (strncmp(s, "http://", 7) != 0)
		return myce_error_set(err, EINVAL, "%s: only http:// URLs are supported here", s);
	const char *h = s + 7, *slash = strchr(h, '/'), *end = slash ? slash : h + strlen(h);
	const char *colon = memchr(h, ':', (size_t)(end - h));
	const char *hend = colon ? colon : end;
	if (hend == h || (size_t)(hend - h) >= sizeof(u->host))
		return myce_error_set(err, EINVAL, "%s: bad host", s);
	memcpy(u->host, h, (size_t)(hend - h));
	u->host[hend - h] = '\0';
	u->port = 80;
	if (colon) {
		char *pe;
		long p = strtol(colon + 1, &pe, 10);
		if (pe != end || p < 1 || p > 65535)
			return myce_error_set(err, EINVAL, "%s: bad port", s);
		u->port = (int)p;
	}
	u->path = slash ? slash : "/";
	return 0;
}

/* Milliseconds left until deadline (monotonic us), at least 0. */
static int left_ms(int64_t deadline)
{
	int64_t l = (deadline - myce_now_us()) / 1000;
	return l < 0 ? 0 : l > 3600000 ? 3600000 : (int)l;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = ev};
	for (;;) {
		int r = poll(&p, 1, left_ms(deadline));
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		int r = wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return r;
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		}
	}
	return 0;
}

/* The value of header name in the header block (NUL-terminated), or NULL. */
static const char *header(const char *head, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
		const char *k = l + 2;
		if (!strncasecmp(k, name, nl) && k[nl] == ':') {
			const char *v = k + nl + 1;
			v += strspn(v, " \t");
			const char *e = strstr(v, "\r\n");
			*vlen = e ? (size_t)(e - v) : strlen(v);
			return v;
		}
	}
	return NULL;
}

/* Decodes a chunked body in place; the decoded length, or -1. */
static long dechunk(char *b, size_t n)
{
	size_t in = 0, out = 0;
	for (;;) {
		char *e;
		errno = 0;
		unsigned long sz = strtoul(b + in, &e, 16);
		char *crlf = strstr(b + in, "\r\n");
		if (errno || e == b + in || !crlf || (size_t)(crlf - b) >= n)
			return -1;
		in = (size_t)(crlf - b) + 2;
		if (sz == 0)
			return (long)out;
		if (sz > n - in || n - in - sz < 2)
			return -1;
		memmove(b + out, b + in, sz);
		out += sz;
		in += sz + 2;
	}
}

int myce_httpc_call(const char *method, const char *url, const char *token, const cJSON *body, long timeout_ms,
		    cJSON **out, struct myce_error **err)
{
	if (out)
		*out = NULL;
	struct url u;
	if (url_parse(url, &u, err) < 0)
		return -EINVAL;
	int64_t deadline = myce_now_us() + (int64_t)timeout_ms * 1000;
	_cleanup_error_ struct myce_error *ce = NULL;
	_cleanup_close_ int fd = myce_tcp_connect(u.host, u.port, timeout_ms < 5000 ? timeout_ms : 5000, &ce);
	if (fd < 0)
		return myce_error_set(err, ce && ce->code == ETIMEDOUT ? ETIMEDOUT : ECONNREFUSED, "%s %s: %s", method,
				      url, myce_error_msg(ce));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

	_cleanup_free_ char *payload = body ? cJSON_PrintUnformatted(body) : NULL;
	_cleanup_free_ char *auth = token ? xasprintf("Authorization: Bearer %s\r\n", token) : xstrdup("");
	bool with_len = payload || strcmp(method, "GET") != 0;
	_cleanup_free_ char *len = with_len ? xasprintf("Content-Length: %zu\r\n", payload ? strlen(payload) : 0)
					    : xstrdup("");
	_cleanup_free_ char *req = xasprintf("%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s"
					     "Accept: application/json\r\nContent-Type: application/json\r\n%s\r\n%s",
					     method, u.path, u.host, u.port, auth, len, payload ? payload : "");
	int r = send_all(fd, req, strlen(req), deadline);
	if (r < 0)
		return myce_error_set(err, -r, "%s %s: send: %s", method, url,
				      r == -ETIMEDOUT ? "timed out" : strerror(-r));

	/* Read until the body is complete (Content-Length) or the server closes. */
	size_t cap = 4096, n = 0, body_at = 0;
	long want = -1;
	bool chunked = false;
	_cleanup_free_ char *b = xmalloc(cap + 1);
	for (;;) {
		if (body_at && want >= 0 && n - body_at >= (size_t)want)
			break;
		if (n == cap) {
			if (cap >= HEAD_MAX + MYCE_HTTPC_MAX_BODY)
				return myce_error_set(err, EMSGSIZE, "%s %s: reply larger than %d bytes", method, url,
						      MYCE_HTTPC_MAX_BODY);
			cap *= 2;
			b = xrealloc(b, cap + 1);
		}
		r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			return myce_error_set(err, -r, "%s %s: %s", method, url,
					      r == -ETIMEDOUT ? "timed out waiting for the reply" : strerror(-r));
		ssize_t got = recv(fd, b + n, cap - n, MSG_DONTWAIT);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0)
			return myce_error_errno(err, "%s %s: receive", method, url);
		if (got == 0)
			break;
		n += (size_t)got;
		b[n] = '\0';
		if (!body_at) {
			char *he = strstr(b, "\r\n\r\n");
			if (!he && n > HEAD_MAX)
				return myce_error_set(err, EPROTO, "%s %s: reply headers too long", method, url);
			if (he) {
				body_at = (size_t)(he - b) + 4;
				he[2] = '\0'; /* the header block, for header() */
				size_t vl;
				const char *v = header(b, "Content-Length", &vl);
				if (v) {
					char *e;
					want = strtol(v, &e, 10);
					if (e == v || want < 0 || want > MYCE_HTTPC_MAX_BODY)
						return myce_error_set(err, EPROTO, "%s %s: bad Content-Length", method, url);
				}
				v = header(b, "Transfer-Encoding", &vl);
				chunked = v && vl >= 7 && !strncasecmp(v, "chunked", 7);
				if (chunked)
					want = -1;
				if (!strncmp(b, "HTTP/1.1 204", 12) || !strncmp(b, "HTTP/1.0 204", 12))
					want = 0;
			}
		}
	}
	b[n] = '\0';
	int status = 0;
	if (!body_at || sscanf(b, "HTTP/1.%*[01] %3d", &status) != 1 || status < 100 || status > 599)
		return myce_error_set(err, EPROTO, "%s %s: the reply is not HTTP/1.x", method, url);
	char *rb = b + body_at;
	size_t rn = n - body_at;
	if (want >= 0 && rn < (size_t)want)
		return myce_error_set(err, EPROTO, "%s %s: reply cut short (%zu of %ld bytes)", method, url, rn, want);
	if (want >= 0)
		rn = (size_t)want;
	if (chunked) {
		long d = dechunk(rb, rn);
		if (d < 0)
			return myce_error_set(err, EPROTO, "%s %s: bad chunked encoding", method, url);
		rn = (size_t)d;
	}
	rb[rn] = '\0';
	cJSON *j = rn ? cJSON_ParseWithLength(rb, rn) : NULL;
	if (status < 200 || status >= 300) {
		const char *m = myce_json_str(j, "error");
		myce_error_set(err, EPROTO, "%s", m ? m : "request failed");
		if (err && *err)
			(*err)->code = status;
	}
	if (out)
		*out = j;
	else if (j)
		cJSON_Delete(j);
	return status;
}
