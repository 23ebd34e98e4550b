#ifndef CORE_THREAD_H
#define CORE_THREAD_H

/*
 * Thread names: what `ps -L`, `top -H` and /proc/PID/task/TID/comm show. Every thread of the
 * daemon has one: "ss-<role>" for the daemon's own (ss-api, ss-changes, ss-tick, ...) and
 * "l:<id>/<role>" for a listener's (l:e1/acc, l:e1/ev0, l:e1/conn, l:e1/off3), the id cut so
 * that the role fits in the kernel's 15 characters.
 */

#include <pthread.h>
#include <stdbool.h>

/* The longest name the kernel keeps, without the terminating NUL. */
#define CORE_THREAD_NAME_MAX 15

/* The stack of a thread that runs a runner's loop, a connection or a change's job: the
 * sessions' callbacks keep their buffers on the heap. */
#define CORE_THREAD_STACK_SIZE (256 * 1024)

/*
 * Writes "l:<id>/<role>" into buf (CORE_THREAD_NAME_MAX + 1 bytes), id cut so that the whole
 * role fits (a role longer than leaves room is cut instead). Any thread.
 */
void core_thread_name_listener(char *buf, const char *id, const char *role);

/*
 * Names thread t name, cut to CORE_THREAD_NAME_MAX characters. A failure is ignored: the name
 * is for people reading the process list. Any thread.
 */
void core_thread_name(pthread_t t, const char *name);

/*
 * A pool of threads that the listeners' runners (and a change's save of its revision) borrow
 * instead of starting and ending threads of their own: a change that starts 250 runners then wakes
 * 250 parked threads instead of cloning 250 (each with a fresh stack to map) and, once their
 * runners are stopped, parks them again instead of unmapping their stacks. A thread runs one job at
 * a time, named as the job says; parked, it is called "ss-idle". At most CORE_THREADS_IDLE_MAX are
 * kept parked: one given back beyond that ends.
 */
struct core_threads;

/* One job's thread, from core_threads_run() until core_threads_join(). */
struct core_thread;

/* Enough for two changes in a row that each start a runner per listener of a full registry:
 * the first one's replaced runners are not parked yet when the second starts its own. */
#define CORE_THREADS_IDLE_MAX 1024

/* A new pool with no thread. Returns 0 or -ENOMEM. */
int core_threads_new(struct core_threads **ret);

/* Ends and joins the parked threads and frees the pool. Every job must have been joined.
 * Accepts NULL. */
void core_threads_free(struct core_threads *p);

/*
 * Runs fn(arg) on a parked thread of p, or on a new one (stack_size bytes of stack) when none
 * is parked; the thread takes name (cut to CORE_THREAD_NAME_MAX) while it runs it. Returns 0
 * with *ret, which core_threads_join() must be given once, or a negative errno. Any thread.
 */
int core_threads_run(struct core_threads *p, void *(*fn)(void *), void *arg, const char *name,
                     size_t stack_size, struct core_thread **ret);

/* Waits until t's job has returned and gives its thread back to the pool (t is gone). Any
 * thread, once per core_threads_run(). */
void core_threads_join(struct core_thread *t);

#endif
