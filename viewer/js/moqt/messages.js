/**
 * MoQ Transport draft-18 control messages the subscriber side needs: their type codes,
 * encoders for what a subscriber sends (SETUP, SUBSCRIBE, FETCH, GOAWAY) and decoders for
 * what it receives (SETUP, SUBSCRIBE_OK, REQUEST_OK, REQUEST_ERROR, PUBLISH_DONE,
 * FETCH_OK, GOAWAY). Pure functions over bytes; streams are handled in session.js.
 *
 * Framing (draft §9): Type (vi64), Length (16 bits), Payload. Requests travel on their
 * own bidirectional stream and carry a Request ID; responses on that stream do not
 * (draft §9.1: "response messages do not [include a Request ID], since they are sent on
 * the same bidirectional stream as the request").
 */

import { ByteReader, ByteWriter, ProtocolViolation } from './bytes.js';

export const MessageType = Object.freeze({
  REQUEST_UPDATE: 0x2,
  SUBSCRIBE: 0x3,
  SUBSCRIBE_OK: 0x4,
  REQUEST_ERROR: 0x5,
  PUBLISH_NAMESPACE: 0x6,
  REQUEST_OK: 0x7,
  PUBLISH_DONE: 0xb,
  TRACK_STATUS: 0xd,
  GOAWAY: 0x10,
  FETCH: 0x16,
  FETCH_OK: 0x18,
  PUBLISH: 0x1d,
  SETUP: 0x2f00,
});

/** Setup Options (draft §9.4.1); they are Key-Value-Pairs, even type = varint value. */
export const SetupOption = Object.freeze({
  PATH: 0x01,
  AUTHORIZATION_TOKEN: 0x03,
  MAX_AUTH_TOKEN_CACHE_SIZE: 0x04,
  AUTHORITY: 0x05,
  MOQT_IMPLEMENTATION: 0x07,
});

/** Message Parameters (draft §9.2) with the encoding each one's definition gives. */
export const Param = Object.freeze({
  OBJECT_DELIVERY_TIMEOUT: 0x02,
  AUTHORIZATION_TOKEN: 0x03,
  RENDEZVOUS_TIMEOUT: 0x04,
  SUBGROUP_DELIVERY_TIMEOUT: 0x06,
  EXPIRES: 0x08,
  LARGEST_OBJECT: 0x09,
  FILL_TIMEOUT: 0x0a,
  FORWARD: 0x10,
  SUBSCRIBER_PRIORITY: 0x20,
  SUBSCRIPTION_FILTER: 0x21,
  GROUP_ORDER: 0x22,
  NEW_GROUP_REQUEST: 0x32,
});

const U8_PARAMS = new Set([Param.FORWARD, Param.SUBSCRIBER_PRIORITY, Param.GROUP_ORDER]);
const LOCATION_PARAMS = new Set([Param.LARGEST_OBJECT]);

export const FilterType = Object.freeze({
  NEXT_GROUP_START: 0x1,
  LARGEST_OBJECT: 0x2,
  ABSOLUTE_START: 0x3,
  ABSOLUTE_RANGE: 0x4,
});

export const FetchType = Object.freeze({ STANDALONE: 0x1, RELATIVE_JOINING: 0x2, ABSOLUTE_JOINING: 0x3 });

/** REQUEST_ERROR codes (draft §9.7) a viewer reacts to. */
export const RequestErrorCode = Object.freeze({
  INTERNAL_ERROR: 0x0,
  UNAUTHORIZED: 0x1,
  TIMEOUT: 0x2,
  NOT_SUPPORTED: 0x3,
  MALFORMED_AUTH_TOKEN: 0x4,
  EXPIRED_AUTH_TOKEN: 0x5,
  GOING_AWAY: 0x6,
  EXCESSIVE_LOAD: 0x9,
  DOES_NOT_EXIST: 0x10,
  INVALID_RANGE: 0x11,
  MALFORMED_TRACK: 0x12,
  INVALID_JOINING_REQUEST_ID: 0x32,
  REDIRECT: 0x34,
});

/**
 * Session termination codes (draft "Termination", {#session-termination}) a viewer reacts to: the
 * close code of a WebTransport session the server closed because of its access token.
 */
export const SessionCloseCode = Object.freeze({
  NO_ERROR: 0x0,
  UNAUTHORIZED: 0x2,
  MALFORMED_AUTH_TOKEN: 0x16,
  EXPIRED_AUTH_TOKEN: 0x18,
});

/** PUBLISH_DONE status codes (draft §9.12). */
export const PublishDoneCode = Object.freeze({
  INTERNAL_ERROR: 0x0,
  UNAUTHORIZED: 0x1,
  TRACK_ENDED: 0x2,
  SUBSCRIPTION_ENDED: 0x3,
  GOING_AWAY: 0x4,
  TOO_FAR_BEHIND: 0x5,
  EXPIRED: 0x6,
});

