// Failures in plain sight: a listener that could not take its port says why and since when in
// its row (short) and its panel (in full, with the local time and how long ago), and one whose
// old runner still drains connections after a move says how many and until when.

import assert from 'node:assert/strict';
import net from 'node:net';
import test from 'node:test';
import {
  DEADLINE_MS, PHONE, LAPTOP, accessibilityProblems, echoConnection, launchBrowser, rowOf, shot, startDaemon,
  tempDir, waitForState,
} from './helpers.mjs';

/** A TCP server on 127.0.0.1 that holds a port; close() gives it back. */
async function holdPort(port = 0) {
  const server = net.createServer((s) => s.destroy());
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
  });
  return { port: server.address().port, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** "23:10:04" as the page (en-GB, UTC) writes a time of day. */
function clock(iso) {
  return new Date(iso).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone: 'UTC' });
}

test('a listener whose port a test socket holds says why and since when', { timeout: 60000 }, async () => {
  const stateDir = tempDir('failures');
  let daemon = await startDaemon({ stateDir });
  let browser = null;
  let held = null;
  try {
    // A listener saved on a fixed port; a test socket takes that port before the next start.
    const free = await holdPort();
    const { port } = free;
    await free.close();
    const { status } = await daemon.api('POST', '/api/v1/listeners', {
      id: 'fail-echo', service: 'echo', address: '127.0.0.1', port,
    });
    assert.equal(status, 201);
    assert.equal(await daemon.stop(), 0);
    held = await holdPort(port);
    daemon = await startDaemon({ stateDir });
    const { body } = await daemon.api('GET', '/api/v1/listeners/fail-echo');
    assert.equal(body.status.state, 'failed', JSON.stringify(body.status));
    assert.match(body.status.error, /in use/i);

    browser = await launchBrowser();
    const { page } = browser;
    await page.goto(`${daemon.url}/`);
    await waitForState(page, 'fail-echo', 'failed');

    // The row: the state, the daemon's words, since when.
    const cell = page.locator(`${rowOf('fail-echo')} .c-state`);
    const row = await cell.innerText();
    assert.match(row, /failed/);
    assert.ok(row.includes(body.status.error), `the row reads: ${row}`);
    assert.match(row, /in use/i);
    assert.equal((await cell.locator('.state-since').innerText()).trim(), `since ${clock(body.status.since)}`);

    // The panel: the error in full, the local date and time, and how long ago.
    await page.click(`${rowOf('fail-echo')} .row-link`);
    const problem = page.locator('#details-problem');
    await problem.waitFor({ state: 'visible' });
    const text = await problem.innerText();
    assert.ok(text.includes(`Failed: ${body.status.error}`), `the panel reads: ${text}`);
    assert.match(text, new RegExp(`Since .*${clock(body.status.since)} \\(\\d+ s ago\\)`));
    await shot(page, 'failures-01-port-held');
    assert.deepEqual(await accessibilityProblems(page, '#details'), [], 'WCAG 2.1 AA of the panel with a failure');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(page, 'failures-01-port-held-dark');
    assert.deepEqual(await accessibilityProblems(page, '#details'), [], 'WCAG 2.1 AA of the panel with a failure, dark');
    await page.emulateMedia({ colorScheme: 'light' });

    await page.setViewportSize(PHONE);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px at 360 px`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, 'failures-02-port-held-phone');
    await page.setViewportSize(LAPTOP);

    // Once the port is free and it runs, both say nothing more.
    await held.close();
    held = null;
    await page.click('#action-start');
    await waitForState(page, 'fail-echo', 'running');
    await problem.waitFor({ state: 'hidden' });
    assert.equal(await cell.locator('.state-since').count(), 0);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    if (held) await held.close();
    if (browser) await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('a listener moved while a connection is open says what drains and until when', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  let conn = null;
  try {
    const { body: created } = await daemon.api('POST', '/api/v1/listeners', {
      id: 'drain-echo', service: 'echo', address: '127.0.0.1', port: 0, drain_timeout_ms: 120000,
    });
    const port = Number(/:(\d+)$/.exec(created.status.bound[0])[1]);
    await page.goto(`${daemon.url}/#drain-echo`);
    await waitForState(page, 'drain-echo', 'running');
    await page.locator('#details').waitFor({ state: 'visible' });

    conn = await echoConnection(port);
    conn.send(Buffer.from('hello'));
    await conn.echoed(5);
    const moved = await holdPort();
    const newPort = moved.port;
    await moved.close();
    const patch = await daemon.api('PATCH', '/api/v1/listeners/drain-echo', { port: newPort });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    const { body } = await daemon.api('GET', '/api/v1/listeners/drain-echo');
    assert.equal(body.status.draining.length, 1, JSON.stringify(body.status));
    const d = body.status.draining[0];

    const cell = page.locator(`${rowOf('drain-echo')} .c-state`);
    await cell.locator('.state-drain').waitFor({ state: 'visible' });
    const want = d.connections === null ? 'their connections' : `${d.connections} connection${d.connections === 1 ? '' : 's'}`;
    assert.equal((await cell.locator('.state-drain').innerText()).trim(), `draining ${want} · until ${clock(d.deadline)}`);
    const problem = page.locator('#details-problem');
    await problem.waitFor({ state: 'visible' });
    const text = await problem.innerText();
    assert.match(text, /^Draining: /);
    assert.ok(text.includes(`${d.bound}: `), `the panel names the old address: ${text}`);
    assert.match(text, new RegExp(`cut at ${clock(d.deadline)} \\(in \\d+ (s|min)\\)`));
    await shot(page, 'failures-03-draining');

    // The connection ends: the drain is over, and so is what the page says of it.
    await conn.close();
    conn = null;
    await cell.locator('.state-drain').waitFor({ state: 'detached', timeout: DEADLINE_MS });
    await problem.waitFor({ state: 'hidden' });
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    if (conn) await conn.close();
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
