/* The source side of a live migration, driven by the coordinator:
 * handshake with the destination node (it prepares guard, addresses and
 * routes while the application still serves), freeze + dump through the
 * agent, hand-off request to the coordinator in parallel with the stream,
 * then the destination's restore answer.  Everything the coordinator needs
 * comes back in one JSON answer with per-phase timings. */
#include "node.h"

#include "agentctl.h"
#include "cluster.h"
#include "frame.h"
#include "log.h"
#include "memread.h"
#include "precopy.h"
#include "stream.h"
#include "util.h"
#include "warmmem.h"

#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

static void txp(struct myce_precopy_tx **t)
{
	myce_precopy_tx_free(*t);
}
#define _cleanup_precopy_tx_ __attribute__((cleanup(txp)))

struct handoff_call {
	struct node *n;
	long mid;
	pthread_t thread;
	bool started;
	int status;
	double ms;
	char *error;
};

/* Asks the coordinator to route the carried addresses to the destination:
 * runs while the checkpoint streams, so it costs no freeze time. */
static void *handoff_thread(void *arg)
{
	struct handoff_call *h = arg;
	_cleanup_free_ char *url = xasprintf("%s/v1/migrations/%ld/handoff", h->n->coord_url, h->mid);
	_cleanup_error_ struct myce_error *e = NULL;
	int64_t t0 = myce_now_us();
	h->status = myce_http_call_ca("POST", url, h->n->token, h->n->ca_file, NULL, 10000, NULL, &e);
	h->ms = (double)(myce_now_us() - t0) / 1000.0;
	if (h->status != 200)
		h->error = xstrdup(myce_error_msg(e));
	return NULL;
}

struct progress_ctx {
	struct node *n;
	long mid;
};

static void on_progress(void *ud, uint64_t raw_done, uint64_t raw_total, uint64_t wire_done)
{
	struct progress_ctx *c = ud;
	pthread_mutex_lock(&c->n->lock);
	for (struct transfer *t = c->n->transfers; t; t = t->next) {
		if (t->migration_id == c->mid) {
			t->raw_done = raw_done;
			t->raw_total = raw_total;
			t->wire_done = wire_done;
		}
	}
	pthread_mutex_unlock(&c->n->lock);
}

static void transfer_track(struct node *n, long mid, bool add)
{
	pthread_mutex_lock(&n->lock);
	if (add) {
		struct transfer *t = xzalloc(sizeof(*t));
		t->migration_id = mid;
		t->next = n->transfers;
		n->transfers = t;
	} else {
		for (struct transfer **pp = &n->transfers; *pp; pp = &(*pp)->next) {
			if ((*pp)->migration_id == mid) {
				struct transfer *t = *pp;
				*pp = t->next;
				free(t);
				break;
			}
		}
	}
	pthread_mutex_unlock(&n->lock);
}

cJSON *node_transfer_get(struct node *n, long mid)
{
	cJSON *o = NULL;
	pthread_mutex_lock(&n->lock);
	for (struct transfer *t = n->transfers; t; t = t->next) {
		if (t->migration_id == mid) {
			o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "raw_done", (double)t->raw_done);
			cJSON_AddNumberToObject(o, "raw_total", (double)t->raw_total);
			cJSON_AddNumberToObject(o, "wire_done", (double)t->wire_done);
		}
	}
	pthread_mutex_unlock(&n->lock);
	return o;
}

/* Sends padding for at most ~250 ms or 4 MiB, then waits until the
 * destination has drained it: the link's queue is empty and the window
 * open when the dump starts.  Failures here only cost the warm-up. */
/* Ends a warm-up: says whether a pre-copy follows and waits until the
 * destination has drained everything.  Auto mode sends a second one (with
 * no padding before it) when it decides for pre-copy after measuring. */
