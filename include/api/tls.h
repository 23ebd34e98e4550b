#ifndef API_TLS_H
#define API_TLS_H

/*
 * The control API's certificate and key, read and checked before anything is bound, so that a
 * bad file is told with its name and the daemon exits before it serves. libmicrohttpd (through
 * GnuTLS) serves them with API_TLS_PRIORITIES: TLS 1.2 and 1.3 only.
 *
 * Thread rules: the main thread, at start-up.
 */

#include <stddef.h>

#include "core/err.h"

/* GnuTLS priorities of the API: the default ciphers, no protocol older than TLS 1.2. */
#define API_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define API_TLS_FILE_MAX (1024 * 1024) /* largest certificate or key file, in bytes */

/* A certificate chain and its private key, as PEM text. */
struct api_tls {
    char *cert; /* NUL-terminated; the server's certificate first, then its chain */
    char *key;  /* NUL-terminated; wiped when freed */
};

/*
 * Reads the PEM certificate (chain) at cert_path and the PEM private key at key_path, and
 * checks that they parse and that the key is the certificate's. Returns 0 with *ret filled
 * (release with api_tls_fini()), or a negative errno with err naming the file at fault
 * ("--api-tls-cert FILE: ..."; err->field "tls_cert" or "tls_key"): -ENOENT, -EACCES and the
 * like for a file that cannot be read, -EFBIG past API_TLS_FILE_MAX, -EINVAL for one that is no
 * PEM certificate or key, or a key that does not belong to the certificate; -ENOMEM.
 */
int api_tls_load(const char *cert_path, const char *key_path, struct api_tls *ret,
                 struct core_err *err);

/* Frees what t holds, the key wiped first. Accepts a zeroed or finished struct. */
void api_tls_fini(struct api_tls *t);

#endif
