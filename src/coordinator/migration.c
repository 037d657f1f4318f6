/* A live migration, phase by phase (see docs/architecture.md):
 *   accepted -> prepare (destination pod created, agent registers and waits)
 *   -> dump (source freezes; from here the app is stopped)
 *   -> transfer (hand-off of the carried addresses runs alongside)
 *   -> restore -> committed, or -> rolled back with the app on the source.
 * Every phase is recorded before it starts. */
#include "coord.h"

#include "cluster.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <string.h>

struct mig {
	struct coord *c;
	long id;
	char *app, *src_node, *dst_node, *dst_addr, *mode;
	long src_pod, dst_pod;
	cJSON *carried; /* addresses the destination takes over */
	cJSON *cmd;
	int level;
};

static void mig_free(struct mig *m)
{
	free(m->app);
	free(m->src_node);
	free(m->dst_node);
	free(m->dst_addr);
	free(m->mode);
	cJSON_Delete(m->carried);
	cJSON_Delete(m->cmd);
	free(m);
}

/* Test hook: MYCE_FAULT=crash-<point> makes the coordinator die at that
 * point as abruptly as kill -9 (no cleanup, no flush beyond SQLite's own
 * commits), so the tests can show recovery from each phase. */
void mig_crash_point(const char *name)
{
	const char *f = getenv("MYCE_FAULT");
	if (f && !strcmp(f, name)) {
		log_warn("injected crash at %s", name);
		_exit(137);
	}
}

/* lock held */
void mig_set_phase(struct coord *c, long id, const char *phase)
{
	int64_t now = myce_wall_us();
	db_exec(c, NULL,
		"UPDATE migrations SET phase = %Q, updated_us = %lld WHERE id = %ld;"
		"INSERT INTO phases(migration_id, phase, t_us) VALUES(%ld, %Q, %lld);",
		phase, (long long)now, id, id, phase, (long long)now);
	pthread_cond_broadcast(&c->changed);
	log_info("migration %ld: phase %s", id, phase);
}

void mig_phase(struct coord *c, long id, const char *p)
{
	pthread_mutex_lock(&c->lock);
	mig_set_phase(c, id, p);
	pthread_mutex_unlock(&c->lock);
}

static void phase(struct mig *m, const char *p)
{
	mig_phase(m->c, m->id, p);
}

void mig_finish(struct coord *c, long id, const char *app, const char *outcome, const char *reason, const cJSON *result)
{
	_cleanup_free_ char *res = result ? cJSON_PrintUnformatted(result) : NULL;
	pthread_mutex_lock(&c->lock);
	mig_set_phase(c, id, outcome);
	db_exec(c, NULL, "UPDATE migrations SET outcome = %Q, reason = %Q, result = COALESCE(%Q, result) WHERE id = %ld",
		outcome, reason, res, id);
	if (app)
		db_exec(c, NULL, "UPDATE apps SET migrating = 0 WHERE name = %Q", app);
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
	if (reason)
		log_error("migration %ld: %s: %s", id, outcome, reason);
	else
		log_info("migration %ld: %s", id, outcome);
}

static void finish(struct mig *m, const char *outcome, const char *reason, const cJSON *result)
{
	mig_finish(m->c, m->id, m->app, outcome, reason, result);
}

void mig_route_carried(long id, const cJSON *carried, const char *node)
{
	int idx = myce_node_index(node);
	_cleanup_free_ char *via = myce_node_ip(idx);
	const cJSON *a;
	cJSON_ArrayForEach(a, carried)
	{
		_cleanup_error_ struct myce_error *e = NULL;
		if (cJSON_IsString(a) && net_route_addr(a->valuestring, via, &e) < 0)
			log_error("migration %ld: %s", id, myce_error_msg(e));
	}
}

static void route_carried(struct mig *m, const char *node)
{
	mig_route_carried(m->id, m->carried, node);
}

