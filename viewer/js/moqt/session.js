/**
 * A MoQ Transport draft-18 subscriber session over WebTransport (browser API).
 *
 * Life of a session: `MoqtSession.connect()` opens the WebTransport session (offering
 * `moqt-18` through WT-Available-Protocols), opens our control stream with SETUP, and
 * waits for the server's SETUP on the control stream it opens. `subscribe()` opens one
 * bidirectional request stream per SUBSCRIBE; its answer (SUBSCRIBE_OK or REQUEST_ERROR)
 * and its end (PUBLISH_DONE) arrive on that stream. Objects arrive on unidirectional
 * subgroup streams naming the track by the alias SUBSCRIBE_OK gave; they are handed to
 * the subscription's `onObject` as each completes. GOAWAY and the end of the
 * WebTransport session are reported through `onGoaway` and `closed`.
 *
 * A server that refuses the session's access token (the `?jwt=` of the URL) closes the
 * WebTransport session with a termination code (UNAUTHORIZED, MALFORMED_AUTH_TOKEN,
 * EXPIRED_AUTH_TOKEN); requests in flight then fail with stream errors a moment before
 * the close arrives. `connect()` and `reasonFor()` turn such failures into a
 * `SessionClosed` error carrying the server's code.
 */

import { ProtocolViolation, fromHex } from './bytes.js';
import { decodeMessage, encodeFetch, encodeSetup, encodeSubscribe, FetchType, MessageType, SetupOption } from './messages.js';
import { isSubgroupType, readFetchHeader, readFetchObject, readSubgroupHeader, readSubgroupObject, StreamType } from './data.js';
import { StreamReader } from './stream.js';

export const ALPN = 'moqt-18';
const IMPLEMENTATION = 'stagecast-viewer/0.1';
/** How long a data stream may wait for the SUBSCRIBE_OK that names its track alias. */
const ALIAS_WAIT_MS = 2000;
/** How long to wait for the server's SETUP. */
const SETUP_TIMEOUT_MS = 5000;

/** How long a failed request waits for the session close that may explain it. */
const CLOSE_WAIT_MS = 1000;

/** A request refused by the peer (REQUEST_ERROR), with its code and reason. */
export class RequestError extends Error {
  constructor(msg) {
    super(msg.reason || `request refused (code 0x${msg.errorCode.toString(16)})`);
    this.name = 'RequestError';
    this.code = msg.errorCode;
    this.retryInterval = msg.retryInterval;
    this.redirect = msg.redirect;
  }
}

/** The server closed the session, with a session termination code and reason. */
export class SessionClosed extends Error {
  constructor({ closeCode = 0, reason = '' } = {}) {
    super(reason || `the server closed the session (code 0x${closeCode.toString(16)})`);
    this.name = 'SessionClosed';
    this.code = closeCode;
    this.reason = reason;
  }
}

/** How long connecting (WebTransport handshake, then MoQ SETUP) may take. */
const CONNECT_TIMEOUT_MS = 8000;

