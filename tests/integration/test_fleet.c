/*
 * The fleet over a real RabbitMQ broker (the run's, $SOCKSERV_TEST_AMQP), as its users meet it:
 * daemons started with --amqp publish their events to PREFIX.events, where docs/fleet.md's pika
 * subscriber (scripts/fleet-subscribe.py, run as it is) and any AMQP client read them in order;
 * `sockserv fleet apply` drives several daemons at once through the desired-state stream and
 * prints what each answered (applied, unchanged, rejected with the problem, conflict, pending);
 * a node that was offline applies the newest record meant for it when it comes back, once, also
 * after a crash between the record and the state file; bad records are answered, not applied;
 * a second daemon with a node name already taken and a daemon with wrong credentials keep
 * serving and say why they are not in the fleet.
 *
 * Each test has a prefix of its own (t<pid>-<n>), so the names on the shared broker never meet.
 * Without a broker (no $SOCKSERV_TEST_AMQP) every test skips, which fails CI: the broker is part
 * of the test command (scripts/test.sh). The broker's own faults (stopped, restarted, frozen,
 * out of memory) are in test_fleet_faults.c, on a private broker.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define NODES_MAX 4
#define JOIN_MS 30000  /* a daemon joins the fleet (connects, declares) within this */
#define EVENT_MS 15000 /* an event reaches a subscriber within this */
#define CLI_MS 60000   /* one `sockserv fleet` run */
#define QUIET_MS 1500  /* how long "nothing more comes" is watched */

struct fleet {
    char *dir;
    const char *url;
    char prefix[64];
    char events[96]; /* PREFIX.events */
    struct it_daemon d[NODES_MAX];
    pid_t sub; /* the subscriber script, 0 when none runs */
    struct it_amqp *peer;
};

static int fleet_setup(void **state)
{
    struct fleet *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->dir = it_tmpdir_new();
    f->url = it_amqp_url();
    it_fleet_prefix(f->prefix, sizeof(f->prefix));
    snprintf(f->events, sizeof(f->events), "%s.events", f->prefix);
    *state = f;
    return 0;
}

