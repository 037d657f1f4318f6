/* summary.md: per application, a table of medians (min–max) over the
 * completed runs for every bandwidth x technique; then, for every
 * application and bandwidth, each mycedrive technique's downtime as a
 * fraction of stop-and-copy's; then the runs that did not complete and why. */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define MAX_RATES 32

enum fmt { F_MS, F_MB, F_CPU, F_COUNT, F_BYTES_MB };

struct measure {
	const char *title;
	size_t field;
	enum fmt fmt;
};

#define M(title, field, fmt) {title, offsetof(struct bench_result, field), fmt}

static const struct measure measures[] = {
	M("migration (ms)", migration_ms, F_MS),
	M("downtime (ms)", downtime_ms, F_MS),
	M("freeze (ms)", freeze_window_ms, F_MS),
	M("longest gap, one connection (ms)", max_gap_ms, F_MS),
	M("new connections refused (ms)", newconn_fail_ms, F_MS),
	M("lost writes", lost_writes, F_COUNT),
	M("resets", resets, F_COUNT),
	M("on the wire (MB)", bytes_wire, F_BYTES_MB),
	M("coordinator CPU (s)", coord_cpu_s, F_CPU),
	M("nodes+agents CPU (s)", nodes_cpu_s, F_CPU),
	M("criu CPU (s)", criu_cpu_s, F_CPU),
	M("nodes+agents peak RSS (MB)", nodes_peak_rss_mb, F_MB),
};

static void put_num(FILE *f, double v, enum fmt fmt)
{
	switch (fmt) {
	case F_MS:
		fprintf(f, fabs(v) >= 100 ? "%.0f" : "%.1f", v);
		break;
	case F_MB:
		fprintf(f, "%.1f", v);
		break;
	case F_BYTES_MB:
		fprintf(f, "%.2f", v / 1e6);
		break;
	case F_CPU:
		fprintf(f, "%.2f", v);
		break;
	case F_COUNT:
		fprintf(f, "%.0f", v);
		break;
	}
}

static void put_stat(FILE *f, struct bench_stat s, enum fmt fmt)
{
	if (!s.n) {
		fputs("–", f);
		return;
	}
	put_num(f, s.med, fmt);
	if (s.min == s.max)
		return;
	fputs(" (", f);
	put_num(f, s.min, fmt);
	fputs("–", f);
	put_num(f, s.max, fmt);
	fputc(')', f);
}

/* The value of a string column when every run has the same, else "mixed". */
static const char *common_str(const struct bench_results *rs, size_t off)
{
	const char *v = NULL;
	for (size_t i = 0; i < rs->n; i++) {
		const char *s = *(char *const *)((const char *)&rs->v[i] + off);
		if (!s)
			continue;
		if (v && strcmp(v, s))
			return "mixed";
		v = s;
	}
	return v ? v : "unknown";
}

static double common_num(const struct bench_results *rs, size_t off)
{
	double v = NAN;
	for (size_t i = 0; i < rs->n; i++) {
		double x = *(const double *)((const char *)&rs->v[i] + off);
		if (isnan(x))
			continue;
		if (!isnan(v) && v != x)
			return -1;
		v = x;
	}
	return v;
}

