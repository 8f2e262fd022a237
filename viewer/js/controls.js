/**
 * The player's controls and overlays: play/pause, mute and volume, the quality menu
 * (Auto and each rendition of the video ladder, shown when there is more than one),
 * low-latency mode, fullscreen, the live badge with the current latency, the status
 * overlay (buffering, offline, too slow, errors) and the stats overlay. Everything is
 * written with textContent.
 *
 * The player box (#player) carries what the player is doing as data- attributes, kept
 * current twice a second whether the stats overlay is open or not, for tests and
 * tools that watch the page: data-rendition, data-quality, data-estimate (bit/s),
 * data-buffer (s), data-switches, data-stalls, data-stall-ms, data-too-slow.
 */

const $ = (id) => document.getElementById(id);

function formatBitrate(bps) {
  if (!bps) return '–';
  return bps > 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

export function bindControls(player) {
  const video = $('video');
  const play = $('play');
  const mute = $('mute');
  const volume = $('volume');
  const status = $('status');
  const statsBox = $('stats');
  const statsList = $('stats-list');
  const statsBtn = $('stats-btn');
  const lowlat = $('lowlat');
  const latency = $('latency');
  const live = $('live');
  const quality = $('quality');
  const qualityBox = $('quality-box');
  const box = $('player');
  let menuFor = '';

  const showPlayState = () => {
    const paused = player.userPaused;
    play.textContent = paused ? 'Play' : 'Pause';
  };
  const showMute = () => {
    const muted = video.muted || video.volume === 0;
    mute.textContent = muted ? 'Unmute' : 'Mute';
    volume.value = video.muted ? 0 : video.volume;
  };

  play.addEventListener('click', () => {
    player.setPaused(!player.userPaused);
    showPlayState();
  });
  mute.addEventListener('click', () => {
    video.muted = !video.muted;
    if (!video.muted && video.volume === 0) video.volume = 0.5;
  });
  volume.addEventListener('input', () => {
    video.volume = Number(volume.value);
    video.muted = video.volume === 0;
  });
  video.addEventListener('volumechange', showMute);
  lowlat.checked = player.lowLatency;
  lowlat.addEventListener('change', () => {
    player.lowLatency = lowlat.checked;
  });
  statsBtn.addEventListener('click', () => {
    statsBox.hidden = !statsBox.hidden;
    statsBtn.setAttribute('aria-pressed', String(!statsBox.hidden));
  });
  $('fullscreen').addEventListener('click', () => {
    const box = $('player');
    if (document.fullscreenElement) document.exitFullscreen();
    else box.requestFullscreen?.().catch(() => {});
  });
  player.addEventListener('automuted', showMute);
  quality.addEventListener('change', () => player.setQuality(quality.value));

  // The menu follows the catalog's ladder (it can change with a new catalog).
  const showQuality = (s) => {
    const key = s.renditions.map((r) => r.name).join(',');
    if (key !== menuFor) {
      menuFor = key;
      const options = [new Option('Auto', 'auto'), ...s.renditions.slice().reverse().map((r) => new Option(r.label, r.name))];
      quality.replaceChildren(...options);
      qualityBox.hidden = s.renditions.length < 2;
    }
    if (quality.value !== s.quality) quality.value = s.quality;
    const auto = quality.options[0];
    auto.textContent = s.quality === 'auto' && s.renditionLabel ? `Auto (${s.renditionLabel})` : 'Auto';
  };
  const showData = (s) => {
    const d = box.dataset;
    d.rendition = s.rendition ?? '';
    d.quality = s.quality;
    d.estimate = s.estimate !== undefined ? String(Math.round(s.estimate)) : '';
    d.buffer = s.buffer.toFixed(3);
    d.switches = String(s.switches);
    d.stalls = String(s.stalls);
    d.stallMs = String(Math.round(s.stallMs));
    d.tooSlow = String(s.tooSlow);
    d.latency = s.latency !== undefined ? s.latency.toFixed(3) : '';
    d.latencyKind = s.latencyKind ?? '';
  };

  player.addEventListener('state', (e) => {
    const { state, message } = e.detail;
    document.body.dataset.state = state;
    status.textContent = state === 'playing' || state === 'paused' ? '' : message;
    status.className = `overlay ${state}`;
    live.classList.toggle('on', state === 'playing');
  });

  setInterval(() => {
    const s = player.stats();
    latency.textContent = s.latency !== undefined && s.state === 'playing' ? `${s.latency.toFixed(1)} s` : '';
    showQuality(s);
    showData(s);
    if (statsBox.hidden) return;
    const rows = [
      ['Latency', s.latency !== undefined ? `${s.latency.toFixed(2)} s (${s.latencyKind})` : '–'],
      ['Rendition', s.rendition ? `${s.renditionLabel} (${s.rendition}, ${formatBitrate(s.renditionBitrate)})${s.switchingTo ? ` → ${s.switchingTo}` : ''}` : '–'],
      ['Quality', s.quality === 'auto' ? 'auto' : 'chosen'],
      ['Estimate', formatBitrate(s.estimate)],
      ['Buffer', `${s.buffer.toFixed(2)} s`],
      ['Bitrate', formatBitrate(s.bitrate)],
      ['Switches', String(s.switches)],
      ['Stalls', `${s.stalls} (${(s.stallMs / 1000).toFixed(1)} s)`],
      ['Frames', `${s.decodedFrames} decoded, ${s.droppedFrames} dropped`],
      ['Mode', s.lowLatency ? 'low latency' : 'normal'],
      ['Relay', s.relay],
      ['Reconnects', String(s.reconnects)],
    ];
    statsList.replaceChildren(
      ...rows.flatMap(([k, v]) => {
        const dt = document.createElement('dt');
        dt.textContent = k;
        const dd = document.createElement('dd');
        dd.textContent = v;
        return [dt, dd];
      }),
    );
  }, 500);
  showPlayState();
  showMute();
}
