/**
 * Adaptive playback in a real headless Chromium: a three-rung ladder (1280x720, 854x480,
 * 426x240 with aligned keyframes, plus audio, one fragmented MP4 made by ffmpeg once per
 * run and published with `stagecast publish --file --loop`) plays; the page starts on a
 * rung, climbs by itself on loopback (a link with room to spare), the quality menu forces
 * each rung in turn, and playback goes on across every switch: frames keep being decoded,
 * media time advances, the buffered video and audio stay one range each (no gap), and no
 * error is logged. What it checks is what the page exposes for tests and tools (the
 * #player data- attributes and window.stagecast.stats()).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';

import { bin, browserFor, issueToken, openPage, origin, owned, startNode, stats, testDir, untilAdvanced, untilPlaying, waitFor } from './harness.mjs';

const RUNGS = [
  { width: 1280, height: 720, kbps: 2500 },
  { width: 854, height: 480, kbps: 1200 },
  { width: 426, height: 240, kbps: 400 },
];

/** A short ladder clip: 1 s GOPs aligned across rungs (same -g/-keyint_min, no scene cuts). */
function makeLadder(path, seconds = 4) {
  const split = `[0:v]split=${RUNGS.length}${RUNGS.map((_, i) => `[s${i}]`).join('')}`;
  const scales = RUNGS.map((r, i) => `[s${i}]scale=${r.width}:${r.height}[v${i}]`).join(';');
  const args = [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=1280x720:rate=30:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
    '-filter_complex', `${split};${scales}`,
    ...RUNGS.flatMap((_, i) => ['-map', `[v${i}]`]), '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-g', '30', '-keyint_min', '30', '-sc_threshold', '0',
    ...RUNGS.flatMap((r, i) => [`-b:v:${i}`, `${r.kbps}k`, `-maxrate:v:${i}`, `${r.kbps}k`, `-bufsize:v:${i}`, `${r.kbps}k`]),
    '-c:a', 'aac', '-b:a', '64k',
    '-f', 'mp4', '-movflags', 'cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame', path,
  ];
  execFileSync('ffmpeg', args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** What the page's player box says (the data- attributes network tests read too). */
function boxData(page) {
  return page.evaluate(() => ({ ...document.getElementById('player').dataset }));
}

/** Buffered ranges of each SourceBuffer, by slot. */
function bufferedRanges(page) {
  return page.evaluate(() => {
    const out = {};
    for (const [key, b] of window.stagecast.player.sink.buffers) {
      const r = b.sb.buffered;
      out[key] = Array.from({ length: r.length }, (_, i) => [r.start(i), r.end(i)]);
    }
    return out;
  });
}

test('a three-rung ladder: the page picks a rung, climbs by itself, and the quality menu forces each one without a gap', async () => {
  const dir = testDir('abr-ladder');
  const clip = join(dir, 'ladder.mp4');
  makeLadder(clip);
  const server = await startNode(origin(dir, 'origin', ['--no-demo']));
  const token = issueToken(server.keyFile, { sub: 'creator', publish: ['live/'] });
  const publishLog = createWriteStream(join(dir, 'publish.log'));
  const publish = spawn(bin('stagecast'), ['publish', server.moqtUrl, 'live/ladder', '--file', clip, '--loop', '--fingerprint', server.fingerprint, '--token', token], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  owned(publish, async () => publish.kill('SIGKILL'));
  publish.stderr.pipe(publishLog);
  await waitFor('live/ladder at the origin', 20000, async () => {
    const res = await fetch(`${server.httpUrl}/api/broadcasts`);
    return (await res.json()).broadcasts.includes('live/ladder');
  });

  const browser = await browserFor(dir);
  const { page, errors } = await openPage(browser, `${server.httpUrl}/watch/live/ladder`);
  const first = await untilPlaying(page, 20000);
  // The catalog's ladder, lowest first, and the menu: Auto and each rung.
  assert.deepEqual(first.renditions.map((r) => r.height), [240, 480, 720], JSON.stringify(first.renditions));
  assert.ok(first.renditions.every((r) => r.bitrate > 0));
  const names = first.renditions.map((r) => r.name);
  assert.equal(first.quality, 'auto');
  // A fresh profile remembers nothing: it starts on the lowest rung.
  assert.equal(first.switchLog.length ? first.switchLog[0].from : first.rendition, names[0], 'started on the lowest rung');
  // The controls fill the menu on their next refresh (twice a second).
  const menu = await waitFor('the quality menu', 2000, async () => {
    const values = await page.locator('#quality option').evaluateAll((os) => os.map((o) => o.value));
    return values.length > 1 ? values : false;
  });
  assert.deepEqual(menu, ['auto', ...names.slice().reverse()]);
  assert.equal(await page.locator('#quality-box').isVisible(), true);

  // Loopback has room to spare: the estimate (bursts, probes) takes it to the top rung,
  // two steps up, each after three samples and a hold. On a timeout the error shows
  // where the player stood (rendition, estimate, samples, its last reason and switches).
  const top = await waitFor('auto to reach the top rung', 45000, async () => {
    const s = await stats(page);
    if (s.rendition === names[2]) return s;
    const { rendition, switchingTo, estimate, lastSample, probes, samplesDiscarded, abrReason, buffer, state, switchLog } = s;
    throw new Error(JSON.stringify({ rendition, switchingTo, estimate, lastSample, probes, samplesDiscarded, abrReason, buffer, state, switchLog }));
  });
  assert.ok(top.switches >= 2, `switches ${top.switches}`);
  assert.ok(top.estimate > 3.5e6, `estimate ${top.estimate}`);
  // The attributes follow within a refresh of the controls (twice a second).
  const data = await waitFor('data-rendition to follow', 2000, async () => {
    const d = await boxData(page);
    return d.rendition === names[2] ? d : false;
  });
  assert.equal(data.quality, 'auto');
  assert.equal(data.tooSlow, 'false');
  assert.ok(Number(data.estimate) > 3.5e6, JSON.stringify(data));
  await page.locator('#stats-btn').click();
  await page.screenshot({ path: join(dir, 'auto-top.png') });
  console.log(`# abr: top rung after ${top.switches} switches; estimate ${(top.estimate / 1e6).toFixed(1)} Mbit/s, probes ${top.probes}`);

  // The menu forces each rung (down, further down, up again); playback goes on.
  for (const name of [names[0], names[1], names[2], names[0]]) {
    const before = await stats(page);
    await page.selectOption('#quality', name);
    const on = await waitFor(`the page to play ${name}`, 10000, async () => {
      const s = await stats(page);
      return s.rendition === name && !s.switchingTo ? s : false;
    });
    assert.equal(on.quality, name);
    const later = await untilAdvanced(page, on.currentTime, 1.5, 10000);
    assert.ok(later.decodedFrames > before.decodedFrames + 30, `frames ${before.decodedFrames} -> ${later.decodedFrames} across the switch to ${name}`);
    assert.equal(later.state, 'playing');
    assert.equal(later.rendition, name, 'a chosen rung stays');
    const ranges = await bufferedRanges(page);
    for (const [slot, r] of Object.entries(ranges)) assert.equal(r.length, 1, `${slot} buffered as one range after the switch to ${name}: ${JSON.stringify(r)}`);
    await waitFor(`data-rendition ${name}`, 2000, async () => (await boxData(page)).rendition === name);
  }
  await page.screenshot({ path: join(dir, 'chosen-lowest.png') });

  // Back to Auto: it climbs again.
  await page.selectOption('#quality', 'auto');
  const again = await waitFor('auto to climb again', 25000, async () => {
    const s = await stats(page);
    return s.quality === 'auto' && s.rendition !== names[0] ? s : false;
  });
  const end = await stats(page);
  console.log(`# abr: ${end.switches} switches, stalls ${end.stalls} (${Math.round(end.stallMs)} ms), dropped ${end.droppedFrames} of ${end.decodedFrames}, auto back on ${again.rendition}; log ${JSON.stringify(end.switchLog.map((e) => `${e.from}->${e.to}@${e.group} ${e.reason}`))}; top log ${JSON.stringify(top.switchLog.map((e) => `${e.from}->${e.to}@${e.group} ${e.reason}`))}`);
  assert.ok(end.stallMs < 1500, `stalled ${end.stallMs} ms over ${end.switches} switches`);
  // Software decoding on a shared 2-core machine drops a few frames now and then.
  assert.ok(end.droppedFrames < end.decodedFrames * 0.05, `dropped frames ${end.droppedFrames} of ${end.decodedFrames}`);
  assert.deepEqual(errors, [], 'no console or page errors');
});
