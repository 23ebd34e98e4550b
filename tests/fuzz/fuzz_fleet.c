/*
 * What a daemon or the fleet command reads from the broker (fleet/wire.h): desired-state
 * records and the decision a node takes on them, event envelopes, replies, pongs, selectors,
 * binding patterns, routing keys and node names.
 *
 * Input: a first byte that picks the reader, then the bytes it reads: 'r' a record, 'e' an
 * envelope, 'a' a reply, 'p' a pong, 's' a selector, 'k' a binding pattern (also read as an
 * event routing key and a host name); any other byte picks one by its value modulo 6.
 *
 * Properties: a reader answers 0 or -EINVAL with a message, and leaves its output alone on
 * failure (a record is left empty, or with its target alone when only the target could be
 * read); what it accepts is within every documented rule (node names, boot ids, kinds, labels,
 * terms); a record rebuilt with fleet_record_build() parses back equal, and every node it names
 * or its selector matches is targeted, and the decision follows the parse; an envelope, a reply
 * and a pong written back parse back equal; a selector formats back to its own text; a pattern
 * is valid exactly when a plain reading of the rules says so; a routing key that splits joins
 * back to itself; a host name always gives a valid node name.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fleet/wire.h"

#include "fuzz.h"

#define SELECTOR_TEXT_MAX (FLEET_LABELS_MAX * (2 * FLEET_LABEL_MAX + 1) + 1)

enum reader { READ_RECORD, READ_ENVELOPE, READ_REPLY, READ_PONG, READ_SELECTOR, READ_KEY };

static enum reader pick(uint8_t b)
{
    switch (b) {
    case 'r':
        return READ_RECORD;
    case 'e':
        return READ_ENVELOPE;
    case 'a':
        return READ_REPLY;
    case 'p':
        return READ_PONG;
    case 's':
        return READ_SELECTOR;
    case 'k':
        return READ_KEY;
    default:
        return (enum reader)(b % 6);
    }
}

/* A failed read: -EINVAL with a message (the only other answer a reader has is -ENOMEM). */
static void check_refusal(int r, const struct core_err *err)
{
    FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
    if (r == -EINVAL)
        FUZZ_CHECK(err->msg[0] != '\0');
}

static bool boot_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    return i == FLEET_BOOT_LEN - 1;
}

static bool terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static void check_labels(const struct fleet_labels *l)
{
    FUZZ_CHECK(l->n <= FLEET_LABELS_MAX);
    for (size_t i = 0; i < l->n; i++) {
        FUZZ_CHECK(fleet_label_text_valid(l->key[i]));
        FUZZ_CHECK(fleet_label_text_valid(l->val[i]));
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(l->key[i], l->key[j]) != 0);
    }
}

static bool labels_equal(const struct fleet_labels *a, const struct fleet_labels *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->key[i], b->key[i]) != 0 || strcmp(a->val[i], b->val[i]) != 0)
            return false;
    return true;
}

/* json_dumps() of j (compact), released by the caller. */
static char *dump(const json_t *j)
{
    char *text;

    FUZZ_CHECK(j);
    text = json_dumps(j, JSON_COMPACT);
    FUZZ_CHECK(text);
    return text;
}

/* ---- records ---- */

static bool record_empty(const struct fleet_record *r)
{
    return !r->target_valid && !r->nodes && r->n_nodes == 0 && !r->has_selector && !r->all &&
           !r->config && !r->if_match && !r->issued_by[0] && !r->issued_at[0];
}

static bool field_is_target(const char *field)
{
    return strcmp(field, "target") == 0 || strncmp(field, "target.", 7) == 0;
}

/* What any parsed target is. */
static void check_target(const struct fleet_record *r)
{
    FUZZ_CHECK(r->target_valid);
    FUZZ_CHECK(r->n_nodes > 0 || r->has_selector || r->all);
    FUZZ_CHECK(!r->all || (r->n_nodes == 0 && !r->has_selector));
    FUZZ_CHECK(r->n_nodes <= FLEET_RECORD_NODES_MAX);
    for (size_t i = 0; i < r->n_nodes; i++)
        FUZZ_CHECK(fleet_node_name_valid(r->nodes[i]));
    if (r->has_selector) {
        FUZZ_CHECK(r->selector.terms.n >= 1);
        check_labels(&r->selector.terms);
    }
}

