/**
 * The viewer's guest identity: the guest token from POST /api/guest kept in localStorage
 * while it is valid, and the last one kept after it ends, so that the origin gives this
 * browser the same identity back when it joins again.
 */

import { tokenExpiry } from '../player/access.js';

const GUEST_KEY = 'stagecast.guest';
const PREVIOUS_GUEST_KEY = 'stagecast.guest.previous';

/** The stored guest, if its token is valid for at least another minute. */
export function loadGuest() {
  try {
    const saved = JSON.parse(localStorage.getItem(GUEST_KEY) ?? 'null');
    if (saved?.token && (tokenExpiry(saved.token) ?? 0) > Date.now() + 60000) return saved;
  } catch {
    // no storage, or junk in it
  }
  return undefined;
}

export function saveGuest(guest) {
  try {
    const old = localStorage.getItem(GUEST_KEY);
    // An ended guest token still names this browser's identity: the origin gives the
    // same one back when it is shown (POST /api/guest {token}).
    if (old) localStorage.setItem(PREVIOUS_GUEST_KEY, old);
    if (guest) localStorage.setItem(GUEST_KEY, JSON.stringify(guest));
    else localStorage.removeItem(GUEST_KEY);
  } catch {
    // private mode: the guest lasts as long as the page
  }
}

/** The guest token this browser held last, expired or not, if any. */
function previousGuestToken() {
  try {
    for (const key of [GUEST_KEY, PREVIOUS_GUEST_KEY]) {
      const token = JSON.parse(localStorage.getItem(key) ?? 'null')?.token;
      if (typeof token === 'string') return token;
    }
  } catch {
    // no storage, or junk in it
  }
  return undefined;
}

/**
 * Asks the page's origin for a guest token: POST /api/guest {name, token} -> {token, user,
 * name}; `token`, the browser's previous guest token, keeps its identity.
 */
export async function joinAsGuest(name) {
  const res = await fetch('/api/guest', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, token: previousGuestToken() }),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok || typeof body?.token !== 'string') {
    // The origin explains a refusal in plain text ("a display name is 1 to 32 …").
    const why = body?.message ?? (text.trim().slice(0, 200) || `HTTP ${res.status}`);
    throw new Error(`Could not join the chat: ${why}`);
  }
  return body;
}
