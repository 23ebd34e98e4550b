/*
 * sockserv: the command's verbs, and the daemon's start and stop order.
 *
 * Start: read the arguments and the token file, refuse an API address that is not loopback
 * without a token (before anything is bound), block the signals (before any thread), raise the
 * soft descriptor limit to the hard one (core/fdbudget.h), create the state directory, load the
 * listener set (state file, else the embedded defaults) and start its
 * listeners, with --amqp start the fleet bridge (its bus thread and apply worker; with
 * --fleet-view the view it feeds), start the API, say ready (--ready-fd, and READY=1 to
 * systemd). Stop, on SIGINT or SIGTERM: say STOPPING=1, stop the API (no new changes; its Unix
 * socket file is removed), stop the fleet bridge (node.bye, an apply under way finishes, its
 * threads joined), then stop every listener (stop accepting, cut connections, join threads,
 * close fds); the state file already holds the last change. Then free the view and the event
 * bus, which nobody holds any more. Exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "sockserv-config.h"
#include "api/guard.h"
#include "api/server.h"
#include "api/tls.h"
#include "cli/backup.h"
#include "cli/cli.h"
#include "cli/common.h"
#include "cli/ctl.h"
#include "cli/date.h"
#include "cli/fleet.h"
#include "core/addr.h"
#include "core/events.h"
#include "core/fdbudget.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/revisions.h"
#include "core/service.h"
#include "core/store.h"
#include "fleet/amqp.h"
#include "fleet/bridge.h"
#include "fleet/view.h"
#include "fleet/wire.h"
#include "svc/backup.h"
#include "svc/date.h"
#include "svc/echo.h"

#define DEFAULT_API "127.0.0.1:8400"
#define UNIX_PREFIX "unix:"

/* The listeners of a first start, in the state file's format. */
static const char default_listeners[] =
    "{\"version\": 1, \"listeners\": ["
    "{\"id\": \"backup-tcp\", \"service\": \"backup\", \"transport\": \"tcp\", \"port\": 32400},"
    "{\"id\": \"date-tcp\", \"service\": \"date\", \"transport\": \"tcp\", \"port\": 1313},"
    "{\"id\": \"date-udp\", \"service\": \"date\", \"transport\": \"udp\", \"port\": 1313},"
    "{\"id\": \"echo-tcp\", \"service\": \"echo\", \"transport\": \"tcp\", \"port\": 7007,"
    " \"options\": {\"mode\": \"stream\"}},"
    "{\"id\": \"echo-udp\", \"service\": \"echo\", \"transport\": \"udp\", \"port\": 7007}"
    "]}";

static const struct core_service *const services[] = {
    &svc_backup,
    &svc_date,
    &svc_echo,
};

static const struct core_service_table service_table = {
    .svcs = services,
    .n = sizeof(services) / sizeof(services[0]),
};

enum {
    OPT_API,
    OPT_API_MODE,
    OPT_TOKEN_FILE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_PLAIN_HTTP,
    OPT_ALLOW_HOST,
    OPT_API_PRIORITY,
    OPT_STATE_DIR,
    OPT_NO_DEFAULTS,
    OPT_READY_FD,
    OPT_LOG_LEVEL,
    OPT_AMQP,
    OPT_AMQP_CREDENTIALS,
    OPT_AMQP_CACERT,
    OPT_AMQP_CERT,
    OPT_AMQP_KEY,
    OPT_NODE,
    OPT_LABEL,
    OPT_AMQP_PREFIX,
    OPT_AMQP_HEARTBEAT,
    OPT_FLEET_STATUS_INTERVAL,
    OPT_FLEET_VIEW,
};

