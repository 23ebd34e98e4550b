#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "svc/date.h"
#include "svc/tzif.h"

#define ZONEINFO SVC_TZ_DIR_DEFAULT

/* Every conversion the "format" option accepts, with flags, as date(1) takes it after '+'. */
#define ALL_CONVERSIONS                                                                            \
    "%a|%A|%b|%B|%c|%C|%d|%D|%e|%F|%g|%G|%h|%H|%I|%j|%k|%l|%m|%M|%n|%p|%P|%r|%R|%s|%S|%t|%T|%u|"   \
    "%U|%V|%w|%W|%x|%X|%y|%Y|%z|%:z|%Z|%%|%-d|%_d|%0e|%-e|%-H|%_m|%-j|%_y|%-I|%0k|%-s"

/* ---- helpers ---- */

/* What `TZ=zone LC_ALL=C date -d @t ARGS` prints (args are passed to the shell as they are). */
static void date_cmd(const char *zone, int64_t t, const char *args, char *buf, size_t len)
{
    char cmd[1024];
    size_t n = 0;
    FILE *p;
    int status;

    snprintf(cmd, sizeof(cmd), "TZ='%s' LC_ALL=C date -d @%" PRId64 " %s", zone, t, args);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (n + 1 < len) {
        size_t k = fread(buf + n, 1, len - 1 - n, p);

        if (k == 0)
            break;
        n += k;
    }
    buf[n] = '\0';
    status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("'%s' failed", cmd);
}

static struct svc_tz *load(const char *name)
{
    struct svc_tz *tz = NULL;
    struct core_err err = {0};

    if (strcmp(name, "UTC") == 0)
        tz = svc_tz_new_utc();
    else if (svc_tz_load(NULL, name, &tz, &err) < 0)
        fail_msg("cannot load %s: %s", name, err.msg);
    assert_non_null(tz);
    return tz;
}

/* Formats t in zone with our formatter and with date(1), and requires the same bytes. */
static void expect_like_date(const char *zone, const struct svc_tz *tz, int64_t t)
{
    static const struct {
        enum svc_date_kind kind;
        const char *format;
        const char *args;
    } cases[] = {
        {SVC_DATE_DATE, NULL, ""},
        {SVC_DATE_ISO, NULL, "-Iseconds"},
        {SVC_DATE_UNIX, NULL, "+%s"},
        {SVC_DATE_DATE, ALL_CONVERSIONS, "'+" ALL_CONVERSIONS "'"},
    };
    char ours[SVC_DATE_REPLY_MAX], theirs[SVC_DATE_REPLY_MAX];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = svc_date_format(cases[i].kind, cases[i].format, tz, t, ours, sizeof(ours));

        assert_true(n > 0);
        date_cmd(zone, t, cases[i].args, theirs, sizeof(theirs));
        if (strcmp(ours, theirs) != 0)
            fail_msg("%s @%" PRId64 " date %s:\n ours:   %s theirs: %s", zone, t, cases[i].args,
                     ours, theirs);
        assert_int_equal(n, strlen(theirs));
    }
}

static void expect_zone_like_date(const char *zone, const int64_t *ts, size_t n)
{
    struct svc_tz *tz = load(zone);

    for (size_t i = 0; i < n; i++)
        expect_like_date(zone, tz, ts[i]);
    svc_tz_free(tz);
}

static int64_t now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

/* ---- the formatter against date(1) ---- */

static void test_date_format_utc_matches_date_command(void **state)
{
    static const int64_t ts[] = {
        0,
        -1,
        1795600965,
        951782400, /* 2000-02-29 */
        1000000000,
        2147483647,
        2147483648,
        4102444800, /* 2100-01-01 */
        1798675200,
        1798761600, /* 2026-12-31, 2027-01-01: ISO weeks */
        1609632000,
        1230508800, /* 2021-01-03 (week 53 of 2020), 2008-12-29 (week 1 of 2009) */
        1767225599,
        43200,        /* 23:59:59, noon: %I %l %p */
        -59000000000, /* year 100 */
        -62167219200, /* year 0 */
    };

    (void)state;
    expect_zone_like_date("UTC", ts, sizeof(ts) / sizeof(ts[0]));
    expect_zone_like_date("Etc/UTC", ts, sizeof(ts) / sizeof(ts[0]));
}

static void test_date_format_rome_summer_winter_and_history_match_date_command(void **state)
{
    static const int64_t ts[] = {
        1795600965, /* winter, CET */
        1783000000, /* summer, CEST */
        1774745999,
        1774746000, /* 2026-03-29 01:00 UTC: CET -> CEST */
        1792889999,
        1792890000, /* 2026-10-25 01:00 UTC: CEST -> CET */
        0,
        -3000000000, /* 1970 CET; 1874 Rome Mean Time, +00:49:56 */
        -800000000,  /* 1944, war time */
        4118000000,
        4105000000,   /* 2100 summer and winter: the footer's rules */
        253402300799, /* 9999-12-31 */
    };

    (void)state;
    expect_zone_like_date("Europe/Rome", ts, sizeof(ts) / sizeof(ts[0]));
}

