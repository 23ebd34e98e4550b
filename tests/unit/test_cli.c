/*
 * The command line of every sockserv verb: one parser (cli_args_parse() over each verb's table)
 * and one help layout. The tables are driven directly (spellings, scope, counts, durations); the
 * help and the errors are read from the real command ($SOCKSERV_BIN) as a user sees them:
 * stdout, stderr and the exit status.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/backup.h"
#include "cli/cli.h"
#include "run_bin.h"
#include "cli/common.h"
#include "cli/ctl.h"
#include "cli/date.h"

extern char **environ;

/* ---- running the command ---- */

#define RUN(r, ...) ut_run_bin("/dev/null", (const char *const[]){__VA_ARGS__, NULL}, r)

/* ---- the help layout ---- */

/*
 * Asserts the one layout: "Usage: sockserv PREFIX...", a blank line, a one-line description, an
 * "Options:" table whose rows are "  -s, --name ARG" or "      --name ARG" with the help at
 * CLI_HELP_COLUMN (or on the next lines when the option is longer), continuation lines indented
 * to that column, -h/--help and -V among them; nothing longer than CLI_HELP_WIDTH.
 */
static void assert_help_layout(const struct ut_run *r, const char *prefix)
{
    char want[128];
    const char *opts, *p;
    bool help = false, version = false;

    if (r->status != 0)
        fail_msg("%s --help: exit %d, want 0; stderr: %s", prefix, r->status, r->err);
    assert_int_equal(r->err_len, 0);
    snprintf(want, sizeof(want), "Usage: sockserv %s", prefix);
    if (strncmp(r->out, want, strlen(want)) != 0)
        fail_msg("help of %s does not start with '%s':\n%s", prefix, want, r->out);
    /* One line of description, a capital first, between blank lines. */
    p = strstr(r->out, "\n\n");
    assert_non_null(p);
    if (!(p[2] >= 'A' && p[2] <= 'Z') || !strchr(p + 2, '\n') || strchr(p + 2, '\n')[1] != '\n')
        fail_msg("help of %s has no one-line description after the usage:\n%s", prefix, r->out);
    opts = strstr(r->out, "\nOptions:\n");
    if (!opts)
        fail_msg("help of %s has no Options table:\n%s", prefix, r->out);
    for (p = opts + 10; *p && *p != '\n'; p = strchr(p, '\n') + 1) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[256];

        assert_non_null(nl);
        snprintf(line, sizeof(line), "%.*s", (int)len, p);
        if (len > CLI_HELP_WIDTH)
            fail_msg("%s: line longer than %d columns: '%s'", prefix, CLI_HELP_WIDTH, line);
        if (strncmp(line, "  -", 3) == 0 || strncmp(line, "      --", 8) == 0) {
            bool short_form = line[2] == '-' && line[3] != '-';

            if (short_form && (line[4] != ',' && line[4] != ' '))
                fail_msg("%s: bad short option row '%s'", prefix, line);
            if (len > CLI_HELP_COLUMN && line[CLI_HELP_COLUMN - 1] == ' ' &&
                line[CLI_HELP_COLUMN - 2] == ' ')
                assert_true(line[CLI_HELP_COLUMN] != ' ');
            else if (len > CLI_HELP_COLUMN - 2)
                assert_true(strncmp(nl + 1, "                            ", CLI_HELP_COLUMN) == 0);
            else
                fail_msg("%s: option row without help '%s'", prefix, line);
            help |= strncmp(line, "  -h, --help ", 13) == 0;
            version |= strncmp(line, "  -V", 4) == 0;
        } else if (strspn(line, " ") != CLI_HELP_COLUMN) {
            fail_msg("%s: option help not aligned at column %d: '%s'", prefix, CLI_HELP_COLUMN,
                     line);
        }
    }
    assert_true(help);
    assert_true(version);
}

