#include "fleet/amqp.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include "fleet/wire.h"

#define CREDENTIALS_MAX 1024

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static int check_tls_file(const char *path, const char *flag, char *dst, size_t len,
                          struct core_err *err)
{
    if (!path)
        return 0;
    if (strlen(path) >= len)
        return core_err_set(err, -EINVAL, flag + 2, "%s: path too long", flag);
    if (access(path, R_OK) < 0) {
        int r = -errno;
        return core_err_set(err, r, flag + 2, "%s %s: %s", flag, path, strerror(-r));
    }
    copy_str(dst, len, path);
    return 0;
}

static int read_credentials(const char *path, struct fleet_amqp_conf *conf, struct core_err *err)
{
    char buf[CREDENTIALS_MAX + 1];
    size_t n = 0;
    int r = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        r = -errno;
        return core_err_set(err, r, "amqp-credentials", "--amqp-credentials %s: %s", path,
                            strerror(-r));
    }
    for (;;) {
        ssize_t got = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = core_err_set(err, -errno, "amqp-credentials", "--amqp-credentials %s: %s", path,
                             strerror(errno));
            goto out_close;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n == sizeof(buf) - 1) {
            r = core_err_set(err, -EINVAL, "amqp-credentials",
                             "--amqp-credentials %s: longer than %d bytes", path, CREDENTIALS_MAX);
            goto out_close;
        }
    }
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    char *colon = strchr(buf, ':');
    if (!colon || colon == buf || strchr(buf, '\n')) {
        r = core_err_set(err, -EINVAL, "amqp-credentials",
                         "--amqp-credentials %s: expected one line USER:PASSWORD", path);
        goto out_wipe;
    }
    *colon = '\0';
    if (strlen(buf) >= sizeof(conf->user) || strlen(colon + 1) >= sizeof(conf->password)) {
        r = core_err_set(err, -EINVAL, "amqp-credentials",
                         "--amqp-credentials %s: user or password too long", path);
        goto out_wipe;
    }
    copy_str(conf->user, sizeof(conf->user), buf);
    copy_str(conf->password, sizeof(conf->password), colon + 1);
out_wipe:
    memset(buf, 0, sizeof(buf));
out_close:
    close(fd);
    return r;
}

int fleet_amqp_opts_check(const struct fleet_amqp_opts *opts, struct fleet_amqp_conf *ret,
                          struct core_err *err)
{
    const char *url = opts->url ? opts->url : FLEET_AMQP_DEFAULT_URL;
    struct fleet_amqp_conf *conf;
    struct amqp_connection_info info;
    char *copy;
    int r;

