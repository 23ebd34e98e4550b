// The events panel: the header's Events button opens the last 50 events of this run of the
// daemon (GET /api/v1/events/recent), newest first, each a time, a type and a sentence; while it
// is open, new events of the stream come in at the top; Escape closes it and gives the focus
// back to the button.

import assert from 'node:assert/strict';
import test from 'node:test';
import {
  DEADLINE_MS, PHONE, LAPTOP, accessibilityProblems, launchBrowser, shot, startDaemon,
} from './helpers.mjs';
import { describeEvent } from '../../web/events.js';

async function create(daemon, body) {
  const { status, body: res } = await daemon.api('POST', '/api/v1/listeners', { address: '127.0.0.1', port: 0, ...body });
  assert.equal(status, 201, JSON.stringify(res));
  return res;
}

/** The panel's items, top first: { id, type, text, time }. */
async function itemsOf(page) {
  return page.evaluate(() => [...document.querySelectorAll('#events-list li')].map((li) => ({
    id: Number(li.dataset.id),
    type: li.querySelector('.event-type').textContent,
    text: li.querySelector('.event-text').textContent,
    time: li.querySelector('.event-time').textContent,
  })));
}

test('each event reads as a sentence', () => {
  assert.equal(describeEvent({ event: 'listener.state', data: { id: 'e1', previous: 'running', state: 'failed', error: 'bind: Address already in use' } }),
    'listener e1 state running → failed: bind: Address already in use');
  assert.equal(describeEvent({ event: 'config.revision', data: { revision: 7, source: 'api: create listener e1', origin: { interface: 'api' }, summary: 'created e1' } }),
    'config revision 7: created e1 (api)');
  assert.equal(describeEvent({ event: 'backup.stored', data: { listener: 'b', name: 'notes.txt', version: 3, size: 2048, verified: true } }),
    'backup stored notes.txt v3 (2.0 KiB) (listener b)');
  assert.equal(describeEvent({ event: 'backup.failed', data: { listener: 'b', name: 'big.iso', reason: 'too-large', detail: 'over max_file_size' } }),
    'backup failed big.iso: too-large — over max_file_size (listener b)');
  assert.equal(describeEvent({ event: 'listener.deleted', data: { id: 'e1' } }), 'listener e1 deleted');
});

test('the events panel lists what happened, newest first, and what happens while it is open', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  const asked = [];
  page.on('request', (r) => { if (r.url().includes('/events/recent')) asked.push(new URL(r.url()).search); });
  try {
    await create(daemon, { id: 'ev-one', service: 'echo' });
    await create(daemon, { id: 'ev-two', service: 'date', transport: 'udp' });
    assert.equal((await daemon.api('POST', '/api/v1/listeners/ev-one/stop')).status, 200);

    await page.goto(`${daemon.url}/`);
    await page.waitForFunction(() => document.querySelector('#feed-mode')?.dataset.mode === 'stream', null, { timeout: DEADLINE_MS });
    await page.focus('#events-open');
    await page.keyboard.press('Enter');
    const dialog = page.locator('#events-dialog');
    await dialog.waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelectorAll('#events-list li').length >= 5, null, { timeout: DEADLINE_MS });
    assert.deepEqual(asked, ['?limit=50']);

    let items = await itemsOf(page);
    const ids = items.map((i) => i.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first');
    assert.ok(items.length <= 50);
    assert.ok(!items.some((i) => i.type === 'metrics'), 'no metrics tick');
    const texts = items.map((i) => `${i.type} | ${i.text}`);
    const at = (re) => texts.findIndex((t) => re.test(t));
    assert.ok(at(/^listener\.created \| listener ev-one created: echo TCP on 127\.0\.0\.1:\d+/) >= 0, texts.join('\n'));
    assert.ok(at(/^listener\.created \| listener ev-two created: date UDP/) >= 0, texts.join('\n'));
    assert.ok(at(/^listener\.state \| listener ev-one state \w+ → running on 127\.0\.0\.1:\d+$/) >= 0, texts.join('\n'));
    assert.ok(at(/^listener\.state \| listener ev-one state running → \w+/) >= 0, texts.join('\n'));
    assert.ok(at(/^config\.revision \| config revision \d+: /) >= 0, texts.join('\n'));
    // The stop came after the creations.
    assert.ok(at(/listener ev-one state running → /) < at(/listener ev-two created/), texts.join('\n'));
    for (const i of items) assert.match(i.time, /^\d\d:\d\d:\d\d$/);
    assert.match(await page.locator('#events-status').innerText(), /newest first\. New ones appear as they happen\./);
    await shot(page, 'events-01-open', { fullPage: false });
    assert.deepEqual(await accessibilityProblems(page, '#events-dialog'), [], 'WCAG 2.1 AA of the events panel');

    // A new listener while the panel is open: its events come in at the top.
    await create(daemon, { id: 'ev-live', service: 'echo' });
    await page.waitForFunction(() => [...document.querySelectorAll('#events-list li .event-text')]
      .some((e) => /^listener ev-live created/.test(e.textContent)), null, { timeout: DEADLINE_MS });
    items = await itemsOf(page);
    const top = items.slice(0, 4).map((i) => i.text).join('\n');
    assert.match(top, /listener ev-live created/);
    assert.ok(items.length <= 50);
    assert.equal(new Set(items.map((i) => i.id)).size, items.length, 'no event twice');
    await shot(page, 'events-02-live', { fullPage: false });

    await page.setViewportSize(PHONE);
    await shot(page, 'events-03-phone', { fullPage: false });
    const overflow = await page.evaluate(() => {
      const d = document.querySelector('#events-dialog');
      return d.scrollWidth - d.clientWidth;
    });
    assert.ok(overflow <= 0, `the panel scrolls sideways by ${overflow} px at 360 px`);
    await page.setViewportSize(LAPTOP);

    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'events-open', 'the focus is back on the button');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('the panel holds 50 events at most', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    // Each creation of a disabled listener makes two events (created, revision).
    for (let i = 0; i < 30; i++) await create(daemon, { id: `ev-many-${i}`, service: 'echo', enabled: false });
    await page.goto(`${daemon.url}/`);
    await page.waitForFunction(() => document.querySelector('#feed-mode')?.dataset.mode === 'stream', null, { timeout: DEADLINE_MS });
    await page.click('#events-open');
    await page.waitForFunction(() => document.querySelectorAll('#events-list li').length === 50, null, { timeout: DEADLINE_MS });
    await create(daemon, { id: 'ev-many-last', service: 'echo', enabled: false });
    await page.waitForFunction(() => /ev-many-last/.test(document.querySelector('#events-list li')?.textContent || ''), null, { timeout: DEADLINE_MS });
    assert.equal(await page.locator('#events-list li').count(), 50);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
