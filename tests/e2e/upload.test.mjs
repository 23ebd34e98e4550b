// Uploading from the dashboard: a file dropped on a backup listener's files panel (or chosen
// with the Upload… button) goes up with a progress bar, its SHA-256 computed in the browser and
// sent as Repr-Digest, and the stored version and checksum are shown; the file then downloads
// byte for byte. With a token, and at phone width in dark mode too.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import {
  DEADLINE_MS, LAPTOP, PHONE, accessibilityProblems, rowOf, shot, startTokenSession, waitForState,
} from './helpers.mjs';

const ID = 'up-backup';
const sha256 = (data) => createHash('sha256').update(data).digest('hex');

async function openListener(page, url, token) {
  await page.goto(`${url}/`);
  await page.locator('#token-dialog').waitFor({ state: 'visible' });
  await page.fill('#token-input', token);
  await page.click('#token-submit');
  await page.locator('#token-dialog').waitFor({ state: 'hidden' });
  await waitForState(page, ID, 'running');
  await page.click(`${rowOf(ID)} .row-link`);
  await page.locator('#files-drop').waitFor({ state: 'visible' });
}

/* Drops a file named name holding data (a Buffer) on the files panel, as a user dragging it
 * from their desktop would. */
async function dropFile(page, name, data) {
  const transfer = await page.evaluateHandle(([n, b64]) => {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], n, { type: 'application/octet-stream' }));
    return dt;
  }, [name, data.toString('base64')]);
  await page.dispatchEvent('#files', 'dragover', { dataTransfer: transfer });
  assert.ok(await page.locator('#files-drop.over').count(), 'the panel shows where to drop');
  await page.dispatchEvent('#files', 'drop', { dataTransfer: transfer });
}

/* Records the highest value the progress bar shows, in window.e2eProgress. */
function watchProgress() {
  window.e2eProgress = [];
  const watch = () => {
    const bar = document.querySelector('#upload-bar');
    if (!bar) return;
    new MutationObserver(() => window.e2eProgress.push(Number(bar.value)))
      .observe(bar, { attributes: true });
    const set = Object.getOwnPropertyDescriptor(HTMLProgressElement.prototype, 'value');
    Object.defineProperty(bar, 'value', {
      get() { return set.get.call(this); },
      set(v) { window.e2eProgress.push(Number(v)); set.set.call(this, v); },
    });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch);
  else watch();
}

