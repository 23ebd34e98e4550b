#ifndef FLEET_WIRE_H
#define FLEET_WIRE_H

/*
 * The fleet's messages on the broker: names, routing keys, node names, labels and selectors,
 * event envelopes and their sequences, desired-state records, replies and pongs, and the
 * decisions a node takes on a record (skip, ignore, apply). Everything here is pure: no socket,
 * no thread, no broker library call; the daemon's bus thread, the apply worker, the fleet view
 * and the `sockserv fleet` command all build and read their messages through it.
 *
 * Thread rules: every function may be called from any thread; the structures are the caller's
 * and are not shared by this module.
 *
 * Errors: bad input returns -EINVAL with err (may be NULL) naming the problem and, inside a
 * JSON document, the field at fault as a path ("target.selector", "if_match.n1"); -ENOSPC when
 * a caller's buffer is too small; -ENOMEM when memory runs out.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"

/* ---- sizes and constants ---- */

#define FLEET_NAME_MAX 64       /* node name or prefix, 63 characters + NUL */
#define FLEET_LABEL_MAX 64      /* label key or value, 63 characters + NUL */
#define FLEET_LABELS_MAX 16     /* labels per node, terms per selector */
#define FLEET_KIND_MAX 32       /* "listener.created" + NUL, two words */
#define FLEET_BOOT_LEN 17       /* 16 hex digits + NUL */
#define FLEET_UUID_LEN 37       /* 36 characters + NUL */
#define FLEET_TIME_LEN 32       /* "2026-12-06T12:00:00.123Z" + NUL, with room */
#define FLEET_ETAG_MAX 32       /* "\"17\"" + NUL, with room */
#define FLEET_RECORD_ID_MAX 128 /* a record's message_id (a UUID) + NUL */
#define FLEET_ISSUED_BY_MAX 128
#define FLEET_KEY_MAX 256 /* any routing key or queue name + NUL (AMQP short string) */
#define FLEET_MESSAGE_ID_MAX 128
#define FLEET_RECORD_NODES_MAX 1024 /* nodes named in one record's target */

#define FLEET_PREFIX_DEFAULT "sockserv"
#define FLEET_APP_ID "sockserv"
#define FLEET_CONTENT_TYPE "application/json"
#define FLEET_REPLY_TO "amq.rabbitmq.reply-to"
#define FLEET_TICK_EXPIRATION "10000" /* ms, unreliable events */
#define FLEET_RPC_EXPIRATION "30000"  /* ms, rpc requests */
#define FLEET_OUTBOX_CAPACITY 4096    /* reliable events kept until confirmed */
#define FLEET_DESIRED_PREFETCH 64

/* Stream queue arguments (constants: declaring with other values fails with 406). */
#define FLEET_STREAM_MAX_AGE "30D"
#define FLEET_STREAM_SEGMENT_BYTES 8388608LL
#define FLEET_DESIRED_MAX_BYTES 268435456LL
#define FLEET_NODES_MAX_BYTES 67108864LL
#define FLEET_VIEWER_MAX_LENGTH 10000 /* x-max-length of a viewer's queue */

/* ---- names ---- */

/* The one word of the node name syntax that is not a node name: "rpc.all" is the routing key of
 * every node's inbox. */
#define FLEET_NODE_RESERVED "all"

/* Whether s is a node name: [a-z0-9][a-z0-9_-]{0,62} except "all". NULL is not. */
bool fleet_node_name_valid(const char *s);

/* Whether s is a prefix: [a-z0-9][a-z0-9_.-]{0,62}. NULL is not. */
bool fleet_prefix_valid(const char *s);

/*
 * The default node name made of host (a host name): lower-cased, every character outside
 * [a-z0-9_-] turned into '-', leading '-' and '_' removed, cut to 63 characters (and to len - 1);
 * "node" when nothing is left; "all-node" when "all" is left (a host named "all", "ALL" or
 * "-all"; "node", cut to fit, when len < 9), so that the result is always a valid node name.
 * Returns 0, or -ENOSPC when len < 2 (buf untouched).
 */
