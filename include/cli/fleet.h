#ifndef CLI_FLEET_H
#define CLI_FLEET_H

/*
 * `sockserv fleet`: a fleet of daemons driven and watched through the broker (rabbitmq-c, on
 * the command's one thread, every wait bounded by a deadline). Verbs:
 *   apply  publish a desired configuration (a record of the PREFIX.desired stream) and collect
 *          each targeted node's answer
 *   ls     the nodes the fleet knows (the PREFIX.nodes stream) and those that answer a ping
 *   watch  follow the events of PREFIX.events
 *   forget publish node.forgotten for nodes that left for good (ls and apply stop counting them)
 * Results go to stdout (a table, lines, or with --json the JSON), messages to stderr.
 *
 * Exit status, which scripts may rely on:
 *   0  done; apply: every node answered applied or unchanged
 *   1  apply: a node rejected the record; forget: a node is online (without --force); else a
 *      failure that is not the broker's (stdout gone)
 *   2  usage error, or a FILE that cannot be read or is not a JSON object
 *   3  apply: a node answered conflict (its configuration changed since --if-match), none
 *      rejected
 *   4  the broker: unreachable, refused the credentials, TLS failed, refused the record, or the
 *      connection was lost
 *   5  apply: a targeted node did not answer within --wait (pending)
 *
 * This header is also the contract of the pieces the verbs are built from: the pure helpers
 * (fleet_fmt.c: --if-match, the tables, the event lines, the expected set, the exit
 * status) that the unit tests drive without a broker, and the broker session (fleet_bus.c).
 * One thread: the command's.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cli/common.h"
#include "core/err.h"

#define CLI_FLEET_EXIT_OK 0
#define CLI_FLEET_EXIT_REJECTED 1
#define CLI_FLEET_EXIT_USAGE 2
#define CLI_FLEET_EXIT_CONFLICT 3
#define CLI_FLEET_EXIT_BROKER 4
#define CLI_FLEET_EXIT_PENDING 5

#define CLI_FLEET_ENV_AMQP "SOCKSERV_AMQP"
#define CLI_FLEET_DEFAULT_AMQP "amqp://localhost/"
#define CLI_FLEET_DEFAULT_PREFIX "sockserv"
#define CLI_FLEET_APPLY_WAIT_MS 15000
#define CLI_FLEET_LS_WAIT_MS 2000
#define CLI_FLEET_WAIT_MAX_MS (24LL * 3600 * 1000)
#define CLI_FLEET_FILE_MAX (1 << 20) /* apply's FILE; PUT /api/v1/config takes as much */

/*
 * sockserv fleet [--amqp URL] [--amqp-credentials FILE] [--amqp-cacert FILE]
 *                [--amqp-cert FILE --amqp-key FILE] [--amqp-prefix PREFIX] VERB [ARGS]
 * Takes the arguments after "sockserv" (argv[0] is "fleet"); returns the exit status above.
 */
int cli_fleet_main(int argc, char **argv);

/* The command's arguments, options and verbs, for cli_args_parse() (cli/common.h). */
extern const struct cli_command cli_fleet_command;

/* ---- pure helpers (fleet_fmt.c) ---- */

/*
 * Adds "NODE=ETAG" (an --if-match) to if_match (a JSON object node -> ETag): NODE a valid node
 * name, ETAG as the REST API gives it ("\"7\"") or bare (7, made "\"7\""); a weak or empty ETag
 * is refused. Returns 0, or -EINVAL with err ("--if-match 'x': ..."), also when NODE was given
 * twice.
 */
int cli_fleet_if_match_add(json_t *if_match, const char *text, struct core_err *err);

/*
 * The rows apply prints, sorted by node: each reply of replies (an object node -> reply object,
 * as the nodes sent it), then for each expected node (names, n of them) that did not answer, a
 * pending row {"node","result":"pending","detail":"did not answer in 15s (offline?)"} (the
 * duration is wait_ms written as a user would). Returns a new array, or NULL (ENOMEM).
 */
json_t *cli_fleet_apply_rows(const json_t *replies, const char *const *expected, size_t n,
                             int64_t wait_ms);

/* The exit status of apply's rows: 1 when one was rejected, else 3 on a conflict, else 5 when
 * one is pending, else 0. */
int cli_fleet_apply_exit(const json_t *rows);

/*
 * apply's table: NODE RESULT OFFSET REVISION DETAIL, one row per row of rows (results in
 * capitals: APPLIED, UNCHANGED, REJECTED, CONFLICT, PENDING); DETAIL is a problem's detail
 * (with " (field: F)" when it names one), a pending row's detail, or "-". malloc'd text, or NULL.
 */
char *cli_fleet_apply_render(const json_t *rows);

/*
 * ls's table from a view document (fleet_view_json()): NODE STATE LABELS REVISION OFFSET
 * LISTENERS LAST-SEEN; LABELS as "k=v,k=v" (sorted), OFFSET the applied offset (then "/D" when
 * the desired offset differs), LISTENERS "running/total", LAST-SEEN as given; then, for each
 * node in ERROR, "NODE: RESULT offset N: DETAIL (field: F)". "no nodes" when there is none.
 * malloc'd text, or NULL.
 */
