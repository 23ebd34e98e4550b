/*
 * The control API's guard (api/guard.h): what it makes of the Host, Origin, Authorization and
 * Sec-Fetch-* headers of a request, for guards over a loopback address with a token, a wildcard
 * address without one, and a Unix socket.
 *
 * Input: lines METHOD, PUBLIC ("1": a route that needs no token), HOST, AUTHORIZATION, ORIGIN,
 * SEC-FETCH-SITE, SEC-FETCH-MODE, SEC-FETCH-DEST; a line that is not there is a header that is
 * absent, an empty line an empty header.
 *
 * Properties: the verdict is one of the enum and its status is 200 exactly when it allows, 401
 * for the token, 403 otherwise; the detail is printable text that never tells the token; a
 * guard without a token, or a public route, never asks for one; a Unix socket's guard never
 * refuses a Host; what is allowed past the token carried exactly "Bearer TOKEN" (blanks aside);
 * the right token turns a token refusal into an allowance; a request without Origin and
 * Sec-Fetch-* is never refused as cross-site; the Host's letter case does not matter; the
 * loopback guard takes its own address with its port, localhost with it and the extra name as
 * the Host, and nothing else.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "api/guard.h"

#include "fuzz.h"

#define TOKEN "s3cret-token-for-the-fuzzer"
#define PORT 8400
#define N_LINES 8

/* The guards every input is judged by, built once. */
static struct api_guard *loopback; /* 127.0.0.1:PORT, TOKEN, extra name ctl.example.org */
static struct api_guard *wildcard; /* [::]:PORT, no token */
static struct api_guard *unix_socket;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const names[] = {"ctl.example.org"};
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(PORT)};
    struct core_err err = {0};

    (void)argc;
    (void)argv;
    v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    v6.sin6_addr = in6addr_any;
    FUZZ_CHECK(api_guard_new(&(struct api_guard_opts){.token = TOKEN,
                                                      .token_len = strlen(TOKEN),
                                                      .listen = (const struct sockaddr *)&v4,
                                                      .names = names,
                                                      .n_names = 1},
                             &loopback, &err) == 0);
    FUZZ_CHECK(api_guard_new(&(struct api_guard_opts){.listen = (const struct sockaddr *)&v6},
                             &wildcard, &err) == 0);
    FUZZ_CHECK(api_guard_new(&(struct api_guard_opts){.token = TOKEN, .token_len = strlen(TOKEN)},
                             &unix_socket, &err) == 0);
    return 0;
}

/* Splits the input into at most N_LINES NUL-terminated lines (NULL past the last). */
static char *split(const uint8_t *data, size_t size, char *lines[N_LINES])
{
    char *text = malloc(size + 1), *p;

    FUZZ_CHECK(text);
    memcpy(text, data, size);
    text[size] = '\0';
    p = text;
    for (int i = 0; i < N_LINES; i++) {
        char *nl;

        if (!p) {
            lines[i] = NULL;
            continue;
        }
        lines[i] = p;
        nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        p = nl ? nl + 1 : NULL;
    }
    return text;
}