int fleet_node_name_from_text(const char *host, char *buf, size_t len);

/* fleet_node_name_from_text() of gethostname(). Returns 0, -ENOSPC, or gethostname's -errno. */
int fleet_node_name_from_host(char *buf, size_t len);

/*
 * "PREFIX.what" for what in "events", "rpc", "desired", "nodes" (any word is accepted; these are
 * the fleet's). Returns the length, -EINVAL for an invalid prefix or an empty what, -ENOSPC.
 */
int fleet_name(char *buf, size_t len, const char *prefix, const char *what);

/* "PREFIX.node.NODE": a node's rpc inbox. Returns the length, -EINVAL, -ENOSPC. */
int fleet_node_queue(char *buf, size_t len, const char *prefix, const char *node);

/*
 * The binding keys of the PREFIX.nodes stream on PREFIX.events, i from 0: "ev.*.node.hello",
 * "ev.*.node.bye", "ev.*.config.applied", "ev.*.config.unchanged", "ev.*.config.rejected",
 * "ev.*.config.conflict", "ev.*.node.forgotten" (`sockserv fleet forget`); NULL past the last
 * one. Static strings.
 */
const char *fleet_nodes_binding(size_t i);

/* ---- event kinds and routing keys ---- */

/* A core event type exported to the broker: its kind there and whether it is reliable. */
struct fleet_kind {
    const char *core_type; /* "listener.state", "metrics", ... */
    const char *kind;      /* "listener.state", "metrics.tick", ... */
    bool reliable;         /* persistent, sequenced, confirmed */
};

/*
 * The kind of a core event type (listener.created/changed/deleted/state, config.revision,
 * backup.stored, backup.failed, backup.pruned, metrics -> metrics.tick); NULL for a type that
 * is not exported. Static data.
 */
const struct fleet_kind *fleet_kind_of_event(const char *core_type);

/* Whether kind is two words [a-z_]+ '.' [a-z_]+ that fit FLEET_KIND_MAX. */
bool fleet_kind_valid(const char *kind);

/* Whether events of kind are reliable: every kind except metrics.tick and node.status. */
bool fleet_kind_is_reliable(const char *kind);

/* "ev.NODE.KIND". Returns the length, -EINVAL (bad node or kind), -ENOSPC. */
int fleet_routing_key(char *buf, size_t len, const char *node, const char *kind);

/*
 * Splits an event routing key "ev.NODE.AREA.WHAT" into node (copied into ret_node, at least
 * FLEET_NAME_MAX bytes) and kind (copied into ret_kind, at least FLEET_KIND_MAX bytes).
 * Returns 0 or -EINVAL (outputs untouched).
 */
int fleet_routing_key_parse(const char *key, char *ret_node, char *ret_kind);

/* "rpc.NODE", or "rpc.all" when node is NULL. Returns the length, -EINVAL, -ENOSPC. */
int fleet_rpc_key(char *buf, size_t len, const char *node);

/*
 * Whether pattern is a topic binding pattern a viewer may bind to PREFIX.events: words of
 * [a-z0-9_-]+, '*' or '#', separated by single dots, at most FLEET_KEY_MAX - 1 characters
 * ("ev.#", "ev.*.listener.#", "ev.n1.config.applied").
 */
bool fleet_pattern_valid(const char *pattern);

/* ---- time, boot ids, message ids ---- */

/* Wall-clock time in ms since the epoch (CLOCK_REALTIME). */
int64_t fleet_now_ms(void);

/* RFC 3339 UTC with milliseconds, "2026-12-06T12:00:00.123Z". len >= FLEET_TIME_LEN is always
 * enough; a shorter buffer gets a truncated, NUL-terminated string. */
