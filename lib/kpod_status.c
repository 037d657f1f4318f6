/* The status a kubelet reports for a pod (see kpod.h). */
#include "kpod.h"

#include "http.h"
#include "util.h"

#include <string.h>

static void add_time(cJSON *o, const char *key, int64_t us)
{
	if (us <= 0)
		return;
	_cleanup_free_ char *t = myce_k8s_time(us);
	cJSON_AddStringToObject(o, key, t);
}

static void add_cond(cJSON *list, const char *type, bool ok, int64_t since_us, const char *reason)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "type", type);
	cJSON_AddStringToObject(c, "status", ok ? "True" : "False");
	cJSON_AddNullToObject(c, "lastProbeTime");
	add_time(c, "lastTransitionTime", since_us);
	if (reason && !ok)
		cJSON_AddStringToObject(c, "reason", reason);
	cJSON_AddItemToArray(list, c);
}

static void add_ips(cJSON *st, const char *key, const char *keys, const char *ip)
{
	if (!ip || !*ip)
		return;
	cJSON_AddStringToObject(st, key, ip);
	cJSON *a = cJSON_AddArrayToObject(st, keys);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "ip", ip);
	cJSON_AddItemToArray(a, o);
}

static cJSON *terminated(int code, int64_t started_us, int64_t finished_us, const char *cid)
{
	cJSON *t = cJSON_CreateObject();
	cJSON_AddNumberToObject(t, "exitCode", code);
	cJSON_AddStringToObject(t, "reason", code == 0 ? "Completed" : "Error");
	add_time(t, "startedAt", started_us);
	add_time(t, "finishedAt", finished_us);
	if (cid)
		cJSON_AddStringToObject(t, "containerID", cid);
	return t;
}

/* The containers of a pod run and stop together: each one's status is the
 * pod's, but for its name, image, ID and, for the container that ended
 * the pod, its own exit code (the others were stopped with it: 143). */
static cJSON *container_status(const struct myce_kpod *p, const struct myce_kpod_state *st, const char *name,
			       const char *image)
{
	_cleanup_free_ char *cid = !st->container_id ? NULL
				   : p->ncontainers > 1 ? xasprintf("%s/%s", st->container_id, name)
							: xstrdup(st->container_id);
	bool stopped_with = st->ended_container && strcmp(st->ended_container, name) != 0;
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "name", name);
	cJSON *state = cJSON_AddObjectToObject(c, "state");
	switch (st->cstate) {
	case MYCE_KPOD_RUNNING: {
		cJSON *r = cJSON_AddObjectToObject(state, "running");
		add_time(r, "startedAt", st->started_us);
		break;
	}
	case MYCE_KPOD_TERMINATED:
		cJSON_AddItemToObject(state, "terminated",
				      terminated(stopped_with ? 143 : st->exit_code, st->started_us, st->finished_us, cid));
		break;
	case MYCE_KPOD_WAITING: {
		cJSON *w = cJSON_AddObjectToObject(state, "waiting");
		cJSON_AddStringToObject(w, "reason", st->waiting_reason ? st->waiting_reason : "ContainerCreating");
		break;
	}
	}
	cJSON *last = cJSON_AddObjectToObject(c, "lastState");
	if (st->last_exit_us > 0)
		cJSON_AddItemToObject(last, "terminated",
				      terminated(stopped_with ? 143 : st->last_exit_code, st->last_started_us,
						 st->last_exit_us, cid));
	cJSON_AddBoolToObject(c, "ready", st->ready);
	cJSON_AddNumberToObject(c, "restartCount", st->restart_count);
	cJSON_AddBoolToObject(c, "started", st->cstate == MYCE_KPOD_RUNNING);
	cJSON_AddStringToObject(c, "image", image ? image : "");
	cJSON_AddStringToObject(c, "imageID", "");
	if (cid && st->cstate != MYCE_KPOD_WAITING)
		cJSON_AddStringToObject(c, "containerID", cid);
	return c;
}

