//! CMAF ingest: a fragmented-MP4 byte stream in, the MSF catalog and one MoQ object per
//! track per CMAF chunk out.
//!
//! [`CmafIngest`] is sans-IO and push-based. Feed it bytes in chunks of any size with
//! [`CmafIngest::push`]; each call returns the [`IngestEvent`]s that became complete. Call
//! [`CmafIngest::finish`] at the end of the input: it reports a truncated input. To loop
//! a file "as if live", call [`CmafIngest::begin_loop`] before feeding the file again.
//!
//! ```text
//! bytes ──▶ framing (whole top-level boxes) ──▶ ftyp/moov ──▶ movie (tracks, per-track
//!                                            │                init segments) ──▶ Catalog
//!                                            └─▶ moof+mdat ──▶ split (per traf) ──▶
//!                 timeline (loop shift) ──▶ grouping (group starts) ──▶ MediaObject
//! ```
//!
//! A `moof` holding exactly one `traf` with moof-relative data offsets is passed through
//! byte for byte. Anything else (several `traf`s in one `moof`, an absolute
//! `base_data_offset`, a missing `tfdt`, or any fragment of a second or later loop pass)
//! is rewritten into one self-contained `moof` + `mdat` per track; the sample bytes are
//! always copied unchanged.
//!
//! The catalog is emitted just before the first object, when the first fragment has
//! arrived: the video framerate is measured from that fragment's sample durations
//! (fragmented `moov`s carry no sample timing). If the first fragment holds no video
//! sample, the framerate is omitted.

mod codec;
mod error;
mod event;
mod framing;
mod grouping;
mod movie;
mod split;
mod timeline;

pub use error::{IngestError, RECOMMENDED_MOVFLAGS};
pub use event::{IngestEvent, MediaObject};
pub use framing::MAX_TOP_LEVEL_BOX;
pub use grouping::AUDIO_ONLY_GROUP_SECS;

use bytes::{Bytes, BytesMut};
use mp4_atom::{Atom, Decode, FourCC, Ftyp, Mdat, Moof, Moov, Tfdt};

use crate::fragment::{describe_kind, encode_single_track_chunk, is_sync_sample};
use codec::MediaKind;
use framing::{BoxFramer, TopBox};
use grouping::GroupPlanner;
use movie::Movie;
use split::{Fragment, TrackChunk};
use timeline::LoopTimeline;

/// Where we are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing yet: the first box must be `ftyp` (or `moov`).
    Start,
    /// `ftyp` seen, waiting for `moov`.
    AwaitMoov,
    /// `moov` seen: fragments follow.
    Fragments,
}

/// The tracks of the input, known once the first `moov` has been read.
#[derive(Debug)]
struct Tracks {
    movie: Movie,
    timeline: LoopTimeline,
    groups: GroupPlanner,
}

/// Push-based fragmented-MP4 (CMAF) parser producing the MSF catalog and per-track MoQ
/// objects. See the [module documentation](self).
///
/// Inputs: [`push`](Self::push) (bytes), [`begin_loop`](Self::begin_loop) (the same file
/// starts again), [`finish`](Self::finish) (end of input). Outputs: the returned events.
/// After an error the ingest stays failed and every later call returns
/// [`IngestError::AlreadyFailed`].
#[derive(Debug)]
pub struct CmafIngest {
    framer: BoxFramer,
    phase: Phase,
    /// True between `begin_loop` and the repeated `moov`: headers are compared, not read.
    repeating: bool,
    /// The first pass's raw `ftyp` / `moov`, to check that a repeated pass is the same file.
    first_ftyp: Option<Bytes>,
    first_moov: Option<Bytes>,
    /// An `ftyp` seen in a repeated pass, compared once its `moov` arrives.
    repeat_ftyp: Option<Bytes>,
    tracks: Option<Tracks>,
    /// A `moof` waiting for its `mdat`.
    pending_moof: Option<(TopBox, Moof)>,
    catalog_sent: bool,
    /// Stream offset where the current pass over the file began (absolute
    /// `base_data_offset`s count from there).
    pass_start: u64,
    /// An error found after events were already produced by the same call; returned by
    /// the next call so that no good object is lost.
    deferred: Option<IngestError>,
    failed: bool,
}

impl Default for CmafIngest {
    fn default() -> Self {
        Self::new()
    }
}

impl CmafIngest {
    /// A fresh ingest, expecting the start of a fragmented MP4 file.
    pub fn new() -> Self {
        Self {
            framer: BoxFramer::default(),
            phase: Phase::Start,
            repeating: false,
            first_ftyp: None,
            first_moov: None,
            repeat_ftyp: None,
            tracks: None,
            pending_moof: None,
            catalog_sent: false,
            pass_start: 0,
            deferred: None,
            failed: false,
        }
    }

