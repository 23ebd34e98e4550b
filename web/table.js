// The listeners table: one row per listener, sorted by ID, updated in place (a row keeps its
// element, a cell its text unless the value changed), and the state of a listener as words.

import { byId, setNumber, setText } from './dom.js';
import {
  formatAddress, formatBytes, formatClock, formatInt, formatRate, formatTimestamp,
} from './format.js';
import { rateOf } from './rates.js';
import { model, refusalOf } from './store.js';

const STATE_ICONS = { running: '●', starting: '◔', stopping: '◔', stopped: '○', failed: '✕' };

/** "3 connections" from the draining runners' counts (null: not told apart), or ''. */
export function drainingText(draining) {
  if (!Array.isArray(draining) || draining.length === 0) return '';
  const known = draining.filter((d) => Number.isFinite(d?.connections));
  const n = known.reduce((a, d) => a + d.connections, 0);
  const runners = draining.length === 1 ? '' : `${draining.length} runners, `;
  if (known.length === 0) return `${runners}their connections`;
  return `${runners}${formatInt(n)} connection${n === 1 ? '' : 's'}`;
}

/* The latest deadline of the draining runners (ms), or NaN. */
function drainDeadline(draining) {
  return Math.max(...draining.map((d) => Date.parse(d?.deadline)).filter((t) => !Number.isNaN(t)));
}

/*
 * Fills el with the state as text (an icon beside it, not only colour) and the reason: the
 * daemon's (status.error), or why it refused this page's last start or stop (refusal). With
 * extras (the table's rows), a failure also says since when, and draining runners what is
 * left of them and until when.
 */
export function renderState(el, status, enabled, refusal = '', extras = false) {
  const state = status?.state || 'unknown';
  const error = status?.error || '';
  const since = extras && (error || state === 'failed') ? Date.parse(status?.since) : NaN;
  const draining = extras && Array.isArray(status?.draining) ? status.draining : [];
  const key = `${state}|${error}|${enabled}|${refusal}|${since}|${JSON.stringify(draining)}`;
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.dataset.state = state;
  const badge = document.createElement('span');
  badge.className = `state state-${state}`;
  const icon = document.createElement('span');
  icon.className = 'state-icon';
  icon.setAttribute('aria-hidden', 'true');
  icon.textContent = STATE_ICONS[state] || '?';
  const text = document.createElement('span');
  text.className = 'state-text';
  text.textContent = state;
  badge.append(icon, text);
  const parts = [badge];
  if (error) {
    const reason = document.createElement('span');
    reason.className = 'state-reason';
    reason.textContent = error;
    parts.push(reason);
  }
  if (refusal) {
    const reason = document.createElement('span');
    reason.className = 'state-reason refusal';
    reason.textContent = refusal;
    parts.push(reason);
  } else if (!error && state === 'stopped' && enabled) {
    const reason = document.createElement('span');
    reason.className = 'state-reason quiet';
    reason.textContent = 'enabled, not running';
    parts.push(reason);
  }
  if (!Number.isNaN(since)) {
    const note = document.createElement('span');
    note.className = 'state-since';
    note.textContent = `since ${formatClock(since)}`;
    note.title = formatTimestamp(status.since);
    parts.push(note);
  }
  if (draining.length) {
    const note = document.createElement('span');
    note.className = 'state-drain';
    const until = drainDeadline(draining);
    note.textContent = `draining ${drainingText(draining)}${Number.isFinite(until) ? ` · until ${formatClock(until)}` : ''}`;
    note.title = draining.map((d) => `${d.bound}: ${d.connections ?? 'unknown'} connections, cut at ${formatTimestamp(d.deadline)}`).join('\n');
    parts.push(note);
  }
  el.replaceChildren(...parts);
}

/** The bound addresses as text, or the configured one marked as not bound. */
export function boundText(l) {
  const bound = l.status?.bound;
  if (Array.isArray(bound) && bound.length) return { text: bound.join(', '), bound: true };
  return { text: `${formatAddress(l.address, l.port)} (not bound)`, bound: false };
}

