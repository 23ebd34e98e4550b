#include "core/revisions.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/diff.h"
#include "core/store.h"
#include "core/thread.h"

#define FORMAT_VERSION 1
#define FILE_MAX (64 * 1024 * 1024)

/* A revision's line of the file, with its newline; shared by its revision and a rewrite of the
 * file that writes it without the lock (the revision may be dropped meanwhile). */
struct line {
    atomic_size_t refs;
    size_t len;
    char text[];
};

static struct line *line_new(const char *text, size_t len)
{
    struct line *l = malloc(sizeof(*l) + len + 1);

    if (!l)
        return NULL;
    atomic_init(&l->refs, 1);
    l->len = len;
    memcpy(l->text, text, len);
    l->text[len] = '\0';
    return l;
}

static struct line *line_ref(struct line *l)
{
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
    return l;
}

static void line_unref(struct line *l)
{
    if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

struct revision {
    uint64_t n;
    char time[32]; /* "2026-11-25T13:40:00.123Z" */
    char *source;
    json_t *origin; /* {"interface","action","listener","restored"}, NULL in older files */
    char *summary;
    json_t *diff;
    json_t *listeners;
    char *listeners_text; /* listeners as compact JSON, until the line is made; NULL: none */
    json_t *of;           /* every listener's revision after this one, as written to the file */
    /* Its line in the file, with the newline: made once (or kept from the file at load), so
     * that writing the file whole, every CORE_REVISIONS_KEEP changes, dumps nothing again. */
    struct line *line;
};

struct core_revisions {
    char *path;
    pthread_mutex_t lock;
    /* Oldest first; at most CORE_REVISIONS_KEEP + 1 (the newest may still be dropped): the
     * newest CORE_REVISIONS_KEEP are shown and written. Guarded by lock. */
    struct revision list[CORE_REVISIONS_KEEP + 1];
    size_t n;
    json_t *of;      /* {"id": revision}: guarded by lock */
    json_t *of_prev; /* of before the newest append, for drop_last */
    /* The file: how many revisions it holds (0: to be written whole at the next save) and the
     * newest it holds. Guarded by lock. */
    size_t file_lines;
    uint64_t file_last;
    /* The thread that writes the file whole (compact_main()) while saves go on appending to it;
     * compacting while it has not put the new file in place. Guarded by lock; the thread is
     * joined by the next rewrite or by core_revisions_free(). */
    pthread_t compactor;
    bool compactor_started, compacting;
    uint64_t floor;    /* no revision appended takes a lower number; guarded by lock */
    char problem[256]; /* what was wrong with the file at load, "" when nothing; guarded by lock */
};

int core_revisions_new(const char *path, struct core_revisions **ret)
{
    struct core_revisions *rv = calloc(1, sizeof(*rv));

    if (!rv)
        return -ENOMEM;
    rv->path = strdup(path);
    rv->of = json_object();
    if (!rv->path || !rv->of) {
        json_decref(rv->of);
        free(rv->path);
        free(rv);
        return -ENOMEM;
    }
    pthread_mutex_init(&rv->lock, NULL);
    *ret = rv;
    return 0;
}

static void revision_fini(struct revision *e)
{
    free(e->source);
    json_decref(e->origin);
    free(e->summary);
    json_decref(e->diff);
    json_decref(e->listeners);
    free(e->listeners_text);
    json_decref(e->of);
    line_unref(e->line);
    memset(e, 0, sizeof(*e));
}

void core_revisions_free(struct core_revisions *rv)
{
    if (!rv)
        return;
    core_revisions_settle(rv);
    for (size_t i = 0; i < rv->n; i++)
        revision_fini(&rv->list[i]);
    json_decref(rv->of);
    json_decref(rv->of_prev);
    pthread_mutex_destroy(&rv->lock);
    free(rv->path);
    free(rv);
}

/* The entries shown and written: the newest CORE_REVISIONS_KEEP. Under lock. */
static size_t first_shown(const struct core_revisions *rv)
{
    return rv->n > CORE_REVISIONS_KEEP ? rv->n - CORE_REVISIONS_KEEP : 0;
}

/* The number the next revision takes. Under lock. */
static uint64_t next_locked(const struct core_revisions *rv)
{
    uint64_t n = rv->n ? rv->list[rv->n - 1].n + 1 : 1;

    return n > rv->floor ? n : rv->floor;
}

uint64_t core_revisions_next(struct core_revisions *rv)
{
    uint64_t n;

    pthread_mutex_lock(&rv->lock);
    n = next_locked(rv);
    pthread_mutex_unlock(&rv->lock);
    return n;
}

void core_revisions_floor(struct core_revisions *rv, uint64_t n)
{
    pthread_mutex_lock(&rv->lock);
    if (n > rv->floor)
        rv->floor = n;
    pthread_mutex_unlock(&rv->lock);
}

void core_revisions_report(struct core_revisions *rv, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&rv->lock);
    va_start(ap, fmt);
    (void)vsnprintf(rv->problem, sizeof(rv->problem), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&rv->lock);
}

