/**
 * Unit tests of the viewer's access-token handling (viewer/js/player/access.js and the
 * `jwt` parameter of location.js): the token reaches the WebTransport URL, and every way
 * a server refuses it (REQUEST_ERROR codes, session close codes) becomes a final
 * "not authorized" or "expired" message, while other errors do not; the page reads a
 * token's expiry; tokens go only to the origin's own MoQ endpoint and the relays its
 * /viewer/config.json lists.
 * Run: node --test viewer/test/
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { accessDenied, tokenExpiry, withToken } from '../js/player/access.js';
import { connectionOf, trustedRelays } from '../js/location.js';
import { RequestErrorCode, SessionCloseCode } from '../js/moqt/messages.js';
import { RequestError, SessionClosed } from '../js/moqt/session.js';

const requestError = (errorCode) => new RequestError({ errorCode, reason: '' });

test('the token goes into the WebTransport URL as ?jwt=, encoded, replacing any other', () => {
  assert.equal(withToken('https://localhost:4443/', undefined), 'https://localhost:4443/');
  assert.equal(withToken('https://localhost:4443/', 'a.b.c'), 'https://localhost:4443/?jwt=a.b.c');
  assert.equal(withToken('https://relay.example:4444/moq?x=1&jwt=old', 'a+b/c='), 'https://relay.example:4444/moq?x=1&jwt=a%2Bb%2Fc%3D');
});

test('the page reads ?jwt= next to ?relay=; no jwt means no token', async () => {
  const c = await connectionOf({ search: '?relay=https%3A%2F%2Flocalhost%3A4444%2F&jwt=eyJ.x.y', hostname: 'localhost' });
  assert.equal(c.relay, 'https://localhost:4444/');
  assert.equal(c.token, 'eyJ.x.y');
  const none = await connectionOf({ search: '?relay=https%3A%2F%2Flocalhost%3A4444%2F&jwt=', hostname: 'localhost' });
  assert.equal(none.token, undefined);
});

test('a token may go to the origin and the relays it lists, and nowhere else', () => {
  const trusted = trustedRelays('stage.example', { moqtPort: 4443, relays: ['https://edge1.example:4443', 'https://EDGE2.example/', 42, 'http://plain.example:80', 'junk'] });
  assert.equal(trusted('https://stage.example:4443/'), true, "the origin's own endpoint");
  assert.equal(trusted('https://edge1.example:4443/moq?x=1'), true, 'a listed relay, any path');
  assert.equal(trusted('https://edge2.example:443/'), true, 'origins compare as the browser computes them');
  for (const url of [
    'https://evil.example/',
    'https://edge1.example:4444/', // another port
    'https://edge1.example.evil.example:4443/',
    'https://stage.example:4444/',
    'http://plain.example/', // not https, even if listed
    'https://plain.example/',
    'not a url',
    undefined,
  ]) {
    assert.equal(trusted(url), false, String(url));
  }
  // No config (it could not be read): nothing is trusted.
  assert.equal(trustedRelays('stage.example', undefined)('https://stage.example:4443/'), false);
});

test('a ?relay= the origin does not list is not trusted; config.json decides', async () => {
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url) => {
    assert.equal(url, '/viewer/config.json');
    return new Response(JSON.stringify({ moqtPort: 4443, relays: ['https://edge.example:4443'] }));
  };
  try {
    const evil = await connectionOf({ search: '?relay=https%3A%2F%2Fevil.example%2F&fingerprint=ab&jwt=eyJ.x.y', hostname: 'stage.example' });
    assert.equal(evil.relay, 'https://evil.example/');
    assert.equal(evil.trusted(evil.relay), false);
    const edge = await connectionOf({ search: '?relay=https%3A%2F%2Fedge.example%3A4443%2F', hostname: 'stage.example' });
    assert.equal(edge.trusted(edge.relay), true);
    const own = await connectionOf({ search: '', hostname: 'stage.example' });
    assert.equal(own.relay, 'https://stage.example:4443/');
    assert.equal(own.trusted(own.relay), true);
  } finally {
    globalThis.fetch = realFetch;
  }
});

test('a refused SUBSCRIBE says not authorized, in words that fit whether a token was given', () => {
  const anon = accessDenied(requestError(RequestErrorCode.UNAUTHORIZED), false);
  assert.equal(anon.state, 'unauthorized');
  assert.match(anon.message, /not authorized/i);
  assert.match(anon.message, /link/);
  const withTok = accessDenied(requestError(RequestErrorCode.UNAUTHORIZED), true);
  assert.equal(withTok.state, 'unauthorized');
  assert.match(withTok.message, /your access token does not allow/);
  assert.equal(accessDenied(requestError(RequestErrorCode.EXPIRED_AUTH_TOKEN), true).state, 'expired');
  assert.equal(accessDenied(requestError(RequestErrorCode.MALFORMED_AUTH_TOKEN), true).state, 'unauthorized');
});

test('a session closed for its token says not authorized or expired', () => {
  const closed = (closeCode) => new SessionClosed({ closeCode, reason: 'refused' });
  assert.equal(accessDenied(closed(SessionCloseCode.UNAUTHORIZED), true).state, 'unauthorized');
  const malformed = accessDenied(closed(SessionCloseCode.MALFORMED_AUTH_TOKEN), true);
  assert.equal(malformed.state, 'unauthorized');
  assert.match(malformed.message, /not valid/);
  const expired = accessDenied(closed(SessionCloseCode.EXPIRED_AUTH_TOKEN), true);
  assert.equal(expired.state, 'expired');
  assert.match(expired.message, /access has expired/);
  assert.equal(SessionCloseCode.UNAUTHORIZED, 0x2);
  assert.equal(SessionCloseCode.MALFORMED_AUTH_TOKEN, 0x16);
  assert.equal(SessionCloseCode.EXPIRED_AUTH_TOKEN, 0x18);
});

test('other failures are not access problems: the player keeps reconnecting for them', () => {
  assert.equal(accessDenied(requestError(RequestErrorCode.DOES_NOT_EXIST), false), undefined);
  assert.equal(accessDenied(requestError(RequestErrorCode.INTERNAL_ERROR), true), undefined);
  // Request-level 0x2 is TIMEOUT, not the session's UNAUTHORIZED.
  assert.equal(accessDenied(requestError(0x2), true), undefined);
  assert.equal(accessDenied(new SessionClosed({ closeCode: 0x0 }), true), undefined);
  assert.equal(accessDenied(new SessionClosed({ closeCode: 0x3 }), true), undefined);
  assert.equal(accessDenied(new Error('connection lost'), true), undefined);
});

test("the token's expiry is read from its exp claim (base64url, unpadded); anything else has none", () => {
  const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const jwt = (claims) => `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.c2ln`;
  assert.equal(tokenExpiry(jwt({ sub: 'viewer?>>', exp: 1800000000 })), 1800000000 * 1000);
  assert.equal(tokenExpiry(jwt({ sub: 'no expiry' })), undefined);
  assert.equal(tokenExpiry('not-a-token'), undefined);
  assert.equal(tokenExpiry('a.%%%.c'), undefined);
  assert.equal(tokenExpiry(undefined), undefined);
});
