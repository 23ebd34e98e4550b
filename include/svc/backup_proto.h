#ifndef SVC_BACKUP_PROTO_H
#define SVC_BACKUP_PROTO_H

/*
 * The backup wire protocol's pure parts: the file name rules, the percent-encoding of names on
 * the wire, the command line parser, and how a connection's first read is told apart (a
 * command line, or the lecture's bare file name). No I/O, no allocation; any thread.
 * The protocol itself is described in include/svc/backup.h.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define SVC_BACKUP_NAME_MAX 255                           /* bytes of a decoded file name */
#define SVC_BACKUP_NAME_ENC_MAX (3 * SVC_BACKUP_NAME_MAX) /* its longest encoding */
#define SVC_BACKUP_LINE_MAX 1024                          /* a command line, without its newline */
#define SVC_BACKUP_SHA256_LEN 32
#define SVC_BACKUP_SHA256_HEX (2 * SVC_BACKUP_SHA256_LEN)

enum svc_backup_verb {
    SVC_BACKUP_PUT,    /* PUT <name> <size> [<sha256>|* [<offset>]] */
    SVC_BACKUP_GET,    /* GET <name> [<version>] */
    SVC_BACKUP_LIST,   /* LIST */
    SVC_BACKUP_QUIT,   /* QUIT */
    SVC_BACKUP_RESUME, /* RESUME <name> <size> [<sha256>] */
    SVC_BACKUP_VERB_COUNT
};

/* The codes of ERR lines: `ERR <code> <text>`. */
enum svc_backup_errc {
    SVC_BACKUP_E_BAD_NAME,
    SVC_BACKUP_E_TOO_LARGE,
    SVC_BACKUP_E_QUOTA,
    SVC_BACKUP_E_DISK_FULL,
    SVC_BACKUP_E_EXISTS,
    SVC_BACKUP_E_BUSY,
    SVC_BACKUP_E_CHECKSUM_REQUIRED,
    SVC_BACKUP_E_SIZE_MISMATCH,
    SVC_BACKUP_E_CHECKSUM_MISMATCH,
    SVC_BACKUP_E_NOT_FOUND,
    SVC_BACKUP_E_IO,
    SVC_BACKUP_E_PROTOCOL,
    SVC_BACKUP_E_TOO_SLOW, /* an upload slower than min_rate_bytes_per_s: cut */
    SVC_BACKUP_E_COUNT
};

/* A parsed command line. */
struct svc_backup_cmd {
    enum svc_backup_verb verb;
    char name[SVC_BACKUP_NAME_MAX + 1]; /* PUT, GET, RESUME: decoded and valid, NUL-terminated */
    uint64_t size;                      /* PUT, RESUME: content bytes */
    bool has_sha256;                    /* PUT, RESUME: the client sent the content's SHA-256 */
    uint8_t sha256[SVC_BACKUP_SHA256_LEN];
    bool sha256_follows; /* PUT: "*", the SHA-256 comes after the content (a trailer line) */
    uint64_t offset;     /* PUT: the content sent starts here (a resumed upload), <= size */
    uint32_t version;    /* GET: 0 for the current copy */
};

/* What a connection's first read is. */
enum svc_backup_first {
    SVC_BACKUP_FIRST_COMMAND, /* command lines follow (possibly incomplete yet) */
    SVC_BACKUP_FIRST_BARE     /* the lecture's flow: the read is a bare file name */
};

/* The code's wire spelling ("bad-name"). */
const char *svc_backup_errc_name(enum svc_backup_errc c);

/*
 * Checks a decoded file name: 1 to 255 bytes of valid UTF-8, not "." or "..", no "/", no NUL,
 * no control character (0x00-0x1f, 0x7f), not starting with "." (names starting with a dot
 * are the store's own). Returns 0, or -EINVAL with err->msg saying why ("name ...").
 */
int svc_backup_name_check(const char *name, size_t len, struct core_err *err);

/*
 * Decodes a name as sent on the wire (%XX escapes, two hex digits of either case) into ret
 * (NUL-terminated) and checks it with svc_backup_name_check(). Returns 0 or -EINVAL.
 */
int svc_backup_name_decode(const char *enc, size_t len, char ret[SVC_BACKUP_NAME_MAX + 1],
                           struct core_err *err);

/*
 * Encodes name for the wire: bytes 0x00-0x20, 0x7f and '%' become %XX (upper case), others
 * are copied. out holds cap bytes; the result is NUL-terminated and truncated to fit.
 * Returns the length the whole encoding needs (without its NUL).
 */
size_t svc_backup_name_encode(const char *name, char *out, size_t cap);

/*
 * Parses one command line (without its '\n'; a trailing '\r' is ignored). Returns 0 with *ret
 * filled, or -EINVAL with *ret_code (SVC_BACKUP_E_PROTOCOL or SVC_BACKUP_E_BAD_NAME) and err
 * saying why. Verbs are upper case; fields are separated by spaces.
 */
int svc_backup_parse_line(const char *line, size_t len, struct svc_backup_cmd *ret,
                          enum svc_backup_errc *ret_code, struct core_err *err);

/*
 * Classifies a connection's first read (len > 0). It is a command when it starts with a verb
 * followed by a space, a tab, '\r' or '\n', or when it holds only newlines, or when it holds a
 * newline anywhere but at its end. Otherwise it is the lecture's bare file name: *ret_name_len
 * is then the length of the name (the whole read, less one trailing "\n" or "\r\n").
 */
enum svc_backup_first svc_backup_classify_first(const uint8_t *p, size_t len, size_t *ret_name_len);

/*
 * Parses the line that follows the content of a "PUT <name> <size> *": "SHA256 <64 hex>"
 * (without its '\n'; a trailing '\r' is ignored). Returns 0 with ret filled, or -EINVAL with
 * err saying why.
 */
int svc_backup_parse_trailer(const char *line, size_t len, uint8_t ret[SVC_BACKUP_SHA256_LEN],
                             struct core_err *err);

/* Parses 64 hex digits into a digest. Returns 0 or -EINVAL. */
int svc_backup_sha256_from_hex(const char *hex, size_t len, uint8_t ret[SVC_BACKUP_SHA256_LEN]);

/* Formats a digest as 64 lower-case hex digits and a NUL. */
void svc_backup_sha256_to_hex(const uint8_t sha[SVC_BACKUP_SHA256_LEN],
                              char out[SVC_BACKUP_SHA256_HEX + 1]);

#endif
