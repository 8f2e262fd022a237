//! The catalogs of a transcoded broadcast: whether a source catalog is one the origin makes
//! a ladder for (exactly one video rendition), and the catalog it serves instead once the
//! rungs exist: the source's tracks with the rungs beside its video, all in one `altGroup`
//! with `bitrate`, `width`, `height`, `framerate` and `label`, as a ladder published from
//! one ffmpeg process is (README, "A ladder from one ffmpeg process").

use stagecast_media::catalog::{Catalog, CatalogTrack, GROUPS_ALIGNED};
use stagecast_media::ingest::VIDEO_ALT_GROUP;

use super::ladder::Rung;

/// The one video rendition of `catalog`, if it has exactly one CMAF video track with a
/// known height and an init segment (what ffmpeg is fed first).
pub fn single_video(catalog: &Catalog) -> Option<&CatalogTrack> {
    let mut video = catalog
        .tracks
        .iter()
        .filter(|t| t.is_cmaf() && t.is_video());
    let only = video.next()?;
    if video.next().is_some() || only.height.is_none() || only.init_data.is_none() {
        return None;
    }
    Some(only)
}

/// Whether `now` (the single video rendition of a new source catalog, if it has one) is
/// the video a transcode was started for: the same track, init segment and picture size.
/// A measured bitrate arriving, or other tracks changing, is not a new video.
pub fn same_video(started: &CatalogTrack, now: Option<&CatalogTrack>) -> bool {
    now.is_some_and(|now| {
        now.name == started.name
            && now.init_data == started.init_data
            && now.width == started.width
            && now.height == started.height
    })
}

/// `source` (the publisher's catalog) with `made`'s video tracks (the ingest of ffmpeg's
/// output: one video track per rung, in `rungs` order) added after the source's video as
/// its alternates. `None` if `source` has no single video rendition any more.
pub fn ladder_catalog(source: &Catalog, made: &Catalog, rungs: &[Rung]) -> Option<Catalog> {
    let original = single_video(source)?.clone();
    let alt_group = original.alt_group.unwrap_or(VIDEO_ALT_GROUP);
    let source_label = original
        .label
        .clone()
        .or_else(|| original.height.map(|h| format!("{h}p")));
    let mut catalog = source.clone();
    let position = catalog
        .tracks
        .iter()
        .position(|t| t.name == original.name)?;
    let video = &mut catalog.tracks[position];
    video.alt_group = Some(alt_group);
    video.label = source_label.clone();
    let made_video = made.tracks.iter().filter(|t| t.is_cmaf() && t.is_video());
    let mut added = Vec::new();
    for (rung, track) in rungs.iter().zip(made_video) {
        let mut track = track.clone();
        track.name = rung.track_name(&original.name);
        let label = rung.label();
        track.label = Some(if Some(&label) == source_label.as_ref() {
            format!("{label}-{}k", rung.bitrate / 1000)
        } else {
            label
        });
        track.alt_group = Some(alt_group);
        track.render_group = original.render_group;
        track.bitrate = track.bitrate.or(Some(rung.bitrate));
        track.framerate = track.framerate.or(original.framerate);
        track.lang.clone_from(&original.lang);
        // Rung groups take the source's ids by start time (policy::GroupIds), so they
        // line up whatever ffmpeg's own numbering said.
        track.extra.remove(GROUPS_ALIGNED);
        added.push(track);
    }
    catalog.tracks.splice(position + 1..position + 1, added);
    Some(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(name: &str, height: u32) -> CatalogTrack {
        let mut track = CatalogTrack::cmaf(name);
        track.role = Some("video".into());
        track.height = Some(height);
        track.width = Some(height * 16 / 9);
        track.framerate = Some(30.0);
        track.alt_group = Some(VIDEO_ALT_GROUP);
        track.label = Some(format!("{height}p"));
        track.set_init_segment(b"init");
        track
    }

    fn audio() -> CatalogTrack {
        let mut track = CatalogTrack::cmaf("audio");
        track.role = Some("audio".into());
        track
    }

    #[test]
    fn only_a_single_video_rendition_is_transcoded() {
        let single = Catalog::new(vec![video("video", 360), audio()]);
        assert_eq!(
            single_video(&single).map(|t| t.name.as_str()),
            Some("video")
        );
        let ladder = Catalog::new(vec![video("video", 360), video("video1", 240), audio()]);
        assert!(single_video(&ladder).is_none());
        assert!(single_video(&Catalog::new(vec![audio()])).is_none());
        let mut no_init = video("video", 360);
        no_init.init_data = None;
        assert!(single_video(&Catalog::new(vec![no_init])).is_none());
    }

    #[test]
    fn rungs_join_the_source_as_alternates() {
        let source = Catalog::new(vec![video("video", 360), audio()]);
        let mut made_top = video("video", 240);
        made_top.framerate = None;
        made_top.extra.insert(GROUPS_ALIGNED.into(), false.into());
        let mut made_low = video("video1", 144);
        made_low.bitrate = Some(140_000);
        let made = Catalog::new(vec![made_top, made_low]);
        let rungs = [
            Rung {
                height: 240,
                bitrate: 400_000,
            },
            Rung {
                height: 144,
                bitrate: 150_000,
            },
        ];
        let catalog = ladder_catalog(&source, &made, &rungs).expect("a ladder");
        let names: Vec<&str> = catalog.tracks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["video", "video.240p", "video.144p", "audio"]);
        let top = &catalog.tracks[1];
        assert_eq!(top.alt_group, Some(VIDEO_ALT_GROUP));
        assert_eq!(top.label.as_deref(), Some("240p"));
        assert_eq!(
            top.bitrate,
            Some(400_000),
            "the rung's target, none measured"
        );
        assert_eq!(top.framerate, Some(30.0), "the source's frame rate");
        assert_eq!(top.height, Some(240));
        assert!(top.groups_aligned());
        assert_eq!(
            catalog.tracks[2].bitrate,
            Some(140_000),
            "what ffmpeg declared"
        );
        assert_eq!(catalog.tracks[0].label.as_deref(), Some("360p"));
        // The source is not a ladder afterwards for this module's purposes either.
        assert!(single_video(&catalog).is_none());
    }

    #[test]
    fn a_rung_at_the_source_height_gets_its_own_label() {
        let source = Catalog::new(vec![video("video", 360)]);
        let made = Catalog::new(vec![video("video", 360)]);
        let rungs = [Rung {
            height: 360,
            bitrate: 800_000,
        }];
        let catalog = ladder_catalog(&source, &made, &rungs).expect("a ladder");
        assert_eq!(catalog.tracks[1].label.as_deref(), Some("360p-800k"));
        assert_eq!(catalog.tracks[1].name, "video.360p");
    }

    #[test]
    fn a_new_init_segment_or_size_is_a_new_video() {
        let started = video("video", 360);
        let mut measured = started.clone();
        measured.bitrate = Some(900_000);
        assert!(same_video(&started, Some(&measured)));
        let mut new_init = started.clone();
        new_init.set_init_segment(b"other");
        assert!(!same_video(&started, Some(&new_init)));
        assert!(!same_video(&started, Some(&video("video", 720))));
        assert!(!same_video(&started, Some(&video("cam", 360))));
        assert!(!same_video(&started, None), "no single video any more");
    }
}
