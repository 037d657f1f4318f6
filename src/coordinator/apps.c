/* Applications (`mycectl run`): one pod and one service each. */
#include "coord.h"

#include "cluster.h"
#include "frame.h"
#include "httpc.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int node_call(struct coord *c, const char *node, const char *method, const char *path, const cJSON *body,
	      long timeout_ms, cJSON **out, struct myce_error **err)
{
	int idx = myce_node_index(node);
	if (idx < 0)
		return myce_error_set(err, EINVAL, "bad node name %s", node);
	_cleanup_free_ char *ip = myce_node_ip(idx);
	_cleanup_free_ char *url = xasprintf("http://%s:%d%s", ip, MYCE_NODE_PORT, path);
	return myce_httpc_call(method, url, c->token, body, timeout_ms, out, err);
}

static bool addr_used(const cJSON *pods, const char *addr)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, pods)
	{
		const char *a = myce_json_str(p, "addr");
		if (a && !strcmp(a, addr))
			return true;
		_cleanup_json_ cJSON *carried = cJSON_Parse(myce_json_str(p, "carried") ? myce_json_str(p, "carried") : "[]");
		const cJSON *x;
		cJSON_ArrayForEach(x, carried)
			if (cJSON_IsString(x) && !strcmp(x->valuestring, addr))
				return true;
	}
	return false;
}

char *pods_alloc_addr(struct coord *c, const char *node)
{
	int idx = myce_node_index(node);
	/* An address is taken while any live pod owns or carries it: one that
	 * still has connections on another node is never handed out again. */
	_cleanup_json_ cJSON *pods = db_query(c, "SELECT addr, carried FROM pods WHERE state != 'deleted'");
	for (int host = 2; host < 255; host++) {
		char *a = xasprintf("10.78.%d.%d", idx, host);
		if (!addr_used(pods, a))
			return a;
		free(a);
	}
	return NULL;
}

bool pods_wait_state(struct coord *c, long id, const char *s1, const char *s2, int timeout_ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	for (;;) {
		_cleanup_json_ cJSON *p = db_query_one(c, "SELECT state FROM pods WHERE id = %ld", id);
		const char *st = myce_json_str(p, "state");
		if (st && (!strcmp(st, s1) || (s2 && !strcmp(st, s2))))
			return true;
		if (pthread_cond_timedwait(&c->changed, &c->lock, &dl) == ETIMEDOUT)
			return false;
	}
}

bool app_ready(const char *addr, int port, int timeout_ms)
{
	for (int64_t end = myce_now_us() + (int64_t)timeout_ms * 1000; myce_now_us() < end;) {
		int fd = myce_tcp_connect(addr, port, 500, NULL);
		if (fd >= 0) {
			close(fd);
			return true;
		}
		usleep(20 * 1000);
	}
	return false;
}

static char *alloc_svc_ip(struct coord *c)
{
	_cleanup_json_ cJSON *apps = db_query(c, "SELECT svc_ip FROM apps");
	for (int host = 10; host < 255; host++) {
		char *a = xasprintf("10.96.0.%d", host);
		bool used = false;
		const cJSON *x;
		cJSON_ArrayForEach(x, apps)
			if (!strcmp(myce_json_str(x, "svc_ip"), a))
				used = true;
		if (!used)
			return a;
		free(a);
	}
	return NULL;
}