/* The bound addresses, or the configured one marked as not bound. */
function renderBound(td, l) {
  const bound = l.status?.bound;
  const isBound = Array.isArray(bound) && bound.length > 0;
  const text = isBound ? bound.join(', ') : formatAddress(l.address, l.port);
  const tls = l.status?.tls && typeof l.status.tls === 'object' && l.status.tls.enabled === true;
  const key = `${isBound}|${text}|${tls}`;
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  td.classList.toggle('unbound', !isBound);
  if (isBound) {
    td.textContent = text;
    if (tls) {
      // The listener speaks TLS (status.tls): its certificate's subject and end as a hint.
      const badge = document.createElement('span');
      const t = l.status.tls;
      badge.className = 'tls-badge';
      badge.textContent = 'TLS';
      badge.title = [t.subject, t.not_after ? `until ${t.not_after}` : '', t.client_auth ? 'client certificates required' : '']
        .filter(Boolean).join(', ');
      td.append(badge);
    }
    return;
  }
  const note = document.createElement('span');
  note.className = 'bound-note';
  note.textContent = 'configured, not bound';
  td.replaceChildren(text, note);
}

const COLUMNS = [
  { key: 'id', label: 'ID' },
  { key: 'service', label: 'Service' },
  { key: 'transport', label: 'Transport' },
  { key: 'bound', label: 'Address' },
  { key: 'model', label: 'Model' },
  { key: 'state', label: 'State' },
  { key: 'active', label: 'Active connections', num: true },
  { key: 'bytes_in', label: 'Bytes in', num: true },
  { key: 'rate_in', label: 'In / s', num: true },
  { key: 'bytes_out', label: 'Bytes out', num: true },
  { key: 'rate_out', label: 'Out / s', num: true },
];

const rows = new Map();
let onSelect = () => {};

/** select(id, moveFocus) is called when a row is chosen (its ID button, or a click on it). */
export function initTable(select) {
  onSelect = select;
}

function createRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.id = id;
  const cells = {};
  for (const col of COLUMNS) {
    const td = document.createElement(col.key === 'id' ? 'th' : 'td');
    if (col.key === 'id') td.scope = 'row';
    td.className = `c-${col.key}${col.num ? ' num' : ''}`;
    td.dataset.label = col.label;
    cells[col.key] = td;
    tr.append(td);
  }
  const link = document.createElement('button');
  link.type = 'button';
  link.className = 'row-link';
  link.textContent = id;
  link.setAttribute('aria-controls', 'details');
  link.setAttribute('aria-expanded', 'false');
  link.addEventListener('click', () => onSelect(id, true));
  cells.id.append(link);
  cells.link = link;
  tr.addEventListener('click', (e) => {
    if (e.target.closest('button, a, input, select')) return;
    onSelect(id, false);
  });
  tr.cells_ = cells;
  return tr;
}

function updateRow(tr, l) {
  const c = tr.cells_;
  const m = l.metrics || {};
  const r = rateOf(l.id);
  setText(c.service, l.service ?? '');
  setText(c.transport, (l.transport ?? '').toUpperCase());
  renderBound(c.bound, l);
  setText(c.model, l.model ?? '');
  renderState(c.state, l.status, l.enabled, refusalOf(l), true);
  setNumber(c.active, m.connections_active, formatInt);
  setNumber(c.bytes_in, m.bytes_in, formatBytes, `${formatInt(m.bytes_in)} bytes`);
  setNumber(c.rate_in, r ? r.bytes_in : null, formatRate);
  setNumber(c.bytes_out, m.bytes_out, formatBytes, `${formatInt(m.bytes_out)} bytes`);
  setNumber(c.rate_out, r ? r.bytes_out : null, formatRate);
  const selected = model.selected === l.id;
  tr.classList.toggle('selected', selected);
  c.link.setAttribute('aria-expanded', String(selected));
}

export function renderTable() {
  const tbody = byId('listeners-body');
  const ids = [...model.listeners.keys()].sort();
  for (const [id, tr] of rows) {
    if (!model.listeners.has(id)) {
      tr.remove();
      rows.delete(id);
    }
  }
  ids.forEach((id, i) => {
    let tr = rows.get(id);
    if (!tr) {
      tr = createRow(id);
      rows.set(id, tr);
    }
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    updateRow(tr, model.listeners.get(id));
  });
  byId('empty').hidden = ids.length > 0 || model.reachable === null;
}

/** The ID button of listener id's row, or null. */
export function rowLink(id) {
  return rows.get(id)?.cells_.link || null;
}
