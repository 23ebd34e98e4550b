#include "svc/tzif.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECS_PER_DAY 86400
#define TZ_TYPES_MAX 256      /* type indices are one byte */
#define TZ_CHARS_MAX 4096     /* bytes of abbreviations */
#define TZ_TRANS_MAX 65536    /* transitions (real zones have a few hundred) */
#define TZ_FOOTER_MAX 255     /* bytes of the footer's TZ string */
#define TZ_UTOFF_MIN (-89999) /* -24:59:59, RFC 8536 section 3.2 */
#define TZ_UTOFF_MAX 93599    /* +25:59:59 */
#define TZ_T_LIMIT (INT64_C(1) << 55)

struct tz_type {
    int32_t utoff;
    bool is_dst;
    char abbr[SVC_TZ_ABBR_MAX + 1];
};

/* A POSIX TZ rule date: Jn (1-365, February 29 never counted), n (0-365), or Mm.w.d. */
enum rule_kind { RULE_JULIAN1, RULE_JULIAN0, RULE_MONTH };

struct tz_rule {
    enum rule_kind kind;
    int day;      /* Jn, n: the day; Mm.w.d: d, 0 is Sunday */
    int week;     /* Mm.w.d: 1-5, 5 is the last */
    int month;    /* Mm.w.d: 1-12 */
    int32_t secs; /* local time of the change, -167h..167h */
};

struct posix_tz {
    struct tz_type std, dst;
    bool has_dst;
    struct tz_rule start, end; /* start: std -> dst, in standard time; end: in DST */
};

struct svc_tz {
    size_t n_trans;
    int64_t *trans;      /* ascending */
    uint8_t *trans_type; /* index into types, per transition */
    size_t n_types;      /* >= 1 */
    struct tz_type *types;
    bool has_footer; /* the rules after the last transition */
    struct posix_tz footer;
};

/* ---- calendar ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year of the day days since 1970-01-01. */
static int64_t year_from_days(int64_t days)
{
    int64_t z = days + 719468, era, doe, yoe, doy, mp;

    era = floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10);
}

/* ---- POSIX TZ strings ---- */

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* std or dst: three or more letters, or <...> of letters, digits, '+' and '-'. */
static bool parse_abbr(const char **s, char abbr[SVC_TZ_ABBR_MAX + 1])
{
    const char *p = *s;
    size_t n = 0;

    if (*p == '<') {
        p++;
        while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-') {
            if (n == SVC_TZ_ABBR_MAX)
                return false;
            abbr[n++] = *p++;
        }
        if (*p != '>' || n < 1)
            return false;
        p++;
    } else {
        while (is_alpha(*p)) {
            if (n == SVC_TZ_ABBR_MAX)
                return false;
            abbr[n++] = *p++;
        }
        if (n < 3)
            return false;
    }
    abbr[n] = '\0';
    *s = p;
    return true;
}

static bool parse_uint(const char **s, int max_digits, int max, int *ret)
{
    const char *p = *s;
    int v = 0, n = 0;

    while (is_digit(*p)) {
        if (++n > max_digits)
            return false;
        v = v * 10 + (*p++ - '0');
    }
    if (n == 0 || v > max)
        return false;
    *s = p;
    *ret = v;
    return true;
}

/* [+-]hh[:mm[:ss]] with hh <= max_hours, as seconds. */
static bool parse_hms(const char **s, int max_hours, int32_t *ret)
{
    const char *p = *s;
    int sign = 1, h, m = 0, sec = 0;

    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!parse_uint(&p, 3, max_hours, &h))
        return false;
    if (*p == ':') {
        p++;
        if (!parse_uint(&p, 2, 59, &m))
            return false;
        if (*p == ':') {
            p++;
            if (!parse_uint(&p, 2, 59, &sec))
                return false;
        }
    }
    *s = p;
    *ret = sign * (h * 3600 + m * 60 + sec);
    return true;
}

