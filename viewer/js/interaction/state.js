/**
 * The state of a broadcast's interaction (docs/interaction.md §2), as the `interaction`
 * track carries it: objects are JSON arrays of MSF event timeline records `{M, data}`;
 * object 0 of a group holds a snapshot (the whole state), the others one event each.
 *
 * `reduce(state, event, M)` applies one event to a state, returning a new state (the
 * input is not changed); it mirrors the origin's reducer (proto/src/interaction/
 * timeline.rs) so both agree on what an event means. `Follower` takes records in
 * whatever order they arrive: it keeps the highest snapshot, applies events with
 * seq = state.seq + 1 in order, holds events that arrive ahead of their turn and drops
 * those at or below the state's seq (already included). No DOM here.
 */

/** How many chat lines a state keeps (as the origin's snapshot does). */
export const CHAT_BACKLOG = 50;
/** How many top tippers a state lists. */
export const TOP_TIPPERS = 5;
/** The most events held waiting for an earlier one; past this, wait for a snapshot. */
export const MAX_AHEAD = 1024;

const EVENT_TYPES = new Set(['chat', 'chat_deleted', 'poll_opened', 'vote', 'poll_closed', 'tip', 'goal', 'reactions', 'viewers', 'moderation']);

/** True for a safe non-negative integer (how seq, counts and amounts arrive). */
const isCount = (v) => Number.isSafeInteger(v) && v >= 0;

/** A state with nothing in it, as of event `seq`. */
export function emptyState(seq = 0) {
  return { seq, chat: [], poll: null, goal: null, top_tippers: [], viewers: 0, slow_mode_secs: 0, reactions: {} };
}

/** A snapshot record's data as a state (missing fields filled in, unknown ones dropped). */
export function stateOf(snapshot) {
  return {
    seq: snapshot.seq,
    chat: Array.isArray(snapshot.chat) ? snapshot.chat.filter((l) => l && isCount(l.seq)) : [],
    poll: snapshot.poll ?? null,
    goal: snapshot.goal ?? null,
    top_tippers: Array.isArray(snapshot.top_tippers) ? snapshot.top_tippers : [],
    viewers: isCount(snapshot.viewers) ? snapshot.viewers : 0,
    slow_mode_secs: isCount(snapshot.slow_mode_secs) ? snapshot.slow_mode_secs : 0,
    reactions: snapshot.reactions && typeof snapshot.reactions === 'object' ? snapshot.reactions : {},
  };
}

/**
 * Parses one object of the interaction track: a JSON array of `{M, data}` records. Records
 * that are not a snapshot or a known event with an integer seq are left out. Throws for
 * bytes that are not a JSON array.
 */
export function parseRecords(payload) {
  const text = typeof payload === 'string' ? payload : new TextDecoder().decode(payload);
  const json = JSON.parse(text);
  if (!Array.isArray(json)) throw new Error('interaction object is not a JSON array');
  const records = [];
  for (const r of json) {
    const data = r?.data;
    if (!data || typeof data !== 'object' || !isCount(data.seq)) continue;
    if (data.type !== 'snapshot' && !EVENT_TYPES.has(data.type)) continue;
    records.push({ M: Number.isFinite(r.M) ? r.M : undefined, data });
  }
  return records;
}

/** `tipper` credited with `amount`, highest first, ties by user id, at most TOP_TIPPERS. */
function creditTipper(list, user, name, amount) {
  const next = list.map((t) => ({ ...t }));
  const found = next.find((t) => t.user === user);
  if (found) found.total += amount;
  else next.push({ user, name, total: amount });
  next.sort((a, b) => b.total - a.total || (a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
  return next.slice(0, TOP_TIPPERS);
}

/**
 * The state after `event` (which must be the one that follows: event.seq = state.seq + 1;
 * anything else throws). `M`: the record's media time, kept on chat lines.
 */
export function reduce(state, event, M) {
  if (event.seq !== state.seq + 1) throw new RangeError(`event ${event.seq} does not follow the state's event ${state.seq}`);
  const s = { ...state, seq: event.seq };
  switch (event.type) {
    case 'chat': {
      const line = { seq: event.seq, user: event.user, name: event.name, role: event.role, text: event.text };
      if (M !== undefined) line.M = M;
      s.chat = [...state.chat, line].slice(-CHAT_BACKLOG);
      break;
    }
    case 'chat_deleted':
      s.chat = state.chat.filter((l) => l.seq !== event.message);
      break;
    case 'poll_opened':
      s.poll = event.poll;
      break;
    case 'vote':
      if (state.poll && state.poll.id === event.poll) s.poll = { ...state.poll, tallies: event.tallies };
      break;
    case 'poll_closed':
      if (state.poll && state.poll.id === event.poll) s.poll = { ...state.poll, tallies: event.tallies, open: false, winner: event.winner ?? null };
      break;
    case 'tip':
      s.goal = event.goal ?? null;
      s.top_tippers = creditTipper(state.top_tippers, event.user, event.name, event.amount);
      break;
    case 'goal':
      s.goal = event.goal;
      break;
    case 'reactions':
      s.reactions = event.counts ?? {};
      break;
    case 'viewers':
      s.viewers = event.count;
      break;
    case 'moderation':
      if (event.action === 'slow_mode') s.slow_mode_secs = event.secs ?? 0;
      break;
    default:
      break; // an event type from a later version: only its seq counts
  }
  return s;
}

/**
 * Follows the timeline as records arrive. `push(record)` returns what changed:
 * `{replaced, applied}` — `replaced` true when a newer snapshot became the state, and
 * `applied` the events applied because of this record, in order, each `{event, M}`.
 */
export class Follower {
  constructor() {
    this.state = null; // null until the first snapshot
    this.ahead = new Map(); // seq -> {event, M}
  }

  push(record) {
    const data = record.data;
    let replaced = false;
    if (data.type === 'snapshot') {
      if (!this.state || data.seq > this.state.seq) {
        this.state = stateOf(data);
        replaced = true;
      }
    } else if ((!this.state || data.seq > this.state.seq) && !this.ahead.has(data.seq) && this.ahead.size < MAX_AHEAD) {
      this.ahead.set(data.seq, { event: data, M: record.M });
    }
    return { replaced, applied: this.drain() };
  }

  drain() {
    const applied = [];
    if (!this.state) return applied;
    for (const seq of [...this.ahead.keys()].sort((a, b) => a - b)) {
      if (seq <= this.state.seq) this.ahead.delete(seq);
      else if (seq === this.state.seq + 1) {
        const held = this.ahead.get(seq);
        this.ahead.delete(seq);
        this.state = reduce(this.state, held.event, held.M);
        applied.push(held);
      } else break;
    }
    return applied;
  }
}