void fleet_time_format(char *buf, size_t len, int64_t unix_ms);

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff...]Z" or with a "+HH:MM"/"-HH:MM" offset, of an
 * instant between 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z (what fleet_time_format()
 * writes back). Returns 0 or -EINVAL (*ret_ms untouched). */
int fleet_time_parse(const char *text, int64_t *ret_ms);

/* A fresh random boot id: 16 lower-case hex digits (getrandom; never fails). */
void fleet_boot_id(char out[FLEET_BOOT_LEN]);

/* A fresh random (version 4) UUID in lower case, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx": a
 * record's message_id and correlation_id (getrandom; never fails). */
void fleet_uuid(char out[FLEET_UUID_LEN]);

/* "NODE:BOOT:SEQ", or "NODE:BOOT:tMS" when seq is 0 (an unreliable event). Returns the length
 * or -ENOSPC. */
int fleet_message_id(char *buf, size_t len, const char *node, const char *boot, uint64_t seq,
                     int64_t time_ms);

/* ---- labels and selectors ---- */

/* Labels of a node, in the order they were added. Keys are unique. Zero-initialise (or
 * fleet_labels_init) before use; no teardown. */
struct fleet_labels {
    size_t n;
    char key[FLEET_LABELS_MAX][FLEET_LABEL_MAX];
    char val[FLEET_LABELS_MAX][FLEET_LABEL_MAX];
};

void fleet_labels_init(struct fleet_labels *l);

/* Whether s is a label key or value: [A-Za-z0-9_.-]{1,63}. */
bool fleet_label_text_valid(const char *s);

/*
 * Adds "KEY=VALUE" (a --label argument). -EINVAL with a message when the text is not KEY=VALUE,
 * a part is invalid, the key is already there ("label key 'role' is given twice"), or 16 labels
 * are there already. l unchanged on failure.
 */
int fleet_labels_add(struct fleet_labels *l, const char *kv_text, struct core_err *err);

/* The value of key, or NULL. Borrowed from l. */
const char *fleet_labels_get(const struct fleet_labels *l, const char *key);

/* {"KEY":"VALUE",...}: a new reference, or NULL when out of memory. */
json_t *fleet_labels_json(const struct fleet_labels *l);

/* Reads a labels object (as fleet_labels_json() writes it). -EINVAL (not an object, a bad key
 * or value, too many) with err->field "labels" or "labels.KEY"; *ret written only on success. */
int fleet_labels_from_json(const json_t *j, struct fleet_labels *ret, struct core_err *err);

/* "KEY=VALUE,KEY=VALUE" ("" without labels): returns the length or -ENOSPC. */
int fleet_labels_format(const struct fleet_labels *l, char *buf, size_t len);

/* A selector: an AND of KEY=VALUE equalities (1 to 16 terms, keys unique). */
struct fleet_selector {
    struct fleet_labels terms;
};

/*
 * Parses "KEY=VALUE[,KEY=VALUE]...". -EINVAL with a message: "selector is empty", "selector
 * term 'x' is not KEY=VALUE" (also for "a=", "=b" and an empty term as in "a=b,,c=d"),
 * "selector key 'a' is given twice", "selector has more than 16 terms", "selector term 'k!=v' has
 * an invalid key (want [A-Za-z0-9_.-]{1,63})" (same for values). err->field is left empty (the
 * caller knows where the text came from). *ret written only on success.
 */
int fleet_selector_parse(const char *text, struct fleet_selector *ret, struct core_err *err);

/* Whether every term of sel has the same value in labels. */
bool fleet_selector_match(const struct fleet_selector *sel, const struct fleet_labels *labels);

/* The canonical text "KEY=VALUE,..." of sel: returns the length or -ENOSPC. */
int fleet_selector_format(const struct fleet_selector *sel, char *buf, size_t len);

/* ---- event envelopes and their sequence ---- */

/*
 * The body of an event: {"node","boot","seq","time","kind","data"} with seq null when 0 (an
 * unreliable kind). Takes ownership of data (also on failure; NULL means {}). Returns a new
 * reference, or NULL when out of memory. Serialise with json_dumps(j, JSON_COMPACT).
 */
