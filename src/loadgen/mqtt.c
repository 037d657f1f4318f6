/* The MQTT sensor (libmosquitto): a publisher and a subscriber, each on its
 * own connection driven by its own network thread.  The publisher sends one
 * QoS 1 reading per tick and waits for its PUBACK before the next, so a
 * silence is the broker's pause; the subscriber (persistent session, fixed
 * client id, QoS 1) checks that every acknowledged reading arrives, once,
 * in order, unchanged.
 *
 * Threads: main publishes and waits; the two network threads run the
 * callbacks.  Everything the callbacks touch is under st->rec.lock; they
 * wake main through an eventfd.  Main never calls into libmosquitto while
 * holding the lock, and the callbacks (which libmosquitto runs under its own
 * callback mutex) take only that lock, so the lock order is fixed. */
#include "loadgen.h"
#include "log.h"

#include <errno.h>
#include <mosquitto.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>

#define MQTT_KEEPALIVE_S 10
/* How long to wait at the end for acknowledged readings to arrive. */
#define MQTT_DRAIN_US (5 * 1000000LL)

struct mqtt_state;

struct mqtt_client {
	struct mqtt_state *st;
	const char *role; /* "publisher" or "subscriber" */
	char *id;
	struct mosquitto *mosq;
	pthread_t thread;
	bool thread_started;
	atomic_bool quit;	   /* the thread must end */
	atomic_bool connected;	   /* CONNACK accepted, not lost since */
	atomic_uint conn;	   /* connection generation */
	atomic_ullong disconnects; /* unexpected ones */
};

/* What the subscriber learnt about one reading. */
struct mqtt_seq {
	int64_t recv_us; /* first receipt (wall, as lg_records_now), 0 = never */
	uint16_t recv_count;
	bool acked; /* PUBACK seen, even after the publisher gave up waiting */
};

struct mqtt_state {
	struct lg_ctx *ctx;
	char *topic;
	int wake_fd; /* eventfd: a callback changed something */
	struct mqtt_client pub, sub;

	/* Under rec.lock: */
	struct lg_records rec;
	struct mqtt_seq *seqs; /* parallel to rec.v */
	size_t seqs_cap;
	int64_t mid_seq[65536];	 /* in-flight message id -> seq, -1 = none */
	int64_t early_ack[65536]; /* PUBACK that came before mid_seq was set: its time */
	bool subscribed;
	uint64_t duplicates, out_of_order, wrong, foreign, late_acks;
	int64_t max_seq_seen;
	int64_t sub_last_us;
	unsigned sub_last_conn;
	int64_t sub_max_gap_us, sub_max_gap_at_us;
};

