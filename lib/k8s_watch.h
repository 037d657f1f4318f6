/* The watch stream of the Kubernetes API: newline-delimited JSON events
 * ({"type": "ADDED", "object": {...}}) in a chunked HTTP answer.  A chunk may
 * hold part of an event, several events, or end in the middle of one; events
 * may be large (an object up to the 1.5 MB etcd limit, more with managed
 * fields).  The splitter reassembles lines; the decoder turns one line into
 * an event.  Kept apart from the informer so unit tests can feed them. */
#ifndef MYCE_K8S_WATCH_H
#define MYCE_K8S_WATCH_H

#include "error.h"

#include <cjson/cJSON.h>
#include <stddef.h>

#define MYCE_K8S_WATCH_MAX_LINE (32u * 1024 * 1024)

/* Reassembles lines from chunks. Zero-initialise; max 0 means the default. */
struct myce_k8s_lines {
	char *buf;
	size_t len;     /* bytes held */
	size_t scanned; /* bytes of buf known to hold no '\n' */
	size_t cap;
	size_t max; /* longest line accepted */
};

/* Called for each complete line (without its '\n', NUL-terminated, may be
 * modified); returns 0 to go on or a negative value to stop the feed. */
typedef int (*myce_k8s_line_fn)(void *ud, char *line, size_t len);

/* Appends n bytes and calls fn for each line they complete; empty lines are
 * skipped.  Returns 0, fn's negative value (the rest of the chunk is kept),
 * or -E2BIG with *err set when a line grows past max. */
int myce_k8s_lines_feed(struct myce_k8s_lines *l, const char *data, size_t n, myce_k8s_line_fn fn, void *ud,
			struct myce_error **err);
/* Forgets any partial line (a new stream begins). */
void myce_k8s_lines_reset(struct myce_k8s_lines *l);
void myce_k8s_lines_free(struct myce_k8s_lines *l);

enum myce_k8s_watch_type {
	MYCE_K8S_WATCH_ADDED,
	MYCE_K8S_WATCH_MODIFIED,
	MYCE_K8S_WATCH_DELETED,
	MYCE_K8S_WATCH_BOOKMARK,
	MYCE_K8S_WATCH_ERROR,
};

struct myce_k8s_watch_event {
	enum myce_k8s_watch_type type;
	cJSON *object;          /* owned: the object, or the metav1.Status of an ERROR */
	const char *rv;         /* object's metadata.resourceVersion (points into object) or NULL */
	int code;               /* ERROR: the Status's code (410 for Gone), else 0 */
};

/* Decodes one line.  Errors (-EBADMSG): not JSON, no known type, no object,
 * an object without metadata (except ERROR). */
int myce_k8s_watch_decode(const char *line, size_t len, struct myce_k8s_watch_event *ev, struct myce_error **err);
void myce_k8s_watch_event_clear(struct myce_k8s_watch_event *ev);

#endif