static void test_date_format_new_york_matches_date_command(void **state)
{
    static const int64_t ts[] = {
        1795600965,  1783000000, 1773558000, 1773554399, /* around 2026-03-08 07:00 UTC */
        1162101600,  1173596400,                         /* 2006 and 2007 rules */
        -3000000000,                                     /* local mean time, -4:56:02 */
        4118000000,  4105000000,
    };

    (void)state;
    expect_zone_like_date("America/New_York", ts, sizeof(ts) / sizeof(ts[0]));
}

static void test_date_format_kolkata_half_hour_offset_matches_date_command(void **state)
{
    static const int64_t ts[] = {1795600965, 1783000000, -800000000, 0, 4118000000};

    (void)state;
    expect_zone_like_date("Asia/Kolkata", ts, sizeof(ts) / sizeof(ts[0]));
}

static void test_date_format_lord_howe_half_hour_dst_matches_date_command(void **state)
{
    static const int64_t ts[] = {
        1783000000,                         /* July: +10:30 */
        1795600965,                         /* November: +11 */
        1775318399, 1775318400, 1775320200, /* 2026-04-05: +11 -> +10:30 */
        4118000000, 4105000000,             /* 2100: the footer's rules */
    };

    (void)state;
    expect_zone_like_date("Australia/Lord_Howe", ts, sizeof(ts) / sizeof(ts[0]));
}

static void test_date_format_southern_and_negative_dst_footers_match_date_command(void **state)
{
    /* Dublin's footer has negative DST (IST-1GMT0,M10.5.0,M3.5.0/1), Nuuk's negative rule
     * times, Troll a two-hour DST, Chatham a 12:45 offset. 2100 is past every transition. */
    static const char *const zones[] = {"Europe/Dublin", "America/Nuuk", "Antarctica/Troll",
                                        "Pacific/Chatham", "America/Santiago"};
    static const int64_t ts[] = {4102444800, 4114000000, 4118000000, 4125000000, 4130000000};

    (void)state;
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
        expect_zone_like_date(zones[i], ts, sizeof(ts) / sizeof(ts[0]));
}

static void test_date_format_posix_tz_strings_match_date_command(void **state)
{
    static const char *const specs[] = {
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "<+0330>-3:30",
        "XXX-10YYY,M10.1.0,M4.1.0/3",
        "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
        "AAA3BBB,J60/2,300/-1",
        "EST5EDT",
        "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
    };
    static const int64_t ts[] = {1795600965, 1783000000, 1772000000, 1777000000, 0, 951868800};

    (void)state;
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        struct svc_tz *tz = NULL;
        struct core_err err = {0};

        if (svc_tz_parse_posix(specs[i], &tz, &err) < 0)
            fail_msg("%s: %s", specs[i], err.msg);
        for (size_t j = 0; j < sizeof(ts) / sizeof(ts[0]); j++)
            expect_like_date(specs[i], tz, ts[j]);
        svc_tz_free(tz);
    }
}

static void test_date_format_daemon_zone_follows_tz_like_date(void **state)
{
    static const int64_t ts[] = {1795600965, 1783000000, 0};
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;

    (void)state;
    /* The daemon's zone is whatever localtime_r() uses: set it here, before any thread. */
    setenv("TZ", "America/New_York", 1);
    tzset();
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        expect_like_date("America/New_York", NULL, ts[i]);
    if (saved)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
}

static void test_date_format_small_buffer_fails_with_erange(void **state)
{
    char buf[10];

    (void)state;
    assert_int_equal(svc_date_format(SVC_DATE_DATE, NULL, NULL, 0, buf, sizeof(buf)), -ERANGE);
    /* "0\n" and its NUL need three bytes. */
    assert_int_equal(svc_date_format(SVC_DATE_UNIX, NULL, NULL, 0, buf, 2), -ERANGE);
    assert_int_equal(svc_date_format(SVC_DATE_UNIX, NULL, NULL, 0, buf, 3), 2);
    assert_string_equal(buf, "0\n");
}

/* ---- the TZif reader ---- */

static int is_tzif(const char *path)
{
    char magic[4];
    FILE *f = fopen(path, "rb");
    int ok;

    if (!f)
        return 0;
    ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "TZif", 4) == 0;
    fclose(f);
    return ok;
}

