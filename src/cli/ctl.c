/*
 * `sockserv ctl`: the arguments, the help, and the verbs that are one request each (ls, get,
 * create, patch, delete, start, stop, metrics). The others live beside it: ctl_files.c (files,
 * watch, wait) and ctl_config.c (apply, diff, revisions, restore).
 */
#include "cli/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/common.h"

#define ENV_API "SOCKSERV_API"
#define ENV_TOKEN_FILE "SOCKSERV_TOKEN_FILE"
#define ENV_CACERT "SOCKSERV_CACERT"

#define VB(v) CLI_VB(v)
#define MUTATIONS                                                                                  \
    (VB(CLI_CTL_CREATE) | VB(CLI_CTL_PATCH) | VB(CLI_CTL_DELETE) | VB(CLI_CTL_START) |             \
     VB(CLI_CTL_STOP))

static const struct cli_opt opts[CLI_CTL_OPT_COUNT] = {
    [CLI_CTL_OPT_API] = {"api", 0, "URL|unix:PATH",
                         "the daemon's API: http://HOST:PORT, https://HOST:PORT or a Unix socket "
                         "(default: $SOCKSERV_API, else " CLI_CTL_DEFAULT_API ")"},
    [CLI_CTL_OPT_TOKEN_FILE] = {"token-file", 0, "FILE",
                                "send the token in FILE as 'Authorization: Bearer' (default: "
                                "$SOCKSERV_TOKEN_FILE)"},
    [CLI_CTL_OPT_CACERT] = {"cacert", 0, "FILE",
                            "trust the https API's certificate if these PEM CA certificates sign "
                            "it (default: $SOCKSERV_CACERT, else the system's)"},
    [CLI_CTL_OPT_JSON] = {"json", 0, NULL, "print the API's JSON (one document) instead of text"},
    [CLI_CTL_OPT_TIMEOUT] = {"timeout", 't', "DURATION",
                             "per request (default 10s); for wait, how long to wait. 500ms, 10s, "
                             "2m, 1h; a bare number is seconds"},
    [CLI_CTL_OPT_FILE] = {"file", 'f', "FILE", "the JSON document to send; '-' is standard input",
                          VB(CLI_CTL_CREATE) | VB(CLI_CTL_PATCH) | VB(CLI_CTL_APPLY) |
                              VB(CLI_CTL_DIFF)},
    [CLI_CTL_OPT_DRY_RUN] = {"dry-run", 0, NULL,
                             "check everything and say what would change; change nothing",
                             MUTATIONS | VB(CLI_CTL_APPLY) | VB(CLI_CTL_RESTORE)},
    [CLI_CTL_OPT_PRUNE] = {"prune", 0, NULL,
                           "FILE is the whole set: listeners it does not name are deleted",
                           VB(CLI_CTL_APPLY) | VB(CLI_CTL_DIFF)},
    [CLI_CTL_OPT_IF_MATCH] = {"if-match", 0, "ETAG",
                              "change only if the ETag is still this one (r12, '\"r12\"' or *); "
                              "else exit 3",
                              MUTATIONS | VB(CLI_CTL_APPLY) | VB(CLI_CTL_RESTORE)},
    [CLI_CTL_OPT_SET] = {"set", 0, "KEY=VALUE",
                         "set a field (repeatable): a dotted KEY reaches into options; VALUE is "
                         "JSON when it parses as JSON, else a string",
                         VB(CLI_CTL_CREATE) | VB(CLI_CTL_PATCH), true},
    [CLI_CTL_OPT_ID] = {"id", 0, "ID", "the listener's id", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_SERVICE] = {"service", 0, "SERVICE", "echo, date or backup", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_TRANSPORT] = {"transport", 0, "tcp|udp", "the transport", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_ADDRESS] = {"address", 0, "ADDR", "the address to bind", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_PORT] = {"port", 0, "N", "the port to bind (0: any)", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_MODEL] = {"model", 0, "MODEL", "the concurrency model", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_WORKERS] = {"workers", 0, "N", "the number of workers", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_DISABLED] = {"disabled", 0, NULL, "create it stopped", VB(CLI_CTL_CREATE)},
    [CLI_CTL_OPT_VERSION] = {"version", 0, "N", "an older version of the file", VB(CLI_CTL_FILES)},
    [CLI_CTL_OPT_OUTPUT] = {"output", 'o', "FILE",
                            "where to write the file ('-': standard output; default ./NAME, "
                            "which must not exist yet)",
                            VB(CLI_CTL_FILES)},
    [CLI_CTL_OPT_SINCE] = {"since", 0, "EVENT-ID", "go on after this event", VB(CLI_CTL_WATCH)},
    [CLI_CTL_OPT_ONCE] = {"once", 0, NULL, "end when the stream drops instead of reconnecting",
                          VB(CLI_CTL_WATCH)},
    [CLI_CTL_OPT_METRICS] = {"metrics", 0, NULL, "show the metrics ticks too", VB(CLI_CTL_WATCH)},
    [CLI_CTL_OPT_STATE] = {"state", 0, "STATE", "starting, running, stopping, stopped or failed",
                           VB(CLI_CTL_WAIT)},
    [CLI_CTL_OPT_LIMIT] = {"limit", 0, "N", "how many revisions (default 20)",
                           VB(CLI_CTL_REVISIONS)},
    [CLI_CTL_OPT_RECENT] = {"recent", 0, "N",
                            "first the last N events the daemon kept (1 to 100), then follow",
                            VB(CLI_CTL_WATCH)},
};

