// A backup listener's stored files in the dashboard: uploaded with `sockserv backup put`,
// listed with their versions, and downloaded through the page's link byte for byte.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { promisify } from 'node:util';
import { BIN, DEADLINE_MS, launchBrowser, shot, startDaemon, tempDir } from './helpers.mjs';

const run = promisify(execFile);
const ID = 'e2e-backup';
const NAME = 'e2e-report.bin';

test('a stored backup file downloads through the dashboard', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const work = tempDir('backup');
  let browser = null;
  try {
    const created = await daemon.api('POST', '/api/v1/listeners', {
      id: ID, service: 'backup', address: '127.0.0.1', port: 0,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const files = await daemon.api('GET', `/api/v1/listeners/${ID}/files`);
    assert.equal(files.status, 200, `GET /api/v1/listeners/${ID}/files: ${JSON.stringify(files.body)}`);
    assert.deepEqual(files.body.files, [], 'a new backup listener stores nothing yet');
    const port = Number(/:(\d+)$/.exec(created.body.status.bound[0])[1]);

    // Two uploads under one name: the second is the current copy, the first a version.
    const first = randomBytes(64 * 1024);
    const second = randomBytes(300 * 1024 + 17);
    for (const [i, data] of [first, second].entries()) {
      const file = path.join(work, `upload-${i}`);
      writeFileSync(file, data);
      await run(BIN, ['backup', 'put', file, '--name', NAME, '--timeout', String(DEADLINE_MS), '127.0.0.1', String(port)],
        { timeout: DEADLINE_MS * 2 });
    }

    browser = await launchBrowser();
    const { page } = browser;
    await page.goto(`${daemon.url}/#${ID}`);
    await page.locator('#details').waitFor({ state: 'visible' });
    const link = page.locator(`#files-table tr[data-name="${NAME}"] a.file-link`);
    await link.waitFor({ state: 'visible' });
    const row = await page.locator(`#files-table tr[data-name="${NAME}"]`).innerText();
    assert.match(row, /v2 \(current\)/);
    assert.match(row, /1 older/);
    assert.match(row, /✓/, 'the copy is shown as verified');
    await page.click(`#files-table tr[data-name="${NAME}"] summary`);
    await shot(page, 'backup-01-files');

    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    assert.equal(download.suggestedFilename(), NAME);
    const saved = path.join(work, 'downloaded');
    await download.saveAs(saved);
    assert.ok(readFileSync(saved).equals(second), 'the download is the current copy, byte for byte');

    const older = page.locator(`#files-table tr[data-name="${NAME}"] a.version-link`);
    const [download1] = await Promise.all([page.waitForEvent('download'), older.click()]);
    const saved1 = path.join(work, 'downloaded-v1');
    await download1.saveAs(saved1);
    assert.ok(readFileSync(saved1).equals(first), 'the older version downloads too');

    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    if (browser) await browser.close();
    rmSync(work, { recursive: true, force: true });
    const code = await daemon.stop();
    assert.equal(code, 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
