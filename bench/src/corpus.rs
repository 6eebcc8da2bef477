//! Messages to replay: loaded from files or synthesised, split the way Postfix
//! hands a message to a milter.
//!
//! Postfix sends each header as `L name\0value\0` and the body as CRLF-ended
//! chunks of at most 65,535 bytes. So a raw message is split once, at load
//! time:
//!
//! ```text
//! From sender  Thu Aug 22 ...   ← mbox separator: dropped (not part of the message)
//! Subject: a                    ← header: name "Subject", raw value " a"
//!  folded                       ← continuation: unfolded into the value (" a folded")
//!                               ← first blank line: end of headers
//! body line                     ← body: every line ends in CRLF (LF input is converted)
//! ```
//!
//! A line in the header section that is neither a header nor a continuation
//! ends the headers and starts the body, as Postfix's cleanup does. The raw
//! value keeps its leading space: it is sent as is when the filter negotiated
//! `SMFIP_HDR_LEADSPC`, and with one leading space stripped otherwise.
//!
//! Loading is bounded: [`LOAD_DEPTH_MAX`] directory levels, [`LOAD_FILES_MAX`]
//! files, [`FILE_BYTES_MAX`] bytes per file (larger files are skipped).

use std::io;
use std::path::{Path, PathBuf};

/// Deepest directory level walked below the corpus root.
pub const LOAD_DEPTH_MAX: usize = 16;
/// Most files loaded from one corpus.
pub const LOAD_FILES_MAX: usize = 200_000;
/// Largest message file loaded (Postfix's default `message_size_limit` is 10 MB;
/// this leaves room for test messages above it).
pub const FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name, without the colon.
    pub name: Vec<u8>,
    /// Everything after the colon, unfolded (continuation line breaks removed,
    /// their whitespace kept), leading space included.
    pub raw_value: Vec<u8>,
}

impl Header {
    /// The value as Postfix sends it without `SMFIP_HDR_LEADSPC`: one leading
    /// space removed.
    #[must_use]
    pub fn value(&self) -> &[u8] {
        self.raw_value.strip_prefix(b" ").unwrap_or(&self.raw_value)
    }
}

/// A message split for the milter protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it came from (file path or `synthetic-<size>`).
    pub origin: String,
    /// Headers in order.
    pub headers: Vec<Header>,
    /// Body with CRLF line ends.
    pub body: Vec<u8>,
    /// Size in bytes as sent over SMTP (headers + blank line + body, CRLF).
    pub smtp_bytes: usize,
}

fn is_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
}

/// Splits a raw message (LF or CRLF line ends) into headers and a CRLF body.
#[must_use]
pub fn parse_message(raw: &[u8], origin: &str) -> Message {
    let mut lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
    // `split` yields a final empty piece after a trailing newline: it is not a line.
    if raw.ends_with(b"\n") {
        lines.pop();
    }
    let mut lines = lines
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .peekable();
    if lines.peek().is_some_and(|l| l.starts_with(b"From ")) {
        lines.next();
    }

    let mut headers: Vec<Header> = Vec::new();
    let mut header_bytes = 0;
    let mut body_first: Option<&[u8]> = None;
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(h) = headers.last_mut() {
                h.raw_value.extend_from_slice(line);
                header_bytes += line.len() + 2;
                continue;
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = &line[..colon];
            if is_header_name(name) {
                headers.push(Header {
                    name: name.to_vec(),
                    raw_value: line[colon + 1..].to_vec(),
                });
                header_bytes += line.len() + 2;
                continue;
            }
        }
        body_first = Some(line);
        break;
    }

    let mut body = Vec::with_capacity(raw.len());
    for line in body_first.into_iter().chain(lines) {
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
    }
    Message {
        origin: origin.to_string(),
        headers,
        smtp_bytes: header_bytes + 2 + body.len(),
        body,
    }
}

/// A message of about `size` bytes in the style of Postfix's `smtp-source`: a
/// few headers, then lines of 78 `X`s (the last one shorter).
#[must_use]
pub fn synthesize(size: usize) -> Message {
    let mut raw = String::from(concat!(
        "From: <loadgen@source.example>\n",
        "To: <rcpt@dest.example>\n",
        "Subject: mb-bench loadgen\n",
        "Message-ID: <loadgen.0@source.example>\n",
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\n",
        "\n",
    ));
    // Count CRLF line ends as sent: each LF becomes two bytes.
    let mut smtp = raw.len() + raw.matches('\n').count();
    while smtp + 2 < size {
        let n = (size - smtp - 2).min(78);
        raw.extend(std::iter::repeat_n('X', n));
        raw.push('\n');
        smtp += n + 2;
    }
    parse_message(raw.as_bytes(), &format!("synthetic-{size}"))
}

