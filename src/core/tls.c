#include "core/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define FIELD_TLS "options.tls"
#define FIELD_CERT "options.tls.cert_file"
#define FIELD_KEY "options.tls.key_file"
#define FIELD_CA "options.tls.client_ca_file"
#define TLS_RECORD_MAX 16384 /* the largest plaintext of one TLS record */

struct core_tls {
    SSL_CTX *ctx;
};

struct core_tls_conn {
    SSL *ssl;
    short events;     /* what the last -EAGAIN waits for */
    bool ready;       /* the handshake is done */
    bool failed;      /* a fatal error: no close_notify */
    bool shut_down;   /* close_notify sent */
    bool peer_closed; /* close_notify (or the end of the stream) read */
    bool eof_told;    /* ...and returned by core_tls_read() */
    int end;          /* what it returns then: 0, or the socket's error */
};

/* The text of the latest OpenSSL error of this thread ("unknown error" without one); the
 * queue is cleared. */
static const char *ssl_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();

    if (!e)
        (void)snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* Reads the whole regular file at path into *ret (NUL-terminated, *ret_len bytes). -EINVAL with
 * err naming field for anything that keeps it from being read; -ENOMEM. */
static int read_file(const char *field, const char *path, char **ret, size_t *ret_len,
                     struct core_err *err)
{
    struct stat st;
    char *text;
    size_t len = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return core_err_set(err, -EINVAL, field, "%s: cannot read %s: %s", field, path,
                            strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        r = core_err_set(err, -EINVAL, field, "%s: %s is not a regular file", field, path);
        goto out_close;
    }
    if (st.st_size > CORE_TLS_FILE_MAX) {
        r = core_err_set(err, -EINVAL, field, "%s: %s is larger than %d bytes", field, path,
                         CORE_TLS_FILE_MAX);
        goto out_close;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        r = core_err_set(err, -ENOMEM, NULL, "out of memory");
        goto out_close;
    }
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, text + len, (size_t)st.st_size - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = core_err_set(err, -EINVAL, field, "%s: cannot read %s: %s", field, path,
                             strerror(errno));
            OPENSSL_cleanse(text, (size_t)st.st_size + 1);
            free(text);
            goto out_close;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    close(fd);
    *ret = text;
    *ret_len = len;
    return 0;

out_close:
    close(fd);
    return r;
}

/* A key file with a passphrase is refused rather than prompted for. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* The certificate chain of PEM text into ctx. */
static int use_chain(SSL_CTX *ctx, const char *path, const char *text, size_t len,
                     struct core_err *err)
{
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    X509 *x = NULL;
    char e[160];
    int r = 0;

    if (!bio)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    x = PEM_read_bio_X509_AUX(bio, NULL, no_password, NULL);
    if (!x || SSL_CTX_use_certificate(ctx, x) != 1) {
        r = core_err_set(err, -EINVAL, FIELD_CERT, "%s: %s holds no PEM certificate (%s)",
                         FIELD_CERT, path, ssl_error(e, sizeof(e)));
        goto out;
    }
    for (;;) {
        X509 *ca = PEM_read_bio_X509(bio, NULL, no_password, NULL);

        if (!ca)
            break;
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            r = core_err_set(err, -EINVAL, FIELD_CERT, "%s: %s: bad chain certificate (%s)",
                             FIELD_CERT, path, ssl_error(e, sizeof(e)));
            goto out;
        }
    }
    ERR_clear_error(); /* the end of the file */
out:
    X509_free(x);
    BIO_free(bio);
    return r;
}

static int use_key(SSL_CTX *ctx, const char *path, const char *text, size_t len,
                   struct core_err *err)
{
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *k;
    char e[160];
    int r = 0;

