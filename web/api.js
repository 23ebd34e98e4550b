// The REST API of the daemon, as the dashboard uses it. Every failure is thrown as an
// ApiError (the daemon answered with an error: status, detail and field from its
// problem+json) or a NetworkError (no answer at all).
//
// A daemon started with --token-file answers 401 to requests without its bearer token. The
// token the user gives is kept in sessionStorage (this tab only, until it is closed) and sent as
// "Authorization: Bearer" on every request; a 401 asks for it again through the handler that
// setAuthHandler() installs, then the request is sent once more.

export const API = '/api/v1';

export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.title = p.title || '';
    this.detail = p.detail || p.title || `HTTP ${status}`;
    this.field = typeof p.field === 'string' ? p.field : null;
    this.listener = typeof p.listener === 'string' ? p.listener : null;
  }
}

export class NetworkError extends Error {
  constructor(cause) {
    super('the daemon cannot be reached');
    this.name = 'NetworkError';
    this.cause = cause;
  }
}

const listeners = new Set();

/** Calls fn(true) after every answer and fn(false) after every request that got none. */
export function onReachability(fn) {
  listeners.add(fn);
}

/** Tells the onReachability() listeners whether a request got an answer (ok) or none. */
export function report(ok) {
  for (const fn of listeners) fn(ok);
}

/* ---- the bearer token ---- */

const TOKEN_KEY = 'sockserv.token';
let memoryToken = null; // when sessionStorage is unavailable

/** The token this tab holds, or null. */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return memoryToken;
  }
}

/** Keeps token (a string) for this tab; null forgets it. */
export function setToken(token) {
  memoryToken = token || null;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // private mode without storage: memoryToken holds it for this page
  }
}

let authHandler = null;
let authPending = null;

/**
 * fn(reason) is called when the daemon answers 401 ('missing': no token held, 'refused': the
 * token held was refused); it resolves to true once a new token is held, false if the user
 * declined. Concurrent 401s share one call.
 */
export function setAuthHandler(fn) {
  authHandler = fn;
}

/**
 * After a 401 ('missing' or 'refused'): asks the handler for a token; resolves to true once a
 * new one is held.
 */
export function askForToken(reason) {
  if (!authHandler) return Promise.resolve(false);
  if (!authPending) {
    authPending = Promise.resolve(authHandler(reason)).catch(() => false).finally(() => {
      authPending = null;
    });
  }
  return authPending;
}

/**
 * Whether the daemon takes token: 'ok', 'refused' (401) or 'unreachable'. Asks for the
 * listeners, which need it.
 */
