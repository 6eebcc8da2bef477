//! STARTTLS from mbd to the relay (`[delivery] relay_tls`). The TLS relay
//! is a real Postfix smtpd (the reinjection service of the filter stack,
//! with `smtpd_tls_security_level = may` and a certificate for
//! `relay.test` signed by a private CA that the test makes with openssl):
//!
//! - `verify_with_the_right_ca_delivers_over_tls`: the chain and the name
//!   check out; Postfix logs the TLS session and its Received header says
//!   `ESMTPS`.
//! - `verify_with_a_wrong_ca_defers_and_never_falls_back`: a CA that did
//!   not sign the relay's certificate: the message stays deferred in mbd
//!   (`mbctl queue`), the log says why (unknown issuer), nothing reaches
//!   the relay in plaintext across several retries.
//! - `may_without_starttls_delivers_in_plaintext`: the fake relay does not
//!   announce STARTTLS; `may` delivers anyway.
//! - `encrypt_without_starttls_defers`: the same relay with `encrypt`: the
//!   message is deferred (4.7.4), never sent in plaintext.
//! - `broken_handshake_may_falls_back_encrypt_defers`: a relay that
//!   announces STARTTLS and fails every handshake: `may` logs it and
//!   delivers in plaintext on a new connection; `encrypt` defers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mb_tests::harness::{describe, lease_port, port_listening, wait_for, Mbd, TestDir};
use mb_tests::postfix::{message, Postfix};
use mb_tests::relay::Relay;
use mb_tests::smtp::SmtpSession;

use crate::delivery_postfix::{delivery_config, FilterStack};

/// Runs openssl with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", describe(&out));
}

/// A private CA (`ca.pem`), the relay's key and certificate for
/// `relay.test` and 127.0.0.1 signed by it (`relay.key`, `relay.pem`), and
/// an unrelated CA (`wrong-ca.pem`), all in `dir` (readable by Postfix).
fn make_certificates(dir: &Path) {
    let ca = |name: &str, cn: &str| {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    };
    ca("ca", "mb-tests relay CA");
    ca("wrong-ca", "mb-tests unrelated CA");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "relay.key",
            "-out",
            "relay.csr",
            "-subj",
            "/CN=relay.test",
        ],
    );
    std::fs::write(
        dir.join("relay.ext"),
        "subjectAltName = DNS:relay.test, IP:127.0.0.1\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "relay.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "relay.pem",
            "-days",
            "2",
            "-extfile",
            "relay.ext",
        ],
    );
    for f in ["relay.key", "relay.pem", "ca.pem", "wrong-ca.pem"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Adds the reinjection smtpd on 127.0.0.1:`port` to `pf` with STARTTLS
/// (the certificate in `certs`), reloads and waits until it listens.
fn add_tls_reinjection(pf: &Postfix, port: u16, certs: &Path) {
    let svc = format!("127.0.0.1:{port}/inet");
    pf.postconf(&[
        "-M",
        &format!("{svc}=127.0.0.1:{port} inet n - n - - smtpd"),
    ])
    .unwrap();
    for option in [
        "content_filter=".to_owned(),
        "receive_override_options=no_header_body_checks,no_unknown_recipient_checks".to_owned(),
        "smtpd_authorized_xforward_hosts=127.0.0.0/8".to_owned(),
        "smtpd_tls_security_level=may".to_owned(),
        format!("smtpd_tls_cert_file={}", certs.join("relay.pem").display()),
        format!("smtpd_tls_key_file={}", certs.join("relay.key").display()),
        "smtpd_tls_loglevel=1".to_owned(),
        "smtpd_tls_received_header=yes".to_owned(),
    ] {
        pf.postconf(&["-P", &format!("{svc}/{option}")]).unwrap();
    }
    pf.postfix_cmd("reload").unwrap();
    wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
        port_listening(port).then_some(())
    })
    .unwrap_or_else(|| panic!("the reinjection smtpd does not listen on {port}"));
}

fn queue_sum(mbd: &Mbd, field: &str) -> u64 {
    mbd.shard_status()
        .unwrap()
        .iter()
        .map(|s| s["queue"][field].as_u64().unwrap_or(0))
        .sum()
}

