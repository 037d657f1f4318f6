/* The JSON-over-HTTP client on libcurl (http.h: myce_http_call), in a file
 * of its own so that a program that only serves (the coordinator, which
 * calls node daemons through httpc.c) does not link libcurl. */
#include "http.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

struct growbuf {
	char *p;
	size_t n;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct growbuf *b = ud;
	size_t add = size * nmemb;
	if (b->n + add > 16 * 1024 * 1024)
		return 0;
	b->p = xrealloc(b->p, b->n + add + 1);
	memcpy(b->p + b->n, ptr, add);
	b->n += add;
	b->p[b->n] = '\0';
	return add;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int myce_http_call(const char *method, const char *url, const char *token, const cJSON *body,
		   long timeout_ms, cJSON **out, struct myce_error **err)
{
	return myce_http_call_ca(method, url, token, NULL, body, timeout_ms, out, err);
}

int myce_http_call_ca(const char *method, const char *url, const char *token, const char *ca_file,
		      const cJSON *body, long timeout_ms, cJSON **out, struct myce_error **err)
{
	pthread_once(&curl_once, curl_init_once);
	if (out)
		*out = NULL;
	CURL *c = curl_easy_init();
	if (!c)
		return myce_error_set(err, ENOMEM, "curl init");
	struct curl_slist *hdrs = NULL;
	_cleanup_free_ char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
	if (auth)
		hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	_cleanup_free_ char *payload = body ? cJSON_PrintUnformatted(body) : NULL;
	struct growbuf b = {0};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	if (ca_file) {
		curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	}
	if (payload) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
	}
	CURLcode cr = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	if (cr != CURLE_OK) {
		free(b.p);
		return myce_error_set(err, cr == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNREFUSED, "%s %s: %s",
				      method, url, curl_easy_strerror(cr));
	}
	cJSON *j = b.p ? cJSON_Parse(b.p) : NULL;
	free(b.p);
	if (status < 200 || status >= 300) {
		const char *m = myce_json_str(j, "error");
		myce_error_set(err, EPROTO, "%s", m ? m : "request failed");
		if (err && *err)
			(*err)->code = (int)status;
	}
	if (out)
		*out = j;
	else if (j)
		cJSON_Delete(j);
	return (int)status;
}
