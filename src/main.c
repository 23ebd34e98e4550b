/*
 * sockserv: the command's verbs, and the daemon's start and stop order.
 *
 * Start: block the signals (before any thread), read the arguments, create the state directory,
 * load the listener set (state file, else the embedded defaults) and start its listeners,
 * start the API, say ready. Stop, on SIGINT or SIGTERM: stop the API (no new changes), then
 * stop every listener (stop accepting, cut connections, join threads, close fds); the state
 * file already holds the last change. Then free the event bus, which nobody holds any more.
 * Exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "sockserv-config.h"
#include "api/server.h"
#include "cli/backup.h"
#include "cli/cli.h"
#include "cli/date.h"
#include "core/addr.h"
#include "core/events.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/service.h"
#include "core/store.h"
#include "svc/backup.h"
#include "svc/date.h"
#include "svc/echo.h"

#define DEFAULT_API "127.0.0.1:8400"

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

static void usage(void)
{
    printf("Usage: sockserv COMMAND [ARGS...]\n"
           "\n"
           "Classic socket services (echo, date, backup) behind a REST/JSON control plane.\n"
           "\n"
           "Commands:\n"
           "  daemon     run the daemon: the REST API and the listeners it manages\n"
           "  echo       send a message to an echo server and print the reply\n"
           "  date       ask a date server for the current date and print it\n"
           "  backup     upload, restore and list files on a backup server\n"
           "\n"
           "Options:\n"
           "  -h, --help     show this help (COMMAND --help: the command's own)\n"
           "  -V, --version  show the version\n");
}

static void daemon_usage(void)
{
    printf("Usage: sockserv daemon [OPTIONS]\n"
           "\n"
           "Runs the control plane and the listeners. On a first start (no state file) it\n"
           "starts the embedded defaults: echo on TCP and UDP port 7007, date on TCP and\n"
           "UDP port 1313, backup on TCP port 32400.\n"
           "\n"
           "Options:\n"
           "  --api HOST:PORT     where the REST API listens (default %s; port 0: any)\n"
           "  --state-dir DIR     where the listener set is kept (default: $STATE_DIRECTORY,\n"
           "                      else /var/lib/sockserv as root, else\n"
           "                      $XDG_STATE_HOME/sockserv or ~/.local/state/sockserv)\n"
           "  --no-defaults       on a first start, start with no listener\n"
           "  --ready-fd FD       when serving, write the API's URL and a newline to FD\n"
           "  --log-level LEVEL   error, warn, info (default) or debug\n"
           "  -h, --help          show this help\n"
           "\n"
           "SIGINT or SIGTERM stop it gracefully; it exits 0.\n",
           DEFAULT_API);
}

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

/* Writes the API's URL to fd and closes it. */
static void say_ready(int fd, const char *host, uint16_t port)
{
    char line[128];
    int n = snprintf(line, sizeof(line), strchr(host, ':') ? "http://[%s]:%u\n" : "http://%s:%u\n",
                     host, port);

    if (fd >= 0) {
        (void)!write(fd, line, (size_t)n);
        close(fd);
    }
    core_log_info("API listening on %.*s", n - 1, line);
}

static int daemon_main(int argc, char **argv)
{
    enum { OPT_API = 256, OPT_STATE_DIR, OPT_NO_DEFAULTS, OPT_READY_FD, OPT_LOG_LEVEL };
    static const struct option longopts[] = {
        {"api", required_argument, NULL, OPT_API},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"no-defaults", no_argument, NULL, OPT_NO_DEFAULTS},
        {"ready-fd", required_argument, NULL, OPT_READY_FD},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *api = DEFAULT_API;
    char state_dir[PATH_MAX] = "", host[CORE_ADDR_STRLEN];
    struct core_events *events = NULL;
    struct core_registry *registry = NULL;
    struct api_server *server = NULL;
    struct signalfd_siginfo si;
    struct core_err err = {0};
    bool defaults = true;
    int opt, ready_fd = -1, sfd = -1, r, status = 1;
    uint16_t port;
    sigset_t mask;
    char *end;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_API:
            api = optarg;
            break;
        case OPT_STATE_DIR:
            snprintf(state_dir, sizeof(state_dir), "%s", optarg);
            break;
        case OPT_NO_DEFAULTS:
            defaults = false;
            break;
        case OPT_READY_FD:
            errno = 0;
            ready_fd = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || errno || ready_fd < 0) {
                fprintf(stderr, "sockserv daemon: --ready-fd: '%s' is not a descriptor\n", optarg);
                return 2;
            }
            break;
        case OPT_LOG_LEVEL:
            r = parse_log_level(optarg);
            if (r < 0) {
                fprintf(stderr, "sockserv daemon: --log-level: one of error, warn, info, debug\n");
                return 2;
            }
            core_log_set_level((enum core_log_level)r);
            break;
        case 'h':
            daemon_usage();
            return 0;
        default:
            fprintf(stderr, "Try 'sockserv daemon --help'.\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr,
                "sockserv daemon: unexpected argument '%s'\nTry 'sockserv daemon --help'.\n",
                argv[optind]);
        return 2;
    }
    if (core_hostport_parse(api, host, sizeof(host), &port, &err) < 0) {
        fprintf(stderr, "sockserv daemon: --api: %s\n", err.msg);
        return 2;
    }
    if (!state_dir[0] && default_state_dir(state_dir, sizeof(state_dir)) < 0) {
        fprintf(stderr, "sockserv daemon: no state directory: pass --state-dir DIR\n");
        return 2;
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
        return 1;
    }

    r = core_fs_mkdir_p(state_dir, 0700);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: state directory %s: %s\n", state_dir, strerror(-r));
        goto out;
    }
    r = core_events_new(&events);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: %s\n", strerror(-r));
        goto out;
    }
    r = core_registry_new(
        &(struct core_registry_opts){
            .services = &service_table, .state_dir = state_dir, .persist = true, .events = events},
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
    r = api_server_start(
        &(struct api_server_opts){
            .host = host, .port = port, .registry = registry, .events = events},
        &server, &err);
    if (r < 0) {
        fprintf(stderr, "sockserv daemon: cannot serve the API on %s: %s\n", api,
                err.msg[0] ? err.msg : strerror(-r));
        goto out;
    }
    core_log_info("sockserv %s: %zu listeners, state in %s", SOCKSERV_VERSION,
                  core_registry_count(registry), state_dir);
    say_ready(ready_fd, host, api_server_port(server));
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
    status = 0;

out:
    api_server_stop(server);
    core_registry_free(registry);
    core_events_free(events);
    if (ready_fd >= 0)
        close(ready_fd);
    if (sfd >= 0)
        close(sfd);
    if (status == 0)
        core_log_info("stopped");
    return status;
}

static const struct {
    const char *name;
    int (*main)(int argc, char **argv);
} verbs[] = {
    {"daemon", daemon_main},
    {"echo", cli_echo_main},
    {"date", cli_date_main},
    {"backup", cli_backup_main},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage();
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("sockserv %s\n", SOCKSERV_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].main(argc - 1, argv + 1);
    fprintf(stderr, "sockserv: unknown command '%s'\nTry 'sockserv --help'.\n", argv[1]);
    return 2;
}
