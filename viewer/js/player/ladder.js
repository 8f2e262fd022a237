/**
 * The catalog's tracks as slots the player fills, one rendition each: pure, unit-tested
 * in viewer/test/ladder.test.mjs.
 *
 * Tracks sharing an `altGroup` are alternates (MSF): one slot, its renditions sorted from
 * the lowest bitrate up (the ladder). A track without `altGroup` is its own slot, except
 * video: a page has one video element, so video tracks without `altGroup` are alternates
 * of one another too (a catalog that lists a ladder without marking it still plays one
 * rendition, not three on top of each other).
 *
 * A rendition without a `bitrate` gets one guessed from its size and frame rate (0.1 bit
 * per pixel and frame, about what H.264 needs at these sizes), so it still has a place on
 * the ladder; `bitrateKnown` says which are guesses.
 */

/** Bits per pixel per frame used to guess a missing bitrate. */
const GUESS_BPP = 0.1;

/** [{key, role, renditions: [track ascending by bitrate]}], in the catalog's order. */
export function slotsOf(tracks) {
  const slots = [];
  const byKey = new Map();
  for (const track of tracks) {
    const key = track.altGroup !== undefined ? `alt:${track.altGroup}` : track.role === 'video' ? 'video' : `track:${track.name}`;
    let slot = byKey.get(key);
    if (!slot) {
      slot = { key, role: track.role, renditions: [] };
      byKey.set(key, slot);
      slots.push(slot);
    }
    slot.renditions.push(withBitrate(track));
  }
  for (const slot of slots) {
    slot.renditions.sort((a, b) => a.bitrate - b.bitrate || (a.height ?? 0) - (b.height ?? 0));
  }
  return slots;
}

function withBitrate(track) {
  if (Number.isFinite(track.bitrate) && track.bitrate > 0) return { ...track, bitrateKnown: true };
  const pixels = (track.width ?? 640) * (track.height ?? 360);
  const guess = track.role === 'video' ? pixels * (track.framerate ?? 30) * GUESS_BPP : 128000;
  return { ...track, bitrate: Math.round(guess), bitrateKnown: false };
}

/** A short name for a rendition, for the quality menu: "720p", "480p · 1.2 Mbit/s". */
export function labelOf(track, { withRate = false } = {}) {
  const base = track.height ? `${track.height}p` : track.label ?? track.name;
  if (!withRate || !track.bitrate) return base;
  const rate = track.bitrate >= 1e6 ? `${(track.bitrate / 1e6).toFixed(1)} Mbit/s` : `${Math.round(track.bitrate / 1e3)} kbit/s`;
  return `${base} · ${rate}`;
}

/** The video slot (the one the quality menu and the estimate steer), or undefined. */
export function videoSlot(slots) {
  return slots.find((s) => s.role === 'video');
}
