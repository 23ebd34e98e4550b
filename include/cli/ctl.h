#ifndef CLI_CTL_H
#define CLI_CTL_H

/*
 * `sockserv ctl`: the control API from the command line (libcurl). One verb per call: ls, get,
 * create, patch, delete, start, stop, metrics, files, watch, wait, apply, diff, revisions,
 * restore. Results go to stdout (a table or "key: value" lines, or with --json the API's JSON),
 * messages to stderr.
 *
 * Exit status, which scripts may rely on:
 *   0  done
 *   1  failure: the API refused the request (400 with the field named, 401, 403, 5xx), the
 *      daemon could not be reached (the message says where it tried), a timeout, a bad file
 *   2  usage error: unknown verb or option, a missing or malformed argument
 *   3  conflict or failed precondition: 409 (id taken, port in use), 412 (--if-match stale)
 *   4  not found: 404 (no such listener, file or revision)
 *
 * This header is also the contract of the pieces the verbs are built from: the pure helpers
 * (ctl_fmt.c: durations, tables, diffs, the merge of a file with the current set, the SSE
 * parser) that the unit tests drive, and the HTTP client (ctl_http.c). One thread: the
 * command's.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/common.h"
#include "core/err.h"

#define CLI_CTL_EXIT_OK 0
#define CLI_CTL_EXIT_FAILURE 1
#define CLI_CTL_EXIT_USAGE 2
#define CLI_CTL_EXIT_CONFLICT 3
#define CLI_CTL_EXIT_NOT_FOUND 4

#define CLI_CTL_DEFAULT_API "http://127.0.0.1:8400"
#define CLI_CTL_DEFAULT_TIMEOUT_MS 10000
#define CLI_CTL_DURATION_MAX_MS (24LL * 3600 * 1000)
#define CLI_CTL_TOKEN_MAX 4096
#define CLI_CTL_STREAM_SILENCE_S 45 /* the daemon sends a keep-alive every 15 s */

/*
 * sockserv ctl [--api URL|unix:PATH] [--token-file FILE] [--cacert FILE] [--json]
 *              [--timeout DURATION]
 *              VERB [ARGS] [OPTIONS]
 * Takes the arguments after "sockserv" (argv[0] is "ctl"); returns the exit status above.
 */
int cli_ctl_main(int argc, char **argv);

/* Prints the verb's help to stdout. */
void cli_ctl_usage(void);

/* The verb's arguments, options and sub-verbs, for cli_args_parse() (cli/common.h). */
extern const struct cli_command cli_ctl_command;

/* ---- pure helpers (ctl_fmt.c) ---- */

/*
 * Parses a duration: a whole number and a unit, "ms", "s", "m" or "h" ("500ms", "10s", "2m");
 * a bare number is seconds. From 1 ms to CLI_CTL_DURATION_MAX_MS. Returns 0 with *ret_ms, or
 * -EINVAL.
 */
int cli_ctl_duration_parse(const char *text, int64_t *ret_ms);

/* Writes ms the way a user would write it: "2m", "10s", "1500ms". */
void cli_ctl_duration_format(int64_t ms, char *buf, size_t len);

/* The exit status of an HTTP answer's status: 2xx 0, 404 4, 409 and 412 3, anything else 1. */
int cli_ctl_exit_from_status(long status);

/*
 * One line for a refusal: a problem+json body's "detail" (else its "title", else "HTTP
 * STATUS"), then " (field: F)" and " (listener: L)" when the body names them. body may be NULL
 * (not JSON). Always NUL-terminates buf.
 */
void cli_ctl_problem_format(long status, const json_t *body, char *buf, size_t len);

/*
 * An If-Match value as typed ("r12", "\"r12\"", "*", "W/\"x\"", or several separated by
 * commas) made a header value: bare tags are quoted. Returns 0, -EINVAL for an empty or
 * malformed value, -ENOSPC when buf is too small.
 */
int cli_ctl_if_match_normalize(const char *text, char *buf, size_t len);

/*
 * Applies "KEY=VALUE" to obj: KEY is a member name or a dotted path ("options.mode"), whose
 * missing objects are created; VALUE is taken as JSON when it parses as JSON ("7000", "true",
 * "null", "{\"a\":1}", "\"07\""), else as a string. Returns 0, or -EINVAL with err (no '=', an
 * empty key or path segment, a path through a member that is not an object).
 */
int cli_ctl_set_apply(json_t *obj, const char *assignment, struct core_err *err);

