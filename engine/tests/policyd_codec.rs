//! The Postfix policy delegation codec (`mb_engine::policyd`) on byte
//! fixtures: every split point, random chunks, pipelined requests, the request
//! Postfix 3.7 sends, every error, reply sanitising, and proptest properties
//! (round trip; no panic and chunking-independent results on arbitrary bytes).

use std::net::{IpAddr, Ipv4Addr};

use mb_engine::policyd::{
    decode_response, encode_request, Action, DecodeError, Decoder, Limits, Request,
    ACTION_TEXT_BYTES_MAX,
};
use proptest::prelude::*;

/// What Postfix 3.7 sends at RCPT: the SMTPD_POLICY_README example with the
/// 3.x attributes (client_port, policy_context, server_address/port,
/// compatibility_level, mail_version), in Postfix's order.
const POSTFIX_37_RCPT: &[u8] = b"request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
helo_name=mail.example.net
queue_id=
sender=alice@example.net
recipient=bob@example.org
recipient_count=0
client_address=192.0.2.17
client_name=mail.example.net
reverse_client_name=mail.example.net
instance=6e3a.674f2a1c.8b5d2.0
sasl_method=
sasl_username=
sasl_sender=
size=12345
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=TLSv1.3
encryption_cipher=TLS_AES_256_GCM_SHA384
encryption_keysize=256
etrn_domain=
stress=
client_port=51234
policy_context=
server_address=198.51.100.25
server_port=25
compatibility_level=3.6
mail_version=3.7.11

";

/// Feeds `wire` to a fresh decoder in the given chunk sizes (cycled), the way
/// a server appends reads to its buffer and drops consumed bytes. Returns the
/// requests and the first error.
fn drive(
    limits: Limits,
    wire: &[u8],
    chunks: &[usize],
) -> (Vec<Request>, Option<DecodeError>, usize) {
    let mut dec = Decoder::new(limits);
    let mut buf = Vec::new();
    let mut rest = wire;
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match dec.decode(&buf) {
            Ok(Some((req, used))) => {
                assert!(
                    used > 0 && used <= buf.len(),
                    "consumed {used} of {}",
                    buf.len()
                );
                out.push(req);
                buf.drain(..used);
            }
            Ok(None) if rest.is_empty() => return (out, None, buf.len()),
            Ok(None) => {
                let n = chunks[i % chunks.len()].clamp(1, rest.len());
                i += 1;
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            Err(e) => return (out, Some(e), buf.len()),
        }
    }
}

fn decode_all(wire: &[u8]) -> (Vec<Request>, Option<DecodeError>) {
    let (r, e, _) = drive(Limits::default(), wire, &[wire.len().max(1)]);
    (r, e)
}

fn attrs(r: &Request) -> Vec<(String, String)> {
    r.iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn one_error(wire: &[u8], limits: Limits) -> DecodeError {
    let (reqs, err, _) = drive(limits, wire, &[wire.len().max(1)]);
    assert!(reqs.is_empty(), "decoded {reqs:?}");
    err.expect("an error")
}

#[test]
fn postfix_37_request_decodes_with_every_attribute_in_order() {
    let (reqs, err) = decode_all(POSTFIX_37_RCPT);
    assert_eq!(err, None);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.len(), 31);
    let (first, last) = (r.iter().next().unwrap(), r.iter().last().unwrap());
    assert_eq!(first, ("request", "smtpd_access_policy"));
    assert_eq!(last, ("mail_version", "3.7.11"));
    assert_eq!(r.request_type(), "smtpd_access_policy");
    assert_eq!(r.protocol_state(), "RCPT");
    assert_eq!(r.instance(), "6e3a.674f2a1c.8b5d2.0");
    assert_eq!(r.get("queue_id"), Some(""));
    assert_eq!(r.get("server_port"), Some("25"));
    assert_eq!(r.get("compatibility_level"), Some("3.6"));
    assert_eq!(r.get("no_such_attribute"), None);
    // Re-encoding gives the same bytes.
    let mut again = Vec::new();
    r.encode(&mut again);
    assert_eq!(again, POSTFIX_37_RCPT);
}

