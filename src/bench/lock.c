/* The machine's cluster lock: one embedded cluster at a time, and every user
 * of one (tests, demo, benchmark) holds an exclusive flock on
 * BENCH_LOCK_PATH for as long as its cluster exists. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>

int bench_lock(struct bench *b, struct myce_error **err)
{
	if (b->lock_fd >= 0)
		return 0;
	/* Close-on-exec: the daemons mycectl starts must never hold it. */
	_cleanup_close_ int fd = open(BENCH_LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return myce_error_errno(err, "open %s", BENCH_LOCK_PATH);
	bool said = false;
	/* Non-blocking attempts between waits on the signalfd, so that Ctrl-C
	 * ends the wait; flock(2) itself cannot be given a timeout. */
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return myce_error_errno(err, "flock %s", BENCH_LOCK_PATH);
		if (!said) {
			fprintf(stderr, "myce-bench: waiting for the cluster lock %s (another cluster user)\n",
				BENCH_LOCK_PATH);
			said = true;
		}
		if (!bench_sleep(b, 200))
			return myce_error_set(err, EINTR, "stopped while waiting for the cluster lock");
	}
	b->lock_fd = steal_fd(&fd);
	return 0;
}

void bench_unlock(struct bench *b)
{
	if (b->lock_fd < 0)
		return;
	flock(b->lock_fd, LOCK_UN);
	closep(&b->lock_fd);
}