    /// Feeds the next bytes of the input (any size, down to one byte) and returns what
    /// became complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<IngestEvent>, IngestError> {
        self.check_usable()?;
        self.framer.extend(data);
        let mut events = Vec::new();
        loop {
            match self.step(&mut events) {
                Ok(true) => continue,
                Ok(false) => return Ok(events),
                Err(err) => return self.fail(err, events),
            }
        }
    }

    /// Ends the input: reports a truncated stream, and emits the catalog if no fragment
    /// ever arrived.
    pub fn finish(&mut self) -> Result<Vec<IngestEvent>, IngestError> {
        self.check_usable()?;
        let mut events = Vec::new();
        if let Err(err) = self.check_complete() {
            return self.fail(err, events);
        }
        if self.tracks.is_none() {
            let what = if self.framer.position() == 0 {
                "the input is empty"
            } else {
                "the input ended before its moov"
            };
            return self.fail(
                IngestError::Truncated {
                    what: what.to_string(),
                },
                events,
            );
        }
        if !self.catalog_sent {
            self.emit_catalog(&[], &mut events);
        }
        Ok(events)
    }

    /// Announces that the same file starts again with the next pushed byte.
    ///
    /// Its `ftyp`/`moov` must equal the first pass's (else [`IngestError::LoopMismatch`]);
    /// from then on every fragment's `tfdt` is moved past the end of what was sent so far
    /// and `mfhd` sequence numbers keep increasing, so decode times keep increasing across
    /// passes. Sample bytes are unchanged.
    pub fn begin_loop(&mut self) {
        if self.failed {
            return;
        }
        if let Err(err) = self.check_complete() {
            self.deferred.get_or_insert(err);
            return;
        }
        self.pass_start = self.framer.position();
        match &mut self.tracks {
            Some(tracks) => {
                tracks.timeline.begin_pass();
                self.repeating = true;
                self.phase = Phase::Start;
            }
            // No moov was read yet: the next pass is simply the first.
            None => {
                self.first_ftyp = None;
                self.phase = Phase::Start;
            }
        }
    }

    fn check_usable(&mut self) -> Result<(), IngestError> {
        if self.failed {
            return Err(IngestError::AlreadyFailed);
        }
        if let Some(err) = self.deferred.take() {
            self.failed = true;
            return Err(err);
        }
        Ok(())
    }

    /// Errors when the stream stopped in the middle of a box or between moof and mdat.
    fn check_complete(&self) -> Result<(), IngestError> {
        if let Some(what) = self.framer.incomplete() {
            return Err(IngestError::Truncated { what });
        }
        if self.pending_moof.is_some() {
            return Err(IngestError::Truncated {
                what: "input ended after a moof, before its mdat".to_string(),
            });
        }
        Ok(())
    }

    /// Records `err`; returns it now, or after the events already produced.
    fn fail(
        &mut self,
        err: IngestError,
        events: Vec<IngestEvent>,
    ) -> Result<Vec<IngestEvent>, IngestError> {
        if events.is_empty() {
            self.failed = true;
            Err(err)
        } else {
            self.deferred = Some(err);
            Ok(events)
        }
    }

    /// Frames and handles one top-level box; false when more input is needed.
    fn step(&mut self, events: &mut Vec<IngestEvent>) -> Result<bool, IngestError> {
        let Some(kind) = self.framer.peek_kind() else {
            return Ok(false);
        };
        let keep = self.classify(kind)?;
        let Some(header) = self.framer.peek_header()? else {
            return Ok(false);
        };
        let total = header.total.ok_or_else(|| IngestError::UnboundedBox {
            kind: describe_kind(kind),
        })?;
        if !keep {
            tracing::debug!(kind = %kind, size = total, "skipping box");
            self.framer.skip(kind, total);
            return Ok(true);
        }
        if total > MAX_TOP_LEVEL_BOX {
            return Err(IngestError::BoxTooLarge {
                kind: describe_kind(kind),
                size: total,
                max: MAX_TOP_LEVEL_BOX,
            });
        }
        let Some(top) = self.framer.take(header, total as usize) else {
            return Ok(false);
        };
        self.handle(top, events)?;
        Ok(true)
    }

    /// Decides from its type alone whether a box is kept (true), skipped (false) or wrong
    /// here (error), so that garbage is rejected before its "size" is trusted.
    fn classify(&self, kind: FourCC) -> Result<bool, IngestError> {
        let is = |name: &[u8; 4]| kind == FourCC::new(name);
        if is(b"ftyp") || is(b"moov") || is(b"moof") || is(b"mdat") {
            return match self.phase {
                Phase::Start | Phase::AwaitMoov if is(b"moof") => {
                    Err(IngestError::FragmentBeforeMoov {
                        kind: describe_kind(kind),
                    })
                }
                Phase::Start | Phase::AwaitMoov if is(b"mdat") => Err(IngestError::NotFragmented {
                    reason: "media data (mdat) comes before the moov".to_string(),
                }),
                Phase::Fragments if is(b"ftyp") || is(b"moov") => {
                    Err(IngestError::UnexpectedHeader {
                        kind: describe_kind(kind),
                    })
                }
                _ => Ok(true),
            };
        }
        let harmless_first = is(b"free") || is(b"skip") || is(b"wide");
        let fragment_level = is(b"styp") || is(b"sidx") || is(b"emsg") || is(b"prft");
        match self.phase {
            Phase::Start if harmless_first => Ok(false),
            Phase::Start if fragment_level => Err(IngestError::FragmentBeforeMoov {
                kind: describe_kind(kind),
            }),
            Phase::Start => Err(IngestError::NotMp4 {
                found: describe_start(self.framer.prefix(8), kind),
            }),
            // mfra, sidx, styp, free, udta, meta, uuid...: nothing we need.
            Phase::AwaitMoov | Phase::Fragments => Ok(false),
        }
    }

    fn handle(&mut self, top: TopBox, events: &mut Vec<IngestEvent>) -> Result<(), IngestError> {
        let kind = top.header.kind;
        if self.pending_moof.is_some() && kind != Mdat::KIND {
            return Err(IngestError::MissingMdat {
                found: describe_kind(kind),
            });
        }
        match kind {
            Ftyp::KIND => self.on_ftyp(top),
            Moov::KIND => self.on_moov(top),
            Moof::KIND => {
                let moof = decode::<Moof>(&top.bytes)?;
                self.pending_moof = Some((top, moof));
                Ok(())
            }
            _ => {
                let Some((moof_box, moof)) = self.pending_moof.take() else {
                    return Err(IngestError::OrphanMdat);
                };
                let fragment = Fragment {
                    file_offset: moof_box.stream_offset.saturating_sub(self.pass_start),
                    moof_bytes: moof_box.bytes,
                    moof,
                    mdat_header_len: top.header.header_len,
                    mdat_bytes: top.bytes,
                };
                self.on_fragment(&fragment, events)
            }
        }
    }

    fn on_ftyp(&mut self, top: TopBox) -> Result<(), IngestError> {
        if self.repeating {
            self.repeat_ftyp = Some(top.bytes);
        } else {
            decode::<Ftyp>(&top.bytes)?;
            self.first_ftyp = Some(top.bytes);
        }
        self.phase = Phase::AwaitMoov;
        Ok(())
    }

    fn on_moov(&mut self, top: TopBox) -> Result<(), IngestError> {
        if self.repeating {
            let mismatch = |kind: &str| IngestError::LoopMismatch {
                kind: kind.to_string(),
            };
            if self.repeat_ftyp.take() != self.first_ftyp {
                return Err(mismatch("ftyp"));
            }
            if Some(&top.bytes) != self.first_moov.as_ref() {
                return Err(mismatch("moov"));
            }
            self.repeating = false;
            self.phase = Phase::Fragments;
            return Ok(());
        }
        let moov = decode::<Moov>(&top.bytes)?;
        let ftyp = match &self.first_ftyp {
            Some(bytes) => Some(decode::<Ftyp>(bytes)?),
            None => None,
        };
        let movie = Movie::new(ftyp.as_ref(), &moov)?;
        self.tracks = Some(Tracks {
            timeline: LoopTimeline::new(movie.tracks.iter().map(|t| t.timescale)),
            groups: GroupPlanner::new(movie.tracks.iter().map(|t| t.kind)),
            movie,
        });
        self.first_moov = Some(top.bytes);
        self.phase = Phase::Fragments;
        Ok(())
    }

    fn on_fragment(
        &mut self,
        fragment: &Fragment,
        events: &mut Vec<IngestEvent>,
    ) -> Result<(), IngestError> {
        let Some(tracks) = &mut self.tracks else {
            return Err(IngestError::FragmentBeforeMoov {
                kind: describe_kind(Moof::KIND),
            });
        };
        let mut chunks = split::split(fragment, &tracks.movie)?;
        // Video first: an audio chunk of the same fragment then sees the video group
        // that starts in it.
        chunks.sort_by_key(|c| tracks.movie.tracks[c.track].kind != MediaKind::Video);

        if !self.catalog_sent {
            let framerates: Vec<Option<f64>> = (0..tracks.movie.tracks.len())
                .map(|track| measured_framerate(&tracks.movie, &chunks, track))
                .collect();
            self.emit_catalog(&framerates, events);
        }
        let Some(tracks) = &mut self.tracks else {
            return Ok(());
        };

        let sequence = tracks.timeline.sequence(fragment.moof.mfhd.sequence_number);
        let pass_through = fragment.moof.traf.len() == 1 && !tracks.timeline.rewriting();
        for chunk in chunks {
            let track = &tracks.movie.tracks[chunk.track];
            let decode_time = tracks.timeline.place(
                chunk.track,
                track.track_id,
                chunk.decode_time,
                chunk.duration,
            )?;
            let keyframe = is_sync_sample(chunk.first_sample_flags);
            let starts_group = tracks.groups.starts_group(
                chunk.track,
                decode_time,
                chunk.duration,
                track.timescale,
                keyframe,
            );
            let verbatim = pass_through
                && chunk.traf.tfhd.base_data_offset.is_none()
                && chunk.decode_time.is_some();
            let payload = if verbatim {
                concat(&fragment.moof_bytes, &fragment.mdat_bytes)
            } else {
                rewrite(fragment, &chunk, sequence, decode_time)?
            };
            events.push(IngestEvent::Object(MediaObject {
                track: track.entry.name.clone(),
                starts_group,
                keyframe,
                payload,
                decode_time,
                timescale: track.timescale,
                duration: chunk.duration,
                sample_count: chunk.sample_count,
            }));
        }
        Ok(())
    }

    fn emit_catalog(&mut self, framerates: &[Option<f64>], events: &mut Vec<IngestEvent>) {
        if let Some(tracks) = &self.tracks {
            events.push(IngestEvent::Catalog(tracks.movie.catalog(framerates)));
            self.catalog_sent = true;
        }
    }
}

