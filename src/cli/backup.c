#include "cli/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "svc/backup_proto.h"
#include "cli/common.h"

#define usage_error(a, ...) cli_args_usage_error(&cli_backup_command, (int)(a)->cmd, __VA_ARGS__)
#define fail(...) cli_fail("backup", __VA_ARGS__)

#define BACKUP_PORT "32400"
#define TIMEOUT_DEFAULT_MS 60000
#define TIMEOUT_MAX_MS 86400000L
#define IO_CHUNK (256 * 1024)
#define SEND_CHUNK (1024 * 1024) /* read, hashed and sent at a time */
#define RETRIES_DEFAULT 5
#define RETRIES_MAX 100
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS 8000
#define PROGRESS_EVERY_MS 100
#define REPLY_MAX (SVC_BACKUP_LINE_MAX + 512)

enum cmd { CMD_PUT, CMD_GET, CMD_LS };

struct args {
    enum cmd cmd;
    const char *file; /* put: the file to send */
    const char *name; /* put: --name; get: the stored name */
    const char *out;  /* get: -o */
    uint32_t version; /* get: --version, 0 the current copy */
    int timeout_ms;
    bool resume;      /* put: --resume */
    unsigned retries; /* put: --retries */
    struct cli_tls_opts tls;
    struct cli_peer peer;
};

/* A connection to the server, with what was read and not yet used. */
struct link {
    struct cli_stream st; /* plain or TLS: every byte goes through it */
    int fd;               /* st.fd */
    int timeout_ms;
    char peer[320];
    char buf[1024 * 1024]; /* large reads: a restore arrives in few system calls */
    size_t off, len;
};

struct progress {
    bool on;
    const char *label;
    uint64_t total;
    int64_t start_ms, last_ms;
};

enum { OPT_NAME, OPT_VERSION, OPT_OUTPUT, OPT_TIMEOUT, OPT_RESUME, OPT_RETRIES, OPT_TLS };

static const struct cli_opt backup_opts[] = {
    [OPT_NAME] = {"name", 0, "NAME", "the name to store it under (default: FILE's last component)",
                  CLI_VB(CMD_PUT)},
    [OPT_VERSION] = {"version", 0, "N",
                     "an older version (see 'sockserv backup ls'); default the current",
                     CLI_VB(CMD_GET)},
    [OPT_OUTPUT] = {"output", 'o', "FILE",
                    "where to write it: replaced atomically, and only once the checksum matched; "
                    "'-' is standard output. Default: ./NAME, which must not exist yet",
                    CLI_VB(CMD_GET)},
    [OPT_TIMEOUT] = {"timeout", 't', "DURATION",
                     "how long to wait for the connection and for each answer: 500ms, 60s, 2m; a "
                     "bare number is milliseconds (default 60s)"},
    [OPT_RESUME] = {"resume", 0, NULL,
                    "send only what the server does not hold of an earlier cut upload of FILE, and "
                    "when the connection is lost, reconnect and go on (see --retries)",
                    CLI_VB(CMD_PUT)},
    [OPT_RETRIES] = {"retries", 0, "N",
                     "--resume: how many times to reconnect after a lost connection, waiting "
                     "longer each time (default 5)",
                     CLI_VB(CMD_PUT)},
    [OPT_TLS] = CLI_TLS_OPTS(0),
};

static const char *const backup_arg_help[] = {
    "HOST", "an IPv4 or IPv6 address or a host name (every address is tried)",
    "PORT", "1-65535 (default 32400)",
    NULL,
};