static const struct cli_opt daemon_opts[] = {
    [OPT_API] = {"api", 0, "HOST:PORT|unix:PATH",
                 "where the REST API listens (default " DEFAULT_API "; port 0: any), or a Unix "
                 "socket; an address that is not loopback needs --token-file and "
                 "--api-tls-cert/--api-tls-key (or --api-insecure-plain-http)"},
    [OPT_API_MODE] = {"api-mode", 0, "MODE",
                      "the Unix socket's file mode, in octal (default 0600)"},
    [OPT_TOKEN_FILE] = {"token-file", 0, "FILE",
                        "require 'Authorization: Bearer TOKEN' on every request but health and "
                        "the dashboard's files; TOKEN is FILE's content"},
    [OPT_TLS_CERT] = {"api-tls-cert", 0, "FILE",
                      "serve the API over HTTPS (TLS 1.2 or newer) with this PEM certificate "
                      "(chain); needs --api-tls-key"},
    [OPT_TLS_KEY] = {"api-tls-key", 0, "FILE", "the certificate's PEM private key (unencrypted)"},
    [OPT_PLAIN_HTTP] = {"api-insecure-plain-http", 0, NULL,
                        "accept plain HTTP on an address that is not loopback: the token travels "
                        "in clear (a trusted network only)"},
    [OPT_ALLOW_HOST] = {"allow-host", 0, "NAME",
                        "a host name requests may carry in Host and Origin besides the API's "
                        "address (repeatable)",
                        0, true},
    [OPT_API_PRIORITY] = {"api-priority", 0, "fifo|nice|off",
                          "how the API thread is scheduled ahead of the listeners: fifo "
                          "(default: SCHED_FIFO 1, else nice), nice (nice -10, else off) or off"},
    [OPT_STATE_DIR] = {"state-dir", 0, "DIR",
                       "where the listener set is kept (default: $STATE_DIRECTORY, else "
                       "/var/lib/sockserv as root, else $XDG_STATE_HOME/sockserv or "
                       "~/.local/state/sockserv)"},
    [OPT_NO_DEFAULTS] = {"no-defaults", 0, NULL, "on a first start, start with no listener"},
    [OPT_READY_FD] = {"ready-fd", 0, "FD",
                      "when serving, write the API's URL (or unix:PATH) and a newline to FD"},
    [OPT_LOG_LEVEL] = {"log-level", 0, "LEVEL", "error, warn, info (default) or debug"},
    [OPT_AMQP] = {"amqp", 0, "URL",
                  "join the fleet on this RabbitMQ broker (amqp://USER:PASSWORD@HOST:PORT/VHOST "
                  "or amqps://...): publish events, take desired configurations, answer pings"},
    [OPT_AMQP_CREDENTIALS] = {"amqp-credentials", 0, "FILE",
                              "the broker's USER:PASSWORD, one line (overrides the URL's)"},
    [OPT_AMQP_CACERT] = {"amqp-cacert", 0, "FILE",
                         "amqps: the CA certificates (PEM) to verify "
                         "the broker with"},
    [OPT_AMQP_CERT] = {"amqp-cert", 0, "FILE",
                       "amqps: a client certificate (PEM); needs "
                       "--amqp-key"},
    [OPT_AMQP_KEY] = {"amqp-key", 0, "FILE", "amqps: the client certificate's key (PEM)"},
    [OPT_NODE] = {"node", 0, "NAME",
                  "this daemon's name in the fleet ([a-z0-9][a-z0-9_-]{0,62}; default: the host "
                  "name, lower-cased)"},
    [OPT_LABEL] = {"label", 0, "KEY=VALUE",
                   "a label fleet selectors match (repeatable, at most 16)", 0, true},
    [OPT_AMQP_PREFIX] = {"amqp-prefix", 0, "PREFIX",
                         "the fleet's exchange and queue names start with it (default sockserv)"},
    [OPT_AMQP_HEARTBEAT] = {"amqp-heartbeat", 0, "SECONDS",
                            "the AMQP heartbeat, 1 to 60 (default 10)"},
    [OPT_FLEET_STATUS_INTERVAL] = {"fleet-status-interval", 0, "DURATION",
                                   "how often node.status is published (default 10s)"},
    [OPT_FLEET_VIEW] = {"fleet-view", 0, NULL,
                        "watch the whole fleet: GET /api/v1/fleet and the dashboard's Fleet page"},
};

