/* MQTT through libmosquitto, driven synchronously (mosquitto_loop in the
 * calling thread, so it also works from a thread inside a node's network
 * namespace): retained messages as the broker's state, and an observer that
 * tells when the workload's readings flow again. */
#include "bench.h"

#include <errno.h>
#include <mosquitto.h>
#include <string.h>

/* QoS 1 messages in flight while loading the state. */
#define MQTT_INFLIGHT 1000

struct mqtt_pop {
	uint64_t acked;
};

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
	((struct mqtt_pop *)obj)->acked++;
}

static void mosquitto_freep(struct mosquitto **m)
{
	if (*m) {
		mosquitto_disconnect(*m);
		mosquitto_destroy(*m);
	}
}
#define _cleanup_mosq_ __attribute__((cleanup(mosquitto_freep)))

int mqtt_populate(const char *ip, int port, const char *prefix, uint64_t n, size_t size, struct myce_error **err)
{
	struct mqtt_pop st = {0};
	_cleanup_mosq_ struct mosquitto *m = mosquitto_new(NULL, true, &st);
	if (!m)
		return myce_error_errno(err, "mosquitto_new");
	mosquitto_publish_callback_set(m, on_publish);
	mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, MQTT_INFLIGHT);
	int rc = mosquitto_connect(m, ip, port, 30);
	if (rc != MOSQ_ERR_SUCCESS)
		return myce_error_set(err, EIO, "mqtt connect %s:%d: %s", ip, port, mosquitto_strerror(rc));
	_cleanup_free_ char *val = xmalloc(size);
	for (uint64_t i = 0; i < n; i++) {
		_cleanup_free_ char *topic = xasprintf("%s/%llu", prefix, (unsigned long long)i);
		bench_payload(i, val, size);
		rc = mosquitto_publish(m, NULL, topic, (int)size, val, 1, true);
		if (rc != MOSQ_ERR_SUCCESS)
			return myce_error_set(err, EIO, "mqtt publish: %s", mosquitto_strerror(rc));
		/* Let PUBACKs in and queued messages out as we go. */
		if (i % 64 == 63 && (rc = mosquitto_loop(m, 0, 1)) != MOSQ_ERR_SUCCESS)
			return myce_error_set(err, EIO, "mqtt: %s", mosquitto_strerror(rc));
	}
	for (int64_t end = myce_now_us() + 120 * 1000000LL; st.acked < n;) {
		if (myce_now_us() > end)
			return myce_error_set(err, ETIMEDOUT, "mqtt: %llu of %llu retained messages acknowledged",
					      (unsigned long long)st.acked, (unsigned long long)n);
		rc = mosquitto_loop(m, 100, 1);
		if (rc != MOSQ_ERR_SUCCESS)
			return myce_error_set(err, EIO, "mqtt: %s", mosquitto_strerror(rc));
	}
	return 0;
}

struct mqtt_obs {
	const char *topic;
	bool subscribed, got;
};

static void obs_connect(struct mosquitto *m, void *obj, int rc)
{
	struct mqtt_obs *o = obj;
	if (rc == 0)
		mosquitto_subscribe(m, NULL, o->topic, 0);
}

static void obs_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
	((struct mqtt_obs *)obj)->subscribed = true;
}

static void obs_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	if (!msg->retain)
		((struct mqtt_obs *)obj)->got = true;
}

int mqtt_wait_message(struct bench *b, const char *ip, int port, const char *topic, int timeout_ms,
		      struct myce_error **err)
{
	struct mqtt_obs o = {.topic = topic};
	_cleanup_mosq_ struct mosquitto *m = mosquitto_new(NULL, true, &o);
	if (!m)
		return myce_error_errno(err, "mosquitto_new");
	mosquitto_connect_callback_set(m, obs_connect);
	mosquitto_subscribe_callback_set(m, obs_subscribe);
	mosquitto_message_callback_set(m, obs_message);
	bool connected = false;
	for (int64_t end = myce_now_us() + (int64_t)timeout_ms * 1000; !o.got;) {
		if (bench_stop_requested(b))
			return myce_error_set(err, EINTR, "stopped");
		if (myce_now_us() > end)
			return myce_error_set(err, ETIMEDOUT, "no message on %s within %d ms", topic, timeout_ms);
		/* Asynchronous connect: a broker that does not answer costs loop
		 * turns within our deadline, not the kernel's SYN retries. */
		int rc = connected ? mosquitto_loop(m, 50, 1) : mosquitto_connect_async(m, ip, port, 10);
		if (rc == MOSQ_ERR_SUCCESS) {
			connected = true;
			continue;
		}
		/* Broker not there (yet): try again shortly. */
		connected = false;
		o.subscribed = false;
		if (!bench_sleep(b, 20))
			return myce_error_set(err, EINTR, "stopped");
	}
	return 0;
}