    if (strncmp(url, "amqp://", 7) != 0 && strncmp(url, "amqps://", 8) != 0)
        return core_err_set(err, -EINVAL, "amqp", "--amqp: expected an amqp:// or amqps:// URL");
    conf = calloc(1, sizeof(*conf));
    copy = strdup(url);
    if (!conf || !copy) {
        r = core_err_set(err, -ENOMEM, "amqp", "out of memory");
        goto out_free;
    }
    amqp_default_connection_info(&info);
    if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
        r = core_err_set(
            err, -EINVAL, "amqp",
            "--amqp: not a valid URL (amqp[s]://[USER[:PASSWORD]@]HOST[:PORT][/VHOST])");
        goto out_free;
    }
    if (!info.host || !*info.host || strlen(info.host) >= sizeof(conf->host) ||
        strlen(info.vhost) >= sizeof(conf->vhost) || strlen(info.user) >= sizeof(conf->user) ||
        strlen(info.password) >= sizeof(conf->password)) {
        r = core_err_set(err, -EINVAL, "amqp", "--amqp: host, vhost, user or password too long");
        goto out_free;
    }
    if (info.port <= 0 || info.port > 65535) {
        r = core_err_set(err, -EINVAL, "amqp", "--amqp: port must be 1-65535");
        goto out_free;
    }
    conf->tls = info.ssl;
    conf->port = info.port;
    copy_str(conf->host, sizeof(conf->host), info.host);
    /* "amqp://host/" names the default vhost "/", as every client of the broker reads it. */
    copy_str(conf->vhost, sizeof(conf->vhost), *info.vhost ? info.vhost : "/");
    copy_str(conf->user, sizeof(conf->user), info.user);
    copy_str(conf->password, sizeof(conf->password), info.password);
    if (opts->credentials_file) {
        r = read_credentials(opts->credentials_file, conf, err);
        if (r < 0)
            goto out_free;
    }
    if ((opts->cacert || opts->cert || opts->key) && !conf->tls) {
        r = core_err_set(err, -EINVAL, "amqp", "--amqp: TLS files need an amqps:// URL");
        goto out_free;
    }
    if (!opts->cert != !opts->key) {
        r = core_err_set(err, -EINVAL, opts->cert ? "amqp-key" : "amqp-cert",
                         "--amqp-cert and --amqp-key go together");
        goto out_free;
    }
    r = check_tls_file(opts->cacert, "--amqp-cacert", conf->cacert, sizeof(conf->cacert), err);
    if (r == 0)
        r = check_tls_file(opts->cert, "--amqp-cert", conf->cert, sizeof(conf->cert), err);
    if (r == 0)
        r = check_tls_file(opts->key, "--amqp-key", conf->key, sizeof(conf->key), err);
    if (r < 0)
        goto out_free;
    conf->heartbeat_s = opts->heartbeat_s ? opts->heartbeat_s : FLEET_AMQP_HEARTBEAT_DEFAULT;
    if (conf->heartbeat_s < 1 || conf->heartbeat_s > 60) {
        r = core_err_set(err, -EINVAL, "amqp-heartbeat", "--amqp-heartbeat: must be 1-60 seconds");
        goto out_free;
    }
    copy_str(conf->connection_name, sizeof(conf->connection_name),
             opts->connection_name ? opts->connection_name : "sockserv");
    conf->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : FLEET_AMQP_TIMEOUT_DEFAULT_MS;
    snprintf(conf->display, sizeof(conf->display), "%s://%s@%s:%d/%s", conf->tls ? "amqps" : "amqp",
             conf->user, conf->host, conf->port, strcmp(conf->vhost, "/") ? conf->vhost : "");
    *ret = *conf;
    r = 0;
out_free:
    if (conf)
        memset(conf->password, 0, sizeof(conf->password));
    if (copy)
        memset(copy, 0, strlen(copy));
    free(copy);
    free(conf);
    return r;
}

static const char *status_text(int status)
{
    switch (status) {
    case AMQP_STATUS_TIMEOUT:
        return "timed out";
    case AMQP_STATUS_HEARTBEAT_TIMEOUT:
        return "heartbeat timed out (the broker went silent)";
    case AMQP_STATUS_CONNECTION_CLOSED:
    case AMQP_STATUS_SOCKET_CLOSED:
        return "connection closed";
    case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED:
        return "host name not resolved";
    default:
        return amqp_error_string2(status);
    }
}

int fleet_amqp_status_check(int status, const char *what, struct core_err *err)
{
    const char *sep = what ? ": " : "";
    int r;

    if (status == AMQP_STATUS_OK)
        return 0;
    switch (status) {
    case AMQP_STATUS_TIMEOUT:
        r = -ETIMEDOUT;
        break;
    case AMQP_STATUS_NO_MEMORY:
        r = -ENOMEM;
        break;
    case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED:
        r = -EHOSTUNREACH;
        break;
    case AMQP_STATUS_SOCKET_ERROR:
    case AMQP_STATUS_TCP_ERROR:
    case AMQP_STATUS_CONNECTION_CLOSED:
    case AMQP_STATUS_SOCKET_CLOSED:
    case AMQP_STATUS_HEARTBEAT_TIMEOUT:
        r = -ECONNRESET;
        break;
    case AMQP_STATUS_SSL_ERROR:
    case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
    case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
    case AMQP_STATUS_SSL_CONNECTION_FAILED:
        return core_err_set(err, -EPROTO, NULL, "%s%sTLS: %s", what ? what : "", sep,
                            amqp_error_string2(status));
    default:
        r = -EPROTO;
        break;
    }
    return core_err_set(err, r, NULL, "%s%s%s", what ? what : "", sep, status_text(status));
}

static int code_errno(int code)
{
    switch (code) {
    case AMQP_ACCESS_REFUSED:
        return -EACCES;
    case AMQP_NOT_FOUND:
        return -ENOENT;
    case AMQP_RESOURCE_LOCKED:
        return -EBUSY;
    case AMQP_PRECONDITION_FAILED:
        return -EINVAL;
    case AMQP_CONNECTION_FORCED:
        return -ECONNRESET;
    default:
        return -EPROTO;
    }
}