static const struct cli_command daemon_command = {
    .name = "daemon",
    .self =
        {
            .synopsis = "[OPTIONS]",
            .brief = "run the daemon: the REST API and the listeners it manages",
            .summary = "Runs the control plane and the listeners. On a first start (no state "
                       "file) it\nstarts the embedded defaults: echo on TCP and UDP port 7007, "
                       "date on TCP and\nUDP port 1313, backup on TCP port 32400.",
        },
    .opts = daemon_opts,
    .nopts = sizeof(daemon_opts) / sizeof(daemon_opts[0]),
    .epilog = "SIGINT or SIGTERM stop it gracefully; it exits 0. Under systemd (Type=notify) it\n"
              "says READY=1 once serving and STOPPING=1 when it stops.\n",
};

static int default_state_dir(char *buf, size_t len)
{
    const char *env = getenv("STATE_DIRECTORY"), *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;

    if (env && *env)
        n = snprintf(buf, len, "%s", env);
    else if (geteuid() == 0)
        n = snprintf(buf, len, "/var/lib/sockserv");
    else if (xdg && *xdg)
        n = snprintf(buf, len, "%s/sockserv", xdg);
    else if (home && *home)
        n = snprintf(buf, len, "%s/.local/state/sockserv", home);
    else
        return -ENOENT;
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int parse_log_level(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < CORE_LOG_LEVEL_COUNT; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -EINVAL;
}

/*
 * Tells systemd (or whatever set NOTIFY_SOCKET) how the service is: "READY=1", "STOPPING=1"
 * (sd_notify(3)'s protocol: one datagram to the socket named in $NOTIFY_SOCKET, a path or, with
 * a leading '@', a name in the abstract namespace). Does nothing without NOTIFY_SOCKET.
 */
static void notify_service_manager(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len;
    int fd;

    if (!path || !*path)
        return;
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len < 2 || len > sizeof(sa.sun_path)) {
        core_log_warn("NOTIFY_SOCKET='%s' is not a socket path or an abstract name", path);
        return;
    }
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        core_log_warn("NOTIFY_SOCKET: socket: %s", strerror(errno));
        return;
    }
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        core_log_warn("NOTIFY_SOCKET %s: %s", path, strerror(errno));
    close(fd);
}

/* Writes the API's address (its URL, or unix:PATH) and a newline to fd and closes it. */
static void say_ready(int fd, const char *where, size_t listeners)
{
    char line[PATH_MAX + 16], state[PATH_MAX + 64];
    int n = snprintf(line, sizeof(line), "%s\n", where);

    if (fd >= 0) {
        if (n > 0)
            (void)!write(fd, line, (size_t)n);
        close(fd);
    }
    core_log_info("API listening on %s", where);
    (void)snprintf(state, sizeof(state), "READY=1\nSTATUS=API on %s, %zu listeners", where,
                   listeners);
    notify_service_manager(state);
}

/*
 * Reads the token from path: the whole file but its trailing line ends. Prints why on stderr
 * and returns -1 when it is unreadable, empty or not a token; warns (log) when others than its
 * owner may read it. On 0, *ret is the token (wipe and free it).
 */
static int read_token_file(const char *path, char **ret, size_t *ret_len)
{
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    ssize_t n;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "sockserv daemon: --token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "sockserv daemon: --token-file %s: not a regular file\n", path);
        goto out_close;
    }
    if (st.st_size > API_GUARD_TOKEN_MAX + 2) {
        fprintf(stderr, "sockserv daemon: --token-file %s: a token is at most %d bytes\n", path,
                API_GUARD_TOKEN_MAX);
        goto out_close;
    }
    buf = calloc(1, API_GUARD_TOKEN_MAX + 3);
    if (!buf) {
        fprintf(stderr, "sockserv daemon: out of memory\n");
        goto out_close;
    }
    while (len < API_GUARD_TOKEN_MAX + 3 &&
           (n = read(fd, buf + len, API_GUARD_TOKEN_MAX + 3 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "sockserv daemon: --token-file %s: %s\n", path, strerror(errno));
            goto out_free;
        }
        len += (size_t)n;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (len == 0) {
        fprintf(stderr, "sockserv daemon: --token-file %s: the file is empty\n", path);
        goto out_free;
    }
    if (!api_guard_token_is_valid(buf, len)) {
        fprintf(stderr,
                "sockserv daemon: --token-file %s: a token is 1 to %d bytes of visible ASCII, "
                "without blanks or line ends inside\n",
                path, API_GUARD_TOKEN_MAX);
        goto out_free;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH))
        core_log_warn("--token-file %s can be read by others than its owner (mode %04o): "
                      "chmod 600 it",
                      path, (unsigned)(st.st_mode & 07777));
    if (len < 16)
        core_log_warn("--token-file %s: the token is short (%zu bytes); use at least 16 random "
                      "bytes, e.g. from `openssl rand -hex 32`",
                      path, len);
    close(fd);
    *ret = buf;
    *ret_len = len;
    return 0;

