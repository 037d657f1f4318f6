/* Node-to-node checkpoint stream: ships a CRIU image directory and a few
 * extra trees (e.g. the pod's /dev/shm) over one connected socket,
 * zstd-compressed, checksummed, with byte progress.  The wire format is
 * specified in docs/stream.md.
 *
 * Version 2 (the _ex functions) follows a pre-copy on the same connection
 * (precopy.h, docs/precopy.md): blocks of CRIU page files that the
 * destination already holds are sent as references to them.
 *
 * The receiver reads exactly the stream's bytes and not one more, so after
 * myce_stream_recv_files() returns, the caller can keep using the socket
 * (e.g. to send a reply that the sender reads).
 *
 * Neither side sets socket options: timeouts (SO_RCVTIMEO/SO_SNDTIMEO),
 * TCP_NODELAY and buffer sizes are the caller's choice. */
#ifndef MYCE_STREAM_H
#define MYCE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The version myce_stream_send() writes.  myce_stream_send_ex() with a
 * pre-copy's known blocks writes MYCE_STREAM_VERSION_REFS; receivers accept
 * both. */
#define MYCE_STREAM_VERSION 1
#define MYCE_STREAM_VERSION_REFS 2
/* Largest HELLO metadata, in bytes. */
#define MYCE_STREAM_MAX_META (64 * 1024)
/* Largest file either side accepts. */
#define MYCE_STREAM_MAX_FILE_SIZE ((uint64_t)16 << 30)

struct myce_stream_stats {
	uint64_t raw_bytes;  /* file contents */
	uint64_t wire_bytes; /* bytes this call wrote or read, record headers included */
	uint64_t files;
	int64_t elapsed_us; /* time spent in this call */
	/* Version 2 streams: 4 KiB blocks of page files sent / resolved as
	 * references (BLOCK_REF, BLOCK_RUN) instead of data, and how many of
	 * those were all-zero blocks.  Included in raw_bytes. */
	uint64_t ref_blocks;
	uint64_t zero_blocks;
	/* Receiver: time spent writing files and waiting for the sender's
	 * records (where a rebuild's time goes). */
	int64_t write_us, wait_us;
};

/* Called at most once per data record (and once at END), from the calling
 * thread; keep it cheap.  raw_total is the sender's announced total. */
typedef void (*myce_stream_progress_fn)(void *ud, uint64_t raw_done, uint64_t raw_total,
					uint64_t wire_done);

/* Every regular file under dir (recursively; relative paths kept) is sent as
 * "prefix/relpath".  prefix is one path component ("img", "shm").  Symlinks,
 * fifos, sockets, devices and empty directories are not sent.  A dir that
 * does not exist is an error unless optional is true. */
struct myce_stream_source {
	const char *prefix;
	const char *dir;
	bool optional;
};

/* Sends the whole stream: HELLO (meta_json, opaque, at most
 * MYCE_STREAM_MAX_META bytes; NULL means ""), the files of srcs in order,
 * END.  zstd_level 0 stores data uncompressed (fast links); 1..19 (or
 * zstd's negative fast levels) compress it.  progress and stats may be NULL.
 * If the failure is local (a file cannot be read) and the socket is still
 * usable, an ABORT record carrying the error message is sent before
 * returning, so the receiver fails with the sender's reason. */
int myce_stream_send(int fd, const char *meta_json, const struct myce_stream_source *srcs,
		     size_t nsrcs, int zstd_level, myce_stream_progress_fn progress, void *ud,
		     struct myce_stream_stats *stats, struct myce_error **err);

/* Sends an ABORT record (reason truncated to 4 KiB).  For failures that
 * happen outside myce_stream_send() (e.g. the CRIU dump failed), either
 * before the stream starts or between its records.  Best effort: 0 or
 * -errno. */
int myce_stream_send_abort(int fd, const char *reason);

/* Receiver, step 1: reads the HELLO record (version 1 or 2) and returns its
 * metadata (caller frees), so the caller can act on it (e.g. prepare the
 * network) before the data arrives.  An ABORT from the sender becomes an
 * error carrying the sender's reason (code ECONNABORTED). */
int myce_stream_recv_hello(int fd, char **meta_json_out, struct myce_error **err);

/* A file named "prefix/rel" on the wire is written to "dir/rel".  With
 * keep_owner, it gets the sender's uid/gid (needs CAP_CHOWN; for trees such
 * as /dev/shm that a non-root workload reopens); else the caller owns it. */
struct myce_stream_dest {
	const char *prefix;
	const char *dir;
	bool keep_owner;
};