static int run_ls(struct cli_ctl_cmd *x);
static int run_get(struct cli_ctl_cmd *x);
static int run_create(struct cli_ctl_cmd *x);
static int run_patch(struct cli_ctl_cmd *x);
static int run_delete(struct cli_ctl_cmd *x);
static int run_start_stop(struct cli_ctl_cmd *x);
static int run_metrics(struct cli_ctl_cmd *x);

static int (*const runs[CLI_CTL_VERB_COUNT])(struct cli_ctl_cmd *x) = {
    [CLI_CTL_LS] = run_ls,
    [CLI_CTL_GET] = run_get,
    [CLI_CTL_CREATE] = run_create,
    [CLI_CTL_PATCH] = run_patch,
    [CLI_CTL_DELETE] = run_delete,
    [CLI_CTL_START] = run_start_stop,
    [CLI_CTL_STOP] = run_start_stop,
    [CLI_CTL_METRICS] = run_metrics,
    [CLI_CTL_FILES] = cli_ctl_run_files,
    [CLI_CTL_WATCH] = cli_ctl_run_watch,
    [CLI_CTL_WAIT] = cli_ctl_run_wait,
    [CLI_CTL_APPLY] = cli_ctl_run_apply,
    [CLI_CTL_DIFF] = cli_ctl_run_apply,
    [CLI_CTL_REVISIONS] = cli_ctl_run_revisions,
    [CLI_CTL_RESTORE] = cli_ctl_run_restore,
};

/* The positional arguments of a verb: how many at least, at most, and their names. */
#define ARGS(min, max, ...) .min_args = (min), .max_args = (max), .arg_names = {__VA_ARGS__}

