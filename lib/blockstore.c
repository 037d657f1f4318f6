/* Block names and the destination's block store (blockstore.h).
 *
 * Layout: block i lives at arena + i * 4 KiB, its name at names[i]; the
 * index is a power-of-two table of u32 slots holding i + 1 (0 = empty),
 * probed linearly from the name's first 8 bytes (a hash output: already
 * uniform).  The index doubles when half full; deletion shifts the
 * following cluster back, so no tombstones.  seq[k] is the block index of
 * the k-th arrival. */
#include "blockstore.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define MAX_CAPACITY ((size_t)1 << 31)

static const uint8_t zero_block[MYCE_BLOCK_SIZE];

/* XXH3-128 of 4096 zero bytes, canonical. */
static const struct myce_blockname *zero_name_get(void)
{
	static struct myce_blockname zn;
	static bool done;
	if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
		struct myce_blockname n;
		myce_block_name(zero_block, &n);
		zn = n; /* racing threads write the same bytes */
		__atomic_store_n(&done, true, __ATOMIC_RELEASE);
	}
	return &zn;
}

void myce_block_name(const void *block, struct myce_blockname *out)
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(block, MYCE_BLOCK_SIZE));
	memcpy(out->b, c.digest, sizeof(out->b));
}

bool myce_block_is_zero(const void *block)
{
	return memcmp(block, zero_block, MYCE_BLOCK_SIZE) == 0;
}

const struct myce_blockname *myce_block_zero_name(void)
{
	return zero_name_get();
}