int fleet_amqp_reply_check(amqp_rpc_reply_t r, const char *what, struct core_err *err)
{
    const char *w = what ? what : "";
    const char *sep = what ? ": " : "";

    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_NONE:
        return core_err_set(err, -EPROTO, NULL, "%s%sno reply from the broker", w, sep);
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return fleet_amqp_status_check(r.library_error, what, err);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *m = r.reply.decoded;
            int code = code_errno(m->reply_code);
            if (m->reply_code != AMQP_ACCESS_REFUSED && code == -EACCES)
                code = -EPROTO;
            return core_err_set(err, code == -EPROTO ? -ECONNRESET : code, NULL, "%s%s%.*s", w, sep,
                                (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        }
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *m = r.reply.decoded;
            return core_err_set(err, code_errno(m->reply_code), NULL, "%s%s%.*s", w, sep,
                                (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        }
        return core_err_set(err, -EPROTO, NULL, "%s%sunexpected method 0x%08x", w, sep,
                            (unsigned)r.reply.id);
    }
    return core_err_set(err, -EPROTO, NULL, "%s%sunknown reply", w, sep);
}

static void tune_socket(int fd, const struct fleet_amqp_conf *conf)
{
    int on = 1;
    int idle = conf->heartbeat_s;
    int intvl = conf->heartbeat_s > 1 ? conf->heartbeat_s / 2 : 1;
    int cnt = 3;
    unsigned user_timeout = (unsigned)conf->heartbeat_s * 2000u;
    struct timeval snd = {.tv_sec = conf->timeout_ms / 1000,
                          .tv_usec = (conf->timeout_ms % 1000) * 1000};

    if (fd < 0)
        return;
    /* A broker that vanished without a FIN must fail every send too, not only the reads the
     * heartbeat covers. Best effort: a failure here leaves the heartbeat as the only guard. */
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
}

/* librabbitmq 0.11 reports every failed connect as "a socket error occurred"; connect again
 * ourselves to tell the user why (refused, unreachable, timed out). Only on the failure path. */
static int connect_errno(const char *host, int port, int64_t timeout_ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char service[16];
    int r = -ECONNRESET;

    snprintf(service, sizeof(service), "%d", port);
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            r = 0;
        } else if (errno != EINPROGRESS) {
            r = -errno;
        } else {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (poll(&p, 1, (int)timeout_ms) <= 0)
                r = -ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0)
                r = soerr ? -soerr : 0;
        }
        close(fd);
        if (r == 0)
            break;
    }
    freeaddrinfo(res);
    return r;
}

static amqp_table_entry_t bool_entry(const char *key)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e.value.value.boolean = 1;
    return e;
}

int fleet_amqp_open(const struct fleet_amqp_conf *conf, amqp_connection_state_t *ret,
                    struct core_err *err)
{
    struct timeval tv = {.tv_sec = conf->timeout_ms / 1000,
                         .tv_usec = (conf->timeout_ms % 1000) * 1000};
    amqp_connection_state_t c;
    amqp_socket_t *s;
    int r;

    c = amqp_new_connection();
    if (!c)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    s = conf->tls ? amqp_ssl_socket_new(c) : amqp_tcp_socket_new(c);
    if (!s) {
        r = core_err_set(err, -ENOMEM, NULL, "cannot create the %s socket",
                         conf->tls ? "TLS" : "TCP");
        goto out_destroy;
    }
    if (conf->tls) {
        amqp_ssl_socket_set_verify_peer(s, 1);
        amqp_ssl_socket_set_verify_hostname(s, 1);
        r = fleet_amqp_status_check(
            amqp_ssl_socket_set_ssl_versions(s, AMQP_TLSv1_2, AMQP_TLSvLATEST), "TLS versions",
            err);
        if (r == 0 && conf->cacert[0])
            r = fleet_amqp_status_check(amqp_ssl_socket_set_cacert(s, conf->cacert),
                                        "--amqp-cacert", err);
        if (r == 0 && conf->cert[0])
            r = fleet_amqp_status_check(amqp_ssl_socket_set_key(s, conf->cert, conf->key),
                                        "--amqp-cert/--amqp-key", err);
        if (r < 0)
            goto out_destroy;
    }
    r = amqp_socket_open_noblock(s, conf->host, conf->port, &tv);
    if (r == AMQP_STATUS_SOCKET_ERROR || r == AMQP_STATUS_TCP_ERROR) {
        int e = connect_errno(conf->host, conf->port, conf->timeout_ms);
        if (e < 0) {
            r = core_err_set(err, e, NULL, "%s: %s", conf->display,
                             e == -ECONNREFUSED ? "connection refused"
                             : e == -ETIMEDOUT  ? "timed out"
                                                : strerror(-e));
            goto out_destroy;
        }
    }
    r = fleet_amqp_status_check(r, conf->display, err);
    if (r < 0)
        goto out_destroy;
    tune_socket(amqp_get_sockfd(c), conf);
    r = amqp_set_handshake_timeout(c, &tv);
    if (r == AMQP_STATUS_OK)
        r = amqp_set_rpc_timeout(c, &tv);
    r = fleet_amqp_status_check(r, "timeouts", err);
    if (r < 0)
        goto out_destroy;

