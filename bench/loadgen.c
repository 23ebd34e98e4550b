/* loadgen: the load generator of sockserv's benchmarks.
 *
 *   loadgen echo   [--udp] [-c CONNS] [-s SIZE] [-d SECONDS] [-r RATE] [-t THREADS]
 *                  [--api URL [--api-rate R | --api-conns N]] [--worker-nice N] HOST PORT
 *   loadgen upload [--raw] [-n BYTES] [--name NAME] HOST PORT
 *   loadgen idle   [-c CONNS] [-d SECONDS] [--pid PID] HOST PORT
 *   loadgen http   [-r RATE | -c CONNS] [-d SECONDS] URL
 *   common options: [--tag T] [--cpu-pgid PGID] [--perf-ctl CTL,ACK]
 *
 * Every mode prints one JSON line on standard output (the machine's) and one human line on
 * standard error. Latencies are kept in a log-linear histogram (32 sub-buckets per power of
 * two, about 3 % precision) and reported in microseconds.
 *
 * echo, closed loop (no -r): each connection sends SIZE bytes, waits for the whole echo, and
 * sends again at once. Open loop (-r RATE, messages per second over all connections): each
 * connection sends on a fixed schedule whether or not the earlier echoes came back, and a
 * message's latency runs from the time it was meant to be sent, so a stall is charged to every
 * message it held up (no coordinated omission). Before the clock starts each connection does
 * one round trip (so forks and thread starts of the server are not timed); after it ends, the
 * messages in flight are collected for up to a second and those never answered count as
 * errors. UDP uses one connected socket per "connection"; a datagram unanswered for 200 ms is
 * counted lost (and, closed loop, sent again).
 *
 * upload: sends BYTES (default 256 MiB) of pseudo-random content. Backup protocol: PUT with the
 * SHA-256 (computed before the clock starts), waits OK, streams, waits STORED. --raw: streams
 * the bytes, shuts down its side and waits for the server to close (socat -u ... CREATE:file).
 *
 * idle: opens CONNS connections, holds them for SECONDS, and reads VmRSS of --pid before the
 * first connection and after the last one is established.
 *
 * echo --api URL: while the echo load runs, GETs URL over the same window (the same measurement
 * start and end), open loop at --api-rate requests per second on one connection or closed loop
 * on --api-conns connections; reported as "api" in the JSON line. --worker-nice lowers the echo
 * threads' priority (setpriority of each thread) while the API client keeps the default one.
 * --api-fifo (echo --api, http): the HTTP clients' threads run at SCHED_FIFO 1, so that their
 * wake-ups do not wait behind the echo load on the same CPU (the latency is then the server's);
 * refused (no CAP_SYS_NICE), loadgen fails.
 *
 * http: GETs URL over one keep-alive connection at RATE requests per second (open loop, latency
 * from the intended send time), or without -r over CONNS connections, each sending its next
 * request once the answer is in (closed loop).
 *
 * Over the measurement window (echo: from the end of the warm-up to the end of SECONDS; upload:
 * the transfer; http: the requests) --cpu-pgid reads the CPU time of every thread of every
 * process of that group (/proc/PID/task/TID/schedstat) and reports its growth as "cpu_s";
 * --perf-ctl sends "enable" and "disable" to a `perf stat --control fifo:CTL,ACK -D -1` watching
 * the server, so that perf counts exactly that window.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB / 2)
#define HIST_BUCKETS (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_HALF)
#define NSEC 1000000000ull
#define UDP_LOSS_NS (200ull * 1000 * 1000)
#define DRAIN_NS NSEC
#define WARMUP_NS (5 * NSEC)
#define MAX_CONNS 100000
#define IO_BUF (256 * 1024)

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
};

enum mode { MODE_ECHO, MODE_UPLOAD, MODE_IDLE, MODE_HTTP };

struct opts {
    enum mode mode;
    bool udp;
    bool raw;
    const char *host;
    const char *port;
    const char *url;
    const char *name;
    const char *tag;
    int conns;
    int threads;
    size_t size;
    double duration;
    double rate;
    uint64_t bytes;
    long pid;
    long cpu_pgid;        /* --cpu-pgid: the server's process group, its CPU time is read */
    const char *perf_ctl; /* --perf-ctl CTL,ACK: perf stat's control and ack fifos */
    const char *api_url;  /* echo --api: GETs over the same window */
    double api_rate;      /* echo --api-rate: open loop on one connection */
    int api_conns;        /* echo --api-conns: closed loop on that many (no --api-rate) */
    int worker_nice;      /* echo --worker-nice: the echo threads' nice value */
    bool api_fifo;        /* --api-fifo: the HTTP clients' threads at SCHED_FIFO 1 */
};

/* The CPU time of every task of a process group at one time. */
struct task_cpu {
    long tid;
    uint64_t ns;
};

struct cpu_sample {
    struct task_cpu *t;
    size_t n, cap;
};

/* What the server spent over the measurement window. */
struct window {
    int ctl_fd, ack_fd;     /* perf stat's control fifos, or -1 */
    struct cpu_sample cpu0; /* the server group's tasks at the start */
    bool cpu0_ok;
    double cpu_s; /* over the window; < 0 when it could not be read */
};

struct conn {
    int fd;
    bool dead;
    bool want_out;
    size_t rcvd;       /* bytes of the current reply received (TCP) */
    size_t out_left;   /* bytes still to write (TCP) */
    size_t out_off;    /* offset in the pattern of the next byte to write */
    uint64_t t0;       /* closed loop: when the outstanding message was sent (0: none) */
    uint64_t next_due; /* open loop: the intended time of the next message */
    uint64_t interval;
    uint64_t *q; /* open loop, TCP: intended times of the messages in flight */
    size_t qhead, qlen, qcap;
    uint64_t seq;
};

