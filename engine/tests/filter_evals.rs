//! SpamAssassin `eval:` functions run by the scanner, one small inline message
//! per function (golden: the symbols each message must and must not fire),
//! plus the pseudo-headers and header semantics the stock rules rely on
//! (`X-Spam-Relays-*`, `EnvelopeFrom`, `exists:ToCc`, `[if-unset: …]`).

use mb_engine::filter::matcher::Backend;
use mb_engine::filter::mime::{self, Limits};
use mb_engine::filter::sa::{self, Options, Source};
use mb_engine::filter::scan::Scanner;

const RULES: &str = r#"
freemail_domains freemail.example *.webmail.example
util_rb_tld example
header FREEMAIL_FROM eval:check_freemail_from()
header FREEMAIL_ENVFROM_END_DIGIT eval:check_freemail_header('EnvelopeFrom', '\d@')
header FREEMAIL_REPLYTO eval:check_freemail_replyto('replyto')
header FREEMAIL_REPLY eval:check_freemail_replyto('reply')
header HEADER_FROM_DIFFERENT_DOMAINS eval:check_equal_from_domains()
header ENV_AND_HDR_FROM_MATCH eval:check_for_matching_env_and_hdr_from()
header ALL_TRUSTED eval:check_all_trusted()
header NO_RELAYS eval:check_no_relays()
header UNPARSEABLE eval:check_relays_unparseable()
header MISSING_HEADERS eval:check_for_missing_to_header()
header DATE_IN_FUTURE_06_12 eval:check_for_shifted_date('6', '12')
header DATE_IN_PAST_03_06 eval:check_for_shifted_date('-6', '-3')
header SUBJ_ALL_CAPS eval:subject_is_all_caps()
header MSGID_OUTLOOK_INVALID eval:check_outlook_message_id()
body HTML_MESSAGE eval:html_test('html')
body HTML_FONT_FACE_BAD eval:html_test('font_face_bad')
body HTML_FONT_LOW_CONTRAST eval:html_test('font_low_contrast')
body HTML_FONT_INVALID eval:html_test('font_invalid_color')
body MIME_HTML_ONLY eval:check_for_mime_html_only()
body MIME_HTML eval:check_for_mime_html()
rawbody MIME_BASE64_TEXT eval:check_for_mime('mime_base64_encoded_text')
body PP_MIME_FAKE_ASCII_TEXT eval:check_for_ascii_text_illegal()
body TAG_BGSOUND eval:html_tag_exists('bgsound')
body TVD_SPACE_RATIO eval:tvd_vertical_words('0','10')
header NO_RDNS_DOTCOM_HELO eval:check_for_no_rdns_dotcom_helo()
header RDNS_NONE X-Spam-Relays-Untrusted =~ /^[^\]]+ rdns= /
header RDNS_SOME X-Spam-Relays-Untrusted =~ /^[^\]]+ rdns=\S/
header ENVFROM_SET EnvelopeFrom =~ /\@/
header REPLYTO_WITHOUT_TO_CC exists:ToCc
header INVALID_DATE Date !~ /^\s*\d+ \w+ \d{4}/ [if-unset: 1 Jan 2000]
body __TEXT_LINE /^\s*\S/
tflags __TEXT_LINE multiple maxhits=3
meta FEW_LINES __TEXT_LINE < 3
meta MANY_LINES __TEXT_LINE >= 3
uri UNSUB_LINK /\bunsubscribe\b/i
body HTML_TAG_BALANCE_BODY eval:html_tag_balance('body', '!= 0')
header RCVD_HELO_IP_MISMATCH eval:helo_ip_mismatch()
body MPART_ALT_DIFF eval:multipart_alternative_difference('99', '100')
body MPART_ALT_DIFF_COUNT eval:multipart_alternative_difference_count('3', '1')
body HTML_IMAGE_ONLY_04 eval:html_image_only('0000','0400')
body __HTML_LINK_IMAGE eval:html_text_match('anchor', '<img>')
body __HTML_LENGTH_0000_1024 eval:html_range('length', '0', '1024')
meta HTML_SHORT_LINK_IMG_1 __HTML_LENGTH_0000_1024 && __HTML_LINK_IMAGE
body COMMENT_EXISTS eval:html_text_match('comment', '<!.*?>')
header SUBJ_ILLEGAL_CHARS eval:check_illegal_chars('Subject','0.00','2')
body __NONEMPTY_BODY /\S/
tflags __NONEMPTY_BODY nosubject
body __MIME_ATTACHMENT eval:check_for_mime('mime_attachment')
meta EMPTY_MESSAGE !__MIME_ATTACHMENT && !__NONEMPTY_BODY
header SUSPICIOUS_RECIPS eval:similar_recipients('0.65','undef')
header RELAYED_EXT ALL-EXTERNAL =~ /(?:^|\n)[Rr]eceived:\s.+\n[Rr]eceived:\s/s
rawbody MIME_QP_LONG_LINE eval:check_for_mime('mime_qp_long_line')
body BODY_LT_16 eval:check_body_length('16')
body MIME_HTML_MOSTLY eval:check_mime_multipart_ratio('0.00','0.01')
body ONE_IMG eval:image_count('all',1,1)
header LOCALPART_IN_SUBJECT eval:check_for_to_in_subject('user')
header FORGED_GMAIL_RCVD eval:check_for_forged_gmail_received_headers()
body GIF_2P eval:image_count('gif','2')
rawbody MIME_B64_COUNT eval:check_for_mime('mime_base64_count')
rawbody MIME_QP_COUNT eval:check_for_mime('mime_qp_count')
rawbody MIME_BAD_ISO eval:check_for_mime('mime_bad_iso_charset')
body T_TVD_MIME_EPI eval:check_msg_parse_flags('mime_epilogue_exists')
body T_TVD_MIME_NO_HEADERS eval:check_msg_parse_flags('missing_mime_headers')
body MISSING_MIME_HB_SEP eval:check_msg_parse_flags('missing_mime_head_body_separator')
header FORGED_HOTMAIL_RCVD2 eval:check_for_no_hotmail_received_headers()
header FORGED_HOTMAIL_RCVD eval:check_for_forged_hotmail_received_headers()
header FORGED_YAHOO_RCVD eval:check_for_forged_yahoo_received_headers()
enlist_addrlist (SUSP) *@*.top boss@corp.example
header FROM_SUSP eval:check_from_in_list('SUSP')
header REPLYTO_SUSP eval:check_replyto_in_list('SUSP')
enlist_uri_host (BADTLD) top !ok.top 192.0.2.66
header URI_BADTLD eval:check_uri_host_listed('BADTLD')
body HTML_IMAGE_RATIO_02 eval:html_image_ratio('0.000','0.002')
body HTML_IMAGE_RATIO_04 eval:html_image_ratio('0.002','0.004')
body HTML_FONT_SIZE_LARGE eval:html_range('max_size', '5', '6')
body HTML_EXTRA_CLOSE eval:html_range('closed_extra_ratio', '0.09', 'inf')
body HTML_FONT_SIZE_HUGE eval:html_range('max_size', '6', 'inf')
body BASE64_LENGTH_78_79 eval:check_base64_length('78','79')
body BASE64_LENGTH_79_INF eval:check_base64_length('79')
body UPPER_50_75 eval:check_for_uppercase('50', '75')
body UPPER_75_100 eval:check_for_uppercase('75', '100')
"#;

