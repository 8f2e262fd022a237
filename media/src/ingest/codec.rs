//! Derives what the catalog says about a track's codec (RFC 6381 codec string, picture
//! size, sample rate, channels) from its `stsd` sample entry.

use mp4_atom::{Ac3, Atom, Av01, Avcc, Codec, Eac3, Flac, Hvcc, Jpeg, Mp3, Tx3g, Uncv, Vp08, Vp09};

use super::IngestError;

/// Whether a track is picture or sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaKind {
    Video,
    Audio,
}

/// The catalog-relevant description of one sample entry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CodecInfo {
    pub kind: MediaKind,
    /// RFC 6381 / WebCodecs codec string.
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub samplerate: Option<u32>,
    pub channels: Option<u32>,
    /// Maximum bitrate if the sample entry declares one (`btrt`, `esds`), else its
    /// declared average.
    pub bitrate: Option<u64>,
}

/// Describes a sample entry, or says clearly that its codec is not supported.
pub(super) fn describe(track_id: u32, codec: &Codec) -> Result<CodecInfo, IngestError> {
    let info = match codec {
        Codec::Avc1(avc1) => video(
            avc_string("avc1", &avc1.avcc),
            avc1.visual.width,
            avc1.visual.height,
            avc1.btrt.as_ref().and_then(declared_bitrate),
        ),
        Codec::Avc3(avc3) => video(
            avc_string("avc3", &avc3.avcc),
            avc3.visual.width,
            avc3.visual.height,
            avc3.btrt.as_ref().and_then(declared_bitrate),
        ),
        Codec::Hvc1(hvc1) => video(
            hevc_string("hvc1", &hvc1.hvcc),
            hvc1.visual.width,
            hvc1.visual.height,
            hvc1.btrt.as_ref().and_then(declared_bitrate),
        ),
        Codec::Hev1(hev1) => video(
            hevc_string("hev1", &hev1.hvcc),
            hev1.visual.width,
            hev1.visual.height,
            hev1.btrt.as_ref().and_then(declared_bitrate),
        ),
        Codec::Mp4a(mp4a) => {
            let config = &mp4a.esds.es_desc.dec_config;
            let oti = config.object_type_indication;
            let codec = match (oti, &config.dec_specific) {
                (0x40, Some(specific)) if specific.profile != 0 => {
                    format!("mp4a.40.{}", specific.profile)
                }
                _ => format!("mp4a.{oti:x}"),
            };
            let channels = match &config.dec_specific {
                Some(specific) if oti == 0x40 && specific.chan_conf != 0 => {
                    u32::from(specific.chan_conf)
                }
                _ => u32::from(mp4a.audio.channel_count),
            };
            let bitrate = mp4a
                .btrt
                .as_ref()
                .map(|b| b.max_bitrate)
                .filter(|b| *b != 0)
                .or(Some(config.max_bitrate).filter(|b| *b != 0))
                .or(Some(config.avg_bitrate));
            audio(
                codec,
                u32::from(mp4a.audio.sample_rate.integer()),
                channels,
                bitrate,
            )
        }
        Codec::Opus(opus) => audio(
            "opus".to_string(),
            u32::from(opus.audio.sample_rate.integer()),
            u32::from(opus.audio.channel_count),
            None,
        ),
        other => {
            return Err(IngestError::UnsupportedCodec {
                track_id,
                codec: codec_name(other),
            })
        }
    };
    Ok(info)
}

/// A `btrt`'s maximum bitrate, or its average when the maximum is 0 (both are 0 when
/// the encoder knew neither).
fn declared_bitrate(btrt: &mp4_atom::Btrt) -> Option<u32> {
    Some(btrt.max_bitrate)
        .filter(|b| *b != 0)
        .or(Some(btrt.avg_bitrate))
}

fn video(codec: String, width: u16, height: u16, bitrate: Option<u32>) -> CodecInfo {
    CodecInfo {
        kind: MediaKind::Video,
        codec,
        width: Some(u32::from(width)).filter(|w| *w != 0),
        height: Some(u32::from(height)).filter(|h| *h != 0),
        samplerate: None,
        channels: None,
        bitrate: bitrate.filter(|b| *b != 0).map(u64::from),
    }
}

