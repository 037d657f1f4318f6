/* The coordinator's requests to the Kubernetes API (Kubernetes mode): pods,
 * nodes, patches, deletions and Events.  Thin wrappers over lib/k8s.h that
 * turn an answer into an errno and a message. */
#include "coord.h"

#include "k8s_pod.h"
#include "kpod.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

static char *pod_path(const char *ns, const char *name)
{
	_cleanup_free_ char *n = myce_k8s_escape(ns);
	_cleanup_free_ char *p = myce_k8s_escape(name);
	return xasprintf("/api/v1/namespaces/%s/pods/%s", n, p);
}

static int answer(int rc, cJSON *body, const char *what, struct myce_error **err)
{
	if (rc < 0)
		return myce_error_wrap(err, "%s", what);
	if (rc >= 200 && rc < 300)
		return 0;
	return myce_k8s_status_error(rc, body, what, err);
}

int kobj_pod_get(struct coord *c, const char *ns, const char *name, cJSON **out, struct myce_error **err)
{
	_cleanup_free_ char *path = pod_path(ns, name);
	_cleanup_free_ char *what = xasprintf("get pod %s/%s", ns, name);
	cJSON *body = NULL;
	int rc = answer(myce_k8s_get(c->k8s, path, &body, err), body, what, err);
	if (rc < 0) {
		cJSON_Delete(body);
		return rc;
	}
	*out = body;
	return 0;
}

int kobj_node_get(struct coord *c, const char *name, cJSON **out, struct myce_error **err)
{
	_cleanup_free_ char *n = myce_k8s_escape(name);
	_cleanup_free_ char *path = xasprintf("/api/v1/nodes/%s", n);
	_cleanup_free_ char *what = xasprintf("get node %s", name);
	cJSON *body = NULL;
	int rc = answer(myce_k8s_get(c->k8s, path, &body, err), body, what, err);
	if (rc < 0) {
		cJSON_Delete(body);
		return rc;
	}
	*out = body;
	return 0;
}

bool kobj_node_ready(const cJSON *node)
{
	const cJSON *conds = cJSON_GetObjectItem(cJSON_GetObjectItem(node, "status"), "conditions");
	const cJSON *x;
	cJSON_ArrayForEach(x, conds)
	{
		const char *t = myce_json_str(x, "type"), *s = myce_json_str(x, "status");
		if (t && s && !strcmp(t, "Ready"))
			return !strcmp(s, "True");
	}
	return false;
}

int kobj_pod_patch(struct coord *c, const char *ns, const char *name, const cJSON *patch, struct myce_error **err)
{
	_cleanup_free_ char *path = pod_path(ns, name);
	_cleanup_free_ char *what = xasprintf("patch pod %s/%s", ns, name);
	_cleanup_json_ cJSON *body = NULL;
	return answer(myce_k8s_patch(c->k8s, path, MYCE_K8S_PATCH_MERGE, patch, &body, err), body, what, err);
}

int kobj_pod_delete(struct coord *c, const char *ns, const char *name, const char *uid, int grace_s,
		    struct myce_error **err)
{
	_cleanup_free_ char *path = pod_path(ns, name);
	_cleanup_free_ char *what = xasprintf("delete pod %s/%s", ns, name);
	_cleanup_json_ cJSON *opts = cJSON_CreateObject();
	if (grace_s >= 0)
		cJSON_AddNumberToObject(opts, "gracePeriodSeconds", grace_s);
	/* Never a namesake created after ours. */
	if (uid)
		cJSON_AddStringToObject(cJSON_AddObjectToObject(opts, "preconditions"), "uid", uid);
	_cleanup_json_ cJSON *body = NULL;
	int rc = myce_k8s_delete(c->k8s, path, opts, &body, err);
	if (rc == 404 || (rc == 409 && uid))
		return 0; /* gone, or the name belongs to another pod now */
	return answer(rc, body, what, err);
}

void kobj_event(struct coord *c, const char *ns, const char *pod, const char *uid, bool warning, const char *reason,
		const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	int64_t now = myce_wall_us();
	_cleanup_free_ char *ts = myce_k8s_time(now);
	_cleanup_json_ cJSON *ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "apiVersion", "v1");
	cJSON_AddStringToObject(ev, "kind", "Event");
	cJSON *meta = cJSON_AddObjectToObject(ev, "metadata");
	_cleanup_free_ char *gen = xasprintf("%s.", pod);
	cJSON_AddStringToObject(meta, "generateName", gen);
	cJSON_AddStringToObject(meta, "namespace", ns);
	cJSON *io = cJSON_AddObjectToObject(ev, "involvedObject");
	cJSON_AddStringToObject(io, "apiVersion", "v1");
	cJSON_AddStringToObject(io, "kind", "Pod");
	cJSON_AddStringToObject(io, "namespace", ns);
	cJSON_AddStringToObject(io, "name", pod);
	if (uid)
		cJSON_AddStringToObject(io, "uid", uid);
	cJSON_AddStringToObject(ev, "reason", reason);
	cJSON_AddStringToObject(ev, "message", msg);
	cJSON_AddStringToObject(ev, "type", warning ? "Warning" : "Normal");
	cJSON_AddStringToObject(cJSON_AddObjectToObject(ev, "source"), "component", "mycedrive-coordinator");
	cJSON_AddStringToObject(ev, "reportingComponent", "mycedrive.io/coordinator");
	cJSON_AddStringToObject(ev, "reportingInstance", "mycedrive-coordinator");
	cJSON_AddStringToObject(ev, "firstTimestamp", ts);
	cJSON_AddStringToObject(ev, "lastTimestamp", ts);
	cJSON_AddNumberToObject(ev, "count", 1);
	_cleanup_free_ char *n = myce_k8s_escape(ns);
	_cleanup_free_ char *path = xasprintf("/api/v1/namespaces/%s/events", n);
	_cleanup_json_ cJSON *body = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	int rc = myce_k8s_create(c->k8s, path, ev, &body, &e);
	if (answer(rc, body, "create event", &e) < 0)
		log_warn("event %s on pod %s/%s: %s", reason, ns, pod, myce_error_msg(e));
}
