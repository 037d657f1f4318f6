/* A Kubernetes API client on libcurl and cJSON.
 *
 * Three parts, one file each:
 *   lib/kubeconfig.c    configuration: kubeconfig (YAML, libyaml), in-cluster
 *                       service account, and the choice between them;
 *   lib/k8s.c           requests: GET/POST/PUT/PATCH/DELETE of JSON objects,
 *                       TLS with CA verification, bearer token or client
 *                       certificate, token re-read for rotating projected tokens;
 *   lib/k8s_informer.c  list + watch with a cache, 410 Gone handling and
 *                       re-list with a computed difference, in its own thread.
 * The watch stream's line splitter and event decoder (lib/k8s_watch.h) are
 * separate so that unit tests can feed them chunks directly.
 *
 * Paths are API paths relative to the server URL, with the query string if
 * any: "/api/v1/namespaces/default/configmaps/x",
 * "/apis/apps/v1/namespaces/ns/deployments?labelSelector=app%3Dredis".
 * Callers percent-encode query values (myce_k8s_escape helps).
 *
 * Conventions: `const` pointers are borrowed; every `*out` the caller frees
 * (cJSON_Delete / myce_k8s_free / myce_k8s_informer_stop).  Functions return
 * 0 (or an HTTP status) on success and a negative errno-style value with *err
 * set on failure; the library never prints. */
#ifndef MYCE_K8S_H
#define MYCE_K8S_H

#include "error.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

/* One API server connection configuration: base URL, authentication, CA.
 * Thread-safe: any number of threads may issue requests on one myce_k8s
 * concurrently (connections are pooled and reused; the token is refreshed
 * under a lock). */
struct myce_k8s;

/* ---- configuration (lib/kubeconfig.c) ----------------------------------- */

/* Reads a kubeconfig file (YAML, libyaml): clusters, users, contexts; the
 * context named by `context` (NULL: the file's current-context).  Understood:
 * cluster.server, certificate-authority (file, relative to the kubeconfig's
 * directory) or certificate-authority-data (base64 PEM),
 * insecure-skip-tls-verify; user.token, tokenFile (re-read like in-cluster
 * tokens), client-certificate(-data), client-key(-data); context.namespace.
 * Unsupported authentication (exec, auth-provider, username/password) and
 * missing or inconsistent fields give a clear error naming the field. */
int myce_k8s_from_kubeconfig(const char *path, const char *context, struct myce_k8s **out, struct myce_error **err);

/* In-cluster configuration: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
 * with the service account's token, ca.crt and namespace from
 * /var/run/secrets/kubernetes.io/serviceaccount, or from the directory in
 * $MYCE_K8S_SA_DIR (tests).  The token file is re-read when the copy in
 * memory is older than 60 s and after any 401 answer (projected tokens
 * rotate); a request answered 401 is retried once with the fresh token. */
int myce_k8s_in_cluster(struct myce_k8s **out, struct myce_error **err);
/* The same from an explicit service account directory and server URL
 * ("https://host:port"); sa_dir NULL means the default directory. */
int myce_k8s_in_cluster_at(const char *server, const char *sa_dir, struct myce_k8s **out, struct myce_error **err);

/* The first that applies: the kubeconfig path if not NULL; $KUBECONFIG (its
 * first entry when it is a ':'-separated list); in-cluster when
 * $KUBERNETES_SERVICE_HOST is set; ~/.kube/config. */
int myce_k8s_new(const char *kubeconfig, struct myce_k8s **out, struct myce_error **err);
void myce_k8s_free(struct myce_k8s *c);

/* The context's namespace or the service account's; "default" if neither. */
const char *myce_k8s_namespace(const struct myce_k8s *c);
/* The server's base URL without a trailing '/', e.g. "https://127.0.0.1:16443". */
const char *myce_k8s_server(const struct myce_k8s *c);
/* Timeout of one request (not of watches) in milliseconds; default 30000. */
void myce_k8s_set_timeout(struct myce_k8s *c, long timeout_ms);

/* ---- requests (lib/k8s.c) ------------------------------------------------ */

/* One request each.  Returns the HTTP status (>= 100) or a negative errno with
 * *err set (transport error: connect, TLS, timeout, unreadable body).  A
 * non-2xx status is NOT an error of the call: *out (may be NULL) receives the
 * parsed JSON body also for error statuses (then usually a metav1.Status);
 * use myce_k8s_status_error() to turn it into a message.  *out is NULL when
 * the body is empty or not JSON. */
enum myce_k8s_patch {
	MYCE_K8S_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
	MYCE_K8S_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-in kinds only) */
	MYCE_K8S_PATCH_JSON,      /* application/json-patch+json (RFC 6902: patch is an array) */
	MYCE_K8S_PATCH_APPLY,     /* application/apply-patch+yaml (server-side apply; JSON is YAML);
				     "fieldManager=mycedrive" is added to the query unless the path
				     has a fieldManager */
};
int myce_k8s_get(struct myce_k8s *c, const char *path, cJSON **out, struct myce_error **err);
int myce_k8s_create(struct myce_k8s *c, const char *path, const cJSON *obj, cJSON **out, struct myce_error **err);
int myce_k8s_replace(struct myce_k8s *c, const char *path, const cJSON *obj, cJSON **out, struct myce_error **err);
int myce_k8s_patch(struct myce_k8s *c, const char *path, enum myce_k8s_patch type, const cJSON *patch, cJSON **out,
		   struct myce_error **err);
