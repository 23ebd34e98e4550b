// The details of the selected listener: its state and, when it failed or drains, why and
// since when; charts of the last minutes (throughput, connections, service time); the counters
// that mean something for its transport and service, each refusal or drop with its reason; its
// service time; its configuration, and its stored files (files.js).

import { drawTimeChart } from './chart.js';
import { byId, setText } from './dom.js';
import { renderFilesFor, resetFiles } from './files.js';
import {
  formatAgo, formatBytes, formatClock, formatDuration, formatInt, formatNs, formatRate, formatTimestamp,
} from './format.js';
import { POLL_INTERVAL_MS } from './live.js';
import {
  HISTORY_MS, historyOf, latencyOf, rateOf,
} from './rates.js';
import { scheduleRender } from './render.js';
import { loadServices } from './services.js';
import { model, refusalOf } from './store.js';
import { drainingText, renderState, renderTable, rowLink } from './table.js';

/*
 * The listener's own counters, in the order shown: [name, label, where it means something,
 * what it counts (a refusal or a drop: its reason)]. Where: 'tcp', 'udp', 'tls' (options.tls),
 * 'process' (the process model) or 'any'. A counter is shown where it means something, and
 * anywhere once it is not zero.
 */
const COUNTERS = [
  ['connections_active', 'Active connections', 'tcp'],
  ['connections_total', 'Connections served', 'tcp'],
  ['connections_rejected', 'Connections rejected', 'tcp', 'closed at once, for one of the reasons below'],
  ['rejected_max_connections', 'Rejected: max connections', 'tcp', 'the listener had max_connections open'],
  ['rejected_per_source', 'Rejected: per source', 'tcp', 'the client\'s address had max_connections_per_source open'],
  ['rejected_rate', 'Rejected: connection rate', 'tcp', 'the client\'s address opened more than connection_rate_per_source a second'],
  ['rejected_resources', 'Rejected: out of resources', 'tcp', 'no thread, process, descriptor or memory could be had for it'],
  ['rejected_fd_budget', 'Rejected: descriptor budget', 'tcp', 'the listeners\' share of the daemon\'s descriptors was in use'],
  ['bytes_in', 'Bytes in', 'any'],
  ['bytes_out', 'Bytes out', 'any'],
  ['datagrams_in', 'Datagrams in', 'udp'],
  ['datagrams_out', 'Datagrams out', 'udp'],
  ['datagrams_dropped', 'Datagrams dropped', 'udp', 'received and not answered: the guard\'s reasons below, or the service\'s (its counters)'],
  ['datagrams_dropped_loop', 'Dropped: from our own endpoint', 'udp', 'they came from one of this daemon\'s own addresses'],
  ['datagrams_dropped_reflection', 'Dropped: from a reflector port', 'udp', 'they came from port 0 or a well-known service port'],
  ['datagrams_dropped_rate_source', 'Dropped: source over budget', 'udp', 'their source passed reply_rate_per_source'],
  ['datagrams_dropped_rate', 'Dropped: listener over budget', 'udp', 'the listener passed reply_rate'],
  ['idle_timeouts', 'Idle time-outs', 'tcp', 'connections closed after idle_timeout_ms of silence'],
  ['errors', 'Errors', 'any', 'socket and service errors'],
  ['events_dropped', 'Events dropped', 'process', 'session events lost on their way to the event stream: a child\'s channel was full'],
  ['tls_handshakes', 'TLS handshakes', 'tls'],
  ['tls_handshake_failures', 'TLS handshakes failed', 'tls', 'for one of the reasons below'],
  ['tls_failures_no_client_cert', 'TLS failed: no client certificate', 'tls', 'the client sent none and client_ca_file requires one'],
  ['tls_failures_bad_certificate', 'TLS failed: certificate refused', 'tls', 'an unknown CA, expired, or otherwise bad'],
  ['tls_failures_protocol', 'TLS failed: protocol', 'tls', 'not TLS, a version older than 1.2, or no shared cipher'],
  ['tls_failures_timeout', 'TLS failed: time-out', 'tls', 'the handshake was not done within idle_timeout_ms'],
  ['tls_failures_other', 'TLS failed: other', 'tls', 'the client left, or another failure'],
];
const KNOWN = new Set(COUNTERS.map(([k]) => k));

/* Whether counters of kind where mean something for listener l. */
function applies(where, l) {
  const tcp = (l.transport ?? 'tcp') === 'tcp';
  switch (where) {
    case 'tcp': return tcp;
    case 'udp': return !tcp;
    case 'tls': return tcp && !!(l.options?.tls || l.status?.tls?.enabled);
    case 'process': return tcp && l.model === 'process';
    default: return true;
  }
}

// GET /api/v1/services, once it answered: the names and help of each service's counters.
let catalogue = null;
let catalogueAsked = false;

