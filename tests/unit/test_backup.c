#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "svc/backup.h"
#include "svc/backup_proto.h"
#include "svc/backup_store.h"

#define MIB (1024 * 1024)

/* A backup instance over a fresh temporary state directory. */
struct fx {
    char dir[128];   /* the state directory */
    char store[192]; /* the listener's directory: <dir>/backup/b1 (or options.directory) */
    char mnt[160];   /* a tmpfs mounted for the test, or empty */
    struct core_metrics m;
    struct core_svc_env env;
    json_t *opts;
    void *inst;
};

/* One connection: its session memory and the bytes the service answered. */
struct conn {
    void *mem;
    struct core_buf out;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The fixture is also kept in *state, so that the teardown frees it when a test fails. */
static struct fx *fx_new_in(void **state, const char *opts_text, const char *mnt_size)
{
    struct fx *f = calloc(1, sizeof(*f));
    json_t *opts = NULL;
    struct core_err err = {0};

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_backup.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->store, sizeof(f->store), "%s/backup/b1", f->dir);
    if (mnt_size) {
        char o[32];

        /* beneath the state directory's backup/, the one place inside it a directory may be */
        snprintf(f->mnt, sizeof(f->mnt), "%s/backup", f->dir);
        assert_int_equal(mkdir(f->mnt, 0700), 0);
        snprintf(f->mnt, sizeof(f->mnt), "%s/backup/tmpfs", f->dir);
        assert_int_equal(mkdir(f->mnt, 0700), 0);
        snprintf(o, sizeof(o), "size=%s", mnt_size);
        if (mount("tmpfs", f->mnt, "tmpfs", 0, o) < 0) {
            rmdir(f->mnt);
            rmdir(f->dir);
            free(f);
            return NULL;
        }
        snprintf(f->store, sizeof(f->store), "%s/store", f->mnt);
    }
    f->env.listener_id = "b1";
    f->env.state_dir = f->dir;
    f->env.metrics = &f->m;
    if (opts_text) {
        char text[512];

        if (mnt_size) { /* "{...}" gets the tmpfs directory */
            snprintf(text, sizeof(text), "{\"directory\":\"%s\"%s%s", f->store,
                     strlen(opts_text) > 2 ? "," : "", opts_text + 1);
            opts = json_loads(text, 0, NULL);
        } else {
            opts = json_loads(opts_text, 0, NULL);
        }
        assert_non_null(opts);
    }
    assert_int_equal(core_service_options_check(&svc_backup, opts, CORE_TCP, &f->opts, &err), 0);
    json_decref(opts);
    *state = f;
    assert_int_equal(svc_backup.instance_new(f->opts, CORE_TCP, &f->env, &f->inst, &err), 0);
    return f;
}

static struct fx *fx_new(void **state, const char *opts_text)
{
    return fx_new_in(state, opts_text, NULL);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;

    if (!f)
        return 0;
    svc_backup.instance_free(f->inst);
    json_decref(f->opts);
    if (f->mnt[0] && umount(f->mnt) < 0)
        fprintf(stderr, "cannot unmount %s: %s\n", f->mnt, strerror(errno));
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    *state = NULL;
    return 0;
}

static uint64_t counter(struct fx *f, const char *name)
{
    for (unsigned i = 0; i < svc_backup.n_counters; i++) {
        if (strcmp(svc_backup.counters[i], name) == 0)
            return atomic_load(&f->m.svc[i]);
    }
    fail_msg("no counter %s", name);
    return 0;
}

static struct conn *conn_open(struct fx *f)
{
    struct conn *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->mem = calloc(1, svc_backup.session_size);
    assert_non_null(c->mem);
    assert_int_equal(svc_backup.session_open(f->inst, c->mem, &c->out), CORE_VERDICT_MORE);
    return c;
}

static void conn_close(struct conn *c, bool completed)
{
    svc_backup.session_close(c->mem, completed);
    core_buf_fini(&c->out);
    free(c->mem);
    free(c);
}

static int feedn(struct conn *c, const void *p, size_t n)
{
    return svc_backup.session_feed(c->mem, p, n, &c->out);
}

static int feed(struct conn *c, const char *text)
{
    return feedn(c, text, strlen(text));
}

static int pull(struct conn *c)
{
    return svc_backup.session_pull(c->mem, &c->out);
}

/* Pulls until the service gives another verdict than PULL, checking that no pull appends
 * more than chunk_max bytes nor nothing; returns that verdict. */
static int pull_all(struct conn *c, size_t chunk_max)
{
    int r;

    for (;;) {
        size_t before = c->out.len;

        r = pull(c);
        if (r != CORE_VERDICT_PULL)
            return r;
        if (c->out.len == before || c->out.len - before > chunk_max)
            fail_msg("a pull appended %zu bytes", c->out.len - before);
    }
}

/* Takes the first line the service answered (without its newline). */
static char *take_line(struct conn *c)
{
    uint8_t *nl = memchr(c->out.data, '\n', c->out.len);
    size_t n;
    char *line;

    if (!nl)
        fail_msg("no complete line in %zu bytes of output", c->out.len);
    n = (size_t)(nl - c->out.data);
    line = malloc(n + 1);
    assert_non_null(line);
    memcpy(line, c->out.data, n);
    line[n] = '\0';
    core_buf_consume(&c->out, n + 1);
    return line;
}

static void expect_line(struct conn *c, const char *want)
{
    char *line = take_line(c);

    assert_string_equal(line, want);
    free(line);
}

static void expect_prefix(struct conn *c, const char *prefix)
{
    char *line = take_line(c);

    if (strncmp(line, prefix, strlen(prefix)) != 0)
        fail_msg("line \"%s\" does not start with \"%s\"", line, prefix);
    free(line);
}

static void sha_hex(const void *p, size_t n, char out[SVC_BACKUP_SHA256_HEX + 1])
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned len = 0;

    assert_int_equal(EVP_Digest(p, n, d, &len, EVP_sha256(), NULL), 1);
    svc_backup_sha256_to_hex(d, out);
}

/* The content of the file at path (NULL when it is not a regular file); *ret_n its size. */
static char *read_path(const char *path, size_t *ret_n)
{
    struct stat st;
    char *buf;
    FILE *fp;

    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return NULL;
    fp = fopen(path, "rb");
    assert_non_null(fp);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)st.st_size, fp), (size_t)st.st_size);
    buf[st.st_size] = '\0';
    fclose(fp);
    if (ret_n)
        *ret_n = (size_t)st.st_size;
    return buf;
}

/* The content of rel beneath the store directory. */
static char *read_stored(struct fx *f, const char *rel, size_t *ret_n)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", f->store, rel);
    return read_path(path, ret_n);
}

static void assert_stored(struct fx *f, const char *rel, const char *want)
{
    char *got = read_stored(f, rel, NULL);

    if (!got)
        fail_msg("%s is not stored", rel);
    assert_string_equal(got, want);
    free(got);
}

static void assert_absent(struct fx *f, const char *rel)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", f->store, rel);
    if (lstat(path, &st) == 0)
        fail_msg("%s exists", rel);
}

/* Entries of the store directory other than the metadata directory: what a user sees, plus
 * any temporary file an upload would have left. */
static int count_entries(struct fx *f)
{
    DIR *d = opendir(f->store);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            strcmp(de->d_name, SVC_BACKUP_STORE_META_DIR))
            n++;
    }
    closedir(d);
    return n;
}

/* Uploads content under name through the protocol and checks the STORED line. */
static void put_ok(struct fx *f, const char *name, const char *content, unsigned version)
{
    struct conn *c = conn_open(f);
    char hdr[1024], hex[SVC_BACKUP_SHA256_HEX + 1], want[1024], e[SVC_BACKUP_NAME_ENC_MAX + 1];

    sha_hex(content, strlen(content), hex);
    svc_backup_name_encode(name, e, sizeof(e));
    snprintf(hdr, sizeof(hdr), "PUT %s %zu %s\n", e, strlen(content), hex);
    assert_int_equal(feed(c, hdr), CORE_VERDICT_MORE);
    if (strlen(content) > 0) {
        expect_line(c, "OK");
        assert_int_equal(feed(c, content), CORE_VERDICT_MORE);
    } else {
        expect_line(c, "OK");
    }
    snprintf(want, sizeof(want), "STORED %s %u %zu %s", e, version, strlen(content), hex);
    expect_line(c, want);
    assert_int_equal(c->out.len, 0);
    assert_int_equal(svc_backup.session_eof(c->mem, &c->out), CORE_VERDICT_CLOSE);
    conn_close(c, true);
}

static json_t *files_list(struct fx *f)
{
    json_t *arr = NULL;
    struct core_err err = {0};

    assert_int_equal(svc_backup.files_list(f->opts, &f->env, &arr, &err), 0);
    assert_true(json_is_array(arr));
    return arr;
}

static json_t *find_file(json_t *arr, const char *name)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
            return v;
    }
    return NULL;
}

/* ---- names and command lines ---- */

static void test_backup_name_check_ordinary_names_pass(void **state)
{
    char longest[SVC_BACKUP_NAME_MAX + 1];

    (void)state;
    memset(longest, 'a', SVC_BACKUP_NAME_MAX);
    longest[SVC_BACKUP_NAME_MAX] = '\0';
    assert_int_equal(svc_backup_name_check("notes.txt", 9, NULL), 0);
    assert_int_equal(svc_backup_name_check("my file (1).tar.gz", 18, NULL), 0);
    assert_int_equal(svc_backup_name_check("caf\xc3\xa9.txt", 9, NULL), 0);
    assert_int_equal(svc_backup_name_check("a..b", 4, NULL), 0);
    assert_int_equal(svc_backup_name_check(longest, SVC_BACKUP_NAME_MAX, NULL), 0);
}

static void test_backup_name_check_every_bad_name_refused(void **state)
{
    static const struct {
        const char *name;
        size_t len;
        const char *why;
    } bad[] = {
        {"", 0, "empty"},
        {".", 1, ". or .."},
        {"..", 2, ". or .."},
        {"a/b", 3, "contains /"},
        {"/etc/passwd", 11, "contains /"},
        {"../x", 4, "contains /"},
        {"a\0b", 3, "NUL"},
        {"a\nb", 3, "control"},
        {"a\rb", 3, "control"},
        {"\x01", 1, "control"},
        {"a\x7f", 2, "control"},
        {"\tx", 2, "control"},
        {".hidden", 7, "starts with ."},
        {".sockserv", 9, "starts with ."},
        {"\xff.txt", 5, "UTF-8"},
        {"\xc0\xaf", 2, "UTF-8"},     /* overlong "/" */
        {"\xed\xa0\x80", 3, "UTF-8"}, /* a surrogate */
        {"caf\xc3", 4, "UTF-8"},      /* truncated */
    };
    char toolong[SVC_BACKUP_NAME_MAX + 2];
    struct core_err err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(svc_backup_name_check(bad[i].name, bad[i].len, &err), -EINVAL);
        if (!strstr(err.msg, bad[i].why))
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err.msg, bad[i].why);
    }
    memset(toolong, 'a', sizeof(toolong) - 1);
    toolong[sizeof(toolong) - 1] = '\0';
    assert_int_equal(svc_backup_name_check(toolong, SVC_BACKUP_NAME_MAX + 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "longer than 255"));
}

