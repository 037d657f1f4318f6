/* The Node and Lease objects a kubelet keeps in the API: pure builders,
 * so that unit tests check them without an API server. */
#ifndef MYCE_KNODE_H
#define MYCE_KNODE_H

#include <cjson/cJSON.h>
#include <stdint.h>

struct myce_knode {
	const char *name;     /* "node1" */
	const char *ip;       /* InternalIP */
	const char *pod_cidr; /* "10.78.1.0/24" */
	const char *cpu;      /* capacity, e.g. "2" */
	const char *memory;   /* e.g. "4012345Ki" */
	const char *pods;     /* e.g. "110" */
	const char *version;  /* reported as kubeletVersion */
	int port;             /* daemonEndpoints.kubeletEndpoint.Port */
};

/* The Node to create: labels (hostname, os, arch, mycedrive.io/embedded),
 * spec.podCIDR(s). */
cJSON *myce_knode_object(const struct myce_knode *n);
/* {"status": {...}}: addresses, capacity, allocatable, conditions with
 * heartbeat `now_us` (Ready True; the pressure conditions False), nodeInfo. */
cJSON *myce_knode_status_patch(const struct myce_knode *n, int64_t now_us, int64_t since_us);
/* The node's Lease in kube-node-lease: holder = node, renewTime = now. */
cJSON *myce_knode_lease(const char *name, const char *node_uid, int duration_s, int64_t now_us);

#endif