void apps_create(struct coord *c, const cJSON *body, struct myce_http_resp *resp)
{
	const char *name = myce_json_str(body, "name");
	const char *node = myce_json_str(body, "node");
	const cJSON *port_j = cJSON_GetObjectItem(body, "port");
	const cJSON *cmd = cJSON_GetObjectItem(body, "cmd");
	if (!myce_name_valid(name))
		return myce_http_error(resp, 400, "name must be a DNS label of at most 40 characters ([a-z0-9-])");
	if (!node)
		return myce_http_error(resp, 400, "node is required");
	if (!cJSON_IsNumber(port_j) || port_j->valuedouble < 1 || port_j->valuedouble > 65535 ||
	    port_j->valuedouble != (int)port_j->valuedouble)
		return myce_http_error(resp, 400, "port must be an integer in 1..65535");
	if (!cJSON_IsArray(cmd) || cJSON_GetArraySize(cmd) < 1)
		return myce_http_error(resp, 400, "cmd must be a non-empty array of strings");
	const cJSON *x;
	cJSON_ArrayForEach(x, cmd)
		if (!cJSON_IsString(x))
			return myce_http_error(resp, 400, "cmd must be a non-empty array of strings");
	if (!*cJSON_GetArrayItem(cmd, 0)->valuestring)
		return myce_http_error(resp, 400, "cmd[0] (the program) must not be empty");
	int port = (int)port_j->valuedouble;

	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *n = db_query_one(c, "SELECT name FROM nodes WHERE name = %Q", node);
	_cleanup_json_ cJSON *dup = db_query_one(c, "SELECT name FROM apps WHERE name = %Q", name);
	_cleanup_free_ char *addr = n && !dup ? pods_alloc_addr(c, node) : NULL;
	_cleanup_free_ char *svc = n && !dup ? alloc_svc_ip(c) : NULL;
	_cleanup_free_ char *cmds = cJSON_PrintUnformatted(cmd);
	long pod_id = -1;
	_cleanup_error_ struct myce_error *e = NULL;
	if (!n) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 404, "unknown node %s", node);
	}
	if (dup) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 409, "application %s already exists", name);
	}
	if (!addr || !svc) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 507, "no free %s address", addr ? "service" : "pod");
	}
	int64_t now = myce_wall_us();
	if (db_exec(c, &e, "BEGIN; INSERT INTO pods(app, node, addr, state, role, created_us) VALUES(%Q, %Q, %Q, 'creating', 'start', %lld);",
		    name, node, addr, (long long)now) == 0) {
		pod_id = (long)db_last_id(c);
		if (db_exec(c, &e, "INSERT INTO apps(name, port, svc_ip, cmd, pod_id, created_us) VALUES(%Q, %d, %Q, %Q, %ld, %lld); COMMIT;",
			    name, port, svc, cmds, pod_id, (long long)now) < 0)
			db_exec(c, NULL, "ROLLBACK;");
	}
	pthread_mutex_unlock(&c->lock);
	if (e)
		return myce_http_error(resp, 500, "%s", myce_error_msg(e));

	_cleanup_json_ cJSON *spec = cJSON_CreateObject();
	cJSON_AddNumberToObject(spec, "id", (double)pod_id);
	cJSON_AddStringToObject(spec, "app", name);
	cJSON_AddStringToObject(spec, "addr", addr);
	cJSON_AddItemToObject(spec, "cmd", cJSON_Duplicate(cmd, true));
	int st = node_call(c, node, "POST", "/v1/pods", spec, 30000, NULL, &e);
	pthread_mutex_lock(&c->lock);
	bool ok = st == 201 && pods_wait_state(c, pod_id, "running", NULL, 20000);
	pthread_mutex_unlock(&c->lock);
	/* Readiness: the application accepts connections on its port. */
	if (ok && !app_ready(addr, port, 20000)) {
		ok = false;
		myce_error_set(&e, ETIMEDOUT, "application does not accept connections on %s:%d", addr, port);
	}
	pthread_mutex_lock(&c->lock);
	if (ok)
		ok = net_service_set(svc, port, NULL, addr, &e) == 0;
	if (!ok) {
		db_exec(c, NULL, "DELETE FROM apps WHERE name = %Q; UPDATE pods SET state = 'deleted' WHERE id = %ld;"
				 "DELETE FROM containers WHERE pod_id = %ld;", name, pod_id, pod_id);
		pthread_mutex_unlock(&c->lock);
		_cleanup_free_ char *path = xasprintf("/v1/pods/%ld", pod_id);
		node_call(c, node, "DELETE", path, NULL, 30000, NULL, NULL);
		return myce_http_error(resp, 502, "start %s on %s: %s", name, node,
				       e ? myce_error_msg(e) : "the agent did not register in time");
	}
	resp->json = db_query_one(c, "SELECT a.name, a.port, a.svc_ip, p.node, p.addr, p.id AS pod_id FROM apps a "
				     "JOIN pods p ON p.id = a.pod_id WHERE a.name = %Q", name);
	pthread_mutex_unlock(&c->lock);
	resp->status = 201;
	log_info("app %s running on %s at %s, service %s:%d", name, node, addr, svc, port);
}

void apps_delete(struct coord *c, const char *name, struct myce_http_resp *resp)
{
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *a = db_query_one(c, "SELECT a.name, a.port, a.svc_ip, a.migrating, p.id, p.node, p.addr, p.carried "
						  "FROM apps a JOIN pods p ON p.id = a.pod_id WHERE a.name = %Q", name);
	if (!a) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 404, "unknown application %s", name);
	}
	if (myce_json_num(a, "migrating", 0)) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 409, "application %s is migrating", name);
	}
	long id = (long)myce_json_num(a, "id", -1);
	net_service_del(myce_json_str(a, "svc_ip"), (int)myce_json_num(a, "port", 0), NULL);
	_cleanup_json_ cJSON *carried = cJSON_Parse(myce_json_str(a, "carried"));
	const cJSON *x;
	cJSON_ArrayForEach(x, carried)
		net_route_addr_del(x->valuestring);
	db_exec(c, NULL, "DELETE FROM apps WHERE name = %Q; UPDATE pods SET state = 'deleted' WHERE id = %ld;"
			 "DELETE FROM containers WHERE pod_id = %ld;", name, id, id);
	pthread_mutex_unlock(&c->lock);
	_cleanup_free_ char *path = xasprintf("/v1/pods/%ld", id);
	node_call(c, myce_json_str(a, "node"), "DELETE", path, NULL, 30000, NULL, NULL);
	resp->json = cJSON_CreateObject();
	cJSON_AddStringToObject(resp->json, "deleted", name);
}
