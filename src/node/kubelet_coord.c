/* The kubelet's calls to the coordinator (Kubernetes mode):
 *   - before it allocates a pod address, the addresses that migrated pods
 *     carry (GET /v1/carried): a pod that moved away from this node leaves
 *     its address behind in the target, for its clients' connections, and
 *     the kubelet must not give it to a new pod meanwhile;
 *   - when a pod goes away for good, `remove` for each of its containers,
 *     so that the coordinator's registry does not keep them forever (what
 *     the paper's preStop hook does from inside; the kubelet does it from
 *     the node, which also covers pods without that hook, pods killed or
 *     force-deleted, and pods that ended while this daemon was down). */
#include "kubelet.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <string.h>

cJSON *kl_carried_fetch(struct kubelet *k, struct myce_error **err)
{
	struct node *n = k->n;
	_cleanup_free_ char *url = xasprintf("%s/v1/carried", n->coord_url);
	_cleanup_json_ cJSON *out = NULL;
	int st = myce_http_call_ca("GET", url, n->token, n->ca_file, NULL, 5000, &out, err);
	if (st != 200 || !cJSON_IsArray(out)) {
		if (st == 200)
			myce_error_set(err, EPROTO, "GET /v1/carried: not a list");
		return NULL;
	}
	cJSON *addrs = cJSON_CreateArray();
	const cJSON *r;
	cJSON_ArrayForEach(r, out)
	{
		const char *a = myce_json_str(r, "addr");
		if (a)
			cJSON_AddItemToArray(addrs, cJSON_CreateString(a));
	}
	return addrs;
}

void kl_remove(struct kl_worker *w, const cJSON *obj, const char *container)
{
	struct node *n = w->k->n;
	_cleanup_free_ char *url = xasprintf("%s/v1/remove", n->coord_url);
	_cleanup_free_ char *pod = xasprintf("%s/%s", w->ns, w->name);
	_cleanup_json_ cJSON *names = cJSON_CreateArray();
	const cJSON *cs = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "containers"), *c;
	cJSON_ArrayForEach(c, cs)
		if (myce_json_str(c, "name"))
			cJSON_AddItemToArray(names, cJSON_CreateString(myce_json_str(c, "name")));
	if (!cJSON_GetArraySize(names) && container)
		cJSON_AddItemToArray(names, cJSON_CreateString(container));
	cJSON_ArrayForEach(c, names)
	{
		const char *name = c->valuestring;
		if (!name)
			continue;
		_cleanup_json_ cJSON *body = cJSON_CreateObject();
		cJSON_AddStringToObject(body, "pod", pod);
		cJSON_AddStringToObject(body, "container", name);
		_cleanup_json_ cJSON *out = NULL;
		_cleanup_error_ struct myce_error *e = NULL;
		int st = myce_http_call_ca("POST", url, n->token, n->ca_file, body, 5000, &out, &e);
		/* 404: never registered, or already removed (by its preStop hook). */
		if (st == 200)
			log_info("pod %s: container %s removed from the coordinator's registry", pod, name);
		else if (st != 404)
			log_warn("pod %s: remove container %s: %s", pod, name, myce_error_msg(e));
	}
}
