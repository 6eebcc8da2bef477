//! Policy lookup tables: does size slow a lookup?
//!
//! - `recipients/{1k,1m}/*`: [`Recipients::check`] on a table of 1,000 and of
//!   1,000,000 addresses (100 domains): a hit, a hit through an address
//!   extension (`user+tag@`), an unknown recipient of our domain. Probed keys
//!   cycle through 4,096 random table members, so the 1M table pays its cache
//!   misses instead of hitting one hot line.
//! - `sender/{1k,1m}/*`: [`List::matches`] on a list of 1,000 and 1,000,000
//!   mixed entries (addresses, domains, subdomains, IPv4 and IPv6 CIDRs of
//!   several prefix lengths, HELO names): an address hit, a subdomain hit, a
//!   CIDR hit (longest prefix), and a miss that probes every kind.
//!
//! Before the timings it prints, per table, the build time (parse included
//! for the sender list) and the bytes it retains, measured with a counting
//! global allocator, per entry. Every iteration checks its answer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mb_engine::eval::lists::{parse_list, List};
use mb_engine::eval::recipients::{Match, RecipientCheck, Recipients};
use mb_engine::eval::Facts;

/// The system allocator, counting bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments and
// only adds bookkeeping on a static atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `build`, printing its time and the bytes its result retains.
fn measured<T>(name: &str, entries: usize, build: impl FnOnce() -> T) -> T {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let start = Instant::now();
    let value = build();
    let took = start.elapsed();
    let bytes = ALLOCATED.load(Ordering::Relaxed) - before;
    println!(
        "build {name}: {entries} entries in {:.1} ms, {:.1} MiB retained, {:.1} bytes/entry",
        took.as_secs_f64() * 1e3,
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / entries as f64
    );
    value
}

/// xorshift64: a deterministic stream of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PROBES: usize = 4096;

fn address(i: u64) -> String {
    format!(
        "user{i}.{:x}@d{}.example",
        i.wrapping_mul(0x9e37_79b9),
        i % 100
    )
}

fn bench_recipients(c: &mut Criterion) {
    for (name, n) in [("1k", 1_000u64), ("1m", 1_000_000)] {
        let table = measured(&format!("recipients/{name}"), n as usize, || {
            let mut r = Recipients::new("+");
            for i in 0..n {
                r.add(&address(i)).expect("valid address");
            }
            r
        });
        assert_eq!(table.len() as u64, n);
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let hits: Vec<String> = (0..PROBES).map(|_| address(rng.below(n))).collect();
        let tagged: Vec<String> = hits.iter().map(|a| a.replacen('@', "+news@", 1)).collect();
        let unknown: Vec<String> = (0..PROBES).map(|_| address(n + rng.below(n))).collect();
        let mut group = c.benchmark_group(format!("recipients/{name}"));
        let mut k = 0;
        group.bench_function("exact_hit", |b| {
            b.iter(|| {
                k = (k + 1) % PROBES;
                let got = table.check(black_box(&hits[k]));
                assert!(matches!(got, RecipientCheck::Valid(Match::Exact(_))));
            });
        });
        group.bench_function("extension_hit", |b| {
            b.iter(|| {
                k = (k + 1) % PROBES;
                let got = table.check(black_box(&tagged[k]));
                assert!(matches!(got, RecipientCheck::Valid(Match::Extension(_))));
            });
        });
        group.bench_function("unknown", |b| {
            b.iter(|| {
                k = (k + 1) % PROBES;
                let got = table.check(black_box(&unknown[k]));
                assert!(matches!(got, RecipientCheck::Unknown { .. }));
            });
        });
        group.finish();
    }
}

/// Entry `i` of the mixed sender list, one of six kinds.
fn sender_entry(i: u64) -> String {
    match i % 6 {
        0 => format!("bad{i}@spam{}.example", i % 1000),
        1 => format!("@dom{i}.example"),
        2 => format!(".sub{i}.example"),
        3 => format!(
            "{}.{}.{}.0/24",
            10 + (i >> 16) % 100,
            (i >> 8) & 255,
            i & 255
        ),
        4 => format!("2001:db8:{:x}:{:x}::/64", (i >> 16) & 0xffff, i & 0xffff),
        _ => format!("helo:host{i}.dyn.example"),
    }
}

fn bench_sender(c: &mut Criterion) {
    for (name, n) in [("1k", 1_000u64), ("1m", 1_000_000)] {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&sender_entry(i));
            text.push('\n');
        }
        // A few shorter prefixes, so the CIDR lookup probes several lengths.
        text.push_str("10.0.0.0/8\n172.16.0.0/12\n2001:db8::/32\n");
        let list = measured(&format!("sender/{name}"), n as usize, || {
            let (entries, errors) = parse_list("bench.list", &text);
            assert!(errors.is_empty(), "{:?}", errors.first());
            entries.into_iter().collect::<List>()
        });
        drop(text);
        let mut rng = Rng(0x0fed_cba9_8765_4321);
        let pick = |rng: &mut Rng, kind: u64| (rng.below(n / 6)) * 6 + kind;
        let addresses: Vec<String> = (0..PROBES)
            .map(|_| sender_entry(pick(&mut rng, 0)))
            .collect();
        let subdomains: Vec<String> = (0..PROBES)
            .map(|_| format!("x@mx.sub{}.example", pick(&mut rng, 2)))
            .collect();
        let ips: Vec<IpAddr> = (0..PROBES)
            .map(|_| {
                let i = pick(&mut rng, 3);
                let ip = format!("{}.{}.{}.77", 10 + (i >> 16) % 100, (i >> 8) & 255, i & 255);
                ip.parse().expect("valid IP")
            })
            .collect();
        let mut group = c.benchmark_group(format!("sender/{name}"));
        let mut k = 0;
        group.bench_function("address_hit", |b| {
            b.iter(|| {
                k = (k + 1) % PROBES;
                let facts = Facts {
                    sender: black_box(&addresses[k]),
                    ..Facts::default()
                };
                assert!(list.matches(&facts).is_some());
            });
        });
        group.bench_function("subdomain_hit", |b| {
            b.iter(|| {
                k = (k + 1) % PROBES;
                let facts = Facts {
                    sender: black_box(&subdomains[k]),
                    ..Facts::default()
                };
                assert!(list.matches(&facts).is_some());
            });
        });
        group.bench_function("cidr_hit", |b| {
            b.iter(|| {
                k = (k + 1) % PROBES;
                let facts = Facts {
                    sender: "someone@clean.example.org",
                    client_ip: Some(black_box(ips[k])),
                    ..Facts::default()
                };
                let hit = list.matches(&facts).expect("listed network");
                assert!(hit.entry.to_string().ends_with("/24"));
            });
        });
        let miss_ip: IpAddr = "2001:db9::1".parse().expect("valid IP");
        group.bench_function("miss_all_kinds", |b| {
            b.iter(|| {
                let facts = Facts {
                    sender: black_box("someone@mail.clean.example.org"),
                    client_ip: Some(black_box(miss_ip)),
                    helo: black_box("mail.clean.example.org"),
                    ..Facts::default()
                };
                assert!(list.matches(&facts).is_none());
            });
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_recipients, bench_sender
}
criterion_main!(benches);
