/* Node-to-node checkpoint stream; the wire format is specified in
 * docs/stream.md.
 *
 * Sender: walks the sources first, so that PLAN can announce the totals,
 * then appends records to one output buffer that goes to the socket in a
 * single write whenever it holds FLUSH_AT bytes or more.  Small records
 * (FILE_BEGIN, FILE_END, small files) thus share a syscall, and file data is
 * compressed (or, in store mode, read) straight into that buffer: raw bytes
 * are copied once.
 *
 * Receiver: reads a 5-byte header, checks type and length, then reads
 * exactly the payload, so it never consumes a byte past END and never
 * allocates what a peer asks for.  Every record is validated before it is
 * acted on. */
#include "stream.h"
#include "blockstore.h"
#include "precopy.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <limits.h>
#include <zstd.h>

/* For the definition of XXH3_state_t, so states live on the stack (they need
 * 64-byte alignment, which malloc does not give).  The functions come from
 * libxxhash (optimized even in our debug builds; inlined XXH3 at -O0 is 5x
 * slower). */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* Record types (stream.h).  0x10..0x1f are per-file content records,
 * 0x30..0x3f the pre-copy's (lib/precopy.c); the gaps are reserved for
 * later versions.  Anything else is rejected. */
enum {
	REC_HELLO = MYCE_REC_HELLO,
	REC_PLAN = MYCE_REC_PLAN,
	REC_FILE_BEGIN = MYCE_REC_FILE_BEGIN,
	REC_DATA_ZSTD = MYCE_REC_DATA_ZSTD,
	REC_DATA_RAW = MYCE_REC_DATA_RAW,
	REC_BLOCK_REF = MYCE_REC_BLOCK_REF, /* v2: names of blocks the receiver holds */
	REC_BLOCK_RUN = MYCE_REC_BLOCK_RUN, /* v2: a run of pre-copied (or zero) blocks */
	REC_FILE_END = MYCE_REC_FILE_END,
	REC_END = MYCE_REC_END,
	REC_ABORT = MYCE_REC_ABORT,
};

#define MAGIC "MYCESTRM" /* 8 bytes, no NUL on the wire */
#define HDR_LEN 5
#define CHUNK ((size_t)1 << 20)         /* raw bytes per data record */
#define MAX_PAYLOAD ((uint32_t)2 << 20) /* any record */
#define MAX_PATH 4096
#define MAX_ABORT_MSG 4096
#define HELLO_FIXED (8 + 2 + 8) /* magic, version, metadata hash */
#define HELLO_MAX (HELLO_FIXED + MYCE_STREAM_MAX_META)
#define PLAN_LEN 16
#define FILE_FIXED (2u + 4 + 4 + 4 + 8) /* FILE_BEGIN without the path */
#define END_LEN 32
#define FLUSH_AT ((size_t)256 << 10)
#define BLK MYCE_BLOCK_SIZE
#define MAX_REFS 4096 /* names per BLOCK_REF record */
#define REF_MAX (MAX_REFS * 16)
#define RUN_LEN 12            /* BLOCK_RUN: u64 first, u32 count */
#define ZERO_RUN UINT64_MAX   /* BLOCK_RUN's first for a run of zero blocks */

static void put_header(uint8_t *h, uint8_t type, size_t len)
{
	h[0] = type;
	myce_put_be(h + 1, (uint32_t)len, 4);
}

void myce_stream_put_header(uint8_t *hdr, uint8_t type, uint32_t len)
{
	put_header(hdr, type, len);
}

/* Writes all of buf.  MSG_NOSIGNAL: a peer that went away is EPIPE, not a
 * SIGPIPE that kills the process.  Plain write() for non-sockets. */
static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	bool sock = true;
	while (len > 0) {
		ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
		if (n < 0) {
			if (errno == ENOTSOCK && sock) {
				sock = false;
				continue;
			}
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int myce_stream_write_all(int fd, const void *buf, size_t len)
{
	return write_all(fd, buf, len);
}

/* Copies untrusted bytes for an error message, control characters as '?'. */
static char *printable(const uint8_t *p, size_t n)
{
	char *s = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
	s[n] = '\0';
	return s;
}

/* ---- sender --------------------------------------------------------------- */

struct entry {
	char *wire; /* "prefix/rel" */
	char *path; /* on disk */
	uint64_t size;
	uint32_t mode, uid, gid;
};

struct entries {
	struct entry *v;
	size_t n, cap;
};

static void entries_clear(struct entries *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].wire);
		free(l->v[i].path);
	}
	free(l->v);
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->wire, ((const struct entry *)b)->wire);
}

