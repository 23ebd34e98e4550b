/* Names, routing keys, time, boot ids, labels and selectors of fleet/wire.h. */
#include "fleet/wire.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NAME_LEN_MAX (FLEET_NAME_MAX - 1)
#define LABEL_LEN_MAX (FLEET_LABEL_MAX - 1)
#define LABEL_WANT "[A-Za-z0-9_.-]{1,63}"
#define TIME_MIN_MS (-62167219200000LL) /* 0000-01-01T00:00:00.000Z */
#define TIME_MAX_MS 253402300799999LL   /* 9999-12-31T23:59:59.999Z */

/* ---- names ---- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_node_char(char c)
{
    return is_lower_alnum(c) || c == '_' || c == '-';
}

static bool name_valid(const char *s, bool allow_dot)
{
    size_t i;

    if (!s || !is_lower_alnum(s[0]))
        return false;
    for (i = 1; s[i]; i++) {
        if (i >= NAME_LEN_MAX)
            return false;
        if (!is_node_char(s[i]) && !(allow_dot && s[i] == '.'))
            return false;
    }
    return true;
}

bool fleet_node_name_valid(const char *s)
{
    return name_valid(s, false) && strcmp(s, FLEET_NODE_RESERVED) != 0;
}

bool fleet_prefix_valid(const char *s)
{
    return name_valid(s, true);
}

int fleet_node_name_from_text(const char *host, char *buf, size_t len)
{
    size_t max;
    size_t n = 0;

    if (len < 2)
        return -ENOSPC;
    max = len - 1 < NAME_LEN_MAX ? len - 1 : NAME_LEN_MAX;
    for (const char *p = host ? host : ""; *p && n < max; p++) {
        char c = (char)tolower((unsigned char)*p);

        if (!is_node_char(c))
            c = '-';
        if (n == 0 && (c == '-' || c == '_'))
            continue;
        buf[n++] = c;
    }
    buf[n] = '\0';
    if (strcmp(buf, FLEET_NODE_RESERVED) == 0 && len > strlen(FLEET_NODE_RESERVED "-node"))
        snprintf(buf, len, "%s", FLEET_NODE_RESERVED "-node");
    else if (n == 0 || strcmp(buf, FLEET_NODE_RESERVED) == 0)
        snprintf(buf, len, "node");
    return 0;
}

int fleet_node_name_from_host(char *buf, size_t len)
{
    char host[HOST_NAME_MAX + 1];

    if (gethostname(host, sizeof(host)) < 0)
        return -errno;
    host[sizeof(host) - 1] = '\0';
    return fleet_node_name_from_text(host, buf, len);
}

/* snprintf into buf: the length, or -ENOSPC when it did not fit. */
static int print(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int print(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= len)
        return -ENOSPC;
    return n;
}

int fleet_name(char *buf, size_t len, const char *prefix, const char *what)
{
    if (!fleet_prefix_valid(prefix) || !what || !what[0])
        return -EINVAL;
    return print(buf, len, "%s.%s", prefix, what);
}

int fleet_node_queue(char *buf, size_t len, const char *prefix, const char *node)
{
    if (!fleet_prefix_valid(prefix) || !fleet_node_name_valid(node))
        return -EINVAL;
    return print(buf, len, "%s.node.%s", prefix, node);
}

const char *fleet_nodes_binding(size_t i)
{
    static const char *const keys[] = {
        "ev.*.node.hello",       "ev.*.node.bye",        "ev.*.config.applied",
        "ev.*.config.unchanged", "ev.*.config.rejected", "ev.*.config.conflict",
        "ev.*.node.forgotten",
    };

    return i < sizeof(keys) / sizeof(keys[0]) ? keys[i] : NULL;
}

/* ---- event kinds and routing keys ---- */

const struct fleet_kind *fleet_kind_of_event(const char *core_type)
{
    static const struct fleet_kind kinds[] = {
        {.core_type = "listener.created", .kind = "listener.created", .reliable = true},
        {.core_type = "listener.changed", .kind = "listener.changed", .reliable = true},
        {.core_type = "listener.deleted", .kind = "listener.deleted", .reliable = true},
        {.core_type = "listener.state", .kind = "listener.state", .reliable = true},
        {.core_type = "config.revision", .kind = "config.revision", .reliable = true},
        {.core_type = "backup.stored", .kind = "backup.stored", .reliable = true},
        {.core_type = "backup.failed", .kind = "backup.failed", .reliable = true},
        {.core_type = "backup.pruned", .kind = "backup.pruned", .reliable = true},
        {.core_type = "metrics", .kind = "metrics.tick", .reliable = false},
    };

    if (!core_type)
        return NULL;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].core_type, core_type) == 0)
            return &kinds[i];
    return NULL;
}

