/**
 * The live player: connects to a relay over WebTransport, reads the broadcast's MSF
 * catalog, subscribes to its media tracks and plays them through MSE (mse.js), keeping
 * the playhead close to the live edge. It reconnects by itself when the session drops,
 * stalls or the relay sends GOAWAY, and resumes at the group where it left off.
 *
 * Which rendition of a ladder plays, and the switches between them, are adaptive.js's:
 * the player subscribes through it, and asks it to decide on every tick.
 *
 * Each session it connects is announced (event 'session', detail {session, catalog},
 * `catalog.bytes` the catalog's JSON) once its media subscriptions are made.
 *
 * States it reports (event 'state', detail {state, message}): connecting, buffering,
 * playing, paused, too-slow (the link does not carry even the lowest rendition; it
 * goes on trying and leaves that state by itself), reconnecting, offline,
 * unauthorized, expired, unsupported, error.
 *
 * Stalls: once it has played, every time playback waits for media counts as a stall,
 * and the time it waits adds to `stallMs` (stats()).
 * unauthorized and expired are final: the page's token was refused (access.js), and
 * reconnecting with it cannot help, so the player stops.
 *
 * Latency. Glass-to-glass when the media says when it was made: our publishers put a
 * Producer Reference Time (`prft`) in front of every video chunk, the encoder's wall
 * clock (ffmpeg -write_prft wallclock) or the publisher's when it sends the chunk (a file
 * paced as live, the demo). The latency is then the wall time now minus the time the
 * frame on screen was made. It assumes the viewer's and the producer's clocks agree (NTP);
 * on one machine they do. Without a `prft`, it falls back to how long after the freshest
 * media arrives it is shown: for every video chunk, the offset between its arrival and
 * its media time (tfdt), the smallest in the session being the chunk that came fastest;
 * that figure leaves out the encoder and the network.
 */

import { MoqtSession, RequestError, SessionClosed } from '../moqt/session.js';
import { RequestErrorCode } from '../moqt/messages.js';
import { accessDenied, EXPIRED, tokenExpiry, withToken } from './access.js';
import { Adaptive } from './adaptive.js';
import { parseCatalog, sameTracks } from './catalog.js';
import { decodeTime, producerTime } from './fmp4.js';
import { MseSink } from './mse.js';

/** Seconds of media kept between the playhead and the live edge. */
const TARGET_NORMAL = 0.5;
const TARGET_LOW = 0.15;
/** Behind the target by more than this: jump instead of speeding up. */
const JUMP_AFTER = 1.5;
/** No media for this long means the connection is dead, whatever QUIC says yet. */
const STALL_MS = 2500;
const CATALOG_TIMEOUT_MS = 8000;
const OFFLINE_RETRY_MS = 3000;
const MAX_BACKOFF_MS = 4000;
const TOO_SLOW_MESSAGE = 'Your connection is too slow for this stream. The player keeps trying and plays again by itself when it improves.';

export class Player extends EventTarget {
  /**
   * `relay`: WebTransport URL; `fingerprint`: hex SHA-256 to pin, or `certUrl` to fetch it
   * from; `namespace`: the broadcast's path segments; `token`: the access token (JWT),
   * added as `?jwt=` to every URL connected to that `trusted(url)` vouches for, including
   * after a GOAWAY names another (to any other the player connects without it).
   */
  constructor(video, { relay, fingerprint, certUrl, namespace, token, lowLatency = false, trusted = () => false }) {
    super();
    this.video = video;
    this.relay = relay; // without the token: the stats show it
    this.token = token;
    this.trusted = trusted;
    this.sentToken = undefined; // the token the current session presented, if any
    this.fingerprint = fingerprint;
    this.certUrl = certUrl;
    this.namespace = namespace;
    this.lowLatency = lowLatency;
    this.sink = null;
    this.catalog = null;
    this.session = null;
    this.state = 'idle';
    this.stopped = false;
    this.userPaused = false;
    this.started = false;
    this.adaptive = new Adaptive({
      namespace,
      storage: localStorageOrUndefined(),
      onObject: (track, obj) => this.onMedia(track, obj),
      onEnded: (why) => this.endSession?.(why),
    });
    this.stalls = 0;
    this.stallMs = 0;
    this.stalledSince = undefined;
    this.everPlayed = false;
    this.offset = Infinity; // min(arrival ms - media ms) this session
    this.producerOffset = undefined; // production wall ms - media ms, from the latest prft
    this.lastMediaAt = 0;
    this.bytesWindow = []; // [time ms, bytes]
    this.reconnects = 0;
    this.latency = undefined;
  }

