/* Informer: list, then watch from the list's resourceVersion, keeping a cache
 * and calling the consumer for every change (see k8s.h).
 *
 * The thread alternates between two states:
 *   list   paginated GETs (limit + continue); the cache is replaced by the
 *          result and the difference is delivered; the list's
 *          resourceVersion is where the watch starts;
 *   watch  a streaming GET (watch=1, allowWatchBookmarks) on a curl multi
 *          handle, so that stop and the test hook wake it at once; events
 *          update the cache and the last resourceVersion.
 * A watch that ends cleanly (the server's timeoutSeconds) is resumed from the
 * last resourceVersion; 410 Gone and every other failure lead to a re-list
 * (after a back-off for failures), whose difference covers whatever happened
 * while nothing was watched.  Only this thread writes the cache, so objects
 * it hands to the callback stay valid during the call without the lock; other
 * threads read copies under the lock. */
#include "http.h"
#include "k8s_cache.h"
#include "k8s_internal.h"
#include "k8s_watch.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define LIST_PAGE 500
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000

struct myce_k8s_informer {
	struct myce_k8s *c;
	char *path;
	char *query; /* "" when none */
	myce_k8s_event_fn fn;
	void *ud;
	pthread_t thread;
	CURLM *multi; /* the watch's; curl_multi_wakeup interrupts it */

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	struct myce_k8s_cache *cache;
	bool synced;
	bool stopping;
	bool hold;      /* test hook: no list, no watch */
	bool held;      /* the thread acknowledged hold */
	char *force_rv; /* test hook: the next watch starts here */
	struct myce_k8s_informer_stats stats;

	/* the thread's own */
	char *rv; /* last resourceVersion seen */
};

/* ---- delivery ----------------------------------------------------------- */

static void deliver(struct myce_k8s_informer *inf, enum myce_k8s_event ev, const cJSON *obj)
{
	if (inf->fn)
		inf->fn(inf->ud, ev, obj);
}

static void set_rv(struct myce_k8s_informer *inf, const char *rv)
{
	if (rv && *rv) {
		free(inf->rv);
		inf->rv = xstrdup(rv);
	}
}

static void note_error(struct myce_k8s_informer *inf, struct myce_error *e)
{
	pthread_mutex_lock(&inf->lock);
	free(inf->stats.last_error);
	inf->stats.last_error = xstrdup(myce_error_msg(e));
	pthread_mutex_unlock(&inf->lock);
}

/* Waits ms or until stop; true when stopping. */
static bool pause_ms(struct myce_k8s_informer *inf, long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&inf->lock);
	while (!inf->stopping && pthread_cond_timedwait(&inf->cond, &inf->lock, &ts) == 0)
		;
	bool s = inf->stopping;
	pthread_mutex_unlock(&inf->lock);
	return s;
}

/* ---- list --------------------------------------------------------------- */

/* List items lack kind and apiVersion; watch events carry them.  Fill them
 * in so that the consumer sees the same shape from both. */
static void fill_kind(cJSON *items, const char *list_kind, const char *api_version)
{
	size_t n = list_kind ? strlen(list_kind) : 0;
	if (n <= 4 || strcmp(list_kind + n - 4, "List"))
		return;
	_cleanup_free_ char *kind = xasprintf("%.*s", (int)(n - 4), list_kind);
	cJSON *it;
	cJSON_ArrayForEach(it, items)
	{
		if (!cJSON_IsObject(it))
			continue;
		if (!cJSON_GetObjectItemCaseSensitive(it, "kind"))
			cJSON_AddStringToObject(it, "kind", kind);
		if (api_version && !cJSON_GetObjectItemCaseSensitive(it, "apiVersion"))
			cJSON_AddStringToObject(it, "apiVersion", api_version);
	}
}

