#include "svc/backup_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <jansson.h>
#include <openssl/evp.h>

#define META_MAX 8192
#define TMP_PREFIX ".tmp-"
#define TMP_TRIES 16
#define PARTIAL_DIR ".partial" /* beneath the metadata directory */

struct svc_backup_store {
    int dirfd;          /* the directory; flocked by a writer */
    int metafd;         /* .sockserv beneath it; -1 when a reader finds none */
    bool writer;        /* a writer or attached to one: uploads may be made */
    bool tmpfile_ok;    /* O_TMPFILE can be tried: /proc/self/fd is there to link it */
    char dir[PATH_MAX]; /* as opened */
    size_t made;        /* a writer: the length of dir's first component it created, 0: none */
};

/* What ties a metadata record to a copy. */
struct ident {
    uint64_t ino;
    uint64_t size;
    int64_t mtime_ns;
};

/* The version numbers found in a name's metadata directory, each list newest first. */
struct vers {
    uint32_t *content; /* older copies N */
    size_t n_content;
    uint32_t *meta; /* records N.json */
    size_t n_meta;
    uint32_t max; /* the highest number of either kind; 0 when none */
};

struct entries {
    struct svc_backup_entry *v;
    size_t n, cap;
};

struct names {
    char **v;
    size_t n, cap;
};

static const char *const policy_names[SVC_BACKUP_POLICY_COUNT] = {
    [SVC_BACKUP_POLICY_VERSION] = "version",
    [SVC_BACKUP_POLICY_REPLACE] = "replace",
    [SVC_BACKUP_POLICY_REJECT] = "reject",
};

static const char *const integrity_names[SVC_BACKUP_INTEGRITY_COUNT] = {
    [SVC_BACKUP_INTEGRITY_NONE] = "none",
    [SVC_BACKUP_INTEGRITY_SIZE] = "size",
    [SVC_BACKUP_INTEGRITY_SHA256] = "sha256",
};

const char *svc_backup_policy_name(enum svc_backup_policy p)
{
    return p < SVC_BACKUP_POLICY_COUNT ? policy_names[p] : "?";
}

int svc_backup_policy_from_name(const char *name)
{
    for (int i = 0; i < SVC_BACKUP_POLICY_COUNT; i++) {
        if (strcmp(name, policy_names[i]) == 0)
            return i;
    }
    return -EINVAL;
}

const char *svc_backup_integrity_name(enum svc_backup_integrity i)
{
    return i < SVC_BACKUP_INTEGRITY_COUNT ? integrity_names[i] : "none";
}

/*
 * Opens one path component beneath dirfd without following a symbolic link: openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or openat with O_NOFOLLOW on kernels without it
 * (enough, since every caller passes a single component). Returns an fd or a negative errno.
 */
static int open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
    bool with_mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
    long fd = -1;

    flags |= O_NOFOLLOW | O_CLOEXEC;
#ifdef SYS_openat2
    {
        struct open_how how = {
            .flags = (uint64_t)flags,
            .mode = with_mode ? mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };

        fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
        if (fd >= 0 || errno != ENOSYS)
            return fd < 0 ? -errno : (int)fd;
    }
#endif
    fd = openat(dirfd, name, flags, with_mode ? mode : 0);
    return fd < 0 ? -errno : (int)fd;
}

static int fsync_fd(int fd)
{
    return fsync(fd) < 0 ? -errno : 0;
}

static void random_tmp_name(char out[32])
{
    uint64_t r;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
    }
    snprintf(out, 32, TMP_PREFIX "%016" PRIx64, r);
}

/*
 * "2026-11-25T10:02:45Z". Computed here rather than by gmtime_r(), which takes glibc's time
 * zone lock: a child forked by the process model while another thread of the daemon held it
 * would wait forever. Years outside 1970-9999 read as the epoch.
 */
static void format_time(time_t t, char out[32])
{
    int64_t days = (int64_t)t / 86400, secs = (int64_t)t % 86400, z, era, y;
    unsigned doe, yoe, doy, mp, d, m;

    if (t < 0 || (int64_t)t >= INT64_C(253402300800)) { /* 10000-01-01 */
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    /* days since the epoch to a civil date, in 400-year eras starting on March 1st */
    z = days + 719468;
    era = z / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = (int64_t)yoe + era * 400 + (m <= 2);
    snprintf(out, 32, "%04d-%02u-%02uT%02d:%02d:%02dZ", (int)y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
}

static void ident_of(const struct stat *st, struct ident *ret)
{
    ret->ino = (uint64_t)st->st_ino;
    ret->size = (uint64_t)st->st_size;
    ret->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool ident_equal(const struct ident *a, const struct ident *b)
{
    return a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/* fsync of the directory holding path (which must not end in '/'). */
static int fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char parent[PATH_MAX];
    int fd, r;

    if (!slash)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == path)
        snprintf(parent, sizeof(parent), "/");
    else
        snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = fsync_fd(fd);
    close(fd);
    return r;
}

/* Creates path and its missing parents; each directory created is made durable in its parent.
 * *ret_made: the length of path's first component it created (0: none). */
static int mkdir_p(const char *path, mode_t mode, size_t *ret_made)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    int r;

    *ret_made = 0;
    if (len == 0)
        return -EINVAL;
    if (len >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1;; p++) {
        char c = *p;

        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (p[-1] != '/') {
            if (mkdir(buf, mode) == 0) {
                if (*ret_made == 0)
                    *ret_made = (size_t)(p - buf);
                r = fsync_parent(buf);
                if (r < 0)
                    return r;
            } else if (errno != EEXIST) {
                return -errno;
            }
        }
        *p = c;
        if (c == '\0')
            return 0;
    }
}

/* Opens a fresh directory stream on dirfd (its own file description). NULL with errno set. */
static DIR *open_dir_stream(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (!d)
        close(fd);
    return d;
}

/* Removes the hidden temporary files a crash left in dirfd. */
static void remove_tmp_files(int dirfd)
{
    DIR *d = open_dir_stream(dirfd);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
            (void)unlinkat(dirfd, de->d_name, 0);
    }
    closedir(d);
}