out_free:
    OPENSSL_cleanse(buf, API_GUARD_TOKEN_MAX + 3);
    free(buf);
out_close:
    close(fd);
    return -1;
}

/* What the fleet flags say (--amqp and the rest). */
struct fleet_settings {
    bool on; /* --amqp given */
    struct fleet_amqp_conf conf;
    char node[FLEET_NAME_MAX];
    struct fleet_labels labels;
    const char *prefix;
    int64_t status_ms;
    bool view;
};

/* Reads the fleet flags into *f. Returns CLI_ARGS_GO_ON, or 2 after a usage error. */
static int parse_fleet_args(const struct cli_command *cmd, const struct cli_args *args,
                            struct fleet_settings *f)
{
    static const int needs_amqp[] = {OPT_AMQP_CREDENTIALS,
                                     OPT_AMQP_CACERT,
                                     OPT_AMQP_CERT,
                                     OPT_AMQP_KEY,
                                     OPT_NODE,
                                     OPT_AMQP_PREFIX,
                                     OPT_AMQP_HEARTBEAT,
                                     OPT_FLEET_STATUS_INTERVAL,
                                     OPT_FLEET_VIEW};
    struct fleet_amqp_opts o = {0};
    struct core_err err = {0};
    char *end;
    int r;

    memset(f, 0, sizeof(*f));
    f->on = args->seen[OPT_AMQP];
    f->prefix = FLEET_PREFIX_DEFAULT;
    f->status_ms = FLEET_BRIDGE_STATUS_INTERVAL_MS;
    for (size_t i = 0; !f->on && i < sizeof(needs_amqp) / sizeof(needs_amqp[0]); i++)
        if (args->seen[needs_amqp[i]])
            return cli_args_usage_error(cmd, -1, "--%s needs --amqp URL",
                                        cmd->opts[needs_amqp[i]].name);
    for (size_t i = 0; !f->on && i < args->nrepeats; i++)
        if (args->repeat_opt[i] == OPT_LABEL)
            return cli_args_usage_error(cmd, -1, "--label needs --amqp URL");
    if (!f->on)
        return CLI_ARGS_GO_ON;
    o.url = args->val[OPT_AMQP];
    o.credentials_file = args->val[OPT_AMQP_CREDENTIALS];
    o.cacert = args->val[OPT_AMQP_CACERT];
    o.cert = args->val[OPT_AMQP_CERT];
    o.key = args->val[OPT_AMQP_KEY];
    if (args->seen[OPT_AMQP_HEARTBEAT]) {
        const char *t = args->val[OPT_AMQP_HEARTBEAT];
        long v;

        errno = 0;
        v = strtol(t, &end, 10);
        if (!*t || *end || errno || v < 1 || v > 60)
            return cli_args_usage_error(cmd, -1, "--amqp-heartbeat: '%s' is not 1 to 60 seconds",
                                        t);
        o.heartbeat_s = (int)v;
    }
    r = fleet_amqp_opts_check(&o, &f->conf, &err);
    if (r < 0)
        return cli_args_usage_error(cmd, -1, "%s", err.msg);
    if (args->seen[OPT_NODE]) {
        if (!fleet_node_name_valid(args->val[OPT_NODE]))
            return cli_args_usage_error(
                cmd, -1, "--node: '%s' is not a node name ([a-z0-9][a-z0-9_-]{0,62})",
                args->val[OPT_NODE]);
        snprintf(f->node, sizeof(f->node), "%s", args->val[OPT_NODE]);
    } else if (fleet_node_name_from_host(f->node, sizeof(f->node)) < 0) {
        snprintf(f->node, sizeof(f->node), "node");
    }
    if (args->seen[OPT_AMQP_PREFIX]) {
        if (!fleet_prefix_valid(args->val[OPT_AMQP_PREFIX]))
            return cli_args_usage_error(cmd, -1,
                                        "--amqp-prefix: '%s' is not a prefix "
                                        "([a-z0-9][a-z0-9_.-]{0,62})",
                                        args->val[OPT_AMQP_PREFIX]);
        f->prefix = args->val[OPT_AMQP_PREFIX];
    }
    for (size_t i = 0; i < args->nrepeats; i++) {
        if (args->repeat_opt[i] != OPT_LABEL)
            continue;
        if (fleet_labels_add(&f->labels, args->repeats[i], &err) < 0)
            return cli_args_usage_error(cmd, -1, "--label: %s", err.msg);
    }
    r = cli_args_duration(cmd, args, OPT_FLEET_STATUS_INTERVAL, 1000, 3600 * 1000, &f->status_ms);
    if (r != 0)
        return r;
    f->view = args->seen[OPT_FLEET_VIEW];
    return CLI_ARGS_GO_ON;
}

