// The sockserv dashboard: the listeners table, the details of one listener (charts, metrics,
// configuration, stored files), the actions, the connection banner, and the access token
// dialog.

import {
  api, ApiError, EventStream, NetworkError, checkToken, download, getToken, onReachability,
  setAuthHandler, setToken,
} from './api.js';
import { LiveFeed, POLL_INTERVAL_MS } from './live.js';
import { drawTimeChart } from './chart.js';
import { ListenerForm } from './form.js';
import {
  formatAddress, formatBytes, formatClock, formatDuration, formatInt, formatRate, formatTimestamp,
} from './format.js';

const HISTORY_MS = 5 * 60 * 1000;
const byId = (id) => document.getElementById(id);

const model = {
  listeners: new Map(), // id -> the listener resource, as last seen
  rates: new Map(), // id -> { bytes_in, bytes_out, connections } per second, or null
  samples: new Map(), // id -> counters of the last poll, to compute rates from
  history: new Map(), // id -> [{ t, in, out, active }], the last 5 minutes
  selected: null,
  reachable: null, // null until the first answer or failure
  downSince: 0,
  mode: 'connecting',
  lastUpdate: 0,
  health: null, // { version, uptime_seconds, listeners, at }
  // id -> why the daemon refused this page's last start or stop of it ("Start refused: bind
  // ...: Address already in use"): shown next to the listener until it runs, or an action or
  // an edit of it here succeeds.
  refusals: new Map(),
};

/* ---- the model ---- */

function pushHistory(id, t, rin, rout, active) {
  let h = model.history.get(id);
  if (!h) {
    h = [];
    model.history.set(id, h);
  }
  h.push({ t, in: rin, out: rout, active });
  const cut = t - HISTORY_MS - 10000;
  while (h.length && h[0].t < cut) h.shift();
}

function forget(id) {
  model.listeners.delete(id);
  model.refusals.delete(id);
  model.rates.delete(id);
  model.samples.delete(id);
  model.history.delete(id);
  if (model.selected === id) {
    closeDetails(false);
    notice(`Listener ${id} was deleted.`);
  }
}

function upsert(l) {
  if (!l || typeof l.id !== 'string') return;
  model.listeners.set(l.id, l);
  if (l.status?.state === 'running') model.refusals.delete(l.id);
  touched();
}

/*
 * What this page did itself, so that an answer or event that left the daemon before it
 * (a poll in flight, a change event still queued) does not undo it for a moment.
 */
const localChange = new Map(); // id -> when an action's answer here created or changed it
const localDelete = new Map(); // id -> when this page deleted it
const STALE_MS = 5000;

function upsertLocal(l) {
  localChange.set(l.id, Date.now());
  model.refusals.delete(l.id);
  localDelete.delete(l.id);
  upsert(l);
}

function forgetLocal(id) {
  localDelete.set(id, Date.now());
  localChange.delete(id);
  forget(id);
}

/* A created or changed event of the stream. */
function upsertEvent(l, kind) {
  if (!l || typeof l.id !== 'string') return;
  if (kind === 'created') localDelete.delete(l.id);
  else if (Date.now() - (localDelete.get(l.id) ?? -Infinity) < STALE_MS) return;
  upsert(l);
}

/* The whole set, as the daemon had it at askedMs. */
function replaceAll(list, askedMs) {
  const seen = new Set();
  for (const l of list) {
    if (!l || typeof l.id !== 'string') continue;
    if ((localDelete.get(l.id) ?? -Infinity) >= askedMs) continue;
    seen.add(l.id);
    model.listeners.set(l.id, l);
  }
  for (const id of [...model.listeners.keys()]) {
    if (!seen.has(id) && (localChange.get(id) ?? -Infinity) < askedMs) forget(id);
  }
  touched();
}

