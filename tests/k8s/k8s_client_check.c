/* Drives lib/k8s.h against a real API server (the test control plane of
 * scripts/k8s-controlplane.sh) and checks what comes back; run by
 * tests/k8s/test_k8s_client.py.
 *
 *   k8s_client_check KUBECONFIG NAMESPACE crud      create/get/patch (strategic,
 *                                                  merge, JSON, apply)/replace/delete
 *   k8s_client_check KUBECONFIG NAMESPACE informer  ADDED/MODIFIED/DELETED, selector
 *   k8s_client_check KUBECONFIG NAMESPACE gone ETCD_URL
 *                                                  etcd compacted, a watch from
 *                                                  resourceVersion 1 (410) recovered
 *                                                  by a re-list
 *   k8s_client_check KUBECONFIG NAMESPACE whoami    prints the authenticated user
 *   k8s_client_check KUBECONFIG NAMESPACE rotate TOKEN_FILE GOOD_TOKEN
 *                                                  401 with the file's token, then
 *                                                  the rotated one is used
 *   k8s_client_check - NAMESPACE ...               configuration from myce_k8s_new
 *                                                  (in-cluster when the environment says so)
 * Prints "ok: ..." lines and measurements; exits 1 with "FAIL: ..." on the
 * first check that does not hold. */
#include "http.h"
#include "k8s.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CHECK(cond, ...)                                                                                   \
	do {                                                                                               \
		if (!(cond)) {                                                                             \
			fprintf(stderr, "FAIL (%s:%d): ", __FILE__, __LINE__);                             \
			fprintf(stderr, __VA_ARGS__);                                                      \
			fputc('\n', stderr);                                                               \
			exit(1);                                                                           \
		}                                                                                          \
	} while (0)

static struct myce_k8s *k;
static const char *ns;
/* What mutate() and the informer checks work on: "configmaps", or "events",
 * which kube-apiserver keeps out of its watch cache (a watch on them is
 * served by etcd, so an old resourceVersion meets etcd's compaction). */
static const char *resource = "configmaps";

static char *cm_path(const char *name)
{
	return name ? xasprintf("/api/v1/namespaces/%s/%s/%s", ns, resource, name)
		    : xasprintf("/api/v1/namespaces/%s/%s", ns, resource);
}

/* A core/v1 Event whose message plays the part of a ConfigMap's data.v. */
static cJSON *event(const char *name, const char *label, const char *msg)
{
	_cleanup_free_ char *j = xasprintf("{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{\"name\":\"%s\","
					   "\"labels\":{\"test\":\"%s\"}},\"involvedObject\":{\"kind\":\"ConfigMap\","
					   "\"namespace\":\"%s\",\"name\":\"x\"},\"reason\":\"Test\",\"type\":\"Normal\","
					   "\"message\":\"%s\"}",
					   name, label, ns, msg);
	cJSON *o = cJSON_Parse(j);
	if (!o)
		abort();
	return o;
}

static cJSON *configmap(const char *name, const char *label, const char *key, const char *val)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "apiVersion", "v1");
	cJSON_AddStringToObject(o, "kind", "ConfigMap");
	cJSON *m = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(m, "name", name);
	if (label)
		cJSON_AddStringToObject(cJSON_AddObjectToObject(m, "labels"), "test", label);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "data"), key, val);
	return o;
}

static const char *data_of(const cJSON *o, const char *key)
{
	return myce_json_str(cJSON_GetObjectItemCaseSensitive(o, "data"), key);
}

static const char *meta_str(const cJSON *o, const char *key)
{
	return myce_json_str(cJSON_GetObjectItemCaseSensitive(o, "metadata"), key);
}

static bool streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static cJSON *parse(const char *s)
{
	cJSON *j = cJSON_Parse(s);
	CHECK(j, "bad JSON in the test: %s", s);
	return j;
}

/* A request that must answer `want`; returns the body (caller frees).  Body
 * and error are passed by address: the order in which a call's arguments are
 * evaluated is unspecified, so their values may predate the request. */