static void warm_up_done(int fd, bool precopy_follows, struct myce_error **err)
{
	_cleanup_json_ cJSON *done = cJSON_CreateObject();
	cJSON_AddStringToObject(done, "op", "warmup-done");
	cJSON_AddBoolToObject(done, "precopy", precopy_follows);
	_cleanup_json_ cJSON *ack = NULL;
	if (myce_frame_send(fd, done, err) == 0)
		myce_frame_recv(fd, 60000, &ack, err);
}

static uint64_t warm_up(int fd, bool precopy_follows, struct myce_error **err)
{
	static const char pad[16384];
	uint64_t sent = 0;
	int64_t start = myce_now_us(), end = start + 250 * 1000;
	while (sent < 4u << 20 && myce_now_us() < end) {
		/* Keep no more queued than ~100 ms of what the link carried so
		 * far: enough for the window to grow, and a slow link is not left
		 * draining seconds of padding once we stop. */
		int outq = 0;
		if (ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0) {
			double secs = (double)(myce_now_us() - start) / 1e6;
			double carried = (double)sent - outq;
			double allow = secs > 0 ? carried / secs * 0.1 : 0;
			if (outq > 65536 && outq > allow) {
				usleep(1000);
				continue;
			}
		}
		_cleanup_json_ cJSON *h = cJSON_CreateObject();
		cJSON_AddStringToObject(h, "op", "warmup");
		cJSON_AddNumberToObject(h, "bytes", sizeof(pad));
		if (myce_frame_send(fd, h, err) < 0 || myce_write_full(fd, pad, sizeof(pad)) < 0)
			return sent;
		sent += sizeof(pad);
	}
	warm_up_done(fd, precopy_follows, err);
	return sent;
}

static double proc_rss_bytes(pid_t pid)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/status", (int)pid);
	_cleanup_free_ char *s = myce_read_file(path, NULL);
	const char *p = s ? strstr(s, "VmRSS:") : NULL;
	return p ? atof(p + 6) * 1024 : 0;
}

static void fail(cJSON *out, const char *phase, bool dumped, const char *msg)
{
	cJSON_AddBoolToObject(out, "ok", false);
	cJSON_AddStringToObject(out, "failed_phase", phase);
	cJSON_AddBoolToObject(out, "dumped", dumped);
	cJSON_AddStringToObject(out, "error", msg);
	log_error("migration: %s failed: %s", phase, msg);
}

static void copy_num(cJSON *dst, const char *dkey, const cJSON *src, const char *skey)
{
	cJSON_AddNumberToObject(dst, dkey, myce_json_num(src, skey, 0));
}

static void record_send(struct node *n, long mid, const cJSON *result)
{
	pthread_mutex_lock(&n->lock);
	struct send_record *r = n->sends;
	while (r && r->migration_id != mid)
		r = r->next;
	if (!r) {
		r = xzalloc(sizeof(*r));
		r->migration_id = mid;
		r->next = n->sends;
		n->sends = r;
	}
	cJSON_Delete(r->result);
	r->result = result ? cJSON_Duplicate(result, true) : NULL;
	pthread_mutex_unlock(&n->lock);
}

cJSON *node_send_record(struct node *n, long mid)
{
	cJSON *o = NULL;
	pthread_mutex_lock(&n->lock);
	for (struct send_record *r = n->sends; r; r = r->next) {
		if (r->migration_id != mid)
			continue;
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "state", r->result ? "done" : "running");
		if (r->result)
			cJSON_AddItemToObject(o, "result", cJSON_Duplicate(r->result, true));
	}
	pthread_mutex_unlock(&n->lock);
	return o;
}

static void send_migration(struct node *n, long pod_id, const cJSON *req, struct myce_http_resp *resp);

