//! `mbctl` against files and a live mbd: config verify, status, shard
//! status, test-socket, reload.

use std::fs;
use std::time::Duration;

use mb_engine::ctl_api::{DaemonStatus, ShardStatus};
use mb_tests::harness::{describe, lease_port, mbctl, wait_for, Mbd, MbdConfig, TestDir};
use mb_tests::wire::{MilterConn, ReferenceMilter};

use crate::common::POLICY;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn config_verify_accepts_a_good_file() {
    let dir = TestDir::new("ctl-verify-good").unwrap();
    let cfg = MbdConfig {
        socket_mode: "0770".into(),
        ..MbdConfig::with_policy(POLICY)
    };
    let path = dir.join("good.toml");
    fs::write(&path, cfg.render(&dir.join("state"))).unwrap();
    let out = mbctl(&["config", "verify", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !text(&out).contains("error"),
        "a good file reported errors:\n{}",
        describe(&out)
    );
}

#[test]
fn config_verify_rejects_a_bad_file_listing_every_error() {
    let dir = TestDir::new("ctl-verify-bad").unwrap();
    let bad = r#"
[daemon]
state_dir = "/tmp/nowhere"
sate_dir = "/tmp/typo"

[shards]
count = "two"

[milter]
tcp = ["not-an-address"]
socket_mode = "9999"

[policy]
message_bytes_max = "lots"

[[policy.sender]]
match = "@ok.example"
action = "allow"

[[policy.sender]]
match = "@x.example"
action = "explode"

[[policy.recipient]]
match = "@y.example"
action = "reject"
reply = "250 not an error code"
"#;
    let path = dir.join("bad.toml");
    fs::write(&path, bad).unwrap();
    let out = mbctl(&["config", "verify", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let t = text(&out);
    for key in [
        "daemon.sate_dir",
        "shards.count",
        "milter.tcp[0]",
        "milter.socket_mode",
        "policy.message_bytes_max",
        "policy.sender[1].action",
        "policy.recipient[0].reply",
    ] {
        assert!(t.contains(key), "diagnostic for `{key}` missing:\n{t}");
    }
    assert!(
        !t.contains("policy.sender[0]"),
        "the valid rule was blamed:\n{t}"
    );
}

#[test]
fn config_verify_reports_syntax_errors_with_position() {
    let dir = TestDir::new("ctl-verify-syntax").unwrap();
    let path = dir.join("syntax.toml");
    fs::write(
        &path,
        "[daemon]\nstate_dir = \"/tmp/x\"\n[milter\nsocket = 3\n",
    )
    .unwrap();
    let out = mbctl(&["config", "verify", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out).contains("line 3"),
        "no position for the syntax error:\n{}",
        describe(&out)
    );
    let missing = dir.join("missing.toml");
    let out = mbctl(&["config", "verify", missing.to_str().unwrap()]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a missing file verified OK: {}",
        describe(&out)
    );
}

#[test]
fn status_json_describes_the_daemon() {
    let dir = TestDir::new("ctl-status").unwrap();
    let tcp = lease_port().unwrap();
    let cfg = MbdConfig {
        tcp: vec![format!("127.0.0.1:{}", tcp.port)],
        ..MbdConfig::with_policy(POLICY)
    };
    // mbd binds the leased port; the lease (a lock) lives until the end
    let mbd = Mbd::start(&dir.join("mbd"), &cfg).unwrap();
    let v = mbd.status().unwrap();
    let st: DaemonStatus = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("status --json is not a DaemonStatus ({e}): {v}"));
    assert_eq!(st.pid, mbd.pid);
    assert_eq!(st.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(st.shards, 2);
    assert_eq!(st.config_generation, 1);
    assert!(st.last_reload_error.is_none());
    assert!(!st.draining);
    assert_eq!(
        st.config_path.as_deref(),
        Some(mbd.config_path.to_str().unwrap())
    );
    assert_eq!(st.control_socket, mbd.ctl_socket.to_str().unwrap());
    assert!(
        st.listeners.contains(&mbd.milter_spec()),
        "{:?}",
        st.listeners
    );
    assert!(
        st.listeners
            .contains(&format!("inet:127.0.0.1:{}", tcp.port)),
        "{:?}",
        st.listeners
    );
    let rss_kib = mbd.rss_kib().unwrap();
    assert!(
        st.rss_bytes / 1024 > rss_kib / 2 && st.rss_bytes / 1024 < rss_kib * 2,
        "rss_bytes {} vs /proc VmRSS {rss_kib} KiB",
        st.rss_bytes
    );

    // one conversation over TCP shows up in the counters
    let out = mbctl(&["test-socket", &format!("inet:127.0.0.1:{}", tcp.port)]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut c = MilterConn::connect(&mbd.socket).unwrap();
    c.accepted_message().unwrap();
    c.quit();
    let shards = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let list = mbd.shard_status().ok()?;
        let parsed: Vec<ShardStatus> = list
            .iter()
            .map(|x| serde_json::from_value(x.clone()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("shard status --json is not [ShardStatus] ({e}): {list:?}"));
        (parsed.iter().map(|s| s.verdicts.accept).sum::<u64>() >= 1).then_some(parsed)
    })
    .unwrap_or_else(|| panic!("no accept verdict counted: {:?}", mbd.shard_status()));
    assert_eq!(shards.len(), 2);
    let mut idx: Vec<u16> = shards.iter().map(|s| s.shard).collect();
    idx.sort_unstable();
    assert_eq!(idx, [0, 1]);
    assert!(shards.iter().map(|s| s.connections_total).sum::<u64>() >= 2);
    assert!(shards.iter().all(|s| s.config_generation == 1));
    assert!(shards.iter().map(|s| s.messages).sum::<u64>() >= 1);
    let st2: DaemonStatus = serde_json::from_value(mbd.status().unwrap()).unwrap();
    assert!(st2.messages >= 1, "{st2:?}");
    // the human form works too
    let human = mbd.ctl(&["status"]);
    assert_eq!(human.status.code(), Some(0), "{}", describe(&human));
    assert!(
        text(&human).contains(&mbd.pid.to_string()),
        "{}",
        describe(&human)
    );
    drop(mbd);
    drop(tcp);
}

#[test]
fn status_without_a_daemon_fails_clearly() {
    let dir = TestDir::new("ctl-nodaemon").unwrap();
    let sock = dir.join("absent.ctl");
    let out = mbctl(&["--socket", sock.to_str().unwrap(), "status", "--json"]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out).contains(sock.to_str().unwrap()),
        "error does not name the socket:\n{}",
        describe(&out)
    );
}

#[test]
fn test_socket_handshakes_with_mbd_and_fails_on_nothing() {
    let dir = TestDir::new("ctl-testsocket").unwrap();
    let mbd = Mbd::start(&dir.join("mbd"), &MbdConfig::with_policy(POLICY)).unwrap();
    let out = mbctl(&["test-socket", &mbd.milter_spec()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // another milter implementation passes too
    let reference = ReferenceMilter::start(&dir.join("ref.sock")).unwrap();
    let out = mbctl(&["test-socket", &reference.spec()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "reference milter: {}",
        describe(&out)
    );
    // nothing listening
    let out = mbctl(&[
        "test-socket",
        &format!("unix:{}", dir.join("nothing.sock").display()),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let port = lease_port().unwrap();
    let out = mbctl(&["test-socket", &format!("inet:127.0.0.1:{}", port.port)]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    // a socket that accepts and closes at once is not a milter
    let closer = std::os::unix::net::UnixListener::bind(dir.join("closer.sock")).unwrap();
    let t = std::thread::spawn(move || {
        if let Ok((s, _)) = closer.accept() {
            drop(s);
        }
    });
    let out = mbctl(&[
        "test-socket",
        &format!("unix:{}", dir.join("closer.sock").display()),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    t.join().unwrap();
}

#[test]
fn reload_with_a_broken_config_keeps_the_old_one() {
    let dir = TestDir::new("ctl-badreload").unwrap();
    let mut mbd = Mbd::start(&dir.join("mbd"), &MbdConfig::with_policy(POLICY)).unwrap();
    // a valid change via `mbctl reload`
    let cfg2 = MbdConfig::with_policy("[policy]\nheader = \"X-Mailborder\"\n");
    fs::write(&mbd.config_path, cfg2.render(&mbd.state_dir)).unwrap();
    let out = mbd.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let st = mbd.status().unwrap();
    assert_eq!(st["config_generation"].as_u64(), Some(2), "{st}");
    // a broken file via SIGHUP: refused, old config stays
    fs::write(&mbd.config_path, "[policy]\nmessage_bytes_max = \"lots\"\n").unwrap();
    mbd.hup();
    let st = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let st = mbd.status().ok()?;
        (!st["last_reload_error"].is_null()).then_some(st)
    })
    .unwrap_or_else(|| {
        panic!(
            "no last_reload_error after a bad reload: {:?}",
            mbd.status()
        )
    });
    assert_eq!(st["config_generation"].as_u64(), Some(2), "{st}");
    assert!(
        st["last_reload_error"]
            .as_str()
            .unwrap_or("")
            .contains("policy.message_bytes_max"),
        "{st}"
    );
    assert!(mbd.alive(), "mbd died on a bad reload");
    let mut c = MilterConn::connect(&mbd.socket).unwrap();
    c.accepted_message().unwrap();
    c.quit();
    // mbctl reload reports the failure
    let out = mbd.ctl(&["reload"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a broken reload reported success: {}",
        describe(&out)
    );
}

/// `mbctl scan --best-of N` and `--batch N` give the verdicts of one scan
/// (only the timings differ); `--pattern-costs N` lists every pattern rule with the
/// messages it matched.
#[test]
fn scan_best_of_and_pattern_costs() {
    let dir = TestDir::new("ctl-scan").unwrap();
    let rules = dir.join("local.cf");
    fs::write(
        &rules,
        "body  MONEY_WORDS /lots\\s+of\\s+money/i\nscore MONEY_WORDS 3.0\n\
         header SUBJ_WIN Subject =~ /winner/i\nscore SUBJ_WIN 2.5\n",
    )
    .unwrap();
    let mail = dir.join("mail");
    fs::create_dir_all(&mail).unwrap();
    fs::write(
        mail.join("1.eml"),
        "Subject: you are a winner\r\n\r\nLots of money\r\nfor you\r\n",
    )
    .unwrap();
    fs::write(
        mail.join("2.eml"),
        "Subject: lunch\r\n\r\nlots of\r\n\r\nmoney, in another paragraph\r\n",
    )
    .unwrap();
    let (rules, mail) = (rules.to_str().unwrap(), mail.to_str().unwrap());
    let verdicts = |out: &std::process::Output| -> Vec<serde_json::Value> {
        assert!(out.status.success(), "{}", text(out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("ms");
                v
            })
            .collect()
    };
    let once = verdicts(&mbctl(&["--json", "scan", "--rules", rules, mail]));
    let best = verdicts(&mbctl(&[
        "--json",
        "scan",
        "--best-of",
        "3",
        "--rules",
        rules,
        mail,
    ]));
    assert_eq!(once, best);
    let batched = verdicts(&mbctl(&[
        "--json", "scan", "--batch", "2", "--rules", rules, mail,
    ]));
    assert_eq!(once, batched);
    assert_eq!(once.len(), 2);
    assert_eq!(
        once[0]["symbols"],
        serde_json::json!(["MONEY_WORDS", "SUBJ_WIN"])
    );
    assert_eq!(once[0]["is_spam"], true);
    // the paragraph break stops the body rule
    assert_eq!(once[1]["symbols"], serde_json::json!([]));
    let out = mbctl(&["scan", "--pattern-costs", "5", "--rules", rules, mail]);
    let err = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 patterns"), "{err}");
    for (rule, class) in [("MONEY_WORDS", "body"), ("SUBJ_WIN", "header subject")] {
        let row = err
            .lines()
            .find(|l| l.starts_with(rule))
            .unwrap_or_else(|| panic!("no {rule} row in {err}"));
        assert!(row.contains(class), "{row}");
        assert!(row.trim_end().ends_with('1'), "{row}");
    }
    assert!(
        mbctl(&["scan", "--best-of", "0", "--rules", rules, mail])
            .status
            .code()
            == Some(2)
    );
}
