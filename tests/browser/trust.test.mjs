/**
 * Where the viewer page sends its tokens, in a real headless Chromium against real
 * Stagecast binaries on loopback: an origin that lists one relay (`--viewer-relay`), two
 * relays under it, one listed and one not (harness.mjs `listRelays`). A page opened with ?relay= of the relay the
 * origin does not list plays anonymously and says why: that relay's log shows a session
 * without the link's ?jwt= token, and the hello its interaction stream carried (forwarded
 * to the origin) had no token either, neither the link's nor the guest token the page had
 * stored. The listed relay gets both. Every page works under the viewer's
 * Content-Security-Policy (no console errors). Run: npm test (in tests/browser), after
 * cargo build.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { browserFor, issueToken, listRelays, origin, relay, startNode, testDir, untilPlaying, waitFor } from './harness.mjs';

/** The "session started" lines of a node's log, with whom each session's token named. */
function sessionsIn(node) {
  const log = readFileSync(join(node.dir, `${node.name}.log`), 'utf8');
  return log
    .replace(/\x1b\[[0-9;]*m/g, '') // the log's colours
    .split('\n')
    .filter((l) => l.includes('session started'))
    .map((l) => /who="?([^"\s]+)"?/.exec(l)?.[1]);
}

/** The interaction panel's view: who the origin welcomed, whether a token is in use. */
function panelOf(page) {
  return page.evaluate(() => {
    const p = window.stagecast?.interaction?.snapshot();
    const note = document.getElementById('ix-untrusted');
    return p && { welcome: p.welcome, client: p.client, relayTrusted: p.relayTrusted, hasToken: p.hasToken, note: note.hidden ? '' : note.textContent, joinHidden: document.getElementById('ix-join').hidden };
  });
}

/** Waits until the origin has welcomed the page's interaction stream. */
function untilWelcomed(page, ms = 20000) {
  return waitFor('the chat welcome', ms, async () => {
    const p = await panelOf(page);
    return p?.welcome ? p : false;
  });
}

test('the page sends its tokens only to relays the origin lists', async () => {
  const dir = testDir('trust-relays');
  const server = await startNode(origin(dir));
  const listed = await startNode(relay(dir, 'listed', server));
  const unlisted = await startNode(relay(dir, 'unlisted', server));
  // The origin names the listed relay in /viewer/config.json (restarted with the flag,
  // on the same ports: the relays come back by themselves).
  const [listedUrl] = await listRelays(server, [listed]);
  await waitFor('unlisted to reconnect', 30000, async () => (await unlisted.metric('stagecast_upstream_connected')) === 1);
  const config = await (await fetch(`${server.httpUrl}/viewer/config.json`)).json();
  assert.deepEqual(config.relays, [listedUrl.replace(/\/$/, '')]);

  const linkToken = issueToken(server.keyFile, { sub: 'link-viewer', name: 'Link Viewer', subscribe: [''] });
  const storedToken = issueToken(server.keyFile, { sub: 'stored-guest', name: 'Stored Guest', subscribe: [''] });
  const browser = await browserFor(dir);
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const errors = [];
  const open = async (url) => {
    const page = await context.newPage();
    page.on('console', (msg) => msg.type() === 'error' && errors.push(`console: ${msg.text()}`));
    page.on('pageerror', (err) => errors.push(`page: ${err.message}`));
    await page.goto(url);
    return page;
  };
  // The page has a guest token saved from an earlier visit.
  const home = await open(`${server.httpUrl}/`);
  await home.evaluate((token) => localStorage.setItem('stagecast.guest', JSON.stringify({ token, name: 'Stored Guest' })), storedToken);
  await home.close();
  const watch = (r, jwt) => {
    const q = new URLSearchParams({ relay: `https://localhost:${r.quic}/`, cert: `${r.httpUrl}/certificate.sha256` });
    if (jwt) q.set('jwt', jwt);
    return `${server.httpUrl}/watch/demo/live?${q}`;
  };

  // 1. The relay nobody listed, with a ?jwt= in the link: watched anonymously.
  const evil = await open(watch(unlisted, linkToken));
  const playing = await untilPlaying(evil, 30000);
  assert.equal(playing.relayTrusted, false);
  assert.equal(playing.tokenSent, false, 'the player connected without the token');
  const anon = await untilWelcomed(evil);
  assert.equal(anon.welcome.user ?? null, null, `the hello carried no token: ${JSON.stringify(anon.welcome)}`);
  assert.equal(anon.hasToken, false);
  assert.equal(anon.joinHidden, true, 'no join form: a guest token would go to that relay');
  assert.match(anon.note, new RegExp(`localhost:${unlisted.quic}.*does not list.*anonymously`));
  await evil.screenshot({ path: join(dir, 'unlisted-relay.png') });
  const seenByUnlisted = sessionsIn(unlisted);
  assert.ok(seenByUnlisted.length >= 1, 'the unlisted relay had the page\'s session');
  assert.ok(seenByUnlisted.every((who) => who === 'anonymous'), `the unlisted relay saw: ${seenByUnlisted}`);
  await evil.close();

  // 2. The listed relay, no ?jwt=: the stored guest token goes in the hello.
  const good = await open(watch(listed));
  await untilPlaying(good, 30000);
  const guest = await untilWelcomed(good);
  assert.equal(guest.relayTrusted, true);
  assert.equal(guest.welcome.user, 'stored-guest', `welcomed as ${JSON.stringify(guest.welcome)}`);
  assert.equal(guest.note, '');
  await good.close();

  // 3. The listed relay with ?jwt=: the token is in the CONNECT URL, and in the hello.
  const linked = await open(watch(listed, linkToken));
  const linkedPlaying = await untilPlaying(linked, 30000);
  assert.equal(linkedPlaying.tokenSent, true);
  const viaLink = await untilWelcomed(linked);
  assert.equal(viaLink.welcome.user, 'link-viewer');
  await waitFor('the listed relay to log the token', 5000, () => sessionsIn(listed).includes('link-viewer'));
  await linked.close();

  // Nothing the page did reached the unlisted relay with a name on it.
  assert.ok(sessionsIn(unlisted).every((who) => who === 'anonymous'), `the unlisted relay saw: ${sessionsIn(unlisted)}`);
  assert.deepEqual(errors, [], 'no console or page errors (the pages work under their CSP)');
  console.log(`# trust: unlisted relay saw ${seenByUnlisted.length} anonymous session(s); listed relay welcomed stored-guest and link-viewer`);
});
