//! DATA transparency (RFC 5321 §4.5.2): dot-stuffing on the way out, and
//! un-stuffing with end-of-data detection on the way in.
//!
//! ```text
//! content  "a\r\n.b\r\n"      wire  "a\r\n..b\r\n.\r\n"
//!                                          ^ stuffed   ^ end: CRLF "." CRLF
//! ```
//!
//! Lines end with `CRLF` only. A bare `LF` or `CR` is content, never a line
//! end, so `LF "." LF` does not end the data and a dot after a bare `LF` is
//! not un-stuffed: the receiver agrees with every RFC-conforming sender on
//! where a message ends, which is what keeps SMTP smuggling out. The
//! delivery client goes further and normalises bare `CR`/`LF` to `CRLF`
//! before stuffing ([`Stuffer::normalizing`]), so what it sends means the
//! same thing to a lenient receiver.
//!
//! The content of a message is everything before the final `"." CRLF`,
//! including the `CRLF` that ends its last line (RFC 5321 §4.1.1.4). A
//! sender whose content does not end with `CRLF` adds one, so un-stuffing
//! gives back the content with `CRLF` appended when it was missing, and
//! exactly the content otherwise.

use memchr::{memchr, memchr2};

/// Where the un-stuffer is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line (also the start of the data).
    Start,
    /// Inside a line.
    Mid,
    /// After a `CR` inside a line.
    Cr,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` `CR` at the start of a line.
    DotCr,
}

/// Streaming un-stuffer for DATA: feed it the bytes after the 354 in any
/// chunking; it writes the content and stops right after `CRLF.CRLF`.
///
/// Bounded: it keeps a few bytes of state, appends content to the caller's
/// buffer only while the total stays within `content_bytes_max` (the rest is
/// counted, not stored), and remembers whether any line was longer than
/// `line_bytes_max` (`CRLF` included).
#[derive(Debug, Clone)]
pub struct Unstuffer {
    line: Line,
    line_bytes: usize,
    line_bytes_max: usize,
    long_line: bool,
    total: u64,
    content_bytes_max: u64,
}

/// What [`Unstuffer::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of input consumed (all of it, unless the end was found).
    pub consumed: usize,
    /// The end of data was found; `consumed` includes the final `.CRLF`.
    pub ended: bool,
}

impl Unstuffer {
    /// A new un-stuffer at the start of the data.
    #[must_use]
    pub fn new(line_bytes_max: usize, content_bytes_max: u64) -> Self {
        Unstuffer {
            line: Line::Start,
            line_bytes: 0,
            line_bytes_max,
            long_line: false,
            total: 0,
            content_bytes_max,
        }
    }

    /// Content bytes seen so far (stored or not).
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// More content than `content_bytes_max` arrived; the stored content is
    /// incomplete and the message must be refused.
    #[must_use]
    pub fn too_big(&self) -> bool {
        self.total > self.content_bytes_max
    }

    /// A line (stuffing dot and `CRLF` included) was longer than
    /// `line_bytes_max`.
    #[must_use]
    pub fn long_line(&self) -> bool {
        self.long_line
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.total += bytes.len() as u64;
        if self.total <= self.content_bytes_max {
            out.extend_from_slice(bytes);
        }
    }

    fn count(&mut self, n: usize) {
        self.line_bytes += n;
        if self.line_bytes > self.line_bytes_max {
            self.long_line = true;
        }
    }

