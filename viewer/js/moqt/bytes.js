/**
 * Byte-level codec for MoQ Transport draft-18: the variable-length integer (§1.4.1 of the
 * draft: the count of leading 1 bits of the first byte gives the length, 1 to 9 bytes,
 * so every 64-bit value fits), and a reader and a writer over byte arrays.
 *
 * Values up to Number.MAX_SAFE_INTEGER are JavaScript numbers; larger ones (which MoQ
 * allows, up to 2^64 - 1) are BigInts, so nothing is silently rounded. Group ids here are
 * wall-clock milliseconds (about 2^41): numbers.
 */

/** Thrown when a buffer ends before the value being read: more bytes may still come. */
export class ShortBuffer extends Error {
  constructor(needed) {
    super(`need ${needed} more byte(s)`);
    this.name = 'ShortBuffer';
    this.needed = needed;
  }
}

/** Thrown for bytes that can never be valid (a protocol violation by the peer). */
export class ProtocolViolation extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

const MAX_U64 = (1n << 64n) - 1n;

/** Length in bytes of the shortest encoding of `value` (a number or BigInt). */
export function varintLength(value) {
  const v = BigInt(value);
  if (v < 0n || v > MAX_U64) throw new RangeError(`varint out of range: ${value}`);
  // Lengths 1..8 carry 7*n usable bits (the prefix takes n bits of the n bytes); 9 carries 64.
  for (let n = 1; n <= 8; n++) {
    if (v < 1n << BigInt(7 * n)) return n;
  }
  return 9;
}

function toNumberIfSafe(v) {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Appends bytes to a growing buffer. */
export class ByteWriter {
  constructor() {
    this.buf = new Uint8Array(64);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(value) {
    if (!Number.isInteger(value) || value < 0 || value > 255) throw new RangeError(`not a byte: ${value}`);
    this.reserve(1);
    this.buf[this.len++] = value;
    return this;
  }

  u16(value) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new RangeError(`not a u16: ${value}`);
    this.reserve(2);
    this.buf[this.len++] = value >> 8;
    this.buf[this.len++] = value & 0xff;
    return this;
  }

  /** The shortest encoding of `value`, as both the draft's examples and moq-transport do. */
  varint(value) {
    const n = varintLength(value);
    let v = BigInt(value);
    this.reserve(n);
    const start = this.len;
    if (n === 9) {
      this.buf[start] = 0xff;
      for (let i = 8; i >= 1; i--) {
        this.buf[start + i] = Number(v & 0xffn);
        v >>= 8n;
      }
    } else {
      for (let i = n - 1; i >= 0; i--) {
        this.buf[start + i] = Number(v & 0xffn);
        v >>= 8n;
      }
      // n-1 leading ones then a zero: 0b0, 0b10, 0b110, ...
      const prefix = (0xff << (9 - n)) & 0xff;
      this.buf[start] |= prefix;
    }
    this.len += n;
    return this;
  }

  bytes(array) {
    this.reserve(array.length);
    this.buf.set(array, this.len);
    this.len += array.length;
    return this;
  }

  /** Length-prefixed bytes (varint length). */
  lengthPrefixed(array) {
    return this.varint(array.length).bytes(array);
  }

  /** Length-prefixed UTF-8 text. */
  string(text) {
    return this.lengthPrefixed(new TextEncoder().encode(text));
  }

  finish() {
    return this.buf.slice(0, this.len);
  }
}

/** Reads values from a byte array; throws ShortBuffer when the array ends too soon. */
export class ByteReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.pos = 0;
  }

  get remaining() {
    return this.bytes.length - this.pos;
  }

  need(n) {
    if (this.remaining < n) throw new ShortBuffer(n - this.remaining);
  }

  u8() {
    this.need(1);
    return this.bytes[this.pos++];
  }

  u16() {
    this.need(2);
    const v = (this.bytes[this.pos] << 8) | this.bytes[this.pos + 1];
    this.pos += 2;
    return v;
  }

  varint() {
    this.need(1);
    const first = this.bytes[this.pos];
    let n = 1;
    while (n < 9 && first & (0x80 >> (n - 1))) n++;
    this.need(n);
    let v;
    if (n === 9) {
      v = 0n;
    } else {
      v = BigInt(first & (0xff >> n));
    }
    for (let i = 1; i < n; i++) v = (v << 8n) | BigInt(this.bytes[this.pos + i]);
    this.pos += n;
    return toNumberIfSafe(v);
  }

  /** A varint that must fit a JavaScript number (lengths, counts, types). */
  smallVarint(what) {
    const v = this.varint();
    if (typeof v === 'bigint') throw new ProtocolViolation(`${what} too large: ${v}`);
    return v;
  }

  bytesN(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  lengthPrefixed(max, what) {
    const n = this.smallVarint(`${what} length`);
    if (n > max) throw new ProtocolViolation(`${what} longer than ${max} bytes: ${n}`);
    return this.bytesN(n);
  }

  string(max, what) {
    return new TextDecoder('utf-8', { fatal: false }).decode(this.lengthPrefixed(max, what));
  }

  rest() {
    return this.bytesN(this.remaining);
  }
}

/** Hex (lower case) of a byte array; for tests, logs and certificate fingerprints. */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Bytes of a hex string (spaces and colons ignored). */
export function fromHex(hex) {
  const clean = hex.replace(/[\s:]/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`not hex: ${hex}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}