    amqp_table_entry_t caps[] = {
        bool_entry("connection.blocked"),           bool_entry("consumer_cancel_notify"),
        bool_entry("publisher_confirms"),           bool_entry("basic.nack"),
        bool_entry("authentication_failure_close"),
    };
    amqp_table_entry_t props[2] = {{.key = amqp_cstring_bytes("connection_name")},
                                   {.key = amqp_cstring_bytes("capabilities")}};
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = amqp_cstring_bytes(conf->connection_name);
    props[1].value.kind = AMQP_FIELD_KIND_TABLE;
    props[1].value.value.table.num_entries = (int)(sizeof(caps) / sizeof(caps[0]));
    props[1].value.value.table.entries = caps;
    amqp_table_t table = {.num_entries = 2, .entries = props};

    r = fleet_amqp_reply_check(
        amqp_login_with_properties(c, conf->vhost, 0, 131072, conf->heartbeat_s, &table,
                                   AMQP_SASL_METHOD_PLAIN, conf->user, conf->password),
        conf->display, err);
    if (r < 0)
        goto out_destroy;
    amqp_channel_open(c, FLEET_AMQP_CHANNEL);
    r = fleet_amqp_reply_check(amqp_get_rpc_reply(c), "channel open", err);
    if (r < 0)
        goto out_destroy;
    *ret = c;
    return 0;
out_destroy:
    amqp_destroy_connection(c);
    return r;
}

void fleet_amqp_close(amqp_connection_state_t c, bool graceful)
{
    if (!c)
        return;
    if (graceful) {
        (void)amqp_channel_close(c, FLEET_AMQP_CHANNEL, AMQP_REPLY_SUCCESS);
        (void)amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c);
}

int fleet_amqp_channel_reopen(amqp_connection_state_t c, amqp_channel_t ch, struct core_err *err)
{
    amqp_channel_close_ok_t ok = {0};
    int r;

    r = fleet_amqp_status_check(amqp_send_method(c, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok),
                                "channel close-ok", err);
    if (r < 0)
        return r;
    amqp_channel_open(c, ch);
    return fleet_amqp_reply_check(amqp_get_rpc_reply(c), "channel open", err);
}

static amqp_table_entry_t str_arg(const char *key, const char *val)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(val);
    return e;
}

static amqp_table_entry_t long_arg(const char *key, int64_t val)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = val;
    return e;
}

static int declare_stream(amqp_connection_state_t c, amqp_channel_t ch, const char *name,
                          int64_t max_bytes, struct core_err *err)
{
    amqp_table_entry_t args[] = {
        str_arg("x-queue-type", "stream"),
        str_arg("x-max-age", "30D"),
        long_arg("x-max-length-bytes", max_bytes),
        long_arg("x-stream-max-segment-size-bytes", 8388608),
    };
    amqp_table_t t = {.num_entries = (int)(sizeof(args) / sizeof(args[0])), .entries = args};
    char what[300];

    snprintf(what, sizeof(what), "declare %s", name);
    amqp_queue_declare(c, ch, amqp_cstring_bytes(name), 0, 1, 0, 0, t);
    return fleet_amqp_reply_check(amqp_get_rpc_reply(c), what, err);
}

static int bind_queue(amqp_connection_state_t c, amqp_channel_t ch, const char *queue,
                      const char *exchange, const char *key, struct core_err *err)
{
    char what[400];

    snprintf(what, sizeof(what), "bind %s to %s with %s", queue, exchange, key);
    amqp_queue_bind(c, ch, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(key), amqp_empty_table);
    return fleet_amqp_reply_check(amqp_get_rpc_reply(c), what, err);
}

