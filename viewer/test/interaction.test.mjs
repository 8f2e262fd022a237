/**
 * Unit tests of the viewer's interaction modules (viewer/js/interaction/), without a
 * server: the request-stream codec (header, frames, the 8192-byte bound, truncated
 * input), the state reducer converging whatever order records arrive in, media-time
 * gating, the catalog lookup, and the client's stream handling against an in-memory
 * transport (hello/welcome, answers in order, retry with the same key on a new stream).
 * Run: node --test viewer/test/
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ByteReader, ShortBuffer, toHex } from '../js/moqt/bytes.js';
import { decodeFrames, encodeFrame, encodeOpening, FrameError, MAX_FRAME_BYTES, readFrame, readHeader, STREAM_HEADER } from '../js/interaction/codec.js';
import { CHAT_BACKLOG, emptyState, Follower, parseRecords, reduce } from '../js/interaction/state.js';
import { Gate, isDue, MAX_AHEAD_MS } from '../js/interaction/mediatime.js';
import { interactionTrackOf } from '../js/interaction/track.js';
import { InteractionClient } from '../js/interaction/client.js';

const utf8 = (s) => new TextEncoder().encode(s);

// ---------------------------------------------------------------------------- codec

test('the stream header is the draft-18 varint 0x535443 and version 1', () => {
  assert.equal(toHex(Uint8Array.from(STREAM_HEADER)), 'e053544301');
  const r = new ByteReader(Uint8Array.from(STREAM_HEADER));
  assert.equal(r.varint(), 0x535443);
  assert.equal(r.u8(), 1);
  assert.equal(readHeader(new ByteReader(Uint8Array.from(STREAM_HEADER))), true);
  // A MoQ request (SUBSCRIBE, type 0x3) is not an interaction stream.
  assert.equal(readHeader(new ByteReader(Uint8Array.of(0x03, 0, 5, 0, 0))), false);
});

test('frames round-trip: varint length then UTF-8 JSON; several in one buffer', () => {
  const hello = { type: 'hello', broadcast: 'demo/live', token: 'a.b.c' };
  const chat = { type: 'chat', key: 'k1', text: 'héllo ❤️ <b>' };
  const f = encodeFrame(hello);
  const json = utf8(JSON.stringify(hello));
  assert.equal(f[0], json.length, 'a short body has a one-byte length');
  assert.deepEqual(f.subarray(1), json);
  const opening = encodeOpening(hello);
  assert.deepEqual(Array.from(opening.subarray(0, 5)), STREAM_HEADER);
  const both = new Uint8Array([...opening, ...encodeFrame(chat)]);
  assert.deepEqual(decodeFrames(both, { header: true }), [hello, chat]);
});

test('lengths past 127 take a two-byte varint; exactly 8192 bytes is allowed', () => {
  const at = (n) => ({ type: 'chat', key: 'k', text: 'x'.repeat(n - JSON.stringify({ type: 'chat', key: 'k', text: '' }).length) });
  const f200 = encodeFrame(at(200));
  assert.equal(f200.length, 202);
  assert.equal(f200[0] & 0xc0, 0x80, 'two-byte varint prefix 10');
  const max = encodeFrame(at(MAX_FRAME_BYTES));
  assert.equal(max.length, MAX_FRAME_BYTES + 2);
  assert.deepEqual(decodeFrames(max), [at(MAX_FRAME_BYTES)]);
});

test('an oversize frame is refused: when encoding, and from its length alone when reading', () => {
  const big = { type: 'chat', key: 'k', text: 'x'.repeat(MAX_FRAME_BYTES) };
  assert.throws(() => encodeFrame(big), (err) => err instanceof FrameError && err.reason === 'too_large');
  // Only the length (8193, varint 0xa001) is there: refused without waiting for the body.
  assert.throws(() => readFrame(new ByteReader(Uint8Array.of(0xa0, 0x01))), (err) => err instanceof FrameError && err.reason === 'too_large');
  // A length that needs nine bytes is refused too, not rounded.
  assert.throws(() => readFrame(new ByteReader(Uint8Array.of(0xff, 1, 2, 3, 4, 5, 6, 7, 8))), (err) => err.reason === 'too_large');
});

test('truncated input: a frame asks for more bytes until complete; a buffer ending inside one is an error', () => {
  const f = encodeFrame({ type: 'welcome', user: 'u-1', name: 'Ann', role: 'viewer', balance: 500 });
  for (let n = 0; n < f.length; n++) {
    assert.throws(() => readFrame(new ByteReader(f.subarray(0, n))), ShortBuffer, `cut at ${n}`);
  }
  assert.deepEqual(readFrame(new ByteReader(f)).user, 'u-1');
  assert.throws(() => decodeFrames(f.subarray(0, f.length - 1)), (err) => err instanceof FrameError && err.reason === 'truncated');
  assert.throws(() => decodeFrames(Uint8Array.of(0xe0, 0x53), { header: true }), (err) => err.reason === 'truncated');
});

test('a frame that is not a UTF-8 JSON object is invalid', () => {
  const frame = (body) => Uint8Array.of(body.length, ...body);
  for (const body of [utf8('[1,2]'), utf8('"hi"'), utf8('null'), utf8('{"a":'), Uint8Array.of(0x7b, 0xff, 0x7d)]) {
    assert.throws(() => readFrame(new ByteReader(frame(body))), (err) => err instanceof FrameError && err.reason === 'invalid');
  }
  // Unknown fields are kept (and ignored by whoever reads them).
  assert.deepEqual(readFrame(new ByteReader(frame(utf8('{"type":"accepted","key":"k","extra":1}')))).extra, 1);
});

// ---------------------------------------------------------------------------- reducer

const chat = (seq, text = `m${seq}`, user = 'u1') => ({ type: 'chat', seq, user, name: 'Ann', role: 'viewer', text });
const rec = (data, M) => (M === undefined ? { data } : { M, data });
const snapshotOf = (state) => ({ type: 'snapshot', ...state });

/** A timeline from seq 1 to `n` with every kind of event, and the state after each. */
function timeline() {
  const poll = { id: 1, question: 'Next?', options: ['a', 'b'], tallies: [0, 0], open: true, closes_at_ms: 1, winner: null };
  const events = [
    chat(1, 'hi'),
    { type: 'poll_opened', seq: 2, poll },
    { type: 'vote', seq: 3, poll: 1, tallies: [1, 0] },
    chat(4, 'second', 'u2'),
    { type: 'goal', seq: 5, goal: { title: 'Mic', target: 100, progress: 0 } },
    { type: 'tip', seq: 6, user: 'u2', name: 'Bob', amount: 30, message: 'go', goal: { title: 'Mic', target: 100, progress: 30 } },
    { type: 'chat_deleted', seq: 7, message: 1, by: 'mod' },
    { type: 'reactions', seq: 8, counts: { '❤️': 3 }, window_ms: 1000 },
    { type: 'viewers', seq: 9, count: 4 },
    { type: 'moderation', seq: 10, action: 'slow_mode', secs: 5, by: 'mod' },
    { type: 'poll_closed', seq: 11, poll: 1, tallies: [2, 1], winner: 0 },
    { type: 'tip', seq: 12, user: 'u3', name: 'Cy', amount: 40, message: null, goal: { title: 'Mic', target: 100, progress: 70 } },
    chat(13, 'third'),
  ];
  const states = [emptyState()];
  for (const e of events) states.push(reduce(states.at(-1), e, e.seq * 100));
  return { events, states };
}

