#include "checkpoint.h"
#include "util.h"
#include "config.h"

#include <criu.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

static void optsp(criu_opts **o)
{
	if (*o)
		criu_local_free_opts(*o);
}
#define _cleanup_criu_opts_ __attribute__((cleanup(optsp)))

const char *myce_ckpt_binary(void)
{
	const char *env = getenv("MYCE_CRIU");
	return env && *env ? env : MYCE_CRIU_BINARY;
}

/* libcriu's notify callback has no user argument: the restore in progress is
 * the only user of this slot, and an agent restores one tree at a time. */
static void (*notify_post_restore)(void);

static int on_notify(char *action, criu_notify_arg_t na)
{
	if (notify_post_restore && !strcmp(action, "post-restore"))
		notify_post_restore();
	return 0;
}

static criu_opts *opts_new(const char *imgdir, int *dirfd, const char *logname, struct myce_error **err)
{
	criu_opts *o = NULL;
	if (criu_local_init_opts(&o) < 0) {
		myce_error_set(err, ENOMEM, "criu: init options");
		return NULL;
	}
	if (criu_local_set_service_binary(o, myce_ckpt_binary()) < 0) {
		criu_local_free_opts(o);
		myce_error_set(err, ENOMEM, "criu: service binary");
		return NULL;
	}
	if (imgdir) {
		if (myce_mkdir_p(imgdir, 0700) < 0 ||
		    (*dirfd = open(imgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			myce_error_errno(err, "criu: image directory %s", imgdir);
			criu_local_free_opts(o);
			return NULL;
		}
		criu_local_set_images_dir_fd(o, *dirfd);
		criu_local_set_work_dir_fd(o, *dirfd);
	}
	criu_local_set_log_level(o, 2);
	if (logname)
		criu_local_set_log_file(o, logname);
	criu_local_set_tcp_established(o, true);
	criu_local_set_network_lock(o, CRIU_NETWORK_LOCK_NFTABLES);
	criu_local_set_file_locks(o, true);
	criu_local_set_shell_job(o, false);
	return o;
}

static int criu_fail(struct myce_error **err, const char *what, int ret, const char *imgdir, const char *log)
{
	int e = ret < 0 ? -ret : EIO;
	/* The first error line of CRIU's log is the useful part of the story. */
	_cleanup_free_ char *path = xasprintf("%s/%s", imgdir, log);
	_cleanup_free_ char *text = myce_read_file(path, NULL);
	/* CRIU's error lines, without its final "Dumping FAILED" / "Restoring
	 * FAILED" and without the harmless complaint that root here cannot
	 * raise RLIMIT_NOFILE: the rest tells the cause. */
	char line[600] = "";
	size_t used = 0;
	for (const char *p = text; p && (p = strstr(p, "Error (")) && used < sizeof(line) - 100; p++) {
		size_t n = strcspn(p, "\n");
		if (memmem(p, n, "FAILED", 6) || memmem(p, n, "RLIMIT_NOFILE", 13))
			continue;
		used += (size_t)snprintf(line + used, sizeof(line) - used, ": %.*s", (int)(n < 200 ? n : 200), p);
	}
	return myce_error_set(err, e, "criu %s failed (%d)%s; see %s", what, ret, line, path);
}

int myce_ckpt_dump(int pid, const char *imgdir, struct myce_ckpt_result *res, struct myce_error **err)
{
	_cleanup_close_ int dirfd = -1;
	_cleanup_criu_opts_ criu_opts *o = opts_new(imgdir, &dirfd, "dump.log", err);
	if (!o)
		return -1;
	criu_local_set_pid(o, pid);
	criu_local_set_leave_running(o, false);
	/* A connection still in a listen queue (handshake done, not accepted)
	 * cannot be dumped; its client sees it fail and connects again. */
	criu_local_set_tcp_skip_in_flight(o, true);
	memset(res, 0, sizeof(*res));
	res->start_wall_us = myce_wall_us();
	int64_t t0 = myce_now_us();
	int r = criu_local_dump(o);
	res->ms = (double)(myce_now_us() - t0) / 1000.0;
	res->end_wall_us = myce_wall_us();
	if (r < 0)
		return criu_fail(err, "dump", r, imgdir, "dump.log");
	return 0;
}

int myce_ckpt_restore(const char *imgdir, bool tcp_close, void (*post_restore)(void), struct myce_ckpt_result *res,
		      struct myce_error **err)
{
	_cleanup_close_ int dirfd = -1;
	_cleanup_criu_opts_ criu_opts *o = opts_new(imgdir, &dirfd, "restore.log", err);
	if (!o)
		return -1;
	if (tcp_close)
		criu_local_set_tcp_close(o, true);
	notify_post_restore = post_restore;
	criu_local_set_notify_cb(o, on_notify);
	memset(res, 0, sizeof(*res));
	res->start_wall_us = myce_wall_us();
	int64_t t0 = myce_now_us();
	int r = criu_local_restore(o);
	res->ms = (double)(myce_now_us() - t0) / 1000.0;
	res->end_wall_us = myce_wall_us();
	notify_post_restore = NULL;
	if (r <= 0)
		return criu_fail(err, "restore", r, imgdir, "restore.log");
	res->pid = r;
	return 0;
}

int myce_ckpt_check(struct myce_error **err)
{
	_cleanup_criu_opts_ criu_opts *o = opts_new(NULL, NULL, NULL, err);
	if (!o)
		return -1;
	/* criu swrk inherits our stdout and says "Looks good." on it. */
	fflush(stdout);
	int saved = dup(1);
	int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (nul >= 0)
		dup2(nul, 1);
	int r = criu_local_check(o);
	if (saved >= 0) {
		dup2(saved, 1);
		close(saved);
	}
	if (nul >= 0)
		close(nul);
	if (r < 0)
		return myce_error_set(err, -r, "criu check failed (%d) using %s", r, myce_ckpt_binary());
	return 0;
}