static bool names(const struct fleet_record *r, const char *node)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (strcmp(r->nodes[i], node) == 0)
            return true;
    return false;
}

/* Who the record targets, and what a node decides on it. */
static void check_decisions(const struct fleet_record *r, int parse_result)
{
    static const char *const others[] = {"n1", "node", "zz-not-named-0"};
    struct fleet_labels none = {0};
    struct fleet_labels matching = {0};
    struct fleet_labels off_by_one = {0};

    if (r->has_selector) {
        matching = r->selector.terms;
        off_by_one = matching;
        /* one value changed: the AND no longer holds */
        off_by_one.val[0][0] = off_by_one.val[0][0] == 'x' ? 'y' : 'x';
    }
    for (size_t i = 0; i < r->n_nodes; i++)
        FUZZ_CHECK(fleet_record_targets(r, r->nodes[i], &none));
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        const char *node = others[i];
        bool named = names(r, node);
        bool targeted = fleet_record_targets(r, node, &none);
        enum fleet_verdict v = fleet_record_decide(5, true, 4, parse_result, r, node, &none);

        FUZZ_CHECK(targeted == (r->target_valid && (r->all || named)));
        if (r->has_selector) {
            FUZZ_CHECK(fleet_record_targets(r, node, &matching));
            FUZZ_CHECK(fleet_record_targets(r, node, &off_by_one) == (r->all || named));
        }
        FUZZ_CHECK(fleet_record_decide(5, true, 5, parse_result, r, node, &none) ==
                   FLEET_VERDICT_SKIP_OLD);
        FUZZ_CHECK(fleet_record_decide(5, true, 9, parse_result, r, node, &none) ==
                   FLEET_VERDICT_SKIP_OLD);
        FUZZ_CHECK(fleet_record_decide(5, false, 9, parse_result, r, node, &none) == v);
        if (parse_result == 0)
            FUZZ_CHECK(v == (targeted ? FLEET_VERDICT_APPLY : FLEET_VERDICT_NOT_TARGETED));
        else if (!r->target_valid)
            FUZZ_CHECK(v == FLEET_VERDICT_REJECT);
        else
            FUZZ_CHECK(v == (targeted ? FLEET_VERDICT_REJECT : FLEET_VERDICT_NOT_TARGETED));
    }
}

/* Builds r again with fleet_record_build() and parses that back. */
static void check_record_rebuilds(const struct fleet_record *r)
{
    char sel_text[SELECTOR_TEXT_MAX];
    struct fleet_record again;
    struct core_err err = {0};
    int64_t at_ms = 0;
    json_t *built = NULL;
    char *text;
    int rc;

    if (r->has_selector)
        FUZZ_CHECK(fleet_selector_format(&r->selector, sel_text, sizeof(sel_text)) >= 0);
    if (r->issued_at[0])
        FUZZ_CHECK(fleet_time_parse(r->issued_at, &at_ms) == 0);
    rc = fleet_record_build((const char *const *)r->nodes, r->n_nodes,
                            r->has_selector ? sel_text : NULL, r->all, r->config, r->if_match,
                            r->issued_by, at_ms, &built, &err);
    if (rc != 0)
        fprintf(stderr, "record not rebuilt: %s (%s)\n", err.msg, err.field);
    FUZZ_CHECK(rc == 0);
    text = dump(built);
    rc = fleet_record_parse(text, strlen(text), &again, &err);
    if (rc != 0)
        fprintf(stderr, "rebuilt record refused: %s (%s)\n", err.msg, err.field);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(again.n_nodes == r->n_nodes);
    for (size_t i = 0; i < r->n_nodes; i++)
        FUZZ_CHECK(strcmp(again.nodes[i], r->nodes[i]) == 0);
    FUZZ_CHECK(again.has_selector == r->has_selector);
    FUZZ_CHECK(labels_equal(&again.selector.terms, &r->selector.terms));
    FUZZ_CHECK(again.all == r->all);
    FUZZ_CHECK(json_equal(again.config, r->config));
    FUZZ_CHECK(r->if_match ? json_equal(again.if_match, r->if_match) : again.if_match == NULL);
    FUZZ_CHECK(strcmp(again.issued_by, r->issued_by) == 0);
    if (r->issued_at[0]) {
        int64_t again_ms = 0;

        FUZZ_CHECK(fleet_time_parse(again.issued_at, &again_ms) == 0);
        FUZZ_CHECK(again_ms == at_ms);
    }
    fleet_record_fini(&again);
    free(text);
    json_decref(built);
}

