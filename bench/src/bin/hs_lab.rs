//! `hs_lab`: where one rule class's Hyperscan time goes. Compiles the
//! class's patterns together (with the database sizes, and split by how
//! they run: exact, widened prefilters, other prefilters), times them with
//! and without confirmation and with the caches flushed between messages;
//! then (`--top N`) each pattern alone, the N costliest, and the class
//! without its costliest; or (`--union N`) the N costliest exact patterns
//! as alternations, as a gate would run them. It also compares the class
//! with and without the patterns' ASCII forms, on ASCII texts and on the
//! others; `--all` times every class in batches, with and without them.
//! Times are per message over the class's text of every message; "floor"
//! is Hyperscan only, hits not confirmed.
//!
//! ```text
//! hs_lab --class body --rules ../shared/corpus/rules/spamassassin \
//!        ../shared/corpus/spam ../shared/corpus/ham
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use mb_engine::filter::content;
use mb_engine::filter::matcher::{Backend, Database, Pattern};
use mb_engine::filter::mime::{self, Limits};

/// Time one rule class's Hyperscan databases over the corpus.
#[derive(Parser, Debug)]
struct Args {
    /// Rule class, as `mbctl scan --profile` labels it (`body`, `rawbody`,
    /// `uri`, `header ALL`, ...).
    #[arg(long, default_value = "body")]
    class: String,
    /// Directory of `.cf` files.
    #[arg(long)]
    rules: PathBuf,
    /// Costliest patterns listed.
    #[arg(long, default_value_t = 40)]
    top: usize,
    /// Also time the costliest N patterns (alone) as one alternation, in
    /// groups of `--group`: a gate that would run them only on a hit.
    #[arg(long, default_value_t = 0)]
    union: usize,
    /// Patterns per alternation for `--union`.
    #[arg(long, default_value_t = 8)]
    group: usize,
    /// Timing repetitions (the fastest counts).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Instead of one class, time every class's databases in batches of
    /// `--batch` messages, as the scanner runs them, with and without the
    /// patterns' ASCII forms.
    #[arg(long)]
    all: bool,
    /// Messages per batch for `--all`.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Message files or directories.
    paths: Vec<PathBuf>,
}

fn files(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out);
            }
        } else if p.is_file() {
            out.push(p.to_path_buf());
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out);
    }
    out
}

