#include "netns.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NETNS_DIR "/run/netns"

static char *netns_path(const char *name)
{
	return xasprintf(NETNS_DIR "/%s", name);
}

bool myce_netns_exists(const char *name)
{
	_cleanup_free_ char *p = netns_path(name);
	return access(p, F_OK) == 0;
}

/* Makes /run/netns a shared mount point of its own, as iproute2 does, so the
 * bind mounts below are seen by every mount namespace that shares it. */
static int netns_dir_prepare(struct myce_error **err)
{
	if (myce_mkdir_p(NETNS_DIR, 0755) < 0)
		return myce_error_errno(err, "mkdir %s", NETNS_DIR);
	if (mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL)
		return myce_error_errno(err, "make %s shared", NETNS_DIR);
	if (mount(NETNS_DIR, NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
		return myce_error_errno(err, "bind %s", NETNS_DIR);
	if (mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) < 0)
		return myce_error_errno(err, "make %s shared", NETNS_DIR);
	return 0;
}

int myce_netns_create(const char *name, struct myce_error **err)
{
	if (netns_dir_prepare(err) < 0)
		return -1;
	_cleanup_free_ char *path = netns_path(name);
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0)
		return myce_error_errno(err, "create netns %s", name);
	close(fd);

	/* A child unshares its network namespace and we bind it to the file:
	 * the creating process's own namespaces stay untouched. */
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		unlink(path);
		return myce_error_errno(err, "pipe");
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		unlink(path);
		return myce_error_errno(err, "fork");
	}
	if (pid == 0) {
		close(pipefd[0]);
		char ok = unshare(CLONE_NEWNET) == 0 ? 1 : 0;
		if (ok && mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0)
			ok = 0;
		int e = errno;
		(void)!write(pipefd[1], &ok, 1);
		(void)!write(pipefd[1], &e, sizeof(e));
		_exit(ok ? 0 : 1);
	}
	close(pipefd[1]);
	char ok = 0;
	int e = EIO;
	(void)!read(pipefd[0], &ok, 1);
	(void)!read(pipefd[0], &e, sizeof(e));
	close(pipefd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!ok) {
		unlink(path);
		errno = e;
		return myce_error_errno(err, "unshare/bind netns %s", name);
	}
	return 0;
}

int myce_netns_delete(const char *name, struct myce_error **err)
{
	_cleanup_free_ char *path = netns_path(name);
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return myce_error_errno(err, "umount netns %s", name);
	if (unlink(path) < 0 && errno != ENOENT)
		return myce_error_errno(err, "remove netns %s", name);
	return 0;
}

int myce_netns_open(const char *name, struct myce_error **err)
{
	_cleanup_free_ char *path = netns_path(name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return myce_error_errno(err, "open netns %s", name);
	return fd;
}

struct netns_call {
	int nsfd;
	myce_netns_fn fn;
	void *arg;
	struct myce_error *err;
	int ret;
};

static void *netns_thread(void *p)
{
	struct netns_call *c = p;
	if (setns(c->nsfd, CLONE_NEWNET) < 0) {
		c->ret = myce_error_errno(&c->err, "setns");
		return NULL;
	}
	c->ret = c->fn(c->arg, &c->err);
	return NULL;
}

int myce_netns_run(int nsfd, myce_netns_fn fn, void *arg, struct myce_error **err)
{
	struct netns_call c = {.nsfd = nsfd, .fn = fn, .arg = arg};
	pthread_t t;
	int r = pthread_create(&t, NULL, netns_thread, &c);
	if (r != 0) {
		errno = r;
		return myce_error_errno(err, "pthread_create");
	}
	pthread_join(t, NULL);
	if (c.ret < 0) {
		if (err) {
			myce_error_free(*err);
			*err = c.err;
		} else {
			myce_error_free(c.err);
		}
	}
	return c.ret;
}
