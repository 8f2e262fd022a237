/**
 * Plays CMAF through Media Source Extensions: one SourceBuffer per catalog track, fed
 * that track's init segment and then its chunks (moof+mdat) in arrival order.
 *
 * Why MSE and not WebCodecs: every MoQ object here is already a complete CMAF chunk, which
 * MSE takes as is; the browser then does demuxing, audio output, audio/video sync and
 * frame-drop accounting (getVideoPlaybackQuality). WebCodecs would need an MP4 demuxer,
 * an audio renderer (AudioWorklet) and our own A/V clock in JavaScript. The cost of MSE
 * is its buffering, which the player keeps small by steering the playhead (player.js).
 */

/** How much media to keep behind the playhead (seconds) before removing it. */
const KEEP_BEHIND = 10;

class TrackBuffer {
  constructor(mediaSource, track, onError) {
    this.track = track;
    this.sb = mediaSource.addSourceBuffer(track.mime);
    this.sb.mode = 'segments'; // chunks carry their own decode times (tfdt)
    this.queue = [];
    this.onError = onError;
    this.bytes = 0;
    this.sb.addEventListener('updateend', () => this.pump());
    this.sb.addEventListener('error', () => onError(new Error(`SourceBuffer error on ${track.name}`)));
  }

  append(bytes) {
    this.queue.push(bytes);
    this.pump();
  }

  pump() {
    if (this.sb.updating || this.queue.length === 0) return;
    const next = this.queue.shift();
    try {
      this.sb.appendBuffer(next);
      this.bytes += next.length;
    } catch (err) {
      if (err.name === 'QuotaExceededError') {
        // Full: drop what is furthest behind and try the chunk again after.
        this.queue.unshift(next);
        this.removeBefore(Infinity, 2);
        return;
      }
      this.onError(err);
    }
  }

  /** Removes media before `time - keep` seconds (when idle). */
  removeBefore(time, keep = KEEP_BEHIND) {
    if (this.sb.updating || this.sb.buffered.length === 0) return;
    const start = this.sb.buffered.start(0);
    const end = Math.min(time, this.sb.buffered.end(this.sb.buffered.length - 1)) - keep;
    if (end > start + 1) this.sb.remove(start, end);
  }
}

export class MseSink {
  /** Opens a MediaSource on `video` with one SourceBuffer per track of `catalog`. */
  static async open(video, catalog, onError) {
    const mediaSource = new MediaSource();
    const url = URL.createObjectURL(mediaSource);
    video.src = url;
    await new Promise((resolve) => mediaSource.addEventListener('sourceopen', resolve, { once: true }));
    URL.revokeObjectURL(url);
    const sink = new MseSink(video, mediaSource, catalog, onError);
    for (const track of catalog.tracks) sink.buffers.get(track.name).append(track.init);
    return sink;
  }

  constructor(video, mediaSource, catalog, onError) {
    this.video = video;
    this.mediaSource = mediaSource;
    this.catalog = catalog;
    this.buffers = new Map();
    for (const track of catalog.tracks) {
      if (!MediaSource.isTypeSupported(track.mime)) throw new Error(`this browser cannot play ${track.mime}`);
      this.buffers.set(track.name, new TrackBuffer(mediaSource, track, onError));
    }
  }

  append(trackName, bytes) {
    this.buffers.get(trackName)?.append(bytes);
  }

  /** Bytes appended so far over all tracks. */
  get bytesAppended() {
    let n = 0;
    for (const b of this.buffers.values()) n += b.bytes;
    return n;
  }

  /** The end of the newest buffered range (the live edge we hold), or undefined. */
  liveEdge() {
    const b = this.video.buffered;
    return b.length ? b.end(b.length - 1) : undefined;
  }

  /** Start of the newest buffered range. */
  newestStart() {
    const b = this.video.buffered;
    return b.length ? b.start(b.length - 1) : undefined;
  }

  trim() {
    for (const b of this.buffers.values()) b.removeBefore(this.video.currentTime);
  }

  close() {
    try {
      if (this.mediaSource.readyState === 'open') this.mediaSource.endOfStream();
    } catch {
      // already ended
    }
  }
}
