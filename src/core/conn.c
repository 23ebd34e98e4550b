/*
 * The blocking connection driver: one connection served to its end through the session driver
 * with blocking-style waits, every wait a poll(2) that also watches the runner's wake eventfd,
 * so a stop reaches the connection at once. Used by the thread-style TCP models (sequential,
 * thread, pool) and by the process model's children.
 */
#include "core/runner.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/session.h"
#include "core/tls.h"

#define READ_SIZE (64 * 1024)
#define LINGER_MS 1000

/* Waits until fd has events, the runner stops, or timeout_ms (-1: forever) passes. Returns 0,
 * -ECANCELED (stop), -ETIMEDOUT or -EIO. */
static int wait_fd(const struct core_conn_ctx *c, int fd, short events, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = c->wake_fd, .events = POLLIN}};
    int n;

    for (;;) {
        n = poll(p, 2, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -EIO;
        if (n == 0)
            return -ETIMEDOUT;
        return p[1].revents ? -ECANCELED : 0;
    }
}

static int wait_idle(const struct core_conn_ctx *c, int fd, short events)
{
    return wait_fd(c, fd, events, c->idle_timeout_ms ? (int)c->idle_timeout_ms : -1);
}

/* Stops sending, then reads and discards what the client still sends, for a moment. */
static void linger(const struct core_conn_ctx *c, int fd)
{
    int64_t deadline = core_now_ms() + LINGER_MS;
    char sink[4096];

    (void)shutdown(fd, SHUT_WR);
    for (;;) {
        int64_t left = deadline - core_now_ms();
        ssize_t n;

        if (left <= 0 || wait_fd(c, fd, POLLIN, (int)left) < 0)
            return;
        n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return;
    }
}

/*
 * The TLS handshake on fd, within the idle timeout from now. Returns 0 with *ret, or a
 * negative errno (counted) when there is no TLS connection to serve.
 */
static int handshake(const struct core_conn_ctx *c, int fd, struct core_tls_conn **ret)
{
    int64_t deadline = c->idle_timeout_ms ? core_now_ms() + c->idle_timeout_ms : INT64_MAX;
    struct core_tls_conn *tc;
    int r;

    r = core_tls_conn_new(c->tls, fd, &tc);
    if (r < 0) {
        core_metrics_add(c->m, CORE_CTR_ERRORS, 1);
        return r;
    }
    for (;;) {
        int64_t left = deadline - core_now_ms();

        r = core_tls_handshake(tc, c->m);
        if (r == 0) {
            *ret = tc;
            return 0;
        }
        if (r != -EAGAIN)
            break;
        if (left <= 0)
            r = -ETIMEDOUT;
        else
            r = wait_fd(c, fd, core_tls_conn_events(tc),
                        deadline == INT64_MAX ? -1 : (int)(left > INT32_MAX ? INT32_MAX : left));
        if (r < 0) {
            core_tls_handshake_cut(c->m, r);
            break;
        }
    }
    core_tls_conn_free(tc);
    return r;
}

void core_runner_serve_conn(const struct core_conn_ctx *c, int fd, uint64_t accepted_ns)
{
    struct core_tls_conn *tc = NULL;
    struct core_session s;
    size_t rsize = c->svc->read_size ? c->svc->read_size : READ_SIZE;
    uint8_t *in = NULL;
    int r;

    if (c->tls && handshake(c, fd, &tc) < 0)
        goto out_close_fd;
    in = malloc(rsize);
    if (!in || core_session_open(&s, c->svc, c->inst, c->m, accepted_ns) < 0) {
        core_metrics_add(c->m, CORE_CTR_ERRORS, 1);
        goto out_free;
    }
    s.tls = tc;
    for (;;) {
        switch (core_session_next(&s)) {
        case CORE_SESSION_WRITE:
            r = core_session_send(&s, fd);
            if (r == -EAGAIN)
                r = wait_idle(c, fd, tc ? core_tls_conn_events(tc) : POLLOUT);
            break;
        case CORE_SESSION_READ:
            /* Bytes TLS already decrypted are not in the socket any more. */
            r = tc && core_tls_conn_pending(tc)
                    ? 0
                    : wait_idle(c, fd, tc ? core_tls_conn_events(tc) : POLLIN);
            if (r == 0)
                r = core_session_recv(&s, fd, in, rsize);
            if (r == -EAGAIN)
                r = 0;
            break;
        case CORE_SESSION_LINGER:
            core_tls_conn_shutdown(tc);
            linger(c, fd);
            goto out_close;
        case CORE_SESSION_CLOSE:
        default:
            goto out_close;
        }
        if (r < 0)
            core_session_fail(&s, r);
    }
out_close:
    core_session_close(&s);
out_free:
    free(in);
    core_tls_conn_free(tc);
out_close_fd:
    close(fd);
}
