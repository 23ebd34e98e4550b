#ifndef CORE_TICKER_H
#define CORE_TICKER_H

/*
 * The registry's clock thread. Every interval it ends the live reconfigurations' draining
 * runners that are done or past their deadline (core_registry_reap_drained()), and, while
 * anyone subscribes to events, publishes a "metrics" event: every listener's counters
 * (core_registry_metrics_all()) with their rates per second since the previous tick.
 *
 * Thread rules: start and stop from the thread that owns the registry (its new and free); the
 * ticker's own thread only reads the registry through its public functions.
 *
 * Errors: core_ticker_start() returns 0 or a negative errno (-ENOMEM, pthread_create's).
 */

struct core_events;
struct core_registry;
struct core_ticker;

/*
 * Starts the ticker of r (borrowed until core_ticker_stop()). events may be NULL (no metrics
 * events: only the reaping); interval_ms 0 is 1000. Returns 0 with *ret, or a negative errno.
 */
int core_ticker_start(struct core_registry *r, struct core_events *events, unsigned interval_ms,
                      struct core_ticker **ret);

/* Stops the ticker and joins its thread. Accepts NULL. */
void core_ticker_stop(struct core_ticker *t);

#endif
