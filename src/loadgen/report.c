/* The end-of-run report: metrics in the order they were added, printed as
 * one JSON object (for scripts) or one metric per line (for people). */
#include "loadgen.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

enum metric_kind { M_INT, M_MS, M_BOOL, M_STR };

struct metric {
	char *name;
	enum metric_kind kind;
	int64_t i;
	double d;
	char *s;
};

struct lg_report {
	struct metric *v;
	size_t n, cap;
};

struct lg_report *lg_report_new(void)
{
	return xzalloc(sizeof(struct lg_report));
}

void lg_report_free(struct lg_report *rep)
{
	if (!rep)
		return;
	for (size_t i = 0; i < rep->n; i++) {
		free(rep->v[i].name);
		free(rep->v[i].s);
	}
	free(rep->v);
	free(rep);
}

/* The metric called name, added at the end if new (a later value replaces). */
static struct metric *slot(struct lg_report *rep, const char *name)
{
	for (size_t i = 0; i < rep->n; i++)
		if (!strcmp(rep->v[i].name, name)) {
			free(rep->v[i].s);
			rep->v[i].s = NULL;
			return &rep->v[i];
		}
	if (rep->n == rep->cap) {
		rep->cap = rep->cap ? rep->cap * 2 : 32;
		rep->v = xrealloc(rep->v, rep->cap * sizeof(*rep->v));
	}
	struct metric *m = &rep->v[rep->n++];
	*m = (struct metric){.name = xstrdup(name)};
	return m;
}

void lg_report_int(struct lg_report *rep, const char *name, int64_t v)
{
	struct metric *m = slot(rep, name);
	m->kind = M_INT;
	m->i = v;
}

void lg_report_ms(struct lg_report *rep, const char *name, double v)
{
	struct metric *m = slot(rep, name);
	m->kind = M_MS;
	/* Microsecond resolution (rounded by hand: the program does not link libm). */
	m->d = (double)(int64_t)(v * 1000.0 + (v < 0 ? -0.5 : 0.5)) / 1000.0;
}

void lg_report_bool(struct lg_report *rep, const char *name, bool v)
{
	struct metric *m = slot(rep, name);
	m->kind = M_BOOL;
	m->i = v;
}

void lg_report_str(struct lg_report *rep, const char *name, const char *v)
{
	struct metric *m = slot(rep, name);
	m->kind = M_STR;
	m->s = xstrdup(v);
}

void lg_report_stats(struct lg_report *rep, const struct lg_stats *st)
{
	lg_report_int(rep, "requests", (int64_t)st->requests);
	lg_report_int(rep, "acked", (int64_t)st->ok);
	lg_report_int(rep, "errors", (int64_t)st->errors);
	lg_report_int(rep, "timeouts", (int64_t)st->timeouts);
	lg_report_int(rep, "unanswered", (int64_t)st->unanswered);
	lg_report_ms(rep, "max_gap_ms", st->max_gap_ms);
	lg_report_ms(rep, "max_gap_at_ms", st->max_gap_at_ms);
	lg_report_ms(rep, "max_outage_ms", st->max_outage_ms);
	lg_report_ms(rep, "p50_ms", st->p50_ms);
	lg_report_ms(rep, "p99_ms", st->p99_ms);
	lg_report_ms(rep, "max_latency_ms", st->max_latency_ms);
}

static int print_json(const struct lg_report *rep, FILE *out)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		abort();
	for (size_t i = 0; i < rep->n; i++) {
		const struct metric *m = &rep->v[i];
		cJSON *item = NULL;
		switch (m->kind) {
		case M_INT: {
			/* Raw: cJSON would print a double, losing digits of µs timestamps. */
			char num[32];
			snprintf(num, sizeof(num), "%" PRId64, m->i);
			item = cJSON_CreateRaw(num);
			break;
		}
		case M_MS:
			item = cJSON_CreateNumber(m->d);
			break;
		case M_BOOL:
			item = cJSON_CreateBool(m->i != 0);
			break;
		case M_STR:
			item = cJSON_CreateString(m->s);
			break;
		}
		if (!item)
			abort();
		cJSON_AddItemToObject(o, m->name, item);
	}
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		abort();
	int r = fprintf(out, "%s\n", s) < 0 ? -EIO : 0;
	free(s);
	return r;
}

static int print_text(const struct lg_report *rep, FILE *out)
{
	for (size_t i = 0; i < rep->n; i++) {
		const struct metric *m = &rep->v[i];
		int r = 0;
		switch (m->kind) {
		case M_INT:
			r = fprintf(out, "%-20s %" PRId64 "\n", m->name, m->i);
			break;
		case M_MS:
			r = fprintf(out, "%-20s %.3f\n", m->name, m->d);
			break;
		case M_BOOL:
			r = fprintf(out, "%-20s %s\n", m->name, m->i ? "yes" : "no");
			break;
		case M_STR:
			r = fprintf(out, "%-20s %s\n", m->name, m->s);
			break;
		}
		if (r < 0)
			return -EIO;
	}
	return 0;
}

int lg_report_print(const struct lg_report *rep, bool json, FILE *out)
{
	int r = json ? print_json(rep, out) : print_text(rep, out);
	if (r == 0 && fflush(out) != 0)
		r = -EIO;
	return r;
}
