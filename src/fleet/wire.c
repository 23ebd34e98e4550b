#include "fleet/wire.h"

#include <errno.h>
#include <string.h>

/* Placeholder bodies: the module's contract is in the header. */

bool fleet_node_name_valid(const char *s)
{
    (void)s;
    return false;
}

bool fleet_prefix_valid(const char *s)
{
    (void)s;
    return false;
}

int fleet_node_name_from_text(const char *host, char *buf, size_t len)
{
    (void)host, (void)buf, (void)len;
    return -ENOSYS;
}

int fleet_node_name_from_host(char *buf, size_t len)
{
    (void)buf, (void)len;
    return -ENOSYS;
}

int fleet_name(char *buf, size_t len, const char *prefix, const char *what)
{
    (void)buf, (void)len, (void)prefix, (void)what;
    return -ENOSYS;
}

int fleet_node_queue(char *buf, size_t len, const char *prefix, const char *node)
{
    (void)buf, (void)len, (void)prefix, (void)node;
    return -ENOSYS;
}

const char *fleet_nodes_binding(size_t i)
{
    (void)i;
    return NULL;
}

const struct fleet_kind *fleet_kind_of_event(const char *core_type)
{
    (void)core_type;
    return NULL;
}

bool fleet_kind_valid(const char *kind)
{
    (void)kind;
    return false;
}

bool fleet_kind_is_reliable(const char *kind)
{
    (void)kind;
    return false;
}

int fleet_routing_key(char *buf, size_t len, const char *node, const char *kind)
{
    (void)buf, (void)len, (void)node, (void)kind;
    return -ENOSYS;
}

int fleet_routing_key_parse(const char *key, char *ret_node, char *ret_kind)
{
    (void)key, (void)ret_node, (void)ret_kind;
    return -ENOSYS;
}

int fleet_rpc_key(char *buf, size_t len, const char *node)
{
    (void)buf, (void)len, (void)node;
    return -ENOSYS;
}

int64_t fleet_now_ms(void)
{
    return 0;
}

void fleet_time_format(char *buf, size_t len, int64_t unix_ms)
{
    (void)unix_ms;
    if (len > 0)
        buf[0] = '\0';
}

int fleet_time_parse(const char *text, int64_t *ret_ms)
{
    (void)text, (void)ret_ms;
    return -ENOSYS;
}

void fleet_boot_id(char out[FLEET_BOOT_LEN])
{
    memset(out, '0', FLEET_BOOT_LEN - 1);
    out[FLEET_BOOT_LEN - 1] = '\0';
}

int fleet_message_id(char *buf, size_t len, const char *node, const char *boot, uint64_t seq,
                     int64_t time_ms)
{
    (void)buf, (void)len, (void)node, (void)boot, (void)seq, (void)time_ms;
    return -ENOSYS;
}

void fleet_labels_init(struct fleet_labels *l)
{
    memset(l, 0, sizeof(*l));
}

bool fleet_label_text_valid(const char *s)
{
    (void)s;
    return false;
}

int fleet_labels_add(struct fleet_labels *l, const char *kv_text, struct core_err *err)
{
    (void)l, (void)kv_text, (void)err;
    return -ENOSYS;
}

const char *fleet_labels_get(const struct fleet_labels *l, const char *key)
{
    (void)l, (void)key;
    return NULL;
}

json_t *fleet_labels_json(const struct fleet_labels *l)
{
    (void)l;
    return NULL;
}

int fleet_labels_from_json(const json_t *j, struct fleet_labels *ret, struct core_err *err)
{
    (void)j, (void)ret, (void)err;
    return -ENOSYS;
}

int fleet_labels_format(const struct fleet_labels *l, char *buf, size_t len)
{
    (void)l, (void)buf, (void)len;
    return -ENOSYS;
}

int fleet_selector_parse(const char *text, struct fleet_selector *ret, struct core_err *err)
{
    (void)text, (void)ret, (void)err;
    return -ENOSYS;
}

bool fleet_selector_match(const struct fleet_selector *sel, const struct fleet_labels *labels)
{
    (void)sel, (void)labels;
    return false;
}

int fleet_selector_format(const struct fleet_selector *sel, char *buf, size_t len)
{
    (void)sel, (void)buf, (void)len;
    return -ENOSYS;
}

