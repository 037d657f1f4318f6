/* Pre-copy without soft-dirty tracking (precopy.h, docs/precopy.md).
 *
 * Sender: each round reads the processes' memory in 8 MiB batches
 * (memread.c), names every non-zero 4 KiB block (XXH3-128), and queues the
 * blocks whose names are not in the known set yet -- adding them at once,
 * so a block seen twice in a round goes once.  A full queue becomes one
 * PRECOPY_BLOCKS record: one zstd frame (or stored) plus a digest of the
 * names, written with one send().  The known set is an open-addressing
 * table of (name, sequence number) that doubles at half load: 2^20 blocks
 * (4 GiB of memory) cost 40 MiB.
 *
 * Receiver: decompresses each record, stores its blocks (the store names
 * them itself) and checks the names against the sender's digest, so the
 * two sides agree on every name and every sequence number before the
 * freeze. */
#include "precopy.h"
#include "memread.h"
#include "stream.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <zstd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define MAGIC "MYCEPCPY"
#define HDR MYCE_STREAM_HDR_LEN
#define BLK MYCE_BLOCK_SIZE
#define BEGIN_LEN (8 + 2 + 4 + 8) /* magic, version, block size, max blocks */
#define BLOCKS_FIXED (1 + 2 + 8)  /* codec, count, digest of the names */
#define END_LEN 16                /* blocks, digest of all names */
#define ACK_LEN 8
#define MAX_RAW ((size_t)MYCE_PRECOPY_MAX_BATCH * BLK)
#define CODEC_RAW 0
#define CODEC_ZSTD 1
#define DRAIN_LOW (64 << 10) /* a round ends when the socket holds less unsent */

/* ---- the known set ------------------------------------------------------------ */

struct tx_slot {
	uint8_t name[16];
	uint32_t seq1; /* sequence number + 1; 0: empty slot */
};

struct myce_precopy_tx {
	struct tx_slot *slots;
	size_t mask, count;
};

static size_t tx_slot_of(const uint8_t *name, size_t mask)
{
	uint64_t h;
	memcpy(&h, name, 8);
	return (size_t)h & mask;
}

struct myce_precopy_tx *myce_precopy_tx_new(void)
{
	struct myce_precopy_tx *tx = xzalloc(sizeof(*tx));
	tx->mask = 4095;
	tx->slots = xzalloc((tx->mask + 1) * sizeof(*tx->slots));
	return tx;
}

void myce_precopy_tx_free(struct myce_precopy_tx *tx)
{
	if (!tx)
		return;
	free(tx->slots);
	free(tx);
}

size_t myce_precopy_tx_count(const struct myce_precopy_tx *tx)
{
	return tx->count;
}

void myce_precopy_tx_clear(struct myce_precopy_tx *tx)
{
	memset(tx->slots, 0, (tx->mask + 1) * sizeof(*tx->slots));
	tx->count = 0;
}

static struct tx_slot *tx_find(const struct myce_precopy_tx *tx, const uint8_t *name)
{
	size_t i = tx_slot_of(name, tx->mask);
	while (tx->slots[i].seq1 && memcmp(tx->slots[i].name, name, 16) != 0)
		i = (i + 1) & tx->mask;
	return &tx->slots[i];
}

bool myce_precopy_tx_lookup(const struct myce_precopy_tx *tx, const struct myce_blockname *name,
			    uint32_t *seq)
{
	const struct tx_slot *s = tx_find(tx, name->b);
	if (!s->seq1)
		return false;
	if (seq)
		*seq = s->seq1 - 1;
	return true;
}

static void tx_grow(struct myce_precopy_tx *tx)
{
	size_t nmask = tx->mask * 2 + 1;
	struct tx_slot *ns = xzalloc((nmask + 1) * sizeof(*ns));
	for (size_t i = 0; i <= tx->mask; i++) {
		if (!tx->slots[i].seq1)
			continue;
		size_t j = tx_slot_of(tx->slots[i].name, nmask);
		while (ns[j].seq1)
			j = (j + 1) & nmask;
		ns[j] = tx->slots[i];
	}
	free(tx->slots);
	tx->slots = ns;
	tx->mask = nmask;
}

uint32_t myce_precopy_tx_add(struct myce_precopy_tx *tx, const struct myce_blockname *name)
{
	struct tx_slot *s = tx_find(tx, name->b);
	if (s->seq1)
		return s->seq1 - 1;
	memcpy(s->name, name->b, 16);
	s->seq1 = (uint32_t)++tx->count;
	if (tx->count * 2 > tx->mask + 1)
		tx_grow(tx);
	return (uint32_t)(tx->count - 1);
}