/* Compares every zone under dir with glibc's localtime_r() from 1901 to 2106. */
static void compare_tree(const char *rel, unsigned *ret_zones)
{
    char path[1024];
    struct dirent *de;
    DIR *d;

    snprintf(path, sizeof(path), "%s/%s", ZONEINFO, rel);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d))) {
        char name[512], full[1536];
        struct stat st;
        struct svc_tz *tz;

        if (de->d_name[0] == '.')
            continue;
        snprintf(name, sizeof(name), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        if (strcmp(name, "posix") == 0 || strcmp(name, "right") == 0 ||
            strcmp(name, "localtime") == 0)
            continue;
        snprintf(full, sizeof(full), "%s/%s", ZONEINFO, name);
        if (stat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            compare_tree(name, ret_zones);
            continue;
        }
        if (!is_tzif(full))
            continue;
        tz = load(name);
        setenv("TZ", name, 1);
        tzset();
        /* 15 days and 3917 s apart: every hour of the day, every season, both footers. */
        for (int64_t t = INT32_MIN; t < INT64_C(4300000000); t += 15 * 86400 + 3917) {
            time_t tt = (time_t)t;
            struct svc_tz_info info;
            struct tm tm;

            assert_non_null(localtime_r(&tt, &tm));
            assert_int_equal(svc_tz_lookup(tz, t, &info), 0);
            if (info.utoff != tm.tm_gmtoff || strcmp(info.abbr, tm.tm_zone) != 0 ||
                info.is_dst != (tm.tm_isdst > 0))
                fail_msg("%s @%" PRId64 ": ours %d %s dst %d, glibc %ld %s dst %d", name, t,
                         info.utoff, info.abbr, info.is_dst, tm.tm_gmtoff, tm.tm_zone, tm.tm_isdst);
        }
        svc_tz_free(tz);
        (*ret_zones)++;
    }
    closedir(d);
}

static void test_tz_every_installed_zone_matches_glibc(void **state)
{
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;
    unsigned zones = 0;

    (void)state;
    compare_tree("", &zones);
    assert_true(zones > 300);
    if (saved)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
}

