// Only what applies: a listener's panel lists the counters that mean something for its transport
// (no datagrams on TCP, no connections on UDP, TLS only with options.tls), each refusal or drop
// with its reason in words, the service's own counters named and explained as GET
// /api/v1/services declares them, and a counter its transport would hide once it is not zero.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { promisify } from 'node:util';
import {
  DEADLINE_MS, PHONE, LAPTOP, launchBrowser, rowOf, shot, startDaemon, tempDir,
} from './helpers.mjs';

const run = promisify(execFile);

/** A self-signed certificate for 127.0.0.1 made with openssl: { cert, key } (paths). */
async function makeCertificate(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', key, '-out', cert], { timeout: DEADLINE_MS * 2 });
  return { cert, key };
}

async function create(daemon, body) {
  const { status, body: res } = await daemon.api('POST', '/api/v1/listeners', { address: '127.0.0.1', port: 0, ...body });
  assert.equal(status, 201, JSON.stringify(res));
  return res;
}

/** The rows of a key-value table of the details: [{ label, why, value }]. */
async function rowsOf(page, table) {
  return page.evaluate((sel) => [...document.querySelectorAll(`${sel} tbody tr`)].map((tr) => ({
    label: tr.cells[0].querySelector('.kv-label').textContent,
    why: tr.cells[0].querySelector('.kv-why').hidden ? '' : tr.cells[0].querySelector('.kv-why').textContent,
    value: tr.cells[1].textContent,
  })), table);
}

async function open(page, id) {
  await page.click(`${rowOf(id)} .row-link`);
  // The service's counters are shown once GET /api/v1/services said which apply: in rows, or as
  // the hint that there are none.
  await page.waitForFunction((want) => document.querySelector('#details')?.dataset.id === want
    && document.querySelector('#metrics-table tbody tr')
    && (!document.querySelector('#service-table').hidden || !document.querySelector('#service-empty').hidden),
  id, { timeout: DEADLINE_MS });
}

