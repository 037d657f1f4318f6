/* Unit tests for lib/stream.c: real sockets, a sender thread, and streams
 * hand-crafted from docs/stream.md (so the spec is tested, not just the
 * sender's idea of it). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "blockstore.h"
#include "precopy.h"
#include "stream.h"
#include "util.h"

#define MiB (1024 * 1024)

/* ---- fixtures ------------------------------------------------------------- */

static char *root; /* temp dir of the current test */

static int setup(void **state)
{
	root = xstrdup("/tmp/test_stream.XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	myce_rm_rf(root);
	free(root);
	return 0;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = next_rand();
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

/* Mildly compressible, like memory images: per 4 KiB page, a zero page, a
 * random page, or text made of tokens from a small vocabulary. */
static void fill_mixed(uint8_t *p, size_t n)
{
	static uint64_t vocab[512];
	if (!vocab[0])
		for (size_t i = 0; i < ARRAY_SIZE(vocab); i++)
			vocab[i] = next_rand();
	for (size_t pg = 0; pg < n; pg += 4096) {
		size_t len = n - pg < 4096 ? n - pg : 4096;
		uint64_t kind = next_rand() % 4;
		if (kind == 0)
			memset(p + pg, 0, len);
		else if (kind == 1)
			fill_random(p + pg, len);
		else
			for (size_t i = 0; i < len; i += 8)
				memcpy(p + pg + i, &vocab[next_rand() % 512], len - i < 8 ? len - i : 8);
	}
}

static void write_file(const char *dir, const char *rel, const void *data, size_t len, int mode)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, rel);
	_cleanup_free_ char *parent = xstrdup(path);
	*strrchr(parent, '/') = '\0';
	assert_int_equal(myce_mkdir_p(parent, 0755), 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(myce_write_full(fd, data, len), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void assert_same_file(const char *a, const char *b)
{
	size_t la, lb;
	_cleanup_free_ char *da = myce_read_file(a, &la);
	_cleanup_free_ char *db = myce_read_file(b, &lb);
	assert_non_null(da);
	if (!db)
		fail_msg("missing %s", b);
	assert_int_equal(la, lb);
	assert_true(memcmp(da, db, la) == 0);
	struct stat sa, sb;
	assert_int_equal(stat(a, &sa), 0);
	assert_int_equal(stat(b, &sb), 0);
	assert_int_equal(sa.st_mode & 0777, sb.st_mode & 0777);
}

static void tcp_pair(int fds[2])
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
	fds[1] = accept(l, NULL, NULL);
	assert_true(fds[1] >= 0);
	close(l);
}

/* ---- sender thread -------------------------------------------------------- */

struct send_job {
	int fd;
	const char *meta;
	const struct myce_stream_source *srcs;
	size_t nsrcs;
	int level;
	bool reply; /* after the stream: write "after", then read "OK" */
	/* results, checked on the main thread (cmocka asserts are not thread-safe) */
	int ret, reply_ret;
	char reply_buf[3];
	struct myce_stream_stats stats;
	struct myce_error *err;
	uint64_t calls, last_raw, last_total;
};

static void on_progress(void *ud, uint64_t raw_done, uint64_t raw_total, uint64_t wire_done)
{
	struct send_job *j = ud;
	j->calls++;
	j->last_raw = raw_done;
	j->last_total = raw_total;
}

static void *send_main(void *arg)
{
	struct send_job *j = arg;
	j->ret = myce_stream_send(j->fd, j->meta, j->srcs, j->nsrcs, j->level, on_progress, j,
				  &j->stats, &j->err);
	if (j->ret == 0 && j->reply) {
		j->reply_ret = myce_write_full(j->fd, "after", 5);
		if (j->reply_ret == 0)
			j->reply_ret = myce_read_full(j->fd, j->reply_buf, 2);
	}
	return NULL;
}

/* ---- receiving arbitrary bytes ---------------------------------------------- */

struct feed {
	int fd;
	const uint8_t *p;
	size_t len;
};

static void *feed_main(void *arg)
{
	struct feed *f = arg;
	for (size_t off = 0; off < f->len;) {
		ssize_t n = send(f->fd, f->p + off, f->len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break; /* the receiver gave up: fine */
		off += (size_t)n;
	}
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

/* The block store recv_bytes() resolves references from (NULL: none). */
static const struct myce_blockstore *recv_store;

/* Feeds bytes through a socket to the receiver (dests img, shm under root/dst);
 * returns its result and, on failure, its message in *msg. */
static int recv_bytes(const uint8_t *p, size_t len, char **msg)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct feed f = { sv[1], p, len };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, feed_main, &f), 0);

	_cleanup_free_ char *img = xasprintf("%s/dst/img", root);
	_cleanup_free_ char *shm = xasprintf("%s/dst/shm", root);
	struct myce_stream_dest dests[] = { { "img", img, false }, { "shm", shm, true } };
	struct myce_error *err = NULL;
	_cleanup_free_ char *meta = NULL;
	int r = myce_stream_recv_hello(sv[0], &meta, &err);
	struct myce_stream_recv_opts ro = { .store = recv_store };
	if (r == 0)
		r = myce_stream_recv_files_ex(sv[0], dests, 2, &ro, NULL, &err);
	close(sv[0]);
	pthread_join(t, NULL);
	close(sv[1]);
	if (msg)
		*msg = r < 0 ? xstrdup(myce_error_msg(err)) : NULL;
	myce_error_free(err);
	return r;
}

static void assert_recv_fails(const uint8_t *p, size_t len, const char *needle)
{
	_cleanup_free_ char *msg = NULL;
	int r = recv_bytes(p, len, &msg);
	if (r >= 0)
		fail_msg("stream accepted, expected an error containing \"%s\"", needle);
	if (needle && !strstr(msg, needle))
		fail_msg("error \"%s\" does not contain \"%s\"", msg, needle);
}

/* Sends a stream into a memfd and returns its bytes; with known, a version 2
 * stream with references. */
static uint8_t *capture_ex(const struct myce_stream_source *srcs, size_t n, int level,
			   const struct myce_precopy_tx *known, size_t *len)
{
	int fd = memfd_create("stream", MFD_CLOEXEC);
	struct myce_error *err = NULL;
	struct myce_stream_send_opts o = { .zstd_level = level, .known = known };
	int r = known ? myce_stream_send_ex(fd, "{\"id\":\"m1\"}", srcs, n, &o, NULL, &err)
		      : myce_stream_send(fd, "{\"id\":\"m1\"}", srcs, n, level, NULL, NULL, NULL,
					 &err);
	if (r < 0)
		fail_msg("%s", myce_error_msg(err));
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *buf = xmalloc((size_t)size);
	assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
	close(fd);
	*len = (size_t)size;
	return buf;
}

static uint8_t *capture(const struct myce_stream_source *srcs, size_t n, int level, size_t *len)
{
	return capture_ex(srcs, n, level, NULL, len);
}

/* ---- hand-crafted streams (docs/stream.md) -------------------------------- */

struct wire {
	uint8_t p[8 * MiB];
	size_t len, hello_len;
};

static void rec(struct wire *w, uint8_t type, const void *payload, size_t n)
{
	assert_true(w->len + 5 + n <= sizeof(w->p));
	w->p[w->len] = type;
	uint32_t be = htobe32((uint32_t)n);
	memcpy(w->p + w->len + 1, &be, 4);
	memcpy(w->p + w->len + 5, payload, n);
	w->len += 5 + n;
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static void hello(struct wire *w, uint16_t version, const char *meta)
{
	uint8_t p[256];
	size_t n = strlen(meta);
	memcpy(p, "MYCESTRM", 8);
	uint16_t be = htobe16(version);
	memcpy(p + 8, &be, 2);
	put64(p + 10, XXH3_64bits(meta, n));
	memcpy(p + 18, meta, n);
	rec(w, 0x01, p, 18 + n);
	w->hello_len = w->len;
}

static void plan(struct wire *w, uint64_t bytes, uint64_t files)
{
	uint8_t p[16];
	put64(p, bytes);
	put64(p + 8, files);
	rec(w, 0x02, p, 16);
}

static void file_begin(struct wire *w, const char *path, size_t plen, uint32_t mode, uint64_t size)
{
	uint8_t p[5000];
	uint16_t be16 = htobe16((uint16_t)plen);
	memcpy(p, &be16, 2);
	memcpy(p + 2, path, plen);
	uint32_t be32[3] = { htobe32(mode), htobe32(1234), htobe32(5678) }; /* mode, uid, gid */
	memcpy(p + 2 + plen, be32, 12);
	put64(p + 14 + plen, size);
	rec(w, 0x10, p, 2 + plen + 20);
}

static void file_end(struct wire *w, uint64_t hash)
{
	uint8_t p[8];
	put64(p, hash);
	rec(w, 0x1f, p, 8);
}

/* END's content hash of a one-file stream: XXH3-64 over the file's digest
 * (big-endian), as docs/stream.md defines it. */
static uint64_t all_of_one(uint64_t file_digest)
{
	uint8_t be[8];
	put64(be, file_digest);
	return XXH3_64bits(be, 8);
}

static void end(struct wire *w, uint64_t bytes, uint64_t files, uint64_t all)
{
	uint8_t p[32];
	put64(p, bytes);
	put64(p + 8, files);
	put64(p + 16, all);
	rec(w, 0x20, p, 32);
	put64(w->p + w->len - 8, XXH3_64bits(w->p + w->hello_len, w->len - 8 - w->hello_len));
}

/* A valid stream with one file at path holding `data`. */
static void one_file(struct wire *w, const char *path, size_t plen, const char *data)
{
	size_t n = strlen(data);
	w->len = 0;
	hello(w, 1, "{}");
	plan(w, n, 1);
	file_begin(w, path, plen, 0644, n);
	rec(w, 0x12, data, n);
	file_end(w, XXH3_64bits(data, n));
	end(w, n, 1, all_of_one(XXH3_64bits(data, n)));
}

static struct wire W; /* 8 MiB: not on the stack */

/* ---- tests ---------------------------------------------------------------- */

static void round_trip(int level)
{
	_cleanup_free_ char *src = xasprintf("%s/src", root);
	_cleanup_free_ char *dst = xasprintf("%s/dst", root);
	_cleanup_free_ char *simg = xasprintf("%s/img", src), *sshm = xasprintf("%s/shm", src);
	_cleanup_free_ char *dimg = xasprintf("%s/img", dst), *dshm = xasprintf("%s/shm", dst);
	_cleanup_free_ char *missing = xasprintf("%s/nope", src);
	_cleanup_free_ uint8_t *rnd = xmalloc(3 * MiB), *txt = xmalloc(5 * MiB);
	fill_random(rnd, 3 * MiB);
	for (size_t i = 0; i < 5 * MiB; i++)
		txt[i] = "checkpoint pages "[i % 17];
	static const char *const rels[] = { "empty.img", "random.img", "text.img", "sub/dir/nested.img" };
	write_file(simg, rels[0], "", 0, 0600);
	write_file(simg, rels[1], rnd, 3 * MiB, 0644);
	write_file(simg, rels[2], txt, 5 * MiB, 0600);
	write_file(simg, rels[3], "nested", 6, 0640);
	write_file(sshm, "PostgreSQL.123", txt, 12345, 0600);

	struct myce_stream_source srcs[] = { { "img", simg, false },
					     { "extra", missing, true },
					     { "shm", sshm, false } };
	struct myce_stream_dest dests[] = { { "img", dimg, false }, { "shm", dshm, true } };
	const char *meta = "{\"id\":\"mig-42\",\"dst\":\"10.0.0.2:7070\",\"note\":\"h\\u00e9\"}";
	int fds[2];
	tcp_pair(fds);
	struct send_job j = { .fd = fds[0], .meta = meta, .srcs = srcs, .nsrcs = 3, .level = level,
			      .reply = true };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, send_main, &j), 0);

	struct myce_error *err = NULL;
	_cleanup_free_ char *got_meta = NULL;
	struct myce_stream_stats st;
	struct send_job rp = { 0 }; /* receiver's progress */
	int r = myce_stream_recv_hello(fds[1], &got_meta, &err);
	if (r == 0)
		r = myce_stream_recv_files(fds[1], dests, 2, on_progress, &rp, &st, &err);
	if (r < 0)
		fail_msg("level %d: %s", level, myce_error_msg(err));
	/* The socket is still in step: read what the sender wrote after END. */
	char after[6] = { 0 };
	assert_int_equal(myce_read_full(fds[1], after, 5), 0);
	assert_string_equal(after, "after");
	assert_int_equal(myce_write_full(fds[1], "OK", 2), 0);
	pthread_join(t, NULL);
	close(fds[0]);
	close(fds[1]);

	assert_int_equal(j.ret, 0);
	assert_int_equal(j.reply_ret, 0);
	assert_string_equal(j.reply_buf, "OK");
	assert_string_equal(got_meta, meta);
	uint64_t total = 8 * MiB + 6 + 12345;
	assert_int_equal(st.files, 5);
	assert_int_equal(st.raw_bytes, total);
	assert_int_equal(j.stats.raw_bytes, total);
	assert_int_equal(j.stats.wire_bytes, st.wire_bytes + 5 + 18 + strlen(meta)); /* + HELLO */
	assert_true(j.calls > 0);
	assert_int_equal(j.last_raw, total);
	assert_int_equal(j.last_total, total);
	assert_true(rp.calls > 0);
	assert_int_equal(rp.last_raw, total);
	assert_int_equal(rp.last_total, total);
	if (level == 0)
		assert_true(j.stats.wire_bytes > total);
	else
		assert_true(j.stats.wire_bytes < 3 * MiB + MiB / 2); /* random part stays raw */
	for (size_t i = 0; i < ARRAY_SIZE(rels); i++) {
		_cleanup_free_ char *a = xasprintf("%s/%s", simg, rels[i]);
		_cleanup_free_ char *b = xasprintf("%s/%s", dimg, rels[i]);
		assert_same_file(a, b);
	}
	_cleanup_free_ char *a = xasprintf("%s/PostgreSQL.123", sshm);
	_cleanup_free_ char *b = xasprintf("%s/PostgreSQL.123", dshm);
	assert_same_file(a, b);
	printf("# level %d: %" PRIu64 " raw -> %" PRIu64 " wire bytes\n", level, total,
	       j.stats.wire_bytes);
}

