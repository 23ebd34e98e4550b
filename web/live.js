// Keeps the dashboard's picture of the daemon current: the event stream (GET /api/v1/events)
// when the daemon serves it, else polling GET /api/v1/listeners every 2 s, trying the stream
// again now and then so that the dashboard moves to it once it answers.

import { API, api, NetworkError } from './api.js';

export const POLL_INTERVAL_MS = 2000;
const STREAM_RETRY_MS = 10000;

/** The events of the stream that say what happened (all but the snapshot and metrics ticks). */
export const NOTED_EVENTS = [
  'listener.created', 'listener.changed', 'listener.deleted', 'listener.state',
  'config.revision', 'backup.stored', 'backup.failed', 'backup.pruned',
];

/*
 * handlers: snapshot(listeners), upsert(listener, 'created' | 'changed'), deleted(id),
 * state(event), metrics(event), noted({ id, event, time, data }) for each of NOTED_EVENTS
 * (id: the stream's, a number; time: the data's own, else when it arrived),
 * poll(listeners, answeredMs, askedMs), mode('connecting' | 'stream' | 'polling'),
 * reachable(bool), error(err) for an answer that is an error.
 */
export class LiveFeed {
  constructor(handlers) {
    this.h = handlers;
    this.es = null;
    this.streamOpen = false;
    this.lastStreamTry = 0;
    this.pollGen = 0;
    this.polling = false;
    this.pollTimer = null;
    this.pollFailed = false;
    this.mode = 'connecting';
  }

  start() {
    this.tryStream();
    this.startPolling();
  }

  setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.h.mode(mode);
  }

  tryStream() {
    if (this.es || typeof EventSource !== 'function') return;
    this.lastStreamTry = Date.now();
    const es = new EventSource(`${API}/events`);
    let opened = false;
    this.es = es;

    const on = (name, fn) => es.addEventListener(name, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      if (this.es === es) fn(data, e.lastEventId);
    });
    on('snapshot', (d) => this.h.snapshot(Array.isArray(d.listeners) ? d.listeners : []));
    on('listener.created', (d) => this.h.upsert(d, 'created'));
    on('listener.changed', (d) => this.h.upsert(d, 'changed'));
    on('listener.deleted', (d) => this.h.deleted(d.id));
    on('listener.state', (d) => this.h.state(d));
    on('metrics', (d) => this.h.metrics(d));
    for (const name of NOTED_EVENTS) {
      on(name, (d, id) => this.h.noted?.({
        id: Number(id) || 0,
        event: name,
        time: (typeof d?.time === 'string' && d.time) || (name === 'listener.state' && d?.since) || new Date().toISOString(),
        data: d,
      }));
    }

    es.onopen = () => {
      if (this.es !== es) return;
      opened = true;
      this.streamOpen = true;
      this.stopPolling();
      this.setMode('stream');
      this.h.reachable(true);
    };
    es.onerror = () => {
      if (this.es !== es) return;
      this.streamOpen = false;
      if (!opened || es.readyState === EventSource.CLOSED) {
        // Refused (404 before the daemon has a stream, another status or type), or a
        // reconnection that failed: poll, which also tells whether the daemon is there.
        es.close();
        this.es = null;
        this.startPolling();
        return;
      }
      // The stream was cut. EventSource reconnects by itself, with Last-Event-ID; meanwhile
      // ask the daemon whether it is there at all, so the banner says so at once.
      opened = false;
      api.health().catch(() => {});
    };
  }

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    const gen = ++this.pollGen;
    this.pollOnce(gen);
  }

  stopPolling() {
    this.polling = false;
    this.pollGen++;
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  async pollOnce(gen) {
    let ok = false;
    const started = Date.now();
    try {
      const body = await api.list();
      if (gen !== this.pollGen) return;
      ok = true;
      if (!this.streamOpen) this.setMode('polling');
      this.h.poll(Array.isArray(body?.listeners) ? body.listeners : [], Date.now(), started);
    } catch (e) {
      if (gen !== this.pollGen) return;
      if (!(e instanceof NetworkError)) this.h.error(e);
    }
    if (ok && !this.es && (this.pollFailed || Date.now() - this.lastStreamTry >= STREAM_RETRY_MS)) {
      this.tryStream();
    }
    this.pollFailed = !ok;
    if (gen === this.pollGen) this.pollTimer = setTimeout(() => this.pollOnce(gen), POLL_INTERVAL_MS);
  }
}