bool core_revisions_problem(struct core_revisions *rv, char *buf, size_t len)
{
    bool has;

    pthread_mutex_lock(&rv->lock);
    has = rv->problem[0] != '\0';
    if (has && len > 0)
        (void)snprintf(buf, len, "%s", rv->problem);
    pthread_mutex_unlock(&rv->lock);
    return has;
}

uint64_t core_revisions_last(struct core_revisions *rv)
{
    uint64_t n;

    pthread_mutex_lock(&rv->lock);
    n = rv->n ? rv->list[rv->n - 1].n : 0;
    pthread_mutex_unlock(&rv->lock);
    return n;
}

json_t *core_revisions_last_listeners(struct core_revisions *rv, uint64_t *ret_n)
{
    json_t *j = NULL;

    pthread_mutex_lock(&rv->lock);
    if (rv->n) {
        j = json_deep_copy(rv->list[rv->n - 1].listeners);
        *ret_n = rv->list[rv->n - 1].n;
    }
    pthread_mutex_unlock(&rv->lock);
    return j;
}

uint64_t core_revisions_of(struct core_revisions *rv, const char *id)
{
    json_int_t k;

    pthread_mutex_lock(&rv->lock);
    k = json_integer_value(json_object_get(rv->of, id));
    pthread_mutex_unlock(&rv->lock);
    return k > 0 ? (uint64_t)k : 0;
}

static void format_now(char *buf, size_t len)
{
    struct timespec now;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", now.tv_nsec / 1000000);
}

/* Sets the listeners' revisions for a new revision n. */
static int mark(json_t *of, const json_t *diff, const json_t *listeners, bool all, uint64_t n)
{
    size_t i;
    json_t *e;

    if (all) {
        json_object_clear(of);
        json_array_foreach(listeners, i, e)
        {
            const char *id = json_string_value(json_object_get(e, "id"));

            if (id && json_object_set_new(of, id, json_integer((json_int_t)n)) < 0)
                return -ENOMEM;
        }
        return 0;
    }
    json_array_foreach(diff, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        const char *action = json_string_value(json_object_get(e, "action"));

        if (!id || !action)
            continue;
        if (strcmp(action, "delete") == 0)
            json_object_del(of, id);
        else if (json_object_set_new(of, id, json_integer((json_int_t)n)) < 0)
            return -ENOMEM;
    }
    return 0;
}

