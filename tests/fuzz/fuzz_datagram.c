/*
 * Every service's UDP datagram callback, as the UDP runner calls it (one reply buffer reused
 * from datagram to datagram), and the date service's request classification and formatting.
 *
 * Input: a datagram. When it holds a NUL byte, the bytes before it are also tried as the date
 * service's "format" option, with the rest as the datagram and, in its last 8 bytes, an
 * instant to format.
 *
 * Instances: echo with default options and with max_datagram 16; date with default options
 * (the daemon's zone, date's own format); date in UTC with the input's format, when the
 * option check accepts it.
 *
 * Properties: echo answers the datagram's bytes, or nothing when it is over max_datagram;
 * date's classification agrees with its documented rule (a word of date/iso/unix in any case,
 * then only spaces, tabs, CR or LF; at most SVC_DATE_REQUEST_MAX bytes); date answers exactly
 * the requests it classifies as such, with one newline-terminated line of at most
 * SVC_DATE_REPLY_MAX bytes; a format the check accepts formats any representable instant
 * within SVC_DATE_REPLY_MAX. No reply is ever larger than a UDP payload.
 */

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/service.h"
#include "svc/date.h"
#include "svc/echo.h"
#include "svc/tzif.h"

#include "fuzz.h"

#define UDP_PAYLOAD_MAX 65507
#define SMALL_DATAGRAM 16
#define TZ_LIMIT (INT64_C(1) << 55) /* svc_tz_lookup()'s range */

struct instance {
    const struct core_service *svc;
    void *inst;
};

static struct instance echo_default, echo_small, date_default;
static struct svc_tz *utc;
static struct core_buf reply; /* reused, as the runner reuses its reply buffers */

static void instance_new(struct instance *in, const struct core_service *svc, const char *json)
{
    const struct core_svc_env env = {.listener_id = "fuzz"};
    json_t *given = json_loads(json, 0, NULL), *opts = NULL;
    struct core_err err = {0};

    FUZZ_CHECK(given);
    FUZZ_CHECK(core_service_options_check(svc, given, CORE_UDP, &opts, &err) == 0);
    FUZZ_CHECK(svc->instance_new(opts, CORE_UDP, &env, &in->inst, &err) == 0);
    in->svc = svc;
    json_decref(opts);
    json_decref(given);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    instance_new(&echo_default, &svc_echo, "{}");
    instance_new(&echo_small, &svc_echo, "{\"max_datagram\": 16}");
    instance_new(&date_default, &svc_date, "{}");
    utc = svc_tz_new_utc();
    FUZZ_CHECK(utc);
    return 0;
}

/* The datagram callback on in[0..len): its answer, the reply in the shared buffer. */
static int datagram(const struct instance *in, const uint8_t *data, size_t len)
{
    int r;

    reply.len = 0;
    r = in->svc->datagram(in->inst, data, len, &reply);
    FUZZ_CHECK(r == 0 || r == 1 || (r < 0 && r > -4096));
    if (r == 1)
        FUZZ_CHECK(reply.len <= UDP_PAYLOAD_MAX);
    return r;
}

static void check_echo(const struct instance *in, size_t max, const uint8_t *data, size_t size)
{
    int r = datagram(in, data, size);

    if (size > max) {
        FUZZ_CHECK(r == 0);
        return;
    }
    FUZZ_CHECK(r == 1);
    FUZZ_CHECK(reply.len == size);
    FUZZ_CHECK(size == 0 || memcmp(reply.data, data, size) == 0);
}

