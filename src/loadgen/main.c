/* myce-loadgen: command line, signals, and dispatch to the workload. */
#include "loadgen.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>

/* Exit statuses. */
#define EXIT_UNREACHABLE 1
#define EXIT_USAGE 2

static int run_redis(struct lg_ctx *ctx, struct lg_report *rep, struct myce_error **err)
{
	return kv_run(ctx, &resp_proto, rep, err);
}

static int run_memcached(struct lg_ctx *ctx, struct lg_report *rep, struct myce_error **err)
{
	return kv_run(ctx, &memcache_proto, rep, err);
}

static const struct {
	const char *name;
	int (*run)(struct lg_ctx *ctx, struct lg_report *rep, struct myce_error **err);
} modes[] = {
	{"redis", run_redis},
	{"memcached", run_memcached},
	{"mqtt", mqtt_run},
};

static void usage(FILE *f)
{
	fputs("usage: myce-loadgen redis|mqtt|memcached --addr IP:PORT [options]\n"
	      "\n"
	      "A sensor writing a timestamped temperature reading every interval over one\n"
	      "connection it keeps open; reports what the client saw (gaps, latencies,\n"
	      "lost writes) when the run ends.\n"
	      "\n"
	      "  --addr IP:PORT          server address (numeric; [IPv6]:PORT)\n"
	      "  --interval-ms MS        time between two writes (default 1)\n"
	      "  --duration SEC          run time (default: until SIGINT/SIGTERM)\n"
	      "  --probe-ms MS           new-connection probe period, 0 = off (default 20)\n"
	      "  --probe-timeout-ms MS   a probe without answer by then failed (default 1000)\n"
	      "  --trace FILE.csv        write seq,send_us,reply_us,outcome per request\n"
	      "  --keys-prefix P         key prefix / MQTT topic prefix (default sensor)\n"
	      "  --ready-file F          create F once the first reply arrived\n"
	      "  -o json|text            report format (default text)\n"
	      "  -v, --verbose           debug logging on stderr\n"
	      "  -h, --help              this help\n"
	      "\n"
	      "Exit status: 0 run completed (whatever it found), 1 server never reachable,\n"
	      "2 usage error.\n",
	      f);
}

/* Parses a positive (or, with allow_zero, non-negative) number of `unit`s into
 * microseconds. */
static int parse_us(const char *opt, const char *s, double unit_us, bool allow_zero, int64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || v != v /* NaN */ || v < 0 || (v == 0 && !allow_zero) ||
	    v * unit_us > 1e15) {
		fprintf(stderr, "myce-loadgen: %s: invalid value '%s'\n", opt, s);
		return -EINVAL;
	}
	*out = (int64_t)(v * unit_us + 0.5);
	if (*out == 0 && v > 0)
		*out = 1;
	return 0;
}

static int parse_args(int argc, char **argv, struct lg_config *cfg)
{
	enum { OPT_ADDR = 256, OPT_INTERVAL, OPT_DURATION, OPT_PROBE, OPT_PROBE_TIMEOUT, OPT_TRACE,
	       OPT_PREFIX, OPT_READY };
	static const struct option opts[] = {
		{"addr", required_argument, NULL, OPT_ADDR},
		{"interval-ms", required_argument, NULL, OPT_INTERVAL},
		{"duration", required_argument, NULL, OPT_DURATION},
		{"probe-ms", required_argument, NULL, OPT_PROBE},
		{"probe-timeout-ms", required_argument, NULL, OPT_PROBE_TIMEOUT},
		{"trace", required_argument, NULL, OPT_TRACE},
		{"keys-prefix", required_argument, NULL, OPT_PREFIX},
		{"ready-file", required_argument, NULL, OPT_READY},
		{"output", required_argument, NULL, 'o'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	*cfg = (struct lg_config){
		.interval_us = 1000,
		.probe_us = 20000,
		.probe_timeout_us = 1000000,
		.prefix = "sensor",
	};
	int64_t v;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:vh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_ADDR:
			cfg->addr = optarg;
			break;
		case OPT_INTERVAL:
			if (parse_us("--interval-ms", optarg, 1000, false, &v) < 0 || v > INT32_MAX)
				return -EINVAL;
			cfg->interval_us = (int)v;
			break;
		case OPT_DURATION:
			if (parse_us("--duration", optarg, 1e6, false, &v) < 0)
				return -EINVAL;
			cfg->duration_us = v;
			break;
		case OPT_PROBE:
			if (parse_us("--probe-ms", optarg, 1000, true, &v) < 0 || v > INT32_MAX)
				return -EINVAL;
			cfg->probe_us = (int)v;
			break;
		case OPT_PROBE_TIMEOUT:
			if (parse_us("--probe-timeout-ms", optarg, 1000, false, &v) < 0 || v > INT32_MAX)
				return -EINVAL;
			cfg->probe_timeout_us = (int)v;
			break;
		case OPT_TRACE:
			cfg->trace_path = optarg;
			break;
		case OPT_PREFIX:
			if (!*optarg || strpbrk(optarg, " \t\r\n+#")) {
				fprintf(stderr, "myce-loadgen: --keys-prefix: no spaces, '+' or '#'\n");
				return -EINVAL;
			}
			cfg->prefix = optarg;
			break;
		case OPT_READY:
			cfg->ready_path = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "text")) {
				fprintf(stderr, "myce-loadgen: -o: expected json or text, not '%s'\n", optarg);
				return -EINVAL;
			}
			cfg->json = !strcmp(optarg, "json");
			break;
		case 'v':
			myce_log_init("myce-loadgen", MYCE_LOG_DEBUG);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			fprintf(stderr, "myce-loadgen: %s needs a value\n", argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr, "myce-loadgen: unknown option '%s'\n", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "myce-loadgen: %s\n",
			optind == argc ? "which server? redis, mqtt or memcached" : "one mode only");
		return -EINVAL;
	}
	cfg->mode = argv[optind];
	if (!cfg->addr) {
		fprintf(stderr, "myce-loadgen: --addr IP:PORT is required\n");
		return -EINVAL;
	}
	_cleanup_error_ struct myce_error *err = NULL;
	if (net_parse_addr(cfg->addr, &cfg->sa, &cfg->sa_len, &err) < 0) {
		fprintf(stderr, "myce-loadgen: --addr: %s\n", myce_error_msg(err));
		return -EINVAL;
	}
	return 0;
}

