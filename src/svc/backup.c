#include "svc/backup.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>

#include <openssl/evp.h>

#include "core/clock.h"
#include "core/config.h"
#include "svc/backup_proto.h"
#include "svc/backup_retain.h"
#include "svc/backup_store.h"

#define DEFAULT_MAX_FILE_SIZE (UINT64_C(4) << 30)
#define DEFAULT_QUOTA (UINT64_C(64) << 30)
#define RESTORE_CHUNK (256u << 10) /* content appended by one session_pull */
#define READ_SIZE (1u << 20)       /* input handed to one session_feed */
#define PENDING_MAX (1u << 20)     /* input held while a restore is sent */
#define ERR_TEXT_MAX 400
#define UPLOADS_MAX 4096 /* uploads in progress at once per listener, every process counted */
#define RESERVE_WINDOW (UINT64_C(4) << 20) /* disk and quota an upload holds ahead of its bytes */
#define DIRECT_MIN (UINT64_C(8) << 20)     /* an upload this large is written past the page cache */
#define DEFAULT_MIN_RATE 1024              /* bytes/s an upload keeps up, measured per window */
#define DEFAULT_MIN_RATE_WINDOW 60         /* seconds */
#define MIN_RATE_WINDOW_MAX 86400
#define DEFAULT_RESUME_TTL_MS (INT64_C(24) * 3600 * 1000) /* a cut upload is kept this long */
#define RESUME_TTL_MAX_MS (INT64_C(365) * 24 * 3600 * 1000)
#define FAILED_EVENTS_MAX 8 /* backup.failed events one connection reports; counters count all */

enum {
    C_STARTED,
    C_STORED,
    C_STORED_UNVERIFIED,
    C_BAD_NAME,
    C_TOO_LARGE,
    C_QUOTA,
    C_EXISTS,
    C_DISK_FULL,
    C_MISMATCH,
    C_CHECKSUM_REQUIRED,
    C_CUT,
    C_IO,
    C_BYTES_STORED,
    C_RESTORES,
    C_BYTES_RESTORED,
    C_PROTOCOL,
    C_VERSIONS_PRUNED,
    C_BYTES_PRUNED,
    C_COUNT
};

static const char *const backup_counters[C_COUNT] = {
    [C_STARTED] = "uploads_started",
    [C_STORED] = "uploads_stored",
    [C_STORED_UNVERIFIED] = "uploads_stored_unverified",
    [C_BAD_NAME] = "uploads_rejected_bad_name",
    [C_TOO_LARGE] = "uploads_rejected_too_large",
    [C_QUOTA] = "uploads_rejected_quota",
    [C_EXISTS] = "uploads_rejected_exists",
    [C_DISK_FULL] = "uploads_rejected_disk_full",
    [C_MISMATCH] = "uploads_rejected_mismatch",
    [C_CHECKSUM_REQUIRED] = "uploads_rejected_checksum_required",
    [C_CUT] = "uploads_cut",
    [C_IO] = "uploads_failed_io",
    [C_BYTES_STORED] = "bytes_stored",
    [C_RESTORES] = "restores",
    [C_BYTES_RESTORED] = "bytes_restored",
    [C_PROTOCOL] = "protocol_errors",
    [C_VERSIONS_PRUNED] = "versions_pruned",
    [C_BYTES_PRUNED] = "bytes_pruned",
};

static const char *const backup_counter_help[C_COUNT] = {
    [C_STARTED] = "uploads admitted (OK sent)",
    [C_STORED] = "uploads stored, their SHA-256 checked against the client's",
    [C_STORED_UNVERIFIED] = "uploads stored with nothing to check them against",
    [C_BAD_NAME] = "uploads refused for their name (ERR bad-name)",
    [C_TOO_LARGE] = "uploads over max_file_size (ERR too-large)",
    [C_QUOTA] = "uploads over quota_bytes (ERR quota)",
    [C_EXISTS] = "uploads refused by on_exists or a busy name (ERR exists, ERR busy)",
    [C_DISK_FULL] = "uploads the file system had no room for (ERR disk-full)",
    [C_MISMATCH] = "uploads whose size or SHA-256 did not match their header",
    [C_CHECKSUM_REQUIRED] = "uploads without a SHA-256 under require_checksum",
    [C_CUT] = "uploads cut before their end (connection lost, too slow, stopped)",
    [C_IO] = "uploads that failed to read or write the directory (ERR io)",
    [C_BYTES_STORED] = "bytes of the copies stored",
    [C_RESTORES] = "copies sent back (GET)",
    [C_BYTES_RESTORED] = "bytes of the copies sent back",
    [C_PROTOCOL] = "unknown commands and malformed lines (ERR protocol)",
    [C_VERSIONS_PRUNED] = "older versions removed by keep_versions and keep_days",
    [C_BYTES_PRUNED] = "bytes of the older versions removed by keep_versions and keep_days",
};

_Static_assert(C_COUNT <= CORE_METRICS_SVC_MAX, "too many backup counters");

/*
 * What the sessions of one instance share, in memory that the daemon maps before it forks the
 * process model's children (MAP_SHARED), so that threads and processes see one copy. Every
 * field is guarded by lock, a process-shared robust mutex: a child killed while it holds the
 * lock leaves it to the next taker, which repairs what may be half-changed (see repair()).
 * Version numbers need nothing here: they come from the directory, read and advanced under
 * the lock by svc_backup_store_commit().
 */
struct upload_slot {
    pid_t pid;         /* the uploading process; 0: the slot is free */
    uint64_t start;    /* that process's start time (/proc/PID/stat), telling a reused pid */
    uint64_t reserved; /* quota bytes the upload holds */
    char tmp[32];      /* its hidden temporary file, "" when unnamed (O_TMPFILE) */
    bool partial;      /* it writes a partial upload, which is kept should its process die */
    char name[SVC_BACKUP_NAME_MAX + 1];
};

struct backup_shared {
    pthread_mutex_t lock;
    uint64_t used;     /* bytes of every stored copy, and of the partial uploads kept */
    uint64_t reserved; /* bytes promised to uploads in progress: the sum of the slots' */
    unsigned n_hi;     /* slots [0, n_hi) may be in use */
    struct upload_slot slot[UPLOADS_MAX];
};

/* Made in the daemon when the listener starts; the process model's children get a copy of
 * everything but sh, which they share. Read-only after instance_new. */
struct backup_inst {
    struct svc_backup_store *store; /* the daemon's writer; forked children open their own */
    char dir[PATH_MAX];
    /* <state_dir>/.backup-<listener_id>.dir ("" without a state directory): the listener's
     * instances, the newest last. An instance replaced while its uploads drain finds a newer
     * one there and stores nothing more, neither where its listener no longer looks nor
     * beside the newer one's commits. */
    char marker[PATH_MAX];
    pid_t pid; /* the daemon's: the process that made the instance */
    EVP_MD *sha256;
    enum svc_backup_policy policy;
    uint64_t max_file_size;
    uint64_t quota; /* 0: unlimited */
    bool require_checksum;
    /* keep_versions, keep_days */
    struct svc_backup_retain_rules retain;
    uint64_t min_rate;            /* bytes/s; 0: no floor */
    int64_t rate_window_ms;       /* the span each rate check measures */
    int64_t resume_ttl_ms;        /* how long a cut upload is kept to be resumed; 0: not */
    struct core_metrics *metrics; /* may be NULL */
    struct core_emitter *emitter; /* may be NULL: where backup.stored and backup.failed go */
    struct backup_shared *sh;
};

enum sess_state {
    ST_FIRST,   /* nothing read yet: a command or the lecture's bare name */
    ST_COMMAND, /* reading command lines */
    ST_UPLOAD,  /* PUT: reading <expected> content bytes */
    ST_TRAILER, /* PUT ... *: reading the "SHA256 <hex>" line after the content */
    ST_BARE,    /* the lecture's flow: reading content until the client closes */
    ST_DISCARD, /* a failed PUT: skipping the rest of its content */
    ST_RESTORE, /* GET: content sent through session_pull; input is held in pend */
    ST_CLOSED
};

struct backup_sess {
    struct backup_inst *inst;
    struct svc_backup_store *st; /* inst->store, or own_st in a forked child */
    struct svc_backup_store *own_st;
    pid_t pid;      /* the process serving the session */
    uint64_t start; /* its start time; 0 in the daemon */
    enum sess_state state;
    char line[SVC_BACKUP_LINE_MAX + 1];
    size_t line_len;

    /* an upload; in progress while tmp.fd >= 0 */
    char name[SVC_BACKUP_NAME_MAX + 1];
    bool attempt;           /* an upload of name was asked for and has not ended yet */
    unsigned failed_events; /* backup.failed events this connection reported */
    struct svc_backup_tmp tmp;
    EVP_MD_CTX *md;
    uint64_t expected; /* PUT: the declared size */
    uint64_t received;
    uint64_t held;    /* bytes of disk and quota reserved for it so far (>= received) */
    int64_t rate_t0;  /* when the current rate window began (monotonic ms) */
    uint64_t rate_b0; /* received at that time */
    int slot;         /* its entry in inst->sh->slot while admitted, else -1 */
    bool has_sha256;
    uint8_t sha256[SVC_BACKUP_SHA256_LEN];
    bool trailer; /* the SHA-256 follows the content */
    uint64_t discard_left;
    /* the copy the last commit replaced, open until the session's next callback: its blocks
     * are freed after STORED is on its way, not before */
    bool has_replaced;
    int replaced_fd;

    /* a restore */
    int rfd;
    uint64_t rsize, rsent;
    uint8_t *rbuf;
    /* input that came after a GET line (pipelined commands): fed once its content is sent */
    uint8_t *pend;
    size_t pend_len;
};

static void count(struct backup_inst *in, unsigned idx, uint64_t n)
{
    if (in->metrics)
        core_metrics_svc_add(in->metrics, idx, n);
}

static unsigned counter_of(enum svc_backup_errc c)
{
    switch (c) {
    case SVC_BACKUP_E_BAD_NAME:
        return C_BAD_NAME;
    case SVC_BACKUP_E_TOO_LARGE:
        return C_TOO_LARGE;
    case SVC_BACKUP_E_QUOTA:
        return C_QUOTA;
    case SVC_BACKUP_E_DISK_FULL:
        return C_DISK_FULL;
    case SVC_BACKUP_E_EXISTS:
    case SVC_BACKUP_E_BUSY:
        return C_EXISTS;
    case SVC_BACKUP_E_CHECKSUM_REQUIRED:
        return C_CHECKSUM_REQUIRED;
    case SVC_BACKUP_E_SIZE_MISMATCH:
    case SVC_BACKUP_E_CHECKSUM_MISMATCH:
        return C_MISMATCH;
    case SVC_BACKUP_E_PROTOCOL:
        return C_PROTOCOL;
    case SVC_BACKUP_E_TOO_SLOW:
        return C_CUT;
    case SVC_BACKUP_E_NOT_FOUND:
    case SVC_BACKUP_E_IO:
    case SVC_BACKUP_E_COUNT:
        break;
    }
    return C_IO;
}

/* The ERR code for a store or file error. */
static enum svc_backup_errc errc_of(int r)
{
    switch (r) {
    case -EEXIST:
        return SVC_BACKUP_E_EXISTS;
    case -ENOSPC:
    case -EDQUOT:
        return SVC_BACKUP_E_DISK_FULL;
    case -EFBIG:
        return SVC_BACKUP_E_TOO_LARGE;
    default:
        return SVC_BACKUP_E_IO;
    }
}

/*
 * The events of an upload attempt (one asked for by a PUT line or the lecture's bare name): it
 * ends once, with backup.stored or backup.failed. backup.failed is reported at most
 * FAILED_EVENTS_MAX times per connection, so that a client repeating a refused PUT does not
 * flood the event stream (the counters still count every refusal).
 */
