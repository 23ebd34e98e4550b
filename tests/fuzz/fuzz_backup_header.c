/*
 * The backup protocol's pure parts (svc/backup_proto.h): the command line parser, the
 * classification of a connection's first read, the file name check, and the name's
 * percent-encoding both ways. The input is one command line, one first read and one name.
 *
 * Properties: the parser answers 0 or -EINVAL with a code and a message; a parsed command
 * holds a valid name and, written back in the protocol's own spelling, parses to the same
 * command; a first read taken for a bare name holds no newline inside that name; a name the
 * check accepts (or one decoded from the wire) survives encoding and decoding unchanged;
 * encoding into a short buffer writes a NUL-terminated prefix of the whole encoding and still
 * tells its full length; a digest read from hex prints back as the same (lower-case) hex.
 */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc/backup_proto.h"

#include "fuzz.h"

/* Encodes name (NUL-terminated, valid) and decodes it back: the same bytes. */
static void check_name_round_trip(const char *name)
{
    char enc[SVC_BACKUP_NAME_ENC_MAX + 1], dec[SVC_BACKUP_NAME_MAX + 1];
    size_t n = svc_backup_name_encode(name, enc, sizeof(enc));

    FUZZ_CHECK(n <= SVC_BACKUP_NAME_ENC_MAX);
    FUZZ_CHECK(strlen(enc) == n);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)enc[i] > 0x20 && enc[i] != 0x7f);
    FUZZ_CHECK(svc_backup_name_decode(enc, n, dec, NULL) == 0);
    FUZZ_CHECK(strcmp(dec, name) == 0);
}

/* Encoding into every short buffer: a NUL-terminated prefix of the whole, the same length. */
static void check_encode_truncation(const char *name)
{
    char full[3 * 1024 + 1], part[3 * 1024 + 1];
    size_t n = svc_backup_name_encode(name, full, sizeof(full));

    if (n >= sizeof(full))
        return;
    for (size_t cap = 0; cap <= n + 1; cap += 1 + cap / 8) {
        size_t m;

        memset(part, 'x', sizeof(part));
        FUZZ_CHECK(svc_backup_name_encode(name, part, cap) == n);
        if (cap == 0) {
            FUZZ_CHECK(part[0] == 'x');
            continue;
        }
        m = strnlen(part, cap);
        FUZZ_CHECK(m < cap);
        FUZZ_CHECK(memcmp(part, full, m) == 0);
        FUZZ_CHECK(part[m + 1] == 'x' || m + 1 >= cap); /* nothing written past the NUL */
    }
}

/* Writes a parsed command back in the protocol's spelling and parses it again. */
static void check_command_round_trip(const struct svc_backup_cmd *c)
{
    char line[SVC_BACKUP_LINE_MAX + 1], enc[SVC_BACKUP_NAME_ENC_MAX + 1];
    char hex[SVC_BACKUP_SHA256_HEX + 1];
    struct svc_backup_cmd again;
    enum svc_backup_errc code;
    struct core_err err = {0};
    int n = 0;

    if (c->verb != SVC_BACKUP_LIST && c->verb != SVC_BACKUP_QUIT)
        (void)svc_backup_name_encode(c->name, enc, sizeof(enc));
    snprintf(hex, sizeof(hex), "%s", c->sha256_follows ? "*" : "");
    if (c->has_sha256)
        svc_backup_sha256_to_hex(c->sha256, hex);
    switch (c->verb) {
    case SVC_BACKUP_PUT:
    case SVC_BACKUP_RESUME:
        n = snprintf(line, sizeof(line), "%s %s %" PRIu64 "%s%s",
                     c->verb == SVC_BACKUP_PUT ? "PUT" : "RESUME", enc, c->size, hex[0] ? " " : "",
                     hex);
        if (c->offset && n > 0 && (size_t)n < sizeof(line))
            n += snprintf(line + n, sizeof(line) - (size_t)n, " %" PRIu64, c->offset);
        break;
    case SVC_BACKUP_GET:
        n = snprintf(line, sizeof(line), "GET %s %" PRIu32, enc, c->version);
        break;
    case SVC_BACKUP_LIST:
        n = snprintf(line, sizeof(line), "LIST");
        break;
    case SVC_BACKUP_QUIT:
        n = snprintf(line, sizeof(line), "QUIT");
        break;
    case SVC_BACKUP_VERB_COUNT:
        FUZZ_CHECK(!"a parsed command has a verb");
    }
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(line));
    FUZZ_CHECK(svc_backup_parse_line(line, (size_t)n, &again, &code, &err) == 0);
    FUZZ_CHECK(again.verb == c->verb);
    FUZZ_CHECK(strcmp(again.name, c->name) == 0);
    FUZZ_CHECK(again.size == c->size);
    FUZZ_CHECK(again.has_sha256 == c->has_sha256);
    FUZZ_CHECK(memcmp(again.sha256, c->sha256, sizeof(c->sha256)) == 0);
    FUZZ_CHECK(again.version == c->version);
    FUZZ_CHECK(again.sha256_follows == c->sha256_follows);
    FUZZ_CHECK(again.offset == c->offset);
}

