/* The destination side of a live migration: accepts the source node's
 * connection, prepares the target pod's network (guard first, then the
 * carried addresses and their routes), receives the checkpoint and asks the
 * agent to restore; the guard falls at CRIU's post-restore notification. */
#include "node.h"

#include "agentctl.h"
#include "cluster.h"
#include "frame.h"
#include "log.h"
#include "netns.h"
#include "nft.h"
#include "nlroute.h"
#include "precopy.h"
#include "stream.h"
#include "util.h"
#include "warmmem.h"

#include <errno.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

struct target_net {
	const cJSON *carried;
};

static int target_net_inside(void *arg, struct myce_error **err)
{
	struct target_net *t = arg;
	/* The guard: until the restored sockets exist, packets for the pod
	 * must be dropped, not answered with RST.  Loopback stays open: CRIU
	 * itself connects to 127.0.0.1 while restoring. */
	if (myce_nft_run("add table inet " MYCE_GUARD_TABLE "\n"
			 "add chain inet " MYCE_GUARD_TABLE " input { type filter hook input priority -10; }\n"
			 "add rule inet " MYCE_GUARD_TABLE " input iifname \"eth0\" meta l4proto tcp drop\n",
			 err) < 0)
		return -1;
	const cJSON *a;
	cJSON_ArrayForEach(a, t->carried)
	{
		if (!cJSON_IsString(a))
			continue;
		_cleanup_free_ char *cidr = xasprintf("%s/32", a->valuestring);
		if (myce_nl_addr_add("eth0", cidr, err) < 0)
			return -1;
	}
	return 0;
}

int node_target_network(struct node *n, struct pod *p, const cJSON *carried, struct myce_error **err)
{
	_cleanup_free_ char *ns = myce_pod_netns(p->id);
	_cleanup_free_ char *veth = myce_pod_veth(p->id);
	_cleanup_close_ int nsfd = myce_netns_open(ns, err);
	if (nsfd < 0)
		return -1;
	struct target_net t = {carried};
	if (myce_netns_run(nsfd, target_net_inside, &t, err) < 0)
		return -1;
	const cJSON *a;
	cJSON_ArrayForEach(a, carried)
	{
		if (!cJSON_IsString(a))
			continue;
		_cleanup_free_ char *cidr = xasprintf("%s/32", a->valuestring);
		if (myce_nl_route_replace(cidr, NULL, veth, err) < 0)
			return -1;
	}
	return 0;
}

/* The pre-copy's block store: half of the memory available now, at most
 * 4 GiB (the sender learns the room from the first ACK and stops there). */
static size_t store_capacity(void)
{
	_cleanup_free_ char *mi = myce_read_file("/proc/meminfo", NULL);
	const char *p = mi ? strstr(mi, "MemAvailable:") : NULL;
	double kb = p ? atof(p + 13) : 0;
	size_t blocks = (size_t)(kb * 1024 / 2 / 4096);
	if (blocks < 4096)
		blocks = 4096;
	return blocks < (1u << 20) ? blocks : (1u << 20);
}

static void bsp(struct myce_blockstore **b)
{
	myce_blockstore_free(*b);
}
#define _cleanup_blockstore_ __attribute__((cleanup(bsp)))

/* After a warm-up-done without pre-copy: 1 if the next message is one of our
 * JSON frames (another warm-up-done), 0 if it is the stream's first record. */
static int peek_frame_is_json(int fd)
{
	unsigned char b[5];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 60000) <= 0)
		return -1;
	ssize_t n = recv(fd, b, sizeof(b), MSG_PEEK | MSG_WAITALL);
	if (n < 5)
		return n < 0 ? -1 : 0;
	/* A frame is [u32 length]["{"...]; a stream record is [u8 type][u32 len]. */
	return b[0] == 0 && b[4] == '{';
}

struct conn {
	struct node *n;
	int fd;
};

static void answer(int fd, cJSON *msg)
{
	myce_frame_send(fd, msg, NULL);
	cJSON_Delete(msg);
}

