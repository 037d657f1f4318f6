/* mycectl: the command line of mycedrive. */
#include "cli.h"

#include "cluster.h"
#include "util.h"
#include "config.h"

#include <stdarg.h>
#include <string.h>

int cli_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mycectl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

void cli_print_json(const cJSON *j)
{
	_cleanup_free_ char *s = cJSON_Print(j);
	puts(s);
}

int cli_call(struct cli *c, const char *method, const char *path, const cJSON *body, long timeout_ms, cJSON **out,
	     struct myce_error **err)
{
	if (!c->token) {
		_cleanup_free_ char *tp = myce_token_path();
		c->token = myce_token_load(tp, err);
		if (!c->token)
			return myce_error_wrap(err, "no cluster is up (run: mycectl cluster up)");
	}
	_cleanup_free_ char *url = xasprintf("%s%s", c->coord_url, path);
	int st = myce_http_call_ca(method, url, c->token, c->ca_file, body, timeout_ms, out, err);
	if (st < 0)
		return myce_error_wrap(err, "coordinator unreachable (is the cluster up?)");
	return st;
}

void cli_pick_coordinator(struct cli *c, const char *ca)
{
	if (!ca && access(MYCE_CA_FILE, R_OK) == 0)
		ca = MYCE_CA_FILE;
	free(c->coord_url);
	free(c->ca_file);
	c->ca_file = ca ? xstrdup(ca) : NULL;
	c->coord_url = ca ? xasprintf("https://%s:%d", MYCE_BRIDGE_IP, MYCE_COORD_PORT) : myce_coord_url();
}

static const struct {
	const char *name;
	int (*fn)(struct cli *, int, char **);
	const char *help;
} commands[] = {
	{"cluster", cmd_cluster, "cluster up [--nodes N] [--rate MBIT] [--delay MS] [--no-tls] | cluster down"},
	{"run", cmd_run, "run NAME --node NODE --port PORT -- CMD [ARGS...]"},
	{"get", cmd_get, "get nodes|pods|services|apps|migrations [ID] [-o json]"},
	{"migrate", cmd_migrate, "migrate NAME|pod/NAME [-n NS] --to NODE [--mode auto|live|precopy|stop-and-copy|redeploy] [-o json]"},
	{"delete", cmd_delete, "delete NAME"},
};

static int usage(FILE *f)
{
	fprintf(f, "mycectl %s: live migration of stateful servers between edge nodes\n\nusage:\n", MYCE_VERSION);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  mycectl %s\n", commands[i].help);
	fprintf(f, "\nglobal options: -o json (machine-readable output)\n"
		   "                --ca FILE (CA that signed the coordinator's certificate; default: the\n"
		   "                cluster's own, " MYCE_CA_FILE ", when cluster up made one)\n");
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	struct cli c = {0};
	const char *ca = NULL;
	/* Pull -o json / -ojson out of the arguments, wherever it stands. */
	int k = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			while (i < argc)
				argv[k++] = argv[i++];
			break;
		}
		if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			if (strcmp(argv[i + 1], "json") && strcmp(argv[i + 1], "text"))
				return cli_fail("unknown output format %s (json or text)", argv[i + 1]);
			c.json = !strcmp(argv[i + 1], "json");
			i++;
			continue;
		}
		if (!strcmp(argv[i], "--ca")) {
			if (i + 1 >= argc)
				return cli_fail("--ca needs a file");
			ca = argv[++i];
			if (access(ca, R_OK) != 0)
				return cli_fail("--ca %s: cannot read it", ca);
			continue;
		}
		if (!strcmp(argv[i], "-ojson")) {
			c.json = true;
			continue;
		}
		argv[k++] = argv[i];
	}
	argc = k;
	argv[argc] = NULL;
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))
		return usage(stdout);
	cli_pick_coordinator(&c, ca);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (!strcmp(argv[1], commands[i].name)) {
			int r = commands[i].fn(&c, argc - 1, argv + 1);
			free(c.coord_url);
			free(c.ca_file);
			free(c.token);
			return r;
		}
	}
	cli_fail("unknown command %s", argv[1]);
	return usage(stderr);
}
