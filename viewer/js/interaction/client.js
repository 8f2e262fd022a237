/**
 * The request side of the interaction protocol (docs/interaction.md §1): ONE reliable
 * bidirectional stream on the page's WebTransport session, the same session its MoQ
 * session uses. The stream opens with the header and a hello {broadcast, token}; the
 * origin answers welcome (or an error); then every request carries a fresh idempotency
 * key and is answered, in order, on the same stream.
 *
 * When the stream fails (the session dropped, a relay lost its origin, no answer in
 * time), the client opens a new one as soon as it can: on the same session after a short
 * backoff, or on the next session the player connects (`attach`). Requests not yet
 * answered are sent again on the new stream with the SAME key, so the origin applies each
 * at most once and answers a retry with its first answer.
 *
 * `request(body)` resolves with the answer, `{type: 'accepted', ...}` or
 * `{type: 'rejected', reason, ...}`; a request the client gives up on (too many failed
 * streams, or a hello refused for its token) resolves as rejected with `local: true`.
 *
 * Events: 'status' (detail {state, reason?, message?}: 'idle' no session yet,
 * 'connecting', 'open', 'retrying', 'refused' the hello was refused and the client waits
 * for another token, 'closed'), 'welcome' (detail: the welcome frame).
 */

import { StreamReader } from '../moqt/stream.js';
import { encodeFrame, encodeOpening, FrameError, readFrame } from './codec.js';

const WELCOME_TIMEOUT_MS = 10000;
const ANSWER_TIMEOUT_MS = 15000;
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 8000;
/** Streams a request may be sent on before the client gives up on it. */
const MAX_ATTEMPTS = 6;

/** The hello was answered with an error frame (reason not_authorized, unavailable, …). */
export class HelloRefused extends Error {
  constructor(frame) {
    super(frame.message || `hello refused: ${frame.reason}`);
    this.name = 'HelloRefused';
    this.reason = frame.reason;
  }
}

/** A fresh idempotency key (1 to 64 characters, unique per user). */
export function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

export class InteractionClient extends EventTarget {
  /**
   * `broadcast`: the broadcast path ("demo/live"); `token`: the JWT for the hello, or
   * undefined to connect without one (a viewer who may not send requests).
   */
  constructor({ broadcast, token, welcomeTimeoutMs = WELCOME_TIMEOUT_MS, answerTimeoutMs = ANSWER_TIMEOUT_MS, maxAttempts = MAX_ATTEMPTS } = {}) {
    super();
    this.broadcast = broadcast;
    this.token = token;
    this.welcomeTimeoutMs = welcomeTimeoutMs;
    this.answerTimeoutMs = answerTimeoutMs;
    this.maxAttempts = maxAttempts;
    this.transport = null; // the current WebTransport session
    this.transportClosed = true;
    this.pending = []; // unanswered requests, in the order made: {frame, resolve, attempts, sentOn, sentAt}
    this.stream = null; // {id, writer, reader, abort()} while open
    this.streams = 0;
    this.welcome = null;
    this.status = { state: 'idle' };
    this.closed = false;
    this.wake = new AbortController();
    this.loop = null;
  }

  setStatus(state, extra = {}) {
    this.status = { state, ...extra };
    this.dispatchEvent(new CustomEvent('status', { detail: this.status }));
  }

  /** A new WebTransport session to use (the player connected or reconnected). */
  attach(transport) {
    if (this.closed) return;
    this.transport = transport;
    this.transportClosed = false;
    transport.closed.then(
      () => this.transportGone(transport),
      () => this.transportGone(transport),
    );
    this.loop ??= this.run();
    this.poke();
  }

  transportGone(transport) {
    if (this.transport === transport) this.transportClosed = true;
    if (this.stream?.transport === transport) this.stream.abort('session closed');
  }

  /** Uses another token (a guest who joined): a new stream with a new hello. */
  setToken(token) {
    this.token = token;
    this.welcome = null;
    if (this.stream) this.stream.abort('new token');
    else this.poke();
  }

  /** Wakes the connection loop from a backoff or a wait for a session. */
  poke() {
    this.wake.abort();
    this.wake = new AbortController();
  }

  /**
   * Sends a request (`body` has its `type` and fields; the key is added). Resolves with
   * its answer. Throws FrameError('too_large') at once for a request over 8192 bytes.
   */
  request(body) {
    if (this.closed) return Promise.resolve({ type: 'rejected', reason: 'unavailable', message: 'the chat connection is closed', local: true });
    const frame = { ...body, key: body.key ?? newKey() };
    const bytes = encodeFrame(frame); // refuse an oversize request before it is queued
    return new Promise((resolve) => {
      const req = { frame, bytes, resolve, attempts: 0, sentOn: -1, sentAt: 0 };
      this.pending.push(req);
      if (this.stream?.ready) this.send(this.stream, req);
    });
  }

  send(stream, req) {
    req.sentOn = stream.id;
    req.sentAt = performance.now();
    req.attempts++;
    stream.writer.write(req.bytes).catch((err) => stream.abort(`write failed: ${err?.message ?? err}`));
  }

