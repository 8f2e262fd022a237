/**
 * What the browser tests share: starting the real Stagecast binaries on loopback ports
 * they pick (read back from the lines they print on stderr), with authorization on as in
 * a deployment (an origin makes its token key in its data directory, relays share it and
 * present a token upstream, publishers need a token: `issueToken`), launching Debian's
 * Chromium through playwright-core, waiting on conditions with deadlines, and where
 * artifacts go (tests/output/browser/). Every process started here is killed when the
 * test process exits.
 */

import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { chromium } from 'playwright-core';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const OUTPUT = join(ROOT, 'tests', 'output', 'browser');
const TARGET = process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target');
export const CHROMIUM = process.env.STAGECAST_CHROMIUM ?? '/usr/bin/chromium';

export function bin(name) {
  const path = join(TARGET, 'debug', name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run cargo build --workspace --bins first`);
  return path;
}

/** Polls `check` (sync or async) until it returns a truthy value; fails after `ms`. */
export async function waitFor(what, ms, check, every = 100) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * Every process started here. A node left running keeps the test process alive (its stderr
 * is piped here), so whatever a test did not stop is killed after the file's tests, and
 * again on exit.
 */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Clean-ups run after the file's tests, newest first (browsers closed, nodes killed). */
const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => {});
  for (const child of running) child.kill('SIGKILL');
});

/** Registers `stop` to run after the file's tests; returns `x`. */
export function owned(x, stop) {
  cleanups.push(stop);
  return x;
}

/** A headless Chromium (`launchBrowser`), closed after the file's tests. */
export async function browserFor(dir) {
  const browser = await launchBrowser(dir);
  return owned(browser, () => browser.close());
}

/** The node `promise` starts (`origin`, `relay`), killed after the file's tests. */
export async function startNode(promise) {
  const node = await promise;
  return owned(node, () => node.kill());
}

/** A running stagecast-server or stagecast-relay, with the ports and fingerprint it printed. */
export class Node {
  static async start(dir, name, binary, args) {
    const node = new Node(dir, name, binary, args);
    await node.launch();
    return node;
  }

  constructor(dir, name, binary, args) {
    this.dir = dir;
    this.name = name;
    this.binary = binary;
    this.args = args;
  }

  async launch(args = this.args) {
    this.args = args;
    const log = createWriteStream(join(this.dir, `${this.name}.log`), { flags: 'a' });
    // Authorization on, whatever the environment says.
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' };
    delete env.STAGECAST_NO_AUTH;
    this.child = spawn(bin(this.binary), args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    const child = this.child;
    running.add(child);
    this.exited = new Promise((resolve) => child.once('exit', () => {
      running.delete(child);
      resolve();
    }));
    let buffered = '';
    let started = false;
    const found = {};
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} did not start; see ${this.name}.log`)), 60000);
      this.child.once('exit', (code) => reject(new Error(`${this.name} exited (${code}) at start; see ${this.name}.log`)));
      this.child.stderr.on('data', (chunk) => {
        log.write(chunk);
        buffered += chunk.toString();
        let nl;
        // The node's one structured ready line (proto/src/ready.rs); the banner around it
        // is for people, and later lines name other nodes' ports.
        while (!started && (nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.startsWith('stagecast-ready ')) {
            const ready = JSON.parse(line.slice('stagecast-ready '.length));
            found.quic = ready.quic_port;
            found.http = ready.http_port;
            found.fingerprint = ready.fingerprint;
          }
          if (found.quic && found.http && found.fingerprint) {
            started = true;
            clearTimeout(timer);
            resolve();
          }
        }
      });
    });
    Object.assign(this, found);
    return this;
  }

  get moqtUrl() {
    return `moqt://localhost:${this.quic}`;
  }

  get httpUrl() {
    return `http://localhost:${this.http}`;
  }

  /** Kills the process at once (SIGKILL), as a crash would. */
  async kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Starts it again on the ports it had, with the same data directory (and certificate). */
  async restart() {
    const args = this.args.map((a) => a.replace(/^\[::\]:0$/, '[::]:0'));
    const i = args.indexOf('--bind');
    const j = args.indexOf('--http-bind');
    args[i + 1] = `[::]:${this.quic}`;
    args[j + 1] = `[::]:${this.http}`;
    return this.launch(args);
  }

  async metric(name) {
    const res = await fetch(`http://127.0.0.1:${this.http}/metrics`);
    const text = await res.text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : undefined;
  }
}