/* delete_options (may be NULL): a meta/v1 DeleteOptions, e.g.
 * {"gracePeriodSeconds": 0, "propagationPolicy": "Background"}. */
int myce_k8s_delete(struct myce_k8s *c, const char *path, const cJSON *delete_options, cJSON **out,
		    struct myce_error **err);

/* Sets *err to "<what>: 409 Conflict: <Status.message>" (what may be NULL) and
 * returns a negative errno matching the status (404 -ENOENT, 409 -EEXIST for
 * reason AlreadyExists else -EBUSY, 401/403 -EACCES, 410 -ESTALE, 422/400
 * -EINVAL, 429/5xx -EAGAIN, else -EPROTO); err->code is that errno. */
int myce_k8s_status_error(int http_status, const cJSON *body, const char *what, struct myce_error **err);

/* Percent-encodes s for a path segment or query value (caller frees). */
char *myce_k8s_escape(const char *s);

/* ---- informer (lib/k8s_informer.c) --------------------------------------- */

/* List (paginated: limit + continue) then watch from the list's
 * resourceVersion with allowWatchBookmarks; a cache keyed by namespace/name.
 * When the watch ends (server timeout, dropped connection) it is resumed from
 * the last resourceVersion seen (bookmarks included); on 410 Gone (HTTP status
 * or an ERROR event with code 410) or any other watch error it re-lists and
 * delivers the difference to the cache (ADDED / MODIFIED for a changed
 * resourceVersion / DELETED with the last known object), so the consumer never
 * misses a change, though it may miss intermediate states of one object, as
 * with client-go.  Errors back off exponentially (0.2 s .. 10 s).  Runs in its
 * own thread; callbacks are called from that thread, one at a time; obj is
 * borrowed for the call's duration (copy what you keep). */
enum myce_k8s_event {
	MYCE_K8S_ADDED,
	MYCE_K8S_MODIFIED,
	MYCE_K8S_DELETED,
	MYCE_K8S_SYNCED, /* obj NULL: the initial list has been delivered (once) */
};
typedef void (*myce_k8s_event_fn)(void *ud, enum myce_k8s_event ev, const cJSON *obj);
struct myce_k8s_informer;

/* path: a collection, e.g. "/api/v1/pods" or "/api/v1/namespaces/ns/configmaps"
 * (no query); query: extra selectors, e.g. "fieldSelector=spec.nodeName%3Dnode1"
 * (may be NULL).  The informer borrows c: keep it alive until _stop.  Fails
 * only on bad arguments; the server being unreachable is retried in the
 * thread.  fn may be NULL (cache only). */
int myce_k8s_informer_start(struct myce_k8s *c, const char *path, const char *query, myce_k8s_event_fn fn, void *ud,
			    struct myce_k8s_informer **out, struct myce_error **err);
/* A copy of the cached object (caller frees), or NULL.  ns NULL or "" for
 * cluster-scoped objects. */
cJSON *myce_k8s_informer_get(struct myce_k8s_informer *inf, const char *ns, const char *name);
/* A copy of every cached object as a JSON array (caller frees). */
cJSON *myce_k8s_informer_list(struct myce_k8s_informer *inf);
/* Waits until the initial list has been delivered (SYNCED); true if it was
 * within timeout_ms (< 0: forever). */
bool myce_k8s_informer_wait_synced(struct myce_k8s_informer *inf, long timeout_ms);
/* Counters for tests and logs: how many times the informer listed (1 after
 * the first sync; more after 410 or errors) and how many watches it opened. */
struct myce_k8s_informer_stats {
	unsigned lists;
	unsigned watches;
	unsigned gone;      /* 410 answers or ERROR 410 events */
	unsigned bookmarks; /* BOOKMARK events seen */
	char *last_error;   /* last watch/list error or NULL (caller frees) */
};
void myce_k8s_informer_stats(struct myce_k8s_informer *inf, struct myce_k8s_informer_stats *st);
/* For tests, to prove that a 410 Gone is recovered by a re-list without lost
 * events.  rv NULL: ends the current watch and holds the informer (no list,
 * no watch) until the next call; returns once it is held.  rv not NULL: lets
 * a held or running informer go on with a watch from resourceVersion rv
 * (e.g. "1", long compacted) instead of the last one seen. */
void myce_k8s_informer_rewatch_from(struct myce_k8s_informer *inf, const char *rv);
/* Stops the watch (within about 100 ms), joins the thread, frees. NULL ok. */
void myce_k8s_informer_stop(struct myce_k8s_informer *inf);

static inline void myce_k8s_freep(struct myce_k8s **c)
{
	myce_k8s_free(*c);
	*c = NULL;
}
#define _cleanup_k8s_ __attribute__((cleanup(myce_k8s_freep)))

#endif
