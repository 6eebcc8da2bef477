//! Loading the eval policy tree from disk: the policy file, and the list,
//! rule and GeoIP files it names (relative to its directory). The engine
//! compiles; this module only reads files for it.
//!
//! Also the wall clock the shards hand to the engine: Unix milliseconds and
//! the local UTC offset, which the control plane refreshes every minute (it
//! changes twice a year, and `localtime_r` is too slow for every message).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mb_engine::config::Config;
use mb_engine::eval::ratelimit::RateTable;
use mb_engine::eval::{source, PolicyTree};
use mb_engine::filter::content::{self, ContentFilter, FilterSettings};
use mb_engine::filter::matcher::{Backend, DatabaseCache};
use mb_engine::filter::scan::Scanner;
use mb_engine::policy::Policy;

/// The local offset from UTC in minutes, refreshed by the control plane.
static UTC_OFFSET_MINUTES: AtomicI32 = AtomicI32::new(0);

/// Re-reads the local UTC offset (call at start and every minute).
pub fn refresh_utc_offset() {
    UTC_OFFSET_MINUTES.store(crate::sys::utc_offset_minutes(), Ordering::Relaxed);
}

/// Now, as the engine wants it: Unix milliseconds and the local UTC offset.
pub fn now() -> (u64, i16) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let offset = UTC_OFFSET_MINUTES.load(Ordering::Relaxed);
    (ms, i16::try_from(offset).unwrap_or(0))
}

/// The files a loaded tree came from, for change detection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// (path, modification time) of the GeoIP database.
    pub geoip: Option<(PathBuf, Option<SystemTime>)>,
}

impl Watched {
    /// Takes the files' current modification times as seen (after a reload
    /// refused them, so a broken file is not retried until it changes again).
    pub fn mark_seen(&mut self) {
        if let Some((path, mtime)) = &mut self.geoip {
            *mtime = modified(path);
        }
    }