/// Sends one message straight to mbd's ingress; its queue id.
fn send_to_ingress(port: u16, subject: &str) -> String {
    let (mut s, greeting) = SmtpSession::connect(port).unwrap();
    assert_eq!(greeting.code, 220, "{greeting}");
    assert_eq!(s.cmd("EHLO client.mbtest.example").unwrap().code, 250);
    assert_eq!(
        s.cmd("MAIL FROM:<sender@source.example>").unwrap().code,
        250
    );
    assert_eq!(s.cmd("RCPT TO:<rcpt@dest.example>").unwrap().code, 250);
    let msg = message("sender@source.example", "rcpt@dest.example", subject, "x");
    let (_, end) = s.data(&msg).unwrap();
    let end = end.unwrap();
    assert_eq!(end.code, 250, "{}", s.transcript);
    s.quit();
    end.text.rsplit(' ').next().unwrap().to_string()
}

fn verify_extra(certs: &Path, ca: &str) -> String {
    format!(
        "relay_tls = \"verify\"\nrelay_tls_ca_file = \"{}\"\n\
         relay_tls_server_name = \"relay.test\"\n",
        certs.join(ca).display()
    )
}

#[test]
fn verify_with_the_right_ca_delivers_over_tls() {
    let certs = TestDir::new("tls-certs-ok").unwrap();
    make_certificates(certs.path());
    let reinject = lease_port().unwrap();
    let s = FilterStack::start(
        "delivery-tls-verify",
        reinject.port,
        &verify_extra(certs.path(), "ca.pem"),
    );
    add_tls_reinjection(&s.pf, reinject.port, certs.path());
    let msg = message(
        "sender@source.example",
        "rcpt@dest.example",
        "over tls",
        "hello through TLS",
    );
    let r =
        s.pf.send("sender@source.example", &["rcpt@dest.example"], &msg);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let got = s.pf.wait_delivered(1, Duration::from_secs(60)).unwrap();
    let m = &got[0];
    assert!(m.body().contains("hello through TLS"), "{}", m.raw);
    // The reinjection smtpd's Received header: mbd came over TLS.
    let tls_hop = m
        .header_values("Received")
        .into_iter()
        .find(|v| v.contains("ESMTPS"));
    assert!(
        tls_hop.as_deref().is_some_and(|v| v.contains("using TLS")),
        "no Received header with ESMTPS and TLS:\n{}",
        m.headers()
    );
    let log =
        s.pf.wait_log("TLS connection established from", Duration::from_secs(5))
            .unwrap();
    assert!(
        log.contains("TLS connection established from localhost[127.0.0.1]"),
        "{log}"
    );
    let err = s.mbd.stderr();
    assert!(err.contains("TLS to the relay"), "{err}");
    assert!(err.contains("relay_tls = \"verify\""), "{err}");
}

