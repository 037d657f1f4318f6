/* Services and EndpointSlices -> the host's service rules, as kube-proxy's
 * nftables mode does it: ClusterIP . protocol . port picks a per-service
 * chain through a verdict map; the chain DNATs to one of the service's
 * endpoints (numgen random when there are several); a service without
 * endpoints is rejected at once instead of timing out.  Pure functions:
 * myce-proxy (src/proxy/) applies the text, unit tests read it. */
#ifndef MYCE_KSVC_H
#define MYCE_KSVC_H

#include <cjson/cJSON.h>

struct myce_ksvc_ep {
	char *ip;
	int port;
};

struct myce_ksvc_entry {
	char *id;    /* "ns/name:portname" */
	char *ip;    /* ClusterIP */
	int port;
	char *proto; /* "tcp", "udp", "sctp" */
	struct myce_ksvc_ep *eps;
	int n_eps;
};

struct myce_ksvc_map {
	struct myce_ksvc_entry *e;
	int n;
};

/* services: Service objects; slices: EndpointSlice objects (any order).
 * Each ClusterIP service port gets the ready endpoints of its slices, or the
 * serving ones (e.g. terminating but still serving) when none is ready.
 * Entries and endpoints are sorted, so equal inputs give equal rules. */
struct myce_ksvc_map *myce_ksvc_compute(const cJSON *services, const cJSON *slices);
void myce_ksvc_map_free(struct myce_ksvc_map *m);
/* One nft transaction that replaces table `ip <table>` with the map's rules.
 * masq_cidr (may be NULL): connections from these sources (the pods) to a
 * service are masqueraded, so that the reply comes back through this
 * namespace even when the endpoint is the client itself or its neighbour
 * on the same node, which would otherwise answer directly, un-translated. */
char *myce_ksvc_nft(const struct myce_ksvc_map *m, const char *table, const char *masq_cidr);
/* Deletes table `ip <table>` (also when it does not exist). */
char *myce_ksvc_nft_delete(const char *table);

#endif