static const struct cli_verb verbs[CLI_CTL_VERB_COUNT] = {
    [CLI_CTL_LS] = {"ls", "ls", "list the listeners",
                    "Lists the listeners: id, service, transport, bound address, model, state,\n"
                    "active connections, bytes in and out. The reason of a failed one follows.",
                    ARGS(0, 0, NULL)},
    [CLI_CTL_GET] = {"get", "get ID", "show one listener",
                     "Shows one listener as 'key: value' lines: its configuration, status and\n"
                     "counters, and its ETag (for --if-match).",
                     ARGS(1, 1, "ID")},
    [CLI_CTL_CREATE] =
        {"create",
         "create (-f FILE|- | --service SERVICE) [--id ID] [--transport tcp|udp]\n"
         "                    [--address ADDR] [--port N] [--model MODEL] [--workers N]\n"
         "                    [--disabled] [--set KEY=VALUE]... [--dry-run] [--if-match ETAG]",
         "create a listener (-f FILE | --service S [--port N]...)",
         "Creates a listener from a JSON object (-f FILE, '-' for standard input) and\n"
         "the flags, which override the file's fields. --set KEY=VALUE sets any field\n"
         "(a dotted key such as options.mode reaches into options; VALUE is JSON when\n"
         "it parses as JSON, else a string). --dry-run only says what would change.",
         ARGS(0, 0, NULL)},
    [CLI_CTL_PATCH] =
        {"patch",
         "patch ID (-f FILE|- | --set KEY=VALUE...) [--dry-run] "
         "[--if-match ETAG]",
         "change a listener (merge patch: -f FILE | --set KEY=VALUE...)",
         "Changes the fields of listener ID that the merge patch (RFC 7396) names:\n"
         "-f FILE, '-' for standard input, and --set KEY=VALUE (repeatable; a dotted\n"
         "KEY reaches into options; VALUE is JSON when it parses, else a string; "
         "null\nremoves an option).",
         ARGS(1, 1, "ID")},
    [CLI_CTL_DELETE] = {"delete", "delete ID [--dry-run] [--if-match ETAG]", "delete a listener",
                        "Stops and deletes listener ID.", ARGS(1, 1, "ID")},
    [CLI_CTL_START] = {"start", "start ID [--dry-run] [--if-match ETAG]", "start a listener",
                       "Starts listener ID (and keeps it enabled across restarts).",
                       ARGS(1, 1, "ID")},
    [CLI_CTL_STOP] = {"stop", "stop ID [--dry-run] [--if-match ETAG]", "stop a listener",
                      "Stops listener ID (and keeps it disabled across restarts).",
                      ARGS(1, 1, "ID")},
    [CLI_CTL_METRICS] = {"metrics", "metrics [ID]",
                         "show the counters (of listener ID, or of every listener)",
                         "Shows the counters of listener ID, or of every listener.",
                         ARGS(0, 1, "ID")},
    [CLI_CTL_FILES] = {"files", "files ID [NAME [--version N] [-o FILE|-]]",
                       "list a backup listener's files, or download one",
                       "Lists the files a backup listener keeps (with their older versions), or\n"
                       "downloads NAME (version N: an older one). The download is checked against\n"
                       "the SHA-256 the listener recorded and lands in FILE atomically (default\n"
                       "./NAME, which must not exist yet; '-' is standard output).",
                       ARGS(1, 2, "ID", "NAME")},
    [CLI_CTL_WATCH] =
        {"watch", "watch [--recent N | --since EVENT-ID] [--once] [--metrics]",
         "follow the event stream",
         "Follows the event stream: one line per event (with --json one JSON object\n"
         "per line: {\"event\",\"id\",\"data\"}). The metrics ticks are shown with\n"
         "--metrics only. --recent N first shows the last N events the daemon kept\n"
         "(metrics ticks aside), at the time they happened, and goes on after them.\n"
         "When the stream drops it reconnects and goes on after the last event seen,\n"
         "unless --once. Ctrl-C ends it (exit 0).",
         ARGS(0, 0, NULL)},
    [CLI_CTL_WAIT] = {"wait", "wait ID --state STATE [--timeout DURATION]",
                      "wait until a listener is in STATE",
                      "Waits until listener ID is in STATE (starting, running, stopping, stopped,\n"
                      "failed), for at most --timeout (default 10s), retrying while the daemon\n"
                      "cannot be reached. Exit 0 when it is, 1 when the time is up, 4 when there "
                      "is\nno such listener.",
                      ARGS(1, 1, "ID")},
    [CLI_CTL_APPLY] =
        {"apply", "apply -f FILE|- [--prune] [--dry-run] [--if-match ETAG]",
         "make the listener set what FILE says",
         "Makes the listener set what FILE says, in one atomic change, and prints\n"
         "what changed. FILE holds {\"listeners\": [...]} or an array of listeners.\n"
         "Without --prune its listeners replace those of the same id or are added,\n"
         "and the others stay; the set is read first and written back only if nobody\n"
         "changed it meanwhile (else exit 3: run it again). With --prune FILE is the\n"
         "whole set: listeners it does not name are deleted. --dry-run checks\n"
         "everything (ports included) and changes nothing.",
         ARGS(0, 0, NULL)},
    [CLI_CTL_DIFF] = {"diff", "diff -f FILE|- [--prune]", "what apply would change",
                      "What 'apply' would change (apply --dry-run).", ARGS(0, 0, NULL)},
    [CLI_CTL_REVISIONS] = {"revisions", "revisions [N] [--limit N]",
                           "the configuration's history, or revision N",
                           "Lists the configuration's revisions, newest first (--limit, default "
                           "20),\nor shows revision N: what changed and the listener set after it.",
                           ARGS(0, 1, "N")},
    [CLI_CTL_RESTORE] = {"restore", "restore N [--dry-run] [--if-match ETAG]",
                         "go back to revision N's listener set",
                         "Makes the listener set what it was after revision N, as a new revision.",
                         ARGS(1, 1, "N")},
};

const struct cli_command cli_ctl_command = {
    .name = "ctl",
    .self = {.synopsis = "[OPTIONS] VERB [ARGS]",
             .brief = "drive a running daemon through its REST API"},
    .opts = opts,
    .nopts = CLI_CTL_OPT_COUNT,
    .verbs = verbs,
    .nverbs = CLI_CTL_VERB_COUNT,
    .epilog = "Exit status:\n"
              "  0  done\n"
              "  1  failure: the API refused (400 names the field), the daemon cannot be reached,\n"
              "     a timeout, a file that cannot be read\n"
              "  2  usage error\n"
              "  3  conflict or precondition: 409 (id taken, port in use), 412 (--if-match stale)\n"
              "  4  not found: 404 (no such listener, file or revision)\n",
};

void cli_ctl_usage(void)
{
    cli_help_print(&cli_ctl_command, -1);
}

