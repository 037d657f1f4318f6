/* machine.txt: what the numbers were measured on, and how they were asked for. */
#include "bench.h"

#include "checkpoint.h"
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* The first line of a shell command's output (stdout and stderr). */
static char *first_line(struct bench *b, const char *cmd)
{
	_cleanup_free_ char *line = xasprintf("%s 2>&1", cmd);
	char *argv[] = {"/bin/sh", "-c", line, NULL};
	_cleanup_free_ char *out = NULL;
	if (proc_run(b, argv, 10000, false, &out, NULL, NULL) < 0 || !out || !*out)
		return xstrdup("(not available)");
	out[strcspn(out, "\n")] = '\0';
	return xstrdup(out);
}

/* The value of "key" in a /proc file of "key : value" lines. */
static char *proc_field(const char *path, const char *key)
{
	_cleanup_free_ char *s = myce_read_file(path, NULL);
	for (char *l = s; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = '\0';
		if (!strncmp(l, key, strlen(key))) {
			char *v = strchr(l, ':');
			if (v) {
				v++;
				while (*v == ' ' || *v == '\t')
					v++;
				return xstrdup(v);
			}
		}
		l = nl ? nl + 1 : NULL;
	}
	return xstrdup("unknown");
}

int machine_write(const char *path, const struct bench *bc, struct myce_error **err)
{
	struct bench *b = (struct bench *)bc;
	_cleanup_fclose_ FILE *f = fopen(path, "we");
	if (!f)
		return myce_error_errno(err, "create %s", path);
	time_t now = time(NULL);
	char local[64], utc[64];
	strftime(local, sizeof(local), "%Y-%m-%d %H:%M:%S %z", localtime(&now));
	strftime(utc, sizeof(utc), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	_cleanup_free_ char *cpu = proc_field("/proc/cpuinfo", "model name");
	_cleanup_free_ char *mem = proc_field("/proc/meminfo", "MemTotal");
	_cleanup_free_ char *criu_cmd = xasprintf("'%s' --version | tr '\\n' ' '", myce_ckpt_binary());
	_cleanup_free_ char *criu = first_line(b, criu_cmd);
	_cleanup_free_ char *redis = first_line(b, "redis-server --version");
	_cleanup_free_ char *mosq = first_line(b, "mosquitto -h | head -n 1");
	_cleanup_free_ char *memc = first_line(b, "memcached -V");
	_cleanup_free_ char *gnuplot = first_line(b, "gnuplot --version");
	_cleanup_free_ char *uname_a = first_line(b, "uname -a");
	fprintf(f, "date:        %s (%s)\n", local, utc);
	fprintf(f, "command:     %s\n", b->cmdline);
	fprintf(f, "uname -a:    %s\n", uname_a);
	fprintf(f, "nproc:       %ld online, %ld configured\n", sysconf(_SC_NPROCESSORS_ONLN),
		sysconf(_SC_NPROCESSORS_CONF));
	fprintf(f, "cpu:         %s\n", cpu);
	fprintf(f, "memory:      %s\n", mem);
	fprintf(f, "criu:        %s: %s\n", myce_ckpt_binary(), criu);
	fprintf(f, "redis:       %s\n", redis);
	fprintf(f, "mosquitto:   %s\n", mosq);
	fprintf(f, "memcached:   %s\n", memc);
	fprintf(f, "gnuplot:     %s\n", gnuplot);
	fprintf(f, "mycedrive:   %s (mycectl: %s)\n", MYCE_VERSION, b->ctl);
	if (fflush(f) != 0)
		return myce_error_errno(err, "write %s", path);
	return 0;
}