static void test_round_trip_store(void **state)
{
	round_trip(0);
}
static void test_round_trip_level1(void **state)
{
	round_trip(1);
}
static void test_round_trip_level3(void **state)
{
	round_trip(3);
}

/* A small tree streamed at level 1 into memory. */
static uint8_t *small_stream(size_t *len)
{
	_cleanup_free_ char *img = xasprintf("%s/src/img", root);
	_cleanup_free_ char *shm = xasprintf("%s/src/shm", root);
	_cleanup_free_ uint8_t *buf = xmalloc(300000);
	fill_mixed(buf, 300000);
	write_file(img, "pages-1.img", buf, 300000, 0600);
	write_file(img, "core-1.img", buf + 1000, 777, 0600);
	write_file(shm, "seg", "shared", 6, 0600);
	struct myce_stream_source srcs[] = { { "img", img, false }, { "shm", shm, false } };
	return capture(srcs, 2, 1, len);
}

static void test_corruption_detected(void **state)
{
	size_t len;
	_cleanup_free_ uint8_t *good = small_stream(&len);
	assert_int_equal(recv_bytes(good, len, NULL), 0);

	_cleanup_free_ uint8_t *bad = xmalloc(len);
	size_t tried = 0;
	for (size_t off = 0; off < len; off += off < 400 || off + 200 > len ? 1 : len / 300) {
		memcpy(bad, good, len);
		bad[off] ^= (off & 1) ? 0x01 : 0x80;
		_cleanup_free_ char *msg = NULL;
		if (recv_bytes(bad, len, &msg) >= 0)
			fail_msg("flipped byte at offset %zu of %zu went undetected", off, len);
		tried++;
	}
	printf("# %zu single-byte corruptions of a %zu-byte stream, all detected\n", tried, len);
}