/*
 * The listener set of a desired-state file: doc is {"listeners": [...]} or a bare array; each
 * listener an object with a non-empty string "id", no id twice. Returns 0 with *ret (the array,
 * new reference), or -EINVAL with err naming the place ("listeners[2].id").
 */
int cli_ctl_desired_parse(const json_t *doc, json_t **ret, struct core_err *err);

/*
 * The set apply sends without --prune: current's listeners (their "status" and "metrics"
 * dropped) with each of file's replacing the one of the same id, or added after them. Both are
 * arrays of listener objects. Returns a new array, or NULL when out of memory.
 */
json_t *cli_ctl_desired_merge(const json_t *current, const json_t *file);

/*
 * A diff (the API's [{"id","action","fields","live"}...]) as lines: "+ ID (create)",
 * "~ ID: f1, f2" (then " (live)" or " (restart)" when "live" says), "- ID (delete)"; "no changes"
 * for an empty or absent diff. Returns malloc'd text ending in a newline, or NULL (ENOMEM).
 */
char *cli_ctl_diff_render(const json_t *diff);

/*
 * A JSON object as "key: value" lines: nested objects flattened to dotted keys ("status.state"),
 * strings bare, null and empty arrays "-", arrays of scalars joined with ", ", other arrays as
 * compact JSON; each line prefixed by indent. Returns malloc'd text, or NULL (ENOMEM).
 */
char *cli_ctl_kv_render(const json_t *obj, const char *indent);

/* Bytes for people: "512 B", "1.5 KiB", "12.0 MiB". */
void cli_ctl_bytes_format(uint64_t n, char *buf, size_t len);

/* A table of text cells, rendered with columns aligned on two spaces; the cells are copied. */
struct cli_ctl_table {
    size_t ncols, nrows; /* nrows counts the header */
    unsigned right;      /* bit i: column i aligned right (numbers) */
    char **cells;        /* nrows * ncols */
};

/* Starts a table with ncols headers. Returns 0 or -ENOMEM. Release with cli_ctl_table_fini(). */
int cli_ctl_table_init(struct cli_ctl_table *t, size_t ncols, const char *const *headers);

/* Adds a row of ncols cells (NULL is shown as "-"). Returns 0 or -ENOMEM. */
int cli_ctl_table_add(struct cli_ctl_table *t, const char *const *cells);

/* The table as text, one line per row, no trailing blanks. malloc'd, or NULL (ENOMEM). */
char *cli_ctl_table_render(const struct cli_ctl_table *t);

void cli_ctl_table_fini(struct cli_ctl_table *t);

/*
 * A server-sent events parser (the WHATWG event-stream format): lines end in LF, CRLF or CR;
 * "field: value" lines; comments (":...") ignored; a blank line dispatches the event gathered
 * (data lines joined with LF), named "message" when no "event:" came. "id:" sets the last event
 * id, which stays across events (the one to send back as Last-Event-ID); "retry:" the
 * reconnection delay.
 */
typedef int (*cli_ctl_sse_event_fn)(void *ctx, const char *id, const char *event, const char *data);

#define CLI_CTL_SSE_LINE_MAX (16 * 1024 * 1024)

struct cli_ctl_sse {
    cli_ctl_sse_event_fn fn;
    void *ctx;
    char *line; /* the line being read */
    size_t line_len, line_cap;
    char *data; /* the event's data so far */
    size_t data_len, data_cap;
    bool has_data;
    bool skip_lf; /* the last chunk ended in CR: an LF opening the next one ends nothing */
    char event[128];
    char last_id[128];
    long retry_ms; /* -1 until the stream sets it */
};

void cli_ctl_sse_init(struct cli_ctl_sse *s, cli_ctl_sse_event_fn fn, void *ctx);

/*
 * Feeds len bytes. Calls fn for each complete event; a non-zero return of fn stops the parsing
 * and is returned. Else 0, -ENOMEM, or -E2BIG for a line over CLI_CTL_SSE_LINE_MAX.
 */
int cli_ctl_sse_feed(struct cli_ctl_sse *s, const char *buf, size_t len);

/* Forgets the event being gathered (a new connection), keeping last_id and retry_ms. */
void cli_ctl_sse_reset(struct cli_ctl_sse *s);

void cli_ctl_sse_fini(struct cli_ctl_sse *s);

/* ---- the HTTP client (ctl_http.c) ---- */

struct cli_ctl_client;

