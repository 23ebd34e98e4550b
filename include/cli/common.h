#ifndef CLI_COMMON_H
#define CLI_COMMON_H

/*
 * What the client verbs share: messages and exit statuses, deadlines, number parsing, name
 * resolution and a connect bounded by a deadline. One thread (the command's).
 */

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

#endif