struct worker {
    const struct opts *o;
    struct addrinfo *ai;
    int first, count; /* the connections it owns */
    struct conn *c;
    int ep;
    unsigned char *pattern;
    unsigned char *rbuf;
    struct hist h;
    uint64_t msgs, bytes, errors, lost, warm_pending;
    uint64_t start, end;
    pthread_barrier_t *barrier;
    uint64_t *shared_start;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

/* ---- histogram ---- */

static unsigned hist_index(uint64_t v)
{
    unsigned msb, e;

    if (v < HIST_SUB)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    e = msb - HIST_SUB_BITS + 1;
    return HIST_SUB + (e - 1) * HIST_HALF + (unsigned)((v >> e) - HIST_HALF);
}

static uint64_t hist_upper(unsigned i)
{
    unsigned e;
    uint64_t m;

    if (i < HIST_SUB)
        return i;
    e = (i - HIST_SUB) / HIST_HALF + 1;
    m = (i - HIST_SUB) % HIST_HALF + HIST_HALF;
    return ((m + 1) << e) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    if (from->max > into->max)
        into->max = from->max;
}

static double hist_pct_us(const struct hist *h, double q)
{
    uint64_t want, seen = 0;

    if (h->total == 0)
        return 0;
    want = (uint64_t)(q * (double)h->total + 0.999999);
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_upper(i);
            return (double)(v < h->max ? v : h->max) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

static void print_lat_json(const struct hist *h)
{
    printf("\"lat_us\":{\"count\":%" PRIu64
           ",\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}",
           h->total, hist_pct_us(h, 0.50), hist_pct_us(h, 0.90), hist_pct_us(h, 0.99),
           hist_pct_us(h, 0.999), (double)h->max / 1000.0);
}

/* ---- sockets ---- */

static int resolve(const struct opts *o, struct addrinfo **ret)
{
    struct addrinfo hints = {0};
    int r;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = o->udp ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    r = getaddrinfo(o->host, o->port, &hints, ret);
    if (r != 0) {
        fprintf(stderr, "loadgen: %s %s: %s\n", o->host, o->port, gai_strerror(r));
        return -EINVAL;
    }
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static int dial(const struct addrinfo *ai, bool udp)
{
    int fd, one = 1;

    fd = socket(ai->ai_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (!udp)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- the server's CPU time and the syscall counter ---- */

/* The CPU time of every thread of every process in a group, in nanoseconds: the first field
 * of /proc/PID/task/TID/schedstat (the scheduler's exact account, where /proc/PID/stat rounds
 * every process to clock ticks, which a group of 500 processes turns into noise). */
static void sample_add(struct cpu_sample *cs, long tid, uint64_t ns)
{
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 256;
        struct task_cpu *t = realloc(cs->t, cap * sizeof(*t));
        if (!t)
            abort();
        cs->t = t;
        cs->cap = cap;
    }
    cs->t[cs->n++] = (struct task_cpu){.tid = tid, .ns = ns};
}

static long proc_pgrp(const char *pid)
{
    char path[300], buf[1024], *p;
    long pgrp = -1;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%.20s/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* after the command's name: state ppid pgrp */
    if (!p || sscanf(p + 2, "%*c %*d %ld", &pgrp) != 1)
        return -1;
    return pgrp;
}

/* Samples the CPU time of every task of group pgid; -ESRCH when the group has no process. */
static int group_sample(long pgid, struct cpu_sample *cs)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int found = 0;

    if (!d)
        return -errno;
    cs->n = 0;
    while ((e = readdir(d)) != NULL) {
        char path[300];
        struct dirent *te;
        DIR *td;

        if (e->d_name[0] < '1' || e->d_name[0] > '9' || proc_pgrp(e->d_name) != pgid)
            continue;
        found++;
        snprintf(path, sizeof(path), "/proc/%.20s/task", e->d_name);
        td = opendir(path);
        if (!td)
            continue;
        while ((te = readdir(td)) != NULL) {
            unsigned long long ns;
            FILE *f;

            if (te->d_name[0] < '1' || te->d_name[0] > '9')
                continue;
            if (snprintf(path, sizeof(path), "/proc/%.20s/task/%.20s/schedstat", e->d_name,
                         te->d_name) < 0)
                continue;
            f = fopen(path, "re");
            if (!f)
                continue;
            if (fscanf(f, "%llu", &ns) == 1)
                sample_add(cs, strtol(te->d_name, NULL, 10), ns);
            fclose(f);
        }
        closedir(td);
    }
    closedir(d);
    return found ? 0 : -ESRCH;
}

/* CPU nanoseconds from a to b: each task's growth; a task born in between counts whole, one
 * gone by b is left out (its last moments are lost: a process that ends within a window). */
static uint64_t sample_delta(const struct cpu_sample *a, const struct cpu_sample *b)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < b->n; i++) {
        uint64_t before = 0;
        for (size_t j = 0; j < a->n; j++)
            if (a->t[j].tid == b->t[i].tid) {
                before = a->t[j].ns;
                break;
            }
        if (b->t[i].ns > before)
            sum += b->t[i].ns - before;
    }
    return sum;
}

/* Sends CMD ("enable" or "disable") to perf stat and waits (2 s at most) for its ack. */
static int perf_command(const struct window *win, const char *cmd)
{
    struct pollfd pfd = {.fd = win->ack_fd, .events = POLLIN};
    char ack[32];

    if (win->ctl_fd < 0)
        return 0;
    if (write_all(win->ctl_fd, cmd, strlen(cmd)) < 0)
        return -EIO;
    if (poll(&pfd, 1, 2000) != 1 || read(win->ack_fd, ack, sizeof(ack)) <= 0)
        return -ETIMEDOUT;
    return 0;
}

/* Opens the fifos named by --perf-ctl. */
static int window_open(const struct opts *o, struct window *win)
{
    char ctl[512], *comma;

    *win = (struct window){.ctl_fd = -1, .ack_fd = -1, .cpu_s = -1};
    if (!o->perf_ctl)
        return 0;
    snprintf(ctl, sizeof(ctl), "%s", o->perf_ctl);
    comma = strchr(ctl, ',');
    if (!comma) {
        fprintf(stderr, "loadgen: --perf-ctl wants CTL,ACK\n");
        return -EINVAL;
    }
    *comma = '\0';
    /* perf opens the control fifo for reading: wait for it (5 s), never block on a dead one */
    win->ack_fd = open(comma + 1, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    for (int i = 0; i < 500 && win->ack_fd >= 0; i++) {
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        win->ctl_fd = open(ctl, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (win->ctl_fd >= 0 || errno != ENXIO)
            break;
        nanosleep(&ts, NULL);
    }
    if (win->ctl_fd >= 0)
        (void)fcntl(win->ctl_fd, F_SETFL, 0);
    if (win->ctl_fd < 0 || win->ack_fd < 0) {
        fprintf(stderr, "loadgen: --perf-ctl %s: %s\n", o->perf_ctl, strerror(errno));
        return -errno;
    }
    return 0;
}

static void window_begin(const struct opts *o, struct window *win)
{
    if (perf_command(win, "enable\n") < 0)
        fprintf(stderr, "loadgen: perf stat did not acknowledge enable\n");
    win->cpu0_ok = o->cpu_pgid > 0 && group_sample(o->cpu_pgid, &win->cpu0) == 0;
}

static void window_end(const struct opts *o, struct window *win)
{
    struct cpu_sample cpu1 = {0};

    if (win->cpu0_ok && group_sample(o->cpu_pgid, &cpu1) == 0)
        win->cpu_s = (double)sample_delta(&win->cpu0, &cpu1) / 1e9;
    free(cpu1.t);
    free(win->cpu0.t);
    win->cpu0 = (struct cpu_sample){0};
    if (perf_command(win, "disable\n") < 0)
        fprintf(stderr, "loadgen: perf stat did not acknowledge disable\n");
    if (win->ctl_fd >= 0)
        close(win->ctl_fd);
    if (win->ack_fd >= 0)
        close(win->ack_fd);
    win->ctl_fd = win->ack_fd = -1;
}

/* ",\"cpu_s\":X" (null when not asked for or unreadable) */
static void print_cpu_json(const struct window *win)
{
    if (win->cpu_s >= 0)
        printf(",\"cpu_s\":%.3f", win->cpu_s);
    else
        printf(",\"cpu_s\":null");
}

/* ---- http client (mode http, and echo --api) ---- */

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    *(uint64_t *)userdata += size * nmemb;
    return size * nmemb;
}

struct http_worker {
    const struct opts *o;
    const char *url;
    double rate; /* open loop when > 0 */
    struct hist h;
    uint64_t start, end, ok, errors, body;
    pthread_barrier_t *barrier; /* echo --api: the window starts at *shared_start */
    const uint64_t *shared_start;
};

/* One keep-alive connection. Open loop (RATE > 0, the whole rate on this one connection): a
 * request's latency runs from its intended send time, so a slow answer is charged to every
 * request it held up (no coordinated omission). Closed loop: the next request as soon as the
 * answer is in, latency from its send. */
static void *http_run(void *arg)
{
    struct http_worker *w = arg;
    const struct opts *o = w->o;
    uint64_t interval = w->rate > 0 ? (uint64_t)((double)NSEC / w->rate) : 0, next;
    CURL *curl = curl_easy_init();

    if (o->api_fifo) {
        /* The client that measures is not kept waiting by the load on its own CPU: what it
         * measures is the server's. */
        const struct sched_param sp = {.sched_priority = 1};

        if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0) {
            fprintf(stderr, "loadgen: --api-fifo: %s\n", strerror(errno));
            exit(1);
        }
    }
    if (!curl) {
        w->errors++;
        goto sync;
    }
    curl_easy_setopt(curl, CURLOPT_URL, w->url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &w->body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    /* one request before the clock: the connection is made and kept alive */
    curl_easy_perform(curl);
    w->body = 0;
sync:
    if (w->barrier) {
        pthread_barrier_wait(w->barrier);
        pthread_barrier_wait(w->barrier);
        w->start = *w->shared_start;
        w->end = w->start + (uint64_t)(o->duration * (double)NSEC);
    }
    if (!curl)
        return NULL;
    for (next = w->start; next < w->end; next += interval) {
        uint64_t now = now_ns();
        long code = 0;
        if (interval == 0)
            next = now; /* closed loop */
        else if (now < next) {
            struct timespec ts = {.tv_sec = (time_t)((next - now) / NSEC),
                                  .tv_nsec = (long)((next - now) % NSEC)};
            nanosleep(&ts, NULL);
        }
        if (curl_easy_perform(curl) != CURLE_OK) {
            w->errors++;
            continue;
        }
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        if (code != 200) {
            w->errors++;
            continue;
        }
        hist_add(&w->h, now_ns() - next);
        w->ok++;
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* ---- echo ---- */

static void conn_kill(struct worker *w, struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    w->errors++;
    (void)epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void conn_want_out(struct worker *w, struct conn *c, bool on)
{
    struct epoll_event ev = {0};

    if (c->want_out == on)
        return;
    c->want_out = on;
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.ptr = c;
    (void)epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what the connection owes (TCP). */
static void tcp_flush(struct worker *w, struct conn *c)
{
    size_t size = w->o->size;

    while (c->out_left > 0) {
        size_t chunk = size - c->out_off;
        ssize_t n;

        if (chunk > c->out_left)
            chunk = c->out_left;
        n = write(c->fd, w->pattern + c->out_off, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                conn_want_out(w, c, true);
                return;
            }
            conn_kill(w, c);
            return;
        }
        c->out_left -= (size_t)n;
        c->out_off = (c->out_off + (size_t)n) % size;
    }
    conn_want_out(w, c, false);
}

static void q_push(struct conn *c, uint64_t t)
{
    if (c->qlen == c->qcap) {
        size_t ncap = c->qcap ? c->qcap * 2 : 64;
        uint64_t *nq = malloc(ncap * sizeof(*nq));
        if (!nq)
            abort();
        for (size_t i = 0; i < c->qlen; i++)
            nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = t;
    c->qlen++;
}

static uint64_t q_pop(struct conn *c)
{
    uint64_t t = c->q[c->qhead];

    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    return t;
}

static bool open_loop(const struct worker *w)
{
    return w->o->rate > 0;
}

/* Sends one message now (closed loop) or at its intended time (open loop). */
static void send_msg(struct worker *w, struct conn *c, uint64_t intended)
{
    const struct opts *o = w->o;

    if (o->udp) {
        uint64_t hdr[2] = {c->seq++, intended};
        memcpy(w->pattern, hdr, o->size >= sizeof(hdr) ? sizeof(hdr) : 0);
        if (send(c->fd, w->pattern, o->size, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED)
            conn_kill(w, c);
        c->t0 = intended;
        return;
    }
    if (open_loop(w))
        q_push(c, intended);
    else
        c->t0 = intended;
    c->out_left += o->size;
    tcp_flush(w, c);
}

static void record(struct worker *w, uint64_t intended, uint64_t now)
{
    if (intended < w->start || intended >= w->end)
        return; /* warm-up or after the end */
    hist_add(&w->h, now - intended);
    w->msgs++;
    w->bytes += w->o->size;
}

static void on_readable(struct worker *w, struct conn *c, bool sending)
{
    const struct opts *o = w->o;

    for (;;) {
        ssize_t n = recv(c->fd, w->rbuf, IO_BUF, 0);
        uint64_t now = now_ns();
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            if (o->udp && errno == ECONNREFUSED)
                return;
            conn_kill(w, c);
            return;
        }
        if (n == 0) {
            conn_kill(w, c);
            return;
        }
        if (o->udp) {
            uint64_t hdr[2];
            if ((size_t)n != o->size)
                continue;
            if (open_loop(w) && o->size >= sizeof(hdr)) {
                memcpy(hdr, w->rbuf, sizeof(hdr));
                record(w, hdr[1], now);
                continue;
            }
            if (c->t0 == 0)
                continue; /* a late reply to a message counted lost */
            record(w, c->t0, now);
            c->t0 = 0;
            if (sending)
                send_msg(w, c, now);
            continue;
        }
        c->rcvd += (size_t)n;
        while (c->rcvd >= o->size) {
            c->rcvd -= o->size;
            if (open_loop(w)) {
                if (c->qlen > 0)
                    record(w, q_pop(c), now);
            } else {
                record(w, c->t0, now);
                c->t0 = 0;
                if (sending && c->rcvd == 0)
                    send_msg(w, c, now);
            }
        }
    }
}

static int echo_setup(struct worker *w)
{
    struct epoll_event ev = {0};

    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        return -errno;
    w->pattern = malloc(w->o->size > 16 ? w->o->size : 16);
    w->rbuf = malloc(IO_BUF);
    if (!w->pattern || !w->rbuf)
        return -ENOMEM;
    for (size_t i = 0; i < w->o->size; i++)
        w->pattern[i] = (unsigned char)('a' + i % 26);
    for (int i = 0; i < w->count; i++) {
        struct conn *c = &w->c[i];
        int fd = dial(w->ai, w->o->udp);
        if (fd < 0) {
            fprintf(stderr, "loadgen: connect: %s\n", strerror(-fd));
            return fd;
        }
        c->fd = fd;
        if (set_nonblock(fd) < 0)
            return -errno;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            return -errno;
    }
    return 0;
}

/* One round trip per connection before the clock starts. */
static void echo_warmup(struct worker *w)
{
    struct epoll_event evs[256];
    uint64_t deadline = now_ns() + WARMUP_NS;
    bool saved_open = w->o->rate > 0;
    struct opts tmp = *w->o;
    const struct opts *o = w->o;

    tmp.rate = 0; /* closed loop for the warm-up */
    w->o = &tmp;
    w->start = w->end = UINT64_MAX; /* nothing recorded */
    for (int i = 0; i < w->count; i++)
        send_msg(w, &w->c[i], now_ns());
    for (;;) {
        int pending = 0, n;
        for (int i = 0; i < w->count; i++)
            if (!w->c[i].dead && w->c[i].t0 != 0)
                pending++;
        w->warm_pending = (uint64_t)pending;
        if (pending == 0 || now_ns() >= deadline)
            break;
        n = epoll_wait(w->ep, evs, 256, 10);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->dead)
                continue;
            if (evs[k].events & EPOLLOUT)
                tcp_flush(w, c);
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(w, c, false);
        }
    }
    w->o = o;
    (void)saved_open;
    for (int i = 0; i < w->count; i++) {
        struct conn *c = &w->c[i];
        c->t0 = 0;
        c->rcvd = 0;
    }
}

static void *echo_run(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    struct epoll_event evs[256];
    uint64_t now, stop;
    double per_conn_rate = o->rate / o->conns;

    if (o->worker_nice != 0)
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), o->worker_nice);
    echo_warmup(w);
    pthread_barrier_wait(w->barrier); /* the main thread opens the window */
    pthread_barrier_wait(w->barrier);
    w->start = *w->shared_start;
    w->end = w->start + (uint64_t)(o->duration * (double)NSEC);
    stop = w->end + DRAIN_NS;

    for (int i = 0; i < w->count; i++) {
        struct conn *c = &w->c[i];
        if (c->dead)
            continue;
        if (open_loop(w)) {
            c->interval = (uint64_t)((double)NSEC / per_conn_rate);
            c->next_due = w->start + c->interval * (uint64_t)(w->first + i) / (uint64_t)o->conns;
        } else {
            send_msg(w, c, w->start);
        }
    }

    for (;;) {
        int n, timeout = 10;
        bool sending;

        now = now_ns();
        sending = now < w->end;
        if (now >= stop)
            break;
        if (!sending) {
            bool inflight = false;
            for (int i = 0; i < w->count && !inflight; i++) {
                struct conn *c = &w->c[i];
                inflight = !c->dead && (c->t0 != 0 || c->qlen > 0);
            }
            if (!inflight)
                break;
        }
        if (open_loop(w) && sending) {
            uint64_t next = UINT64_MAX;
            for (int i = 0; i < w->count; i++) {
                struct conn *c = &w->c[i];
                if (c->dead)
                    continue;
                while (c->next_due <= now && c->next_due < w->end) {
                    send_msg(w, c, c->next_due);
                    c->next_due += c->interval;
                }
                if (c->next_due < next)
                    next = c->next_due;
            }
            timeout = next > now + 1000000 ? (int)((next - now) / 1000000) : 0;
            if (timeout > 10)
                timeout = 10;
        }
        if (o->udp && !open_loop(w)) {
            for (int i = 0; i < w->count; i++) {
                struct conn *c = &w->c[i];
                if (!c->dead && c->t0 != 0 && now - c->t0 > UDP_LOSS_NS) {
                    if (c->t0 >= w->start && c->t0 < w->end)
                        w->lost++;
                    c->t0 = 0;
                    if (sending)
                        send_msg(w, c, now);
                }
            }
        }
        n = epoll_wait(w->ep, evs, 256, timeout);
        now = now_ns();
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->dead)
                continue;
            if (evs[k].events & EPOLLOUT)
                tcp_flush(w, c);
            if (!c->dead && (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(w, c, now_ns() < w->end);
        }
    }
    /* what never came back */
    for (int i = 0; i < w->count; i++) {
        struct conn *c = &w->c[i];
        if (o->udp && open_loop(w))
            continue;
        if (c->t0 != 0 && c->t0 >= w->start && c->t0 < w->end)
            w->lost++;
        for (size_t k = 0; k < c->qlen; k++)
            if (c->q[(c->qhead + k) % c->qcap] < w->end)
                w->lost++;
    }
    if (o->udp && open_loop(w)) {
        uint64_t sent = 0;
        for (int i = 0; i < w->count; i++)
            sent += w->c[i].seq;
        /* the warm-up sent one per socket */
        sent -= (uint64_t)w->count;
        w->lost = sent > w->msgs ? sent - w->msgs : 0;
    }
    return NULL;
}

static int mode_echo(const struct opts *o)
{
    struct addrinfo *ai;
    struct worker *ws;
    struct conn *conns;
    pthread_t *tids;
    pthread_barrier_t barrier;
    uint64_t shared_start = 0, msgs = 0, bytes = 0, errors = 0, lost = 0, warm = 0;
    struct hist *h, *api_h;
    struct window win;
    struct http_worker *api;
    pthread_t *api_tids;
    uint64_t api_ok = 0, api_errors = 0;
    int r, per, extra, at = 0, n_api;

    if (o->udp && o->rate > 0 && o->size < 16) {
        fprintf(stderr, "loadgen: UDP open loop needs -s 16 or more\n");
        return 2;
    }
    r = resolve(o, &ai);
    if (r < 0)
        return 1;
    raise_nofile();
    ws = calloc((size_t)o->threads, sizeof(*ws));
    conns = calloc((size_t)o->conns, sizeof(*conns));
    tids = calloc((size_t)o->threads, sizeof(*tids));
    h = calloc(1, sizeof(*h));
    if (!ws || !conns || !tids || !h)
        return 1;
    if (window_open(o, &win) < 0)
        return 1;
    n_api = !o->api_url ? 0 : o->api_rate > 0 ? 1 : o->api_conns;
    api = calloc((size_t)n_api + 1, sizeof(*api));
    api_tids = calloc((size_t)n_api + 1, sizeof(*api_tids));
    api_h = calloc(1, sizeof(*api_h));
    if (!api || !api_tids || !api_h)
        return 1;
    /* the workers, the API clients and this thread, which opens and closes the window */
    pthread_barrier_init(&barrier, NULL, (unsigned)(o->threads + n_api) + 1);
    if (n_api > 0)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    per = o->conns / o->threads;
    extra = o->conns % o->threads;
    for (int t = 0; t < o->threads; t++) {
        struct worker *w = &ws[t];
        w->o = o;
        w->ai = ai;
        w->first = at;
        w->count = per + (t < extra ? 1 : 0);
        w->c = conns + at;
        w->barrier = &barrier;
        w->shared_start = &shared_start;
        at += w->count;
        r = echo_setup(w);
        if (r < 0) {
            fprintf(stderr, "loadgen: setup: %s\n", strerror(-r));
            return 1;
        }
    }
    for (int t = 0; t < o->threads; t++)
        pthread_create(&tids[t], NULL, echo_run, &ws[t]);
    for (int i = 0; i < n_api; i++) {
        api[i] = (struct http_worker){.o = o,
                                      .url = o->api_url,
                                      .rate = o->api_rate,
                                      .barrier = &barrier,
                                      .shared_start = &shared_start};
        pthread_create(&api_tids[i], NULL, http_run, &api[i]);
    }
    pthread_barrier_wait(&barrier); /* every connection warmed up */
    window_begin(o, &win);
    shared_start = now_ns();
    pthread_barrier_wait(&barrier);
    {
        uint64_t end = shared_start + (uint64_t)(o->duration * (double)NSEC), now;
        while ((now = now_ns()) < end) {
            struct timespec ts = {.tv_sec = (time_t)((end - now) / NSEC),
                                  .tv_nsec = (long)((end - now) % NSEC)};
            nanosleep(&ts, NULL);
        }
    }
    window_end(o, &win);
    for (int i = 0; i < n_api; i++) {
        pthread_join(api_tids[i], NULL);
        hist_merge(api_h, &api[i].h);
        api_ok += api[i].ok;
        api_errors += api[i].errors;
    }
    for (int t = 0; t < o->threads; t++) {
        struct worker *w = &ws[t];
        pthread_join(tids[t], NULL);
        hist_merge(h, &w->h);
        msgs += w->msgs;
        bytes += w->bytes;
        errors += w->errors;
        lost += w->lost;
        warm += w->warm_pending;
        for (int i = 0; i < w->count; i++)
            if (!w->c[i].dead)
                close(w->c[i].fd);
    }

    printf("{\"mode\":\"echo\",\"tag\":\"%s\",\"proto\":\"%s\",\"loop\":\"%s\",\"conns\":%d,"
           "\"size\":%zu,\"duration_s\":%.3f,\"rate\":%.0f,\"msgs\":%" PRIu64
           ",\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"errors\":%" PRIu64 ",\"lost\":%" PRIu64
           ",\"warmup_pending\":%" PRIu64 ",",
           o->tag, o->udp ? "udp" : "tcp", o->rate > 0 ? "open" : "closed", o->conns, o->size,
           o->duration, o->rate, msgs, (double)msgs / o->duration,
           (double)bytes / o->duration / 1e6, errors, lost, warm);
    print_lat_json(h);
    print_cpu_json(&win);
    if (n_api > 0) {
        printf(",\"api\":{\"url\":\"%s\",\"loop\":\"%s\",\"conns\":%d,\"rate\":%.0f,"
               "\"fifo\":%s,\"requests\":%" PRIu64 ",\"errors\":%" PRIu64 ",",
               o->api_url, o->api_rate > 0 ? "open" : "closed", n_api, o->api_rate,
               o->api_fifo ? "true" : "false", api_ok, api_errors);
        print_lat_json(api_h);
        printf("}");
        fprintf(stderr, "%s api %s: %" PRIu64 " ok %" PRIu64 " errors, p99 %.2f ms\n", o->tag,
                o->api_url, api_ok, api_errors, hist_pct_us(api_h, 0.99) / 1000);
        curl_global_cleanup();
    }
    printf("}\n");
    fprintf(stderr,
            "%s echo %s %s c=%d s=%zu: %.0f msg/s %.2f MB/s, p50 %.1f p99 %.1f p99.9 %.1f max "
            "%.1f us, errors %" PRIu64 " lost %" PRIu64 "\n",
            o->tag, o->udp ? "udp" : "tcp", o->rate > 0 ? "open" : "closed", o->conns, o->size,
            (double)msgs / o->duration, (double)bytes / o->duration / 1e6, hist_pct_us(h, 0.5),
            hist_pct_us(h, 0.99), hist_pct_us(h, 0.999), (double)h->max / 1000.0, errors, lost);
    freeaddrinfo(ai);
    for (int t = 0; t < o->threads; t++) {
        free(ws[t].pattern);
        free(ws[t].rbuf);
        if (ws[t].ep > 0)
            close(ws[t].ep);
    }
    for (int i = 0; i < o->conns; i++)
        free(conns[i].q);
    free(ws);
    free(conns);
    free(tids);
    free(h);
    free(api);
    free(api_tids);
    free(api_h);
    return msgs > 0 && (n_api == 0 || (api_ok > 0 && api_errors == 0)) ? 0 : 1;
}

/* ---- upload ---- */

static int read_line(int fd, char *buf, size_t cap)
{
    size_t len = 0;

    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EPIPE;
        if (buf[len] == '\n') {
            buf[len] = '\0';
            return 0;
        }
        len++;
    }
    return -E2BIG;
}

static int mode_upload(const struct opts *o)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    unsigned char md[32];
    char hex[65], line[1200];
    struct addrinfo *ai;
    EVP_MD_CTX *ctx;
    struct window win;
    uint64_t x = 0x9e3779b97f4a7c15ull, left, t0, t1;
    double secs;
    int fd, r;