    if (!bio)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    k = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    if (k && X509_check_private_key(SSL_CTX_get0_certificate(ctx), k) != 1)
        r = core_err_set(err, -EINVAL, FIELD_KEY, "%s: %s is not the key of the certificate",
                         FIELD_KEY, path);
    else if (!k || SSL_CTX_use_PrivateKey(ctx, k) != 1)
        r = core_err_set(err, -EINVAL, FIELD_KEY,
                         "%s: %s holds no PEM private key without a passphrase (%s)", FIELD_KEY,
                         path, ssl_error(e, sizeof(e)));
    else if (SSL_CTX_check_private_key(ctx) != 1)
        r = core_err_set(err, -EINVAL, FIELD_KEY, "%s: %s is not the key of the certificate (%s)",
                         FIELD_KEY, path, ssl_error(e, sizeof(e)));
    EVP_PKEY_free(k);
    BIO_free(bio);
    return r;
}

/* The CA certificates of PEM text: trusted for client certificates, and named to clients. */
static int use_ca(SSL_CTX *ctx, const char *path, const char *text, size_t len,
                  struct core_err *err)
{
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    unsigned n = 0;
    char e[160];
    int r = 0;

    if (!bio || !names) {
        r = core_err_set(err, -ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(bio, NULL, no_password, NULL);
        X509_NAME *name;

        if (!x)
            break;
        name = X509_NAME_dup(X509_get_subject_name(x));
        if (X509_STORE_add_cert(store, x) != 1 || !name || !sk_X509_NAME_push(names, name)) {
            X509_NAME_free(name);
            X509_free(x);
            r = core_err_set(err, -EINVAL, FIELD_CA, "%s: %s: cannot use a certificate (%s)",
                             FIELD_CA, path, ssl_error(e, sizeof(e)));
            goto out;
        }
        X509_free(x);
        n++;
    }
    if (n == 0) {
        r = core_err_set(err, -EINVAL, FIELD_CA, "%s: %s holds no PEM certificate (%s)", FIELD_CA,
                         path, ssl_error(e, sizeof(e)));
        goto out;
    }
    ERR_clear_error();
    SSL_CTX_set_client_CA_list(ctx, names);
    names = NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
out:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    BIO_free(bio);
    return r;
}

/* Loads the file at path (field names it) and hands it to use. */
static int load(SSL_CTX *ctx, const char *field, const char *path,
                int (*use)(SSL_CTX *, const char *, const char *, size_t, struct core_err *),
                struct core_err *err)
{
    size_t len = 0;
    char *text;
    int r = read_file(field, path, &text, &len, err);

