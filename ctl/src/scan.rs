//! `mbctl scan FILE|DIR`: scans messages offline with the daemon's rule
//! engine (SpamAssassin `.cf` rules compiled into Hyperscan databases), and
//! prints verdicts, symbols and timings.
//!
//! `--json` prints one JSON object per message, the format
//! `bench/scripts/agreement.py` compares with spamd's:
//! `{"file", "score", "required", "is_spam", "symbols", "ms"}`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mb_engine::filter::content;
use mb_engine::filter::matcher::{Backend, Mode};
use mb_engine::filter::mime::{self, Limits};
use mb_engine::filter::scan::{Profile, Scanner};

use crate::table::{Align, Table};
use serde_json::json;

/// Where Debian's `spamassassin` package installs the stock rules.
pub const STOCK_RULES: &str = "/usr/share/spamassassin";

/// What to scan and how.
pub struct Args<'a> {
    /// Files or directories (read recursively).
    pub paths: &'a [PathBuf],
    /// Rule files or directories of `*.cf` files, in order.
    pub rules: &'a [PathBuf],
    /// Matcher backend.
    pub backend: Backend,
    /// JSON lines instead of a table.
    pub json: bool,
    /// Paths in the output relative to this directory.
    pub root: Option<&'a Path>,
    /// Also time the raw Hyperscan floor (see `Scanner::scan_floor`).
    pub floor: bool,
    /// List the rules the matcher does not run exactly, with the reason.
    pub modes: bool,
    /// Print where the scan time went, per class (see [`profile_table`]).
    pub profile: bool,
    /// Time every pattern alone and print this many of the costliest.
    pub pattern_costs: Option<usize>,
    /// Scan each message this many times and count the fastest.
    pub best_of: u32,
    /// Messages scanned together (see `Scanner::scan_batch`).
    pub batch: usize,
}

/// The `.cf` files of `paths`, in order (a directory's files sorted by name,
/// as SpamAssassin reads them).
fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut entries = Vec::with_capacity(paths.len());
    for p in paths {
        let listing = if p.is_dir() {
            let dir = std::fs::read_dir(p)
                .with_context(|| format!("cannot read rules directory {}", p.display()))?;
            Some(dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        } else {
            None
        };
        entries.push((p.clone(), listing));
    }
    let out = content::rule_file_order(entries);
    if out.is_empty() {
        bail!("no rule files (*.cf) found; give --rules DIR (Debian: apt-get install spamassassin, rules in {STOCK_RULES})");
    }
    Ok(out)
}

