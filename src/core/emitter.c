#include "core/emitter.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

/* This process's pid, kept (getpid() is a system call): a fork's child learns its own in
 * pthread_atfork()'s handler, before it runs anything else. */
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static _Atomic pid_t own_pid;

static void pid_forked(void)
{
    atomic_store_explicit(&own_pid, getpid(), memory_order_relaxed);
}

static void pid_init(void)
{
    pid_forked();
    (void)pthread_atfork(NULL, NULL, pid_forked);
}

static pid_t own(void)
{
    pthread_once(&pid_once, pid_init);
    return atomic_load_explicit(&own_pid, memory_order_relaxed);
}

void core_emitter_init(struct core_emitter *em, struct core_events *events, const char *listener_id,
                       struct core_metrics *m)
{
    *em = (struct core_emitter){
        .events = events, .listener_id = listener_id, .m = m, .pid = own(), .child_fd = -1};
}

int core_emitter_channel(int ret_fds[2])
{
    int fds[2];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
        return -errno;
    ret_fds[0] = fds[0];
    ret_fds[1] = fds[1];
    return 0;
}

void core_emitter_child(struct core_emitter *em, int fd)
{
    em->child_fd = fd;
}

static void count_drop(struct core_emitter *em)
{
    if (em->m)
        core_metrics_add(em->m, CORE_CTR_EVENTS_DROPPED, 1);
}

static bool is_type_ok(const char *type)
{
    size_t n = type ? strnlen(type, CORE_EMIT_TYPE_MAX + 1) : 0;

    return n > 0 && n <= CORE_EMIT_TYPE_MAX;
}

/* data with "listener" first (new reference), or NULL when out of memory. Takes data. */
static json_t *with_listener(const struct core_emitter *em, json_t *data)
{
    json_t *j = json_pack("{s:s}", "listener", em->listener_id ? em->listener_id : "");

    if (j && json_object_update_missing(j, data) < 0) {
        json_decref(j);
        j = NULL;
    }
    json_decref(data);
    return j;
}

/* In a forked child: one message on the channel, or a drop. Takes data. */
static void send_to_daemon(struct core_emitter *em, const char *type, json_t *data)
{
    char msg[CORE_EMIT_MAX];
    size_t tlen = strlen(type), dlen;
    ssize_t n;

    /* The text goes straight into msg: no allocation beyond jansson's own. */
    dlen = json_dumpb(data, msg + tlen + 1, sizeof(msg) - tlen - 1, JSON_COMPACT);
    json_decref(data);
    if (dlen == 0 || dlen > sizeof(msg) - tlen - 1) {
        count_drop(em);
        return;
    }
    memcpy(msg, type, tlen + 1);
    do {
        n = send(em->child_fd, msg, tlen + 1 + dlen, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        count_drop(em);
}

void core_svc_emit(struct core_emitter *em, const char *type, json_t *data)
{
    if (!em || !em->events || !json_is_object(data) || !is_type_ok(type)) {
        json_decref(data);
        return;
    }
    data = with_listener(em, data);
    if (!data) {
        count_drop(em);
        return;
    }
    if (own() == em->pid) {
        core_events_publish(em->events, type, data);
        return;
    }
    if (em->child_fd < 0) { /* a child with no channel */
        json_decref(data);
        count_drop(em);
        return;
    }
    send_to_daemon(em, type, data);
}

/* Publishes one message of len bytes (NUL-terminated at msg[len]); false when malformed. */
static bool publish_message(struct core_emitter *em, char *msg, size_t len)
{
    size_t tlen = strnlen(msg, len);
    json_t *data;

    if (tlen == len || !is_type_ok(msg))
        return false;
    data = json_loadb(msg + tlen + 1, len - tlen - 1, 0, NULL);
    if (!json_is_object(data)) {
        json_decref(data);
        return false;
    }
    core_events_publish(em->events, msg, data);
    return true;
}

unsigned core_emitter_pump(struct core_emitter *em, int fd, unsigned max)
{
    char msg[CORE_EMIT_MAX + 1];
    unsigned n = 0;

    while (n < max) {
        ssize_t len = recv(fd, msg, CORE_EMIT_MAX, MSG_DONTWAIT | MSG_TRUNC);

        if (len < 0 && errno == EINTR)
            continue;
        if (len <= 0) /* none waiting, or the channel failed: the caller polls again */
            break;
        n++;
        if ((size_t)len > CORE_EMIT_MAX) {
            count_drop(em);
            continue;
        }
        msg[len] = '\0';
        if (!publish_message(em, msg, (size_t)len))
            count_drop(em);
    }
    return n;
}
