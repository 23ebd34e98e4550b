/*
 * `sockserv fleet`: the arguments, the help, and the verbs apply, ls, watch and forget. The broker
 * session is fleet_bus.c, the tables and lines fleet_fmt.c.
 */
#include "cli/fleet.h"

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli/common.h"
#include "cli/ctl.h"
#include "fleet/amqp.h"
#include "fleet/view.h"
#include "fleet/wire.h"

#define VB(v) CLI_VB(v)

/* How long the stream of known nodes must stay silent to count as read to its end: after a
 * record, and (an empty stream, or a broker slow to start reading it) before the first. */
#define STREAM_IDLE_MS 500
#define STREAM_FIRST_MS 1500
/* apply: how long live nodes have to answer the ping that finds who a selector targets. */
#define APPLY_PING_MS 1000
/* The longest the nodes stream may take to be read, beyond the ping's window. */
#define STREAM_MAX_MS 5000
/* How long the broker has to confirm the record. */
#define CONFIRM_MS 10000
/* The status interval the view assumes of the nodes (the daemon's default). */
#define STATUS_INTERVAL_MS 10000
/* A loop's slice: conditions are checked at least this often. */
#define SLICE_MS 100
/* watch: the first wait before reconnecting to a broker lost, doubled up to the second. */
#define RETRY_FIRST_MS 500
#define RETRY_MAX_MS 10000

enum verb { APPLY, LS, WATCH, FORGET, VERB_COUNT };

enum opt {
    OPT_AMQP,
    OPT_CREDENTIALS,
    OPT_CACERT,
    OPT_CERT,
    OPT_KEY,
    OPT_PREFIX,
    OPT_JSON,
    OPT_FILE,
    OPT_NODE,
    OPT_SELECTOR,
    OPT_ALL,
    OPT_IF_MATCH,
    OPT_WAIT,
    OPT_COUNT,
    OPT_FORCE,
    OPT_COUNT_
};

static const struct cli_opt opts[OPT_COUNT_] = {
    [OPT_AMQP] = {"amqp", 0, "URL",
                  "the broker: amqp://[USER:PASSWORD@]HOST[:PORT][/VHOST] or amqps://... "
                  "(default: $" CLI_FLEET_ENV_AMQP ", else " CLI_FLEET_DEFAULT_AMQP ")"},
    [OPT_CREDENTIALS] = {"amqp-credentials", 0, "FILE",
                         "read USER:PASSWORD from FILE (one line) instead of the URL"},
    [OPT_CACERT] = {"amqp-cacert", 0, "FILE", "amqps: the PEM CA certificates to check the broker"},
    [OPT_CERT] = {"amqp-cert", 0, "FILE", "amqps: a client certificate (PEM); needs --amqp-key"},
    [OPT_KEY] = {"amqp-key", 0, "FILE", "amqps: the client certificate's key (PEM)"},
    [OPT_PREFIX] = {"amqp-prefix", 0, "PREFIX",
                    "the fleet's names on the broker: PREFIX.events, PREFIX.desired, ... "
                    "(default " CLI_FLEET_DEFAULT_PREFIX ")"},
    [OPT_JSON] = {"json", 0, NULL, "print JSON instead of text"},
    [OPT_FILE] = {"file", 'f', "FILE",
                  "the desired configuration, the body of PUT /api/v1/config "
                  "({\"listeners\": [...]}); '-' is standard input",
                  VB(APPLY)},
    [OPT_NODE] = {"node", 0, "NAME", "target this node (repeatable)", VB(APPLY), true},
    [OPT_SELECTOR] = {"selector", 0, "K=V,...",
                      "target the nodes whose labels have every K=V (known nodes are waited for)",
                      VB(APPLY)},
    [OPT_ALL] = {"all", 0, NULL, "target every node", VB(APPLY)},
    [OPT_IF_MATCH] = {"if-match", 0, "NODE=ETAG",
                      "NODE applies the record only if its configuration's ETag is still ETAG, "
                      "else answers conflict (repeatable)",
                      VB(APPLY), true},
    [OPT_WAIT] = {"wait", 0, "DURATION",
                  "how long to wait for the nodes' answers (apply: default 15s; ls: 2s). 500ms, "
                  "10s, 2m; a bare number is seconds",
                  VB(APPLY) | VB(LS)},
    [OPT_COUNT] = {"count", 0, "N", "end after N events", VB(WATCH)},
    [OPT_FORCE] = {"force", 0, NULL,
                   "forget a node even when it is online (it is listed again as soon as it "
                   "speaks: its next status, hello or answer to a ping)",
                   VB(FORGET)},
};

#define ARGS(min, max, ...) .min_args = (min), .max_args = (max), .arg_names = {__VA_ARGS__}

