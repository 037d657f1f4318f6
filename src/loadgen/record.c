/* Request records: one per request, then the statistics a client would
 * see (gaps, latencies) and the CSV trace. */
#include "loadgen.h"

#include <errno.h>
#include <string.h>

static const char *const outcome_names[] = {
	[LG_PENDING] = "pending", [LG_OK] = "ok",	  [LG_ERROR] = "error",
	[LG_TIMEOUT] = "timeout", [LG_RESET] = "reset", [LG_UNANSWERED] = "unanswered",
};

const char *lg_outcome_name(enum lg_outcome o)
{
	return (size_t)o < ARRAY_SIZE(outcome_names) ? outcome_names[o] : "?";
}

void lg_records_init(struct lg_records *r)
{
	memset(r, 0, sizeof(*r));
	r->mono0_us = myce_now_us();
	r->wall0_us = myce_wall_us();
	pthread_mutex_init(&r->lock, NULL);
}

void lg_records_free(struct lg_records *r)
{
	free(r->v);
	pthread_mutex_destroy(&r->lock);
	r->v = NULL;
	r->n = r->cap = 0;
}

int64_t lg_records_now(const struct lg_records *r)
{
	return r->wall0_us + (myce_now_us() - r->mono0_us);
}

uint64_t lg_records_add(struct lg_records *r, uint32_t conn)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 65536;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n] = (struct lg_record){.send_us = lg_records_now(r), .conn = conn, .outcome = LG_PENDING};
	return r->n++;
}

void lg_records_finish(struct lg_records *r, uint64_t seq, enum lg_outcome o)
{
	if (seq >= r->n)
		return;
	r->v[seq].reply_us = lg_records_now(r);
	r->v[seq].outcome = (uint8_t)o;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

void lg_sort_i64(int64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_i64);
}

double lg_percentile(const int64_t *sorted, size_t n, unsigned pct)
{
	if (n == 0)
		return 0;
	/* Nearest rank: ceil(pct/100 * n). */
	size_t rank = (pct * n + 99) / 100;
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)sorted[rank - 1];
}

void lg_records_stats(const struct lg_records *r, int64_t end_us, struct lg_stats *st)
{
	memset(st, 0, sizeof(*st));
	_cleanup_free_ int64_t *lat = xmalloc(r->n * sizeof(*lat));
	size_t nlat = 0;
	int64_t max_gap = 0, max_gap_at = 0, max_outage = 0;
	int64_t last_ok = 0;	/* reply time of the previous acknowledgement */
	uint32_t last_conn = 0; /* its connection */
	bool have_ok = false;

	for (size_t i = 0; i < r->n; i++) {
		const struct lg_record *rec = &r->v[i];
		st->requests++;
		switch ((enum lg_outcome)rec->outcome) {
		case LG_OK:
			st->ok++;
			lat[nlat++] = rec->reply_us - rec->send_us;
			if (have_ok) {
				int64_t d = rec->reply_us - last_ok;
				if (rec->conn == last_conn && d > max_gap) {
					max_gap = d;
					max_gap_at = last_ok;
				}
				if (d > max_outage)
					max_outage = d;
			}
			have_ok = true;
			last_ok = rec->reply_us;
			last_conn = rec->conn;
			break;
		case LG_ERROR:
			st->errors++;
			break;
		case LG_TIMEOUT:
		case LG_RESET:
			if (rec->outcome == LG_TIMEOUT)
				st->timeouts++;
			else
				st->resets++;
			/* The connection went silent from the last reply until it was given up. */
			if (have_ok && rec->conn == last_conn && rec->reply_us - last_ok > max_gap) {
				max_gap = rec->reply_us - last_ok;
				max_gap_at = last_ok;
			}
			break;
		case LG_PENDING:
		case LG_UNANSWERED:
			st->unanswered++;
			/* Silent until the end of the run. */
			if (have_ok && rec->conn == last_conn && end_us - last_ok > max_gap) {
				max_gap = end_us - last_ok;
				max_gap_at = last_ok;
			}
			if (have_ok && end_us - last_ok > max_outage)
				max_outage = end_us - last_ok;
			break;
		}
	}
	lg_sort_i64(lat, nlat);
	st->p50_ms = lg_percentile(lat, nlat, 50) / 1000.0;
	st->p99_ms = lg_percentile(lat, nlat, 99) / 1000.0;
	st->max_latency_ms = nlat ? (double)lat[nlat - 1] / 1000.0 : 0;
	st->max_gap_ms = (double)max_gap / 1000.0;
	st->max_gap_at_ms = max_gap ? (double)(max_gap_at - r->wall0_us) / 1000.0 : 0;
	st->max_outage_ms = (double)max_outage / 1000.0;
}

int lg_records_write_trace(const struct lg_records *r, const char *path, struct myce_error **err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "we");
	if (!f)
		return myce_error_errno(err, "open trace '%s'", path);
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	fputs("seq,send_us,reply_us,outcome\n", f);
	for (size_t i = 0; i < r->n; i++) {
		const struct lg_record *rec = &r->v[i];
		if (rec->reply_us)
			fprintf(f, "%zu,%lld,%lld,%s\n", i, (long long)rec->send_us,
				(long long)rec->reply_us, lg_outcome_name(rec->outcome));
		else
			fprintf(f, "%zu,%lld,,%s\n", i, (long long)rec->send_us,
				lg_outcome_name(rec->outcome));
	}
	if (fflush(f) != 0 || ferror(f))
		return myce_error_errno(err, "write trace '%s'", path);
	return 0;
}
