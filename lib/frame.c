#include "frame.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

int myce_frame_send(int fd, const cJSON *msg, struct myce_error **err)
{
	_cleanup_free_ char *s = cJSON_PrintUnformatted(msg);
	size_t n = strlen(s);
	if (n > MYCE_FRAME_MAX)
		return myce_error_set(err, EMSGSIZE, "frame too large");
	_cleanup_free_ char *buf = xmalloc(n + 4);
	uint32_t be = htonl((uint32_t)n);
	memcpy(buf, &be, 4);
	memcpy(buf + 4, s, n);
	int r = myce_write_full(fd, buf, n + 4);
	if (r < 0) {
		errno = -r;
		return myce_error_errno(err, "send message");
	}
	return 0;
}

int myce_frame_recv(int fd, long timeout_ms, cJSON **msg, struct myce_error **err)
{
	*msg = NULL;
	if (timeout_ms >= 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r;
		do
			r = poll(&p, 1, (int)timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0)
			return myce_error_set(err, ETIMEDOUT, "no answer from peer within %ld ms", timeout_ms);
		if (r < 0)
			return myce_error_errno(err, "poll");
	}
	uint32_t be;
	int r = myce_read_full(fd, &be, 4);
	if (r < 0)
		return myce_error_set(err, -r, "receive message: %s", r == -EPIPE ? "peer closed the connection" : strerror(-r));
	uint32_t n = ntohl(be);
	if (n > MYCE_FRAME_MAX)
		return myce_error_set(err, EMSGSIZE, "message of %u bytes exceeds limit", n);
	_cleanup_free_ char *buf = xmalloc(n + 1);
	r = myce_read_full(fd, buf, n);
	if (r < 0)
		return myce_error_set(err, -r, "receive message body: %s", strerror(-r));
	buf[n] = '\0';
	*msg = cJSON_Parse(buf);
	if (!*msg)
		return myce_error_set(err, EPROTO, "malformed message from peer");
	return 0;
}

static int fill(struct sockaddr_in *sa, const char *ip, int port, struct myce_error **err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1)
		return myce_error_set(err, EINVAL, "bad IPv4 address %s", ip);
	return 0;
}

int myce_tcp_connect(const char *ip, int port, long timeout_ms, struct myce_error **err)
{
	struct sockaddr_in sa;
	if (fill(&sa, ip, port, err) < 0)
		return -1;
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return myce_error_errno(err, "socket");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		return myce_error_errno(err, "connect %s:%d", ip, port);
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int r;
	do
		r = poll(&p, 1, (int)timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return myce_error_set(err, ETIMEDOUT, "connect %s:%d: timed out", ip, port);
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	if (soerr) {
		errno = soerr;
		return myce_error_errno(err, "connect %s:%d", ip, port);
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return steal_fd(&fd);
}

int myce_tcp_listen(const char *ip, int port, struct myce_error **err)
{
	struct sockaddr_in sa;
	if (fill(&sa, ip, port, err) < 0)
		return -1;
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return myce_error_errno(err, "socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
		return myce_error_errno(err, "listen %s:%d", ip, port);
	return steal_fd(&fd);
}
