// The events panel: what happened lately (listeners created, changed, deleted, their state
// changes and why, configuration revisions, backups stored, failed or pruned), newest first, as
// sentences. Opening it reads GET /api/v1/events/recent; while it is open, the event stream's
// events (live.js, never the metrics ticks) are added at the top, 50 at most.

import { API, ApiError, request } from './api.js';
import { setText } from './dom.js';
import { formatBytes, formatClock, formatTimestamp } from './format.js';
import { model } from './store.js';

/** How many events the panel lists. */
export const EVENTS_SHOWN = 50;

/* "echo TCP on 127.0.0.1:7007" for a listener resource. */
function listenerWhere(l) {
  const bound = Array.isArray(l?.status?.bound) && l.status.bound.length ? l.status.bound.join(', ') : null;
  const addr = l?.address ?? '::';
  const configured = addr.includes(':') ? `[${addr}]:${l?.port}` : `${addr}:${l?.port}`;
  return `${l?.service ?? '?'} ${(l?.transport ?? '').toUpperCase()} on ${bound || configured}`;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** The sentence that says what event ev ({ event, data }) means. */
export function describeEvent(ev) {
  const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
  const on = d.listener ? ` (listener ${d.listener})` : '';
  switch (ev.event) {
    case 'listener.created':
      return `listener ${d.id} created: ${listenerWhere(d)}${d.enabled === false ? ', disabled' : ''}`;
    case 'listener.changed':
      return `listener ${d.id} changed: ${d.enabled === false ? 'disabled' : 'enabled'}, ${listenerWhere(d)}`;
    case 'listener.deleted':
      return `listener ${d.id} deleted`;
    case 'listener.state': {
      const draining = Array.isArray(d.draining) ? d.draining.length : 0;
      if (d.previous && d.previous === d.state && !d.error) {
        return `listener ${d.id} ${d.state}: ${draining ? `${plural(draining, 'runner', 'runners')} draining` : 'drain over'}`;
      }
      let s = `listener ${d.id} state ${d.previous ? `${d.previous} → ` : ''}${d.state}`;
      if (d.error) s += `: ${d.error}`;
      else if (d.state === 'running' && Array.isArray(d.bound) && d.bound.length) s += ` on ${d.bound.join(', ')}`;
      if (draining) s += `; ${plural(draining, 'runner', 'runners')} draining`;
      return s;
    }
    case 'config.revision': {
      const by = d.origin?.interface || d.source;
      return `config revision ${d.revision}: ${d.summary || 'no change'}${by ? ` (${by})` : ''}`;
    }
    case 'backup.stored':
      return `backup stored ${d.name} v${d.version} (${formatBytes(d.size)}${d.verified === false ? ', unverified' : ''})${on}`;
    case 'backup.failed':
      return `backup failed ${d.name}: ${d.reason}${d.detail ? ` — ${d.detail}` : ''}${on}`;
    case 'backup.pruned':
      return `backup pruned ${d.name}: ${plural(d.versions, 'older version', 'older versions')}, ${formatBytes(d.bytes)}${on}`;
    default: {
      const text = JSON.stringify(ev.data);
      return text && text.length > 160 ? `${text.slice(0, 159)}…` : text || '';
    }
  }
}

function eventItem(ev) {
  const li = document.createElement('li');
  li.className = 'event';
  li.dataset.event = ev.event;
  li.dataset.id = String(ev.id);
  if (ev.event === 'backup.failed' || (ev.event === 'listener.state' && ev.data?.error)) li.dataset.bad = '';
  const t = Date.parse(ev.time);
  const time = document.createElement('time');
  time.className = 'event-time';
  if (!Number.isNaN(t)) {
    time.dateTime = new Date(t).toISOString();
    time.textContent = formatClock(t);
    time.title = formatTimestamp(ev.time);
  } else {
    time.textContent = '—';
  }
  const type = document.createElement('span');
  type.className = 'event-type';
  type.textContent = ev.event;
  const text = document.createElement('span');
  text.className = 'event-text';
  text.textContent = describeEvent(ev);
  li.append(time, type, text);
  return li;
}

export class EventsPanel {
  /** button opens the panel (focus returns to it on close); dialog holds #events-list etc. */
  constructor({ button, dialog }) {
    this.button = button;
    this.dialog = dialog;
    this.list = dialog.querySelector('#events-list');
    this.status = dialog.querySelector('#events-status');
    this.events = new Map(); // id -> { id, event, time, data }
    this.gen = 0;
    this.problem = '';
    this.loaded = false;
    button.addEventListener('click', () => this.open());
    dialog.querySelector('#events-close').addEventListener('click', () => dialog.close());
    dialog.querySelector('#events-refresh').addEventListener('click', () => this.load());
    dialog.addEventListener('close', () => {
      this.gen++;
      this.button.setAttribute('aria-expanded', 'false');
      this.button.focus();
    });
  }

  open() {
    if (this.dialog.open) return;
    this.events.clear();
    this.render();
    this.dialog.showModal();
    this.button.setAttribute('aria-expanded', 'true');
    this.load();
  }

  /** Reads the last events again; events of the stream that arrive meanwhile are kept. */
  async load() {
    const gen = ++this.gen;
    this.loaded = false;
    this.problem = '';
    this.renderStatus();
    try {
      const body = await request('GET', `${API}/events/recent?limit=${EVENTS_SHOWN}`);
      if (gen !== this.gen || !this.dialog.open) return;
      for (const ev of Array.isArray(body?.events) ? body.events : []) {
        if (ev && typeof ev.event === 'string' && ev.event !== 'metrics') this.events.set(Number(ev.id) || 0, ev);
      }
    } catch (e) {
      if (gen !== this.gen || !this.dialog.open) return;
      this.problem = e instanceof ApiError && e.status === 404
        ? 'This daemon keeps no list of recent events (GET /api/v1/events/recent answered 404): only the events that happen while this panel is open are listed.'
        : `The recent events cannot be read: ${e.message}`;
    }
    this.loaded = true;
    this.render();
  }

  /** An event of the stream: listed at the top while the panel is open. */
  noted(ev) {
    if (!this.dialog.open) return;
    let { id } = ev;
    if (!id) id = Math.max(0, ...this.events.keys()) + 0.5; // no id: newer than all known
    this.events.set(id, { ...ev, id });
    this.render();
  }

  renderStatus() {
    let text;
    if (!this.loaded) text = 'Reading the last events…';
    else if (this.problem) text = this.problem;
    else if (this.events.size === 0) text = 'No event yet in this run of the daemon.';
    else text = `The last ${plural(Math.min(this.events.size, EVENTS_SHOWN), 'event', 'events')}, newest first.`;
    if (this.loaded) {
      text += model.mode === 'stream'
        ? ' New ones appear as they happen.'
        : ' New ones appear only with the live event stream; Refresh reads the list again.';
    }
    setText(this.status, text);
    this.status.classList.toggle('error', !!this.problem);
  }

  render() {
    const ids = [...this.events.keys()].sort((a, b) => b - a);
    for (const id of ids.slice(EVENTS_SHOWN)) this.events.delete(id);
    const shown = ids.slice(0, EVENTS_SHOWN);
    const have = new Map([...this.list.children].map((li) => [li.dataset.id, li]));
    const items = shown.map((id) => have.get(String(id)) || eventItem(this.events.get(id)));
    const same = items.length === this.list.children.length && items.every((li, i) => this.list.children[i] === li);
    if (!same) this.list.replaceChildren(...items);
    this.renderStatus();
  }
}
