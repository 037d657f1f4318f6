/* myce-loadgen: the paper's workload.  A sensor writes a timestamped
 * temperature reading every interval over one connection it keeps open, and
 * records, for every request, when it was sent, when its reply came and how
 * it ended.  The records give what a client saw during a live migration: the
 * longest silence on the open connection, latencies, lost writes.
 *
 * Files: main.c (CLI, signals, dispatch), net.c (sockets, waiting),
 * record.c (request records, gaps, latencies, trace), sensor.c (readings),
 * kv.c (request loop + verification shared by Redis and memcached),
 * resp.c (Redis protocol), memcache.c (memcached text protocol),
 * mqtt.c (MQTT publisher/subscriber), probe.c (new-connection probe),
 * report.c (JSON/text output). */
#ifndef MYCE_LOADGEN_H
#define MYCE_LOADGEN_H

#include "error.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* A request without a reply for this long counts as a timeout. */
#define LG_REPLY_TIMEOUT_US (10 * 1000000LL)
/* How long the first connection may take before the server counts as unreachable. */
#define LG_FIRST_CONNECT_US (10 * 1000000LL)
/* Pause between two reconnection attempts. */
#define LG_RECONNECT_DELAY_US (10 * 1000LL)

struct lg_config {
	const char *mode; /* "redis", "memcached", "mqtt" */
	const char *addr; /* as given: IP:PORT */
	struct sockaddr_storage sa;
	socklen_t sa_len;
	int interval_us;
	int64_t duration_us; /* 0: until SIGINT/SIGTERM */
	int probe_us;	     /* 0: no probe */
	int probe_timeout_us;
	const char *trace_path;
	const char *prefix;
	const char *ready_path;
	bool json;
};

/* ---- net.c ---------------------------------------------------------------- */

/* Parses "IP:PORT" or "[IPv6]:PORT" (numeric only). */
int net_parse_addr(const char *s, struct sockaddr_storage *sa, socklen_t *len,
		   struct myce_error **err);
/* Non-blocking TCP connection with TCP_NODELAY, established within timeout_us
 * (abandoned early if stop_fd becomes readable).  Returns the fd (left
 * non-blocking) or a negative errno. */
int net_connect(const struct sockaddr_storage *sa, socklen_t len, int64_t timeout_us, int stop_fd,
		struct myce_error **err);

/* What a wait ended with. */
enum net_wait { NET_READY, NET_TIMEOUT, NET_STOP };
/* Waits until fd has `events` (fd < 0: just waits), the monotonic time
 * until_us passes, or stop_fd becomes readable (stop_fd < 0: none). */
enum net_wait net_wait(int fd, short events, int64_t until_us, int stop_fd);

