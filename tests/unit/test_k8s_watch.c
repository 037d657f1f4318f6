/* Unit tests for lib/k8s_watch.c (the watch stream's line splitter and event
 * decoder) and lib/k8s_cache.c (the informer's cache and re-list difference). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "http.h"
#include "k8s_cache.h"
#include "k8s_watch.h"
#include "util.h"

/* Collects decoded events. */
struct sink {
	struct myce_k8s_watch_event ev[16];
	int n;
	int stop_after; /* return -1 after this many lines, 0: never */
	struct myce_error *err;
};

static int collect(void *ud, char *line, size_t len)
{
	struct sink *s = ud;
	assert_int_equal(strlen(line), len);
	assert_true(s->n < 16);
	if (myce_k8s_watch_decode(line, len, &s->ev[s->n], &s->err) < 0)
		return -EBADMSG;
	s->n++;
	return s->stop_after && s->n >= s->stop_after ? -1 : 0;
}

static void sink_clear(struct sink *s)
{
	for (int i = 0; i < s->n; i++)
		myce_k8s_watch_event_clear(&s->ev[i]);
	myce_error_free(s->err);
	*s = (struct sink){0};
}

static const char stream[] =
	"{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"namespace\":\"n\","
	"\"resourceVersion\":\"10\"},\"data\":{\"k\":\"v\\n\"}}}\n"
	"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"namespace\":\"n\","
	"\"resourceVersion\":\"11\"}}}\r\n"
	"\n"
	"{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"resourceVersion\":\"15\","
	"\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}}}\n"
	"{\"type\":\"DELETED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"namespace\":\"n\","
	"\"resourceVersion\":\"16\"}}}\n"
	"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
	"\"Failure\",\"message\":\"too old resource version: 1 (16)\",\"reason\":\"Expired\",\"code\":410}}\n";

static void check_stream(struct sink *s)
{
	assert_int_equal(s->n, 5);
	assert_int_equal(s->ev[0].type, MYCE_K8S_WATCH_ADDED);
	assert_string_equal(s->ev[0].rv, "10");
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(s->ev[0].object, "data"), "k"), "v\n");
	assert_int_equal(s->ev[1].type, MYCE_K8S_WATCH_MODIFIED);
	assert_string_equal(s->ev[1].rv, "11");
	assert_int_equal(s->ev[2].type, MYCE_K8S_WATCH_BOOKMARK);
	assert_string_equal(s->ev[2].rv, "15");
	assert_int_equal(s->ev[3].type, MYCE_K8S_WATCH_DELETED);
	assert_string_equal(s->ev[3].rv, "16");
	assert_int_equal(s->ev[4].type, MYCE_K8S_WATCH_ERROR);
	assert_int_equal(s->ev[4].code, 410);
	assert_null(s->ev[4].rv);
}

static void test_whole_and_split(void **state)
{
	size_t len = strlen(stream);
	/* Every chunk size from 1 byte (each event split everywhere) to all. */
	static const size_t sizes[] = {1, 2, 3, 7, 64, 100, 333, 4096};
	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		struct myce_k8s_lines l = {0};
		struct sink s = {0};
		for (size_t off = 0; off < len; off += sizes[k]) {
			size_t n = len - off < sizes[k] ? len - off : sizes[k];
			assert_int_equal(myce_k8s_lines_feed(&l, stream + off, n, collect, &s, NULL), 0);
		}
		check_stream(&s);
		assert_int_equal(l.len, 0); /* nothing left over */
		sink_clear(&s);
		myce_k8s_lines_free(&l);
	}
}

static void test_partial_kept(void **state)
{
	struct myce_k8s_lines l = {0};
	struct sink s = {0};
	const char *a = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"1\"}}}";
	assert_int_equal(myce_k8s_lines_feed(&l, a, strlen(a), collect, &s, NULL), 0);
	assert_int_equal(s.n, 0); /* no newline yet: nothing delivered */
	assert_int_equal(myce_k8s_lines_feed(&l, "\n", 1, collect, &s, NULL), 0);
	assert_int_equal(s.n, 1);
	/* A new stream forgets a partial line of the old one. */
	assert_int_equal(myce_k8s_lines_feed(&l, "{\"type\":\"ADD", 12, collect, &s, NULL), 0);
	myce_k8s_lines_reset(&l);
	assert_int_equal(myce_k8s_lines_feed(&l, a, strlen(a), collect, &s, NULL), 0);
	assert_int_equal(myce_k8s_lines_feed(&l, "\n", 1, collect, &s, NULL), 0);
	assert_int_equal(s.n, 2);
	sink_clear(&s);
	myce_k8s_lines_free(&l);
}

