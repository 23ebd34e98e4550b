#ifndef CORE_BATCH_H
#define CORE_BATCH_H

/*
 * How many inputs (receives and accepts) a uring loop's next wait asks the kernel for. A loop
 * that wakes for every message pays a wake-up and an io_uring_enter() per message; one that
 * waits for several, within a short window (CORE_BATCH_WINDOW_US: io_uring's min_wait, kernel
 * 6.12), pays them once per batch. Waiting for more than will come costs the answers the window
 * and a timer, so the loop asks for more only while the load shows it:
 *
 *   - a turn that handled fewer than CORE_BATCH_MIN inputs: the next wait asks for one, and a
 *     loop that sees a message at a time never waits out a window; but after CORE_BATCH_PROBE
 *     turns of 2 or 3, one wait asks for CORE_BATCH_MIN, to find out whether the load would
 *     bring more to a loop that waited for it;
 *   - a turn that handled what its wait asked for (or more): the next asks for a quarter more;
 *   - a turn whose window ran out first (fewer came): the next asks for what came;
 *   - never more than the loop's connections can bring at once, nor CORE_BATCH_MAX.
 *
 * The sends a turn queues complete as they are submitted; the runner asks for them beside the
 * inputs. Pure: the uring runner calls it after each turn; tests/unit/test_batch.c drives it.
 */

#define CORE_BATCH_WINDOW_US 50u /* the most a wait holds what came while waiting for more */
#define CORE_BATCH_MAX 64u       /* the most inputs a wait asks for */
#define CORE_BATCH_MIN 4u    /* fewer: a wait asks for one (the window's timer would cost more) */
#define CORE_BATCH_PROBE 64u /* turns of 2 or 3 inputs between two waits that ask for more */

/* A loop's batching: what its next wait asks for. Zero-initialised: one. */
struct core_batch {
    unsigned want;  /* inputs the next wait asks for; 0 counts as 1 */
    unsigned probe; /* turns of 2 or 3 inputs since the last probe */
};

/* After a turn that handled got inputs (the wait asked for b->want), what the next asks for;
 * max bounds it. */
static inline void core_batch_turned(struct core_batch *b, unsigned got, unsigned max)
{
    unsigned want = b->want ? b->want : 1, next = got < want ? got : got + got / 4;

    if (next > max)
        next = max;
    if (next >= CORE_BATCH_MIN) {
        b->want = next;
        return;
    }
    b->want = 1;
    /* A loop that keeps just ahead of its load sees 2 or 3 inputs a turn and would never learn
     * that a wait gathers more: now and then one asks for CORE_BATCH_MIN. */
    if (got >= 2 && max >= CORE_BATCH_MIN && ++b->probe >= CORE_BATCH_PROBE) {
        b->probe = 0;
        b->want = CORE_BATCH_MIN;
    }
}

/* The most a loop with conns connections asks for: a connection brings one input at a time
 * (a client that pipelines more finds them in one receive). */
static inline unsigned core_batch_max(unsigned conns)
{
    return conns < 1 ? 1 : conns > CORE_BATCH_MAX ? CORE_BATCH_MAX : conns;
}

/*
 * Submits what is queued on ring and waits, at most *ts (NULL: no limit), for want completions
 * within CORE_BATCH_WINDOW_US, or after the window for the first one. For a kernel with
 * IORING_FEAT_MIN_TIMEOUT (6.12). liburing 2.3 has no io_uring_submit_and_wait_min_timeout()
 * (2.8): the queue's tail is published here as io_uring_submit() does, and the one
 * io_uring_enter() both submits and waits. Returns what io_uring_enter() returned, or -errno.
 * Defined where <liburing.h> was included first.
 */
#ifdef LIB_URING_H
#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif

static inline int core_batch_submit_and_wait(struct io_uring *ring, unsigned want,
                                             const struct __kernel_timespec *ts)
{
    struct io_uring_sq *sq = &ring->sq;
    /* min_wait_usec is named pad in liburing 2.3's header */
    struct io_uring_getevents_arg arg = {.pad = CORE_BATCH_WINDOW_US,
                                         .ts = (uint64_t)(uintptr_t)ts};
    unsigned tail = sq->sqe_tail;
    long r;

    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    r = syscall(__NR_io_uring_enter, ring->ring_fd, tail - *sq->khead, want,
                IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
    return r < 0 ? -errno : (int)r;
}
#endif

#endif
