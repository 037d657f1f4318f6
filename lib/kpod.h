/* A Kubernetes Pod object as the embedded runtime runs it: what the virtual
 * kubelet (src/node/kubelet*.c) needs of the API object, parsed and checked
 * once, and the pod status it reports back.  Pure functions on cJSON, no
 * I/O, so that unit tests call them directly.
 *
 * The embedded runtime does not pull images: a container's command and args
 * run on the node's own filesystem, inside the pod's namespaces, wrapped by
 * the Execution Agent.  So a container needs an explicit `command` (there is
 * no image entrypoint to fall back on). */
#ifndef MYCE_KPOD_H
#define MYCE_KPOD_H

#include "error.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* podinit.c reports a container by an index of 8 bits... and a pod is not a fleet. */
#define MYCE_KPOD_MAX_CONTAINERS 16

enum myce_kpod_restart { MYCE_KPOD_RESTART_ALWAYS, MYCE_KPOD_RESTART_ON_FAILURE, MYCE_KPOD_RESTART_NEVER };

/* One container of the pod, as the runtime runs it. */
struct myce_kpod_container {
	char *name;
	char *image;     /* reported back in containerStatuses, never pulled */
	cJSON *command;  /* command + args, $(VAR) expanded: array of strings */
	cJSON *env;      /* array of "NAME=value" */
	char *workdir;   /* NULL = / */
	int ready_port;  /* tcpSocket readinessProbe port, 0 = none */
	cJSON *prestop;  /* lifecycle.preStop.exec.command, or NULL */
};

/* A pod's containers all run in one process tree (one checkpoint, one
 * restore: src/agent/podinit.c).  The fields from `container` to `prestop`
 * repeat the first container's (the application; the others are its
 * sidecars), which is all a one-container pod has. */
struct myce_kpod {
	char *ns, *name, *uid;
	char *node;      /* spec.nodeName ("" while unscheduled) */
	struct myce_kpod_container *containers;
	int ncontainers; /* >= 1 */
	char *container; /* the first container's name */
	char *image;
	cJSON *command;
	cJSON *env;
	char *workdir;
	int ready_port;
	cJSON *prestop;
	int grace_s;     /* deletionGracePeriodSeconds, else terminationGracePeriodSeconds, else 30 */
	enum myce_kpod_restart restart;
	bool deleting;   /* metadata.deletionTimestamp is set */
	int64_t created_us; /* metadata.creationTimestamp, wall clock */
};

/* Parses a Pod.  pod_ip fills env fieldRef status.podIP (may be NULL while
 * unknown: such a variable is then an empty string).  EINVAL with a message
 * fit for the pod's status when the embedded runtime cannot run the pod. */
int myce_kpod_parse(const cJSON *pod, const char *pod_ip, struct myce_kpod **out, struct myce_error **err);
void myce_kpod_free(struct myce_kpod *p);
static inline void myce_kpod_freep(struct myce_kpod **p)
{
	myce_kpod_free(*p);
	*p = NULL;
}
#define _cleanup_kpod_ __attribute__((cleanup(myce_kpod_freep)))

/* Identity of a Pod object without a full parse (NULL when absent). */
const char *myce_kpod_uid(const cJSON *pod);
/* Kubernetes' $(VAR) expansion of one string against env ("NAME=value"
 * entries): $(NAME) is replaced when NAME is defined, $$ gives $, anything
 * else is left as written.  Caller frees. */
char *myce_kpod_expand(const char *s, const cJSON *env);

/* The spec of pod_create's "containers" (src/node/pods.c) for a pod of
 * several containers: [{"name", "cmd", "env", "workdir"}...]; NULL for a
 * pod of one (it keeps the one-container path).  Caller frees. */
cJSON *myce_kpod_containers_spec(const struct myce_kpod *p);

/* What the kubelet knows of the pod's containers, for its status: they
 * run, stop and restart together (the first one to end ends the pod). */
enum myce_kpod_cstate { MYCE_KPOD_WAITING, MYCE_KPOD_RUNNING, MYCE_KPOD_TERMINATED };

struct myce_kpod_state {
	const char *phase;   /* Pending, Running, Succeeded, Failed */
	const char *reason, *message; /* pod-level, may be NULL */
	const char *pod_ip, *host_ip; /* may be NULL */
	int64_t start_us;    /* when the kubelet accepted the pod (startTime) */
	enum myce_kpod_cstate cstate;
	const char *waiting_reason;   /* e.g. ContainerCreating, CrashLoopBackOff */
	int64_t started_us;  /* running: startedAt */
	int64_t finished_us; /* terminated: finishedAt */
	int exit_code;
	bool ready;
	int64_t ready_changed_us; /* last transition of Ready / ContainersReady */
	int restart_count;
	/* The previous run, after a restart (last_exit_us 0 = none). */
	int last_exit_code;
	int64_t last_started_us, last_exit_us;
	const char *container_id;     /* "myce://<local pod id>" ("/<name>" is added
					 for each container of a pod of several) */
	const char *ended_container;  /* the container whose exit ended the pod
					 (its exit code above; the others were
					 stopped: 143), NULL = the same for all */
};

/* The pod's status object (PodScheduled, Initialized, ContainersReady,
 * Ready, PodReadyToStartContainers; podIP(s), hostIP(s), startTime,
 * containerStatuses) for the pods/status subresource.  Caller frees. */
cJSON *myce_kpod_status(const struct myce_kpod *p, const struct myce_kpod_state *st);

/* A core/v1 Event about the pod (involvedObject = the Pod, source =
 * kubelet on `node`); type "Normal" or "Warning".  Caller frees. */
cJSON *myce_kpod_event(const char *ns, const char *name, const char *uid, const char *node, const char *type,
		       const char *reason, const char *message, int64_t now_us);

/* RFC 3339 in UTC, second precision ("2026-11-25T10:00:00Z") and the
 * MicroTime form ("2026-11-25T10:00:00.123456Z"); caller frees. */
char *myce_k8s_time(int64_t wall_us);
char *myce_k8s_microtime(int64_t wall_us);
/* Parses the second-precision form; -1 when malformed. */
int64_t myce_k8s_time_parse(const char *s);

#endif
