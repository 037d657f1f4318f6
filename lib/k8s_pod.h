/* Pod objects for the Kubernetes-mode migration (docs/k8s-migration.md):
 * what the coordinator reads from a pod and the objects and patches it
 * writes.  Pure functions on cJSON, no I/O, so unit tests cover them. */
#ifndef MYCE_K8S_POD_H
#define MYCE_K8S_POD_H

#include "error.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

#define MYCE_K8S_LABEL_MIGRATION "mycedrive.io/migration"
#define MYCE_K8S_ANN_SOURCE "mycedrive.io/source"
#define MYCE_K8S_ANN_DELETION_COST "controller.kubernetes.io/pod-deletion-cost"
#define MYCE_K8S_LABEL_TEMPLATE_HASH "pod-template-hash"

/* status.conditions[type=Ready].status == "True". */
bool myce_k8s_pod_ready(const cJSON *pod);
/* The name of the controller owner of kind `kind` ("ReplicaSet"), or NULL. */
const char *myce_k8s_pod_owner(const cJSON *pod, const char *kind);

/* The migration target: a copy of `src`'s spec placed on `node`
 * (spec.nodeName), with src's labels minus pod-template-hash (so that its
 * ReplicaSet ignores it until the commit) plus mycedrive.io/migration=<id>,
 * annotation mycedrive.io/source=<src name>, no owner references, no status,
 * name "<src name>-m<id>" (cut to 63 characters).  Fails with a clear
 * message when src is not a pod with a name and a spec. */
int myce_k8s_target_pod(const cJSON *src, const char *node, long migration_id, cJSON **out, struct myce_error **err);

/* Merge patch giving `target` src's pod-template-hash label (the ReplicaSet
 * adopts it) and dropping mycedrive.io/migration; NULL when src has no
 * pod-template-hash (a bare pod: nothing to adopt). */
cJSON *myce_k8s_adopt_patch(const cJSON *src);
/* Merge patch setting controller.kubernetes.io/pod-deletion-cost. */
cJSON *myce_k8s_deletion_cost_patch(int cost);

#endif