json_t *fleet_envelope(const char *node, const char *boot, uint64_t seq, int64_t time_ms,
                       const char *kind, json_t *data);

/* A parsed envelope. Tear down with fleet_envelope_fini(). */
struct fleet_envelope {
    char node[FLEET_NAME_MAX];
    char boot[FLEET_BOOT_LEN];
    uint64_t seq; /* 0: null (unreliable) */
    char time[FLEET_TIME_LEN];
    int64_t time_ms;
    char kind[FLEET_KIND_MAX];
    json_t *data; /* a new reference: any JSON value */
};

/*
 * Parses an event body. -EINVAL (not JSON, not an object, a member missing or of the wrong
 * type, bad node/boot/kind/time, seq not >= 1 nor null) with err->field naming it. *ret written
 * only on success; the caller then owns ret->data (fleet_envelope_fini()). Unknown members are
 * ignored.
 */
int fleet_envelope_parse(const char *body, size_t len, struct fleet_envelope *ret,
                         struct core_err *err);

/* Releases data. Accepts NULL and a zeroed envelope. */
void fleet_envelope_fini(struct fleet_envelope *e);

/* What a viewer knows of one node's sequence. Zero-initialise. */
struct fleet_seq_track {
    bool has_boot;
    char boot[FLEET_BOOT_LEN];
    uint64_t last; /* last reliable seq seen of boot; 0: none yet */
};

enum fleet_seq_verdict {
    FLEET_SEQ_NEXT,      /* the next one: use it */
    FLEET_SEQ_DUPLICATE, /* seen already (seq <= last): drop it */
    FLEET_SEQ_GAP,       /* one or more missing: use it, and re-snapshot the node */
    FLEET_SEQ_NEW_BOOT,  /* first event of a boot (or the first seen): use it, re-snapshot */
    FLEET_SEQ_UNTRACKED, /* seq 0 (unreliable) of the known boot: use it */
    FLEET_SEQ_COUNT,
};

/*
 * Classifies event (boot, seq) of a node and advances t: a new boot resets t to (boot, seq);
 * NEXT and GAP set last = seq; DUPLICATE and UNTRACKED leave t alone. seq 0 of a new boot is
 * NEW_BOOT with last 0.
 */
enum fleet_seq_verdict fleet_seq_check(struct fleet_seq_track *t, const char *boot, uint64_t seq);

/* "next", "duplicate", "gap", "new_boot", "untracked". */
const char *fleet_seq_verdict_name(enum fleet_seq_verdict v);

/* ---- desired-state records ---- */

/* A desired-state record of the PREFIX.desired stream. Tear down with fleet_record_fini(). */
struct fleet_record {
    bool target_valid; /* the target could be read (see fleet_record_parse()) */
    char **nodes;      /* target.nodes, valid node names (may repeat) */
    size_t n_nodes;
    bool has_selector; /* target.selector */
    struct fleet_selector selector;
    bool all;         /* target.all */
    json_t *config;   /* the "config" object: new reference; NULL unless the record is valid */
    json_t *if_match; /* {"NODE":"ETAG"}: new reference, or NULL when absent */
    char issued_by[FLEET_ISSUED_BY_MAX]; /* "" when absent */
    char issued_at[FLEET_TIME_LEN];      /* "" when absent */
};

/*
 * Parses a record strictly. *ret is always set (zeroed first), so fleet_record_fini() must be
 * called whatever the result. Returns 0 (valid), or -EINVAL with err->field at fault:
 *  - "" : the body is not a JSON object; ret->target_valid is false (every node must reject).
 *  - "target", "target.nodes", "target.nodes[2]", "target.selector", "target.all": the target
 *    is bad; ret->target_valid is false (every node must reject).
 *  - anything else ("config", "config.listeners", "if_match", "if_match.n1", "issued_by",
 *    "issued_at", or an unknown top-level member by its name, quoted when empty: "\"\""):
 *    ret->target_valid is true and the target fields are set (only the targeted nodes reject);
 *    ret->config is NULL.
 * -ENOMEM: out of memory (ret->target_valid false).
 * A target is an object with at least one of "nodes" (non-empty array of node names), "selector"
 * (selector text) and "all" (true, alone); config an object with a "listeners" array (its
 * content is the transaction's to judge); if_match an object of node name -> string.
 */
