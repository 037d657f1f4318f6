/* The coordinator's REST API: routing, request validation, the paper's
 * register / remove / migrate / copy and the reads.  Documented in
 * api/openapi.yaml. */
#include "coord.h"

#include "cluster.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <string.h>

static bool path_tail(const char *path, const char *prefix, const char **tail)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0 || !path[n])
		return false;
	*tail = path + n;
	return true;
}

static bool parse_id(const char *s, long *id, const char **rest)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || v < 0)
		return false;
	*id = v;
	*rest = end;
	return true;
}

/* An id in a request: a non-negative integer that fits (else NULL). */
static bool json_id(const cJSON *j, long *out)
{
	if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0 && j->valuedouble <= 1e15) ||
	    j->valuedouble != (double)(long)j->valuedouble)
		return false;
	*out = (long)j->valuedouble;
	return true;
}

static bool labels_valid(const cJSON *l)
{
	if (!l)
		return true;
	if (!cJSON_IsObject(l))
		return false;
	const cJSON *x;
	cJSON_ArrayForEach(x, l)
		if (!cJSON_IsString(x) || strlen(x->string) > 253 || strlen(x->valuestring) > 253)
			return false;
	return true;
}

/* lock held */
static void container_upsert(struct coord *c, const char *pod, const char *container, const char *node, long pod_id,
			     const cJSON *labels, const char *endpoint, const char *role)
{
	_cleanup_free_ char *ls = labels ? cJSON_PrintUnformatted(labels) : xstrdup("{}");
	_cleanup_free_ char *pid = pod_id >= 0 ? xasprintf("%ld", pod_id) : xstrdup("NULL");
	db_exec(c, NULL,
		"INSERT INTO containers(pod, container, node, pod_id, labels, endpoint, role, registered_us)"
		" VALUES(%Q, %Q, %Q, %s, %Q, %Q, %Q, %lld)"
		" ON CONFLICT(pod, container) DO UPDATE SET node = excluded.node,"
		" pod_id = COALESCE(excluded.pod_id, containers.pod_id),"
		" labels = excluded.labels, endpoint = excluded.endpoint, role = excluded.role,"
		" registered_us = excluded.registered_us",
		pod, container, node, pid, ls, endpoint, role, (long long)myce_wall_us());
}

/* register: an Execution Agent announces its container.  The agent of a pod
 * this coordinator created gives pod_id and learns whether it starts the
 * application or is the target of a migration and must wait; any other
 * agent gives pod, container, node and optional labels and endpoint. */
static void on_register(struct coord *c, const cJSON *b, struct myce_http_resp *resp)
{
	const cJSON *idj = cJSON_GetObjectItem(b, "pod_id");
	const char *node = myce_json_str(b, "node");
	const char *container = myce_json_str(b, "container");
	const cJSON *labels = cJSON_GetObjectItem(b, "labels");
	const cJSON *endpoint = cJSON_GetObjectItem(b, "endpoint");
	if (!node || !*node || strlen(node) > 253)
		return myce_http_error(resp, 400, "register needs node (a string)");
	if (!labels_valid(labels))
		return myce_http_error(resp, 400, "labels must be an object of strings");
	if (endpoint && !cJSON_IsString(endpoint))
		return myce_http_error(resp, 400, "endpoint must be a string");
	if (container && (!*container || strlen(container) > 253))
		return myce_http_error(resp, 400, "container must be a non-empty string");
	if (!idj) {
		const char *pod = myce_json_str(b, "pod");
		if (!pod || !*pod || strlen(pod) > 253 || !container)
			return myce_http_error(resp, 400, "register needs pod_id, or pod and container (strings)");
		/* Kubernetes mode: the node's local pod id of the agent's pod. */
		const cJSON *lj = cJSON_GetObjectItem(b, "local_id");
		long local = -1;
		if (lj && !json_id(lj, &local))
			return myce_http_error(resp, 400, "local_id must be a non-negative number");
		pthread_mutex_lock(&c->lock);
		/* The target pod of a Kubernetes-mode migration waits for its checkpoint. */
		long mid = k8s_mig_target_of(c, pod, local);
		container_upsert(c, pod, container, node, local, labels, endpoint ? endpoint->valuestring : NULL,
				 mid >= 0 ? "target" : "start");
		_cleanup_json_ cJSON *row = db_query_one(c, "SELECT id FROM containers WHERE pod = %Q AND container = %Q",
							 pod, container);
		pthread_cond_broadcast(&c->changed);
		pthread_mutex_unlock(&c->lock);
		resp->json = cJSON_CreateObject();
		cJSON_AddStringToObject(resp->json, "role", mid >= 0 ? "target" : "start");
		cJSON_AddNumberToObject(resp->json, "container_id", myce_json_num(row, "id", -1));
		if (mid >= 0)
			cJSON_AddNumberToObject(resp->json, "migration_id", (double)mid);
		return;
	}
	long id;
	if (!json_id(idj, &id))
		return myce_http_error(resp, 400, "pod_id must be a non-negative number");
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *p = db_query_one(c, "SELECT id, app, node, state, role FROM pods WHERE id = %ld", id);
	if (!p || strcmp(myce_json_str(p, "state"), "creating") != 0 || strcmp(myce_json_str(p, "node"), node) != 0) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, p ? 409 : 404, "pod %ld is not expected to register from %s", id, node);
	}
	bool target = !strcmp(myce_json_str(p, "role"), "target");
	db_exec(c, NULL, "UPDATE pods SET state = %Q WHERE id = %ld", target ? "waiting" : "running", id);
	_cleanup_free_ char *podname = xasprintf("pod%ld", id);
	container_upsert(c, podname, container ? container : myce_json_str(p, "app"), node, id, labels,
			 endpoint ? endpoint->valuestring : NULL, target ? "target" : "start");
	resp->json = cJSON_CreateObject();
	cJSON_AddStringToObject(resp->json, "role", target ? "target" : "start");
	if (target) {
		_cleanup_json_ cJSON *m = db_query_one(c, "SELECT id FROM migrations WHERE dst_pod = %ld", id);
		cJSON_AddNumberToObject(resp->json, "migration_id", myce_json_num(m, "id", -1));
	}
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
}