int cli_ctl_usage_error(const struct cli_ctl_cmd *x, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cli_args_usage_error(&cli_ctl_command, x && x->has_verb ? (int)x->verb : -1, "%s", msg);
}

int cli_ctl_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("sockserv ctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_CTL_EXIT_FAILURE;
}

/* ---- arguments ---- */

/* Returns CLI_ARGS_GO_ON with *x filled, else the exit status (0 after a help). */
static int parse_args(int argc, char **argv, struct cli_ctl_cmd *x)
{
    struct cli_args a;
    int r;

    r = cli_args_parse(&cli_ctl_command, argc, argv, &a);
    if (r != CLI_ARGS_GO_ON)
        return r;
    x->timeout_ms = CLI_CTL_DEFAULT_TIMEOUT_MS;
    r = cli_args_duration(&cli_ctl_command, &a, CLI_CTL_OPT_TIMEOUT, 1000, CLI_CTL_DURATION_MAX_MS,
                          &x->timeout_ms);
    if (r != 0)
        return r;
    x->verb = (enum cli_ctl_verb)a.verb;
    x->has_verb = true;
    for (int i = 0; i < a.npos; i++)
        x->args[x->nargs++] = a.pos[i];
    for (size_t i = 0; i < a.nrepeats; i++)
        if (a.repeat_opt[i] == CLI_CTL_OPT_SET)
            x->sets[x->nsets++] = a.repeats[i];
    memcpy(x->seen, a.seen, sizeof(x->seen));
    memcpy(x->val, a.val, sizeof(x->val));
    return CLI_ARGS_GO_ON;
}

