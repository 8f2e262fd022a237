//! Walks the top-level boxes of a complete buffer (an init segment or an object payload),
//! using mp4-atom's [`Header`] for the framing.

use mp4_atom::{DecodeMaybe, FourCC, Header};

/// One top-level box of a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawBox<'a> {
    pub kind: FourCC,
    /// The whole box, header included.
    pub bytes: &'a [u8],
}

/// Splits `buf` into its top-level boxes; errors on a truncated or size-0 box.
pub(crate) fn top_level_boxes(buf: &[u8]) -> Result<Vec<RawBox<'_>>, mp4_atom::Error> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let mut view = rest;
        let header = Header::decode_maybe(&mut view)?.ok_or(mp4_atom::Error::OutOfBounds)?;
        let header_len = rest.len() - view.len();
        let size = header.size.ok_or(mp4_atom::Error::InvalidSize)?;
        let total = header_len
            .checked_add(size)
            .ok_or(mp4_atom::Error::InvalidSize)?;
        if total > rest.len() {
            return Err(mp4_atom::Error::OutOfBounds);
        }
        let (whole, tail) = rest.split_at(total);
        out.push(RawBox {
            kind: header.kind,
            bytes: whole,
        });
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rejects_truncation() {
        let buf = b"\0\0\0\x0afree\x01\x02\0\0\0\x08mdat";
        let boxes = top_level_boxes(buf).expect("boxes");
        assert_eq!(boxes.len(), 2);
        assert_eq!(boxes[0].kind, FourCC::new(b"free"));
        assert_eq!(boxes[1].bytes.len(), 8);
        assert!(top_level_boxes(&buf[..12]).is_err());
        assert!(top_level_boxes(b"\0\0\0\0mdat").is_err());
        assert!(top_level_boxes(b"\0\0\0\x02mdat").is_err());
    }
}