json_t *fleet_envelope(const char *node, const char *boot, uint64_t seq, int64_t time_ms,
                       const char *kind, json_t *data)
{
    (void)node, (void)boot, (void)seq, (void)time_ms, (void)kind;
    json_decref(data);
    return NULL;
}

int fleet_envelope_parse(const char *body, size_t len, struct fleet_envelope *ret,
                         struct core_err *err)
{
    (void)body, (void)len, (void)ret, (void)err;
    return -ENOSYS;
}

void fleet_envelope_fini(struct fleet_envelope *e)
{
    (void)e;
}

enum fleet_seq_verdict fleet_seq_check(struct fleet_seq_track *t, const char *boot, uint64_t seq)
{
    (void)t, (void)boot, (void)seq;
    return FLEET_SEQ_NEW_BOOT;
}

const char *fleet_seq_verdict_name(enum fleet_seq_verdict v)
{
    (void)v;
    return "?";
}

int fleet_record_parse(const char *body, size_t len, struct fleet_record *ret, struct core_err *err)
{
    (void)body, (void)len, (void)err;
    memset(ret, 0, sizeof(*ret));
    return -ENOSYS;
}

void fleet_record_fini(struct fleet_record *r)
{
    (void)r;
}

bool fleet_record_targets(const struct fleet_record *r, const char *node,
                          const struct fleet_labels *labels)
{
    (void)r, (void)node, (void)labels;
    return false;
}

const char *fleet_record_if_match(const struct fleet_record *r, const char *node)
{
    (void)r, (void)node;
    return NULL;
}

int fleet_record_build(const char *const *nodes, size_t n_nodes, const char *selector, bool all,
                       const json_t *config, const json_t *if_match, const char *issued_by,
                       int64_t issued_at_ms, json_t **ret, struct core_err *err)
{
    (void)nodes, (void)n_nodes, (void)selector, (void)all, (void)config, (void)if_match;
    (void)issued_by, (void)issued_at_ms, (void)ret, (void)err;
    return -ENOSYS;
}

enum fleet_verdict fleet_record_decide(uint64_t offset, bool has_stored, uint64_t stored,
                                       int parse_result, const struct fleet_record *rec,
                                       const char *node, const struct fleet_labels *labels)
{
    (void)offset, (void)has_stored, (void)stored, (void)parse_result, (void)rec, (void)node;
    (void)labels;
    return FLEET_VERDICT_NOT_TARGETED;
}

const char *fleet_verdict_name(enum fleet_verdict v)
{
    (void)v;
    return "?";
}

size_t fleet_burst_pick(const enum fleet_verdict *verdicts, size_t n)
{
    (void)verdicts;
    return n;
}

const char *fleet_result_name(enum fleet_result r)
{
    (void)r;
    return "?";
}

int fleet_result_from_name(const char *name, enum fleet_result *ret)
{
    (void)name, (void)ret;
    return -ENOSYS;
}

json_t *fleet_reply_json(const struct fleet_reply *r)
{
    (void)r;
    return NULL;
}

int fleet_reply_from_json(const json_t *j, struct fleet_reply *ret, struct core_err *err)
{
    (void)j, (void)ret, (void)err;
    return -ENOSYS;
}

int fleet_reply_parse(const char *body, size_t len, struct fleet_reply *ret, struct core_err *err)
{
    (void)body, (void)len, (void)ret, (void)err;
    return -ENOSYS;
}

void fleet_reply_fini(struct fleet_reply *r)
{
    (void)r;
}

int fleet_exit_code(const enum fleet_result *results, size_t n, size_t n_pending)
{
    (void)results, (void)n, (void)n_pending;
    return -ENOSYS;
}

json_t *fleet_ping_request(void)
{
    return NULL;
}

int fleet_rpc_op(const char *body, size_t len, char *ret_op, size_t op_len, struct core_err *err)
{
    (void)body, (void)len, (void)ret_op, (void)op_len, (void)err;
    return -ENOSYS;
}

json_t *fleet_rpc_error(const char *node, const char *op)
{
    (void)node, (void)op;
    return NULL;
}

int fleet_pong_parse(const char *body, size_t len, struct fleet_pong *ret, struct core_err *err)
{
    (void)body, (void)len, (void)ret, (void)err;
    return -ENOSYS;
}

int fleet_pong_from_json(const json_t *j, struct fleet_pong *ret, struct core_err *err)
{
    (void)j, (void)ret, (void)err;
    return -ENOSYS;
}

void fleet_pong_fini(struct fleet_pong *p)
{
    (void)p;
}
