/* Results by group (application x bandwidth x technique): which groups
 * exist, and median, min and max of a measure over a group's completed runs. */
#include "bench.h"

#include <math.h>
#include <string.h>

static bool in_group(const struct bench_result *r, const char *app, double rate, const char *technique)
{
	return r->app && r->technique && !strcmp(r->app, app) && !strcmp(r->technique, technique) &&
	       r->rate_mbit == rate;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct bench_stat bench_stat_of(const struct bench_results *rs, const char *app, double rate, const char *technique,
				size_t field)
{
	_cleanup_free_ double *v = xmalloc((rs->n + 1) * sizeof(double));
	int n = 0;
	for (size_t i = 0; i < rs->n; i++) {
		const struct bench_result *r = &rs->v[i];
		if (!in_group(r, app, rate, technique) || !bench_result_ok(r))
			continue;
		double x = *(const double *)((const char *)r + field);
		if (!isnan(x))
			v[n++] = x;
	}
	struct bench_stat s = {.n = n, .med = NAN, .min = NAN, .max = NAN};
	if (!n)
		return s;
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	s.min = v[0];
	s.max = v[n - 1];
	s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return s;
}

void bench_count(const struct bench_results *rs, const char *app, double rate, const char *technique, int *all,
		 int *ok)
{
	*all = *ok = 0;
	for (size_t i = 0; i < rs->n; i++) {
		if (!in_group(&rs->v[i], app, rate, technique))
			continue;
		(*all)++;
		*ok += bench_result_ok(&rs->v[i]);
	}
}

/* Shaped rates ascending, unshaped (0) after all of them. */
static int cmp_rate(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	if (x == y)
		return 0;
	if (x == 0)
		return 1;
	if (y == 0)
		return -1;
	return x < y ? -1 : 1;
}

void bench_groups(const struct bench_results *rs, struct strv *apps, struct strv *techniques, double *rates,
		  size_t *n_rates, size_t max_rates)
{
	*n_rates = 0;
	for (size_t i = 0; i < rs->n; i++) {
		const struct bench_result *r = &rs->v[i];
		if (!r->app || !r->technique || isnan(r->rate_mbit))
			continue;
		if (!strv_has(apps, r->app))
			strv_push(apps, r->app);
		if (!strv_has(techniques, r->technique))
			strv_push(techniques, r->technique);
		bool seen = false;
		for (size_t k = 0; k < *n_rates; k++)
			seen |= rates[k] == r->rate_mbit;
		if (!seen && *n_rates < max_rates)
			rates[(*n_rates)++] = r->rate_mbit;
	}
	qsort(rates, *n_rates, sizeof(double), cmp_rate);
}

const char *bench_rate_label(double rate, char *buf, size_t n)
{
	if (rate <= 0)
		snprintf(buf, n, "unshaped");
	else
		snprintf(buf, n, "%g Mbit/s", rate);
	return buf;
}
