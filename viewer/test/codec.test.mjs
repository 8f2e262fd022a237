/**
 * Unit tests of the viewer's MoQT draft-18 codec against moqt-vectors.json (the same
 * vectors tests/tests/moqt_vectors.rs checks with the moq-transport crate), plus
 * streaming, bounds and malformed-input cases. Run: node --test viewer/test/
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { ByteReader, ByteWriter, ProtocolViolation, ShortBuffer, fromHex, toHex, varintLength } from '../js/moqt/bytes.js';
import { decodeMessage, MessageType, unframe, paramValue, Param } from '../js/moqt/messages.js';
import { isSubgroupType, readFetchObject, readSubgroupHeader, readSubgroupObject, ObjectStatus } from '../js/moqt/data.js';
import { StreamReader } from '../js/moqt/stream.js';
import { encodeMessageVector, encodeSubgroupVector, encodeFetchHeaderVector, paramsOf } from './vector-codec.mjs';

const vectors = JSON.parse(readFileSync(new URL('moqt-vectors.json', import.meta.url), 'utf8'));
const big = (v) => (typeof v === 'bigint' ? v : BigInt(v));

test('varints decode to the draft example values and encode minimally', () => {
  for (const v of vectors.varints) {
    const r = new ByteReader(fromHex(v.hex));
    assert.equal(big(r.varint()), BigInt(v.value), v.hex);
    assert.equal(r.remaining, 0);
    if (!v.nonMinimal) assert.equal(toHex(new ByteWriter().varint(BigInt(v.value)).finish()), v.hex);
  }
});

test('varints round-trip at every length boundary; numbers stay numbers up to 2^53', () => {
  for (let bits = 0; bits <= 64; bits++) {
    for (const delta of [-1n, 0n]) {
      const v = (1n << BigInt(bits)) + delta;
      if (v < 0n || v >= 1n << 64n) continue;
      const bytes = new ByteWriter().varint(v).finish();
      assert.equal(bytes.length, varintLength(v));
      const back = new ByteReader(bytes).varint();
      assert.equal(big(back), v);
      assert.equal(typeof back, v <= BigInt(Number.MAX_SAFE_INTEGER) ? 'number' : 'bigint');
    }
  }
  assert.throws(() => new ByteWriter().varint(1n << 64n), RangeError);
  assert.throws(() => new ByteWriter().varint(-1), RangeError);
});

test('a varint cut short asks for more bytes', () => {
  const bytes = fromHex('fefa318fa8e3ca11');
  for (let n = 0; n < bytes.length; n++) {
    assert.throws(() => new ByteReader(bytes.subarray(0, n)).varint(), ShortBuffer);
  }
});

test('control messages encode to the vector bytes', () => {
  for (const v of vectors.messages) {
    assert.equal(toHex(encodeMessageVector(v)), v.hex, v.name);
  }
});

test('received control messages decode to the vector fields', () => {
  for (const v of vectors.messages) {
    const { type, payload, size } = unframe(fromHex(v.hex));
    assert.equal(size, v.hex.length / 2, v.name);
    if (['subscribe', 'fetch'].includes(v.kind)) continue; // a viewer only sends these
    const m = decodeMessage(type, payload);
    switch (v.kind) {
      case 'setup':
        assert.equal(m.type, MessageType.SETUP);
        assert.deepEqual(
          m.options.map((o) => ({ type: o.type, value: o.type % 2 ? new TextDecoder().decode(o.value) : o.value })),
          v.options.map((o) => ({ type: o.type, value: 'text' in o ? o.text : o.int })),
          v.name,
        );
        break;
      case 'subscribe_ok':
        assert.equal(m.trackAlias, v.trackAlias);
        assert.deepEqual(m.params, paramsOf(v.params), v.name);
        assert.deepEqual(m.properties, v.properties.map((p) => ({ type: p.type, value: p.int })), v.name);
        break;
      case 'request_ok':
        assert.deepEqual(m.params, paramsOf(v.params), v.name);
        break;
      case 'request_error':
        assert.deepEqual([m.errorCode, m.retryInterval, m.reason], [v.errorCode, v.retryInterval, v.reason], v.name);
        break;
      case 'publish_done':
        assert.deepEqual([m.statusCode, big(m.streamCount), m.reason], [v.statusCode, BigInt(v.streamCount), v.reason], v.name);
        break;
      case 'fetch_ok':
        assert.equal(m.endOfTrack, v.endOfTrack);
        assert.deepEqual([m.endLocation.group, m.endLocation.object], v.endLocation);
        break;
      case 'goaway':
        assert.equal(m.uri, v.uri, v.name);
        assert.equal(m.timeout, v.timeout ?? 0, v.name);
        assert.equal(m.requestId, v.requestId, v.name);
        break;
      default:
        assert.fail(`no decoder check for ${v.kind}`);
    }
  }
});

test('SUBSCRIBE_OK exposes LARGEST_OBJECT as a location', () => {
  const v = vectors.messages.find((m) => m.kind === 'subscribe_ok' && m.params.length);
  const { type, payload } = unframe(fromHex(v.hex));
  assert.deepEqual(paramValue(decodeMessage(type, payload).params, Param.LARGEST_OBJECT), { group: 1763000000000, object: 29 });
});

test('malformed control messages are protocol violations', () => {
  // Trailing byte after REQUEST_ERROR's reason.
  assert.throws(() => decodeMessage(MessageType.REQUEST_ERROR, fromHex('10000000')), ProtocolViolation);
  // A type a subscriber never receives.
  assert.throws(() => decodeMessage(MessageType.SUBSCRIBE, fromHex('00')), ProtocolViolation);
  // Reason phrase over 1024 bytes.
  const long = new ByteWriter().varint(0).varint(0).varint(1025).bytes(new Uint8Array(1025)).finish();
  assert.throws(() => decodeMessage(MessageType.REQUEST_ERROR, long), ProtocolViolation);
  // End Of Track must be 0 or 1.
  assert.throws(() => decodeMessage(MessageType.FETCH_OK, fromHex('02000000')), ProtocolViolation);
});

function decodeSubgroupStream(bytes) {
  const r = new ByteReader(bytes);
  const type = r.smallVarint('type');
  const header = readSubgroupHeader(r, type);
  const objects = [];
  let prev;
  while (r.remaining > 0) {
    const o = readSubgroupObject(r, header, prev);
    prev = o.objectId;
    objects.push(o);
  }
  return { header, objects };
}

test('subgroup streams decode to the vector header and objects', () => {
  for (const v of vectors.subgroups) {
    assert.equal(toHex(encodeSubgroupVector(v)), v.hex, v.name);
    const { header, objects } = decodeSubgroupStream(fromHex(v.hex));
    assert.equal(header.trackAlias, v.header.trackAlias);
    assert.equal(header.groupId, v.header.groupId);
    assert.equal(header.priority, v.header.priority ?? 128);
    if (v.header.subgroupId !== undefined) assert.equal(header.subgroupId, v.header.subgroupId);
    assert.equal(objects.length, v.objects.length, v.name);
    let expectedId;
    v.objects.forEach((o, i) => {
      expectedId = expectedId === undefined ? o.objectIdDelta : expectedId + o.objectIdDelta + 1;
      assert.equal(objects[i].objectId, expectedId, `${v.name} object ${i}`);
      assert.equal(toHex(objects[i].payload), o.payload ?? '');
      assert.equal(objects[i].status, o.status ?? ObjectStatus.NORMAL);
    });
  }
});

test('fetch headers encode to the vector bytes', () => {
  for (const v of vectors.fetchHeaders) assert.equal(toHex(encodeFetchHeaderVector(v)), v.hex);
});

test('subgroup header types: only 0b0XX1XXXX with a defined id mode', () => {
  const valid = [];
  for (let t = 0; t < 0x100; t++) if (isSubgroupType(t)) valid.push(t);
  assert.equal(valid.length, 48); // 4 high-bit patterns x 16 low values - 16 reserved mode 0b11
  for (const t of [0x05, 0x16, 0x17, 0x1e, 0x1f, 0x7e, 0x80, 0x0f]) assert.ok(!isSubgroupType(t), t.toString(16));
});

test('an object with an unknown status is a protocol violation', () => {
  const r = new ByteReader(fromHex('10010500' + '00' + '00' + '07'));
  const header = readSubgroupHeader(r, r.smallVarint('t'));
  assert.throws(() => readSubgroupObject(r, header, undefined), ProtocolViolation);
});

test('fetch objects: first absolute, then relative to the prior object', () => {
  const w = new ByteWriter()
    // flags: group delta + object delta + priority present, subgroup zero
    .varint(0x1c).varint(100).varint(0).u8(7).varint(2).bytes(fromHex('aabb'))
    // flags: nothing present: same group, object + 1, prior priority, subgroup zero
    .varint(0x00).varint(1).bytes(fromHex('cc'))
    // next group (delta 0 means +1), object 0
    .varint(0x0c).varint(0).varint(0).varint(0)
    // end of non-existent range up to {101, 5}
    .varint(0x8c).varint(101).varint(5);
  const r = new ByteReader(w.finish());
  const got = [];
  let prev;
  while (r.remaining) {
    prev = readFetchObject(r, prev);
    got.push(prev);
  }
  assert.deepEqual(got.map((o) => [o.groupId, o.objectId, o.priority, o.endOfRange ?? false]), [
    [100, 0, 7, false], [100, 1, 7, false], [101, 0, 7, false], [101, 5, 7, true],
  ]);
  assert.throws(() => readFetchObject(new ByteReader(fromHex('0000')), undefined), ProtocolViolation);
});

/** A ReadableStream that yields `bytes` in chunks of `size`. */
function chunked(bytes, size) {
  let pos = 0;
  return new ReadableStream({
    pull(controller) {
      if (pos >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(pos, pos + size));
      pos += size;
    },
  });
}

