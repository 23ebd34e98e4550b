// The sockserv dashboard: wires its parts together. The store (store.js) holds what is known
// of the daemon, fed by the event stream or polling (live.js) through one place that computes
// rates (rates.js); the table (table.js), the details (details.js, files.js), the actions
// (actions.js), the form (form.js, built from services.js), the configuration's history
// (history.js), the token dialog (token.js) and the status line and banner (status.js) show it
// and act on it.

import { ApiError, EventStream, onReachability, setAuthHandler } from './api.js';
import { act, deleteListener } from './actions.js';
import { closeDetails, renderCharts, renderDetails, select } from './details.js';
import { byId, trapFocus } from './dom.js';
import { prepareDownloads } from './download.js';
import { EventsPanel } from './events.js';
import { initFiles } from './files.js';
import { FleetPage } from './fleet.js';
import { ListenerForm } from './form.js';
import { HistoryView } from './history.js';
import { LiveFeed } from './live.js';
import { onRender, scheduleRender } from './render.js';
import {
  describeFailure, notice, refreshHealth, renderFeed, setReachable, where,
} from './status.js';
import {
  applyMetrics, applyPoll, applyState, forget, model, onForgotten, replaceAll, upsertEvent, upsertLocal,
} from './store.js';
import { initTable, renderTable } from './table.js';
import { askToken, openTokenDialog, showAuthNeeded } from './token.js';

function start() {
  initTable(select);
  onRender(renderTable);
  onRender(renderDetails);
  onRender(renderFeed);
  onForgotten((id) => {
    if (model.selected !== id) return;
    closeDetails(false);
    notice(`Listener ${id} was deleted.`);
  });

  const form = new ListenerForm(byId('listener-dialog'), (res, how) => {
    if (how === 'unchanged') {
      notice(`Nothing changed in ${res.id}.`);
      return;
    }
    upsertLocal(res);
    notice(how === 'created' ? `Listener ${res.id} created: ${where(res)}.` : `Listener ${res.id} changed: ${where(res)}.`);
    select(res.id, false);
  });

  trapFocus(byId('listener-dialog'));
  trapFocus(byId('confirm-dialog'));
  trapFocus(byId('token-dialog'));
  trapFocus(byId('history-dialog'));
  trapFocus(byId('restore-dialog'));
  const historyView = new HistoryView({
    dialog: byId('history-dialog'),
    confirm: byId('restore-dialog'),
    // The answer holds every listener after the restore: the page shows them at once.
    onRestored: (res, said) => {
      if (Array.isArray(res.listeners)) replaceAll(res.listeners, Date.now());
      notice(said);
    },
  });
  byId('open-history').addEventListener('click', () => historyView.open());
  trapFocus(byId('events-dialog'));
  const events = new EventsPanel({ button: byId('events-open'), dialog: byId('events-dialog') });
  byId('new-listener').addEventListener('click', () => form.openCreate());
  byId('action-edit').addEventListener('click', () => {
    const l = model.listeners.get(model.selected);
    if (l) form.openEdit(l);
  });
  byId('action-start').addEventListener('click', () => model.selected && act(model.selected, 'start'));
  byId('action-stop').addEventListener('click', () => model.selected && act(model.selected, 'stop'));
  byId('action-delete').addEventListener('click', () => model.selected && deleteListener(model.selected));
  byId('action-close').addEventListener('click', () => closeDetails(true));
  initFiles();
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && model.selected && !document.querySelector('dialog[open]')
        && byId('details').contains(document.activeElement)) {
      closeDetails(true);
    }
  });

  onReachability(setReachable);
  const wanted = decodeURIComponent(location.hash.slice(1));
  let first = true;
  const afterData = () => {
    if (!first) return;
    first = false;
    if (wanted && model.listeners.has(wanted)) select(wanted, false);
  };

  const feed = new LiveFeed({
    snapshot: (list) => { replaceAll(list, Date.now() - 1000); afterData(); },
    upsert: upsertEvent,
    deleted: (id) => { forget(id); scheduleRender(); },
    state: applyState,
    metrics: applyMetrics,
    noted: (ev) => {
      events.noted(ev);
      if (ev.event === 'config.revision') historyView.revisionArrived();
    },
    poll: (list, t, asked) => { applyPoll(list, t, asked); afterData(); },
    mode: (m) => { model.mode = m; scheduleRender(); },
    reachable: setReachable,
    error: (e) => {
      if (e instanceof ApiError && e.status === 401) showAuthNeeded(true);
      else notice(`The daemon answered with an error: ${describeFailure(e)}`, 'error');
    },
  });

  // EventSource cannot send the token: live.js's streams are opened through EventStream, which
  // uses the browser's EventSource while no token is held and one over fetch() otherwise.
  globalThis.EventSource = EventStream;
  const tokenArrived = () => {
    prepareDownloads();
    if (!feed.es) feed.tryStream();
  };
  setAuthHandler(async (reason) => {
    const ok = await askToken(reason);
    if (ok) setTimeout(tokenArrived, 0);
    return ok;
  });
  byId('auth-enter').addEventListener('click', async () => {
    if (await openTokenDialog('missing')) tokenArrived();
  });
  feed.start();
  new FleetPage({
    tab: byId('tab-fleet'),
    listenersTab: byId('tab-listeners'),
    section: byId('fleet'),
    onShow: (on) => document.body.classList.toggle('show-fleet', on),
  }).start();
  prepareDownloads();
  refreshHealth();
  setInterval(refreshHealth, 30000);

  // Time moves on the charts and the uptime even when nothing changes.
  setInterval(() => {
    renderFeed();
    const l = model.selected && model.listeners.get(model.selected);
    if (l && !document.hidden) renderCharts(l);
  }, 1000);
  const ro = new ResizeObserver(() => {
    const l = model.selected && model.listeners.get(model.selected);
    if (l) renderCharts(l);
  });
  ro.observe(byId('chart-throughput'));
  ro.observe(byId('chart-connections'));
  ro.observe(byId('chart-latency'));
}

start();
