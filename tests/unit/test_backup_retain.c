#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "svc/backup_retain.h"
#include "svc/backup_store.h"

#define DAY (INT64_C(86400))

/* ---- the selection, without a disk ---- */

/* "now" for every selection test: 2026-12-06T12:00:00Z. */
static int64_t now_s(void)
{
    int64_t t = 0;

    assert_int_equal(svc_backup_retain_parse_time("2026-12-06T12:00:00Z", &t), 0);
    return t;
}

/* The UTC time secs seconds before now_s(), as the store writes it. */
static void ago(int64_t secs, char out[32])
{
    int64_t t = now_s() - secs, days = t / DAY, rem = t % DAY;
    int64_t z = days + 719468, era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = (int64_t)yoe + era * 400 + (m <= 2);

    snprintf(out, 32, "%04d-%02u-%02uT%02d:%02d:%02dZ", (int)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
}

/* One name's copies, newest first: versions[i] stored ages[i] seconds ago; the first is the
 * current copy when current. */
static void copies(struct svc_backup_entry *v, size_t n, bool current, const int64_t *ages)
{
    for (size_t i = 0; i < n; i++) {
        memset(&v[i], 0, sizeof(v[i]));
        snprintf(v[i].name, sizeof(v[i].name), "notes.txt");
        v[i].version = (uint32_t)(n - i);
        v[i].is_current = current && i == 0;
        v[i].size = 100 + i;
        ago(ages[i], v[i].stored);
    }
}

/* The drop flags as a string of 'k' (kept) and 'd' (dropped), newest first. */
static const char *pick(const struct svc_backup_entry *v, size_t n, uint32_t keep_versions,
                        uint32_t keep_days, size_t *ret_count)
{
    static char out[64];
    const struct svc_backup_retain_rules rules = {keep_versions, keep_days};
    bool drop[32];
    size_t count;

    assert_true(n < sizeof(drop) / sizeof(drop[0]));
    memset(drop, 1, sizeof(drop));
    count = svc_backup_retain_select(v, n, now_s(), &rules, drop);
    for (size_t i = 0; i < n; i++)
        out[i] = drop[i] ? 'd' : 'k';
    out[n] = '\0';
    if (ret_count)
        *ret_count = count;
    return out;
}

static void test_retain_parse_time_store_format_read_others_refused(void **state)
{
    int64_t t = -1;

    (void)state;
    assert_int_equal(svc_backup_retain_parse_time("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(svc_backup_retain_parse_time("2026-11-25T10:02:45Z", &t), 0);
    assert_int_equal(t, INT64_C(1795600965));
    assert_int_equal(svc_backup_retain_parse_time("2028-02-29T23:59:59Z", &t), 0);
    assert_int_equal(t, INT64_C(1835481599));
    assert_int_equal(svc_backup_retain_parse_time("1969-12-31T23:59:59Z", &t), 0);
    assert_int_equal(t, -1);
    t = 42;
    assert_int_equal(svc_backup_retain_parse_time("2027-02-29T00:00:00Z", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time("2026-13-01T00:00:00Z", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time("2026-11-25T24:00:00Z", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time("2026-11-25 10:02:45Z", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time("2026-11-25T10:02:45", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time("2026-11-25T10:02:45Z ", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time("2026-1x-25T10:02:45Z", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time("", &t), -EINVAL);
    assert_int_equal(svc_backup_retain_parse_time(NULL, &t), -EINVAL);
    assert_int_equal(t, 42);
}

static void test_retain_select_rules_off_drop_nothing(void **state)
{
    const int64_t ages[] = {0, 400 * DAY, 800 * DAY, 900 * DAY};
    struct svc_backup_entry v[4];
    size_t count = 99;

    (void)state;
    copies(v, 4, true, ages);
    assert_string_equal(pick(v, 4, 0, 0, &count), "kkkk");
    assert_int_equal(count, 0);
    assert_string_equal(pick(v, 0, 1, 1, &count), "");
    assert_int_equal(count, 0);
}

static void test_retain_select_keep_versions_counts_current_copy(void **state)
{
    const int64_t ages[] = {0, 10, 20, 30, 40};
    struct svc_backup_entry v[5];
    size_t count = 0;

    (void)state;
    copies(v, 5, true, ages);
    assert_string_equal(pick(v, 5, 1, 0, &count), "kdddd");
    assert_int_equal(count, 4);
    assert_string_equal(pick(v, 5, 2, 0, &count), "kkddd");
    assert_int_equal(count, 3);
    assert_string_equal(pick(v, 5, 5, 0, &count), "kkkkk");
    assert_int_equal(count, 0);
    assert_string_equal(pick(v, 5, 9, 0, NULL), "kkkkk");
    assert_string_equal(pick(v, 1, 1, 0, &count), "k");
    assert_int_equal(count, 0);
}

static void test_retain_select_without_current_copy_keeps_highest_version(void **state)
{
    const int64_t ages[] = {300 * DAY, 400 * DAY, 500 * DAY};
    struct svc_backup_entry v[3];

    (void)state;
    copies(v, 3, false, ages);
    assert_string_equal(pick(v, 3, 1, 0, NULL), "kdd");
    assert_string_equal(pick(v, 3, 0, 1, NULL), "kdd");
    assert_string_equal(pick(v, 1, 1, 1, NULL), "k");
}

static void test_retain_select_keep_days_newest_older_than_keep_days_is_kept(void **state)
{
    const int64_t ages[] = {100 * DAY, 200 * DAY};
    struct svc_backup_entry v[2];
    size_t count = 9;

    (void)state;
    copies(v, 1, true, ages);
    assert_string_equal(pick(v, 1, 0, 1, &count), "k");
    assert_int_equal(count, 0);
    /* its older version was replaced 100 days ago: gone */
    copies(v, 2, true, ages);
    assert_string_equal(pick(v, 2, 0, 7, &count), "kd");
    assert_int_equal(count, 1);
    assert_string_equal(pick(v, 2, 0, 100, NULL), "kk");
}

static void test_retain_select_keep_days_counts_from_replacement_not_storage(void **state)
{
    /* v3 stored an hour ago replaced v2 (stored 30 days ago), which replaced v1 (60 days ago)
     * 30 days ago. */
    const int64_t ages[] = {3600, 30 * DAY, 60 * DAY};
    struct svc_backup_entry v[3];

    (void)state;
    copies(v, 3, true, ages);
    assert_string_equal(pick(v, 3, 0, 7, NULL), "kkd");
    assert_string_equal(pick(v, 3, 0, 29, NULL), "kkd");
    assert_string_equal(pick(v, 3, 0, 30, NULL), "kkk");
}

static void test_retain_select_keep_days_boundary_is_kept(void **state)
{
    int64_t ages[] = {7 * DAY, 8 * DAY};
    struct svc_backup_entry v[2];

    (void)state;
    copies(v, 2, true, ages);
    assert_string_equal(pick(v, 2, 0, 7, NULL), "kk");
    ages[0] = 7 * DAY + 1;
    copies(v, 2, true, ages);
    assert_string_equal(pick(v, 2, 0, 7, NULL), "kd");
}

static void test_retain_select_ties_ordered_by_version(void **state)
{
    /* Stored in one second: the order is the versions', newest first. */
    const int64_t ages[] = {5 * DAY, 5 * DAY, 5 * DAY, 5 * DAY};
    struct svc_backup_entry v[4];

    (void)state;
    copies(v, 4, true, ages);
    assert_string_equal(pick(v, 4, 2, 0, NULL), "kkdd");
    assert_int_equal(v[1].version, 3);
    assert_string_equal(pick(v, 4, 0, 4, NULL), "kddd");
    assert_string_equal(pick(v, 4, 0, 5, NULL), "kkkk");
}

static void test_retain_select_both_rules_drop_what_either_drops(void **state)
{
    const int64_t ages[] = {0, DAY, 2 * DAY, 30 * DAY, 31 * DAY};
    struct svc_backup_entry v[5];

    (void)state;
    copies(v, 5, true, ages);
    /* keep_days 10 alone drops v[4] (replaced 30 days ago) */
    assert_string_equal(pick(v, 5, 5, 10, NULL), "kkkkd");
    /* keep_days 1 keeps v[2] (replaced exactly a day ago), keep_versions 2 does not */
    assert_string_equal(pick(v, 5, 2, 1, NULL), "kkddd");
    assert_string_equal(pick(v, 5, 5, 1, NULL), "kkkdd");
}

static void test_retain_select_unreadable_time_never_drops_by_age(void **state)
{
    const int64_t ages[] = {60 * DAY, 90 * DAY, 91 * DAY};
    struct svc_backup_entry v[3];

    (void)state;
    copies(v, 3, true, ages);
    snprintf(v[1].stored, sizeof(v[1].stored), "yesterday");
    /* v[1] was replaced 60 days ago; v[2] when v[1] was stored, which cannot be read */
    assert_string_equal(pick(v, 3, 0, 30, NULL), "kdk");
    assert_string_equal(pick(v, 3, 2, 30, NULL), "kdd");
}

/* ---- the store: what goes from the disk ---- */

struct fx {
    char dir[64];
    struct svc_backup_store *s;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct core_err err = {0};

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_backup_retain.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(svc_backup_store_open(f->dir, true, &f->s, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    svc_backup_store_free(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Commits text as name under policy version; asserts the version it got. */
static void put(struct fx *f, const char *name, const char *text, uint32_t want)
{
    struct svc_backup_tmp t;
    struct core_err err = {0};
    uint32_t version = 0;
    uint64_t freed = 0;

    assert_int_equal(svc_backup_store_tmp_new(f->s, 0, &t), 0);
    assert_int_equal(svc_backup_store_tmp_write(&t, text, strlen(text)), 0);
    assert_int_equal(svc_backup_store_tmp_sync(&t), 0);
    assert_int_equal(svc_backup_store_commit(f->s, &t, name, SVC_BACKUP_POLICY_VERSION, false, NULL,
                                             SVC_BACKUP_INTEGRITY_SIZE, &version, &freed, NULL,
                                             &err),
                     0);
    svc_backup_store_tmp_discard(f->s, &t);
    assert_int_equal(version, want);
}

static bool exists_in(const struct fx *f, const char *rel)
{
    char path[256];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
    return lstat(path, &st) == 0;
}

/* The versions of name listed, newest first, as "4 3 1". */
static const char *listed(struct fx *f, const char *name)
{
    static char out[128];
    struct svc_backup_entry *v = NULL;
    size_t n = 0, len = 0;

    assert_int_equal(svc_backup_store_list_name(f->s, name, &v, &n), 0);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(v[i].name, name);
        len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%u%s", i ? " " : "", v[i].version,
                                v[i].is_current ? "*" : "");
    }
    free(v);
    return out;
}

struct report {
    char names[256];
    uint32_t versions;
    uint64_t bytes;
    unsigned calls;
};

static void on_pruned(void *ctx, const char *name, uint32_t versions, uint64_t bytes)
{
    struct report *r = ctx;
    size_t len = strlen(r->names);

    snprintf(r->names + len, sizeof(r->names) - len, "%s%s:%u", len ? " " : "", name, versions);
    r->versions += versions;
    r->bytes += bytes;
    r->calls++;
}

static void test_retain_list_name_lists_one_name_newest_first(void **state)
{
    struct fx *f = *state;
    struct svc_backup_entry *v = NULL;
    size_t n = 9;

    put(f, "a", "1", 1);
    put(f, "a", "22", 2);
    put(f, "b", "333", 1);
    assert_string_equal(listed(f, "a"), "2* 1");
    assert_string_equal(listed(f, "b"), "1*");
    assert_string_equal(listed(f, "c"), "");
    assert_int_equal(svc_backup_store_list_name(f->s, "../a", &v, &n), -EINVAL);
    assert_int_equal(svc_backup_store_list_name(f->s, ".sockserv", &v, &n), -EINVAL);
    assert_int_equal(n, 9);
}

static void test_retain_drop_version_removes_copy_and_record(void **state)
{
    struct fx *f = *state;
    uint64_t freed = 0;

    put(f, "a", "first", 1);
    put(f, "a", "second!", 2);
    put(f, "a", "third", 3);
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 1, &freed), 0);
    assert_int_equal(freed, 5);
    assert_false(exists_in(f, ".sockserv/a/1"));
    assert_false(exists_in(f, ".sockserv/a/1.json"));
    assert_true(exists_in(f, ".sockserv/a/2"));
    assert_true(exists_in(f, ".sockserv/a/2.json"));
    assert_true(exists_in(f, ".sockserv/a/3.json"));
    assert_string_equal(listed(f, "a"), "3* 2");
    /* not there, the current copy's number, bad arguments */
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 1, &freed), -ENOENT);
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 3, &freed), -ENOENT);
    assert_int_equal(svc_backup_store_drop_version(f->s, "zz", 1, &freed), -ENOENT);
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 0, &freed), -EINVAL);
    assert_int_equal(svc_backup_store_drop_version(f->s, "../a", 1, &freed), -EINVAL);
    assert_true(exists_in(f, "a"));
    /* the numbers go on */
    put(f, "a", "fourth", 4);
}

static void test_retain_drop_version_never_the_current_copy(void **state)
{
    struct fx *f = *state;
    char cur[128], v9[128];
    uint64_t freed = 0;

    put(f, "a", "first", 1);
    put(f, "a", "second", 2);
    /* the current copy also linked as a version, as a commit cut short leaves it */
    snprintf(cur, sizeof(cur), "%s/a", f->dir);
    snprintf(v9, sizeof(v9), "%s/.sockserv/a/9", f->dir);
    assert_int_equal(link(cur, v9), 0);
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 9, &freed), -EBUSY);
    assert_true(exists_in(f, ".sockserv/a/9"));
    assert_true(exists_in(f, "a"));
}

static void test_retain_drop_version_symlink_not_followed(void **state)
{
    struct fx *f = *state;
    char target[128], v5[128];
    uint64_t freed = 0;

    put(f, "a", "first", 1);
    put(f, "a", "second", 2);
    snprintf(target, sizeof(target), "%s/a", f->dir);
    snprintf(v5, sizeof(v5), "%s/.sockserv/a/5", f->dir);
    assert_int_equal(symlink(target, v5), 0);
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 5, &freed), -ENOENT);
    assert_true(exists_in(f, ".sockserv/a/5"));
    assert_true(exists_in(f, "a"));
}

