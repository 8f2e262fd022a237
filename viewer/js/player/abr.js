/**
 * Which rung of a ladder to play: a pure decision from the bandwidth estimate, the buffer
 * and the time of the last switches (passed in, ms), unit-tested in
 * viewer/test/abr.test.mjs. The player asks five times a second and acts on a change.
 *
 * The rules, in order:
 * - Down, now, when the estimate is below the current rung (with a little slack for the
 *   estimate's noise), or when the buffer is nearly empty and the newest sample
 *   (`recent`: the estimate is a median, slower to follow) does not clearly carry the
 *   current rung: to the highest rung that fits DOWN_FIT of the lower of the two, at
 *   least one step. A live buffer is small (0.15 to 0.5 s), so waiting for
 *   it to run dry would mean a stall.
 * - Up, one step at a time, only when the estimate is UP_FACTOR times the next rung
 *   (hysteresis: a rung that barely fits would be left again at the first keyframe), the
 *   buffer is near its target, the estimate rests on MIN_UP_SAMPLES samples at least
 *   (one burst at start-up read a 1.5 Mbit/s link as 2.8: a token bucket let it
 *   through), and it has been UP_HOLD since the last switch and
 *   AFTER_DOWN_HOLD since the last step down (no flapping between two rungs).
 * - Otherwise stay.
 *
 * `tooSlow` tells the page that even the lowest rung does not fit: on the lowest rung,
 * with an estimate under it, the player stalling or its buffer nearly empty, for
 * SLOW_AFTER. It clears once the estimate carries the lowest rung with a margin and the
 * buffer is back, so the page recovers by itself.
 */

/** Below this share of the current rung's bitrate the estimate means "does not fit". */
export const DOWN_SLACK = 0.95;
/** Stepping down picks the highest rung within this share of the estimate. */
export const DOWN_FIT = 0.8;
/** Stepping up needs the estimate at this multiple of the next rung. */
export const UP_FACTOR = 1.4;
export const UP_HOLD_MS = 3000;
export const AFTER_DOWN_HOLD_MS = 8000;
export const MIN_UP_SAMPLES = 3;
/** The buffer (as a share of the player's target) under which it is nearly empty. */
const LOW_BUFFER = 0.4;
/** ...and over which stepping up is safe. */
const UP_BUFFER = 0.7;
/** With a nearly empty buffer, stay only when the estimate is this multiple of the rung. */
const LOW_BUFFER_MARGIN = 1.2;
export const SLOW_AFTER_MS = 3000;
/** Out of "too slow" when the estimate is this multiple of the lowest rung. */
const RECOVER_FACTOR = 1.1;

/**
 * `ladder`: [{bitrate}] ascending; `current`: its index; `estimate` and `recent`: bits
 * per second (or undefined); `samples`: how many samples the estimate rests on; `buffer` and `target`: seconds; `lastSwitchAt`, `lastDownAt`: ms or
 * undefined; `now`: ms. Returns {index, reason}.
 */
export function decide({ ladder, current, estimate, recent, samples, buffer, target, now, lastSwitchAt, lastDownAt }) {
  if (ladder.length < 2 || !Number.isFinite(estimate)) return { index: current, reason: 'no estimate' };
  const rate = ladder[current].bitrate;
  const fast = Number.isFinite(recent) ? Math.min(recent, estimate) : estimate;
  const low = buffer < target * LOW_BUFFER && fast < rate * LOW_BUFFER_MARGIN;
  if (current > 0 && (estimate < rate * DOWN_SLACK || low)) {
    const basis = low ? fast : estimate;
    return { index: Math.min(current - 1, highestFitting(ladder, basis * DOWN_FIT)), reason: low ? 'buffer low' : 'estimate below rung' };
  }
  const next = ladder[current + 1];
  if (
    next &&
    estimate >= next.bitrate * UP_FACTOR &&
    samples >= MIN_UP_SAMPLES &&
    buffer >= target * UP_BUFFER &&
    since(now, lastSwitchAt) >= UP_HOLD_MS &&
    since(now, lastDownAt) >= AFTER_DOWN_HOLD_MS
  ) {
    return { index: current + 1, reason: 'estimate above next rung' };
  }
  return { index: current, reason: 'fits' };
}

/** The index of the highest rung with bitrate <= `bps` (0 if none fits). */
export function highestFitting(ladder, bps) {
  let best = 0;
  ladder.forEach((r, i) => {
    if (r.bitrate <= bps) best = i;
  });
  return best;
}

/**
 * The rung to start on: the highest that fits DOWN_FIT of a remembered estimate, or the
 * lowest when nothing is remembered (conservative: a first visit on a slow link must not
 * stall).
 */
export function initialRung(ladder, remembered) {
  if (!Number.isFinite(remembered) || remembered <= 0) return 0;
  return highestFitting(ladder, remembered * DOWN_FIT);
}

/**
 * Whether the link is below the lowest rung. `state` is the previous answer's
 * {tooSlow, since} (or undefined); returns the next one.
 */
export function slowVerdict(state, { lowest, estimate, onLowest, stalled, buffer, target, now }) {
  const prev = state ?? { tooSlow: false, since: undefined };
  const short = Number.isFinite(estimate) && estimate < lowest;
  const starving = stalled || buffer < target * LOW_BUFFER;
  if (prev.tooSlow) {
    const recovered = Number.isFinite(estimate) && estimate >= lowest * RECOVER_FACTOR && !starving;
    return recovered ? { tooSlow: false, since: undefined } : prev;
  }
  if (!(onLowest && short && starving)) return { tooSlow: false, since: undefined };
  const since = prev.since ?? now;
  return { tooSlow: now - since >= SLOW_AFTER_MS, since };
}

function since(now, t) {
  return t === undefined ? Infinity : now - t;
}
