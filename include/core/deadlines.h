#ifndef CORE_DEADLINES_H
#define CORE_DEADLINES_H

/*
 * A loop's connections in order of deadline: an intrusive doubly linked list where a connection
 * that is touched moves to the tail with a deadline a fixed time from now, so the head is always
 * the first to expire and a sweep looks at the heads only. The event and uring runners keep one
 * list per kind of deadline (idle, linger). Not thread-safe: a list belongs to its loop's thread.
 */

#include <stddef.h>
#include <stdint.h>

#include "core/clock.h"

struct core_dl_node {
    struct core_dl_node *prev, *next;
    int64_t deadline; /* ms (core_now_ms()); INT64_MAX: none */
};

struct core_dl_list {
    struct core_dl_node *head, *tail;
};

/* The structure of type holding node n as member (n may be NULL). */
#define core_dl_entry(n, type, member)                                                             \
    ((n) ? (type *)(void *)((char *)(n)-offsetof(type, member)) : (type *)NULL)

static inline void core_dl_remove(struct core_dl_list *l, struct core_dl_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

static inline void core_dl_append(struct core_dl_list *l, struct core_dl_node *n)
{
    n->prev = l->tail;
    n->next = NULL;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

/* Moves n (in l) to l's tail with a deadline ms from now (0: none). */
static inline void core_dl_touch(struct core_dl_list *l, struct core_dl_node *n, uint32_t ms)
{
    n->deadline = ms ? core_now_ms() + ms : INT64_MAX;
    core_dl_remove(l, n);
    core_dl_append(l, n);
}

/* l's first node when its deadline is at or before now, else NULL. */
static inline struct core_dl_node *core_dl_due(const struct core_dl_list *l, int64_t now)
{
    return l->head && l->head->deadline <= now ? l->head : NULL;
}

/*
 * The poll timeout in ms from now until the first of a's and b's first deadlines and also
 * (INT64_MAX: none); -1 when there is none at all.
 */
static inline int core_dl_timeout(const struct core_dl_list *a, const struct core_dl_list *b,
                                  int64_t also, int64_t now)
{
    int64_t next = also;

    if (a->head && a->head->deadline < next)
        next = a->head->deadline;
    if (b->head && b->head->deadline < next)
        next = b->head->deadline;
    if (next == INT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

#endif
