/* myce-bench: command line and the matrix.
 *
 *   for every bandwidth:        a fresh two-node cluster (under the lock)
 *     for every repetition:
 *       for every application:
 *         for every technique:  one run (run.c), node1 -> node2, then back
 *
 * Techniques are interleaved within a repetition so that drift affects all
 * alike.  Every run's row goes to runs.csv as soon as it ends; at the end
 * (also after Ctrl-C) the cluster goes down, and summary.md and the plot
 * files are written from what was measured. */
#include "bench.h"

#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <mosquitto.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>

#define EXIT_FATAL 1
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130

bool bench_stop_requested(struct bench *b)
{
	struct signalfd_siginfo si;
	while (read(b->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (!b->stopping)
			fprintf(stderr, "\nmyce-bench: %s: stopping after tearing down (the cluster goes down)\n",
				strsignal((int)si.ssi_signo));
		b->stopping = true;
	}
	return b->stopping;
}

bool bench_sleep(struct bench *b, int ms)
{
	int64_t end = myce_now_us() + (int64_t)ms * 1000;
	for (;;) {
		if (bench_stop_requested(b))
			return false;
		int64_t left = (end - myce_now_us() + 999) / 1000;
		if (left <= 0)
			return true;
		struct pollfd p = {.fd = b->sig_fd, .events = POLLIN};
		poll(&p, 1, (int)left);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: myce-bench [options]\n"
		"\n"
		"The paper's evaluation side by side: applications x techniques x inter-node\n"
		"bandwidth x repetitions, each run a fresh application with its state, the\n"
		"sensor workload, one migration.  Needs root; takes the cluster lock\n"
		"%s while a cluster of its exists.\n"
		"\n"
		"  --apps LIST        applications (default %s)\n"
		"  --modes LIST       techniques, as mycectl migrate --mode (default\n"
		"                     redeploy,stop-and-copy,live)\n"
		"  --rates LIST       inter-node bandwidths in Mbit/s, 0 = unshaped\n"
		"                     (default 1,3,10,100,0)\n"
		"  --delay-ms MS      one-way inter-node delay (default 10)\n"
		"  --reps N           repetitions (default 5)\n"
		"  --data-mb MB       state per application (default 10): redis, until its\n"
		"                     used_memory >= MB MiB; others MB MiB of 1 KiB values\n"
		"  --fill KIND        redis state: sensor (default; the workload's timestamped\n"
		"                     random readings, one key each) or populate (DEBUG\n"
		"                     POPULATE: MB MiB of zero-padded 1 KiB values)\n"
		"  --quiesced         no workload: Redis DEBUG DIGEST before the migration and\n"
		"                     after it must match (column digest)\n"
		"  --lead-ms MS       workload before the migration (default 1000)\n"
		"  --tail-ms MS       workload after the client is back (default 1000)\n"
		"  --back-timeout-s S longest wait for the client to come back (default 30)\n"
		"  --out DIR          results (default bench/results/<date>): runs.csv,\n"
		"                     summary.md, machine.txt, plot/, runs/ (logs per run)\n"
		"  --short            CI mode: redis, rates 0 and 10, 1 repetition, 2 MB\n"
		"                     (options after it still apply)\n"
		"  --report DIR       write DIR/summary.md and DIR/plot/ from DIR/runs.csv\n"
		"                     (no cluster)\n"
		"  -h, --help         this help\n"
		"\n"
		"Plots: gnuplot plot/figure5.gp from the results directory (bench/run.sh does).\n"
		"Exit status: 0 matrix done (failed migrations are results), 1 fatal error,\n"
		"2 usage, 130 interrupted.\n",
		BENCH_LOCK_PATH, bench_app_names());
}

static int parse_int(const char *opt, const char *s, int min, int max, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "myce-bench: %s: expected an integer in %d..%d, not '%s'\n", opt, min, max, s);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int parse_rates(const char *s, struct bench_opts *o)
{
	struct strv v = {0};
	strv_split(&v, s);
	o->n_rates = 0;
	int r = 0;
	for (size_t i = 0; i < v.n && r == 0; i++) {
		char *end;
		double x = strtod(v.v[i], &end);
		if (*end || end == v.v[i] || !(x >= 0) || x > 100000 || o->n_rates == ARRAY_SIZE(o->rates)) {
			fprintf(stderr, "myce-bench: --rates: '%s' is not a rate in Mbit/s\n", v.v[i]);
			r = -EINVAL;
			break;
		}
		for (size_t k = 0; k < o->n_rates; k++)
			if (o->rates[k] == x)
				goto dup;
		o->rates[o->n_rates++] = x;
dup:;
	}
	strv_clear(&v);
	if (r == 0 && !o->n_rates) {
		fprintf(stderr, "myce-bench: --rates: no rate given\n");
		r = -EINVAL;
	}
	return r;
}

static void set_list(struct strv *s, const char *csv)
{
	strv_clear(s);
	strv_split(s, csv);
}

static void defaults(struct bench_opts *o, bool short_mode)
{
	set_list(&o->apps, short_mode ? "redis" : bench_app_names());
	set_list(&o->modes, "redeploy,stop-and-copy,live");
	parse_rates(short_mode ? "0,10" : "1,3,10,100,0", o);
	o->delay_ms = 10;
	o->reps = short_mode ? 1 : 5;
	o->data_mb = short_mode ? 2 : 10;
	o->lead_ms = 1000;
	o->tail_ms = 1000;
	o->back_timeout_ms = 30000;
	o->short_mode = short_mode;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	enum { O_APPS = 256, O_MODES, O_RATES, O_DELAY, O_REPS, O_DATA, O_LEAD, O_TAIL, O_BACK, O_OUT, O_SHORT,
	       O_REPORT, O_FILL, O_QUIESCED };
	static const struct option opts[] = {
		{"apps", required_argument, NULL, O_APPS},
		{"modes", required_argument, NULL, O_MODES},
		{"techniques", required_argument, NULL, O_MODES},
		{"rates", required_argument, NULL, O_RATES},
		{"delay-ms", required_argument, NULL, O_DELAY},
		{"reps", required_argument, NULL, O_REPS},
		{"data-mb", required_argument, NULL, O_DATA},
		{"lead-ms", required_argument, NULL, O_LEAD},
		{"tail-ms", required_argument, NULL, O_TAIL},
		{"back-timeout-s", required_argument, NULL, O_BACK},
		{"out", required_argument, NULL, O_OUT},
		{"short", no_argument, NULL, O_SHORT},
		{"report", required_argument, NULL, O_REPORT},
		{"fill", required_argument, NULL, O_FILL},
		{"quiesced", no_argument, NULL, O_QUIESCED},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	/* --short first: it sets defaults that the other options then override. */
	bool short_mode = false;
	for (int i = 1; i < argc; i++)
		short_mode |= !strcmp(argv[i], "--short");
	defaults(o, short_mode);
	int c, secs;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case O_APPS:
			set_list(&o->apps, optarg);
			for (size_t i = 0; i < o->apps.n && r == 0; i++)
				if (!bench_app_find(o->apps.v[i])) {
					fprintf(stderr, "myce-bench: --apps: unknown application '%s' (%s)\n",
						o->apps.v[i], bench_app_names());
					r = -EINVAL;
				}
			if (!o->apps.n)
				r = -EINVAL;
			break;
		case O_MODES:
			set_list(&o->modes, optarg);
			for (size_t i = 0; i < o->modes.n && r == 0; i++)
				if (!myce_name_valid(o->modes.v[i])) {
					fprintf(stderr, "myce-bench: --modes: '%s' is not a mode name\n", o->modes.v[i]);
					r = -EINVAL;
				}
			if (!o->modes.n)
				r = -EINVAL;
			break;
		case O_RATES:
			r = parse_rates(optarg, o);
			break;
		case O_DELAY:
			r = parse_int("--delay-ms", optarg, 0, 10000, &o->delay_ms);
			break;
		case O_REPS:
			r = parse_int("--reps", optarg, 1, 1000, &o->reps);
			break;
		case O_DATA:
			r = parse_int("--data-mb", optarg, 1, 16384, &o->data_mb);
			break;
		case O_LEAD:
			r = parse_int("--lead-ms", optarg, 0, 600000, &o->lead_ms);
			break;
		case O_TAIL:
			r = parse_int("--tail-ms", optarg, 0, 600000, &o->tail_ms);
			break;
		case O_BACK:
			r = parse_int("--back-timeout-s", optarg, 1, 3600, &secs);
			o->back_timeout_ms = secs * 1000;
			break;
		case O_OUT:
			free(o->out_dir);
			o->out_dir = xstrdup(optarg);
			break;
		case O_SHORT:
			break;
		case O_FILL:
			if (strcmp(optarg, "sensor") != 0 && strcmp(optarg, "populate") != 0) {
				fprintf(stderr, "myce-bench: --fill: '%s' is not sensor or populate\n", optarg);
				r = -EINVAL;
				break;
			}
			free(o->fill);
			o->fill = xstrdup(optarg);
			break;
		case O_QUIESCED:
			o->quiesced = true;
			break;
		case O_REPORT:
			free(o->report_dir);
			o->report_dir = xstrdup(optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			fprintf(stderr, "myce-bench: %s needs a value\n", argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr, "myce-bench: unknown option '%s'\n", argv[optind - 1]);
			return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	if (optind != argc) {
		fprintf(stderr, "myce-bench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->out_dir) {
		char stamp[32];
		time_t now = time(NULL);
		strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", localtime(&now));
		o->out_dir = xasprintf("bench/results/%s", stamp);
	}
	return 0;
}

/* The command line as typed, quoted where a shell would need it. */
static char *join_cmdline(int argc, char **argv)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	for (int i = 0; i < argc; i++) {
		bool plain = *argv[i] && strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
							 "0123456789-_=.,/:+@") == strlen(argv[i]);
		if (i)
			fputc(' ', f);
		if (plain) {
			fputs(argv[i], f);
			continue;
		}
		fputc('\'', f);
		for (const char *p = argv[i]; *p; p++)
			fputs(*p == '\'' ? "'\\''" : (char[]){*p, 0}, f);
		fputc('\'', f);
	}
	fclose(f);
	return buf;
}

static int report_only(const char *dir)
{
	struct bench_results rs = {0};
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_free_ char *csv = xasprintf("%s/runs.csv", dir);
	_cleanup_free_ char *md = xasprintf("%s/summary.md", dir);
	_cleanup_free_ char *mt = xasprintf("%s/machine.txt", dir);
	/* The benchmark's own command line, from machine.txt when it is there. */
	_cleanup_free_ char *machine = myce_read_file(mt, NULL);
	char *cmd = machine ? strstr(machine, "command:") : NULL;
	if (cmd) {
		cmd += strlen("command:");
		cmd += strspn(cmd, " ");
		cmd[strcspn(cmd, "\n")] = '\0';
	}
	int r = csv_read(csv, &rs, &e);
	if (r == 0)
		r = summary_write(md, &rs, cmd, &e);
	if (r == 0)
		r = plot_write(dir, &rs, &e);
	bench_results_free(&rs);
	if (r < 0) {
		fprintf(stderr, "myce-bench: %s\n", myce_error_msg(e));
		return EXIT_FATAL;
	}
	fprintf(stderr, "myce-bench: wrote %s and %s/plot/\n", md, dir);
	return 0;
}

/* Records a run that could not even start. */
static void record_skipped(struct bench *b, FILE *csv, struct bench_results *rs, const struct bench_run_spec *sp,
			   const char *why)
{
	struct bench_result r;
	bench_result_init(&r);
	r.run = sp->index;
	r.app = xstrdup(sp->app->name);
	r.technique = xstrdup(sp->mode);
	r.rate_mbit = sp->rate_mbit;
	r.delay_ms = b->opt.delay_ms;
	r.rep = sp->rep;
	r.data_mb = b->opt.data_mb;
	r.started_unix = (double)myce_wall_us() / 1e6;
	r.outcome = xstrdup("error");
	r.reason = xstrdup(why);
	csv_row(csv, &r);
	fprintf(stderr, "[%d/%d] %s %s: not run: %s\n", sp->index, sp->total, sp->app->name, sp->mode, why);
	bench_results_take(rs, &r);
}

/* The matrix.  Returns 0, -EINTR when stopped. */
static int run_matrix(struct bench *b, const char *out, FILE *csv, struct bench_results *rs)
{
	const struct bench_opts *o = &b->opt;
	int total = (int)(o->n_rates * (size_t)o->reps * o->apps.n * o->modes.n);
	int index = 0;
	for (size_t k = 0; k < o->n_rates; k++) {
		double rate = o->rates[k];
		_cleanup_free_ char *cluster_error = NULL;
		int on_cluster = 0; /* runs on this cluster: even ones go node1 -> node2 */
		for (int rep = 1; rep <= o->reps; rep++) {
			for (size_t a = 0; a < o->apps.n; a++) {
				for (size_t m = 0; m < o->modes.n; m++) {
					if (bench_stop_requested(b))
						return -EINTR;
					bool forth = on_cluster % 2 == 0;
					_cleanup_free_ char *dir = xasprintf("%s/runs/%03d-%s-%s-%gmbit-rep%d", out, index + 1,
									     o->apps.v[a], o->modes.v[m], rate, rep);
					struct bench_run_spec sp = {
						.app = bench_app_find(o->apps.v[a]),
						.mode = o->modes.v[m],
						.rate_mbit = rate,
						.rep = rep,
						.index = ++index,
						.total = total,
						.from = forth ? "node1" : "node2",
						.to = forth ? "node2" : "node1",
						.dir = dir,
					};
					if (!b->cluster_up && !cluster_error) {
						_cleanup_error_ struct myce_error *e = NULL;
						char lbl[32];
						fprintf(stderr, "== %s, one-way delay %d ms: cluster up\n",
							bench_rate_label(rate, lbl, sizeof(lbl)), o->delay_ms);
						free(b->logs_dir);
						b->logs_dir = xasprintf("%s/cluster-logs/%03d-%gmbit", out, index, rate);
						if (ctl_cluster_up(b, rate, &e) < 0) {
							if (bench_stop_requested(b))
								return -EINTR;
							cluster_error = xstrdup(myce_error_msg(e));
							fprintf(stderr, "myce-bench: %s\n", cluster_error);
						} else {
							fprintf(stderr, "== delay emulation: %s\n", b->delay_emulation);
							on_cluster = 0;
							sp.from = "node1";
							sp.to = "node2";
						}
					}
					if (cluster_error) {
						record_skipped(b, csv, rs, &sp, cluster_error);
						continue;
					}
					struct bench_result r;
					int rc = bench_run(b, &sp, &r);
					on_cluster++;
					csv_row(csv, &r);
					bench_results_take(rs, &r);
					if (rc == -EINTR)
						return rc;
					if (rc < 0) {
						/* Unknown state: start over on a fresh cluster. */
						ctl_cluster_down(b);
					}
				}
			}
		}
		ctl_cluster_down(b);
	}
	return 0;
}

static void bench_free(struct bench *b)
{
	strv_clear(&b->opt.apps);
	strv_clear(&b->opt.modes);
	free(b->opt.out_dir);
	free(b->opt.report_dir);
	free(b->opt.fill);
	free(b->ctl);
	free(b->loadgen);
	free(b->cmdline);
	free(b->delay_emulation);
	free(b->mosquitto_conf);
	free(b->logs_dir);
	closep(&b->sig_fd);
}

static int run(struct bench *b, int argc, char **argv)
{
	if (parse_args(argc, argv, &b->opt) < 0) {
		fputs("Try 'myce-bench --help'.\n", stderr);
		return EXIT_USAGE;
	}
	b->cmdline = join_cmdline(argc, argv);

	/* Signals through a signalfd, blocked before any thread or child.  A
	 * shell starts background jobs with SIGINT ignored: an ignored signal
	 * never becomes pending, so back to the default first. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	b->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (b->sig_fd < 0) {
		perror("myce-bench: signalfd");
		return EXIT_FATAL;
	}
	mosquitto_lib_init();
	if (b->opt.report_dir)
		return report_only(b->opt.report_dir);

	if (geteuid() != 0) {
		fprintf(stderr, "myce-bench: must run as root (it brings up clusters)\n");
		return EXIT_FATAL;
	}
	_cleanup_free_ char *exe_dir = myce_exe_dir();
	b->ctl = xasprintf("%s/mycectl", exe_dir);
	b->loadgen = xasprintf("%s/myce-loadgen", exe_dir);
	if (access(b->ctl, X_OK) < 0 || access(b->loadgen, X_OK) < 0) {
		fprintf(stderr, "myce-bench: mycectl and myce-loadgen must be built beside myce-bench in %s\n", exe_dir);
		return EXIT_FATAL;
	}
	if (myce_mkdir_p(b->opt.out_dir, 0755) < 0) {
		fprintf(stderr, "myce-bench: cannot create %s: %s\n", b->opt.out_dir, strerror(errno));
		return EXIT_FATAL;
	}
	char abs_out[PATH_MAX];
	if (!realpath(b->opt.out_dir, abs_out)) {
		fprintf(stderr, "myce-bench: %s: %s\n", b->opt.out_dir, strerror(errno));
		return EXIT_FATAL;
	}
	_cleanup_free_ char *csv_path = xasprintf("%s/runs.csv", abs_out);
	if (access(csv_path, F_OK) == 0) {
		fprintf(stderr, "myce-bench: %s exists; give another --out\n", csv_path);
		return EXIT_FATAL;
	}
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_free_ char *machine = xasprintf("%s/machine.txt", abs_out);
	if (machine_write(machine, b, &e) < 0 || bench_apps_prepare(b, abs_out, &e) < 0) {
		fprintf(stderr, "myce-bench: %s\n", myce_error_msg(e));
		return EXIT_FATAL;
	}
	FILE *csv = fopen(csv_path, "we");
	if (!csv) {
		fprintf(stderr, "myce-bench: %s: %s\n", csv_path, strerror(errno));
		return EXIT_FATAL;
	}
	csv_header(csv);
	fprintf(stderr, "myce-bench: %zu application(s) x %zu technique(s) x %zu rate(s) x %d repetition(s); results in %s\n",
		b->opt.apps.n, b->opt.modes.n, b->opt.n_rates, b->opt.reps, abs_out);

	struct bench_results rs = {0};
	int rc = run_matrix(b, abs_out, csv, &rs);
	/* Always: the cluster goes down and the lock is released. */
	ctl_cluster_down(b);
	fclose(csv);

	_cleanup_free_ char *md = xasprintf("%s/summary.md", abs_out);
	int st = rc == -EINTR ? EXIT_INTERRUPTED : 0;
	if (summary_write(md, &rs, b->cmdline, &e) < 0 || plot_write(abs_out, &rs, &e) < 0) {
		fprintf(stderr, "myce-bench: %s\n", myce_error_msg(e));
		st = EXIT_FATAL;
	}
	size_t ok = 0;
	for (size_t i = 0; i < rs.n; i++)
		ok += bench_result_ok(&rs.v[i]);
	fprintf(stderr, "myce-bench: %zu runs, %zu completed; %s, %s\n", rs.n, ok, csv_path, md);
	bench_results_free(&rs);
	mosquitto_lib_cleanup();
	return st;
}

int main(int argc, char **argv)
{
	struct bench b = {.sig_fd = -1, .lock_fd = -1};
	int st = run(&b, argc, argv);
	bench_free(&b);
	return st;
}