/// Decodes a whole top-level box with mp4-atom, naming the box in the error.
fn decode<T: Atom>(bytes: &[u8]) -> Result<T, IngestError> {
    let mut cursor = bytes;
    T::decode(&mut cursor).map_err(|source| IngestError::Malformed {
        kind: describe_kind(T::KIND),
        source,
    })
}

/// What a stream that is not MP4 starts with: text is quoted, anything else is shown as
/// the would-be box type.
fn describe_start(prefix: &[u8], kind: FourCC) -> String {
    let text = prefix
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if text {
        format!("text starting {:?}", String::from_utf8_lossy(prefix))
    } else {
        format!("box type {}", describe_kind(kind))
    }
}

fn concat(a: &[u8], b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.freeze()
}

/// One self-contained moof + mdat for `chunk`, at the given sequence number and decode
/// time, with the sample bytes copied as they are.
fn rewrite(
    fragment: &Fragment,
    chunk: &TrackChunk,
    sequence: u32,
    decode_time: u64,
) -> Result<Bytes, IngestError> {
    let mut traf = chunk.traf.clone();
    traf.tfdt = Some(Tfdt {
        base_media_decode_time: decode_time,
    });
    let runs: Vec<&[u8]> = chunk
        .runs
        .iter()
        .map(|range| &fragment.mdat_bytes[range.clone()])
        .collect();
    encode_single_track_chunk(sequence, traf, &runs)
        .map(Bytes::from)
        .map_err(IngestError::Encode)
}

