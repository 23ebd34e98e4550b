#ifndef SVC_BACKUP_STORE_H
#define SVC_BACKUP_STORE_H

/*
 * The backup service's durable store: one directory of files, each visible under its name
 * only once complete and durable, with the older copies kept as numbered versions and a small
 * metadata record per copy.
 *
 * Layout, beneath the directory (names starting with "." are never valid file names, so the
 * store's own entries cannot collide with a stored file):
 *
 *     NAME                        the current copy of NAME
 *     .sockserv/NAME/N            older copy N of NAME (a hard link made when it was replaced)
 *     .sockserv/NAME/N.json       metadata of copy N, the current copy's included; written once,
 *                                 never rewritten: {"name","version","size","sha256","stored",
 *                                 "integrity","ino","mtime_ns"}
 *     .tmp-XXXXXXXXXXXXXXXX       an upload in progress when O_TMPFILE is not available
 *
 * A metadata record belongs to a copy only when its inode number, size and modification time
 * match the file's; a copy without a matching record (a crash between two steps, a file put
 * there by hand) is listed with its size and modification time and an unknown checksum.
 *
 * Every path is opened one component at a time beneath the directory's descriptor, with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) where the kernel has it and O_NOFOLLOW
 * otherwise: a symbolic link planted in the directory is never followed.
 *
 * Thread rules: a writer store (svc_backup_store_open(.., true, ..)) holds a flock on the
 * directory, so at most one listener writes to it; processes it forks may write beside it
 * through stores of their own (svc_backup_store_attach()), and so may the same listener's next
 * instance (svc_backup_store_open_beside()). tmp_new/tmp_* calls may run from any thread or
 * process, but lookup, commit and usage must be serialised by the caller across every thread
 * and process writing to the directory (the service's process-shared lock, and the commit lock
 * across instances). list and open_file may run from any thread at any time, on any store.
 *
 * Crashes: a commit's steps are ordered so that a process killed between any two of them
 * leaves a directory that lists as before the commit or as after it: the record is written
 * before the copy takes the name; the older copy is linked as a version before the name moves
 * (on_exists version) or, when it is to be dropped (replace), under a hidden temporary name that
 * the next writer's cleanup removes.
 * An unnamed (O_TMPFILE) upload vanishes with its process; the hidden temporary files of the
 * fallback are removed by the next writer's svc_backup_store_open().
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/err.h"
#include "core/filewriter.h"
#include "core/writeback.h"
#include "svc/backup_proto.h"

#define SVC_BACKUP_STORE_META_DIR ".sockserv"

struct svc_backup_store;

/* What happens when an upload's name is taken. */
enum svc_backup_policy {
    SVC_BACKUP_POLICY_VERSION, /* the older copy becomes a numbered version */
    SVC_BACKUP_POLICY_REPLACE, /* the new copy takes the name atomically; the older is dropped */
    SVC_BACKUP_POLICY_REJECT,  /* the upload is refused (-EEXIST) */
    SVC_BACKUP_POLICY_COUNT
};

/* How a stored copy was checked against what its client declared. */
enum svc_backup_integrity {
    SVC_BACKUP_INTEGRITY_NONE,   /* nothing declared (the lecture's flow): unverified */
    SVC_BACKUP_INTEGRITY_SIZE,   /* the declared size matched */
    SVC_BACKUP_INTEGRITY_SHA256, /* the declared size and SHA-256 matched */
    SVC_BACKUP_INTEGRITY_COUNT
};

/* One stored copy, as the listing and restores see it. */
struct svc_backup_entry {
    char name[SVC_BACKUP_NAME_MAX + 1];
    uint32_t version; /* from the metadata; for a current copy without one, one past the rest */
    bool is_current;
    uint64_t size; /* the file's size */
    bool has_meta; /* a matching metadata record was found: sha256, integrity are known */
    bool has_sha256;
    uint8_t sha256[SVC_BACKUP_SHA256_LEN];
    enum svc_backup_integrity integrity; /* SVC_BACKUP_INTEGRITY_NONE without metadata */
    char stored[32]; /* UTC, "2026-11-25T10:02:45Z": from the metadata, else the file's mtime */
};

/* The name of a partial upload beneath .sockserv/.partial/: the SHA-256 of the file name, the
 * declared size and SHA-256 ("any" when none): "<64 hex>-<size>-<64 hex|any>". */
#define SVC_BACKUP_PARTIAL_NAME_MAX 160