#[test]
fn facts_follow_the_request() {
    let (reqs, _) = decode_all(POSTFIX_37_RCPT);
    let f = reqs[0].facts(1_764_000_000, 60);
    assert_eq!(f.client_ip, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 17))));
    assert_eq!(f.client_name, "mail.example.net");
    assert_eq!(f.helo, "mail.example.net");
    assert_eq!(f.sender, "alice@example.net");
    assert_eq!(f.recipient, "bob@example.org");
    assert_eq!(f.recipient_count, 0);
    assert_eq!(f.sasl_user, "");
    assert!(f.tls);
    assert_eq!(f.unix_time, 1_764_000_000);
    assert_eq!(f.utc_offset_minutes, 60);

    let r = Request::from_attrs(&[
        ("client_address", "unknown"),
        ("recipient_count", "4294967296000"),
        ("sender", "<>"),
        ("recipient", "<carol@example.org>"),
        ("sasl_username", "carol"),
        ("encryption_protocol", ""),
    ]);
    let f = r.facts(0, 0);
    assert_eq!(f.client_ip, None);
    assert_eq!(f.recipient_count, u32::MAX);
    assert_eq!(f.sender, "");
    assert_eq!(f.recipient, "carol@example.org");
    assert_eq!(f.sasl_user, "carol");
    assert!(!f.tls);

    let r = Request::from_attrs(&[("client_address", "2001:db8::25"), ("recipient_count", "3")]);
    let f = r.facts(0, 0);
    assert_eq!(f.client_ip, "2001:db8::25".parse().ok());
    assert_eq!(f.recipient_count, 3);
    let r = Request::from_attrs(&[("client_address", "999.1.1.1"), ("recipient_count", "x")]);
    let f = r.facts(0, 0);
    assert_eq!((f.client_ip, f.recipient_count), (None, 0));
    assert_eq!(Request::default().facts(0, 0).client_ip, None);
}

#[test]
fn every_split_point_and_random_chunks_give_the_same_requests() {
    // Three requests pipelined in one stream, with CRLF in the middle one.
    let mut wire = POSTFIX_37_RCPT.to_vec();
    wire.extend_from_slice(
        b"request=smtpd_access_policy\r\nprotocol_state=DATA\r\nx-new=1=2\r\n\r\n",
    );
    wire.extend_from_slice(POSTFIX_37_RCPT);
    let (whole, err) = decode_all(&wire);
    assert_eq!(err, None);
    assert_eq!(whole.len(), 3);
    assert_eq!(whole[1].protocol_state(), "DATA");
    assert_eq!(whole[1].get("x-new"), Some("1=2"));
    assert_eq!(whole[0], whole[2]);

    // One byte at a time.
    let (bytewise, err, left) = drive(Limits::default(), &wire, &[1]);
    assert_eq!((err, left), (None, 0));
    assert_eq!(bytewise, whole);

    // Two chunks, split at every point.
    for split in 1..wire.len() {
        let (got, err, left) = drive(Limits::default(), &wire, &[split, wire.len()]);
        assert_eq!((err, left), (None, 0), "split {split}");
        assert_eq!(got, whole, "split {split}");
    }

    // Pseudo-random chunk sizes (xorshift, fixed seeds).
    for seed in 1..200u64 {
        let mut x = seed;
        let chunks: Vec<usize> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 97) as usize + 1
            })
            .collect();
        let (got, err, left) = drive(Limits::default(), &wire, &chunks);
        assert_eq!((err, left), (None, 0), "seed {seed}");
        assert_eq!(got, whole, "seed {seed}");
    }
}

