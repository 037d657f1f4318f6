/* The source pod after a committed migration (Kubernetes mode): CRIU's
 * network lock stays in the pod's namespace after the dump, so that the
 * source kernel never answers the moved connections with RST.  Once the
 * coordinator has routed the addresses to the destination, no packet of
 * theirs reaches the source any more, and the lock would only cut the
 * pod off (its preStop hook must still reach the coordinator). */
#include "node.h"

#include "cluster.h"
#include "log.h"
#include "netns.h"
#include "nft.h"
#include "util.h"

#include <errno.h>

static int unlock_inside(void *arg, struct myce_error **err)
{
	(void)arg;
	return myce_nft_delete_tables_prefix("CRIU-", err);
}

void node_unlock(struct node *n, long pod_id, struct myce_http_resp *resp)
{
	pthread_mutex_lock(&n->lock);
	bool exists = pod_find(n, pod_id) != NULL;
	pthread_mutex_unlock(&n->lock);
	if (!exists)
		return myce_http_error(resp, 404, "no pod %ld on %s", pod_id, n->name);
	_cleanup_free_ char *ns = myce_pod_netns(pod_id);
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_close_ int nsfd = myce_netns_open(ns, &e);
	if (nsfd < 0 || myce_netns_run(nsfd, unlock_inside, NULL, &e) < 0)
		return myce_http_error(resp, 500, "pod %ld: remove the network lock: %s", pod_id, myce_error_msg(e));
	log_info("pod %ld: network lock removed (its application moved away)", pod_id);
	resp->json = cJSON_CreateObject();
	cJSON_AddBoolToObject(resp->json, "unlocked", true);
}