/* The help of cmd (verb: -1 or a sub-verb) as cli_help_print() writes it to stdout. */
static void help_of(const struct cli_command *cmd, int verb, struct ut_run *r)
{
    FILE *f = tmpfile();
    int saved = dup(STDOUT_FILENO);
    ssize_t n;

    assert_non_null(f);
    assert_true(saved >= 0);
    memset(r, 0, sizeof(*r));
    fflush(stdout);
    assert_true(dup2(fileno(f), STDOUT_FILENO) >= 0);
    cli_help_print(cmd, verb);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    n = pread(fileno(f), r->out, UT_RUN_OUT_MAX - 1, 0);
    assert_true(n > 0);
    r->out_len = (size_t)n;
    fclose(f);
}

static void test_help_every_verb_same_layout(void **state)
{
    const struct cli_command *const cmds[] = {&cli_echo_command, &cli_date_command,
                                              &cli_backup_command, &cli_ctl_command};
    static struct ut_run r;

    (void)state;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        for (int v = -1; v < (int)cmds[i]->nverbs; v++) {
            char prefix[64];

            snprintf(prefix, sizeof(prefix), "%s%s%s", cmds[i]->name, v >= 0 ? " " : "",
                     v >= 0 ? cmds[i]->verbs[v].name : "");
            help_of(cmds[i], v, &r);
            assert_help_layout(&r, prefix);
        }
}

/* The command prints that help for --help and -h, and the daemon's in the same layout. */
static void test_help_from_the_command_exit_0(void **state)
{
    static struct ut_run r;

    (void)state;
    RUN(&r, "echo", "--help");
    assert_help_layout(&r, "echo");
    RUN(&r, "backup", "put", "-h");
    assert_help_layout(&r, "backup put");
    RUN(&r, "ctl", "wait", "--help");
    assert_help_layout(&r, "ctl wait");
    RUN(&r, "daemon", "--help");
    assert_help_layout(&r, "daemon");
    RUN(&r, "daemon", "-h");
    assert_help_layout(&r, "daemon");
}

static void test_help_command_lists_every_command(void **state)
{
    static struct ut_run r;

    (void)state;
    RUN(&r, "--help");
    assert_int_equal(r.status, 0);
    for (size_t i = 0; i < 5; i++) {
        static const char *const names[] = {"daemon", "echo", "date", "backup", "ctl"};
        char row[64];

        snprintf(row, sizeof(row), "\n  %-*s", CLI_HELP_COLUMN - 2, names[i]);
        assert_non_null(strstr(r.out, row));
    }
}

/* The shared options are spelled the same in every verb that takes them. */
static void test_help_shared_options_same_spelling(void **state)
{
    const struct cli_command *const wire[] = {&cli_echo_command, &cli_date_command,
                                              &cli_backup_command};
    static struct ut_run r;

    (void)state;
    for (size_t i = 0; i < sizeof(wire) / sizeof(wire[0]); i++)
        for (int v = -1; v < (int)wire[i]->nverbs; v++) {
            help_of(wire[i], v, &r);
            assert_non_null(strstr(r.out, "\n  -t, --timeout DURATION "));
            assert_non_null(strstr(r.out, "\n  HOST "));
            assert_non_null(strstr(r.out, "\n  PORT "));
        }
    for (int v = -1; v < (int)cli_ctl_command.nverbs; v++) {
        help_of(&cli_ctl_command, v, &r);
        assert_non_null(strstr(r.out, "\n      --api URL|unix:PATH "));
        assert_non_null(strstr(r.out, "\n      --token-file FILE "));
        assert_non_null(strstr(r.out, "\n      --cacert FILE "));
        assert_non_null(strstr(r.out, "\n      --json "));
        assert_non_null(strstr(r.out, "\n  -t, --timeout DURATION "));
    }
    RUN(&r, "daemon", "--help");
    assert_non_null(strstr(r.out, "\n      --api HOST:PORT|unix:PATH"));
    assert_non_null(strstr(r.out, "\n      --token-file FILE "));
}