/* Reads the token: the file's content without its trailing line ends. */
static int read_token(const char *path, char **ret)
{
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    int fd, r = CLI_CTL_EXIT_FAILURE;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return cli_ctl_fail("token file %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cli_ctl_fail("token file %s: not a regular file", path);
        goto out;
    }
    buf = calloc(1, CLI_CTL_TOKEN_MAX + 3);
    if (!buf) {
        cli_ctl_fail("out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, CLI_CTL_TOKEN_MAX + 2 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_ctl_fail("token file %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == CLI_CTL_TOKEN_MAX + 2)
            break;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    if (len == 0 || len > CLI_CTL_TOKEN_MAX) {
        cli_ctl_fail("token file %s: a token is 1 to %d bytes", path, CLI_CTL_TOKEN_MAX);
        goto out;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e) {
            cli_ctl_fail("token file %s: a token is visible ASCII, without blanks", path);
            goto out;
        }
    *ret = buf;
    buf = NULL;
    r = 0;
out:
    if (buf) {
        explicit_bzero(buf, CLI_CTL_TOKEN_MAX + 3);
        free(buf);
    }
    close(fd);
    return r;
}

int cli_ctl_main(int argc, char **argv)
{
    struct cli_ctl_cmd x = {0};
    struct core_err err = {0};
    const char *api, *token_file, *cacert;
    char *token = NULL;
    int r;

    r = parse_args(argc, argv, &x);
    if (r != CLI_ARGS_GO_ON)
        return r;
    x.json = x.seen[CLI_CTL_OPT_JSON];
    if (x.seen[CLI_CTL_OPT_IF_MATCH]) {
        if (cli_ctl_if_match_normalize(x.val[CLI_CTL_OPT_IF_MATCH], x.if_match, sizeof(x.if_match)))
            return cli_ctl_usage_error(&x, "--if-match: '%s' is not an ETag (r12, '\"r12\"' or *)",
                                       x.val[CLI_CTL_OPT_IF_MATCH]);
    }
    api = x.seen[CLI_CTL_OPT_API] ? x.val[CLI_CTL_OPT_API] : getenv(ENV_API);
    token_file =
        x.seen[CLI_CTL_OPT_TOKEN_FILE] ? x.val[CLI_CTL_OPT_TOKEN_FILE] : getenv(ENV_TOKEN_FILE);
    cacert = x.seen[CLI_CTL_OPT_CACERT] ? x.val[CLI_CTL_OPT_CACERT] : getenv(ENV_CACERT);
    if (cacert && !*cacert)
        cacert = NULL;
    if (cacert && access(cacert, R_OK) < 0)
        return cli_ctl_fail("--cacert %s: %s", cacert, strerror(errno));
    if (token_file && *token_file && (r = read_token(token_file, &token)) != 0)
        return r;
    /* A closed pipe on stdout is an error to report (EPIPE), not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    r = cli_ctl_client_new(
        &(struct cli_ctl_client_opts){
            .api = api, .token = token, .cacert = cacert, .timeout_ms = x.timeout_ms},
        &x.client, &err);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    if (r == -EINVAL)
        return cli_ctl_usage_error(&x, "%s", err.msg);
    if (r < 0)
        return cli_ctl_fail("%s", err.msg);
    r = runs[x.verb](&x);
    if (r == 0 && (fflush(stdout) != 0 || ferror(stdout)))
        r = cli_ctl_fail("writing the output: %s", strerror(errno));
    cli_ctl_client_free(x.client);
    return r;
}

/* ---- what the verbs share ---- */

int cli_ctl_call(struct cli_ctl_cmd *x, const struct cli_ctl_request *req,
                 struct cli_ctl_response *ret)
{
    struct core_err err = {0};
    int r = cli_ctl_request(x->client, req, ret, &err);

    if (r < 0)
        return cli_ctl_fail("%s", err.msg);
    return 0;
}

int cli_ctl_refused(struct cli_ctl_cmd *x, const struct cli_ctl_response *resp)
{
    char msg[1024];

    cli_ctl_problem_format(resp->status, resp->json, msg, sizeof(msg));
    if (resp->status == 401 && !cli_ctl_client_has_token(x->client))
        cli_ctl_fail("%s (pass --token-file FILE or set " ENV_TOKEN_FILE ")", msg);
    else
        cli_ctl_fail("%s", msg);
    return cli_ctl_exit_from_status(resp->status);
}

int cli_ctl_simple(struct cli_ctl_cmd *x, const char *method, const char *path, const char *body,
                   const char *content_type, struct cli_ctl_response *ret)
{
    const struct cli_ctl_request req = {
        .method = method,
        .path = path,
        .body = body,
        .content_type = content_type,
        .if_match = x->if_match[0] ? x->if_match : NULL,
    };
    int r = cli_ctl_call(x, &req, ret);

    if (r != 0)
        return r;
    if (ret->status < 200 || ret->status >= 300) {
        r = cli_ctl_refused(x, ret);
        cli_ctl_response_fini(ret);
        return r;
    }
    return 0;
}

int cli_ctl_print_json(const json_t *j)
{
    if (json_dumpf(j, stdout, JSON_INDENT(2)) < 0 || fputc('\n', stdout) == EOF)
        return cli_ctl_fail("writing the output: %s", strerror(errno));
    return 0;
}

int cli_ctl_print_text(char *text)
{
    int r = 0;

    if (!text)
        return cli_ctl_fail("out of memory");
    if (fputs(text, stdout) == EOF)
        r = cli_ctl_fail("writing the output: %s", strerror(errno));
    free(text);
    return r;
}

int cli_ctl_get(struct cli_ctl_cmd *x, char *path, struct cli_ctl_response *ret)
{
    int r;

    if (!path)
        return cli_ctl_fail("out of memory");
    r = cli_ctl_simple(x, "GET", path, NULL, NULL, ret);
    free(path);
    return r;
}

char *cli_ctl_path(const char *literal, ...)
{
    size_t len = 0, cap = 256;
    char *out = malloc(cap);
    const char *piece = literal;
    bool segment = false;
    va_list ap;

    va_start(ap, literal);
    for (; out && piece; piece = va_arg(ap, const char *), segment = !segment) {
        char *escaped = segment ? cli_ctl_escape(piece) : NULL;
        const char *add = segment ? escaped : piece;
        size_t n = add ? strlen(add) : 0;

        if (!add || len + n + 1 > cap) {
            char *grown = add ? realloc(out, (cap = (len + n + 1) * 2)) : NULL;

            if (!grown) {
                free(out);
                out = NULL;
                free(escaped);
                break;
            }
            out = grown;
        }
        memcpy(out + len, add, n);
        len += n;
        out[len] = '\0';
        free(escaped);
    }
    va_end(ap);
    if (!out)
        cli_ctl_fail("out of memory");
    return out;
}

/* "running on [::]:7007", "stopped", "failed: why". */
void cli_ctl_describe(const json_t *resource, char *buf, size_t len)
{
    const json_t *status = json_object_get(resource, "status");
    const char *state = json_string_value(json_object_get(status, "state"));
    const char *error = json_string_value(json_object_get(status, "error"));
    const json_t *bound = json_object_get(status, "bound");
    size_t used;

    snprintf(buf, len, "%s", state ? state : "unknown state");
    used = strlen(buf);
    if (json_array_size(bound) > 0 && used < len) {
        json_t *b;
        size_t i;

        used += (size_t)snprintf(buf + used, len - used, " on");
        json_array_foreach(bound, i, b)
        {
            if (used < len)
                used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : " ",
                                         json_string_value(b) ? json_string_value(b) : "?");
        }
    }
    if (error && *error && used < len)
        (void)snprintf(buf + used, len - used, ": %s", error);
}

/* A dry run's answer, or a refusal when the daemon did not make it one. */
int cli_ctl_dry_run_report(struct cli_ctl_cmd *x, const struct cli_ctl_response *resp)
{
    const json_t *rev = json_object_get(resp->json, "revision");

    if (!json_is_true(json_object_get(resp->json, "dry_run")))
        return cli_ctl_fail("the daemon at %s does not know --dry-run: it may have applied the "
                            "change; check with 'sockserv ctl ls'",
                            cli_ctl_client_where(x->client));
    if (x->json)
        return cli_ctl_print_json(resp->json);
    if (cli_ctl_print_text(cli_ctl_diff_render(json_object_get(resp->json, "diff"))) != 0)
        return CLI_CTL_EXIT_FAILURE;
    if (json_is_integer(rev))
        printf("dry run: nothing changed (the configuration is at revision %" JSON_INTEGER_FORMAT
               ")\n",
               json_integer_value(rev));
    else
        printf("dry run: nothing changed\n");
    return 0;
}

/* Reads a JSON document from path ("-": standard input). */
int cli_ctl_read_json(const char *path, json_t **ret)
{
    json_error_t jerr;
    json_t *j;

    if (strcmp(path, "-") == 0)
        j = json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr);
    else
        j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        if (jerr.line < 1)
            return cli_ctl_fail("%s: %s", strcmp(path, "-") == 0 ? "standard input" : path,
                                jerr.text);
        return cli_ctl_fail("%s: line %d, column %d: %s",
                            strcmp(path, "-") == 0 ? "standard input" : path, jerr.line,
                            jerr.column, jerr.text);
    }
    *ret = j;
    return 0;
}

