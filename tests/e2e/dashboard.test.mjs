// The dashboard as an operator uses it: create an echo listener through the form, watch its
// counters rise with traffic, see the daemon's field errors next to the fields, edit, stop,
// start and delete it, and read it all at phone width.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import test from 'node:test';
import {
  DEADLINE_MS, LAPTOP, PHONE, accessibilityProblems, echoConnection, launchBrowser, rowOf, shot, startDaemon,
  waitForCellAtLeast, waitForState,
} from './helpers.mjs';

const ID = 'e2e-echo';

test('the dashboard drives a listener from creation to deletion', { timeout: 90000 }, async (t) => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  let port = 0;

  // A step that failed may leave a dialog open; the next one starts without it.
  t.beforeEach(() => page.evaluate(() => {
    for (const d of document.querySelectorAll('dialog[open]')) d.close();
  }).catch(() => {}));

  try {
    await t.test('it loads and says there is no listener yet', async () => {
      await page.goto(`${daemon.url}/`);
      assert.equal(await page.title(), 'sockserv dashboard');
      await page.locator('#empty').waitFor({ state: 'visible' });
      await page.waitForFunction(() => document.querySelector('#feed-mode').dataset.mode !== 'connecting');
      assert.match(await page.locator('#daemon-info').innerText(), /sockserv \d+\.\d+\.\d+/);
      // A marker that a reload would lose: every later check is made without one.
      await page.evaluate(() => { window.e2eNoReload = true; });
      await shot(page, 'dashboard-01-empty');
    });

    await t.test('an echo TCP listener made through the form runs on the port it was bound to', async () => {
      await page.click('#new-listener');
      const dialog = page.locator('#listener-dialog');
      await dialog.waitFor({ state: 'visible' });
      await page.selectOption('#f-service', 'echo');
      await page.selectOption('#f-transport', 'tcp');
      await page.fill('#f-id', ID);
      await page.fill('#f-address', '127.0.0.1');
      await page.fill('#f-port', '0');
      await page.selectOption('#f-options-mode', 'stream');
      await shot(page, 'dashboard-02-form', { fullPage: false });
      await page.click('#form-submit');
      await dialog.waitFor({ state: 'hidden' });

      await waitForState(page, ID, 'running');
      const bound = await page.locator(`${rowOf(ID)} .c-bound`).innerText();
      const m = /^127\.0\.0\.1:(\d+)$/.exec(bound.trim());
      assert.ok(m, `bound address shown: ${bound}`);
      port = Number(m[1]);
      assert.ok(port > 0 && port < 65536);
      assert.equal((await page.locator(`${rowOf(ID)} .c-service`).innerText()).trim(), 'echo');
      assert.equal((await page.locator(`${rowOf(ID)} .c-transport`).innerText()).trim(), 'TCP');

      const { status, body } = await daemon.api('GET', `/api/v1/listeners/${ID}`);
      assert.equal(status, 200);
      assert.deepEqual(body.status.bound, [`127.0.0.1:${port}`]);
      assert.equal(body.options.mode, 'stream');
      await shot(page, 'dashboard-03-created');
    });

    await t.test('echo traffic raises bytes in and out, rates and connections without a reload', async () => {
      const conn = await echoConnection(port);
      const chunk = randomBytes(16 * 1024);
      let sent = 0;
      // Traffic keeps flowing until the page shows it: a condition, not a pause.
      const sender = setInterval(() => {
        conn.send(chunk);
        sent += chunk.length;
      }, 100);
      try {
        await waitForCellAtLeast(page, ID, 'active', 1);
        await waitForCellAtLeast(page, ID, 'bytes_in', 64 * 1024);
        await waitForCellAtLeast(page, ID, 'bytes_out', 64 * 1024);
        await page.waitForFunction((sel) => Number(document.querySelector(sel)?.dataset.value) > 0,
          `${rowOf(ID)} .c-rate_in`, { timeout: DEADLINE_MS });
        await shot(page, 'dashboard-04-traffic');

        await page.click(`${rowOf(ID)} .row-link`);
        const details = page.locator('#details');
        await details.waitFor({ state: 'visible' });
        assert.equal((await page.locator('#details-heading').innerText()).trim(), ID);
        // The chart has drawn a throughput peak, and the full metrics are listed.
        await page.waitForFunction(() => /peak (?!0 B\/s)/.test(
          document.querySelector('#chart-throughput').getAttribute('aria-label') || ''), null, { timeout: DEADLINE_MS });
        const metrics = await page.locator('#metrics-table').innerText();
        for (const label of ['Active connections', 'Connections served', 'Bytes in', 'Bytes out', 'Errors', 'Idle time-outs']) {
          assert.match(metrics, new RegExp(label));
        }
      } finally {
        clearInterval(sender);
      }
      await conn.echoed(sent);
      assert.equal(conn.received(), sent);
      await conn.close();
      await waitForCellAtLeast(page, ID, 'bytes_in', sent);
      await waitForCellAtLeast(page, ID, 'bytes_out', sent);
      await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.value === '0',
        `${rowOf(ID)} .c-active`, { timeout: DEADLINE_MS });
      await shot(page, 'dashboard-05-details');
      assert.equal(await page.evaluate(() => window.e2eNoReload), true, 'the page was not reloaded');
    });

    await t.test('a value the daemon refuses is shown next to the field it names', async () => {
      await page.click('#new-listener');
      await page.locator('#listener-dialog').waitFor({ state: 'visible' });
      await page.selectOption('#f-service', 'echo');
      await page.fill('#f-port', '70000');
      await page.click('#form-submit');
      const err = page.locator('#f-port-error');
      await err.waitFor({ state: 'visible' });
      assert.match(await err.innerText(), /port.*65535/);
      assert.equal(await page.getAttribute('#f-port', 'aria-invalid'), 'true');
      assert.match(await page.locator('#form-error').innerText(), /Not saved: port/);
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'f-port');
      await shot(page, 'dashboard-06-field-error', { fullPage: false });
      assert.deepEqual(await accessibilityProblems(page, '#listener-dialog'), [], 'WCAG 2.1 AA of the form with an error');

      // A service option: the message goes next to that option's input.
      await page.fill('#f-port', '0');
      await page.selectOption('#f-service', 'date');
      await page.fill('#f-options-timezone', 'Nowhere/Atlantis');
      await page.click('#form-submit');
      const tzErr = page.locator('#f-options-timezone-error');
      await tzErr.waitFor({ state: 'visible' });
      assert.match(await tzErr.innerText(), /time ?zone/i);
      assert.equal(await page.locator('#f-port-error').isVisible(), false, 'the earlier error is gone');
      await shot(page, 'dashboard-07-option-error', { fullPage: false });

      await page.click('#form-cancel');
      await page.locator('#listener-dialog').waitFor({ state: 'hidden' });
      const { body } = await daemon.api('GET', '/api/v1/listeners');
      assert.deepEqual(body.listeners.map((l) => l.id), [ID], 'nothing was created');
    });

    await t.test('the form edits a listener with a merge patch of what changed', async () => {
      await page.click('#action-edit');
      await page.locator('#listener-dialog').waitFor({ state: 'visible' });
      assert.equal(await page.inputValue('#f-id'), ID);
      assert.equal(await page.inputValue('#f-port'), '0', 'the configured port, not the bound one');
      assert.equal(await page.inputValue('#f-address'), '127.0.0.1');
      await page.fill('#f-max_connections', '64');
      await page.click('#form-submit');
      await page.locator('#listener-dialog').waitFor({ state: 'hidden' });
      await page.waitForFunction(() => /Max connections\s*64\b/.test(document.querySelector('#config-list').innerText));
      const { body } = await daemon.api('GET', `/api/v1/listeners/${ID}`);
      assert.equal(body.max_connections, 64);
      assert.equal(body.port, 0, 'the fields not changed are kept');
      assert.equal(body.address, '127.0.0.1');
      assert.equal(body.options.mode, 'stream');
      await waitForState(page, ID, 'running');
    });

    await t.test('stop shows stopped, start shows running again', async () => {
      await page.click('#action-stop');
      await waitForState(page, ID, 'stopped');
      assert.match(await page.locator(`${rowOf(ID)} .c-state`).innerText(), /stopped/);
      assert.equal(await page.isDisabled('#action-stop'), true);
      await shot(page, 'dashboard-08-stopped');
      await page.click('#action-start');
      await waitForState(page, ID, 'running');
    });

    await t.test('delete asks first in a dialog, and the listener is gone', async () => {
      await page.click('#action-delete');
      const confirm = page.locator('#confirm-dialog');
      await confirm.waitFor({ state: 'visible' });
      assert.match(await confirm.innerText(), new RegExp(`Delete listener ${ID}\\?`));
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'confirm-cancel');
      // The dialog keeps the focus while it is open.
      for (let i = 0; i < 6; i++) {
        await page.keyboard.press('Tab');
        assert.equal(await page.evaluate(() => document.querySelector('#confirm-dialog').contains(document.activeElement)), true);
      }
      await shot(page, 'dashboard-09-confirm-delete', { fullPage: false });
      await page.keyboard.press('Escape');
      await confirm.waitFor({ state: 'hidden' });
      assert.equal(await page.locator(rowOf(ID)).count(), 1, 'Escape deletes nothing');

      await page.click('#action-delete');
      await confirm.waitFor({ state: 'visible' });
      await page.click('#confirm-ok');
      await page.locator(rowOf(ID)).waitFor({ state: 'detached' });
      await page.locator('#empty').waitFor({ state: 'visible' });
      assert.equal((await daemon.api('GET', `/api/v1/listeners/${ID}`)).status, 404);
      assert.match(await page.locator('#notice').innerText(), /deleted/);
      await shot(page, 'dashboard-10-deleted');
    });

    await t.test('it reads at laptop and at phone width', async () => {
      for (const body of [
        { id: 'echo-tcp', service: 'echo', address: '127.0.0.1', port: 0 },
        { id: 'echo-udp', service: 'echo', transport: 'udp', address: '127.0.0.1', port: 0 },
        { id: 'date-tcp', service: 'date', address: '127.0.0.1', port: 0, options: { timezone: 'UTC' } },
        { id: 'date-udp-idle', service: 'date', transport: 'udp', address: '127.0.0.1', port: 0, enabled: false },
      ]) {
        const { status, body: res } = await daemon.api('POST', '/api/v1/listeners', body);
        assert.equal(status, 201, JSON.stringify(res));
      }
      // A listener that cannot bind: the port of echo-tcp is taken, its start is refused.
      const { body: taken } = await daemon.api('GET', '/api/v1/listeners/echo-tcp');
      const takenPort = Number(/:(\d+)$/.exec(taken.status.bound[0])[1]);
      const other = await daemon.api('POST', '/api/v1/listeners', {
        id: 'echo-clash', service: 'echo', address: '127.0.0.1', port: takenPort, enabled: false,
      });
      assert.equal(other.status, 201, JSON.stringify(other.body));
      const clash = await daemon.api('POST', '/api/v1/listeners/echo-clash/start');
      assert.equal(clash.status, 409, JSON.stringify(clash.body));

      await page.waitForFunction(() => document.querySelectorAll('#listeners-body tr').length === 5, null, { timeout: DEADLINE_MS });
      await page.click(`${rowOf('echo-tcp')} .row-link`);
      await page.locator('#details').waitFor({ state: 'visible' });
      await page.setViewportSize(LAPTOP);
      await shot(page, 'dashboard-11-laptop');
      assert.deepEqual(await accessibilityProblems(page), [], 'WCAG 2.1 AA at laptop width');

      await page.setViewportSize(PHONE);
      await page.evaluate(() => window.scrollTo(0, 0));
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px at 360 px`);
      const cardDisplay = await page.locator(`${rowOf('echo-tcp')}`).evaluate((tr) => getComputedStyle(tr).display);
      assert.equal(cardDisplay, 'grid', 'rows are cards at phone width');
      await shot(page, 'dashboard-12-phone');
      assert.deepEqual(await accessibilityProblems(page), [], 'WCAG 2.1 AA at phone width');

      await page.click('#new-listener');
      await page.locator('#listener-dialog').waitFor({ state: 'visible' });
      await shot(page, 'dashboard-13-phone-form', { fullPage: false });
      assert.deepEqual(await accessibilityProblems(page, '#listener-dialog'), [], 'WCAG 2.1 AA of the form');
      await page.click('#form-cancel');
      await page.setViewportSize(LAPTOP);
    });

    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    const code = await daemon.stop();
    assert.equal(code, 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
