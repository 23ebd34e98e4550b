#include "cli/common.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sockserv-config.h"

static void vsay(const char *verb, const char *fmt, va_list ap)
{
    fprintf(stderr, "sockserv %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_fail(const char *verb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsay(verb, fmt, ap);
    va_end(ap);
    return CLI_EXIT_FAILURE;
}

/* ---- the arguments ---- */

/* What find_opt() answers besides an index in the table. */
enum { OPT_UNKNOWN = -1, OPT_HELP = -2, OPT_VERSION = -3 };

static bool opt_applies(const struct cli_opt *o, int verb)
{
    return o->verbs == 0 || (verb >= 0 && (o->verbs & CLI_VB(verb)));
}

static bool opt_is(const char *name, char short_name, const char *arg, size_t name_len)
{
    if (arg[1] == '-')
        return strlen(name) == name_len && strncmp(name, arg + 2, name_len) == 0;
    return short_name && arg[1] == short_name && arg[2] == '\0';
}

/*
 * The option arg names: first among those that apply to verb (before the verb: those of every
 * verb), then -h/--help and -V/--version, then any other of the table (refused later, once the
 * verb is known, as not applying to it).
 */
static int find_opt(const struct cli_command *cmd, int verb, const char *arg, size_t name_len)
{
    for (size_t i = 0; i < cmd->nopts; i++)
        if (opt_applies(&cmd->opts[i], verb) &&
            opt_is(cmd->opts[i].name, cmd->opts[i].short_name, arg, name_len))
            return (int)i;
    if (opt_is("help", 'h', arg, name_len))
        return OPT_HELP;
    if (opt_is("version", 'V', arg, name_len))
        return OPT_VERSION;
    for (size_t i = 0; i < cmd->nopts; i++)
        if (opt_is(cmd->opts[i].name, cmd->opts[i].short_name, arg, name_len))
            return (int)i;
    return OPT_UNKNOWN;
}

static int find_verb(const struct cli_command *cmd, const char *name)
{
    for (size_t i = 0; i < cmd->nverbs; i++)
        if (strcmp(cmd->verbs[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* "put, get, ls" */
static void verb_list(const struct cli_command *cmd, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < cmd->nverbs && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", cmd->verbs[i].name);
}

static void usage_lines(FILE *f, const struct cli_command *cmd, int verb)
{
    if (verb >= 0) {
        fprintf(f, "Usage: sockserv %s %s\n", cmd->name, cmd->verbs[verb].synopsis);
        return;
    }
    if (cmd->self.synopsis) {
        fprintf(f, "Usage: sockserv %s %s\n", cmd->name, cmd->self.synopsis);
        return;
    }
    for (size_t i = 0; i < cmd->nverbs; i++)
        fprintf(f, "%s sockserv %s %s\n", i ? "      " : "Usage:", cmd->name,
                cmd->verbs[i].synopsis);
}

int cli_args_usage_error(const struct cli_command *cmd, int verb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsay(cmd->name, fmt, ap);
    va_end(ap);
    usage_lines(stderr, cmd, verb);
    fprintf(stderr, "Try 'sockserv %s%s%s --help'.\n", cmd->name, verb >= 0 ? " " : "",
            verb >= 0 ? cmd->verbs[verb].name : "");
    return CLI_EXIT_USAGE;
}

/* The positional arguments' count against what the verb takes. */
static int check_count(const struct cli_command *cmd, const struct cli_args *a)
{
    const struct cli_verb *v = a->verb >= 0 ? &cmd->verbs[a->verb] : &cmd->self;
    char names[256] = "";
    size_t off = 0;

    if (a->npos > v->max_args)
        return cli_args_usage_error(cmd, a->verb, "unexpected argument '%s'", a->pos[v->max_args]);
    if (a->npos >= v->min_args)
        return 0;
    for (int i = a->npos; i < v->min_args && off < sizeof(names); i++)
        off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
                                i == a->npos           ? ""
                                : i + 1 == v->min_args ? " and "
                                                       : ", ",
                                v->arg_names[i] ? v->arg_names[i] : "an argument");
    return cli_args_usage_error(cmd, a->verb, "missing %s", names);
}

int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *ret)
{
    bool options_done = false, help = false, version = false;
    char list[256];

    assert(cmd->nopts <= CLI_OPTS_MAX);
    memset(ret, 0, sizeof(*ret));
    ret->verb = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = NULL, *value = NULL;
        const struct cli_opt *def;
        size_t name_len;
        int o;

        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (cmd->verbs && ret->verb < 0) {
                ret->verb = find_verb(cmd, arg);
                if (ret->verb < 0) {
                    verb_list(cmd, list, sizeof(list));
                    return cli_args_usage_error(cmd, -1, "unknown verb '%s' (%s)", arg, list);
                }
                continue;
            }
            if (ret->npos == CLI_ARGS_MAX)
                return cli_args_usage_error(cmd, ret->verb, "too many arguments (from '%s')", arg);
            ret->pos[ret->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (arg[1] == '-') {
            eq = strchr(arg, '=');
            name_len = eq ? (size_t)(eq - arg - 2) : strlen(arg) - 2;
        } else {
            name_len = strlen(arg) - 1;
        }
        o = find_opt(cmd, ret->verb, arg, name_len);
        if (o == OPT_UNKNOWN)
            return cli_args_usage_error(cmd, ret->verb, "unknown option '%s'", arg);
        if (o == OPT_HELP || o == OPT_VERSION) {
            if (eq)
                return cli_args_usage_error(cmd, ret->verb, "--%.*s takes no value", (int)name_len,
                                            arg + 2);
            help |= o == OPT_HELP;
            version |= o == OPT_VERSION;
            continue;
        }
        def = &cmd->opts[o];
        if (def->arg) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return cli_args_usage_error(cmd, ret->verb, "%s needs a value (%s)", arg, def->arg);
        } else if (eq) {
            return cli_args_usage_error(cmd, ret->verb, "--%s takes no value", def->name);
        }
        if (def->repeat) {
            if (ret->nrepeats == CLI_REPEATS_MAX)
                return cli_args_usage_error(cmd, ret->verb, "too many --%s", def->name);
            ret->repeat_opt[ret->nrepeats] = o;
            ret->repeats[ret->nrepeats++] = value;
        }
        ret->seen[o] = true;
        ret->val[o] = value;
    }
    if (help) {
        cli_help_print(cmd, ret->verb);
        return CLI_EXIT_OK;
    }
    if (version) {
        cli_version_print();
        return CLI_EXIT_OK;
    }
    if (cmd->verbs && ret->verb < 0) {
        verb_list(cmd, list, sizeof(list));
        return cli_args_usage_error(cmd, -1, "missing verb (%s)", list);
    }
    for (size_t o = 0; o < cmd->nopts; o++)
        if (ret->seen[o] && !opt_applies(&cmd->opts[o], ret->verb))
            return cli_args_usage_error(cmd, ret->verb, "--%s does not apply to %s",
                                        cmd->opts[o].name, cmd->verbs[ret->verb].name);
    return check_count(cmd, ret) == 0 ? CLI_ARGS_GO_ON : CLI_EXIT_USAGE;
}

/* ---- the help ---- */

void cli_help_row(FILE *f, const char *left, const char *text)
{
    const int avail = CLI_HELP_WIDTH - CLI_HELP_COLUMN;
    int col = fprintf(f, "  %s", left), used = 0;
    const char *p = text;

    if (col > CLI_HELP_COLUMN - 2) {
        fputc('\n', f);
        col = 0;
    }
    fprintf(f, "%*s", CLI_HELP_COLUMN - col, "");
    while (*p) {
        size_t n = strcspn(p, " \n");

        if (n > 0) {
            if (used > 0 && used + 1 + (int)n > avail) {
                fprintf(f, "\n%*s", CLI_HELP_COLUMN, "");
                used = 0;
            }
            fprintf(f, "%s%.*s", used > 0 ? " " : "", (int)n, p);
            used += (used > 0 ? 1 : 0) + (int)n;
            p += n;
        }
        if (*p == '\n') {
            fprintf(f, "\n%*s", CLI_HELP_COLUMN, "");
            used = 0;
        }
        if (*p)
            p++;
    }
    fputc('\n', f);
}

static void opt_row(const struct cli_opt *o)
{
    char left[96];

    snprintf(left, sizeof(left), "%c%c%c --%s%s%s", o->short_name ? '-' : ' ',
             o->short_name ? o->short_name : ' ', o->short_name ? ',' : ' ', o->name,
             o->arg ? " " : "", o->arg ? o->arg : "");
    cli_help_row(stdout, left, o->help);
}

void cli_help_print(const struct cli_command *cmd, int verb)
{
    const struct cli_verb *v = verb >= 0 ? &cmd->verbs[verb] : &cmd->self;
    bool has_version = false;

    usage_lines(stdout, cmd, verb);
    if (v->brief)
        printf("\n%c%s.\n", toupper((unsigned char)v->brief[0]), v->brief + 1);
    if (cmd->arg_help) {
        printf("\nArguments:\n");
        for (size_t i = 0; cmd->arg_help[i]; i += 2)
            cli_help_row(stdout, cmd->arg_help[i], cmd->arg_help[i + 1]);
    }
    if (verb < 0 && cmd->verbs) {
        printf("\nVerbs:\n");
        for (size_t i = 0; i < cmd->nverbs; i++) {
            const struct cli_verb *vb = &cmd->verbs[i];
            char left[128];
            size_t off = (size_t)snprintf(left, sizeof(left), "%s", vb->name);

            for (int k = 0; k < vb->max_args && vb->arg_names[k] && off < sizeof(left); k++)
                off += (size_t)snprintf(left + off, sizeof(left) - off,
                                        k < vb->min_args ? " %s" : " [%s]", vb->arg_names[k]);
            cli_help_row(stdout, left, vb->brief);
        }
    }
    printf("\nOptions:\n");
    /* The verb's own options first, then those every verb takes. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < cmd->nopts; i++) {
            const struct cli_opt *o = &cmd->opts[i];

            if ((pass == 0) != (o->verbs != 0) || !opt_applies(o, verb))
                continue;
            opt_row(o);
            has_version |= strcmp(o->name, "version") == 0;
        }
    cli_help_row(stdout, "-h, --help", "show this help and exit");
    cli_help_row(stdout, has_version ? "-V" : "-V, --version", "show the version and exit");
    if (verb < 0 && cmd->verbs)
        printf("\n'sockserv %s VERB --help' tells more about each verb.\n", cmd->name);
    if (v->summary)
        printf("\n%s\n", v->summary);
    if (cmd->epilog)
        printf("\n%s", cmd->epilog);
}

void cli_version_print(void)
{
    printf("sockserv %s\n", SOCKSERV_VERSION);
}

int cli_duration_parse(const char *text, int64_t bare_ms, int64_t max_ms, int64_t *ret_ms)
{
    const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"", bare_ms}};
    uint64_t v = 0;
    const char *p = text;

    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > (uint64_t)max_ms)
            return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) != 0)
            continue;
        if (v == 0 || v > (uint64_t)(max_ms / units[i].ms))
            return -EINVAL;
        *ret_ms = (int64_t)v * units[i].ms;
        return 0;
    }
    return -EINVAL;
}

int cli_args_duration(const struct cli_command *cmd, const struct cli_args *args, int opt,
                      int64_t bare_ms, int64_t max_ms, int64_t *ms)
{
    char max[32];

    if (!args->seen[opt] || cli_duration_parse(args->val[opt], bare_ms, max_ms, ms) == 0)
        return 0;
    if (max_ms % 3600000 == 0)
        snprintf(max, sizeof(max), "%" PRId64 "h", max_ms / 3600000);
    else
        snprintf(max, sizeof(max), "%" PRId64 "ms", max_ms);
    return cli_args_usage_error(cmd, args->verb,
                                "--%s: '%s' is not a duration (500ms, 10s, 2m; at most %s%s)",
                                cmd->opts[opt].name, args->val[opt], max,
                                bare_ms == 1      ? "; a bare number is milliseconds"
                                : bare_ms == 1000 ? "; a bare number is seconds"
                                                  : "");
}

int cli_peer_parse(const struct cli_command *cmd, int verb, const char *host, const char *port,
                   struct cli_peer *ret)
{
    unsigned long v;

    if (host[0] == '\0')
        return cli_args_usage_error(cmd, verb, "HOST is empty");
    if (!cli_parse_ulong(port, 1, 65535, &v))
        return cli_args_usage_error(cmd, verb, "PORT: '%s' is not a port number from 1 to 65535",
                                    port);
    ret->host = host;
    ret->port = port;
    snprintf(ret->name, sizeof(ret->name), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    return 0;
}

int cli_remaining_ms(int64_t deadline)
{
    int64_t left = deadline - core_now_ms();

    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

bool cli_parse_ulong(const char *text, unsigned long min, unsigned long max, unsigned long *ret)
{
    unsigned long v;
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

int cli_resolve(const char *verb, const char *host, const char *port, int socktype,
                struct addrinfo **ret)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = socktype,
        .ai_flags = AI_NUMERICSERV,
    };
    int r;

    r = getaddrinfo(host, port, &hints, ret);
    if (r != 0)
        return cli_fail(verb, "cannot resolve %s: %s", host,
                        r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
    return 0;
}

int cli_tcp_connect(const struct addrinfo *list, int64_t deadline)
{
    int err = ENOENT;

    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        struct pollfd pfd;
        socklen_t len = sizeof(err);
        int fd, r;

        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return fd;
        if (errno != EINPROGRESS) {
            err = errno;
            close(fd);
            continue;
        }
        pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
        do {
            r = poll(&pfd, 1, cli_remaining_ms(deadline));
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            close(fd);
            return -ETIMEDOUT;
        }
        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0)
            return fd;
        close(fd);
    }
    return -err;
}

int cli_tls_args(const struct cli_command *cmd, int verb, const struct cli_args *args, int first,
                 struct cli_tls_opts *ret)
{
    struct cli_tls_opts t = {
        .on = args->seen[first + CLI_TLS_OPT_TLS],
        .cacert =
            args->seen[first + CLI_TLS_OPT_CACERT] ? args->val[first + CLI_TLS_OPT_CACERT] : NULL,
        .cert = args->seen[first + CLI_TLS_OPT_CERT] ? args->val[first + CLI_TLS_OPT_CERT] : NULL,
        .key = args->seen[first + CLI_TLS_OPT_KEY] ? args->val[first + CLI_TLS_OPT_KEY] : NULL,
    };

    if (!t.on && (t.cacert || t.cert || t.key))
        return cli_args_usage_error(cmd, verb, "--%s needs --tls",
                                    t.cacert ? "cacert"
                                    : t.cert ? "cert"
                                             : "key");
    if (!t.cert != !t.key)
        return cli_args_usage_error(cmd, verb, "--cert and --key go together");
    *ret = t;
    return 0;
}

/* The latest OpenSSL error of this thread as text, the queue cleared. */
static const char *tls_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();

    if (!e)
        (void)snprintf(buf, len, "the connection was closed");
    else
        (void)snprintf(buf, len, "%s",
                       ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown error");
    ERR_clear_error();
    return buf;
}

/* A client context: TLS >= 1.2, the server verified against tls->cacert or the system's CAs,
 * a client certificate when given. NULL after printing why. */
static SSL_CTX *tls_ctx_new(const char *verb, const struct cli_tls_opts *tls)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char e[160];

    if (!ctx) {
        cli_fail(verb, "TLS: %s", tls_error(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Read ahead: one read takes what the socket holds, up to CLI_TLS_READ_AHEAD, instead of a
     * record's header and then its body (two system calls per 16 KiB). A 256 MiB restore over
     * TLS: 560-615 ms before, 543-580 ms after, interleaved here. What is read and not yet
     * decrypted is pending (cli_stream_pending()). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, CLI_TLS_READ_AHEAD);
    if (tls->cacert) {
        if (access(tls->cacert, R_OK) < 0) {
            cli_fail(verb, "--cacert %s: %s", tls->cacert, strerror(errno));
            goto out_free;
        }
        if (SSL_CTX_load_verify_locations(ctx, tls->cacert, NULL) != 1) {
            cli_fail(verb, "--cacert %s: no PEM certificate (%s)", tls->cacert,
                     tls_error(e, sizeof(e)));
            goto out_free;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        cli_fail(verb, "TLS: cannot load the system's CA certificates (%s)",
                 tls_error(e, sizeof(e)));
        goto out_free;
    }
    if (tls->cert) {
        if (access(tls->cert, R_OK) < 0 || access(tls->key, R_OK) < 0) {
            cli_fail(verb, "%s %s: %s", access(tls->cert, R_OK) < 0 ? "--cert" : "--key",
                     access(tls->cert, R_OK) < 0 ? tls->cert : tls->key, strerror(errno));
            goto out_free;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1) {
            cli_fail(verb, "--cert %s: no PEM certificate (%s)", tls->cert,
                     tls_error(e, sizeof(e)));
            goto out_free;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            cli_fail(verb, "--key %s: not the private key of --cert (%s)", tls->key,
                     tls_error(e, sizeof(e)));
            goto out_free;
        }
    }
    return ctx;

out_free:
    SSL_CTX_free(ctx);
    return NULL;
}

/* The outcome of an SSL call that returned n: -EAGAIN (s->want set), 0 (close_notify), or a
 * negative errno. */
static int tls_io_error(struct cli_stream *s, int n)
{
    int e = SSL_get_error(s->ssl, n), saved = errno;

    switch (e) {
    case SSL_ERROR_WANT_READ:
        s->want = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        s->want = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (saved == EAGAIN || saved == EINTR)
            return -EAGAIN;
        return saved && ERR_peek_error() == 0 ? -saved : -ECONNRESET;
    default:
        (void)tls_error(s->error, sizeof(s->error));
        return -EPROTO;
    }
}

const char *cli_stream_strerror(const struct cli_stream *s, int error)
{
    if (error == -EPROTO && s->ssl && s->error[0])
        return s->error;
    return strerror(-error);
}

/* The TLS handshake on s->fd, verifying the server as peer->host. 0, or 1 after printing. */
static int tls_handshake(struct cli_stream *s, const char *verb, const struct cli_peer *peer,
                         const struct cli_tls_opts *tls, int64_t deadline)
{
    unsigned char ip[16];
    bool is_ip =
        inet_pton(AF_INET, peer->host, ip) == 1 || inet_pton(AF_INET6, peer->host, ip) == 1;
    char e[160];
    SSL *ssl;

    s->ctx = tls_ctx_new(verb, tls);
    if (!s->ctx)
        return CLI_EXIT_FAILURE;
    ssl = SSL_new(s->ctx);
    if (!ssl || SSL_set_fd(ssl, s->fd) != 1) {
        SSL_free(ssl);
        return cli_fail(verb, "TLS: %s", tls_error(e, sizeof(e)));
    }
    s->ssl = ssl;
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), peer->host) != 1)
            return cli_fail(verb, "TLS: %s", tls_error(e, sizeof(e)));
    } else if (SSL_set1_host(ssl, peer->host) != 1 ||
               SSL_set_tlsext_host_name(ssl, peer->host) != 1) {
        return cli_fail(verb, "TLS: %s", tls_error(e, sizeof(e)));
    }
    SSL_set_connect_state(ssl);
    for (;;) {
        struct pollfd pfd = {.fd = s->fd};
        int n, r;

        ERR_clear_error();
        n = SSL_do_handshake(ssl);
        if (n == 1)
            return 0;
        r = tls_io_error(s, n);
        if (r != -EAGAIN) {
            long v = SSL_get_verify_result(ssl);

            if (v != X509_V_OK)
                return cli_fail(verb, "TLS with %s failed: certificate verify failed (%s)",
                                peer->name, X509_verify_cert_error_string(v));
            return cli_fail(verb, "TLS with %s failed: %s", peer->name, cli_stream_strerror(s, r));
        }
        pfd.events = s->want;
        do {
            r = poll(&pfd, 1, cli_remaining_ms(deadline));
        } while (r < 0 && errno == EINTR);
        if (r == 0)
            return cli_fail(verb, "TLS with %s failed: no answer in time", peer->name);
    }
}

int cli_stream_connect(struct cli_stream *ret, const char *verb, const struct cli_peer *peer,
                       const struct addrinfo *list, const struct cli_tls_opts *tls,
                       int64_t deadline)
{
    struct cli_stream s = {.fd = -1};
    int r;

    s.fd = cli_tcp_connect(list, deadline);
    if (s.fd < 0)
        return cli_fail(verb, "cannot connect to %s: %s", peer->name,
                        s.fd == -ETIMEDOUT ? "no answer in time" : strerror(-s.fd));
    if (tls && tls->on) {
        /* A close_notify written to a server that is gone must not kill the command. */
        signal(SIGPIPE, SIG_IGN);
        r = tls_handshake(&s, verb, peer, tls, deadline);
        if (r != 0) {
            s.closed = true; /* no close_notify after a failed handshake */
            cli_stream_close(&s);
            return r;
        }
    }
    *ret = s;
    return 0;
}

ssize_t cli_stream_read(struct cli_stream *s, void *buf, size_t n)
{
    ssize_t k;
    int r;

    if (!s->ssl) {
        k = recv(s->fd, buf, n, 0);
        if (k >= 0)
            return k;
        return errno == EINTR ? -EAGAIN : -errno;
    }
    ERR_clear_error();
    s->want = 0;
    r = SSL_read(s->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    s->starved = false;
    if (r > 0)
        return r;
    r = tls_io_error(s, r);
    s->starved = r == -EAGAIN && s->want == POLLIN;
    ERR_clear_error();
    return r;
}

ssize_t cli_stream_write(struct cli_stream *s, const void *p, size_t n)
{
    ssize_t k;
    int r;

    if (!s->ssl) {
        k = send(s->fd, p, n, MSG_NOSIGNAL);
        if (k >= 0)
            return k;
        return errno == EINTR ? -EAGAIN : -errno;
    }
    ERR_clear_error();
    s->want = 0;
    r = SSL_write(s->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0)
        return r;
    r = tls_io_error(s, r);
    ERR_clear_error();
    return r == 0 ? -EPIPE : r;
}

short cli_stream_events(const struct cli_stream *s, short dflt)
{
    return s->ssl ? dflt | s->want : dflt;
}

bool cli_stream_pending(const struct cli_stream *s)
{
    return s->ssl && (SSL_pending(s->ssl) > 0 || (SSL_has_pending(s->ssl) && !s->starved));
}

void cli_stream_shutdown(struct cli_stream *s)
{
    if (!s->ssl) {
        (void)shutdown(s->fd, SHUT_WR);
        return;
    }
    if (!s->closed) {
        s->closed = true;
        ERR_clear_error();
        (void)SSL_shutdown(s->ssl);
        ERR_clear_error();
    }
}

void cli_stream_close(struct cli_stream *s)
{
    if (s->ssl && !s->closed)
        cli_stream_shutdown(s);
    SSL_free(s->ssl);
    SSL_CTX_free(s->ctx);
    s->ssl = s->ctx = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

int cli_sink_open(struct cli_sink *s, const char *verb, const char *target, bool chosen)
{
    const char *slash;
    struct stat st;

    memset(s, 0, sizeof(*s));
    s->fd = -1;
    if (strcmp(target, "-") == 0) {
        s->is_stdout = true;
        s->fd = STDOUT_FILENO;
        return 0;
    }
    if (!chosen && lstat(target, &st) == 0)
        return cli_fail(verb, "%s exists here; choose where to write with -o FILE", target);
    if (snprintf(s->path, sizeof(s->path), "%s", target) >= (int)sizeof(s->path))
        return cli_fail(verb, "%s: path too long", target);
    slash = strrchr(s->path, '/');
    snprintf(s->tmp, sizeof(s->tmp), "%.*s.%s.XXXXXX", slash ? (int)(slash - s->path + 1) : 0,
             s->path, slash ? slash + 1 : s->path);
    s->fd = mkostemp(s->tmp, O_CLOEXEC);
    if (s->fd < 0) {
        s->tmp[0] = '\0';
        return cli_fail(verb, "cannot create a file beside %s: %s", s->path, strerror(errno));
    }
    return 0;
}

void cli_sink_reserve(struct cli_sink *s, uint64_t size)
{
    if (!s->is_stdout && s->fd >= 0 && size > 0 && size <= (uint64_t)INT64_MAX)
        (void)fallocate(s->fd, 0, 0, (off_t)size);
}

void cli_sink_direct(struct cli_sink *s)
{
    if (!s->is_stdout && s->fd >= 0 && !s->direct)
        s->direct = core_writeback_direct(s->fd);
}

int cli_sink_write(struct cli_sink *s, const char *verb, const void *p, size_t n)
{
    int e = s->is_stdout ? core_writeback_append(NULL, s->fd, NULL, p, n)
                         : core_writeback_append(&s->wb, s->fd, &s->direct, p, n);

    if (e < 0)
        return cli_fail(verb, "writing %s: %s", s->is_stdout ? "standard output" : s->path,
                        strerror(-e));
    return 0;
}

int cli_sink_commit(struct cli_sink *s, const char *verb)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(s->path, '/');
    mode_t mask;
    int dfd;

    if (s->is_stdout)
        return 0;
    mask = umask(0);
    (void)umask(mask);
    if (fchmod(s->fd, 0666 & ~mask) < 0 || fsync(s->fd) < 0 || close(s->fd) < 0) {
        s->fd = -1;
        return cli_fail(verb, "writing %s: %s", s->path, strerror(errno));
    }
    s->fd = -1;
    if (rename(s->tmp, s->path) < 0)
        return cli_fail(verb, "cannot rename to %s: %s", s->path, strerror(errno));
    s->tmp[0] = '\0';
    snprintf(dir, sizeof(dir), "%.*s", slash ? (slash == s->path ? 1 : (int)(slash - s->path)) : 1,
             slash ? s->path : ".");
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

void cli_sink_abort(struct cli_sink *s)
{
    if (s->is_stdout)
        return;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->tmp[0])
        (void)unlink(s->tmp);
    s->tmp[0] = '\0';
}

/* ---- a sink written by a thread of its own ---- */

static int writer_write(void *ctx, const uint8_t *p, size_t n)
{
    struct cli_writer *w = ctx;

    if (cli_sink_write(w->sink, w->verb, p, n) == 0)
        return 0;
    w->printed = true;
    return -EIO;
}

int cli_writer_start(struct cli_writer *w, struct cli_sink *s, const char *verb)
{
    int e;

    w->sink = s;
    w->verb = verb;
    w->printed = false;
    e = core_filewriter_start(&w->fw, CLI_WRITER_BUFFERS, CLI_WRITER_CHUNK, writer_write, w);
    if (e == -ENOMEM)
        return cli_fail(verb, "out of memory");
    if (e < 0)
        return cli_fail(verb, "cannot start a thread: %s", strerror(-e));
    /* A file is synced behind the writes: the fsync of the commit then waits for the last few
     * MiB, not for all of them (without the thread, it waits for all: still correct). */
    if (!s->is_stdout)
        (void)core_filewriter_flush_behind(&w->fw, s->fd);
    return 0;
}

int cli_writer_finish(struct cli_writer *w, bool discard)
{
    int e = core_filewriter_finish(&w->fw, discard);

    if (e < 0 && !w->printed) {
        w->printed = true;
        return cli_fail(w->verb, "cannot sync %s: %s",
                        w->sink->tmp[0] ? w->sink->tmp : w->sink->path, strerror(-e));
    }
    return e < 0 ? 1 : 0;
}
