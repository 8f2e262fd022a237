/**
 * Access tokens in a real headless Chromium against real Stagecast binaries on loopback:
 * an origin that lets anonymous viewers watch only `nothing/` refuses /watch/demo/live
 * without a token (a plain "not authorized" message, and the player stops instead of
 * reconnecting), plays it with `?jwt=` of a token for `demo/`, and keeps that token when
 * it reconnects after the origin restarts; a malformed token and a token that expires
 * while watching close the session, and the page says so. Screenshots land in
 * tests/output/browser/<test>/. Run: npm test (in tests/browser), after cargo build.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { browserFor, issueToken, openPage, origin, startNode, stats, testDir, untilAdvanced, untilPlaying, waitFor } from './harness.mjs';

/** Waits for the player to reach `state` and returns the page's stats then. */
function untilState(page, state, ms = 15000) {
  return waitFor(`the page to show '${state}'`, ms, async () => {
    const s = await stats(page);
    return s?.state === state ? s : false;
  });
}

/** Whether the player has stopped for good (no more connection attempts). */
function halted(page) {
  return page.evaluate(() => window.stagecast.player.stopped);
}

test('a protected channel: not authorized without a token, plays with ?jwt= and keeps it across a reconnect', async () => {
  const dir = testDir('access-token');
  const server = await startNode(origin(dir, 'origin', ['--anonymous-subscribe', 'nothing/']));
  const browser = await browserFor(dir);

  // Without a token: SUBSCRIBE is refused (REQUEST_ERROR UNAUTHORIZED), the page says so.
  const anon = await openPage(browser, `${server.httpUrl}/watch/demo/live`);
  const refused = await untilState(anon.page, 'unauthorized');
  assert.match(refused.status, /not authorized/i);
  assert.match(refused.status, /link/);
  assert.equal(refused.bodyState, 'unauthorized');
  assert.equal(refused.decodedFrames, 0);
  assert.equal(refused.deniedBy, 'REQUEST_ERROR 0x1');
  assert.equal(refused.reconnects, 0, 'no reconnect after a refusal');
  assert.equal(await halted(anon.page), true, 'the player stopped instead of retrying');
  assert.ok((await server.metric('stagecast_auth_failures_total')) >= 1, 'the origin refused the SUBSCRIBE');
  await anon.page.screenshot({ path: join(dir, 'not-authorized.png') });
  await anon.page.close();

  // With a token that may subscribe to demo/: it plays.
  const token = issueToken(server.keyFile, { sub: 'viewer', subscribe: ['demo/'] });
  const { page, errors } = await openPage(browser, `${server.httpUrl}/watch/demo/live?jwt=${encodeURIComponent(token)}`);
  const first = await untilPlaying(page);
  const later = await untilAdvanced(page, first.currentTime, 3, 15000);
  assert.ok(later.decodedFrames > first.decodedFrames, `decoded frames ${first.decodedFrames} -> ${later.decodedFrames}`);
  assert.ok(!later.relay.includes(token), 'the stats do not show the token');
  await page.screenshot({ path: join(dir, 'playing-with-token.png') });

  // The origin restarts (same data directory, same key): the page reconnects with its token.
  await server.kill();
  await waitFor('the page to notice the origin is gone', 10000, async () => (await stats(page)).state !== 'playing');
  await server.restart();
  const back = await untilPlaying(page, 20000);
  const resumed = await untilAdvanced(page, back.currentTime, 2, 10000);
  assert.ok(resumed.reconnects >= 1, `reconnects ${resumed.reconnects}`);
  assert.deepEqual(errors, [], 'no console or page errors');
  console.log(`# access: refused without a token; played with one; resumed after ${resumed.reconnects} reconnect(s)`);
});

// The origin drops a refused session before its close reaches the browser: Chromium sees
// "connection lost" (its HTTP/3 control stream is stopped), or when a token expires while
// watching, stream resets that can crash the renderer. Known failing until the node waits
// for the close to be delivered (relay/src/session.rs: `transport.closed().await` after
// `transport.close(..)` on both paths); with that change both tests pass.

test('a malformed token closes the session and the page says it is not valid', async () => {
  const dir = testDir('access-malformed');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);

  // Anyone may watch here, but a token that is not a token is refused at once (0x16).
  const bad = await openPage(browser, `${server.httpUrl}/watch/demo/live?jwt=not-a-token`);
  const malformed = await untilState(bad.page, 'unauthorized');
  assert.match(malformed.status, /not authorized/i);
  assert.match(malformed.status, /not valid/);
  assert.equal(malformed.deniedBy, 'session closed 0x16', 'the page read the close code');
  assert.equal(malformed.decodedFrames, 0);
  assert.equal(await halted(bad.page), true);
  await bad.page.screenshot({ path: join(dir, 'malformed-token.png') });
  console.log(`# access: malformed token refused (${malformed.deniedBy})`);
});

test('a token that expires while watching: the page says the access has expired', async () => {
  const dir = testDir('access-expired');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);

  // A token valid for a few seconds: the page plays, then the origin closes the session
  // when it expires (0x18) and the page says the access has expired.
  const failuresBefore = await server.metric('stagecast_auth_failures_total');
  const token = issueToken(server.keyFile, { sub: 'brief', subscribe: ['demo/'], ttl: '6s' });
  const { page } = await openPage(browser, `${server.httpUrl}/watch/demo/live?jwt=${encodeURIComponent(token)}`);
  const expired = await untilState(page, 'expired', 20000);
  assert.ok(expired.decodedFrames > 0, 'it played before the token expired');
  assert.match(expired.status, /access has expired/i);
  assert.equal(expired.bodyState, 'expired');
  assert.equal(expired.deniedBy, 'session closed 0x18', 'the page read the close code');
  assert.equal(await halted(page), true, 'the player stopped instead of retrying');
  assert.ok((await server.metric('stagecast_auth_failures_total')) > failuresBefore, 'the origin closed the session for its token');
  await page.screenshot({ path: join(dir, 'expired.png') });
  console.log(`# access: token expired after ${expired.currentTime.toFixed(1)} s of media (${expired.deniedBy})`);
});