/* remove: an agent reports its container going away; the answer says
 * whether it must checkpoint first (its pod is the source of a migration)
 * or may simply exit. */
static void on_remove(struct coord *c, const cJSON *b, struct myce_http_resp *resp)
{
	const cJSON *idj = cJSON_GetObjectItem(b, "pod_id");
	const char *pod = myce_json_str(b, "pod"), *container = myce_json_str(b, "container");
	long rid = -1;
	if (idj && !json_id(idj, &rid))
		return myce_http_error(resp, 400, "pod_id must be a non-negative number");
	if (!idj && (!pod || !container))
		return myce_http_error(resp, 400, "remove needs pod_id, or pod and container");
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *row =
		idj ? db_query_one(c, "SELECT id AS pod_id FROM pods WHERE id = %ld AND state != 'deleted'", rid)
		    : db_query_one(c, "SELECT id, pod_id FROM containers WHERE pod = %Q AND container = %Q", pod, container);
	long pod_id = row ? (long)myce_json_num(row, "pod_id", -1) : -1;
	_cleanup_json_ cJSON *m = pod_id >= 0 ? db_query_one(c, "SELECT id FROM migrations WHERE src_pod = %ld AND outcome IS NULL",
							       pod_id)
					      : NULL;
	/* A source whose application already moved away (Kubernetes mode: the
	 * ReplicaSet deletes it after the hand-over): nothing to save, exit. */
	_cleanup_json_ cJSON *done = pod_id >= 0 && !m ? db_query_one(c, "SELECT id, dst_node FROM migrations WHERE src_pod = %ld"
									 " AND outcome = 'completed' ORDER BY id DESC", pod_id)
						       : NULL;
	if (row && !m && !idj) {
		db_exec(c, NULL, "DELETE FROM containers WHERE pod = %Q AND container = %Q", pod, container);
		/* The pod's last container: what it carried is free (Kubernetes mode). */
		_cleanup_json_ cJSON *left = db_query_one(c, "SELECT id FROM containers WHERE pod = %Q", pod);
		if (!left)
			k8s_carry_drop_pod(c, pod);
	}
	pthread_mutex_unlock(&c->lock);
	if (!row)
		return myce_http_error(resp, 404, "unknown container");
	resp->json = cJSON_CreateObject();
	cJSON_AddBoolToObject(resp->json, "checkpoint", m != NULL);
	if (m)
		cJSON_AddNumberToObject(resp->json, "migration_id", myce_json_num(m, "id", -1));
	if (done) {
		cJSON_AddBoolToObject(resp->json, "migrated", true);
		cJSON_AddNumberToObject(resp->json, "migration_id", myce_json_num(done, "id", -1));
		cJSON_AddStringToObject(resp->json, "to", myce_json_str(done, "dst_node"));
		cJSON_AddStringToObject(resp->json, "message", "already migrated, exit");
	}
}

