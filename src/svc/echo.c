#include "svc/echo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define UDP_PAYLOAD_MAX 65507

struct echo_inst {
    bool once;           /* TCP: close after the first message */
    size_t max_datagram; /* UDP: longer datagrams are dropped */
    struct core_metrics *metrics;
};

struct echo_sess {
    const struct echo_inst *inst;
};

enum { CTR_DROPPED_TOO_LONG, CTR_COUNT };

static const char *const echo_counters[CTR_COUNT] = {
    [CTR_DROPPED_TOO_LONG] = "dropped_too_long",
};

static const char *const echo_counter_help[CTR_COUNT] = {
    [CTR_DROPPED_TOO_LONG] = "datagrams longer than max_datagram, dropped unanswered",
};

static const unsigned echo_counter_transports[CTR_COUNT] = {
    [CTR_DROPPED_TOO_LONG] = CORE_TRANSPORT_BIT(CORE_UDP),
};

static const char *const mode_choices[] = {"stream", "once", NULL};

static const struct core_option echo_options[] = {
    {.name = "mode",
     .type = CORE_OPTION_STRING,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_string = "stream",
     .choices = mode_choices,
     .help = "stream: answer every message until the client closes; once: close after the first"},
    {.name = "max_datagram",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_UDP),
     .default_integer = UDP_PAYLOAD_MAX,
     .minimum = 1,
     .maximum = UDP_PAYLOAD_MAX,
     .unit = "bytes",
     .help = "the longest datagram answered; longer ones are dropped and counted"},
};

static int echo_instance_new(const json_t *opts, enum core_transport t,
                             const struct core_svc_env *env, void **ret_inst, struct core_err *err)
{
    struct echo_inst *in = calloc(1, sizeof(*in));
    const char *mode = json_string_value(json_object_get(opts, "mode"));
    json_t *max = json_object_get(opts, "max_datagram");

    (void)t;
    if (!in)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    in->once = mode && strcmp(mode, "once") == 0;
    in->max_datagram = max ? (size_t)json_integer_value(max) : UDP_PAYLOAD_MAX;
    in->metrics = env->metrics;
    *ret_inst = in;
    return 0;
}

static void echo_instance_free(void *inst)
{
    free(inst);
}

static int echo_session_open(void *inst, void *sess, struct core_buf *out)
{
    struct echo_sess *s = sess;

    (void)out;
    s->inst = inst;
    return CORE_VERDICT_MORE;
}

static int echo_session_feed(void *sess, const uint8_t *in, size_t len, struct core_buf *out)
{
    struct echo_sess *s = sess;
    int r = core_buf_append(out, in, len);

    if (r < 0)
        return r;
    return s->inst->once ? CORE_VERDICT_CLOSE : CORE_VERDICT_MORE;
}

static int echo_session_eof(void *sess, struct core_buf *out)
{
    (void)sess;
    (void)out;
    return CORE_VERDICT_CLOSE;
}

static void echo_session_close(void *sess, bool completed)
{
    (void)sess;
    (void)completed;
}

static int echo_datagram(void *inst, const uint8_t *in, size_t len, struct core_buf *out)
{
    struct echo_inst *e = inst;

    if (len > e->max_datagram) {
        if (e->metrics)
            core_metrics_svc_add(e->metrics, CTR_DROPPED_TOO_LONG, 1);
        return 0;
    }
    return core_buf_append(out, in, len) < 0 ? -ENOMEM : 1;
}

const struct core_service svc_echo = {
    .name = "echo",
    .help = "sends back every byte it receives (RFC 862)",
    .transports = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
    /* Every model: its instance is read-only after instance_new, its sessions share nothing. */
    .refused_models = 0,
    .counters = echo_counters,
    .counter_help = echo_counter_help,
    .counter_transports = echo_counter_transports,
    .n_counters = CTR_COUNT,
    .options = echo_options,
    .n_options = sizeof(echo_options) / sizeof(echo_options[0]),
    .instance_new = echo_instance_new,
    .instance_free = echo_instance_free,
    .session_size = sizeof(struct echo_sess),
    .session_open = echo_session_open,
    .session_feed = echo_session_feed,
    .session_eof = echo_session_eof,
    .session_close = echo_session_close,
    .datagram = echo_datagram,
};
