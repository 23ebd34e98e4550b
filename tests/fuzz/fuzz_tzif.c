/*
 * The time zone reader (svc/tzif.h): the content of a zone file, and a POSIX TZ string (the
 * input up to its first NUL, when it is not a TZif file).
 *
 * Properties: parsing answers 0, -EINVAL (with a message) or -ENOMEM; a zone it builds answers
 * every instant within +-2^55 seconds with an offset within RFC 8536's +-25:59:59 and a
 * NUL-terminated abbreviation, refuses instants beyond; the date service formats any of those
 * instants in that zone, in each of its kinds, into one line within SVC_DATE_REPLY_MAX.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "svc/date.h"
#include "svc/tzif.h"

#include "fuzz.h"

#define T_LIMIT (INT64_C(1) << 55)
#define UTOFF_LIMIT 93599 /* 25:59:59 */

static void check_instant(const struct svc_tz *tz, int64_t t)
{
    struct svc_tz_info info;
    char buf[SVC_DATE_REPLY_MAX];
    int r;

    memset(&info, 0x5a, sizeof(info));
    r = svc_tz_lookup(tz, t, &info);
    if (t > T_LIMIT || t < -T_LIMIT) {
        FUZZ_CHECK(r == -EOVERFLOW);
        return;
    }
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(info.utoff >= -UTOFF_LIMIT && info.utoff <= UTOFF_LIMIT);
    FUZZ_CHECK(memchr(info.abbr, '\0', sizeof(info.abbr)) != NULL);

    for (int k = 0; k < SVC_DATE_KIND_COUNT; k++) {
        int n = svc_date_format((enum svc_date_kind)k, NULL, tz, t, buf, sizeof(buf));

        FUZZ_CHECK(n > 0 && n < (int)sizeof(buf));
        FUZZ_CHECK(strlen(buf) == (size_t)n && buf[n - 1] == '\n');
    }
}

static void check_zone(const struct svc_tz *tz, const uint8_t *data, size_t size)
{
    static const int64_t instants[] = {
        INT64_MIN,    -T_LIMIT - 1, -T_LIMIT,  -T_LIMIT + 1,
        INT32_MIN,    -1,           0,         1,
        951782400,    1795600965,   INT32_MAX, (INT64_C(1) << 32),
        253402300799, T_LIMIT - 1,  T_LIMIT,   T_LIMIT + 1,
        INT64_MAX,
    };

    for (size_t i = 0; i < sizeof(instants) / sizeof(instants[0]); i++)
        check_instant(tz, instants[i]);
    /* And instants the input chooses: its last bytes, 8 at a time. */
    for (size_t i = 0; i < 4 && size >= 8 * (i + 1); i++) {
        int64_t t;

        memcpy(&t, data + size - 8 * (i + 1), 8);
        check_instant(tz, t);
        check_instant(tz, t % (INT64_C(1) << 40));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct svc_tz *tz = NULL;
    struct core_err err = {0};
    int r = svc_tz_parse(data, size, &tz, &err);

    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
    if (r == 0) {
        FUZZ_CHECK(tz);
        check_zone(tz, data, size);
        svc_tz_free(tz);
    } else {
        FUZZ_CHECK(r != -EINVAL || err.msg[0]);
    }

    if (size < 4 || memcmp(data, "TZif", 4) != 0) {
        char *text = malloc(size + 1);

        FUZZ_CHECK(text);
        memcpy(text, data, size);
        text[size] = '\0';
        tz = NULL;
        memset(&err, 0, sizeof(err));
        r = svc_tz_parse_posix(text, &tz, &err);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r == 0) {
            check_zone(tz, data, size);
            svc_tz_free(tz);
        } else {
            FUZZ_CHECK(r != -EINVAL || err.msg[0]);
        }
        free(text);
    }
    return 0;
}
