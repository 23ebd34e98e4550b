// The actions on the selected listener: start, stop and delete (after a confirmation dialog).
// What the daemon answers updates the store at once; a refusal stays next to the listener.

import { ApiError, api } from './api.js';
import { renderDetails } from './details.js';
import { byId } from './dom.js';
import { scheduleRender } from './render.js';
import { describeFailure, notice, where } from './status.js';
import { forgetLocal, model, touched, upsertLocal } from './store.js';
import { boundText } from './table.js';

/** Starts or stops (what) listener id. */
export async function act(id, what) {
  model.busy.add(id);
  renderDetails();
  try {
    const res = what === 'start' ? await api.start(id) : await api.stop(id);
    upsertLocal(res);
    notice(`Listener ${id} ${what === 'start' ? 'started' : 'stopped'}: ${where(res)}.`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) forgetLocal(id);
    else if (e instanceof ApiError && e.status !== 401) {
      model.refusals.set(id, `${what === 'start' ? 'Start' : 'Stop'} refused: ${e.detail}`);
      touched();
    }
    notice(`Could not ${what} ${id}: ${describeFailure(e)}`, 'error');
  } finally {
    model.busy.delete(id);
    renderDetails();
  }
}

function confirmDelete(l) {
  const d = byId('confirm-dialog');
  const ok = byId('confirm-ok');
  const cancel = byId('confirm-cancel');
  byId('confirm-title').textContent = `Delete listener ${l.id}?`;
  byId('confirm-text').textContent = `The ${l.service} listener ${l.id} on ${boundText(l).text} stops, its open connections are closed, and it is removed from the daemon's saved set. This cannot be undone.`;
  ok.textContent = `Delete ${l.id}`;
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.onclick = null;
      cancel.onclick = null;
      d.onclose = null;
      if (d.open) d.close();
      resolve(answer);
    };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    d.onclose = () => done(false);
    d.showModal();
    cancel.focus();
  });
}

/** Deletes listener id once the user confirmed it. */
export async function deleteListener(id) {
  const l = model.listeners.get(id);
  if (!l || !(await confirmDelete(l))) return;
  model.busy.add(id);
  renderDetails();
  try {
    await api.remove(id);
    model.selected = model.selected === id ? null : model.selected;
    forgetLocal(id);
    history.replaceState(null, '', location.pathname + location.search);
    scheduleRender();
    notice(`Listener ${id} deleted.`);
    byId('listeners-heading').focus();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) forgetLocal(id);
    notice(`Could not delete ${id}: ${describeFailure(e)}`, 'error');
  } finally {
    model.busy.delete(id);
    renderDetails();
  }
}