fn symbols(raw: &str) -> Vec<String> {
    let set = sa::load(
        &[Source {
            file: "evals.cf",
            text: RULES,
        }],
        &Options::default(),
    );
    assert!(
        set.report.diagnostics.is_empty(),
        "{:?}",
        set.report.diagnostics
    );
    let message = mime::parse(raw.as_bytes(), &Limits::default());
    let mut out: Option<Vec<String>> = None;
    for backend in [Backend::Hyperscan, Backend::Naive] {
        let scanner = Scanner::compile(&set, backend);
        let mut state = scanner.state();
        let r = scanner.scan(&mut state, raw.as_bytes(), &message);
        let names: Vec<String> = r.symbols.into_iter().map(|(n, _)| n).collect();
        if let Some(prev) = &out {
            assert_eq!(prev, &names, "backends disagree");
        }
        out = Some(names);
    }
    out.unwrap_or_default()
}

/// A single-part text/html message whose body is `html`.
fn html_message(html: &str) -> String {
    format!("From: a@b.example\nTo: c@d.example\nSubject: s\nContent-Type: text/html\n\n{html}\n")
}

fn check(raw: &str, want: &[&str], not: &[&str]) {
    let got = symbols(raw);
    for w in want {
        assert!(got.iter().any(|g| g == w), "{w} missing from {got:?}");
    }
    for n in not {
        assert!(!got.iter().any(|g| g == n), "{n} unexpected in {got:?}");
    }
}

#[test]
fn freemail_and_from_domains() {
    check(
        "Return-Path: <joe99@freemail.example>\nFrom: joe99@freemail.example\nReply-To: other@x.webmail.example\nTo: a@b.example\nSubject: hello there\n\nhi\n",
        &[
            "FREEMAIL_FROM",
            "FREEMAIL_ENVFROM_END_DIGIT",
            "FREEMAIL_REPLYTO",
            "ENVFROM_SET",
            "ENV_AND_HDR_FROM_MATCH",
        ],
        &["HEADER_FROM_DIFFERENT_DOMAINS", "MISSING_HEADERS"],
    );
    check(
        "Return-Path: <bounce@lists.example.org>\nFrom: joe@corp.example.com\nTo: a@b.example\n\nhi\n",
        &["HEADER_FROM_DIFFERENT_DOMAINS"],
        &["FREEMAIL_FROM", "FREEMAIL_REPLYTO", "ENV_AND_HDR_FROM_MATCH"],
    );
    // a second Return-Path below a Received header makes the first one
    // untrustworthy too (`^Received:.*?^Return-Path:`)
    check(
        "Return-Path: x@other.example\nReceived: via dmail-2002(12) for +lists/x; Mon, 9 Sep 2002 08:44:17 -0500 (CDT)\nReturn-Path: <list-owner@lists.example>\nFrom: joe@corp.example\nTo: a@b.example\n\nhi\n",
        &[],
        &["HEADER_FROM_DIFFERENT_DOMAINS", "ENVFROM_SET"],
    );
    // Return-Path below a Received header is not the envelope sender.
    check(
        "Received: from a (b [10.0.0.1]) by c with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\nReturn-Path: <x@other.example>\nFrom: joe@corp.example\nTo: a@b.example\n\nhi\n",
        &[],
        &["HEADER_FROM_DIFFERENT_DOMAINS", "ENVFROM_SET"],
    ); // FreeMail's built-in welcomelist: role and bounce senders of a
       // free-mail domain are not free-mail users
    for role in [
        "postmaster",
        "Info",
        "abuse",
        "undisclosed-recipients",
        "0123abcd.89abcdef",
    ] {
        check(
            &format!("From: {role}@freemail.example\nTo: a@b.example\n\nhi\n"),
            &[],
            &["FREEMAIL_FROM"],
        );
    }
    check(
        "From: postmistress@freemail.example\nTo: a@b.example\n\nhi\n",
        &["FREEMAIL_FROM"],
        &[],
    );
    // a Resent-From address stands for all the From addresses
    check(
        "From: joe@freemail.example\nResent-From: <list@corp.example>\nTo: a@b.example\n\nhi\n",
        &[],
        &["FREEMAIL_FROM"],
    );
    // the envelope sender Postfix writes after the date of its Received
    // line (no From header at all)
    check(
        "Received: from mx.example (unknown [192.0.2.9])\n\tby mx.test.example (Postfix) with ESMTPS id CF0171862\n\tfor <t@b.example>; Mon,  6 Jul 2015 09:01:20 +0000 (UTC)\n\t(envelope-from joe@freemail.example)\nTo: a@b.example\n\nhi\n",
        &["FREEMAIL_FROM", "ENVFROM_SET"],
        &[],
    );
}