/* ---- the one-request verbs ---- */

static int run_ls(struct cli_ctl_cmd *x)
{
    static const char *const headers[] = {"ID",    "SERVICE", "TRANSPORT", "BOUND", "MODEL",
                                          "STATE", "CONNS",   "IN",        "OUT"};
    struct cli_ctl_response resp;
    struct cli_ctl_table t;
    const json_t *list;
    json_t *l;
    size_t i;
    int r;

    r = cli_ctl_simple(x, "GET", "/api/v1/listeners", NULL, NULL, &resp);
    if (r != 0)
        return r;
    list = json_object_get(resp.json, "listeners");
    if (!json_is_array(list)) {
        cli_ctl_response_fini(&resp);
        return cli_ctl_fail("unexpected answer from %s: no listeners array",
                            cli_ctl_client_where(x->client));
    }
    if (x->json) {
        r = cli_ctl_print_json(resp.json);
        cli_ctl_response_fini(&resp);
        return r;
    }
    if (json_array_size(list) == 0) {
        printf("no listeners\n");
        cli_ctl_response_fini(&resp);
        return 0;
    }
    if (cli_ctl_table_init(&t, 9, headers) < 0) {
        cli_ctl_response_fini(&resp);
        return cli_ctl_fail("out of memory");
    }
    t.right = (1u << 6) | (1u << 7) | (1u << 8);
    json_array_foreach(list, i, l)
    {
        const json_t *status = json_object_get(l, "status"), *m = json_object_get(l, "metrics");
        const json_t *bound = json_object_get(status, "bound");
        char bound_text[256] = "", conns[32], in[32], out[32];
        const char *cells[9];
        json_t *b;
        size_t k, used = 0;

        json_array_foreach(bound, k, b)
        {
            if (used < sizeof(bound_text))
                used += (size_t)snprintf(bound_text + used, sizeof(bound_text) - used, "%s%s",
                                         k ? "," : "",
                                         json_string_value(b) ? json_string_value(b) : "?");
        }
        snprintf(conns, sizeof(conns), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(m, "connections_active")));
        cli_ctl_bytes_format((uint64_t)json_integer_value(json_object_get(m, "bytes_in")), in,
                             sizeof(in));
        cli_ctl_bytes_format((uint64_t)json_integer_value(json_object_get(m, "bytes_out")), out,
                             sizeof(out));
        cells[0] = json_string_value(json_object_get(l, "id"));
        cells[1] = json_string_value(json_object_get(l, "service"));
        cells[2] = json_string_value(json_object_get(l, "transport"));
        cells[3] = bound_text[0] ? bound_text : NULL;
        cells[4] = json_string_value(json_object_get(l, "model"));
        cells[5] = json_string_value(json_object_get(status, "state"));
        cells[6] = conns;
        cells[7] = in;
        cells[8] = out;
        if (cli_ctl_table_add(&t, cells) < 0) {
            r = cli_ctl_fail("out of memory");
            goto out;
        }
    }
    r = cli_ctl_print_text(cli_ctl_table_render(&t));
    json_array_foreach(list, i, l)
    {
        const json_t *status = json_object_get(l, "status");
        const char *error = json_string_value(json_object_get(status, "error"));

        if (r == 0 && error && *error)
            printf("%s: %s: %s\n", json_string_value(json_object_get(l, "id")),
                   json_string_value(json_object_get(status, "state")), error);
    }
