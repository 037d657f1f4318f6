/* Unit tests for lib/kpod.c, lib/kpod_status.c and lib/knode.c: Pod
 * objects -> what the embedded runtime runs, the status it reports, the
 * Node and Lease objects. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "http.h"
#include "knode.h"
#include "kpod.h"
#include "util.h"

static const char *REDIS_POD =
	"{\"metadata\": {\"name\": \"redis-7d9\", \"namespace\": \"default\", \"uid\": \"u-1\","
	"  \"creationTimestamp\": \"2026-11-25T10:00:00Z\"},"
	" \"spec\": {\"nodeName\": \"node1\", \"terminationGracePeriodSeconds\": 20,"
	"  \"containers\": [{\"name\": \"redis\", \"image\": \"redis:7\","
	"   \"command\": [\"redis-server\"], \"args\": [\"--port\", \"$(PORT)\", \"$$(PORT)\", \"$(NOPE)\"],"
	"   \"ports\": [{\"name\": \"resp\", \"containerPort\": 6379}],"
	"   \"env\": [{\"name\": \"PORT\", \"value\": \"6379\"},"
	"            {\"name\": \"ADDR\", \"value\": \"$(POD_IP):$(PORT)\"},"
	"            {\"name\": \"POD_IP\", \"valueFrom\": {\"fieldRef\": {\"fieldPath\": \"status.podIP\"}}},"
	"            {\"name\": \"ME\", \"valueFrom\": {\"fieldRef\": {\"fieldPath\": \"metadata.name\"}}}],"
	"   \"readinessProbe\": {\"tcpSocket\": {\"port\": \"resp\"}},"
	"   \"lifecycle\": {\"preStop\": {\"exec\": {\"command\": [\"sh\", \"-c\", \"echo bye $(ME)\"]}}}}]}}";

static cJSON *parse(const char *s)
{
	cJSON *j = cJSON_Parse(s);
	assert_non_null(j);
	return j;
}

static const char *item(const cJSON *a, int i)
{
	return cJSON_GetArrayItem(a, i)->valuestring;
}

static void test_parse_pod(void **state)
{
	_cleanup_json_ cJSON *j = parse(REDIS_POD);
	struct myce_kpod *p = NULL;
	struct myce_error *e = NULL;
	assert_int_equal(myce_kpod_parse(j, "10.78.1.2", &p, &e), 0);
	assert_string_equal(p->ns, "default");
	assert_string_equal(p->name, "redis-7d9");
	assert_string_equal(p->uid, "u-1");
	assert_string_equal(p->node, "node1");
	assert_string_equal(p->container, "redis");
	assert_int_equal(cJSON_GetArraySize(p->command), 5);
	assert_string_equal(item(p->command, 0), "redis-server");
	assert_string_equal(item(p->command, 2), "6379");
	assert_string_equal(item(p->command, 3), "$(PORT)"); /* $$ escapes */
	assert_string_equal(item(p->command, 4), "$(NOPE)"); /* undefined stays */
	/* ADDR is defined before POD_IP: $(POD_IP) is not yet known there. */
	assert_string_equal(item(p->env, 1), "ADDR=$(POD_IP):6379");
	assert_string_equal(item(p->env, 2), "POD_IP=10.78.1.2");
	assert_string_equal(item(p->env, 3), "ME=redis-7d9");
	assert_int_equal(p->ready_port, 6379);
	assert_non_null(p->prestop);
	assert_string_equal(item(p->prestop, 2), "echo bye redis-7d9");
	assert_int_equal(p->grace_s, 20);
	assert_false(p->deleting);
	assert_int_equal(p->restart, MYCE_KPOD_RESTART_ALWAYS);
	assert_true(p->created_us > 0);
	myce_kpod_free(p);
}

static void test_parse_deleting(void **state)
{
	_cleanup_json_ cJSON *j = parse(REDIS_POD);
	cJSON *meta = cJSON_GetObjectItem(j, "metadata");
	cJSON_AddStringToObject(meta, "deletionTimestamp", "2026-11-25T10:05:00Z");
	cJSON_AddNumberToObject(meta, "deletionGracePeriodSeconds", 7);
	cJSON_AddStringToObject(cJSON_GetObjectItem(j, "spec"), "restartPolicy", "Never");
	struct myce_kpod *p = NULL;
	assert_int_equal(myce_kpod_parse(j, NULL, &p, NULL), 0);
	assert_true(p->deleting);
	assert_int_equal(p->grace_s, 7);
	assert_int_equal(p->restart, MYCE_KPOD_RESTART_NEVER);
	assert_string_equal(item(p->env, 2), "POD_IP="); /* unknown yet */
	myce_kpod_free(p);
}