void lg_ctx_mark_ready(struct lg_ctx *ctx)
{
	if (ctx->ready)
		return;
	ctx->ready = true;
	if (!ctx->cfg->ready_path)
		return;
	_cleanup_free_ char *pid = xasprintf("%d\n", (int)getpid());
	int r = myce_write_file_atomic(ctx->cfg->ready_path, pid, strlen(pid), 0644);
	if (r < 0)
		log_error("ready file '%s': %s", ctx->cfg->ready_path, strerror(-r));
}

int64_t lg_ctx_until(const struct lg_ctx *ctx, int64_t until_us)
{
	return ctx->deadline_us && ctx->deadline_us < until_us ? ctx->deadline_us : until_us;
}

void lg_ctx_stopped(struct lg_ctx *ctx)
{
	struct signalfd_siginfo si;
	while (read(ctx->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		log_info("%s: stopping, verifying (again to skip the verification)",
			 strsignal((int)si.ssi_signo));
	ctx->deadline_us = 0;
}

int main(int argc, char **argv)
{
	myce_log_init("myce-loadgen", MYCE_LOG_INFO);
	struct lg_config cfg;
	if (parse_args(argc, argv, &cfg) < 0) {
		fputs("Try 'myce-loadgen --help'.\n", stderr);
		return EXIT_USAGE;
	}
	size_t m = 0;
	while (m < ARRAY_SIZE(modes) && strcmp(modes[m].name, cfg.mode))
		m++;
	if (m == ARRAY_SIZE(modes)) {
		fprintf(stderr, "myce-loadgen: unknown mode '%s' (redis, mqtt or memcached)\n", cfg.mode);
		return EXIT_USAGE;
	}

	/* Signals arrive through a signalfd the workload polls; blocked before
	 * any thread starts so every thread inherits the mask. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) {
		log_error("pthread_sigmask failed");
		return EXIT_FAILURE;
	}
	signal(SIGPIPE, SIG_IGN);
	_cleanup_close_ int sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return EXIT_FAILURE;
	}

	struct lg_ctx ctx = {
		.cfg = &cfg,
		.sig_fd = sig_fd,
		.deadline_us = cfg.duration_us ? myce_now_us() + cfg.duration_us : 0,
	};
	struct lg_report *rep = lg_report_new();
	_cleanup_error_ struct myce_error *err = NULL;
	int r = modes[m].run(&ctx, rep, &err);
	if (r < 0 && !ctx.ever_connected) {
		log_error("%s", myce_error_msg(err));
		lg_report_free(rep);
		return EXIT_UNREACHABLE;
	}
	if (r < 0)
		log_error("%s", myce_error_msg(err));
	if (lg_report_print(rep, cfg.json, stdout) < 0)
		log_error("cannot write the report: %s", strerror(errno));
	lg_report_free(rep);
	return 0;
}