/* A sample from polling: rates are the counters' differences over the time between polls. */
function applyPoll(list, t, askedMs) {
  for (const l of list) {
    if ((localDelete.get(l.id) ?? -Infinity) >= askedMs) continue;
    const m = l.metrics || {};
    const cur = {
      t,
      bytes_in: m.bytes_in ?? 0,
      bytes_out: m.bytes_out ?? 0,
      connections_total: m.connections_total ?? 0,
    };
    const prev = model.samples.get(l.id);
    let rates = null;
    if (prev && t > prev.t && cur.bytes_in >= prev.bytes_in && cur.bytes_out >= prev.bytes_out) {
      const dt = (t - prev.t) / 1000;
      rates = {
        bytes_in: (cur.bytes_in - prev.bytes_in) / dt,
        bytes_out: (cur.bytes_out - prev.bytes_out) / dt,
        connections: Math.max(0, cur.connections_total - prev.connections_total) / dt,
      };
    }
    model.samples.set(l.id, cur);
    model.rates.set(l.id, rates);
    pushHistory(l.id, t, rates ? rates.bytes_in : null, rates ? rates.bytes_out : null,
      m.connections_active ?? 0);
  }
  replaceAll(list, askedMs);
}

/* A metrics tick of the event stream: counters and rates of every listener. */
function applyMetrics(ev) {
  const t = Date.now();
  const all = ev && typeof ev.listeners === 'object' && ev.listeners ? ev.listeners : {};
  for (const [id, m] of Object.entries(all)) {
    const l = model.listeners.get(id);
    if (!l || !m) continue;
    const { rates, ...counters } = m;
    l.metrics = counters;
    model.rates.set(id, rates || null);
    pushHistory(id, t, rates ? rates.bytes_in : null, rates ? rates.bytes_out : null,
      counters.connections_active ?? 0);
  }
  touched();
}

function applyState(ev) {
  const l = ev && model.listeners.get(ev.id);
  if (!l) return;
  l.status = {
    ...(l.status || {}),
    state: ev.state,
    bound: Array.isArray(ev.bound) ? ev.bound : [],
    error: ev.error ?? null,
    since: ev.since ?? l.status?.since,
  };
  if (ev.state === 'running') model.refusals.delete(ev.id);
  touched();
}

function touched() {
  model.lastUpdate = Date.now();
  scheduleRender();
}

/* ---- rendering ---- */

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderTable();
    renderDetails();
    renderFeed();
  });
}

function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

function setNumber(td, value, format, title) {
  const v = value === null || value === undefined || !Number.isFinite(value) ? '' : String(value);
  if (td.dataset.value !== v) td.dataset.value = v;
  setText(td, format(value));
  if (title !== undefined && td.title !== title) td.title = title;
}

const STATE_ICONS = { running: '●', starting: '◔', stopping: '◔', stopped: '○', failed: '✕' };

/*
 * Fills el with the state as text (an icon beside it, not only colour) and the reason: the
 * daemon's (status.error), or why it refused this page's last start or stop (refusal).
 */
function renderState(el, status, enabled, refusal = '') {
  const state = status?.state || 'unknown';
  const error = status?.error || '';
  const key = `${state}|${error}|${enabled}|${refusal}`;
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
  el.replaceChildren(...parts);
}

/* The refusal to show next to l: none once it runs, however the page learnt that. */
function refusalOf(l) {
  return l.status?.state === 'running' ? '' : model.refusals.get(l.id) || '';
}

function boundText(l) {
  const bound = l.status?.bound;
  if (Array.isArray(bound) && bound.length) return { text: bound.join(', '), bound: true };
  return { text: `${formatAddress(l.address, l.port)} (not bound)`, bound: false };
}

