#ifndef CORE_SESSION_H
#define CORE_SESSION_H

/*
 * The session driver: the one place that feeds a sans-I/O service session (struct
 * core_service) and acts on its verdicts. A runner owns the socket and the waiting; it asks
 * core_session_next() what to do, does it (send, wait for input, linger, close) and tells the
 * session what happened. The driver keeps the output buffer, counts bytes in and out, service
 * errors and the failures a runner reports, and records each answer's service time (from the
 * arrival of the input, or the accept for a greeting, to the moment its last byte is sent).
 *
 * The blocking connection driver (core_runner_serve_conn(), conn.c) and the event loop
 * (runner_event.c) both drive their connections through it.
 *
 * Caller storage. One thread at a time per session; sessions are independent.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "core/service.h"
#include "core/tls.h"

enum core_session_state {
    CORE_SESSION_OPEN, /* the service takes input and answers */
    CORE_SESSION_DONE, /* the service is done: what it answered is sent, then the close */
    CORE_SESSION_CUT,  /* the connection failed or was cut: close now */
};

struct core_session {
    const struct core_service *svc;
    struct core_metrics *m;
    void *sess;          /* the service's session: svc->session_size zeroed bytes */
    struct core_buf out; /* the answer not yet sent */
    int verdict;         /* the service's last verdict, acted on once out is sent */
    bool completed;      /* the service saw the whole exchange (end of input, or it closed) */
    enum core_session_state state;
    uint64_t t0; /* CLOCK_MONOTONIC ns: when the input being answered arrived; 0: none */
    /* The connection's TLS (core/tls.h), set by the runner after core_session_open() once the
     * handshake is done; borrowed (the runner frees it); NULL: plain. recv and send go
     * through it. */
    struct core_tls_conn *tls;
};

/* What the runner does next with the connection. */
enum core_session_next {
    CORE_SESSION_READ,   /* wait for input, then core_session_recv() or core_session_input() */
    CORE_SESSION_WRITE,  /* send out: core_session_send(), or core_session_sent() */
    CORE_SESSION_LINGER, /* stop sending, read and discard what the client still sends for a
                          * moment (so that unread input does not turn the close into a reset
                          * that could destroy the answer in flight), then close */
    CORE_SESSION_CLOSE,  /* close now */
};

/*
 * Opens the service's session on a connection accepted at accepted_ns (CLOCK_MONOTONIC ns):
 * a greeting the service appends is the first thing to send, its service time counted from
 * accepted_ns. Returns 0 or -ENOMEM (then nothing is open and nothing needs closing).
 */
int core_session_open(struct core_session *s, const struct core_service *svc, void *inst,
                      struct core_metrics *m, uint64_t accepted_ns);

/*
 * What to do next. Once out is sent, acts on the service's verdict: records the service time,
 * asks the service for the next part of a pulled answer, counts a service error (the error's
 * answer is sent, then the connection lingers), or ends the session. Asking again without
 * telling anything new gives the same answer and counts nothing twice.
 */
enum core_session_next core_session_next(struct core_session *s);

/* len > 0 bytes arrived (counted in bytes_in); len 0: the client closed its sending side.
 * Only after CORE_SESSION_READ. */
void core_session_input(struct core_session *s, const uint8_t *in, size_t len);

/* n bytes of out (n <= out.len) were sent: counted in bytes_out and dropped from out. */
void core_session_sent(struct core_session *s, size_t n);

/*
 * The socket halves of the above, non-blocking on a connected stream socket fd (through s->tls
 * when set: -EAGAIN then may wait for either direction, core_tls_conn_events()).
 * core_session_recv() reads once into buf (size bytes) and hands what came to
 * core_session_input(): 0, -EAGAIN when nothing was there, or a negative errno.
 * core_session_send() sends out until it is empty (0) or the socket is full (-EAGAIN), or
 * returns a negative errno. Errors are the caller's to report with core_session_fail().
 */
int core_session_recv(struct core_session *s, int fd, uint8_t *buf, size_t size);
int core_session_send(struct core_session *s, int fd);

/*
 * The connection failed or was cut with error (a negative errno) while the session was open:
 * counted as idle_timeouts for -ETIMEDOUT; not counted for a stop (-ECANCELED) or a client's
 * reset (-ECONNRESET, -EPIPE); in errors otherwise. Then core_session_next() says close. Once
 * the service is done (lingering), nothing is counted and the session stays completed.
 */
void core_session_fail(struct core_session *s, int error);

/* Closes the service's session (completed unless cut) and frees what s holds. */
void core_session_close(struct core_session *s);

#endif
