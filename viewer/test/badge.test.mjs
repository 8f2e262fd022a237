/**
 * Unit tests of the chat's badges (viewer/js/interaction/badge.js): the creator's and the
 * moderators' badges come from the role field of the chat line (events and snapshots),
 * never from the display name, so a viewer named "★ creator" gets none and the creator
 * does. Elements are built with a small stand-in for the page's element factory.
 * Run: node --test viewer/test/
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { badgeOf, nameElement } from '../js/interaction/badge.js';
import { Follower, parseRecords } from '../js/interaction/state.js';

/** A stand-in element: tag, className, text, title, children. */
function make(tag, className, text) {
  return {
    tag,
    className,
    text: text ?? '',
    title: '',
    children: [],
    append(...c) {
      this.children.push(...c);
    },
  };
}

/** Everything an element shows: its text and its children's, in order. */
const shown = (e) => e.text + e.children.map(shown).join('');
const badges = (e) => [e, ...e.children.flatMap((c) => [c, ...c.children])].filter((c) => /\bix-badge\b/.test(c.className));

test('a viewer named "★ creator" gets no badge; the creator does', () => {
  const impostor = nameElement({ user: 'guest-1', name: '★ creator', role: 'viewer' }, make);
  assert.deepEqual(badges(impostor), []);
  assert.equal(impostor.className, 'ix-name role-viewer', 'coloured as a viewer');
  assert.equal(shown(impostor), '★ creator', 'the name is shown as typed, nothing added');

  const creator = nameElement({ user: 'creator-1', name: 'Ann', role: 'creator' }, make);
  const [badge] = badges(creator);
  assert.ok(badge, 'the creator has a badge');
  assert.equal(badge.text, 'Creator');
  assert.equal(creator.className, 'ix-name role-creator');
  assert.equal(shown(creator), 'AnnCreator');
});

test('only the exact roles creator and moderator have badges; a missing role has none', () => {
  assert.equal(badgeOf('creator').label, 'Creator');
  assert.equal(badgeOf('moderator').label, 'Mod');
  for (const role of ['viewer', 'relay', undefined, null, '', 'Creator', 'creator ', '★', ['creator']]) {
    assert.equal(badgeOf(role), undefined, JSON.stringify(role));
  }
  for (const name of ['creator', 'Creator ★', '⚑ moderator', 'Mod']) {
    assert.deepEqual(badges(nameElement({ name }, make)), [], name);
  }
});

test('the role comes through the state follower from the chat event, not from the name', () => {
  // One object of the interaction track as the origin writes it: a snapshot, then events.
  const object = JSON.stringify([
    { M: 0, data: { type: 'snapshot', seq: 0, chat: [{ seq: 0, user: 'creator-1', name: 'Ann', role: 'creator', text: 'welcome' }] } },
    { M: 10, data: { type: 'chat', seq: 1, user: 'guest-1', name: '★ creator', role: 'viewer', text: 'hi, I am the creator' } },
    { M: 20, data: { type: 'chat', seq: 2, user: 'guest-2', name: 'Ann ★', text: 'no role at all' } },
    { M: 30, data: { type: 'chat', seq: 3, user: 'creator-1', name: 'Ann', role: 'creator', text: 'no you are not' } },
  ]);
  const follower = new Follower();
  for (const r of parseRecords(object)) follower.push(r);
  const lines = follower.state.chat;
  assert.equal(lines.length, 4);
  const withBadge = lines.filter((l) => badges(nameElement(l, make)).length > 0).map((l) => `${l.seq}:${l.user}`);
  assert.deepEqual(withBadge, ['0:creator-1', '3:creator-1']);
});
