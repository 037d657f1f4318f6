/* The new-connection probe: a thread that, every probe interval, opens a new
 * TCP connection, makes one protocol request (PING, version, MQTT
 * CONNECT/CONNACK), and closes it.  It tells how long new clients were
 * turned away, which the long-lived connection of the sensor cannot see. */
#include "loadgen.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>

struct probe_result {
	int64_t start_us, end_us; /* monotonic */
	bool ok;
};

struct lg_probe {
	const struct lg_config *cfg;
	int64_t t0_us;
	int stop_fd; /* eventfd: readable once the probe must stop */
	pthread_t thread;
	bool stopped;
	struct net_buf req; /* the request to send */
	struct probe_result *v;
	size_t n, cap;
};

/* Builds an MQTT 3.1.1 CONNECT with a clean session. */
static void mqtt_connect_packet(struct net_buf *b, const char *client_id)
{
	size_t idlen = strlen(client_id);
	size_t rem = 10 + 2 + idlen;
	unsigned char hdr[] = {0x10, (unsigned char)rem, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			       0x02 /* clean session */, 0x00, 0x3c /* keep-alive 60 s */,
			       (unsigned char)(idlen >> 8), (unsigned char)idlen};
	net_buf_append(b, hdr, sizeof(hdr));
	net_buf_append(b, client_id, idlen);
}

/* Is what arrived so far a complete, positive answer (1), a complete
 * negative one (-1), or not yet complete (0)? */
static int probe_check(const char *mode, const struct net_buf *in)
{
	if (!strcmp(mode, "mqtt")) {
		if (in->len < 4)
			return 0;
		const unsigned char *p = (const unsigned char *)in->data;
		return p[0] == 0x20 && p[1] == 0x02 && p[3] == 0x00 ? 1 : -1;
	}
	if (!memchr(in->data, '\n', in->len))
		return 0;
	const char *want = !strcmp(mode, "redis") ? "+PONG\r\n" : "VERSION ";
	return strncmp(in->data, want, strlen(want)) == 0 ? 1 : -1;
}

static bool probe_once(struct lg_probe *p)
{
	const struct lg_config *cfg = p->cfg;
	int64_t until = myce_now_us() + cfg->probe_timeout_us;
	_cleanup_error_ struct myce_error *err = NULL;
	_cleanup_close_ int fd =
		net_connect(&cfg->sa, cfg->sa_len, cfg->probe_timeout_us, p->stop_fd, &err);
	if (fd < 0) {
		log_debug("probe: %s", myce_error_msg(err));
		return false;
	}
	int r = net_send_all(fd, p->req.data, p->req.len, until, p->stop_fd);
	struct net_buf in = {0};
	int verdict = 0;
	while (r == 0 && verdict == 0) {
		r = net_recv_some(fd, &in, until, p->stop_fd);
		if (r > 0) {
			r = 0;
			verdict = probe_check(cfg->mode, &in);
		}
	}
	net_buf_free(&in);
	if (verdict > 0 && !strcmp(cfg->mode, "mqtt")) {
		static const unsigned char disconnect[] = {0xe0, 0x00};
		(void)net_send_all(fd, disconnect, sizeof(disconnect), until, p->stop_fd);
	}
	if (r < 0)
		log_debug("probe: %s", strerror(-r));
	return verdict > 0;
}

static bool stop_requested(int stop_fd)
{
	struct pollfd pfd = {.fd = stop_fd, .events = POLLIN};
	return poll(&pfd, 1, 0) > 0;
}

static void *probe_main(void *arg)
{
	struct lg_probe *p = arg;
	int64_t next = myce_now_us();
	for (;;) {
		if (net_wait(-1, 0, next, p->stop_fd) == NET_STOP)
			break;
		struct probe_result res = {.start_us = myce_now_us()};
		res.ok = probe_once(p);
		res.end_us = myce_now_us();
		/* A probe cut short by the stop says nothing about the server. */
		if (!res.ok && stop_requested(p->stop_fd))
			break;
		if (p->n == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 4096;
			p->v = xrealloc(p->v, p->cap * sizeof(*p->v));
		}
		p->v[p->n++] = res;
		next = res.start_us + p->cfg->probe_us;
	}
	return NULL;
}

int lg_probe_start(const struct lg_config *cfg, int64_t t0_us, struct lg_probe **out,
		   struct myce_error **err)
{
	*out = NULL;
	if (cfg->probe_us <= 0)
		return 0;
	struct lg_probe *p = xzalloc(sizeof(*p));
	p->cfg = cfg;
	p->t0_us = t0_us;
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->stop_fd < 0) {
		free(p);
		return myce_error_errno(err, "eventfd");
	}
	if (!strcmp(cfg->mode, "redis")) {
		net_buf_append(&p->req, "PING\r\n", 6);
	} else if (!strcmp(cfg->mode, "memcached")) {
		net_buf_append(&p->req, "version\r\n", 9);
	} else {
		_cleanup_free_ char *id = xasprintf("myce-probe-%d", (int)getpid());
		mqtt_connect_packet(&p->req, id);
	}
	int r = pthread_create(&p->thread, NULL, probe_main, p);
	if (r != 0) {
		close(p->stop_fd);
		net_buf_free(&p->req);
		free(p);
		return myce_error_set(err, r, "pthread_create: %s", strerror(r));
	}
	*out = p;
	return 0;
}

void lg_probe_stop(struct lg_probe *p)
{
	if (!p || p->stopped)
		return;
	uint64_t one = 1;
	if (write(p->stop_fd, &one, sizeof(one)) < 0)
		log_error("probe: cannot signal the thread to stop: %s", strerror(errno));
	pthread_join(p->thread, NULL);
	p->stopped = true;
}

void lg_probe_report_free(struct lg_probe *p, struct lg_report *rep)
{
	if (!p) {
		lg_report_int(rep, "probes", 0);
		lg_report_int(rep, "probes_failed", 0);
		lg_report_ms(rep, "newconn_fail_ms", 0);
		lg_report_ms(rep, "newconn_fail_at_ms", 0);
		lg_report_ms(rep, "probe_max_ms", 0);
		return;
	}
	lg_probe_stop(p);

	/* A failure window runs from the start of its first failed probe to the
	 * reply of the next successful one (or the end of the last probe). */
	uint64_t failed = 0;
	int64_t fail_start = -1, worst = 0, worst_at = 0, slowest = 0;
	for (size_t i = 0; i < p->n; i++) {
		const struct probe_result *r = &p->v[i];
		if (!r->ok) {
			failed++;
			if (fail_start < 0)
				fail_start = r->start_us;
			continue;
		}
		if (r->end_us - r->start_us > slowest)
			slowest = r->end_us - r->start_us;
		if (fail_start >= 0 && r->end_us - fail_start > worst) {
			worst = r->end_us - fail_start;
			worst_at = fail_start;
		}
		fail_start = -1;
	}
	if (fail_start >= 0 && p->v[p->n - 1].end_us - fail_start > worst) {
		worst = p->v[p->n - 1].end_us - fail_start;
		worst_at = fail_start;
	}
	lg_report_int(rep, "probes", (int64_t)p->n);
	lg_report_int(rep, "probes_failed", (int64_t)failed);
	lg_report_ms(rep, "newconn_fail_ms", (double)worst / 1000.0);
	lg_report_ms(rep, "newconn_fail_at_ms", worst ? (double)(worst_at - p->t0_us) / 1000.0 : 0);
	lg_report_ms(rep, "probe_max_ms", (double)slowest / 1000.0);

	close(p->stop_fd);
	net_buf_free(&p->req);
	free(p->v);
	free(p);
}
