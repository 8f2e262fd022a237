/**
 * Plays CMAF through Media Source Extensions: one SourceBuffer per slot (the video
 * ladder, the audio: ladder.js), fed the init segment of the rendition playing in it and
 * then its chunks (moof+mdat) in order. A switch of rendition (`switchTrack`) is queued
 * between two chunks: `changeType` to the new rendition's type, then its init segment, in
 * the same SourceBuffer, so what is buffered plays on into the new rendition without a
 * gap (a second SourceBuffer would be a second track to the browser).
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

  /** Queues the change to `track`: its type, then its init segment. */
  switchTo(track) {
    this.queue.push({ track });
    this.pump();
  }

  pump() {
    if (this.sb.updating || this.queue.length === 0) return;
    let next = this.queue.shift();
    if (next.track) {
      const { track } = next;
      // changeType resets the parser to the new type; with the same codec it is harmless,
      // and alternates may differ in profile or codec.
      try {
        if (typeof this.sb.changeType === 'function') this.sb.changeType(track.mime);
      } catch (err) {
        this.onError(err);
      }
      this.track = track;
      next = track.init;
    }
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
  /**
   * Opens a MediaSource on `video` with one SourceBuffer per slot: `slots` is
   * [{key, track}], the rendition each starts with.
   */
  static async open(video, slots, onError) {
    const mediaSource = new MediaSource();
    const url = URL.createObjectURL(mediaSource);
    video.src = url;
    await new Promise((resolve) => mediaSource.addEventListener('sourceopen', resolve, { once: true }));
    URL.revokeObjectURL(url);
    const sink = new MseSink(video, mediaSource, slots, onError);
    for (const { key, track } of slots) sink.buffers.get(key).append(track.init);
    return sink;
  }

  constructor(video, mediaSource, slots, onError) {
    this.video = video;
    this.mediaSource = mediaSource;
    this.buffers = new Map();
    for (const { key, track } of slots) {
      if (!MediaSource.isTypeSupported(track.mime)) throw new Error(`this browser cannot play ${track.mime}`);
      this.buffers.set(key, new TrackBuffer(mediaSource, track, onError));
    }
  }

  /** Appends a chunk to slot `key`. */
  append(key, bytes) {
    this.buffers.get(key)?.append(bytes);
  }

  /** From the next append on, slot `key` plays `track` (after its init segment). */
  switchTrack(key, track) {
    this.buffers.get(key)?.switchTo(track);
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
