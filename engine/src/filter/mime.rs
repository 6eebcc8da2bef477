//! The message model of the content scanner: a MIME parser written for hostile
//! input, producing what SpamAssassin's rule classes look at.
//!
//! - `header` rules: [`Message::header`] gives each [`Header`] with its
//!   unfolded `raw` value and its RFC 2047-decoded `value`; [`Header::addrs`]
//!   and [`Header::names`] are the `:addr` and `:name` forms;
//!   [`Message::all_headers`] is `ALL`.
//! - `body` rules: [`Message::body_text`] (Subject line, then the rendered
//!   text of every text part); per part, [`Part::text`].
//! - `rawbody` rules: [`Part::raw_text`] (transfer- and charset-decoded, HTML
//!   not rendered).
//! - `uri` rules: [`Message::urls`], from text and HTML link attributes.
//! - `mimeheader` rules: [`Part::headers`] of every part.
//! - attachments: [`Message::attachments`], with the file name, declared and
//!   sniffed type and the decoded bytes.
//!
//! Hostile input: every [`Limits`] bound is checked before the work it bounds
//! (a part is not created past `parts_max`, a header is not stored past
//! `headers_max`, a header value is not copied past `header_bytes_max`, a
//! decoder never writes past the remaining decoded budget), and each bound
//! that was hit is a [`Violation`] in the result, never a panic. Every pass is
//! linear in its input; nesting is walked at most [`DEPTH_HARD_MAX`] deep.
//!
//! Streaming: [`Parser`] buffers what the milter sends, up to
//! `message_bytes_max` (it does not parse incrementally), and parses at the
//! end; its result is the same as [`parse`] on the whole message.

mod decode;
mod header;
mod html;
pub(crate) use html::{decode_entities, raw_text_end};
pub mod sniff;
pub(crate) mod url;

pub use header::Header;
pub use url::{URLS_MAX, URL_BYTES_MAX};

/// Ceiling for [`Limits::depth_max`]: the parser recurses once per nesting
/// level, so the stack it needs is bounded by this whatever the config says.
pub const DEPTH_HARD_MAX: usize = 64;

/// Most [`Violation::Malformed`] entries kept per message.
pub const MALFORMED_MAX: usize = 32;

/// Bounds on the work and memory one message may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of multiparts and embedded messages; the top-level
    /// entity is depth 0. Clamped to [`DEPTH_HARD_MAX`]. Default 8.
    pub depth_max: usize,
    /// Most entities (the top level, multipart containers and leaves, and
    /// embedded messages all count). Default 256.
    pub parts_max: usize,
    /// Most header fields kept over the whole message (all parts). Default
    /// 1000.
    pub headers_max: usize,
    /// Longest header value kept, in unfolded bytes. Default 64 KiB.
    pub header_bytes_max: usize,
    /// Largest message parsed; bytes past it are not looked at. Default 50
    /// MiB.
    pub message_bytes_max: usize,
    /// Most decoded bytes over all parts (base64/QP output, embedded
    /// messages). Default 64 MiB.
    pub decoded_bytes_max: usize,
    /// Most decoded bytes in one part. Default 50 MiB.
    pub part_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth_max: 8,
            parts_max: 256,
            headers_max: 1000,
            header_bytes_max: 64 * 1024,
            message_bytes_max: 50 * 1024 * 1024,
            decoded_bytes_max: 64 * 1024 * 1024,
            part_bytes_max: 50 * 1024 * 1024,
        }
    }
}

/// A bound that was hit or a structural defect; the scanner turns these into
/// a verdict. Each kind of bound is reported once per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Nesting deeper than `depth_max`: the deeper entities were not parsed.
    DepthExceeded,
    /// More than `parts_max` entities: the rest were not parsed.
    PartsExceeded,
    /// More than `headers_max` header fields: the rest were not kept.
    HeadersExceeded,
    /// A header value longer than `header_bytes_max`: it was cut.
    HeaderTooLong,
    /// The message is longer than `message_bytes_max`: the rest was ignored.
    MessageTooLarge,
    /// Decoded content over `decoded_bytes_max` or `part_bytes_max`: cut.
    DecodedTooLarge,
    /// A structural defect (what, in words); at most [`MALFORMED_MAX`].
    Malformed(String),
}