static void header(FILE *f, const struct bench_results *rs, const char *cmdline, const struct strv *apps,
		   const struct strv *techs)
{
	size_t ok = 0;
	for (size_t i = 0; i < rs->n; i++)
		ok += bench_result_ok(&rs->v[i]);
	double data = common_num(rs, offsetof(struct bench_result, data_mb));
	double delay = common_num(rs, offsetof(struct bench_result, delay_ms));
	fprintf(f, "# mycedrive benchmark: migration techniques side by side\n\n");
	fprintf(f, "- runs: %zu (%zu completed, %zu did not)\n", rs->n, ok, rs->n - ok);
	fputs("- applications:", f);
	for (size_t i = 0; i < apps->n; i++)
		fprintf(f, "%s %s", i ? "," : "", apps->v[i]);
	fputs("; techniques:", f);
	for (size_t i = 0; i < techs->n; i++)
		fprintf(f, "%s %s", i ? "," : "", techs->v[i]);
	fputc('\n', f);
	/* Redis's fill (runs.csv before the fill column: DEBUG POPULATE). */
	const char *fill = NULL;
	for (size_t i = 0; i < rs->n; i++) {
		const char *x = rs->v[i].fill ? rs->v[i].fill : "populate";
		if (rs->v[i].app && !strcmp(rs->v[i].app, "redis"))
			fill = !fill || !strcmp(fill, x) ? x : "mixed";
	}
	bool populate = fill && !strcmp(fill, "populate");
	bool sensor = fill && !strcmp(fill, "sensor");
	if (data >= 0)
		fprintf(f, "- state: %.0f MiB per application (redis: %s; mosquitto retained messages and "
			   "memcached items: %.0f MiB of 1 KiB values, random base64, about 75%% of their size "
			   "after zstd)\n",
			data,
			populate ? "DEBUG POPULATE, 1 KiB zero-padded values, very compressible"
			: sensor ? "the sensor's history until used_memory reaches it: timestamped random "
				   "temperature readings, one key each, as the workload writes them"
				 : "mixed fills",
			data);
	if (delay >= 0)
		fprintf(f, "- inter-node one-way delay: %.0f ms requested; emulation: %s\n", delay,
			common_str(rs, offsetof(struct bench_result, delay_emulation)));
	if (cmdline)
		fprintf(f, "- command: `%s`\n", cmdline);
	fputs("\nEach cell: median (min–max) over the completed runs; n = completed / all runs.\n"
	      "*Migration*: from the request to the outcome (coordinator). "
	      "*Downtime*: what the client saw, the longest time between two acknowledged writes, across reconnects. "
	      "*Freeze*: from the source's freeze to the end of the restore on the destination. "
	      "*Longest gap*: the longest silence on one open connection. "
	      "*New connections refused*: the longest time new connections to the service failed. "
	      "*Lost writes*: acknowledged writes missing or wrong when read back at the end "
	      "(redeploy starts the application afresh: its state and all earlier writes are lost by design). "
	      "CPU and peak RSS: during the migration, summed over the processes.\n",
	      f);
}

static void app_table(FILE *f, const struct bench_results *rs, const char *app, const double *rates, size_t nr,
		      const struct strv *techs)
{
	fprintf(f, "\n## %s\n\n| bandwidth | technique | n |", app);
	for (size_t m = 0; m < ARRAY_SIZE(measures); m++)
		fprintf(f, " %s |", measures[m].title);
	fputs("\n|---|---|---|", f);
	for (size_t m = 0; m < ARRAY_SIZE(measures); m++)
		fputs("---:|", f);
	fputc('\n', f);
	for (size_t k = 0; k < nr; k++) {
		for (size_t t = 0; t < techs->n; t++) {
			int all, ok;
			bench_count(rs, app, rates[k], techs->v[t], &all, &ok);
			if (!all)
				continue;
			char lbl[32];
			fprintf(f, "| %s | %s | %d/%d |", bench_rate_label(rates[k], lbl, sizeof(lbl)), techs->v[t], ok,
				all);
			for (size_t m = 0; m < ARRAY_SIZE(measures); m++) {
				fputc(' ', f);
				put_stat(f, bench_stat_of(rs, app, rates[k], techs->v[t], measures[m].field),
					 measures[m].fmt);
				fputs(" |", f);
			}
			fputc('\n', f);
		}
	}
}

/* One table per mycedrive technique present (live, precopy, auto): its
 * median downtime as a fraction of stop-and-copy's, the paper's CRIU
 * baseline, measured in the same run. */
