//! Policy rule benchmarks: what one RCPT decision costs with 10,000 rules.
//!
//! The rule set is generated: 9,600 rules keyed on an equality or `in [...]`
//! test of a string or code field (per-domain, per-recipient, per-HELO,
//! per-country rules, as sites accumulate them) plus 400 rules the index cannot
//! key: 150 regexes, 150 CIDR ranges, 100 numeric tests.
//!
//! Hypothesis: with the index a decision costs one hash probe per indexed
//! field plus the 400 unindexed rules (a few microseconds, dominated by the
//! regexes), not a scan of 10,000 rules; `naive/*` shows that scan.
//!
//! - `indexed/hit-late`: the deciding rule is number 9,001 (every unindexed
//!   rule before it is evaluated too).
//! - `indexed/miss`: no rule holds (the common case: the rules have nothing
//!   to say), so every candidate is evaluated.
//! - `naive/miss`: the oracle, every rule in order.
//! - `compile/10k`: lex, parse, check, compile 150 regexes, build the index.
//!
//! Every iteration checks its answer, so a fast wrong answer fails. Throughput
//! is one element per decision, so criterion prints decisions/s.
//!
//! First run (2026-11-25, 2 vCPUs shared with four concurrent compiles, load
//! average 5 to 8): `indexed/hit-late` 43 µs (23k decisions/s), `indexed/miss`
//! 42 µs (24k/s), `naive/miss` 222 µs (4.5k/s), `compile/10k` 28 ms. The
//! indexed cost is the 400 unindexed rules, about 100 ns each on average,
//! i.e. mostly the 150 regexes; one `RegexSet` per field would be the next
//! step if that matters.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mb_engine::eval::rules::{compile, RuleSet, Source};
use mb_engine::eval::{Code, Facts};

const RULES: usize = 10_000;
const UNINDEXED: usize = 400;

/// The generated rule file.
fn rule_text() -> String {
    let mut text = String::with_capacity(RULES * 100);
    let countries = ["AA", "AB", "AC", "AD", "AE", "AF", "AG", "AH"];
    for n in 0..RULES - UNINDEXED {
        let _ = match n % 5 {
            0 => writeln!(
                text,
                "rule sd{n}:\n  when sender_domain == \"d{n}.example\" and not authenticated\n  \
                 then reject \"550 5.7.1 Domain {n} refused\""
            ),
            1 => writeln!(
                text,
                "rule rc{n}:\n  when recipient in [\"u{n}@corp.example\", \"v{n}@corp.example\"]\n  \
                 then discard"
            ),
            2 => writeln!(
                text,
                "rule he{n}:\n  when helo == \"host{n}.example\" and tls\n  then allow"
            ),
            3 => writeln!(
                text,
                "rule cn{n}:\n  when client_name == \"mx{n}.example\" or false\n  then quarantine"
            ),
            _ => writeln!(
                text,
                "rule co{n}:\n  when country == {} and recipient_domain == \"r{n}.example\"\n  \
                 then tempfail",
                countries[n % countries.len()]
            ),
        };
    }
    for n in 0..UNINDEXED {
        let _ = match n % 8 {
            0..=2 => writeln!(
                text,
                "rule re{n}:\n  when helo ~ \"^dyn{n}-[0-9]+\\.pool\\.example$\"\n  then reject"
            ),
            3..=5 => writeln!(
                text,
                "rule ip{n}:\n  when client_ip in [10.{}.{}.0/24, 2001:db8:{n:x}::/48]\n  \
                 then reject",
                n / 256,
                n % 256
            ),
            _ => writeln!(
                text,
                "rule nu{n}:\n  when recipient_count > {} and hour == {}\n  then tempfail",
                1000 + n,
                n % 24
            ),
        };
    }
    text
}

fn compiled(text: &str) -> RuleSet {
    match compile(&[Source {
        file: "bench.rules",
        text,
    }]) {
        Ok(set) => set,
        Err(e) => panic!("generated rules compile: {:?}", e.first()),
    }
}

/// Facts that match no rule.
fn miss() -> Facts<'static> {
    Facts {
        client_ip: "198.51.100.7".parse::<IpAddr>().ok(),
        client_name: "mail.example.net",
        helo: "mail.example.net",
        sender: "alice@example.net",
        recipient: "bob@example.org",
        recipient_count: 3,
        message_count: 1,
        sasl_user: "",
        tls: true,
        country: Code::parse("DE"),
        continent: Code::parse("EU"),
        unix_time: 1_704_067_200 + 14 * 3600,
        utc_offset_minutes: 60,
    }
}

fn bench_decide(c: &mut Criterion) {
    let text = rule_text();
    let set = compiled(&text);
    assert_eq!(set.len(), RULES);
    assert!(set.unindexed_len() >= UNINDEXED, "{}", set.unindexed_len());

    let hit = Facts {
        sender: "spam@D9000.example",
        ..miss()
    };
    // The oracle agrees with the index before anything is timed.
    assert_eq!(set.evaluate(&hit).map(|h| h.name), Some("sd9000"));
    assert_eq!(set.evaluate_naive(&hit).map(|h| h.name), Some("sd9000"));
    assert!(set.evaluate(&miss()).is_none());
    assert!(set.evaluate_naive(&miss()).is_none());

    let mut group = c.benchmark_group("eval::rules::RuleSet/10k");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .noise_threshold(0.05)
        .throughput(Throughput::Elements(1));
    group.bench_function("indexed/hit-late", |b| {
        b.iter(|| {
            let found = set.evaluate(black_box(&hit));
            assert!(found.is_some_and(|h| h.name == "sd9000"));
        });
    });
    group.bench_function("indexed/miss", |b| {
        let facts = miss();
        b.iter(|| assert!(set.evaluate(black_box(&facts)).is_none()));
    });
    group.bench_function("naive/miss", |b| {
        let facts = miss();
        b.iter(|| assert!(set.evaluate_naive(black_box(&facts)).is_none()));
    });
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let text = rule_text();
    let mut group = c.benchmark_group("eval::rules::compile");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(RULES as u64));
    group.bench_function("10k", |b| {
        b.iter(|| assert_eq!(compiled(black_box(&text)).len(), RULES));
    });
    group.finish();
}

criterion_group!(benches, bench_decide, bench_compile);
criterion_main!(benches);
