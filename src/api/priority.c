/* The API thread's scheduling (api/priority.h). */
#include "api/priority.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/log.h"

/* The nice value of a thread dropped by its budget: behind the data plane's threads (nice 0),
 * so that an API kept busy takes less of a CPU than they do. Raising a nice value needs no
 * privilege; SCHED_FIFO ignores it once the thread is raised again. */
#define DEMOTED_NICE 5

static const char *const mode_names[API_PRIORITY_MODE_COUNT] = {
    [API_PRIORITY_OFF] = "off",
    [API_PRIORITY_NICE] = "nice",
    [API_PRIORITY_FIFO] = "fifo",
};

struct api_priority {
    enum api_priority_mode requested;
    pid_t tid;       /* set by api_priority_apply(), read-only afterwards */
    atomic_int got;  /* the mode the thread got: FIFO, NICE or OFF */
    atomic_int nice; /* its nice value once applied */
    atomic_uint_fast64_t demotions;
    /* The budget; the thread's own. */
    int64_t window_ns;     /* CLOCK_MONOTONIC: when the window began; 0: none yet */
    int64_t window_cpu_ns; /* the thread's CPU time then */
    bool demoted;
};

int api_priority_mode_parse(const char *text, enum api_priority_mode *ret)
{
    for (int m = 0; m < API_PRIORITY_MODE_COUNT; m++) {
        if (text && strcmp(text, mode_names[m]) == 0) {
            *ret = (enum api_priority_mode)m;
            return 0;
        }
    }
    return -EINVAL;
}

const char *api_priority_mode_name(enum api_priority_mode mode)
{
    return (unsigned)mode < API_PRIORITY_MODE_COUNT ? mode_names[mode] : "off";
}

int api_priority_new(enum api_priority_mode mode, struct api_priority **ret)
{
    struct api_priority *p = calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    p->requested = mode;
    atomic_init(&p->got, API_PRIORITY_OFF);
    atomic_init(&p->nice, 0);
    atomic_init(&p->demotions, 0);
    *ret = p;
    return 0;
}

void api_priority_free(struct api_priority *p)
{
    free(p);
}

static int set_fifo(pid_t tid)
{
    const struct sched_param sp = {.sched_priority = API_PRIORITY_RT};

    return sched_setscheduler(tid, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0 ? -errno : 0;
}

/* SCHED_OTHER at nice value nice; the nice value is left as it was when it may not be set. */
static int set_other(pid_t tid, int nice)
{
    const struct sched_param sp = {.sched_priority = 0};

    if (sched_setscheduler(tid, SCHED_OTHER | SCHED_RESET_ON_FORK, &sp) < 0)
        return -errno;
    return setpriority(PRIO_PROCESS, (id_t)tid, nice) < 0 ? -errno : 0;
}

static int nice_of(pid_t tid)
{
    int n;

    errno = 0;
    n = getpriority(PRIO_PROCESS, (id_t)tid);
    return errno ? 0 : n;
}

void api_priority_apply(struct api_priority *p, pid_t tid)
{
    int fifo_error = 0, r;

    p->tid = tid;
    atomic_store(&p->nice, nice_of(tid));
    if (p->requested == API_PRIORITY_FIFO) {
        fifo_error = set_fifo(tid);
        if (fifo_error == 0) {
            atomic_store(&p->got, API_PRIORITY_FIFO);
            core_log_info("api: the API thread runs at SCHED_FIFO priority %d", API_PRIORITY_RT);
            return;
        }
    }
    if (p->requested == API_PRIORITY_OFF)
        return;
    r = set_other(tid, API_PRIORITY_NICE_VALUE);
    atomic_store(&p->nice, nice_of(tid));
    if (r == 0) {
        atomic_store(&p->got, API_PRIORITY_NICE);
        if (fifo_error)
            core_log_info("api: SCHED_FIFO is not permitted (%s; it needs CAP_SYS_NICE or "
                          "RLIMIT_RTPRIO >= %d): the API thread runs at nice %d instead",
                          strerror(-fifo_error), API_PRIORITY_RT, API_PRIORITY_NICE_VALUE);
        else
            core_log_info("api: the API thread runs at nice %d", API_PRIORITY_NICE_VALUE);
        return;
    }
    if (fifo_error)
        core_log_info("api: SCHED_FIFO is not permitted (%s; it needs CAP_SYS_NICE or "
                      "RLIMIT_RTPRIO >= %d), nor nice %d: the API thread runs at SCHED_OTHER "
                      "like the listeners, and answers later while they keep the CPU busy",
                      strerror(-fifo_error), API_PRIORITY_RT, API_PRIORITY_NICE_VALUE);
    else
        core_log_info("api: nice %d is not permitted (%s; it needs CAP_SYS_NICE or "
                      "RLIMIT_NICE >= %d): the API thread runs at SCHED_OTHER like the "
                      "listeners, and answers later while they keep the CPU busy",
                      API_PRIORITY_NICE_VALUE, strerror(-r), 20 - API_PRIORITY_NICE_VALUE);
}

static int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;

    if (clock_gettime(clock, &ts) < 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void api_priority_account(struct api_priority *p)
{
    int got = atomic_load_explicit(&p->got, memory_order_acquire);
    int64_t now, cpu;

    if (got == API_PRIORITY_OFF)
        return;
    now = clock_ns(CLOCK_MONOTONIC);
    cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (now - p->window_ns >= (int64_t)API_PRIORITY_WINDOW_MS * 1000000) {
        if (p->demoted &&
            (got == API_PRIORITY_FIFO ? set_fifo(p->tid)
                                      : set_other(p->tid, API_PRIORITY_NICE_VALUE)) == 0)
            p->demoted = false;
        p->window_ns = now;
        p->window_cpu_ns = cpu;
        return;
    }
    if (!p->demoted && cpu - p->window_cpu_ns > (int64_t)API_PRIORITY_BUDGET_MS * 1000000) {
        /* The nice value may not be settable (it is raised: it always is); the policy is. */
        (void)set_other(p->tid, DEMOTED_NICE);
        p->demoted = true;
        atomic_fetch_add_explicit(&p->demotions, 1, memory_order_relaxed);
    }
}

json_t *api_priority_json(const struct api_priority *p)
{
    int got = atomic_load(&p->got);

    return json_pack("{s:s, s:s, s:i, s:i, s:I}", "requested", mode_names[p->requested], "policy",
                     got == API_PRIORITY_FIFO ? "fifo" : "other", "priority",
                     got == API_PRIORITY_FIFO ? API_PRIORITY_RT : 0, "nice", atomic_load(&p->nice),
                     "demotions",
                     (json_int_t)atomic_load_explicit(&p->demotions, memory_order_relaxed));
}
