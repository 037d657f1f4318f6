/* libFuzzer harness for the coordinator's REST handler, coord_api_handle().
 *
 * One input is a short session against a coordinator whose database (SQLite,
 * in memory) is reset to a seeded state before every input:
 *
 *     <node mode>[r]\n               a digit, see enum node_mode; "r": the
 *                                    coordinator restarts first (mig_recover()
 *                                    finishes the seeded migration in flight)
 *     METHOD PATH\n                  request 1
 *     BODY                           raw bytes, up to the separator or the end
 *     \n~~~\n                        separator
 *     METHOD PATH\n                  request 2 ...
 *
 * A body is parsed as lib/http.c parses it (cJSON_ParseWithLength); a body
 * that does not parse, or is larger than MYCE_HTTP_MAX_BODY, never reaches
 * the handler and is skipped, as the HTTP layer answers 400/413 itself.
 *
 * Nothing leaves the process.  The calls the coordinator makes to the
 * outside world are replaced at link time (-Wl,--wrap, see meson.build):
 *
 *   myce_httpc_call        -> a simulated node daemon + agent (node_mode), no socket
 *   myce_nft_exec          -> succeeds (fails in NODE_BROKEN, NODE_OK_NET_FAIL), no nftables
 *   myce_nl_route_replace  -> idem, no netlink
 *   myce_nl_route_del      -> nothing
 *   myce_tcp_connect       -> a /dev/null descriptor (the application is "ready")
 *   myce_log_at            -> formats the message, prints nothing
 *   pthread_create         -> counts the migration threads so the harness can
 *                             wait for them before it checks and resets state
 *
 * (--wrap only redirects calls between object files; every one of these is
 * called from another file than the one that defines it.)  tests/fuzz/run.sh
 * also runs the fuzzer inside `unshare --net` when it can, so that a call
 * that escaped the wrapping would meet an empty network namespace.
 *
 * After every request the harness checks that the status is one the handler
 * may give, that an error is exactly {"error": "<non-empty>"} and a 2xx has a
 * body, and, once the migration threads the request started have ended, that
 * the coordinator's lock is free and the database invariants of
 * check_invariants() hold.  A failed check aborts, which libFuzzer reports
 * as a crash with the input that caused it.
 *
 * Known bugs in src/ that the checks would find are tolerated unless
 * MYCE_STRICT=1 (see known_bug()); each names the fix.  Remove the
 * tolerance when the bug is fixed. */
#include "coord.h"

#include "cluster.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REQUESTS 8
#define SEPARATOR "\n~~~\n"
#define THREAD_WAIT_US (20 * 1000 * 1000)

enum node_mode {
	NODE_DOWN,	  /* every call: connection refused */
	NODE_OK,	  /* pods start and register, send succeeds (after a hand-off) */
	NODE_FAIL_DUMPED, /* send fails after the freeze; restore fails too */
	NODE_FAIL_EARLY,  /* send fails before the freeze */
	NODE_BROKEN,	  /* every call 500; nftables and routes fail */
	NODE_GARBAGE,	  /* 200 with a body that is not JSON */
	NODE_OK_NET_FAIL, /* nodes as NODE_OK, but nftables and routes fail */
	NODE_MODES
};

static struct coord C;
static enum node_mode node_mode;
static atomic_int live_threads;
static _Thread_local bool track_threads;
static bool strict;
static bool verbose; /* MYCE_FUZZ_VERBOSE=1: print every request and answer */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* --- the outside world, replaced --------------------------------------------- */

static void call_api(const char *method, const char *path, cJSON *body, struct myce_http_resp *resp)
{
	struct myce_http_req req = {.method = method, .path = path, .query = "", .body = body};
	coord_api_handle(&C, &req, resp);
}

int __wrap_myce_httpc_call(const char *method, const char *url, const char *token, const cJSON *body,
			  long timeout_ms, cJSON **out, struct myce_error **err);
