/* One run of the matrix: the application starts fresh on the source node,
 * its state is loaded, the sensor workload starts and runs a while, the
 * application migrates (CPU and memory of the machinery sampled meanwhile),
 * the workload runs until its writes reach the server again and a little
 * more, then stops and reports, and the application is deleted.  Whatever
 * fails is recorded in the result, not raised: the matrix goes on. */
#include "bench.h"

#include "cluster.h"
#include "netns.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

/* Timeouts of the steps. */
#define RUN_APP_TIMEOUT_MS 90000
#define MIGRATE_TIMEOUT_MS 900000
#define DELETE_TIMEOUT_MS 90000
#define SAMPLE_PERIOD_MS 50

struct populate_call {
	const struct bench_app *app;
	const char *ip;
	int data_mb;
	const char *fill;
};

static int populate_fn(void *arg, struct myce_error **err)
{
	struct populate_call *c = arg;
	return c->app->populate(c->ip, c->app->port, c->data_mb, c->fill, err);
}

/* The state is loaded from inside the source node's network namespace,
 * straight into the pod: the node's shaped uplink is not the bottleneck of
 * a step that is not measured. */
static int populate(struct bench *b, const struct bench_run_spec *sp, const char *pod_ip, struct myce_error **err)
{
	_cleanup_free_ char *ns = myce_node_netns(myce_node_index(sp->from));
	_cleanup_close_ int nsfd = myce_netns_open(ns, err);
	if (nsfd < 0)
		return -1;
	struct populate_call c = {.app = sp->app, .ip = pod_ip, .data_mb = b->opt.data_mb, .fill = b->opt.fill};
	return myce_netns_run(nsfd, populate_fn, &c, err);
}