static uint8_t *read_file(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = test_malloc(SVC_TZ_FILE_MAX);
    size_t n;

    assert_non_null(f);
    n = fread(data, 1, SVC_TZ_FILE_MAX, f);
    fclose(f);
    *ret_len = n;
    return data;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_tz_version1_data_is_read_with_32_bit_times(void **state)
{
    size_t len, v1_len;
    uint8_t *data = read_file(ZONEINFO "/Europe/Rome", &len);
    const uint8_t *h = data;
    struct svc_tz *v1 = NULL, *full = load("Europe/Rome");
    struct core_err err = {0};

    (void)state;
    /* The first header and its 32-bit block, relabelled version 1, are a valid v1 file. */
    v1_len = 44 + be32(h + 32) * 5 + be32(h + 36) * 6 + be32(h + 40) + be32(h + 28) * 8 +
             be32(h + 24) + be32(h + 20);
    assert_true(v1_len < len);
    data[4] = 0;
    assert_int_equal(svc_tz_parse(data, v1_len, &v1, &err), 0);
    for (int64_t t = INT32_MIN; t < INT32_MAX - 86400; t += 7 * 86400 + 1234) {
        struct svc_tz_info a, b;

        assert_int_equal(svc_tz_lookup(v1, t, &a), 0);
        assert_int_equal(svc_tz_lookup(full, t, &b), 0);
        assert_int_equal(a.utoff, b.utoff);
        assert_string_equal(a.abbr, b.abbr);
    }
    /* Version 1 data with trailing bytes is refused. */
    assert_int_equal(svc_tz_parse(data, v1_len + 1, &v1, &err), -EINVAL);
    svc_tz_free(v1);
    svc_tz_free(full);
    test_free(data);
}

static void test_tz_every_truncation_of_a_real_file_is_refused(void **state)
{
    size_t len;
    uint8_t *data = read_file(ZONEINFO "/Australia/Lord_Howe", &len);
    struct svc_tz *tz = NULL;

    (void)state;
    for (size_t n = 0; n < len; n++) {
        struct core_err err = {0};

        if (svc_tz_parse(data, n, &tz, &err) != -EINVAL)
            fail_msg("a file cut at %zu of %zu bytes was accepted", n, len);
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(svc_tz_parse(data, len, &tz, NULL), 0);
    svc_tz_free(tz);
    test_free(data);
}

/* A small TZif file, built field by field. */
struct tzif_builder {
    uint8_t b[512];
    size_t n;
};

static void put8(struct tzif_builder *w, uint8_t v)
{
    w->b[w->n++] = v;
}

static void put32(struct tzif_builder *w, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        put8(w, (uint8_t)(v >> (i * 8)));
}

static void put64(struct tzif_builder *w, int64_t v)
{
    put32(w, (uint32_t)((uint64_t)v >> 32));
    put32(w, (uint32_t)v);
}

static void put_bytes(struct tzif_builder *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_header(struct tzif_builder *w, char version, uint32_t timecnt, uint32_t typecnt,
                       uint32_t charcnt)
{
    put_bytes(w, "TZif", 4);
    put8(w, (uint8_t)version);
    for (int i = 0; i < 15; i++)
        put8(w, 0);
    put32(w, 0); /* isutcnt */
    put32(w, 0); /* isstdcnt */
    put32(w, 0); /* leapcnt */
    put32(w, timecnt);
    put32(w, typecnt);
    put32(w, charcnt);
}

/* A version 2 file: LMT +1:00, then at t=1000 "AAA" +2:00 and at t=2000 "BBB" -3:00 (DST),
 * then the footer. An empty version 1 block comes first, as `zic -b slim` writes it. */
static void build_v2(struct tzif_builder *w, const char *footer)
{
    static const char chars[] = "LMT\0AAA\0BBB";

    w->n = 0;
    put_header(w, '2', 0, 1, 1);
    put32(w, 0);
    put8(w, 0);
    put8(w, 0);
    put8(w, 0);
    put_header(w, '2', 2, 3, sizeof(chars));
    put64(w, 1000);
    put64(w, 2000);
    put8(w, 1);
    put8(w, 2);
    put32(w, 3600), put8(w, 0), put8(w, 0);
    put32(w, 7200), put8(w, 0), put8(w, 4);
    put32(w, (uint32_t)-10800), put8(w, 1), put8(w, 8);
    put_bytes(w, chars, sizeof(chars));
    put8(w, '\n');
    put_bytes(w, footer, strlen(footer));
    put8(w, '\n');
}

/* Offsets of fields in build_v2()'s output. */
#define V2_HDR2 (44 + 6 + 1)
#define V2_TIMES (V2_HDR2 + 44)
#define V2_IDX (V2_TIMES + 16)
#define V2_TYPES (V2_IDX + 2)

static void expect_info(const struct svc_tz *tz, int64_t t, int32_t utoff, const char *abbr,
                        bool is_dst)
{
    struct svc_tz_info info;

    assert_int_equal(svc_tz_lookup(tz, t, &info), 0);
    assert_int_equal(info.utoff, utoff);
    assert_string_equal(info.abbr, abbr);
    assert_int_equal(info.is_dst, is_dst);
}

static void test_tz_built_file_gives_types_by_transition_then_footer(void **state)
{
    struct tzif_builder w;
    struct svc_tz *tz = NULL;
    struct core_err err = {0};

    (void)state;
    build_v2(&w, "<+0530>-5:30");
    if (svc_tz_parse(w.b, w.n, &tz, &err) < 0)
        fail_msg("%s", err.msg);
    expect_info(tz, -5000000000, 3600, "LMT", false);
    expect_info(tz, 999, 3600, "LMT", false);
    expect_info(tz, 1000, 7200, "AAA", false);
    expect_info(tz, 1999, 7200, "AAA", false);
    expect_info(tz, 2000, 19800, "+0530", false); /* at and after the last: the footer */
    expect_info(tz, 4000000000, 19800, "+0530", false);
    svc_tz_free(tz);

    /* An empty footer: the last transition's type stays. */
    build_v2(&w, "");
    assert_int_equal(svc_tz_parse(w.b, w.n, &tz, &err), 0);
    expect_info(tz, 4000000000, -10800, "BBB", true);
    svc_tz_free(tz);
}

static void test_tz_malformed_files_are_refused(void **state)
{
    static const struct {
        const char *what;
        size_t off;
        uint8_t value;
    } edits[] = {
        {"bad magic", 0, 'X'},
        {"version 1 is not a label", 4, '1'},
        {"second header's magic", V2_HDR2 + 1, 'z'},
        {"no type", V2_HDR2 + 39, 0},
        {"too many types for the data", V2_HDR2 + 39, 4},
        {"transitions out of order", V2_TIMES + 14, 0},
        {"index out of range", V2_IDX + 1, 3},
        {"bad DST flag", V2_TYPES + 4, 2},
        {"abbreviation index out of range", V2_TYPES + 5, 12},
        {"offset out of range", V2_TYPES, 0x7f},
        {"leap seconds", V2_HDR2 + 31, 1},
    };
    struct tzif_builder w;
    struct svc_tz *tz = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        struct core_err err = {0};

        build_v2(&w, "UTC0");
        w.b[edits[i].off] = edits[i].value;
        if (svc_tz_parse(w.b, w.n, &tz, &err) != -EINVAL)
            fail_msg("%s: accepted", edits[i].what);
        assert_true(err.msg[0] != '\0');
    }

    build_v2(&w, "UTC0");
    w.b[w.n - 1] = 'x'; /* footer not terminated */
    assert_int_equal(svc_tz_parse(w.b, w.n, &tz, NULL), -EINVAL);
    build_v2(&w, "UTC0");
    w.b[w.n++] = 0; /* trailing bytes */
    assert_int_equal(svc_tz_parse(w.b, w.n, &tz, NULL), -EINVAL);
    build_v2(&w, "CET-1CEST,M3.5.0"); /* half a rule */
    assert_int_equal(svc_tz_parse(w.b, w.n, &tz, NULL), -EINVAL);
    build_v2(&w, "LMT-1");
    w.b[V2_TYPES + 6 * 3 + 3] = 'X'; /* "LMT" loses its NUL; the last one is kept */
    assert_int_equal(svc_tz_parse(w.b, w.n, &tz, NULL), 0);
    svc_tz_free(tz);
    build_v2(&w, "LMT-1");
    w.b[V2_TYPES + 6 * 3 + 11] = 'X'; /* the last abbreviation is not terminated */
    assert_int_equal(svc_tz_parse(w.b, w.n, &tz, NULL), -EINVAL);
}

static void test_tz_bad_posix_strings_are_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "U",
        "UT",
        "UTC",
        "UTC+",
        "UTC25",
        "CET-1CEST,",
        "CET-1CEST,M3.5.0,",
        "CET-1CEST,M13.5.0,M10.5.0",
        "CET-1CEST,M3.6.0,M10.5.0",
        "CET-1CEST,M3.5.7,M10.5.0",
        "CET-1CEST,J0,J100",
        "CET-1CEST,366,J100",
        "CET-1CEST,M3.5.0/168,M10.5.0",
        "<>0",
        "<UTC0",
        "ABCDEFGHIJKLMNOP0",
        "UTC0x",
        "UTC0 ",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct svc_tz *tz = NULL;

        if (svc_tz_parse_posix(bad[i], &tz, NULL) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
    }
}

static void test_tz_posix_dst_all_year_is_dst_across_new_year(void **state)
{
    struct svc_tz *tz = NULL;

    (void)state;
    /* RFC 8536 3.3.1: "EST5EDT,0/0,J365/25" is DST all year, also in the first five hours
     * of January 1 in UTC (glibc 2.36 says EST there; no installed zone has such a rule). */
    assert_int_equal(svc_tz_parse_posix("EST5EDT,0/0,J365/25", &tz, NULL), 0);
    expect_info(tz, 1798770000, -14400, "EDT", true); /* 2027-01-01 02:20 UTC */
    expect_info(tz, 1783000000, -14400, "EDT", true);
    expect_info(tz, 1798761599, -14400, "EDT", true);
    svc_tz_free(tz);
}

static void test_tz_names_are_checked_before_any_file_is_opened(void **state)
{
    static const char *const bad[] = {
        "",
        "/etc/localtime",
        "../../etc/passwd",
        "Europe/../../etc/passwd",
        ".hidden",
        "Europe/.Rome",
        "Europe//Rome",
        "Europe/Rome\n",
        "Europe Rome",
        "Europe/Rome;ls",
    };
    char long_name[SVC_TZ_NAME_MAX + 2];
    struct svc_tz *tz = NULL;
    struct core_err err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(svc_tz_name_is_valid(bad[i]));
        assert_int_equal(svc_tz_load(NULL, bad[i], &tz, &err), -EINVAL);
    }
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_false(svc_tz_name_is_valid(long_name));
    assert_true(svc_tz_name_is_valid("Europe/Rome"));
    assert_true(svc_tz_name_is_valid("Etc/GMT+5"));
    assert_true(svc_tz_name_is_valid("America/Port-au-Prince"));

    assert_int_equal(svc_tz_load(NULL, "Mars/Olympus_Mons", &tz, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "Mars/Olympus_Mons"));
    assert_int_equal(svc_tz_load(NULL, "Europe", &tz, &err), -EINVAL);    /* a directory */
    assert_int_equal(svc_tz_load(NULL, "zone.tab", &tz, &err), -EINVAL);  /* not TZif */
    assert_int_equal(svc_tz_load(NULL, "right/UTC", &tz, &err), -EINVAL); /* leap seconds */
    assert_non_null(strstr(err.msg, "leap"));
}

