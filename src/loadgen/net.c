/* Sockets for the load generator: address parsing, connecting with a
 * timeout, and sending/receiving with a deadline that a stop fd can cut short. */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>

int net_parse_addr(const char *s, struct sockaddr_storage *sa, socklen_t *len,
		   struct myce_error **err)
{
	_cleanup_free_ char *host = NULL;
	const char *port;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':')
			return myce_error_set(err, EINVAL, "bad address '%s': expected [IPv6]:PORT", s);
		host = strndup(s + 1, (size_t)(end - s - 1));
		port = end + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon)
			return myce_error_set(err, EINVAL, "bad address '%s': expected IP:PORT", s);
		host = strndup(s, (size_t)(colon - s));
		port = colon + 1;
	}
	if (!host)
		abort();
	char *endp;
	long p = strtol(port, &endp, 10);
	if (*port == '\0' || *endp != '\0' || p <= 0 || p > 65535)
		return myce_error_set(err, EINVAL, "bad port in address '%s'", s);

	memset(sa, 0, sizeof(*sa));
	struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)p);
		*len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*in6);
	} else {
		return myce_error_set(err, EINVAL, "bad address '%s': '%s' is not a numeric IP", s, host);
	}
	return 0;
}

enum net_wait net_wait(int fd, short events, int64_t until_us, int stop_fd)
{
	for (;;) {
		struct pollfd pfd[2];
		nfds_t n = 0;
		int fd_idx = -1, stop_idx = -1;
		if (fd >= 0) {
			fd_idx = (int)n;
			pfd[n++] = (struct pollfd){.fd = fd, .events = events};
		}
		if (stop_fd >= 0) {
			stop_idx = (int)n;
			pfd[n++] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
		}
		int64_t left = until_us - myce_now_us();
		if (left <= 0)
			return NET_TIMEOUT;
		/* ppoll: poll's milliseconds would make a 1 ms tick drift. */
		if (left > 3600000000LL)
			left = 3600000000LL;
		struct timespec ts = {.tv_sec = left / 1000000, .tv_nsec = (left % 1000000) * 1000};
		int r = ppoll(pfd, n, &ts, NULL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return NET_STOP; /* cannot wait any more: as good as stopping */
		}
		if (stop_idx >= 0 && pfd[stop_idx].revents)
			return NET_STOP;
		if (fd_idx >= 0 && pfd[fd_idx].revents)
			return NET_READY;
		/* Timed out: loop, returning once until_us has really passed. */
	}
}

int net_connect(const struct sockaddr_storage *sa, socklen_t len, int64_t timeout_us, int stop_fd,
		struct myce_error **err)
{
	_cleanup_close_ int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return myce_error_errno(err, "socket");
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return myce_error_errno(err, "setsockopt TCP_NODELAY");
	if (connect(fd, (const struct sockaddr *)sa, len) < 0) {
		if (errno != EINPROGRESS)
			return myce_error_errno(err, "connect");
		switch (net_wait(fd, POLLOUT, myce_now_us() + timeout_us, stop_fd)) {
		case NET_TIMEOUT:
			return myce_error_set(err, ETIMEDOUT, "connect: timed out");
		case NET_STOP:
			return myce_error_set(err, EINTR, "connect: stopped");
		case NET_READY:
			break;
		}
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return myce_error_errno(err, "getsockopt SO_ERROR");
		if (soerr) {
			errno = soerr;
			return myce_error_errno(err, "connect");
		}
	}
	return steal_fd(&fd);
}

void net_buf_append(struct net_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void net_buf_printf(struct net_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *s = xvasprintf(fmt, ap);
	va_end(ap);
	net_buf_append(b, s, strlen(s));
}

void net_buf_consume(struct net_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->data, b->data + n, b->len - n);
		b->len -= n;
	}
	if (b->data)
		b->data[b->len] = '\0';
}

void net_buf_free(struct net_buf *b)
{
	free(b->data);
	*b = (struct net_buf){0};
}

int net_send_all(int fd, const void *buf, size_t len, int64_t until_us, int stop_fd)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n >= 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		switch (net_wait(fd, POLLOUT, until_us, stop_fd)) {
		case NET_TIMEOUT:
			return -ETIMEDOUT;
		case NET_STOP:
			return -EINTR;
		case NET_READY:
			break;
		}
	}
	return 0;
}

int net_recv_some(int fd, struct net_buf *b, int64_t until_us, int stop_fd)
{
	for (;;) {
		switch (net_wait(fd, POLLIN, until_us, stop_fd)) {
		case NET_TIMEOUT:
			return -ETIMEDOUT;
		case NET_STOP:
			return -EINTR;
		case NET_READY:
			break;
		}
		char tmp[16384];
		ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
		if (n > 0) {
			net_buf_append(b, tmp, (size_t)n);
			return (int)n;
		}
		if (n == 0)
			return -EPIPE;
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
	}
}
