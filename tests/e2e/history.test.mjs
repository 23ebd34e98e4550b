// The configuration's history in the dashboard: the timeline of revisions with their sources
// and summaries, each expandable to its diff; a restore shows what it would change first and
// is sent with If-Match, so a change made meanwhile is refused in plain words and nothing is
// overwritten. Keyboard, phone width, dark mode, and with a token.

import assert from 'node:assert/strict';
import net from 'node:net';
import test from 'node:test';
import {
  DEADLINE_MS, PHONE, accessibilityProblems, launchBrowser, shot, startDaemon, startTokenSession,
} from './helpers.mjs';

const ID = 'hist-echo';

/** A TCP port of 127.0.0.1 that was free a moment ago. */
async function freePort() {
  const s = net.createServer();
  await new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', resolve);
  });
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** What the timeline shows: one object per revision, as a person reads it. */
function timeline(page) {
  return page.$$eval('#history-list > li', (lis) => lis.map((li) => ({
    revision: Number(li.dataset.revision),
    title: li.querySelector('.rev-num')?.textContent,
    current: !!li.querySelector('.rev-current'),
    time: li.querySelector('time')?.textContent,
    iso: li.querySelector('time')?.getAttribute('title'),
    source: li.querySelector('.rev-source')?.textContent,
    summary: li.querySelector('.rev-summary')?.textContent,
    restore: !!li.querySelector('.rev-restore'),
  })));
}

/** Waits until the newest revision the timeline shows is n. */
async function waitForNewest(page, n) {
  await page.waitForFunction((want) => {
    const li = document.querySelector('#history-list > li');
    return !!li && Number(li.dataset.revision) === want;
  }, n, { timeout: DEADLINE_MS });
}

/** The revisions the API lists (newest first). */
async function revisions(daemon) {
  const res = await daemon.api('GET', '/api/v1/config/revisions?limit=100');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.revisions;
}

/** Presses Tab until the focused element satisfies the selector (at most max presses). */
async function tabTo(page, selector, max = 30) {
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((sel) => !!document.activeElement?.matches(sel), selector)) return;
    await page.keyboard.press('Tab');
  }
  assert.fail(`Tab never reached ${selector}`);
}

