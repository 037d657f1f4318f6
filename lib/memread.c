/* Reading a running process's private memory (memread.h).
 *
 * A pass walks the mappings in address order.  For each it asks the kernel
 * for the ranges of pages worth reading -- the PAGEMAP_SCAN ioctl (Linux
 * 6.7+) returns them as ranges, so its cost follows the resident memory,
 * not the mapping's size (an ASan shadow or a sparse 64 GiB reservation is
 * free); older kernels get the same from pread()s of pagemap in chunks of
 * 64 Ki entries -- and hands up to 1024 runs / 8 MiB at a time to one
 * process_vm_readv() call whose local side is the one big buffer.  A run
 * whose pages are gone makes the call stop there: the rest of that run is
 * counted as vanished and the call is repeated from the next run, so a
 * vanished mapping costs one extra syscall, not one per page. */
#include "memread.h"
#include "blockstore.h"
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#define BUF_BYTES ((size_t)8 << 20)
#define MAX_BLOCKS (BUF_BYTES / MYCE_BLOCK_SIZE)
#define MAX_RUNS 1024 /* IOV_MAX */
#define PM_ENTRIES 65536
#define NO_PAGEMAP_MAX ((uint64_t)1 << 30)

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61) /* page-cache page (or shared anon) */

/* PAGEMAP_SCAN (include/uapi/linux/fs.h of Linux 6.7; Debian 12's headers
 * predate it). */
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#endif
#define SCAN_RANGES 512

struct myce_memread {
	pid_t pid;
	unsigned flags;
	uint64_t psize; /* system page size: pagemap's unit */
	struct myce_memregion *reg;
	size_t nreg, ri; /* mappings, the current one */
	uint64_t pos;    /* next address to consider */
	bool done;
	int pm_fd; /* /proc/PID/pagemap, or -1 */
	bool scan; /* PAGEMAP_SCAN works (else pread of pm[]) */
	uint64_t *pm;
	uint64_t pm_start, pm_end; /* addresses pm[] covers */
	struct page_region ranges[SCAN_RANGES];
	size_t nranges, rix; /* scan results, the next one */
	size_t scan_ri;      /* the mapping they belong to */
	uint64_t scanned_to; /* the scan covered it up to here */
	uint8_t *buf;
	struct iovec run[MAX_RUNS];
	size_t off[MAX_RUNS], valid[MAX_RUNS]; /* where in buf; bytes read */
	const uint8_t *blocks[MAX_BLOCKS];
	uint64_t addrs[MAX_BLOCKS];
	struct myce_memread_stats st;
};

static bool gone_errno(int e)
{
	return e == ESRCH || e == ENOENT;
}

int myce_memread_regions(pid_t pid, struct myce_memregion **out, size_t *n,
			 struct myce_error **err)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/maps", (int)pid);
	_cleanup_free_ char *maps = myce_read_file(path, NULL);
	if (!maps)
		return myce_error_errno(err, "memread: read %s", path);
	struct myce_memregion *v = NULL;
	size_t cnt = 0, cap = 0;
	for (char *line = maps, *next; *line; line = next) {
		next = strchrnul(line, '\n');
		if (*next)
			*next++ = '\0';
		unsigned long long start, end, inode;
		char perms[8];
		int name_at = 0;
		if (sscanf(line, "%llx-%llx %7s %*s %*s %llu %n", &start, &end, perms, &inode,
			   &name_at) < 4 ||
		    strlen(perms) < 4)
			continue;
		const char *name = name_at ? line + name_at : "";
		bool file = inode != 0 || name[0] == '/';
		/* Private and readable: writable ones, and read-only file
		 * mappings, whose copied-on-write pages (relocated data, RELRO)
		 * CRIU dumps too; not the kernel's special areas. */
		if (perms[0] != 'r' || perms[3] != 'p' || end <= start || (perms[1] != 'w' && !file))
			continue;
		if (!strcmp(name, "[vvar]") || !strcmp(name, "[vdso]") ||
		    !strcmp(name, "[vsyscall]") || !strcmp(name, "[vvar_vclock]"))
			continue;
		if (cnt == cap) {
			cap = cap ? 2 * cap : 64;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[cnt++] = (struct myce_memregion){ start, end, file, perms[1] == 'w' };
	}
	*out = v;
	*n = cnt;
	return 0;
}

struct myce_memread *myce_memread_new(pid_t pid, unsigned flags)
{
	struct myce_memread *r = xzalloc(sizeof(*r));
	r->pid = pid;
	r->flags = flags;
	long ps = sysconf(_SC_PAGESIZE);
	r->psize = ps > 0 ? (uint64_t)ps : 4096;
	r->pm_fd = -1;
	r->scan = !(flags & MYCE_MEMREAD_NO_SCAN);
	r->pm = xmalloc(PM_ENTRIES * sizeof(*r->pm));
	r->buf = xmalloc(BUF_BYTES);
	r->done = true;
	return r;
}