static void attempt_begin(struct backup_sess *s, const char *name)
{
    memcpy(s->name, name, sizeof(s->name));
    s->attempt = true;
}

static void report_failed(struct backup_sess *s, const char *reason, const char *detail)
{
    if (!s->attempt)
        return;
    s->attempt = false;
    if (s->failed_events >= FAILED_EVENTS_MAX)
        return;
    s->failed_events++;
    core_svc_emit(
        s->inst->emitter, "backup.failed",
        json_pack("{s:s, s:s, s:s}", "name", s->name, "reason", reason, "detail", detail));
}

static void report_stored(struct backup_sess *s, uint32_t version, const char *hex,
                          enum svc_backup_integrity integrity, const char *stored)
{
    s->attempt = false;
    core_svc_emit(s->inst->emitter, "backup.stored",
                  json_pack("{s:s, s:I, s:I, s:s, s:b, s:s, s:s}", "name", s->name, "version",
                            (json_int_t)version, "size", (json_int_t)s->received, "sha256", hex,
                            "verified", integrity != SVC_BACKUP_INTEGRITY_NONE, "integrity",
                            svc_backup_integrity_name(integrity), "time", stored));
}

/* Appends `ERR <code> <text>\n` (the text on one line) and counts it; an upload attempt ends
 * with it. Returns 0 or -ENOMEM. */
static int reply_err(struct backup_sess *s, struct core_buf *out, enum svc_backup_errc code,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int reply_err(struct backup_sess *s, struct core_buf *out, enum svc_backup_errc code,
                     const char *fmt, ...)
{
    char text[ERR_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    if (code != SVC_BACKUP_E_NOT_FOUND)
        count(s->inst, counter_of(code), 1);
    report_failed(s, svc_backup_errc_name(code), text);
    return core_buf_printf(out, "ERR %s %s\n", svc_backup_errc_name(code), text) < 0 ? -ENOMEM : 0;
}

static const char *enc(const char *name, char buf[SVC_BACKUP_NAME_ENC_MAX + 1])
{
    svc_backup_name_encode(name, buf, SVC_BACKUP_NAME_ENC_MAX + 1);
    return buf;
}

/* ---- the state shared by the daemon and its forked children ---- */

/*
 * Whether pid is gone (a zombie counts as gone): 1 gone, 0 running with its start time in
 * *ret_start (clock ticks since boot, field 22 of /proc/PID/stat; a pid and its start time
 * name one process for good), or a negative errno when it cannot be told (then it is taken to
 * run: an upload is never dropped on a guess).
 */
static int proc_gone(pid_t pid, uint64_t *ret_start)
{
    char path[64], buf[1024], *p, *end;
    unsigned long long start;
    ssize_t n;
    int fd, r;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 1 : -errno;
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    r = n < 0 ? -errno : 0;
    close(fd);
    if (r < 0)
        return r == -ESRCH ? 1 : r;
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name before it may hold anything */
    if (!p || p[1] != ' ')
        return -EINVAL;
    p += 2; /* field 3, the state; the start time is field 22 */
    if (*p == 'Z' || *p == 'X' || *p == 'x')
        return 1;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -EINVAL;
        p++;
    }
    errno = 0;
    start = strtoull(p, &end, 10);
    if (errno != 0 || end == p)
        return -EINVAL;
    *ret_start = start;
    return 0;
}

/* Whether the upload in slot sl still has its process. Under the lock. */
static bool slot_is_live(const struct backup_inst *in, const struct upload_slot *sl)
{
    uint64_t start = 0;
    int r;

    /* The daemon outlives its children, and a process knows it is alive. */
    if (sl->pid == in->pid || sl->pid == getpid())
        return true;
    r = proc_gone(sl->pid, &start);
    if (r == 0 && sl->start != 0 && start != sl->start)
        return false; /* the pid was given to another process */
    return r <= 0;
}

/* Recounts the reservations and the slots in use from the slots themselves. Under the lock. */
static void recount(struct backup_shared *sh)
{
    sh->reserved = 0;
    while (sh->n_hi > 0 && sh->slot[sh->n_hi - 1].pid == 0)
        sh->n_hi--;
    for (unsigned i = 0; i < sh->n_hi; i++) {
        if (sh->slot[i].pid != 0)
            sh->reserved += sh->slot[i].reserved;
    }
}

/* Sums again the bytes of the stored copies and of the partial uploads kept (those being
 * written are counted in their uploads' reservations). Under the lock. */
static void recount_used(struct backup_inst *in, struct svc_backup_store *st)
{
    uint64_t used, part;

    if (st && svc_backup_store_usage(st, &used) == 0 &&
        svc_backup_store_partial_bytes(st, &part) == 0)
        in->sh->used = used + part;
}

/* Removes the partial uploads kept longer than resume_ttl_ms (every one when it is 0) that
 * no upload resumes now. Under the lock. */
static void expire_partials(struct backup_inst *in, struct svc_backup_store *st)
{
    uint64_t freed = 0;

    if (svc_backup_store_partial_sweep(st, in->resume_ttl_ms, &freed) == 0)
        in->sh->used -= freed < in->sh->used ? freed : in->sh->used;
}

/*
 * Frees the slots of uploads whose process is gone (a child of the process model killed
 * mid-upload cannot release its own): their quota share, their name, their hidden temporary
 * file. Under the lock. Returns how many it freed.
 */
static unsigned sweep(struct backup_inst *in, struct svc_backup_store *st)
{
    struct backup_shared *sh = in->sh;
    unsigned freed = 0;
    bool kept = false;

    for (unsigned i = 0; i < sh->n_hi; i++) {
        struct upload_slot *sl = &sh->slot[i];

        if (sl->pid == 0 || slot_is_live(in, sl))
            continue;
        if (sl->tmp[0]) {
            struct svc_backup_tmp t = {.fd = -1};

            memcpy(t.name, sl->tmp, sizeof(t.name));
            svc_backup_store_tmp_discard(st, &t);
        }
        kept = kept || sl->partial; /* what it received stays, to be resumed */
        sl->pid = 0;
        freed++;
    }
    if (freed)
        recount(sh);
    if (kept)
        recount_used(in, st);
    return freed;
}

/*
 * After the lock's holder died with it (EOWNERDEAD): what it may have left half-changed is
 * rebuilt from what is certain. Uploads of dead processes are dropped, the reservations
 * recounted from the slots, and the bytes stored summed again from the directory, since the
 * holder may have died in the middle of a commit.
 */
static void repair(struct backup_inst *in, struct svc_backup_store *st)
{
    (void)sweep(in, st);
    recount(in->sh);
    recount_used(in, st);
}

static void shared_lock(struct backup_inst *in, struct svc_backup_store *st)
{
    int r = pthread_mutex_lock(&in->sh->lock);

    if (r == EOWNERDEAD) {
        repair(in, st);
        r = pthread_mutex_consistent(&in->sh->lock);
    }
    /* ENOTRECOVERABLE only follows an EOWNERDEAD left unrepaired, and it never is. */
    assert(r == 0);
    (void)r;
}

static void shared_unlock(struct backup_inst *in)
{
    pthread_mutex_unlock(&in->sh->lock);
}

/* Whether another upload of name is in progress, in any process. Under the lock. */
static bool is_in_flight(const struct backup_shared *sh, const char *name)
{
    for (unsigned i = 0; i < sh->n_hi; i++) {
        if (sh->slot[i].pid != 0 && strcmp(sh->slot[i].name, name) == 0)
            return true;
    }
    return false;
}

/* Takes a free slot for s's upload of size bytes. Under the lock. Returns 0 or -EBUSY. */
static int slot_claim(struct backup_sess *s, uint64_t size)
{
    struct backup_shared *sh = s->inst->sh;
    struct upload_slot *sl;
    unsigned i = 0;

    while (i < sh->n_hi && sh->slot[i].pid != 0)
        i++;
    if (i == UPLOADS_MAX)
        return -EBUSY;
    if (i == sh->n_hi)
        sh->n_hi++;
    sl = &sh->slot[i];
    memcpy(sl->name, s->name, sizeof(sl->name));
    sl->tmp[0] = '\0';
    sl->partial = false;
    sl->reserved = size;
    sl->start = s->start;
    sl->pid = s->pid; /* last: a slot with a pid is complete */
    sh->reserved += size;
    s->slot = (int)i;
    return 0;
}

/* Whether size more bytes fit in the quota now. Under the lock. */
static bool quota_fits(const struct backup_inst *in, uint64_t size)
{
    const struct backup_shared *sh = in->sh;

    return !in->quota ||
           (sh->used + sh->reserved <= in->quota && size <= in->quota - sh->used - sh->reserved);
}

/*
 * Admits an upload of s->name (size bytes, or 0 for the size-less flow, of which rest are yet
 * to come: less when resumed): checks the limits, rest against the quota left and the policy, and
 * lists the session as uploading. Nothing is held yet: disk and quota are taken as bytes arrive
 * (hold_more()). Returns 0, or -1 with the ERR line appended.
 */
static int admit(struct backup_sess *s, uint64_t size, uint64_t rest, struct core_buf *out)
{
    struct backup_inst *in = s->inst;
    struct backup_shared *sh = in->sh;
    char e[SVC_BACKUP_NAME_ENC_MAX + 1];
    enum svc_backup_errc code = SVC_BACKUP_E_COUNT;
    uint64_t used = 0, reserved = 0;
    bool full = false;
    int taken;

    shared_lock(in, s->st);
    taken = svc_backup_store_lookup(s->st, s->name);
    /* A refusal that uploads in progress cause is checked again once those of dead
     * processes are dropped. */
    for (int pass = 0; pass < 2; pass++) {
        code = SVC_BACKUP_E_COUNT;
        full = false;
        if (taken < 0) {
            code = SVC_BACKUP_E_EXISTS;
        } else if (size > in->max_file_size) {
            code = SVC_BACKUP_E_TOO_LARGE;
        } else if (!quota_fits(in, rest)) {
            code = SVC_BACKUP_E_QUOTA;
            used = sh->used;
            reserved = sh->reserved;
        } else if (in->policy == SVC_BACKUP_POLICY_REJECT && is_in_flight(sh, s->name)) {
            code = SVC_BACKUP_E_BUSY;
        } else if (in->policy == SVC_BACKUP_POLICY_REJECT && taken) {
            code = SVC_BACKUP_E_EXISTS;
        } else if (slot_claim(s, 0) < 0) {
            code = SVC_BACKUP_E_BUSY;
            full = true;
        }
        if (code != SVC_BACKUP_E_QUOTA && code != SVC_BACKUP_E_BUSY)
            break;
        if (pass == 0 && sweep(in, s->st) == 0)
            break;
    }
    shared_unlock(in);
    switch (code) {
    case SVC_BACKUP_E_TOO_LARGE:
        return reply_err(s, out, code, "%" PRIu64 " bytes is over max_file_size %" PRIu64, size,
                         in->max_file_size) < 0
                   ? -ENOMEM
                   : -1;
    case SVC_BACKUP_E_QUOTA:
        return reply_err(s, out, code,
                         "%" PRIu64 " bytes would exceed quota_bytes %" PRIu64 " (%" PRIu64
                         " stored, %" PRIu64 " in progress)",
                         rest, in->quota, used, reserved) < 0
                   ? -ENOMEM
                   : -1;
    case SVC_BACKUP_E_BUSY:
        if (full)
            return reply_err(s, out, code,
                             "%d uploads are in progress, the most this listener takes",
                             UPLOADS_MAX) < 0
                       ? -ENOMEM
                       : -1;
        return reply_err(s, out, code, "%s is being uploaded by another client", enc(s->name, e)) <
                       0
                   ? -ENOMEM
                   : -1;
    case SVC_BACKUP_E_EXISTS:
        return reply_err(s, out, code, "%s %s", enc(s->name, e),
                         taken < 0 ? "is taken by something that is not a regular file"
                                   : "exists and on_exists is reject") < 0
                   ? -ENOMEM
                   : -1;
    default:
        return 0;
    }
}

/* Releases what admit() took, with the shared lock held. */
static void release_locked(struct backup_sess *s)
{
    struct upload_slot *sl;

    if (s->slot < 0)
        return;
    sl = &s->inst->sh->slot[s->slot];
    if (sl->pid == s->pid) { /* else a repair took it: its process looked dead */
        sl->pid = 0;
        recount(s->inst->sh);
    }
    s->slot = -1;
}

/* Releases what admit() took. */
static void release(struct backup_sess *s)
{
    if (s->slot < 0)
        return;
    shared_lock(s->inst, s->st);
    release_locked(s);
    shared_unlock(s->inst);
}

/* Ends the upload in progress: removes its temporary file, releases its reservation. */
static void upload_discard(struct backup_sess *s)
{
    svc_backup_store_tmp_discard(s->st, &s->tmp);
    release(s);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
}

/* Opens the partial upload c resumes (c->offset > 0) or starts, and moves the bytes it holds
 * from the stored count to the upload's reservation. Returns 0, -EAGAIN when the upload is
 * not to be resumable (another client uploads the name), or a negative errno. */
static int partial_begin(struct backup_sess *s, const struct svc_backup_cmd *c)
{
    struct backup_inst *in = s->inst;
    uint64_t dropped = 0;
    int r;

    shared_lock(in, s->st);
    expire_partials(in, s->st);
    r = svc_backup_store_partial_open(s->st, s->name, c->size, c->has_sha256 ? c->sha256 : NULL,
                                      c->offset, &s->tmp, &dropped);
    if (r == 0) {
        struct upload_slot *sl = &in->sh->slot[s->slot];

        in->sh->used -= dropped < in->sh->used ? dropped : in->sh->used;
        if (sl->pid == s->pid) {
            sl->reserved += c->offset;
            in->sh->reserved += c->offset;
            sl->partial = true;
        }
    }
    shared_unlock(in);
    return r == -EBUSY && c->offset == 0 ? -EAGAIN : r;
}

/* Hashes the first n bytes of the upload's file: what a resumed upload already holds. */
static int hash_prefix(struct backup_sess *s, uint64_t n)
{
    uint8_t *buf = malloc(READ_SIZE);
    uint64_t off = 0;
    int r = 0;

    if (!buf)
        return -ENOMEM;
    while (off < n) {
        size_t want = n - off < READ_SIZE ? (size_t)(n - off) : READ_SIZE;
        ssize_t got = pread(s->tmp.fd, buf, want, (off_t)off);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            r = got < 0 ? -errno : -EIO;
            break;
        }
        if (EVP_DigestUpdate(s->md, buf, (size_t)got) != 1) {
            r = -EIO;
            break;
        }
        off += (uint64_t)got;
    }
    free(buf);
    return r;
}

