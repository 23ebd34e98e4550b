#ifndef CORE_THREAD_H
#define CORE_THREAD_H

/*
 * Thread names: what `ps -L`, `top -H` and /proc/PID/task/TID/comm show. Every thread of the
 * daemon has one: "ss-<role>" for the daemon's own (ss-api, ss-changes, ss-tick, ...) and
 * "l:<id>/<role>" for a listener's (l:e1/acc, l:e1/ev0, l:e1/conn, l:e1/off3), the id cut so
 * that the role fits in the kernel's 15 characters.
 */

#include <pthread.h>

/* The longest name the kernel keeps, without the terminating NUL. */
#define CORE_THREAD_NAME_MAX 15

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

#endif