test('the reducer applies every event type as the origin does', () => {
  const { states } = timeline();
  const last = states.at(-1);
  assert.equal(last.seq, 13);
  assert.deepEqual(last.chat.map((l) => [l.seq, l.text, l.M]), [[4, 'second', 400], [13, 'third', 1300]]);
  assert.deepEqual(last.poll, { id: 1, question: 'Next?', options: ['a', 'b'], tallies: [2, 1], open: false, closes_at_ms: 1, winner: 0 });
  assert.deepEqual(last.goal, { title: 'Mic', target: 100, progress: 70 });
  assert.deepEqual(last.top_tippers, [{ user: 'u3', name: 'Cy', total: 40 }, { user: 'u2', name: 'Bob', total: 30 }]);
  assert.equal(last.viewers, 4);
  assert.equal(last.slow_mode_secs, 5);
  assert.deepEqual(last.reactions, { '❤️': 3 });
  // Pure: earlier states are untouched.
  assert.equal(states[1].chat.length, 1);
  assert.equal(states[2].poll.tallies[0], 0);
  assert.throws(() => reduce(states[3], chat(5), 0), RangeError, 'an event that does not follow is refused');
});

test('the chat backlog keeps the last 50 lines', () => {
  let s = emptyState();
  for (let i = 1; i <= CHAT_BACKLOG + 7; i++) s = reduce(s, chat(i), undefined);
  assert.equal(s.chat.length, CHAT_BACKLOG);
  assert.equal(s.chat[0].seq, 8);
  assert.equal('M' in s.chat[0], false, 'no M when the record had none');
});