/* Starts an admitted upload (c NULL: the lecture's flow, size not declared): checks that the
 * file system has room for what is to come, makes its temporary file (a partial upload when it
 * can be resumed, the one it resumes when c->offset > 0) and its digest. Returns 0, or -1 with
 * the ERR line appended and the admission released. */
static int upload_begin(struct backup_sess *s, const struct svc_backup_cmd *c, struct core_buf *out)
{
    struct backup_inst *in = s->inst;
    char e[SVC_BACKUP_NAME_ENC_MAX + 1];
    uint64_t size = c ? c->size : 0, offset = c ? c->offset : 0, avail = 0;
    int r = size ? svc_backup_store_free_bytes(s->st, &avail) : 0;

    if (r == 0 && size - offset > avail) {
        release(s);
        return reply_err(s, out, SVC_BACKUP_E_DISK_FULL,
                         "%" PRIu64 " bytes declared, %" PRIu64 " free on the disk", size - offset,
                         avail) < 0
                   ? -ENOMEM
                   : -1;
    }
    r = c && in->resume_ttl_ms > 0 && size > 0 ? partial_begin(s, c) : -EAGAIN;
    if (r < 0 && offset == 0) /* not resumable, then: another client uploads the name */
        r = svc_backup_store_tmp_new(s->st, 0, &s->tmp);
    if (r < 0) {
        release(s);
        if (r == -ENOENT || r == -EAGAIN)
            r = reply_err(s, out, SVC_BACKUP_E_NOT_FOUND,
                          "no partial upload of %s holds %" PRIu64
                          " bytes of that size and checksum; RESUME tells what is held",
                          enc(s->name, e), offset);
        else if (r == -EBUSY)
            r = reply_err(s, out, SVC_BACKUP_E_BUSY, "%s is being uploaded by another client",
                          enc(s->name, e));
        else
            r = reply_err(s, out, errc_of(r), "cannot create the file: %s", strerror(-r));
        return r < 0 ? -ENOMEM : -1;
    }
    if (s->tmp.name[0]) { /* a hidden file: a sweep removes it should this process die */
        shared_lock(in, s->st);
        memcpy(in->sh->slot[s->slot].tmp, s->tmp.name, sizeof(s->tmp.name));
        shared_unlock(in);
    }
    s->md = EVP_MD_CTX_new();
    if (!s->md || EVP_DigestInit_ex(s->md, in->sha256, NULL) != 1) {
        upload_discard(s);
        return -ENOMEM;
    }
    if (offset > 0) {
        r = hash_prefix(s, offset);
        if (r < 0) {
            upload_discard(s);
            if (r == -ENOMEM)
                return r;
            return reply_err(s, out, SVC_BACKUP_E_IO,
                             "cannot read the partial upload: %s; nothing kept", strerror(-r)) < 0
                       ? -ENOMEM
                       : -1;
        }
    }
    /* A process model's child, a fork of the multi-threaded daemon, starts no thread: it writes
     * each buffer itself. */
    if (size - offset >= DIRECT_MIN)
        svc_backup_store_tmp_direct(&s->tmp, s->pid == in->pid);
    s->received = offset;
    s->held = offset;
    s->rate_t0 = core_now_ms();
    s->rate_b0 = offset;
    count(s->inst, C_STARTED, 1);
    return 0;
}

/* Ends an upload that was cut: a partial upload keeps what it received, counted as stored,
 * to be resumed; anything else is discarded. */
static void upload_keep(struct backup_sess *s)
{
    struct backup_inst *in = s->inst;

    if (!s->tmp.part[0]) {
        upload_discard(s);
        return;
    }
    shared_lock(in, s->st);
    svc_backup_store_tmp_keep(s->st, &s->tmp);
    in->sh->used += s->received;
    release_locked(s);
    shared_unlock(in);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
}

/*
 * Holds disk (fallocate) and quota for the next n bytes of a PUT, a bounded window ahead of
 * what arrived, so that a header alone holds nothing. Returns 0, or -1 with the ERR line
 * appended and the upload discarded, or -ENOMEM.
 */
static int hold_more(struct backup_sess *s, uint64_t n, struct core_buf *out)
{
    struct backup_inst *in = s->inst;
    struct upload_slot *sl;
    uint64_t end, more;
    bool fits;
    int r;

    if (s->received + n <= s->held)
        return 0;
    end = s->expected - s->received - n < RESERVE_WINDOW ? s->expected
                                                         : s->received + n + RESERVE_WINDOW;
    more = end - s->held;
    shared_lock(in, s->st);
    fits = quota_fits(in, more) || (sweep(in, s->st) > 0 && quota_fits(in, more));
    sl = &in->sh->slot[s->slot];
    if (fits && sl->pid == s->pid) {
        sl->reserved += more;
        in->sh->reserved += more;
    }
    shared_unlock(in);
    if (!fits) {
        upload_discard(s);
        return reply_err(s, out, SVC_BACKUP_E_QUOTA,
                         "%" PRIu64 " bytes received would exceed quota_bytes %" PRIu64
                         "; nothing kept",
                         s->received + n, in->quota) < 0
                   ? -ENOMEM
                   : -1;
    }
    r = svc_backup_store_tmp_reserve(&s->tmp, s->held, more);
    if (r < 0) {
        upload_discard(s);
        return reply_err(s, out, errc_of(r), "no room after %" PRIu64 " bytes: %s; nothing kept",
                         s->received, strerror(-r)) < 0
                   ? -ENOMEM
                   : -1;
    }
    s->held = end;
    return 0;
}

/*
 * Whether the upload fell below min_rate_bytes_per_s over the window that ends with these n
 * bytes; a window that kept up starts the next one.
 */
static bool is_too_slow(struct backup_sess *s, uint64_t n)
{
    const struct backup_inst *in = s->inst;
    int64_t now, dt;

    if (!in->min_rate)
        return false;
    now = core_now_ms();
    dt = now - s->rate_t0;
    if (dt < in->rate_window_ms)
        return false;
    if ((double)(s->received + n - s->rate_b0) * 1000.0 < (double)in->min_rate * (double)dt)
        return true;
    s->rate_t0 = now;
    s->rate_b0 = s->received + n;
    return false;
}

/* Cuts an upload that is too slow: the ERR line, nothing kept, the connection closes. */
static int upload_too_slow(struct backup_sess *s, struct core_buf *out)
{
    const struct backup_inst *in = s->inst;
    int r;

    upload_discard(s);
    s->state = ST_CLOSED;
    r = reply_err(s, out, SVC_BACKUP_E_TOO_SLOW,
                  "below min_rate_bytes_per_s %" PRIu64 " over %" PRId64 " ms after %" PRIu64
                  " bytes; nothing kept",
                  in->min_rate, in->rate_window_ms, s->received);
    return r < 0 ? r : CORE_VERDICT_CLOSE;
}

/*
 * The instances of one listener, in <state_dir>/.backup-<listener_id>.dir: a line
 * "PID TOKEN DIRECTORY" for each, oldest first; the last is the newest, the one the listener's
 * configuration names. Written by the daemon only (instance_new and instance_free run there,
 * one at a time); read by every process. Lines of another daemon's pid are left by a crash.
 */
#define MARKER_MAX (64u << 10)

