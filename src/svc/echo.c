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

static int echo_options_check(const json_t *opts, enum core_transport t, json_t **ret_opts,
                              struct core_err *err)
{
    const char *key, *mode = "stream";
    json_int_t max_datagram = UDP_PAYLOAD_MAX;
    json_t *v;

    json_object_foreach((json_t *)opts, key, v)
    {
        if (t == CORE_TCP && strcmp(key, "mode") == 0) {
            if (!json_is_string(v) || (strcmp(json_string_value(v), "stream") != 0 &&
                                       strcmp(json_string_value(v), "once") != 0))
                return core_err_set(err, -EINVAL, "options.mode",
                                    "options.mode: must be \"stream\" or \"once\"");
            mode = json_string_value(v);
        } else if (t == CORE_UDP && strcmp(key, "max_datagram") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > UDP_PAYLOAD_MAX)
                return core_err_set(err, -EINVAL, "options.max_datagram",
                                    "options.max_datagram: must be an integer from 1 to %d",
                                    UDP_PAYLOAD_MAX);
            max_datagram = json_integer_value(v);
        } else {
            char field[64];

            snprintf(field, sizeof(field), "options.%.48s", key);
            return core_err_set(err, -EINVAL, field, "%s: unknown option for echo over %s (%s)",
                                field, core_transport_name(t),
                                t == CORE_TCP ? "mode" : "max_datagram");
        }
    }
    *ret_opts = t == CORE_TCP ? json_pack("{s:s}", "mode", mode)
                              : json_pack("{s:I}", "max_datagram", max_datagram);
    return *ret_opts ? 0 : -ENOMEM;
}

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
    .transports = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
    .counters = echo_counters,
    .n_counters = CTR_COUNT,
    .options_check = echo_options_check,
    .instance_new = echo_instance_new,
    .instance_free = echo_instance_free,
    .session_size = sizeof(struct echo_sess),
    .session_open = echo_session_open,
    .session_feed = echo_session_feed,
    .session_eof = echo_session_eof,
    .session_close = echo_session_close,
    .datagram = echo_datagram,
};