static void delete_pod(struct mig *m, const char *node, long pod)
{
	_cleanup_free_ char *path = xasprintf("/v1/pods/%ld", pod);
	_cleanup_error_ struct myce_error *e = NULL;
	int st = node_call(m->c, node, "DELETE", path, NULL, 30000, NULL, &e);
	if (st != 200 && st != 404)
		log_warn("migration %ld: delete pod %ld on %s: %s", m->id, pod, node, myce_error_msg(e));
	pthread_mutex_lock(&m->c->lock);
	db_exec(m->c, NULL, "UPDATE pods SET state = 'deleted' WHERE id = %ld; DELETE FROM containers WHERE pod_id = %ld",
		pod, pod);
	pthread_mutex_unlock(&m->c->lock);
}

/* Failure after the dump: the image on the source is the truth. */
static void rollback(struct mig *m, const cJSON *res, const char *why)
{
	phase(m, "rollback");
	bool dumped = myce_json_bool(res, "dumped", false);
	pthread_mutex_lock(&m->c->lock);
	_cleanup_json_ cJSON *row = db_query_one(m->c, "SELECT handoff FROM migrations WHERE id = %ld", m->id);
	pthread_mutex_unlock(&m->c->lock);
	/* The hand-off may have happened even if we never heard of it (a
	 * restarted coordinator): routing back is idempotent. */
	if (myce_json_num(row, "handoff", 0) || dumped)
		route_carried(m, m->src_node);
	/* The destination goes first: its pod must never serve. */
	delete_pod(m, m->dst_node, m->dst_pod);
	_cleanup_free_ char *reason = xstrdup(why);
	if (dumped) {
		_cleanup_free_ char *path = xasprintf("/v1/pods/%ld/restore", m->src_pod);
		_cleanup_error_ struct myce_error *e = NULL;
		int st = node_call(m->c, m->src_node, "POST", path, NULL, 120000, NULL, &e);
		if (st != 200) {
			free(reason);
			reason = xasprintf("%s; restore on the source failed too: %s", why, myce_error_msg(e));
		}
	}
	pthread_mutex_lock(&m->c->lock);
	db_exec(m->c, NULL, "UPDATE pods SET state = 'running' WHERE id = %ld", m->src_pod);
	pthread_mutex_unlock(&m->c->lock);
	finish(m, "rolled-back", reason, res);
}

static void commit(struct mig *m, const cJSON *res)
{
	struct coord *c = m->c;
	_cleanup_error_ struct myce_error *e = NULL;
	int64_t t0 = myce_now_us();
	/* Idempotent, so that a restarted coordinator can commit again: the
	 * hand-off's routes (in case the node's call never reached us) and the
	 * service endpoint, replacing whatever endpoint the state holds. */
	route_carried(m, m->dst_node);
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *app = db_query_one(c, "SELECT a.svc_ip, a.port, p.addr FROM apps a JOIN pods p ON p.id = a.pod_id "
						    "WHERE a.name = %Q", m->app);
	if (net_service_set(myce_json_str(app, "svc_ip"), (int)myce_json_num(app, "port", 0), myce_json_str(app, "addr"),
			    m->dst_addr, &e) < 0)
		log_error("migration %ld: service switch: %s", m->id, myce_error_msg(e));
	db_exec(c, NULL,
		"UPDATE apps SET pod_id = %ld WHERE name = %Q;"
		"UPDATE pods SET state = 'running' WHERE id = %ld;"
		"UPDATE pods SET state = 'deleted' WHERE id = %ld;",
		m->dst_pod, m->app, m->dst_pod, m->src_pod);
	pthread_mutex_unlock(&c->lock);
	mig_crash_point("crash-in-commit");
	cJSON *r = cJSON_Duplicate(res, true);
	cJSON_AddNumberToObject(r, "service_switch_ms", (double)(myce_now_us() - t0) / 1000.0);
	finish(m, "completed", NULL, r);
	cJSON_Delete(r);
	/* After the commit point: the source never resumes. */
	delete_pod(m, m->src_node, m->src_pod);
}

/* The destination pod for the node daemon: a migration target carries the
 * source's addresses and waits; a redeploy starts the application fresh. */
