/**
 * The bandwidth estimator (viewer/js/player/estimator.js) on made-up arrival timings:
 * a stream at the live edge on a fast link (app-limited: no sample, no false reading),
 * keyframes queued behind a narrow link (the link's rate), a backlog burst (a new
 * subscription served from a cached group), probes, and a link that narrows.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { BandwidthEstimator, BURST_ALLOWANCE, MAX_ESTIMATE, SETTLE_MS } from '../js/player/estimator.js';

const FRAME_MS = 1000 / 30;

/**
 * Feeds `seconds` of a 30 fps video track through a link of `linkBps`: a keyframe of
 * `keyBytes` every 30 frames, `frameBytes` otherwise; each object is sent when it is made
 * and leaves the link when the link has carried everything before it. Returns the time
 * reached (ms).
 */
function feed(est, { seconds, linkBps, keyBytes = 60000, frameBytes = 4000, startMs = 0, startMedia = 0, track = 'video' }) {
  let linkFreeAt = startMs;
  let at = startMs;
  for (let i = 0; i < seconds * 30; i++) {
    const made = startMs + i * FRAME_MS;
    const bytes = i % 30 === 0 ? keyBytes : frameBytes;
    const sendStart = Math.max(made, linkFreeAt);
    linkFreeAt = sendStart + (bytes * 8 * 1000) / linkBps;
    at = linkFreeAt + 20; // 20 ms one-way delay
    est.object(at, bytes, { track, mediaMs: startMedia + i * FRAME_MS });
  }
  return at;
}

test('a stream on a link with room to spare gives no estimate: arrival rate is not the link', () => {
  const est = new BandwidthEstimator();
  // 1 Mbit/s-ish stream, 100 Mbit/s link: keyframes wait 5 ms, under the queueing threshold.
  const end = feed(est, { seconds: 5, linkBps: 100e6 });
  assert.equal(est.estimate(end), undefined);
  assert.ok(est.delivered(end) > 0.9e6 && est.delivered(end) < 1.5e6, `delivered ${est.delivered(end)}`);
});

test('keyframes queued behind a narrow link read the link rate', () => {
  const est = new BandwidthEstimator();
  const end = feed(est, { seconds: 6, linkBps: 1.5e6 });
  const e = est.estimate(end);
  assert.ok(e > 1.2e6 && e < 1.8e6, `estimate ${e} for a 1.5 Mbit/s link`);
  assert.equal(est.lastSample.kind, 'burst');
});

test('the estimate follows a link that opens and one that narrows', () => {
  const est = new BandwidthEstimator();
  let t = feed(est, { seconds: 6, linkBps: 1.5e6 });
  t = feed(est, { seconds: 8, linkBps: 6e6, startMs: t + 10, startMedia: 6000 + 10 });
  const open = est.estimate(t);
  assert.ok(open > 4e6 && open < 7e6, `estimate ${open} after the link opened to 6 Mbit/s`);
  // Narrowed: the newest sample says so within a second (a busy period is cut at 1 s of
  // busy time), the median a little later.
  let t1 = feed(est, { seconds: 1.1, linkBps: 1e6, startMs: t + 10, startMedia: 14000 + 20 });
  assert.ok(est.recent(t1) < 1.5e6, `recent ${est.recent(t1)} a second into 1 Mbit/s`);
  assert.ok(est.estimate(t1) > 4e6, 'one sample does not move the median');
  t1 = feed(est, { seconds: 2.1, linkBps: 1e6, startMs: t1 + 10, startMedia: 15100 + 30 });
  const narrow = est.estimate(t1);
  assert.ok(narrow < 1.5e6, `estimate ${narrow} three keyframes after the link narrowed to 1 Mbit/s`);
});

test('one odd sample either way does not move the estimate; the newest is `recent` for 3 s', () => {
  const est = new BandwidthEstimator();
  for (const [at, bps] of [[1000, 5e6], [2000, 5e6], [3000, 0.5e6], [4000, 5e6], [5000, 90e6]]) {
    est.probe(at - 500, at, (bps * 0.5) / 8); // 500 ms each
  }
  const t = 5000 + SETTLE_MS;
  assert.equal(est.sampleCount(t), 5);
  // Each sample less the burst allowance (16 kB of a 312 kB probe).
  const fiveMbit = (((5e6 * 0.5) / 8 - BURST_ALLOWANCE) * 8) / 0.5;
  assert.ok(Math.abs(est.estimate(t) - fiveMbit) < 1, `median ${est.estimate(t)}`);
  assert.ok(Math.abs(est.recent(t) - (((90e6 * 0.5) / 8 - BURST_ALLOWANCE) * 8) / 0.5) < 1);
  assert.equal(est.recent(8001), undefined, 'too old to be the link now');
});

