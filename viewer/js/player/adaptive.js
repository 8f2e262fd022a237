/**
 * The renditions a player plays and its switches between them: for each slot of the
 * catalog (ladder.js) the rendition chosen, its subscription on the current session, the
 * SlotFeed that orders its objects into the sink (feed.js), and for the video ladder the
 * automatic choice: the bandwidth estimate (estimator.js, probes: probe.js), the decision
 * (abr.js), and the quality the viewer forced from the menu.
 *
 * A switch is decided at any time but begins at a group boundary: when the old rendition
 * brings the first object of a group, SUBSCRIBE to the new one with an AbsoluteStart
 * filter at that group, hold the old one's objects of it (feed.js), and as soon as the
 * new one brings the group's start append its init segment and go on with it, then
 * unsubscribe the old one. Begun there, even a relay that ignores the filter (and serves
 * a new subscription from the start of its newest group) sends only what is needed;
 * begun mid-group, it would send the whole current group of the new rendition for
 * nothing (154 kB of the 480p rung, measured behind 1.5 Mbit/s: a stall). If the new
 * rendition does not come within JOIN_WAIT_MS, the old one's held objects are played
 * and the switch happens at the next boundary the new one meets (a congested link
 * brings it late; cancelling and starting over would never get there); a boundary that
 * does not come within PLAN_WAIT_MS (the old rendition stuck) starts the switch at once. Audio is
 * another slot and is never touched, so it never gaps.
 *
 * The estimate reads the link through the page's clock; a blocked main thread would
 * read as a slow link, so blocks are reported to it: long tasks (PerformanceObserver,
 * where the browser has them) and ticks that came late.
 *
 * The estimate is remembered (localStorage) so the next visit starts on a rung that fits
 * instead of the lowest.
 */

import { FilterType, Param, encodeFilter } from '../moqt/messages.js';
import { decide, initialRung, slowVerdict, UP_FACTOR } from './abr.js';
import { BandwidthEstimator } from './estimator.js';
import { SlotFeed } from './feed.js';
import { decodeTime } from './fmp4.js';
import { labelOf, slotsOf, videoSlot } from './ladder.js';
import { probeCount, runProbe } from './probe.js';

const STORAGE_KEY = 'stagecast.bandwidth';
const SAVE_EVERY_MS = 5000;
/** A probe at most this often, and only when not on the top rung (ms). */
const PROBE_EVERY_MS = 5000;
/**
 * ...but again after this when the last probe read enough for the next rung: the
 * estimate is a median, so it takes three such readings to move, and a link that opened
 * should be climbed in seconds, not in three slow probes (ms).
 */
const PROBE_CONFIRM_MS = 1500;
/**
 * A probe's budget: this much of a second at the estimate (or the rung's bitrate), and
 * at least PROBE_MIN_BYTES: a rate-limited link lets a first burst through at line rate
 * (a tbf bucket of 16 kB read 30 Mbit/s on a 1.5 Mbit/s link with 16 kB probes), so a
 * probe has to be several times that to read the rate.
 */
const PROBE_SECONDS = 0.25;
const PROBE_MIN_BYTES = 64 * 1024;
const PROBE_MAX_BYTES = 512 * 1024;
/** A switch whose new rendition has not brought its first group by then is put off (ms). */
const JOIN_WAIT_MS = 1500;
/** A planned switch whose boundary has not come by then begins anyway (ms). */
const PLAN_WAIT_MS = 3000;
/** A rendition that failed to subscribe is left out of the automatic choice this long. */
const FAILED_FOR_MS = 30000;
/** Object sizes remembered for probes: this many groups per track. */
const SIZE_GROUPS = 3;
/** A tick this much later than due means the main thread was blocked (ms). */
const LATE_TICK_MS = 20;

