// Shared pieces of the dashboard's end-to-end tests: a daemon of their own, headless
// Chromium driven by playwright-core, screenshots, echo traffic, and waiting with deadlines.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { servicesFallback } from './services.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.resolve(ROOT, process.env.SOCKSERV_BIN || 'build/sockserv');
export const BUILD_DIR = path.resolve(ROOT, process.env.SOCKSERV_BUILD_DIR || 'build');
export const SHOTS = path.join(BUILD_DIR, 'e2e-screenshots');
export const CHROMIUM = process.env.SOCKSERV_CHROMIUM || '/usr/bin/chromium';

/** How long a condition may take before a test fails. */
export const DEADLINE_MS = 10000;

export const LAPTOP = { width: 1280, height: 860 };
export const PHONE = { width: 360, height: 780 };

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), `sockserv-e2e-${prefix}-`));
}

/**
 * Starts `sockserv daemon` on 127.0.0.1 (port 0 unless api says otherwise) with its own state
 * directory and the extra arguments args, and resolves once it wrote its URL to fd 3. With a
 * token, the daemon gets it through --token-file and api() sends it. stop() sends SIGTERM and
 * resolves to the exit code (null if a signal ended it); kill() is SIGKILL.
 */
export async function startDaemon({ api = '127.0.0.1:0', stateDir, args = [], token } = {}) {
  const dir = stateDir || tempDir('state');
  const extra = [...args];
  if (token) {
    const file = path.join(tempDir('token'), 'token');
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    extra.push('--token-file', file);
  }
  const child = spawn(BIN, ['daemon', '--api', api, '--state-dir', dir, '--no-defaults',
    '--ready-fd', '3', '--log-level', 'info', ...extra], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });

  const url = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`the daemon was not ready within ${DEADLINE_MS} ms\n${log}`)), DEADLINE_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${BIN}: ${e.message}`));
    });
    child.stdio[3].on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(buf.slice(0, nl).trim());
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the daemon exited (${code ?? signal}) before it was ready\n${log}`));
    });
  });

  let stopped = null;
  const stop = (sig = 'SIGTERM') => {
    if (!stopped) {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      let timer;
      stopped = Promise.race([
        exited,
        new Promise((resolve) => {
          timer = setTimeout(() => {
            child.kill('SIGKILL');
            resolve({ code: null, signal: 'timeout' });
          }, DEADLINE_MS);
        }),
      ]).finally(() => clearTimeout(timer));
    }
    return stopped;
  };
  return {
    url,
    stateDir: dir,
    child,
    log: () => log,
    /** SIGTERM, then the exit code (or null when a signal or the deadline ended it). */
    stop: async () => (await stop('SIGTERM')).code,
    /** Calls the REST API (with the token, if any): { status, body } (body parsed when JSON). */
    api: (method, p, body) => callApi(url, method, p, body, { token }),
  };
}

/**
 * Calls the REST API at base: { status, body }. POST, PUT and PATCH say Content-Type
 * application/json, with or without a body (the daemon requires it); token is sent as
 * "Authorization: Bearer".
 */
export async function callApi(base, method, p, body, { token, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined || ['POST', 'PUT', 'PATCH'].includes(method)) {
    init.headers['Content-Type'] = 'application/json';
  }
  if (body !== undefined) init.body = JSON.stringify(body);
  if (token) init.headers.Authorization = `Bearer ${token}`;
  const res = await fetch(base + p, init);
  const text = await res.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed };
}

/**
 * Headless Chromium with a fresh profile, one page at laptop size. ignoreHTTPSErrors: accept a
 * certificate no known CA signed (a test's own). GET /api/v1/services is the daemon's, or
 * services.mjs's table where the daemon answers 404.
 */
