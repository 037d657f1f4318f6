/* Kubernetes mode: a pod of a Deployment migrated through the real
 * controllers (docs/k8s-migration.md).  Move first, then hand the object
 * over:
 *   accepted -> prepare (target pod T created on the destination through the
 *   API, without pod-template-hash, so its ReplicaSet ignores it; its agent
 *   registers and waits) -> precopy/dump/transfer (the embedded mode's
 *   node-to-node send) -> handover (host routes; deletion cost on S, the
 *   template hash on T: the ReplicaSet adopts T and deletes the not-Ready S)
 *   -> completed; or -> rollback (S restored from its local image, T deleted)
 *   -> rolled-back.
 * Every phase is recorded before it starts; a restarted coordinator drives a
 * migration left in flight to an end state (k8s_mig_recover), and the
 * hand-over is idempotent. */
#include "coord.h"

#include "cluster.h"
#include "k8s_pod.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#define ANN_CARRIED "mycedrive.io/carried"
#define ANN_MIGRATED_FROM "mycedrive.io/migrated-from"
/* On S at the hand-over: its kubelet keeps S Ready until it sees this. */
#define ANN_MIGRATED_TO "mycedrive.io/migrated-to"

struct kmig {
	struct coord *c;
	long id;
	char *ns, *src, *src_uid, *dst, *dst_uid, *hash;
	char *src_node, *dst_node, *mode;
	long src_local, dst_local;
	cJSON *carried;
	int level;
};

