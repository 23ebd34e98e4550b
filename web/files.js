// The stored files of the selected listener, for a service that keeps files: each with its
// size, when it was stored, whether it was verified, its SHA-256 and its older versions, each a
// download link. Whether a service keeps files is what the daemon answers: GET .../files is 404
// for a listener whose service keeps none, and the section then stays hidden.

import {
  ApiError, NetworkError, api, askForToken, authHeaders, getToken, report,
} from './api.js';
import { byId, setText } from './dom.js';
import { download } from './download.js';
import { formatBytes, formatClock, formatInt, formatTimestamp } from './format.js';
import { describeFailure, notice } from './status.js';
import { model } from './store.js';

const files = { id: null, key: '', loading: false, again: false, unavailable: false };

/* service name -> whether its listeners keep files, as the daemon answered. */
const keepsFiles = new Map();

/** The selection changed: the next render loads the files of the new one. */
export function resetFiles() {
  files.id = null;
}

function showSection(show) {
  byId('files').hidden = !show;
}

/** Shows the files of l (loading them when it was just selected or its counters moved). */
export function renderFilesFor(l) {
  if (keepsFiles.get(l.service) === false) {
    showSection(false);
    return;
  }
  showSection(keepsFiles.get(l.service) === true);
  const m = l.metrics || {};
  const key = `${JSON.stringify(m.service || {})}|${m.connections_total}|${m.bytes_in}`;
  if (files.id !== l.id) {
    files.id = l.id;
    files.key = key;
    files.unavailable = false;
    byId('files-table').hidden = true;
    if (!uploading) {
      byId('upload-progress').hidden = true;
      showResult('', false);
    }
    setText(byId('files-status'), 'Loading the stored files…');
    loadFiles(l.id);
  } else if (files.key !== key && !files.unavailable) {
    files.key = key;
    loadFiles(l.id);
  }
}

export async function loadFiles(id) {
  if (files.loading) {
    files.again = true;
    return;
  }
  files.loading = true;
  const status = byId('files-status');
  const table = byId('files-table');
  const service = model.listeners.get(id)?.service;
  try {
    const data = await api.files(id);
    if (files.id !== id) return;
    const list = Array.isArray(data) ? data : Array.isArray(data?.files) ? data.files : [];
    files.unavailable = false;
    if (service) keepsFiles.set(service, true);
    showSection(true);
    renderFiles(id, list);
    table.hidden = list.length === 0;
    setText(status, list.length ? `${list.length} file${list.length === 1 ? '' : 's'}, as of ${formatClock(Date.now())}.` : 'No files stored yet.');
  } catch (e) {
    if (files.id !== id) return;
    table.hidden = true;
    if (e instanceof ApiError && e.status === 404) {
      // Its service keeps no files (or the listener is gone: then nothing is learnt).
      files.unavailable = true;
      if (service && model.listeners.has(id)) keepsFiles.set(service, false);
      showSection(false);
    } else if (e instanceof NetworkError) {
      setText(status, 'The stored files cannot be read: the daemon cannot be reached.');
    } else {
      setText(status, `The stored files cannot be read: ${e.message}`);
    }
  } finally {
    files.loading = false;
    if (files.again) {
      files.again = false;
      if (files.id === id && !files.unavailable) loadFiles(id);
    }
  }
}

/** The Refresh button: loads the files of the selected listener again. */
export function refreshFiles() {
  if (!model.selected) return;
  files.unavailable = false;
  setText(byId('files-status'), 'Loading the stored files…');
  loadFiles(model.selected);
}

/* "✓ sha256", "✓ size", "no": whether the copy was checked against what its client declared. */
function verifiedText(v, entry) {
  const how = entry && typeof entry.integrity === 'string' && entry.integrity !== 'none' ? entry.integrity : '';
  if (v === true) return how ? `✓ ${how}` : '✓ yes';
  if (v === false) return 'no';
  return how || '—';
}

