#include "core/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_FORMAT_VERSION 1
#define TMP_INFIX ".tmp." /* core_fs_write_atomic()'s temporary file: PATH.tmp.PID */
#define WRITEV_BATCH 64   /* pieces per writev() */

int core_fs_fsync_dir(const char *path)
{
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

int core_fs_mkdir_p(const char *dir, mode_t mode)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(path))
        return -EINVAL;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Writes all of iov[0..n) to fd, retrying on EINTR and short writes. 0 or a negative errno. */
static int writev_all(int fd, const struct iovec *iov, size_t n)
{
    struct iovec rest[WRITEV_BATCH]; /* a batch of iov, advanced past what was written */

    while (n > 0) {
        size_t k = n < WRITEV_BATCH ? n : WRITEV_BATCH;
        ssize_t w;

        memcpy(rest, iov, k * sizeof(*iov));
        for (size_t i = 0; i < k;) {
            w = writev(fd, rest + i, (int)(k - i));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
            if (w == 0)
                return -EIO;
            while (i < k && (size_t)w >= rest[i].iov_len)
                w -= (ssize_t)rest[i++].iov_len;
            if (i < k) {
                rest[i].iov_base = (char *)rest[i].iov_base + w;
                rest[i].iov_len -= (size_t)w;
            }
        }
        iov += k;
        n -= k;
    }
    return 0;
}

int core_fs_write_all(int fd, const void *data, size_t len)
{
    struct iovec one = {.iov_base = (void *)data, .iov_len = len};

    return writev_all(fd, &one, len ? 1 : 0);
}

int core_fs_stage_iov(const char *path, const struct iovec *iov, size_t n, mode_t mode,
                      struct core_fs_staged *ret)
{
    int fd, r;

    if (snprintf(ret->tmp, sizeof(ret->tmp), "%s" TMP_INFIX "%d", path, (int)getpid()) >=
            (int)sizeof(ret->tmp) ||
        snprintf(ret->path, sizeof(ret->path), "%s", path) >= (int)sizeof(ret->path))
        return -ENAMETOOLONG;
    fd = open(ret->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    r = writev_all(fd, iov, n);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        (void)unlink(ret->tmp);
    return r;
}

int core_fs_stage(const char *path, const void *data, size_t len, mode_t mode,
                  struct core_fs_staged *ret)
{
    struct iovec one = {.iov_base = (void *)data, .iov_len = len};

    return core_fs_stage_iov(path, &one, len ? 1 : 0, mode, ret);
}

int core_fs_stage_commit(struct core_fs_staged *s)
{
    char dir[PATH_MAX];

    if (rename(s->tmp, s->path) < 0) {
        int r = -errno;

        (void)unlink(s->tmp);
        return r;
    }
    snprintf(dir, sizeof(dir), "%s", s->path);
    return core_fs_fsync_dir(dirname(dir));
}

void core_fs_stage_abort(struct core_fs_staged *s)
{
    (void)unlink(s->tmp);
}

int core_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    struct core_fs_staged s;
    int r = core_fs_stage(path, data, len, mode, &s);

    return r < 0 ? r : core_fs_stage_commit(&s);
}

