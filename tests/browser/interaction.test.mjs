/**
 * The interaction panel (chat, polls, reactions) in a real headless Chromium against real
 * Stagecast binaries on loopback, with the `stagecast` CLI as the other side:
 * - a chat message sent with `stagecast chat --send` appears in the page;
 * - a guest who joined in the page ("join chat as", POST /api/guest) votes in a poll a
 *   creator opened with `stagecast poll open`, and `stagecast state --json` counts it;
 *   sending too fast is refused and the page says so near the input;
 * - a message with HTML in it shows as literal text: no script runs, no element is made;
 * - a guest gets development credits, tips with a message: the goal bar a creator set with
 *   `stagecast goal` moves, the tip alert shows; a reaction floats its count;
 * - through a relay: the page's requests are forwarded to the origin, and the state comes
 *   back down the relay's interaction track; a message typed while the relay is down is
 *   sent once it is back, and stored once.
 * Screenshots land in tests/output/browser/<test>/. Run: npm test (in tests/browser),
 * after cargo build.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';

import { bin, browserFor, issueToken, listRelays, openPage, origin, relay, startNode, testDir, untilPlaying, waitFor } from './harness.mjs';

/** Runs `stagecast ARGS`; resolves with its stdout, rejects with its stderr on failure. */
function cli(args, ms = 20000) {
  return new Promise((resolve, reject) => {
    execFile(bin('stagecast'), args, { encoding: 'utf8', timeout: ms }, (err, stdout, stderr) => {
      if (err) reject(new Error(`stagecast ${args.slice(0, 3).join(' ')} failed (${err.code ?? err.signal}): ${stderr.trim()}`));
      else resolve(stdout);
    });
  });
}

/** The node's address and certificate pin, as every network command takes them. */
const at = (node) => [node.moqtUrl];
const pin = (node) => ['--fingerprint', node.fingerprint];

/** `stagecast state URL BROADCAST`: the broadcast's current snapshot (one JSON line). */
async function stateOf(node, broadcast = 'demo/live', token) {
  const args = ['state', ...at(node), broadcast, ...pin(node)]; // prints one JSON line (it has no --json flag)
  if (token) args.push('--token', token);
  const out = await cli(args);
  const line = out.trim().split('\n').at(-1);
  return JSON.parse(line);
}

/** What the page's panel holds (window.stagecast.interaction.snapshot()). */
function panel(page) {
  return page.evaluate(() => window.stagecast?.interaction?.snapshot());
}

/** Waits until the panel has a state from the interaction track. */
function untilPanelState(page, ms = 15000) {
  return waitFor('the interaction state in the page', ms, async () => {
    const p = await panel(page);
    return p?.state ? p : false;
  });
}

/** The chat lines shown in the page: [{name, badge, text, html}]. */
function chatLines(page) {
  return page.evaluate(() => [...document.querySelectorAll('#ix-chat li')].map((li) => ({
    name: li.querySelector('.ix-name-text')?.textContent,
    badge: li.querySelector('.ix-badge')?.textContent,
    text: li.querySelector('.ix-text')?.textContent,
    html: li.querySelector('.ix-text')?.innerHTML,
  })));
}

function untilLine(page, text, ms = 15000) {
  return waitFor(`the chat line '${text}' in the page`, ms, async () => (await chatLines(page)).find((l) => l.text === text));
}

/** Joins the chat in the page as a guest named `name`; resolves with the welcome. */
async function joinAsGuest(page, name) {
  await page.locator('#ix-join-name').fill(name);
  await page.locator('#ix-join button').click();
  return waitFor(`the page to join the chat as ${name}`, 15000, async () => {
    const p = await panel(page);
    return p?.welcome?.user ? p.welcome : false;
  });
}

