/* The embedded local edge cluster's layout: names and addresses derived from
 * node and pod numbers, in one place.
 *
 *   host netns (client site, router "switch"): bridge myce0 10.77.0.1/24,
 *       coordinator on 10.77.0.1:7700, service addresses 10.96.0.0/24 (nft DNAT)
 *   node i: netns myce-node<i>, eth0 10.77.0.(10+i)/24, pods from 10.78.i.0/24,
 *       node daemon on :7701, checkpoint stream on :7702
 *   pod p: netns myce-pod<p>, eth0 <addr>/32 (+ carried addresses), routed /32
 *       from the node through veth mycp<p> (proxy ARP, no shared L2)
 */
#ifndef MYCE_CLUSTER_H
#define MYCE_CLUSTER_H

#include "error.h"

#include <stdbool.h>

#define MYCE_RUN_DIR "/run/mycedrive"
#define MYCE_BRIDGE "myce0"
#define MYCE_BRIDGE_IP "10.77.0.1"
#define MYCE_NODE_NET "10.77.0.0/24"
#define MYCE_POD_NET "10.78.0.0/16"
#define MYCE_SVC_NET "10.96.0.0/24"
#define MYCE_COORD_PORT 7700
#define MYCE_NODE_PORT 7701
#define MYCE_STREAM_PORT 7702
#define MYCE_MAX_NODES 50
#define MYCE_POD_GW "169.254.1.1"
#define MYCE_SVC_TABLE "mycedrive-svc"
#define MYCE_GUARD_TABLE "myce-guard"
/* TLS of the coordinator, made at `cluster up` (lib/tlsgen.c); clients
 * trust MYCE_CA_FILE.  Absent (cluster up --no-tls): plain HTTP. */
#define MYCE_CA_FILE MYCE_RUN_DIR "/ca.pem"
#define MYCE_TLS_CERT MYCE_RUN_DIR "/tls.crt"
#define MYCE_TLS_KEY MYCE_RUN_DIR "/tls.key"
/* Application processes start at this PID inside their pod, so a restore
 * never collides with the agent's own children (criu swrk, helpers). */
#define MYCE_APP_PID_BASE 30000

char *myce_node_name(int idx);    /* "node3" */
char *myce_node_netns(int idx);   /* "myce-node3" */
char *myce_node_ip(int idx);      /* "10.77.0.13" */
char *myce_node_hostveth(int idx);/* "myce-n3" */
char *myce_node_podnet(int idx);  /* "10.78.3.0/24" */
/* Parses "nodeN" into N (1..MYCE_MAX_NODES) or returns -1. */
int myce_node_index(const char *name);
char *myce_pod_netns(long id);    /* "myce-pod17" */
char *myce_pod_veth(long id);     /* "mycp17" */
char *myce_pod_dir(long id);      /* MYCE_RUN_DIR/pods/17 */
char *myce_coord_url(void);       /* http://10.77.0.1:7700 */
char *myce_token_path(void);

#endif
