/**
 * The viewer in a real headless Chromium against real Stagecast binaries on loopback:
 * the demo channel plays; a CLI-published stream plays through origin <- relay <- relay
 * with the page's glass-to-glass latency (from the encoder's prft) under 2 s; a killed and restarted relay is reconnected to by
 * itself; an unknown channel says it is offline. Screenshots land in
 * tests/output/browser/<test>/. Run: npm test (in tests/browser), after cargo build.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';

import { bin, browserFor, issueToken, openPage, origin, owned, relay, startNode, stats, testDir, untilAdvanced, untilPlaying, waitFor } from './harness.mjs';

test('the demo channel plays in the browser', async () => {
  const dir = testDir('demo-plays');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);

  // The channel list names the demo channel and links to its page.
  const list = await openPage(browser, `${server.httpUrl}/`);
  const link = await waitFor('the channel list', 10000, () => list.page.locator('#list a', { hasText: 'demo/live' }).getAttribute('href'));
  assert.equal(link, '/watch/demo/live');

  const started = Date.now();
  const { page, errors } = await openPage(browser, `${server.httpUrl}${link}`);
  const first = await untilPlaying(page);
  const startup = (Date.now() - started) / 1000;
  const later = await untilAdvanced(page, first.currentTime, 3, 15000);
  assert.ok(later.decodedFrames > first.decodedFrames + 30, `decoded frames ${first.decodedFrames} -> ${later.decodedFrames}`);
  assert.equal(later.droppedFrames, 0, 'no dropped frames');
  assert.ok(later.latency > 0 && later.latency < 1.5, `latency ${later.latency}`);
  // The demo is stamped as the origin sends it: the page measures from there.
  assert.equal(later.latencyKind, 'glass-to-glass');
  await page.locator('#stats-btn').click();
  await waitFor('the stats overlay', 5000, () => page.locator('#stats-list dd').first().textContent());
  await page.screenshot({ path: join(dir, 'playing.png') });
  assert.deepEqual(errors.concat(list.errors), [], 'no console or page errors');
  console.log(`# demo: playing ${startup.toFixed(2)} s after opening; latency ${later.latency.toFixed(2)} s`);
});

test('a stream published with the CLI plays through origin <- relay <- relay', async () => {
  const dir = testDir('relay-chain');
  const server = await startNode(origin(dir, 'origin', ['--no-demo']));
  const relay1 = await startNode(relay(dir, 'relay1', server));
  const relay2 = await startNode(relay(dir, 'relay2', relay1));

  const ffmpegLog = createWriteStream(join(dir, 'ffmpeg.log'));
  const publishLog = createWriteStream(join(dir, 'publish.log'));
  const ffmpeg = spawn('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '30', '-c:a', 'aac',
    '-f', 'mp4', '-movflags', 'cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame',
    '-write_prft', 'wallclock', '-',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  owned(ffmpeg, async () => ffmpeg.kill('SIGKILL'));
  ffmpeg.stderr.pipe(ffmpegLog);
  const token = issueToken(server.keyFile, { sub: 'creator', publish: ['live/'] });
  const publish = spawn(bin('stagecast'), ['publish', server.moqtUrl, 'live/x', '--fingerprint', server.fingerprint, '--token', token], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  owned(publish, async () => publish.kill('SIGKILL'));
  publish.stderr.pipe(publishLog);
  ffmpeg.stdout.pipe(publish.stdin);
  publish.stdin.on('error', () => {});

  await waitFor('live/x at the origin', 20000, async () => {
    const res = await fetch(`${server.httpUrl}/api/broadcasts`);
    return (await res.json()).broadcasts.includes('live/x');
  });

  const browser = await browserFor(dir);
  const relayUrl = `https://localhost:${relay2.quic}/`;
  const certUrl = `${relay2.httpUrl}/certificate.sha256`;
  const url = `${server.httpUrl}/watch/live/x?relay=${encodeURIComponent(relayUrl)}&cert=${encodeURIComponent(certUrl)}`;
  const { page } = await openPage(browser, url);
  // Generous: a first connection attempt that gets no answer is retried after 8 s.
  const first = await untilPlaying(page, 30000);
  assert.equal(first.relay, relayUrl, 'the page uses the relay named in the URL');
  const later = await untilAdvanced(page, first.currentTime, 3, 15000);
  assert.ok(later.decodedFrames > first.decodedFrames, 'frames decoded');
  // Latency after settling, sampled a few times: every sample under 2 s.
  const samples = [];
  for (let i = 0; i < 5; i++) {
    const s = await stats(page);
    assert.equal(s.state, 'playing');
    assert.equal(s.latencyKind, 'glass-to-glass', 'the encoder\'s clock reached the page');
    samples.push(s.latency);
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.ok(samples.every((l) => typeof l === 'number' && l > 0 && l < 2), `latency samples ${samples}`);
  assert.ok((await relay1.metric('stagecast_upstream_subscriptions')) >= 1, 'relay1 subscribed upstream');
  await page.locator('#stats-btn').click();
  await page.waitForTimeout(600); // one refresh of the stats overlay, for the screenshot
  await page.screenshot({ path: join(dir, 'playing-at-relay2.png') });
  console.log(`# relay chain: latency ${samples.map((l) => l.toFixed(2)).join(', ')} s`);
});

test('playback resumes by itself after the relay is killed and restarted', async () => {
  const dir = testDir('relay-restart');
  const server = await startNode(origin(dir));
  const edge = await startNode(relay(dir, 'edge', server));
  const browser = await browserFor(dir);
  const relayUrl = `https://localhost:${edge.quic}/`;
  const url = `${server.httpUrl}/watch/demo/live?relay=${encodeURIComponent(relayUrl)}&cert=${encodeURIComponent(`${edge.httpUrl}/certificate.sha256`)}`;
  const { page } = await openPage(browser, url);
  const first = await untilPlaying(page);
  await untilAdvanced(page, first.currentTime, 1, 10000);

  await edge.kill();
  const down = await waitFor('the page to notice the relay is gone', 10000, async () => {
    const s = await stats(page);
    return s.state !== 'playing' ? s : false;
  });
  await page.screenshot({ path: join(dir, 'relay-down.png') });
  await edge.restart();

  const back = await untilPlaying(page, 20000);
  const resumed = await untilAdvanced(page, back.currentTime, 2, 10000);
  assert.ok(resumed.reconnects >= 1, `reconnects ${resumed.reconnects}`);
  assert.ok(resumed.currentTime > down.currentTime + 2, 'media time moved on after the restart');
  assert.ok(resumed.latency < 2, `latency after resuming ${resumed.latency}`);
  await page.screenshot({ path: join(dir, 'resumed.png') });
  console.log(`# relay restart: was '${down.state}', resumed with ${resumed.reconnects} reconnect(s)`);
});

test('an unknown channel shows that it is offline', async () => {
  const dir = testDir('offline');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);
  const { page } = await openPage(browser, `${server.httpUrl}/watch/nobody/here`);
  const s = await waitFor('the offline message', 10000, async () => {
    const st = await stats(page);
    return st?.state === 'offline' ? st : false;
  });
  assert.match(s.status, /offline/i);
  assert.equal(await page.locator('#title').textContent(), 'nobody/here');
  assert.equal(s.decodedFrames, 0);
  await page.screenshot({ path: join(dir, 'offline.png') });
});

test('the JS client talks to the origin: SUBSCRIBE delivers objects, joining FETCH is answered', async () => {
  const dir = testDir('client-requests');
  const server = await startNode(origin(dir));
  const browser = await browserFor(dir);
  const { page, errors } = await openPage(browser, `${server.httpUrl}/`);
  const r = await page.evaluate(async ({ port, fingerprint }) => {
    const { MoqtSession } = await import('/viewer/js/moqt/session.js');
    const s = await MoqtSession.connect(`https://localhost:${port}/`, { fingerprint });
    const groups = new Set();
    let objects = 0;
    const sub = await s.subscribe(['demo', 'live'], 'video', {
      onObject: (o) => {
        objects++;
        groups.add(Number(o.groupId));
      },
    });
    const out = { trackAlias: Number(sub.trackAlias) };
    try {
      const { ok } = await s.joiningFetch(sub, 1);
      out.fetch = { ok: ok.name };
    } catch (err) {
      out.fetch = { error: err.name, code: err.code };
    }
    const before = objects;
    await new Promise((res) => setTimeout(res, 1500));
    out.objectsBefore = before;
    out.objectsAfter = objects;
    out.groups = [...groups];
    s.close();
    return out;
  }, { port: server.quic, fingerprint: server.fingerprint });
  // The joining FETCH gets an answer the draft allows: FETCH_OK, INVALID_RANGE (0x11: the
  // subscription had no objects to join onto when it was accepted, draft-18 §10.12.2), or
  // DOES_NOT_EXIST (0x10: the resolved range is not held). NOT_SUPPORTED or a hang fails.
  assert.ok(
    r.fetch.ok === 'FETCH_OK' || (r.fetch.error === 'RequestError' && [0x10, 0x11].includes(r.fetch.code)),
    JSON.stringify(r.fetch),
  );
  // The subscription carries on after the FETCH's answer, group by group (1 s GOPs).
  assert.ok(r.objectsAfter > r.objectsBefore + 20, `objects ${r.objectsBefore} -> ${r.objectsAfter}`);
  assert.ok(r.groups.every((g) => g > 1.7e12), 'group ids start at wall-clock ms');
  assert.deepEqual(errors, []);
  console.log(`# client requests: FETCH -> ${JSON.stringify(r.fetch)}; ${r.objectsAfter} objects in groups ${r.groups.join(',')}`);
});