int fleet_record_parse(const char *body, size_t len, struct fleet_record *ret,
                       struct core_err *err);

/* Releases what the record holds and zeroes it. Accepts NULL and a zeroed record. */
void fleet_record_fini(struct fleet_record *r);

/* Whether the record's target names node, or its selector matches labels, or is all. False
 * when !r->target_valid. */
bool fleet_record_targets(const struct fleet_record *r, const char *node,
                          const struct fleet_labels *labels);

/* The ETag if_match gives for node, or NULL. Borrowed from r. */
const char *fleet_record_if_match(const struct fleet_record *r, const char *node);

/*
 * Builds a record body (for the CLI): nodes (n_nodes, may be 0), selector text (NULL: none),
 * all; config (borrowed; must be an object with a "listeners" array), if_match (borrowed; NULL
 * or an object node -> ETag string), issued_by, issued_at_ms. Validates as fleet_record_parse()
 * does (same messages and fields; at least one target); -ENOMEM. *ret (a new reference, config
 * and if_match deep-copied) written only on success. Give it a message_id with fleet_uuid().
 */
int fleet_record_build(const char *const *nodes, size_t n_nodes, const char *selector, bool all,
                       const json_t *config, const json_t *if_match, const char *issued_by,
                       int64_t issued_at_ms, json_t **ret, struct core_err *err);

/* What a node does with one record of the desired stream. */
enum fleet_verdict {
    FLEET_VERDICT_SKIP_OLD,     /* offset <= stored: seen already; ack, no reply */
    FLEET_VERDICT_NOT_TARGETED, /* not for this node: ack, no reply */
    FLEET_VERDICT_APPLY,        /* valid and targets this node */
    FLEET_VERDICT_REJECT,       /* invalid and concerns this node: reply rejected, change nothing */
    FLEET_VERDICT_COUNT,
};

/*
 * The decision on the record at offset, given the node's stored offset (has_stored false: none
 * yet), the result of fleet_record_parse() (parse_result) and the record it filled, the node's
 * name and labels. An invalid record concerns every node when its target could not be read,
 * the targeted ones otherwise.
 */
enum fleet_verdict fleet_record_decide(uint64_t offset, bool has_stored, uint64_t stored,
                                       int parse_result, const struct fleet_record *rec,
                                       const char *node, const struct fleet_labels *labels);

/* "skip_old", "not_targeted", "apply", "reject". */
const char *fleet_verdict_name(enum fleet_verdict v);

/*
 * Of a burst of records available at once (verdicts in offset order), the index of the one to
 * act on: the newest whose verdict is APPLY or REJECT (the newest record for this node
 * supersedes the older ones, which are acked without a reply). n when there is none.
 */
size_t fleet_burst_pick(const enum fleet_verdict *verdicts, size_t n);

/* ---- results and replies ---- */

enum fleet_result {
    FLEET_RESULT_APPLIED,
    FLEET_RESULT_UNCHANGED,
    FLEET_RESULT_REJECTED,
    FLEET_RESULT_CONFLICT,
    FLEET_RESULT_COUNT,
};

/* "applied", "unchanged", "rejected", "conflict". */
const char *fleet_result_name(enum fleet_result r);

/* The result named name. Returns 0 or -EINVAL. */
int fleet_result_from_name(const char *name, enum fleet_result *ret);