/* A growable byte buffer. */
struct net_buf {
	char *data;
	size_t len, cap;
};
void net_buf_append(struct net_buf *b, const void *p, size_t n);
void net_buf_printf(struct net_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void net_buf_consume(struct net_buf *b, size_t n);
void net_buf_free(struct net_buf *b);

/* Sends all of buf; returns 0, NET-style -ETIMEDOUT, -EINTR (stop), or -errno. */
int net_send_all(int fd, const void *buf, size_t len, int64_t until_us, int stop_fd);
/* Reads what is available into b (waiting first); returns bytes read (> 0),
 * -EPIPE on EOF, -ETIMEDOUT, -EINTR (stop) or -errno. */
int net_recv_some(int fd, struct net_buf *b, int64_t until_us, int stop_fd);

/* ---- record.c ------------------------------------------------------------- */

enum lg_outcome {
	LG_PENDING,    /* sent, no outcome yet */
	LG_OK,	       /* acknowledged */
	LG_ERROR,      /* the server answered with an error */
	LG_TIMEOUT,    /* no reply within LG_REPLY_TIMEOUT_US */
	LG_RESET,      /* the connection broke while waiting */
	LG_UNANSWERED, /* still waiting when the run stopped */
};
const char *lg_outcome_name(enum lg_outcome o);

struct lg_record {
	int64_t send_us;  /* wall-clock µs (monotonic since the start), also the value's timestamp */
	int64_t reply_us; /* when the outcome became known; 0 while pending */
	uint32_t conn;	  /* connection generation the request went out on */
	uint8_t outcome;  /* enum lg_outcome */
};

/* Every request of a run, indexed by sequence number (starting at 0). */
struct lg_records {
	struct lg_record *v;
	size_t n, cap;
	int64_t mono0_us, wall0_us; /* the run's start, both clocks */
	pthread_mutex_t lock;	    /* taken only by modes with callbacks (MQTT) */
};
void lg_records_init(struct lg_records *r);
void lg_records_free(struct lg_records *r);
/* Wall-clock microseconds derived from the monotonic clock (never jumps). */
int64_t lg_records_now(const struct lg_records *r);
/* Appends a pending request sent now on connection conn; returns its seq. */
uint64_t lg_records_add(struct lg_records *r, uint32_t conn);
void lg_records_finish(struct lg_records *r, uint64_t seq, enum lg_outcome o);

struct lg_stats {
	uint64_t requests, ok, errors, timeouts, resets, unanswered; /* by outcome */
	double max_gap_ms;	/* longest silence on one open connection */
	double max_gap_at_ms;	/* when that silence began, since the start */
	double max_outage_ms;	/* longest time between two acknowledgements, across reconnects */
	double p50_ms, p99_ms, max_latency_ms;
};
/* Computes the statistics; end_us (wall, as lg_records_now) closes a trailing silence. */
void lg_records_stats(const struct lg_records *r, int64_t end_us, struct lg_stats *st);
/* Writes seq,send_us,reply_us,outcome for every request. */
int lg_records_write_trace(const struct lg_records *r, const char *path, struct myce_error **err);

void lg_sort_i64(int64_t *v, size_t n);
/* Percentile (0..100, nearest rank) of n sorted values; 0 if n == 0. */
double lg_percentile(const int64_t *sorted, size_t n, unsigned pct);

/* ---- sensor.c ------------------------------------------------------------- */

/* The temperature reading number seq reports, in °C: deterministic, so the
 * value written can be recomputed when verifying. */
double sensor_temp(uint64_t seq);
/* "<unix_us>:<temp>" (caller frees). */
char *sensor_value(uint64_t seq, int64_t unix_us);

/* ---- report.c ------------------------------------------------------------- */

/* Ordered metrics, printed as one JSON object or as text lines. */
struct lg_report;
struct lg_report *lg_report_new(void);
void lg_report_free(struct lg_report *rep);
void lg_report_int(struct lg_report *rep, const char *name, int64_t v);
void lg_report_ms(struct lg_report *rep, const char *name, double v);
void lg_report_bool(struct lg_report *rep, const char *name, bool v);
void lg_report_str(struct lg_report *rep, const char *name, const char *v);
/* Adds the request statistics: requests, acked, errors, timeouts, unanswered,
 * max_gap_ms, max_gap_at_ms, max_outage_ms, p50_ms, p99_ms, max_latency_ms. */
void lg_report_stats(struct lg_report *rep, const struct lg_stats *st);
int lg_report_print(const struct lg_report *rep, bool json, FILE *out);

/* ---- probe.c -------------------------------------------------------------- */

struct lg_probe;
/* Starts the probe thread: every cfg->probe_us a new connection, one request.
 * *out stays NULL when probing is disabled.  t0_us (monotonic) is the run's
 * start, for the times reported. */
int lg_probe_start(const struct lg_config *cfg, int64_t t0_us, struct lg_probe **out,
		   struct myce_error **err);
/* Stops the thread (p may be NULL). */
void lg_probe_stop(struct lg_probe *p);
/* Stops the thread if need be, adds probes, probes_failed, newconn_fail_ms,
 * newconn_fail_at_ms and probe_max_ms (zeros if p is NULL), and frees p. */
void lg_probe_report_free(struct lg_probe *p, struct lg_report *rep);

/* ---- the workloads -------------------------------------------------------- */

/* Shared by the workloads, owned by main(). */
struct lg_ctx {
	const struct lg_config *cfg;
	int sig_fd;	     /* readable when SIGINT/SIGTERM arrived */
	int64_t deadline_us; /* monotonic end of the run; 0 = none */
	bool ever_connected; /* the server was reachable at least once */
	bool ready;	     /* the ready file exists */
};
/* Creates the ready file once (after the first reply). */
void lg_ctx_mark_ready(struct lg_ctx *ctx);
/* Called when the write phase is over: takes the pending signal, if any, off
 * sig_fd so that only a second one interrupts the verification, and lifts
 * the deadline. */
void lg_ctx_stopped(struct lg_ctx *ctx);
/* The time until which a wait may go: min(until_us, deadline). */
int64_t lg_ctx_until(const struct lg_ctx *ctx, int64_t until_us);

/* A key/value protocol driven by kv.c. */
struct kv_proto {
	const char *name;
	/* Appends a request storing val under key. */
	void (*encode_set)(struct net_buf *out, const char *key, const char *val);
	/* Parses a reply to a set: bytes consumed (> 0), 0 if incomplete, < 0
	 * if the stream is not the protocol.  *ok tells stored or error reply. */
	ssize_t (*parse_set_reply)(const char *in, size_t len, bool *ok);
	/* Appends a request fetching n keys at once. */
	void (*encode_get)(struct net_buf *out, char *const *keys, size_t n);
	/* Parses the reply to encode_get: vals[i] (caller frees) is the value
	 * of keys[i] or NULL if absent.  Returns as parse_set_reply. */
	ssize_t (*parse_get_reply)(const char *in, size_t len, char *const *keys, size_t n,
				   char **vals);
};
extern const struct kv_proto resp_proto;
extern const struct kv_proto memcache_proto;

/* Each fills rep; returns 0, or < 0 with *err set when the server could never be reached. */
int kv_run(struct lg_ctx *ctx, const struct kv_proto *proto, struct lg_report *rep,
	   struct myce_error **err);
int mqtt_run(struct lg_ctx *ctx, struct lg_report *rep, struct myce_error **err);

#endif
