/* myce-node main: REST API for the coordinator, stream listener, reaper. */
#include "node.h"

#include "cluster.h"
#include "log.h"
#include "util.h"
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static bool path_id(const char *path, const char *prefix, long *id, const char **rest)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0)
		return false;
	char *end;
	errno = 0;
	long v = strtol(path + n, &end, 10);
	if (errno || end == path + n || v < 0)
		return false;
	*id = v;
	*rest = end;
	return true;
}

static void handler(void *ctx, const struct myce_http_req *req, struct myce_http_resp *resp)
{
	struct node *n = ctx;
	const char *m = req->method, *path = req->path, *rest = NULL;
	long id;
	if (!strcmp(path, "/healthz")) {
		resp->json = cJSON_CreateObject();
		cJSON_AddStringToObject(resp->json, "status", "ok");
		cJSON_AddStringToObject(resp->json, "node", n->name);
		return;
	}
	if (!strcmp(path, "/v1/pods") && !strcmp(m, "GET")) {
		resp->json = cJSON_CreateArray();
		pthread_mutex_lock(&n->lock);
		for (struct pod *p = n->pods; p; p = p->next)
			cJSON_AddItemToArray(resp->json, pod_to_json(p));
		pthread_mutex_unlock(&n->lock);
		return;
	}
	if (!strcmp(path, "/v1/pods") && !strcmp(m, "POST")) {
		if (!req->body)
			return myce_http_error(resp, 400, "missing pod spec");
		struct pod *p;
		_cleanup_error_ struct myce_error *e = NULL;
		if (pod_create(n, req->body, &p, &e) < 0)
			return myce_http_error(resp, e && e->code == EINVAL ? 400 : e && e->code == EEXIST ? 409 : 500,
					       "%s", myce_error_msg(e));
		pthread_mutex_lock(&n->lock);
		resp->json = pod_to_json(p);
		pthread_mutex_unlock(&n->lock);
		resp->status = 201;
		log_info("pod %ld (%s) created at %s", p->id, p->app, p->addr);
		return;
	}
	if (path_id(path, "/v1/pods/", &id, &rest)) {
		if (!*rest && !strcmp(m, "DELETE")) {
			_cleanup_error_ struct myce_error *e = NULL;
			if (pod_delete(n, id, &e) < 0)
				return myce_http_error(resp, e && e->code == ENOENT ? 404 : 500, "%s", myce_error_msg(e));
			log_info("pod %ld deleted", id);
			resp->json = cJSON_CreateObject();
			cJSON_AddBoolToObject(resp->json, "deleted", true);
			return;
		}
		if (!strcmp(rest, "/send") && !strcmp(m, "POST"))
			return node_send(n, id, req->body, resp);
		if (!strcmp(rest, "/restore") && !strcmp(m, "POST"))
			return node_restore_local(n, id, resp);
		if (!strcmp(rest, "/unlock") && !strcmp(m, "POST"))
			return node_unlock(n, id, resp);
	}
	if (path_id(path, "/v1/migrations/", &id, &rest) && !*rest && !strcmp(m, "GET")) {
		resp->json = node_send_record(n, id);
		if (!resp->json)
			myce_http_error(resp, 404, "this node has no record of migration %ld", id);
		return;
	}
	if (path_id(path, "/v1/pods/", &id, &rest) && !strcmp(rest, "/agent") && !strcmp(m, "GET"))
		return node_agent_status(n, id, resp);
	if (path_id(path, "/v1/transfers/", &id, &rest) && !*rest && !strcmp(m, "GET")) {
		resp->json = node_transfer_get(n, id);
		if (!resp->json)
			myce_http_error(resp, 404, "no transfer for migration %ld in progress", id);
		return;
	}
	myce_http_error(resp, 404, "no route for %s %s", m, path);
}

static int register_node(struct node *n, struct myce_error **err)
{
	_cleanup_free_ char *url = xasprintf("%s/v1/nodes", n->coord_url);
	_cleanup_json_ cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "name", n->name);
	cJSON_AddStringToObject(body, "ip", n->ip);
	for (int attempt = 0;; attempt++) {
		_cleanup_error_ struct myce_error *e = NULL;
		int st = myce_http_call_ca("POST", url, n->token, n->ca_file, body, 5000, NULL, &e);
		if (st == 200 || st == 201)
			return 0;
		if ((st >= 400 && st < 500) || attempt >= 150)
			return myce_error_set(err, EPROTO, "register node with coordinator: %s", myce_error_msg(e));
		usleep(100 * 1000);
	}
}