static cJSON *expect(int want, int got, cJSON **bodyp, struct myce_error **errp, const char *what)
{
	cJSON *body = *bodyp;
	CHECK(got >= 0, "%s: transport error %d: %s", what, got, myce_error_msg(*errp));
	if (got != want) {
		_cleanup_error_ struct myce_error *e = NULL;
		myce_k8s_status_error(got, body, what, &e);
		CHECK(0, "%s: expected %d, got %s", what, want, myce_error_msg(e));
	}
	return body;
}

static double ms_since(int64_t t0)
{
	return (double)(myce_now_us() - t0) / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* ---- crud ------------------------------------------------------------------ */

static void check_crud(void)
{
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_free_ char *coll = cm_path(NULL), *path = cm_path("crud");
	cJSON *body = NULL;

	_cleanup_json_ cJSON *cm = configmap("crud", NULL, "a", "1");
	int64_t t0 = myce_now_us();
	body = expect(201, myce_k8s_create(k, coll, cm, &body, &err), &body, &err, "create");
	printf("ok: create 201 in %.1f ms (uid %s)\n", ms_since(t0), meta_str(body, "uid"));
	_cleanup_free_ char *rv1 = xstrdup(meta_str(body, "resourceVersion"));
	cJSON_Delete(body);

	/* Creating it again: 409 AlreadyExists, a readable error, -EEXIST. */
	int st = myce_k8s_create(k, coll, cm, &body, &err);
	CHECK(st == 409, "second create: expected 409, got %d", st);
	{
		_cleanup_error_ struct myce_error *e = NULL;
		int r = myce_k8s_status_error(st, body, "create configmap crud", &e);
		CHECK(r == -EEXIST, "AlreadyExists should map to -EEXIST, got %d", r);
		CHECK(strstr(myce_error_msg(e), "create configmap crud: 409 Conflict: configmaps \"crud\" already exists"),
		      "message: %s", myce_error_msg(e));
		printf("ok: %s\n", myce_error_msg(e));
	}
	cJSON_Delete(body);

	body = expect(200, myce_k8s_get(k, path, &body, &err), &body, &err, "get");
	CHECK(streq(data_of(body, "a"), "1"), "get: data.a");
	cJSON_Delete(body);

	/* Strategic merge patch: "$patch": "replace" replaces the whole data map.
	 * As a merge patch the same document would try to store a key "$patch". */
	_cleanup_json_ cJSON *smp = parse("{\"data\": {\"$patch\": \"replace\", \"b\": \"2\"}}");
	body = expect(200, myce_k8s_patch(k, path, MYCE_K8S_PATCH_STRATEGIC, smp, &body, &err), &body, &err,
		      "strategic patch");
	CHECK(!data_of(body, "a") && streq(data_of(body, "b"), "2") &&
		      cJSON_GetArraySize(cJSON_GetObjectItem(body, "data")) == 1,
	      "strategic $patch: replace should leave only b");
	cJSON_Delete(body);
	st = myce_k8s_patch(k, path, MYCE_K8S_PATCH_MERGE, smp, &body, &err);
	CHECK(st == 422, "the same as a merge patch should be invalid (key \"$patch\"), got %d", st);
	cJSON_Delete(body);
	printf("ok: strategic merge patch ($patch: replace) differs from merge patch (422)\n");

	/* Merge patch: null deletes a key, others are added. */
	_cleanup_json_ cJSON *mp = parse("{\"data\": {\"b\": null, \"c\": \"3\"}, \"metadata\": {\"labels\": {\"x\": \"y\"}}}");
	body = expect(200, myce_k8s_patch(k, path, MYCE_K8S_PATCH_MERGE, mp, &body, &err), &body, &err, "merge patch");
	CHECK(!data_of(body, "b") && streq(data_of(body, "c"), "3"), "merge patch: b removed, c added");
	cJSON_Delete(body);
	printf("ok: merge patch\n");

	/* JSON patch with a failing test operation changes nothing (422), a good one applies. */
	_cleanup_json_ cJSON *jp_bad = parse("[{\"op\":\"test\",\"path\":\"/data/c\",\"value\":\"4\"},"
					     "{\"op\":\"add\",\"path\":\"/data/d\",\"value\":\"4\"}]");
	st = myce_k8s_patch(k, path, MYCE_K8S_PATCH_JSON, jp_bad, &body, &err);
	CHECK(st == 422, "JSON patch with a failing test: expected 422, got %d", st);
	cJSON_Delete(body);
	_cleanup_json_ cJSON *jp = parse("[{\"op\":\"test\",\"path\":\"/data/c\",\"value\":\"3\"},"
					 "{\"op\":\"add\",\"path\":\"/data/d\",\"value\":\"4\"}]");
	body = expect(200, myce_k8s_patch(k, path, MYCE_K8S_PATCH_JSON, jp, &body, &err), &body, &err, "JSON patch");
	CHECK(streq(data_of(body, "d"), "4"), "JSON patch: d added");
	cJSON_Delete(body);
	_cleanup_json_ cJSON *notarray = parse("{}");
	CHECK(myce_k8s_patch(k, path, MYCE_K8S_PATCH_JSON, notarray, NULL, &err) == -EINVAL,
	      "a JSON patch that is no array is refused before sending");
	printf("ok: JSON patch\n");

	/* Server-side apply: the field manager owns e; d is kept. */
	_cleanup_json_ cJSON *ap = configmap("crud", NULL, "e", "5");
	body = expect(200, myce_k8s_patch(k, path, MYCE_K8S_PATCH_APPLY, ap, &body, &err), &body, &err, "apply");
	CHECK(streq(data_of(body, "e"), "5") && streq(data_of(body, "d"), "4"), "apply: e added, d kept");
	bool manager = false;
	cJSON *mf;
	cJSON_ArrayForEach(mf, cJSON_GetObjectItem(cJSON_GetObjectItem(body, "metadata"), "managedFields"))
	{
		if (!strcmp(myce_json_str(mf, "manager") ?: "", "mycedrive") &&
		    !strcmp(myce_json_str(mf, "operation") ?: "", "Apply"))
			manager = true;
	}
	CHECK(manager, "apply: managedFields should name the manager mycedrive");
	cJSON_Delete(body);
	printf("ok: server-side apply (fieldManager mycedrive)\n");

	/* Replace with a stale resourceVersion: 409 Conflict; with the current one: 200. */
	_cleanup_json_ cJSON *rep = configmap("crud", NULL, "f", "6");
	cJSON_AddStringToObject(cJSON_GetObjectItem(rep, "metadata"), "resourceVersion", rv1);
	st = myce_k8s_replace(k, path, rep, &body, &err);
	CHECK(st == 409, "replace at a stale resourceVersion: expected 409, got %d", st);
	{
		_cleanup_error_ struct myce_error *e = NULL;
		CHECK(myce_k8s_status_error(st, body, NULL, &e) == -EBUSY, "a Conflict maps to -EBUSY");
		printf("ok: stale replace: %s\n", myce_error_msg(e));
	}
	cJSON_Delete(body);
	body = expect(200, myce_k8s_get(k, path, &body, &err), &body, &err, "get");
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rep, "metadata"), "resourceVersion",
				  cJSON_CreateString(meta_str(body, "resourceVersion")));
	cJSON_Delete(body);
	body = expect(200, myce_k8s_replace(k, path, rep, &body, &err), &body, &err, "replace");
	CHECK(streq(data_of(body, "f"), "6") && !data_of(body, "e"), "replace: only f");
	cJSON_Delete(body);
	printf("ok: replace\n");

	/* Latency of a GET on a reused connection (the pool). */
	double lat[50];
	for (size_t i = 0; i < ARRAY_SIZE(lat); i++) {
		t0 = myce_now_us();
		body = expect(200, myce_k8s_get(k, path, &body, &err), &body, &err, "get");
		lat[i] = ms_since(t0);
		cJSON_Delete(body);
	}
	qsort(lat, ARRAY_SIZE(lat), sizeof(lat[0]), cmp_double);
	printf("measure: GET configmap x%zu: median %.2f ms, max %.2f ms\n", ARRAY_SIZE(lat), lat[ARRAY_SIZE(lat) / 2],
	       lat[ARRAY_SIZE(lat) - 1]);

	/* Delete with options; then 404 -> -ENOENT. */
	_cleanup_json_ cJSON *opts = parse("{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\",\"gracePeriodSeconds\":0}");
	body = expect(200, myce_k8s_delete(k, path, opts, &body, &err), &body, &err, "delete");
	cJSON_Delete(body);
	st = myce_k8s_get(k, path, &body, &err);
	CHECK(st == 404, "get after delete: expected 404, got %d", st);
	{
		_cleanup_error_ struct myce_error *e = NULL;
		CHECK(myce_k8s_status_error(st, body, "get", &e) == -ENOENT, "404 maps to -ENOENT");
		printf("ok: deleted: %s\n", myce_error_msg(e));
	}
	cJSON_Delete(body);

	/* Strategic merge by key on a list (Service ports, merge key "port"):
	 * strategic adds a port, merge replaces the list. */
	_cleanup_free_ char *svcs = xasprintf("/api/v1/namespaces/%s/services", ns);
	_cleanup_free_ char *svc = xasprintf("%s/ports", svcs);
	_cleanup_json_ cJSON *s = parse("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"ports\"},"
					"\"spec\":{\"ports\":[{\"name\":\"a\",\"port\":80}]}}");
	cJSON_Delete(expect(201, myce_k8s_create(k, svcs, s, &body, &err), &body, &err, "create service"));
	_cleanup_json_ cJSON *addport = parse("{\"spec\":{\"ports\":[{\"name\":\"b\",\"port\":81}]}}");
	body = expect(200, myce_k8s_patch(k, svc, MYCE_K8S_PATCH_STRATEGIC, addport, &body, &err), &body, &err,
		      "strategic patch service");
	int nports = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "spec"), "ports"));
	CHECK(nports == 2, "strategic patch merges ports by key: expected 2, got %d", nports);
	cJSON_Delete(body);
	_cleanup_json_ cJSON *oneport = parse("{\"spec\":{\"ports\":[{\"name\":\"c\",\"port\":82}]}}");
	body = expect(200, myce_k8s_patch(k, svc, MYCE_K8S_PATCH_MERGE, oneport, &body, &err), &body, &err,
		      "merge patch service");
	nports = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "spec"), "ports"));
	CHECK(nports == 1, "merge patch replaces the list: expected 1, got %d", nports);
	cJSON_Delete(body);
	cJSON_Delete(expect(200, myce_k8s_delete(k, svc, NULL, &body, &err), &body, &err, "delete service"));
	printf("ok: strategic merge patch merges Service ports by key (2), merge patch replaces them (1)\n");

	/* A transport error is an error, not a status. */
	CHECK(myce_k8s_get(k, "no-slash", NULL, &err) == -EINVAL, "a path without '/' is refused");
}