static const struct cli_verb backup_verbs[] = {
    [CMD_PUT] =
        {
            .name = "put",
            .synopsis =
                "put FILE [--name NAME] [--resume [--retries N]] [--timeout DURATION] [TLS] "
                "HOST [PORT]",
            .brief = "upload a file",
            .summary =
                "Uploads FILE to the backup service at HOST PORT. FILE is read once: its SHA-256\n"
                "is computed while it is sent and follows the content; the server keeps the file\n"
                "only when the bytes it received match it, and answers once the file is durable.\n"
                "With --resume, only what the server does not hold yet of an earlier cut upload\n"
                "is sent, and a lost connection is resumed by itself. A progress bar (bytes,\n"
                "rate, time left) is drawn on stderr when it is a terminal. On success it prints:\n"
                "stored NAME version N (SIZE bytes, sha256 HEX).",
            .min_args = 2,
            .max_args = 3,
            .arg_names = {"FILE", "HOST", "PORT"},
        },
    [CMD_GET] =
        {
            .name = "get",
            .synopsis = "get NAME [--version N] [-o FILE] [--timeout DURATION] [TLS] HOST [PORT]",
            .brief = "restore a stored file (or an older version) and verify it",
            .summary = "Restores the stored file NAME from the backup service at HOST PORT and "
                       "checks it\nagainst the SHA-256 the server recorded.",
            .min_args = 2,
            .max_args = 3,
            .arg_names = {"NAME", "HOST", "PORT"},
        },
    [CMD_LS] =
        {
            .name = "ls",
            .synopsis = "ls [--timeout DURATION] [TLS] HOST [PORT]",
            .brief = "list what is stored",
            .summary =
                "Lists the files stored by the backup service at HOST PORT, one line per copy,\n"
                "the current copy of each name first, then its older versions:\n"
                "\n"
                "  NAME  VERSION  SIZE  STORED (UTC)  verified|unverified  current|old  SHA256\n"
                "\n"
                "'unverified' marks files sent the lecture's way (a bare name, then the content):\n"
                "nothing told the server that it received all of them.",
            .min_args = 1,
            .max_args = 2,
            .arg_names = {"HOST", "PORT"},
        },
};

const struct cli_command cli_backup_command = {
    .name = "backup",
    .self =
        {
            .brief = "upload, restore and list files on a backup server",
            .summary =
                "The backup client (the lecture's Remote Copy): put uploads a file with its\n"
                "SHA-256 and waits until the server says it is durable; get restores a\n"
                "stored file (or an older version) and verifies it; ls lists what is "
                "stored.",
        },
    .arg_help = backup_arg_help,
    .opts = backup_opts,
    .nopts = sizeof(backup_opts) / sizeof(backup_opts[0]),
    .verbs = backup_verbs,
    .nverbs = sizeof(backup_verbs) / sizeof(backup_verbs[0]),
    .epilog =
        "TLS is --tls [--cacert FILE] [--cert FILE --key FILE] (a listener with options.tls).\n"
        "\n"
        "Exit status: 0 done (put: stored and the server's checksum matches; get: restored\n"
        "and verified); 1 failure (refused, no such file, connection lost, checksum\n"
        "mismatch: get writes nothing then, except to standard output; the server's error\n"
        "line is printed); 2 usage error.\n",
};

void cli_backup_usage(void)
{
    cli_help_print(&cli_backup_command, -1);
}

/* Returns CLI_ARGS_GO_ON with *a filled, else the exit status (0 after the help). */
static int parse_args(int argc, char **argv, struct args *a)
{
    struct cli_args args;
    int64_t ms = TIMEOUT_DEFAULT_MS;
    unsigned long v;
    int r, host;

    memset(a, 0, sizeof(*a));
    r = cli_args_parse(&cli_backup_command, argc, argv, &args);
    if (r != CLI_ARGS_GO_ON)
        return r;
    a->cmd = (enum cmd)args.verb;
    r = cli_args_duration(&cli_backup_command, &args, OPT_TIMEOUT, 1, TIMEOUT_MAX_MS, &ms);
    if (r != 0)
        return r;
    a->timeout_ms = (int)ms;
    r = cli_tls_args(&cli_backup_command, args.verb, &args, OPT_TLS, &a->tls);
    if (r != 0)
        return r;
    a->resume = args.seen[OPT_RESUME];
    a->retries = RETRIES_DEFAULT;
    if (args.seen[OPT_RETRIES]) {
        if (!cli_parse_ulong(args.val[OPT_RETRIES], 0, RETRIES_MAX, &v))
            return usage_error(a, "--retries: '%s' is not a number from 0 to %d",
                               args.val[OPT_RETRIES], RETRIES_MAX);
        if (!a->resume)
            return usage_error(a, "--retries goes with --resume");
        a->retries = (unsigned)v;
    }
    if (args.seen[OPT_VERSION]) {
        if (!cli_parse_ulong(args.val[OPT_VERSION], 1, UINT32_MAX, &v))
            return usage_error(a, "--version: '%s' is not a version number", args.val[OPT_VERSION]);
        a->version = (uint32_t)v;
    }
    a->out = args.val[OPT_OUTPUT];
    a->name = args.val[OPT_NAME];
    host = a->cmd == CMD_LS ? 0 : 1;
    if (a->cmd == CMD_PUT)
        a->file = args.pos[0];
    else if (a->cmd == CMD_GET)
        a->name = args.pos[0];
    r = cli_peer_parse(&cli_backup_command, args.verb, args.pos[host],
                       args.npos > host + 1 ? args.pos[host + 1] : BACKUP_PORT, &a->peer);
    return r == 0 ? CLI_ARGS_GO_ON : r;
}