test('the follower converges whatever order events and snapshots arrive in', () => {
  const { events, states } = timeline();
  const final = states.at(-1);
  const orders = [
    // In order, after the snapshot of seq 0.
    [rec(snapshotOf(states[0])), ...events.map((e) => rec(e, e.seq * 100))],
    // Events before any snapshot, out of order; snapshot last.
    [...events.map((e) => rec(e, e.seq * 100)).reverse(), rec(snapshotOf(states[0]))],
    // A later snapshot after its events, then duplicates of everything.
    [rec(snapshotOf(states[5])), ...events.slice(5).map((e) => rec(e, e.seq * 100)), rec(snapshotOf(states[9])), ...events.map((e) => rec(e, e.seq * 100))],
    // The newest snapshot first: older snapshots and events are already included.
    [rec(snapshotOf(final)), rec(snapshotOf(states[3])), ...events.map((e) => rec(e, e.seq * 100))],
  ];
  for (let i = 0; i < 20; i++) {
    // Shuffles with a fixed seed, so a failure can be reproduced.
    let seed = i + 1;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const all = [rec(snapshotOf(states[0])), rec(snapshotOf(states[7])), ...events.map((e) => rec(e, e.seq * 100)), ...events.slice(0, 4).map((e) => rec(e, e.seq * 100))];
    for (let j = all.length - 1; j > 0; j--) {
      const k = Math.floor(rand() * (j + 1));
      [all[j], all[k]] = [all[k], all[j]];
    }
    orders.push(all);
  }
  for (const [n, order] of orders.entries()) {
    const f = new Follower();
    const seen = [];
    for (const r of order) for (const { event } of f.push(r).applied) seen.push(event.seq);
    assert.deepEqual(f.state, final, `order ${n}`);
    assert.equal(f.ahead.size, 0, `order ${n}: nothing left waiting`);
    assert.deepEqual(seen, [...seen].sort((a, b) => a - b), `order ${n}: events applied in seq order`);
    assert.equal(new Set(seen).size, seen.length, `order ${n}: no event applied twice`);
  }
});

test('the follower reports what changed: a newer snapshot replaces, an older one or a duplicate does nothing', () => {
  const { events, states } = timeline();
  const f = new Follower();
  assert.deepEqual(f.push(rec(events[1])), { replaced: false, applied: [] }, 'held: no state yet');
  assert.equal(f.state, null);
  let out = f.push(rec(snapshotOf(states[1])));
  assert.equal(out.replaced, true);
  assert.deepEqual(out.applied.map((a) => a.event.seq), [2], 'the held event follows the snapshot');
  out = f.push(rec(events[1]));
  assert.deepEqual(out, { replaced: false, applied: [] }, 'duplicate');
  out = f.push(rec(snapshotOf(states[1])));
  assert.equal(out.replaced, false, 'older snapshot');
  out = f.push(rec(events[3], 400));
  assert.deepEqual(out.applied, [], 'seq 4 waits for seq 3');
  out = f.push(rec(events[2], 300));
  assert.deepEqual(out.applied.map((a) => [a.event.seq, a.M]), [[3, 300], [4, 400]]);
  assert.equal(f.state.seq, 4);
});

test('records: an object is a JSON array of {M, data}; unusable records are left out', () => {
  const payload = utf8(JSON.stringify([
    { M: 1200, data: { type: 'snapshot', seq: 3, chat: [], poll: null, goal: null, top_tippers: [], viewers: 2, slow_mode_secs: 0, reactions: {} } },
    { data: chat(4) },
    { M: 5, data: { type: 'chat' } },
    { M: 5, data: { type: 'from_the_future', seq: 9 } },
    'junk',
  ]));
  const records = parseRecords(payload);
  assert.deepEqual(records.map((r) => [r.M, r.data.type, r.data.seq]), [[1200, 'snapshot', 3], [undefined, 'chat', 4]]);
  assert.throws(() => parseRecords(utf8('{"M":1}')));
  assert.throws(() => parseRecords(utf8('not json')));
});