/* ---- sender ------------------------------------------------------------------- */

struct myce_precopy_opts myce_precopy_opts_default(void)
{
	return (struct myce_precopy_opts){
		.zstd_level = 1,
		.max_rounds = 5,
		.stop_bytes = 1 << 20,
		.stop_fraction = 0.02,
		.min_shrink = 0.25,
		.time_budget_ms = 60000,
		.blocks_per_record = MYCE_PRECOPY_MAX_BATCH,
		.max_blocks = 1 << 20,
		.descendants = true,
	};
}

struct pc_sender {
	int fd;
	bool broken; /* the socket failed: no ABORT possible */
	const struct myce_precopy_opts *o;
	struct myce_precopy_tx *tx;
	struct myce_precopy_report *rep;
	struct myce_precopy_round *cur;
	ZSTD_CCtx *cctx; /* NULL in store mode */
	uint8_t *raw;    /* queued blocks */
	struct myce_blockname *names;
	size_t n;
	uint8_t *out; /* one record */
	XXH3_state_t all; /* names in send order */
	uint64_t limit;   /* blocks the destination takes */
	int64_t t0, deadline_us;
};

static int pc_write(struct pc_sender *s, const void *buf, size_t len, struct myce_error **err)
{
	int r = myce_stream_write_all(s->fd, buf, len);
	if (r < 0) {
		s->broken = true;
		/* The receiver may have said why before it hung up. */
		uint8_t h[HDR + 512];
		ssize_t got = recv(s->fd, h, sizeof(h), MSG_DONTWAIT);
		if (got > HDR && h[0] == MYCE_REC_ABORT) {
			size_t m = myce_get_be(h + 1, 4);
			if (m > (size_t)got - HDR)
				m = (size_t)got - HDR;
			return myce_error_set(err, ECONNABORTED, "precopy: receiver aborted: %.*s",
					      (int)m, (const char *)h + HDR);
		}
		return myce_error_set(err, -r, "precopy: send: %s", strerror(-r));
	}
	s->rep->wire_bytes += len;
	if (s->cur)
		s->cur->wire_bytes += len;
	return 0;
}

static int pc_read_ack(struct pc_sender *s, uint64_t *v, struct myce_error **err)
{
	uint8_t buf[64];
	uint8_t type;
	uint32_t len;
	int r = myce_stream_read_record(s->fd, buf, sizeof(buf), &type, &len, "precopy",
					"receiver", NULL, err);
	if (r < 0) {
		s->broken = true;
		return r;
	}
	if (type != MYCE_REC_PRECOPY_ACK || len != ACK_LEN)
		return myce_error_set(err, EPROTO, "precopy: expected PRECOPY_ACK from the receiver");
	*v = myce_get_be(buf, 8);
	return 0;
}

/* Sends the queued blocks as one PRECOPY_BLOCKS record. */
static int pc_flush(struct pc_sender *s, struct myce_error **err)
{
	if (s->n == 0)
		return 0;
	int64_t t0 = myce_now_us();
	size_t raw_len = s->n * BLK;
	uint8_t *p = s->out + HDR;
	uint8_t *data = p + BLOCKS_FIXED;
	uint8_t codec = CODEC_RAW;
	size_t data_len = raw_len;
	size_t z = s->cctx ? ZSTD_compress2(s->cctx, data, ZSTD_compressBound(MAX_RAW), s->raw,
					    raw_len)
			   : 0;
	if (s->cctx && !ZSTD_isError(z) && z < raw_len) {
		codec = CODEC_ZSTD;
		data_len = z;
	} else {
		memcpy(data, s->raw, raw_len);
	}
	p[0] = codec;
	myce_put_be(p + 1, s->n, 2);
	myce_put_be(p + 3, XXH3_64bits(s->names, s->n * sizeof(*s->names)), 8);
	myce_stream_put_header(s->out, MYCE_REC_PRECOPY_BLOCKS, (uint32_t)(BLOCKS_FIXED + data_len));
	int r = pc_write(s, s->out, HDR + BLOCKS_FIXED + data_len, err);
	s->n = 0;
	s->cur->send_us += myce_now_us() - t0;
	if (r == 0 && s->o->progress)
		s->o->progress(s->o->ud, s->rep);
	return r;
}

