#ifndef API_PROMETHEUS_H
#define API_PROMETHEUS_H

/*
 * GET /metrics: every listener's metrics in the Prometheus text exposition format 0.0.4.
 *
 * Families (labels listener, service, transport on every per-listener sample):
 *   sockserv_<counter>_total            counter, each core counter ("_total" not doubled)
 *   sockserv_connections_active         gauge
 *   sockserv_listener_up                gauge, 1 while the listener runs, else 0
 *   sockserv_service_<name>_total       counter, each service counter
 *   sockserv_service_time_seconds       histogram of service time
 *   sockserv_build_info{version}        gauge, always 1
 *   sockserv_uptime_seconds             gauge
 *
 * The histogram's "le" boundaries are API_PROM_LE_COUNT fixed values from 10 us to 10 s and
 * +Inf. The daemon's histogram has finer log-linear buckets (4 per power of two) whose edges
 * rarely fall on those values: a "le" bucket counts the fine buckets lying wholly at or below
 * its boundary, so it never counts an observation above it and may leave out some (at most a
 * quarter of the boundary) just below it.
 *
 * Pure functions: any thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/metrics.h"

#define API_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The finite "le" boundaries, in nanoseconds. */
#define API_PROM_LE_COUNT 19
extern const uint64_t api_prom_le_ns[API_PROM_LE_COUNT];

/* One listener as the renderer sees it. Every pointer is borrowed. */
struct api_prom_listener {
    const char *id;
    const char *service;
    const char *transport;
    bool up;
    const struct core_metrics_snapshot *m;
    const char *const *svc_names; /* names of m->svc[0 .. n_svc) */
    unsigned n_svc;
};

/*
 * The cumulative count of observations at or below le_ns in a snapshot's histogram, counting
 * only the fine buckets that lie wholly at or below it (see above).
 */
uint64_t api_prom_cumulative(const struct core_metrics_snapshot *m, uint64_t le_ns);

/*
 * Appends the exposition of the n listeners (in this order), the build info and the uptime to
 * out. Names are reduced to [a-zA-Z0-9_]; label values are escaped (backslash, double quote,
 * line feed). Returns 0 or -ENOMEM (out then holds part of it).
 */
int api_prom_render(const struct api_prom_listener *ls, size_t n, const char *version,
                    uint64_t uptime_seconds, struct core_buf *out);

#endif
