/* The applications of the evaluation: how each is started in its pod, how
 * its state is loaded (data_mb MiB of 1 KiB values), which workload drives
 * it, and how to tell that the workload's writes reach it again after a
 * migration (polled, through a new connection to the service). */
#include "bench.h"

#include <errno.h>
#include <string.h>

/* The workload's key prefix and MQTT topic (myce-loadgen's defaults). */
#define LOADGEN_MQTT_TOPIC "sensor/temp"
/* How often a counter is read while waiting for the client. */
#define POLL_MS 20

static uint64_t splitmix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

void bench_payload(uint64_t seed, char *buf, size_t n)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	/* splitmix64 from a state that is itself a hash of the seed: items
	 * must not be shifted copies of each other, or zstd finds them. */
	uint64_t x = splitmix64(seed ^ 0x6A09E667F3BCC909ULL);
	for (size_t i = 0; i < n; i++) {
		x += 0x9E3779B97F4A7C15ULL;
		/* 6 random bits a byte, as base64 of random data. */
		buf[i] = abc[splitmix64(x) & 63];
	}
}

static uint64_t items(int data_mb)
{
	return (uint64_t)data_mb * 1024 * 1024 / BENCH_ITEM_SIZE;
}

/* Polls read_counter until it moves past its first value. */
static int wait_counter(struct bench *b, const char *ip, int port, int timeout_ms,
			int (*read_counter)(struct kvc *c, long long *v, struct myce_error **err), struct myce_error **err)
{
	struct kvc c = {.fd = -1};
	long long first = -1;
	for (int64_t end = myce_now_us() + (int64_t)timeout_ms * 1000;;) {
		_cleanup_error_ struct myce_error *e = NULL;
		long long v;
		if (c.fd < 0 && kvc_connect(&c, ip, port, 500, &e) < 0)
			v = -1;
		else if (read_counter(&c, &v, &e) < 0) {
			kvc_close(&c);
			v = -1;
		}
		if (v >= 0 && first < 0)
			first = v;
		else if (v > first && first >= 0)
			break;
		if (myce_now_us() > end) {
			kvc_close(&c);
			return myce_error_set(err, ETIMEDOUT, "no write from the client within %d ms%s%s", timeout_ms,
					      e ? ": " : "", e ? myce_error_msg(e) : "");
		}
		if (!bench_sleep(b, POLL_MS)) {
			kvc_close(&c);
			return myce_error_set(err, EINTR, "stopped");
		}
	}
	kvc_close(&c);
	return 0;
}

/* ---- Redis ---------------------------------------------------------------- */

static void redis_cmd(const struct bench *b, struct strv *argv)
{
	static const char *const cmd[] = {"redis-server", "--port", "6379", "--bind", "0.0.0.0", "--save", "",
					  "--appendonly", "no", "--protected-mode", "no", "--enable-debug-command",
					  "yes"};
	for (size_t i = 0; i < ARRAY_SIZE(cmd); i++)
		strv_push(argv, cmd[i]);
}

static int redis_dbsize(struct kvc *c, long long *v, struct myce_error **err)
{
	_cleanup_free_ char *r = NULL;
	if (resp_command(c, &r, err, 1, "DBSIZE") < 0)
		return -1;
	if (sscanf(r, ":%lld", v) != 1)
		return myce_error_set(err, EPROTO, "redis: DBSIZE answered %s", r);
	return 0;
}

static int redis_populate(const char *ip, int port, int data_mb, const char *fill, struct myce_error **err)
{
	if (!fill || strcmp(fill, "populate") != 0)
		return redis_fill_sensor(ip, port, data_mb, err);
	struct kvc c;
	if (kvc_connect(&c, ip, port, 60000, err) < 0)
		return myce_error_wrap(err, "redis");
	uint64_t n = items(data_mb);
	_cleanup_free_ char *count = xasprintf("%llu", (unsigned long long)n);
	_cleanup_free_ char *size = xasprintf("%d", BENCH_ITEM_SIZE);
	_cleanup_free_ char *r = NULL;
	long long have = 0;
	int rc = resp_command(&c, &r, err, 5, "DEBUG", "POPULATE", count, "state", size);
	if (rc == 0)
		rc = redis_dbsize(&c, &have, err);
	kvc_close(&c);
	if (rc < 0)
		return -1;
	if ((uint64_t)have < n)
		return myce_error_set(err, EIO, "redis: %lld keys after DEBUG POPULATE %llu", have,
				      (unsigned long long)n);
	return 0;
}

