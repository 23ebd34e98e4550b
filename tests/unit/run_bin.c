#include "run_bin.h"

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
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"

extern char **environ;

void ut_run_bin(const char *stdin_path, const char *const *args, struct ut_run *r)
{
    const char *bin = getenv("SOCKSERV_BIN");
    char *argv[32];
    int out[2], err[2], in, n = 0, ws;
    posix_spawn_file_actions_t fa;
    int64_t deadline = core_now_ms() + UT_RUN_TIMEOUT_MS;
    bool out_open = true, err_open = true;
    pid_t pid;

    if (!bin)
        fail_msg("SOCKSERV_BIN is not set: run the tests with meson test");
    memset(r, 0, sizeof(*r));
    argv[n++] = (char *)bin;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    in = open(stdin_path, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
    assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(in);
    close(out[1]);
    close(err[1]);
    while (out_open || err_open) {
        struct pollfd pfd[2] = {{.fd = out_open ? out[0] : -1, .events = POLLIN},
                                {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        int64_t left = deadline - core_now_ms();
        int k = poll(pfd, 2, left > 0 ? (int)left : 0);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        for (int i = 0; i < 2; i++) {
            char *buf = i == 0 ? r->out : r->err;
            size_t *len = i == 0 ? &r->out_len : &r->err_len;
            ssize_t got;

            if (!pfd[i].revents)
                continue;
            got = read(pfd[i].fd, buf + *len, UT_RUN_OUT_MAX - 1 - *len);
            if (got > 0)
                *len += (size_t)got;
            else if (i == 0)
                out_open = false;
            else
                err_open = false;
        }
    }
    close(out[0]);
    close(err[0]);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}