static void read_record(const char *body, size_t len)
{
    struct fleet_record rec;
    struct core_err err = {0};
    int r = fleet_record_parse(body, len, &rec, &err);

    if (r == 0) {
        check_target(&rec);
        FUZZ_CHECK(json_is_object(rec.config));
        FUZZ_CHECK(json_is_array(json_object_get(rec.config, "listeners")));
        FUZZ_CHECK(!rec.if_match || json_is_object(rec.if_match));
        if (rec.if_match) {
            const char *node;
            json_t *v;

            json_object_foreach(rec.if_match, node, v)
            {
                FUZZ_CHECK(fleet_node_name_valid(node));
                FUZZ_CHECK(fleet_record_if_match(&rec, node) == json_string_value(v));
            }
        }
        FUZZ_CHECK(terminated(rec.issued_by, sizeof(rec.issued_by)));
        FUZZ_CHECK(terminated(rec.issued_at, sizeof(rec.issued_at)));
        check_record_rebuilds(&rec);
    } else {
        check_refusal(r, &err);
        FUZZ_CHECK(!rec.config && !rec.if_match && !rec.issued_by[0] && !rec.issued_at[0]);
        if (!rec.target_valid) {
            FUZZ_CHECK(record_empty(&rec));
            if (r == -EINVAL)
                FUZZ_CHECK(err.field[0] == '\0' || field_is_target(err.field));
        } else {
            FUZZ_CHECK(r == -EINVAL && err.field[0] != '\0');
            check_target(&rec);
        }
    }
    check_decisions(&rec, r);
    fleet_record_fini(&rec);
    FUZZ_CHECK(record_empty(&rec));
}

/* ---- replies ---- */

static bool replies_equal(const struct fleet_reply *a, const struct fleet_reply *b)
{
    return strcmp(a->node, b->node) == 0 && strcmp(a->boot, b->boot) == 0 &&
           a->result == b->result && a->offset == b->offset && strcmp(a->record, b->record) == 0 &&
           a->revision == b->revision && strcmp(a->etag, b->etag) == 0 &&
           a->has_applied_offset == b->has_applied_offset &&
           a->applied_offset == b->applied_offset &&
           (a->problem ? json_equal(a->problem, b->problem) : b->problem == NULL);
}

static void check_reply(const struct fleet_reply *rep)
{
    FUZZ_CHECK(fleet_node_name_valid(rep->node));
    FUZZ_CHECK(boot_ok(rep->boot));
    FUZZ_CHECK((unsigned)rep->result < FLEET_RESULT_COUNT);
    FUZZ_CHECK(rep->offset <= INT64_MAX && rep->revision <= INT64_MAX);
    FUZZ_CHECK(rep->has_applied_offset || rep->applied_offset == 0);
    FUZZ_CHECK(!rep->problem || json_is_object(rep->problem));
    FUZZ_CHECK(terminated(rep->record, sizeof(rep->record)));
    FUZZ_CHECK(terminated(rep->etag, sizeof(rep->etag)));
}

/* Writes rep with fleet_reply_json() and reads it back, as a body and as an object. */
static void check_reply_round_trip(const struct fleet_reply *rep)
{
    struct fleet_reply again = {0};
    struct core_err err = {0};
    json_t *j = fleet_reply_json(rep);
    char *text = dump(j);
    int r = fleet_reply_parse(text, strlen(text), &again, &err);

    if (r != 0)
        fprintf(stderr, "reply written back refused: %s (%s)\n", err.msg, err.field);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(replies_equal(rep, &again));
    fleet_reply_fini(&again);
    FUZZ_CHECK(fleet_reply_from_json(j, &again, &err) == 0);
    FUZZ_CHECK(replies_equal(rep, &again));
    fleet_reply_fini(&again);
    free(text);
    json_decref(j);
}

