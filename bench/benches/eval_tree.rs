//! The whole eval decision at RCPT, at production scale: 1,000,000 valid
//! recipients, 1,000,000 sender-list entries (addresses, domains, subdomains,
//! IPv4/IPv6 networks), 10,000 custom rules, GeoIP, two rate limits.
//!
//! `cargo bench -p mb-bench --bench eval_tree` (builds the tree once, about
//! 10 s and 1 GiB; prints its build time and sizes before measuring).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mb_engine::eval::ratelimit::RateTable;
use mb_engine::eval::{source, Ask, Facts, PolicyTree};

const RECIPIENTS: usize = 1_000_000;
const DOMAINS: usize = 1_000;
const LIST_ENTRIES: usize = 1_000_000;
const RULES: usize = 10_000;

fn geoip() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/fixtures/geoip/maxmind-test-data/GeoIP2-Country-Test.mmdb")
        .display()
        .to_string()
}

/// policy.toml plus its files, generated.
fn generate() -> (String, HashMap<String, Vec<u8>>) {
    let mut files = HashMap::new();
    let mut block = String::with_capacity(LIST_ENTRIES * 24);
    for i in 0..LIST_ENTRIES {
        let _ = match i % 10 {
            0..=5 => writeln!(block, "user{i}@sender{}.example", i % 50_000),
            6 | 7 => writeln!(block, "@bulk{i}.example"),
            8 => writeln!(block, "@.spam{i}.example"),
            _ if i % 20 == 9 => writeln!(
                block,
                "{}.{}.{}.0/24",
                10 + (i >> 16) % 200,
                (i >> 8) % 256,
                i % 256
            ),
            _ => writeln!(
                block,
                "2001:db8:{:x}:{:x}::/64",
                (i >> 16) % 65_536,
                i % 65_536
            ),
        };
    }
    files.insert("block.list".to_owned(), block.into_bytes());
    let mut policy = format!(
        "[global]\nsender_block = [\"file:block.list\"]\nrules = [\"bench.rules\"]\n\
         country_block = [\"KP\"]\n\n[recipients]\nextension_delimiters = \"+\"\n\n\
         [geoip]\ndatabase = \"{}\"\n\n\
         [[ratelimit]]\nname = \"net\"\nkey = [\"client_ip/24\"]\nwindows = [\"50000/1m\"]\n\n\
         [[ratelimit]]\nname = \"sender\"\nkey = [\"sender\"]\nwindows = [\"50000/1m\"]\n\n\
         [[tenant]]\nname = \"isp\"\n",
        geoip()
    );
    let per_domain = RECIPIENTS / DOMAINS;
    for d in 0..DOMAINS {
        let name = format!("d{d}.example");
        let mut rcpt = String::with_capacity(per_domain * 20);
        for u in 0..per_domain {
            let _ = writeln!(rcpt, "u{u}@{name}");
        }
        files.insert(format!("{name}.rcpt"), rcpt.into_bytes());
        let _ = write!(
            policy,
            "\n[[tenant.domain]]\nname = \"{name}\"\nrecipients = [\"file:{name}.rcpt\"]\n"
        );
        if d % 10 == 0 {
            let _ = writeln!(policy, "sender_allow = [\"@partner{d}.example\"]");
        }
    }
    let mut rules = String::with_capacity(RULES * 100);
    for r in 0..RULES {
        let _ = match r % 20 {
            0 => writeln!(
                rules,
                "rule r{r}:\n  when helo ~ \"^dyn{r}-[0-9]+\" and not authenticated\n  then reject\n"
            ),
            1 => writeln!(
                rules,
                "rule r{r}:\n  when client_ip in [{}.{}.0.0/16] and recipient_count > 5\n  then tempfail\n",
                100 + r % 100,
                r % 256
            ),
            2 => writeln!(
                rules,
                "rule r{r}:\n  when hour >= 2 and hour < 4 and sender_local starts_with \"bulk{r}\"\n  then tempfail\n"
            ),
            _ => writeln!(
                rules,
                "rule r{r}:\n  when sender_domain == \"rules{r}.example\" and country != \"GB\"\n  then reject\n"
            ),
        };
    }
    files.insert("bench.rules".to_owned(), rules.into_bytes());
    (policy, files)
}

