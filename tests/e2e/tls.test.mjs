// The dashboard over HTTPS: a daemon started with --api-tls-cert/--api-tls-key and a token, a
// certificate made by the test with openssl, and Chromium told to accept it (it is self-signed).
// The page loads from its https URL, is a secure context, takes the token, shows the listeners
// live through the event stream and acts on them, all over TLS.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import test from 'node:test';
import { promisify } from 'node:util';
import {
  DEADLINE_MS, launchBrowser, rowOf, shot, startDaemon, tempDir, waitForState,
} from './helpers.mjs';

const run = promisify(execFile);
const ECHO = 'tls-echo';

/** A self-signed P-256 certificate for localhost and 127.0.0.1: { cert, key, ca } (paths, PEM). */
async function makeCertificate(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert],
  { timeout: DEADLINE_MS * 2 });
  return { cert, key, ca: readFileSync(cert) };
}

/** Calls the API over https, trusting ca: { status, body } (body parsed when JSON). */
function callTls(base, ca, token, method, p, body) {
  return new Promise((resolve, reject) => {
    const headers = { Authorization: `Bearer ${token}` };
    const text = body === undefined ? '' : JSON.stringify(body);
    if (['POST', 'PUT', 'PATCH'].includes(method)) headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = Buffer.byteLength(text);
    const req = https.request(new URL(p, base), { method, headers, ca, timeout: DEADLINE_MS }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => {
        let parsed = data;
        try {
          parsed = data ? JSON.parse(data) : null;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${base} within ${DEADLINE_MS} ms`)));
    req.on('error', reject);
    req.end(text);
  });
}

test('the dashboard loads and works over https', { timeout: 120000 }, async (t) => {
  const work = tempDir('tls');
  const { cert, key, ca } = await makeCertificate(work);
  const token = randomBytes(24).toString('hex');
  const daemon = await startDaemon({ token, args: ['--api-tls-cert', cert, '--api-tls-key', key] });
  const api = (method, p, body) => callTls(daemon.url, ca, token, method, p, body);
  // The test's certificate is self-signed: no CA the browser knows signed it.
  const browser = await launchBrowser({ ignoreHTTPSErrors: true });
  const { context, page, errors } = browser;
  const urls = [];
  context.on('request', (r) => urls.push(r.url()));

  try {
    assert.match(daemon.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the ready URL says https');
    const created = await api('POST', '/api/v1/listeners', {
      id: ECHO, service: 'echo', address: '127.0.0.1', port: 0,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));

    await t.test('the page loads from its https URL as a secure context', async () => {
      const res = await page.goto(`${daemon.url}/`);
      assert.equal(res.status(), 200);
      assert.equal(await page.evaluate(() => window.location.protocol), 'https:');
      assert.equal(await page.evaluate(() => window.isSecureContext), true);
      await page.locator('#token-dialog').waitFor({ state: 'visible' });
      await shot(page, 'tls-01-token', { fullPage: false });
    });

    await t.test('with the token, the listeners show live and the page acts on them', async () => {
      await page.fill('#token-input', token);
      await page.click('#token-submit');
      await page.locator('#token-dialog').waitFor({ state: 'hidden' });
      await waitForState(page, ECHO, 'running');
      await page.waitForFunction(() => document.querySelector('#feed-mode').dataset.mode === 'stream');
      // A change made elsewhere arrives through the event stream, over TLS.
      assert.equal((await api('POST', `/api/v1/listeners/${ECHO}/stop`)).status, 200);
      await waitForState(page, ECHO, 'stopped');
      // And the page's own action goes out over TLS.
      await page.click(`${rowOf(ECHO)} .row-link`);
      await page.click('#action-start');
      await waitForState(page, ECHO, 'running');
      assert.equal((await api('GET', `/api/v1/listeners/${ECHO}`)).body.status.state, 'running');
      await shot(page, 'tls-02-live');
    });

    assert.ok(urls.length > 0);
    assert.deepEqual(urls.filter((u) => !u.startsWith('https://') && !u.startsWith('data:')), [],
      'every request of the page went over https');
    assert.deepEqual(errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    rmSync(work, { recursive: true, force: true });
    const code = await daemon.stop();
    assert.equal(code, 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});