function renderFiles(id, list) {
  const tbody = byId('files-table').tBodies[0];
  tbody.replaceChildren(...list.map((f) => {
    const tr = document.createElement('tr');
    const name = String(f.name ?? '');
    tr.dataset.name = name;

    const tdName = document.createElement('th');
    tdName.scope = 'row';
    tdName.dataset.label = 'Name';
    const a = document.createElement('a');
    a.href = api.fileUrl(id, name);
    a.download = name.split('/').pop() || 'download';
    a.className = 'file-link';
    a.textContent = name;
    a.setAttribute('aria-label', `Download ${name}`);
    tdName.append(a);

    const tdSize = document.createElement('td');
    tdSize.className = 'num';
    tdSize.dataset.label = 'Size';
    tdSize.textContent = formatBytes(f.size);
    tdSize.title = `${formatInt(f.size)} bytes`;

    const tdStored = document.createElement('td');
    tdStored.dataset.label = 'Stored';
    tdStored.textContent = formatTimestamp(f.stored);

    const tdVerified = document.createElement('td');
    tdVerified.dataset.label = 'Verified';
    tdVerified.className = 'c-verified';
    tdVerified.textContent = verifiedText(f.verified, f);

    const tdSha = document.createElement('td');
    tdSha.dataset.label = 'SHA-256';
    tdSha.className = 'c-sha';
    if (typeof f.sha256 === 'string' && f.sha256) {
      const code = document.createElement('code');
      code.textContent = `${f.sha256.slice(0, 12)}…`;
      code.title = f.sha256;
      tdSha.append(code);
    } else {
      tdSha.textContent = 'unknown';
    }

    // The current copy is the entry itself; versions lists the older copies kept.
    const tdVersions = document.createElement('td');
    tdVersions.dataset.label = 'Versions';
    const current = document.createElement('span');
    current.textContent = f.version !== undefined && f.version !== null ? `v${f.version} (current)` : 'current';
    tdVersions.append(current);
    const older = Array.isArray(f.versions) ? f.versions : [];
    if (older.length) {
      const det = document.createElement('details');
      const sum = document.createElement('summary');
      sum.textContent = `${older.length} older`;
      const ul = document.createElement('ul');
      ul.className = 'versions';
      for (const x of [...older].sort((a, b2) => (b2?.version ?? 0) - (a?.version ?? 0))) {
        const li = document.createElement('li');
        if (x && typeof x === 'object' && x.version !== undefined) {
          const link = document.createElement('a');
          link.href = `${api.fileUrl(id, name)}?version=${encodeURIComponent(x.version)}`;
          link.download = `v${x.version}-${name.split('/').pop() || 'download'}`;
          link.className = 'version-link';
          link.textContent = `v${x.version}`;
          link.setAttribute('aria-label', `Download version ${x.version} of ${name}`);
          const bits = [];
          if (x.size !== undefined) bits.push(formatBytes(x.size));
          if (x.stored) bits.push(formatTimestamp(x.stored));
          bits.push(`verified: ${verifiedText(x.verified, x)}`);
          li.append(link, ` · ${bits.join(' · ')}`);
        } else {
          li.textContent = typeof x === 'object' ? JSON.stringify(x) : String(x);
        }
        ul.append(li);
      }
      det.append(sum, ul);
      tdVersions.append(det);
    }
    tr.append(tdName, tdSize, tdStored, tdVerified, tdSha, tdVersions);
    return tr;
  }));
}

/* ---- uploads ---- */

// The browser reads a file whole to compute its SHA-256 (crypto.subtle has no streaming
// digest): larger files go without one, and the daemon's own checksum is what is shown.
const DIGEST_MAX = 512 * 1024 * 1024;

let uploading = false;
const queue = [];

/* "sha-256=:BASE64:" of file, or null where the browser cannot compute it. */
async function reprDigest(file) {
  if (!globalThis.isSecureContext || !globalThis.crypto?.subtle || file.size > DIGEST_MAX) return null;
  const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
  let bin = '';
  for (const b of sum) bin += String.fromCharCode(b);
  return `sha-256=:${btoa(bin)}:`;
}

function hexOf(digest) {
  const b64 = /^sha-256=:([^:]+):$/.exec(digest || '')?.[1];
  if (!b64) return null;
  return Array.from(atob(b64), (c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
}

/* The upload's progress, in the bar and its text. */
function showProgress(file, sent, total) {
  const pct = total > 0 ? Math.floor((sent * 100) / total) : 100;
  byId('upload-progress').hidden = false;
  byId('upload-bar').value = pct;
  byId('upload-bar').setAttribute('aria-label', `Upload of ${file.name}`);
  setText(byId('upload-text'), `${file.name}: ${formatBytes(sent)} of ${formatBytes(total)} (${pct} %)`);
}

/* One PUT with the token this tab holds; resolves to { status, body } (status 0: no answer). */
function put(url, file, digest) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json, application/problem+json');
    for (const [k, v] of Object.entries(authHeaders({}))) xhr.setRequestHeader(k, v);
    if (digest) xhr.setRequestHeader('Repr-Digest', digest);
    xhr.upload.onprogress = (e) => showProgress(file, e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, statusText: xhr.statusText, body });
    };
    xhr.onerror = () => resolve({ status: 0 });
    xhr.onabort = () => resolve({ status: 0 });
    xhr.send(file);
  });
}

