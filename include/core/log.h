#ifndef CORE_LOG_H
#define CORE_LOG_H

/*
 * Logging to stderr, one line per call, prefixed with the level. Thread-safe (one write(2)
 * per line). core/ and svc/ return errors instead of logging them; the top of each thread
 * logs once.
 */

enum core_log_level {
    CORE_LOG_ERROR,
    CORE_LOG_WARN,
    CORE_LOG_INFO,
    CORE_LOG_DEBUG,
    CORE_LOG_LEVEL_COUNT
};

/* Lines above this level are dropped. Default CORE_LOG_INFO. Call before threads start. */
void core_log_set_level(enum core_log_level level);

void core_log(enum core_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define core_log_error(...) core_log(CORE_LOG_ERROR, __VA_ARGS__)
#define core_log_warn(...) core_log(CORE_LOG_WARN, __VA_ARGS__)
#define core_log_info(...) core_log(CORE_LOG_INFO, __VA_ARGS__)
#define core_log_debug(...) core_log(CORE_LOG_DEBUG, __VA_ARGS__)

#endif