/* ---- requests, datagrams, sessions ---- */

struct fixture {
    struct core_metrics metrics;
    void *inst;
    uint8_t sess[64];
    struct core_buf out;
};

static struct fixture *start(enum core_transport t, const char *opts_text)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    json_t *opts = opts_text ? json_loads(opts_text, 0, NULL) : NULL, *checked = NULL;
    struct core_svc_env env = {.listener_id = "t", .state_dir = "/nonexistent"};
    struct core_err err = {0};

    core_metrics_init(&f->metrics);
    env.metrics = &f->metrics;
    assert_true(svc_date.session_size <= sizeof(f->sess));
    if (core_service_options_check(&svc_date, opts, t, &checked, &err) < 0)
        fail_msg("%s: %s", err.field, err.msg);
    assert_int_equal(svc_date.instance_new(checked, t, &env, &f->inst, &err), 0);
    json_decref(opts);
    json_decref(checked);
    return f;
}

static void finish(struct fixture *f)
{
    svc_date.instance_free(f->inst);
    core_buf_fini(&f->out);
    test_free(f);
}

static int counter_index(const char *name)
{
    for (unsigned i = 0; i < svc_date.n_counters; i++)
        if (strcmp(svc_date.counters[i], name) == 0)
            return (int)i;
    fail_msg("no counter %s", name);
    return -1;
}

/* Whether text is what date(1) prints (with args) at some instant in [from, to]. */
static bool is_date_output_between(const char *text, const char *zone, const char *args,
                                   int64_t from, int64_t to)
{
    char theirs[SVC_DATE_REPLY_MAX];

    for (int64_t t = from; t <= to; t++) {
        date_cmd(zone, t, args, theirs, sizeof(theirs));
        if (strcmp(text, theirs) == 0)
            return true;
    }
    return false;
}

