/* The key/value sensor (Redis, memcached): one connection kept open, one
 * write per tick, each sent only after the previous one was answered, so a
 * silence on the connection is the server's pause.  On a broken connection
 * it reconnects and goes on; at the end it reads every acknowledged key back
 * over a new connection. */
#include "loadgen.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

/* Keys per read-back request. */
#define KV_VERIFY_BATCH 500

struct kv_run_state {
	struct lg_ctx *ctx;
	const struct kv_proto *proto;
	struct lg_records rec;
	int fd;
	uint32_t conn; /* generation of fd */
	struct net_buf in;
	uint64_t resets; /* connections lost while writing: RST, EOF, timeout, garbage */
	uint64_t reconnects, connect_failures, protocol_errors;
};

static char *kv_key(const struct lg_config *cfg, uint64_t seq)
{
	return xasprintf("%s:%llu", cfg->prefix, (unsigned long long)seq);
}

/* Tries to connect until `until` (monotonic); 0, or the last failure's error. */
static int kv_connect_until(struct kv_run_state *s, int64_t until, struct myce_error **err)
{
	const struct lg_config *cfg = s->ctx->cfg;
	for (;;) {
		myce_error_freep(err);
		int64_t left = until - myce_now_us();
		int fd = left > 0 ? net_connect(&cfg->sa, cfg->sa_len, left, s->ctx->sig_fd, err)
				  : myce_error_set(err, ETIMEDOUT, "connect: timed out");
		if (fd >= 0) {
			s->fd = fd;
			s->conn++;
			s->in.len = 0;
			return 0;
		}
		s->connect_failures++;
		if (fd == -EINTR)
			return fd;
		enum net_wait w = net_wait(-1, 0, myce_now_us() + LG_RECONNECT_DELAY_US, s->ctx->sig_fd);
		if (w == NET_STOP)
			return myce_error_set(err, EINTR, "connect: stopped");
		if (myce_now_us() >= until)
			return myce_error_wrap(err, "%s", cfg->addr);
	}
}

static void kv_close(struct kv_run_state *s)
{
	closep(&s->fd);
	s->in.len = 0;
}

/* Sends request seq and waits for its outcome.  Returns false when the run must stop. */
static bool kv_request(struct kv_run_state *s)
{
	struct lg_ctx *ctx = s->ctx;
	uint64_t seq = lg_records_add(&s->rec, s->conn);
	_cleanup_free_ char *key = kv_key(ctx->cfg, seq);
	_cleanup_free_ char *val = sensor_value(seq, s->rec.v[seq].send_us);
	struct net_buf out = {0};
	s->proto->encode_set(&out, key, val);

	int64_t timeout_at = myce_now_us() + LG_REPLY_TIMEOUT_US;
	int64_t until = lg_ctx_until(ctx, timeout_at);
	int r = net_send_all(s->fd, out.data, out.len, until, ctx->sig_fd);
	net_buf_free(&out);
	while (r == 0) {
		bool ok = false;
		ssize_t used = s->proto->parse_set_reply(s->in.data ? s->in.data : "", s->in.len, &ok);
		if (used > 0) {
			net_buf_consume(&s->in, (size_t)used);
			lg_records_finish(&s->rec, seq, ok ? LG_OK : LG_ERROR);
			if (ok)
				lg_ctx_mark_ready(ctx);
			else
				log_debug("set %s: error reply", key);
			return true;
		}
		if (used < 0) {
			s->protocol_errors++;
			log_warn("%s: unexpected reply to set %s; reconnecting", s->proto->name, key);
			lg_records_finish(&s->rec, seq, LG_ERROR);
			s->resets++;
			kv_close(s);
			return true;
		}
		r = net_recv_some(s->fd, &s->in, until, ctx->sig_fd);
		if (r > 0)
			r = 0;
	}
	if (r == -EINTR || (r == -ETIMEDOUT && until < timeout_at)) {
		/* Stopped (signal or end of the run) while waiting. */
		lg_records_finish(&s->rec, seq, LG_UNANSWERED);
		return false;
	}
	lg_records_finish(&s->rec, seq, r == -ETIMEDOUT ? LG_TIMEOUT : LG_RESET);
	log_info("%s: connection lost at seq %llu (%s); reconnecting", s->proto->name,
		 (unsigned long long)seq, r == -EPIPE ? "closed by the server" : strerror(-r));
	s->resets++;
	kv_close(s);
	return true;
}

/* The write phase: until the deadline or a signal. */
static void kv_write_loop(struct kv_run_state *s)
{
	struct lg_ctx *ctx = s->ctx;
	const int64_t interval = ctx->cfg->interval_us;
	int64_t next = myce_now_us();
	for (;;) {
		if (net_wait(-1, 0, lg_ctx_until(ctx, next), ctx->sig_fd) == NET_STOP)
			return;
		if (ctx->deadline_us && myce_now_us() >= ctx->deadline_us)
			return;
		if (s->fd < 0) {
			_cleanup_error_ struct myce_error *err = NULL;
			int64_t until = lg_ctx_until(ctx, myce_now_us() + LG_REPLY_TIMEOUT_US);
			if (kv_connect_until(s, until, &err) < 0) {
				if (err && err->code == EINTR)
					return;
				log_warn("%s", myce_error_msg(err));
				next = myce_now_us();
				continue;
			}
			s->reconnects++;
			log_info("%s: reconnected", s->proto->name);
		}
		int64_t sent = myce_now_us();
		if (!kv_request(s))
			return;
		/* The next tick after this send (on the run's grid); if it has
		 * passed already, send at once: late requests are not bunched. */
		int64_t since = sent - s->rec.mono0_us;
		next = s->rec.mono0_us + (since / interval + 1) * interval;
	}
}