static void kmig_free(struct kmig *m)
{
	if (!m)
		return;
	free(m->ns);
	free(m->src);
	free(m->src_uid);
	free(m->dst);
	free(m->dst_uid);
	free(m->hash);
	free(m->src_node);
	free(m->dst_node);
	free(m->mode);
	cJSON_Delete(m->carried);
	free(m);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* lock held */
static struct kmig *kmig_load(struct coord *c, long id)
{
	_cleanup_json_ cJSON *r = db_query_one(
		c, "SELECT m.src_node, m.dst_node, m.src_pod, m.dst_pod, m.mode, k.namespace, k.src_name, k.src_uid,"
		   " k.dst_name, k.dst_uid, k.template_hash, k.carried FROM migrations m"
		   " JOIN k8s_migrations k ON k.migration_id = m.id WHERE m.id = %ld", id);
	if (!r)
		return NULL;
	struct kmig *m = xzalloc(sizeof(*m));
	m->c = c;
	m->id = id;
	m->ns = xstrdup(myce_json_str(r, "namespace"));
	m->src = xstrdup(myce_json_str(r, "src_name"));
	m->src_uid = xstrdup(myce_json_str(r, "src_uid"));
	m->dst = xstrdup(myce_json_str(r, "dst_name"));
	m->dst_uid = dup_or_null(myce_json_str(r, "dst_uid"));
	m->hash = dup_or_null(myce_json_str(r, "template_hash"));
	m->src_node = xstrdup(myce_json_str(r, "src_node"));
	m->dst_node = xstrdup(myce_json_str(r, "dst_node"));
	m->mode = xstrdup(myce_json_str(r, "mode"));
	m->src_local = (long)myce_json_num(r, "src_pod", -1);
	m->dst_local = (long)myce_json_num(r, "dst_pod", -1);
	m->carried = cJSON_Parse(myce_json_str(r, "carried"));
	if (!m->carried)
		m->carried = cJSON_CreateArray();
	m->level = c->zstd_level;
	return m;
}

static void phase(struct kmig *m, const char *p)
{
	mig_phase(m->c, m->id, p);
}

static void finish(struct kmig *m, const char *outcome, const char *reason, const cJSON *result)
{
	mig_finish(m->c, m->id, NULL, outcome, reason, result);
}

/* T must never serve once we give up: the API object goes first (so its
 * kubelet does not restart it), then the local pod, directly. */
static void remove_target(struct kmig *m)
{
	_cleanup_error_ struct myce_error *e = NULL;
	if (kobj_pod_delete(m->c, m->ns, m->dst, m->dst_uid, 0, &e) < 0)
		log_warn("migration %ld: %s", m->id, myce_error_msg(e));
	if (m->dst_local < 0)
		return;
	myce_error_freep(&e);
	_cleanup_free_ char *path = xasprintf("/v1/pods/%ld", m->dst_local);
	int st = node_call(m->c, m->dst_node, "DELETE", path, NULL, 30000, NULL, &e);
	if (st != 200 && st != 404)
		log_warn("migration %ld: delete local pod %ld on %s: %s (its kubelet removes it when it is back)", m->id,
			 m->dst_local, m->dst_node, myce_error_msg(e));
}

/* Failure after the dump: the image on the source is the truth. */
static void rollback(struct kmig *m, bool dumped, const char *why, const cJSON *res)
{
	struct coord *c = m->c;
	phase(m, "rollback");
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *row = db_query_one(c, "SELECT handoff FROM migrations WHERE id = %ld", m->id);
	pthread_mutex_unlock(&c->lock);
	if (myce_json_num(row, "handoff", 0) || dumped)
		mig_route_carried(m->id, m->carried, m->src_node);
	remove_target(m);
	_cleanup_free_ char *reason = xstrdup(why);
	if (dumped) {
		_cleanup_free_ char *path = xasprintf("/v1/pods/%ld/restore", m->src_local);
		_cleanup_error_ struct myce_error *e = NULL;
		int st = node_call(c, m->src_node, "POST", path, NULL, 120000, NULL, &e);
		if (st != 200) {
			free(reason);
			reason = xasprintf("%s; restore on the source failed too: %s", why, myce_error_msg(e));
		}
	}
	kobj_event(c, m->ns, m->src, m->src_uid, true, "MigrationRolledBack",
		   "migration %ld to %s rolled back, the application serves here: %s", m->id, m->dst_node, reason);
	finish(m, "rolled-back", reason, res);
}

/* Before the freeze: the source never stopped serving. */
static void fail_early(struct kmig *m, const char *why, const cJSON *res)
{
	remove_target(m);
	kobj_event(m->c, m->ns, m->src, m->src_uid, true, "MigrationRolledBack",
		   "migration %ld to %s failed before the freeze, the application kept serving here: %s", m->id,
		   m->dst_node, why);
	finish(m, "failed", why, res);
}

static bool target_ready(struct kmig *m)
{
	_cleanup_json_ cJSON *t = NULL;
	return kobj_pod_get(m->c, m->ns, m->dst, &t, NULL) == 0 && myce_k8s_pod_ready(t);
}

static bool source_ready(struct kmig *m)
{
	_cleanup_json_ cJSON *s = NULL;
	return kobj_pod_get(m->c, m->ns, m->src, &s, NULL) == 0 && myce_k8s_pod_ready(s);
}

/* The hand-over: idempotent, redone by a restarted coordinator.  The
 * ReplicaSet adopts T (template hash) and, having one pod too many, deletes
 * the not-Ready S (its deletion cost says the same). */
static int handover(struct kmig *m, struct myce_error **err)
{
	struct coord *c = m->c;
	/* T's kubelet reports it Ready once the restored application accepts
	 * connections; until then the ReplicaSet would see two not-Ready pods. */
	bool t_ready = false;
	for (int i = 0; i < 300 && !(t_ready = target_ready(m)); i++)
		usleep(100 * 1000);
	/* S stayed Ready while its application moved (no window without a
	 * ready endpoint); now it steps down: lowest deletion cost, and the
	 * mark its kubelet waits for to report it not Ready. */
	_cleanup_json_ cJSON *cost = myce_k8s_deletion_cost_patch(INT_MIN);
	_cleanup_free_ char *to = xasprintf("%s/%s", m->dst_node, m->dst);
	cJSON_AddStringToObject(cJSON_GetObjectItem(cJSON_GetObjectItem(cost, "metadata"), "annotations"),
				ANN_MIGRATED_TO, to);
	_cleanup_error_ struct myce_error *e = NULL;
	if (kobj_pod_patch(c, m->ns, m->src, cost, &e) < 0 && e->code != ENOENT)
		log_warn("migration %ld: deletion cost of the source: %s", m->id, myce_error_msg(e));
	/* A target that is still not Ready must not meet a Ready S in the
	 * ReplicaSet's ranking (it would delete T): wait for S to step down. */
	for (int i = 0; !t_ready && i < 100 && source_ready(m); i++)
		usleep(100 * 1000);
	cJSON *patch = cJSON_CreateObject();
	cJSON *meta = cJSON_AddObjectToObject(patch, "metadata");
	cJSON *labels = cJSON_AddObjectToObject(meta, "labels");
	if (m->hash)
		cJSON_AddStringToObject(labels, MYCE_K8S_LABEL_TEMPLATE_HASH, m->hash);
	cJSON_AddNullToObject(labels, MYCE_K8S_LABEL_MIGRATION);
	_cleanup_free_ char *from = xasprintf("%s/%s", m->src_node, m->src);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "annotations"), ANN_MIGRATED_FROM, from);
	int rc = kobj_pod_patch(c, m->ns, m->dst, patch, err);
	cJSON_Delete(patch);
	if (rc < 0)
		return myce_error_wrap(err, "hand the pod over to its ReplicaSet");
	/* A bare pod has no ReplicaSet to do it. */
	if (!m->hash && kobj_pod_delete(c, m->ns, m->src, m->src_uid, -1, err) < 0)
		return myce_error_wrap(err, "delete the source pod");
	return 0;
}

