//! The crate boundaries enforce the architecture: `mb-engine` links no async
//! runtime, no I/O stack and no database client; `mbctl` links neither glommio
//! nor sqlx (nor tokio: it speaks std sockets). Checked on the real dependency
//! graph with `cargo tree`, so a new transitive dependency breaks this test.

use std::process::Command;

fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
        ])
        .arg(package)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let crates: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        crates.iter().any(|c| c == package),
        "{package} itself is listed: {crates:?}"
    );
    crates
}

fn assert_excludes(package: &str, banned: &[&str]) {
    let deps = normal_dependencies(package);
    let found: Vec<&String> = deps
        .iter()
        .filter(|d| banned.contains(&d.as_str()))
        .collect();
    assert!(found.is_empty(), "{package} must not depend on {found:?}");
}

#[test]
fn engine_has_no_runtime_and_no_io() {
    assert_excludes(
        "mb-engine",
        &[
            "glommio",
            "tokio",
            "async-std",
            "smol",
            "mio",
            "io-uring",
            "sqlx",
            "sqlx-core",
            "redis",
            "socket2",
            "futures-lite",
            "flume",
        ],
    );
}

/// `libc` stays out of the engine, with two exceptions: the Hyperscan
/// binding (`hyperscan`, `hyperscan-sys`, `malloc_buf`) uses it for C types
/// and to free Hyperscan's buffers, and the PCRE2 binding (`pcre2`,
/// `pcre2-sys`) for C types. The engine itself (`#![forbid(unsafe_code)]`)
/// must not depend on it directly, nor through any other crate.
#[test]
fn engine_reaches_libc_only_through_the_regex_engine_bindings() {
    // C matching engines, bound for computation only (no I/O): Hyperscan,
    // and PCRE2 (the backtracking confirmation of prefiltered patterns).
    const ALLOWED: [&str; 5] = [
        "hyperscan",
        "hyperscan-sys",
        "malloc_buf",
        "pcre2",
        "pcre2-sys",
    ];
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-i",
            "libc",
            "-p",
            "mb-engine",
        ])
        .args(["--prefix", "depth", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // `-i libc` fails when libc is not in the graph at all: fine
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("did not match"),
            "cargo tree -i libc failed: {err}"
        );
        return;
    }
    let dependents: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix('1'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!dependents.is_empty(), "parsed the inverted tree: {text}");
    let other: Vec<&&str> = dependents.iter().filter(|d| !ALLOWED.contains(d)).collect();
    assert!(
        other.is_empty(),
        "libc reaches mb-engine through {other:?}:\n{text}"
    );
}

#[test]
fn mbctl_links_neither_glommio_nor_sqlx() {
    assert_excludes("mbctl", &["glommio", "sqlx", "sqlx-core", "tokio", "redis"]);
}

#[test]
fn the_check_can_fail() {
    // mbd is supposed to link glommio: if this ever passes the exclusion,
    // the tree parsing above is broken and the two tests prove nothing.
    let deps = normal_dependencies("mb-shards");
    assert!(
        deps.iter().any(|d| d == "glommio"),
        "mb-shards links glommio: {deps:?}"
    );
}