/* The marker's text (malloc'd, "" when there is none), or NULL when out of memory. */
static char *marker_load(const char *path)
{
    char *buf = malloc(MARKER_MAX + 1);
    ssize_t n = 0;
    int fd;

    if (!buf)
        return NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        do {
            n = read(fd, buf, MARKER_MAX);
        } while (n < 0 && errno == EINTR);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* Parses the line at p: its pid, token and directory (dir_len bytes at *ret_dir). Returns the
 * start of the next line, or NULL at the end. */
static const char *marker_line(const char *p, pid_t *ret_pid, unsigned long long *ret_token,
                               const char **ret_dir, size_t *ret_dir_len)
{
    const char *nl;
    int pid = 0, used = 0;

    if (!*p)
        return NULL;
    nl = strchr(p, '\n');
    if (!nl)
        nl = p + strlen(p);
    if (sscanf(p, "%d %llx %n", &pid, ret_token, &used) < 2 || p + used > nl)
        used = (int)(nl - p), pid = 0;
    *ret_pid = pid;
    *ret_dir = p + used;
    *ret_dir_len = (size_t)(nl - (p + used));
    return *nl ? nl + 1 : nl;
}

/* Whether the newest instance in text is (pid, token). No line: yes. */
static bool marker_newest_is(const char *text, pid_t pid, unsigned long long token)
{
    pid_t lp = 0, last_pid = 0;
    unsigned long long lt = 0, last_token = 0;
    const char *d, *p = text;
    size_t dl;
    bool any = false;

    while ((p = marker_line(p, &lp, &lt, &d, &dl))) {
        if (lp != pid)
            continue;
        any = true;
        last_pid = lp;
        last_token = lt;
    }
    return !any || (last_pid == pid && last_token == token);
}

/* Whether an instance of pid other than token uses dir. */
static bool marker_has_dir(const char *text, pid_t pid, unsigned long long token, const char *dir)
{
    pid_t lp;
    unsigned long long lt = 0;
    const char *d, *p = text;
    size_t dl;

    while ((p = marker_line(p, &lp, &lt, &d, &dl))) {
        if (lp == pid && lt != token && dl == strlen(dir) && memcmp(d, dir, dl) == 0)
            return true;
    }
    return false;
}

/* Adds the instance (pid, token) on dir as the newest (dir not NULL) or removes it (NULL);
 * drops the lines of other pids. Returns 0 or a negative errno. */
static int marker_update(const char *path, pid_t pid, unsigned long long token, const char *dir)
{
    char *text = marker_load(path), *out, tmp[PATH_MAX + 8];
    const char *p, *d;
    unsigned long long lt = 0;
    size_t n = 0, dl;
    pid_t lp;
    int fd, r = 0;

    if (!text)
        return -ENOMEM;
    out = malloc(strlen(text) + PATH_MAX + 64);
    if (!out) {
        free(text);
        return -ENOMEM;
    }
    for (p = text; (p = marker_line(p, &lp, &lt, &d, &dl));) {
        if (lp == pid && lt != token)
            n += (size_t)sprintf(out + n, "%d %llx %.*s\n", (int)lp, lt, (int)dl, d);
    }
    if (dir)
        n += (size_t)sprintf(out + n, "%d %llx %s\n", (int)pid, token, dir);
    free(text);
    if (n == 0) {
        free(out);
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
    }
    if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int)sizeof(tmp)) {
        free(out);
        return -ENAMETOOLONG;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        free(out);
        return -errno;
    }
    if (write(fd, out, n) != (ssize_t)n)
        r = -EIO;
    close(fd);
    free(out);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        (void)unlink(tmp);
    return r;
}

static unsigned long long token_of(const struct backup_inst *in)
{
    return (unsigned long long)(uintptr_t)in;
}

/* Whether a newer instance of the listener took over: this one stores nothing more. */
static bool is_replaced(const struct backup_inst *in)
{
    char *text;
    bool newest;

    if (!in->marker[0])
        return false;
    text = marker_load(in->marker);
    newest = !text || marker_newest_is(text, in->pid, token_of(in));
    free(text);
    return !newest;
}

/* A name lost versions to retention: the quota's usage, the counters, an event. Under the
 * shared lock. */
static void on_pruned(void *ctx, const char *name, uint32_t versions, uint64_t bytes)
{
    struct backup_inst *in = ctx;

    in->sh->used -= bytes < in->sh->used ? bytes : in->sh->used;
    count(in, C_VERSIONS_PRUNED, versions);
    count(in, C_BYTES_PRUNED, bytes);
    core_svc_emit(in->emitter, "backup.pruned",
                  json_pack("{s:s, s:I, s:I}", "name", name, "versions", (json_int_t)versions,
                            "bytes", (json_int_t)bytes));
}

/*
 * Applies keep_versions and keep_days to the copies of name (NULL: of every name), one commit
 * at a time with the uploads of every instance on the directory. An instance replaced applies
 * nothing: its successor does, with its own rules. A failure leaves copies for the next time.
 */
static void retain(struct backup_inst *in, struct svc_backup_store *st, const char *name)
{
    if (!in->retain.keep_versions && !in->retain.keep_days)
        return;
    shared_lock(in, st);
    if (svc_backup_store_commit_lock(st, true) == 0) {
        if (!is_replaced(in))
            (void)svc_backup_retain_apply(st, name, &in->retain, (int64_t)time(NULL), on_pruned,
                                          in);
        (void)svc_backup_store_commit_lock(st, false);
    }
    shared_unlock(in);
}

/* Makes the complete upload durable and visible, appends STORED or ERR, and ends it. */
static int upload_commit(struct backup_sess *s, enum svc_backup_integrity integrity,
                         struct core_buf *out)
{
    struct backup_inst *in = s->inst;
    char e[SVC_BACKUP_NAME_ENC_MAX + 1], hex[SVC_BACKUP_SHA256_HEX + 1], stored[32] = "";
    uint8_t sha[EVP_MAX_MD_SIZE];
    unsigned sha_len = 0;
    uint32_t version = 0;
    uint64_t freed = 0;
    struct core_err err = {0};
    int r;

    if (EVP_DigestFinal_ex(s->md, sha, &sha_len) != 1 || sha_len != SVC_BACKUP_SHA256_LEN) {
        upload_discard(s);
        return -EIO;
    }
    svc_backup_sha256_to_hex(sha, hex);
    if (s->has_sha256 && memcmp(sha, s->sha256, SVC_BACKUP_SHA256_LEN) != 0) {
        char want[SVC_BACKUP_SHA256_HEX + 1];

        upload_discard(s);
        svc_backup_sha256_to_hex(s->sha256, want);
        return reply_err(s, out, SVC_BACKUP_E_CHECKSUM_MISMATCH,
                         "received content has sha256 %s, the header said %s; nothing kept", hex,
                         want);
    }
    r = svc_backup_store_tmp_sync(&s->tmp);
    if (r < 0) {
        upload_discard(s);
        return reply_err(s, out, errc_of(r), "fsync failed: %s; nothing kept", strerror(-r));
    }
    /* Version numbering and the move into place, one commit at a time in every process and
     * every instance on the directory. */
    shared_lock(in, s->st);
    r = svc_backup_store_commit_lock(s->st, true);
    if (r == 0 && is_replaced(in)) {
        (void)svc_backup_store_commit_lock(s->st, false);
        shared_unlock(in);
        upload_discard(s);
        return reply_err(s, out, SVC_BACKUP_E_BUSY,
                         "the listener's configuration changed during the upload; nothing "
                         "kept, send it again");
    }
    if (r == 0) {
        r = svc_backup_store_commit(s->st, &s->tmp, s->name, in->policy, true, sha, integrity,
                                    &version, &freed, stored, &err);
        (void)svc_backup_store_commit_lock(s->st, false);
    } else {
        core_err_set(&err, r, NULL, "cannot lock the directory: %s", strerror(-r));
    }
    if (r == 0) {
        /* The bytes stored and the reservation they had are swapped in one step: another
         * upload never sees them counted twice. */
        in->sh->used += s->received;
        in->sh->used -= freed < in->sh->used ? freed : in->sh->used;
        release_locked(s);
    }
    shared_unlock(in);
    if (r == 0 && s->tmp.has_replaced) {
        if (s->has_replaced) /* two commits in one callback: the earlier copy goes now */
            close(s->replaced_fd);
        s->has_replaced = true;
        s->replaced_fd = s->tmp.replaced_fd;
        s->tmp.has_replaced = false;
    }
    upload_discard(s);
    if (r < 0)
        return reply_err(s, out, errc_of(r), "%s; nothing kept", err.msg);
    count(in, C_STORED, 1);
    count(in, C_BYTES_STORED, s->received);
    if (integrity == SVC_BACKUP_INTEGRITY_NONE)
        count(in, C_STORED_UNVERIFIED, 1);
    report_stored(s, version, hex, integrity, stored);
    retain(in, s->st, s->name);
    return core_buf_printf(out, "STORED %s %" PRIu32 " %" PRIu64 " %s\n", enc(s->name, e), version,
                           s->received, hex) < 0
               ? -ENOMEM
               : 0;
}

/* A failed write while streaming: the ERR line, nothing kept. */
static int upload_write_failed(struct backup_sess *s, int r, struct core_buf *out)
{
    upload_discard(s);
    return reply_err(s, out, errc_of(r), "write failed after %" PRIu64 " bytes: %s; nothing kept",
                     s->received, strerror(-r));
}

/* The content is all there: the trailer is read next, or the upload is committed. */
static int upload_done(struct backup_sess *s, struct core_buf *out)
{
    int r;

    if (s->trailer) {
        s->state = ST_TRAILER;
        s->line_len = 0;
        return CORE_VERDICT_MORE;
    }
    s->state = ST_COMMAND;
    r = upload_commit(s, s->has_sha256 ? SVC_BACKUP_INTEGRITY_SHA256 : SVC_BACKUP_INTEGRITY_SIZE,
                      out);
    return r < 0 ? r : CORE_VERDICT_MORE;
}

static int on_put(struct backup_sess *s, const struct svc_backup_cmd *c, struct core_buf *out)
{
    int r;

    attempt_begin(s, c->name);
    if (s->inst->require_checksum && !c->has_sha256 && !c->sha256_follows)
        return reply_err(s, out, SVC_BACKUP_E_CHECKSUM_REQUIRED,
                         "this listener requires the sha256 in the header, or * and the "
                         "SHA256 line after the content") < 0
                   ? -ENOMEM
                   : CORE_VERDICT_MORE;
    s->has_sha256 = c->has_sha256;
    memcpy(s->sha256, c->sha256, sizeof(s->sha256));
    s->trailer = c->sha256_follows;
    s->expected = c->size;
    r = admit(s, c->size, c->size - c->offset, out);
    if (r == 0)
        r = upload_begin(s, c, out);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return CORE_VERDICT_MORE;
    if (core_buf_append(out, "OK\n", 3) < 0)
        return -ENOMEM;
    s->state = ST_UPLOAD;
    if (s->received == c->size)
        return upload_done(s, out);
    return CORE_VERDICT_MORE;
}

/* RESUME: the bytes held of a cut upload of that name, size (and checksum). */
static int on_resume(struct backup_sess *s, const struct svc_backup_cmd *c, struct core_buf *out)
{
    struct backup_inst *in = s->inst;
    char e[SVC_BACKUP_NAME_ENC_MAX + 1];
    struct svc_backup_partial p;
    uint64_t held = 0;
    int r = -ENOENT;

    if (in->resume_ttl_ms > 0) {
        shared_lock(in, s->st);
        expire_partials(in, s->st);
        r = svc_backup_store_partial_find(s->st, c->name, &p);
        shared_unlock(in);
    }
    if (r == -EBUSY) {
        r = reply_err(s, out, SVC_BACKUP_E_BUSY,
                      "%s is being uploaded by another client (or the cut upload is not over "
                      "yet); RESUME again later",
                      enc(c->name, e));
        return r < 0 ? r : CORE_VERDICT_MORE;
    }
    if (r == 0 && p.size == c->size &&
        (!p.has_sha256 || !c->has_sha256 ||
         memcmp(p.sha256, c->sha256, SVC_BACKUP_SHA256_LEN) == 0))
        held = p.held < c->size ? p.held : c->size;
    return core_buf_printf(out, "OK %" PRIu64 "\n", held) < 0 ? -ENOMEM : CORE_VERDICT_MORE;
}

/* Ends a restore: the connection is back to commands. */
static void restore_end(struct backup_sess *s)
{
    if (s->rfd >= 0)
        close(s->rfd);
    s->rfd = -1;
    free(s->rbuf);
    s->rbuf = NULL;
    s->state = ST_COMMAND;
}

/* Appends the next chunk of the content being restored; ends the restore after the last. */
static int restore_chunk(struct backup_sess *s, struct core_buf *out)
{
    size_t want =
        s->rsize - s->rsent < RESTORE_CHUNK ? (size_t)(s->rsize - s->rsent) : RESTORE_CHUNK;
    ssize_t n;

    do {
        n = pread(s->rfd, s->rbuf, want, (off_t)s->rsent);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) /* the copy shrank or cannot be read: the client sees a short restore */
        return -EIO;
    if (core_buf_append(out, s->rbuf, (size_t)n) < 0)
        return -ENOMEM;
    s->rsent += (uint64_t)n;
    count(s->inst, C_BYTES_RESTORED, (uint64_t)n);
    if (s->rsent == s->rsize)
        restore_end(s);
    return 0;
}

