//! The `[journal]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{JournalError, Result};
use crate::log::LogOptions;

/// When a commit fsyncs.
///
/// In TOML: `fsync = "always"`, `fsync = "never"` or `fsync = { interval_ms = 5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Every commit fsyncs (group commit: one fsync covers every record of the drain), and
    /// acknowledgements wait for it: nothing acknowledged is lost, even on a power loss.
    #[default]
    Always,
    /// A commit fsyncs if this many milliseconds have passed since the last fsync (and
    /// [`crate::JournalWriter::poll`] fsyncs when idle); acknowledgements do not wait, so a
    /// power loss may lose up to that long of acknowledged records (a process crash loses
    /// nothing that was committed: the data is in the page cache).
    IntervalMs(u64),
    /// Never fsync except at segment roll-over, snapshots and shutdown: for benchmarks. A
    /// process crash loses nothing committed; a power loss may lose anything since the last
    /// roll-over.
    Never,
}

/// The journal's settings (`[journal]` in the server config). Unknown keys are an error.
///
/// ```toml
/// [journal]
/// dir = "var/journal"         # segment and snapshot files (created if missing)
/// fsync = "always"            # "always" | "never" | { interval_ms = 5 }
/// segment_bytes = 67108864    # start a new segment file past 64 MiB
/// snapshot_every = 100000     # the server snapshots its state every 100,000 records (0 = never)
/// ```
///
/// Defaults: `fsync = "always"`, because the venue's promise is that nothing acknowledged is
/// ever lost: with `always` an acknowledgement leaves only after its record is fsynced, and
/// group commit makes one fsync cover every record that arrived meanwhile, so throughput
/// stays high while each acknowledgement pays about one fsync of latency. `never` is for
/// benchmarks and `interval_ms` for deployments that prefer latency over the last
/// milliseconds of a power loss. `snapshot_every = 100000` bounds a replay to at most that
/// many records after the latest snapshot (well under the 2 s recovery target for 1M events),
/// and 64 MiB segments keep the tail check at start-up (the last segment is verified in full)
/// short while keeping the file count low.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Directory of the segment and snapshot files.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// When commits fsync.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Segment size that triggers a new segment, in bytes (4 KiB to 4 GiB).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Records between two snapshots of the server's state; 0 disables snapshots.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
}

fn default_dir() -> PathBuf {
    PathBuf::from("var/journal")
}

fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_snapshot_every() -> u64 {
    100_000
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: default_dir(),
            fsync: FsyncPolicy::default(),
            segment_bytes: default_segment_bytes(),
            snapshot_every: default_snapshot_every(),
        }
    }
}

/// Smallest accepted `segment_bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest accepted `segment_bytes`.
pub const MAX_SEGMENT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

impl JournalConfig {
    /// A config for `dir` with the defaults otherwise.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Checks the values' ranges; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if self.dir.as_os_str().is_empty() {
            return Err(JournalError::Config("journal.dir must not be empty".into()));
        }
        if let FsyncPolicy::IntervalMs(ms) = self.fsync {
            if ms == 0 || ms > 60_000 {
                return Err(JournalError::Config(format!(
                    "journal.fsync.interval_ms = {ms}: must be 1 to 60000 (use \"always\" to fsync every commit)"
                )));
            }
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(JournalError::Config(format!(
                "journal.segment_bytes = {}: must be {MIN_SEGMENT_BYTES} to {MAX_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        Ok(())
    }

    /// The writer options of this config.
    pub fn log_options(&self) -> LogOptions {
        LogOptions {
            fsync: self.fsync,
            segment_bytes: self.segment_bytes,
        }
    }
}
