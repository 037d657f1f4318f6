/* Content-addressed 4 KiB blocks: their names (XXH3-128 of the contents)
 * and the destination's store of blocks received by pre-copy
 * (docs/precopy.md).
 *
 * The store is a cache, not a source of truth: each block is checked
 * against its name on arrival, and the files rebuilt from it are verified as
 * a whole by the stream (FILE_END's hash over the bytes written), which
 * then names the corrupt block with myce_blockstore_verify_seq.  The _read*
 * functions verify a block each time; the _peek* ones do not. */
#ifndef MYCE_BLOCKSTORE_H
#define MYCE_BLOCKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MYCE_BLOCK_SIZE 4096

/* A block's name: XXH3-128 (seed 0) of its 4096 bytes, in xxhash's
 * canonical (big-endian) byte order.  The same 16 bytes go on the wire. */
struct myce_blockname {
	uint8_t b[16];
};

void myce_block_name(const void *block, struct myce_blockname *out);
/* True if all 4096 bytes are zero (memcmp against a zero block: fast even
 * in unoptimised builds). */
bool myce_block_is_zero(const void *block);
/* The name of the all-zero block.  Such blocks are never stored nor sent
 * by pre-copy; a reference to this name always resolves (to zeros). */
const struct myce_blockname *myce_block_zero_name(void);
bool myce_blockname_eq(const struct myce_blockname *a, const struct myce_blockname *b);
/* Hex of the name, for messages ("0123...ef", 33 bytes with the NUL). */
void myce_blockname_hex(const struct myce_blockname *n, char out[33]);

/* The store: block contents in one arena (address space reserved up front
 * with MAP_NORESERVE, so memory is used only as blocks arrive), names in a
 * parallel array, an open-addressing index (linear probing) over them, and
 * the order in which blocks arrived ("sequence numbers": the sender's
 * BLOCK_RUN records refer to blocks by them).  No per-block allocation.
 * Not thread-safe: one thread fills it, then the same or another reads it. */
struct myce_blockstore;

/* capacity: most blocks it will ever hold (1 .. 2^31); it reserves
 * capacity * (4 KiB + 20 bytes) of address space.  NULL if the address space
 * cannot be reserved (errno set). */
struct myce_blockstore *myce_blockstore_new(size_t capacity);
void myce_blockstore_free(struct myce_blockstore *bs);

size_t myce_blockstore_count(const struct myce_blockstore *bs);    /* blocks held */
size_t myce_blockstore_capacity(const struct myce_blockstore *bs); /* the limit */

/* Stores a copy of block under the name the store computes itself (also
 * returned in *name_out if not NULL), and appends it to the arrival
 * sequence whether or not it was already held.  Returns 1 if added, 0 if
 * already held, -ENOSPC when the store or the sequence is full.  All-zero
 * blocks are refused with -EINVAL (they need no storage). */
int myce_blockstore_put(struct myce_blockstore *bs, const void *block,
			struct myce_blockname *name_out);

/* The held block named name, or NULL; NOT verified (see _read). */
const uint8_t *myce_blockstore_get(const struct myce_blockstore *bs,
				   const struct myce_blockname *name);

/* The held block named name, verified: its contents are hashed again and
 * must match the name.  0 and *block, -ENOENT if not held, -EBADMSG if the
 * stored contents do not match the name (a corrupted store).  The zero
 * name resolves to a static zero block. */
int myce_blockstore_read(const struct myce_blockstore *bs, const struct myce_blockname *name,
			 const uint8_t **block);

/* The block that arrived seq-th (0-based) since the last _seq_reset,
 * verified like _read; *name_out (if not NULL) gets its name.  -ENOENT if
 * seq is beyond the sequence or the block was removed meanwhile. */
int myce_blockstore_read_seq(const struct myce_blockstore *bs, uint64_t seq,
			     const uint8_t **block, struct myce_blockname *name_out);
/* As _read_seq without hashing the block again: the rebuild of a file
 * hashes its bytes once, as the file's checksum. */
int myce_blockstore_peek_seq(const struct myce_blockstore *bs, uint64_t seq,
			     const uint8_t **block, struct myce_blockname *name_out);
/* As _read without hashing the block again (the zero name resolves too). */
int myce_blockstore_peek(const struct myce_blockstore *bs, const struct myce_blockname *name,
			 const uint8_t **block);
uint64_t myce_blockstore_seq_count(const struct myce_blockstore *bs);
/* Starts a new arrival sequence (myce_precopy_recv calls it at the start of
 * a pre-copy).  Blocks already held stay held. */
void myce_blockstore_seq_reset(struct myce_blockstore *bs);

/* Forgets a block (its arena slot is not reused).  True if it was held. */
bool myce_blockstore_remove(struct myce_blockstore *bs, const struct myce_blockname *name);

#endif
