//! Rate limits shared by a cluster: per-bucket deltas (`take_deltas`) and
//! merging reconciled TATs (`merge`), as the control plane uses them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

use mb_engine::eval::ratelimit::{
    bucket_hash, now_fixed, parse_key_part, parse_window, Delta, Gcra, Limit, Limits, Merged,
    RateTable, Scope, Window,
};
use mb_engine::eval::Facts;
use proptest::prelude::*;

const T0: u64 = 1_764_000_000_000; // 2025-11, Unix ms
const SEED: u64 = 0x5eed;

fn w(text: &str) -> Window {
    parse_window(text).expect("valid window")
}

fn per_sender(name: &str, windows: &[&str]) -> Limits {
    Limits::new(vec![Limit {
        name: name.to_owned(),
        key: vec![parse_key_part("sender").expect("part")],
        windows: windows.iter().map(|t| w(t)).collect(),
        reply: None,
        origin: name.to_owned(),
    }])
}

fn sender(s: &str) -> Facts<'_> {
    Facts {
        sender: s,
        ..Facts::default()
    }
}

fn take(table: &RateTable) -> Vec<Delta> {
    let mut out = Vec::new();
    table.take_deltas(&mut out);
    out
}

#[test]
fn deltas_count_admitted_events_with_their_window() {
    let table = RateTable::for_cluster(1024, SEED);
    assert!(table.is_cluster());
    assert_eq!(table.seed(), SEED);
    let limits = per_sender("x", &["5/1m"]);
    let f = sender("A@B.example");
    let ok = (0..8)
        .filter(|_| limits.check(&table, &f, Scope::Message, T0).is_ok())
        .count();
    assert_eq!(ok, 5);
    let gcra = Gcra::new(w("5/1m"));
    let hash = bucket_hash(SEED, "x", "sender=a@b.example", w("5/1m"));
    assert_eq!(
        take(&table),
        [Delta {
            hash,
            emission: gcra.emission(),
            span: gcra.span(),
            count: 5
        }]
    );
    assert_eq!(take(&table), [], "a take resets the counts");
    assert!(limits
        .check(&table, &f, Scope::Message, T0 + 12_000)
        .is_ok());
    assert_eq!(take(&table)[0].count, 1);
}

#[test]
fn refunded_events_are_not_counted() {
    let table = RateTable::for_cluster(1024, SEED);
    let limits = per_sender("x", &["10/1m", "3/1m"]);
    let f = sender("a@b.example");
    let ok = (0..6)
        .filter(|_| limits.check(&table, &f, Scope::Message, T0).is_ok())
        .count();
    assert_eq!(ok, 3);
    let mut deltas = take(&table);
    deltas.sort_by_key(|d| d.span);
    let counts: Vec<u64> = deltas.iter().map(|d| d.count).collect();
    assert_eq!(counts, [3, 3], "{deltas:?}");
}

#[test]
fn node_local_tables_keep_no_deltas() {
    let table = RateTable::with_seed(1024, SEED);
    assert!(!table.is_cluster());
    let limits = per_sender("x", &["5/1m"]);
    assert!(limits
        .check(&table, &sender("a@b"), Scope::Message, T0)
        .is_ok());
    assert_eq!(take(&table), []);
}

#[test]
fn merge_raises_never_lowers_and_creates_nothing() {
    let table = RateTable::for_cluster(1024, SEED);
    let limits = per_sender("x", &["20/1m"]);
    let f = sender("a@b.example");
    let hash = bucket_hash(SEED, "x", "sender=a@b.example", w("20/1m"));
    assert_eq!(table.merge(hash, now_fixed(T0 + 60_000)), Merged::Absent);
    assert_eq!(
        table.bucket_tat(hash),
        None,
        "merge does not create buckets"
    );
    assert!(limits.check(&table, &f, Scope::Message, T0).is_ok());
    let local = table.bucket_tat(hash).expect("bucket");
    // Another node spent 19 more: the merged TAT is 19 emissions later.
    let t = Gcra::new(w("20/1m")).emission();
    let merged = local + 19 * t;
    assert_eq!(table.merge(hash, merged), Merged::Raised);
    assert_eq!(table.merge(hash, merged), Merged::Unchanged, "idempotent");
    assert_eq!(table.merge(hash, local), Merged::Unchanged, "never back");
    assert_eq!(table.bucket_tat(hash), Some(merged));
    assert!(limits.check(&table, &f, Scope::Message, T0).is_err());
    assert_eq!(table.merge(0, 1), Merged::Absent);
}