/* ---- informer --------------------------------------------------------------- */

struct seen {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char log[64][96]; /* "ADDED name data" */
	int n;
	bool synced;
	bool wrong_thread;
	pthread_t main;
};

static void on_event(void *ud, enum myce_k8s_event ev, const cJSON *obj)
{
	struct seen *s = ud;
	static const char *const names[] = {"ADDED", "MODIFIED", "DELETED", "SYNCED"};
	pthread_mutex_lock(&s->lock);
	if (pthread_equal(pthread_self(), s->main))
		s->wrong_thread = true;
	if (ev == MYCE_K8S_SYNCED) {
		s->synced = true;
	} else if (s->n < 64) {
		const cJSON *d = cJSON_GetObjectItem(obj, "data");
		const char *v = d && d->child && cJSON_IsString(d->child) ? d->child->valuestring : "";
		if (myce_json_str(obj, "message")) /* an Event */
			v = myce_json_str(obj, "message");
		snprintf(s->log[s->n++], sizeof(s->log[0]), "%s %s %s", names[ev], meta_str(obj, "name"), v);
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Waits until the event line `want` has been seen; returns its index. */
static int wait_event(struct seen *s, const char *want, long timeout_ms)
{
	int64_t deadline = myce_now_us() + timeout_ms * 1000;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		for (int i = 0; i < s->n; i++)
			if (!strcmp(s->log[i], want)) {
				pthread_mutex_unlock(&s->lock);
				return i;
			}
		if (myce_now_us() > deadline)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	fprintf(stderr, "events seen:\n");
	for (int i = 0; i < s->n; i++)
		fprintf(stderr, "  %s\n", s->log[i]);
	pthread_mutex_unlock(&s->lock);
	CHECK(0, "event \"%s\" not seen within %ld ms", want, timeout_ms);
	return -1;
}

static void seen_init(struct seen *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->main = pthread_self();
}

static void mutate(const char *method, const char *name, const char *label, const char *val)
{
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_free_ char *coll = cm_path(NULL), *path = cm_path(name);
	cJSON *body = NULL;
	if (!strcmp(method, "create")) {
		_cleanup_json_ cJSON *cm = strcmp(resource, "events") ? configmap(name, label, "v", val)
								       : event(name, label, val);
		body = expect(201, myce_k8s_create(k, coll, cm, &body, &err), &body, &err, "create");
	} else if (!strcmp(method, "patch")) {
		_cleanup_free_ char *p = strcmp(resource, "events") ? xasprintf("{\"data\":{\"v\":\"%s\"}}", val)
								    : xasprintf("{\"message\":\"%s\"}", val);
		_cleanup_json_ cJSON *patch = parse(p);
		body = expect(200, myce_k8s_patch(k, path, MYCE_K8S_PATCH_STRATEGIC, patch, &body, &err), &body, &err,
			      "patch");
	} else {
		body = expect(200, myce_k8s_delete(k, path, NULL, &body, &err), &body, &err, "delete");
	}
	cJSON_Delete(body);
}

static void check_informer(void)
{
	_cleanup_error_ struct myce_error *err = NULL;
	struct seen s;
	seen_init(&s);
	mutate("create", "inf-pre", "inf", "0");
	mutate("create", "inf-other", "other", "0"); /* not selected */
	_cleanup_free_ char *coll = cm_path(NULL);
	struct myce_k8s_informer *inf = NULL;
	int64_t t0 = myce_now_us();
	CHECK(myce_k8s_informer_start(k, coll, "labelSelector=test%3Dinf", on_event, &s, &inf, &err) == 0,
	      "informer start: %s", myce_error_msg(err));
	CHECK(myce_k8s_informer_wait_synced(inf, 20000), "informer did not sync");
	printf("measure: informer synced in %.1f ms\n", ms_since(t0));
	CHECK(s.n == 1 && !strcmp(s.log[0], "ADDED inf-pre 0"), "initial list: ADDED inf-pre only (got %d)", s.n);

	t0 = myce_now_us();
	mutate("create", "inf-x", "inf", "1");
	wait_event(&s, "ADDED inf-x 1", 10000);
	printf("measure: create -> ADDED via watch in %.1f ms\n", ms_since(t0));
	mutate("patch", "inf-x", NULL, "2");
	wait_event(&s, "MODIFIED inf-x 2", 10000);
	_cleanup_json_ cJSON *cached = myce_k8s_informer_get(inf, ns, "inf-x");
	CHECK(cached && streq(data_of(cached, "v"), "2"), "informer_get returns the modified object");
	CHECK(!myce_k8s_informer_get(inf, ns, "inf-other"), "not-selected object not cached");
	mutate("delete", "inf-x", NULL, NULL);
	wait_event(&s, "DELETED inf-x 2", 10000);
	CHECK(!myce_k8s_informer_get(inf, ns, "inf-x"), "deleted object gone from the cache");
	_cleanup_json_ cJSON *all = myce_k8s_informer_list(inf);
	CHECK(cJSON_GetArraySize(all) == 1, "cache holds inf-pre only");
	CHECK(!strcmp(myce_json_str(cJSON_GetArrayItem(all, 0), "kind") ?: "", "ConfigMap"),
	      "listed objects carry their kind");

	struct myce_k8s_informer_stats st;
	myce_k8s_informer_stats(inf, &st);
	CHECK(st.lists == 1, "one list, got %u", st.lists);
	free(st.last_error);
	for (int i = 0; i < s.n; i++)
		if (strstr(s.log[i], "inf-other"))
			CHECK(0, "event for a not-selected object: %s", s.log[i]);
	CHECK(!s.wrong_thread, "callbacks run on the informer's thread");
	t0 = myce_now_us();
	myce_k8s_informer_stop(inf);
	printf("measure: informer stop (watch open) in %.1f ms\n", ms_since(t0));
	CHECK(ms_since(t0) < 1000, "stop takes less than a second");
	printf("ok: informer: list, ADDED, MODIFIED, DELETED, selector, cache\n");
}

/* ---- gone ------------------------------------------------------------------- */

/* Compacts etcd's history up to its current revision through etcd's JSON
 * gateway, as kube-apiserver does every 5 minutes: afterwards a watch from an
 * older resourceVersion can only be answered 410 Gone. */
static void compact_etcd(const char *etcd)
{
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_free_ char *range = xasprintf("%s/v3/kv/range", etcd), *compact = xasprintf("%s/v3/kv/compaction", etcd);
	_cleanup_json_ cJSON *q = parse("{\"key\": \"AA==\"}"); /* any key: only the header matters */
	_cleanup_json_ cJSON *r = NULL;
	int st = myce_http_call("POST", range, NULL, q, 10000, &r, &err);
	CHECK(st == 200, "etcd range: %d %s", st, myce_error_msg(err));
	const char *rev = myce_json_str(cJSON_GetObjectItem(r, "header"), "revision"); /* int64: a string */
	CHECK(rev, "etcd range: no header.revision");
	_cleanup_free_ char *c = xasprintf("{\"revision\": \"%s\", \"physical\": true}", rev);
	_cleanup_json_ cJSON *cq = parse(c);
	_cleanup_json_ cJSON *cr = NULL;
	st = myce_http_call("POST", compact, NULL, cq, 10000, &cr, &err);
	CHECK(st == 200, "etcd compaction at %s: %d %s", rev, st, myce_error_msg(err));
	printf("ok: etcd compacted at revision %s\n", rev);
}

static void check_gone(const char *etcd)
{
	_cleanup_error_ struct myce_error *err = NULL;
	resource = "events";
	struct seen s;
	seen_init(&s);
	mutate("create", "gone-a", "gone", "1");
	mutate("create", "gone-b", "gone", "1");
	mutate("create", "gone-keep", "gone", "1");
	_cleanup_free_ char *coll = cm_path(NULL);
	struct myce_k8s_informer *inf = NULL;
	CHECK(myce_k8s_informer_start(k, coll, "labelSelector=test%3Dgone", on_event, &s, &inf, &err) == 0,
	      "informer start: %s", myce_error_msg(err));
	CHECK(myce_k8s_informer_wait_synced(inf, 20000), "informer did not sync");
	CHECK(s.n == 3, "initial list: 3 objects, got %d", s.n);

	/* No watch runs while these happen: only a re-list can tell. */
	myce_k8s_informer_rewatch_from(inf, NULL);
	mutate("create", "gone-c", "gone", "1");
	mutate("patch", "gone-a", NULL, "2");
	mutate("delete", "gone-b", NULL, NULL);
	compact_etcd(etcd);
	int before = s.n;
	int64_t t0 = myce_now_us();
	myce_k8s_informer_rewatch_from(inf, "1");
	wait_event(&s, "ADDED gone-c 1", 15000);
	wait_event(&s, "MODIFIED gone-a 2", 15000);
	wait_event(&s, "DELETED gone-b 1", 15000);
	printf("measure: watch from resourceVersion 1 -> 410 -> re-list -> 3 events in %.1f ms\n", ms_since(t0));
	struct myce_k8s_informer_stats st;
	myce_k8s_informer_stats(inf, &st);
	printf("informer: lists %u watches %u gone %u bookmarks %u last error %s\n", st.lists, st.watches, st.gone,
	       st.bookmarks, st.last_error ? st.last_error : "-");
	CHECK(st.gone >= 1, "the watch from resourceVersion 1 should have been answered 410");
	CHECK(st.lists == 2, "one re-list after the 410, got %u lists", st.lists);
	free(st.last_error);
	pthread_mutex_lock(&s.lock);
	int after = s.n;
	for (int i = before; i < after; i++)
		CHECK(!strstr(s.log[i], "gone-keep"), "unchanged object re-delivered: %s", s.log[i]);
	pthread_mutex_unlock(&s.lock);
	CHECK(after - before == 3, "exactly the 3 changes, got %d events", after - before);

	/* The watch runs again after the re-list. */
	mutate("create", "gone-d", "gone", "1");
	wait_event(&s, "ADDED gone-d 1", 10000);
	_cleanup_json_ cJSON *all = myce_k8s_informer_list(inf);
	CHECK(cJSON_GetArraySize(all) == 4, "cache: a, c, d, keep (got %d)", cJSON_GetArraySize(all));
	myce_k8s_informer_stop(inf);
	printf("ok: 410 Gone recovered by a re-list: ADDED, MODIFIED, DELETED delivered, nothing lost\n");
}

/* ---- auth ------------------------------------------------------------------- */

static char *whoami(struct myce_k8s *c, int *status)
{
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_json_ cJSON *review = parse("{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"SelfSubjectReview\"}");
	_cleanup_json_ cJSON *body = NULL;
	*status = myce_k8s_create(c, "/apis/authentication.k8s.io/v1/selfsubjectreviews", review, &body, &err);
	CHECK(*status >= 0, "selfsubjectreview: %s", myce_error_msg(err));
	const char *u = myce_json_str(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "status"), "userInfo"), "username");
	return u ? xstrdup(u) : NULL;
}