static void cleanup(struct svc_backup_store *s)
{
    DIR *d;
    struct dirent *de;

    remove_tmp_files(s->dirfd);
    if (s->metafd < 0)
        return;
    d = open_dir_stream(s->metafd);
    if (!d)
        return;
    while ((de = readdir(d))) {
        int fd;

        if (de->d_name[0] == '.')
            continue;
        fd = open_beneath(s->metafd, de->d_name, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
            continue;
        remove_tmp_files(fd);
        close(fd);
    }
    closedir(d);
}

/* How a store is opened: to read, to write (the one writer, locked), to write beside the
 * writer from a process it forked, or beside it as the same listener's next instance. */
enum store_mode { MODE_READER, MODE_WRITER, MODE_ATTACHED, MODE_BESIDE };

static int store_open(const char *dir, enum store_mode mode, struct svc_backup_store **ret,
                      struct core_err *err)
{
    bool writer = mode == MODE_WRITER;
    struct svc_backup_store *s;
    int r;

    if (!dir || dir[0] == '\0')
        return core_err_set(err, -EINVAL, NULL, "no backup directory");
    s = calloc(1, sizeof(*s));
    if (!s)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    s->dirfd = -1;
    s->metafd = -1;
    s->writer = mode != MODE_READER;
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    if (writer) {
        r = mkdir_p(dir, 0700, &s->made);
        if (r < 0) {
            core_err_set(err, r, NULL, "cannot create %s: %s", dir, strerror(-r));
            goto out_free;
        }
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        r = -errno;
        core_err_set(err, r, NULL, "cannot open %s: %s", dir, strerror(-r));
        goto out_free;
    }
    /* The writer proves that no one else holds the directory, then holds it shared, so that
     * its listener's next instance may join it (MODE_BESIDE) while no other listener can. */
    if ((writer &&
         (flock(s->dirfd, LOCK_EX | LOCK_NB) < 0 || flock(s->dirfd, LOCK_SH | LOCK_NB) < 0)) ||
        (mode == MODE_BESIDE && flock(s->dirfd, LOCK_SH | LOCK_NB) < 0)) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        core_err_set(err, r, NULL, "%s is in use by another backup listener", dir);
        goto out_free;
    }
    s->metafd = open_beneath(s->dirfd, SVC_BACKUP_STORE_META_DIR, O_RDONLY | O_DIRECTORY, 0);
    if (s->metafd == -ENOENT && writer) {
        if (mkdirat(s->dirfd, SVC_BACKUP_STORE_META_DIR, 0700) < 0 && errno != EEXIST) {
            r = -errno;
            core_err_set(err, r, NULL, "cannot create %s/%s: %s", dir, SVC_BACKUP_STORE_META_DIR,
                         strerror(-r));
            goto out_free;
        }
        r = fsync_fd(s->dirfd);
        if (r < 0) {
            core_err_set(err, r, NULL, "cannot fsync %s: %s", dir, strerror(-r));
            goto out_free;
        }
        s->metafd = open_beneath(s->dirfd, SVC_BACKUP_STORE_META_DIR, O_RDONLY | O_DIRECTORY, 0);
    }
    if (s->metafd < 0 && (s->writer || s->metafd != -ENOENT)) {
        r = s->metafd;
        s->metafd = -1;
        core_err_set(err, r, NULL, "cannot open %s/%s: %s", dir, SVC_BACKUP_STORE_META_DIR,
                     strerror(-r));
        goto out_free;
    }
    if (s->metafd < 0)
        s->metafd = -1;
    if (s->writer)
        s->tmpfile_ok = access("/proc/self/fd", X_OK) == 0;
    if (writer)
        cleanup(s);
    *ret = s;
    return 0;

out_free:
    svc_backup_store_free(s);
    return r;
}

int svc_backup_store_open(const char *dir, bool writer, struct svc_backup_store **ret,
                          struct core_err *err)
{
    return store_open(dir, writer ? MODE_WRITER : MODE_READER, ret, err);
}

int svc_backup_store_attach(const char *dir, struct svc_backup_store **ret, struct core_err *err)
{
    return store_open(dir, MODE_ATTACHED, ret, err);
}

int svc_backup_store_open_beside(const char *dir, struct svc_backup_store **ret,
                                 struct core_err *err)
{
    return store_open(dir, MODE_BESIDE, ret, err);
}

