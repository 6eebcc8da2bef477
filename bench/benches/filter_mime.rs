//! MIME parse throughput over the SpamAssassin public corpus (ham + spam),
//! loaded into memory first: `parse/ham`, `parse/spam` report input MB/s;
//! `parse/messages` parses the whole set once per iteration (msgs/s is the
//! message count divided by its time). Every iteration checks the part count
//! against the first pass, so a fast wrong answer fails instead of measuring.
//!
//! The corpus is third-party data kept in `shared/corpus` beside the
//! repository; without it the bench says so and measures nothing.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mb_engine::filter::mime::{parse, Limits};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.file_name().is_some_and(|n| n != "SOURCE.md") {
            out.push(p);
        }
    }
}

fn load(set: &str) -> Vec<Vec<u8>> {
    let mut list = Vec::new();
    files(&Path::new(CORPUS).join(set).join("spamassassin"), &mut list);
    list.sort();
    list.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn parse_all(msgs: &[Vec<u8>], limits: &Limits) -> usize {
    msgs.iter()
        .map(|m| black_box(parse(black_box(m), limits)).parts.len())
        .sum()
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse");
    let mut all = Vec::new();
    for set in ["ham", "spam"] {
        let msgs = load(set);
        if msgs.is_empty() {
            eprintln!("SKIP parse/{set}: no corpus under {CORPUS}");
            continue;
        }
        let bytes: usize = msgs.iter().map(Vec::len).sum();
        let parts = parse_all(&msgs, &limits);
        eprintln!(
            "parse/{set}: {} messages, {bytes} bytes, {parts} parts",
            msgs.len()
        );
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(set, |b| {
            b.iter(|| assert_eq!(parse_all(&msgs, &limits), parts));
        });
        all.extend(msgs);
    }
    if !all.is_empty() {
        let parts = parse_all(&all, &limits);
        group.throughput(Throughput::Elements(all.len() as u64));
        group.bench_function("messages", |b| {
            b.iter(|| assert_eq!(parse_all(&all, &limits), parts));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