static int fleet_teardown(void **state)
{
    struct fleet *f = *state;

    if (f->sub > 0) {
        (void)kill(f->sub, SIGKILL);
        (void)waitpid(f->sub, NULL, 0);
    }
    it_amqp_close(f->peer);
    it_daemons_stop_all(f->d, NODES_MAX);
    it_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* The fixture; skips the test when the run has no broker (a skip fails CI). */
static struct fleet *fleet_of(void **state)
{
    struct fleet *f = *state;

    if (!f->url) {
        fprintf(stderr, "# SKIPPED: no broker ($SOCKSERV_TEST_AMQP): run scripts/test.sh, or "
                        "scripts/broker.sh run meson test ...\n");
        skip();
    }
    return f;
}

/* Starts node i as name with labels (NULL-terminated, may be NULL) and waits until it joined. */
static struct it_daemon *node_start(struct fleet *f, int i, const char *name,
                                    const char *const *labels)
{
    it_fleet_node_start(
        &f->d[i],
        &(struct it_fleet_node_opts){
            .dir = f->dir, .url = f->url, .prefix = f->prefix, .node = name, .labels = labels});
    it_fleet_assert_state(&f->d[i], "connected", JOIN_MS);
    return &f->d[i];
}

/* Writes text to DIR/name; returns the path (malloc'd). */
static char *file_in(struct fleet *f, const char *name, const char *text)
{
    char *path = it_path_in(f->dir, name);

    assert_int_equal(it_file_write(path, text, strlen(text)), 0);
    return path;
}

/* `sockserv fleet ... apply -f FILE ARGS... --json`: the rows (new reference) and the exit
 * code. */
static json_t *apply_json(struct fleet *f, const char *file, const char *const *args, int *ret_exit)
{
    const char *argv[32] = {"apply", "-f", file};
    size_t n = 3;
    struct it_proc p;
    json_error_t jerr;
    json_t *rows;

    for (size_t i = 0; args && args[i]; i++)
        argv[n++] = args[i];
    argv[n++] = "--json";
    argv[n] = NULL;
    it_fleet_cli(f->url, f->prefix, argv, CLI_MS, &p);
    rows = json_loads(p.out, 0, &jerr);
    if (!json_is_array(rows))
        fail_msg("fleet apply --json printed no array (%s): stdout '%s' stderr '%s'",
                 it_status_str(p.status), p.out, p.err);
    *ret_exit = it_proc_exit_code(&p);
    it_proc_fini(&p);
    return rows;
}

/* The row of node in rows, or NULL. Borrowed. */
static json_t *row_of(const json_t *rows, const char *node)
{
    size_t i;
    json_t *row;

    json_array_foreach(rows, i, row)
    {
        const char *n = json_string_value(json_object_get(row, "node"));

        if (n && strcmp(n, node) == 0)
            return row;
    }
    return NULL;
}

/* Asserts node's row says result; returns the row. */
static json_t *expect_row(const json_t *rows, const char *node, const char *result)
{
    json_t *row = row_of(rows, node);

    if (!row || strcmp(it_json_str(row, "result"), result) != 0) {
        char *text = json_dumps(rows, JSON_COMPACT);

        fprintf(stderr, "# rows: %s\n", text);
        free(text);
        fail_msg("node %s: expected a row \"%s\"", node, result);
    }
    return row;
}

/* GET /api/v1/config (new reference). */
static json_t *config_of(const struct it_daemon *d)
{
    return it_http_expect(d, "GET", "/api/v1/config", NULL, 200);
}

/* The ids of d's configuration, joined by spaces ("" when none), in buf. */
static const char *config_ids(const struct it_daemon *d, char *buf, size_t cap)
{
    json_t *c = config_of(d), *l;
    size_t i, off = 0;

    buf[0] = '\0';
    json_array_foreach(json_object_get(c, "listeners"), i, l)
    {
        off += (size_t)snprintf(buf + off, off < cap ? cap - off : 0, "%s%s", i ? " " : "",
                                it_json_str(l, "id"));
    }
    json_decref(c);
    return buf;
}

/* The revisions list of d, newest first (new reference). */
static json_t *revisions_of(const struct it_daemon *d)
{
    json_t *r = it_http_expect(d, "GET", "/api/v1/config/revisions", NULL, 200);
    json_t *list = json_incref(json_object_get(r, "revisions"));

    json_decref(r);
    assert_true(json_is_array(list));
    return list;
}

/* How many of d's revisions came from the fleet. */
static int fleet_revisions(const struct it_daemon *d)
{
    json_t *list = revisions_of(d), *rev;
    size_t i;
    int n = 0;

    json_array_foreach(list, i, rev)
    {
        const char *iface = json_string_value(it_json_path(rev, "origin.interface"));

        if (iface && strcmp(iface, "fleet") == 0)
            n++;
    }
    json_decref(list);
    return n;
}

/* The port listener id of d is bound to. */
static uint16_t port_of(const struct it_daemon *d, const char *id)
{
    json_t *l = it_listener_get(d, id);
    uint16_t port = it_bound_port(l);

    json_decref(l);
    return port;
}

static void assert_echo(uint16_t port)
{
    static const char msg[] = "fleet echo round trip";

    it_assert_tcp_echo("127.0.0.1", port, msg, sizeof(msg) - 1);
}

/* fleet ls --json: the node's entry (new reference), NULL when it is not listed. */
static json_t *ls_node(struct fleet *f, const char *node)
{
    const char *const args[] = {"ls", "--wait", "2s", "--json", NULL};
    struct it_proc p;
    json_error_t jerr;
    json_t *doc, *n, *found = NULL;
    size_t i;

    it_fleet_cli(f->url, f->prefix, args, CLI_MS, &p);
    if (it_proc_exit_code(&p) != 0)
        fail_msg("fleet ls: %s: %s", it_status_str(p.status), p.err);
    doc = json_loads(p.out, 0, &jerr);
    if (!doc)
        fail_msg("fleet ls --json printed no JSON: '%s'", p.out);
    json_array_foreach(json_object_get(doc, "nodes"), i, n)
    {
        const char *name = json_string_value(json_object_get(n, "node"));

        if (name && strcmp(name, node) == 0)
            found = json_incref(n);
    }
    if (!found)
        fprintf(stderr, "# fleet ls --json: %s\n", p.out);
    json_decref(doc);
    it_proc_fini(&p);
    return found;
}

/* Polls `fleet ls` until node shows state, within timeout_ms; asserts. */
static void assert_ls_state(struct fleet *f, const char *node, const char *state, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    char last[64] = "(not listed)";

    for (;;) {
        json_t *n = ls_node(f, node);
        const char *s = n ? json_string_value(json_object_get(n, "state")) : NULL;
        bool ok = s && strcmp(s, state) == 0;

        if (s)
            snprintf(last, sizeof(last), "%s", s);
        json_decref(n);
        if (ok)
            return;
        if (it_now_ms() >= deadline)
            fail_msg("fleet ls: node %s is %s, not %s", node, last, state);
        (void)poll(NULL, 0, 200);
    }
}

/* The peer, subscribed to PREFIX.events with patterns. */
static struct it_amqp *peer_subscribe(struct fleet *f, const char *const *patterns)
{
    char *q;

    f->peer = it_amqp_open_ok(f->url);
    it_amqp_exchange(f->peer, f->events);
    q = it_amqp_subscribe(f->peer, NULL, f->events, patterns);
    free(q);
    return f->peer;
}

/* Waits for an event of routing key rk (fnmatch pattern) whose data.offset is offset (-1: any);
 * returns its body (new reference). */
static json_t *expect_event(struct it_amqp *a, const char *rk, json_int_t offset)
{
    int64_t deadline = it_now_ms() + EVENT_MS;

    for (;;) {
        struct it_amqp_msg m;
        int r = it_amqp_next_matching(a, rk, (int)(deadline - it_now_ms()), &m);

        if (r < 0)
            fail_msg("no event %s (offset %lld) within %d ms: %s", rk, (long long)offset, EVENT_MS,
                     strerror(-r));
        if (m.json &&
            (offset < 0 || json_integer_value(it_json_path(m.json, "data.offset")) == offset)) {
            json_t *j = json_incref(m.json);

            it_amqp_msg_fini(&m);
            return j;
        }
        it_amqp_msg_fini(&m);
    }
}

/* ---- the subscriber shown in docs/fleet.md ---- */

static char *subscriber_path(void)
{
    const char *root = getenv("SOCKSERV_SOURCE_ROOT");

    assert_non_null(root);
    return it_path_in(root, "scripts/fleet-subscribe.py");
}

static void test_fleet_docs_show_the_subscriber_verbatim(void **state)
{
    const char *root = getenv("SOCKSERV_SOURCE_ROOT");
    char *script_path = subscriber_path(), *doc_path, *script, *doc, *block;

    (void)state;
    doc_path = it_path_in(root, "docs/fleet.md");
    script = it_file_read(script_path, NULL);
    doc = it_file_read(doc_path, NULL);
    assert_non_null(script);
    assert_non_null(doc);
    block = malloc(strlen(script) + 32);
    assert_non_null(block);
    sprintf(block, "```python\n%s```\n", script);
    if (!strstr(doc, block))
        fail_msg("docs/fleet.md does not show scripts/fleet-subscribe.py as it is, in a ```python "
                 "block");
    free(block);
    free(doc);
    free(script);
    free(doc_path);
    free(script_path);
}

/* Starts the subscriber script with args; its stdout and stderr go to DIR/sub.out, sub.err.
 * Returns once it says it waits for events. */
static void subscriber_start(struct fleet *f, const char *pattern)
{
    char *script = subscriber_path(), *out = it_path_in(f->dir, "sub.out"),
         *err = it_path_in(f->dir, "sub.err");
    int64_t deadline = it_now_ms() + 30000;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(127);
        execl(script, script, f->url, pattern, f->prefix, (char *)NULL);
        _exit(127);
    }
    f->sub = pid;
    for (;;) {
        char *text = it_file_read(err, NULL);
        bool ready = text && strstr(text, "waiting for events");
        int status;

        if (ready) {
            free(text);
            break;
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            f->sub = 0;
            fail_msg("the subscriber ended (%s): %s", it_status_str(status), text ? text : "");
        }
        free(text);
        if (it_now_ms() >= deadline)
            fail_msg("the subscriber did not say it waits for events within 30 s");
        (void)poll(NULL, 0, IT_POLL_INTERVAL_MS);
    }
    free(script);
    free(out);
    free(err);
}

/* One line the subscriber printed: "ROUTING_KEY BODY". */
struct sub_line {
    char rk[128];
    json_t *body;
};