int __wrap_myce_httpc_call(const char *method, const char *url, const char *token, const cJSON *body,
			  long timeout_ms, cJSON **out, struct myce_error **err)
{
	if (out)
		*out = NULL;
	int a, b, c, d, port, n = 0;
	if (sscanf(url, "http://%d.%d.%d.%d:%d%n", &a, &b, &c, &d, &port, &n) != 5 || port != MYCE_NODE_PORT)
		abort(); /* the coordinator only ever calls node daemons */
	const char *path = url + n;
	_cleanup_free_ char *node = xasprintf("node%d", d - 10);
	long id = -1;
	const char *rest = "";
	if (!strncmp(path, "/v1/pods/", 9) || !strncmp(path, "/v1/transfers/", 14)) {
		char *end;
		id = strtol(strchr(path + 4, '/') + 1, &end, 10);
		rest = end;
	}
	switch (node_mode) {
	case NODE_DOWN:
	default:
		return myce_error_set(err, ECONNREFUSED, "%s %s: fuzz: connection refused", method, url);
	case NODE_BROKEN:
		myce_error_set(err, EPROTO, "fuzz: node error");
		if (err && *err)
			(*err)->code = 500;
		return 500;
	case NODE_GARBAGE:
		/* 200 for everything (never 201: a pod that is "created" but never
		 * registers would make the coordinator wait 20 s). */
		return 200;
	case NODE_OK:
	case NODE_OK_NET_FAIL:
	case NODE_FAIL_DUMPED:
	case NODE_FAIL_EARLY:
		break;
	}
	cJSON *o = NULL;
	int status = 404;
	if (!strcmp(method, "POST") && !strcmp(path, "/v1/pods")) {
		/* The node creates the pod; its agent registers at once. */
		cJSON *reg = cJSON_CreateObject();
		cJSON_AddNumberToObject(reg, "pod_id", myce_json_num(body, "id", -1));
		cJSON_AddStringToObject(reg, "node", node);
		struct myce_http_resp r = {.status = 200};
		call_api("POST", "/v1/register", reg, &r);
		cJSON_Delete(reg);
		cJSON_Delete(r.json);
		free(r.text);
		if (r.status != 200)
			return myce_error_set(err, EPROTO, "fuzz: agent register failed with %d", r.status);
		status = 201;
		o = cJSON_Duplicate(body, true);
	} else if (!strcmp(method, "DELETE") && id >= 0 && !*rest) {
		status = 200;
		o = cJSON_CreateObject();
		cJSON_AddBoolToObject(o, "deleted", true);
	} else if (!strcmp(method, "POST") && !strcmp(rest, "/send")) {
		long mid = (long)myce_json_num(body, "migration_id", -1);
		o = cJSON_CreateObject();
		if (node_mode == NODE_OK || node_mode == NODE_OK_NET_FAIL) {
			/* The source node reports the end of its pre-copy (if any) and
			 * the freeze, as src/node/send.c does. */
			const char *pre = myce_json_str(body, "precopy");
			bool precopy = pre && strcmp(pre, "off") != 0;
			for (int k = precopy ? 0 : 1; k < 2; k++) {
				_cleanup_free_ char *hp = xasprintf("/v1/migrations/%ld/%s", mid, k ? "handoff" : "freeze");
				struct myce_http_resp r = {.status = 200};
				call_api("POST", hp, NULL, &r);
				cJSON_AddNumberToObject(o, k ? "handoff_status" : "freeze_status", r.status);
				cJSON_Delete(r.json);
				free(r.text);
			}
			if (precopy) {
				cJSON_AddStringToObject(o, "mode_picked", "precopy");
				if (!strcmp(pre, "auto"))
					cJSON_AddStringToObject(o, "auto_reason", "fuzz");
				cJSON *pc = cJSON_AddObjectToObject(o, "precopy");
				cJSON_AddNumberToObject(pc, "rounds", 2);
			}
			cJSON_AddBoolToObject(o, "ok", true);
			cJSON_AddBoolToObject(o, "dumped", true);
			cJSON_AddNumberToObject(o, "dump_ms", 3);
			cJSON_AddNumberToObject(o, "transfer_ms", 5);
			cJSON_AddNumberToObject(o, "restore_ms", 2);
			cJSON_AddNumberToObject(o, "bytes_raw", 1 << 20);
			cJSON_AddNumberToObject(o, "bytes_wire", 1 << 18);
			cJSON_AddNumberToObject(o, "freeze_start_wall_us", 1e15);
			cJSON_AddNumberToObject(o, "restore_end_wall_us", 1e15 + 9000);
		} else {
			cJSON_AddBoolToObject(o, "ok", false);
			cJSON_AddBoolToObject(o, "dumped", node_mode == NODE_FAIL_DUMPED);
			cJSON_AddStringToObject(o, "failed_phase", node_mode == NODE_FAIL_DUMPED ? "transfer" : "dump");
			cJSON_AddStringToObject(o, "error", "fuzz: failed");
		}
		status = 200;
	} else if (!strcmp(method, "POST") && !strcmp(rest, "/restore")) {
		status = node_mode == NODE_FAIL_DUMPED ? 500 : 200;
		o = cJSON_CreateObject();
		if (status == 200)
			cJSON_AddBoolToObject(o, "ok", true);
		else
			cJSON_AddStringToObject(o, "error", "fuzz: restore failed");
	} else if (!strcmp(method, "GET") && !strncmp(path, "/v1/transfers/", 14) && !*rest) {
		status = 200;
		o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "raw_done", 1);
		cJSON_AddNumberToObject(o, "raw_total", 2);
		cJSON_AddNumberToObject(o, "wire_done", 1);
	} else if (!strcmp(method, "GET") && !strcmp(rest, "/agent")) {
		/* Recovery asks the agents when the node has no record. */
		status = 200;
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "state", node_mode == NODE_OK ? "running" : "stopped");
	} else if (!strcmp(method, "GET") && !strncmp(path, "/v1/migrations/", 15) && node_mode != NODE_FAIL_EARLY) {
		/* Recovery asks the source node how its send ended (NODE_FAIL_EARLY: it forgot). */
		status = 200;
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "state", "done");
		cJSON *res = cJSON_AddObjectToObject(o, "result");
		cJSON_AddBoolToObject(res, "ok", node_mode == NODE_OK);
		cJSON_AddBoolToObject(res, "dumped", true);
		if (node_mode != NODE_OK)
			cJSON_AddStringToObject(res, "error", "fuzz: failed before the restart");
	} else {
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "error", "fuzz: no route");
	}
	if (status < 200 || status >= 300) {
		myce_error_set(err, EPROTO, "%s", myce_json_str(o, "error") ? myce_json_str(o, "error") : "failed");
		if (err && *err)
			(*err)->code = status;
	}
	if (out)
		*out = o;
	else
		cJSON_Delete(o);
	return status;
}