#[test]
fn relays_trust_and_rdns() {
    check(
        "From: a@b.example\nTo: c@d.example\nDate: 1 Jan 2024 00:00:00 +0000\n\nhi\n",
        &["NO_RELAYS"],
        &["ALL_TRUSTED", "RDNS_NONE", "UNPARSEABLE"],
    );
    check(
        "Received: from mx (localhost [127.0.0.1]) by mx.example with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\nFrom: a@b.example\nTo: c@d.example\n\nhi\n",
        &["ALL_TRUSTED"],
        &["NO_RELAYS", "RDNS_NONE"],
    );
    check(
        "Received: from yahoo.com (unknown [203.0.113.9]) by mx.example with SMTP id 2; Mon, 1 Jan 2024 00:00:00 +0000\nFrom: a@b.example\nTo: c@d.example\n\nhi\n",
        &["RDNS_NONE", "NO_RDNS_DOTCOM_HELO"],
        &["ALL_TRUSTED", "NO_RELAYS", "RDNS_SOME"],
    );
    check(
        "Received: from helo.example (host.example.net [203.0.113.9]) by mx.example with SMTP id 2; Mon, 1 Jan 2024 00:00:00 +0000\nReceived: from garbage ([198.51.100.8])\nFrom: a@b.example\nTo: c@d.example\n\nhi\n",
        &["RDNS_SOME", "UNPARSEABLE"],
        &["RDNS_NONE", "NO_RDNS_DOTCOM_HELO"],
    );
}

#[test]
fn headers_dates_and_ids() {
    check(
        "Received: from a (b.example [203.0.113.1]) by c with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\nDate: Mon, 1 Jan 2024 08:00:00 +0000\nFrom: a@b.example\nSubject: BUY CHEAP WATCHES NOW\nMessage-ID: <0000deadbeef$00000000$00000000@x>\n\nhi\n",
        &["DATE_IN_FUTURE_06_12", "SUBJ_ALL_CAPS", "MSGID_OUTLOOK_INVALID", "MISSING_HEADERS", "INVALID_DATE"],
        &["DATE_IN_PAST_03_06", "REPLYTO_WITHOUT_TO_CC"],
    );
    check(
        "Received: from a (b.example [203.0.113.1]) by c with SMTP id 1; Mon, 1 Jan 2024 05:00:00 +0000\nFrom: a@b.example\nCc: x@y.example\nDate: 1 Jan 2024 01:00:00 +0000\nSubject: Re: lunch plans today\n\nhi\n",
        &["DATE_IN_PAST_03_06", "REPLYTO_WITHOUT_TO_CC"],
        &["DATE_IN_FUTURE_06_12", "SUBJ_ALL_CAPS", "MSGID_OUTLOOK_INVALID", "INVALID_DATE"],
    );
}

#[test]
fn mime_and_html() {
    check(
        "From: a@b.example\nTo: c@d.example\nContent-Type: text/html\n\n<html><body><font face=\"@#$%\">x</font><bgsound src=a></body></html>\n",
        &["HTML_MESSAGE", "MIME_HTML_ONLY", "MIME_HTML", "HTML_FONT_FACE_BAD", "TAG_BGSOUND"],
        &["MIME_BASE64_TEXT", "PP_MIME_FAKE_ASCII_TEXT"],
    );
    check(
        "From: a@b.example\nTo: c@d.example\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n--XX\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n--XX\nContent-Type: text/html\n\n<p><font face=\"Arial, Helvetica\">hello world</font></p>\n--XX--\n",
        &["HTML_MESSAGE", "MIME_HTML", "MIME_BASE64_TEXT"],
        &["MIME_HTML_ONLY", "HTML_FONT_FACE_BAD", "TAG_BGSOUND"],
    );
    check(
        "From: a@b.example\nTo: c@d.example\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 8bit\n\ncaf\u{e9} au lait, s'il vous pla\u{ee}t\n",
        &["PP_MIME_FAKE_ASCII_TEXT"],
        &["HTML_MESSAGE", "MIME_HTML_ONLY"],
    );
    check(
        "From: a@b.example\nTo: c@d.example\n\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
        &["TVD_SPACE_RATIO"],
        &[],
    );
    check(
        "From: a@b.example\nTo: c@d.example\n\nthis line has a normal amount of spaces in it\n",
        &[],
        &["TVD_SPACE_RATIO"],
    );
    // measured over body elements (a paragraph's lines joined by a space),
    // not raw lines: "xxxxxxx" alone would be 0 %
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: a subject of words\n\nxxxxxxx\nyyyyyyy zzzzz\n",
        &[],
        &["TVD_SPACE_RATIO"],
    ); // an element keeps its line feed, a byte that is not a space: "hello"
       // followed by another paragraph is 6 bytes long and 0 % spaces (the
       // last element has no line feed: "x" stays too short)
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: Hi\n\nhello\n\nx\n",
        &["TVD_SPACE_RATIO"],
        &[],
    );
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: Hi\n\nx\n\nhello\n",
        &[],
        &["TVD_SPACE_RATIO"],
    );
}

/// Debugging aid, not a check: `MB_RELAY_FILES=list cargo test -p mb-engine
/// --test filter_evals relay_dump -- --ignored --nocapture` prints how each
/// `Received:` line of the listed files parses.
#[test]
#[ignore = "debugging aid"]
fn relay_dump() {
    use mb_engine::filter::scan::relays::{parse_line, Line};
    let Ok(list) = std::env::var("MB_RELAY_FILES") else {
        return;
    };
    for path in list.split_whitespace() {
        let Ok(raw) = std::fs::read(path) else {
            continue;
        };
        let m = mime::parse(&raw, &Limits::default());
        println!("== {path}");
        for h in m.header("received") {
            match parse_line(&h.value) {
                Line::Relay(r) => println!(
                    "  R ip={} rdns={} helo={} by={} auth={}",
                    r.ip, r.rdns, r.helo, r.by, r.auth
                ),
                Line::Ignored => println!("  I {}", h.value),
                Line::Unparseable => println!("  U {}", h.value),
            }
        }
        let f = mb_engine::filter::scan::evals::Facts::of(&m, &raw);
        println!("  date_diff={} envfrom={:?}", f.date_diff(), f.envfrom);
    }
}