static void test_retain_drop_lower_version_numbers_go_on(void **state)
{
    struct fx *f = *state;
    char cur[128], other[128];
    uint64_t freed = 0;

    put(f, "a", "first", 1);
    put(f, "a", "second", 2);
    /* the current copy replaced by hand: it has no record and reads as version 3, one past
     * the highest number the directory holds (2.json, a record without its copy now) */
    snprintf(cur, sizeof(cur), "%s/a", f->dir);
    snprintf(other, sizeof(other), "%s/b", f->dir);
    assert_int_equal(unlink(cur), 0);
    put(f, "b", "x", 1);
    assert_int_equal(rename(other, cur), 0);
    assert_string_equal(listed(f, "a"), "3* 1");
    /* 1 is not the highest number: its record goes with it */
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 1, &freed), 0);
    assert_false(exists_in(f, ".sockserv/a/1.json"));
    assert_string_equal(listed(f, "a"), "3*");
    put(f, "a", "third", 4);
    assert_string_equal(listed(f, "a"), "4* 3");
}

static void test_retain_drop_highest_version_current_unrecorded_keeps_number(void **state)
{
    struct fx *f = *state;
    char cur[128], other[128];
    uint64_t freed = 0;

    put(f, "a", "first", 1);
    put(f, "a", "second", 2);
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 1, &freed), 0);
    /* a by hand: version 2 becomes an older copy without its name... */
    snprintf(cur, sizeof(cur), "%s/a", f->dir);
    snprintf(other, sizeof(other), "%s/.sockserv/a/2", f->dir);
    assert_int_equal(link(cur, other), 0);
    put(f, "b", "x", 1);
    snprintf(other, sizeof(other), "%s/b", f->dir);
    assert_int_equal(rename(other, cur), 0);
    assert_string_equal(listed(f, "a"), "3* 2");
    /* ...the highest number: its copy goes, its record stays, the current copy keeps 3 */
    assert_int_equal(svc_backup_store_drop_version(f->s, "a", 2, &freed), 0);
    assert_int_equal(freed, 6);
    assert_false(exists_in(f, ".sockserv/a/2"));
    assert_true(exists_in(f, ".sockserv/a/2.json"));
    assert_string_equal(listed(f, "a"), "3*");
    put(f, "a", "fourth", 4);
    assert_string_equal(listed(f, "a"), "4* 3");
}