static void test_date_request_words_are_classified(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        int want;
    } cases[] = {
        {"date", 4, SVC_DATE_DATE},
        {"date\n", 5, SVC_DATE_DATE},
        {"date  \r\n", 8, SVC_DATE_DATE},
        {"DATE", 4, SVC_DATE_DATE},
        {"Date\t", 5, SVC_DATE_DATE},
        {"iso", 3, SVC_DATE_ISO},
        {"ISO\r\n", 5, SVC_DATE_ISO},
        {"unix\n", 5, SVC_DATE_UNIX},
        {"", 0, -ENODATA},
        {" \r\n\t", 4, -ENODATA},
        {"garbage", 7, -EBADMSG},
        {" date", 5, -EBADMSG},
        {"date\0", 5, -EBADMSG},
        {"dates", 5, -EBADMSG},
        {"dat", 3, -EBADMSG},
        {"date now", 8, -EBADMSG},
        {"Wed Nov 25 10:02:45 UTC 2026\n", 29, -EBADMSG}, /* a reply is no request */
    };
    char exact[SVC_DATE_REQUEST_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (svc_date_request_parse((const uint8_t *)cases[i].in, cases[i].len) != cases[i].want)
            fail_msg("case %zu (\"%s\")", i, cases[i].in);

    memset(exact, ' ', sizeof(exact));
    memcpy(exact, "date", 4);
    assert_int_equal(svc_date_request_parse((const uint8_t *)exact, SVC_DATE_REQUEST_MAX),
                     SVC_DATE_DATE);
    assert_int_equal(svc_date_request_parse((const uint8_t *)exact, SVC_DATE_REQUEST_MAX + 1),
                     -EMSGSIZE);
}

static void test_date_datagram_dropped_requests_get_no_reply_and_are_counted(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *counter;
    } cases[] = {
        {"garbage", 7, "dropped_unknown_request"},
        {"date\0", 5, "dropped_unknown_request"},
        {"", 0, "dropped_empty"},
        {"\r\n", 2, "dropped_empty"},
        {NULL, 2000, "dropped_too_long"},
        {NULL, SVC_DATE_REQUEST_MAX + 1, "dropped_too_long"},
    };
    static uint8_t big[2000];

    (void)state;
    memset(big, 'a', sizeof(big));
    memcpy(big, "date", 4);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fixture *f = start(CORE_UDP, "{\"timezone\":\"UTC\"}");
        const uint8_t *in = cases[i].in ? (const uint8_t *)cases[i].in : big;
        int want = counter_index(cases[i].counter);

        assert_int_equal(svc_date.datagram(f->inst, in, cases[i].len, &f->out), 0);
        assert_int_equal(f->out.len, 0);
        for (unsigned c = 0; c < svc_date.n_counters; c++)
            if (f->metrics.svc[c] != ((int)c == want ? 1u : 0u))
                fail_msg("case %zu: counter %s is %" PRIu64, i, svc_date.counters[c],
                         (uint64_t)f->metrics.svc[c]);
        finish(f);
    }
}

static char *reply_text(struct fixture *f)
{
    static char text[SVC_DATE_REPLY_MAX];

    assert_true(f->out.len < sizeof(text));
    memcpy(text, f->out.data, f->out.len);
    text[f->out.len] = '\0';
    return text;
}

static void test_date_datagram_date_request_gets_what_date_prints(void **state)
{
    struct fixture *f = start(CORE_UDP, "{\"timezone\":\"Europe/Rome\"}");
    int64_t before, after;

    (void)state;
    before = now();
    assert_int_equal(svc_date.datagram(f->inst, (const uint8_t *)"date  \r\n", 8, &f->out), 1);
    after = now();
    assert_true(is_date_output_between(reply_text(f), "Europe/Rome", "", before, after));
    assert_int_equal(f->metrics.svc[counter_index("requests_date")], 1);
    finish(f);
}

static void test_date_datagram_iso_and_unix_requests_ignore_format(void **state)
{
    struct fixture *f = start(CORE_UDP, "{\"timezone\":\"Asia/Kolkata\",\"format\":\"%H:%M\"}");
    int64_t before, after;
    char *end;
    long long secs;

    (void)state;
    before = now();
    assert_int_equal(svc_date.datagram(f->inst, (const uint8_t *)"iso\n", 4, &f->out), 1);
    after = now();
    assert_true(is_date_output_between(reply_text(f), "Asia/Kolkata", "-Iseconds", before, after));
    core_buf_fini(&f->out);

    before = now();
    assert_int_equal(svc_date.datagram(f->inst, (const uint8_t *)"unix", 4, &f->out), 1);
    after = now();
    secs = strtoll(reply_text(f), &end, 10);
    assert_string_equal(end, "\n");
    assert_true(secs >= before && secs <= after);
    core_buf_fini(&f->out);

    before = now();
    assert_int_equal(svc_date.datagram(f->inst, (const uint8_t *)"date", 4, &f->out), 1);
    after = now();
    assert_true(is_date_output_between(reply_text(f), "Asia/Kolkata", "+%H:%M", before, after));

    assert_int_equal(f->metrics.svc[counter_index("requests_iso")], 1);
    assert_int_equal(f->metrics.svc[counter_index("requests_unix")], 1);
    assert_int_equal(f->metrics.svc[counter_index("requests_date")], 1);
    finish(f);
}

