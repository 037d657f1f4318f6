/* Unit tests for lib/ksvc.c: Services + EndpointSlices -> nft rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "http.h"
#include "ksvc.h"
#include "util.h"

static cJSON *parse(const char *s)
{
	cJSON *j = cJSON_Parse(s);
	assert_non_null(j);
	return j;
}

static const char *SERVICES =
	"[{\"metadata\": {\"name\": \"redis\", \"namespace\": \"default\"},"
	"  \"spec\": {\"clusterIP\": \"10.96.0.20\", \"ports\": [{\"port\": 6379, \"targetPort\": 6379}]}},"
	" {\"metadata\": {\"name\": \"web\", \"namespace\": \"default\"},"
	"  \"spec\": {\"clusterIP\": \"10.96.0.9\", \"ports\": [{\"name\": \"http\", \"port\": 80},"
	"                                                      {\"name\": \"dns\", \"port\": 53, \"protocol\": \"UDP\"}]}},"
	" {\"metadata\": {\"name\": \"headless\", \"namespace\": \"default\"},"
	"  \"spec\": {\"clusterIP\": \"None\", \"ports\": [{\"port\": 1}]}},"
	" {\"metadata\": {\"name\": \"empty\", \"namespace\": \"other\"},"
	"  \"spec\": {\"clusterIP\": \"10.96.0.30\", \"ports\": [{\"port\": 1883}]}}]";

static const char *SLICES =
	"[{\"metadata\": {\"name\": \"redis-abc\", \"namespace\": \"default\","
	"   \"labels\": {\"kubernetes.io/service-name\": \"redis\"}},"
	"  \"addressType\": \"IPv4\", \"ports\": [{\"name\": \"\", \"port\": 6379, \"protocol\": \"TCP\"}],"
	"  \"endpoints\": [{\"addresses\": [\"10.78.1.2\"], \"conditions\": {\"ready\": false, \"serving\": true,"
	"                   \"terminating\": true}},"
	"                 {\"addresses\": [\"10.78.2.2\"], \"conditions\": {\"ready\": false, \"serving\": false}}]},"
	" {\"metadata\": {\"name\": \"web-1\", \"namespace\": \"default\","
	"   \"labels\": {\"kubernetes.io/service-name\": \"web\"}},"
	"  \"addressType\": \"IPv4\", \"ports\": [{\"name\": \"http\", \"port\": 8080, \"protocol\": \"TCP\"},"
	"                                        {\"name\": \"dns\", \"port\": 5353, \"protocol\": \"UDP\"}],"
	"  \"endpoints\": [{\"addresses\": [\"10.78.3.4\"], \"conditions\": {\"ready\": true}},"
	"                 {\"addresses\": [\"10.78.1.9\"]},"
	"                 {\"addresses\": [\"10.78.3.5\"], \"conditions\": {\"ready\": false, \"serving\": true}}]},"
	" {\"metadata\": {\"name\": \"web-2\", \"namespace\": \"default\","
	"   \"labels\": {\"kubernetes.io/service-name\": \"web\"}},"
	"  \"addressType\": \"IPv4\", \"ports\": [{\"name\": \"http\", \"port\": 8080, \"protocol\": \"TCP\"}],"
	"  \"endpoints\": [{\"addresses\": [\"10.78.3.4\"]}]},"
	" {\"metadata\": {\"name\": \"web-v6\", \"namespace\": \"default\","
	"   \"labels\": {\"kubernetes.io/service-name\": \"web\"}},"
	"  \"addressType\": \"IPv6\", \"ports\": [{\"name\": \"http\", \"port\": 8080}],"
	"  \"endpoints\": [{\"addresses\": [\"fd00::1\"]}]},"
	" {\"metadata\": {\"name\": \"empty-x\", \"namespace\": \"default\","
	"   \"labels\": {\"kubernetes.io/service-name\": \"empty\"}},"
	"  \"addressType\": \"IPv4\", \"ports\": [{\"port\": 1883}], \"endpoints\": [{\"addresses\": [\"10.78.1.7\"]}]}]";

static void test_compute(void **state)
{
	_cleanup_json_ cJSON *svcs = parse(SERVICES);
	_cleanup_json_ cJSON *slices = parse(SLICES);
	struct myce_ksvc_map *m = myce_ksvc_compute(svcs, slices);
	/* Sorted by IP: web (10.96.0.9, tcp then udp), redis (.20), empty (.30); headless skipped. */
	assert_int_equal(m->n, 4);
	assert_string_equal(m->e[0].id, "default/web:http");
	assert_string_equal(m->e[0].proto, "tcp");
	assert_int_equal(m->e[0].port, 80);
	/* Ready endpoints of both slices, de-duplicated, sorted; the
	 * serving-but-not-ready one is left out while ready ones exist. */
	assert_int_equal(m->e[0].n_eps, 2);
	assert_string_equal(m->e[0].eps[0].ip, "10.78.1.9");
	assert_int_equal(m->e[0].eps[0].port, 8080);
	assert_string_equal(m->e[0].eps[1].ip, "10.78.3.4");
	assert_string_equal(m->e[1].id, "default/web:dns");
	assert_string_equal(m->e[1].proto, "udp");
	assert_int_equal(m->e[1].n_eps, 2);
	assert_int_equal(m->e[1].eps[0].port, 5353);
	/* No ready endpoint: the serving (terminating) one, not the unserving. */
	assert_string_equal(m->e[2].id, "default/redis:");
	assert_int_equal(m->e[2].n_eps, 1);
	assert_string_equal(m->e[2].eps[0].ip, "10.78.1.2");
	/* A slice of another namespace's service of the same name does not count. */
	assert_string_equal(m->e[3].id, "other/empty:");
	assert_int_equal(m->e[3].n_eps, 0);

	char *nft = myce_ksvc_nft(m, "myce-k8s-svc", NULL);
	assert_null(strstr(nft, "masquerade"));
	char *masq = myce_ksvc_nft(m, "myce-k8s-svc", "10.78.0.0/16");
	assert_non_null(strstr(masq, "add rule ip myce-k8s-svc postrouting meta mark & 0x4000 == 0x4000 masquerade\n"));
	/* Marked in the service's chain, before its DNAT. */
	const char *mark = strstr(masq, "add rule ip myce-k8s-svc svc-2 ip saddr 10.78.0.0/16 meta mark set meta mark | 0x4000\n");
	assert_non_null(mark);
	assert_true(mark < strstr(masq, "add rule ip myce-k8s-svc svc-2 meta l4proto tcp dnat to"));
	free(masq);
	assert_non_null(strstr(nft, "add table ip myce-k8s-svc\ndelete table ip myce-k8s-svc\nadd table ip myce-k8s-svc\n"));
	assert_non_null(strstr(nft, "add element ip myce-k8s-svc services { 10.96.0.9 . tcp . 80 : goto svc-0 }\n"));
	assert_non_null(strstr(nft, "add rule ip myce-k8s-svc svc-0 numgen random mod 2 vmap { 0 : goto svc-0-ep-0, "
				    "1 : goto svc-0-ep-1 }\n"));
	assert_non_null(strstr(nft, "add rule ip myce-k8s-svc svc-0-ep-1 meta l4proto tcp dnat to 10.78.3.4:8080\n"));
	assert_non_null(strstr(nft, "add element ip myce-k8s-svc services { 10.96.0.20 . tcp . 6379 : goto svc-2 }\n"));
	assert_non_null(strstr(nft, "add rule ip myce-k8s-svc svc-2 meta l4proto tcp dnat to 10.78.1.2:6379\n"));
	assert_non_null(strstr(nft, "add element ip myce-k8s-svc no-endpoints { 10.96.0.30 . tcp . 1883 }\n"));
	assert_null(strstr(nft, "svc-3"));

	/* Equal input, equal text (the proxy skips unchanged rule sets). */
	struct myce_ksvc_map *m2 = myce_ksvc_compute(svcs, slices);
	char *nft2 = myce_ksvc_nft(m2, "myce-k8s-svc", NULL);
	assert_string_equal(nft, nft2);
	free(nft2);
	myce_ksvc_map_free(m2);
	free(nft);
	myce_ksvc_map_free(m);
}

static void test_empty_and_garbage(void **state)
{
	struct myce_ksvc_map *m = myce_ksvc_compute(NULL, NULL);
	assert_int_equal(m->n, 0);
	char *nft = myce_ksvc_nft(m, "t", NULL);
	assert_non_null(strstr(nft, "add map ip t services"));
	free(nft);
	myce_ksvc_map_free(m);
	_cleanup_json_ cJSON *svcs = parse("[{}, {\"metadata\": {\"name\": \"x\", \"namespace\": \"y\"}, \"spec\": "
					   "{\"clusterIP\": \"10.96.0.1\", \"ports\": [{\"port\": 0}, {\"port\": 70000},"
					   "{\"port\": 5, \"protocol\": \"ICMP\"}]}}, 3, \"s\"]");
	_cleanup_json_ cJSON *slices = parse("[{\"metadata\": {\"labels\": {\"kubernetes.io/service-name\": \"x\"}}}]");
	m = myce_ksvc_compute(svcs, slices);
	assert_int_equal(m->n, 0);
	myce_ksvc_map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compute),
		cmocka_unit_test(test_empty_and_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