/* The bound addresses, or the configured one marked as not bound. */
function renderBound(td, l) {
  const bound = l.status?.bound;
  const isBound = Array.isArray(bound) && bound.length > 0;
  const text = isBound ? bound.join(', ') : formatAddress(l.address, l.port);
  const key = `${isBound}|${text}`;
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  td.classList.toggle('unbound', !isBound);
  if (isBound) {
    td.textContent = text;
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
  link.addEventListener('click', () => select(id, true));
  cells.id.append(link);
  cells.link = link;
  tr.addEventListener('click', (e) => {
    if (e.target.closest('button, a, input, select')) return;
    select(id, false);
  });
  tr.cells_ = cells;
  return tr;
}

function updateRow(tr, l) {
  const c = tr.cells_;
  const m = l.metrics || {};
  const r = model.rates.get(l.id);
  setText(c.service, l.service ?? '');
  setText(c.transport, (l.transport ?? '').toUpperCase());
  renderBound(c.bound, l);
  setText(c.model, l.model ?? '');
  renderState(c.state, l.status, l.enabled, refusalOf(l));
  setNumber(c.active, m.connections_active, formatInt);
  setNumber(c.bytes_in, m.bytes_in, formatBytes, `${formatInt(m.bytes_in)} bytes`);
  setNumber(c.rate_in, r ? r.bytes_in : null, formatRate);
  setNumber(c.bytes_out, m.bytes_out, formatBytes, `${formatInt(m.bytes_out)} bytes`);
  setNumber(c.rate_out, r ? r.bytes_out : null, formatRate);
  const selected = model.selected === l.id;
  tr.classList.toggle('selected', selected);
  c.link.setAttribute('aria-expanded', String(selected));
}

function renderTable() {
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

function renderFeed() {
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

/* ---- details of the selected listener ---- */

const METRIC_LABELS = [
  ['connections_active', 'Active connections'],
  ['connections_total', 'Connections served'],
  ['connections_rejected', 'Connections rejected'],
  ['rejected_max_connections', 'Rejected: max connections'],
  ['rejected_per_source', 'Rejected: per source'],
  ['rejected_rate', 'Rejected: connection rate'],
  ['rejected_resources', 'Rejected: out of resources'],
  ['bytes_in', 'Bytes in'],
  ['bytes_out', 'Bytes out'],
  ['datagrams_in', 'Datagrams in'],
  ['datagrams_out', 'Datagrams out'],
  ['datagrams_dropped', 'Datagrams dropped'],
  ['datagrams_dropped_loop', 'Dropped: from our own endpoint'],
  ['datagrams_dropped_reflection', 'Dropped: from a reflector port'],
  ['datagrams_dropped_rate_source', 'Dropped: source over budget'],
  ['datagrams_dropped_rate', 'Dropped: listener over budget'],
  ['idle_timeouts', 'Idle time-outs'],
  ['errors', 'Errors'],
];

/* Fills tbody with [key, label, value text, title] rows, keeping rows that stay. */
function fillKeyValues(tbody, entries) {
  const keep = new Set(entries.map((e) => e[0]));
  for (const tr of [...tbody.rows]) if (!keep.has(tr.dataset.key)) tr.remove();
  entries.forEach(([key, label, value, title], i) => {
    let tr = [...tbody.rows].find((r) => r.dataset.key === key);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.key = key;
      const th = document.createElement('th');
      th.scope = 'row';
      const td = document.createElement('td');
      td.className = 'num';
      tr.append(th, td);
    }
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    setText(tr.cells[0], label);
    setText(tr.cells[1], value);
    tr.cells[1].title = title || '';
  });
}

/* A number as a count, with its size in bytes beside it when its name says it is bytes. */
function countText(key, v) {
  if (typeof v !== 'number') return JSON.stringify(v);
  if (/bytes|size/.test(key) && v >= 1024) return `${formatInt(v)} (${formatBytes(v)})`;
  return formatInt(v);
}

/* A limit: 0 means none. */
function limitText(v) {
  if (v === undefined || v === null) return undefined;
  return v === 0 ? 'no limit' : formatInt(v);
}

function renderConfig(l) {
  const dl = byId('config-list');
  const entries = [
    ['Service', l.service],
    ['Transport', (l.transport ?? '').toUpperCase()],
    ['Address', l.address ?? '::'],
    ['Port', l.port === 0 ? '0 (any free port)' : String(l.port)],
    ['Bound', (l.status?.bound || []).join(', ') || 'not bound'],
    ['Model', l.model],
    ['Workers', formatInt(l.workers)],
    ['Max connections', formatInt(l.max_connections)],
    ['Idle timeout', l.idle_timeout_ms === 0 ? 'never' : `${formatInt(l.idle_timeout_ms)} ms (${formatDuration(l.idle_timeout_ms / 1000)})`],
    ...(l.transport === 'udp'
      ? [['Replies per second per source', limitText(l.reply_rate_per_source)],
        ['Replies per second', limitText(l.reply_rate)]]
      : [['Max connections per source', limitText(l.max_connections_per_source)],
        ['Connections per second per source', limitText(l.connection_rate_per_source)]]),
    ['Enabled', l.enabled ? 'yes' : 'no'],
    ['State since', formatTimestamp(l.status?.since)],
  ];
  const opts = l.options && typeof l.options === 'object' ? Object.entries(l.options) : [];
  if (opts.length === 0) entries.push(['Options', 'none']);
  for (const [k, v] of opts) entries.push([`Option ${k}`, typeof v === 'string' ? v : countText(k, v)]);
  const key = JSON.stringify(entries);
  if (dl.dataset.key === key) return;
  dl.dataset.key = key;
  dl.replaceChildren(...entries.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v ?? '—';
    return [dt, dd];
  }));
}