#[test]
fn multiple_counts_feed_metas() {
    // The Subject is the first body line, as in SpamAssassin.
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: s\n\none\n",
        &["FEW_LINES"],
        &["MANY_LINES"],
    );
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: s\n\none\n\ntwo\n\nthree\n\nfour\n",
        &["MANY_LINES"],
        &["FEW_LINES"],
    );
}

#[test]
fn bare_addresses_are_mailto_uris() {
    check(
        "From: a@b.example\nTo: c@d.example\n\nTo leave, write to list-unsubscribe@lists.example.\n",
        &["UNSUB_LINK"],
        &[],
    );
    check(
        "From: a@b.example\nTo: c@d.example\n\nunsubscribe@localhost is not an address here\n",
        &[],
        &["UNSUB_LINK"],
    );
}

#[test]
fn tag_balance_helo_ip_and_alternative_difference() {
    check(
        "Received: from 198.51.100.1 ([203.0.113.7]) by mx.example with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\nFrom: a@b.example\nTo: c@d.example\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nnothing in common\n--XX\nContent-Type: text/html\n\n<html><body>buy cheap pills\n--XX--\n",
        &["HTML_TAG_BALANCE_BODY", "RCVD_HELO_IP_MISMATCH", "MPART_ALT_DIFF"],
        &[],
    );
    check(
        "Received: from 203.0.113.9 ([203.0.113.7]) by mx.example with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\nFrom: a@b.example\nTo: c@d.example\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nbuy cheap pills\n--XX\nContent-Type: text/html\n\n<html><body>buy cheap pills</body></html>\n--XX--\n",
        &[],
        &["HTML_TAG_BALANCE_BODY", "RCVD_HELO_IP_MISMATCH", "MPART_ALT_DIFF", "MPART_ALT_DIFF_COUNT"],
    );
    // more than 3 times as many distinct text words as HTML words (2, more
    // than the minimum of 1): the count rule; with 1 HTML word, not
    let alternative = |text: &str, html: &str| {
        format!(
            "From: a@b.example\nTo: c@d.example\nMIME-Version: 1.0\n\
             Content-Type: multipart/alternative; boundary=XX\n\n\
             --XX\nContent-Type: text/plain\n\n{text}\n\
             --XX\nContent-Type: text/html\n\n<html><body>{html}</body></html>\n--XX--\n"
        )
    };
    check(
        &alternative("one two three four five six seven buy", "buy pills"),
        &["MPART_ALT_DIFF_COUNT"],
        &[],
    );
    check(
        &alternative("one two three four five buy", "buy pills"),
        &[],
        &["MPART_ALT_DIFF_COUNT"],
    );
    check(
        &alternative("one two three four five six seven eight", "pills"),
        &[],
        &["MPART_ALT_DIFF_COUNT"],
    );
}

#[test]
fn html_images_comments_and_illegal_chars() {
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: caf\u{e9} cr\u{e8}me\nContent-Type: text/html\n\n<html><!-- x --><a href=\"http://x.example/\"><img src=\"http://x.example/i.gif\"></a></html>\n",
        &["HTML_IMAGE_ONLY_04", "HTML_SHORT_LINK_IMG_1", "COMMENT_EXISTS"],
        &["SUBJ_ILLEGAL_CHARS"],
    );
    let mut raw =
        b"From: a@b.example\nTo: c@d.example\nSubject: caf\xe9 cr\xe8me\n\nplain words here\n"
            .to_vec();
    raw.extend_from_slice(b"");
    let message = mime::parse(&raw, &Limits::default());
    let set = sa::load(
        &[Source {
            file: "evals.cf",
            text: RULES,
        }],
        &Options::default(),
    );
    let scanner = Scanner::compile(&set, Backend::Naive);
    let r = scanner.scan(&mut scanner.state(), &raw, &message);
    let names: Vec<&str> = r.symbols.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"SUBJ_ILLEGAL_CHARS"), "{names:?}");
    assert!(!names.contains(&"HTML_IMAGE_ONLY_04") && !names.contains(&"COMMENT_EXISTS"));
}

#[test]
fn empty_body_and_similar_recipients() {
    check(
        "From: a@b.example\nTo: aa1@x.example, aa2@x.example, aa3@x.example, aa4@x.example, aa5@x.example\nSubject: a subject is not body\n\n\n",
        &["EMPTY_MESSAGE", "SUSPICIOUS_RECIPS"],
        &[],
    );
    check(
        "From: a@b.example\nTo: bob@x.example, carol@y.example, dan@z.example, erin@w.example, fay@v.example\nSubject: s\n\nbody\n",
        &[],
        &["EMPTY_MESSAGE", "SUSPICIOUS_RECIPS"],
    );
}

#[test]
fn all_external_starts_after_the_trusted_area() {
    let top = "Received: from localhost (localhost [127.0.0.1]) by mx with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\n";
    let ext = "Received: from a.example (a.example [203.0.113.1]) by mx with SMTP id 2; Mon, 1 Jan 2024 00:00:00 +0000\n";
    let ext2 = "Received: from b.example (b.example [203.0.113.2]) by a.example with SMTP id 3; Mon, 1 Jan 2024 00:00:00 +0000\n";
    let tail = "From: a@b.example\nTo: c@d.example\n\nhi\n";
    check(&format!("{top}{ext}{ext2}{tail}"), &["RELAYED_EXT"], &[]);
    // The trusted hop's own Received line is not external.
    check(&format!("{top}{ext}{tail}"), &[], &["RELAYED_EXT"]);
}