/* The subscriber's lines so far (at most cap); returns how many. */
static size_t subscriber_lines(struct fleet *f, struct sub_line *lines, size_t cap)
{
    char *out = it_path_in(f->dir, "sub.out"), *text = it_file_read(out, NULL), *p, *nl;
    size_t n = 0;

    for (p = text; p && (nl = strchr(p, '\n')) && n < cap; p = nl + 1) {
        char *sp = memchr(p, ' ', (size_t)(nl - p));
        json_error_t jerr;

        if (!sp)
            fail_msg("the subscriber printed a line without a space: %.*s", (int)(nl - p), p);
        snprintf(lines[n].rk, sizeof(lines[n].rk), "%.*s", (int)(sp - p), p);
        lines[n].body = json_loadb(sp + 1, (size_t)(nl - sp - 1), 0, &jerr);
        if (!lines[n].body)
            fail_msg("the subscriber printed a body that is not JSON: %.*s", (int)(nl - p), p);
        n++;
    }
    free(text);
    free(out);
    return n;
}

static void sub_lines_fini(struct sub_line *lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i].body);
}

/* The kinds node's lines show, in order, joined by spaces, in buf. Asserts each line's body is
 * the envelope (node, boot, kind, data) and that seq grows. */
static const char *node_kinds(const struct sub_line *lines, size_t n, const char *node, char *buf,
                              size_t cap)
{
    char prefix[64];
    json_int_t last = 0;
    size_t off = 0;

    snprintf(prefix, sizeof(prefix), "ev.%s.", node);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const json_t *b = lines[i].body;

        if (strncmp(lines[i].rk, prefix, strlen(prefix)) != 0)
            continue;
        assert_string_equal(it_json_str(b, "node"), node);
        assert_string_equal(it_json_str(b, "kind"), lines[i].rk + strlen(prefix));
        assert_int_equal(strlen(it_json_str(b, "boot")), 16);
        assert_non_null(it_json_path(b, "data"));
        if (it_json_int(b, "seq") <= last)
            fail_msg("%s: seq %lld after %lld", lines[i].rk, (long long)it_json_int(b, "seq"),
                     (long long)last);
        last = it_json_int(b, "seq");
        off += (size_t)snprintf(buf + off, off < cap ? cap - off : 0, "%s%s", off ? " " : "",
                                lines[i].rk + strlen(prefix));
    }
    return buf;
}

