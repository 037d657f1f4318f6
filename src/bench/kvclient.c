/* Just enough of the Redis protocol (RESP) and of memcached's text protocol
 * to load state and read a counter: blocking sockets with timeouts. */
#include "bench.h"

#include "frame.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

int kvc_connect(struct kvc *c, const char *ip, int port, int timeout_ms, struct myce_error **err)
{
	c->off = c->len = 0;
	c->fd = myce_tcp_connect(ip, port, timeout_ms, err);
	if (c->fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return 0;
}

void kvc_close(struct kvc *c)
{
	closep(&c->fd);
}

int kvc_send(struct kvc *c, const void *data, size_t n, struct myce_error **err)
{
	int r = myce_write_full(c->fd, data, n);
	if (r < 0) {
		errno = -r;
		return myce_error_errno(err, "send");
	}
	return 0;
}

int kvc_line(struct kvc *c, char **line, struct myce_error **err)
{
	for (;;) {
		char *nl = memmem(c->buf + c->off, c->len - c->off, "\r\n", 2);
		if (nl) {
			size_t n = (size_t)(nl - (c->buf + c->off));
			*line = xmalloc(n + 1);
			memcpy(*line, c->buf + c->off, n);
			(*line)[n] = '\0';
			c->off += n + 2;
			return 0;
		}
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (c->len == sizeof(c->buf))
			return myce_error_set(err, EPROTO, "reply line longer than %zu bytes", sizeof(c->buf));
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r == 0)
			return myce_error_set(err, EPIPE, "connection closed by the server");
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return myce_error_errno(err, "receive");
		c->len += (size_t)r;
	}
}

int resp_command(struct kvc *c, char **reply, struct myce_error **err, int argc, ...)
{
	_cleanup_free_ char *req = xasprintf("*%d\r\n", argc);
	va_list ap;
	va_start(ap, argc);
	for (int i = 0; i < argc; i++) {
		const char *a = va_arg(ap, const char *);
		char *n = xasprintf("%s$%zu\r\n%s\r\n", req, strlen(a), a);
		free(req);
		req = n;
	}
	va_end(ap);
	if (kvc_send(c, req, strlen(req), err) < 0 || kvc_line(c, reply, err) < 0)
		return myce_error_wrap(err, "redis");
	if (**reply == '-')
		return myce_error_set(err, EIO, "redis: %s", *reply + 1);
	return 0;
}

/* Requests per pipelined batch. */
#define MC_BATCH 64

int mc_set_range(struct kvc *c, const char *prefix, uint64_t first, uint64_t n, size_t size, struct myce_error **err)
{
	_cleanup_free_ char *val = xmalloc(size + 2);
	for (uint64_t i = first; i < first + n;) {
		uint64_t batch = first + n - i < MC_BATCH ? first + n - i : MC_BATCH;
		for (uint64_t k = i; k < i + batch; k++) {
			char head[128];
			int hl = snprintf(head, sizeof(head), "set %s:%llu 0 0 %zu\r\n", prefix, (unsigned long long)k,
					  size);
			bench_payload(k, val, size);
			memcpy(val + size, "\r\n", 2);
			if (kvc_send(c, head, (size_t)hl, err) < 0 || kvc_send(c, val, size + 2, err) < 0)
				return myce_error_wrap(err, "memcached set");
		}
		for (uint64_t k = 0; k < batch; k++) {
			_cleanup_free_ char *line = NULL;
			if (kvc_line(c, &line, err) < 0)
				return myce_error_wrap(err, "memcached set");
			if (strcmp(line, "STORED") != 0)
				return myce_error_set(err, EIO, "memcached set: %s", line);
		}
		i += batch;
	}
	return 0;
}

int mc_stat(struct kvc *c, const char *name, long long *value, struct myce_error **err)
{
	if (kvc_send(c, "stats\r\n", 7, err) < 0)
		return myce_error_wrap(err, "memcached stats");
	bool found = false;
	for (;;) {
		_cleanup_free_ char *line = NULL;
		if (kvc_line(c, &line, err) < 0)
			return myce_error_wrap(err, "memcached stats");
		if (!strcmp(line, "END"))
			break;
		char key[64];
		long long v;
		if (sscanf(line, "STAT %63s %lld", key, &v) == 2 && !strcmp(key, name)) {
			*value = v;
			found = true;
		}
	}
	return found ? 0 : myce_error_set(err, ENOENT, "memcached stats: no %s", name);
}
