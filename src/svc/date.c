#include "svc/date.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/metrics.h"

enum date_counter {
    CTR_REQUESTS_DATE,
    CTR_REQUESTS_ISO,
    CTR_REQUESTS_UNIX,
    CTR_DROPPED_EMPTY,
    CTR_DROPPED_TOO_LONG,
    CTR_DROPPED_UNKNOWN,
    CTR_COUNT
};

_Static_assert(CTR_COUNT <= CORE_METRICS_SVC_MAX, "too many date counters");

static const char *const date_counters[CTR_COUNT] = {
    [CTR_REQUESTS_DATE] = "requests_date",       [CTR_REQUESTS_ISO] = "requests_iso",
    [CTR_REQUESTS_UNIX] = "requests_unix",       [CTR_DROPPED_EMPTY] = "dropped_empty",
    [CTR_DROPPED_TOO_LONG] = "dropped_too_long", [CTR_DROPPED_UNKNOWN] = "dropped_unknown_request",
};

static const char *const date_counter_help[CTR_COUNT] = {
    [CTR_REQUESTS_DATE] = "date lines sent (every TCP connection, UDP \"date\")",
    [CTR_REQUESTS_ISO] = "UDP \"iso\" requests answered",
    [CTR_REQUESTS_UNIX] = "UDP \"unix\" requests answered",
    [CTR_DROPPED_EMPTY] = "empty datagrams, dropped unanswered",
    [CTR_DROPPED_TOO_LONG] = "datagrams over 64 bytes, dropped unanswered",
    [CTR_DROPPED_UNKNOWN] = "datagrams that are no request, dropped unanswered",
};

static const unsigned date_counter_transports[CTR_COUNT] = {
    [CTR_REQUESTS_DATE] = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
    [CTR_REQUESTS_ISO] = CORE_TRANSPORT_BIT(CORE_UDP),
    [CTR_REQUESTS_UNIX] = CORE_TRANSPORT_BIT(CORE_UDP),
    [CTR_DROPPED_EMPTY] = CORE_TRANSPORT_BIT(CORE_UDP),
    [CTR_DROPPED_TOO_LONG] = CORE_TRANSPORT_BIT(CORE_UDP),
    [CTR_DROPPED_UNKNOWN] = CORE_TRANSPORT_BIT(CORE_UDP),
};

static const char *const request_words[SVC_DATE_KIND_COUNT] = {
    [SVC_DATE_DATE] = "date",
    [SVC_DATE_ISO] = "iso",
    [SVC_DATE_UNIX] = "unix",
};

static const enum date_counter request_counters[SVC_DATE_KIND_COUNT] = {
    [SVC_DATE_DATE] = CTR_REQUESTS_DATE,
    [SVC_DATE_ISO] = CTR_REQUESTS_ISO,
    [SVC_DATE_UNIX] = CTR_REQUESTS_UNIX,
};

struct date_inst {
    struct svc_tz *tz; /* NULL: the daemon's zone */
    char format[SVC_DATE_FORMAT_MAX + 1];
    struct core_metrics *metrics; /* borrowed from the listener; may be NULL */
};

struct date_session {
    const struct date_inst *inst;
};

/* ---- requests ---- */