test('a panel shows the counters of its transport and service, with their reasons', { timeout: 60000 }, async () => {
  const work = tempDir('counters');
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    const { cert, key } = await makeCertificate(work);
    await create(daemon, { id: 'cnt-tcp', service: 'echo' });
    await create(daemon, { id: 'cnt-udp', service: 'echo', transport: 'udp' });
    await create(daemon, { id: 'cnt-tls', service: 'echo', options: { tls: { cert_file: cert, key_file: key } } });
    const { status, body: echo } = await daemon.api('GET', '/api/v1/services/echo');
    assert.equal(status, 200);
    assert.ok(echo.counters.length > 0, 'echo declares counters');

    // GET /api/v1/services answers only once the TCP panel is open: until then the panel cannot
    // know which of echo's counters apply to TCP, and shows none of them.
    let answer;
    const answered = new Promise((resolve) => { answer = resolve; });
    await page.route('**/api/v1/services', async (route) => {
      await answered;
      await route.continue();
    });
    await page.goto(`${daemon.url}/`);
    await page.waitForFunction(() => document.querySelectorAll('#listeners-body tr').length === 3, null, { timeout: DEADLINE_MS });
    await page.click(`${rowOf('cnt-tcp')} .row-link`);
    await page.waitForFunction(() => document.querySelector('#details')?.dataset.id === 'cnt-tcp'
      && document.querySelector('#metrics-table tr[data-key="connections_active"]'), null, { timeout: DEADLINE_MS });
    assert.deepEqual(await page.evaluate(() => ({
      rows: document.querySelectorAll('#service-table tbody tr').length,
      table: !document.querySelector('#service-table').hidden,
      empty: !document.querySelector('#service-empty').hidden,
    })), { rows: 0, table: false, empty: false }, 'no service counter before the services are known');
    answer();

    await open(page, 'cnt-tcp');
    let rows = await rowsOf(page, '#metrics-table');
    let labels = rows.map((r) => r.label);
    assert.deepEqual(labels.filter((l) => /datagram|Dropped/i.test(l)), [], `no datagram counter on TCP: ${labels}`);
    assert.deepEqual(labels.filter((l) => /TLS/.test(l)), [], 'no TLS counter without options.tls');
    for (const l of ['Active connections', 'Connections served', 'Connections rejected', 'Idle time-outs', 'Errors', 'Bytes in']) {
      assert.ok(labels.includes(l), `${l} in ${labels}`);
    }
    const maxConn = rows.find((r) => r.label === 'Rejected: max connections');
    assert.equal(maxConn?.why, 'the listener had max_connections open');
    assert.equal(maxConn.value, '0');
    for (const r of rows.filter((x) => /^Rejected: /.test(x.label))) assert.ok(r.why.length > 10, `${r.label} says why`);
    // A person reads the reason under the name, not run into it: the page's whole style sheet
    // applies at this width (a rule lost in an unclosed block would leave them on one line).
    const layout = await page.evaluate(() => {
      const th = [...document.querySelectorAll('#metrics-table th')].find((t) => /^Rejected: max connections/.test(t.textContent));
      const name = th.querySelector('.kv-label').getBoundingClientRect();
      const why = th.querySelector('.kv-why').getBoundingClientRect();
      return { below: why.top >= name.bottom - 1, display: getComputedStyle(th.querySelector('.kv-why')).display };
    });
    assert.deepEqual(layout, { below: true, display: 'block' }, 'the reason is on a line of its own');

    // The service's counters: only those that can count on TCP (echo's are UDP's alone).
    assert.ok(echo.counters.every((c) => Array.isArray(c.transports)), 'each counter says its transports');
    let svc = await rowsOf(page, '#service-table');
    assert.deepEqual(svc.map((r) => r.label), echo.counters.filter((c) => c.transports.includes('tcp')).map((c) => c.name));
    assert.ok(!svc.some((r) => r.label === 'dropped_too_long'), 'no datagram counter of the service on TCP');
    assert.equal(await page.locator('#service-empty').innerText(), 'This service keeps no counters of its own on this transport.');
    await shot(page, 'counters-01-tcp');

    await open(page, 'cnt-udp');
    rows = await rowsOf(page, '#metrics-table');
    labels = rows.map((r) => r.label);
    for (const l of ['Connections rejected', 'Active connections', 'Connections served', 'Idle time-outs']) {
      assert.ok(!labels.includes(l), `no ${l} on UDP: ${labels}`);
    }
    assert.deepEqual(labels.filter((l) => /^Rejected/.test(l)), []);
    for (const l of ['Datagrams in', 'Datagrams out', 'Datagrams dropped']) assert.ok(labels.includes(l), `${l} in ${labels}`);
    assert.equal(rows.find((r) => r.label === 'Dropped: source over budget')?.why, 'their source passed reply_rate_per_source');
    assert.equal(rows.find((r) => r.label === 'Dropped: listener over budget')?.why, 'the listener passed reply_rate');
    // On UDP every counter of echo, in its declared order, each with its help.
    svc = await rowsOf(page, '#service-table');
    assert.deepEqual(svc.map((r) => r.label), echo.counters.map((c) => c.name));
    assert.deepEqual(svc.map((r) => r.why), echo.counters.map((c) => c.help));
    assert.match(await page.locator('#service-table').innerText(), new RegExp(echo.counters[0].help.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    await shot(page, 'counters-02-udp');

    // TLS counters with options.tls only, each failure with its reason.
    await open(page, 'cnt-tls');
    rows = await rowsOf(page, '#metrics-table');
    labels = rows.map((r) => r.label);
    assert.ok(labels.includes('TLS handshakes'), `${labels}`);
    const tls = rows.filter((r) => /^TLS failed: /.test(r.label));
    assert.equal(tls.length, 5, JSON.stringify(tls));
    for (const r of tls) assert.ok(r.why.length > 10, `${r.label} says why`);
    assert.equal(rows.find((r) => r.label === 'TLS failed: no client certificate')?.why,
      'the client sent none and client_ca_file requires one');

    await page.setViewportSize(PHONE);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px at 360 px`);
    await shot(page, 'counters-03-udp-phone');
    await page.setViewportSize(LAPTOP);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    rmSync(work, { recursive: true, force: true });
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('a counter its transport would hide is shown once it is not zero', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    await create(daemon, { id: 'cnt-odd', service: 'echo' });
    // The page polls (no stream), and the daemon's answer says this TCP listener dropped
    // datagrams: whatever the reason, a value that is not zero is never hidden.
    await page.route('**/api/v1/events', (route) => route.fulfill({
      status: 404, contentType: 'application/problem+json', body: '{"status":404}',
    }));
    await page.route('**/api/v1/listeners', async (route) => {
      const res = await route.fetch();
      const body = await res.json();
      for (const l of body.listeners) l.metrics.datagrams_dropped_loop = 3;
      return route.fulfill({ response: res, body: JSON.stringify(body) });
    });
    await page.goto(`${daemon.url}/`);
    await page.waitForFunction(() => document.querySelector('#feed-mode')?.dataset.mode === 'polling', null, { timeout: DEADLINE_MS });
    await page.waitForFunction(() => document.querySelectorAll('#listeners-body tr').length === 1, null, { timeout: DEADLINE_MS });
    await open(page, 'cnt-odd');
    const rows = await rowsOf(page, '#metrics-table');
    const labels = rows.map((r) => r.label);
    assert.deepEqual(rows.filter((r) => /^Dropped/.test(r.label)).map((r) => [r.label, r.value]),
      [['Dropped: from our own endpoint', '3']]);
    assert.ok(!labels.includes('Datagrams in'), 'the zero datagram counters stay hidden');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
