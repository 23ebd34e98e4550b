// What a person reads on the dashboard: counters as formatted text ("1000 B", "1.5 KiB"), the
// state as words, the reason next to a listener that failed at start-up or whose start was
// refused, and the same counters when the page polls because the event stream is refused.

import assert from 'node:assert/strict';
import net from 'node:net';
import test from 'node:test';
import {
  DEADLINE_MS, echoConnection, launchBrowser, rowOf, shot, startDaemon, tempDir, waitForState,
} from './helpers.mjs';

/** Waits until the text of a cell of listener id's row is exactly text, and returns it. */
async function waitForCellText(page, id, column, text) {
  const sel = `${rowOf(id)} .c-${column}`;
  try {
    await page.waitForFunction(([s, want]) => document.querySelector(s)?.innerText.trim() === want,
      [sel, text], { timeout: DEADLINE_MS });
  } catch (e) {
    const seen = await page.locator(sel).innerText().catch(() => '(no such cell)');
    throw new Error(`${sel} reads "${seen.trim()}", not "${text}" within ${DEADLINE_MS} ms`, { cause: e });
  }
}

/** Echoes n bytes through a new connection to port and closes it. */
async function echoBytes(port, n) {
  const conn = await echoConnection(port);
  conn.send(Buffer.alloc(n, 0x61));
  await conn.echoed(n);
  assert.equal(conn.received(), n);
  await conn.close();
}

/** The port of a running listener, from the API. */
async function boundPort(daemon, id) {
  const { status, body } = await daemon.api('GET', `/api/v1/listeners/${id}`);
  assert.equal(status, 200, JSON.stringify(body));
  return Number(/:(\d+)$/.exec(body.status.bound[0])[1]);
}

/** A TCP server on 127.0.0.1 that holds a port; close() gives it back. */
async function holdPort(port = 0) {
  const server = net.createServer((s) => s.destroy());
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
  });
  return { port: server.address().port, close: () => new Promise((resolve) => server.close(resolve)) };
}

async function createEcho(daemon, id, extra = {}) {
  const { status, body } = await daemon.api('POST', '/api/v1/listeners', {
    id, service: 'echo', address: '127.0.0.1', port: 0, ...extra,
  });
  assert.equal(status, 201, JSON.stringify(body));
  return body;
}