    if (r < 0)
        return r;
    r = use(ctx, path, text, len, err);
    OPENSSL_cleanse(text, len);
    free(text);
    return r;
}

/* The members of v, checked for shape: paths, no unknown member. */
static int shape_check(const json_t *v, const char **ret_cert, const char **ret_key,
                       const char **ret_ca, struct core_err *err)
{
    static const char *const fields[] = {FIELD_CERT, FIELD_KEY, FIELD_CA};
    static const char *const names[] = {"cert_file", "key_file", "client_ca_file"};
    const char *got[3] = {NULL, NULL, NULL};
    const char *key;
    json_t *m;

    if (!json_is_object(v))
        return core_err_set(err, -EINVAL, FIELD_TLS,
                            FIELD_TLS ": must be an object {\"cert_file\": \"/...\", "
                                      "\"key_file\": \"/...\"[, \"client_ca_file\": \"/...\"]}");
    json_object_foreach((json_t *)v, key, m)
    {
        unsigned i;
        const char *s;

        for (i = 0; i < 3 && strcmp(key, names[i]) != 0; i++)
            ;
        if (i == 3)
            return core_err_set(err, -EINVAL, FIELD_TLS,
                                FIELD_TLS ": unknown member \"%.64s\" (it has cert_file, key_file, "
                                          "client_ca_file)",
                                key);
        s = json_string_value(m);
        if (!s || s[0] != '/' || strlen(s) != json_string_length(m) || strlen(s) >= 4096)
            return core_err_set(err, -EINVAL, fields[i], "%s: must be an absolute path", fields[i]);
        for (const char *c = s; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return core_err_set(err, -EINVAL, fields[i], "%s: must not hold control characters",
                                    fields[i]);
        got[i] = s;
    }
    for (unsigned i = 0; i < 2; i++)
        if (!got[i])
            return core_err_set(err, -EINVAL, fields[i], "%s: is required with options.tls",
                                fields[i]);
    *ret_cert = got[0];
    *ret_key = got[1];
    *ret_ca = got[2];
    return 0;
}

int core_tls_new(const json_t *v, struct core_tls **ret, struct core_err *err)
{
    const char *cert = NULL, *key = NULL, *ca = NULL;
    struct core_tls *t;
    int r;

    r = shape_check(v, &cert, &key, &ca, err);
    if (r < 0)
        return r;
    t = calloc(1, sizeof(*t));
    if (!t)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx) {
        r = core_err_set(err, -ENOMEM, NULL, "out of memory");
        goto out_free;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(t->ctx, 0);
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(t->ctx, no_password);
    r = load(t->ctx, FIELD_CERT, cert, use_chain, err);
    if (r == 0)
        r = load(t->ctx, FIELD_KEY, key, use_key, err);
    if (r == 0 && ca)
        r = load(t->ctx, FIELD_CA, ca, use_ca, err);
    if (r < 0)
        goto out_free;
    *ret = t;
    return 0;

out_free:
    ERR_clear_error();
    core_tls_free(t);
    return r;
}

void core_tls_free(struct core_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

int core_tls_options_check(const json_t *v, struct core_err *err)
{
    struct core_tls *t;
    int r = core_tls_new(v, &t, err);

    core_tls_free(r == 0 ? t : NULL);
    return r;
}

/* "YYYY-MM-DDTHH:MM:SSZ" of t, or NULL. */
static json_t *time_json(const ASN1_TIME *t)
{
    struct tm tm;
    char buf[32];

    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(buf);
}

/* The RFC 2253 text of name, or null. */
static json_t *name_json(const X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    json_t *j = NULL;
    char *p;
    long n;

    if (bio && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
        n = BIO_get_mem_data(bio, &p);
        j = json_stringn(p, n > 0 ? (size_t)n : 0);
    }
    BIO_free(bio);
    return j ? j : json_null();
}

json_t *core_tls_status_json(const json_t *v)
{
    const char *cert = json_string_value(json_object_get(v, "cert_file"));
    struct core_err e;
    json_t *subject = NULL, *not_after = NULL;
    size_t len = 0;
    char *text;
    X509 *x = NULL;

    if (!v || json_is_null(v))
        return json_null();
    if (cert && read_file(FIELD_CERT, cert, &text, &len, &e) == 0) {
        BIO *bio = BIO_new_mem_buf(text, (int)len);

        x = bio ? PEM_read_bio_X509(bio, NULL, no_password, NULL) : NULL;
        BIO_free(bio);
        free(text);
        ERR_clear_error();
    }
    if (x) {
        subject = name_json(X509_get_subject_name(x));
        not_after = time_json(X509_get0_notAfter(x));
        X509_free(x);
    }
    return json_pack("{s:b, s:b, s:o, s:o}", "enabled", 1, "client_auth",
                     json_object_get(v, "client_ca_file") != NULL, "subject",
                     subject ? subject : json_null(), "not_after",
                     not_after ? not_after : json_null());
}

int core_tls_conn_new(struct core_tls *t, int fd, struct core_tls_conn **ret)
{
    struct core_tls_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->ssl = SSL_new(t->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        ERR_clear_error();
        SSL_free(c->ssl);
        free(c);
        return -ENOMEM;
    }
    SSL_set_accept_state(c->ssl);
    c->events = POLLIN;
    *ret = c;
    return 0;
}

/* Why a handshake failed, from the error queue: the counter of its reason. */
static enum core_counter failure_reason(int ssl_err)
{
    unsigned long e = ERR_peek_last_error();

    if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN || !e)
        return CORE_CTR_TLS_FAILURES_OTHER;
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return CORE_CTR_TLS_FAILURES_OTHER;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return CORE_CTR_TLS_FAILURES_NO_CLIENT_CERT;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return CORE_CTR_TLS_FAILURES_BAD_CERTIFICATE;
    default:
        return CORE_CTR_TLS_FAILURES_PROTOCOL;
    }
}

/* The outcome of SSL call result n: -EAGAIN (c->events set), -EPROTO, or a socket error. */
static int io_error(struct core_tls_conn *c, int n, int *ret_ssl_err)
{
    int e = SSL_get_error(c->ssl, n), saved = errno;

    *ret_ssl_err = e;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        c->events = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->events = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        c->failed = true;
        if (saved == EAGAIN || saved == EINTR) {
            c->failed = false;
            return -EAGAIN;
        }
        return saved && ERR_peek_error() == 0 ? -saved : -ECONNRESET;
    default:
        c->failed = true;
        return -EPROTO;
    }
}

