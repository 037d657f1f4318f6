/* Unit tests for lib/httpc.c, the coordinator's plain HTTP/1.1 client:
 * against the project's own server (lib/http.c, libmicrohttpd) and against
 * canned replies from a raw socket (chunked, cut short, not HTTP, silent). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "httpc.h"
#include "util.h"

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void echo(void *ctx, const struct myce_http_req *req, struct myce_http_resp *resp)
{
	resp->json = cJSON_CreateObject();
	cJSON_AddStringToObject(resp->json, "method", req->method);
	cJSON_AddStringToObject(resp->json, "path", req->path);
	if (req->body)
		cJSON_AddItemToObject(resp->json, "body", cJSON_Duplicate(req->body, true));
	if (!strcmp(req->path, "/missing"))
		myce_http_error(resp, 404, "nothing at %s", req->path);
}

static void test_against_server(void **state)
{
	struct myce_http_server *srv = NULL;
	char addr[64];
	for (int i = 0; i < 20 && !srv; i++) {
		int port, fd = listen_any(&port);
		close(fd);
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		srv = myce_http_server_new(addr, "s3cret", echo, NULL, NULL);
	}
	assert_non_null(srv);
	_cleanup_free_ char *base = xasprintf("http://%s", addr);
	_cleanup_free_ char *url = xasprintf("%s/v1/things", base);

	cJSON *out = NULL;
	struct myce_error *e = NULL;
	assert_int_equal(myce_httpc_call("GET", url, "s3cret", NULL, 2000, &out, &e), 200);
	assert_null(e);
	assert_string_equal(myce_json_str(out, "method"), "GET");
	assert_string_equal(myce_json_str(out, "path"), "/v1/things");
	cJSON_Delete(out);

	cJSON *body = cJSON_CreateObject(); /* a body larger than one segment */
	char *big = xmalloc(100001);
	memset(big, 'x', 100000);
	big[100000] = '\0';
	cJSON_AddStringToObject(body, "big", big);
	assert_int_equal(myce_httpc_call("POST", url, "s3cret", body, 2000, &out, &e), 200);
	assert_string_equal(myce_json_str(cJSON_GetObjectItem(out, "body"), "big"), big);
	cJSON_Delete(out);
	cJSON_Delete(body);
	free(big);

	/* A non-2xx status is returned, with the server's message. */
	assert_int_equal(myce_httpc_call("GET", url, "wrong", NULL, 2000, &out, &e), 401);
	assert_non_null(e);
	assert_int_equal(e->code, 401);
	assert_string_equal(myce_error_msg(e), "missing or wrong bearer token");
	myce_error_freep(&e);
	cJSON_Delete(out);
	_cleanup_free_ char *missing = xasprintf("%s/missing", base);
	assert_int_equal(myce_httpc_call("DELETE", missing, "s3cret", NULL, 2000, NULL, &e), 404);
	assert_string_equal(myce_error_msg(e), "nothing at /missing");
	myce_error_freep(&e);
	myce_http_server_free(srv);

	/* Nobody listens any more. */
	assert_true(myce_httpc_call("GET", url, "s3cret", NULL, 2000, NULL, &e) < 0);
	assert_int_equal(e->code, ECONNREFUSED);
	myce_error_freep(&e);
}

struct canned {
	int fd;
	const char *reply;
};

static void *serve_once(void *arg)
{
	struct canned *c = arg;
	int fd = accept(c->fd, NULL, NULL);
	char buf[4096];
	ssize_t n = recv(fd, buf, sizeof(buf), 0); /* the request */
	(void)n;
	if (c->reply)
		myce_write_full(fd, c->reply, strlen(c->reply));
	else
		usleep(600 * 1000); /* silent past the client's deadline */
	close(fd);
	return NULL;
}

/* Status of one call against a raw server that answers reply. */
static int canned_call(const char *reply, long timeout_ms, cJSON **out, struct myce_error **e)
{
	int port;
	struct canned c = {.fd = listen_any(&port), .reply = reply};
	pthread_t t;
	pthread_create(&t, NULL, serve_once, &c);
	_cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/x", port);
	int st = myce_httpc_call("GET", url, NULL, NULL, timeout_ms, out, e);
	pthread_join(t, NULL);
	close(c.fd);
	return st;
}

static void test_canned_replies(void **state)
{
	cJSON *out = NULL;
	struct myce_error *e = NULL;
	assert_int_equal(canned_call("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				     "4\r\n{\"a\"\r\n6;ext=1\r\n:\"bc\"}\r\n0\r\n\r\n",
				     2000, &out, &e),
			 200);
	assert_string_equal(myce_json_str(out, "a"), "bc");
	cJSON_Delete(out);
	/* No length: the body ends when the server closes. */
	assert_int_equal(canned_call("HTTP/1.0 201 Created\r\n\r\n{\"n\":7}", 2000, &out, &e), 201);
	assert_int_equal(myce_json_num(out, "n", 0), 7);
	cJSON_Delete(out);

	assert_int_equal(canned_call("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", 2000, NULL, &e), -EPROTO);
	assert_non_null(strstr(myce_error_msg(e), "cut short"));
	myce_error_freep(&e);
	assert_int_equal(canned_call("SSH-2.0-OpenSSH\r\n\r\n", 2000, NULL, &e), -EPROTO);
	myce_error_freep(&e);
	assert_int_equal(canned_call("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 2000, NULL, &e),
			 -EPROTO);
	myce_error_freep(&e);

	int64_t t0 = myce_now_us();
	assert_int_equal(canned_call(NULL, 300, NULL, &e), -ETIMEDOUT);
	int64_t waited = myce_now_us() - t0;
	assert_true(waited >= 250 * 1000);
	myce_error_freep(&e);
}

static void test_bad_urls(void **state)
{
	struct myce_error *e = NULL;
	static const char *const bad[] = {"https://127.0.0.1:1/", "127.0.0.1:80/x", "http://:80/", "http://1.2.3.4:0/",
					  "http://1.2.3.4:99999/", "http://1.2.3.4:8x/"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (myce_httpc_call("GET", bad[i], NULL, NULL, 100, NULL, &e) != -EINVAL)
			fail_msg("%s should be refused", bad[i]);
		myce_error_freep(&e);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_server),
		cmocka_unit_test(test_canned_replies),
		cmocka_unit_test(test_bad_urls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
