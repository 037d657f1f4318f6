/* Errors returned with context, in the manner of crun's libcrun_error_t.
 *
 * A function that can fail takes `struct myce_error **err` as its last
 * argument and returns a negative errno-style value.  On the way up, callers
 * add context with myce_error_wrap().  The library never prints or exits. */
#ifndef MYCE_ERROR_H
#define MYCE_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct myce_error {
	int code;  /* positive errno value, or 0 when not an errno */
	char *msg; /* "context: context: cause" */
};

/* Sets *err (if err is not NULL) and returns -abs(code) (or -1 if code is 0). */
int myce_error_set(struct myce_error **err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like myce_error_set with code = errno, appending strerror(errno). */
int myce_error_errno(struct myce_error **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prefixes the message of *err with context; returns the error's negative code. */
int myce_error_wrap(struct myce_error **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void myce_error_free(struct myce_error *err);
/* The message or "unknown error". */
const char *myce_error_msg(const struct myce_error *err);

static inline void myce_error_freep(struct myce_error **err)
{
	myce_error_free(*err);
	*err = NULL;
}
#define _cleanup_error_ __attribute__((cleanup(myce_error_freep)))

#endif
