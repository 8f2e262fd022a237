/**
 * What the page's URL says: which broadcast (/watch/<path>) and which relay
 * (?relay=https://host:port, certificate fingerprint by &fingerprint=HEX or fetched from
 * &cert=URL, &latency=low), and the viewer's access token (&jwt=TOKEN, which the player
 * adds to the WebTransport URL it connects to). Without ?relay the origin that served the
 * page is used, at the MoQ port it announces in /viewer/config.json, pinned with its
 * /certificate.sha256.
 *
 * Tokens (the ?jwt= one and the guest token the page keeps) go only to relays the origin
 * vouches for: its own MoQ endpoint and the `relays` listed in /viewer/config.json. Anyone
 * can send a viewer a link with ?relay= of their own host; through such a relay the page
 * watches anonymously (`trusted(url)` is false for it).
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

/** The origin (`https://host:port`) of `url`, or undefined for anything but an https:// URL. */
function httpsOrigin(url) {
  try {
    const u = new URL(url);
    return u.protocol === 'https:' ? u.origin : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The relays a token may go to, from the page's `hostname` and its /viewer/config.json
 * (`{moqtPort, relays}`): a function telling whether a WebTransport URL is one of them.
 */
export function trustedRelays(hostname, config) {
  const origins = new Set();
  if (Number.isInteger(config?.moqtPort)) origins.add(httpsOrigin(`https://${hostname}:${config.moqtPort}/`));
  for (const r of Array.isArray(config?.relays) ? config.relays : []) {
    const o = typeof r === 'string' ? httpsOrigin(r) : undefined;
    if (o) origins.add(o);
  }
  origins.delete(undefined);
  return (url) => {
    const o = httpsOrigin(url);
    return o !== undefined && origins.has(o);
  };
}

/** /viewer/config.json, or undefined if it cannot be read (then no relay is trusted). */
async function viewerConfig() {
  try {
    const res = await fetch('/viewer/config.json', { cache: 'no-store' });
    return res.ok ? await res.json() : undefined;
  } catch {
    return undefined;
  }
}

/** {relay, fingerprint, certUrl, token, lowLatency, trusted} for this page. */
export async function connectionOf(loc) {
  const q = new URLSearchParams(loc.search);
  const lowLatency = q.get('latency') === 'low';
  const token = q.get('jwt')?.trim() || undefined;
  const fingerprint = q.get('fingerprint')?.replace(/[^0-9a-fA-F]/g, '') || undefined;
  const relay = q.get('relay');
  const config = await viewerConfig();
  const trusted = trustedRelays(loc.hostname, config);
  if (relay) {
    const url = new URL(relay);
    if (url.protocol !== 'https:') throw new Error('the relay URL must start with https://');
    return { relay: url.href, fingerprint, certUrl: q.get('cert') ?? undefined, token, lowLatency, trusted };
  }
  if (!config) throw new Error('cannot read /viewer/config.json');
  // Chromium resolves localhost to ::1 for QUIC; the server listens on [::] for that.
  return { relay: `https://${loc.hostname}:${config.moqtPort}/`, fingerprint, certUrl: q.get('cert') ?? '/certificate.sha256', token, lowLatency, trusted };
}