static int on_get(struct backup_sess *s, const struct svc_backup_cmd *c, struct core_buf *out)
{
    char e[SVC_BACKUP_NAME_ENC_MAX + 1], hex[SVC_BACKUP_SHA256_HEX + 1] = "-";
    struct svc_backup_entry ent;
    int fd, r;

    r = svc_backup_store_open_file(s->st, c->name, c->version, &fd, &ent);
    if (r == -ENOENT) {
        if (c->version)
            r = reply_err(s, out, SVC_BACKUP_E_NOT_FOUND, "no version %" PRIu32 " of %s",
                          c->version, enc(c->name, e));
        else
            r = reply_err(s, out, SVC_BACKUP_E_NOT_FOUND, "no file %s", enc(c->name, e));
        return r < 0 ? r : CORE_VERDICT_MORE;
    }
    if (r < 0) {
        r = reply_err(s, out, SVC_BACKUP_E_IO, "cannot open %s: %s", enc(c->name, e), strerror(-r));
        return r < 0 ? r : CORE_VERDICT_MORE;
    }
    s->rfd = fd;
    s->rsize = ent.size;
    s->rsent = 0;
    s->state = ST_RESTORE;
    s->rbuf = ent.size ? malloc(RESTORE_CHUNK) : NULL;
    if (ent.size && !s->rbuf) {
        restore_end(s);
        return -ENOMEM;
    }
    if (ent.has_sha256)
        svc_backup_sha256_to_hex(ent.sha256, hex);
    if (core_buf_printf(out, "OK %" PRIu64 " %s %" PRIu32 "\n", ent.size, hex, ent.version) < 0) {
        restore_end(s);
        return -ENOMEM;
    }
    count(s->inst, C_RESTORES, 1);
    if (ent.size == 0) {
        restore_end(s);
        return CORE_VERDICT_MORE;
    }
    /* The content follows through session_pull, as fast as the client takes it. */
    return CORE_VERDICT_PULL;
}

static int on_list(struct backup_sess *s, struct core_buf *out)
{
    struct svc_backup_entry *v = NULL;
    size_t n = 0;
    int r = svc_backup_store_list(s->st, &v, &n);

    if (r < 0) {
        r = reply_err(s, out, SVC_BACKUP_E_IO, "cannot list: %s", strerror(-r));
        return r < 0 ? r : CORE_VERDICT_MORE;
    }
    r = core_buf_printf(out, "OK %zu\n", n);
    for (size_t i = 0; i < n && r == 0; i++) {
        char e[SVC_BACKUP_NAME_ENC_MAX + 1], hex[SVC_BACKUP_SHA256_HEX + 1] = "-";

        if (v[i].has_sha256)
            svc_backup_sha256_to_hex(v[i].sha256, hex);
        r = core_buf_printf(out, "%s %" PRIu32 " %" PRIu64 " %s %s %s %s\n", enc(v[i].name, e),
                            v[i].version, v[i].size, hex, v[i].stored,
                            v[i].integrity == SVC_BACKUP_INTEGRITY_NONE ? "unverified" : "verified",
                            v[i].is_current ? "current" : "old");
    }
    if (r == 0)
        r = core_buf_append(out, "END\n", 4);
    free(v);
    return r < 0 ? -ENOMEM : CORE_VERDICT_MORE;
}

static bool is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

/* One complete command line. */
static int on_line(struct backup_sess *s, const char *line, size_t n, struct core_buf *out)
{
    struct svc_backup_cmd c;
    struct core_err err = {0};
    enum svc_backup_errc code = SVC_BACKUP_E_PROTOCOL;
    int r;

    if (is_blank(line, n))
        return CORE_VERDICT_MORE;
    r = svc_backup_parse_line(line, n, &c, &code, &err);
    if (r < 0) {
        r = reply_err(s, out, code, "%s", err.msg);
        if (r < 0)
            return r;
        return code == SVC_BACKUP_E_PROTOCOL ? CORE_VERDICT_CLOSE : CORE_VERDICT_MORE;
    }
    switch (c.verb) {
    case SVC_BACKUP_PUT:
        return on_put(s, &c, out);
    case SVC_BACKUP_GET:
        return on_get(s, &c, out);
    case SVC_BACKUP_LIST:
        return on_list(s, out);
    case SVC_BACKUP_QUIT:
        return core_buf_append(out, "BYE\n", 4) < 0 ? -ENOMEM : CORE_VERDICT_CLOSE;
    case SVC_BACKUP_RESUME:
        return on_resume(s, &c, out);
    case SVC_BACKUP_VERB_COUNT:
        break;
    }
    return CORE_VERDICT_MORE;
}

/* Reads command-line bytes; *used is how many it took. */
static int feed_line(struct backup_sess *s, const uint8_t *in, size_t len, size_t *used,
                     struct core_buf *out)
{
    const uint8_t *nl = memchr(in, '\n', len);
    size_t take = nl ? (size_t)(nl - in) : len;
    int r;

    *used = nl ? take + 1 : take;
    if (s->line_len + take > SVC_BACKUP_LINE_MAX) {
        r = reply_err(s, out, SVC_BACKUP_E_PROTOCOL, "command line longer than %d bytes",
                      SVC_BACKUP_LINE_MAX);
        return r < 0 ? r : CORE_VERDICT_CLOSE;
    }
    memcpy(s->line + s->line_len, in, take);
    s->line_len += take;
    if (!nl)
        return CORE_VERDICT_MORE;
    s->line[s->line_len] = '\0';
    r = on_line(s, s->line, s->line_len, out);
    s->line_len = 0;
    return r;
}

static int feed_upload(struct backup_sess *s, const uint8_t *in, size_t len, size_t *used,
                       struct core_buf *out)
{
    uint64_t left = s->expected - s->received;
    size_t n = left < len ? (size_t)left : len;
    int r;

    *used = n;
    if (is_too_slow(s, n))
        return upload_too_slow(s, out);
    r = hold_more(s, n, out);
    if (r == -1) {
        s->discard_left = left - n;
        s->state = s->discard_left ? ST_DISCARD : ST_COMMAND;
        return CORE_VERDICT_MORE;
    }
    if (r < 0)
        return r;
    r = svc_backup_store_tmp_write(&s->tmp, in, n);
    if (r < 0) {
        s->discard_left = left - n;
        s->state = s->discard_left ? ST_DISCARD : ST_COMMAND;
        r = upload_write_failed(s, r, out);
        return r < 0 ? r : CORE_VERDICT_MORE;
    }
    if (EVP_DigestUpdate(s->md, in, n) != 1)
        return -EIO;
    s->received += n;
    if (s->received < s->expected)
        return CORE_VERDICT_MORE;
    return upload_done(s, out);
}

/* The "SHA256 <hex>" line after the content of a PUT ... *: the upload is committed when it
 * matches what was received. */
static int feed_trailer(struct backup_sess *s, const uint8_t *in, size_t len, size_t *used,
                        struct core_buf *out)
{
    const uint8_t *nl = memchr(in, '\n', len);
    size_t take = nl ? (size_t)(nl - in) : len;
    struct core_err err = {0};
    int r;

    *used = nl ? take + 1 : take;
    if (s->line_len + take > SVC_BACKUP_LINE_MAX) {
        core_err_set(&err, -EINVAL, NULL, "the line after the content is longer than %d bytes",
                     SVC_BACKUP_LINE_MAX);
    } else {
        memcpy(s->line + s->line_len, in, take);
        s->line_len += take;
        if (!nl)
            return CORE_VERDICT_MORE;
        s->line[s->line_len] = '\0';
        (void)svc_backup_parse_trailer(s->line, s->line_len, s->sha256, &err);
    }
    s->line_len = 0;
    if (err.msg[0]) {
        upload_discard(s);
        s->state = ST_CLOSED;
        r = reply_err(s, out, SVC_BACKUP_E_PROTOCOL, "%s; nothing kept", err.msg);
        return r < 0 ? r : CORE_VERDICT_CLOSE;
    }
    s->has_sha256 = true;
    s->trailer = false;
    s->state = ST_COMMAND;
    r = upload_commit(s, SVC_BACKUP_INTEGRITY_SHA256, out);
    return r < 0 ? r : CORE_VERDICT_MORE;
}

/* The lecture's flow: content until the client closes, limits enforced as it comes. */
static int feed_bare(struct backup_sess *s, const uint8_t *in, size_t len, struct core_buf *out)
{
    struct backup_inst *bi = s->inst;
    enum svc_backup_errc code = SVC_BACKUP_E_COUNT;
    int r;

    if (is_too_slow(s, len))
        return upload_too_slow(s, out);
    shared_lock(bi, s->st);
    if (len > bi->max_file_size - s->received)
        code = SVC_BACKUP_E_TOO_LARGE;
    else if (!quota_fits(bi, len) && (sweep(bi, s->st) == 0 || !quota_fits(bi, len)))
        code = SVC_BACKUP_E_QUOTA;
    else {
        bi->sh->slot[s->slot].reserved += len;
        bi->sh->reserved += len;
    }
    shared_unlock(bi);
    if (code != SVC_BACKUP_E_COUNT) {
        upload_discard(s);
        s->state = ST_CLOSED;
        if (code == SVC_BACKUP_E_TOO_LARGE)
            r = reply_err(s, out, code, "over max_file_size %" PRIu64 "; nothing kept",
                          bi->max_file_size);
        else
            r = reply_err(s, out, code, "over quota_bytes %" PRIu64 "; nothing kept", bi->quota);
        return r < 0 ? r : CORE_VERDICT_CLOSE;
    }
    r = svc_backup_store_tmp_write(&s->tmp, in, len);
    if (r < 0) {
        s->state = ST_CLOSED;
        r = upload_write_failed(s, r, out);
        return r < 0 ? r : CORE_VERDICT_CLOSE;
    }
    if (EVP_DigestUpdate(s->md, in, len) != 1)
        return -EIO;
    s->received += len;
    return CORE_VERDICT_MORE;
}

/* The lecture's first message: a bare file name. */
static int on_bare_name(struct backup_sess *s, const uint8_t *p, size_t n, struct core_buf *out)
{
    struct core_err err = {0};
    int r;

    s->state = ST_CLOSED;
    if (svc_backup_name_check((const char *)p, n, &err) < 0) {
        r = reply_err(s, out, SVC_BACKUP_E_BAD_NAME, "%s", err.msg);
        return r < 0 ? r : CORE_VERDICT_CLOSE;
    }
    memcpy(s->name, p, n);
    s->name[n] = '\0';
    s->attempt = true;
    if (s->inst->require_checksum) {
        r = reply_err(s, out, SVC_BACKUP_E_CHECKSUM_REQUIRED,
                      "this listener requires PUT <name> <size> <sha256>");
        return r < 0 ? r : CORE_VERDICT_CLOSE;
    }
    r = admit(s, 0, 0, out);
    if (r == 0)
        r = upload_begin(s, NULL, out);
    if (r < 0)
        return r == -ENOMEM ? r : CORE_VERDICT_CLOSE;
    if (core_buf_append(out, "ACK\n", 4) < 0)
        return -ENOMEM;
    s->state = ST_BARE;
    return CORE_VERDICT_MORE;
}

