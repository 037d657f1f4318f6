/* runs.csv: one row per run, written as each run ends (an interrupted
 * benchmark keeps what it measured), and read back by --report.  The
 * columns are a table over struct bench_result; unknown numbers are empty
 * cells; strings are quoted when they need it (RFC 4180). */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <string.h>

enum col_kind { C_STR, C_INT, C_F1, C_F3 };

struct column {
	const char *name;
	enum col_kind kind;
	size_t off;
};

#define COL(name, kind) {#name, kind, offsetof(struct bench_result, name)}

static const struct column columns[] = {
	COL(run, C_INT),
	COL(app, C_STR),
	COL(technique, C_STR),
	COL(rate_mbit, C_F3),
	COL(delay_ms, C_INT),
	COL(delay_emulation, C_STR),
	COL(rep, C_INT),
	COL(from, C_STR),
	COL(to, C_STR),
	COL(outcome, C_STR),
	COL(migration_ms, C_F1),
	COL(freeze_window_ms, C_F1),
	COL(downtime_ms, C_F1),
	COL(max_gap_ms, C_F1),
	COL(newconn_fail_ms, C_F1),
	COL(client_back_ms, C_F1),
	COL(bytes_raw, C_INT),
	COL(bytes_wire, C_INT),
	COL(acked, C_INT),
	COL(lost_writes, C_INT),
	COL(resets, C_INT),
	COL(reconnects, C_INT),
	COL(coord_cpu_s, C_F3),
	COL(coord_peak_rss_mb, C_F1),
	COL(nodes_cpu_s, C_F3),
	COL(nodes_peak_rss_mb, C_F1),
	COL(criu_cpu_s, C_F3),
	COL(criu_peak_rss_mb, C_F1),
	COL(link_cpu_s, C_F3),
	COL(link_peak_rss_mb, C_F1),
	COL(prepare_ms, C_F1),
	COL(dump_ms, C_F1),
	COL(transfer_ms, C_F1),
	COL(restore_ms, C_F1),
	COL(data_mb, C_INT),
	COL(started_unix, C_F3),
	COL(reason, C_STR),
	COL(fill, C_STR),
	COL(load1, C_F3),
	COL(digest, C_STR),
};

void bench_result_init(struct bench_result *r)
{
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < ARRAY_SIZE(columns); i++)
		if (columns[i].kind != C_STR)
			*(double *)((char *)r + columns[i].off) = NAN;
}

void bench_result_clear(struct bench_result *r)
{
	for (size_t i = 0; i < ARRAY_SIZE(columns); i++)
		if (columns[i].kind == C_STR)
			free(*(char **)((char *)r + columns[i].off));
	bench_result_init(r);
}

void bench_results_take(struct bench_results *rs, struct bench_result *r)
{
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 64;
		rs->v = xrealloc(rs->v, rs->cap * sizeof(*rs->v));
	}
	rs->v[rs->n++] = *r;
	bench_result_init(r);
}

void bench_results_free(struct bench_results *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		bench_result_clear(&rs->v[i]);
	free(rs->v);
	*rs = (struct bench_results){0};
}

void csv_header(FILE *f)
{
	for (size_t i = 0; i < ARRAY_SIZE(columns); i++)
		fprintf(f, "%s%s", i ? "," : "", columns[i].name);
	fputc('\n', f);
	fflush(f);
}

static void put_str(FILE *f, const char *s)
{
	if (!s)
		return;
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s == '\r' || *s == '\n' ? ' ' : *s, f);
	}
	fputc('"', f);
}

void csv_row(FILE *f, const struct bench_result *r)
{
	for (size_t i = 0; i < ARRAY_SIZE(columns); i++) {
		const struct column *c = &columns[i];
		if (i)
			fputc(',', f);
		if (c->kind == C_STR) {
			put_str(f, *(char *const *)((const char *)r + c->off));
			continue;
		}
		double v = *(const double *)((const char *)r + c->off);
		if (isnan(v))
			continue;
		fprintf(f, c->kind == C_INT ? "%.0f" : c->kind == C_F1 ? "%.1f" : "%.3f", v);
	}
	fputc('\n', f);
	fflush(f);
}

/* Splits one line into cells (quotes honoured); returns the count. */
static size_t split(char *line, char **cells, size_t max)
{
	size_t n = 0;
	char *p = line;
	while (n < max) {
		char *w = p;
		cells[n++] = w;
		if (*p == '"') {
			for (p++;; p++) {
				if (*p == '"' && p[1] == '"') {
					*w++ = '"';
					p++;
				} else if (*p == '"' || !*p) {
					if (*p)
						p++;
					break;
				} else {
					*w++ = *p;
				}
			}
			while (*p && *p != ',')
				p++;
		} else {
			while (*p && *p != ',')
				w = ++p;
		}
		bool more = *p == ',';
		*w = '\0';
		if (!more)
			break;
		p++;
	}
	return n;
}

int csv_read(const char *path, struct bench_results *rs, struct myce_error **err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return myce_error_errno(err, "open %s", path);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int map[64]; /* cell index -> column, -1 = unknown */
	size_t ncells = 0;
	bool header = true;
	while ((len = getline(&line, &cap, f)) >= 0) {
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (!len)
			continue;
		char *cells[64];
		size_t n = split(line, cells, ARRAY_SIZE(cells));
		if (header) {
			for (size_t i = 0; i < n; i++) {
				map[i] = -1;
				for (size_t k = 0; k < ARRAY_SIZE(columns); k++)
					if (!strcmp(cells[i], columns[k].name))
						map[i] = (int)k;
			}
			ncells = n;
			header = false;
			continue;
		}
		struct bench_result r;
		bench_result_init(&r);
		for (size_t i = 0; i < n && i < ncells; i++) {
			if (map[i] < 0 || !*cells[i])
				continue;
			const struct column *c = &columns[map[i]];
			if (c->kind == C_STR)
				*(char **)((char *)&r + c->off) = xstrdup(cells[i]);
			else
				*(double *)((char *)&r + c->off) = strtod(cells[i], NULL);
		}
		bench_results_take(rs, &r);
	}
	free(line);
	if (header)
		return myce_error_set(err, ENODATA, "%s: empty", path);
	return 0;
}