static void test_truncated(void **state)
{
	size_t len;
	_cleanup_free_ uint8_t *good = small_stream(&len);
	for (size_t cut = 0; cut < len; cut += cut < 100 ? 1 : len / 97)
		assert_recv_fails(good, cut, "truncated");
	assert_recv_fails(good, len / 2, "truncated"); /* mid-file */
	assert_recv_fails(good, len - 1, "truncated");
}

static void test_bad_paths(void **state)
{
	static const char *const bad[] = { "img/../../etc/x", "/abs", "/img/x", "unknown/x", "img",
					   "img/", "img//x", "img/./x", "..", "img/..", "shm/a/../../b" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		one_file(&W, bad[i], strlen(bad[i]), "evil");
		assert_recv_fails(W.p, W.len, "rejected path");
	}
	one_file(&W, "img/a\0b", 7, "evil");
	assert_recv_fails(W.p, W.len, "NUL");
	_cleanup_free_ char *etc = xasprintf("%s/etc", root);
	assert_int_equal(access(etc, F_OK), -1);

	/* The same hand-crafted stream with a clean path is accepted. */
	one_file(&W, "img/ok/fine", 11, "good");
	assert_int_equal(recv_bytes(W.p, W.len, NULL), 0);
	_cleanup_free_ char *p = xasprintf("%s/dst/img/ok/fine", root);
	_cleanup_free_ char *data = myce_read_file(p, NULL);
	assert_string_equal(data, "good");
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, geteuid()); /* img: owned by the receiver */

	/* shm keeps the sender's owner (uid 1234, gid 5678 in file_begin()). */
	one_file(&W, "shm/PostgreSQL.1", 16, "segment");
	if (geteuid() != 0) {
		assert_recv_fails(W.p, W.len, "chown");
		return;
	}
	assert_int_equal(recv_bytes(W.p, W.len, NULL), 0);
	_cleanup_free_ char *q = xasprintf("%s/dst/shm/PostgreSQL.1", root);
	assert_int_equal(stat(q, &st), 0);
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);
}