static void check_rotate(const char *token_file, const char *good)
{
	int st;
	_cleanup_free_ char *u1 = whoami(k, &st);
	CHECK(st == 401, "with the file's first token: expected 401, got %d", st);
	CHECK(myce_write_file_atomic(token_file, good, strlen(good), 0600) == 0, "write %s", token_file);
	_cleanup_free_ char *u2 = whoami(k, &st);
	CHECK(st == 201 && u2, "after rotation: expected 201, got %d", st);
	printf("ok: 401 with the old token, then the rotated token from the file: user %s\n", u2);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s KUBECONFIG|- NAMESPACE crud|informer|gone ETCD_URL|whoami|rotate TOKEN_FILE GOOD\n",
			argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	_cleanup_error_ struct myce_error *err = NULL;
	const char *kc = strcmp(argv[1], "-") ? argv[1] : NULL;
	CHECK(myce_k8s_new(kc, &k, &err) == 0, "configuration: %s", myce_error_msg(err));
	ns = argv[2];
	const char *cmd = argv[3];
	if (!strcmp(cmd, "crud")) {
		check_crud();
	} else if (!strcmp(cmd, "informer")) {
		check_informer();
	} else if (!strcmp(cmd, "gone") && argc == 5) {
		check_gone(argv[4]);
	} else if (!strcmp(cmd, "whoami")) {
		int st;
		_cleanup_free_ char *u = whoami(k, &st);
		CHECK(st == 201 && u, "selfsubjectreview: status %d", st);
		printf("user: %s\nnamespace: %s\nserver: %s\n", u, myce_k8s_namespace(k), myce_k8s_server(k));
	} else if (!strcmp(cmd, "rotate") && argc == 6) {
		check_rotate(argv[4], argv[5]);
	} else {
		fprintf(stderr, "unknown command %s\n", cmd);
		return 2;
	}
	myce_k8s_free(k);
	return 0;
}