int core_revisions_append(struct core_revisions *rv, const char *source, json_t *origin,
                          json_t *diff, json_t *listeners, char *listeners_text, bool all_listeners,
                          uint64_t *ret)
{
    struct revision e = {
        .origin = origin, .diff = diff, .listeners = listeners, .listeners_text = listeners_text};
    json_t *of_next = NULL;
    int r = -ENOMEM;

    e.source = strdup(source);
    e.summary = core_diff_summary(diff);
    if (!e.source || !e.summary || !origin || !diff || !listeners)
        goto out_fail;
    format_now(e.time, sizeof(e.time));
    pthread_mutex_lock(&rv->lock);
    e.n = next_locked(rv);
    of_next = json_deep_copy(rv->of);
    if (!of_next || mark(of_next, diff, listeners, all_listeners, e.n) < 0) {
        pthread_mutex_unlock(&rv->lock);
        goto out_fail;
    }
    e.of = json_deep_copy(of_next);
    if (!e.of) {
        pthread_mutex_unlock(&rv->lock);
        goto out_fail;
    }
    if (rv->n == CORE_REVISIONS_KEEP + 1) {
        revision_fini(&rv->list[0]);
        memmove(&rv->list[0], &rv->list[1], (rv->n - 1) * sizeof(rv->list[0]));
        rv->n--;
    }
    rv->list[rv->n++] = e;
    json_decref(rv->of_prev);
    rv->of_prev = rv->of;
    rv->of = of_next;
    pthread_mutex_unlock(&rv->lock);
    *ret = e.n;
    return 0;

out_fail:
    json_decref(of_next);
    revision_fini(&e);
    return r;
}

void core_revisions_drop_last(struct core_revisions *rv)
{
    pthread_mutex_lock(&rv->lock);
    if (rv->n > 0 && rv->of_prev) {
        revision_fini(&rv->list[--rv->n]);
        json_decref(rv->of);
        rv->of = rv->of_prev;
        rv->of_prev = NULL;
    }
    pthread_mutex_unlock(&rv->lock);
}