/// Message files under `paths`, sorted, recursively.
fn message_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            for e in
                std::fs::read_dir(&p).with_context(|| format!("cannot read {}", p.display()))?
            {
                let path = e?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with('.') || name == "SOURCE.md" || name.ends_with(".md") {
                    continue;
                }
                stack.push(path);
            }
        } else {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Runs the scan; returns the number of spam verdicts.
pub fn run(args: &Args<'_>) -> Result<usize> {
    let started = Instant::now();
    let files = rule_files(args.rules)?;
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            Ok((
                f.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ))
        })
        .collect::<Result<_>>()?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (set, scanner) = content::compile_rules(&texts, args.backend, threads, None);
    let compiled = started.elapsed();
    let mut state = scanner.state();
    let messages = message_files(args.paths)?;
    eprintln!(
        "mbctl scan: {} rules loaded from {} files, {} active, compiled in {:.2} s; {} messages",
        set.rules.len(),
        files.len(),
        scanner.active_rules(),
        compiled.as_secs_f64(),
        messages.len()
    );
    let [exact, prefiltered, confirm_only, rejected] = scanner.mode_counts();
    eprintln!(
        "mbctl scan: patterns: {exact} exact, {prefiltered} prefiltered and confirmed \
         ({} from the line of the first prefilter hit), {confirm_only} confirm-only, \
         {rejected} rejected; {} also in an ASCII form for ASCII text",
        scanner.confirmed_from_line(),
        scanner.ascii_forms()
    );
    if args.modes {
        for (rule, mode) in scanner.pattern_modes() {
            if let Some(reason) = mode.reason() {
                eprintln!("{rule}\t{}\t{reason}", mode.name());
            }
        }
    }
    let progress = !args.json && std::io::stderr().is_terminal() && messages.len() > 50;
    let limits = Limits::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut spam, mut total_bytes, mut scan_time) = (0usize, 0u64, Duration::ZERO);
    let mut floor_time = Duration::ZERO;
    let (epoch, mut profile, mut parse_time) = (Instant::now(), Profile::default(), Duration::ZERO);
    // the messages' bytes, kept for --pattern-costs
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut n = 0usize;
    for chunk in messages.chunks(args.batch.max(1)) {
        let mut raws: Vec<Vec<u8>> = Vec::with_capacity(chunk.len());
        let mut paths: Vec<&PathBuf> = Vec::with_capacity(chunk.len());
        for path in chunk {
            match std::fs::read(path) {
                Ok(raw) => {
                    raws.push(raw);
                    paths.push(path);
                }
                Err(e) => eprintln!("mbctl scan: {}: {e}", path.display()),
            }
        }
        if raws.is_empty() {
            continue;
        }
        if args.pattern_costs.is_some() {
            kept.extend(raws.iter().cloned());
        }
        let mut elapsed = Duration::MAX;
        let mut scanned = None;
        for _ in 0..args.best_of.max(1) {
            let t = Instant::now();
            let parsed: Vec<mime::Message> = raws.iter().map(|r| mime::parse(r, &limits)).collect();
            let batch: Vec<(&[u8], &mime::Message)> =
                raws.iter().map(Vec::as_slice).zip(&parsed).collect();
            let results = if args.profile {
                parse_time += t.elapsed();
                let clock = || u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                scanner.scan_batch_profiled(&mut state, &batch, &clock, &mut profile)
            } else {
                scanner.scan_batch(&mut state, &batch)
            };
            elapsed = elapsed.min(t.elapsed());
            drop(batch);
            scanned = Some((results, parsed));
        }
        let Some((results, parsed)) = scanned else {
            continue;
        };
        scan_time += elapsed;
        if args.floor {
            let mut best = Duration::MAX;
            let batch: Vec<&[u8]> = raws.iter().map(Vec::as_slice).collect();
            for _ in 0..args.best_of.max(1) {
                let t = Instant::now();
                std::hint::black_box(scanner.scan_floor_batch(&mut state, &batch));
                best = best.min(t.elapsed());
            }
            floor_time += best;
        }
        // a message's time is its batch's share
        let elapsed = elapsed / u32::try_from(raws.len()).unwrap_or(u32::MAX);
        for (((raw, path), result), message) in raws.iter().zip(paths).zip(results).zip(parsed) {
            total_bytes += raw.len() as u64;
            spam += usize::from(result.is_spam());
            let shown = args
                .root
                .and_then(|r| path.strip_prefix(r).ok())
                .unwrap_or(path)
                .display()
                .to_string();
            if args.json {
                let line = json!({
                    "file": shown,
                    "score": (f64::from(result.score) * 1000.0).round() / 1000.0,
                    "required": result.required_score,
                    "is_spam": result.is_spam(),
                    "symbols": result.symbols.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
                    "ms": (elapsed.as_secs_f64() * 1e6).round() / 1000.0,
                    "violations": message.violations.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>(),
                });
                writeln!(out, "{line}")?;
            } else {
                let symbols: Vec<String> = result
                    .symbols
                    .iter()
                    .map(|(s, v)| format!("{s}={v}"))
                    .collect();
                writeln!(
                    out,
                    "{} {:>6.2}/{:.1} {:>8.3} ms  {}  {}",
                    if result.is_spam() { "SPAM" } else { "ham " },
                    result.score,
                    result.required_score,
                    elapsed.as_secs_f64() * 1000.0,
                    shown,
                    symbols.join(",")
                )?;
            }
            if progress && (n.is_multiple_of(64) || n + 1 == messages.len()) {
                let done = n + 1;
                let width = 30;
                let filled = done * width / messages.len().max(1);
                eprint!(
                    "\r[{}{}] {done}/{} messages, {spam} spam",
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    messages.len()
                );
            }
            n += 1;
        }
    }
    out.flush()?;
    if progress {
        eprintln!();
    }
    let secs = scan_time.as_secs_f64().max(1e-9);
    eprintln!(
        "mbctl scan: {} messages, {spam} spam, {:.0} msgs/s, {:.1} MB/s (parse + scan, one core)",
        messages.len(),
        messages.len() as f64 / secs,
        total_bytes as f64 / secs / 1e6
    );
    if args.floor {
        let floor = floor_time.as_secs_f64().max(1e-9);
        eprintln!(
            "mbctl scan: raw Hyperscan floor {:.0} msgs/s, {:.1} MB/s; the scan costs {:.1} times the floor",
            messages.len() as f64 / floor,
            total_bytes as f64 / floor / 1e6,
            secs / floor
        );
    }
    if args.profile {
        let parse = u64::try_from(parse_time.as_nanos()).unwrap_or(u64::MAX);
        eprint!("{}", profile_table(&scanner, &profile, parse, PROFILE_ROWS));
    }
    if let Some(rows) = args.pattern_costs {
        eprint!("{}", pattern_cost_table(&scanner, &kept, rows));
    }
    Ok(spam)
}