struct cli_ctl_client_opts {
    const char *api;   /* "http://HOST:PORT", "HOST:PORT" or "unix:PATH"; copied */
    const char *token; /* the bearer token, NULL for none; copied (and wiped on free) */
    /* PEM CA certificates an https API's certificate is checked against; NULL: the system's.
     * Copied. */
    const char *cacert;
    int64_t timeout_ms;
};

/*
 * Sets up a client (libcurl). Returns 0 with *ret (free with cli_ctl_client_free()), -EINVAL
 * with err for a malformed --api, or -ENOMEM.
 */
int cli_ctl_client_new(const struct cli_ctl_client_opts *opts, struct cli_ctl_client **ret,
                       struct core_err *err);

void cli_ctl_client_free(struct cli_ctl_client *c);

/* Where the client talks to, for messages: "http://127.0.0.1:8400" or "unix:/run/x.sock". */
const char *cli_ctl_client_where(const struct cli_ctl_client *c);

/* Whether the client sends a token. */
bool cli_ctl_client_has_token(const struct cli_ctl_client *c);

struct cli_ctl_request {
    const char *method;        /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *path;          /* "/api/v1/...", segments already escaped, with any query */
    const char *body;          /* NUL-terminated; NULL: none */
    const char *content_type;  /* NULL: application/json for POST, PUT and PATCH */
    const char *if_match;      /* a header value, or NULL */
    const char *last_event_id; /* or NULL */
    const char *accept;        /* NULL: application/json */
    /*
     * The whole exchange; 0: the client's; -1: none (a stream: then a stream silent for
     * CLI_CTL_STREAM_SILENCE_S counts as broken, -ECONNRESET).
     */
    int64_t timeout_ms;
    /*
     * Streams and downloads: called with the body's bytes as they come when the status is 200
     * (other answers are kept in the response for the error message). A non-zero return ends
     * the transfer. NULL: the body is kept in the response.
     */
    int (*on_body)(void *ctx, const char *buf, size_t len);
    void *ctx;
    /* Polled about every 100 ms during the transfer; true ends it (Ctrl-C). May be NULL. */
    bool (*should_stop)(void *ctx);
};

struct cli_ctl_response {
    long status; /* the HTTP status, 0 when no answer came */
    char etag[256];
    char content_type[128];
    char *body; /* NUL-terminated (may be ""); what on_body did not take */
    size_t body_len;
    json_t *json; /* the body parsed, NULL when it is not JSON */
    bool stopped; /* on_body or should_stop ended the transfer */
};

/*
 * Sends a request and waits for the answer (or, with on_body, the end of the body). Returns 0
 * when an answer came, whatever its status (*ret filled; release with
 * cli_ctl_response_fini()); on a transfer ended by on_body or should_stop also 0, with
 * ret->stopped. Else -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET (the connection broke mid-answer)
 * or -EIO, with err saying what happened and where ("cannot connect to http://...: Connection
 * refused").
 */
int cli_ctl_request(struct cli_ctl_client *c, const struct cli_ctl_request *req,
                    struct cli_ctl_response *ret, struct core_err *err);

void cli_ctl_response_fini(struct cli_ctl_response *r);

/* Percent-escapes a path segment (an id, a file name). malloc'd, or NULL. */
char *cli_ctl_escape(const char *segment);

/* ---- what the verbs share (ctl.c, ctl_files.c, ctl_config.c; not for other callers) ---- */

enum cli_ctl_verb {
    CLI_CTL_LS,
    CLI_CTL_GET,
    CLI_CTL_CREATE,
    CLI_CTL_PATCH,
    CLI_CTL_DELETE,
    CLI_CTL_START,
    CLI_CTL_STOP,
    CLI_CTL_METRICS,
    CLI_CTL_FILES,
    CLI_CTL_WATCH,
    CLI_CTL_WAIT,
    CLI_CTL_APPLY,
    CLI_CTL_DIFF,
    CLI_CTL_REVISIONS,
    CLI_CTL_RESTORE,
    CLI_CTL_VERB_COUNT
};

