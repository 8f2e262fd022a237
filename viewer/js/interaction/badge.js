/**
 * Who wrote a chat line, as the panel shows it: the display name as plain text, and a
 * badge for the creator or a moderator. The badge comes from the `role` field the origin
 * puts in chat events and snapshots (proto/src/interaction/timeline.rs), never from the
 * name: a viewer may call themselves "★ creator", and that name is shown as typed, with
 * no badge. The badge is its own element with a word in it (not a glyph after the name),
 * so no name can look like one.
 */

/** The badge for `role` ({role, label, title}), or undefined: only these two roles have one. */
export function badgeOf(role) {
  if (role === 'creator') return { role, label: 'Creator', title: 'The channel’s creator' };
  if (role === 'moderator') return { role, label: 'Mod', title: 'A moderator of this chat' };
  return undefined;
}

/**
 * The name element of a chat line: `make(tag, className, text)` builds an element (the
 * panel's, writing textContent; the tests pass their own). The name span's class says the
 * role for colour (`role-viewer` for anyone without a badge); the badge, if any, is a child.
 */
export function nameElement(line, make) {
  const badge = badgeOf(line.role);
  const name = make('span', `ix-name role-${badge ? badge.role : 'viewer'}`, null);
  name.append(make('span', 'ix-name-text', line.name ?? line.user ?? '?'));
  if (badge) {
    const b = make('span', `ix-badge ix-badge-${badge.role}`, badge.label);
    b.title = badge.title;
    name.append(b);
  }
  return name;
}
