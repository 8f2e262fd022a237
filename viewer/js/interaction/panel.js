/**
 * The interaction panel beside the video (watch.html's <aside id="interaction">): chat
 * with scrollback and an input, the poll with live bars and vote buttons, tips and the
 * goal bar, reactions with floating counts, the viewer count.
 *
 * Down: on every session the player connects, the panel subscribes to the broadcast's
 * interaction track when the catalog lists it (track.js) and feeds its records to a
 * Follower (state.js). What it shows waits until the video reaches the media time `M`
 * the events carry (mediatime.js): each state (poll bars, goal, counts) is held with the
 * `M` of its latest event, and chat lines, tip alerts and reaction floats with their own,
 * so a viewer behind live sees the panel change with the picture.
 * Up: one InteractionClient (client.js) on the same WebTransport session. Identity is
 * the page's ?jwt= token, or a guest token from POST /api/guest on the page's origin
 * (kept in localStorage until it expires). Neither goes to a relay the origin does not
 * list (location.js): through such a relay the panel is read-only and says why.
 *
 * Every piece of user text (names, messages, questions, options, emoji) is written with
 * textContent, never as HTML.
 */

import { joinAsGuest, loadGuest, saveGuest } from './guest.js';
import { nameElement } from './badge.js';
import { InteractionClient } from './client.js';
import { FrameError } from './codec.js';
import { Gate, isDue, mediaClock } from './mediatime.js';
import { Follower } from './state.js';
import { followTrack, interactionTrackOf } from './track.js';

const REACTIONS = ['❤️', '😂', '👏', '🔥', '🎉'];
const SCROLLBACK = 500;
const MAX_CHAT_CHARS = 500;
const ALERT_MS = 8000;
/** States held for the video at most; past this the oldest are dropped (newer ones hold everything). */
const MAX_HELD_STATES = 256;

const $ = (id) => document.getElementById(id);

/** host:port of a URL, for a message; '' if it is not one. */
function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}

/** The later of two media times, either possibly undefined. */
function laterOf(a, b) {
  if (a === undefined) return b;
  return b === undefined ? a : Math.max(a, b);
}

/** An element with a class and text (textContent: never HTML). */
function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

const secs = (ms) => Math.max(1, Math.ceil(ms / 1000));
/** A wait in words; the no-break space keeps "10 s" on one line. */
const inSecs = (ms) => `${secs(ms)}\u00a0s`;

/** A rejection (`{reason, message, retry_after_ms}`) in words for the viewer. */
export function describeRejection(answer, { balance } = {}) {
  const wait = answer.retry_after_ms ? ` Try again in ${inSecs(answer.retry_after_ms)}.` : '';
  switch (answer.reason) {
    case 'rate_limited':
      return `You are sending too fast.${wait || ' Wait a moment.'}`;
    case 'too_long':
      return 'That is too long: a message has at most 500 characters, a tip message 200.';
    case 'poll_closed':
      return 'This poll has closed.';
    case 'already_voted':
      return 'You have already voted in this poll.';
    case 'insufficient_balance':
      return `You do not have enough credits for that${Number.isFinite(balance) ? ` (balance ${balance})` : ''}.`;
    case 'banned':
      return 'You are banned from this chat.';
    case 'timed_out':
      return `You are timed out.${wait}`;
    case 'not_authorized':
      return answer.message ? `Not allowed: ${answer.message}` : 'You are not allowed to do that.';
    case 'invalid':
      return `The server refused that request as invalid${answer.message ? `: ${answer.message}` : '.'}`;
    case 'unavailable':
      return `The chat is unavailable right now${answer.message ? ` (${answer.message})` : ''}; try again.`;
    default:
      return `Refused: ${answer.reason ?? 'unknown reason'}${answer.message ? ` (${answer.message})` : ''}`;
  }
}

