#ifndef CLI_COMMON_H
#define CLI_COMMON_H

/*
 * What the command's verbs share: the argument parser and the help every verb (the daemon's
 * too) is read and described with, messages and exit statuses, deadlines, number parsing, name
 * resolution and a connect bounded by a deadline. One thread (the command's); nothing here
 * keeps state between calls.
 */

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netdb.h>
#include <stdio.h>

#include "core/clock.h"
#include "core/filewriter.h"
#include "core/writeback.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

/* ---- the arguments: one parser for every verb ---- */

#define CLI_OPTS_MAX 32    /* options in one command's table */
#define CLI_ARGS_MAX 8     /* positional arguments */
#define CLI_REPEATS_MAX 64 /* values of repeatable options, all together */
#define CLI_VB(i) (1u << (i))

/* The column at which every help table (options, arguments, verbs) starts its text. */
#define CLI_HELP_COLUMN 28
#define CLI_HELP_WIDTH 80

/*
 * One option of a command. The spelling is GNU's: "--name VALUE", "--name=VALUE", "-s VALUE".
 * Every command also takes -h, --help (its help on stdout, exit 0) and -V, --version (the
 * version on stdout, exit 0) without listing them; a table option of the same name wins where
 * it applies (backup get --version N).
 */
struct cli_opt {
    const char *name; /* the long name, without "--" */
    char short_name;  /* 0: none */
    const char *arg;  /* the value's name in the help ("MS", "FILE"); NULL: takes no value */
    const char *help; /* one or more sentences, wrapped to the help's width when printed */
    unsigned verbs;   /* CLI_VB() of the sub-verbs that take it; 0: every one */
    bool repeat;      /* every value is kept, in order (cli_args.repeats); else the last */
};

/* What a command (or one of its sub-verbs) takes besides options, and says about itself. */
struct cli_verb {
    const char *name;     /* the sub-verb ("put"); for the command itself, unused */
    const char *synopsis; /* the usage after "sockserv COMMAND " ("put FILE [--name NAME]...") */
    const char *brief;    /* what it does, one line: the help's description, the list of verbs */
    const char *summary;  /* more about it, after the options: lines printed as written; or NULL */
    int min_args, max_args;
    const char *arg_names[CLI_ARGS_MAX]; /* named in "missing HOST and PORT" */
};

/* A command: its options and, for backup and ctl, its sub-verbs. */
struct cli_command {
    const char *name; /* "echo", "backup", "ctl", "daemon" */
    struct cli_verb self;
    /* The positional arguments' help, "NAME", "text", ... ending with NULL; may be NULL. */
    const char *const *arg_help;
    const struct cli_opt *opts;
    size_t nopts;
    const struct cli_verb *verbs; /* NULL: none (the positional arguments follow self) */
    size_t nverbs;
    const char *epilog; /* after the options: notes, exit statuses; may be NULL */
};

/* What the arguments said. */
struct cli_args {
    int verb; /* the index of the sub-verb in cmd->verbs, -1 when none */
    const char *pos[CLI_ARGS_MAX];
    int npos;
    bool seen[CLI_OPTS_MAX];              /* by index in cmd->opts */
    const char *val[CLI_OPTS_MAX];        /* the last value of each option, NULL for a flag */
    const char *repeats[CLI_REPEATS_MAX]; /* every value of the repeatable options, in order */
    int repeat_opt[CLI_REPEATS_MAX];      /* the option each one belongs to */
    size_t nrepeats;
};

#define CLI_ARGS_GO_ON (-1)

/*
 * Parses argv (argv[0] is the command's name) by cmd's table: options anywhere, "--" ends
 * them, the first positional argument names the sub-verb when cmd has verbs. Checks that every
 * option applies to the sub-verb, and the number of positional arguments. Returns
 * CLI_ARGS_GO_ON with *ret filled; 0 after printing the help or the version (stdout); or 2
 * after a usage error (cli_args_usage_error()).
 */
