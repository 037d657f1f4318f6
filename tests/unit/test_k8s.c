/* Unit tests for lib/k8s.c and lib/k8s_informer.c that need no API server:
 * transport errors, argument checks, status messages, escaping, and an
 * informer whose server does not answer (back-off, prompt stop).  What a real
 * server answers is tested in tests/k8s/test_k8s_client.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "k8s_internal.h"
#include "util.h"

/* A loopback port where nothing listens: bound, never listened on. */
static int closed_port(int *fd)
{
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(*fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(*fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t len = sizeof(sa);
	assert_int_equal(getsockname(*fd, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

static struct myce_k8s *offline(int *fd)
{
	struct myce_k8s *c = myce_k8s_alloc();
	c->server = xasprintf("http://127.0.0.1:%d", closed_port(fd));
	c->token = xstrdup("t");
	myce_k8s_set_timeout(c, 2000);
	return c;
}

static void test_transport_errors(void **state)
{
	_cleanup_close_ int fd = -1;
	_cleanup_k8s_ struct myce_k8s *c = offline(&fd);
	_cleanup_error_ struct myce_error *err = NULL;
	cJSON *out = (cJSON *)0x1;
	assert_int_equal(myce_k8s_get(c, "/api/v1/namespaces", &out, &err), -ECONNREFUSED);
	assert_null(out);
	assert_non_null(strstr(myce_error_msg(err), "GET http://127.0.0.1:"));
	assert_non_null(strstr(myce_error_msg(err), "/api/v1/namespaces"));

	assert_int_equal(myce_k8s_get(c, "api/v1", NULL, &err), -EINVAL);
	assert_non_null(strstr(myce_error_msg(err), "must start with '/'"));
	assert_int_equal(myce_k8s_create(c, "/api/v1/x", NULL, NULL, &err), -EINVAL);
	cJSON *obj = cJSON_CreateObject();
	assert_int_equal(myce_k8s_patch(c, "/api/v1/x", MYCE_K8S_PATCH_JSON, obj, NULL, &err), -EINVAL);
	assert_non_null(strstr(myce_error_msg(err), "array of operations"));
	assert_int_equal(myce_k8s_patch(c, "/api/v1/x", (enum myce_k8s_patch)42, obj, NULL, &err), -EINVAL);
	cJSON_Delete(obj);
}

static void test_status_error(void **state)
{
	_cleanup_error_ struct myce_error *err = NULL;
	cJSON *st = cJSON_Parse("{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"AlreadyExists\","
				"\"message\":\"configmaps \\\"x\\\" already exists\",\"code\":409}");
	assert_int_equal(myce_k8s_status_error(409, st, "create x", &err), -EEXIST);
	assert_string_equal(myce_error_msg(err), "create x: 409 Conflict: configmaps \"x\" already exists");
	assert_int_equal(err->code, EEXIST);
	cJSON_Delete(st);
	assert_int_equal(myce_k8s_status_error(409, NULL, NULL, &err), -EBUSY);
	assert_string_equal(myce_error_msg(err), "409 Conflict: (no message)");
	assert_int_equal(myce_k8s_status_error(404, NULL, NULL, &err), -ENOENT);
	assert_int_equal(myce_k8s_status_error(410, NULL, NULL, &err), -ESTALE);
	assert_int_equal(myce_k8s_status_error(403, NULL, NULL, &err), -EACCES);
	assert_int_equal(myce_k8s_status_error(422, NULL, NULL, &err), -EINVAL);
	assert_int_equal(myce_k8s_status_error(503, NULL, NULL, &err), -EAGAIN);
	assert_string_equal(myce_error_msg(err), "503 Service Unavailable: (no message)");
	assert_int_equal(myce_k8s_status_error(418, NULL, NULL, &err), -EPROTO);
}

static void test_escape(void **state)
{
	_cleanup_free_ char *a = myce_k8s_escape("spec.nodeName=node1,app in (a b)");
	assert_string_equal(a, "spec.nodeName%3Dnode1%2Capp%20in%20%28a%20b%29");
	_cleanup_free_ char *b = myce_k8s_escape("eyJ2Ijoi/+=");
	assert_string_equal(b, "eyJ2Ijoi%2F%2B%3D");
	_cleanup_free_ char *e = myce_k8s_escape("");
	assert_string_equal(e, "");
}

static void test_informer_offline(void **state)
{
	_cleanup_close_ int fd = -1;
	_cleanup_k8s_ struct myce_k8s *c = offline(&fd);
	_cleanup_error_ struct myce_error *err = NULL;
	struct myce_k8s_informer *inf = NULL;

	assert_int_equal(myce_k8s_informer_start(c, "api/v1/pods", NULL, NULL, NULL, &inf, &err), -EINVAL);
	assert_int_equal(myce_k8s_informer_start(c, "/api/v1/pods?watch=1", NULL, NULL, NULL, &inf, &err), -EINVAL);
	assert_int_equal(myce_k8s_informer_start(c, "/api/v1/pods", "resourceVersion=5", NULL, NULL, &inf, &err),
			 -EINVAL);
	assert_null(inf);

	assert_int_equal(myce_k8s_informer_start(c, "/api/v1/pods", "fieldSelector=spec.nodeName%3Dn1", NULL, NULL,
						 &inf, &err),
			 0);
	/* Never synced; lists retried with back-off 0.2, 0.4, 0.8 s ... */
	assert_false(myce_k8s_informer_wait_synced(inf, 1000));
	struct myce_k8s_informer_stats st;
	myce_k8s_informer_stats(inf, &st);
	assert_in_range(st.lists, 2, 4);
	assert_int_equal(st.watches, 0);
	assert_non_null(st.last_error);
	assert_non_null(strstr(st.last_error, "list: GET"));
	free(st.last_error);
	assert_null(myce_k8s_informer_get(inf, "default", "x"));
	cJSON *all = myce_k8s_informer_list(inf);
	assert_int_equal(cJSON_GetArraySize(all), 0);
	cJSON_Delete(all);
	/* Stop interrupts the back-off at once. */
	int64_t t0 = myce_now_us();
	myce_k8s_informer_stop(inf);
	assert_true(myce_now_us() - t0 < 200000);
	myce_k8s_informer_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transport_errors),
		cmocka_unit_test(test_status_error),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_informer_offline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