/* Waits until the socket has (almost) sent what we wrote: a round is over
 * when its bytes are on the wire, not in a multi-megabyte send buffer, so
 * the next round (or the freeze) reads memory as late as possible and the
 * stopping rule sees the link's real speed.  Not a socket: no wait. */
static void pc_drain(struct pc_sender *s)
{
	for (;;) {
		int unsent;
		if (ioctl(s->fd, SIOCOUTQ, &unsent) < 0 || unsent <= DRAIN_LOW)
			return;
		if (s->deadline_us && myce_now_us() >= s->deadline_us)
			return;
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* The processes of this round: pids, and their descendants if asked. */
static void round_pids(const struct myce_precopy_opts *o, const pid_t *pids, size_t npids,
		       pid_t **out, size_t *n)
{
	pid_t *v = NULL;
	size_t cnt = 0, cap = 0;
	for (size_t i = 0; i < npids; i++) {
		pid_t *tree = NULL;
		size_t nt = 0;
		if (!o->descendants || myce_memread_tree(pids[i], &tree, &nt, NULL) < 0) {
			free(tree);
			tree = xmalloc(sizeof(*tree));
			tree[0] = pids[i];
			nt = 1;
		}
		for (size_t k = 0; k < nt; k++) {
			bool dup = false;
			for (size_t j = 0; j < cnt && !dup; j++)
				dup = v[j] == tree[k];
			if (dup)
				continue;
			if (cnt == cap) {
				cap = cap ? 2 * cap : 16;
				v = xrealloc(v, cap * sizeof(*v));
			}
			v[cnt++] = tree[k];
		}
		free(tree);
	}
	*out = v;
	*n = cnt;
}

/* One round.  Returns 0, 1 if it had to stop early (rep->stop says why), or
 * a negative errno. */
static int pc_round(struct pc_sender *s, const pid_t *pids, size_t npids, struct myce_error **err)
{
	struct myce_precopy_round *rd = s->cur;
	int64_t t_round = myce_now_us();
	int64_t t = t_round;
	_cleanup_free_ pid_t *procs = NULL;
	size_t nprocs = 0;
	round_pids(s->o, pids, npids, &procs, &nprocs);
	rd->read_us += myce_now_us() - t;
	int ret = 0;
	for (size_t i = 0; i < nprocs && ret == 0; i++) {
		struct myce_memread *mr = myce_memread_new(procs[i], 0);
		t = myce_now_us();
		int r = myce_memread_begin(mr, err);
		struct myce_membatch b;
		while (r >= 0 && (r = myce_memread_next(mr, &b, err)) > 0) {
			int64_t t1 = myce_now_us();
			rd->read_us += t1 - t;
			int64_t sent_before = rd->send_us;
			rd->scanned_blocks += b.n;
			for (size_t k = 0; k < b.n && ret == 0; k++) {
				struct myce_blockname name;
				myce_block_name(b.block[k], &name);
				if (myce_precopy_tx_lookup(s->tx, &name, NULL))
					continue;
				if (s->tx->count >= s->limit) {
					s->rep->stop = "block limit";
					ret = 1;
					break;
				}
				myce_precopy_tx_add(s->tx, &name);
				XXH3_64bits_update(&s->all, name.b, 16);
				memcpy(s->raw + s->n * BLK, b.block[k], BLK);
				s->names[s->n++] = name;
				rd->new_blocks++;
				rd->raw_bytes += BLK;
				s->rep->blocks_sent++;
				s->rep->raw_bytes += BLK;
				if (s->n < s->o->blocks_per_record)
					continue;
				if ((r = pc_flush(s, err)) < 0)
					break;
				if (s->deadline_us && myce_now_us() >= s->deadline_us) {
					s->rep->stop = "time budget";
					ret = 1;
				}
			}
			t = myce_now_us();
			rd->hash_us += (t - t1) - (rd->send_us - sent_before);
			if (r < 0)
				break;
			if (ret == 0 && s->deadline_us && t >= s->deadline_us) {
				s->rep->stop = "time budget";
				ret = 1;
			}
			if (ret)
				break;
		}
		const struct myce_memread_stats *ms = myce_memread_stats(mr);
		rd->zero_blocks += ms->zero_blocks;
		rd->vanished_bytes += ms->vanished_bytes;
		rd->processes += !ms->gone;
		myce_memread_free(mr);
		if (r < 0)
			return myce_error_wrap(err, "precopy: pid %d", (int)procs[i]);
	}
	int r = pc_flush(s, err);
	if (r == 0) {
		int64_t t_drain = myce_now_us();
		pc_drain(s);
		rd->send_us += myce_now_us() - t_drain;
	}
	rd->elapsed_us = myce_now_us() - t_round;
	if (r < 0)
		return r;
	if (s->o->progress)
		s->o->progress(s->o->ud, s->rep);
	return ret;
}

static int check_opts(const struct myce_precopy_opts *o, struct myce_error **err)
{
	if (o->zstd_level < ZSTD_minCLevel() || o->zstd_level > ZSTD_maxCLevel())
		return myce_error_set(err, EINVAL, "precopy: bad zstd level %d", o->zstd_level);
	if (o->max_rounds < 1 || o->max_rounds > MYCE_PRECOPY_MAX_ROUNDS)
		return myce_error_set(err, EINVAL, "precopy: max_rounds must be 1..%d",
				      MYCE_PRECOPY_MAX_ROUNDS);
	if (o->blocks_per_record < 1 || o->blocks_per_record > MYCE_PRECOPY_MAX_BATCH)
		return myce_error_set(err, EINVAL, "precopy: blocks_per_record must be 1..%d",
				      MYCE_PRECOPY_MAX_BATCH);
	if (o->max_blocks < 1 || o->max_blocks > UINT32_MAX - 1)
		return myce_error_set(err, EINVAL, "precopy: bad max_blocks");
	return 0;
}

/* BEGIN, its answer, the rounds, END, its answer. */
static int pc_run(struct pc_sender *s, const pid_t *pids, size_t npids, struct myce_error **err)
{
	const struct myce_precopy_opts *o = s->o;
	uint8_t rec[HDR + BEGIN_LEN];
	myce_stream_put_header(rec, MYCE_REC_PRECOPY_BEGIN, BEGIN_LEN);
	memcpy(rec + HDR, MAGIC, 8);
	myce_put_be(rec + HDR + 8, MYCE_PRECOPY_VERSION, 2);
	myce_put_be(rec + HDR + 10, BLK, 4);
	myce_put_be(rec + HDR + 14, o->max_blocks, 8);
	uint64_t room;
	int r = pc_write(s, rec, sizeof(rec), err);
	if (r < 0 || (r = pc_read_ack(s, &room, err)) < 0)
		return r;
	s->limit = room < o->max_blocks ? room : o->max_blocks;

	uint64_t prev = 0;
	while (!s->rep->stop) {
		s->cur = &s->rep->round[s->rep->rounds++];
		r = pc_round(s, pids, npids, err);
		if (r < 0)
			return r;
		if (r > 0)
			break;
		const struct myce_precopy_round *rd = s->cur;
		double frac = o->stop_fraction * (double)(rd->scanned_blocks * BLK);
		uint64_t threshold = o->stop_bytes > frac ? o->stop_bytes : (uint64_t)frac;
		if (rd->raw_bytes <= threshold)
			s->rep->stop = "converged";
		else if (s->rep->rounds > 1 &&
			 (double)rd->raw_bytes > (1.0 - o->min_shrink) * (double)prev)
			s->rep->stop = "not converging";
		else if (s->rep->rounds >= o->max_rounds)
			s->rep->stop = "max rounds";
		else if (s->deadline_us && myce_now_us() >= s->deadline_us)
			s->rep->stop = "time budget";
		prev = rd->raw_bytes;
	}
	s->cur = NULL;

	uint8_t end[HDR + END_LEN];
	myce_stream_put_header(end, MYCE_REC_PRECOPY_END, END_LEN);
	myce_put_be(end + HDR, s->tx->count, 8);
	myce_put_be(end + HDR + 8, XXH3_64bits_digest(&s->all), 8);
	uint64_t held;
	if ((r = pc_write(s, end, sizeof(end), err)) < 0 || (r = pc_read_ack(s, &held, err)) < 0)
		return r;
	if (held != s->tx->count)
		return myce_error_set(err, EPROTO,
				      "precopy: the receiver acknowledged %" PRIu64 " blocks of %zu",
				      held, s->tx->count);
	return 0;
}

int myce_precopy_send(int fd, struct myce_precopy_tx *tx, const pid_t *pids, size_t npids,
		      const struct myce_precopy_opts *opts, struct myce_precopy_report *rep,
		      struct myce_error **err)
{
	struct myce_precopy_opts defaults = myce_precopy_opts_default();
	struct myce_precopy_report local;
	if (!opts)
		opts = &defaults;
	if (!rep)
		rep = &local;
	*rep = (struct myce_precopy_report){ 0 };
	myce_precopy_tx_clear(tx);
	int r = check_opts(opts, err);
	if (r < 0)
		return r;

	_cleanup_error_ struct myce_error *e = NULL;
	struct pc_sender s = {
		.fd = fd,
		.o = opts,
		.tx = tx,
		.rep = rep,
		.raw = xmalloc(MAX_RAW),
		.names = xmalloc(MYCE_PRECOPY_MAX_BATCH * sizeof(struct myce_blockname)),
		.out = xmalloc(HDR + BLOCKS_FIXED + ZSTD_compressBound(MAX_RAW)),
		.t0 = myce_now_us(),
	};
	if (opts->time_budget_ms > 0)
		s.deadline_us = s.t0 + opts->time_budget_ms * 1000;
	if (opts->zstd_level != 0) {
		s.cctx = ZSTD_createCCtx();
		if (!s.cctx)
			abort();
		ZSTD_CCtx_setParameter(s.cctx, ZSTD_c_compressionLevel, opts->zstd_level);
	}
	XXH3_64bits_reset(&s.all);

	r = pc_run(&s, pids, npids, &e);

	if (r < 0) {
		myce_precopy_tx_clear(tx);
		if (!s.broken)
			myce_stream_send_abort(fd, myce_error_msg(e));
		myce_error_set(err, e ? e->code : EIO, "%s", myce_error_msg(e));
	}
	rep->elapsed_us = myce_now_us() - s.t0;
	ZSTD_freeCCtx(s.cctx);
	free(s.raw);
	free(s.names);
	free(s.out);
	return r;
}

/* ---- receiver ----------------------------------------------------------------- */

struct pc_receiver {
	int fd;
	struct myce_blockstore *bs;
	struct myce_precopy_recv_stats *st;
	uint8_t *buf; /* record payload */
	uint8_t *raw; /* decompressed blocks */
	ZSTD_DCtx *dctx;
	XXH3_state_t all;
	bool replied_broken;
};

static int pr_ack(struct pc_receiver *r, uint64_t v, struct myce_error **err)
{
	uint8_t rec[HDR + ACK_LEN];
	myce_stream_put_header(rec, MYCE_REC_PRECOPY_ACK, ACK_LEN);
	myce_put_be(rec + HDR, v, 8);
	int ret = myce_stream_write_all(r->fd, rec, sizeof(rec));
	if (ret < 0) {
		r->replied_broken = true;
		return myce_error_set(err, -ret, "precopy: send: %s", strerror(-ret));
	}
	r->st->wire_bytes += sizeof(rec);
	return 0;
}

static int pr_blocks(struct pc_receiver *r, uint32_t len, struct myce_error **err)
{
	if (len < BLOCKS_FIXED)
		return myce_error_set(err, EPROTO, "precopy: malformed PRECOPY_BLOCKS record");
	uint8_t codec = r->buf[0];
	size_t n = myce_get_be(r->buf + 1, 2);
	uint64_t digest = myce_get_be(r->buf + 3, 8);
	const uint8_t *data = r->buf + BLOCKS_FIXED;
	size_t dlen = len - BLOCKS_FIXED;
	if (n < 1 || n > MYCE_PRECOPY_MAX_BATCH || codec > CODEC_ZSTD ||
	    (codec == CODEC_RAW && dlen != n * BLK))
		return myce_error_set(err, EPROTO, "precopy: malformed PRECOPY_BLOCKS record");
	if (codec == CODEC_ZSTD) {
		size_t z = ZSTD_decompressDCtx(r->dctx, r->raw, n * BLK, data, dlen);
		if (ZSTD_isError(z) || z != n * BLK)
			return myce_error_set(err, EBADMSG, "precopy: bad compressed blocks: %s",
					      ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong size");
		data = r->raw;
	}
	XXH3_state_t names;
	XXH3_64bits_reset(&names);
	for (size_t i = 0; i < n; i++) {
		struct myce_blockname name;
		int ret = myce_blockstore_put(r->bs, data + i * BLK, &name);
		if (ret == -ENOSPC)
			return myce_error_set(err, ENOSPC,
					      "precopy: block store full (%zu blocks)",
					      myce_blockstore_capacity(r->bs));
		if (ret < 0)
			return myce_error_set(err, EPROTO, "precopy: the sender sent a zero block");
		XXH3_64bits_update(&names, name.b, 16);
		XXH3_64bits_update(&r->all, name.b, 16);
		r->st->new_blocks += ret;
	}
	if (XXH3_64bits_digest(&names) != digest)
		return myce_error_set(err, EBADMSG,
				      "precopy: record %" PRIu64 ": blocks do not match their names "
				      "(corrupted in transit)",
				      r->st->records + 1);
	r->st->records++;
	r->st->blocks += n;
	return 0;
}

static int pr_run(struct pc_receiver *r, struct myce_error **err)
{
	uint8_t type;
	uint32_t len;
	int ret = myce_stream_read_record(r->fd, r->buf, MYCE_STREAM_MAX_PAYLOAD, &type, &len,
					  "precopy", "sender", &r->st->wire_bytes, err);
	if (ret < 0)
		return ret;
	if (type != MYCE_REC_PRECOPY_BEGIN || len != BEGIN_LEN || memcmp(r->buf, MAGIC, 8) != 0)
		return myce_error_set(err, EPROTO, "precopy: expected PRECOPY_BEGIN");
	uint16_t version = myce_get_be(r->buf + 8, 2);
	if (version != MYCE_PRECOPY_VERSION)
		return myce_error_set(err, EPROTONOSUPPORT, "precopy: version %u not supported",
				      version);
	if (myce_get_be(r->buf + 10, 4) != BLK)
		return myce_error_set(err, EPROTO, "precopy: block size %" PRIu64 " not supported",
				      myce_get_be(r->buf + 10, 4));
	myce_blockstore_seq_reset(r->bs);
	size_t room = myce_blockstore_capacity(r->bs) - myce_blockstore_count(r->bs);
	if ((ret = pr_ack(r, room, err)) < 0)
		return ret;
	for (;;) {
		ret = myce_stream_read_record(r->fd, r->buf, MYCE_STREAM_MAX_PAYLOAD, &type, &len,
					      "precopy", "sender", &r->st->wire_bytes, err);
		if (ret < 0)
			return ret;
		if (type == MYCE_REC_PRECOPY_BLOCKS) {
			if ((ret = pr_blocks(r, len, err)) < 0)
				return ret;
			continue;
		}
		if (type != MYCE_REC_PRECOPY_END || len != END_LEN)
			return myce_error_set(err, EPROTO, "precopy: unexpected record 0x%02x", type);
		if (myce_get_be(r->buf, 8) != r->st->blocks)
			return myce_error_set(err, EBADMSG,
					      "precopy: received %" PRIu64 " blocks, the sender "
					      "sent %" PRIu64,
					      r->st->blocks, myce_get_be(r->buf, 8));
		if (myce_get_be(r->buf + 8, 8) != XXH3_64bits_digest(&r->all))
			return myce_error_set(err, EBADMSG, "precopy: block names checksum mismatch");
		return pr_ack(r, r->st->blocks, err);
	}
}

int myce_precopy_recv(int fd, struct myce_blockstore *bs, struct myce_precopy_recv_stats *st,
		      struct myce_error **err)
{
	struct myce_precopy_recv_stats local;
	if (!st)
		st = &local;
	*st = (struct myce_precopy_recv_stats){ 0 };
	int64_t t0 = myce_now_us();
	struct pc_receiver r = {
		.fd = fd,
		.bs = bs,
		.st = st,
		.buf = xmalloc(MYCE_STREAM_MAX_PAYLOAD),
		.raw = xmalloc(MAX_RAW),
		.dctx = ZSTD_createDCtx(),
	};
	if (!r.dctx)
		abort();
	XXH3_64bits_reset(&r.all);
	_cleanup_error_ struct myce_error *e = NULL;
	int ret = pr_run(&r, &e);
	if (ret < 0) {
		/* Tell the sender why (unless it is the one who aborted). */
		if (!r.replied_broken && e && e->code != ECONNABORTED)
			myce_stream_send_abort(fd, myce_error_msg(e));
		myce_error_set(err, e ? e->code : EIO, "%s", myce_error_msg(e));
	}
	st->elapsed_us = myce_now_us() - t0;
	ZSTD_freeDCtx(r.dctx);
	free(r.buf);
	free(r.raw);
	return ret;
}