// ---------------------------------------------------------------------------- media time

test('media-time gating: shown when the video reaches M; at once without M, without a clock, or past 30 s ahead', () => {
  assert.equal(isDue(5000, 4999), false);
  assert.equal(isDue(5000, 5000), true);
  assert.equal(isDue(undefined, 1000), true, 'no M');
  assert.equal(isDue(5000, undefined), true, 'no media clock');
  assert.equal(isDue(1000 + MAX_AHEAD_MS, 1000), false, 'exactly 30 s ahead still waits');
  assert.equal(isDue(1001 + MAX_AHEAD_MS, 1000), true, 'a clock mismatch shows at once');
  assert.equal(isDue(1_790_000_000_000, 12_000), true, 'wall-clock M against a PTS clock');

  const g = new Gate();
  g.hold('a', 1000, 'A');
  g.hold('b', 1500, 'B');
  g.hold('c', undefined, 'C');
  g.hold('d', 999_999, 'D');
  assert.deepEqual(g.release(900), ['C', 'D']);
  assert.equal(g.waiting('a'), true);
  assert.deepEqual(g.release(1200), ['A']);
  g.hold('a', 5000, 'A again');
  assert.deepEqual(g.release(1200), [], 'an id is released once');
  assert.deepEqual(g.release(800), [], 'rewinding hides nothing and releases nothing new');
  assert.equal(g.shown('a'), true);
  assert.deepEqual(g.release(1500), ['B']);
  g.hold('e', 2000, 'E');
  g.forget('e');
  assert.deepEqual(g.release(3000), []);
});

test('chat lines from the follower wait for their M; counts do not', () => {
  const f = new Follower();
  const g = new Gate();
  f.push(rec(snapshotOf({ ...emptyState(0) })));
  const { applied } = f.push(rec(chat(1, 'later'), 10_000));
  f.push(rec({ type: 'viewers', seq: 2, count: 7 }, 10_000));
  assert.equal(f.state.viewers, 7, 'the count is in the state at once');
  for (const { event, M } of applied) g.hold(event.seq, M, event.text);
  assert.deepEqual(g.release(9_000), [], 'the video is 1 s behind the line');
  assert.deepEqual(g.release(10_050), ['later']);
});

// ---------------------------------------------------------------------------- catalog

test('the interaction track is found in the catalog only when listed', () => {
  const cat = (tracks) => JSON.stringify({ version: 1, tracks });
  const video = { name: 'video', packaging: 'cmaf', role: 'video' };
  const ix = { name: 'interaction', packaging: 'eventtimeline', eventType: 'dev.stagecast.interaction.v1', mimeType: 'application/json', depends: ['video'], isLive: true, role: 'data' };
  assert.equal(interactionTrackOf(utf8(cat([video, ix]))), 'interaction');
  assert.equal(interactionTrackOf(cat([video])), undefined);
  assert.equal(interactionTrackOf(cat([video, { ...ix, eventType: 'other.v1' }])), undefined);
  assert.equal(interactionTrackOf('not json'), undefined);
});

// ---------------------------------------------------------------------------- client

/**
 * An in-memory WebTransport session whose bidirectional streams are served by
 * `serve(frames, reply, stream)`: `frames` the client's frames so far (hello first),
 * `reply(obj)` sends a frame back, `stream.reset()` fails it.
 */
class FakeTransport {
  constructor(serve) {
    this.serve = serve;
    this.streams = [];
    this.closed = new Promise((resolve) => (this.close = resolve));
  }

