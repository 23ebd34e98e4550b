// The REST API held to openapi/openapi.yaml: the document passes a maintained OpenAPI linter,
// every route it names is served with exactly the methods it lists, and real answers of the
// daemon (successes and errors) match the status codes, media types and schemas it documents.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
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
 * Sends a request (to the daemon at base, the main one by default) and checks the answer: its
 * status is expected, and the spec documents that status for the operation (a `default`
 * response does not count), and a body is of a documented media type and valid against its
 * schema. POST, PUT and PATCH say contentType (null: none) with or without a body, as the
 * daemon requires.
 */
async function call(expected, method, p, { body, contentType = 'application/json', headers = {}, base } = {}) {
  const init = { method, headers: { ...headers } };
  if (contentType && (body !== undefined || ['POST', 'PUT', 'PATCH'].includes(method))) {
    init.headers['Content-Type'] = contentType;
  }
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch((base || daemon.url) + p, init);
  const text = await res.text();
  return check(expected, method, p, res.status, (name) => res.headers.get(name), text);
}

/**
 * A request that announces a body of length bytes and sends none of it: the daemon must refuse
 * it by its Content-Length alone (sending the body too would race the daemon's close against
 * the client's writes). Checked like call().
 */
async function callAnnounced(expected, method, p, length) {
  const { hostname, port } = new URL(daemon.url);
  const raw = await new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname);
    let buf = Buffer.alloc(0);
    const done = () => {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const head = buf.subarray(0, end).toString('latin1');
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const want = m ? Number(m[1]) : 0;
      if (buf.length < end + 4 + want) return false;
      resolve({ head, body: buf.subarray(end + 4, end + 4 + want).toString('utf8') });
      s.destroy();
      return true;
    };
    s.setTimeout(5000, () => { s.destroy(); reject(new Error(`${method} ${p}: no answer within 5 s`)); });
    s.on('connect', () => s.write(`${method} ${p} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`));
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); done(); });
    s.on('end', () => { if (!done()) reject(new Error(`${method} ${p}: closed before a whole answer`)); });
    s.on('error', (e) => { if (!done()) reject(e); });
  });
  const lines = raw.head.split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0])[1]);
  const headers = new Map(lines.slice(1).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
  }));
  return check(expected, method, p, status, (name) => headers.get(name.toLowerCase()) ?? null, raw.body);
}

