#include "svc/backup_proto.h"

#include <errno.h>
#include <string.h>

#include "core/text.h"

static const char *const errc_names[SVC_BACKUP_E_COUNT] = {
    [SVC_BACKUP_E_BAD_NAME] = "bad-name",
    [SVC_BACKUP_E_TOO_LARGE] = "too-large",
    [SVC_BACKUP_E_QUOTA] = "quota",
    [SVC_BACKUP_E_DISK_FULL] = "disk-full",
    [SVC_BACKUP_E_EXISTS] = "exists",
    [SVC_BACKUP_E_BUSY] = "busy",
    [SVC_BACKUP_E_CHECKSUM_REQUIRED] = "checksum-required",
    [SVC_BACKUP_E_SIZE_MISMATCH] = "size-mismatch",
    [SVC_BACKUP_E_CHECKSUM_MISMATCH] = "checksum-mismatch",
    [SVC_BACKUP_E_NOT_FOUND] = "not-found",
    [SVC_BACKUP_E_IO] = "io",
    [SVC_BACKUP_E_PROTOCOL] = "protocol",
    [SVC_BACKUP_E_TOO_SLOW] = "too-slow",
};

static const char *const verb_names[SVC_BACKUP_VERB_COUNT] = {
    [SVC_BACKUP_PUT] = "PUT",   [SVC_BACKUP_GET] = "GET",       [SVC_BACKUP_LIST] = "LIST",
    [SVC_BACKUP_QUIT] = "QUIT", [SVC_BACKUP_RESUME] = "RESUME",
};

const char *svc_backup_errc_name(enum svc_backup_errc c)
{
    return c < SVC_BACKUP_E_COUNT ? errc_names[c] : "io";
}

/* Whether p[0..len) is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). */
static bool is_utf8(const unsigned char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

int svc_backup_name_check(const char *name, size_t len, struct core_err *err)
{
    if (len == 0)
        return core_err_set(err, -EINVAL, NULL, "name is empty");
    if (len > SVC_BACKUP_NAME_MAX)
        return core_err_set(err, -EINVAL, NULL, "name is longer than %d bytes",
                            SVC_BACKUP_NAME_MAX);
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return core_err_set(err, -EINVAL, NULL, "name is . or ..");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c == '/')
            return core_err_set(err, -EINVAL, NULL, "name contains /");
        if (c == 0)
            return core_err_set(err, -EINVAL, NULL, "name contains NUL");
        if (c < 0x20 || c == 0x7f)
            return core_err_set(err, -EINVAL, NULL, "name contains a control character");
    }
    if (name[0] == '.')
        return core_err_set(err, -EINVAL, NULL, "name starts with . (reserved)");
    if (!is_utf8((const unsigned char *)name, len))
        return core_err_set(err, -EINVAL, NULL, "name is not valid UTF-8");
    return 0;
}

int svc_backup_name_decode(const char *enc, size_t len, char ret[SVC_BACKUP_NAME_MAX + 1],
                           struct core_err *err)
{
    char name[SVC_BACKUP_NAME_MAX + 1];
    size_t n = 0;
    int r;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)enc[i];

        if (n == SVC_BACKUP_NAME_MAX)
            return core_err_set(err, -EINVAL, NULL, "name is longer than %d bytes",
                                SVC_BACKUP_NAME_MAX);
        if (c == '%') {
            int hi = i + 2 < len ? core_hex_value((unsigned char)enc[i + 1]) : -1;
            int lo = i + 2 < len ? core_hex_value((unsigned char)enc[i + 2]) : -1;

            if (hi < 0 || lo < 0)
                return core_err_set(err, -EINVAL, NULL,
                                    "name has a %% not followed by two hex digits");
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        name[n++] = (char)c;
    }
    r = svc_backup_name_check(name, n, err);
    if (r < 0)
        return r;
    memcpy(ret, name, n);
    ret[n] = '\0';
    return 0;
}