static void test_fleet_events_reach_the_subscriber_in_order(void **state)
{
    struct fleet *f = fleet_of(state);
    const char *edge[] = {"role=edge", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1", edge), *n2 = node_start(f, 1, "n2", edge);
    struct sub_line lines[64];
    char kinds[512];
    size_t n;
    json_t *j;

    /* The documented script, with its default pattern spelled out. */
    subscriber_start(f, "ev.*.listener.#");

    assert_echo(it_listener_create_port(n1, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    assert_echo(it_listener_create_port(n2, "{\"id\":\"e2\",\"service\":\"echo\",\"port\":0}"));
    j = it_http_expect(n1, "POST", "/api/v1/listeners/e1/stop", NULL, 200);
    json_decref(j);
    j = it_http_expect(n2, "DELETE", "/api/v1/listeners/e2", NULL, 204);
    json_decref(j);

    /* n1: created (state events first), then stopped: changed and state; n2: created, deleted
     * (and its state going to stopped). Wait for the last of n2's. */
    {
        int64_t deadline = it_now_ms() + EVENT_MS;
        bool done = false;

        while (!done) {
            char k1[512], k2[512];

            n = subscriber_lines(f, lines, 64);
            node_kinds(lines, n, "n1", k1, sizeof(k1));
            node_kinds(lines, n, "n2", k2, sizeof(k2));
            done = strstr(k1, "listener.changed") && strstr(k2, "listener.deleted");
            sub_lines_fini(lines, n);
            if (!done && it_now_ms() >= deadline)
                fail_msg("the subscriber did not see both nodes' events: n1 [%s] n2 [%s]", k1, k2);
            if (!done)
                (void)poll(NULL, 0, 50);
        }
    }
    n = subscriber_lines(f, lines, 64);
    for (size_t i = 0; i < n; i++) {
        /* ev.*.listener.# : listener events only, of both nodes */
        if (strncmp(lines[i].rk, "ev.n1.listener.", 15) != 0 &&
            strncmp(lines[i].rk, "ev.n2.listener.", 15) != 0)
            fail_msg("the subscriber got %s, which its pattern does not match", lines[i].rk);
    }
    node_kinds(lines, n, "n1", kinds, sizeof(kinds));
    fprintf(stderr, "# n1: %s\n", kinds);
    assert_true(strncmp(kinds, "listener.state", 14) == 0);
    assert_non_null(strstr(kinds, "listener.created"));
    assert_true(strstr(kinds, "listener.created") < strstr(kinds, "listener.changed"));
    node_kinds(lines, n, "n2", kinds, sizeof(kinds));
    fprintf(stderr, "# n2: %s\n", kinds);
    assert_true(strstr(kinds, "listener.created") < strstr(kinds, "listener.deleted"));
    /* The bodies carry the SSE event's data: the resource for created. */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(lines[i].rk, "ev.n2.listener.created") == 0)
            assert_string_equal(it_json_str(lines[i].body, "data.id"), "e2");
    }
    sub_lines_fini(lines, n);

    /* The script ends on Ctrl-C, with exit 0. */
    {
        int status;

        assert_int_equal(kill(f->sub, SIGINT), 0);
        assert_int_equal(waitpid(f->sub, &status, 0), f->sub);
        f->sub = 0;
        if (!it_status_is_exit0(status))
            fail_msg("the subscriber ended with %s on SIGINT", it_status_str(status));
    }
}

/* The envelope's properties and the per-boot sequence, on a queue bound with ev.n1.# (all of
 * n1, nothing of n2); backups stored and metric ticks too. */
static void test_fleet_events_of_one_node_gap_free_with_properties(void **state)
{
    struct fleet *f = fleet_of(state);
    const char *const pattern[] = {"ev.n1.#", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1", NULL), *n2 = node_start(f, 1, "n2", NULL);
    struct it_amqp *a = peer_subscribe(f, pattern);
    char *bdir = it_path_in(f->dir, "backups"), body[512], boot[32] = "";
    json_int_t last_seq = 0;
    int ticks = 0, reliable = 0;
    int64_t first_tick = 0, last_tick = 0;
    bool stored = false, created = false;
    uint16_t bport;
    json_t *j;

    assert_int_equal(mkdir(bdir, 0700), 0);
    it_listener_create_port(n2, "{\"id\":\"x2\",\"service\":\"echo\",\"port\":0}");
    snprintf(body, sizeof(body),
             "{\"id\":\"b1\",\"service\":\"backup\",\"port\":0,\"options\":{\"directory\":\"%s\"}}",
             bdir);
    bport = it_listener_create_port(n1, body);
    it_backup_put_ok(bport, "notes.txt", "hello fleet\n", 12, 1);
    j = it_http_expect(n1, "POST", "/api/v1/listeners/b1/stop", NULL, 200);
    json_decref(j);

    /* Read for 4 s after the last event we wait for: ticks come about once a second. */
    for (int64_t end = it_now_ms() + EVENT_MS;;) {
        struct it_amqp_msg m;
        int r = it_amqp_next(a, (int)(end - it_now_ms() > 0 ? end - it_now_ms() : 0), &m);
        const json_t *seq;
        const char *kind;

        if (r == -ETIMEDOUT)
            break;
        assert_int_equal(r, 0);
        if (strncmp(m.routing_key, "ev.n1.", 6) != 0)
            fail_msg("a queue bound with ev.n1.# got %s", m.routing_key);
        assert_non_null(m.json);
        kind = it_json_str(m.json, "kind");
        assert_string_equal(m.routing_key + 6, kind);
        assert_string_equal(m.type, kind);
        assert_string_equal(m.content_type, "application/json");
        assert_string_equal(it_json_str(m.json, "node"), "n1");
        if (!boot[0])
            snprintf(boot, sizeof(boot), "%s", it_json_str(m.json, "boot"));
        assert_string_equal(it_json_str(m.json, "boot"), boot);
        seq = json_object_get(m.json, "seq");
        if (json_is_integer(seq)) {
            char id[128];

            /* reliable: persistent, gap-free from the first one this queue saw */
            assert_int_equal(m.delivery_mode, 2);
            if (last_seq && json_integer_value(seq) != last_seq + 1)
                fail_msg("%s: seq %lld after %lld (a gap)", m.routing_key,
                         (long long)json_integer_value(seq), (long long)last_seq);
            last_seq = json_integer_value(seq);
            snprintf(id, sizeof(id), "n1:%s:%lld", boot, (long long)last_seq);
            assert_string_equal(m.message_id, id);
            reliable++;
        } else {
            assert_true(json_is_null(seq));
            assert_int_equal(m.delivery_mode, 1);
            assert_string_equal(m.expiration, "10000");
        }
        if (strcmp(kind, "metrics.tick") == 0) {
            last_tick = it_now_ms();
            if (!ticks++)
                first_tick = last_tick;
        }
        if (strcmp(kind, "backup.stored") == 0) {
            fprintf(stderr, "# backup.stored: %s\n", m.body);
            assert_non_null(strstr(m.body, "notes.txt"));
            stored = true;
        }
        if (strcmp(kind, "listener.changed") == 0 &&
            strcmp(it_json_str(m.json, "data.id"), "b1") == 0)
            created = true;
        if (stored && created && end - it_now_ms() > 4000)
            end = it_now_ms() + 4000;
        it_amqp_msg_fini(&m);
    }
    fprintf(stderr, "# n1: %d reliable events (last seq %lld), %d ticks in %lld ms\n", reliable,
            (long long)last_seq, ticks, (long long)(last_tick - first_tick));
    assert_true(stored);
    assert_true(created);
    assert_true(reliable >= 4);
    /* metrics ticks: some, at most about one a second */
    assert_true(ticks >= 2);
    assert_true((ticks - 1) * 1000 <= (last_tick - first_tick) + 1000);
    free(bdir);
}

/* ---- apply ---- */

#define CONFIG_F1 "{\"listeners\":[{\"id\":\"f1\",\"service\":\"echo\",\"port\":0}]}"

static void test_fleet_apply_by_selector_applies_on_matching_nodes(void **state)
{
    struct fleet *f = fleet_of(state);
    const char *edge_a[] = {"role=edge", "zone=a", NULL}, *edge_b[] = {"role=edge", "zone=b", NULL},
               *core[] = {"role=core", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1", edge_a), *n2 = node_start(f, 1, "n2", edge_b),
                     *n3 = node_start(f, 2, "n3", core);
    char *file = file_in(f, "f1.json", CONFIG_F1), ids[256], offset[32] = "", want[64];
    const char *const args[] = {"apply", "-f", file, "--selector", "role=edge", NULL};
    struct it_daemon *edges[] = {n1, n2};
    json_t *c3 = config_of(n3), *rows, *st;
    json_int_t rev3 = it_json_int(c3, "revision");
    struct it_proc p;
    int seen = 0, code;

    /* The table: one row per targeted node, both APPLIED at the same offset; n3 not there. */
    it_fleet_cli(f->url, f->prefix, args, CLI_MS, &p);
    fprintf(stderr, "%s%s", p.out, p.err);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_non_null(strstr(p.out, "NODE"));
    assert_non_null(strstr(p.out, "RESULT"));
    for (char *line = strtok(p.out, "\n"); line; line = strtok(NULL, "\n")) {
        char node[32], result[32], off[32], rev[32];

        if (sscanf(line, "%31s %31s %31s %31s", node, result, off, rev) != 4 ||
            strcmp(node, "NODE") == 0)
            continue;
        assert_true(strcmp(node, "n1") == 0 || strcmp(node, "n2") == 0);
        assert_string_equal(result, "APPLIED");
        if (offset[0])
            assert_string_equal(off, offset);
        snprintf(offset, sizeof(offset), "%s", off);
        seen++;
    }
    it_proc_fini(&p);
    assert_int_equal(seen, 2);

    /* On each matching node: the configuration, a revision that says fleet and the offset, the
     * offset in the state file, and the listener serving. */
    snprintf(want, sizeof(want), "offset %s", offset);
    for (int i = 0; i < 2; i++) {
        json_t *list = revisions_of(edges[i]), *newest = json_array_get(list, 0);
        char *text;

        assert_string_equal(config_ids(edges[i], ids, sizeof(ids)), "f1");
        assert_non_null(strstr(it_json_str(newest, "source"), "fleet"));
        assert_non_null(strstr(it_json_str(newest, "source"), want));
        assert_string_equal(it_json_str(newest, "origin.interface"), "fleet");
        json_decref(list);
        text = it_file_read(edges[i]->state_file, NULL);
        assert_non_null(text);
        st = json_loads(text, 0, NULL);
        assert_non_null(st);
        assert_int_equal(it_json_int(st, "fleet_offset"), strtoll(offset, NULL, 10));
        json_decref(st);
        free(text);
        assert_echo(port_of(edges[i], "f1"));
    }
    /* n3 untouched */
    assert_string_equal(config_ids(n3, ids, sizeof(ids)), "");
    json_decref(c3);
    c3 = config_of(n3);
    assert_int_equal(it_json_int(c3, "revision"), rev3);
    json_decref(c3);

    /* The same file again: unchanged, no new revision. */
    {
        json_t *list = revisions_of(n1);
        json_int_t r1 = it_json_int(json_array_get(list, 0), "revision");

        json_decref(list);

        rows = apply_json(f, file, (const char *const[]){"--selector", "role=edge", NULL}, &code);
        assert_int_equal(code, 0);
        expect_row(rows, "n1", "unchanged");
        expect_row(rows, "n2", "unchanged");
        assert_null(row_of(rows, "n3"));
        assert_int_equal(json_array_size(rows), 2);
        json_decref(rows);
        list = revisions_of(n1);
        assert_int_equal(it_json_int(json_array_get(list, 0), "revision"), r1);
        json_decref(list);
    }
    free(file);
}

/* A port in use on one node: that node answers rejected with the problem, keeps its listeners,
 * the others apply. */
static void test_fleet_apply_port_in_use_on_one_node_rejected(void **state)
{
    struct fleet *f = fleet_of(state);
    const char *edge[] = {"role=edge", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1", edge), *n2 = node_start(f, 1, "n2", edge);
    uint16_t keep = it_listener_create_port(n1, "{\"id\":\"keep\",\"service\":\"echo\","
                                                "\"port\":0}"),
             x;
    char text[512], ids[256], *fa, *fb;
    json_t *rows, *row, *before = config_of(n1), *after;
    int code, fd;

    /* a port nobody holds now; n2 takes it first, with a record for n2 alone */
    fd = it_bind(SOCK_STREAM, "::", 0, &x);
    assert_true(fd >= 0);
    close(fd);
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"id\":\"f1\",\"service\":\"echo\",\"port\":%u}]}", x);
    fa = file_in(f, "a.json", text);
    rows = apply_json(f, fa, (const char *const[]){"--node", "n2", NULL}, &code);
    assert_int_equal(code, 0);
    expect_row(rows, "n2", "applied");
    json_decref(rows);

    /* both edges: n2 keeps f1 on x and adds f2; n1 cannot bind x */
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"id\":\"f1\",\"service\":\"echo\",\"port\":%u},"
             "{\"id\":\"f2\",\"service\":\"echo\",\"port\":0}]}",
             x);
    fb = file_in(f, "b.json", text);
    rows = apply_json(f, fb, (const char *const[]){"--selector", "role=edge", NULL}, &code);
    assert_int_equal(code, 1);
    expect_row(rows, "n2", "applied");
    row = expect_row(rows, "n1", "rejected");
    assert_int_equal(it_json_int(row, "problem.status"), 409);
    assert_non_null(strstr(it_json_str(row, "problem.detail"), "in use"));
    assert_string_equal(it_json_str(row, "problem.field"), "listeners[0].port");
    json_decref(rows);

    /* n1: as it was, and serving */
    after = config_of(n1);
    assert_true(json_equal(before, after));
    json_decref(after);
    json_decref(before);
    assert_echo(keep);
    assert_string_equal(config_ids(n2, ids, sizeof(ids)), "f1 f2");
    assert_echo(x);

    /* The table says it too, with the problem's detail, and exit 1. */
    {
        const char *const args[] = {"apply", "-f", fb, "--selector", "role=edge", NULL};
        struct it_proc p;

        it_fleet_cli(f->url, f->prefix, args, CLI_MS, &p);
        fprintf(stderr, "%s", p.out);
        assert_int_equal(it_proc_exit_code(&p), 1);
        assert_non_null(strstr(p.out, "REJECTED"));
        assert_non_null(strstr(p.out, "in use"));
        assert_non_null(strstr(p.out, "UNCHANGED"));
        it_proc_fini(&p);
    }
    free(fa);
    free(fb);
}

/* Records published by hand: the replies to each, by node, within EVENT_MS and QUIET_MS after
 * the last expected. */
struct replies {
    json_t *by_node; /* node -> reply */
};

static void collect_replies(struct it_amqp *a, const char *correlation_id, size_t want,
                            struct replies *ret)
{
    int64_t deadline = it_now_ms() + EVENT_MS;

    ret->by_node = json_object();
    for (;;) {
        struct it_amqp_msg m;
        int left = (int)(deadline - it_now_ms());
        int r = it_amqp_next(a, left > 0 ? left : 0, &m);

        if (r == -ETIMEDOUT)
            break;
        assert_int_equal(r, 0);
        if (strcmp(m.correlation_id, correlation_id) == 0 && m.json) {
            const char *node = it_json_str(m.json, "node");

            json_object_set(ret->by_node, node, m.json);
            if (json_object_size(ret->by_node) == want)
                deadline = it_now_ms() + QUIET_MS;
        }
        it_amqp_msg_fini(&m);
    }
}

static void publish_record(struct fleet *f, const char *body, const char *id)
{
    char desired[128];
    struct it_amqp_pub pub = {.content_type = "application/json",
                              .message_id = id,
                              .correlation_id = id,
                              .reply_to = "amq.rabbitmq.reply-to",
                              .delivery_mode = 2,
                              .mandatory = true};

    snprintf(desired, sizeof(desired), "%s.desired", f->prefix);
    assert_int_equal(it_amqp_publish(f->peer, "", desired, body, strlen(body), &pub), 0);
}

static void expect_rejected(const struct replies *r, const char *node, const char *detail_has)
{
    json_t *reply = json_object_get(r->by_node, node);

    if (!reply) {
        char *text = json_dumps(r->by_node, JSON_COMPACT);

        fprintf(stderr, "# replies: %s\n", text);
        free(text);
        fail_msg("no reply from %s", node);
    }
    assert_string_equal(it_json_str(reply, "result"), "rejected");
    assert_true(json_is_object(it_json_path(reply, "problem")));
    fprintf(stderr, "# %s: %s\n", node, it_json_str(reply, "problem.detail"));
    if (detail_has && !strstr(it_json_str(reply, "problem.detail"), detail_has))
        fail_msg("%s's problem does not mention %s", node, detail_has);
}

static void test_fleet_bad_records_rejected_nothing_changes(void **state)
{
    struct fleet *f = fleet_of(state);
    const char *edge[] = {"role=edge", NULL}, *core[] = {"role=core", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1", edge), *n2 = node_start(f, 1, "n2", core);
    json_t *c1 = config_of(n1), *c2 = config_of(n2), *h, *after;
    struct replies r;

    it_listener_create_port(n1, "{\"id\":\"keep\",\"service\":\"echo\",\"port\":0}");
    json_decref(c1);
    c1 = config_of(n1);
    f->peer = it_amqp_open_ok(f->url);
    it_amqp_reply_to(f->peer);

    /* not JSON: nobody can tell whom it targets, so every node answers */
    publish_record(f, "{\"target\": {\"all\": tr", "bad-json");
    collect_replies(f->peer, "bad-json", 2, &r);
    expect_rejected(&r, "n1", NULL);
    expect_rejected(&r, "n2", NULL);
    json_decref(r.by_node);

    /* an unknown field: the targeted nodes answer */
    publish_record(f,
                   "{\"target\":{\"all\":true},\"config\":{\"listeners\":[]},\"colour\":\"red\","
                   "\"issued_by\":\"t@h\",\"issued_at\":\"2026-12-06T12:00:00Z\"}",
                   "bad-field");
    collect_replies(f->peer, "bad-field", 2, &r);
    expect_rejected(&r, "n1", "colour");
    expect_rejected(&r, "n2", "colour");
    json_decref(r.by_node);

    /* a bad selector: a bad target, every node answers */
    publish_record(f,
                   "{\"target\":{\"selector\":\"role\"},\"config\":{\"listeners\":[]},"
                   "\"issued_by\":\"t@h\",\"issued_at\":\"2026-12-06T12:00:00Z\"}",
                   "bad-selector");
    collect_replies(f->peer, "bad-selector", 2, &r);
    expect_rejected(&r, "n1", NULL);
    expect_rejected(&r, "n2", NULL);
    json_decref(r.by_node);

    /* a bad configuration for n1 alone: n1 answers with the REST API's problem, n2 is silent */
    publish_record(f,
                   "{\"target\":{\"nodes\":[\"n1\"]},\"config\":{\"listeners\":[{\"id\":\"x\","
                   "\"service\":\"nosuch\",\"port\":0}]},"
                   "\"issued_by\":\"t@h\",\"issued_at\":\"2026-12-06T12:00:00Z\"}",
                   "bad-config");
    collect_replies(f->peer, "bad-config", 1, &r);
    expect_rejected(&r, "n1", NULL);
    assert_string_equal(it_json_str(json_object_get(r.by_node, "n1"), "problem.field"),
                        "listeners[0].service");
    assert_null(json_object_get(r.by_node, "n2"));
    json_decref(r.by_node);

    /* nothing changed; the record that was not JSON is counted */
    after = config_of(n1);
    assert_true(json_equal(c1, after));
    json_decref(after);
    after = config_of(n2);
    assert_true(json_equal(c2, after));
    json_decref(after);
    h = it_fleet_health(n1);
    assert_true(it_json_int(h, "records_invalid") >= 1);
    json_decref(h);
    assert_echo(port_of(n1, "keep"));
    json_decref(c1);
    json_decref(c2);
}

/* A node that is offline: pending while away, OFFLINE in ls; back, it applies the newest record
 * only, once, and is SYNCED. */
static void test_fleet_offline_node_applies_newest_record_when_back(void **state)
{
    struct fleet *f = fleet_of(state);
    const char *edge[] = {"role=edge", NULL};
    const char *const sel[] = {"--selector", "role=edge", "--wait", "5s", NULL};
    const char *const pattern[] = {"ev.n2.config.applied", "ev.n2.config.unchanged",
                                   "ev.n2.config.rejected", "ev.n2.config.conflict", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1", edge), *n2 = node_start(f, 1, "n2", edge);
    char *fa = file_in(f, "a.json", CONFIG_F1), ids[256];
    char *fb = file_in(f, "b.json",
                       "{\"listeners\":[{\"id\":\"g1\",\"service\":\"echo\",\"port\":0},"
                       "{\"id\":\"g2\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}]}");
    json_t *rows, *row, *ev;
    json_int_t offset_b;
    int code, before;

    (void)n1;
    assert_ls_state(f, "n2", "SYNCED", 10000);
    before = fleet_revisions(n2);
    it_daemon_stop_clean(n2);
    assert_ls_state(f, "n2", "OFFLINE", 10000);

    rows = apply_json(f, fa, sel, &code);
    assert_int_equal(code, 5);
    expect_row(rows, "n1", "applied");
    row = expect_row(rows, "n2", "pending");
    json_decref(rows);
    rows = apply_json(f, fb, sel, &code);
    assert_int_equal(code, 5);
    row = expect_row(rows, "n1", "applied");
    offset_b = it_json_int(row, "offset");
    expect_row(rows, "n2", "pending");
    json_decref(rows);
    assert_ls_state(f, "n2", "OFFLINE", 10000);

    /* back: one config event, applied, for the newest record */
    peer_subscribe(f, pattern);
    it_fleet_node_start(
        &f->d[1],
        &(struct it_fleet_node_opts){
            .dir = f->dir, .url = f->url, .prefix = f->prefix, .node = "n2", .labels = edge});
    ev = expect_event(f->peer, "ev.n2.config.*", -1);
    assert_string_equal(it_json_str(ev, "kind"), "config.applied");
    assert_int_equal(it_json_int(ev, "data.offset"), offset_b);
    assert_int_equal(it_json_int(ev, "data.applied_offset"), offset_b);
    json_decref(ev);
    {
        struct it_amqp_msg m;

        if (it_amqp_next(f->peer, QUIET_MS, &m) == 0)
            fail_msg("n2 sent another config event: %s %s", m.routing_key, m.body);
    }
    assert_string_equal(config_ids(n2, ids, sizeof(ids)), "g1 g2");
    assert_int_equal(fleet_revisions(n2), before + 1);
    assert_ls_state(f, "n2", "SYNCED", 10000);
    assert_ls_state(f, "n1", "SYNCED", 10000);
    free(fa);
    free(fb);
}

/* --if-match with the ETag fleet ls showed, after a local change: conflict, exit 3, nothing
 * applied. */
static void test_fleet_apply_if_match_stale_etag_conflict(void **state)
{
    struct fleet *f = fleet_of(state);
    struct it_daemon *n1 = node_start(f, 0, "n1", NULL);
    char *fa = file_in(f, "a.json", CONFIG_F1), *fb, if_match[128], ids[256];
    const char *const node[] = {"--node", "n1", NULL};
    json_t *rows, *n, *before, *after;
    int code;

    fb = file_in(f, "b.json", "{\"listeners\":[{\"id\":\"g1\",\"service\":\"echo\",\"port\":0}]}");
    rows = apply_json(f, fa, node, &code);
    assert_int_equal(code, 0);
    expect_row(rows, "n1", "applied");
    json_decref(rows);

    n = ls_node(f, "n1");
    assert_non_null(n);
    snprintf(if_match, sizeof(if_match), "n1=%s", it_json_str(n, "etag"));
    json_decref(n);
    it_listener_create_port(n1, "{\"id\":\"local\",\"service\":\"echo\",\"port\":0}");
    before = config_of(n1);

    rows = apply_json(f, fb, (const char *const[]){"--node", "n1", "--if-match", if_match, NULL},
                      &code);
    assert_int_equal(code, 3);
    expect_row(rows, "n1", "conflict");
    json_decref(rows);
    after = config_of(n1);
    assert_true(json_equal(before, after));
    assert_string_equal(config_ids(n1, ids, sizeof(ids)), "f1 local");
    json_decref(before);
    json_decref(after);
    free(fa);
    free(fb);
}

/* ---- a crash between the record and the state file ---- */

static bool strace_usable(char *path, size_t cap)
{
    const char *const argv[] = {path, "-f", "-o", "/dev/null", "/bin/true", NULL};
    struct it_proc p;
    bool ok;

    if (!it_which("strace", path, cap))
        return false;
    it_run(argv, NULL, 0, 10000, &p);
    ok = it_proc_exit_code(&p) == 0;
    it_proc_fini(&p);
    return ok;
}

static void test_fleet_crash_before_state_write_applies_record_once(void **state)
{
    struct fleet *f = fleet_of(state);
    char strace[IT_PATH_MAX], log[IT_PATH_MAX], state_dir[IT_PATH_MAX], inject[96], ids[256];
    const char *const pattern[] = {"ev.n1.config.applied", "ev.n1.config.unchanged",
                                   "ev.n1.config.rejected", "ev.n1.config.conflict", NULL};
    const char *asan = getenv("ASAN_OPTIONS");
    char asan_env[512];
    const char *const env[] = {asan_env, NULL};
    const char *args[16];
    char *fa = file_in(f, "a.json", CONFIG_F1);
    json_t *rows, *ev, *l;
    json_int_t offset;
    int code, status, r;

    if (!strace_usable(strace, sizeof(strace))) {
        fprintf(stderr, "# SKIPPED: strace is missing or cannot trace here\n");
        skip();
    }
    /* LeakSanitizer cannot stop a traced process's threads: no leak check under strace. */
    snprintf(asan_env, sizeof(asan_env), "ASAN_OPTIONS=%s%sdetect_leaks=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    snprintf(state_dir, sizeof(state_dir), "%s/n1", f->dir);
    snprintf(log, sizeof(log), "%s/strace.log", f->dir);
    /* SIGKILL at the first rename, which is the state file's (the daemon renames nothing
     * before its first change): the configuration is applied in memory, neither it nor the
     * offset is on disk, no reply has gone. */
    snprintf(inject, sizeof(inject), "inject=rename,renameat,renameat2:signal=SIGKILL:when=1");
    {
        const char *const wrap[] = {
            strace, "-D",   "-f", "-o", log, "-e", "trace=rename,renameat,renameat2",
            "-e",   inject, NULL};
        size_t n = 0;

        args[n++] = "--amqp";
        args[n++] = f->url;
        args[n++] = "--node";
        args[n++] = "n1";
        args[n++] = "--amqp-prefix";
        args[n++] = f->prefix;
        args[n++] = "--amqp-heartbeat";
        args[n++] = "2";
        args[n] = NULL;
        r = it_daemon_start_wrapped(
            &f->d[0],
            &(struct it_daemon_opts){.dir = f->dir, .state_dir = state_dir, .extra_args = args},
            wrap, env);
        if (r < 0) {
            it_daemon_dump_stderr(&f->d[0]);
            fail_msg("the daemon under strace did not become ready: %s", strerror(-r));
        }
    }
    it_fleet_assert_state(&f->d[0], "connected", JOIN_MS);
    peer_subscribe(f, pattern);

    rows = apply_json(f, fa, (const char *const[]){"--node", "n1", "--wait", "4s", NULL}, &code);
    assert_int_equal(code, 5);
    expect_row(rows, "n1", "pending");
    json_decref(rows);
    assert_int_equal(it_daemon_wait_exit(&f->d[0], IT_EXIT_TIMEOUT_MS, &status), 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    {
        char *text = it_file_read(log, NULL);

        assert_non_null(text);
        fprintf(stderr, "# strace: %s", text);
        if (!strstr(text, "/listeners.json\""))
            fail_msg("the daemon was not killed at the state file's rename");
        free(text);
    }
    f->d[0].pid = 0;

    /* Started again: it reads the record again and applies it, once. */
    it_fleet_node_start(&f->d[0],
                        &(struct it_fleet_node_opts){
                            .dir = f->dir, .url = f->url, .prefix = f->prefix, .node = "n1"});
    ev = expect_event(f->peer, "ev.n1.config.*", -1);
    assert_string_equal(it_json_str(ev, "kind"), "config.applied");
    offset = it_json_int(ev, "data.offset");
    json_decref(ev);
    assert_string_equal(config_ids(&f->d[0], ids, sizeof(ids)), "f1");
    assert_int_equal(fleet_revisions(&f->d[0]), 1);
    l = it_http_expect(&f->d[0], "GET", "/api/v1/listeners", NULL, 200);
    {
        char *text = json_dumps(l, JSON_COMPACT);

        fprintf(stderr, "# after the restart (record %lld): %s\n", (long long)offset, text);
        free(text);
    }
    json_decref(l);
    assert_echo(port_of(&f->d[0], "f1"));
    /* and the same again: unchanged */
    rows = apply_json(f, fa, (const char *const[]){"--node", "n1", NULL}, &code);
    assert_int_equal(code, 0);
    expect_row(rows, "n1", "unchanged");
    json_decref(rows);
    free(fa);
}

/* ---- who may join ---- */

static void test_fleet_duplicate_node_name_refused_keeps_serving(void **state)
{
    struct fleet *f = fleet_of(state);
    struct it_daemon *first = node_start(f, 0, "n1", NULL), *second = &f->d[1];
    char *fa = file_in(f, "a.json", CONFIG_F1), state_dir[IT_PATH_MAX], ids[256];
    const char *args[12] = {"--amqp",           f->url, "--node", "n1", "--amqp-prefix", f->prefix,
                            "--amqp-heartbeat", "2",    NULL};
    json_t *h, *rows;
    int code;

    snprintf(state_dir, sizeof(state_dir), "%s/second", f->dir);
    it_daemon_start_ok(second, &(struct it_daemon_opts){
                                   .dir = f->dir, .state_dir = state_dir, .extra_args = args});
    it_fleet_assert_state(second, "refused", JOIN_MS);
    h = it_fleet_health(second);
    fprintf(stderr, "# second: %s\n", it_json_str(h, "last_error"));
    assert_non_null(strstr(it_json_str(h, "last_error"), "taken"));
    json_decref(h);
    /* its API and listeners work */
    assert_echo(it_listener_create_port(second, "{\"id\":\"s\",\"service\":\"echo\",\"port\":0}"));
    it_assert_daemon_alive(second);

    /* the first keeps its name: it alone answers for n1 */
    it_fleet_assert_state(first, "connected", 1000);
    rows = apply_json(f, fa, (const char *const[]){"--node", "n1", NULL}, &code);
    assert_int_equal(code, 0);
    expect_row(rows, "n1", "applied");
    assert_int_equal(json_array_size(rows), 1);
    json_decref(rows);
    assert_string_equal(config_ids(first, ids, sizeof(ids)), "f1");
    assert_string_equal(config_ids(second, ids, sizeof(ids)), "s");
    free(fa);
}

static void test_fleet_wrong_credentials_reported_api_fine(void **state)
{
    struct fleet *f = fleet_of(state);
    char bad[256], *at;
    const char *const ls[] = {"ls", NULL};
    struct it_proc p;
    json_t *h;

    /* the same broker, the password wrong */
    at = strchr(f->url, '@');
    assert_non_null(at);
    snprintf(bad, sizeof(bad), "amqp://guest:not-the-password%s", at);
    it_fleet_node_start(
        &f->d[0],
        &(struct it_fleet_node_opts){.dir = f->dir, .url = bad, .prefix = f->prefix, .node = "n1"});
    {
        int64_t deadline = it_now_ms() + JOIN_MS;

        for (;;) {
            const char *e;
            bool seen;

            h = it_fleet_health(&f->d[0]);
            assert_non_null(h);
            e = json_string_value(json_object_get(h, "last_error"));
            seen = e && strstr(e, "ACCESS_REFUSED");
            if (seen) {
                fprintf(stderr, "# %s: %s\n", it_json_str(h, "state"), e);
                assert_string_not_equal(it_json_str(h, "state"), "connected");
                json_decref(h);
                break;
            }
            json_decref(h);
            if (it_now_ms() >= deadline)
                fail_msg("health never said ACCESS_REFUSED");
            (void)poll(NULL, 0, 100);
        }
    }
    assert_echo(
        it_listener_create_port(&f->d[0], "{\"id\":\"e\",\"service\":\"echo\",\"port\":0}"));
    it_assert_daemon_alive(&f->d[0]);

    it_fleet_cli(bad, f->prefix, ls, CLI_MS, &p);
    assert_int_equal(it_proc_exit_code(&p), 4);
    assert_non_null(strstr(p.err, "ACCESS_REFUSED"));
    assert_null(strstr(p.err, "not-the-password"));
    it_proc_fini(&p);
}

/* ---- forget ---- */

/* `fleet forget` of a node that left: ls no longer lists it and apply --all waits for the others
 * only; a node online is refused; an unknown one is said to be; the node forgotten that joins
 * again is listed again. */
static void test_fleet_forget_node_that_left(void **state)
{
    struct fleet *f = fleet_of(state);
    const char *const all[] = {"--all", "--wait", "5s", NULL};
    const char *const forget_n2[] = {"forget", "n2", NULL};
    const char *const forget_n1[] = {"forget", "n1", NULL};
    const char *const forget_n9[] = {"forget", "n9", NULL};
    char *fa = file_in(f, "a.json", CONFIG_F1);
    struct it_daemon *n2;
    struct it_proc p;
    json_t *rows, *n;
    int code;

    node_start(f, 0, "n1", NULL);
    n2 = node_start(f, 1, "n2", NULL);
    assert_ls_state(f, "n2", "SYNCED", 10000);
    it_daemon_stop_clean(n2);
    assert_ls_state(f, "n2", "OFFLINE", 10000);

    it_fleet_cli(f->url, f->prefix, forget_n2, CLI_MS, &p);
    if (it_proc_exit_code(&p) != 0)
        fail_msg("fleet forget n2: %s: %s", it_status_str(p.status), p.err);
    assert_string_equal(p.out, "forgotten: n2\n");
    it_proc_fini(&p);
    assert_null(ls_node(f, "n2"));
    n = ls_node(f, "n1");
    assert_non_null(n);
    assert_string_equal(it_json_str(n, "state"), "SYNCED");
    json_decref(n);
    rows = apply_json(f, fa, all, &code);
    assert_int_equal(code, 0);
    assert_int_equal(json_array_size(rows), 1);
    expect_row(rows, "n1", "applied");
    json_decref(rows);

    /* online: refused, still listed */
    it_fleet_cli(f->url, f->prefix, forget_n1, CLI_MS, &p);
    assert_int_equal(it_proc_exit_code(&p), 1);
    assert_non_null(strstr(p.err, "n1 is online: stop it first (or it would join again)"));
    assert_string_equal(p.out, "");
    it_proc_fini(&p);
    assert_ls_state(f, "n1", "SYNCED", 10000);

    /* never known: said, nothing to do */
    it_fleet_cli(f->url, f->prefix, forget_n9, CLI_MS, &p);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_string_equal(p.out, "not known: n9\n");
    it_proc_fini(&p);

    /* back: listed again, and it runs what --all asked */
    node_start(f, 1, "n2", NULL);
    assert_ls_state(f, "n2", "SYNCED", 15000);
    free(fa);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fleet_setup, fleet_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_docs_show_the_subscriber_verbatim),
        T(test_fleet_events_reach_the_subscriber_in_order),
        T(test_fleet_events_of_one_node_gap_free_with_properties),
        T(test_fleet_apply_by_selector_applies_on_matching_nodes),
        T(test_fleet_apply_port_in_use_on_one_node_rejected),
        T(test_fleet_bad_records_rejected_nothing_changes),
        T(test_fleet_offline_node_applies_newest_record_when_back),
        T(test_fleet_apply_if_match_stale_etag_conflict),
        T(test_fleet_crash_before_state_write_applies_record_once),
        T(test_fleet_duplicate_node_name_refused_keeps_serving),
        T(test_fleet_wrong_credentials_reported_api_fine),
        T(test_fleet_forget_node_that_left),
    };
#undef T
    /* SOCKSERV_TEST_FILTER=PATTERN runs the tests whose name matches (by hand) */
    if (getenv("SOCKSERV_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SOCKSERV_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