static cJSON *dst_pod_spec(const struct mig *m, bool target)
{
	cJSON *spec = cJSON_CreateObject();
	cJSON_AddNumberToObject(spec, "id", (double)m->dst_pod);
	cJSON_AddStringToObject(spec, "app", m->app);
	cJSON_AddStringToObject(spec, "addr", m->dst_addr);
	if (target) {
		cJSON_AddItemToObject(spec, "carried", cJSON_Duplicate(m->carried, true));
		cJSON_AddBoolToObject(spec, "target", true);
	}
	cJSON_AddItemToObject(spec, "cmd", cJSON_Duplicate(m->cmd, true));
	return spec;
}

/* The Kubernetes baseline: stop the application, start it fresh on the
 * destination (its memory is lost), point the service at it. */
static void redeploy(struct mig *m)
{
	struct coord *c = m->c;
	_cleanup_error_ struct myce_error *e = NULL;
	phase(m, "stop");
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *src = db_query_one(c, "SELECT addr, carried FROM pods WHERE id = %ld", m->src_pod);
	_cleanup_json_ cJSON *app = db_query_one(c, "SELECT svc_ip, port FROM apps WHERE name = %Q", m->app);
	/* New connections go to the new pod's address at once: until it is up
	 * their SYNs go unanswered and are retransmitted there, instead of
	 * sticking (conntrack) to the address of a pod that is gone. */
	net_service_set(myce_json_str(app, "svc_ip"), (int)myce_json_num(app, "port", 0), myce_json_str(src, "addr"),
			m->dst_addr, NULL);
	db_exec(c, NULL, "UPDATE apps SET pod_id = %ld WHERE name = %Q;", m->dst_pod, m->app);
	pthread_mutex_unlock(&c->lock);
	delete_pod(m, m->src_node, m->src_pod);
	_cleanup_json_ cJSON *old = cJSON_Parse(myce_json_str(src, "carried"));
	const cJSON *a;
	cJSON_ArrayForEach(a, old)
		net_route_addr_del(a->valuestring);
	phase(m, "start");
	_cleanup_json_ cJSON *spec = dst_pod_spec(m, false);
	int st = node_call(c, m->dst_node, "POST", "/v1/pods", spec, 30000, NULL, &e);
	pthread_mutex_lock(&c->lock);
	bool ok = st == 201 && pods_wait_state(c, m->dst_pod, "running", NULL, 20000);
	pthread_mutex_unlock(&c->lock);
	int port = (int)myce_json_num(app, "port", 0);
	if (ok && !app_ready(m->dst_addr, port, 20000))
		ok = false;
	if (!ok) {
		/* Nothing to roll back to: the state was given up with the pod.
		 * The application is gone; its service has no endpoint. */
		_cleanup_free_ char *why = xasprintf("start on %s: %s", m->dst_node,
						     e ? myce_error_msg(e) : "application not ready in time");
		delete_pod(m, m->dst_node, m->dst_pod);
		pthread_mutex_lock(&c->lock);
		net_service_del(myce_json_str(app, "svc_ip"), (int)myce_json_num(app, "port", 0), NULL);
		db_exec(c, NULL, "DELETE FROM apps WHERE name = %Q", m->app);
		pthread_mutex_unlock(&c->lock);
		finish(m, "failed", why, NULL);
		return;
	}
	finish(m, "completed", NULL, NULL);
}

static void conclude(struct mig *m, int st, const cJSON *res, struct myce_error *e);

const char *mig_send_phase(const char *mode)
{
	return strcmp(mode, "live") && strcmp(mode, "stop-and-copy") ? "precopy" : "dump";
}

int mig_send(struct coord *c, long id, const char *src_node, long src_pod, const char *dst_node, long dst_pod,
	     const cJSON *carried, const char *mode, int level, cJSON **res, struct myce_error **err)
{
	_cleanup_json_ cJSON *req = cJSON_CreateObject();
	_cleanup_free_ char *dst_ip = myce_node_ip(myce_node_index(dst_node));
	cJSON_AddNumberToObject(req, "migration_id", (double)id);
	cJSON_AddStringToObject(req, "dest_ip", dst_ip);
	cJSON_AddNumberToObject(req, "dest_pod_id", (double)dst_pod);
	cJSON_AddItemToObject(req, "carried", cJSON_Duplicate(carried, true));
	cJSON_AddNumberToObject(req, "zstd_level", level);
	/* stop-and-copy: the paper's CRIU baseline, connections not preserved. */
	cJSON_AddBoolToObject(req, "tcp_close", !strcmp(mode, "stop-and-copy"));
	/* auto: the source node measures the link and the memory and decides. */
	cJSON_AddStringToObject(req, "precopy", !strcmp(mode, "precopy") ? "on" : !strcmp(mode, "auto") ? "auto" : "off");
	_cleanup_free_ char *path = xasprintf("/v1/pods/%ld/send", src_pod);
	return node_call(c, src_node, "POST", path, req, 600000, res, err);
}