export async function launchBrowser({ ignoreHTTPSErrors = false } = {}) {
  const profile = tempDir('chromium');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: LAPTOP,
    acceptDownloads: true,
    ignoreHTTPSErrors,
    colorScheme: 'light',
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(DEADLINE_MS);
  const services = await servicesFallback(context);
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  return {
    context,
    page,
    /** Uncaught exceptions in the page so far. */
    errors,
    /** Whether tests/e2e/services.mjs's table stood in for a daemon without GET /api/v1/services. */
    servicesStoodIn: services.used,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a screenshot (of the whole page unless fullPage is false) as SHOTS/name.png. */
export async function shot(page, name, { fullPage = true } = {}) {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  return file;
}

/** The selector of the table row of listener id. */
export function rowOf(id) {
  return `#listeners-body tr[data-id="${id}"]`;
}

/** Waits until the numeric value (data-value) of a table cell satisfies value >= min. */
export async function waitForCellAtLeast(page, id, column, min) {
  await page.waitForFunction(([sel, m]) => {
    const td = document.querySelector(sel);
    return !!td && td.dataset.value !== '' && Number(td.dataset.value) >= m;
  }, [`${rowOf(id)} .c-${column}`, min], { timeout: DEADLINE_MS });
}

/** Waits until the state cell of listener id reads state. */
export async function waitForState(page, id, state) {
  await page.waitForFunction(([sel, s]) => document.querySelector(sel)?.dataset.state === s,
    [`${rowOf(id)} .c-state`, state], { timeout: DEADLINE_MS });
}

/**
 * An open TCP connection to an echo server: send() writes bytes, echoed() resolves once n
 * bytes in all came back.
 */
export async function echoConnection(port) {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  let received = 0;
  let waiters = [];
  const chunks = [];
  sock.on('data', (d) => {
    received += d.length;
    chunks.push(d);
    waiters = waiters.filter((w) => {
      if (received >= w.n) {
        w.resolve();
        return false;
      }
      return true;
    });
  });
  return {
    send: (buf) => sock.write(buf),
    received: () => received,
    data: () => Buffer.concat(chunks),
    echoed: (n) => new Promise((resolve, reject) => {
      if (received >= n) return resolve();
      const timer = setTimeout(() => reject(new Error(`only ${received} of ${n} bytes echoed`)), DEADLINE_MS);
      waiters.push({ n, resolve: () => { clearTimeout(timer); resolve(); } });
    }),
    close: () => new Promise((resolve) => {
      sock.end(() => resolve());
      sock.once('close', resolve);
    }),
  };
}

/**
 * Runs axe-core (WCAG 2.1 A and AA rules) in the page and returns the serious and critical
 * violations as readable lines; scope is a selector to limit the check to.
 */
export async function accessibilityProblems(page, scope) {
  const axePath = path.join(ROOT, 'node_modules', 'axe-core', 'axe.min.js');
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.addScriptTag({ path: axePath });
  const violations = await page.evaluate(async (sel) => {
    const res = await window.axe.run(sel || document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return res.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
    }));
  }, scope || null);
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.join(', ')})`);
}

/**
 * A daemon that requires a fresh random token, a work directory and a browser whose every
 * request URL is recorded in urls (to prove the token never travels in one).
 */
export async function startTokenSession(prefix) {
  const token = randomBytes(24).toString('hex');
  const daemon = await startDaemon({ token });
  const work = tempDir(prefix);
  const browser = await launchBrowser();
  const urls = [];
  browser.context.on('request', (r) => urls.push(r.url()));
  return {
    token,
    daemon,
    work,
    browser,
    page: browser.page,
    context: browser.context,
    urls,
    /** The token was never in a URL the browser asked for, and the page threw nothing. */
    assertNoLeak() {
      assert.deepEqual(urls.filter((u) => u.includes(token)), [], 'the token is never in a URL');
      assert.deepEqual(browser.errors.map(String), [], 'no uncaught error in the page');
    },
    /** Closes the browser, removes the work directory, stops the daemon: it exits 0 and its log
     * never holds the token. */
    async close() {
      await browser.close();
      rmSync(work, { recursive: true, force: true });
      const code = await daemon.stop();
      assert.equal(code, 0, `the daemon exits 0 on SIGTERM\n${daemon.log()}`);
      assert.ok(!daemon.log().includes(token), 'the daemon never logs the token');
    },
  };
}