export class Adaptive extends EventTarget {
  /**
   * `namespace`: the broadcast's; `storage`: a Storage (localStorage) or undefined;
   * `onObject(track, obj)`: every object of a media track, as it arrives (latency, stall
   * detection); `onEnded(why)`: a subscription ended by the relay.
   */
  constructor({ namespace, storage, onObject = () => {}, onEnded = () => {}, tickMs = 200 }) {
    super();
    this.tickMs = tickMs;
    this.lastTickAt = undefined;
    this.namespace = namespace;
    this.storage = storage;
    this.onObject = onObject;
    this.onEnded = onEnded;
    this.estimator = new BandwidthEstimator();
    this.stopWatching = watchLongTasks((start, end) => this.estimator.blocked(start, end));
    this.remembered = readRemembered(storage);
    this.mode = 'auto'; // or the name of a video rendition the viewer chose
    this.slots = [];
    this.feeds = new Map(); // slot key -> SlotFeed
    this.subs = new Map(); // track name -> Subscription (this session)
    this.sizes = new Map(); // track name -> Map(group -> [object sizes])
    this.session = null;
    this.sink = null;
    this.switches = 0;
    this.switchLog = []; // [{from, to, at, group, reason}]
    this.pendingSince = undefined;
    this.planned = null; // {slot, track, reason, since}: a switch waiting for a boundary
    this.lastSwitchAt = undefined;
    this.lastDownAt = undefined;
    this.lastProbeAt = -Infinity;
    this.probing = false;
    this.probes = 0;
    this.lastProbeBps = undefined;
    this.failed = new Map(); // track name -> ms until which it is left out
    this.slow = undefined; // slowVerdict state
    this.lastSaveAt = -Infinity;
    this.reason = '';
  }

  /**
   * Takes a (new) catalog: the slots and, for each, its rendition: the one playing if it
   * is still listed, else the initial choice. Returns [{key, track}] for the sink.
   */
  useCatalog(catalog) {
    this.slots = slotsOf(catalog.tracks);
    const feeds = new Map();
    for (const slot of this.slots) {
      const old = this.feeds.get(slot.key);
      const still = old && slot.renditions.find((r) => r.name === old.track.name && r.initData === old.track.initData);
      if (still) {
        old.cancel();
        feeds.set(slot.key, old);
      } else {
        feeds.set(slot.key, new SlotFeed(slot.renditions[this.firstRung(slot)]));
      }
    }
    this.feeds = feeds;
    return this.slots.map((slot) => ({ key: slot.key, track: this.feeds.get(slot.key).track }));
  }

  /**
   * A catalog update with the same tracks and init segments (a publisher that measured
   * its bitrates once it had sent a while): the ladder's figures change, the feeds stay.
   */
  refresh(catalog) {
    const slots = slotsOf(catalog.tracks);
    if (slots.map((s) => s.key).join() !== this.slots.map((s) => s.key).join()) return;
    this.slots = slots;
    for (const slot of slots) {
      const feed = this.feeds.get(slot.key);
      feed.track = slot.renditions.find((r) => r.name === feed.track.name) ?? feed.track;
    }
  }

  /** A new sink: the feeds start over (it holds nothing yet). */
  resetFeeds() {
    for (const slot of this.slots) this.feeds.set(slot.key, new SlotFeed(this.feeds.get(slot.key).track));
  }

  firstRung(slot) {
    if (slot.role !== 'video') return slot.renditions.length - 1; // audio: the best
    const forced = slot.renditions.findIndex((r) => r.name === this.mode);
    if (forced >= 0) return forced;
    return initialRung(slot.renditions, this.remembered);
  }

  /** Subscribes, on `session`, to the rendition of every slot; objects go to `sink`. */
  async start(session, sink) {
    this.session = session;
    this.sink = sink;
    this.estimator.resetTracks();
    for (const slot of this.slots) await this.subscribe(slot, this.feeds.get(slot.key).track);
  }

  /** The session ended: its subscriptions are gone, and so is any switch under way. */
  detach() {
    // Old objects a switch held are still media: they play (the sink outlives sessions).
    for (const slot of this.slots) this.apply(slot, this.feeds.get(slot.key).cancel().actions);
    this.planned = null;
    this.subs.clear();
    this.session = null;
    this.pendingSince = undefined;
  }

