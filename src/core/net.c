#include "core/net.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/addr.h"

int core_net_bind(const struct sockaddr_storage *sa, socklen_t len, int type, unsigned flags,
                  int backlog, struct sockaddr_storage *ret_bound, struct core_err *err)
{
    const int on = 1, off = 0;
    char where[CORE_ADDR_STRLEN];
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    const char *what;
    int fd, r;

    fd = socket(sa->ss_family,
                type | SOCK_CLOEXEC | (flags & CORE_NET_NONBLOCK ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) {
        what = "socket";
        goto out_errno;
    }
    if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0) {
        what = "setsockopt(SO_REUSEADDR)";
        goto out_errno;
    }
    /* Accepted connections inherit it: an answer leaves at once, not after the client's ACK
     * of the one before (Nagle and a delayed ACK hold a small write for up to 40 ms). */
    if (type == SOCK_STREAM && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) < 0) {
        what = "setsockopt(TCP_NODELAY)";
        goto out_errno;
    }
    if ((flags & CORE_NET_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0) {
        what = "setsockopt(SO_REUSEPORT)";
        goto out_errno;
    }
    if (sa->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0) {
        what = "setsockopt(IPV6_V6ONLY)";
        goto out_errno;
    }
    if (bind(fd, (const struct sockaddr *)sa, len) < 0) {
        what = "bind";
        goto out_errno;
    }
    if (type == SOCK_STREAM && listen(fd, backlog) < 0) {
        what = "listen";
        goto out_errno;
    }
    if (!ret_bound)
        return fd;
    /* The kernel is asked only for a port it picked: a fixed one is bound as asked. */
    if (core_addr_port((const struct sockaddr *)sa) != 0) {
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, sa, len < sizeof(ss) ? len : sizeof(ss));
    } else if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) < 0) {
        what = "getsockname";
        goto out_errno;
    }
    *ret_bound = ss;
    return fd;

out_errno:
    r = -errno;
    if (fd >= 0)
        close(fd);
    core_addr_format((const struct sockaddr *)sa, where, sizeof(where));
    return core_err_set(err, r, NULL, "%s %s/%s: %s", what, where,
                        type == SOCK_DGRAM ? "udp" : "tcp", strerror(-r));
}

int core_net_bind_sibling(int fd, unsigned flags, int backlog, struct core_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss), type_len = sizeof(int);
    int type, r;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) < 0) {
        r = -errno;
        return core_err_set(err, r, NULL, "getsockname: %s", strerror(-r));
    }
    return core_net_bind(&ss, len, type, flags, backlog, NULL, err);
}

/*
 * Whether the socket file at sa is stale (nobody listens on it): 0 when it is (and it was
 * removed), -EADDRINUSE when a server answers there, -EEXIST when the path is not a socket.
 */
static int unix_remove_stale(const struct sockaddr_un *sa, struct core_err *err)
{
    struct stat st;
    int fd, r;

    if (lstat(sa->sun_path, &st) < 0) {
        r = -errno;
        return r == -ENOENT ? 0 : core_err_set(err, r, NULL, "%s: %s", sa->sun_path, strerror(-r));
    }
    if (!S_ISSOCK(st.st_mode))
        return core_err_set(err, -EEXIST, NULL, "%s exists and is not a socket", sa->sun_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        return core_err_set(err, r, NULL, "socket: %s", strerror(-r));
    }
    r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? -errno : 0;
    close(fd);
    if (r != -ECONNREFUSED)
        return core_err_set(err, -EADDRINUSE, NULL, "%s is in use by another server", sa->sun_path);
    if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
        r = -errno;
        return core_err_set(err, r, NULL, "cannot remove the stale socket %s: %s", sa->sun_path,
                            strerror(-r));
    }
    return 0;
}

int core_net_unix_listen(const char *path, unsigned mode, unsigned flags, int backlog,
                         struct stat *ret_st, bool *ret_replaced, struct core_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    bool replaced = false;
    int fd, r;

    if (!*path || strlen(path) >= sizeof(sa.sun_path))
        return core_err_set(err, -ENAMETOOLONG, NULL, "a Unix socket path is 1 to %zu bytes long",
                            sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX,
                SOCK_STREAM | SOCK_CLOEXEC | (flags & CORE_NET_NONBLOCK ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) {
        r = -errno;
        return core_err_set(err, r, NULL, "socket: %s", strerror(-r));
    }
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        if (r != -EADDRINUSE) {
            (void)core_err_set(err, r, NULL, "bind %s: %s", path, strerror(-r));
            goto out_close_fd;
        }
        r = unix_remove_stale(&sa, err);
        if (r < 0)
            goto out_close_fd;
        replaced = true;
        if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
            r = -errno;
            (void)core_err_set(err, r, NULL, "bind %s: %s", path, strerror(-r));
            goto out_close_fd;
        }
    }
    if (chmod(path, mode) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "chmod %s: %s", path, strerror(-r));
        goto out_unlink;
    }
    if (lstat(path, ret_st) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "%s: %s", path, strerror(-r));
        goto out_unlink;
    }
    if (listen(fd, backlog) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "listen: %s", strerror(-r));
        goto out_unlink;
    }
    if (ret_replaced)
        *ret_replaced = replaced;
    return fd;

out_unlink:
    (void)unlink(path);
out_close_fd:
    close(fd);
    return r;
}
