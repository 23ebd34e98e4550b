// The REST API of the daemon, as the dashboard uses it. Every failure is thrown as an
// ApiError (the daemon answered with an error: status, detail and field from its
// problem+json) or a NetworkError (no answer at all).

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

function report(ok) {
  for (const fn of listeners) fn(ok);
}

/**
 * Sends a request; resolves to the parsed JSON body (null for 204). `timeoutMs` aborts a
 * request that hangs, which counts as no answer.
 */
export async function request(method, path, { body, contentType = 'application/json', timeoutMs = 10000 } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = contentType;
    init.body = JSON.stringify(body);
  }
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  init.signal = ctrl.signal;
  let res;
  let text;
  try {
    res = await fetch(path, init);
    text = await res.text();
  } catch (e) {
    report(false);
    throw new NetworkError(e);
  } finally {
    clearTimeout(timer);
  }
  report(true);
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) throw new ApiError(res.status, data || { title: res.statusText, detail: text.trim() });
  return data;
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
};
