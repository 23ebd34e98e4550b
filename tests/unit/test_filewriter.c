#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/filewriter.h"

#define CHUNK 4096
#define BUFFERS 4

/* What the writer's thread was given, in order. */
struct sink {
    uint8_t got[64 * CHUNK];
    size_t len;
    unsigned calls;
    unsigned fail_at; /* the call that fails with -ENOSPC (1-based), 0: none */
    char name[16];
};

static int sink_write(void *ctx, const uint8_t *p, size_t n)
{
    struct sink *s = ctx;

    s->calls++;
    (void)pthread_getname_np(pthread_self(), s->name, sizeof(s->name));
    if (s->fail_at && s->calls >= s->fail_at)
        return -ENOSPC;
    assert_true(s->len + n <= sizeof(s->got));
    memcpy(s->got + s->len, p, n);
    s->len += n;
    return 0;
}

/* Pushes total bytes of a pattern in buffers of CHUNK (the last one short); 0, or the error
 * core_filewriter_finish() gave. */
static int write_pattern(struct core_filewriter *w, size_t total, uint8_t *want)
{
    size_t done = 0;

    for (size_t i = 0; i < total; i++)
        want[i] = (uint8_t)(i * 7 + i / 251);
    while (done < total) {
        size_t n = total - done < CHUNK ? total - done : CHUNK;
        uint8_t *buf = core_filewriter_next(w);

        if (!buf)
            break;
        assert_true((uintptr_t)buf % CORE_FILEWRITER_ALIGN == 0);
        memcpy(buf, want + done, n);
        core_filewriter_push(w, n);
        done += n;
    }
    return core_filewriter_finish(w, false);
}

static void test_filewriter_writes_every_byte_in_order(void **state)
{
    struct core_filewriter w;
    struct sink *s = calloc(1, sizeof(*s));
    size_t total = 37 * CHUNK + 123;
    uint8_t *want = malloc(total);

    (void)state;
    assert_int_equal(core_filewriter_start(&w, BUFFERS, CHUNK, sink_write, s), 0);
    assert_int_equal(write_pattern(&w, total, want), 0);
    assert_int_equal(s->len, total);
    assert_memory_equal(s->got, want, total);
    /* buffers that follow each other in memory may go in one call, never more than pushed */
    assert_true(s->calls >= 1 && s->calls <= 38);
    assert_int_equal(core_filewriter_finish(&w, false), 0); /* finished twice: nothing more */
    free(want);
    free(s);
}

static void test_filewriter_failed_write_stops_the_writer_and_is_returned(void **state)
{
    struct core_filewriter w;
    struct sink *s = calloc(1, sizeof(*s));
    size_t total = 40 * CHUNK;
    uint8_t *want = malloc(total);

    (void)state;
    s->fail_at = 2;
    assert_int_equal(core_filewriter_start(&w, BUFFERS, CHUNK, sink_write, s), 0);
    assert_int_equal(write_pattern(&w, total, want), -ENOSPC);
    assert_int_equal(s->calls, 2); /* nothing handed to it after the failure */
    assert_true(s->len < total);
    assert_memory_equal(s->got, want, s->len);
    free(want);
    free(s);
}

static void test_filewriter_bad_sizes_refused(void **state)
{
    struct core_filewriter w;
    struct sink s;

    (void)state;
    assert_int_equal(core_filewriter_start(&w, 1, CHUNK, sink_write, &s), -EINVAL);
    assert_int_equal(
        core_filewriter_start(&w, CORE_FILEWRITER_BUFFERS_MAX + 1, CHUNK, sink_write, &s), -EINVAL);
    assert_int_equal(core_filewriter_start(&w, BUFFERS, CHUNK + 1, sink_write, &s), -EINVAL);
    assert_int_equal(core_filewriter_finish(&w, false), 0); /* never started */
}

/* The "VmFlags:" line of the mapping in /proc/self/smaps that holds p ("" when none does). */
static void vm_flags_of(const void *p, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in = false;

    assert_non_null(f);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;

        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, cap, "%.200s", line + 8);
            break;
        }
    }
    fclose(f);
}