cJSON *myce_kpod_status(const struct myce_kpod *p, const struct myce_kpod_state *st)
{
	cJSON *s = cJSON_CreateObject();
	cJSON_AddStringToObject(s, "phase", st->phase);
	if (st->reason)
		cJSON_AddStringToObject(s, "reason", st->reason);
	if (st->message)
		cJSON_AddStringToObject(s, "message", st->message);
	bool done = !strcmp(st->phase, "Succeeded") || !strcmp(st->phase, "Failed");
	const char *not_ready = done ? "PodCompleted" : "ContainersNotReady";
	int64_t start = st->start_us;
	int64_t ready_since = st->ready_changed_us > 0 ? st->ready_changed_us : start;
	cJSON *conds = cJSON_AddArrayToObject(s, "conditions");
	add_cond(conds, "PodReadyToStartContainers", st->pod_ip && *st->pod_ip, start, NULL);
	add_cond(conds, "Initialized", true, start, NULL);
	add_cond(conds, "Ready", st->ready, ready_since, not_ready);
	add_cond(conds, "ContainersReady", st->ready, ready_since, not_ready);
	add_cond(conds, "PodScheduled", true, p->created_us > 0 ? p->created_us : start, NULL);
	add_ips(s, "hostIP", "hostIPs", st->host_ip);
	add_ips(s, "podIP", "podIPs", st->pod_ip);
	add_time(s, "startTime", start);

	cJSON *cs = cJSON_AddArrayToObject(s, "containerStatuses");
	for (int i = 0; i < (p->ncontainers > 0 ? p->ncontainers : 1); i++) {
		/* A stub pod (kubelet_pod.c, unparseable object) has no list. */
		const char *name = p->ncontainers > 0 ? p->containers[i].name : p->container;
		const char *image = p->ncontainers > 0 ? p->containers[i].image : p->image;
		cJSON_AddItemToArray(cs, container_status(p, st, name, image));
	}
	return s;
}

cJSON *myce_kpod_event(const char *ns, const char *name, const char *uid, const char *node, const char *type,
		       const char *reason, const char *message, int64_t now_us)
{
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "apiVersion", "v1");
	cJSON_AddStringToObject(e, "kind", "Event");
	cJSON *meta = cJSON_AddObjectToObject(e, "metadata");
	/* As the kubelet names them: the object's name and a unique suffix. */
	_cleanup_free_ char *ename = xasprintf("%s.%llx", name, (unsigned long long)now_us * 1000);
	cJSON_AddStringToObject(meta, "name", ename);
	cJSON_AddStringToObject(meta, "namespace", ns);
	cJSON *obj = cJSON_AddObjectToObject(e, "involvedObject");
	cJSON_AddStringToObject(obj, "apiVersion", "v1");
	cJSON_AddStringToObject(obj, "kind", "Pod");
	cJSON_AddStringToObject(obj, "namespace", ns);
	cJSON_AddStringToObject(obj, "name", name);
	cJSON_AddStringToObject(obj, "uid", uid);
	cJSON_AddStringToObject(e, "type", type);
	cJSON_AddStringToObject(e, "reason", reason);
	cJSON_AddStringToObject(e, "message", message);
	cJSON *src = cJSON_AddObjectToObject(e, "source");
	cJSON_AddStringToObject(src, "component", "kubelet");
	cJSON_AddStringToObject(src, "host", node);
	cJSON_AddStringToObject(e, "reportingComponent", "kubelet");
	cJSON_AddStringToObject(e, "reportingInstance", node);
	_cleanup_free_ char *t = myce_k8s_time(now_us);
	cJSON_AddStringToObject(e, "firstTimestamp", t);
	cJSON_AddStringToObject(e, "lastTimestamp", t);
	cJSON_AddNumberToObject(e, "count", 1);
	return e;
}