/* An upload in progress: an unnamed file (O_TMPFILE), a hidden one in the directory, or a
 * partial upload (resumable: kept when the upload is cut). */
struct svc_backup_tmp {
    int fd;                                 /* -1 when none */
    char name[32];                          /* the hidden name, empty for an unnamed file */
    char part[SVC_BACKUP_PARTIAL_NAME_MAX]; /* a partial upload's name, else empty */
    struct core_writeback wb;               /* bytes appended, writeback started */
    /* Past the page cache (svc_backup_store_tmp_direct()): the thread that writes the file (it
     * owns fd and wb meanwhile), the buffer being filled and the bytes in it; NULL, else. */
    struct core_filewriter *fw;
    uint8_t *buf;
    size_t filled;
    bool direct; /* fd is open with O_DIRECT (the writer's) */
    /* After a commit that replaced a copy (policy replace): that copy, unlinked but still open,
     * so that freeing its blocks (a third of a second for a GiB) waits until the caller closes
     * it, after answering. Discarding the temporary file closes it when the caller did not
     * take it. */
    bool has_replaced;
    int replaced_fd;
};

/* "version", "replace", "reject"; and back (-EINVAL for an unknown name). */
const char *svc_backup_policy_name(enum svc_backup_policy p);
int svc_backup_policy_from_name(const char *name);
const char *svc_backup_integrity_name(enum svc_backup_integrity i);

/*
 * Opens the store at dir. A writer creates dir (mode 0700, with its missing parents, each
 * creation made durable) and the metadata directory, takes the flock on dir (-EBUSY when
 * another writer holds it: exclusive to check, then shared with a svc_backup_store_open_beside()
 * of the same listener) and removes the hidden temporary files a crash left. A reader
 * creates nothing (-ENOENT when dir does not exist). Returns 0 or a negative errno, err says
 * why. Free with svc_backup_store_free().
 */
int svc_backup_store_open(const char *dir, bool writer, struct svc_backup_store **ret,
                          struct core_err *err);

/*
 * Opens the store at dir for writing beside its writer, from a process the writer's process
 * forked (the process model's children, which do not inherit its descriptors): nothing is
 * created, locked or cleaned; dir and its metadata directory must exist (-ENOENT otherwise).
 * Returns 0 or a negative errno, err says why. Free with svc_backup_store_free().
 */
int svc_backup_store_attach(const char *dir, struct svc_backup_store **ret, struct core_err *err);

/*
 * Opens the store at dir for writing beside the writer of the same listener, in its process:
 * the listener's next instance, while the one it replaces lets its uploads drain. Nothing is
 * created or cleaned; the directory's lock is shared with that writer, so that no other
 * listener can take the directory while either holds it (-EBUSY when it cannot be had).
 * Returns 0 or a negative errno, err says why. Free with svc_backup_store_free().
 */
int svc_backup_store_open_beside(const char *dir, struct svc_backup_store **ret,
                                 struct core_err *err);

/*
 * Takes (lock true, waiting for it) or releases the directory's commit lock, which every store
 * on the directory shares, in any process: commits of two instances that overlap on one
 * directory are made one at a time. Returns 0 or a negative errno.
 */
int svc_backup_store_commit_lock(struct svc_backup_store *s, bool lock);

/* Closes the store (and releases the writer's lock). Accepts NULL. */
void svc_backup_store_free(struct svc_backup_store *s);

/*
 * Closes a writer's store as svc_backup_store_free() does, and first removes the directories
 * its open created (dir and the missing parents it made) when nothing was ever stored in them:
 * a listener that goes away unused, or a change rolled back, leaves no directory behind.
 * A directory that holds anything is kept. Accepts NULL and any store.
 */
void svc_backup_store_free_unused(struct svc_backup_store *s);

/* Bytes the file system holding the directory has free for an unprivileged writer. Returns 0
 * or a negative errno. Any thread. */
int svc_backup_store_free_bytes(struct svc_backup_store *s, uint64_t *ret_bytes);

/*
 * What holds name now: 0 nothing, 1 a regular file (a current copy), -EEXIST something else
 * (a symbolic link, a directory: the name cannot be used), or another negative errno.
 * Caller serialised.
 */
int svc_backup_store_lookup(struct svc_backup_store *s, const char *name);

