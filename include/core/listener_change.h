#ifndef CORE_LISTENER_CHANGE_H
#define CORE_LISTENER_CHANGE_H

/*
 * Changing a listener's configuration, live where it can be: prepare, then commit or abort, so
 * that the registry can apply a change to many listeners and undo all of it when one fails; and
 * the runners a committed change replaced, which end their established connections before they
 * stop (draining).
 *
 * Thread rules: only the thread that makes changes (the registry's, serialised as for
 * core_listener_start()) calls these.
 */

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "core/err.h"
#include "core/listener.h"

/*
 * The first half of a change to cfg (same id), which core_listener_commit() completes or
 * core_listener_abort() undoes. Until one of them is called, no other change may be made.
 *
 * - Live path: when a TCP listener runs and stays enabled with the same address, port (or the
 *   port the kernel gave it for 0), transport and service, and does not move into `event`
 *   (whose sockets need SO_REUSEPORT before they are bound), the listening socket is kept: a
 *   new runner starts on a dup of it (with a new service instance when the options changed).
 *   Until the commit the old runner accepts too.
 * - Bind before close: when a running listener stays enabled with the same transport and
 *   service but another address or port, the new socket is bound and a new runner started on
 *   it; until the commit the old runner still serves its socket. A new address that takes in
 *   the old one on the same port (127.0.0.1 to ::), which cannot be bound beside it, restarts.
 * - Otherwise the listener is stopped and started again (when enabled); when that fails, the
 *   old configuration is put back at once, as it was (running again, failed with its old
 *   reason, or stopped), and the error is returned.
 *
 * Returns 0 (also when cfg changes nothing: commit and abort then do nothing), or a negative
 * errno with err set and the listener as it was: -EADDRINUSE (err->field "port") when a new
 * socket cannot be bound, -EBUSY when a change is already under way.
 */
int core_listener_prepare(struct core_listener *l, const struct core_listener_cfg *cfg,
                          struct core_err *err);

/* Whether the change prepared keeps the established connections (live path, bind before
 * close). */
bool core_listener_prepared_live(const struct core_listener *l);

/*
 * Completes the change prepared: the old runner of the live path or of a moved TCP socket
 * stops accepting (a moved socket is closed: its port refuses at once) and drains: its
 * established connections go on until they end or the new configuration's drain_timeout_ms
 * passes. A moved UDP socket's old runner is stopped. A "listener.state" running event
 * (previous: running) says the new configuration applies, with the drain in "draining".
 * Draining runners that are done or past their deadline are reaped by this commit and about
 * once a second (core_listener_reap_drained()), never by a prepare; stop and free cut and join
 * all of them.
 */
void core_listener_commit(struct core_listener *l);

/*
 * core_listener_commit() of each of the n listeners (each prepared, or with nothing prepared),
 * as one step. First the runners earlier changes left draining that are done are reaped (so
 * changes faster than the registry's reap do not pile up their descriptors); then the
 * draining runners past their deadline (a drain_timeout_ms of 0) are all told to stop before
 * any is joined; the runners this change replaced whose connections ended are left to the next
 * core_listener_reap_drained() (the registry's, within a second) or the next change. A moved
 * socket's old runner that can be muted (runner->mute) wakes not at all here: its socket leaves
 * its loop and is closed (the port refuses at once), and the next core_listener_reap_drained()
 * tells it to drain; whoever made the change calls core_registry_reap_drained() once it has
 * answered, so that the change does not switch to each replaced runner's thread and back.
 */
void core_listener_commit_all(struct core_listener *const *ls, size_t n);

/* Undoes the change prepared: the new runner is stopped (and its socket closed), the old one
 * goes on as if nothing happened; a restart is undone as when it fails. */
void core_listener_abort(struct core_listener *l);

/* core_listener_prepare() then, on success, core_listener_commit(). */
int core_listener_reconfigure(struct core_listener *l, const struct core_listener_cfg *cfg,
                              struct core_err *err);

/* What a listener is, to put it back after a change that was committed. */
struct core_listener_saved {
    struct core_listener_cfg cfg;
    enum core_state state;
    char error[sizeof(((struct core_err *)0)->msg)];
};

/* A copy of the configuration, state and error into *ret (release with
 * core_listener_saved_fini()). Returns 0 or -ENOMEM. */
int core_listener_save(struct core_listener *l, struct core_listener_saved *ret);
void core_listener_saved_fini(struct core_listener_saved *s);

/*
 * Puts back what s says, as a change that is committed at once: the configuration, running
 * when it ran (with a socket bound again if the one it had was closed), stopped, or failed with
 * its old reason (not started again). Best effort: when it cannot run, its state says why.
 */
void core_listener_restore(struct core_listener *l, const struct core_listener_saved *s);

/*
 * Stops the draining runners whose connections have all ended or whose deadline has passed
 * (cutting what is left), and joins them; a "listener.state" event (state unchanged) then
 * shows the drains left. Only the changing thread (the registry's ops holder) calls it; the
 * registry does so about once a second, so a deadline holds to within a second even when no
 * other change comes.
 */
void core_listener_reap_drained(struct core_listener *l);

/* core_listener_reap_drained() of each of the n listeners, with every runner that is done told
 * to stop before any is joined. The same thread rules. */
void core_listener_reap_drained_all(struct core_listener *const *ls, size_t n);

#endif