static void test_protocol_errors(void **state)
{
	uint8_t big[8] = { 0x12, 0x7f, 0xff, 0xff, 0xff };
	W.len = 0;
	hello(&W, 3, "{}");
	assert_recv_fails(W.p, W.len, "protocol version 3 not supported");
	assert_recv_fails((const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18, "unknown record type");
	W.len = 0;
	hello(&W, 1, "{}");
	W.p[7] = 'X'; /* magic */
	assert_recv_fails(W.p, W.len, "bad magic");

	W.len = 0;
	hello(&W, 1, "{}");
	plan(&W, 0, 0);
	rec(&W, 0x13, "ref", 3);
	assert_recv_fails(W.p, W.len, "BLOCK_REF is not supported");
	W.len = W.hello_len;
	plan(&W, 0, 0);
	rec(&W, 0x55, "", 0);
	assert_recv_fails(W.p, W.len, "unknown record type 0x55");
	W.len = W.hello_len;
	plan(&W, 0, 0);
	file_begin(&W, "img/x", 5, 0600, 100);
	memcpy(W.p + W.len, big, 5); /* DATA_RAW claiming 2 GiB */
	W.len += 5;
	assert_recv_fails(W.p, W.len, "too large");

	W.len = W.hello_len;
	plan(&W, 0, 0);
	file_begin(&W, "img/huge", 8, 0600, (uint64_t)17 << 30);
	assert_recv_fails(W.p, W.len, "exceeds 16 GiB");

	W.len = W.hello_len; /* more data than declared */
	plan(&W, 3, 1);
	file_begin(&W, "img/x", 5, 0600, 3);
	rec(&W, 0x12, "abcd", 4);
	assert_recv_fails(W.p, W.len, "more data than the declared");

	W.len = W.hello_len; /* fewer */
	plan(&W, 3, 1);
	file_begin(&W, "img/x", 5, 0600, 3);
	rec(&W, 0x12, "ab", 2);
	file_end(&W, XXH3_64bits("ab", 2));
	assert_recv_fails(W.p, W.len, "file img/x: short (2 of 3 bytes)");

	one_file(&W, "img/x", 5, "abc");
	W.p[W.len - 37 - 1] ^= 1; /* last byte of FILE_END's hash */
	assert_recv_fails(W.p, W.len, "file img/x: checksum mismatch");

	W.len = W.hello_len; /* DATA_ZSTD that is not zstd */
	plan(&W, 3, 1);
	file_begin(&W, "img/x", 5, 0600, 3);
	rec(&W, 0x11, "abc", 3);
	assert_recv_fails(W.p, W.len, "bad compressed data");
}

static void test_abort(void **state)
{
	/* Before HELLO, e.g. the CRIU dump failed. */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(myce_stream_send_abort(sv[0], "criu dump failed: exit 1"), 0);
	struct myce_error *err = NULL;
	char *meta = NULL;
	assert_true(myce_stream_recv_hello(sv[1], &meta, &err) < 0);
	assert_string_equal(myce_error_msg(err), "stream: sender aborted: criu dump failed: exit 1");
	assert_int_equal(err->code, ECONNABORTED);
	myce_error_freep(&err);
	close(sv[0]);
	close(sv[1]);

	/* Mid-file. */
	W.len = 0;
	hello(&W, 1, "{}");
	plan(&W, 10, 1);
	file_begin(&W, "img/x", 5, 0600, 10);
	rec(&W, 0x12, "abcde", 5);
	rec(&W, 0x7f, "disk on fire\n", 13);
	assert_recv_fails(W.p, W.len, "sender aborted: disk on fire?");

	/* myce_stream_send's own failure reaches the receiver. */
	_cleanup_free_ char *missing = xasprintf("%s/nope", root);
	struct myce_stream_source src = { "img", missing, false };
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct myce_error *serr = NULL;
	assert_true(myce_stream_send(sv[0], "{}", &src, 1, 1, NULL, NULL, NULL, &serr) < 0);
	assert_non_null(strstr(myce_error_msg(serr), "No such file"));
	assert_true(myce_stream_recv_hello(sv[1], &meta, &err) < 0);
	assert_non_null(strstr(myce_error_msg(err), "sender aborted: stream: source img:"));
	myce_error_free(err);
	myce_error_free(serr);
	close(sv[0]);
	close(sv[1]);
}

static void test_throughput(void **state)
{
	const size_t total = 50 * MiB, files = 5;
	_cleanup_free_ char *src = xasprintf("%s/src", root);
	_cleanup_free_ uint8_t *buf = xmalloc(total / files);
	for (size_t i = 0; i < files; i++) {
		_cleanup_free_ char *rel = xasprintf("pages-%zu.img", i);
		fill_mixed(buf, total / files);
		write_file(src, rel, buf, total / files, 0600);
	}
	struct myce_stream_source srcs[] = { { "img", src, false } };
	static const int levels[] = { 1, 0, 3 };
	for (size_t l = 0; l < ARRAY_SIZE(levels); l++) {
		_cleanup_free_ char *dst = xasprintf("%s/dst-%d", root, levels[l]);
		struct myce_stream_dest dests[] = { { "img", dst } };
		int fds[2];
		tcp_pair(fds);
		struct send_job j = { .fd = fds[0], .srcs = srcs, .nsrcs = 1, .level = levels[l] };
		pthread_t t;
		int64_t t0 = myce_now_us();
		assert_int_equal(pthread_create(&t, NULL, send_main, &j), 0);
		struct myce_error *err = NULL;
		_cleanup_free_ char *meta = NULL;
		struct myce_stream_stats st;
		int r = myce_stream_recv_hello(fds[1], &meta, &err);
		if (r == 0)
			r = myce_stream_recv_files(fds[1], dests, 1, NULL, NULL, &st, &err);
		int64_t us = myce_now_us() - t0;
		pthread_join(t, NULL);
		close(fds[0]);
		close(fds[1]);
		if (r < 0)
			fail_msg("%s", myce_error_msg(err));
		assert_int_equal(j.ret, 0);
		assert_int_equal(st.raw_bytes, total);
		printf("# throughput level %d: %zu MiB in %.1f ms = %.0f MiB/s raw, wire %.1f MiB "
		       "(ratio %.2f), loopback TCP, sender+receiver in one process\n",
		       levels[l], total / MiB, us / 1000.0, (double)total / MiB / (us / 1e6),
		       (double)st.wire_bytes / MiB, (double)total / (double)st.wire_bytes);
		myce_rm_rf(dst);
	}
}

/* ---- version 2: references to pre-copied blocks ---------------------------- */

#define BLK MYCE_BLOCK_SIZE
#define NKNOWN 200

/* NKNOWN distinct blocks that the receiver "holds": in its store and in the
 * sender's known set, in the same order (sequence numbers 0..NKNOWN-1), as
 * after a pre-copy. */
static uint8_t known_blocks[NKNOWN][BLK];

static void seed_known(struct myce_blockstore **bs, struct myce_precopy_tx **tx)
{
	*bs = myce_blockstore_new(4 * NKNOWN);
	*tx = myce_precopy_tx_new();
	for (size_t i = 0; i < NKNOWN; i++) {
		fill_random(known_blocks[i], BLK);
		struct myce_blockname n;
		assert_int_equal(myce_blockstore_put(*bs, known_blocks[i], &n), 1);
		assert_int_equal(myce_precopy_tx_add(*tx, &n), i);
	}
}

/* Appends block specs to buf: K<i> a known block, 'Z' zero, 'U' unknown. */
struct bspec {
	char kind;
	int from, to; /* K: known_blocks[from..to] */
};

static size_t build_blocks(uint8_t *buf, const struct bspec *v, size_t n)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i].kind == 'K') {
			for (int k = v[i].from; k <= v[i].to; k++, len += BLK)
				memcpy(buf + len, known_blocks[k], BLK);
		} else {
			for (int k = 0; k < v[i].from; k++, len += BLK) {
				if (v[i].kind == 'Z')
					memset(buf + len, 0, BLK);
				else
					fill_random(buf + len, BLK);
			}
		}
	}
	return len;
}