/* What went wrong with an upload, in plain words. */
function uploadFailure(status, problem) {
  const detail = problem?.detail || problem?.title || `HTTP ${status}`;
  switch (status) {
    case 400: return problem?.field === 'name' ? `the daemon refuses this file name: ${detail}`
      : problem?.field === 'Repr-Digest' ? `the file changed or was damaged on the way (its checksum does not match), nothing was kept: ${detail}`
        : detail;
    case 404: return `this listener takes no uploads: ${detail}`;
    case 409: return `not stored: ${detail}`;
    case 413: return `the file is larger than this listener takes: ${detail}`;
    case 507: return `no room left (quota or disk full): ${detail}`;
    default: return detail;
  }
}

function showResult(text, error) {
  const p = byId('upload-result');
  p.classList.toggle('error', !!error);
  p.replaceChildren();
  if (typeof text === 'string') p.textContent = text;
  else p.append(...text);
}

async function uploadOne(id, file) {
  const url = api.fileUrl(id, file.name);
  showProgress(file, 0, file.size);
  setText(byId('upload-text'), `${file.name}: computing its checksum…`);
  let digest = null;
  try {
    digest = await reprDigest(file);
  } catch {
    digest = null;
  }
  for (let attempt = 0; ; attempt++) {
    const answer = await put(url, file, digest);
    if (answer.status === 0) {
      report(false);
      showResult(`${file.name} was not stored: the daemon cannot be reached.`, true);
      return;
    }
    report(true);
    if (answer.status === 401 && attempt === 0 && (await askForToken(getToken() ? 'refused' : 'missing'))) continue;
    if (answer.status === 201 && answer.body) {
      const b = answer.body;
      const code = document.createElement('code');
      code.textContent = b.sha256;
      const checked = digest && hexOf(digest) === b.sha256 ? ', the same as the browser computed' : '';
      showResult([`Stored ${b.name} as version ${b.version} (${formatBytes(b.size)}), SHA-256 `, code, `${checked}.`], false);
      setText(byId('upload-text'), `${file.name}: done`);
      byId('upload-bar').value = 100;
      return;
    }
    showResult(`${file.name} was not stored: ${uploadFailure(answer.status, answer.body)}`, true);
    return;
  }
}

/* Uploads files to the selected listener, one after the other. */
async function uploadFiles(list) {
  const id = model.selected;
  if (!id) return;
  for (const f of list) queue.push(f);
  if (uploading) return;
  uploading = true;
  try {
    while (queue.length) await uploadOne(id, queue.shift());
  } finally {
    uploading = false;
    if (files.id === id) loadFiles(id);
  }
}

function initUploads() {
  const drop = byId('files-drop');
  const input = byId('files-input');
  byId('files-upload').addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    const list = Array.from(input.files || []);
    input.value = '';
    if (list.length) uploadFiles(list);
  });
  const section = byId('files');
  section.addEventListener('dragover', (e) => {
    if (!e.dataTransfer || !Array.from(e.dataTransfer.types || []).includes('Files')) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    drop.classList.add('over');
  });
  section.addEventListener('dragleave', (e) => {
    if (!section.contains(e.relatedTarget)) drop.classList.remove('over');
  });
  section.addEventListener('drop', (e) => {
    const list = Array.from(e.dataTransfer?.files || []);
    drop.classList.remove('over');
    if (!list.length) return;
    e.preventDefault();
    uploadFiles(list);
  });
}

/** Wires the Refresh button, the uploads and the download links. */
export function initFiles() {
  byId('files-refresh').addEventListener('click', refreshFiles);
  initUploads();
  // With a token, a plain link would download the daemon's 401: download.js sends it.
  byId('files-table').addEventListener('click', (e) => {
    const a = e.target.closest('a.file-link, a.version-link');
    if (!a || !getToken()) return;
    e.preventDefault();
    download(a.href, a.download).catch((err) => notice(`Could not download ${a.download}: ${describeFailure(err)}`, 'error'));
  });
}