static bool is_blank(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int svc_date_request_parse(const uint8_t *in, size_t len)
{
    if (len > SVC_DATE_REQUEST_MAX)
        return -EMSGSIZE;
    while (len > 0 && is_blank(in[len - 1]))
        len--;
    if (len == 0)
        return -ENODATA;
    for (int k = 0; k < SVC_DATE_KIND_COUNT; k++)
        if (len == strlen(request_words[k]) &&
            strncasecmp((const char *)in, request_words[k], len) == 0)
            return k;
    return -EBADMSG;
}

/* ---- formatting ---- */

static const char *const wday_abbr[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wday_full[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};
static const char *const mon_abbr[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const mon_full[12] = {"January",   "February", "March",    "April",
                                         "May",       "June",     "July",     "August",
                                         "September", "October",  "November", "December"};

/* An instant broken down in a zone. */
struct zoned {
    int64_t t;
    struct tm tm;
    int32_t utoff;
    char abbr[SVC_TZ_ABBR_MAX + 1];
};

/* A bounded writer: writes what fits and remembers that something did not. */
struct out {
    char *buf;
    size_t cap; /* bytes usable, the NUL excluded */
    size_t len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n > o->cap - o->len) {
        o->full = true;
        n = o->cap - o->len;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_repeat(struct out *o, char c, int n)
{
    for (int i = 0; i < n; i++)
        put(o, &c, 1);
}

/*
 * A number the way GNU date pads it: width counts the sign; pad is '0', ' ' (before the
 * sign) or '-' (none).
 */
static void put_num(struct out *o, bool negative, uint64_t v, int width, char pad)
{
    char digits[24];
    int n = 0, shortage;

    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    shortage = width - negative - n;
    if (pad == '-' || shortage < 0)
        shortage = 0;
    if (pad == ' ')
        put_repeat(o, ' ', shortage);
    if (negative)
        put(o, "-", 1);
    if (pad == '0')
        put_repeat(o, '0', shortage);
    while (n > 0)
        put(o, &digits[--n], 1);
}

static void put_signed(struct out *o, int64_t v, int width, char pad)
{
    put_num(o, v < 0, v < 0 ? -(uint64_t)v : (uint64_t)v, width, pad);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days between the start of the ISO week-based year and yday (glibc's iso_week_days). */
static int iso_week_days(int yday, int wday)
{
    const int big_enough_multiple_of_7 = (366 / 7 + 2) * 7;

    return yday - (yday - wday + 4 + big_enough_multiple_of_7) % 7 + 4 - 1;
}

static void iso_week(const struct tm *tm, int64_t *ret_year, int *ret_week)
{
    int64_t year = (int64_t)tm->tm_year + 1900;
    int days = iso_week_days(tm->tm_yday, tm->tm_wday);

    if (days < 0) {
        year--;
        days = iso_week_days(tm->tm_yday + 365 + is_leap(year), tm->tm_wday);
    } else {
        int d = iso_week_days(tm->tm_yday - 365 - is_leap(year), tm->tm_wday);

        if (d >= 0) {
            year++;
            days = d;
        }
    }
    *ret_year = year;
    *ret_week = days / 7 + 1;
}

/* Two-digit year of %y and %g; GNU date drops the sign of negative years. */
static int year2(int64_t year)
{
    int yy = (int)(year % 100);

    return yy < 0 ? -yy : yy;
}

static int expand(struct out *o, const char *fmt, const struct zoned *z, const char **ret_bad);

static bool is_numeric_conversion(char c)
{
    return c != '\0' && strchr("CdeHIjklmMsSuUVwWyYgG", c) != NULL;
}

/* One conversion, at p (after '%', flag and colon). Returns 0, or -EINVAL when unknown. */
static int convert(struct out *o, char c, char flag, bool colon, const struct zoned *z)
{
    const struct tm *tm = &z->tm;
    int64_t year = (int64_t)tm->tm_year + 1900;
    char pad0 = flag ? (flag == '_' ? ' ' : flag) : '0';
    char pads = flag ? (flag == '_' ? ' ' : flag) : ' ';
    int64_t iso_year;
    int week;

    if (colon && c != 'z')
        return -EINVAL;
    if (flag && !is_numeric_conversion(c))
        return -EINVAL;
    switch (c) {
    case 'a':
        puts_(o, wday_abbr[tm->tm_wday]);
        return 0;
    case 'A':
        puts_(o, wday_full[tm->tm_wday]);
        return 0;
    case 'b':
    case 'h':
        puts_(o, mon_abbr[tm->tm_mon]);
        return 0;
    case 'B':
        puts_(o, mon_full[tm->tm_mon]);
        return 0;
    case 'c':
        /* The C locale's D_T_FMT; glibc prints its year unpadded. */
        expand(o, "%a %b %e %H:%M:%S ", z, NULL);
        put_signed(o, year, 1, '0');
        return 0;
    case 'C': {
        bool negative = year < 0;
        bool zero_thru_1899 = !negative && tm->tm_year < 0;
        int64_t century = ((int64_t)tm->tm_year - 99 * zero_thru_1899) / 100 + 19;

        put_num(o, negative, (uint64_t)(negative ? -century : century), 2, pad0);
        return 0;
    }
    case 'd':
        put_signed(o, tm->tm_mday, 2, pad0);
        return 0;
    case 'D':
    case 'x':
        return expand(o, "%m/%d/%y", z, NULL);
    case 'e':
        put_signed(o, tm->tm_mday, 2, pads);
        return 0;
    case 'F':
        /* GNU date's %F is "%+4Y-%m-%d": years past 9999 get a '+'. */
        if (year > 9999)
            put(o, "+", 1);
        return expand(o, "%Y-%m-%d", z, NULL);
    case 'g':
        iso_week(tm, &iso_year, &week);
        put_signed(o, year2(iso_year), 2, pad0);
        return 0;
    case 'G':
        iso_week(tm, &iso_year, &week);
        put_signed(o, iso_year, 4, pad0);
        return 0;
    case 'H':
        put_signed(o, tm->tm_hour, 2, pad0);
        return 0;
    case 'I':
        put_signed(o, tm->tm_hour % 12 ? tm->tm_hour % 12 : 12, 2, pad0);
        return 0;
    case 'j':
        put_signed(o, tm->tm_yday + 1, 3, pad0);
        return 0;
    case 'k':
        put_signed(o, tm->tm_hour, 2, pads);
        return 0;
    case 'l':
        put_signed(o, tm->tm_hour % 12 ? tm->tm_hour % 12 : 12, 2, pads);
        return 0;
    case 'm':
        put_signed(o, tm->tm_mon + 1, 2, pad0);
        return 0;
    case 'M':
        put_signed(o, tm->tm_min, 2, pad0);
        return 0;
    case 'n':
        puts_(o, "\n");
        return 0;
    case 'p':
        puts_(o, tm->tm_hour < 12 ? "AM" : "PM");
        return 0;
    case 'P':
        puts_(o, tm->tm_hour < 12 ? "am" : "pm");
        return 0;
    case 'r':
        return expand(o, "%I:%M:%S %p", z, NULL);
    case 'R':
        return expand(o, "%H:%M", z, NULL);
    case 's':
        put_signed(o, z->t, 1, pad0);
        return 0;
    case 'S':
        put_signed(o, tm->tm_sec, 2, pad0);
        return 0;
    case 't':
        puts_(o, "\t");
        return 0;
    case 'T':
    case 'X':
        return expand(o, "%H:%M:%S", z, NULL);
    case 'u':
        put_signed(o, tm->tm_wday ? tm->tm_wday : 7, 1, pad0);
        return 0;
    case 'U':
        put_signed(o, (tm->tm_yday - tm->tm_wday + 7) / 7, 2, pad0);
        return 0;
    case 'V':
        iso_week(tm, &iso_year, &week);
        put_signed(o, week, 2, pad0);
        return 0;
    case 'w':
        put_signed(o, tm->tm_wday, 1, pad0);
        return 0;
    case 'W':
        put_signed(o, (tm->tm_yday - (tm->tm_wday + 6) % 7 + 7) / 7, 2, pad0);
        return 0;
    case 'y':
        put_signed(o, year2(year), 2, pad0);
        return 0;
    case 'Y':
        put_signed(o, year, 4, pad0);
        return 0;
    case 'z': {
        /* "-00" (local time unknown) is -0000, as GNU date has it. */
        bool negative = z->utoff < 0 || (z->utoff == 0 && z->abbr[0] == '-');
        uint32_t a = (uint32_t)(z->utoff < 0 ? -(int64_t)z->utoff : z->utoff);

        put(o, negative ? "-" : "+", 1);
        put_num(o, false, a / 3600, 2, '0');
        if (colon)
            put(o, ":", 1);
        put_num(o, false, a / 60 % 60, 2, '0');
        return 0;
    }
    case 'Z':
        puts_(o, z->abbr);
        return 0;
    case '%':
        puts_(o, "%");
        return 0;
    default:
        return -EINVAL;
    }
}

/* Expands fmt. On an unknown conversion returns -EINVAL and, if ret_bad, where it starts. */
static int expand(struct out *o, const char *fmt, const struct zoned *z, const char **ret_bad)
{
    for (const char *p = fmt; *p; p++) {
        const char *start = p;
        char flag = 0;
        bool colon = false;

        if (*p != '%') {
            put(o, p, 1);
            continue;
        }
        p++;
        if (*p == '-' || *p == '_' || *p == '0')
            flag = *p++;
        if (*p == ':') {
            colon = true;
            p++;
        }
        if (*p == '\0' || convert(o, *p, flag, colon, z) < 0) {
            if (ret_bad)
                *ret_bad = start;
            return -EINVAL;
        }
    }
    return 0;
}

static int zoned_time(const struct svc_tz *tz, int64_t t, struct zoned *ret)
{
    struct svc_tz_info info;
    time_t tt;
    int r;

    memset(ret, 0, sizeof(*ret));
    ret->t = t;
    if (!tz) {
        tt = (time_t)t;
        if ((int64_t)tt != t || !localtime_r(&tt, &ret->tm))
            return -EOVERFLOW;
        ret->utoff = (int32_t)ret->tm.tm_gmtoff;
        snprintf(ret->abbr, sizeof(ret->abbr), "%s", ret->tm.tm_zone ? ret->tm.tm_zone : "");
        return 0;
    }
    r = svc_tz_lookup(tz, t, &info);
    if (r < 0)
        return r;
    tt = (time_t)(t + info.utoff);
    if ((int64_t)tt != t + info.utoff || !gmtime_r(&tt, &ret->tm))
        return -EOVERFLOW;
    ret->tm.tm_isdst = info.is_dst;
    ret->utoff = info.utoff;
    memcpy(ret->abbr, info.abbr, sizeof(ret->abbr));
    return 0;
}

int svc_date_format(enum svc_date_kind kind, const char *format, const struct svc_tz *tz, int64_t t,
                    char *buf, size_t len)
{
    struct out o = {.buf = buf, .cap = len ? len - 1 : 0};
    struct zoned z;
    const char *fmt;
    int r;

    switch (kind) {
    case SVC_DATE_DATE:
        fmt = format ? format : SVC_DATE_DEFAULT_FORMAT;
        break;
    case SVC_DATE_ISO:
        fmt = "%Y-%m-%dT%H:%M:%S%:z";
        break;
    case SVC_DATE_UNIX:
        fmt = "%s";
        break;
    default:
        return -EINVAL;
    }
    if (len == 0)
        return -ERANGE;
    r = zoned_time(tz, t, &z);
    if (r < 0)
        return r;
    r = expand(&o, fmt, &z, NULL);
    if (r < 0)
        return r;
    put(&o, "\n", 1);
    buf[o.len] = '\0';
    if (o.full)
        return -ERANGE;
    return (int)o.len;
}

int svc_date_format_check(const char *format, struct core_err *err)
{
    static const char field[] = "options.format";
    char scratch[SVC_DATE_REPLY_MAX];
    struct out o = {.buf = scratch, .cap = sizeof(scratch) - 1};
    struct zoned z = {.tm = {.tm_mday = 1, .tm_year = 70, .tm_wday = 4}};
    const char *bad = NULL;
    size_t n = strlen(format);

    if (n == 0 || n > SVC_DATE_FORMAT_MAX) {
        core_err_set(err, -EINVAL, field, "must be 1 to %d bytes long", SVC_DATE_FORMAT_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)format[i] < 0x20 || format[i] == 0x7f) {
            core_err_set(err, -EINVAL, field,
                         "control character at byte %zu (use %%n for a newline, %%t for a tab)", i);
            return -EINVAL;
        }
    }
    if (expand(&o, format, &z, &bad) < 0) {
        size_t k = strspn(bad + 1, "-_0:") + 2;

        core_err_set(err, -EINVAL, field,
                     "unsupported conversion \"%.*s\" at byte %zu; supported: %%a %%A %%b %%B "
                     "%%c %%C %%d %%D %%e %%F %%g %%G %%h %%H %%I %%j %%k %%l %%m %%M %%n %%p "
                     "%%P %%r %%R %%s %%S %%t %%T %%u %%U %%V %%w %%W %%x %%X %%y %%Y %%z %%:z "
                     "%%Z %%%%, flags - _ 0 on numbers",
                     (int)(k < strlen(bad) ? k : strlen(bad)), bad, (size_t)(bad - format));
        return -EINVAL;
    }
    return 0;
}

/* ---- the service ---- */

static const char *tz_dir(void)
{
    const char *dir = getenv("TZDIR");

    return dir && dir[0] == '/' ? dir : SVC_TZ_DIR_DEFAULT;
}

/* Loads the zone an option names: *ret NULL for the daemon's zone. */
/*
 * The daemon's own zone as glibc finds it (TZ, else /etc/localtime), read once, so that
 * requests never call localtime_r(), whose time zone state other threads may be changing. NULL
 * when it cannot be read: then localtime_r() answers after all.
 */
static struct svc_tz *local_zone_load(void)
{
    const char *env = getenv("TZ");
    struct svc_tz *tz = NULL;
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    ssize_t n;
    int fd;

    if (env && *env == ':')
        env++;
    if (env && *env) {
        if (svc_tz_name_is_valid(env) && svc_tz_load(tz_dir(), env, &tz, NULL) == 0)
            return tz;
        if (strcmp(env, "UTC") == 0)
            return svc_tz_new_utc();
        if (svc_tz_parse_posix(env, &tz, NULL) == 0)
            return tz;
        return NULL;
    }
    fd = open("/etc/localtime", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return svc_tz_new_utc(); /* glibc's answer with no zone configured */
    for (;;) {
        if (len == cap) {
            uint8_t *grown = cap < (1u << 20) ? realloc(data, cap ? cap * 2 : 4096) : NULL;

            if (!grown)
                break;
            data = grown;
            cap = cap ? cap * 2 : 4096;
        }
        n = read(fd, data + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (svc_tz_parse(data, len, &tz, NULL) < 0)
        tz = NULL;
    free(data);
    return tz;
}

static int zone_load(const char *name, struct svc_tz **ret, struct core_err *err)
{
    static const char field[] = "options.timezone";
    struct core_err zerr = {0};
    struct svc_tz *tz = NULL;
    int r;

    if (strcmp(name, SVC_DATE_TZ_LOCAL) == 0) {
        *ret = local_zone_load();
        return 0;
    }
    if (strcmp(name, "UTC") == 0) {
        tz = svc_tz_new_utc();
        if (!tz)
            return -ENOMEM;
        *ret = tz;
        return 0;
    }
    if (!svc_tz_name_is_valid(name)) {
        core_err_set(err, -EINVAL, field,
                     "\"%.64s\" is not a time zone name: \"local\", \"UTC\" or an IANA name "
                     "such as \"Europe/Rome\"",
                     name);
        return -EINVAL;
    }
    r = svc_tz_load(tz_dir(), name, &tz, &zerr);
    if (r == -ENOENT || r == -EINVAL) {
        core_err_set(err, -EINVAL, field, "%s", zerr.msg);
        return -EINVAL;
    }
    if (r < 0) {
        core_err_set(err, r, field, "%s", zerr.msg[0] ? zerr.msg : strerror(-r));
        return r;
    }
    *ret = tz;
    return 0;
}

static const struct core_option date_options[] = {
    {.name = "timezone",
     .type = CORE_OPTION_STRING,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
     .live = true,
     .default_string = SVC_DATE_TZ_LOCAL,
     .help = "\"local\" (the daemon's zone), \"UTC\" or an IANA name such as \"Europe/Rome\""},
    {.name = "format",
     .type = CORE_OPTION_STRING,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
     .live = true,
     .default_string = SVC_DATE_DEFAULT_FORMAT,
     .help = "the strftime format of the date line (not of iso or unix), 1-128 bytes"},
};

/* The service's options_verify: the format parses, the zone can be loaded. */
static int date_options_verify(json_t *opts, enum core_transport t, struct core_err *err)
{
    const char *tz_name = json_string_value(json_object_get(opts, "timezone"));
    const char *format = json_string_value(json_object_get(opts, "format"));
    struct svc_tz *tz = NULL;
    int r;

    (void)t;
    r = svc_date_format_check(format, err);
    if (r < 0 || strcmp(tz_name, SVC_DATE_TZ_LOCAL) == 0)
        return r;
    r = zone_load(tz_name, &tz, err);
    svc_tz_free(tz);
    return r;
}

static int date_instance_new(const json_t *opts, enum core_transport t,
                             const struct core_svc_env *env, void **ret_inst, struct core_err *err)
{
    const char *tz_name = json_string_value(json_object_get(opts, "timezone"));
    const char *format = json_string_value(json_object_get(opts, "format"));
    struct date_inst *inst;
    int r;

    (void)t;
    if (!tz_name)
        tz_name = SVC_DATE_TZ_LOCAL;
    if (!format)
        format = SVC_DATE_DEFAULT_FORMAT;
    r = svc_date_format_check(format, err);
    if (r < 0)
        return r;
    inst = calloc(1, sizeof(*inst));
    if (!inst)
        return -ENOMEM;
    r = zone_load(tz_name, &inst->tz, err);
    if (r < 0) {
        free(inst);
        return r;
    }
    snprintf(inst->format, sizeof(inst->format), "%s", format);
    inst->metrics = env ? env->metrics : NULL;
    *ret_inst = inst;
    return 0;
}

static void date_instance_free(void *p)
{
    struct date_inst *inst = p;

    if (!inst)
        return;
    svc_tz_free(inst->tz);
    free(inst);
}

static void count(const struct date_inst *inst, enum date_counter c)
{
    if (inst->metrics)
        core_metrics_svc_add(inst->metrics, c, 1);
}

/* Appends the reply to a request of kind k for the current time. */
static int reply(const struct date_inst *inst, enum svc_date_kind k, struct core_buf *out)
{
    char text[SVC_DATE_REPLY_MAX];
    struct timespec now;
    int n;

    if (clock_gettime(CLOCK_REALTIME, &now) < 0)
        return -errno;
    n = svc_date_format(k, inst->format, inst->tz, (int64_t)now.tv_sec, text, sizeof(text));
    if (n < 0)
        return n;
    n = core_buf_append(out, text, (size_t)n);
    if (n < 0)
        return n;
    count(inst, request_counters[k]);
    return 0;
}

static int date_session_open(void *p, void *s, struct core_buf *out)
{
    struct date_session *sess = s;
    int r;

    sess->inst = p;
    r = reply(sess->inst, SVC_DATE_DATE, out);
    return r < 0 ? r : CORE_VERDICT_CLOSE;
}

static int date_session_feed(void *s, const uint8_t *in, size_t len, struct core_buf *out)
{
    (void)s;
    (void)in;
    (void)len;
    (void)out;
    return CORE_VERDICT_CLOSE;
}

static int date_session_eof(void *s, struct core_buf *out)
{
    (void)s;
    (void)out;
    return CORE_VERDICT_CLOSE;
}

static void date_session_close(void *s, bool completed)
{
    (void)s;
    (void)completed;
}

static int date_datagram(void *p, const uint8_t *in, size_t len, struct core_buf *out)
{
    const struct date_inst *inst = p;
    int k, r;

    k = svc_date_request_parse(in, len);
    switch (k) {
    case -EMSGSIZE:
        count(inst, CTR_DROPPED_TOO_LONG);
        return 0;
    case -ENODATA:
        count(inst, CTR_DROPPED_EMPTY);
        return 0;
    case -EBADMSG:
        count(inst, CTR_DROPPED_UNKNOWN);
        return 0;
    default:
        break;
    }
    r = reply(inst, (enum svc_date_kind)k, out);
    return r < 0 ? r : 1;
}

const struct core_service svc_date = {
    .name = "date",
    .help = "tells the time: daytime (RFC 867) over TCP, date, iso or unix on request over UDP",
    .transports = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
    /* Every model: its instance is read-only after instance_new, its sessions share nothing. */
    .refused_models = 0,
    .counters = date_counters,
    .counter_help = date_counter_help,
    .counter_transports = date_counter_transports,
    .n_counters = CTR_COUNT,
    .options = date_options,
    .n_options = sizeof(date_options) / sizeof(date_options[0]),
    .options_verify = date_options_verify,
    .instance_new = date_instance_new,
    .instance_free = date_instance_free,
    .session_size = sizeof(struct date_session),
    .session_open = date_session_open,
    .session_feed = date_session_feed,
    .session_eof = date_session_eof,
    .session_close = date_session_close,
    .datagram = date_datagram,
};