#[test]
fn mime_parse_flags() {
    let flags = [
        "MIME_QP_LONG_LINE",
        "T_TVD_MIME_EPI",
        "T_TVD_MIME_NO_HEADERS",
        "MISSING_MIME_HB_SEP",
    ];
    let clean = "From: a@b.example\nTo: c@d.example\nSubject: s\n\
        Content-Type: multipart/mixed; boundary=\"b\"\n\n\
        --b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nshort=\nline\n\
        --b--\n";
    check(clean, &[], &flags);
    let long = "a".repeat(90);
    let broken = format!(
        "From: a@b.example\nTo: c@d.example\nSubject: s\n\
        Content-Type: multipart/mixed; boundary=\"b\"\n\n\
        --b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n{long}\n\
        --b--\nepilogue text\n"
    );
    check(
        &broken,
        &["MIME_QP_LONG_LINE", "T_TVD_MIME_EPI", "MISSING_MIME_HB_SEP"],
        &["T_TVD_MIME_NO_HEADERS"],
    );
    let headless = "From: a@b.example\nTo: c@d.example\nSubject: s\n\
        Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nno headers\n--b--\n";
    check(
        headless,
        &["T_TVD_MIME_NO_HEADERS"],
        &["T_TVD_MIME_EPI", "MIME_QP_LONG_LINE"],
    );
}

#[test]
fn hotmail_received_headers() {
    let msg = |received: &str, extra: &str, from: &str| {
        format!("Received: {received}\n{extra}From: {from}\nTo: c@d.example\nSubject: s\n\nbody\n")
    };
    let both = ["FORGED_HOTMAIL_RCVD2", "FORGED_HOTMAIL_RCVD"];
    // a hotmail sender through a relay that is not Hotmail's
    let plain = "from mx.example.net (mx.example.net [192.0.2.7]) by mx.example.org with ESMTP id 1; Mon, 7 Dec 2026 01:00:00 +0000";
    check(
        &msg(plain, "", "x@hotmail.com"),
        &["FORGED_HOTMAIL_RCVD2"],
        &["FORGED_HOTMAIL_RCVD"],
    );
    // not a hotmail sender (and `\bhotmail.com$`: nothotmail.com is not)
    check(&msg(plain, "", "x@example.com"), &[], &both);
    check(&msg(plain, "", "x@nothotmail.com"), &[], &both);
    // Hotmail's own relay with X-Originating-IP: fine
    let genuine = "from hotmail.com (f135.law8.hotmail.com [216.33.241.135]) by mx.example.org with ESMTP id 2; Mon, 7 Dec 2026 01:00:00 +0000";
    check(
        &msg(
            genuine,
            "X-Originating-IP: [198.51.100.4]\n",
            "x@hotmail.com",
        ),
        &[],
        &both,
    );
    // the same relay without X-Originating-IP: it HELO'd as hotmail.com
    check(
        &msg(genuine, "", "x@hotmail.com"),
        &["FORGED_HOTMAIL_RCVD"],
        &["FORGED_HOTMAIL_RCVD2"],
    );
    // no Received line at all: nothing to judge
    check(
        "From: x@hotmail.com\nTo: c@d.example\nSubject: s\n\nbody\n",
        &[],
        &both,
    );
}

/// WLBLEval's lists: `enlist_addrlist` globs against the From addresses
/// and Reply-To, `enlist_uri_host` domains against URI hosts (the most
/// specific entry wins, `!` excludes).
#[test]
fn address_and_uri_host_lists() {
    let msg = |from: &str, extra: &str, body: &str| {
        format!("From: {from}\n{extra}To: c@d.example\nSubject: s\n\n{body}\n")
    };
    check(
        &msg("x@shop.top", "", "hi"),
        &["FROM_SUSP"],
        &["REPLYTO_SUSP"],
    );
    check(&msg("Boss@Corp.example", "", "hi"), &["FROM_SUSP"], &[]);
    check(&msg("x@top.example", "", "hi"), &[], &["FROM_SUSP"]);
    check(
        &msg("a@b.example", "Reply-To: y@z.top\n", "hi"),
        &["REPLYTO_SUSP"],
        &["FROM_SUSP"],
    );
    check(
        &msg("a@b.example", "", "see http://www.shop.top/x"),
        &["URI_BADTLD"],
        &[],
    );
    check(
        &msg("a@b.example", "", "see http://www.ok.top/x"),
        &[],
        &["URI_BADTLD"],
    );
    check(
        &msg("a@b.example", "", "see http://top.example/x"),
        &[],
        &["URI_BADTLD"],
    );
    check(
        &msg("a@b.example", "", "see http://192.0.2.66/x"),
        &["URI_BADTLD"],
        &[],
    );
    check(
        &msg("a@b.example", "", "mail mailto:x@y.top"),
        &[],
        &["URI_BADTLD"],
    );
}

/// `check_for_forged_yahoo_received_headers`: a yahoo.com From with no
/// Received line of Yahoo's own, unless the message has no Received line
/// or came through an ezmlm list (HeaderEval's received-header remover).
#[test]
fn yahoo_received_headers() {
    let msg = |received: &[&str], extra: &str, from: &str| {
        let rcvd: String = received
            .iter()
            .map(|r| format!("Received: {r}\n"))
            .collect();
        format!("{rcvd}{extra}From: {from}\nTo: c@d.example\nSubject: s\n\nbody\n")
    };
    let relay = "from mx.example.net (mx.example.net [192.0.2.7]) by mx.example.org with ESMTP id 1; Mon, 7 Dec 2026 01:00:00 +0000";
    let web = "from [208.142.210.229] by web14002.mail.yahoo.com via HTTP;\n    Wed, 04 Sep 2002 09:55:18 PDT";
    let forged = ["FORGED_YAHOO_RCVD"];
    check(&msg(&[relay], "", "x@yahoo.com"), &forged, &[]);
    // `\byahoo\.com$`
    check(&msg(&[relay], "", "x@notyahoo.com"), &[], &forged);
    check(&msg(&[relay], "", "x@mail.yahoo.com"), &forged, &[]);
    // Yahoo's web mail, its "via HTTP;" followed by the date (the word
    // after HTTP is not alone)
    check(&msg(&[relay, web], "", "x@yahoo.com"), &[], &forged);
    check(
        &msg(
            &[
                relay,
                "from [192.0.2.1] by smtp104.mail.yahoo.com with SMTP; x",
            ],
            "",
            "x@yahoo.com",
        ),
        &[],
        &forged,
    );
    // no Received line: nothing to judge
    check(&msg(&[], "", "x@yahoo.com"), &[], &forged);
    // an ezmlm list strips Received lines
    let ezmlm = "Mailing-List: contact list-help@lists.example; run by ezmlm\n\
                 Delivered-To: mailing list list@lists.example\n";
    let qmail = "(qmail 12345 invoked from network); 7 Dec 2026 01:00:00 -0000";
    check(&msg(&[relay, qmail], ezmlm, "x@yahoo.com"), &[], &forged);
    check(&msg(&[relay, qmail], "", "x@yahoo.com"), &forged, &[]);
}