static void test_version_every_verb_exit_0(void **state)
{
    static const char *const verbs[][3] = {
        {"--version"},           {"-V"},
        {"echo", "--version"},   {"date", "-V"},
        {"backup", "--version"}, {"backup", "put", "--version"},
        {"backup", "get", "-V"}, {"ctl", "--version"},
        {"ctl", "ls", "-V"},     {"daemon", "--version"},
    };
    static struct ut_run r;

    (void)state;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        const char *args[4] = {verbs[i][0], verbs[i][1], verbs[i][2], NULL};

        ut_run_bin("/dev/null", args, &r);
        if (r.status != 0 || strncmp(r.out, "sockserv ", 9) != 0)
            fail_msg("%s %s: exit %d, stdout '%s'", verbs[i][0], verbs[i][1] ? verbs[i][1] : "",
                     r.status, r.out);
        assert_int_equal(r.err_len, 0);
    }
}

/* ---- errors ---- */

/* Asserts exit 2, nothing on stdout, and stderr naming what and the way to --help. */
static void assert_usage_error(const struct ut_run *r, const char *what, const char *try)
{
    if (r->status != 2)
        fail_msg("exit %d, want 2; stderr: %s", r->status, r->err);
    assert_int_equal(r->out_len, 0);
    if (!strstr(r->err, what))
        fail_msg("stderr does not say '%s': %s", what, r->err);
    if (!strstr(r->err, try))
        fail_msg("stderr does not say '%s': %s", try, r->err);
    assert_non_null(strstr(r->err, "\nUsage: sockserv "));
}

static void test_errors_bad_option_named_exit_2(void **state)
{
    static struct ut_run r;

    (void)state;
    RUN(&r, "echo", "--bogus", "127.0.0.1", "7", "x");
    assert_usage_error(&r, "sockserv echo: unknown option '--bogus'",
                       "Try 'sockserv echo --help'.");
    RUN(&r, "date", "-x", "127.0.0.1");
    assert_usage_error(&r, "sockserv date: unknown option '-x'", "Try 'sockserv date --help'.");
    RUN(&r, "backup", "put", "f", "--frob=1", "127.0.0.1");
    assert_usage_error(&r, "sockserv backup: unknown option '--frob=1'",
                       "Try 'sockserv backup put --help'.");
    RUN(&r, "ctl", "ls", "--bogus");
    assert_usage_error(&r, "sockserv ctl: unknown option '--bogus'",
                       "Try 'sockserv ctl ls --help'.");
    RUN(&r, "daemon", "--bogus");
    assert_usage_error(&r, "sockserv daemon: unknown option '--bogus'",
                       "Try 'sockserv daemon --help'.");
    RUN(&r, "--bogus");
    assert_usage_error(&r, "sockserv: unknown option '--bogus'", "Try 'sockserv --help'.");
    RUN(&r, "frob");
    assert_usage_error(&r, "sockserv: unknown command 'frob'", "Try 'sockserv --help'.");
    /* An option of another verb. */
    RUN(&r, "backup", "put", "f", "-o", "x", "127.0.0.1");
    assert_usage_error(&r, "--output does not apply to put", "Try 'sockserv backup put --help'.");
    RUN(&r, "ctl", "ls", "--set", "a=1");
    assert_usage_error(&r, "--set does not apply to ls", "Try 'sockserv ctl ls --help'.");
    /* A flag given a value, a value missing. */
    RUN(&r, "echo", "--udp=yes", "127.0.0.1", "7", "x");
    assert_usage_error(&r, "--udp takes no value", "--help");
    RUN(&r, "echo", "127.0.0.1", "7", "x", "--timeout");
    assert_usage_error(&r, "--timeout needs a value", "--help");
    RUN(&r, "ctl", "wait", "x", "--state");
    assert_usage_error(&r, "--state needs a value", "Try 'sockserv ctl wait --help'.");
}