/*
 * Creates an upload's temporary file (writer). When prealloc > 0, reserves that many bytes of
 * disk first (fallocate, keeping the size 0; -ENOSPC/-EDQUOT/-EFBIG refuse before any byte is
 * written; file systems that cannot preallocate are accepted as they are). Returns 0 or a
 * negative errno; on failure ret->fd is -1. Discard or commit it.
 */
int svc_backup_store_tmp_new(struct svc_backup_store *s, uint64_t prealloc,
                             struct svc_backup_tmp *ret);

/*
 * Reserves disk for len bytes of the temporary file from offset off (fallocate, keeping its
 * size), so that the write of those bytes cannot run out of space. Returns 0 (also on file
 * systems that cannot preallocate), -ENOSPC, -EDQUOT, -EFBIG or another negative errno.
 */
int svc_backup_store_tmp_reserve(struct svc_backup_tmp *t, uint64_t off, uint64_t len);

/*
 * Appends n bytes to the temporary file. Every few MiB it starts the writeback of what was
 * appended (sync_file_range) and waits for the range before that one, so that the dirty data
 * stays bounded and the final svc_backup_store_tmp_sync() has little left to do; past the page
 * cache (svc_backup_store_tmp_direct()), it writes each full buffer. Returns 0 or a negative
 * errno (-ENOSPC, -EIO...).
 */
int svc_backup_store_tmp_write(struct svc_backup_tmp *t, const void *p, size_t n);

/*
 * Asks that what is appended from now on bypass the page cache (O_DIRECT), written by a thread
 * of its own (core/filewriter.h) from SVC_BACKUP_WRITER_BUFFERS buffers of
 * SVC_BACKUP_WRITER_CHUNK bytes while the caller receives and hashes what comes next: neither
 * the copy into the page cache (dear where fresh pages are, as on a virtual machine whose host
 * takes back the free ones) nor the writeback, and the disk's waits overlap the network's.
 * Whole 4 KiB blocks go past the cache, the short end through it. svc_backup_store_tmp_sync()
 * and svc_backup_store_tmp_keep() write what is left. Only a hint: a file system or a device
 * that refuses it, or no memory or thread for it, leaves the writes as they were. For a large
 * upload, before its first byte; from the thread that writes. Not threaded (a process that
 * must not start threads, a child forked from the daemon): each buffer is written when full, by
 * the caller.
 */
#define SVC_BACKUP_WRITER_CHUNK (1u << 20)
#define SVC_BACKUP_WRITER_BUFFERS 4
void svc_backup_store_tmp_direct(struct svc_backup_tmp *t, bool threaded);

/* Writes what svc_backup_store_tmp_write() holds, then fsync(2) of the temporary file's data.
 * Returns 0 or a negative errno. */
int svc_backup_store_tmp_sync(struct svc_backup_tmp *t);

/*
 * Partial uploads. A resumable upload is written to a file hidden beneath
 * .sockserv/.partial/, flocked while an upload writes to it (in any process); when the upload
 * is cut, svc_backup_store_tmp_keep() leaves what it received there, to be resumed or expire.
 * A partial matches an upload of the same name and size when their SHA-256 agree or either
 * is not known. Calls that touch partials are serialised by the caller like commits (they
 * take the partials' locks to tell which are being written).
 */
struct svc_backup_partial {
    uint64_t size; /* the declared size */
    bool has_sha256;
    uint8_t sha256[SVC_BACKUP_SHA256_LEN];
    uint64_t held; /* the bytes it holds */
};

/*
 * Finds the partial upload of name. Returns 0 with *ret, -ENOENT (none), -EBUSY (an upload
 * writes to it now) or another negative errno. Any thread.
 */
int svc_backup_store_partial_find(struct svc_backup_store *s, const char *name,
                                  struct svc_backup_partial *ret);

/*
 * Opens the partial upload of name for size bytes (sha256: NULL when not declared), to write
 * from offset on (writer). With offset 0 a new one is made and any other partial of the name
 * is removed; otherwise the matching one must hold at least offset bytes (-ENOENT when none
 * does) and is cut to offset bytes. -EBUSY when an upload writes to it now. On success *ret is
 * locked and positioned at offset (ret->written == offset) and *ret_dropped is the bytes the
 * partials of the name held before (those counted in svc_backup_store_partial_bytes()).
 */
int svc_backup_store_partial_open(struct svc_backup_store *s, const char *name, uint64_t size,
                                  const uint8_t *sha256, uint64_t offset,
                                  struct svc_backup_tmp *ret, uint64_t *ret_dropped);