    /// Un-stuffs `input` into `out`, up to and including the end of data.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        let mut i = 0;
        while i < input.len() {
            if self.line == Line::Mid {
                // The common case: copy the run up to the next CR at once.
                let rest = &input[i..];
                let n = memchr(b'\r', rest).unwrap_or(rest.len());
                self.emit(&rest[..n], out);
                self.count(n);
                i += n;
                if i < input.len() {
                    self.emit(b"\r", out);
                    self.count(1);
                    self.line = Line::Cr;
                    i += 1;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.count(1);
            match (self.line, b) {
                (Line::Start, b'.') => self.line = Line::Dot,
                (Line::Dot, b'\r') => self.line = Line::DotCr,
                (Line::DotCr, b'\n') => {
                    self.line = Line::Start;
                    self.line_bytes = 0;
                    return Fed {
                        consumed: i,
                        ended: true,
                    };
                }
                (Line::Cr, b'\n') => {
                    self.emit(b"\n", out);
                    self.line = Line::Start;
                    self.line_bytes = 0;
                }
                // ".\r" then not LF: the dot was stuffing, the CR is content.
                (Line::DotCr, _) => {
                    self.emit(b"\r", out);
                    self.other(b, out);
                }
                // ".x": the leading dot was stuffing and is dropped.
                (Line::Start | Line::Cr | Line::Dot, _) => self.other(b, out),
                (Line::Mid, _) => unreachable!("handled above"),
            }
        }
        Fed {
            consumed: i,
            ended: false,
        }
    }

    /// Emits a content byte inside a line (after a CR, or after the dropped
    /// stuffing dot).
    fn other(&mut self, b: u8, out: &mut Vec<u8>) {
        self.emit(&[b], out);
        self.line = if b == b'\r' { Line::Cr } else { Line::Mid };
    }
}

/// Streaming dot-stuffer: [`Stuffer::push`] content in any chunking, then
/// [`Stuffer::finish`] writes the line end (if the content lacked one) and
/// the final `.CRLF`.
#[derive(Debug, Clone)]
pub struct Stuffer {
    normalize: bool,
    at_line_start: bool,
    /// Exact mode: the last byte written was CR. Normalising mode: a CR is
    /// held back until the next byte shows whether it was bare.
    cr: bool,
}

impl Stuffer {
    /// Exact stuffing: lines end at `CRLF` only, bare `CR`/`LF` pass
    /// through; [`Unstuffer`] gives the content back unchanged.
    #[must_use]
    pub fn exact() -> Self {
        Stuffer {
            normalize: false,
            at_line_start: true,
            cr: false,
        }
    }

    /// Normalising stuffing for sending: every bare `CR` and bare `LF`
    /// becomes `CRLF` first (what Postfix does with bare `LF`), so no
    /// receiver can disagree about line ends.
    #[must_use]
    pub fn normalizing() -> Self {
        Stuffer {
            normalize: true,
            ..Self::exact()
        }
    }

