#include "api/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/*
 * Reads the whole regular file at path, as NUL-terminated text, into *ret. option names it in
 * messages ("--api-tls-cert"). Returns 0 or a negative errno with err set.
 */
static int read_text(const char *option, const char *field, const char *path, char **ret,
                     struct core_err *err)
{
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        return core_err_set(err, r, field, "%s %s: %s", option, path, strerror(-r));
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        (void)core_err_set(err, r, field, "%s %s: %s", option, path, strerror(-r));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        r = core_err_set(err, -EINVAL, field, "%s %s: not a regular file", option, path);
        goto out_close;
    }
    if (st.st_size > API_TLS_FILE_MAX) {
        r = core_err_set(err, -EFBIG, field, "%s %s: larger than %d bytes", option, path,
                         API_TLS_FILE_MAX);
        goto out_close;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        r = core_err_set(err, -ENOMEM, field, "%s %s: out of memory", option, path);
        goto out_close;
    }
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, text + len, (size_t)st.st_size - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            (void)core_err_set(err, r, field, "%s %s: %s", option, path, strerror(-r));
            goto out_free;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    close(fd);
    *ret = text;
    return 0;

out_free:
    OPENSSL_cleanse(text, (size_t)st.st_size + 1);
    free(text);
out_close:
    close(fd);
    return r;
}

int api_tls_load(const char *cert_path, const char *key_path, struct api_tls *ret,
                 struct core_err *err)
{
    struct api_tls t = {0};
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    BIO *bio;
    int r;

    r = read_text("--api-tls-cert", "tls_cert", cert_path, &t.cert, err);
    if (r < 0)
        return r;
    r = read_text("--api-tls-key", "tls_key", key_path, &t.key, err);
    if (r < 0)
        goto out_fini;

    bio = BIO_new_mem_buf(t.cert, -1);
    if (bio) {
        cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    if (!cert) {
        r = core_err_set(err, -EINVAL, "tls_cert",
                         "--api-tls-cert %s: not a PEM certificate (-----BEGIN CERTIFICATE-----)",
                         cert_path);
        goto out_fini;
    }
    bio = BIO_new_mem_buf(t.key, -1);
    if (bio) {
        /* No passphrase callback: an encrypted key cannot be read by a daemon. */
        key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
        BIO_free(bio);
    }
    if (!key) {
        r = core_err_set(err, -EINVAL, "tls_key",
                         "--api-tls-key %s: not an unencrypted PEM private key", key_path);
        goto out_fini;
    }
    if (X509_check_private_key(cert, key) != 1) {
        r = core_err_set(err, -EINVAL, "tls_key",
                         "--api-tls-key %s: not the key of the certificate in %s", key_path,
                         cert_path);
        goto out_fini;
    }
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(key);
    *ret = t;
    return 0;

out_fini:
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(key);
    api_tls_fini(&t);
    return r;
}

void api_tls_fini(struct api_tls *t)
{
    if (t->key)
        OPENSSL_cleanse(t->key, strlen(t->key));
    free(t->key);
    free(t->cert);
    t->key = NULL;
    t->cert = NULL;
}