/* A POSIX offset is west of Greenwich: "CET-1" is one hour east. */
static bool parse_offset(const char **s, int32_t *ret_utoff)
{
    int32_t v;

    if (!parse_hms(s, 24, &v))
        return false;
    *ret_utoff = -v;
    return true;
}

static bool parse_rule(const char **s, struct tz_rule *r)
{
    const char *p = *s;

    if (*p == 'J') {
        p++;
        r->kind = RULE_JULIAN1;
        if (!parse_uint(&p, 3, 365, &r->day) || r->day < 1)
            return false;
    } else if (*p == 'M') {
        p++;
        r->kind = RULE_MONTH;
        if (!parse_uint(&p, 2, 12, &r->month) || r->month < 1 || *p++ != '.' ||
            !parse_uint(&p, 1, 5, &r->week) || r->week < 1 || *p++ != '.' ||
            !parse_uint(&p, 1, 6, &r->day))
            return false;
    } else {
        r->kind = RULE_JULIAN0;
        if (!parse_uint(&p, 3, 365, &r->day))
            return false;
    }
    r->secs = 7200;
    if (*p == '/') {
        p++;
        if (!parse_hms(&p, 167, &r->secs))
            return false;
    }
    *s = p;
    return true;
}

static int posix_parse(const char *text, struct posix_tz *ret, struct core_err *err)
{
    struct posix_tz z = {0};
    const char *s = text;

    if (!parse_abbr(&s, z.std.abbr) || !parse_offset(&s, &z.std.utoff))
        goto fail;
    if (*s == '\0') {
        *ret = z;
        return 0;
    }
    z.has_dst = true;
    z.dst.is_dst = true;
    if (!parse_abbr(&s, z.dst.abbr))
        goto fail;
    if (*s != ',' && *s != '\0') {
        if (!parse_offset(&s, &z.dst.utoff))
            goto fail;
    } else {
        z.dst.utoff = z.std.utoff + 3600;
    }
    if (*s == '\0') {
        /* No rules: glibc's default, the US rules since 2007. */
        z.start = (struct tz_rule){.kind = RULE_MONTH, .month = 3, .week = 2, .secs = 7200};
        z.end = (struct tz_rule){.kind = RULE_MONTH, .month = 11, .week = 1, .secs = 7200};
    } else if (*s++ != ',' || !parse_rule(&s, &z.start) || *s++ != ',' || !parse_rule(&s, &z.end) ||
               *s != '\0') {
        goto fail;
    }
    *ret = z;
    return 0;

fail:
    core_err_set(err, -EINVAL, NULL, "invalid POSIX TZ string \"%.64s\" near offset %zu", text,
                 (size_t)(s - text));
    return -EINVAL;
}

/* The instant (UTC) at which rule r fires in year y, when the local offset before it is utoff. */
static int64_t rule_instant(const struct tz_rule *r, int64_t y, int32_t utoff)
{
    int64_t day;

    switch (r->kind) {
    case RULE_JULIAN1:
        day = days_from_civil(y, 1, 1) + r->day - 1 + (is_leap(y) && r->day >= 60);
        break;
    case RULE_JULIAN0:
        day = days_from_civil(y, 1, 1) + r->day;
        break;
    default: {
        int64_t first = days_from_civil(y, r->month, 1);
        int wday = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
        int mday = (r->day - wday + 7) % 7 + (r->week - 1) * 7;

        while (mday >= month_days(y, r->month))
            mday -= 7;
        day = first + mday;
        break;
    }
    }
    return day * SECS_PER_DAY + r->secs - utoff;
}