int __wrap_myce_nft_exec(const char *cmds, struct myce_error **err);
int __wrap_myce_nft_exec(const char *cmds, struct myce_error **err)
{
	if (node_mode == NODE_BROKEN || node_mode == NODE_OK_NET_FAIL)
		return myce_error_set(err, EPERM, "fuzz: nft failed");
	return 0;
}

int __wrap_myce_nl_route_replace(const char *dst, const char *via, const char *dev, struct myce_error **err);
int __wrap_myce_nl_route_replace(const char *dst, const char *via, const char *dev, struct myce_error **err)
{
	if (!dst || !via || strlen(dst) < 9)
		abort(); /* "a.b.c.d/32" and a gateway, always */
	if (node_mode == NODE_BROKEN || node_mode == NODE_OK_NET_FAIL)
		return myce_error_set(err, ENETUNREACH, "fuzz: route failed");
	return 0;
}

int __wrap_myce_nl_route_del(const char *dst, struct myce_error **err);
int __wrap_myce_nl_route_del(const char *dst, struct myce_error **err)
{
	return 0;
}

int __wrap_myce_tcp_connect(const char *ip, int port, long timeout_ms, struct myce_error **err);
int __wrap_myce_tcp_connect(const char *ip, int port, long timeout_ms, struct myce_error **err)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? fd : myce_error_errno(err, "open /dev/null");
}

