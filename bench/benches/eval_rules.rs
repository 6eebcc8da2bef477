//! Policy rule benchmarks: what one RCPT decision costs with 10,000 rules.
//!
//! The rule set is generated: 9,600 rules keyed on an equality or `in [...]`
//! test of a string or code field (per-domain, per-recipient, per-HELO,
//! per-country rules, as sites accumulate them; 1,920 of them are
//! `client_name == "..." or false`) plus 400 rules without one: 150 regexes,
//! 150 CIDR ranges, 100 numeric tests.
//!
//! Hypothesis: a decision costs one hash probe per indexed field, one probe
//! per prefix length present for the client address, one `RegexSet` scan of
//! `helo` (only when the merge reaches the regex rules) and the 100 numeric
//! rules, which nothing indexes: about a microsecond, not a scan of 10,000
//! rules; `naive/*` shows that scan.
//!
//! - `indexed/hit-late`: the deciding rule is number 9,001 (every candidate
//!   before it is evaluated too).
//! - `indexed/miss`: no rule holds (the common case: the rules have nothing
//!   to say), so every candidate is evaluated.
//! - `indexed/hit-regex`: the deciding rule is regex rule 9,745, so the
//!   `helo` set runs and matches (`RegexSet::matches` allocates).
//! - `naive/miss`: the oracle, every rule in order.
//! - `compile/10k`: lex, parse, check, compile 150 regexes and their set,
//!   build the index.
//!
//! Every iteration checks its answer, so a fast wrong answer fails. Throughput
//! is one element per decision, so criterion prints decisions/s.
//!
//! First run (2026-11-25, 2 vCPUs shared with four concurrent compiles, load
//! average 5 to 8): `indexed/hit-late` 43 µs (23k decisions/s), `indexed/miss`
//! 42 µs (24k/s), `naive/miss` 222 µs (4.5k/s), `compile/10k` 28 ms.
//!
//! Regex sets and gated rules (branch eval-rules2, same 2 vCPUs, load average
//! 2.3 to 6.3; the old code measured just before under load 3.5 to 6.5 at
//! hit-late 29.1 µs, miss 30.8 µs, naive 156 µs, compile 19.6 ms):
//!
//! - regex sets per field plus regex- and CIDR-gated rules alone: hit-late
//!   25.9 µs, miss 26.7 µs. The cost was not the regexes: the 1,920
//!   `... or false` rules were on the always list, evaluated every decision.
//! - plus `or` of indexed branches filed under each branch: `indexed/hit-late`
//!   177 ns (5.6M decisions/s), `indexed/miss` 1.26 µs (790k/s),
//!   `indexed/hit-regex` 820 ns (1.2M/s), `naive/miss` 113 µs, `compile/10k`
//!   15.9 ms. The miss is now mostly the 100 numeric rules and one `helo` set
//!   scan.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mb_engine::eval::rules::{compile, RuleSet, Source};
use mb_engine::eval::{Code, Facts};

const RULES: usize = 10_000;
const UNINDEXED: usize = 400;
/// Of the unindexed rules, those on numbers only (`n % 8` is 6 or 7).
const NUMERIC: usize = 100;

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
    // Regex and CIDR rules are gated by the index; the numeric ones are not.
    assert_eq!(set.unindexed_len(), NUMERIC, "{}", set.unindexed_len());

    let hit = Facts {
        sender: "spam@D9000.example",
        ..miss()
    };
    // The oracle agrees with the index before anything is timed.
    assert_eq!(set.evaluate(&hit).map(|h| h.name), Some("sd9000"));
    assert_eq!(set.evaluate_naive(&hit).map(|h| h.name), Some("sd9000"));
    assert!(set.evaluate(&miss()).is_none());
    let dynamic = Facts {
        helo: "DYN144-77.pool.example",
        ..miss()
    };
    assert_eq!(set.evaluate(&dynamic).map(|h| h.name), Some("re144"));
    assert_eq!(set.evaluate_naive(&dynamic).map(|h| h.name), Some("re144"));
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
    group.bench_function("indexed/hit-regex", |b| {
        b.iter(|| {
            let found = set.evaluate(black_box(&dynamic));
            assert!(found.is_some_and(|h| h.name == "re144"));
        });
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
