#ifndef CORE_TLS_H
#define CORE_TLS_H

/*
 * TLS on a TCP listener (OpenSSL): the listener option "tls" checked, a server context made
 * from it for a runner, and the connections of that runner wrapped in it, non-blocking. A
 * service never sees TLS: the session driver's recv and send go through the connection
 * (core/session.h).
 *
 * The option: {"cert_file": "/abs", "key_file": "/abs", "client_ca_file": "/abs"}; the last is
 * optional and, when given, a client must present a certificate that this CA signed. TLS 1.2
 * and 1.3 only, no renegotiation, no session tickets.
 *
 * Thread rules: a struct core_tls is immutable once made and may be used by any thread (and
 * by a forked child); a struct core_tls_conn by one thread at a time.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "core/err.h"
#include "core/metrics.h"

#define CORE_TLS_OPTION "tls"
#define CORE_TLS_FILE_MAX (1024 * 1024) /* largest certificate, key or CA file, in bytes */

struct core_tls;
struct core_tls_conn;

/*
 * Checks v, the value of options.tls: an object of cert_file and key_file (absolute paths,
 * required) and client_ca_file (optional), nothing else; the files readable, the certificate
 * (chain) and the key PEM that parse and belong together, the CA file PEM certificates. Returns
 * 0, -ENOMEM, or -EINVAL with err->field "options.tls" (not an object, an unknown or missing
 * member) or "options.tls.cert_file" / "key_file" / "client_ca_file" and a message saying what
 * is wrong with that file. Any thread; reads the files.
 */
int core_tls_options_check(const json_t *v, struct core_err *err);

/*
 * A server context made from checked options.tls v. Returns 0 with *ret (free with
 * core_tls_free()), or a negative errno with err set as core_tls_options_check() does (a file
 * changed since it was checked).
 */
int core_tls_new(const json_t *v, struct core_tls **ret, struct core_err *err);

/* Frees t. Accepts NULL. No connection of t may be left. */
void core_tls_free(struct core_tls *t);

/*
 * What the listener status shows of options.tls v (NULL: no TLS): a new JSON null without TLS,
 * else {"enabled": true, "client_auth": bool, "subject": "CN=...", "not_after":
 * "2027-01-01T00:00:00Z"} (subject and not_after null when the certificate cannot be read).
 * NULL when out of memory. Any thread; reads the certificate file.
 */
json_t *core_tls_status_json(const json_t *v);

/*
 * A server-side TLS connection of t on the connected, non-blocking socket fd (borrowed: the
 * caller closes it after core_tls_conn_free()). Returns 0 with *ret, or -ENOMEM.
 */
int core_tls_conn_new(struct core_tls *t, int fd, struct core_tls_conn **ret);

/*
 * Advances the handshake. Returns 0 once it is done (counted in tls_handshakes), -EAGAIN when it
 * waits for the socket (core_tls_conn_events() says for what), or a negative errno when it
 * failed (counted in tls_handshake_failures and in the counter of its reason, in m).
 */
int core_tls_handshake(struct core_tls_conn *c, struct core_metrics *m);

/*
 * The handshake did not end: error -ETIMEDOUT (counted in tls_handshake_failures and
 * tls_failures_timeout), -ECANCELED (a stop: not counted), another (counted, reason other).
 */
void core_tls_handshake_cut(struct core_metrics *m, int error);

/*
 * Reads decrypted bytes into buf: as many as are there, up to size (at least 16 KiB). Returns the
 * count (> 0), 0 when the peer closed (close_notify or end of stream), -EAGAIN when nothing is
 * there yet (see core_tls_conn_events()), or a negative errno (-EPROTO for a TLS error).
 */
ssize_t core_tls_read(struct core_tls_conn *c, void *buf, size_t size);

/* Encrypts and sends up to len bytes of p: the count sent (> 0), -EAGAIN, or a negative errno. */
ssize_t core_tls_write(struct core_tls_conn *c, const void *p, size_t len);

/* Whether decrypted bytes wait inside c (the socket may be empty): read again before waiting. */
bool core_tls_conn_pending(const struct core_tls_conn *c);

/* What the last -EAGAIN waits for: POLLIN or POLLOUT (poll.h; the same bits as epoll's). */
short core_tls_conn_events(const struct core_tls_conn *c);

/* Sends close_notify once, without waiting (when the handshake was done and nothing failed). */
void core_tls_conn_shutdown(struct core_tls_conn *c);

/* Frees c (sends close_notify first when core_tls_conn_shutdown() did not). Accepts NULL. */
void core_tls_conn_free(struct core_tls_conn *c);

#endif
