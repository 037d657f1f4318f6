/* The local control channel between a node daemon and the Execution Agent of
 * a pod on that node: one JSON message each way over a SOCK_SEQPACKET unix
 * socket in the pod's directory (reachable from both mount namespaces, no
 * network round trip, nothing crosses a site link). */
#ifndef MYCE_AGENTCTL_H
#define MYCE_AGENTCTL_H

#include "error.h"

#include <cjson/cJSON.h>

#define MYCE_AGENTCTL_MAX (64 * 1024)

/* Client: sends req, waits up to timeout_ms for the answer. */
int myce_agentctl_call(const char *sock_path, const cJSON *req, long timeout_ms, cJSON **resp,
		       struct myce_error **err);
/* Server side: a listening socket at path (replaces a stale one). */
int myce_agentctl_listen(const char *path, struct myce_error **err);
/* Reads one request from an accepted connection. */
int myce_agentctl_recv(int fd, cJSON **msg, struct myce_error **err);
int myce_agentctl_send(int fd, const cJSON *msg, struct myce_error **err);

#endif