test('a chat message sent with the CLI appears in the page', async () => {
  const dir = testDir('interaction-chat');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);
  const { page, errors } = await openPage(browser, `${server.httpUrl}/watch/demo/live`);
  await untilPlaying(page);
  const first = await untilPanelState(page);
  assert.equal(first.track, 'subscribed', 'the page subscribed to the interaction track');
  assert.equal(first.welcome?.user ?? null, null, 'an anonymous page says hello without a token');
  // Without a token the page offers to join; the input appears once it has.
  assert.equal(await page.locator('#ix-join').isVisible(), true);
  assert.equal(await page.locator('#ix-send').isVisible(), false);

  // The video's clock (ms of media time) when each chat line is put in the page.
  await page.evaluate(() => {
    window.lineShownAt = {};
    const video = document.getElementById('video');
    new MutationObserver((mutations) => {
      for (const m of mutations) for (const n of m.addedNodes) if (n.dataset?.seq) window.lineShownAt[n.dataset.seq] = video.currentTime * 1000;
    }).observe(document.getElementById('ix-chat'), { childList: true });
  });
  const token = issueToken(server.keyFile, { sub: 'cli-ann', name: 'Ann', role: 'viewer', subscribe: [''] });
  const text = `hello from the CLI ${Date.now()}`;
  const out = await cli(['chat', ...at(server), 'demo/live', '--send', text, '--token', token, ...pin(server)]);
  const line = await untilLine(page, text);
  assert.equal(line.name, 'Ann', 'the display name comes from the token');
  const after = await panel(page);
  const held = after.state.chat.find((l) => l.text === text);
  assert.equal(held?.user, 'cli-ann', 'the line is in the page state with its user');
  // In step with the video: the line waited until the picture reached its media time.
  assert.equal(typeof held.M, 'number', 'the event carries the media time it happened at');
  const shownAt = await page.evaluate((seq) => window.lineShownAt[seq], String(held.seq));
  assert.ok(shownAt >= held.M, `shown at media time ${shownAt} ms, not before the event's ${held.M} ms`);
  await page.screenshot({ path: join(dir, 'chat-from-cli.png') });
  assert.deepEqual(errors, [], 'no console or page errors');
  console.log(`# interaction chat: CLI said ${JSON.stringify(out.trim())}; the page showed seq ${held.seq} (M ${held.M} ms) at video time ${shownAt.toFixed(0)} ms`);
});

test('a vote cast in the page is counted in the CLI state; too many messages are refused in words', async () => {
  const dir = testDir('interaction-poll');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);
  const { page, errors } = await openPage(browser, `${server.httpUrl}/watch/demo/live`);
  await untilPlaying(page);
  await untilPanelState(page);
  const welcome = await joinAsGuest(page, 'Guest Voter');
  assert.match(welcome.user, /^guest-/, 'a guest id from POST /api/guest');
  assert.equal(welcome.name, 'Guest Voter');
  assert.equal(await page.locator('#ix-send').isVisible(), true, 'the input replaces the join form');

  const creator = issueToken(server.keyFile, { sub: 'creator-1', name: 'The Creator', role: 'creator', publish: ['demo/'], subscribe: [''] });
  await cli(['poll', 'open', ...at(server), 'demo/live', '--question', 'Which song next?', '--option', 'Song A', '--option', 'Song B', '--duration', '60s', '--token', creator, ...pin(server)]);
  await waitFor('the poll in the page', 15000, async () => (await page.locator('#ix-poll-question').textContent()) === 'Which song next?' && (await page.locator('#ix-poll').isVisible()));
  const options = page.locator('#ix-poll-options .ix-vote');
  assert.equal(await options.count(), 2);
  await waitFor('the vote buttons to be enabled', 5000, () => options.nth(1).isEnabled());
  await options.nth(1).click();

  // The origin counted it: the page's bars and the CLI's state agree.
  const shown = await waitFor('the page to show the vote', 15000, async () => {
    const p = await panel(page);
    return p.state.poll?.tallies?.[1] === 1 ? p.state.poll : false;
  });
  assert.deepEqual(shown.tallies, [0, 1]);
  await waitFor('the bar to move', 5000, async () => (await page.locator('#ix-poll-options li').nth(1).locator('.ix-option-count').textContent()).startsWith('1 '));
  const state = await stateOf(server);
  assert.equal(state.type, 'snapshot');
  assert.equal(state.poll.question, 'Which song next?');
  assert.deepEqual(state.poll.options, ['Song A', 'Song B']);
  assert.deepEqual(state.poll.tallies, [0, 1], 'the CLI sees the page\'s vote');
  assert.equal(state.poll.open, true);
  assert.equal(await options.nth(0).isDisabled(), true, 'one vote per viewer');
  await page.screenshot({ path: join(dir, 'voted.png') });

  // Five messages per 10 s: the sixth is refused, and the page says when to try again.
  for (let i = 1; i <= 6; i++) {
    await page.locator('#ix-text').fill(`message ${i}`);
    await page.locator('#ix-text').press('Enter');
    await page.waitForTimeout(50);
  }
  const refusal = await waitFor('a rate-limit message near the input', 10000, async () => {
    const t = await page.locator('#ix-error').textContent();
    return t ? t : false;
  });
  assert.match(refusal, /too fast.*Try again in \d+\s+s\./);
  await untilLine(page, 'message 5');
  assert.equal(await page.locator('#ix-text').inputValue(), 'message 6', 'the refused text is given back');
  await page.screenshot({ path: join(dir, 'rate-limited.png') });
  assert.deepEqual(errors, [], 'no console or page errors');
  console.log(`# interaction poll: tallies ${JSON.stringify(state.poll.tallies)} at seq ${state.seq}; refusal: ${refusal}`);
});

