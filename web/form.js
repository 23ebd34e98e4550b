// The listener form, in a modal <dialog>: creates a listener (POST) or edits one (PATCH with
// a merge patch of the fields that changed). The listener's own fields are in the page; the
// service select, the transports and models a service allows, and one input per service option
// come from GET /api/v1/services (services.js). The daemon is the judge of every value: its
// problem+json answer is shown next to the field it names. Preview sends the same request as a
// dry run (?dry_run=true) and says what it would change, or why the daemon would refuse it
// (a port that cannot be bound, next to the port), before anything is changed.

import { api, ApiError, NetworkError } from './api.js';
import { previewText } from './history.js';
import { loadServices } from './services.js';

const TOP_FIELDS = ['id', 'service', 'transport', 'address', 'port', 'model', 'workers',
  'max_connections', 'idle_timeout_ms', 'max_connections_per_source',
  'connection_rate_per_source', 'reply_rate_per_source', 'reply_rate', 'enabled'];

const OPTION_PREFIX = 'options.';

function errorId(name) {
  return `f-${name.replace(/[^A-Za-z0-9_-]/g, '-')}-error`;
}

function isShown(el) {
  return !el.closest('[hidden]');
}

/* "idle_limit_ms" -> "Idle limit ms". */
function labelOf(name) {
  const words = name.replace(/[_-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/* An option's default as text ("" when it has none, or it is computed). */
function defaultText(opt) {
  if (opt.default === null || opt.default === undefined) return '';
  return String(opt.default);
}

/*
 * The field of one service option: the input its type asks for (integer: a number with its
 * range; string with choices: a select; boolean: a checkbox; path or string: text), its label
 * with the unit, its help as a hint and a place for its error.
 */
function optionField(opt) {
  const name = `${OPTION_PREFIX}${opt.name}`;
  const id = `f-options-${opt.name.replace(/[^A-Za-z0-9_-]/g, '-')}`;
  const field = document.createElement('div');
  field.className = 'field';
  field.dataset.option = opt.name;
  // No list: every transport of the service.
  field.dataset.transports = Array.isArray(opt.transports) ? opt.transports.join(' ') : '*';
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = labelOf(opt.name);
  if (opt.unit) {
    const unit = document.createElement('span');
    unit.className = 'opt';
    unit.textContent = ` (${opt.unit})`;
    label.append(unit);
  }
  const dflt = defaultText(opt);
  let input;
  if (opt.type === 'boolean') {
    input = document.createElement('input');
    input.type = 'checkbox';
    input.dataset.kind = 'bool-check';
    input.dataset.default = String(opt.default === true);
    field.classList.add('check');
  } else if (opt.type === 'string' && Array.isArray(opt.choices) && opt.choices.length) {
    input = document.createElement('select');
    const blank = document.createElement('option');
    blank.value = '';
    blank.textContent = dflt ? `default (${dflt})` : 'default';
    input.append(blank, ...opt.choices.map((c) => {
      const o = document.createElement('option');
      o.value = String(c);
      o.textContent = String(c);
      return o;
    }));
  } else {
    input = document.createElement('input');
    input.autocomplete = 'off';
    input.spellcheck = false;
    if (opt.type === 'integer') {
      input.type = 'number';
      input.inputMode = 'numeric';
      input.dataset.kind = 'int';
      if (Number.isFinite(opt.minimum)) input.min = String(opt.minimum);
      if (Number.isFinite(opt.maximum)) input.max = String(opt.maximum);
    } else if (opt.type === 'object') {
      // A JSON object (tls: {"cert_file", "key_file"[, "client_ca_file"]}), typed as JSON.
      input.type = 'text';
      input.dataset.kind = 'json';
      field.classList.add('wide');
    } else {
      input.type = 'text';
      if (opt.type === 'path') field.classList.add('wide');
    }
    input.placeholder = opt.type === 'object' && !dflt ? '{"cert_file": "/…", "key_file": "/…"}' : dflt;
  }
  input.id = id;
  input.name = name;
  const described = [];
  const parts = [];
  if (opt.help) {
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.id = `${id}-hint`;
    hint.textContent = opt.help;
    parts.push(hint);
    described.push(hint.id);
  }
  const error = document.createElement('p');
  error.className = 'field-error';
  error.id = errorId(name);
  error.hidden = true;
  parts.push(error);
  described.push(error.id);
  input.setAttribute('aria-describedby', described.join(' '));
  // A checkbox stands before its label, as the listener's own (Enabled) does.
  if (input.type === 'checkbox') field.append(input, label, ...parts);
  else field.append(label, input, ...parts);
  return field;
}

export class ListenerForm {
  /** dialog: the <dialog> holding form#listener-form; onSaved(resource, how) after a save. */
  constructor(dialog, onSaved) {
    this.dialog = dialog;
    this.form = dialog.querySelector('form');
    this.onSaved = onSaved;
    this.title = dialog.querySelector('#form-title');
    this.summary = dialog.querySelector('#form-error');
    this.missing = dialog.querySelector('#form-services-missing');
    this.submitButton = dialog.querySelector('#form-submit');
    this.previewButton = dialog.querySelector('#form-preview');
    this.previewBox = dialog.querySelector('#form-preview-result');
    this.previewGen = 0;
    this.optionsBox = dialog.querySelector('#f-options');
    this.noOptions = dialog.querySelector('#f-options-none');
    this.serviceHint = dialog.querySelector('#f-service-hint');
    this.catalogue = { services: [], byName: new Map() };
    this.builtFor = null;
    this.original = null;
    this.busy = false;

    const el = this.form.elements;
    el.service.addEventListener('change', () => this.syncService());
    el.transport.addEventListener('change', () => this.syncVisibility());
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    dialog.querySelector('#form-cancel').addEventListener('click', () => dialog.close('cancel'));
    this.form.addEventListener('input', (e) => {
      this.clearFieldError(e.target);
      this.clearPreview();
    });
    this.form.addEventListener('change', () => this.clearPreview());
    this.previewButton.addEventListener('click', () => this.preview());
  }

  /* The inputs holding service options: name "options.KEY". */
  optionInputs() {
    return [...this.form.querySelectorAll(`[name^="${OPTION_PREFIX}"]`)];
  }

  /* The services of the catalogue in the select; keep: a service to list even if unknown. */
  fillServices(keep) {
    const select = this.form.elements.service;
    const names = this.catalogue.services.map((s) => s.name);
    if (keep && !names.includes(keep)) names.push(keep);
    if ([...select.options].map((o) => o.value).join('\n') === names.join('\n')) return;
    select.replaceChildren(...names.map((n) => {
      const o = document.createElement('option');
      o.value = n;
      o.textContent = n;
      return o;
    }));
  }

  /* The option inputs of the selected service (built again when the service changes). */
  syncService() {
    const name = this.form.elements.service.value;
    const svc = this.catalogue.byName.get(name);
    if (this.builtFor !== name) {
      this.builtFor = name;
      const opts = Array.isArray(svc?.options) ? svc.options.filter((o) => o && typeof o.name === 'string') : [];
      this.optionsBox.replaceChildren(...opts.map(optionField));
      this.noOptions.hidden = !svc || opts.length > 0;
      this.serviceHint.textContent = svc?.help || '';
      this.serviceHint.hidden = !svc?.help;
    }
    this.syncVisibility();
  }

  /* Transports and models the service allows; options shown for the selected transport only. */
  syncVisibility() {
    const el = this.form.elements;
    const svc = this.catalogue.byName.get(el.service.value);
    if (svc && Array.isArray(svc.transports)) {
      for (const o of el.transport.options) o.disabled = !svc.transports.includes(o.value);
      if (el.transport.selectedOptions[0]?.disabled) {
        const first = [...el.transport.options].find((o) => !o.disabled);
        if (first) el.transport.value = first.value;
      }
    } else {
      for (const o of el.transport.options) o.disabled = false;
    }
    const transport = el.transport.value;
    // The service's models are those it may run under over TCP.
    const models = svc && Array.isArray(svc.models) && transport === 'tcp' ? svc.models : null;
    for (const o of el.model.options) o.disabled = !!models && o.value !== '' && !models.includes(o.value);
    if (el.model.selectedOptions[0]?.disabled) el.model.value = '';
    for (const box of this.form.querySelectorAll('[data-transport]')) {
      box.hidden = box.dataset.transport !== transport;
    }
    for (const box of this.optionsBox.querySelectorAll('[data-transports]')) {
      box.hidden = box.dataset.transports !== '*' && !box.dataset.transports.split(' ').includes(transport);
    }
  }

  /* Loads the catalogue; says so in the form when the daemon does not describe its services. */
  async prepare(keepService) {
    this.catalogue = await loadServices();
    this.missing.textContent = this.catalogue.missing || '';
    this.missing.hidden = !this.catalogue.missing;
    this.fillServices(keepService);
    this.fillModels();
    this.builtFor = null;
  }

  /* A model some service may run under that the page does not list yet becomes a choice. */
  fillModels() {
    const select = this.form.elements.model;
    const have = new Set([...select.options].map((o) => o.value));
    for (const svc of this.catalogue.services) {
      for (const m of Array.isArray(svc.models) ? svc.models : []) {
        if (typeof m !== 'string' || have.has(m)) continue;
        have.add(m);
        const o = document.createElement('option');
        o.value = m;
        o.textContent = m;
        select.append(o);
      }
    }
  }

  reset() {
    this.form.reset();
    this.clearErrors();
    this.clearPreview();
    this.form.elements.id.readOnly = false;
    this.syncService();
  }

  async openCreate() {
    this.original = null;
    await this.prepare(null);
    this.reset();
    this.title.textContent = 'New listener';
    this.submitButton.textContent = 'Create listener';
    this.submitButton.disabled = this.catalogue.services.length === 0;
    this.previewButton.disabled = this.submitButton.disabled;
    this.dialog.showModal();
    this.form.elements.service.focus();
  }

  async openEdit(listener) {
    this.original = structuredClone(listener);
    await this.prepare(listener.service);
    this.reset();
    const el = this.form.elements;
    this.title.textContent = `Edit listener ${listener.id}`;
    this.submitButton.textContent = 'Save changes';
    this.submitButton.disabled = false;
    this.previewButton.disabled = false;
    el.id.value = listener.id;
    el.id.readOnly = true;
    el.service.value = listener.service;
    el.transport.value = listener.transport;
    this.syncService();
    el.transport.value = listener.transport;
    this.syncVisibility();
    for (const name of ['address', 'port', 'model', 'workers', 'max_connections', 'idle_timeout_ms',
      'max_connections_per_source', 'connection_rate_per_source', 'reply_rate_per_source',
      'reply_rate']) {
      el[name].value = listener[name] ?? '';
    }
    el.enabled.checked = !!listener.enabled;
    const opts = listener.options || {};
    for (const input of this.optionInputs()) {
      const v = opts[input.name.slice(OPTION_PREFIX.length)];
      if (input.type === 'checkbox') input.checked = v === undefined || v === null ? input.dataset.default === 'true' : v === true;
      else if (v === undefined || v === null) input.value = '';
      else input.value = input.dataset.kind === 'json' ? JSON.stringify(v) : String(v);
    }
    this.dialog.showModal();
    el.address.focus();
  }

  /* The value of one input: undefined when blank (or an option at its default); null when it cannot be read. */
  readInput(input) {
    if (input.dataset.kind === 'bool-check') {
      return input.checked === (input.dataset.default === 'true') ? undefined : input.checked;
    }
    if (input.type === 'checkbox') return input.checked;
    if (input.type === 'number' && input.validity.badInput) return null;
    const raw = input.value.trim();
    if (raw === '') return undefined;
    switch (input.dataset.kind) {
      case 'int': return Number(raw);
      case 'json':
        try {
          const v = JSON.parse(raw);
          return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null;
        } catch {
          return null;
        }
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
      else if (v !== undefined) options[input.name.slice(OPTION_PREFIX.length)] = v;
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
    const keyOf = (i) => i.name.slice(OPTION_PREFIX.length);
    const shown = new Set(this.optionInputs().filter(isShown).map(keyOf));
    const known = new Set(this.optionInputs().map(keyOf));
    const serviceChanged = top.service !== o.service;
    const opt = {};
    for (const k of Object.keys(before)) {
      const gone = serviceChanged ? !shown.has(k) : known.has(k) && !shown.has(k);
      if (gone || (shown.has(k) && options[k] === undefined)) opt[k] = null;
    }
    for (const [k, v] of Object.entries(options)) {
      const b = before[k];
      if (v === null || typeof v !== 'object') {
        if (b !== v) opt[k] = v;
        continue;
      }
      // An object option (tls) merges member by member (RFC 7396): a member taken out is null.
      if (JSON.stringify(b) === JSON.stringify(v)) continue;
      const p = { ...v };
      if (b && typeof b === 'object') for (const m of Object.keys(b)) if (!(m in v)) p[m] = null;
      opt[k] = p;
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

  /* The values shown, or null after marking those that cannot be read (what: "Not saved"). */
  readValues(what) {
    const values = this.collect();
    if (!values.bad.length) return values;
    for (const input of values.bad) {
      this.showFieldError(input.name, input.dataset.kind === 'json' ? 'must be a JSON object' : 'must be a number');
    }
    this.showSummary(`${what}: some values cannot be read (see the fields marked).`);
    values.bad[0].focus();
    return null;
  }

  /* Shows the daemon's refusal e: next to its field when it names one, and in the summary. */
  showRefusal(e, what) {
    if (e instanceof ApiError) {
      const target = e.field ? this.showFieldError(e.field, e.detail) : null;
      const where = e.field ? ` (field ${e.field})` : '';
      this.showSummary(`${what}: ${e.detail}${target ? '' : where}`);
      (target instanceof HTMLElement && target.matches('input, select, textarea') ? target : this.summary).focus();
    } else if (e instanceof NetworkError) {
      this.showSummary(`${what}: the daemon cannot be reached.`);
      this.summary.focus();
    } else {
      throw e;
    }
  }

  clearPreview() {
    this.previewGen++;
    if (this.previewBox.childNodes.length) this.previewBox.replaceChildren();
    delete this.previewBox.dataset.state;
  }

  /* The preview: what the change would do (lines of words), and that nothing changed yet. */
  showPreview(lines, state) {
    const head = document.createElement('p');
    head.className = 'form-preview-head';
    const parts = [head];
    if (state === 'same') {
      head.textContent = 'Preview: nothing would change.';
    } else if (lines.length === 1) {
      head.textContent = `Preview: ${lines[0]}.`;
    } else {
      head.textContent = 'Preview:';
      const list = document.createElement('ul');
      list.className = 'form-preview-list';
      list.append(...lines.map((t) => {
        const li = document.createElement('li');
        li.textContent = t;
        return li;
      }));
      parts.push(list);
    }
    if (state !== 'same') {
      const next = document.createElement('p');
      next.className = 'hint';
      next.textContent = `Nothing has been changed yet: ${this.submitButton.textContent} applies it.`;
      parts.push(next);
    }
    this.previewBox.dataset.state = state;
    this.previewBox.replaceChildren(...parts);
  }

  /*
   * Sends what Save (or Create) would send, as a dry run, and shows what it would change; a
   * refusal (a value out of range, a port that cannot be bound) shows next to its field.
   */
  async preview() {
    if (this.busy) return;
    this.clearErrors();
    this.clearPreview();
    const values = this.readValues('Cannot preview');
    if (!values) return;
    const editing = !!this.original;
    const body = editing ? this.patchBody(values) : this.createBody(values);
    if (editing && Object.keys(body).length === 0) {
      this.showPreview([], 'same');
      return;
    }
    const gen = this.previewGen;
    this.busy = true;
    this.previewButton.disabled = true;
    this.submitButton.disabled = true;
    this.previewBox.dataset.state = 'asking';
    this.previewBox.textContent = 'Asking the daemon what this would change…';
    try {
      const res = editing ? await api.previewPatch(this.original.id, body) : await api.previewCreate(body);
      if (gen !== this.previewGen) return;
      const diff = Array.isArray(res?.diff) ? res.diff.filter((d) => d && typeof d.id === 'string') : [];
      const running = this.original?.status?.state === 'running';
      this.showPreview(diff.map((d) => previewText(d, running)), diff.length ? 'changes' : 'same');
    } catch (e) {
      if (gen !== this.previewGen) return;
      this.clearPreview();
      this.showRefusal(e, 'The daemon would refuse this');
    } finally {
      this.busy = false;
      this.previewButton.disabled = false;
      this.submitButton.disabled = false;
    }
  }

  async submit() {
    if (this.busy) return;
    this.clearErrors();
    this.clearPreview();
    const values = this.readValues('Not saved');
    if (!values) return;
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
      this.showRefusal(e, 'Not saved');
    } finally {
      this.busy = false;
      this.submitButton.disabled = false;
      this.submitButton.textContent = label;
    }
  }
}