/// `--pattern-costs`: the `rows` costliest pattern rules, each timed alone
/// over its class's text of every message in `raws`.
fn pattern_cost_table(scanner: &Scanner, raws: &[Vec<u8>], rows: usize) -> String {
    let limits = Limits::default();
    let parsed: Vec<_> = raws.iter().map(|r| mime::parse(r, &limits)).collect();
    let messages: Vec<(&[u8], &mime::Message)> =
        raws.iter().map(Vec::as_slice).zip(parsed.iter()).collect();
    let epoch = Instant::now();
    let clock = || u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let costs = scanner.pattern_costs(&messages, &clock);
    let total: u64 = costs.iter().map(|c| c.nanos).sum();
    let n = messages.len().max(1) as f64;
    let mut table = Table::new(&[
        ("rule", Align::Left),
        ("class", Align::Left),
        ("mode", Align::Left),
        ("µs/msg", Align::Right),
        ("share", Align::Right),
        ("matched", Align::Right),
    ]);
    for c in costs.iter().take(rows) {
        table.row(vec![
            c.rule.clone(),
            scanner.class_label(c.class).0,
            c.mode.as_ref().map_or("-", Mode::name).to_owned(),
            format!("{:.1}", c.nanos as f64 / n / 1e3),
            format!("{:.1}%", c.nanos as f64 * 100.0 / total.max(1) as f64),
            c.matched.to_string(),
        ]);
    }
    format!(
        "pattern costs, each pattern alone ({} patterns, {:.1} µs/msg summed):\n{}",
        costs.len(),
        total as f64 / n / 1e3,
        table.render()
    )
}

/// Classes listed one by one in `--profile`; the rest share one line.
const PROFILE_ROWS: usize = 15;

/// `--profile`: the `rows` costliest classes, then the others together, then
/// parsing (`parse_ns`) and the rule logic, each with its pattern count,
/// total milliseconds, microseconds per message and share of the whole.
fn profile_table(scanner: &Scanner, profile: &Profile, parse_ns: u64, rows: usize) -> String {
    let mut classes: Vec<(String, usize, u64)> = profile
        .classes
        .iter()
        .enumerate()
        .map(|(c, &ns)| {
            let (label, patterns) = scanner.class_label(c);
            (label, patterns, ns)
        })
        .collect();
    classes.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let total: u64 = classes.iter().map(|c| c.2).sum::<u64>() + profile.rules + parse_ns;
    let messages = profile.messages.max(1);
    let mut table = Table::new(&[
        ("part", Align::Left),
        ("patterns", Align::Right),
        ("total ms", Align::Right),
        ("µs/msg", Align::Right),
        ("share", Align::Right),
    ]);
    let mut row = |label: String, patterns: String, ns: u64| {
        table.row(vec![
            label,
            patterns,
            format!("{:.1}", ns as f64 / 1e6),
            format!("{:.1}", ns as f64 / 1e3 / messages as f64),
            format!("{:.1}%", 100.0 * ns as f64 / total.max(1) as f64),
        ]);
    };
    let shown = classes.len().min(rows);
    for (label, patterns, ns) in &classes[..shown] {
        row(label.clone(), patterns.to_string(), *ns);
    }
    let rest = &classes[shown..];
    if !rest.is_empty() {
        row(
            format!("{} other classes", rest.len()),
            rest.iter().map(|c| c.1).sum::<usize>().to_string(),
            rest.iter().map(|c| c.2).sum(),
        );
    }
    row(
        "parse (MIME, HTML, URIs)".to_owned(),
        String::new(),
        parse_ns,
    );
    row(
        "rules (exists, evals, metas)".to_owned(),
        String::new(),
        profile.rules,
    );
    format!(
        "mbctl scan: where the time went ({} messages, one core):\n{}",
        profile.messages,
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_engine::filter::sa::{self, Options, Source};

    /// Classes sorted by time, the tail folded into one line, shares of the
    /// whole (classes, parsing and rule logic).
    #[test]
    fn profile_table_sorts_folds_and_shares() {
        let set = sa::load(
            &[Source {
                file: "t.cf",
                text: "body B /b/\nrawbody R /r/\nuri U /u/\nheader S Subject =~ /s/\n",
            }],
            &Options::default(),
        );
        let scanner = Scanner::compile(&set, Backend::Naive);
        assert_eq!(scanner.class_count(), 4);
        let label = |name: &str| {
            (0..4)
                .find(|&c| scanner.class_label(c).0 == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        let mut profile = Profile {
            classes: vec![0; 4],
            rules: 1_000_000,
            messages: 10,
        };
        profile.classes[label("body")] = 5_000_000;
        profile.classes[label("uri")] = 2_000_000;
        profile.classes[label("rawbody")] = 1_000_000;
        profile.classes[label("header subject")] = 500_000;
        let text = profile_table(&scanner, &profile, 500_000, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("10 messages"), "{text}");
        assert!(
            lines[2].starts_with("body ") && lines[2].ends_with("50.0%"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("uri ") && lines[3].contains("200.0"),
            "{text}"
        );
        assert!(lines[4].starts_with("2 other classes"), "{text}");
        assert!(lines[4].ends_with("15.0%"), "{text}");
        assert!(
            lines[5].starts_with("parse") && lines[5].ends_with("5.0%"),
            "{text}"
        );
        assert!(
            lines[6].starts_with("rules") && lines[6].ends_with("10.0%"),
            "{text}"
        );
        assert_eq!(lines.len(), 7, "{text}");
    }
}
