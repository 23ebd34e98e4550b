#ifndef CLI_COMMON_H
#define CLI_COMMON_H

/*
 * What the client verbs share: messages and exit statuses, deadlines, number parsing, name
 * resolution and a connect bounded by a deadline. One thread (the command's).
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netdb.h>

/* Prints "sockserv VERB: MESSAGE" and a hint to --help on stderr. Returns 2 (usage error). */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "sockserv VERB: MESSAGE" on stderr. Returns 1 (failure). */
int cli_fail(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A monotonic clock in milliseconds. */
int64_t cli_now_ms(void);

/* Milliseconds left until deadline (cli_now_ms() time), 0 when past, for poll(2). */
int cli_remaining_ms(int64_t deadline);

/* Parses a decimal number from min to max, nothing else in text. */
bool cli_parse_ulong(const char *text, unsigned long min, unsigned long max, unsigned long *ret);

/*
 * Resolves HOST PORT (a numeric port) for socktype. Returns 0 with *ret (freeaddrinfo() it), or
 * 1 after printing why as VERB.
 */
int cli_resolve(const char *verb, const char *host, const char *port, int socktype,
                struct addrinfo **ret);

/*
 * Connects a non-blocking TCP socket to the first address of list that accepts before deadline.
 * Returns the socket, or a negative errno: -ETIMEDOUT when the deadline passed, else why the
 * last address failed.
 */
int cli_tcp_connect(const struct addrinfo *list, int64_t deadline);

/*
 * Where a download (a restore, a file of the API) is written: a temporary file beside the
 * target, made durable and renamed over it only once the content is complete and checked, so
 * that an interrupted or refused download leaves no partial file; or standard output ("-").
 */
struct cli_sink {
    int fd;
    bool is_stdout;
    char path[PATH_MAX];
    char tmp[PATH_MAX + 16];
};

/*
 * Opens a sink for target ("-": standard output). Unless chosen (the user named the target), a
 * file that exists is refused rather than overwritten. Returns 0, or 1 after printing why as
 * VERB.
 */
int cli_sink_open(struct cli_sink *s, const char *verb, const char *target, bool chosen);

/* Writes all of p. Returns 0 or 1 after printing why as VERB. */
int cli_sink_write(struct cli_sink *s, const char *verb, const void *p, size_t n);

/* fsync, the mode a new file gets (0666 less the umask), rename over the target, fsync of its
 * directory. Returns 0 or 1 after printing why as VERB. */
int cli_sink_commit(struct cli_sink *s, const char *verb);

/* Drops what was written (the temporary file). Accepts a sink never opened or committed. */
void cli_sink_abort(struct cli_sink *s);

#endif
