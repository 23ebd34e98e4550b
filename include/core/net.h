#ifndef CORE_NET_H
#define CORE_NET_H

/*
 * Sockets as the daemon binds them: a listener's TCP or UDP socket, the API's listening TCP and
 * Unix sockets, and the count of the TCP connections on a local address (sock_diag). Every fd
 * is created with SOCK_CLOEXEC. No state: any thread.
 */

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "core/err.h"

/* The listen() backlog of a listener's TCP socket. */
#define CORE_NET_BACKLOG 511

/* Flags of core_net_bind() and core_net_unix_listen(). */
enum core_net_flag {
    CORE_NET_NONBLOCK = 1u << 0,  /* SOCK_NONBLOCK, for event loops and libmicrohttpd */
    CORE_NET_REUSEPORT = 1u << 1, /* SO_REUSEPORT before bind: more sockets (one per loop of the
                                     event model) may bind the same address */
};

/*
 * A socket of type SOCK_STREAM or SOCK_DGRAM bound to sa (len bytes), with flags:
 * - TCP gets SO_REUSEADDR (binding again right after a stop must not wait for TIME_WAIT); UDP
 *   does not, where it would let two sockets share a port;
 * - TCP gets TCP_NODELAY, which the connections it accepts inherit: a small answer is sent at
 *   once, not held by Nagle's algorithm until the client acknowledges the one before;
 * - an AF_INET6 socket is dual-stack ("::" serves IPv4 too, whatever net.ipv6.bindv6only says);
 * - a TCP socket listens, with backlog.
 * *ret_bound (may be NULL) gets the address it is bound to (with the port the kernel chose for
 * port 0). Returns the fd (the caller owns it) or a negative errno (-EADDRINUSE, -EADDRNOTAVAIL,
 * -EACCES, ...) with err->msg naming the step, the address and the transport ("bind
 * 127.0.0.1:7007/tcp: Address already in use") and err->field empty: which field of the
 * caller's configuration is at fault is the caller's to say.
 */
int core_net_bind(const struct sockaddr_storage *sa, socklen_t len, int type, unsigned flags,
                  int backlog, struct sockaddr_storage *ret_bound, struct core_err *err);

/*
 * One more socket bound where fd is (its type, family, address and port), as core_net_bind()
 * makes it: for the event model's loops, when fd was bound with CORE_NET_REUSEPORT and flags has
 * it too. Returns the fd or a negative errno with err set as core_net_bind() does.
 */
int core_net_bind_sibling(int fd, unsigned flags, int backlog, struct core_err *err);

/*
 * A listening Unix stream socket at path, whose file gets mode before the socket listens (no
 * client connects before the mode holds). A socket file already at path is taken over when
 * nobody listens on it (stale, left by a process that was killed): it is removed and
 * *ret_replaced (may be NULL) set to true; it is left alone when a server answers there
 * (-EADDRINUSE, "... is in use by another server") or when the path is not a socket (-EEXIST,
 * "... exists and is not a socket"). *ret_st gets the file's identity (lstat), to remove it
 * later only if it still is this one. Returns the fd (the caller owns it, and the file) or a
 * negative errno with err set: -ENAMETOOLONG for an empty path or one longer than sun_path. On
 * failure no file of its own is left at path.
 */
int core_net_unix_listen(const char *path, unsigned mode, unsigned flags, int backlog,
                         struct stat *ret_st, bool *ret_replaced, struct core_err *err);

#endif