/// Best-of-`reps` nanoseconds per message of `db`'s floor over `texts`.
fn floor(db: &Database, texts: &[Vec<u8>], reps: usize) -> f64 {
    let mut scratch = db.scratch();
    let mut best = u128::MAX;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        for text in texts {
            std::hint::black_box(db.scan_unconfirmed(&mut scratch, text));
        }
        best = best.min(t.elapsed().as_nanos());
    }
    best as f64 / texts.len().max(1) as f64
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut cf: Vec<PathBuf> = std::fs::read_dir(&args.rules)
        .with_context(|| args.rules.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cf"))
        .collect();
    cf.sort();
    let texts: Vec<(String, String)> = cf
        .iter()
        .map(|p| {
            let b = std::fs::read(p)?;
            Ok((
                p.display().to_string(),
                String::from_utf8_lossy(&b).into_owned(),
            ))
        })
        .collect::<Result<_>>()?;
    let (_, scanner) = content::compile_rules(&texts, Backend::Hyperscan, 2, None);
    let class = (0..scanner.class_count())
        .find(|&c| args.all || scanner.class_label(c).0 == args.class)
        .with_context(|| format!("no class {}", args.class))?;
    let raws: Vec<Vec<u8>> = files(&args.paths)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    let limits = Limits::default();
    let parsed: Vec<_> = raws.iter().map(|r| mime::parse(r, &limits)).collect();
    let pairs: Vec<(&[u8], &mime::Message)> =
        raws.iter().map(Vec::as_slice).zip(parsed.iter()).collect();
    if args.all {
        return all_classes(&args, &scanner, &pairs);
    }
    let t = Instant::now();
    let class_texts = scanner.class_texts(class, &pairs);
    println!(
        "class texts (with each message's facts) built in {:.1} µs/msg",
        t.elapsed().as_nanos() as f64 / pairs.len().max(1) as f64 / 1e3
    );
    let sizes: Vec<usize> = (0..scanner.class_count())
        .map(|c| {
            let (db, _) = Database::compile_on(&scanner.class_patterns(c), Backend::Hyperscan, 2);
            db.hyperscan_size()
        })
        .collect();
    println!(
        "Hyperscan bytes: this class {}, all classes {}",
        sizes[class],
        sizes.iter().sum::<usize>()
    );
    let bytes: usize = class_texts.iter().map(Vec::len).sum();
    let patterns = scanner.class_patterns(class);
    println!(
        "class {} : {} patterns, {} messages, {:.0} bytes of class text per message",
        args.class,
        patterns.len(),
        class_texts.len(),
        bytes as f64 / class_texts.len().max(1) as f64
    );

    let t = Instant::now();
    let (all, all_report) = Database::compile_on(&patterns, Backend::Hyperscan, 2);
    println!(
        "together (as the scanner splits them): {:.1} µs/msg floor (compiled in {:.1} s)",
        floor(&all, &class_texts, args.reps) / 1e3,
        t.elapsed().as_secs_f64()
    );
    let (ascii, other): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        class_texts.iter().cloned().partition(|t| t.is_ascii());
    let t = Instant::now();
    let (plain, _) = Database::compile_without_ascii_forms(&patterns, 2);
    println!(
        "without ASCII forms: {:.1} µs/msg floor, {} bytes (compiled in {:.1} s)",
        floor(&plain, &class_texts, args.reps) / 1e3,
        plain.hyperscan_size(),
        t.elapsed().as_secs_f64()
    );
    let mean = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() / v.len().max(1);
    println!(
        "{} patterns with an ASCII form; {} ASCII texts ({} bytes each): {:.1} µs/msg floor, \
         {:.1} without ASCII forms; {} others ({} bytes each): {:.1} µs/msg, {:.1} without",
        all.ascii_forms(),
        ascii.len(),
        mean(&ascii),
        floor(&all, &ascii, args.reps) / 1e3,
        floor(&plain, &ascii, args.reps) / 1e3,
        other.len(),
        mean(&other),
        floor(&all, &other, args.reps) / 1e3,
        floor(&plain, &other, args.reps) / 1e3,
    );

    {
        use mb_engine::filter::matcher::Mode;
        let by_mode = |want: fn(&Mode) -> bool| -> Vec<Pattern> {
            patterns
                .iter()
                .filter(|p| all_report.mode(p.id).is_some_and(want))
                .cloned()
                .collect()
        };
        for (label, set) in [
            ("exact", by_mode(|m| matches!(m, Mode::Exact))),
            (
                "prefiltered",
                by_mode(|m| matches!(m, Mode::Prefiltered { .. })),
            ),
            (
                "widened",
                by_mode(
                    |m| matches!(m, Mode::Prefiltered { reason } if reason.contains("widened")),
                ),
            ),
            (
                "other prefiltered",
                by_mode(
                    |m| matches!(m, Mode::Prefiltered { reason } if !reason.contains("widened")),
                ),
            ),
        ] {
            let (db, _) = Database::compile_on(&set, Backend::Hyperscan, 2);
            println!(
                "the {} {label} patterns together: {:.1} µs/msg floor, {} bytes",
                set.len(),
                floor(&db, &class_texts, args.reps) / 1e3,
                db.hyperscan_size()
            );
        }
    }
    {
        let mut scratch = all.scratch();
        let mut hits = mb_engine::filter::matcher::HitSet::new(all.id_bound());
        let mut best = u128::MAX;
        for _ in 0..args.reps.max(1) {
            let t = Instant::now();
            for text in &class_texts {
                hits.clear();
                all.scan(&mut scratch, text, &mut hits);
            }
            best = best.min(t.elapsed().as_nanos());
        }
        println!(
            "together, hits confirmed: {:.1} µs/msg",
            best as f64 / class_texts.len().max(1) as f64 / 1e3
        );
        // the same with 32 MiB of other memory touched between messages, as
        // the other classes' databases do in a whole scan
        let mut other = vec![1u8; 32 << 20];
        let mut spent = 0u128;
        for (n, text) in class_texts.iter().enumerate() {
            for b in other.iter_mut().step_by(64) {
                *b = b.wrapping_add(n as u8);
            }
            let t = Instant::now();
            hits.clear();
            all.scan(&mut scratch, text, &mut hits);
            spent += t.elapsed().as_nanos();
        }
        std::hint::black_box(&other);
        println!(
            "together, hits confirmed, cache flushed between messages: {:.1} µs/msg",
            spent as f64 / class_texts.len().max(1) as f64 / 1e3
        );
        if args.top == 0 {
            return Ok(());
        }
    }
    let mut alone: Vec<(f64, usize)> = Vec::with_capacity(patterns.len());
    let mut bigs: Vec<(usize, usize)> = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        let (db, _) = Database::compile(std::slice::from_ref(p), Backend::Hyperscan);
        alone.push((floor(&db, &class_texts, 1), i));
        bigs.push((db.hyperscan_size(), i));
    }
    bigs.sort_unstable_by(|a, b| b.cmp(a));
    println!(
        "largest alone (bytes), of {} summed:",
        bigs.iter().map(|b| b.0).sum::<usize>()
    );
    for (size, i) in bigs.iter().take(args.top) {
        let src: String = patterns[*i].source.chars().take(100).collect();
        println!("{size:10}  id {:5}  {src}", patterns[*i].id);
    }
    let sum: f64 = alone.iter().map(|(ns, _)| ns).sum();
    println!("alone, summed: {:.1} µs/msg", sum / 1e3);
    alone.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (ns, i) in alone.iter().take(args.top) {
        let p: &Pattern = &patterns[*i];
        let src: String = p.source.chars().take(110).collect();
        println!(
            "{:8.2} µs  {:5.1} %  id {:5}  {}{}",
            ns / 1e3,
            100.0 * ns / sum,
            p.id,
            if p.caseless { "(?i) " } else { "" },
            src
        );
    }
    if args.union > 0 {
        // only patterns Hyperscan runs exactly: an alternation of them is
        // one exact pattern too, unless it grows past Hyperscan's limits
        let top: Vec<&Pattern> = alone
            .iter()
            .map(|(_, i)| &patterns[*i])
            .filter(|p| {
                matches!(
                    all_report.mode(p.id),
                    Some(mb_engine::filter::matcher::Mode::Exact)
                )
            })
            .take(args.union)
            .collect();
        let (separate, _) = Database::compile_on(
            &top.iter().map(|p| (*p).clone()).collect::<Vec<_>>(),
            Backend::Hyperscan,
            2,
        );
        println!(
            "the costliest {} as they are: {:.1} µs/msg floor",
            top.len(),
            floor(&separate, &class_texts, args.reps) / 1e3
        );
        let mut unions = Vec::new();
        for (g, chunk) in top.chunks(args.group.max(1)).enumerate() {
            let text = chunk
                .iter()
                .map(|p| {
                    let mut flags = String::new();
                    if p.caseless {
                        flags.push('i');
                    }
                    if p.dotall {
                        flags.push('s');
                    }
                    if p.multiline {
                        flags.push('m');
                    }
                    if flags.is_empty() {
                        format!("(?:{})", p.source)
                    } else {
                        format!("(?{flags}:{})", p.source)
                    }
                })
                .collect::<Vec<_>>()
                .join("|");
            unions.push(Pattern::regex(g as u32, text));
        }
        let t = Instant::now();
        let (union, report) = Database::compile_on(&unions, Backend::Hyperscan, 2);
        let modes: Vec<&str> = unions
            .iter()
            .map(|u| report.mode(u.id).map_or("-", |m| m.name()))
            .collect();
        println!(
            "as {} alternations of {}: {:.1} µs/msg floor (compiled in {:.1} s; modes {modes:?})",
            unions.len(),
            args.group,
            floor(&union, &class_texts, args.reps) / 1e3,
            t.elapsed().as_secs_f64()
        );
        let mut scratch = union.scratch();
        let mut hits = mb_engine::filter::matcher::HitSet::new(union.id_bound());
        let mut gated = 0usize;
        for text in &class_texts {
            hits.clear();
            union.scan(&mut scratch, text, &mut hits);
            gated += usize::from(!hits.is_empty());
        }
        println!(
            "messages where a gate opens: {gated} of {}",
            class_texts.len()
        );
        return Ok(());
    }
    for k in [5usize, 10, 20, 40, 80, 160, 320] {
        if k >= patterns.len() {
            break;
        }
        let dropped: std::collections::HashSet<usize> =
            alone.iter().take(k).map(|(_, i)| *i).collect();
        let rest: Vec<Pattern> = patterns
            .iter()
            .enumerate()
            .filter(|(i, _)| !dropped.contains(i))
            .map(|(_, p)| p.clone())
            .collect();
        let (db, _) = Database::compile_on(&rest, Backend::Hyperscan, 2);
        let kept: f64 = alone.iter().skip(k).map(|(ns, _)| ns).sum();
        println!(
            "without the costliest {k:3}: {:.1} µs/msg floor (the rest alone, summed: {:.1})",
            floor(&db, &class_texts, args.reps) / 1e3,
            kept / 1e3
        );
    }
    Ok(())
}