static void *mig_thread(void *arg)
{
	struct mig *m = arg;
	struct coord *c = m->c;
	_cleanup_error_ struct myce_error *e = NULL;
	if (!strcmp(m->mode, "redeploy")) {
		redeploy(m);
		mig_free(m);
		return NULL;
	}

	/* prepare: the destination pod, its agent registers and waits. */
	phase(m, "prepare");
	_cleanup_json_ cJSON *spec = dst_pod_spec(m, true);
	int st = node_call(c, m->dst_node, "POST", "/v1/pods", spec, 30000, NULL, &e);
	pthread_mutex_lock(&c->lock);
	bool ready = st == 201 && pods_wait_state(c, m->dst_pod, "waiting", NULL, 20000);
	pthread_mutex_unlock(&c->lock);
	if (!ready) {
		_cleanup_free_ char *why = xasprintf("prepare: destination pod on %s: %s", m->dst_node,
						     e ? myce_error_msg(e) : "agent did not register in time");
		delete_pod(m, m->dst_node, m->dst_pod);
		finish(m, "failed", why, NULL);
		mig_free(m);
		return NULL;
	}

	mig_crash_point("crash-in-prepare");
	/* (pre-copy +) dump + transfer + restore, driven by the source node,
	 * which reports the freeze (POST .../freeze) when it starts. */
	phase(m, mig_send_phase(m->mode));
	_cleanup_json_ cJSON *res = NULL;
	myce_error_freep(&e);
	st = mig_send(c, m->id, m->src_node, m->src_pod, m->dst_node, m->dst_pod, m->carried, m->mode, m->level, &res, &e);
	conclude(m, st, res, e);
	mig_free(m);
	return NULL;
}

/* Commit or roll back from the source node's answer to "send". */
static void conclude(struct mig *m, int st, const cJSON *res, struct myce_error *e)
{
	struct coord *c = m->c;
	if (st != 200) {
		/* The source node answered nothing usable: assume the worst (dumped). */
		_cleanup_free_ char *why = xasprintf("source node %s: %s", m->src_node, myce_error_msg(e));
		_cleanup_json_ cJSON *fake = cJSON_CreateObject();
		cJSON_AddBoolToObject(fake, "dumped", true);
		rollback(m, fake, why);
	} else if (!myce_json_bool(res, "ok", false)) {
		const char *fp = myce_json_str(res, "failed_phase");
		const char *er = myce_json_str(res, "error");
		_cleanup_free_ char *why = xasprintf("%s: %s", fp ? fp : "migration", er ? er : "failed");
		if (myce_json_bool(res, "dumped", false)) {
			rollback(m, res, why);
		} else {
			delete_pod(m, m->dst_node, m->dst_pod);
			pthread_mutex_lock(&c->lock);
			db_exec(c, NULL, "UPDATE pods SET state = 'running' WHERE id = %ld", m->src_pod);
			pthread_mutex_unlock(&c->lock);
			finish(m, "failed", why, res);
		}
	} else {
		mig_crash_point("crash-before-commit");
		commit(m, res);
	}
}

