/* Levelled logging for the programs (the library itself never logs).
 * Every line: timestamp, program, level, and file:line for errors. */
#ifndef MYCE_LOG_H
#define MYCE_LOG_H

enum myce_log_level { MYCE_LOG_ERROR, MYCE_LOG_WARN, MYCE_LOG_INFO, MYCE_LOG_DEBUG };

void myce_log_init(const char *program, enum myce_log_level level);
void myce_log_at(enum myce_log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_error(...) myce_log_at(MYCE_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) myce_log_at(MYCE_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) myce_log_at(MYCE_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) myce_log_at(MYCE_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

#endif
