/**
 * Not a test: a trace of the adaptive player behind the network rig, for tuning it and
 * for writing the shaped-network tests. Publishes the ladder clip the ABR browser test
 * made (run `npm test` once first: tests/output/browser/abr-ladder/ladder.mp4), puts
 * Chromium behind `stagecast-netrig` (tbf, rate changed on a plan), and prints every 2 s
 * what the page exposes: state, rendition, estimate, newest sample, buffer, stalls,
 * switches; at the end the switch log (how long each took, bytes wasted).
 *
 *   cd tests/browser && PLAN=20:1.5mbit,20:6mbit,20:1.5mbit node --test tools/abr-trace.mjs
 *
 * Run it alone: Chromium in a namespace reports ERR_NETWORK_CHANGED and loads nothing
 * while other namespaces come and go on the machine.
 */

import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { bin, issueToken, origin, OUTPUT, owned, startNode, testDir, waitFor } from '../harness.mjs';

test('trace of the adaptive player behind a shaped link', async () => {
  const dir = testDir('abr-trace');
  const clip = join(OUTPUT, 'abr-ladder', 'ladder.mp4');
  const server = await startNode(origin(dir, 'origin', ['--no-demo']));
  const token = issueToken(server.keyFile, { sub: 'creator', publish: ['live/'] });
  const publish = spawn(bin('stagecast'), ['publish', server.moqtUrl, 'live/ladder', '--file', clip, '--loop', '--fingerprint', server.fingerprint, '--token', token], { stdio: 'ignore' });
  owned(publish, async () => publish.kill('SIGKILL'));
  const rig = spawn(bin('stagecast-netrig'), ['--down', '1.5mbit'], { stdio: ['pipe', 'pipe', 'inherit'] });
  owned(rig, async () => rig.kill('SIGTERM'));
  const lines = createInterface({ input: rig.stdout })[Symbol.asyncIterator]();
  const info = JSON.parse((await lines.next()).value);
  const command = async (c) => {
    rig.stdin.write(`${c}\n`);
    return (await lines.next()).value;
  };
  await waitFor('live/ladder at the origin', 20000, async () => (await (await fetch(`${server.httpUrl}/api/broadcasts`)).json()).broadcasts.includes('live/ladder'));
  const host = `http://[${info.hostAddr}]:${server.http}`;
  const browser = await chromium.launch({
    executablePath: info.chromium,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--unsafely-treat-insecure-origin-as-secure=${host}`],
  });
  owned(browser, () => browser.close());
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${host}/watch/live/ladder?relay=${encodeURIComponent(`https://[${info.hostAddr}]:${server.quic}/`)}&fingerprint=${server.fingerprint}`);
  const plan = (process.env.PLAN ?? '20:1.5mbit,20:6mbit,20:1.5mbit').split(',').map((p) => p.split(':'));
  let t = 0;
  for (const [secs, rate] of plan) {
    console.log(`rate down ${rate}: ${await command(`rate down ${rate}`)}`);
    for (let i = 0; i < Number(secs); i += 2) {
      await new Promise((r) => setTimeout(r, 2000));
      t += 2;
      const row = await page.evaluate(() => {
        const s = window.stagecast?.stats();
        if (!s) return document.getElementById('status')?.textContent;
        const mbit = (b) => (b === undefined ? '-' : (b / 1e6).toFixed(2));
        return `${s.state} ${s.rendition} est ${mbit(s.estimate)} last ${s.lastSample?.kind}:${mbit(s.lastSample?.bps)} buf ${s.buffer.toFixed(2)} stalls ${s.stalls}/${Math.round(s.stallMs)}ms switches ${s.switches} probes ${s.probes} tooSlow ${s.tooSlow} (${s.abrReason})`;
      });
      console.log(`${t}s ${rate}: ${row}`);
    }
  }
  console.log(JSON.stringify(await page.evaluate(() => window.stagecast?.stats().switchLog)), errors.slice(0, 5));
});