  /** Gives up on every unanswered request with `reason`. */
  failPending(reason, message) {
    const pending = this.pending;
    this.pending = [];
    for (const req of pending) req.resolve({ type: 'rejected', key: req.frame.key, reason, message, local: true });
  }

  close() {
    this.closed = true;
    this.stream?.abort('closed');
    this.failPending('unavailable', 'the chat connection is closed');
    this.poke();
    this.setStatus('closed');
  }

  async run() {
    let backoff = MIN_BACKOFF_MS;
    while (!this.closed) {
      if (!this.transport || this.transportClosed) {
        if (this.status.state !== 'refused') this.setStatus(this.transport ? 'retrying' : 'idle', { message: 'waiting for the connection' });
        await sleep(60000, this.wake.signal);
        continue;
      }
      if (this.status.state === 'refused' && this.status.token === this.token) {
        await sleep(60000, this.wake.signal); // the same token would be refused again
        continue;
      }
      let answered = false;
      try {
        answered = await this.serve(this.transport);
      } catch (err) {
        if (this.closed) return;
        if (err instanceof HelloRefused && err.reason === 'not_authorized') {
          this.failPending('not_authorized', err.message);
          this.setStatus('refused', { reason: err.reason, message: err.message, token: this.token });
          continue;
        }
        this.setStatus('retrying', { reason: err?.reason, message: String(err?.message ?? err) });
      }
      if (answered) backoff = MIN_BACKOFF_MS;
      if (this.closed) return;
      // Requests that failed on too many streams are given up: the origin never answered.
      const kept = [];
      for (const req of this.pending) {
        if (req.attempts >= this.maxAttempts) req.resolve({ type: 'rejected', key: req.frame.key, reason: 'unavailable', message: 'no answer from the server', local: true });
        else kept.push(req);
      }
      this.pending = kept;
      await sleep(backoff, this.wake.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /**
   * One stream: header and hello, welcome, then pending requests and answers until the
   * stream ends. Resolves true if any answer came (the stream worked); throws otherwise.
   */
  async serve(transport) {
    this.setStatus('connecting');
    const bidi = await transport.createBidirectionalStream();
    const writer = bidi.writable.getWriter();
    const reader = new StreamReader(bidi.readable);
    let failed;
    const failure = new Promise((resolve) => (failed = resolve));
    const stream = {
      id: ++this.streams,
      transport,
      writer,
      reader,
      ready: false,
      ended: false,
      abort: (why) => {
        if (stream.ended) return;
        stream.ended = true;
        failed(new Error(why));
        writer.abort(why).catch(() => {});
        reader.cancel(why);
      },
    };
    this.stream = stream;
    let answered = false;
    const watchdog = setInterval(() => {
      const oldest = this.pending.find((r) => r.sentOn === stream.id);
      if (oldest && performance.now() - oldest.sentAt > this.answerTimeoutMs) stream.abort('no answer in time');
    }, 1000);
    const next = (ms) => {
      const read = reader.parse(readFrame);
      const timers = [];
      const races = [read, failure.then((err) => Promise.reject(err))];
      if (ms) races.push(new Promise((_, reject) => timers.push(setTimeout(() => reject(new Error('no welcome in time')), ms))));
      return Promise.race(races).finally(() => timers.forEach(clearTimeout));
    };
    try {
      const hello = { type: 'hello', broadcast: this.broadcast };
      if (this.token) hello.token = this.token;
      await writer.write(encodeOpening(hello));
      const welcome = await next(this.welcomeTimeoutMs);
      if (!welcome) throw new Error('the stream ended before the welcome');
      if (welcome.type === 'error') throw new HelloRefused(welcome);
      if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${welcome.type}`);
      this.welcome = welcome;
      stream.ready = true;
      this.setStatus('open');
      this.dispatchEvent(new CustomEvent('welcome', { detail: welcome }));
      for (const req of this.pending) if (req.sentOn !== stream.id) this.send(stream, req);
      for (;;) {
        const msg = await next();
        if (!msg) throw new Error('the server ended the stream');
        if (msg.type === 'error') throw Object.assign(new Error(msg.message || `stream error: ${msg.reason}`), { reason: msg.reason });
        if (msg.type !== 'accepted' && msg.type !== 'rejected') continue; // from a later version
        // Answers come in order; the key says which request each is for.
        const i = this.pending.findIndex((r) => r.frame.key === msg.key);
        if (i < 0) continue;
        const [req] = this.pending.splice(i, 1);
        answered = true;
        if (typeof msg.balance === 'number' && this.welcome) this.welcome = { ...this.welcome, balance: msg.balance };
        req.resolve(msg);
      }
    } catch (err) {
      if (answered && !(err instanceof HelloRefused)) return true;
      throw err instanceof FrameError ? Object.assign(new Error(`bad frame from the server: ${err.message}`), { reason: err.reason }) : err;
    } finally {
      clearInterval(watchdog);
      stream.abort('done');
      if (this.stream === stream) this.stream = null;
    }
  }
}
