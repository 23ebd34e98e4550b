#ifndef CORE_STORE_H
#define CORE_STORE_H

/*
 * Durable files: the listener set kept in the state directory, written atomically (temporary
 * file, fsync, rename, fsync of the directory) so that it is never seen half-written.
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/config.h"
#include "core/err.h"

/* Name of the state file inside the state directory. */
#define CORE_STORE_FILE "listeners.json"

/*
 * Writes data to path atomically: a temporary file beside it, fsync, rename over path, fsync of
 * the directory. Either the old or the new content is at path afterwards, never a mix.
 * Returns 0 or the system's negative errno, never flattened (-ENOSPC or -EDQUOT for a full
 * disk, -EROFS, -EACCES, -EIO, ...; the temporary file is removed then).
 */
int core_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * core_fs_write_atomic() in two steps, so that the wait for the disk can overlap other work:
 * core_fs_stage() writes and syncs the temporary file beside path (0 or the negative errno;
 * nothing is left then); core_fs_stage_commit() renames it over path and syncs the directory
 * (0 or the negative errno; the temporary file is removed then); core_fs_stage_abort() removes
 * it instead. One of the two must follow a stage that succeeded.
 */
struct core_fs_staged {
    char tmp[PATH_MAX];
    char path[PATH_MAX];
};
int core_fs_stage(const char *path, const void *data, size_t len, mode_t mode,
                  struct core_fs_staged *ret);
/* core_fs_stage() of the n pieces of iov, one after the other (written from where they are:
 * nothing is copied together first). */
int core_fs_stage_iov(const char *path, const struct iovec *iov, size_t n, mode_t mode,
                      struct core_fs_staged *ret);
int core_fs_stage_commit(struct core_fs_staged *s);
void core_fs_stage_abort(struct core_fs_staged *s);

/* Writes all of data to fd, retrying on EINTR and short writes. Returns 0 or a negative errno. */
int core_fs_write_all(int fd, const void *data, size_t len);

/* fsync(2) of the directory at path. Returns 0 or a negative errno. */
int core_fs_fsync_dir(const char *path);

/*
 * Reads the regular file at path, of at most max bytes, into *ret (NUL-terminated, free() it)
 * and *ret_len. Returns 0, -ENOENT, -EINVAL (not a regular file, or larger), or another
 * negative errno.
 */
int core_fs_read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/*
 * Removes the temporary files that core_fs_write_atomic() calls on path left when their
 * process died before the rename (PATH.tmp.PID), but this process's own. Returns how many it
 * removed, or a negative errno. Only where no other process writes path: at start.
 */
int core_fs_remove_stale_tmp(const char *path);

/* Creates dir and its missing parents with mode. Returns 0 (also if it exists) or -errno. */
int core_fs_mkdir_p(const char *dir, mode_t mode);

/* What the state file keeps beside the listener set, written in the same atomic write. */
struct core_store_meta {
    /* The revision (core/revisions.h) the set is: the numbers of later revisions are above it
     * even when the history beside it was lost. 0: none recorded (an older file). */
    uint64_t revision;
    /* The offset of the newest fleet record (the desired-state stream) this daemon answered
     * (applied, unchanged, rejected or conflict): a restart resumes the stream after it.
     * "fleet_offset" in the file; absent (older files, or never in a fleet): has_ false. */
    bool has_fleet_offset;
    uint64_t fleet_offset;
    /* The offset of the fleet record whose configuration this is (applied or unchanged),
     * "fleet_applied_offset"; has_ false when none. */
    bool has_fleet_applied;
    uint64_t fleet_applied_offset;
};

/*
 * Reads the listener set from path. Returns 0 with *ret_cfgs (an array of *ret_n configs,
 * free each with core_listener_cfg_fini() then the array with free()) and *ret_meta (may be
 * NULL), -ENOENT when the file does not exist, or -EINVAL / another errno with err saying what
 * is wrong and where (the message names the file).
 */
int core_store_load(const char *path, const struct core_service_table *services,
                    struct core_listener_cfg **ret_cfgs, size_t *ret_n,
                    struct core_store_meta *ret_meta, struct core_err *err);

/* Parses a listener set from JSON text (the state file's format, also used for the embedded
 * defaults). origin names the text in error messages. Same returns as core_store_load(). */
int core_store_parse(const char *text, size_t len, const char *origin,
                     const struct core_service_table *services, struct core_listener_cfg **ret_cfgs,
                     size_t *ret_n, struct core_store_meta *ret_meta, struct core_err *err);

/* Writes the listener set and meta to path atomically. Returns 0, -ENOMEM, or
 * core_fs_write_atomic()'s errno, with err saying what (the message names the file and the
 * system's reason). */
int core_store_save(const char *path, const struct core_listener_cfg *const *cfgs, size_t n,
                    const struct core_store_meta *meta, struct core_err *err);

/* core_store_save() in two steps (see core_fs_stage()): the file written and synced beside
 * path, then put in place by core_store_commit() or dropped by core_fs_stage_abort(). Same
 * returns, err saying what. The listeners' renderings (core_listener_cfg_render()) are used
 * where they have one: only what changed is rendered. Any thread, the cfgs not changed meanwhile.
 */
int core_store_stage(const char *path, const struct core_listener_cfg *const *cfgs, size_t n,
                     const struct core_store_meta *meta, struct core_fs_staged *ret,
                     struct core_err *err);
int core_store_commit(struct core_fs_staged *s, struct core_err *err);

#endif
