/**
 * What goes into a SourceBuffer (viewer/js/player/feed.js): the resume rules of the
 * rendition playing, and switches at group boundaries: the new init segment comes after
 * the old rendition's last group and before the new one's first, whatever order the two
 * subscriptions' objects arrive in; nothing of either is appended twice or out of place.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SlotFeed } from '../js/player/feed.js';

const A = { name: 'video', role: 'video' };
const B = { name: 'video1', role: 'video' };
const obj = (track, groupId, objectId) => ({ groupId, objectId, payload: `${track}:${groupId}.${objectId}` });

/** Runs events [kind, track, group, object] and returns what the sink got, as strings. */
function run(feed, events) {
  const out = [];
  for (const [kind, track, g, o] of events) {
    let actions;
    if (kind === 'obj') actions = feed.push(track, obj(track, g, o));
    else if (kind === 'end') actions = feed.groupEnded(track, g);
    else if (kind === 'cancel') actions = feed.cancel().actions;
    for (const a of actions) out.push(a.append ?? `init:${a.init.name}@${a.at}`);
  }
  return out;
}

test('the playing rendition: joins at a group start, skips what it has, goes on', () => {
  const feed = new SlotFeed(A);
  const got = run(feed, [
    ['obj', 'video', 7, 3], // mid-group: not a join point
    ['obj', 'video', 8, 0],
    ['obj', 'video', 8, 1],
    ['obj', 'video', 8, 1], // again (a resumed subscription)
    ['obj', 'video', 7, 9], // an older group
    ['obj', 'video', 9, 0],
    ['obj', 'other', 9, 1], // not ours
  ]);
  assert.deepEqual(got, ['video:8.0', 'video:8.1', 'video:9.0']);
  // Audio joins anywhere.
  const audio = new SlotFeed({ name: 'audio', role: 'audio' });
  assert.deepEqual(run(audio, [['obj', 'audio', 5, 2]]), ['audio:5.2']);
});

test('a switch hands over at the next group once the old group has ended', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0], ['obj', 'video', 10, 1]]);
  assert.equal(feed.begin(B), 11, 'the new rendition is asked from the next group');
  const got = run(feed, [
    ['obj', 'video1', 10, 0], // a relay ignoring the filter sends its newest group: dropped
    ['obj', 'video1', 11, 0], // held: the old group is not done
    ['obj', 'video', 10, 2],
    ['obj', 'video1', 11, 1],
    ['end', 'video', 10],
    ['obj', 'video1', 11, 2],
    ['obj', 'video', 11, 0], // the old one's next group: left
  ]);
  assert.deepEqual(got, ['video:10.2', 'init:video1@11', 'video1:11.0', 'video1:11.1', 'video1:11.2']);
  assert.equal(feed.track.name, 'video1');
  assert.equal(feed.switching, false);
});

test('the old rendition reaching the new one\'s group switches there, before its object', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B);
  const got = run(feed, [
    ['obj', 'video1', 11, 0],
    ['obj', 'video', 10, 1],
    ['obj', 'video', 11, 0], // its stream end for 10 was not seen yet
    ['obj', 'video1', 11, 1],
  ]);
  assert.deepEqual(got, ['video:10.1', 'init:video1@11', 'video1:11.0', 'video1:11.1']);
});

test('objects of the new rendition out of order are appended in order at the switch', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B);
  const got = run(feed, [
    ['obj', 'video1', 12, 0],
    ['obj', 'video1', 11, 1], // group 11 without its start: not a join point
    ['obj', 'video1', 11, 0],
    ['end', 'video', 10],
  ]);
  assert.deepEqual(got, ['init:video1@11', 'video1:11.0', 'video1:11.1', 'video1:12.0']);
});

test('a new rendition that starts later than asked: the old one plays on to meet it', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B);
  const got = run(feed, [
    ['obj', 'video1', 12, 0], // the relay no longer had 11
    ['end', 'video', 10], // not enough: 11 is missing
    ['obj', 'video', 11, 0],
    ['end', 'video', 11],
  ]);
  assert.deepEqual(got, ['video:11.0', 'init:video1@12', 'video1:12.0']);
});

test('a switch at a set group: the old one waits from that group, and is dropped once the new one brings it', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0], ['obj', 'video', 10, 1]]);
  // The player begins as the old rendition starts group 11.
  assert.equal(feed.begin(B, { at: 11 }), 11);
  const got = run(feed, [
    ['obj', 'video', 11, 0], // held, not appended
    ['obj', 'video', 11, 1],
    ['obj', 'video1', 11, 0], // the new one's start of 11: switch at once
    ['obj', 'video', 11, 2], // left
    ['obj', 'video1', 11, 1],
  ]);
  assert.deepEqual(got, ['init:video1@11', 'video1:11.0', 'video1:11.1']);
});

test('a switch at a set group that the new one does not bring in time: cancel plays the old objects held', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B, { at: 11 });
  assert.equal(feed.joined, false);
  const got = run(feed, [['obj', 'video', 11, 0], ['obj', 'video', 11, 1], ['cancel'], ['obj', 'video', 11, 2], ['obj', 'video1', 11, 0]]);
  assert.deepEqual(got, ['video:11.0', 'video:11.1', 'video:11.2']);
});

test('release: a new rendition slow to come, the old one plays what was held and on, the switch goes on at a later boundary', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B, { at: 11 });
  const out = [];
  out.push(...run(feed, [['obj', 'video', 11, 0]]));
  out.push(...feed.release().map((a) => a.append));
  out.push(...run(feed, [['obj', 'video', 11, 1], ['obj', 'video1', 11, 0], ['obj', 'video1', 12, 0], ['end', 'video', 11], ['obj', 'video1', 12, 1]]));
  assert.deepEqual(out, ['video:11.0', 'video:11.1', 'init:video1@12', 'video1:12.0', 'video1:12.1']);
});

test('a switch at a set group where the new one starts a group later: the old one plays that group first', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B, { at: 11 });
  const got = run(feed, [
    ['obj', 'video', 11, 0],
    ['obj', 'video1', 12, 0], // no 11 from the new one
    ['obj', 'video', 11, 1],
    ['obj', 'video', 12, 0], // the old one reaches 12: 11 was whole
  ]);
  assert.deepEqual(got, ['video:11.0', 'video:11.1', 'init:video1@12', 'video1:12.0']);
});

test('cancel: back to the rendition playing, the other one ignored', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B);
  assert.equal(feed.cancel().track.name, 'video1');
  assert.deepEqual(run(feed, [['obj', 'video1', 11, 0], ['end', 'video', 10], ['obj', 'video', 11, 0]]), ['video:11.0']);
  assert.equal(feed.begin(A), undefined, 'a switch to the rendition playing is none');
  assert.equal(feed.switching, false);
});

test('after a switch, the rendition left is dropped and switching back works the same way', () => {
  const feed = new SlotFeed(A);
  run(feed, [['obj', 'video', 10, 0]]);
  feed.begin(B);
  run(feed, [['obj', 'video1', 11, 0], ['end', 'video', 10]]);
  assert.deepEqual(run(feed, [['obj', 'video', 11, 1], ['obj', 'video1', 11, 1]]), ['video1:11.1']);
  assert.equal(feed.begin(A), 12);
  const got = run(feed, [['obj', 'video', 12, 0], ['end', 'video1', 11], ['obj', 'video', 12, 1]]);
  assert.deepEqual(got, ['init:video@12', 'video:12.0', 'video:12.1']);
});