int fleet_amqp_declare(amqp_connection_state_t c, amqp_channel_t ch, const char *prefix,
                       struct core_err *err)
{
    char events[128], rpc[128], desired[128], nodes[128], what[160];
    int r;

    if (snprintf(events, sizeof(events), "%s.events", prefix) >= (int)sizeof(events))
        return core_err_set(err, -EINVAL, "amqp-prefix", "prefix too long");
    snprintf(rpc, sizeof(rpc), "%s.rpc", prefix);
    snprintf(desired, sizeof(desired), "%s.desired", prefix);
    snprintf(nodes, sizeof(nodes), "%s.nodes", prefix);
    for (int i = 0; i < 2; i++) {
        const char *name = i == 0 ? events : rpc;
        snprintf(what, sizeof(what), "declare %s", name);
        amqp_exchange_declare(c, ch, amqp_cstring_bytes(name), amqp_cstring_bytes("topic"), 0, 1, 0,
                              0, amqp_empty_table);
        r = fleet_amqp_reply_check(amqp_get_rpc_reply(c), what, err);
        if (r < 0)
            return r;
    }
    r = declare_stream(c, ch, desired, 268435456, err);
    if (r == 0)
        r = declare_stream(c, ch, nodes, 67108864, err);
    for (size_t i = 0; r == 0 && fleet_nodes_binding(i); i++)
        r = bind_queue(c, ch, nodes, events, fleet_nodes_binding(i), err);
    return r;
}

int fleet_amqp_declare_node_queue(amqp_connection_state_t c, amqp_channel_t ch, const char *prefix,
                                  const char *node, struct core_err *err)
{
    char queue[192], rpc[128], key[128], what[220];
    int r;

    if (snprintf(queue, sizeof(queue), "%s.node.%s", prefix, node) >= (int)sizeof(queue))
        return core_err_set(err, -EINVAL, "node", "node name too long");
    snprintf(rpc, sizeof(rpc), "%s.rpc", prefix);
    snprintf(what, sizeof(what), "declare %s", queue);
    amqp_queue_declare(c, ch, amqp_cstring_bytes(queue), 0, 0, 1, 0, amqp_empty_table);
    r = fleet_amqp_reply_check(amqp_get_rpc_reply(c), what, err);
    if (r < 0)
        return r;
    snprintf(key, sizeof(key), "rpc.%s", node);
    r = bind_queue(c, ch, queue, rpc, key, err);
    if (r == 0)
        r = bind_queue(c, ch, queue, rpc, "rpc.all", err);
    return r;
}

int fleet_amqp_declare_viewer_queue(amqp_connection_state_t c, amqp_channel_t ch,
                                    const char *prefix, const char *const *patterns, size_t n,
                                    char *ret_name, size_t len, struct core_err *err)
{
    amqp_table_entry_t args[] = {long_arg("x-max-length", FLEET_AMQP_VIEWER_MAX_LENGTH)};
    amqp_table_t t = {.num_entries = 1, .entries = args};
    amqp_queue_declare_ok_t *ok;
    char events[128], name[256];
    int r;

    snprintf(events, sizeof(events), "%s.events", prefix);
    ok = amqp_queue_declare(c, ch, amqp_empty_bytes, 0, 0, 1, 1, t);
    r = fleet_amqp_reply_check(amqp_get_rpc_reply(c), "declare viewer queue", err);
    if (r < 0)
        return r;
    if (!ok || ok->queue.len == 0 || ok->queue.len >= sizeof(name) || ok->queue.len >= len)
        return core_err_set(err, -EPROTO, NULL, "declare viewer queue: bad queue name");
    memcpy(name, ok->queue.bytes, ok->queue.len);
    name[ok->queue.len] = '\0';
    for (size_t i = 0; i < n; i++) {
        r = bind_queue(c, ch, name, events, patterns[i], err);
        if (r < 0)
            return r;
    }
    copy_str(ret_name, len, name);
    return 0;
}

int fleet_amqp_consume(amqp_connection_state_t c, amqp_channel_t ch, const char *queue,
                       const struct fleet_amqp_consume_opts *o, char *ret_tag, size_t len,
                       struct core_err *err)
{
    amqp_table_entry_t arg;
    amqp_table_t t = amqp_empty_table;
    amqp_basic_consume_ok_t *ok;
    char what[300];
    int r;

