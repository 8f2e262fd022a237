/**
 * Framing of interaction request streams (docs/interaction.md §1.1, §1.2): a stream starts
 * with the five bytes E0 53 54 43 01 (the draft-18 varint 0x535443, "STC", then the
 * protocol version), then each direction is a sequence of frames, a draft-18 varint length
 * followed by that many bytes of one UTF-8 JSON object. A frame body longer than 8192
 * bytes is a protocol error, refused from its length alone.
 *
 * Pure functions over bytes.js readers and writers; `readFrame` throws ShortBuffer while
 * the frame is incomplete, so moqt/stream.js's StreamReader can retry it as bytes arrive.
 */

import { ByteReader, ByteWriter, ShortBuffer } from '../moqt/bytes.js';

/** The stream header: varint 0x535443 ("STC") and version 1. */
export const STREAM_HEADER = Object.freeze([0xe0, 0x53, 0x54, 0x43, 0x01]);
export const PROTOCOL_VERSION = 1;
/** The longest frame body (JSON bytes) either side accepts. */
export const MAX_FRAME_BYTES = 8192;

/** A frame that can never be valid: too large, not UTF-8, not a JSON object, cut short. */
export class FrameError extends Error {
  /** `reason`: 'too_large', 'invalid' or 'truncated'. */
  constructor(reason, message) {
    super(message);
    this.name = 'FrameError';
    this.reason = reason;
  }
}

const encoder = new TextEncoder();

/** One message as a frame (length, JSON). Throws FrameError('too_large') past 8192 bytes. */
export function encodeFrame(message) {
  const json = encoder.encode(JSON.stringify(message));
  if (json.length > MAX_FRAME_BYTES) {
    throw new FrameError('too_large', `frame of ${json.length} bytes is over the ${MAX_FRAME_BYTES}-byte limit`);
  }
  return new ByteWriter().varint(json.length).bytes(json).finish();
}

/** The stream header followed by the frame of `message` (the first write of a stream). */
export function encodeOpening(message) {
  const frame = encodeFrame(message);
  const out = new Uint8Array(STREAM_HEADER.length + frame.length);
  out.set(STREAM_HEADER);
  out.set(frame, STREAM_HEADER.length);
  return out;
}

/** Reads the five header bytes; true if they are the interaction header of version 1. */
export function readHeader(r) {
  const bytes = r.bytesN(STREAM_HEADER.length);
  return STREAM_HEADER.every((b, i) => bytes[i] === b);
}

/**
 * Reads one frame and parses its JSON object. Throws ShortBuffer until the whole frame is
 * there, FrameError('too_large') as soon as the length is read if it is over the limit,
 * FrameError('invalid') for a body that is not UTF-8 JSON of an object.
 */
export function readFrame(r) {
  const length = r.varint();
  if (typeof length === 'bigint' || length > MAX_FRAME_BYTES) {
    throw new FrameError('too_large', `frame of ${length} bytes is over the ${MAX_FRAME_BYTES}-byte limit`);
  }
  const body = r.bytesN(length);
  let value;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (err) {
    throw new FrameError('invalid', `frame is not UTF-8 JSON: ${err.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FrameError('invalid', 'frame is not a JSON object');
  }
  return value;
}

/**
 * Every frame of `bytes` (which may start with the stream header when `header` is true).
 * Throws FrameError('truncated') when the bytes end inside the header or a frame.
 */
export function decodeFrames(bytes, { header = false } = {}) {
  const r = new ByteReader(bytes);
  const messages = [];
  try {
    if (header && !readHeader(r)) throw new FrameError('invalid', 'not an interaction stream header');
    while (r.remaining > 0) messages.push(readFrame(r));
  } catch (err) {
    if (err instanceof ShortBuffer) throw new FrameError('truncated', 'bytes end inside a frame');
    throw err;
  }
  return messages;
}