    if (!buf || resolve(o, &ai) < 0)
        return 1;
    for (size_t i = 0; i < CHUNK; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (left = o->bytes; left > 0;) {
        size_t n = left > CHUNK ? CHUNK : (size_t)left;
        EVP_DigestUpdate(ctx, buf, n);
        left -= n;
    }
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);

    if (window_open(o, &win) < 0)
        return 1;
    window_begin(o, &win);
    t0 = now_ns();
    fd = dial(ai, false);
    if (fd < 0) {
        fprintf(stderr, "loadgen: connect: %s\n", strerror(-fd));
        return 1;
    }
    if (!o->raw) {
        snprintf(line, sizeof(line), "PUT %s %" PRIu64 " %s\n", o->name, o->bytes, hex);
        if (write_all(fd, line, strlen(line)) < 0 || read_line(fd, line, sizeof(line)) < 0 ||
            strncmp(line, "OK", 2) != 0) {
            fprintf(stderr, "loadgen: PUT refused: %s\n", line);
            return 1;
        }
    }
    for (left = o->bytes; left > 0;) {
        size_t n = left > CHUNK ? CHUNK : (size_t)left;
        r = write_all(fd, buf, n);
        if (r < 0) {
            fprintf(stderr, "loadgen: write: %s\n", strerror(-r));
            return 1;
        }
        left -= n;
    }
    if (!o->raw) {
        if (read_line(fd, line, sizeof(line)) < 0 || strncmp(line, "STORED", 6) != 0) {
            fprintf(stderr, "loadgen: not stored: %s\n", line);
            return 1;
        }
    } else {
        (void)shutdown(fd, SHUT_WR);
        while (read(fd, line, sizeof(line)) > 0)
            ;
    }
    t1 = now_ns();
    window_end(o, &win);
    close(fd);
    secs = (double)(t1 - t0) / 1e9;
    printf("{\"mode\":\"upload\",\"tag\":\"%s\",\"proto\":\"%s\",\"bytes\":%" PRIu64
           ",\"seconds\":%.4f,\"mb_per_s\":%.2f,\"sha256\":\"%s\"",
           o->tag, o->raw ? "raw" : "backup", o->bytes, secs, (double)o->bytes / secs / 1e6, hex);
    print_cpu_json(&win);
    printf("}\n");
    fprintf(stderr, "%s upload %s %" PRIu64 " bytes in %.3f s: %.1f MB/s\n", o->tag,
            o->raw ? "raw" : "backup", o->bytes, secs, (double)o->bytes / secs / 1e6);
    freeaddrinfo(ai);
    free(buf);
    return 0;
}