  async createBidirectionalStream() {
    let down;
    const readable = new ReadableStream({ start: (c) => (down = c) });
    const stream = { frames: [], header: null, buf: new Uint8Array(0), ended: false };
    stream.reply = (obj) => !stream.ended && down.enqueue(encodeFrame(obj));
    stream.reset = () => {
      if (stream.ended) return;
      stream.ended = true;
      down.error(new Error('stream reset'));
    };
    const writable = new WritableStream({
      write: (chunk) => {
        if (stream.ended) throw new Error('reset');
        stream.buf = new Uint8Array([...stream.buf, ...chunk]);
        const r = new ByteReader(stream.buf);
        try {
          if (!stream.header) stream.header = Array.from(r.bytesN(5));
          for (;;) {
            const start = r.pos;
            try {
              stream.frames.push(readFrame(r));
            } catch (err) {
              if (!(err instanceof ShortBuffer)) throw err;
              r.pos = start;
              break;
            }
            this.serve(stream.frames.at(-1), stream);
          }
        } catch (err) {
          if (!(err instanceof ShortBuffer)) throw err;
        }
        stream.buf = stream.buf.slice(r.pos);
      },
    });
    this.streams.push(stream);
    return { readable, writable };
  }
}

/** A fake origin: answers hello with welcome and each request once per key. */
function fakeOrigin({ dropFirstAnswers = 0 } = {}) {
  const answers = new Map(); // key -> answer, as the origin stores them
  let seq = 41;
  let drop = dropFirstAnswers;
  const serve = (frame, stream) => {
    if (frame.type === 'hello') {
      if (frame.token === 'bad') return stream.reply({ type: 'error', reason: 'not_authorized', message: 'bad token' });
      return stream.reply({ type: 'welcome', user: frame.token ? 'u-1' : null, name: frame.token ? 'Ann' : null, role: frame.token ? 'viewer' : null, balance: 500 });
    }
    if (!answers.has(frame.key)) {
      answers.set(frame.key, frame.text === 'slow'
        ? { type: 'rejected', key: frame.key, reason: 'rate_limited', message: 'slow down', retry_after_ms: 1500 }
        : { type: 'accepted', key: frame.key, seq: ++seq });
    }
    if (drop > 0) {
      drop--;
      stream.reset(); // the request reached the origin, the answer was lost
      return;
    }
    stream.reply(answers.get(frame.key));
  };
  return { serve, answers, applied: () => seq - 41 };
}

test('the client says hello on one stream with the header, then gets answers in order with fresh keys', async () => {
  const origin = fakeOrigin();
  const wt = new FakeTransport(origin.serve);
  const client = new InteractionClient({ broadcast: 'demo/live', token: 'tok' });
  const welcome = new Promise((resolve) => client.addEventListener('welcome', (e) => resolve(e.detail)));
  client.attach(wt);
  const answers = await Promise.all([client.request({ type: 'chat', text: 'one' }), client.request({ type: 'chat', text: 'slow' }), client.request({ type: 'vote', poll: 1, option: 0 })]);
  assert.deepEqual((await welcome).name, 'Ann');
  assert.equal(wt.streams.length, 1, 'one stream for everything');
  assert.deepEqual(wt.streams[0].header, STREAM_HEADER);
  const [hello, ...requests] = wt.streams[0].frames;
  assert.deepEqual(hello, { type: 'hello', broadcast: 'demo/live', token: 'tok' });
  assert.deepEqual(answers.map((a) => a.type), ['accepted', 'rejected', 'accepted']);
  assert.equal(answers[1].retry_after_ms, 1500);
  assert.deepEqual(answers.map((a) => a.key), requests.map((r) => r.key));
  assert.equal(new Set(requests.map((r) => r.key)).size, 3, 'fresh keys');
  assert.ok(requests.every((r) => r.key.length >= 1 && r.key.length <= 64));
  assert.ok(answers[0].seq < answers[2].seq);
  client.close();
});

test('a stream that fails before its answer is reopened and the request retried with the same key', async () => {
  const origin = fakeOrigin({ dropFirstAnswers: 1 });
  const wt = new FakeTransport(origin.serve);
  const client = new InteractionClient({ broadcast: 'demo/live', token: 'tok' });
  client.attach(wt);
  const answer = await client.request({ type: 'tip', amount: 5 });
  assert.equal(answer.type, 'accepted');
  assert.equal(wt.streams.length, 2, 'a second stream after the first failed');
  const sent = wt.streams.flatMap((s) => s.frames.filter((f) => f.type === 'tip'));
  assert.equal(sent.length, 2);
  assert.equal(sent[0].key, sent[1].key, 'the retry carries the same key');
  assert.equal(wt.streams[1].frames[0].type, 'hello', 'the new stream starts with hello');
  assert.equal(origin.applied(), 1, 'applied once');
  client.close();
});