/// `html_image_ratio`: non-space rendered text over the area of sized
/// images (percentages of an 800x600 screen, 200 for a value that is not
/// digits).
#[test]
fn html_image_ratio() {
    let html = |imgs: &str, text: &str| {
        html_message(&format!("<html><body>{imgs}<p>{text}</p></body></html>"))
    };
    let ratios = ["HTML_IMAGE_RATIO_02", "HTML_IMAGE_RATIO_04"];
    // 30 non-space characters over 100x100: 0.003
    let text = "abcde fghij klmno pqrst uvwxy zabcd";
    check(
        &html("<img src=x width=100 height=100>", text),
        &["HTML_IMAGE_RATIO_04"],
        &["HTML_IMAGE_RATIO_02"],
    );
    // 30 over 10% x 10% of 800x600 (80x60 = 4800): 0.00625, neither
    check(
        &html("<img src=x width=\"10%\" height=\"10%\">", text),
        &[],
        &ratios,
    );
    // "auto" is 200: 30 over 200x100 = 0.0015
    check(
        &html("<img src=x width=auto height=100>", text),
        &["HTML_IMAGE_RATIO_02"],
        &["HTML_IMAGE_RATIO_04"],
    );
    // an image without both sizes has no area: no ratio at all
    check(&html("<img src=x width=100>", text), &[], &ratios);
}

/// `html_range('max_size', …)`: the largest `<font size>` of a style,
/// absolute or relative to `<basefont>`; `<big>` alone does not count,
/// but a styled tag inside it does.
#[test]
fn html_font_sizes() {
    let html = |body: &str| html_message(&format!("<html><body>{body}</body></html>"));
    let sizes = ["HTML_FONT_SIZE_LARGE", "HTML_FONT_SIZE_HUGE"];
    check(&html("<font size=3>normal</font>"), &[], &sizes);
    check(
        &html("<font size=6>large</font>"),
        &["HTML_FONT_SIZE_LARGE"],
        &["HTML_FONT_SIZE_HUGE"],
    );
    check(
        &html("<font size=\"+4\">huge</font>"),
        &["HTML_FONT_SIZE_HUGE"],
        &["HTML_FONT_SIZE_LARGE"],
    );
    check(
        &html("<basefont size=5><font size=+2>huge</font>"),
        &["HTML_FONT_SIZE_HUGE"],
        &[],
    );
    check(
        &html("<big><big><big><big>big</big></big></big></big>"),
        &[],
        &sizes,
    );
    check(
        &html("<big><big><big><font color=red>big</font></big></big></big>"),
        &["HTML_FONT_SIZE_LARGE"],
        &[],
    );
    // closed: the next styled tag is back at the default size
    check(
        &html("<big><big><big>x</big></big></big><font color=red>y</font>"),
        &[],
        &sizes,
    );
}

/// `check_base64_length(min[, max])`: the longest base64 line with its
/// line feed.
#[test]
fn base64_line_length() {
    let msg = |len: usize| {
        format!(
            "From: a@b.example\nTo: c@d.example\nSubject: s\nContent-Type: application/octet-stream\n\
             Content-Transfer-Encoding: base64\n\n{}\nQUFB\n",
            "A".repeat(len)
        )
    };
    let both = ["BASE64_LENGTH_78_79", "BASE64_LENGTH_79_INF"];
    check(&msg(76), &[], &both);
    check(
        &msg(77),
        &["BASE64_LENGTH_78_79"],
        &["BASE64_LENGTH_79_INF"],
    );
    check(
        &msg(78),
        &["BASE64_LENGTH_78_79", "BASE64_LENGTH_79_INF"],
        &[],
    );
    check(
        &msg(100),
        &["BASE64_LENGTH_79_INF"],
        &["BASE64_LENGTH_78_79"],
    );
}

/// `check_for_uppercase`: the share of capitals over lines of two words or
/// more, from 200 bytes of them, and never for a charset whose text this
/// test misreads.
#[test]
fn uppercase_share() {
    let msg = |charset: &str, text: &str| {
        format!(
            "From: a@b.example\nTo: c@d.example\nSubject: s\n\
             Content-Type: text/plain; charset={charset}\n\n{text}\n"
        )
    };
    let upper = ["UPPER_50_75", "UPPER_75_100"];
    let shout = "BUY NOW AND SAVE MONEY TODAY ".repeat(10);
    check(
        &msg("us-ascii", &shout),
        &["UPPER_75_100"],
        &["UPPER_50_75"],
    );
    // two thirds capitals
    let mixed = "SAVE BIG now ".repeat(20);
    check(
        &msg("us-ascii", &mixed),
        &["UPPER_50_75"],
        &["UPPER_75_100"],
    );
    // under 200 bytes of two-word lines: no measure
    check(&msg("us-ascii", "BUY NOW"), &[], &upper);
    // a charset likely to read as capitals
    check(&msg("iso-2022-jp", &shout), &[], &upper);
    check(
        &msg("us-ascii", &"quiet words here ".repeat(20)),
        &[],
        &upper,
    );
}