static int redis_wait_client(struct bench *b, const char *ip, int port, int timeout_ms, struct myce_error **err)
{
	return wait_counter(b, ip, port, timeout_ms, redis_dbsize, err);
}

/* ---- memcached ------------------------------------------------------------ */

static void memcached_cmd(const struct bench *b, struct strv *argv)
{
	static const char *const cmd[] = {"memcached", "-u", "root", "-p", "11211", "-l", "0.0.0.0", "-U", "0"};
	for (size_t i = 0; i < ARRAY_SIZE(cmd); i++)
		strv_push(argv, cmd[i]);
	/* Item memory: room for the state and the workload's keys (memcached
	 * takes its slab pages as they fill, so a large limit costs nothing). */
	strv_pushf(argv, "-m");
	strv_pushf(argv, "%d", b->opt.data_mb * 2 + 256);
}

static int mc_cmd_set(struct kvc *c, long long *v, struct myce_error **err)
{
	return mc_stat(c, "cmd_set", v, err);
}

static int memcached_populate(const char *ip, int port, int data_mb, const char *fill, struct myce_error **err)
{
	(void)fill;
	struct kvc c;
	if (kvc_connect(&c, ip, port, 60000, err) < 0)
		return myce_error_wrap(err, "memcached");
	uint64_t n = items(data_mb);
	long long have = 0;
	int rc = mc_set_range(&c, "state", 0, n, BENCH_ITEM_SIZE, err);
	if (rc == 0)
		rc = mc_stat(&c, "curr_items", &have, err);
	kvc_close(&c);
	if (rc < 0)
		return -1;
	if ((uint64_t)have < n)
		return myce_error_set(err, EIO, "memcached holds %lld of %llu items (evictions?)", have,
				      (unsigned long long)n);
	return 0;
}

static int memcached_wait_client(struct bench *b, const char *ip, int port, int timeout_ms, struct myce_error **err)
{
	return wait_counter(b, ip, port, timeout_ms, mc_cmd_set, err);
}

/* ---- mosquitto ------------------------------------------------------------ */

static void mosquitto_cmd(const struct bench *b, struct strv *argv)
{
	strv_push(argv, "mosquitto");
	strv_push(argv, "-c");
	strv_push(argv, b->mosquitto_conf);
}

static int mosquitto_populate(const char *ip, int port, int data_mb, const char *fill, struct myce_error **err)
{
	(void)fill;
	return mqtt_populate(ip, port, "state", items(data_mb), BENCH_ITEM_SIZE, err);
}

static int mosquitto_wait_client(struct bench *b, const char *ip, int port, int timeout_ms, struct myce_error **err)
{
	return mqtt_wait_message(b, ip, port, LOADGEN_MQTT_TOPIC, timeout_ms, err);
}

static const struct bench_app apps[] = {
	{"redis", "redis", 6379, redis_cmd, redis_populate, redis_wait_client},
	{"mosquitto", "mqtt", 1883, mosquitto_cmd, mosquitto_populate, mosquitto_wait_client},
	{"memcached", "memcached", 11211, memcached_cmd, memcached_populate, memcached_wait_client},
};

const struct bench_app *bench_app_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(apps); i++)
		if (!strcmp(apps[i].name, name))
			return &apps[i];
	return NULL;
}

const char *bench_app_names(void)
{
	return "redis,mosquitto,memcached";
}

int bench_apps_prepare(struct bench *b, const char *dir, struct myce_error **err)
{
	/* As the end-to-end tests run it: no persistence, anyone may connect. */
	static const char conf[] = "listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\nuser root\n";
	free(b->mosquitto_conf);
	b->mosquitto_conf = xasprintf("%s/mosquitto.conf", dir);
	int r = myce_write_file_atomic(b->mosquitto_conf, conf, strlen(conf), 0644);
	if (r < 0) {
		errno = -r;
		return myce_error_errno(err, "write %s", b->mosquitto_conf);
	}
	return 0;
}