/* Whether an Authorization value is "Bearer" (any case), blanks, TOKEN, blanks. */
static bool carries_token(const char *authorization)
{
    const char *p = authorization;
    size_t n;

    if (!p || strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return false;
    p += 6 + strspn(p + 6, " \t");
    n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n == strlen(TOKEN) && memcmp(p, TOKEN, n) == 0;
}

/*
 * Whether the loopback guard may take host, by the rule written independently: 127.0.0.1 or
 * localhost with port PORT (leading zeros allowed), or the extra name with any port or none.
 */
static bool loopback_may_allow(const char *host)
{
    char lower[300];
    const char *colon, *port;
    size_t n;

    if (!host || strlen(host) >= sizeof(lower))
        return false;
    for (n = 0; host[n]; n++)
        lower[n] = (host[n] >= 'A' && host[n] <= 'Z') ? (char)(host[n] - 'A' + 'a') : host[n];
    lower[n] = '\0';
    if (strncmp(lower, "ctl.example.org", 15) == 0 && (lower[15] == '\0' || lower[15] == ':'))
        return true;
    colon = strrchr(lower, ':');
    if (!colon)
        return false;
    for (port = colon + 1; *port == '0'; port++)
        ;
    if (strcmp(port, "8400") != 0)
        return false;
    n = (size_t)(colon - lower);
    return (n == 9 && strncmp(lower, "127.0.0.1", 9) == 0) ||
           (n == 9 && strncmp(lower, "localhost", 9) == 0);
}

static bool holds_token(const char *value)
{
    return value && strstr(value, TOKEN);
}

static bool is_token_verdict(enum api_guard_verdict v)
{
    return v == API_GUARD_NO_TOKEN || v == API_GUARD_BAD_TOKEN;
}

/* Judges req by g and checks what holds of every verdict. */
static enum api_guard_verdict judge(const struct api_guard *g, const struct api_guard_request *req)
{
    char detail[256];
    enum api_guard_verdict v;
    unsigned status;

    memset(detail, 'x', sizeof(detail));
    v = api_guard_check(g, req, detail, sizeof(detail));
    FUZZ_CHECK((unsigned)v < API_GUARD_VERDICT_COUNT);
    status = api_guard_status(v);
    FUZZ_CHECK((status == 200) == (v == API_GUARD_ALLOW));
    FUZZ_CHECK((status == 401) == is_token_verdict(v));
    FUZZ_CHECK(status == 200 || status == 401 || status == 403);
    if (v != API_GUARD_ALLOW) {
        size_t len = strnlen(detail, sizeof(detail));

        FUZZ_CHECK(len > 0 && len < sizeof(detail));
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK(detail[i] >= 0x20 && detail[i] < 0x7f);
        /* Quoted headers may hold anything; the token is never told from Authorization. */
        if (strstr(detail, TOKEN))
            FUZZ_CHECK(holds_token(req->host) || holds_token(req->origin) ||
                       holds_token(req->sec_fetch_site));
    }
    if (is_token_verdict(v))
        FUZZ_CHECK(api_guard_has_token(g) && !req->is_public);
    if (v == API_GUARD_ALLOW && api_guard_has_token(g) && !req->is_public)
        FUZZ_CHECK(carries_token(req->authorization));
    return v;
}

static void check(const struct api_guard *g, const struct api_guard_request *req)
{
    enum api_guard_verdict v = judge(g, req);
    struct api_guard_request other = *req;
    char *upper = NULL;

    if (g == unix_socket)
        FUZZ_CHECK(v != API_GUARD_BAD_HOST);

    /* The right token: only what comes before the token can still refuse. */
    other.authorization = "Bearer " TOKEN;
    if (!is_token_verdict(v))
        FUZZ_CHECK(judge(g, &other) == v);
    else
        FUZZ_CHECK(judge(g, &other) == API_GUARD_ALLOW);

    /* Without the headers that tell a cross-site request, none is seen. */
    other = *req;
    other.origin = other.sec_fetch_site = other.sec_fetch_mode = other.sec_fetch_dest = NULL;
    FUZZ_CHECK(judge(g, &other) != API_GUARD_CROSS_SITE);
    if (v != API_GUARD_CROSS_SITE)
        FUZZ_CHECK(judge(g, &other) == v);

    /* The Host in capitals is the same Host. */
    if (req->host) {
        upper = strdup(req->host);
        FUZZ_CHECK(upper);
        for (char *p = upper; *p; p++)
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
        other = *req;
        other.host = upper;
        FUZZ_CHECK((judge(g, &other) == API_GUARD_BAD_HOST) == (v == API_GUARD_BAD_HOST));
        free(upper);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *lines[N_LINES];
    char *text = split(data, size, lines);
    struct api_guard_request req = {
        .method = lines[0] ? lines[0] : "GET",
        .is_public = lines[1] && strcmp(lines[1], "1") == 0,
        .host = lines[2],
        .authorization = lines[3],
        .origin = lines[4],
        .sec_fetch_site = lines[5],
        .sec_fetch_mode = lines[6],
        .sec_fetch_dest = lines[7],
    };
    struct api_guard_request own = req;

    check(loopback, &req);
    check(wildcard, &req);
    check(unix_socket, &req);

    /* The loopback guard's own address is its Host; the wildcard's takes any address. */
    own.host = "127.0.0.1:8400";
    FUZZ_CHECK(judge(loopback, &own) != API_GUARD_BAD_HOST);
    FUZZ_CHECK(judge(wildcard, &own) != API_GUARD_BAD_HOST);
    own.host = "127.0.0.1:8401";
    FUZZ_CHECK(judge(loopback, &own) == API_GUARD_BAD_HOST);
    if (judge(loopback, &req) != API_GUARD_BAD_HOST)
        FUZZ_CHECK(loopback_may_allow(req.host));
    free(text);
    return 0;
}