/** Resolves like `promise`, or rejects with `onTimeout()` after `ms`. */
function withTimeout(promise, ms, onTimeout) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class MoqtSession {
  /**
   * Connects to `url` (https://host:port[/path]). `fingerprint` (hex SHA-256 of the
   * server's DER certificate) pins a development certificate; without it the browser's
   * usual certificate checks apply.
   */
  static async connect(url, { fingerprint } = {}) {
    if (typeof WebTransport === 'undefined') throw new Error('this browser has no WebTransport');
    const options = { protocols: [ALPN], congestionControl: 'low-latency' };
    if (fingerprint) options.serverCertificateHashes = [{ algorithm: 'sha-256', value: fromHex(fingerprint) }];
    const wt = new WebTransport(url, options);
    wt.closed.catch(() => {});
    // A handshake that never completes (lost packets, a server that is not there yet)
    // would otherwise leave the caller waiting forever instead of retrying.
    await withTimeout(wt.ready, CONNECT_TIMEOUT_MS, () => {
      try {
        wt.close({ closeCode: 0, reason: 'connect timed out' });
      } catch {
        // already closed
      }
      return new Error(`no answer from ${url} within ${CONNECT_TIMEOUT_MS / 1000} s`);
    });
    // A browser that knows the option reports the server's choice; older ones leave it ''.
    if (wt.protocol && wt.protocol !== ALPN) {
      wt.close({ closeCode: 0, reason: 'unsupported MoQT version' });
      throw new Error(`server chose protocol ${wt.protocol}, not ${ALPN}`);
    }
    const session = new MoqtSession(wt, url);
    try {
      await withTimeout(session.setup(), CONNECT_TIMEOUT_MS, () => new Error(`no MoQ SETUP from ${url}`));
    } catch (err) {
      const why = await session.reasonFor(err);
      session.close(0, 'setup failed');
      throw why;
    }
    return session;
  }

  constructor(wt, url) {
    this.wt = wt;
    this.url = url;
    this.nextRequestId = 0; // client request ids: even, from 0 (draft §9.1)
    this.byRequest = new Map(); // request id -> Subscription (or fetch)
    this.byAlias = new Map(); // track alias -> Subscription
    this.aliasWaiters = new Map(); // track alias -> [resolve]
    this.onGoaway = null;
    this.goaway = null;
    this.serverSetup = null;
    this.closedByUs = false;
    this.peerClose = undefined; // {closeCode, reason} once the server has closed the session
    this.closed = wt.closed.then(
      (info) => {
        const close = { clean: true, closeCode: info?.closeCode ?? 0, reason: info?.reason ?? '' };
        if (!this.closedByUs) this.peerClose = close;
        return close;
      },
      (err) => ({ clean: false, reason: String(err?.message ?? err) }),
    );
  }

  /**
   * What made a request or the setup fail with `err`: if the server closes the session
   * (within `ms`), a SessionClosed with its code; else `err` itself.
   */
  async reasonFor(err, ms = CLOSE_WAIT_MS) {
    if (err instanceof RequestError || err instanceof SessionClosed) return err;
    if (!this.peerClose && !this.closedByUs) {
      let timer;
      await Promise.race([this.closed, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
      clearTimeout(timer);
    }
    return this.peerClose ? new SessionClosed(this.peerClose) : err;
  }

  async setup() {
    const control = await this.wt.createUnidirectionalStream();
    this.controlWriter = control.getWriter();
    await this.controlWriter.write(
      encodeSetup([{ type: SetupOption.MOQT_IMPLEMENTATION, value: IMPLEMENTATION }]),
    );
    let gotSetup;
    const setupSeen = new Promise((resolve, reject) => {
      gotSetup = { resolve, reject };
    });
    this.acceptStreams(gotSetup).catch((err) => gotSetup.reject(err));
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('the server sent no SETUP')), SETUP_TIMEOUT_MS);
    });
    try {
      const closed = this.closed.then((c) => Promise.reject(c.clean && !this.closedByUs ? new SessionClosed(c) : new Error(`closed during setup: ${c.reason}`)));
      this.serverSetup = await Promise.race([setupSeen, timeout, closed]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Dispatches every unidirectional stream the server opens by its type. */
  async acceptStreams(gotSetup) {
    const incoming = this.wt.incomingUnidirectionalStreams.getReader();
    for (;;) {
      let next;
      try {
        next = await incoming.read();
      } catch {
        return; // session closed
      }
      if (next.done) return;
      this.handleStream(next.value, gotSetup).catch((err) => {
        if (err instanceof ProtocolViolation) this.close(0x3, err.message);
      });
    }
  }

  async handleStream(readable, gotSetup) {
    const sr = new StreamReader(readable);
    let type;
    try {
      type = await sr.parse((r) => r.smallVarint('stream type'));
    } catch {
      return; // reset before its type: nothing to do
    }
    if (type === undefined) return;
    if (type === StreamType.SETUP) return this.readControl(sr, gotSetup);
    if (isSubgroupType(type)) return this.readSubgroup(sr, type);
    if (type === StreamType.FETCH_HEADER) return this.readFetch(sr);
    if (type === StreamType.PADDING) return sr.cancel();
    throw new ProtocolViolation(`unknown stream type 0x${type.toString(16)}`);
  }

  async readControl(sr, gotSetup) {
    const payload = await sr.parse((r) => r.bytesN(r.u16()).slice());
    if (payload === undefined) throw new ProtocolViolation('control stream ended before SETUP');
    gotSetup.resolve(decodeMessage(MessageType.SETUP, payload));
    for (;;) {
      let msg;
      try {
        msg = await sr.message();
      } catch (err) {
        if (err instanceof ProtocolViolation) throw err;
        return; // session closing
      }
      if (!msg) return;
      if (msg.type === MessageType.GOAWAY) {
        if (this.goaway) throw new ProtocolViolation('second GOAWAY');
        this.goaway = msg;
        this.onGoaway?.(msg);
      } else {
        throw new ProtocolViolation(`unexpected ${msg.name} on the control stream`);
      }
    }
  }

  async subgroupTarget(alias) {
    const sub = this.byAlias.get(alias);
    if (sub) return sub;
    // Objects may beat SUBSCRIBE_OK (draft §10.1): wait a little for the alias.
    return new Promise((resolve) => {
      const list = this.aliasWaiters.get(alias) ?? [];
      list.push(resolve);
      this.aliasWaiters.set(alias, list);
      setTimeout(() => resolve(this.byAlias.get(alias)), ALIAS_WAIT_MS);
    });
  }

  async readSubgroup(sr, type) {
    const header = await sr.parse((r) => readSubgroupHeader(r, type));
    if (!header) throw new ProtocolViolation('subgroup stream ended inside its header');
    const sub = await this.subgroupTarget(header.trackAlias);
    if (!sub || sub.ended) return sr.cancel();
    sub.streams++;
    let prev;
    try {
      for (;;) {
        const obj = await sr.parse((r) => readSubgroupObject(r, header, prev));
        if (!obj) break;
        if (prev === undefined && header.subgroupId === undefined) header.subgroupId = obj.objectId;
        prev = obj.objectId;
        sub.deliver({ groupId: header.groupId, subgroupId: header.subgroupId, ...obj, arrival: performance.now() });
      }
      sub.groupEnded(header.groupId, true);
    } catch (err) {
      if (err instanceof ProtocolViolation) throw err;
      sub.groupEnded(header.groupId, false); // reset by the publisher (e.g. a delivery timeout)
    }
  }

  async readFetch(sr) {
    const header = await sr.parse(readFetchHeader);
    if (!header) return;
    const fetch = this.byRequest.get(header.requestId);
    if (!fetch || fetch.ended) return sr.cancel();
    // When the response began to arrive: a probe's throughput is measured from here.
    fetch.firstByteAt ??= performance.now();
    let prev;
    try {
      for (;;) {
        const obj = await sr.parse((r) => readFetchObject(r, prev));
        if (!obj) break;
        prev = obj;
        if (!obj.endOfRange) fetch.deliver({ ...obj, status: 0, arrival: performance.now() });
      }
      fetch.groupEnded(prev?.groupId, true);
    } catch (err) {
      if (err instanceof ProtocolViolation) throw err;
    }
  }

  takeRequestId() {
    const id = this.nextRequestId;
    this.nextRequestId += 2;
    return id;
  }

  /**
   * Subscribes to `track` of `namespace` (array of strings). Resolves once SUBSCRIBE_OK
   * arrives (rejects with RequestError on REQUEST_ERROR). `onObject(obj)` receives every
   * object; `onDone(msg)` the PUBLISH_DONE or the stream's end.
   */
  async subscribe(namespace, track, { params = [], onObject, onGroupEnd, onDone } = {}) {
    if (this.goaway) throw new Error('the server is going away');
    const requestId = this.takeRequestId();
    const sub = new Subscription(this, requestId, namespace, track, { onObject, onGroupEnd, onDone });
    this.byRequest.set(requestId, sub);
    await sub.open(encodeSubscribe({ requestId, namespace, track, params }));
    const answer = await sub.answer();
    if (answer.type !== MessageType.SUBSCRIBE_OK) throw new ProtocolViolation(`${answer.name} in answer to SUBSCRIBE`);
    sub.trackAlias = answer.trackAlias;
    sub.ok = answer;
    this.byAlias.set(answer.trackAlias, sub);
    for (const resolve of this.aliasWaiters.get(answer.trackAlias) ?? []) resolve(sub);
    this.aliasWaiters.delete(answer.trackAlias);
    sub.watchEnd();
    return sub;
  }

  /**
   * A joining FETCH (draft §9.13.2) for the `groups` groups before `sub`'s joining point.
   * Resolves to the FETCH_OK; objects go to `onObject`. Rejects with RequestError (for
   * example NOT_SUPPORTED) when the publisher does not serve it.
   */
  async joiningFetch(sub, groups, { onObject } = {}) {
    const requestId = this.takeRequestId();
    const fetch = new Subscription(this, requestId, sub.namespace, sub.track, { onObject });
    this.byRequest.set(requestId, fetch);
    await fetch.open(encodeFetch({ requestId, fetchType: FetchType.RELATIVE_JOINING, joiningRequestId: sub.requestId, joiningStart: groups }));
    const answer = await fetch.answer();
    if (answer.type !== MessageType.FETCH_OK) throw new ProtocolViolation(`${answer.name} in answer to FETCH`);
    return { fetch, ok: answer };
  }

  /**
   * A standalone FETCH (draft §9.13.1) of `track` from `start` to `end` ({group, object};
   * `end` is the last location plus one, object 0 meaning the whole group). Resolves to
   * {fetch, ok}; objects go to `onObject`, and `onGroupEnd` is called when the response
   * stream ends. `fetch.firstByteAt` is when its first bytes arrived. Rejects with
   * RequestError when refused.
   */
  async fetchRange(namespace, track, start, end, { params = [], onObject, onGroupEnd } = {}) {
    if (this.goaway) throw new Error('the server is going away');
    const requestId = this.takeRequestId();
    const fetch = new Subscription(this, requestId, namespace, track, { onObject, onGroupEnd });
    this.byRequest.set(requestId, fetch);
    await fetch.open(encodeFetch({ requestId, fetchType: FetchType.STANDALONE, namespace, track, start, end, params }));
    const answer = await fetch.answer();
    if (answer.type !== MessageType.FETCH_OK) throw new ProtocolViolation(`${answer.name} in answer to FETCH`);
    return { fetch, ok: answer };
  }

  close(code = 0, reason = '') {
    if (!this.peerClose) this.closedByUs = true;
    try {
      this.wt.close({ closeCode: code, reason: reason.slice(0, 100) });
    } catch {
      // already closed
    }
  }
}

/** One request stream (SUBSCRIBE or FETCH) and the objects delivered for it. */
export class Subscription {
  constructor(session, requestId, namespace, track, { onObject, onGroupEnd, onDone }) {
    this.session = session;
    this.requestId = requestId;
    this.namespace = namespace;
    this.track = track;
    this.onObject = onObject;
    this.onGroupEnd = onGroupEnd;
    this.onDone = onDone;
    this.trackAlias = undefined;
    this.ended = false;
    this.streams = 0;
  }

  async open(request) {
    const bidi = await this.session.wt.createBidirectionalStream();
    this.writer = bidi.writable.getWriter();
    this.reader = new StreamReader(bidi.readable);
    await this.writer.write(request);
  }

  async answer() {
    let msg;
    try {
      msg = await this.reader.message();
    } catch (err) {
      this.end();
      throw err;
    }
    if (!msg) {
      this.end();
      throw new Error(`request stream for ${this.track} closed without an answer`);
    }
    if (msg.type === MessageType.REQUEST_ERROR) {
      this.end();
      throw new RequestError(msg);
    }
    return msg;
  }

  /** Reads the rest of the request stream: PUBLISH_DONE, or its end. */
  async watchEnd() {
    let done;
    try {
      for (;;) {
        const msg = await this.reader.message();
        if (!msg) break;
        if (msg.type === MessageType.PUBLISH_DONE) {
          done = msg;
          break;
        }
        if (msg.type === MessageType.GOAWAY) continue; // migrate this request: the player reconnects anyway
      }
    } catch (err) {
      done = { name: 'RESET', reason: String(err?.message ?? err) };
    }
    if (!this.ended) this.onDone?.(done ?? { name: 'FIN' });
    this.end();
  }

  deliver(obj) {
    if (!this.ended) this.onObject?.(obj);
  }

  groupEnded(groupId, complete) {
    if (!this.ended) this.onGroupEnd?.(groupId, complete);
  }

  /** Ends the request: our side of the stream is closed and nothing more is delivered. */
  end() {
    if (this.ended) return;
    this.ended = true;
    this.session.byRequest.delete(this.requestId);
    if (this.trackAlias !== undefined) this.session.byAlias.delete(this.trackAlias);
    this.writer?.abort().catch(() => {});
    this.reader?.cancel();
  }
}
