/* The informer's cache: a chained hash table of objects by key, and the
 * difference to a fresh list (see k8s_cache.h). */
#include "k8s_cache.h"
#include "http.h"
#include "util.h"

#include <stdint.h>
#include <string.h>

struct entry {
	char *key;
	cJSON *obj;
	struct entry *next;
};

struct myce_k8s_cache {
	struct entry **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
};

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct myce_k8s_cache *myce_k8s_cache_new(void)
{
	struct myce_k8s_cache *c = xzalloc(sizeof(*c));
	c->nbuckets = 64;
	c->buckets = xzalloc(c->nbuckets * sizeof(*c->buckets));
	return c;
}

void myce_k8s_cache_free(struct myce_k8s_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nbuckets; i++) {
		for (struct entry *e = c->buckets[i], *next; e; e = next) {
			next = e->next;
			free(e->key);
			cJSON_Delete(e->obj);
			free(e);
		}
	}
	free(c->buckets);
	free(c);
}

char *myce_k8s_cache_key_of(const char *ns, const char *name)
{
	return ns && *ns ? xasprintf("%s/%s", ns, name) : xstrdup(name);
}

char *myce_k8s_cache_key(const cJSON *obj)
{
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
	const char *name = myce_json_str(meta, "name");
	if (!name || !*name)
		return NULL;
	return myce_k8s_cache_key_of(myce_json_str(meta, "namespace"), name);
}

static struct entry **slot(const struct myce_k8s_cache *c, const char *key)
{
	struct entry **p = &c->buckets[hash(key) & (c->nbuckets - 1)];
	while (*p && strcmp((*p)->key, key))
		p = &(*p)->next;
	return p;
}

const cJSON *myce_k8s_cache_get(const struct myce_k8s_cache *c, const char *key)
{
	struct entry *e = *slot(c, key);
	return e ? e->obj : NULL;
}

static void grow(struct myce_k8s_cache *c)
{
	size_t n = c->nbuckets * 2;
	struct entry **b = xzalloc(n * sizeof(*b));
	for (size_t i = 0; i < c->nbuckets; i++) {
		for (struct entry *e = c->buckets[i], *next; e; e = next) {
			next = e->next;
			struct entry **head = &b[hash(e->key) & (n - 1)];
			e->next = *head;
			*head = e;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

cJSON *myce_k8s_cache_put(struct myce_k8s_cache *c, const char *key, cJSON *obj)
{
	struct entry **p = slot(c, key);
	if (*p) {
		cJSON *old = (*p)->obj;
		(*p)->obj = obj;
		return old;
	}
	struct entry *e = xzalloc(sizeof(*e));
	e->key = xstrdup(key);
	e->obj = obj;
	*p = e;
	if (++c->count > c->nbuckets)
		grow(c);
	return NULL;
}

cJSON *myce_k8s_cache_del(struct myce_k8s_cache *c, const char *key)
{
	struct entry **p = slot(c, key);
	struct entry *e = *p;
	if (!e)
		return NULL;
	*p = e->next;
	cJSON *obj = e->obj;
	free(e->key);
	free(e);
	c->count--;
	return obj;
}

size_t myce_k8s_cache_count(const struct myce_k8s_cache *c)
{
	return c->count;
}

void myce_k8s_cache_each(const struct myce_k8s_cache *c, void (*fn)(void *ud, const char *key, const cJSON *obj),
			 void *ud)
{
	for (size_t i = 0; i < c->nbuckets; i++)
		for (struct entry *e = c->buckets[i]; e; e = e->next)
			fn(ud, e->key, e->obj);
}

static const char *rv_of(const cJSON *obj)
{
	return myce_json_str(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "resourceVersion");
}

struct myce_k8s_delta *myce_k8s_cache_replace(struct myce_k8s_cache *c, cJSON *items, size_t *n_out)
{
	struct myce_k8s_cache *fresh = myce_k8s_cache_new();
	size_t cap = (size_t)cJSON_GetArraySize(items) + c->count + 1, n = 0;
	struct myce_k8s_delta *d = xzalloc(cap * sizeof(*d));
	cJSON *item;
	while (items && (item = cJSON_DetachItemFromArray(items, 0))) {
		_cleanup_free_ char *key = myce_k8s_cache_key(item);
		if (!key) {
			cJSON_Delete(item);
			continue;
		}
		cJSON_Delete(myce_k8s_cache_put(fresh, key, item)); /* a duplicate: the later one wins */
	}
	cJSON_Delete(items);
	for (size_t i = 0; i < fresh->nbuckets; i++) {
		for (struct entry *e = fresh->buckets[i]; e; e = e->next) {
			cJSON *old = myce_k8s_cache_del(c, e->key);
			if (!old) {
				d[n++] = (struct myce_k8s_delta){.ev = MYCE_K8S_ADDED, .obj = e->obj};
			} else {
				const char *a = rv_of(old), *b = rv_of(e->obj);
				if (!a || !b || strcmp(a, b))
					d[n++] = (struct myce_k8s_delta){.ev = MYCE_K8S_MODIFIED, .obj = e->obj};
				cJSON_Delete(old);
			}
		}
	}
	/* What is left in c was not listed: deleted while we were not watching. */
	for (size_t i = 0; i < c->nbuckets; i++) {
		for (struct entry *e = c->buckets[i], *next; e; e = next) {
			next = e->next;
			d[n++] = (struct myce_k8s_delta){.ev = MYCE_K8S_DELETED, .obj = e->obj, .owned = true};
			free(e->key);
			free(e);
		}
		c->buckets[i] = NULL;
	}
	free(c->buckets);
	*c = *fresh;
	free(fresh);
	*n_out = n;
	return d;
}

void myce_k8s_deltas_free(struct myce_k8s_delta *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (d[i].owned)
			cJSON_Delete(d[i].obj);
	free(d);
}
