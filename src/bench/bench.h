/* myce-bench: the paper's evaluation (its Figure 5) reproduced in one run.
 * For every inter-node bandwidth it brings up a two-node cluster, and for
 * every repetition, application and technique it starts the application
 * fresh, loads its state, starts the sensor workload, migrates, and records
 * what the migration cost and what the client saw.
 *
 * It drives mycectl and myce-loadgen from its own build directory; it holds
 * the machine's cluster lock for as long as a cluster of its exists.
 *
 * Files: main.c (command line, the matrix), proc.c (child processes),
 * lock.c (the cluster lock), ctl.c (mycectl), apps.c (the applications:
 * commands, state, "is the client back?"), kvclient.c (Redis and memcached
 * protocols, just enough), mqttclient.c (libmosquitto), loadgen.c
 * (myce-loadgen), sample.c (CPU and RSS from /proc), run.c (one run),
 * csv.c (runs.csv), stats.c (medians by group), summary.c (summary.md),
 * plot.c (gnuplot data and script), machine.c (machine.txt). */
#ifndef MYCE_BENCH_H
#define MYCE_BENCH_H

#include "error.h"
#include "http.h"
#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#define BENCH_LOCK_PATH "/run/lock/mycedrive-cluster.lock"
/* Value size of the state loaded into every application: data_mb MiB of
 * values is data_mb * 1024 items. */
#define BENCH_ITEM_SIZE 1024

