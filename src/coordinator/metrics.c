/* GET /metrics: the Prometheus text exposition (format 0.0.4), computed
 * from SQLite at every scrape, so that it survives a restart of the
 * coordinator and needs no state in memory:
 *   mycedrive_migrations_total{outcome}            counter
 *   mycedrive_migration_phase_duration_seconds     histogram per phase, over
 *       ended migrations (a phase a migration did not go through, or whose
 *       duration is unknown, is not observed)
 *   mycedrive_migration_bytes_raw_total / _wire_total   counters: checkpoint
 *       bytes before compression and on the wire, over ended migrations
 *   mycedrive_registered_containers                gauge */
#include "coord.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

/* Phases as mig_get() reports them in "timings" (milliseconds). */
static const struct {
	const char *name, *key;
} phases[] = {
	{"prepare", "prepare_ms"},	   {"precopy", "precopy_ms"},	{"dump", "dump_ms"},
	{"transfer", "transfer_ms"},	   {"restore", "restore_ms"},	{"network_switch", "network_switch_ms"},
	{"freeze_window", "freeze_window_ms"}, {"total", "total_ms"},
};
#define NPHASES ARRAY_SIZE(phases)

/* Upper bounds in seconds: from a fast local dump (ms) to a slow link (min). */
static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
#define NBOUNDS ARRAY_SIZE(bounds)

struct hist {
	unsigned long long bucket[NBOUNDS]; /* cumulative at output, per bucket here */
	unsigned long long count;
	double sum;
};

static void observe(struct hist *h, double s)
{
	for (size_t i = 0; i < NBOUNDS; i++)
		if (s <= bounds[i]) {
			h->bucket[i]++;
			break;
		}
	h->count++;
	h->sum += s;
}

void coord_metrics(struct coord *c, struct myce_http_resp *resp)
{
	struct hist h[NPHASES] = {0};
	double raw = 0, wire = 0;
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *out =
		db_query(c, "SELECT COALESCE(outcome, 'in-progress') AS o, COUNT(*) AS n FROM migrations GROUP BY o ORDER BY o");
	_cleanup_json_ cJSON *pods = db_query_one(c, "SELECT COUNT(*) AS n FROM containers");
	_cleanup_json_ cJSON *ended = db_query(c, "SELECT id FROM migrations WHERE outcome IS NOT NULL ORDER BY id");
	const cJSON *r;
	cJSON_ArrayForEach(r, ended)
	{
		_cleanup_json_ cJSON *m = mig_get(c, (long)myce_json_num(r, "id", -1));
		const cJSON *t = cJSON_GetObjectItem(m, "timings");
		for (size_t i = 0; i < NPHASES; i++) {
			double ms = myce_json_num(t, phases[i].key, -1);
			if (ms >= 0)
				observe(&h[i], ms / 1000.0);
		}
		raw += myce_json_num(m, "bytes_raw", 0);
		wire += myce_json_num(m, "bytes_wire", 0);
	}
	pthread_mutex_unlock(&c->lock);

	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		abort();
	fputs("# HELP mycedrive_migrations_total Migrations by outcome.\n"
	      "# TYPE mycedrive_migrations_total counter\n", f);
	cJSON_ArrayForEach(r, out)
		fprintf(f, "mycedrive_migrations_total{outcome=\"%s\"} %.0f\n", myce_json_str(r, "o"),
			myce_json_num(r, "n", 0));
	fputs("# HELP mycedrive_migration_phase_duration_seconds Duration of each phase of ended migrations.\n"
	      "# TYPE mycedrive_migration_phase_duration_seconds histogram\n", f);
	for (size_t i = 0; i < NPHASES; i++) {
		unsigned long long cum = 0;
		for (size_t b = 0; b < NBOUNDS; b++) {
			cum += h[i].bucket[b];
			fprintf(f, "mycedrive_migration_phase_duration_seconds_bucket{phase=\"%s\",le=\"%g\"} %llu\n",
				phases[i].name, bounds[b], cum);
		}
		fprintf(f, "mycedrive_migration_phase_duration_seconds_bucket{phase=\"%s\",le=\"+Inf\"} %llu\n"
			   "mycedrive_migration_phase_duration_seconds_sum{phase=\"%s\"} %.6f\n"
			   "mycedrive_migration_phase_duration_seconds_count{phase=\"%s\"} %llu\n",
			phases[i].name, h[i].count, phases[i].name, h[i].sum, phases[i].name, h[i].count);
	}
	fprintf(f, "# HELP mycedrive_migration_bytes_raw_total Checkpoint bytes moved, before compression.\n"
		   "# TYPE mycedrive_migration_bytes_raw_total counter\nmycedrive_migration_bytes_raw_total %.0f\n"
		   "# HELP mycedrive_migration_bytes_wire_total Checkpoint bytes moved, on the wire.\n"
		   "# TYPE mycedrive_migration_bytes_wire_total counter\nmycedrive_migration_bytes_wire_total %.0f\n",
		raw, wire);
	fprintf(f, "# HELP mycedrive_registered_containers Containers registered by agents.\n"
		   "# TYPE mycedrive_registered_containers gauge\nmycedrive_registered_containers %.0f\n",
		myce_json_num(pods, "n", 0));
	if (fclose(f) != 0)
		abort();
	resp->text = text;
	resp->content_type = "text/plain; version=0.0.4";
}
