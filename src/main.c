/*
 * sockserv: the command's verbs, and the daemon's start and stop order.
 *
 * Start: read the arguments and the token file, refuse an API address that is not loopback
 * without a token (before anything is bound), block the signals (before any thread), create the
 * state directory, load the listener set (state file, else the embedded defaults) and start its
 * listeners, start the API, say ready (--ready-fd, and READY=1 to systemd). Stop, on SIGINT or
 * SIGTERM: say STOPPING=1, stop the API (no new changes; its Unix socket file is removed), then
 * stop every listener (stop accepting, cut connections, join threads, close fds); the state
 * file already holds the last change. Then free the event bus, which nobody holds any more.
 * Exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "cli/ctl.h"
#include "cli/date.h"
#include "core/addr.h"
#include "core/events.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/revisions.h"
#include "core/service.h"
#include "core/store.h"
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
           "  ctl        drive a running daemon through its REST API\n"
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
           "  --api HOST:PORT     where the REST API listens (default %s; port 0: any);\n"
           "                      an address that is not loopback needs --token-file and\n"
           "                      --api-tls-cert/--api-tls-key (or --api-insecure-plain-http)\n"
           "  --api unix:PATH     listen on a Unix socket instead\n"
           "  --api-mode MODE     the Unix socket's file mode, in octal (default 0600)\n"
           "  --token-file FILE   require 'Authorization: Bearer TOKEN' on every request but\n"
           "                      health and the dashboard's files; TOKEN is FILE's content\n"
           "  --api-tls-cert FILE serve the API over HTTPS (TLS 1.2 or newer) with this PEM\n"
           "                      certificate (chain); needs --api-tls-key\n"
           "  --api-tls-key FILE  the certificate's PEM private key (unencrypted)\n"
           "  --api-insecure-plain-http\n"
           "                      accept plain HTTP on an address that is not loopback: the\n"
           "                      token travels in clear (a trusted network only)\n"
           "  --allow-host NAME   a host name requests may carry in Host and Origin besides\n"
           "                      the API's address (repeatable)\n"
           "  --state-dir DIR     where the listener set is kept (default: $STATE_DIRECTORY,\n"
           "                      else /var/lib/sockserv as root, else\n"
           "                      $XDG_STATE_HOME/sockserv or ~/.local/state/sockserv)\n"
           "  --no-defaults       on a first start, start with no listener\n"
           "  --ready-fd FD       when serving, write the API's URL (or unix:PATH) and a\n"
           "                      newline to FD\n"
           "  --log-level LEVEL   error, warn, info (default) or debug\n"
           "  -h, --help          show this help\n"
           "\n"
           "SIGINT or SIGTERM stop it gracefully; it exits 0. Under systemd (Type=notify) it\n"
           "says READY=1 once serving and STOPPING=1 when it stops.\n",
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

static int daemon_main(int argc, char **argv)
{
    enum {
        OPT_API = 256,
        OPT_API_MODE,
        OPT_TOKEN_FILE,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_PLAIN_HTTP,
        OPT_ALLOW_HOST,
        OPT_STATE_DIR,
        OPT_NO_DEFAULTS,
        OPT_READY_FD,
        OPT_LOG_LEVEL
    };
    static const struct option longopts[] = {
        {"api", required_argument, NULL, OPT_API},
        {"api-mode", required_argument, NULL, OPT_API_MODE},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"api-tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"api-tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"api-insecure-plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
        {"allow-host", required_argument, NULL, OPT_ALLOW_HOST},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"no-defaults", no_argument, NULL, OPT_NO_DEFAULTS},
        {"ready-fd", required_argument, NULL, OPT_READY_FD},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
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
    struct signalfd_siginfo si;
    struct core_err err = {0};
    struct sockaddr_storage ss;
    socklen_t ss_len;
    bool defaults = true, has_mode = false, plain_http = false;
    int opt, ready_fd = -1, sfd = -1, r, status = 1;
    size_t n_allow_hosts = 0, token_len = 0;
    unsigned api_mode = API_SERVER_UNIX_MODE;
    char *token = NULL;
    uint16_t port = 0;
    sigset_t mask;
    char *end;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_API:
            api = optarg;
            break;
        case OPT_API_MODE:
            if (parse_mode(optarg, &api_mode) < 0) {
                fprintf(stderr,
                        "sockserv daemon: --api-mode: '%s' is not an octal mode such as "
                        "0600 or 0660\n",
                        optarg);
                return 2;
            }
            has_mode = true;
            break;
        case OPT_TOKEN_FILE:
            token_file = optarg;
            break;
        case OPT_TLS_CERT:
            tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            tls_key = optarg;
            break;
        case OPT_PLAIN_HTTP:
            plain_http = true;
            break;
        case OPT_ALLOW_HOST:
            if (!api_guard_name_is_valid(optarg)) {
                fprintf(stderr,
                        "sockserv daemon: --allow-host: '%s' is not a host name (letters, "
                        "digits, '-', '.', '_'; no port)\n",
                        optarg);
                return 2;
            }
            if (n_allow_hosts == API_GUARD_NAMES_MAX) {
                fprintf(stderr, "sockserv daemon: --allow-host: at most %d names\n",
                        API_GUARD_NAMES_MAX);
                return 2;
            }
            allow_hosts[n_allow_hosts++] = optarg;
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
    if (!tls_cert != !tls_key) {
        fprintf(stderr, "sockserv daemon: --api-tls-cert and --api-tls-key go together\n");
        return 2;
    }
    if (strncmp(api, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0) {
        if (tls_cert || plain_http) {
            fprintf(stderr, "sockserv daemon: --api-tls-cert, --api-tls-key and "
                            "--api-insecure-plain-http apply to --api HOST:PORT only\n");
            return 2;
        }
        unix_path = api + strlen(UNIX_PREFIX);
        if (!*unix_path || strlen(unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            fprintf(stderr, "sockserv daemon: --api unix:PATH: PATH is 1 to %zu bytes long\n",
                    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return 2;
        }
        (void)snprintf(where, sizeof(where), "%s", api);
    } else {
        if (has_mode) {
            fprintf(stderr, "sockserv daemon: --api-mode applies to --api unix:PATH only\n");
            return 2;
        }
        if (core_hostport_parse(api, host, sizeof(host), &port, &err) < 0) {
            fprintf(stderr, "sockserv daemon: --api: %s\n", err.msg);
            return 2;
        }
        /* Before anything is bound: an API others can reach needs a token. */
        if (core_addr_parse(host, port, &ss, &ss_len) < 0) {
            fprintf(stderr, "sockserv daemon: --api: %s is not a numeric address\n", host);
            return 2;
        }
        if (!core_addr_is_loopback((const struct sockaddr *)&ss) && !token_file) {
            fprintf(stderr,
                    "sockserv daemon: --api %s: %s is not a loopback address, so anyone who "
                    "can reach it could control the daemon; pass --token-file FILE (see the "
                    "README, Security)\n",
                    api, host);
            return 2;
        }
        /* A token sent in clear on a network can be read off the wire. */
        if (!core_addr_is_loopback((const struct sockaddr *)&ss) && !tls_cert && !plain_http) {
            fprintf(stderr,
                    "sockserv daemon: --api %s: %s is not a loopback address, so the token would "
                    "cross the network in clear; pass --api-tls-cert FILE --api-tls-key FILE, "
                    "or --api-insecure-plain-http to accept that (see the README, Security)\n",
                    api, host);
            return 2;
        }
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
    core_registry_free(registry);
    core_events_free(events);
    if (ready_fd >= 0)
        close(ready_fd);
    if (sfd >= 0)
        close(sfd);
    if (status == 0)
        core_log_info("stopped");
out_token:
    if (token) {
        OPENSSL_cleanse(token, token_len);
        free(token);
    }
    api_tls_fini(&tls);
    return status;
}

static const struct {
    const char *name;
    int (*main)(int argc, char **argv);
} verbs[] = {
    {"daemon", daemon_main},     {"echo", cli_echo_main}, {"date", cli_date_main},
    {"backup", cli_backup_main}, {"ctl", cli_ctl_main},
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