static void test_retain_apply_one_name_reports_versions_and_bytes(void **state)
{
    struct fx *f = *state;
    const struct svc_backup_retain_rules rules = {.keep_versions = 2};
    struct report r = {0};

    put(f, "a", "1", 1);
    put(f, "a", "22", 2);
    put(f, "a", "333", 3);
    put(f, "a", "4444", 4);
    put(f, "b", "1", 1);
    put(f, "b", "22", 2);
    put(f, "b", "333", 3);
    assert_int_equal(svc_backup_retain_apply(f->s, "a", &rules, now_s(), on_pruned, &r), 0);
    assert_string_equal(r.names, "a:2");
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.bytes, 1 + 2);
    assert_string_equal(listed(f, "a"), "4* 3");
    assert_string_equal(listed(f, "b"), "3* 2 1");
    /* again: nothing more to drop, nothing reported */
    memset(&r, 0, sizeof(r));
    assert_int_equal(svc_backup_retain_apply(f->s, "a", &rules, now_s(), on_pruned, &r), 0);
    assert_int_equal(r.calls, 0);
    /* a name that does not exist */
    assert_int_equal(svc_backup_retain_apply(f->s, "zz", &rules, now_s(), on_pruned, &r), 0);
    assert_int_equal(r.calls, 0);
}