static bool is_kind_char(char c)
{
    return (c >= 'a' && c <= 'z') || c == '_';
}

bool fleet_kind_valid(const char *kind)
{
    size_t i = 0;
    size_t word = 0;
    int dots = 0;

    if (!kind)
        return false;
    for (; kind[i]; i++) {
        if (i >= FLEET_KIND_MAX - 1)
            return false;
        if (kind[i] == '.') {
            if (word == 0 || ++dots > 1)
                return false;
            word = 0;
        } else if (is_kind_char(kind[i])) {
            word++;
        } else {
            return false;
        }
    }
    return dots == 1 && word > 0;
}

bool fleet_kind_is_reliable(const char *kind)
{
    return kind && strcmp(kind, "metrics.tick") != 0 && strcmp(kind, "node.status") != 0;
}

int fleet_routing_key(char *buf, size_t len, const char *node, const char *kind)
{
    if (!fleet_node_name_valid(node) || !fleet_kind_valid(kind))
        return -EINVAL;
    return print(buf, len, "ev.%s.%s", node, kind);
}

int fleet_routing_key_parse(const char *key, char *ret_node, char *ret_kind)
{
    const char *node;
    const char *dot;
    size_t node_len;

    if (!key || strncmp(key, "ev.", 3) != 0)
        return -EINVAL;
    node = key + 3;
    dot = strchr(node, '.');
    if (!dot)
        return -EINVAL;
    node_len = (size_t)(dot - node);
    if (node_len == 0 || node_len > NAME_LEN_MAX || !fleet_kind_valid(dot + 1))
        return -EINVAL;
    {
        char name[FLEET_NAME_MAX];

        memcpy(name, node, node_len);
        name[node_len] = '\0';
        if (!fleet_node_name_valid(name))
            return -EINVAL;
        memcpy(ret_node, name, node_len + 1);
    }
    snprintf(ret_kind, FLEET_KIND_MAX, "%s", dot + 1);
    return 0;
}

int fleet_rpc_key(char *buf, size_t len, const char *node)
{
    if (!node)
        return print(buf, len, "rpc.all");
    if (!fleet_node_name_valid(node))
        return -EINVAL;
    return print(buf, len, "rpc.%s", node);
}

bool fleet_pattern_valid(const char *pattern)
{
    size_t word = 0;
    bool wild = false;
    size_t i;

    if (!pattern || !pattern[0])
        return false;
    for (i = 0; pattern[i]; i++) {
        char c = pattern[i];

        if (i >= FLEET_KEY_MAX - 1)
            return false;
        if (c == '.') {
            if (word == 0)
                return false;
            word = 0;
            wild = false;
        } else if (c == '*' || c == '#') {
            if (word != 0)
                return false;
            word = 1;
            wild = true;
        } else if (is_node_char(c) && !wild) {
            word++;
        } else {
            return false;
        }
    }
    return word > 0;
}

/* ---- time, boot ids, message ids ---- */

int64_t fleet_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fleet_time_format(char *buf, size_t len, int64_t unix_ms)
{
    int64_t ms = unix_ms % 1000;
    int64_t s = unix_ms / 1000;
    time_t t;
    struct tm tm;

    if (len == 0)
        return;
    if (ms < 0) {
        ms += 1000;
        s--;
    }
    t = (time_t)s;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
}

/* n decimal digits at *p (advanced); -1 when they are not there. */
static int digits(const char **p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return v;
}

static bool expect(const char **p, const char *one_of)
{
    if (**p == '\0' || !strchr(one_of, **p))
        return false;
    (*p)++;
    return true;
}

