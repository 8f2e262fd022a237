//! Stagecast's media mapping (MSF + CMSF): the MSF catalog, CMAF ingest that turns a
//! fragmented-MP4 byte stream into per-track MoQ objects, and the egress muxer that turns
//! received objects back into one playable fragmented MP4.
//!
//! Everything here is pure (sans-IO): bytes in, bytes and events out, no sockets, files,
//! clocks or async runtime. The publisher reads ffmpeg's output (or a file, looped) and
//! pushes it into [`ingest::CmafIngest`]; it publishes the resulting
//! [`catalog::Catalog`] on the `catalog` track and each [`ingest::MediaObject`] on its
//! track, opening a new MoQ group when `starts_group` is set. A subscriber parses the
//! catalog and feeds received objects to [`egress::FragmentedMp4Writer`] to get one
//! playable file (or hands the per-track init data and objects to MSE/WebCodecs).
//!
//! ```text
//!  ffmpeg / file ─bytes─▶ CmafIngest ─▶ Catalog ──────────────▶ "catalog" track (JSON)
//!                                    └▶ MediaObject per track ─▶ "video", "audio" tracks
//!                                       per CMAF chunk           (group per GOP)
//!
//!  received objects ─▶ FragmentedMp4Writer(catalog) ─▶ init segment + fragments ─▶ .mp4
//! ```
//!
//! Mapping (CMSF): one MoQ object = one CMAF chunk (`moof` + `mdat`) of one track; one
//! MoQ group = one GOP, starting at a keyframe; each track's CMAF header travels base64
//! in the catalog's `initData`.
//!
//! Ladders (CMSF switching sets): several video tracks in one input are renditions of one
//! source. The catalog lists them as alternates (one `altGroup`, with `bitrate`, `width`,
//! `height`, `framerate`, `label`); every object carries a group number shared across
//! them ([`ingest::MediaObject::group`]), so group N of each rendition starts at the same
//! presentation time and a player can switch at any group boundary. A subscriber picks
//! one rendition per alternate group with [`catalog::choose_tracks`].
//!
//! [`moq_pub`] reads the other layout in use, `moq-pub`'s (a catalogformat-01 `.catalog`
//! and one init track shared by every track), so that its broadcasts play too.

pub mod catalog;
pub mod egress;
pub mod ingest;
pub mod moq_pub;
pub mod producer_time;

mod boxes;
mod fragment;

pub use fragment::chunk_decode_time;

#[cfg(test)]
mod tests {
    /// The publisher and subscriber move these into async tasks and wrap the errors in
    /// `anyhow`: they must be `Send` (errors also `Sync + 'static`).
    #[test]
    fn public_types_are_thread_safe() {
        fn send<T: Send>() {}
        fn error<T: std::error::Error + Send + Sync + 'static>() {}
        send::<crate::ingest::CmafIngest>();
        send::<crate::egress::FragmentedMp4Writer>();
        send::<crate::catalog::Catalog>();
        error::<crate::ingest::IngestError>();
        error::<crate::egress::EgressError>();
        error::<crate::catalog::CatalogError>();
    }
}
