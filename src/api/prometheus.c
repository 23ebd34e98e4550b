#include "api/prometheus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/handlers.h"
#include "core/registry.h"
#include "fleet/bridge.h"
#include "fleet/view.h"
#include "sockserv-config.h"

#define PREFIX "sockserv_"
#define NAME_MAX_LEN 96

const uint64_t api_prom_le_ns[API_PROM_LE_COUNT] = {
    10000,     25000,      50000,      100000,     250000,      500000,    1000000,
    2500000,   5000000,    10000000,   25000000,   50000000,    100000000, 250000000,
    500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

/* The "le" label values of api_prom_le_ns, as Prometheus clients write them. */
static const char *const le_text[API_PROM_LE_COUNT] = {
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05",    "0.1",   "0.25",   "0.5",     "1",      "2.5",   "5",      "10",
};

uint64_t api_prom_cumulative(const struct core_metrics_snapshot *m, uint64_t le_ns)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++) {
        uint64_t next = core_latency_bucket_low(i + 1);

        /* bucket i holds [low(i), next): its highest value is next - 1 */
        if (next == UINT64_MAX || next - 1 > le_ns)
            break;
        n += m->latency[i];
    }
    return n;
}

/* name with every byte outside [a-zA-Z0-9_] made '_', cut to fit len. */
static void sanitize(const char *name, char *buf, size_t len)
{
    size_t i = 0;

    for (; name[i] && i + 1 < len; i++) {
        char c = name[i];

        buf[i] =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_';
    }
    buf[i] = '\0';
}

/* value as a label value: backslash, double quote and line feed escaped. */
static int append_escaped(struct core_buf *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        int r;

        if (*p == '\\')
            r = core_buf_append(out, "\\\\", 2);
        else if (*p == '"')
            r = core_buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            r = core_buf_append(out, "\\n", 2);
        else
            r = core_buf_append(out, p, 1);
        if (r < 0)
            return r;
    }
    return 0;
}

/* name{listener="..",service="..",transport=".."[,le=".."]} value\n */
static int sample(struct core_buf *out, const char *name, const struct api_prom_listener *l,
                  const char *le, uint64_t value)
{
    if (core_buf_printf(out, "%s{listener=\"", name) < 0 || append_escaped(out, l->id) < 0 ||
        core_buf_printf(out, "\",service=\"") < 0 || append_escaped(out, l->service) < 0 ||
        core_buf_printf(out, "\",transport=\"") < 0 || append_escaped(out, l->transport) < 0)
        return -ENOMEM;
    if (le && core_buf_printf(out, "\",le=\"%s", le) < 0)
        return -ENOMEM;
    return core_buf_printf(out, "\"} %llu\n", (unsigned long long)value) < 0 ? -ENOMEM : 0;
}

static int family(struct core_buf *out, const char *name, const char *type, const char *help)
{
    return core_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0
               ? -ENOMEM
               : 0;
}

/* The family name of core counter c: "sockserv_bytes_in_total", "sockserv_connections_total". */
static void counter_family(enum core_counter c, char *buf, size_t len)
{
    char base[NAME_MAX_LEN];
    size_t n;

    sanitize(core_counter_name(c), base, sizeof(base));
    n = strlen(base);
    if (n > 6 && strcmp(base + n - 6, "_total") == 0)
        base[n - 6] = '\0';
    if (c == CORE_CTR_CONNECTIONS_ACTIVE)
        (void)snprintf(buf, len, PREFIX "%s", base);
    else
        (void)snprintf(buf, len, PREFIX "%s_total", base);
}

static int render_counters(const struct api_prom_listener *ls, size_t n, struct core_buf *out)
{
    for (unsigned c = 0; c < CORE_CTR_COUNT; c++) {
        char name[NAME_MAX_LEN + 16];
        bool gauge = c == CORE_CTR_CONNECTIONS_ACTIVE;

        counter_family((enum core_counter)c, name, sizeof(name));
        if (family(out, name, gauge ? "gauge" : "counter",
                   core_counter_help((enum core_counter)c)) < 0)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (sample(out, name, &ls[i], NULL, ls[i].m->c[c]) < 0)
                return -ENOMEM;
    }
    if (family(out, PREFIX "listener_up", "gauge", "1 while the listener runs, else 0.") < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (sample(out, PREFIX "listener_up", &ls[i], NULL, ls[i].up ? 1 : 0) < 0)
            return -ENOMEM;
    return 0;
}

/*
 * One family per distinct service counter name, each with every listener that has it. The
 * names are sanitized once; a family is rendered at the first occurrence of its name.
 */
static int render_service(const struct api_prom_listener *ls, size_t n, struct core_buf *out)
{
    char(*names)[NAME_MAX_LEN];
    size_t total = 0, at = 0;
    int r = 0;

    for (size_t i = 0; i < n; i++)
        total += ls[i].n_svc < CORE_METRICS_SVC_MAX ? ls[i].n_svc : CORE_METRICS_SVC_MAX;
    names = calloc(total ? total : 1, sizeof(*names));
    if (!names)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        for (unsigned k = 0; k < ls[i].n_svc && k < CORE_METRICS_SVC_MAX; k++)
            sanitize(ls[i].svc_names[k], names[at++], sizeof(names[0]));

    at = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        for (unsigned k = 0; k < ls[i].n_svc && k < CORE_METRICS_SVC_MAX && r == 0; k++, at++) {
            char name[NAME_MAX_LEN + 32];
            size_t other = at;
            bool seen = false;

            for (size_t q = 0; q < at && !seen; q++)
                seen = strcmp(names[q], names[at]) == 0;
            if (seen)
                continue;
            (void)snprintf(name, sizeof(name), PREFIX "service_%s_total", names[at]);
            if (core_buf_printf(out, "# HELP %s The service's counter %s.\n# TYPE %s counter\n",
                                name, names[at], name) < 0) {
                r = -ENOMEM;
                break;
            }
            /* this listener and the later ones: their first counter of that name */
            for (size_t j = i; j < n && r == 0; j++) {
                unsigned first = j == i ? k : 0;
                size_t base = other - (j == i ? k : 0);

                for (unsigned q = first; q < ls[j].n_svc && q < CORE_METRICS_SVC_MAX; q++)
                    if (strcmp(names[base + q], names[at]) == 0) {
                        r = sample(out, name, &ls[j], NULL, ls[j].m->svc[q]);
                        break;
                    }
                other = base +
                        (ls[j].n_svc < CORE_METRICS_SVC_MAX ? ls[j].n_svc : CORE_METRICS_SVC_MAX);
            }
        }
    }
    free(names);
    return r;
}