void mig_start(struct coord *c, const cJSON *body, struct myce_http_resp *resp)
{
	/* A pod of the Kubernetes API, by name (docs/k8s-migration.md). */
	if (cJSON_GetObjectItem(body, "pod"))
		return k8s_mig_start(c, body, resp);
	const char *app = myce_json_str(body, "app");
	const char *to = myce_json_str(body, "to");
	const char *mode = myce_json_str(body, "mode");
	if (cJSON_GetObjectItem(body, "mode") && !mode)
		return myce_http_error(resp, 400, "mode must be a string");
	if (!app || !to)
		return myce_http_error(resp, 400, "migrate needs \"app\" (or \"pod\" in Kubernetes mode) and \"to\"");
	if (!mode)
		mode = "auto";
	if (strcmp(mode, "auto") && strcmp(mode, "live") && strcmp(mode, "precopy") && strcmp(mode, "stop-and-copy") &&
	    strcmp(mode, "redeploy"))
		return myce_http_error(resp, 400, "unknown mode %s (auto, live, precopy, stop-and-copy, redeploy)", mode);
	bool redeploy = !strcmp(mode, "redeploy");
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *a = db_query_one(c, "SELECT a.name, a.cmd, a.migrating, p.id, p.node, p.addr, p.carried "
						  "FROM apps a JOIN pods p ON p.id = a.pod_id WHERE a.name = %Q", app);
	_cleanup_json_ cJSON *n = db_query_one(c, "SELECT name FROM nodes WHERE name = %Q", to);
	const char *err = NULL;
	int status = 0;
	if (!a) {
		status = 404;
		err = "unknown application";
	} else if (!n) {
		status = 404;
		err = "unknown destination node";
	} else if (!strcmp(myce_json_str(a, "node"), to)) {
		status = 409;
		err = "application already runs on that node";
	} else if (myce_json_num(a, "migrating", 0)) {
		status = 409;
		err = "application is already migrating";
	}
	_cleanup_free_ char *dst_addr = err ? NULL : pods_alloc_addr(c, to);
	if (!err && !dst_addr) {
		status = 507;
		err = "no free pod address on the destination node";
	}
	if (err) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, status, "%s: %s", err, status == 404 && a ? to : app);
	}
	struct mig *m = xzalloc(sizeof(*m));
	m->c = c;
	m->app = xstrdup(app);
	m->src_node = xstrdup(myce_json_str(a, "node"));
	m->dst_node = xstrdup(to);
	m->dst_addr = steal_pointer(&dst_addr);
	m->src_pod = (long)myce_json_num(a, "id", -1);
	m->cmd = cJSON_Parse(myce_json_str(a, "cmd"));
	/* The destination carries the source's own address and all it carried. */
	m->carried = cJSON_Parse(myce_json_str(a, "carried"));
	cJSON_AddItemToArray(m->carried, cJSON_CreateString(myce_json_str(a, "addr")));
	m->level = c->zstd_level;
	m->mode = xstrdup(mode);
	if (redeploy) {
		cJSON_Delete(m->carried);
		m->carried = cJSON_CreateArray();
	}
	_cleanup_free_ char *carried = cJSON_PrintUnformatted(m->carried);
	int64_t now = myce_wall_us();
	_cleanup_error_ struct myce_error *e = NULL;
	int rc = db_exec(c, &e,
			 "BEGIN;"
			 "INSERT INTO pods(app, node, addr, carried, state, role, created_us) VALUES(%Q, %Q, %Q, %Q, 'creating', %Q, %lld);",
			 app, to, m->dst_addr, carried, redeploy ? "start" : "target", (long long)now);
	if (rc == 0) {
		m->dst_pod = (long)db_last_id(c);
		rc = db_exec(c, &e,
			     "INSERT INTO migrations(app, src_node, dst_node, src_pod, dst_pod, mode, phase, created_us, updated_us)"
			     " VALUES(%Q, %Q, %Q, %ld, %ld, %Q, 'accepted', %lld, %lld);",
			     app, m->src_node, to, m->src_pod, m->dst_pod, mode, (long long)now, (long long)now);
	}
	if (rc == 0) {
		m->id = (long)db_last_id(c);
		rc = db_exec(c, &e,
			     "INSERT INTO phases(migration_id, phase, t_us) VALUES(%ld, 'accepted', %lld);"
			     "UPDATE apps SET migrating = 1 WHERE name = %Q; COMMIT;",
			     m->id, (long long)now, app);
	}
	if (rc < 0) {
		db_exec(c, NULL, "ROLLBACK;");
		pthread_mutex_unlock(&c->lock);
		mig_free(m);
		return myce_http_error(resp, 500, "%s", myce_error_msg(e));
	}
	resp->json = mig_get(c, m->id);
	pthread_mutex_unlock(&c->lock);
	resp->status = 202;
	log_info("migration %ld: %s %s -> %s accepted", m->id, app, m->src_node, to);
	pthread_t t;
	if (pthread_create(&t, NULL, mig_thread, m) != 0)
		abort();
	pthread_detach(t);
}

