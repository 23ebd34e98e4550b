// The listener form, in a modal <dialog>: creates a listener (POST) or edits one (PATCH with
// a merge patch of the fields that changed). The daemon is the judge of every value: its
// problem+json answer is shown next to the field it names.

import { api, ApiError, NetworkError } from './api.js';

const TOP_FIELDS = ['id', 'service', 'transport', 'address', 'port', 'model', 'workers',
  'max_connections', 'idle_timeout_ms', 'max_connections_per_source',
  'connection_rate_per_source', 'reply_rate_per_source', 'reply_rate', 'enabled'];

function errorId(name) {
  return `f-${name.replace(/[^A-Za-z0-9_-]/g, '-')}-error`;
}

function isShown(el) {
  return !el.closest('[hidden]');
}

export class ListenerForm {
  /** dialog: the <dialog> holding form#listener-form; onSaved(resource, how) after a save. */
  constructor(dialog, onSaved) {
    this.dialog = dialog;
    this.form = dialog.querySelector('form');
    this.onSaved = onSaved;
    this.title = dialog.querySelector('#form-title');
    this.summary = dialog.querySelector('#form-error');
    this.submitButton = dialog.querySelector('#form-submit');
    this.original = null;
    this.busy = false;

    const el = this.form.elements;
    el.service.addEventListener('change', () => this.syncVisibility());
    el.transport.addEventListener('change', () => this.syncVisibility());
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    dialog.querySelector('#form-cancel').addEventListener('click', () => dialog.close('cancel'));
    this.form.addEventListener('input', (e) => this.clearFieldError(e.target));
  }

  /* The inputs holding service options: name "options.KEY". */
  optionInputs() {
    return [...this.form.querySelectorAll('[name^="options."]')];
  }

  syncVisibility() {
    const el = this.form.elements;
    const service = el.service.value;
    // The backup service speaks TCP only.
    const udp = el.transport.querySelector('option[value="udp"]');
    udp.disabled = service === 'backup';
    if (udp.disabled && el.transport.value === 'udp') el.transport.value = 'tcp';
    const transport = el.transport.value;
    for (const box of this.form.querySelectorAll('[data-service]')) {
      box.hidden = box.dataset.service !== service;
    }
    for (const box of this.form.querySelectorAll('[data-transport]')) {
      box.hidden = box.dataset.transport !== transport;
    }
  }

  reset() {
    this.form.reset();
    this.clearErrors();
    this.form.elements.id.readOnly = false;
    this.syncVisibility();
  }

  openCreate() {
    this.original = null;
    this.reset();
    this.title.textContent = 'New listener';
    this.submitButton.textContent = 'Create listener';
    this.dialog.showModal();
    this.form.elements.service.focus();
  }

  openEdit(listener) {
    this.original = structuredClone(listener);
    this.reset();
    const el = this.form.elements;
    this.title.textContent = `Edit listener ${listener.id}`;
    this.submitButton.textContent = 'Save changes';
    el.id.value = listener.id;
    el.id.readOnly = true;
    el.service.value = listener.service;
    el.transport.value = listener.transport;
    this.syncVisibility();
    el.transport.value = listener.transport;
    for (const name of ['address', 'port', 'model', 'workers', 'max_connections', 'idle_timeout_ms',
      'max_connections_per_source', 'connection_rate_per_source', 'reply_rate_per_source',
      'reply_rate']) {
      el[name].value = listener[name] ?? '';
    }
    el.enabled.checked = !!listener.enabled;
    const opts = listener.options || {};
    for (const input of this.optionInputs()) {
      const v = opts[input.name.slice('options.'.length)];
      input.value = v === undefined || v === null ? '' : String(v);
    }
    this.dialog.showModal();
    el.address.focus();
  }

  /* The value of one input: undefined when blank; null when it cannot be read. */
  readInput(input) {
    if (input.type === 'checkbox') return input.checked;
    if (input.type === 'number' && input.validity.badInput) return null;
    const raw = input.value.trim();
    if (raw === '') return undefined;
    switch (input.dataset.kind) {
      case 'int': return Number(raw);
      case 'bool': return raw === 'true';
      default: return raw;
    }
  }

  /* { top: {field: value}, options: {key: value}, bad: [input] } from what is shown. */
  collect() {
    const top = {};
    const options = {};
    const bad = [];
    for (const name of TOP_FIELDS) {
      const input = this.form.elements[name];
      const v = this.readInput(input);
      if (v === null) bad.push(input);
      else top[name] = v;
    }
    for (const input of this.optionInputs()) {
      if (!isShown(input)) continue;
      const v = this.readInput(input);
      if (v === null) bad.push(input);
      else if (v !== undefined) options[input.name.slice('options.'.length)] = v;
    }
    return { top, options, bad };
  }