/* ---- the connection ---- */

/* Connects to the first address of HOST PORT that answers in time; 0 or 1 (printed why). */
static int link_open(struct link *l, const struct args *a)
{
    struct addrinfo *list = NULL;
    int64_t deadline = core_now_ms() + a->timeout_ms;
    int r;

    l->fd = -1;
    l->st.fd = -1;
    l->off = l->len = 0;
    l->timeout_ms = a->timeout_ms;
    snprintf(l->peer, sizeof(l->peer), "%s", a->peer.name);
    r = cli_resolve("backup", a->peer.host, a->peer.port, SOCK_STREAM, &list);
    if (r != 0)
        return r;
    r = cli_stream_connect(&l->st, "backup", &a->peer, list, &a->tls, deadline);
    freeaddrinfo(list);
    if (r != 0)
        return r;
    l->fd = l->st.fd;
    return 0;
}

static void link_close(struct link *l)
{
    cli_stream_close(&l->st);
    l->fd = -1;
}

/* Waits for events on the socket. Returns the revents, or 0 after printing a timeout. */
static short link_wait(struct link *l, short events)
{
    struct pollfd pfd = {.fd = l->fd, .events = cli_stream_events(&l->st, events)};
    int r;

    do {
        r = poll(&pfd, 1, l->timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        fail("%s: no answer within %d ms", l->peer, l->timeout_ms);
        return 0;
    }
    if (r < 0) {
        fail("poll: %s", strerror(errno));
        return 0;
    }
    return pfd.revents;
}

/* Reads at most cap bytes into p, waiting for some. Returns the bytes read, 0 at EOF, -1 after
 * printing why. */
static ssize_t link_read(struct link *l, void *p, size_t cap)
{
    for (;;) {
        ssize_t n = cli_stream_read(&l->st, p, cap);

        if (n >= 0)
            return n;
        if (n != -EAGAIN) {
            fail("%s: %s", l->peer, cli_stream_strerror(&l->st, (int)n));
            return -1;
        }
        if (!link_wait(l, POLLIN))
            return -1;
    }
}

/* Reads more into the buffer. Returns the bytes read, 0 at EOF, -1 after printing why. */
static ssize_t link_fill(struct link *l)
{
    ssize_t n;

    if (l->off > 0) {
        memmove(l->buf, l->buf + l->off, l->len - l->off);
        l->len -= l->off;
        l->off = 0;
    }
    n = link_read(l, l->buf + l->len, sizeof(l->buf) - l->len);
    if (n > 0)
        l->len += (size_t)n;
    return n;
}

/* Reads one line (without its newline) into line. Returns 0 or 1 after printing why. */
static int link_line(struct link *l, char *line, size_t cap)
{
    for (;;) {
        char *nl = memchr(l->buf + l->off, '\n', l->len - l->off);
        ssize_t n;

        if (nl) {
            size_t len = (size_t)(nl - (l->buf + l->off));

            if (len > 0 && l->buf[l->off + len - 1] == '\r')
                len--;
            if (len >= cap)
                return fail("%s: an answer line too long", l->peer);
            memcpy(line, l->buf + l->off, len);
            line[len] = '\0';
            l->off = (size_t)(nl - l->buf) + 1;
            return 0;
        }
        if (l->len - l->off >= cap)
            return fail("%s: an answer line too long", l->peer);
        n = link_fill(l);
        if (n < 0)
            return 1;
        if (n == 0)
            return fail("%s closed the connection without an answer", l->peer);
    }
}

static int link_send(struct link *l, const void *p, size_t n)
{
    const char *b = p;

    while (n > 0) {
        ssize_t w = cli_stream_write(&l->st, b, n);

        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w != -EAGAIN)
            return fail("%s: %s", l->peer, cli_stream_strerror(&l->st, (int)w));
        if (!link_wait(l, POLLOUT))
            return 1;
    }
    return 0;
}

/* An answer that is not the expected one: an ERR line is the server's reason. */
static int refused(const struct link *l, const char *line)
{
    if (strncmp(line, "ERR ", 4) == 0)
        return fail("%s refused: %s", l->peer, line);
    return fail("%s: unexpected answer: %.200s", l->peer, line);
}

/* ---- progress on a terminal ---- */

static void human(uint64_t n, char out[16])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 16, "%" PRIu64 " B", n);
    else
        snprintf(out, 16, "%.1f %s", v, units[u]);
}