test('a message with HTML in it shows as literal text and runs nothing', async () => {
  const dir = testDir('interaction-xss');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);
  const { page, errors } = await openPage(browser, `${server.httpUrl}/watch/demo/live`);
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  // An <img src=x> made from the text would ask the origin for .../x at once.
  const fetchedX = [];
  page.on('request', (r) => {
    if (/\/x$/.test(new URL(r.url()).pathname)) fetchedX.push(r.url());
  });
  await untilPlaying(page);
  await untilPanelState(page);
  await joinAsGuest(page, '<b>Mallory</b>');
  // Records every element the panel makes from here on that a chat line is not made of.
  await page.evaluate(() => {
    window.madeElements = [];
    const expected = new Set(['LI', 'SPAN']);
    new MutationObserver((mutations) => {
      for (const m of mutations) {
        for (const n of m.addedNodes) {
          if (n.nodeType !== Node.ELEMENT_NODE) continue;
          for (const e of [n, ...n.querySelectorAll('*')]) if (!expected.has(e.tagName)) window.madeElements.push(e.tagName);
        }
      }
    }).observe(document.getElementById('ix-chat'), { childList: true, subtree: true });
  });

  // One from the CLI (another viewer), one typed in the page.
  const fromCli = '<script>alert(1)</script>';
  const token = issueToken(server.keyFile, { sub: 'cli-eve', name: '<img src=x onerror=alert(3)>', subscribe: [''] });
  await cli(['chat', ...at(server), 'demo/live', '--send', fromCli, '--token', token, ...pin(server)]);
  const typed = '<img src=x onerror="window.pwned=1;alert(2)"><script>window.pwned=2</script>';
  await page.locator('#ix-text').fill(typed);
  await page.locator('#ix-text').press('Enter');

  const a = await untilLine(page, fromCli);
  const b = await untilLine(page, typed);
  assert.equal(a.name, '<img src=x onerror=alert(3)>', 'the name is text too');
  assert.equal(b.name, '<b>Mallory</b>');
  assert.equal(a.html, '&lt;script&gt;alert(1)&lt;/script&gt;');
  assert.equal(b.html, '&lt;img src=x onerror="window.pwned=1;alert(2)"&gt;&lt;script&gt;window.pwned=2&lt;/script&gt;');
  const injected = await page.evaluate(() => ({
    made: window.madeElements,
    elements: document.querySelectorAll('#interaction script, #interaction img, #interaction b').length,
    pwned: window.pwned ?? null,
  }));
  assert.deepEqual(injected, { made: [], elements: 0, pwned: null }, 'no element was made from the text and nothing ran');
  assert.deepEqual(fetchedX, [], 'no image was requested');
  assert.deepEqual(dialogs, [], 'no dialog opened');
  await page.screenshot({ path: join(dir, 'literal-text.png') });
  assert.deepEqual(errors, [], 'no console or page errors');
});