  async subscribe(slot, track, fromGroup) {
    const session = this.session;
    const params = [];
    if (fromGroup !== undefined) {
      params.push({ type: Param.SUBSCRIPTION_FILTER, value: encodeFilter({ type: FilterType.ABSOLUTE_START, start: { group: fromGroup, object: 0 } }) });
    }
    const sub = await session.subscribe(this.namespace, track.name, {
      params,
      onObject: (obj) => this.objectArrived(slot, track, obj),
      onGroupEnd: (groupId) => this.apply(slot, this.feeds.get(slot.key).groupEnded(track.name, groupId)),
      onDone: () => this.onEnded(`${track.name} ended`),
    });
    if (this.session !== session) {
      sub.end(); // the session ended meanwhile
      return sub;
    }
    this.subs.set(track.name, sub);
    return sub;
  }

  objectArrived(slot, track, obj) {
    if (obj.status !== 0 || obj.payload.length === 0) return;
    // Bytes of a rendition being switched to that the old one already covers: what a
    // relay that ignores the start-group filter costs the link.
    const feed = this.feeds.get(slot.key);
    if (feed.pending?.track.name === track.name && obj.groupId <= feed.group) this.pendingWasted += obj.payload.length;
    // The old rendition begins a group: the planned switch begins with it. (Slots are
    // compared by key: a catalog update makes new slot objects, subscriptions keep theirs.)
    const plan = this.planned;
    if (plan?.slot.key === slot.key && track.name === feed.track.name && !feed.switching && obj.objectId === 0 && obj.groupId > feed.group) {
      this.planned = null;
      this.begin(slot, plan.track, plan.reason, performance.now(), obj.groupId);
    }
    const t = track.timescale ? decodeTime(obj.payload) : undefined;
    const mediaMs = t !== undefined ? (t / track.timescale) * 1000 : undefined;
    this.estimator.object(obj.arrival ?? performance.now(), obj.payload.length, { track: track.name, mediaMs });
    this.remember(track.name, obj);
    this.onObject(track, obj);
    this.apply(slot, this.feeds.get(slot.key).push(track.name, obj));
  }

  remember(name, obj) {
    let groups = this.sizes.get(name);
    if (!groups) this.sizes.set(name, (groups = new Map()));
    let sizes = groups.get(obj.groupId);
    if (!sizes) {
      groups.set(obj.groupId, (sizes = []));
      for (const g of groups.keys()) if (groups.size > SIZE_GROUPS && g !== obj.groupId) groups.delete(g);
    }
    sizes[obj.objectId] = obj.payload.length;
  }

  /** Carries out a feed's actions on the sink. */
  apply(slot, actions) {
    for (const a of actions) {
      if (a.append) this.sink?.append(slot.key, a.append);
      else if (a.init) this.switched(slot, a.init, a.at);
    }
  }

  switched(slot, track, group) {
    this.sink?.switchTrack(slot.key, track);
    const from = this.pendingFrom;
    for (const [name, sub] of this.subs) {
      if (name !== track.name && slot.renditions.some((r) => r.name === name)) {
        sub.end();
        this.subs.delete(name);
      }
    }
    this.switches++;
    // tookMs: from the decision to the hand-over (the old rendition finishing its group).
    const tookMs = Math.round(performance.now() - this.pendingSince);
    // okMs: how long the new subscription took to be answered; asked: the group it was
    // asked to start at (group: where the hand-over happened).
    // wasted: bytes of the new rendition received for groups the old one covered.
    const entry = { from: from?.name, to: track.name, group, asked: this.pendingAsked, at: Date.now(), tookMs, okMs: this.pendingOkMs, wasted: this.pendingWasted, reason: this.pendingReason };
    this.switchLog.push(entry);
    if (this.switchLog.length > 20) this.switchLog.shift();
    this.pendingSince = undefined;
    this.dispatchEvent(new CustomEvent('switch', { detail: entry }));
  }

