#ifndef SVC_TZIF_H
#define SVC_TZIF_H

/*
 * Time zones without the TZ environment variable: a reader of TZif files (RFC 8536, versions
 * 1 to 4, as zic writes them under /usr/share/zoneinfo) and of POSIX TZ strings (the footer of
 * a TZif file, e.g. "CET-1CEST,M3.5.0,M10.5.0/3"). A zone answers, for any instant, the UTC
 * offset and the abbreviation in force, as localtime_r() would with TZ set to that zone.
 *
 * A struct svc_tz is immutable once built: any number of threads may look up in one
 * concurrently. Nothing here touches the process's TZ or calls tzset().
 *
 * Not supported: leap-second zones (the "right/" tree): they are refused as invalid.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Where zone names are looked up when no directory is given (the TZDIR of glibc). */
#define SVC_TZ_DIR_DEFAULT "/usr/share/zoneinfo"
/* Longest abbreviation kept ("CEST", "+0530"); a zone with a longer one is refused. */
#define SVC_TZ_ABBR_MAX 15
/* Longest zone name accepted ("America/Argentina/ComodRivadavia" is 32). */
#define SVC_TZ_NAME_MAX 128
/* Largest TZif file read (real ones are under 4 KiB). */
#define SVC_TZ_FILE_MAX (1024 * 1024)

struct svc_tz;

/* Local time at an instant. */
struct svc_tz_info {
    int32_t utoff; /* seconds east of UTC (Rome in winter: 3600) */
    bool is_dst;
    char abbr[SVC_TZ_ABBR_MAX + 1]; /* "CET", NUL-terminated */
};

/*
 * Parses the TZif data data[0..len) (the whole content of a zone file). Pure: no I/O, no
 * global state, safe on any bytes. Versions 2 and later use the 64-bit data and the footer's
 * TZ string for instants after the last transition; version 1 uses the 32-bit data.
 * Returns 0 with *ret (free with svc_tz_free()), -EINVAL when the data is not a valid TZif
 * file (err says what is wrong), -ENOMEM.
 */
int svc_tz_parse(const uint8_t *data, size_t len, struct svc_tz **ret, struct core_err *err);

/*
 * Builds a zone from a POSIX TZ string ("UTC0", "EST5EDT,M3.2.0,M11.1.0", "<+0530>-5:30"),
 * with the version 3 extensions (rule times from -167 to 167 hours). A DST zone without rules
 * follows the US rules, as glibc does. Pure. Returns 0 with *ret, -EINVAL, -ENOMEM.
 */
int svc_tz_parse_posix(const char *text, struct svc_tz **ret, struct core_err *err);

/* A zone that is UTC at every instant, abbreviated "UTC". NULL on ENOMEM. */
struct svc_tz *svc_tz_new_utc(void);

/*
 * Whether name may name a zone file: 1 to SVC_TZ_NAME_MAX bytes of A-Z a-z 0-9 and "/_-+.",
 * not starting with "/", with no component starting with "." (so no "..").
 */
bool svc_tz_name_is_valid(const char *name);

/*
 * Reads and parses the zone file dir/name (dir NULL: SVC_TZ_DIR_DEFAULT). name must pass
 * svc_tz_name_is_valid(). Returns 0 with *ret, -EINVAL for a bad name or a file that is not a
 * valid TZif file, -ENOENT when there is no such zone, another negative errno when the file
 * cannot be read; err says which. Blocking file I/O; any thread.
 */
int svc_tz_load(const char *dir, const char *name, struct svc_tz **ret, struct core_err *err);

/*
 * The local time type in force at instant t (seconds since the epoch, UTC). Any thread.
 * Returns 0 with *ret, or -EOVERFLOW when t is beyond +-2^55 seconds.
 */
int svc_tz_lookup(const struct svc_tz *tz, int64_t t, struct svc_tz_info *ret);

/* Frees a zone. Accepts NULL. */
void svc_tz_free(struct svc_tz *tz);

#endif