static void on_copy(struct coord *c, const cJSON *b, struct myce_http_resp *resp)
{
	const cJSON *idj = cJSON_GetObjectItem(b, "migration_id");
	long mid;
	if (!json_id(idj, &mid))
		return myce_http_error(resp, 400, "copy needs migration_id (number)");
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *m = db_query_one(c, "SELECT id, dst_node FROM migrations WHERE id = %ld AND outcome IS NULL",
					       mid);
	pthread_mutex_unlock(&c->lock);
	if (!m)
		return myce_http_error(resp, 404, "no migration %ld in progress", mid);
	/* The local runtime streams node to node on its own; copy tells the
	 * agent where its checkpoint goes. */
	resp->json = cJSON_CreateObject();
	cJSON_AddStringToObject(resp->json, "dest_node", myce_json_str(m, "dst_node"));
}

/* A node reports that a carried address has no connection left (or has
 * outlived the bound): it becomes free again unless the pod is migrating. */
static void on_release(struct coord *c, long id, const cJSON *b, struct myce_http_resp *resp)
{
	const char *addr = myce_json_str(b, "addr");
	if (!addr)
		return myce_http_error(resp, 400, "release needs addr");
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *p = db_query_one(c, "SELECT p.carried, a.migrating FROM pods p JOIN apps a ON a.name = p.app "
						  "WHERE p.id = %ld AND p.state = 'running'", id);
	if (!p) {
		/* Not one of ours: a Kubernetes pod, id is its node's local id. */
		_cleanup_error_ struct myce_error *e = NULL;
		int rc = k8s_carry_release(c, id, addr, &e);
		pthread_mutex_unlock(&c->lock);
		if (rc == -ENOENT)
			return myce_http_error(resp, 404, "no running pod %ld", id);
		if (rc < 0)
			return myce_http_error(resp, rc == -EBUSY ? 409 : 500, "%s", myce_error_msg(e));
		resp->json = cJSON_CreateObject();
		cJSON_AddBoolToObject(resp->json, "released", true);
		return;
	}
	if (myce_json_num(p, "migrating", 0)) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 409, "pod %ld is migrating", id);
	}
	_cleanup_json_ cJSON *carried = cJSON_Parse(myce_json_str(p, "carried"));
	bool found = false;
	for (int i = cJSON_GetArraySize(carried) - 1; i >= 0; i--) {
		cJSON *x = cJSON_GetArrayItem(carried, i);
		if (cJSON_IsString(x) && !strcmp(x->valuestring, addr)) {
			cJSON_DeleteItemFromArray(carried, i);
			found = true;
		}
	}
	if (!found) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 404, "pod %ld does not carry %s", id, addr);
	}
	_cleanup_free_ char *cs = cJSON_PrintUnformatted(carried);
	db_exec(c, NULL, "UPDATE pods SET carried = %Q WHERE id = %ld", cs, id);
	net_route_addr_del(addr);
	pthread_mutex_unlock(&c->lock);
	double open = myce_json_num(b, "open_connections", 0);
	if (open > 0)
		log_warn("pod %ld: carried address %s released with %.0f connection(s) still open (time bound)", id, addr, open);
	else
		log_info("pod %ld: carried address %s released", id, addr);
	resp->json = cJSON_CreateObject();
	cJSON_AddBoolToObject(resp->json, "released", true);
}

static void on_migration_get(struct coord *c, long id, struct myce_http_resp *resp)
{
	pthread_mutex_lock(&c->lock);
	cJSON *m = mig_get(c, id);
	pthread_mutex_unlock(&c->lock);
	if (!m)
		return myce_http_error(resp, 404, "no migration %ld", id);
	const char *ph = myce_json_str(m, "phase");
	if (!strcmp(ph, "precopy") || !strcmp(ph, "dump") || !strcmp(ph, "transfer")) {
		_cleanup_free_ char *path = xasprintf("/v1/transfers/%ld", id);
		cJSON *t = NULL;
		if (node_call(c, myce_json_str(m, "from"), "GET", path, NULL, 1000, &t, NULL) == 200)
			cJSON_AddItemToObject(m, "progress", t);
		else
			cJSON_Delete(t);
	}
	resp->json = m;
}