void node_send(struct node *n, long pod_id, const cJSON *req, struct myce_http_resp *resp)
{
	long mid = (long)myce_json_num(req, "migration_id", -1);
	if (mid >= 0)
		record_send(n, mid, NULL);
	send_migration(n, pod_id, req, resp);
	if (mid >= 0) {
		if (resp->status == 200 && resp->json) {
			record_send(n, mid, resp->json);
		} else {
			/* Refused before anything happened: the source still serves. */
			_cleanup_json_ cJSON *r = cJSON_CreateObject();
			cJSON_AddBoolToObject(r, "ok", false);
			cJSON_AddBoolToObject(r, "dumped", false);
			cJSON_AddStringToObject(r, "failed_phase", "prepare");
			record_send(n, mid, r);
		}
	}
}

static void send_migration(struct node *n, long pod_id, const cJSON *req, struct myce_http_resp *resp)
{
	long mid = (long)myce_json_num(req, "migration_id", -1);
	const char *dest_ip = myce_json_str(req, "dest_ip");
	long dest_pod = (long)myce_json_num(req, "dest_pod_id", -1);
	const cJSON *carried = cJSON_GetObjectItem(req, "carried");
	int level = (int)myce_json_num(req, "zstd_level", 1);
	bool tcp_close = myce_json_bool(req, "tcp_close", false);
	if (mid < 0 || !dest_ip || dest_pod < 0 || !cJSON_IsArray(carried))
		return myce_http_error(resp, 400, "send needs migration_id, dest_ip, dest_pod_id, carried");
	pthread_mutex_lock(&n->lock);
	struct pod *p = pod_find(n, pod_id);
	pid_t agent_pid = p ? p->agent_pid : 0;
	pthread_mutex_unlock(&n->lock);
	if (!p)
		return myce_http_error(resp, 404, "no pod %ld on %s", pod_id, n->name);
	if (agent_pid <= 0)
		return myce_http_error(resp, 409, "pod %ld has no running agent", pod_id);

	cJSON *out = cJSON_CreateObject();
	resp->json = out;
	resp->status = 200;
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_free_ char *sock = pod_agent_sock(pod_id);
	int64_t t_begin = myce_now_us();

	/* 1. Handshake: the destination prepares while we still serve. */
	_cleanup_close_ int fd = myce_tcp_connect(dest_ip, MYCE_STREAM_PORT, 5000, &e);
	if (fd < 0)
		return fail(out, "prepare", false, myce_error_msg(e));
	int buf = 4 * 1024 * 1024;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	_cleanup_json_ cJSON *hello = cJSON_CreateObject();
	cJSON_AddStringToObject(hello, "op", "migrate");
	cJSON_AddNumberToObject(hello, "migration_id", (double)mid);
	cJSON_AddNumberToObject(hello, "pod_id", (double)dest_pod);
	cJSON_AddItemToObject(hello, "carried", cJSON_Duplicate(carried, true));
	cJSON_AddBoolToObject(hello, "tcp_close", tcp_close);
	_cleanup_json_ cJSON *ready = NULL;
	if (myce_frame_send(fd, hello, &e) < 0 || myce_frame_recv(fd, 15000, &ready, &e) < 0)
		return fail(out, "prepare", false, myce_error_msg(e));
	if (!myce_json_bool(ready, "ok", false)) {
		const char *m = myce_json_str(ready, "error");
		return fail(out, "prepare", false, m ? m : "destination refused");
	}
	cJSON_AddNumberToObject(out, "prepare_net_ms", (double)(myce_now_us() - t_begin) / 1000.0);
	/* Open the congestion window before the freeze, so the checkpoint does
	 * not crawl through slow start while the application is stopped. */
	pid_t app = 0;
	_cleanup_free_ pid_t *tree = NULL;
	size_t ntree = 0;
	if (myce_memread_pid_in_ns(agent_pid, MYCE_APP_PID_BASE, &app, NULL) < 0 ||
	    myce_memread_tree(app, &tree, &ntree, NULL) < 0)
		ntree = 0;
	/* Pre-copy: "on", "off", or "auto" (when the memory would take long
	 * to cross the link inside the freeze; the warm-up measures the link). */
	const char *pre = myce_json_str(req, "precopy");
	bool auto_pre = pre && !strcmp(pre, "auto");
	bool do_pre = pre && !strcmp(pre, "on") && ntree > 0;
	int64_t t_w = myce_now_us();
	uint64_t warm = 0;
	if (auto_pre && ntree > 0) {
		/* Measure first (a warm-up that announces no pre-copy cannot be
		 * undone), so auto warms up in two steps: measure, then decide. */
		warm = warm_up(fd, false, &e);
		double secs = (double)(myce_now_us() - t_w) / 1e6;
		double bw = secs > 0 ? (double)warm / secs : 0; /* bytes/s, an underestimate */
		double rss = 0;
		for (size_t i = 0; i < ntree; i++)
			rss += proc_rss_bytes(tree[i]);
		/* Assume zstd halves memory; pre-copy pays off when moving it in
		 * the freeze would take more than 150 ms. */
		double est = bw > 0 ? rss * 0.5 / bw : 0;
		do_pre = est > 0.15;
		_cleanup_free_ char *why = xasprintf("%.0f MB of memory, link measured at >= %.1f Mbit/s: ~%.2f s to move it "
						     "while frozen", rss / 1e6, bw * 8 / 1e6, est);
		cJSON_AddStringToObject(out, "auto_reason", why);
		cJSON_AddStringToObject(out, "mode_picked", do_pre ? "precopy" : "live");
		log_info("migration %ld: auto mode picks %s (%s)", mid, do_pre ? "pre-copy" : "plain live", why);
		if (do_pre) /* tell the destination: a second, empty warm-up announces it */
			warm_up_done(fd, true, &e);
	} else {
		warm = warm_up(fd, do_pre, &e);
	}
	cJSON_AddNumberToObject(out, "warmup_bytes", (double)warm);
	cJSON_AddNumberToObject(out, "warmup_ms", (double)(myce_now_us() - t_w) / 1000.0);

	/* Pre-copy: the memory crosses the link while the application serves. */
	_cleanup_precopy_tx_ struct myce_precopy_tx *tx = NULL;
	if (do_pre) {
		tx = myce_precopy_tx_new();
		struct myce_precopy_opts po = myce_precopy_opts_default();
		po.zstd_level = level > 0 ? level : 1;
		/* Round 1 of 500 MB of sensor data is ~95 MB of zstd at 10 Mbit/s:
		 * 76 s.  The coordinator gives the whole send 600 s. */
		po.time_budget_ms = 240000;
		struct myce_precopy_report rep = {0};
		int64_t t_p = myce_now_us();
		if (myce_precopy_send(fd, tx, tree, ntree, &po, &rep, &e) < 0)
			return fail(out, "precopy", false, myce_error_msg(e));
		cJSON *pj = cJSON_AddObjectToObject(out, "precopy");
		cJSON_AddNumberToObject(pj, "rounds", rep.rounds);
		cJSON_AddNumberToObject(pj, "blocks", (double)rep.blocks_sent);
		cJSON_AddNumberToObject(pj, "bytes_raw", (double)rep.raw_bytes);
		cJSON_AddNumberToObject(pj, "bytes_wire", (double)rep.wire_bytes);
		cJSON_AddNumberToObject(pj, "ms", (double)(myce_now_us() - t_p) / 1000.0);
		cJSON_AddStringToObject(pj, "stop", rep.stop ? rep.stop : "");
		cJSON *rj = cJSON_AddArrayToObject(pj, "per_round_wire_bytes");
		for (unsigned i = 0; i < rep.rounds && i < MYCE_PRECOPY_MAX_ROUNDS; i++)
			cJSON_AddItemToArray(rj, cJSON_CreateNumber((double)rep.round[i].wire_bytes));
	}

	/* The dump writes about the application's memory into fresh tmpfs
	 * pages: have that much memory warm, freed right before the freeze
	 * (lib/warmmem.h).  Only where the freeze is short enough for it to
	 * matter: with a pre-copy. */
	struct myce_warmmem *warmmem = NULL;
	if (do_pre) {
		double rss = 0;
		for (size_t i = 0; i < ntree; i++)
			rss += proc_rss_bytes(tree[i]);
		warmmem = myce_warmmem_new((size_t)(rss * 1.1));
		cJSON_AddNumberToObject(out, "warm_bytes", (double)myce_warmmem_bytes(warmmem));
	}

	/* 2. Freeze and dump.  Tell the coordinator first (outside the freeze);
	 * if it is unreachable, go on: a restarted coordinator asks us. */
	if (pre && strcmp(pre, "off") != 0) {
		_cleanup_free_ char *url = xasprintf("%s/v1/migrations/%ld/freeze", n->coord_url, mid);
		myce_http_call_ca("POST", url, n->token, n->ca_file, NULL, 5000, NULL, NULL);
	}
	_cleanup_json_ cJSON *ckreq = cJSON_CreateObject();
	cJSON_AddStringToObject(ckreq, "op", "checkpoint");
	_cleanup_json_ cJSON *ck = NULL;
	myce_warmmem_release(warmmem);
	if (myce_agentctl_call(sock, ckreq, 120000, &ck, &e) < 0) {
		myce_stream_send_abort(fd, myce_error_msg(e));
		return fail(out, "dump", false, myce_error_msg(e));
	}
	copy_num(out, "freeze_start_wall_us", ck, "start_wall_us");
	copy_num(out, "dump_ms", ck, "dump_ms");
	/* Which processes the one dump froze (every container of the pod). */
	const cJSON *procs = cJSON_GetObjectItem(ck, "processes");
	if (procs)
		cJSON_AddItemToObject(out, "dumped_processes", cJSON_Duplicate(procs, true));
	/* Where the freeze goes, for the migration's record. */
	cJSON *fd_detail = cJSON_AddObjectToObject(out, "freeze_detail");
	if (cJSON_GetObjectItem(ck, "criu"))
		cJSON_AddItemToObject(fd_detail, "criu_dump", cJSON_Duplicate(cJSON_GetObjectItem(ck, "criu"), true));
	cJSON_AddNumberToObject(fd_detail, "src_warm_bytes", (double)myce_json_num(out, "warm_bytes", 0));
	if (!myce_json_bool(ck, "ok", false)) {
		const char *m = myce_json_str(ck, "error");
		myce_stream_send_abort(fd, m ? m : "dump failed");
		return fail(out, "dump", false, m ? m : "dump failed");
	}
	/* From here on the application is stopped: every millisecond counts. */
	if (fault_fire(n, "corrupt-stream"))
		fd = fault_corrupting_relay(steal_fd(&fd), 200000);
	struct handoff_call h = {.n = n, .mid = mid};
	h.started = pthread_create(&h.thread, NULL, handoff_thread, &h) == 0;

	/* 3. Stream images and the pod's private /dev/shm. */
	_cleanup_free_ char *dir = myce_pod_dir(pod_id);
	_cleanup_free_ char *imgdir = xasprintf("%s/images", dir);
	_cleanup_free_ char *shm = xasprintf("/proc/%d/root/dev/shm", (int)agent_pid);
	struct myce_stream_source srcs[] = {{"img", imgdir, false}, {"shm", shm, true}};
	struct myce_stream_stats st = {0};
	struct progress_ctx pc = {n, mid};
	transfer_track(n, mid, true);
	_cleanup_free_ char *meta = xasprintf("{\"migration_id\":%ld}", mid);
	int64_t t_x = myce_now_us();
	/* With a pre-copy, page data the destination holds goes as references. */
	struct myce_stream_send_opts so = {.zstd_level = level, .progress = on_progress, .ud = &pc, .known = tx};
	int rs = myce_stream_send_ex(fd, meta, srcs, ARRAY_SIZE(srcs), &so, &st, &e);
	transfer_track(n, mid, false);
	/* Until the destination has it all: the sender finishes writing into
	 * socket buffers much earlier on a slow link (see recv_ms below). */
	cJSON_AddNumberToObject(out, "send_ms", (double)(myce_now_us() - t_x) / 1000.0);
	cJSON_AddNumberToObject(out, "bytes_raw", (double)st.raw_bytes);
	cJSON_AddNumberToObject(out, "bytes_wire", (double)st.wire_bytes);
	cJSON_AddNumberToObject(out, "files", (double)st.files);
	cJSON_AddNumberToObject(out, "zstd_level", level);

	_cleanup_json_ cJSON *done = NULL;
	int rr = rs < 0 ? -1 : myce_frame_recv(fd, 180000, &done, &e);
	if (h.started)
		pthread_join(h.thread, NULL);
	cJSON_AddNumberToObject(out, "handoff_ms", h.ms);
	cJSON_AddNumberToObject(out, "handoff_status", h.status);
	free(h.error);
	if (rs < 0)
		return fail(out, "transfer", true, myce_error_msg(e));
	if (rr < 0)
		return fail(out, "restore", true, myce_error_msg(e));
	copy_num(out, "restore_ms", done, "restore_ms");
	copy_num(out, "restore_start_wall_us", done, "start_wall_us");
	copy_num(out, "restore_end_wall_us", done, "end_wall_us");
	copy_num(out, "recv_ms", done, "recv_ms");
	copy_num(fd_detail, "send_ms", out, "send_ms");
	copy_num(fd_detail, "recv_ms", done, "recv_ms");
	copy_num(fd_detail, "restore_ms", done, "restore_ms");
	copy_num(fd_detail, "recv_write_ms", done, "recv_write_ms");
	copy_num(fd_detail, "recv_wait_ms", done, "recv_wait_ms");
	copy_num(fd_detail, "dest_warm_bytes", done, "warm_bytes");
	if (cJSON_GetObjectItem(done, "criu"))
		cJSON_AddItemToObject(fd_detail, "criu_restore",
				      cJSON_Duplicate(cJSON_GetObjectItem(done, "criu"), true));
	cJSON_AddNumberToObject(out, "transfer_ms", myce_json_num(done, "recv_ms", myce_json_num(out, "send_ms", 0)));
	if (!myce_json_bool(done, "ok", false)) {
		const char *m = myce_json_str(done, "error");
		const char *ph = myce_json_str(done, "failed_phase");
		return fail(out, ph ? ph : "restore", true, m ? m : "destination failed");
	}
	cJSON_AddBoolToObject(out, "ok", true);
	cJSON_AddBoolToObject(out, "dumped", true);
}

void node_agent_status(struct node *n, long pod_id, struct myce_http_resp *resp)
{
	_cleanup_free_ char *sock = pod_agent_sock(pod_id);
	_cleanup_json_ cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "status");
	cJSON *out = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	if (myce_agentctl_call(sock, req, 5000, &out, &e) < 0)
		return myce_http_error(resp, 404, "pod %ld: %s", pod_id, myce_error_msg(e));
	resp->json = out;
}

void node_restore_local(struct node *n, long pod_id, struct myce_http_resp *resp)
{
	pthread_mutex_lock(&n->lock);
	bool exists = pod_find(n, pod_id) != NULL;
	pthread_mutex_unlock(&n->lock);
	if (!exists)
		return myce_http_error(resp, 404, "no pod %ld on %s", pod_id, n->name);
	_cleanup_free_ char *sock = pod_agent_sock(pod_id);
	_cleanup_json_ cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "restore");
	cJSON *out = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	if (myce_agentctl_call(sock, req, 120000, &out, &e) < 0)
		return myce_http_error(resp, 500, "%s", myce_error_msg(e));
	resp->json = out;
	resp->status = myce_json_bool(out, "ok", false) ? 200 : 500;
}