static void wake(struct mqtt_state *st)
{
	uint64_t one = 1;
	if (write(st->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("eventfd write: %s", strerror(errno));
}

static void drain_wake(struct mqtt_state *st)
{
	uint64_t v;
	while (read(st->wake_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
}

static char *mqtt_payload(const struct lg_records *rec, uint64_t seq)
{
	_cleanup_free_ char *val = sensor_value(seq, rec->v[seq].send_us);
	return xasprintf("%llu:%s", (unsigned long long)seq, val);
}

/* ---- callbacks (network threads) ----------------------------------------- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
	struct mqtt_client *c = obj;
	if (rc != 0) {
		log_warn("%s: connection refused: %s", c->role, mosquitto_connack_string(rc));
		return;
	}
	atomic_fetch_add(&c->conn, 1);
	atomic_store(&c->connected, true);
	if (c == &c->st->sub) {
		int r = mosquitto_subscribe(mosq, NULL, c->st->topic, 1);
		if (r != MOSQ_ERR_SUCCESS)
			log_warn("subscribe: %s", mosquitto_strerror(r));
	}
	if (atomic_load(&c->conn) > 1)
		log_info("%s: reconnected", c->role);
	wake(c->st);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	struct mqtt_client *c = obj;
	/* Also called when a reconnection attempt fails: count only losses. */
	bool was_connected = atomic_exchange(&c->connected, false);
	if (was_connected && rc != 0 && !atomic_load(&c->quit)) {
		atomic_fetch_add(&c->disconnects, 1);
		log_info("%s: connection lost (%s); reconnecting", c->role, mosquitto_strerror(rc));
	}
	wake(c->st);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
			 const int *granted)
{
	struct mqtt_client *c = obj;
	if (qos_count < 1 || granted[0] != 1)
		log_warn("subscriber: granted QoS %d instead of 1", qos_count ? granted[0] : -1);
	pthread_mutex_lock(&c->st->rec.lock);
	c->st->subscribed = true;
	pthread_mutex_unlock(&c->st->rec.lock);
	wake(c->st);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
	struct mqtt_client *c = obj;
	struct mqtt_state *st = c->st;
	pthread_mutex_lock(&st->rec.lock);
	int64_t now = lg_records_now(&st->rec);
	int64_t seq = st->mid_seq[(uint16_t)mid];
	if (seq < 0) {
		st->early_ack[(uint16_t)mid] = now;
	} else {
		st->mid_seq[(uint16_t)mid] = -1;
		st->seqs[seq].acked = true;
		struct lg_record *r = &st->rec.v[seq];
		if (r->outcome == LG_PENDING) {
			r->outcome = LG_OK;
			r->reply_us = now;
		} else {
			st->late_acks++;
		}
	}
	pthread_mutex_unlock(&st->rec.lock);
	wake(st);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m)
{
	struct mqtt_client *c = obj;
	struct mqtt_state *st = c->st;
	_cleanup_free_ char *payload = strndup(m->payload ? m->payload : "", (size_t)m->payloadlen);
	if (!payload)
		abort();
	char *end;
	errno = 0;
	unsigned long long seq = strtoull(payload, &end, 10);
	bool parsed = errno == 0 && end != payload && *end == ':';
	unsigned conn = atomic_load(&c->conn);

	pthread_mutex_lock(&st->rec.lock);
	int64_t now = lg_records_now(&st->rec);
	if (!parsed || seq >= st->rec.n) {
		st->foreign++;
		pthread_mutex_unlock(&st->rec.lock);
		return;
	}
	_cleanup_free_ char *want = mqtt_payload(&st->rec, seq);
	if (strcmp(payload, want) != 0)
		st->wrong++;
	struct mqtt_seq *s = &st->seqs[seq];
	if (s->recv_count++ > 0) {
		st->duplicates++;
	} else {
		s->recv_us = now;
		if ((int64_t)seq < st->max_seq_seen)
			st->out_of_order++;
		else
			st->max_seq_seen = (int64_t)seq;
	}
	if (st->sub_last_us && conn == st->sub_last_conn && now - st->sub_last_us > st->sub_max_gap_us) {
		st->sub_max_gap_us = now - st->sub_last_us;
		st->sub_max_gap_at_us = st->sub_last_us;
	}
	st->sub_last_us = now;
	st->sub_last_conn = conn;
	pthread_mutex_unlock(&st->rec.lock);
	wake(st);
}

/* ---- network threads ------------------------------------------------------ */

static void *client_main(void *arg)
{
	struct mqtt_client *c = arg;
	int flush = 0;
	for (;;) {
		int rc = mosquitto_loop(c->mosq, 10, 1);
		if (atomic_load(&c->quit)) {
			/* Let the DISCONNECT go out, for a second at most. */
			if (rc != MOSQ_ERR_SUCCESS || ++flush > 100)
				break;
			continue;
		}
		if (rc == MOSQ_ERR_SUCCESS)
			continue;
		struct timespec ts = {0, LG_RECONNECT_DELAY_US * 1000};
		nanosleep(&ts, NULL);
		if (!atomic_load(&c->quit))
			mosquitto_reconnect_async(c->mosq);
	}
	return NULL;
}

static int client_init(struct mqtt_state *st, struct mqtt_client *c, const char *role,
		       const char *id, bool clean, struct myce_error **err)
{
	c->st = st;
	c->role = role;
	c->id = xstrdup(id);
	c->mosq = mosquitto_new(c->id, clean, c);
	if (!c->mosq)
		return myce_error_errno(err, "mosquitto_new");
	mosquitto_threaded_set(c->mosq, true);
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_callback_set(c->mosq, on_publish);
	mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
	mosquitto_message_callback_set(c->mosq, on_message);
	return 0;
}

static int client_start(struct mqtt_client *c, const char *host, int port, struct myce_error **err)
{
	/* A failure here is retried by the thread; the host is remembered. */
	int rc = mosquitto_connect_async(c->mosq, host, port, MQTT_KEEPALIVE_S);
	if (rc != MOSQ_ERR_SUCCESS)
		log_debug("%s: connect: %s", c->role, mosquitto_strerror(rc));
	int r = pthread_create(&c->thread, NULL, client_main, c);
	if (r != 0)
		return myce_error_set(err, r, "pthread_create: %s", strerror(r));
	c->thread_started = true;
	return 0;
}

static void client_stop(struct mqtt_client *c)
{
	if (!c->mosq)
		return;
	atomic_store(&c->quit, true);
	mosquitto_disconnect(c->mosq);
	if (c->thread_started)
		pthread_join(c->thread, NULL);
	c->thread_started = false;
}

static void client_free(struct mqtt_client *c)
{
	client_stop(c);
	if (c->mosq)
		mosquitto_destroy(c->mosq);
	c->mosq = NULL;
	free(c->id);
}

static void forget_on_connect(struct mosquitto *m, void *obj, int rc)
{
	*(bool *)obj = true;
}

/* The subscriber's session outlives it on the broker: drop it by connecting
 * once more with the same id and a clean session. */
static void forget_session(const char *id, const char *host, int port)
{
	bool connacked = false;
	struct mosquitto *m = mosquitto_new(id, true, &connacked);
	if (!m)
		return;
	mosquitto_connect_callback_set(m, forget_on_connect);
	if (mosquitto_connect(m, host, port, MQTT_KEEPALIVE_S) == MOSQ_ERR_SUCCESS) {
		int64_t until = myce_now_us() + 1000000;
		while (!connacked && myce_now_us() < until &&
		       mosquitto_loop(m, 10, 1) == MOSQ_ERR_SUCCESS)
			;
		mosquitto_disconnect(m);
		for (int i = 0; i < 10 && mosquitto_loop(m, 10, 1) == MOSQ_ERR_SUCCESS; i++)
			;
	}
	mosquitto_destroy(m);
}

/* ---- the run (main thread) ------------------------------------------------ */

/* Waits for a callback or until `until`; false on a signal. */
static bool wait_wake(struct mqtt_state *st, int64_t until)
{
	enum net_wait w = net_wait(st->wake_fd, POLLIN, until, st->ctx->sig_fd);
	drain_wake(st);
	return w != NET_STOP;
}

/* Publishes one reading and waits for its PUBACK; false when the run must stop. */
static bool mqtt_request(struct mqtt_state *st)
{
	struct lg_ctx *ctx = st->ctx;
	pthread_mutex_lock(&st->rec.lock);
	uint64_t seq = lg_records_add(&st->rec, atomic_load(&st->pub.conn));
	if (st->rec.n > st->seqs_cap) {
		st->seqs_cap = st->rec.cap;
		st->seqs = xrealloc(st->seqs, st->seqs_cap * sizeof(*st->seqs));
	}
	st->seqs[seq] = (struct mqtt_seq){0};
	_cleanup_free_ char *payload = mqtt_payload(&st->rec, seq);
	pthread_mutex_unlock(&st->rec.lock);

	int mid = -1;
	int rc = mosquitto_publish(st->pub.mosq, &mid, st->topic, (int)strlen(payload), payload, 1,
				   false);
	int64_t timeout_at = myce_now_us() + LG_REPLY_TIMEOUT_US;
	int64_t until = lg_ctx_until(ctx, timeout_at);
	/* Not connected: the message is queued all the same and goes out on reconnection. */
	bool queued = rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST;

	pthread_mutex_lock(&st->rec.lock);
	if (!queued) {
		log_warn("publish: %s", mosquitto_strerror(rc));
		lg_records_finish(&st->rec, seq, LG_ERROR);
	} else if (st->early_ack[(uint16_t)mid]) {
		st->rec.v[seq].outcome = LG_OK;
		st->rec.v[seq].reply_us = st->early_ack[(uint16_t)mid];
		st->seqs[seq].acked = true;
		st->early_ack[(uint16_t)mid] = 0;
	} else {
		st->mid_seq[(uint16_t)mid] = (int64_t)seq;
	}
	bool keep_going = true;
	for (;;) {
		enum lg_outcome o = st->rec.v[seq].outcome;
		if (o != LG_PENDING) {
			if (o == LG_OK)
				lg_ctx_mark_ready(ctx);
			break;
		}
		pthread_mutex_unlock(&st->rec.lock);
		bool sig = !wait_wake(st, until);
		int64_t now = myce_now_us();
		pthread_mutex_lock(&st->rec.lock);
		if (st->rec.v[seq].outcome != LG_PENDING)
			continue;
		if (sig || now >= until) {
			/* A PUBACK that comes later still counts as acknowledged. */
			bool stopped = sig || until < timeout_at;
			lg_records_finish(&st->rec, seq, stopped ? LG_UNANSWERED : LG_TIMEOUT);
			keep_going = !stopped;
			break;
		}
	}
	pthread_mutex_unlock(&st->rec.lock);
	return keep_going;
}

static void mqtt_write_loop(struct mqtt_state *st)
{
	struct lg_ctx *ctx = st->ctx;
	const int64_t interval = ctx->cfg->interval_us;
	int64_t next = myce_now_us();
	for (;;) {
		if (net_wait(-1, 0, lg_ctx_until(ctx, next), ctx->sig_fd) == NET_STOP)
			return;
		if (ctx->deadline_us && myce_now_us() >= ctx->deadline_us)
			return;
		if (!atomic_load(&st->pub.connected)) {
			/* Publishing now would only queue: wait for the connection. */
			if (!wait_wake(st, lg_ctx_until(ctx, myce_now_us() + interval)))
				return;
			next = myce_now_us();
			continue;
		}
		int64_t sent = myce_now_us();
		if (!mqtt_request(st))
			return;
		int64_t since = sent - st->rec.mono0_us;
		next = st->rec.mono0_us + (since / interval + 1) * interval;
	}
}

/* Waits until every acknowledged reading arrived, and the reading the stop
 * interrupted was acknowledged, MQTT_DRAIN_US at most. */
static void mqtt_drain(struct mqtt_state *st)
{
	int64_t until = myce_now_us() + MQTT_DRAIN_US;
	for (;;) {
		pthread_mutex_lock(&st->rec.lock);
		bool done = true;
		for (size_t i = 0; i < st->rec.n && done; i++) {
			const struct mqtt_seq *s = &st->seqs[i];
			enum lg_outcome o = st->rec.v[i].outcome;
			done = s->acked ? s->recv_count > 0 : o != LG_UNANSWERED && o != LG_PENDING;
		}
		pthread_mutex_unlock(&st->rec.lock);
		if (done || myce_now_us() >= until || !wait_wake(st, until))
			return;
	}
}

static void mqtt_report(struct mqtt_state *st, int64_t end_us, int64_t end_mono,
			struct lg_report *rep)
{
	pthread_mutex_lock(&st->rec.lock);
	struct lg_stats stats;
	lg_records_stats(&st->rec, end_us, &stats);
	uint64_t acked = 0, received = 0, missing = 0;
	_cleanup_free_ int64_t *delivery = xmalloc(st->rec.n * sizeof(int64_t));
	size_t nd = 0;
	for (size_t i = 0; i < st->rec.n; i++) {
		const struct mqtt_seq *s = &st->seqs[i];
		acked += s->acked;
		if (s->recv_count) {
			received++;
			delivery[nd++] = s->recv_us - st->rec.v[i].send_us;
		} else if (s->acked) {
			missing++;
		}
	}
	lg_sort_i64(delivery, nd);

	lg_report_str(rep, "mode", "mqtt");
	lg_report_str(rep, "addr", st->ctx->cfg->addr);
	lg_report_str(rep, "topic", st->topic);
	lg_report_int(rep, "start_unix_us", st->rec.wall0_us);
	lg_report_ms(rep, "duration_ms", (double)(end_mono - st->rec.mono0_us) / 1000.0);
	lg_report_stats(rep, &stats);
	lg_report_int(rep, "published", (int64_t)stats.requests);
	lg_report_int(rep, "acknowledged", (int64_t)acked);
	lg_report_int(rep, "acked", (int64_t)acked);
	lg_report_int(rep, "late_acks", (int64_t)st->late_acks);
	lg_report_int(rep, "received", (int64_t)received);
	lg_report_int(rep, "missing", (int64_t)missing);
	lg_report_int(rep, "duplicates", (int64_t)st->duplicates);
	lg_report_int(rep, "out_of_order", (int64_t)st->out_of_order);
	lg_report_int(rep, "wrong", (int64_t)st->wrong);
	lg_report_int(rep, "foreign", (int64_t)st->foreign);
	lg_report_ms(rep, "sub_max_gap_ms", (double)st->sub_max_gap_us / 1000.0);
	lg_report_ms(rep, "sub_max_gap_at_ms",
		     st->sub_max_gap_us ? (double)(st->sub_max_gap_at_us - st->rec.wall0_us) / 1000.0 : 0);
	lg_report_ms(rep, "delivery_p50_ms", lg_percentile(delivery, nd, 50) / 1000.0);
	lg_report_ms(rep, "delivery_p99_ms", lg_percentile(delivery, nd, 99) / 1000.0);
	lg_report_ms(rep, "delivery_max_ms", nd ? (double)delivery[nd - 1] / 1000.0 : 0);
	uint64_t pub_rc = atomic_load(&st->pub.disconnects), sub_rc = atomic_load(&st->sub.disconnects);
	lg_report_int(rep, "resets", (int64_t)(pub_rc + sub_rc));
	lg_report_int(rep, "pub_reconnects", (int64_t)pub_rc);
	lg_report_int(rep, "sub_reconnects", (int64_t)sub_rc);
	pthread_mutex_unlock(&st->rec.lock);
}

int mqtt_run(struct lg_ctx *ctx, struct lg_report *rep, struct myce_error **err)
{
	const struct lg_config *cfg = ctx->cfg;
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	int gr = getnameinfo((const struct sockaddr *)&cfg->sa, cfg->sa_len, host, sizeof(host), serv,
			     sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
	if (gr != 0)
		return myce_error_set(err, EINVAL, "getnameinfo: %s", gai_strerror(gr));
	int port = atoi(serv);

	mosquitto_lib_init();
	struct mqtt_state *st = xzalloc(sizeof(*st));
	st->ctx = ctx;
	st->topic = xasprintf("%s/temp", cfg->prefix);
	st->max_seq_seen = -1;
	memset(st->mid_seq, 0xff, sizeof(st->mid_seq)); /* all -1 */
	lg_records_init(&st->rec);
	st->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	_cleanup_free_ char *sub_id = xasprintf("%s-sub-%d", cfg->prefix, (int)getpid());
	_cleanup_free_ char *pub_id = xasprintf("%s-pub-%d", cfg->prefix, (int)getpid());
	/* Declared before the first goto: cleanups must not be jumped over. */
	struct lg_probe *probe = NULL;
	_cleanup_error_ struct myce_error *perr = NULL;
	int r;
	if (st->wake_fd < 0) {
		r = myce_error_errno(err, "eventfd");
		goto out;
	}
	if ((r = client_init(st, &st->sub, "subscriber", sub_id, false, err)) < 0 ||
	    (r = client_init(st, &st->pub, "publisher", pub_id, true, err)) < 0 ||
	    (r = client_start(&st->sub, host, port, err)) < 0 ||
	    (r = client_start(&st->pub, host, port, err)) < 0)
		goto out;

	/* Both clients up (and subscribed) before the first reading. */
	int64_t until = lg_ctx_until(ctx, myce_now_us() + LG_FIRST_CONNECT_US);
	for (;;) {
		pthread_mutex_lock(&st->rec.lock);
		bool up = st->subscribed && atomic_load(&st->pub.connected);
		pthread_mutex_unlock(&st->rec.lock);
		if (up)
			break;
		if (myce_now_us() >= until || !wait_wake(st, until)) {
			r = myce_error_set(err, ETIMEDOUT, "MQTT broker %s never reachable (%s)",
					   cfg->addr, st->subscribed ? "publisher" : "subscriber");
			goto out;
		}
	}
	ctx->ever_connected = true;

	if (lg_probe_start(cfg, st->rec.mono0_us, &probe, &perr) < 0)
		log_warn("probe: %s", myce_error_msg(perr));

	mqtt_write_loop(st);
	int64_t end_us = lg_records_now(&st->rec);
	int64_t end_mono = myce_now_us();
	lg_probe_stop(probe);
	lg_ctx_stopped(ctx);
	mqtt_drain(st);
	client_stop(&st->pub);
	client_stop(&st->sub);
	mqtt_report(st, end_us, end_mono, rep);
	lg_probe_report_free(probe, rep);

	if (cfg->trace_path) {
		_cleanup_error_ struct myce_error *terr = NULL;
		if (lg_records_write_trace(&st->rec, cfg->trace_path, &terr) < 0)
			log_error("%s", myce_error_msg(terr));
	}
	r = 0;
out:
	client_free(&st->pub);
	client_free(&st->sub);
	if (ctx->ever_connected)
		forget_session(sub_id, host, port);
	if (st->wake_fd >= 0)
		close(st->wake_fd);
	lg_records_free(&st->rec);
	free(st->seqs);
	free(st->topic);
	free(st);
	mosquitto_lib_cleanup();
	return r;
}