static void progress_start(struct progress *p, const char *label, uint64_t total)
{
    p->on = isatty(STDERR_FILENO);
    p->label = label;
    p->total = total;
    p->start_ms = core_now_ms();
    p->last_ms = 0;
}

static void progress_show(struct progress *p, uint64_t done, bool final)
{
    char d[16], t[16], rate[16], eta[32] = "--:--";
    int64_t now = core_now_ms(), elapsed;
    unsigned pct, fill;
    double bps;

    if (!p->on || (!final && now - p->last_ms < PROGRESS_EVERY_MS))
        return;
    p->last_ms = now;
    elapsed = now - p->start_ms;
    bps = elapsed > 0 ? (double)done * 1000.0 / (double)elapsed : 0;
    pct = p->total ? (unsigned)(done * 100 / p->total) : 100;
    fill = pct * 30 / 100;
    human(done, d);
    human(p->total, t);
    human((uint64_t)bps, rate);
    if (bps > 0 && done < p->total) {
        uint64_t s = (uint64_t)((double)(p->total - done) / bps);

        snprintf(eta, sizeof(eta), "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s / 60 % 60,
                 s % 60);
    } else if (done >= p->total) {
        snprintf(eta, sizeof(eta), "done");
    }
    fprintf(stderr, "\r%-9s [%.*s%*s] %3u%% %10s / %-10s %10s/s  ETA %s \033[K", p->label,
            (int)fill, "##############################", (int)(30 - fill), "", pct, d, t, rate,
            eta);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ---- put ---- */

static int sha256_file(int fd, uint64_t size, uint8_t out[SVC_BACKUP_SHA256_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct progress p;
    uint64_t done = 0;
    unsigned len = 0;
    uint8_t *buf = malloc(IO_CHUNK);
    int r = 1;

    progress_start(&p, "checksum", size);
    if (!md || !buf || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        fail("out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = pread(fd, buf, IO_CHUNK, (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail("read: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        done += (uint64_t)n;
        progress_show(&p, done, false);
    }
    if (done != size) {
        fail("the file changed size while it was read (%" PRIu64 " then %" PRIu64 " bytes)", size,
             done);
        goto out;
    }
    progress_show(&p, done, true);
    if (EVP_DigestFinal_ex(md, out, &len) == 1 && len == SVC_BACKUP_SHA256_LEN)
        r = 0;
out:
    EVP_MD_CTX_free(md);
    free(buf);
    return r;
}

/* Streams size bytes of fd to the server; an answer arriving meanwhile is a refusal. */
static int stream_file(struct link *l, int fd, uint64_t size)
{
    char line[REPLY_MAX];
    struct progress p;
    uint64_t sent = 0;
    bool use_sendfile = !l->st.ssl; /* TLS encrypts in user space */
    uint8_t *buf = NULL;
    int r = 1;

    progress_start(&p, "upload", size);
    while (sent < size) {
        size_t want = size - sent < IO_CHUNK ? (size_t)(size - sent) : IO_CHUNK;
        short ev;
        ssize_t n;

        ev = link_wait(l, POLLOUT | POLLIN);
        if (!ev)
            goto out;
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
            progress_show(&p, sent, true);
            if (link_line(l, line, sizeof(line)) == 0)
                refused(l, line);
            goto out;
        }
        if (use_sendfile) {
            off_t off = (off_t)sent;

            n = sendfile(l->fd, fd, &off, want);
            if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
                use_sendfile = false;
                continue;
            }
        } else {
            if (!buf && !(buf = malloc(IO_CHUNK))) {
                fail("out of memory");
                goto out;
            }
            n = pread(fd, buf, want, (off_t)sent);
            if (n > 0) {
                n = cli_stream_write(&l->st, buf, (size_t)n);
                if (n < 0) {
                    errno = (int)-n;
                    n = -1;
                }
            }
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0) {
            progress_show(&p, sent, true);
            fail("sending to %s: %s", l->peer, strerror(errno));
            goto out;
        }
        if (n == 0) {
            progress_show(&p, sent, true);
            fail("the file shrank while it was sent: %" PRIu64 " of %" PRIu64 " bytes", sent, size);
            goto out;
        }
        sent += (uint64_t)n;
        progress_show(&p, sent, false);
    }
    progress_show(&p, sent, true);
    r = 0;
out:
    free(buf);
    return r;
}

/* How an attempt at an upload ended. */
enum put_result {
    PUT_DONE,   /* stored, and the server's checksum matches */
    PUT_FAILED, /* refused or failed for good; printed why */
    PUT_LOST,   /* the connection was lost (or the server asked to come back): --resume retries */
    PUT_V1,     /* the server does not know the forms of protocol v2: send the v1 way */
};

/* An ERR answer (printed): worth another attempt when the server holds what was sent. */
static enum put_result refusal(const struct link *l, const char *line)
{
    refused(l, line);
    if (strncmp(line, "ERR busy ", 9) == 0 || strncmp(line, "ERR not-found ", 14) == 0 ||
        strncmp(line, "ERR size-mismatch ", 18) == 0 || strncmp(line, "ERR too-slow ", 13) == 0)
        return PUT_LOST;
    return PUT_FAILED;
}

/* Reads the STORED answer and checks it against what was sent. */
static enum put_result expect_stored(struct link *l, const char *name, const char *enc,
                                     uint64_t size, const char *hex)
{
    char line[REPLY_MAX], got_name[SVC_BACKUP_NAME_ENC_MAX + 1], got_sha[SVC_BACKUP_SHA256_HEX + 2];
    unsigned long version;
    uint64_t got_size;

    if (link_line(l, line, sizeof(line)) != 0)
        return PUT_LOST;
    if (strncmp(line, "STORED ", 7) != 0)
        return refusal(l, line);
    if (sscanf(line, "STORED %765s %lu %" SCNu64 " %65s", got_name, &version, &got_size, got_sha) !=
        4) {
        fail("%s: unexpected answer: %.200s", l->peer, line);
        return PUT_FAILED;
    }
    if (strcmp(got_name, enc) != 0 || got_size != size || strcmp(got_sha, hex) != 0) {
        fail("%s stored something else: %.300s (sent %s, %" PRIu64 " bytes, sha256 %s)", l->peer,
             line, enc, size, hex);
        return PUT_FAILED;
    }
    printf("stored %s version %lu (%" PRIu64 " bytes, sha256 %s)\n", name, version, size, hex);
    (void)link_send(l, "QUIT\n", 5);
    return PUT_DONE;
}

/* Hashes bytes [0, n) of fd into md: what the server holds already of a resumed upload. */
static int hash_range(int fd, uint64_t n, EVP_MD_CTX *md, uint8_t *buf)
{
    uint64_t off = 0;

    while (off < n) {
        size_t want = n - off < SEND_CHUNK ? (size_t)(n - off) : SEND_CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)off);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return fail("read: %s", got < 0 ? strerror(errno) : "the file shrank");
        EVP_DigestUpdate(md, buf, (size_t)got);
        off += (uint64_t)got;
    }
    return 0;
}