export async function checkToken(token) {
  try {
    const res = await fetch(`${API}/listeners`, {
      headers: { Accept: 'application/json', Authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
    await res.arrayBuffer();
    report(true);
    return res.status === 401 ? 'refused' : 'ok';
  } catch {
    report(false);
    return 'unreachable';
  }
}

/** headers with the token this tab holds as "Authorization: Bearer", if any. */
export function authHeaders(headers) {
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/* ---- requests ---- */

async function send(method, path, {
  body, contentType, timeoutMs, headers: extra = {},
}) {
  const headers = authHeaders({ ...extra, Accept: 'application/json, application/problem+json' });
  const sent = headers.Authorization ? headers.Authorization.slice('Bearer '.length) : null;
  const init = { method, headers, cache: 'no-store' };
  // POST, PUT and PATCH always say JSON, with or without a body: the daemon refuses them
  // otherwise (what keeps other sites' pages from sending them).
  if (body !== undefined || method === 'POST' || method === 'PUT' || method === 'PATCH') {
    headers['Content-Type'] = contentType;
  }
  if (body !== undefined) init.body = JSON.stringify(body);
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  init.signal = ctrl.signal;
  try {
    const res = await fetch(path, init);
    const text = await res.text();
    return { res, text, sent };
  } catch (e) {
    report(false);
    throw new NetworkError(e);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sends a request; resolves to { data, etag }: the parsed JSON body (null for 204) and the
 * answer's ETag header (null without one). `headers` are sent too (If-Match). `timeoutMs`
 * aborts a request that hangs, which counts as no answer. An ApiError thrown carries the
 * answer's ETag as `etag` (a 412's is the current one).
 */
export async function requestWithETag(method, path, {
  body, contentType = 'application/json', timeoutMs = 10000, headers = {},
} = {}) {
  const opts = {
    body, contentType, timeoutMs, headers,
  };
  let { res, text, sent } = await send(method, path, opts);
  report(true);
  if (res.status === 401) {
    // A token other than the one sent may have arrived meanwhile: try that before asking.
    const held = getToken();
    if ((held && held !== sent) || (await askForToken(sent ? 'refused' : 'missing'))) {
      ({ res, text } = await send(method, path, opts));
      report(true);
    }
  }
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  const etag = res.headers.get('ETag');
  if (!res.ok) {
    const err = new ApiError(res.status, data || { title: res.statusText, detail: text.trim() });
    err.etag = etag;
    throw err;
  }
  return { data, etag };
}

/**
 * Sends a request; resolves to the parsed JSON body (null for 204). `timeoutMs` aborts a
 * request that hangs, which counts as no answer.
 */
export async function request(method, path, opts = {}) {
  return (await requestWithETag(method, path, opts)).data;
}

/** The revision an ETag such as "r12" names, or null. */
export function revisionOf(etag) {
  const m = /^"r(\d+)"$/.exec(etag || '');
  return m ? Number(m[1]) : null;
}

const enc = encodeURIComponent;

export const api = {
  health: () => request('GET', `${API}/health`, { timeoutMs: 4000 }),
  list: () => request('GET', `${API}/listeners`, { timeoutMs: 4000 }),
  create: (body) => request('POST', `${API}/listeners`, { body }),
  patch: (id, body) => request('PATCH', `${API}/listeners/${enc(id)}`, {
    body, contentType: 'application/merge-patch+json',
  }),
  start: (id) => request('POST', `${API}/listeners/${enc(id)}/start`),
  stop: (id) => request('POST', `${API}/listeners/${enc(id)}/stop`),
  remove: (id) => request('DELETE', `${API}/listeners/${enc(id)}`),
  files: (id) => request('GET', `${API}/listeners/${enc(id)}/files`),
  fileUrl: (id, name) => `${API}/listeners/${enc(id)}/files/${enc(name)}`,
  services: () => request('GET', `${API}/services`),
  /** { data: the configuration, etag } */
  config: () => requestWithETag('GET', `${API}/config`),
  revisions: (limit) => request('GET', `${API}/config/revisions?limit=${limit}`),
  /** Restores revision n if the configuration's ETag is still etag; dryRun: what it would do. */
  restore: (n, etag, dryRun) => requestWithETag('POST',
    `${API}/config/revisions/${enc(n)}/restore${dryRun ? '?dry_run=true' : ''}`,
    { headers: etag ? { 'If-Match': etag } : {} }),
  /** What create(body) and patch(id, body) would do: { dry_run, revision, diff }. */
  previewCreate: (body) => request('POST', `${API}/listeners?dry_run=true`, { body }),
  previewPatch: (id, body) => request('PATCH', `${API}/listeners/${enc(id)}?dry_run=true`, {
    body, contentType: 'application/merge-patch+json',
  }),
};

/* ---- the event stream with a token ---- */

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

/**
 * An EventSource over fetch(), which can send the Authorization header that EventSource
 * cannot. It behaves as EventSource does: 'open', named events and 'message' as MessageEvents,
 * 'error'; an answer other than 200 text/event-stream fails it (CLOSED); a stream that ends or
 * breaks is opened again after the retry delay, with Last-Event-ID.
 */
export class TokenEventSource extends EventTarget {
  constructor(url) {
    super();
    this.url = new URL(url, location.href).href;
    this.readyState = CONNECTING;
    this.withCredentials = false;
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this.lastEventId = '';
    this.retryMs = 2000;
    this.ctrl = null;
    this.timer = null;
    this.connect();
  }

  close() {
    this.readyState = CLOSED;
    clearTimeout(this.timer);
    if (this.ctrl) this.ctrl.abort();
  }

  fire(event) {
    this.dispatchEvent(event);
    const handler = this[`on${event.type}`];
    if (typeof handler === 'function') handler.call(this, event);
  }

  retry() {
    if (this.readyState === CLOSED) return;
    this.readyState = CONNECTING;
    this.fire(new Event('error'));
    if (this.readyState === CLOSED) return;
    this.timer = setTimeout(() => this.connect(), this.retryMs);
  }

  async connect() {
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const headers = authHeaders({ Accept: 'text/event-stream' });
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    let res;
    try {
      res = await fetch(this.url, { headers, cache: 'no-store', signal: ctrl.signal });
    } catch {
      this.retry();
      return;
    }
    if (this.readyState === CLOSED) {
      ctrl.abort();
      return;
    }
    const type = (res.headers.get('content-type') || '').split(';')[0].trim().toLowerCase();
    if (res.status !== 200 || type !== 'text/event-stream' || !res.body) {
      this.status = res.status;
      ctrl.abort();
      this.readyState = CLOSED;
      this.fire(new Event('error'));
      return;
    }
    this.readyState = OPEN;
    this.fire(new Event('open'));
    try {
      await this.read(res.body);
    } catch {
      // cut: opened again below
    }
    this.retry();
  }

  /* Parses the stream as the HTML standard says (event, data, id, retry; blank line ends). */
  async read(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let event = { type: '', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.readyState === CLOSED) return;
      buf += decoder.decode(value, { stream: true });
      let at;
      while ((at = buf.search(/\r\n|\r|\n/)) >= 0) {
        // A lone CR at the end may be the first half of CRLF: wait for more.
        if (buf[at] === '\r' && at === buf.length - 1) break;
        const line = buf.slice(0, at);
        buf = buf.slice(at + (buf.startsWith('\r\n', at) ? 2 : 1));
        if (line === '') {
          if (event.id !== null) this.lastEventId = event.id;
          if (event.data.length) {
            this.fire(new MessageEvent(event.type || 'message', {
              data: event.data.join('\n'), lastEventId: this.lastEventId, origin: location.origin,
            }));
          }
          event = { type: '', data: [], id: null };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event.type = value;
        else if (field === 'data') event.data.push(value);
        else if (field === 'id' && !value.includes('\0')) event.id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
      }
    }
  }
}

TokenEventSource.CONNECTING = CONNECTING;
TokenEventSource.OPEN = OPEN;
TokenEventSource.CLOSED = CLOSED;

const NativeEventSource = globalThis.EventSource;

/**
 * Opens the event stream at url: the browser's EventSource while no token is held, else a
 * TokenEventSource. Used with `new`, as EventSource is (it carries the same constants).
 */
export function EventStream(url) {
  if (!getToken() && typeof NativeEventSource === 'function') return new NativeEventSource(url);
  return new TokenEventSource(url);
}

EventStream.CONNECTING = CONNECTING;
EventStream.OPEN = OPEN;
EventStream.CLOSED = CLOSED;