static void read_reply(const char *body, size_t len)
{
    struct fleet_reply rep, before;
    struct core_err err = {0};
    int r;

    memset(&rep, 0xa5, sizeof(rep));
    before = rep;
    r = fleet_reply_parse(body, len, &rep, &err);
    if (r != 0) {
        check_refusal(r, &err);
        FUZZ_CHECK(memcmp(&rep, &before, sizeof(rep)) == 0);
        return;
    }
    check_reply(&rep);
    check_reply_round_trip(&rep);
    fleet_reply_fini(&rep);
    FUZZ_CHECK(rep.problem == NULL);
}

/* ---- envelopes ---- */

static void read_pong_object(const json_t *j);

static void read_envelope(const char *body, size_t len)
{
    struct fleet_envelope e, before, again = {0};
    struct core_err err = {0};
    json_t *j;
    char *text;
    int64_t ms = 0;
    int r;

    memset(&e, 0xa5, sizeof(e));
    before = e;
    r = fleet_envelope_parse(body, len, &e, &err);
    if (r != 0) {
        check_refusal(r, &err);
        FUZZ_CHECK(memcmp(&e, &before, sizeof(e)) == 0);
        return;
    }
    FUZZ_CHECK(fleet_node_name_valid(e.node));
    FUZZ_CHECK(boot_ok(e.boot));
    FUZZ_CHECK(e.seq <= INT64_MAX);
    FUZZ_CHECK(fleet_kind_valid(e.kind));
    FUZZ_CHECK(fleet_time_parse(e.time, &ms) == 0 && ms == e.time_ms);
    FUZZ_CHECK(e.data);

    /* written back as the daemon writes it: the same event */
    j = fleet_envelope(e.node, e.boot, e.seq, e.time_ms, e.kind, json_incref(e.data));
    text = dump(j);
    r = fleet_envelope_parse(text, strlen(text), &again, &err);
    if (r != 0)
        fprintf(stderr, "envelope written back refused: %s (%s)\n", err.msg, err.field);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(strcmp(again.node, e.node) == 0 && strcmp(again.boot, e.boot) == 0);
    FUZZ_CHECK(again.seq == e.seq && again.time_ms == e.time_ms);
    FUZZ_CHECK(strcmp(again.kind, e.kind) == 0);
    FUZZ_CHECK(json_equal(again.data, e.data));
    fleet_envelope_fini(&again);
    free(text);
    json_decref(j);

    /* a viewer reads the data of some kinds further */
    if (strcmp(e.kind, "node.hello") == 0 || strcmp(e.kind, "node.status") == 0) {
        read_pong_object(e.data);
    } else if (strncmp(e.kind, "config.", 7) == 0) {
        struct fleet_reply rep = {0};

        if (fleet_reply_from_json(e.data, &rep, &err) == 0) {
            check_reply(&rep);
            check_reply_round_trip(&rep);
            fleet_reply_fini(&rep);
        }
    }
    fleet_envelope_fini(&e);
    FUZZ_CHECK(e.data == NULL);
}

/* ---- pongs ---- */

/* The pong object of p, member by member as a daemon writes it. */
static json_t *pong_json(const struct fleet_pong *p)
{
    json_t *j = json_object();

    FUZZ_CHECK(j);
    FUZZ_CHECK(json_object_set_new(j, "node", json_string(p->node)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "boot", json_string(p->boot)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "version", json_string(p->version)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "labels", fleet_labels_json(&p->labels)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "started", json_string(p->started)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "time", json_string(p->time)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "revision", json_integer((json_int_t)p->revision)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "etag", json_string(p->etag)) == 0);
    FUZZ_CHECK(json_object_set_new(j, "applied_offset",
                                   p->has_applied_offset
                                       ? json_integer((json_int_t)p->applied_offset)
                                       : json_null()) == 0);
    FUZZ_CHECK(json_object_set_new(j, "desired_offset",
                                   p->has_desired_offset
                                       ? json_integer((json_int_t)p->desired_offset)
                                       : json_null()) == 0);
    FUZZ_CHECK(json_object_set_new(j, "last_result",
                                   p->has_last_result ? fleet_reply_json(&p->last_result)
                                                      : json_null()) == 0);
    FUZZ_CHECK(json_object_set(j, "listeners", p->listeners) == 0);
    FUZZ_CHECK(json_object_set_new(j, "bridge", p->bridge ? json_incref(p->bridge) : json_null()) ==
               0);
    return j;
}

