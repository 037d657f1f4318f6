#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Process-wide logging configuration: set once by main() before any thread. */
static const char *log_program = "myce";
static enum myce_log_level log_level = MYCE_LOG_INFO;

void myce_log_init(const char *program, enum myce_log_level level)
{
	log_program = program;
	log_level = level;
}

void myce_log_at(enum myce_log_level level, const char *file, int line, const char *fmt, ...)
{
	static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
	if (level > log_level)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if (level <= MYCE_LOG_WARN)
		fprintf(stderr, "%02d:%02d:%02d.%03ld %s[%d] %s %s:%d %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
			ts.tv_nsec / 1000000, log_program, (int)getpid(), names[level], base, line, msg);
	else
		fprintf(stderr, "%02d:%02d:%02d.%03ld %s[%d] %s %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
			ts.tv_nsec / 1000000, log_program, (int)getpid(), names[level], msg);
}