test('a file dropped on the files panel is stored, shown and downloads byte for byte', { timeout: 180000 }, async (t) => {
  const session = await startTokenSession('upload');
  const {
    token, daemon, work, page, context,
  } = session;
  try {
    const created = await daemon.api('POST', '/api/v1/listeners', {
      id: ID, service: 'backup', address: '127.0.0.1', port: 0, options: { max_file_size: 64 * 1024 * 1024 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await page.addInitScript(watchProgress);
    await openListener(page, daemon.url, token);

    const dropped = randomBytes(3 * 1024 * 1024 + 5);
    await t.test('drag and drop: progress, then the version and the checksum', async () => {
      await dropFile(page, 'dropped report.bin', dropped);
      await page.waitForFunction(() => /Stored dropped report\.bin as version 1/.test(document.querySelector('#upload-result')?.innerText || ''),
        null, { timeout: DEADLINE_MS * 3 });
      const text = await page.locator('#upload-result').innerText();
      assert.match(text, new RegExp(sha256(dropped)));
      assert.match(text, /the same as the browser computed/);
      assert.equal(await page.locator('#upload-bar').evaluate((b) => b.value), 100);
      const seen = await page.evaluate(() => window.e2eProgress);
      assert.ok(seen.some((v) => v > 0 && v < 100) || seen.includes(100), `progress shown: ${seen}`);
      await page.locator('#files-table tr[data-name="dropped report.bin"]').waitFor({ state: 'visible' });
      await shot(page, 'upload-01-dropped');
      assert.deepEqual(await accessibilityProblems(page, '#files'), [], 'WCAG 2.1 AA in the files panel');
    });

    await t.test('the stored file downloads byte for byte', async () => {
      const link = page.locator('#files-table tr[data-name="dropped report.bin"] a.file-link');
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: DEADLINE_MS * 3 }), link.click()]);
      const saved = path.join(work, 'downloaded');
      await download.saveAs(saved);
      assert.equal(await download.failure(), null);
      assert.equal(sha256(readFileSync(saved)), sha256(dropped));
    });

    await t.test('the Upload… button: a second version; a refused name says why', async () => {
      const second = randomBytes(20 * 1024 * 1024);
      const file = path.join(work, 'dropped report.bin');
      writeFileSync(file, second);
      // Enter on the focused button, from the keyboard (Locator.press focuses it first, so a
      // frame the download left focused cannot take the key).
      const button = page.locator('#files-upload');
      await button.waitFor({ state: 'visible', timeout: DEADLINE_MS });
      const [chooser] = await Promise.all([page.waitForEvent('filechooser'), button.press('Enter')]);
      await chooser.setFiles(file);
      await page.waitForFunction(() => /as version 2/.test(document.querySelector('#upload-result')?.innerText || ''),
        null, { timeout: DEADLINE_MS * 3 });
      assert.match(await page.locator('#upload-result').innerText(), new RegExp(sha256(second)));
      const listed = await daemon.api('GET', `/api/v1/listeners/${ID}/files`);
      const entry = listed.body.files.find((f) => f.name === 'dropped report.bin');
      assert.equal(entry.version, 2);
      assert.equal(entry.sha256, sha256(second));

      const hidden = path.join(work, '.hidden');
      writeFileSync(hidden, 'x');
      await page.setInputFiles('#files-input', hidden);
      await page.waitForFunction(() => /refuses this file name/.test(document.querySelector('#upload-result')?.innerText || ''),
        null, { timeout: DEADLINE_MS });
      assert.ok(await page.locator('#upload-result.error').count());
    });

    await t.test('phone width, dark mode', async () => {
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.setViewportSize(PHONE);
      await dropFile(page, 'phone.txt', Buffer.from('from the phone\n'));
      await page.waitForFunction(() => /Stored phone\.txt as version 1/.test(document.querySelector('#upload-result')?.innerText || ''),
        null, { timeout: DEADLINE_MS });
      const wide = await page.evaluate(() => {
        const w = document.documentElement.clientWidth;
        return [...document.querySelectorAll('#files-drop, #files-drop *')]
          .filter((e) => e.getBoundingClientRect().right > w + 1).map((e) => e.id || e.className || e.tagName);
      });
      assert.deepEqual(wide, [], 'the upload panel fits the phone');
      await shot(page, 'upload-02-phone-dark');
      assert.deepEqual(await accessibilityProblems(page, '#files-drop'), [], 'WCAG 2.1 AA, dark, phone');
    });

    await t.test('a listener whose status says TLS shows a TLS badge by its address', async () => {
      await page.setViewportSize(LAPTOP);
      // Polling, not the event stream: the listeners come from GET /api/v1/listeners, which the
      // test gives a status.tls as a listener with options.tls has.
      await context.route('**/api/v1/events', (route) => route.fulfill({
        status: 404, contentType: 'application/problem+json',
        body: JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: 'no stream' }),
      }));
      await context.route('**/api/v1/listeners', async (route) => {
        const res = await route.fetch();
        const body = await res.json();
        for (const l of body.listeners || []) {
          l.status.tls = {
            enabled: true, client_auth: false, subject: 'CN=localhost', not_after: '2027-12-31T00:00:00Z',
          };
        }
        await route.fulfill({ response: res, json: body });
      });
      try {
        await page.reload();
        const badge = page.locator(`${rowOf(ID)} .tls-badge`);
        await badge.waitFor({ state: 'visible', timeout: DEADLINE_MS });
        assert.equal(await badge.innerText(), 'TLS');
        assert.match(await badge.getAttribute('title'), /CN=localhost/);
      } finally {
        await context.unroute('**/api/v1/listeners');
        await context.unroute('**/api/v1/events');
      }
    });

    session.assertNoLeak();
  } finally {
    await session.close();
  }
});