static void check_pong(const struct fleet_pong *p)
{
    int64_t ms = 0;

    FUZZ_CHECK(fleet_node_name_valid(p->node));
    FUZZ_CHECK(boot_ok(p->boot));
    FUZZ_CHECK(p->version[0] && terminated(p->version, sizeof(p->version)));
    check_labels(&p->labels);
    FUZZ_CHECK(fleet_time_parse(p->started, &ms) == 0);
    FUZZ_CHECK(fleet_time_parse(p->time, &ms) == 0 && ms == p->time_ms);
    FUZZ_CHECK(terminated(p->etag, sizeof(p->etag)));
    FUZZ_CHECK(p->has_applied_offset || p->applied_offset == 0);
    FUZZ_CHECK(p->has_desired_offset || p->desired_offset == 0);
    FUZZ_CHECK(json_is_array(p->listeners));
    FUZZ_CHECK(p->n_listeners == json_array_size(p->listeners));
    FUZZ_CHECK(!p->bridge || json_is_object(p->bridge));
    if (p->has_last_result)
        check_reply(&p->last_result);
}

static bool pongs_equal(const struct fleet_pong *a, const struct fleet_pong *b)
{
    return strcmp(a->node, b->node) == 0 && strcmp(a->boot, b->boot) == 0 &&
           strcmp(a->version, b->version) == 0 && labels_equal(&a->labels, &b->labels) &&
           strcmp(a->started, b->started) == 0 && strcmp(a->time, b->time) == 0 &&
           a->time_ms == b->time_ms && a->revision == b->revision &&
           strcmp(a->etag, b->etag) == 0 && a->has_applied_offset == b->has_applied_offset &&
           a->applied_offset == b->applied_offset &&
           a->has_desired_offset == b->has_desired_offset &&
           a->desired_offset == b->desired_offset && a->has_last_result == b->has_last_result &&
           (!a->has_last_result || replies_equal(&a->last_result, &b->last_result)) &&
           a->n_listeners == b->n_listeners && json_equal(a->listeners, b->listeners) &&
           (a->bridge ? json_equal(a->bridge, b->bridge) : b->bridge == NULL);
}

/* A parsed pong written back parses back equal. */
static void check_pong_round_trip(const struct fleet_pong *p)
{
    struct fleet_pong again = {0};
    struct core_err err = {0};
    json_t *j = pong_json(p);
    char *text = dump(j);
    int r = fleet_pong_parse(text, strlen(text), &again, &err);

    if (r != 0)
        fprintf(stderr, "pong written back refused: %s (%s)\n", err.msg, err.field);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(pongs_equal(p, &again));
    fleet_pong_fini(&again);
    free(text);
    json_decref(j);
}

static void read_pong_object(const json_t *j)
{
    struct fleet_pong p, before;
    struct core_err err = {0};
    int r;

    memset(&p, 0xa5, sizeof(p));
    before = p;
    r = fleet_pong_from_json(j, &p, &err);
    if (r != 0) {
        check_refusal(r, &err);
        FUZZ_CHECK(memcmp(&p, &before, sizeof(p)) == 0);
        return;
    }
    check_pong(&p);
    check_pong_round_trip(&p);
    fleet_pong_fini(&p);
}

static void read_pong(const char *body, size_t len)
{
    struct fleet_pong p, before;
    struct core_err err = {0};
    int r;

    memset(&p, 0xa5, sizeof(p));
    before = p;
    r = fleet_pong_parse(body, len, &p, &err);
    if (r != 0) {
        check_refusal(r, &err);
        FUZZ_CHECK(memcmp(&p, &before, sizeof(p)) == 0);
        return;
    }
    check_pong(&p);
    check_pong_round_trip(&p);
    fleet_pong_fini(&p);
}

