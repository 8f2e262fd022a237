/**
 * How fast the link to the relay can deliver, estimated from what arrives: a pure module,
 * time passed in (milliseconds, one clock for every call), unit-tested in
 * viewer/test/estimator.test.mjs.
 *
 * Why not bytes over time: at the live edge objects arrive only as fast as they are
 * produced, so the arrival rate reads the stream's bitrate, not the link's. The link is
 * only seen when data waits for it. This estimator takes samples from those moments only:
 *
 * - Queued objects (`object`): every object is dated by its media time; the smallest
 *   arrival - media offset a track has shown is "straight from the encoder". An object
 *   later than that by more than QUEUED_MS waited behind the link (a keyframe on a
 *   narrow link, frames behind it), and one that arrives much faster than real time after
 *   the previous object of its track was sent from a backlog (a new subscription served
 *   from the start of a cached group). In both cases the link was busy: a busy period
 *   collects the bytes and the busy time (for a late object, at most its lateness: before
 *   that the link may have been idle) and becomes one sample when it ends.
 * - Probes (`probe`): a FETCH of an already cached range arrives as fast as the link
 *   allows; the sample is every byte that arrived in the probe's window (the probe's and
 *   the live tracks', which share the link) over the window.
 *
 * A rate-limited link lets a first burst through at line rate (a token bucket: 16 kB in
 * the test rig's tbf made a 40 kB burst on a 1.5 Mbit/s link read 4.5 Mbit/s), so every
 * sample leaves out BURST_ALLOWANCE of its bytes (at most half): on a link without a
 * bucket that under-reads small samples, which costs a rung, not a stall.
 *
 * Both read the link through the page's clock, so a page whose main thread was blocked
 * (a long task, a busy CPU) dates objects late (they look queued) and then all at once
 * (they look like a backlog). The player reports such blocks (`blocked`) once they are
 * over, so a sample counts only SETTLE_MS after it was taken, if no block reported by
 * then touches its time span (objects are dated in the tasks right after a block,
 * hence BLOCK_AFTER_MS).
 *
 * The estimate is the median of the last few samples: one odd sample either way (a
 * burst the main thread was too busy to date, a probe that met an empty queue) does
 * not move it. `recent` is the newest sample alone, for the decisions that cannot wait
 * for the median (a buffer running dry). Both are never below what was delivered over the last few seconds (that much the link has
 * carried). With no recent sample it is undefined: the delivered rate alone is the
 * stream's rate, which says nothing about the link (it would read a link with room to
 * spare as just enough, and a VBR dip as a slower link). What was learned on a previous
 * visit is the player's to keep (it picks the first rung), not a sample.
 */

/** An object this much later than its track's best showed the link was busy (ms). */
export const QUEUED_MS = 25;
/** An object arriving within this fraction of its media gap came from a backlog. */
const BACKLOG_RATIO = 0.5;
/** Bytes of a sample taken to have passed a token bucket at line rate. */
export const BURST_ALLOWANCE = 16 * 1024;
/** A busy period with less than this is noise (bytes). */
const MIN_SAMPLE_BYTES = 12 * 1024;
/** ...or shorter than this (ms): below timer resolution, any rate is possible. */
const MIN_SAMPLE_MS = 4;
/** A busy period is cut into a sample at this length (ms), so long ones count as several. */
const MAX_PERIOD_MS = 1000;
/** Samples kept for the median, and how long one counts (ms). */
const SAMPLES = 5;
const SAMPLE_LIFE_MS = 20000;
/** After a block, objects are still bunched for this long (ms). */
const BLOCK_AFTER_MS = 30;
/** A sample waits this long for a block report before it counts (ms). */
export const SETTLE_MS = 300;
/** How long the newest sample stands for the link now (ms). */
const RECENT_MS = 3000;
/** The window of the delivered-rate floor (ms). */
const DELIVERED_MS = 3000;
/** No estimate above this (bits per second): loopback would read gigabits. */
export const MAX_ESTIMATE = 200e6;

export class BandwidthEstimator {
  constructor() {
    this.tracks = new Map(); // track -> {minOffset, lastAt, lastMedia}
    this.samples = []; // [{at, bps, kind}]
    this.log = []; // [at, bytes] of every object, for probes and the delivered rate
    this.period = null; // {bytes, ms, lastAt}
    this.lastAt = undefined; // arrival of the previous object (any track)
    this.blocks = []; // [start, end] ms: the main thread was blocked
    this.unsettled = []; // samples waiting SETTLE_MS for a block report
    this.discarded = 0; // samples a block made worthless
  }

  /** The page's main thread was blocked from `start` to `end` (ms). */
  blocked(start, end) {
    this.blocks.push([start, end]);
    while (this.blocks.length > 20) this.blocks.shift();
  }

  /** Whether the span `start`..`end` may have been dated late or bunched by a block. */
  touchesBlock(start, end) {
    return this.blocks.some(([s, e]) => end >= s && start <= e + BLOCK_AFTER_MS);
  }

  /** Samples taken SETTLE_MS ago or more count now, unless a block touched them. */
  settle(now) {
    while (this.unsettled.length && now - this.unsettled[0].end >= SETTLE_MS) {
      const c = this.unsettled.shift();
      if (this.touchesBlock(c.start, c.end)) this.discarded++;
      else this.addSample(c.end, c.bps, c.kind);
    }
  }

