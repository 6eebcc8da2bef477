//! Rate limits: GCRA arithmetic, the shared table, reload, refunds and
//! exactness under contention.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use mb_engine::eval::ratelimit::{
    now_fixed, parse_key_part, parse_window, Gcra, KeyPart, Limit, Limits, RateTable, Scope,
    Window, NOW_MS_MAX,
};
use mb_engine::eval::Facts;
use mb_engine::verdict::SmtpText;
use proptest::prelude::*;

const T0: u64 = 1_764_000_000_000; // 2025-11, Unix ms

fn w(text: &str) -> Window {
    parse_window(text).expect("valid window")
}

fn limit(name: &str, key: &[&str], windows: &[&str]) -> Limit {
    Limit {
        name: name.to_owned(),
        key: key
            .iter()
            .map(|k| parse_key_part(k).expect("valid key part"))
            .collect(),
        windows: windows.iter().map(|t| w(t)).collect(),
        reply: None,
        origin: format!("policy.ratelimit.{name}"),
    }
}

fn facts<'a>(ip: &str, sender: &'a str) -> Facts<'a> {
    Facts {
        client_ip: Some(ip.parse().expect("ip")),
        sender,
        helo: "mx.example.net",
        ..Facts::default()
    }
}

/// Checks `n` times at `now`, returns how many were admitted.
fn admitted(
    limits: &Limits,
    table: &RateTable,
    f: &Facts<'_>,
    scope: Scope,
    now: u64,
    n: u32,
) -> u32 {
    (0..n)
        .filter(|_| limits.check(table, f, scope, now).is_ok())
        .count() as u32
}

fn remaining(limits: &Limits, table: &RateTable, key: &str, window: &str, now: u64) -> Option<u32> {
    limits
        .show(table, key, now)
        .into_iter()
        .find(|b| b.window == window)
        .map(|b| b.remaining)
}

// ---------------------------------------------------------------------------
// Parsing

#[test]
fn windows_parse_and_print() {
    for (text, count, period_ms, shown) in [
        ("100/1m", 100, 60_000, "100/1m"),
        ("5/30s", 5, 30_000, "5/30s"),
        ("2000/1h", 2000, 3_600_000, "2000/1h"),
        ("10000/1d", 10_000, 86_400_000, "10000/1d"),
        (" 7 / m ", 7, 60_000, "7/1m"),
        ("3/90s", 3, 90_000, "3/90s"),
        ("3/120s", 3, 120_000, "3/2m"),
        ("1/1500ms", 1, 1_500, "1/1500ms"),
    ] {
        let window = parse_window(text).expect(text);
        assert_eq!(window, Window { count, period_ms }, "{text}");
        assert_eq!(window.to_string(), shown);
        assert_eq!(parse_window(shown), Ok(window));
    }
    for (text, says) in [
        ("100", "COUNT/PERIOD"),
        ("0/1m", "at least 1"),
        ("x/1m", "whole number"),
        ("100/1min", "did you mean `m`"),
        ("100/5secs", "did you mean `s`"),
        ("100/0s", "at least 1s"),
        ("1/500ms", "at least 1s"),
        ("1/32d", "at most 31d"),
        ("5000/1s", "1000 per second"),
        ("2000000/1d", "above 1000000"),
        ("1/99999999999999999999d", "too large"),
    ] {
        let err = parse_window(text).expect_err(text);
        assert!(err.contains(says), "{text}: {err}");
    }
}