  get target() {
    return this.lowLatency ? TARGET_LOW : TARGET_NORMAL;
  }

  setState(state, message = '') {
    if (this.state === state && this.message === message) return;
    this.state = state;
    this.message = message;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, message } }));
  }

  start() {
    if (typeof WebTransport === 'undefined') {
      this.setState('unsupported', 'This browser cannot play live Stagecast streams: it has no WebTransport. Try a current Chrome, Edge or Firefox.');
      return;
    }
    if (typeof MediaSource === 'undefined') {
      this.setState('unsupported', 'This browser has no Media Source Extensions, which the player needs.');
      return;
    }
    this.timer = setInterval(() => this.tick(), 200);
    this.run();
  }

  /**
   * Access refused (`{state, message}` from access.js; `how` for the console and tests):
   * stops for good but leaves the page as it is, the last frame under the message.
   */
  deny({ state, message }, how) {
    this.stopped = true;
    this.deniedBy = how;
    clearInterval(this.timer);
    this.video.pause();
    this.setState(state, message);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    this.adaptive.stopWatching();
    this.session?.close(0, 'bye');
    this.sink?.close();
  }

  async resolveFingerprint() {
    if (this.fingerprint) return this.fingerprint;
    if (!this.certUrl) return undefined;
    const res = await fetch(this.certUrl, { cache: 'no-store', signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`cannot read the relay's certificate fingerprint (${res.status})`);
    return (await res.text()).trim();
  }

  async run() {
    let backoff = 250;
    while (!this.stopped) {
      let wait = backoff;
      try {
        const played = await this.connectOnce();
        if (played) backoff = 250;
        wait = played ? 0 : backoff;
      } catch (err) {
        if (this.stopped) return;
        const denied = accessDenied(err, Boolean(this.sentToken));
        if (denied) {
          this.deny(denied, err instanceof SessionClosed ? `session closed 0x${err.code.toString(16)}` : `REQUEST_ERROR 0x${err.code.toString(16)}`);
          return;
        }
        if (err instanceof RequestError && err.code === RequestErrorCode.DOES_NOT_EXIST) {
          this.setState('offline', 'This channel is offline. The player starts by itself when it goes live.');
          wait = OFFLINE_RETRY_MS;
        } else if (err?.name === 'NotSupportedError' || /cannot play/.test(err?.message)) {
          this.setState('unsupported', err.message);
          return;
        } else {
          this.setState('reconnecting', `Connection lost (${err?.message ?? err}); reconnecting…`);
        }
      }
      if (this.stopped) return;
      // However the session ended, a token past its expiry will not get a new one.
      if (this.sentToken && Date.now() >= (tokenExpiry(this.sentToken) ?? Infinity)) {
        this.deny(EXPIRED, 'token expiry');
        return;
      }
      this.reconnects++;
      if (this.state !== 'offline') this.setState('reconnecting', 'Reconnecting…');
      await sleep(wait);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /** One session: connect, catalog, tracks, play until it ends. Resolves true if media flowed. */
  async connectOnce() {
    if (this.state !== 'reconnecting') this.setState('connecting', 'Connecting…');
    const fingerprint = await this.resolveFingerprint();
    // A relay the origin does not list never sees the token (a link can name any host).
    const relayTrusted = this.trusted(this.relay);
    this.sentToken = relayTrusted ? this.token : undefined;
    const session = await MoqtSession.connect(withToken(this.relay, this.sentToken), { fingerprint });
    this.session = session;
    this.offset = Infinity;
    this.producerOffset = undefined;
    let ended;
    const endedP = new Promise((resolve) => (ended = resolve));
    session.onGoaway = (msg) => {
      // Move to the URI the relay names, or reconnect to the same one (draft §9.5).
      if (msg.uri) this.relay = msg.uri;
      ended('goaway');
    };
    session.closed.then(() => ended('closed'));
    this.endSession = ended;
    this.mediaSeen = false;
    try {
      const catalog = await this.subscribeCatalog(session, () => ended('catalog ended'));
      const slots = this.adaptive.useCatalog(catalog);
      if (!this.sink || !sameTracks(this.catalog, catalog)) await this.newSink(slots);
      this.catalog = catalog;
      await this.adaptive.start(session, this.sink);
      this.lastMediaAt = performance.now();
      // The session is up: the interaction panel opens its request stream on the same
      // WebTransport session and subscribes to the catalog's interaction track.
      this.dispatchEvent(new CustomEvent('session', { detail: { session, catalog, trusted: relayTrusted } }));
      const stall = setInterval(() => {
        if (performance.now() - this.lastMediaAt > STALL_MS) ended('stalled');
      }, 500);
      const why = await endedP;
      clearInterval(stall);
      this.whyEnded = why;
      // Closed by the server because of the token (it expired while watching, say).
      const closed = session.peerClose && new SessionClosed(session.peerClose);
      if (closed && accessDenied(closed, Boolean(this.sentToken))) throw closed;
    } catch (err) {
      // Requests fail a moment before the close that explains them arrives.
      throw await session.reasonFor(err);
    } finally {
      this.adaptive.detach();
      this.endSession = null;
      session.close(0, 'reconnecting');
      this.session = null;
    }
    return this.mediaSeen;
  }

  /**
   * Subscribes to the catalog and resolves with the first one; a later catalog with other
   * tracks or init segments ends the session (`onEnd`) so it starts again with it, one
   * with the same tracks updates the ladder's figures.
   */
  subscribeCatalog(session, onEnd) {
    return new Promise((resolve, reject) => {
      let seen = null;
      const timer = setTimeout(() => reject(new Error('no catalog arrived')), CATALOG_TIMEOUT_MS);
      const onObject = (obj) => {
        if (obj.status !== 0 || obj.payload.length === 0) return;
        let catalog;
        try {
          catalog = parseCatalog(obj.payload);
        } catch (err) {
          clearTimeout(timer);
          reject(err);
          return;
        }
        if (!seen) {
          seen = catalog;
          catalog.bytes = obj.payload; // the whole catalog, for tracks other than media (interaction)
          clearTimeout(timer);
          resolve(catalog);
        } else if (!sameTracks(seen, catalog)) {
          onEnd();
        } else {
          this.adaptive.refresh(catalog); // new figures (bitrates) for the same tracks
        }
      };
      session
        .subscribe(this.namespace, 'catalog', { onObject, onDone: onEnd })
        .then((sub) => {
          // A joining FETCH of the current group gets the catalog even from a publisher
          // whose SUBSCRIBE only sends what comes next. Ours send the newest group at
          // once and answer FETCH with NOT_SUPPORTED: then the subscription alone serves.
          session.joiningFetch(sub, 0, { onObject }).catch(() => {});
        })
        .catch((err) => {
          clearTimeout(timer);
          reject(err);
        });
    });
  }

  /** A new sink for `slots` ([{key, track}]): the feeds start over with it. */
  async newSink(slots) {
    this.sink?.close();
    this.adaptive.resetFeeds();
    this.started = false;
    this.sink = await MseSink.open(this.video, slots, (err) => {
      this.lastError = err.message;
    });
  }

  /** Every media object as it arrives (adaptive.js appends it): latency and liveness. */
  onMedia(track, obj) {
    const now = performance.now();
    this.lastMediaAt = now;
    this.mediaSeen = true;
    if (track.role === 'video' && track.timescale) {
      const t = decodeTime(obj.payload);
      if (t !== undefined) {
        const offset = performance.timeOrigin + now - (t / track.timescale) * 1000;
        if (offset < this.offset) this.offset = offset;
      }
      const made = producerTime(obj.payload);
      if (made) this.producerOffset = made.unixMs - (made.mediaTime / track.timescale) * 1000;
    }
    this.bytesWindow.push([now, obj.payload.length]);
  }

  /** The viewer's choice of quality: 'auto' or the name of a video rendition. */
  setQuality(mode) {
    this.adaptive.setQuality(mode);
  }

  /** Playback steering, buffering detection, stats: five times a second. */
  tick() {
    const v = this.video;
    const sink = this.sink;
    const now = performance.now();
    while (this.bytesWindow.length && now - this.bytesWindow[0][0] > 2000) this.bytesWindow.shift();
    if (!sink) return;
    const edge = sink.liveEdge();
    if (edge === undefined) return;
    if (!this.started) {
      v.currentTime = Math.max(sink.newestStart(), edge - this.target);
      this.started = true;
      if (!this.userPaused) this.play();
    }
    const inRange = inBuffered(v.buffered, v.currentTime);
    const lag = edge - v.currentTime;
    if (!this.userPaused) {
      if (!inRange || lag > this.target + JUMP_AFTER) {
        // After a gap (reconnect) or far behind: go to just behind the live edge.
        const to = Math.max(sink.newestStart(), edge - this.target);
        if (Math.abs(v.currentTime - to) > 0.05) v.currentTime = to;
        if (v.paused) this.play();
      } else if (lag > this.target + 0.1) v.playbackRate = lag > this.target + 0.5 ? 1.15 : 1.05;
      else if (lag < this.target / 2) v.playbackRate = 0.95;
      else v.playbackRate = 1;
    }
    if (this.producerOffset !== undefined && v.currentTime > 0) {
      this.latency = (Date.now() - (v.currentTime * 1000 + this.producerOffset)) / 1000;
      this.latencyKind = 'glass-to-glass';
    } else if (Number.isFinite(this.offset) && v.currentTime > 0) {
      this.latency = (performance.timeOrigin + now - (v.currentTime * 1000 + this.offset)) / 1000;
      this.latencyKind = 'since arrival';
    }
    if (now - (this.lastTrim ?? 0) > 5000) {
      this.lastTrim = now;
      sink.trim();
    }
    const waiting = !this.userPaused && this.session !== null && !(v.readyState >= 3 && inRange && !v.paused);
    this.countStall(now, waiting);
    this.adaptive.tick(now, { buffer: inRange ? Math.max(0, lag) : 0, target: this.target, stalled: this.stalledSince !== undefined });
    if (['connecting', 'reconnecting', 'buffering', 'playing', 'paused', 'too-slow'].includes(this.state) || this.state === 'idle') {
      if (this.userPaused) this.setState('paused');
      else if (this.adaptive.tooSlow && this.session) this.setState('too-slow', TOO_SLOW_MESSAGE);
      else if (!v.paused && v.readyState >= 3 && inRange) this.setState('playing');
      else if (this.session) this.setState('buffering', 'Buffering…');
    }
  }

  /** Stall accounting: only after playback first started (start-up is not a stall). */
  countStall(now, waiting) {
    if (!waiting) {
      if (this.stalledSince !== undefined) this.stallMs += now - this.stalledSince;
      this.stalledSince = undefined;
      if (this.state === 'playing') this.everPlayed = true;
      return;
    }
    if (!this.everPlayed || this.stalledSince !== undefined) return;
    this.stalledSince = now;
    this.stalls++;
  }

  async play() {
    try {
      await this.video.play();
    } catch (err) {
      if (err.name === 'NotAllowedError' && !this.video.muted) {
        // Autoplay with sound needs a click; start muted and let the viewer unmute.
        this.video.muted = true;
        this.dispatchEvent(new CustomEvent('automuted'));
        try {
          await this.video.play();
        } catch {
          // still refused: the play button starts it
        }
      }
    }
  }

  setPaused(paused) {
    this.userPaused = paused;
    if (paused) this.video.pause();
    else {
      const edge = this.sink?.liveEdge();
      if (edge !== undefined) this.video.currentTime = Math.max(this.sink.newestStart(), edge - this.target);
      this.play();
    }
  }

  stats() {
    const v = this.video;
    const q = v.getVideoPlaybackQuality?.();
    const edge = this.sink?.liveEdge();
    const bytes = this.bytesWindow.reduce((n, [, b]) => n + b, 0);
    const span = this.bytesWindow.length > 1 ? (this.bytesWindow.at(-1)[0] - this.bytesWindow[0][0]) / 1000 : 0;
    return {
      state: this.state,
      latency: this.latency,
      latencyKind: this.latencyKind,
      buffer: edge !== undefined ? Math.max(0, edge - v.currentTime) : 0,
      bitrate: span > 0.5 ? (bytes * 8) / span : 0,
      droppedFrames: q?.droppedVideoFrames ?? 0,
      decodedFrames: q?.totalVideoFrames ?? 0,
      relay: this.relay,
      relayTrusted: this.trusted(this.relay),
      tokenSent: Boolean(this.sentToken),
      reconnects: this.reconnects,
      deniedBy: this.deniedBy,
      currentTime: v.currentTime,
      lowLatency: this.lowLatency,
      stalls: this.stalls,
      stallMs: this.stallMs + (this.stalledSince !== undefined ? performance.now() - this.stalledSince : 0),
      lastError: this.lastError ?? this.adaptive.lastError,
      ...this.adaptive.stats(),
    };
  }
}

function inBuffered(ranges, t) {
  for (let i = 0; i < ranges.length; i++) if (t >= ranges.start(i) - 0.05 && t <= ranges.end(i)) return true;
  return false;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The page's localStorage, or undefined where it is refused (privacy settings). */
function localStorageOrUndefined() {
  try {
    return globalThis.localStorage ?? undefined;
  } catch {
    return undefined;
  }
}