void __wrap_myce_log_at(enum myce_log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void __wrap_myce_log_at(enum myce_log_level level, const char *file, int line, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
}

struct tramp {
	void *(*fn)(void *);
	void *arg;
};

static void *trampoline(void *p)
{
	struct tramp t = *(struct tramp *)p;
	free(p);
	void *r = t.fn(t.arg);
	atomic_fetch_sub(&live_threads, 1);
	return r;
}

int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (!track_threads)
		return __real_pthread_create(t, attr, fn, arg);
	struct tramp *p = xmalloc(sizeof(*p));
	p->fn = fn;
	p->arg = arg;
	atomic_fetch_add(&live_threads, 1);
	int r = __real_pthread_create(t, attr, trampoline, p);
	if (r) {
		atomic_fetch_sub(&live_threads, 1);
		free(p);
	}
	return r;
}

/* --- the seeded state --------------------------------------------------------- */

/* kv runs on node1 (pod 1, carrying an old address) and is migrating to
 * node2 (migration 1, phase dump, target pod 2 waiting); idle runs on node2
 * (pod 3); late's pod 4 is created on node3 and has not registered yet; two
 * finished migrations, one with a result, one with a result that is not JSON. */
static const char seed_sql[] =
	"BEGIN;"
	"DELETE FROM nodes; DELETE FROM apps; DELETE FROM pods; DELETE FROM migrations; DELETE FROM phases;"
	"DELETE FROM containers; DELETE FROM sqlite_sequence;"
	"INSERT INTO nodes VALUES('node1','10.77.0.11',1),('node2','10.77.0.12',1),('node3','10.77.0.13',1);"
	"INSERT INTO pods(id,app,node,addr,carried,state,role,created_us) VALUES"
	" (1,'kv','node1','10.78.1.2','[\"10.78.3.7\"]','running','start',1),"
	" (2,'kv','node2','10.78.2.2','[\"10.78.3.7\",\"10.78.1.2\"]','waiting','target',2),"
	" (3,'idle','node2','10.78.2.3','[\"10.78.1.9\"]','running','target',3),"
	" (4,'late','node3','10.78.3.2','[]','creating','start',4),"
	" (5,'idle','node1','10.78.1.9','[]','deleted','start',0),"
	" (6,'idle','node1','10.78.1.3','[\"10.78.2.3\"]','deleted','target',0);"
	"INSERT INTO apps(name,port,svc_ip,cmd,pod_id,migrating,created_us) VALUES"
	" ('kv',6379,'10.96.0.10','[\"redis-server\",\"--port\",\"6379\"]',1,1,1),"
	" ('idle',11211,'10.96.0.11','[\"memcached\",\"-u\",\"root\"]',3,0,1),"
	" ('late',80,'10.96.0.12','[\"httpd\"]',4,0,1);"
	"INSERT INTO migrations(id,app,src_node,dst_node,src_pod,dst_pod,mode,phase,outcome,reason,result,handoff,"
	"created_us,updated_us) VALUES"
	" (1,'kv','node1','node2',1,2,'live','dump',NULL,NULL,NULL,0,10,20),"
	" (2,'idle','node1','node2',5,3,'live','completed','completed',NULL,"
	"  '{\"dump_ms\":3,\"transfer_ms\":4,\"restore_ms\":5,\"bytes_raw\":100,\"bytes_wire\":50,\"zstd_level\":1,"
	"\"freeze_start_wall_us\":1000,\"restore_end_wall_us\":9000,\"handoff_ms\":1,\"service_switch_ms\":2}',1,1,30),"
	" (3,'idle','node2','node1',3,6,'stop-and-copy','rolled-back','rolled-back','fuzz: seeded','not json',0,1,2);"
	"INSERT INTO containers(id,pod,container,node,pod_id,labels,endpoint,role,registered_us) VALUES"
	" (1,'pod1','kv','node1',1,'{}',NULL,'start',1),(2,'pod2','kv','node2',2,'{}',NULL,'target',2),"
	" (3,'pod3','idle','node2',3,'{\"tier\":\"cache\"}','10.78.2.3:11211','target',3),"
	" (4,'web-1','nginx','edge-7',NULL,'{}','10.1.2.3:80','start',4);"
	"INSERT INTO phases VALUES (1,'accepted',10),(1,'prepare',12),(1,'dump',20),"
	" (2,'accepted',1),(2,'prepare',2),(2,'dump',3),(2,'transfer',4),(2,'completed',30),"
	" (3,'accepted',1),(3,'rolled-back',2);"
	"COMMIT;";

