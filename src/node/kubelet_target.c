/* Kubernetes mode: the target pod of a migration (docs/k8s-migration.md).
 * The coordinator creates it through the API with the label
 * mycedrive.io/migration and the annotation mycedrive.io/carried (the
 * addresses it takes over); the kubelet then runs it as the embedded mode's
 * migration target: an agent that registers, learns it is a target and
 * waits for the checkpoint, in a pod that carries those addresses. */
#include "kubelet.h"

#include "agentctl.h"
#include "k8s_pod.h"
#include "log.h"
#include "util.h"

#include <string.h>

cJSON *kl_target_carried(const cJSON *obj)
{
	const cJSON *meta = cJSON_GetObjectItem(obj, "metadata");
	if (!myce_json_str(cJSON_GetObjectItem(meta, "labels"), MYCE_K8S_LABEL_MIGRATION))
		return NULL;
	const char *ann = myce_json_str(cJSON_GetObjectItem(meta, "annotations"), MYCE_KL_ANN_CARRIED);
	cJSON *carried = ann ? cJSON_Parse(ann) : NULL;
	if (!cJSON_IsArray(carried)) {
		cJSON_Delete(carried);
		return NULL;
	}
	const cJSON *a;
	cJSON_ArrayForEach(a, carried)
	{
		if (!cJSON_IsString(a)) {
			cJSON_Delete(carried);
			return NULL;
		}
	}
	return carried;
}

/* The source pod of a committed migration, being deleted by its ReplicaSet:
 * its application was checkpointed away, and its address now belongs to the
 * target (host routes), so nothing inside it can reach the coordinator any
 * more; its preStop hook would only hang until the grace period ends.  The
 * kubelet asks `remove` on its behalf, from the node. */
bool kl_migrated_away(struct kl_worker *w, const char *container)
{
	struct node *n = w->k->n;
	if (w->local.id < 0)
		return false;
	_cleanup_free_ char *sock = pod_agent_sock(w->local.id);
	_cleanup_json_ cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "status");
	_cleanup_json_ cJSON *st = NULL;
	if (myce_agentctl_call(sock, req, 2000, &st, NULL) < 0)
		return false;
	const char *state = myce_json_str(st, "state");
	if (!state || strcmp(state, "checkpointed") != 0)
		return false;
	_cleanup_free_ char *url = xasprintf("%s/v1/remove", n->coord_url);
	_cleanup_free_ char *pod = xasprintf("%s/%s", w->ns, w->name);
	_cleanup_json_ cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "pod", pod);
	cJSON_AddStringToObject(body, "container", container);
	_cleanup_json_ cJSON *out = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	int rc = myce_http_call_ca("POST", url, n->token, n->ca_file, body, 5000, &out, &e);
	if (rc != 200 || !myce_json_bool(out, "migrated", false)) {
		log_warn("pod %s: application checkpointed but remove says %s", pod,
			 rc == 200 ? "it did not migrate" : myce_error_msg(e));
		return false;
	}
	log_info("pod %s: application migrated away (migration %.0f to %s); remove: %s; preStop hook skipped", pod,
		 myce_json_num(out, "migration_id", -1), myce_json_str(out, "to"), myce_json_str(out, "message"));
	return true;
}
