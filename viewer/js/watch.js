/**
 * Entry point of the watch page (/watch/<broadcast>): works out the broadcast and the
 * relay from the URL, starts the player, binds the controls and the interaction panel.
 * Every failure ends up as a plain message in the page, never a blank page; a panel that
 * fails to load leaves the player playing.
 */

import { broadcastOf, connectionOf } from './location.js';
import { bindControls } from './controls.js';
import { Player } from './player/player.js';

function fail(message) {
  document.body.dataset.state = 'error';
  const status = document.getElementById('status');
  status.className = 'overlay error';
  status.textContent = message;
}

async function main() {
  // Loaded beside the rest; the player does not wait on it if it fails.
  const panel = import('./interaction/panel.js');
  panel.catch(() => {}); // reported below, once the page has a player
  const namespace = broadcastOf(location.pathname);
  if (!namespace) return fail('No channel named in the address: use /watch/<channel>.');
  const name = namespace.join('/');
  document.getElementById('title').textContent = name;
  document.title = `${name} · Stagecast`;
  let connection;
  try {
    connection = await connectionOf(location);
  } catch (err) {
    return fail(`Cannot work out where to connect: ${err.message}`);
  }
  const player = new Player(document.getElementById('video'), { ...connection, namespace });
  bindControls(player);
  // Chat, polls, tips and reactions beside the video, on the player's own session.
  const video = document.getElementById('video');
  let interaction;
  try {
    const { startInteraction } = await panel;
    const relayTrusted = connection.trusted(connection.relay);
    const relayHost = new URL(connection.relay).host;
    interaction = startInteraction({ player, video, namespace, token: connection.token, relayTrusted, relayHost });
  } catch (err) {
    document.getElementById('ix-status').textContent = `The chat could not start: ${err.message}`;
  }
  // For people debugging in the console, and for the browser tests: the figures shown.
  window.stagecast = { player, stats: () => player.stats(), interaction };
  player.start();
}

main().catch((err) => fail(`The player failed to start: ${err.message}`));