static void seed(void)
{
	_cleanup_error_ struct myce_error *e = NULL;
	if (db_exec(&C, &e, "%s", seed_sql) < 0) {
		fprintf(stderr, "fuzz_api: seeding the database: %s\n", myce_error_msg(e));
		abort();
	}
}

/* --- checks ------------------------------------------------------------------- */

/* A known bug in src/: tolerated (unless MYCE_STRICT=1) so the fuzzer
 * looks for new ones. */
static bool known_bug(const char *what)
{
	(void)what;
	return !strict;
}

static _Noreturn void fail(const char *what, const char *method, const char *path, const struct myce_http_resp *r)
{
	_cleanup_free_ char *body = r && r->json ? cJSON_PrintUnformatted(r->json) : NULL;
	fprintf(stderr, "fuzz_api: %s\n  request: %s %s\n  answer: %d %s\n", what, method ? method : "-",
		path ? path : "-", r ? r->status : 0, body ? body : r && r->text ? r->text : "(none)");
	abort();
}

static void check_answer(const char *method, const char *path, const struct myce_http_resp *r)
{
	static const int allowed[] = {200, 201, 202, 400, 404, 409, 500, 502, 507};
	bool ok = false;
	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
		ok |= r->status == allowed[i];
	if (!ok)
		fail("status the handler must not give", method, path, r);
	if (r->status >= 400) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
		if (!cJSON_IsObject(r->json) || cJSON_GetArraySize(r->json) != 1 || !cJSON_IsString(e) ||
		    !*e->valuestring || r->text)
			fail("an error answer is not exactly {\"error\": \"<message>\"}", method, path, r);
	} else if (!r->json && !r->text) {
		fail("a 2xx answer without a body", method, path, r);
	}
	if (r->json) {
		char *s = cJSON_PrintUnformatted(r->json);
		if (!s)
			fail("answer cannot be serialised", method, path, r);
		free(s);
	}
}

static void wait_threads(const char *method, const char *path)
{
	for (int waited = 0; atomic_load(&live_threads) > 0; waited += 100) {
		if (waited > THREAD_WAIT_US)
			fail("a migration thread did not end within 20 s", method, path, NULL);
		usleep(100);
	}
}

