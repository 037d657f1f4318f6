/* Reading a running process's private memory, for pre-copy
 * (docs/precopy.md).
 *
 * A pass lists the process's private writable mappings (/proc/PID/maps:
 * "rw?p", anonymous or file-backed, heap and stack; not [vvar], [vdso],
 * [vsyscall] nor shared mappings) and its read-only private file mappings,
 * keeps the pages /proc/PID/pagemap says are present or swapped -- but not
 * the shared zero page and, in file-backed mappings, not the file's
 * page-cache pages: only those copied on write, e.g. a library's relocated
 * data -- which is what CRIU dumps, and reads them with process_vm_readv() into one large
 * buffer, up to 1024 runs of pages per call.  All-zero 4 KiB blocks are
 * dropped (counted).  The process keeps running: the contents are a
 * snapshot of nothing in particular, good only as a cache.
 *
 * Mappings that vanish or shrink during the pass, and a process that
 * exits, are not errors: what could not be read is counted as vanished.
 * Needs ptrace-read access to the process (same user, or CAP_SYS_PTRACE). */
#ifndef MYCE_MEMREAD_H
#define MYCE_MEMREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* Flags of myce_memread_new(). */
#define MYCE_MEMREAD_KEEP_ZERO 0x1   /* return all-zero blocks too */
#define MYCE_MEMREAD_NO_PAGEMAP 0x2  /* tests: read every page of each writable
					mapping of at most 1 GiB, skip the others */
#define MYCE_MEMREAD_NO_SCAN 0x4     /* pread() pagemap instead of its PAGEMAP_SCAN
					ioctl (tests; the fallback before Linux 6.7) */

/* One mapping of /proc/PID/maps that a pass reads. */
struct myce_memregion {
	uint64_t start, end;
	bool file;     /* file-backed: only copied-on-write pages are read */
	bool writable; /* else a read-only file mapping */
};

/* Counters of the current (or last) pass. */
struct myce_memread_stats {
	uint64_t regions;        /* mappings listed */
	uint64_t mapped_bytes;   /* their size */
	uint64_t resident_bytes; /* pages selected for reading */
	uint64_t read_bytes;     /* bytes process_vm_readv returned */
	uint64_t zero_blocks;    /* all-zero 4 KiB blocks dropped */
	uint64_t vanished_bytes; /* selected but unreadable: unmapped, shrunk, process gone */
	uint64_t syscalls;       /* process_vm_readv calls */
	int64_t us;              /* time spent in this pass's calls */
	bool gone;               /* the process no longer exists */
};

/* A batch of blocks, valid until the next call on the reader. */
struct myce_membatch {
	size_t n;
	const uint8_t *const *block; /* block[i]: 4 KiB */
	const uint64_t *addr;        /* addr[i]: its address in the process */
};

struct myce_memread;

/* A reader for pid with a buffer of about 8 MiB. */
struct myce_memread *myce_memread_new(pid_t pid, unsigned flags);
void myce_memread_free(struct myce_memread *r);

/* Starts a pass: lists the mappings and opens pagemap.  A process that no
 * longer exists is not an error: the pass is empty and stats.gone is set. */
int myce_memread_begin(struct myce_memread *r, struct myce_error **err);
/* The next batch of blocks in address order: 1 (b->n > 0), 0 at the end of
 * the pass, or a negative errno (e.g. EPERM: no access). */
int myce_memread_next(struct myce_memread *r, struct myce_membatch *b, struct myce_error **err);
const struct myce_memread_stats *myce_memread_stats(const struct myce_memread *r);

/* The mappings a pass would read (caller frees *out). */
int myce_memread_regions(pid_t pid, struct myce_memregion **out, size_t *n,
			 struct myce_error **err);

/* pid and all its descendants (from the ppid field of /proc/N/stat; this
 * kernel has no /proc/N/task/N/children), pid first.  Caller frees *out. */
int myce_memread_tree(pid_t pid, pid_t **out, size_t *n, struct myce_error **err);

/* Translates a PID as seen inside the PID namespace of ns_member (e.g. the
 * pod's agent) into a PID of the caller's namespace, from the NSpid lines of
 * /proc/N/status.  -ESRCH if there is no such process. */
int myce_memread_pid_in_ns(pid_t ns_member, pid_t inner, pid_t *out, struct myce_error **err);

#endif