function renderCharts(l) {
  const h = model.history.get(l.id) || [];
  const now = Date.now();
  const gapMs = Math.max(POLL_INTERVAL_MS, 1000) * 2.5;
  const tp = byId('chart-throughput');
  const maxT = drawTimeChart(tp, {
    series: [
      { label: 'in', colorVar: '--chart-in', points: h.map((p) => ({ t: p.t, v: p.in })) },
      { label: 'out', colorVar: '--chart-out', dash: [6, 4], points: h.map((p) => ({ t: p.t, v: p.out })) },
    ],
    now, spanMs: HISTORY_MS, kind: 'bytes', gapMs, emptyText: 'Waiting for samples…',
  });
  const cn = byId('chart-connections');
  const maxC = drawTimeChart(cn, {
    series: [{ label: 'active', colorVar: '--chart-conn', step: true, points: h.map((p) => ({ t: p.t, v: p.active })) }],
    now, spanMs: HISTORY_MS, kind: 'count', gapMs, emptyText: 'Waiting for samples…',
  });
  const r = model.rates.get(l.id);
  tp.setAttribute('aria-label', `Throughput of ${l.id} over the last 5 minutes: now ${formatRate(r?.bytes_in)} in, ${formatRate(r?.bytes_out)} out; peak ${formatRate(maxT)}.`);
  cn.setAttribute('aria-label', `Active connections of ${l.id} over the last 5 minutes: now ${formatInt(l.metrics?.connections_active ?? 0)}, peak ${formatInt(maxC)}.`);
}

function renderDetails() {
  const section = byId('details');
  const l = model.selected ? model.listeners.get(model.selected) : null;
  if (!l) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  section.dataset.id = l.id;
  setText(byId('details-heading'), l.id);
  renderState(byId('details-state'), l.status, l.enabled, refusalOf(l));
  const st = l.status?.state;
  const err = byId('details-error');
  err.hidden = !l.status?.error;
  setText(err, l.status?.error ? `Failed: ${l.status.error}` : '');
  byId('action-start').disabled = busy.has(l.id) || ((st === 'running' || st === 'starting') && l.enabled);
  byId('action-stop').disabled = busy.has(l.id) || (st === 'stopped' && !l.enabled);
  byId('action-edit').disabled = busy.has(l.id);
  byId('action-delete').disabled = busy.has(l.id);

  const m = l.metrics || {};
  const r = model.rates.get(l.id);
  const entries = METRIC_LABELS.filter(([k]) => m[k] !== undefined).map(([k, label]) => {
    const v = m[k];
    const text = k.startsWith('bytes_') ? `${formatBytes(v)} (${formatInt(v)})` : formatInt(v);
    return [k, label, text];
  });
  for (const k of Object.keys(m)) {
    if (k !== 'service' && !METRIC_LABELS.some(([x]) => x === k) && Number.isFinite(m[k])) entries.push([k, k, formatInt(m[k])]);
  }
  entries.push(['rate_in', 'Bytes in per second', formatRate(r?.bytes_in)]);
  entries.push(['rate_out', 'Bytes out per second', formatRate(r?.bytes_out)]);
  if (r && Number.isFinite(r.connections)) entries.push(['rate_conn', 'Connections per second', r.connections.toFixed(2)]);
  for (const k of ['datagrams_in', 'datagrams_out']) {
    if (r && Number.isFinite(r[k])) entries.push([`rate_${k}`, `${k === 'datagrams_in' ? 'Datagrams in' : 'Datagrams out'} per second`, r[k].toFixed(1)]);
  }
  fillKeyValues(byId('metrics-table').tBodies[0], entries);

  const svc = m.service && typeof m.service === 'object' ? Object.entries(m.service) : [];
  fillKeyValues(byId('service-table').tBodies[0], svc.map(([k, v]) => [k, k, countText(k, v)]));
  byId('service-table').hidden = svc.length === 0;
  byId('service-empty').hidden = svc.length > 0;

  renderConfig(l);
  renderCharts(l);
  renderFilesFor(l);
}

