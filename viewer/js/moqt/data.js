/**
 * MoQ Transport draft-18 data streams (§10): the unidirectional stream type, SUBGROUP_HEADER
 * and the objects that follow it, FETCH_HEADER and fetch objects. Pure functions over a
 * ByteReader; they throw ShortBuffer when more bytes are needed, so stream.js can retry
 * them as data arrives.
 */

import { ByteWriter, ProtocolViolation } from './bytes.js';

export const StreamType = Object.freeze({ FETCH_HEADER: 0x05, SETUP: 0x2f00, PADDING: 0x132b3e28 });

/** Object Status (draft §10.2.1.1). */
export const ObjectStatus = Object.freeze({ NORMAL: 0x0, END_OF_GROUP: 0x3, END_OF_TRACK: 0x4 });

const DEFAULT_PRIORITY = 128;

/** True for a SUBGROUP_HEADER type: the form 0b0XX1XXXX with a valid Subgroup ID mode. */
export function isSubgroupType(type) {
  return typeof type === 'number' && type >= 0x10 && type <= 0x7f && (type & 0x10) !== 0 && (type & 0x06) !== 0x06;
}

/** The flags a SUBGROUP_HEADER type encodes (draft §10.4.2). */
export function subgroupFlags(type) {
  if (!isSubgroupType(type)) throw new ProtocolViolation(`not a subgroup header type: 0x${type.toString(16)}`);
  return {
    hasProperties: (type & 0x01) !== 0,
    subgroupIdMode: (type & 0x06) >> 1, // 0: zero, 1: first object's id, 2: explicit
    endOfGroup: (type & 0x08) !== 0,
    defaultPriority: (type & 0x20) !== 0,
    firstObject: (type & 0x40) !== 0,
  };
}

/** The SUBGROUP_HEADER type for the given flags. */
export function subgroupType({ hasProperties = false, subgroupIdMode = 0, endOfGroup = false, defaultPriority = false, firstObject = false }) {
  if (subgroupIdMode < 0 || subgroupIdMode > 2) throw new RangeError('subgroup id mode is 0, 1 or 2');
  return 0x10 | (hasProperties ? 1 : 0) | (subgroupIdMode << 1) | (endOfGroup ? 0x08 : 0) | (defaultPriority ? 0x20 : 0) | (firstObject ? 0x40 : 0);
}

/** Reads SUBGROUP_HEADER fields after its type. */
export function readSubgroupHeader(r, type) {
  const flags = subgroupFlags(type);
  const trackAlias = r.varint();
  const groupId = r.varint();
  // Mode 1's Subgroup ID is the first object's id, known once that object is read.
  const subgroupId = flags.subgroupIdMode === 2 ? r.varint() : flags.subgroupIdMode === 0 ? 0 : undefined;
  const priority = flags.defaultPriority ? DEFAULT_PRIORITY : r.u8();
  return { type, ...flags, trackAlias, groupId, subgroupId, priority };
}

/** Encodes a SUBGROUP_HEADER (for tests and vectors). */
export function encodeSubgroupHeader(h) {
  const type = h.type ?? subgroupType(h);
  const flags = subgroupFlags(type);
  const w = new ByteWriter().varint(type).varint(h.trackAlias).varint(h.groupId);
  if (flags.subgroupIdMode === 2) w.varint(h.subgroupId);
  if (!flags.defaultPriority) w.u8(h.priority);
  return w.finish();
}

/**
 * Reads one object of a subgroup stream (draft §10.4.2):
 * Object ID Delta, [Properties], Payload Length, [Status if length is 0], [Payload].
 * `prevObjectId` is the previous object's id on this stream, or undefined for the first.
 * Returns {objectId, objectIdDelta, properties, status, payload}.
 */
