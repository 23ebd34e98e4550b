// The REST API held to openapi/openapi.yaml: the document passes a maintained OpenAPI linter,
// every route it names is served with exactly the methods it lists, and real answers of the
// daemon (successes and errors) match the status codes, media types and schemas it documents.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { parse as parseYaml } from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { ROOT, startDaemon, tempDir } from '../e2e/helpers.mjs';

const SPEC_PATH = path.join(ROOT, 'openapi', 'openapi.yaml');
const specText = readFileSync(SPEC_PATH, 'utf8');
const spec = parseYaml(specText);
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head'];

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(spec, 'openapi.yaml');

let daemon;
const exercised = new Set(); // "METHOD /template STATUS"

before(async () => {
  daemon = await startDaemon({ stateDir: tempDir('contract') });
});

after(async () => {
  if (daemon) assert.equal(await daemon.stop(), 0, 'the daemon exits 0 on SIGTERM');
});

/** The spec's path template matching a concrete path, or undefined. */
function templateOf(p) {
  if (spec.paths[p]) return p;
  return Object.keys(spec.paths).find((t) => {
    const re = new RegExp('^' + t.replace(/\{[^}]+\}/g, '[^/]+') + '$');
    return re.test(p);
  });
}

function resolveRef(node) {
  while (node && node.$ref) {
    const parts = node.$ref.replace(/^#\//, '').split('/');
    node = parts.reduce((n, k) => n[k.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
  }
  return node;
}

/**
 * Sends a request and checks the answer against the spec: the status is documented for the
 * operation, and a body is of a documented media type and valid against its schema.
 */
async function call(method, p, { body, contentType = 'application/json', headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = contentType;
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(daemon.url + p, init);
  const text = await res.text();
  const pathOnly = p.split('?')[0];
  const template = templateOf(pathOnly);
  assert.ok(template, `${pathOnly} is not in the spec`);
  // HEAD is answered as GET without the body, on every GET route.
  const op = spec.paths[template][method === 'HEAD' ? 'get' : method.toLowerCase()];
  assert.ok(op, `${method} ${template} is not in the spec`);
  const response = resolveRef(op.responses[String(res.status)] || op.responses.default);
  assert.ok(response, `${method} ${p} answered ${res.status}, which the spec does not document (${text.slice(0, 200)})`);
  exercised.add(`${method === 'HEAD' ? 'GET' : method} ${template}`);
  const type = (res.headers.get('content-type') || '').split(';')[0].trim();
  if (text.length > 0 && method !== 'HEAD') {
    assert.ok(response.content, `${method} ${p} ${res.status} has a body the spec does not describe`);
    const media = response.content[type];
    assert.ok(media, `${method} ${p} ${res.status}: Content-Type ${type} is not documented (${Object.keys(response.content)})`);
    if (media.schema && type.endsWith('json')) {
      const data = JSON.parse(text);
      const validate = ajv.compile({ $ref: 'openapi.yaml#/' + pointerTo(media.schema) });
      assert.ok(validate(data), `${method} ${p} ${res.status} does not match its schema: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 400)}`);
    }
  }
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A JSON pointer (without '#/') to a schema object inside the spec, found by identity. */
function pointerTo(schema) {
  if (schema.$ref) return schema.$ref.replace(/^#\//, '');
  const seen = new Set();
  const walk = (node, ptr) => {
    if (node === schema) return ptr;
    if (!node || typeof node !== 'object' || seen.has(node)) return undefined;
    seen.add(node);
    for (const [k, v] of Object.entries(node)) {
      const found = walk(v, ptr ? `${ptr}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}` : k.replace(/~/g, '~0').replace(/\//g, '~1'));
      if (found !== undefined) return found;
    }
    return undefined;
  };
  return walk(spec, '');
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

test('the OpenAPI document passes the linter with no problem', async () => {
  const config = await createConfig(readFileSync(path.join(ROOT, 'openapi', 'redocly.yaml'), 'utf8'));
  const problems = await lintFromString({ source: specText, absoluteRef: SPEC_PATH, config });
  const lines = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location.map((l) => l.pointer).join(', ')}`);
  assert.deepEqual(lines, []);
});

test('every path of the spec is served with exactly the methods the spec lists', async () => {
  for (const [template, item] of Object.entries(spec.paths)) {
    const concrete = template.replace('{id}', 'no-such-listener').replace('{name}', 'no-such-file')
      .replace('{file}', 'app.js');
    // A method no route has: the daemon answers 405 with the methods the path has.
    const res = await fetch(daemon.url + concrete, { method: 'OPTIONS' });
    assert.equal(res.status, 405, `OPTIONS ${concrete}: the daemon does not serve this path (${res.status})`);
    const served = res.headers.get('allow').split(',').map((m) => m.trim().toLowerCase()).sort();
    const documented = METHODS.filter((m) => item[m]);
    if (documented.includes('get') && !documented.includes('head')) documented.push('head');
    assert.deepEqual(served, documented.sort(), `methods of ${template}`);
  }
});

test('listener routes answer as documented, successes and errors', async () => {
  await call('GET', '/api/v1/health');
  await call('GET', '/api/v1/listeners');
  const created = await call('POST', '/api/v1/listeners', {
    body: { id: 'c1', service: 'echo', transport: 'tcp', address: '127.0.0.1', port: 0 },
  });
  assert.equal(created.status, 201);
  await call('POST', '/api/v1/listeners', { body: { id: 'u1', service: 'echo', transport: 'udp', port: 0 } });
  await call('POST', '/api/v1/listeners', { body: { id: 'd1', service: 'date', transport: 'udp', port: 0 } });
  assert.equal((await call('POST', '/api/v1/listeners', { body: { id: 'c1', service: 'echo', port: 0 } })).status, 409);
  assert.equal((await call('POST', '/api/v1/listeners', { body: { service: 'echo', port: 70000 } })).status, 400);
  assert.equal((await call('POST', '/api/v1/listeners', { body: '{"service":' })).status, 400);
  assert.equal((await call('POST', '/api/v1/listeners', { body: 'x', contentType: 'text/plain' })).status, 415);
  assert.equal((await call('POST', '/api/v1/listeners', { body: 'x'.repeat(1024 * 1024 + 1) })).status, 413);
  await call('GET', '/api/v1/listeners');
  await call('GET', '/api/v1/listeners/c1');
  assert.equal((await call('GET', '/api/v1/listeners/nope')).status, 404);
  assert.equal((await call('PUT', '/api/v1/listeners/p1', { body: { service: 'echo', port: 0 } })).status, 201);
  assert.equal((await call('PUT', '/api/v1/listeners/p1', { body: { service: 'echo', port: 0, options: { mode: 'once' } } })).status, 200);
  assert.equal((await call('PUT', '/api/v1/listeners/p1', { body: { service: 'echo' } })).status, 400);
  assert.equal((await call('PATCH', '/api/v1/listeners/p1', { body: { idle_timeout_ms: 1000 }, contentType: 'application/merge-patch+json' })).status, 200);
  assert.equal((await call('PATCH', '/api/v1/listeners/p1', { body: { model: 'no-such-model' } })).status, 400);
  assert.equal((await call('PATCH', '/api/v1/listeners/nope', { body: {} })).status, 404);
  const port = await freePort();
  const blocker = net.createServer().listen(port, '127.0.0.1');
  await new Promise((resolve) => blocker.once('listening', resolve));
  try {
    assert.equal((await call('POST', '/api/v1/listeners', { body: { id: 'busy', service: 'echo', address: '127.0.0.1', port } })).status, 409);
    assert.equal((await call('PATCH', '/api/v1/listeners/p1', { body: { address: '127.0.0.1', port } })).status, 409);
  } finally {
    blocker.close();
  }
  assert.equal((await call('POST', '/api/v1/listeners/c1/stop')).status, 200);
  assert.equal((await call('POST', '/api/v1/listeners/c1/start')).status, 200);
  assert.equal((await call('POST', '/api/v1/listeners/nope/start')).status, 404);
  assert.equal((await call('POST', '/api/v1/listeners/nope/stop')).status, 404);
  await call('GET', '/api/v1/listeners/c1/metrics');
  assert.equal((await call('GET', '/api/v1/listeners/nope/metrics')).status, 404);
  await call('GET', '/api/v1/metrics');
  const prom = await call('GET', '/metrics');
  assert.equal(prom.status, 200);
  assert.equal(prom.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  assert.match(prom.text, /^sockserv_listener_up\{listener="c1",service="echo",transport="tcp"\} 1$/m);
  assert.equal((await call('DELETE', '/api/v1/listeners/p1')).status, 204);
  assert.equal((await call('DELETE', '/api/v1/listeners/p1')).status, 404);
  const head = await call('HEAD', '/api/v1/listeners');
  assert.equal(head.status, 200);
});

test('backup files routes answer as documented', async () => {
  if (!spec.paths['/api/v1/listeners/{id}/files']) return;
  assert.equal((await call('POST', '/api/v1/listeners', { body: { id: 'b1', service: 'backup', port: 0 } })).status, 201);
  await call('GET', '/api/v1/listeners/b1/files');
  assert.equal((await call('GET', '/api/v1/listeners/c1/files')).status, 404);
  assert.equal((await call('GET', '/api/v1/listeners/b1/files/missing.txt')).status, 404);
  assert.equal((await call('GET', '/api/v1/listeners/b1/files/missing.txt?version=x')).status, 400);
});

test('documents and the event stream answer as documented', async () => {
  const doc = await call('GET', '/openapi.yaml');
  assert.equal(doc.status, 200);
  assert.equal(doc.text, specText, 'the served document is the one in the repository');
  const etag = doc.headers.get('etag');
  assert.equal((await call('GET', '/openapi.yaml', { headers: { 'If-None-Match': etag } })).status, 304);
  assert.equal((await call('GET', '/')).status, 200);
  for (const file of ['index.html', 'app.js', 'style.css', 'favicon.svg']) {
    assert.equal((await call('GET', '/' + file)).status, 200, file);
  }
  if (spec.paths['/api/v1/events']) {
    const ctl = new AbortController();
    const res = await fetch(daemon.url + '/api/v1/events', { signal: ctl.signal });
    const op = spec.paths['/api/v1/events'].get;
    assert.ok(resolveRef(op.responses[String(res.status)]), `events answered ${res.status}`);
    assert.ok(resolveRef(op.responses['200']).content[res.headers.get('content-type').split(';')[0]]);
    exercised.add('GET /api/v1/events');
    ctl.abort();
  }
});

test('every operation of the spec was exercised above', () => {
  const missing = [];
  for (const [template, item] of Object.entries(spec.paths)) {
    for (const m of METHODS) {
      if (item[m] && !exercised.has(`${m.toUpperCase()} ${template}`)) missing.push(`${m.toUpperCase()} ${template}`);
    }
  }
  assert.deepEqual(missing, []);
});