void mig_handoff(struct coord *c, long id, struct myce_http_resp *resp)
{
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *row = db_query_one(
		c, "SELECT m.phase, m.dst_node, COALESCE(k.carried, p.carried) AS carried FROM migrations m"
		   " LEFT JOIN pods p ON p.id = m.dst_pod LEFT JOIN k8s_migrations k ON k.migration_id = m.id"
		   " WHERE m.id = %ld AND (p.id IS NOT NULL OR k.migration_id IS NOT NULL)", id);
	if (!row || (strcmp(myce_json_str(row, "phase"), "dump") && strcmp(myce_json_str(row, "phase"), "precopy"))) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, row ? 409 : 404, "migration %ld is not waiting for a hand-off", id);
	}
	/* Recorded before the routes move, so a rollback knows to move them back. */
	db_exec(c, NULL, "UPDATE migrations SET handoff = 1 WHERE id = %ld", id);
	mig_set_phase(c, id, "transfer");
	pthread_mutex_unlock(&c->lock);
	mig_crash_point("crash-in-transfer");
	_cleanup_json_ cJSON *carried = cJSON_Parse(myce_json_str(row, "carried"));
	_cleanup_free_ char *via = myce_node_ip(myce_node_index(myce_json_str(row, "dst_node")));
	const cJSON *a;
	cJSON_ArrayForEach(a, carried)
	{
		_cleanup_error_ struct myce_error *e = NULL;
		if (net_route_addr(a->valuestring, via, &e) < 0)
			return myce_http_error(resp, 500, "%s", myce_error_msg(e));
	}
	resp->json = cJSON_CreateObject();
	cJSON_AddBoolToObject(resp->json, "ok", true);
}

static double ms_between(const cJSON *phases, const char *a, const char *b)
{
	double ta = -1, tb = -1;
	const cJSON *p;
	cJSON_ArrayForEach(p, phases)
	{
		const char *n = myce_json_str(p, "phase");
		if (ta < 0 && !strcmp(n, a))
			ta = myce_json_num(p, "t_us", -1);
		if (tb < 0 && !strcmp(n, b))
			tb = myce_json_num(p, "t_us", -1);
	}
	return ta >= 0 && tb >= 0 ? (tb - ta) / 1000.0 : -1;
}

/* The source node is about to freeze the application (after any pre-copy). */
void mig_freeze(struct coord *c, long id, struct myce_http_resp *resp)
{
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *row = db_query_one(c, "SELECT phase FROM migrations WHERE id = %ld", id);
	if (!row || strcmp(myce_json_str(row, "phase"), "precopy") != 0) {
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, row ? 409 : 404, "migration %ld is not in its pre-copy", id);
	}
	mig_set_phase(c, id, "dump");
	pthread_mutex_unlock(&c->lock);
	resp->json = cJSON_CreateObject();
	cJSON_AddBoolToObject(resp->json, "ok", true);
}

