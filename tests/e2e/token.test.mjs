// The dashboard with a daemon started with --token-file: the page asks for the token once (an
// accessible dialog), refuses a wrong one there, shows the listeners live with the right one
// (the event stream carries the token too), downloads a stored file with it, keeps it for the
// tab across a reload, and never puts it in a URL.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { promisify } from 'node:util';
import {
  BIN, DEADLINE_MS, accessibilityProblems, rowOf, shot, startTokenSession, waitForState,
} from './helpers.mjs';

const run = promisify(execFile);
const ECHO = 'tok-echo';
const BACKUP = 'tok-backup';
const NAME = 'tok-notes.bin';

test('the dashboard asks for the token once and keeps it for the tab', { timeout: 120000 }, async (t) => {
  const session = await startTokenSession('token');
  const {
    token, daemon, work, page, context, urls,
  } = session;
  const content = randomBytes(40 * 1024 + 3);

  try {
    assert.equal((await daemon.api('POST', '/api/v1/listeners', {
      id: ECHO, service: 'echo', address: '127.0.0.1', port: 0,
    })).status, 201);
    const backup = await daemon.api('POST', '/api/v1/listeners', {
      id: BACKUP, service: 'backup', address: '127.0.0.1', port: 0,
    });
    assert.equal(backup.status, 201, JSON.stringify(backup.body));
    const file = path.join(work, 'upload');
    writeFileSync(file, content);
    await run(BIN, ['backup', 'put', file, '--name', NAME, '--timeout', String(DEADLINE_MS), '127.0.0.1',
      /:(\d+)$/.exec(backup.body.status.bound[0])[1]], { timeout: DEADLINE_MS * 2 });

    await t.test('the page asks for the token in a labelled dialog, focused', async () => {
      await page.goto(`${daemon.url}/`);
      await page.locator('#token-dialog').waitFor({ state: 'visible' });
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'token-input');
      assert.equal(await page.getByLabel('Token', { exact: true }).getAttribute('type'), 'password');
      assert.match(await page.locator('#token-text').innerText(), /--token-file/);
      assert.deepEqual(await accessibilityProblems(page, '#token-dialog'), []);
      assert.equal(await page.locator(rowOf(ECHO)).count(), 0, 'nothing is shown without the token');
      await shot(page, 'token-01-asked', { fullPage: false });
    });

    await t.test('a wrong token is refused in the dialog', async () => {
      await page.fill('#token-input', 'not-the-token');
      await page.click('#token-submit');
      const error = page.locator('#token-error');
      await error.waitFor({ state: 'visible' });
      assert.match(await error.innerText(), /refused/);
      assert.equal(await page.locator('#token-input').getAttribute('aria-invalid'), 'true');
      assert.ok(await page.locator('#token-dialog').isVisible());
      assert.equal(await page.evaluate(() => sessionStorage.getItem('sockserv.token')), null);
      await shot(page, 'token-02-wrong', { fullPage: false });
    });

    await t.test('the right token shows the listeners, kept live by the event stream', async () => {
      await page.fill('#token-input', token);
      await page.click('#token-submit');
      await page.locator('#token-dialog').waitFor({ state: 'hidden' });
      await waitForState(page, ECHO, 'running');
      await page.waitForFunction(() => document.querySelector('#feed-mode').dataset.mode === 'stream');
      await page.evaluate(() => { window.e2eNoReload = true; });
      // A change made elsewhere shows without a reload.
      assert.equal((await daemon.api('POST', `/api/v1/listeners/${ECHO}/stop`)).status, 200);
      await waitForState(page, ECHO, 'stopped');
      assert.equal(await page.evaluate(() => window.e2eNoReload), true);
      // The page's own actions carry the token.
      await page.click(`${rowOf(ECHO)} .row-link`);
      await page.click('#action-start');
      await waitForState(page, ECHO, 'running');
      await shot(page, 'token-03-live');
    });

    await t.test('a stored file downloads with the token', async () => {
      await page.click(`${rowOf(BACKUP)} .row-link`);
      const link = page.locator(`#files-table tr[data-name="${NAME}"] a.file-link`);
      await link.waitFor({ state: 'visible' });
      const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
      assert.equal(download.suggestedFilename(), NAME);
      const saved = path.join(work, 'downloaded');
      await download.saveAs(saved);
      assert.ok(readFileSync(saved).equals(content), 'the download is the stored copy, byte for byte');
    });

    await t.test('a reload in the same tab does not ask again', async () => {
      await page.reload();
      await waitForState(page, ECHO, 'running');
      await page.waitForFunction(() => document.querySelector('#feed-mode').dataset.mode === 'stream');
      assert.equal(await page.locator('#token-dialog').isVisible(), false);
      assert.equal(await page.locator('#auth-needed').isVisible(), false);
    });

    await t.test('another tab asks again; Escape declines, the bar offers the dialog again', async () => {
      const other = await context.newPage();
      try {
        await other.goto(`${daemon.url}/`);
        await other.locator('#token-dialog').waitFor({ state: 'visible' });
        await other.keyboard.press('Escape');
        await other.locator('#token-dialog').waitFor({ state: 'hidden' });
        const bar = other.locator('#auth-needed');
        await bar.waitFor({ state: 'visible' });
        await shot(other, 'token-04-declined', { fullPage: false });
        await other.click('#auth-enter');
        await other.locator('#token-dialog').waitFor({ state: 'visible' });
        assert.equal(await other.evaluate(() => document.activeElement?.id), 'token-input');
        await other.fill('#token-input', token);
        await other.keyboard.press('Enter');
        await waitForState(other, ECHO, 'running');
        assert.equal(await bar.isVisible(), false);
      } finally {
        await other.close();
      }
    });

    assert.ok(urls.length > 0);
    session.assertNoLeak();
  } finally {
    await session.close();
  }
});
