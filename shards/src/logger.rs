//! A minimal `log` backend: one line per record on stderr, level from
//! `MBD_LOG` (`error`, `warn`, `info` (default), `debug`, `trace`). systemd's
//! journal adds timestamps; glommio's own warnings (e.g. buffer registration
//! skipped for lack of memlock) become visible through it.

use std::io::Write;

struct Logger {
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let thread = std::thread::current();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "mbd[{}] {} {}: {}",
            std::process::id(),
            thread.name().unwrap_or("-"),
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Installs the logger (once).
pub fn init() {
    let level = match std::env::var("MBD_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    };
    let logger = Box::leak(Box::new(Logger { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