bool myce_blockname_eq(const struct myce_blockname *a, const struct myce_blockname *b)
{
	return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

void myce_blockname_hex(const struct myce_blockname *n, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", n->b[i]);
}

struct myce_blockstore {
	size_t capacity, count;
	uint8_t *arena;               /* capacity * 4 KiB, MAP_NORESERVE */
	struct myce_blockname *names; /* capacity, MAP_NORESERVE */
	uint32_t *seq;                /* capacity, MAP_NORESERVE */
	uint64_t nseq;
	uint32_t *slots; /* index: block + 1, or 0 */
	size_t mask;     /* slots - 1 */
	size_t live;     /* blocks in the index (count minus removed) */
};

static void *reserve(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static size_t slot_of(const struct myce_blockname *n, size_t mask)
{
	uint64_t h;
	memcpy(&h, n->b, 8);
	return (size_t)h & mask;
}

struct myce_blockstore *myce_blockstore_new(size_t capacity)
{
	if (capacity == 0 || capacity > MAX_CAPACITY) {
		errno = EINVAL;
		return NULL;
	}
	struct myce_blockstore *bs = xzalloc(sizeof(*bs));
	bs->capacity = capacity;
	bs->arena = reserve(capacity * MYCE_BLOCK_SIZE);
	bs->names = reserve(capacity * sizeof(*bs->names));
	bs->seq = reserve(capacity * sizeof(*bs->seq));
	if (!bs->arena || !bs->names || !bs->seq) {
		int e = errno;
		myce_blockstore_free(bs);
		errno = e;
		return NULL;
	}
	bs->mask = 1023;
	bs->slots = xzalloc((bs->mask + 1) * sizeof(*bs->slots));
	return bs;
}

void myce_blockstore_free(struct myce_blockstore *bs)
{
	if (!bs)
		return;
	if (bs->arena)
		munmap(bs->arena, bs->capacity * MYCE_BLOCK_SIZE);
	if (bs->names)
		munmap(bs->names, bs->capacity * sizeof(*bs->names));
	if (bs->seq)
		munmap(bs->seq, bs->capacity * sizeof(*bs->seq));
	free(bs->slots);
	free(bs);
}

size_t myce_blockstore_count(const struct myce_blockstore *bs)
{
	return bs->live;
}

size_t myce_blockstore_capacity(const struct myce_blockstore *bs)
{
	return bs->capacity;
}

/* Slot holding name, or the empty slot where it would go. */
static size_t find_slot(const struct myce_blockstore *bs, const struct myce_blockname *name)
{
	size_t i = slot_of(name, bs->mask);
	while (bs->slots[i] && !myce_blockname_eq(&bs->names[bs->slots[i] - 1], name))
		i = (i + 1) & bs->mask;
	return i;
}

static void grow(struct myce_blockstore *bs)
{
	size_t nmask = bs->mask * 2 + 1;
	uint32_t *ns = xzalloc((nmask + 1) * sizeof(*ns));
	for (size_t i = 0; i <= bs->mask; i++) {
		uint32_t v = bs->slots[i];
		if (!v)
			continue;
		size_t j = slot_of(&bs->names[v - 1], nmask);
		while (ns[j])
			j = (j + 1) & nmask;
		ns[j] = v;
	}
	free(bs->slots);
	bs->slots = ns;
	bs->mask = nmask;
}

int myce_blockstore_put(struct myce_blockstore *bs, const void *block,
			struct myce_blockname *name_out)
{
	struct myce_blockname name;
	myce_block_name(block, &name);
	if (name_out)
		*name_out = name;
	if (myce_block_is_zero(block))
		return -EINVAL;
	if (bs->nseq >= bs->capacity)
		return -ENOSPC;
	size_t i = find_slot(bs, &name);
	if (bs->slots[i]) {
		bs->seq[bs->nseq++] = bs->slots[i] - 1;
		return 0;
	}
	if (bs->count >= bs->capacity)
		return -ENOSPC;
	size_t b = bs->count++;
	memcpy(bs->arena + b * MYCE_BLOCK_SIZE, block, MYCE_BLOCK_SIZE);
	bs->names[b] = name;
	bs->slots[i] = (uint32_t)(b + 1);
	bs->seq[bs->nseq++] = (uint32_t)b;
	if (++bs->live * 2 > bs->mask + 1)
		grow(bs);
	return 1;
}

const uint8_t *myce_blockstore_get(const struct myce_blockstore *bs,
				   const struct myce_blockname *name)
{
	uint32_t v = bs->slots[find_slot(bs, name)];
	return v ? bs->arena + (size_t)(v - 1) * MYCE_BLOCK_SIZE : NULL;
}

static int verified(const uint8_t *p, const struct myce_blockname *name, const uint8_t **block)
{
	struct myce_blockname got;
	myce_block_name(p, &got);
	if (!myce_blockname_eq(&got, name))
		return -EBADMSG;
	*block = p;
	return 0;
}

int myce_blockstore_read(const struct myce_blockstore *bs, const struct myce_blockname *name,
			 const uint8_t **block)
{
	if (myce_blockname_eq(name, zero_name_get())) {
		*block = zero_block;
		return 0;
	}
	const uint8_t *p = myce_blockstore_get(bs, name);
	if (!p)
		return -ENOENT;
	return verified(p, name, block);
}

int myce_blockstore_read_seq(const struct myce_blockstore *bs, uint64_t seq,
			     const uint8_t **block, struct myce_blockname *name_out)
{
	if (seq >= bs->nseq)
		return -ENOENT;
	uint32_t b = bs->seq[seq];
	const struct myce_blockname *name = &bs->names[b];
	if (name_out)
		*name_out = *name;
	/* Removed meanwhile? (The index no longer points at this block.) */
	if (bs->slots[find_slot(bs, name)] != b + 1)
		return -ENOENT;
	return verified(bs->arena + (size_t)b * MYCE_BLOCK_SIZE, name, block);
}

int myce_blockstore_peek_seq(const struct myce_blockstore *bs, uint64_t seq,
			     const uint8_t **block, struct myce_blockname *name_out)
{
	if (seq >= bs->nseq)
		return -ENOENT;
	uint32_t b = bs->seq[seq];
	const struct myce_blockname *name = &bs->names[b];
	if (name_out)
		*name_out = *name;
	if (bs->slots[find_slot(bs, name)] != b + 1)
		return -ENOENT;
	*block = bs->arena + (size_t)b * MYCE_BLOCK_SIZE;
	return 0;
}

int myce_blockstore_peek(const struct myce_blockstore *bs, const struct myce_blockname *name,
			 const uint8_t **block)
{
	if (myce_blockname_eq(name, zero_name_get())) {
		*block = zero_block;
		return 0;
	}
	const uint8_t *p = myce_blockstore_get(bs, name);
	if (!p)
		return -ENOENT;
	*block = p;
	return 0;
}

uint64_t myce_blockstore_seq_count(const struct myce_blockstore *bs)
{
	return bs->nseq;
}

void myce_blockstore_seq_reset(struct myce_blockstore *bs)
{
	bs->nseq = 0;
}

bool myce_blockstore_remove(struct myce_blockstore *bs, const struct myce_blockname *name)
{
	size_t i = find_slot(bs, name);
	if (!bs->slots[i])
		return false;
	bs->slots[i] = 0;
	bs->live--;
	/* Backward shift: re-place every entry of the cluster after i. */
	for (size_t j = (i + 1) & bs->mask; bs->slots[j]; j = (j + 1) & bs->mask) {
		uint32_t v = bs->slots[j];
		bs->slots[j] = 0;
		size_t k = slot_of(&bs->names[v - 1], bs->mask);
		while (bs->slots[k])
			k = (k + 1) & bs->mask;
		bs->slots[k] = v;
	}
	return true;
}
