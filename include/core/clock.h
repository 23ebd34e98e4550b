#ifndef CORE_CLOCK_H
#define CORE_CLOCK_H

/* The one clock deadlines and rates are measured on. Any thread. */

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC now, in milliseconds. */
static inline int64_t core_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CLOCK_MONOTONIC now, in nanoseconds: for latency records. */
static inline uint64_t core_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
