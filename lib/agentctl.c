#include "agentctl.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

static int fill_addr(struct sockaddr_un *sa, const char *path, struct myce_error **err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return myce_error_set(err, ENAMETOOLONG, "socket path %s too long", path);
	strcpy(sa->sun_path, path);
	return 0;
}

int myce_agentctl_send(int fd, const cJSON *msg, struct myce_error **err)
{
	_cleanup_free_ char *s = cJSON_PrintUnformatted(msg);
	size_t n = strlen(s);
	if (n > MYCE_AGENTCTL_MAX)
		return myce_error_set(err, EMSGSIZE, "agent message too large");
	ssize_t w;
	do
		w = send(fd, s, n, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return myce_error_errno(err, "agent control send");
	return 0;
}

int myce_agentctl_recv(int fd, cJSON **msg, struct myce_error **err)
{
	_cleanup_free_ char *buf = xmalloc(MYCE_AGENTCTL_MAX + 1);
	ssize_t n;
	do
		n = recv(fd, buf, MYCE_AGENTCTL_MAX, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return myce_error_errno(err, "agent control receive");
	if (n == 0)
		return myce_error_set(err, EPIPE, "agent control: peer closed the channel");
	buf[n] = '\0';
	*msg = cJSON_Parse(buf);
	if (!*msg)
		return myce_error_set(err, EPROTO, "agent control: malformed message");
	return 0;
}

int myce_agentctl_call(const char *sock_path, const cJSON *req, long timeout_ms, cJSON **resp,
		       struct myce_error **err)
{
	struct sockaddr_un sa;
	if (fill_addr(&sa, sock_path, err) < 0)
		return -1;
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return myce_error_errno(err, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return myce_error_errno(err, "connect to agent %s", sock_path);
	if (myce_agentctl_send(fd, req, err) < 0)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	do
		r = poll(&p, 1, (int)timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return myce_error_set(err, ETIMEDOUT, "agent did not answer within %ld ms", timeout_ms);
	if (r < 0)
		return myce_error_errno(err, "poll agent");
	return myce_agentctl_recv(fd, resp, err);
}

int myce_agentctl_listen(const char *path, struct myce_error **err)
{
	struct sockaddr_un sa;
	if (fill_addr(&sa, path, err) < 0)
		return -1;
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return myce_error_errno(err, "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return myce_error_errno(err, "listen on %s", path);
	}
	return fd;
}
