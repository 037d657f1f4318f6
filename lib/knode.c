/* Node and Lease objects (see knode.h). */
#include "knode.h"

#include "kpod.h"
#include "util.h"

#include <stdbool.h>

static void label(cJSON *labels, const char *k, const char *v)
{
	cJSON_AddStringToObject(labels, k, v);
}

cJSON *myce_knode_object(const struct myce_knode *n)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "apiVersion", "v1");
	cJSON_AddStringToObject(o, "kind", "Node");
	cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(meta, "name", n->name);
	cJSON *labels = cJSON_AddObjectToObject(meta, "labels");
	label(labels, "kubernetes.io/hostname", n->name);
	label(labels, "kubernetes.io/os", "linux");
	label(labels, "kubernetes.io/arch", "amd64");
	label(labels, "mycedrive.io/embedded", "true");
	cJSON *spec = cJSON_AddObjectToObject(o, "spec");
	cJSON_AddStringToObject(spec, "podCIDR", n->pod_cidr);
	cJSON *cidrs = cJSON_AddArrayToObject(spec, "podCIDRs");
	cJSON_AddItemToArray(cidrs, cJSON_CreateString(n->pod_cidr));
	return o;
}

static cJSON *resources(const struct myce_knode *n)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "cpu", n->cpu);
	cJSON_AddStringToObject(r, "memory", n->memory);
	cJSON_AddStringToObject(r, "pods", n->pods);
	cJSON_AddStringToObject(r, "ephemeral-storage", "10Gi");
	return r;
}

static void cond(cJSON *list, const char *type, bool ok, const char *reason, const char *msg, const char *now,
		 const char *since)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "type", type);
	cJSON_AddStringToObject(c, "status", ok ? "True" : "False");
	cJSON_AddStringToObject(c, "reason", reason);
	cJSON_AddStringToObject(c, "message", msg);
	cJSON_AddStringToObject(c, "lastHeartbeatTime", now);
	cJSON_AddStringToObject(c, "lastTransitionTime", since);
	cJSON_AddItemToArray(list, c);
}

cJSON *myce_knode_status_patch(const struct myce_knode *n, int64_t now_us, int64_t since_us)
{
	_cleanup_free_ char *now = myce_k8s_time(now_us);
	_cleanup_free_ char *since = myce_k8s_time(since_us);
	cJSON *o = cJSON_CreateObject();
	cJSON *st = cJSON_AddObjectToObject(o, "status");
	cJSON *addrs = cJSON_AddArrayToObject(st, "addresses");
	cJSON *a = cJSON_CreateObject();
	cJSON_AddStringToObject(a, "type", "InternalIP");
	cJSON_AddStringToObject(a, "address", n->ip);
	cJSON_AddItemToArray(addrs, a);
	a = cJSON_CreateObject();
	cJSON_AddStringToObject(a, "type", "Hostname");
	cJSON_AddStringToObject(a, "address", n->name);
	cJSON_AddItemToArray(addrs, a);
	cJSON_AddItemToObject(st, "capacity", resources(n));
	cJSON_AddItemToObject(st, "allocatable", resources(n));
	cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
	cond(conds, "MemoryPressure", false, "KubeletHasSufficientMemory", "embedded runtime", now, since);
	cond(conds, "DiskPressure", false, "KubeletHasNoDiskPressure", "embedded runtime", now, since);
	cond(conds, "PIDPressure", false, "KubeletHasSufficientPID", "embedded runtime", now, since);
	cond(conds, "Ready", true, "KubeletReady", "mycedrive node daemon is posting ready status", now, since);
	cJSON *info = cJSON_AddObjectToObject(st, "nodeInfo");
	static const char *const empty[] = {"machineID", "systemUUID", "bootID", "kernelVersion", "osImage"};
	for (size_t i = 0; i < ARRAY_SIZE(empty); i++)
		cJSON_AddStringToObject(info, empty[i], "");
	cJSON_AddStringToObject(info, "containerRuntimeVersion", "mycedrive://embedded");
	cJSON_AddStringToObject(info, "kubeletVersion", n->version);
	cJSON_AddStringToObject(info, "kubeProxyVersion", "");
	cJSON_AddStringToObject(info, "operatingSystem", "linux");
	cJSON_AddStringToObject(info, "architecture", "amd64");
	cJSON *ep = cJSON_AddObjectToObject(cJSON_AddObjectToObject(st, "daemonEndpoints"), "kubeletEndpoint");
	cJSON_AddNumberToObject(ep, "Port", n->port);
	return o;
}

cJSON *myce_knode_lease(const char *name, const char *node_uid, int duration_s, int64_t now_us)
{
	_cleanup_free_ char *now = myce_k8s_microtime(now_us);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "apiVersion", "coordination.k8s.io/v1");
	cJSON_AddStringToObject(o, "kind", "Lease");
	cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(meta, "name", name);
	cJSON_AddStringToObject(meta, "namespace", "kube-node-lease");
	if (node_uid) {
		/* Garbage-collected with its Node, as the kubelet's lease is. */
		cJSON *refs = cJSON_AddArrayToObject(meta, "ownerReferences");
		cJSON *r = cJSON_CreateObject();
		cJSON_AddStringToObject(r, "apiVersion", "v1");
		cJSON_AddStringToObject(r, "kind", "Node");
		cJSON_AddStringToObject(r, "name", name);
		cJSON_AddStringToObject(r, "uid", node_uid);
		cJSON_AddItemToArray(refs, r);
	}
	cJSON *spec = cJSON_AddObjectToObject(o, "spec");
	cJSON_AddStringToObject(spec, "holderIdentity", name);
	cJSON_AddNumberToObject(spec, "leaseDurationSeconds", duration_s);
	cJSON_AddStringToObject(spec, "renewTime", now);
	return o;
}