static int walk(struct entries *l, const char *wire, const char *path, struct myce_error **err)
{
	DIR *d = opendir(path);
	if (!d)
		return myce_error_errno(err, "stream: open %s", path);
	int r = 0;
	struct dirent *de;
	while (r == 0 && (errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", path, de->d_name);
		_cleanup_free_ char *w = xasprintf("%s/%s", wire, de->d_name);
		struct stat st;
		if (lstat(p, &st) < 0) {
			r = myce_error_errno(err, "stream: stat %s", p);
		} else if (S_ISDIR(st.st_mode)) {
			r = walk(l, w, p, err);
		} else if (!S_ISREG(st.st_mode)) {
			continue; /* symlinks, fifos, sockets, devices are not sent */
		} else if (strlen(w) > MAX_PATH) {
			r = myce_error_set(err, ENAMETOOLONG, "stream: path too long: %s", w);
		} else if ((uint64_t)st.st_size > MYCE_STREAM_MAX_FILE_SIZE) {
			r = myce_error_set(err, EFBIG, "stream: %s: file larger than 16 GiB", p);
		} else {
			if (l->n == l->cap) {
				l->cap = l->cap ? 2 * l->cap : 64;
				l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
			}
			l->v[l->n++] = (struct entry){ steal_pointer(&w), steal_pointer(&p),
						       (uint64_t)st.st_size, st.st_mode & 07777,
						       st.st_uid, st.st_gid };
		}
	}
	if (r == 0 && errno)
		r = myce_error_errno(err, "stream: read directory %s", path);
	closedir(d);
	return r;
}

static int collect(struct entries *l, const struct myce_stream_source *srcs, size_t nsrcs,
		   struct myce_error **err)
{
	for (size_t i = 0; i < nsrcs; i++) {
		const char *pfx = srcs[i].prefix;
		if (!pfx || !*pfx || strchr(pfx, '/') || !strcmp(pfx, ".") || !strcmp(pfx, ".."))
			return myce_error_set(err, EINVAL, "stream: bad source prefix \"%s\"",
					      pfx ? pfx : "(null)");
		struct stat st;
		if (stat(srcs[i].dir, &st) < 0) {
			if (errno == ENOENT && srcs[i].optional)
				continue;
			return myce_error_errno(err, "stream: source %s: %s", pfx, srcs[i].dir);
		}
		size_t first = l->n;
		int r = walk(l, pfx, srcs[i].dir, err);
		if (r < 0)
			return r;
		/* A stable order makes streams reproducible; sources keep theirs. */
		qsort(l->v + first, l->n - first, sizeof(*l->v), entry_cmp);
	}
	return 0;
}

struct sender {
	int fd;
	uint8_t *out; /* pending records */
	size_t len, cap;
	size_t hashed; /* out[0..hashed) is in `wire` already (or is HELLO) */
	bool broken;   /* a socket write failed: no ABORT possible */
	ZSTD_CCtx *cctx; /* NULL in store mode */
	uint8_t *in;     /* one raw chunk, when compressing */
	XXH3_state_t wire, file, all;
	uint64_t raw_done, raw_total, wire_bytes, files;
	myce_stream_progress_fn progress;
	void *ud;
	/* Version 2: references to blocks the receiver holds. */
	const struct myce_precopy_tx *known; /* NULL: version 1 */
	const char *refs_prefix;
	uint8_t *names; /* pending BLOCK_REF names */
	size_t nnames;
	uint64_t run_first; /* pending BLOCK_RUN (run_len 0: none) */
	uint32_t run_len;
	struct myce_blockname run_name; /* its first block */
	uint64_t ref_blocks, zero_blocks;
};

static int snd_flush(struct sender *s, struct myce_error **err)
{
	XXH3_64bits_update(&s->wire, s->out + s->hashed, s->len - s->hashed);
	int r = write_all(s->fd, s->out, s->len);
	s->len = s->hashed = 0;
	if (r < 0) {
		s->broken = true;
		return myce_error_set(err, -r, "stream: send: %s", strerror(-r));
	}
	return 0;
}

/* Makes room for a record of at most max_payload bytes; *payload is where it goes. */
static int snd_reserve(struct sender *s, size_t max_payload, uint8_t **payload,
		       struct myce_error **err)
{
	if (s->cap - s->len < HDR_LEN + max_payload) {
		int r = snd_flush(s, err);
		if (r < 0)
			return r;
	}
	*payload = s->out + s->len + HDR_LEN;
	return 0;
}

/* Completes the record started by snd_reserve() and flushes a full buffer. */
static int snd_commit(struct sender *s, uint8_t type, size_t payload_len, struct myce_error **err)
{
	put_header(s->out + s->len, type, payload_len);
	s->len += HDR_LEN + payload_len;
	s->wire_bytes += HDR_LEN + payload_len;
	return s->len >= FLUSH_AT ? snd_flush(s, err) : 0;
}

/* One data record of n <= CHUNK raw bytes: compressed if that helps. */
static int send_data(struct sender *s, const uint8_t *raw, size_t n, struct myce_error **err)
{
	uint8_t *p;
	int r = snd_reserve(s, s->cctx ? ZSTD_compressBound(n) : n, &p, err);
	if (r < 0)
		return r;
	uint8_t type = REC_DATA_RAW;
	size_t wire_n = n;
	size_t z = s->cctx ? ZSTD_compress2(s->cctx, p, ZSTD_compressBound(n), raw, n) : 0;
	if (s->cctx && !ZSTD_isError(z) && z < n) {
		type = REC_DATA_ZSTD;
		wire_n = z;
	} else {
		memcpy(p, raw, n);
	}
	return snd_commit(s, type, wire_n, err);
}

static int flush_names(struct sender *s, struct myce_error **err)
{
	if (s->nnames == 0)
		return 0;
	uint8_t *p;
	int r = snd_reserve(s, s->nnames * 16, &p, err);
	if (r < 0)
		return r;
	memcpy(p, s->names, s->nnames * 16);
	r = snd_commit(s, REC_BLOCK_REF, s->nnames * 16, err);
	s->nnames = 0;
	return r;
}

/* Emits the pending run: a BLOCK_RUN record, or for a single block its name
 * (16 bytes in a BLOCK_REF beat a 17-byte record). */
static int flush_run(struct sender *s, struct myce_error **err)
{
	if (s->run_len == 0)
		return 0;
	uint32_t n = s->run_len;
	s->run_len = 0;
	if (n == 1) {
		if (s->nnames == MAX_REFS) {
			int r = flush_names(s, err);
			if (r < 0)
				return r;
		}
		memcpy(s->names + 16 * s->nnames++, s->run_name.b, 16);
		return 0;
	}
	int r = flush_names(s, err); /* they come first */
	uint8_t *p;
	if (r < 0 || (r = snd_reserve(s, RUN_LEN, &p, err)) < 0)
		return r;
	myce_put_be(p, s->run_first, 8);
	myce_put_be(p + 8, n, 4);
	return snd_commit(s, REC_BLOCK_RUN, RUN_LEN, err);
}

static int flush_refs(struct sender *s, struct myce_error **err)
{
	int r = flush_run(s, err);
	return r < 0 ? r : flush_names(s, err);
}

/* Queues a reference to a block: seq is its pre-copy sequence number, or
 * ZERO_RUN for an all-zero block.  Consecutive sequence numbers (and
 * consecutive zero blocks) make one run. */
static int add_ref(struct sender *s, const struct myce_blockname *name, uint64_t seq,
		   struct myce_error **err)
{
	s->ref_blocks++;
	if (seq == ZERO_RUN)
		s->zero_blocks++;
	if (s->run_len > 0 && s->run_len < UINT32_MAX &&
	    (seq == ZERO_RUN ? s->run_first == ZERO_RUN
			     : s->run_first != ZERO_RUN && seq == s->run_first + s->run_len)) {
		s->run_len++;
		return 0;
	}
	int r = flush_run(s, err);
	s->run_first = seq;
	s->run_len = 1;
	s->run_name = *name;
	return r;
}

/* A CRIU page file of the refs source: "prefix/.../pages-*.img". */
static bool is_page_file(const struct sender *s, const struct entry *e)
{
	size_t pl = strlen(s->refs_prefix);
	if (strncmp(e->wire, s->refs_prefix, pl) != 0 || e->wire[pl] != '/')
		return false;
	const char *base = strrchr(e->wire, '/') + 1;
	size_t bl = strlen(base);
	return bl > 10 && !strncmp(base, "pages-", 6) && !strcmp(base + bl - 4, ".img");
}

/* The data of a page file, each 4 KiB block (page data is 4 KiB-aligned in
 * these files) as a reference if the receiver holds it or it is zero, the
 * runs of other blocks as data records. */
static int send_page_data(struct sender *s, const struct entry *e, int fd, struct myce_error **err)
{
	int r;
	/* Mapped, not read: the page cache's pages are hashed where they are
	 * (a read() would copy hundreds of MiB inside the freeze). */
	uint8_t *map = NULL;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return myce_error_errno(err, "stream: stat %s", e->path);
	if ((uint64_t)st.st_size < e->size)
		return myce_error_set(err, EIO, "stream: %s shrank while being sent", e->path);
	/* send_file's check for growth reads on from here. */
	if (lseek(fd, (off_t)e->size, SEEK_SET) < 0)
		return myce_error_errno(err, "stream: seek %s", e->path);
	if (e->size > 0) {
		map = mmap(NULL, e->size, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			return myce_error_errno(err, "stream: map %s", e->path);
		madvise(map, e->size, MADV_SEQUENTIAL);
	}
	r = 0;
	for (uint64_t done = 0; done < e->size && r == 0;) {
		size_t n = e->size - done < CHUNK ? (size_t)(e->size - done) : CHUNK;
		const uint8_t *in = map + done;
		/* Page tables a chunk at a time (not all up front): the first
		 * records leave at once. */
		madvise((void *)in, n, MADV_POPULATE_READ);
		XXH3_64bits_update(&s->file, in, n);
		size_t data_from = 0; /* start of the pending data run */
		for (size_t off = 0; off + BLK <= n && r == 0; off += BLK) {
			const uint8_t *b = in + off;
			struct myce_blockname name;
			uint32_t seq = 0;
			uint64_t ref;
			if (myce_block_is_zero(b)) {
				name = *myce_block_zero_name();
				ref = ZERO_RUN;
			} else {
				myce_block_name(b, &name);
				if (!myce_precopy_tx_lookup(s->known, &name, &seq))
					continue; /* data: extends the pending run */
				ref = seq;
			}
			if (off > data_from) {
				if ((r = flush_refs(s, err)) < 0 ||
				    (r = send_data(s, in + data_from, off - data_from, err)) < 0)
					break;
			}
			if ((r = add_ref(s, &name, ref, err)) < 0)
				break;
			data_from = off + BLK;
		}
		if (r == 0 && n > data_from) /* includes a partial last block */
			r = flush_refs(s, err) < 0 ? -1 : send_data(s, in + data_from, n - data_from, err);
		/* What this chunk resolved to goes now: the receiver rebuilds
		 * while we hash the next one. */
		if (r == 0 && (r = flush_refs(s, err)) == 0 && s->len > 0)
			r = snd_flush(s, err);
		done += n;
		s->raw_done += n;
		if (r == 0 && s->progress)
			s->progress(s->ud, s->raw_done, s->raw_total, s->wire_bytes);
	}
	if (map)
		munmap(map, e->size);
	return r;
}

static int send_file(struct sender *s, const struct entry *e, struct myce_error **err)
{
	_cleanup_close_ int fd = open(e->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return myce_error_errno(err, "stream: open %s", e->path);

	size_t plen = strlen(e->wire);
	uint8_t *p;
	int r = snd_reserve(s, FILE_FIXED + plen, &p, err);
	if (r < 0)
		return r;
	myce_put_be(p, (uint16_t)plen, 2);
	memcpy(p + 2, e->wire, plen);
	myce_put_be(p + 2 + plen, e->mode, 4);
	myce_put_be(p + 6 + plen, e->uid, 4);
	myce_put_be(p + 10 + plen, e->gid, 4);
	myce_put_be(p + 14 + plen, e->size, 8);
	if ((r = snd_commit(s, REC_FILE_BEGIN, FILE_FIXED + plen, err)) < 0)
		return r;

	XXH3_64bits_reset(&s->file);
	bool refs = s->known && is_page_file(s, e);
	if (refs && (r = send_page_data(s, e, fd, err)) < 0)
		return r;
	for (uint64_t left = refs ? 0 : e->size; left > 0;) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;
		if ((r = snd_reserve(s, s->cctx ? ZSTD_compressBound(n) : n, &p, err)) < 0)
			return r;
		/* Store mode reads straight into the output buffer. */
		uint8_t *raw = s->cctx ? s->in : p;
		r = myce_read_full(fd, raw, n);
		if (r == -EPIPE)
			return myce_error_set(err, EIO, "stream: %s shrank while being sent", e->path);
		if (r < 0)
			return myce_error_set(err, -r, "stream: read %s: %s", e->path, strerror(-r));
		XXH3_64bits_update(&s->file, raw, n);

		uint8_t type = REC_DATA_RAW;
		size_t wire_n = n;
		if (s->cctx) {
			size_t z = ZSTD_compress2(s->cctx, p, ZSTD_compressBound(n), raw, n);
			if (!ZSTD_isError(z) && z < n) {
				type = REC_DATA_ZSTD;
				wire_n = z;
			} else {
				/* Incompressible: raw costs the receiver nothing. */
				memcpy(p, raw, n);
			}
		}
		if ((r = snd_commit(s, type, wire_n, err)) < 0)
			return r;
		left -= n;
		s->raw_done += n;
		if (s->progress)
			s->progress(s->ud, s->raw_done, s->raw_total, s->wire_bytes);
	}
	char c;
	ssize_t extra = read(fd, &c, 1);
	if (extra != 0)
		return extra < 0 ? myce_error_errno(err, "stream: read %s", e->path)
				 : myce_error_set(err, EIO, "stream: %s grew while being sent",
						  e->path);

	if ((r = snd_reserve(s, 8, &p, err)) < 0)
		return r;
	myce_put_be(p, XXH3_64bits_digest(&s->file), 8);
	/* END's content hash: over the files' digests, in order (each file's
	 * bytes are hashed once, on both sides). */
	XXH3_64bits_update(&s->all, p, 8);
	s->files++;
	return snd_commit(s, REC_FILE_END, 8, err);
}

static int send_stream(struct sender *s, const char *meta, const struct entries *l,
		       struct myce_error **err)
{
	size_t mlen = strlen(meta);
	uint8_t *p;
	int r = snd_reserve(s, HELLO_FIXED + mlen, &p, err);
	if (r < 0)
		return r;
	memcpy(p, MAGIC, 8);
	myce_put_be(p + 8, s->known ? MYCE_STREAM_VERSION_REFS : MYCE_STREAM_VERSION, 2);
	myce_put_be(p + 10, XXH3_64bits(meta, mlen), 8);
	memcpy(p + HELLO_FIXED, meta, mlen);
	if ((r = snd_commit(s, REC_HELLO, HELLO_FIXED + mlen, err)) < 0)
		return r;
	s->hashed = s->len; /* the stream hash starts after HELLO */

	if ((r = snd_reserve(s, PLAN_LEN, &p, err)) < 0)
		return r;
	myce_put_be(p, s->raw_total, 8);
	myce_put_be(p + 8, l->n, 8);
	if ((r = snd_commit(s, REC_PLAN, PLAN_LEN, err)) < 0)
		return r;

	for (size_t i = 0; i < l->n; i++)
		if ((r = send_file(s, &l->v[i], err)) < 0)
			return r;

	if ((r = snd_reserve(s, END_LEN, &p, err)) < 0)
		return r;
	myce_put_be(p, s->raw_done, 8);
	myce_put_be(p + 8, s->files, 8);
	myce_put_be(p + 16, XXH3_64bits_digest(&s->all), 8);
	/* The stream hash covers every byte after HELLO up to this very field. */
	put_header(p - HDR_LEN, REC_END, END_LEN);
	XXH3_64bits_update(&s->wire, s->out + s->hashed, (size_t)(p + 24 - (s->out + s->hashed)));
	myce_put_be(p + 24, XXH3_64bits_digest(&s->wire), 8);
	s->hashed = s->len + HDR_LEN + END_LEN;
	if ((r = snd_commit(s, REC_END, END_LEN, err)) < 0)
		return r;
	if (s->len > 0 && (r = snd_flush(s, err)) < 0)
		return r;
	if (s->progress)
		s->progress(s->ud, s->raw_done, s->raw_total, s->wire_bytes);
	return 0;
}

int myce_stream_send(int fd, const char *meta_json, const struct myce_stream_source *srcs,
		     size_t nsrcs, int zstd_level, myce_stream_progress_fn progress, void *ud,
		     struct myce_stream_stats *stats, struct myce_error **err)
{
	struct myce_stream_send_opts o = { .zstd_level = zstd_level, .progress = progress, .ud = ud };
	return myce_stream_send_ex(fd, meta_json, srcs, nsrcs, &o, stats, err);
}

int myce_stream_send_ex(int fd, const char *meta_json, const struct myce_stream_source *srcs,
			size_t nsrcs, const struct myce_stream_send_opts *opts,
			struct myce_stream_stats *stats, struct myce_error **err)
{
	static const struct myce_stream_send_opts defaults = { .zstd_level = 1 };
	if (!opts)
		opts = &defaults;
	_cleanup_error_ struct myce_error *e = NULL;
	int64_t t0 = myce_now_us();
	const char *meta = meta_json ? meta_json : "";
	int zstd_level = opts->zstd_level;
	struct sender s = { .fd = fd, .progress = opts->progress, .ud = opts->ud,
			    .known = opts->known,
			    .refs_prefix = opts->refs_prefix ? opts->refs_prefix : "img" };
	struct entries l = { 0 };
	int r;

	if (strlen(meta) > MYCE_STREAM_MAX_META)
		r = myce_error_set(&e, EINVAL, "stream: metadata larger than %d bytes",
				   MYCE_STREAM_MAX_META);
	else if (zstd_level < ZSTD_minCLevel() || zstd_level > ZSTD_maxCLevel())
		r = myce_error_set(&e, EINVAL, "stream: bad zstd level %d", zstd_level);
	else
		r = collect(&l, srcs, nsrcs, &e);

	if (r == 0) {
		for (size_t i = 0; i < l.n; i++)
			s.raw_total += l.v[i].size;
		s.cap = FLUSH_AT + HDR_LEN + ZSTD_compressBound(CHUNK);
		s.out = xmalloc(s.cap);
		if (zstd_level != 0) {
			s.cctx = ZSTD_createCCtx();
			if (!s.cctx)
				abort();
			ZSTD_CCtx_setParameter(s.cctx, ZSTD_c_compressionLevel, zstd_level);
		}
		if (zstd_level != 0 || s.known)
			s.in = xmalloc(CHUNK);
		if (s.known)
			s.names = xmalloc(REF_MAX);
		XXH3_64bits_reset(&s.wire);
		XXH3_64bits_reset(&s.all);
		r = send_stream(&s, meta, &l, &e);
	}
	/* Records are only ever written whole, so unless the socket itself
	 * failed, the receiver can still parse an ABORT with our reason. */
	if (r < 0 && !s.broken && (s.len == 0 || snd_flush(&s, NULL) == 0))
		myce_stream_send_abort(fd, myce_error_msg(e));
	if (stats)
		*stats = (struct myce_stream_stats){ s.raw_done, s.wire_bytes, s.files,
						     myce_now_us() - t0, s.ref_blocks, s.zero_blocks };
	ZSTD_freeCCtx(s.cctx);
	free(s.names);
	free(s.in);
	free(s.out);
	entries_clear(&l);
	if (r < 0)
		myce_error_set(err, e ? e->code : EIO, "%s", myce_error_msg(e));
	return r;
}

int myce_stream_send_abort(int fd, const char *reason)
{
	uint8_t buf[HDR_LEN + MAX_ABORT_MSG];
	size_t n = reason ? strnlen(reason, MAX_ABORT_MSG) : 0;
	put_header(buf, REC_ABORT, n);
	memcpy(buf + HDR_LEN, reason, n);
	return write_all(fd, buf, HDR_LEN + n);
}

/* ---- receiver ------------------------------------------------------------- */

struct receiver {
	int fd;
	uint8_t *buf; /* payload of the current record */
	uint32_t cap;
	uint64_t wire_bytes;
	bool hashing; /* feeding `wire` (everything after HELLO) */
	XXH3_state_t wire, file, all;

	const struct myce_stream_dest *dests;
	size_t ndests;
	ZSTD_DCtx *dctx;
	uint8_t *raw; /* one decompressed chunk */
	bool planned;
	uint64_t plan_bytes, plan_files, raw_done, files;
	int out;     /* file being received, or -1 */
	char *name;  /* its wire path, for messages */
	uint64_t size, got;
	char *parent; /* last directory created */
	myce_stream_progress_fn progress;
	void *ud;
	const struct myce_blockstore *store; /* resolves references, or NULL */
	uint64_t ref_blocks, zero_blocks;
	/* Referenced blocks queued for one writev straight from the store. */
	struct iovec *iov;
	size_t niov;
	/* The current file's references (offset, name): a file whose checksum
	 * fails is searched for the corrupt stored block. */
	struct ref_log { uint64_t off; struct myce_blockname name; } *refs;
	size_t nrefs, refs_cap;
	int64_t write_us, wait_us;
	size_t queued; /* bytes in iov */
};

/* Name and largest accepted payload of each record type; a type without a
 * name is unknown, one without a limit is reserved. */
static const struct {
	const char *name;
	uint32_t max;
} rec_info[256] = {
	[REC_HELLO] = { "HELLO", HELLO_MAX },
	[REC_PLAN] = { "PLAN", PLAN_LEN },
	[REC_FILE_BEGIN] = { "FILE_BEGIN", FILE_FIXED + MAX_PATH },
	[REC_DATA_ZSTD] = { "DATA_ZSTD", MAX_PAYLOAD },
	[REC_DATA_RAW] = { "DATA_RAW", CHUNK },
	[REC_BLOCK_REF] = { "BLOCK_REF", REF_MAX },
	[REC_BLOCK_RUN] = { "BLOCK_RUN", RUN_LEN },
	[REC_FILE_END] = { "FILE_END", 8 },
	[REC_END] = { "END", END_LEN },
	/* lib/precopy.c checks their exact layout */
	[MYCE_REC_PRECOPY_BEGIN] = { "PRECOPY_BEGIN", 64 },
	[MYCE_REC_PRECOPY_BLOCKS] = { "PRECOPY_BLOCKS", MAX_PAYLOAD },
	[MYCE_REC_PRECOPY_END] = { "PRECOPY_END", 64 },
	[MYCE_REC_PRECOPY_ACK] = { "PRECOPY_ACK", 64 },
	[REC_ABORT] = { "ABORT", MAX_ABORT_MSG },
};

int myce_stream_read_record(int fd, void *buf, uint32_t cap, uint8_t *type, uint32_t *len,
			    const char *what, const char *peer, uint64_t *wire_bytes,
			    struct myce_error **err)
{
	uint8_t h[HDR_LEN];
	int ret = myce_read_full(fd, h, HDR_LEN);
	if (ret == 0) {
		if (wire_bytes)
			*wire_bytes += HDR_LEN;
		*type = h[0];
		*len = myce_get_be(h + 1, 4);
		const char *name = rec_info[*type].name;
		if (!name)
			return myce_error_set(err, EPROTO, "%s: unknown record type 0x%02x", what,
					      *type);
		if (*len > rec_info[*type].max || *len > cap)
			return myce_error_set(err, EPROTO, "%s: %s record of %" PRIu32
					      " bytes is too large", what, name, *len);
		ret = myce_read_full(fd, buf, *len);
		if (ret == 0 && wire_bytes)
			*wire_bytes += *len;
	}
	if (ret == -EPIPE)
		return myce_error_set(err, EPIPE, "%s: truncated: connection closed by the %s", what,
				      peer);
	if (ret < 0)
		return myce_error_set(err, -ret, "%s: receive: %s", what, strerror(-ret));
	if (*type == REC_ABORT) {
		_cleanup_free_ char *msg = printable(buf, *len);
		return myce_error_set(err, ECONNABORTED, "%s: %s aborted: %s", what, peer, msg);
	}
	return 0;
}

static int rcv_read(struct receiver *r, void *buf, size_t len, struct myce_error **err)
{
	int64_t t0 = myce_now_us();
	int ret = myce_read_full(r->fd, buf, len);
	r->wait_us += myce_now_us() - t0;
	if (ret == -EPIPE)
		return myce_error_set(err, EPIPE,
				      "stream: truncated: connection closed after %" PRIu64 " bytes",
				      r->wire_bytes);
	if (ret < 0)
		return myce_error_set(err, -ret, "stream: receive: %s", strerror(-ret));
	r->wire_bytes += len;
	return 0;
}

/* Reads one record into r->buf.  An ABORT record becomes an error. */
static int rcv_record(struct receiver *r, uint8_t *type, uint32_t *len, struct myce_error **err)
{
	uint8_t h[HDR_LEN];
	int ret = rcv_read(r, h, HDR_LEN, err);
	if (ret < 0)
		return ret;
	*type = h[0];
	*len = myce_get_be(h + 1, 4);
	const char *name = rec_info[*type].name;
	if (!name)
		return myce_error_set(err, EPROTO,
				      "stream: unknown record type 0x%02x (corrupt stream, or not "
				      "a mycedrive stream)",
				      *type);
	if (!rec_info[*type].max)
		return myce_error_set(err, EPROTO,
				      "stream: record type %s is not supported by this receiver "
				      "(protocol version %d)",
				      name, MYCE_STREAM_VERSION);
	if (*len > rec_info[*type].max || *len > r->cap)
		return myce_error_set(err, EPROTO, "stream: %s record of %" PRIu32 " bytes is too large",
				      name, *len);
	if ((ret = rcv_read(r, r->buf, *len, err)) < 0)
		return ret;
	if (*type == REC_ABORT) {
		_cleanup_free_ char *msg = printable(r->buf, *len);
		return myce_error_set(err, ECONNABORTED, "stream: sender aborted: %s", msg);
	}
	if (r->hashing) {
		XXH3_64bits_update(&r->wire, h, HDR_LEN);
		/* END's last field is the stream hash itself. */
		size_t n = *type == REC_END && *len >= 8 ? *len - 8 : *len;
		XXH3_64bits_update(&r->wire, r->buf, n);
	}
	return 0;
}

int myce_stream_recv_hello(int fd, char **meta_json_out, struct myce_error **err)
{
	_cleanup_free_ uint8_t *buf = xmalloc(HELLO_MAX);
	struct receiver r = { .fd = fd, .buf = buf, .cap = HELLO_MAX };
	uint8_t type;
	uint32_t len;
	int ret = rcv_record(&r, &type, &len, err);
	if (ret < 0)
		return ret;
	if (type != REC_HELLO)
		return myce_error_set(err, EPROTO, "stream: expected HELLO, got %s", rec_info[type].name);
	if (len < HELLO_FIXED || memcmp(buf, MAGIC, 8) != 0)
		return myce_error_set(err, EPROTO, "stream: not a mycedrive stream (bad magic)");
	uint16_t version = myce_get_be(buf + 8, 2);
	if (version != MYCE_STREAM_VERSION && version != MYCE_STREAM_VERSION_REFS)
		return myce_error_set(err, EPROTONOSUPPORT,
				      "stream: protocol version %u not supported (this node speaks "
				      "%d and %d)",
				      version, MYCE_STREAM_VERSION, MYCE_STREAM_VERSION_REFS);
	const uint8_t *meta = buf + HELLO_FIXED;
	size_t mlen = len - HELLO_FIXED;
	if (XXH3_64bits(meta, mlen) != myce_get_be(buf + 10, 8))
		return myce_error_set(err, EBADMSG, "stream: HELLO metadata checksum mismatch");
	if (memchr(meta, '\0', mlen))
		return myce_error_set(err, EPROTO, "stream: HELLO metadata contains a NUL byte");
	char *out = xmalloc(mlen + 1);
	memcpy(out, meta, mlen);
	out[mlen] = '\0';
	*meta_json_out = out;
	return 0;
}

/* Returns NULL if name is "prefix/rel" with a known prefix and a clean rel
 * (sets *dest and *rel), else why not. */
static const char *path_check(const struct receiver *r, const char *name,
			      const struct myce_stream_dest **dest, const char **rel)
{
	if (name[0] == '/')
		return "absolute";
	const char *slash = strchr(name, '/');
	if (!slash)
		return "no prefix";
	*dest = NULL;
	for (size_t i = 0; i < r->ndests && !*dest; i++)
		if (strlen(r->dests[i].prefix) == (size_t)(slash - name) &&
		    !memcmp(r->dests[i].prefix, name, (size_t)(slash - name)))
			*dest = &r->dests[i];
	if (!*dest)
		return "unknown prefix";
	*rel = slash + 1;
	for (const char *c = *rel;;) {
		const char *end = strchrnul(c, '/');
		size_t n = (size_t)(end - c);
		if (n == 0)
			return "empty component";
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return "\".\" or \"..\" component";
		if (!*end)
			return NULL;
		c = end + 1;
	}
}

static int rcv_file_begin(struct receiver *r, uint32_t len, struct myce_error **err)
{
	if (r->out >= 0)
		return myce_error_set(err, EPROTO, "stream: FILE_BEGIN inside file %s", r->name);
	uint16_t plen = len >= 2 ? myce_get_be(r->buf, 2) : 0;
	if (len < 2 || len != FILE_FIXED + plen)
		return myce_error_set(err, EPROTO, "stream: malformed FILE_BEGIN record");
	const uint8_t *praw = r->buf + 2;
	uint32_t mode = myce_get_be(praw + plen, 4);
	uint32_t uid = myce_get_be(praw + plen + 4, 4), gid = myce_get_be(praw + plen + 8, 4);
	r->size = myce_get_be(praw + plen + 12, 8);
	r->got = 0;
	free(r->name);
	r->name = printable(praw, plen);

	const struct myce_stream_dest *d = NULL;
	const char *rel = NULL, *why = memchr(praw, '\0', plen) ? "NUL byte" : NULL;
	if (!why)
		why = path_check(r, r->name, &d, &rel);
	if (why)
		return myce_error_set(err, EPROTO, "stream: rejected path \"%s\": %s", r->name, why);
	if (r->size > MYCE_STREAM_MAX_FILE_SIZE)
		return myce_error_set(err, EFBIG,
				      "stream: file %s: declared size %" PRIu64 " exceeds 16 GiB",
				      r->name, r->size);

	_cleanup_free_ char *path = xasprintf("%s/%s", d->dir, rel);
	char *slash = strrchr(path, '/');
	*slash = '\0';
	if (!r->parent || strcmp(r->parent, path) != 0) {
		int ret = myce_mkdir_p(path, 0700);
		if (ret < 0)
			return myce_error_set(err, -ret, "stream: mkdir %s: %s", path, strerror(-ret));
		free(r->parent);
		r->parent = xstrdup(path);
	}
	*slash = '/';
	r->out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode & 0777);
	if (r->out < 0)
		return myce_error_errno(err, "stream: create %s", path);
	/* O_CREAT is subject to the umask and keeps an existing file's mode. */
	if (fchmod(r->out, mode & 0777) < 0)
		return myce_error_errno(err, "stream: chmod %s", path);
	if (d->keep_owner && fchown(r->out, uid, gid) < 0)
		return myce_error_errno(err, "stream: chown %s", path);
	XXH3_64bits_reset(&r->file);
	r->nrefs = 0;
	return 0;
}

/* Writes the queued referenced blocks (already counted and hashed). */
static int rcv_flush_iov(struct receiver *r, struct myce_error **err)
{
	struct iovec *v = r->iov;
	size_t n = r->niov;
	r->niov = 0;
	r->queued = 0;
	int64_t t0 = myce_now_us();
	while (n > 0) {
		ssize_t w = writev(r->out, v, (int)n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return myce_error_errno(err, "stream: write %s", r->name);
		if (w == 0)
			return myce_error_set(err, EIO, "stream: write %s: no progress", r->name);
		for (size_t done = (size_t)w; done > 0;) {
			if (done >= v->iov_len) {
				done -= v->iov_len;
				v++;
				n--;
			} else {
				v->iov_base = (uint8_t *)v->iov_base + done;
				v->iov_len -= done;
				done = 0;
			}
		}
	}
	r->write_us += myce_now_us() - t0;
	return 0;
}

/* Bytes queued before a write: the rebuild keeps pace with the stream
 * instead of writing a whole page file at its FILE_END. */
#define WRITE_AT ((size_t)1 << 20)

static void rcv_queue_block(struct receiver *r, const uint8_t *b)
{
	r->queued += BLK;
	struct iovec *last = r->niov ? &r->iov[r->niov - 1] : NULL;
	if (last && (const uint8_t *)last->iov_base + last->iov_len == b)
		last->iov_len += BLK; /* the next block of the arena */
	else
		r->iov[r->niov++] = (struct iovec){ (void *)b, BLK };
}

static int rcv_data(struct receiver *r, uint8_t type, uint32_t len, struct myce_error **err)
{
	if (r->out < 0)
		return myce_error_set(err, EPROTO, "stream: data record outside a file");
	const uint8_t *data = r->buf;
	size_t n = len;
	if (type == REC_DATA_ZSTD) {
		/* One frame per record; at most CHUNK bytes, or it is an error. */
		n = ZSTD_decompressDCtx(r->dctx, r->raw, CHUNK, r->buf, len);
		if (ZSTD_isError(n))
			return myce_error_set(err, EBADMSG, "stream: file %s: bad compressed data: %s",
					      r->name, ZSTD_getErrorName(n));
		data = r->raw;
	}
	if (n > r->size - r->got)
		return myce_error_set(err, EBADMSG,
				      "stream: file %s: more data than the declared %" PRIu64 " bytes",
				      r->name, r->size);
	int ret = rcv_flush_iov(r, err);
	if (ret < 0)
		return ret;
	XXH3_64bits_update(&r->file, data, n);
	int64_t tw = myce_now_us();
	ret = myce_write_full(r->out, data, n);
	r->write_us += myce_now_us() - tw;
	if (ret < 0)
		return myce_error_set(err, -ret, "stream: write %s: %s", r->name, strerror(-ret));
	r->got += n;
	r->raw_done += n;
	if (r->progress)
		r->progress(r->ud, r->raw_done, r->plan_bytes, r->wire_bytes);
	return 0;
}

/* BLOCK_REF (names) or BLOCK_RUN (pre-copy sequence numbers, or zeros):
 * every block comes from the store and is verified against its name. */
static int rcv_refs(struct receiver *r, uint8_t type, uint32_t len, struct myce_error **err)
{
	const char *what = rec_info[type].name;
	if (r->out < 0)
		return myce_error_set(err, EPROTO, "stream: %s record outside a file", what);
	uint64_t first = 0, count;
	if (type == REC_BLOCK_REF) {
		if (len == 0 || len % 16)
			return myce_error_set(err, EPROTO, "stream: malformed BLOCK_REF record");
		count = len / 16;
	} else {
		first = myce_get_be(r->buf, 8);
		count = myce_get_be(r->buf + 8, 4);
		if (len != RUN_LEN || count == 0 ||
		    (first != ZERO_RUN && count > ZERO_RUN - first))
			return myce_error_set(err, EPROTO, "stream: malformed BLOCK_RUN record");
	}
	if (count > (r->size - r->got) / BLK)
		return myce_error_set(err, EBADMSG,
				      "stream: file %s: more data than the declared %" PRIu64 " bytes",
				      r->name, r->size);
	for (uint64_t k = 0; k < count; k++) {
		struct myce_blockname name;
		const uint8_t *b = NULL;
		int ret;
		/* Not hashed again here: the file's checksum covers these bytes,
		 * and a mismatch is traced to the corrupt block (rcv_file_end). */
		if (type == REC_BLOCK_REF) {
			memcpy(name.b, r->buf + 16 * k, 16);
			ret = myce_blockstore_peek(r->store, &name, &b);
		} else if (first == ZERO_RUN) {
			name = *myce_block_zero_name();
			ret = myce_blockstore_peek(r->store, &name, &b);
		} else {
			ret = myce_blockstore_peek_seq(r->store, first + k, &b, &name);
		}
		if (ret < 0) {
			char hex[33] = "?";
			if (type == REC_BLOCK_REF || first + k < myce_blockstore_seq_count(r->store))
				myce_blockname_hex(&name, hex);
			uint64_t off = r->got;
			if (type == REC_BLOCK_RUN)
				return myce_error_set(err, ENODATA,
						      "stream: file %s: block at offset %" PRIu64
						      ": pre-copied block #%" PRIu64 " (%s) is not in "
						      "the block store",
						      r->name, off, first + k, hex);
			return myce_error_set(err, ENODATA,
					      "stream: file %s: block at offset %" PRIu64
					      ": block %s is not in the block store",
					      r->name, off, hex);
		}
		XXH3_64bits_update(&r->file, b, BLK);
		if (type != REC_BLOCK_RUN || first != ZERO_RUN) {
			if (r->nrefs == r->refs_cap) {
				r->refs_cap = r->refs_cap ? 2 * r->refs_cap : 4096;
				r->refs = xrealloc(r->refs, r->refs_cap * sizeof(*r->refs));
			}
			r->refs[r->nrefs++] = (struct ref_log){ r->got, name };
		}
		rcv_queue_block(r, b);
		r->got += BLK;
		r->raw_done += BLK;
		if ((r->niov == IOV_MAX || r->queued >= WRITE_AT) && (ret = rcv_flush_iov(r, err)) < 0)
			return ret;
	}
	r->ref_blocks += count;
	if (type == REC_BLOCK_RUN && first == ZERO_RUN)
		r->zero_blocks += count;
	if (r->progress)
		r->progress(r->ud, r->raw_done, r->plan_bytes, r->wire_bytes);
	return 0;
}

static int rcv_file_end(struct receiver *r, uint32_t len, struct myce_error **err)
{
	if (r->out < 0)
		return myce_error_set(err, EPROTO, "stream: FILE_END outside a file");
	if (len != 8)
		return myce_error_set(err, EPROTO, "stream: malformed FILE_END record");
	if (r->got != r->size)
		return myce_error_set(err, EBADMSG,
				      "stream: file %s: short (%" PRIu64 " of %" PRIu64 " bytes)",
				      r->name, r->got, r->size);
	int ret = rcv_flush_iov(r, err);
	if (ret < 0)
		return ret;
	uint64_t digest = XXH3_64bits_digest(&r->file);
	if (digest != myce_get_be(r->buf, 8)) {
		/* Which stored block let us down?  (Only on this failure path is
		 * every referenced block hashed again.) */
		for (size_t i = 0; i < r->nrefs; i++) {
			const uint8_t *b;
			if (myce_blockstore_read(r->store, &r->refs[i].name, &b) == -EBADMSG) {
				char hex[33];
				myce_blockname_hex(&r->refs[i].name, hex);
				return myce_error_set(err, EBADMSG,
						      "stream: file %s: block at offset %" PRIu64
						      ": the stored block %s is corrupt (its "
						      "contents do not match its name)",
						      r->name, r->refs[i].off, hex);
			}
		}
		return myce_error_set(err, EBADMSG, "stream: file %s: checksum mismatch", r->name);
	}
	uint8_t be[8];
	myce_put_be(be, digest, 8);
	XXH3_64bits_update(&r->all, be, 8);
	int fd = r->out;
	r->out = -1;
	if (close(fd) < 0)
		return myce_error_errno(err, "stream: close %s", r->name);
	r->files++;
	return 0;
}

static int rcv_end(struct receiver *r, uint32_t len, struct myce_error **err)
{
	if (r->out >= 0)
		return myce_error_set(err, EPROTO, "stream: END inside file %s", r->name);
	if (len != END_LEN)
		return myce_error_set(err, EPROTO, "stream: malformed END record");
	uint64_t bytes = myce_get_be(r->buf, 8), files = myce_get_be(r->buf + 8, 8);
	if (bytes != r->raw_done || files != r->files || bytes != r->plan_bytes ||
	    files != r->plan_files)
		return myce_error_set(err, EBADMSG,
				      "stream: received %" PRIu64 " files / %" PRIu64
				      " bytes, END says %" PRIu64 " / %" PRIu64 ", PLAN said %" PRIu64
				      " / %" PRIu64,
				      r->files, r->raw_done, files, bytes, r->plan_files, r->plan_bytes);
	if (XXH3_64bits_digest(&r->all) != myce_get_be(r->buf + 16, 8))
		return myce_error_set(err, EBADMSG, "stream: checksum mismatch over all files");
	if (XXH3_64bits_digest(&r->wire) != myce_get_be(r->buf + 24, 8))
		return myce_error_set(err, EBADMSG,
				      "stream: stream checksum mismatch (record metadata corrupted)");
	if (r->progress)
		r->progress(r->ud, r->raw_done, r->plan_bytes, r->wire_bytes);
	return 0;
}

static int rcv_loop(struct receiver *r, struct myce_error **err)
{
	for (;;) {
		uint8_t type;
		uint32_t len;
		int ret = rcv_record(r, &type, &len, err);
		if (ret < 0)
			return ret;
		if (!r->planned && type != REC_PLAN)
			return myce_error_set(err, EPROTO, "stream: expected PLAN, got %s",
					      rec_info[type].name);
		switch (type) {
		case REC_PLAN:
			if (r->planned || len != PLAN_LEN)
				return myce_error_set(err, EPROTO, "stream: unexpected PLAN record");
			r->plan_bytes = myce_get_be(r->buf, 8);
			r->plan_files = myce_get_be(r->buf + 8, 8);
			r->planned = true;
			break;
		case REC_FILE_BEGIN:
			ret = rcv_file_begin(r, len, err);
			break;
		case REC_DATA_ZSTD:
		case REC_DATA_RAW:
			ret = rcv_data(r, type, len, err);
			break;
		case REC_BLOCK_REF:
		case REC_BLOCK_RUN:
			if (!r->store)
				return myce_error_set(err, EPROTO,
						      "stream: record type %s is not supported by "
						      "this receiver (no block store: there was no "
						      "pre-copy on this connection)",
						      rec_info[type].name);
			ret = rcv_refs(r, type, len, err);
			break;
		case REC_FILE_END:
			ret = rcv_file_end(r, len, err);
			break;
		case REC_END:
			return rcv_end(r, len, err);
		default:
			return myce_error_set(err, EPROTO, "stream: unexpected %s record",
					      rec_info[type].name);
		}
		if (ret < 0)
			return ret;
	}
}

int myce_stream_recv_files(int fd, const struct myce_stream_dest *dests, size_t ndests,
			   myce_stream_progress_fn progress, void *ud,
			   struct myce_stream_stats *stats, struct myce_error **err)
{
	struct myce_stream_recv_opts o = { .progress = progress, .ud = ud };
	return myce_stream_recv_files_ex(fd, dests, ndests, &o, stats, err);
}

int myce_stream_recv_files_ex(int fd, const struct myce_stream_dest *dests, size_t ndests,
			      const struct myce_stream_recv_opts *opts,
			      struct myce_stream_stats *stats, struct myce_error **err)
{
	static const struct myce_stream_recv_opts defaults = { 0 };
	if (!opts)
		opts = &defaults;
	int64_t t0 = myce_now_us();
	struct receiver r = {
		.fd = fd,
		.buf = xmalloc(MAX_PAYLOAD),
		.cap = MAX_PAYLOAD,
		.hashing = true,
		.dests = dests,
		.ndests = ndests,
		.dctx = ZSTD_createDCtx(),
		.raw = xmalloc(CHUNK),
		.out = -1,
		.progress = opts->progress,
		.ud = opts->ud,
		.store = opts->store,
		.iov = xmalloc(IOV_MAX * sizeof(struct iovec)),
	};
	if (!r.dctx)
		abort();
	XXH3_64bits_reset(&r.wire);
	XXH3_64bits_reset(&r.all);

	int ret = rcv_loop(&r, err);

	if (r.out >= 0)
		close(r.out);
	if (stats)
		*stats = (struct myce_stream_stats){ r.raw_done, r.wire_bytes, r.files,
						     myce_now_us() - t0, r.ref_blocks,
						     r.zero_blocks, r.write_us, r.wait_us };
	ZSTD_freeDCtx(r.dctx);
	free(r.buf);
	free(r.raw);
	free(r.name);
	free(r.parent);
	free(r.iov);
	free(r.refs);
	return ret;
}