int fleet_time_parse(const char *text, int64_t *ret_ms)
{
    const char *p = text;
    struct tm tm = {0};
    int year, mon, mday, hour, min, sec;
    int64_t ms = 0;
    int64_t offset_s = 0;
    int64_t t_ms;
    time_t t;

    if (!p)
        return -EINVAL;
    year = digits(&p, 4);
    if (year < 0 || !expect(&p, "-"))
        return -EINVAL;
    mon = digits(&p, 2);
    if (mon < 1 || mon > 12 || !expect(&p, "-"))
        return -EINVAL;
    mday = digits(&p, 2);
    if (mday < 1 || mday > 31 || !expect(&p, "Tt "))
        return -EINVAL;
    hour = digits(&p, 2);
    if (hour < 0 || hour > 23 || !expect(&p, ":"))
        return -EINVAL;
    min = digits(&p, 2);
    if (min < 0 || min > 59 || !expect(&p, ":"))
        return -EINVAL;
    sec = digits(&p, 2);
    if (sec < 0 || sec > 60)
        return -EINVAL;
    if (*p == '.') {
        int scale = 100;

        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        for (; isdigit((unsigned char)*p); p++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (expect(&p, "Zz")) {
        offset_s = 0;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om;

        p++;
        oh = digits(&p, 2);
        if (oh < 0 || oh > 23 || !expect(&p, ":"))
            return -EINVAL;
        om = digits(&p, 2);
        if (om < 0 || om > 59)
            return -EINVAL;
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = mday;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (t == (time_t)-1 && !(year == 1969 && mon == 12 && mday == 31))
        return -EINVAL;
    /* an offset may carry it past what fleet_time_format() writes (four-digit years) */
    t_ms = ((int64_t)t - offset_s) * 1000 + ms;
    if (t_ms < TIME_MIN_MS || t_ms > TIME_MAX_MS)
        return -EINVAL;
    *ret_ms = t_ms;
    return 0;
}

/* 64 random bits; without entropy yet (early boot), the clocks and pid still tell calls apart. */
static uint64_t random_u64(void)
{
    uint64_t v = 0;

    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000007u) ^ ((uint64_t)ts.tv_nsec * 2654435761u) ^
            ((uint64_t)getpid() << 40) ^ (uint64_t)fleet_now_ms();
    }
    return v;
}

void fleet_boot_id(char out[FLEET_BOOT_LEN])
{
    snprintf(out, FLEET_BOOT_LEN, "%016" PRIx64, random_u64());
}

void fleet_uuid(char out[FLEET_UUID_LEN])
{
    uint64_t hi = random_u64();
    uint64_t lo = random_u64();

    hi = (hi & ~0xf000ULL) | 0x4000ULL;             /* version 4 */
    lo = (lo & ~(0xc0ULL << 56)) | (0x80ULL << 56); /* variant 10 */
    snprintf(out, FLEET_UUID_LEN,
             "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64, hi >> 32,
             (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48, lo & (uint64_t)0xffffffffffff);
}

int fleet_message_id(char *buf, size_t len, const char *node, const char *boot, uint64_t seq,
                     int64_t time_ms)
{
    if (seq == 0)
        return print(buf, len, "%s:%s:t%" PRId64, node, boot, time_ms);
    return print(buf, len, "%s:%s:%" PRIu64, node, boot, seq);
}

/* ---- labels and selectors ---- */

void fleet_labels_init(struct fleet_labels *l)
{
    memset(l, 0, sizeof(*l));
}

static bool is_label_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

static bool label_span_valid(const char *s, size_t n)
{
    if (n == 0 || n > LABEL_LEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_label_char(s[i]))
            return false;
    return true;
}

bool fleet_label_text_valid(const char *s)
{
    return s && label_span_valid(s, strlen(s));
}

const char *fleet_labels_get(const struct fleet_labels *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->key[i], key) == 0)
            return l->val[i];
    return NULL;
}

enum kv_status { KV_OK, KV_NOT_KV, KV_BAD_KEY, KV_BAD_VALUE };

/* Splits the n bytes of text "KEY=VALUE" into key and val (FLEET_LABEL_MAX each). */
static enum kv_status kv_split(const char *text, size_t n, char *key, char *val)
{
    const char *eq = memchr(text, '=', n);
    size_t key_len, val_len;

    if (!eq || eq == text || eq == text + n - 1)
        return KV_NOT_KV;
    key_len = (size_t)(eq - text);
    val_len = n - key_len - 1;
    if (!label_span_valid(text, key_len))
        return KV_BAD_KEY;
    if (!label_span_valid(eq + 1, val_len))
        return KV_BAD_VALUE;
    memcpy(key, text, key_len);
    key[key_len] = '\0';
    memcpy(val, eq + 1, val_len);
    val[val_len] = '\0';
    return KV_OK;
}

int fleet_labels_add(struct fleet_labels *l, const char *kv_text, struct core_err *err)
{
    char key[FLEET_LABEL_MAX], val[FLEET_LABEL_MAX];
    const char *text = kv_text ? kv_text : "";

    switch (kv_split(text, strlen(text), key, val)) {
    case KV_OK:
        break;
    case KV_NOT_KV:
        return core_err_set(err, -EINVAL, NULL, "label '%.80s' is not KEY=VALUE", text);
    case KV_BAD_KEY:
        return core_err_set(err, -EINVAL, NULL, "label '%.80s' has an invalid key (want %s)", text,
                            LABEL_WANT);
    case KV_BAD_VALUE:
        return core_err_set(err, -EINVAL, NULL, "label '%.80s' has an invalid value (want %s)",
                            text, LABEL_WANT);
    }
    if (fleet_labels_get(l, key))
        return core_err_set(err, -EINVAL, NULL, "label key '%s' is given twice", key);
    if (l->n == FLEET_LABELS_MAX)
        return core_err_set(err, -EINVAL, NULL, "at most %d labels", FLEET_LABELS_MAX);
    memcpy(l->key[l->n], key, sizeof(key));
    memcpy(l->val[l->n], val, sizeof(val));
    l->n++;
    return 0;
}

