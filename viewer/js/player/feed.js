/**
 * What goes into one SourceBuffer, and when: the objects of the rendition playing in a
 * slot (one slot per alternate group: the video ladder, the audio), in order, and the
 * hand-over to another rendition at a group boundary. Pure (no MSE, no clock), unit-tested
 * in viewer/test/feed.test.mjs; the player turns its actions into appends.
 *
 * Objects of the playing rendition: groups before the one we are in and objects already
 * taken are skipped (a relay serves a new subscription, or one after a reconnect, from
 * the start of its newest group), and a video group is joined only at its first object
 * (a keyframe).
 *
 * A switch (`begin(track, {at})`): the new rendition is subscribed before the old one is
 * left, so both arrive for a while. The new one's objects are held until the old one has
 * finished the group before the new one's first whole group (its stream ended, or it sent
 * an object of a later group); then the actions are: the new init segment, the held
 * objects, and from then on the new rendition only (the old one's objects are dropped,
 * and the player unsubscribes it). Group N of every rendition starts at the same media
 * time, so the media is continuous across the boundary.
 *
 * With `at` (the player starts a switch when the old rendition begins group `at`), the
 * old rendition's objects of group `at` on are held too, not appended: the switch happens
 * as soon as the new one brings the start of `at`, and a relay that serves a new
 * subscription from the start of its newest group then sends nothing the old one already
 * covered. `release()` gives the held old objects back and goes on with the switch as
 * one without `at` (the new one is slow to come: the old one plays on meanwhile);
 * `cancel()` gives them back and gives up the switch.
 */

export class SlotFeed {
  /** `track`: the catalog track playing ({name, role, ...}). */
  constructor(track) {
    this.track = track;
    this.group = -1; // the group we are in
    this.next = 0; // the next object id we need in it
    this.ended = -1; // the newest of our track's groups whose stream has ended
    this.pending = null; // {track, held: [obj]} while a switch is under way
  }

  get switching() {
    return this.pending !== null;
  }

  /**
   * Starts a switch to `track`, at group `at` if given; returns the first group it can
   * take over at.
   */
  begin(track, { at } = {}) {
    if (track.name === this.track.name) {
      this.pending = null;
      return undefined;
    }
    this.pending = { track, held: [], at, oldHeld: [] };
    return at ?? this.group + 1;
  }

  /**
   * Gives up a switch under way (a session ended, the choice changed, the new rendition
   * did not come): {track: the one given up, actions: the old rendition's held objects,
   * to append after all}.
   */
  cancel() {
    const pending = this.pending;
    this.pending = null;
    if (!pending) return { track: undefined, actions: [] };
    const actions = [];
    for (const o of pending.oldHeld) if (this.accept(o)) actions.push({ append: o.payload });
    return { track: pending.track, actions };
  }

  /**
   * The old rendition's objects held for a switch at a set group are appended after all,
   * and the switch goes on at whichever group boundary the new one meets first.
   */
  release() {
    if (!this.pending) return [];
    const actions = [];
    for (const o of this.pending.oldHeld) if (this.accept(o)) actions.push({ append: o.payload });
    this.pending.oldHeld = [];
    this.pending.at = undefined;
    // The new one may already hold a group start past what the old one has now played.
    const at = this.switchPoint();
    if (at !== undefined && this.ended >= at - 1 && this.group >= at - 1) actions.push(...this.complete(at));
    return actions;
  }

  /** Whether the new rendition of a switch under way has brought a group start yet. */
  get joined() {
    return this.pending !== null && this.switchPoint() !== undefined;
  }

  /**
   * An object of track `name` arrived; returns the actions it causes:
   * {append: payload}, {init: track} (the switch happens), in order.
   */
  push(name, obj) {
    const out = [];
    if (name === this.track.name) {
      if (this.pending) {
        const at = this.switchPoint();
        // The old rendition reached a group the new one has from its start: switch there.
        if (at !== undefined && obj.groupId >= at) return this.complete(at);
        // Switching at a set group: the old one's objects from it wait for the new one.
        if (this.pending.at !== undefined && obj.groupId >= this.pending.at) {
          this.pending.oldHeld.push(obj);
          return out;
        }
      }
      if (this.accept(obj)) out.push({ append: obj.payload });
      return out;
    }
    if (!this.pending || name !== this.pending.track.name) return out; // a rendition we left
    if (obj.groupId <= this.group) return out; // the old one covers that time
    this.pending.held.push(obj);
    const at = this.switchPoint();
    if (at === undefined) return out;
    if (this.ended >= at - 1 && this.group >= at - 1) return this.complete(at);
    // The old one is already past the end of at - 1 (it began group at or later).
    if (this.pending.oldHeld.some((o) => o.groupId >= at)) return this.complete(at);
    return out;
  }

  /** The stream of group `groupId` of track `name` ended (cleanly or reset). */
  groupEnded(name, groupId) {
    if (name !== this.track.name || !(groupId >= this.ended)) return [];
    this.ended = groupId;
    if (!this.pending) return [];
    const at = this.switchPoint();
    if (at !== undefined && this.ended >= at - 1 && this.group >= at - 1) return this.complete(at);
    return [];
  }

  /** The first group after ours the new rendition has from its first object, if any. */
  switchPoint() {
    let at;
    for (const o of this.pending.held) {
      if (o.objectId === 0 && o.groupId > this.group && (at === undefined || o.groupId < at)) at = o.groupId;
    }
    return at;
  }

  complete(at) {
    const { track, held, oldHeld } = this.pending;
    this.pending = null;
    // Old objects held before the switch point are still the old rendition's to play.
    const out = [];
    for (const o of oldHeld) if (o.groupId < at && this.accept(o)) out.push({ append: o.payload });
    this.track = track;
    this.group = -1;
    this.next = 0;
    this.ended = -1;
    out.push({ init: track, at });
    held.sort((a, b) => a.groupId - b.groupId || a.objectId - b.objectId);
    for (const o of held) if (o.groupId >= at && this.accept(o)) out.push({ append: o.payload });
    return out;
  }

  /** The resume rules of the playing rendition; true when `obj` is to be appended. */
  accept(obj) {
    if (obj.groupId < this.group) return false;
    if (obj.groupId === this.group && obj.objectId < this.next) return false;
    if (obj.groupId > this.group && obj.objectId !== 0 && this.track.role === 'video') return false; // not a join point
    this.group = obj.groupId;
    this.next = obj.objectId + 1;
    return true;
  }
}