/// One MIME entity: the top level, a multipart container, a leaf, or the
/// message inside a `message/rfc822` part. Parts are in document order; the
/// top-level entity is `parts[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// This entity's header fields (for the top level, the message headers).
    pub headers: Vec<Header>,
    /// `type/subtype`, lower-case; `text/plain` (or `message/rfc822` in a
    /// digest) when absent or unreadable.
    pub content_type: String,
    /// The declared charset, if any.
    pub charset: Option<String>,
    /// Nesting depth: 0 for the top level.
    pub depth: usize,
    /// The file name (Content-Disposition `filename`, else Content-Type
    /// `name`), RFC 2231 and RFC 2047 decoded.
    pub filename: Option<String>,
    /// For text parts: the text body rules see (HTML rendered to text).
    pub text: Option<String>,
    /// For text parts: transfer- and charset-decoded, not rendered.
    pub raw_text: Option<String>,
    /// The part is `text/html`.
    pub is_html: bool,
    /// Decoded bytes of a leaf; 0 for containers (multipart, and
    /// `message/rfc822` whose message is the next part).
    pub size: usize,
    /// Bytes of a leaf's body as it stands in the message (still
    /// transfer-encoded); 0 for containers.
    pub raw_size: usize,
}

/// A part that is a file: not text, or named, or marked as an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name, decoded (see [`Part::filename`]).
    pub filename: Option<String>,
    /// The declared `type/subtype`, lower-case.
    pub declared_type: String,
    /// The type the content's magic bytes show ([`sniff`] constants).
    pub sniffed_type: Option<&'static str>,
    /// Decoded bytes.
    pub size: usize,
    /// Nesting depth of the part.
    pub depth: usize,
    /// The index of the part in [`Message::parts`].
    pub part: usize,
    /// The decoded content, within the decoded caps.
    pub data: Vec<u8>,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The top-level header fields, in order.
    pub headers: Vec<Header>,
    /// Every entity, in document order; `parts[0]` is the top level.
    pub parts: Vec<Part>,
    /// URLs from text parts and HTML link attributes, de-duplicated, in order
    /// of appearance (`www.` ones prefixed with `http://`).
    pub urls: Vec<String>,
    /// The parts that are files.
    pub attachments: Vec<Attachment>,
    /// Bounds hit and defects found.
    pub violations: Vec<Violation>,
    /// What SpamAssassin's parser notes about the MIME structure.
    pub flags: MimeFlags,
}

/// Structural facts SpamAssassin's message parser and MIMEEval record, read
/// by the `check_msg_parse_flags` and `check_for_mime` evals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MimeFlags {
    /// Text other than whitespace and dots after a multipart's closing
    /// delimiter (`mime_epilogue_exists`).
    pub epilogue: bool,
    /// A multipart delimiter line not followed by a header field
    /// (`missing_mime_headers`).
    pub missing_headers: bool,
    /// A part's header block ended by a body line instead of a blank line
    /// (`missing_mime_head_body_separator`).
    pub missing_separator: bool,
    /// A quoted-printable leaf with an encoded line longer than 78
    /// characters, not counting its line feed (`mime_qp_long_line`; RFC 2045
    /// allows 76, SpamAssassin tolerates 78).
    pub qp_long_line: bool,
    /// The longest encoded line of a base64 leaf (its line feed counted),
    /// `application/ics` parts aside (`check_base64_length`).
    pub base64_line_max: usize,
}

impl Message {
    /// The top-level headers called `name` (case-insensitive), in order.
    pub fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Header> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    }

    /// The decoded value of the first top-level header called `name`.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// What SpamAssassin's `body` rules match: the decoded Subject as the
    /// first line, then the rendered text of each text part in order, one
    /// part after another separated by a line break.
    pub fn body_text(&self) -> String {
        let mut out = String::from(self.header_value("Subject").unwrap_or(""));
        out.push('\n');
        for t in self.parts.iter().filter_map(|p| p.text.as_deref()) {
            out.push_str(t);
            if !t.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// What SpamAssassin's `ALL` header pseudo-name matches: every top-level
    /// header as a `Name: value\n` line (decoded values).
    pub fn all_headers(&self) -> String {
        let mut out = String::new();
        for h in &self.headers {
            out.push_str(&h.name);
            out.push_str(": ");
            out.push_str(&h.value);
            out.push('\n');
        }
        out
    }

    /// Whether a bound or defect of this kind was recorded.
    pub fn has(&self, v: &Violation) -> bool {
        self.violations.contains(v)
    }
}

/// Parses a whole message (header block, blank line, body), LF or CRLF.
pub fn parse(raw: &[u8], limits: &Limits) -> Message {
    let mut b = Builder {
        limits: Limits {
            depth_max: limits.depth_max.min(DEPTH_HARD_MAX),
            ..*limits
        },
        msg: Message::default(),
        urls: url::Urls::default(),
        headers_left: limits.headers_max,
        decoded_left: limits.decoded_bytes_max,
        malformed: 0,
    };
    let raw = if raw.len() > limits.message_bytes_max {
        b.violation(Violation::MessageTooLarge);
        &raw[..limits.message_bytes_max]
    } else {
        raw
    };
    let raw = skip_mbox_from(raw);
    b.entity(raw, 0, "text/plain", false);
    if let Some(top) = b.msg.parts.first() {
        b.msg.headers = top.headers.clone();
    }
    b.msg.urls = b.urls.into_vec();
    b.msg
}

/// Drops an mbox `From ` separator line at the very start.
fn skip_mbox_from(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        if let Some(nl) = memchr::memchr(b'\n', raw) {
            return &raw[nl + 1..];
        }
    }
    raw
}

