/**
 * The broadcast's `interaction` track (docs/interaction.md §2): found in the MSF catalog
 * as an event timeline track, subscribed with an ordinary MoQ SUBSCRIBE on the player's
 * session (like the media tracks), each object parsed into records for the Follower.
 */

import { parseRecords } from './state.js';

export const EVENT_TYPE = 'dev.stagecast.interaction.v1';

/**
 * The name of the interaction track the catalog (JSON bytes or text) lists, or undefined:
 * a track with packaging "eventtimeline" and our eventType (or, without an eventType, the
 * name "interaction").
 */
export function interactionTrackOf(catalog) {
  let json;
  try {
    json = JSON.parse(typeof catalog === 'string' ? catalog : new TextDecoder().decode(catalog));
  } catch {
    return undefined;
  }
  const tracks = Array.isArray(json?.tracks) ? json.tracks : [];
  const track = tracks.find((t) => t && typeof t.name === 'string' && t.packaging === 'eventtimeline' && (t.eventType === EVENT_TYPE || (!t.eventType && t.name === 'interaction')));
  return track?.name;
}

/**
 * Subscribes to `name` in `namespace` on `session` (a MoqtSession). `onRecords(records,
 * obj)` gets the records of every object (objects that are not JSON arrays are skipped,
 * counted in `bad`); `onDone(why)` the end of the subscription. A joining FETCH of the
 * current group is asked for too, for a publisher whose SUBSCRIBE starts at the next
 * object (duplicates are harmless: the Follower drops what it already has).
 * Resolves to the subscription once SUBSCRIBE_OK arrives.
 */
export async function followTrack(session, namespace, name, { onRecords, onDone }) {
  const stats = { objects: 0, bad: 0 };
  const onObject = (obj) => {
    if (obj.status !== 0 || obj.payload.length === 0) return;
    stats.objects++;
    let records;
    try {
      records = parseRecords(obj.payload);
    } catch {
      stats.bad++;
      return;
    }
    onRecords(records, obj);
  };
  const sub = await session.subscribe(namespace, name, { onObject, onDone });
  sub.stats = stats;
  session.joiningFetch(sub, 0, { onObject }).catch(() => {});
  return sub;
}