char *cli_fleet_ls_render(const json_t *view);

/*
 * One line of watch for an event body (the envelope {"node","boot","seq","time","kind","data"}):
 * "TIME NODE KIND SUMMARY", the summary from the kind's data (a listener's id and state, a
 * revision and its source, a fleet result and its offset, a node's revision and listeners, who
 * forgot a node).
 * A body that is not an envelope gives "- - ROUTING_KEY BODY" (its first 200 bytes).
 * malloc'd text without a newline, or NULL (ENOMEM).
 */
char *cli_fleet_watch_line(const char *routing_key, const char *body, size_t len);

/*
 * The nodes a record targets that apply waits for: names (n of them) and every node of the view
 * document's "nodes" whose labels match selector (when not NULL) or, with all, every one of them.
 * Sorted, each once. Returns a new array of strings, or NULL (ENOMEM).
 */
struct fleet_selector;
json_t *cli_fleet_expected(const json_t *view, const char *const *names, size_t n,
                           const struct fleet_selector *selector, bool all);

/* ---- the broker session (fleet_bus.c; for fleet.c, not for other callers) ---- */

/*
 * One connection to the broker, read by one loop: every frame is handled as it comes (heartbeats
 * served, publisher confirms counted, deliveries assembled from their frames and handed to a
 * callback, channel and connection closes turned into errors), and every wait is a poll(2) with
 * a deadline, never longer than half the heartbeat. Channel 1 is the one fleet_amqp_open()
 * opens; a second channel serves a stream consumer.
 */
struct cli_fleet_bus;
struct fleet_amqp_conf;
struct fleet_amqp_msg;

#define CLI_FLEET_BODY_MAX (16u << 20) /* a delivery larger than this ends the session */

/* A delivery (or a returned message), borrowed for the callback. */
struct cli_fleet_msg {
    int channel;
    const char *routing_key;    /* "" when none */
    const char *correlation_id; /* "" when none */
    bool has_offset;            /* the x-stream-offset header (a stream's delivery) */
    int64_t offset;
    const char *body; /* not NUL-terminated */
    size_t len;
};

/* Called for each delivery: returns 0 to go on, > 0 to end cli_fleet_bus_run() (returning 1),
 * < 0 to end it with that error. */
typedef int (*cli_fleet_msg_fn)(void *ctx, const struct cli_fleet_msg *m);

/*
 * Connects (fleet_amqp_open()) and declares the fleet's topology under prefix. Returns 0 with
 * *ret (free with cli_fleet_bus_free()), or a negative errno with err saying why.
 */
int cli_fleet_bus_open(const struct fleet_amqp_conf *conf, const char *prefix,
                       struct cli_fleet_bus **ret, struct core_err *err);

/* Closes (gracefully when the connection is still sound) and frees b. Accepts NULL. */
void cli_fleet_bus_free(struct cli_fleet_bus *b);

/*
 * Consumes queue on channel (1, or 2: opened on first use). A stream (from_first) is read from
 * its first record with a prefetch of 500, each delivery acknowledged once handled; otherwise
 * no_ack. Returns 0 or a negative errno with err.
 */
int cli_fleet_bus_consume(struct cli_fleet_bus *b, int channel, const char *queue, bool from_first,
                          struct core_err *err);

/* Declares a viewer queue bound to PREFIX.events with pattern and consumes it on channel 1. */
int cli_fleet_bus_watch(struct cli_fleet_bus *b, const char *prefix, const char *pattern,
                        struct core_err *err);

/* Puts channel 1 in confirm mode. Returns 0 or a negative errno with err. */
int cli_fleet_bus_confirm_select(struct cli_fleet_bus *b, struct core_err *err);

/* Publishes m on channel 1. In confirm mode *ret_tag (may be NULL) is its delivery tag. */
int cli_fleet_bus_publish(struct cli_fleet_bus *b, const struct fleet_amqp_msg *m,
                          uint64_t *ret_tag, struct core_err *err);

/*
 * Makes cli_fleet_bus_run() return 1 once the broker settled tag (acked, nacked, or returned and
 * then acked).
 */
void cli_fleet_bus_await(struct cli_fleet_bus *b, uint64_t tag);

/* How tag was settled: 0 not yet, 1 acked, -EPROTO nacked, -ENOENT returned (unroutable; err
 * gets the broker's reply text). */
int cli_fleet_bus_settled(const struct cli_fleet_bus *b, uint64_t tag, struct core_err *err);

/* Whether the broker blocks the connection's publishers now (connection.blocked: a memory or
 * disk alarm), with its reason in reason. */
bool cli_fleet_bus_blocked(const struct cli_fleet_bus *b, char *reason, size_t len);

/*
 * Runs the connection until deadline (core_now_ms() time): returns 0 at the deadline, 1 when
 * fn asked to stop or an awaited tag was settled, 2 when stop_fd (-1: none) became readable, or
 * a negative errno with err (the connection is lost, a channel was closed, a consumer was
 * cancelled).
 */
int cli_fleet_bus_run(struct cli_fleet_bus *b, int64_t deadline, cli_fleet_msg_fn fn, void *ctx,
                      int stop_fd, struct core_err *err);

#endif