static int list_all(struct myce_k8s_informer *inf, cJSON **items_out, char **rv_out, struct myce_error **err)
{
	_cleanup_json_ cJSON *items = cJSON_CreateArray();
	_cleanup_free_ char *cont = NULL, *rv = NULL;
	do {
		_cleanup_free_ char *econt = cont ? myce_k8s_escape(cont) : NULL;
		_cleanup_free_ char *p = xasprintf("%s?limit=%d%s%s%s%s", inf->path, LIST_PAGE, econt ? "&continue=" : "",
						   econt ? econt : "", *inf->query ? "&" : "", inf->query);
		_cleanup_json_ cJSON *page = NULL;
		int status = myce_k8s_get(inf->c, p, &page, err);
		if (status < 0)
			return myce_error_wrap(err, "list");
		if (status != 200)
			return myce_k8s_status_error(status, page, "list", err);
		cJSON *meta = cJSON_GetObjectItemCaseSensitive(page, "metadata");
		cJSON *its = cJSON_GetObjectItemCaseSensitive(page, "items");
		if (its && !cJSON_IsArray(its) && !cJSON_IsNull(its))
			return myce_error_set(err, EBADMSG, "list %s: items is not an array", inf->path);
		fill_kind(its, myce_json_str(page, "kind"), myce_json_str(page, "apiVersion"));
		cJSON *it;
		while (cJSON_IsArray(its) && (it = cJSON_DetachItemFromArray(its, 0)))
			cJSON_AddItemToArray(items, it);
		const char *prv = myce_json_str(meta, "resourceVersion");
		if (prv) {
			free(rv);
			rv = xstrdup(prv);
		}
		const char *pc = myce_json_str(meta, "continue");
		free(cont);
		cont = pc && *pc ? xstrdup(pc) : NULL;
	} while (cont);
	if (!rv)
		return myce_error_set(err, EBADMSG, "list %s: no resourceVersion in the answer", inf->path);
	*items_out = steal_pointer(&items);
	*rv_out = steal_pointer(&rv);
	return 0;
}

static int relist(struct myce_k8s_informer *inf, struct myce_error **err)
{
	cJSON *items;
	_cleanup_free_ char *rv = NULL;
	int r = list_all(inf, &items, &rv, err);
	pthread_mutex_lock(&inf->lock);
	inf->stats.lists++; /* attempts, successful or not */
	pthread_mutex_unlock(&inf->lock);
	if (r < 0)
		return r;
	size_t n;
	pthread_mutex_lock(&inf->lock);
	struct myce_k8s_delta *d = myce_k8s_cache_replace(inf->cache, items, &n);
	bool first = !inf->synced;
	pthread_mutex_unlock(&inf->lock);
	for (size_t i = 0; i < n; i++)
		deliver(inf, d[i].ev, d[i].obj);
	myce_k8s_deltas_free(d, n);
	set_rv(inf, rv);
	if (first) {
		deliver(inf, MYCE_K8S_SYNCED, NULL);
		pthread_mutex_lock(&inf->lock);
		inf->synced = true;
		pthread_cond_broadcast(&inf->cond);
		pthread_mutex_unlock(&inf->lock);
	}
	return 0;
}

/* ---- watch -------------------------------------------------------------- */

enum watch_end {
	WATCH_ENDED,   /* the server closed it (timeoutSeconds): resume from rv */
	WATCH_GONE,    /* 410: re-list */
	WATCH_FAILED,  /* transport or protocol error: back off, re-list */
	WATCH_WOKEN,   /* stop or the test hook */
};

struct watch {
	struct myce_k8s_informer *inf;
	CURL *h;
	struct myce_k8s_lines lines;
	long status;    /* 0 until known */
	char *errbody;  /* a non-200 answer's body */
	size_t errlen;
	bool gone;
	unsigned events;
	struct myce_error *err; /* why the stream was cut by us */
};

static void apply(struct myce_k8s_informer *inf, struct myce_k8s_watch_event *ev)
{
	_cleanup_free_ char *key = myce_k8s_cache_key(ev->object);
	if (!key)
		return;
	cJSON *obj = steal_pointer(&ev->object);
	if (ev->type == MYCE_K8S_WATCH_DELETED) {
		pthread_mutex_lock(&inf->lock);
		cJSON *old = myce_k8s_cache_del(inf->cache, key);
		pthread_mutex_unlock(&inf->lock);
		deliver(inf, MYCE_K8S_DELETED, obj);
		cJSON_Delete(old);
		cJSON_Delete(obj);
		return;
	}
	pthread_mutex_lock(&inf->lock);
	cJSON *old = myce_k8s_cache_put(inf->cache, key, obj);
	pthread_mutex_unlock(&inf->lock);
	/* An ADDED for a key we hold (a watch resumed across a re-list) is a change. */
	deliver(inf, old ? MYCE_K8S_MODIFIED : MYCE_K8S_ADDED, obj);
	cJSON_Delete(old);
}