int svc_backup_store_commit_lock(struct svc_backup_store *s, bool lock)
{
    int r;

    do {
        r = flock(s->metafd, lock ? LOCK_EX : LOCK_UN);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

/*
 * Removes the directories the writer's open created, deepest first, as long as each is empty
 * (the metadata directory aside, when it is empty too). Called with the lock still held.
 */
static void remove_made(struct svc_backup_store *s)
{
    char buf[PATH_MAX];
    size_t len = strlen(s->dir);

    if (s->made == 0 || s->metafd < 0 || len < s->made)
        return;
    if (unlinkat(s->dirfd, SVC_BACKUP_STORE_META_DIR, AT_REMOVEDIR) < 0)
        return;
    memcpy(buf, s->dir, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    while (len >= s->made) {
        char *slash;

        if (rmdir(buf) < 0)
            return;
        (void)fsync_parent(buf);
        slash = strrchr(buf, '/');
        if (!slash || slash == buf)
            return;
        *slash = '\0';
        len = (size_t)(slash - buf);
    }
}

void svc_backup_store_free_unused(struct svc_backup_store *s)
{
    if (s && s->writer)
        remove_made(s);
    svc_backup_store_free(s);
}

int svc_backup_store_free_bytes(struct svc_backup_store *s, uint64_t *ret_bytes)
{
    struct statvfs v;

    if (fstatvfs(s->dirfd, &v) < 0)
        return -errno;
    *ret_bytes = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
    return 0;
}

int svc_backup_store_tmp_reserve(struct svc_backup_tmp *t, uint64_t off, uint64_t len)
{
    if (len == 0 || off > INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return len == 0 ? 0 : -EFBIG;
    if (fallocate(t->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0) {
        int r = -errno;

        return r == -EOPNOTSUPP || r == -ENOSYS ? 0 : r;
    }
    return 0;
}

void svc_backup_store_free(struct svc_backup_store *s)
{
    if (!s)
        return;
    if (s->metafd >= 0)
        close(s->metafd);
    if (s->dirfd >= 0)
        close(s->dirfd);
    free(s);
}

int svc_backup_store_lookup(struct svc_backup_store *s, const char *name)
{
    struct stat st;

    if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    return S_ISREG(st.st_mode) ? 1 : -EEXIST;
}

int svc_backup_store_tmp_new(struct svc_backup_store *s, uint64_t prealloc,
                             struct svc_backup_tmp *ret)
{
    int fd = -EOPNOTSUPP;

    ret->fd = -1;
    ret->has_replaced = false;
    ret->name[0] = '\0';
    ret->part[0] = '\0';
    ret->fw = NULL;
    ret->buf = NULL;
    ret->filled = 0;
    ret->direct = false;
    core_writeback_init(&ret->wb, 0);
    if (s->tmpfile_ok) {
        fd = open_beneath(s->dirfd, ".", O_TMPFILE | O_RDWR, 0600);
        if (fd < 0 && fd != -EOPNOTSUPP && fd != -EISDIR && fd != -EINVAL)
            return fd;
    }
    if (fd < 0) {
        for (int i = 0; i < TMP_TRIES; i++) {
            random_tmp_name(ret->name);
            fd = open_beneath(s->dirfd, ret->name, O_CREAT | O_EXCL | O_RDWR, 0600);
            if (fd != -EEXIST)
                break;
        }
        if (fd < 0) {
            ret->name[0] = '\0';
            return fd;
        }
    }
    ret->fd = fd;
    if (prealloc > 0 && prealloc <= INT64_MAX &&
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)prealloc) < 0) {
        int r = -errno;

        if (r != -EOPNOTSUPP && r != -ENOSYS) {
            svc_backup_store_tmp_discard(s, ret);
            return r;
        }
    }
    return 0;
}

/* The next n bytes of the file: the writer's, and every append before one starts (through the
 * page cache, their writeback started, until svc_backup_store_tmp_direct()). Past it, whole
 * aligned blocks go past the page cache; the short end (the last bytes of the upload), and
 * everything once the file system refused an alignment, through it. */
static int tmp_write_out(void *ctx, const uint8_t *p, size_t n)
{
    struct svc_backup_tmp *t = ctx;

    return core_writeback_append(&t->wb, t->fd, &t->direct, p, n);
}

void svc_backup_store_tmp_direct(struct svc_backup_tmp *t, bool threaded)
{
    size_t head = (size_t)(t->wb.written % CORE_FILEWRITER_ALIGN);
    struct core_filewriter *fw;
    uint8_t *buf;

    if (t->fd < 0 || t->fw)
        return;
    fw = malloc(sizeof(*fw));
    if (!fw)
        return;
    if ((threaded
             ? core_filewriter_start(fw, SVC_BACKUP_WRITER_BUFFERS, SVC_BACKUP_WRITER_CHUNK,
                                     tmp_write_out, t)
             : core_filewriter_start_inline(fw, SVC_BACKUP_WRITER_CHUNK, tmp_write_out, t)) < 0) {
        free(fw);
        return;
    }
    buf = core_filewriter_next(fw);
    /* A resumed upload's last short block is read back (before O_DIRECT, which would refuse a
     * short read), to be written again whole from its start. */
    if ((head > 0 && (pread(t->fd, buf, head, (off_t)(t->wb.written - head)) != (ssize_t)head ||
                      lseek(t->fd, (off_t)(t->wb.written - head), SEEK_SET) < 0)) ||
        !core_writeback_direct(t->fd)) {
        (void)lseek(t->fd, (off_t)t->wb.written, SEEK_SET); /* appends go on where they were */
        (void)core_filewriter_finish(fw, true);
        free(fw);
        return;
    }
    core_writeback_init(&t->wb, t->wb.written - head);
    /* Synced behind the writes (a thread more): the fsync before STORED waits for the last few
     * MiB only. */
    if (threaded)
        (void)core_filewriter_flush_behind(fw, t->fd);
    t->direct = true;
    t->fw = fw;
    t->buf = buf;
    t->filled = head;
}

/* Ends the writer: what it was given is written (all, unless discard). 0 or a negative errno. */
static int tmp_writer_end(struct svc_backup_tmp *t, bool discard)
{
    int r;

    if (!t->fw)
        return 0;
    if (!discard && t->buf && t->filled > 0)
        core_filewriter_push(t->fw, t->filled);
    r = core_filewriter_finish(t->fw, discard);
    free(t->fw);
    t->fw = NULL;
    t->buf = NULL;
    t->filled = 0;
    return r;
}

int svc_backup_store_tmp_write(struct svc_backup_tmp *t, const void *p, size_t n)
{
    const uint8_t *b = p;

    if (!t->fw)
        return tmp_write_out(t, b, n);
    while (n > 0) {
        size_t k;

        if (!t->buf) {
            t->buf = core_filewriter_next(t->fw);
            if (!t->buf)
                return tmp_writer_end(t, true); /* a write failed: its error */
        }
        k = SVC_BACKUP_WRITER_CHUNK - t->filled < n ? SVC_BACKUP_WRITER_CHUNK - t->filled : n;
        memcpy(t->buf + t->filled, b, k);
        t->filled += k;
        b += k;
        n -= k;
        if (t->filled == SVC_BACKUP_WRITER_CHUNK) {
            core_filewriter_push(t->fw, t->filled);
            t->buf = NULL;
            t->filled = 0;
        }
    }
    return 0;
}

int svc_backup_store_tmp_sync(struct svc_backup_tmp *t)
{
    int r = tmp_writer_end(t, false);

    return r < 0 ? r : fsync_fd(t->fd);
}

/* Opens .sockserv/.partial (made when create). Returns the descriptor or a negative errno. */
static int partial_dir(struct svc_backup_store *s, bool create)
{
    int fd;

    if (s->metafd < 0)
        return -ENOENT;
    fd = open_beneath(s->metafd, PARTIAL_DIR, O_RDONLY | O_DIRECTORY, 0);
    if (fd == -ENOENT && create) {
        if (mkdirat(s->metafd, PARTIAL_DIR, 0700) < 0 && errno != EEXIST)
            return -errno;
        (void)fsync_fd(s->metafd);
        fd = open_beneath(s->metafd, PARTIAL_DIR, O_RDONLY | O_DIRECTORY, 0);
    }
    return fd;
}

/* "<sha256 of name, hex>-" into out (65 bytes + NUL). */
static void partial_prefix(const char *name, char out[SVC_BACKUP_SHA256_HEX + 2])
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned len = 0;

    if (EVP_Digest(name, strlen(name), d, &len, EVP_sha256(), NULL) != 1)
        memset(d, 0, sizeof(d));
    svc_backup_sha256_to_hex(d, out);
    out[SVC_BACKUP_SHA256_HEX] = '-';
    out[SVC_BACKUP_SHA256_HEX + 1] = '\0';
}

/* Parses the "<size>-<sha256|any>" after a partial's prefix. */
static bool partial_parse(const char *p, struct svc_backup_partial *ret)
{
    uint64_t v = 0;
    size_t i = 0;

    for (; p[i] >= '0' && p[i] <= '9' && i < 20; i++)
        v = v * 10 + (uint64_t)(p[i] - '0');
    if (i == 0 || p[i] != '-')
        return false;
    ret->size = v;
    p += i + 1;
    ret->has_sha256 = strcmp(p, "any") != 0;
    return !ret->has_sha256 ||
           (strlen(p) == SVC_BACKUP_SHA256_HEX &&
            svc_backup_sha256_from_hex(p, SVC_BACKUP_SHA256_HEX, ret->sha256) == 0);
}

/* Opens partial entry e of pfd and takes its lock: the descriptor, -EBUSY, -ENOENT (gone, or
 * removed while the lock was awaited) or another negative errno. */
static int partial_lock(int pfd, const char *e, struct stat *st)
{
    int fd = open_beneath(pfd, e, O_RDWR, 0);

    if (fd < 0)
        return fd == -ELOOP ? -ENOENT : fd;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = errno == EWOULDBLOCK ? -EBUSY : -errno;

        close(fd);
        return r;
    }
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_nlink == 0) {
        close(fd);
        return -ENOENT;
    }
    return fd;
}