/* Parses an octal file mode from 0 to 0777. */
static int parse_mode(const char *text, unsigned *ret)
{
    unsigned long v;
    char *end;

    errno = 0;
    v = strtoul(text, &end, 8);
    if (!*text || *end || errno || v > 0777)
        return -EINVAL;
    *ret = (unsigned)v;
    return 0;
}

/* The directory that holds file path, into buf (PATH_MAX bytes; "." for a bare name). */
static const char *dir_of(const char *path, char *buf)
{
    char *slash;

    (void)snprintf(buf, PATH_MAX, "%s", path);
    slash = strrchr(buf, '/');
    if (!slash)
        (void)snprintf(buf, PATH_MAX, ".");
    else
        slash[slash == buf ? 1 : 0] = '\0';
    return buf;
}

/* Raises the soft RLIMIT_NOFILE to the hard limit (before any thread) and says what the
 * listeners' connections may hold of it. */
static void raise_fd_limit(void)
{
    struct core_fdbudget_info b;
    uint64_t before, after;
    int r = core_fdbudget_raise(&before, &after);

    core_fdbudget_get(&b);
    if (r < 0)
        core_log_warn("descriptors: cannot raise the soft limit %llu to the hard one: %s",
                      (unsigned long long)before, strerror(-r));
    core_log_info("descriptors: limit %llu%s; %llu kept for the API (%llu connections), the "
                  "state and the log; %llu for the listeners' connections",
                  (unsigned long long)after,
                  after > before ? " (soft limit raised to the hard one)" : "",
                  (unsigned long long)b.reserve, (unsigned long long)b.api_conns,
                  (unsigned long long)b.conns_max);
}