#[test]
fn key_parts_parse_print_and_suggest() {
    for (text, part) in [
        ("client_ip", KeyPart::ClientIp),
        ("client_ip/24", KeyPart::ClientNet { v4: 24, v6: 64 }),
        ("client_ip/16/48", KeyPart::ClientNet { v4: 16, v6: 48 }),
        ("sender", KeyPart::Sender),
        ("sender_domain", KeyPart::SenderDomain),
        ("recipient", KeyPart::Recipient),
        ("recipient_domain", KeyPart::RecipientDomain),
        ("sasl_user", KeyPart::SaslUser),
        ("helo", KeyPart::Helo),
    ] {
        assert_eq!(parse_key_part(text), Ok(part));
        assert_eq!(parse_key_part(&part.to_string()), Ok(part));
    }
    assert_eq!(
        KeyPart::ClientNet { v4: 24, v6: 64 }.to_string(),
        "client_ip/24"
    );
    for (text, says) in [
        ("sendr", "did you mean `sender`"),
        ("sender_domian", "did you mean `sender_domain`"),
        ("sasl_username", "did you mean `sasl_user`"),
        ("client_address", "did you mean `client_ip`"),
        ("rcpt", "did you mean `recipient`"),
        ("client_ip/64", "client_ip/24/64"),
        ("client_ip/x", "IPv4 prefix"),
        ("client_ip/24/129", "0..=128"),
        ("colour", "known: client_ip"),
    ] {
        let err = parse_key_part(text).expect_err(text);
        assert!(err.contains(says), "{text}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Arithmetic

fn any_window() -> impl Strategy<Value = Window> {
    (any::<u32>(), any::<u64>()).prop_map(|(count, period_ms)| Window { count, period_ms })
}

fn parsed_window() -> impl Strategy<Value = Window> {
    (
        1u32..=2_000,
        prop::sample::select(vec![1u64, 30, 60, 3_600, 86_400]),
    )
        .prop_map(|(count, secs)| Window {
            count,
            period_ms: secs * 1000,
        })
        .prop_filter("at most 1000/s", |w| u64::from(w.count) <= w.period_ms)
}

proptest! {
    /// The pure step never panics (debug builds trap on overflow), never goes
    /// below `now` and never lets the bucket run more than one burst ahead.
    #[test]
    fn gcra_arithmetic_never_negative_or_overflowing(
        window in any_window(), tat in any::<u64>(), now in any::<u64>()
    ) {
        let g = Gcra::new(window);
        let now_f = now_fixed(now);
        prop_assert!(g.emission() >= 1);
        prop_assert!(g.span() >= g.emission());
        match g.admit(tat, now) {
            Ok(next) => {
                prop_assert!(next >= now_f);
                prop_assert!(next - now_f <= g.span());
                prop_assert!(next < 1 << 56, "fits the state word");
                prop_assert!(g.refund(next) <= next);
                prop_assert!(g.remaining(tat, now) >= 1);
            }
            Err(retry) => {
                prop_assert_eq!(g.remaining(tat, now), 0);
                prop_assert!(retry >= 1);
                prop_assert_eq!(g.retry_after_ms(tat, now), retry);
                if tat <= now_f + g.span() {
                    // A reachable state waits at most one emission interval.
                    prop_assert!(retry <= g.emission().div_ceil(4096));
                }
            }
        }
        prop_assert!(g.remaining(tat, now) <= window.count.max(1));
    }

    /// Through the table, with an arbitrary clock (backwards jumps, huge
    /// values): never panics, never admits more than one burst plus the
    /// rate over the time the clock advanced.
    #[test]
    fn table_never_over_admits_with_any_clock(
        window in parsed_window(),
        nows in prop::collection::vec(
            prop_oneof![
                4 => T0 - 600_000..T0 + 600_000,
                1 => any::<u64>(),
                1 => NOW_MS_MAX - 1000..NOW_MS_MAX + 1000,
            ],
            1..200,
        ),
    ) {
        let table = RateTable::with_capacity(64);
        let limits = Limits::new(vec![Limit {
            windows: vec![window],
            ..limit("l", &["sender"], &[])
        }]);
        let f = facts("192.0.2.1", "a@b.example");
        let g = Gcra::new(window);
        let mut first: Option<u64> = None;
        let mut latest = 0u64;
        let mut admitted = 0u64;
        let mut seen = 0u64;
        for &now in &nows {
            seen = seen.max(now.min(NOW_MS_MAX));
            let nf = now_fixed(now);
            match limits.check(&table, &f, Scope::Message, now) {
                Ok(()) => {
                    admitted += 1;
                    first = Some(first.map_or(nf, |x| x.min(nf)));
                    latest = latest.max(nf);
                }
                Err(e) => {
                    prop_assert_eq!(e.reply.code, 450);
                    prop_assert!(e.retry_after_ms >= 1);
                    // Never more than a period, plus how far the clock went back.
                    let back = seen - now.min(NOW_MS_MAX);
                    prop_assert!(e.retry_after_ms <= window.period_ms + 1 + back);
                }
            }
            for b in limits.show(&table, "sender=a@b.example", now) {
                prop_assert!(b.remaining <= window.count);
            }
        }
        if let Some(first) = first {
            let bound = u64::from(window.count) + (latest - first) / g.emission();
            prop_assert!(admitted <= bound, "admitted {} > {}", admitted, bound);
        }
        prop_assert_eq!(table.stats().failed_open, 0);
    }

    /// At one instant a fresh bucket admits exactly `count`; then refuses
    /// with 450 4.7.1 and a retry hint; after the period it is full again.
    #[test]
    fn burst_is_exactly_count_then_refills(
        window in parsed_window().prop_filter("small", |w| w.count <= 300),
        now in T0..T0 + 10 * 365 * 86_400_000,
    ) {
        let table = RateTable::with_capacity(256);
        let limits = Limits::new(vec![Limit {
            windows: vec![window],
            ..limit("burst", &["client_ip/24"], &[])
        }]);
        let f = facts("198.51.100.7", "x@y.example");
        prop_assert_eq!(admitted(&limits, &table, &f, Scope::Message, now, window.count + 5), window.count);
        let e = limits.check(&table, &f, Scope::Message, now).expect_err("over");
        prop_assert_eq!(e.reply.code, 450);
        prop_assert!(e.reply.text.starts_with("4.7.1 "), "{}", e.reply.text);
        let secs = e.retry_after_ms.div_ceil(1000).max(1);
        let hint = format!("try again in {secs} s");
        prop_assert!(e.reply.text.contains(&hint), "{}", e.reply.text);
        prop_assert_eq!(&e.key, "client_ip/24=198.51.100.0/24");
        prop_assert_eq!(e.window, window);
        // After the retry hint exactly one more is admitted.
        prop_assert_eq!(admitted(&limits, &table, &f, Scope::Message, now + e.retry_after_ms, 3), 1);
        // Half a period later about half the burst is back.
        let half = now + window.period_ms / 2;
        let got = admitted(&limits, &table, &f, Scope::Message, half, window.count);
        prop_assert!(got + 2 >= window.count / 2 && got <= window.count / 2 + 1, "{} of {}", got, window.count);
        // A full period after the last admission the bucket is full.
        let later = now + e.retry_after_ms.max(window.period_ms / 2) + window.period_ms + 1;
        prop_assert_eq!(admitted(&limits, &table, &f, Scope::Message, later, window.count + 5), window.count);
    }

    /// A request refused by a later window (or a later limit) costs nothing
    /// in the windows and limits that admitted it.
    #[test]
    fn refusal_refunds_earlier_windows_and_limits(
        small in 1u32..20, extra in 1u32..50, tries in 1u32..60
    ) {
        let big = small + extra;
        let table = RateTable::with_capacity(256);
        let limits = Limits::new(vec![
            Limit {
                windows: vec![
                    Window { count: big * 10, period_ms: 3_600_000 },
                    Window { count: big, period_ms: 60_000 },
                ],
                ..limit("per-sender", &["sender"], &[])
            },
            Limit {
                windows: vec![Window { count: small, period_ms: 60_000 }],
                ..limit("per-net", &["client_ip/24"], &[])
            },
        ]);
        let f = facts("203.0.113.9", "bulk@example.com");
        let got = admitted(&limits, &table, &f, Scope::Message, T0, tries);
        prop_assert_eq!(got, tries.min(small));
        let key = "sender=bulk@example.com";
        prop_assert_eq!(remaining(&limits, &table, key, &format!("{big}/1m"), T0), Some(big - got));
        prop_assert_eq!(remaining(&limits, &table, key, &Window { count: big * 10, period_ms: 3_600_000 }.to_string(), T0), Some(big * 10 - got));
        // The sender's own windows: exhaust the per-minute one with other IPs;
        // the hourly window keeps only what was admitted.
        let mut admitted_total = got;
        for i in 0..u32::from(u8::MAX) {
            let ip = format!("10.{}.{}.1", i / 200, i % 200);
            if limits.check(&table, &facts(&ip, "bulk@example.com"), Scope::Message, T0).is_ok() {
                admitted_total += 1;
            }
        }
        prop_assert_eq!(admitted_total, big);
        prop_assert_eq!(remaining(&limits, &table, key, &Window { count: big * 10, period_ms: 3_600_000 }.to_string(), T0), Some(big * 9));
    }

    /// Building a new `Limits` (a reload) keeps every bucket whose limit kept
    /// its name, key and windows, whatever else changed; a changed window
    /// starts fresh.
    #[test]
    fn reload_keeps_bucket_state(count in 2u32..200, used in 1u32..200) {
        let used = used.min(count);
        let table = RateTable::with_capacity(1024);
        let window = Window { count, period_ms: 3_600_000 };
        let before = Limits::new(vec![Limit {
            windows: vec![window],
            ..limit("per-user", &["sasl_user"], &[])
        }]);
        let f = Facts { sasl_user: "Alice", ..facts("192.0.2.1", "alice@example.org") };
        prop_assert_eq!(admitted(&before, &table, &f, Scope::Message, T0, used), used);

        let after = Limits::new(vec![
            limit("new-one", &["recipient"], &["5/1m"]),
            Limit {
                windows: vec![window],
                reply: Some(SmtpText { code: 451, text: "4.7.1 Slow down ({retry}s)".into() }),
                origin: "elsewhere".into(),
                ..limit("per-user", &["sasl_user"], &[])
            },
        ]);
        prop_assert_eq!(remaining(&after, &table, "sasl_user=alice", &window.to_string(), T0), Some(count - used));
        prop_assert_eq!(admitted(&after, &table, &f, Scope::Message, T0, count), count - used);
        let e = after.check(&table, &f, Scope::Message, T0).expect_err("over after reload");
        prop_assert_eq!(e.reply.code, 451);
        let substituted = e.reply.text.starts_with("4.7.1 Slow down (") && !e.reply.text.contains("{retry}");
        prop_assert!(substituted, "{}", e.reply.text);

        // Same name, changed window: a fresh bucket.
        let changed = Window { count: count + 1, period_ms: 3_600_000 };
        let again = Limits::new(vec![Limit {
            windows: vec![changed],
            ..limit("per-user", &["sasl_user"], &[])
        }]);
        prop_assert_eq!(remaining(&again, &table, "sasl_user=alice", &changed.to_string(), T0), None);
        prop_assert_eq!(admitted(&again, &table, &f, Scope::Message, T0, count + 3), count + 1);
        // Renamed: fresh too.
        let renamed = Limits::new(vec![Limit {
            windows: vec![window],
            ..limit("per-login", &["sasl_user"], &[])
        }]);
        prop_assert_eq!(admitted(&renamed, &table, &f, Scope::Message, T0, count + 3), count);
    }
}

// ---------------------------------------------------------------------------
// Keys and scope

#[test]
fn keys_aggregate_fold_case_and_skip_absent_parts() {
    let table = RateTable::with_capacity(1024);
    let limits = Limits::new(vec![
        limit("net", &["client_ip/24"], &["2/1m"]),
        limit("user", &["sasl_user"], &["1/1m"]),
    ]);
    // No SASL user: "user" does not apply; the /24 is shared.
    assert!(limits
        .check(
            &table,
            &facts("192.0.2.1", "a@x.example"),
            Scope::Message,
            T0
        )
        .is_ok());
    assert!(limits
        .check(
            &table,
            &facts("192.0.2.254", "b@x.example"),
            Scope::Message,
            T0
        )
        .is_ok());
    let e = limits
        .check(
            &table,
            &facts("::ffff:192.0.2.77", "c@x.example"),
            Scope::Message,
            T0,
        )
        .expect_err("same /24 (v4-mapped)");
    assert_eq!(e.limit, "net");
    assert_eq!(e.key, "client_ip/24=192.0.2.0/24");
    assert!(limits
        .check(
            &table,
            &facts("192.0.3.1", "a@x.example"),
            Scope::Message,
            T0
        )
        .is_ok());

    // IPv6 aggregates by /64 unless told otherwise.
    assert!(limits
        .check(&table, &facts("2001:db8:1:2::1", "a@x"), Scope::Message, T0)
        .is_ok());
    assert!(limits
        .check(
            &table,
            &facts("2001:db8:1:2:ffff::9", "a@x"),
            Scope::Message,
            T0
        )
        .is_ok());
    let e = limits
        .check(&table, &facts("2001:db8:1:2::3", "a@x"), Scope::Message, T0)
        .expect_err("same /64");
    assert_eq!(e.key, "client_ip/24=2001:db8:1:2::/64");
    assert!(limits
        .check(&table, &facts("2001:db8:1:3::1", "a@x"), Scope::Message, T0)
        .is_ok());

    // SASL user names fold ASCII case.
    let user = |name| Facts {
        sasl_user: name,
        ..facts("10.0.0.1", "")
    };
    assert!(limits
        .check(&table, &user("Bob"), Scope::Message, T0)
        .is_ok());
    let e = limits
        .check(&table, &user("BOB"), Scope::Message, T0)
        .expect_err("same user");
    assert_eq!(
        (e.limit.as_str(), e.key.as_str()),
        ("user", "sasl_user=bob")
    );
}

#[test]
fn combined_keys_and_per_recipient_scope() {
    let table = RateTable::with_capacity(1024);
    let limits = Limits::new(vec![
        limit("pair", &["sender", "client_ip/24"], &["1/1h"]),
        limit("rcpt-dom", &["recipient_domain"], &["2/1h"]),
    ]);
    assert!(limits.has_scope(Scope::Message) && limits.has_scope(Scope::Recipient));
    let f = facts("192.0.2.1", "News@Example.COM");
    assert!(limits.check(&table, &f, Scope::Message, T0).is_ok());
    let e = limits
        .check(&table, &f, Scope::Message, T0)
        .expect_err("pair");
    assert_eq!(e.key, "sender=news@example.com,client_ip/24=192.0.2.0/24");
    assert_eq!(
        e.reply.text,
        format!(
            "4.7.1 Rate limit exceeded, try again in {} s",
            e.retry_after_ms.div_ceil(1000)
        )
    );
    // Same sender from another network is another key.
    assert!(limits
        .check(
            &table,
            &facts("192.0.9.1", "news@example.com"),
            Scope::Message,
            T0
        )
        .is_ok());
    // Recipient limits are not counted at message scope, nor without a recipient.
    assert!(limits.check(&table, &f, Scope::Recipient, T0).is_ok());
    let r = |rcpt| Facts {
        recipient: rcpt,
        ..f
    };
    assert!(limits
        .check(&table, &r("a@dest.example"), Scope::Recipient, T0)
        .is_ok());
    assert!(limits
        .check(&table, &r("b@DEST.example"), Scope::Recipient, T0)
        .is_ok());
    let e = limits
        .check(&table, &r("c@dest.example"), Scope::Recipient, T0)
        .expect_err("3rd");
    assert_eq!(
        (e.limit.as_str(), e.key.as_str()),
        ("rcpt-dom", "recipient_domain=dest.example")
    );
    assert!(limits
        .check(&table, &r("c@other.example"), Scope::Recipient, T0)
        .is_ok());

    // show: by key, by name:key, case-insensitive, without counting.
    let views = limits.show(&table, "recipient_domain=DEST.example", T0);
    assert_eq!(views.len(), 1);
    assert_eq!((views[0].remaining, views[0].window.as_str()), (0, "2/1h"));
    assert!(views[0].retry_after_ms > 0);
    assert_eq!(
        limits.show(&table, "rcpt-dom:recipient_domain=dest.example", T0),
        views
    );
    assert!(limits
        .show(&table, "pair:recipient_domain=dest.example", T0)
        .is_empty());
    assert!(limits
        .show(&table, "recipient_domain=unused.example", T0)
        .is_empty());
    assert_eq!(
        limits.show(&table, "recipient_domain=dest.example", T0),
        views
    );
}

// ---------------------------------------------------------------------------
// The table

#[test]
fn full_table_evicts_and_counts_expired_slots_are_reclaimed() {
    let table = RateTable::with_capacity(1); // rounds up to one probe window
    assert_eq!(table.capacity(), 16);
    let limits = Limits::new(vec![limit("s", &["sender"], &["1/1h"])]);
    let senders: Vec<String> = (0..40).map(|i| format!("u{i}@example.org")).collect();
    for s in &senders {
        assert!(limits
            .check(&table, &facts("192.0.2.1", s), Scope::Message, T0)
            .is_ok());
    }
    let stats = table.stats();
    assert_eq!(stats.used, 16);
    assert_eq!(stats.full, 40 - 16, "{stats:?}");
    assert_eq!(stats.reclaimed, 0);
    assert_eq!(stats.failed_open, 0);
    // An hour later every bucket is full again: slots are reclaimed, not evicted.
    let later = T0 + 3_600_001;
    let fresh: Vec<String> = (100..116).map(|i| format!("u{i}@example.org")).collect();
    for s in &fresh {
        assert!(limits
            .check(&table, &facts("192.0.2.1", s), Scope::Message, later)
            .is_ok());
    }
    let after = table.stats();
    assert_eq!(after.full, stats.full);
    assert_eq!(after.reclaimed, 16, "{after:?}");
    // The 16 most recent keys are limited.
    for s in &fresh {
        assert!(
            limits
                .check(&table, &facts("192.0.2.1", s), Scope::Message, later)
                .is_err(),
            "{s}"
        );
    }
}

#[test]
fn many_keys_stay_exact_when_the_table_is_roomy() {
    let table = RateTable::with_capacity(1 << 14);
    let limits = Limits::new(vec![limit("s", &["sender"], &["3/1h"])]);
    let senders: Vec<String> = (0..2000).map(|i| format!("user{i}@example.net")).collect();
    for round in 0..4 {
        for s in &senders {
            let ok = limits
                .check(&table, &facts("192.0.2.1", s), Scope::Message, T0)
                .is_ok();
            assert_eq!(ok, round < 3, "{s} round {round}");
        }
    }
    assert_eq!(table.stats().full, 0);
    assert_eq!(table.stats().used, 2000);
}

/// Threads hammering one key at one instant: exactly `count` admitted in
/// total, and refunds of a refusing second window are exact too.
#[test]
fn exact_across_threads() {
    let table = Arc::new(RateTable::with_capacity(1024));
    let limits = Arc::new(Limits::new(vec![limit(
        "hot",
        &["sender"],
        &["20000/1h", "6000/1m"],
    )]));
    let threads = 4;
    let tries = 2500;
    let total = Arc::new(AtomicU32::new(0));
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (table, limits, total) = (table.clone(), limits.clone(), total.clone());
            let start = start.clone();
            std::thread::spawn(move || {
                let ip = format!("192.0.2.{t}");
                let f = facts(&ip, "hot@example.com");
                start.wait();
                let n = admitted(&limits, &table, &f, Scope::Message, T0, tries);
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(total.load(Ordering::Relaxed), 6000);
    let key = "sender=hot@example.com";
    assert_eq!(remaining(&limits, &table, key, "20000/1h", T0), Some(14000));
    assert_eq!(remaining(&limits, &table, key, "6000/1m", T0), Some(0));
    assert_eq!(table.stats().failed_open, 0);
}

#[test]
fn limits_without_windows_or_matching_facts_admit() {
    let table = RateTable::with_capacity(64);
    assert!(Limits::default().is_empty());
    let limits = Limits::new(vec![
        limit("none", &["sender"], &[]),
        limit("helo", &["helo"], &["1/1m"]),
        limit("dom", &["sender_domain"], &["1/1m"]),
    ]);
    assert_eq!(limits.iter().count(), 3);
    let f = Facts {
        helo: "",
        client_ip: None::<IpAddr>,
        sender: "postmaster",
        ..Facts::default()
    };
    for _ in 0..5 {
        assert!(limits.check(&table, &f, Scope::Message, T0).is_ok());
    }
    assert_eq!(table.stats().used, 0);
}

/// A hot key stays exact while other threads churn thousands of keys through
/// a small table (every churn insert evicts a slot: the hand-over path runs
/// next to the hot slot under contention).
#[test]
fn hot_key_exact_while_other_keys_churn_the_table() {
    let table = Arc::new(RateTable::with_capacity(64));
    let limits = Arc::new(Limits::new(vec![limit("s", &["sender"], &["3000/1h"])]));
    let hot = facts("192.0.2.1", "hot@example.com");
    // Two events first: the hot bucket is then never the one nearest to full.
    assert_eq!(admitted(&limits, &table, &hot, Scope::Message, T0, 2), 2);
    let total = Arc::new(AtomicU32::new(2));
    let mut handles = Vec::new();
    let start = Arc::new(Barrier::new(4));
    for t in 0..4 {
        let (table, limits, total) = (table.clone(), limits.clone(), total.clone());
        let start = start.clone();
        handles.push(std::thread::spawn(move || {
            start.wait();
            if t < 2 {
                let f = facts("192.0.2.1", "hot@example.com");
                let n = admitted(&limits, &table, &f, Scope::Message, T0, 2500);
                total.fetch_add(n, Ordering::Relaxed);
            } else {
                for i in 0..3000 {
                    let sender = format!("churn{t}-{i}@example.org");
                    let f = facts("198.51.100.1", &sender);
                    assert!(limits.check(&table, &f, Scope::Message, T0).is_ok());
                }
            }
        }));
    }
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(total.load(Ordering::Relaxed), 3000);
    let stats = table.stats();
    assert!(stats.full > 5000, "{stats:?}");
    assert_eq!(stats.failed_open, 0, "{stats:?}");
    assert_eq!(
        remaining(&limits, &table, "sender=hot@example.com", "3000/1h", T0),
        Some(0)
    );
}
