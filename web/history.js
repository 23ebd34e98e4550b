// The configuration's history, in a dialog opened from the header: the last revisions of the
// listener set (GET /api/v1/config/revisions), newest first, each with its time, source and
// summary and, expanded, its diff per listener. Every revision but the newest can be restored:
// the daemon is asked first what that would change (a dry run), which a confirmation shows;
// both requests carry If-Match with the configuration's ETag as it was when the history was
// loaded, so a change made meanwhile is refused (412) and said so, never overwritten.
//
// The wording of a diff (diffClause, previewText) is shared with the form's preview.

import { ApiError, NetworkError, api, revisionOf } from './api.js';
import { formatTimestamp } from './format.js';

export const HISTORY_LIMIT = 100;

const el = (tag, className, text) => {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
};

function fieldsOf(entry) {
  return Array.isArray(entry.fields) ? entry.fields.filter((f) => typeof f === 'string') : [];
}

/** One entry of a diff as a clause: "create e2", "change e1 (port, options.KEY) — live", "delete u1". */
export function diffClause(entry) {
  if (entry.action === 'create') return `create ${entry.id}`;
  if (entry.action === 'delete') return `delete ${entry.id}`;
  const fields = fieldsOf(entry);
  const what = fields.length ? ` (${fields.join(', ')})` : '';
  return `change ${entry.id}${what} — ${entry.live ? 'live' : 'not live: it restarts, its connections end'}`;
}

/**
 * What a change of one listener would do, for the form's preview: "creates listener e3",
 * "changes port, options.KEY — live, connections kept", "changes model — not live: the
 * listener restarts, its connections end" (running says whether the listener runs now).
 */
export function previewText(entry, running) {
  if (entry.action === 'create') return `creates listener ${entry.id}`;
  if (entry.action === 'delete') return `deletes listener ${entry.id}`;
  const fields = fieldsOf(entry);
  const what = `changes ${fields.length ? fields.join(', ') : 'its configuration'}`;
  if (entry.live) return `${what} — live, connections kept`;
  if (!running) return `${what} — the listener is not running: this applies when it starts`;
  return `${what} — not live: the listener restarts, its connections end`;
}

/* One entry of a revision's diff, as an item of its list (field names in code). */
function diffItem(entry) {
  const li = el('li', `rev-item rev-${entry.action}`);
  li.dataset.listener = entry.id;
  li.append(el('strong', '', entry.id), ': ');
  if (entry.action === 'create') li.append('created');
  else if (entry.action === 'delete') li.append('deleted');
  else {
    const fields = fieldsOf(entry);
    li.append('changed ');
    fields.forEach((f, i) => {
      if (i) li.append(', ');
      li.append(el('code', '', f));
    });
    li.append(entry.live ? ' — live (connections kept)' : ' — not live (restarted: connections end)');
  }
  return li;
}

function hiddenText(text) {
  return el('span', 'visually-hidden', text);
}

/** What a failed restore (or its dry run) means, in words; stale: the 412's current revision. */
function restoreFailure(e) {
  if (e instanceof ApiError && e.status === 412) {
    const now = revisionOf(e.etag);
    return {
      stale: true,
      text: `The configuration changed since you opened the history${now !== null ? ` (now revision ${now})` : ''}. `
        + 'Nothing was restored. Reload the history to see the change.',
    };
  }
  if (e instanceof ApiError) {
    const who = e.listener ? `listener ${e.listener}: ` : '';
    return { stale: false, text: `Nothing was restored: ${who}${e.detail}` };
  }
  if (e instanceof NetworkError) return { stale: false, text: 'Nothing was restored: the daemon cannot be reached.' };
  return { stale: false, text: `Nothing was restored: ${String(e?.message || e)}` };
}

