/* myce-loadgen, the paper's sensor workload, as a child: started once the
 * state is loaded, ready when its ready file appears, stopped with SIGINT,
 * after which it verifies what it wrote and prints its JSON report. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

/* How long the first reply may take. */
#define READY_TIMEOUT_MS 20000
/* How often the ready file is looked for. */
#define READY_POLL_MS 10
/* How long the read-back after SIGINT may take. */
#define REPORT_TIMEOUT_MS 120000

static char *tail_of(const char *path)
{
	_cleanup_free_ char *s = myce_read_file(path, NULL);
	if (!s || !*s)
		return xstrdup("no message");
	size_t n = strlen(s);
	while (n && s[n - 1] == '\n')
		s[--n] = '\0';
	char *l = strrchr(s, '\n');
	return xstrdup(l ? l + 1 : s);
}

int loadgen_start(struct bench *b, const char *mode, const char *addr, const char *dir, struct bench_loadgen *lg,
		  struct myce_error **err)
{
	*lg = (struct bench_loadgen){.proc = {.pid = -1, .pidfd = -1}};
	lg->ready_path = xasprintf("%s/loadgen.ready", dir);
	lg->out_path = xasprintf("%s/loadgen.json", dir);
	lg->err_path = xasprintf("%s/loadgen.err", dir);
	unlink(lg->ready_path);
	_cleanup_close_ int ofd = open(lg->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	_cleanup_close_ int efd = open(lg->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (ofd < 0 || efd < 0)
		return myce_error_errno(err, "create %s", lg->out_path);
	char *argv[] = {b->loadgen, (char *)mode, "--addr", (char *)addr, "-o", "json", "--ready-file",
			lg->ready_path, NULL};
	if (proc_spawn(argv, ofd, efd, &lg->proc, err) < 0)
		return myce_error_wrap(err, "myce-loadgen");
	for (int64_t end = myce_now_us() + READY_TIMEOUT_MS * 1000LL; access(lg->ready_path, F_OK) != 0;) {
		if (myce_now_us() > end)
			return myce_error_set(err, ETIMEDOUT, "myce-loadgen: no reply from %s within %d s", addr,
					      READY_TIMEOUT_MS / 1000);
		/* Waiting on the process doubles as the pause between looks. */
		int r = proc_wait(b, &lg->proc, READY_POLL_MS, true);
		if (r == -EINTR)
			return myce_error_set(err, EINTR, "stopped");
		if (r == 0) {
			_cleanup_free_ char *why = tail_of(lg->err_path);
			return myce_error_set(err, EIO, "myce-loadgen exited (%d): %s", proc_exit_code(&lg->proc), why);
		}
	}
	return 0;
}

int loadgen_stop(struct bench *b, struct bench_loadgen *lg, cJSON **report, struct myce_error **err)
{
	*report = NULL;
	proc_kill(&lg->proc, SIGINT);
	if (proc_wait(b, &lg->proc, REPORT_TIMEOUT_MS, false) < 0)
		return myce_error_set(err, ETIMEDOUT, "myce-loadgen: no report within %d s of SIGINT",
				      REPORT_TIMEOUT_MS / 1000);
	_cleanup_free_ char *text = myce_read_file(lg->out_path, NULL);
	*report = text ? cJSON_Parse(text) : NULL;
	if (!*report) {
		_cleanup_free_ char *why = tail_of(lg->err_path);
		return myce_error_set(err, EIO, "myce-loadgen printed no report (exit %d): %s",
				      proc_exit_code(&lg->proc), why);
	}
	return 0;
}

void loadgen_free(struct bench_loadgen *lg)
{
	if (lg->proc.pid > 0 && !lg->proc.reaped) {
		proc_kill(&lg->proc, SIGKILL);
		waitpid(lg->proc.pid, NULL, 0);
		lg->proc.reaped = true;
	}
	proc_release(&lg->proc);
	free(lg->ready_path);
	free(lg->out_path);
	free(lg->err_path);
	*lg = (struct bench_loadgen){.proc = {.pid = -1, .pidfd = -1}};
}
