/**
 * Reads a WebTransport (WHATWG) ReadableStream of bytes with the pure decoders of
 * bytes.js, messages.js and data.js: bytes are buffered until a decoder stops asking for
 * more (ShortBuffer). Used for the control stream, request streams and data streams.
 */

import { ByteReader, ShortBuffer, ProtocolViolation } from './bytes.js';
import { decodeMessage } from './messages.js';

/** Upper bound of bytes buffered while waiting for one value (an object payload). */
const MAX_BUFFERED = 32 * 1024 * 1024;

export class StreamReader {
  constructor(readable) {
    this.reader = readable.getReader();
    this.buf = new Uint8Array(0);
    this.done = false;
  }

  /** Pulls one chunk; false at the end of the stream. */
  async fill() {
    if (this.done) return false;
    const { value, done } = await this.reader.read();
    if (done) {
      this.done = true;
      return false;
    }
    if (this.buf.length === 0) this.buf = value;
    else {
      if (this.buf.length + value.length > MAX_BUFFERED) throw new ProtocolViolation('value too large');
      const next = new Uint8Array(this.buf.length + value.length);
      next.set(this.buf);
      next.set(value, this.buf.length);
      this.buf = next;
    }
    return true;
  }

  /**
   * Runs `decode(byteReader)` over the buffered bytes, pulling more until it succeeds.
   * Resolves to its result, or to undefined when the stream ended cleanly before any byte
   * of the value; a stream that ends inside a value is a protocol violation.
   */
  async parse(decode) {
    for (;;) {
      if (this.buf.length > 0) {
        const r = new ByteReader(this.buf);
        try {
          const value = decode(r);
          // Values may keep views of this buffer: fill() never writes into it again.
          this.buf = this.buf.subarray(r.pos);
          return value;
        } catch (err) {
          if (!(err instanceof ShortBuffer)) throw err;
        }
      }
      const hadBytes = this.buf.length > 0;
      if (!(await this.fill())) {
        if (hadBytes) throw new ProtocolViolation('stream ended inside a value');
        return undefined;
      }
    }
  }

  /** Reads one framed control message and decodes it; undefined at a clean end. */
  async message() {
    const framed = await this.parse(readFrame);
    if (!framed) return undefined;
    return decodeMessage(framed.type, framed.payload);
  }

  async cancel(reason) {
    try {
      await this.reader.cancel(reason);
    } catch {
      // Already closed or reset: nothing to cancel.
    }
  }
}

/** Type (vi64), Length (16), Payload. */
function readFrame(r) {
  const type = r.smallVarint('message type');
  const length = r.u16();
  const payload = r.bytesN(length).slice();
  return { type, payload };
}
