/* Small helpers shared by every file: allocation that aborts on OOM, cleanup
 * attributes, ownership transfer, monotonic time, safe I/O loops. */
#ifndef MYCE_UTIL_H
#define MYCE_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *xmalloc(size_t n);
void *xzalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}
static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))
#define _cleanup_close_ __attribute__((cleanup(closep)))
#define _cleanup_fclose_ __attribute__((cleanup(fclosep)))

/* Returns *pp and sets *pp to NULL: hands ownership to the caller. */
#define steal_pointer(pp)                                                                          \
	({                                                                                         \
		__typeof__(*(pp)) steal_tmp_ = *(pp);                                              \
		*(pp) = NULL;                                                                      \
		steal_tmp_;                                                                        \
	})
#define steal_fd(fdp)                                                                              \
	({                                                                                         \
		int steal_fd_tmp_ = *(fdp);                                                        \
		*(fdp) = -1;                                                                       \
		steal_fd_tmp_;                                                                     \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Big-endian integers of n bytes (wire record fields). */
static inline void myce_put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t myce_get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Monotonic clock in microseconds / milliseconds (double). */
int64_t myce_now_us(void);
double myce_now_ms(void);
/* Wall clock in microseconds since the epoch. */
int64_t myce_wall_us(void);

/* Full read/write loops that retry on EINTR and short transfers.
 * Return 0 on success, -errno on error; myce_read_full returns -EPIPE on EOF. */
int myce_write_full(int fd, const void *buf, size_t len);
int myce_read_full(int fd, void *buf, size_t len);

/* Reads a whole small file; returns NULL and sets errno on failure. */
char *myce_read_file(const char *path, size_t *len_out);
/* Writes a file atomically: temp, fsync, rename, fsync dir. 0 or -errno. */
int myce_write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* mkdir -p; 0 or -errno. */
int myce_mkdir_p(const char *path, int mode);
/* rm -rf of a directory tree; 0 or -errno (ENOENT is success). */
int myce_rm_rf(const char *path);

/* Constant-time comparison of two strings (length leaks, content does not). */
bool myce_const_eq(const char *a, const char *b);

/* True if pid runs the program named exe_name (basename of /proc/PID/exe;
 * a binary replaced since it started still counts). */
bool myce_pid_runs(pid_t pid, const char *exe_name);

/* Directory of the running executable (caller frees). */
char *myce_exe_dir(void);

/* Valid object names: [a-z0-9]([-a-z0-9]{0,61}[a-z0-9])? (DNS label). */
bool myce_name_valid(const char *name);

#endif
