/* mycectl migrate NAME --to NODE [-o json]: starts a live migration and
 * follows it, phase by phase, with the transfer's byte progress.
 * mycectl migrate pod/NAME [-n NS] --to NODE: the same for a pod of the
 * Kubernetes API (the coordinator's Kubernetes mode). */
#include "cli.h"

#include "util.h"

#include <string.h>
#include <unistd.h>

static void show_summary(const cJSON *m)
{
	const cJSON *t = cJSON_GetObjectItem(m, "timings");
	const char *outcome = myce_json_str(m, "outcome");
	printf("migration %.0f of %s %s -> %s: %s\n", myce_json_num(m, "id", 0), myce_json_str(m, "app"),
	       myce_json_str(m, "from"), myce_json_str(m, "to"), outcome ? outcome : "?");
	if (myce_json_str(m, "reason"))
		printf("  reason: %s\n", myce_json_str(m, "reason"));
	const cJSON *k = cJSON_GetObjectItem(m, "kubernetes");
	if (k)
		printf("  pod %s/%s -> pod %s\n", myce_json_str(k, "namespace"), myce_json_str(k, "pod"),
		       myce_json_str(k, "target_pod"));
	static const char *keys[] = {"prepare_ms", "dump_ms", "transfer_ms", "restore_ms", "network_switch_ms",
				     "freeze_window_ms", "total_ms"};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		double v = myce_json_num(t, keys[i], -1);
		if (v >= 0)
			printf("  %-18s %9.1f ms\n", keys[i], v);
	}
	if (myce_json_str(m, "mode_picked"))
		printf("  %-18s %s (%s)\n", "mode", myce_json_str(m, "mode_picked"), myce_json_str(m, "mode_reason"));
	const cJSON *pre = cJSON_GetObjectItem(m, "precopy");
	if (pre)
		printf("  %-18s %.0f rounds, %.0f blocks, %.1f MB on the wire before the freeze, %.1f MB during it (%s)\n",
		       "pre-copy", myce_json_num(pre, "rounds", 0), myce_json_num(pre, "blocks", 0),
		       myce_json_num(pre, "bytes_wire", 0) / 1e6, myce_json_num(pre, "freeze_bytes_wire", 0) / 1e6,
		       myce_json_str(pre, "stop") ? myce_json_str(pre, "stop") : "");
	if (cJSON_GetObjectItem(m, "bytes_raw"))
		printf("  %-18s %9.0f bytes raw, %.0f on the wire (zstd level %.0f)\n", "checkpoint",
		       myce_json_num(m, "bytes_raw", 0), myce_json_num(m, "bytes_wire", 0), myce_json_num(m, "zstd_level", 0));
}

int cmd_migrate(struct cli *c, int argc, char **argv)
{
	const char *name = NULL, *to = NULL, *mode = NULL, *ns = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to = argv[++i];
		else if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "--namespace")) && i + 1 < argc)
			ns = argv[++i];
		else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
			mode = argv[++i];
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			return cli_fail("migrate: unexpected argument %s", argv[i]);
	}
	if (!name || !to)
		return cli_fail("usage: mycectl migrate NAME|pod/NAME [-n NAMESPACE] --to NODE "
				"[--mode auto|live|precopy|stop-and-copy|redeploy] [-o json]");
	bool pod = !strncmp(name, "pod/", 4) || !strncmp(name, "pods/", 5);
	if (ns && !pod)
		return cli_fail("migrate: -n NAMESPACE applies to pod/NAME only");
	if (pod)
		name = strchr(name, '/') + 1;
	if (!*name)
		return cli_fail("migrate: pod/ needs a pod name");
	_cleanup_json_ cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, pod ? "pod" : "app", name);
	if (ns)
		cJSON_AddStringToObject(body, "namespace", ns);
	cJSON_AddStringToObject(body, "to", to);
	if (mode)
		cJSON_AddStringToObject(body, "mode", mode);
	_cleanup_json_ cJSON *out = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	int st = cli_call(c, "POST", "/v1/migrate", body, 10000, &out, &e);
	if (st != 202)
		return cli_fail("migrate %s: %s", name, myce_error_msg(e));
	long id = (long)myce_json_num(out, "id", -1);
	_cleanup_free_ char *path = xasprintf("/v1/migrations/%ld", id);
	bool tty = !c->json && isatty(1);
	if (!c->json)
		printf("migration %ld: %s -> %s\n", id, name, to);
	_cleanup_free_ char *last = xstrdup("accepted");
	int64_t unreachable_since = 0;
	for (;;) {
		cJSON_Delete(out);
		out = NULL;
		myce_error_freep(&e);
		if (cli_call(c, "GET", path, NULL, 5000, &out, &e) != 200) {
			/* The coordinator may be restarting: it recovers the migration. */
			int64_t now = myce_now_us();
			if (!unreachable_since) {
				unreachable_since = now;
				fprintf(stderr, "mycectl: %s; still waiting for migration %ld\n", myce_error_msg(e), id);
			}
			if (now - unreachable_since > 600LL * 1000000)
				return cli_fail("migration %ld: coordinator unreachable for 10 minutes", id);
			usleep(100 * 1000);
			continue;
		}
		unreachable_since = 0;
		const char *ph = myce_json_str(out, "phase");
		if (ph && strcmp(ph, last) != 0) {
			if (!c->json)
				printf("%s  phase %s\n", tty ? "\r\033[K" : "", ph);
			free(last);
			last = xstrdup(ph);
		}
		const cJSON *pr = cJSON_GetObjectItem(out, "progress");
		if (tty && pr) {
			double done = myce_json_num(pr, "raw_done", 0), total = myce_json_num(pr, "raw_total", 0);
			printf("\r\033[K    transfer %.1f / %.1f MB (%.0f%%), %.1f MB on the wire", done / 1e6, total / 1e6,
			       total > 0 ? 100.0 * done / total : 0.0, myce_json_num(pr, "wire_done", 0) / 1e6);
			fflush(stdout);
		}
		if (myce_json_str(out, "outcome"))
			break;
		usleep(50 * 1000);
	}
	if (tty)
		printf("\r\033[K");
	if (c->json)
		cli_print_json(out);
	else
		show_summary(out);
	return strcmp(myce_json_str(out, "outcome"), "completed") == 0 ? 0 : 1;
}