#[test]
fn deltas_exact_across_threads_with_concurrent_takes() {
    const THREADS: u64 = 4;
    const CHECKS: u64 = 5_000;
    let table = RateTable::for_cluster(1 << 12, SEED);
    // Roomy: every check admitted. Tight: exactly 100 of all its checks.
    let roomy = per_sender("roomy", &["1000000/1000s"]);
    let tight = per_sender("tight", &["100/1h"]);
    let tight_admitted = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(THREADS as usize + 1);
    let mut totals: HashMap<u64, u64> = std::thread::scope(|s| {
        let checkers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (table, roomy, tight) = (&table, &roomy, &tight);
                let (tight_admitted, barrier) = (&tight_admitted, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for n in 0..CHECKS {
                        let who = format!("s{}@example.org", (n + t) % 7);
                        assert!(roomy
                            .check(table, &sender(&who), Scope::Message, T0)
                            .is_ok());
                        let hot = sender("hot@example.org");
                        if tight.check(table, &hot, Scope::Message, T0).is_ok() {
                            tight_admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let taker = s.spawn(|| {
            let mut totals: HashMap<u64, u64> = HashMap::new();
            let mut out = Vec::new();
            barrier.wait();
            while !done.load(Ordering::SeqCst) {
                out.clear();
                table.take_deltas(&mut out);
                for d in &out {
                    *totals.entry(d.hash).or_default() += d.count;
                }
            }
            totals
        });
        for c in checkers {
            c.join().expect("checker");
        }
        done.store(true, Ordering::SeqCst);
        taker.join().expect("taker")
    });
    for d in take(&table) {
        *totals.entry(d.hash).or_default() += d.count;
    }
    let roomy_sum: u64 = (0..7)
        .map(|i| {
            let key = format!("sender=s{i}@example.org");
            totals[&bucket_hash(SEED, "roomy", &key, w("1000000/1000s"))]
        })
        .sum();
    assert_eq!(roomy_sum, THREADS * CHECKS);
    assert_eq!(tight_admitted.load(Ordering::Relaxed), 100);
    let hot = bucket_hash(SEED, "tight", "sender=hot@example.org", w("100/1h"));
    assert_eq!(totals[&hot], 100);
    assert_eq!(totals.len(), 8);
}

fn window() -> impl Strategy<Value = Window> {
    (1u32..=1000, 1u64..=100_000).prop_map(|(count, secs)| Window {
        count: count.min((secs * 1000) as u32),
        period_ms: secs * 1000,
    })
}

#[derive(Debug, Clone)]
enum Op {
    Check(u64),
    Merge(u64),
    Take,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..10_000_000).prop_map(|dt| Op::Check(T0 + dt)),
        any::<u64>().prop_map(Op::Merge),
        (0u64..(1 << 20)).prop_map(|dt| Op::Merge(now_fixed(T0) + (dt << 12))),
        Just(Op::Take),
    ]
}

proptest! {
    /// Merging is monotonic (the TAT never goes back) and idempotent; the
    /// deltas count exactly the admitted events; nothing overflows (debug
    /// builds check) on arbitrary merged values and clocks.
    #[test]
    fn merge_monotonic_idempotent_and_deltas_exact(
        win in window(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let table = RateTable::for_cluster(64, SEED);
        let limits = Limits::new(vec![Limit {
            name: "p".into(),
            key: vec![],
            windows: vec![win],
            reply: None,
            origin: "p".into(),
        }]);
        let hash = bucket_hash(SEED, "p", "", win);
        let (mut admitted, mut taken) = (0u64, 0u64);
        let mut last = table.bucket_tat(hash);
        for op in ops {
            match op {
                Op::Check(now) => {
                    if limits.check(&table, &Facts::default(), Scope::Message, now).is_ok() {
                        admitted += 1;
                    }
                }
                Op::Merge(tat) => {
                    let before = table.bucket_tat(hash);
                    let first = table.merge(hash, tat);
                    let after = table.bucket_tat(hash);
                    match before {
                        None => prop_assert_eq!(first, Merged::Absent),
                        Some(b) => {
                            let a = after.expect("still there");
                            prop_assert!(a >= b, "never back: {} < {}", a, b);
                            prop_assert_eq!(first == Merged::Raised, a > b);
                            prop_assert!(a >= tat.min(a), "at least the merged value");
                            prop_assert_ne!(table.merge(hash, tat), Merged::Raised);
                            prop_assert_eq!(table.bucket_tat(hash), after, "idempotent");
                        }
                    }
                }
                Op::Take => {
                    for d in take(&table) {
                        prop_assert_eq!(d.hash, hash);
                        let g = Gcra::new(win);
                        prop_assert_eq!((d.emission, d.span), (g.emission(), g.span()));
                        prop_assert!(d.count > 0);
                        taken += d.count;
                    }
                }
            }
            if let (Some(l), Some(now)) = (last, table.bucket_tat(hash)) {
                // Checks only advance it too; nothing moves a bucket back.
                prop_assert!(now >= l);
            }
            last = table.bucket_tat(hash);
        }
        taken += take(&table).iter().map(|d| d.count).sum::<u64>();
        prop_assert_eq!(taken, admitted);
        // A merged value near the top still leaves a working, refusing bucket.
        if table.merge(hash, u64::MAX) != Merged::Absent {
            let f = Facts::default();
            prop_assert!(limits.check(&table, &f, Scope::Message, T0).is_err());
            prop_assert!(limits.check(&table, &f, Scope::Message, u64::MAX).is_err());
        }
    }
}
