#include "svc/backup_retain.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DAY_S INT64_C(86400)

/* n decimal digits at p into *ret. */
static bool parse_digits(const char *p, int n, int *ret)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *ret = v;
    return true;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian, years 0-9999). */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int svc_backup_retain_parse_time(const char *text, int64_t *ret)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, s;

    if (!text || strlen(text) != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
        text[13] != ':' || text[16] != ':' || text[19] != 'Z')
        return -EINVAL;
    if (!parse_digits(text, 4, &y) || !parse_digits(text + 5, 2, &mo) ||
        !parse_digits(text + 8, 2, &d) || !parse_digits(text + 11, 2, &h) ||
        !parse_digits(text + 14, 2, &mi) || !parse_digits(text + 17, 2, &s))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 ||
        mi > 59 || s > 59)
        return -EINVAL;
    *ret = days_from_civil(y, mo, d) * DAY_S + h * 3600 + mi * 60 + s;
    return 0;
}

size_t svc_backup_retain_select(const struct svc_backup_entry *v, size_t n, int64_t now,
                                const struct svc_backup_retain_rules *rules, bool *ret_drop)
{
    const int64_t span = (int64_t)rules->keep_days * DAY_S;
    size_t count = 0;

    for (size_t i = 0; i < n; i++) {
        int64_t replaced;
        bool drop = false;

        /* v[0], the newest, always stays. */
        if (i > 0 && rules->keep_versions && i >= rules->keep_versions)
            drop = true;
        /* v[i] was current until v[i - 1] was stored. */
        if (i > 0 && rules->keep_days &&
            svc_backup_retain_parse_time(v[i - 1].stored, &replaced) == 0 && now - replaced > span)
            drop = true;
        ret_drop[i] = drop;
        count += drop;
    }
    return count;
}

/* Applies the rules to v, the n copies of name, newest first. */
static int apply_name(struct svc_backup_store *s, const char *name,
                      const struct svc_backup_entry *v, size_t n,
                      const struct svc_backup_retain_rules *rules, int64_t now,
                      svc_backup_retain_fn fn, void *ctx)
{
    bool *drop;
    uint32_t versions = 0;
    uint64_t bytes = 0;
    int r = 0;

    if (n < 2)
        return 0;
    drop = calloc(n, sizeof(*drop));
    if (!drop)
        return -ENOMEM;
    if (svc_backup_retain_select(v, n, now, rules, drop) > 0) {
        for (size_t i = 1; i < n; i++) {
            uint64_t freed = 0;
            int q;

            if (!drop[i] || v[i].is_current)
                continue;
            q = svc_backup_store_drop_version(s, name, v[i].version, &freed);
            /* -ENOENT: gone already; -EBUSY: the current copy under a second name. */
            if (q == -ENOENT || q == -EBUSY)
                continue;
            if (q < 0) {
                if (r == 0)
                    r = q;
                continue;
            }
            versions++;
            bytes += freed;
        }
    }
    if (versions && fn)
        fn(ctx, name, versions, bytes);
    free(drop);
    return r;
}

int svc_backup_retain_apply(struct svc_backup_store *s, const char *name,
                            const struct svc_backup_retain_rules *rules, int64_t now,
                            svc_backup_retain_fn fn, void *ctx)
{
    struct svc_backup_entry *v = NULL;
    size_t n = 0, first = 0;
    int r, q;

    if (!rules->keep_versions && !rules->keep_days)
        return 0;
    r = name ? svc_backup_store_list_name(s, name, &v, &n) : svc_backup_store_list(s, &v, &n);
    if (r < 0)
        return r;
    /* The listing groups each name's copies, newest first. */
    for (size_t i = 1; i <= n; i++) {
        if (i < n && strcmp(v[i].name, v[first].name) == 0)
            continue;
        q = apply_name(s, v[first].name, v + first, i - first, rules, now, fn, ctx);
        if (q < 0 && r == 0)
            r = q;
        first = i;
    }
    free(v);
    return r;
}
