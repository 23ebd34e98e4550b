#ifndef SVC_BACKUP_RETAIN_H
#define SVC_BACKUP_RETAIN_H

/*
 * The backup service's retention: which older copies of a name go, and their removal from the
 * store (svc/backup_store.h).
 *
 * The rules, each off at 0, both applied (a copy goes when either says so):
 *   - keep_versions N: a name keeps its N newest copies, the current copy counted; the older
 *     ones go. 1 keeps the current copy alone.
 *   - keep_days D: an older copy goes once it was replaced more than D days (D * 86400 s) ago,
 *     that is when the copy stored after it (the next newer one listed) was stored more than D
 *     days before now. So every state the file had in the last D days can still be restored,
 *     as an object store's noncurrent-version expiry keeps them.
 * The newest copy of a name (its current copy, or the highest version when the name has no
 * current copy) never goes, whatever its age. A copy whose time cannot be read is never
 * dropped by age.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svc/backup_store.h"

#define SVC_BACKUP_RETAIN_VERSIONS_MAX 1000000
#define SVC_BACKUP_RETAIN_DAYS_MAX 36500

struct svc_backup_retain_rules {
    uint32_t keep_versions; /* 0: any number */
    uint32_t keep_days;     /* 0: for ever */
};

/* "2026-11-25T10:02:45Z" (svc_backup_entry.stored) as seconds since the epoch into *ret.
 * Returns 0, or -EINVAL for anything else. */
int svc_backup_retain_parse_time(const char *text, int64_t *ret);

/*
 * The pure selection: which of one name's copies rules drop at now (seconds since the epoch).
 * v holds the n copies of one name, newest first, as svc_backup_store_list() orders them (the
 * current copy first when there is one). Sets ret_drop[i] (n of them) for each copy to drop,
 * clears the others, and returns how many it set. ret_drop[0] is never set.
 */
size_t svc_backup_retain_select(const struct svc_backup_entry *v, size_t n, int64_t now,
                                const struct svc_backup_retain_rules *rules, bool *ret_drop);

/* Told, once per name that lost copies, how many and their bytes. */
typedef void (*svc_backup_retain_fn)(void *ctx, const char *name, uint32_t versions,
                                     uint64_t bytes);

/*
 * Applies rules at now to the copies of name (NULL: of every name) in store s: the copies
 * svc_backup_retain_select() picks are removed with svc_backup_store_drop_version(), and fn
 * (may be NULL) is called for each name that lost any. The caller serialises it as it does
 * svc_backup_store_commit() (the service's shared lock and the directory's commit lock), so
 * that it never meets a commit half-way. A copy being restored is not disturbed: a reader
 * that has it open goes on reading it whole. Returns 0, or the first negative errno met (what
 * was dropped before is reported through fn; the rest stays, for the next time). Rules that
 * are both 0 drop nothing and touch nothing.
 */
int svc_backup_retain_apply(struct svc_backup_store *s, const char *name,
                            const struct svc_backup_retain_rules *rules, int64_t now,
                            svc_backup_retain_fn fn, void *ctx);

#endif
