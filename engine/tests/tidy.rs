//! Tidy checks over the shipped sources (engine, shards, ctl), in the spirit of
//! TigerBeetle's `tidy.zig`: no `unwrap()` outside tests (a panic on input is a
//! bug; documented `expect`s for invariants are allowed), no `dbg!`, no
//! leftover `todo!`/`unimplemented!`/`FIXME`, no printing from the engine
//! library (it returns facts; the runtime decides what to emit), and the tree
//! is rustfmt-clean.

use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The part of a file before its first test module, with line numbers.
fn shipped_lines(path: &Path) -> Vec<(usize, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.ends_with("_tests.rs") || name == "tests.rs" {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).expect("read source");
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .enumerate()
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

fn violations(dirs: &[&str], banned: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&Path::new(ROOT).join(dir), &mut files);
    }
    assert!(files.len() > 5, "found the sources: {files:?}");
    let mut found = Vec::new();
    for file in files {
        for (n, line) in shipped_lines(&file) {
            let code = line.split("//").next().unwrap_or_default();
            for b in banned {
                let hit = if b.starts_with("FIXME") {
                    line.contains(b)
                } else {
                    code.contains(b)
                };
                if hit {
                    found.push(format!("{}:{n}: `{b}` in: {}", file.display(), line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn no_unwrap_dbg_todo_or_fixme_in_shipped_code() {
    let found = violations(
        &["engine/src", "shards/src", "ctl/src"],
        &[".unwrap()", "dbg!(", "todo!(", "unimplemented!(", "FIXME"],
    );
    assert!(found.is_empty(), "tidy violations:\n{}", found.join("\n"));
}

#[test]
fn engine_library_does_not_print() {
    let found = violations(
        &["engine/src"],
        &["println!(", "eprintln!(", "print!(", "eprint!("],
    );
    assert!(
        found.is_empty(),
        "the engine returns facts, it does not print:\n{}",
        found.join("\n")
    );
}

#[test]
fn tidy_detects_what_it_bans() {
    let dir = std::env::temp_dir().join(format!("mb-tidy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("x.rs");
    std::fs::write(
        &file,
        "fn a() { b.unwrap(); }\n#[cfg(test)]\nmod t { fn c() { d.unwrap(); } }\n",
    )
    .expect("write");
    let lines = shipped_lines(&file);
    assert_eq!(lines.len(), 1, "test module excluded");
    assert!(lines[0].1.contains(".unwrap()"));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn tree_is_rustfmt_clean() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .current_dir(ROOT)
        .args(["fmt", "--all", "--", "--check"])
        .output()
        .expect("cargo fmt runs");
    assert!(
        out.status.success(),
        "run `cargo fmt --all`:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