static cJSON *failure(const char *phase, const char *msg)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "ok", false);
	cJSON_AddStringToObject(o, "failed_phase", phase);
	cJSON_AddStringToObject(o, "error", msg);
	log_error("incoming migration: %s failed: %s", phase, msg);
	return o;
}

static void handle(struct node *n, int fd)
{
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_json_ cJSON *hello = NULL;
	if (myce_frame_recv(fd, 15000, &hello, &e) < 0) {
		log_error("incoming migration: %s", myce_error_msg(e));
		return;
	}
	long pod_id = (long)myce_json_num(hello, "pod_id", -1);
	long mid = (long)myce_json_num(hello, "migration_id", -1);
	const cJSON *carried = cJSON_GetObjectItem(hello, "carried");
	pthread_mutex_lock(&n->lock);
	struct pod *p = pod_find(n, pod_id);
	pid_t agent_pid = p && p->target ? p->agent_pid : 0;
	pthread_mutex_unlock(&n->lock);
	if (!p || agent_pid <= 0 || !cJSON_IsArray(carried))
		return answer(fd, failure("prepare", "no waiting target pod for this migration"));
	if (node_target_network(n, p, carried, &e) < 0)
		return answer(fd, failure("prepare", myce_error_msg(e)));
	cJSON *ok = cJSON_CreateObject();
	cJSON_AddBoolToObject(ok, "ok", true);
	answer(fd, ok);
	log_info("migration %ld: target pod %ld ready, waiting for the checkpoint", mid, pod_id);
	/* The source warms the connection up; drain its padding.  The last
	 * warm-up message says whether a pre-copy follows (auto mode may send
	 * two: measure, then decide). */
	bool precopy = false;
	for (;;) {
		_cleanup_json_ cJSON *f = NULL;
		if (myce_frame_recv(fd, 60000, &f, &e) < 0)
			return answer(fd, failure("prepare", myce_error_msg(e)));
		const char *op = myce_json_str(f, "op");
		if (op && !strcmp(op, "warmup-done")) {
			cJSON *w = cJSON_CreateObject();
			cJSON_AddBoolToObject(w, "ok", true);
			answer(fd, w);
			precopy = myce_json_bool(f, "precopy", false);
			if (precopy)
				break;
			/* Without a pre-copy, the next message is the stream (or one more
			 * warm-up-done announcing a pre-copy, in auto mode). */
			int k = peek_frame_is_json(fd);
			if (k <= 0)
				break;
			continue;
		}
		size_t n = (size_t)myce_json_num(f, "bytes", 0);
		if (!op || strcmp(op, "warmup") != 0 || n > MYCE_FRAME_MAX)
			return answer(fd, failure("prepare", "unexpected message during warm-up"));
		char buf[16384];
		while (n > 0) {
			size_t k = n < sizeof(buf) ? n : sizeof(buf);
			if (myce_read_full(fd, buf, k) < 0)
				return answer(fd, failure("prepare", "connection lost during warm-up"));
			n -= k;
		}
	}

	_cleanup_blockstore_ struct myce_blockstore *bs = NULL;
	struct myce_precopy_recv_stats ps = {0};
	if (precopy) {
		bs = myce_blockstore_new(store_capacity());
		if (!bs || myce_precopy_recv(fd, bs, &ps, &e) < 0)
			return answer(fd, failure("precopy", bs ? myce_error_msg(e) : "no memory for the block store"));
		log_info("migration %ld: pre-copy received %llu blocks", mid, (unsigned long long)ps.blocks);
	}

	/* The rebuild writes the image into fresh tmpfs pages: have that much
	 * memory warm, freed when the stream begins (lib/warmmem.h). */
	struct myce_warmmem *warmmem = precopy ? myce_warmmem_new(myce_blockstore_count(bs) * 4096) : NULL;
	/* The dump happens now on the source; the stream follows. */
	_cleanup_free_ char *meta = NULL;
	size_t warm_bytes = myce_warmmem_bytes(warmmem);
	int hr = myce_stream_recv_hello(fd, &meta, &e);
	myce_warmmem_release(warmmem);
	if (hr < 0)
		return answer(fd, failure("dump", myce_error_msg(e)));
	int64_t t0 = myce_now_us();
	_cleanup_free_ char *dir = myce_pod_dir(pod_id);
	_cleanup_free_ char *imgdir = xasprintf("%s/images", dir);
	_cleanup_free_ char *shm = xasprintf("/proc/%d/root/dev/shm", (int)agent_pid);
	myce_rm_rf(imgdir);
	myce_mkdir_p(imgdir, 0700);
	struct myce_stream_dest dests[] = {{"img", imgdir}, {"shm", shm}};
	struct myce_stream_stats st = {0};
	struct myce_stream_recv_opts ro = {.store = bs};
	if (myce_stream_recv_files_ex(fd, dests, ARRAY_SIZE(dests), &ro, &st, &e) < 0)
		return answer(fd, failure("transfer", myce_error_msg(e)));
	double recv_ms = (double)(myce_now_us() - t0) / 1000.0;
	/* The store is spent: its memory, just used, goes to the restore. */
	myce_blockstore_free(steal_pointer(&bs));
	if (fault_fire(n, "fail-restore")) {
		/* A core image cut after its magic: CRIU fails while restoring
		 * the tree, after it has started creating it. */
		_cleanup_free_ char *core = xasprintf("%s/core-%d.img", imgdir, MYCE_APP_PID_BASE + 1);
		if (truncate(core, 8) < 0)
			log_warn("fault: truncate %s: %s", core, strerror(errno));
	}

	_cleanup_free_ char *sock = pod_agent_sock(pod_id);
	_cleanup_json_ cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "restore");
	cJSON_AddBoolToObject(req, "guard", true);
	cJSON_AddBoolToObject(req, "tcp_close", myce_json_bool(hello, "tcp_close", false));
	cJSON *res = NULL;
	if (myce_agentctl_call(sock, req, 60000, &res, &e) < 0)
		return answer(fd, failure("restore", myce_error_msg(e)));
	cJSON_AddNumberToObject(res, "recv_ms", recv_ms);
	cJSON_AddNumberToObject(res, "recv_write_ms", (double)st.write_us / 1000.0);
	cJSON_AddNumberToObject(res, "recv_wait_ms", (double)st.wait_us / 1000.0);
	cJSON_AddNumberToObject(res, "warm_bytes", (double)warm_bytes);
	if (!myce_json_bool(res, "ok", false)) {
		cJSON_AddStringToObject(res, "failed_phase", "restore");
	} else {
		pthread_mutex_lock(&n->lock);
		struct pod *q = pod_find(n, pod_id);
		if (q)
			q->active_since_us = myce_now_us();
		pthread_mutex_unlock(&n->lock);
	}
	log_info("migration %ld: restore %s", mid, myce_json_bool(res, "ok", false) ? "done" : "failed");
	answer(fd, res);
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	handle(c->n, c->fd);
	close(c->fd);
	free(c);
	return NULL;
}

struct listener {
	struct node *n;
	int fd;
};

static void *accept_thread(void *arg)
{
	struct listener *l = arg;
	struct node *n = l->n;
	int lfd = l->fd;
	free(l);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			log_error("stream accept: %s", strerror(errno));
			return NULL;
		}
		int buf = 4 * 1024 * 1024;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
		struct conn *c = xzalloc(sizeof(*c));
		c->n = n;
		c->fd = fd;
		pthread_t t;
		if (pthread_create(&t, NULL, conn_thread, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
}

int node_recv_start(struct node *n, struct myce_error **err)
{
	int lfd = myce_tcp_listen(n->ip, MYCE_STREAM_PORT, err);
	if (lfd < 0)
		return myce_error_wrap(err, "stream listener");
	struct listener *l = xzalloc(sizeof(*l));
	l->n = n;
	l->fd = lfd;
	pthread_t t;
	int r = pthread_create(&t, NULL, accept_thread, l);
	if (r != 0) {
		close(lfd);
		free(l);
		errno = r;
		return myce_error_errno(err, "start stream listener");
	}
	pthread_detach(t);
	return 0;
}