/* The type in force at t by the rules: the latest change at or before t wins. */
static const struct tz_type *posix_lookup(const struct posix_tz *z, int64_t t)
{
    const struct tz_type *best = &z->std;
    int64_t best_t = INT64_MIN, y;

    if (!z->has_dst)
        return &z->std;
    y = year_from_days(floor_div(t, SECS_PER_DAY));
    /* The changes of year y-2 are all before t, so one of these always applies. */
    for (int64_t yy = y - 2; yy <= y + 1; yy++) {
        int64_t end = rule_instant(&z->end, yy, z->dst.utoff);
        int64_t start = rule_instant(&z->start, yy, z->std.utoff);

        if (end <= t && end > best_t) {
            best_t = end;
            best = &z->std;
        }
        /* On a tie (DST all year: "EST5EDT,0/0,J365/25"), the start wins. */
        if (start <= t && start >= best_t) {
            best_t = start;
            best = &z->dst;
        }
    }
    return best;
}

int svc_tz_parse_posix(const char *text, struct svc_tz **ret, struct core_err *err)
{
    struct svc_tz *tz;
    int r;

    tz = calloc(1, sizeof(*tz));
    if (!tz)
        return -ENOMEM;
    r = posix_parse(text, &tz->footer, err);
    if (r < 0) {
        free(tz);
        return r;
    }
    tz->has_footer = true;
    *ret = tz;
    return 0;
}

struct svc_tz *svc_tz_new_utc(void)
{
    struct svc_tz *tz = NULL;

    if (svc_tz_parse_posix("UTC0", &tz, NULL) < 0)
        return NULL;
    return tz;
}

/* ---- TZif ---- */

struct reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
};

