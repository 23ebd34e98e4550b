// The Fleet page: the daemon's view of the fleet (GET /api/v1/fleet, served when the daemon was
// started with --fleet-view), polled every 2 s. Every node with its state as a word and a
// symbol (not colour only), its labels, revision and offsets, when it was last seen, its
// listeners with their rates, and, for a node in ERROR, the problem its last answer carried.
// The tab stays hidden while the daemon answers 404 (no view) to the first request.

import { API, ApiError, request } from './api.js';
import { byId, setText } from './dom.js';
import { formatClock, formatDuration, formatRate, formatTimestamp } from './format.js';

export const FLEET_POLL_MS = 2000;

const STATE_ICONS = { SYNCED: '●', PENDING: '◔', ERROR: '✕', STALE: '◌', OFFLINE: '○' };
const STATE_HELP = {
  SYNCED: 'runs the newest configuration meant for it',
  PENDING: 'a newer configuration is meant for it and it has not answered yet',
  ERROR: 'refused the newest configuration meant for it',
  STALE: 'nothing heard from it for 3 status intervals',
  OFFLINE: 'said goodbye, or does not answer',
};
const STATES = ['SYNCED', 'PENDING', 'ERROR', 'STALE', 'OFFLINE'];

const el = (tag, className, text) => {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
};

/* How long ago iso was, in words ("12 s ago"), or '—'. */
function ago(iso, now) {
  const t = Date.parse(iso || '');
  if (Number.isNaN(t)) return '—';
  return `${formatDuration(Math.max(0, (now - t) / 1000))} ago`;
}

function badge(state) {
  const b = el('span', `state fleet-state fleet-${String(state).toLowerCase()}`);
  const icon = el('span', 'state-icon', STATE_ICONS[state] || '?');
  icon.setAttribute('aria-hidden', 'true');
  b.append(icon, el('span', 'state-text', state));
  b.title = STATE_HELP[state] || '';
  return b;
}

function offsetText(o) {
  return o === null || o === undefined ? '—' : String(o);
}

/* The problem of a node's last result, as words: "rejected offset 5: detail (field x)". */
function problemBox(r) {
  const p = r.problem || {};
  const box = el('div', 'fleet-problem');
  box.setAttribute('role', 'note');
  const head = el('p', 'fleet-problem-head');
  head.append(el('strong', '', `${r.result === 'conflict' ? 'Conflict' : 'Rejected'}`),
    ` record at offset ${offsetText(r.offset)}${p.status ? ` (${p.status} ${p.title || ''})` : ''}:`);
  box.append(head, el('p', 'fleet-problem-detail', p.detail || p.title || 'no detail given'));
  if (p.field) {
    const f = el('p', 'fleet-problem-field');
    f.append('Field: ', el('code', '', p.field));
    box.append(f);
  }
  return box;
}

function listenersTable(n) {
  const wrap = el('div', 'table-wrap');
  const table = el('table', 'fleet-listeners');
  const cap = el('caption', 'visually-hidden', `Listeners of ${n.node}`);
  const head = el('thead');
  const tr = el('tr');
  for (const [name, num] of [['ID'], ['Service'], ['Transport'], ['Port', true], ['State'],
    ['In / s', true], ['Out / s', true], ['Connections / s', true]]) {
    const th = el('th', num ? 'num' : '', name);
    th.scope = 'col';
    tr.append(th);
  }
  head.append(tr);
  const body = el('tbody');
  for (const l of n.listeners || []) {
    const row = el('tr');
    row.dataset.id = l.id;
    const rates = l.rates || {};
    const cells = [
      ['ID', l.id, 'c-id'],
      ['Service', l.service ?? '—'],
      ['Transport', l.transport ?? '—'],
      ['Port', String(l.port ?? '—'), 'num'],
      ['State', `${l.state ?? 'unknown'}${l.enabled === false ? ' (disabled)' : ''}`, 'c-lstate'],
      ['In / s', formatRate(rates.bytes_in), 'num'],
      ['Out / s', formatRate(rates.bytes_out), 'num'],
      ['Connections / s', Number.isFinite(rates.connections) ? rates.connections.toFixed(1) : '—', 'num'],
    ];
    for (const [label, text, cls] of cells) {
      const td = el(label === 'ID' ? 'th' : 'td', cls || '', text);
      if (label === 'ID') td.scope = 'row';
      td.dataset.label = label;
      row.append(td);
    }
    body.append(row);
  }
  table.append(cap, head, body);
  wrap.append(table);
  if (!(n.listeners || []).length) return el('p', 'hint', 'No listeners.');
  return wrap;
}

function fact(dl, term, value, title) {
  const pair = el('div');
  const dd = el('dd', '', value);
  if (title) dd.title = title;
  pair.append(el('dt', '', term), dd);
  dl.append(pair);
}