static void test_large_event(void **state)
{
	/* A 3 MB object in 1000-byte chunks (a big ConfigMap). */
	size_t big = 3 * 1024 * 1024;
	char *val = xmalloc(big + 1);
	memset(val, 'x', big);
	val[big] = '\0';
	_cleanup_free_ char *ev = xasprintf("{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"big\","
					    "\"resourceVersion\":\"7\"},\"data\":{\"v\":\"%s\"}}}\n",
					    val);
	free(val);
	size_t len = strlen(ev);
	struct myce_k8s_lines l = {0};
	struct sink s = {0};
	int64_t t0 = myce_now_us();
	for (size_t off = 0; off < len; off += 1000)
		assert_int_equal(myce_k8s_lines_feed(&l, ev + off, len - off < 1000 ? len - off : 1000, collect, &s,
						     NULL),
				 0);
	int64_t took = myce_now_us() - t0;
	assert_int_equal(s.n, 1);
	const char *v = myce_json_str(cJSON_GetObjectItem(s.ev[0].object, "data"), "v");
	assert_non_null(v);
	assert_int_equal(strlen(v), big);
	/* Linear, not quadratic: 3 MB in 3000 chunks re-scanned each time would
	 * be ~4.5 GB of memchr. */
	assert_true(took < 2000000);
	sink_clear(&s);
	myce_k8s_lines_free(&l);
}

static void test_line_too_long(void **state)
{
	struct myce_k8s_lines l = {.max = 100};
	struct sink s = {0};
	_cleanup_error_ struct myce_error *err = NULL;
	char buf[150];
	memset(buf, 'a', sizeof(buf));
	/* growing past max without a newline */
	assert_int_equal(myce_k8s_lines_feed(&l, buf, sizeof(buf), collect, &s, &err), -E2BIG);
	assert_non_null(strstr(myce_error_msg(err), "longer than 100"));
	/* the stream can go on after the caller decides to */
	const char *ok = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}\n";
	myce_k8s_lines_reset(&l);
	assert_int_equal(myce_k8s_lines_feed(&l, ok, strlen(ok), collect, &s, &err), 0);
	assert_int_equal(s.n, 1);
	assert_null(s.ev[0].rv);
	sink_clear(&s);
	myce_k8s_lines_free(&l);
}

static void test_stop_keeps_rest(void **state)
{
	struct myce_k8s_lines l = {0};
	struct sink s = {.stop_after = 2};
	assert_int_equal(myce_k8s_lines_feed(&l, stream, strlen(stream), collect, &s, NULL), -1);
	assert_int_equal(s.n, 2);
	assert_true(l.len > 0); /* the events after the stop are kept */
	s.stop_after = 0;
	assert_int_equal(myce_k8s_lines_feed(&l, "", 0, collect, &s, NULL), 0);
	check_stream(&s);
	sink_clear(&s);
	myce_k8s_lines_free(&l);
}

static void expect_bad(const char *line, const char *want)
{
	struct myce_k8s_watch_event ev;
	_cleanup_error_ struct myce_error *err = NULL;
	assert_int_equal(myce_k8s_watch_decode(line, strlen(line), &ev, &err), -EBADMSG);
	assert_null(ev.object);
	if (!strstr(myce_error_msg(err), want))
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", line, myce_error_msg(err), want);
}

static void test_bad_events(void **state)
{
	expect_bad("not json", "not a JSON object");
	expect_bad("[1,2]", "not a JSON object");
	expect_bad("{\"type\":\"ADDED\"", "not a JSON object");
	expect_bad("{\"object\":{}}", "unknown type \"(none)\"");
	expect_bad("{\"type\":\"RENAMED\",\"object\":{}}", "unknown type \"RENAMED\"");
	expect_bad("{\"type\":\"ADDED\"}", "ADDED without an object");
	expect_bad("{\"type\":\"ADDED\",\"object\":\"x\"}", "ADDED without an object");
	expect_bad("{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Pod\"}}", "without metadata");
	expect_bad("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}", "BOOKMARK without a resourceVersion");
	/* an ERROR needs no metadata; code defaults to 0 */
	struct myce_k8s_watch_event ev;
	const char *e = "{\"type\":\"ERROR\",\"object\":{\"message\":\"internal\"}}";
	assert_int_equal(myce_k8s_watch_decode(e, strlen(e), &ev, NULL), 0);
	assert_int_equal(ev.type, MYCE_K8S_WATCH_ERROR);
	assert_int_equal(ev.code, 0);
	myce_k8s_watch_event_clear(&ev);
}

/* ---- cache -------------------------------------------------------------- */

static cJSON *obj(const char *ns, const char *name, const char *rv)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *m = cJSON_AddObjectToObject(o, "metadata");
	if (name)
		cJSON_AddStringToObject(m, "name", name);
	if (ns)
		cJSON_AddStringToObject(m, "namespace", ns);
	if (rv)
		cJSON_AddStringToObject(m, "resourceVersion", rv);
	return o;
}