static void test_errors_missing_argument_named_exit_2(void **state)
{
    static struct ut_run r;

    (void)state;
    RUN(&r, "echo");
    assert_usage_error(&r, "sockserv echo: missing HOST and PORT", "Try 'sockserv echo --help'.");
    RUN(&r, "echo", "127.0.0.1");
    assert_usage_error(&r, "sockserv echo: missing PORT", "--help");
    RUN(&r, "date");
    assert_usage_error(&r, "sockserv date: missing HOST", "--help");
    RUN(&r, "backup");
    assert_usage_error(&r, "sockserv backup: missing verb (put, get, ls)",
                       "Try 'sockserv backup --help'.");
    RUN(&r, "backup", "get");
    assert_usage_error(&r, "sockserv backup: missing NAME and HOST",
                       "Try 'sockserv backup get --help'.");
    RUN(&r, "backup", "ls");
    assert_usage_error(&r, "missing HOST", "Try 'sockserv backup ls --help'.");
    RUN(&r, "ctl");
    assert_usage_error(&r, "sockserv ctl: missing verb (ls, get,", "Try 'sockserv ctl --help'.");
    RUN(&r, "ctl", "get");
    assert_usage_error(&r, "sockserv ctl: missing ID", "Try 'sockserv ctl get --help'.");
    RUN(&r, "ctl", "restore");
    assert_usage_error(&r, "sockserv ctl: missing N", "Try 'sockserv ctl restore --help'.");
    RUN(&r, "ctl", "frob");
    assert_usage_error(&r, "sockserv ctl: unknown verb 'frob'", "Try 'sockserv ctl --help'.");
    ut_run_bin("/dev/null", (const char *const[]){NULL}, &r);
    assert_usage_error(&r, "sockserv: missing command", "Try 'sockserv --help'.");
    /* One too many. */
    RUN(&r, "date", "127.0.0.1", "13", "extra");
    assert_usage_error(&r, "sockserv date: unexpected argument 'extra'", "--help");
    RUN(&r, "daemon", "extra");
    assert_usage_error(&r, "sockserv daemon: unexpected argument 'extra'", "--help");
}

static void test_errors_bad_values_named_exit_2(void **state)
{
    static struct ut_run r;

    (void)state;
    RUN(&r, "echo", "--timeout", "soon", "127.0.0.1", "7", "x");
    assert_usage_error(&r, "--timeout: 'soon' is not a duration", "--help");
    RUN(&r, "date", "-t", "0", "127.0.0.1");
    assert_usage_error(&r, "--timeout: '0' is not a duration", "--help");
    RUN(&r, "backup", "ls", "127.0.0.1", "70000");
    assert_usage_error(&r, "PORT: '70000' is not a port", "Try 'sockserv backup ls --help'.");
    RUN(&r, "ctl", "--timeout", "25h", "ls");
    assert_usage_error(&r, "--timeout: '25h' is not a duration", "Try 'sockserv ctl ls --help'.");
    RUN(&r, "daemon", "--log-level", "loud");
    assert_usage_error(&r, "--log-level: 'loud'", "Try 'sockserv daemon --help'.");
    RUN(&r, "daemon", "--api-mode", "999");
    assert_usage_error(&r, "--api-mode: '999'", "Try 'sockserv daemon --help'.");
    RUN(&r, "daemon", "--api-tls-cert", "/nonexistent/cert.pem");
    assert_usage_error(&r, "sockserv daemon: --api-tls-cert and --api-tls-key go together",
                       "Try 'sockserv daemon --help'.");
    RUN(&r, "daemon", "--api", "127.0.0.1:0", "--api-mode", "0660");
    assert_usage_error(&r, "--api-mode applies to --api unix:PATH only",
                       "Try 'sockserv daemon --help'.");
}

/* ---- the tables, parsed directly: every spelling the documentation, scripts and tests use ---- */

