// The listener form is built from what the daemon says of its services (GET /api/v1/services):
// every option of every service has the input its type asks for, an option added to a service's
// table shows in the form without a change to the dashboard, and a daemon that does not
// describe its services gets a clear message instead of a form that guesses.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'node:test';
import {
  DEADLINE_MS, ROOT, accessibilityProblems, callApi, launchBrowser, rowOf, shot, startDaemon,
} from './helpers.mjs';
import { SERVICES } from './services.mjs';

/** Opens the New listener form and waits until its services are listed. */
async function openCreate(page) {
  await page.click('#new-listener');
  await page.locator('#listener-dialog').waitFor({ state: 'visible' });
}

/** What the form shows for option name: its input's kind and attributes, label, hint, shown. */
function describeOption(page, name) {
  return page.evaluate((n) => {
    const input = document.getElementById(`f-options-${n}`);
    if (!input) return null;
    const label = document.querySelector(`label[for="f-options-${n}"]`);
    const hint = document.getElementById(`f-options-${n}-hint`);
    return {
      tag: input.tagName.toLowerCase(),
      type: input.type,
      name: input.name,
      min: input.getAttribute('min'),
      max: input.getAttribute('max'),
      placeholder: input.getAttribute('placeholder'),
      choices: input.tagName === 'SELECT' ? [...input.options].map((o) => o.value) : null,
      blankText: input.tagName === 'SELECT' ? input.options[0]?.textContent : null,
      checked: input.type === 'checkbox' ? input.checked : null,
      label: label?.textContent ?? null,
      hint: hint?.textContent ?? null,
      shown: !input.closest('[hidden]'),
    };
  }, name);
}