export function readSubgroupObject(r, header, prevObjectId) {
  const objectIdDelta = r.varint();
  const objectId = prevObjectId === undefined ? objectIdDelta : addIds(prevObjectId, objectIdDelta, 1);
  let properties;
  if (header.hasProperties) {
    const propsBytes = r.lengthPrefixed(0xffff, 'object properties');
    properties = propsBytes.slice();
  }
  const length = r.smallVarint('object payload length');
  let status = ObjectStatus.NORMAL;
  let payload = new Uint8Array(0);
  if (length === 0) {
    status = r.smallVarint('object status');
    if (![ObjectStatus.NORMAL, ObjectStatus.END_OF_GROUP, ObjectStatus.END_OF_TRACK].includes(status)) {
      throw new ProtocolViolation(`unknown object status ${status}`);
    }
    if (status !== ObjectStatus.NORMAL && properties && properties.length > 0) {
      throw new ProtocolViolation('properties on an object that is not Normal');
    }
  } else {
    payload = r.bytesN(length);
  }
  return { objectId, objectIdDelta, properties, status, payload };
}

/** Encodes one subgroup object (for tests and vectors). */
export function encodeSubgroupObject(header, { objectIdDelta, properties, status = ObjectStatus.NORMAL, payload = new Uint8Array(0) }) {
  const w = new ByteWriter().varint(objectIdDelta);
  if (header.hasProperties) w.lengthPrefixed(properties ?? new Uint8Array(0));
  w.varint(payload.length);
  if (payload.length === 0) w.varint(status);
  else w.bytes(payload);
  return w.finish();
}

/** FETCH_HEADER after its type: the Request ID of the FETCH. */
export function readFetchHeader(r) {
  return { requestId: r.varint() };
}

/**
 * Reads one object of a FETCH stream (draft §10.4.4). `prev` carries the previous
 * object's {groupId, subgroupId, objectId, priority} (undefined for the first).
 * Returns an object, or {endOfRange, groupId, objectId, known} for End of Range markers.
 */
export function readFetchObject(r, prev, descending = false) {
  const flags = r.varint();
  if (flags === 0x8c || flags === 0x10c) {
    const groupId = r.varint();
    const objectId = r.varint();
    return { endOfRange: true, known: flags === 0x8c, groupId, objectId, subgroupId: prev?.subgroupId, priority: prev?.priority };
  }
  if (typeof flags !== 'number' || flags >= 128) throw new ProtocolViolation(`bad fetch serialization flags ${flags}`);
  const needPrev = (what) => {
    if (!prev) throw new ProtocolViolation(`first fetch object refers to the prior object's ${what}`);
  };
  let groupId;
  if (flags & 0x08) {
    const delta = r.varint();
    if (!prev) groupId = delta;
    else groupId = descending ? subIds(prev.groupId, delta, 1) : addIds(prev.groupId, delta, 1);
  } else {
    needPrev('group');
    groupId = prev.groupId;
  }
  let subgroupId;
  if (flags & 0x40) subgroupId = undefined; // datagram
  else {
    switch (flags & 0x03) {
      case 0: subgroupId = 0; break;
      case 1: needPrev('subgroup'); subgroupId = prev.subgroupId; break;
      case 2: needPrev('subgroup'); subgroupId = addIds(prev.subgroupId, 1, 0); break;
      default: subgroupId = r.varint();
    }
  }
  let objectId;
  if (flags & 0x04) {
    const delta = r.varint();
    objectId = flags & 0x08 || !prev ? delta : addIds(prev.objectId, delta, 0);
  } else {
    needPrev('object');
    objectId = addIds(prev.objectId, 1, 0);
  }
  let priority;
  if (flags & 0x10) priority = r.u8();
  else {
    needPrev('priority');
    priority = prev.priority;
  }
  const properties = flags & 0x20 ? r.lengthPrefixed(0xffff, 'object properties').slice() : undefined;
  const length = r.smallVarint('object payload length');
  const payload = r.bytesN(length);
  return { groupId, subgroupId, objectId, priority, properties, payload };
}

function addIds(a, b, c) {
  if (typeof a === 'number' && typeof b === 'number' && a + b + c <= Number.MAX_SAFE_INTEGER) return a + b + c;
  const v = BigInt(a) + BigInt(b) + BigInt(c);
  if (v >= 1n << 64n) throw new ProtocolViolation('id overflow');
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function subIds(a, b, c) {
  const v = BigInt(a) - BigInt(b) - BigInt(c);
  if (v < 0n) throw new ProtocolViolation('group id below zero');
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
