// Preview before apply: the edit and create forms send their request as a dry run and say
// what it would change ("changes port — live, connections kept"), or show next to the port
// that it cannot be bound, before anything is changed.

import assert from 'node:assert/strict';
import net from 'node:net';
import test from 'node:test';
import {
  PHONE, accessibilityProblems, launchBrowser, rowOf, shot, startDaemon, waitForState,
} from './helpers.mjs';

const ID = 'prev-echo';

/** A TCP server on 127.0.0.1 holding a port of its own; close() lets it go. */
async function holdPort(port = 0) {
  const s = net.createServer((c) => c.destroy());
  await new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, '127.0.0.1', resolve);
  });
  return { port: s.address().port, close: () => new Promise((resolve) => s.close(resolve)) };
}

async function freePort() {
  const h = await holdPort();
  await h.close();
  return h.port;
}

/** The preview's text as a person reads it ('' when none is shown). */
async function previewText(page) {
  return (await page.locator('#form-preview-result').innerText()).trim();
}

test('preview of an edit says what would change, changes nothing, and the save still applies it', { timeout: 90000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  const sent = [];
  page.on('request', (r) => {
    if (r.url().includes('/api/v1/listeners/') && ['PATCH', 'PUT'].includes(r.method())) {
      sent.push({ method: r.method(), url: r.url(), body: r.postDataJSON() });
    }
  });
  const [p1, p2] = [await freePort(), await freePort()];
  try {
    assert.equal((await daemon.api('POST', '/api/v1/listeners', {
      id: ID, service: 'echo', address: '127.0.0.1', port: p1,
    })).status, 201);
    const before = await daemon.api('GET', '/api/v1/config');

    await page.goto(`${daemon.url}/`);
    await waitForState(page, ID, 'running');
    await page.click(`${rowOf(ID)} .row-link`);
    await page.click('#action-edit');
    await page.locator('#listener-dialog').waitFor({ state: 'visible' });
    await page.fill('#f-port', String(p2));
    await page.click('#form-preview');
    const box = page.locator('#form-preview-result');
    await page.waitForFunction(() => /^Preview: /.test(document.querySelector('#form-preview-result').innerText));
    const text = await previewText(page);
    assert.match(text, /^Preview: changes port — live, connections kept\.$/m);
    assert.match(text, /Nothing has been changed yet: Save changes applies it\./);
    assert.deepEqual(sent.map((s) => [s.method, new URL(s.url).search, s.body]),
      [['PATCH', '?dry_run=true', { port: p2 }]], 'the same PATCH as a save, as a dry run');
    // Nothing changed on the daemon.
    const l = await daemon.api('GET', `/api/v1/listeners/${ID}`);
    assert.equal(l.body.port, p1);
    assert.deepEqual(await daemon.api('GET', '/api/v1/config'), before, 'no new revision');
    assert.ok(await page.locator('#listener-dialog').isVisible(), 'the form stays open');
    await shot(page, 'preview-01-edit', { fullPage: false });
    assert.deepEqual(await accessibilityProblems(page, '#listener-dialog'), []);

    // Changing a value makes the preview stale: it goes.
    await page.fill('#f-workers', '2');
    assert.equal(await previewText(page), '');
    assert.equal(await box.isVisible(), false);

    // Editing nothing previews as such, without asking the daemon.
    await page.click('#form-cancel');
    await page.click('#action-edit');
    await page.locator('#listener-dialog').waitFor({ state: 'visible' });
    const asked = sent.length;
    await page.click('#form-preview');
    assert.equal(await previewText(page), 'Preview: nothing would change.');
    assert.equal(sent.length, asked);

    // The save applies what was previewed.
    await page.fill('#f-port', String(p2));
    await page.click('#form-preview');
    await page.waitForFunction(() => /changes port/.test(document.querySelector('#form-preview-result').innerText));
    await page.click('#form-submit');
    await page.locator('#listener-dialog').waitFor({ state: 'hidden' });
    assert.equal(sent.at(-1).method, 'PATCH');
    assert.equal(new URL(sent.at(-1).url).search, '', 'the save is no dry run');
    assert.equal((await daemon.api('GET', `/api/v1/listeners/${ID}`)).body.port, p2);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('preview of a create on a port another socket holds shows the bind error next to the port', { timeout: 90000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  const held = await holdPort();
  const posts = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().includes('/api/v1/listeners')) posts.push(new URL(r.url()).search);
  });
  try {
    await page.goto(`${daemon.url}/`);
    await page.locator('#empty').waitFor({ state: 'visible' });
    await page.click('#new-listener');
    await page.locator('#listener-dialog').waitFor({ state: 'visible' });
    await page.selectOption('#f-service', 'echo');
    await page.selectOption('#f-transport', 'tcp');
    await page.fill('#f-id', 'prev-new');
    await page.fill('#f-address', '127.0.0.1');
    await page.fill('#f-port', String(held.port));
    await page.click('#form-preview');
    const err = page.locator('#f-port-error');
    await err.waitFor({ state: 'visible' });
    // What the daemon itself answers to that dry run, next to the field.
    const direct = await daemon.api('POST', '/api/v1/listeners?dry_run=true', {
      id: 'prev-new', service: 'echo', transport: 'tcp', address: '127.0.0.1', port: held.port, enabled: true,
    });
    assert.ok([400, 409].includes(direct.status), JSON.stringify(direct.body));
    assert.equal(direct.body.field, 'port');
    assert.equal((await err.innerText()).trim(), direct.body.detail);
    assert.match(direct.body.detail, /in use/i);
    assert.equal(await page.getAttribute('#f-port', 'aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'f-port');
    assert.match(await page.locator('#form-error').innerText(), /^The daemon would refuse this: /);
    assert.equal(await previewText(page), '');
    assert.deepEqual(posts, ['?dry_run=true'], 'only a dry run was sent');
    assert.deepEqual((await daemon.api('GET', '/api/v1/listeners')).body.listeners, [], 'nothing was created');
    await shot(page, 'preview-02-port-taken', { fullPage: false });
    assert.deepEqual(await accessibilityProblems(page, '#listener-dialog'), []);

    // A port the kernel picks can be bound: the preview says what the create does.
    await page.fill('#f-port', '0');
    assert.equal(await err.isVisible(), false);
    await page.click('#form-preview');
    await page.waitForFunction(() => /^Preview: /.test(document.querySelector('#form-preview-result').innerText));
    assert.match(await previewText(page), /^Preview: creates listener prev-new\.$/m);
    assert.match(await previewText(page), /Create listener applies it\./);
    assert.deepEqual((await daemon.api('GET', '/api/v1/listeners')).body.listeners, [], 'still nothing created');

    // At phone width in dark mode.
    await page.setViewportSize(PHONE);
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.locator('#form-preview').scrollIntoViewIfNeeded();
    await shot(page, 'preview-03-create-phone-dark', { fullPage: false });
    assert.deepEqual(await accessibilityProblems(page, '#listener-dialog'), []);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await held.close();
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
