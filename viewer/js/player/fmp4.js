/**
 * Just enough ISO BMFF reading to date a CMAF chunk: the baseMediaDecodeTime of the first
 * `tfdt` inside `moof/traf`. Used to measure latency; the media bytes themselves go to
 * Media Source Extensions untouched.
 */

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
