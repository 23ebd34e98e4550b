#ifndef SVC_DATE_H
#define SVC_DATE_H

/*
 * date: the lecture's Date Server over UDP, and daytime (RFC 867) over TCP. The date is
 * formatted in-process (no fork per request), as the `date` command prints it in the C locale,
 * in the listener's time zone.
 *
 * UDP: a datagram holding a request word, optionally followed by spaces, tabs, CR or LF, and
 * with the word in any case, is answered with one newline-terminated line:
 *   "date"  the date as `date` prints it ("Wed Nov 25 10:02:45 UTC 2026"), or as the "format"
 *           option says;
 *   "iso"   RFC 3339 with the offset, as `date -Iseconds` prints it ("2026-11-25T11:02:45+01:00");
 *   "unix"  seconds since the epoch, as `date +%s` prints it ("1795600965").
 * Anything else gets no reply at all (an error reply would let two UDP services bounce
 * datagrams at each other forever) and is counted: "dropped_empty" (nothing but white space),
 * "dropped_too_long" (over SVC_DATE_REQUEST_MAX bytes), "dropped_unknown_request". Answers are
 * counted by kind: "requests_date", "requests_iso", "requests_unix".
 *
 * TCP: on connect the server sends the "date" line (the same bytes as the UDP reply, so the
 * "format" option applies), closes, and counts it in "requests_date". Bytes the client sends
 * are ignored.
 *
 * Options (both transports):
 *   "timezone"  "local" (default): the daemon's own zone, as localtime(3) gives it (TZ, else
 *               /etc/localtime); "UTC"; or an IANA name such as "Europe/Rome", read once when
 *               the listener starts from $TZDIR or /usr/share/zoneinfo. A name that is not a
 *               zone is refused.
 *   "format"    the strftime(3) format of the "date" reply (not of "iso" or "unix"), 1 to
 *               SVC_DATE_FORMAT_MAX bytes, default SVC_DATE_DEFAULT_FORMAT (what `date`
 *               prints). Conversions, with C-locale names: %a %A %b %B %c %C %d %D %e %F %g
 *               %G %h %H %I %j %k %l %m %M %n %p %P %r %R %s %S %t %T %u %U %V %w %W %x %X %y
 *               %Y %z %:z %Z %%; the numeric ones take the GNU flags "-" (no padding), "_"
 *               (spaces) and "0" (zeros), e.g. %-d. Anything else, and control characters,
 *               are refused.
 */

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/service.h"
#include "svc/tzif.h"

extern const struct core_service svc_date;

/* What a request asks for. */
enum svc_date_kind { SVC_DATE_DATE, SVC_DATE_ISO, SVC_DATE_UNIX, SVC_DATE_KIND_COUNT };

/* date(1)'s own format in the C locale. */
#define SVC_DATE_DEFAULT_FORMAT "%a %b %e %H:%M:%S %Z %Y"
/* The "timezone" option's value for the daemon's own zone. */
#define SVC_DATE_TZ_LOCAL "local"
/* Longest "format" option. */
#define SVC_DATE_FORMAT_MAX 128
/* Longest datagram that may be a request (the word and trailing white space). */
#define SVC_DATE_REQUEST_MAX 64
/* Room for the longest reply any accepted format produces, newline and NUL included. */
#define SVC_DATE_REPLY_MAX 2048

/*
 * Classifies a datagram. Pure. Returns its enum svc_date_kind, or -EMSGSIZE when it is longer
 * than SVC_DATE_REQUEST_MAX, -ENODATA when it holds nothing but white space, -EBADMSG when it
 * is no request.
 */
int svc_date_request_parse(const uint8_t *in, size_t len);

/*
 * Checks a "format" option: length, characters and conversions as above. Pure. Returns 0, or
 * -EINVAL with err->field "options.format" and a message naming what is wrong.
 */
int svc_date_format_check(const char *format, struct core_err *err);

/*
 * Formats instant t (seconds since the epoch) as the reply to a request of the given kind, in
 * zone tz (NULL: the daemon's zone, by localtime_r()), newline-terminated, into buf (size len,
 * NUL-terminated). format is used for SVC_DATE_DATE only (NULL: SVC_DATE_DEFAULT_FORMAT) and
 * must have passed svc_date_format_check(). Pure but for the daemon's zone; any thread.
 * Returns the length written (without the NUL), -ERANGE when buf is too small, -EOVERFLOW
 * when t cannot be represented, -EINVAL for a format that does not pass the check.
 */
int svc_date_format(enum svc_date_kind kind, const char *format, const struct svc_tz *tz, int64_t t,
                    char *buf, size_t len);

#endif