/* Whether the server answered already (an ERR while the content is on its way). */
static bool has_answer(const struct link *l)
{
    struct pollfd pfd = {.fd = l->fd, .events = POLLIN};

    return l->len > l->off || cli_stream_pending(&l->st) ||
           (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)));
}

/* Sends bytes [off, size) of fd, each read once: hashed into md, then sent. */
static enum put_result send_hashed(struct link *l, int fd, uint64_t off, uint64_t size,
                                   EVP_MD_CTX *md, uint8_t *buf)
{
    char line[REPLY_MAX];
    struct progress p;

    progress_start(&p, "upload", size);
    while (off < size) {
        size_t want = size - off < SEND_CHUNK ? (size_t)(size - off) : SEND_CHUNK, done = 0;
        ssize_t n = pread(fd, buf, want, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            progress_show(&p, off, true);
            if (n == 0)
                fail("the file shrank while it was sent: %" PRIu64 " of %" PRIu64 " bytes", off,
                     size);
            else
                fail("read: %s", strerror(errno));
            return PUT_FAILED;
        }
        if (has_answer(l)) {
            progress_show(&p, off, true);
            return link_line(l, line, sizeof(line)) == 0 ? refusal(l, line) : PUT_LOST;
        }
        while (done < (size_t)n) {
            ssize_t w = cli_stream_write(&l->st, buf + done, (size_t)n - done);

            if (w > 0) {
                done += (size_t)w;
                continue;
            }
            if (w != -EAGAIN) {
                progress_show(&p, off + done, true);
                fail("sending to %s: %s", l->peer, cli_stream_strerror(&l->st, (int)w));
                return PUT_LOST;
            }
            if (!link_wait(l, POLLOUT))
                return PUT_LOST;
        }
        /* Hashed once sent: the server works on these bytes meanwhile. */
        EVP_DigestUpdate(md, buf, (size_t)n);
        off += (uint64_t)n;
        progress_show(&p, off, false);
    }
    progress_show(&p, off, true);
    return PUT_DONE;
}