/* Buffers of 2 MiB and more start on a huge page's boundary and are advised as huge pages (a
 * write past the page cache then pins and maps one page per 2 MiB, not 512); what is pushed is
 * written as ever. */
static void test_filewriter_large_buffers_advised_as_huge_pages(void **state)
{
    struct core_filewriter w;
    struct sink *s = calloc(1, sizeof(*s));
    size_t chunk = 1u << 20, total = 3 * CHUNK;
    uint8_t *want = malloc(total), *buf;
    char flags[256];

    (void)state;
    assert_int_equal(core_filewriter_start(&w, 4, chunk, sink_write, s), 0);
    buf = core_filewriter_next(&w);
    assert_non_null(buf);
    assert_int_equal((uintptr_t)buf % CORE_FILEWRITER_HUGE, 0);
    vm_flags_of(buf + 3 * chunk, flags, sizeof(flags)); /* the last buffer: the same mapping */
    assert_non_null(strstr(flags, " hg"));
    for (size_t i = 0; i < total; i++)
        want[i] = (uint8_t)(i * 13);
    memcpy(buf, want, total);
    core_filewriter_push(&w, total);
    assert_int_equal(core_filewriter_finish(&w, false), 0);
    assert_int_equal(s->len, total);
    assert_memory_equal(s->got, want, total);
    /* A smaller one (the inline writer's single chunk of 1 MiB) is not advised. */
    assert_int_equal(core_filewriter_start_inline(&w, chunk, sink_write, s), 0);
    buf = core_filewriter_next(&w);
    assert_non_null(buf);
    vm_flags_of(buf, flags, sizeof(flags));
    assert_null(strstr(flags, " hg"));
    assert_int_equal(core_filewriter_finish(&w, false), 0);
    free(want);
    free(s);
}

static void *named_owner(void *arg)
{
    struct sink *s = arg;
    struct core_filewriter w;
    uint8_t want[CHUNK];

    pthread_setname_np(pthread_self(), "l:backup7/conn");
    assert_int_equal(core_filewriter_start(&w, BUFFERS, CHUNK, sink_write, s), 0);
    assert_int_equal(write_pattern(&w, sizeof(want), want), 0);
    return NULL;
}

static void test_filewriter_thread_named_after_its_owner(void **state)
{
    struct sink *s = calloc(1, sizeof(*s));
    pthread_t t;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, named_owner, s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(s->name, "l:backup7/write");
    free(s);
}

/* Syncs behind the writes, on a thread of its own: a sync that fails (fdatasync() of a pipe:
 * EINVAL) is the writer's failure, as a failed write is, and a finish returns once what was
 * written is synced; with nothing written, nothing is synced. */
static void test_filewriter_flush_behind_failed_sync_is_returned(void **state)
{
    struct core_filewriter w;
    struct sink *s = calloc(1, sizeof(*s));
    uint8_t want[CHUNK];
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(core_filewriter_start(&w, BUFFERS, CHUNK, sink_write, s), 0);
    assert_int_equal(core_filewriter_flush_behind(&w, p[1]), 0);
    assert_int_equal(core_filewriter_flush_behind(&w, p[1]), -EINVAL); /* one is enough */
    assert_int_equal(core_filewriter_finish(&w, false), 0);

    assert_int_equal(core_filewriter_start(&w, BUFFERS, CHUNK, sink_write, s), 0);
    assert_int_equal(core_filewriter_flush_behind(&w, p[1]), 0);
    assert_int_equal(write_pattern(&w, sizeof(want), want), -EINVAL);
    assert_int_equal(s->len, sizeof(want)); /* the write itself went through */
    close(p[0]);
    close(p[1]);
    free(s);
}

/* Into a file, synced behind: every byte there, and the sync thread named after the owner's
 * ("l:backup7/conn" makes "l:backup7/sync"), seen in /proc while it writes. */
struct file_sink {
    int fd;
    bool saw_sync;
};