/// `--all`: every class's Hyperscan floor in batches, with the ASCII forms
/// and without, interleaved.
fn all_classes(
    args: &Args,
    scanner: &mb_engine::filter::scan::Scanner,
    pairs: &[(&[u8], &mime::Message)],
) -> Result<()> {
    let classes: Vec<(Vec<Vec<u8>>, Database, Database)> = (0..scanner.class_count())
        .map(|c| {
            let patterns = scanner.class_patterns(c);
            let (with, _) = Database::compile_on(&patterns, Backend::Hyperscan, 2);
            let (without, _) = Database::compile_without_ascii_forms(&patterns, 2);
            (scanner.class_texts(c, pairs), with, without)
        })
        .collect();
    let with: usize = classes.iter().map(|c| c.1.hyperscan_size()).sum();
    let without: usize = classes.iter().map(|c| c.2.hyperscan_size()).sum();
    println!(
        "{} classes, {} messages; Hyperscan bytes with ASCII forms {with}, without {without}",
        classes.len(),
        pairs.len(),
    );
    let mut scratch = classes[0].1.scratch();
    for (_, with, without) in &classes {
        scratch.fit(with);
        scratch.fit(without);
    }
    let batch = args.batch.max(1);
    let mut run = |ascii: bool| {
        let t = Instant::now();
        for start in (0..pairs.len()).step_by(batch) {
            let end = (start + batch).min(pairs.len());
            for (texts, with, without) in &classes {
                let db = if ascii { with } else { without };
                let slice: Vec<&[u8]> = texts[start..end].iter().map(Vec::as_slice).collect();
                std::hint::black_box(db.scan_unconfirmed_many(&mut scratch, &slice));
            }
        }
        t.elapsed().as_nanos() as f64 / pairs.len().max(1) as f64 / 1e3
    };
    for rep in 0..args.reps.max(1) {
        let a = run(true);
        let b = run(false);
        println!("rep {rep}: floor {a:.1} µs/msg with ASCII forms, {b:.1} without");
    }
    Ok(())
}