static int parse(const struct cli_command *cmd, struct cli_args *a, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;

    argv[argc++] = (char *)cmd->name;
    va_start(ap, a);
    for (char *s; (s = va_arg(ap, char *)) != NULL;)
        argv[argc++] = s;
    va_end(ap);
    return cli_args_parse(cmd, argc, argv, a);
}

static int opt_index(const struct cli_command *cmd, const char *name)
{
    for (size_t i = 0; i < cmd->nopts; i++)
        if (strcmp(cmd->opts[i].name, name) == 0)
            return (int)i;
    fail_msg("%s has no option --%s", cmd->name, name);
    return -1;
}

static void test_parse_old_spellings_still_work(void **state)
{
    const struct cli_command *echo = &cli_echo_command, *date = &cli_date_command;
    const struct cli_command *backup = &cli_backup_command, *ctl = &cli_ctl_command;
    struct cli_args a;

    (void)state;
    /* echo: options before, between and after the positional arguments; -u, -t, --opt=value. */
    assert_int_equal(parse(echo, &a, "-u", "127.0.0.1", "-t", "500", "7", "hi", NULL),
                     CLI_ARGS_GO_ON);
    assert_true(a.seen[opt_index(echo, "udp")]);
    assert_string_equal(a.val[opt_index(echo, "timeout")], "500");
    assert_int_equal(a.npos, 3);
    assert_string_equal(a.pos[2], "hi");
    assert_int_equal(parse(echo, &a, "127.0.0.1", "7", "--timeout=250", "--udp", NULL),
                     CLI_ARGS_GO_ON);
    assert_string_equal(a.val[opt_index(echo, "timeout")], "250");
    /* "--" ends the options: a message that starts with a dash. */
    assert_int_equal(parse(echo, &a, "127.0.0.1", "7", "--", "-n", NULL), CLI_ARGS_GO_ON);
    assert_string_equal(a.pos[2], "-n");
    assert_int_equal(parse(echo, &a, "::1", "7", "-", NULL), CLI_ARGS_GO_ON);
    assert_string_equal(a.pos[2], "-");

    assert_int_equal(parse(date, &a, "--tcp", "127.0.0.1", "1313", NULL), CLI_ARGS_GO_ON);
    assert_true(a.seen[opt_index(date, "tcp")]);
    assert_int_equal(parse(date, &a, "::1", "--iso", NULL), CLI_ARGS_GO_ON);
    assert_true(a.seen[opt_index(date, "iso")]);

    /* backup: the verb first, its options anywhere; --version N and -o / --output for get. */
    assert_int_equal(
        parse(backup, &a, "get", "app.conf", "--version", "1", "-o", "out", "127.0.0.1", "9", NULL),
        CLI_ARGS_GO_ON);
    assert_int_equal(a.verb, 1);
    assert_string_equal(a.val[opt_index(backup, "version")], "1");
    assert_string_equal(a.val[opt_index(backup, "output")], "out");
    assert_int_equal(a.npos, 3);
    assert_int_equal(parse(backup, &a, "get", "x", "--output", "-", "h", NULL), CLI_ARGS_GO_ON);
    assert_string_equal(a.val[opt_index(backup, "output")], "-");
    assert_int_equal(
        parse(backup, &a, "put", "f", "--name", "shared", "127.0.0.1", "9", "--timeout", "5", NULL),
        CLI_ARGS_GO_ON);
    assert_int_equal(a.verb, 0);
    assert_string_equal(a.val[opt_index(backup, "name")], "shared");

    /* ctl: the common options before or after the verb, -f, --set repeated in order. */
    assert_int_equal(parse(ctl, &a, "--api", "http://127.0.0.1:1", "--json", "ls", NULL),
                     CLI_ARGS_GO_ON);
    assert_int_equal(a.verb, CLI_CTL_LS);
    assert_string_equal(a.val[CLI_CTL_OPT_API], "http://127.0.0.1:1");
    assert_true(a.seen[CLI_CTL_OPT_JSON]);
    assert_int_equal(parse(ctl, &a, "ls", "--json", "--api=unix:/x", NULL), CLI_ARGS_GO_ON);
    assert_string_equal(a.val[CLI_CTL_OPT_API], "unix:/x");
    assert_int_equal(parse(ctl, &a, "patch", "s1", "--set", "workers=2", "--set", "mode=once",
                           "--if-match", "r1", NULL),
                     CLI_ARGS_GO_ON);
    assert_int_equal(a.nrepeats, 2);
    assert_string_equal(a.repeats[0], "workers=2");
    assert_string_equal(a.repeats[1], "mode=once");
    assert_int_equal(a.repeat_opt[1], CLI_CTL_OPT_SET);
    assert_int_equal(parse(ctl, &a, "apply", "-f", "-", "--prune", "--dry-run", NULL),
                     CLI_ARGS_GO_ON);
    assert_string_equal(a.val[CLI_CTL_OPT_FILE], "-");
    assert_int_equal(parse(ctl, &a, "files", "bk", "n.txt", "--version", "2", "-o", "x", NULL),
                     CLI_ARGS_GO_ON);
    assert_string_equal(a.val[CLI_CTL_OPT_VERSION], "2");
    assert_int_equal(parse(ctl, &a, "wait", "s1", "--state", "running", "--timeout", "5s", NULL),
                     CLI_ARGS_GO_ON);
    assert_string_equal(a.val[CLI_CTL_OPT_STATE], "running");
}

