/**
 * Access tokens on the viewer's side: the page's `?jwt=TOKEN` travels in the query of the
 * WebTransport URL it connects to (the server reads the CONNECT URL's `jwt` parameter),
 * and a refusal, whichever way the server says it, becomes one plain message:
 *
 * - a SUBSCRIBE answered with REQUEST_ERROR UNAUTHORIZED (or the request-level
 *   MALFORMED_AUTH_TOKEN / EXPIRED_AUTH_TOKEN);
 * - a session closed with UNAUTHORIZED, MALFORMED_AUTH_TOKEN or EXPIRED_AUTH_TOKEN
 *   (at setup, or when the token expires while watching).
 *
 * A refusal is final for the page: reconnecting with the same token cannot help, so the
 * player stops and says what would (a link with a valid token).
 *
 * The page also reads the token's expiry (its `exp` claim, not verified: the server
 * decides) so that a session lost after the token expired counts as expired even when
 * the close code does not reach the page.
 */

import { RequestErrorCode, SessionCloseCode } from '../moqt/messages.js';
import { RequestError, SessionClosed } from '../moqt/session.js';

/** `url` (a WebTransport https:// URL) with `token` as its `jwt` query parameter. */
export function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set('jwt', token);
  return u.href;
}

/** When `token` (a JWT) expires, in ms since the epoch; undefined if it does not say. */
export function tokenExpiry(token) {
  const payload = token?.split('.')[1];
  if (!payload) return undefined;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = JSON.parse(json).exp;
    return Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The state and message for a token that has expired. */
export const EXPIRED = Object.freeze({ state: 'expired', message: 'Your access has expired. Open a new link to this channel to keep watching.' });

/**
 * The player state and message for an error that refuses access, or undefined for any
 * other error. `hasToken`: whether the page presented a token.
 */
export function accessDenied(err, hasToken) {
  let kind;
  if (err instanceof RequestError) {
    if (err.code === RequestErrorCode.UNAUTHORIZED) kind = 'unauthorized';
    else if (err.code === RequestErrorCode.MALFORMED_AUTH_TOKEN) kind = 'malformed';
    else if (err.code === RequestErrorCode.EXPIRED_AUTH_TOKEN) kind = 'expired';
  } else if (err instanceof SessionClosed) {
    if (err.code === SessionCloseCode.UNAUTHORIZED) kind = 'unauthorized';
    else if (err.code === SessionCloseCode.MALFORMED_AUTH_TOKEN) kind = 'malformed';
    else if (err.code === SessionCloseCode.EXPIRED_AUTH_TOKEN) kind = 'expired';
  }
  switch (kind) {
    case 'expired':
      return EXPIRED;
    case 'malformed':
      return { state: 'unauthorized', message: 'Not authorized: the access token in this link is not valid. Check that the whole link was copied.' };
    case 'unauthorized':
      return {
        state: 'unauthorized',
        message: hasToken
          ? 'You are not authorized to watch this channel: your access token does not allow it.'
          : 'You are not authorized to watch this channel. It needs an access link: open the link you were given.',
      };
    default:
      return undefined;
  }
}