/// Receives a message the way a milter does (header fields, then body chunks)
/// and parses it at the end. Buffers at most `message_bytes_max + 1` bytes;
/// the result equals [`parse`] of the same bytes whatever the chunking.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    buf: Vec<u8>,
}

impl Parser {
    /// A parser for one message.
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            buf: Vec::new(),
        }
    }

    /// Appends raw message bytes (header lines or body, any split).
    pub fn push(&mut self, chunk: &[u8]) {
        let room = (self.limits.message_bytes_max + 1).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// Appends one header field as the milter delivers it (`SMFIC_HEADER`:
    /// name and value, without the colon and the final line break).
    pub fn push_header(&mut self, name: &[u8], value: &[u8]) {
        self.push(name);
        self.push(b": ");
        self.push(value);
        self.push(b"\r\n");
    }

    /// Marks the end of the header fields (`SMFIC_EOH`): the blank line.
    pub fn end_of_headers(&mut self) {
        self.push(b"\r\n");
    }

    /// Bytes buffered so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Parses what was received.
    pub fn finish(self) -> Message {
        parse(&self.buf, &self.limits)
    }
}

/// Whether a content type is parsed as an embedded message.
fn is_embedded_message(ct: &str) -> bool {
    ct == "message/rfc822" || ct == "message/global"
}

/// Whether a leaf of this type is text for body rules.
fn is_text(ct: &str) -> bool {
    ct.starts_with("text/")
        || (ct.starts_with("message/") && ct != "message/partial" && ct != "message/external-body")
}

struct Builder {
    limits: Limits,
    msg: Message,
    urls: url::Urls,
    headers_left: usize,
    decoded_left: usize,
    malformed: usize,
}

impl Builder {
    fn violation(&mut self, v: Violation) {
        if let Violation::Malformed(_) = v {
            if self.malformed >= MALFORMED_MAX {
                return;
            }
            self.malformed += 1;
        }
        if !self.msg.violations.contains(&v) {
            self.msg.violations.push(v);
        }
    }

    fn malformed(&mut self, what: &str) {
        self.violation(Violation::Malformed(what.to_owned()));
    }