export class HistoryView {
  /**
   * dialog: the <dialog> of the timeline; confirm: the <dialog> of a restore's confirmation;
   * onRestored(change) after a restore was applied (the API's answer: revision, diff,
   * listeners).
   */
  constructor({ dialog, confirm, onRestored }) {
    this.dialog = dialog;
    this.confirm = confirm;
    this.onRestored = onRestored;
    this.list = dialog.querySelector('#history-list');
    this.empty = dialog.querySelector('#history-empty');
    this.status = dialog.querySelector('#history-status');
    this.reloadButton = dialog.querySelector('#history-reload');
    this.revisions = [];
    this.etag = null;
    this.expanded = new Set();
    this.gen = 0;
    this.restoreGen = 0;
    this.reloadTimer = null;
    this.returnTo = null;

    this.reloadButton.addEventListener('click', () => this.load());
    dialog.querySelector('#history-close').addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      clearTimeout(this.reloadTimer);
      const back = this.returnTo;
      this.returnTo = null;
      if (back && document.contains(back)) back.focus();
    });
    this.list.addEventListener('click', (e) => {
      const button = e.target.closest('button[data-key]');
      if (!button) return;
      const n = Number(button.dataset.revision);
      if (button.dataset.role === 'toggle') this.toggle(n, button);
      else if (button.dataset.role === 'restore') this.restore(n);
    });
  }

  /** Opens the dialog and loads the history. */
  open() {
    this.returnTo = document.activeElement;
    this.setStatus('');
    if (!this.dialog.open) this.dialog.showModal();
    this.dialog.querySelector('#history-title').focus();
    return this.load();
  }

  /** A config.revision event: the timeline, if shown, is loaded again. */
  revisionArrived() {
    if (!this.dialog.open) return;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load(), 150);
  }

  setStatus(text, kind = 'info') {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
    this.status.hidden = !text;
  }

  /*
   * The configuration's ETag, then the revisions. A change between the two makes the newest
   * revision listed newer than the ETag: both are asked again, so that a restore is never sent
   * with an ETag older than what the timeline shows.
   */
  async load() {
    const gen = ++this.gen;
    this.dialog.setAttribute('aria-busy', 'true');
    this.reloadButton.disabled = true;
    try {
      let etag = null;
      let revisions = [];
      for (let tries = 0; tries < 3; tries++) {
        ({ etag } = await api.config());
        const body = await api.revisions(HISTORY_LIMIT);
        revisions = Array.isArray(body?.revisions) ? body.revisions.filter((r) => r && Number.isInteger(r.revision)) : [];
        if (!revisions.length || revisions[0].revision === revisionOf(etag)) break;
      }
      if (gen !== this.gen) return;
      this.etag = etag;
      this.revisions = revisions;
      this.render();
    } catch (e) {
      if (gen !== this.gen) return;
      const why = e instanceof NetworkError ? 'the daemon cannot be reached' : String(e?.detail || e?.message || e);
      this.setStatus(`The history could not be loaded: ${why}.`, 'error');
    } finally {
      if (gen === this.gen) {
        this.dialog.removeAttribute('aria-busy');
        this.reloadButton.disabled = false;
      }
    }
  }

  /* The timeline, keeping what was expanded and the focus on the same control. */
  render() {
    const active = document.activeElement;
    const key = this.list.contains(active) ? active.dataset.key : null;
    const items = this.revisions.map((r, i) => this.item(r, i === 0));
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
    if (key) {
      const again = this.list.querySelector(`[data-key="${key}"]`);
      (again || this.dialog.querySelector('#history-title')).focus();
    }
  }

  item(r, newest) {
    const n = r.revision;
    const li = el('li', 'rev');
    li.dataset.revision = String(n);

    const head = el('div', 'rev-head');
    const num = el('span', 'rev-num', `Revision ${n}`);
    head.append(num);
    if (newest) head.append(el('span', 'rev-current', 'current'));
    const time = el('time', 'rev-time', formatTimestamp(r.time));
    if (typeof r.time === 'string') {
      time.dateTime = r.time;
      time.title = r.time;
    }
    head.append(time, el('span', 'rev-source', typeof r.source === 'string' ? r.source : ''));
    li.append(head, el('p', 'rev-summary', typeof r.summary === 'string' && r.summary ? r.summary : 'no change'));

    const diff = Array.isArray(r.diff) ? r.diff.filter((d) => d && typeof d.id === 'string') : [];
    const diffId = `rev-${n}-diff`;
    const actions = el('div', 'rev-actions');
    const toggle = el('button', 'quiet rev-toggle');
    toggle.type = 'button';
    toggle.dataset.key = `toggle-${n}`;
    toggle.dataset.role = 'toggle';
    toggle.dataset.revision = String(n);
    toggle.setAttribute('aria-controls', diffId);
    const open = this.expanded.has(n);
    toggle.setAttribute('aria-expanded', String(open));
    toggle.append('What changed', hiddenText(` in revision ${n}`));
    actions.append(toggle);
    if (!newest) {
      const restore = el('button', 'rev-restore');
      restore.type = 'button';
      restore.dataset.key = `restore-${n}`;
      restore.dataset.role = 'restore';
      restore.dataset.revision = String(n);
      restore.setAttribute('aria-haspopup', 'dialog');
      const dots = el('span', '', '…');
      dots.setAttribute('aria-hidden', 'true');
      restore.append('Restore', hiddenText(` revision ${n}…`), dots);
      actions.append(restore);
    }
    li.append(actions);

    const list = el('ul', 'rev-diff');
    list.id = diffId;
    list.hidden = !open;
    if (diff.length) list.append(...diff.map(diffItem));
    else list.append(el('li', 'rev-item', 'No listener changed.'));
    li.append(list);
    return li;
  }

  toggle(n, button) {
    const open = button.getAttribute('aria-expanded') !== 'true';
    if (open) this.expanded.add(n);
    else this.expanded.delete(n);
    button.setAttribute('aria-expanded', String(open));
    const list = this.list.querySelector(`#rev-${n}-diff`);
    if (list) list.hidden = !open;
  }

  /*
   * Restores revision n after the confirmation: the dry run's diff is shown first; the same
   * ETag goes with the dry run and the restore.
   */
  async restore(n) {
    const d = this.confirm;
    const title = d.querySelector('#restore-title');
    const text = d.querySelector('#restore-text');
    const diffList = d.querySelector('#restore-diff');
    const error = d.querySelector('#restore-error');
    const ok = d.querySelector('#restore-ok');
    const cancel = d.querySelector('#restore-cancel');
    const etag = this.etag;
    const mine = ++this.restoreGen;
    const current = () => d.open && this.restoreGen === mine;
    let stale = false;
    let sending = false;

    const showError = (e) => {
      const f = restoreFailure(e);
      stale = f.stale;
      error.textContent = f.text;
      error.hidden = false;
      if (stale) {
        ok.textContent = 'Reload the history';
        ok.hidden = false;
        ok.disabled = false;
      } else {
        ok.hidden = true;
      }
      cancel.textContent = 'Close';
      (stale ? ok : cancel).focus();
    };

    title.textContent = `Restore revision ${n}?`;
    text.textContent = 'Asking the daemon what this would change…';
    diffList.replaceChildren();
    diffList.hidden = true;
    error.hidden = true;
    error.textContent = '';
    ok.textContent = `Restore revision ${n}`;
    ok.hidden = false;
    ok.disabled = true;
    cancel.textContent = 'Cancel';

    const done = new Promise((resolve) => {
      const finish = (how) => {
        ok.onclick = null;
        cancel.onclick = null;
        d.onclose = null;
        d.oncancel = null;
        if (d.open) d.close();
        resolve(how);
      };
      cancel.onclick = () => finish('cancel');
      d.onclose = () => finish('cancel');
      // Escape does not close it while the restore is on its way: its answer is shown.
      d.oncancel = (e) => {
        if (sending) e.preventDefault();
      };
      ok.onclick = async () => {
        if (stale) {
          finish('reload');
          return;
        }
        ok.disabled = true;
        cancel.disabled = true;
        ok.textContent = 'Restoring…';
        sending = true;
        let answer;
        try {
          ({ data: answer } = await api.restore(n, etag, false));
        } catch (e) {
          sending = false;
          cancel.disabled = false;
          showError(e);
          return;
        }
        sending = false;
        cancel.disabled = false;
        finish({ applied: answer });
      };
    });
    d.showModal();
    cancel.focus();

    try {
      const { data } = await api.restore(n, etag, true);
      if (current()) {
        const diff = Array.isArray(data?.diff) ? data.diff.filter((x) => x && typeof x.id === 'string') : [];
        if (diff.length) {
          text.textContent = 'This will:';
          diffList.replaceChildren(...diff.map((x) => {
            const li = el('li', `restore-${x.action}`, diffClause(x));
            li.dataset.listener = x.id;
            return li;
          }));
          diffList.hidden = false;
          ok.disabled = false;
        } else {
          text.textContent = `Nothing would change: the listeners are already as they were after revision ${n}.`;
          ok.hidden = true;
          cancel.textContent = 'Close';
        }
      }
    } catch (e) {
      if (current()) {
        text.textContent = '';
        showError(e);
      }
    }

    const how = await done;
    const back = this.list.querySelector(`[data-key="restore-${n}"]`);
    if (how === 'reload') {
      await this.load();
      this.dialog.querySelector('#history-title').focus();
      return;
    }
    if (how && how.applied) {
      const res = how.applied;
      const made = Number.isInteger(res.revision) && res.revision !== revisionOf(etag);
      const said = made
        ? `Restored revision ${n} as revision ${res.revision}.`
        : `Nothing changed: the listeners were already as after revision ${n}.`;
      this.setStatus(said);
      if (this.onRestored) this.onRestored(res, said);
      await this.load();
      this.dialog.querySelector('#history-title').focus();
      return;
    }
    if (back) back.focus();
  }
}
