//! The test harness itself, without mbd: a private Postfix relays to
//! smtp-sink, with no milter and with the in-process reference milter, and
//! fails over to `milter_default_action` when the milter is absent. If these
//! fail, the mbd tests below cannot be trusted either.

use std::time::Duration;

use mb_tests::harness::TestDir;
use mb_tests::postfix::{message, Postfix, PostfixOpts};
use mb_tests::wire::ReferenceMilter;

#[test]
fn postfix_without_milter_relays_to_sink() {
    let dir = TestDir::new("self-nomilter").unwrap();
    let pf = Postfix::start(dir.path(), &PostfixOpts::default()).unwrap();
    let r = pf.send(
        "alice@source.example",
        &["bob@dest.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "selfcheck-1",
            "marker-body-1",
        ),
    );
    assert_eq!(
        r.greeting.as_ref().map(|g| g.code),
        Some(220),
        "{}",
        r.transcript
    );
    assert_eq!(r.mail_code(), 250, "{}", r.transcript);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = pf.wait_delivered(1, Duration::from_secs(30)).unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.mail_args(), "<alice@source.example>", "{}", m.raw);
    assert_eq!(
        m.rcpt_args(),
        vec!["<bob@dest.example>".to_string()],
        "{}",
        m.raw
    );
    assert_eq!(
        m.header_values("Subject"),
        vec!["selfcheck-1".to_string()],
        "{}",
        m.raw
    );
    assert_eq!(m.body(), "marker-body-1", "{}", m.raw);
    assert!(pf.maillog().contains("status=sent"), "{}", pf.maillog());
}

#[test]
fn postfix_with_reference_milter_adds_header() {
    let dir = TestDir::new("self-refmilter").unwrap();
    let milter = ReferenceMilter::start(&dir.join("ref.sock")).unwrap();
    let pf = Postfix::start(dir.path(), &PostfixOpts::with_milter(&milter.spec())).unwrap();
    let r = pf.send(
        "alice@source.example",
        &["bob@dest.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "selfcheck-2",
            "marker-body-2",
        ),
    );
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = pf.wait_delivered(1, Duration::from_secs(30)).unwrap();
    assert_eq!(
        msgs[0].header_values("X-Harness-Milter"),
        vec!["yes".to_string()],
        "{}",
        msgs[0].raw
    );
    assert!(milter.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[test]
fn postfix_tempfails_when_milter_socket_is_missing() {
    let dir = TestDir::new("self-nosock").unwrap();
    let spec = format!("unix:{}", dir.join("absent.sock").display());
    let pf = Postfix::start(dir.path(), &PostfixOpts::with_milter(&spec)).unwrap();
    let r = pf.send(
        "alice@source.example",
        &["bob@dest.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "selfcheck-3",
            "x",
        ),
    );
    let mail = r
        .mail
        .clone()
        .unwrap_or_else(|| panic!("no MAIL reply: {}", r.transcript));
    assert_eq!(mail.code, 451, "{}", r.transcript);
    assert!(mail.text.starts_with("4.7.1"), "{}", r.transcript);
    pf.wait_log("connect to Milter service", Duration::from_secs(10))
        .unwrap();
    assert!(pf.delivered().is_empty());
}

/// A libmilter-based milter (python3-milter, run by the Debian interpreter:
/// a pyenv `python3` shim may not see the module) that adds a header.
const PYMILTER: &str = r#"
import os, sys
import Milter

class AddHeader(Milter.Base):
    def eom(self):
        self.addheader("X-Pymilter", "yes")
        return Milter.ACCEPT

os.umask(0)
sock = sys.argv[1]
if os.path.exists(sock):
    os.unlink(sock)
Milter.factory = AddHeader
Milter.set_flags(Milter.ADDHDRS)
Milter.runmilter("mbtest-pymilter", "unix:" + sock, 60)
"#;

#[test]
fn postfix_with_pymilter_adds_header() {
    mb_tests::harness::require_tool("python3", "python3");
    let dir = TestDir::new("self-pymilter").unwrap();
    let script = dir.join("pymilter.py");
    std::fs::write(&script, PYMILTER).unwrap();
    let probe = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import Milter"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "python3-milter missing for /usr/bin/python3: apt-get install -y python3-milter ({})",
        String::from_utf8_lossy(&probe.stderr)
    );
    let sock = dir.join("py.sock");
    let mut py = mb_tests::harness::Daemon::spawn(
        "pymilter",
        std::process::Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&sock),
        &dir.join("pymilter.log"),
    )
    .unwrap();
    py.wait_path(&sock, Duration::from_secs(10)).unwrap();
    let spec = format!("unix:{}", sock.display());
    let pf = Postfix::start(dir.path(), &PostfixOpts::with_milter(&spec)).unwrap();
    let r = pf.send(
        "alice@source.example",
        &["bob@dest.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "selfcheck-4",
            "marker-body-4",
        ),
    );
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = pf.wait_delivered(1, Duration::from_secs(30)).unwrap();
    assert_eq!(
        msgs[0].header_values("X-Pymilter"),
        vec!["yes".to_string()],
        "{}",
        msgs[0].raw
    );
    assert_eq!(msgs[0].body(), "marker-body-4");
}
