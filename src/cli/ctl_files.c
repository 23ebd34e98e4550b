/*
 * `sockserv ctl` verbs that go on for a while: files (a listing, or a download checked against
 * the recorded SHA-256 and renamed into place), watch (the event stream, reconnecting after the
 * last event seen) and wait (a listener's state, polled until a deadline).
 */
#include "cli/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cli/common.h"

#define WAIT_POLL_MS 100
#define RETRY_DEFAULT_MS 2000
#define RETRY_MAX_MS 30000

/* ---- files ---- */

static int list_files(struct cli_ctl_cmd *x, const json_t *files)
{
    static const char *const headers[] = {"NAME",     "VERSION", "SIZE",  "STORED",
                                          "VERIFIED", "COPY",    "SHA256"};
    struct cli_ctl_table t;
    const json_t *f;
    size_t i;
    int r = 0;

    if (json_array_size(files) == 0) {
        printf("no files\n");
        return 0;
    }
    if (cli_ctl_table_init(&t, 7, headers) < 0)
        return cli_ctl_fail("out of memory");
    t.right = (1u << 1) | (1u << 2);
    json_array_foreach(files, i, f)
    {
        const json_t *versions = json_object_get(f, "versions");
        const char *name = json_string_value(json_object_get(f, "name"));

        /* the current copy, then its older versions, newest first, as the listing gives them */
        for (size_t k = 0; k <= json_array_size(versions); k++) {
            const json_t *c = k == 0 ? f : json_array_get(versions, k - 1);
            char version[32], size[32];
            const char *cells[7];

            snprintf(version, sizeof(version), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(c, "version")));
            cli_ctl_bytes_format((uint64_t)json_integer_value(json_object_get(c, "size")), size,
                                 sizeof(size));
            cells[0] = name;
            cells[1] = version;
            cells[2] = size;
            cells[3] = json_string_value(json_object_get(c, "stored"));
            cells[4] = json_is_true(json_object_get(c, "verified")) ? "yes" : "no";
            cells[5] = k == 0 ? "current" : "old";
            cells[6] = json_string_value(json_object_get(c, "sha256"));
            if (cli_ctl_table_add(&t, cells) < 0) {
                r = cli_ctl_fail("out of memory");
                goto out;
            }
        }
    }
    r = cli_ctl_print_text(cli_ctl_table_render(&t));
out:
    cli_ctl_table_fini(&t);
    (void)x;
    return r;
}

/* The SHA-256 the listing records for name's version (0: the current copy); NULL if none. */
static const char *recorded_sha(const json_t *files, const char *name, unsigned long version)
{
    const json_t *f, *v;
    size_t i, k;

    json_array_foreach(files, i, f)
    {
        const char *n = json_string_value(json_object_get(f, "name"));

        if (!n || strcmp(n, name) != 0)
            continue;
        if (version == 0 ||
            (unsigned long)json_integer_value(json_object_get(f, "version")) == version)
            return json_string_value(json_object_get(f, "sha256"));
        json_array_foreach(json_object_get(f, "versions"), k, v)
        {
            if ((unsigned long)json_integer_value(json_object_get(v, "version")) == version)
                return json_string_value(json_object_get(v, "sha256"));
        }
    }
    return NULL;
}

/* A download: where it goes (cli/common.h) and what it hashes on the way. */
struct sink {
    struct cli_sink out;
    EVP_MD_CTX *md;
    uint64_t size;
    int err; /* errno of a failed write */
};