static int render_histogram(const struct api_prom_listener *ls, size_t n, struct core_buf *out)
{
    static const char name[] = PREFIX "service_time_seconds";

    if (family(out, name, "histogram",
               "Service time of a request, from its bytes' arrival to the answer sent.") < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct core_metrics_snapshot *m = ls[i].m;
        uint64_t count = 0;

        for (unsigned b = 0; b < CORE_LATENCY_BUCKETS; b++)
            count += m->latency[b];
        for (unsigned b = 0; b < API_PROM_LE_COUNT; b++)
            if (sample(out, PREFIX "service_time_seconds_bucket", &ls[i], le_text[b],
                       api_prom_cumulative(m, api_prom_le_ns[b])) < 0)
                return -ENOMEM;
        if (sample(out, PREFIX "service_time_seconds_bucket", &ls[i], "+Inf", count) < 0)
            return -ENOMEM;
        if (core_buf_printf(out, "%s_sum{listener=\"", name) < 0 ||
            append_escaped(out, ls[i].id) < 0 || core_buf_printf(out, "\",service=\"") < 0 ||
            append_escaped(out, ls[i].service) < 0 || core_buf_printf(out, "\",transport=\"") < 0 ||
            append_escaped(out, ls[i].transport) < 0 ||
            core_buf_printf(out, "\"} %llu.%09llu\n",
                            (unsigned long long)(m->latency_sum_ns / 1000000000u),
                            (unsigned long long)(m->latency_sum_ns % 1000000000u)) < 0)
            return -ENOMEM;
        if (sample(out, PREFIX "service_time_seconds_count", &ls[i], NULL, count) < 0)
            return -ENOMEM;
    }
    return 0;
}

int api_prom_render(const struct api_prom_listener *ls, size_t n, const char *version,
                    uint64_t uptime_seconds, struct core_buf *out)
{
    if (render_counters(ls, n, out) < 0 || render_service(ls, n, out) < 0 ||
        render_histogram(ls, n, out) < 0)
        return -ENOMEM;
    if (family(out, PREFIX "build_info", "gauge", "The daemon's version, as a label.") < 0 ||
        core_buf_printf(out, PREFIX "build_info{version=\"") < 0 ||
        append_escaped(out, version) < 0 || core_buf_printf(out, "\"} 1\n") < 0)
        return -ENOMEM;
    if (family(out, PREFIX "uptime_seconds", "gauge", "Seconds since the daemon started serving.") <
            0 ||
        core_buf_printf(out, PREFIX "uptime_seconds %llu\n", (unsigned long long)uptime_seconds) <
            0)
        return -ENOMEM;
    return 0;
}

void api_handle_prometheus(const struct api_request *req, struct api_reply *ret)
{
    struct core_listener_view *views = NULL;
    struct api_prom_listener *ls = NULL;
    struct core_buf out = {0};
    size_t n = 0;
    int r = core_registry_views(req->registry, &views, &n);

    if (r < 0) {
        api_reply_error(ret, r, NULL);
        return;
    }
    ls = calloc(n ? n : 1, sizeof(*ls));
    if (!ls)
        goto out_nomem;
    for (size_t i = 0; i < n; i++)
        ls[i] = (struct api_prom_listener){
            .id = views[i].id,
            .service = views[i].svc->name,
            .transport = core_transport_name(views[i].transport),
            .up = views[i].running,
            .m = &views[i].metrics,
            .svc_names = views[i].svc->counters,
            .n_svc = views[i].svc->n_counters,
        };
    if (api_prom_render(ls, n, SOCKSERV_VERSION, req->uptime_seconds, &out) < 0)
        goto out_nomem;
    if (req->fleet && fleet_bridge_prometheus(req->fleet, &out) < 0)
        goto out_nomem;
    if (req->view && fleet_view_prometheus(req->view, fleet_view_now_ms(), &out) < 0)
        goto out_nomem;
    api_reply_text(ret, 200, API_PROM_CONTENT_TYPE, (char *)out.data, out.len);
    out.data = NULL;
    goto out_free;

out_nomem:
    api_reply_error(ret, -ENOMEM, NULL);
out_free:
    core_buf_fini(&out);
    free(ls);
    free(views);
}