int core_tls_handshake(struct core_tls_conn *c, struct core_metrics *m)
{
    int n, ssl_err, r;

    if (c->ready)
        return 0;
    ERR_clear_error();
    n = SSL_do_handshake(c->ssl);
    if (n == 1) {
        c->ready = true;
        core_metrics_add(m, CORE_CTR_TLS_HANDSHAKES, 1);
        return 0;
    }
    r = io_error(c, n, &ssl_err);
    if (r == -EAGAIN)
        return r;
    c->failed = true;
    core_metrics_add(m, CORE_CTR_TLS_HANDSHAKE_FAILURES, 1);
    core_metrics_add(m, failure_reason(ssl_err), 1);
    ERR_clear_error();
    return r < 0 ? r : -ECONNRESET;
}

void core_tls_handshake_cut(struct core_metrics *m, int error)
{
    if (error == -ECANCELED)
        return;
    core_metrics_add(m, CORE_CTR_TLS_HANDSHAKE_FAILURES, 1);
    core_metrics_add(
        m, error == -ETIMEDOUT ? CORE_CTR_TLS_FAILURES_TIMEOUT : CORE_CTR_TLS_FAILURES_OTHER, 1);
}

ssize_t core_tls_read(struct core_tls_conn *c, void *buf, size_t size)
{
    size_t off = 0;
    int ssl_err, r = 0;

    if (c->peer_closed) {
        c->eof_told = true;
        return c->end;
    }
    ERR_clear_error();
    while (off < size) {
        size_t want = size - off > INT32_MAX ? INT32_MAX : size - off;
        int n = SSL_read(c->ssl, (char *)buf + off, (int)want);

        if (n > 0) {
            off += (size_t)n;
            c->events = POLLIN;
            /* A record that would not fit whole stays unread in the socket, which wakes
             * the caller again; one begun is read to its end. */
            if (size - off < TLS_RECORD_MAX && !SSL_has_pending(c->ssl))
                break;
            continue;
        }
        r = io_error(c, n, &ssl_err);
        if (r == 0 || (r < 0 && r != -EAGAIN && off > 0)) {
            /* Told now, or by the next call: the socket will not wake anyone for it. */
            c->peer_closed = true;
            c->eof_told = off == 0;
            c->end = r;
        }
        break;
    }
    ERR_clear_error();
    if (off > 0)
        return (ssize_t)off;
    return r;
}

ssize_t core_tls_write(struct core_tls_conn *c, const void *p, size_t len)
{
    int ssl_err, n, r;

    ERR_clear_error();
    n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0) {
        c->events = POLLOUT;
        return n;
    }
    r = io_error(c, n, &ssl_err);
    ERR_clear_error();
    return r == 0 ? -EPIPE : r;
}

bool core_tls_conn_pending(const struct core_tls_conn *c)
{
    return SSL_pending(c->ssl) > 0 || (c->peer_closed && !c->eof_told);
}

short core_tls_conn_events(const struct core_tls_conn *c)
{
    return c->events;
}

void core_tls_conn_shutdown(struct core_tls_conn *c)
{
    if (!c || c->shut_down || !c->ready || c->failed)
        return;
    c->shut_down = true;
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
}

void core_tls_conn_free(struct core_tls_conn *c)
{
    if (!c)
        return;
    core_tls_conn_shutdown(c);
    SSL_free(c->ssl);
    free(c);
}