struct header {
    uint8_t version; /* 0, '2', '3', '4' */
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static const uint8_t *take(struct reader *r, uint64_t n)
{
    const uint8_t *p;

    if (n > r->len - r->pos)
        return NULL;
    p = r->p + r->pos;
    r->pos += (size_t)n;
    return p;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int invalid(struct core_err *err, const char *what)
{
    core_err_set(err, -EINVAL, NULL, "not a valid TZif file: %s", what);
    return -EINVAL;
}

static int read_header(struct reader *r, struct header *h, struct core_err *err)
{
    const uint8_t *p = take(r, 44);

    if (!p || memcmp(p, "TZif", 4) != 0)
        return invalid(err, "no TZif header");
    h->version = p[4];
    if (h->version != 0 && (h->version < '2' || h->version > '4'))
        return invalid(err, "unknown version");
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    if (h->typecnt < 1 || h->typecnt > TZ_TYPES_MAX)
        return invalid(err, "bad number of local time types");
    if (h->charcnt < 1 || h->charcnt > TZ_CHARS_MAX)
        return invalid(err, "bad size of the abbreviations");
    if ((h->isutcnt != 0 && h->isutcnt != h->typecnt) ||
        (h->isstdcnt != 0 && h->isstdcnt != h->typecnt))
        return invalid(err, "bad number of UT/standard indicators");
    if (h->timecnt > TZ_TRANS_MAX)
        return invalid(err, "too many transitions");
    return 0;
}

static uint64_t block_size(const struct header *h, unsigned time_size)
{
    return (uint64_t)h->timecnt * time_size + h->timecnt + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (time_size + 4) + h->isstdcnt + h->isutcnt;
}

static int read_block(struct reader *r, const struct header *h, unsigned time_size,
                      struct svc_tz *tz, struct core_err *err)
{
    const uint8_t *times, *idx, *types, *chars, *ind;

    if (h->leapcnt != 0)
        return invalid(err, "leap-second zones are not supported");
    times = take(r, (uint64_t)h->timecnt * time_size);
    idx = take(r, h->timecnt);
    types = take(r, (uint64_t)h->typecnt * 6);
    chars = take(r, h->charcnt);
    ind = take(r, (uint64_t)h->isstdcnt + h->isutcnt);
    if (!times || !idx || !types || !chars || !ind)
        return invalid(err, "truncated data");

    tz->n_trans = h->timecnt;
    tz->n_types = h->typecnt;
    tz->trans = calloc(h->timecnt ? h->timecnt : 1, sizeof(*tz->trans));
    tz->trans_type = calloc(h->timecnt ? h->timecnt : 1, 1);
    tz->types = calloc(h->typecnt, sizeof(*tz->types));
    if (!tz->trans || !tz->trans_type || !tz->types)
        return -ENOMEM;

    for (uint32_t i = 0; i < h->timecnt; i++) {
        const uint8_t *p = times + (size_t)i * time_size;

        tz->trans[i] = time_size == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
        if (i > 0 && tz->trans[i] <= tz->trans[i - 1])
            return invalid(err, "transitions out of order");
        if (idx[i] >= h->typecnt)
            return invalid(err, "transition to an unknown type");
        tz->trans_type[i] = idx[i];
    }
    for (uint32_t i = 0; i < h->typecnt; i++) {
        const uint8_t *p = types + (size_t)i * 6;
        int32_t utoff = (int32_t)be32(p);
        const char *abbr;
        size_t n;

        if (utoff < TZ_UTOFF_MIN || utoff > TZ_UTOFF_MAX)
            return invalid(err, "UT offset out of range");
        if (p[4] > 1)
            return invalid(err, "bad DST indicator");
        if (p[5] >= h->charcnt)
            return invalid(err, "abbreviation index out of range");
        abbr = (const char *)chars + p[5];
        n = strnlen(abbr, h->charcnt - p[5]);
        if (n == h->charcnt - p[5])
            return invalid(err, "abbreviation not terminated");
        if (n > SVC_TZ_ABBR_MAX)
            return invalid(err, "abbreviation too long");
        tz->types[i].utoff = utoff;
        tz->types[i].is_dst = p[4];
        memcpy(tz->types[i].abbr, abbr, n);
        tz->types[i].abbr[n] = '\0';
    }
    for (uint32_t i = 0; i < h->isstdcnt + h->isutcnt; i++)
        if (ind[i] > 1)
            return invalid(err, "bad UT/standard indicator");
    return 0;
}

static int read_footer(struct reader *r, struct svc_tz *tz, struct core_err *err)
{
    char text[TZ_FOOTER_MAX + 1];
    const uint8_t *p = take(r, 1), *end;
    size_t n;
    int ret;

    if (!p || *p != '\n')
        return invalid(err, "no footer");
    p = r->p + r->pos;
    end = memchr(p, '\n', r->len - r->pos);
    if (!end)
        return invalid(err, "footer not terminated");
    n = (size_t)(end - p);
    if (n > TZ_FOOTER_MAX || memchr(p, '\0', n))
        return invalid(err, "bad footer");
    r->pos += n + 1;
    if (n == 0)
        return 0;
    memcpy(text, p, n);
    text[n] = '\0';
    ret = posix_parse(text, &tz->footer, err);
    if (ret < 0)
        return invalid(err, "bad TZ string in the footer");
    tz->has_footer = true;
    return 0;
}

int svc_tz_parse(const uint8_t *data, size_t len, struct svc_tz **ret, struct core_err *err)
{
    struct reader rd = {.p = data, .len = len};
    struct header h;
    struct svc_tz *tz;
    int r;

    r = read_header(&rd, &h, err);
    if (r < 0)
        return r;
    tz = calloc(1, sizeof(*tz));
    if (!tz)
        return -ENOMEM;
    if (h.version == 0) {
        r = read_block(&rd, &h, 4, tz, err);
    } else {
        /* Skip the 32-bit data: the second header and its 64-bit data supersede it. */
        if (!take(&rd, block_size(&h, 4))) {
            r = invalid(err, "truncated data");
            goto out_free;
        }
        r = read_header(&rd, &h, err);
        if (r < 0)
            goto out_free;
        r = read_block(&rd, &h, 8, tz, err);
        if (r < 0)
            goto out_free;
        r = read_footer(&rd, tz, err);
    }
    if (r < 0)
        goto out_free;
    if (rd.pos != rd.len) {
        r = invalid(err, "trailing bytes");
        goto out_free;
    }
    *ret = tz;
    return 0;

out_free:
    svc_tz_free(tz);
    return r;
}

bool svc_tz_name_is_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > SVC_TZ_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];