static uint16_t hello_version(const uint8_t *stream)
{
	return (uint16_t)(stream[5 + 8] << 8 | stream[5 + 9]);
}

static void refs_round_trip(int level)
{
	struct myce_blockstore *bs;
	struct myce_precopy_tx *tx;
	seed_known(&bs, &tx);
	_cleanup_free_ char *simg = xasprintf("%s/src/img", root);
	_cleanup_free_ char *sshm = xasprintf("%s/src/shm", root);
	_cleanup_free_ uint8_t *buf = xmalloc(400 * BLK);
	/* Runs, single known blocks out of order, zero runs and single zeros,
	 * unknown blocks (data), known blocks after unknown ones. */
	static const struct bspec p1[] = {
		{ 'K', 0, 49 }, { 'Z', 3 }, { 'K', 100, 100 }, { 'K', 60, 69 }, { 'U', 5 },
		{ 'K', 5, 5 },  { 'Z', 1 }, { 'K', 199, 199 }, { 'U', 1 },	  { 'K', 7, 7 },
		{ 'K', 7, 7 },  { 'K', 8, 8 },
	};
	size_t n1 = build_blocks(buf, p1, ARRAY_SIZE(p1));
	write_file(simg, "pages-1.img", buf, n1, 0600);
	/* Not a multiple of 4 KiB: the tail goes as data. */
	static const struct bspec p2[] = { { 'K', 10, 19 } };
	size_t n2 = build_blocks(buf, p2, 1);
	memset(buf + n2, 'x', 100);
	write_file(simg, "pages-2.img", buf, n2 + 100, 0600);
	static const struct bspec p4[] = { { 'U', 2 }, { 'K', 150, 159 } };
	size_t n4 = build_blocks(buf, p4, ARRAY_SIZE(p4));
	write_file(simg, "sub/pages-4.img", buf, n4, 0600);
	/* Known blocks outside page files are sent as data. */
	static const struct bspec c[] = { { 'K', 0, 9 } };
	size_t nc = build_blocks(buf, c, 1);
	write_file(simg, "core-1.img", buf, nc, 0600);
	write_file(simg, "pages-5.img.bak", buf, nc, 0600);
	write_file(sshm, "pages-3.img", buf, nc, 0600);

	struct myce_stream_source srcs[] = { { "img", simg, false }, { "shm", sshm, false } };
	int fd = memfd_create("stream", MFD_CLOEXEC);
	struct myce_error *err = NULL;
	struct myce_stream_stats st;
	struct myce_stream_send_opts o = { .zstd_level = level, .known = tx };
	if (myce_stream_send_ex(fd, "{}", srcs, 2, &o, &st, &err) < 0)
		fail_msg("%s", myce_error_msg(err));
	size_t len = (size_t)lseek(fd, 0, SEEK_END);
	_cleanup_free_ uint8_t *stream = xmalloc(len);
	assert_int_equal(pread(fd, stream, len, 0), (ssize_t)len);
	close(fd);
	assert_int_equal(hello_version(stream), MYCE_STREAM_VERSION_REFS);
	assert_int_equal(st.ref_blocks, (50 + 3 + 1 + 10 + 1 + 1 + 1 + 3) + 10 + 10);
	assert_int_equal(st.zero_blocks, 4);

	recv_store = bs;
	_cleanup_free_ char *msg = NULL;
	int r = recv_bytes(stream, len, &msg);
	recv_store = NULL;
	if (r < 0)
		fail_msg("level %d: %s", level, msg);
	static const char *const rels[] = { "pages-1.img", "pages-2.img", "sub/pages-4.img",
					    "core-1.img", "pages-5.img.bak" };
	for (size_t i = 0; i < ARRAY_SIZE(rels); i++) {
		_cleanup_free_ char *a = xasprintf("%s/%s", simg, rels[i]);
		_cleanup_free_ char *b = xasprintf("%s/dst/img/%s", root, rels[i]);
		assert_same_file(a, b);
	}
	_cleanup_free_ char *a = xasprintf("%s/pages-3.img", sshm);
	_cleanup_free_ char *b = xasprintf("%s/dst/shm/pages-3.img", root);
	assert_same_file(a, b);

	/* Without references: version 1, and the references' bytes go as data. */
	size_t len1;
	_cleanup_free_ uint8_t *v1 = capture(srcs, 2, level, &len1);
	assert_int_equal(hello_version(v1), MYCE_STREAM_VERSION);
	printf("# level %d: %zu bytes with references, %zu without\n", level, len, len1);
	assert_true(len + 80 * BLK / (level ? 2 : 1) < len1);
	/* A receiver without a block store refuses the version 2 stream. */
	assert_recv_fails(stream, len, "is not supported by this receiver");

	myce_precopy_tx_free(tx);
	myce_blockstore_free(bs);
}