/* The declared counters of service name ([{ name, help, transports }]), or null while unknown. */
function declaredCounters(name) {
  if (!catalogueAsked) {
    catalogueAsked = true;
    loadServices().then((c) => {
      catalogue = c;
      scheduleRender();
    });
  }
  const svc = catalogue?.byName.get(name);
  return Array.isArray(svc?.counters) ? svc.counters.filter((c) => c && typeof c.name === 'string') : null;
}

/*
 * Fills tbody with [key, label, value text, title, why] rows, keeping rows that stay; why, when
 * given, is written under the label (what the counter counts, or the reason of a refusal).
 */
function fillKeyValues(tbody, entries) {
  const keep = new Set(entries.map((e) => e[0]));
  for (const tr of [...tbody.rows]) if (!keep.has(tr.dataset.key)) tr.remove();
  entries.forEach(([key, label, value, title, why], i) => {
    let tr = [...tbody.rows].find((r) => r.dataset.key === key);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.key = key;
      const th = document.createElement('th');
      th.scope = 'row';
      const name = document.createElement('span');
      name.className = 'kv-label';
      const help = document.createElement('span');
      help.className = 'kv-why';
      th.append(name, help);
      const td = document.createElement('td');
      td.className = 'num';
      tr.append(th, td);
    }
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    const [name, help] = tr.cells[0].children;
    setText(name, label);
    setText(help, why || '');
    help.hidden = !why;
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

/* The latency chart's points of one percentile. */
function percentile(h, key) {
  return h.map((p) => ({ t: p.t, v: p[key] }));
}

/* The largest value of key in the window, or null. */
function peakOf(h, key, t0) {
  let max = null;
  for (const p of h) if (p.t >= t0 && p[key] !== null && (max === null || p[key] > max)) max = p[key];
  return max;
}

/* What the latency chart shows, in words: its current values and its peak. */
function latencyLabel(l, h, now) {
  const what = `Service time of ${l.id} over the last 5 minutes`;
  if (model.mode !== 'stream') return `${what}: latency needs the live event stream.`;
  const t0 = now - HISTORY_MS;
  const last = h.length ? h[h.length - 1] : null;
  const peak99 = peakOf(h, 'p99', t0);
  if (peak99 === null) return `${what}: no request answered yet.`;
  const current = last && last.t >= now - 2500 && last.count > 0
    ? `now p50 ${formatNs(last.p50)}, p99 ${formatNs(last.p99)}, p99.9 ${formatNs(last.p999)} (${formatInt(last.count)} requests in the last second)`
    : 'no requests now';
  return `${what}: ${current}; peak p99 ${formatNs(peak99)}, p99.9 ${formatNs(peakOf(h, 'p999', t0))}.`;
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

  // Service time comes with the event stream's ticks only (latency_interval), one a second.
  const lat = latencyOf(l.id);
  const lc = byId('chart-latency');
  const live = model.mode === 'stream';
  drawTimeChart(lc, {
    series: live
      ? [
        { label: 'p50', colorVar: '--chart-p50', points: percentile(lat, 'p50') },
        { label: 'p99', colorVar: '--chart-p99', dash: [6, 4], points: percentile(lat, 'p99') },
        { label: 'p99.9', colorVar: '--chart-p999', dash: [2, 3], points: percentile(lat, 'p999') },
      ]
      : [],
    now,
    spanMs: HISTORY_MS,
    kind: 'duration',
    gapMs: 2500,
    emptyText: live ? 'No request answered yet' : 'Latency needs the live event stream',
  });
  lc.setAttribute('aria-label', latencyLabel(l, lat, now));
}

/* The cumulative service time (metrics.latency) as rows. */
function renderLatency(l) {
  const lat = l.metrics?.latency;
  const ok = lat && typeof lat === 'object' && Number.isFinite(lat.count);
  const n = ok ? lat.count : 0;
  const ns = (v) => (n > 0 && Number.isFinite(v) ? formatNs(v) : '—');
  const exact = (v) => (n > 0 && Number.isFinite(v) ? `${formatInt(v)} ns` : '');
  fillKeyValues(byId('latency-table').tBodies[0], ok
    ? [
      ['count', 'Requests answered', formatInt(n), '', 'since the listener was created'],
      ['p50', 'Median (p50)', ns(lat.p50_ns), exact(lat.p50_ns)],
      ['p99', 'p99', ns(lat.p99_ns), exact(lat.p99_ns)],
      ['p999', 'p99.9', ns(lat.p999_ns), exact(lat.p999_ns)],
      ['max', 'Longest', ns(lat.max_ns), exact(lat.max_ns)],
      ['mean', 'Average', n > 0 && Number.isFinite(lat.sum_ns) ? formatNs(lat.sum_ns / n) : '—'],
    ]
    : [['count', 'Requests answered', '—', '', 'this daemon does not measure service time']]);
}

/* Why listener l failed and since when, and its draining runners, in full. */
function renderProblem(l) {
  const el = byId('details-problem');
  const st = l.status || {};
  const lines = [];
  if (st.error || st.state === 'failed') {
    lines.push(['problem-what', `Failed: ${st.error || 'the daemon gives no reason'}`]);
    const since = Date.parse(st.since);
    if (!Number.isNaN(since)) lines.push(['problem-since', `Since ${formatTimestamp(st.since)} (${formatAgo(since)})`]);
  }
  const draining = Array.isArray(st.draining) ? st.draining : [];
  if (draining.length) {
    lines.push(['problem-drain-head', `Draining: ${drainingText(draining)} left on the runners a change replaced`]);
    for (const d of draining) {
      const deadline = Date.parse(d.deadline);
      const left = Number.isFinite(d.connections)
        ? `${formatInt(d.connections)} connection${d.connections === 1 ? '' : 's'}`
        : 'connections not told apart from the new runner\'s';
      const cut = Number.isNaN(deadline) ? '' : `, cut at ${formatClock(deadline)} (${formatAgo(deadline)})`;
      const still = d.accepting ? ', still accepting new connections' : '';
      lines.push(['problem-drain', `${d.bound}: ${left}${still}${cut}`]);
    }
  }
  el.hidden = lines.length === 0;
  el.dataset.kind = st.error || st.state === 'failed' ? 'failed' : 'draining';
  const key = JSON.stringify(lines);
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.replaceChildren(...lines.map(([cls, text]) => {
    const p = document.createElement('p');
    p.className = cls;
    p.textContent = text;
    return p;
  }));
}

/* The listener's counters that mean something for it, then its rates. */
function counterEntries(l) {
  const m = l.metrics || {};
  const r = rateOf(l.id);
  const tcp = (l.transport ?? 'tcp') === 'tcp';
  const entries = COUNTERS
    .filter(([k, , where]) => Number.isFinite(m[k]) && (applies(where, l) || m[k] !== 0))
    .map(([k, label, , why]) => {
      const v = m[k];
      const text = k.startsWith('bytes_') ? `${formatBytes(v)} (${formatInt(v)})` : formatInt(v);
      return [k, label, text, '', why];
    });
  for (const k of Object.keys(m)) {
    if (!KNOWN.has(k) && Number.isFinite(m[k])) entries.push([k, k, formatInt(m[k])]);
  }
  entries.push(['rate_in', 'Bytes in per second', formatRate(r?.bytes_in)]);
  entries.push(['rate_out', 'Bytes out per second', formatRate(r?.bytes_out)]);
  if (tcp && r && Number.isFinite(r.connections)) entries.push(['rate_conn', 'Connections per second', r.connections.toFixed(2)]);
  if (!tcp) {
    for (const k of ['datagrams_in', 'datagrams_out']) {
      if (r && Number.isFinite(r[k])) entries.push([`rate_${k}`, `${k === 'datagrams_in' ? 'Datagrams in' : 'Datagrams out'} per second`, r[k].toFixed(1)]);
    }
  }
  return entries;
}

/*
 * The service's own counters, named and explained as GET /api/v1/services declares them; null
 * while that answer is awaited (which of them apply to the transport is not known before it).
 */
function serviceEntries(l) {
  // The first call asks for the catalogue.
  const declared = declaredCounters(l.service) || [];
  if (!catalogue) return null;
  const values = l.metrics?.service && typeof l.metrics.service === 'object' ? l.metrics.service : {};
  // A counter that cannot count on this listener's transport is left out, unless it is not 0.
  const applies = (c) => !Array.isArray(c.transports) || c.transports.includes(l.transport) || values[c.name] !== 0;
  const entries = declared
    .filter((c) => values[c.name] !== undefined && applies(c))
    .map((c) => [c.name, c.name, countText(c.name, values[c.name]), '', c.help || '']);
  for (const [k, v] of Object.entries(values)) {
    if (!declared.some((c) => c.name === k)) entries.push([k, k, countText(k, v)]);
  }
  return entries;
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
  renderProblem(l);
  const st = l.status?.state;
  const busy = model.busy.has(l.id);
  byId('action-start').disabled = busy || ((st === 'running' || st === 'starting') && l.enabled);
  byId('action-stop').disabled = busy || (st === 'stopped' && !l.enabled);
  byId('action-edit').disabled = busy;
  byId('action-delete').disabled = busy;

  fillKeyValues(byId('metrics-table').tBodies[0], counterEntries(l));
  renderLatency(l);
  const svc = serviceEntries(l);
  fillKeyValues(byId('service-table').tBodies[0], svc ?? []);
  byId('service-table').hidden = !svc?.length;
  byId('service-empty').hidden = svc?.length !== 0;

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
