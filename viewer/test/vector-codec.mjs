/**
 * Turns the entries of moqt-vectors.json into bytes with the viewer's encoders, and
 * decodes bytes back into the entries' shape. Shared by the unit tests and by
 * make-vectors.mjs, which fills in the `hex` fields when vector-inputs.json changes.
 */

import { ByteWriter, fromHex, toHex } from '../js/moqt/bytes.js';
import {
  decodeMessage, encodeFetch, encodeFilter, encodeGoaway, encodeSetup, encodeSubscribe, frame, MessageType, unframe,
  writeKeyValuePairs, writeParams,
} from '../js/moqt/messages.js';
import { encodeSubgroupHeader, encodeSubgroupObject, subgroupFlags } from '../js/moqt/data.js';

const loc = ([group, object]) => ({ group, object });

/** A vector's parameter list as the encoder takes it: [{type, value}]. */
export function paramsOf(list = []) {
  return list.map((p) => {
    if ('int' in p) return { type: p.type, value: p.int };
    if ('bytes' in p) return { type: p.type, value: fromHex(p.bytes) };
    if ('location' in p) return { type: p.type, value: loc(p.location) };
    if ('filter' in p) {
      const f = p.filter;
      return { type: p.type, value: encodeFilter({ type: f.type, start: f.start && loc(f.start), endGroupDelta: f.endGroupDelta }) };
    }
    throw new Error(`bad parameter in vector: ${JSON.stringify(p)}`);
  });
}

function kvps(w, list) {
  writeKeyValuePairs(w, list.map((p) => ({ type: p.type, value: 'int' in p ? p.int : fromHex(p.bytes) })));
}

/** Bytes of a control-message vector. */
export function encodeMessageVector(v) {
  switch (v.kind) {
    case 'setup':
      return encodeSetup(v.options.map((o) => ({ type: o.type, value: 'text' in o ? o.text : o.int })));
    case 'subscribe':
      return encodeSubscribe({ requestId: v.requestId, namespace: v.namespace, track: v.track, params: paramsOf(v.params) });
    case 'fetch':
      return encodeFetch({
        requestId: v.requestId, fetchType: v.fetchType, namespace: v.namespace, track: v.track,
        start: v.start && loc(v.start), end: v.end && loc(v.end),
        joiningRequestId: v.joiningRequestId, joiningStart: v.joiningStart, params: paramsOf(v.params),
      });
    case 'goaway':
      if (!v.draftOnly) return frame(MessageType.GOAWAY, new ByteWriter().string(v.uri).finish());
      return encodeGoaway({ uri: v.uri, timeout: v.timeout, requestId: v.requestId });
    // Responses are encoded here only to produce vectors: the viewer never sends them.
    case 'subscribe_ok': {
      const w = new ByteWriter().varint(v.trackAlias);
      paramsWriter(w, v.params);
      kvps(w, v.properties);
      return frame(MessageType.SUBSCRIBE_OK, w.finish());
    }
    case 'request_ok': {
      const w = new ByteWriter();
      paramsWriter(w, v.params);
      return frame(MessageType.REQUEST_OK, w.finish());
    }
    case 'request_error':
      return frame(MessageType.REQUEST_ERROR, new ByteWriter().varint(v.errorCode).varint(v.retryInterval).string(v.reason).finish());
    case 'publish_done':
      return frame(MessageType.PUBLISH_DONE, new ByteWriter().varint(v.statusCode).varint(BigInt(v.streamCount)).string(v.reason).finish());
    case 'fetch_ok': {
      const w = new ByteWriter().u8(v.endOfTrack ? 1 : 0).varint(v.endLocation[0]).varint(v.endLocation[1]);
      paramsWriter(w, v.params);
      kvps(w, v.properties);
      return frame(MessageType.FETCH_OK, w.finish());
    }
    default:
      throw new Error(`unknown vector kind ${v.kind}`);
  }
}

function paramsWriter(w, list) {
  writeParams(w, paramsOf(list));
}

/** Bytes of a subgroup-stream vector: header then objects. */
export function encodeSubgroupVector(v) {
  const header = { ...v.header, ...subgroupFlags(v.header.type) };
  const parts = [encodeSubgroupHeader(header)];
  for (const o of v.objects) {
    parts.push(encodeSubgroupObject(header, {
      objectIdDelta: o.objectIdDelta,
      properties: o.properties !== undefined ? fromHex(o.properties) : undefined,
      status: o.status ?? 0,
      payload: o.payload !== undefined ? fromHex(o.payload) : new Uint8Array(0),
    }));
  }
  const w = new ByteWriter();
  for (const p of parts) w.bytes(p);
  return w.finish();
}

export function encodeFetchHeaderVector(v) {
  return new ByteWriter().varint(0x05).varint(v.requestId).finish();
}

export { toHex, fromHex, decodeMessage, unframe };
