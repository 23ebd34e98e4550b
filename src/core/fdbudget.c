#include "core/fdbudget.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>

/*
 * One budget per process, as its RLIMIT_NOFILE is (see the header). Set once before the
 * threads start (or on first use), read with relaxed loads; conns is the shared admission count.
 */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t limit_fds;
static _Atomic uint64_t conns;

static uint64_t soft_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 1u << 20;
    return rl.rlim_cur;
}

static void init(void)
{
    atomic_store_explicit(&limit_fds, soft_limit(), memory_order_relaxed);
}

static uint64_t reserve_of(uint64_t limit)
{
    return limit >= 2 * CORE_FDBUDGET_RESERVE ? CORE_FDBUDGET_RESERVE : limit / 2;
}

int core_fdbudget_raise(uint64_t *ret_before, uint64_t *ret_after)
{
    struct rlimit rl;
    uint64_t before;
    int r = 0;

    pthread_once(&once, init);
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    before = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            r = -errno;
    }
    atomic_store_explicit(&limit_fds, soft_limit(), memory_order_relaxed);
    if (ret_before)
        *ret_before = before;
    if (ret_after)
        *ret_after = atomic_load_explicit(&limit_fds, memory_order_relaxed);
    return r;
}

void core_fdbudget_get(struct core_fdbudget_info *ret)
{
    uint64_t limit;

    pthread_once(&once, init);
    limit = atomic_load_explicit(&limit_fds, memory_order_relaxed);
    ret->limit = limit;
    ret->reserve = reserve_of(limit);
    ret->conns_max = limit - ret->reserve;
    ret->conns = atomic_load_explicit(&conns, memory_order_relaxed);
    ret->api_conns = ret->reserve * CORE_FDBUDGET_API_SHARE_NUM / CORE_FDBUDGET_API_SHARE_DEN;
}

bool core_fdbudget_conn_take(void)
{
    struct core_fdbudget_info b;

    core_fdbudget_get(&b);
    if (atomic_fetch_add_explicit(&conns, 1, memory_order_relaxed) >= b.conns_max) {
        atomic_fetch_sub_explicit(&conns, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

void core_fdbudget_conn_end(void)
{
    atomic_fetch_sub_explicit(&conns, 1, memory_order_relaxed);
}

unsigned core_fdbudget_api_conns(void)
{
    struct core_fdbudget_info b;

    core_fdbudget_get(&b);
    return b.api_conns > 1 ? (unsigned)b.api_conns : 1;
}

bool core_fdbudget_cap(uint64_t max_connections, uint64_t *ret_effective, char *note, size_t cap)
{
    struct core_fdbudget_info b;

    core_fdbudget_get(&b);
    if (max_connections <= b.conns_max) {
        *ret_effective = max_connections;
        return false;
    }
    *ret_effective = b.conns_max;
    if (note && cap)
        (void)snprintf(note, cap,
                       "max_connections %llu is capped to %llu: the descriptor limit %llu less "
                       "the %llu kept for the API, the state and the log leaves %llu for every "
                       "listener's connections together",
                       (unsigned long long)max_connections, (unsigned long long)b.conns_max,
                       (unsigned long long)b.limit, (unsigned long long)b.reserve,
                       (unsigned long long)b.conns_max);
    return true;
}

int core_fdbudget_status(json_t *status, uint64_t max_connections)
{
    char note[256];
    uint64_t effective;
    bool capped = core_fdbudget_cap(max_connections, &effective, note, sizeof(note));

    if (json_object_set_new(status, "max_connections_effective",
                            json_integer((json_int_t)effective)) < 0 ||
        json_object_set_new(status, "max_connections_note",
                            capped ? json_string(note) : json_null()) < 0)
        return -ENOMEM;
    return 0;
}

long core_fdbudget_open_fds(void)
{
    struct dirent *e;
    struct stat st;
    long n = 0;
    DIR *d;

    /* Linux 6.2 and later give the count as the directory's size, without listing it. */
    if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0)
        return (long)st.st_size;
    d = opendir("/proc/self/fd");
    if (!d)
        return -errno;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}