    /// Parses one entity at `depth` (checked by the caller) into `parts`.
    /// Parses one entity. `child`: it is a part of a multipart, whose
    /// header block SpamAssassin checks for a separating blank line.
    fn entity(&mut self, data: &[u8], depth: usize, default_type: &str, child: bool) {
        if self.msg.parts.len() >= self.limits.parts_max {
            self.violation(Violation::PartsExceeded);
            return;
        }
        // the message's own header block skips a few invalid lines, as
        // SpamAssassin does; a part's ends at the first
        let (headers, body, no_separator) =
            self.split_headers(data, if child { 0 } else { INVALID_HEADER_LINES });
        if child && no_separator {
            self.msg.flags.missing_separator = true;
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.raw.as_bytes())
        };
        let ct = find("Content-Type").map(header::structured);
        let disposition = find("Content-Disposition").map(header::structured);
        let cte = find("Content-Transfer-Encoding")
            .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
            .unwrap_or_default();
        let mut ct = ct.unwrap_or_default();
        if !ct.main.contains('/') || ct.main.contains(char::is_whitespace) {
            if ct.main.is_empty() {
                ct.main = default_type.to_owned();
            } else {
                self.malformed("unreadable Content-Type");
                // As SpamAssassin reads it (Util::parse_content_type): a
                // type starting with the word "text" is text/plain; any
                // other stays what it says (without white space), so an
                // `application-x-gzip` body is a file, not text.
                let word_text = ct.main.strip_prefix("text").is_some_and(|rest| {
                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                ct.main = if word_text {
                    "text/plain".to_owned()
                } else {
                    // `type/sub` cut at white space or a second `/` in the
                    // subtype, then white space dropped
                    let kept = match ct.main.split_once('/') {
                        Some((main, sub)) => {
                            let end = sub
                                .find(|c: char| c == '/' || c.is_whitespace())
                                .unwrap_or(sub.len());
                            format!("{main}/{}", &sub[..end])
                        }
                        None => ct.main.clone(),
                    };
                    kept.split_whitespace().collect()
                };
            }
        }
        // a boundary without its `;` (`multipart/mixed boundary=b`):
        // SpamAssassin finds `boundary=` anywhere in the value
        let loose = if ct.main.starts_with("multipart/") && ct.param("boundary").is_none() {
            find("Content-Type").and_then(loose_boundary)
        } else {
            None
        };
        let filename = disposition
            .as_ref()
            .and_then(|d| d.param("filename"))
            .or_else(|| ct.param("name"))
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty());
        let is_attachment_disposition =
            disposition.as_ref().is_some_and(|d| d.main == "attachment");
        let index = self.msg.parts.len();
        self.msg.parts.push(Part {
            headers,
            content_type: ct.main.clone(),
            charset: ct.param("charset").map(str::to_owned),
            depth,
            filename: filename.clone(),
            text: None,
            raw_text: None,
            is_html: false,
            size: 0,
            raw_size: 0,
        });
        if ct.main.starts_with("multipart/") {
            let Some(boundary) = ct
                .param("boundary")
                .filter(|b| !b.is_empty())
                .map(|b| b.as_bytes().to_vec())
                .or(loose)
            else {
                self.malformed("multipart without boundary");
                self.leaf(index, body, &cte, true, false);
                return;
            };
            let child_type = if ct.main == "multipart/digest" {
                "message/rfc822"
            } else {
                "text/plain"
            };
            self.multipart(index, body, &boundary, depth, child_type, &cte);
        } else if is_embedded_message(&ct.main) {
            if depth >= self.limits.depth_max {
                self.violation(Violation::DepthExceeded);
                return;
            }
            match self.transfer_decode(body, &cte) {
                Some(inner) => self.entity(&inner, depth + 1, "text/plain", false),
                None => self.entity(body, depth + 1, "text/plain", false),
            }
        } else {
            let attach = filename.is_some() || is_attachment_disposition;
            let text = is_text(&ct.main);
            self.leaf(index, body, &cte, text, attach);
        }
    }