cJSON *mig_get(struct coord *c, long id)
{
	cJSON *m = db_query_one(c, "SELECT id, app, src_node AS 'from', dst_node AS 'to', src_pod, dst_pod, mode, phase,"
				   " outcome, reason, result, created_us, updated_us FROM migrations WHERE id = %ld", id);
	if (!m)
		return NULL;
	cJSON *phases = db_query(c, "SELECT phase, t_us FROM phases WHERE migration_id = %ld ORDER BY rowid", id);
	_cleanup_json_ cJSON *res = NULL;
	const char *rs = myce_json_str(m, "result");
	if (rs)
		res = cJSON_Parse(rs);
	cJSON_DeleteItemFromObject(m, "result");
	cJSON *t = cJSON_CreateObject();
	const char *end = myce_json_str(m, "outcome");
	double pre_ms = ms_between(phases, "precopy", "dump");
	cJSON_AddNumberToObject(t, "prepare_ms", ms_between(phases, "prepare", pre_ms >= 0 ? "precopy" : "dump"));
	if (pre_ms >= 0)
		cJSON_AddNumberToObject(t, "precopy_ms", pre_ms);
	if (res) {
		double dump = myce_json_num(res, "dump_ms", -1);
		double fs = myce_json_num(res, "freeze_start_wall_us", 0);
		double re = myce_json_num(res, "restore_end_wall_us", 0);
		cJSON_AddNumberToObject(t, "dump_ms", dump);
		cJSON_AddNumberToObject(t, "transfer_ms", myce_json_num(res, "transfer_ms", -1));
		cJSON_AddNumberToObject(t, "restore_ms", myce_json_num(res, "restore_ms", -1));
		cJSON_AddNumberToObject(t, "network_switch_ms",
					myce_json_num(res, "handoff_ms", 0) + myce_json_num(res, "service_switch_ms", 0));
		cJSON_AddNumberToObject(t, "freeze_window_ms", fs > 0 && re > fs ? (re - fs) / 1000.0 : -1);
		cJSON_AddNumberToObject(m, "bytes_raw", myce_json_num(res, "bytes_raw", 0));
		cJSON_AddNumberToObject(m, "bytes_wire", myce_json_num(res, "bytes_wire", 0));
		cJSON_AddNumberToObject(m, "zstd_level", myce_json_num(res, "zstd_level", 0));
		/* The processes the source's one CRIU dump covered. */
		const cJSON *procs = cJSON_GetObjectItem(res, "dumped_processes");
		if (procs)
			cJSON_AddItemToObject(m, "dumped_processes", cJSON_Duplicate(procs, true));
		const char *picked = myce_json_str(res, "mode_picked");
		if (picked) {
			cJSON_AddStringToObject(m, "mode_picked", picked);
			cJSON_AddStringToObject(m, "mode_reason", myce_json_str(res, "auto_reason"));
		}
		const cJSON *fdet = cJSON_GetObjectItem(res, "freeze_detail");
		if (fdet)
			cJSON_AddItemToObject(m, "freeze_detail", cJSON_Duplicate(fdet, true));
		const cJSON *pre = cJSON_GetObjectItem(res, "precopy");
		if (pre) {
			cJSON *pc = cJSON_Duplicate(pre, true);
			/* What crossed the link during the freeze, for comparison. */
			cJSON_AddNumberToObject(pc, "freeze_bytes_wire", myce_json_num(res, "bytes_wire", 0));
			cJSON_AddItemToObject(m, "precopy", pc);
		}
	}
	if (end)
		cJSON_AddNumberToObject(t, "total_ms", ms_between(phases, "accepted", end));
	cJSON_AddItemToObject(m, "timings", t);
	cJSON_AddItemToObject(m, "phases", phases);
	cJSON *k = db_query_one(c, "SELECT namespace, src_name AS pod, dst_name AS target_pod, src_uid, dst_uid, carried"
				   " FROM k8s_migrations WHERE migration_id = %ld", id);
	if (k) {
		cJSON *carried = cJSON_Parse(myce_json_str(k, "carried"));
		cJSON_DeleteItemFromObject(k, "carried");
		cJSON_AddItemToObject(k, "carried", carried ? carried : cJSON_CreateArray());
		cJSON_AddItemToObject(m, "kubernetes", k);
	}
	return m;
}

/* --- recovery: a restarted coordinator drives every migration that was in
 * flight to an end state, from what the nodes and agents know. ------------ */

cJSON *mig_agent_state(struct coord *c, const char *node, long pod)
{
	_cleanup_free_ char *path = xasprintf("/v1/pods/%ld/agent", pod);
	cJSON *out = NULL;
	if (node_call(c, node, "GET", path, NULL, 5000, &out, NULL) != 200) {
		cJSON_Delete(out);
		return NULL;
	}
	return out;
}

