#ifndef CORE_DIFF_H
#define CORE_DIFF_H

/*
 * The difference between two listener sets, as the API shows it (PUT /api/v1/config, dry runs,
 * revisions): a JSON array sorted by id of
 *
 *   {"id": "x", "action": "create"}
 *   {"id": "y", "action": "change", "fields": ["port", "options.mode"], "live": false}
 *   {"id": "z", "action": "delete"}
 *
 * Unchanged listeners are not listed. "fields" are the changed top-level members of the
 * configurations' JSON (core_listener_cfg_to_json()), in that order, with the service options
 * by key ("options.mode", sorted). "live" is whether the change applies without closing the
 * listener's established connections (see core_diff_is_live()).
 *
 * Pure functions, any thread.
 */

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/config.h"

/*
 * Whether changing a listener from a to b applies without closing its established connections,
 * given whether it runs now: it runs and stays enabled with the same service and transport, and
 * either (TCP) keeps address and port and does not move into `event` (whose sockets need
 * SO_REUSEPORT before they are bound): a new runner takes over the same socket; or changes
 * address or port: the new socket is bound before the old one is closed.
 */
bool core_diff_is_live(const struct core_listener_cfg *a, const struct core_listener_cfg *b,
                       bool running);

/* The names of the fields that differ from a to b (see above), as a JSON array (new
 * reference); empty when they are equal. NULL on ENOMEM. */
json_t *core_diff_fields(const struct core_listener_cfg *a, const struct core_listener_cfg *b);

/*
 * The diff from set from (n_from configurations) to set to (n_to), each in any order with
 * unique ids. running[i] says whether from[i] runs now (NULL: as from[i]->enabled says).
 * Returns 0 with *ret (new reference) or -ENOMEM.
 */
int core_diff_sets(const struct core_listener_cfg *const *from, size_t n_from, const bool *running,
                   const struct core_listener_cfg *const *to, size_t n_to, json_t **ret);

/* A diff entry for one listener (the shapes above); NULL on ENOMEM. */
json_t *core_diff_create(const char *id);
json_t *core_diff_delete(const char *id);
json_t *core_diff_change(const char *id, json_t *fields, bool live); /* takes fields */

/*
 * A one-line summary of a diff for people: "created a, b; changed y (port, options.mode);
 * deleted z"; "no change" for an empty one. Returns a malloc'd string (free()), NULL on
 * ENOMEM.
 */
char *core_diff_summary(const json_t *diff);

#endif