static const struct cli_verb verbs[VERB_COUNT] = {
    [APPLY] = {"apply",
               "apply -f FILE|- (--node NAME... | --selector K=V,... | --all)\n"
               "                      [--if-match NODE=ETAG]... [--wait DURATION] [--json]",
               "make the configuration of the targeted nodes what FILE says",
               "Publishes FILE as a record of the fleet's desired state (the stream\n"
               "PREFIX.desired): every node it targets (by name, by labels, or all) applies\n"
               "the newest record meant for it, as PUT /api/v1/config would, and answers.\n"
               "Nodes that are offline apply it when they come back. Prints one row a node:\n"
               "NODE RESULT OFFSET REVISION DETAIL (applied, unchanged, rejected with the\n"
               "problem, conflict, or pending: no answer within --wait). The nodes waited\n"
               "for are those named and the known nodes (those that ever joined, and those\n"
               "that answer a ping) that the selector matches.",
               ARGS(0, 0, NULL)},
    [LS] = {"ls", "ls [--wait DURATION] [--json]", "list the fleet's nodes and their state",
            "Lists the nodes the fleet knows (those that ever joined) and those that answer a\n"
            "ping within --wait: NODE STATE LABELS REVISION OFFSET LISTENERS LAST-SEEN.\n"
            "States: SYNCED (runs the newest record meant for it), PENDING (a record it has\n"
            "not answered), ERROR (it rejected its record, or a conflict), STALE (silent for\n"
            "3 status intervals), OFFLINE (it left, or does not answer). OFFSET is the\n"
            "applied record's (then /DESIRED when a newer one targets it). With --json, the\n"
            "document of GET /api/v1/fleet.",
            ARGS(0, 0, NULL)},
    [WATCH] = {"watch", "watch [PATTERN] [--count N] [--json]", "follow the fleet's events",
               "Prints the events of every node as they come, one line each:\n"
               "TIME NODE KIND SUMMARY (with --json the event's JSON body). PATTERN picks\n"
               "them by routing key ev.NODE.AREA.WHAT: '*' one word, '#' any (default ev.#;\n"
               "ev.*.listener.# every node's listener events, ev.n1.# node n1's). A broker\n"
               "lost once watching is said on stderr and reconnected to (what happened in\n"
               "between is not shown). Ctrl-C ends it (exit 0).",
               ARGS(0, 1, "PATTERN")},
    [FORGET] = {"forget", "forget NODE... [--force]",
                "make the fleet forget nodes that left for good",
                "The fleet remembers every node that ever joined (the stream PREFIX.nodes,\n"
                "30 days): ls lists one that left as OFFLINE, and apply --selector/--all\n"
                "waits for it (PENDING). forget publishes the event node.forgotten of each\n"
                "NODE: ls and apply no longer count it, until it joins again. A node that is\n"
                "online (it answers a ping, or its rpc queue exists) is refused (exit 1):\n"
                "stop it first, or it would join again; --force forgets it anyway (a crashed\n"
                "node's queue lingers until the broker notices). Prints \"forgotten: NODE\"\n"
                "for each, or \"not known: NODE\" for a node the fleet does not know (nothing\n"
                "to do, exit 0).",
                ARGS(1, CLI_ARGS_MAX, "NODE")},
};

const struct cli_command cli_fleet_command = {
    .name = "fleet",
    .self = {.synopsis = "[OPTIONS] VERB [ARGS]",
             .brief = "drive and watch a fleet of daemons through a RabbitMQ broker"},
    .opts = opts,
    .nopts = OPT_COUNT_,
    .verbs = verbs,
    .nverbs = VERB_COUNT,
    .epilog = "Exit status:\n"
              "  0  done (apply: every targeted node applied or was unchanged)\n"
              "  1  apply: a node rejected the configuration; forget: a node is online\n"
              "  2  usage error, or a FILE that cannot be read or is not a JSON object\n"
              "  3  apply: a node's configuration changed since --if-match (conflict)\n"
              "  4  the broker: unreachable, credentials refused, TLS failed, record refused,\n"
              "     connection lost\n"
              "  5  apply: a targeted node did not answer within --wait (pending)\n",
};

/* One run of the command. */
struct run {
    enum verb verb;
    struct cli_args a;
    struct fleet_amqp_conf conf;
    const char *prefix;
    bool json;
    int64_t wait_ms;
    struct cli_fleet_bus *bus;
};