function select(id, moveFocus) {
  if (!model.listeners.has(id)) return;
  const changed = model.selected !== id;
  model.selected = id;
  if (changed) {
    files.id = null;
    history.replaceState(null, '', `#${encodeURIComponent(id)}`);
  }
  renderTable();
  renderDetails();
  if (moveFocus) byId('details-heading').focus();
  else byId('details').scrollIntoView({ block: 'nearest' });
}

function closeDetails(moveFocus) {
  const id = model.selected;
  model.selected = null;
  files.id = null;
  history.replaceState(null, '', location.pathname + location.search);
  renderTable();
  renderDetails();
  if (moveFocus && id && rows.has(id)) rows.get(id).cells_.link.focus();
  else if (moveFocus) byId('listeners-heading').focus();
}

/* ---- stored files of a backup listener ---- */

const files = { id: null, key: '', loading: false, again: false, unavailable: false, last: 0 };

function renderFilesFor(l) {
  const section = byId('files');
  if (l.service !== 'backup') {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const m = l.metrics || {};
  const key = `${JSON.stringify(m.service || {})}|${m.connections_total}|${m.bytes_in}`;
  if (files.id !== l.id) {
    files.id = l.id;
    files.key = key;
    files.unavailable = false;
    byId('files-table').hidden = true;
    setText(byId('files-status'), 'Loading the stored files…');
    loadFiles(l.id);
  } else if (files.key !== key && !files.unavailable) {
    files.key = key;
    loadFiles(l.id);
  }
}

async function loadFiles(id) {
  if (files.loading) {
    files.again = true;
    return;
  }
  files.loading = true;
  const status = byId('files-status');
  const table = byId('files-table');
  try {
    const data = await api.files(id);
    if (files.id !== id) return;
    const list = Array.isArray(data) ? data : Array.isArray(data?.files) ? data.files : [];
    files.unavailable = false;
    renderFiles(id, list);
    table.hidden = list.length === 0;
    setText(status, list.length ? `${list.length} file${list.length === 1 ? '' : 's'}, as of ${formatClock(Date.now())}.` : 'No files stored yet.');
  } catch (e) {
    if (files.id !== id) return;
    table.hidden = true;
    if (e instanceof ApiError && e.status === 404) {
      files.unavailable = true;
      setText(status, 'This daemon does not list stored files (GET …/files answered 404).');
    } else if (e instanceof NetworkError) {
      setText(status, 'The stored files cannot be read: the daemon cannot be reached.');
    } else {
      setText(status, `The stored files cannot be read: ${e.message}`);
    }
  } finally {
    files.loading = false;
    if (files.again) {
      files.again = false;
      if (files.id === id && !files.unavailable) loadFiles(id);
    }
  }
}

/* "✓ sha256", "✓ size", "no": whether the copy was checked against what its client declared. */
function verifiedText(v, entry) {
  const how = entry && typeof entry.integrity === 'string' && entry.integrity !== 'none' ? entry.integrity : '';
  if (v === true) return how ? `✓ ${how}` : '✓ yes';
  if (v === false) return 'no';
  return how || '—';
}

function renderFiles(id, list) {
  const tbody = byId('files-table').tBodies[0];
  tbody.replaceChildren(...list.map((f) => {
    const tr = document.createElement('tr');
    const name = String(f.name ?? '');
    tr.dataset.name = name;

    const tdName = document.createElement('th');
    tdName.scope = 'row';
    tdName.dataset.label = 'Name';
    const a = document.createElement('a');
    a.href = api.fileUrl(id, name);
    a.download = name.split('/').pop() || 'download';
    a.className = 'file-link';
    a.textContent = name;
    a.setAttribute('aria-label', `Download ${name}`);
    tdName.append(a);

    const tdSize = document.createElement('td');
    tdSize.className = 'num';
    tdSize.dataset.label = 'Size';
    tdSize.textContent = formatBytes(f.size);
    tdSize.title = `${formatInt(f.size)} bytes`;

    const tdStored = document.createElement('td');
    tdStored.dataset.label = 'Stored';
    tdStored.textContent = formatTimestamp(f.stored);

    const tdVerified = document.createElement('td');
    tdVerified.dataset.label = 'Verified';
    tdVerified.className = 'c-verified';
    tdVerified.textContent = verifiedText(f.verified, f);

    const tdSha = document.createElement('td');
    tdSha.dataset.label = 'SHA-256';
    tdSha.className = 'c-sha';
    if (typeof f.sha256 === 'string' && f.sha256) {
      const code = document.createElement('code');
      code.textContent = `${f.sha256.slice(0, 12)}…`;
      code.title = f.sha256;
      tdSha.append(code);
    } else {
      tdSha.textContent = 'unknown';
    }

    // The current copy is the entry itself; versions lists the older copies kept.
    const tdVersions = document.createElement('td');
    tdVersions.dataset.label = 'Versions';
    const current = document.createElement('span');
    current.textContent = f.version !== undefined && f.version !== null ? `v${f.version} (current)` : 'current';
    tdVersions.append(current);
    const older = Array.isArray(f.versions) ? f.versions : [];
    if (older.length) {
      const det = document.createElement('details');
      const sum = document.createElement('summary');
      sum.textContent = `${older.length} older`;
      const ul = document.createElement('ul');
      ul.className = 'versions';
      for (const x of [...older].sort((a, b2) => (b2?.version ?? 0) - (a?.version ?? 0))) {
        const li = document.createElement('li');
        if (x && typeof x === 'object' && x.version !== undefined) {
          const link = document.createElement('a');
          link.href = `${api.fileUrl(id, name)}?version=${encodeURIComponent(x.version)}`;
          link.download = `v${x.version}-${name.split('/').pop() || 'download'}`;
          link.className = 'version-link';
          link.textContent = `v${x.version}`;
          link.setAttribute('aria-label', `Download version ${x.version} of ${name}`);
          const bits = [];
          if (x.size !== undefined) bits.push(formatBytes(x.size));
          if (x.stored) bits.push(formatTimestamp(x.stored));
          bits.push(`verified: ${verifiedText(x.verified, x)}`);
          li.append(link, ` · ${bits.join(' · ')}`);
        } else {
          li.textContent = typeof x === 'object' ? JSON.stringify(x) : String(x);
        }
        ul.append(li);
      }
      det.append(sum, ul);
      tdVersions.append(det);
    }
    tr.append(tdName, tdSize, tdStored, tdVerified, tdSha, tdVersions);
    return tr;
  }));
}

/* ---- actions ---- */

const busy = new Set();

let noticeTimer = null;
function notice(text, kind = 'info') {
  const el = byId('notice');
  el.dataset.kind = kind;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (kind === 'info') noticeTimer = setTimeout(() => { el.hidden = true; }, 10000);
}

function describeFailure(e) {
  if (e instanceof ApiError) return e.detail;
  if (e instanceof NetworkError) return 'the daemon cannot be reached';
  return String(e?.message || e);
}

function where(l) {
  const st = l.status || {};
  if (st.state === 'running' && st.bound?.length) return `running on ${st.bound.join(', ')}`;
  if (st.error) return `${st.state}: ${st.error}`;
  return st.state || 'unknown state';
}

async function act(id, what) {
  busy.add(id);
  renderDetails();
  try {
    const res = what === 'start' ? await api.start(id) : await api.stop(id);
    upsertLocal(res);
    notice(`Listener ${id} ${what === 'start' ? 'started' : 'stopped'}: ${where(res)}.`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) forgetLocal(id);
    else if (e instanceof ApiError && e.status !== 401) {
      model.refusals.set(id, `${what === 'start' ? 'Start' : 'Stop'} refused: ${e.detail}`);
      touched();
    }
    notice(`Could not ${what} ${id}: ${describeFailure(e)}`, 'error');
  } finally {
    busy.delete(id);
    renderDetails();
  }
}

function confirmDelete(l) {
  const d = byId('confirm-dialog');
  const ok = byId('confirm-ok');
  const cancel = byId('confirm-cancel');
  byId('confirm-title').textContent = `Delete listener ${l.id}?`;
  byId('confirm-text').textContent = `The ${l.service} listener ${l.id} on ${boundText(l).text} stops, its open connections are closed, and it is removed from the daemon's saved set. This cannot be undone.`;
  ok.textContent = `Delete ${l.id}`;
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.onclick = null;
      cancel.onclick = null;
      d.onclose = null;
      if (d.open) d.close();
      resolve(answer);
    };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    d.onclose = () => done(false);
    d.showModal();
    cancel.focus();
  });
}

