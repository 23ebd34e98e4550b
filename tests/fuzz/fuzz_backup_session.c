/*
 * The backup service's sessions (svc/backup.h) driven as a runner drives them, with the bytes of
 * one connection, against an instance whose store is a scratch directory (on /dev/shm when
 * there is one, so that fsync costs nothing). The directory is created once and emptied after
 * each input, so that an input's outcome depends on that input alone.
 *
 * Input: byte 0 chooses the options (bits 0-1 on_exists: version, replace, reject, version;
 * bit 2 require_checksum; bit 3 the client closes (session_eof) rather than the connection
 * being cut; bits 4-5 quota_bytes: unlimited, 16, 1024, 65536; bits 6-7 max_file_size: 1 MiB,
 * 8, 100, 4096). Byte 1 is the size of the reads the connection is fed in (0: one read). The
 * rest is what the client sends.
 *
 * Properties: every callback answers a verdict or a negative errno; after the session, no
 * upload's temporary file is left, no file descriptor is leaked, and the bytes stored stay
 * within quota_bytes.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/service.h"
#include "svc/backup.h"
#include "svc/backup_store.h"

#include "fuzz.h"

#define OUT_MAX (8u << 20) /* a restore's content is at most max_file_size */

static char base_dir[PATH_MAX]; /* created once, removed at exit */
static char store_dir[PATH_MAX];

/* Removes what dirfd holds, recursively; closes dirfd. */
static void remove_contents(int dirfd)
{
    DIR *d = fdopendir(dirfd);
    struct dirent *e;

    if (!d) {
        close(dirfd);
        return;
    }
    while ((e = readdir(d))) {
        int sub;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd, e->d_name, 0) == 0)
            continue;
        sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
            remove_contents(sub);
        (void)unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

static void remove_tree(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd >= 0)
        remove_contents(fd);
    (void)rmdir(path);
}

static void remove_base(void)
{
    remove_tree(base_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    if (access("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm";
    else if (!tmp || tmp[0] != '/')
        tmp = "/tmp";
    FUZZ_CHECK(snprintf(base_dir, sizeof(base_dir), "%s/sockserv-fuzz-XXXXXX", tmp) <
               (int)sizeof(base_dir));
    FUZZ_CHECK(mkdtemp(base_dir));
    FUZZ_CHECK(atexit(remove_base) == 0);
    FUZZ_CHECK(snprintf(store_dir, sizeof(store_dir), "%s/store", base_dir) <
               (int)sizeof(store_dir));
    return 0;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Whether the store's directory holds an upload's hidden temporary file. */
static bool has_tmp_files(void)
{
    DIR *d = opendir(store_dir);
    struct dirent *e;
    bool found = false;

    if (!d)
        return false;
    while ((e = readdir(d)))
        found |= strncmp(e->d_name, ".tmp-", 5) == 0;
    closedir(d);
    return found;
}

static void check_verdict(int r)
{
    FUZZ_CHECK(r == CORE_VERDICT_MORE || r == CORE_VERDICT_CLOSE || r == CORE_VERDICT_PULL ||
               (r < 0 && r > -4096));
}

/* What the runner does with a verdict: sends out, and pulls while the service has more. Returns
 * whether the connection goes on. */
static bool after(void *sess, int r, struct core_buf *out)
{
    check_verdict(r);
    while (r == CORE_VERDICT_PULL) {
        FUZZ_CHECK(out->len <= OUT_MAX);
        out->len = 0; /* sent */
        r = svc_backup.session_pull(sess, out);
        check_verdict(r);
    }
    FUZZ_CHECK(out->len <= OUT_MAX);
    out->len = 0;
    return r == CORE_VERDICT_MORE;
}

static json_t *options(uint8_t sel)
{
    static const char *const policies[] = {"version", "replace", "reject", "version"};
    static const json_int_t quotas[] = {0, 16, 1024, 65536};
    static const json_int_t max_sizes[] = {1 << 20, 8, 100, 4096};

    return json_pack("{s:s, s:s, s:b, s:I, s:I}", "directory", store_dir, "on_exists",
                     policies[sel & 3], "require_checksum", (sel >> 2) & 1, "quota_bytes",
                     quotas[(sel >> 4) & 3], "max_file_size", max_sizes[(sel >> 6) & 3]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct core_svc_env env = {.listener_id = "fuzz"};
    struct core_buf out = {0};
    struct core_err err = {0};
    struct svc_backup_store *reader = NULL;
    json_t *given, *opts = NULL;
    void *inst = NULL, *sess;
    uint64_t used = 0, quota;
    size_t chunk;
    bool alive, client_closes;
    int fds, r;

    if (size < 2)
        return 0;
    given = options(data[0]);
    FUZZ_CHECK(given);
    FUZZ_CHECK(core_service_options_check(&svc_backup, given, CORE_TCP, &opts, &err) == 0);
    json_decref(given);
    quota = (uint64_t)json_integer_value(json_object_get(opts, "quota_bytes"));
    client_closes = data[0] & 8;
    chunk = data[1] ? data[1] : size;
    data += 2;
    size -= 2;

    fds = count_fds();
    r = svc_backup.instance_new(opts, CORE_TCP, &env, &inst, &err);
    if (r < 0)
        fprintf(stderr, "backup instance: %s\n", err.msg);
    FUZZ_CHECK(r == 0);
    sess = calloc(1, svc_backup.session_size);
    FUZZ_CHECK(sess);

    alive = after(sess, svc_backup.session_open(inst, sess, &out), &out);
    for (size_t off = 0; alive && off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;

        alive = after(sess, svc_backup.session_feed(sess, data + off, n, &out), &out);
    }
    if (alive && client_closes) {
        r = svc_backup.session_eof(sess, &out);
        FUZZ_CHECK(r == CORE_VERDICT_CLOSE || r < 0);
        (void)after(sess, r, &out);
    }
    svc_backup.session_close(sess, client_closes);
    FUZZ_CHECK(!has_tmp_files());
    free(sess);
    svc_backup.instance_free(inst);
    core_buf_fini(&out);
    FUZZ_CHECK(count_fds() == fds);

    /* An instance that stored nothing removes the directory it made. */
    r = svc_backup_store_open(store_dir, false, &reader, NULL);
    FUZZ_CHECK(r == 0 || r == -ENOENT);
    FUZZ_CHECK(!reader || svc_backup_store_usage(reader, &used) == 0);
    if (quota && used > quota)
        fprintf(stderr, "%llu bytes stored, quota_bytes %llu\n", (unsigned long long)used,
                (unsigned long long)quota);
    FUZZ_CHECK(!quota || used <= quota);
    svc_backup_store_free(reader);

    json_decref(opts);
    remove_tree(store_dir);
    return 0;
}