void myce_memread_free(struct myce_memread *r)
{
	if (!r)
		return;
	if (r->pm_fd >= 0)
		close(r->pm_fd);
	free(r->reg);
	free(r->pm);
	free(r->buf);
	free(r);
}

const struct myce_memread_stats *myce_memread_stats(const struct myce_memread *r)
{
	return &r->st;
}

int myce_memread_begin(struct myce_memread *r, struct myce_error **err)
{
	int64_t t0 = myce_now_us();
	free(r->reg);
	r->reg = NULL;
	r->nreg = r->ri = 0;
	r->pos = 0;
	r->pm_start = r->pm_end = 0;
	r->nranges = r->rix = 0;
	r->scan_ri = SIZE_MAX;
	r->scanned_to = 0;
	if (r->pm_fd >= 0)
		close(r->pm_fd);
	r->pm_fd = -1;
	r->st = (struct myce_memread_stats){ 0 };
	r->done = true;

	_cleanup_error_ struct myce_error *e = NULL;
	if (myce_memread_regions(r->pid, &r->reg, &r->nreg, &e) < 0) {
		if (e && gone_errno(e->code)) {
			r->st.gone = true;
			return 0;
		}
		return myce_error_set(err, e ? e->code : EIO, "%s", myce_error_msg(e));
	}
	for (size_t i = 0; i < r->nreg; i++)
		r->st.mapped_bytes += r->reg[i].end - r->reg[i].start;
	r->st.regions = r->nreg;
	if (!(r->flags & MYCE_MEMREAD_NO_PAGEMAP)) {
		_cleanup_free_ char *path = xasprintf("/proc/%d/pagemap", (int)r->pid);
		r->pm_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (r->pm_fd < 0 && gone_errno(errno)) {
			r->st.gone = true;
			return 0;
		}
		if (r->pm_fd < 0)
			return myce_error_errno(err, "memread: open %s", path);
	}
	r->done = false;
	r->st.us += myce_now_us() - t0;
	return 0;
}

static bool wanted(uint64_t pme, bool file)
{
	return (pme & (PM_PRESENT | PM_SWAP)) && !(file && (pme & PM_FILE));
}

/* Loads pagemap entries for [r->pos, ...) within mapping g.  0, or 1 if the
 * process is gone. */
static int load_pagemap(struct myce_memread *r, const struct myce_memregion *g,
			struct myce_error **err)
{
	uint64_t pages = (g->end - r->pos) / r->psize;
	if (pages > PM_ENTRIES)
		pages = PM_ENTRIES;
	ssize_t n;
	do
		n = pread(r->pm_fd, r->pm, pages * 8, (off_t)(r->pos / r->psize * 8));
	while (n < 0 && errno == EINTR);
	if (n < 0 && !gone_errno(errno))
		return myce_error_errno(err, "memread: read /proc/%d/pagemap", (int)r->pid);
	if (n < 8)
		return 1; /* the mm is gone */
	r->pm_start = r->pos;
	r->pm_end = r->pos + (uint64_t)n / 8 * r->psize;
	return 0;
}

/* Asks PAGEMAP_SCAN for the wanted ranges of g from r->pos on.  0; 1 if
 * the process is gone; 2 if the kernel lacks the ioctl (r->scan cleared). */
static int scan_ranges(struct myce_memread *r, const struct myce_memregion *g,
		       struct myce_error **err)
{
	/* Present or swapped; not the shared zero page; in file mappings, not
	 * page-cache pages (a set bit of category_inverted & category_mask
	 * means "must not have this category"). */
	uint64_t not = PAGE_IS_PFNZERO | (g->file ? PAGE_IS_FILE : 0);
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.start = r->pos,
		.end = g->end,
		.vec = (uint64_t)(uintptr_t)r->ranges,
		.vec_len = SCAN_RANGES,
		.category_inverted = not,
		.category_mask = not,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};
	int n;
	do
		n = ioctl(r->pm_fd, PAGEMAP_SCAN, &a);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP) {
			r->scan = false;
			return 2;
		}
		if (gone_errno(errno))
			return 1;
		return myce_error_errno(err, "memread: PAGEMAP_SCAN of pid %d", (int)r->pid);
	}
	r->nranges = (size_t)n;
	r->rix = 0;
	/* A full vec stops the walk early: walk_end says where. */
	r->scanned_to = a.walk_end > r->pos && a.walk_end <= g->end ? a.walk_end : g->end;
	return 0;
}