async function deleteListener(id) {
  const l = model.listeners.get(id);
  if (!l || !(await confirmDelete(l))) return;
  busy.add(id);
  renderDetails();
  try {
    await api.remove(id);
    model.selected = model.selected === id ? null : model.selected;
    forgetLocal(id);
    history.replaceState(null, '', location.pathname + location.search);
    scheduleRender();
    notice(`Listener ${id} deleted.`);
    byId('listeners-heading').focus();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) forgetLocal(id);
    notice(`Could not delete ${id}: ${describeFailure(e)}`, 'error');
  } finally {
    busy.delete(id);
    renderDetails();
  }
}

/* ---- connection banner ---- */

let bannerTimer = null;
function setReachable(ok) {
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

async function refreshHealth() {
  try {
    const h = await api.health();
    model.health = { ...h, at: Date.now() };
    renderFeed();
  } catch {
    // the banner says it
  }
}

/* ---- the access token ---- */

// After the user declined to give a token, a 401 no longer opens the dialog by itself (the
// polling would open it every 2 s); the bar at the bottom offers it instead.
let tokenDeclined = false;

function showAuthNeeded(show) {
  byId('auth-needed').hidden = !show;
}

function setTokenError(text) {
  const error = byId('token-error');
  const input = byId('token-input');
  error.textContent = text || '';
  error.hidden = !text;
  input.setAttribute('aria-invalid', text ? 'true' : 'false');
  if (text) {
    input.focus();
    input.select();
  }
}

/*
 * Opens the token dialog; resolves to true once the daemon accepted a token (it is then kept
 * for this tab), false when the user cancels (the button, Escape).
 */
function openTokenDialog(reason) {
  const d = byId('token-dialog');
  const form = byId('token-form');
  const input = byId('token-input');
  const submit = byId('token-submit');
  const cancel = byId('token-cancel');
  const returnTo = document.activeElement;
  showAuthNeeded(false);
  byId('token-text').textContent = reason === 'refused'
    ? 'The daemon refused the token this tab was using (it may have been restarted with another). Enter the current token.'
    : 'This daemon asks for an access token (it was started with --token-file). Enter the token from that file: this tab keeps it until it is closed.';
  input.value = '';
  setTokenError('');
  return new Promise((resolve) => {
    let busy = false;
    const finish = (ok) => {
      form.onsubmit = null;
      cancel.onclick = null;
      d.onclose = null;
      if (d.open) d.close();
      if (returnTo && returnTo !== document.body && document.contains(returnTo)) returnTo.focus();
      tokenDeclined = !ok;
      showAuthNeeded(!ok);
      resolve(ok);
    };
    form.onsubmit = async (e) => {
      e.preventDefault();
      if (busy) return;
      const token = input.value.trim();
      if (!token) {
        setTokenError('Enter the token.');
        return;
      }
      if (/[^\x21-\x7e]/.test(token)) {
        setTokenError('A token is made of visible ASCII characters, without blanks.');
        return;
      }
      busy = true;
      submit.disabled = true;
      const verdict = await checkToken(token);
      busy = false;
      submit.disabled = false;
      if (verdict === 'ok') {
        setToken(token);
        finish(true);
      } else if (verdict === 'refused') {
        setTokenError('The daemon refused this token. Check it and try again.');
      } else {
        setTokenError('The daemon cannot be reached. Try again once it is back.');
      }
    };
    cancel.onclick = () => finish(false);
    d.onclose = () => finish(false);
    d.showModal();
    input.focus();
  });
}

/* The API's answer to a 401 (see api.js): forget a refused token, ask for one. */
function askToken(reason) {
  if (reason === 'refused') setToken(null);
  if (tokenDeclined) {
    showAuthNeeded(true);
    return Promise.resolve(false);
  }
  return openTokenDialog(reason);
}

/* ---- dialogs ---- */

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/* Tab and Shift+Tab cycle through the open dialog's controls and never leave it. */
function trapFocus(dialog) {
  dialog.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab' || !dialog.open) return;
    const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => !el.closest('[hidden]') && el.getClientRects().length > 0);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    const at = document.activeElement;
    if (e.shiftKey && (at === first || !dialog.contains(at))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (at === last || !dialog.contains(at))) {
      e.preventDefault();
      first.focus();
    }
  });
}