/* Looks up name's partial in pfd: 0 with its entry name and what it is, or -ENOENT. */
static int partial_lookup(int pfd, const char *name, char ret_e[SVC_BACKUP_PARTIAL_NAME_MAX],
                          struct svc_backup_partial *ret)
{
    char pre[SVC_BACKUP_SHA256_HEX + 2];
    int dfd = dup(pfd), r = -ENOENT;
    struct dirent *de;
    DIR *d;

    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -ENOMEM;
    }
    rewinddir(d);
    partial_prefix(name, pre);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);

        if (strncmp(de->d_name, pre, strlen(pre)) == 0 && len < SVC_BACKUP_PARTIAL_NAME_MAX &&
            partial_parse(de->d_name + strlen(pre), ret)) {
            memcpy(ret_e, de->d_name, len + 1);
            r = 0;
            break;
        }
    }
    closedir(d);
    return r;
}

int svc_backup_store_partial_find(struct svc_backup_store *s, const char *name,
                                  struct svc_backup_partial *ret)
{
    char e[SVC_BACKUP_PARTIAL_NAME_MAX];
    struct svc_backup_partial p;
    struct stat st;
    int pfd = partial_dir(s, false), fd, r;

    if (pfd < 0)
        return pfd == -ENOTDIR || pfd == -ELOOP ? -ENOENT : pfd;
    r = partial_lookup(pfd, name, e, &p);
    if (r == 0) {
        fd = partial_lock(pfd, e, &st);
        if (fd >= 0) {
            p.held = (uint64_t)st.st_size;
            close(fd);
            *ret = p;
        }
        r = fd < 0 ? fd : 0;
    }
    close(pfd);
    return r;
}

int svc_backup_store_partial_open(struct svc_backup_store *s, const char *name, uint64_t size,
                                  const uint8_t *sha256, uint64_t offset,
                                  struct svc_backup_tmp *ret, uint64_t *ret_dropped)
{
    char e[SVC_BACKUP_PARTIAL_NAME_MAX], hex[SVC_BACKUP_SHA256_HEX + 1] = "any";
    struct svc_backup_partial p;
    uint64_t dropped = 0;
    struct stat st;
    int pfd = partial_dir(s, offset == 0), fd = -1, r;

    ret->fd = -1;
    ret->has_replaced = false;
    ret->name[0] = '\0';
    ret->part[0] = '\0';
    ret->fw = NULL;
    ret->buf = NULL;
    ret->filled = 0;
    ret->direct = false;
    core_writeback_init(&ret->wb, 0);
    if (pfd < 0)
        return pfd == -ENOTDIR || pfd == -ELOOP ? -ENOENT : pfd;
    /* Any partial of the name: the one to resume, or one to drop. */
    for (int tries = 0; tries < TMP_TRIES; tries++) {
        r = partial_lookup(pfd, name, e, &p);
        if (r < 0)
            break;
        fd = partial_lock(pfd, e, &st);
        if (fd == -ENOENT)
            continue; /* removed meanwhile: look again */
        if (fd < 0) {
            r = fd;
            goto out;
        }
        if (offset > 0) {
            bool match = p.size == size && (!p.has_sha256 || !sha256 ||
                                            memcmp(p.sha256, sha256, SVC_BACKUP_SHA256_LEN) == 0);

            if (!match || (uint64_t)st.st_size < offset) {
                close(fd);
                r = -ENOENT;
                goto out;
            }
            if (ftruncate(fd, (off_t)offset) < 0 || lseek(fd, (off_t)offset, SEEK_SET) < 0) {
                r = -errno;
                close(fd);
                goto out;
            }
            *ret_dropped = (uint64_t)st.st_size;
            snprintf(ret->part, sizeof(ret->part), "%s", e);
            ret->fd = fd;
            core_writeback_init(&ret->wb, offset);
            r = 0;
            goto out;
        }
        dropped += (uint64_t)st.st_size;
        (void)unlinkat(pfd, e, 0);
        close(fd);
    }
    if (offset > 0) {
        r = -ENOENT;
        goto out;
    }
    if (sha256)
        svc_backup_sha256_to_hex(sha256, hex);
    partial_prefix(name, e);
    snprintf(e + SVC_BACKUP_SHA256_HEX + 1, sizeof(e) - SVC_BACKUP_SHA256_HEX - 1, "%" PRIu64 "-%s",
             size, hex);
    fd = open_beneath(pfd, e, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        (void)unlinkat(pfd, e, 0);
        close(fd);
        goto out;
    }
    if (fd < 0) {
        r = fd == -EEXIST ? -EBUSY : fd;
        goto out;
    }
    snprintf(ret->part, sizeof(ret->part), "%s", e);
    ret->fd = fd;
    core_writeback_init(&ret->wb, 0);
    *ret_dropped = dropped;
    r = 0;
out:
    close(pfd);
    return r;
}

void svc_backup_store_tmp_keep(struct svc_backup_store *s, struct svc_backup_tmp *t)
{
    if (!t->part[0]) {
        svc_backup_store_tmp_discard(s, t);
        return;
    }
    if (t->fd >= 0) {
        /* what it could not write is not held: a resume sends it again */
        (void)tmp_writer_end(t, false);
        core_writeback_rest(&t->wb, t->fd);
        close(t->fd);
    }
    t->fd = -1;
    t->part[0] = '\0';
}

/* Sums the partial uploads no upload writes to; when remove, removes those among them last
 * written ttl_ms or more ago (every one when ttl_ms is 0) and sums those only. */
