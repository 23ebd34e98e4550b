#ifndef API_PRIORITY_H
#define API_PRIORITY_H

/*
 * The API thread's scheduling. A daemon whose listeners keep its CPUs busy would answer the API
 * late: a thread woken on a busy CPU waits for its turn, several milliseconds under CFS. The API
 * thread (libmicrohttpd's) therefore runs ahead of the data plane when it may:
 *
 * - fifo: SCHED_FIFO priority API_PRIORITY_RT, when permitted (root, CAP_SYS_NICE, or
 *   RLIMIT_RTPRIO >= API_PRIORITY_RT); otherwise as nice; otherwise as off.
 * - nice: SCHED_OTHER at nice API_PRIORITY_NICE_VALUE, when permitted (CAP_SYS_NICE, or
 * RLIMIT_NICE); otherwise as off.
 * - off: SCHED_OTHER at the daemon's nice, like every other thread.
 *
 * A fallback is logged once and shown in the health ("api_thread"). The raised priority is
 * bounded so that a busy API cannot starve the data plane: when the thread has used more than
 * API_PRIORITY_BUDGET_MS of CPU in a window of API_PRIORITY_WINDOW_MS, it drops to plain
 * SCHED_OTHER (nice 0) for the rest of the window and competes like any thread; beyond that the
 * kernel keeps 5% of each second for other threads (kernel.sched_rt_runtime_us). Threads the API
 * thread starts never inherit its priority (SCHED_RESET_ON_FORK).
 */

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

enum api_priority_mode {
    API_PRIORITY_OFF,
    API_PRIORITY_NICE,
    API_PRIORITY_FIFO,
    API_PRIORITY_MODE_COUNT
};

#define API_PRIORITY_RT 1             /* the SCHED_FIFO priority, the lowest */
#define API_PRIORITY_NICE_VALUE (-10) /* the nice value of mode nice */
#define API_PRIORITY_WINDOW_MS 100
#define API_PRIORITY_BUDGET_MS 20 /* CPU time at a raised priority per window */

/* The mode called text ("fifo", "nice", "off"): 0 with *ret, or -EINVAL. */
int api_priority_mode_parse(const char *text, enum api_priority_mode *ret);

/* "fifo", "nice" or "off". */
const char *api_priority_mode_name(enum api_priority_mode mode);

struct api_priority;

/* Makes the state of a thread asking for mode (nothing is applied yet). -ENOMEM. */
int api_priority_new(enum api_priority_mode mode, struct api_priority **ret);

/* Accepts NULL. After the thread it was applied to stopped calling api_priority_account(). */
void api_priority_free(struct api_priority *p);

/*
 * Applies the mode asked for to thread tid of this process, falling back as the header says
 * (the fallback is logged once). Once, before the thread calls api_priority_account(). Any
 * thread.
 */
void api_priority_apply(struct api_priority *p, pid_t tid);

/*
 * The budget: called often by the thread applied to (after each piece of its work). Drops it to
 * SCHED_OTHER, nice 0, once it used more than its budget in the current window, and raises it
 * again in the next. That thread only.
 */
void api_priority_account(struct api_priority *p);

/*
 * {"requested": MODE, "policy": "fifo"|"other", "priority": N, "nice": N, "demotions": N}: what
 * was asked, what the thread got (policy and priority as sched_setscheduler(2) has them), and
 * how many times the budget dropped it. A new reference, or NULL. Any thread.
 */
json_t *api_priority_json(const struct api_priority *p);

#endif