/*
 * Ends an upload that was cut: a partial keeps what it received (its data started to disk)
 * and is closed (unlocked); any other temporary file is discarded. Accepts fd == -1.
 */
void svc_backup_store_tmp_keep(struct svc_backup_store *s, struct svc_backup_tmp *t);

/*
 * Removes the partial uploads last written ttl_ms or more ago (every one when ttl_ms is 0)
 * that no upload writes to. *ret_freed: the bytes they held. Returns 0 or a negative errno.
 */
int svc_backup_store_partial_sweep(struct svc_backup_store *s, int64_t ttl_ms, uint64_t *ret_freed);

/* The bytes the partial uploads that no upload writes to now hold. Returns 0 or a negative
 * errno. */
int svc_backup_store_partial_bytes(struct svc_backup_store *s, uint64_t *ret_bytes);

/* Removes the temporary file and closes it; nothing of it remains (a partial upload is
 * removed too). Accepts fd == -1. */
void svc_backup_store_tmp_discard(struct svc_backup_store *s, struct svc_backup_tmp *t);

/*
 * Makes the (synced) temporary file the current copy of name under policy: writes its
 * metadata record (size, sha256 when has_sha256, integrity, the time now), keeps the older
 * copy as a version (policy version), moves the file into place atomically and fsyncs the
 * directories. Either every step succeeds, or the store is as it was (an older copy is never
 * touched). Caller serialised. Returns 0 with *ret_version (the new copy's number),
 * *ret_freed (bytes of the copy it dropped, policy replace) and ret_stored (NULL, or 32 bytes:
 * the record's time, as svc_backup_entry.stored shows it), or -EEXIST (policy reject and the
 * name is taken, or the name is held by something that is not a regular file), -ENOSPC,
 * -EDQUOT, -EIO or another negative errno, with err saying why. The temporary file is
 * consumed either way; discard it afterwards to close its descriptor.
 */
int svc_backup_store_commit(struct svc_backup_store *s, struct svc_backup_tmp *t, const char *name,
                            enum svc_backup_policy policy, bool has_sha256,
                            const uint8_t sha256[SVC_BACKUP_SHA256_LEN],
                            enum svc_backup_integrity integrity, uint32_t *ret_version,
                            uint64_t *ret_freed, char *ret_stored, struct core_err *err);

/*
 * Every stored copy: sorted by name, then by version, newest first (the current copy first).
 * Returns 0 with *ret (free() it) and *ret_n, or a negative errno.
 */
int svc_backup_store_list(struct svc_backup_store *s, struct svc_backup_entry **ret, size_t *ret_n);

/*
 * The stored copies of name alone, as svc_backup_store_list() gives them (*ret_n 0 when there
 * are none). Returns 0 with *ret (free() it) and *ret_n, -EINVAL for a bad name, or a negative
 * errno.
 */
int svc_backup_store_list_name(struct svc_backup_store *s, const char *name,
                               struct svc_backup_entry **ret, size_t *ret_n);

/*
 * Removes older copy version of name (retention): .sockserv/NAME/N, then its record N.json,
 * then fsyncs the name's metadata directory. The record of the highest number there stays: a
 * record without its copy lists nothing, and it keeps that number from being given again. A
 * reader that has the copy open goes on reading it whole. Caller serialised as for
 * svc_backup_store_commit(). Returns 0 with *ret_freed (the copy's size), -EINVAL for a bad
 * name or version 0, -ENOENT when there is no such older copy, -EBUSY when that file is the
 * current copy too (linked under both names by a commit cut short), or another negative errno.
 */
int svc_backup_store_drop_version(struct svc_backup_store *s, const char *name, uint32_t version,
                                  uint64_t *ret_freed);

/* Bytes held by every stored copy (the current ones and the versions). Caller serialised. */
int svc_backup_store_usage(struct svc_backup_store *s, uint64_t *ret_bytes);

/*
 * Opens a stored copy for reading: version 0 (or the current copy's number) is the current
 * copy, N the older copy N. *ret_fd is O_RDONLY|O_CLOEXEC (the caller closes it); *ret
 * describes the copy as opened. Returns 0, -EINVAL for a bad name, -ENOENT when there is no
 * such copy (a symbolic link or anything but a regular file counts as none), or another
 * negative errno.
 */
int svc_backup_store_open_file(struct svc_backup_store *s, const char *name, uint32_t version,
                               int *ret_fd, struct svc_backup_entry *ret);

#endif
