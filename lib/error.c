#include "error.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_v(struct myce_error **err, int code, const char *suffix, const char *fmt, va_list ap)
{
	int ret = code ? -abs(code) : -1;
	if (!err)
		return ret;
	char *msg = xvasprintf(fmt, ap);
	if (suffix) {
		char *full = xasprintf("%s: %s", msg, suffix);
		free(msg);
		msg = full;
	}
	if (*err) {
		free((*err)->msg);
	} else {
		*err = xzalloc(sizeof(**err));
	}
	(*err)->code = abs(code);
	(*err)->msg = msg;
	return ret;
}

int myce_error_set(struct myce_error **err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int ret = set_v(err, code, NULL, fmt, ap);
	va_end(ap);
	return ret;
}

int myce_error_errno(struct myce_error **err, const char *fmt, ...)
{
	int saved = errno ? errno : EIO;
	va_list ap;
	va_start(ap, fmt);
	int ret = set_v(err, saved, strerror(saved), fmt, ap);
	va_end(ap);
	errno = saved;
	return ret;
}

int myce_error_wrap(struct myce_error **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *ctx = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
	free(ctx);
	free((*err)->msg);
	(*err)->msg = msg;
	return (*err)->code ? -(*err)->code : -1;
}

void myce_error_free(struct myce_error *err)
{
	if (!err)
		return;
	free(err->msg);
	free(err);
}

const char *myce_error_msg(const struct myce_error *err)
{
	return err && err->msg ? err->msg : "unknown error";
}