  createBody({ top, options }) {
    const body = {};
    for (const name of TOP_FIELDS) {
      if (top[name] !== undefined) body[name] = top[name];
    }
    if (Object.keys(options).length) body.options = options;
    return body;
  }

  patchBody({ top, options }) {
    const o = this.original;
    const patch = {};
    for (const name of TOP_FIELDS) {
      if (name === 'id') continue;
      const v = top[name];
      if (v === undefined) {
        if (o[name] !== undefined && o[name] !== null) patch[name] = null;
      } else if (v !== o[name]) {
        patch[name] = v;
      }
    }
    const before = o.options || {};
    const shown = new Set(this.optionInputs().filter(isShown).map((i) => i.name.slice('options.'.length)));
    const known = new Set(this.optionInputs().map((i) => i.name.slice('options.'.length)));
    const serviceChanged = top.service !== o.service;
    const opt = {};
    for (const k of Object.keys(before)) {
      const gone = serviceChanged ? !shown.has(k) : known.has(k) && !shown.has(k);
      if (gone || (shown.has(k) && options[k] === undefined)) opt[k] = null;
    }
    for (const [k, v] of Object.entries(options)) {
      if (before[k] !== v) opt[k] = v;
    }
    if (Object.keys(opt).length) patch.options = opt;
    return patch;
  }

  clearErrors() {
    this.summary.hidden = true;
    this.summary.textContent = '';
    for (const p of this.form.querySelectorAll('.field-error')) {
      p.hidden = true;
      p.textContent = '';
    }
    for (const i of this.form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }

  clearFieldError(input) {
    if (!input || !input.name) return;
    input.removeAttribute('aria-invalid');
    const p = this.form.querySelector(`#${errorId(input.name)}`);
    if (p) {
      p.hidden = true;
      p.textContent = '';
    }
  }

  /* Shows message next to the field named name (an API field path); false when none shows. */
  showFieldError(name, message) {
    let input = this.form.elements[name];
    let p = this.form.querySelector(`#${errorId(name)}`);
    if (input instanceof RadioNodeList) input = input[0];
    if (!p || (input && !isShown(input))) {
      if (!name.startsWith('options')) return null;
      // An option without its own input (or not shown here): the options group says it.
      p = this.form.querySelector(`#${errorId('options')}`);
      input = null;
      if (!p) return null;
    }
    p.textContent = message;
    p.hidden = false;
    if (input) input.setAttribute('aria-invalid', 'true');
    return input || p;
  }

  showSummary(text) {
    this.summary.textContent = text;
    this.summary.hidden = false;
  }

  async submit() {
    if (this.busy) return;
    this.clearErrors();
    const values = this.collect();
    if (values.bad.length) {
      for (const input of values.bad) this.showFieldError(input.name, 'must be a number');
      this.showSummary('Not saved: some values are not numbers.');
      values.bad[0].focus();
      return;
    }
    const editing = !!this.original;
    const body = editing ? this.patchBody(values) : this.createBody(values);
    if (editing && Object.keys(body).length === 0) {
      this.dialog.close('unchanged');
      this.onSaved(this.original, 'unchanged');
      return;
    }
    this.busy = true;
    const label = this.submitButton.textContent;
    this.submitButton.disabled = true;
    this.submitButton.textContent = editing ? 'Saving…' : 'Creating…';
    try {
      const res = editing ? await api.patch(this.original.id, body) : await api.create(body);
      this.dialog.close('saved');
      this.onSaved(res, editing ? 'changed' : 'created');
    } catch (e) {
      if (e instanceof ApiError) {
        const target = e.field ? this.showFieldError(e.field, e.detail) : null;
        const where = e.field ? ` (field ${e.field})` : '';
        this.showSummary(`Not saved: ${e.detail}${target ? '' : where}`);
        (target instanceof HTMLElement && target.matches('input, select, textarea') ? target : this.summary).focus();
      } else if (e instanceof NetworkError) {
        this.showSummary('Not saved: the daemon cannot be reached.');
        this.summary.focus();
      } else {
        throw e;
      }
    } finally {
      this.busy = false;
      this.submitButton.disabled = false;
      this.submitButton.textContent = label;
    }
  }
}