test('tips move the goal bar and show an alert; a reaction floats its count', async () => {
  const dir = testDir('interaction-tips');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);
  const { page, errors } = await openPage(browser, `${server.httpUrl}/watch/demo/live`);
  await untilPlaying(page);
  await untilPanelState(page);
  const creator = issueToken(server.keyFile, { sub: 'creator-1', name: 'The Creator', role: 'creator', publish: ['demo/'], subscribe: [''] });
  await cli(['goal', ...at(server), 'demo/live', '--title', 'New microphone', '--target', '200', '--token', creator, ...pin(server)]);
  await waitFor('the goal in the page', 15000, async () => (await page.locator('#ix-goal-title').textContent()) === 'New microphone');
  assert.equal(await page.locator('#ix-goal-figures').textContent(), '0 / 200');

  const welcome = await joinAsGuest(page, 'Generous');
  assert.equal(welcome.balance, 0, 'a guest starts without credits');
  await page.locator('#ix-tip-toggle').click();
  // With no credits the tip is refused, in words.
  await page.locator('#ix-tip-amount').fill('50');
  await page.locator('#ix-tip-message').fill('for the <mic>');
  await page.locator('#ix-tip-form button').click();
  await waitFor('the refusal', 10000, async () => /not have enough credits/.test(await page.locator('#ix-tip-error').textContent()));
  // Development credits, then the tip.
  await page.locator('#ix-credit').click();
  await waitFor('the balance', 10000, async () => (await page.locator('#ix-balance').textContent()) === 'Balance: 100 credits.');
  await page.locator('#ix-tip-form button').click();
  await waitFor('the balance after the tip', 10000, async () => (await page.locator('#ix-balance').textContent()) === 'Balance: 50 credits.');
  await waitFor('the goal bar to move', 10000, async () => (await page.locator('#ix-goal-figures').textContent()) === '50 / 200');
  const alert = await waitFor('the tip alert', 10000, async () => (await page.locator('#ix-alerts .ix-alert').count()) > 0 && page.locator('#ix-alerts .ix-alert').first().textContent());
  assert.equal(alert, 'Generous tipped 50 creditsfor the <mic>');
  assert.equal(await page.locator('#ix-goal-bar').evaluate((e) => e.style.width), '25%');
  assert.match(await page.locator('#ix-tippers').textContent(), /Generous 50/);

  await page.locator('.ix-react').first().click();
  const float = await waitFor('a floating reaction count', 10000, async () => (await page.locator('.ix-float').count()) > 0 && page.locator('.ix-float').first().textContent());
  assert.equal(float, '❤️ +1');
  await page.screenshot({ path: join(dir, 'tipped.png') });

  const state = await stateOf(server);
  assert.deepEqual(state.goal, { title: 'New microphone', target: 200, progress: 50 });
  assert.deepEqual(state.top_tippers.map((t) => [t.name, t.total]), [['Generous', 50]]);
  assert.deepEqual(errors, [], 'no console or page errors');
});

test('through a relay: the page\'s requests reach the origin and the state comes back down', async () => {
  const dir = testDir('interaction-relay');
  const server = await startNode(origin(dir));
  const edge = await startNode(relay(dir, 'edge', server));
  await listRelays(server, [edge]); // else the page would not send its guest token there
  const browser = await browserFor(dir);
  const relayUrl = `https://localhost:${edge.quic}/`;
  const url = `${server.httpUrl}/watch/demo/live?relay=${encodeURIComponent(relayUrl)}&cert=${encodeURIComponent(`${edge.httpUrl}/certificate.sha256`)}`;
  const { page, errors } = await openPage(browser, url);
  await untilPlaying(page, 30000);
  await untilPanelState(page);
  await joinAsGuest(page, 'Via Relay');
  const text = `relayed ${Date.now()}`;
  await page.locator('#ix-text').fill(text);
  await page.locator('#ix-text').press('Enter');
  await untilLine(page, text);
  const state = await stateOf(server);
  assert.ok(state.chat.some((l) => l.text === text && l.name === 'Via Relay'), 'the origin has the message');
  await page.screenshot({ path: join(dir, 'chat-via-relay.png') });

  // The relay goes away; a message typed meanwhile waits, and goes out once the player
  // has reconnected (a new request stream on the new session, same idempotency key).
  await edge.kill();
  await waitFor('the page to notice the relay is gone', 10000, async () => (await panel(page)).client !== 'open');
  const late = `typed while the relay was down ${Date.now()}`;
  await page.locator('#ix-text').fill(late);
  await page.locator('#ix-text').press('Enter');
  const waiting = await page.evaluate(() => window.stagecast.interaction.client.pending.map((r) => r.frame.text));
  assert.deepEqual(waiting, [late], 'the message waits in the page while the relay is down');
  assert.equal((await chatLines(page)).some((l) => l.text === late), false);
  await edge.restart();
  await untilLine(page, late, 30000);
  const after = await stateOf(server);
  assert.equal(after.chat.filter((l) => l.text === late).length, 1, 'stored once');
  assert.equal(await page.locator('#ix-error').textContent(), '', 'no refusal shown');
  await page.screenshot({ path: join(dir, 'after-relay-restart.png') });
  // The relay's death shows up as failed requests (WebTransport stream errors) only.
  assert.deepEqual(errors.filter((e) => !/WebTransport|net::ERR/.test(e)), [], 'no other console or page errors');
});