  /**
   * Plans a switch of `slot` to `track`, to begin at the next group boundary; a switch
   * under way to another rendition is given up.
   */
  plan(slot, track, reason, now) {
    const feed = this.feeds.get(slot.key);
    if (!this.session || track.name === (feed.pending?.track.name ?? this.planned?.track.name)) return;
    if (feed.pending) this.giveUp(slot);
    if (track.name === feed.track.name) {
      this.planned = null; // back to the one playing: nothing to do
      return;
    }
    this.planned = { slot, track, reason, since: now };
  }

  /** Gives up the switch under way in `slot`: the old rendition's held objects play. */
  giveUp(slot) {
    const feed = this.feeds.get(slot.key);
    const { track, actions } = feed.cancel();
    if (track && track.name !== feed.track.name) this.unsubscribe(track.name);
    this.pendingSince = undefined;
    this.apply(slot, actions);
    return track;
  }

  /** Starts a switch of `slot` to `track` (at group `at`, if given), subscribing to it. */
  begin(slot, track, reason, now, at) {
    const feed = this.feeds.get(slot.key);
    if (!this.session || feed.switching || track.name === feed.track.name) return;
    this.pendingFrom = feed.track;
    this.pendingReason = reason;
    const fromGroup = feed.begin(track, { at });
    this.pendingSince = now;
    // The holds keep the automatic choice from flapping; the viewer's choice sets none,
    // so Auto after a chosen rung is free to climb at once.
    if (reason !== 'chosen') {
      this.lastSwitchAt = now;
      if (track.bitrate < feed.track.bitrate) this.lastDownAt = now;
    }
    this.pendingAsked = fromGroup;
    this.pendingWasted = 0;
    this.pendingOkMs = undefined;
    this.subscribe(slot, track, fromGroup).then(() => {
      this.pendingOkMs = Math.round(performance.now() - now);
    }, (err) => {
      // Not served (gone from the relay, refused): stay, and leave it out for a while.
      if (feed.pending?.track.name === track.name) this.giveUp(slot);
      this.failed.set(track.name, now + FAILED_FOR_MS);
      this.lastError = `cannot switch to ${track.name}: ${err.message}`;
    });
  }

  unsubscribe(name) {
    this.subs.get(name)?.end();
    this.subs.delete(name);
  }

  /** The viewer's choice: 'auto', or the name of a video rendition. */
  setQuality(mode, now = performance.now()) {
    const slot = videoSlot(this.slots);
    const track = slot?.renditions.find((r) => r.name === mode);
    this.mode = track ? mode : 'auto';
    if (track) this.plan(slot, track, 'chosen', now);
  }

  /**
   * Five times a second: `buffer` and `target` in seconds, `stalled` whether playback
   * waits for data. Decides, forces a switch that waits too long, starts probes.
   */
  tick(now, { buffer, target, stalled }) {
    // A tick that came late: the main thread was blocked since the one before was due.
    if (this.lastTickAt !== undefined && now - this.lastTickAt > this.tickMs + LATE_TICK_MS) {
      this.estimator.blocked(this.lastTickAt + this.tickMs, now);
    }
    this.lastTickAt = now;
    const slot = videoSlot(this.slots);
    const estimate = this.estimator.estimate(now);
    this.saveEstimate(now, estimate);
    if (!slot || !this.session) return;
    const feed = this.feeds.get(slot.key);
    const ladder = slot.renditions.filter((r) => !(this.failed.get(r.name) > now) || r.name === feed.track.name);
    const current = ladder.findIndex((r) => r.name === feed.track.name);
    this.slow = slowVerdict(this.slow, { lowest: ladder[0].bitrate, estimate, onLowest: current === 0, stalled, buffer, target, now });
    if (feed.switching) {
      // The new rendition has not brought its first group: play on with the old one and
      // switch at the next boundary the new one meets.
      if (!feed.joined && now - this.pendingSince > JOIN_WAIT_MS && feed.pending.at !== undefined) this.apply(slot, feed.release());
      return;
    }
    if (this.planned && now - this.planned.since > PLAN_WAIT_MS) {
      const { track, reason } = this.planned;
      this.planned = null;
      this.begin(slot, track, reason, now);
      return;
    }
    if (this.mode === 'auto' && current >= 0) {
      const recent = this.estimator.recent(now);
      const samples = this.estimator.sampleCount(now);
      const d = decide({ ladder, current, estimate, recent, samples, buffer, target, now, lastSwitchAt: this.lastSwitchAt, lastDownAt: this.lastDownAt });
      this.reason = d.reason;
      if (d.index !== current) {
        this.plan(slot, ladder[d.index], d.reason, now);
        return;
      }
      if (this.planned?.reason !== 'chosen') this.planned = null; // no longer wanted
      if (current < ladder.length - 1 && !this.slow.tooSlow) this.maybeProbe(now, feed, estimate, buffer, target, ladder[current + 1]);
    }
  }