/* Revision e as JSON made of e's own trees, shared: read and let go under the lock. */
static json_t *revision_shared(const struct revision *e, bool with_listeners)
{
    json_t *j =
        json_pack("{s:I, s:s, s:s, s:O*, s:s, s:O}", "revision", (json_int_t)e->n, "time", e->time,
                  "source", e->source, "origin", e->origin, "summary", e->summary, "diff", e->diff);

    if (j && with_listeners && json_object_set(j, "listeners", e->listeners) < 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Revision e as JSON, a deep copy that no other thread sees. */
static json_t *revision_json(const struct revision *e, bool with_listeners)
{
    json_t *shared = revision_shared(e, with_listeners), *j = json_deep_copy(shared);

    json_decref(shared);
    return j;
}

/* Revision e's line in the file, with its newline (e's own), NULL on ENOMEM. Made once, from
 * e's trees, shared. Lock held. */
static struct line *revision_text(struct revision *e)
{
    json_t *j;
    char *text = NULL;
    size_t len;

    if (e->line)
        return e->line;
    /* With the listeners' text, the rest is dumped and the text put in before its last "}". */
    j = revision_shared(e, !e->listeners_text);
    if (j && json_object_set(j, "listener_revisions", e->of) == 0 &&
        json_object_set_new(j, "version", json_integer(FORMAT_VERSION)) == 0)
        text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!text)
        return NULL;
    len = strlen(text);
    if (e->listeners_text) {
        static const char key[] = ",\"listeners\":";
        size_t lt = strlen(e->listeners_text), k = sizeof(key) - 1;
        char *whole = malloc(len + k + lt + 1);

        if (!whole) {
            free(text);
            return NULL;
        }
        memcpy(whole, text, len - 1);
        memcpy(whole + len - 1, key, k);
        memcpy(whole + len - 1 + k, e->listeners_text, lt);
        memcpy(whole + len - 1 + k + lt, "}", 2);
        free(text);
        text = whole;
        len += k + lt;
    }
    text[len] = '\n'; /* over the NUL: the line is copied with its length */
    e->line = line_new(text, len + 1);
    free(text);
    if (e->line) {
        free(e->listeners_text);
        e->listeners_text = NULL;
    }
    return e->line;
}

/* The lines of the revisions shown as iov (at most CORE_REVISIONS_KEEP), each with a reference
 * when refs is not NULL (line_unref() them). Lock held. Returns how many, or -ENOMEM. */
static ssize_t shown_lines(struct core_revisions *rv, struct iovec *iov, struct line **refs)
{
    size_t k = 0;

    for (size_t i = first_shown(rv); i < rv->n; i++, k++) {
        struct line *l = revision_text(&rv->list[i]);

        if (!l) {
            while (refs && k > 0)
                line_unref(refs[--k]);
            return -ENOMEM;
        }
        iov[k] = (struct iovec){.iov_base = l->text, .iov_len = l->len};
        if (refs)
            refs[k] = line_ref(l);
    }
    return (ssize_t)k;
}

/* Writes the revisions shown, oldest first, as the whole file (atomically). Lock held. */
static int save_whole(struct core_revisions *rv)
{
    struct iovec iov[CORE_REVISIONS_KEEP];
    struct core_fs_staged staged;
    ssize_t n = shown_lines(rv, iov, NULL);
    int r;

    if (n < 0)
        return (int)n;
    r = core_fs_stage_iov(rv->path, iov, (size_t)n, 0600, &staged);
    if (r == 0)
        r = core_fs_stage_commit(&staged);
    if (r == 0) {
        rv->file_lines = (size_t)n;
        rv->file_last = rv->n ? rv->list[rv->n - 1].n : 0;
    }
    return r;
}

/* Appends to the file at path the lines of the revisions shown newer than after, and syncs it.
 * Lock held. Returns the lines appended, or a negative errno. */
static ssize_t append_newer(struct core_revisions *rv, const char *path, uint64_t after)
{
    ssize_t added = 0;
    int fd, r = 0;

    fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    for (size_t i = first_shown(rv); i < rv->n && r == 0; i++) {
        const struct line *line;

        if (rv->list[i].n <= after)
            continue;
        line = revision_text(&rv->list[i]);
        r = line ? core_fs_write_all(fd, line->text, line->len) : -ENOMEM;
        added++;
    }
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    close(fd);
    return r < 0 ? r : added;
}

/* Appends the revisions newer than the file's newest to it, then syncs it. Lock held. */
static int save_append(struct core_revisions *rv)
{
    ssize_t added = append_newer(rv, rv->path, rv->file_last);

    if (added < 0) {
        rv->file_lines = 0; /* a line may be torn: the next save writes the file whole */
        return (int)added;
    }
    rv->file_lines += (size_t)added;
    rv->file_last = rv->n ? rv->list[rv->n - 1].n : 0;
    return 0;
}

/*
 * The file written whole without holding the lock for the write: the lines shown when it began
 * (held by reference: a revision dropped meanwhile leaves its line to the rewrite) go to a file
 * beside it, synced, on a thread of its own. Then, under the lock, the lines saved meanwhile are
 * appended to that file, synced, and it takes the old one's place. A rewrite of 100 revisions
 * of 250 listeners is 9.5 MB: its write and fsync no longer delay the answer of the change
 * that starts it (the worst of 210 changes of one field in a set of 250 went from 97-117 ms to
 * 22-28 ms here, against a median of 8-10 ms). Until it is in place, saves append to the old
 * file as usual, which stays whole and valid.
 */
struct compaction {
    struct core_revisions *rv;
    struct iovec iov[CORE_REVISIONS_KEEP];  /* the lines shown when it began, */
    struct line *refs[CORE_REVISIONS_KEEP]; /* ... held */
    size_t n_lines;
    uint64_t last; /* the newest of them */
};

/* Lets go of c and of the lines it holds. */
static void compaction_free(struct compaction *c)
{
    for (size_t i = 0; i < c->n_lines; i++)
        line_unref(c->refs[i]);
    free(c);
}

static void *compact_main(void *arg)
{
    struct compaction *c = arg;
    struct core_revisions *rv = c->rv;
    struct core_fs_staged staged;
    ssize_t added = 0;
    int r;

    r = core_fs_stage_iov(rv->path, c->iov, c->n_lines, 0600, &staged);
    pthread_mutex_lock(&rv->lock);
    if (r == 0) {
        added = append_newer(rv, staged.tmp, c->last);
        r = added < 0 ? (int)added : core_fs_stage_commit(&staged);
        if (added < 0)
            core_fs_stage_abort(&staged);
    }
    if (r == 0) {
        rv->file_lines = c->n_lines + (size_t)added;
        rv->file_last = rv->n ? rv->list[rv->n - 1].n : 0;
    }
    /* Failed: the old file is still whole; the next save tries again. */
    rv->compacting = false;
    pthread_mutex_unlock(&rv->lock);
    compaction_free(c);
    return NULL;
}

/* Joins the rewrite's thread, waiting for it when it still writes. */
void core_revisions_settle(struct core_revisions *rv)
{
    pthread_t t;
    bool started;

    pthread_mutex_lock(&rv->lock);
    t = rv->compactor;
    started = rv->compactor_started;
    rv->compactor_started = false;
    pthread_mutex_unlock(&rv->lock);
    if (started)
        (void)pthread_join(t, NULL);
}

/* Starts the rewrite of the file whole (compact_main()) unless one runs. Lock held; returns 0 or
 * a negative errno (nothing started: the caller writes it whole itself). */
static int compact_begin_locked(struct core_revisions *rv)
{
    struct compaction *c;
    ssize_t n;
    int r;

    if (rv->compacting)
        return 0;
    if (rv->compactor_started) { /* done (not compacting): its return only is left */
        (void)pthread_join(rv->compactor, NULL);
        rv->compactor_started = false;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->rv = rv;
    n = shown_lines(rv, c->iov, c->refs);
    if (n < 0) {
        free(c);
        return (int)n;
    }
    c->n_lines = (size_t)n;
    c->last = rv->n ? rv->list[rv->n - 1].n : 0;
    r = -pthread_create(&rv->compactor, NULL, compact_main, c);
    if (r < 0) {
        compaction_free(c);
        return r;
    }
    core_thread_name(rv->compactor, "ss-compact");
    rv->compactor_started = true;
    rv->compacting = true;
    return 0;
}

int core_revisions_save(struct core_revisions *rv, struct core_err *err)
{
    int r;

    /* One line per change, appended; the file is written whole (the newest
     * CORE_REVISIONS_KEEP) when it holds twice as many, on a thread of its own (compact_main()),
     * or here when it must be (first written, or a line torn by a failed append). */
    pthread_mutex_lock(&rv->lock);
    if (rv->file_lines == 0) {
        r = save_whole(rv);
    } else {
        r = save_append(rv);
        if (r == 0 && rv->file_lines >= 2 * CORE_REVISIONS_KEEP && compact_begin_locked(rv) < 0)
            r = save_whole(rv);
    }
    pthread_mutex_unlock(&rv->lock);
    if (r < 0)
        return core_err_set(err, r, NULL, "%s: cannot write the revisions: %s", rv->path,
                            strerror(-r));
    return 0;
}

json_t *core_revisions_list(struct core_revisions *rv, size_t limit)
{
    json_t *a = json_array();
    size_t first;

    if (!a)
        return NULL;
    pthread_mutex_lock(&rv->lock);
    first = first_shown(rv);
    for (size_t i = rv->n; i > first && limit > 0; i--, limit--) {
        if (json_array_append_new(a, revision_json(&rv->list[i - 1], false)) < 0) {
            pthread_mutex_unlock(&rv->lock);
            json_decref(a);
            return NULL;
        }
    }
    pthread_mutex_unlock(&rv->lock);
    return a;
}

int core_revisions_get(struct core_revisions *rv, uint64_t n, json_t **ret)
{
    json_t *j = NULL;
    int r = -ENOENT;

    pthread_mutex_lock(&rv->lock);
    for (size_t i = first_shown(rv); i < rv->n; i++) {
        if (rv->list[i].n == n) {
            j = revision_json(&rv->list[i], true);
            r = j ? 0 : -ENOMEM;
            break;
        }
    }
    pthread_mutex_unlock(&rv->lock);
    if (r == 0)
        *ret = j;
    return r;
}

/* ---- reading the file ---- */

/* One revision of the file into *e. */
static int parse_revision(const json_t *j, struct revision *e)
{
    json_t *n = json_object_get(j, "revision"), *diff = json_object_get(j, "diff");
    json_t *listeners = json_object_get(j, "listeners");
    const char *time = json_string_value(json_object_get(j, "time"));
    const char *source = json_string_value(json_object_get(j, "source"));
    const char *summary = json_string_value(json_object_get(j, "summary"));

    if (!json_is_integer(n) || json_integer_value(n) < 1 || !json_is_array(diff) ||
        !json_is_array(listeners) || !time || !source || !summary)
        return -EINVAL;
    e->n = (uint64_t)json_integer_value(n);
    snprintf(e->time, sizeof(e->time), "%s", time);
    e->source = strdup(source);
    if (json_is_object(json_object_get(j, "origin")))
        e->origin = json_incref(json_object_get(j, "origin"));
    e->summary = strdup(summary);
    e->diff = json_incref(diff);
    e->listeners = json_incref(listeners);
    return e->source && e->summary ? 0 : -ENOMEM;
}

int core_revisions_load(struct core_revisions *rv, struct core_err *err)
{
    json_t *of = NULL;
    size_t len = 0, lines = 0, line_no = 0;
    bool torn = false;
    char *text = NULL, *p, *nl;
    int r;

    (void)core_fs_remove_stale_tmp(rv->path);
    r = core_fs_read_file(rv->path, FILE_MAX, &text, &len);
    if (r == -ENOENT)
        return r;
    if (r < 0)
        return core_err_set(err, r, NULL, "%s: %s", rv->path, strerror(-r));
    pthread_mutex_lock(&rv->lock);
    for (p = text; p < text + len; p = nl + 1) {
        struct revision e = {0};
        json_error_t jerr;
        json_t *j, *v;

        line_no++;
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) {
            /* A last line without its newline: a write cut short; it is dropped. */
            torn = true;
            break;
        }
        j = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &jerr);
        v = json_object_get(j, "version");
        r = j && json_is_integer(v) && json_integer_value(v) == FORMAT_VERSION &&
                    json_is_object(json_object_get(j, "listener_revisions"))
                ? parse_revision(j, &e)
                : -EINVAL;
        if (r == 0 && rv->n > 0 && e.n <= rv->list[rv->n - 1].n)
            r = -EINVAL;
        if (r == 0) {
            e.of = json_incref(json_object_get(j, "listener_revisions"));
            json_decref(of);
            of = json_incref(e.of);
            /* The line as read: written again as it is when the file is written whole. */
            e.line = line_new(p, (size_t)(nl + 1 - p));
        }
        json_decref(j);
        if (r < 0) {
            revision_fini(&e);
            if (nl + 1 == text + len) {
                torn = true; /* the last line, cut short */
                r = 0;
                break;
            }
            /* The numbers read so far stay taken: a revision number never comes back. */
            if (rv->n > 0 && rv->list[rv->n - 1].n >= rv->floor)
                rv->floor = rv->list[rv->n - 1].n + 1;
            for (size_t k = 0; k < rv->n; k++)
                revision_fini(&rv->list[k]);
            rv->n = 0;
            json_decref(of);
            of = NULL;
            core_err_set(err, -EINVAL, NULL, "%s: line %zu is not a revision", rv->path, line_no);
            (void)snprintf(rv->problem, sizeof(rv->problem),
                           "%s: line %zu is not a revision: the history before it is lost",
                           rv->path, line_no);
            r = -EINVAL;
            break;
        }
        if (rv->n == CORE_REVISIONS_KEEP + 1) {
            revision_fini(&rv->list[0]);
            memmove(&rv->list[0], &rv->list[1], (rv->n - 1) * sizeof(rv->list[0]));
            rv->n--;
        }
        rv->list[rv->n++] = e;
        lines++;
    }
    if (r == 0) {
        json_object_clear(rv->of);
        if (of && json_object_update(rv->of, of) < 0)
            r = -ENOMEM;
        /* A torn line is not appended to: the next save writes the file whole. */
        rv->file_lines = torn ? 0 : lines;
        if (torn)
            (void)snprintf(rv->problem, sizeof(rv->problem),
                           "%s: line %zu was cut short or damaged and was dropped", rv->path,
                           line_no);
        rv->file_last = rv->n ? rv->list[rv->n - 1].n : 0;
    }
    pthread_mutex_unlock(&rv->lock);
    json_decref(of);
    free(text);
    return r;
}