#[test]
fn a_partial_request_waits_and_reports_only_whole_ones() {
    let mut dec = Decoder::default();
    let wire = b"request=smtpd_access_policy\nprotocol_state=RCPT\n\nrequest=smtpd";
    let (r, used) = dec.decode(wire).unwrap().unwrap();
    assert_eq!(used, 49);
    assert_eq!(r.protocol_state(), "RCPT");
    assert_eq!(dec.decode(&wire[used..]).unwrap(), None);
    // No terminating blank line yet: still waiting.
    assert_eq!(dec.decode(b"a=1\nb=2\n").unwrap(), None);
    let (r, used) = dec.decode(b"a=1\nb=2\n\n").unwrap().unwrap();
    assert_eq!((attrs(&r).len(), used), (2, 9));
    // A shorter buffer than last time restarts the scan instead of panicking.
    let mut dec = Decoder::default();
    assert_eq!(dec.decode(b"a=1\nb=2\nc=").unwrap(), None);
    let (r, _) = dec.decode(b"z=9\n\n").unwrap().unwrap();
    assert_eq!(attrs(&r), vec![("z".to_owned(), "9".to_owned())]);
}

#[test]
fn unknown_and_duplicate_attributes_are_kept() {
    let (reqs, err) = decode_all(b"future_attr=yes\nrecipient=a@x\nrecipient=b@x\nempty=\n\n");
    assert_eq!(err, None);
    let r = &reqs[0];
    assert_eq!(r.get("future_attr"), Some("yes"));
    assert_eq!(r.get("recipient"), Some("a@x"), "the first wins");
    assert_eq!(r.get("empty"), Some(""));
    assert_eq!(r.len(), 4);
    assert_eq!(r.protocol_state(), "");
    assert_eq!(r.instance(), "");
}

#[test]
fn every_error_is_named_with_its_line() {
    let d = Limits::default();
    assert_eq!(
        one_error(b"request=x\nno equals sign\n\n", d),
        DecodeError::MissingEquals { line: 2 }
    );
    assert_eq!(
        one_error(b"=value\n\n", d),
        DecodeError::EmptyName { line: 1 }
    );
    assert_eq!(
        one_error(b"a=1\nb=2\nna me=3\n\n", d),
        DecodeError::InvalidName { line: 3 }
    );
    assert_eq!(
        one_error(b"a=1\nn\xc3\xa9=3\n\n", d),
        DecodeError::InvalidName { line: 2 }
    );
    assert_eq!(one_error(b"a=1\0\n\n", d), DecodeError::Nul { line: 1 });
    assert_eq!(
        one_error(b"a=1\nhelo_name=\xff\xfe\n\n", d),
        DecodeError::NotUtf8 {
            line: 2,
            name: "helo_name".into()
        }
    );
    assert_eq!(one_error(b"\n", d), DecodeError::EmptyRequest { line: 1 });
    assert_eq!(one_error(b"\r\n", d), DecodeError::EmptyRequest { line: 1 });

    let small = Limits {
        line_bytes_max: 16,
        request_bytes_max: 64,
        attributes_max: 3,
    };
    // Line limit: 16 bytes pass, 17 do not.
    let ok = b"a=45678901234567\n\n";
    assert_eq!(decode_all_with(ok, small).1, None);
    assert_eq!(
        one_error(b"a=1\nb=345678901234567\n\n", small),
        DecodeError::LineTooLong { line: 2, max: 16 }
    );
    // Attribute limit.
    assert_eq!(decode_all_with(b"a=1\nb=2\nc=3\n\n", small).1, None);
    assert_eq!(
        one_error(b"a=1\nb=2\nc=3\nd=4\n\n", small),
        DecodeError::TooManyAttributes { line: 4, max: 3 }
    );
    // Request limit: exactly 64 bytes pass, 65 do not.
    let small = Limits {
        attributes_max: 100,
        ..small
    };
    let mut exact = Vec::new();
    for _ in 0..7 {
        exact.extend_from_slice(b"abcdefg=1\n"); // 10 bytes
    }
    exact.extend_from_slice(b"x=12\n\n"); // 70 > 64
    assert_eq!(
        one_error(&exact, small),
        DecodeError::RequestTooLarge { line: 7, max: 64 }
    );
    let fits = [&exact[..60], b"x\n\n".as_slice()].concat(); // x with no '='...
    assert_eq!(fits.len(), 63);
    assert_eq!(
        one_error(&fits, small),
        DecodeError::MissingEquals { line: 7 }
    );
    let fits = [&exact[..60], b"x=\n\n".as_slice()].concat();
    assert_eq!(fits.len(), 64);
    assert_eq!(decode_all_with(&fits, small).1, None);

    // Messages are clear and carry the line.
    let msg = DecodeError::LineTooLong { line: 2, max: 16 }.to_string();
    assert!(msg.contains("line 2") && msg.contains("16 bytes"), "{msg}");
    let msg = DecodeError::NotUtf8 {
        line: 5,
        name: "sender".into(),
    }
    .to_string();
    assert!(
        msg.contains("line 5") && msg.contains("sender") && msg.contains("UTF-8"),
        "{msg}"
    );
}