#[test]
fn verify_with_a_wrong_ca_defers_and_never_falls_back() {
    let certs = TestDir::new("tls-certs-bad").unwrap();
    make_certificates(certs.path());
    let reinject = lease_port().unwrap();
    let s = FilterStack::start(
        "delivery-tls-wrongca",
        reinject.port,
        &verify_extra(certs.path(), "wrong-ca.pem"),
    );
    add_tls_reinjection(&s.pf, reinject.port, certs.path());
    let msg = message(
        "sender@source.example",
        "rcpt@dest.example",
        "must not leak",
        "never in plaintext",
    );
    let r =
        s.pf.send("sender@source.example", &["rcpt@dest.example"], &msg);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    // Several attempts (retry every second), each refused by the check.
    let deferred = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        (queue_sum(&s.mbd, "deferrals") >= 3).then_some(())
    });
    assert!(
        deferred.is_some(),
        "not deferred: {:?}\n{}",
        s.mbd.shard_status(),
        s.mbd.stderr()
    );
    let err = s.mbd.stderr();
    assert!(
        err.contains("invalid peer certificate") && err.contains("UnknownIssuer"),
        "the log does not say why:\n{err}"
    );
    assert!(!err.contains("delivering in plaintext"), "{err}");
    // mbctl shows it deferred, with its attempts.
    let out = s.mbd.ctl(&["--json", "queue", "list"]);
    assert!(out.status.success(), "{}", describe(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["entries"][0]["phase"], "deferred", "{list}");
    let id = list["entries"][0]["id"].as_str().unwrap().to_owned();
    let out = s.mbd.ctl(&["--json", "queue", "show", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(shown["entry"]["attempts"].as_u64().unwrap() >= 1, "{shown}");
    assert_eq!(shown["recipients"][0][1], "pending", "{shown}");
    // ... and why: the certificate error, as the relay attempt saw it.
    let reason = shown["entry"]["last_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("TLS handshake") && reason.contains("UnknownIssuer"),
        "{shown}"
    );
    // The relay saw TLS handshakes fail and never got a message.
    let log = s.pf.maillog();
    assert!(
        s.pf.delivered().is_empty(),
        "delivered despite the bad CA:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains(&format!(":{}", reinject.port)) && l.contains("status=sent")),
        "{log}"
    );
    assert_eq!(s.pf.sink_messages(), 0, "{log}");
}

#[test]
fn may_without_starttls_delivers_in_plaintext() {
    let dir = TestDir::new("delivery-tls-may").unwrap();
    let ingress = lease_port().unwrap();
    let relay_port = lease_port().unwrap();
    let relay = Relay::accept_all(relay_port.port).unwrap();
    let mbd = Mbd::start(
        &dir.join("mbd"),
        &delivery_config(ingress.port, relay_port.port, "relay_tls = \"may\"\n"),
    )
    .unwrap();
    send_to_ingress(ingress.port, "may in plaintext");
    let got = relay.wait(1, Duration::from_secs(30)).unwrap();
    assert_eq!(got[0].header_values("Subject"), ["may in plaintext"]);
    assert!(
        !mbd.stderr().contains("TLS to the relay"),
        "{}",
        mbd.stderr()
    );
}

#[test]
fn encrypt_without_starttls_defers() {
    let dir = TestDir::new("delivery-tls-encrypt").unwrap();
    let ingress = lease_port().unwrap();
    let relay_port = lease_port().unwrap();
    let relay = Relay::accept_all(relay_port.port).unwrap();
    let mbd = Mbd::start(
        &dir.join("mbd"),
        &delivery_config(ingress.port, relay_port.port, "relay_tls = \"encrypt\"\n"),
    )
    .unwrap();
    send_to_ingress(ingress.port, "needs tls");
    let deferred = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        (queue_sum(&mbd, "deferrals") >= 2).then_some(())
    });
    assert!(
        deferred.is_some(),
        "{:?}\n{}",
        mbd.shard_status(),
        mbd.stderr()
    );
    assert!(relay.accepted().is_empty(), "sent in plaintext");
    let err = mbd.stderr();
    assert!(err.contains("TLS is required"), "{err}");
}

#[test]
fn broken_handshake_may_falls_back_encrypt_defers() {
    for (mode, delivered) in [("may", true), ("encrypt", false)] {
        let dir = TestDir::new(&format!("delivery-tls-broken-{mode}")).unwrap();
        let ingress = lease_port().unwrap();
        let relay_port = lease_port().unwrap();
        let relay = Relay::broken_starttls(relay_port.port).unwrap();
        let extra = format!("relay_tls = \"{mode}\"\n");
        let mbd = Mbd::start(
            &dir.join("mbd"),
            &delivery_config(ingress.port, relay_port.port, &extra),
        )
        .unwrap();
        send_to_ingress(ingress.port, "broken tls peer");
        if delivered {
            let got = relay.wait(1, Duration::from_secs(30)).unwrap();
            assert_eq!(got[0].header_values("Subject"), ["broken tls peer"]);
            let err = mbd.stderr();
            assert!(err.contains("TLS handshake with the relay failed"), "{err}");
            assert!(err.contains("delivering in plaintext"), "{err}");
        } else {
            let deferred = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
                (queue_sum(&mbd, "deferrals") >= 2).then_some(())
            });
            assert!(
                deferred.is_some(),
                "{:?}\n{}",
                mbd.shard_status(),
                mbd.stderr()
            );
            assert!(relay.accepted().is_empty(), "sent in plaintext");
            let err = mbd.stderr();
            assert!(err.contains("TLS handshake with the relay failed"), "{err}");
            assert!(!err.contains("delivering in plaintext"), "{err}");
        }
    }
}
