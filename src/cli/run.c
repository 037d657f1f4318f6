/* mycectl run NAME --node NODE --port PORT -- CMD [ARGS...] */
#include "cli.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>

int cmd_run(struct cli *c, int argc, char **argv)
{
	const char *name = NULL, *node = NULL, *port = NULL;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "--node") && i + 1 < argc)
			node = argv[++i];
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = argv[++i];
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			return cli_fail("run: unexpected argument %s", argv[i]);
	}
	if (!name || !node || !port || i >= argc)
		return cli_fail("usage: mycectl run NAME --node NODE --port PORT -- CMD [ARGS...]");
	char *end;
	long p = strtol(port, &end, 10);
	if (*end || p < 1 || p > 65535)
		return cli_fail("run: --port must be a number in 1..65535");
	_cleanup_json_ cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "name", name);
	cJSON_AddStringToObject(body, "node", node);
	cJSON_AddNumberToObject(body, "port", (double)p);
	cJSON *cmd = cJSON_AddArrayToObject(body, "cmd");
	for (; i < argc; i++)
		cJSON_AddItemToArray(cmd, cJSON_CreateString(argv[i]));
	_cleanup_json_ cJSON *out = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	int st = cli_call(c, "POST", "/v1/apps", body, 60000, &out, &e);
	if (st != 201)
		return cli_fail("run %s: %s", name, myce_error_msg(e));
	if (c->json)
		cli_print_json(out);
	else
		printf("%s running on %s (pod %.0f, address %s); service %s:%.0f\n", name, myce_json_str(out, "node"),
		       myce_json_num(out, "pod_id", 0), myce_json_str(out, "addr"), myce_json_str(out, "svc_ip"),
		       myce_json_num(out, "port", 0));
	return 0;
}

int cmd_delete(struct cli *c, int argc, char **argv)
{
	if (argc != 2)
		return cli_fail("usage: mycectl delete NAME");
	_cleanup_free_ char *path = xasprintf("/v1/apps/%s", argv[1]);
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_json_ cJSON *out = NULL;
	int st = cli_call(c, "DELETE", path, NULL, 60000, &out, &e);
	if (st != 200)
		return cli_fail("delete %s: %s", argv[1], myce_error_msg(e));
	if (c->json)
		cli_print_json(out);
	else
		printf("%s deleted\n", argv[1]);
	return 0;
}