test('after the session drops, the client waits for the next one and retries there', async () => {
  const origin = fakeOrigin();
  let answer = true;
  const first = new FakeTransport((frame, stream) => (frame.type === 'hello' || answer ? origin.serve(frame, stream) : undefined));
  const client = new InteractionClient({ broadcast: 'demo/live', token: 'tok' });
  client.attach(first);
  assert.equal((await client.request({ type: 'chat', text: 'a' })).type, 'accepted');
  answer = false; // the next request is applied nowhere: the session dies first
  const pending = client.request({ type: 'chat', text: 'b' });
  await new Promise((r) => setTimeout(r, 50));
  first.close({ closeCode: 0 });
  for (const s of first.streams) s.reset();
  await new Promise((r) => setTimeout(r, 700)); // past a backoff: still nothing to connect to
  assert.equal(first.streams.length, 1, 'no new stream on a closed session');
  const second = new FakeTransport(origin.serve);
  client.attach(second);
  const b = await pending;
  assert.equal(b.type, 'accepted');
  const keys = [...first.streams, ...second.streams].flatMap((s) => s.frames.filter((f) => f.text === 'b').map((f) => f.key));
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1]);
  client.close();
});

test('a hello refused for its token fails the pending requests and waits for another token', async () => {
  const origin = fakeOrigin();
  const wt = new FakeTransport(origin.serve);
  const client = new InteractionClient({ broadcast: 'demo/live', token: 'bad' });
  const refused = new Promise((resolve) => client.addEventListener('status', (e) => e.detail.state === 'refused' && resolve(e.detail)));
  client.attach(wt);
  const a = await client.request({ type: 'chat', text: 'x' });
  assert.equal(a.type, 'rejected');
  assert.equal(a.reason, 'not_authorized');
  assert.equal((await refused).message, 'bad token');
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(wt.streams.length, 1, 'no retry with the same token');
  client.setToken('good');
  assert.equal((await client.request({ type: 'chat', text: 'y' })).type, 'accepted');
  assert.equal(wt.streams.at(-1).frames[0].token, 'good');
  client.close();
});

test('an oversize request is refused before it is sent; a hello without a token has no token field', async () => {
  const origin = fakeOrigin();
  const wt = new FakeTransport(origin.serve);
  const client = new InteractionClient({ broadcast: 'demo/live' });
  client.attach(wt);
  assert.throws(() => client.request({ type: 'chat', text: 'x'.repeat(9000) }), (err) => err.reason === 'too_large');
  const welcome = await new Promise((resolve) => client.addEventListener('welcome', (e) => resolve(e.detail)));
  assert.equal(welcome.user, null);
  assert.deepEqual(wt.streams[0].frames, [{ type: 'hello', broadcast: 'demo/live' }]);
  client.close();
});

// ---------------------------------------------------------------------------- words

test('every documented rejection reads as a sentence; waits are in whole seconds', async () => {
  const { describeRejection } = await import('../js/interaction/panel.js');
  const reasons = ['rate_limited', 'too_long', 'poll_closed', 'already_voted', 'insufficient_balance', 'banned', 'timed_out', 'not_authorized', 'invalid', 'unavailable'];
  for (const reason of reasons) {
    const text = describeRejection({ type: 'rejected', key: 'k', reason });
    assert.match(text, /^[A-Z].*[.)!]$/, `${reason}: ${text}`);
    assert.ok(!text.includes('_') && !text.includes(`: ${reason}`), `${reason} is said in words: ${text}`);
  }
  assert.equal(describeRejection({ reason: 'rate_limited', retry_after_ms: 1500 }), 'You are sending too fast. Try again in 2\u00a0s.');
  assert.equal(describeRejection({ reason: 'timed_out', retry_after_ms: 60000 }), 'You are timed out. Try again in 60\u00a0s.');
  assert.match(describeRejection({ reason: 'insufficient_balance' }, { balance: 3 }), /balance 3/);
  assert.match(describeRejection({ reason: 'something_new', message: 'why' }), /something_new.*why/);
});