export class InteractionPanel {
  /**
   * `player`: the page's Player (its 'session' events); `video`: the video element (its
   * currentTime is the media clock); `namespace`: the broadcast's path fields; `token`: the
   * page's ?jwt= token, if any; `relayTrusted`: whether the relay the page connects to
   * may see a token (`relayHost` names it in the message when not).
   */
  constructor({ player, video, namespace, token, relayTrusted = false, relayHost = '' }) {
    this.player = player;
    this.namespace = namespace;
    this.broadcast = namespace.join('/');
    this.clock = mediaClock(video);
    this.follower = new Follower();
    this.gate = new Gate(); // chat lines (by seq), tip alerts ('tip:'+seq), reaction floats ('react:'+seq)
    this.held = []; // [{M, state}] waiting for the video to reach M, oldest first
    this.lines = new Map(); // seq -> <li> shown
    this.voted = new Map(); // poll id -> option index
    this.pollId = undefined;
    this.trackName = undefined;
    this.trackState = 'waiting'; // waiting, none, subscribed, failed
    this.pageToken = token;
    this.relayTrusted = relayTrusted;
    this.relayHost = relayHost;
    // A saved guest token is not even read for a relay that may not see it.
    this.guest = token || !relayTrusted ? undefined : loadGuest();
    this.client = new InteractionClient({ broadcast: this.broadcast, token: this.identityToken() });
    this.balance = undefined;
    this.tipOpen = false;
    this.bindDom();
    this.client.addEventListener('status', (e) => this.onClientStatus(e.detail));
    this.client.addEventListener('welcome', (e) => this.onWelcome(e.detail));
    player.addEventListener('session', (e) => this.onSession(e.detail));
    player.addEventListener('state', (e) => {
      this.playerState = e.detail.state;
      this.renderStatus();
    });
    this.timer = setInterval(() => this.tick(), 100);
    this.renderIdentity();
    this.renderStatus();
  }