static int daemon_main(int argc, char **argv)
{
    const struct cli_command *cmd = &daemon_command;
    const char *api = DEFAULT_API, *unix_path = NULL, *token_file = NULL;
    const char *tls_cert = NULL, *tls_key = NULL;
    struct api_tls tls = {0};
    const char *allow_hosts[API_GUARD_NAMES_MAX];
    char state_dir[PATH_MAX] = "", host[CORE_ADDR_STRLEN], where[PATH_MAX + 16];
    /* What no service may keep data in, above or at: the revisions log, the directories of the
     * token file and of the TLS certificate and key, the API's socket (the state directory
     * always counts). */
    char token_dir[PATH_MAX] = "", cert_dir[PATH_MAX] = "", key_dir[PATH_MAX] = "";
    char revisions_log[PATH_MAX + 32] = "";
    const char *protected_paths[6] = {NULL};
    struct core_service_table services_run = service_table;
    struct core_events *events = NULL;
    struct core_registry *registry = NULL;
    struct api_server *server = NULL;
    struct fleet_settings fleet;
    struct fleet_bridge *bridge = NULL;
    struct fleet_view *view = NULL;
    struct signalfd_siginfo si;
    struct core_err err = {0};
    struct sockaddr_storage ss;
    struct cli_args args;
    socklen_t ss_len;
    bool defaults = true, has_mode = false, plain_http = false;
    int ready_fd = -1, sfd = -1, r, status = 1;
    size_t n_allow_hosts = 0, token_len = 0;
    unsigned api_mode = API_SERVER_UNIX_MODE;
    enum api_priority_mode api_priority = API_PRIORITY_FIFO;
    char *token = NULL;
    uint16_t port = 0;
    sigset_t mask;
    char *end;

    r = cli_args_parse(cmd, argc, argv, &args);
    if (r != CLI_ARGS_GO_ON)
        return r;
    memset(&fleet, 0, sizeof(fleet));
    if (args.seen[OPT_API])
        api = args.val[OPT_API];
    if (args.seen[OPT_API_PRIORITY] &&
        api_priority_mode_parse(args.val[OPT_API_PRIORITY], &api_priority) < 0)
        return cli_args_usage_error(cmd, -1, "--api-priority: '%s' is not fifo, nice or off",
                                    args.val[OPT_API_PRIORITY]);
    if (args.seen[OPT_API_MODE]) {
        if (parse_mode(args.val[OPT_API_MODE], &api_mode) < 0)
            return cli_args_usage_error(cmd, -1,
                                        "--api-mode: '%s' is not an octal mode such as 0600 or "
                                        "0660",
                                        args.val[OPT_API_MODE]);
        has_mode = true;
    }
    token_file = args.val[OPT_TOKEN_FILE];
    tls_cert = args.val[OPT_TLS_CERT];
    tls_key = args.val[OPT_TLS_KEY];
    plain_http = args.seen[OPT_PLAIN_HTTP];
    for (size_t i = 0; i < args.nrepeats; i++) {
        const char *name = args.repeats[i];

        if (args.repeat_opt[i] != OPT_ALLOW_HOST)
            continue;
        if (!api_guard_name_is_valid(name))
            return cli_args_usage_error(cmd, -1,
                                        "--allow-host: '%s' is not a host name (letters, "
                                        "digits, '-', '.', '_'; no port)",
                                        name);
        if (n_allow_hosts == API_GUARD_NAMES_MAX)
            return cli_args_usage_error(cmd, -1, "--allow-host: at most %d names",
                                        API_GUARD_NAMES_MAX);
        allow_hosts[n_allow_hosts++] = name;
    }
    if (args.seen[OPT_STATE_DIR])
        snprintf(state_dir, sizeof(state_dir), "%s", args.val[OPT_STATE_DIR]);
    defaults = !args.seen[OPT_NO_DEFAULTS];
    if (args.seen[OPT_READY_FD]) {
        const char *fd_text = args.val[OPT_READY_FD];

        errno = 0;
        ready_fd = (int)strtol(fd_text, &end, 10);
        if (*fd_text == '\0' || *end != '\0' || errno || ready_fd < 0)
            return cli_args_usage_error(cmd, -1, "--ready-fd: '%s' is not a descriptor", fd_text);
    }
    if (args.seen[OPT_LOG_LEVEL]) {
        r = parse_log_level(args.val[OPT_LOG_LEVEL]);
        if (r < 0)
            return cli_args_usage_error(cmd, -1,
                                        "--log-level: '%s' is not one of error, warn, info, debug",
                                        args.val[OPT_LOG_LEVEL]);
        core_log_set_level((enum core_log_level)r);
    }
    if (!tls_cert != !tls_key)
        return cli_args_usage_error(cmd, -1, "--api-tls-cert and --api-tls-key go together");
    if (strncmp(api, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0) {
        if (tls_cert || plain_http)
            return cli_args_usage_error(cmd, -1,
                                        "--api-tls-cert, --api-tls-key and "
                                        "--api-insecure-plain-http apply to --api HOST:PORT only");
        unix_path = api + strlen(UNIX_PREFIX);
        if (!*unix_path || strlen(unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return cli_args_usage_error(cmd, -1, "--api unix:PATH: PATH is 1 to %zu bytes long",
                                        sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        (void)snprintf(where, sizeof(where), "%s", api);
    } else {
        if (has_mode)
            return cli_args_usage_error(cmd, -1, "--api-mode applies to --api unix:PATH only");
        if (core_hostport_parse(api, host, sizeof(host), &port, &err) < 0)
            return cli_args_usage_error(cmd, -1, "--api: %s", err.msg);
        /* Before anything is bound: an API others can reach needs a token. */
        if (core_addr_parse(host, port, &ss, &ss_len) < 0)
            return cli_args_usage_error(cmd, -1, "--api: %s is not a numeric address", host);
        if (!core_addr_is_loopback((const struct sockaddr *)&ss) && !token_file)
            return cli_args_usage_error(
                cmd, -1,
                "--api %s: %s is not a loopback address, so anyone who "
                "can reach it could control the daemon; pass --token-file FILE (see the "
                "README, Security)",
                api, host);
        /* A token sent in clear on a network can be read off the wire. */
        if (!core_addr_is_loopback((const struct sockaddr *)&ss) && !tls_cert && !plain_http)
            return cli_args_usage_error(
                cmd, -1,
                "--api %s: %s is not a loopback address, so the token would "
                "cross the network in clear; pass --api-tls-cert FILE --api-tls-key FILE, "
                "or --api-insecure-plain-http to accept that (see the README, Security)",
                api, host);
    }
    /* Before anything is bound: a bad certificate or key is told with its file's name. */
    if (tls_cert && api_tls_load(tls_cert, tls_key, &tls, &err) < 0) {
        fprintf(stderr, "sockserv daemon: %s\n", err.msg);
        return 2;
    }
    if (token_file && read_token_file(token_file, &token, &token_len) < 0) {
        api_tls_fini(&tls);
        return 2;
    }
    /* The fleet's flags last: from here on every way out wipes the broker's password. */
    r = parse_fleet_args(cmd, &args, &fleet);
    if (r != CLI_ARGS_GO_ON) {
        status = r;
        goto out_token;
    }
    if (!state_dir[0] && default_state_dir(state_dir, sizeof(state_dir)) < 0) {
        fprintf(stderr, "sockserv daemon: no state directory: pass --state-dir DIR\n");
        status = 2;
        goto out_token;
    }

    /* Signals are read from a signalfd by this thread only: block them before any thread. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "sockserv daemon: signalfd: %s\n", strerror(errno));
        goto out_token;
    }
    raise_fd_limit();

    r = core_fs_mkdir_p(state_dir, 0700);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: state directory %s: %s\n", state_dir, strerror(-r));
        goto out;
    }
    {
        size_t k = 0;

        (void)snprintf(revisions_log, sizeof(revisions_log), "%s/%s", state_dir,
                       CORE_REVISIONS_FILE);
        protected_paths[k++] = revisions_log;
        if (token_file)
            protected_paths[k++] = dir_of(token_file, token_dir);
        if (tls_cert)
            protected_paths[k++] = dir_of(tls_cert, cert_dir);
        if (tls_key)
            protected_paths[k++] = dir_of(tls_key, key_dir);
        /* The socket itself: a backup directory that holds it could replace it by a file. */
        if (unix_path)
            protected_paths[k++] = unix_path;
        services_run.protected_paths = protected_paths;
    }
    r = core_events_new(&events);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: %s\n", strerror(-r));
        goto out;
    }
    r = core_registry_new(
        &(struct core_registry_opts){
            .services = &services_run, .state_dir = state_dir, .persist = true, .events = events},
        &registry);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: %s\n", strerror(-r));
        goto out;
    }
    r = core_registry_load(registry, defaults ? default_listeners : NULL, &err);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: cannot load the listener set: %s\n",
                err.msg[0] ? err.msg : strerror(-r));
        goto out;
    }
    if (fleet.on && fleet.view) {
        r = fleet_view_new(fleet.status_ms, &view);
        if (r < 0) {
            fprintf(stderr, "sockserv daemon: fleet view: %s\n", strerror(-r));
            goto out;
        }
    }
    if (fleet.on) {
        r = fleet_bridge_start(
            &(struct fleet_bridge_opts){
                .registry = registry,
                .events = events,
                .node = fleet.node,
                .labels = &fleet.labels,
                .prefix = fleet.prefix,
                .amqp = &fleet.conf,
                .status_interval_ms = fleet.status_ms,
                .view = view,
            },
            &bridge, &err);
        OPENSSL_cleanse(&fleet.conf, sizeof(fleet.conf));
        if (r < 0) {
            fprintf(stderr, "sockserv daemon: fleet: %s\n", err.msg);
            goto out;
        }
    }
    r = api_server_start(
        &(struct api_server_opts){
            .host = unix_path ? NULL : host,
            .port = port,
            .unix_path = unix_path,
            .unix_mode = api_mode,
            .token = token,
            .token_len = token_len,
            .tls_cert = tls.cert,
            .tls_key = tls.key,
            .allow_hosts = allow_hosts,
            .n_allow_hosts = n_allow_hosts,
            .registry = registry,
            .services = &services_run,
            .events = events,
            .view = view,
            .fleet = bridge,
            .priority = api_priority,
        },
        &server, &err);
    /* The server keeps only a digest: the token itself is wiped before any process-model child
     * is forked with a copy of this memory. */
    if (token) {
        OPENSSL_cleanse(token, token_len);
        free(token);
        token = NULL;
    }
    api_tls_fini(&tls);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: cannot serve the API on %s: %s\n", api,
                err.msg[0] ? err.msg : strerror(-r));
        goto out;
    }
    if (!unix_path)
        (void)snprintf(where, sizeof(where), strchr(host, ':') ? "%s://[%s]:%u" : "%s://%s:%u",
                       tls_cert ? "https" : "http", host, (unsigned)api_server_port(server));
    core_log_info("sockserv %s: %zu listeners, state in %s%s", SOCKSERV_VERSION,
                  core_registry_count(registry), state_dir,
                  token_len ? "; the API needs a token" : "");
    say_ready(ready_fd, where, core_registry_count(registry));
    ready_fd = -1;

    for (;;) {
        ssize_t n = read(sfd, &si, sizeof(si));

        if (n == (ssize_t)sizeof(si))
            break;
        if (n < 0 && errno != EINTR) {
            core_log_error("signalfd: %s", strerror(errno));
            break;
        }
    }
    core_log_info("signal %u: stopping", si.ssi_signo);
    notify_service_manager("STOPPING=1");
    status = 0;