size_t svc_backup_name_encode(const char *name, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        bool esc = *p <= 0x20 || *p == 0x7f || *p == '%';
        size_t need = esc ? 3 : 1;

        if (cap > 0 && n + need < cap) {
            if (esc) {
                out[n] = '%';
                out[n + 1] = hex[*p >> 4];
                out[n + 2] = hex[*p & 0xf];
            } else {
                out[n] = (char)*p;
            }
        } else if (cap > 0 && n < cap) {
            out[n] = '\0';
            cap = 0; /* truncated: stop writing, keep counting */
        }
        n += need;
    }
    if (cap > 0)
        out[n] = '\0';
    return n;
}

int svc_backup_sha256_from_hex(const char *hex, size_t len, uint8_t ret[SVC_BACKUP_SHA256_LEN])
{
    uint8_t d[SVC_BACKUP_SHA256_LEN];

    if (len != SVC_BACKUP_SHA256_HEX)
        return -EINVAL;
    for (size_t i = 0; i < SVC_BACKUP_SHA256_LEN; i++) {
        int hi = core_hex_value((unsigned char)hex[2 * i]);
        int lo = core_hex_value((unsigned char)hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -EINVAL;
        d[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(ret, d, sizeof(d));
    return 0;
}

void svc_backup_sha256_to_hex(const uint8_t sha[SVC_BACKUP_SHA256_LEN],
                              char out[SVC_BACKUP_SHA256_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < SVC_BACKUP_SHA256_LEN; i++) {
        out[2 * i] = hex[sha[i] >> 4];
        out[2 * i + 1] = hex[sha[i] & 0xf];
    }
    out[SVC_BACKUP_SHA256_HEX] = '\0';
}

/* Parses a decimal number of at most max. Returns 0 or -EINVAL. */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *ret)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        if (v > (max - (uint64_t)(s[i] - '0')) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *ret = v;
    return 0;
}

struct token {
    const char *p;
    size_t len;
};

/* Splits line into at most max space-separated tokens; returns their count, or max + 1 when
 * there are more. */
static size_t split(const char *line, size_t len, struct token *t, size_t max)
{
    size_t n = 0, i = 0;

    while (i < len) {
        size_t start;

        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == len)
            break;
        if (n == max)
            return max + 1;
        start = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        t[n].p = line + start;
        t[n].len = i - start;
        n++;
    }
    return n;
}

static int protocol_error(enum svc_backup_errc *ret_code, struct core_err *err, const char *msg)
{
    *ret_code = SVC_BACKUP_E_PROTOCOL;
    return core_err_set(err, -EINVAL, NULL, "%s", msg);
}

int svc_backup_parse_line(const char *line, size_t len, struct svc_backup_cmd *ret,
                          enum svc_backup_errc *ret_code, struct core_err *err)
{
    static const char *const usage[SVC_BACKUP_VERB_COUNT] = {
        [SVC_BACKUP_PUT] = "usage: PUT <name> <size> [<sha256>|* [<offset>]]",
        [SVC_BACKUP_GET] = "usage: GET <name> [<version>]",
        [SVC_BACKUP_LIST] = "usage: LIST",
        [SVC_BACKUP_QUIT] = "usage: QUIT",
        [SVC_BACKUP_RESUME] = "usage: RESUME <name> <size> [<sha256>]",
    };
    struct token t[6];
    size_t n;
    uint64_t v;
    int verb = -1, r;

    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (memchr(line, '\0', len))
        return protocol_error(ret_code, err, "command line contains NUL");
    n = split(line, len, t, 5);
    if (n == 0)
        return protocol_error(ret_code, err, "empty command line");
    for (int i = 0; i < SVC_BACKUP_VERB_COUNT; i++) {
        if (t[0].len == strlen(verb_names[i]) && memcmp(t[0].p, verb_names[i], t[0].len) == 0)
            verb = i;
    }
    if (verb < 0)
        return protocol_error(ret_code, err, "unknown command (PUT, GET, LIST, QUIT, RESUME)");
    memset(ret, 0, sizeof(*ret));
    ret->verb = (enum svc_backup_verb)verb;
    switch (ret->verb) {
    case SVC_BACKUP_PUT:
    case SVC_BACKUP_RESUME:
        if (n < 3 || n > (ret->verb == SVC_BACKUP_PUT ? 5u : 4u))
            return protocol_error(ret_code, err, usage[verb]);
        if (parse_u64(t[2].p, t[2].len, UINT64_MAX, &ret->size) < 0)
            return protocol_error(ret_code, err, "size is not a decimal number of bytes");
        if (n >= 4 && ret->verb == SVC_BACKUP_PUT && t[3].len == 1 && t[3].p[0] == '*') {
            ret->sha256_follows = true;
        } else if (n >= 4) {
            if (svc_backup_sha256_from_hex(t[3].p, t[3].len, ret->sha256) < 0)
                return protocol_error(ret_code, err, "sha256 is not 64 hex digits");
            ret->has_sha256 = true;
        }
        if (n == 5) {
            if (parse_u64(t[4].p, t[4].len, UINT64_MAX, &ret->offset) < 0)
                return protocol_error(ret_code, err, "offset is not a decimal number of bytes");
            if (ret->offset > ret->size)
                return protocol_error(ret_code, err, "offset is past the size");
        }
        break;
    case SVC_BACKUP_GET:
        if (n < 2 || n > 3)
            return protocol_error(ret_code, err, usage[verb]);
        if (n == 3) {
            if (parse_u64(t[2].p, t[2].len, UINT32_MAX, &v) < 0)
                return protocol_error(ret_code, err, "version is not a number");
            ret->version = (uint32_t)v;
        }
        break;
    case SVC_BACKUP_LIST:
    case SVC_BACKUP_QUIT:
        if (n != 1)
            return protocol_error(ret_code, err, usage[verb]);
        break;
    case SVC_BACKUP_VERB_COUNT:
        break;
    }
    if (ret->verb != SVC_BACKUP_LIST && ret->verb != SVC_BACKUP_QUIT) {
        r = svc_backup_name_decode(t[1].p, t[1].len, ret->name, err);
        if (r < 0) {
            *ret_code = SVC_BACKUP_E_BAD_NAME;
            return r;
        }
    }
    return 0;
}

int svc_backup_parse_trailer(const char *line, size_t len, uint8_t ret[SVC_BACKUP_SHA256_LEN],
                             struct core_err *err)
{
    struct token t[3];
    size_t n;

    if (len > 0 && line[len - 1] == '\r')
        len--;
    n = split(line, len, t, 2);
    if (n != 2 || t[0].len != 6 || memcmp(t[0].p, "SHA256", 6) != 0)
        return core_err_set(err, -EINVAL, NULL, "expected SHA256 <sha256> after the content");
    if (svc_backup_sha256_from_hex(t[1].p, t[1].len, ret) < 0)
        return core_err_set(err, -EINVAL, NULL, "sha256 is not 64 hex digits");
    return 0;
}

enum svc_backup_first svc_backup_classify_first(const uint8_t *p, size_t len, size_t *ret_name_len)
{
    const uint8_t *nl;
    bool only_newlines = true;

    for (int i = 0; i < SVC_BACKUP_VERB_COUNT; i++) {
        size_t vl = strlen(verb_names[i]);

        if (len > vl && memcmp(p, verb_names[i], vl) == 0 &&
            (p[vl] == ' ' || p[vl] == '\t' || p[vl] == '\r' || p[vl] == '\n'))
            return SVC_BACKUP_FIRST_COMMAND;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\r' && p[i] != '\n') {
            only_newlines = false;
            break;
        }
    }
    if (only_newlines)
        return SVC_BACKUP_FIRST_COMMAND;
    nl = memchr(p, '\n', len);
    if (nl && nl != p + len - 1)
        return SVC_BACKUP_FIRST_COMMAND;
    if (nl) {
        len--;
        if (len > 0 && p[len - 1] == '\r')
            len--;
    }
    *ret_name_len = len;
    return SVC_BACKUP_FIRST_BARE;
}