/// `check_for_uppercase` in a rule set with no body pattern (the scanner
/// then builds the body elements for it alone).
#[test]
fn uppercase_without_body_patterns() {
    let rules = "body UPPER_75_100 eval:check_for_uppercase('75', '100')\nscore UPPER_75_100 1.0\n";
    let set = sa::load(
        &[Source {
            file: "u.cf",
            text: rules,
        }],
        &Options::default(),
    );
    let scanner = Scanner::compile(&set, Backend::Hyperscan);
    let mut state = scanner.state();
    for (text, want) in [
        ("BUY NOW AND SAVE MONEY TODAY ", true),
        ("quiet words here ", false),
    ] {
        let raw = format!("Subject: s\n\n{}\n", text.repeat(10));
        let message = mime::parse(raw.as_bytes(), &Limits::default());
        let r = scanner.scan(&mut state, raw.as_bytes(), &message);
        assert_eq!(!r.symbols.is_empty(), want, "{text}");
    }
}

/// `html_test('font_low_contrast')` and `html_test('font_invalid_color')`:
/// visible text in the style HTML.pm's text-style stack gives it.
#[test]
fn html_font_colours() {
    let html = |body: &str| html_message(&format!("<html><body>{body}</body></html>"));
    let both = ["HTML_FONT_LOW_CONTRAST", "HTML_FONT_INVALID"];
    check(&html("<font color=red>red on white</font>"), &[], &both);
    check(
        &html("<font color=\"#FFFFFF\">white on white</font>"),
        &["HTML_FONT_LOW_CONTRAST"],
        &["HTML_FONT_INVALID"],
    );
    check(
        &html("<span style=\"color: #f8f8f8\">near white</span>"),
        &["HTML_FONT_LOW_CONTRAST"],
        &[],
    );
    // only white space in the hidden colour: nothing is hidden
    check(&html("<font color=white> &nbsp;\n</font>shown"), &[], &both);
    // a style background makes white text readable; a bgcolor does not
    check(
        &html("<table style=\"background-color: navy\"><tr><td><font color=white>x</font></td></tr></table>"),
        &[],
        &both,
    );
    check(
        &html("<table bgcolor=navy><tr><td><font color=white>x</font></td></tr></table>"),
        &["HTML_FONT_LOW_CONTRAST"],
        &[],
    );
    check(
        &html("<font color=\"ff0000\">no hash</font>"),
        &["HTML_FONT_INVALID"],
        &["HTML_FONT_LOW_CONTRAST"],
    );
    // the text of <style> and <script> is not drawn
    check(
        &html("<font color=white><style>p { x: 1 }</style><script>var a = '<b>';</script></font>"),
        &[],
        &both,
    );
}

/// `check_for_matching_env_and_hdr_from`: the envelope sender is the From
/// address (case-blind); two missing addresses match, as in HeaderEval.
#[test]
fn envelope_and_header_from_match() {
    let m = ["ENV_AND_HDR_FROM_MATCH"];
    check(
        "Return-Path: <Joe@Corp.example>\nFrom: Joe <joe@corp.EXAMPLE>\nTo: a@b.example\n\nhi\n",
        &m,
        &[],
    );
    check(
        "To: a@b.example\nSubject: no senders at all\n\nhi\n",
        &m,
        &[],
    );
    check(
        "Return-Path: <bounce@corp.example>\nFrom: joe@corp.example\nTo: a@b.example\n\nhi\n",
        &[],
        &m,
    );
}

/// `check_for_mime` counts over every entity: `mime_base64_count`,
/// `mime_qp_count` and `mime_bad_iso_charset`.
#[test]
fn mime_counts() {
    let all = ["MIME_B64_COUNT", "MIME_QP_COUNT", "MIME_BAD_ISO"];
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: s\nContent-Type: text/plain; charset=iso-8859-1\n\nplain\n",
        &[],
        &all,
    );
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: s\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
         Content-Type: text/plain; charset=iso-2022-jp\nContent-Transfer-Encoding: quoted-printable\n\nhi=20there\n--b\n\
         Content-Type: application/octet-stream; name=x.bin\nContent-Transfer-Encoding: Base64\n\naGVsbG8=\n--b--\n",
        &["MIME_B64_COUNT", "MIME_QP_COUNT"],
        &["MIME_BAD_ISO"],
    );
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: s\nContent-Type: text/plain; charset=ISO-10646-UCS-2\n\nx\n",
        &["MIME_BAD_ISO"],
        &["MIME_B64_COUNT", "MIME_QP_COUNT"],
    );
}

/// `check_body_length(N)`: the raw body (after the blank line, line ends
/// as received) is at most N bytes.
#[test]
fn body_length() {
    let m = ["BODY_LT_16"];
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: s\n\nshort\n",
        &m,
        &[],
    );
    check(
        "From: a@b.example\r\nSubject: s\r\n\r\n0123456789abcd\r\n",
        &m,
        &[],
    );
    check(
        "From: a@b.example\r\nSubject: s\r\n\r\n0123456789abcde\r\n",
        &[],
        &m,
    );
    check(
        "From: a@b.example\nSubject: s\n\nthis body is longer than sixteen bytes\n",
        &[],
        &m,
    );
}

/// `check_mime_multipart_ratio`: in a multipart/alternative, the raw bytes
/// of the last text/plain part over those of the last text/html part.
#[test]
fn multipart_ratio() {
    let alt = |text: &str, html: &str| {
        format!(
            "From: a@b.example\nTo: c@d.example\nSubject: s\nMIME-Version: 1.0\n\
             Content-Type: multipart/alternative; boundary=\"a\"\n\n--a\n\
             Content-Type: text/plain\n\n{text}\n--a\n\
             Content-Type: text/html\n\n{html}\n--a--\n"
        )
    };
    let big = format!(
        "<html><body>{}</body></html>",
        "<p>words and words</p>".repeat(20)
    );
    let m = ["MIME_HTML_MOSTLY"];
    check(&alt(".", &big), &m, &[]);
    check(&alt("a fair text version of the same words", &big), &[], &m);
    // no multipart/alternative: the ratio is 1
    check(
        "From: a@b.example\nTo: c@d.example\nSubject: s\nContent-Type: text/html\n\n<p>hi</p>\n",
        &[],
        &m,
    );
}

