/**
 * Just enough ISO BMFF reading to date a CMAF chunk: the baseMediaDecodeTime of the first
 * `tfdt` inside `moof/traf`, and the producer's wall clock from a `prft` in front of the
 * `moof` (ISO/IEC 14496-12 §8.16.5; our publishers put one on every video chunk). Used to
 * measure latency; the media bytes themselves go to Media Source Extensions untouched
 * (they skip the `prft`).
 */

/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
const NTP_UNIX_OFFSET_SECS = 2208988800;

function boxes(bytes, start, end) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let pos = start;
  while (pos + 8 <= end) {
    let size = view.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    let header = 8;
    if (size === 1) {
      if (pos + 16 > end) break;
      size = Number(view.getBigUint64(pos + 8));
      header = 16;
    } else if (size === 0) size = end - pos;
    if (size < header || pos + size > end) break;
    out.push({ type, start: pos + header, end: pos + size, view });
    pos += size;
  }
  return out;
}

/** baseMediaDecodeTime (in the track's timescale) of a moof+mdat chunk, or undefined. */
export function decodeTime(chunk) {
  const moof = boxes(chunk, 0, chunk.length).find((b) => b.type === 'moof');
  if (!moof) return undefined;
  const traf = boxes(chunk, moof.start, moof.end).find((b) => b.type === 'traf');
  if (!traf) return undefined;
  const tfdt = boxes(chunk, traf.start, traf.end).find((b) => b.type === 'tfdt');
  if (!tfdt || tfdt.end - tfdt.start < 8) return undefined;
  const version = chunk[tfdt.start];
  if (version === 1) {
    if (tfdt.end - tfdt.start < 12) return undefined;
    return Number(tfdt.view.getBigUint64(tfdt.start + 4));
  }
  return tfdt.view.getUint32(tfdt.start + 4);
}

/**
 * The producer time a chunk carries: `{ unixMs, mediaTime }`, the wall clock (ms since
 * 1970) at which the track's media time `mediaTime` (in its timescale) was made; or
 * undefined without a `prft` before the `moof`.
 */
export function producerTime(chunk) {
  for (const box of boxes(chunk, 0, chunk.length)) {
    if (box.type === 'moof') return undefined;
    if (box.type !== 'prft') continue;
    const version = chunk[box.start];
    // version+flags, reference_track_ID, ntp_timestamp (64), media_time (32 or 64)
    if (box.end - box.start < (version === 1 ? 24 : 20)) return undefined;
    const seconds = box.view.getUint32(box.start + 8);
    const fraction = box.view.getUint32(box.start + 12);
    const mediaTime = version === 1 ? Number(box.view.getBigUint64(box.start + 16)) : box.view.getUint32(box.start + 16);
    const unixMs = (seconds - NTP_UNIX_OFFSET_SECS) * 1000 + (fraction / 2 ** 32) * 1000;
    return { unixMs, mediaTime };
  }
  return undefined;
}