test('a backlog (objects faster than real time) is a sample, as is a probe', () => {
  const est = new BandwidthEstimator();
  // A new subscription served from the start of a cached group: 20 objects of 5 kB,
  // 2 ms apart (20 Mbit/s), media 33 ms apart.
  for (let i = 0; i < 20; i++) est.object(1000 + i * 2, 5000, { track: 'video', mediaMs: i * FRAME_MS });
  // Then live: no longer faster than real time; the backlog period ends.
  est.object(1000 + 19 * 2 + 40, 5000, { track: 'video', mediaMs: 20 * FRAME_MS });
  assert.equal(est.estimate(1100), undefined, 'not before it has settled');
  const e = est.estimate(1100 + SETTLE_MS);
  assert.ok(e > 15e6 && e < 25e6, `backlog estimate ${e}`);

  const probed = new BandwidthEstimator();
  // 100 kB in 200 ms (4 Mbit/s), with a live object of 25 kB arriving inside the window.
  probed.object(1050, 25000, { track: 'audio' });
  const bps = probed.probe(1000, 1200, 100000);
  const expected = ((125000 - BURST_ALLOWANCE) * 8) / 0.2;
  assert.ok(Math.abs(bps - expected) < 1, `probe sample ${bps}: (100 kB + 25 kB - the burst allowance) over 200 ms`);
  assert.ok(Math.abs(probed.estimate(1200 + SETTLE_MS) - expected) < 1);
  assert.equal(probed.lastSample.kind, 'probe');
});

test('tiny transfers are no sample, and loopback speeds are capped', () => {
  const est = new BandwidthEstimator();
  assert.equal(est.probe(0, 0.01, 2000), undefined, 'a 2 kB probe says nothing');
  assert.equal(est.estimate(1), undefined);
  const bps = est.probe(0, 0, 10e6);
  assert.equal(bps, MAX_ESTIMATE);
});

test('samples age out: an old measurement is not an estimate', () => {
  const est = new BandwidthEstimator();
  est.probe(0, 100, 100000);
  assert.ok(est.estimate(100 + SETTLE_MS) > 0);
  assert.equal(est.estimate(60000), undefined);
});

test('the estimate is never below what the link delivered', () => {
  const est = new BandwidthEstimator();
  est.probe(0, 1000, 20000); // a slow probe: 160 kbit/s
  // ...while 3 s of 1 Mbit/s arrived.
  for (let t = 0; t <= 3000; t += 100) est.object(t, 12500, { track: 'x' });
  const e = est.estimate(3000);
  assert.ok(e >= 0.95e6, `estimate ${e} under the delivered rate`);
});

test('a blocked main thread makes no sample: late dates and bunched arrivals are the page, not the link', () => {
  /** One second on a fast link, then a keyframe and two frames dated 80 ms late, bunched. */
  const run = (est, report) => {
    const t = feed(est, { seconds: 1, linkBps: 100e6, keyBytes: 20000 }); // frames 0..29, 20 ms transit
    const made = (i) => i * FRAME_MS;
    const dated = made(30) + 20 + 80; // the block ended then: frames 30..32 are dated together
    est.object(dated, 60000, { track: 'video', mediaMs: made(30) });
    est.object(dated + 0.1, 4000, { track: 'video', mediaMs: made(31) });
    est.object(dated + 0.2, 4000, { track: 'video', mediaMs: made(32) });
    for (let i = 33; i < 40; i++) est.object(made(i) + 20, 4000, { track: 'video', mediaMs: made(i) }); // on time again
    if (report) est.blocked(made(30) + 15, dated - 1); // reported once it was over
    return t + 10 * FRAME_MS + 2 * SETTLE_MS;
  };
  const est = new BandwidthEstimator();
  assert.equal(est.estimate(run(est, true)), undefined, 'no sample');
  assert.equal(est.discarded, 1);
  // Without the report, the same timings are read as a 6 Mbit/s link.
  const naive = new BandwidthEstimator();
  const e = naive.estimate(run(naive, false));
  assert.ok(e < 10e6, `the false reading this guards against: ${e}`);
});

test('the first burst of a sample is not counted: a token bucket lets it through at line rate', () => {
  const est = new BandwidthEstimator();
  // 40 kB through a 1.5 Mbit/s link with a 16 kB bucket: 16 kB at once, 24 kB at the rate.
  const ms = ((40000 - BURST_ALLOWANCE) * 8) / 1.5e3;
  const bps = est.probe(0, ms, 40000);
  assert.ok(Math.abs(bps - 1.5e6) < 1, `read ${bps}, not ${((40000 * 8) / ms / 1e3).toFixed(0)} kbit/s`);
  // A small sample keeps at least half its bytes.
  assert.ok(Math.abs(est.probe(1000, 1100, 20000) - (10000 * 8) / 0.1) < 1);
});
