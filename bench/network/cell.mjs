/**
 * One cell of `stagecast-bench network`: a real origin publishing a pre-encoded clip
 * (`--file --loop`, stamped as sent, so glass-to-glass is measured from the publisher),
 * Stagecast's viewer in Debian's Chromium inside a network namespace behind a `tbf` link
 * of the cell's rate, its WebTransport through the userspace impairment relay with the
 * cell's round trip and loss (`stagecast-netrig`, docs/testing.md). Prints one JSON line:
 * startup time, stall ratio, delivered bitrate / link rate, switches per minute,
 * glass-to-glass p50/p95, and the time spent on each rendition.
 *
 * node bench/network/cell.mjs --clip FILE --rate 1.5 --rtt 100 --loss 0.01 --seconds 30 --settle 10 --out DIR
 * (rate in Mbit/s, rtt in ms, loss as a fraction). Needs the release or debug binaries
 * (STAGECAST_BIN_DIR), tests/browser's npm packages, root.
 */

import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { chromium } from '../../tests/browser/node_modules/playwright-core/index.mjs';
import { bin, issueToken, origin, startNode, stats, waitFor } from '../../tests/browser/harness.mjs';

const { values: opt } = parseArgs({
  options: {
    clip: { type: 'string' },
    rate: { type: 'string', default: '1.5' },
    rtt: { type: 'string', default: '20' },
    loss: { type: 'string', default: '0' },
    seconds: { type: 'string', default: '30' },
    settle: { type: 'string', default: '10' },
    out: { type: 'string', default: '/tmp/stagecast-network-cell' },
  },
});
const rate = Number(opt.rate);
const seconds = Number(opt.seconds);
const settle = Number(opt.settle);
mkdirSync(opt.out, { recursive: true });

const children = [];
const stop = () => children.forEach((c) => c.kill('SIGKILL'));
process.on('exit', stop);

const server = await startNode(origin(opt.out, 'origin', ['--no-demo']));
const token = issueToken(server.keyFile, { sub: 'bench', publish: ['live/'] });
const publish = spawn(bin('stagecast'), ['publish', server.moqtUrl, 'live/bench', '--file', opt.clip, '--loop', '--fingerprint', server.fingerprint, '--token', token], { stdio: 'ignore' });
children.push(publish);
await waitFor('the broadcast', 20000, async () => (await (await fetch(`${server.httpUrl}/api/broadcasts`)).json()).broadcasts.includes('live/bench'));

const rigArgs = ['--down', `${rate}mbit`, '--target', `[::1]:${server.quic}`, '--rtt', `${opt.rtt}ms`, '--loss', opt.loss];
const rig = spawn(bin('stagecast-netrig'), rigArgs, { stdio: ['pipe', 'pipe', 'inherit'] });
children.push(rig);
const info = JSON.parse((await createInterface({ input: rig.stdout })[Symbol.asyncIterator]().next()).value);
const host = `http://[${info.hostAddr}]:${server.http}`;
const browser = await chromium.launch({
  executablePath: info.chromium,
  headless: true,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--unsafely-treat-insecure-origin-as-secure=${host}`],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
const relay = `https://${info.relay}/`;
const opened = Date.now();
await page.goto(`${host}/watch/live/bench?relay=${encodeURIComponent(relay)}&fingerprint=${server.fingerprint}`);

let startup;
let last;
const samples = [];
const until = opened + (settle + seconds) * 1000 + 15000;
let measureFrom;
while (Date.now() < until) {
  const s = await stats(page).catch(() => undefined);
  const now = Date.now();
  if (s) last = s;
  if (s && startup === undefined && s.state === 'playing' && s.currentTime > 0) {
    startup = (now - opened) / 1000;
    measureFrom = now + settle * 1000;
  }
  if (measureFrom !== undefined && now >= measureFrom) {
    samples.push({ at: now, ...s });
    if (now >= measureFrom + seconds * 1000) break;
  }
  await new Promise((r) => setTimeout(r, 250));
}
await browser.close();
rig.stdin.end();

const quantile = (xs, q) => {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  return v.length ? v[Math.min(v.length - 1, Math.floor(q * v.length))] : null;
};
const result = { rate_mbit: rate, rtt_ms: Number(opt.rtt), loss: Number(opt.loss), startup_s: startup ?? null };
// A page that never played says where it stood (its state and status line).
if (startup === undefined) Object.assign(result, { last_state: last?.state ?? null, last_status: last?.status ?? null, last_error: last?.lastError ?? null });
if (samples.length > 1) {
  const first = samples[0];
  const last = samples.at(-1);
  const span = (last.at - first.at) / 1000;
  const onRendition = {};
  for (let i = 1; i < samples.length; i++) {
    const r = samples[i - 1].rendition ?? 'single';
    onRendition[r] = (onRendition[r] ?? 0) + (samples[i].at - samples[i - 1].at) / 1000 / span;
  }
  Object.assign(result, {
    window_s: span,
    stall_ratio: (last.stallMs - first.stallMs) / 1000 / span,
    delivered_over_link: samples.reduce((n, s) => n + (s.bitrate ?? 0), 0) / samples.length / (rate * 1e6),
    switches_per_min: ((last.switches ?? 0) - (first.switches ?? 0)) / (span / 60),
    g2g_p50_s: quantile(samples.map((s) => s.latency), 0.5),
    g2g_p95_s: quantile(samples.map((s) => s.latency), 0.95),
    latency_kind: last.latencyKind ?? null,
    estimate_p50_bps: quantile(samples.map((s) => s.estimate), 0.5),
    too_slow_ratio: samples.filter((s) => s.tooSlow).length / samples.length,
    on_rendition: onRendition,
  });
}
console.log(JSON.stringify(result));
process.exit(0);
