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
 *     loop that sees a message at a time never waits out a window;
 *   - a turn that handled what its wait asked for (or more): the next asks for a quarter more;
 *   - a turn whose window ran out first (fewer came): the next asks for what came;
 *   - never more than the loop's connections can bring at once, nor CORE_BATCH_MAX.
 *
 * The sends a turn queues complete as they are submitted; the runner asks for them beside the
 * inputs. Pure: the uring runner calls it after each turn; tests/unit/test_batch.c drives it.
 */

#define CORE_BATCH_WINDOW_US 50u /* the most a wait holds what came while waiting for more */
#define CORE_BATCH_MAX 64u       /* the most inputs a wait asks for */
#define CORE_BATCH_MIN 4u /* fewer: a wait asks for one (the window's timer would cost more) */

/* What the next wait asks for, after a wait that asked for want and a turn that handled got
 * inputs; max bounds it. */
static inline unsigned core_batch_next(unsigned want, unsigned got, unsigned max)
{
    unsigned next = got < want ? got : got + got / 4;

    if (next > max)
        next = max;
    return next < CORE_BATCH_MIN ? 1 : next;
}

/* The most a loop with conns connections asks for: a connection brings one input at a time
 * (a client that pipelines more finds them in one receive). */
static inline unsigned core_batch_max(unsigned conns)
{
    return conns < 1 ? 1 : conns > CORE_BATCH_MAX ? CORE_BATCH_MAX : conns;
}

#endif
