#ifndef TESTS_UNIT_RUN_BIN_H
#define TESTS_UNIT_RUN_BIN_H

/* The unit suites' way to run the sockserv binary ($SOCKSERV_BIN, set by meson test) as a user
 * would: arguments, standard input from a file, standard output and error captured. */

#include <stddef.h>

#define UT_RUN_TIMEOUT_MS 20000
#define UT_RUN_OUT_MAX (256 * 1024)

struct ut_run {
    int status; /* the exit code, or -1 when it did not exit by itself (killed at the deadline) */
    char out[UT_RUN_OUT_MAX], err[UT_RUN_OUT_MAX];
    size_t out_len, err_len;
};

/* Runs $SOCKSERV_BIN with args (NULL-terminated; args[0] is the first argument), standard input
 * from stdin_path ("/dev/null" for none), for at most UT_RUN_TIMEOUT_MS. Fails the test when it
 * cannot be started. */
void ut_run_bin(const char *stdin_path, const char *const *args, struct ut_run *r);

#endif
