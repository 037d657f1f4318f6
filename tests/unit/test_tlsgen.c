/* Unit tests for lib/tlsgen.c with the server's TLS (lib/http.c) and the
 * client's CA option (lib/http_client.c): the cluster's certificates are
 * accepted by libmicrohttpd and verified by libcurl, and nothing else is. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "tlsgen.h"
#include "util.h"

static char *root;

static int setup(void **state)
{
	root = xstrdup("/tmp/test_tlsgen.XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	myce_rm_rf(root);
	free(root);
	return 0;
}

static void ok(void *ctx, const struct myce_http_req *req, struct myce_http_resp *resp)
{
	resp->json = cJSON_CreateObject();
	cJSON_AddStringToObject(resp->json, "path", req->path);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void test_certs_serve_and_verify(void **state)
{
	struct myce_error *e = NULL;
	assert_int_equal(myce_tls_make_certs(root, "127.0.0.1", 2, &e), 0);
	_cleanup_free_ char *ca = xasprintf("%s/ca.pem", root);
	_cleanup_free_ char *crt = xasprintf("%s/tls.crt", root);
	_cleanup_free_ char *key = xasprintf("%s/tls.key", root);
	struct stat st;
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* The CA's own key is not kept anywhere. */
	_cleanup_free_ char *cas = myce_read_file(ca, NULL);
	assert_null(strstr(cas, "PRIVATE KEY"));

	struct myce_http_server *srv = NULL;
	char addr[64];
	for (int i = 0; i < 20 && !srv; i++) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
		srv = myce_http_server_new_tls(addr, "tok", crt, key, ok, NULL, NULL);
	}
	assert_non_null(srv);
	_cleanup_free_ char *https = xasprintf("https://%s/x", addr);
	_cleanup_free_ char *http = xasprintf("http://%s/x", addr);
	cJSON *out = NULL;
	assert_int_equal(myce_http_call_ca("GET", https, "tok", ca, NULL, 5000, &out, &e), 200);
	assert_string_equal(myce_json_str(out, "path"), "/x");
	cJSON_Delete(out);
	/* The token is still required over TLS. */
	assert_int_equal(myce_http_call_ca("GET", https, "bad", ca, NULL, 5000, NULL, &e), 401);
	myce_error_freep(&e);
	/* Without trusting the cluster's CA, or in plain HTTP: refused. */
	assert_true(myce_http_call("GET", https, "tok", NULL, 5000, NULL, &e) < 0);
	myce_error_freep(&e);
	assert_true(myce_http_call("GET", http, "tok", NULL, 5000, NULL, &e) < 0);
	myce_error_freep(&e);
	/* Another cluster's CA does not vouch for this server. */
	_cleanup_free_ char *other = xasprintf("%s/other", root);
	assert_int_equal(myce_mkdir_p(other, 0700), 0);
	assert_int_equal(myce_tls_make_certs(other, "127.0.0.1", 2, &e), 0);
	_cleanup_free_ char *other_ca = xasprintf("%s/ca.pem", other);
	assert_true(myce_http_call_ca("GET", https, "tok", other_ca, NULL, 5000, NULL, &e) < 0);
	myce_error_freep(&e);
	myce_http_server_free(srv);
}

static void test_bad_input(void **state)
{
	struct myce_error *e = NULL;
	assert_true(myce_tls_make_certs(root, "not-an-ip", 2, &e) < 0);
	assert_non_null(strstr(myce_error_msg(e), "not an IPv4 address"));
	myce_error_freep(&e);
	_cleanup_free_ char *ca = xasprintf("%s/ca.pem", root);
	assert_int_equal(access(ca, F_OK), -1); /* nothing written */

	/* A server refuses a key that does not match its certificate. */
	_cleanup_free_ char *a = xasprintf("%s/a", root), *b = xasprintf("%s/b", root);
	assert_int_equal(myce_mkdir_p(a, 0700), 0);
	assert_int_equal(myce_mkdir_p(b, 0700), 0);
	assert_int_equal(myce_tls_make_certs(a, "127.0.0.1", 2, &e), 0);
	assert_int_equal(myce_tls_make_certs(b, "127.0.0.1", 2, &e), 0);
	_cleanup_free_ char *crt = xasprintf("%s/tls.crt", a), *key = xasprintf("%s/tls.key", b);
	assert_null(myce_http_server_new_tls("127.0.0.1:1", "t", crt, key, ok, NULL, &e));
	assert_non_null(strstr(myce_error_msg(e), "TLS certificate"));
	myce_error_freep(&e);
	_cleanup_free_ char *missing = xasprintf("%s/missing.pem", root);
	assert_null(myce_http_server_new_tls("127.0.0.1:1", "t", missing, key, ok, NULL, &e));
	assert_non_null(strstr(myce_error_msg(e), "missing.pem"));
	myce_error_freep(&e);
	assert_null(myce_http_server_new_tls("127.0.0.1:1", "t", crt, NULL, ok, NULL, &e));
	myce_error_freep(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_certs_serve_and_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