/* One node as an article (rebuilt whole when its data changed: it holds nothing focusable). */
function nodeCard(n, now) {
  const card = el('article', 'fleet-node');
  card.dataset.node = n.node;
  card.dataset.state = n.state;
  const id = `fleet-node-${n.node}`;
  card.setAttribute('aria-labelledby', id);
  const head = el('div', 'fleet-node-head');
  const h = el('h3', '', n.node);
  h.id = id;
  head.append(h, badge(n.state));
  const labels = el('ul', 'fleet-labels');
  labels.setAttribute('aria-label', 'Labels');
  for (const [k, v] of Object.entries(n.labels || {})) labels.append(el('li', 'fleet-label', `${k}=${v}`));
  if (labels.childElementCount) head.append(labels);
  card.append(head);

  const dl = el('dl', 'fleet-facts');
  fact(dl, 'Revision', n.revision === null || n.revision === undefined ? '—' : String(n.revision));
  fact(dl, 'Offset', `${offsetText(n.applied_offset)} applied · ${offsetText(n.desired_offset)} desired`);
  fact(dl, 'Last seen', ago(n.last_seen, now), formatTimestamp(n.last_seen));
  fact(dl, 'State since', formatTimestamp(n.since));
  if (n.bridge?.state) fact(dl, 'Broker', n.bridge.state);
  if (n.version) fact(dl, 'Version', n.version);
  if (n.last_result?.result) fact(dl, 'Last result', `${n.last_result.result} (offset ${offsetText(n.last_result.offset)})`);
  card.append(dl);
  if (n.last_result && (n.last_result.result === 'rejected' || n.last_result.result === 'conflict')
      && n.state === 'ERROR') {
    card.append(problemBox(n.last_result));
  }
  card.append(listenersTable(n));
  return card;
}

export class FleetPage {
  /** tab: the button that shows the page; section: the page; onShow(bool) tells the app. */
  constructor({ tab, listenersTab, section, onShow }) {
    this.tab = tab;
    this.listenersTab = listenersTab;
    this.section = section;
    this.onShow = onShow;
    this.timer = null;
    this.data = null;
    this.keys = new Map(); // node -> JSON of what its card shows
    tab.addEventListener('click', () => this.show(true));
    listenersTab.addEventListener('click', () => this.show(false));
  }

  /** Asks once whether the daemon has a view; polls while it has. */
  start() {
    this.poll();
  }

  show(on) {
    this.section.hidden = !on;
    this.tab.setAttribute('aria-pressed', String(on));
    this.listenersTab.setAttribute('aria-pressed', String(!on));
    this.onShow(on);
    if (on) {
      this.render();
      byId('fleet-heading').focus();
    }
  }

  async poll() {
    clearTimeout(this.timer);
    try {
      this.data = await request('GET', `${API}/fleet`, { timeoutMs: 4000 });
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        // no view on this daemon: the tab stays hidden, and nothing more is asked
        this.tab.parentElement.hidden = true;
        if (!this.section.hidden) this.show(false);
        return;
      }
      // unreachable or another error: the banner says it; the last known table stays
      this.timer = setTimeout(() => this.poll(), FLEET_POLL_MS);
      return;
    }
    this.timer = setTimeout(() => this.poll(), FLEET_POLL_MS);
    this.tab.parentElement.hidden = false;
    if (!this.section.hidden) this.render();
  }

  render() {
    const d = this.data;
    if (!d) return;
    const now = Date.now();
    const live = byId('fleet-live');
    live.dataset.live = String(!!d.connected);
    setText(live, d.connected
      ? `Live from the broker · updated ${formatClock(Date.parse(d.updated) || now)}`
      : `Not live: the view is not connected to the broker${d.since ? ` (since ${formatTimestamp(d.since)})` : ''}; the table shows what was last known.`);
    const counts = d.counts || {};
    setText(byId('fleet-counts'), `${(d.nodes || []).length} node${(d.nodes || []).length === 1 ? '' : 's'}: `
      + STATES.map((s) => `${counts[s] ?? 0} ${s}`).join(' · '));

    const list = byId('fleet-nodes');
    const old = new Map([...list.children].map((c) => [c.dataset.node, c]));
    const cards = (d.nodes || []).map((n) => {
      const key = JSON.stringify({ ...n, seen: ago(n.last_seen, now) });
      const card = old.get(n.node);
      if (card && this.keys.get(n.node) === key) return card;
      this.keys.set(n.node, key);
      return nodeCard(n, now);
    });
    for (const name of old.keys()) if (!(d.nodes || []).some((n) => n.node === name)) this.keys.delete(name);
    const same = cards.length === list.children.length && cards.every((c, i) => list.children[i] === c);
    if (!same) list.replaceChildren(...cards);
    byId('fleet-empty').hidden = (d.nodes || []).length > 0;
  }
}
