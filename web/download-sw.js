// The dashboard's download worker (see download.js): streams a stored file that needs the
// access token to the browser's download manager. The page posts { type: 'download', id, url,
// name, token } with a MessagePort; the worker answers { type: 'ready' }, then the page's
// hidden frame asks for /download/ID/NAME. The worker fetches url with the token and answers
// that navigation with the file's body as an attachment, passed through as it arrives, and tells
// the page the daemon's status ({ type: 'answer', status, statusText, problem }).

const SCOPE = new URL('./download/', self.location).pathname;
const CLAIM_MS = 60000;

const pending = new Map(); // id -> { url, name, token, port, claimed() }

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('message', (e) => {
  const d = e.data;
  const port = e.ports[0];
  if (!d || d.type !== 'download' || typeof d.id !== 'string' || !port) return;
  // The token goes to this origin only.
  let url;
  try {
    url = new URL(d.url, self.location.href);
  } catch {
    return;
  }
  if (url.origin !== self.location.origin) return;
  let claimed;
  const done = new Promise((resolve) => { claimed = resolve; });
  const timer = setTimeout(() => {
    pending.delete(d.id);
    claimed();
  }, CLAIM_MS);
  pending.set(d.id, {
    url: url.href,
    name: String(d.name || 'download'),
    token: typeof d.token === 'string' ? d.token : null,
    port,
    claimed: () => {
      clearTimeout(timer);
      claimed();
    },
  });
  // Alive until the frame asks for it.
  e.waitUntil(done);
  port.postMessage({ type: 'ready' });
});

/* Content-Disposition for name: an ASCII fallback and the exact name (RFC 6266, RFC 8187). */
function disposition(name) {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const exact = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${exact}`;
}

async function pass(job) {
  let res;
  try {
    res = await fetch(job.url, {
      headers: job.token ? { Authorization: `Bearer ${job.token}` } : {},
      cache: 'no-store',
    });
  } catch {
    job.port.postMessage({ type: 'answer', status: 0 });
    return new Response(null, { status: 204 });
  }
  if (!res.ok) {
    const problem = await res.json().catch(() => null);
    job.port.postMessage({ type: 'answer', status: res.status, statusText: res.statusText, problem });
    // The frame stays as it was: nothing is saved.
    return new Response(null, { status: 204 });
  }
  job.port.postMessage({ type: 'answer', status: res.status });
  const headers = new Headers({
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': disposition(job.name),
    'Cache-Control': 'no-store',
  });
  const length = res.headers.get('Content-Length');
  if (length) headers.set('Content-Length', length);
  return new Response(res.body, { status: 200, headers });
}

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(SCOPE)) return;
  const id = url.pathname.slice(SCOPE.length).split('/')[0];
  const job = pending.get(id);
  if (!job) return; // unknown: the daemon answers it (404)
  pending.delete(id);
  job.claimed();
  e.respondWith(pass(job));
});