static void test_refs_round_trip_store(void **state)
{
	refs_round_trip(0);
}
static void test_refs_round_trip_level1(void **state)
{
	refs_round_trip(1);
}

/* Hand-crafted version 2 streams: one file img/pages-1.img whose data is
 * given by the records the caller appends between begin_refs() and
 * end_refs(). */
static void begin_refs(struct wire *w, uint64_t size)
{
	w->len = 0;
	hello(w, 2, "{}");
	plan(w, size, 1);
	file_begin(w, "img/pages-1.img", 15, 0600, size);
}

static void end_refs(struct wire *w, const uint8_t *content, uint64_t size)
{
	file_end(w, XXH3_64bits(content, size));
	end(w, size, 1, all_of_one(XXH3_64bits(content, size)));
}

static void block_ref(struct wire *w, const uint8_t *blocks, size_t n)
{
	uint8_t names[16 * 8];
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++)
		myce_block_name(blocks + i * BLK, (struct myce_blockname *)(names + 16 * i));
	rec(w, 0x13, names, 16 * n);
}

static void block_run(struct wire *w, uint64_t first, uint32_t count)
{
	uint8_t p[12];
	put64(p, first);
	uint32_t be = htobe32(count);
	memcpy(p + 8, &be, 4);
	rec(w, 0x14, p, 12);
}

