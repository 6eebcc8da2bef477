//! Length-prefixed frame decoder with a size limit.
//!
//! A frame is `u32 BE length` + `length` bytes, the first of which is the
//! command byte. [`FrameDecoder::decode`] looks at the front of the caller's
//! buffer and returns the frame borrowed from it, so a frame that arrived in one
//! read is never copied. The caller drops `consumed` bytes afterwards.
//!
//! A length of zero (no command byte) or above the limit is an error: the stream
//! cannot be resynchronised after either, so the connection must be closed.

/// One frame, borrowed from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// The command (or reply) byte.
    pub code: u8,
    /// The payload after the command byte.
    pub payload: &'a [u8],
}

/// Why a frame could not be decoded. Both are fatal for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The declared length exceeds the configured maximum.
    #[error("milter frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared length.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The declared length is zero, so there is no command byte.
    #[error("milter frame with length 0 (no command byte)")]
    Empty,
}

/// Stateless frame decoder with a maximum frame length.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    frame_bytes_max: u32,
}

/// Bytes in the length prefix.
pub const LENGTH_BYTES: usize = 4;

impl FrameDecoder {
    /// A decoder that refuses frames longer than `frame_bytes_max` (command byte
    /// included).
    ///
    /// # Panics
    /// If `frame_bytes_max` is 0 (a programmer error: no frame could ever pass).
    #[must_use]
    pub fn new(frame_bytes_max: u32) -> Self {
        assert!(frame_bytes_max > 0, "frame_bytes_max must be positive");
        Self { frame_bytes_max }
    }

    /// The configured maximum frame length.
    #[must_use]
    pub fn frame_bytes_max(&self) -> u32 {
        self.frame_bytes_max
    }

    /// Decodes the frame at the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, or the frame and the number
    /// of bytes it occupies (prefix included).
    ///
    /// # Errors
    /// [`FrameError`] when the length prefix is 0 or above the limit. The limit is
    /// checked as soon as the prefix is complete, before the payload arrives, so a
    /// hostile length never makes the caller buffer it.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(RawFrame<'a>, usize)>, FrameError> {
        let Some(prefix) = buf.get(..LENGTH_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                len,
                max: self.frame_bytes_max,
            });
        }
        let total = LENGTH_BYTES + len as usize;
        let Some(body) = buf.get(LENGTH_BYTES..total) else {
            return Ok(None);
        };
        debug_assert_eq!(body.len(), len as usize);
        Ok(Some((
            RawFrame {
                code: body[0],
                payload: &body[1..],
            },
            total,
        )))
    }

    /// Bytes still missing before the frame at the front of `buf` is complete
    /// (0 if complete or if the prefix itself is incomplete and nothing can be
    /// said). Lets the runtime size one read instead of many.
    #[must_use]
    pub fn bytes_wanted(&self, buf: &[u8]) -> usize {
        let Some(prefix) = buf.get(..LENGTH_BYTES) else {
            return LENGTH_BYTES - buf.len();
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        (LENGTH_BYTES + len.min(self.frame_bytes_max) as usize).saturating_sub(buf.len())
    }
}

/// Appends one frame (`code` + `payload`) to `out`.
///
/// # Panics
/// If the payload is longer than `u32::MAX - 1` bytes (a programmer error: every
/// caller bounds payloads far below that).
pub fn encode(out: &mut Vec<u8>, code: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len() + 1).expect("milter payload fits in u32");
    out.reserve(LENGTH_BYTES + len as usize);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(code);
    out.extend_from_slice(payload);
}

/// Appends one frame whose payload is built by `fill`, patching the length
/// afterwards, so multi-part payloads need no temporary buffer.
pub fn encode_with(out: &mut Vec<u8>, code: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.push(code);
    fill(out);
    let len = u32::try_from(out.len() - start - LENGTH_BYTES).expect("milter payload fits in u32");
    out[start..start + LENGTH_BYTES].copy_from_slice(&len.to_be_bytes());
}

/// Splits a big-endian u32 off the front of a payload.
pub(crate) fn be_u32(p: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = p.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

/// Splits a NUL-terminated string off the front; `None` if there is no NUL.
pub(crate) fn nul_string(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(0, p)?;
    Some((&p[..end], &p[end + 1..]))
}

/// The last string of a payload: its NUL may be missing (libmilter peers
/// differ), but nothing may follow the NUL; `None` when something does.
pub(crate) fn last_string(p: &[u8]) -> Option<&[u8]> {
    match nul_string(p) {
        None => Some(p),
        Some((s, [])) => Some(s),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_frame_split_at_every_byte() {
        let mut wire = Vec::new();
        encode(&mut wire, b'H', b"probe.example\0");
        encode(&mut wire, b'Q', b"");
        let dec = FrameDecoder::new(1024);
        for split in 0..wire.len() {
            let mut buf = wire[..split].to_vec();
            let mut frames = Vec::new();
            let mut rest = &wire[split..];
            loop {
                match dec.decode(&buf).unwrap() {
                    Some((f, used)) => {
                        frames.push((f.code, f.payload.to_vec()));
                        buf.drain(..used);
                    }
                    None if rest.is_empty() => break,
                    None => {
                        buf.push(rest[0]);
                        rest = &rest[1..];
                    }
                }
            }
            assert_eq!(
                frames,
                vec![(b'H', b"probe.example\0".to_vec()), (b'Q', Vec::new())],
                "split at {split}"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn rejects_oversized_length_before_payload_arrives() {
        let dec = FrameDecoder::new(100);
        let buf = 101u32.to_be_bytes();
        assert_eq!(
            dec.decode(&buf),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        let buf = 100u32.to_be_bytes();
        assert_eq!(dec.decode(&buf), Ok(None));
    }

    #[test]
    fn rejects_zero_length() {
        let dec = FrameDecoder::new(100);
        assert_eq!(dec.decode(&[0, 0, 0, 0, b'Q']), Err(FrameError::Empty));
    }

    #[test]
    fn bytes_wanted_counts_down() {
        let dec = FrameDecoder::new(100);
        let mut wire = Vec::new();
        encode(&mut wire, b'B', &[b'x'; 10]);
        assert_eq!(dec.bytes_wanted(&[]), 4);
        assert_eq!(dec.bytes_wanted(&wire[..4]), 11);
        assert_eq!(dec.bytes_wanted(&wire[..10]), 5);
        assert_eq!(dec.bytes_wanted(&wire), 0);
    }

    #[test]
    fn encode_with_patches_length() {
        let mut a = Vec::new();
        encode(&mut a, b'h', b"X-A\0b\0");
        let mut b = Vec::new();
        encode_with(&mut b, b'h', |o| o.extend_from_slice(b"X-A\0b\0"));
        assert_eq!(a, b);
    }
}