static int backup_session_open(void *inst, void *sess, struct core_buf *out)
{
    struct backup_sess *s = sess;
    struct backup_inst *in = inst;
    struct core_err err = {0};
    int r;

    s->inst = in;
    s->state = ST_FIRST;
    s->tmp.fd = -1;
    s->rfd = -1;
    s->slot = -1;
    s->pid = getpid();
    s->st = in->store;
    if (s->pid == in->pid)
        return CORE_VERDICT_MORE;
    /* A child forked by the process model: the daemon's descriptors are closed here, so the
     * directory is opened again, to write beside the daemon's store under its lock. */
    if (proc_gone(s->pid, &s->start) != 0)
        s->start = 0;
    r = svc_backup_store_attach(in->dir, &s->own_st, &err);
    if (r < 0) {
        s->state = ST_CLOSED;
        r = reply_err(s, out, SVC_BACKUP_E_IO, "%s", err.msg);
        return r < 0 ? r : CORE_VERDICT_CLOSE;
    }
    s->st = s->own_st;
    return CORE_VERDICT_MORE;
}

/* Holds input that arrived while a restore is sent, to be fed once its content is out. */
static int hold(struct backup_sess *s, const uint8_t *in, size_t len)
{
    uint8_t *p;

    if (len > PENDING_MAX - s->pend_len)
        return -ENOBUFS;
    p = realloc(s->pend, s->pend_len + len);
    if (!p)
        return -ENOMEM;
    memcpy(p + s->pend_len, in, len);
    s->pend = p;
    s->pend_len += len;
    return 0;
}

/* Runs input through the session's states until it is used up or a verdict other than MORE;
 * what is left when a restore starts is held until its content is sent. */
static int feed_all(struct backup_sess *s, const uint8_t *in, size_t len, struct core_buf *out)
{
    int r = CORE_VERDICT_MORE;

    while (len > 0 && r == CORE_VERDICT_MORE) {
        size_t used = len;

        switch (s->state) {
        case ST_COMMAND:
            r = feed_line(s, in, len, &used, out);
            break;
        case ST_UPLOAD:
            r = feed_upload(s, in, len, &used, out);
            break;
        case ST_TRAILER:
            r = feed_trailer(s, in, len, &used, out);
            break;
        case ST_BARE:
            r = feed_bare(s, in, len, out);
            break;
        case ST_DISCARD:
            used = s->discard_left < len ? (size_t)s->discard_left : len;
            s->discard_left -= used;
            if (s->discard_left == 0)
                s->state = ST_COMMAND;
            break;
        case ST_RESTORE:
            used = 0;
            r = CORE_VERDICT_PULL;
            break;
        case ST_FIRST:
        case ST_CLOSED:
            return CORE_VERDICT_CLOSE;
        }
        in += used;
        len -= used;
    }
    if (r == CORE_VERDICT_PULL && len > 0) {
        int h = hold(s, in, len);

        if (h < 0)
            return h;
    }
    return r;
}

/* Closes the copy the last commit replaced (see has_replaced): its blocks are freed now, once
 * the answer that followed the commit was handed to the runner. */
static void replaced_close(struct backup_sess *s)
{
    if (s->has_replaced)
        close(s->replaced_fd);
    s->has_replaced = false;
}

static int backup_session_feed(void *sess, const uint8_t *in, size_t len, struct core_buf *out)
{
    struct backup_sess *s = sess;

    replaced_close(s);
    if (s->state == ST_FIRST) {
        size_t name_len = 0;

        if (svc_backup_classify_first(in, len, &name_len) == SVC_BACKUP_FIRST_BARE)
            return on_bare_name(s, in, name_len, out);
        s->state = ST_COMMAND;
    }
    return feed_all(s, in, len, out);
}

/* The next part of a restore's content; once it is all out, the commands that followed. */
static int backup_session_pull(void *sess, struct core_buf *out)
{
    struct backup_sess *s = sess;
    uint8_t *p;
    size_t n;
    int r;

    replaced_close(s);
    if (s->state != ST_RESTORE)
        return CORE_VERDICT_MORE;
    r = restore_chunk(s, out);
    if (r < 0)
        return r;
    if (s->state == ST_RESTORE)
        return CORE_VERDICT_PULL;
    p = s->pend;
    n = s->pend_len;
    s->pend = NULL;
    s->pend_len = 0;
    r = n ? feed_all(s, p, n, out) : CORE_VERDICT_MORE;
    free(p);
    return r;
}

static int backup_session_eof(void *sess, struct core_buf *out)
{
    struct backup_sess *s = sess;
    int r = 0;

    replaced_close(s);
    switch (s->state) {
    case ST_BARE:
        s->state = ST_CLOSED;
        r = upload_commit(s, SVC_BACKUP_INTEGRITY_NONE, out);
        break;
    case ST_UPLOAD:
    case ST_TRAILER: {
        bool kept = s->tmp.part[0] != '\0';

        upload_keep(s);
        if (s->state == ST_TRAILER)
            r = reply_err(s, out, SVC_BACKUP_E_SIZE_MISMATCH,
                          "the client closed before the SHA256 line%s",
                          kept ? "; the content is kept to be resumed" : "; nothing kept");
        else
            r = reply_err(s, out, SVC_BACKUP_E_SIZE_MISMATCH,
                          "the client closed after %" PRIu64 " of %" PRIu64 " bytes%s", s->received,
                          s->expected, kept ? "; they are kept to be resumed" : "; nothing kept");
        s->state = ST_CLOSED;
        break;
    }
    default:
        break;
    }
    s->state = ST_CLOSED;
    return r < 0 ? r : CORE_VERDICT_CLOSE;
}

static void backup_session_close(void *sess, bool completed)
{
    struct backup_sess *s = sess;

    (void)completed;
    replaced_close(s);
    if (!s->inst)
        return;
    if (s->tmp.fd >= 0) { /* cut mid-upload: a partial upload is kept, else nothing */
        bool kept = s->tmp.part[0] != '\0';
        char detail[128];

        count(s->inst, C_CUT, 1);
        upload_keep(s);
        if (s->expected)
            snprintf(detail, sizeof(detail),
                     "the connection ended after %" PRIu64 " of %" PRIu64 " bytes; %s", s->received,
                     s->expected, kept ? "they are kept to be resumed" : "nothing kept");
        else
            snprintf(detail, sizeof(detail),
                     "the connection ended after %" PRIu64 " bytes; nothing kept", s->received);
        report_failed(s, "cut", detail);
    }
    report_failed(s, "io", "the upload failed; nothing kept");
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    if (s->rfd >= 0)
        close(s->rfd);
    s->rfd = -1;
    free(s->rbuf);
    s->rbuf = NULL;
    free(s->pend);
    s->pend = NULL;
    s->pend_len = 0;
    svc_backup_store_free(s->own_st);
    s->own_st = NULL;
    s->st = NULL;
    s->state = ST_CLOSED;
}

/* Options. */

static const char *const on_exists_choices[] = {"version", "replace", "reject", NULL};

static const struct core_option backup_options[] = {
    {.name = "directory",
     .type = CORE_OPTION_PATH,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .help = "where the files are kept (made, mode 0700); default: <state dir>/backup/<listener "
             "id>"},
    {.name = "on_exists",
     .type = CORE_OPTION_STRING,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_string = "version",
     .choices = on_exists_choices,
     .help = "an upload of a stored name: version keeps the older copy as a version, replace "
             "drops it, reject refuses"},
    {.name = "max_file_size",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_integer = (int64_t)DEFAULT_MAX_FILE_SIZE,
     .minimum = 1,
     .maximum = CORE_OPTION_NO_MAXIMUM,
     .unit = "bytes",
     .help = "the largest file accepted"},
    {.name = "quota_bytes",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_integer = (int64_t)DEFAULT_QUOTA,
     .minimum = 0,
     .maximum = CORE_OPTION_NO_MAXIMUM,
     .unit = "bytes",
     .help = "the bytes of every copy kept, versions included; 0: unlimited"},
    {.name = "require_checksum",
     .type = CORE_OPTION_BOOLEAN,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_boolean = false,
     .help = "refuse uploads that carry no SHA-256"},
    {.name = "min_rate_bytes_per_s",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_integer = DEFAULT_MIN_RATE,
     .minimum = 0,
     .maximum = (int64_t)1 << 40,
     .unit = "bytes/s",
     .help = "an upload slower than this over a window is cut; 0: never"},
    {.name = "min_rate_window_s",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_integer = DEFAULT_MIN_RATE_WINDOW,
     .minimum = 1,
     .maximum = MIN_RATE_WINDOW_MAX,
     .unit = "s",
     .help = "the window the upload rate is measured over"},
    {.name = "keep_versions",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_integer = 0,
     .minimum = 0,
     .maximum = SVC_BACKUP_RETAIN_VERSIONS_MAX,
     .unit = "versions",
     .help = "copies kept of each name, the current one counted; older ones are removed; 0: all"},
    {.name = "keep_days",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_integer = 0,
     .minimum = 0,
     .maximum = SVC_BACKUP_RETAIN_DAYS_MAX,
     .unit = "days",
     .help = "an older version replaced more than this long ago is removed (never the current "
             "copy); 0: never"},
    {.name = "resume_ttl_ms",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .live = true,
     .default_integer = DEFAULT_RESUME_TTL_MS,
     .minimum = 0,
     .maximum = RESUME_TTL_MAX_MS,
     .unit = "ms",
     .help = "how long what a cut upload received is kept for RESUME; 0: keep nothing"},
};

/* ---- where a directory may be ---- */

/*
 * given made absolute (relative to the working directory) and free of links, "." and "..":
 * the longest part that exists through realpath(), the rest (which does not exist, so holds
 * no link) appended name by name.
 * Returns 0, -ENOTDIR when a part that exists is not a directory, or another negative errno.
 */
static int path_resolve(const char *given, char ret[PATH_MAX])
{
    char head[PATH_MAX], res[PATH_MAX], abs[PATH_MAX];
    const char *tail = NULL, *path = given;
    size_t len;

    if (given[0] != '/') { /* the state directory may be given relative to where we run */
        if (!getcwd(res, sizeof(res)))
            return -errno;
        if (snprintf(abs, sizeof(abs), "%s/%s", res, given) >= (int)sizeof(abs))
            return -ENAMETOOLONG;
        path = abs;
    }
    if (strlen(path) >= sizeof(head))
        return -ENAMETOOLONG;
    memcpy(head, path, strlen(path) + 1);
    for (;;) {
        char *slash;

        struct stat st;

        if (realpath(head, res))
            break;
        if (errno != ENOENT)
            return -errno;
        if (lstat(head, &st) == 0) /* a link that leads nowhere: no telling where it would */
            return -ENOENT;
        slash = strrchr(head, '/');
        if (!slash || slash == head) { /* "/" always exists */
            snprintf(res, sizeof(res), "/");
            tail = path + 1;
            break;
        }
        *slash = '\0';
        tail = path + (slash - head) + 1;
    }
    len = strlen(res);
    while (tail && *tail) {
        size_t n = strcspn(tail, "/");

        if (n == 0 || (n == 1 && tail[0] == '.')) {
            /* nothing */
        } else if (n == 2 && tail[0] == '.' && tail[1] == '.') {
            while (len > 1 && res[len - 1] != '/')
                len--;
            if (len > 1)
                len--;
            res[len] = '\0';
        } else {
            if (len + 1 + n >= sizeof(res))
                return -ENAMETOOLONG;
            if (len > 1)
                res[len++] = '/';
            memcpy(res + len, tail, n);
            len += n;
            res[len] = '\0';
        }
        tail += n;
        if (*tail == '/')
            tail++;
    }
    memcpy(ret, res, len + 1);
    return 0;
}

/* Whether resolved path is the file (dev, ino) or lies beneath it, its names or its aliases
 * (a bind mount of it, met on the way up, counts). */