static int partial_walk(struct svc_backup_store *s, int64_t ttl_ms, bool remove, uint64_t *ret)
{
    int pfd = partial_dir(s, false), dfd;
    struct timespec now;
    struct dirent *de;
    uint64_t sum = 0;
    DIR *d;

    *ret = 0;
    if (pfd < 0)
        return pfd == -ENOENT || pfd == -ENOTDIR || pfd == -ELOOP ? 0 : pfd;
    dfd = dup(pfd);
    d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        close(pfd);
        return -ENOMEM;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    while ((de = readdir(d))) {
        struct stat st;
        int64_t age_ms;
        int fd;

        if (de->d_name[0] == '.')
            continue;
        fd = partial_lock(pfd, de->d_name, &st);
        if (fd < 0) /* gone, or an upload writes to it */
            continue;
        age_ms = (int64_t)(now.tv_sec - st.st_mtim.tv_sec) * 1000 +
                 (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;
        if (!remove)
            sum += (uint64_t)st.st_size;
        else if (ttl_ms == 0 || age_ms >= ttl_ms) {
            if (unlinkat(pfd, de->d_name, 0) == 0)
                sum += (uint64_t)st.st_size;
        }
        close(fd);
    }
    closedir(d);
    close(pfd);
    *ret = sum;
    return 0;
}

int svc_backup_store_partial_sweep(struct svc_backup_store *s, int64_t ttl_ms, uint64_t *ret_freed)
{
    return partial_walk(s, ttl_ms, true, ret_freed);
}

int svc_backup_store_partial_bytes(struct svc_backup_store *s, uint64_t *ret_bytes)
{
    return partial_walk(s, 0, false, ret_bytes);
}

void svc_backup_store_tmp_discard(struct svc_backup_store *s, struct svc_backup_tmp *t)
{
    if (t->part[0] && s) {
        int pfd = partial_dir(s, false);

        if (pfd >= 0) {
            (void)unlinkat(pfd, t->part, 0);
            close(pfd);
        }
    }
    t->part[0] = '\0';
    if (t->name[0] && s)
        (void)unlinkat(s->dirfd, t->name, 0);
    t->name[0] = '\0';
    (void)tmp_writer_end(t, true);
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->has_replaced)
        close(t->replaced_fd);
    t->has_replaced = false;
}

/* Parses "N" (*ret_json false) or "N.json" (true), N in 1..UINT32_MAX. */
static bool parse_version_name(const char *s, uint32_t *ret, bool *ret_json)
{
    uint64_t v = 0;
    size_t i = 0;

    if (s[0] < '1' || s[0] > '9')
        return false;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            return false;
    }
    if (s[i] == '\0')
        *ret_json = false;
    else if (strcmp(s + i, ".json") == 0)
        *ret_json = true;
    else
        return false;
    *ret = (uint32_t)v;
    return true;
}

static int cmp_u32_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? 1 : x > y ? -1 : 0;
}

static int push_u32(uint32_t **v, size_t *n, uint32_t x)
{
    uint32_t *nv;

    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow to the next power of two */
        nv = realloc(*v, (*n ? 2 * *n : 1) * sizeof(**v));
        if (!nv)
            return -ENOMEM;
        *v = nv;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static void vers_fini(struct vers *v)
{
    free(v->content);
    free(v->meta);
    memset(v, 0, sizeof(*v));
}

/* Reads the version numbers in a name's metadata directory (vfd -1: none). */
static int load_versions(int vfd, struct vers *ret)
{
    struct vers v = {0};
    struct dirent *de;
    DIR *d;
    int r = 0;

    if (vfd < 0) {
        *ret = v;
        return 0;
    }
    d = open_dir_stream(vfd);
    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        uint32_t n;
        bool json;

        if (!parse_version_name(de->d_name, &n, &json))
            continue;
        r = json ? push_u32(&v.meta, &v.n_meta, n) : push_u32(&v.content, &v.n_content, n);
        if (r < 0)
            break;
        if (n > v.max)
            v.max = n;
    }
    closedir(d);
    if (r < 0) {
        vers_fini(&v);
        return r;
    }
    if (v.n_content)
        qsort(v.content, v.n_content, sizeof(*v.content), cmp_u32_desc);
    if (v.n_meta)
        qsort(v.meta, v.n_meta, sizeof(*v.meta), cmp_u32_desc);
    *ret = v;
    return 0;
}

static json_int_t json_int_member(const json_t *o, const char *k, bool *ok)
{
    const json_t *v = json_object_get(o, k);

    if (!json_is_integer(v)) {
        *ok = false;
        return 0;
    }
    return json_integer_value(v);
}