/* Redis DEBUG DIGEST of the whole dataset, through the service. */
static char *redis_digest(const char *ip, int port, struct myce_error **err)
{
	struct kvc c;
	if (kvc_connect(&c, ip, port, 30000, err) < 0)
		return NULL;
	char *reply = NULL;
	int r = resp_command(&c, &reply, err, 2, "DEBUG", "DIGEST");
	kvc_close(&c);
	if (r < 0) {
		free(reply);
		return NULL;
	}
	return reply;
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItem(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The coordinator reports -1 for a phase a technique does not have. */
static double timing(const cJSON *t, const char *key)
{
	double v = num(t, key);
	return v < 0 ? NAN : v;
}

static void take_migration(struct bench_result *r, const cJSON *m)
{
	const char *outcome = myce_json_str(m, "outcome");
	const char *reason = myce_json_str(m, "reason");
	free(r->outcome);
	r->outcome = xstrdup(outcome ? outcome : "unknown");
	if (reason) {
		free(r->reason);
		r->reason = xstrdup(reason);
	}
	const cJSON *t = cJSON_GetObjectItem(m, "timings");
	r->migration_ms = timing(t, "total_ms");
	r->prepare_ms = timing(t, "prepare_ms");
	r->dump_ms = timing(t, "dump_ms");
	r->transfer_ms = timing(t, "transfer_ms");
	r->restore_ms = timing(t, "restore_ms");
	r->freeze_window_ms = timing(t, "freeze_window_ms");
	r->bytes_raw = num(m, "bytes_raw");
	r->bytes_wire = num(m, "bytes_wire");
}

static void take_report(struct bench_result *r, const cJSON *rep, bool mqtt)
{
	r->downtime_ms = num(rep, "max_outage_ms");
	r->max_gap_ms = num(rep, "max_gap_ms");
	r->newconn_fail_ms = num(rep, "newconn_fail_ms");
	r->acked = num(rep, "acked");
	r->resets = num(rep, "resets");
	if (mqtt) {
		r->lost_writes = num(rep, "missing");
		r->reconnects = num(rep, "pub_reconnects") + num(rep, "sub_reconnects");
	} else {
		r->lost_writes = num(rep, "missing") + num(rep, "wrong");
		r->reconnects = num(rep, "reconnects");
		const char *verr = myce_json_str(rep, "verify_error");
		if (verr && !r->reason)
			r->reason = xasprintf("workload read-back: %s", verr);
	}
}

/* Marks the run as failed in one of its own steps. */
static void run_error(struct bench_result *r, const char *step, const struct myce_error *e)
{
	if (!r->outcome || bench_result_ok(r) || !strcmp(r->outcome, "unknown")) {
		free(r->outcome);
		r->outcome = xstrdup("error");
	}
	if (!r->reason)
		r->reason = xasprintf("%s: %s", step, myce_error_msg(e));
}

static void save_json(const char *dir, const char *name, const cJSON *j)
{
	if (!j)
		return;
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
	_cleanup_free_ char *s = cJSON_Print(j);
	myce_write_file_atomic(path, s, strlen(s), 0644);
}

static void progress(const struct bench_run_spec *sp, const struct bench_result *r)
{
	char rate[32];
	fprintf(stderr, "[%d/%d] %s rate=%s rep=%d %s: ", sp->index, sp->total, sp->app->name,
		sp->rate_mbit > 0 ? (snprintf(rate, sizeof(rate), "%g", sp->rate_mbit), rate) : "unshaped", sp->rep,
		sp->mode);
	if (!bench_result_ok(r))
		fprintf(stderr, "%s (%s); ", r->outcome, r->reason ? r->reason : "no reason given");
	if (!isnan(r->downtime_ms))
		fprintf(stderr, "downtime %.0f ms, ", r->downtime_ms);
	if (!isnan(r->migration_ms))
		fprintf(stderr, "migration %.1f s", r->migration_ms / 1000.0);
	else
		fprintf(stderr, "no migration time");
	if (r->lost_writes > 0)
		fprintf(stderr, ", %.0f writes lost", r->lost_writes);
	if (r->resets > 0)
		fprintf(stderr, ", %.0f resets", r->resets);
	fputc('\n', stderr);
}

int bench_run(struct bench *b, const struct bench_run_spec *sp, struct bench_result *r)
{
	bench_result_init(r);
	r->run = sp->index;
	r->app = xstrdup(sp->app->name);
	r->technique = xstrdup(sp->mode);
	r->rate_mbit = sp->rate_mbit;
	r->delay_ms = b->opt.delay_ms;
	r->delay_emulation = xstrdup(b->delay_emulation ? b->delay_emulation : "unknown");
	r->rep = sp->rep;
	r->from = xstrdup(sp->from);
	r->to = xstrdup(sp->to);
	r->data_mb = b->opt.data_mb;
	r->started_unix = (double)myce_wall_us() / 1e6;
	r->outcome = xstrdup("unknown");
	bool redis = !strcmp(sp->app->name, "redis");
	r->fill = xstrdup(!redis ? "random" : b->opt.fill ? b->opt.fill : "sensor");
	double la[1];
	if (getloadavg(la, 1) == 1)
		r->load1 = la[0];
	myce_mkdir_p(sp->dir, 0755);

	int ret = 0;
	bool created = false;
	/* Everything the steps share, declared before the first goto. */
	_cleanup_error_ struct myce_error *e = NULL, *be = NULL;
	_cleanup_json_ cJSON *app = NULL, *mig = NULL, *rep = NULL;
	_cleanup_free_ char *port = xasprintf("%d", sp->app->port), *svc = NULL;
	_cleanup_free_ char *digest0 = NULL, *digest1 = NULL;
	const char *svc_ip = NULL, *pod_ip = NULL;
	struct bench_loadgen lg = {.proc = {.pid = -1, .pidfd = -1}};
	struct strv args = {0};
	struct bench_usage u;
	int64_t migrated_at;
	int st;

	/* 1. The application, fresh, on the source node. */
	strv_push(&args, "run");
	strv_push(&args, sp->app->name);
	strv_push(&args, "--node");
	strv_push(&args, sp->from);
	strv_push(&args, "--port");
	strv_push(&args, port);
	strv_push(&args, "--");
	sp->app->cmd(b, &args);
	if (ctl_json(b, &args, RUN_APP_TIMEOUT_MS, true, &app, &e) != 0 || !myce_json_str(app, "svc_ip")) {
		run_error(r, "start", e);
		/* It may exist half-way: the delete below tells. */
		created = true;
		goto out;
	}
	created = true;
	svc_ip = myce_json_str(app, "svc_ip");
	pod_ip = myce_json_str(app, "addr");
	svc = xasprintf("%s:%d", svc_ip, sp->app->port);

	/* 2. Its state. */
	if (populate(b, sp, pod_ip, &e) < 0) {
		run_error(r, "load state", e);
		goto out;
	}

	/* 3. The workload, for a while before the migration; a quiesced run
	 * has none and compares Redis's digest instead. */
	if (b->opt.quiesced) {
		if (redis && !(digest0 = redis_digest(svc_ip, sp->app->port, &e))) {
			run_error(r, "digest before", e);
			goto out;
		}
	} else if (loadgen_start(b, sp->app->loadgen_mode, svc, sp->dir, &lg, &e) < 0) {
		run_error(r, "workload", e);
		goto out;
	}
	if (!bench_sleep(b, b->opt.lead_ms))
		goto out;

	/* 4. The migration, with the machinery's usage sampled meanwhile. */
	strv_clear(&args);
	strv_push(&args, "migrate");
	strv_push(&args, sp->app->name);
	strv_push(&args, "--to");
	strv_push(&args, sp->to);
	strv_push(&args, "--mode");
	strv_push(&args, sp->mode);
	pid_t roots[32];
	size_t n_roots;
	n_roots = ctl_cluster_pids(roots, ARRAY_SIZE(roots));
	struct bench_sampler *smp;
	smp = sampler_start(SAMPLE_PERIOD_MS, roots, n_roots);
	st = ctl_json(b, &args, MIGRATE_TIMEOUT_MS, true, &mig, &e);
	sampler_stop(smp, &u);
	migrated_at = myce_now_us();
	r->coord_cpu_s = u.coord_cpu_s;
	r->coord_peak_rss_mb = u.coord_peak_rss_mb;
	r->nodes_cpu_s = u.nodes_cpu_s;
	r->nodes_peak_rss_mb = u.nodes_peak_rss_mb;
	r->criu_cpu_s = u.criu_cpu_s;
	r->criu_peak_rss_mb = u.criu_peak_rss_mb;
	r->link_cpu_s = u.link_cpu_s;
	r->link_peak_rss_mb = u.link_peak_rss_mb;
	save_json(sp->dir, "migration.json", mig);
	if (mig && myce_json_str(mig, "outcome")) {
		take_migration(r, mig);
		if (!bench_result_ok(r))
			ctl_save_logs(sp->dir, (long)myce_json_num(mig, "src_pod", -1),
				      (long)myce_json_num(mig, "dst_pod", -1));
	} else {
		run_error(r, "migrate", e);
		/* mycectl gave up (timeout, stop): the migration may still run. */
		if (st < 0)
			ret = -EIO;
		myce_error_freep(&e);
	}

	if (b->opt.quiesced) {
		if (redis && bench_result_ok(r)) {
			digest1 = redis_digest(svc_ip, sp->app->port, &e);
			free(r->digest);
			r->digest = xstrdup(digest1 && !strcmp(digest0, digest1) ? "same" : "differs");
			if (!digest1)
				run_error(r, "digest after", e);
			else if (strcmp(digest0, digest1) != 0)
				r->reason = xasprintf("DEBUG DIGEST %s before the migration, %s after", digest0,
						      digest1);
		}
		goto out;
	}

	/* 5. The workload until its writes arrive again, and a little more. */
	if (sp->app->wait_client(b, svc_ip, sp->app->port, b->opt.back_timeout_ms, &be) == 0) {
		r->client_back_ms = (double)(myce_now_us() - migrated_at) / 1000.0;
	} else if (be && be->code != EINTR && bench_result_ok(r)) {
		/* Measured all the same: the outage then runs to the end. */
		free(r->reason);
		r->reason = xasprintf("client not back: %s", myce_error_msg(be));
	}
	if (!bench_sleep(b, b->opt.tail_ms))
		goto out;

	/* 6. What the client saw. */
	if (loadgen_stop(b, &lg, &rep, &e) < 0) {
		run_error(r, "workload report", e);
		goto out;
	}
	save_json(sp->dir, "loadgen-report.json", rep);
	take_report(r, rep, !strcmp(sp->app->loadgen_mode, "mqtt"));

out:
	loadgen_free(&lg);
	if (bench_stop_requested(b)) {
		/* Half a run measures nothing: kept, but out of the statistics. */
		strv_clear(&args);
		free(r->reason);
		r->reason = xasprintf("stopped by a signal (migration: %s)", r->outcome);
		free(r->outcome);
		r->outcome = xstrdup("interrupted");
		progress(sp, r);
		return -EINTR;
	}
	if (created && ret == 0) {
		strv_clear(&args);
		strv_push(&args, "delete");
		strv_push(&args, sp->app->name);
		_cleanup_json_ cJSON *d = NULL;
		_cleanup_error_ struct myce_error *de = NULL;
		int ds = ctl_json(b, &args, DELETE_TIMEOUT_MS, false, &d, &de);
		/* Not found is fine when the start itself failed. */
		if (ds != 0 && !(app == NULL && de && strstr(myce_error_msg(de), "unknown application"))) {
			fprintf(stderr, "myce-bench: delete %s: %s; restarting the cluster\n", sp->app->name,
				myce_error_msg(de));
			ret = -EIO;
		}
	}
	strv_clear(&args);
	progress(sp, r);
	return ret;
}