enum cli_ctl_opt {
    CLI_CTL_OPT_API,
    CLI_CTL_OPT_TOKEN_FILE,
    CLI_CTL_OPT_CACERT,
    CLI_CTL_OPT_JSON,
    CLI_CTL_OPT_TIMEOUT,
    CLI_CTL_OPT_FILE,
    CLI_CTL_OPT_DRY_RUN,
    CLI_CTL_OPT_PRUNE,
    CLI_CTL_OPT_IF_MATCH,
    CLI_CTL_OPT_SET,
    CLI_CTL_OPT_ID,
    CLI_CTL_OPT_SERVICE,
    CLI_CTL_OPT_TRANSPORT,
    CLI_CTL_OPT_ADDRESS,
    CLI_CTL_OPT_PORT,
    CLI_CTL_OPT_MODEL,
    CLI_CTL_OPT_WORKERS,
    CLI_CTL_OPT_DISABLED,
    CLI_CTL_OPT_VERSION,
    CLI_CTL_OPT_OUTPUT,
    CLI_CTL_OPT_SINCE,
    CLI_CTL_OPT_ONCE,
    CLI_CTL_OPT_METRICS,
    CLI_CTL_OPT_STATE,
    CLI_CTL_OPT_LIMIT,
    CLI_CTL_OPT_RECENT,
    CLI_CTL_OPT_COUNT
};

#define CLI_CTL_ARGS_MAX CLI_ARGS_MAX
#define CLI_CTL_SETS_MAX CLI_REPEATS_MAX

/* One run of the command: what the arguments said, and the client. */
struct cli_ctl_cmd {
    enum cli_ctl_verb verb;
    bool has_verb;
    const char *args[CLI_CTL_ARGS_MAX]; /* the verb's positional arguments */
    int nargs;
    bool seen[CLI_CTL_OPT_COUNT];
    const char *val[CLI_CTL_OPT_COUNT]; /* the last value of each option */
    const char *sets[CLI_CTL_SETS_MAX]; /* every --set, in order */
    size_t nsets;
    bool json;
    int64_t timeout_ms;
    char if_match[512]; /* the header value of --if-match, "" when absent */
    struct cli_ctl_client *client;
};

/* Prints "sockserv ctl: MESSAGE" and the verb's usage line on stderr. Returns 2. */
int cli_ctl_usage_error(const struct cli_ctl_cmd *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "sockserv ctl: MESSAGE" on stderr. Returns 1. */
int cli_ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_ctl_request(), printing why when no answer came. Returns 0 (an answer, *ret filled) or 1. */
int cli_ctl_call(struct cli_ctl_cmd *x, const struct cli_ctl_request *req,
                 struct cli_ctl_response *ret);

/* Prints the refusal in resp (the problem's detail, field, listener). Returns its exit status. */
int cli_ctl_refused(struct cli_ctl_cmd *x, const struct cli_ctl_response *resp);

/*
 * One request with --if-match, whose answer must be 2xx. Returns 0 with *ret (release it), or
 * the exit status after printing why.
 */
int cli_ctl_simple(struct cli_ctl_cmd *x, const char *method, const char *path, const char *body,
                   const char *content_type, struct cli_ctl_response *ret);

/* Prints j, indented, and a newline. Returns 0 or 1. */
int cli_ctl_print_json(const json_t *j);

/* Prints text and frees it (NULL: out of memory). Returns 0 or 1. */
int cli_ctl_print_text(char *text);

/*
 * A request path from literal pieces and path segments, alternating and ending with NULL:
 * ("/api/v1/listeners/", id, "/files/", name, NULL); the segments are percent-escaped.
 * malloc'd, or NULL after printing why.
 */
char *cli_ctl_path(const char *literal, ...) __attribute__((sentinel));

/* cli_ctl_simple() of a GET of path, which it frees (NULL: out of memory, said on stderr). */
int cli_ctl_get(struct cli_ctl_cmd *x, char *path, struct cli_ctl_response *ret);

/* A listener's state in words: "running on [::]:7007", "stopped", "failed: why". */
void cli_ctl_describe(const json_t *resource, char *buf, size_t len);

/* Prints a dry run's answer (its diff), or fails when the daemon did not treat it as one. */
int cli_ctl_dry_run_report(struct cli_ctl_cmd *x, const struct cli_ctl_response *resp);

/* Reads a JSON document from path ("-": standard input). Returns 0 with *ret, or 1. */
int cli_ctl_read_json(const char *path, json_t **ret);

/* The verbs of ctl_files.c and ctl_config.c; each returns the exit status. */
int cli_ctl_run_files(struct cli_ctl_cmd *x);
int cli_ctl_run_watch(struct cli_ctl_cmd *x);
int cli_ctl_run_wait(struct cli_ctl_cmd *x);
int cli_ctl_run_apply(struct cli_ctl_cmd *x);
int cli_ctl_run_revisions(struct cli_ctl_cmd *x);
int cli_ctl_run_restore(struct cli_ctl_cmd *x);

#endif
