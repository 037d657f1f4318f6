/* Pre-copy without soft-dirty tracking (docs/precopy.md): while the
 * application runs, the source sends its private memory to the destination
 * as content-addressed 4 KiB blocks, in rounds, over the connection that
 * will carry the checkpoint stream; the final stream (myce_stream_send_ex
 * with .known) then refers to the blocks the destination holds instead of
 * sending them again.
 *
 * Wire (records framed like the stream's, docs/stream.md):
 *   source -> destination  PRECOPY_BEGIN
 *   destination -> source  PRECOPY_ACK (free blocks in its store)
 *   source -> destination  PRECOPY_BLOCKS* PRECOPY_END
 *   destination -> source  PRECOPY_ACK (blocks it received)
 * then the stream's HELLO ... END on the same connection.  Both round trips
 * happen before the freeze; the final stream needs none.
 *
 * Correctness never depends on pre-copied contents: they are a cache that
 * the final dump overrides, every block is verified against its name when
 * used, and each rebuilt file against the sender's XXH3. */
#ifndef MYCE_PRECOPY_H
#define MYCE_PRECOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "blockstore.h"
#include "error.h"

#define MYCE_PRECOPY_VERSION 1
#define MYCE_PRECOPY_MAX_ROUNDS 16
#define MYCE_PRECOPY_MAX_BATCH 256 /* blocks per PRECOPY_BLOCKS record */

/* One round: a full read of the processes' memory and the blocks the
 * destination did not hold yet. */
struct myce_precopy_round {
	uint64_t scanned_blocks; /* non-zero 4 KiB blocks read */
	uint64_t zero_blocks;    /* all-zero blocks skipped (never sent) */
	uint64_t new_blocks;     /* sent in this round */
	uint64_t raw_bytes;      /* new_blocks * 4 KiB */
	uint64_t wire_bytes;     /* record bytes written in this round, headers included */
	uint64_t vanished_bytes; /* memory unmapped (or processes gone) while reading */
	uint64_t processes;      /* processes read */
	int64_t read_us;         /* listing and reading memory (/proc, process_vm_readv) */
	int64_t hash_us;         /* naming blocks and looking them up */
	int64_t send_us;         /* compressing and writing records */
	int64_t elapsed_us;
};

struct myce_precopy_report {
	unsigned rounds; /* rounds run (the last one may have been cut short) */
	struct myce_precopy_round round[MYCE_PRECOPY_MAX_ROUNDS];
	uint64_t blocks_sent; /* = blocks the destination holds for the final stream */
	uint64_t raw_bytes;   /* blocks_sent * 4 KiB */
	uint64_t wire_bytes;  /* every byte written, BEGIN to END */
	int64_t elapsed_us;   /* the whole call, both round trips included */
	/* Why it stopped: "converged", "not converging", "max rounds",
	 * "time budget", "block limit" (a static string; NULL while running). */
	const char *stop;
};

/* Called after every record sent and at the end of every round, from the
 * calling thread; rep->rounds is the round in progress (1-based). */
typedef void (*myce_precopy_progress_fn)(void *ud, const struct myce_precopy_report *rep);

struct myce_precopy_opts {
	int zstd_level;             /* 0: store; 1..19 or negative fast levels */
	unsigned max_rounds;        /* 1 .. MYCE_PRECOPY_MAX_ROUNDS */
	uint64_t stop_bytes;        /* converged when a round sends at most this ... */
	double stop_fraction;       /* ... or at most this fraction of the memory read */
	double min_shrink;          /* a round must send <= (1 - min_shrink) x the previous */
	int64_t time_budget_ms;     /* 0: none; checked between batches */
	unsigned blocks_per_record; /* 1 .. MYCE_PRECOPY_MAX_BATCH */
	uint64_t max_blocks;        /* blocks sent at most (the destination's memory) */
	bool descendants;           /* each round also reads every descendant of pids */
	myce_precopy_progress_fn progress;
	void *ud;
};

/* zstd level 1, at most 5 rounds, converged below max(1 MiB, 2% of the
 * memory), a round must shrink the remainder by 25%, a 60 s budget,
 * 256 blocks per record, at most 2^20 blocks (4 GiB), descendants included. */
struct myce_precopy_opts myce_precopy_opts_default(void);

/* The sender's state: the names of the blocks the destination holds, each
 * with its pre-copy sequence number (the order it was sent in), in an
 * open-addressing hash set.  Filled by myce_precopy_send(), read by
 * myce_stream_send_ex(). */
struct myce_precopy_tx;

struct myce_precopy_tx *myce_precopy_tx_new(void);
void myce_precopy_tx_free(struct myce_precopy_tx *tx);
size_t myce_precopy_tx_count(const struct myce_precopy_tx *tx);
/* True if the destination holds the block named name (*seq: its number). */
bool myce_precopy_tx_lookup(const struct myce_precopy_tx *tx, const struct myce_blockname *name,
			    uint32_t *seq);
/* Records that the destination holds name as the next sequence number;
 * returns that number (or the existing one).  myce_precopy_send() does this
 * for every block it sends; exposed for tests. */
uint32_t myce_precopy_tx_add(struct myce_precopy_tx *tx, const struct myce_blockname *name);
void myce_precopy_tx_clear(struct myce_precopy_tx *tx);

/* Source side: runs the pre-copy of the private memory of pids (PIDs of
 * the caller's namespace; see myce_memread_pid_in_ns) over fd, while they
 * run.  tx is cleared, then holds exactly the blocks the destination
 * acknowledged.  opts NULL means the defaults; rep may be NULL.
 * Processes that exit meanwhile are skipped.  On failure tx is empty (the
 * final stream then refers to nothing) and, if the socket still works, an
 * ABORT carries the reason; the connection is not usable for the stream
 * afterwards. */
int myce_precopy_send(int fd, struct myce_precopy_tx *tx, const pid_t *pids, size_t npids,
		      const struct myce_precopy_opts *opts, struct myce_precopy_report *rep,
		      struct myce_error **err);

struct myce_precopy_recv_stats {
	uint64_t records;    /* PRECOPY_BLOCKS records */
	uint64_t blocks;     /* blocks received (all verified and stored) */
	uint64_t new_blocks; /* of which the store did not hold already */
	uint64_t wire_bytes; /* bytes read and written, records and replies */
	int64_t elapsed_us;
};

/* Destination side: answers the sender's PRECOPY_BEGIN, stores every block
 * (named by the XXH3-128 computed here, checked against the sender's
 * digest of the names) until PRECOPY_END, and acknowledges.  Call it only
 * when the caller's handshake said a pre-copy follows; afterwards the same
 * fd carries the stream (myce_stream_recv_hello, then
 * myce_stream_recv_files_ex with .store = bs).  On failure an ABORT with the
 * reason is sent (best effort); the caller closes the connection. */
int myce_precopy_recv(int fd, struct myce_blockstore *bs, struct myce_precopy_recv_stats *st,
		      struct myce_error **err);

#endif
