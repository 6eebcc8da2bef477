//! xtext (RFC 3461 §4), the encoding of XFORWARD attribute values (and of
//! the DSN parameters ENVID and ORCPT).
//!
//! ```text
//! xtext    = *( xchar / hexchar )
//! xchar    = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
//!            except for "+" and "="
//! hexchar  = ASCII "+" immediately followed by two upper case hexadecimal digits
//! ```
//!
//! Decoding also takes lower-case hex digits (some clients write them).

/// Why a value is not xtext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XtextError {
    /// A byte outside `!`..=`~`, or a bare `=`.
    #[error("byte 0x{byte:02x} is not allowed in xtext")]
    BadByte {
        /// The byte.
        byte: u8,
    },
    /// `+` not followed by two hex digits.
    #[error("'+' in xtext must be followed by two hex digits")]
    BadHex,
}

/// Decodes `text`, appending the bytes to `out`.
///
/// # Errors
/// An [`XtextError`] for a byte outside the xtext alphabet or a bad `+XX`.
pub fn decode(text: &[u8], out: &mut Vec<u8>) -> Result<(), XtextError> {
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        match b {
            b'+' => {
                let hi = text.get(i + 1).and_then(|h| hex(*h));
                let lo = text.get(i + 2).and_then(|h| hex(*h));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(XtextError::BadHex);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'!'..=b'~' if b != b'=' => {
                out.push(b);
                i += 1;
            }
            _ => return Err(XtextError::BadByte { byte: b }),
        }
    }
    Ok(())
}

/// Encodes `bytes` as xtext, appending to `out`.
pub fn encode(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push('+');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Result<Vec<u8>, XtextError> {
        let mut out = Vec::new();
        decode(s.as_bytes(), &mut out).map(|()| out)
    }

    #[test]
    fn decodes_rfc3461_examples() {
        assert_eq!(dec("spike.porcupine.org").unwrap(), b"spike.porcupine.org");
        assert_eq!(dec("a+2Bb+3Dc+20d").unwrap(), b"a+b=c d");
        assert_eq!(dec("+e9").unwrap(), [0xE9]);
        assert_eq!(dec("[UNAVAILABLE]").unwrap(), b"[UNAVAILABLE]");
        assert_eq!(dec("").unwrap(), b"");
    }

    #[test]
    fn refuses_what_is_not_xtext() {
        assert_eq!(dec("a b"), Err(XtextError::BadByte { byte: b' ' }));
        assert_eq!(dec("a=b"), Err(XtextError::BadByte { byte: b'=' }));
        assert_eq!(dec("+2"), Err(XtextError::BadHex));
        assert_eq!(dec("+zz"), Err(XtextError::BadHex));
        assert_eq!(dec("é"), Err(XtextError::BadByte { byte: 0xC3 }));
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut text = String::new();
            encode(&bytes, &mut text);
            prop_assert!(text.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'='));
            let mut back = Vec::new();
            decode(text.as_bytes(), &mut back).unwrap();
            prop_assert_eq!(back, bytes);
        }
    }
}
