/* A growable vector of owned strings: argument lists and name lists. */
#include "bench.h"

#include <stdarg.h>
#include <string.h>

void strv_push(struct strv *s, const char *str)
{
	s->v = xrealloc(s->v, (s->n + 2) * sizeof(char *));
	s->v[s->n++] = xstrdup(str);
	s->v[s->n] = NULL;
}

void strv_pushf(struct strv *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *str = xvasprintf(fmt, ap);
	va_end(ap);
	strv_push(s, str);
}

void strv_split(struct strv *s, const char *csv)
{
	_cleanup_free_ char *copy = xstrdup(csv);
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (*tok)
			strv_push(s, tok);
}

bool strv_has(const struct strv *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], str))
			return true;
	return false;
}

void strv_clear(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct strv){0};
}

char **strv_argv(const struct strv *s)
{
	char **v = xmalloc((s->n + 1) * sizeof(char *));
	for (size_t i = 0; i < s->n; i++)
		v[i] = s->v[i];
	v[s->n] = NULL;
	return v;
}