static void test_refs_protocol(void **state)
{
	struct myce_blockstore *bs;
	struct myce_precopy_tx *tx;
	seed_known(&bs, &tx);
	recv_store = bs;
	static uint8_t want[6 * BLK];
	memcpy(want, known_blocks[7], BLK);
	memcpy(want + BLK, known_blocks[1], 2 * BLK);
	memset(want + 3 * BLK, 0, 2 * BLK);
	memcpy(want + 5 * BLK, "tail", 4);

	/* As docs/stream.md says: a name, a run, a zero run, data. */
	begin_refs(&W, 5 * BLK + 4);
	block_ref(&W, known_blocks[7], 1);
	block_run(&W, 1, 2);
	block_run(&W, UINT64_MAX, 2);
	rec(&W, 0x12, "tail", 4);
	end_refs(&W, want, 5 * BLK + 4);
	_cleanup_free_ char *msg = NULL;
	if (recv_bytes(W.p, W.len, &msg) < 0)
		fail_msg("%s", msg);
	_cleanup_free_ char *path = xasprintf("%s/dst/img/pages-1.img", root);
	size_t got_len;
	_cleanup_free_ char *got = myce_read_file(path, &got_len);
	assert_int_equal(got_len, 5 * BLK + 4);
	assert_memory_equal(got, want, got_len);
	/* The zero block by name resolves too. */
	begin_refs(&W, BLK);
	block_ref(&W, want + 3 * BLK, 1);
	end_refs(&W, want + 3 * BLK, BLK);
	assert_int_equal(recv_bytes(W.p, W.len, NULL), 0);

	static uint8_t unknown[BLK];
	fill_random(unknown, BLK);
	begin_refs(&W, BLK);
	block_ref(&W, unknown, 1);
	end_refs(&W, unknown, BLK);
	assert_recv_fails(W.p, W.len, "is not in the block store");

	begin_refs(&W, BLK);
	block_run(&W, NKNOWN, 1);
	end_refs(&W, unknown, BLK);
	assert_recv_fails(W.p, W.len, "pre-copied block #200 (?) is not in the block store");

	/* A corrupt block in the store. */
	uint8_t *stored = (uint8_t *)myce_blockstore_get(bs, &(struct myce_blockname){ 0 });
	assert_null(stored);
	struct myce_blockname n3;
	myce_block_name(known_blocks[3], &n3);
	stored = (uint8_t *)myce_blockstore_get(bs, &n3);
	stored[4095] ^= 1;
	begin_refs(&W, BLK);
	block_ref(&W, known_blocks[3], 1);
	end_refs(&W, known_blocks[3], BLK);
	assert_recv_fails(W.p, W.len, "is corrupt");
	begin_refs(&W, BLK);
	block_run(&W, 3, 1);
	end_refs(&W, known_blocks[3], BLK);
	assert_recv_fails(W.p, W.len, "is corrupt");
	stored[4095] ^= 1;
	assert_int_equal(recv_bytes(W.p, W.len, NULL), 0);

	begin_refs(&W, BLK);
	rec(&W, 0x13, "0123456789abcde", 15);
	assert_recv_fails(W.p, W.len, "malformed BLOCK_REF");
	begin_refs(&W, BLK);
	block_run(&W, 0, 0);
	assert_recv_fails(W.p, W.len, "malformed BLOCK_RUN");
	begin_refs(&W, BLK);
	block_run(&W, UINT64_MAX - 1, 5); /* wraps */
	assert_recv_fails(W.p, W.len, "malformed BLOCK_RUN");
	begin_refs(&W, 2 * BLK);
	block_run(&W, 0, 3);
	assert_recv_fails(W.p, W.len, "more data than the declared");
	W.len = 0;
	hello(&W, 2, "{}");
	plan(&W, BLK, 1);
	block_run(&W, 0, 1);
	assert_recv_fails(W.p, W.len, "BLOCK_RUN record outside a file");
	/* Pre-copy records have no place in the stream. */
	begin_refs(&W, BLK);
	rec(&W, 0x31, "xx", 2);
	assert_recv_fails(W.p, W.len, "unexpected PRECOPY_BLOCKS record");

	recv_store = NULL;
	begin_refs(&W, 5 * BLK + 4);
	block_run(&W, 1, 2);
	assert_recv_fails(W.p, W.len, "BLOCK_RUN is not supported by this receiver");
	myce_precopy_tx_free(tx);
	myce_blockstore_free(bs);
}