static void expect_reject(const char *json, const char *needle)
{
	_cleanup_json_ cJSON *j = parse(json);
	struct myce_kpod *p = NULL;
	struct myce_error *e = NULL;
	assert_true(myce_kpod_parse(j, NULL, &p, &e) < 0);
	assert_null(p);
	assert_non_null(e);
	assert_int_equal(e->code, EINVAL);
	if (!strstr(e->msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e->msg, needle);
	myce_error_free(e);
}

#define META "\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\", \"uid\": \"u\"}"

static void test_parse_rejects(void **state)
{
	expect_reject("{\"spec\": {}}", "not a Pod");
	expect_reject("{" META ", \"spec\": {\"containers\": []}}", "at least one container");
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"command\": [\"x\"]},"
		      "{\"name\": \"a\", \"command\": [\"y\"]}]}}",
		      "two containers named a");
	/* The second container is checked like the first. */
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"command\": [\"x\"]},"
		      "{\"name\": \"b\", \"image\": \"busybox\"}]}}",
		      "container b has no command");
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"command\": [\"x\"]},"
		      "{\"command\": [\"y\"]}]}}",
		      "container without a name");
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"image\": \"redis\"}]}}",
		      "has no command");
	expect_reject("{" META ", \"spec\": {\"initContainers\": [{\"name\": \"i\"}],"
		      "\"containers\": [{\"name\": \"a\", \"command\": [\"x\"]}]}}",
		      "init containers");
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"command\": [\"x\"],"
		      "\"readinessProbe\": {\"tcpSocket\": {\"port\": \"web\"}}}]}}",
		      "no container port named web");
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"command\": [\"x\"],"
		      "\"env\": [{\"name\": \"X\", \"valueFrom\": {\"secretKeyRef\": {}}}]}]}}",
		      "only valueFrom.fieldRef");
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"command\": [\"x\", 3]}]}}",
		      "list of strings");
	expect_reject("{" META ", \"spec\": {\"containers\": [{\"name\": \"a\", \"command\": [\"x\"],"
		      "\"lifecycle\": {\"preStop\": {\"httpGet\": {\"port\": 80}}}}]}}",
		      "only exec preStop");
}

/* An application and a sidecar: each its own command, env (fieldRefs
 * included), working directory, probe and hook. */
static const char *SIDECAR_POD =
	"{\"metadata\": {\"name\": \"web-5c\", \"namespace\": \"default\", \"uid\": \"u-2\"},"
	" \"spec\": {\"nodeName\": \"node1\", \"restartPolicy\": \"OnFailure\","
	"  \"containers\": ["
	"   {\"name\": \"redis\", \"image\": \"redis:7\", \"command\": [\"redis-server\"],"
	"    \"args\": [\"--port\", \"$(PORT)\"], \"env\": [{\"name\": \"PORT\", \"value\": \"6379\"}],"
	"    \"readinessProbe\": {\"tcpSocket\": {\"port\": 6379}}},"
	"   {\"name\": \"counter\", \"image\": \"python:3\", \"command\": [\"python3\", \"c.py\"],"
	"    \"args\": [\"$(PORT)\", \"$(ME)\"], \"workingDir\": \"/srv\","
	"    \"ports\": [{\"name\": \"status\", \"containerPort\": 7000}],"
	"    \"env\": [{\"name\": \"ME\", \"valueFrom\": {\"fieldRef\": {\"fieldPath\": \"metadata.name\"}}}],"
	"    \"readinessProbe\": {\"tcpSocket\": {\"port\": \"status\"}},"
	"    \"lifecycle\": {\"preStop\": {\"exec\": {\"command\": [\"echo\", \"$(ME)\"]}}}}]}}";