/*
 * One upload the v2 way on a fresh connection: with --resume, RESUME first and only the rest
 * sent; the content read once, hashed while it is sent, its SHA-256 on the line after it.
 */
static enum put_result put_v2(const struct args *a, struct link *l, int fd, uint64_t size,
                              const char *name, const char *enc, uint8_t *buf)
{
    char line[REPLY_MAX], hdr[SVC_BACKUP_LINE_MAX + 2], hex[SVC_BACKUP_SHA256_HEX + 1];
    uint8_t sha[EVP_MAX_MD_SIZE];
    EVP_MD_CTX *md = NULL;
    enum put_result r = PUT_FAILED;
    uint64_t off = 0;
    unsigned len = 0;

    if (a->resume) {
        snprintf(hdr, sizeof(hdr), "RESUME %s %" PRIu64 "\n", enc, size);
        if (link_send(l, hdr, strlen(hdr)) != 0 || link_line(l, line, sizeof(line)) != 0)
            return PUT_LOST;
        if (strncmp(line, "ERR protocol ", 13) == 0)
            return PUT_V1;
        if (sscanf(line, "OK %" SCNu64, &off) != 1 || off > size)
            return refusal(l, line);
        if (off > 0)
            fprintf(stderr,
                    "sockserv backup: %s holds %" PRIu64 " of the %" PRIu64
                    " bytes already; sending the rest\n",
                    l->peer, off, size);
    }
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        fail("out of memory");
        goto out;
    }
    if (off > 0 && hash_range(fd, off, md, buf) != 0)
        goto out;
    if (off > 0)
        snprintf(hdr, sizeof(hdr), "PUT %s %" PRIu64 " * %" PRIu64 "\n", enc, size, off);
    else
        snprintf(hdr, sizeof(hdr), "PUT %s %" PRIu64 " *\n", enc, size);
    if (link_send(l, hdr, strlen(hdr)) != 0 || link_line(l, line, sizeof(line)) != 0) {
        r = PUT_LOST;
        goto out;
    }
    if (strncmp(line, "ERR protocol ", 13) == 0) {
        r = PUT_V1;
        goto out;
    }
    if (strcmp(line, "OK") != 0) {
        r = refusal(l, line);
        goto out;
    }
    r = send_hashed(l, fd, off, size, md, buf);
    if (r != PUT_DONE)
        goto out;
    if (EVP_DigestFinal_ex(md, sha, &len) != 1 || len != SVC_BACKUP_SHA256_LEN) {
        fail("cannot compute the checksum");
        r = PUT_FAILED;
        goto out;
    }
    svc_backup_sha256_to_hex(sha, hex);
    snprintf(hdr, sizeof(hdr), "SHA256 %s\n", hex);
    if (link_send(l, hdr, strlen(hdr)) != 0) {
        r = PUT_LOST;
        goto out;
    }
    r = expect_stored(l, name, enc, size, hex);
out:
    EVP_MD_CTX_free(md);
    return r;
}

/* One upload the v1 way, for servers without v2: the SHA-256 first, in the header. */
static enum put_result put_v1(struct link *l, int fd, uint64_t size, const char *name,
                              const char *enc)
{
    char line[REPLY_MAX], hdr[SVC_BACKUP_LINE_MAX + 2], hex[SVC_BACKUP_SHA256_HEX + 1];
    uint8_t sha[SVC_BACKUP_SHA256_LEN];

    if (sha256_file(fd, size, sha) != 0)
        return PUT_FAILED;
    svc_backup_sha256_to_hex(sha, hex);
    snprintf(hdr, sizeof(hdr), "PUT %s %" PRIu64 " %s\n", enc, size, hex);
    if (link_send(l, hdr, strlen(hdr)) != 0 || link_line(l, line, sizeof(line)) != 0)
        return PUT_LOST;
    if (strcmp(line, "OK") != 0)
        return refusal(l, line);
    if (stream_file(l, fd, size) != 0)
        return PUT_LOST;
    return expect_stored(l, name, enc, size, hex);
}