/// Frames per second of a video track, from the most common sample duration of its chunk
/// in the first fragment (ffmpeg sometimes gives the very first sample an odd duration).
fn measured_framerate(movie: &Movie, chunks: &[TrackChunk], track: usize) -> Option<f64> {
    /// Enough samples for a reliable answer without walking a huge run.
    const MAX_SAMPLES: usize = 1000;
    let info = &movie.tracks[track];
    if info.kind != MediaKind::Video {
        return None;
    }
    let chunk = chunks.iter().find(|c| c.track == track)?;
    let default = chunk
        .traf
        .tfhd
        .default_sample_duration
        .unwrap_or(info.trex.default_sample_duration);
    let mut counts: Vec<(u32, usize)> = Vec::new();
    let durations = chunk
        .traf
        .trun
        .iter()
        .flat_map(|trun| trun.samples.iter())
        .take(MAX_SAMPLES)
        .map(|sample| sample.duration.unwrap_or(default));
    for duration in durations {
        match counts.iter_mut().find(|(d, _)| *d == duration) {
            Some((_, n)) => *n += 1,
            None => counts.push((duration, 1)),
        }
    }
    let (duration, _) = counts.into_iter().max_by_key(|(_, n)| *n)?;
    if duration == 0 {
        return None;
    }
    let fps = f64::from(info.timescale) / f64::from(duration);
    Some((fps * 1000.0).round() / 1000.0)
}