static void test_parse_several_containers(void **state)
{
	_cleanup_json_ cJSON *j = parse(SIDECAR_POD);
	struct myce_kpod *p = NULL;
	struct myce_error *e = NULL;
	assert_int_equal(myce_kpod_parse(j, "10.78.1.3", &p, &e), 0);
	assert_int_equal(p->ncontainers, 2);
	assert_int_equal(p->restart, MYCE_KPOD_RESTART_ON_FAILURE);
	const struct myce_kpod_container *r = &p->containers[0], *c = &p->containers[1];
	assert_string_equal(r->name, "redis");
	assert_string_equal(item(r->command, 2), "6379");
	assert_int_equal(r->ready_port, 6379);
	assert_null(r->workdir);
	assert_null(r->prestop);
	assert_string_equal(c->name, "counter");
	assert_string_equal(c->image, "python:3");
	/* Each container expands against its own env: PORT is redis's only. */
	assert_int_equal(cJSON_GetArraySize(c->command), 4);
	assert_string_equal(item(c->command, 2), "$(PORT)");
	assert_string_equal(item(c->command, 3), "web-5c");
	assert_int_equal(cJSON_GetArraySize(c->env), 1);
	assert_string_equal(item(c->env, 0), "ME=web-5c");
	assert_string_equal(c->workdir, "/srv");
	assert_int_equal(c->ready_port, 7000);
	assert_string_equal(item(c->prestop, 1), "web-5c");
	/* The pod-level fields are the first container's (the application). */
	assert_string_equal(p->container, "redis");
	assert_string_equal(item(p->command, 0), "redis-server");
	assert_int_equal(p->ready_port, 6379);

	/* What the runtime is given: both, in order, each with its own env. */
	_cleanup_json_ cJSON *spec = myce_kpod_containers_spec(p);
	assert_int_equal(cJSON_GetArraySize(spec), 2);
	const cJSON *s1 = cJSON_GetArrayItem(spec, 1);
	assert_string_equal(myce_json_str(s1, "name"), "counter");
	assert_string_equal(myce_json_str(s1, "workdir"), "/srv");
	assert_string_equal(item(cJSON_GetObjectItem(s1, "cmd"), 0), "python3");
	assert_string_equal(item(cJSON_GetObjectItem(s1, "env"), 0), "ME=web-5c");
	assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(spec, 0), "workdir"));
	myce_kpod_free(p);

	/* A pod of one keeps the one-container path. */
	_cleanup_json_ cJSON *one = parse(REDIS_POD);
	assert_int_equal(myce_kpod_parse(one, NULL, &p, NULL), 0);
	assert_int_equal(p->ncontainers, 1);
	assert_null(myce_kpod_containers_spec(p));
	myce_kpod_free(p);
}

static const cJSON *cond(const cJSON *st, const char *type)
{
	const cJSON *c;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(st, "conditions"))
		if (!strcmp(myce_json_str(c, "type"), type))
			return c;
	fail_msg("no condition %s", type);
	return NULL;
}

static void test_status(void **state)
{
	_cleanup_json_ cJSON *j = parse(REDIS_POD);
	struct myce_kpod *p = NULL;
	assert_int_equal(myce_kpod_parse(j, "10.78.1.2", &p, NULL), 0);
	int64_t t0 = myce_k8s_time_parse("2026-11-25T10:00:01Z");
	struct myce_kpod_state s = {.phase = "Running", .pod_ip = "10.78.1.2", .host_ip = "10.77.0.11",
				    .start_us = t0, .cstate = MYCE_KPOD_RUNNING, .started_us = t0 + 1000000,
				    .ready = true, .ready_changed_us = t0 + 2000000, .restart_count = 1,
				    .last_exit_code = 137, .last_started_us = t0, .last_exit_us = t0 + 500000,
				    .container_id = "myce://1000001"};
	_cleanup_json_ cJSON *st = myce_kpod_status(p, &s);
	assert_string_equal(myce_json_str(st, "phase"), "Running");
	assert_string_equal(myce_json_str(st, "podIP"), "10.78.1.2");
	assert_string_equal(myce_json_str(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "podIPs"), 0), "ip"), "10.78.1.2");
	assert_string_equal(myce_json_str(st, "hostIP"), "10.77.0.11");
	assert_string_equal(myce_json_str(st, "startTime"), "2026-11-25T10:00:01Z");
	assert_string_equal(myce_json_str(cond(st, "Ready"), "status"), "True");
	assert_string_equal(myce_json_str(cond(st, "Ready"), "lastTransitionTime"), "2026-11-25T10:00:03Z");
	assert_string_equal(myce_json_str(cond(st, "ContainersReady"), "status"), "True");
	assert_string_equal(myce_json_str(cond(st, "Initialized"), "status"), "True");
	assert_string_equal(myce_json_str(cond(st, "PodScheduled"), "lastTransitionTime"), "2026-11-25T10:00:00Z");
	const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "containerStatuses"), 0);
	assert_string_equal(myce_json_str(c, "name"), "redis");
	assert_true(myce_json_bool(c, "ready", false));
	assert_int_equal((int)myce_json_num(c, "restartCount", -1), 1);
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "state"), "running"), "startedAt"),
			    "2026-11-25T10:00:02Z");
	const cJSON *last = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "lastState"), "terminated");
	assert_int_equal((int)myce_json_num(last, "exitCode", 0), 137);
	assert_string_equal(myce_json_str(last, "reason"), "Error");

	/* Not ready yet, and then an application that exited. */
	s.ready = false;
	s.cstate = MYCE_KPOD_WAITING;
	s.pod_ip = NULL;
	_cleanup_json_ cJSON *st2 = myce_kpod_status(p, &s);
	assert_string_equal(myce_json_str(cond(st2, "Ready"), "reason"), "ContainersNotReady");
	assert_null(cJSON_GetObjectItem(st2, "podIP"));
	c = cJSON_GetArrayItem(cJSON_GetObjectItem(st2, "containerStatuses"), 0);
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "state"), "waiting"), "reason"),
			    "ContainerCreating");
	s.phase = "Succeeded";
	s.cstate = MYCE_KPOD_TERMINATED;
	s.exit_code = 0;
	_cleanup_json_ cJSON *st3 = myce_kpod_status(p, &s);
	assert_string_equal(myce_json_str(cond(st3, "Ready"), "reason"), "PodCompleted");
	c = cJSON_GetArrayItem(cJSON_GetObjectItem(st3, "containerStatuses"), 0);
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "state"), "terminated"), "reason"),
			    "Completed");
	myce_kpod_free(p);
}