int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *ret);

/*
 * Prints "sockserv COMMAND: MESSAGE", the usage line (the sub-verb's when verb is one, else the
 * command's) and "Try 'sockserv COMMAND [VERB] --help'." on stderr. verb: an index in
 * cmd->verbs, or -1. Returns 2.
 */
int cli_args_usage_error(const struct cli_command *cmd, int verb, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prints the help of cmd (verb -1) or of its sub-verb on stdout: the usage line(s), what it
 * does in one line, its arguments, its verbs, its options in one table (each help aligned at
 * CLI_HELP_COLUMN), then more about it and the epilog.
 */
void cli_help_print(const struct cli_command *cmd, int verb);

/*
 * One row of a help table on f: "  LEFT", then text wrapped from CLI_HELP_COLUMN to
 * CLI_HELP_WIDTH (on the next line when LEFT reaches the column).
 */
void cli_help_row(FILE *f, const char *left, const char *text);

/* Prints "sockserv VERSION" on stdout. */
void cli_version_print(void);

/*
 * Parses a duration: a whole number and a unit, "ms", "s", "m" or "h" ("500ms", "10s", "2m"),
 * or a bare number counted in bare_ms milliseconds (1: milliseconds, 1000: seconds), from 1 ms
 * to max_ms. Returns 0 with *ret_ms, or -EINVAL.
 */
int cli_duration_parse(const char *text, int64_t bare_ms, int64_t max_ms, int64_t *ret_ms);

/*
 * The duration option opt (an index in cmd->opts) when the arguments gave it: *ms (the default,
 * left as it is otherwise) becomes its value, parsed as cli_duration_parse() does. Returns 0, or
 * 2 after a usage error naming the option.
 */
int cli_args_duration(const struct cli_command *cmd, const struct cli_args *args, int opt,
                      int64_t bare_ms, int64_t max_ms, int64_t *ms);

/*
 * The server of a wire client (echo, date, backup): HOST and PORT (a number from 1 to 65535)
 * checked, and "HOST:PORT" or "[V6]:PORT" for messages.
 */
struct cli_peer {
    const char *host;
    const char *port;
    char name[320];
};

/* Fills *ret from host and port (borrowed). Returns 0, or 2 after a usage error (as verb). */
int cli_peer_parse(const struct cli_command *cmd, int verb, const char *host, const char *port,
                   struct cli_peer *ret);

/* Prints "sockserv VERB: MESSAGE" on stderr. Returns 1 (failure). */
int cli_fail(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Milliseconds left until deadline (core_now_ms() time, core/clock.h), 0 when past, for poll(2). */
int cli_remaining_ms(int64_t deadline);

/* Parses a decimal number from min to max, nothing else in text. */
bool cli_parse_ulong(const char *text, unsigned long min, unsigned long max, unsigned long *ret);

/*
 * Resolves HOST PORT (a numeric port) for socktype. Returns 0 with *ret (freeaddrinfo() it), or
 * 1 after printing why as VERB.
 */
int cli_resolve(const char *verb, const char *host, const char *port, int socktype,
                struct addrinfo **ret);

/*
 * Connects a non-blocking TCP socket to the first address of list that accepts before deadline.
 * Returns the socket, or a negative errno: -ETIMEDOUT when the deadline passed, else why the
 * last address failed.
 */
int cli_tcp_connect(const struct addrinfo *list, int64_t deadline);

/* ---- a connection to a wire server, plain or TLS: every TCP client connects through it ---- */

/* The options --tls, --cacert FILE, --cert FILE, --key FILE, for a client's option table
 * (verbs: the CLI_VB() of the sub-verbs that take them, 0 for all); index them with
 * first + CLI_TLS_OPT_*. */
#define CLI_TLS_OPTS(verbs)                                                                        \
    {"tls",                                                                                        \
     0,                                                                                            \
     NULL,                                                                                         \
     "speak TLS (1.2 or newer) to the server, verifying its certificate and the HOST given "       \
     "(a name or an IP address)",                                                                  \
     (verbs),                                                                                      \
     false},                                                                                       \
        {"cacert", 0,                                                                              \
         "FILE",   "with --tls: trust the CA certificates (PEM) in FILE instead of the system's",  \
         (verbs),  false},                                                                         \
        {"cert",  0,    "FILE", "with --tls: present this client certificate (PEM); needs --key",  \
         (verbs), false},                                                                          \
    {                                                                                              \
        "key", 0, "FILE", "with --tls: the private key (PEM) of --cert", (verbs), false            \
    }
enum { CLI_TLS_OPT_TLS, CLI_TLS_OPT_CACERT, CLI_TLS_OPT_CERT, CLI_TLS_OPT_KEY };

/* Bytes a TLS client reads from its socket at once (read-ahead), several records' worth. */
#define CLI_TLS_READ_AHEAD (64 * 1024)

/* What the TLS options said; on false: plain TCP. Paths borrowed from argv. */
struct cli_tls_opts {
    bool on;
    const char *cacert, *cert, *key; /* NULL: not given */
};

/*
 * Reads the four options at first (an index in cmd->opts) into *ret. Returns 0, or 2 after a
 * usage error (as verb): --cacert, --cert or --key without --tls, --cert without --key.
 */
int cli_tls_args(const struct cli_command *cmd, int verb, const struct cli_args *args, int first,
                 struct cli_tls_opts *ret);

/* A connected stream to a server. Members are the stream's own. */
struct cli_stream {
    int fd;          /* non-blocking; -1 when closed */
    void *ssl;       /* SSL *, NULL for plain TCP */
    void *ctx;       /* SSL_CTX * */
    short want;      /* TLS: what the last -EAGAIN waits for (POLLIN or POLLOUT) */
    bool starved;    /* TLS: the last read needs more from the socket than was read ahead */
    bool closed;     /* TLS: close_notify sent */
    char error[160]; /* TLS: why the last call failed with -EPROTO */
};

/*
 * Connects to the first address of list that accepts before deadline (core_now_ms() time) and,
 * with tls->on, does the TLS handshake before it, verifying the server's certificate against
 * tls->cacert (or the system's CAs) and peer->host (a name, or an IP address). Returns 0 with
 * *ret (release with cli_stream_close()), or 1 after printing why as verb ("cannot connect to
 * HOST:PORT: ...", "--cacert FILE: ...", "TLS with HOST:PORT failed: certificate verify failed
 * (...)").
 */
int cli_stream_connect(struct cli_stream *ret, const char *verb, const struct cli_peer *peer,
                       const struct addrinfo *list, const struct cli_tls_opts *tls,
                       int64_t deadline);

/*
 * Reads what is there into buf (n bytes): the count (> 0), 0 at the end of the stream (TLS:
 * close_notify, or the peer closed), -EAGAIN when nothing is there yet (wait for
 * cli_stream_events()), or a negative errno (-EPROTO for a TLS error).
 */
ssize_t cli_stream_read(struct cli_stream *s, void *buf, size_t n);

/* What error (a negative errno a call of s returned) means, for a message: TLS's reason for
 * -EPROTO ("tlsv13 alert certificate required"), else strerror(). */
const char *cli_stream_strerror(const struct cli_stream *s, int error);

/* Sends up to n bytes of p: the count (> 0), -EAGAIN (wait for cli_stream_events()), or a
 * negative errno (-EPIPE, -ECONNRESET: the server closed). */
ssize_t cli_stream_write(struct cli_stream *s, const void *p, size_t n);

/* The poll(2) events to wait for when an operation wants dflt: dflt, and for TLS what its last
 * -EAGAIN waits for besides. */
short cli_stream_events(const struct cli_stream *s, short dflt);

/* Whether TLS holds bytes to read before waiting for the socket (which may be empty): decrypted
 * ones, or a record read ahead (not the start of one the last read found short). */
bool cli_stream_pending(const struct cli_stream *s);

/* Ends the sending side: shutdown(SHUT_WR), or a TLS close_notify (the server's answer can
 * still be read). */
void cli_stream_shutdown(struct cli_stream *s);

/* Closes the stream (TLS: close_notify first, without waiting). Accepts a closed one. */
void cli_stream_close(struct cli_stream *s);

/*
 * Where a download (a restore, a file of the API) is written: a temporary file beside the
 * target, made durable and renamed over it only once the content is complete and checked, so
 * that an interrupted or refused download leaves no partial file; or standard output ("-").
 */
struct cli_sink {
    int fd;
    bool is_stdout;
    bool direct;              /* the file is open with O_DIRECT (cli_sink_direct()) */
    struct core_writeback wb; /* a file's writeback, started as it is written */
    char path[PATH_MAX];
    char tmp[PATH_MAX + 16];
};

/*
 * Opens a sink for target ("-": standard output). Unless chosen (the user named the target), a
 * file that exists is refused rather than overwritten. Returns 0, or 1 after printing why as
 * VERB.
 */
int cli_sink_open(struct cli_sink *s, const char *verb, const char *target, bool chosen);

/* The sink will get size bytes: a file has its blocks allocated at once (fallocate), so that
 * neither its writeback nor its fsync allocates them piece by piece. Only a hint: a file system
 * without it, or short of space, leaves it to the writes. */
void cli_sink_reserve(struct cli_sink *s, uint64_t size);

/*
 * Asks that the file's writes bypass the page cache (O_DIRECT): the bytes go to the disk from
 * the caller's memory, without the copy into the page cache, and the final fsync finds nothing
 * left to write but the metadata. Applies to the writes of whole CORE_WRITEBACK_DIRECT_ALIGN blocks
 * from aligned memory at an aligned offset; anything else (the last short block, a file system or a
 * device that refuses it) goes through the page cache as before: only a hint. Standard output
 * is left as it is. The thread that writes the sink calls it, or its owner before that.
 */
void cli_sink_direct(struct cli_sink *s);

/* Writes all of p. Returns 0 or 1 after printing why as VERB. */
int cli_sink_write(struct cli_sink *s, const char *verb, const void *p, size_t n);

/* fsync, the mode a new file gets (0666 less the umask), rename over the target, fsync of its
 * directory. Returns 0 or 1 after printing why as VERB. */
int cli_sink_commit(struct cli_sink *s, const char *verb);

/* Drops what was written (the temporary file). Accepts a sink never opened or committed. */
void cli_sink_abort(struct cli_sink *s);

/*
 * A sink written by a thread of its own (core/filewriter.h) while the command's thread receives
 * and checks what comes next. The command takes a free buffer, fills it and pushes it with
 * core_filewriter_next() and core_filewriter_push() on fw (NULL from next: a write or a sync
 * failed; finish says why); the sink is the thread's from start to finish.
 */
#define CLI_WRITER_CHUNK (1024 * 1024) /* bytes of one buffer */
#define CLI_WRITER_BUFFERS 16 /* so a write takes up to 16 MiB: several device requests at once */

struct cli_writer {
    struct core_filewriter fw;
    struct cli_sink *sink;
    const char *verb;
    bool printed; /* a failure was printed */
};

/* Starts the thread writing s. Returns 0 or 1 after printing why as VERB. */
int cli_writer_start(struct cli_writer *w, struct cli_sink *s, const char *verb);

/* Waits until every buffer pushed is written and synced (all of them, or none more when
 * discard), then joins the threads. Returns 0, or 1 when a write or a sync failed (printed).
 * Accepts a writer never started; once finished it may be finished again. */
int cli_writer_finish(struct cli_writer *w, bool discard);

#endif