static int on_line(void *ud, char *line, size_t len)
{
	struct watch *w = ud;
	struct myce_k8s_informer *inf = w->inf;
	struct myce_k8s_watch_event ev;
	if (myce_k8s_watch_decode(line, len, &ev, &w->err) < 0)
		return -EBADMSG;
	w->events++;
	switch (ev.type) {
	case MYCE_K8S_WATCH_ERROR: {
		int code = ev.code;
		if (code == 410) {
			w->gone = true;
		} else {
			const char *m = myce_json_str(ev.object, "message");
			myce_error_set(&w->err, EPROTO, "watch ERROR event %d: %s", code, m ? m : "(no message)");
		}
		myce_k8s_watch_event_clear(&ev);
		return -EPROTO;
	}
	case MYCE_K8S_WATCH_BOOKMARK:
		set_rv(inf, ev.rv);
		pthread_mutex_lock(&inf->lock);
		inf->stats.bookmarks++;
		pthread_mutex_unlock(&inf->lock);
		break;
	default: {
		_cleanup_free_ char *rv = ev.rv ? xstrdup(ev.rv) : NULL;
		apply(inf, &ev);
		set_rv(inf, rv);
	}
	}
	myce_k8s_watch_event_clear(&ev);
	return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct watch *w = ud;
	size_t n = size * nmemb;
	if (!w->status)
		curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
	if (w->status != 200) { /* a Status object, not a stream */
		if (w->errlen + n > 1024 * 1024)
			return 0;
		w->errbody = xrealloc(w->errbody, w->errlen + n + 1);
		memcpy(w->errbody + w->errlen, ptr, n);
		w->errlen += n;
		w->errbody[w->errlen] = '\0';
		return n;
	}
	if (myce_k8s_lines_feed(&w->lines, ptr, n, on_line, w, &w->err) < 0)
		return 0; /* cuts the transfer: gone or err says why */
	return n;
}

static bool woken(struct myce_k8s_informer *inf)
{
	pthread_mutex_lock(&inf->lock);
	bool s = inf->stopping || inf->hold || inf->force_rv;
	pthread_mutex_unlock(&inf->lock);
	return s;
}