/* ---- start ---- */

function start() {
  const form = new ListenerForm(byId('listener-dialog'), (res, how) => {
    if (how === 'unchanged') {
      notice(`Nothing changed in ${res.id}.`);
      return;
    }
    upsertLocal(res);
    notice(how === 'created' ? `Listener ${res.id} created: ${where(res)}.` : `Listener ${res.id} changed: ${where(res)}.`);
    select(res.id, false);
  });

  trapFocus(byId('listener-dialog'));
  trapFocus(byId('confirm-dialog'));
  trapFocus(byId('token-dialog'));
  byId('new-listener').addEventListener('click', () => form.openCreate());
  byId('action-edit').addEventListener('click', () => {
    const l = model.listeners.get(model.selected);
    if (l) form.openEdit(l);
  });
  byId('action-start').addEventListener('click', () => model.selected && act(model.selected, 'start'));
  byId('action-stop').addEventListener('click', () => model.selected && act(model.selected, 'stop'));
  byId('action-delete').addEventListener('click', () => model.selected && deleteListener(model.selected));
  byId('action-close').addEventListener('click', () => closeDetails(true));
  byId('files-refresh').addEventListener('click', () => {
    if (!model.selected) return;
    files.unavailable = false;
    setText(byId('files-status'), 'Loading the stored files…');
    loadFiles(model.selected);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && model.selected && !document.querySelector('dialog[open]')
        && byId('details').contains(document.activeElement)) {
      closeDetails(true);
    }
  });

  onReachability(setReachable);
  const wanted = decodeURIComponent(location.hash.slice(1));
  let first = true;
  const afterData = () => {
    if (!first) return;
    first = false;
    if (wanted && model.listeners.has(wanted)) select(wanted, false);
  };

  const feed = new LiveFeed({
    snapshot: (list) => { replaceAll(list, Date.now() - 1000); afterData(); },
    upsert: upsertEvent,
    deleted: (id) => { forget(id); scheduleRender(); },
    state: applyState,
    metrics: applyMetrics,
    poll: (list, t, asked) => { applyPoll(list, t, asked); afterData(); },
    mode: (m) => { model.mode = m; scheduleRender(); },
    reachable: setReachable,
    error: (e) => {
      if (e instanceof ApiError && e.status === 401) showAuthNeeded(true);
      else notice(`The daemon answered with an error: ${describeFailure(e)}`, 'error');
    },
  });

  // EventSource cannot send the token: live.js's streams are opened through EventStream, which
  // uses the browser's EventSource while no token is held and one over fetch() otherwise.
  globalThis.EventSource = EventStream;
  const tokenArrived = () => {
    if (!feed.es) feed.tryStream();
  };
  setAuthHandler(async (reason) => {
    const ok = await askToken(reason);
    if (ok) setTimeout(tokenArrived, 0);
    return ok;
  });
  byId('auth-enter').addEventListener('click', async () => {
    tokenDeclined = false;
    if (await openTokenDialog('missing')) tokenArrived();
  });
  // With a token, a plain link would download the daemon's 401: fetch the file with it.
  byId('files-table').addEventListener('click', (e) => {
    const a = e.target.closest('a.file-link, a.version-link');
    if (!a || !getToken()) return;
    e.preventDefault();
    download(a.href, a.download).catch((err) => notice(`Could not download ${a.download}: ${describeFailure(err)}`, 'error'));
  });
  feed.start();
  refreshHealth();
  setInterval(refreshHealth, 30000);

  // Time moves on the charts and the uptime even when nothing changes.
  setInterval(() => {
    renderFeed();
    const l = model.selected && model.listeners.get(model.selected);
    if (l && !document.hidden) renderCharts(l);
  }, 1000);
  const ro = new ResizeObserver(() => {
    const l = model.selected && model.listeners.get(model.selected);
    if (l) renderCharts(l);
  });
  ro.observe(byId('chart-throughput'));
  ro.observe(byId('chart-connections'));
}

start();