    /// Appends the stuffed form of `chunk`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.normalize {
            self.push_normalizing(chunk, out);
        } else {
            self.push_exact(chunk, out);
        }
    }

    fn push_exact(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < chunk.len() {
            if self.at_line_start && chunk[i] == b'.' {
                out.push(b'.');
            }
            self.at_line_start = false;
            match memchr(b'\n', &chunk[i..]) {
                Some(k) => {
                    let end = i + k + 1;
                    out.extend_from_slice(&chunk[i..end]);
                    self.at_line_start = if k > 0 {
                        chunk[end - 2] == b'\r'
                    } else {
                        self.cr
                    };
                    self.cr = false;
                    i = end;
                }
                None => {
                    out.extend_from_slice(&chunk[i..]);
                    self.cr = chunk.last() == Some(&b'\r');
                    i = chunk.len();
                }
            }
        }
    }

    fn push_normalizing(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < chunk.len() {
            if self.cr {
                // A CR held back from the previous chunk ends a line either way.
                self.cr = false;
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if chunk[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            if self.at_line_start && chunk[i] == b'.' {
                out.push(b'.');
            }
            self.at_line_start = false;
            let rest = &chunk[i..];
            let Some(k) = memchr2(b'\r', b'\n', rest) else {
                out.extend_from_slice(rest);
                return;
            };
            out.extend_from_slice(&rest[..k]);
            i += k;
            if chunk[i] == b'\r' && i + 1 == chunk.len() {
                self.cr = true;
                return;
            }
            let crlf = chunk[i] == b'\r' && chunk[i + 1] == b'\n';
            i += if crlf { 2 } else { 1 };
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
    }

    /// Ends the data: `CRLF` if the content did not end with one, then
    /// `.CRLF`.
    pub fn finish(self, out: &mut Vec<u8>) {
        // A held-back CR (normalising) or an unfinished line gets its CRLF.
        if self.cr || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Stuffs a whole message exactly (see [`Stuffer::exact`]).
#[must_use]
pub fn stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 5);
    let mut s = Stuffer::exact();
    s.push(content, &mut out);
    s.finish(&mut out);
    out
}

/// Turns every bare `CR` and bare `LF` into `CRLF` (what the normalising
/// stuffer sends, before stuffing).
#[must_use]
pub fn normalize_line_ends(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'\r' if content.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Un-stuffs `wire` fed in `chunk`-byte pieces; content, bytes consumed,
    /// whether it ended.
    fn unstuff(wire: &[u8], chunk: usize) -> (Vec<u8>, usize, bool) {
        let mut u = Unstuffer::new(usize::MAX, u64::MAX);
        let mut out = Vec::new();
        let mut used = 0;
        for piece in wire.chunks(chunk.max(1)) {
            let fed = u.feed(piece, &mut out);
            used += fed.consumed;
            if fed.ended {
                return (out, used, true);
            }
        }
        (out, used, false)
    }

    /// The content as a receiver gets it back: CRLF added when missing.
    fn with_line_end(content: &[u8]) -> Vec<u8> {
        let mut c = content.to_vec();
        if !c.is_empty() && !c.ends_with(b"\r\n") {
            c.extend_from_slice(b"\r\n");
        }
        c
    }

    #[test]
    fn fixtures() {
        let cases: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"a\r\n.\r\n", b"a\r\n"),
            (b"..\r\n.\r\n", b".\r\n"),
            (b"..a\r\n...\r\n.\r\n", b".a\r\n..\r\n"),
            (b".a\r\n.\r\n", b"a\r\n"),
            (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n"),
            (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n"),
            (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n"),
            (b".\r.\r\n.\r\n", b"\r.\r\n"),
            (b".\r\r\n.\r\n", b"\r\r\n"),
            (b"\r\n.\r\n", b"\r\n"),
        ];
        for (wire, content) in cases {
            for chunk in 1..=wire.len() {
                let (got, used, ended) = unstuff(wire, chunk);
                assert!(ended, "{wire:?} chunk {chunk}");
                assert_eq!(used, wire.len(), "{wire:?} chunk {chunk}");
                assert_eq!(&got, content, "{wire:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn stops_right_after_the_end() {
        let wire = b"x\r\n.\r\nQUIT\r\n";
        for chunk in 1..=wire.len() {
            let (got, used, ended) = unstuff(wire, chunk);
            assert!(ended);
            assert_eq!(used, 6, "chunk {chunk}");
            assert_eq!(got, b"x\r\n");
        }
    }

    #[test]
    fn limits_are_counted_not_stored() {
        let mut u = Unstuffer::new(10, 5);
        let mut out = Vec::new();
        let fed = u.feed(b"0123456789abc\r\nxy\r\n.\r\n", &mut out);
        assert!(fed.ended);
        assert!(u.too_big());
        assert!(u.long_line());
        assert_eq!(u.total(), 19);
        assert!(out.len() <= 5);
        let mut u = Unstuffer::new(10, 100);
        let fed = u.feed(b"12345678\r\n.\r\n", &mut Vec::new());
        assert!(
            fed.ended && !u.long_line(),
            "10 bytes with CRLF is the limit"
        );
        let mut u = Unstuffer::new(10, 100);
        u.feed(b".23456789\r\n.\r\n", &mut Vec::new());
        assert!(u.long_line(), "the stuffing dot counts on the wire");
    }

    #[test]
    fn stuffing_fixtures() {
        assert_eq!(stuff(b""), b".\r\n");
        assert_eq!(stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(stuff(b"a\n.b"), b"a\n.b\r\n.\r\n");
        assert_eq!(stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        let mut out = Vec::new();
        let mut s = Stuffer::normalizing();
        s.push(b"a\n.b\r", &mut out);
        s.push(b".c\r", &mut out);
        s.push(b"\n.", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"a\r\n..b\r\n..c\r\n..\r\n.\r\n");
    }

    proptest! {
        #[test]
        fn stuff_then_unstuff_is_the_identity(
            content in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..200),
            chunk in 1usize..40,
        ) {
            let wire = stuff(&content);
            let (got, used, ended) = unstuff(&wire, chunk);
            prop_assert!(ended);
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(got, with_line_end(&content));
        }

        #[test]
        fn normalizing_stuffer_sends_the_normalized_content(
            content in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let mut s = Stuffer::normalizing();
            let mut wire = Vec::new();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(content.len())).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for c in cuts {
                s.push(&content[at..c], &mut wire);
                at = c;
            }
            s.push(&content[at..], &mut wire);
            s.finish(&mut wire);
            // No bare CR or LF on the wire.
            for (i, b) in wire.iter().enumerate() {
                if *b == b'\n' { prop_assert!(i > 0 && wire[i - 1] == b'\r'); }
                if *b == b'\r' { prop_assert_eq!(wire.get(i + 1), Some(&b'\n')); }
            }
            let (got, used, ended) = unstuff(&wire, 7);
            prop_assert!(ended);
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(got, with_line_end(&normalize_line_ends(&content)));
        }

        #[test]
        fn stuffing_chunking_does_not_matter(
            content in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..100),
            chunk in 1usize..20,
        ) {
            let mut s = Stuffer::exact();
            let mut wire = Vec::new();
            for piece in content.chunks(chunk) {
                s.push(piece, &mut wire);
            }
            s.finish(&mut wire);
            prop_assert_eq!(wire, stuff(&content));
        }
    }
}