out:
    cli_ctl_table_fini(&t);
    cli_ctl_response_fini(&resp);
    return r;
}

static int run_get(struct cli_ctl_cmd *x)
{
    struct cli_ctl_response resp;
    int r = cli_ctl_get(x, cli_ctl_path("/api/v1/listeners/", x->args[0], NULL), &resp);

    if (r != 0)
        return r;
    if (x->json) {
        r = cli_ctl_print_json(resp.json);
    } else {
        r = cli_ctl_print_text(cli_ctl_kv_render(resp.json, ""));
        if (r == 0 && resp.etag[0])
            printf("etag: %s\n", resp.etag);
    }
    cli_ctl_response_fini(&resp);
    return r;
}

/* Prints what a mutation answered: "VERB ID: running on ...", or the JSON. */
static int report_resource(struct cli_ctl_cmd *x, const struct cli_ctl_response *resp,
                           const char *done, const char *fallback_id)
{
    const char *id = json_string_value(json_object_get(resp->json, "id"));
    char what[512];

    if (x->json) {
        if (resp->json)
            return cli_ctl_print_json(resp->json);
        /* 204: nothing to print but what was done */
        {
            json_t *j = json_pack("{s:s, s:b}", "id", fallback_id, done, 1);
            int r = j ? cli_ctl_print_json(j) : cli_ctl_fail("out of memory");

            json_decref(j);
            return r;
        }
    }
    if (!resp->json) {
        printf("%s %s\n", done, fallback_id);
        return 0;
    }
    cli_ctl_describe(resp->json, what, sizeof(what));
    /* "stopped e1", not "stopped e1: stopped" */
    if (strcmp(what, done) == 0)
        printf("%s %s\n", done, id ? id : fallback_id);
    else
        printf("%s %s: %s\n", done, id ? id : fallback_id, what);
    return 0;
}

static const char *dry_query(const struct cli_ctl_cmd *x)
{
    return x->seen[CLI_CTL_OPT_DRY_RUN] ? "?dry_run=true" : "";
}

static int set_flag(struct cli_ctl_cmd *x, json_t *body, enum cli_ctl_opt o, const char *key,
                    bool number, unsigned long max)
{
    unsigned long v;
    json_t *j;

    if (!x->seen[o])
        return 0;
    if (number) {
        if (!cli_parse_ulong(x->val[o], 0, max, &v))
            return cli_ctl_usage_error(x, "--%s: '%s' is not a number", opts[o].name, x->val[o]);
        j = json_integer((json_int_t)v);
    } else {
        j = json_string(x->val[o]);
    }
    if (!j || json_object_set_new(body, key, j) < 0)
        return cli_ctl_fail("out of memory");
    return 0;
}

/* The body of create and patch: -f, then the flags, then each --set. */
static int build_body(struct cli_ctl_cmd *x, json_t **ret)
{
    struct core_err err = {0};
    json_t *body = NULL;
    int r;

    if (x->seen[CLI_CTL_OPT_FILE]) {
        r = cli_ctl_read_json(x->val[CLI_CTL_OPT_FILE], &body);
        if (r != 0)
            return r;
        if (!json_is_object(body)) {
            json_decref(body);
            return cli_ctl_fail("%s: a listener is a JSON object", x->val[CLI_CTL_OPT_FILE]);
        }
    } else {
        body = json_object();
        if (!body)
            return cli_ctl_fail("out of memory");
    }
    if ((r = set_flag(x, body, CLI_CTL_OPT_ID, "id", false, 0)) ||
        (r = set_flag(x, body, CLI_CTL_OPT_SERVICE, "service", false, 0)) ||
        (r = set_flag(x, body, CLI_CTL_OPT_TRANSPORT, "transport", false, 0)) ||
        (r = set_flag(x, body, CLI_CTL_OPT_ADDRESS, "address", false, 0)) ||
        (r = set_flag(x, body, CLI_CTL_OPT_PORT, "port", true, UINT32_MAX)) ||
        (r = set_flag(x, body, CLI_CTL_OPT_MODEL, "model", false, 0)) ||
        (r = set_flag(x, body, CLI_CTL_OPT_WORKERS, "workers", true, UINT32_MAX))) {
        json_decref(body);
        return r;
    }
    if (x->seen[CLI_CTL_OPT_DISABLED] && json_object_set_new(body, "enabled", json_false()) < 0) {
        json_decref(body);
        return cli_ctl_fail("out of memory");
    }
    for (size_t i = 0; i < x->nsets; i++) {
        r = cli_ctl_set_apply(body, x->sets[i], &err);
        if (r == -EINVAL) {
            json_decref(body);
            return cli_ctl_usage_error(x, "--set %s", err.msg);
        }
        if (r < 0) {
            json_decref(body);
            return cli_ctl_fail("%s", err.msg);
        }
    }
    *ret = body;
    return 0;
}

