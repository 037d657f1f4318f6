/* mycectl get nodes|pods|services|apps|migrations [ID] [-o json] */
#include "cli.h"

#include "util.h"

#include <string.h>

struct column {
	const char *key, *title;
	int width;
};

static void print_table(const cJSON *rows, const struct column *cols, size_t ncols)
{
	for (size_t i = 0; i < ncols; i++)
		printf("%-*s", cols[i].width, cols[i].title);
	putchar('\n');
	const cJSON *r;
	cJSON_ArrayForEach(r, rows)
	{
		for (size_t i = 0; i < ncols; i++) {
			const cJSON *v = cJSON_GetObjectItem(r, cols[i].key);
			char buf[256];
			if (cJSON_IsString(v))
				snprintf(buf, sizeof(buf), "%s", v->valuestring);
			else if (cJSON_IsNumber(v))
				snprintf(buf, sizeof(buf), "%g", v->valuedouble);
			else
				snprintf(buf, sizeof(buf), "-");
			printf("%-*s", cols[i].width, buf);
		}
		putchar('\n');
	}
}

int cmd_get(struct cli *c, int argc, char **argv)
{
	static const struct column nodes[] = {{"name", "NAME", 10}, {"ip", "ADDRESS", 14}, {"pods", "PODS", 6}};
	static const struct column pods[] = {{"id", "POD", 6},	   {"app", "APP", 16},	   {"node", "NODE", 8},
					     {"addr", "ADDRESS", 13}, {"state", "STATE", 10}, {"carried", "CARRIES", 30}};
	static const struct column svcs[] = {{"name", "NAME", 16},     {"svc_ip", "SERVICE", 13}, {"port", "PORT", 7},
					     {"endpoint", "ENDPOINT", 13}, {"node", "NODE", 8}};
	static const struct column apps[] = {{"name", "NAME", 16}, {"node", "NODE", 8}, {"addr", "ADDRESS", 13},
					     {"svc_ip", "SERVICE", 13}, {"port", "PORT", 7}, {"cmd", "COMMAND", 40}};
	static const struct column migs[] = {{"id", "ID", 5},	   {"app", "APP", 16},	     {"from", "FROM", 8},
					     {"to", "TO", 8},	   {"phase", "PHASE", 13}, {"reason", "REASON", 40}};
	static const struct {
		const char *what, *path;
		const struct column *cols;
		size_t n;
	} kinds[] = {
		{"nodes", "/v1/nodes", nodes, ARRAY_SIZE(nodes)},
		{"pods", "/v1/pods", pods, ARRAY_SIZE(pods)},
		{"services", "/v1/services", svcs, ARRAY_SIZE(svcs)},
		{"apps", "/v1/apps", apps, ARRAY_SIZE(apps)},
		{"migrations", "/v1/migrations", migs, ARRAY_SIZE(migs)},
	};
	if (argc < 2 || argc > 3)
		return cli_fail("usage: mycectl get nodes|pods|services|apps|migrations [ID] [-o json]");
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		if (strcmp(argv[1], kinds[i].what) != 0)
			continue;
		_cleanup_free_ char *path = argc == 3 ? xasprintf("%s/%s", kinds[i].path, argv[2]) : xstrdup(kinds[i].path);
		_cleanup_json_ cJSON *out = NULL;
		_cleanup_error_ struct myce_error *e = NULL;
		if (cli_call(c, "GET", path, NULL, 10000, &out, &e) != 200)
			return cli_fail("get %s: %s", argv[1], myce_error_msg(e));
		if (c->json || argc == 3)
			cli_print_json(out);
		else
			print_table(out, kinds[i].cols, kinds[i].n);
		return 0;
	}
	return cli_fail("get: unknown kind %s (nodes, pods, services, apps, migrations)", argv[1]);
}
