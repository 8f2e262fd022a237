// The producer's wall clock read from a chunk's prft (viewer/js/player/fmp4.js).
import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeTime, producerTime } from '../js/player/fmp4.js';

function box(type, body) {
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setUint32(0, out.length);
  out.set([...type].map((c) => c.charCodeAt(0)), 4);
  out.set(body, 8);
  return out;
}

function prft(version, unixMs, mediaTime) {
  const body = new Uint8Array(version === 1 ? 24 : 20);
  const view = new DataView(body.buffer);
  body[0] = version;
  view.setUint32(4, 1); // reference track
  view.setUint32(8, Math.floor(unixMs / 1000) + 2208988800);
  view.setUint32(12, Math.round(((unixMs % 1000) / 1000) * 2 ** 32));
  if (version === 1) view.setBigUint64(16, BigInt(mediaTime));
  else view.setUint32(16, mediaTime);
  return box('prft', body);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// moof/traf/tfdt (version 0) at decode time 90000, then an mdat.
const tfdt = box('tfdt', new Uint8Array([0, 0, 0, 0, 0, 1, 0x5f, 0x90]));
const chunk = concat(box('moof', box('traf', tfdt)), box('mdat', new Uint8Array([1, 2, 3])));

test('a prft in front of the moof gives the wall clock of a media time', () => {
  for (const version of [0, 1]) {
    const at = 1_800_000_000_250;
    const made = producerTime(concat(prft(version, at, 90000), chunk));
    assert.ok(Math.abs(made.unixMs - at) < 0.01, `${made.unixMs}`);
    assert.equal(made.mediaTime, 90000);
  }
  // The chunk's own decode time is still found behind it.
  assert.equal(decodeTime(concat(prft(1, 0, 0), chunk)), 90000);
});

test('no prft, one after the moof, or a truncated one: no producer time', () => {
  assert.equal(producerTime(chunk), undefined);
  assert.equal(producerTime(concat(chunk, prft(1, 1e12, 1))), undefined);
  assert.equal(producerTime(concat(box('prft', new Uint8Array(6)), chunk)), undefined);
});