static int on_file_bytes(void *ctx, const char *buf, size_t len)
{
    struct sink *s = ctx;

    if (EVP_DigestUpdate(s->md, buf, len) != 1) {
        s->err = ENOMEM;
        return -1;
    }
    s->size += len;
    while (len > 0) {
        ssize_t n = write(s->out.fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s->err = errno;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int download(struct cli_ctl_cmd *x, const json_t *files)
{
    const char *id = x->args[0], *name = x->args[1];
    const char *out = x->seen[CLI_CTL_OPT_OUTPUT] ? x->val[CLI_CTL_OPT_OUTPUT] : name;
    struct sink s = {.out.fd = -1};
    struct cli_ctl_response resp = {0};
    unsigned long version = 0;
    unsigned char digest[EVP_MAX_MD_SIZE];
    char query[48] = "", hex[2 * EVP_MAX_MD_SIZE + 1];
    const char *want;
    unsigned dlen = 0;
    char *path = NULL;
    int r;

    if (x->seen[CLI_CTL_OPT_VERSION] &&
        !cli_parse_ulong(x->val[CLI_CTL_OPT_VERSION], 0, UINT32_MAX, &version))
        return cli_ctl_usage_error(x, "--version: '%s' is not a version number",
                                   x->val[CLI_CTL_OPT_VERSION]);
    if (!x->seen[CLI_CTL_OPT_OUTPUT] && strchr(name, '/'))
        return cli_ctl_usage_error(x, "'%s' has a '/': choose where to write with -o FILE", name);
    if (version)
        snprintf(query, sizeof(query), "?version=%lu", version);
    want = recorded_sha(files, name, version);
    s.md = EVP_MD_CTX_new();
    if (!s.md || EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) {
        r = cli_ctl_fail("out of memory");
        goto out;
    }
    path = cli_ctl_path("/api/v1/listeners/", id, "/files/", name, query, NULL);
    if (!path) {
        r = CLI_CTL_EXIT_FAILURE;
        goto out;
    }
    r = cli_sink_open(&s.out, "ctl", out, x->seen[CLI_CTL_OPT_OUTPUT]);
    if (r != 0)
        goto out;
    r = cli_ctl_call(x,
                     &(struct cli_ctl_request){.method = "GET",
                                               .path = path,
                                               .accept = "application/octet-stream",
                                               .timeout_ms = -1,
                                               .on_body = on_file_bytes,
                                               .ctx = &s},
                     &resp);
    if (r != 0)
        goto out;
    if (resp.status != 200) {
        r = cli_ctl_refused(x, &resp);
        goto out;
    }
    if (resp.stopped) {
        r = cli_ctl_fail("writing %s: %s", s.out.is_stdout ? "standard output" : s.out.path,
                         strerror(s.err ? s.err : EIO));
        goto out;
    }
    if (EVP_DigestFinal_ex(s.md, digest, &dlen) != 1) {
        r = cli_ctl_fail("out of memory");
        goto out;
    }
    for (unsigned i = 0; i < dlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    if (want && strlen(want) == 2 * (size_t)dlen && strcmp(want, hex) != 0) {
        r = cli_ctl_fail("%s: the content's SHA-256 is %s, the listener recorded %s; nothing "
                         "was written",
                         name, hex, want);
        goto out;
    }
    r = cli_sink_commit(&s.out, "ctl");
    if (r != 0)
        goto out;
    if (x->json) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:s, s:s, s:b}", "name", name, "version",
                              (json_int_t)version, "size", (json_int_t)s.size, "sha256", hex,
                              "path", s.out.is_stdout ? "-" : s.out.path, "verified", want != NULL);

        r = s.out.is_stdout ? 0 : (j ? cli_ctl_print_json(j) : cli_ctl_fail("out of memory"));
        json_decref(j);
    } else {
        fprintf(s.out.is_stdout ? stderr : stdout,
                "saved %s (%" PRIu64 " bytes, sha256 %s%s)%s%s\n", name, s.size, hex,
                want ? ", verified" : "", s.out.is_stdout ? "" : " to ",
                s.out.is_stdout ? "" : s.out.path);
    }
out:
    if (r != 0)
        cli_sink_abort(&s.out);
    cli_ctl_response_fini(&resp);
    EVP_MD_CTX_free(s.md);
    free(path);
    return r;
}

int cli_ctl_run_files(struct cli_ctl_cmd *x)
{
    struct cli_ctl_response resp;
    int r;

    if (x->nargs < 2 && (x->seen[CLI_CTL_OPT_VERSION] || x->seen[CLI_CTL_OPT_OUTPUT]))
        return cli_ctl_usage_error(x, "--version and -o go with a file NAME");
    r = cli_ctl_get(x, cli_ctl_path("/api/v1/listeners/", x->args[0], "/files", NULL), &resp);
    if (r != 0)
        return r;
    if (x->nargs == 2)
        r = download(x, json_object_get(resp.json, "files"));
    else if (x->json)
        r = cli_ctl_print_json(resp.json);
    else
        r = list_files(x, json_object_get(resp.json, "files"));
    cli_ctl_response_fini(&resp);
    return r;
}

/* ---- watch ---- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool should_stop(void *ctx)
{
    (void)ctx;
    return interrupted != 0;
}

struct watch {
    struct cli_ctl_cmd *x;
    struct cli_ctl_sse sse;
    bool metrics;    /* show the metrics ticks */
    bool got_bytes;  /* this connection delivered something */
    bool out_failed; /* stdout is gone */
};

