//! Stagecast's media mapping (MSF + CMSF): the MSF catalog, CMAF ingest that turns a
//! fragmented-MP4 byte stream into per-track MoQ objects, and the egress muxer that turns
//! received objects back into one playable fragmented MP4.

pub mod catalog;
pub mod ingest;

pub mod egress;
mod fragment;

mod boxes;
