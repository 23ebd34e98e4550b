// Saving a stored file that needs the access token. A plain link cannot send the
// "Authorization: Bearer" header, so the download goes through a service worker
// (download-sw.js, scope /download/): the page hands it the file's URL and the token in a
// message (never in a URL), then points a hidden frame at /download/ID/NAME; the worker
// answers that navigation by fetching the file with the token and passing the response's body
// through as an attachment. The browser's download manager writes it to disk as it arrives:
// the file is never held whole in memory.
//
// Where no service worker can run (a page outside a secure context), the page asks the daemon
// for a download ticket instead (POST .../ticket, with the token): a URL good once, for a
// minute, for that file alone, which a plain link hands to the download manager. No path holds
// the file in the page.

import {
  ApiError, NetworkError, askForToken, authHeaders, getToken, report,
} from './api.js';

const WORKER_URL = '/download-sw.js';
const SCOPE = '/download/';
const ANSWER_MS = 30000;

let worker = null;

/* The active download worker, or null where there can be none. */
async function registerWorker() {
  // Browsers run service workers only in a secure context: https, or http to a loopback
  // address (127.0.0.0/8, ::1, localhost). A dashboard opened over plain http on another
  // address has none and takes a download ticket instead (ticketDownload()).
  if (!globalThis.isSecureContext || !('serviceWorker' in navigator)) return null;
  const reg = await navigator.serviceWorker.register(WORKER_URL, { scope: SCOPE });
  const sw = reg.installing || reg.waiting || reg.active;
  if (!sw) return null;
  if (sw.state === 'activated') return sw;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the download worker did not start')), ANSWER_MS);
    sw.addEventListener('statechange', () => {
      if (sw.state === 'activated' || sw.state === 'redundant') {
        clearTimeout(timer);
        if (sw.state === 'activated') resolve();
        else reject(new Error('the download worker was replaced'));
      }
    });
  });
  return sw;
}

function downloadWorker() {
  if (!worker) {
    worker = registerWorker().catch(() => {
      worker = null;
      return null;
    });
  }
  return worker;
}

/** Starts registering the download worker, so that the first download does not wait for it. */
export function prepareDownloads() {
  if (getToken()) downloadWorker();
}

/*
 * Hands the download to sw and points a hidden frame at it; resolves to the daemon's answer
 * as the worker saw it: { status, statusText, problem } (status 0: no answer).
 */
function workerDownload(sw, url, name) {
  return new Promise((resolve, reject) => {
    const id = crypto.randomUUID();
    const channel = new MessageChannel();
    let frame = null;
    const timer = setTimeout(() => {
      channel.port1.close();
      frame?.remove();
      reject(new Error('the download did not start'));
    }, ANSWER_MS);
    channel.port1.onmessage = (e) => {
      const m = e.data || {};
      if (m.type === 'ready') {
        frame = document.createElement('iframe');
        frame.hidden = true;
        frame.title = `Download of ${name}`;
        frame.src = `${SCOPE}${id}/${encodeURIComponent(name)}`;
        document.body.append(frame);
      } else if (m.type === 'answer') {
        clearTimeout(timer);
        channel.port1.close();
        // A frame whose download runs stays (removing it could cut the download short).
        if (!(m.status >= 200 && m.status < 300)) frame?.remove();
        resolve(m);
      }
    };
    sw.postMessage({
      type: 'download', id, url: new URL(url, location.href).href, name, token: getToken(),
    }, [channel.port2]);
  });
}

/*
 * Where no service worker can run: a download ticket for the file (the token goes in the
 * POST's header), then a plain link to the ticket's URL, which the browser's download manager
 * streams to disk. Resolves as workerDownload() does, with the ticket's answer.
 */
async function ticketDownload(url, name) {
  const u = new URL(url, location.href);
  let res;
  try {
    res = await fetch(`${u.pathname}/ticket${u.search}`, {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'application/json, application/problem+json' }),
      cache: 'no-store',
    });
  } catch (e) {
    return { status: 0, error: e };
  }
  const body = await res.json().catch(() => null);
  if (res.status !== 201 || typeof body?.url !== 'string') {
    return { status: res.ok ? 500 : res.status, statusText: res.statusText, problem: body };
  }
  const a = document.createElement('a');
  a.href = new URL(body.url, location.href).href;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  return { status: 200 };
}

/**
 * Saves the file at url (same origin) as name, with the token this tab holds. A 401 asks for
 * the token again, once. Throws ApiError (the daemon refused) or NetworkError (no answer).
 */
export async function download(url, name) {
  for (let attempt = 0; ; attempt++) {
    const sw = await downloadWorker();
    const answer = sw ? await workerDownload(sw, url, name) : await ticketDownload(url, name);
    if (answer.status === 0) {
      report(false);
      throw new NetworkError(answer.error);
    }
    report(true);
    if (answer.status >= 200 && answer.status < 300) return;
    if (answer.status === 401 && attempt === 0 && (await askForToken('refused'))) continue;
    throw new ApiError(answer.status, answer.problem || { title: answer.statusText });
  }
}
