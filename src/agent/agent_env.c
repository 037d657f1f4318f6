/* The Execution Agent's configuration from the environment, and its
 * preStop verb (agent_env.h). */
#include "agent_env.h"

#include "agentctl.h"
#include "http.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *var(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	return v && *v ? v : dflt;
}

/* A DNS-1123 label or subdomain: what pod, namespace and container names are. */
static bool dns_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return false;
	return true;
}

int agent_env_load(struct agent_env *ae, struct myce_error **err)
{
	*ae = (struct agent_env){0};
	ae->coord = var("MYCE_COORDINATOR", NULL);
	ae->token_file = var("MYCE_TOKEN_FILE", NULL);
	ae->ca = var("MYCE_CA", NULL);
	ae->pod_name = var("MYCE_POD_NAME", NULL);
	ae->pod_ns = var("MYCE_POD_NAMESPACE", "default");
	ae->pod_uid = var("MYCE_POD_UID", NULL);
	ae->node = var("MYCE_NODE_NAME", NULL);
	ae->container = var("MYCE_CONTAINER_NAME", "app");
	ae->dir = var("MYCE_AGENT_DIR", "/mycedrive");
	const char *missing = !ae->coord ? "MYCE_COORDINATOR" : !ae->token_file ? "MYCE_TOKEN_FILE"
			    : !ae->pod_name ? "MYCE_POD_NAME" : !ae->node ? "MYCE_NODE_NAME" : NULL;
	if (missing)
		return myce_error_set(err, EINVAL, "%s is not set (the container's env must give it; "
						   "see k8s/example/redis.yaml)", missing);
	if (strncmp(ae->coord, "http://", 7) && strncmp(ae->coord, "https://", 8))
		return myce_error_set(err, EINVAL, "MYCE_COORDINATOR must be an http:// or https:// URL, not %s",
				      ae->coord);
	if (!dns_name(ae->pod_name) || !dns_name(ae->pod_ns) || !dns_name(ae->container) || strlen(ae->node) > 253)
		return myce_error_set(err, EINVAL, "MYCE_POD_NAME, MYCE_POD_NAMESPACE and MYCE_CONTAINER_NAME must be "
						   "Kubernetes names (lower-case letters, digits, '-', '.')");
	ae->k8s_pod = xasprintf("%s/%s", ae->pod_ns, ae->pod_name);
	return 0;
}

void agent_env_clear(struct agent_env *ae)
{
	free(ae->k8s_pod);
	ae->k8s_pod = NULL;
}

static int prestop(const struct agent_env *ae, struct myce_error **err)
{
	_cleanup_free_ char *token = myce_token_load(ae->token_file, err);
	if (!token)
		return -1;
	_cleanup_free_ char *url = xasprintf("%s/v1/remove", ae->coord);
	_cleanup_json_ cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "pod", ae->k8s_pod);
	cJSON_AddStringToObject(body, "container", ae->container);
	_cleanup_json_ cJSON *out = NULL;
	int st = myce_http_call_ca("POST", url, token, ae->ca, body, 10000, &out, err);
	if (st == 404) {
		/* Never registered (or already removed): nothing to keep. */
		printf("remove %s %s: not registered, exit\n", ae->k8s_pod, ae->container);
		return 0;
	}
	if (st != 200)
		return myce_error_wrap(err, "remove %s %s", ae->k8s_pod, ae->container);
	if (!myce_json_bool(out, "checkpoint", false)) {
		const char *msg = myce_json_str(out, "message");
		printf("remove %s %s: %s\n", ae->k8s_pod, ae->container, msg ? msg : "exit");
		return 0;
	}
	/* The source of a migration: its state must leave before it exits. */
	printf("remove %s %s: checkpoint for migration %.0f\n", ae->k8s_pod, ae->container,
	       myce_json_num(out, "migration_id", -1));
	fflush(stdout);
	_cleanup_free_ char *sock = xasprintf("%s/agent.sock", ae->dir);
	_cleanup_json_ cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "checkpoint");
	_cleanup_json_ cJSON *r = NULL;
	/* Bounded by the pod's grace period: the kubelet kills this hook then. */
	if (myce_agentctl_call(sock, req, 3600 * 1000L, &r, err) < 0)
		return myce_error_wrap(err, "ask the agent at %s to checkpoint", sock);
	if (!myce_json_bool(r, "ok", false))
		return myce_error_set(err, EIO, "checkpoint: %s", myce_json_str(r, "error") ?: "failed");
	printf("checkpointed in %.1f ms\n", myce_json_num(r, "dump_ms", 0));
	return 0;
}

int agent_prestop_main(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: myce-agent prestop   (configured from the environment: MYCE_COORDINATOR, "
				"MYCE_TOKEN_FILE, MYCE_POD_NAME, ...)\n");
		return 2;
	}
	struct agent_env ae;
	_cleanup_error_ struct myce_error *e = NULL;
	if (agent_env_load(&ae, &e) < 0) {
		fprintf(stderr, "myce-agent prestop: %s\n", myce_error_msg(e));
		agent_env_clear(&ae);
		return 2;
	}
	int rc = prestop(&ae, &e);
	agent_env_clear(&ae);
	if (rc < 0) {
		fprintf(stderr, "myce-agent prestop: %s\n", myce_error_msg(e));
		return 1;
	}
	return 0;
}
