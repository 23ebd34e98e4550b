// The service time of a listener's requests on the dashboard: a chart of p50, p99 and p99.9 per
// second from the event stream's metrics ticks (latency_interval), with a gap for a second
// without requests, the cumulative figures as rows ("1.2 ms"), and, when the page polls, a
// chart that says it needs the live event stream.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import test from 'node:test';
import {
  DEADLINE_MS, echoConnection, launchBrowser, rowOf, shot, startDaemon,
} from './helpers.mjs';
import { formatNs } from '../../web/format.js';
import { forgetRates, latencyOf, observeLatency } from '../../web/rates.js';

async function createEcho(daemon, id, extra = {}) {
  const { status, body } = await daemon.api('POST', '/api/v1/listeners', {
    id, service: 'echo', address: '127.0.0.1', port: 0, ...extra,
  });
  assert.equal(status, 201, JSON.stringify(body));
  return Number(/:(\d+)$/.exec(body.status.bound[0])[1]);
}

/** The rows of a key-value table of the details as { label: value }. */
async function rowsOf(page, table) {
  return page.evaluate((sel) => Object.fromEntries([...document.querySelectorAll(`${sel} tbody tr`)]
    .map((tr) => [tr.cells[0].querySelector('.kv-label').textContent, tr.cells[1].textContent])), table);
}

test('service times read as "850 ns", "12.3 µs", "1.2 ms", "2.5 s"', () => {
  assert.equal(formatNs(850), '850 ns');
  assert.equal(formatNs(12345), '12.3 µs');
  assert.equal(formatNs(1234567), '1.2 ms');
  assert.equal(formatNs(250e6), '250 ms');
  assert.equal(formatNs(2.5e9), '2.5 s');
  assert.equal(formatNs(undefined), '—');
});

test('a second without requests is a gap in the latency history, not a zero', () => {
  observeLatency('g', 1000, undefined); // the first tick carries none
  assert.deepEqual(latencyOf('g'), []);
  observeLatency('g', 2000, { count: 3, p50_ns: 1000, p90_ns: 2000, p99_ns: 4000, p999_ns: 4000, max_ns: 4096 });
  observeLatency('g', 3000, { count: 0, p50_ns: 0, p90_ns: 0, p99_ns: 0, p999_ns: 0, max_ns: 0 });
  assert.deepEqual(latencyOf('g').map((p) => [p.t, p.count, p.p50, p.p99, p.p999]),
    [[2000, 3, 1000, 4000, 4000], [3000, 0, null, null, null]]);
  forgetRates('g');
  assert.deepEqual(latencyOf('g'), []);
});

test('echo traffic draws the service time chart and its figures', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  let sender = null;
  let conn = null;
  try {
    const port = await createEcho(daemon, 'lat-echo');
    await page.goto(`${daemon.url}/#lat-echo`);
    await page.waitForFunction(() => document.querySelector('#feed-mode')?.dataset.mode === 'stream', null, { timeout: DEADLINE_MS });
    await page.locator('#details').waitFor({ state: 'visible' });
    assert.match(await page.locator('#chart-latency').getAttribute('aria-label'), /no request answered yet/);
    assert.equal((await rowsOf(page, '#latency-table'))['Requests answered'], '0');

    // Requests keep coming until the chart says what they took: a condition, not a pause.
    conn = await echoConnection(port);
    const chunk = randomBytes(512);
    let sent = 0;
    sender = setInterval(() => {
      conn.send(chunk);
      sent += chunk.length;
    }, 20);
    await page.waitForFunction(() => /now p50 \d[\d.]* (ns|µs|ms|s), p99 \d[\d.]* (ns|µs|ms|s), p99\.9 \d/.test(
      document.querySelector('#chart-latency').getAttribute('aria-label') || ''), null, { timeout: DEADLINE_MS });
    const label = await page.locator('#chart-latency').getAttribute('aria-label');
    const p99 = /p99 (\d[\d.]*) (ns|µs|ms|s)/.exec(label);
    assert.ok(p99 && Number(p99[1]) > 0, `a non-zero p99 in: ${label}`);
    assert.match(label, /^Service time of lat-echo over the last 5 minutes: now p50 .*; peak p99 \d[\d.]* (ns|µs|ms|s), p99\.9 \d/);
    await shot(page, 'latency-01-chart');

    clearInterval(sender);
    sender = null;
    await conn.echoed(sent);
    const rows = await rowsOf(page, '#latency-table');
    assert.ok(Number(rows['Requests answered'].replace(/,/g, '')) > 0, JSON.stringify(rows));
    for (const k of ['Median (p50)', 'p99', 'p99.9', 'Longest']) assert.match(rows[k], /^\d[\d.]* (ns|µs|ms|s)$/, `${k}: ${rows[k]}`);
    const { body } = await daemon.api('GET', '/api/v1/listeners/lat-echo/metrics');
    assert.ok(body.latency.count > 0);
    assert.equal(await page.locator('#latency-table').getAttribute('hidden'), null);

    // The traffic stopped: seconds without requests say so instead of a zero.
    await page.waitForFunction(() => /no requests now; peak p99/.test(
      document.querySelector('#chart-latency').getAttribute('aria-label') || ''), null, { timeout: DEADLINE_MS });
    assert.match(await page.locator(`${rowOf('lat-echo')} .c-state`).innerText(), /running/);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    if (sender) clearInterval(sender);
    if (conn) await conn.close();
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('a page that polls says the latency chart needs the live event stream', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    await page.route('**/api/v1/events', (route) => route.fulfill({
      status: 404, contentType: 'application/problem+json', body: '{"status":404}',
    }));
    await createEcho(daemon, 'lat-poll');
    await page.goto(`${daemon.url}/#lat-poll`);
    await page.waitForFunction(() => document.querySelector('#feed-mode')?.dataset.mode === 'polling', null, { timeout: DEADLINE_MS });
    await page.locator('#details').waitFor({ state: 'visible' });
    await page.waitForFunction(() => /latency needs the live event stream/.test(
      document.querySelector('#chart-latency').getAttribute('aria-label') || ''), null, { timeout: DEADLINE_MS });
    // The cumulative figures still come with the listener.
    assert.equal((await rowsOf(page, '#latency-table'))['Requests answered'], '0');
    await shot(page, 'latency-02-polling');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