static bool is_at_or_beneath(const char *path, dev_t dev, ino_t ino)
{
    char buf[PATH_MAX];
    struct stat st;

    snprintf(buf, sizeof(buf), "%s", path);
    for (;;) {
        char *slash;

        if (stat(buf, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
            return true;
        slash = strrchr(buf, '/');
        if (!slash || (slash == buf && buf[1] == '\0'))
            return false;
        slash[slash == buf ? 1 : 0] = '\0';
    }
}

/* Whether resolved path lies beneath resolved dir, by name. */
static bool is_named_beneath(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    if (strcmp(dir, "/") == 0)
        return path[1] != '\0';
    return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/*
 * The rule that keeps the data plane out of the control plane: an explicit directory d (as
 * given) may not be, hold or lie inside the state directory or another protected path, judged
 * on resolved paths and, for what exists, on device and inode (a bind mount is no way round).
 * The one place inside the state directory a backup directory may be is beneath its backup/
 * subdirectory, where the default directories live.
 */
static int check_confined(const char *d, const struct core_svc_env *env, struct core_err *err)
{
    const char *const *prot = env ? env->protected_paths : NULL;
    char dir[PATH_MAX], state[PATH_MAX] = "", sub[PATH_MAX + 8] = "", pr[PATH_MAX];
    struct stat dst;
    bool dir_exists;
    int r = path_resolve(d, dir);

    if (r == -ENOTDIR)
        return core_err_set(err, -EINVAL, "options.directory",
                            "options.directory: a part of %s is not a directory", d);
    if (r < 0)
        return core_err_set(err, -EINVAL, "options.directory",
                            "options.directory: %s cannot be resolved: %s", d, strerror(-r));
    dir_exists = stat(dir, &dst) == 0;
    if (env && env->state_dir && path_resolve(env->state_dir, state) == 0)
        snprintf(sub, sizeof(sub), "%s/backup", strcmp(state, "/") == 0 ? "" : state);
    /* The state directory first, then the protected paths. */
    for (size_t i = 0;; i++) {
        const char *p = i == 0 ? (state[0] ? env->state_dir : NULL) : prot ? prot[i - 1] : NULL;
        bool is_state = i == 0, inside, holds;
        struct stat pst;

        if (i > 0 && !p)
            break;
        if (!p || path_resolve(p, pr) < 0)
            continue;
        /* Beneath <state>/backup/: allowed, as far as the state directory and what holds it
         * are concerned. */
        if (is_named_beneath(dir, sub) && (strcmp(pr, state) == 0 || is_named_beneath(state, pr)))
            continue;
        if (stat(pr, &pst) == 0)
            inside = is_at_or_beneath(dir, pst.st_dev, pst.st_ino);
        else
            inside = strcmp(dir, pr) == 0 || is_named_beneath(dir, pr);
        holds =
            dir_exists ? is_at_or_beneath(pr, dst.st_dev, dst.st_ino) : is_named_beneath(pr, dir);
        if (inside || holds)
            return core_err_set(
                err, -EINVAL, "options.directory",
                "options.directory: %s (%s) %s the daemon's own %s %s; a backup directory "
                "must lie outside it%s",
                d, dir, inside ? "is or lies inside" : "holds",
                is_state ? "state directory" : "file or directory", pr,
                is_state ? " or beneath its backup/ subdirectory" : "");
    }
    return 0;
}

/* Whether directory d (resolved) can hold files now: it is a directory, or can be made in
 * the nearest part that exists, on a file system that stores files, and can be written. */
static int check_usable(const char *d, struct core_err *err)
{
    char dir[PATH_MAX], near[PATH_MAX];
    struct statfs fs;
    struct stat st;
    int r = path_resolve(d, dir);

    if (r < 0)
        return check_confined(d, NULL, err); /* says why */
    for (const char *c = dir + 1; *c;) {
        size_t n = strcspn(c, "/");

        if (n > NAME_MAX)
            return core_err_set(err, -EINVAL, "options.directory",
                                "options.directory: a name in it is longer than %d bytes: %s",
                                NAME_MAX, d);
        c += n + (c[n] == '/');
    }
    snprintf(near, sizeof(near), "%s", dir);
    while (stat(near, &st) < 0) {
        char *slash = strrchr(near, '/');

        if (errno != ENOENT || !slash)
            return core_err_set(err, -EINVAL, "options.directory", "options.directory: %s: %s", d,
                                strerror(errno));
        slash[slash == near ? 1 : 0] = '\0';
    }
    if (!S_ISDIR(st.st_mode))
        return core_err_set(err, -EINVAL, "options.directory",
                            "options.directory: %s is not a directory", near);
    if (statfs(near, &fs) == 0 &&
        (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC ||
         fs.f_type == CGROUP_SUPER_MAGIC || fs.f_type == CGROUP2_SUPER_MAGIC ||
         fs.f_type == DEBUGFS_MAGIC || fs.f_type == SECURITYFS_MAGIC))
        return core_err_set(err, -EINVAL, "options.directory",
                            "options.directory: %s lies on a kernel file system (%s), which "
                            "stores no files",
                            d, near);
    if (faccessat(AT_FDCWD, near, W_OK | X_OK, AT_EACCESS) < 0)
        return core_err_set(err, -EINVAL, "options.directory",
                            "options.directory: %s cannot be %s: %s: %s", d,
                            strcmp(near, dir) == 0 ? "written" : "created", near, strerror(errno));
    return 0;
}

/*
 * Whether directory d is free for the listener of env: no other listener's store holds it (as
 * instance_new would find). Its own running instance may: the change then goes on beside it.
 * Returns 0 or -EBUSY. Called with the registry's changes serialised, like instance_new.
 */
static int check_free(const char *d, const struct core_svc_env *env, struct core_err *err)
{
    char marker[PATH_MAX];
    bool ours = false;
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

    if (fd < 0)
        return 0; /* not there yet: made by the start */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (env && env->state_dir && env->listener_id &&
            snprintf(marker, sizeof(marker), "%s/.backup-%s.dir", env->state_dir,
                     env->listener_id) < (int)sizeof(marker)) {
            char *text = marker_load(marker);

            ours = text && marker_has_dir(text, getpid(), 0, d);
            free(text);
        }
        if (!ours)
            r = core_err_set(err, -EBUSY, "options.directory",
                             "options.directory: %s is in use by another backup listener", d);
    }
    close(fd); /* and with it the lock, if it was taken */
    return r;
}

/* The service's env_check (core/service.h): only an explicit directory is judged; the default
 * one is the daemon's own choice. */
static int backup_env_check(const json_t *opts, const struct core_svc_env *env, bool usable,
                            struct core_err *err)
{
    const char *d = json_string_value(json_object_get(opts, "directory"));
    int r;

    if (!d)
        return 0;
    r = check_confined(d, env, err);
    if (r == 0 && usable)
        r = check_usable(d, err);
    if (r == 0 && usable)
        r = check_free(d, env, err);
    return r;
}

/* The listener's directory: options.directory, else <state_dir>/backup/<listener_id>. */
static int resolve_dir(const json_t *opts, const struct core_svc_env *env, char *buf, size_t cap,
                       struct core_err *err)
{
    const char *d = json_string_value(json_object_get(opts, "directory"));
    int n;

    if (d)
        n = snprintf(buf, cap, "%s", d);
    else if (env && env->state_dir && env->listener_id)
        n = snprintf(buf, cap, "%s/backup/%s", env->state_dir, env->listener_id);
    else
        return core_err_set(err, -EINVAL, "options.directory",
                            "options.directory: needed when there is no state directory");
    if (n < 0 || (size_t)n >= cap)
        return core_err_set(err, -ENAMETOOLONG, "options.directory",
                            "options.directory: path too long");
    return 0;
}

/* The directory a running listener holds, resolved (core_service.claim). */
static int backup_claim(const json_t *opts, const struct core_svc_env *env, char *buf, size_t len)
{
    char given[PATH_MAX], resolved[PATH_MAX];
    int r = resolve_dir(opts, env, given, sizeof(given), NULL);

    if (r == 0)
        r = path_resolve(given, resolved);
    if (r == 0 && (size_t)snprintf(buf, len, "%s", resolved) >= len)
        r = -ENAMETOOLONG;
    return r;
}

static uint64_t opt_u64(const json_t *opts, const char *key, uint64_t def)
{
    const json_t *v = json_object_get(opts, key);

    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v) : def;
}

static void backup_instance_free(void *inst)
{
    struct backup_inst *in = inst;

    if (!in)
        return;
    if (in->marker[0] && in->pid == getpid()) {
        char *text = marker_load(in->marker);

        /* The directory stays while another instance of the listener uses it. */
        if (text && marker_has_dir(text, in->pid, token_of(in), in->dir)) {
            svc_backup_store_free(in->store);
            in->store = NULL;
        }
        free(text);
        (void)marker_update(in->marker, in->pid, token_of(in), NULL);
    }
    svc_backup_store_free_unused(in->store);
    if (in->sh) {
        pthread_mutex_destroy(&in->sh->lock);
        munmap(in->sh, sizeof(*in->sh));
    }
    EVP_MD_free(in->sha256);
    free(in);
}

/* The shared state, in memory the process model's children inherit (see struct
 * backup_shared). Returns 0 or a negative errno. */
static int shared_new(struct backup_inst *in)
{
    pthread_mutexattr_t a;
    void *m;
    int r;

    m = mmap(NULL, sizeof(*in->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -errno;
    r = -pthread_mutexattr_init(&a);
    if (r == 0) {
        r = -pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        if (r == 0)
            r = -pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        if (r == 0)
            r = -pthread_mutex_init(&((struct backup_shared *)m)->lock, &a);
        pthread_mutexattr_destroy(&a);
    }
    if (r < 0) {
        munmap(m, sizeof(*in->sh));
        return r;
    }
    in->sh = m;
    return 0;
}

static int backup_instance_new(const json_t *opts, enum core_transport t,
                               const struct core_svc_env *env, void **ret_inst,
                               struct core_err *err)
{
    const char *policy = json_string_value(json_object_get(opts, "on_exists"));
    struct backup_inst *in;
    char dir[PATH_MAX];
    int r;

    (void)t;
    r = backup_env_check(opts, env, false, err);
    if (r < 0)
        return r;
    r = resolve_dir(opts, env, dir, sizeof(dir), err);
    if (r < 0)
        return r;
    in = calloc(1, sizeof(*in));
    if (!in)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    r = shared_new(in);
    if (r < 0) {
        core_err_set(err, r, NULL, "cannot map the shared state: %s", strerror(-r));
        goto out_free;
    }
    /* Fetched here, before any fork: a child never looks the digest up itself. */
    in->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!in->sha256) {
        r = core_err_set(err, -ENOMEM, NULL, "cannot load SHA-256");
        goto out_free;
    }
    snprintf(in->dir, sizeof(in->dir), "%s", dir);
    in->pid = getpid();
    r = policy ? svc_backup_policy_from_name(policy) : SVC_BACKUP_POLICY_VERSION;
    in->policy = r < 0 ? SVC_BACKUP_POLICY_VERSION : (enum svc_backup_policy)r;
    in->max_file_size = opt_u64(opts, "max_file_size", DEFAULT_MAX_FILE_SIZE);
    in->quota = opt_u64(opts, "quota_bytes", DEFAULT_QUOTA);
    in->require_checksum = json_is_true(json_object_get(opts, "require_checksum"));
    in->min_rate = opt_u64(opts, "min_rate_bytes_per_s", DEFAULT_MIN_RATE);
    in->rate_window_ms =
        (int64_t)opt_u64(opts, "min_rate_window_s", DEFAULT_MIN_RATE_WINDOW) * 1000;
    in->retain.keep_versions = (uint32_t)opt_u64(opts, "keep_versions", 0);
    in->retain.keep_days = (uint32_t)opt_u64(opts, "keep_days", 0);
    in->resume_ttl_ms = (int64_t)opt_u64(opts, "resume_ttl_ms", DEFAULT_RESUME_TTL_MS);
    in->metrics = env ? env->metrics : NULL;
    in->emitter = env ? env->emitter : NULL;
    if (!env || !env->state_dir || !env->listener_id ||
        snprintf(in->marker, sizeof(in->marker), "%s/.backup-%s.dir", env->state_dir,
                 env->listener_id) >= (int)sizeof(in->marker))
        in->marker[0] = '\0';
    r = svc_backup_store_open(dir, true, &in->store, err);
    if (r == -EBUSY && in->marker[0]) {
        /* Held by the instance this one replaces (options changed while it runs)? Then
         * beside it: it stores nothing more once this one is listed as the newest. */
        char *text = marker_load(in->marker);

        if (text && marker_has_dir(text, in->pid, token_of(in), dir)) {
            core_err_clear(err);
            r = svc_backup_store_open_beside(dir, &in->store, err);
        }
        free(text);
    }
    if (r < 0) {
        in->marker[0] = '\0';
        goto out_free;
    }
    /* Partial uploads kept longer than resume_ttl_ms go; the rest count as stored. */
    expire_partials(in, in->store);
    r = svc_backup_store_usage(in->store, &in->sh->used);
    if (r == 0) {
        uint64_t part = 0;

        r = svc_backup_store_partial_bytes(in->store, &part);
        in->sh->used += part;
    }
    if (r < 0) {
        core_err_set(err, r, NULL, "cannot read %s: %s", dir, strerror(-r));
        in->marker[0] = '\0';
        goto out_free;
    }
    if (in->marker[0]) {
        /* Listed under the commit lock: a commit of the instance replaced is before or
         * after, never beside this one's. */
        r = svc_backup_store_commit_lock(in->store, true);
        if (r == 0) {
            r = marker_update(in->marker, in->pid, token_of(in), in->dir);
            (void)svc_backup_store_commit_lock(in->store, false);
        }
        if (r < 0) {
            core_err_set(err, r, NULL, "cannot write %s: %s", in->marker, strerror(-r));
            in->marker[0] = '\0';
            goto out_free;
        }
    }
    /* After the listing in the marker: a commit of the instance replaced comes before this,
     * or finds itself replaced. */
    retain(in, in->store, NULL);
    *ret_inst = in;
    return 0;

out_free:
    backup_instance_free(in);
    return r;
}

/* The REST API's view. */

static json_t *copy_json(const struct svc_backup_entry *e)
{
    char hex[SVC_BACKUP_SHA256_HEX + 1];

    if (e->has_sha256)
        svc_backup_sha256_to_hex(e->sha256, hex);
    return json_pack("{s:I, s:I, s:o, s:s, s:b, s:s}", "version", (json_int_t)e->version, "size",
                     (json_int_t)e->size, "sha256", e->has_sha256 ? json_string(hex) : json_null(),
                     "stored", e->stored, "verified", e->integrity != SVC_BACKUP_INTEGRITY_NONE,
                     "integrity", svc_backup_integrity_name(e->integrity));
}

static int backup_files_list(const json_t *opts, const struct core_svc_env *env, json_t **ret,
                             struct core_err *err)
{
    static const char *const fields[] = {"version", "size",     "sha256",
                                         "stored",  "verified", "integrity"};
    struct svc_backup_store *st = NULL;
    struct svc_backup_entry *v = NULL;
    char dir[PATH_MAX];
    json_t *arr = json_array(), *file = NULL, *versions = NULL;
    size_t n = 0;
    int r;

    if (!arr)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    r = resolve_dir(opts, env, dir, sizeof(dir), err);
    if (r < 0)
        goto out;
    r = svc_backup_store_open(dir, false, &st, err);
    if (r == -ENOENT) { /* never started: nothing stored yet */
        core_err_clear(err);
        *ret = arr;
        return 0;
    }
    if (r < 0)
        goto out;
    r = svc_backup_store_list(st, &v, &n);
    if (r < 0) {
        core_err_set(err, r, NULL, "cannot list %s: %s", dir, strerror(-r));
        goto out;
    }
    r = -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *c;

        if (i == 0 || strcmp(v[i].name, v[i - 1].name) != 0) {
            file = json_pack("{s:s}", "name", v[i].name);
            versions = json_array();
            if (!file || !versions || json_object_set_new(file, "versions", versions) < 0 ||
                json_array_append_new(arr, file) < 0) {
                json_decref(file);
                goto out_nomem;
            }
            for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
                if (json_object_set_new(file, fields[k], json_null()) < 0)
                    goto out_nomem;
            }
        }
        c = copy_json(&v[i]);
        if (!c)
            goto out_nomem;
        if (v[i].is_current) {
            if (json_object_update(file, c) < 0) {
                json_decref(c);
                goto out_nomem;
            }
            json_decref(c);
        } else if (json_array_append_new(versions, c) < 0) {
            goto out_nomem;
        }
    }
    free(v);
    svc_backup_store_free(st);
    *ret = arr;
    return 0;

out_nomem:
    core_err_set(err, r, NULL, "out of memory");
out:
    free(v);
    svc_backup_store_free(st);
    json_decref(arr);
    return r;
}

