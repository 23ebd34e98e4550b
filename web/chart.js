// A small time-series chart on a <canvas>: a few series over a sliding window, a value axis
// with round steps (bytes per second in binary units, or integers) or, for service times, a
// logarithmic one (1, 2, 5 per decade, in ns, µs, ms or s), minute marks, and gaps where samples
// are missing. Colours come from CSS custom properties on the canvas.

import { byteUnitIndex, byteUnitName } from './format.js';

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  const n = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return n * p;
}

function trimNumber(v) {
  return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(2)));
}

/* A round duration in nanoseconds as a tick label: "500 ns", "20 µs", "1 ms", "2 s". */
function durationLabel(ns) {
  if (ns < 1e3) return `${trimNumber(ns)} ns`;
  if (ns < 1e6) return `${trimNumber(ns / 1e3)} µs`;
  if (ns < 1e9) return `${trimNumber(ns / 1e6)} ms`;
  return `${trimNumber(ns / 1e9)} s`;
}

/* A logarithmic axis from the decade below min to the decade above max (nanoseconds). */
function logScale(min, max) {
  let lo = Math.floor(Math.log10(Math.max(1, min)));
  let hi = Math.ceil(Math.log10(Math.max(1, max)));
  if (hi <= lo) hi = lo + 1;
  if (min > max) {
    lo = 3; // nothing to draw: 1 µs to 1 ms
    hi = 6;
  }
  const ticks = [];
  for (let k = lo; k <= hi; k++) {
    ticks.push(10 ** k);
    if (hi - lo <= 2 && k < hi) ticks.push(2 * 10 ** k, 5 * 10 ** k);
  }
  ticks.sort((a, b) => a - b);
  return {
    ticks,
    frac: (v) => (Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo),
    label: durationLabel,
  };
}

/* The ticks of the axis, where a value sits on it (0 to 1) and how a tick is labelled. */
function axisScale(min, max, kind) {
  if (kind === 'duration') return logScale(min, max);
  let top;
  let step;
  let label;
  if (kind === 'bytes') {
    const m0 = Math.max(max, 1024);
    const u = byteUnitIndex(m0);
    const unit = 1024 ** u;
    const m = m0 / unit;
    step = niceStep(m / 4);
    top = Math.ceil(m / step - 1e-9) * step * unit;
    step *= unit;
    label = (v) => `${trimNumber(v / unit)} ${byteUnitName(u)}/s`;
  } else {
    const m = Math.max(max, 4);
    step = Math.max(1, Math.round(niceStep(m / 4)));
    top = Math.ceil(m / step) * step;
    label = (v) => String(v);
  }
  const ticks = [];
  for (let v = 0; v <= top + step / 1e6; v += step) ticks.push(v);
  return { ticks, frac: (v) => v / top, label };
}

function cssVar(style, name, fallback) {
  const v = style.getPropertyValue(name).trim();
  return v || fallback;
}

/**
 * Draws series = [{ label, colorVar, dash, step, points: [{ t, v }] }] over the spanMs that
 * ends at now. kind is 'bytes', 'count' or 'duration' (nanoseconds, on a logarithmic axis).
 * Points farther apart than gapMs, or with a null value between them, are not joined.
 * emptyText is written across a chart with no point in the window. Returns the largest value
 * in the window.
 */
export function drawTimeChart(canvas, { series, now, spanMs, kind, gapMs, emptyText }) {
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return 0;
  const dpr = window.devicePixelRatio || 1;
  const bw = Math.round(width * dpr);
  const bh = Math.round(height * dpr);
  if (canvas.width !== bw || canvas.height !== bh) {
    canvas.width = bw;
    canvas.height = bh;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const style = getComputedStyle(canvas);
  const text = cssVar(style, '--chart-text', '#333');
  const grid = cssVar(style, '--chart-grid', '#ddd');
  ctx.font = `12px ${style.fontFamily}`;

  const t0 = now - spanMs;
  let max = 0;
  let min = Infinity;
  let any = false;
  for (const s of series) {
    for (const p of s.points) {
      if (p.t < t0 || p.v === null || p.v === undefined) continue;
      any = true;
      if (p.v > max) max = p.v;
      if (p.v < min) min = p.v;
    }
  }
  const sc = axisScale(min, max, kind);
  const { ticks } = sc;
  const labels = ticks.map(sc.label);
  const left = Math.ceil(Math.max(...labels.map((l) => ctx.measureText(l).width))) + 12;
  const right = 12;
  const top = 10;
  const bottom = 24;
  const pw = Math.max(10, width - left - right);
  const ph = Math.max(10, height - top - bottom);
  const x = (t) => left + ((t - t0) / spanMs) * pw;
  const y = (v) => top + ph - sc.frac(v) * ph;

  // Value axis: a line per step, labelled on the left.
  ctx.lineWidth = 1;
  ctx.strokeStyle = grid;
  ctx.fillStyle = text;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  ticks.forEach((v, i) => {
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + pw, yy);
    ctx.stroke();
    ctx.fillText(labels[i], left - 6, yy);
  });

  // Time axis: a mark every minute, "now" on the right.
  ctx.textBaseline = 'top';
  // Labels go left to right; one that would touch its neighbour (or "now") is left out.
  const minutes = Math.round(spanMs / 60000);
  const nowLeft = left + pw - ctx.measureText('now').width;
  let lastRight = -Infinity;
  for (let k = minutes; k >= 0; k--) {
    const xx = Math.round(x(now - k * 60000)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(xx, top + ph);
    ctx.lineTo(xx, top + ph + 4);
    ctx.stroke();
    const label = k === 0 ? 'now' : `−${k} min`;
    const w = ctx.measureText(label).width;
    // The leftmost label starts at its mark, "now" ends at its mark, the others are centred.
    const x0 = k === minutes ? xx : k === 0 ? xx - w : xx - w / 2;
    if (k !== 0 && (x0 < lastRight + 8 || x0 + w > nowLeft - 8)) continue;
    ctx.textAlign = 'left';
    ctx.fillText(label, x0, top + ph + 7);
    lastRight = x0 + w;
  }

  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top - 2, pw, ph + 4);
  ctx.clip();
  for (const s of series) {
    const color = cssVar(style, s.colorVar, '#06c');
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.setLineDash(s.dash || []);
    let prev = null;
    let run = 0;
    ctx.beginPath();
    for (const p of s.points) {
      if (p.t < t0 - gapMs || p.v === null || p.v === undefined) {
        prev = null;
        continue;
      }
      const px = x(p.t);
      const py = y(p.v);
      if (!prev || p.t - prev.t > gapMs) {
        if (run === 1 && prev) ctx.fillRect(x(prev.t) - 1.5, y(prev.v) - 1.5, 3, 3);
        ctx.moveTo(px, py);
        run = 1;
      } else {
        if (s.step) ctx.lineTo(px, y(prev.v));
        ctx.lineTo(px, py);
        run++;
      }
      prev = p;
    }
    ctx.stroke();
    if (run === 1 && prev) ctx.fillRect(x(prev.t) - 1.5, y(prev.v) - 1.5, 3, 3);
  }
  ctx.restore();
  ctx.setLineDash([]);

  if (!any && emptyText) {
    ctx.fillStyle = text;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(emptyText, left + pw / 2, top + ph / 2);
  }
  return max;
}
