//! Transfer decodings (base64, quoted-printable, RFC 2047 `Q`) and charset
//! conversion to UTF-8. Every decoder takes an output cap and says whether it
//! stopped at it; none allocates more than `min(input, cap)` bytes.

use encoding_rs::{Encoding, REPLACEMENT, UTF_8, WINDOWS_1252};

/// Output of a capped decoder.
pub(crate) struct Decoded {
    /// The decoded bytes, at most the cap.
    pub bytes: Vec<u8>,
    /// The input would have decoded to more than the cap.
    pub truncated: bool,
}

fn b64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Lenient base64: bytes outside the alphabet (line breaks, padding, junk)
/// are skipped, as mail clients do; a trailing partial group yields what it
/// can.
pub(crate) fn base64(input: &[u8], cap: usize) -> Decoded {
    let mut bytes = Vec::with_capacity((input.len() / 4 * 3 + 3).min(cap));
    let mut acc: u32 = 0;
    let mut n = 0;
    for &b in input {
        let Some(v) = b64_value(b) else { continue };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            if bytes.len() + 3 > cap {
                let room = cap - bytes.len();
                bytes.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8][..room.min(2)]);
                return Decoded {
                    bytes,
                    truncated: true,
                };
            }
            bytes.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    let tail: &[u8] = match n {
        2 => &[(acc >> 4) as u8],
        3 => &[(acc >> 10) as u8, (acc >> 2) as u8],
        _ => &[],
    };
    let room = cap - bytes.len();
    bytes.extend_from_slice(&tail[..tail.len().min(room)]);
    Decoded {
        bytes,
        truncated: tail.len() > room,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 6.7): `=XX`, soft line breaks; a `=` that
/// starts neither stays literal. With `header` set, `_` is a space (RFC 2047
/// `Q` encoding).
pub(crate) fn quoted_printable(input: &[u8], cap: usize, header: bool) -> Decoded {
    let mut bytes = Vec::with_capacity(input.len().min(cap));
    let mut i = 0;
    while i < input.len() {
        if bytes.len() >= cap {
            return Decoded {
                bytes,
                truncated: true,
            };
        }
        let b = input[i];
        match b {
            b'=' => {
                let h = input.get(i + 1).copied().and_then(hex);
                let l = input.get(i + 2).copied().and_then(hex);
                if let (Some(h), Some(l)) = (h, l) {
                    bytes.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                // Soft line break: `=` then optional blanks then (CR)LF.
                let mut j = i + 1;
                while j < input.len() && (input[j] == b' ' || input[j] == b'\t') {
                    j += 1;
                }
                if input.get(j) == Some(&b'\r') {
                    j += 1;
                }
                if input.get(j) == Some(&b'\n') {
                    i = j + 1;
                    continue;
                }
                if j >= input.len() {
                    break;
                }
                bytes.push(b'=');
            }
            b'_' if header => bytes.push(b' '),
            _ => bytes.push(b),
        }
        i += 1;
    }
    Decoded {
        bytes,
        truncated: false,
    }
}

/// The encoding for a MIME charset label, if encoding_rs knows it (and it is
/// not the WHATWG "replacement" encoding, which would erase the text).
pub(crate) fn encoding_for(charset: &str) -> Option<&'static Encoding> {
    let label = charset.trim().trim_matches('"');
    let enc = Encoding::for_label(label.as_bytes()).or_else(|| {
        // Common non-WHATWG spellings seen in mail.
        let l = label.to_ascii_lowercase();
        let alias = match l.as_str() {
            "latin1" | "latin-1" | "iso8859-1" | "iso_8859_1" | "cp819" => "windows-1252",
            "cp1250" | "cp1251" | "cp1252" | "cp1253" | "cp1254" | "cp1255" | "cp1256"
            | "cp1257" | "cp1258" => {
                return Encoding::for_label(l.replace("cp", "windows-").as_bytes())
            }
            "utf8" => "utf-8",
            "cp936" | "ms936" => "gbk",
            "cp949" | "ks_c_5601" => "euc-kr",
            "cp932" | "ms932" | "sjis" => "shift_jis",
            _ => return None,
        };
        Encoding::for_label(alias.as_bytes())
    })?;
    (enc != REPLACEMENT).then_some(enc)
}

/// Bytes in `charset` to UTF-8. Without a (known) charset: UTF-8 when the
/// bytes are valid UTF-8, otherwise windows-1252 (every byte maps, nothing is
/// lost to U+FFFD). Output is at most 3 bytes per input byte.
pub(crate) fn to_utf8(bytes: &[u8], charset: Option<&str>) -> String {
    if let Some(enc) = charset.and_then(encoding_for) {
        if enc != UTF_8 {
            return enc.decode_without_bom_handling(bytes).0.into_owned();
        }
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lenient_and_capped() {
        assert_eq!(base64(b"aGVs\r\nbG8=", 100).bytes, b"hello");
        assert_eq!(base64(b"aGVsbG8", 100).bytes, b"hello");
        let d = base64(b"aGVsbG8gd29ybGQ=", 4);
        assert_eq!(d.bytes, b"hell");
        assert!(d.truncated);
        let d = base64(b"aGVsbG8gd29ybGQ=", 11);
        assert_eq!(d.bytes, b"hello world");
        assert!(!d.truncated);
    }

    #[test]
    fn qp_soft_breaks_and_literals() {
        let d = quoted_printable(b"caf=C3=A9 =\r\nnext =3D a=zz", 100, false);
        assert_eq!(d.bytes, "café next = a=zz".as_bytes());
        assert_eq!(quoted_printable(b"a_b=5F", 10, true).bytes, b"a b_");
        let d = quoted_printable(b"abcdef", 3, false);
        assert!(d.truncated && d.bytes == b"abc");
    }

    #[test]
    fn charsets() {
        assert_eq!(to_utf8(b"caf\xe9", Some("ISO-8859-1")), "café");
        assert_eq!(to_utf8(b"caf\xe9", None), "café");
        assert_eq!(to_utf8("café".as_bytes(), None), "café");
        assert_eq!(to_utf8(b"\xc1\xd5\xd3", Some("koi8-r")), "аус");
        assert_eq!(to_utf8(b"x", Some("iso-2022-kr")), "x");
        assert_eq!(to_utf8(b"caf\xe9", Some("cp1252")), "café");
    }
}