test('the history shows every revision, expands its diff, restores one and refuses a stale restore', { timeout: 120000 }, async (t) => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
  const restoreCalls = [];
  page.on('request', (r) => {
    if (r.url().includes('/restore')) restoreCalls.push({ url: r.url(), ifMatch: r.headers()['if-match'] });
  });

  try {
    assert.equal((await daemon.api('POST', '/api/v1/listeners', {
      id: ID, service: 'echo', address: '127.0.0.1', port: p1,
    })).status, 201);
    assert.equal((await daemon.api('PATCH', `/api/v1/listeners/${ID}`, { port: p2 })).status, 200);
    assert.equal((await daemon.api('PATCH', `/api/v1/listeners/${ID}`, { options: { mode: 'once' } })).status, 200);
    const revs = await revisions(daemon);
    const [third, second, first] = revs;
    assert.equal(third.source, `api: patch listener ${ID}`);
    assert.equal(second.source, `api: patch listener ${ID}`);

    await t.test('the timeline lists the revisions newest first, with time, source and summary', async () => {
      await page.goto(`${daemon.url}/`);
      await page.waitForFunction(() => document.querySelector('#feed-mode').dataset.mode === 'stream');
      // Keyboard: the History button in the header opens it, focused on its heading.
      await page.focus('#open-history');
      await page.keyboard.press('Enter');
      await page.locator('#history-dialog').waitFor({ state: 'visible' });
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'history-title');
      await waitForNewest(page, third.revision);
      const shown = await timeline(page);
      assert.deepEqual(shown.map((r) => r.revision), revs.map((r) => r.revision));
      for (const [i, r] of revs.entries()) {
        const s = shown[i];
        assert.equal(s.title, `Revision ${r.revision}`);
        assert.equal(s.source, r.source);
        assert.equal(s.summary, r.summary);
        assert.equal(s.iso, r.time, 'the exact time in the title');
        assert.notEqual(s.time, r.time, 'the time itself is local and readable');
        assert.match(s.time, /\d{2}:\d{2}:\d{2}/);
        assert.equal(s.current, i === 0, 'the newest says it is current');
        assert.equal(s.restore, i > 0, 'every revision but the newest can be restored');
      }
      assert.match(second.summary, /port/);
      assert.match(third.summary, /options\.mode/);
      await shot(page, 'history-01-timeline', { fullPage: false });
      assert.deepEqual(await accessibilityProblems(page, '#history-dialog'), []);
    });

    await t.test('a revision expands to its diff, by keyboard', async () => {
      await tabTo(page, `[data-key="toggle-${second.revision}"]`);
      await page.keyboard.press('Enter');
      const toggle = page.locator(`[data-key="toggle-${second.revision}"]`);
      assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
      const diff = page.locator(`#rev-${second.revision}-diff`);
      await diff.waitFor({ state: 'visible' });
      assert.match((await diff.innerText()).trim(), new RegExp(`^${ID}: changed port — (live \\(connections kept\\)|not live)`));
      await page.locator(`[data-key="toggle-${third.revision}"]`).click();
      assert.match(await page.locator(`#rev-${third.revision}-diff`).innerText(), /changed options\.mode/);
      await shot(page, 'history-02-expanded', { fullPage: false });
      await toggle.press('Enter');
      assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
      assert.equal(await diff.isVisible(), false);
    });

    let restored = 0;
    await t.test('a restore shows the dry run\'s diff, then makes the port what it was', async () => {
      const config = await daemon.api('GET', '/api/v1/config');
      await page.getByRole('button', { name: `Restore revision ${first.revision}…`, exact: true }).click();
      const dialog = page.locator('#restore-dialog');
      await dialog.waitFor({ state: 'visible' });
      const item = page.locator('#restore-diff li');
      await item.first().waitFor({ state: 'visible' });
      assert.equal(await page.locator('#restore-title').innerText(), `Restore revision ${first.revision}?`);
      assert.equal(await page.locator('#restore-text').innerText(), 'This will:');
      assert.equal(await item.count(), 1, 'one listener changes');
      assert.match(await item.first().innerText(), new RegExp(`^change ${ID} \\(port, options\\.mode\\) — `));
      assert.equal(restoreCalls.length, 1);
      assert.match(restoreCalls[0].url, new RegExp(`/revisions/${first.revision}/restore\\?dry_run=true$`));
      assert.equal(restoreCalls[0].ifMatch, `"r${config.body.revision}"`, 'the dry run carries If-Match');
      // The dry run changed nothing.
      assert.equal((await daemon.api('GET', `/api/v1/listeners/${ID}`)).body.port, p2);
      await shot(page, 'history-03-restore-confirm', { fullPage: false });
      assert.deepEqual(await accessibilityProblems(page, '#restore-dialog'), []);

      await page.click('#restore-ok');
      await dialog.waitFor({ state: 'hidden' });
      assert.equal(restoreCalls.length, 2);
      assert.doesNotMatch(restoreCalls[1].url, /dry_run/);
      assert.equal(restoreCalls[1].ifMatch, restoreCalls[0].ifMatch, 'the same If-Match');
      const now = await revisions(daemon);
      restored = now[0].revision;
      assert.equal(restored, third.revision + 1);
      assert.equal(now[0].source, `api: restore of revision ${first.revision}`);
      const status = page.locator('#history-status');
      await status.waitFor({ state: 'visible' });
      assert.equal(await status.innerText(), `Restored revision ${first.revision} as revision ${restored}.`);
      await waitForNewest(page, restored);
      const l = await daemon.api('GET', `/api/v1/listeners/${ID}`);
      assert.equal(l.body.port, p1, 'the port is what it was after that revision');
      assert.equal(l.body.options.mode, 'stream', 'and the mode its default again');
      await shot(page, 'history-04-restored', { fullPage: false });
    });

    await t.test('a change made between the dry run and the confirmation is refused, not overwritten', async () => {
      await page.getByRole('button', { name: `Restore revision ${second.revision}…`, exact: true }).click();
      await page.locator('#restore-diff li').first().waitFor({ state: 'visible' });
      // Someone else changes the configuration meanwhile.
      assert.equal((await daemon.api('PATCH', `/api/v1/listeners/${ID}`, { port: p3 })).status, 200);
      const changed = restored + 1;
      // The timeline behind follows the event stream.
      await waitForNewest(page, changed);
      await page.click('#restore-ok');
      const error = page.locator('#restore-error');
      await error.waitFor({ state: 'visible' });
      assert.equal(await error.innerText(), `The configuration changed since you opened the history (now revision ${changed}). `
        + 'Nothing was restored. Reload the history to see the change.');
      assert.equal(await page.locator('#restore-ok').innerText(), 'Reload the history');
      await shot(page, 'history-05-stale', { fullPage: false });
      assert.deepEqual(await accessibilityProblems(page, '#restore-dialog'), []);
      const l = await daemon.api('GET', `/api/v1/listeners/${ID}`);
      assert.equal(l.body.port, p3, 'the other change stands');
      assert.equal((await revisions(daemon))[0].revision, changed, 'no revision was made');
      await page.click('#restore-ok');
      await page.locator('#restore-dialog').waitFor({ state: 'hidden' });
      await waitForNewest(page, changed);
      await page.waitForFunction(() => document.activeElement?.id === 'history-title', null, { timeout: DEADLINE_MS });
    });

    await t.test('at phone width in dark mode it reads the same and Escape goes back', async () => {
      await page.setViewportSize(PHONE);
      await page.emulateMedia({ colorScheme: 'dark' });
      if (!(await page.locator('#history-dialog').isVisible())) await page.click('#open-history');
      await page.locator(`[data-key="toggle-${second.revision}"]`).click();
      const overflow = await page.$eval('#history-dialog', (d) => d.scrollWidth - d.clientWidth);
      assert.ok(overflow <= 1, `nothing wider than the dialog (${overflow} px)`);
      await shot(page, 'history-06-phone-dark', { fullPage: false });
      assert.deepEqual(await accessibilityProblems(page, '#history-dialog'), []);
      await page.keyboard.press('Escape');
      await page.locator('#history-dialog').waitFor({ state: 'hidden' });
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'open-history');
    });
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('while polling the history loads on open; a restore the daemon refuses says why', { timeout: 90000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  const [p1, p2] = [await freePort(), await freePort()];
  let held = null;
  try {
    // No event stream: the dashboard polls.
    await page.route('**/api/v1/events', (route) => route.fulfill({
      status: 404, contentType: 'application/problem+json',
      body: JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: 'no stream here' }),
    }));
    assert.equal((await daemon.api('POST', '/api/v1/listeners', {
      id: ID, service: 'echo', address: '127.0.0.1', port: p1,
    })).status, 201);
    await page.goto(`${daemon.url}/`);
    await page.waitForFunction(() => document.querySelector('#feed-mode').dataset.mode === 'polling');
    await page.click('#open-history');
    const [first] = await revisions(daemon);
    await waitForNewest(page, first.revision);
    await page.click('#history-close');

    assert.equal((await daemon.api('PATCH', `/api/v1/listeners/${ID}`, { port: p2 })).status, 200);
    const [second] = await revisions(daemon);
    await page.click('#open-history');
    await waitForNewest(page, second.revision);
    assert.deepEqual((await timeline(page)).map((r) => r.revision), [second.revision, first.revision]);

    // Another socket takes the port revision 1 had: the dry run says the restore cannot bind it.
    held = net.createServer();
    await new Promise((resolve, reject) => {
      held.once('error', reject);
      held.listen(p1, '127.0.0.1', resolve);
    });
    await page.getByRole('button', { name: `Restore revision ${first.revision}…`, exact: true }).click();
    const error = page.locator('#restore-error');
    await error.waitFor({ state: 'visible' });
    const direct = await daemon.api('POST', `/api/v1/config/revisions/${first.revision}/restore?dry_run=true`);
    assert.equal(direct.status, 409, JSON.stringify(direct.body));
    assert.equal(await error.innerText(), `Nothing was restored: listener ${ID}: ${direct.body.detail}`);
    assert.equal(await page.locator('#restore-ok').isVisible(), false, 'nothing to confirm');
    assert.equal(await page.locator('#restore-cancel').innerText(), 'Close');
    await shot(page, 'history-08-refused', { fullPage: false });
    await page.click('#restore-cancel');
    await page.locator('#restore-dialog').waitFor({ state: 'hidden' });
    assert.equal((await daemon.api('GET', `/api/v1/listeners/${ID}`)).body.port, p2, 'nothing changed');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    if (held) await new Promise((resolve) => held.close(resolve));
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('the history and a restore work with a token', { timeout: 90000 }, async () => {
  const session = await startTokenSession('history');
  const { token, daemon, page } = session;
  const [p1, p2] = [await freePort(), await freePort()];
  try {
    assert.equal((await daemon.api('POST', '/api/v1/listeners', {
      id: ID, service: 'echo', address: '127.0.0.1', port: p1,
    })).status, 201);
    assert.equal((await daemon.api('PATCH', `/api/v1/listeners/${ID}`, { port: p2 })).status, 200);
    const [newest, older] = await revisions(daemon);

    await page.goto(`${daemon.url}/`);
    await page.locator('#token-dialog').waitFor({ state: 'visible' });
    await page.fill('#token-input', token);
    await page.click('#token-submit');
    await page.locator('#token-dialog').waitFor({ state: 'hidden' });
    await page.click('#open-history');
    await waitForNewest(page, newest.revision);
    assert.deepEqual((await timeline(page)).map((r) => r.source), [newest.source, older.source]);

    await page.getByRole('button', { name: `Restore revision ${older.revision}…`, exact: true }).click();
    const item = page.locator('#restore-diff li');
    await item.first().waitFor({ state: 'visible' });
    assert.match(await item.first().innerText(), new RegExp(`^change ${ID} \\(port\\)`));
    await page.click('#restore-ok');
    await page.locator('#restore-dialog').waitFor({ state: 'hidden' });
    const status = page.locator('#history-status');
    await status.waitFor({ state: 'visible' });
    assert.equal(await status.innerText(), `Restored revision ${older.revision} as revision ${newest.revision + 1}.`);
    assert.equal((await daemon.api('GET', `/api/v1/listeners/${ID}`)).body.port, p1);
    await shot(page, 'history-07-token', { fullPage: false });
    session.assertNoLeak();
  } finally {
    await session.close();
  }
});
