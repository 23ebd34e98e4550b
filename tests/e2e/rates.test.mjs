// The dashboard's rates (web/rates.js) come from one place whichever way the counters arrive:
// polling gives counters only (rates are their differences over the time between samples), the
// event stream's ticks give the daemon's rates with them; both add a point to the history.

import assert from 'node:assert/strict';
import test from 'node:test';
import { forgetRates, historyOf, observe, rateOf } from '../../web/rates.js';

test('polled counters give rates over the time between two samples', () => {
  observe('p', 1000, { bytes_in: 100, bytes_out: 50, connections_total: 1, connections_active: 1 });
  assert.equal(rateOf('p'), null, 'one sample gives no rate');
  observe('p', 3000, { bytes_in: 2100, bytes_out: 1050, connections_total: 5, connections_active: 2 });
  assert.deepEqual(rateOf('p'), { bytes_in: 1000, bytes_out: 500, connections: 2 });
  observe('p', 4000, { bytes_in: 10, bytes_out: 10, connections_total: 0, connections_active: 0 });
  assert.equal(rateOf('p'), null, 'counters that went back (a restart) give no rate');
  assert.deepEqual(historyOf('p').map((h) => [h.t, h.in, h.out, h.active]),
    [[1000, null, null, 1], [3000, 1000, 500, 2], [4000, null, null, 0]]);
  forgetRates('p');
  assert.equal(rateOf('p'), null);
  assert.deepEqual(historyOf('p'), []);
});

test('the event stream\'s rates are taken as the daemon gives them, in the same history', () => {
  observe('s', 1000, { bytes_in: 100, bytes_out: 100, connections_active: 3 }, { bytes_in: 7, bytes_out: 9, connections: 1 });
  assert.deepEqual(rateOf('s'), { bytes_in: 7, bytes_out: 9, connections: 1 });
  observe('s', 2000, { bytes_in: 200, bytes_out: 200, connections_active: 0 }, null);
  assert.equal(rateOf('s'), null);
  // The stream stops, polling takes over: its first rate is against the stream's last sample.
  observe('s', 4000, { bytes_in: 400, bytes_out: 300, connections_total: 0 });
  assert.deepEqual(rateOf('s'), { bytes_in: 100, bytes_out: 50, connections: 0 });
  assert.deepEqual(historyOf('s').map((h) => h.in), [7, null, 100]);
});

test('the history keeps the last five minutes', () => {
  for (let t = 0; t <= 10 * 60 * 1000; t += 60 * 1000) observe('h', t, { bytes_in: t, bytes_out: t });
  const kept = historyOf('h').map((h) => h.t);
  assert.equal(kept[kept.length - 1], 10 * 60 * 1000);
  assert.ok(kept[0] >= 5 * 60 * 1000 - 10000, `oldest kept: ${kept[0]}`);
  forgetRates('h');
});