    /// Whether a watched file changed since it was loaded.
    pub fn changed(&self) -> bool {
        self.geoip
            .as_ref()
            .is_some_and(|(path, mtime)| modified(path) != *mtime)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads and compiles the policy tree named by `eval.policy`, if any. Every
/// problem of every file is in the error, one per line.
pub fn load_tree(config: &Config) -> Result<(Option<Arc<PolicyTree>>, Watched), String> {
    let Some(path) = &config.eval.policy else {
        return Ok((None, Watched::default()));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read policy file {}: {e}", path.display()))?;
    let shown = path.display().to_string();
    let show = |diagnostics: Vec<mb_engine::eval::FileDiagnostic>| {
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let parsed = source::parse(&shown, &text).map_err(show)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |name: &str| {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let mut read = |name: &str| std::fs::read(resolve(name)).map_err(|e| e.to_string());
    let tree = PolicyTree::compile(&parsed, &mut read).map_err(show)?;
    let watched = Watched {
        geoip: parsed.geoip_database.as_deref().map(|name| {
            let p = resolve(name);
            let mtime = modified(&p);
            (p, mtime)
        }),
    };
    Ok((Some(Arc::new(tree)), watched))
}

/// A policy snapshot from a checked config: `[policy]`, the tree and the
/// content filter.
pub fn build_policy(
    config: &Config,
    generation: u64,
    table: &Arc<RateTable>,
) -> Result<(Arc<Policy>, Watched), String> {
    let (tree, watched) = load_tree(config)?;
    let filter = load_filter(config)?;
    let policy =
        Policy::with_eval(&config.policy, generation, tree, Arc::clone(table)).with_filter(filter);
    Ok((Arc::new(policy), watched))
}

/// What a compiled scanner was built from: every rule file with its size
/// and modification time. A reload with the same fingerprint reuses the
/// compiled scanner (compiling the stock rule set takes seconds; a GeoIP
/// refresh or a threshold change must not pay that); the `[filter]`
/// settings around it are applied afresh every time, which is cheap.
#[derive(Debug, Clone, PartialEq)]
struct RulesPrint {
    files: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

/// The last compiled scanner and its rule set's `required_score`, kept by
/// the control thread for reuse.
static LAST_SCANNER: Mutex<Option<(RulesPrint, Arc<Scanner>, f32)>> = Mutex::new(None);

/// Where the content filter's compiled Hyperscan databases are kept between
/// runs (`<state_dir>/filter-cache`; set once at start). Unset: no cache.
pub static FILTER_CACHE_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// First bytes of a cache file: the format, then the key's length (u64 LE),
/// the key (the exact Hyperscan input) and the serialized database.
const CACHE_MAGIC: &[u8] = b"mailborder hsdb 1\n";

/// The stored databases of `dir` (a missing or unreadable directory, or a
/// damaged file, is an empty cache or a miss: it only costs a compile).
fn load_cache(dir: &Path) -> DatabaseCache {
    let mut cache = DatabaseCache::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return cache;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("hsdb") {
            continue;
        }
        let Some((key, db)) = std::fs::read(&path)
            .ok()
            .and_then(|b| decode_cache_file(&b))
        else {
            log::warn!("filter cache: {} is damaged; ignored", path.display());
            continue;
        };
        cache.insert(key, db);
    }
    cache
}

fn decode_cache_file(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let rest = bytes.strip_prefix(CACHE_MAGIC)?;
    let (len, rest) = rest.split_at_checked(8)?;
    let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
    let key = rest.get(..len)?;
    Some((String::from_utf8(key.to_vec()).ok()?, rest[len..].to_vec()))
}

fn encode_cache_file(key: &str, db: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CACHE_MAGIC.len() + 8 + key.len() + db.len());
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(db);
    out
}

fn cache_file_name(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{:016x}.hsdb", h.finish())
}

/// Writes the databases `cache` compiled (write then rename, so a crash
/// leaves no half file) and removes the stored ones this rule set no longer
/// uses. Failures are logged; they only cost a compile next time.
fn store_cache(dir: &Path, cache: &DatabaseCache) {
    let added = cache.take_added();
    if !added.is_empty() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            log::warn!("filter cache: cannot create {}: {e}", dir.display());
            return;
        }
    }
    for (key, db) in &added {
        let path = dir.join(cache_file_name(key));
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, encode_cache_file(key, db))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            log::warn!("filter cache: cannot write {}: {e}", path.display());
            let _ = std::fs::remove_file(&tmp);
        }
    }
    let used: std::collections::HashSet<String> =
        cache.used().iter().map(|k| cache_file_name(k)).collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.ends_with(".hsdb") || name.ends_with(".tmp");
        if ours && !used.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The `.cf` files `[filter] rules` names, in SpamAssassin's order.
fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut entries = Vec::with_capacity(paths.len());
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("filter.rules: cannot read {}: {e}", path.display()))?;
        let listing = if meta.is_dir() {
            let dir = std::fs::read_dir(path)
                .map_err(|e| format!("filter.rules: cannot list {}: {e}", path.display()))?;
            Some(dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        } else {
            None
        };
        entries.push((path.clone(), listing));
    }
    let files = content::rule_file_order(entries);
    if files.is_empty() {
        return Err(format!(
            "filter.rules: no *.cf files in {} (Debian: apt-get install spamassassin)",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(files)
}

/// Reads and compiles the SpamAssassin rules `[filter] rules` names, with
/// the `[filter]` settings around them; `None` when it names none.
pub fn load_filter(config: &Config) -> Result<Option<Arc<ContentFilter>>, String> {
    let settings = &config.filter;
    if settings.rules.is_empty() {
        return Ok(None);
    }
    let (scanner, rule_set_required) = load_scanner(&settings.rules)?;
    Ok(Some(Arc::new(ContentFilter::new(
        scanner,
        rule_set_required,
        &FilterSettings::from_config(settings),
    ))))
}

/// The compiled rules of `paths` (reused while the files are unchanged) and
/// the rule set's `required_score`.
fn load_scanner(paths: &[PathBuf]) -> Result<(Arc<Scanner>, f32), String> {
    let files = rule_files(paths)?;
    let print = RulesPrint {
        files: files
            .iter()
            .map(|f| {
                let meta = std::fs::metadata(f).ok();
                let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
                (f.clone(), len, meta.and_then(|m| m.modified().ok()))
            })
            .collect(),
    };
    let mut last = LAST_SCANNER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((seen, scanner, required)) = last.as_ref() {
        if *seen == print {
            return Ok((Arc::clone(scanner), *required));
        }
    }
    let started = std::time::Instant::now();
    let mut texts = Vec::with_capacity(files.len());
    for f in &files {
        let bytes = std::fs::read(f)
            .map_err(|e| format!("filter.rules: cannot read {}: {e}", f.display()))?;
        texts.push((
            f.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    // All cores: at start-up the shards are not serving yet, and a reload
    // that changes rule files is rare and brief (about 10 s for the stock
    // rules on two cores).
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let cache_dir = FILTER_CACHE_DIR.get();
    let cache = cache_dir.map(|d| load_cache(d));
    let (set, scanner) =
        content::compile_rules(&texts, Backend::Hyperscan, threads, cache.as_ref());
    let report = &set.report;
    let [exact, prefiltered, confirm_only, rejected] = scanner.mode_counts();
    log::info!(
        "Content filter: {} rule files, {} rules, {} active, {} skipped, {} diagnostics; \
         patterns: {exact} exact, {prefiltered} prefiltered, {confirm_only} confirm-only, \
         {rejected} rejected, {} also in an ASCII form for ASCII text; compiled in {:.2} s \
         ({} databases from the cache)",
        files.len(),
        report.rules_total,
        scanner.active_rules(),
        report.skipped(),
        report.diagnostics.len(),
        scanner.ascii_forms(),
        started.elapsed().as_secs_f64(),
        cache.as_ref().map_or(0, DatabaseCache::hits)
    );
    if let (Some(dir), Some(cache)) = (cache_dir, &cache) {
        store_cache(dir, cache);
    }
    for d in report.diagnostics.iter().take(20) {
        log::warn!("filter rules: {d}");
    }
    let scanner = Arc::new(scanner);
    *last = Some((print, Arc::clone(&scanner), set.required_score));
    Ok((scanner, set.required_score))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_files_round_trip_and_refuse_damage() {
        let file = encode_cache_file("key\nwith lines", b"\x00db bytes");
        assert_eq!(
            decode_cache_file(&file),
            Some(("key\nwith lines".to_owned(), b"\x00db bytes".to_vec()))
        );
        assert_eq!(
            decode_cache_file(&file[..file.len() - 9 - 6]),
            None,
            "cut in the key"
        );
        assert_eq!(decode_cache_file(b"not a cache file"), None);
        let mut foreign = file.clone();
        foreign[0] ^= 1;
        assert_eq!(decode_cache_file(&foreign), None);
    }

    #[test]
    fn the_cache_directory_keeps_what_the_rules_use() {
        let dir = std::env::temp_dir().join(format!("mb-filter-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rules = [(
            "t.cf".to_owned(),
            "body A /winner/i\nbody B /mon(e)y\\1{2,9}/\nheader C Subject =~ /hello/\n".to_owned(),
        )];
        let first = load_cache(&dir);
        let _ = content::compile_rules(&rules, Backend::Hyperscan, 1, Some(&first));
        store_cache(&dir, &first);
        let stored = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(stored >= 2, "a body and a Subject database: {stored}");
        std::fs::write(dir.join("0000000000000000.hsdb"), b"stale").unwrap_or(());
        let second = load_cache(&dir);
        let _ = content::compile_rules(&rules, Backend::Hyperscan, 1, Some(&second));
        assert_eq!(second.hits(), stored);
        store_cache(&dir, &second);
        let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(
            left, stored,
            "the stale file is removed, the used ones kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