/* Reads record N.json into the metadata fields of *e and the copy identity it names. */
static int read_meta(int vfd, uint32_t n, struct svc_backup_entry *e, struct ident *ret_id)
{
    char fname[24], buf[META_MAX];
    const char *stored, *integrity;
    const json_t *sha;
    struct stat st;
    json_t *j = NULL;
    bool ok = true;
    ssize_t len;
    int fd, r = -EINVAL;

    if (vfd < 0)
        return -ENOENT;
    snprintf(fname, sizeof(fname), "%" PRIu32 ".json", n);
    fd = open_beneath(vfd, fname, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        goto out_close;
    do {
        len = read(fd, buf, sizeof(buf));
    } while (len < 0 && errno == EINTR);
    if (len <= 0 || (size_t)len == sizeof(buf))
        goto out_close;
    j = json_loadb(buf, (size_t)len, 0, NULL);
    if (!json_is_object(j))
        goto out_close;
    sha = json_object_get(j, "sha256");
    stored = json_string_value(json_object_get(j, "stored"));
    integrity = json_string_value(json_object_get(j, "integrity"));
    e->version = (uint32_t)json_int_member(j, "version", &ok);
    ret_id->size = (uint64_t)json_int_member(j, "size", &ok);
    ret_id->ino = (uint64_t)json_int_member(j, "ino", &ok);
    ret_id->mtime_ns = (int64_t)json_int_member(j, "mtime_ns", &ok);
    if (!ok || e->version != n || !stored || strlen(stored) >= sizeof(e->stored) || !integrity)
        goto out_close;
    e->has_sha256 = json_is_string(sha);
    if (e->has_sha256 &&
        svc_backup_sha256_from_hex(json_string_value(sha), json_string_length(sha), e->sha256) < 0)
        goto out_close;
    e->integrity = SVC_BACKUP_INTEGRITY_NONE;
    for (int i = 0; i < SVC_BACKUP_INTEGRITY_COUNT; i++) {
        if (strcmp(integrity, integrity_names[i]) == 0)
            e->integrity = (enum svc_backup_integrity)i;
    }
    snprintf(e->stored, sizeof(e->stored), "%s", stored);
    e->has_meta = true;
    r = 0;
out_close:
    json_decref(j);
    close(fd);
    return r;
}

/* Writes record N.json for the copy id, durably (temporary file, fsync, rename); the caller
 * fsyncs vfd. Never replaces an existing record. */
static int write_meta(int vfd, uint32_t n, const char *name, const struct ident *id,
                      bool has_sha256, const uint8_t *sha256, enum svc_backup_integrity integrity,
                      const char *stored)
{
    char fname[24], tmp[32], hex[SVC_BACKUP_SHA256_HEX + 1];
    char *text = NULL;
    json_t *j;
    int fd = -EEXIST, r;

    if (has_sha256)
        svc_backup_sha256_to_hex(sha256, hex);
    j = json_pack("{s:s, s:I, s:I, s:o, s:s, s:s, s:I, s:I}", "name", name, "version",
                  (json_int_t)n, "size", (json_int_t)id->size, "sha256",
                  has_sha256 ? json_string(hex) : json_null(), "stored", stored, "integrity",
                  svc_backup_integrity_name(integrity), "ino", (json_int_t)id->ino, "mtime_ns",
                  (json_int_t)id->mtime_ns);
    if (j)
        text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -ENOMEM;
    for (int i = 0; i < TMP_TRIES && fd == -EEXIST; i++) {
        random_tmp_name(tmp);
        fd = open_beneath(vfd, tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
    }
    if (fd < 0) {
        r = fd;
        goto out_free;
    }
    {
        struct svc_backup_tmp t = {.fd = fd};

        r = svc_backup_store_tmp_write(&t, text, strlen(text));
        if (r == 0)
            r = svc_backup_store_tmp_write(&t, "\n", 1);
    }
    if (r == 0)
        r = fsync_fd(fd);
    close(fd);
    snprintf(fname, sizeof(fname), "%" PRIu32 ".json", n);
    if (r == 0 && renameat2(vfd, tmp, vfd, fname, RENAME_NOREPLACE) < 0) {
        r = -errno;
        if (r == -EINVAL) /* a file system without RENAME_NOREPLACE */
            r = linkat(vfd, tmp, vfd, fname, 0) < 0 ? -errno : 0;
    }
    (void)unlinkat(vfd, tmp, 0);
out_free:
    free(text);
    return r;
}

/* The metadata record of copy id among v's, newest first: 0 with *e filled, or -ENOENT. */
static int find_meta(int vfd, const struct vers *v, const struct ident *id,
                     struct svc_backup_entry *e)
{
    for (size_t i = 0; i < v->n_meta; i++) {
        struct svc_backup_entry m = *e;
        struct ident mid;

        if (read_meta(vfd, v->meta[i], &m, &mid) == 0 && ident_equal(&mid, id)) {
            *e = m;
            return 0;
        }
    }
    return -ENOENT;
}

/* Opens .sockserv/NAME, creating it (durably) when create. */
static int open_vdir(struct svc_backup_store *s, const char *name, bool create)
{
    int fd, r;

    if (s->metafd < 0)
        return -ENOENT;
    fd = open_beneath(s->metafd, name, O_RDONLY | O_DIRECTORY, 0);
    if (fd != -ENOENT || !create)
        return fd;
    if (mkdirat(s->metafd, name, 0700) < 0 && errno != EEXIST)
        return -errno;
    r = fsync_fd(s->metafd);
    if (r < 0)
        return r;
    return open_beneath(s->metafd, name, O_RDONLY | O_DIRECTORY, 0);
}

/* A name's metadata directory (*ret_vfd, -1 when it has none) and its version numbers
 * (release with vers_fini() and close *ret_vfd). Returns 0 or a negative errno, holding
 * nothing then. */
static int open_versions(struct svc_backup_store *s, const char *name, int *ret_vfd,
                         struct vers *ret)
{
    int vfd = open_vdir(s, name, false), r;

    if (vfd < 0 && vfd != -ENOENT && vfd != -ENOTDIR && vfd != -ELOOP)
        return vfd;
    r = load_versions(vfd, ret);
    if (r < 0) {
        if (vfd >= 0)
            close(vfd);
        return r;
    }
    *ret_vfd = vfd;
    return 0;
}

/* Moves a partial upload into the directory under a hidden temporary name, which the
 * commit then gives the file's name (or the next writer's cleanup removes). */
static int partial_claim(struct svc_backup_store *s, struct svc_backup_tmp *t)
{
    int pfd = partial_dir(s, false), r = -EEXIST;

    if (pfd < 0)
        return pfd;
    for (int i = 0; i < TMP_TRIES && r == -EEXIST; i++) {
        random_tmp_name(t->name);
        r = renameat2(pfd, t->part, s->dirfd, t->name, RENAME_NOREPLACE) < 0 ? -errno : 0;
        if (r == -EINVAL) /* a file system without RENAME_NOREPLACE */
            r = renameat(pfd, t->part, s->dirfd, t->name) < 0 ? -errno : 0;
    }
    close(pfd);
    if (r < 0) {
        t->name[0] = '\0';
        return r;
    }
    t->part[0] = '\0';
    return 0;
}

/* Gives the temporary file the name: atomically, replacing the current copy when replace,
 * failing with -EEXIST otherwise if the name is taken. */
static int place(struct svc_backup_store *s, struct svc_backup_tmp *t, const char *name,
                 bool replace)
{
    char proc[64], tmp[32];
    int r = -EEXIST;

    if (t->name[0]) {
        if (replace)
            r = renameat(s->dirfd, t->name, s->dirfd, name) < 0 ? -errno : 0;
        else if (renameat2(s->dirfd, t->name, s->dirfd, name, RENAME_NOREPLACE) < 0) {
            r = -errno;
            if (r == -EINVAL && linkat(s->dirfd, t->name, s->dirfd, name, 0) == 0)
                r = unlinkat(s->dirfd, t->name, 0) < 0 ? -errno : 0;
            else if (r == -EINVAL)
                r = -errno;
        } else {
            r = 0;
        }
        if (r == 0)
            t->name[0] = '\0';
        return r;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", t->fd);
    if (!replace)
        return linkat(AT_FDCWD, proc, s->dirfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
    for (int i = 0; i < TMP_TRIES && r == -EEXIST; i++) {
        random_tmp_name(tmp);
        r = linkat(AT_FDCWD, proc, s->dirfd, tmp, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
    }
    if (r < 0)
        return r;
    if (renameat(s->dirfd, tmp, s->dirfd, name) < 0) {
        r = -errno;
        (void)unlinkat(s->dirfd, tmp, 0);
    }
    return r;
}

int svc_backup_store_commit(struct svc_backup_store *s, struct svc_backup_tmp *t, const char *name,
                            enum svc_backup_policy policy, bool has_sha256,
                            const uint8_t sha256[SVC_BACKUP_SHA256_LEN],
                            enum svc_backup_integrity integrity, uint32_t *ret_version,
                            uint64_t *ret_freed, char *ret_stored, struct core_err *err)
{
    char stored[32], cur_vname[16] = "", keep[32] = "", new_json[24] = "";
    bool has_cur = false, linked = false, placed = false;
    uint32_t cur_version = 0, new_version;
    struct stat tst, cur;
    struct ident tid, cid;
    struct vers v = {0};
    const char *what;
    int vfd = -1, r;

    if (t->part[0]) {
        r = partial_claim(s, t);
        if (r < 0) {
            what = "cannot move the upload into place";
            goto out;
        }
    }
    if (fstat(t->fd, &tst) < 0) {
        r = -errno;
        what = "cannot stat the upload";
        goto out;
    }
    ident_of(&tst, &tid);
    if (fstatat(s->dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISREG(cur.st_mode)) {
            r = -EEXIST;
            what = "the name is taken by something that is not a regular file";
            goto out;
        }
        has_cur = true;
        ident_of(&cur, &cid);
    } else if (errno != ENOENT) {
        r = -errno;
        what = "cannot look the name up";
        goto out;
    }
    if (has_cur && policy == SVC_BACKUP_POLICY_REJECT) {
        r = -EEXIST;
        what = "a copy with this name exists";
        goto out;
    }
    vfd = open_vdir(s, name, true);
    if (vfd < 0) {
        r = vfd;
        what = "cannot create the metadata directory";
        goto out;
    }
    r = load_versions(vfd, &v);
    if (r < 0) {
        what = "cannot read the metadata directory";
        goto out;
    }
    if (v.max >= UINT32_MAX - 1) {
        r = -EOVERFLOW;
        what = "no version number left";
        goto out;
    }
    new_version = v.max + 1;
    if (has_cur) {
        struct svc_backup_entry e = {0};

        if (find_meta(vfd, &v, &cid, &e) == 0) {
            cur_version = e.version;
        } else {
            /* A current copy without a record (a crash, a copy put there by hand): number
             * it, with what is known of it, before it becomes a version. */
            cur_version = new_version++;
            format_time(cur.st_mtim.tv_sec, stored);
            (void)write_meta(vfd, cur_version, name, &cid, false, NULL, SVC_BACKUP_INTEGRITY_NONE,
                             stored);
        }
        snprintf(cur_vname, sizeof(cur_vname), "%" PRIu32, cur_version);
    }
    format_time(time(NULL), stored);
    r = write_meta(vfd, new_version, name, &tid, has_sha256, sha256, integrity, stored);
    if (r < 0) {
        what = "cannot write the metadata record";
        goto out;
    }
    snprintf(new_json, sizeof(new_json), "%" PRIu32 ".json", new_version);
    if (has_cur && policy == SVC_BACKUP_POLICY_REPLACE) {
        /* The older copy needs a second name only for an undo: a hidden one, which the next
         * writer's cleanup removes should this process die before it is dropped (under its
         * version name it would stay, listed and counted, for good). */
        r = -EEXIST;
        for (int i = 0; i < TMP_TRIES && r == -EEXIST; i++) {
            random_tmp_name(keep);
            r = linkat(s->dirfd, name, vfd, keep, 0) < 0 ? -errno : 0;
        }
        if (r < 0) {
            what = "cannot keep the older copy until the new one is in place";
            goto out;
        }
        linked = true;
    } else if (has_cur) {
        /* The older copy gets its version name first, so that it is never without a name. */
        snprintf(keep, sizeof(keep), "%s", cur_vname);
        if (linkat(s->dirfd, name, vfd, keep, 0) == 0) {
            linked = true;
        } else {
            struct stat vst;

            r = -errno;
            if (r != -EEXIST || fstatat(vfd, keep, &vst, AT_SYMLINK_NOFOLLOW) < 0 ||
                vst.st_ino != cur.st_ino) {
                what = "cannot keep the older copy as a version";
                goto out;
            }
        }
    }
    r = fsync_fd(vfd);
    if (r < 0) {
        what = "cannot fsync the metadata directory";
        goto out;
    }
    r = place(s, t, name, has_cur);
    if (r < 0) {
        what = r == -EEXIST ? "a copy with this name appeared meanwhile"
                            : "cannot move the upload into place";
        goto out;
    }
    placed = true;
    r = fsync_fd(s->dirfd);
    if (r < 0) {
        what = "cannot fsync the directory";
        goto out;
    }
    *ret_freed = 0;
    if (has_cur && policy == SVC_BACKUP_POLICY_REPLACE) {
        char cur_json[24];

        snprintf(cur_json, sizeof(cur_json), "%s.json", cur_vname);
        t->replaced_fd = openat(vfd, keep, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        t->has_replaced = t->replaced_fd >= 0;
        (void)unlinkat(vfd, keep, 0);
        (void)unlinkat(vfd, cur_json, 0);
        (void)fsync(vfd);
        if (cur.st_nlink == 1)
            *ret_freed = (uint64_t)cur.st_size;
    }
    *ret_version = new_version;
    if (ret_stored)
        memcpy(ret_stored, stored, sizeof(stored));
    vers_fini(&v);
    close(vfd);
    return 0;

out:
    /* Undo, newest step first: the store is left as it was. */
    if (placed) {
        if (has_cur)
            (void)renameat(vfd, keep, s->dirfd, name);
        else
            (void)unlinkat(s->dirfd, name, 0);
        (void)fsync(s->dirfd);
    } else if (linked) {
        (void)unlinkat(vfd, keep, 0);
    }
    if (new_json[0])
        (void)unlinkat(vfd, new_json, 0);
    vers_fini(&v);
    if (vfd >= 0)
        close(vfd);
    return core_err_set(err, r, NULL, "%s: %s", what, strerror(-r));
}

static int entries_push(struct entries *es, const struct svc_backup_entry *e)
{
    if (es->n == es->cap) {
        size_t cap = es->cap ? 2 * es->cap : 16;
        struct svc_backup_entry *v = realloc(es->v, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        es->v = v;
        es->cap = cap;
    }
    es->v[es->n++] = *e;
    return 0;
}

static void entry_from_stat(struct svc_backup_entry *e, const char *name, const struct stat *st)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->size = (uint64_t)st->st_size;
    format_time(st->st_mtim.tv_sec, e->stored);
}

/* Appends the copies of one name: the current one, then the older ones, newest first. */
static int collect_name(struct svc_backup_store *s, const char *name, struct entries *es)
{
    struct svc_backup_entry e;
    struct ident cid = {0};
    struct vers v = {0};
    struct stat st;
    bool has_cur = false;
    int vfd, r;

    r = open_versions(s, name, &vfd, &v);
    if (r < 0)
        return r;
    if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
        has_cur = true;
        ident_of(&st, &cid);
        entry_from_stat(&e, name, &st);
        e.is_current = true;
        if (find_meta(vfd, &v, &cid, &e) < 0)
            e.version = v.max + 1;
        snprintf(e.name, sizeof(e.name), "%s", name);
        r = entries_push(es, &e);
        if (r < 0)
            goto out;
    }
    for (size_t i = 0; i < v.n_content; i++) {
        char vname[16];
        struct ident id, mid;

        snprintf(vname, sizeof(vname), "%" PRIu32, v.content[i]);
        if (fstatat(vfd, vname, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        /* The current copy on its way to becoming a version: listed once. */
        if (has_cur && (uint64_t)st.st_ino == cid.ino)
            continue;
        ident_of(&st, &id);
        entry_from_stat(&e, name, &st);
        {
            struct svc_backup_entry m = e;

            if (read_meta(vfd, v.content[i], &m, &mid) == 0 && ident_equal(&mid, &id))
                e = m;
        }
        e.version = v.content[i];
        r = entries_push(es, &e);
        if (r < 0)
            goto out;
    }
    r = 0;
out:
    vers_fini(&v);
    if (vfd >= 0)
        close(vfd);
    return r;
}

static int names_add(struct names *ns, const char *name)
{
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? 2 * ns->cap : 16;
        char **v = realloc(ns->v, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        ns->v = v;
        ns->cap = cap;
    }
    ns->v[ns->n] = strdup(name);
    if (!ns->v[ns->n])
        return -ENOMEM;
    ns->n++;
    return 0;
}

static void names_fini(struct names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
}

/* Adds the valid file names among dirfd's entries of type mode (S_IFREG or S_IFDIR). */
static int names_scan(struct names *ns, int dirfd, mode_t mode)
{
    DIR *d = open_dir_stream(dirfd);
    struct dirent *de;
    int r = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        struct stat st;

        if (svc_backup_name_check(de->d_name, strlen(de->d_name), NULL) < 0)
            continue;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            (st.st_mode & S_IFMT) != mode)
            continue;
        r = names_add(ns, de->d_name);
        if (r < 0)
            break;
    }
    closedir(d);
    return r;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int svc_backup_store_list(struct svc_backup_store *s, struct svc_backup_entry **ret, size_t *ret_n)
{
    struct names ns = {0};
    struct entries es = {0};
    int r;

    r = names_scan(&ns, s->dirfd, S_IFREG);
    if (r == 0 && s->metafd >= 0)
        r = names_scan(&ns, s->metafd, S_IFDIR);
    if (r < 0)
        goto out;
    if (ns.n)
        qsort(ns.v, ns.n, sizeof(*ns.v), cmp_str);
    for (size_t i = 0; i < ns.n; i++) {
        if (i > 0 && strcmp(ns.v[i], ns.v[i - 1]) == 0)
            continue;
        r = collect_name(s, ns.v[i], &es);
        if (r < 0)
            goto out;
    }
    *ret = es.v;
    *ret_n = es.n;
    es.v = NULL;
out:
    free(es.v);
    names_fini(&ns);
    return r;
}

int svc_backup_store_list_name(struct svc_backup_store *s, const char *name,
                               struct svc_backup_entry **ret, size_t *ret_n)
{
    struct entries es = {0};
    int r;

    if (svc_backup_name_check(name, strlen(name), NULL) < 0)
        return -EINVAL;
    r = collect_name(s, name, &es);
    if (r < 0) {
        free(es.v);
        return r;
    }
    *ret = es.v;
    *ret_n = es.n;
    return 0;
}

int svc_backup_store_drop_version(struct svc_backup_store *s, const char *name, uint32_t version,
                                  uint64_t *ret_freed)
{
    char vname[16], json[24];
    struct stat st, cur;
    struct vers v = {0};
    int vfd, r;

    if (version == 0 || svc_backup_name_check(name, strlen(name), NULL) < 0)
        return -EINVAL;
    r = open_versions(s, name, &vfd, &v);
    if (r < 0)
        return r;
    r = -ENOENT;
    if (vfd < 0)
        goto out;
    snprintf(vname, sizeof(vname), "%" PRIu32, version);
    if (fstatat(vfd, vname, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode))
        goto out;
    if (fstatat(s->dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0 && cur.st_dev == st.st_dev &&
        cur.st_ino == st.st_ino) {
        r = -EBUSY;
        goto out;
    }
    if (unlinkat(vfd, vname, 0) < 0) {
        r = -errno;
        goto out;
    }
    /* The copy is gone; a record left behind (a failed unlink, a crash) lists nothing. */
    if (version != v.max) {
        snprintf(json, sizeof(json), "%" PRIu32 ".json", version);
        (void)unlinkat(vfd, json, 0);
    }
    r = fsync_fd(vfd);
    if (r == 0)
        *ret_freed = (uint64_t)st.st_size;
out:
    vers_fini(&v);
    if (vfd >= 0)
        close(vfd);
    return r;
}

int svc_backup_store_usage(struct svc_backup_store *s, uint64_t *ret_bytes)
{
    struct svc_backup_entry *v;
    uint64_t sum = 0;
    size_t n;
    int r = svc_backup_store_list(s, &v, &n);

    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        sum += v[i].size;
    free(v);
    *ret_bytes = sum;
    return 0;
}

/* Opens name in dirfd as a regular file for reading; -ENOENT for anything else. */
static int open_regular(int dirfd, const char *name, struct stat *st)
{
    int fd = open_beneath(dirfd, name, O_RDONLY | O_NONBLOCK, 0);

    if (fd == -ELOOP || fd == -ENOTDIR || fd == -ENXIO)
        return -ENOENT;
    if (fd < 0)
        return fd;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -ENOENT;
    }
    /* O_NONBLOCK only kept a planted FIFO from blocking the open. */
    (void)fcntl(fd, F_SETFL, O_RDONLY);
    return fd;
}

int svc_backup_store_open_file(struct svc_backup_store *s, const char *name, uint32_t version,
                               int *ret_fd, struct svc_backup_entry *ret)
{
    struct svc_backup_entry e;
    struct vers v = {0};
    struct ident id, mid;
    struct stat st;
    char vname[16];
    int vfd, fd, r;

    if (svc_backup_name_check(name, strlen(name), NULL) < 0)
        return -EINVAL;
    r = open_versions(s, name, &vfd, &v);
    if (r < 0)
        return r;
    fd = open_regular(s->dirfd, name, &st);
    if (fd >= 0) {
        ident_of(&st, &id);
        entry_from_stat(&e, name, &st);
        e.is_current = true;
        if (find_meta(vfd, &v, &id, &e) < 0)
            e.version = v.max + 1;
        snprintf(e.name, sizeof(e.name), "%s", name);
        if (version == 0 || version == e.version)
            goto found;
        close(fd);
    } else if (fd != -ENOENT || version == 0) {
        r = fd;
        goto out;
    }
    r = -ENOENT;
    if (vfd < 0)
        goto out;
    snprintf(vname, sizeof(vname), "%" PRIu32, version);
    fd = open_regular(vfd, vname, &st);
    if (fd < 0) {
        r = fd;
        goto out;
    }
    ident_of(&st, &id);
    entry_from_stat(&e, name, &st);
    {
        struct svc_backup_entry m = e;

        if (read_meta(vfd, version, &m, &mid) == 0 && ident_equal(&mid, &id))
            e = m;
    }
    e.version = version;
found:
    *ret_fd = fd;
    *ret = e;
    r = 0;
out:
    vers_fini(&v);
    if (vfd >= 0)
        close(vfd);
    return r;
}
