/* The informer's cache: Kubernetes objects keyed by "namespace/name" (or
 * "name" for cluster-scoped ones) in a hash table, and the difference between
 * the cache and a fresh list, as the events that turn one into the other. */
#ifndef MYCE_K8S_CACHE_H
#define MYCE_K8S_CACHE_H

#include "k8s.h"

#include <cjson/cJSON.h>
#include <stddef.h>

struct myce_k8s_cache;

struct myce_k8s_cache *myce_k8s_cache_new(void);
void myce_k8s_cache_free(struct myce_k8s_cache *c);

/* The key of an object ("ns/name", or "name" without a namespace); NULL when
 * it has no metadata.name. Caller frees. */
char *myce_k8s_cache_key(const cJSON *obj);
/* The key for a namespace (NULL or "" for none) and a name. Caller frees. */
char *myce_k8s_cache_key_of(const char *ns, const char *name);

const cJSON *myce_k8s_cache_get(const struct myce_k8s_cache *c, const char *key);
/* Stores obj (owned) under key; returns the object it replaces (caller
 * frees) or NULL. */
cJSON *myce_k8s_cache_put(struct myce_k8s_cache *c, const char *key, cJSON *obj);
/* Removes key; returns its object (caller frees) or NULL. */
cJSON *myce_k8s_cache_del(struct myce_k8s_cache *c, const char *key);
size_t myce_k8s_cache_count(const struct myce_k8s_cache *c);
/* Calls fn for every object, in no particular order. */
void myce_k8s_cache_each(const struct myce_k8s_cache *c, void (*fn)(void *ud, const char *key, const cJSON *obj),
			 void *ud);

/* One difference. obj points into the cache (ADDED, MODIFIED) or is owned by
 * the delta (DELETED: the last known object). */
struct myce_k8s_delta {
	enum myce_k8s_event ev;
	cJSON *obj;
	bool owned;
};

/* Makes the cache hold exactly the items of the array `items` (consumed),
 * and returns the differences: ADDED for a new key, MODIFIED for a changed
 * metadata.resourceVersion, DELETED for a key no longer listed.  Items
 * without a name are dropped.  Free with myce_k8s_deltas_free. */
struct myce_k8s_delta *myce_k8s_cache_replace(struct myce_k8s_cache *c, cJSON *items, size_t *n_out);
void myce_k8s_deltas_free(struct myce_k8s_delta *d, size_t n);

#endif