/* Reads back every acknowledged key over a new connection. */
static int kv_verify(struct kv_run_state *s, struct lg_report *rep, struct myce_error **err)
{
	struct lg_ctx *ctx = s->ctx;
	uint64_t acked = 0, checked = 0, missing = 0, wrong = 0;
	for (size_t i = 0; i < s->rec.n; i++)
		acked += s->rec.v[i].outcome == LG_OK;

	int r = 0;
	if (acked > 0)
		r = kv_connect_until(s, myce_now_us() + LG_REPLY_TIMEOUT_US, err);
	size_t i = 0;
	while (r == 0 && checked < acked) {
		char *keys[KV_VERIFY_BATCH];
		char *vals[KV_VERIFY_BATCH] = {0};
		uint64_t seqs[KV_VERIFY_BATCH];
		size_t n = 0;
		for (; i < s->rec.n && n < KV_VERIFY_BATCH; i++) {
			if (s->rec.v[i].outcome != LG_OK)
				continue;
			seqs[n] = i;
			keys[n++] = kv_key(ctx->cfg, i);
		}
		struct net_buf out = {0};
		s->proto->encode_get(&out, keys, n);
		int64_t until = myce_now_us() + LG_REPLY_TIMEOUT_US;
		r = net_send_all(s->fd, out.data, out.len, until, ctx->sig_fd);
		net_buf_free(&out);
		ssize_t used = 0;
		while (r == 0) {
			used = s->proto->parse_get_reply(s->in.data ? s->in.data : "", s->in.len, keys, n,
							 vals);
			if (used != 0)
				break;
			r = net_recv_some(s->fd, &s->in, until, ctx->sig_fd);
			if (r > 0)
				r = 0;
		}
		if (r == 0 && used < 0)
			r = myce_error_set(err, EPROTO, "unexpected reply to the read-back");
		else if (r < 0)
			r = myce_error_set(err, -r, "read-back: %s",
					   r == -EINTR ? "interrupted" : strerror(-r));
		else
			net_buf_consume(&s->in, (size_t)used);
		for (size_t k = 0; k < n; k++) {
			if (r == 0) {
				_cleanup_free_ char *want = sensor_value(seqs[k], s->rec.v[seqs[k]].send_us);
				if (!vals[k]) {
					missing++;
					log_debug("missing %s", keys[k]);
				} else if (strcmp(vals[k], want) != 0) {
					wrong++;
					log_debug("wrong %s: '%s' instead of '%s'", keys[k], vals[k], want);
				}
			}
			free(keys[k]);
			free(vals[k]);
		}
		if (r == 0)
			checked += n;
	}
	kv_close(s);
	lg_report_int(rep, "missing", (int64_t)missing);
	lg_report_int(rep, "wrong", (int64_t)wrong);
	lg_report_bool(rep, "verified", r == 0);
	lg_report_int(rep, "unverified", (int64_t)(acked - checked));
	if (r < 0)
		return myce_error_wrap(err, "verify");
	return 0;
}

int kv_run(struct lg_ctx *ctx, const struct kv_proto *proto, struct lg_report *rep,
	   struct myce_error **err)
{
	struct kv_run_state s = {.ctx = ctx, .proto = proto, .fd = -1};
	lg_records_init(&s.rec);
	int r = kv_connect_until(&s, lg_ctx_until(ctx, myce_now_us() + LG_FIRST_CONNECT_US), err);
	if (r < 0) {
		lg_records_free(&s.rec);
		return myce_error_wrap(err, "%s server never reachable", proto->name);
	}
	ctx->ever_connected = true;

	struct lg_probe *probe = NULL;
	_cleanup_error_ struct myce_error *perr = NULL;
	if (lg_probe_start(ctx->cfg, s.rec.mono0_us, &probe, &perr) < 0)
		log_warn("probe: %s", myce_error_msg(perr));

	kv_write_loop(&s);
	int64_t end_us = lg_records_now(&s.rec);
	int64_t end_mono = myce_now_us();
	kv_close(&s);
	lg_probe_stop(probe);
	lg_ctx_stopped(ctx);

	struct lg_stats st;
	lg_records_stats(&s.rec, end_us, &st);
	lg_report_str(rep, "mode", proto->name);
	lg_report_str(rep, "addr", ctx->cfg->addr);
	lg_report_int(rep, "start_unix_us", s.rec.wall0_us);
	lg_report_ms(rep, "duration_ms", (double)(end_mono - s.rec.mono0_us) / 1000.0);
	lg_report_stats(rep, &st);
	lg_report_int(rep, "resets", (int64_t)s.resets);
	lg_report_int(rep, "reconnects", (int64_t)s.reconnects);
	lg_report_int(rep, "connect_failures", (int64_t)s.connect_failures);
	lg_report_int(rep, "protocol_errors", (int64_t)s.protocol_errors);

	_cleanup_error_ struct myce_error *verr = NULL;
	if (kv_verify(&s, rep, &verr) < 0) {
		log_error("%s", myce_error_msg(verr));
		lg_report_str(rep, "verify_error", myce_error_msg(verr));
	}
	lg_probe_report_free(probe, rep);

	if (ctx->cfg->trace_path) {
		_cleanup_error_ struct myce_error *terr = NULL;
		if (lg_records_write_trace(&s.rec, ctx->cfg->trace_path, &terr) < 0)
			log_error("%s", myce_error_msg(terr));
	}
	net_buf_free(&s.in);
	lg_records_free(&s.rec);
	return 0;
}
