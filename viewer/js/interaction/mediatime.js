/**
 * Media-time sync (docs/interaction.md §2): an event record's `M` is the publisher's
 * presentation time (ms) of the live edge when the origin sequenced it, so a viewer
 * behind live shows the event when its own video reaches `M`.
 *
 * The page's media clock: the player appends CMAF chunks to Media Source Extensions in
 * 'segments' mode with no timestampOffset (player/mse.js), so the video element's
 * currentTime is the chunks' own media time, tfdt / timescale: the publisher's PTS in
 * seconds. `mediaClock(video)` turns that into ms, or undefined while nothing plays.
 *
 * Rule: something with `M` is due once the clock reaches `M`; it is due at once when `M`
 * is absent, when there is no media clock, or when `M` is more than 30 s ahead of the
 * video (the clocks cannot be the same one). Once due, it stays due (`Gate` latches), so
 * a paused or rewound video does not hide what was already shown.
 */

/** `M` further ahead of the video than this: a clock mismatch, show at once. */
export const MAX_AHEAD_MS = 30000;

/** Whether something stamped `M` is due at media time `nowMs` (undefined: no clock). */
export function isDue(M, nowMs) {
  if (M === undefined || M === null || !Number.isFinite(M)) return true;
  if (nowMs === undefined || nowMs === null || !Number.isFinite(nowMs)) return true;
  return M <= nowMs || M - nowMs > MAX_AHEAD_MS;
}

/** The media clock of a video element fed by the player: ms of publisher PTS, or undefined. */
export function mediaClock(video) {
  return () => (video.readyState >= 2 && video.currentTime > 0 ? video.currentTime * 1000 : undefined);
}

/**
 * Items released by media time, each once. `hold(id, M, item)` queues an item (an id
 * already held or released is ignored); `release(nowMs)` returns the items now due, in the
 * order they were held; `shown(id)` says whether an id was released; `forget(id)` drops
 * an item whether or not it was released (a deleted chat line).
 */
export class Gate {
  constructor() {
    this.pending = new Map(); // id -> {M, item}, in hold order
    this.released = new Set();
  }

  hold(id, M, item) {
    if (this.pending.has(id) || this.released.has(id)) return;
    this.pending.set(id, { M, item });
  }

  release(nowMs) {
    const due = [];
    for (const [id, { M, item }] of this.pending) {
      if (!isDue(M, nowMs)) continue;
      this.pending.delete(id);
      this.released.add(id);
      due.push(item);
    }
    return due;
  }

  shown(id) {
    return this.released.has(id);
  }

  waiting(id) {
    return this.pending.has(id);
  }

  forget(id) {
    this.pending.delete(id);
    this.released.delete(id);
  }
}
