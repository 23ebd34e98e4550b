#ifndef CORE_FDBUDGET_H
#define CORE_FDBUDGET_H

/*
 * The descriptor budget of the process: its RLIMIT_NOFILE (the limit) split into a reserve for
 * what must keep working whatever the listeners hold (the API's connections, the state file,
 * the log, the upload and download workers, the fleet, the listeners' own sockets and wake-ups)
 * and what is left for the listeners' connections, all listeners together. A connection of any
 * TCP listener is admitted only while the listeners' connections are fewer than that (one
 * shared count), so no listener can take the reserve: the API answers however many connections
 * the listeners hold.
 *
 * The limit is a property of the process, so the budget is one per process, like the log: it is
 * read from getrlimit() on first use, or set by core_fdbudget_raise() at the daemon's start.
 * Every function may be called from any thread, without a lock.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The reserve is this many fds at a limit of twice as many or more, half the limit below. */
#define CORE_FDBUDGET_RESERVE 768
/* Of the reserve, the API's connections take two thirds (512 in the full reserve). */
#define CORE_FDBUDGET_API_SHARE_NUM 2
#define CORE_FDBUDGET_API_SHARE_DEN 3

struct core_fdbudget_info {
    uint64_t limit;     /* RLIMIT_NOFILE's soft limit as the budget knows it */
    uint64_t reserve;   /* kept from the listeners' connections */
    uint64_t conns_max; /* limit - reserve: every listener's connections together */
    uint64_t conns;     /* the listeners' connections admitted now */
    uint64_t api_conns; /* the share of the reserve for the API's connections */
};

/*
 * Raises the soft RLIMIT_NOFILE to the hard limit and sets the budget from it. *ret_before is
 * the soft limit found, *ret_after the one now in force (each may be NULL; both written also when
 * the raise failed: then after == before). Returns 0 or the setrlimit() error (-EPERM, -EINVAL).
 * Call from the main thread before any other thread starts.
 */
int core_fdbudget_raise(uint64_t *ret_before, uint64_t *ret_after);

/* The budget now. */
void core_fdbudget_get(struct core_fdbudget_info *ret);

/*
 * Admits one listener connection in the budget: true while the listeners' connections were
 * fewer than conns_max (the connection is then counted until core_fdbudget_conn_end()), false
 * when the budget is used up (nothing counted).
 */
bool core_fdbudget_conn_take(void);

/* A connection core_fdbudget_conn_take() admitted has ended. */
void core_fdbudget_conn_end(void);

/* How many connections the API may hold at once: its share of the reserve. */
unsigned core_fdbudget_api_conns(void);

/*
 * The connections a listener with max_connections may hold: max_connections, or conns_max when
 * that is lower. Returns whether it was capped; then note (cap bytes, may be NULL) says why.
 */
bool core_fdbudget_cap(uint64_t max_connections, uint64_t *ret_effective, char *note, size_t cap);

/*
 * Sets in a TCP listener's status object "max_connections_effective" (core_fdbudget_cap()) and
 * "max_connections_note" (why it is capped, or null). Returns 0 or -ENOMEM.
 */
int core_fdbudget_status(json_t *status, uint64_t max_connections);

/* The fds the process has open now, or a negative errno. */
long core_fdbudget_open_fds(void);

#endif