    if (o->prefetch > 0) {
        amqp_basic_qos(c, ch, 0, o->prefetch, 0);
        r = fleet_amqp_reply_check(amqp_get_rpc_reply(c), "basic.qos", err);
        if (r < 0)
            return r;
    }
    switch (o->from) {
    case FLEET_AMQP_FROM_NONE:
        break;
    case FLEET_AMQP_FROM_FIRST:
        arg = str_arg("x-stream-offset", "first");
        break;
    case FLEET_AMQP_FROM_LAST:
        arg = str_arg("x-stream-offset", "last");
        break;
    case FLEET_AMQP_FROM_NEXT:
        arg = str_arg("x-stream-offset", "next");
        break;
    case FLEET_AMQP_FROM_OFFSET:
        arg = long_arg("x-stream-offset", (int64_t)o->offset);
        break;
    }
    if (o->from != FLEET_AMQP_FROM_NONE) {
        t.num_entries = 1;
        t.entries = &arg;
    }
    snprintf(what, sizeof(what), "consume %s", queue);
    ok = amqp_basic_consume(c, ch, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, o->no_ack,
                            o->exclusive, t);
    r = fleet_amqp_reply_check(amqp_get_rpc_reply(c), what, err);
    if (r < 0)
        return r;
    if (ret_tag && ok)
        fleet_amqp_bytes_str(ok->consumer_tag, ret_tag, len);
    return 0;
}

int fleet_amqp_publish(amqp_connection_state_t c, amqp_channel_t ch, const struct fleet_amqp_msg *m,
                       struct core_err *err)
{
    amqp_basic_properties_t p = {0};
    amqp_bytes_t body = {.len = m->len, .bytes = (void *)m->body};

    p._flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_APP_ID_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = m->persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
    p.app_id = amqp_cstring_bytes("sockserv");
    if (m->type) {
        p._flags |= AMQP_BASIC_TYPE_FLAG;
        p.type = amqp_cstring_bytes(m->type);
    }
    if (m->message_id) {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = amqp_cstring_bytes(m->message_id);
    }
    if (m->correlation_id) {
        p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        p.correlation_id = amqp_cstring_bytes(m->correlation_id);
    }
    if (m->reply_to) {
        p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        p.reply_to = amqp_cstring_bytes(m->reply_to);
    }
    if (m->expiration) {
        p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        p.expiration = amqp_cstring_bytes(m->expiration);
    }
    if (m->timestamp_s > 0) {
        p._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p.timestamp = (uint64_t)m->timestamp_s;
    }
    return fleet_amqp_status_check(
        amqp_basic_publish(c, ch, amqp_cstring_bytes(m->exchange ? m->exchange : ""),
                           amqp_cstring_bytes(m->routing_key), m->mandatory, 0, &p, body),
        "publish", err);
}

bool fleet_amqp_header_int(const amqp_basic_properties_t *p, const char *key, int64_t *ret)
{
    size_t klen = strlen(key);

    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return false;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        const amqp_field_value_t *v = &e->value;
        if (e->key.len != klen || memcmp(e->key.bytes, key, klen) != 0)
            continue;
        switch (v->kind) {
        case AMQP_FIELD_KIND_I8:
            *ret = v->value.i8;
            return true;
        case AMQP_FIELD_KIND_U8:
            *ret = v->value.u8;
            return true;
        case AMQP_FIELD_KIND_I16:
            *ret = v->value.i16;
            return true;
        case AMQP_FIELD_KIND_U16:
            *ret = v->value.u16;
            return true;
        case AMQP_FIELD_KIND_I32:
            *ret = v->value.i32;
            return true;
        case AMQP_FIELD_KIND_U32:
            *ret = v->value.u32;
            return true;
        case AMQP_FIELD_KIND_I64:
            *ret = v->value.i64;
            return true;
        case AMQP_FIELD_KIND_U64:
            if (v->value.u64 > INT64_MAX)
                return false;
            *ret = (int64_t)v->value.u64;
            return true;
        default:
            return false;
        }
    }
    return false;
}

void fleet_amqp_bytes_str(amqp_bytes_t b, char *buf, size_t len)
{
    if (len == 0)
        return;
    if (!b.bytes || b.len >= len) {
        buf[0] = '\0';
        return;
    }
    memcpy(buf, b.bytes, b.len);
    buf[b.len] = '\0';
}