static void test_retain_apply_every_name_reports_each(void **state)
{
    struct fx *f = *state;
    const struct svc_backup_retain_rules rules = {.keep_versions = 1};
    const struct svc_backup_retain_rules off = {0};
    struct report r = {0};
    uint64_t used = 0;

    put(f, "a", "1", 1);
    put(f, "a", "22", 2);
    put(f, "b", "333", 1);
    put(f, "c", "4444", 1);
    put(f, "c", "55555", 2);
    put(f, "c", "666666", 3);
    assert_int_equal(svc_backup_retain_apply(f->s, NULL, &off, now_s(), on_pruned, &r), 0);
    assert_int_equal(r.calls, 0);
    assert_int_equal(svc_backup_retain_apply(f->s, NULL, &rules, now_s(), on_pruned, &r), 0);
    assert_string_equal(r.names, "a:1 c:2");
    assert_int_equal(r.versions, 3);
    assert_int_equal(r.bytes, 1 + 4 + 5);
    assert_string_equal(listed(f, "a"), "2*");
    assert_string_equal(listed(f, "b"), "1*");
    assert_string_equal(listed(f, "c"), "3*");
    assert_int_equal(svc_backup_store_usage(f->s, &used), 0);
    assert_int_equal(used, 2 + 3 + 6);
}

