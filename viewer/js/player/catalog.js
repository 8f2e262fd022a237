/**
 * Reads an MSF catalog (draft-ietf-moq-msf, CMSF packaging) into what the player needs:
 * for each playable CMAF track its name, role, MSE type string, timescale and init segment,
 * and what the player needs to choose between alternates (`altGroup`, `bitrate`, `width`,
 * `height`, `framerate`: ladder.js).
 */

/** Thrown when the catalog is not something this player can play. */
export class CatalogError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CatalogError';
  }
}

function base64Bytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Parses catalog JSON bytes; returns {version, tracks: [{name, role, mime, timescale, init, ...}]}. */
export function parseCatalog(bytes) {
  let json;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new CatalogError(`catalog is not JSON: ${err.message}`);
  }
  if (!json || !Array.isArray(json.tracks)) throw new CatalogError('catalog has no tracks');
  const tracks = [];
  for (const t of json.tracks) {
    if (t.packaging !== 'cmaf' || typeof t.name !== 'string' || !t.initData || !t.codec) continue;
    const role = t.role ?? (t.width ? 'video' : t.samplerate ? 'audio' : undefined);
    if (role !== 'video' && role !== 'audio') continue;
    tracks.push({
      name: t.name,
      role,
      codec: t.codec,
      mime: `${role}/mp4; codecs="${t.codec}"`,
      timescale: t.timescale,
      bitrate: t.bitrate,
      width: t.width,
      height: t.height,
      framerate: t.framerate,
      altGroup: Number.isInteger(t.altGroup) ? t.altGroup : undefined,
      label: typeof t.label === 'string' ? t.label : undefined,
      initData: t.initData,
      init: base64Bytes(t.initData),
    });
  }
  if (tracks.length === 0) throw new CatalogError('catalog lists no CMAF audio or video track');
  return { version: json.version, tracks };
}

/** True when two parsed catalogs describe the same tracks with the same init segments. */
export function sameTracks(a, b) {
  if (!a || !b || a.tracks.length !== b.tracks.length) return false;
  return a.tracks.every((t, i) => t.name === b.tracks[i].name && t.mime === b.tracks[i].mime && t.initData === b.tracks[i].initData);
}
