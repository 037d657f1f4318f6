/* The Node object and its heartbeats: the Lease in kube-node-lease renewed
 * every 10 s (what the node-lifecycle controller watches), the Ready
 * condition re-posted every 60 s. */
#include "kubelet.h"

#include "cluster.h"
#include "knode.h"
#include "log.h"
#include "util.h"
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define LEASE_DURATION_S 40
#define LEASE_RENEW_S 10
#define STATUS_EVERY_S 60

struct node_info {
	struct myce_knode kn;
	char cpu[16], mem[32], version[64];
	char *podnet;
};

static void node_info(struct kubelet *k, struct node_info *ni)
{
	snprintf(ni->cpu, sizeof(ni->cpu), "%ld", sysconf(_SC_NPROCESSORS_ONLN));
	snprintf(ni->mem, sizeof(ni->mem), "%lldKi",
		 (long long)sysconf(_SC_PHYS_PAGES) * (long long)sysconf(_SC_PAGESIZE) / 1024);
	snprintf(ni->version, sizeof(ni->version), "v%s-mycedrive", MYCE_VERSION);
	ni->podnet = myce_node_podnet(k->n->idx);
	ni->kn = (struct myce_knode){.name = k->n->name, .ip = k->n->ip, .pod_cidr = ni->podnet, .cpu = ni->cpu,
				     .memory = ni->mem, .pods = "110", .version = ni->version, .port = MYCE_NODE_PORT};
}

static char *node_path(struct kubelet *k)
{
	_cleanup_free_ char *name = myce_k8s_escape(k->n->name);
	return xasprintf("/api/v1/nodes/%s", name);
}

static int post_status(struct kubelet *k, const struct node_info *ni, struct myce_error **err)
{
	_cleanup_json_ cJSON *patch = myce_knode_status_patch(&ni->kn, myce_wall_us(), k->node_since_us);
	_cleanup_free_ char *base = node_path(k);
	_cleanup_free_ char *path = xasprintf("%s/status", base);
	_cleanup_json_ cJSON *out = NULL;
	int rc = myce_k8s_patch(k->api, path, MYCE_K8S_PATCH_MERGE, patch, &out, err);
	if (rc < 0)
		return rc;
	if (rc >= 300)
		return myce_k8s_status_error(rc, out, "node status", err);
	return 0;
}

/* Creates the Node (or finds it, after a restart of this daemon) and posts
 * its status: addresses, capacity, Ready. */
int kl_node_register(struct kubelet *k, struct myce_error **err)
{
	struct node_info ni;
	node_info(k, &ni);
	_cleanup_free_ char *podnet = ni.podnet;
	_cleanup_json_ cJSON *obj = myce_knode_object(&ni.kn);
	_cleanup_free_ char *path = node_path(k);
	k->node_since_us = myce_wall_us();
	for (int attempt = 0;; attempt++) {
		_cleanup_json_ cJSON *out = NULL;
		_cleanup_error_ struct myce_error *e = NULL;
		int rc = myce_k8s_create(k->api, "/api/v1/nodes", obj, &out, &e);
		if (rc == 409) {
			cJSON_Delete(out);
			out = NULL;
			rc = myce_k8s_get(k->api, path, &out, &e);
		}
		if (rc == 200 || rc == 201) {
			const char *uid = myce_json_str(cJSON_GetObjectItem(out, "metadata"), "uid");
			k->node_uid = uid ? xstrdup(uid) : NULL;
			break;
		}
		if (rc > 0)
			myce_k8s_status_error(rc, out, "register node", &e);
		/* The API server may still be starting: retry for 30 s. */
		if (attempt >= 60 || (rc >= 400 && rc < 500 && rc != 429))
			return myce_error_set(err, e ? e->code : EPROTO, "register node %s: %s", k->n->name,
					      myce_error_msg(e));
		usleep(500 * 1000);
	}
	if (post_status(k, &ni, err) < 0)
		return myce_error_wrap(err, "node %s", k->n->name);
	log_info("node %s registered with the Kubernetes API (uid %s)", k->n->name, k->node_uid ? k->node_uid : "?");
	return 0;
}

static int renew_lease(struct kubelet *k, struct myce_error **err)
{
	_cleanup_json_ cJSON *lease = myce_knode_lease(k->n->name, k->node_uid, LEASE_DURATION_S, myce_wall_us());
	_cleanup_free_ char *name = myce_k8s_escape(k->n->name);
	_cleanup_free_ char *path = xasprintf("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/%s", name);
	_cleanup_json_ cJSON *patch = cJSON_CreateObject();
	cJSON_AddItemReferenceToObject(patch, "spec", cJSON_GetObjectItem(lease, "spec"));
	_cleanup_json_ cJSON *out = NULL;
	int rc = myce_k8s_patch(k->api, path, MYCE_K8S_PATCH_MERGE, patch, &out, err);
	if (rc == 404) {
		cJSON_Delete(out);
		out = NULL;
		rc = myce_k8s_create(k->api, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease,
				     &out, err);
	}
	if (rc < 0)
		return rc;
	if (rc >= 300)
		return myce_k8s_status_error(rc, out, "lease", err);
	return 0;
}

static void *lease_loop(void *arg)
{
	struct kubelet *k = arg;
	struct node_info ni;
	node_info(k, &ni);
	_cleanup_free_ char *podnet = ni.podnet;
	int64_t next_status = myce_now_us() + STATUS_EVERY_S * 1000000LL;
	for (;;) {
		_cleanup_error_ struct myce_error *e = NULL;
		if (renew_lease(k, &e) < 0)
			log_warn("node %s: renew lease: %s", k->n->name, myce_error_msg(e));
		if (myce_now_us() >= next_status) {
			_cleanup_error_ struct myce_error *e2 = NULL;
			if (post_status(k, &ni, &e2) < 0)
				log_warn("node %s: %s", k->n->name, myce_error_msg(e2));
			next_status = myce_now_us() + STATUS_EVERY_S * 1000000LL;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += LEASE_RENEW_S;
		pthread_mutex_lock(&k->lock);
		/* The condition is also signalled for pod events: wait out the period. */
		while (!k->stopping && pthread_cond_timedwait(&k->cond, &k->lock, &ts) != ETIMEDOUT)
			;
		bool stop = k->stopping;
		pthread_mutex_unlock(&k->lock);
		if (stop)
			return NULL;
	}
}

int kl_lease_start(struct kubelet *k, struct myce_error **err)
{
	_cleanup_error_ struct myce_error *e = NULL;
	/* The first renewal before the pods arrive, so the node is ready at once. */
	if (renew_lease(k, &e) < 0)
		log_warn("node %s: lease: %s", k->n->name, myce_error_msg(e));
	if (pthread_create(&k->lease_thread, NULL, lease_loop, k) != 0)
		return myce_error_set(err, EAGAIN, "start the lease thread");
	k->lease_started = true;
	return 0;
}

void kl_lease_stop(struct kubelet *k)
{
	if (!k->lease_started)
		return;
	pthread_join(k->lease_thread, NULL);
	k->lease_started = false;
}
