// The services the daemon describes (GET /api/v1/services), for the dashboard's tests. A daemon
// that serves the route is used as it is; for one that does not yet (404), the browser gets
// SERVICES instead, a table in the same shape with the options the services take today.

/** The shape of GET /api/v1/services, with what echo, date and backup take. */
export const SERVICES = {
  services: [
    {
      name: 'backup',
      help: 'Stores the files its clients upload, with versions and checksums.',
      transports: ['tcp'],
      models: ['sequential', 'thread', 'pool', 'event', 'process', 'uring'],
      counters: [],
      options: [
        { name: 'directory', type: 'path', default: null, transports: ['tcp'], live: false,
          help: 'Where the files go (absolute); default: the state directory\'s backup/ID.' },
        { name: 'on_exists', type: 'string', default: 'version', choices: ['version', 'replace', 'reject'],
          transports: ['tcp'], live: true, help: 'What an upload under a name already stored does.' },
        { name: 'max_file_size', type: 'integer', default: 4294967296, minimum: 1, unit: 'bytes',
          transports: ['tcp'], live: true, help: 'The largest file an upload may store.' },
        { name: 'quota_bytes', type: 'integer', default: 68719476736, minimum: 0, unit: 'bytes',
          transports: ['tcp'], live: true, help: 'All files together, older versions included; 0: no limit.' },
        { name: 'require_checksum', type: 'boolean', default: false, transports: ['tcp'], live: true,
          help: 'Refuse uploads that declare no SHA-256.' },
        { name: 'min_rate_bytes_per_s', type: 'integer', default: 1024, minimum: 0, maximum: 1099511627776,
          unit: 'bytes/s', transports: ['tcp'], live: true, help: 'The rate an upload keeps up; 0: none.' },
        { name: 'min_rate_window_s', type: 'integer', default: 60, minimum: 1, maximum: 86400, unit: 's',
          transports: ['tcp'], live: true, help: 'The window the rate is measured over.' },
      ],
    },
    {
      name: 'date',
      help: 'Answers with the date and time.',
      transports: ['tcp', 'udp'],
      models: ['sequential', 'thread', 'pool', 'event', 'process', 'uring'],
      counters: [],
      options: [
        { name: 'format', type: 'string', default: '%a %b %e %H:%M:%S %Z %Y', transports: ['tcp', 'udp'],
          live: true, help: 'strftime conversions, as date prints.' },
        { name: 'timezone', type: 'string', default: 'local', transports: ['tcp', 'udp'], live: true,
          help: 'local, UTC or an IANA name such as Europe/Rome.' },
      ],
    },
    {
      name: 'echo',
      help: 'Sends back what it receives.',
      transports: ['tcp', 'udp'],
      models: ['sequential', 'thread', 'pool', 'event', 'process', 'uring'],
      counters: [],
      options: [
        { name: 'mode', type: 'string', default: 'stream', choices: ['stream', 'once'], transports: ['tcp'],
          live: true, help: 'stream: echo until the client closes; once: one message, then close.' },
        { name: 'max_datagram', type: 'integer', default: 65507, minimum: 1, maximum: 65507, unit: 'bytes',
          transports: ['udp'], live: true, help: 'Longer datagrams are dropped.' },
      ],
    },
  ],
};

/**
 * Routes GET /api/v1/services (and /services/NAME) of the browser context: the daemon's answer
 * when it has the route, else SERVICES. used() tells whether SERVICES stood in.
 */
export async function servicesFallback(context) {
  let stoodIn = false;
  await context.route(/\/api\/v1\/services(\/[^/?#]+)?(\?.*)?$/, async (route) => {
    let res;
    try {
      res = await route.fetch();
    } catch {
      return route.abort();
    }
    if (res.status() !== 404 || route.request().method() !== 'GET') return route.fulfill({ response: res });
    const name = /\/services\/([^/?#]+)/.exec(route.request().url())?.[1];
    const body = name ? SERVICES.services.find((s) => s.name === decodeURIComponent(name)) : SERVICES;
    if (!body) return route.fulfill({ response: res });
    stoodIn = true;
    return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
  });
  return { used: () => stoodIn };
}