  bindDom() {
    this.dom = {
      viewers: $('ix-viewers'),
      status: $('ix-status'),
      poll: $('ix-poll'),
      pollQuestion: $('ix-poll-question'),
      pollOptions: $('ix-poll-options'),
      pollFoot: $('ix-poll-foot'),
      pollError: $('ix-poll-error'),
      goal: $('ix-goal'),
      goalTitle: $('ix-goal-title'),
      goalFigures: $('ix-goal-figures'),
      goalBar: $('ix-goal-bar'),
      tippers: $('ix-tippers'),
      alerts: $('ix-alerts'),
      chat: $('ix-chat'),
      reactions: $('ix-reactions'),
      untrusted: $('ix-untrusted'),
      join: $('ix-join'),
      joinName: $('ix-join-name'),
      send: $('ix-send'),
      text: $('ix-text'),
      note: $('ix-note'),
      error: $('ix-error'),
      tip: $('ix-tip'),
      tipToggle: $('ix-tip-toggle'),
      tipForm: $('ix-tip-form'),
      tipAmount: $('ix-tip-amount'),
      tipMessage: $('ix-tip-message'),
      tipError: $('ix-tip-error'),
      balance: $('ix-balance'),
      credit: $('ix-credit'),
    };
    const d = this.dom;
    this.reactionButtons = new Map();
    for (const emoji of REACTIONS) this.reactionButton(emoji);
    d.join.addEventListener('submit', (e) => {
      e.preventDefault();
      this.join(d.joinName.value.trim());
    });
    d.send.addEventListener('submit', (e) => {
      e.preventDefault();
      this.sendChat();
    });
    d.tipForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.sendTip();
    });
    d.credit.addEventListener('click', () => this.getCredits());
    d.tipToggle.addEventListener('click', () => {
      this.tipOpen = !this.tipOpen;
      this.renderIdentity();
      if (this.tipOpen) d.tipAmount.focus();
    });
    // Keep the newest line in view while the list's box changes (a poll opens, the tip
    // form shows), unless the viewer scrolled up to read.
    this.chatAtBottom = true;
    d.chat.addEventListener('scroll', () => {
      this.chatAtBottom = d.chat.scrollHeight - d.chat.scrollTop - d.chat.clientHeight < 40;
    });
    new ResizeObserver(() => {
      if (this.chatAtBottom) d.chat.scrollTop = d.chat.scrollHeight;
    }).observe(d.chat);
  }

  reactionButton(emoji) {
    if (this.reactionButtons.has(emoji)) return this.reactionButtons.get(emoji);
    const button = el('button', 'ix-react');
    button.type = 'button';
    button.title = `React ${emoji}`;
    const face = el('span', 'ix-emoji', emoji);
    const count = el('span', 'ix-count', '');
    button.append(face, count);
    button.addEventListener('click', () => this.react(emoji));
    this.dom.reactions.append(button);
    const entry = { button, count };
    this.reactionButtons.set(emoji, entry);
    return entry;
  }

  /** One line on how the chat is doing, empty when all is well. */
  renderStatus() {
    const client = this.client.status;
    let text = '';
    if (['unauthorized', 'expired', 'unsupported'].includes(this.playerState)) text = 'Chat is not available: the player could not connect.';
    else if (this.playerState === 'offline') text = 'Chat opens when the channel is live.';
    else if (this.trackState === 'none') text = 'This channel has no chat.';
    else if (this.trackState === 'failed') text = `Chat is not available: ${this.trackError}`;
    else if (client.state === 'retrying' && client.reason === 'unavailable') text = `Chat is unavailable (${client.message}); retrying…`;
    else if (client.state === 'retrying' && this.client.token) text = 'Reconnecting to chat…';
    else if (!this.follower.state) text = 'Connecting to chat…';
    if (this.dom.status.textContent !== text) this.dom.status.textContent = text;
  }

  // ------------------------------------------------------------------ sessions, track

  /** The token the hello may carry on a session with a relay trusted or not. */
  identityToken() {
    return this.relayTrusted ? this.pageToken ?? this.guest?.token : undefined;
  }

  onSession({ session, catalog, trusted }) {
    // A GOAWAY may have moved the player to another relay: the token follows only to a
    // listed one, and is taken off before the new session can carry a hello.
    if (trusted !== this.relayTrusted) {
      this.relayTrusted = Boolean(trusted);
      this.relayHost = hostOf(this.player.relay);
      if (this.relayTrusted && !this.pageToken) this.guest ??= loadGuest();
      if (this.client.token !== this.identityToken()) this.client.setToken(this.identityToken());
      this.renderIdentity();
    }
    this.client.attach(session.wt);
    const name = catalog?.bytes ? interactionTrackOf(catalog.bytes) : undefined;
    if (!name) {
      this.trackState = 'none';
      this.renderStatus();
      return;
    }
    this.trackName = name;
    followTrack(session, this.namespace, name, {
      onRecords: (records) => this.onRecords(records),
      onDone: () => {
        if (this.player.session === session) this.trackState = 'ended';
      },
    }).then(
      (sub) => {
        this.trackState = 'subscribed';
        this.subscription = sub;
        this.renderStatus();
      },
      (err) => {
        this.trackState = 'failed';
        this.trackError = String(err?.message ?? err);
        this.renderStatus();
      },
    );
  }

  onRecords(records) {
    let replaced = false;
    let M;
    const applied = [];
    for (const r of records) {
      const out = this.follower.push(r);
      if (out.replaced) {
        replaced = true;
        M = laterOf(M, r.M);
      }
      for (const a of out.applied) {
        applied.push(a);
        M = laterOf(M, a.M);
      }
    }
    if (!replaced && applied.length === 0) return;
    const state = this.follower.state;
    if (replaced) this.syncChat(state);
    for (const { event, M: at } of applied) this.onEvent(event, at);
    this.held.push({ M, state });
    if (this.held.length > MAX_HELD_STATES) this.held.splice(0, this.held.length - MAX_HELD_STATES);
    this.tick();
    this.renderStatus();
  }

  /** After a snapshot replaced the state: hold its lines, drop shown lines it deleted. */
  syncChat(state) {
    const inSnapshot = new Set(state.chat.map((l) => l.seq));
    // Lines older than the snapshot's backlog may simply have aged out: they stay.
    const floor = state.chat.length >= 50 ? state.chat[0].seq : -Infinity;
    for (const seq of [...this.lines.keys()]) {
      if (seq >= floor && !inSnapshot.has(seq)) this.removeLine(seq);
    }
    for (const line of state.chat) this.gate.hold(line.seq, line.M, { kind: 'chat', line });
  }

  onEvent(event, M) {
    switch (event.type) {
      case 'chat':
        this.gate.hold(event.seq, M, { kind: 'chat', line: this.follower.state.chat.find((l) => l.seq === event.seq) ?? event });
        break;
      case 'chat_deleted':
        this.removeLine(event.message);
        break;
      case 'tip':
        this.gate.hold(`tip:${event.seq}`, M, { kind: 'tip', event });
        break;
      case 'reactions':
        this.gate.hold(`react:${event.seq}`, M, { kind: 'react', counts: event.counts ?? {} });
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ rendering

  tick() {
    const now = this.clock();
    let due;
    while (this.held.length > 0 && isDue(this.held[0].M, now)) due = this.held.shift();
    if (due) this.renderState(due.state);
    for (const item of this.gate.release(now)) {
      if (item.kind === 'chat') this.addLine(item.line);
      else if (item.kind === 'tip') this.showTip(item.event);
      else if (item.kind === 'react') this.floatReactions(item.counts);
    }
    this.renderPollFoot();
  }

  addLine(line) {
    if (this.lines.has(line.seq)) return;
    // Deleted while it waited for its media time?
    const state = this.follower.state;
    if (state && line.seq >= (state.chat[0]?.seq ?? Infinity) && !state.chat.some((l) => l.seq === line.seq)) return;
    const chat = this.dom.chat;
    const atBottom = this.chatAtBottom;
    const li = el('li', 'ix-line');
    li.dataset.seq = String(line.seq);
    // The badge comes from the line's role, never from its name (badge.js).
    li.append(nameElement(line, el), el('span', 'ix-text', line.text ?? ''));
    // In seq order: usually at the end.
    let before = null;
    for (let node = chat.lastElementChild; node; node = node.previousElementSibling) {
      if (Number(node.dataset.seq) < line.seq) break;
      before = node;
    }
    chat.insertBefore(li, before);
    this.lines.set(line.seq, li);
    while (this.lines.size > SCROLLBACK) {
      const first = chat.firstElementChild;
      const seq = Number(first.dataset.seq);
      first.remove();
      this.lines.delete(seq);
      this.gate.forget(seq);
    }
    if (atBottom) chat.scrollTop = chat.scrollHeight;
  }

  removeLine(seq) {
    this.lines.get(seq)?.remove();
    this.lines.delete(seq);
    this.gate.forget(seq);
  }

  showTip(event) {
    const alert = el('div', 'ix-alert');
    alert.append(el('strong', null, event.name ?? event.user ?? 'Someone'), el('span', null, ` tipped ${event.amount} credits`));
    if (event.message) alert.append(el('div', 'ix-alert-message', event.message));
    this.dom.alerts.append(alert);
    while (this.dom.alerts.children.length > 3) this.dom.alerts.firstElementChild.remove();
    setTimeout(() => alert.remove(), ALERT_MS);
  }

  floatReactions(counts) {
    for (const [emoji, n] of Object.entries(counts)) {
      if (!(n > 0)) continue;
      if (!this.reactionButtons.has(emoji) && this.reactionButtons.size >= 10) continue;
      const { button } = this.reactionButton(emoji);
      const float = el('span', 'ix-float', `${emoji} +${n}`);
      button.append(float);
      const drop = () => float.remove();
      float.addEventListener('animationend', drop);
      setTimeout(drop, 2500);
    }
  }

  renderState(state) {
    const d = this.dom;
    d.viewers.textContent = `${state.viewers} watching`;
    for (const [emoji, { count }] of this.reactionButtons) {
      const n = state.reactions?.[emoji];
      count.textContent = n > 0 ? String(n) : '';
    }
    for (const [emoji, n] of Object.entries(state.reactions ?? {})) {
      if (n > 0 && !this.reactionButtons.has(emoji) && this.reactionButtons.size < 10) this.reactionButton(emoji).count.textContent = String(n);
    }
    this.renderPoll(state.poll);
    this.renderGoal(state.goal, state.top_tippers);
    d.note.textContent = state.slow_mode_secs > 0 ? `Slow mode: one message every ${inSecs(state.slow_mode_secs * 1000)}.` : '';
  }

  renderPoll(poll) {
    const d = this.dom;
    if (!poll) {
      d.poll.hidden = true;
      this.pollId = undefined;
      return;
    }
    d.poll.hidden = false;
    if (this.pollId !== poll.id) {
      this.pollId = poll.id;
      d.pollQuestion.textContent = poll.question;
      d.pollOptions.replaceChildren();
      d.pollError.textContent = '';
      poll.options.forEach((option, i) => {
        const li = el('li', 'ix-option');
        const button = el('button', 'ix-vote');
        button.type = 'button';
        button.dataset.option = String(i);
        // The bar fills the button from behind its label: one compact row per option.
        button.append(el('span', 'ix-bar-fill'), el('span', 'ix-option-label', option), el('span', 'ix-option-count', ''));
        button.addEventListener('click', () => this.vote(poll.id, i));
        li.append(button);
        d.pollOptions.append(li);
      });
    }
    this.poll = poll;
    const total = poll.tallies.reduce((a, b) => a + b, 0);
    const mine = this.voted.get(poll.id);
    const canVote = poll.open && mine === undefined && this.canSend();
    [...d.pollOptions.children].forEach((li, i) => {
      const n = poll.tallies[i] ?? 0;
      const pct = total > 0 ? Math.round((100 * n) / total) : 0;
      li.querySelector('.ix-option-count').textContent = `${n} · ${pct}%`;
      li.querySelector('.ix-bar-fill').style.width = `${pct}%`;
      li.classList.toggle('winner', !poll.open && poll.winner === i);
      li.classList.toggle('mine', mine === i);
      li.querySelector('button').disabled = !canVote;
    });
    this.renderPollFoot();
  }

  renderPollFoot() {
    const poll = this.poll;
    if (!poll || this.dom.poll.hidden) return;
    const total = poll.tallies.reduce((a, b) => a + b, 0);
    const votes = `${total} vote${total === 1 ? '' : 's'}`;
    let text;
    if (!poll.open) {
      const winner = poll.winner !== null && poll.winner !== undefined ? poll.options[poll.winner] : undefined;
      text = `Poll closed · ${votes}${winner !== undefined ? ` · winner: ${winner}` : ''}`;
    } else {
      const left = poll.closes_at_ms - Date.now();
      text = `${votes} · ${left > 0 ? `closes in ${inSecs(left)}` : 'closing…'}`;
      if (this.voted.has(poll.id)) text += ' · you voted';
      else if (!this.canSend()) text += ' · join the chat to vote';
    }
    if (this.dom.pollFoot.textContent !== text) this.dom.pollFoot.textContent = text;
  }

  renderGoal(goal, tippers) {
    const d = this.dom;
    d.goal.hidden = !goal;
    if (!goal) return;
    d.goalTitle.textContent = goal.title;
    d.goalFigures.textContent = `${goal.progress} / ${goal.target}`;
    d.goalBar.style.width = `${goal.target > 0 ? Math.min(100, (100 * goal.progress) / goal.target) : 0}%`;
    d.tippers.textContent = tippers?.length ? `Top: ${tippers.map((t) => `${t.name} ${t.total}`).join(' · ')}` : '';
  }

  // ------------------------------------------------------------------ identity, requests

  canSend() {
    return Boolean(this.client.welcome?.user);
  }

  onClientStatus(status) {
    if (status.state === 'refused') {
      if (this.guest && !this.pageToken) {
        // A saved guest token the origin no longer takes: ask for a name again.
        this.guest = undefined;
        saveGuest(undefined);
        this.client.setToken(undefined);
        this.dom.error.textContent = 'Your guest session has ended; join again.';
      } else {
        this.dom.error.textContent = `The chat refused your access token: ${status.message}`;
      }
    }
    this.renderIdentity();
    this.renderStatus();
  }

  onWelcome(welcome) {
    if (typeof welcome.balance === 'number') this.balance = welcome.balance;
    this.renderIdentity();
    if (this.poll) this.renderPoll(this.poll);
  }

  renderIdentity() {
    const d = this.dom;
    const welcome = this.client.welcome;
    const hasToken = Boolean(this.client.token);
    d.untrusted.hidden = this.relayTrusted;
    d.untrusted.textContent = this.relayTrusted
      ? ''
      : `You are watching through ${this.relayHost || 'a relay'}, which this site does not list: your sign-in is not sent there, so you watch anonymously and cannot chat here.`;
    d.join.hidden = hasToken || !this.relayTrusted;
    d.send.hidden = !hasToken;
    const ready = this.canSend();
    d.send.querySelector('button').disabled = !ready;
    d.text.placeholder = ready ? `Chat as ${welcome.name ?? welcome.user}` : 'Connecting…';
    d.tipToggle.hidden = !ready;
    d.tipToggle.setAttribute('aria-expanded', String(Boolean(this.tipOpen)));
    d.tip.hidden = !ready || !this.tipOpen;
    d.balance.textContent = Number.isFinite(this.balance) ? `Balance: ${this.balance} credits.` : '';
  }

  async join(name) {
    const d = this.dom;
    if (!this.relayTrusted) return; // the form is hidden: a guest token would go to that relay
    if (!name) {
      d.error.textContent = 'Choose a display name first.';
      return;
    }
    d.error.textContent = '';
    d.join.querySelector('button').disabled = true;
    try {
      const guest = await joinAsGuest(name);
      this.guest = { token: guest.token, name: guest.name ?? name };
      saveGuest(this.guest);
      this.client.setToken(guest.token);
      this.renderIdentity();
      d.text.focus();
    } catch (err) {
      d.error.textContent = String(err?.message ?? err);
    } finally {
      d.join.querySelector('button').disabled = false;
    }
  }

  /** Sends `body`; the answer, or a local rejection for an oversize request. */
  async request(body) {
    try {
      const answer = await this.client.request(body);
      if (typeof answer.balance === 'number') {
        this.balance = answer.balance;
        this.renderIdentity();
      }
      return answer;
    } catch (err) {
      if (err instanceof FrameError) return { type: 'rejected', reason: 'too_long', local: true };
      throw err;
    }
  }

  async sendChat() {
    const d = this.dom;
    const text = d.text.value.trim();
    if (!text) return;
    if ([...text].length > MAX_CHAT_CHARS) {
      d.error.textContent = describeRejection({ reason: 'too_long' });
      return;
    }
    d.error.textContent = '';
    d.text.value = '';
    const answer = await this.request({ type: 'chat', text });
    if (answer.type === 'rejected') {
      d.error.textContent = describeRejection(answer);
      if (!d.text.value) d.text.value = text; // give the text back to edit or resend
    }
  }

  async vote(poll, option) {
    this.dom.pollError.textContent = '';
    this.voted.set(poll, option); // no double click while the answer travels
    this.renderPoll(this.poll);
    const answer = await this.request({ type: 'vote', poll, option });
    if (answer.type === 'rejected' && answer.reason !== 'already_voted') {
      this.voted.delete(poll);
      this.dom.pollError.textContent = describeRejection(answer);
    } else if (answer.reason === 'already_voted') {
      this.dom.pollError.textContent = describeRejection(answer);
    }
    if (this.poll) this.renderPoll(this.poll);
  }

  async react(emoji) {
    if (!this.canSend()) {
      this.dom.error.textContent = this.client.token ? 'Connecting to the chat…' : 'Join the chat to react.';
      return;
    }
    const answer = await this.request({ type: 'react', emoji });
    if (answer.type === 'rejected') this.dom.error.textContent = describeRejection(answer);
  }

  async sendTip() {
    const d = this.dom;
    const amount = Number(d.tipAmount.value);
    if (!Number.isSafeInteger(amount) || amount <= 0) {
      d.tipError.textContent = 'A tip is a whole number of credits, at least 1.';
      return;
    }
    const message = d.tipMessage.value.trim();
    const body = { type: 'tip', amount };
    if (message) body.message = message;
    d.tipError.textContent = '';
    d.tipError.classList.remove('ok');
    const answer = await this.request(body);
    if (answer.type === 'rejected') d.tipError.textContent = describeRejection(answer, { balance: this.balance });
    else {
      d.tipMessage.value = '';
      d.tipError.textContent = 'Thank you! Your tip was sent.';
      d.tipError.classList.add('ok');
    }
  }

  async getCredits() {
    this.dom.tipError.classList.remove('ok');
    const answer = await this.request({ type: 'credit', amount: 100 });
    if (answer.type === 'rejected') {
      this.dom.tipError.textContent = answer.reason === 'not_authorized' ? 'This server does not hand out credits.' : describeRejection(answer);
      if (answer.reason === 'not_authorized') this.dom.credit.hidden = true;
    } else this.dom.tipError.textContent = '';
  }

  /** What the browser tests read. */
  snapshot() {
    return {
      state: this.follower.state,
      welcome: this.client.welcome,
      client: this.client.status.state,
      relayTrusted: this.relayTrusted,
      hasToken: Boolean(this.client.token),
      track: this.trackState,
      lines: [...this.lines.keys()],
      balance: this.balance,
    };
  }
}

/** Starts the panel for the page (watch.js). */
export function startInteraction(options) {
  return new InteractionPanel(options);
}
