#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum core_log_level max_level = CORE_LOG_INFO;

static const char *const level_names[CORE_LOG_LEVEL_COUNT] = {
    [CORE_LOG_ERROR] = "error",
    [CORE_LOG_WARN] = "warn",
    [CORE_LOG_INFO] = "info",
    [CORE_LOG_DEBUG] = "debug",
};

void core_log_set_level(enum core_log_level level)
{
    max_level = level;
}

void core_log(enum core_log_level level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    size_t n;
    va_list ap;
    int r;

    if (level > max_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ sockserv[%d] %s: ", ts.tv_nsec / 1000000,
                 (int)getpid(), level_names[level]);
    if (r > 0)
        n += (size_t)r;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (r > 0)
        n = n + (size_t)r < sizeof(line) - 1 ? n + (size_t)r : sizeof(line) - 2;
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, n);
}