static void test_date_session_open_sends_date_line_and_closes(void **state)
{
    struct fixture *f = start(CORE_TCP, "{\"timezone\":\"America/New_York\"}");
    int64_t before, after;

    (void)state;
    before = now();
    assert_int_equal(svc_date.session_open(f->inst, f->sess, &f->out), CORE_VERDICT_CLOSE);
    after = now();
    assert_true(is_date_output_between(reply_text(f), "America/New_York", "", before, after));
    assert_int_equal(f->metrics.svc[counter_index("requests_date")], 1);
    /* Whatever the client sends is not answered. */
    assert_int_equal(svc_date.session_feed(f->sess, (const uint8_t *)"date\n", 5, &f->out),
                     CORE_VERDICT_CLOSE);
    assert_int_equal(svc_date.session_eof(f->sess, &f->out), CORE_VERDICT_CLOSE);
    assert_int_equal(strchr(reply_text(f), '\n') - reply_text(f) + 1, f->out.len);
    svc_date.session_close(f->sess, true);
    finish(f);
}

static void test_date_daemon_zone_is_the_default(void **state)
{
    struct fixture *f;
    int64_t before, after;
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;

    (void)state;
    setenv("TZ", "Australia/Lord_Howe", 1);
    tzset();
    f = start(CORE_UDP, NULL);
    before = now();
    assert_int_equal(svc_date.datagram(f->inst, (const uint8_t *)"date\n", 5, &f->out), 1);
    after = now();
    assert_true(is_date_output_between(reply_text(f), "Australia/Lord_Howe", "", before, after));
    finish(f);
    if (saved)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
}

/* ---- options ---- */