static void test_backup_name_decode_escapes_then_checks(void **state)
{
    char name[SVC_BACKUP_NAME_MAX + 1];

    (void)state;
    assert_int_equal(svc_backup_name_decode("my%20file%25.txt", 16, name, NULL), 0);
    assert_string_equal(name, "my file%.txt");
    assert_int_equal(svc_backup_name_decode("a%2Fb", 5, name, NULL), -EINVAL);
    assert_int_equal(svc_backup_name_decode("a%2fb", 5, name, NULL), -EINVAL);
    assert_int_equal(svc_backup_name_decode("%2E%2E", 6, name, NULL), -EINVAL);
    assert_int_equal(svc_backup_name_decode("a%00", 4, name, NULL), -EINVAL);
    assert_int_equal(svc_backup_name_decode("a%0A", 4, name, NULL), -EINVAL);
    assert_int_equal(svc_backup_name_decode("a%zz", 4, name, NULL), -EINVAL);
    assert_int_equal(svc_backup_name_decode("a%4", 3, name, NULL), -EINVAL);
    assert_int_equal(svc_backup_name_decode("a%", 2, name, NULL), -EINVAL);
}

static void test_backup_name_encode_roundtrips(void **state)
{
    const char *name = "a b%c\xc3\xa9";
    char e[SVC_BACKUP_NAME_ENC_MAX + 1], back[SVC_BACKUP_NAME_MAX + 1], small[6];

    (void)state;
    assert_int_equal(svc_backup_name_encode(name, e, sizeof(e)), 11);
    assert_string_equal(e, "a%20b%25c\xc3\xa9");
    assert_int_equal(svc_backup_name_decode(e, strlen(e), back, NULL), 0);
    assert_string_equal(back, name);
    /* too small a buffer: truncated, terminated, and the needed length reported */
    assert_int_equal(svc_backup_name_encode(name, small, sizeof(small)), 11);
    assert_int_equal(strlen(small) < sizeof(small), 1);
}

static void test_backup_parse_put_with_and_without_checksum(void **state)
{
    const char *hex = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    struct svc_backup_cmd c;
    enum svc_backup_errc code;
    char line[200];

    (void)state;
    assert_int_equal(svc_backup_parse_line("PUT notes.txt 12", 16, &c, &code, NULL), 0);
    assert_int_equal(c.verb, SVC_BACKUP_PUT);
    assert_string_equal(c.name, "notes.txt");
    assert_int_equal(c.size, 12);
    assert_false(c.has_sha256);
    snprintf(line, sizeof(line), "PUT notes.txt 0 %s\r", hex);
    assert_int_equal(svc_backup_parse_line(line, strlen(line), &c, &code, NULL), 0);
    assert_true(c.has_sha256);
    assert_int_equal(c.sha256[0], 0xe3);
    assert_int_equal(c.sha256[31], 0x55);
    assert_int_equal(svc_backup_parse_line("PUT a 18446744073709551615", 26, &c, &code, NULL), 0);
    assert_true(c.size == UINT64_MAX);
}

static void test_backup_parse_v2_forms_checksum_after_offset_resume(void **state)
{
    const char *hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    struct svc_backup_cmd c;
    enum svc_backup_errc code;
    struct core_err err = {0};
    uint8_t sha[SVC_BACKUP_SHA256_LEN];
    char line[200];

    (void)state;
    assert_int_equal(svc_backup_parse_line("PUT a.bin 10 *", 14, &c, &code, NULL), 0);
    assert_true(c.sha256_follows);
    assert_false(c.has_sha256);
    assert_int_equal(c.offset, 0);
    assert_int_equal(svc_backup_parse_line("PUT a.bin 10 * 4", 16, &c, &code, NULL), 0);
    assert_true(c.sha256_follows);
    assert_int_equal(c.offset, 4);
    snprintf(line, sizeof(line), "PUT a.bin 10 %s 10", hex);
    assert_int_equal(svc_backup_parse_line(line, strlen(line), &c, &code, NULL), 0);
    assert_true(c.has_sha256);
    assert_false(c.sha256_follows);
    assert_int_equal(c.offset, 10);
    snprintf(line, sizeof(line), "RESUME my%%20notes 7 %s", hex);
    assert_int_equal(svc_backup_parse_line(line, strlen(line), &c, &code, NULL), 0);
    assert_int_equal(c.verb, SVC_BACKUP_RESUME);
    assert_string_equal(c.name, "my notes");
    assert_int_equal(c.size, 7);
    assert_true(c.has_sha256);
    assert_int_equal(svc_backup_parse_line("RESUME a 7", 10, &c, &code, NULL), 0);
    assert_false(c.has_sha256);
    /* malformed */
    code = SVC_BACKUP_E_COUNT;
    assert_int_equal(svc_backup_parse_line("PUT a 10 * 11", 13, &c, &code, &err), -EINVAL);
    assert_int_equal(code, SVC_BACKUP_E_PROTOCOL);
    assert_string_equal(err.msg, "offset is past the size");
    assert_int_equal(svc_backup_parse_line("PUT a 10 * x", 12, &c, &code, &err), -EINVAL);
    assert_int_equal(svc_backup_parse_line("PUT a 10 * 1 2", 14, &c, &code, &err), -EINVAL);
    assert_int_equal(svc_backup_parse_line("RESUME a 10 *", 13, &c, &code, &err), -EINVAL);
    assert_int_equal(svc_backup_parse_line("RESUME a", 8, &c, &code, &err), -EINVAL);
    assert_int_equal(svc_backup_parse_line("RESUME a 1 2 3", 14, &c, &code, &err), -EINVAL);
    code = SVC_BACKUP_E_COUNT;
    assert_int_equal(svc_backup_parse_line("RESUME .a 1", 11, &c, &code, &err), -EINVAL);
    assert_int_equal(code, SVC_BACKUP_E_BAD_NAME);
    /* the line after the content */
    snprintf(line, sizeof(line), "SHA256 %s\r", hex);
    assert_int_equal(svc_backup_parse_trailer(line, strlen(line), sha, &err), 0);
    assert_int_equal(sha[0], 0xe3);
    assert_int_equal(sha[31], 0x55);
    assert_int_equal(svc_backup_parse_trailer("SHA256", 6, sha, &err), -EINVAL);
    assert_int_equal(svc_backup_parse_trailer("SHA256 abc", 10, sha, &err), -EINVAL);
    assert_string_equal(err.msg, "sha256 is not 64 hex digits");
    snprintf(line, sizeof(line), "sha256 %s", hex);
    assert_int_equal(svc_backup_parse_trailer(line, strlen(line), sha, &err), -EINVAL);
    snprintf(line, sizeof(line), "SHA256 %s x", hex);
    assert_int_equal(svc_backup_parse_trailer(line, strlen(line), sha, &err), -EINVAL);
    /* RESUME is a command, not the lecture's bare name */
    assert_int_equal(svc_backup_classify_first((const uint8_t *)"RESUME a 1\n", 11, NULL),
                     SVC_BACKUP_FIRST_COMMAND);
}

