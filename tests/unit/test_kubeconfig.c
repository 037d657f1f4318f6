/* Unit tests for lib/kubeconfig.c: kubeconfig files (inline data, files
 * relative to the kubeconfig, contexts, bad input), in-cluster service
 * accounts, and the choice between them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "k8s_internal.h"
#include "util.h"

static char *root; /* temp dir of the current test */

static int setup(void **state)
{
	root = xstrdup("/tmp/test_kubeconfig.XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	myce_rm_rf(root);
	free(root);
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	unsetenv("MYCE_K8S_SA_DIR");
	return 0;
}

/* Writes root/rel (creating directories) and returns its path. */
static char *put(const char *rel, const char *text)
{
	char *p = xasprintf("%s/%s", root, rel);
	char *dir = xstrdup(p);
	*strrchr(dir, '/') = '\0';
	assert_int_equal(myce_mkdir_p(dir, 0755), 0);
	free(dir);
	assert_int_equal(myce_write_file_atomic(p, text, strlen(text), 0600), 0);
	return p;
}

static void assert_blob(const struct myce_k8s_blob *b, const char *want)
{
	assert_non_null(b->data);
	assert_int_equal(b->len, strlen(want));
	assert_memory_equal(b->data, want, b->len);
}

/* "-----BEGIN CERTIFICATE-----\nCA\n" etc. in base64 */
#define CA_PEM "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
#define CERT_PEM "cert-pem\n"
#define CERT_B64 "Y2VydC1wZW0K"
#define KEY_PEM "key-pem\n"
#define KEY_B64 "a2V5LXBlbQo="

static const char inline_cfg[] =
	"apiVersion: v1\n"
	"kind: Config\n"
	"current-context: admin@test\n"
	"clusters:\n"
	"- name: test\n"
	"  cluster:\n"
	"    server: https://127.0.0.1:16443/\n"
	"    certificate-authority-data: " CA_B64 "\n"
	"- name: other\n"
	"  cluster:\n"
	"    server: http://10.0.0.1:8080\n"
	"    insecure-skip-tls-verify: true\n"
	"users:\n"
	"- name: admin\n"
	"  user:\n"
	"    client-certificate-data: " CERT_B64 "\n"
	"    client-key-data: " KEY_B64 "\n"
	"- name: bot\n"
	"  user:\n"
	"    token: \"abc.def\"\n"
	"contexts:\n"
	"- name: admin@test\n"
	"  context: {cluster: test, user: admin, namespace: edge}\n"
	"- name: bot@other\n"
	"  context:\n"
	"    cluster: other\n"
	"    user: bot\n";

static void test_inline_data(void **state)
{
	_cleanup_free_ char *p = put("config", inline_cfg);
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_k8s_ struct myce_k8s *c = NULL;
	assert_int_equal(myce_k8s_from_kubeconfig(p, NULL, &c, &err), 0);
	assert_string_equal(myce_k8s_server(c), "https://127.0.0.1:16443"); /* trailing '/' dropped */
	assert_string_equal(myce_k8s_namespace(c), "edge");
	assert_blob(&c->ca, CA_PEM);
	assert_blob(&c->cert, CERT_PEM);
	assert_blob(&c->key, KEY_PEM);
	assert_null(c->token);
	assert_false(c->insecure);
}

static void test_other_context(void **state)
{
	_cleanup_free_ char *p = put("config", inline_cfg);
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_k8s_ struct myce_k8s *c = NULL;
	assert_int_equal(myce_k8s_from_kubeconfig(p, "bot@other", &c, &err), 0);
	assert_string_equal(c->server, "http://10.0.0.1:8080");
	assert_string_equal(c->ns, "default");
	assert_true(c->insecure);
	assert_null(c->ca.data);
	assert_null(c->cert.data);
	assert_string_equal(c->token, "abc.def");
	assert_null(c->token_file);

	myce_k8s_free(steal_pointer(&c));
	assert_int_equal(myce_k8s_from_kubeconfig(p, "nope", &c, &err), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(myce_error_msg(err), "context \"nope\" not found"));
}

static void test_files_relative(void **state)
{
	_cleanup_free_ char *ca = put("kube/pki/ca.crt", CA_PEM);
	_cleanup_free_ char *cert = put("kube/pki/admin.crt", CERT_PEM);
	_cleanup_free_ char *key = put("kube/pki/admin.key", KEY_PEM);
	_cleanup_free_ char *tok = put("kube/token", "tok-1\n");
	_cleanup_free_ char *p = put("kube/config",
				     "current-context: c\n"
				     "clusters:\n"
				     "- name: k\n"
				     "  cluster:\n"
				     "    server: https://127.0.0.1:6443\n"
				     "    certificate-authority: pki/ca.crt\n"
				     "users:\n"
				     "- name: u\n"
				     "  user:\n"
				     "    client-certificate: pki/admin.crt\n"
				     "    client-key: pki/admin.key\n"
				     "    tokenFile: token\n"
				     "contexts:\n"
				     "- name: c\n"
				     "  context:\n"
				     "    cluster: k\n"
				     "    user: u\n"
				     "    namespace: ~\n");
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_k8s_ struct myce_k8s *c = NULL;
	assert_int_equal(myce_k8s_from_kubeconfig(p, NULL, &c, &err), 0);
	assert_blob(&c->ca, CA_PEM);
	assert_blob(&c->cert, CERT_PEM);
	assert_blob(&c->key, KEY_PEM);
	assert_string_equal(c->token_file, tok);
	assert_string_equal(c->ns, "default"); /* null namespace */
	_cleanup_free_ char *t1 = myce_k8s_token(c, false);
	assert_string_equal(t1, "tok-1");

	/* A rotated token is read when forced (after a 401) or when old. */
	free(put("kube/token", "tok-2\n"));
	_cleanup_free_ char *t2 = myce_k8s_token(c, false);
	assert_string_equal(t2, "tok-1");
	_cleanup_free_ char *t3 = myce_k8s_token(c, true);
	assert_string_equal(t3, "tok-2");
	free(put("kube/token", "tok-3\n"));
	c->token_read_us -= MYCE_K8S_TOKEN_MAX_AGE_US + 1;
	_cleanup_free_ char *t4 = myce_k8s_token(c, false);
	assert_string_equal(t4, "tok-3");
	/* A token file that vanished keeps the last token. */
	_cleanup_free_ char *tp = xasprintf("%s/kube/token", root);
	assert_int_equal(unlink(tp), 0);
	_cleanup_free_ char *t5 = myce_k8s_token(c, true);
	assert_string_equal(t5, "tok-3");
}

/* Each kubeconfig must fail with an error that contains `want`. */
static void expect_error(const char *cfg, const char *context, const char *want)
{
	_cleanup_free_ char *p = put("bad", cfg);
	_cleanup_error_ struct myce_error *err = NULL;
	struct myce_k8s *c = (struct myce_k8s *)0x1;
	int r = myce_k8s_from_kubeconfig(p, context, &c, &err);
	if (r >= 0)
		fail_msg("accepted, expected an error containing \"%s\"", want);
	assert_null(c);
	if (!strstr(myce_error_msg(err), want))
		fail_msg("error \"%s\" does not contain \"%s\"", myce_error_msg(err), want);
	assert_non_null(strstr(myce_error_msg(err), p)); /* names the file */
}

#define CTX "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
#define CLUSTER "clusters:\n- name: k\n  cluster: {server: 'https://h:1'}\n"

static void test_bad_input(void **state)
{
	expect_error(CTX "users:\n- name: u\n  user: {token: t}\n", NULL, "cluster \"k\" not found");
	expect_error(CTX "clusters:\n- name: k\n  cluster: {certificate-authority-data: " CA_B64 "}\n"
			 "users:\n- name: u\n  user: {token: t}\n",
		     NULL, "cluster \"k\": server is missing");
	expect_error(CTX "clusters:\n- name: k\n  cluster: {server: 'h:1'}\nusers:\n- name: u\n  user: {token: t}\n",
		     NULL, "is not an http(s):// URL");
	expect_error(CTX CLUSTER, NULL, "user \"u\" not found");
	expect_error(CTX CLUSTER "users:\n- name: u\n  user: {client-certificate-data: " CERT_B64 "}\n", NULL,
		     "client-certificate without client-key");
	expect_error(CTX CLUSTER "users:\n- name: u\n  user: {client-key-data: '" KEY_B64 "'}\n", NULL,
		     "client-key without client-certificate");
	expect_error(CTX CLUSTER "users:\n- name: u\n  user: {client-certificate-data: 'no*base64', "
				 "client-key-data: " KEY_B64 "}\n",
		     NULL, "client-certificate-data is not valid base64");
	expect_error(CTX CLUSTER "users:\n- name: u\n  user:\n    exec:\n      command: aws\n", NULL,
		     "exec authentication is not supported");
	expect_error(CTX CLUSTER "users:\n- name: u\n  user: {client-certificate: missing.crt, client-key: k}\n",
		     NULL, "missing.crt: No such file or directory");
	expect_error(CTX CLUSTER "users:\n- name: u\n  user: {tokenFile: nothere}\n", NULL, "tokenFile");
	expect_error(CTX CLUSTER "users:\n- name: u\n  user: {token: [a, b]}\n", NULL, "token: expected a string");
	expect_error(CTX "clusters:\n- name: k\n  cluster: {server: 'https://h:1', insecure-skip-tls-verify: maybe}\n"
			 "users:\n- name: u\n  user: {token: t}\n",
		     NULL, "expected true or false");
	expect_error(CTX "clusters:\n- name: k\n  cluster: {server: 'https://h:1', insecure-skip-tls-verify: true,"
			 " certificate-authority-data: " CA_B64 "}\nusers:\n- name: u\n  user: {token: t}\n",
		     NULL, "choose one");
	expect_error("contexts: []\n", NULL, "no current-context");
	expect_error("clusters: {a: b}\ncurrent-context: c\n", NULL, "context \"c\" not found");
	expect_error("- a\n- b\n", NULL, "not a YAML mapping");
	expect_error("", NULL, "not a YAML mapping");
	expect_error("a: [b\n", NULL, "line ");
	expect_error(CTX "clusters: 3\n", NULL, "clusters: expected a list");

	_cleanup_error_ struct myce_error *err = NULL;
	struct myce_k8s *c = NULL;
	_cleanup_free_ char *p = xasprintf("%s/none", root);
	assert_int_equal(myce_k8s_from_kubeconfig(p, NULL, &c, &err), -ENOENT);
	assert_non_null(strstr(myce_error_msg(err), "No such file"));
}

static void test_in_cluster(void **state)
{
	free(put("sa/token", "sa-token-1\n"));
	free(put("sa/ca.crt", CA_PEM));
	free(put("sa/namespace", "edge-system"));
	_cleanup_free_ char *sa = xasprintf("%s/sa", root);
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_k8s_ struct myce_k8s *c = NULL;

	assert_int_equal(myce_k8s_in_cluster(&c, &err), -ENOENT); /* no KUBERNETES_SERVICE_HOST */
	assert_non_null(strstr(myce_error_msg(err), "KUBERNETES_SERVICE_HOST"));

	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	setenv("MYCE_K8S_SA_DIR", sa, 1);
	assert_int_equal(myce_k8s_in_cluster(&c, &err), 0);
	assert_string_equal(c->server, "https://10.96.0.1:443");
	assert_string_equal(c->ns, "edge-system");
	assert_string_equal(c->token, "sa-token-1");
	assert_blob(&c->ca, CA_PEM);
	myce_k8s_free(steal_pointer(&c));

	/* myce_k8s_new picks in-cluster when no kubeconfig and no $KUBECONFIG. */
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	assert_int_equal(myce_k8s_new(NULL, &c, &err), 0);
	assert_string_equal(c->server, "https://[fd00::1]:443");
	myce_k8s_free(steal_pointer(&c));

	/* ... and $KUBECONFIG (its first entry) over in-cluster. */
	_cleanup_free_ char *kc = put("config", inline_cfg);
	_cleanup_free_ char *list = xasprintf("%s:/nonexistent", kc);
	setenv("KUBECONFIG", list, 1);
	assert_int_equal(myce_k8s_new(NULL, &c, &err), 0);
	assert_string_equal(c->server, "https://127.0.0.1:16443");
	myce_k8s_free(steal_pointer(&c));

	/* A service account without a token is a clear error. */
	_cleanup_free_ char *tp = xasprintf("%s/token", sa);
	unlink(tp);
	assert_int_equal(myce_k8s_in_cluster_at("https://10.96.0.1:443", sa, &c, &err), -ENOENT);
	assert_non_null(strstr(myce_error_msg(err), "in-cluster service account: read token"));
}

static void test_base64(void **state)
{
	size_t n;
	_cleanup_free_ char *a = myce_k8s_base64_decode("aGVsbG8=", &n);
	assert_string_equal(a, "hello");
	assert_int_equal(n, 5);
	_cleanup_free_ char *b = myce_k8s_base64_decode("aGVs\nbG8h", &n);
	assert_string_equal(b, "hello!");
	_cleanup_free_ char *e = myce_k8s_base64_decode("", &n);
	assert_int_equal(n, 0);
	_cleanup_free_ char *u = myce_k8s_base64_decode("aGVsbG8", &n); /* unpadded is accepted */
	assert_string_equal(u, "hello");
	assert_null(myce_k8s_base64_decode("a", &n));
	assert_null(myce_k8s_base64_decode("aGVs=bG8", &n));
	assert_null(myce_k8s_base64_decode("aGVsbG8===", &n));
	assert_null(myce_k8s_base64_decode("aGV$", &n));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inline_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_context, setup, teardown),
		cmocka_unit_test_setup_teardown(test_files_relative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
