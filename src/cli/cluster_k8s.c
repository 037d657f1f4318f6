/* The Kubernetes side of `mycectl cluster up|down --kubeconfig FILE`: the
 * API must answer before anything is built, the node daemons' Node objects
 * must be Ready before `up` returns, and `down` deletes the Nodes it made
 * (their Leases go with them: the Node owns its Lease). */
#include "cli.h"

#include "cluster.h"
#include "k8s.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

int cluster_k8s_check(const char *kubeconfig, char **abs, struct myce_error **err)
{
	char buf[PATH_MAX];
	if (!realpath(kubeconfig, buf))
		return myce_error_errno(err, "kubeconfig %s", kubeconfig);
	_cleanup_k8s_ struct myce_k8s *api = NULL;
	if (myce_k8s_from_kubeconfig(buf, NULL, &api, err) < 0)
		return myce_error_wrap(err, "kubeconfig %s", buf);
	myce_k8s_set_timeout(api, 5000);
	_cleanup_json_ cJSON *out = NULL;
	int rc = myce_k8s_get(api, "/api/v1/namespaces/kube-node-lease", &out, err);
	if (rc < 0)
		return myce_error_wrap(err, "Kubernetes API %s", myce_k8s_server(api));
	if (rc != 200)
		return myce_k8s_status_error(rc, out, "Kubernetes API: namespace kube-node-lease", err);
	*abs = xstrdup(buf);
	return 0;
}

static bool node_ready(const cJSON *node)
{
	const cJSON *c;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(node, "status"), "conditions"))
		if (!strcmp(myce_json_str(c, "type") ? myce_json_str(c, "type") : "", "Ready"))
			return !strcmp(myce_json_str(c, "status") ? myce_json_str(c, "status") : "", "True");
	return false;
}

int cluster_k8s_wait_nodes(const char *kubeconfig, int nodes, struct myce_error **err)
{
	_cleanup_k8s_ struct myce_k8s *api = NULL;
	if (myce_k8s_from_kubeconfig(kubeconfig, NULL, &api, err) < 0)
		return -1;
	myce_k8s_set_timeout(api, 5000);
	int ready = 0;
	for (int t = 0; t < 300; t++) {
		ready = 0;
		for (int i = 1; i <= nodes; i++) {
			_cleanup_free_ char *path = xasprintf("/api/v1/nodes/node%d", i);
			_cleanup_json_ cJSON *out = NULL;
			if (myce_k8s_get(api, path, &out, NULL) == 200 && node_ready(out))
				ready++;
		}
		if (ready == nodes)
			return 0;
		usleep(100 * 1000);
	}
	return myce_error_set(err, ETIMEDOUT, "only %d of %d Nodes Ready in the API after 30 s (see %s/logs)", ready,
			      nodes, MYCE_RUN_DIR);
}

void cluster_k8s_delete_nodes(const char *kubeconfig, int nodes, bool quiet)
{
	_cleanup_k8s_ struct myce_k8s *api = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	if (myce_k8s_from_kubeconfig(kubeconfig, NULL, &api, &e) < 0) {
		if (!quiet)
			fprintf(stderr, "cluster down: Node objects not deleted: %s\n", myce_error_msg(e));
		return;
	}
	myce_k8s_set_timeout(api, 5000);
	for (int i = 1; i <= nodes; i++) {
		_cleanup_free_ char *path = xasprintf("/api/v1/nodes/node%d", i);
		_cleanup_json_ cJSON *out = NULL;
		_cleanup_error_ struct myce_error *de = NULL;
		int rc = myce_k8s_delete(api, path, NULL, &out, &de);
		if (rc > 0 && rc != 200 && rc != 404)
			myce_k8s_status_error(rc, out, path, &de);
		if ((rc < 0 || (rc != 200 && rc != 404)) && !quiet)
			fprintf(stderr, "cluster down: delete Node node%d: %s\n", i, myce_error_msg(de));
	}
}
