// The Fleet page: hidden on a daemon without a fleet view; with one, every node with its state
// in words, labels, offsets, listeners and rates, and the problem of a node that rejected.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import {
  BIN, DEADLINE_MS, PHONE, accessibilityProblems, launchBrowser, shot, startDaemon, tempDir,
} from './helpers.mjs';

const now = () => new Date().toISOString();

/* A GET /api/v1/fleet body as a viewing daemon answers it: n1 SYNCED, n2 ERROR, n3 OFFLINE. */
function fleetBody() {
  const listener = (id, port, rates) => ({
    id, service: 'echo', transport: 'tcp', port, state: 'running', enabled: true,
    rates, counters: rates ? { bytes_in: 4096, bytes_out: 4096, connections_total: 3 } : null,
  });
  return {
    connected: true,
    since: now(),
    updated: now(),
    status_interval_ms: 10000,
    nodes: [
      {
        node: 'n1', boot: '0011223344556677', labels: { role: 'edge', zone: 'a' }, state: 'SYNCED',
        since: now(), last_seen: now(), online: true, version: '0.1.0', started: now(),
        revision: 2, etag: '"r2"', applied_offset: 4, desired_offset: 4,
        last_result: { node: 'n1', result: 'applied', offset: 4, revision: 2, etag: '"r2"', applied_offset: 4, problem: null },
        bridge: { state: 'connected' },
        listeners: [listener('e1', 17001, { bytes_in: 2048, bytes_out: 2048, connections: 1.5, datagrams_in: 0, datagrams_out: 0 })],
      },
      {
        node: 'n2', boot: '8899aabbccddeeff', labels: { role: 'edge', zone: 'b' }, state: 'ERROR',
        since: now(), last_seen: now(), online: true, version: '0.1.0', started: now(),
        revision: 1, etag: '"r1"', applied_offset: 3, desired_offset: 5,
        last_result: {
          node: 'n2', result: 'rejected', offset: 5, revision: 1, etag: '"r1"', applied_offset: 3,
          problem: { type: 'about:blank', title: 'Conflict', status: 409, detail: 'port 17002 is in use', field: 'listeners[0].port' },
        },
        bridge: { state: 'connected' },
        listeners: [listener('e1', 17003, null)],
      },
      {
        node: 'n3', labels: {}, state: 'OFFLINE', since: now(), last_seen: '2026-12-01T08:00:00.000Z',
        online: false, revision: null, etag: null, applied_offset: null, desired_offset: null,
        last_result: null, bridge: null, listeners: [],
      },
    ],
    counts: { SYNCED: 1, PENDING: 0, ERROR: 1, STALE: 0, OFFLINE: 1 },
    ignored: 0,
  };
}