const MAX_REASON = 1024;
const MAX_URI = 8192;
const MAX_MESSAGE = 0xffff;

/** Frames a payload: Type (vi64), Length (16), Payload. */
export function frame(type, payload) {
  if (payload.length > MAX_MESSAGE) throw new RangeError(`control message too long: ${payload.length}`);
  return new ByteWriter().varint(type).u16(payload.length).bytes(payload).finish();
}

/** Splits one framed message off `bytes`: {type, payload, size}; throws ShortBuffer. */
export function unframe(bytes) {
  const r = new ByteReader(bytes);
  const type = r.smallVarint('message type');
  const length = r.u16();
  const payload = r.bytesN(length);
  return { type, payload, size: r.pos };
}

// ---- Key-Value-Pairs and parameters -------------------------------------------------

/**
 * Writes Key-Value-Pairs (draft §1.4.3): delta-encoded types in ascending order; even type
 * = varint value, odd type = length-prefixed bytes. `pairs` is [{type, value}].
 */
export function writeKeyValuePairs(w, pairs) {
  let prev = 0;
  for (const { type, value } of [...pairs].sort((a, b) => a.type - b.type)) {
    w.varint(type - prev);
    prev = type;
    if (type % 2 === 0) w.varint(value);
    else w.lengthPrefixed(value);
  }
}

function readKeyValuePair(r, prev) {
  const type = prev + r.smallVarint('key-value type delta');
  const value = type % 2 === 0 ? r.varint() : r.lengthPrefixed(0xffff, 'key-value value').slice();
  return { type, value };
}

/** Message parameters: a count, then delta-typed values encoded as each type defines. */
export function writeParams(w, params = []) {
  const sorted = [...params].sort((a, b) => a.type - b.type);
  w.varint(sorted.length);
  let prev = 0;
  for (const { type, value } of sorted) {
    w.varint(type - prev);
    prev = type;
    if (U8_PARAMS.has(type)) w.u8(value);
    else if (LOCATION_PARAMS.has(type)) w.varint(value.group).varint(value.object);
    else if (type % 2 === 0) w.varint(value);
    else w.lengthPrefixed(value);
  }
}

function readParams(r) {
  const count = r.smallVarint('parameter count');
  const params = [];
  let prev = 0;
  for (let i = 0; i < count; i++) {
    const type = prev + r.smallVarint('parameter type delta');
    prev = type;
    let value;
    if (U8_PARAMS.has(type)) value = r.u8();
    else if (LOCATION_PARAMS.has(type)) value = { group: r.varint(), object: r.varint() };
    else if (type % 2 === 0) value = r.varint();
    else value = r.lengthPrefixed(0xffff, 'parameter').slice();
    params.push({ type, value });
  }
  return params;
}

/** Track properties: Key-Value-Pairs filling the rest of the message. */
function readProperties(r) {
  const props = [];
  let prev = 0;
  while (r.remaining > 0) {
    const pair = readKeyValuePair(r, prev);
    prev = pair.type;
    props.push(pair);
  }
  return props;
}

/** Encodes a Subscription Filter (draft §5.1.2) for the SUBSCRIPTION_FILTER parameter. */
export function encodeFilter({ type, start, endGroupDelta }) {
  const w = new ByteWriter().varint(type);
  if (type === FilterType.ABSOLUTE_START || type === FilterType.ABSOLUTE_RANGE) {
    w.varint(start.group).varint(start.object);
  }
  if (type === FilterType.ABSOLUTE_RANGE) w.varint(endGroupDelta);
  return w.finish();
}

// ---- Names -------------------------------------------------------------------------

/** Track Namespace: a count of fields, each length-prefixed bytes (draft §2.4). */
function writeNamespace(w, fields) {
  if (fields.length < 1 || fields.length > 32) throw new RangeError('a namespace has 1 to 32 fields');
  w.varint(fields.length);
  for (const field of fields) w.lengthPrefixed(asBytes(field));
}

function asBytes(v) {
  return typeof v === 'string' ? new TextEncoder().encode(v) : v;
}

// ---- Messages a subscriber sends ---------------------------------------------------

/** SETUP (draft §9.4): Setup Options span the whole payload (no count). */
export function encodeSetup(options = []) {
  const w = new ByteWriter();
  writeKeyValuePairs(w, options.map(({ type, value }) => ({ type, value: type % 2 ? asBytes(value) : value })));
  return frame(MessageType.SETUP, w.finish());
}