/* The local time of day of when ("2026-12-06T23:10:00.123Z"), or of now when it is NULL. */
static void stamp(char *buf, size_t len, const char *when)
{
    time_t now = time(NULL);
    struct tm tm = {0};

    if (when && strptime(when, "%Y-%m-%dT%H:%M:%S", &tm))
        now = timegm(&tm);
    if (localtime_r(&now, &tm))
        strftime(buf, len, "%H:%M:%S", &tm);
    else
        snprintf(buf, len, "--:--:--");
}

static void print_event_text(const char *event, const json_t *data, const char *when)
{
    const char *id = json_string_value(json_object_get(data, "id"));
    char t[16], what[512];

    stamp(t, sizeof(t), when);
    if (strcmp(event, "snapshot") == 0) {
        const json_t *list = json_object_get(data, "listeners"), *l;
        size_t i;

        printf("%s snapshot: %zu listener%s\n", t, json_array_size(list),
               json_array_size(list) == 1 ? "" : "s");
        json_array_foreach(list, i, l)
        {
            cli_ctl_describe(l, what, sizeof(what));
            printf("%s   %s: %s\n", t, json_string_value(json_object_get(l, "id")), what);
        }
    } else if (strcmp(event, "listener.created") == 0 || strcmp(event, "listener.changed") == 0) {
        cli_ctl_describe(data, what, sizeof(what));
        printf("%s %s %s: %s\n", t, event, id ? id : "?", what);
    } else if (strcmp(event, "listener.deleted") == 0) {
        printf("%s %s %s\n", t, event, id ? id : "?");
    } else if (strcmp(event, "config.revision") == 0) {
        const char *summary = json_string_value(json_object_get(data, "summary"));
        const char *source = json_string_value(json_object_get(data, "source"));

        printf("%s %s %" JSON_INTEGER_FORMAT ": %s (%s)\n", t, event,
               json_integer_value(json_object_get(data, "revision")), summary ? summary : "?",
               source ? source : "?");
    } else if (strcmp(event, "listener.state") == 0) {
        const char *state = json_string_value(json_object_get(data, "state"));
        const char *prev = json_string_value(json_object_get(data, "previous"));
        const char *error = json_string_value(json_object_get(data, "error"));

        printf("%s %s %s: %s -> %s%s%s\n", t, event, id ? id : "?", prev ? prev : "?",
               state ? state : "?", error ? ": " : "", error ? error : "");
    } else if (strcmp(event, "metrics") == 0) {
        const char *lid;
        json_t *m;

        json_object_foreach(json_object_get(data, "listeners"), lid, m)
        {
            const json_t *rates = json_object_get(m, "rates");
            char in[32], out[32];

            cli_ctl_bytes_format((uint64_t)json_number_value(json_object_get(rates, "bytes_in")),
                                 in, sizeof(in));
            cli_ctl_bytes_format((uint64_t)json_number_value(json_object_get(rates, "bytes_out")),
                                 out, sizeof(out));
            printf("%s metrics %s: %" JSON_INTEGER_FORMAT " connections, in %s/s, out %s/s\n", t,
                   lid, json_integer_value(json_object_get(m, "connections_active")), in, out);
        }
    } else {
        char *compact = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);

        printf("%s %s %s\n", t, event, compact ? compact : "");
        free(compact);
    }
}

/* Prints one event (data: a new reference, taken); when is its time, NULL for now. 1 when
 * standard output is gone, else 0. */
static int print_event(struct watch *w, const char *id, const char *event, json_t *d,
                       const char *when)
{
    if (strcmp(event, "metrics") != 0 || w->metrics) {
        if (w->x->json) {
            json_t *line = json_pack("{s:s, s:s, s:O}", "event", event, "id", id, "data", d);
            char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;

            if (text)
                printf("%s\n", text);
            free(text);
            json_decref(line);
        } else {
            print_event_text(event, d, when);
        }
    }
    json_decref(d);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        w->out_failed = true;
        return 1;
    }
    return 0;
}

