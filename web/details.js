// The details of the selected listener: its state, charts of the last minutes, every counter
// (the runner's and the service's own), its configuration, and its stored files (files.js).

import { drawTimeChart } from './chart.js';
import { byId, setText } from './dom.js';
import { renderFilesFor, resetFiles } from './files.js';
import {
  formatBytes, formatDuration, formatInt, formatRate, formatTimestamp,
} from './format.js';
import { POLL_INTERVAL_MS } from './live.js';
import { HISTORY_MS, historyOf, rateOf } from './rates.js';
import { model, refusalOf } from './store.js';
import { renderState, renderTable, rowLink } from './table.js';

const METRIC_LABELS = [
  ['connections_active', 'Active connections'],
  ['connections_total', 'Connections served'],
  ['connections_rejected', 'Connections rejected'],
  ['rejected_max_connections', 'Rejected: max connections'],
  ['rejected_per_source', 'Rejected: per source'],
  ['rejected_rate', 'Rejected: connection rate'],
  ['rejected_resources', 'Rejected: out of resources'],
  ['rejected_fd_budget', 'Rejected: descriptor budget'],
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

/** Draws the charts of listener l (time moves on them even when nothing changes). */
export function renderCharts(l) {
  const h = historyOf(l.id);
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
  const r = rateOf(l.id);
  tp.setAttribute('aria-label', `Throughput of ${l.id} over the last 5 minutes: now ${formatRate(r?.bytes_in)} in, ${formatRate(r?.bytes_out)} out; peak ${formatRate(maxT)}.`);
  cn.setAttribute('aria-label', `Active connections of ${l.id} over the last 5 minutes: now ${formatInt(l.metrics?.connections_active ?? 0)}, peak ${formatInt(maxC)}.`);
}

export function renderDetails() {
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
  const busy = model.busy.has(l.id);
  byId('action-start').disabled = busy || ((st === 'running' || st === 'starting') && l.enabled);
  byId('action-stop').disabled = busy || (st === 'stopped' && !l.enabled);
  byId('action-edit').disabled = busy;
  byId('action-delete').disabled = busy;

  const m = l.metrics || {};
  const r = rateOf(l.id);
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

/** Shows the details of listener id; moveFocus: to their heading (else they scroll into view). */
export function select(id, moveFocus) {
  if (!model.listeners.has(id)) return;
  const changed = model.selected !== id;
  model.selected = id;
  if (changed) {
    resetFiles();
    history.replaceState(null, '', `#${encodeURIComponent(id)}`);
  }
  renderTable();
  renderDetails();
  if (moveFocus) byId('details-heading').focus();
  else byId('details').scrollIntoView({ block: 'nearest' });
}

/** Closes the details; moveFocus: back to the listener's row (or the table's heading). */
export function closeDetails(moveFocus) {
  const id = model.selected;
  model.selected = null;
  resetFiles();
  history.replaceState(null, '', location.pathname + location.search);
  renderTable();
  renderDetails();
  const link = id && rowLink(id);
  if (moveFocus && link) link.focus();
  else if (moveFocus) byId('listeners-heading').focus();
}