/* Receiver, step 2: receives the files up to and including END, verifying
 * every path, size, checksum and count.  Paths that are absolute, contain
 * "." / ".." / empty components or have an unknown prefix are rejected.
 * Files are created (O_TRUNC, mode & 0777) with their parent directories
 * (mode 0700) under dir; they are not fsynced.  On error the destination
 * dirs may hold partial files: the caller removes them.
 * The destination dirs must not be writable by anyone less trusted than the
 * caller (a symlink planted there would be followed for parent dirs). */
int myce_stream_recv_files(int fd, const struct myce_stream_dest *dests, size_t ndests,
			   myce_stream_progress_fn progress, void *ud,
			   struct myce_stream_stats *stats, struct myce_error **err);

/* ---- version 2: block references after a pre-copy (docs/precopy.md) ------ */

struct myce_precopy_tx;
struct myce_blockstore;

struct myce_stream_send_opts {
	int zstd_level; /* as for myce_stream_send() */
	myce_stream_progress_fn progress;
	void *ud;
	/* The blocks the receiver holds: the state of a myce_precopy_send()
	 * that succeeded on this connection, or NULL for a version 1 stream
	 * (exactly what myce_stream_send() sends).  With it, each 4 KiB block
	 * of a CRIU page file ("pages-*.img" anywhere under the source whose
	 * prefix is refs_prefix) that the receiver holds, or that is all
	 * zeros, is sent as a reference; the rest as data, as in version 1. */
	const struct myce_precopy_tx *known;
	const char *refs_prefix; /* NULL means "img" */
};

/* myce_stream_send() with options; opts NULL means level 1, no progress,
 * no references. */
int myce_stream_send_ex(int fd, const char *meta_json, const struct myce_stream_source *srcs,
			size_t nsrcs, const struct myce_stream_send_opts *opts,
			struct myce_stream_stats *stats, struct myce_error **err);

struct myce_stream_recv_opts {
	myce_stream_progress_fn progress;
	void *ud;
	/* Where BLOCK_REF / BLOCK_RUN records are resolved: the store that
	 * myce_precopy_recv() filled on this connection.  Every block used is
	 * verified against its name; a block that is missing or corrupt fails
	 * the receive (before anything can be restored).  NULL: references
	 * are rejected. */
	const struct myce_blockstore *store;
};

/* myce_stream_recv_files() with options (opts may be NULL). */
int myce_stream_recv_files_ex(int fd, const struct myce_stream_dest *dests, size_t ndests,
			      const struct myce_stream_recv_opts *opts,
			      struct myce_stream_stats *stats, struct myce_error **err);

/* ---- record framing, shared with lib/precopy.c ----------------------------- */

/* Every record type of the connection (docs/stream.md, docs/precopy.md). */
enum myce_stream_rec {
	MYCE_REC_HELLO = 0x01,
	MYCE_REC_PLAN = 0x02,
	MYCE_REC_FILE_BEGIN = 0x10,
	MYCE_REC_DATA_ZSTD = 0x11,
	MYCE_REC_DATA_RAW = 0x12,
	MYCE_REC_BLOCK_REF = 0x13, /* version 2 */
	MYCE_REC_BLOCK_RUN = 0x14, /* version 2 */
	MYCE_REC_FILE_END = 0x1f,
	MYCE_REC_END = 0x20,
	MYCE_REC_PRECOPY_BEGIN = 0x30,
	MYCE_REC_PRECOPY_BLOCKS = 0x31,
	MYCE_REC_PRECOPY_END = 0x32,
	MYCE_REC_PRECOPY_ACK = 0x33,
	MYCE_REC_ABORT = 0x7f,
};
#define MYCE_STREAM_HDR_LEN 5
/* Largest payload of any record. */
#define MYCE_STREAM_MAX_PAYLOAD ((uint32_t)2 << 20)

/* Writes type and big-endian length into hdr[0..5). */
void myce_stream_put_header(uint8_t *hdr, uint8_t type, uint32_t len);
/* Writes all of buf (send() with MSG_NOSIGNAL on sockets).  0 or -errno. */
int myce_stream_write_all(int fd, const void *buf, size_t len);
/* Reads one record into buf (cap bytes): header, type and length checked
 * against the type's limit, then exactly the payload.  An ABORT becomes an
 * error "<what>: <peer> aborted: <reason>" (ECONNABORTED); EOF is
 * "<what>: truncated ...".  *wire_bytes (if not NULL) grows by the bytes
 * read. */
int myce_stream_read_record(int fd, void *buf, uint32_t cap, uint8_t *type, uint32_t *len,
			    const char *what, const char *peer, uint64_t *wire_bytes,
			    struct myce_error **err);

#endif
