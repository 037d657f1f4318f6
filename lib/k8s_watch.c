/* Watch stream: line reassembly and event decoding (see k8s_watch.h). */
#include "k8s_watch.h"
#include "http.h"
#include "util.h"

#include <errno.h>
#include <string.h>

int myce_k8s_lines_feed(struct myce_k8s_lines *l, const char *data, size_t n, myce_k8s_line_fn fn, void *ud,
			struct myce_error **err)
{
	size_t max = l->max ? l->max : MYCE_K8S_WATCH_MAX_LINE;
	if (l->len + n + 1 > l->cap) {
		size_t cap = l->cap ? l->cap : 4096;
		while (cap < l->len + n + 1)
			cap *= 2;
		l->buf = xrealloc(l->buf, cap);
		l->cap = cap;
	}
	memcpy(l->buf + l->len, data, n);
	l->len += n;

	/* Only the new bytes need a search: what was scanned held no '\n'. */
	size_t start = 0, pos = l->scanned;
	int ret = 0;
	while (pos < l->len) {
		char *nl = memchr(l->buf + pos, '\n', l->len - pos);
		if (!nl)
			break;
		size_t end = (size_t)(nl - l->buf);
		size_t len = end - start;
		if (len > 0 && l->buf[end - 1] == '\r')
			len--;
		pos = end + 1;
		if (len > max) {
			ret = myce_error_set(err, E2BIG, "watch event of %zu bytes is longer than %zu", len, max);
			start = pos;
			break;
		}
		if (len > 0) {
			l->buf[start + len] = '\0';
			ret = fn(ud, l->buf + start, len);
		}
		start = pos;
		if (ret < 0)
			break;
	}
	if (ret == 0 && l->len - start > max) { /* a line still growing past the limit: drop it */
		ret = myce_error_set(err, E2BIG, "watch event longer than %zu bytes", max);
		start = l->len;
	}
	memmove(l->buf, l->buf + start, l->len - start);
	l->len -= start;
	l->scanned = ret == 0 ? l->len : 0;
	return ret;
}

void myce_k8s_lines_reset(struct myce_k8s_lines *l)
{
	l->len = 0;
	l->scanned = 0;
}

void myce_k8s_lines_free(struct myce_k8s_lines *l)
{
	free(l->buf);
	*l = (struct myce_k8s_lines){.max = l->max};
}

static const struct {
	const char *name;
	enum myce_k8s_watch_type type;
} types[] = {
	{"ADDED", MYCE_K8S_WATCH_ADDED},       {"MODIFIED", MYCE_K8S_WATCH_MODIFIED},
	{"DELETED", MYCE_K8S_WATCH_DELETED},   {"BOOKMARK", MYCE_K8S_WATCH_BOOKMARK},
	{"ERROR", MYCE_K8S_WATCH_ERROR},
};

int myce_k8s_watch_decode(const char *line, size_t len, struct myce_k8s_watch_event *ev, struct myce_error **err)
{
	*ev = (struct myce_k8s_watch_event){0};
	_cleanup_json_ cJSON *j = cJSON_ParseWithLength(line, len);
	if (!cJSON_IsObject(j))
		return myce_error_set(err, EBADMSG, "watch event is not a JSON object: %.80s", line);
	const char *type = myce_json_str(j, "type");
	size_t i = 0;
	while (type && i < ARRAY_SIZE(types) && strcmp(types[i].name, type))
		i++;
	if (!type || i == ARRAY_SIZE(types))
		return myce_error_set(err, EBADMSG, "watch event of unknown type \"%s\"", type ? type : "(none)");
	cJSON *obj = cJSON_DetachItemFromObjectCaseSensitive(j, "object");
	if (!cJSON_IsObject(obj)) {
		cJSON_Delete(obj);
		return myce_error_set(err, EBADMSG, "watch event %s without an object", type);
	}
	ev->type = types[i].type;
	ev->object = obj;
	if (ev->type == MYCE_K8S_WATCH_ERROR) {
		ev->code = (int)myce_json_num(obj, "code", 0);
		return 0;
	}
	cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
	if (!cJSON_IsObject(meta)) {
		myce_k8s_watch_event_clear(ev);
		return myce_error_set(err, EBADMSG, "watch event %s: object without metadata", type);
	}
	ev->rv = myce_json_str(meta, "resourceVersion");
	if (!ev->rv && ev->type == MYCE_K8S_WATCH_BOOKMARK) {
		myce_k8s_watch_event_clear(ev);
		return myce_error_set(err, EBADMSG, "watch BOOKMARK without a resourceVersion");
	}
	return 0;
}

void myce_k8s_watch_event_clear(struct myce_k8s_watch_event *ev)
{
	cJSON_Delete(ev->object);
	*ev = (struct myce_k8s_watch_event){0};
}
