/* Unit tests for lib/k8s_pod.c: the objects of the Kubernetes-mode migration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "http.h"
#include "k8s_pod.h"
#include "util.h"

/* A pod as the API server returns it for a Deployment's replica. */
static const char *SRC =
	"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"redis-7d9f8b6c5-x2k4p\","
	"\"namespace\":\"edge\",\"uid\":\"1f0c\",\"resourceVersion\":\"812\",\"creationTimestamp\":\"2026-11-25T04:00:00Z\","
	"\"labels\":{\"app\":\"redis\",\"pod-template-hash\":\"7d9f8b6c5\"},"
	"\"annotations\":{\"controller.kubernetes.io/pod-deletion-cost\":\"-5\",\"team\":\"iot\"},"
	"\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"name\":\"x\"},"
	"{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"redis-7d9f8b6c5\",\"uid\":\"aa\",\"controller\":true}]},"
	"\"spec\":{\"nodeName\":\"node1\",\"containers\":[{\"name\":\"redis\",\"image\":\"redis:7\"}]},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.78.1.2\",\"conditions\":["
	"{\"type\":\"PodScheduled\",\"status\":\"True\"},{\"type\":\"Ready\",\"status\":\"True\"}]}}";

static const char *path_str(const cJSON *o, const char *a, const char *b, const char *c)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, a), b);
	if (c)
		v = cJSON_GetObjectItemCaseSensitive(v, c);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_ready_and_owner(void **state)
{
	(void)state;
	_cleanup_json_ cJSON *p = cJSON_Parse(SRC);
	assert_true(myce_k8s_pod_ready(p));
	assert_string_equal(myce_k8s_pod_owner(p, "ReplicaSet"), "redis-7d9f8b6c5");
	assert_null(myce_k8s_pod_owner(p, "StatefulSet"));
	assert_null(myce_k8s_pod_owner(p, "Service")); /* not the controller */
	cJSON *conds = cJSON_GetObjectItem(cJSON_GetObjectItem(p, "status"), "conditions");
	cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetArrayItem(conds, 1), "status"), "False");
	assert_false(myce_k8s_pod_ready(p));
	_cleanup_json_ cJSON *bare = cJSON_Parse("{\"metadata\":{\"name\":\"x\"}}");
	assert_false(myce_k8s_pod_ready(bare));
	assert_null(myce_k8s_pod_owner(bare, "ReplicaSet"));
}

static void test_target(void **state)
{
	(void)state;
	_cleanup_json_ cJSON *src = cJSON_Parse(SRC);
	_cleanup_json_ cJSON *t = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	assert_int_equal(myce_k8s_target_pod(src, "node2", 42, &t, &e), 0);
	assert_string_equal(path_str(t, "metadata", "name", NULL), "redis-7d9f8b6c5-x2k4p-m42");
	assert_string_equal(path_str(t, "metadata", "namespace", NULL), "edge");
	assert_string_equal(path_str(t, "spec", "nodeName", NULL), "node2");
	assert_string_equal(path_str(t, "metadata", "labels", "app"), "redis");
	assert_string_equal(path_str(t, "metadata", "labels", MYCE_K8S_LABEL_MIGRATION), "42");
	/* Not adoptable by the ReplicaSet before the commit. */
	assert_null(path_str(t, "metadata", "labels", MYCE_K8S_LABEL_TEMPLATE_HASH));
	assert_string_equal(path_str(t, "metadata", "annotations", MYCE_K8S_ANN_SOURCE), "redis-7d9f8b6c5-x2k4p");
	assert_string_equal(path_str(t, "metadata", "annotations", "team"), "iot");
	assert_null(path_str(t, "metadata", "annotations", MYCE_K8S_ANN_DELETION_COST));
	const cJSON *m = cJSON_GetObjectItem(t, "metadata");
	assert_null(cJSON_GetObjectItem(m, "ownerReferences"));
	assert_null(cJSON_GetObjectItem(m, "uid"));
	assert_null(cJSON_GetObjectItem(m, "resourceVersion"));
	assert_null(cJSON_GetObjectItem(t, "status"));
	/* The source is untouched. */
	assert_string_equal(path_str(src, "spec", "nodeName", NULL), "node1");
}

static void test_target_long_name_and_bad_input(void **state)
{
	(void)state;
	char name[80];
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	_cleanup_free_ char *js = xasprintf("{\"metadata\":{\"name\":\"%s\"},\"spec\":{}}", name);
	_cleanup_json_ cJSON *src = cJSON_Parse(js);
	_cleanup_json_ cJSON *t = NULL;
	assert_int_equal(myce_k8s_target_pod(src, "node3", 7, &t, NULL), 0);
	const char *tn = path_str(t, "metadata", "name", NULL);
	assert_int_equal(strlen(tn), 63);
	assert_string_equal(tn + 60, "-m7");

	_cleanup_json_ cJSON *nospec = cJSON_Parse("{\"metadata\":{\"name\":\"x\"}}");
	_cleanup_error_ struct myce_error *e = NULL;
	cJSON *t2 = NULL;
	assert_true(myce_k8s_target_pod(nospec, "node2", 1, &t2, &e) < 0);
	assert_null(t2);
	assert_non_null(strstr(myce_error_msg(e), "spec"));
	myce_error_freep(&e);
	assert_true(myce_k8s_target_pod(src, "", 1, &t2, &e) < 0);
	assert_null(t2);
}

static void test_patches(void **state)
{
	(void)state;
	_cleanup_json_ cJSON *src = cJSON_Parse(SRC);
	_cleanup_json_ cJSON *adopt = myce_k8s_adopt_patch(src);
	assert_string_equal(path_str(adopt, "metadata", "labels", MYCE_K8S_LABEL_TEMPLATE_HASH), "7d9f8b6c5");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(adopt, "metadata"), "labels"),
						     MYCE_K8S_LABEL_MIGRATION)));
	_cleanup_json_ cJSON *bare = cJSON_Parse("{\"metadata\":{\"name\":\"x\",\"labels\":{\"app\":\"y\"}}}");
	assert_null(myce_k8s_adopt_patch(bare));
	_cleanup_json_ cJSON *cost = myce_k8s_deletion_cost_patch(-2147483647);
	assert_string_equal(path_str(cost, "metadata", "annotations", MYCE_K8S_ANN_DELETION_COST), "-2147483647");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ready_and_owner),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_target_long_name_and_bad_input),
		cmocka_unit_test(test_patches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
