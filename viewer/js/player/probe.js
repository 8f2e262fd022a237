/**
 * Probing the link: a standalone FETCH of the start of a group the relay already holds
 * (the previous group of the rendition playing: the edge has it, since we just received
 * it), which it sends as fast as the link allows, unlike live objects that come only as
 * fast as they are made. What arrives feeds the estimator (estimator.js `probe`).
 *
 * A probe costs the live tracks link time, so it is small: the first objects of the group
 * up to a byte budget the player gives (a fraction of a second at the current estimate).
 * Their sizes are known, since the player received them live.
 */

/** A probe that has not finished by then is abandoned (ms). */
const PROBE_TIMEOUT_MS = 3000;

/**
 * How many objects, from object 0, to fetch of a group whose object sizes were `sizes`
 * (bytes by object id) within `budget` bytes: at least one, and 0 when none is known.
 */
export function probeCount(sizes, budget) {
  let n = 0;
  let total = 0;
  while (n < sizes.length && sizes[n] !== undefined) {
    if (n > 0 && total + sizes[n] > budget) break;
    total += sizes[n];
    n++;
  }
  return n;
}

/**
 * Fetches objects 0..count-1 of `group` of `track` on `session`. Resolves to
 * {start, end, bytes} (ms, ms, bytes) when they have all arrived, or undefined when the
 * relay refuses, sends nothing, or is too slow.
 */
export async function runProbe(session, namespace, track, group, count) {
  let bytes = 0;
  let last;
  let objects = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  let request;
  const timer = setTimeout(() => done(false), PROBE_TIMEOUT_MS);
  try {
    request = await session.fetchRange(namespace, track, { group, object: 0 }, { group, object: count }, {
      onObject: (obj) => {
        bytes += obj.payload.length;
        last = obj.arrival;
        if (++objects >= count) done(true);
      },
      onGroupEnd: () => done(true),
    });
    const complete = await finished;
    const start = request.fetch.firstByteAt;
    if (!complete || objects === 0 || start === undefined) return undefined;
    return { start, end: last, bytes };
  } catch {
    return undefined; // refused (not held, too many FETCHes): no sample this time
  } finally {
    clearTimeout(timer);
    request?.fetch.end();
  }
}
