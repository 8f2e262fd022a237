//! CMAF ingest: a fragmented-MP4 byte stream in, the MSF catalog and one MoQ object per
//! track per CMAF chunk out.
//!
//! [`CmafIngest`] is sans-IO and push-based. Feed it bytes in chunks of any size with
//! [`CmafIngest::push`]; each call returns the [`IngestEvent`]s that became complete. Call
//! [`CmafIngest::finish`] at the end of the input: it reports a truncated input. To loop
//! a file "as if live", call [`CmafIngest::begin_loop`] before feeding the file again.
//!
//! ```text
//! bytes ─▶ framing ─▶ ftyp + moov ─▶ movie: tracks, names, codecs,
//!          (whole      │              per-track init segments ──────────▶ Catalog
//!          top-level   └▶ moof + mdat ─▶ split: one chunk per traf ─▶ objects:
//!          boxes)           timeline (loop shift) + grouping (group starts)
//!                           + payload (verbatim or rewritten) ──────────▶ MediaObject
//! ```
//!
//! A `moof` holding exactly one `traf` with moof-relative data offsets is passed through
//! byte for byte. Anything else (several `traf`s in one `moof`, an absolute
//! `base_data_offset`, a missing `tfdt`, or any fragment of a second or later loop pass)
//! is rewritten into one self-contained `moof` + `mdat` per track; the sample bytes are
//! always copied unchanged.
//!
//! The catalog is emitted just before the first object, once every video track has sent
//! a chunk: each video framerate is measured from the sample durations of the track's
//! first chunk (fragmented `moov`s carry no sample timing). With one fragment per track
//! and frame (`separate_moof`), that holds the first objects back by about one frame;
//! the wait ends after [`MAX_HELD_OBJECTS`] objects, and a framerate learnt later comes in
//! an update. It is emitted again, after the objects that made it
//! change, when the media taught something new: the bitrate of a track that declares none,
//! measured over its first [`BITRATE_WINDOW_SECS`] seconds; or that the video alternates'
//! groups are not aligned after all.
//!
//! Several video tracks are renditions of one source (a ladder from one ffmpeg process):
//! the catalog lists them as alternates in one `altGroup`, and every object carries a
//! group number shared across them ([`MediaObject::group`]): group N of each rendition
//! starts at the same presentation time when their keyframes are aligned. When they are
//! not, numbers still follow start times, and the catalog says so (`groupsAligned: false`
//! on the alternates).

mod bitrate;
mod codec;
mod error;
mod event;
mod framing;
mod grouping;
mod movie;
mod numbering;
mod objects;
mod split;
mod timeline;

pub use bitrate::BITRATE_WINDOW_SECS;

/// Objects held back, before the first catalog, waiting for every video track's first
/// chunk: a video track that starts later than this gets its framerate in an update.
pub const MAX_HELD_OBJECTS: usize = 32;
pub use error::{IngestError, RECOMMENDED_MOVFLAGS};
pub use event::{IngestEvent, MediaObject};
pub use framing::MAX_TOP_LEVEL_BOX;
pub use grouping::AUDIO_ONLY_GROUP_SECS;
pub use movie::VIDEO_ALT_GROUP;

use bytes::Bytes;
use mp4_atom::{Atom, Decode, FourCC, Ftyp, Mdat, Moof, Moov};

use crate::fragment::describe_kind;
use crate::producer_time::{decode_prft, ProducerTime};
use framing::{BoxFramer, TopBox};
use movie::Movie;
use objects::Tracks;
use split::Fragment;

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

/// Push-based fragmented-MP4 (CMAF) parser producing the MSF catalog and per-track MoQ
/// objects. See the [module documentation](self).
///
/// Inputs: [`push`](Self::push) (bytes), [`begin_loop`](Self::begin_loop) (the same file
/// starts again), [`finish`](Self::finish) (end of input). Outputs: the returned events.
///
/// Errors are reported once: if the failing call had already produced events, those are
/// returned and the error comes from the next call. After that the ingest stays failed
/// and every call returns [`IngestError::AlreadyFailed`].
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
    /// The producer time (`prft`) in front of the next `moof`, and its track's id.
    pending_prft: Option<(u32, ProducerTime)>,
    catalog_sent: bool,
    /// Objects made before the first catalog could be sent (waiting for every video
    /// track's first chunk).
    held: Vec<MediaObject>,
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
            pending_prft: None,
            catalog_sent: false,
            held: Vec::new(),
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
    ///
    /// When looping a file, it may also be called at the end of each pass (to check that
    /// the pass was complete) before [`begin_loop`](Self::begin_loop); the ingest stays
    /// usable.
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
            self.emit_catalog(&mut events);
        }
        if let Some(tracks) = &mut self.tracks {
            tracks.end_of_input();
            events.extend(tracks.catalog_update().map(IngestEvent::Catalog));
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
                tracks.begin_pass();
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
        mut events: Vec<IngestEvent>,
    ) -> Result<Vec<IngestEvent>, IngestError> {
        if !self.catalog_sent && !self.held.is_empty() {
            // Good objects held back for the first catalog go out before the error.
            self.emit_catalog(&mut events);
        }
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
        if is(b"prft") && self.phase == Phase::Fragments {
            // Kept: the encoder's clock for the next fragment (glass-to-glass latency).
            return Ok(true);
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
            kind if kind == FourCC::new(b"prft") => {
                // A malformed one costs only the latency figure, never the media.
                self.pending_prft = decode_prft(&top.bytes).ok();
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
                    producer_time: self.pending_prft.take(),
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
        self.tracks = Some(Tracks::new(Movie::new(ftyp.as_ref(), &moov)?));
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
        let chunks = tracks.split(fragment)?;
        let objects = tracks.objects(fragment, chunks)?;
        if self.catalog_sent {
            events.extend(objects.into_iter().map(IngestEvent::Object));
            events.extend(tracks.catalog_update().map(IngestEvent::Catalog));
            return Ok(());
        }
        let seen = tracks.every_video_track_seen();
        self.held.extend(objects);
        if seen || self.held.len() >= MAX_HELD_OBJECTS {
            self.emit_catalog(events);
        }
        Ok(())
    }

    /// The first catalog, then the objects held back for it.
    fn emit_catalog(&mut self, events: &mut Vec<IngestEvent>) {
        if let Some(tracks) = &mut self.tracks {
            events.push(IngestEvent::Catalog(tracks.catalog()));
            self.catalog_sent = true;
            events.extend(self.held.drain(..).map(IngestEvent::Object));
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
