/**
 * What the page's URL says: which broadcast (/watch/<path>) and which relay
 * (?relay=https://host:port, certificate fingerprint by &fingerprint=HEX or fetched from
 * &cert=URL, &latency=low), and the viewer's access token (&jwt=TOKEN, which the player
 * adds to the WebTransport URL it connects to). Without ?relay the origin that served the
 * page is used, at the MoQ port it announces in /viewer/config.json, pinned with its
 * /certificate.sha256.
 */

/** The broadcast path of a /watch/ URL as namespace fields, or undefined. */
export function broadcastOf(pathname) {
  const m = /^\/watch\/(.+)$/.exec(pathname);
  if (!m) return undefined;
  const fields = m[1].split('/').filter((f) => f.length > 0).map(decodeURIComponent);
  return fields.length > 0 && fields.length <= 32 ? fields : undefined;
}

/** Link to a broadcast's watch page, keeping the relay choice of `search`. */
export function watchHref(name, search = '') {
  return '/watch/' + name.split('/').map(encodeURIComponent).join('/') + search;
}

/** {relay, fingerprint, certUrl, token, lowLatency} for this page. */
export async function connectionOf(loc) {
  const q = new URLSearchParams(loc.search);
  const lowLatency = q.get('latency') === 'low';
  const token = q.get('jwt')?.trim() || undefined;
  const fingerprint = q.get('fingerprint')?.replace(/[^0-9a-fA-F]/g, '') || undefined;
  const relay = q.get('relay');
  if (relay) {
    const url = new URL(relay);
    if (url.protocol !== 'https:') throw new Error('the relay URL must start with https://');
    return { relay: url.href, fingerprint, certUrl: q.get('cert') ?? undefined, token, lowLatency };
  }
  const res = await fetch('/viewer/config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`cannot read /viewer/config.json (${res.status})`);
  const config = await res.json();
  // Chromium resolves localhost to ::1 for QUIC; the server listens on [::] for that.
  return { relay: `https://${loc.hostname}:${config.moqtPort}/`, fingerprint, certUrl: q.get('cert') ?? '/certificate.sha256', token, lowLatency };
}
