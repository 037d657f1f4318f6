/* mycectl, run as a child: the cluster (under the machine's cluster lock)
 * and the JSON commands. */
#include "bench.h"

#include "cluster.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#define CLUSTER_JSON MYCE_RUN_DIR "/cluster.json"

/* The last line of a command's stderr, without "mycectl: " (for reasons). */
static char *last_line(const char *s)
{
	_cleanup_free_ char *t = xstrdup(s ? s : "");
	size_t n = strlen(t);
	while (n && (t[n - 1] == '\n' || t[n - 1] == ' '))
		t[--n] = '\0';
	char *l = strrchr(t, '\n');
	l = l ? l + 1 : t;
	if (!strncmp(l, "mycectl: ", 9))
		l += 9;
	return xstrdup(*l ? l : "no message");
}

int ctl_json(struct bench *b, const struct strv *args, int timeout_ms, bool interruptible, cJSON **out,
	     struct myce_error **err)
{
	struct strv argv = {0};
	strv_push(&argv, b->ctl);
	strv_push(&argv, "-o");
	strv_push(&argv, "json");
	for (size_t i = 0; i < args->n; i++)
		strv_push(&argv, args->v[i]);
	_cleanup_free_ char **av = strv_argv(&argv);
	_cleanup_free_ char *o = NULL, *e = NULL;
	int st = proc_run(b, av, timeout_ms, interruptible, &o, &e, err);
	strv_clear(&argv);
	if (st < 0)
		return st;
	*out = NULL;
	if (o && *o)
		*out = cJSON_Parse(o);
	if (st != 0 && !*out) {
		_cleanup_free_ char *why = last_line(e);
		return myce_error_set(err, EIO, "mycectl %s: %s", args->v[0], why);
	}
	if (st == 0 && o && *o && !*out)
		return myce_error_set(err, EPROTO, "mycectl %s: output is not JSON", args->v[0]);
	return st;
}

/* mycectl ARGS... with the output thrown away; the exit status. */
static int ctl_plain(struct bench *b, int timeout_ms, char **errout, ...)
{
	struct strv argv = {0};
	strv_push(&argv, b->ctl);
	va_list ap;
	va_start(ap, errout);
	for (const char *a; (a = va_arg(ap, const char *));)
		strv_push(&argv, a);
	va_end(ap);
	_cleanup_free_ char **av = strv_argv(&argv);
	int st = proc_run(b, av, timeout_ms, false, NULL, errout, NULL);
	strv_clear(&argv);
	return st;
}

/* What cluster.json says about the delay: a "delay_emulation" string when
 * the cluster records how, else whether it was emulated at all. */
static char *read_delay_emulation(double *rate_out)
{
	_cleanup_free_ char *text = myce_read_file(CLUSTER_JSON, NULL);
	_cleanup_json_ cJSON *st = text ? cJSON_Parse(text) : NULL;
	*rate_out = myce_json_num(st, "rate_mbit", -1);
	if (!st)
		return xstrdup("unknown");
	const char *how = myce_json_str(st, "delay_emulation");
	if (how)
		return xstrdup(how);
	if (myce_json_num(st, "delay_ms", 0) <= 0)
		return xstrdup("none");
	return xstrdup(myce_json_bool(st, "delay_emulated", false) ? "emulated" : "not-emulated");
}

int ctl_cluster_up(struct bench *b, double rate_mbit, struct myce_error **err)
{
	if (bench_lock(b, err) < 0)
		return -1;
	/* We hold the lock: whatever cluster exists is stale (and `cluster up`
	 * would keep a healthy stale one, with its own rate). */
	ctl_plain(b, 120000, NULL, "cluster", "down", NULL);
	b->cluster_up = true;
	_cleanup_free_ char *rate = xasprintf("%g", rate_mbit);
	_cleanup_free_ char *delay = xasprintf("%d", b->opt.delay_ms);
	_cleanup_free_ char *e = NULL;
	int st = ctl_plain(b, 180000, &e, "cluster", "up", "--nodes", "2", "--rate", rate, "--delay", delay, NULL);
	if (st != 0) {
		_cleanup_free_ char *why = last_line(e);
		ctl_cluster_down(b);
		return myce_error_set(err, EIO, "cluster up --rate %s: %s", rate, st < 0 ? "did not finish" : why);
	}
	double got = -1;
	free(b->delay_emulation);
	b->delay_emulation = read_delay_emulation(&got);
	if (got != rate_mbit) {
		ctl_cluster_down(b);
		return myce_error_set(err, EIO, "cluster.json says %g Mbit/s, asked for %g", got, rate_mbit);
	}
	return 0;
}

static void copy_logs(const char *dir, const char *out, const char *prefix);

void ctl_cluster_down(struct bench *b)
{
	if (b->cluster_up) {
		if (b->logs_dir && myce_mkdir_p(b->logs_dir, 0755) == 0)
			copy_logs(MYCE_RUN_DIR "/logs", b->logs_dir, "");
		_cleanup_free_ char *e = NULL;
		if (ctl_plain(b, 180000, &e, "cluster", "down", NULL) != 0)
			fprintf(stderr, "myce-bench: cluster down failed: %s", e ? e : "\n");
		b->cluster_up = false;
	}
	bench_unlock(b);
}

static void copy_file(const char *from, const char *to)
{
	size_t n = 0;
	_cleanup_free_ char *s = myce_read_file(from, &n);
	if (s)
		myce_write_file_atomic(to, s, n, 0644);
}

/* Copies every *.log in dir (non-recursive) to out/<prefix><name>. */
static void copy_logs(const char *dir, const char *out, const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 4, ".log"))
			continue;
		_cleanup_free_ char *from = xasprintf("%s/%s", dir, de->d_name);
		_cleanup_free_ char *to = xasprintf("%s/%s%s", out, prefix, de->d_name);
		copy_file(from, to);
	}
	closedir(d);
}

void ctl_save_logs(const char *dir, long src_pod, long dst_pod)
{
	_cleanup_free_ char *out = xasprintf("%s/cluster-logs", dir);
	if (myce_mkdir_p(out, 0755) < 0)
		return;
	copy_logs(MYCE_RUN_DIR "/logs", out, "");
	long pods[] = {src_pod, dst_pod};
	for (size_t i = 0; i < ARRAY_SIZE(pods); i++) {
		if (pods[i] <= 0)
			continue;
		_cleanup_free_ char *pd = xasprintf(MYCE_RUN_DIR "/pods/%ld", pods[i]);
		_cleanup_free_ char *img = xasprintf("%s/images", pd);
		_cleanup_free_ char *prefix = xasprintf("pod%ld-", pods[i]);
		copy_logs(pd, out, prefix);
		copy_logs(img, out, prefix);
	}
}

size_t ctl_cluster_pids(pid_t *pids, size_t max)
{
	_cleanup_free_ char *text = myce_read_file(CLUSTER_JSON, NULL);
	_cleanup_json_ cJSON *st = text ? cJSON_Parse(text) : NULL;
	size_t n = 0;
	double c = myce_json_num(st, "coordinator_pid", 0);
	if (c > 0 && n < max)
		pids[n++] = (pid_t)c;
	const cJSON *p;
	static const char *const lists[] = {"node_pids", "link_pids"};
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(st, lists[i]))
			if (cJSON_IsNumber(p) && p->valuedouble > 0 && n < max)
				pids[n++] = (pid_t)p->valuedouble;
	return n;
}