/* The next range of wanted pages of g at or after r->pos: [*start, *end),
 * within g.  0 and the range; 1 if g has no more; 2 if the process is
 * gone; or a negative errno. */
static int next_range(struct myce_memread *r, const struct myce_memregion *g, uint64_t *start,
		      uint64_t *end, struct myce_error **err)
{
	if (r->pm_fd < 0) { /* no pagemap (tests): the whole mapping, if not huge */
		if (g->end - g->start > NO_PAGEMAP_MAX || !g->writable)
			return 1;
		*start = r->pos;
		*end = g->end;
		return 0;
	}
	while (r->scan) {
		for (; r->rix < r->nranges; r->rix++) {
			const struct page_region *pr = &r->ranges[r->rix];
			if (pr->end <= r->pos || pr->start >= g->end)
				continue;
			*start = pr->start > r->pos ? pr->start : r->pos;
			*end = pr->end < g->end ? pr->end : g->end;
			return 0;
		}
		/* Everything the last scan found is used up. */
		if (r->scanned_to > r->pos)
			r->pos = r->scanned_to;
		if (r->pos >= g->end)
			return 1;
		int ret = scan_ranges(r, g, err);
		if (ret < 0 || ret == 1)
			return ret < 0 ? ret : 2;
	}
	/* pread() of pagemap, 64 Ki pages at a time. */
	for (;;) {
		if (r->pos >= g->end)
			return 1;
		if (r->pos < r->pm_start || r->pos >= r->pm_end) {
			int ret = load_pagemap(r, g, err);
			if (ret != 0)
				return ret < 0 ? ret : 2;
		}
		while (r->pos < r->pm_end &&
		       !wanted(r->pm[(r->pos - r->pm_start) / r->psize], g->file))
			r->pos += r->psize;
		if (r->pos == r->pm_end)
			continue;
		uint64_t e = r->pos;
		while (e < r->pm_end && wanted(r->pm[(e - r->pm_start) / r->psize], g->file))
			e += r->psize;
		*start = r->pos;
		*end = e;
		return 0;
	}
}

/* Fills r->run[] with up to MAX_RUNS runs / BUF_BYTES of wanted pages.
 * Returns the number of runs (0: pass over), or a negative errno. */
static int collect_runs(struct myce_memread *r, size_t *bytes_out, struct myce_error **err)
{
	size_t nrun = 0, bytes = 0;
	while (nrun < MAX_RUNS && bytes < BUF_BYTES && r->ri < r->nreg) {
		const struct myce_memregion *g = &r->reg[r->ri];
		if (r->pos < g->start)
			r->pos = g->start;
		if (r->scan_ri != r->ri) {
			r->scan_ri = r->ri;
			r->nranges = r->rix = 0;
			r->scanned_to = 0;
		}
		uint64_t start, end;
		int ret = r->pos < g->end ? next_range(r, g, &start, &end, err) : 1;
		if (ret < 0)
			return ret;
		if (ret == 2) {
			r->st.gone = true;
			r->ri = r->nreg;
			break;
		}
		if (ret == 1) {
			r->ri++;
			continue;
		}
		uint64_t room = BUF_BYTES - bytes;
		if (end - start > room)
			end = start + room;
		r->off[nrun] = bytes;
		r->run[nrun].iov_base = (void *)(uintptr_t)start;
		r->run[nrun].iov_len = end - start;
		bytes += end - start;
		r->pos = end;
		nrun++;
	}
	r->st.resident_bytes += bytes;
	*bytes_out = bytes;
	return (int)nrun;
}

/* Reads the runs; sets valid[] (bytes of each run actually read). */
static int read_runs(struct myce_memread *r, size_t nrun, size_t bytes, struct myce_error **err)
{
	size_t i = 0;
	while (i < nrun) {
		struct iovec local = { r->buf + r->off[i], bytes - r->off[i] };
		ssize_t n = process_vm_readv(r->pid, &local, 1, &r->run[i], nrun - i, 0);
		r->st.syscalls++;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EFAULT) { /* the first run is gone entirely */
				r->valid[i] = 0;
				r->st.vanished_bytes += r->run[i].iov_len;
				i++;
				continue;
			}
			if (errno == ESRCH) {
				r->st.gone = true;
				r->ri = r->nreg;
				for (; i < nrun; i++) {
					r->valid[i] = 0;
					r->st.vanished_bytes += r->run[i].iov_len;
				}
				break;
			}
			return myce_error_errno(err, "memread: process_vm_readv of pid %d", (int)r->pid);
		}
		size_t left = (size_t)n;
		for (; i < nrun && left >= r->run[i].iov_len; i++) {
			r->valid[i] = r->run[i].iov_len;
			left -= r->run[i].iov_len;
		}
		if (i < nrun) {
			/* Stopped inside (or at the start of) run i: the rest of it
			 * is gone; the next call starts at run i + 1. */
			r->valid[i] = left / MYCE_BLOCK_SIZE * MYCE_BLOCK_SIZE;
			r->st.vanished_bytes += r->run[i].iov_len - r->valid[i];
			i++;
		}
	}
	return 0;
}