    /// Splits a multipart body at its delimiter lines and parses each part.
    fn multipart(
        &mut self,
        index: usize,
        body: &[u8],
        boundary: &[u8],
        depth: usize,
        child_type: &str,
        cte: &str,
    ) {
        let mut delim = Vec::with_capacity(boundary.len() + 2);
        delim.extend_from_slice(b"--");
        delim.extend_from_slice(boundary);
        let finder = memchr::memmem::Finder::new(&delim);
        let mut start: Option<usize> = None;
        let mut closed = false;
        let mut children = 0usize;
        let mut pos = 0;
        while let Some(off) = finder.find(&body[pos..]) {
            let at = pos + off;
            pos = at + delim.len();
            if at > 0 && body[at - 1] != b'\n' {
                continue;
            }
            let line_end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |e| pos + e);
            let rest = &body[pos..line_end];
            let close = rest.starts_with(b"--");
            if !close && !rest.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                continue;
            }
            // SpamAssassin: a delimiter that is not the last must be
            // followed by a header field, when any line follows
            if !close && line_end + 1 < body.len() && !is_field_line(&body[line_end + 1..]) {
                self.msg.flags.missing_headers = true;
            }
            if let Some(s) = start {
                let end = trim_line_break(body, s, at);
                if depth >= self.limits.depth_max {
                    self.violation(Violation::DepthExceeded);
                    return;
                }
                children += 1;
                self.entity(&body[s..end], depth + 1, child_type, true);
                if self.msg.parts.len() >= self.limits.parts_max && !close {
                    self.violation(Violation::PartsExceeded);
                    return;
                }
            }
            if close {
                closed = true;
                // the epilogue: anything but whitespace and dots after it
                if body.get(line_end + 1..).is_some_and(|rest| {
                    rest.iter()
                        .any(|b| !b.is_ascii_whitespace() && *b != b'.' && *b != 0x0b)
                }) {
                    self.msg.flags.epilogue = true;
                }
                break;
            }
            start = Some((line_end + 1).min(body.len()));
            pos = start.unwrap_or(body.len());
        }
        match start {
            None => {
                self.malformed("multipart without boundary lines");
                self.leaf(index, body, cte, true, false);
            }
            Some(s) if !closed => {
                self.malformed("multipart without closing boundary");
                if s < body.len() {
                    if depth >= self.limits.depth_max {
                        self.violation(Violation::DepthExceeded);
                        return;
                    }
                    self.entity(&body[s..], depth + 1, child_type, true);
                } else if children == 0 {
                    self.malformed("empty multipart");
                }
            }
            Some(_) => {}
        }
    }

    /// Base64 or quoted-printable decoding within the caps; `None` for the
    /// identity encodings.
    fn transfer_decode(&mut self, body: &[u8], cte: &str) -> Option<Vec<u8>> {
        let cap = self.limits.part_bytes_max.min(self.decoded_left);
        let d = match cte {
            "base64" => decode::base64(body, cap),
            "quoted-printable" => decode::quoted_printable(body, cap, false),
            _ => return None,
        };
        if d.truncated {
            self.violation(Violation::DecodedTooLarge);
        }
        self.decoded_left -= d.bytes.len();
        Some(d.bytes)
    }

    /// Decodes a leaf: text for body rules, bytes for attachments.
    fn leaf(&mut self, index: usize, body: &[u8], cte: &str, text: bool, attachment: bool) {
        self.msg.parts[index].raw_size = body.len();
        if cte == "base64" && self.msg.parts[index].content_type != "application/ics" {
            let longest = body
                .split_inclusive(|&b| b == b'\n')
                .map(lf_line_len)
                .max()
                .unwrap_or(0);
            self.msg.flags.base64_line_max = self.msg.flags.base64_line_max.max(longest);
        }
        if cte == "quoted-printable" && !self.msg.flags.qp_long_line {
            // SpamAssassin counts the line with its line feed: over 79
            self.msg.flags.qp_long_line = body
                .split_inclusive(|&b| b == b'\n')
                .any(|line| lf_line_len(line) > 79 && !line.starts_with(b"SPAM: "));
        }
        let bytes = match self.transfer_decode(body, cte) {
            Some(bytes) => bytes,
            None => {
                let cap = self.limits.part_bytes_max.min(self.decoded_left);
                if body.len() > cap {
                    self.violation(Violation::DecodedTooLarge);
                }
                let bytes = body[..body.len().min(cap)].to_vec();
                self.decoded_left -= bytes.len();
                bytes
            }
        };
        let part = &self.msg.parts[index];
        let (ct, depth) = (part.content_type.clone(), part.depth);
        let is_file = attachment || !text;
        if text {
            let raw_text = decode::to_utf8(&bytes, part.charset.as_deref());
            let is_html = ct == "text/html";
            let rendered = if is_html {
                html::render(&raw_text, &mut self.urls)
            } else {
                raw_text.clone()
            };
            url::extract_text(&rendered, &mut self.urls);
            let part = &mut self.msg.parts[index];
            part.is_html = is_html;
            part.text = Some(rendered);
            part.raw_text = Some(raw_text);
        }
        self.msg.parts[index].size = bytes.len();
        if is_file {
            self.msg.attachments.push(Attachment {
                filename: self.msg.parts[index].filename.clone(),
                declared_type: ct,
                sniffed_type: sniff::sniff(&bytes),
                size: bytes.len(),
                depth,
                part: index,
                data: bytes,
            });
        }
    }

    /// Reads the header block of an entity: its fields, the body after the
    /// blank line, and whether a body line ended the block instead. A line
    /// that is neither a field nor a continuation is skipped with its
    /// continuations (`tolerate` of them at most; a mail-parse violation
    /// each), and the next ends the block (it belongs to the body), as does
    /// a line starting with `--`, as in SpamAssassin.
    fn split_headers<'a>(
        &mut self,
        data: &'a [u8],
        tolerate: usize,
    ) -> (Vec<Header>, &'a [u8], bool) {
        let mut headers = Vec::new();
        let mut no_separator = false;
        let mut invalid = 0usize;
        let mut cur: Option<(&'a [u8], Vec<u8>)> = None;
        let mut dropping = false;
        let mut pos = 0;
        let body = loop {
            if pos >= data.len() {
                break &data[data.len()..];
            }
            let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |e| pos + e);
            let next = (end + 1).min(data.len());
            let line = &data[pos..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break &data[next..];
            }
            if line[0] == b' ' || line[0] == b'\t' {
                if let Some((_, value)) = cur.as_mut() {
                    self.append_value(value, line);
                } else if !dropping {
                    self.malformed("continuation line without a header");
                }
                pos = next;
                continue;
            }
            let field = memchr::memchr(b':', line).and_then(|c| {
                let name = line[..c].trim_ascii_end();
                (!name.is_empty() && name.iter().all(|b| (0x21..=0x7e).contains(b)))
                    .then_some((name, &line[c + 1..]))
            });
            let Some((name, value)) = field else {
                if invalid < tolerate && !line.starts_with(b"--") {
                    // skipped, with its continuation lines
                    invalid += 1;
                    self.malformed("invalid header line skipped");
                    if let Some((n, v)) = cur.take() {
                        headers.push(Header::new(n, v.trim_ascii()));
                    }
                    dropping = true;
                    pos = next;
                    continue;
                }
                if !headers.is_empty() || cur.is_some() {
                    self.malformed("header block ended by a non-header line");
                }
                no_separator = true;
                break &data[pos..];
            };
            if let Some((n, v)) = cur.take() {
                headers.push(Header::new(n, v.trim_ascii()));
            }
            if self.headers_left == 0 {
                self.violation(Violation::HeadersExceeded);
                dropping = true;
            } else {
                self.headers_left -= 1;
                dropping = false;
                let mut v = Vec::new();
                self.append_value(&mut v, value.trim_ascii_start());
                cur = Some((name, v));
            }
            pos = next;
        };
        if let Some((n, v)) = cur.take() {
            headers.push(Header::new(n, v.trim_ascii()));
        }
        (headers, body, no_separator)
    }

    /// Appends an unfolded line to a header value, within `header_bytes_max`.
    fn append_value(&mut self, value: &mut Vec<u8>, line: &[u8]) {
        let room = self.limits.header_bytes_max.saturating_sub(value.len());
        if line.len() > room {
            self.violation(Violation::HeaderTooLong);
        }
        value.extend_from_slice(&line[..line.len().min(room)]);
    }
}

