// What the dashboard knows of the daemon: the listeners as last seen (their rates and history
// are in rates.js), the selection, reachability and the feed's mode. The feed (live.js) and the
// page's own actions change it only through the functions here; every change schedules a render.

import { forgetRates, observe, observeLatency } from './rates.js';
import { scheduleRender } from './render.js';

export const model = {
  listeners: new Map(), // id -> the listener resource, as last seen
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
  busy: new Set(), // ids with an action of this page under way
};

const forgottenHooks = [];

/** fn(id) runs after listener id is forgotten (deleted here or elsewhere). */
export function onForgotten(fn) {
  forgottenHooks.push(fn);
}

export function touched() {
  model.lastUpdate = Date.now();
  scheduleRender();
}

export function forget(id) {
  model.listeners.delete(id);
  model.refusals.delete(id);
  forgetRates(id);
  for (const fn of forgottenHooks) fn(id);
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

/** A listener as this page's own action's answer gave it. */
export function upsertLocal(l) {
  localChange.set(l.id, Date.now());
  model.refusals.delete(l.id);
  localDelete.delete(l.id);
  upsert(l);
}

/** A listener this page deleted (or found gone). */
export function forgetLocal(id) {
  localDelete.set(id, Date.now());
  localChange.delete(id);
  forget(id);
}

/** A created or changed event of the stream. */
export function upsertEvent(l, kind) {
  if (!l || typeof l.id !== 'string') return;
  if (kind === 'created') localDelete.delete(l.id);
  else if (Date.now() - (localDelete.get(l.id) ?? -Infinity) < STALE_MS) return;
  upsert(l);
}

/** The whole set, as the daemon had it at askedMs. */
export function replaceAll(list, askedMs) {
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

/** A poll's answer (at t, asked at askedMs): counters of every listener, and the whole set. */
export function applyPoll(list, t, askedMs) {
  for (const l of list) {
    if (!l || typeof l.id !== 'string') continue;
    if ((localDelete.get(l.id) ?? -Infinity) >= askedMs) continue;
    observe(l.id, t, l.metrics);
  }
  replaceAll(list, askedMs);
}

/**
 * A metrics tick of the event stream: counters, the daemon's rates and the service time of the
 * tick's requests (latency_interval) of every listener.
 */
export function applyMetrics(ev) {
  const t = Date.now();
  const all = ev && typeof ev.listeners === 'object' && ev.listeners ? ev.listeners : {};
  for (const [id, m] of Object.entries(all)) {
    const l = model.listeners.get(id);
    if (!l || !m) continue;
    const { rates, latency_interval: interval, ...counters } = m;
    l.metrics = counters;
    observe(id, t, counters, rates || null);
    observeLatency(id, t, interval);
  }
  touched();
}

/** A listener.state event: the state, bound addresses, error and draining runners of one listener. */
export function applyState(ev) {
  const l = ev && model.listeners.get(ev.id);
  if (!l) return;
  l.status = {
    ...(l.status || {}),
    state: ev.state,
    bound: Array.isArray(ev.bound) ? ev.bound : [],
    error: ev.error ?? null,
    since: ev.since ?? l.status?.since,
    draining: Array.isArray(ev.draining) ? ev.draining : l.status?.draining ?? [],
  };
  if (ev.state === 'running') model.refusals.delete(ev.id);
  touched();
}

/* The refusal to show next to l: none once it runs, however the page learnt that. */
export function refusalOf(l) {
  return l.status?.state === 'running' ? '' : model.refusals.get(l.id) || '';
}