test('the Fleet tab stays hidden on a daemon without a fleet view', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    const answered = page.waitForResponse((r) => r.url().endsWith('/api/v1/fleet'), { timeout: DEADLINE_MS });
    await page.goto(`${daemon.url}/`);
    assert.equal((await answered).status(), 404);
    await page.waitForFunction(() => document.readyState === 'complete');
    assert.equal(await page.locator('#pages').isVisible(), false, 'no tabs without a view');
    assert.equal(await page.locator('#fleet').isVisible(), false);
    assert.equal(await page.locator('#listeners-heading').isVisible(), true);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('the Fleet page shows each node\'s state in words, its listeners and rates, and the problem of a node that rejected', { timeout: 90000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page, context } = browser;
  let body = fleetBody();
  let asked = 0;
  await context.route('**/api/v1/fleet', (route) => {
    asked++;
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
  });
  try {
    await page.goto(`${daemon.url}/`);
    await page.locator('#tab-fleet').waitFor({ state: 'visible' });
    // keyboard: the tab is a button reached with Tab and pressed with Enter
    await page.locator('#tab-fleet').focus();
    await page.keyboard.press('Enter');
    await page.locator('#fleet').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#listeners-heading').isVisible(), false, 'one page at a time');
    assert.equal(await page.getAttribute('#tab-fleet', 'aria-pressed'), 'true');

    const node = (n) => page.locator(`#fleet-nodes [data-node="${n}"]`);
    await node('n3').waitFor();
    assert.deepEqual(await page.locator('#fleet-nodes > article').evaluateAll((els) => els.map((e) => e.dataset.node)),
      ['n1', 'n2', 'n3'], 'sorted by name');
    assert.equal(await node('n1').locator('.state-text').innerText(), 'SYNCED', 'the state is a word');
    assert.equal(await node('n2').locator('.state-text').innerText(), 'ERROR');
    assert.equal(await node('n3').locator('.state-text').innerText(), 'OFFLINE');
    assert.match(await node('n1').innerText(), /role=edge/);
    assert.match(await node('n1').innerText(), /4 applied · 4 desired/);
    const row = node('n1').locator('tr[data-id="e1"]');
    assert.match(await row.innerText(), /17001/);
    assert.match(await row.innerText(), /2\.0 KiB\/s/, 'the rate from the latest tick');
    assert.match(await row.innerText(), /1\.5/);
    const problem = node('n2').locator('.fleet-problem');
    assert.match(await problem.innerText(), /port 17002 is in use/);
    assert.match(await problem.innerText(), /listeners\[0\]\.port/);
    assert.match(await problem.innerText(), /offset 5/);
    assert.equal(await node('n1').locator('.fleet-problem').count(), 0, 'no problem next to a synced node');
    assert.match(await page.locator('#fleet-counts').innerText(), /3 nodes: 1 SYNCED · 0 PENDING · 1 ERROR · 0 STALE · 1 OFFLINE/);
    assert.match(await page.locator('#fleet-live').innerText(), /Live from the broker/);
    assert.deepEqual(await accessibilityProblems(page, '#fleet'), []);
    await shot(page, 'fleet-01-nodes');

    // polled: a change shows without a reload; the view's broker connection going down is said
    const before = asked;
    body = fleetBody();
    body.connected = false;
    body.nodes[1].state = 'SYNCED';
    body.nodes[1].last_result = { node: 'n2', result: 'applied', offset: 6, applied_offset: 6, problem: null };
    await page.waitForFunction(() => /Not live/.test(document.querySelector('#fleet-live').textContent),
      null, { timeout: DEADLINE_MS });
    assert.ok(asked > before, 'the page polls the view');
    assert.equal(await node('n2').locator('.state-text').innerText(), 'SYNCED');
    assert.equal(await node('n2').locator('.fleet-problem').count(), 0);

    await page.setViewportSize(PHONE);
    body = fleetBody();
    await page.waitForFunction(() => /Live from/.test(document.querySelector('#fleet-live').textContent),
      null, { timeout: DEADLINE_MS });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `nothing wider than a phone (${overflow} px too wide)`);
    await shot(page, 'fleet-02-phone');
    await page.emulateMedia({ colorScheme: 'dark' });
    assert.deepEqual(await accessibilityProblems(page, '#fleet'), [], 'readable in dark mode too');
    await shot(page, 'fleet-03-phone-dark');

    await page.locator('#tab-listeners').click();
    assert.equal(await page.locator('#listeners-heading').isVisible(), true);
    assert.equal(await page.locator('#fleet').isVisible(), false);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

/*
 * With a broker (scripts/test.sh and scripts/e2e.sh run one and export SOCKSERV_TEST_AMQP): two
 * daemons joined as n1 and n2, a third with --fleet-view; the page shows both SYNCED with their
 * listeners; a fleet apply that n2 rejects (the port it names is n1's, taken) shows n2 in ERROR
 * with the problem's detail, n1 still SYNCED.
 */
const AMQP = process.env.SOCKSERV_TEST_AMQP;

function runCli(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

test('the Fleet page follows real nodes over the broker: SYNCED with listeners, then ERROR with the problem of a rejected apply', {
  timeout: 180000,
  skip: AMQP ? false : 'no broker (SOCKSERV_TEST_AMQP is set by scripts/test.sh and scripts/e2e.sh)',
}, async () => {
  const prefix = `t${process.pid}-view`;
  const fleet = ['--amqp', AMQP, '--amqp-prefix', prefix, '--amqp-heartbeat', '2', '--fleet-status-interval', '1s'];
  const daemons = [];
  const browser = await launchBrowser();
  const { page } = browser;
  const work = tempDir('fleet');
  try {
    const n1 = await startDaemon({ args: [...fleet, '--node', 'n1', '--label', 'role=edge', '--label', 'zone=a'] });
    daemons.push(n1);
    const n2 = await startDaemon({ args: [...fleet, '--node', 'n2', '--label', 'role=edge', '--label', 'zone=b'] });
    daemons.push(n2);
    const viewer = await startDaemon({ args: [...fleet, '--node', 'viewer', '--fleet-view'] });
    daemons.push(viewer);
    for (const d of [n1, n2]) {
      const created = await d.api('POST', '/api/v1/listeners', { id: 'e1', service: 'echo', address: '127.0.0.1', port: 0 });
      assert.equal(created.status, 201, JSON.stringify(created.body));
    }
    const n1Listener = (await n1.api('GET', '/api/v1/listeners/e1')).body;
    const taken = Number(/:(\d+)$/.exec(n1Listener.status.bound[0])[1]);

    await page.goto(`${viewer.url}/`);
    await page.locator('#tab-fleet').click();
    const node = (n) => page.locator(`#fleet-nodes [data-node="${n}"]`);
    const waitState = (n, s) => page.waitForFunction(([name, state]) => {
      const card = document.querySelector(`#fleet-nodes [data-node="${name}"]`);
      return card?.dataset.state === state;
    }, [n, s], { timeout: 30000 });
    await waitState('n1', 'SYNCED');
    await waitState('n2', 'SYNCED');
    await page.waitForFunction(() => ['n1', 'n2'].every((n) => document.querySelector(
      `#fleet-nodes [data-node="${n}"] tr[data-id="e1"]`)), null, { timeout: 30000 });
    assert.match(await node('n1').innerText(), /role=edge/);
    assert.match(await node('n1').locator('tr[data-id="e1"]').innerText(), new RegExp(String(taken)));
    assert.match(await page.locator('#fleet-live').innerText(), /Live from the broker/);
    await shot(page, 'fleet-04-broker-synced');

    const file = path.join(work, 'config.json');
    writeFileSync(file, JSON.stringify({ listeners: [{ id: 'e1', service: 'echo', address: '127.0.0.1', port: taken }] }));
    const applied = await runCli(['fleet', ...fleet.slice(0, 4), 'apply', '-f', file, '--node', 'n2', '--wait', '20s']);
    assert.equal(applied.code, 1, `fleet apply exits 1 when a node rejects\n${applied.out}`);
    assert.match(applied.out, /n2\s+rejected/i);

    await waitState('n2', 'ERROR');
    const problem = node('n2').locator('.fleet-problem');
    const api = (await viewer.api('GET', '/api/v1/fleet')).body;
    const n2View = api.nodes.find((n) => n.node === 'n2');
    assert.equal(n2View.state, 'ERROR');
    assert.equal(n2View.last_result.result, 'rejected');
    assert.ok(n2View.last_result.problem.detail, 'the problem has a detail');
    assert.match(await problem.innerText(), new RegExp(n2View.last_result.problem.detail.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.equal(api.nodes.find((n) => n.node === 'n1').state, 'SYNCED', 'the node not targeted stays SYNCED');
    assert.equal(await node('n1').getAttribute('data-state'), 'SYNCED');
    await shot(page, 'fleet-05-broker-error');

    // n2 stops (it says bye): OFFLINE; n1 is killed (no bye): STALE, then OFFLINE once a ping
    // goes unanswered
    assert.equal(await n2.stop(), 0, `n2 exits 0 on SIGTERM\n${n2.log()}`);
    await waitState('n2', 'OFFLINE');
    n1.child.kill('SIGKILL');
    const seen = [];
    const deadline = Date.now() + 30000;
    while (seen.at(-1) !== 'OFFLINE') {
      assert.ok(Date.now() < deadline, `n1 never went OFFLINE: ${seen.join(' ')}`);
      const state = (await viewer.api('GET', '/api/v1/fleet')).body.nodes.find((n) => n.node === 'n1').state;
      if (seen.at(-1) !== state) seen.push(state);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(seen, ['SYNCED', 'STALE', 'OFFLINE'], 'quiet for 3 status intervals, then no answer to a ping');
    await waitState('n1', 'OFFLINE');
    assert.equal(await node('viewer').getAttribute('data-state'), 'SYNCED');
    await shot(page, 'fleet-06-broker-offline');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    rmSync(work, { recursive: true, force: true });
    for (const d of daemons.reverse()) {
      const code = await d.stop();
      if (d.child.signalCode !== 'SIGKILL') assert.equal(code, 0, `the daemon exits 0 on SIGTERM\n${d.log()}`);
    }
  }
});