static bool is_blank_byte(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The documented rule, written independently of the service. */
static int expected_kind(const uint8_t *in, size_t len)
{
    static const char *const words[SVC_DATE_KIND_COUNT] = {
        [SVC_DATE_DATE] = "date", [SVC_DATE_ISO] = "iso", [SVC_DATE_UNIX] = "unix"};
    size_t n = len;

    if (len > SVC_DATE_REQUEST_MAX)
        return -EMSGSIZE;
    while (n > 0 && is_blank_byte(in[n - 1]))
        n--;
    if (n == 0)
        return -ENODATA;
    for (int k = 0; k < SVC_DATE_KIND_COUNT; k++) {
        bool same = strlen(words[k]) == n;

        for (size_t i = 0; same && i < n; i++)
            same = tolower(in[i]) == words[k][i];
        if (same)
            return k;
    }
    return -EBADMSG;
}

/* A date reply: one line, within SVC_DATE_REPLY_MAX, shaped as its kind says. */
static void check_date_line(int kind, const char *text, size_t len)
{
    FUZZ_CHECK(len >= 1 && len < SVC_DATE_REPLY_MAX);
    FUZZ_CHECK(text[len - 1] == '\n');
    if (kind == SVC_DATE_UNIX) {
        size_t i = text[0] == '-' ? 1 : 0;

        FUZZ_CHECK(len >= i + 2);
        for (; i < len - 1; i++)
            FUZZ_CHECK(isdigit((unsigned char)text[i]));
    } else if (kind == SVC_DATE_ISO) {
        /* ...T..:..:..+..:.. with a year of four digits or more */
        FUZZ_CHECK(len >= 26);
        FUZZ_CHECK(text[len - 16] == 'T' && text[len - 4] == ':');
        FUZZ_CHECK(text[len - 7] == '+' || text[len - 7] == '-');
    }
}

static void check_date(const struct instance *in, const uint8_t *data, size_t size)
{
    int kind = svc_date_request_parse(data, size);
    int want = expected_kind(data, size);
    int r;

    FUZZ_CHECK(kind == want);
    r = datagram(in, data, size);
    if (kind < 0) {
        FUZZ_CHECK(r == 0);
        return;
    }
    FUZZ_CHECK(r == 1);
    check_date_line(kind, (const char *)reply.data, reply.len);
}

/* An accepted format, at instant t in UTC: a line within SVC_DATE_REPLY_MAX, or -EOVERFLOW. */
static void check_format_at(const char *format, int64_t t)
{
    char buf[SVC_DATE_REPLY_MAX];

    for (int k = 0; k < SVC_DATE_KIND_COUNT; k++) {
        int n = svc_date_format((enum svc_date_kind)k, format, utc, t, buf, sizeof(buf));

        if (t <= -TZ_LIMIT || t >= TZ_LIMIT) {
            FUZZ_CHECK(n == -EOVERFLOW || n > 0);
            if (n < 0)
                continue;
        }
        if (n < 0)
            fprintf(stderr, "format \"%s\" at %lld: %s\n", format, (long long)t, strerror(-n));
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(strlen(buf) == (size_t)n);
        check_date_line(k, buf, (size_t)n);
    }
}

static void check_format(const uint8_t *data, size_t size, const uint8_t *nul)
{
    static const int64_t instants[] = {
        0,
        -1,
        951782400 /* 2000-02-29 */,
        1795600965,
        INT32_MAX,
        INT32_MIN,
        253402300799 /* 9999-12-31 */,
        -62135596800 /* year 1 */,
        TZ_LIMIT - 1,
        -TZ_LIMIT + 1,
        TZ_LIMIT,
        INT64_MAX,
        INT64_MIN,
    };
    char format[SVC_DATE_FORMAT_MAX + 2];
    size_t flen = (size_t)(nul - data);
    const uint8_t *rest = nul + 1;
    size_t rest_len = size - flen - 1;
    struct core_err err = {0};
    struct instance date_fmt = {0};
    json_t *given, *opts = NULL;
    const struct core_svc_env env = {.listener_id = "fuzz"};
    int r;

    if (flen > SVC_DATE_FORMAT_MAX + 1)
        flen = SVC_DATE_FORMAT_MAX + 1;
    memcpy(format, data, flen);
    format[flen] = '\0';
    r = svc_date_format_check(format, &err);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    if (r < 0) {
        FUZZ_CHECK(strcmp(err.field, "options.format") == 0 && err.msg[0]);
        return;
    }

    for (size_t i = 0; i < sizeof(instants) / sizeof(instants[0]); i++)
        check_format_at(format, instants[i]);
    if (rest_len >= 8) {
        int64_t t;

        memcpy(&t, rest + rest_len - 8, 8);
        check_format_at(format, t);
    }

    /* Through the service, when the format can be a JSON string (UTF-8) at all. */
    given = json_pack("{s:s, s:s}", "timezone", "UTC", "format", format);
    if (!given)
        return;
    FUZZ_CHECK(core_service_options_check(&svc_date, given, CORE_UDP, &opts, &err) == 0);
    FUZZ_CHECK(svc_date.instance_new(opts, CORE_UDP, &env, &date_fmt.inst, &err) == 0);
    date_fmt.svc = &svc_date;
    check_date(&date_fmt, rest, rest_len);
    svc_date.instance_free(date_fmt.inst);
    json_decref(opts);
    json_decref(given);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);

    check_echo(&echo_default, UDP_PAYLOAD_MAX, data, size);
    check_echo(&echo_small, SMALL_DATAGRAM, data, size);
    check_date(&date_default, data, size);
    if (nul)
        check_format(data, size, nul);
    return 0;
}