static void test_retain_open_copy_reads_whole_after_drop(void **state)
{
    struct fx *f = *state;
    const struct svc_backup_retain_rules rules = {.keep_versions = 1};
    struct svc_backup_entry e;
    struct report r = {0};
    char buf[64] = "";
    int fd = -1;

    put(f, "a", "the old content", 1);
    put(f, "a", "new", 2);
    assert_int_equal(svc_backup_store_open_file(f->s, "a", 1, &fd, &e), 0);
    assert_int_equal(pread(fd, buf, 4, 0), 4);
    assert_int_equal(svc_backup_retain_apply(f->s, "a", &rules, now_s(), on_pruned, &r), 0);
    assert_int_equal(r.versions, 1);
    assert_false(exists_in(f, ".sockserv/a/1"));
    assert_int_equal(pread(fd, buf + 4, sizeof(buf) - 5, 4), 11);
    assert_string_equal(buf, "the old content");
    close(fd);
    assert_int_equal(svc_backup_store_open_file(f->s, "a", 1, &fd, &e), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retain_parse_time_store_format_read_others_refused),
        cmocka_unit_test(test_retain_select_rules_off_drop_nothing),
        cmocka_unit_test(test_retain_select_keep_versions_counts_current_copy),
        cmocka_unit_test(test_retain_select_without_current_copy_keeps_highest_version),
        cmocka_unit_test(test_retain_select_keep_days_newest_older_than_keep_days_is_kept),
        cmocka_unit_test(test_retain_select_keep_days_counts_from_replacement_not_storage),
        cmocka_unit_test(test_retain_select_keep_days_boundary_is_kept),
        cmocka_unit_test(test_retain_select_ties_ordered_by_version),
        cmocka_unit_test(test_retain_select_both_rules_drop_what_either_drops),
        cmocka_unit_test(test_retain_select_unreadable_time_never_drops_by_age),
        cmocka_unit_test_setup_teardown(test_retain_list_name_lists_one_name_newest_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retain_drop_version_removes_copy_and_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retain_drop_version_never_the_current_copy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retain_drop_version_symlink_not_followed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retain_drop_lower_version_numbers_go_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_retain_drop_highest_version_current_unrecorded_keeps_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retain_apply_one_name_reports_versions_and_bytes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retain_apply_every_name_reports_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retain_open_copy_reads_whole_after_drop, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