static int file_write(void *ctx, const uint8_t *p, size_t n)
{
    struct file_sink *f = ctx;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;

    assert_non_null(d);
    while (!f->saw_sync && (e = readdir(d))) {
        char path[300], comm[32] = "";
        FILE *c;

        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        c = fopen(path, "r");
        if (!c)
            continue;
        if (fgets(comm, sizeof(comm), c) && strcmp(comm, "l:backup7/sync\n") == 0)
            f->saw_sync = true;
        fclose(c);
    }
    closedir(d);
    return write(f->fd, p, n) == (ssize_t)n ? 0 : -EIO;
}

static void *file_owner(void *arg)
{
    struct file_sink *f = arg;
    struct core_filewriter w;
    size_t total = 20 * CHUNK + 7;
    uint8_t *want = malloc(total), *got = malloc(total);

    pthread_setname_np(pthread_self(), "l:backup7/conn");
    assert_int_equal(core_filewriter_start(&w, BUFFERS, CHUNK, file_write, f), 0);
    assert_int_equal(core_filewriter_flush_behind(&w, f->fd), 0);
    assert_int_equal(write_pattern(&w, total, want), 0);
    assert_int_equal(pread(f->fd, got, total, 0), (ssize_t)total);
    assert_memory_equal(got, want, total);
    free(want);
    free(got);
    return NULL;
}

static void test_filewriter_flush_behind_file_gets_every_byte(void **state)
{
    char path[] = "/tmp/sockserv-filewriter-XXXXXX";
    struct file_sink f = {.fd = mkstemp(path)};
    pthread_t t;

    (void)state;
    assert_true(f.fd >= 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(pthread_create(&t, NULL, file_owner, &f), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(f.saw_sync);
    close(f.fd);
}

static void test_filewriter_inline_writes_each_push_before_it_returns(void **state)
{
    struct core_filewriter w;
    struct sink *s = calloc(1, sizeof(*s));
    size_t total = 5 * CHUNK + 9;
    uint8_t *want = malloc(total);

    (void)state;
    assert_int_equal(core_filewriter_start_inline(&w, CHUNK, sink_write, s), 0);
    assert_non_null(core_filewriter_next(&w));
    memset(core_filewriter_next(&w), 'x', 10);
    core_filewriter_push(&w, 10);
    assert_int_equal(s->calls, 1); /* written there and then, on this thread */
    assert_int_equal(s->len, 10);
    s->len = 0;
    s->calls = 0;
    assert_int_equal(write_pattern(&w, total, want), 0);
    assert_int_equal(s->len, total);
    assert_memory_equal(s->got, want, total);
    assert_int_equal(s->calls, 6);
    free(want);
    free(s);
}

static void test_filewriter_inline_failed_write_is_returned(void **state)
{
    struct core_filewriter w;
    struct sink *s = calloc(1, sizeof(*s));
    size_t total = 8 * CHUNK;
    uint8_t *want = malloc(total);

    (void)state;
    s->fail_at = 3;
    assert_int_equal(core_filewriter_start_inline(&w, CHUNK, sink_write, s), 0);
    assert_int_equal(write_pattern(&w, total, want), -ENOSPC);
    assert_int_equal(s->calls, 3);
    assert_int_equal(s->len, 2 * CHUNK);
    free(want);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filewriter_writes_every_byte_in_order),
        cmocka_unit_test(test_filewriter_flush_behind_failed_sync_is_returned),
        cmocka_unit_test(test_filewriter_flush_behind_file_gets_every_byte),
        cmocka_unit_test(test_filewriter_failed_write_stops_the_writer_and_is_returned),
        cmocka_unit_test(test_filewriter_bad_sizes_refused),
        cmocka_unit_test(test_filewriter_large_buffers_advised_as_huge_pages),
        cmocka_unit_test(test_filewriter_thread_named_after_its_owner),
        cmocka_unit_test(test_filewriter_inline_writes_each_push_before_it_returns),
        cmocka_unit_test(test_filewriter_inline_failed_write_is_returned),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