static void test_date_options_absent_are_filled_with_defaults(void **state)
{
    json_t *checked = NULL;
    char *text;

    (void)state;
    assert_int_equal(core_service_options_check(&svc_date, NULL, CORE_UDP, &checked, NULL), 0);
    text = json_dumps(checked, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(text, "{\"format\":\"%a %b %e %H:%M:%S %Z %Y\",\"timezone\":\"local\"}");
    free(text);
    json_decref(checked);
}

static void test_date_options_valid_are_kept(void **state)
{
    static const char *const good[] = {
        "{}",
        "{\"timezone\":\"UTC\"}",
        "{\"timezone\":\"local\"}",
        "{\"timezone\":\"Europe/Rome\",\"format\":\"%-d/%m/%Y %H:%M:%S %:z\"}",
        "{\"format\":\"Ora: %T è %Z%n\"}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        json_t *opts = json_loads(good[i], 0, NULL), *checked = NULL, *v;
        struct core_err err = {0};
        const char *key;

        assert_non_null(opts);
        if (core_service_options_check(&svc_date, opts, CORE_TCP, &checked, &err) < 0)
            fail_msg("%s refused: %s: %s", good[i], err.field, err.msg);
        json_object_foreach(opts, key, v)
        {
            assert_true(json_equal(json_object_get(checked, key), v));
        }
        assert_int_equal(json_object_size(checked), 2);
        json_decref(checked);
        json_decref(opts);
    }
}

static void test_date_options_invalid_are_refused_naming_the_field(void **state)
{
    char too_long[SVC_DATE_FORMAT_MAX + 32];
    char json[SVC_DATE_FORMAT_MAX + 64];
    const struct {
        const char *opts;
        const char *field;
    } bad[] = {
        {"[]", "options"},
        {"{\"timezone\":\"Mars/Olympus_Mons\"}", "options.timezone"},
        {"{\"timezone\":\"../../etc/passwd\"}", "options.timezone"},
        {"{\"timezone\":\"/etc/localtime\"}", "options.timezone"},
        {"{\"timezone\":\"Europe\"}", "options.timezone"},
        {"{\"timezone\":\"zone.tab\"}", "options.timezone"},
        {"{\"timezone\":\"\"}", "options.timezone"},
        {"{\"timezone\":5}", "options.timezone"},
        {"{\"timezone\":null}", "options.timezone"},
        {"{\"timezone\":\"Europe/Rome\\u0000x\"}", "options.timezone"},
        {"{\"format\":\"\"}", "options.format"},
        {"{\"format\":7}", "options.format"},
        {"{\"format\":\"%Q\"}", "options.format"},
        {"{\"format\":\"%N\"}", "options.format"},
        {"{\"format\":\"%5d\"}", "options.format"},
        {"{\"format\":\"%-a\"}", "options.format"},
        {"{\"format\":\"%:H\"}", "options.format"},
        {"{\"format\":\"100%\"}", "options.format"},
        {"{\"format\":\"a\\nb\"}", "options.format"},
        {"{\"colour\":\"red\"}", "options.colour"},
        {json, "options.format"},
    };

    (void)state;
    memset(too_long, 'x', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    too_long[SVC_DATE_FORMAT_MAX + 1] = '\0';
    snprintf(json, sizeof(json), "{\"format\":\"%s\"}", too_long);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *opts = json_loads(bad[i].opts, JSON_ALLOW_NUL, NULL), *checked = NULL;
        struct core_err err = {0};

        assert_non_null(opts);
        if (core_service_options_check(&svc_date, opts, CORE_UDP, &checked, &err) != -EINVAL)
            fail_msg("%s accepted", bad[i].opts);
        assert_string_equal(err.field, bad[i].field);
        assert_true(err.msg[0] != '\0');
        assert_null(checked);
        json_decref(opts);
    }
}

static void test_date_format_check_names_the_bad_conversion(void **state)
{
    struct core_err err = {0};

    (void)state;
    assert_int_equal(svc_date_format_check("%Y-%m-%d %Q", &err), -EINVAL);
    assert_string_equal(err.field, "options.format");
    assert_non_null(strstr(err.msg, "\"%Q\" at byte 9"));
    assert_int_equal(svc_date_format_check(SVC_DATE_DEFAULT_FORMAT, NULL), 0);
}

static void test_date_instance_new_with_a_vanished_zone_fails(void **state)
{
    json_t *opts = json_pack("{s:s, s:s}", "timezone", "Mars/Olympus_Mons", "format", "%T");
    struct core_err err = {0};
    void *inst = NULL;

    (void)state;
    assert_int_equal(svc_date.instance_new(opts, CORE_UDP, NULL, &inst, &err), -EINVAL);
    assert_string_equal(err.field, "options.timezone");
    assert_null(inst);
    json_decref(opts);
}

static void test_date_longest_format_fits_the_reply(void **state)
{
    char fmt[SVC_DATE_FORMAT_MAX + 1], buf[SVC_DATE_REPLY_MAX];
    struct svc_tz *tz = load("UTC");

    (void)state;
    /* The widest conversion, as often as the limit allows, in the widest year gmtime gives. */
    for (size_t i = 0; i + 2 <= SVC_DATE_FORMAT_MAX; i += 2)
        memcpy(fmt + i, "%c", 2);
    fmt[SVC_DATE_FORMAT_MAX] = '\0';
    assert_int_equal(svc_date_format_check(fmt, NULL), 0);
    assert_true(svc_date_format(SVC_DATE_DATE, fmt, tz, INT64_C(1) << 55, buf, sizeof(buf)) > 0);
    assert_int_equal(
        svc_date_format(SVC_DATE_DATE, NULL, tz, (INT64_C(1) << 55) + 1, buf, sizeof(buf)),
        -EOVERFLOW);
    svc_tz_free(tz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date_format_utc_matches_date_command),
        cmocka_unit_test(test_date_format_rome_summer_winter_and_history_match_date_command),
        cmocka_unit_test(test_date_format_new_york_matches_date_command),
        cmocka_unit_test(test_date_format_kolkata_half_hour_offset_matches_date_command),
        cmocka_unit_test(test_date_format_lord_howe_half_hour_dst_matches_date_command),
        cmocka_unit_test(test_date_format_southern_and_negative_dst_footers_match_date_command),
        cmocka_unit_test(test_date_format_posix_tz_strings_match_date_command),
        cmocka_unit_test(test_date_format_daemon_zone_follows_tz_like_date),
        cmocka_unit_test(test_date_format_small_buffer_fails_with_erange),
        cmocka_unit_test(test_date_format_check_names_the_bad_conversion),
        cmocka_unit_test(test_date_longest_format_fits_the_reply),
        cmocka_unit_test(test_tz_every_installed_zone_matches_glibc),
        cmocka_unit_test(test_tz_version1_data_is_read_with_32_bit_times),
        cmocka_unit_test(test_tz_every_truncation_of_a_real_file_is_refused),
        cmocka_unit_test(test_tz_built_file_gives_types_by_transition_then_footer),
        cmocka_unit_test(test_tz_malformed_files_are_refused),
        cmocka_unit_test(test_tz_bad_posix_strings_are_refused),
        cmocka_unit_test(test_tz_posix_dst_all_year_is_dst_across_new_year),
        cmocka_unit_test(test_tz_names_are_checked_before_any_file_is_opened),
        cmocka_unit_test(test_date_request_words_are_classified),
        cmocka_unit_test(test_date_datagram_dropped_requests_get_no_reply_and_are_counted),
        cmocka_unit_test(test_date_datagram_date_request_gets_what_date_prints),
        cmocka_unit_test(test_date_datagram_iso_and_unix_requests_ignore_format),
        cmocka_unit_test(test_date_session_open_sends_date_line_and_closes),
        cmocka_unit_test(test_date_daemon_zone_is_the_default),
        cmocka_unit_test(test_date_options_absent_are_filled_with_defaults),
        cmocka_unit_test(test_date_options_valid_are_kept),
        cmocka_unit_test(test_date_options_invalid_are_refused_naming_the_field),
        cmocka_unit_test(test_date_instance_new_with_a_vanished_zone_fails),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