test('the form shows every option of every service the daemon describes', { timeout: 90000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    await page.goto(`${daemon.url}/`);
    await page.locator('#empty').waitFor({ state: 'visible' });
    // The table the page itself gets: the daemon's, or services.mjs's where it has none yet.
    const direct = await callApi(daemon.url, 'GET', '/api/v1/services');
    const table = await page.evaluate(async () => (await fetch('/api/v1/services')).json());
    if (direct.status === 200) assert.deepEqual(table, direct.body, 'the daemon\'s own table is used');
    else assert.deepEqual(table, SERVICES);
    assert.deepEqual(table.services.map((s) => s.name), ['backup', 'date', 'echo']);

    await openCreate(page);
    assert.deepEqual(await page.$$eval('#f-service option', (os) => os.map((o) => o.value)),
      table.services.map((s) => s.name), 'the services, in the daemon\'s order');
    for (const svc of table.services) {
      await page.selectOption('#f-service', svc.name);
      assert.equal((await page.locator('#f-service-hint').innerText()).trim(), svc.help);
      const transports = await page.$$eval('#f-transport option', (os) => os.map((o) => [o.value, o.disabled]));
      for (const [value, disabled] of transports) {
        assert.equal(disabled, !svc.transports.includes(value), `${svc.name}: transport ${value}`);
      }
      for (const transport of svc.transports) {
        await page.selectOption('#f-transport', transport);
        if (transport === 'tcp') {
          const models = await page.$$eval('#f-model option', (os) => os.filter((o) => o.value && !o.disabled).map((o) => o.value));
          assert.deepEqual(models.sort(), [...svc.models].sort(), `${svc.name}: the models it may run under`);
        }
        for (const opt of svc.options) {
          const what = `${svc.name} over ${transport}: option ${opt.name}`;
          const seen = await describeOption(page, opt.name);
          assert.ok(seen, `${what} has an input`);
          assert.equal(seen.name, `options.${opt.name}`, what);
          assert.equal(seen.shown, opt.transports.includes(transport), `${what} is shown only for its transports`);
          if (opt.help) assert.equal(seen.hint, opt.help, `${what}: its help is the hint`);
          if (opt.unit) assert.ok(seen.label.includes(`(${opt.unit})`), `${what}: the unit in the label "${seen.label}"`);
          const dflt = opt.default === null || opt.default === undefined ? '' : String(opt.default);
          if (opt.type === 'integer') {
            assert.equal(`${seen.tag}/${seen.type}`, 'input/number', what);
            assert.equal(seen.min, Number.isFinite(opt.minimum) ? String(opt.minimum) : null, `${what}: minimum`);
            assert.equal(seen.max, Number.isFinite(opt.maximum) ? String(opt.maximum) : null, `${what}: maximum`);
            assert.equal(seen.placeholder, dflt, `${what}: the default as placeholder`);
          } else if (opt.type === 'boolean') {
            assert.equal(`${seen.tag}/${seen.type}`, 'input/checkbox', what);
            assert.equal(seen.checked, opt.default === true, `${what}: checked as its default`);
          } else if (opt.type === 'string' && Array.isArray(opt.choices)) {
            assert.equal(seen.tag, 'select', what);
            assert.deepEqual(seen.choices, ['', ...opt.choices], `${what}: blank (the default) and the choices`);
            assert.ok(seen.blankText.includes(dflt), `${what}: the blank choice names the default`);
          } else if (opt.type === 'object') {
            assert.equal(`${seen.tag}/${seen.type}`, 'input/text', `${what}: typed as JSON`);
            assert.equal(seen.placeholder, '{"cert_file": "/…", "key_file": "/…"}', `${what}: an example as placeholder`);
          } else {
            assert.ok(['string', 'path'].includes(opt.type), `${what}: a type the form knows (${opt.type})`);
            assert.equal(`${seen.tag}/${seen.type}`, 'input/text', what);
            assert.equal(seen.placeholder, dflt, `${what}: the default as placeholder`);
          }
        }
        const inputs = await page.$$eval('#f-options [name^="options."]', (is) => is.map((i) => i.name));
        assert.deepEqual(inputs.sort(), svc.options.map((o) => `options.${o.name}`).sort(), `${svc.name}: no other option`);
      }
      await shot(page, `form-01-${svc.name}`, { fullPage: false });
      assert.deepEqual(await accessibilityProblems(page, '#listener-dialog'), [], `WCAG 2.1 AA of the ${svc.name} form`);
    }
    if (direct.status === 200) assert.equal(browser.servicesStoodIn(), false);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('an option added to a service\'s table shows in the form, is sent, and its error shows next to it', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  const extra = {
    name: 'e2e_burst_ms', type: 'integer', default: 250, minimum: 1, maximum: 5000, unit: 'ms',
    transports: ['tcp'], live: true, help: 'An option only this test knows.',
  };
  try {
    // The daemon's table (or services.mjs's), with one more option for echo.
    await page.route('**/api/v1/services', async (route) => {
      const res = await route.fetch();
      const body = res.status() === 200 ? await res.json() : structuredClone(SERVICES);
      body.services.find((s) => s.name === 'echo').options.push(extra);
      await route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
    });
    const posts = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/api/v1/listeners')) posts.push(r.postDataJSON());
    });
    await page.goto(`${daemon.url}/`);
    await page.locator('#empty').waitFor({ state: 'visible' });
    await openCreate(page);
    await page.selectOption('#f-service', 'echo');
    await page.selectOption('#f-transport', 'udp');
    assert.equal((await describeOption(page, extra.name)).shown, false, 'not shown over UDP');
    await page.selectOption('#f-transport', 'tcp');
    const seen = await describeOption(page, extra.name);
    assert.deepEqual({ tag: seen.tag, type: seen.type, min: seen.min, max: seen.max, placeholder: seen.placeholder, shown: seen.shown },
      { tag: 'input', type: 'number', min: '1', max: '5000', placeholder: '250', shown: true });
    assert.match(seen.label, /\(ms\)/);
    assert.equal(seen.hint, extra.help);

    await page.fill('#f-id', 'form-extra');
    await page.fill('#f-address', '127.0.0.1');
    await page.fill('#f-port', '0');
    await page.fill(`#f-options-${extra.name}`, '40');
    await page.click('#form-submit');
    const err = page.locator(`#f-options-${extra.name}-error`);
    await err.waitFor({ state: 'visible' });
    assert.equal(posts.length, 1);
    assert.equal(posts[0].options[extra.name], 40, 'the option is sent in the POST body');
    assert.equal(posts[0].service, 'echo');
    // The daemon does not know it: its problem+json names the field, shown next to the input.
    const created = await callApi(daemon.url, 'POST', '/api/v1/listeners', posts[0]);
    assert.equal(created.status, 400);
    assert.equal(created.body.field, `options.${extra.name}`);
    assert.equal((await err.innerText()).trim(), created.body.detail);
    assert.equal(await page.getAttribute(`#f-options-${extra.name}`, 'aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement?.id), `f-options-${extra.name}`);
    await shot(page, 'form-02-added-option', { fullPage: false });
    assert.deepEqual((await callApi(daemon.url, 'GET', '/api/v1/listeners')).body.listeners, [], 'nothing was created');
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('TLS is set, shown and taken away from the form, as a JSON object', { timeout: 60000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sockserv-e2e-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=form.test'], { stdio: 'ignore' });
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  const sent = [];
  page.on('request', (r) => {
    if (['POST', 'PATCH'].includes(r.method()) && r.url().includes('/api/v1/listeners')) sent.push(r.postDataJSON());
  });
  try {
    await page.goto(`${daemon.url}/`);
    await page.locator('#empty').waitFor({ state: 'visible' });
    await openCreate(page);
    await page.selectOption('#f-service', 'echo');
    await page.selectOption('#f-transport', 'tcp');
    await page.fill('#f-id', 'form-tls');
    await page.fill('#f-address', '127.0.0.1');
    await page.fill('#f-port', '0');
    // Not JSON: said next to the field, nothing sent.
    await page.fill('#f-options-tls', '{"cert_file": ');
    await page.click('#form-submit');
    const err = page.locator('#f-options-tls-error');
    await err.waitFor({ state: 'visible' });
    assert.equal((await err.innerText()).trim(), 'must be a JSON object');
    assert.equal(sent.length, 0, 'nothing was sent');
    await page.fill('#f-options-tls', JSON.stringify({ cert_file: cert, key_file: key }));
    await page.click('#form-submit');
    await page.locator('#listener-dialog').waitFor({ state: 'hidden' });
    assert.deepEqual(sent[0].options.tls, { cert_file: cert, key_file: key }, 'the object is sent as JSON');
    const made = await callApi(daemon.url, 'GET', '/api/v1/listeners/form-tls');
    assert.equal(made.status, 200);
    assert.deepEqual(made.body.options.tls, { cert_file: cert, key_file: key });
    assert.equal(made.body.status.tls.enabled, true);
    assert.equal(made.body.status.tls.subject, 'CN=form.test');
    const badge = page.locator(`${rowOf('form-tls')} .tls-badge`);
    await badge.waitFor({ state: 'visible', timeout: DEADLINE_MS });
    assert.match(await badge.getAttribute('title'), /CN=form\.test/);

    // Edited: the form shows the object; cleared, the PATCH takes TLS away.
    await page.click(`${rowOf('form-tls')} .row-link`);
    await page.click('#action-edit');
    await page.locator('#listener-dialog').waitFor({ state: 'visible' });
    assert.deepEqual(JSON.parse(await page.inputValue('#f-options-tls')), { cert_file: cert, key_file: key });
    await shot(page, 'form-04-tls', { fullPage: false });
    await page.fill('#f-options-tls', '');
    await page.click('#form-submit');
    await page.locator('#listener-dialog').waitFor({ state: 'hidden' });
    assert.deepEqual(sent.at(-1), { options: { tls: null } });
    const after = await callApi(daemon.url, 'GET', '/api/v1/listeners/form-tls');
    assert.equal(after.body.options.tls, undefined, 'TLS is gone');
    assert.equal(after.body.status.tls, null);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a daemon that does not describe its services gets a clear message, not a guessed form', { timeout: 60000 }, async () => {
  const daemon = await startDaemon();
  const browser = await launchBrowser();
  const { page } = browser;
  try {
    await page.route('**/api/v1/services', (route) => route.fulfill({
      status: 404, contentType: 'application/problem+json',
      body: JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: 'no such resource: /api/v1/services' }),
    }));
    await page.goto(`${daemon.url}/`);
    await page.locator('#empty').waitFor({ state: 'visible' });
    await openCreate(page);
    const missing = page.locator('#form-services-missing');
    await missing.waitFor({ state: 'visible' });
    assert.match(await missing.innerText(), /does not describe its services.*404/);
    assert.equal(await page.isDisabled('#form-submit'), true, 'nothing can be created');
    assert.equal(await page.locator('#f-options [name^="options."]').count(), 0);
    await shot(page, 'form-03-no-services', { fullPage: false });
    assert.deepEqual(await accessibilityProblems(page, '#listener-dialog'), []);
    assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
  } finally {
    await browser.close();
    assert.equal(await daemon.stop(), 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
  }
});

test('the dashboard\'s files name no service and no option', () => {
  const dir = path.join(ROOT, 'web');
  const names = new Set();
  for (const svc of SERVICES.services) {
    names.add(svc.name);
    for (const o of svc.options) names.add(o.name);
  }
  const found = [];
  for (const file of readdirSync(dir).filter((f) => /\.(js|html|css)$/.test(f))) {
    const text = readFileSync(path.join(dir, file), 'utf8');
    for (const n of names) {
      // Quoted (a string, an attribute's value), as an element's text, or as a form field
      // (options.NAME, f-options-NAME); a name made of several words also as a word. Plain
      // English ("date and time", "mode") in comments or other names does not count.
      const re = new RegExp(`['"\`]${n}['"\`]|>${n}<|options[.-]${n}\\b${n.includes('_') ? `|\\b${n}\\b` : ''}`);
      if (re.test(text)) found.push(`${file}: ${n}`);
    }
  }
  assert.deepEqual(found, []);
});