void coord_api_handle(void *ctx, const struct myce_http_req *req, struct myce_http_resp *resp)
{
	struct coord *c = ctx;
	const char *m = req->method, *p = req->path, *tail, *rest;
	bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
	long id;
	if (req->body && !cJSON_IsObject(req->body))
		return myce_http_error(resp, 400, "request body must be a JSON object");
	/* Routes that need a body check it after routing: an unknown route is a 404. */
	static const char *const with_body[] = {"/v1/nodes", "/v1/apps", "/v1/register", "/v1/migrate", "/v1/copy"};
	for (size_t i = 0; post && !req->body && i < ARRAY_SIZE(with_body); i++)
		if (!strcmp(p, with_body[i]))
			return myce_http_error(resp, 400, "request body required");
	if (!strcmp(p, "/healthz") && get) {
		resp->json = cJSON_CreateObject();
		cJSON_AddStringToObject(resp->json, "status", "ok");
		return;
	}
	if (!strcmp(p, "/metrics") && get)
		return coord_metrics(c, resp);
	if (!strcmp(p, "/v1/nodes") && post) {
		const char *name = myce_json_str(req->body, "name"), *ip = myce_json_str(req->body, "ip");
		if (myce_node_index(name) < 0 || !ip)
			return myce_http_error(resp, 400, "node needs a name nodeN and an ip");
		pthread_mutex_lock(&c->lock);
		db_exec(c, NULL, "INSERT OR REPLACE INTO nodes(name, ip, registered_us) VALUES(%Q, %Q, %lld)", name, ip,
			(long long)myce_wall_us());
		pthread_mutex_unlock(&c->lock);
		resp->json = cJSON_CreateObject();
		cJSON_AddStringToObject(resp->json, "name", name);
		log_info("node %s registered (%s)", name, ip);
		return;
	}
	const char *list = NULL;
	if (get && !strcmp(p, "/v1/nodes"))
		list = "SELECT n.name, n.ip, (SELECT COUNT(*) FROM pods p WHERE p.node = n.name AND p.state != 'deleted') AS pods FROM nodes n ORDER BY n.name";
	else if (get && !strcmp(p, "/v1/containers"))
		list = "SELECT id, pod, container, node, pod_id, labels, endpoint, role, registered_us FROM containers ORDER BY id";
	else if (get && !strcmp(p, "/v1/pods"))
		list = "SELECT id, app, node, addr, carried, state, role FROM pods WHERE state != 'deleted' ORDER BY id";
	else if (get && !strcmp(p, "/v1/services"))
		list = "SELECT a.name, a.svc_ip, a.port, p.addr AS endpoint, p.node FROM apps a JOIN pods p ON p.id = a.pod_id ORDER BY a.name";
	else if (get && !strcmp(p, "/v1/apps"))
		list = "SELECT a.name, a.port, a.svc_ip, a.cmd, a.migrating, p.node, p.addr, p.id AS pod_id FROM apps a JOIN pods p ON p.id = a.pod_id ORDER BY a.name";
	else if (get && !strcmp(p, "/v1/migrations"))
		list = "SELECT id, app, src_node AS 'from', dst_node AS 'to', phase, outcome, reason FROM migrations ORDER BY id";
	if (list) {
		pthread_mutex_lock(&c->lock);
		resp->json = db_query(c, "%s", list);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (get && !strcmp(p, "/v1/carried")) {
		pthread_mutex_lock(&c->lock);
		resp->json = k8s_carry_list(c);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (!strcmp(p, "/v1/apps") && post)
		return apps_create(c, req->body, resp);
	if (path_tail(p, "/v1/apps/", &tail) && !strcmp(m, "DELETE"))
		return apps_delete(c, tail, resp);
	if (!strcmp(p, "/v1/register") && post)
		return on_register(c, req->body, resp);
	if (!strcmp(p, "/v1/remove") && post)
		return on_remove(c, req->body, resp);
	if (!strcmp(p, "/v1/migrate") && post)
		return mig_start(c, req->body, resp);
	if (!strcmp(p, "/v1/copy") && post)
		return on_copy(c, req->body, resp);
	if (path_tail(p, "/v1/pods/", &tail) && parse_id(tail, &id, &rest) && !strcmp(rest, "/release") && post)
		return on_release(c, id, req->body, resp);
	if (path_tail(p, "/v1/migrations/", &tail) && parse_id(tail, &id, &rest)) {
		if (!*rest && get)
			return on_migration_get(c, id, resp);
		if (!strcmp(rest, "/handoff") && post)
			return mig_handoff(c, id, resp);
		if (!strcmp(rest, "/freeze") && post)
			return mig_freeze(c, id, resp);
	}
	myce_http_error(resp, 404, "no route for %s %s", m, p);
}