int core_store_parse(const char *text, size_t len, const char *origin,
                     const struct core_service_table *services, struct core_listener_cfg **ret_cfgs,
                     size_t *ret_n, struct core_store_meta *ret_meta, struct core_err *err)
{
    struct core_listener_cfg *cfgs = NULL;
    json_error_t jerr;
    json_t *root, *list, *v, *rev, *fo, *fa;
    size_t i, n = 0;
    int r;

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return core_err_set(err, -EINVAL, NULL, "%s: line %d, column %d: %s", origin, jerr.line,
                            jerr.column, jerr.text);
    list = json_object_get(root, "listeners");
    v = json_object_get(root, "version");
    rev = json_object_get(root, "revision");
    fo = json_object_get(root, "fleet_offset");
    fa = json_object_get(root, "fleet_applied_offset");
    if (!json_is_object(root) || !json_is_array(list) ||
        (v && (!json_is_integer(v) || json_integer_value(v) != STORE_FORMAT_VERSION))) {
        r = core_err_set(err, -EINVAL, NULL, "%s: expected {\"version\": %d, \"listeners\": [...]}",
                         origin, STORE_FORMAT_VERSION);
        goto out_root;
    }
    if (rev && (!json_is_integer(rev) || json_integer_value(rev) < 0)) {
        r = core_err_set(err, -EINVAL, "revision", "%s: revision: must be a whole number", origin);
        goto out_root;
    }
    if (fa && (!json_is_integer(fa) || json_integer_value(fa) < 0)) {
        r = core_err_set(err, -EINVAL, "fleet_applied_offset",
                         "%s: fleet_applied_offset: must be a whole number", origin);
        goto out_root;
    }
    if (fo && (!json_is_integer(fo) || json_integer_value(fo) < 0)) {
        r = core_err_set(err, -EINVAL, "fleet_offset", "%s: fleet_offset: must be a whole number",
                         origin);
        goto out_root;
    }
    cfgs = calloc(json_array_size(list) + 1, sizeof(*cfgs));
    if (!cfgs) {
        r = -ENOMEM;
        goto out_root;
    }
    json_array_foreach(list, i, v)
    {
        struct core_err e = {0};

        r = core_listener_cfg_from_json(v, services, false, &cfgs[n], &e);
        if (r < 0) {
            core_err_set(err, r, e.field, "%s: listener %zu: %s", origin, i, e.msg);
            goto out_cfgs;
        }
        n++;
        for (size_t k = 0; k + 1 < n; k++) {
            if (strcmp(cfgs[k].id, cfgs[n - 1].id) == 0) {
                r = core_err_set(err, -EINVAL, "id", "%s: listener %zu: id '%s' appears twice",
                                 origin, i, cfgs[k].id);
                goto out_cfgs;
            }
        }
    }
    if (ret_meta)
        *ret_meta =
            (struct core_store_meta){.revision = (uint64_t)json_integer_value(rev),
                                     .has_fleet_offset = fo != NULL,
                                     .fleet_offset = (uint64_t)json_integer_value(fo),
                                     .has_fleet_applied = fa != NULL,
                                     .fleet_applied_offset = (uint64_t)json_integer_value(fa)};
    json_decref(root);
    *ret_cfgs = cfgs;
    *ret_n = n;
    return 0;

out_cfgs:
    for (size_t k = 0; k < n; k++)
        core_listener_cfg_fini(&cfgs[k]);
    free(cfgs);
out_root:
    json_decref(root);
    return r;
}