/* A growable vector of owned strings. */
struct strv {
	char **v;
	size_t n;
};
void strv_push(struct strv *s, const char *str);
void strv_pushf(struct strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Splits "a,b,c" (empty items skipped) and appends them. */
void strv_split(struct strv *s, const char *csv);
bool strv_has(const struct strv *s, const char *str);
void strv_clear(struct strv *s);
/* A NULL-terminated view for execv (points into s; free only the array). */
char **strv_argv(const struct strv *s);

struct bench_opts {
	struct strv apps, modes;
	double rates[32];
	size_t n_rates;
	int delay_ms, reps, data_mb;
	int lead_ms;	     /* workload before the migration */
	int tail_ms;	     /* workload once the client is back */
	int back_timeout_ms; /* how long to wait for the client to come back */
	char *out_dir;
	char *report_dir; /* --report: only summarise an existing runs.csv */
	bool short_mode;
	char *fill;   /* redis: "sensor" (default) or "populate" */
	bool quiesced; /* no workload; Redis DEBUG DIGEST compared across the migration */
};

/* One run of the matrix: a row of runs.csv.  Numbers are NAN when unknown. */
struct bench_result {
	double run; /* 1-based position in the matrix */
	char *app, *technique;
	double rate_mbit, delay_ms;
	char *delay_emulation;
	double rep;
	char *from, *to;
	double started_unix;
	char *outcome; /* the migration's outcome, or "error" when the run itself failed */
	double migration_ms, prepare_ms, dump_ms, transfer_ms, restore_ms, freeze_window_ms;
	double downtime_ms, max_gap_ms, newconn_fail_ms, client_back_ms;
	double bytes_raw, bytes_wire;
	double acked, lost_writes, resets, reconnects;
	double coord_cpu_s, coord_peak_rss_mb, nodes_cpu_s, nodes_peak_rss_mb, criu_cpu_s, criu_peak_rss_mb;
	double link_cpu_s, link_peak_rss_mb;
	double data_mb;
	char *reason;
	char *fill;   /* how the state was loaded (redis: sensor or populate) */
	double load1; /* the machine's 1-minute load average when the run started */
	char *digest; /* quiesced runs: Redis DEBUG DIGEST after vs before, "same" or "differs" */
};
void bench_result_init(struct bench_result *r);
void bench_result_clear(struct bench_result *r);
static inline bool bench_result_ok(const struct bench_result *r)
{
	return r->outcome && !strcmp(r->outcome, "completed");
}

struct bench_results {
	struct bench_result *v;
	size_t n, cap;
};
/* Appends a copy of *r's ownership (r is left empty). */
void bench_results_take(struct bench_results *rs, struct bench_result *r);
void bench_results_free(struct bench_results *rs);

/* The whole run's context. */
struct bench {
	struct bench_opts opt;
	char *ctl, *loadgen; /* mycectl and myce-loadgen beside myce-bench */
	char *cmdline;	     /* as typed, for machine.txt */
	int sig_fd;	     /* signalfd: SIGINT, SIGTERM, SIGHUP */
	bool stopping;	     /* a stop signal arrived */
	int lock_fd;	     /* the cluster lock while held, else -1 */
	bool cluster_up;
	char *delay_emulation; /* what the current cluster's cluster.json says */
	char *mosquitto_conf;
	char *logs_dir; /* where the daemons' logs go when the cluster goes down */
};

/* ---- main.c --------------------------------------------------------------- */

/* True once a stop signal arrived (latched). */
bool bench_stop_requested(struct bench *b);
/* Waits ms milliseconds; false if a stop signal came first. */
bool bench_sleep(struct bench *b, int ms);

/* ---- proc.c --------------------------------------------------------------- */

struct bench_proc {
	pid_t pid;
	int pidfd;
	int status; /* wait status once reaped */
	bool reaped;
};
/* Starts argv[0] (a path) in its own process group (a Ctrl-C on the terminal
 * reaches only myce-bench, which decides), stdin /dev/null, stdout and
 * stderr to the files given (NULL: /dev/null; out_fd/err_fd >= 0 win). */
int proc_spawn(char *const argv[], int out_fd, int err_fd, struct bench_proc *p, struct myce_error **err);
/* Waits until the process ends, timeout_ms passes (-ETIMEDOUT) or, when
 * interruptible, a stop signal arrives (-EINTR).  0 once reaped. */
int proc_wait(struct bench *b, struct bench_proc *p, int timeout_ms, bool interruptible);
/* Signals, and once reaped or on failure releases the pidfd. */
void proc_kill(struct bench_proc *p, int sig);
void proc_release(struct bench_proc *p);
/* Exit status, or -1 if it did not exit normally. */
int proc_exit_code(const struct bench_proc *p);
/* Runs argv to its end (killed after timeout_ms), capturing stdout and
 * stderr (either may be NULL).  Returns the exit status or negative. */
int proc_run(struct bench *b, char *const argv[], int timeout_ms, bool interruptible, char **out, char **errout,
	     struct myce_error **err);

/* ---- lock.c --------------------------------------------------------------- */

/* Takes the machine's cluster lock, waiting for it (a stop signal ends the wait). */
int bench_lock(struct bench *b, struct myce_error **err);
void bench_unlock(struct bench *b);

/* ---- ctl.c ---------------------------------------------------------------- */

/* Takes the lock, removes anything stale, brings up a two-node cluster. */
int ctl_cluster_up(struct bench *b, double rate_mbit, struct myce_error **err);
/* Brings the cluster down (if ours is up) and releases the lock. */
void ctl_cluster_down(struct bench *b);
/* mycectl -o json ARGS...: the parsed output (*out may be NULL when it printed none). */
int ctl_json(struct bench *b, const struct strv *args, int timeout_ms, bool interruptible, cJSON **out,
	     struct myce_error **err);
/* Copies the cluster's daemon logs and the pods' logs (CRIU's among them)
 * to DIR/cluster-logs/: called when a migration did not complete. */
void ctl_save_logs(const char *dir, long src_pod, long dst_pod);
/* The PIDs of the daemons cluster.json names (coordinator, node daemons,
 * userspace links); the count. */
size_t ctl_cluster_pids(pid_t *pids, size_t max);

/* ---- apps.c --------------------------------------------------------------- */

struct bench_app {
	const char *name; /* the application's name in mycectl and on the command line */
	const char *loadgen_mode;
	int port;
	void (*cmd)(const struct bench *b, struct strv *argv);
	/* Loads data_mb MiB of state through a connection to ip:port. */
	int (*populate)(const char *ip, int port, int data_mb, const char *fill, struct myce_error **err);
	/* Waits until the workload's writes reach the server again (through a
	 * new connection to ip:port); -ETIMEDOUT, -EINTR on stop. */
	int (*wait_client)(struct bench *b, const char *ip, int port, int timeout_ms, struct myce_error **err);
};
const struct bench_app *bench_app_find(const char *name);
const char *bench_app_names(void);
/* Files the applications need (the mosquitto configuration) in dir. */
int bench_apps_prepare(struct bench *b, const char *dir, struct myce_error **err);
/* n printable, poorly compressible bytes, a function of seed. */
void bench_payload(uint64_t seed, char *buf, size_t n);

/* ---- kvclient.c ----------------------------------------------------------- */

/* A blocking connection with a buffered reader; every call waits at most
 * the timeout given at connect time. */
struct kvc {
	int fd;
	char buf[16384];
	size_t off, len;
};
int kvc_connect(struct kvc *c, const char *ip, int port, int timeout_ms, struct myce_error **err);
void kvc_close(struct kvc *c);
int kvc_send(struct kvc *c, const void *data, size_t n, struct myce_error **err);
/* One line without its CRLF (caller frees). */
int kvc_line(struct kvc *c, char **line, struct myce_error **err);
/* A Redis command; *reply is a simple reply's line ("+OK", ":42", "-ERR ..."). */
int resp_command(struct kvc *c, char **reply, struct myce_error **err, int argc, ...);
/* memcached: stores n values of size bytes under "<prefix>:<i>" for i in [first, first+n). */
int mc_set_range(struct kvc *c, const char *prefix, uint64_t first, uint64_t n, size_t size, struct myce_error **err);
/* memcached: one counter of `stats`. */
int mc_stat(struct kvc *c, const char *name, long long *value, struct myce_error **err);

/* ---- redisfill.c ---------------------------------------------------------- */

/* Loads the sensor's history (timestamped random temperature readings, one
 * key each, myce-loadgen's record format) until used_memory >= data_mb MiB. */
int redis_fill_sensor(const char *ip, int port, int data_mb, struct myce_error **err);

/* ---- mqttclient.c --------------------------------------------------------- */

/* Publishes n retained QoS 1 messages of size bytes on "<prefix>/<i>" and
 * waits for every PUBACK. */
int mqtt_populate(const char *ip, int port, const char *prefix, uint64_t n, size_t size, struct myce_error **err);
/* Subscribes to topic and waits for one message published after the subscription. */
int mqtt_wait_message(struct bench *b, const char *ip, int port, const char *topic, int timeout_ms,
		      struct myce_error **err);

/* ---- loadgen.c ------------------------------------------------------------ */

struct bench_loadgen {
	struct bench_proc proc;
	char *ready_path, *out_path, *err_path;
};
/* Starts myce-loadgen MODE --addr ADDR and waits for its ready file. */
int loadgen_start(struct bench *b, const char *mode, const char *addr, const char *dir, struct bench_loadgen *lg,
		  struct myce_error **err);
/* SIGINT, waits for its report (it verifies first), parses it. */
int loadgen_stop(struct bench *b, struct bench_loadgen *lg, cJSON **report, struct myce_error **err);
void loadgen_free(struct bench_loadgen *lg);

/* ---- sample.c ------------------------------------------------------------- */

struct bench_usage {
	double coord_cpu_s, coord_peak_rss_mb;
	double nodes_cpu_s, nodes_peak_rss_mb; /* myce-node and myce-agent together */
	double criu_cpu_s, criu_peak_rss_mb;
	double link_cpu_s, link_peak_rss_mb; /* userspace links (myce-link) */
};
struct bench_sampler;
/* Takes the first sample now, then one every period_ms on a thread.  Only
 * the roots (the cluster's daemons) and their descendants count. */
struct bench_sampler *sampler_start(int period_ms, const pid_t *roots, size_t n_roots);
/* Takes the last sample, stops the thread, frees s. */
void sampler_stop(struct bench_sampler *s, struct bench_usage *u);

/* ---- run.c ---------------------------------------------------------------- */

struct bench_run_spec {
	const struct bench_app *app;
	const char *mode;
	double rate_mbit;
	int rep, index, total;
	const char *from, *to;
	const char *dir; /* this run's logs */
};
/* Runs one migration and fills *r (also when it failed).  Returns 0, or
 * negative when the cluster is no longer in a known state (restart it) or a
 * stop signal arrived. */
int bench_run(struct bench *b, const struct bench_run_spec *spec, struct bench_result *r);

/* ---- csv.c ---------------------------------------------------------------- */

/* Writes the header line. */
void csv_header(FILE *f);
void csv_row(FILE *f, const struct bench_result *r);
/* Reads a runs.csv written by csv_row (columns found by their header). */
int csv_read(const char *path, struct bench_results *rs, struct myce_error **err);

/* ---- stats.c -------------------------------------------------------------- */

struct bench_stat {
	int n;
	double med, min, max;
};
/* Median, min and max of the field at offset `field` (a double in struct
 * bench_result) over the completed runs of app x rate x technique. */
struct bench_stat bench_stat_of(const struct bench_results *rs, const char *app, double rate, const char *technique,
				size_t field);
/* Runs (all, completed) of a group. */
void bench_count(const struct bench_results *rs, const char *app, double rate, const char *technique, int *all,
		 int *ok);
/* The groups present, in a stable order: apps and techniques as first seen,
 * rates ascending with unshaped (0) last. */
void bench_groups(const struct bench_results *rs, struct strv *apps, struct strv *techniques, double *rates,
		  size_t *n_rates, size_t max_rates);
/* "unshaped" or "10 Mbit/s" style label, in buf. */
const char *bench_rate_label(double rate, char *buf, size_t n);

/* ---- summary.c / plot.c / machine.c --------------------------------------- */

int summary_write(const char *path, const struct bench_results *rs, const char *cmdline, struct myce_error **err);
/* Writes DIR/plot/<app>.dat and DIR/plot/figure5.gp (run it from DIR). */
int plot_write(const char *dir, const struct bench_results *rs, struct myce_error **err);
int machine_write(const char *path, const struct bench *b, struct myce_error **err);

#endif