static int backup_file_open(const json_t *opts, const struct core_svc_env *env, const char *name,
                            unsigned version, int *ret_fd, uint64_t *ret_size, struct core_err *err)
{
    struct svc_backup_store *st = NULL;
    struct svc_backup_entry e;
    char dir[PATH_MAX];
    int r, fd;

    r = svc_backup_name_check(name, strlen(name), err);
    if (r < 0)
        return r;
    r = resolve_dir(opts, env, dir, sizeof(dir), err);
    if (r < 0)
        return r;
    r = svc_backup_store_open(dir, false, &st, err);
    if (r == -ENOENT)
        return core_err_set(err, -ENOENT, NULL, "no file %s", name);
    if (r < 0)
        return r;
    r = svc_backup_store_open_file(st, name, version, &fd, &e);
    svc_backup_store_free(st);
    if (r == -ENOENT)
        return version ? core_err_set(err, r, NULL, "no version %u of %s", version, name)
                       : core_err_set(err, r, NULL, "no file %s", name);
    if (r < 0)
        return core_err_set(err, r, NULL, "cannot open %s: %s", name, strerror(-r));
    *ret_fd = fd;
    *ret_size = e.size;
    return 0;
}

/* The wire header of an upload given whole (core/upload.h): the protocol's v1 PUT line. */
static int backup_upload_header(const char *name, uint64_t size, const uint8_t *sha256,
                                struct core_buf *out, struct core_err *err)
{
    char e[SVC_BACKUP_NAME_ENC_MAX + 1], hex[SVC_BACKUP_SHA256_HEX + 1] = "";
    int r;

    r = svc_backup_name_check(name, strlen(name), err);
    if (r < 0) {
        snprintf(err->field, sizeof(err->field), "name");
        return r;
    }
    if (sha256)
        svc_backup_sha256_to_hex(sha256, hex);
    if (core_buf_printf(out, "PUT %s %" PRIu64 "%s%s\n", enc(name, e), size, sha256 ? " " : "",
                        hex) < 0)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    return 0;
}

/* The errno an upload's ERR code stands for (see upload_result in core/service.h). */
static int errno_of_errc(const char *code, size_t len, const char **ret_field)
{
    static const struct {
        enum svc_backup_errc c;
        int e;
    } map[] = {
        {SVC_BACKUP_E_BAD_NAME, -EINVAL},
        {SVC_BACKUP_E_TOO_LARGE, -EFBIG},
        {SVC_BACKUP_E_QUOTA, -ENOSPC},
        {SVC_BACKUP_E_DISK_FULL, -ENOSPC},
        {SVC_BACKUP_E_EXISTS, -EEXIST},
        {SVC_BACKUP_E_BUSY, -EBUSY},
        {SVC_BACKUP_E_CHECKSUM_REQUIRED, -EINVAL},
        {SVC_BACKUP_E_SIZE_MISMATCH, -EINVAL},
        {SVC_BACKUP_E_CHECKSUM_MISMATCH, -EBADMSG},
        {SVC_BACKUP_E_TOO_SLOW, -ETIMEDOUT},
    };

    *ret_field = NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        const char *name = svc_backup_errc_name(map[i].c);

        if (strlen(name) != len || memcmp(name, code, len) != 0)
            continue;
        if (map[i].c == SVC_BACKUP_E_BAD_NAME)
            *ret_field = "name";
        else if (map[i].c == SVC_BACKUP_E_CHECKSUM_REQUIRED ||
                 map[i].c == SVC_BACKUP_E_CHECKSUM_MISMATCH)
            *ret_field = "Repr-Digest";
        return map[i].e;
    }
    return -EIO;
}

/* An answer line of an upload given whole: "OK", "STORED <name> <version> <size> <sha256>" or
 * "ERR <code> <text>". */
static int backup_upload_result(const char *line, size_t len, json_t **ret, struct core_err *err)
{
    char text[SVC_BACKUP_LINE_MAX + 1], name[SVC_BACKUP_NAME_MAX + 1], stored[32];
    char *tok[5], *save = NULL;
    unsigned long long version, size;
    const char *field;
    struct tm tm;
    time_t now = time(NULL);
    unsigned n = 0;
    json_t *j;
    int r;

    if (len > SVC_BACKUP_LINE_MAX)
        len = SVC_BACKUP_LINE_MAX;
    memcpy(text, line, len);
    text[len] = '\0';
    if (len > 0 && text[len - 1] == '\r')
        text[--len] = '\0';
    if (strcmp(text, "OK") == 0)
        return 0;
    if (strncmp(text, "ERR ", 4) == 0) {
        const char *code = text + 4, *detail = code + strcspn(code, " ");

        r = errno_of_errc(code, (size_t)(detail - code), &field);
        while (*detail == ' ')
            detail++;
        return core_err_set(err, r, field, "%s", detail[0] ? detail : code);
    }
    for (char *t = strtok_r(text, " ", &save); t && n < 5; t = strtok_r(NULL, " ", &save))
        tok[n++] = t;
    if (n != 5 || strcmp(tok[0], "STORED") != 0 ||
        svc_backup_name_decode(tok[1], strlen(tok[1]), name, err) < 0)
        return core_err_set(err, -EIO, NULL, "unexpected answer: %.200s", line);
    version = strtoull(tok[2], NULL, 10);
    size = strtoull(tok[3], NULL, 10);
    gmtime_r(&now, &tm);
    strftime(stored, sizeof(stored), "%Y-%m-%dT%H:%M:%SZ", &tm);
    j = json_pack("{s:s, s:I, s:I, s:s, s:s}", "name", name, "version", (json_int_t)version, "size",
                  (json_int_t)size, "sha256", tok[4], "stored", stored);
    if (!j)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    *ret = j;
    return 1;
}

const struct core_service svc_backup = {
    .name = "backup",
    .help = "keeps the files clients upload, with their older versions, and sends them back",
    .transports = CORE_TRANSPORT_BIT(CORE_TCP),
    /* Every model: what sessions share lives in MAP_SHARED memory behind a process-shared
     * robust mutex (struct backup_shared), and a forked child opens its own store. */
    .refused_models = 0,
    .counters = backup_counters,
    .counter_help = backup_counter_help,
    .n_counters = C_COUNT,
    .options = backup_options,
    .n_options = sizeof(backup_options) / sizeof(backup_options[0]),
    .env_check = backup_env_check,
    .claim = backup_claim,
    .claim_field = "options.directory",
    .instance_new = backup_instance_new,
    .instance_free = backup_instance_free,
    .session_size = sizeof(struct backup_sess),
    .session_open = backup_session_open,
    .session_feed = backup_session_feed,
    .session_eof = backup_session_eof,
    .session_pull = backup_session_pull,
    .session_close = backup_session_close,
    .files_list = backup_files_list,
    .file_open = backup_file_open,
    .upload_header = backup_upload_header,
    .upload_result = backup_upload_result,
    .blocking = true,
    .read_size = READ_SIZE,
};