/** SUBSCRIBE (draft §9.9): Request ID, Track Namespace, Track Name, Parameters. */
export function encodeSubscribe({ requestId, namespace, track, params = [] }) {
  const w = new ByteWriter().varint(requestId);
  writeNamespace(w, namespace);
  w.lengthPrefixed(asBytes(track));
  writeParams(w, params);
  return frame(MessageType.SUBSCRIBE, w.finish());
}

/**
 * FETCH (draft §9.13). Standalone: {namespace, track, start, end}; joining (relative or
 * absolute): {joiningRequestId, joiningStart}.
 */
export function encodeFetch({ requestId, fetchType, namespace, track, start, end, joiningRequestId, joiningStart, params = [] }) {
  const w = new ByteWriter().varint(requestId).varint(fetchType);
  if (fetchType === FetchType.STANDALONE) {
    writeNamespace(w, namespace);
    w.lengthPrefixed(asBytes(track));
    w.varint(start.group).varint(start.object).varint(end.group).varint(end.object);
  } else {
    w.varint(joiningRequestId).varint(joiningStart);
  }
  writeParams(w, params);
  return frame(MessageType.FETCH, w.finish());
}

/** GOAWAY (draft §9.5) as the draft frames it: URI, Timeout, [Request ID on control]. */
export function encodeGoaway({ uri = '', timeout = 0, requestId }) {
  const w = new ByteWriter().string(uri).varint(timeout);
  if (requestId !== undefined) w.varint(requestId);
  return frame(MessageType.GOAWAY, w.finish());
}

// ---- Messages a subscriber receives ------------------------------------------------

/** Decodes one message payload by type into a plain object {type, name, ...fields}. */
export function decodeMessage(type, payload) {
  const r = new ByteReader(payload);
  let msg;
  switch (type) {
    case MessageType.SETUP: {
      const options = [];
      let prev = 0;
      while (r.remaining > 0) {
        const pair = readKeyValuePair(r, prev);
        prev = pair.type;
        options.push(pair);
      }
      msg = { name: 'SETUP', options };
      break;
    }
    case MessageType.SUBSCRIBE_OK: {
      const trackAlias = r.varint();
      const params = readParams(r);
      msg = { name: 'SUBSCRIBE_OK', trackAlias, params, properties: readProperties(r) };
      break;
    }
    case MessageType.REQUEST_OK: {
      const params = readParams(r);
      msg = { name: 'REQUEST_OK', params, properties: readProperties(r) };
      break;
    }
    case MessageType.REQUEST_ERROR: {
      const errorCode = r.varint();
      const retryInterval = r.varint();
      const reason = r.string(MAX_REASON, 'reason phrase');
      msg = { name: 'REQUEST_ERROR', errorCode, retryInterval, reason };
      if (errorCode === RequestErrorCode.REDIRECT && r.remaining > 0) {
        const uri = r.string(MAX_URI, 'redirect URI');
        const n = r.smallVarint('namespace fields');
        const namespace = [];
        for (let i = 0; i < n; i++) namespace.push(r.string(4096, 'namespace field'));
        msg.redirect = { uri, namespace, track: r.string(4096, 'track name') };
      }
      break;
    }
    case MessageType.PUBLISH_DONE: {
      const statusCode = r.varint();
      const streamCount = r.varint();
      const reason = r.string(MAX_REASON, 'reason phrase');
      msg = { name: 'PUBLISH_DONE', statusCode, streamCount, reason };
      break;
    }
    case MessageType.FETCH_OK: {
      const endOfTrack = r.u8();
      if (endOfTrack > 1) throw new ProtocolViolation(`End Of Track must be 0 or 1: ${endOfTrack}`);
      const endLocation = { group: r.varint(), object: r.varint() };
      const params = readParams(r);
      msg = { name: 'FETCH_OK', endOfTrack: endOfTrack === 1, endLocation, params, properties: readProperties(r) };
      break;
    }
    case MessageType.GOAWAY: {
      const uri = r.string(MAX_URI, 'new session URI');
      // moq-transport 0.17 sends the URI only (its GoAway has no Timeout or Request ID);
      // the draft adds both. Accept either: absent fields read as "no timeout, unknown".
      const timeout = r.remaining > 0 ? r.varint() : 0;
      const requestId = r.remaining > 0 ? r.varint() : undefined;
      msg = { name: 'GOAWAY', uri, timeout, requestId };
      break;
    }
    default:
      throw new ProtocolViolation(`unexpected control message type 0x${type.toString(16)}`);
  }
  if (r.remaining !== 0) throw new ProtocolViolation(`${msg.name}: ${r.remaining} byte(s) after the message`);
  return { type, ...msg };
}

/** The value of parameter `type` in a decoded message's params, or undefined. */
export function paramValue(params, type) {
  return params.find((p) => p.type === type)?.value;
}