test('counters read as formatted text and the state as words, over the event stream', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    await createEcho(daemon, 'read-echo');
    const port = await boundPort(daemon, 'read-echo');
    await page.goto(`${daemon.url}/`);
    await page.waitForFunction(() => document.querySelector('#feed-mode')?.dataset.mode === 'stream', null, { timeout: DEADLINE_MS });
    assert.match(await page.locator('#feed-mode-text').innerText(), /^Live: event stream/);
    await waitForState(page, 'read-echo', 'running');
    assert.match(await page.locator(`${rowOf('read-echo')} .c-state`).innerText(), /^\W*running$/);
    await waitForCellText(page, 'read-echo', 'bytes_in', '0 B');

    await echoBytes(port, 1000);
    await waitForCellText(page, 'read-echo', 'bytes_in', '1000 B');
    await waitForCellText(page, 'read-echo', 'bytes_out', '1000 B');
    await echoBytes(port, 536);
    await waitForCellText(page, 'read-echo', 'bytes_in', '1.5 KiB');
    await waitForCellText(page, 'read-echo', 'bytes_out', '1.5 KiB');
    assert.equal(await page.locator(`${rowOf('read-echo')} .c-bytes_in`).getAttribute('title'), '1,536 bytes');
    await waitForCellText(page, 'read-echo', 'active', '0');
    await shot(page, 'reading-01-counters');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('with the event stream refused the page polls, and its counters still move', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  let streamAsks = 0;
  try {
    await page.route('**/api/v1/events*', (route) => {
      streamAsks++;
      return route.fulfill({ status: 404, contentType: 'application/problem+json', body: '{"status":404}' });
    });
    await createEcho(daemon, 'poll-echo');
    const port = await boundPort(daemon, 'poll-echo');
    await page.goto(`${daemon.url}/`);
    await page.waitForFunction(() => document.querySelector('#feed-mode')?.dataset.mode === 'polling', null, { timeout: DEADLINE_MS });
    assert.match(await page.locator('#feed-mode-text').innerText(), /^Live: polling every 2 s/);
    assert.ok(streamAsks >= 1, 'the page asked for the event stream first');
    await waitForState(page, 'poll-echo', 'running');

    // A listener created behind the page's back appears, and traffic shows, by polling alone.
    await echoBytes(port, 1000);
    // The rates are the counters' differences between two polls: non-zero until the next one.
    await page.waitForFunction((sel) => Number(document.querySelector(sel)?.dataset.value) > 0,
      `${rowOf('poll-echo')} .c-rate_in`, { timeout: DEADLINE_MS });
    await waitForCellText(page, 'poll-echo', 'bytes_in', '1000 B');
    await waitForCellText(page, 'poll-echo', 'bytes_out', '1000 B');
    await createEcho(daemon, 'poll-late');
    await waitForState(page, 'poll-late', 'running');
    await daemon.api('POST', '/api/v1/listeners/poll-late/stop');
    await waitForState(page, 'poll-late', 'stopped');
    assert.match(await page.locator(`${rowOf('poll-late')} .c-state`).innerText(), /stopped/);
    assert.equal(await page.locator('#feed-mode').getAttribute('data-mode'), 'polling');
    await shot(page, 'reading-02-polling');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('a listener whose port is taken says why, next to it', { timeout: 60000 }, async () => {
  const stateDir = tempDir('reading');
  let daemon = await startDaemon({ stateDir });
  let browser = null;
  let held = null;
  try {
    // A listener saved on a fixed port; then another program takes that port before a restart.
    const free = await holdPort();
    const port = free.port;
    await free.close();
    await createEcho(daemon, 'read-clash', { port });
    assert.equal(await daemon.stop(), 0);
    held = await holdPort(port);
    daemon = await startDaemon({ stateDir });
    const { body } = await daemon.api('GET', '/api/v1/listeners/read-clash');
    assert.equal(body.status.state, 'failed', JSON.stringify(body.status));
    assert.ok(body.status.error, 'the daemon says why it failed');

    browser = await launchBrowser();
    const { page } = browser;
    await page.goto(`${daemon.url}/`);
    await waitForState(page, 'read-clash', 'failed');
    const cell = page.locator(`${rowOf('read-clash')} .c-state`);
    assert.match(await cell.locator('.state-text').innerText(), /^failed$/);
    assert.equal((await cell.locator('.state-reason').first().innerText()).trim(), body.status.error);
    assert.match(body.status.error, /in use/i);

    // Start from the page while the port is still taken: refused (409), and the reason stays
    // next to the listener, not only in a passing notice.
    await page.click(`${rowOf('read-clash')} .row-link`);
    await page.locator('#details').waitFor({ state: 'visible' });
    const refused = await daemon.api('POST', '/api/v1/listeners/read-clash/start');
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    await page.click('#action-start');
    await page.waitForFunction((sel) => /Start refused: /.test(document.querySelector(sel)?.innerText || ''),
      `${rowOf('read-clash')} .c-state`, { timeout: DEADLINE_MS });
    const reasons = await cell.locator('.state-reason').allInnerTexts();
    assert.ok(reasons.includes(`Start refused: ${refused.body.detail}`), `the row reads: ${reasons.join(' | ')}`);
    assert.match(await page.locator('#details-state').innerText(), /Start refused: .*in use/i);
    await shot(page, 'reading-03-port-taken');

    // Once the port is free, a start from the page runs it and the reasons go.
    await held.close();
    held = null;
    await page.click('#action-start');
    await waitForState(page, 'read-clash', 'running');
    assert.equal(await cell.locator('.state-reason').count(), 0, 'no reason is left once it runs');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    if (held) await held.close();
    if (browser) await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
