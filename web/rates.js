// Rates and the recent history of every listener, computed in one place whichever way the
// counters arrive: the event stream's metrics ticks carry the daemon's own rates (over its tick
// interval), polling carries counters only, whose differences over the time between two samples
// are the rates. Both feed observe().

const rates = new Map(); // id -> { bytes_in, bytes_out, connections, ... } per second, or null
const samples = new Map(); // id -> counters of the last sample, to compute rates from
const history = new Map(); // id -> [{ t, in, out, active }], the last HISTORY_MS
const latency = new Map(); // id -> [{ t, count, p50, p99, p999, max }] (ns), the last HISTORY_MS

/** How far back the charts reach. */
export const HISTORY_MS = 5 * 60 * 1000;

/* counter -> rate name, as the daemon's metrics tick names them. */
const RATED = {
  bytes_in: 'bytes_in',
  bytes_out: 'bytes_out',
  connections_total: 'connections',
  datagrams_in: 'datagrams_in',
  datagrams_out: 'datagrams_out',
};

/* The rates between two samples, or null when they cannot be told (first sample, a reset). */
function ratesBetween(prev, cur) {
  if (!prev || cur.t <= prev.t) return null;
  if (cur.bytes_in < prev.bytes_in || cur.bytes_out < prev.bytes_out) return null;
  const dt = (cur.t - prev.t) / 1000;
  const rates = {};
  for (const [counter, name] of Object.entries(RATED)) {
    if (cur[counter] === undefined || prev[counter] === undefined) continue;
    rates[name] = Math.max(0, cur[counter] - prev[counter]) / dt;
  }
  return rates;
}

/**
 * A sample of listener id's counters (metrics) taken at t (ms): its rates are given (the
 * daemon's) or computed from the previous sample; the history of the charts grows by one point.
 */
export function observe(id, t, metrics, given = undefined) {
  const m = metrics || {};
  const cur = { t };
  for (const counter of Object.keys(RATED)) {
    if (Number.isFinite(m[counter])) cur[counter] = m[counter];
  }
  cur.bytes_in ??= 0;
  cur.bytes_out ??= 0;
  cur.connections_total ??= 0;
  const r = given !== undefined ? given || null : ratesBetween(samples.get(id), cur);
  samples.set(id, cur);
  rates.set(id, r);
  let h = history.get(id);
  if (!h) {
    h = [];
    history.set(id, h);
  }
  h.push({ t, in: r ? r.bytes_in : null, out: r ? r.bytes_out : null, active: m.connections_active ?? 0 });
  const cut = t - HISTORY_MS - 10000;
  while (h.length && h[0].t < cut) h.shift();
}

/**
 * The service time of listener id's requests answered in the tick that ended at t (ms): the
 * metrics tick's latency_interval ({ count, p50_ns, p99_ns, p999_ns, max_ns }). An interval
 * without requests is a point without values (a gap on the chart, not a zero); a tick without
 * the object (the first one, or a daemon that does not send it) adds nothing.
 */
export function observeLatency(id, t, interval) {
  if (!interval || typeof interval !== 'object' || !Number.isFinite(interval.count)) return;
  let h = latency.get(id);
  if (!h) {
    h = [];
    latency.set(id, h);
  }
  const has = interval.count > 0;
  const ns = (v) => (has && Number.isFinite(v) ? v : null);
  h.push({
    t, count: interval.count, p50: ns(interval.p50_ns), p99: ns(interval.p99_ns), p999: ns(interval.p999_ns), max: ns(interval.max_ns),
  });
  const cut = t - HISTORY_MS - 10000;
  while (h.length && h[0].t < cut) h.shift();
}

/** The recent service times of listener id: [{ t, count, p50, p99, p999, max }], oldest first. */
export function latencyOf(id) {
  return latency.get(id) || [];
}

/** Forgets what was sampled of listener id. */
export function forgetRates(id) {
  rates.delete(id);
  samples.delete(id);
  history.delete(id);
  latency.delete(id);
}

/** The latest rates of listener id ({ bytes_in, bytes_out, connections, ... } per second), or null. */
export function rateOf(id) {
  return rates.get(id) || null;
}

/** The recent samples of listener id: [{ t, in, out, active }], oldest first. */
export function historyOf(id) {
  return history.get(id) || [];
}