static void test_backup_parse_bad_lines_protocol_error(void **state)
{
    static const char *const bad[] = {
        "PUT",
        "PUT notes.txt",
        "PUT notes.txt -1",
        "PUT notes.txt 12x",
        "PUT notes.txt 0x10",
        "PUT notes.txt 18446744073709551616",
        "PUT notes.txt 12 abc",
        "PUT notes.txt 12 "
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        "PUT notes.txt 12 "
        "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "PUT notes.txt 12 "
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 extra",
        "put notes.txt 12",
        "GET",
        "GET a 1 2",
        "GET a x",
        "GET a 4294967296",
        "LIST all",
        "MORE",
        "MORE 4096",
        "QUIT now",
        "HELLO",
        "",
        "   ",
    };
    struct svc_backup_cmd c;
    enum svc_backup_errc code;
    struct core_err err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        code = SVC_BACKUP_E_COUNT;
        if (svc_backup_parse_line(bad[i], strlen(bad[i]), &c, &code, &err) != -EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(code, SVC_BACKUP_E_PROTOCOL);
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(svc_backup_parse_line("PUT a\0b 1", 9, &c, &code, &err), -EINVAL);
    assert_int_equal(code, SVC_BACKUP_E_PROTOCOL);
}

static void test_backup_parse_bad_names_bad_name_error(void **state)
{
    static const char *const bad[] = {
        "PUT ../etc/passwd 1", "PUT a/b 1", "PUT .. 1",    "PUT . 1",  "PUT .hidden 1",
        "PUT a%2Fb 1",         "PUT %00 1", "PUT a%0Ab 1", "GET ../x", "GET a%2F..%2Fb",
        "PUT a%zz 1",
    };
    struct svc_backup_cmd c;
    enum svc_backup_errc code;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        code = SVC_BACKUP_E_COUNT;
        if (svc_backup_parse_line(bad[i], strlen(bad[i]), &c, &code, NULL) != -EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(code, SVC_BACKUP_E_BAD_NAME);
    }
}

static void test_backup_parse_get_list_quit(void **state)
{
    struct svc_backup_cmd c;
    enum svc_backup_errc code;

    (void)state;
    assert_int_equal(svc_backup_parse_line("GET my%20notes", 14, &c, &code, NULL), 0);
    assert_int_equal(c.verb, SVC_BACKUP_GET);
    assert_string_equal(c.name, "my notes");
    assert_int_equal(c.version, 0);
    assert_int_equal(svc_backup_parse_line("GET a 7", 7, &c, &code, NULL), 0);
    assert_int_equal(c.version, 7);
    assert_int_equal(svc_backup_parse_line("LIST", 4, &c, &code, NULL), 0);
    assert_int_equal(c.verb, SVC_BACKUP_LIST);
    assert_int_equal(svc_backup_parse_line("QUIT\r", 5, &c, &code, NULL), 0);
    assert_int_equal(c.verb, SVC_BACKUP_QUIT);
}

static void test_backup_classify_first_tells_bare_name_from_command(void **state)
{
    static const struct {
        const char *in;
        enum svc_backup_first want;
        size_t name_len;
    } cases[] = {
        {"notes.txt", SVC_BACKUP_FIRST_BARE, 9},
        {"notes.txt\n", SVC_BACKUP_FIRST_BARE, 9},
        {"notes.txt\r\n", SVC_BACKUP_FIRST_BARE, 9},
        {"my notes.txt", SVC_BACKUP_FIRST_BARE, 12},
        {"LIST", SVC_BACKUP_FIRST_BARE, 4},
        {"PUTTY.exe", SVC_BACKUP_FIRST_BARE, 9},
        {"PUT notes.txt 12\n", SVC_BACKUP_FIRST_COMMAND, 0},
        {"PUT notes.txt", SVC_BACKUP_FIRST_COMMAND, 0}, /* a header still arriving */
        {"LIST\n", SVC_BACKUP_FIRST_COMMAND, 0},
        {"LIST\r\n", SVC_BACKUP_FIRST_COMMAND, 0},
        {"GET a\nLIST\n", SVC_BACKUP_FIRST_COMMAND, 0},
        {"a\nb", SVC_BACKUP_FIRST_COMMAND, 0},
        {"\n", SVC_BACKUP_FIRST_COMMAND, 0},
        {"\r\n\r\n", SVC_BACKUP_FIRST_COMMAND, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = 12345;
        enum svc_backup_first got =
            svc_backup_classify_first((const uint8_t *)cases[i].in, strlen(cases[i].in), &n);

        if (got != cases[i].want)
            fail_msg("case %zu (%s): wrong kind", i, cases[i].in);
        if (got == SVC_BACKUP_FIRST_BARE)
            assert_int_equal(n, cases[i].name_len);
    }
}

/* ---- options ---- */

static void test_backup_options_check_fills_defaults(void **state)
{
    json_t *o = NULL;

    (void)state;
    assert_int_equal(core_service_options_check(&svc_backup, NULL, CORE_TCP, &o, NULL), 0);
    assert_string_equal(json_string_value(json_object_get(o, "on_exists")), "version");
    assert_int_equal(json_integer_value(json_object_get(o, "max_file_size")), 4LL << 30);
    assert_int_equal(json_integer_value(json_object_get(o, "quota_bytes")), 64LL << 30);
    assert_true(json_is_false(json_object_get(o, "require_checksum")));
    assert_int_equal(json_integer_value(json_object_get(o, "min_rate_bytes_per_s")), 1024);
    assert_int_equal(json_integer_value(json_object_get(o, "min_rate_window_s")), 60);
    assert_null(json_object_get(o, "directory"));
    json_decref(o);
}

static void test_backup_options_check_bad_values_name_the_field(void **state)
{
    static const struct {
        const char *opts;
        const char *field;
    } bad[] = {
        {"{\"on_exists\":\"overwrite\"}", "options.on_exists"},
        {"{\"on_exists\":1}", "options.on_exists"},
        {"{\"max_file_size\":0}", "options.max_file_size"},
        {"{\"max_file_size\":\"1G\"}", "options.max_file_size"},
        {"{\"quota_bytes\":-1}", "options.quota_bytes"},
        {"{\"require_checksum\":1}", "options.require_checksum"},
        {"{\"directory\":\"relative/dir\"}", "options.directory"},
        {"{\"directory\":7}", "options.directory"},
        {"{\"directory\":\"/tmp/a\\nb\"}", "options.directory"},
        {"{\"colour\":\"blue\"}", "options.colour"},
        {"{\"min_rate_bytes_per_s\":-1}", "options.min_rate_bytes_per_s"},
        {"{\"min_rate_bytes_per_s\":\"fast\"}", "options.min_rate_bytes_per_s"},
        {"{\"min_rate_window_s\":0}", "options.min_rate_window_s"},
        {"{\"min_rate_window_s\":86401}", "options.min_rate_window_s"},
    };
    struct core_err err = {0};
    json_t *o = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *in = json_loads(bad[i].opts, 0, NULL);

        assert_non_null(in);
        assert_int_equal(core_service_options_check(&svc_backup, in, CORE_TCP, &o, &err), -EINVAL);
        assert_string_equal(err.field, bad[i].field);
        json_decref(in);
    }
    assert_int_equal(core_service_options_check(&svc_backup, NULL, CORE_UDP, &o, &err), -EINVAL);
    assert_false(svc_backup.transports & CORE_TRANSPORT_BIT(CORE_UDP));
}

/* ---- uploads ---- */

static void test_backup_put_complete_stores_bytes_and_metadata(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c = conn_open(f);
    const char *content = "hello, backup\n";
    char hex[SVC_BACKUP_SHA256_HEX + 1], hdr[128], want[200];
    json_t *arr, *file;

    (void)state;
    sha_hex(content, strlen(content), hex);
    snprintf(hdr, sizeof(hdr), "PUT notes.txt %zu %s\n", strlen(content), hex);
    assert_int_equal(feed(c, hdr), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(feedn(c, content, 5), CORE_VERDICT_MORE);
    assert_int_equal(c->out.len, 0); /* nothing said before the end */
    assert_absent(f, "notes.txt");   /* and nothing visible yet */
    assert_int_equal(feed(c, content + 5), CORE_VERDICT_MORE);
    snprintf(want, sizeof(want), "STORED notes.txt 1 %zu %s", strlen(content), hex);
    expect_line(c, want);
    conn_close(c, true);
    assert_stored(f, "notes.txt", content);
    assert_int_equal(count_entries(f), 1);

    arr = files_list(f);
    assert_int_equal(json_array_size(arr), 1);
    file = find_file(arr, "notes.txt");
    assert_non_null(file);
    assert_int_equal(json_integer_value(json_object_get(file, "size")), strlen(content));
    assert_string_equal(json_string_value(json_object_get(file, "sha256")), hex);
    assert_int_equal(json_integer_value(json_object_get(file, "version")), 1);
    assert_true(json_is_true(json_object_get(file, "verified")));
    assert_string_equal(json_string_value(json_object_get(file, "integrity")), "sha256");
    assert_int_equal(strlen(json_string_value(json_object_get(file, "stored"))), 20);
    assert_int_equal(json_array_size(json_object_get(file, "versions")), 0);
    json_decref(arr);

    assert_int_equal(counter(f, "uploads_started"), 1);
    assert_int_equal(counter(f, "uploads_stored"), 1);
    assert_int_equal(counter(f, "bytes_stored"), strlen(content));
}

static void test_backup_put_without_checksum_verified_by_size(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c = conn_open(f);
    char hex[SVC_BACKUP_SHA256_HEX + 1], want[200];
    json_t *arr;

    (void)state;
    assert_int_equal(feed(c, "PUT my%20file.txt 3\nabc"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    sha_hex("abc", 3, hex);
    snprintf(want, sizeof(want), "STORED my%%20file.txt 1 3 %s", hex);
    expect_line(c, want);
    /* the connection takes another command */
    assert_int_equal(feed(c, "PUT empty 0\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    expect_prefix(c, "STORED empty 1 0 e3b0c442");
    conn_close(c, true);
    assert_stored(f, "my file.txt", "abc");
    assert_stored(f, "empty", "");
    arr = files_list(f);
    assert_string_equal(
        json_string_value(json_object_get(find_file(arr, "my file.txt"), "integrity")), "size");
    json_decref(arr);
}

static void test_backup_put_cut_midway_keeps_nothing_and_older_copy(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c;

    (void)state;
    put_ok(f, "db.dump", "old content", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT db.dump 100\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(feed(c, "new content, only part of i"), CORE_VERDICT_MORE);
    conn_close(c, false); /* reset, timeout or stop */
    assert_stored(f, "db.dump", "old content");
    assert_int_equal(count_entries(f), 1);
    assert_int_equal(counter(f, "uploads_cut"), 1);
    /* the quota reservation of the cut upload is released */
    c = conn_open(f);
    assert_int_equal(feed(c, "LIST\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK 1");
    expect_prefix(c, "db.dump 1 11 ");
    expect_line(c, "END");
    conn_close(c, true);
}

static void test_backup_put_short_then_eof_size_mismatch_keeps_nothing(void **state)
{
    struct fx *f = fx_new(state, "{\"resume_ttl_ms\": 0}");
    struct conn *c;

    (void)state;
    put_ok(f, "a.bin", "first", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT a.bin 10\n12345"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(svc_backup.session_eof(c->mem, &c->out), CORE_VERDICT_CLOSE);
    expect_line(c, "ERR size-mismatch the client closed after 5 of 10 bytes; nothing kept");
    conn_close(c, true);
    assert_stored(f, "a.bin", "first");
    assert_int_equal(count_entries(f), 1);
    assert_int_equal(counter(f, "uploads_rejected_mismatch"), 1);
}

static void test_backup_put_checksum_mismatch_keeps_nothing(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c;
    char hex[SVC_BACKUP_SHA256_HEX + 1], hdr[128];
    json_t *arr, *file;

    (void)state;
    put_ok(f, "a.bin", "first", 1);
    c = conn_open(f);
    sha_hex("right", 5, hex);
    snprintf(hdr, sizeof(hdr), "PUT a.bin 5 %s\n", hex);
    assert_int_equal(feed(c, hdr), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(feed(c, "wrong"), CORE_VERDICT_MORE);
    expect_prefix(c, "ERR checksum-mismatch ");
    /* the stream stays in step: another command works */
    assert_int_equal(feed(c, "LIST\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK 1");
    conn_close(c, true);
    assert_stored(f, "a.bin", "first");
    assert_int_equal(count_entries(f), 1);
    arr = files_list(f);
    file = find_file(arr, "a.bin");
    assert_int_equal(json_array_size(json_object_get(file, "versions")), 0);
    json_decref(arr);
    assert_int_equal(counter(f, "uploads_rejected_mismatch"), 1);
}

static void test_backup_policy_version_keeps_older_copies_listed(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c;
    json_t *arr, *file, *vers;

    (void)state;
    put_ok(f, "cfg", "one", 1);
    put_ok(f, "cfg", "two!", 2);
    put_ok(f, "cfg", "three", 3);
    assert_stored(f, "cfg", "three");
    assert_int_equal(count_entries(f), 1);
    arr = files_list(f);
    file = find_file(arr, "cfg");
    assert_int_equal(json_integer_value(json_object_get(file, "version")), 3);
    vers = json_object_get(file, "versions");
    assert_int_equal(json_array_size(vers), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vers, 0), "version")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vers, 0), "size")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vers, 1), "version")), 1);
    assert_true(json_is_string(json_object_get(json_array_get(vers, 1), "sha256")));
    json_decref(arr);

    c = conn_open(f);
    assert_int_equal(feed(c, "GET cfg 1\n"), CORE_VERDICT_PULL);
    expect_prefix(c, "OK 3 ");
    assert_int_equal(pull(c), CORE_VERDICT_MORE);
    assert_int_equal(c->out.len, 3);
    assert_memory_equal(c->out.data, "one", 3);
    core_buf_consume(&c->out, 3);
    assert_int_equal(feed(c, "LIST\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK 3");
    expect_prefix(c, "cfg 3 5 ");
    expect_prefix(c, "cfg 2 4 ");
    expect_prefix(c, "cfg 1 3 ");
    expect_line(c, "END");
    conn_close(c, true);
}

static void test_backup_policy_replace_swaps_and_drops_older(void **state)
{
    struct fx *f = fx_new(state, "{\"on_exists\":\"replace\",\"quota_bytes\":12}");
    struct conn *c;
    json_t *arr, *file;

    (void)state;
    put_ok(f, "cfg", "123456", 1);
    put_ok(f, "cfg", "abcdef", 2); /* both copies exist for a moment: 12 bytes */
    assert_stored(f, "cfg", "abcdef");
    arr = files_list(f);
    file = find_file(arr, "cfg");
    assert_int_equal(json_integer_value(json_object_get(file, "version")), 2);
    assert_int_equal(json_array_size(json_object_get(file, "versions")), 0);
    json_decref(arr);
    /* the replaced copy no longer counts against the quota: 6 + 4 <= 12 */
    put_ok(f, "x", "1234", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "GET cfg 1\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR not-found no version 1 of cfg");
    conn_close(c, true);
}

static void test_backup_policy_reject_refuses_existing_name(void **state)
{
    struct fx *f = fx_new(state, "{\"on_exists\":\"reject\"}");
    struct conn *c;

    (void)state;
    put_ok(f, "cfg", "first", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT cfg 6\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR exists cfg exists and on_exists is reject");
    /* refused before any byte: the connection takes another command */
    assert_int_equal(feed(c, "PUT other 2\nok"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    expect_prefix(c, "STORED other 1 2 ");
    conn_close(c, true);
    assert_stored(f, "cfg", "first");
    assert_int_equal(counter(f, "uploads_rejected_exists"), 1);
}

static void test_backup_policy_reject_same_name_in_flight_busy(void **state)
{
    struct fx *f = fx_new(state, "{\"on_exists\":\"reject\"}");
    struct conn *a = conn_open(f), *b = conn_open(f);

    (void)state;
    assert_int_equal(feed(a, "PUT cfg 3\n"), CORE_VERDICT_MORE);
    expect_line(a, "OK");
    assert_int_equal(feed(b, "PUT cfg 3\n"), CORE_VERDICT_MORE);
    expect_line(b, "ERR busy cfg is being uploaded by another client");
    assert_int_equal(feed(a, "aaa"), CORE_VERDICT_MORE);
    expect_prefix(a, "STORED cfg 1 3 ");
    assert_int_equal(feed(b, "PUT cfg 3\n"), CORE_VERDICT_MORE);
    expect_line(b, "ERR exists cfg exists and on_exists is reject");
    conn_close(a, true);
    conn_close(b, true);
    assert_stored(f, "cfg", "aaa");
}

static void test_backup_concurrent_same_name_both_listed(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *a = conn_open(f), *b = conn_open(f);
    json_t *arr, *file;

    (void)state;
    assert_int_equal(feed(a, "PUT cfg 5\n"), CORE_VERDICT_MORE);
    assert_int_equal(feed(b, "PUT cfg 5\n"), CORE_VERDICT_MORE);
    expect_line(a, "OK");
    expect_line(b, "OK");
    assert_int_equal(feed(a, "aa"), CORE_VERDICT_MORE);
    assert_int_equal(feed(b, "bbbbb"), CORE_VERDICT_MORE);
    expect_prefix(b, "STORED cfg 1 5 ");
    assert_int_equal(feed(a, "aaa"), CORE_VERDICT_MORE);
    expect_prefix(a, "STORED cfg 2 5 ");
    conn_close(a, true);
    conn_close(b, true);
    assert_stored(f, "cfg", "aaaaa");
    assert_stored(f, ".sockserv/cfg/1", "bbbbb");
    arr = files_list(f);
    file = find_file(arr, "cfg");
    assert_int_equal(json_integer_value(json_object_get(file, "version")), 2);
    assert_int_equal(json_array_size(json_object_get(file, "versions")), 1);
    json_decref(arr);
}

#define N_THREADS 8

struct racer {
    struct fx *f;
    int id;
    int ok;
};

static void *race_upload(void *arg)
{
    struct racer *r = arg;
    void *mem = calloc(1, svc_backup.session_size);
    struct core_buf out = {0};
    char hdr[64], body[4096];

    memset(body, 'a' + r->id, sizeof(body));
    snprintf(hdr, sizeof(hdr), "PUT shared.bin %zu\n", sizeof(body));
    svc_backup.session_open(r->f->inst, mem, &out);
    svc_backup.session_feed(mem, (const uint8_t *)hdr, strlen(hdr), &out);
    for (size_t i = 0; i < sizeof(body); i += 512)
        svc_backup.session_feed(mem, (const uint8_t *)body + i, 512, &out);
    r->ok = out.len > 10 && memcmp(out.data, "OK\nSTORED shared.bin ", 21) == 0;
    svc_backup.session_close(mem, true);
    core_buf_fini(&out);
    free(mem);
    return NULL;
}

static void test_backup_concurrent_threads_every_upload_kept(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct racer rs[N_THREADS];
    pthread_t th[N_THREADS];
    bool seen[N_THREADS] = {false};
    json_t *arr, *file;
    size_t i;
    json_t *v;

    (void)state;
    for (int k = 0; k < N_THREADS; k++) {
        rs[k] = (struct racer){.f = f, .id = k};
        assert_int_equal(pthread_create(&th[k], NULL, race_upload, &rs[k]), 0);
    }
    for (int k = 0; k < N_THREADS; k++)
        pthread_join(th[k], NULL);
    for (int k = 0; k < N_THREADS; k++)
        assert_true(rs[k].ok);
    arr = files_list(f);
    file = find_file(arr, "shared.bin");
    assert_int_equal(json_integer_value(json_object_get(file, "version")), N_THREADS);
    assert_int_equal(json_array_size(json_object_get(file, "versions")), N_THREADS - 1);
    /* every version is one whole upload, each upload is one version */
    for (unsigned ver = 1; ver <= N_THREADS; ver++) {
        char rel[64], *got;
        size_t n;

        if (ver == N_THREADS)
            snprintf(rel, sizeof(rel), "shared.bin");
        else
            snprintf(rel, sizeof(rel), ".sockserv/shared.bin/%u", ver);
        got = read_stored(f, rel, &n);
        assert_non_null(got);
        assert_int_equal(n, 4096);
        assert_true(got[0] >= 'a' && got[0] < 'a' + N_THREADS);
        for (size_t k = 1; k < n; k++)
            assert_int_equal(got[k], got[0]);
        assert_false(seen[got[0] - 'a']);
        seen[got[0] - 'a'] = true;
        free(got);
    }
    json_array_foreach(json_object_get(file, "versions"), i, v)
        assert_true(json_is_string(json_object_get(v, "sha256")));
    json_decref(arr);
    assert_int_equal(counter(f, "uploads_stored"), N_THREADS);
}

/* ---- sessions in forked children, as the process model runs them ---- */

#define N_CHILDREN 5
#define CHILD_IN 100  /* a child's descriptors: what the parent tells it */
#define CHILD_OUT 101 /* and the lines it answers */
#define CHILD_WAIT_MS 10000

struct child {
    pid_t pid;
    int to, from; /* the parent's ends */
};

/* In a child: the session's next answer line, passed to the parent whole. Whether it was
 * "OK". */
static bool child_pass_line(struct core_buf *out)
{
    uint8_t *nl = memchr(out->data, '\n', out->len);
    size_t n = nl ? (size_t)(nl - out->data) + 1 : 0;
    bool ok = n == 3 && memcmp(out->data, "OK\n", 3) == 0;

    if (!n || write(CHILD_OUT, out->data, n) != (ssize_t)n)
        _exit(3);
    core_buf_consume(out, n);
    return ok;
}

/* In a child: waits for the parent's word. */
static void child_wait(void)
{
    char c;

    if (read(CHILD_IN, &c, 1) != 1)
        _exit(4);
}

/*
 * PUT name size in a child whose descriptors are closed as the process model closes them; the
 * answer goes to the parent. After OK: with hold, it waits for the parent's word and then sends
 * size bytes of fill and passes the STORED line on; without, it sends part of the content,
 * says "fed" and waits to be killed.
 */
static void child_put(struct fx *f, const char *name, size_t size, char fill, bool hold)
{
    void *mem = calloc(1, svc_backup.session_size);
    struct core_buf out = {0};
    char hdr[128], *body = malloc(size);

    if (!mem || !body)
        _exit(2);
    memset(body, fill, size);
    snprintf(hdr, sizeof(hdr), "PUT %s %zu\n", name, size);
    if (svc_backup.session_open(f->inst, mem, &out) != CORE_VERDICT_MORE ||
        svc_backup.session_feed(mem, (const uint8_t *)hdr, strlen(hdr), &out) != CORE_VERDICT_MORE)
        _exit(5);
    if (!child_pass_line(&out)) {
        /* refused: the session is over, the parent expects no more */
        svc_backup.session_close(mem, true);
        _exit(0);
    }
    if (!hold) {
        if (svc_backup.session_feed(mem, (const uint8_t *)body, size / 2, &out) !=
                CORE_VERDICT_MORE ||
            write(CHILD_OUT, "fed\n", 4) != 4)
            _exit(6);
        for (;;)
            pause();
    }
    child_wait();
    if (svc_backup.session_feed(mem, (const uint8_t *)body, size, &out) != CORE_VERDICT_MORE)
        _exit(7);
    (void)child_pass_line(&out);
    svc_backup.session_close(mem, true);
    _exit(0);
}

static struct child child_start(struct fx *f, const char *name, size_t size, char fill, bool hold)
{
    struct child c;
    int to[2], from[2];

    assert_int_equal(pipe(to), 0);
    assert_int_equal(pipe(from), 0);
    c.pid = fork();
    assert_true(c.pid >= 0);
    if (c.pid == 0) {
        if (dup2(to[0], CHILD_IN) < 0 || dup2(from[1], CHILD_OUT) < 0)
            _exit(1);
        /* the process model's child keeps nothing of the daemon's descriptors */
        (void)close_range(3, CHILD_IN - 1, 0);
        (void)close_range(CHILD_OUT + 1, ~0u, 0);
        child_put(f, name, size, fill, hold);
    }
    close(to[0]);
    close(from[1]);
    c.to = to[1];
    c.from = from[0];
    return c;
}

/* The child's next line, within CHILD_WAIT_MS. */
static void child_line(const struct child *c, char *line, size_t cap)
{
    size_t n = 0;

    while (n + 1 < cap) {
        struct pollfd p = {.fd = c->from, .events = POLLIN};

        if (poll(&p, 1, CHILD_WAIT_MS) != 1 || read(c->from, &line[n], 1) != 1)
            fail_msg("child %d said nothing more after \"%.*s\"", (int)c->pid, (int)n, line);
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
}

static void child_end(struct child *c, bool killed)
{
    int status;

    if (killed)
        (void)kill(c->pid, SIGKILL);
    assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
    if (!killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fail_msg("child %d ended with status 0x%x", (int)c->pid, (unsigned)status);
    close(c->to);
    close(c->from);
}

static void test_backup_forked_sessions_share_quota_and_version_numbers(void **state)
{
    struct fx *f = fx_new(state, "{\"quota_bytes\":3000}");
    struct child ch[N_CHILDREN];
    bool ok[N_CHILDREN], seen[N_CHILDREN + 1] = {false};
    unsigned n_ok = 0, version_of[N_CHILDREN] = {0};
    char line[256];
    struct conn *c;

    (void)state;
    /* Each declares 1000 bytes: a header holds nothing, so every one is admitted. */
    for (int i = 0; i < N_CHILDREN; i++) {
        ch[i] = child_start(f, "shared", 1000, (char)('a' + i), true);
        child_line(&ch[i], line, sizeof(line));
        assert_string_equal(line, "OK");
    }
    c = conn_open(f);
    /* Their bytes take the quota as they come, in whatever process: exactly three fit, and
     * each is committed as its own version, numbered once. */
    for (int i = 0; i < N_CHILDREN; i++) {
        unsigned v;

        assert_int_equal(write(ch[i].to, "g", 1), 1);
        child_line(&ch[i], line, sizeof(line));
        ok[i] = strncmp(line, "STORED ", 7) == 0;
        if (ok[i]) {
            if (sscanf(line, "STORED shared %u 1000 ", &v) != 1 || v < 1 || v > 3 || seen[v])
                fail_msg("child %d answered \"%s\"", i, line);
            seen[v] = true;
            version_of[i] = v;
        } else if (strcmp(line, "ERR quota 1000 bytes received would exceed quota_bytes 3000; "
                                "nothing kept") != 0) {
            fail_msg("child %d answered \"%s\"", i, line);
        }
        n_ok += ok[i];
        child_end(&ch[i], false);
    }
    assert_int_equal(n_ok, 3);
    for (int i = 0; i < N_CHILDREN; i++) {
        char rel[64], *got;

        if (!ok[i])
            continue;
        if (version_of[i] == 3)
            snprintf(rel, sizeof(rel), "shared");
        else
            snprintf(rel, sizeof(rel), ".sockserv/shared/%u", version_of[i]);
        got = read_stored(f, rel, NULL);
        assert_non_null(got);
        assert_int_equal(strspn(got, (char[]){(char)('a' + i), 0}), 1000);
        free(got);
    }
    /* The quota is used up by what the children stored. */
    assert_int_equal(feed(c, "PUT mine 1\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR quota 1 bytes would exceed quota_bytes 3000 (3000 stored, 0 in progress)");
    conn_close(c, true);
    assert_int_equal(count_entries(f), 1);
}

static void test_backup_forked_child_killed_mid_upload_frees_its_share(void **state)
{
    struct fx *f = fx_new(state, "{\"quota_bytes\":1000,\"on_exists\":\"reject\"}");
    struct child ch = child_start(f, "big", 800, 'x', false);
    char line[256], body[500];
    siginfo_t si = {0};
    struct conn *c;

    (void)state;
    child_line(&ch, line, sizeof(line));
    assert_string_equal(line, "OK");
    child_line(&ch, line, sizeof(line));
    assert_string_equal(line, "fed");
    /* While the child lives, its upload holds its share and its name. */
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT other 500\n"), CORE_VERDICT_MORE);
    expect_prefix(c, "ERR quota ");
    assert_int_equal(feed(c, "PUT big 10\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR busy big is being uploaded by another client");
    /* Killed, and not reaped yet: a zombie uploads nothing. */
    assert_int_equal(kill(ch.pid, SIGKILL), 0);
    assert_int_equal(waitid(P_PID, (id_t)ch.pid, &si, WEXITED | WNOWAIT), 0);
    memset(body, 'o', sizeof(body));
    assert_int_equal(feed(c, "PUT other 500\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(feedn(c, body, sizeof(body)), CORE_VERDICT_MORE);
    expect_prefix(c, "STORED other 1 500 ");
    assert_int_equal(feed(c, "PUT big 3\nbig"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    expect_prefix(c, "STORED big 1 3 ");
    conn_close(c, true);
    child_end(&ch, true);
    /* The killed upload left nothing: the two copies are all there is. */
    assert_stored(f, "big", "big");
    assert_int_equal(count_entries(f), 2);
}

static void test_backup_limits_refuse_before_any_byte(void **state)
{
    struct fx *f = fx_new(state, "{\"max_file_size\":10,\"quota_bytes\":20}");
    struct conn *c;

    (void)state;
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT big 11\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR too-large 11 bytes is over max_file_size 10");
    conn_close(c, true);
    put_ok(f, "a", "0123456789", 1);
    put_ok(f, "b", "01234567", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT c 3\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR quota 3 bytes would exceed quota_bytes 20 (18 stored, 0 in progress)");
    /* an upload in progress holds its share once its bytes come */
    assert_int_equal(feed(c, "PUT c 2\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(feed(c, "x"), CORE_VERDICT_MORE);
    {
        struct conn *d = conn_open(f);

        assert_int_equal(feed(d, "PUT d 1\n"), CORE_VERDICT_MORE);
        expect_prefix(d, "ERR quota ");
        conn_close(d, true);
    }
    conn_close(c, false);
    assert_int_equal(count_entries(f), 2);
    assert_absent(f, "big");
    assert_int_equal(counter(f, "uploads_rejected_too_large"), 1);
    assert_int_equal(counter(f, "uploads_rejected_quota"), 2);
}

static void test_backup_quota_counts_copies_found_at_start(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct core_err err = {0};
    json_t *opts = json_pack("{s:s, s:I, s:I, s:b}", "on_exists", "version", "max_file_size",
                             (json_int_t)100, "quota_bytes", (json_int_t)12, "require_checksum", 0);
    void *inst2 = NULL, *mem;
    struct core_buf out = {0};

    (void)state;
    put_ok(f, "a", "12345", 1);
    put_ok(f, "a", "123456", 2); /* versions count too: 11 bytes */
    svc_backup.instance_free(f->inst);
    f->inst = NULL;
    assert_int_equal(svc_backup.instance_new(opts, CORE_TCP, &f->env, &inst2, &err), 0);
    f->inst = inst2;
    mem = calloc(1, svc_backup.session_size);
    svc_backup.session_open(inst2, mem, &out);
    assert_int_equal(svc_backup.session_feed(mem, (const uint8_t *)"PUT b 2\n", 8, &out),
                     CORE_VERDICT_MORE);
    assert_true(out.len > 10 && memcmp(out.data, "ERR quota ", 10) == 0);
    svc_backup.session_close(mem, true);
    free(mem);
    core_buf_fini(&out);
    json_decref(opts);
}

static void test_backup_second_instance_on_same_directory_busy(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct core_svc_env other = f->env;
    struct core_err err = {0};
    json_t *o = json_pack("{s:s}", "directory", f->store);
    void *inst2 = NULL;

    (void)state;
    other.listener_id = "b2";
    assert_int_equal(svc_backup.instance_new(o, CORE_TCP, &other, &inst2, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "in use"));
    json_decref(o);
}

/* Options changed while a listener runs: its next instance joins the directory, the one it
 * replaces stores nothing more; another listener still cannot have the directory. */
static void test_backup_next_instance_of_a_listener_shares_its_directory(void **state)
{
    struct fx *f = fx_new(state, "{\"quota_bytes\":100}");
    struct core_svc_env other = f->env;
    json_t *o = json_pack("{s:I}", "quota_bytes", (json_int_t)50);
    json_t *o2 = json_pack("{s:s}", "directory", f->store);
    struct core_err err = {0};
    void *next = NULL, *third = NULL, *keep;
    struct conn *c = conn_open(f), *d;

    (void)state;
    put_ok(f, "a", "first", 1);
    assert_int_equal(feed(c, "PUT b 4\nab"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(svc_backup.instance_new(o, CORE_TCP, &f->env, &next, &err), 0);
    other.listener_id = "b2";
    assert_int_equal(svc_backup.instance_new(o2, CORE_TCP, &other, &third, &err), -EBUSY);
    /* the upload on the instance replaced is refused, nothing kept */
    assert_int_equal(feed(c, "cd"), CORE_VERDICT_MORE);
    expect_line(c, "ERR busy the listener's configuration changed during the upload; nothing "
                   "kept, send it again");
    conn_close(c, true);
    /* the old one goes (its uploads drained): the next goes on in the same directory */
    svc_backup.instance_free(f->inst);
    keep = f->inst = next;
    d = conn_open(f);
    assert_int_equal(feed(d, "PUT a 5\nagain"), CORE_VERDICT_MORE);
    expect_line(d, "OK");
    expect_prefix(d, "STORED a 2 5 ");
    assert_int_equal(feed(d, "PUT big 60\n"), CORE_VERDICT_MORE);
    expect_prefix(d, "ERR quota 60 bytes would exceed quota_bytes 50 ");
    conn_close(d, true);
    assert_stored(f, "a", "again");
    assert_absent(f, "b");
    assert_int_equal(svc_backup.instance_new(o2, CORE_TCP, &other, &third, &err), -EBUSY);
    assert_ptr_equal(f->inst, keep);
    json_decref(o2);
    json_decref(o);
}

/* ---- where a directory may be ---- */

/* env_check of {"directory": dir} in f's environment (usable: every check). */
static int dir_check(struct fx *f, const char *dir, bool usable, struct core_err *err)
{
    json_t *o = json_pack("{s:s}", "directory", dir);
    int r;

    assert_non_null(o);
    memset(err, 0, sizeof(*err));
    r = svc_backup.env_check(o, &f->env, usable, err);
    json_decref(o);
    return r;
}

static void expect_refused(struct fx *f, const char *dir, bool usable, const char *what)
{
    struct core_err err;

    if (dir_check(f, dir, usable, &err) != -EINVAL)
        fail_msg("%s was not refused", dir);
    assert_string_equal(err.field, "options.directory");
    if (!strstr(err.msg, what))
        fail_msg("%s: \"%s\" does not say \"%s\"", dir, err.msg, what);
}

static void test_backup_directory_never_in_the_state_directory(void **state)
{
    struct fx *f = fx_new(state, NULL);
    char p[512], link[256], other[256], prot_dir[256], log[256];
    const char *prot[] = {prot_dir, log, NULL};
    struct core_err err;

    (void)state;
    snprintf(other, sizeof(other), "%s.other", f->dir);
    snprintf(prot_dir, sizeof(prot_dir), "%s.secrets", f->dir);
    snprintf(log, sizeof(log), "%s/revisions.jsonl", f->dir);
    assert_int_equal(mkdir(prot_dir, 0700), 0);
    f->env.protected_paths = prot;

    expect_refused(f, f->dir, false, "state directory");
    snprintf(p, sizeof(p), "%s/inside/deeper", f->dir);
    expect_refused(f, p, false, "lies inside the daemon's own state directory");
    snprintf(p, sizeof(p), "%s/backup", f->dir);
    expect_refused(f, p, false, "lies inside");
    expect_refused(f, "/", false, "holds the daemon's own state directory");
    snprintf(p, sizeof(p), "%s/..", f->dir); /* /tmp, which holds it */
    expect_refused(f, p, false, "holds");
    snprintf(p, sizeof(p), "%s/../%s/x", f->dir, strrchr(f->dir, '/') + 1);
    expect_refused(f, p, false, "lies inside");
    snprintf(link, sizeof(link), "%s.link", f->dir);
    assert_int_equal(symlink(f->dir, link), 0);
    expect_refused(f, link, false, "state directory");
    snprintf(p, sizeof(p), "%s/new/dir", link);
    expect_refused(f, p, false, "state directory");
    /* the other protected paths: the token file's directory, the revisions log */
    expect_refused(f, prot_dir, false, "file or directory");
    snprintf(p, sizeof(p), "%s/x", prot_dir);
    expect_refused(f, p, false, "file or directory");
    /* beneath <state>/backup/ and outside: allowed, and nothing is made by the check */
    snprintf(p, sizeof(p), "%s/backup/mine", f->dir);
    assert_int_equal(dir_check(f, p, true, &err), 0);
    assert_int_equal(dir_check(f, other, true, &err), 0);
    assert_int_equal(access(other, F_OK), -1);
    /* a state directory given relative to the working directory is judged all the same */
    {
        char cwd[512];
        const char *abs_state = f->env.state_dir;

        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(chdir("/tmp"), 0);
        f->env.state_dir = strrchr(f->dir, '/') + 1;
        expect_refused(f, f->dir, false, "state directory");
        f->env.state_dir = abs_state;
        assert_int_equal(chdir(cwd), 0);
    }
    /* a missing directory option is the daemon's own default */
    assert_int_equal(svc_backup.env_check(f->opts, &f->env, true, &err), 0);
    /* instance_new holds to the rule too */
    {
        json_t *o = json_pack("{s:s}", "directory", link);
        void *inst = NULL;

        assert_int_equal(svc_backup.instance_new(o, CORE_TCP, &f->env, &inst, &err), -EINVAL);
        assert_null(inst);
        json_decref(o);
    }
    unlink(link);
    rmdir(prot_dir);
}

static void test_backup_directory_that_cannot_hold_files_refused(void **state)
{
    struct fx *f = fx_new(state, NULL);
    char file[256], p[512];
    FILE *fp;

    (void)state;
    snprintf(file, sizeof(file), "%s.file", f->dir);
    fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    expect_refused(f, file, true, "is not a directory");
    snprintf(p, sizeof(p), "%s/x", file);
    expect_refused(f, p, true, "not a directory");
    expect_refused(f, "/proc/sockserv", true, "kernel file system");
    {
        char dangling[256];

        snprintf(dangling, sizeof(dangling), "%s.dangling", f->dir);
        assert_int_equal(symlink("/nonexistent/sockserv", dangling), 0);
        snprintf(p, sizeof(p), "%s/x", dangling);
        expect_refused(f, p, true, "cannot be resolved");
        unlink(dangling);
    }
    {
        char longname[400];

        memset(longname, 'n', sizeof(longname));
        snprintf(longname, sizeof(longname), "%s.x/", f->dir);
        memset(longname + strlen(longname), 'n', 300);
        longname[strlen(f->dir) + 3 + 300] = '\0';
        expect_refused(f, longname, true, "longer than 255 bytes");
    }
    expect_refused(f, "/sys/kernel/sockserv", true, "kernel file system");
    /* not judged when the listener is not to run now */
    {
        struct core_err err;

        assert_int_equal(dir_check(f, "/proc/sockserv", false, &err), 0);
    }
    unlink(file);
}

/* ---- what an upload holds ---- */

static void test_backup_instance_unused_removes_the_directory_it_made(void **state)
{
    struct fx *f = fx_new(state, NULL);
    char parent[256];
    struct core_err err = {0};

    (void)state;
    snprintf(parent, sizeof(parent), "%s/backup", f->dir);
    assert_int_equal(access(f->store, F_OK), 0);
    svc_backup.instance_free(f->inst);
    f->inst = NULL;
    assert_int_equal(access(f->store, F_OK), -1);
    assert_int_equal(access(parent, F_OK), -1);
    /* one that stored something keeps it */
    assert_int_equal(svc_backup.instance_new(f->opts, CORE_TCP, &f->env, &f->inst, &err), 0);
    put_ok(f, "a", "kept", 1);
    svc_backup.instance_free(f->inst);
    f->inst = NULL;
    assert_int_equal(access(f->store, F_OK), 0);
}

static void test_backup_headers_hold_no_disk_until_bytes_come(void **state)
{
    struct fx *f = fx_new_in(state, "{}", "64m");
    struct conn *c[16];
    struct statvfs before, after;

    (void)state;
    if (!f) {
        print_message("cannot mount a tmpfs (not root?)\n");
        skip();
        return;
    }
    assert_int_equal(statvfs(f->mnt, &before), 0);
    for (int i = 0; i < 16; i++) {
        char hdr[64];

        c[i] = conn_open(f);
        snprintf(hdr, sizeof(hdr), "PUT f%d 60000000\n", i);
        assert_int_equal(feed(c[i], hdr), CORE_VERDICT_MORE);
        expect_line(c[i], "OK");
    }
    assert_int_equal(statvfs(f->mnt, &after), 0);
    assert_true((before.f_bfree - after.f_bfree) * after.f_frsize < 1024 * 1024);
    /* more than the disk holds is refused at the header */
    {
        struct conn *big = conn_open(f);

        assert_int_equal(feed(big, "PUT huge 80000000\n"), CORE_VERDICT_MORE);
        expect_prefix(big, "ERR disk-full 80000000 bytes declared, ");
        conn_close(big, true);
    }
    for (int i = 0; i < 16; i++)
        conn_close(c[i], false);
}

static void test_backup_quota_taken_as_bytes_arrive(void **state)
{
    struct fx *f = fx_new(state, "{\"quota_bytes\":100}");
    struct conn *a = conn_open(f), *b = conn_open(f);
    char body[60];

    (void)state;
    memset(body, 'q', sizeof(body));
    assert_int_equal(feed(a, "PUT a 60\n"), CORE_VERDICT_MORE);
    expect_line(a, "OK");
    assert_int_equal(feed(b, "PUT b 60\n"), CORE_VERDICT_MORE);
    expect_line(b, "OK");
    assert_int_equal(feedn(a, body, 10), CORE_VERDICT_MORE);
    /* a holds its 60 now: b's first byte would pass the quota */
    assert_int_equal(feedn(b, body, 1), CORE_VERDICT_MORE);
    expect_line(b, "ERR quota 1 bytes received would exceed quota_bytes 100; nothing kept");
    /* the rest of b's content is skipped, the connection goes on */
    assert_int_equal(feedn(b, body, 59), CORE_VERDICT_MORE);
    assert_int_equal(feedn(a, body, 50), CORE_VERDICT_MORE);
    expect_prefix(a, "STORED a 1 60 ");
    assert_int_equal(feed(b, "PUT b 40\n"), CORE_VERDICT_MORE);
    expect_line(b, "OK");
    conn_close(a, true);
    conn_close(b, false);
    assert_int_equal(count_entries(f), 1);
    assert_int_equal(counter(f, "uploads_rejected_quota"), 1);
}

static void test_backup_upload_below_min_rate_cut(void **state)
{
    struct fx *f = fx_new(state, "{\"min_rate_bytes_per_s\":1000000,\"min_rate_window_s\":1}");
    struct conn *c = conn_open(f);
    struct timespec tick = {.tv_nsec = 50 * 1000 * 1000};
    int r = CORE_VERDICT_MORE;

    (void)state;
    assert_int_equal(feed(c, "PUT slow 100000\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    /* One byte each 50 ms: cut once a window of 1 s has passed, within a few. */
    for (int i = 0; i < 100 && r == CORE_VERDICT_MORE; i++) {
        nanosleep(&tick, NULL); /* the client's pace, not a wait for the service */
        r = feed(c, "x");
    }
    assert_int_equal(r, CORE_VERDICT_CLOSE);
    expect_prefix(c, "ERR too-slow below min_rate_bytes_per_s 1000000 over ");
    conn_close(c, true);
    assert_int_equal(count_entries(f), 0);
    assert_int_equal(counter(f, "uploads_cut"), 1);
}

/* An instance replaced while an upload drains on it: the upload is refused, never stored
 * where the listener no longer looks; a replacement rolled back gives the directory back. */
static void test_backup_replaced_instance_stores_nothing_more(void **state)
{
    struct fx *f = fx_new(state, NULL);
    char other[256];
    json_t *o;
    void *inst2 = NULL;
    struct core_err err = {0};
    struct conn *c = conn_open(f);

    (void)state;
    snprintf(other, sizeof(other), "%s.moved", f->dir);
    o = json_pack("{s:s}", "directory", other);
    assert_int_equal(feed(c, "PUT late 4\nab"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    /* the change is prepared (the new instance made), then rolled back */
    assert_int_equal(svc_backup.instance_new(o, CORE_TCP, &f->env, &inst2, &err), 0);
    svc_backup.instance_free(inst2);
    assert_int_equal(feed(c, "cd"), CORE_VERDICT_MORE);
    expect_prefix(c, "STORED late 1 4 ");
    /* now it is made and kept: what drains on the old one is refused */
    assert_int_equal(feed(c, "PUT later 4\nab"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    assert_int_equal(svc_backup.instance_new(o, CORE_TCP, &f->env, &inst2, &err), 0);
    assert_int_equal(feed(c, "cd"), CORE_VERDICT_MORE);
    expect_line(c, "ERR busy the listener's configuration changed during the upload; nothing "
                   "kept, send it again");
    conn_close(c, true);
    assert_absent(f, "later");
    svc_backup.instance_free(inst2);
    json_decref(o);
}

static void test_backup_require_checksum_refuses_uploads_without(void **state)
{
    struct fx *f = fx_new(state, "{\"require_checksum\":true}");
    struct conn *c = conn_open(f);

    (void)state;
    assert_int_equal(feed(c, "PUT a 3\n"), CORE_VERDICT_MORE);
    expect_prefix(c, "ERR checksum-required ");
    conn_close(c, true);
    c = conn_open(f);
    assert_int_equal(feed(c, "notes.txt"), CORE_VERDICT_CLOSE);
    expect_prefix(c, "ERR checksum-required ");
    conn_close(c, true);
    put_ok(f, "a", "abc", 1);
    assert_int_equal(counter(f, "uploads_rejected_checksum_required"), 2);
}

/* ---- the lecture's flow ---- */

static void test_backup_bare_name_flow_stores_unverified(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c = conn_open(f);
    char hex[SVC_BACKUP_SHA256_HEX + 1], want[200];
    json_t *arr, *file;

    (void)state;
    assert_int_equal(feed(c, "notes.txt"), CORE_VERDICT_MORE);
    expect_line(c, "ACK");
    assert_int_equal(feed(c, "PUT looks like a command but is content\n"), CORE_VERDICT_MORE);
    assert_int_equal(feed(c, "more content"), CORE_VERDICT_MORE);
    assert_int_equal(c->out.len, 0);
    assert_absent(f, "notes.txt");
    assert_int_equal(svc_backup.session_eof(c->mem, &c->out), CORE_VERDICT_CLOSE);
    sha_hex("PUT looks like a command but is content\nmore content", 52, hex);
    snprintf(want, sizeof(want), "STORED notes.txt 1 52 %s", hex);
    expect_line(c, want);
    conn_close(c, true);
    assert_stored(f, "notes.txt", "PUT looks like a command but is content\nmore content");

    arr = files_list(f);
    file = find_file(arr, "notes.txt");
    assert_true(json_is_false(json_object_get(file, "verified")));
    assert_string_equal(json_string_value(json_object_get(file, "integrity")), "none");
    assert_string_equal(json_string_value(json_object_get(file, "sha256")), hex);
    json_decref(arr);
    c = conn_open(f);
    assert_int_equal(feed(c, "LIST\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK 1");
    {
        char *line = take_line(c);

        assert_non_null(strstr(line, " unverified current"));
        free(line);
    }
    conn_close(c, true);
    assert_int_equal(counter(f, "uploads_stored_unverified"), 1);
}

static void test_backup_bare_name_with_newline_accepted(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c = conn_open(f);

    (void)state;
    assert_int_equal(feed(c, "report.pdf\r\n"), CORE_VERDICT_MORE);
    expect_line(c, "ACK");
    assert_int_equal(feed(c, "%PDF"), CORE_VERDICT_MORE);
    assert_int_equal(svc_backup.session_eof(c->mem, &c->out), CORE_VERDICT_CLOSE);
    expect_prefix(c, "STORED report.pdf 1 4 ");
    conn_close(c, true);
    assert_stored(f, "report.pdf", "%PDF");
}

static void test_backup_bare_bad_name_refused_with_error_line(void **state)
{
    static const char *const bad[] = {"../../etc/passwd", "/etc/shadow", ".bashrc", "..", "a\x01"};
    struct fx *f = fx_new(state, NULL);

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct conn *c = conn_open(f);

        assert_int_equal(feed(c, bad[i]), CORE_VERDICT_CLOSE);
        expect_prefix(c, "ERR bad-name name ");
        conn_close(c, true);
    }
    assert_int_equal(counter(f, "uploads_rejected_bad_name"), 5);
    assert_int_equal(count_entries(f), 0);
}

static void test_backup_bare_flow_limits_enforced_while_streaming(void **state)
{
    struct fx *f = fx_new(state, "{\"max_file_size\":10,\"quota_bytes\":15}");
    struct conn *c;

    (void)state;
    c = conn_open(f);
    assert_int_equal(feed(c, "big"), CORE_VERDICT_MORE);
    expect_line(c, "ACK");
    assert_int_equal(feed(c, "12345678"), CORE_VERDICT_MORE);
    assert_int_equal(feed(c, "901"), CORE_VERDICT_CLOSE);
    expect_line(c, "ERR too-large over max_file_size 10; nothing kept");
    conn_close(c, true);
    assert_absent(f, "big");

    put_ok(f, "old", "12345678", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "quota"), CORE_VERDICT_MORE);
    expect_line(c, "ACK");
    assert_int_equal(feed(c, "12345"), CORE_VERDICT_MORE);
    assert_int_equal(feed(c, "678"), CORE_VERDICT_CLOSE);
    expect_line(c, "ERR quota over quota_bytes 15; nothing kept");
    conn_close(c, true);
    assert_absent(f, "quota");
    assert_int_equal(count_entries(f), 1);
    assert_int_equal(counter(f, "uploads_rejected_too_large"), 1);
    assert_int_equal(counter(f, "uploads_rejected_quota"), 1);
    /* what the refused uploads held is released: 7 bytes still fit */
    c = conn_open(f);
    assert_int_equal(feed(c, "fits"), CORE_VERDICT_MORE);
    expect_line(c, "ACK");
    assert_int_equal(feed(c, "1234567"), CORE_VERDICT_MORE);
    assert_int_equal(svc_backup.session_eof(c->mem, &c->out), CORE_VERDICT_CLOSE);
    expect_prefix(c, "STORED fits 1 7 ");
    conn_close(c, true);
}

/* ---- restores ---- */

static void test_backup_get_restores_content_and_checksum(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c;
    char hex[SVC_BACKUP_SHA256_HEX + 1], want[128];

    (void)state;
    put_ok(f, "a b", "restore me", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "GET a%20b\n"), CORE_VERDICT_PULL);
    sha_hex("restore me", 10, hex);
    snprintf(want, sizeof(want), "OK 10 %s 1", hex);
    expect_line(c, want);
    assert_int_equal(c->out.len, 0); /* the content comes through session_pull */
    assert_int_equal(pull(c), CORE_VERDICT_MORE);
    assert_int_equal(c->out.len, 10);
    assert_memory_equal(c->out.data, "restore me", 10);
    core_buf_consume(&c->out, 10);
    assert_int_equal(feed(c, "GET missing\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR not-found no file missing");
    assert_int_equal(feed(c, "GET a%20b 9\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR not-found no version 9 of a%20b");
    assert_int_equal(feed(c, "QUIT\n"), CORE_VERDICT_CLOSE);
    expect_line(c, "BYE");
    conn_close(c, true);
    assert_int_equal(counter(f, "restores"), 1);
    assert_int_equal(counter(f, "bytes_restored"), 10);
}

static void test_backup_get_empty_file_needs_no_pull(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c;
    char hex[SVC_BACKUP_SHA256_HEX + 1], want[128];

    (void)state;
    put_ok(f, "empty", "", 1);
    c = conn_open(f);
    assert_int_equal(feed(c, "GET empty\nLIST\n"), CORE_VERDICT_MORE);
    sha_hex("", 0, hex);
    snprintf(want, sizeof(want), "OK 0 %s 1", hex);
    expect_line(c, want);
    expect_line(c, "OK 1");
    conn_close(c, true);
}

/* Uploads size bytes of a pattern under name through the protocol; returns the pattern. */
static uint8_t *put_big(struct fx *f, const char *name, size_t size)
{
    uint8_t *data = malloc(size);
    struct conn *c = conn_open(f);
    char hdr[300], want[300];

    assert_non_null(data);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)(i * 7 + i / 4096);
    snprintf(hdr, sizeof(hdr), "PUT %s %zu\n", name, size);
    assert_int_equal(feed(c, hdr), CORE_VERDICT_MORE);
    for (size_t i = 0; i < size; i += 65536)
        assert_int_equal(feedn(c, data + i, size - i < 65536 ? size - i : 65536),
                         CORE_VERDICT_MORE);
    expect_line(c, "OK");
    snprintf(want, sizeof(want), "STORED %s 1 %zu ", name, size);
    expect_prefix(c, want);
    conn_close(c, true);
    return data;
}

static void test_backup_get_large_file_streamed_by_pull_without_acks(void **state)
{
    struct fx *f = fx_new(state, NULL);
    size_t size = 5 * MIB + 123;
    uint8_t *data = put_big(f, "big", size);
    struct conn *c = conn_open(f);
    char hex[SVC_BACKUP_SHA256_HEX + 1], want[128];

    (void)state;
    assert_int_equal(feed(c, "GET big\n"), CORE_VERDICT_PULL);
    sha_hex(data, size, hex);
    snprintf(want, sizeof(want), "OK %zu %s 1", size, hex);
    expect_line(c, want);
    /* every pull appends one bounded chunk; the last one ends the restore */
    assert_int_equal(pull_all(c, 256 * 1024), CORE_VERDICT_MORE);
    assert_int_equal(c->out.len, size);
    assert_memory_equal(c->out.data, data, size);
    core_buf_consume(&c->out, size);
    /* the connection is back to commands */
    assert_int_equal(feed(c, "LIST\n"), CORE_VERDICT_MORE);
    expect_line(c, "OK 1");
    conn_close(c, true);
    assert_int_equal(counter(f, "bytes_restored"), size);
    free(data);
}

static void test_backup_get_pipelined_commands_answered_after_content(void **state)
{
    struct fx *f = fx_new(state, NULL);
    size_t size = MIB + 1;
    uint8_t *data = put_big(f, "big", size);
    struct conn *c = conn_open(f);
    const char *cmds = "GET big\nGET big 1\nPUT small 3\nabcLIST\nQUIT\n";

    (void)state;
    /* one read holds two restores, an upload and more commands */
    assert_int_equal(feed(c, cmds), CORE_VERDICT_PULL);
    expect_prefix(c, "OK 1048577 ");
    assert_int_equal(c->out.len, 0);
    /* the first content, the second restore, then the answers to the rest, in order */
    assert_int_equal(pull_all(c, 256 * 1024 + 4096), CORE_VERDICT_CLOSE);
    assert_true(c->out.len > size);
    assert_memory_equal(c->out.data, data, size);
    core_buf_consume(&c->out, size);
    expect_prefix(c, "OK 1048577 ");
    assert_true(c->out.len > size);
    assert_memory_equal(c->out.data, data, size);
    core_buf_consume(&c->out, size);
    expect_line(c, "OK");
    expect_prefix(c, "STORED small 1 3 ");
    expect_line(c, "OK 2");
    expect_prefix(c, "big 1 1048577 ");
    expect_prefix(c, "small 1 3 ");
    expect_line(c, "END");
    expect_line(c, "BYE");
    assert_int_equal(c->out.len, 0);
    conn_close(c, true);
    assert_stored(f, "small", "abc");
    free(data);
}

static void test_backup_get_input_fed_during_restore_held_until_content_sent(void **state)
{
    struct fx *f = fx_new(state, NULL);
    size_t size = 600 * 1024;
    uint8_t *data = put_big(f, "big", size);
    struct conn *c = conn_open(f);

    (void)state;
    assert_int_equal(feed(c, "GET big\n"), CORE_VERDICT_PULL);
    expect_prefix(c, "OK 614400 ");
    /* a runner that keeps reading while it sends: the input waits for the content */
    assert_int_equal(feed(c, "LI"), CORE_VERDICT_PULL);
    assert_int_equal(feed(c, "ST\n"), CORE_VERDICT_PULL);
    assert_int_equal(c->out.len, 0);
    assert_int_equal(pull_all(c, 256 * 1024 + 4096), CORE_VERDICT_MORE);
    assert_memory_equal(c->out.data, data, size);
    core_buf_consume(&c->out, size);
    expect_line(c, "OK 1");
    conn_close(c, true);
    free(data);
}

static void test_backup_get_copy_shrunk_midway_fails_restore(void **state)
{
    struct fx *f = fx_new(state, NULL);
    size_t size = MIB;
    uint8_t *data = put_big(f, "big", size);
    struct conn *c = conn_open(f);
    char path[300];

    (void)state;
    assert_int_equal(feed(c, "GET big\n"), CORE_VERDICT_PULL);
    expect_prefix(c, "OK 1048576 ");
    assert_int_equal(pull(c), CORE_VERDICT_PULL);
    snprintf(path, sizeof(path), "%s/big", f->store);
    assert_int_equal(truncate(path, 300 * 1024), 0);
    /* the client gets a short restore and the connection ends in an error */
    assert_int_equal(pull_all(c, 256 * 1024), -EIO);
    assert_int_equal(c->out.len, 300 * 1024);
    conn_close(c, false);
    free(data);
}

static void test_backup_more_is_no_command(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c = conn_open(f);

    (void)state;
    /* (a first read of one line that is no command is the lecture's bare name) */
    assert_int_equal(feed(c, "LIST\nMORE 4096\n"), CORE_VERDICT_CLOSE);
    expect_line(c, "OK 0");
    expect_line(c, "END");
    expect_line(c, "ERR protocol unknown command (PUT, GET, LIST, QUIT, RESUME)");
    conn_close(c, true);
}

static void test_backup_file_open_current_and_versions(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct core_err err = {0};
    uint64_t size = 0;
    char buf[16] = {0};
    int fd = -1;

    (void)state;
    put_ok(f, "doc", "v-one", 1);
    put_ok(f, "doc", "v-two!", 2);
    assert_int_equal(svc_backup.file_open(f->opts, &f->env, "doc", 0, &fd, &size, &err), 0);
    assert_int_equal(size, 6);
    assert_int_equal(read(fd, buf, sizeof(buf)), 6);
    assert_string_equal(buf, "v-two!");
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(svc_backup.file_open(f->opts, &f->env, "doc", 1, &fd, &size, &err), 0);
    assert_int_equal(size, 5);
    assert_int_equal(read(fd, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "v-one");
    close(fd);
    assert_int_equal(svc_backup.file_open(f->opts, &f->env, "doc", 2, &fd, &size, &err), 0);
    close(fd);
    assert_int_equal(svc_backup.file_open(f->opts, &f->env, "doc", 3, &fd, &size, &err), -ENOENT);
    assert_int_equal(svc_backup.file_open(f->opts, &f->env, "nope", 0, &fd, &size, &err), -ENOENT);
    assert_int_equal(svc_backup.file_open(f->opts, &f->env, "../doc", 0, &fd, &size, &err),
                     -EINVAL);
    assert_int_equal(svc_backup.file_open(f->opts, &f->env, ".sockserv", 0, &fd, &size, &err),
                     -EINVAL);
}

static void test_backup_files_list_before_first_start_empty(void **state)
{
    struct core_svc_env env = {.listener_id = "never", .state_dir = "/nonexistent/state"};
    json_t *opts = NULL, *arr = NULL;
    struct core_err err = {0};
    uint64_t size;
    int fd;

    (void)state;
    assert_int_equal(core_service_options_check(&svc_backup, NULL, CORE_TCP, &opts, &err), 0);
    assert_int_equal(svc_backup.files_list(opts, &env, &arr, &err), 0);
    assert_int_equal(json_array_size(arr), 0);
    assert_int_equal(svc_backup.file_open(opts, &env, "a", 0, &fd, &size, &err), -ENOENT);
    json_decref(arr);
    json_decref(opts);
}

/* ---- the directory cannot be tricked ---- */

static void test_backup_planted_symlinks_never_followed(void **state)
{
    struct fx *f = fx_new(state, NULL);
    char outside[256], target[300], link[300], meta_link[300];
    struct conn *c;
    json_t *arr;
    FILE *fp;

    (void)state;
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    assert_int_equal(mkdir(outside, 0700), 0);
    snprintf(target, sizeof(target), "%s/secret", outside);
    fp = fopen(target, "w");
    assert_non_null(fp);
    fputs("secret", fp);
    fclose(fp);
    snprintf(link, sizeof(link), "%s/link.txt", f->store);
    assert_int_equal(symlink(target, link), 0);
    snprintf(meta_link, sizeof(meta_link), "%s/.sockserv/victim", f->store);
    assert_int_equal(symlink(outside, meta_link), 0);

    c = conn_open(f);
    /* restore through a link: no such file */
    assert_int_equal(feed(c, "GET link.txt\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR not-found no file link.txt");
    /* upload over a link: refused before any byte */
    assert_int_equal(feed(c, "PUT link.txt 4\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR exists link.txt is taken by something that is not a regular file");
    /* upload whose metadata directory is a link: refused, nothing written through it */
    assert_int_equal(feed(c, "PUT victim 4\nevil"), CORE_VERDICT_MORE);
    expect_line(c, "OK");
    expect_prefix(c, "ERR io ");
    conn_close(c, true);
    c = conn_open(f);
    assert_int_equal(feed(c, "link.txt"), CORE_VERDICT_CLOSE);
    expect_prefix(c, "ERR exists ");
    conn_close(c, true);

    {
        char *s = read_path(target, NULL);
        DIR *d = opendir(outside);
        int n = 0;

        assert_string_equal(s, "secret");
        free(s);
        while (readdir(d))
            n++;
        closedir(d);
        assert_int_equal(n, 3); /* ., .. and secret: nothing else appeared outside */
    }
    assert_absent(f, "victim");
    arr = files_list(f);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    {
        struct core_err err = {0};
        uint64_t size;
        int fd;

        assert_int_equal(svc_backup.file_open(f->opts, &f->env, "link.txt", 0, &fd, &size, &err),
                         -ENOENT);
    }
}

static void test_backup_copy_without_metadata_listed_then_versioned(void **state)
{
    struct fx *f = fx_new(state, NULL);
    char path[300];
    json_t *arr, *file, *old;
    FILE *fp;

    (void)state;
    snprintf(path, sizeof(path), "%s/by-hand.txt", f->store);
    fp = fopen(path, "w");
    fputs("put there by hand", fp);
    fclose(fp);
    arr = files_list(f);
    file = find_file(arr, "by-hand.txt");
    assert_non_null(file);
    assert_true(json_is_null(json_object_get(file, "sha256")));
    assert_true(json_is_false(json_object_get(file, "verified")));
    assert_int_equal(json_integer_value(json_object_get(file, "size")), 17);
    json_decref(arr);
    put_ok(f, "by-hand.txt", "uploaded", 2);
    arr = files_list(f);
    file = find_file(arr, "by-hand.txt");
    old = json_array_get(json_object_get(file, "versions"), 0);
    assert_int_equal(json_integer_value(json_object_get(old, "version")), 1);
    assert_int_equal(json_integer_value(json_object_get(old, "size")), 17);
    json_decref(arr);
    assert_stored(f, ".sockserv/by-hand.txt/1", "put there by hand");
}

static void test_backup_leftover_temporary_files_removed_at_start(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct core_err err = {0};
    char path[300];
    FILE *fp;

    (void)state;
    snprintf(path, sizeof(path), "%s/.tmp-0123456789abcdef", f->store);
    put_ok(f, "a", "kept", 1); /* a directory that holds nothing is removed with its instance */
    svc_backup.instance_free(f->inst);
    f->inst = NULL;
    fp = fopen(path, "w");
    fputs("half an upload", fp);
    fclose(fp);
    assert_int_equal(svc_backup.instance_new(f->opts, CORE_TCP, &f->env, &f->inst, &err), 0);
    assert_absent(f, ".tmp-0123456789abcdef");
}

static void test_backup_protocol_errors_answered_then_closed(void **state)
{
    struct fx *f = fx_new(state, NULL);
    struct conn *c;
    char line[SVC_BACKUP_LINE_MAX + 10];

    (void)state;
    c = conn_open(f);
    assert_int_equal(feed(c, "\nHELLO\n"), CORE_VERDICT_CLOSE);
    expect_line(c, "ERR protocol unknown command (PUT, GET, LIST, QUIT, RESUME)");
    conn_close(c, true);
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT a\n"), CORE_VERDICT_CLOSE);
    expect_line(c, "ERR protocol usage: PUT <name> <size> [<sha256>|* [<offset>]]");
    conn_close(c, true);
    c = conn_open(f);
    memset(line, 'x', sizeof(line));
    memcpy(line, "PUT ", 4);
    assert_int_equal(feedn(c, line, sizeof(line)), CORE_VERDICT_CLOSE);
    expect_line(c, "ERR protocol command line longer than 1024 bytes");
    conn_close(c, true);
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT ../x 1\n"), CORE_VERDICT_MORE);
    expect_line(c, "ERR bad-name name contains /");
    conn_close(c, true);
    assert_int_equal(counter(f, "protocol_errors"), 3);
    assert_int_equal(counter(f, "uploads_rejected_bad_name"), 1);
}

/* ---- a full disk ---- */

static void test_backup_disk_full_keeps_nothing_and_older_copy(void **state)
{
    struct fx *f = fx_new_in(state, "{}", "1m");
    struct conn *c;
    uint8_t *chunk;
    int r = CORE_VERDICT_MORE;

    (void)state;
    if (!f) {
        print_message("cannot mount a tmpfs (not root?): the disk-full case is left to the "
                      "integration suite\n");
        skip();
        return;
    }
    put_ok(f, "keep", "precious", 1);
    /* the header says too much for the disk: refused before any byte */
    c = conn_open(f);
    assert_int_equal(feed(c, "PUT huge 2097152\n"), CORE_VERDICT_MORE);
    expect_prefix(c, "ERR disk-full ");
    conn_close(c, true);
    /* the lecture's flow runs out of disk while streaming */
    chunk = calloc(1, 65536);
    c = conn_open(f);
    assert_int_equal(feed(c, "keep"), CORE_VERDICT_MORE);
    expect_line(c, "ACK");
    for (int i = 0; i < 32 && r == CORE_VERDICT_MORE; i++)
        r = feedn(c, chunk, 65536);
    assert_int_equal(r, CORE_VERDICT_CLOSE);
    expect_prefix(c, "ERR disk-full write failed after ");
    conn_close(c, true);
    free(chunk);
    assert_stored(f, "keep", "precious");
    assert_int_equal(count_entries(f), 1);
    assert_int_equal(counter(f, "uploads_rejected_disk_full"), 2);
    /* the space came back: a new upload fits */
    put_ok(f, "after", "fits", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_backup_name_check_ordinary_names_pass, fx_teardown),
        cmocka_unit_test_teardown(test_backup_name_check_every_bad_name_refused, fx_teardown),
        cmocka_unit_test_teardown(test_backup_name_decode_escapes_then_checks, fx_teardown),
        cmocka_unit_test_teardown(test_backup_name_encode_roundtrips, fx_teardown),
        cmocka_unit_test_teardown(test_backup_parse_put_with_and_without_checksum, fx_teardown),
        cmocka_unit_test_teardown(test_backup_parse_v2_forms_checksum_after_offset_resume,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_parse_bad_lines_protocol_error, fx_teardown),
        cmocka_unit_test_teardown(test_backup_parse_bad_names_bad_name_error, fx_teardown),
        cmocka_unit_test_teardown(test_backup_parse_get_list_quit, fx_teardown),
        cmocka_unit_test_teardown(test_backup_classify_first_tells_bare_name_from_command,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_options_check_fills_defaults, fx_teardown),
        cmocka_unit_test_teardown(test_backup_options_check_bad_values_name_the_field, fx_teardown),
        cmocka_unit_test_teardown(test_backup_put_complete_stores_bytes_and_metadata, fx_teardown),
        cmocka_unit_test_teardown(test_backup_put_without_checksum_verified_by_size, fx_teardown),
        cmocka_unit_test_teardown(test_backup_put_cut_midway_keeps_nothing_and_older_copy,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_put_short_then_eof_size_mismatch_keeps_nothing,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_put_checksum_mismatch_keeps_nothing, fx_teardown),
        cmocka_unit_test_teardown(test_backup_policy_version_keeps_older_copies_listed,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_policy_replace_swaps_and_drops_older, fx_teardown),
        cmocka_unit_test_teardown(test_backup_policy_reject_refuses_existing_name, fx_teardown),
        cmocka_unit_test_teardown(test_backup_policy_reject_same_name_in_flight_busy, fx_teardown),
        cmocka_unit_test_teardown(test_backup_concurrent_same_name_both_listed, fx_teardown),
        cmocka_unit_test_teardown(test_backup_concurrent_threads_every_upload_kept, fx_teardown),
        cmocka_unit_test_teardown(test_backup_forked_sessions_share_quota_and_version_numbers,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_forked_child_killed_mid_upload_frees_its_share,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_limits_refuse_before_any_byte, fx_teardown),
        cmocka_unit_test_teardown(test_backup_quota_counts_copies_found_at_start, fx_teardown),
        cmocka_unit_test_teardown(test_backup_second_instance_on_same_directory_busy, fx_teardown),
        cmocka_unit_test_teardown(test_backup_next_instance_of_a_listener_shares_its_directory,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_directory_never_in_the_state_directory, fx_teardown),
        cmocka_unit_test_teardown(test_backup_directory_that_cannot_hold_files_refused,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_instance_unused_removes_the_directory_it_made,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_headers_hold_no_disk_until_bytes_come, fx_teardown),
        cmocka_unit_test_teardown(test_backup_quota_taken_as_bytes_arrive, fx_teardown),
        cmocka_unit_test_teardown(test_backup_upload_below_min_rate_cut, fx_teardown),
        cmocka_unit_test_teardown(test_backup_replaced_instance_stores_nothing_more, fx_teardown),
        cmocka_unit_test_teardown(test_backup_require_checksum_refuses_uploads_without,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_bare_name_flow_stores_unverified, fx_teardown),
        cmocka_unit_test_teardown(test_backup_bare_name_with_newline_accepted, fx_teardown),
        cmocka_unit_test_teardown(test_backup_bare_bad_name_refused_with_error_line, fx_teardown),
        cmocka_unit_test_teardown(test_backup_bare_flow_limits_enforced_while_streaming,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_get_restores_content_and_checksum, fx_teardown),
        cmocka_unit_test_teardown(test_backup_get_empty_file_needs_no_pull, fx_teardown),
        cmocka_unit_test_teardown(test_backup_get_large_file_streamed_by_pull_without_acks,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_get_pipelined_commands_answered_after_content,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_get_input_fed_during_restore_held_until_content_sent,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_get_copy_shrunk_midway_fails_restore, fx_teardown),
        cmocka_unit_test_teardown(test_backup_more_is_no_command, fx_teardown),
        cmocka_unit_test_teardown(test_backup_file_open_current_and_versions, fx_teardown),
        cmocka_unit_test_teardown(test_backup_files_list_before_first_start_empty, fx_teardown),
        cmocka_unit_test_teardown(test_backup_planted_symlinks_never_followed, fx_teardown),
        cmocka_unit_test_teardown(test_backup_copy_without_metadata_listed_then_versioned,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_leftover_temporary_files_removed_at_start,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_backup_protocol_errors_answered_then_closed, fx_teardown),
        cmocka_unit_test_teardown(test_backup_disk_full_keeps_nothing_and_older_copy, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
