//! The store's clock: the one place Linli reads the wall clock for anything it stores or
//! decides (creation and update times, deadlines, sessions, tokens, passes, the outbox's
//! timers, the audit chain). Tests move it forward with [`Clock::advance`]; production never
//! does. `tests::no_wall_clock_outside_the_clock` fails when a new direct read appears in the
//! store. Process-local timing (an `Instant` for a latency measurement) is not a time of day
//! and may stay where it is.
//!
//! The clock also carries the one time zone (`time_zone`, Asia/Shanghai by default; see
//! [`linli_core::tz`]) in which days begin and end: display, the working-day calendar and
//! deadlines, "this year", the daily check-in, month buckets, Open311's offsets.

use std::sync::{Arc, RwLock};

use linli_core::tz::Zone;

/// Wall-clock time plus an offset that tests can move forward, so deadline and escalation
/// jobs can be driven through days in a test without waiting. Production never changes it.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
    zone: Arc<RwLock<Zone>>,
}

impl Clock {
    /// Milliseconds since the Unix epoch (UTC), as seen by Linli.
    pub fn now_ms(&self) -> i64 {
        linli_core::now_ms() + self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// The time zone days are counted and times shown in.
    pub fn zone(&self) -> Zone {
        *self.zone.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Set the time zone (once at start from the configuration; tests may change it).
    pub fn set_zone(&self, zone: Zone) {
        *self.zone.write().unwrap_or_else(|e| e.into_inner()) = zone;
    }
    /// Today's date (`YYYY-MM-DD`, in the zone), e.g. the default move-in date.
    pub fn today(&self) -> String {
        self.zone()
            .date(self.now_ms())
            .format("%Y-%m-%d")
            .to_string()
    }
    /// Move the clock forward (tests, and `linli` commands that simulate time).
    pub fn advance(&self, ms: i64) {
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Direct reads of the wall clock. `Instant` is not one (process-local timing is allowed),
    /// nor is a UUIDv7 (its time only orders ids).
    const WALL_CLOCK: [&str; 7] = [
        "Utc::now",
        "Local::now",
        "SystemTime::now",
        "UNIX_EPOCH",
        "now_utc",
        "Utc::today",
        "Local::today",
    ];
    /// Files allowed to read the wall clock: the clock itself. Keep this list short.
    const ALLOWED: [&str; 1] = ["clock.rs"];

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// `linli_core::now_ms` (or a bare `now_ms()` imported from it) reads the wall clock;
    /// `self.now_ms()`, `store.now_ms()`, `clock.now_ms()` and `fn now_ms` do not.
    fn bare_now_ms(line: &str) -> bool {
        line.match_indices("now_ms").any(|(i, _)| {
            let before = &line[..i];
            let next = line[i + "now_ms".len()..].chars().next();
            let called_or_imported = next == Some('(') || line.starts_with("use ");
            called_or_imported
                && !before.ends_with('.')
                && !before.ends_with("fn ")
                && !before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
                && !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    }

    /// Every time the store writes or decides on comes from [`super::Clock`], so tests can move
    /// it and one instance never mixes two clocks. A new direct read fails here: use
    /// `self.now_ms()` (or `self.clock`), or pass `now` into a helper that has no store.
    #[test]
    fn no_wall_clock_outside_the_clock() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(files.len() > 20, "the scan sees the sources: {files:?}");
        let mut found = Vec::new();
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy().to_string();
            if ALLOWED.contains(&rel.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if WALL_CLOCK.iter().any(|p| code.contains(p)) || bare_now_ms(code) {
                    found.push(format!("{rel}:{}: {}", n + 1, code));
                }
            }
        }
        assert!(
            found.is_empty(),
            "wall-clock reads outside the store's clock (use self.now_ms()):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_scan_tells_a_wall_clock_read_from_the_store_clock() {
        assert!(bare_now_ms("let now = now_ms();"));
        assert!(bare_now_ms(".bind(linli_core::now_ms())"));
        assert!(bare_now_ms("use linli_core::{AppResult, now_ms};"));
        assert!(!bare_now_ms("let now = self.now_ms();"));
        assert!(!bare_now_ms("pub fn now_ms(&self) -> i64 {"));
        assert!(!bare_now_ms("let t = store.clock.now_ms() + lead_ms;"));
        assert!(!bare_now_ms("let x = sent_now_ms(1);"));
        assert!(!bare_now_ms("pub async fn migrate(&self, now_ms: i64) {"));
        assert!(!bare_now_ms(".bind(now_ms)"));
    }
}