int myce_memread_next(struct myce_memread *r, struct myce_membatch *b, struct myce_error **err)
{
	int64_t t0 = myce_now_us();
	int ret = 0;
	*b = (struct myce_membatch){ 0, r->blocks, r->addrs };
	while (!r->done && b->n == 0) {
		size_t bytes;
		int nrun = collect_runs(r, &bytes, err);
		if (nrun <= 0) {
			r->done = true;
			ret = nrun;
			break;
		}
		if ((ret = read_runs(r, (size_t)nrun, bytes, err)) < 0) {
			r->done = true;
			break;
		}
		bool keep_zero = r->flags & MYCE_MEMREAD_KEEP_ZERO;
		for (int i = 0; i < nrun; i++) {
			r->st.read_bytes += r->valid[i];
			uint64_t addr = (uint64_t)(uintptr_t)r->run[i].iov_base;
			for (size_t o = 0; o < r->valid[i]; o += MYCE_BLOCK_SIZE) {
				const uint8_t *p = r->buf + r->off[i] + o;
				if (!keep_zero && myce_block_is_zero(p)) {
					r->st.zero_blocks++;
					continue;
				}
				r->blocks[b->n] = p;
				r->addrs[b->n++] = addr + o;
			}
		}
	}
	r->st.us += myce_now_us() - t0;
	if (ret < 0)
		return ret;
	return b->n > 0;
}

/* ---- processes -------------------------------------------------------------- */

static bool numeric(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* ppid from /proc/N/stat ("pid (comm) state ppid ..."; comm may hold ')'). */
static pid_t read_ppid(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	int ppid;
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

int myce_memread_tree(pid_t pid, pid_t **out, size_t *n, struct myce_error **err)
{
	DIR *d = opendir("/proc");
	if (!d)
		return myce_error_errno(err, "memread: open /proc");
	struct { pid_t pid, ppid; } *all = NULL;
	size_t nall = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!numeric(de->d_name))
			continue;
		pid_t p = (pid_t)atoi(de->d_name);
		pid_t pp = read_ppid(p);
		if (pp < 0)
			continue; /* exited meanwhile */
		if (nall == cap) {
			cap = cap ? 2 * cap : 256;
			all = xrealloc(all, cap * sizeof(*all));
		}
		all[nall].pid = p;
		all[nall++].ppid = pp;
	}
	closedir(d);
	pid_t *v = xmalloc((nall + 1) * sizeof(*v));
	size_t cnt = 0;
	v[cnt++] = pid;
	for (size_t k = 0; k < cnt; k++) /* breadth first: v grows as we go */
		for (size_t i = 0; i < nall; i++)
			if (all[i].ppid == v[k] && all[i].pid != pid)
				v[cnt++] = all[i].pid;
	free(all);
	*out = v;
	*n = cnt;
	return 0;
}

static int ns_link(pid_t pid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	ssize_t n = readlink(path, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

int myce_memread_pid_in_ns(pid_t ns_member, pid_t inner, pid_t *out, struct myce_error **err)
{
	char want[64], have[64];
	int r = ns_link(ns_member, want, sizeof(want));
	if (r < 0)
		return myce_error_set(err, -r, "memread: pid namespace of %d: %s", (int)ns_member,
				      strerror(-r));
	DIR *d = opendir("/proc");
	if (!d)
		return myce_error_errno(err, "memread: open /proc");
	struct dirent *de;
	pid_t found = 0;
	while (!found && (de = readdir(d))) {
		if (!numeric(de->d_name))
			continue;
		pid_t p = (pid_t)atoi(de->d_name);
		if (ns_link(p, have, sizeof(have)) < 0 || strcmp(have, want) != 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/status", (int)p);
		_cleanup_free_ char *st = myce_read_file(path, NULL);
		const char *l = st ? strstr(st, "\nNSpid:") : NULL;
		if (!l)
			continue;
		const char *eol = strchrnul(l + 1, '\n');
		const char *last = eol;
		while (last > l && !isspace((unsigned char)last[-1]))
			last--;
		if (atoi(last) == inner)
			found = p;
	}
	closedir(d);
	if (!found)
		return myce_error_set(err, ESRCH, "memread: no process %d in the pid namespace of %d",
				      (int)inner, (int)ns_member);
	*out = found;
	return 0;
}
