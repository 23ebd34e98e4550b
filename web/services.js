// The services the daemon runs, as GET /api/v1/services describes them: for each, the
// transports it speaks, the TCP models it may run under and its options (type, default, range
// or choices, unit, transports, help). The form is built from it; nothing in the dashboard
// knows a service by name.

import { ApiError, api } from './api.js';

let catalogue = null;

/**
 * Resolves to { services: [service], byName: Map } or, when the daemon does not describe its
 * services, { services: [], byName: empty Map, missing: text that says why }. Asked once per
 * page; a failure other than 404 is asked again the next time.
 */
export function loadServices() {
  if (!catalogue) {
    catalogue = api.services().then((body) => {
      const services = Array.isArray(body?.services) ? body.services.filter((s) => s && typeof s.name === 'string') : [];
      return { services, byName: new Map(services.map((s) => [s.name, s])) };
    }, (e) => {
      if (!(e instanceof ApiError && e.status === 404)) catalogue = null;
      const why = e instanceof ApiError && e.status === 404
        ? 'This daemon does not describe its services (GET /api/v1/services answered 404): it is older than this dashboard. Listeners can be started, stopped and deleted here, not created.'
        : `The daemon's services cannot be read: ${e.message}`;
      return { services: [], byName: new Map(), missing: why };
    });
  }
  return catalogue;
}