fn decode_all_with(wire: &[u8], limits: Limits) -> (Vec<Request>, Option<DecodeError>) {
    let (r, e, _) = drive(limits, wire, &[wire.len()]);
    (r, e)
}

#[test]
fn limits_are_enforced_before_the_newline_arrives() {
    let limits = Limits {
        line_bytes_max: 100,
        request_bytes_max: 1000,
        attributes_max: 10,
    };
    let mut dec = Decoder::new(limits);
    let mut buf = b"a=".to_vec();
    buf.resize(100, b'x');
    assert_eq!(dec.decode(&buf), Ok(None));
    buf.push(b'x');
    assert_eq!(
        dec.decode(&buf),
        Err(DecodeError::LineTooLong { line: 1, max: 100 })
    );
    // Request bound with short lines and no blank line.
    let mut dec = Decoder::new(limits);
    let mut buf = Vec::new();
    let mut result = Ok(None);
    for _ in 0..200 {
        buf.extend_from_slice(b"k=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\n");
        result = dec.decode(&buf);
        if result.is_err() {
            break;
        }
    }
    // attributes_max (10) is crossed at line 11 long before 1000 bytes.
    assert_eq!(
        result,
        Err(DecodeError::TooManyAttributes { line: 11, max: 10 })
    );
    assert!(buf.len() < 1000);
}

#[test]
fn errors_do_not_depend_on_chunking() {
    let limits = Limits {
        line_bytes_max: 20,
        request_bytes_max: 50,
        attributes_max: 4,
    };
    let cases: &[&[u8]] = &[
        b"a=1\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=1\n\n",
        b"a=11111111111111111\nb=11111111111111111\nc=1111111111111111111111\n\n",
        b"a=1\nb=2\nc=3\nd=4\ne=5\n\n",
        b"a=1\n\xff=2\n\n",
        b"ok=1\n\nbad\n\n",
    ];
    for wire in cases {
        let (want_reqs, want_err, _) = drive(limits, wire, &[wire.len()]);
        assert!(want_err.is_some(), "{wire:?}");
        for chunk in 1..wire.len() {
            let (reqs, err, _) = drive(limits, wire, &[chunk]);
            assert_eq!(
                (&reqs, &err),
                (&want_reqs, &want_err),
                "chunk {chunk}: {wire:?}"
            );
        }
    }
}

#[test]
fn the_decoder_is_reusable_after_an_error() {
    let mut dec = Decoder::default();
    assert!(dec.decode(b"bad line\n").is_err());
    let (r, _) = dec.decode(b"a=1\n\n").unwrap().unwrap();
    assert_eq!(r.get("a"), Some("1"));
}

