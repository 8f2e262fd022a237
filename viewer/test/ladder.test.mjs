/**
 * The catalog as slots and ladders (viewer/js/player/ladder.js, catalog.js's altGroup),
 * and the size of a probe (probe.js).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { parseCatalog } from '../js/player/catalog.js';
import { labelOf, slotsOf, videoSlot } from '../js/player/ladder.js';
import { probeCount } from '../js/player/probe.js';

const init = Buffer.from('init').toString('base64');
const video = (name, extra) => ({ name, packaging: 'cmaf', isLive: true, role: 'video', codec: 'avc1.64001f', initData: init, timescale: 15360, ...extra });
const audio = { name: 'audio', packaging: 'cmaf', isLive: true, role: 'audio', codec: 'mp4a.40.2', initData: init, samplerate: 48000, timescale: 48000 };

function catalog(tracks) {
  return parseCatalog(new TextEncoder().encode(JSON.stringify({ version: 'draft-01', tracks })));
}

test('alternates share a slot, sorted from the lowest bitrate; audio keeps its own', () => {
  const c = catalog([
    video('video', { altGroup: 1, bitrate: 2500000, width: 1280, height: 720, framerate: 30 }),
    video('video1', { altGroup: 1, bitrate: 1200000, width: 854, height: 480, framerate: 30 }),
    video('video2', { altGroup: 1, bitrate: 400000, width: 426, height: 240, framerate: 30 }),
    audio,
  ]);
  const slots = slotsOf(c.tracks);
  assert.deepEqual(slots.map((s) => s.key), ['alt:1', 'track:audio']);
  const v = videoSlot(slots);
  assert.deepEqual(v.renditions.map((r) => r.name), ['video2', 'video1', 'video']);
  assert.ok(v.renditions.every((r) => r.bitrateKnown));
  assert.equal(labelOf(v.renditions[2]), '720p');
  assert.equal(labelOf(v.renditions[1], { withRate: true }), '480p · 1.2 Mbit/s');
  assert.equal(labelOf(v.renditions[0], { withRate: true }), '240p · 400 kbit/s');
});

test('one video track: a ladder of one, as before', () => {
  const slots = slotsOf(catalog([video('video', { width: 1280, height: 720 }), audio]).tracks);
  assert.equal(slots.length, 2);
  assert.equal(videoSlot(slots).renditions.length, 1);
  assert.equal(videoSlot(slots).renditions[0].bitrateKnown, false, 'no bitrate in the catalog: guessed');
  assert.ok(videoSlot(slots).renditions[0].bitrate > 1e6);
});

test('video tracks without altGroup are alternates too (one video element); guessed bitrates order them by size', () => {
  const slots = slotsOf(catalog([
    video('video', { width: 1280, height: 720 }),
    video('video1', { width: 426, height: 240 }),
    audio,
  ]).tracks);
  assert.deepEqual(videoSlot(slots).renditions.map((r) => r.name), ['video1', 'video']);
});

test('two alternate groups are two slots', () => {
  const slots = slotsOf(catalog([video('a', { altGroup: 1, bitrate: 1 }), video('b', { altGroup: 2, bitrate: 1 })]).tracks);
  assert.equal(slots.length, 2);
});

test('a probe takes the first objects of a group within its budget, at least one', () => {
  assert.equal(probeCount([60000, 4000, 4000, 4000], 16000), 1, 'the keyframe alone is over budget');
  assert.equal(probeCount([10000, 4000, 4000, 4000], 17000), 2);
  assert.equal(probeCount([10000, 4000], 1e9), 2, 'no more than the group had');
  assert.equal(probeCount([], 1e9), 0);
  assert.equal(probeCount([undefined, 4000], 1e9), 0, 'object 0 was not received: no probe');
});