json_t *fleet_labels_json(const struct fleet_labels *l)
{
    json_t *j = json_object();

    if (!j)
        return NULL;
    for (size_t i = 0; i < l->n; i++) {
        if (json_object_set_new(j, l->key[i], json_string(l->val[i])) < 0) {
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

int fleet_labels_from_json(const json_t *j, struct fleet_labels *ret, struct core_err *err)
{
    struct fleet_labels l = {0};
    const char *key;
    json_t *v;

    if (!json_is_object(j))
        return core_err_set(err, -EINVAL, "labels", "labels must be an object");
    if (json_object_size(j) > FLEET_LABELS_MAX)
        return core_err_set(err, -EINVAL, "labels", "at most %d labels", FLEET_LABELS_MAX);
    json_object_foreach((json_t *)j, key, v)
    {
        char field[FLEET_LABEL_MAX + 8];

        snprintf(field, sizeof(field), "labels.%s", key);
        if (!fleet_label_text_valid(key))
            return core_err_set(err, -EINVAL, field, "label key '%.80s' is invalid (want %s)", key,
                                LABEL_WANT);
        if (!json_is_string(v) || !fleet_label_text_valid(json_string_value(v)))
            return core_err_set(err, -EINVAL, field,
                                "label '%s' must have a string value (want %s)", key, LABEL_WANT);
        snprintf(l.key[l.n], FLEET_LABEL_MAX, "%s", key);
        snprintf(l.val[l.n], FLEET_LABEL_MAX, "%s", json_string_value(v));
        l.n++;
    }
    *ret = l;
    return 0;
}

int fleet_labels_format(const struct fleet_labels *l, char *buf, size_t len)
{
    size_t at = 0;

    if (len == 0)
        return -ENOSPC;
    buf[0] = '\0';
    for (size_t i = 0; i < l->n; i++) {
        int n = print(buf + at, len - at, "%s%s=%s", i ? "," : "", l->key[i], l->val[i]);

        if (n < 0) {
            buf[at] = '\0';
            return n;
        }
        at += (size_t)n;
    }
    return (int)at;
}

int fleet_selector_parse(const char *text, struct fleet_selector *ret, struct core_err *err)
{
    struct fleet_selector sel = {0};
    const char *p = text;

    if (!p || !p[0])
        return core_err_set(err, -EINVAL, NULL, "selector is empty");
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int shown = n > 80 ? 80 : (int)n;
        char key[FLEET_LABEL_MAX], val[FLEET_LABEL_MAX];

        if (sel.terms.n == FLEET_LABELS_MAX)
            return core_err_set(err, -EINVAL, NULL, "selector has more than %d terms",
                                FLEET_LABELS_MAX);
        switch (kv_split(p, n, key, val)) {
        case KV_OK:
            break;
        case KV_NOT_KV:
            return core_err_set(err, -EINVAL, NULL, "selector term '%.*s' is not KEY=VALUE", shown,
                                p);
        case KV_BAD_KEY:
            return core_err_set(err, -EINVAL, NULL,
                                "selector term '%.*s' has an invalid key (want %s)", shown, p,
                                LABEL_WANT);
        case KV_BAD_VALUE:
            return core_err_set(err, -EINVAL, NULL,
                                "selector term '%.*s' has an invalid value (want %s)", shown, p,
                                LABEL_WANT);
        }
        if (fleet_labels_get(&sel.terms, key))
            return core_err_set(err, -EINVAL, NULL, "selector key '%s' is given twice", key);
        memcpy(sel.terms.key[sel.terms.n], key, sizeof(key));
        memcpy(sel.terms.val[sel.terms.n], val, sizeof(val));
        sel.terms.n++;
        if (!end)
            break;
        p = end + 1;
    }
    *ret = sel;
    return 0;
}

bool fleet_selector_match(const struct fleet_selector *sel, const struct fleet_labels *labels)
{
    for (size_t i = 0; i < sel->terms.n; i++) {
        const char *v = labels ? fleet_labels_get(labels, sel->terms.key[i]) : NULL;

        if (!v || strcmp(v, sel->terms.val[i]) != 0)
            return false;
    }
    return true;
}

int fleet_selector_format(const struct fleet_selector *sel, char *buf, size_t len)
{
    return fleet_labels_format(&sel->terms, buf, len);
}