fn build() -> PolicyTree {
    let (policy, files) = generate();
    let started = Instant::now();
    let source = source::parse("policy.toml", &policy).unwrap_or_else(|d| panic!("{d:?}"));
    let mut read = |name: &str| {
        if name.ends_with(".mmdb") {
            return std::fs::read(name).map_err(|e| e.to_string());
        }
        files.get(name).cloned().ok_or_else(|| format!("no {name}"))
    };
    let tree = PolicyTree::compile(&source, &mut read)
        .unwrap_or_else(|d| panic!("{:?}", &d[..d.len().min(5)]));
    eprintln!(
        "eval_tree: compiled in {:.2} s: {:?}",
        started.elapsed().as_secs_f64(),
        tree.summary()
    );
    tree
}

fn facts<'a>(sender: &'a str, recipient: &'a str, ip: IpAddr, helo: &'a str) -> Facts<'a> {
    Facts {
        client_ip: Some(ip),
        client_name: "unknown",
        helo,
        sender,
        recipient,
        unix_time: 1_764_000_000,
        ..Facts::default()
    }
}

fn bench(c: &mut Criterion) {
    let tree = build();
    let table = RateTable::with_capacity(1 << 20);
    let gb: IpAddr = "81.2.69.142".parse().unwrap_or_else(|_| unreachable!());
    let ips: Vec<IpAddr> = (0..4096u32)
        .map(|i| IpAddr::from([2 + (i % 200) as u8, (i / 200) as u8, (i * 7) as u8, 9]))
        .collect();
    let senders: Vec<String> = (0..4096)
        .map(|i| format!("clean{i}@good{}.example", i % 97))
        .collect();
    let recipients: Vec<String> = (0..4096)
        .map(|i| {
            format!(
                "u{}@d{}.example",
                (i * 7919) % 1000,
                (i * 104_729) % DOMAINS
            )
        })
        .collect();
    let mut group = c.benchmark_group("eval_tree");
    group
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    let mut now = 1_764_000_000_000u64;
    let mut i = 0usize;
    // The full path: valid recipient, unlisted sender, GeoIP, 10,000 rules
    // (none matching), both rate limits counted.
    group.bench_function("accept_full_path", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            // Virtual time runs fast enough that no bucket ever fills: this
            // measures the full path, both limits counted, none refusing.
            now += 100;
            let ask = Ask {
                facts: facts(
                    &senders[i % 4096],
                    &recipients[(i / 3) % 4096],
                    ips[(i / 7) % 4096],
                    "mx.good.example",
                ),
                first_recipient: true,
                sender_allowed: false,
                now_ms: now,
                trace: false,
            };
            black_box(tree.decide(black_box(&ask), &table))
        });
    });
    group.bench_function("reject_listed_sender", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let sender = format!(
                "user{}@sender{}.example",
                (i % 100_000) * 10,
                ((i % 100_000) * 10) % 50_000
            );
            let ask = Ask {
                facts: facts(&sender, &recipients[i % 4096], gb, "mx.good.example"),
                first_recipient: false,
                sender_allowed: false,
                now_ms: now,
                trace: false,
            };
            black_box(tree.decide(black_box(&ask), &table))
        });
    });
    group.bench_function("reject_unknown_recipient", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let ask = Ask {
                facts: facts(
                    &senders[i % 4096],
                    "nobody@d7.example",
                    gb,
                    "mx.good.example",
                ),
                first_recipient: false,
                sender_allowed: false,
                now_ms: now,
                trace: false,
            };
            black_box(tree.decide(black_box(&ask), &table))
        });
    });
    group.bench_function("reject_by_rule_10k", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let sender = format!("x@rules{}.example", 3 + 20 * (i % 400));
            let ask = Ask {
                facts: facts(
                    &sender,
                    &recipients[i % 4096],
                    "89.160.20.112".parse().unwrap_or(gb),
                    "mx",
                ),
                first_recipient: false,
                sender_allowed: false,
                now_ms: now,
                trace: false,
            };
            black_box(tree.decide(black_box(&ask), &table))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