/* ---- idle ---- */

static long rss_kib(long pid)
{
    char path[64], line[256];
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

static int mode_idle(const struct opts *o)
{
    struct addrinfo *ai;
    int *fds = calloc((size_t)o->conns, sizeof(int));
    struct epoll_event ev = {0}, evs[256];
    int ep, established = 0, failed = 0, dropped = 0, opened = 0, inflight = 0;
    long before, after, end_rss;
    uint64_t deadline, hold_end;

    if (!fds || resolve(o, &ai) < 0)
        return 1;
    raise_nofile();
    ep = epoll_create1(EPOLL_CLOEXEC);
    before = o->pid > 0 ? rss_kib(o->pid) : -1;
    deadline = now_ns() + 30 * NSEC;
    /* non-blocking connects, at most 256 in flight */
    while ((established + failed < o->conns) && now_ns() < deadline) {
        while (opened < o->conns && inflight < 256) {
            int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
                failed += o->conns - opened;
                opened = o->conns;
                break;
            }
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
                close(fd);
                failed++;
                opened++;
                continue;
            }
            fds[opened] = fd;
            ev.events = EPOLLOUT;
            ev.data.u64 = (uint64_t)opened;
            (void)epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            opened++;
            inflight++;
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u64, err = 0;
            socklen_t len = sizeof(err);
            (void)getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len);
            inflight--;
            if (err != 0) {
                (void)epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                close(fds[i]);
                fds[i] = -1;
                failed++;
                continue;
            }
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.u64 = (uint64_t)i;
            (void)epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev);
            established++;
        }
    }
    /* let the server accept and settle, then hold (watching for closes) */
    hold_end = now_ns() + (uint64_t)(o->duration * (double)NSEC);
    after = -1;
    while (now_ns() < hold_end) {
        int n = epoll_wait(ep, evs, 256, 200);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u64;
            (void)epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
            close(fds[i]);
            fds[i] = -1;
            dropped++;
        }
        if (after < 0 && now_ns() + (uint64_t)(o->duration * (double)NSEC) / 2 >= hold_end)
            after = o->pid > 0 ? rss_kib(o->pid) : -1;
    }
    end_rss = o->pid > 0 ? rss_kib(o->pid) : -1;
    printf("{\"mode\":\"idle\",\"tag\":\"%s\",\"conns\":%d,\"established\":%d,\"failed\":%d,"
           "\"dropped\":%d,\"held_s\":%.1f,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
           "\"rss_end_kib\":%ld,\"bytes_per_conn\":%.0f}\n",
           o->tag, o->conns, established, failed, dropped, o->duration, before, after, end_rss,
           established > 0 && before >= 0 ? (double)(after - before) * 1024.0 / established : -1.0);
    fprintf(stderr,
            "%s idle: %d/%d established, %d dropped while held; RSS %ld -> %ld KiB (%.0f "
            "bytes per connection)\n",
            o->tag, established, o->conns, dropped, before, after,
            established > 0 && before >= 0 ? (double)(after - before) * 1024.0 / established
                                           : -1.0);
    for (int i = 0; i < o->conns; i++)
        if (i < opened && fds[i] >= 0)
            close(fds[i]);
    close(ep);
    freeaddrinfo(ai);
    free(fds);
    return established == o->conns ? 0 : 1;
}

