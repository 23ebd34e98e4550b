// What the page says about itself and the daemon: the notice (a passing message after an
// action), the connection banner, the feed's mode and the daemon's version and uptime.

import { ApiError, NetworkError, api } from './api.js';
import { byId, setText } from './dom.js';
import { formatClock, formatDuration } from './format.js';
import { POLL_INTERVAL_MS } from './live.js';
import { scheduleRender } from './render.js';
import { model } from './store.js';

let noticeTimer = null;

/** Shows text in the notice; kind 'info' goes after 10 s, 'error' stays. */
export function notice(text, kind = 'info') {
  const el = byId('notice');
  el.dataset.kind = kind;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (kind === 'info') noticeTimer = setTimeout(() => { el.hidden = true; }, 10000);
}

/** What went wrong, in words, from an ApiError, a NetworkError or anything else. */
export function describeFailure(e) {
  if (e instanceof ApiError) return e.detail;
  if (e instanceof NetworkError) return 'the daemon cannot be reached';
  return String(e?.message || e);
}

/** Where listener l is: "running on 127.0.0.1:7007", "failed: ...". */
export function where(l) {
  const st = l.status || {};
  if (st.state === 'running' && st.bound?.length) return `running on ${st.bound.join(', ')}`;
  if (st.error) return `${st.state}: ${st.error}`;
  return st.state || 'unknown state';
}

function bannerIcon(ch) {
  const s = document.createElement('span');
  s.className = 'banner-icon';
  s.setAttribute('aria-hidden', 'true');
  s.textContent = ch;
  return s;
}

function bannerText(t) {
  const s = document.createElement('span');
  s.textContent = t;
  return s;
}

let bannerTimer = null;

/** Whether the daemon answers: the banner says when it stops and when it is back. */
export function setReachable(ok) {
  if (ok === model.reachable) return;
  const was = model.reachable;
  model.reachable = ok;
  const banner = byId('banner');
  clearTimeout(bannerTimer);
  document.body.classList.toggle('offline', !ok);
  if (!ok) {
    model.downSince = Date.now();
    banner.dataset.state = 'down';
    banner.replaceChildren(bannerIcon('⚠'), bannerText(
      `The daemon at ${location.host} cannot be reached (since ${formatClock(model.downSince)}). `
      + `Retrying every ${POLL_INTERVAL_MS / 1000} s; the figures below are the last known.`));
    banner.hidden = false;
  } else if (was === false) {
    const gone = (Date.now() - model.downSince) / 1000;
    banner.dataset.state = 'back';
    banner.replaceChildren(bannerIcon('✓'), bannerText(
      `Connection restored at ${formatClock(Date.now())}: the daemon answers again (it was unreachable for ${formatDuration(gone)}).`));
    banner.hidden = false;
    bannerTimer = setTimeout(() => { banner.hidden = true; }, 10000);
    refreshHealth();
  }
  scheduleRender();
}

/** The feed's mode and the daemon's version, uptime and listener count, in the header. */
export function renderFeed() {
  const el = byId('feed-mode');
  let mode = model.mode;
  let text;
  if (model.reachable === false) {
    mode = 'offline';
    text = 'Offline: the daemon cannot be reached';
  } else if (mode === 'stream') {
    text = 'Live: event stream';
  } else if (mode === 'polling') {
    text = `Live: polling every ${POLL_INTERVAL_MS / 1000} s`;
  } else {
    text = 'Connecting…';
  }
  if (model.lastUpdate && mode !== 'offline') text += ` · updated ${formatClock(model.lastUpdate)}`;
  el.dataset.mode = mode;
  el.title = mode === 'polling'
    ? 'The daemon does not serve the event stream (GET /api/v1/events); the dashboard reads GET /api/v1/listeners instead and tries the stream again every 10 s.'
    : '';
  setText(byId('feed-mode-text'), text);

  const h = model.health;
  if (h && model.reachable === false) {
    setText(byId('daemon-info'), `sockserv ${h.version} at ${location.host} · not answering since ${formatClock(model.downSince)}`);
  } else if (h) {
    const up = h.uptime_seconds + (Date.now() - h.at) / 1000;
    setText(byId('daemon-info'), `sockserv ${h.version} at ${location.host} · up ${formatDuration(up)} · ${model.listeners.size} listener${model.listeners.size === 1 ? '' : 's'}`);
  }
}

/** Asks the daemon's version and uptime again. */
export async function refreshHealth() {
  try {
    const h = await api.health();
    model.health = { ...h, at: Date.now() };
    renderFeed();
  } catch {
    // the banner says it
  }
}