static void commit(struct kmig *m, const cJSON *res)
{
	struct coord *c = m->c;
	int64_t t0 = myce_now_us();
	/* Idempotent: the hand-off's routes, in case its call never reached us. */
	mig_route_carried(m->id, m->carried, m->dst_node);
	_cleanup_free_ char *rs = res ? cJSON_PrintUnformatted(res) : NULL;
	pthread_mutex_lock(&c->lock);
	mig_set_phase(c, m->id, "handover");
	if (rs)
		db_exec(c, NULL, "UPDATE migrations SET result = %Q WHERE id = %ld", rs, m->id);
	pthread_mutex_unlock(&c->lock);
	mig_crash_point("crash-in-handover");
	_cleanup_error_ struct myce_error *e = NULL;
	/* The routes point at the destination: S's network lock now only cuts
	 * S off, and its preStop hook must reach us. */
	_cleanup_free_ char *unlock = xasprintf("/v1/pods/%ld/unlock", m->src_local);
	int st = node_call(c, m->src_node, "POST", unlock, NULL, 10000, NULL, &e);
	if (st != 200 && st != 404)
		log_warn("migration %ld: network lock of the source pod: %s", m->id, myce_error_msg(e));
	myce_error_freep(&e);
	_cleanup_json_ cJSON *r = res ? cJSON_Duplicate(res, true) : cJSON_CreateObject();
	/* Past the commit point the application serves from T: the hand-over
	 * is retried, never undone. */
	for (int attempt = 0; handover(m, &e) < 0; attempt++) {
		log_warn("migration %ld: %s (retrying)", m->id, myce_error_msg(e));
		myce_error_freep(&e);
		if (attempt >= 30) {
			finish(m, "completed", "the application runs on the destination, but the hand-over to its "
					       "ReplicaSet failed: a restarted coordinator retries it", r);
			return;
		}
		sleep(1);
	}
	cJSON_AddNumberToObject(r, "handover_ms", (double)(myce_now_us() - t0) / 1000.0);
	kobj_event(c, m->ns, m->src, m->src_uid, false, "MigrationCompleted",
		   "migration %ld: the application moved to pod %s on %s", m->id, m->dst, m->dst_node);
	kobj_event(c, m->ns, m->dst, m->dst_uid, false, "MigrationCompleted",
		   "migration %ld: restored the application of pod %s from %s", m->id, m->src, m->src_node);
	finish(m, "completed", NULL, r);
}

/* Commit or roll back from the source node's answer to "send". */
static void conclude(struct kmig *m, int st, const cJSON *res, struct myce_error *e)
{
	if (st != 200) {
		/* No usable answer: assume the worst (dumped). */
		_cleanup_free_ char *why = xasprintf("source node %s: %s", m->src_node, myce_error_msg(e));
		rollback(m, true, why, NULL);
	} else if (!myce_json_bool(res, "ok", false)) {
		const char *fp = myce_json_str(res, "failed_phase");
		const char *er = myce_json_str(res, "error");
		_cleanup_free_ char *why = xasprintf("%s: %s", fp ? fp : "migration", er ? er : "failed");
		if (myce_json_bool(res, "dumped", false))
			rollback(m, true, why, res);
		else
			fail_early(m, why, res);
	} else {
		mig_crash_point("crash-before-commit");
		commit(m, res);
	}
}

