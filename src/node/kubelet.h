/* The node daemon's Kubernetes mode: a virtual kubelet for the embedded
 * runtime (docs/k8s-mode.md).
 *
 *   kubelet.c          start/stop, the pod informer (spec.nodeName = this
 *                      node), one worker per pod UID, adoption after a restart
 *   kubelet_pod.c      a pod's worker: run it with pod_create, readiness,
 *                      restarts, status through pods/status, termination
 *   kubelet_prestop.c  running a command inside a pod's namespaces (preStop)
 *   kubelet_node.c     the Node object and its Lease in kube-node-lease
 *
 * Threads: the informer's and the lease's live in the API's network
 * namespace (the host's, where the API server listens); pod workers live in
 * the node's and enter the API's only around a request (kl_api_enter/leave).
 * A socket stays in the namespace it was created in, so pooled connections
 * are fine whichever thread reuses them. */
#ifndef MYCE_KUBELET_H
#define MYCE_KUBELET_H

#include "node.h"

#include "k8s.h"
#include "kpod.h"

#include <pthread.h>

/* What the kubelet keeps of a local pod across restarts of the daemon
 * (MYCE_KUBELET_FILE in the pod's directory). */
struct kl_local {
	long id;          /* local pod id, -1 = none */
	char *addr;
	int restart_count;
	int64_t start_us; /* startTime */
	int64_t started_us; /* current run's start */
	int last_exit_code;
	int64_t last_started_us, last_exit_us;
};

struct kl_worker {
	char *uid, *ns, *name;
	cJSON *obj;   /* latest API object (lock held to read); kept after DELETED */
	bool gone;    /* the API object no longer exists */
	bool done;    /* the worker thread has finished */
	struct kl_local local;
	bool adopted; /* local pod found running at start */
	pthread_t thread;
	struct kubelet *k;
	struct kl_worker *next;
};

struct kubelet {
	struct node *n;
	struct myce_k8s *api;
	int api_ns, node_ns; /* -1: no switch needed */
	struct myce_k8s_informer *pods;
	pthread_mutex_t lock; /* workers, orphans, stopping */
	pthread_cond_t cond;  /* a worker's object changed, or stopping */
	struct kl_worker *workers;
	struct kl_worker *orphans; /* adopted at start, not yet claimed by the informer */
	bool synced, stopping;
	char *node_uid;
	int64_t node_since_us;
	pthread_t lease_thread;
	bool lease_started;
};

/* kubelet.c */
void kl_api_enter(struct kubelet *k);
void kl_api_leave(struct kubelet *k);
void kl_local_save(struct kl_worker *w);
/* Records an Event about the worker's pod (best effort). */
void kl_event(struct kl_worker *w, const char *type, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* kubelet_pod.c: the worker thread's body. */
void *kl_worker_run(void *arg);

/* kubelet_prestop.c: runs argv (with env, "NAME=value" strings) inside the
 * namespaces of the pod whose agent is agent_pid (mount, UTS, IPC, network,
 * PID); output goes to logpath.  Waits until deadline_us (monotonic); past
 * it the command is killed and ETIMEDOUT returned.  *status: exit code. */
int kl_exec_in_pod(pid_t agent_pid, const cJSON *argv, const cJSON *env, const char *logpath, int64_t deadline_us,
		   int *status, struct myce_error **err);

/* kubelet_target.c: the addresses a migration's target pod carries (a
 * new array), or NULL when obj is not a target pod waiting for its
 * checkpoint (no mycedrive.io/migration label or no valid annotation). */
#define MYCE_KL_ANN_CARRIED "mycedrive.io/carried"
/* Set on a migration's source pod by the coordinator's hand-over, once the
 * target is Ready: the source then reports Ready=False. */
#define MYCE_KL_ANN_MIGRATED_TO "mycedrive.io/migrated-to"
cJSON *kl_target_carried(const cJSON *obj);
/* True when the pod's application was checkpointed away by a completed
 * migration (asked of the coordinator's `remove`, from the node): its
 * deletion then skips the preStop hook. */
bool kl_migrated_away(struct kl_worker *w, const char *container);

/* kubelet_coord.c: the addresses migrated pods carry, from the
 * coordinator (a new array of strings; NULL and err when it cannot tell:
 * then no address may be allocated). */
cJSON *kl_carried_fetch(struct kubelet *k, struct myce_error **err);
/* `remove` for each container of obj (the pod's API object; without one,
 * for container), logged. */
void kl_remove(struct kl_worker *w, const cJSON *obj, const char *container);

/* kubelet_node.c */
int kl_node_register(struct kubelet *k, struct myce_error **err);
int kl_lease_start(struct kubelet *k, struct myce_error **err);
void kl_lease_stop(struct kubelet *k);

#endif