static int on_event(void *ctx, const char *id, const char *event, const char *data)
{
    json_t *d = json_loads(data, JSON_DECODE_ANY, NULL);

    return print_event(ctx, id, event, d ? d : json_string(data), NULL);
}

/*
 * --recent N: prints the last N events the daemon kept, oldest first, and makes the stream go
 * on after the newest of them. Returns 0 or the exit status of a failure.
 */
static int print_recent(struct watch *w)
{
    struct cli_ctl_cmd *x = w->x;
    struct cli_ctl_response resp = {0};
    unsigned long n;
    const json_t *list;
    char path[64];
    int r;

    if (!cli_parse_ulong(x->val[CLI_CTL_OPT_RECENT], 1, 100, &n))
        return cli_ctl_usage_error(x, "--recent: '%s' is not a number from 1 to 100",
                                   x->val[CLI_CTL_OPT_RECENT]);
    snprintf(path, sizeof(path), "/api/v1/events/recent?limit=%lu", n);
    r = cli_ctl_call(x, &(struct cli_ctl_request){.method = "GET", .path = path}, &resp);
    if (r != 0)
        return r;
    if (resp.status != 200) {
        r = cli_ctl_refused(x, &resp);
        cli_ctl_response_fini(&resp);
        return r;
    }
    list = json_object_get(resp.json, "events");
    for (size_t i = json_array_size(list); i > 0 && r == 0; i--) {
        const json_t *ev = json_array_get(list, i - 1);
        char id[32];

        snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(ev, "id")));
        snprintf(w->sse.last_id, sizeof(w->sse.last_id), "%s", id);
        if (print_event(w, id, json_string_value(json_object_get(ev, "event")),
                        json_incref(json_object_get(ev, "data")),
                        json_string_value(json_object_get(ev, "time"))) != 0)
            r = cli_ctl_fail("writing the output: %s", strerror(errno));
    }
    cli_ctl_response_fini(&resp);
    return r;
}

static int on_stream_bytes(void *ctx, const char *buf, size_t len)
{
    struct watch *w = ctx;

    w->got_bytes = true;
    return cli_ctl_sse_feed(&w->sse, buf, len) != 0 ? -1 : 0;
}

/* Sleeps ms, or less when interrupted. */
static void pause_interruptible(int64_t ms)
{
    int64_t deadline = core_now_ms() + ms;

    while (!interrupted && core_now_ms() < deadline)
        (void)poll(NULL, 0, cli_remaining_ms(deadline) > 100 ? 100 : cli_remaining_ms(deadline));
}

int cli_ctl_run_watch(struct cli_ctl_cmd *x)
{
    struct watch w = {.x = x, .metrics = x->seen[CLI_CTL_OPT_METRICS]};
    struct sigaction sa = {.sa_handler = on_signal};
    bool once = x->seen[CLI_CTL_OPT_ONCE], ever_connected = false, said_lost = false;
    int r = 0;

    cli_ctl_sse_init(&w.sse, on_event, &w);
    if (x->seen[CLI_CTL_OPT_SINCE] && x->seen[CLI_CTL_OPT_RECENT])
        return cli_ctl_usage_error(x, "--recent and --since do not go together");
    if (x->seen[CLI_CTL_OPT_SINCE])
        snprintf(w.sse.last_id, sizeof(w.sse.last_id), "%s", x->val[CLI_CTL_OPT_SINCE]);
    if (x->seen[CLI_CTL_OPT_RECENT] && (r = print_recent(&w)) != 0) {
        cli_ctl_sse_fini(&w.sse);
        return r;
    }
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);

    while (!interrupted) {
        struct cli_ctl_response resp;
        struct core_err err = {0};
        int64_t delay;
        int q;

        w.got_bytes = false;
        cli_ctl_sse_reset(&w.sse);
        q = cli_ctl_request(x->client,
                            &(struct cli_ctl_request){.method = "GET",
                                                      .path = "/api/v1/events",
                                                      .accept = "text/event-stream",
                                                      .last_event_id = w.sse.last_id,
                                                      .timeout_ms = -1,
                                                      .on_body = on_stream_bytes,
                                                      .ctx = &w,
                                                      .should_stop = should_stop},
                            &resp, &err);
        if (interrupted) {
            if (q == 0)
                cli_ctl_response_fini(&resp);
            break;
        }
        if (w.out_failed) {
            if (q == 0)
                cli_ctl_response_fini(&resp);
            r = cli_ctl_fail("writing the output: %s", strerror(errno));
            break;
        }
        if (q == 0 && resp.status != 200 && resp.status != 0) {
            /* the daemon stopping answers 503: wait for it to come back, once followed */
            if (!ever_connected || once || resp.status < 500) {
                r = cli_ctl_refused(x, &resp);
                cli_ctl_response_fini(&resp);
                break;
            }
        } else if (q == 0 && resp.stopped) {
            /* on_body refused the stream: a line over the limit, or out of memory */
            cli_ctl_response_fini(&resp);
            r = cli_ctl_fail("the event stream from %s cannot be read",
                             cli_ctl_client_where(x->client));
            break;
        }
        if (w.got_bytes) {
            ever_connected = true;
            said_lost = false;
        }
        if (q == 0)
            cli_ctl_response_fini(&resp);
        if (!ever_connected || once) {
            if (q < 0)
                r = cli_ctl_fail("%s", err.msg);
            break;
        }
        if (!said_lost) {
            fprintf(stderr, "sockserv ctl: the event stream ended%s%s; reconnecting\n",
                    q < 0 ? ": " : "", q < 0 ? err.msg : "");
            said_lost = true;
        }
        delay = w.sse.retry_ms >= 0 ? w.sse.retry_ms : RETRY_DEFAULT_MS;
        pause_interruptible(delay > RETRY_MAX_MS ? RETRY_MAX_MS : delay);
    }
    cli_ctl_sse_fini(&w.sse);
    if (interrupted)
        r = 0;
    return r;
}