static void ratio_table(FILE *f, const struct bench_results *rs, const struct strv *apps, const double *rates,
			size_t nr)
{
	static const char *const techs[] = {"live", "precopy", "auto"};
	size_t off = offsetof(struct bench_result, downtime_ms);
	for (size_t t = 0; t < sizeof(techs) / sizeof(techs[0]); t++) {
		const char *tech = techs[t];
		bool header = false;
		for (size_t a = 0; a < apps->n; a++) {
			for (size_t k = 0; k < nr; k++) {
				struct bench_stat x = bench_stat_of(rs, apps->v[a], rates[k], tech, off);
				struct bench_stat sc = bench_stat_of(rs, apps->v[a], rates[k], "stop-and-copy", off);
				int all_x, all_s, ok;
				bench_count(rs, apps->v[a], rates[k], tech, &all_x, &ok);
				bench_count(rs, apps->v[a], rates[k], "stop-and-copy", &all_s, &ok);
				if (!all_x || !all_s)
					continue;
				if (!header) {
					fprintf(f,
						"\n## Downtime of %s relative to stop-and-copy's\n\n"
						"Medians of the client-perceived downtime, same run.\n\n"
						"| application | bandwidth | %s (ms) | stop-and-copy (ms) | %s / stop-and-copy |\n"
						"|---|---|---:|---:|---:|\n",
						tech, tech, tech);
					header = true;
				}
				char lbl[32];
				fprintf(f, "| %s | %s | ", apps->v[a], bench_rate_label(rates[k], lbl, sizeof(lbl)));
				if (x.n)
					put_num(f, x.med, F_MS);
				else
					fputs("–", f);
				fputs(" | ", f);
				if (sc.n)
					put_num(f, sc.med, F_MS);
				else
					fputs("–", f);
				if (x.n && sc.n && sc.med > 0)
					fprintf(f, " | %.2f |\n", x.med / sc.med);
				else
					fputs(" | – |\n", f);
			}
		}
	}
}

static void failures(FILE *f, const struct bench_results *rs)
{
	bool any = false;
	for (size_t i = 0; i < rs->n; i++) {
		const struct bench_result *r = &rs->v[i];
		if (bench_result_ok(r))
			continue;
		if (!any)
			fputs("\n## Runs that did not complete\n\n| run | application | bandwidth | technique | rep | "
			      "outcome | reason |\n|---:|---|---|---|---:|---|---|\n",
			      f);
		any = true;
		char lbl[32];
		fprintf(f, "| %.0f | %s | %s | %s | %.0f | %s | ", r->run, r->app ? r->app : "?",
			bench_rate_label(r->rate_mbit, lbl, sizeof(lbl)), r->technique ? r->technique : "?", r->rep,
			r->outcome ? r->outcome : "?");
		for (const char *p = r->reason ? r->reason : ""; *p; p++)
			fputs(*p == '|' ? "\\|" : (char[]){*p, 0}, f);
		fputs(" |\n", f);
	}
}

int summary_write(const char *path, const struct bench_results *rs, const char *cmdline, struct myce_error **err)
{
	struct strv apps = {0}, techs = {0};
	double rates[MAX_RATES];
	size_t nr;
	bench_groups(rs, &apps, &techs, rates, &nr, MAX_RATES);
	size_t len = 0;
	char *buf = NULL;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return myce_error_errno(err, "open_memstream");
	header(f, rs, cmdline, &apps, &techs);
	for (size_t a = 0; a < apps.n; a++)
		app_table(f, rs, apps.v[a], rates, nr, &techs);
	ratio_table(f, rs, &apps, rates, nr);
	failures(f, rs);
	fclose(f);
	strv_clear(&apps);
	strv_clear(&techs);
	int r = myce_write_file_atomic(path, buf, len, 0644);
	free(buf);
	if (r < 0) {
		errno = -r;
		return myce_error_errno(err, "write %s", path);
	}
	return 0;
}