fn audio(codec: String, samplerate: u32, channels: u32, bitrate: Option<u32>) -> CodecInfo {
    CodecInfo {
        kind: MediaKind::Audio,
        codec,
        width: None,
        height: None,
        samplerate: Some(samplerate).filter(|r| *r != 0),
        channels: Some(channels).filter(|c| *c != 0),
        bitrate: bitrate.filter(|b| *b != 0).map(u64::from),
    }
}

/// `avc1.PPCCLL`: profile, constraint flags and level from the avcC (RFC 6381 §3.3).
fn avc_string(prefix: &str, avcc: &Avcc) -> String {
    format!(
        "{prefix}.{:02x}{:02x}{:02x}",
        avcc.avc_profile_indication, avcc.profile_compatibility, avcc.avc_level_indication
    )
}

/// `hvc1.1.6.L93.B0` per ISO/IEC 14496-15 Annex E.
fn hevc_string(prefix: &str, hvcc: &Hvcc) -> String {
    let space = match hvcc.general_profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    // The 32 compatibility flags, written in reverse bit order.
    let compat = u32::from_be_bytes(hvcc.general_profile_compatibility_flags).reverse_bits();
    let tier = if hvcc.general_tier_flag { 'H' } else { 'L' };
    let mut out = format!(
        "{prefix}.{space}{}.{compat:X}.{tier}{}",
        hvcc.general_profile_idc, hvcc.general_level_idc
    );
    // Constraint bytes, trailing zero bytes omitted.
    let flags = &hvcc.general_constraint_indicator_flags;
    let used = flags.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    for byte in &flags[..used] {
        out.push_str(&format!(".{byte:X}"));
    }
    out
}

/// The sample entry's four-character code, for an "unsupported codec" message.
fn codec_name(codec: &Codec) -> String {
    let kind = match codec {
        Codec::Unknown(kind, _) => *kind,
        Codec::Vp08(_) => Vp08::KIND,
        Codec::Vp09(_) => Vp09::KIND,
        Codec::Av01(_) => Av01::KIND,
        Codec::Mp3(_) => Mp3::KIND,
        Codec::Flac(_) => Flac::KIND,
        Codec::Ac3(_) => Ac3::KIND,
        Codec::Eac3(_) => Eac3::KIND,
        Codec::Jpeg(_) => Jpeg::KIND,
        Codec::Tx3g(_) => Tx3g::KIND,
        Codec::Uncv(_) => Uncv::KIND,
        other => {
            // Rarer entries (PCM variants, timed metadata...): the enum has no kind
            // accessor, but its Debug form starts with the variant name.
            let debug = format!("{other:?}");
            return debug
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or("unknown")
                .to_lowercase();
        }
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_codec_string() {
        let avcc = Avcc {
            configuration_version: 1,
            avc_profile_indication: 0x64,
            profile_compatibility: 0,
            avc_level_indication: 0x1f,
            length_size: 4,
            ..Default::default()
        };
        assert_eq!(avc_string("avc1", &avcc), "avc1.64001f");
    }

    #[test]
    fn hevc_codec_string() {
        let hvcc = Hvcc {
            general_profile_idc: 1,
            general_profile_compatibility_flags: [0x60, 0, 0, 0],
            general_level_idc: 93,
            general_constraint_indicator_flags: [0xb0, 0, 0, 0, 0, 0],
            ..Hvcc::new()
        };
        assert_eq!(hevc_string("hvc1", &hvcc), "hvc1.1.6.L93.B0");
        let main10 = Hvcc {
            general_profile_idc: 2,
            general_profile_compatibility_flags: [0x20, 0, 0, 0],
            general_tier_flag: true,
            general_level_idc: 120,
            general_constraint_indicator_flags: [0x90, 0, 0, 0, 0, 0],
            ..Hvcc::new()
        };
        assert_eq!(hevc_string("hev1", &main10), "hev1.2.4.H120.90");
    }

    #[test]
    fn unsupported_codec_is_named() {
        let err = describe(3, &Codec::Unknown(mp4_atom::FourCC::new(b"xyz1"), vec![]))
            .expect_err("unsupported");
        assert!(err.to_string().contains("xyz1"), "{err}");
    }
}
