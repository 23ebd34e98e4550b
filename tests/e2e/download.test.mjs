// A download that needs the access token streams to disk: the dashboard's service worker
// fetches the file with the token and passes its body through to the browser's download
// manager, so a large file is never held whole in the page (no blob: URL). Where no service
// worker can run, a single-use download ticket stands for the token on a plain link.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { promisify } from 'node:util';
import {
  BIN, DEADLINE_MS, rowOf, shot, startTokenSession, waitForState,
} from './helpers.mjs';

const run = promisify(execFile);
const ID = 'dl-backup';
const BIG = 'dl-big.bin';
const SMALL = 'dl-small.bin';
const BIG_BYTES = 64 * 1024 * 1024;

function sha256File(file) {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex'))).on('error', reject);
  });
}

/* Counts the page's URL.createObjectURL() calls in window.e2eBlobUrls. */
function countBlobUrls() {
  window.e2eBlobUrls = 0;
  const create = URL.createObjectURL.bind(URL);
  URL.createObjectURL = (obj) => {
    window.e2eBlobUrls++;
    return create(obj);
  };
}

async function enterToken(page, url, token) {
  await page.goto(`${url}/`);
  await page.locator('#token-dialog').waitFor({ state: 'visible' });
  await page.fill('#token-input', token);
  await page.click('#token-submit');
  await page.locator('#token-dialog').waitFor({ state: 'hidden' });
  await waitForState(page, ID, 'running');
  await page.click(`${rowOf(ID)} .row-link`);
}

test('a token-protected download streams to disk through the service worker', { timeout: 180000 }, async (t) => {
  const session = await startTokenSession('download');
  const {
    token, daemon, work, page, context,
  } = session;

  try {
    const created = await daemon.api('POST', '/api/v1/listeners', {
      id: ID, service: 'backup', address: '127.0.0.1', port: 0,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const port = /:(\d+)$/.exec(created.body.status.bound[0])[1];
    const big = path.join(work, 'big');
    writeFileSync(big, randomBytes(BIG_BYTES));
    const small = path.join(work, 'small');
    const smallData = randomBytes(100 * 1024 + 7);
    writeFileSync(small, smallData);
    for (const [file, name] of [[big, BIG], [small, SMALL]]) {
      await run(BIN, ['backup', 'put', file, '--name', name, '--timeout', String(DEADLINE_MS), '127.0.0.1', port],
        { timeout: DEADLINE_MS * 6 });
    }
    const want = await sha256File(big);

    await t.test('64 MiB download: the bytes on disk match, and no blob: URL was made', async () => {
      await page.addInitScript(countBlobUrls);
      await enterToken(page, daemon.url, token);
      const link = page.locator(`#files-table tr[data-name="${BIG}"] a.file-link`);
      await link.waitFor({ state: 'visible' });
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: DEADLINE_MS * 3 }), link.click()]);
      assert.equal(download.suggestedFilename(), BIG);
      assert.doesNotMatch(download.url(), /^blob:/, 'the download is not a blob: URL');
      assert.ok(download.url().startsWith(`${daemon.url}/download/`), `the worker's URL: ${download.url()}`);
      const saved = path.join(work, 'downloaded-big');
      await download.saveAs(saved);
      assert.equal(await download.failure(), null);
      assert.equal(statSync(saved).size, BIG_BYTES);
      assert.equal(await sha256File(saved), want, 'sha256 of the bytes on disk');
      assert.equal(await page.evaluate(() => window.e2eBlobUrls), 0, 'the page made no blob: URL');
      const sw = await page.evaluate(async () => (await navigator.serviceWorker.getRegistration('/download/'))?.active?.scriptURL);
      assert.equal(sw, `${daemon.url}/download-sw.js`);
      await shot(page, 'download-01-streamed');
    });

    await t.test('a refused download says why, and saves nothing', async () => {
      // The file goes away after the list was shown: the daemon answers 404.
      const gone = page.locator(`#files-table tr[data-name="${SMALL}"] a.file-link`);
      await gone.waitFor({ state: 'visible' });
      // The context's routes see the service worker's requests too.
      await context.route('**/api/v1/listeners/*/files/*', (route) => route.fulfill({
        status: 404, contentType: 'application/problem+json',
        body: JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: `no such file: ${SMALL}` }),
      }));
      let downloaded = false;
      page.on('download', () => { downloaded = true; });
      try {
        await gone.click();
        await page.waitForFunction(() => /Could not download/.test(document.querySelector('#notice')?.innerText || ''));
        assert.match(await page.locator('#notice').innerText(), new RegExp(`no such file: ${SMALL}`));
        assert.equal(downloaded, false);
      } finally {
        await context.unroute('**/api/v1/listeners/*/files/*');
      }
    });

    await t.test('a token the daemon refuses asks for the token again, then the download runs', async () => {
      await page.evaluate(() => sessionStorage.setItem('sockserv.token', 'not-the-token'));
      const link = page.locator(`#files-table tr[data-name="${SMALL}"] a.file-link`);
      await link.click();
      await page.locator('#token-dialog').waitFor({ state: 'visible' });
      assert.match(await page.locator('#token-text').innerText(), /refused/);
      await page.fill('#token-input', token);
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#token-submit')]);
      assert.doesNotMatch(download.url(), /^blob:/);
      const saved = path.join(work, 'downloaded-again');
      await download.saveAs(saved);
      assert.equal(await sha256File(saved), createHash('sha256').update(smallData).digest('hex'));
    });

    await t.test('without service workers the download streams through a single-use ticket', async () => {
      const other = await context.newPage();
      try {
        await other.addInitScript(() => {
          Object.defineProperty(Navigator.prototype, 'serviceWorker', { get: () => undefined });
        });
        await other.addInitScript(countBlobUrls);
        await enterToken(other, daemon.url, token);
        const link = other.locator(`#files-table tr[data-name="${SMALL}"] a.file-link`);
        await link.waitFor({ state: 'visible' });
        const [download] = await Promise.all([other.waitForEvent('download'), link.click()]);
        assert.doesNotMatch(download.url(), /^blob:/);
        assert.match(download.url(), new RegExp(`/api/v1/listeners/${ID}/files/${SMALL}\\?ticket=[A-Za-z0-9_-]{43}$`));
        assert.equal(download.suggestedFilename(), SMALL);
        const saved = path.join(work, 'downloaded-small');
        await download.saveAs(saved);
        assert.equal(await sha256File(saved), createHash('sha256').update(smallData).digest('hex'));
        assert.equal(await other.evaluate(() => window.e2eBlobUrls), 0, 'the page made no blob: URL');
        // The ticket was good once.
        const again = await fetch(download.url());
        assert.equal(again.status, 401);
      } finally {
        await other.close();
      }
    });

    session.assertNoLeak();
  } finally {
    await session.close();
  }
});