  /** A sample taken over `start`..`end`, counted once settled. */
  candidate(start, end, bps, kind) {
    this.unsettled.push({ start, end, bps, kind });
    return Math.min(bps, MAX_ESTIMATE);
  }

  /** Forgets per-track timing (a new session: other paths, other offsets). */
  resetTracks() {
    this.tracks.clear();
    this.endPeriod();
    this.lastAt = undefined;
  }

  /**
   * One object arrived at `at` (ms) with `bytes`, of `track`, carrying media time
   * `mediaMs` (ms; undefined if not known: it then only adds its bytes).
   */
  object(at, bytes, { track, mediaMs } = {}) {
    this.log.push([at, bytes]);
    this.trimLog(at);
    const gap = this.lastAt === undefined ? undefined : Math.max(0, at - this.lastAt);
    this.lastAt = at;
    let busyMs; // how long the link was busy bringing this object, if it was
    this.settle(at);
    if (track !== undefined && Number.isFinite(mediaMs)) {
      const st = this.tracks.get(track);
      const offset = at - mediaMs;
      if (!st) {
        this.tracks.set(track, { minOffset: offset, lastAt: at, lastMedia: mediaMs });
      } else {
        const lateness = offset - st.minOffset;
        const mediaGap = mediaMs - st.lastMedia;
        const arrivalGap = at - st.lastAt;
        if (gap !== undefined && lateness > QUEUED_MS) busyMs = Math.min(gap, lateness);
        else if (gap !== undefined && mediaGap > 0 && arrivalGap < mediaGap * BACKLOG_RATIO) busyMs = gap;
        st.minOffset = Math.min(st.minOffset, offset);
        st.lastAt = at;
        st.lastMedia = mediaMs;
      }
    } else if (this.period && gap !== undefined) {
      busyMs = gap; // an undated object inside a busy period shares it
    }
    if (busyMs === undefined) {
      this.endPeriod();
      return;
    }
    if (!this.period) this.period = { bytes: 0, ms: 0, start: at - busyMs, at };
    this.period.bytes += bytes;
    this.period.ms += busyMs;
    this.period.at = at;
    if (this.period.ms >= MAX_PERIOD_MS) this.endPeriod();
  }

  /**
   * A probe (a FETCH of cached objects) brought `bytes` between its first byte at `start`
   * and its last at `end` (ms). Objects of live tracks logged in that window count too.
   */
  probe(start, end, bytes) {
    const ms = end - start;
    let total = bytes;
    for (const [at, b] of this.log) if (at > start && at <= end) total += b;
    if (total < MIN_SAMPLE_BYTES) return undefined;
    return this.candidate(start, end, rate(total, ms), 'probe');
  }

  endPeriod() {
    const p = this.period;
    this.period = null;
    if (!p || p.bytes < MIN_SAMPLE_BYTES) return;
    this.candidate(p.start, p.at, rate(p.bytes, p.ms), 'burst');
  }

  addSample(at, bps, kind) {
    const sample = { at, bps: Math.min(bps, MAX_ESTIMATE), kind };
    this.samples.push(sample);
    while (this.samples.length > SAMPLES) this.samples.shift();
    return sample.bps;
  }

  trimLog(now) {
    while (this.log.length && now - this.log[0][0] > Math.max(DELIVERED_MS, 10000)) this.log.shift();
  }

  /** Bits per second delivered over the last few seconds (all tracks, probes excluded). */
  delivered(now) {
    let bytes = 0;
    let first;
    for (const [at, b] of this.log) {
      if (now - at > DELIVERED_MS) continue;
      bytes += b;
      first ??= at;
    }
    if (first === undefined || now - first < DELIVERED_MS / 2) return 0;
    return (bytes * 8 * 1000) / DELIVERED_MS;
  }

  /** The estimate in bits per second at `now`, or undefined when nothing is known yet. */
  estimate(now) {
    this.settle(now);
    const live = this.samples.filter((s) => now - s.at <= SAMPLE_LIFE_MS);
    if (!live.length) return undefined;
    const sorted = live.map((s) => s.bps).sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    return Math.min(Math.max(median, this.delivered(now)), MAX_ESTIMATE);
  }

  /** The newest sample if it is at most RECENT_MS old (floored likewise), else undefined. */
  recent(now) {
    this.settle(now);
    const last = this.samples.at(-1);
    if (!last || now - last.at > RECENT_MS) return undefined;
    return Math.min(Math.max(last.bps, this.delivered(now)), MAX_ESTIMATE);
  }

  /** How many samples the estimate at `now` rests on. */
  sampleCount(now) {
    this.settle(now);
    return this.samples.filter((s) => now - s.at <= SAMPLE_LIFE_MS).length;
  }

  /** The newest sample ({at, bps, kind}), for the stats. */
  get lastSample() {
    return this.samples.at(-1);
  }
}

/** Bits per second of `bytes` over `ms`, less the burst allowance. */
function rate(bytes, ms) {
  const counted = bytes - Math.min(BURST_ALLOWANCE, bytes / 2);
  return (counted * 8 * 1000) / Math.max(ms, MIN_SAMPLE_MS);
}