/* Every single-byte corruption of a version 2 stream is detected too. */
static void test_refs_corruption_detected(void **state)
{
	struct myce_blockstore *bs;
	struct myce_precopy_tx *tx;
	seed_known(&bs, &tx);
	_cleanup_free_ char *simg = xasprintf("%s/src/img", root);
	_cleanup_free_ uint8_t *buf = xmalloc(100 * BLK);
	static const struct bspec p1[] = { { 'K', 0, 9 }, { 'Z', 2 }, { 'K', 50, 50 },
					   { 'U', 2 }, { 'K', 20, 24 }, { 'K', 3, 3 } };
	size_t n1 = build_blocks(buf, p1, ARRAY_SIZE(p1));
	write_file(simg, "pages-1.img", buf, n1, 0600);
	write_file(simg, "core-1.img", buf, 777, 0600);
	struct myce_stream_source srcs[] = { { "img", simg, false } };
	size_t len;
	_cleanup_free_ uint8_t *good = capture_ex(srcs, 1, 1, tx, &len);
	recv_store = bs;
	assert_int_equal(recv_bytes(good, len, NULL), 0);
	_cleanup_free_ uint8_t *bad = xmalloc(len);
	size_t tried = 0;
	for (size_t off = 0; off < len; off++) {
		memcpy(bad, good, len);
		bad[off] ^= (off & 1) ? 0x01 : 0x80;
		if (recv_bytes(bad, len, NULL) >= 0) {
			recv_store = NULL;
			fail_msg("flipped byte at offset %zu of %zu went undetected", off, len);
		}
		tried++;
	}
	recv_store = NULL;
	printf("# %zu single-byte corruptions of a %zu-byte version 2 stream, all detected\n",
	       tried, len);
	myce_precopy_tx_free(tx);
	myce_blockstore_free(bs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_level1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_level3, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corruption_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_throughput, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_round_trip_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_round_trip_level1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_corruption_detected, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