static const char *name_of(const cJSON *o)
{
	return myce_json_str(cJSON_GetObjectItem(o, "metadata"), "name");
}

static void test_cache_diff(void **state)
{
	struct myce_k8s_cache *c = myce_k8s_cache_new();
	cJSON *first = cJSON_CreateArray();
	cJSON_AddItemToArray(first, obj("n", "a", "1"));
	cJSON_AddItemToArray(first, obj("n", "b", "1"));
	cJSON_AddItemToArray(first, obj("n", "c", "1"));
	cJSON_AddItemToArray(first, obj(NULL, "node1", "1")); /* cluster-scoped */
	cJSON_AddItemToArray(first, obj("n", NULL, "1"));     /* no name: dropped */
	size_t n;
	struct myce_k8s_delta *d = myce_k8s_cache_replace(c, first, &n);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(d[i].ev, MYCE_K8S_ADDED);
	myce_k8s_deltas_free(d, n);
	assert_int_equal(myce_k8s_cache_count(c), 4);
	assert_non_null(myce_k8s_cache_get(c, "node1"));
	assert_non_null(myce_k8s_cache_get(c, "n/a"));

	/* Re-list: a unchanged, b changed, c gone, d new, node1 unchanged. */
	cJSON *second = cJSON_CreateArray();
	cJSON_AddItemToArray(second, obj("n", "a", "1"));
	cJSON_AddItemToArray(second, obj("n", "b", "5"));
	cJSON_AddItemToArray(second, obj("n", "d", "6"));
	cJSON_AddItemToArray(second, obj(NULL, "node1", "1"));
	d = myce_k8s_cache_replace(c, second, &n);
	assert_int_equal(n, 3);
	bool seen_b = false, seen_c = false, seen_d = false;
	for (size_t i = 0; i < n; i++) {
		const char *nm = name_of(d[i].obj);
		if (!strcmp(nm, "b") && d[i].ev == MYCE_K8S_MODIFIED && !d[i].owned)
			seen_b = true;
		else if (!strcmp(nm, "c") && d[i].ev == MYCE_K8S_DELETED && d[i].owned)
			seen_c = true;
		else if (!strcmp(nm, "d") && d[i].ev == MYCE_K8S_ADDED && !d[i].owned)
			seen_d = true;
		else
			fail_msg("unexpected delta %d for %s", d[i].ev, nm);
	}
	assert_true(seen_b && seen_c && seen_d);
	myce_k8s_deltas_free(d, n);
	assert_int_equal(myce_k8s_cache_count(c), 4);
	assert_null(myce_k8s_cache_get(c, "n/c"));
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(myce_k8s_cache_get(c, "n/b"), "metadata"),
					  "resourceVersion"),
			    "5");

	/* An empty list deletes everything. */
	d = myce_k8s_cache_replace(c, cJSON_CreateArray(), &n);
	assert_int_equal(n, 4);
	myce_k8s_deltas_free(d, n);
	assert_int_equal(myce_k8s_cache_count(c), 0);
	myce_k8s_cache_free(c);
}

static void test_cache_grow(void **state)
{
	struct myce_k8s_cache *c = myce_k8s_cache_new();
	char name[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "pod-%d", i);
		_cleanup_free_ char *k = myce_k8s_cache_key_of("ns", name);
		assert_null(myce_k8s_cache_put(c, k, obj("ns", name, "1")));
	}
	assert_int_equal(myce_k8s_cache_count(c), 5000);
	for (int i = 0; i < 5000; i += 2) {
		snprintf(name, sizeof(name), "ns/pod-%d", i);
		cJSON *o = myce_k8s_cache_del(c, name);
		assert_non_null(o);
		assert_string_equal(name_of(o), name + 3);
		cJSON_Delete(o);
	}
	assert_int_equal(myce_k8s_cache_count(c), 2500);
	assert_null(myce_k8s_cache_get(c, "ns/pod-4"));
	assert_non_null(myce_k8s_cache_get(c, "ns/pod-4999"));
	cJSON *old = myce_k8s_cache_put(c, "ns/pod-1", obj("ns", "pod-1", "2"));
	assert_non_null(old);
	cJSON_Delete(old);
	assert_int_equal(myce_k8s_cache_count(c), 2500);
	myce_k8s_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_and_split), cmocka_unit_test(test_partial_kept),
		cmocka_unit_test(test_large_event),     cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_stop_keeps_rest), cmocka_unit_test(test_bad_events),
		cmocka_unit_test(test_cache_diff),      cmocka_unit_test(test_cache_grow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
