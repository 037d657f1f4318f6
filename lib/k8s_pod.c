/* Pod objects for the Kubernetes-mode migration: see k8s_pod.h. */
#include "k8s_pod.h"

#include "util.h"

#include <errno.h>
#include <string.h>

static const cJSON *obj_get(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsObject(v) ? v : NULL;
}

static const char *str_get(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool myce_k8s_pod_ready(const cJSON *pod)
{
	const cJSON *conds = cJSON_GetObjectItemCaseSensitive(obj_get(pod, "status"), "conditions");
	const cJSON *c;
	cJSON_ArrayForEach(c, conds)
	{
		const char *type = str_get(c, "type"), *status = str_get(c, "status");
		if (type && status && !strcmp(type, "Ready"))
			return !strcmp(status, "True");
	}
	return false;
}

const char *myce_k8s_pod_owner(const cJSON *pod, const char *kind)
{
	const cJSON *refs = cJSON_GetObjectItemCaseSensitive(obj_get(pod, "metadata"), "ownerReferences");
	const cJSON *r;
	cJSON_ArrayForEach(r, refs)
	{
		const char *k = str_get(r, "kind");
		if (k && !strcmp(k, kind) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "controller")))
			return str_get(r, "name");
	}
	return NULL;
}

int myce_k8s_target_pod(const cJSON *src, const char *node, long migration_id, cJSON **out, struct myce_error **err)
{
	const cJSON *meta = obj_get(src, "metadata");
	const cJSON *spec = obj_get(src, "spec");
	const char *name = str_get(meta, "name");
	if (!meta || !spec || !name)
		return myce_error_set(err, EINVAL, "source pod has no metadata.name or spec");
	if (!node || !*node)
		return myce_error_set(err, EINVAL, "no destination node");
	_cleanup_free_ char *id = xasprintf("%ld", migration_id);
	_cleanup_free_ char *suffix = xasprintf("-m%ld", migration_id);
	size_t keep = strlen(name);
	if (keep + strlen(suffix) > 63)
		keep = 63 - strlen(suffix);
	_cleanup_free_ char *tname = xasprintf("%.*s%s", (int)keep, name, suffix);

	cJSON *pod = cJSON_CreateObject();
	cJSON_AddStringToObject(pod, "apiVersion", "v1");
	cJSON_AddStringToObject(pod, "kind", "Pod");
	cJSON *m = cJSON_AddObjectToObject(pod, "metadata");
	cJSON_AddStringToObject(m, "name", tname);
	const char *ns = str_get(meta, "namespace");
	if (ns)
		cJSON_AddStringToObject(m, "namespace", ns);
	cJSON *labels = cJSON_Duplicate(obj_get(meta, "labels"), true);
	if (!labels)
		labels = cJSON_CreateObject();
	cJSON_DeleteItemFromObjectCaseSensitive(labels, MYCE_K8S_LABEL_TEMPLATE_HASH);
	cJSON_DeleteItemFromObjectCaseSensitive(labels, MYCE_K8S_LABEL_MIGRATION);
	cJSON_AddStringToObject(labels, MYCE_K8S_LABEL_MIGRATION, id);
	cJSON_AddItemToObject(m, "labels", labels);
	cJSON *ann = cJSON_Duplicate(obj_get(meta, "annotations"), true);
	if (!ann)
		ann = cJSON_CreateObject();
	cJSON_DeleteItemFromObjectCaseSensitive(ann, MYCE_K8S_ANN_SOURCE);
	cJSON_DeleteItemFromObjectCaseSensitive(ann, MYCE_K8S_ANN_DELETION_COST);
	cJSON_AddStringToObject(ann, MYCE_K8S_ANN_SOURCE, name);
	cJSON_AddItemToObject(m, "annotations", ann);
	cJSON *s = cJSON_Duplicate(spec, true);
	cJSON_DeleteItemFromObjectCaseSensitive(s, "nodeName");
	cJSON_AddStringToObject(s, "nodeName", node);
	cJSON_AddItemToObject(pod, "spec", s);
	*out = pod;
	return 0;
}

cJSON *myce_k8s_adopt_patch(const cJSON *src)
{
	const char *hash = str_get(obj_get(obj_get(src, "metadata"), "labels"), MYCE_K8S_LABEL_TEMPLATE_HASH);
	if (!hash)
		return NULL;
	cJSON *p = cJSON_CreateObject();
	cJSON *labels = cJSON_AddObjectToObject(cJSON_AddObjectToObject(p, "metadata"), "labels");
	cJSON_AddStringToObject(labels, MYCE_K8S_LABEL_TEMPLATE_HASH, hash);
	cJSON_AddNullToObject(labels, MYCE_K8S_LABEL_MIGRATION);
	return p;
}

cJSON *myce_k8s_deletion_cost_patch(int cost)
{
	cJSON *p = cJSON_CreateObject();
	cJSON *ann = cJSON_AddObjectToObject(cJSON_AddObjectToObject(p, "metadata"), "annotations");
	_cleanup_free_ char *v = xasprintf("%d", cost);
	cJSON_AddStringToObject(ann, MYCE_K8S_ANN_DELETION_COST, v);
	return p;
}
