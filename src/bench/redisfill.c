/* The paper's workload as Redis state: a sensor's history of timestamped,
 * randomly generated temperature readings, one key per reading in the
 * record format of myce-loadgen's sensor (key "<prefix>:<seq>", value
 * "<unix_us>:<celsius, 2 decimals>"), loaded until Redis's used_memory
 * reaches the requested size.
 *
 * Readings are 1 ms apart (the paper's rate) with microsecond jitter and end
 * now; the temperature is a random walk around 21 °C plus random noise, from
 * a seeded PRNG, so a run is reproducible but zstd finds no shortcut beyond
 * what real readings offer.  Keys go in pipelined MSETs (PIPE commands of
 * BATCH pairs in flight), which loads ~500,000 readings a second here; then
 * it completes the hash table's resize if the fill started one. */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 256 /* readings per MSET */
#define PIPE 16   /* MSETs per round trip */
/* used_memory is read again after at most this many readings. */
#define CHECK_EVERY 65536

struct sensor_gen {
	uint64_t x;        /* PRNG state */
	int64_t t_us;      /* next reading's time, before jitter */
	double temp;       /* random walk */
};

static uint64_t next_rand(struct sensor_gen *g)
{
	/* splitmix64 */
	uint64_t z = (g->x += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* A reading's value: "<unix_us>:<temp>", as src/loadgen/sensor.c writes it. */
static int sensor_reading(struct sensor_gen *g, char *out, size_t cap)
{
	uint64_t r = next_rand(g);
	/* The walk: steps of at most ±0.05 °C, pulled back towards 21 °C. */
	g->temp += ((double)(r & 0xffff) / 65535.0 - 0.5) * 0.1 - (g->temp - 21.0) * 0.001;
	double noise = ((double)((r >> 16) & 0xffff) / 65535.0 - 0.5) * 0.4;
	int64_t ts = g->t_us + (int64_t)((r >> 32) % 1000);
	g->t_us += 1000;
	return snprintf(out, cap, "%" PRId64 ":%.2f", ts, g->temp + noise);
}

/* Appends one RESP bulk string. */
static size_t put_bulk(char *p, const char *s, size_t n)
{
	int h = sprintf(p, "$%zu\r\n", n);
	memcpy(p + h, s, n);
	memcpy(p + h + n, "\r\n", 2);
	return (size_t)h + n + 2;
}

/* used_memory from INFO memory (a bulk reply, read line by line). */
static int redis_used_memory(struct kvc *c, uint64_t *used, struct myce_error **err)
{
	static const char cmd[] = "*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n";
	_cleanup_free_ char *head = NULL;
	if (kvc_send(c, cmd, sizeof(cmd) - 1, err) < 0 || kvc_line(c, &head, err) < 0)
		return myce_error_wrap(err, "redis INFO");
	long long left;
	if (sscanf(head, "$%lld", &left) != 1 || left < 0)
		return myce_error_set(err, EPROTO, "redis INFO answered %s", head);
	bool found = false;
	left += 2; /* the bulk's CRLF */
	while (left > 0) {
		_cleanup_free_ char *line = NULL;
		if (kvc_line(c, &line, err) < 0)
			return myce_error_wrap(err, "redis INFO");
		left -= (long long)strlen(line) + 2;
		unsigned long long v;
		if (sscanf(line, "used_memory:%llu", &v) == 1) {
			*used = v;
			found = true;
		}
	}
	return found ? 0 : myce_error_set(err, EPROTO, "redis INFO memory: no used_memory");
}

/* Sends n readings from *seq on as pipelined MSETs and checks every reply. */
static int send_readings(struct kvc *c, struct sensor_gen *g, uint64_t *seq, uint64_t n, char *buf,
			 struct myce_error **err)
{
	while (n > 0) {
		size_t len = 0, cmds = 0;
		for (; cmds < PIPE && n > 0; cmds++) {
			uint64_t k = n < BATCH ? n : BATCH;
			len += (size_t)sprintf(buf + len, "*%" PRIu64 "\r\n$4\r\nMSET\r\n", 2 * k + 1);
			for (uint64_t i = 0; i < k; i++) {
				char key[48], val[48];
				int kl = snprintf(key, sizeof(key), "state:%" PRIu64, (*seq)++);
				int vl = sensor_reading(g, val, sizeof(val));
				len += put_bulk(buf + len, key, (size_t)kl);
				len += put_bulk(buf + len, val, (size_t)vl);
			}
			n -= k;
		}
		if (kvc_send(c, buf, len, err) < 0)
			return myce_error_wrap(err, "redis MSET");
		for (size_t i = 0; i < cmds; i++) {
			_cleanup_free_ char *line = NULL;
			if (kvc_line(c, &line, err) < 0)
				return myce_error_wrap(err, "redis MSET");
			if (strcmp(line, "+OK") != 0)
				return myce_error_set(err, EIO, "redis MSET: %s", line);
		}
	}
	return 0;
}

/* 1 while the main dict is being rehashed into a larger table, 0 when not,
 * -1 if DEBUG HTSTATS is not available. */
static int redis_rehashing(struct kvc *c, struct myce_error **err)
{
	static const char cmd[] = "*3\r\n$5\r\nDEBUG\r\n$7\r\nHTSTATS\r\n$1\r\n0\r\n";
	_cleanup_free_ char *head = NULL;
	if (kvc_send(c, cmd, sizeof(cmd) - 1, err) < 0 || kvc_line(c, &head, err) < 0)
		return myce_error_wrap(err, "redis DEBUG HTSTATS");
	long long left;
	if (head[0] == '-')
		return -1;
	if (sscanf(head, "$%lld", &left) != 1 || left < 0)
		return myce_error_set(err, EPROTO, "redis DEBUG HTSTATS answered %s", head);
	int rehashing = 0;
	for (left += 2; left > 0;) {
		_cleanup_free_ char *line = NULL;
		if (kvc_line(c, &line, err) < 0)
			return myce_error_wrap(err, "redis DEBUG HTSTATS");
		left -= (long long)strlen(line) + 2;
		rehashing |= strstr(line, "rehashing target") != NULL;
	}
	return rehashing;
}

/* Finishes an incremental rehash that the fill started (crossing a power
 * of two of keys): left to itself Redis moves ~26,000 keys a second, so a
 * 4-million-key table spends 2 minutes rewriting the pointers of every
 * entry, all over the heap -- a server in that state dirties memory faster
 * than a 10 Mbit/s pre-copy sends it.  Every key lookup moves one bucket:
 * pipelined EXISTS of many keys finish it in seconds. */
static int finish_rehash(struct kvc *c, uint64_t keys, char *buf, struct myce_error **err)
{
	uint64_t k = 0;
	for (;;) {
		int r = redis_rehashing(c, err);
		if (r < 0)
			return *err ? -1 : 0; /* no DEBUG: nothing to wait for */
		if (r == 0)
			return 0;
		for (int round = 0; round < 64; round++) {
			size_t len = 0;
			for (size_t cmds = 0; cmds < PIPE; cmds++) {
				len += (size_t)sprintf(buf + len, "*%d\r\n$6\r\nEXISTS\r\n", BATCH + 1);
				for (int i = 0; i < BATCH; i++) {
					char key[48];
					int kl = snprintf(key, sizeof(key), "state:%" PRIu64, k++ % keys);
					len += put_bulk(buf + len, key, (size_t)kl);
				}
			}
			if (kvc_send(c, buf, len, err) < 0)
				return myce_error_wrap(err, "redis EXISTS");
			for (size_t i = 0; i < PIPE; i++) {
				_cleanup_free_ char *line = NULL;
				if (kvc_line(c, &line, err) < 0)
					return myce_error_wrap(err, "redis EXISTS");
				if (line[0] != ':')
					return myce_error_set(err, EIO, "redis EXISTS: %s", line);
			}
		}
	}
}

/* Readings from *seq on until used_memory >= target. */
static int fill_to(struct kvc *c, struct sensor_gen *g, uint64_t *seq, uint64_t target, char *buf,
		   struct myce_error **err)
{
	uint64_t used, used0 = 0, seq0 = *seq;
	int r = redis_used_memory(c, &used, err);
	used0 = used;
	while (r == 0 && used < target) {
		/* Readings still needed, from the bytes each took so far (~100),
		 * then a check: the first batch only measures. */
		uint64_t per = *seq > seq0 && used > used0 ? (used - used0) / (*seq - seq0) : 0;
		uint64_t n = per ? (target - used) / per + 1 : 4096;
		if (n > CHECK_EVERY)
			n = CHECK_EVERY;
		r = send_readings(c, g, seq, n, buf, err);
		if (r == 0)
			r = redis_used_memory(c, &used, err);
	}
	return r;
}

int redis_fill_sensor(const char *ip, int port, int data_mb, struct myce_error **err)
{
	struct kvc c;
	if (kvc_connect(&c, ip, port, 60000, err) < 0)
		return myce_error_wrap(err, "redis");
	/* Per MSET: its header, then per reading two bulks of < 48 bytes + 16. */
	_cleanup_free_ char *buf = xmalloc(PIPE * (32 + BATCH * 2 * 64));
	const uint64_t target = (uint64_t)data_mb << 20;
	/* One reading per ms, ending about now (~100 bytes of used_memory each). */
	struct sensor_gen g = {.x = 0x5EED0F5E, .temp = 21.0};
	g.t_us = myce_wall_us() - (int64_t)((uint64_t)data_mb * 10000 * 1000);
	uint64_t seq = 0;
	int r = fill_to(&c, &g, &seq, target, buf, err);
	/* The resize's end frees the old table: top up (the next resize is a
	 * doubling away). */
	if (r == 0 && seq > 0 && (r = finish_rehash(&c, seq, buf, err)) == 0)
		r = fill_to(&c, &g, &seq, target, buf, err);
	kvc_close(&c);
	return r < 0 ? -1 : 0;
}