static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int status, const char *fmt, ...)
{
    va_list ap;

    fputs("sockserv fleet: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

static int usage_error(const struct run *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const struct run *x, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cli_args_usage_error(&cli_fleet_command, (int)x->verb, "%s", msg);
}

/* ---- finding the nodes: the nodes stream and a ping to every node ---- */

struct discover {
    struct run *x;
    struct fleet_view *view;
    json_t *last_kind; /* node -> the kind of its last record in the nodes stream */
    json_t *ponged;    /* node -> true */
    json_t *pongs;     /* [{"body","at"}]: the pongs, in the order they came */
    json_t *replies;   /* apply: node -> reply */
    const json_t *expected;
    char ping_id[FLEET_UUID_LEN];
    char record_id[FLEET_UUID_LEN];
    int64_t stream_at; /* when the nodes stream last delivered (or was subscribed) */
};

static int on_message(void *ctx, const struct cli_fleet_msg *m)
{
    struct discover *d = ctx;

    if (m->channel == 2) {
        json_t *env = json_loadb(m->body, m->len, 0, NULL);
        const char *node = json_string_value(json_object_get(env, "node"));
        const char *kind = json_string_value(json_object_get(env, "kind"));

        d->stream_at = core_now_ms();
        fleet_view_on_event(d->view, m->body, m->len, fleet_view_now_ms());
        if (node && kind)
            json_object_set_new(d->last_kind, node, json_string(kind));
        json_decref(env);
        return 0;
    }
    if (strcmp(m->correlation_id, d->ping_id) == 0) {
        json_t *pong = json_loadb(m->body, m->len, 0, NULL);
        const char *node = json_string_value(json_object_get(pong, "node"));

        /* fed to the view once the stream is read: its records are older than any pong */
        if (node && json_is_object(pong)) {
            json_object_set_new(d->ponged, node, json_true());
            json_array_append_new(d->pongs, json_pack("{s:s%, s:I}", "body", m->body, m->len, "at",
                                                      (json_int_t)fleet_view_now_ms()));
        }
        json_decref(pong);
        return 0;
    }
    if (d->record_id[0] && strcmp(m->correlation_id, d->record_id) == 0) {
        json_t *reply = json_loadb(m->body, m->len, 0, NULL);
        const char *node = json_string_value(json_object_get(reply, "node"));
        const json_t *name;
        size_t i;

        if (node && json_is_object(reply))
            json_object_set(d->replies, node, reply);
        json_decref(reply);
        json_array_foreach(d->expected, i, name)
        {
            if (!json_object_get(d->replies, json_string_value(name)))
                return 0;
        }
        return 1; /* every expected node answered */
    }
    return 0;
}

/* Whether every node the stream says is live (its last record is not node.bye) answered. */
static bool live_ones_answered(const struct discover *d)
{
    const char *node;
    json_t *kind;

    json_object_foreach(d->last_kind, node, kind)
    {
        if (strcmp(json_string_value(kind), "node.bye") != 0 &&
            strcmp(json_string_value(kind), "node.forgotten") != 0 &&
            !json_object_get(d->ponged, node))
            return false;
    }
    return true;
}

/*
 * Reads the nodes stream from its start and pings every node, until the stream is silent and
 * either every live node answered or window_ms passed. Returns 0 or an exit status.
 */
static int discover(struct run *x, struct discover *d, int64_t window_ms)
{
    char nodes[300];
    struct core_err err = {0};
    int64_t start = core_now_ms(), end = start + window_ms, hard = end + STREAM_MAX_MS, pinged;
    const json_t *pong;
    size_t i;
    int r;

    (void)fleet_name(nodes, sizeof(nodes), x->prefix, "nodes");
    fleet_uuid(d->ping_id);
    fleet_view_set_connected(d->view, true);
    /* the wall clock the view reads may lag the monotonic one this loop ends by */
    fleet_view_set_ping_timeout(d->view, window_ms > 200 ? window_ms - 50 : window_ms);
    r = cli_fleet_bus_consume(x->bus, 2, nodes, true, &err);
    if (r == 0) {
        json_t *request = fleet_ping_request();
        char rpc[300], *ping = request ? json_dumps(request, JSON_COMPACT) : NULL;

        json_decref(request);
        if (!ping)
            return fail(CLI_EXIT_FAILURE, "out of memory");
        (void)fleet_name(rpc, sizeof(rpc), x->prefix, "rpc");
        r = cli_fleet_bus_publish(x->bus,
                                  &(struct fleet_amqp_msg){.exchange = rpc,
                                                           .routing_key = "rpc.all",
                                                           .body = ping,
                                                           .len = strlen(ping),
                                                           .correlation_id = d->ping_id,
                                                           .message_id = d->ping_id,
                                                           .reply_to = FLEET_REPLY_TO,
                                                           .expiration = FLEET_RPC_EXPIRATION},
                                  NULL, &err);
        free(ping);
    }
    if (r < 0)
        return fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
    pinged = fleet_view_now_ms();
    d->stream_at = core_now_ms();
    for (;;) {
        int64_t now = core_now_ms();
        int64_t idle = json_object_size(d->last_kind) > 0 ? STREAM_IDLE_MS : STREAM_FIRST_MS;

        if ((now - d->stream_at >= idle && (now >= end || live_ones_answered(d))) || now >= hard)
            break;
        r = cli_fleet_bus_run(x->bus, now + SLICE_MS, on_message, d, -1, &err);
        if (r < 0)
            return fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
    }
    /* every node known now was asked: those silent since are offline */
    fleet_view_ping_sent(d->view, NULL, pinged);
    json_array_foreach(d->pongs, i, pong)
    {
        const char *body = json_string_value(json_object_get(pong, "body"));

        fleet_view_on_pong(d->view, body, strlen(body),
                           (int64_t)json_integer_value(json_object_get(pong, "at")));
    }
    return 0;
}

static int discover_init(struct discover *d, struct run *x)
{
    memset(d, 0, sizeof(*d));
    d->x = x;
    d->last_kind = json_object();
    d->ponged = json_object();
    d->pongs = json_array();
    d->replies = json_object();
    if (!d->last_kind || !d->ponged || !d->pongs || !d->replies ||
        fleet_view_new(STATUS_INTERVAL_MS, &d->view) < 0)
        return fail(CLI_EXIT_FAILURE, "out of memory");
    return 0;
}

static void discover_fini(struct discover *d)
{
    fleet_view_free(d->view);
    json_decref(d->last_kind);
    json_decref(d->ponged);
    json_decref(d->pongs);
    json_decref(d->replies);
}

/* ---- apply ---- */

/*
 * Reads FILE ("-": standard input): a JSON object of at most CLI_FLEET_FILE_MAX bytes (what PUT
 * /api/v1/config takes). Returns 0 with *ret, or 2 after saying why.
 */
static int read_config(const char *path, json_t **ret)
{
    bool stdin_ = strcmp(path, "-") == 0;
    const char *name = stdin_ ? "standard input" : path;
    FILE *f = stdin_ ? stdin : fopen(path, "re");
    char *buf = NULL;
    size_t len = 0;
    json_error_t jerr;
    json_t *doc = NULL;
    int r = CLI_FLEET_EXIT_USAGE;

    if (!f)
        return fail(CLI_FLEET_EXIT_USAGE, "%s: %s", path, strerror(errno));
    buf = malloc(CLI_FLEET_FILE_MAX + 1);
    if (!buf) {
        r = fail(CLI_EXIT_FAILURE, "out of memory");
        goto out;
    }
    len = fread(buf, 1, CLI_FLEET_FILE_MAX + 1, f);
    if (ferror(f)) {
        fail(r, "%s: %s", name, strerror(errno));
        goto out;
    }
    if (len > CLI_FLEET_FILE_MAX) {
        fail(r, "%s: larger than %d bytes (what PUT /api/v1/config takes)", name,
             CLI_FLEET_FILE_MAX);
        goto out;
    }
    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        fail(r, "%s: line %d, column %d: %s", name, jerr.line, jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(doc)) {
        fail(r, "%s: not a JSON object ({\"listeners\": [...]})", name);
        json_decref(doc);
        goto out;
    }
    *ret = doc;
    r = 0;
out:
    free(buf);
    if (!stdin_)
        fclose(f);
    return r;
}

/* "user@host" of who runs the command. */
static void issuer(char *buf, size_t len)
{
    const struct passwd *pw = getpwuid(geteuid());
    char host[256] = "localhost";

    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    if (pw && pw->pw_name)
        snprintf(buf, len, "%s@%s", pw->pw_name, host);
    else
        snprintf(buf, len, "uid%u@%s", (unsigned)geteuid(), host);
}

/*
 * The record: {"target", "config", "if_match"?, "issued_by", "issued_at"}, checked as a node
 * will read it. Returns 0 with *ret (text to free), or the exit status after saying why.
 */
static int build_record(struct run *x, const json_t *config, const json_t *if_match, char **ret)
{
    const char **nodes = calloc(x->a.nrepeats + 1, sizeof(*nodes));
    struct core_err err = {0};
    json_t *record = NULL;
    size_t n = 0;
    char by[FLEET_ISSUED_BY_MAX];
    int r;

    if (!nodes)
        return fail(CLI_EXIT_FAILURE, "out of memory");
    for (size_t i = 0; i < x->a.nrepeats; i++)
        if (x->a.repeat_opt[i] == OPT_NODE)
            nodes[n++] = x->a.repeats[i];
    issuer(by, sizeof(by));
    r = fleet_record_build(nodes, n, x->a.seen[OPT_SELECTOR] ? x->a.val[OPT_SELECTOR] : NULL,
                           x->a.seen[OPT_ALL], config,
                           json_object_size(if_match) > 0 ? if_match : NULL, by, fleet_now_ms(),
                           &record, &err);
    free(nodes);
    if (r == -ENOMEM)
        return fail(CLI_EXIT_FAILURE, "out of memory");
    if (r < 0)
        return fail(CLI_FLEET_EXIT_USAGE, "%s: %s%s%s%s",
                    strcmp(x->a.val[OPT_FILE], "-") == 0 ? "standard input" : x->a.val[OPT_FILE],
                    err.msg, err.field[0] ? " (field: " : "", err.field, err.field[0] ? ")" : "");
    *ret = json_dumps(record, JSON_COMPACT);
    json_decref(record);
    return *ret ? 0 : fail(CLI_EXIT_FAILURE, "out of memory");
}

/* Checks apply's arguments. Returns 0, or the exit status after saying why. */
static int check_apply(struct run *x, struct fleet_selector *sel, json_t *if_match)
{
    struct core_err err = {0};

    if (!x->a.seen[OPT_FILE])
        return usage_error(x, "missing -f FILE");
    if (!x->a.seen[OPT_NODE] && !x->a.seen[OPT_SELECTOR] && !x->a.seen[OPT_ALL])
        return usage_error(x, "say which nodes: --node NAME, --selector K=V,... or --all");
    if (x->a.seen[OPT_ALL] && (x->a.seen[OPT_NODE] || x->a.seen[OPT_SELECTOR]))
        return usage_error(x, "--all targets every node: no --node or --selector with it");
    for (size_t i = 0; i < x->a.nrepeats; i++) {
        const char *v = x->a.repeats[i];

        if (x->a.repeat_opt[i] == OPT_NODE && !fleet_node_name_valid(v))
            return usage_error(x, "--node '%s': a node name is [a-z0-9][a-z0-9_-]{0,62}", v);
        if (x->a.repeat_opt[i] == OPT_IF_MATCH && cli_fleet_if_match_add(if_match, v, &err) < 0)
            return usage_error(x, "%s", err.msg);
    }
    if (x->a.seen[OPT_SELECTOR] && fleet_selector_parse(x->a.val[OPT_SELECTOR], sel, &err) < 0)
        return usage_error(x, "--selector: %s", err.msg);
    return 0;
}

static int print_rows(struct run *x, json_t *rows)
{
    char *text;

    if (x->json) {
        text = json_dumps(rows, JSON_INDENT(2));
        if (text && printf("%s\n", text) < 0) {
            free(text);
            return fail(CLI_EXIT_FAILURE, "writing the output: %s", strerror(errno));
        }
    } else if (json_array_size(rows) == 0) {
        return 0; /* said on stderr: no node is targeted */
    } else {
        text = cli_fleet_apply_render(rows);
        if (text)
            fputs(text, stdout);
    }
    if (!text)
        return fail(CLI_EXIT_FAILURE, "out of memory");
    free(text);
    return fflush(stdout) == 0 ? 0
                               : fail(CLI_EXIT_FAILURE, "writing the output: %s", strerror(errno));
}

static int run_apply(struct run *x)
{
    struct fleet_selector sel;
    json_t *if_match = json_object(), *config = NULL, *view = NULL, *expected = NULL, *rows = NULL;
    struct core_err err = {0};
    struct discover d;
    char *record = NULL, desired[300];
    const char **names = NULL;
    size_t nnames = 0;
    uint64_t tag = 0;
    int64_t deadline;
    int r;

    memset(&sel, 0, sizeof(sel));
    r = check_apply(x, &sel, if_match);
    if (r == 0)
        r = read_config(x->a.val[OPT_FILE], &config);
    if (r == 0)
        r = build_record(x, config, if_match, &record);
    if (r == 0)
        r = discover_init(&d, x);
    else
        memset(&d, 0, sizeof(d));
    if (r != 0)
        goto out;
    r = cli_fleet_bus_open(&x->conf, x->prefix, &x->bus, &err);
    if (r < 0) {
        r = fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
        goto out;
    }
    r = cli_fleet_bus_consume(x->bus, 1, FLEET_REPLY_TO, false, &err);
    if (r == 0)
        r = cli_fleet_bus_confirm_select(x->bus, &err);
    if (r < 0) {
        r = fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
        goto out;
    }
    if (x->a.seen[OPT_SELECTOR] || x->a.seen[OPT_ALL]) {
        r = discover(x, &d, APPLY_PING_MS);
        if (r != 0)
            goto out;
        view = fleet_view_json(d.view, fleet_view_now_ms());
    }
    names = calloc(x->a.nrepeats + 1, sizeof(*names));
    if (!names) {
        r = fail(CLI_EXIT_FAILURE, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < x->a.nrepeats; i++)
        if (x->a.repeat_opt[i] == OPT_NODE)
            names[nnames++] = x->a.repeats[i];
    expected = cli_fleet_expected(view, names, nnames, x->a.seen[OPT_SELECTOR] ? &sel : NULL,
                                  x->a.seen[OPT_ALL]);
    if (!expected) {
        r = fail(CLI_EXIT_FAILURE, "out of memory");
        goto out;
    }
    d.expected = expected;

    /* the record, confirmed by the broker (mandatory: a missing stream comes back) */
    fleet_uuid(d.record_id);
    (void)fleet_name(desired, sizeof(desired), x->prefix, "desired");
    r = cli_fleet_bus_publish(x->bus,
                              &(struct fleet_amqp_msg){.exchange = "",
                                                       .routing_key = desired,
                                                       .body = record,
                                                       .len = strlen(record),
                                                       .mandatory = true,
                                                       .persistent = true,
                                                       .message_id = d.record_id,
                                                       .correlation_id = d.record_id,
                                                       .reply_to = FLEET_REPLY_TO,
                                                       .timestamp_s = fleet_now_ms() / 1000},
                              &tag, &err);
    if (r < 0) {
        r = fail(CLI_FLEET_EXIT_BROKER, "the broker did not take the record: %s", err.msg);
        goto out;
    }
    cli_fleet_bus_await(x->bus, tag);
    deadline = core_now_ms() + CONFIRM_MS;
    for (;;) {
        r = cli_fleet_bus_run(x->bus, deadline, on_message, &d, -1, &err);
        if (r < 0) {
            r = fail(CLI_FLEET_EXIT_BROKER, "the broker did not take the record: %s", err.msg);
            goto out;
        }
        r = cli_fleet_bus_settled(x->bus, tag, &err);
        if (r < 0) {
            r = fail(CLI_FLEET_EXIT_BROKER, "the broker did not take the record: %s", err.msg);
            goto out;
        }
        if (r > 0)
            break;
        if (core_now_ms() >= deadline) {
            char why[128];

            if (cli_fleet_bus_blocked(x->bus, why, sizeof(why)))
                r = fail(CLI_FLEET_EXIT_BROKER,
                         "the broker has not confirmed the record: it blocks publishers (%s); it "
                         "may still take it when the alarm clears",
                         why);
            else
                r = fail(CLI_FLEET_EXIT_BROKER,
                         "the broker has not confirmed the record in %d s; it may still take it",
                         CONFIRM_MS / 1000);
            goto out;
        }
    }
    cli_fleet_bus_await(x->bus, 0);

    /* the answers */
    if (json_array_size(expected) == 0)
        fprintf(stderr, "sockserv fleet: no known node is targeted; nodes that join later apply "
                        "the record\n");
    deadline = core_now_ms() + x->wait_ms;
    while (json_array_size(expected) > 0) {
        bool all = true;
        const json_t *name;
        size_t i;

        json_array_foreach(expected, i, name)
        {
            all &= json_object_get(d.replies, json_string_value(name)) != NULL;
        }
        if (all || core_now_ms() >= deadline)
            break;
        r = cli_fleet_bus_run(x->bus, deadline, on_message, &d, -1, &err);
        if (r < 0) {
            r = fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
            goto out;
        }
    }
    free(names);
    names = calloc(json_array_size(expected) + 1, sizeof(*names));
    if (!names) {
        r = fail(CLI_EXIT_FAILURE, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(expected); i++)
        names[i] = json_string_value(json_array_get(expected, i));
    rows = cli_fleet_apply_rows(d.replies, names, json_array_size(expected), x->wait_ms);
    if (!rows) {
        r = fail(CLI_EXIT_FAILURE, "out of memory");
        goto out;
    }
    r = print_rows(x, rows);
    if (r == 0)
        r = cli_fleet_apply_exit(rows);
out:
    json_decref(rows);
    free(names);
    json_decref(expected);
    json_decref(view);
    discover_fini(&d);
    free(record);
    json_decref(config);
    json_decref(if_match);
    return r;
}

/* ---- ls ---- */

static int run_ls(struct run *x)
{
    struct core_err err = {0};
    struct discover d;
    json_t *view = NULL;
    char *text = NULL;
    int r;

    r = discover_init(&d, x);
    if (r != 0)
        goto out;
    r = cli_fleet_bus_open(&x->conf, x->prefix, &x->bus, &err);
    if (r == 0)
        r = cli_fleet_bus_consume(x->bus, 1, FLEET_REPLY_TO, false, &err);
    if (r < 0) {
        r = fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
        goto out;
    }
    r = discover(x, &d, x->wait_ms);
    if (r != 0)
        goto out;
    view = fleet_view_json(d.view, fleet_view_now_ms());
    if (view)
        text = x->json ? json_dumps(view, JSON_INDENT(2)) : cli_fleet_ls_render(view);
    if (!text) {
        r = fail(CLI_EXIT_FAILURE, "out of memory");
        goto out;
    }
    fputs(text, stdout);
    if (x->json)
        fputc('\n', stdout);
    if (fflush(stdout) != 0)
        r = fail(CLI_EXIT_FAILURE, "writing the output: %s", strerror(errno));
out:
    free(text);
    json_decref(view);
    discover_fini(&d);
    return r;
}

/* ---- watch ---- */

struct watch {
    bool json;
    unsigned long count, seen;
    bool out_failed;
};

static int on_event(void *ctx, const struct cli_fleet_msg *m)
{
    struct watch *w = ctx;
    char *line = NULL;
    int n;

    if (w->json) {
        n = printf("%.*s\n", (int)m->len, m->body);
    } else {
        line = cli_fleet_watch_line(m->routing_key, m->body, m->len);
        n = line ? printf("%s\n", line) : -1;
        free(line);
    }
    if (n < 0 || fflush(stdout) != 0) {
        w->out_failed = true;
        return 1;
    }
    w->seen++;
    return w->count > 0 && w->seen >= w->count ? 1 : 0;
}

static int run_watch(struct run *x)
{
    const char *pattern = x->a.npos > 0 ? x->a.pos[0] : "ev.#";
    struct watch w = {.json = x->json};
    struct core_err err = {0};
    bool ever = false, lost = false;
    sigset_t mask;
    int sfd, r;

    if (!fleet_pattern_valid(pattern))
        return usage_error(x,
                           "PATTERN '%s': words of a-z, 0-9, '_' and '-', or '*' or '#', "
                           "separated by '.' (ev.*.listener.#)",
                           pattern);
    if (x->a.seen[OPT_COUNT] && !cli_parse_ulong(x->a.val[OPT_COUNT], 1, 1000000000, &w.count))
        return usage_error(x, "--count '%s': a number from 1", x->a.val[OPT_COUNT]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return fail(CLI_EXIT_FAILURE, "sigprocmask: %s", strerror(errno));
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        return fail(CLI_EXIT_FAILURE, "signalfd: %s", strerror(errno));
    for (int64_t backoff = RETRY_FIRST_MS;;) {
        r = cli_fleet_bus_open(&x->conf, x->prefix, &x->bus, &err);
        if (r == 0)
            r = cli_fleet_bus_watch(x->bus, x->prefix, pattern, &err);
        if (r == 0) {
            if (lost)
                fprintf(stderr, "sockserv fleet: watching again (events in between are lost)\n");
            ever = true;
            lost = false;
            backoff = RETRY_FIRST_MS;
            do
                r = cli_fleet_bus_run(x->bus, core_now_ms() + 3600 * 1000, on_event, &w, sfd, &err);
            while (r == 0);
        }
        if (r > 0) {
            r = w.out_failed ? fail(CLI_EXIT_FAILURE, "writing the output: %s", strerror(errno))
                             : 0; /* --count reached, or SIGINT/SIGTERM */
            break;
        }
        /* the broker: refused at start, or lost; once watching, keep trying */
        if (!ever) {
            r = fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
            break;
        }
        if (!lost)
            fprintf(stderr, "sockserv fleet: %s; reconnecting\n", err.msg);
        lost = true;
        cli_fleet_bus_free(x->bus);
        x->bus = NULL;
        if (poll(&(struct pollfd){.fd = sfd, .events = POLLIN}, 1, (int)backoff) > 0) {
            r = 0;
            break;
        }
        backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
    }
    close(sfd);
    return r;
}

/* ---- forget ---- */

/*
 * Publishes m (confirm mode) and runs the connection until the broker settles it, within
 * CONFIRM_MS. Returns 1 (confirmed), -ENOENT (returned: unroutable, a mandatory m), or the exit
 * status after saying why (what names m).
 */
static int publish_settled(struct run *x, struct discover *d, const struct fleet_amqp_msg *m,
                           const char *what)
{
    struct core_err err = {0};
    uint64_t tag = 0;
    int64_t deadline = core_now_ms() + CONFIRM_MS;
    int r;

    r = cli_fleet_bus_publish(x->bus, m, &tag, &err);
    if (r < 0)
        return fail(CLI_FLEET_EXIT_BROKER, "%s: %s", what, err.msg);
    cli_fleet_bus_await(x->bus, tag);
    for (;;) {
        r = cli_fleet_bus_run(x->bus, deadline, on_message, d, -1, &err);
        if (r >= 0)
            r = cli_fleet_bus_settled(x->bus, tag, &err);
        if (r == -ENOENT || r > 0)
            break;
        if (r < 0)
            return fail(CLI_FLEET_EXIT_BROKER, "%s: %s", what, err.msg);
        if (core_now_ms() >= deadline)
            return fail(CLI_FLEET_EXIT_BROKER, "%s: the broker did not confirm it in %d s", what,
                        CONFIRM_MS / 1000);
    }
    cli_fleet_bus_await(x->bus, 0);
    return r;
}

/* Whether node is online (*ret): it answered the ping of discover(), or its rpc queue exists (a
 * ping to rpc.NODE, mandatory, is not returned). Returns 0, or the exit status. */
static int node_online(struct run *x, struct discover *d, const char *node, bool *ret)
{
    char rpc[300], key[FLEET_KEY_MAX], what[128], *ping;
    json_t *request;
    int r;

    *ret = json_object_get(d->ponged, node) != NULL;
    if (*ret)
        return 0;
    request = fleet_ping_request();
    ping = request ? json_dumps(request, JSON_COMPACT) : NULL;
    json_decref(request);
    if (!ping)
        return fail(CLI_EXIT_FAILURE, "out of memory");
    (void)fleet_name(rpc, sizeof(rpc), x->prefix, "rpc");
    (void)fleet_rpc_key(key, sizeof(key), node);
    snprintf(what, sizeof(what), "asking whether %s is online", node);
    r = publish_settled(x, d,
                        &(struct fleet_amqp_msg){.exchange = rpc,
                                                 .routing_key = key,
                                                 .body = ping,
                                                 .len = strlen(ping),
                                                 .mandatory = true,
                                                 .correlation_id = d->ping_id,
                                                 .message_id = d->ping_id,
                                                 .reply_to = FLEET_REPLY_TO,
                                                 .expiration = FLEET_RPC_EXPIRATION},
                        what);
    free(ping);
    if (r != 1 && r != -ENOENT)
        return r;
    *ret = r == 1;
    return 0;
}

/* Publishes ev.NODE.node.forgotten, confirmed. Returns 0 or the exit status. */
static int publish_forgotten(struct run *x, struct discover *d, const char *node, const char *boot)
{
    char events[300], key[FLEET_KEY_MAX], id[FLEET_MESSAGE_ID_MAX], by[FLEET_ISSUED_BY_MAX],
        what[128], *body;
    int64_t now = fleet_now_ms();
    json_t *env;
    int r;

    issuer(by, sizeof(by));
    env = fleet_envelope(node, boot, 0, now, "node.forgotten", json_pack("{s:s}", "by", by));
    body = env ? json_dumps(env, JSON_COMPACT) : NULL;
    json_decref(env);
    if (!body)
        return fail(CLI_EXIT_FAILURE, "out of memory");
    (void)fleet_name(events, sizeof(events), x->prefix, "events");
    (void)fleet_routing_key(key, sizeof(key), node, "node.forgotten");
    (void)fleet_message_id(id, sizeof(id), node, boot, 0, now);
    snprintf(what, sizeof(what), "forgetting %s", node);
    r = publish_settled(x, d,
                        &(struct fleet_amqp_msg){.exchange = events,
                                                 .routing_key = key,
                                                 .body = body,
                                                 .len = strlen(body),
                                                 .persistent = true,
                                                 .type = "node.forgotten",
                                                 .message_id = id,
                                                 .timestamp_s = now / 1000},
                        what);
    free(body);
    return r == 1 ? 0 : r == -ENOENT ? fail(CLI_FLEET_EXIT_BROKER, "%s: returned", what) : r;
}

static int run_forget(struct run *x)
{
    struct core_err err = {0};
    struct discover d;
    char boot[FLEET_BOOT_LEN];
    json_t *view = NULL, *known = NULL;
    bool refused = false;
    int r;

    for (int i = 0; i < x->a.npos; i++)
        if (!fleet_node_name_valid(x->a.pos[i]))
            return usage_error(x, "NODE '%s': a node name is [a-z0-9][a-z0-9_-]{0,62}",
                               x->a.pos[i]);
    r = discover_init(&d, x);
    if (r != 0)
        goto out;
    r = cli_fleet_bus_open(&x->conf, x->prefix, &x->bus, &err);
    if (r == 0)
        r = cli_fleet_bus_consume(x->bus, 1, FLEET_REPLY_TO, false, &err);
    if (r == 0)
        r = cli_fleet_bus_confirm_select(x->bus, &err);
    if (r < 0) {
        r = fail(CLI_FLEET_EXIT_BROKER, "%s", err.msg);
        goto out;
    }
    r = discover(x, &d, APPLY_PING_MS);
    if (r != 0)
        goto out;
    /* the nodes the fleet knows now: every one of the view */
    view = fleet_view_json(d.view, fleet_view_now_ms());
    known = view ? cli_fleet_expected(view, NULL, 0, NULL, true) : NULL;
    if (!known) {
        r = fail(CLI_EXIT_FAILURE, "out of memory");
        goto out;
    }
    fleet_boot_id(boot);
    for (int i = 0; i < x->a.npos; i++) {
        const char *node = x->a.pos[i];
        bool is_known = false, online = false;
        const json_t *name;
        size_t k;

        json_array_foreach(known, k, name)
        {
            is_known |= strcmp(json_string_value(name), node) == 0;
        }
        if (!x->a.seen[OPT_FORCE]) {
            r = node_online(x, &d, node, &online);
            if (r != 0)
                goto out;
            if (online) {
                fail(CLI_EXIT_FAILURE, "%s is online: stop it first (or it would join again)",
                     node);
                refused = true;
                continue;
            }
        }
        if (!is_known) {
            printf("not known: %s\n", node);
            continue;
        }
        r = publish_forgotten(x, &d, node, boot);
        if (r != 0)
            goto out;
        printf("forgotten: %s\n", node);
    }
    r = refused ? CLI_EXIT_FAILURE : 0;
    if (fflush(stdout) != 0)
        r = fail(CLI_EXIT_FAILURE, "writing the output: %s", strerror(errno));
out:
    json_decref(known);
    json_decref(view);
    discover_fini(&d);
    return r;
}

/* ---- main ---- */

static int parse(int argc, char **argv, struct run *x)
{
    const char *url = NULL;
    struct core_err err = {0};
    int r;

    r = cli_args_parse(&cli_fleet_command, argc, argv, &x->a);
    if (r != CLI_ARGS_GO_ON)
        return r;
    x->verb = (enum verb)x->a.verb;
    x->json = x->a.seen[OPT_JSON];
    x->prefix = x->a.seen[OPT_PREFIX] ? x->a.val[OPT_PREFIX] : CLI_FLEET_DEFAULT_PREFIX;
    if (!fleet_prefix_valid(x->prefix))
        return usage_error(x, "--amqp-prefix '%s': [a-z0-9][a-z0-9_-]{0,62} and '.'", x->prefix);
    x->wait_ms = x->verb == LS ? CLI_FLEET_LS_WAIT_MS : CLI_FLEET_APPLY_WAIT_MS;
    r = cli_args_duration(&cli_fleet_command, &x->a, OPT_WAIT, 1000, CLI_FLEET_WAIT_MAX_MS,
                          &x->wait_ms);
    if (r != 0)
        return r;
    url = x->a.seen[OPT_AMQP] ? x->a.val[OPT_AMQP] : getenv(CLI_FLEET_ENV_AMQP);
    if (!url || !*url)
        url = CLI_FLEET_DEFAULT_AMQP;
    r = fleet_amqp_opts_check(
        &(struct fleet_amqp_opts){.url = url,
                                  .credentials_file = x->a.val[OPT_CREDENTIALS],
                                  .cacert = x->a.val[OPT_CACERT],
                                  .cert = x->a.val[OPT_CERT],
                                  .key = x->a.val[OPT_KEY],
                                  .connection_name = "sockserv fleet"},
        &x->conf, &err);
    if (r < 0)
        return usage_error(x, "%s", err.msg);
    return CLI_ARGS_GO_ON;
}

int cli_fleet_main(int argc, char **argv)
{
    struct run *x = calloc(1, sizeof(*x));
    int r;

    if (!x)
        return fail(CLI_EXIT_FAILURE, "out of memory");
    r = parse(argc, argv, x);
    if (r == CLI_ARGS_GO_ON) {
        switch (x->verb) {
        case APPLY:
            r = run_apply(x);
            break;
        case LS:
            r = run_ls(x);
            break;
        case FORGET:
            r = run_forget(x);
            break;
        default:
            r = run_watch(x);
            break;
        }
    }
    cli_fleet_bus_free(x->bus);
    explicit_bzero(&x->conf, sizeof(x->conf));
    free(x);
    return r;
}