        if (!is_alpha(c) && !is_digit(c) && !strchr("/_-+.", c))
            return false;
        /* No absolute path, no empty component, nothing hidden: so no ".." either. */
        if ((i == 0 || name[i - 1] == '/') && (c == '/' || c == '.'))
            return false;
    }
    return true;
}

int svc_tz_load(const char *dir, const char *name, struct svc_tz **ret, struct core_err *err)
{
    char path[PATH_MAX];
    struct core_err perr = {0};
    struct stat st;
    uint8_t *data = NULL;
    size_t len = 0;
    int fd, r;

    if (!svc_tz_name_is_valid(name)) {
        core_err_set(err, -EINVAL, NULL,
                     "\"%.64s\" is not a time zone name (such as \"Europe/Rome\")", name);
        return -EINVAL;
    }
    if (!dir)
        dir = SVC_TZ_DIR_DEFAULT;
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        core_err_set(err, -ENAMETOOLONG, NULL, "time zone path too long");
        return -ENAMETOOLONG;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        if (r == -ENOENT || r == -ENOTDIR)
            core_err_set(err, -ENOENT, NULL, "unknown time zone \"%s\" (no %s)", name, path);
        else
            core_err_set(err, r, NULL, "cannot open %s: %s", path, strerror(-r));
        return r == -ENOTDIR ? -ENOENT : r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        core_err_set(err, r, NULL, "cannot read %s: %s", path, strerror(-r));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > SVC_TZ_FILE_MAX) {
        r = -EINVAL;
        core_err_set(err, r, NULL, "\"%s\" is not a time zone (%s is not a zone file)", name, path);
        goto out_close;
    }
    data = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (!data) {
        r = -ENOMEM;
        goto out_close;
    }
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, data + len, (size_t)st.st_size - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            core_err_set(err, r, NULL, "cannot read %s: %s", path, strerror(-r));
            goto out_free;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    r = svc_tz_parse(data, len, ret, &perr);
    if (r == -EINVAL)
        core_err_set(err, r, NULL, "\"%s\" is not a usable time zone (%s: %s)", name, path,
                     perr.msg);

out_free:
    free(data);
out_close:
    close(fd);
    return r;
}

int svc_tz_lookup(const struct svc_tz *tz, int64_t t, struct svc_tz_info *ret)
{
    const struct tz_type *type;

    if (t > TZ_T_LIMIT || t < -TZ_T_LIMIT)
        return -EOVERFLOW;
    if (tz->n_trans == 0 || t < tz->trans[0]) {
        /* Before the first transition: type 0 (RFC 8536 3.2), or the rules when that is all. */
        type = tz->n_trans == 0 && tz->has_footer ? posix_lookup(&tz->footer, t) : &tz->types[0];
    } else if (t >= tz->trans[tz->n_trans - 1] && tz->has_footer) {
        type = posix_lookup(&tz->footer, t);
    } else {
        size_t lo = 0, hi = tz->n_trans; /* trans[lo] <= t < trans[hi] */

        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;

            if (tz->trans[mid] <= t)
                lo = mid;
            else
                hi = mid;
        }
        type = &tz->types[tz->trans_type[lo]];
    }
    ret->utoff = type->utoff;
    ret->is_dst = type->is_dst;
    memcpy(ret->abbr, type->abbr, sizeof(ret->abbr));
    return 0;
}

void svc_tz_free(struct svc_tz *tz)
{
    if (!tz)
        return;
    free(tz->trans);
    free(tz->trans_type);
    free(tz->types);
    free(tz);
}