/* The single number a query returns, -1 if it failed. */
static long count(const char *sql)
{
	_cleanup_json_ cJSON *r = db_query_one(&C, "%s", sql);
	const cJSON *v = r ? r->child : NULL;
	return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static void check_invariants(const char *method, const char *path)
{
	pthread_mutex_lock(&C.lock);
	/* Every application has a live pod. */
	long dangling = count("SELECT COUNT(*) FROM apps a LEFT JOIN pods p ON p.id = a.pod_id "
			      "WHERE p.id IS NULL OR p.state = 'deleted'");
	/* ... unless it lost it in a failed redeploy.  Known bug, src/coordinator/
	 * migration.c redeploy(): the source pod is deleted before the start on the
	 * destination, and a failed start leaves the application pointing at it and
	 * the destination pod 'creating'.  Fix: on failure delete the destination
	 * pod and the application (or point it at no pod) in finish()'s db_exec. */
	long redeploy_lost = count("SELECT COUNT(*) FROM apps a JOIN pods p ON p.id = a.pod_id "
				   "WHERE p.state = 'deleted' AND EXISTS (SELECT 1 FROM migrations m WHERE m.app = a.name "
				   "AND m.mode = 'redeploy' AND m.outcome = 'failed')");
	/* At most one migration in progress per application, and `migrating` says so. */
	long double_mig = count("SELECT COUNT(*) FROM (SELECT app FROM migrations WHERE outcome IS NULL GROUP BY app "
				"HAVING COUNT(*) > 1)");
	long flag_wrong = count("SELECT COUNT(*) FROM apps a WHERE a.migrating != "
				"(SELECT COUNT(*) > 0 FROM migrations m WHERE m.app = a.name AND m.outcome IS NULL)");
	/* No two live pods share an address. */
	long dup_addr = count("SELECT COUNT(*) FROM (SELECT addr FROM pods WHERE state != 'deleted' GROUP BY addr "
			      "HAVING COUNT(*) > 1)");
	/* A finished migration has its outcome as its last phase. */
	long bad_end = count("SELECT COUNT(*) FROM migrations WHERE outcome IS NOT NULL AND phase != outcome");
	/* A pod left 'creating' by a migration that ended (the failed redeploy above). */
	long ghost = count("SELECT COUNT(*) FROM pods p JOIN migrations m ON m.dst_pod = p.id "
			   "WHERE m.outcome IS NOT NULL AND p.state = 'creating'");
	/* A registry entry of a deleted pod.  Known bug, src/coordinator/apps.c
	 * apps_create(): when the start fails after the agent registered, the
	 * clean-up marks the pod deleted but keeps its entry (no migration names
	 * such a pod).  Fix: add "DELETE FROM containers WHERE pod_id = %ld;". */
	long ghost_entries = count("SELECT COUNT(*) FROM containers k JOIN pods p ON p.id = k.pod_id WHERE p.state = 'deleted'");
	long ghost_entries_start = count("SELECT COUNT(*) FROM containers k JOIN pods p ON p.id = k.pod_id "
					 "WHERE p.state = 'deleted' AND NOT EXISTS (SELECT 1 FROM migrations m "
					 "WHERE m.src_pod = p.id OR m.dst_pod = p.id)");
	long ghost_redeploy = count("SELECT COUNT(*) FROM pods p JOIN migrations m ON m.dst_pod = p.id "
				    "WHERE m.outcome = 'failed' AND m.mode = 'redeploy' AND p.state = 'creating'");
	pthread_mutex_unlock(&C.lock);
	if (dangling < 0 || double_mig < 0 || flag_wrong < 0 || dup_addr < 0 || bad_end < 0 || ghost < 0 ||
	    ghost_entries < 0)
		fail("invariant queries failed", method, path, NULL);
	if (dangling > redeploy_lost || (redeploy_lost && !known_bug("redeploy-failure")))
		fail("an application points at a deleted or missing pod", method, path, NULL);
	if (ghost > ghost_redeploy || (ghost_redeploy && !known_bug("redeploy-failure")))
		fail("a migration ended and left its destination pod 'creating'", method, path, NULL);
	if (ghost_entries > ghost_entries_start || (ghost_entries_start && !known_bug("app-start-ghost-container")))
		fail("the registry lists a container of a deleted pod", method, path, NULL);
	if (double_mig)
		fail("two migrations of one application in progress", method, path, NULL);
	if (flag_wrong)
		fail("apps.migrating disagrees with the migrations in progress", method, path, NULL);
	if (dup_addr)
		fail("two live pods share an address", method, path, NULL);
	if (bad_end)
		fail("a finished migration whose phase is not its outcome", method, path, NULL);
}

/* --- the harness --------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	unsetenv("MYCE_FAULT"); /* src/coordinator/migration.c crash points */
	const char *s = getenv("MYCE_STRICT");
	strict = s && *s == '1';
	s = getenv("MYCE_FUZZ_VERBOSE");
	verbose = s && *s == '1';
	C.zstd_level = 1;
	C.token = xstrdup("fuzz-token");
	C.listen = xstrdup("127.0.0.1:0");
	pthread_mutex_init(&C.lock, NULL);
	pthread_cond_init(&C.changed, NULL);
	_cleanup_error_ struct myce_error *e = NULL;
	if (db_open(&C, ":memory:", &e) < 0) {
		fprintf(stderr, "fuzz_api: db_open: %s\n", myce_error_msg(e));
		abort();
	}
	return 0;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *s = xmalloc(n + 1);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *needle)
{
	size_t n = strlen(needle);
	for (; p + n <= end; p++)
		if (!memcmp(p, needle, n))
			return p;
	return NULL;
}