/* ---- wait ---- */

static const char *const states[] = {"starting", "running", "stopping", "stopped", "failed"};

int cli_ctl_run_wait(struct cli_ctl_cmd *x)
{
    const char *want = x->val[CLI_CTL_OPT_STATE];
    int64_t deadline = core_now_ms() + x->timeout_ms;
    char last[600] = "", what[512], dur[32];
    bool known = false;
    char *path;
    int r = CLI_CTL_EXIT_FAILURE;

    if (!want)
        return cli_ctl_usage_error(x, "wait needs --state STATE");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]) && !known; i++)
        known = strcmp(states[i], want) == 0;
    if (!known)
        return cli_ctl_usage_error(
            x, "--state: '%s' is not starting, running, stopping, stopped or failed", want);
    path = cli_ctl_path("/api/v1/listeners/", x->args[0], NULL);
    if (!path)
        return CLI_CTL_EXIT_FAILURE;
    cli_ctl_duration_format(x->timeout_ms, dur, sizeof(dur));
    for (;;) {
        int64_t left = deadline - core_now_ms();
        struct cli_ctl_response resp;
        struct core_err err = {0};
        const char *state;

        if (cli_ctl_request(x->client,
                            &(struct cli_ctl_request){.method = "GET",
                                                      .path = path,
                                                      .timeout_ms = left > 1000 ? left : 1000},
                            &resp, &err) < 0) {
            /* the daemon may be starting or restarting: try again until the deadline */
            snprintf(last, sizeof(last), "%s", err.msg);
        } else if (resp.status < 200 || resp.status >= 300) {
            r = cli_ctl_refused(x, &resp);
            cli_ctl_response_fini(&resp);
            break;
        } else {
            state =
                json_string_value(json_object_get(json_object_get(resp.json, "status"), "state"));
            if (state && strcmp(state, want) == 0) {
                if (x->json)
                    r = cli_ctl_print_json(resp.json);
                else
                    r = printf("%s: %s\n", x->args[0], state) < 0 ? CLI_CTL_EXIT_FAILURE : 0;
                cli_ctl_response_fini(&resp);
                break;
            }
            cli_ctl_describe(resp.json, what, sizeof(what));
            snprintf(last, sizeof(last), "state is %s", what);
            cli_ctl_response_fini(&resp);
        }
        if (core_now_ms() >= deadline) {
            r = cli_ctl_fail("timed out after %s: %s", dur, last);
            break;
        }
        (void)poll(NULL, 0,
                   cli_remaining_ms(deadline) > WAIT_POLL_MS ? WAIT_POLL_MS
                                                             : cli_remaining_ms(deadline));
    }
    free(path);
    return r;
}
