// Formatting of counters, rates, times and addresses for the dashboard.

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** The power of 1024 that suits n bytes (0 for B, 1 for KiB...). */
export function byteUnitIndex(n) {
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i;
}

export function byteUnitName(i) {
  return BYTE_UNITS[i];
}

/** "512 B", "1.5 KiB", "12.0 MiB", "153 GiB". */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const i = byteUnitIndex(n);
  if (i === 0) return `${Math.round(n)} B`;
  const v = n / 1024 ** i;
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${BYTE_UNITS[i]}`;
}

/** A byte rate: "0 B/s", "1.2 KiB/s", "—" when unknown. */
export function formatRate(r) {
  if (r === null || r === undefined || !Number.isFinite(r)) return '—';
  return `${formatBytes(r)}/s`;
}

const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** An integer with thousands separators: "1,234,567". */
export function formatInt(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return intFormat.format(n);
}

/** "3 s", "4 min 10 s", "2 h 5 min", "3 d 4 h". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A service time in nanoseconds: "850 ns", "12.3 µs", "1.2 ms", "2.5 s". */
export function formatNs(ns) {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '—';
  if (ns < 1000) return `${Math.round(ns)} ns`;
  const [v, unit] = ns < 1e6 ? [ns / 1e3, 'µs'] : ns < 1e9 ? [ns / 1e6, 'ms'] : [ns / 1e9, 's'];
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${unit}`;
}

/** How long ago (or, for a later time, how soon) ms was: "12 s ago", "5 min ago", "in 20 s". */
export function formatAgo(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return '';
  const s = Math.round(Math.abs(now - ms) / 1000);
  let text;
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else text = `${Math.floor(s / 86400)} d`;
  return ms > now ? `in ${text}` : `${text} ago`;
}

/** A local date and time from an RFC 3339 string, or the string itself when it is not one. */
export function formatTimestamp(iso) {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  return new Date(t).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A local time of day for the banner and notices: "10:02:45". */
export function formatClock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** "[::]:7007" or "127.0.0.1:7007" from a configured address and port. */
export function formatAddress(address, port) {
  const a = address ?? '::';
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}
