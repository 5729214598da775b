//! Security audit events, one JSON object per line.
//!
//! Every line has the same fields, `null` when not applicable:
//!
//! ```json
//! {"time":"2024-01-02T03:04:05.678Z","kind":"logon","key_id":"pk_…","account":"ACC1",
//!  "peer_ip":"203.0.113.9","session":"CLIENT1->PORTCULLIS","outcome":"denied",
//!  "reason":"bad_signature","detail":null}
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::clock::format_rfc3339_ms;

/// Longest text kept in one field of an event (longer attacker-supplied values are cut).
const MAX_FIELD_LEN: usize = 256;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A Logon attempt (FIX) or session.logon (WebSocket).
    Logon,
    /// A per-message signature failure.
    MessageSignature,
    /// A key or a source address was locked out after repeated failures.
    Lockout,
    /// Something unusual: new IP for a key, several IPs at once, a burst of signature failures.
    Anomaly,
    /// A key was created.
    KeyCreated,
    /// A key was revoked.
    KeyRevoked,
    /// The vault was re-encrypted under a new master key.
    MasterKeyRotated,
    /// The server reloaded the vault.
    KeysReloaded,
}

/// Whether the audited action was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed / succeeded.
    Ok,
    /// Refused.
    Denied,
}

/// One audit event. Serialized as one JSON line by [`AuditEvent::to_json_line`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// What kind of event.
    pub kind: AuditKind,
    /// The key id presented or concerned.
    pub key_id: Option<String>,
    /// The key's account, when known.
    pub account: Option<String>,
    /// The peer's address.
    pub peer_ip: Option<IpAddr>,
    /// The session (e.g. `SENDER->TARGET`, or a connection id).
    pub session: Option<String>,
    /// Allowed or refused.
    pub outcome: Outcome,
    /// The precise reason, snake_case (e.g. `bad_signature`, `new_ip`).
    pub reason: Option<String>,
    /// Free text for a human (numbers, limits).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event at `now_ms` with no optional field set.
    pub fn new(kind: AuditKind, outcome: Outcome, now_ms: i64) -> Self {
        Self {
            time: format_rfc3339_ms(now_ms),
            kind,
            key_id: None,
            account: None,
            peer_ip: None,
            session: None,
            outcome,
            reason: None,
            detail: None,
        }
    }

    /// Sets the key id (cut to a bounded length).
    pub fn key_id(mut self, key_id: &str) -> Self {
        self.key_id = Some(bounded(key_id));
        self
    }

    /// Sets the account.
    pub fn account(mut self, account: &str) -> Self {
        self.account = Some(bounded(account));
        self
    }

    /// Sets the peer address.
    pub fn peer_ip(mut self, ip: IpAddr) -> Self {
        self.peer_ip = Some(ip);
        self
    }

    /// Sets the session.
    pub fn session(mut self, session: &str) -> Self {
        self.session = Some(bounded(session));
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(bounded(reason));
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(bounded(&detail.into()));
        self
    }

    /// The event as one line of JSON, with the trailing newline. Control characters in values
    /// are escaped by JSON, so a value cannot forge a line.
    pub fn to_json_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            // Serializing plain strings cannot fail; keep a trace if it ever does.
            format!(r#"{{"kind":"audit_error","detail":{:?}}}"#, e.to_string())
        });
        s.push('\n');
        s
    }
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIELD_LEN {
        return s.to_owned();
    }
    let mut end = MAX_FIELD_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Where audit events go. Implementations must be cheap to call from several threads.
pub trait AuditSink: Send + Sync {
    /// Records one event.
    fn record(&self, event: &AuditEvent) -> io::Result<()>;
}

/// Appends events as JSON lines to a file (`<data_dir>/audit.jsonl`), created mode 0600 if
/// missing. Each line goes out in one `write` on a file opened for append, so lines from
/// several processes (server and CLI) do not interleave.
#[derive(Debug)]
pub struct FileAuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl FileAuditLog {
    /// Opens (or creates) the audit log at `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("audit log {}: {e}", path.display())))?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the file to stable storage.
    pub fn sync(&self) -> io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sync_data()
    }
}

impl AuditSink for FileAuditLog {
    fn record(&self, event: &AuditEvent) -> io::Result<()> {
        let line = event.to_json_line();
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())
    }
}

/// Keeps events in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The events as JSON lines, as a file sink would have written them.
    pub fn lines(&self) -> Vec<String> {
        self.events().iter().map(AuditEvent::to_json_line).collect()
    }

    /// Forgets the events recorded so far.
    pub fn clear(&self) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl AuditSink for MemoryAuditLog {
    fn record(&self, event: &AuditEvent) -> io::Result<()> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_are_json_with_every_field() {
        let e = AuditEvent::new(AuditKind::Logon, Outcome::Denied, 1_704_164_645_678)
            .key_id("pk_1\n{\"forged\":1}")
            .account("ACC1")
            .peer_ip("2001:db8::7".parse().unwrap())
            .session("CLIENT1->PORTCULLIS")
            .reason("bad_signature");
        let line = e.to_json_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let obj = v.as_object().unwrap();
        for f in [
            "time", "kind", "key_id", "account", "peer_ip", "session", "outcome", "reason",
            "detail",
        ] {
            assert!(obj.contains_key(f), "missing {f}: {line}");
        }
        assert_eq!(v["time"], "2024-01-02T03:04:05.678Z");
        assert_eq!(v["kind"], "logon");
        assert_eq!(v["outcome"], "denied");
        assert_eq!(v["peer_ip"], "2001:db8::7");
        assert_eq!(v["detail"], serde_json::Value::Null);
        let back: AuditEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn long_attacker_values_are_cut() {
        let e = AuditEvent::new(AuditKind::Logon, Outcome::Denied, 0).key_id(&"é".repeat(1000));
        assert!(e.key_id.unwrap().len() <= MAX_FIELD_LEN + 3);
    }

    #[test]
    fn file_log_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        {
            let log = FileAuditLog::open(&path).unwrap();
            log.record(&AuditEvent::new(AuditKind::KeyCreated, Outcome::Ok, 0).key_id("pk_1"))
                .unwrap();
        }
        let log = FileAuditLog::open(&path).unwrap();
        log.record(&AuditEvent::new(AuditKind::KeyRevoked, Outcome::Ok, 1).key_id("pk_1"))
            .unwrap();
        log.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, ["\"key_created\"", "\"key_revoked\""]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "audit log must not be group/world readable"
            );
        }
    }
}
