#ifndef CORE_ADDR_H
#define CORE_ADDR_H

/*
 * Socket addresses: parsing numeric hosts, formatting them the way the API reports them
 * ("127.0.0.1:7007", "[::]:7007"). Pure functions, any thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/err.h"

/* Longest text core_addr_format() writes, with its NUL. */
#define CORE_ADDR_STRLEN 64

/*
 * Parses a numeric IPv4 or IPv6 host ("0.0.0.0", "::", "::1", "fe80::1%lo" is refused) with a
 * port into *ret. "localhost" is accepted and means 127.0.0.1. Returns 0 or -EINVAL.
 */
int core_addr_parse(const char *host, uint16_t port, struct sockaddr_storage *ret,
                    socklen_t *ret_len);

/* Whether host is a literal core_addr_parse() accepts. */
bool core_addr_is_valid_host(const char *host);

/*
 * Parses "HOST:PORT", "[V6]:PORT" or "V6-without-port-is-refused" into host and port. The host
 * is copied into ret_host (size host_len). Returns 0 or -EINVAL with err filled.
 */
int core_hostport_parse(const char *text, char *ret_host, size_t host_len, uint16_t *ret_port,
                        struct core_err *err);

/* Formats sa as "A.B.C.D:P" or "[V6]:P" into buf (size >= CORE_ADDR_STRLEN). Returns buf. */
char *core_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/* The port of an AF_INET or AF_INET6 address, 0 otherwise. */
uint16_t core_addr_port(const struct sockaddr *sa);

/* Whether sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
bool core_addr_is_loopback(const struct sockaddr *sa);

#endif