int main(int argc, char **argv)
{
	struct node n = {.carry_max_s = 3600};
	const char *token_file = NULL, *kubeconfig = NULL, *netns = NULL;
	static const struct option opts[] = {{"name", required_argument, 0, 'n'},
					     {"coordinator", required_argument, 0, 'c'},
					     {"token-file", required_argument, 0, 't'},
					     {"carry-max-s", required_argument, 0, 'm'},
					     {"ca", required_argument, 0, 'a'},
					     {"kubeconfig", required_argument, 0, 'k'},
					     {"netns", required_argument, 0, 'N'},
					     {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': n.name = optarg; break;
		case 'c': n.coord_url = optarg; break;
		case 't': token_file = optarg; break;
		case 'm': n.carry_max_s = atof(optarg); break;
		case 'a': n.ca_file = optarg; break;
		case 'k': kubeconfig = optarg; break;
		case 'N': netns = optarg; break;
		default: return 2;
		}
	}
	if (!n.name || !n.coord_url || !token_file || (n.idx = myce_node_index(n.name)) < 0) {
		fprintf(stderr, "usage: myce-node --name nodeN --coordinator URL --token-file F [--ca FILE] [--carry-max-s S]"
				" [--kubeconfig FILE [--netns NAME]]\n");
		return 2;
	}
	myce_log_init(n.name, MYCE_LOG_INFO);
	_cleanup_error_ struct myce_error *e = NULL;
	/* --netns: started in the namespace where the API server is reachable
	 * (the host's); keep that one for the Kubernetes client and move into
	 * the node's before any thread exists (threads inherit it). */
	_cleanup_close_ int api_ns = -1;
	if (netns) {
		api_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		_cleanup_free_ char *path = xasprintf("/run/netns/%s", netns);
		_cleanup_close_ int nfd = open(path, O_RDONLY | O_CLOEXEC);
		if (api_ns < 0 || nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
			log_error("enter network namespace %s: %s", netns, strerror(errno));
			return 1;
		}
	}
	n.token = myce_token_load(token_file, &e);
	if (!n.token) {
		log_error("%s", myce_error_msg(e));
		return 1;
	}
	n.ip = myce_node_ip(n.idx);
	n.exe_dir = myce_exe_dir();
	pthread_mutex_init(&n.lock, NULL);
	prctl(PR_SET_CHILD_SUBREAPER, 1);

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGCHLD);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	_cleanup_free_ char *listen = xasprintf("%s:%d", n.ip, MYCE_NODE_PORT);
	struct myce_http_server *srv = myce_http_server_new(listen, n.token, handler, &n, &e);
	if (!srv || node_recv_start(&n, &e) < 0 || addrgc_start(&n, &e) < 0) {
		log_error("%s", myce_error_msg(e));
		return 1;
	}
	if (register_node(&n, &e) < 0) {
		log_error("%s", myce_error_msg(e));
		myce_http_server_free(srv);
		return 1;
	}
	{
		_cleanup_free_ char *url = xasprintf("%s/v1/pods", n.coord_url);
		_cleanup_json_ cJSON *live = NULL;
		if (myce_http_call_ca("GET", url, n.token, n.ca_file, NULL, 5000, &live, NULL) == 200)
			pods_reconcile(&n, live);
	}
	struct kubelet *kubelet = NULL;
	if (kubeconfig && kubelet_start(&n, kubeconfig, api_ns, &kubelet, &e) < 0) {
		log_error("%s", myce_error_msg(e));
		myce_http_server_free(srv);
		pods_delete_all(&n);
		return 1;
	}
	log_info("node daemon %s up on %s (mycedrive %s%s)", n.name, listen, MYCE_VERSION,
		 kubeconfig ? ", Kubernetes mode" : "");
	for (;;) {
		siginfo_t si;
		int s = sigwaitinfo(&sigs, &si);
		if (s == SIGCHLD) {
			/* Only agents: other threads wait for their own children (ip, tc). */
			pods_reap(&n);
			continue;
		}
		if (s == SIGTERM || s == SIGINT)
			break;
	}
	log_info("shutting down: deleting pods");
	kubelet_stop(kubelet);
	myce_http_server_free(srv);
	pods_delete_all(&n);
	return 0;
}