/* ---- http ---- */

/* http: -r RATE over one connection (open loop), or -c CONNS connections closed loop (no -r). */
static int mode_http(const struct opts *o)
{
    int n = o->rate > 0 ? 1 : o->conns;
    struct http_worker *ws = calloc((size_t)n, sizeof(*ws));
    pthread_t *tids = calloc((size_t)n, sizeof(*tids));
    struct hist *h = calloc(1, sizeof(*h));
    uint64_t start, ok = 0, errors = 0, body = 0;
    struct window win;

    if (!ws || !tids || !h || window_open(o, &win) < 0)
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    window_begin(o, &win);
    start = now_ns() + 200 * 1000 * 1000; /* after every connection's first request */
    for (int i = 0; i < n; i++) {
        ws[i].o = o;
        ws[i].url = o->url;
        ws[i].rate = o->rate;
        ws[i].start = start;
        ws[i].end = start + (uint64_t)(o->duration * (double)NSEC);
        pthread_create(&tids[i], NULL, http_run, &ws[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(tids[i], NULL);
        hist_merge(h, &ws[i].h);
        ok += ws[i].ok;
        errors += ws[i].errors;
        body += ws[i].body;
    }
    window_end(o, &win);
    curl_global_cleanup();
    printf("{\"mode\":\"http\",\"tag\":\"%s\",\"url\":\"%s\",\"loop\":\"%s\",\"conns\":%d,"
           "\"rate\":%.0f,\"duration_s\":%.3f,\"requests\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"body_bytes\":%" PRIu64 ",\"requests_per_s\":%.1f,",
           o->tag, o->url, o->rate > 0 ? "open" : "closed", n, o->rate, o->duration, ok, errors,
           body, (double)ok / o->duration);
    print_lat_json(h);
    print_cpu_json(&win);
    printf("}\n");
    fprintf(stderr,
            "%s http %s (%s loop, %d conn): %" PRIu64 " ok %" PRIu64
            " errors, p50 %.2f p99 %.2f max %.2f ms\n",
            o->tag, o->url, o->rate > 0 ? "open" : "closed", n, ok, errors,
            hist_pct_us(h, 0.5) / 1000, hist_pct_us(h, 0.99) / 1000, (double)h->max / 1e6);
    free(ws);
    free(tids);
    free(h);
    return ok > 0 && errors == 0 ? 0 : 1;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fputs("usage: loadgen echo   [--udp] [-c CONNS] [-s SIZE] [-d SECONDS] [-r RATE] "
          "[-t THREADS] [--tag T]\n"
          "                     [--api URL [--api-rate R | --api-conns N]] [--worker-nice N] "
          "HOST PORT\n"
          "       loadgen upload [--raw] [-n BYTES] [--name NAME] [--tag T] HOST PORT\n"
          "       loadgen idle   [-c CONNS] [-d SECONDS] [--pid PID] [--tag T] HOST PORT\n"
          "       loadgen http   [-r RATE | -c CONNS] [-d SECONDS] [--tag T] URL\n"
          "common: [--cpu-pgid PGID] [--perf-ctl CTL,ACK] [--api-fifo]\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"udp", no_argument, NULL, 'u'},
        {"raw", no_argument, NULL, 'R'},
        {"name", required_argument, NULL, 'N'},
        {"pid", required_argument, NULL, 'p'},
        {"tag", required_argument, NULL, 'T'},
        {"cpu-pgid", required_argument, NULL, 'G'},
        {"perf-ctl", required_argument, NULL, 'P'},
        {"api", required_argument, NULL, 'A'},
        {"api-rate", required_argument, NULL, 'B'},
        {"api-conns", required_argument, NULL, 'C'},
        {"worker-nice", required_argument, NULL, 'W'},
        {"api-fifo", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {
        .conns = 1,
        .threads = 1,
        .size = 64,
        .duration = 5,
        .bytes = 256ull << 20,
        .name = "bench.bin",
        .tag = "-",
        .api_conns = 1,
    };
    const char *m;
    int ch;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    m = argv[1];
    if (strcmp(m, "echo") == 0)
        o.mode = MODE_ECHO;
    else if (strcmp(m, "upload") == 0)
        o.mode = MODE_UPLOAD;
    else if (strcmp(m, "idle") == 0)
        o.mode = MODE_IDLE;
    else if (strcmp(m, "http") == 0)
        o.mode = MODE_HTTP;
    else {
        usage(strcmp(m, "--help") == 0 ? stdout : stderr);
        return strcmp(m, "--help") == 0 ? 0 : 2;
    }
    optind = 2;
    while ((ch = getopt_long(argc, argv, "c:s:d:r:t:n:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            o.udp = true;
            break;
        case 'R':
            o.raw = true;
            break;
        case 'N':
            o.name = optarg;
            break;
        case 'p':
            o.pid = strtol(optarg, NULL, 10);
            break;
        case 'T':
            o.tag = optarg;
            break;
        case 'G':
            o.cpu_pgid = strtol(optarg, NULL, 10);
            break;
        case 'P':
            o.perf_ctl = optarg;
            break;
        case 'A':
            o.api_url = optarg;
            break;
        case 'B':
            o.api_rate = strtod(optarg, NULL);
            break;
        case 'C':
            o.api_conns = atoi(optarg);
            break;
        case 'W':
            o.worker_nice = atoi(optarg);
            break;
        case 'F':
            o.api_fifo = true;
            break;
        case 'c':
            o.conns = atoi(optarg);
            break;
        case 's':
            o.size = (size_t)strtoull(optarg, NULL, 10);
            break;
        case 'd':
            o.duration = strtod(optarg, NULL);
            break;
        case 'r':
            o.rate = strtod(optarg, NULL);
            break;
        case 't':
            o.threads = atoi(optarg);
            break;
        case 'n':
            o.bytes = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.api_conns < 1 || o.api_conns > 64 || o.api_rate < 0 || o.worker_nice < -20 ||
        o.worker_nice > 19) {
        fprintf(stderr, "loadgen: a value out of range\n");
        return 2;
    }
    if (o.conns < 1 || o.conns > MAX_CONNS || o.threads < 1 || o.threads > o.conns || o.size < 1 ||
        o.size > 65507 || o.duration <= 0 || o.duration > 3600 || o.rate < 0) {
        fprintf(stderr, "loadgen: a value out of range\n");
        return 2;
    }
    if (o.mode == MODE_HTTP) {
        if (argc - optind != 1) {
            usage(stderr);
            return 2;
        }
        o.url = argv[optind];
        return mode_http(&o);
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    o.host = argv[optind];
    o.port = argv[optind + 1];
    switch (o.mode) {
    case MODE_ECHO:
        return mode_echo(&o);
    case MODE_UPLOAD:
        return mode_upload(&o);
    case MODE_IDLE:
        return mode_idle(&o);
    default:
        return mode_http(&o);
    }
}