/* Sends a mutation's JSON body and reports the answer. */
static int mutate(struct cli_ctl_cmd *x, const char *method, const char *path, const json_t *body,
                  const char *content_type, const char *done, const char *id)
{
    struct cli_ctl_response resp;
    char *text = NULL;
    int r;

    if (body && !(text = json_dumps(body, JSON_COMPACT)))
        return cli_ctl_fail("out of memory");
    r = cli_ctl_simple(x, method, path, text, content_type, &resp);
    free(text);
    if (r != 0)
        return r;
    if (x->seen[CLI_CTL_OPT_DRY_RUN])
        r = cli_ctl_dry_run_report(x, &resp);
    else
        r = report_resource(x, &resp, done, id);
    cli_ctl_response_fini(&resp);
    return r;
}

static int run_create(struct cli_ctl_cmd *x)
{
    char path[64];
    json_t *body;
    int r;

    if (!x->seen[CLI_CTL_OPT_FILE] && !x->seen[CLI_CTL_OPT_SERVICE] && x->nsets == 0)
        return cli_ctl_usage_error(x, "create needs -f FILE or --service SERVICE");
    r = build_body(x, &body);
    if (r != 0)
        return r;
    snprintf(path, sizeof(path), "/api/v1/listeners%s", dry_query(x));
    r = mutate(x, "POST", path, body, NULL, "created",
               json_string_value(json_object_get(body, "id"))
                   ? json_string_value(json_object_get(body, "id"))
                   : "listener");
    json_decref(body);
    return r;
}

static int run_patch(struct cli_ctl_cmd *x)
{
    char *path;
    json_t *body;
    int r;

    if (!x->seen[CLI_CTL_OPT_FILE] && x->nsets == 0)
        return cli_ctl_usage_error(x, "patch needs -f FILE or --set KEY=VALUE");
    r = build_body(x, &body);
    if (r != 0)
        return r;
    path = cli_ctl_path("/api/v1/listeners/", x->args[0], dry_query(x), NULL);
    r = path ? mutate(x, "PATCH", path, body, "application/merge-patch+json", "changed", x->args[0])
             : CLI_CTL_EXIT_FAILURE;
    free(path);
    json_decref(body);
    return r;
}

static int run_delete(struct cli_ctl_cmd *x)
{
    char *path = cli_ctl_path("/api/v1/listeners/", x->args[0], dry_query(x), NULL);
    int r;

    if (!path)
        return CLI_CTL_EXIT_FAILURE;
    r = mutate(x, "DELETE", path, NULL, NULL, "deleted", x->args[0]);
    free(path);
    return r;
}

static int run_start_stop(struct cli_ctl_cmd *x)
{
    bool start = x->verb == CLI_CTL_START;
    char tail[64];
    char *path;
    int r;

    snprintf(tail, sizeof(tail), "/%s%s", start ? "start" : "stop", dry_query(x));
    path = cli_ctl_path("/api/v1/listeners/", x->args[0], tail, NULL);
    if (!path)
        return CLI_CTL_EXIT_FAILURE;
    r = mutate(x, "POST", path, NULL, NULL, start ? "started" : "stopped", x->args[0]);
    free(path);
    return r;
}

static int run_metrics(struct cli_ctl_cmd *x)
{
    struct cli_ctl_response resp;
    char *path = x->nargs ? cli_ctl_path("/api/v1/listeners/", x->args[0], "/metrics", NULL)
                          : strdup("/api/v1/metrics");
    const char *id;
    json_t *m;
    int r;

    r = cli_ctl_get(x, path, &resp);
    if (r != 0)
        return r;
    if (x->json) {
        r = cli_ctl_print_json(resp.json);
    } else if (x->nargs) {
        r = cli_ctl_print_text(cli_ctl_kv_render(resp.json, ""));
    } else {
        json_object_foreach(json_object_get(resp.json, "listeners"), id, m)
        {
            printf("%s\n", id);
            r = cli_ctl_print_text(cli_ctl_kv_render(m, "  "));
            if (r != 0)
                break;
        }
    }
    cli_ctl_response_fini(&resp);
    return r;
}