out:
    api_server_stop(server);
    /* The bridge says node.bye and lets an apply under way finish before the listeners go. */
    fleet_bridge_stop(bridge);
    core_registry_free(registry);
    fleet_view_free(view);
    core_events_free(events);
    if (ready_fd >= 0)
        close(ready_fd);
    if (sfd >= 0)
        close(sfd);
    if (status == 0)
        core_log_info("stopped");
out_token:
    OPENSSL_cleanse(&fleet.conf, sizeof(fleet.conf));
    if (token) {
        OPENSSL_cleanse(token, token_len);
        free(token);
    }
    api_tls_fini(&tls);
    return status;
}

static const struct {
    int (*main)(int argc, char **argv);
    const struct cli_command *cmd;
} verbs[] = {
    {daemon_main, &daemon_command},     {cli_echo_main, &cli_echo_command},
    {cli_date_main, &cli_date_command}, {cli_backup_main, &cli_backup_command},
    {cli_ctl_main, &cli_ctl_command},   {cli_fleet_main, &cli_fleet_command},
};

static void usage(void)
{
    printf("Usage: sockserv COMMAND [ARGS...]\n"
           "\n"
           "Classic socket services (echo, date, backup) behind a REST/JSON control plane.\n"
           "\n"
           "Commands:\n");
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        cli_help_row(stdout, verbs[i].cmd->name, verbs[i].cmd->self.brief);
    printf("\nOptions:\n");
    cli_help_row(stdout, "-h, --help",
                 "show this help and exit (COMMAND --help: the command's own)");
    cli_help_row(stdout, "-V, --version", "show the version and exit");
}

/* A usage error of the command itself: what (and arg, "" for none) on stderr. Returns 2. */
static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, *arg ? "sockserv: %s '%s'" : "sockserv: %s%s", what, arg);
    fputs("\nUsage: sockserv COMMAND [ARGS...]  (daemon, echo, date, backup, ctl, fleet)\n"
          "Try 'sockserv --help'.\n",
          stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("missing command", "");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage();
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        cli_version_print();
        return 0;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[1], verbs[i].cmd->name) == 0)
            return verbs[i].main(argc - 1, argv + 1);
    return usage_error(argv[1][0] == '-' ? "unknown option" : "unknown command", argv[1]);
}
