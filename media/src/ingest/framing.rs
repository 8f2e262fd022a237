//! Cuts an arbitrarily chunked byte stream into whole top-level boxes.
//!
//! Only the 8- or 16-byte box header is looked at here (through mp4-atom's [`Header`]);
//! what a box means is decided by the caller, which peeks at the type first and then
//! either takes the whole box (bounded by [`MAX_TOP_LEVEL_BOX`]) or skips it without
//! buffering it.

use bytes::{Bytes, BytesMut};
use mp4_atom::{DecodeMaybe, FourCC, Header};

use super::IngestError;
use crate::fragment::describe_kind;

/// The largest top-level box we buffer (a `moov`, `moof` or `mdat`): 64 MiB.
pub const MAX_TOP_LEVEL_BOX: u64 = 64 << 20;

/// The header of the next top-level box.
#[derive(Debug, Clone, Copy)]
pub(super) struct BoxHeader {
    /// The box type.
    pub kind: FourCC,
    /// Header length: 8, or 16 with a 64-bit size.
    pub header_len: usize,
    /// Whole box size including the header; `None` for size 0 ("to the end of the file").
    pub total: Option<u64>,
}

/// A complete top-level box taken from the stream.
#[derive(Debug, Clone)]
pub(super) struct TopBox {
    pub header: BoxHeader,
    /// The whole box, header included.
    pub bytes: Bytes,
    /// Where the box started, counted in bytes since the start of the stream.
    pub stream_offset: u64,
}

/// Buffers input until whole top-level boxes are available.
#[derive(Debug, Default)]
pub(super) struct BoxFramer {
    /// Bytes received and not yet taken or skipped.
    buf: BytesMut,
    /// Bytes of a skipped box still to be discarded as they arrive.
    skipping: u64,
    /// Bytes taken or skipped so far: the stream offset of `buf[0]` (once `skipping` is 0).
    consumed: u64,
    /// Type of the box being skipped, for a truncation message.
    skipping_kind: Option<FourCC>,
}

impl BoxFramer {
    /// Appends input bytes, discarding those that belong to a box being skipped.
    pub fn extend(&mut self, mut data: &[u8]) {
        if self.skipping > 0 {
            let n = usize::try_from(self.skipping)
                .unwrap_or(usize::MAX)
                .min(data.len());
            self.skipping -= n as u64;
            self.consumed += n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// The next box's type, once its first 8 bytes have arrived.
    pub fn peek_kind(&self) -> Option<FourCC> {
        if self.skipping > 0 || self.buf.len() < 8 {
            return None;
        }
        let kind: [u8; 4] = self.buf[4..8].try_into().ok()?;
        Some(FourCC::from(kind))
    }

    /// The first `n` buffered bytes (fewer if fewer arrived), for error messages.
    pub fn prefix(&self, n: usize) -> &[u8] {
        &self.buf[..n.min(self.buf.len())]
    }

    /// The next box's header, once it has fully arrived.
    pub fn peek_header(&self) -> Result<Option<BoxHeader>, IngestError> {
        if self.skipping > 0 {
            return Ok(None);
        }
        let mut view: &[u8] = &self.buf;
        let before = view.len();
        let header = match Header::decode_maybe(&mut view) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(_) => {
                let kind = self.peek_kind().map(describe_kind).unwrap_or_default();
                return Err(IngestError::InvalidBoxSize { kind });
            }
        };
        let header_len = before - view.len();
        Ok(Some(BoxHeader {
            kind: header.kind,
            header_len,
            total: header.size.map(|size| size as u64 + header_len as u64),
        }))
    }

    /// Takes the whole box described by `header` if it has fully arrived.
    pub fn take(&mut self, header: BoxHeader, total: usize) -> Option<TopBox> {
        if self.skipping > 0 || self.buf.len() < total {
            return None;
        }
        let stream_offset = self.consumed;
        self.consumed += total as u64;
        Some(TopBox {
            header,
            bytes: self.buf.split_to(total).freeze(),
            stream_offset,
        })
    }

    /// Discards the next `total` bytes (a box we do not need), as they arrive.
    pub fn skip(&mut self, kind: FourCC, total: u64) {
        let now = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        let _ = self.buf.split_to(now);
        self.consumed += now as u64;
        self.skipping = total - now as u64;
        self.skipping_kind = Some(kind);
    }

    /// Stream offset of the next byte to be framed.
    pub fn position(&self) -> u64 {
        self.consumed + self.skipping
    }

    /// Describes what is left incomplete, or `None` when the stream ended between boxes.
    pub fn incomplete(&self) -> Option<String> {
        if self.skipping > 0 {
            let kind = self.skipping_kind.map(describe_kind).unwrap_or_default();
            return Some(format!(
                "input ended inside a {kind} box, {} bytes short",
                self.skipping
            ));
        }
        if self.buf.is_empty() {
            return None;
        }
        match self.peek_header() {
            Ok(Some(header)) => Some(format!(
                "input ended inside a {} box: {} of {} bytes",
                describe_kind(header.kind),
                self.buf.len(),
                header
                    .total
                    .map_or_else(|| "?".to_string(), |t| t.to_string())
            )),
            _ => Some(format!(
                "input ended inside a box header ({} bytes)",
                self.buf.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_boxes_fed_byte_by_byte() {
        let mut stream = boxed(b"free", b"xyz");
        stream.extend(boxed(b"ftyp", b"iso6\0\0\0\0"));
        let mut framer = BoxFramer::default();
        let mut seen = Vec::new();
        for byte in &stream {
            framer.extend(std::slice::from_ref(byte));
            while let Some(header) = framer.peek_header().expect("header") {
                let total = header.total.expect("sized") as usize;
                if header.kind == FourCC::new(b"free") {
                    framer.skip(header.kind, total as u64);
                    continue;
                }
                match framer.take(header, total) {
                    Some(b) => seen.push((b.stream_offset, b.bytes.len())),
                    None => break,
                }
            }
        }
        assert_eq!(seen, vec![(11, 16)]);
        assert_eq!(framer.incomplete(), None);
        assert_eq!(framer.position(), 27);
    }

    #[test]
    fn skips_without_buffering() {
        let mut framer = BoxFramer::default();
        framer.extend(&boxed(b"free", &[0; 4])[..10]);
        let header = framer.peek_header().expect("ok").expect("header");
        framer.skip(header.kind, header.total.expect("sized"));
        assert!(framer.incomplete().is_some());
        framer.extend(&[0, 0]);
        assert_eq!(framer.incomplete(), None);
    }

    #[test]
    fn invalid_size_is_an_error() {
        let mut framer = BoxFramer::default();
        framer.extend(b"\0\0\0\x03moov");
        assert!(matches!(
            framer.peek_header(),
            Err(IngestError::InvalidBoxSize { .. })
        ));
    }
}