static enum watch_end watch_once(struct myce_k8s_informer *inf, struct myce_error **err)
{
	/* Spread the servers' watch ends like client-go (5 to 10 minutes). */
	long timeout_s = 300 + (long)(myce_now_us() % 300);
	_cleanup_free_ char *erv = myce_k8s_escape(inf->rv);
	_cleanup_free_ char *url = xasprintf("%s%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%ld%s%s",
					     inf->c->server, inf->path, erv, timeout_s, *inf->query ? "&" : "",
					     inf->query);
	_cleanup_free_ char *token = myce_k8s_token(inf->c, false);
	struct watch w = {.inf = inf, .h = curl_easy_init()};
	if (!w.h) {
		myce_error_set(err, ENOMEM, "watch: curl init");
		return WATCH_FAILED;
	}
	_cleanup_slist_ struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	myce_k8s_curl_setup(inf->c, w.h, url, token, NULL, &hdrs);
	curl_easy_setopt(w.h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(w.h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(w.h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(w.h, CURLOPT_TIMEOUT_MS, (timeout_s + 30) * 1000L); /* the server ends it first */
	curl_easy_setopt(w.h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(w.h, CURLOPT_WRITEDATA, &w);
	pthread_mutex_lock(&inf->lock);
	inf->stats.watches++;
	pthread_mutex_unlock(&inf->lock);

	curl_multi_add_handle(inf->multi, w.h);
	enum watch_end end = WATCH_WOKEN;
	CURLcode result = CURLE_OK;
	bool done = false;
	while (!done) {
		int running = 0;
		CURLMcode mc = curl_multi_perform(inf->multi, &running);
		if (mc != CURLM_OK) {
			myce_error_set(err, EIO, "watch %s: %s", inf->path, curl_multi_strerror(mc));
			end = WATCH_FAILED;
			break;
		}
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(inf->multi, &left)))
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == w.h) {
				result = msg->data.result;
				done = true;
			}
		if (done)
			break;
		if (woken(inf))
			break;
		curl_multi_poll(inf->multi, NULL, 0, 1000, NULL);
	}
	curl_multi_remove_handle(inf->multi, w.h);
	if (done) {
		if (!w.status)
			curl_easy_getinfo(w.h, CURLINFO_RESPONSE_CODE, &w.status);
		if (w.gone || w.status == 410) {
			end = WATCH_GONE;
		} else if (w.err) {
			myce_error_set(err, w.err->code, "watch %s: %s", inf->path, w.err->msg);
			end = WATCH_FAILED;
		} else if (result != CURLE_OK) {
			myce_error_set(err, EIO, "watch %s: %s", inf->path, *errbuf ? errbuf : curl_easy_strerror(result));
			end = WATCH_FAILED;
		} else if (w.status != 200) {
			_cleanup_json_ cJSON *st = w.errbody ? cJSON_Parse(w.errbody) : NULL;
			myce_k8s_status_error((int)w.status, st, "watch", err);
			if (w.status == 401)
				free(myce_k8s_token(inf->c, true)); /* the token may have rotated */
			end = WATCH_FAILED;
		} else {
			end = WATCH_ENDED;
		}
	}
	if (end == WATCH_GONE) {
		pthread_mutex_lock(&inf->lock);
		inf->stats.gone++;
		pthread_mutex_unlock(&inf->lock);
	}
	curl_easy_cleanup(w.h);
	myce_k8s_lines_free(&w.lines);
	myce_error_free(w.err);
	free(w.errbody);
	return end;
}

/* ---- the thread ---------------------------------------------------------- */

/* Test hook: waits while held; returns a forced resourceVersion (caller
 * frees) or NULL; sets *stop. */
static char *hook(struct myce_k8s_informer *inf, bool *stop)
{
	pthread_mutex_lock(&inf->lock);
	while (inf->hold && !inf->stopping) {
		if (!inf->held) {
			inf->held = true;
			pthread_cond_broadcast(&inf->cond);
		}
		pthread_cond_wait(&inf->cond, &inf->lock);
	}
	inf->held = false;
	char *rv = steal_pointer(&inf->force_rv);
	*stop = inf->stopping;
	pthread_mutex_unlock(&inf->lock);
	return rv;
}

static void *informer_thread(void *arg)
{
	struct myce_k8s_informer *inf = arg;
	bool need_list = true;
	long backoff = BACKOFF_MIN_MS;
	for (;;) {
		bool stop;
		_cleanup_free_ char *forced = hook(inf, &stop);
		if (stop)
			break;
		if (forced) {
			set_rv(inf, forced);
			need_list = false;
		}
		if (!inf->rv)
			need_list = true;
		if (need_list) {
			_cleanup_error_ struct myce_error *e = NULL;
			if (relist(inf, &e) < 0) {
				note_error(inf, e);
				if (pause_ms(inf, backoff))
					break;
				backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
				continue;
			}
			need_list = false;
			backoff = BACKOFF_MIN_MS;
		}
		_cleanup_error_ struct myce_error *e = NULL;
		int64_t t0 = myce_now_us();
		switch (watch_once(inf, &e)) {
		case WATCH_ENDED:
			/* A server that ends every watch at once must not make us spin. */
			if (myce_now_us() - t0 < 1000000) {
				if (pause_ms(inf, backoff))
					goto out;
				backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			} else {
				backoff = BACKOFF_MIN_MS;
			}
			break;
		case WATCH_WOKEN:
			break;
		case WATCH_GONE:
			need_list = true;
			break;
		case WATCH_FAILED:
			note_error(inf, e);
			need_list = true;
			if (pause_ms(inf, backoff))
				goto out;
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			break;
		}
	}
out:
	return NULL;
}

/* ---- API ---------------------------------------------------------------- */

int myce_k8s_informer_start(struct myce_k8s *c, const char *path, const char *query, myce_k8s_event_fn fn, void *ud,
			    struct myce_k8s_informer **out, struct myce_error **err)
{
	*out = NULL;
	if (!c || !path || path[0] != '/' || strchr(path, '?'))
		return myce_error_set(err, EINVAL, "informer: path \"%s\" must start with '/' and have no query",
				      path ? path : "(null)");
	if (query && (strchr(query, '?') || strchr(query, ' ') || strstr(query, "watch=") ||
		      strstr(query, "resourceVersion=")))
		return myce_error_set(err, EINVAL,
				      "informer: query \"%s\": selectors only (no '?', spaces, watch or resourceVersion)",
				      query);
	myce_k8s_curl_init();
	struct myce_k8s_informer *inf = xzalloc(sizeof(*inf));
	inf->c = c;
	inf->path = xstrdup(path);
	inf->query = xstrdup(query ? query : "");
	inf->fn = fn;
	inf->ud = ud;
	inf->cache = myce_k8s_cache_new();
	inf->multi = curl_multi_init();
	pthread_mutex_init(&inf->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&inf->cond, &ca);
	pthread_condattr_destroy(&ca);
	int r = inf->multi ? pthread_create(&inf->thread, NULL, informer_thread, inf) : ENOMEM;
	if (r) {
		if (inf->multi)
			curl_multi_cleanup(inf->multi);
		myce_k8s_cache_free(inf->cache);
		pthread_cond_destroy(&inf->cond);
		pthread_mutex_destroy(&inf->lock);
		free(inf->path);
		free(inf->query);
		free(inf);
		return myce_error_set(err, r, "informer %s: cannot start its thread", path);
	}
	*out = inf;
	return 0;
}

cJSON *myce_k8s_informer_get(struct myce_k8s_informer *inf, const char *ns, const char *name)
{
	if (!name)
		return NULL;
	_cleanup_free_ char *key = myce_k8s_cache_key_of(ns, name);
	pthread_mutex_lock(&inf->lock);
	const cJSON *o = myce_k8s_cache_get(inf->cache, key);
	cJSON *copy = o ? cJSON_Duplicate(o, true) : NULL;
	pthread_mutex_unlock(&inf->lock);
	return copy;
}

static void add_copy(void *ud, const char *key, const cJSON *obj)
{
	cJSON_AddItemToArray(ud, cJSON_Duplicate(obj, true));
}

cJSON *myce_k8s_informer_list(struct myce_k8s_informer *inf)
{
	cJSON *arr = cJSON_CreateArray();
	pthread_mutex_lock(&inf->lock);
	myce_k8s_cache_each(inf->cache, add_copy, arr);
	pthread_mutex_unlock(&inf->lock);
	return arr;
}

bool myce_k8s_informer_wait_synced(struct myce_k8s_informer *inf, long timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (timeout_ms >= 0) {
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&inf->lock);
	while (!inf->synced && !inf->stopping) {
		if (timeout_ms < 0)
			pthread_cond_wait(&inf->cond, &inf->lock);
		else if (pthread_cond_timedwait(&inf->cond, &inf->lock, &ts) != 0)
			break;
	}
	bool s = inf->synced;
	pthread_mutex_unlock(&inf->lock);
	return s;
}

void myce_k8s_informer_stats(struct myce_k8s_informer *inf, struct myce_k8s_informer_stats *st)
{
	pthread_mutex_lock(&inf->lock);
	*st = inf->stats;
	st->last_error = inf->stats.last_error ? xstrdup(inf->stats.last_error) : NULL;
	pthread_mutex_unlock(&inf->lock);
}

void myce_k8s_informer_rewatch_from(struct myce_k8s_informer *inf, const char *rv)
{
	pthread_mutex_lock(&inf->lock);
	if (!rv) {
		inf->hold = true;
		curl_multi_wakeup(inf->multi);
		pthread_cond_broadcast(&inf->cond);
		while (!inf->held && !inf->stopping)
			pthread_cond_wait(&inf->cond, &inf->lock);
	} else {
		free(inf->force_rv);
		inf->force_rv = xstrdup(rv);
		inf->hold = false;
		curl_multi_wakeup(inf->multi);
		pthread_cond_broadcast(&inf->cond);
	}
	pthread_mutex_unlock(&inf->lock);
}

void myce_k8s_informer_stop(struct myce_k8s_informer *inf)
{
	if (!inf)
		return;
	pthread_mutex_lock(&inf->lock);
	inf->stopping = true;
	pthread_cond_broadcast(&inf->cond);
	pthread_mutex_unlock(&inf->lock);
	curl_multi_wakeup(inf->multi);
	pthread_join(inf->thread, NULL);
	curl_multi_cleanup(inf->multi);
	myce_k8s_cache_free(inf->cache);
	pthread_cond_destroy(&inf->cond);
	pthread_mutex_destroy(&inf->lock);
	free(inf->stats.last_error);
	free(inf->force_rv);
	free(inf->rv);
	free(inf->path);
	free(inf->query);
	free(inf);
}
