/* The Execution Agent as a real cluster's container entrypoint
 * (k8s/example/redis.yaml, docs/k8s-install.md):
 *
 *   myce-agent -- CMD [ARGS...]     wraps the container's command
 *   myce-agent prestop              the container's preStop hook
 *
 * configured from the environment (the Downward API), not from the flags
 * the embedded runtime's node daemon passes. */
#ifndef MYCE_AGENT_ENV_H
#define MYCE_AGENT_ENV_H

#include "error.h"

struct agent_env {
	const char *coord;      /* MYCE_COORDINATOR: the coordinator's URL */
	const char *token_file; /* MYCE_TOKEN_FILE */
	const char *ca;         /* MYCE_CA: CA of an https coordinator, or NULL */
	const char *pod_name, *pod_ns, *pod_uid; /* MYCE_POD_NAME, _NAMESPACE (default "default"), _UID */
	const char *node;       /* MYCE_NODE_NAME */
	const char *container;  /* MYCE_CONTAINER_NAME (default "app") */
	const char *dir;        /* MYCE_AGENT_DIR: the shared volume with agent.sock (default /mycedrive) */
	char *k8s_pod;          /* "namespace/name" */
};

/* Reads the variables; a missing or malformed one is an error naming it. */
int agent_env_load(struct agent_env *ae, struct myce_error **err);
void agent_env_clear(struct agent_env *ae);

/* `myce-agent prestop`: calls the coordinator's remove for this pod's
 * container; when told to checkpoint, asks the pod's own agent (agent.sock
 * in MYCE_AGENT_DIR) to checkpoint and waits for it.  Exit status: 0 when
 * the container may exit (told so, or checkpointed), 1 on failure, 2 on a
 * bad configuration. */
int agent_prestop_main(int argc, char **argv);

#endif