/** A fresh output directory for one test. */
export function testDir(name) {
  const dir = join(OUTPUT, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * A token from the deployment key `keyFile` (`stagecast token issue`): `publish` and
 * `subscribe` are lists of path prefixes ("" for all), `ttl` a lifetime such as '1h';
 * `name` (display name) and `role` (viewer, moderator, creator, relay) when given.
 */
export function issueToken(keyFile, { sub = 'browser-test', name, role, publish = [], subscribe = [], ttl = '1h' } = {}) {
  const args = ['token', 'issue', '--key-file', keyFile, '--sub', sub, '--ttl', ttl];
  if (name !== undefined) args.push('--name', name);
  if (role !== undefined) args.push('--role', role);
  for (const p of publish) args.push('--publish', p);
  for (const p of subscribe) args.push('--subscribe', p);
  return execFileSync(bin('stagecast'), args, { encoding: 'utf8' }).trim();
}

/** An origin with its data (certificate, token key `keyFile`) under `dir/<name>`. */
export async function origin(dir, name = 'origin', extra = []) {
  const node = await Node.start(dir, name, 'stagecast-server', ['--bind', '[::]:0', '--http-bind', '[::]:0', '--data-dir', join(dir, name), ...extra]);
  node.keyFile = join(dir, name, 'auth.key');
  return node;
}

/** A relay under `upstream`, sharing its token key and presenting a relay token to it. */
export async function relay(dir, name, upstream) {
  const token = issueToken(upstream.keyFile, { sub: name, role: 'relay', publish: [''], subscribe: [''] });
  const node = await Node.start(dir, name, 'stagecast-relay', [
    '--upstream', upstream.moqtUrl, '--upstream-fingerprint', upstream.fingerprint,
    '--bind', '[::]:0', '--http-bind', '[::]:0', '--data-dir', join(dir, name),
    '--auth-key-file', upstream.keyFile, '--upstream-token', token,
  ]);
  node.keyFile = upstream.keyFile;
  try {
    await waitFor(`${name} to connect upstream`, 20000, async () => (await node.metric('stagecast_upstream_connected')) === 1);
  } catch (err) {
    await node.kill();
    throw err;
  }
  return node;
}

/**
 * Makes `server` (an origin) list `relays` in /viewer/config.json, the relays its viewer
 * page may send tokens to (`--viewer-relay`): the relays start after their origin, so it
 * restarts on the same ports with the flag, and each relay's link comes back by itself.
 */
export async function listRelays(server, relays) {
  const urls = relays.map((r) => `https://localhost:${r.quic}/`);
  server.args = [...server.args, ...urls.flatMap((u) => ['--viewer-relay', u])];
  await server.kill();
  await server.restart();
  for (const r of relays) {
    await waitFor(`${r.name} to reconnect`, 30000, async () => (await r.metric('stagecast_upstream_connected')) === 1);
  }
  return urls;
}

/** Launches headless Chromium with the flags FACTS.md lists, and a fresh profile. */
export async function launchBrowser(dir) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)`);
  // playwright gives every launch a fresh temporary profile (--user-data-dir).
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Opens `url` in a new page, recording console errors and page errors in `errors`. */
export async function openPage(browser, url, errors = []) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`page: ${err.message}`));
  await page.goto(url);
  return { page, errors };
}

/** The player's figures as the page shows them. */
export function stats(page) {
  return page.evaluate(() => {
    const s = window.stagecast?.stats();
    const v = document.getElementById('video');
    return s && { ...s, paused: v.paused, readyState: v.readyState, status: document.getElementById('status').textContent, bodyState: document.body.dataset.state };
  });
}

/** Waits for the page to be playing and returns its stats then. */
export function untilPlaying(page, ms = 15000) {
  // On a timeout the error shows the page's last figures (state, status line), not just `false`.
  return waitFor('the page to play', ms, async () => {
    const s = await stats(page);
    if (s?.state === 'playing' && !s.paused && s.currentTime > 0) return s;
    throw new Error(`not playing: ${JSON.stringify(s)}`);
  });
}

/** Waits for media time to advance `seconds` past `from`. */
export function untilAdvanced(page, from, seconds, ms) {
  return waitFor(`currentTime to pass ${(from + seconds).toFixed(1)}`, ms, async () => {
    const s = await stats(page);
    return s && s.currentTime >= from + seconds ? s : false;
  });
}
