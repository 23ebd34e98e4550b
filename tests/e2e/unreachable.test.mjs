// The banner: the dashboard says when its daemon cannot be reached, and when it is back.

import assert from 'node:assert/strict';
import test from 'node:test';
import { DEADLINE_MS, launchBrowser, rowOf, shot, startDaemon, waitForState } from './helpers.mjs';

test('the dashboard says when the daemon is unreachable and when it comes back', { timeout: 60000 }, async () => {
  let daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    const created = await daemon.api('POST', '/api/v1/listeners', {
      id: 'kept', service: 'echo', address: '127.0.0.1', port: 0,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await page.goto(`${daemon.url}/`);
    await waitForState(page, 'kept', 'running');
    assert.equal(await page.locator('#banner').isVisible(), false, 'no banner while the daemon answers');

    const code = await daemon.stop();
    assert.equal(code, 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
    await page.waitForFunction(() => {
      const b = document.querySelector('#banner');
      return !b.hidden && b.dataset.state === 'down';
    }, null, { timeout: DEADLINE_MS });
    assert.match(await page.locator('#banner').innerText(), /cannot be reached/);
    assert.equal(await page.getAttribute('#feed-mode', 'data-mode'), 'offline');
    assert.equal(await page.locator(rowOf('kept')).count(), 1, 'the last known listeners stay on screen');
    await shot(page, 'unreachable-01-down');

    // The same address and state directory: the daemon comes back with its listener.
    const address = new URL(daemon.url).host;
    daemon = await startDaemon({ api: address, stateDir: daemon.stateDir });
    await page.waitForFunction(() => document.querySelector('#banner').dataset.state === 'back', null, { timeout: DEADLINE_MS });
    assert.match(await page.locator('#banner').innerText(), /restored/);
    assert.notEqual(await page.getAttribute('#feed-mode', 'data-mode'), 'offline');
    await waitForState(page, 'kept', 'running');
    await shot(page, 'unreachable-02-back');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    const code = await daemon.stop();
    assert.equal(code, 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