static void check_parse_line(const uint8_t *data, size_t size)
{
    struct svc_backup_cmd cmd;
    enum svc_backup_errc code = SVC_BACKUP_E_COUNT;
    struct core_err err = {0};
    int r = svc_backup_parse_line((const char *)data, size, &cmd, &code, &err);

    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL);
        FUZZ_CHECK(code == SVC_BACKUP_E_PROTOCOL || code == SVC_BACKUP_E_BAD_NAME);
        FUZZ_CHECK(err.msg[0] != '\0');
        FUZZ_CHECK(strchr(err.msg, '\n') == NULL);
        return;
    }
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(cmd.verb < SVC_BACKUP_VERB_COUNT);
    if (cmd.verb == SVC_BACKUP_PUT || cmd.verb == SVC_BACKUP_GET || cmd.verb == SVC_BACKUP_RESUME) {
        size_t n = strnlen(cmd.name, sizeof(cmd.name));

        FUZZ_CHECK(n >= 1 && n <= SVC_BACKUP_NAME_MAX);
        FUZZ_CHECK(svc_backup_name_check(cmd.name, n, NULL) == 0);
        check_name_round_trip(cmd.name);
    }
    if (cmd.verb != SVC_BACKUP_PUT && cmd.verb != SVC_BACKUP_RESUME) /* size, sha256: PUT, RESUME */
        FUZZ_CHECK(cmd.size == 0 && !cmd.has_sha256);
    if (cmd.verb != SVC_BACKUP_GET)
        FUZZ_CHECK(cmd.version == 0);
    check_command_round_trip(&cmd);
}

static void check_classify(const uint8_t *data, size_t size)
{
    size_t name_len = SIZE_MAX;

    if (size == 0)
        return;
    if (svc_backup_classify_first(data, size, &name_len) == SVC_BACKUP_FIRST_COMMAND) {
        FUZZ_CHECK(name_len == SIZE_MAX); /* written only for a bare name */
        return;
    }
    FUZZ_CHECK(name_len <= size);
    FUZZ_CHECK(memchr(data, '\n', name_len) == NULL);
    FUZZ_CHECK(size - name_len <= 2);
}

static void check_name(const uint8_t *data, size_t size)
{
    char *name = malloc(size + 1);
    char dec[SVC_BACKUP_NAME_MAX + 1];
    struct core_err err = {0};
    int r;

    FUZZ_CHECK(name);
    memcpy(name, data, size);
    name[size] = '\0';

    r = svc_backup_name_check(name, size, &err);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    if (r == 0) {
        FUZZ_CHECK(size >= 1 && size <= SVC_BACKUP_NAME_MAX);
        FUZZ_CHECK(strlen(name) == size && name[0] != '.' && !strchr(name, '/'));
        check_name_round_trip(name);
    } else {
        FUZZ_CHECK(strncmp(err.msg, "name ", 5) == 0);
    }
    check_encode_truncation(name);

    memset(&err, 0, sizeof(err));
    memset(dec, 'x', sizeof(dec));
    r = svc_backup_name_decode((const char *)data, size, dec, &err);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    if (r == 0) {
        size_t n = strnlen(dec, sizeof(dec));

        FUZZ_CHECK(n < sizeof(dec));
        FUZZ_CHECK(svc_backup_name_check(dec, n, NULL) == 0);
        check_name_round_trip(dec);
    } else {
        FUZZ_CHECK(err.msg[0] != '\0');
    }
    free(name);
}

static void check_sha256(const uint8_t *data, size_t size)
{
    uint8_t sha[SVC_BACKUP_SHA256_LEN];
    char hex[SVC_BACKUP_SHA256_HEX + 1];

    if (svc_backup_sha256_from_hex((const char *)data, size, sha) < 0)
        return;
    FUZZ_CHECK(size == SVC_BACKUP_SHA256_HEX);
    svc_backup_sha256_to_hex(sha, hex);
    for (size_t i = 0; i < size; i++)
        FUZZ_CHECK(hex[i] == tolower(data[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);

    /* As the service hands lines over: the bytes before a newline. */
    check_parse_line(data, nl ? (size_t)(nl - data) : size);
    check_classify(data, size);
    check_name(data, size);
    check_sha256(data, size);
    return 0;
}
