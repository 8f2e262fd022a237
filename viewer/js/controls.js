/**
 * The player's controls and overlays: play/pause, mute and volume, low-latency mode,
 * fullscreen, the live badge with the current latency, the status overlay (buffering,
 * offline, errors) and the stats overlay. Everything is written with textContent.
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
    if (statsBox.hidden) return;
    const rows = [
      ['Latency', s.latency !== undefined ? `${s.latency.toFixed(2)} s` : '–'],
      ['Buffer', `${s.buffer.toFixed(2)} s`],
      ['Bitrate', formatBitrate(s.bitrate)],
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
