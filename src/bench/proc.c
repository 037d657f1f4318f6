/* Child processes: mycectl and myce-loadgen, each in its own process group
 * so that a Ctrl-C on the terminal reaches only myce-bench, which then stops
 * them in order and tears the cluster down.  Waits are on a pidfd, together
 * with the signalfd, never on a timer. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int proc_spawn(char *const argv[], int out_fd, int err_fd, struct bench_proc *p, struct myce_error **err)
{
	*p = (struct bench_proc){.pid = -1, .pidfd = -1};
	pid_t pid = fork();
	if (pid < 0)
		return myce_error_errno(err, "fork");
	if (pid == 0) {
		/* Only async-signal-safe calls: the sampler thread may be running. */
		setpgid(0, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(out_fd >= 0 ? out_fd : nul, 1);
		dup2(err_fd >= 0 ? err_fd : nul, 2);
		close_range(3, ~0U, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	/* Also from here, so that the group exists before we signal it. */
	setpgid(pid, pid);
	p->pid = pid;
	p->pidfd = pidfd_open(pid);
	if (p->pidfd < 0) {
		int e = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		errno = e;
		return myce_error_errno(err, "pidfd_open");
	}
	return 0;
}

int proc_wait(struct bench *b, struct bench_proc *p, int timeout_ms, bool interruptible)
{
	if (p->reaped)
		return 0;
	int64_t end = myce_now_us() + (int64_t)timeout_ms * 1000;
	for (;;) {
		if (interruptible && bench_stop_requested(b))
			return -EINTR;
		int64_t left = (end - myce_now_us()) / 1000;
		if (timeout_ms >= 0 && left <= 0)
			return -ETIMEDOUT;
		struct pollfd fds[2] = {{.fd = p->pidfd, .events = POLLIN}, {.fd = b->sig_fd, .events = POLLIN}};
		int r = poll(fds, interruptible ? 2 : 1, timeout_ms < 0 ? -1 : (int)left + 1);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && fds[0].revents) {
			if (waitpid(p->pid, &p->status, 0) == p->pid)
				p->reaped = true;
			proc_release(p);
			return 0;
		}
	}
}

void proc_kill(struct bench_proc *p, int sig)
{
	if (p->pid > 0 && !p->reaped)
		kill(p->pid, sig);
}

void proc_release(struct bench_proc *p)
{
	closep(&p->pidfd);
}

int proc_exit_code(const struct bench_proc *p)
{
	return p->reaped && WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

static char *read_memfd(int fd)
{
	off_t n = lseek(fd, 0, SEEK_END);
	if (n < 0)
		n = 0;
	char *s = xmalloc((size_t)n + 1);
	ssize_t got = pread(fd, s, (size_t)n, 0);
	s[got > 0 ? got : 0] = '\0';
	return s;
}

/* Ends a child that overstayed: SIGTERM, then SIGKILL after a grace period. */
static void proc_end(struct bench *b, struct bench_proc *p)
{
	proc_kill(p, SIGTERM);
	if (proc_wait(b, p, 5000, false) < 0) {
		proc_kill(p, SIGKILL);
		proc_wait(b, p, -1, false);
	}
}

int proc_run(struct bench *b, char *const argv[], int timeout_ms, bool interruptible, char **out, char **errout,
	     struct myce_error **err)
{
	_cleanup_close_ int ofd = memfd_create("stdout", MFD_CLOEXEC);
	_cleanup_close_ int efd = memfd_create("stderr", MFD_CLOEXEC);
	if (ofd < 0 || efd < 0)
		return myce_error_errno(err, "memfd_create");
	struct bench_proc p;
	if (proc_spawn(argv, ofd, efd, &p, err) < 0)
		return myce_error_wrap(err, "%s", argv[0]);
	int r = proc_wait(b, &p, timeout_ms, interruptible);
	if (r < 0)
		proc_end(b, &p);
	if (out)
		*out = read_memfd(ofd);
	if (errout)
		*errout = read_memfd(efd);
	if (r == -ETIMEDOUT)
		return myce_error_set(err, ETIMEDOUT, "%s %s: no answer within %d s", argv[0], argv[1] ? argv[1] : "",
				      timeout_ms / 1000);
	if (r == -EINTR)
		return myce_error_set(err, EINTR, "%s: stopped", argv[0]);
	if (r < 0)
		return myce_error_set(err, -r, "waiting for %s: %s", argv[0], strerror(-r));
	return proc_exit_code(&p);
}