/* A node's answer to a record (reply body, and data of ev.NODE.config.RESULT). */
struct fleet_reply {
    char node[FLEET_NAME_MAX];
    char boot[FLEET_BOOT_LEN];
    enum fleet_result result;
    uint64_t offset;                  /* the record's */
    char record[FLEET_RECORD_ID_MAX]; /* the record's message_id ("" when it had none) */
    uint64_t revision;                /* the node's configuration revision after the answer */
    char etag[FLEET_ETAG_MAX];        /* its ETag, "\"7\"" */
    bool has_applied_offset;
    uint64_t applied_offset; /* offset of the record whose configuration runs now */
    json_t *problem;         /* problem+json object (rejected, conflict) or NULL: new ref */
};

/* The reply object (member order as in the contract; "record" null when r->record is empty,
 * "applied_offset" null without has_applied_offset, "problem" null without one); a new
 * reference to problem is taken. Returns a new reference, or NULL when out of memory. */
json_t *fleet_reply_json(const struct fleet_reply *r);

/* Reads a reply object. -EINVAL with err->field; *ret written only on success (then the caller
 * owns ret->problem: fleet_reply_fini()). */
int fleet_reply_from_json(const json_t *j, struct fleet_reply *ret, struct core_err *err);

/* fleet_reply_from_json() of a body; -EINVAL also when it is not JSON. */
int fleet_reply_parse(const char *body, size_t len, struct fleet_reply *ret, struct core_err *err);

/* Releases problem. Accepts NULL and a zeroed reply. */
void fleet_reply_fini(struct fleet_reply *r);

/*
 * The exit code of `fleet apply` from the results of the nodes that answered and the number
 * that did not: 1 when any rejected; else 3 when any conflict; else 5 when any pending; else 0.
 */
int fleet_exit_code(const enum fleet_result *results, size_t n, size_t n_pending);

/* ---- rpc and pongs ---- */

/* The ping request body {"op":"ping"}: a new reference or NULL (out of memory). */
json_t *fleet_ping_request(void);

/* The op of an rpc request body, copied into ret_op (len bytes). -EINVAL with a message when the
 * body is not an object with a string "op"; -ENOSPC when the op does not fit. An unknown op is
 * the caller's to answer ({"node":..,"error":"unknown op X"}). */
int fleet_rpc_op(const char *body, size_t len, char *ret_op, size_t op_len, struct core_err *err);

/* {"node":NODE,"error":"unknown op OP"}: a new reference or NULL. */
json_t *fleet_rpc_error(const char *node, const char *op);

/* A node's pong (rpc reply to ping; also data of node.hello and node.status). Tear down with
 * fleet_pong_fini(). */
struct fleet_pong {
    char node[FLEET_NAME_MAX];
    char boot[FLEET_BOOT_LEN];
    char version[32];
    struct fleet_labels labels;
    char started[FLEET_TIME_LEN];
    char time[FLEET_TIME_LEN];
    int64_t time_ms;
    uint64_t revision;
    char etag[FLEET_ETAG_MAX];
    bool has_applied_offset;
    uint64_t applied_offset;
    bool has_desired_offset;
    uint64_t desired_offset;
    bool has_last_result;
    struct fleet_reply last_result; /* when has_last_result; owns its problem */
    size_t n_listeners;
    json_t *listeners; /* the "listeners" array: new reference */
    json_t *bridge;    /* the "bridge" object, or NULL when absent: new reference */
};

/*
 * Parses a pong body. -EINVAL with err->field ("node", "labels.x", "last_result.offset", ...);
 * an rpc error reply {"node","error"} gives -EINVAL with its message ("node n1: unknown op x")
 * and field "error". *ret written only on success.
 */
int fleet_pong_parse(const char *body, size_t len, struct fleet_pong *ret, struct core_err *err);

/* fleet_pong_parse() of a parsed object (e.g. an envelope's data). */
int fleet_pong_from_json(const json_t *j, struct fleet_pong *ret, struct core_err *err);

/* Releases what the pong holds. Accepts NULL and a zeroed pong. */
void fleet_pong_fini(struct fleet_pong *p);

#endif
