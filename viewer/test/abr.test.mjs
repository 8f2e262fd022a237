/**
 * The rendition decision (viewer/js/player/abr.js): down before the buffer runs dry, up
 * only with a margin and after holds (hysteresis), the first rung, and the "too slow"
 * verdict that sets and clears by itself.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { AFTER_DOWN_HOLD_MS, decide, initialRung, MIN_UP_SAMPLES, slowVerdict, SLOW_AFTER_MS, UP_HOLD_MS } from '../js/player/abr.js';

const LADDER = [{ bitrate: 400e3 }, { bitrate: 1.2e6 }, { bitrate: 2.5e6 }];
const base = { ladder: LADDER, samples: 5, buffer: 0.5, target: 0.5, now: 100000, lastSwitchAt: undefined, lastDownAt: undefined };

test('no estimate, or a single rendition: stay', () => {
  assert.equal(decide({ ...base, current: 1, estimate: undefined }).index, 1);
  assert.equal(decide({ ...base, ladder: [LADDER[2]], current: 0, estimate: 100e3 }).index, 0);
});

test('an estimate below the rung steps down to the highest rung that fits, at once', () => {
  // 2 Mbit/s under the 2.5 rung: 0.8 x 2 = 1.6 -> the 1.2 rung.
  assert.deepEqual(decide({ ...base, current: 2, estimate: 2e6, lastSwitchAt: base.now - 100 }), { index: 1, reason: 'estimate below rung' });
  // 600 kbit/s: past the 1.2 rung straight to the 400 one.
  assert.equal(decide({ ...base, current: 2, estimate: 600e3 }).index, 0);
  // Nothing fits: the lowest.
  assert.equal(decide({ ...base, current: 1, estimate: 100e3 }).index, 0);
  // A little noise under the rung is not a reason.
  assert.equal(decide({ ...base, current: 2, estimate: 2.45e6 }).index, 2);
});

test('a nearly empty buffer steps down unless the estimate clearly carries the rung', () => {
  const low = { ...base, buffer: 0.1, current: 2 };
  assert.deepEqual(decide({ ...low, estimate: 2.7e6 }), { index: 1, reason: 'buffer low' });
  assert.equal(decide({ ...low, estimate: 4e6 }).index, 2, 'a wide link: the buffer is low for another reason');
  assert.equal(decide({ ...low, current: 0, estimate: 300e3 }).index, 0, 'nothing below the lowest');
  // The median still says 4 Mbit/s but the newest sample 1 Mbit/s: it counts, and picks the rung.
  assert.deepEqual(decide({ ...low, estimate: 4e6, recent: 1e6 }), { index: 0, reason: 'buffer low' });
  assert.equal(decide({ ...base, current: 2, estimate: 4e6, recent: 1e6 }).index, 2, 'with a full buffer one sample is not enough');
});

test('up: one step, only with a margin over the next rung, a full buffer and after the holds', () => {
  assert.equal(decide({ ...base, current: 0, estimate: 1.5e6 }).index, 0, '1.5 is not 1.4 x 1.2');
  assert.deepEqual(decide({ ...base, current: 0, estimate: 1.7e6 }), { index: 1, reason: 'estimate above next rung' });
  assert.equal(decide({ ...base, current: 0, estimate: 50e6 }).index, 1, 'one step at a time');
  assert.equal(decide({ ...base, current: 0, estimate: 1.7e6, buffer: 0.2 }).index, 0, 'buffer under its target');
  assert.equal(decide({ ...base, current: 0, estimate: 1.7e6, lastSwitchAt: base.now - UP_HOLD_MS + 1 }).index, 0, 'just switched');
  assert.equal(decide({ ...base, current: 0, estimate: 1.7e6, lastDownAt: base.now - AFTER_DOWN_HOLD_MS + 1 }).index, 0, 'just stepped down');
  assert.equal(decide({ ...base, current: 0, estimate: 1.7e6, lastDownAt: base.now - AFTER_DOWN_HOLD_MS }).index, 1);
  assert.equal(decide({ ...base, current: 2, estimate: 50e6 }).index, 2, 'the top rung stays');
  assert.equal(decide({ ...base, current: 0, estimate: 50e6, samples: MIN_UP_SAMPLES - 1 }).index, 0, 'too few samples to climb on');
  assert.equal(decide({ ...base, current: 2, estimate: 1e6, samples: 1 }).index, 0, 'one sample is enough to step down');
});

test('the band between down and up keeps the rung (no flapping)', () => {
  // On the 1.2 rung, anything from 1.14 to 3.5 Mbit/s stays.
  for (const estimate of [1.15e6, 2e6, 3.4e6]) assert.equal(decide({ ...base, current: 1, estimate }).index, 1, `estimate ${estimate}`);
});

test('the first rung: the lowest, or what fits a remembered estimate', () => {
  assert.equal(initialRung(LADDER, undefined), 0);
  assert.equal(initialRung(LADDER, 0), 0);
  assert.equal(initialRung(LADDER, 2e6), 1);
  assert.equal(initialRung(LADDER, 10e6), 2);
});

test('too slow: on the lowest rung, short of it and starving for a while; clears by itself', () => {
  const args = { lowest: 400e3, estimate: 250e3, onLowest: true, stalled: true, buffer: 0, target: 0.5 };
  let st = slowVerdict(undefined, { ...args, now: 0 });
  assert.equal(st.tooSlow, false, 'not at once');
  st = slowVerdict(st, { ...args, now: SLOW_AFTER_MS - 1 });
  assert.equal(st.tooSlow, false);
  st = slowVerdict(st, { ...args, now: SLOW_AFTER_MS });
  assert.equal(st.tooSlow, true);
  // Still short: stays.
  st = slowVerdict(st, { ...args, estimate: 410e3, now: SLOW_AFTER_MS + 1000 });
  assert.equal(st.tooSlow, true, 'just over the rung is not yet recovered');
  st = slowVerdict(st, { ...args, estimate: 600e3, stalled: false, buffer: 0.5, now: SLOW_AFTER_MS + 2000 });
  assert.equal(st.tooSlow, false, 'recovered');
  // A gap in starving restarts the clock.
  st = slowVerdict(undefined, { ...args, now: 0 });
  st = slowVerdict(st, { ...args, stalled: false, buffer: 0.5, now: 2000 });
  st = slowVerdict(st, { ...args, now: 2500 });
  st = slowVerdict(st, { ...args, now: 4000 });
  assert.equal(st.tooSlow, false, 'the clock restarted at 2500');
  // Not on the lowest rung, or with an estimate that fits: never.
  assert.equal(slowVerdict(undefined, { ...args, onLowest: false, now: 0 }).since, undefined);
  assert.equal(slowVerdict(undefined, { ...args, estimate: 500e3, now: 0 }).since, undefined);
});