#[test]
fn actions_encode_as_postfix_expects() {
    let enc = |a: Action| {
        let mut out = Vec::new();
        a.encode(&mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(enc(Action::Dunno), "action=DUNNO\n\n");
    assert_eq!(enc(Action::Ok), "action=OK\n\n");
    assert_eq!(enc(Action::Reject(None)), "action=REJECT\n\n");
    assert_eq!(
        enc(Action::Reject(Some("5.7.1 Go away".into()))),
        "action=REJECT 5.7.1 Go away\n\n"
    );
    assert_eq!(enc(Action::Defer(None)), "action=DEFER\n\n");
    assert_eq!(
        enc(Action::DeferIfPermit("Try later".into())),
        "action=DEFER_IF_PERMIT Try later\n\n"
    );
    assert_eq!(
        enc(Action::DeferIfReject("Maybe".into())),
        "action=DEFER_IF_REJECT Maybe\n\n"
    );
    assert_eq!(
        enc(Action::Code {
            code: 450,
            text: "4.7.1 Slow down".into()
        }),
        "action=450 4.7.1 Slow down\n\n"
    );
    assert_eq!(
        enc(Action::Code {
            code: 550,
            text: "5.1.1 No such user".into()
        }),
        "action=550 5.1.1 No such user\n\n"
    );
    assert_eq!(
        enc(Action::Code {
            code: 250,
            text: "sneaky".into()
        }),
        "action=451 sneaky\n\n"
    );
    assert_eq!(
        enc(Action::Prepend("X-Policy: checked".into())),
        "action=PREPEND X-Policy: checked\n\n"
    );
    assert_eq!(enc(Action::Hold(None)), "action=HOLD\n\n");
    assert_eq!(
        enc(Action::Discard(Some("spam".into()))),
        "action=DISCARD spam\n\n"
    );
    assert_eq!(enc(Action::Warn("odd".into())), "action=WARN odd\n\n");
    assert_eq!(
        enc(Action::error_reply()),
        "action=DEFER_IF_PERMIT Service temporarily unavailable\n\n"
    );
}

#[test]
fn action_text_cannot_inject_lines_and_is_capped() {
    let mut out = Vec::new();
    Action::Reject(Some("no\r\naction=OK\n\nx\0y\tz".into())).encode(&mut out);
    assert_eq!(out, b"action=REJECT no  action=OK  x y z\n\n");
    let (a, used) = decode_response(&out).unwrap().unwrap();
    assert_eq!(used, out.len());
    assert_eq!(a, Action::Reject(Some("no  action=OK  x y z".into())));

    let mut out = Vec::new();
    Action::Warn("é".repeat(1000)).encode(&mut out);
    let text = std::str::from_utf8(&out).unwrap();
    let body = text
        .strip_prefix("action=WARN ")
        .unwrap()
        .strip_suffix("\n\n")
        .unwrap();
    assert!(body.len() <= ACTION_TEXT_BYTES_MAX && body.len() >= ACTION_TEXT_BYTES_MAX - 1);
    assert!(body.chars().all(|c| c == 'é'));
}

#[test]
fn responses_decode() {
    assert_eq!(decode_response(b"action=DUNNO\n"), Ok(None));
    assert_eq!(
        decode_response(b"action=dunno\n\naction=OK\n\n"),
        Ok(Some((Action::Dunno, 14)))
    );
    assert_eq!(
        decode_response(b"action=450 4.7.1 Rate limited\n\n"),
        Ok(Some((
            Action::Code {
                code: 450,
                text: "4.7.1 Rate limited".into()
            },
            31
        )))
    );
    assert_eq!(
        decode_response(b"action=REJECT\n\n").unwrap().unwrap().0,
        Action::Reject(None)
    );
    assert_eq!(
        decode_response(b"other=1\n\n"),
        Err(DecodeError::MissingAction)
    );
    assert_eq!(
        decode_response(b"action=FILTER smtp:[127.0.0.1]:10025\n\n"),
        Err(DecodeError::UnknownAction {
            action: "FILTER smtp:[127.0.0.1]:10025".into()
        })
    );
    assert_eq!(
        decode_response(b"action=650 nope\n\n"),
        Err(DecodeError::UnknownAction {
            action: "650 nope".into()
        })
    );
    assert_eq!(
        Action::parse("  defer_if_permit   Try later "),
        Some(Action::DeferIfPermit("Try later".into()))
    );
    assert_eq!(
        Action::parse("PREPEND X-A: b").unwrap().keyword(),
        "PREPEND"
    );
    assert_eq!(Action::parse("550 5.1.1 x").unwrap().keyword(), "5XX");
    assert_eq!(Action::parse("421 4.3.0 x").unwrap().keyword(), "4XX");
}

#[test]
fn encode_request_cannot_break_framing() {
    let mut out = Vec::new();
    encode_request(&[("a=b", "x\ny"), ("sender", "s\r\0")], &mut out);
    assert_eq!(out, b"a_b=x y\nsender=s  \n\n");
    let (reqs, err) = decode_all(&out);
    assert_eq!(err, None);
    assert_eq!(reqs[0].get("a_b"), Some("x y"));
}

fn action_strategy() -> impl Strategy<Value = Action> {
    let text = "[A-Za-z0-9.:,!-]([A-Za-z0-9.:,! -]{0,40}[A-Za-z0-9.:,!-])?";
    prop_oneof![
        Just(Action::Dunno),
        Just(Action::Ok),
        proptest::option::of(text).prop_map(Action::Reject),
        proptest::option::of(text).prop_map(Action::Defer),
        text.prop_map(Action::DeferIfPermit),
        text.prop_map(Action::DeferIfReject),
        (400u16..=599, text).prop_map(|(code, text)| Action::Code { code, text }),
        text.prop_map(Action::Prepend),
        proptest::option::of(text).prop_map(Action::Hold),
        proptest::option::of(text).prop_map(Action::Discard),
        text.prop_map(Action::Warn),
    ]
}

/// Bytes that matter to the codec, so arbitrary input often forms lines.
const ALPHABET: &[u8] = b"ab=\n\n\r\0\xff\xc3\xa9 x1";

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn requests_round_trip_in_any_chunks(
        reqs in proptest::collection::vec(
            proptest::collection::vec(("[a-z_]{1,20}", "[^\n\r\0]{0,30}"), 1..12),
            1..4,
        ),
        chunk in 1usize..64,
    ) {
        let mut wire = Vec::new();
        for r in &reqs {
            let a: Vec<(&str, &str)> = r.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            encode_request(&a, &mut wire);
        }
        let (got, err, left) = drive(Limits::default(), &wire, &[chunk]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(left, 0);
        let want: Vec<Vec<(String, String)>> = reqs;
        let got: Vec<Vec<(String, String)>> = got.iter().map(attrs).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn actions_round_trip(action in action_strategy()) {
        let mut out = Vec::new();
        action.encode(&mut out);
        prop_assert_eq!(decode_response(&out), Ok(Some((action, out.len()))));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
        raw in proptest::collection::vec(any::<u8>(), 0..600),
        mapped in any::<bool>(),
        chunk in 1usize..40,
    ) {
        let wire: Vec<u8> = if mapped {
            raw.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()]).collect()
        } else {
            raw
        };
        let limits = Limits { line_bytes_max: 24, request_bytes_max: 200, attributes_max: 6 };
        // (Bytes left in the buffer at an error depend on the chunking.)
        let whole = drive(limits, &wire, &[wire.len().max(1)]);
        let chunked = drive(limits, &wire, &[chunk]);
        prop_assert_eq!((&whole.0, &whole.1), (&chunked.0, &chunked.1));
        // Whatever decodes re-encodes to a request that decodes the same.
        // (A CR inside a value is the one byte encode rewrites.)
        for r in whole.0.iter().filter(|r| !r.iter().any(|(_, v)| v.contains('\r'))) {
            let mut again = Vec::new();
            r.encode(&mut again);
            let (back, err, _) = drive(Limits::default(), &again, &[again.len()]);
            prop_assert_eq!(err, None);
            prop_assert_eq!(&back, &vec![r.clone()]);
        }
        let _ = decode_response(&wire);
    }
}
