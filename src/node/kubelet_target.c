/* Kubernetes mode: the target pod of a migration (docs/k8s-migration.md).
 * The coordinator creates it through the API with the label
 * mycedrive.io/migration and the annotation mycedrive.io/carried (the
 * addresses it takes over); the kubelet then runs it as the embedded mode's
 * migration target: an agent that registers, learns it is a target and
 * waits for the checkpoint, in a pod that carries those addresses. */
#include "kubelet.h"

#include "k8s_pod.h"
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
