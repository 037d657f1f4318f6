/* Node-to-node checkpoint stream: ships a CRIU image directory and a few
 * extra trees (e.g. the pod's /dev/shm) over one connected socket,
 * zstd-compressed, checksummed, with byte progress.  The wire format is
 * specified in docs/stream.md.
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

#define MYCE_STREAM_VERSION 1
/* Largest HELLO metadata, in bytes. */
#define MYCE_STREAM_MAX_META (64 * 1024)
/* Largest file either side accepts. */
#define MYCE_STREAM_MAX_FILE_SIZE ((uint64_t)16 << 30)

struct myce_stream_stats {
	uint64_t raw_bytes;  /* file contents */
	uint64_t wire_bytes; /* bytes this call wrote or read, record headers included */
	uint64_t files;
	int64_t elapsed_us; /* time spent in this call */
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

/* Receiver, step 1: reads the HELLO record and returns its metadata (caller
 * frees), so the caller can act on it (e.g. prepare the network) before
 * the data arrives.  An ABORT from the sender becomes an error carrying the
 * sender's reason (code ECONNABORTED). */
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

#endif
