#include "api/ticket.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

#include <jansson.h>

#include "api/handlers.h"
#include "core/clock.h"
#include "core/config.h"

struct ticket {
    char value[API_TICKET_LEN + 1]; /* "" when the slot is free */
    char id[CORE_ID_MAX];
    char *name;
    unsigned version;
    int64_t expires_ms; /* CLOCK_MONOTONIC */
};

struct api_tickets {
    pthread_mutex_t lock;
    struct ticket slot[API_TICKET_MAX]; /* guarded by lock */
};

int api_tickets_new(struct api_tickets **ret)
{
    struct api_tickets *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    *ret = t;
    return 0;
}

void api_tickets_free(struct api_tickets *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < API_TICKET_MAX; i++)
        free(t->slot[i].name);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static void slot_clear(struct ticket *s)
{
    free(s->name);
    memset(s, 0, sizeof(*s));
}

int api_ticket_issue(struct api_tickets *t, const char *id, const char *name, unsigned version,
                     char out[API_TICKET_LEN + 1])
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[32];
    struct ticket *s = NULL;
    int64_t now = core_now_ms();
    char *copy;
    size_t n = 0;

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -EIO;
    /* 32 bytes as base64url without padding: 42 whole characters and one of 2 bits. */
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16;

        if (i + 1 < sizeof(raw))
            v |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < sizeof(raw))
            v |= raw[i + 2];
        for (int k = 0; k < 4 && n < API_TICKET_LEN; k++)
            out[n++] = digits[(v >> (18 - 6 * k)) & 63];
    }
    out[n] = '\0';
    copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < API_TICKET_MAX; i++) {
        struct ticket *x = &t->slot[i];

        if (x->value[0] && x->expires_ms <= now)
            slot_clear(x);
        if (!x->value[0]) {
            s = x;
            break;
        }
        if (!s || x->expires_ms < s->expires_ms)
            s = x;
    }
    slot_clear(s);
    memcpy(s->value, out, sizeof(s->value));
    (void)snprintf(s->id, sizeof(s->id), "%s", id);
    s->name = copy;
    s->version = version;
    s->expires_ms = now + API_TICKET_TTL_MS;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Whether a and b (b API_TICKET_LEN long) are equal, in a time that does not tell where they
 * differ. */
static bool same_secret(const char *a, const char *b)
{
    unsigned char diff = 0;

    if (strlen(a) != API_TICKET_LEN)
        return false;
    for (size_t i = 0; i < API_TICKET_LEN; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

bool api_ticket_redeem(struct api_tickets *t, const char *ticket, const char *id, const char *name,
                       unsigned version)
{
    int64_t now = core_now_ms();
    bool ok = false;

    if (!t || !ticket || !id || !name)
        return false;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < API_TICKET_MAX; i++) {
        struct ticket *x = &t->slot[i];

        if (!x->value[0] || !same_secret(ticket, x->value))
            continue;
        ok = x->expires_ms > now && strcmp(x->id, id) == 0 && strcmp(x->name, name) == 0 &&
             x->version == version;
        if (ok)
            slot_clear(x);
        break;
    }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

/* Appends text percent-encoded (everything but RFC 3986's unreserved bytes) to out at *n, out
 * holding cap bytes. Returns false when it does not fit. */
static bool append_encoded(char *out, size_t cap, size_t *n, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';

        if (*n + (plain ? 1 : 3) >= cap)
            return false;
        if (plain) {
            out[(*n)++] = (char)*p;
        } else {
            out[(*n)++] = '%';
            out[(*n)++] = hex[*p >> 4];
            out[(*n)++] = hex[*p & 15];
        }
    }
    out[*n] = '\0';
    return true;
}

void api_handle_listener_file_ticket(const struct api_request *req, struct api_reply *ret)
{
    char ticket[API_TICKET_LEN + 1], url[1536], tail[96];
    unsigned version;
    uint64_t size = 0;
    size_t n = 0;
    int fd = -1, r;

    /* Only for a file that is there: a refusal is told now, not in the download manager. */
    if (api_file_open(req, ret, &version, &fd, &size) < 0)
        return;
    close(fd);
    if (!req->tickets) {
        api_reply_problem(ret, 503, NULL, "download tickets are unavailable");
        return;
    }
    r = api_ticket_issue(req->tickets, req->id, req->name, version, ticket);
    if (r < 0) {
        api_reply_error(ret, r, NULL);
        return;
    }
    if (version)
        (void)snprintf(tail, sizeof(tail), "?ticket=%s&version=%u", ticket, version);
    else
        (void)snprintf(tail, sizeof(tail), "?ticket=%s", ticket);
    (void)snprintf(url, sizeof(url), "/api/v1/listeners/");
    n = strlen(url);
    if (!append_encoded(url, sizeof(url), &n, req->id) || n + 7 >= sizeof(url)) {
        api_reply_error(ret, -ENOMEM, NULL);
        return;
    }
    memcpy(url + n, "/files/", 8);
    n += 7;
    if (!append_encoded(url, sizeof(url), &n, req->name) || n + strlen(tail) >= sizeof(url)) {
        api_reply_error(ret, -ENOMEM, NULL);
        return;
    }
    memcpy(url + n, tail, strlen(tail) + 1);
    api_reply_json(ret, 201,
                   json_pack("{s:s, s:i}", "url", url, "expires_in_s", API_TICKET_TTL_MS / 1000));
    ret->no_store = true;
}
