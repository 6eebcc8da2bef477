//! Rate-limit benchmarks: what a shard pays per decision, and the design we
//! did not take.
//!
//! - `check/1-thread/*`: `Limits::check` against the shared `RateTable` on one
//!   thread, cycling through 10,000 clients (a /24, a sender and a
//!   sender+/24 pair each: 5 windows per check) or one limit, one window.
//! - `check/2-threads/*`: two threads at once, on one hot key (every check a
//!   contended CAS on one cache line) and on distinct keys. Time is per check
//!   per thread.
//! - `owner-thread/round-trip`: the alternative, every decision sent to the
//!   thread that owns the bucket over a channel and the answer awaited
//!   (flume, bounded). Time is per decision, seen by the asking thread.
//!
//! Every iteration checks its result, so a refused or dropped check fails the
//! run instead of producing a number.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mb_engine::eval::ratelimit::{parse_key_part, Limit, Limits, RateTable, Scope, Window};
use mb_engine::eval::Facts;

const T0: u64 = 1_764_000_000_000;
const CLIENTS: usize = 10_000;

fn limit(name: &str, key: &[&str], windows: &[Window]) -> Limit {
    Limit {
        name: name.to_owned(),
        key: key
            .iter()
            .map(|k| parse_key_part(k).expect("key part"))
            .collect(),
        windows: windows.to_vec(),
        reply: None,
        origin: name.to_owned(),
    }
}

/// Windows that never refuse at one check per millisecond per key (the first
/// one not even for two threads on one key, each with its own clock, as long
/// as neither runs more than 10^6 checks ahead of the other).
fn roomy() -> Vec<Window> {
    vec![
        Window {
            count: 4_000_000,
            period_ms: 1_000_000,
        },
        Window {
            count: 4_000_000,
            period_ms: 3_600_000,
        },
    ]
}

fn site_limits() -> Limits {
    let w = roomy();
    Limits::new(vec![
        limit("net", &["client_ip/24"], &w),
        limit("sender", &["sender"], &w),
        limit("pair", &["sender", "client_ip/24"], &w[..1]),
    ])
}

fn one_limit() -> Limits {
    Limits::new(vec![limit("sender", &["sender"], &roomy()[..1])])
}

struct Clients {
    ips: Vec<std::net::IpAddr>,
    senders: Vec<String>,
}

impl Clients {
    fn new(n: usize) -> Self {
        Self {
            ips: (0..n)
                .map(|i| std::net::IpAddr::from([10, (i >> 8) as u8, i as u8, 7]))
                .collect(),
            senders: (0..n)
                .map(|i| format!("user{i}@example{}.org", i % 100))
                .collect(),
        }
    }

    fn facts(&self, i: usize) -> Facts<'_> {
        let i = i % self.ips.len();
        Facts {
            client_ip: Some(self.ips[i]),
            sender: &self.senders[i],
            helo: "mx.example.net",
            ..Facts::default()
        }
    }
}

fn bench_single(c: &mut Criterion) {
    let mut g = c.benchmark_group("check/1-thread");
    g.throughput(Throughput::Elements(1));
    let clients = Clients::new(CLIENTS);
    for (name, limits, cluster) in [
        ("10k-clients-5-windows", site_limits(), false),
        ("10k-clients-1-window", one_limit(), false),
        // The same on a table that counts deltas for Redis sync.
        ("10k-clients-5-windows-cluster", site_limits(), true),
        ("10k-clients-1-window-cluster", one_limit(), true),
    ] {
        let table = if cluster {
            RateTable::for_cluster(1 << 20, 0)
        } else {
            RateTable::with_capacity(1 << 20)
        };
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                let f = clients.facts(i);
                let now = T0 + i as u64;
                let r = limits.check(&table, black_box(&f), Scope::Message, now);
                assert!(r.is_ok(), "{r:?}");
            })
        });
        assert_eq!(table.stats().full + table.stats().failed_open, 0);
    }
    g.finish();
}

/// Runs `iters` checks on each of two threads at once, the clock starting at
/// `epoch`; returns the wall time.
fn two_threads(
    limits: &Limits,
    table: &RateTable,
    clients: &Clients,
    hot: bool,
    iters: u64,
    epoch: u64,
) -> Duration {
    let barrier = Barrier::new(2);
    let run = |thread: usize| {
        barrier.wait();
        let start = Instant::now();
        for n in 0..iters {
            let i = if hot {
                0
            } else {
                thread * 5_000 + (n as usize % 5_000)
            };
            let f = clients.facts(i);
            // 4 ms of virtual time per check and thread: both threads on one
            // key stay under the window's rate, so every check is admitted.
            let r = limits.check(table, black_box(&f), Scope::Message, epoch + 4 * n);
            assert!(r.is_ok(), "{r:?}");
        }
        start.elapsed()
    };
    std::thread::scope(|s| {
        let other = s.spawn(|| run(1));
        let mine = run(0);
        mine.max(other.join().expect("bench thread"))
    })
}

fn bench_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("check/2-threads");
    g.throughput(Throughput::Elements(1));
    let clients = Clients::new(CLIENTS);
    let limits = one_limit();
    for (name, hot) in [("one-key", true), ("distinct-keys", false)] {
        let table = RateTable::with_capacity(1 << 20);
        // The clock keeps going forward from one batch to the next.
        let mut epoch = T0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = epoch;
                epoch += 4 * iters + 1_000;
                two_threads(&limits, &table, &clients, hot, iters, start)
            })
        });
    }
    g.finish();
}

fn bench_owner_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("owner-thread");
    g.throughput(Throughput::Elements(1));
    let clients = Arc::new(Clients::new(CLIENTS));
    let (req_tx, req_rx) = flume::bounded::<(usize, u64)>(1);
    let (resp_tx, resp_rx) = flume::bounded::<bool>(1);
    let owner = {
        let clients = clients.clone();
        std::thread::spawn(move || {
            let limits = one_limit();
            let table = RateTable::with_capacity(1 << 20);
            while let Ok((i, now)) = req_rx.recv() {
                let ok = limits
                    .check(&table, &clients.facts(i), Scope::Message, now)
                    .is_ok();
                if resp_tx.send(ok).is_err() {
                    break;
                }
            }
        })
    };
    let mut i = 0usize;
    g.bench_function("round-trip", |b| {
        b.iter(|| {
            i += 1;
            req_tx.send((i, T0 + i as u64)).expect("owner alive");
            assert!(resp_rx.recv().expect("owner answers"));
        })
    });
    g.finish();
    drop(req_tx);
    owner.join().expect("owner thread");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    targets = bench_single, bench_two_threads, bench_owner_thread
}
criterion_main!(benches);