/// `image_count(type, min[, max])`: base64 image/gif, png and jpeg leaves.
#[test]
fn image_counts() {
    let msg = |parts: &[(&str, &str)]| {
        let mut m = String::from(
            "From: a@b.example\nTo: c@d.example\nSubject: s\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nhi\n",
        );
        for (ct, cte) in parts {
            m.push_str(&format!(
                "--m\nContent-Type: {ct}\nContent-Transfer-Encoding: {cte}\n\nR0lGODlhAQABAAAAACw=\n"
            ));
        }
        m.push_str("--m--\n");
        m
    };
    check(&msg(&[("image/gif", "base64")]), &["ONE_IMG"], &["GIF_2P"]);
    check(
        &msg(&[("image/gif", "base64"), ("image/GIF", "BASE64")]),
        &["GIF_2P"],
        &["ONE_IMG"],
    );
    // not base64, or not one of the three types: not counted
    check(
        &msg(&[("image/gif", "7bit"), ("image/bmp", "base64")]),
        &[],
        &["ONE_IMG", "GIF_2P"],
    );
}

/// `check_for_to_in_subject('user')`: the To local part as the Subject,
/// after Re:/Fw:, or first and followed by punctuation.
#[test]
fn localpart_in_subject() {
    let m = ["LOCALPART_IN_SUBJECT"];
    let msg = |subject: &str| {
        format!("From: a@b.example\nTo: Joe <joe@c.example>\nSubject: {subject}\n\nhi\n")
    };
    for hit in [
        "joe",
        "JOE",
        "Re: joe",
        "fw: hello joe",
        "joe, your offer",
        "joe: read this",
        ", Joe!",
    ] {
        check(&msg(hit), &m, &[]);
    }
    for miss in [
        "hello joe",
        "Joe, your offer",
        "joey",
        "re: hello there joe",
        "joe and friends",
    ] {
        check(&msg(miss), &[], &m);
    }
    check("From: a@b.example\nTo: XX\nSubject: XX\n\nhi\n", &[], &m);
}

/// `check_freemail_replyto('reply')`: a free-mail From (no Reply-To) and a
/// different free-mail address in the body; FreeMail's skips apply.
#[test]
fn freemail_reply_in_body() {
    let m = ["FREEMAIL_REPLY"];
    let msg =
        |from: &str, body: &str| format!("From: {from}\nTo: a@b.example\nSubject: s\n\n{body}\n");
    check(
        &msg(
            "joe@freemail.example",
            "write to jim@x.webmail.example today",
        ),
        &m,
        &[],
    );
    // the same address, a non-free one, or one in <...>: no
    check(
        &msg(
            "joe@freemail.example",
            "write to joe@freemail.example today",
        ),
        &[],
        &m,
    );
    check(
        &msg("joe@freemail.example", "write to jim@corp.example today"),
        &[],
        &m,
    );
    check(
        &msg("joe@freemail.example", "Jim <jim@x.webmail.example>"),
        &[],
        &m,
    );
    // From not free: no
    check(
        &msg("joe@corp.example", "write to jim@x.webmail.example"),
        &[],
        &m,
    );
    // a mailto: link counts
    check(
        "From: joe@freemail.example\nTo: a@b.example\nSubject: s\nContent-Type: text/html\n\n\
         <a href=\"mailto:jim@x.webmail.example\">write</a>\n",
        &m,
        &[],
    );
    // five addresses in the body switch the body part off
    check(
        &msg(
            "joe@freemail.example",
            "jim@x.webmail.example a@c.example b@c.example c@c.example d@c.example",
        ),
        &[],
        &m,
    );
    // a bulk envelope sender switches the whole check off
    check(
        &format!(
            "Return-Path: <list-bounces@freemail.example>\n{}",
            msg(
                "joe@freemail.example",
                "write to jim@x.webmail.example today"
            )
        ),
        &[],
        &m,
    );
}

/// `check_for_forged_gmail_received_headers`: a gmail.com From without
/// Google's relays in X-Received/Received and without both long
/// X-Gm-Message-State and X-Google-Smtp-Source headers.
#[test]
fn forged_gmail() {
    let m = ["FORGED_GMAIL_RCVD"];
    let long = "A".repeat(64);
    check(
        "Received: from x (y [192.0.2.1]) by mx.example with SMTP id 1\nFrom: joe@gmail.com\nTo: a@b.example\nSubject: s\n\nhi\n",
        &m,
        &[],
    );
    check(
        "X-Received: by 10.1.2.3 with SMTP id abc;\nFrom: joe@gmail.com\nTo: a@b.example\nSubject: s\n\nhi\n",
        &[],
        &m,
    );
    check(
        &format!("X-Gm-Message-State: {long}\nX-Google-Smtp-Source: {long}\nFrom: joe@GMAIL.com\nTo: a@b.example\nSubject: s\n\nhi\n"),
        &[],
        &m,
    );
    check(
        "From: joe@notgmail.com\nTo: a@b.example\nSubject: s\n\nhi\n",
        &[],
        &m,
    );
    check(
        "From: joe@corp.example\nTo: a@b.example\nSubject: s\n\nhi\n",
        &[],
        &m,
    );
}

/// `html_range('closed_extra_ratio', …)`: end tags that close nothing over
/// all tags of an HTML part.
#[test]
fn html_extra_close() {
    let html = html_message;
    let m = ["HTML_EXTRA_CLOSE"];
    check(&html("<html><body><b>x</b></body></html>"), &[], &m);
    // 2 stray closes among 8 tags: 0.25
    check(
        &html("<html><body>x</font></span><b>y</b></body></html>"),
        &m,
        &[],
    );
    // 1 among 12: 0.083, under 0.09
    check(
        &html("<!DOCTYPE html><html><body><p>x</p><b>y</b><i>z</i></i></body></html>"),
        &[],
        &m,
    );
}
