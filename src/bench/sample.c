/* What a migration costs the machinery: CPU time and peak resident memory of
 * the coordinator, of the node daemons and pod agents, and of the criu
 * processes they start, and of the userspace links (myce-link, where the
 * kernel has no netem), found by the basename of /proc/PID/exe, and only
 * those of our cluster: the daemons cluster.json names and their descendants
 * (other checkouts on this machine run theirs too).
 *
 * A sample at the start, one every period on a thread, one at the end.  CPU
 * is, per process, utime+stime at its last sighting minus at its first (0
 * for a process born during the window), so a process that ends between
 * two samples loses at most one period.  Peak RSS is the largest sum of
 * VmRSS over a group's processes in any one sample. */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>

enum group { G_COORD, G_NODES, G_CRIU, G_LINK, G_COUNT };

struct tracked {
	pid_t pid;
	unsigned long long start; /* starttime: a PID reused is another process */
	enum group g;
	unsigned long long cpu0, cpu; /* clock ticks */
};

struct bench_sampler {
	pid_t roots[32]; /* our coordinator, node daemons, links */
	size_t n_roots;
	pthread_t thread;
	int stop_fd;
	int period_ms;
	struct tracked *v;
	size_t n, cap;
	long long peak_kb[G_COUNT];
};

static int group_of(const char *pid)
{
	static const struct {
		const char *exe;
		enum group g;
	} known[] = {
		{"myce-coordinator", G_COORD},
		{"myce-node", G_NODES},
		{"myce-agent", G_NODES},
		{"criu", G_CRIU},
		{"myce-link", G_LINK},
	};
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%s/exe", pid);
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	char *del = strstr(buf, " (deleted)");
	if (del)
		*del = '\0';
	const char *base = strrchr(buf, '/');
	base = base ? base + 1 : buf;
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (!strcmp(base, known[i].exe))
			return (int)known[i].g;
	return -1;
}

/* utime+stime, starttime and the parent from /proc/PID/stat. */
static int read_stat(const char *pid, unsigned long long *cpu, unsigned long long *start, pid_t *ppid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	_cleanup_free_ char *s = myce_read_file(path, NULL);
	char *p = s ? strrchr(s, ')') : NULL;
	if (!p)
		return -1;
	/* Fields after the command: 3 state ... 14 utime 15 stime ... 22 starttime. */
	unsigned long long v[20] = {0};
	int k = 0;
	char *save = NULL;
	for (char *tok = strtok_r(p + 2, " ", &save); tok && k < 20; tok = strtok_r(NULL, " ", &save), k++)
		v[k] = strtoull(tok, NULL, 10);
	if (k < 20)
		return -1;
	*cpu = v[14 - 3] + v[15 - 3];
	*start = v[22 - 3];
	*ppid = (pid_t)v[4 - 3];
	return 0;
}

/* pid is one of the roots or descends from one (the node daemons are
 * child subreapers: agents are their children, criu the agents'). */
static bool ours(const struct bench_sampler *s, pid_t pid)
{
	for (int depth = 0; depth < 8 && pid > 1; depth++) {
		for (size_t i = 0; i < s->n_roots; i++)
			if (s->roots[i] == pid)
				return true;
		char name[16];
		snprintf(name, sizeof(name), "%d", (int)pid);
		unsigned long long cpu, start;
		if (read_stat(name, &cpu, &start, &pid) < 0)
			return false;
	}
	return false;
}

static long long read_rss_kb(const char *pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	_cleanup_free_ char *s = myce_read_file(path, NULL);
	const char *l = s ? strstr(s, "\nVmRSS:") : NULL;
	return l ? strtoll(l + 7, NULL, 10) : 0;
}

static void scan(struct bench_sampler *s, bool first)
{
	long long rss[G_COUNT] = {0};
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		int g = group_of(de->d_name);
		unsigned long long cpu, start;
		pid_t ppid;
		if (g < 0 || read_stat(de->d_name, &cpu, &start, &ppid) < 0)
			continue;
		pid_t pid = (pid_t)atoi(de->d_name);
		struct tracked *t = NULL;
		for (size_t i = 0; i < s->n && !t; i++)
			if (s->v[i].pid == pid && s->v[i].start == start)
				t = &s->v[i];
		if (!t && !ours(s, pid))
			continue;
		rss[g] += read_rss_kb(de->d_name);
		if (!t) {
			if (s->n == s->cap) {
				s->cap = s->cap ? s->cap * 2 : 64;
				s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
			}
			t = &s->v[s->n++];
			*t = (struct tracked){.pid = pid, .start = start, .g = (enum group)g, .cpu0 = first ? cpu : 0};
		}
		t->cpu = cpu;
	}
	closedir(d);
	for (int g = 0; g < G_COUNT; g++)
		if (rss[g] > s->peak_kb[g])
			s->peak_kb[g] = rss[g];
}

static void *sampler_thread(void *arg)
{
	struct bench_sampler *s = arg;
	for (;;) {
		struct pollfd p = {.fd = s->stop_fd, .events = POLLIN};
		int r = poll(&p, 1, s->period_ms);
		if (r > 0)
			return NULL;
		if (r == 0)
			scan(s, false);
	}
}

struct bench_sampler *sampler_start(int period_ms, const pid_t *roots, size_t n_roots)
{
	struct bench_sampler *s = xzalloc(sizeof(*s));
	for (size_t i = 0; i < n_roots && i < ARRAY_SIZE(s->roots); i++)
		s->roots[s->n_roots++] = roots[i];
	s->period_ms = period_ms;
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (s->stop_fd < 0)
		abort();
	scan(s, true);
	if (pthread_create(&s->thread, NULL, sampler_thread, s) != 0)
		abort();
	return s;
}

void sampler_stop(struct bench_sampler *s, struct bench_usage *u)
{
	uint64_t one = 1;
	(void)!write(s->stop_fd, &one, sizeof(one));
	pthread_join(s->thread, NULL);
	scan(s, false);
	double cpu[G_COUNT] = {0};
	double tck = (double)sysconf(_SC_CLK_TCK);
	for (size_t i = 0; i < s->n; i++)
		cpu[s->v[i].g] += (double)(s->v[i].cpu - s->v[i].cpu0) / tck;
	*u = (struct bench_usage){
		.coord_cpu_s = cpu[G_COORD],
		.coord_peak_rss_mb = (double)s->peak_kb[G_COORD] / 1024.0,
		.nodes_cpu_s = cpu[G_NODES],
		.nodes_peak_rss_mb = (double)s->peak_kb[G_NODES] / 1024.0,
		.criu_cpu_s = cpu[G_CRIU],
		.criu_peak_rss_mb = (double)s->peak_kb[G_CRIU] / 1024.0,
		.link_cpu_s = cpu[G_LINK],
		.link_peak_rss_mb = (double)s->peak_kb[G_LINK] / 1024.0,
	};
	close(s->stop_fd);
	free(s->v);
	free(s);
}