static const cJSON *cstatus(const cJSON *st, int i)
{
	const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "containerStatuses"), i);
	assert_non_null(c);
	return c;
}

static void test_status_several_containers(void **state)
{
	_cleanup_json_ cJSON *j = parse(SIDECAR_POD);
	struct myce_kpod *p = NULL;
	assert_int_equal(myce_kpod_parse(j, "10.78.1.3", &p, NULL), 0);
	int64_t t0 = myce_k8s_time_parse("2026-11-25T10:00:01Z");
	struct myce_kpod_state s = {.phase = "Running", .pod_ip = "10.78.1.3", .start_us = t0,
				    .cstate = MYCE_KPOD_RUNNING, .started_us = t0, .ready = true,
				    .container_id = "myce://100001"};
	_cleanup_json_ cJSON *st = myce_kpod_status(p, &s);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(st, "containerStatuses")), 2);
	assert_string_equal(myce_json_str(cstatus(st, 0), "name"), "redis");
	assert_string_equal(myce_json_str(cstatus(st, 1), "name"), "counter");
	assert_string_equal(myce_json_str(cstatus(st, 1), "image"), "python:3");
	assert_true(myce_json_bool(cstatus(st, 1), "ready", false));
	/* One ID per container. */
	assert_string_equal(myce_json_str(cstatus(st, 0), "containerID"), "myce://100001/redis");
	assert_string_equal(myce_json_str(cstatus(st, 1), "containerID"), "myce://100001/counter");
	assert_string_equal(myce_json_str(cond(st, "ContainersReady"), "status"), "True");

	/* The sidecar ended the pod (exit 3) after a restart: its code is its
	 * own, redis was stopped with it. */
	s.phase = "Failed";
	s.ready = false;
	s.cstate = MYCE_KPOD_TERMINATED;
	s.exit_code = 3;
	s.ended_container = "counter";
	s.restart_count = 1;
	s.last_exit_code = 3;
	s.last_started_us = t0;
	s.last_exit_us = t0 + 1000000;
	_cleanup_json_ cJSON *st2 = myce_kpod_status(p, &s);
	const cJSON *t1 = cJSON_GetObjectItem(cJSON_GetObjectItem(cstatus(st2, 1), "state"), "terminated");
	const cJSON *t0s = cJSON_GetObjectItem(cJSON_GetObjectItem(cstatus(st2, 0), "state"), "terminated");
	assert_int_equal((int)myce_json_num(t1, "exitCode", -1), 3);
	assert_int_equal((int)myce_json_num(t0s, "exitCode", -1), 143);
	const cJSON *l0 = cJSON_GetObjectItem(cJSON_GetObjectItem(cstatus(st2, 0), "lastState"), "terminated");
	const cJSON *l1 = cJSON_GetObjectItem(cJSON_GetObjectItem(cstatus(st2, 1), "lastState"), "terminated");
	assert_int_equal((int)myce_json_num(l0, "exitCode", -1), 143);
	assert_int_equal((int)myce_json_num(l1, "exitCode", -1), 3);
	/* They restart together. */
	assert_int_equal((int)myce_json_num(cstatus(st2, 0), "restartCount", -1), 1);
	assert_int_equal((int)myce_json_num(cstatus(st2, 1), "restartCount", -1), 1);
	assert_string_equal(myce_json_str(cond(st2, "Ready"), "reason"), "PodCompleted");
	myce_kpod_free(p);
}