/** Checks an answer (status, header getter, body text) against expected and the spec; see call(). */
function check(expected, method, p, status, header, text) {
  assert.equal(typeof expected, 'number', `${method} ${p}: every call says the status it expects`);
  const res = { status, headers: { get: header } };
  assert.equal(status, expected, `${method} ${p} answered ${status}, not ${expected}: ${text.slice(0, 300)}`);
  const pathOnly = p.split('?')[0];
  const template = templateOf(pathOnly);
  assert.ok(template, `${pathOnly} is not in the spec`);
  // HEAD is answered as GET without the body, on every GET route.
  const op = spec.paths[template][method === 'HEAD' ? 'get' : method.toLowerCase()];
  assert.ok(op, `${method} ${template} is not in the spec`);
  const response = resolveRef(op.responses[String(res.status)]);
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

/** A GET with the given Host header (fetch() does not let one be set), checked as call() does. */
function getWithHost(expected, base, p, host) {
  return new Promise((resolve, reject) => {
    const req = http.get(base + p, { headers: { Host: host } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        try {
          resolve(check(expected, 'GET', p, res.statusCode, (name) => res.headers[name.toLowerCase()] ?? null, text));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', reject);
  });
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
      .replace('{file}', 'app.js').replace('{n}', '1');
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
  await call(200, 'GET', '/api/v1/health');
  await call(200, 'GET', '/api/v1/listeners');
  const created = await call(201, 'POST', '/api/v1/listeners', {
    body: { id: 'c1', service: 'echo', transport: 'tcp', address: '127.0.0.1', port: 0 },
  });
  await call(201, 'POST', '/api/v1/listeners', { body: { id: 'u1', service: 'echo', transport: 'udp', port: 0 } });
  await call(201, 'POST', '/api/v1/listeners', { body: { id: 'd1', service: 'date', transport: 'udp', port: 0 } });
  await call(409, 'POST', '/api/v1/listeners', { body: { id: 'c1', service: 'echo', port: 0 } });
  await call(400, 'POST', '/api/v1/listeners', { body: { service: 'echo', port: 70000 } });
  await call(400, 'POST', '/api/v1/listeners', { body: '{"service":' });
  await call(415, 'POST', '/api/v1/listeners', { body: 'x', contentType: 'text/plain' });
  await callAnnounced(413, 'POST', '/api/v1/listeners', 1024 * 1024 + 1);
  await call(200, 'GET', '/api/v1/listeners');
  await call(200, 'GET', '/api/v1/listeners/c1');
  await call(404, 'GET', '/api/v1/listeners/nope');
  await call(201, 'PUT', '/api/v1/listeners/p1', { body: { service: 'echo', port: 0 } });
  await call(200, 'PUT', '/api/v1/listeners/p1', { body: { service: 'echo', port: 0, options: { mode: 'once' } } });
  await call(400, 'PUT', '/api/v1/listeners/p1', { body: { service: 'echo' } });
  await call(200, 'PATCH', '/api/v1/listeners/p1', { body: { idle_timeout_ms: 1000 }, contentType: 'application/merge-patch+json' });
  await call(400, 'PATCH', '/api/v1/listeners/p1', { body: { model: 'no-such-model' } });
  await call(404, 'PATCH', '/api/v1/listeners/nope', { body: {} });
  const port = await freePort();
  const blocker = net.createServer().listen(port, '127.0.0.1');
  await new Promise((resolve) => blocker.once('listening', resolve));
  try {
    await call(409, 'POST', '/api/v1/listeners', { body: { id: 'busy', service: 'echo', address: '127.0.0.1', port } });
    await call(409, 'PATCH', '/api/v1/listeners/p1', { body: { address: '127.0.0.1', port } });
  } finally {
    blocker.close();
  }
  await call(200, 'POST', '/api/v1/listeners/c1/stop');
  await call(200, 'POST', '/api/v1/listeners/c1/start');
  await call(404, 'POST', '/api/v1/listeners/nope/start');
  await call(404, 'POST', '/api/v1/listeners/nope/stop');
  await call(200, 'GET', '/api/v1/listeners/c1/metrics');
  await call(404, 'GET', '/api/v1/listeners/nope/metrics');
  await call(200, 'GET', '/api/v1/metrics');
  const prom = await call(200, 'GET', '/metrics');
  assert.equal(prom.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  assert.match(prom.text, /^sockserv_listener_up\{listener="c1",service="echo",transport="tcp"\} 1$/m);
  await call(204, 'DELETE', '/api/v1/listeners/p1');
  await call(404, 'DELETE', '/api/v1/listeners/p1');
  const head = await call(200, 'HEAD', '/api/v1/listeners');
});

test('backup files routes answer as documented', async () => {
  assert.ok(spec.paths['/api/v1/listeners/{id}/files'], 'the spec documents the files route');
  await call(201, 'POST', '/api/v1/listeners', { body: { id: 'b1', service: 'backup', port: 0 } });
  await call(200, 'GET', '/api/v1/listeners/b1/files');
  await call(404, 'GET', '/api/v1/listeners/c1/files');
  await call(404, 'GET', '/api/v1/listeners/b1/files/missing.txt');
  await call(400, 'GET', '/api/v1/listeners/b1/files/missing.txt?version=x');
  const octets = { contentType: 'application/octet-stream' };
  await call(201, 'PUT', '/api/v1/listeners/b1/files/a.txt', { ...octets, body: 'hello' });
  await call(400, 'PUT', '/api/v1/listeners/b1/files/.hidden', { ...octets, body: 'x' });
  await call(400, 'PUT', '/api/v1/listeners/b1/files/b.txt', {
    ...octets, body: 'x', headers: { 'Repr-Digest': 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:' },
  });
  await call(404, 'PUT', '/api/v1/listeners/c1/files/a.txt', { ...octets, body: 'x' });
  const ticket = await call(201, 'POST', '/api/v1/listeners/b1/files/a.txt/ticket');
  await call(200, 'GET', ticket.json.url);
  await call(404, 'POST', '/api/v1/listeners/b1/files/missing.txt/ticket');
  await call(400, 'POST', '/api/v1/listeners/b1/files/a.txt/ticket?version=x');
  await call(201, 'POST', '/api/v1/listeners', {
    body: { id: 'b2', service: 'backup', port: 0, options: { max_file_size: 4, quota_bytes: 6, on_exists: 'reject' } },
  });
  await call(413, 'PUT', '/api/v1/listeners/b2/files/a.txt', { ...octets, body: 'too large' });
  await call(201, 'PUT', '/api/v1/listeners/b2/files/a.txt', { ...octets, body: 'four' });
  await call(409, 'PUT', '/api/v1/listeners/b2/files/a.txt', { ...octets, body: 'x' });
  await call(507, 'PUT', '/api/v1/listeners/b2/files/b.txt', { ...octets, body: 'four' });
  await call(200, 'POST', '/api/v1/listeners/b2/stop');
  await call(409, 'PUT', '/api/v1/listeners/b2/files/c.txt', { ...octets, body: 'x' });
});

/** The ids of a list of listeners, in order. */
const idsOf = (listeners) => listeners.map((l) => l.id);

test('changes of one listener take If-Match and dry_run, and answer ETags, as documented', async () => {
  const one = await call(200, 'GET', '/api/v1/listeners/c1');
  const tag = one.headers.get('etag');
  assert.match(tag, /^"r[1-9][0-9]*"$/, 'GET of a listener sends its ETag');
  const patch = { idle_timeout_ms: one.json.idle_timeout_ms + 1000 };

  // A stale If-Match changes nothing and answers the current ETag.
  const stale = await call(412, 'PATCH', '/api/v1/listeners/c1', { body: patch, headers: { 'If-Match': '"r999999"' } });
  assert.match(stale.json.detail, /^precondition failed: /);
  assert.equal(stale.headers.get('etag'), tag);
  // A weak tag never matches.
  await call(412, 'POST', '/api/v1/listeners/c1/stop', { headers: { 'If-Match': 'W/' + tag } });
  await call(412, 'POST', '/api/v1/listeners', {
    body: { id: 'm1', service: 'echo', address: '127.0.0.1', port: 0 }, headers: { 'If-Match': '*' },
  });

  // Dry runs answer the diff and change nothing.
  const dry = await call(200, 'PATCH', '/api/v1/listeners/c1?dry_run=true', { body: patch, headers: { 'If-Match': tag } });
  assert.equal(dry.json.dry_run, true);
  assert.equal(dry.headers.get('etag'), null, 'a dry run sends no ETag');
  assert.deepEqual(dry.json.diff.map((d) => [d.id, d.action, d.fields]), [['c1', 'change', ['idle_timeout_ms']]]);
  assert.equal((await call(200, 'GET', '/api/v1/listeners/c1')).json.idle_timeout_ms, one.json.idle_timeout_ms);
  const dryCreate = await call(200, 'POST', '/api/v1/listeners?dry_run=1', {
    body: { id: 'x1', service: 'echo', address: '127.0.0.1', port: 0 },
  });
  assert.deepEqual(dryCreate.json.diff, [{ id: 'x1', action: 'create' }]);
  await call(404, 'GET', '/api/v1/listeners/x1');
  const dryDelete = await call(200, 'DELETE', '/api/v1/listeners/c1?dry_run=true', { headers: { 'If-Match': '*' } });
  assert.deepEqual(dryDelete.json.diff, [{ id: 'c1', action: 'delete' }]);
  const dryPut = await call(200, 'PUT', '/api/v1/listeners/c1?dry_run=true', { body: { ...one.json, ...patch } });
  assert.equal(dryPut.json.dry_run, true);
  await call(200, 'POST', '/api/v1/listeners/c1/stop?dry_run=true');
  await call(200, 'POST', '/api/v1/listeners/c1/start?dry_run=false');
  assert.equal((await call(200, 'GET', '/api/v1/listeners/c1')).json.status.state, 'running');
  const badDry = await call(400, 'DELETE', '/api/v1/listeners/c1?dry_run=maybe');
  assert.equal(badDry.json.field, 'dry_run');
  await call(200, 'GET', '/api/v1/listeners/c1');

  // The right If-Match applies the change, which answers the listener's new ETag.
  const patched = await call(200, 'PATCH', '/api/v1/listeners/c1', { body: patch, headers: { 'If-Match': `"r1", ${tag}` } });
  assert.equal(patched.json.idle_timeout_ms, patch.idle_timeout_ms);
  const newTag = patched.headers.get('etag');
  assert.match(newTag, /^"r[1-9][0-9]*"$/);
  assert.notEqual(newTag, tag);
  assert.equal((await call(200, 'GET', '/api/v1/listeners/c1')).headers.get('etag'), newTag);
  const created = await call(201, 'PUT', '/api/v1/listeners/m2', { body: { service: 'echo', address: '127.0.0.1', port: 0 } });
  assert.match(created.headers.get('etag'), /^"r[1-9][0-9]*"$/);
  await call(204, 'DELETE', '/api/v1/listeners/m2', { headers: { 'If-Match': created.headers.get('etag') } });
});

test('the whole configuration, its revisions and their restore answer as documented', async () => {
  const before = await call(200, 'GET', '/api/v1/config');
  const rev0 = before.json.revision;
  const etag0 = before.headers.get('etag');
  assert.ok(rev0 >= 1, 'every change so far made a revision');
  assert.equal(etag0, `"r${rev0}"`);
  const ids0 = idsOf(before.json.listeners);
  assert.ok(ids0.includes('u1') && ids0.includes('c1'), `listeners ${ids0}`);
  assert.deepEqual(ids0, [...ids0].sort(), 'ordered by id');
  assert.equal((await call(200, 'HEAD', '/api/v1/config')).headers.get('etag'), etag0);

  // A GET's body sent back changes nothing: no new revision.
  const same = await call(200, 'PUT', '/api/v1/config', { body: before.json, headers: { 'If-Match': etag0 } });
  assert.equal(same.json.revision, rev0);
  assert.deepEqual(same.json.diff, []);

  // Delete u1, create w1: first as a dry run, then for real.
  const wanted = {
    listeners: [...before.json.listeners.filter((l) => l.id !== 'u1'),
      { id: 'w1', service: 'echo', address: '127.0.0.1', port: 0 }],
  };
  const dry = await call(200, 'PUT', '/api/v1/config?dry_run=true', { body: wanted, headers: { 'If-Match': etag0 } });
  assert.equal(dry.json.dry_run, true);
  assert.equal(dry.json.revision, rev0);
  assert.deepEqual(dry.json.diff, [{ id: 'u1', action: 'delete' }, { id: 'w1', action: 'create' }]);
  assert.equal((await call(200, 'GET', '/api/v1/config')).json.revision, rev0, 'a dry run changes nothing');
  const put = await call(200, 'PUT', '/api/v1/config', { body: wanted, headers: { 'If-Match': etag0 } });
  assert.equal(put.json.revision, rev0 + 1);
  assert.equal(put.headers.get('etag'), `"r${rev0 + 1}"`);
  assert.deepEqual(put.json.diff, dry.json.diff);
  assert.deepEqual(idsOf(put.json.listeners), ids0.filter((id) => id !== 'u1').concat('w1').sort());
  assert.equal((await call(200, 'GET', '/api/v1/listeners/w1')).json.status.state, 'running');
  // Prefer: return=minimal: the same set again, answered without the listeners.
  const minimal = await call(200, 'PUT', '/api/v1/config', { body: wanted, headers: { Prefer: 'return=minimal' } });
  assert.equal(minimal.headers.get('preference-applied'), 'return=minimal');
  assert.deepEqual(Object.keys(minimal.json).sort(), ['diff', 'revision']);
  assert.deepEqual(minimal.json.diff, []);
  assert.equal(minimal.json.revision, rev0 + 1);

  // The ETag read before is stale now: 412 with the current one, nothing changed.
  const stale = await call(412, 'PUT', '/api/v1/config', { body: before.json, headers: { 'If-Match': etag0 } });
  assert.equal(stale.headers.get('etag'), `"r${rev0 + 1}"`);
  assert.match(stale.json.detail, /^precondition failed: /);
  await call(404, 'GET', '/api/v1/listeners/u1');

  // A bad listener names its index; a port in use names the listener, and nothing changes.
  const bad = await call(400, 'PUT', '/api/v1/config', {
    body: { listeners: [...wanted.listeners, { id: 'bad', service: 'echo', port: 70000 }] },
  });
  assert.equal(bad.json.field, `listeners[${wanted.listeners.length}].port`);
  assert.equal((await call(400, 'PUT', '/api/v1/config', { body: { listeners: [{ service: 'echo', port: 0 }] } })).json.field,
    'listeners[0].id');
  await call(400, 'PUT', '/api/v1/config', { body: { listener: [] } });
  const port = await freePort();
  const blocker = net.createServer().listen(port, '127.0.0.1');
  await new Promise((resolve) => blocker.once('listening', resolve));
  try {
    const busy = await call(409, 'PUT', '/api/v1/config', {
      body: { listeners: [{ id: 'a0', service: 'echo', address: '127.0.0.1', port: 0 }, ...wanted.listeners,
        { id: 'busy', service: 'echo', address: '127.0.0.1', port }] },
    });
    assert.equal(busy.json.listener, 'busy');
    assert.equal(busy.json.field, `listeners[${wanted.listeners.length + 1}].port`);
  } finally {
    blocker.close();
  }
  const after = await call(200, 'GET', '/api/v1/config');
  assert.equal(after.json.revision, rev0 + 1, 'a failed change makes no revision');
  await call(404, 'GET', '/api/v1/listeners/a0');

  // Revisions, newest first.
  const list = await call(200, 'GET', '/api/v1/config/revisions?limit=2');
  assert.equal(list.json.revisions.length, 2);
  assert.equal(list.json.revisions[0].revision, rev0 + 1);
  assert.equal(list.json.revisions[0].source, 'api: replace configuration');
  assert.deepEqual(list.json.revisions[0].origin, { interface: 'api', action: 'replace', listener: null, restored: null });
  assert.deepEqual(list.json.revisions[0].diff, put.json.diff);
  assert.equal(list.json.revisions[1].revision, rev0);
  const all = await call(200, 'GET', '/api/v1/config/revisions');
  assert.equal(all.json.revisions.length, Math.min(20, rev0 + 1));
  assert.ok(all.json.revisions.some((r) => r.source === 'api: patch listener c1'), 'a listener change is a revision');
  for (const limit of ['0', '101', 'x', '']) {
    const res = await call(400, 'GET', `/api/v1/config/revisions?limit=${limit}`);
    assert.equal(res.json.field, 'limit');
  }
  const old = await call(200, 'GET', `/api/v1/config/revisions/${rev0}`);
  assert.equal(old.json.revision, rev0);
  assert.deepEqual(idsOf(old.json.listeners), ids0);
  await call(404, 'GET', '/api/v1/config/revisions/999999');
  for (const n of ['0', 'abc', 'r1']) {
    const res = await call(400, 'GET', `/api/v1/config/revisions/${n}`);
    assert.equal(res.json.field, 'n');
  }

  // Restore the revision before: dry run, stale If-Match, then for real.
  const dryRestore = await call(200, 'POST', `/api/v1/config/revisions/${rev0}/restore?dry_run=true`);
  assert.equal(dryRestore.json.dry_run, true);
  assert.deepEqual(dryRestore.json.diff, [{ id: 'u1', action: 'create' }, { id: 'w1', action: 'delete' }]);
  const staleRestore = await call(412, 'POST', `/api/v1/config/revisions/${rev0}/restore`, { headers: { 'If-Match': etag0 } });
  assert.equal(staleRestore.headers.get('etag'), `"r${rev0 + 1}"`);
  const restored = await call(200, 'POST', `/api/v1/config/revisions/${rev0}/restore`, { headers: { 'If-Match': `"r${rev0 + 1}"` } });
  assert.equal(restored.json.revision, rev0 + 2);
  assert.equal(restored.headers.get('etag'), `"r${rev0 + 2}"`);
  assert.deepEqual(idsOf(restored.json.listeners), ids0);
  const newest = await call(200, 'GET', '/api/v1/config/revisions?limit=1');
  assert.equal(newest.json.revisions[0].source, `api: restore of revision ${rev0}`);
  await call(404, 'POST', '/api/v1/config/revisions/999999/restore');
  const badRestore = await call(400, 'POST', '/api/v1/config/revisions/zero/restore');
  assert.equal(badRestore.json.field, 'n');
  await call(415, 'POST', `/api/v1/config/revisions/${rev0}/restore`, { contentType: null });
});

test('documents and the event stream answer as documented', async () => {
  const doc = await call(200, 'GET', '/openapi.yaml');
  assert.equal(doc.text, specText, 'the served document is the one in the repository');
  const etag = doc.headers.get('etag');
  await call(304, 'GET', '/openapi.yaml', { headers: { 'If-None-Match': etag } });
  await call(200, 'GET', '/');
  for (const file of ['index.html', 'app.js', 'style.css', 'favicon.svg']) {
    await call(200, 'GET', '/' + file);
  }
  assert.ok(spec.paths['/api/v1/events'], 'the spec documents the event stream');
  const ctl = new AbortController();
  const res = await fetch(daemon.url + '/api/v1/events', { signal: ctl.signal });
  const op = spec.paths['/api/v1/events'].get;
  assert.equal(res.status, 200, 'the event stream is served');
  assert.ok(resolveRef(op.responses[String(res.status)]), `events answered ${res.status}`);
  assert.ok(resolveRef(op.responses['200']).content[res.headers.get('content-type').split(';')[0]]);
  exercised.add('GET /api/v1/events');
  ctl.abort();

  const recent = await call(200, 'GET', '/api/v1/events/recent?limit=5');
  assert.ok(recent.json.events.length <= 5);
  assert.ok(recent.json.events.every((e) => e.event !== 'metrics'));
  for (const limit of ['0', '101', 'x']) await call(400, 'GET', `/api/v1/events/recent?limit=${limit}`);
});

test('a metrics tick with a listener\'s latency_interval matches its schema', async () => {
  await call(201, 'POST', '/api/v1/listeners', { body: { id: 'tick', service: 'echo', port: 0 } });
  const ctl = new AbortController();
  const res = await fetch(daemon.url + '/api/v1/events', { signal: ctl.signal });
  const reader = res.body.getReader();
  const validate = ajv.compile({ $ref: 'openapi.yaml#/components/schemas/MetricsTick' });
  const deadline = Date.now() + 10000;
  let text = '';
  let tick;
  while (!tick && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString('utf8');
    for (const block of text.split('\n\n')) {
      if (!block.includes('event: metrics')) continue;
      const data = JSON.parse(block.split('\n').find((l) => l.startsWith('data: ')).slice(6));
      if (data.listeners.tick?.latency_interval) tick = data;
    }
  }
  ctl.abort();
  assert.ok(tick, 'a metrics tick carried latency_interval within 10 s');
  assert.ok(validate(tick), JSON.stringify(validate.errors));
  await call(204, 'DELETE', '/api/v1/listeners/tick');
});

test('a daemon with a token answers 401 without it and 403 to other sites, as documented', async () => {
  const token = 'contract-token-0123456789abcdef';
  const guarded = await startDaemon({ stateDir: tempDir('contract-token'), token });
  const base = guarded.url;
  const auth = { Authorization: `Bearer ${token}` };
  const echo = { service: 'echo', address: '127.0.0.1', port: 0 };
  try {
    const none = await call(401, 'GET', '/api/v1/listeners', { base });
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="sockserv"');
    const wrong = await call(401, 'GET', '/api/v1/listeners', { base, headers: { Authorization: 'Bearer not-it' } });
    assert.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="sockserv", error="invalid_token"');
    assert.ok(!wrong.text.includes('not-it'), 'the token sent is not repeated');
    await call(401, 'POST', '/api/v1/listeners', { base, body: echo });
    await call(401, 'GET', '/metrics', { base });
    await call(200, 'GET', '/api/v1/listeners', { base, headers: auth });
    // Health and the dashboard's files need no token.
    await call(200, 'GET', '/api/v1/health', { base });
    await call(200, 'GET', '/', { base });
    await call(200, 'GET', '/openapi.yaml', { base });
    // Other sites, DNS rebinding, and a POST that does not say JSON.
    await call(403, 'POST', '/api/v1/listeners', { base, body: echo, headers: { ...auth, Origin: 'null' } });
    await call(403, 'DELETE', '/api/v1/listeners/x', { base, headers: { ...auth, 'Sec-Fetch-Site': 'cross-site' } });
    await getWithHost(403, base, '/api/v1/listeners', 'rebind.example');
    await getWithHost(403, base, '/api/v1/health', 'rebind.example');
    await call(415, 'POST', '/api/v1/listeners/nope/start', { base, headers: auth, contentType: null });
    await call(415, 'POST', '/api/v1/listeners/nope/stop', { base, headers: auth, contentType: 'text/plain' });
  } finally {
    assert.equal(await guarded.stop(), 0, 'the daemon with a token exits 0 on SIGTERM');
  }
  assert.ok(!guarded.log().includes(token), 'the daemon never logs its token');
});

test('services routes answer as documented, from the services\' tables', async () => {
  const list = await call(200, 'GET', '/api/v1/services');
  assert.deepEqual(list.json.services.map((s) => s.name), ['backup', 'date', 'echo']);
  const echo = await call(200, 'GET', '/api/v1/services/echo');
  assert.deepEqual(echo.json, list.json.services[2]);
  assert.deepEqual(echo.json, spec.components.examples.ServiceEcho.value, 'the documented example is the real echo');
  await call(404, 'GET', '/api/v1/services/gopher');
});

test('the fleet route answers 404 on a daemon without a fleet view', async () => {
  const res = await call(404, 'GET', '/api/v1/fleet');
  assert.match(res.json.detail, /--fleet-view/);
});

test('the fleet route answers its documented body on a daemon with a fleet view', {
  skip: process.env.SOCKSERV_TEST_AMQP ? false : 'no broker (scripts/e2e.sh and scripts/test.sh run one)',
}, async () => {
  const viewer = await startDaemon({
    stateDir: tempDir('contract-fleet'),
    args: ['--amqp', process.env.SOCKSERV_TEST_AMQP, '--amqp-prefix', `t${process.pid}-contract`,
      '--node', 'viewer', '--label', 'role=view', '--fleet-view'],
  });
  try {
    const made = await viewer.api('POST', '/api/v1/listeners', { id: 'e1', service: 'echo', address: '127.0.0.1', port: 0 });
    assert.equal(made.status, 201);
    // the view sees itself: its hello, its listener, and a metrics tick with rates
    const deadline = Date.now() + 20000;
    let res;
    for (;;) {
      res = await call(200, 'GET', '/api/v1/fleet', { base: viewer.url });
      const me = res.json.nodes.find((n) => n.node === 'viewer');
      if (res.json.connected && me?.listeners[0]?.rates) break;
      assert.ok(Date.now() < deadline, `the view never showed itself with rates: ${res.text}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(res.json.nodes.find((n) => n.node === 'viewer').state, 'SYNCED');
  } finally {
    assert.equal(await viewer.stop(), 0, `the viewer exits 0 on SIGTERM\n${viewer.log()}`);
  }
});

test('every operation documents 403, and 401 unless it needs no token', () => {
  const missing = [];
  for (const [template, item] of Object.entries(spec.paths)) {
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      const open = Array.isArray(op.security) && op.security.length === 0;
      if (!op.responses['403']) missing.push(`${m.toUpperCase()} ${template} 403`);
      if (!open && !op.responses['401']) missing.push(`${m.toUpperCase()} ${template} 401`);
    }
  }
  assert.deepEqual(missing, []);
  assert.equal(spec.components.securitySchemes.bearerToken.scheme, 'bearer');
  assert.equal(spec.paths['/api/v1/health'].get.security.length, 0, 'health needs no token');
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
