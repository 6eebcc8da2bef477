//! `sa_report`: loads SpamAssassin `.cf` files with `mb_engine::filter::sa`
//! and prints the load report as Markdown (the tables of
//! `docs/SPAMASSASSIN.md`).
//!
//! ```text
//! sa_report                                   # the stock set in shared/corpus
//! sa_report --dir /usr/share/spamassassin --local /etc/spamassassin/local.cf
//! sa_report --lang de --diagnostics
//! ```
//!
//! Files of `--dir` are read in name order (as SpamAssassin does), then each
//! `--local` file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use mb_engine::filter::sa::{self, Options, Source};

/// Print the SpamAssassin rule-set load report as Markdown.
#[derive(Parser, Debug)]
struct Args {
    /// Directory of `.cf` files (default: the stock set in the shared corpus).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Extra `.cf` files read after the directory.
    #[arg(long)]
    local: Vec<PathBuf>,
    /// Apply `lang xx` lines for this language.
    #[arg(long)]
    lang: Option<String>,
    /// Also print every diagnostic (otherwise the count only).
    #[arg(long)]
    diagnostics: bool,
    /// Print one line per rule (name, kind, status, score, origin) instead.
    #[arg(long)]
    rules: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.dir.unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/rules/spamassassin"
        ))
    });
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cf"))
            .collect(),
        Err(e) => {
            eprintln!("sa_report: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    paths.sort();
    paths.extend(args.local);
    let mut texts = Vec::new();
    for p in &paths {
        match std::fs::read(p) {
            Ok(b) => {
                let name = p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                texts.push((name, sa::decode(&b)));
            }
            Err(e) => {
                eprintln!("sa_report: {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let sources: Vec<Source<'_>> = texts
        .iter()
        .map(|(f, t)| Source { file: f, text: t })
        .collect();
    let options = Options {
        lang: args.lang,
        ..Options::default()
    };
    let start = Instant::now();
    let mut set = sa::load(&sources, &options);
    let elapsed = start.elapsed();
    if args.rules {
        for r in &set.rules {
            let status = match &r.status {
                sa::Status::Active => "active".to_owned(),
                sa::Status::Skipped(why) => format!("skipped:{}", why.label()),
            };
            println!(
                "{}\t{}\t{}\t{}\t{}",
                r.name,
                r.kind.label(),
                status,
                r.score,
                r.origin
            );
        }
        return ExitCode::SUCCESS;
    }
    if !args.diagnostics {
        let n = set.report.diagnostics.len();
        set.report.diagnostics.clear();
        println!("<!-- {n} diagnostics; run with --diagnostics to list them -->\n");
    }
    println!(
        "<!-- loaded from {} in {:.0} ms -->\n",
        dir.display(),
        elapsed.as_secs_f64() * 1000.0
    );
    print!("{}", set.report.to_markdown());
    ExitCode::SUCCESS
}