/// Util::parse_content_type's boundary, from anywhere in the value:
/// `\bboundary\s*=\s*("[^"]+|[^\s";]+(?=[\s;]|$))`, quotes dropped.
fn loose_boundary(value: &[u8]) -> Option<Vec<u8>> {
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(k) = memchr::memmem::find(&lower[from..], b"boundary") {
        let at = from + k;
        from = at + 1;
        let word_start =
            at == 0 || !(lower[at - 1].is_ascii_alphanumeric() || lower[at - 1] == b'_');
        let mut i = at + b"boundary".len();
        while value.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if !word_start || value.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while value.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let rest = &value[i.min(value.len())..];
        let b: Vec<u8> = if let Some(q) = rest.strip_prefix(b"\"") {
            q.iter().take_while(|&&c| c != b'"').copied().collect()
        } else {
            let v: Vec<u8> = rest
                .iter()
                .take_while(|&&c| !c.is_ascii_whitespace() && c != b'"' && c != b';')
                .copied()
                .collect();
            v
        };
        if !b.is_empty() {
            return Some(b);
        }
    }
    None
}

/// Invalid lines the message's header block skips before a further one
/// ends it (SpamAssassin's `$hdr_errors <= 3`).
const INVALID_HEADER_LINES: usize = 3;

/// A line's length as SpamAssassin measures it: with its line feed, a CRLF
/// counted as one line feed (SpamAssassin reads CRLF mail as LF).
fn lf_line_len(line: &[u8]) -> usize {
    if line.ends_with(b"\r\n") {
        line.len() - 1
    } else {
        line.len()
    }
}

/// Whether `text` starts with a header field line as SpamAssassin's
/// multipart parser recognises one: printable ASCII other than `:` and then
/// `:` (`/^[\041-\071\073-\176]+:/`).
fn is_field_line(text: &[u8]) -> bool {
    let name = text
        .iter()
        .take_while(|&&b| (0x21..=0x7e).contains(&b) && b != b':')
        .count();
    name > 0 && text.get(name) == Some(&b':')
}

/// The end of a part's content: `at` (a delimiter line start) less the line
/// break before it, not before `start`.
fn trim_line_break(body: &[u8], start: usize, at: usize) -> usize {
    let mut end = at;
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end.max(start)
}

#[cfg(test)]
mod tests;