/// Loads one file, or every regular file below a directory (sorted, so runs
/// are repeatable). Files named `*.md` (corpus documentation such as
/// `SOURCE.md`), hidden files and files above [`FILE_BYTES_MAX`] are skipped.
///
/// # Errors
/// When `path` cannot be read, or holds no message.
pub fn load(path: &Path) -> io::Result<Vec<Message>> {
    let mut files = Vec::new();
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        files.push(path.to_path_buf());
    } else {
        walk(path, 0, &mut files)?;
        files.sort();
    }
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let raw = std::fs::read(&f)?;
        out.push(parse_message(&raw, &f.display().to_string()));
    }
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no message files under {} (use --corpus DIR|FILE or --size N)",
                path.display()
            ),
        ));
    }
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if depth > LOAD_DEPTH_MAX {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        if out.len() >= LOAD_FILES_MAX {
            return Ok(());
        }
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), depth + 1, out)?;
        } else if ft.is_file() && entry.metadata()?.len() <= FILE_BYTES_MAX {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_headers_and_body_lf_and_crlf() {
        for eol in ["\n", "\r\n"] {
            let raw = [
                "Subject: hi",
                "X-Long: a",
                "\tb",
                "  c",
                "To:x",
                "",
                "line1",
                "",
                "line3",
            ]
            .join(eol);
            let m = parse_message(raw.as_bytes(), "t");
            assert_eq!(m.headers.len(), 3, "{eol:?}");
            assert_eq!(m.headers[0].name, b"Subject");
            assert_eq!(m.headers[0].value(), b"hi");
            assert_eq!(m.headers[0].raw_value, b" hi");
            assert_eq!(m.headers[1].value(), b"a\tb  c");
            assert_eq!(m.headers[2].value(), b"x");
            assert_eq!(m.body, b"line1\r\n\r\nline3\r\n");
            // 39 bytes of text in 9 lines, each ending in CRLF on the wire.
            assert_eq!(m.smtp_bytes, 39 + 9 * 2);
        }
    }

    #[test]
    fn drops_mbox_separator_and_stops_at_non_header() {
        let m = parse_message(b"From a@b Thu Aug 22 2002\nA: 1\nnot a header\nB: 2\n", "t");
        assert_eq!(m.headers.len(), 1);
        assert_eq!(m.body, b"not a header\r\nB: 2\r\n");
        let m = parse_message(b"", "t");
        assert!(m.headers.is_empty() && m.body.is_empty());
        let m = parse_message(b"A: 1\n", "t");
        assert_eq!(m.headers.len(), 1);
        assert!(m.body.is_empty());
    }

    #[test]
    fn synthesizes_requested_size() {
        for size in [300, 2048, 100_000] {
            let m = synthesize(size);
            assert!(
                m.smtp_bytes <= size && m.smtp_bytes + 2 >= size,
                "{size}: {}",
                m.smtp_bytes
            );
            assert_eq!(m.headers.len(), 5);
            assert!(m.body.split(|&b| b == b'\n').all(|l| l.len() <= 80));
        }
    }

    #[test]
    fn loads_directory_recursively_skipping_docs() {
        let dir = std::env::temp_dir().join(format!("mb-bench-corpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("SOURCE.md"), "doc").unwrap();
        std::fs::write(dir.join("b.eml"), "Subject: b\n\nB\n").unwrap();
        std::fs::write(dir.join("sub/a.eml"), "Subject: a\n\nA\n").unwrap();
        let msgs = load(&dir).unwrap();
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].origin.ends_with("b.eml"));
        assert!(msgs[1].origin.ends_with("sub/a.eml"));
        assert_eq!(load(&dir.join("b.eml")).unwrap().len(), 1);
        std::fs::remove_file(dir.join("b.eml")).unwrap();
        std::fs::remove_file(dir.join("sub/a.eml")).unwrap();
        assert!(load(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