static void test_time(void **state)
{
	int64_t t = myce_k8s_time_parse("2026-11-25T10:00:00Z");
	assert_true(t > 0);
	char *s = myce_k8s_time(t + 999999);
	assert_string_equal(s, "2026-11-25T10:00:00Z");
	free(s);
	s = myce_k8s_microtime(t + 123456);
	assert_string_equal(s, "2026-11-25T10:00:00.123456Z");
	assert_int_equal(myce_k8s_time_parse(s), t);
	free(s);
	assert_int_equal(myce_k8s_time_parse("2026-11-25 10:00:00"), -1);
	assert_int_equal(myce_k8s_time_parse("2026-11-25T10:00:00+01:00"), -1);
}

static void test_node_objects(void **state)
{
	struct myce_knode n = {.name = "node2", .ip = "10.77.0.12", .pod_cidr = "10.78.2.0/24", .cpu = "2",
			       .memory = "1024Ki", .pods = "110", .version = "v0.1.0-mycedrive", .port = 7701};
	_cleanup_json_ cJSON *o = myce_knode_object(&n);
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(o, "metadata"), "name"), "node2");
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(o, "spec"), "podCIDR"), "10.78.2.0/24");
	int64_t now = myce_k8s_time_parse("2026-11-25T10:00:00Z");
	_cleanup_json_ cJSON *s = myce_knode_status_patch(&n, now, now - 60000000);
	const cJSON *st = cJSON_GetObjectItem(s, "status");
	const cJSON *ready = cond(st, "Ready");
	assert_string_equal(myce_json_str(ready, "status"), "True");
	assert_string_equal(myce_json_str(ready, "lastHeartbeatTime"), "2026-11-25T10:00:00Z");
	assert_string_equal(myce_json_str(ready, "lastTransitionTime"), "2026-11-25T09:59:00Z");
	assert_string_equal(myce_json_str(cond(st, "MemoryPressure"), "status"), "False");
	const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "addresses"), 0);
	assert_string_equal(myce_json_str(a, "type"), "InternalIP");
	assert_string_equal(myce_json_str(a, "address"), "10.77.0.12");
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(st, "allocatable"), "pods"), "110");
	_cleanup_json_ cJSON *l = myce_knode_lease("node2", "uid-9", 40, now + 5);
	const cJSON *spec = cJSON_GetObjectItem(l, "spec");
	assert_string_equal(myce_json_str(spec, "holderIdentity"), "node2");
	assert_string_equal(myce_json_str(spec, "renewTime"), "2026-11-25T10:00:00.000005Z");
	assert_int_equal((int)myce_json_num(spec, "leaseDurationSeconds", 0), 40);
	const cJSON *ref = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(l, "metadata"), "ownerReferences"), 0);
	assert_string_equal(myce_json_str(ref, "uid"), "uid-9");
}

static void test_event(void **state)
{
	int64_t now = myce_k8s_time_parse("2026-11-25T10:00:00Z") + 42;
	_cleanup_json_ cJSON *e = myce_kpod_event("ns", "web-1", "u-7", "node2", "Warning", "BackOff", "again", now);
	const cJSON *meta = cJSON_GetObjectItem(e, "metadata");
	assert_string_equal(myce_json_str(meta, "namespace"), "ns");
	assert_true(!strncmp(myce_json_str(meta, "name"), "web-1.", 6));
	const cJSON *obj = cJSON_GetObjectItem(e, "involvedObject");
	assert_string_equal(myce_json_str(obj, "kind"), "Pod");
	assert_string_equal(myce_json_str(obj, "uid"), "u-7");
	assert_string_equal(myce_json_str(e, "reason"), "BackOff");
	assert_string_equal(myce_json_str(e, "type"), "Warning");
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(e, "source"), "host"), "node2");
	assert_string_equal(myce_json_str(e, "lastTimestamp"), "2026-11-25T10:00:00Z");
	/* Two events of one pod a microsecond apart have different names. */
	_cleanup_json_ cJSON *e2 = myce_kpod_event("ns", "web-1", "u-7", "node2", "Normal", "Started", "x", now + 1);
	assert_string_not_equal(myce_json_str(meta, "name"),
				myce_json_str(cJSON_GetObjectItem(e2, "metadata"), "name"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_pod),    cmocka_unit_test(test_parse_deleting),
		cmocka_unit_test(test_parse_rejects), cmocka_unit_test(test_status),
		cmocka_unit_test(test_time),         cmocka_unit_test(test_node_objects),
		cmocka_unit_test(test_event),        cmocka_unit_test(test_parse_several_containers),
		cmocka_unit_test(test_status_several_containers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