/* Creates T (or finds it, after a restart) and remembers its UID. */
static int create_target(struct kmig *m, struct myce_error **err)
{
	struct coord *c = m->c;
	_cleanup_json_ cJSON *src = NULL;
	if (kobj_pod_get(c, m->ns, m->src, &src, err) < 0)
		return -1;
	_cleanup_json_ cJSON *t = NULL;
	if (myce_k8s_target_pod(src, m->dst_node, m->id, &t, err) < 0)
		return -1;
	/* The addresses T must carry: its kubelet makes it a migration target
	 * that holds them, as the embedded mode's target pod. */
	cJSON *ann = cJSON_GetObjectItem(cJSON_GetObjectItem(t, "metadata"), "annotations");
	_cleanup_free_ char *carried = cJSON_PrintUnformatted(m->carried);
	cJSON_DeleteItemFromObject(ann, ANN_CARRIED);
	cJSON_DeleteItemFromObject(ann, ANN_MIGRATED_FROM);
	cJSON_AddStringToObject(ann, ANN_CARRIED, carried);
	_cleanup_free_ char *ns = myce_k8s_escape(m->ns);
	_cleanup_free_ char *path = xasprintf("/api/v1/namespaces/%s/pods", ns);
	_cleanup_json_ cJSON *out = NULL;
	int rc = myce_k8s_create(c->k8s, path, t, &out, err);
	if (rc < 0)
		return myce_error_wrap(err, "create target pod %s/%s", m->ns, m->dst);
	if (rc == 409) {
		cJSON_Delete(out);
		out = NULL;
		if (kobj_pod_get(c, m->ns, m->dst, &out, err) < 0)
			return -1;
	} else if (rc < 200 || rc >= 300) {
		_cleanup_free_ char *what = xasprintf("create target pod %s/%s", m->ns, m->dst);
		return myce_k8s_status_error(rc, out, what, err);
	}
	const char *uid = myce_json_str(cJSON_GetObjectItem(out, "metadata"), "uid");
	free(m->dst_uid);
	m->dst_uid = dup_or_null(uid);
	pthread_mutex_lock(&c->lock);
	db_exec(c, NULL, "UPDATE k8s_migrations SET dst_uid = %Q WHERE migration_id = %ld", uid, m->id);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* Until T's agent registered (it then waits for the checkpoint). */
static bool wait_target(struct kmig *m, int timeout_ms)
{
	struct coord *c = m->c;
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	pthread_mutex_lock(&c->lock);
	bool ok = false;
	for (;;) {
		_cleanup_json_ cJSON *r = db_query_one(c, "SELECT dst_pod FROM migrations WHERE id = %ld", m->id);
		long id = (long)myce_json_num(r, "dst_pod", -1);
		if (id >= 0) {
			m->dst_local = id;
			ok = true;
			break;
		}
		if (pthread_cond_timedwait(&c->changed, &c->lock, &dl) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static void *kmig_thread(void *arg)
{
	struct kmig *m = arg;
	struct coord *c = m->c;
	kobj_event(c, m->ns, m->src, m->src_uid, false, "MigrationStarted",
		   "migrating to %s (mycedrive migration %ld, mode %s, target pod %s)", m->dst_node, m->id, m->mode,
		   m->dst);
	phase(m, "prepare");
	_cleanup_error_ struct myce_error *e = NULL;
	if (create_target(m, &e) < 0) {
		_cleanup_free_ char *why = xasprintf("prepare: %s", myce_error_msg(e));
		fail_early(m, why, NULL);
		kmig_free(m);
		return NULL;
	}
	if (!wait_target(m, 60000)) {
		_cleanup_free_ char *why = xasprintf("prepare: the agent of target pod %s/%s on %s did not register "
						     "within 60 s", m->ns, m->dst, m->dst_node);
		fail_early(m, why, NULL);
		kmig_free(m);
		return NULL;
	}
	mig_crash_point("crash-in-prepare");
	/* (pre-copy +) dump + transfer + restore, driven by the source node. */
	phase(m, mig_send_phase(m->mode));
	_cleanup_json_ cJSON *res = NULL;
	int st = mig_send(c, m->id, m->src_node, m->src_local, m->dst_node, m->dst_local, m->carried, m->mode, m->level,
			  &res, &e);
	conclude(m, st, res, e);
	kmig_free(m);
	return NULL;
}

static void spawn(struct kmig *m, void *(*fn)(void *))
{
	pthread_t t;
	if (pthread_create(&t, NULL, fn, m) != 0)
		abort();
	pthread_detach(t);
}

/* S's local pod id on its node: the kubelet reports containerID myce://<id>
 * (myce://<id>/<container> in a pod of several containers). */
static long local_id_of(const cJSON *pod)
{
	const cJSON *cs = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "status"), "containerStatuses"), 0);
	const char *cid = myce_json_str(cs, "containerID");
	if (!cid || strncmp(cid, "myce://", 7) != 0)
		return -1;
	char *end;
	long id = strtol(cid + 7, &end, 10);
	return (*end && *end != '/') || end == cid + 7 || id < 0 ? -1 : id;
}

void k8s_mig_start(struct coord *c, const cJSON *body, struct myce_http_resp *resp)
{
	const cJSON *podj = cJSON_GetObjectItem(body, "pod"), *nsj = cJSON_GetObjectItem(body, "namespace");
	const char *to = myce_json_str(body, "to"), *mode = myce_json_str(body, "mode");
	if (!c->k8s)
		return myce_http_error(resp, 400, "migrating a pod by name needs the coordinator's Kubernetes mode "
						  "(--kubeconfig); use \"app\" for the embedded cluster's applications");
	if (cJSON_GetObjectItem(body, "app"))
		return myce_http_error(resp, 400, "give \"pod\" or \"app\", not both");
	if (!cJSON_IsString(podj) || !*podj->valuestring || strlen(podj->valuestring) > 253)
		return myce_http_error(resp, 400, "pod must be a pod's name (a non-empty string)");
	if (nsj && (!cJSON_IsString(nsj) || !*nsj->valuestring || strlen(nsj->valuestring) > 63))
		return myce_http_error(resp, 400, "namespace must be a non-empty string");
	if (!to || !*to)
		return myce_http_error(resp, 400, "migrate needs \"to\" (a node name)");
	if (cJSON_GetObjectItem(body, "mode") && !mode)
		return myce_http_error(resp, 400, "mode must be a string");
	if (!mode)
		mode = "auto";
	if (!strcmp(mode, "redeploy"))
		return myce_http_error(resp, 400, "mode redeploy does not apply to a pod: delete it and let its "
						  "ReplicaSet create a new one");
	if (strcmp(mode, "auto") && strcmp(mode, "live") && strcmp(mode, "precopy") && strcmp(mode, "stop-and-copy"))
		return myce_http_error(resp, 400, "unknown mode %s (auto, live, precopy, stop-and-copy)", mode);
	const char *name = podj->valuestring, *ns = nsj ? nsj->valuestring : "default";

	/* Validate against the API before anything changes. */
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_json_ cJSON *pod = NULL, *node = NULL;
	if (kobj_pod_get(c, ns, name, &pod, &e) < 0)
		return myce_http_error(resp, e->code == ENOENT ? 404 : 502, "%s", myce_error_msg(e));
	if (kobj_node_get(c, to, &node, &e) < 0)
		return myce_http_error(resp, e->code == ENOENT ? 404 : 502, "unknown destination node: %s",
				       myce_error_msg(e));
	const cJSON *meta = cJSON_GetObjectItem(pod, "metadata"), *spec = cJSON_GetObjectItem(pod, "spec");
	const cJSON *status = cJSON_GetObjectItem(pod, "status");
	const char *src_node = myce_json_str(spec, "nodeName"), *pod_ip = myce_json_str(status, "podIP");
	const char *uid = myce_json_str(meta, "uid"), *phase_s = myce_json_str(status, "phase");
	const char *rs = myce_k8s_pod_owner(pod, "ReplicaSet");
	const cJSON *owners = cJSON_GetObjectItem(meta, "ownerReferences"), *o;
	const char *other = NULL;
	cJSON_ArrayForEach(o, owners)
		if (cJSON_IsTrue(cJSON_GetObjectItem(o, "controller")) && strcmp(myce_json_str(o, "kind") ?: "", "ReplicaSet"))
			other = myce_json_str(o, "kind");
	const char *hash = myce_json_str(cJSON_GetObjectItem(meta, "labels"), MYCE_K8S_LABEL_TEMPLATE_HASH);
	long src_local = local_id_of(pod);
	if (myce_json_str(meta, "deletionTimestamp"))
		return myce_http_error(resp, 409, "pod %s/%s is being deleted", ns, name);
	if (other)
		return myce_http_error(resp, 422, "pod %s/%s is controlled by a %s: only pods of a ReplicaSet "
						  "(Deployment) and bare pods migrate", ns, name, other);
	if (rs && !hash)
		return myce_http_error(resp, 422, "pod %s/%s of ReplicaSet %s has no %s label", ns, name, rs,
				       MYCE_K8S_LABEL_TEMPLATE_HASH);
	if (myce_json_str(cJSON_GetObjectItem(meta, "labels"), MYCE_K8S_LABEL_MIGRATION))
		return myce_http_error(resp, 409, "pod %s/%s is the target of a migration", ns, name);
	if (!src_node || !phase_s || strcmp(phase_s, "Running") || !myce_k8s_pod_ready(pod) || !pod_ip)
		return myce_http_error(resp, 409, "pod %s/%s is not Running and Ready", ns, name);
	if (!strcmp(src_node, to))
		return myce_http_error(resp, 409, "pod %s/%s already runs on %s", ns, name, to);
	if (!kobj_node_ready(node))
		return myce_http_error(resp, 409, "destination node %s is not Ready", to);
	if (myce_node_index(to) < 0 || myce_node_index(src_node) < 0 || src_local < 0)
		return myce_http_error(resp, 409, "pod %s/%s on %s, or node %s, is not run by a mycedrive node daemon", ns,
				       name, src_node, to);
	/* The destination carries S's address and whatever S carried. */
	_cleanup_json_ cJSON *carried = NULL;
	const char *prev = myce_json_str(cJSON_GetObjectItem(meta, "annotations"), ANN_CARRIED);
	carried = prev ? cJSON_Parse(prev) : NULL;
	if (!cJSON_IsArray(carried)) {
		cJSON_Delete(carried);
		carried = cJSON_CreateArray();
	}
	cJSON_AddItemToArray(carried, cJSON_CreateString(pod_ip));
	_cleanup_free_ char *carried_s = cJSON_PrintUnformatted(carried);
	_cleanup_free_ char *app = xasprintf("%s/%s", ns, name);

	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *busy = db_query_one(
		c, "SELECT m.id FROM migrations m JOIN k8s_migrations k ON k.migration_id = m.id WHERE m.outcome IS NULL"
		   " AND k.namespace = %Q AND (k.src_name = %Q OR k.dst_name = %Q)", ns, name, name);
	_cleanup_json_ cJSON *known = db_query_one(c, "SELECT name FROM nodes WHERE name = %Q", to);
	if (busy || !known) {
		pthread_mutex_unlock(&c->lock);
		if (busy)
			return myce_http_error(resp, 409, "pod %s/%s is already migrating (migration %.0f)", ns, name,
					       myce_json_num(busy, "id", -1));
		return myce_http_error(resp, 409, "node %s has no mycedrive node daemon registered", to);
	}
	int64_t now = myce_wall_us();
	long id = -1;
	int rc = db_exec(c, &e,
			 "BEGIN; INSERT INTO migrations(app, src_node, dst_node, src_pod, dst_pod, mode, phase, created_us,"
			 " updated_us) VALUES(%Q, %Q, %Q, %ld, NULL, %Q, 'accepted', %lld, %lld);",
			 app, src_node, to, src_local, mode, (long long)now, (long long)now);
	if (rc == 0) {
		id = (long)db_last_id(c);
		/* T's name, as myce_k8s_target_pod makes it, is known before T exists. */
		_cleanup_json_ cJSON *t = NULL;
		rc = myce_k8s_target_pod(pod, to, id, &t, &e);
		const char *tname = myce_json_str(cJSON_GetObjectItem(t, "metadata"), "name");
		if (rc == 0)
			rc = db_exec(c, &e,
				     "INSERT INTO k8s_migrations(migration_id, namespace, src_name, src_uid, dst_name,"
				     " template_hash, src_addr, carried) VALUES(%ld, %Q, %Q, %Q, %Q, %Q, %Q, %Q);"
				     "INSERT INTO phases(migration_id, phase, t_us) VALUES(%ld, 'accepted', %lld);",
				     id, ns, name, uid, tname, hash, pod_ip, carried_s, id, (long long)now);
		/* T will carry them: no kubelet may hand them out meanwhile. */
		_cleanup_free_ char *tpod = xasprintf("%s/%s", ns, tname);
		if (rc == 0)
			rc = k8s_carry_reserve(c, id, tpod, carried, &e);
		if (rc == 0)
			rc = db_exec(c, &e, "COMMIT;");
	}
	if (rc < 0) {
		db_exec(c, NULL, "ROLLBACK;");
		pthread_mutex_unlock(&c->lock);
		return myce_http_error(resp, 500, "%s", myce_error_msg(e));
	}
	resp->json = mig_get(c, id);
	struct kmig *m = kmig_load(c, id);
	pthread_mutex_unlock(&c->lock);
	resp->status = 202;
	log_info("migration %ld: pod %s on %s -> %s accepted", id, app, src_node, to);
	spawn(m, kmig_thread);
}

long k8s_mig_target_of(struct coord *c, const char *pod, long local_id)
{
	_cleanup_json_ cJSON *r = db_query_one(
		c, "SELECT k.migration_id FROM k8s_migrations k JOIN migrations m ON m.id = k.migration_id"
		   " WHERE m.outcome IS NULL AND m.phase IN ('accepted', 'prepare') AND k.namespace || '/' || k.dst_name = %Q",
		pod);
	if (!r)
		return -1;
	long id = (long)myce_json_num(r, "migration_id", -1);
	if (local_id >= 0)
		db_exec(c, NULL, "UPDATE migrations SET dst_pod = %ld WHERE id = %ld", local_id, id);
	pthread_cond_broadcast(&c->changed);
	return id;
}

/* --- recovery ------------------------------------------------------------ */

static void *recover_thread(void *arg)
{
	struct kmig *m = arg;
	struct coord *c = m->c;
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *row = db_query_one(c, "SELECT phase, result FROM migrations WHERE id = %ld", m->id);
	pthread_mutex_unlock(&c->lock);
	const char *ph = myce_json_str(row, "phase");
	log_info("migration %ld: recovering pod %s/%s from phase %s", m->id, m->ns, m->src, ph);
	if (!strcmp(ph, "accepted") || !strcmp(ph, "prepare")) {
		fail_early(m, "coordinator restarted before the freeze; the application kept running on the source", NULL);
	} else if (!strcmp(ph, "rollback")) {
		rollback(m, true, "coordinator restarted during the rollback", NULL);
	} else if (!strcmp(ph, "handover")) {
		_cleanup_json_ cJSON *res = myce_json_str(row, "result") ? cJSON_Parse(myce_json_str(row, "result")) : NULL;
		commit(m, res);
	} else {
		/* precopy / dump / transfer: the source node knows how its send ended. */
		_cleanup_json_ cJSON *rec = mig_source_record(c, m->src_node, m->id);
		const cJSON *res = cJSON_GetObjectItem(rec, "result");
		if (res) {
			conclude(m, 200, res, NULL);
		} else {
			/* The node forgot (it restarted): ask the agents. */
			_cleanup_json_ cJSON *dst = m->dst_local >= 0 ? mig_agent_state(c, m->dst_node, m->dst_local) : NULL;
			_cleanup_json_ cJSON *src = mig_agent_state(c, m->src_node, m->src_local);
			const char *ds = myce_json_str(dst, "state"), *ss = myce_json_str(src, "state");
			if (ds && !strcmp(ds, "running"))
				commit(m, NULL);
			else
				rollback(m, !(ss && !strcmp(ss, "running")),
					 "coordinator restarted; the source node had no record of the transfer", NULL);
		}
	}
	kmig_free(m);
	return NULL;
}

int k8s_mig_recover(struct coord *c)
{
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *rows = db_query(c, "SELECT m.id FROM migrations m JOIN k8s_migrations k ON k.migration_id = m.id"
						 " WHERE m.outcome IS NULL");
	int n = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, rows)
	{
		struct kmig *m = kmig_load(c, (long)myce_json_num(r, "id", -1));
		if (!m)
			continue;
		if (!c->k8s) {
			/* Started without --kubeconfig: nothing to drive it with. */
			log_error("migration %ld: pod %s/%s left in flight, but this coordinator has no --kubeconfig", m->id,
				  m->ns, m->src);
			kmig_free(m);
			continue;
		}
		spawn(m, recover_thread);
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}
