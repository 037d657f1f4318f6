/* Fault injection for the end-to-end tests, enabled by the environment
 * variable MYCE_FAULT of the node daemon (set on `mycectl cluster up`).
 * Each fault fires once per daemon, so a test can then show a clean retry:
 *   corrupt-stream  flips one byte of the checkpoint stream on the wire
 *   fail-restore    cuts a received core image so CRIU's restore fails midway */
#include "node.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

bool fault_fire(struct node *n, const char *name)
{
	const char *f = getenv("MYCE_FAULT");
	if (!f || strcmp(f, name) != 0)
		return false;
	pthread_mutex_lock(&n->lock);
	bool fire = !n->fault_fired;
	n->fault_fired = true;
	pthread_mutex_unlock(&n->lock);
	if (fire)
		log_warn("injecting fault %s", name);
	return fire;
}

struct relay {
	int app, net; /* our end of the socketpair, the real connection */
	uint64_t flip_at;
};

/* Copies both ways; flips one byte app->net at offset flip_at. */
static void *relay_thread(void *arg)
{
	struct relay *r = arg;
	uint64_t sent = 0;
	char buf[65536];
	struct pollfd p[2] = {{.fd = r->app, .events = POLLIN}, {.fd = r->net, .events = POLLIN}};
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents) {
			ssize_t k = read(r->app, buf, sizeof(buf));
			if (k <= 0)
				break;
			if (sent <= r->flip_at && r->flip_at < sent + (uint64_t)k)
				buf[r->flip_at - sent] ^= 0x5a;
			sent += (uint64_t)k;
			if (myce_write_full(r->net, buf, (size_t)k) < 0)
				break;
		}
		if (p[1].revents) {
			ssize_t k = read(r->net, buf, sizeof(buf));
			if (k <= 0)
				break;
			if (myce_write_full(r->app, buf, (size_t)k) < 0)
				break;
		}
	}
	close(r->app);
	close(r->net);
	free(r);
	return NULL;
}

int fault_corrupting_relay(int fd, uint64_t flip_at)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return fd;
	struct relay *r = xzalloc(sizeof(*r));
	r->app = sp[1];
	r->net = fd;
	r->flip_at = flip_at;
	pthread_t t;
	if (pthread_create(&t, NULL, relay_thread, r) != 0) {
		close(sp[0]);
		close(sp[1]);
		free(r);
		return fd;
	}
	pthread_detach(t);
	return sp[0];
}