static void test_duration_parse_bare_unit_per_verb(void **state)
{
    int64_t ms = 0;

    (void)state;
    assert_int_equal(cli_duration_parse("500", 1, 86400000, &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(cli_duration_parse("500", 1000, 86400000, &ms), 0);
    assert_int_equal(ms, 500000);
    assert_int_equal(cli_duration_parse("5s", 1, 86400000, &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(cli_duration_parse("250ms", 1000, 86400000, &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(cli_duration_parse("2m", 1, 86400000, &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(cli_duration_parse("24h", 1, 86400000, &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(cli_duration_parse("0", 1, 86400000, &ms), -EINVAL);
    assert_int_equal(cli_duration_parse("25h", 1, 86400000, &ms), -EINVAL);
    assert_int_equal(cli_duration_parse("5 s", 1, 86400000, &ms), -EINVAL);
    assert_int_equal(cli_duration_parse("-5", 1, 86400000, &ms), -EINVAL);
    assert_int_equal(cli_duration_parse("", 1, 86400000, &ms), -EINVAL);
}

static void test_help_row_wraps_at_column_and_width(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    (void)state;
    assert_non_null(f);
    cli_help_row(f, "-x, --long-option-name VALUE",
                 "one two three four five six seven eight "
                 "nine ten eleven twelve thirteen fourteen");
    cli_help_row(f, "HOST", "short");
    fclose(f);
    assert_string_equal(buf, "  -x, --long-option-name VALUE\n"
                             "                            one two three four five six seven "
                             "eight nine ten\n"
                             "                            eleven twelve thirteen fourteen\n"
                             "  HOST                      short\n");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_every_verb_same_layout),
        cmocka_unit_test(test_help_from_the_command_exit_0),
        cmocka_unit_test(test_help_command_lists_every_command),
        cmocka_unit_test(test_help_shared_options_same_spelling),
        cmocka_unit_test(test_version_every_verb_exit_0),
        cmocka_unit_test(test_errors_bad_option_named_exit_2),
        cmocka_unit_test(test_errors_missing_argument_named_exit_2),
        cmocka_unit_test(test_errors_bad_values_named_exit_2),
        cmocka_unit_test(test_parse_old_spellings_still_work),
        cmocka_unit_test(test_duration_parse_bare_unit_per_verb),
        cmocka_unit_test(test_help_row_wraps_at_column_and_width),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