test('a stream delivered one byte at a time parses the same as in one piece', async () => {
  const v = vectors.subgroups[0];
  const bytes = fromHex(v.hex);
  for (const size of [1, 2, 5, bytes.length]) {
    const sr = new StreamReader(chunked(bytes, size));
    const type = await sr.parse((r) => r.smallVarint('type'));
    const header = await sr.parse((r) => readSubgroupHeader(r, type));
    const ids = [];
    let prev;
    for (;;) {
      const o = await sr.parse((r) => readSubgroupObject(r, header, prev));
      if (!o) break;
      prev = o.objectId;
      ids.push([o.objectId, toHex(o.payload)]);
    }
    assert.deepEqual(ids, v.objects.map((o, i) => [i, o.payload]), `chunk size ${size}`);
  }
});

test('control messages are read from a stream in any chunking', async () => {
  const all = vectors.messages.filter((m) => ['request_error', 'publish_done', 'goaway'].includes(m.kind));
  const bytes = fromHex(all.map((m) => m.hex).join(''));
  const sr = new StreamReader(chunked(bytes, 3));
  const names = [];
  for (let m = await sr.message(); m; m = await sr.message()) names.push(m.name);
  assert.deepEqual(names, all.map((m) => m.kind.toUpperCase()));
});

test('a stream that ends inside an object is a protocol violation', async () => {
  const bytes = fromHex(vectors.subgroups[0].hex);
  const sr = new StreamReader(chunked(bytes.subarray(0, bytes.length - 1), 4));
  const type = await sr.parse((r) => r.smallVarint('type'));
  const header = await sr.parse((r) => readSubgroupHeader(r, type));
  await assert.rejects(async () => {
    let prev;
    for (;;) {
      const o = await sr.parse((r) => readSubgroupObject(r, header, prev));
      if (!o) break;
      prev = o.objectId;
    }
  }, ProtocolViolation);
});
