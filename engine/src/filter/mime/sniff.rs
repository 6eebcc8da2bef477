//! File types from magic bytes, independent of what the sender declared.

/// Windows/DOS executable (`MZ`, PE).
pub const EXE: &str = "application/x-dosexec";
/// ELF executable or library.
pub const ELF: &str = "application/x-executable";
/// Mach-O executable (thin or fat).
pub const MACHO: &str = "application/x-mach-binary";
/// ZIP archive (also OOXML, JAR, APK, ODF).
pub const ZIP: &str = "application/zip";
/// RAR archive (v4 and v5).
pub const RAR: &str = "application/vnd.rar";
/// 7-Zip archive.
pub const SEVEN_ZIP: &str = "application/x-7z-compressed";
/// gzip stream.
pub const GZIP: &str = "application/gzip";
/// bzip2 stream.
pub const BZIP2: &str = "application/x-bzip2";
/// xz stream.
pub const XZ: &str = "application/x-xz";
/// Microsoft cabinet.
pub const CAB: &str = "application/vnd.ms-cab-compressed";
/// PDF document.
pub const PDF: &str = "application/pdf";
/// OLE2 compound file (legacy MS Office: doc, xls, ppt, msg, msi).
pub const OLE: &str = "application/x-ole-storage";
/// Rich Text Format.
pub const RTF: &str = "text/rtf";
/// PNG image.
pub const PNG: &str = "image/png";
/// JPEG image.
pub const JPEG: &str = "image/jpeg";
/// GIF image.
pub const GIF: &str = "image/gif";
/// HTML document.
pub const HTML: &str = "text/html";
/// Script with a `#!` interpreter line.
pub const SHEBANG: &str = "text/x-shellscript";

/// How far into the data a PDF header is looked for (readers accept junk
/// before `%PDF-`, which is a known evasion).
const PDF_SEARCH_BYTES: usize = 1024;

/// The type the first bytes of `data` show, if one of the known kinds.
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"MZ", EXE),
        (b"\x7fELF", ELF),
        (b"\xfe\xed\xfa\xce", MACHO),
        (b"\xfe\xed\xfa\xcf", MACHO),
        (b"\xce\xfa\xed\xfe", MACHO),
        (b"\xcf\xfa\xed\xfe", MACHO),
        (b"\xca\xfe\xba\xbe", MACHO),
        (b"PK\x03\x04", ZIP),
        (b"PK\x05\x06", ZIP),
        (b"PK\x07\x08", ZIP),
        (b"Rar!\x1a\x07", RAR),
        (b"7z\xbc\xaf\x27\x1c", SEVEN_ZIP),
        (b"\x1f\x8b", GZIP),
        (b"BZh", BZIP2),
        (b"\xfd7zXZ\x00", XZ),
        (b"MSCF", CAB),
        (b"%PDF-", PDF),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", OLE),
        (b"{\\rtf", RTF),
        (b"\x89PNG\r\n\x1a\n", PNG),
        (b"\xff\xd8\xff", JPEG),
        (b"GIF87a", GIF),
        (b"GIF89a", GIF),
        (b"#!", SHEBANG),
    ];
    if let Some((_, t)) = MAGIC.iter().find(|(m, _)| data.starts_with(m)) {
        return Some(t);
    }
    if memchr::memmem::find(&data[..data.len().min(PDF_SEARCH_BYTES)], b"%PDF-").is_some() {
        return Some(PDF);
    }
    let text = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = &text[start..text.len().min(start + 16)];
    const HTML_STARTS: &[&[u8]] = &[
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<iframe",
        b"<meta",
    ];
    HTML_STARTS
        .iter()
        .any(|m| head.len() >= m.len() && head[..m.len()].eq_ignore_ascii_case(m))
        .then_some(HTML)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic() {
        assert_eq!(sniff(b"MZ\x90\x00"), Some(EXE));
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(ZIP));
        assert_eq!(sniff(b"junk%PDF-1.4"), Some(PDF));
        assert_eq!(sniff(b"\xef\xbb\xbf \n<HTML><body>"), Some(HTML));
        assert_eq!(sniff(b"#!/bin/sh\n"), Some(SHEBANG));
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(sniff(b""), None);
    }
}