int core_fs_remove_stale_tmp(const char *path)
{
    char dir_buf[PATH_MAX], base_buf[PATH_MAX], prefix[PATH_MAX], own[64];
    const char *base;
    struct dirent *e;
    size_t plen;
    int dfd, removed = 0;
    DIR *d;

    if (snprintf(dir_buf, sizeof(dir_buf), "%s", path) >= (int)sizeof(dir_buf) ||
        snprintf(base_buf, sizeof(base_buf), "%s", path) >= (int)sizeof(base_buf))
        return -ENAMETOOLONG;
    base = basename(base_buf);
    if (snprintf(prefix, sizeof(prefix), "%s" TMP_INFIX, base) >= (int)sizeof(prefix))
        return -ENAMETOOLONG;
    plen = strlen(prefix);
    snprintf(own, sizeof(own), "%d", (int)getpid());
    dfd = open(dirname(dir_buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    while ((e = readdir(d))) {
        /* Ours would be a write in progress; the others' writers are gone. */
        if (strncmp(e->d_name, prefix, plen) != 0 || strcmp(e->d_name + plen, own) == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

int core_fs_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
    struct stat st;
    size_t off = 0;
    char *text;
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return -EINVAL;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        close(fd);
        return -ENOMEM;
    }
    while (off < (size_t)st.st_size) {
        ssize_t got = read(fd, text + off, (size_t)st.st_size - off);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            r = got < 0 ? -errno : -EIO;
            free(text);
            close(fd);
            return r;
        }
        off += (size_t)got;
    }
    close(fd);
    text[off] = '\0';
    *ret = text;
    *ret_len = off;
    return 0;
}

int core_store_load(const char *path, const struct core_service_table *services,
                    struct core_listener_cfg **ret_cfgs, size_t *ret_n,
                    struct core_store_meta *ret_meta, struct core_err *err)
{
    size_t len = 0;
    char *text = NULL;
    int r;

    /* A write cut short (the daemon killed) left its temporary file: it never became the state,
     * and nothing will finish it. */
    (void)core_fs_remove_stale_tmp(path);
    r = core_fs_read_file(path, 64 * 1024 * 1024, &text, &len);
    if (r == -ENOENT)
        return r;
    if (r == -EINVAL)
        return core_err_set(err, r, NULL, "%s: not a regular file of at most 64 MiB", path);
    if (r < 0)
        return core_err_set(err, r, NULL, "%s: %s", path, strerror(-r));
    r = core_store_parse(text, len, path, services, ret_cfgs, ret_n, ret_meta, err);
    free(text);
    return r;
}

/* r (0 or a write's negative errno) with err saying the state at path was not written. */
static int write_failed(const char *path, int r, struct core_err *err)
{
    return r < 0 ? core_err_set(err, r, NULL, "%s: cannot write the state: %s", path, strerror(-r))
                 : 0;
}

int core_store_stage(const char *path, const struct core_listener_cfg *const *cfgs, size_t n,
                     const struct core_store_meta *meta, struct core_fs_staged *ret,
                     struct core_err *err)
{
    /* Each listener on a line of its own, as its rendering's compact text: put together from
     * the renderings, a listener that did not change is not rendered again. */
    struct core_cfg_texts texts;
    char head[96], tail[128];
    size_t t = 0;
    int r;

    snprintf(head, sizeof(head), "{\n  \"version\": %d,\n  \"revision\": %lld,\n  \"listeners\": [",
             STORE_FORMAT_VERSION, (long long)(meta ? meta->revision : 0));
    t = (size_t)snprintf(tail, sizeof(tail), "%s", n ? "\n  ]" : "]");
    if (meta && meta->has_fleet_offset)
        t += (size_t)snprintf(tail + t, sizeof(tail) - t, ",\n  \"fleet_offset\": %lld",
                              (long long)meta->fleet_offset);
    if (meta && meta->has_fleet_applied)
        t += (size_t)snprintf(tail + t, sizeof(tail) - t, ",\n  \"fleet_applied_offset\": %lld",
                              (long long)meta->fleet_applied_offset);
    snprintf(tail + t, sizeof(tail) - t, "\n}");
    if (core_cfg_texts_join(cfgs, n, head, "\n    ", ",\n    ", tail, &texts) < 0)
        return core_err_set(err, -ENOMEM, NULL, "%s: out of memory", path);
    r = core_fs_stage_iov(path, texts.iov, texts.n_iov, 0600, ret);
    core_cfg_texts_release(&texts);
    return write_failed(path, r, err);
}

int core_store_commit(struct core_fs_staged *s, struct core_err *err)
{
    return write_failed(s->path, core_fs_stage_commit(s), err);
}

int core_store_save(const char *path, const struct core_listener_cfg *const *cfgs, size_t n,
                    const struct core_store_meta *meta, struct core_err *err)
{
    struct core_fs_staged s;
    int r = core_store_stage(path, cfgs, n, meta, &s, err);

    return r < 0 ? r : core_store_commit(&s, err);
}