/* Sleeps ms milliseconds (a retry's wait). */
static void pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int run_put(const struct args *a)
{
    char enc[SVC_BACKUP_NAME_ENC_MAX + 1];
    const char *name = a->name;
    struct core_err err = {0};
    enum put_result r = PUT_FAILED;
    struct link *l = NULL;
    uint8_t *buf = NULL;
    bool v1 = false;
    struct stat st;
    uint64_t size;
    int fd;

    if (!name) {
        const char *slash = strrchr(a->file, '/');

        name = slash ? slash + 1 : a->file;
    }
    if (svc_backup_name_check(name, strlen(name), &err) < 0)
        return usage_error(a, "cannot store as '%s': %s (choose one with --name)", name, err.msg);
    fd = open(a->file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("%s: %s", a->file, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail("%s: not a regular file", a->file);
    }
    size = (uint64_t)st.st_size;
    svc_backup_name_encode(name, enc, sizeof(enc));
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    l = malloc(sizeof(*l));
    buf = malloc(SEND_CHUNK);
    if (!l || !buf) {
        fail("out of memory");
        goto out;
    }
    for (unsigned attempt = 0;; attempt++) {
        if (link_open(l, a) != 0) {
            r = PUT_LOST;
        } else {
            r = v1 ? put_v1(l, fd, size, name, enc) : put_v2(a, l, fd, size, name, enc, buf);
            link_close(l);
            if (r == PUT_V1) {
                fprintf(stderr,
                        "sockserv backup: %s speaks protocol v1: sending the checksum "
                        "first, without resuming\n",
                        l->peer);
                v1 = true;
                attempt--;
                continue;
            }
        }
        if (r != PUT_LOST || !a->resume || attempt >= a->retries)
            break;
        {
            unsigned ms = BACKOFF_FIRST_MS << (attempt < 5 ? attempt : 5);

            ms = ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
            fprintf(stderr, "sockserv backup: retrying in %u ms (%u of %u)\n", ms, attempt + 1,
                    a->retries);
            pause_ms(ms);
        }
    }
out:
    free(buf);
    free(l);
    close(fd);
    return r == PUT_DONE ? 0 : 1;
}

/* ---- get ---- */

static int run_get(const struct args *a)
{
    char enc[SVC_BACKUP_NAME_ENC_MAX + 1], line[REPLY_MAX], req[SVC_BACKUP_LINE_MAX + 2];
    char want_hex[SVC_BACKUP_SHA256_HEX + 2], got_hex[SVC_BACKUP_SHA256_HEX + 1];
    uint8_t sha[EVP_MAX_MD_SIZE];
    struct core_err err = {0};
    struct link *l = NULL;
    struct cli_sink sink = {.fd = -1};
    struct cli_writer wr = {0};
    struct progress p;
    EVP_MD_CTX *md = NULL;
    uint64_t size, got = 0;
    unsigned long version;
    unsigned len = 0;
    int r = 1;

    if (svc_backup_name_check(a->name, strlen(a->name), &err) < 0)
        return usage_error(a, "'%s' cannot be a stored name: %s", a->name, err.msg);
    svc_backup_name_encode(a->name, enc, sizeof(enc));
    l = malloc(sizeof(*l));
    md = EVP_MD_CTX_new();
    if (!l || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        fail("out of memory");
        goto out_free;
    }
    /* Where it goes is settled first: a refusal here must not cut a restore mid-content. */
    if (cli_sink_open(&sink, "backup", a->out ? a->out : a->name, a->out != NULL) != 0 ||
        link_open(l, a) != 0)
        goto out_free;
    if (a->version)
        snprintf(req, sizeof(req), "GET %s %" PRIu32 "\n", enc, a->version);
    else
        snprintf(req, sizeof(req), "GET %s\n", enc);
    if (link_send(l, req, strlen(req)) != 0 || link_line(l, line, sizeof(line)) != 0)
        goto out;
    if (sscanf(line, "OK %" SCNu64 " %65s %lu", &size, want_hex, &version) != 3) {
        refused(l, line);
        goto out;
    }
    cli_sink_reserve(&sink, size);
    cli_sink_direct(&sink);
    /* The content: received and hashed here while the writer thread writes what came before. */
    if (cli_writer_start(&wr, &sink, "backup") != 0)
        goto out;
    progress_start(&p, "restore", size);
    while (got < size) {
        size_t want = size - got < CLI_WRITER_CHUNK ? (size_t)(size - got) : CLI_WRITER_CHUNK;
        size_t fill = l->len - l->off < want ? l->len - l->off : want;
        uint8_t *buf = core_filewriter_next(&wr.fw);

        if (!buf)
            goto out;
        memcpy(buf, l->buf + l->off, fill); /* what came with the answer line */
        l->off += fill;
        EVP_DigestUpdate(md, buf, fill);
        while (fill < want) {
            ssize_t m = link_read(l, buf + fill, want - fill);

            if (m < 0)
                goto out;
            if (m == 0) {
                progress_show(&p, got + fill, true);
                fail("%s closed the connection after %" PRIu64 " of %" PRIu64 " bytes", l->peer,
                     got + fill, size);
                goto out;
            }
            /* Hashed as it comes, while the bytes are still in the processor's cache. */
            EVP_DigestUpdate(md, buf + fill, (size_t)m);
            fill += (size_t)m;
        }
        core_filewriter_push(&wr.fw, fill);
        got += fill;
        progress_show(&p, got, false);
    }
    if (cli_writer_finish(&wr, false) != 0)
        goto out;
    progress_show(&p, got, true);
    if (EVP_DigestFinal_ex(md, sha, &len) != 1 || len != SVC_BACKUP_SHA256_LEN) {
        fail("cannot compute the checksum");
        goto out;
    }
    svc_backup_sha256_to_hex(sha, got_hex);
    if (strcmp(want_hex, "-") == 0) {
        fprintf(stderr,
                "sockserv backup: warning: the server has no checksum for this copy; "
                "received sha256 %s\n",
                got_hex);
    } else if (strcmp(want_hex, got_hex) != 0) {
        fail("checksum mismatch: the server recorded %s, received %s%s", want_hex, got_hex,
             sink.is_stdout ? "" : "; nothing written");
        goto out;
    }
    if (cli_sink_commit(&sink, "backup") != 0)
        goto out;
    if (!sink.is_stdout)
        printf("restored %s version %lu to %s (%" PRIu64 " bytes, sha256 %s)\n", a->name, version,
               sink.path, size, got_hex);
    (void)link_send(l, "QUIT\n", 5);
    r = 0;
out:
    (void)cli_writer_finish(&wr, true);
    link_close(l);
out_free:
    cli_sink_abort(&sink);
    EVP_MD_CTX_free(md);
    free(l);
    return r;
}

/* ---- ls ---- */

static int run_ls(const struct args *a)
{
    char line[REPLY_MAX];
    struct link *l = malloc(sizeof(*l));
    unsigned long n;
    int r = 1;

    if (!l)
        return fail("out of memory");
    if (link_open(l, a) != 0) {
        free(l);
        return 1;
    }
    if (link_send(l, "LIST\n", 5) != 0 || link_line(l, line, sizeof(line)) != 0)
        goto out;
    if (sscanf(line, "OK %lu", &n) != 1) {
        refused(l, line);
        goto out;
    }
    if (n > 0 && isatty(STDOUT_FILENO))
        printf("%-24s %7s %12s %-20s %-10s %-7s %s\n", "NAME", "VERSION", "SIZE", "STORED", "CHECK",
               "COPY", "SHA256");
    for (unsigned long i = 0; i < n; i++) {
        char ename[SVC_BACKUP_NAME_ENC_MAX + 1], name[SVC_BACKUP_NAME_MAX + 1], sha[80], stored[40],
            check[16], copy[16];
        unsigned long version;
        uint64_t size;

        if (link_line(l, line, sizeof(line)) != 0)
            goto out;
        if (sscanf(line, "%765s %lu %" SCNu64 " %79s %39s %15s %15s", ename, &version, &size, sha,
                   stored, check, copy) != 7) {
            fail("%s: unexpected listing line: %.200s", l->peer, line);
            goto out;
        }
        if (svc_backup_name_decode(ename, strlen(ename), name, NULL) < 0)
            snprintf(name, sizeof(name), "%.*s", (int)sizeof(name) - 1, ename);
        printf("%-24s %7lu %12" PRIu64 " %-20s %-10s %-7s %s\n", name, version, size, stored, check,
               copy, sha);
    }
    if (link_line(l, line, sizeof(line)) != 0)
        goto out;
    if (strcmp(line, "END") != 0) {
        fail("%s: the listing did not end: %.200s", l->peer, line);
        goto out;
    }
    (void)link_send(l, "QUIT\n", 5);
    r = 0;
out:
    link_close(l);
    free(l);
    return r;
}

int cli_backup_main(int argc, char **argv)
{
    struct args a;
    int r = parse_args(argc, argv, &a);

    if (r != CLI_ARGS_GO_ON)
        return r;
    /* A server that goes away mid-upload is an error to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    switch (a.cmd) {
    case CMD_PUT:
        return run_put(&a);
    case CMD_GET:
        return run_get(&a);
    case CMD_LS:
        return run_ls(&a);
    }
    return 2;
}