  maybeProbe(now, feed, estimate, buffer, target, next) {
    const every = this.lastProbeBps >= next.bitrate * UP_FACTOR ? PROBE_CONFIRM_MS : PROBE_EVERY_MS;
    if (this.probing || now - this.lastProbeAt < every || buffer < target * 0.5) return;
    const sizes = this.sizes.get(feed.track.name)?.get(feed.group - 1);
    if (!sizes) return;
    const rate = estimate ?? feed.track.bitrate;
    const budget = Math.min(PROBE_MAX_BYTES, Math.max(PROBE_MIN_BYTES, (rate * PROBE_SECONDS) / 8));
    const count = probeCount(sizes, budget);
    if (count === 0) return;
    this.probing = true;
    this.lastProbeAt = now;
    const session = this.session;
    runProbe(session, this.namespace, feed.track.name, feed.group - 1, count)
      .then((r) => {
        if (r && session === this.session) {
          this.probes++;
          this.lastProbeBps = this.estimator.probe(r.start, r.end, r.bytes);
        }
      })
      .finally(() => {
        this.probing = false;
      });
  }

  saveEstimate(now, estimate) {
    if (!this.storage || estimate === undefined || now - this.lastSaveAt < SAVE_EVERY_MS) return;
    this.lastSaveAt = now;
    try {
      this.storage.setItem(STORAGE_KEY, String(Math.round(estimate)));
    } catch {
      // storage full or refused: the next visit starts low
    }
  }

  get tooSlow() {
    return Boolean(this.slow?.tooSlow);
  }

  /** What the stats overlay and the tests read. */
  stats(now = performance.now()) {
    const slot = videoSlot(this.slots);
    const feed = slot && this.feeds.get(slot.key);
    return {
      rendition: feed?.track.name,
      renditionLabel: feed ? labelOf(feed.track) : undefined,
      renditionBitrate: feed?.track.bitrate,
      switchingTo: feed?.pending?.track.name ?? this.planned?.track.name,
      renditions: slot ? slot.renditions.map((r) => ({ name: r.name, label: labelOf(r, { withRate: true }), bitrate: r.bitrate, width: r.width, height: r.height })) : [],
      quality: this.mode,
      estimate: this.estimator.estimate(now),
      lastSample: this.estimator.lastSample,
      switches: this.switches,
      switchLog: this.switchLog.slice(-5),
      probes: this.probes,
      samplesDiscarded: this.estimator.discarded,
      tooSlow: this.tooSlow,
      abrReason: this.reason,
      rememberedEstimate: this.remembered,
    };
  }
}

function readRemembered(storage) {
  try {
    const v = Number(storage?.getItem(STORAGE_KEY));
    return Number.isFinite(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Calls `report(start, end)` for every long task of the page (Long Tasks API); returns
 * a function that stops. Where the browser has no such entries it does nothing.
 */
function watchLongTasks(report) {
  try {
    if (!globalThis.PerformanceObserver?.supportedEntryTypes?.includes('longtask')) return () => {};
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) report(e.startTime, e.startTime + e.duration);
    });
    observer.observe({ type: 'longtask' });
    return () => observer.disconnect();
  } catch {
    return () => {};
  }
}