cJSON *mig_source_record(struct coord *c, const char *src_node, long id)
{
	_cleanup_free_ char *path = xasprintf("/v1/migrations/%ld", id);
	cJSON *rec = NULL;
	for (int i = 0; i < 6000; i++) {
		cJSON_Delete(rec);
		rec = NULL;
		int st = node_call(c, src_node, "GET", path, NULL, 5000, &rec, NULL);
		const char *state = myce_json_str(rec, "state");
		if (st != 200 || !state || strcmp(state, "running") != 0)
			break;
		usleep(100 * 1000);
	}
	return rec;
}

static void *recover_thread(void *arg)
{
	struct mig *m = arg;
	struct coord *c = m->c;
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *row = db_query_one(c, "SELECT phase FROM migrations WHERE id = %ld", m->id);
	pthread_mutex_unlock(&c->lock);
	const char *ph = myce_json_str(row, "phase");
	log_info("migration %ld: recovering from phase %s", m->id, ph);
	if (!strcmp(ph, "accepted") || !strcmp(ph, "prepare")) {
		/* Before the freeze: the source never stopped serving. */
		delete_pod(m, m->dst_node, m->dst_pod);
		finish(m, "failed", "coordinator restarted before the freeze; the application kept running on the source", NULL);
	} else if (!strcmp(ph, "stop") || !strcmp(ph, "start")) {
		finish(m, "failed", "coordinator restarted during a redeploy", NULL);
	} else if (!strcmp(ph, "rollback")) {
		_cleanup_json_ cJSON *r = cJSON_CreateObject();
		cJSON_AddBoolToObject(r, "dumped", true);
		rollback(m, r, "coordinator restarted during the rollback");
	} else {
		/* dump / transfer: the source node knows how its send ended. */
		_cleanup_json_ cJSON *rec = mig_source_record(c, m->src_node, m->id);
		const cJSON *res = cJSON_GetObjectItem(rec, "result");
		if (res) {
			conclude(m, 200, res, NULL);
		} else {
			/* The node forgot (it restarted): ask the agents. */
			_cleanup_json_ cJSON *dst = mig_agent_state(c, m->dst_node, m->dst_pod);
			_cleanup_json_ cJSON *src = mig_agent_state(c, m->src_node, m->src_pod);
			_cleanup_json_ cJSON *r = cJSON_CreateObject();
			const char *ds = myce_json_str(dst, "state"), *ss = myce_json_str(src, "state");
			if (ds && !strcmp(ds, "running")) {
				commit(m, r);
			} else {
				bool src_runs = ss && !strcmp(ss, "running");
				cJSON_AddBoolToObject(r, "dumped", !src_runs);
				rollback(m, r, "coordinator restarted; the source node had no record of the transfer");
			}
		}
	}
	mig_free(m);
	return NULL;
}

int mig_recover(struct coord *c)
{
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *rows = db_query(c,
		"SELECT m.id, m.app, m.mode, m.src_node, m.dst_node, m.src_pod, m.dst_pod, d.addr AS dst_addr, d.carried,"
		" a.cmd FROM migrations m JOIN pods d ON d.id = m.dst_pod JOIN apps a ON a.name = m.app"
		" WHERE m.outcome IS NULL AND m.id NOT IN (SELECT migration_id FROM k8s_migrations)");
	pthread_mutex_unlock(&c->lock);
	int n = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, rows)
	{
		struct mig *m = xzalloc(sizeof(*m));
		m->c = c;
		m->id = (long)myce_json_num(r, "id", -1);
		m->app = xstrdup(myce_json_str(r, "app"));
		m->mode = xstrdup(myce_json_str(r, "mode"));
		m->src_node = xstrdup(myce_json_str(r, "src_node"));
		m->dst_node = xstrdup(myce_json_str(r, "dst_node"));
		m->dst_addr = xstrdup(myce_json_str(r, "dst_addr"));
		m->src_pod = (long)myce_json_num(r, "src_pod", -1);
		m->dst_pod = (long)myce_json_num(r, "dst_pod", -1);
		m->carried = cJSON_Parse(myce_json_str(r, "carried"));
		m->cmd = cJSON_Parse(myce_json_str(r, "cmd"));
		m->level = c->zstd_level;
		pthread_t t;
		if (pthread_create(&t, NULL, recover_thread, m) != 0)
			abort();
		pthread_detach(t);
		n++;
	}
	return n + k8s_mig_recover(c);
}