static void one_request(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
	const uint8_t *line_end = nl ? nl : end;
	const uint8_t *sp = memchr(p, ' ', (size_t)(line_end - p));
	_cleanup_free_ char *method = dup_bytes(p, sp ? (size_t)(sp - p) : (size_t)(line_end - p));
	_cleanup_free_ char *path = sp ? dup_bytes(sp + 1, (size_t)(line_end - sp - 1)) : xstrdup("/");
	const uint8_t *bp = nl ? nl + 1 : end;
	size_t blen = (size_t)(end - bp);
	cJSON *body = NULL;
	if (blen > MYCE_HTTP_MAX_BODY)
		return; /* 413 in lib/http.c */
	if (blen) {
		/* An exact-size copy, so a read past the body is caught. */
		char *copy = xmalloc(blen);
		memcpy(copy, bp, blen);
		body = cJSON_ParseWithLength(copy, blen);
		free(copy);
		if (!body)
			return; /* 400 in lib/http.c */
	}
	struct myce_http_resp resp = {.status = 200};
	track_threads = true;
	call_api(method, path, body, &resp);
	track_threads = false;
	if (verbose) {
		_cleanup_free_ char *out = resp.json ? cJSON_PrintUnformatted(resp.json) : NULL;
		fprintf(stderr, "[mode %d] %s %s -> %d %s\n", (int)node_mode, method, path, resp.status,
			out ? out : resp.text ? resp.text : "");
	}
	check_answer(method, path, &resp);
	cJSON_Delete(body);
	cJSON_Delete(resp.json);
	free(resp.text);
	wait_threads(method, path);
	/* Once the migration threads are gone nobody may hold the lock. */
	if (pthread_mutex_trylock(&C.lock) != 0)
		fail("the coordinator's lock is still held after the answer", method, path, NULL);
	pthread_mutex_unlock(&C.lock);
	check_invariants(method, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	node_mode = (enum node_mode)((data[0] >= '0' && data[0] <= '9' ? data[0] - '0' : data[0]) % NODE_MODES);
	const uint8_t *p = data + 1, *end = data + size;
	bool restart = *p == 'r';
	if (restart)
		p++;
	if (p < end && *p == '\n')
		p++;
	seed();
	/* Known bug, src/coordinator/migration.c recover_thread(): a node that
	 * answers 200 without a string "state" (NODE_GARBAGE) makes it
	 * strcmp(NULL, "running") and crash.  Fix: test myce_json_str()'s
	 * result for NULL before strcmp, there and in the two agent_state()
	 * checks below it. */
	if (restart && node_mode == NODE_GARBAGE && known_bug("recover-null-state"))
		restart = false;
	if (restart) {
		track_threads = true;
		mig_recover(&C);
		track_threads = false;
		wait_threads("(restart)", "mig_recover");
		check_invariants("(restart)", "mig_recover");
	}
	for (int i = 0; i < MAX_REQUESTS && p < end; i++) {
		const uint8_t *sep = find(p, end, SEPARATOR);
		one_request(p, sep ? sep : end);
		p = sep ? sep + strlen(SEPARATOR) : end;
	}
	return 0;
}