/* ---- selectors ---- */

static void read_selector(const char *text)
{
    struct fleet_selector sel, before, again;
    struct core_err err = {0};
    char formatted[SELECTOR_TEXT_MAX];
    int n;
    int r;

    memset(&sel, 0xa5, sizeof(sel));
    before = sel;
    r = fleet_selector_parse(text, &sel, &err);
    if (r != 0) {
        FUZZ_CHECK(r == -EINVAL && err.msg[0] != '\0' && err.field[0] == '\0');
        FUZZ_CHECK(memcmp(&sel, &before, sizeof(sel)) == 0);
        return;
    }
    FUZZ_CHECK(sel.terms.n >= 1);
    check_labels(&sel.terms);
    FUZZ_CHECK(fleet_selector_match(&sel, &sel.terms));
    n = fleet_selector_format(&sel, formatted, sizeof(formatted));
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(formatted));
    /* nothing is trimmed or reordered: the text is already canonical */
    FUZZ_CHECK(strcmp(formatted, text) == 0);
    FUZZ_CHECK(fleet_selector_parse(formatted, &again, &err) == 0);
    FUZZ_CHECK(labels_equal(&sel.terms, &again.terms));
}

/* ---- patterns, routing keys and node names ---- */

/* The rules of fleet_pattern_valid(), read plainly: dot-separated words, each '*', '#' or
 * [a-z0-9_-]+, at most FLEET_KEY_MAX - 1 characters. */
static bool pattern_ok(const char *p)
{
    size_t len = strlen(p);
    const char *w = p;

    if (len == 0 || len > FLEET_KEY_MAX - 1)
        return false;
    for (;;) {
        const char *dot = strchr(w, '.');
        size_t n = dot ? (size_t)(dot - w) : strlen(w);

        if (n == 0)
            return false;
        if (!(n == 1 && (w[0] == '*' || w[0] == '#'))) {
            for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_-", w[i]))
                    return false;
        }
        if (!dot)
            return true;
        w = dot + 1;
    }
}

static void read_key(const char *text)
{
    char node[FLEET_NAME_MAX], kind[FLEET_KIND_MAX];
    char key[FLEET_KEY_MAX];
    char name[FLEET_NAME_MAX];

    FUZZ_CHECK(fleet_pattern_valid(text) == pattern_ok(text));

    memset(node, 0xa5, sizeof(node));
    memset(kind, 0xa5, sizeof(kind));
    if (fleet_routing_key_parse(text, node, kind) == 0) {
        FUZZ_CHECK(fleet_node_name_valid(node));
        FUZZ_CHECK(fleet_kind_valid(kind));
        FUZZ_CHECK(fleet_routing_key(key, sizeof(key), node, kind) > 0);
        FUZZ_CHECK(strcmp(key, text) == 0);
        FUZZ_CHECK(fleet_pattern_valid(key));
    }
    FUZZ_CHECK(fleet_node_name_valid(text) == (fleet_rpc_key(key, sizeof(key), text) > 0));

    FUZZ_CHECK(fleet_node_name_from_text(text, name, sizeof(name)) == 0);
    FUZZ_CHECK(fleet_node_name_valid(name));
    if (fleet_node_name_valid(text))
        FUZZ_CHECK(strcmp(name, text) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body;
    char *text;

    if (size == 0)
        return 0;
    body = (const char *)data + 1;
    switch (pick(data[0])) {
    case READ_RECORD:
        read_record(body, size - 1);
        break;
    case READ_ENVELOPE:
        read_envelope(body, size - 1);
        break;
    case READ_REPLY:
        read_reply(body, size - 1);
        break;
    case READ_PONG:
        read_pong(body, size - 1);
        break;
    case READ_SELECTOR:
    case READ_KEY:
        /* text arguments: up to the first NUL */
        text = malloc(size);
        FUZZ_CHECK(text);
        memcpy(text, body, size - 1);
        text[size - 1] = '\0';
        if (pick(data[0]) == READ_SELECTOR)
            read_selector(text);
        else
            read_key(text);
        free(text);
        break;
    }
    return 0;
}
