//! The FIX drop copy: sessions configured with `drop_copy = [accounts]` take no orders and are
//! sent a copy of every ExecutionReport of those accounts, whichever session or connection the
//! orders came from.
//!
//! The copies come from the journal, not from the core thread: a [`DropCopyConn`] follows the
//! journal with a [`JournalTail`] up to the last record the journal thread has acknowledged
//! (written, and durable under `fsync = "always"`), so the core's hot path does nothing for
//! it, no execution can be missed however long the session was away, and the order is the
//! journal's (the core's). Each event is encoded as the order's own session would have been
//! sent it (same OrderID, ExecID, ClOrdID, Account, prices and quantities) and sent through
//! the session like any application message: stored, sequenced, resent on request.
//!
//! Where the session is in the journal (its cursor) is kept in memory across its connections
//! and in `<data_dir>/drop-copy/<session>.cursor` across restarts, written at most once a
//! second and when a connection ends, and only for reports the session store has committed.
//! After a crash the reports since the last write are sent again (new MsgSeqNums, the same
//! ExecIDs): at least once, never lost. A session with no cursor yet starts at the first
//! record the journal holds.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use portcullis_fix::{BeginString, Decoder, SeqNum, UtcTimestamp};
use portcullis_journal::{JournalError, JournalRecord, JournalTail, Seq};
use portcullis_session::transport::{ConnectionApp, ConnectionInfo};
use portcullis_session::Session;
use portcullis_types::{AccountId, Event, EventKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::app::BusinessReject;
use crate::at_rest::KeyringCell;
use crate::metrics::{Protocol, METRICS};
use crate::order_codec::{self, Names, Report};
use crate::pipeline::Pipeline;

/// Journal records read per [`ConnectionApp::write_output`] call, so a session catching up on
/// a long absence never holds its thread for long.
const RECORDS_PER_CALL: usize = 4096;
/// How often a session's cursor is written to its file while reports flow.
const CURSOR_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// BusinessRejectReason(380) = 3 and 4.
const UNSUPPORTED_MESSAGE_TYPE: u64 = 3;
const APPLICATION_NOT_AVAILABLE: u64 = 4;

/// What every drop copy session shares: the journal and how far it is acknowledged.
pub struct DropCopyFeed {
    journal_dir: PathBuf,
    keys: Arc<KeyringCell>,
    acknowledged: watch::Receiver<u64>,
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for DropCopyFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropCopyFeed")
            .field("journal_dir", &self.journal_dir)
            .finish_non_exhaustive()
    }
}

impl DropCopyFeed {
    /// The feed of the journal in `journal_dir` (encrypted under `keys`), read up to
    /// `acknowledged`.
    pub fn new(
        journal_dir: PathBuf,
        keys: Arc<KeyringCell>,
        acknowledged: watch::Receiver<u64>,
        pipeline: Arc<Pipeline>,
    ) -> Arc<Self> {
        Arc::new(DropCopyFeed {
            journal_dir,
            keys,
            acknowledged,
            pipeline,
        })
    }
}

impl DropCopyFeed {
    /// How far the journal thread has acknowledged the journal, and its changes.
    pub fn acknowledged(&self) -> watch::Receiver<u64> {
        self.acknowledged.clone()
    }

    /// The journal after record `after`, read with the current keyring.
    pub fn open_tail(&self, after: u64) -> Result<JournalTail, JournalError> {
        JournalTail::open(&self.journal_dir, &self.keys.current(), Seq(after))
    }
}

/// The accounts a drop copy session copies.
#[derive(Debug, Clone)]
pub enum Copied {
    /// Every account (`drop_copy = ["*"]`).
    All,
    /// These accounts.
    Accounts(Vec<AccountId>),
}

impl Copied {
    fn covers(&self, a: AccountId) -> bool {
        match self {
            Copied::All => true,
            Copied::Accounts(v) => v.contains(&a),
        }
    }
}

/// One configured drop copy session: its accounts and its cursor, across its connections.
#[derive(Debug)]
pub struct DropCopySession {
    /// `FIX.4.4:ISLD->CLEARING`, for logs and metrics.
    name: String,
    copied: Copied,
    /// The last journal record the session has passed on and its store has committed, as
    /// last written to its file (`u64::MAX`: not read from the file yet).
    cursor: AtomicU64,
    /// The last journal record a connection of the session has read (`u64::MAX`: none yet;
    /// the cursor then says where it is).
    position: AtomicU64,
    file: PathBuf,
}

impl DropCopySession {
    /// The session `name` copying `copied`, with its cursor in `file`.
    pub fn new(name: String, copied: Copied, file: PathBuf) -> Arc<Self> {
        Arc::new(DropCopySession {
            name,
            copied,
            cursor: AtomicU64::new(u64::MAX),
            position: AtomicU64::new(u64::MAX),
            file,
        })
    }

    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last journal record the session has read, whether connected or not (`None` if its
    /// cursor file cannot be read).
    pub fn position(&self) -> Option<u64> {
        match self.position.load(Ordering::Acquire) {
            u64::MAX => self.load().ok(),
            p => Some(p),
        }
    }

    /// The cursor: in memory, or from its file (0, the journal's start, if there is none).
    fn load(&self) -> Result<u64, String> {
        let c = self.cursor.load(Ordering::Acquire);
        if c != u64::MAX {
            return Ok(c);
        }
        let c = read_cursor(&self.file)?;
        self.cursor.store(c, Ordering::Release);
        Ok(c)
    }

    /// Keeps `seq` as the cursor, and writes it to its file.
    fn save(&self, seq: u64) {
        self.cursor.store(seq, Ordering::Release);
        if let Err(e) = write_cursor(&self.file, seq) {
            warn!(file = %self.file.display(), error = %e, "cannot write the drop copy cursor (reports since the last write will be sent again after a restart)");
        }
    }
}

/// Reads a cursor file: the journal sequence number in decimal. No file: 0.
fn read_cursor(path: &Path) -> Result<u64, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            format!(
                "{}: not a journal sequence number: {:?}",
                path.display(),
                text.chars().take(40).collect::<String>()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes a cursor file whole or not at all (temporary file, then rename).
fn write_cursor(path: &Path, seq: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("cursor.tmp");
    std::fs::write(&tmp, format!("{seq}\n"))?;
    std::fs::rename(&tmp, path)
}

/// One connection of a drop copy session (the transport's [`ConnectionApp`]).
pub struct DropCopyConn {
    feed: Arc<DropCopyFeed>,
    session: Arc<DropCopySession>,
    name: String,
    conn_id: u64,
    version: BeginString,
    tail: Option<JournalTail>,
    /// The last record acknowledged by the journal thread that this connection has seen.
    acknowledged: watch::Receiver<u64>,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Why the connection must end (the journal cannot be followed).
    failed: Option<String>,
    /// Read up to here, and sent through the session (committed by its store once the step
    /// that sent them ends).
    sent_to: u64,
    /// The last event read (see `write_output`).
    last_event: Option<Event>,
    /// The cursor last written to the file, and when.
    saved: u64,
    saved_at: Instant,
    /// Unsent bytes at which it stops reading the journal until the peer has read: the
    /// listener's [`ListenerConfig::output_pause`](portcullis_session::transport::ListenerConfig::output_pause).
    pause_bytes: usize,
    decoder: Decoder,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for DropCopyConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropCopyConn")
            .field("session", &self.name)
            .field("conn", &self.conn_id)
            .field("sent_to", &self.sent_to)
            .finish_non_exhaustive()
    }
}

impl DropCopyConn {
    /// A connection `conn` of `session` (named `name` in logs).
    pub fn new(
        feed: Arc<DropCopyFeed>,
        session: Arc<DropCopySession>,
        name: String,
        conn: &ConnectionInfo<'_>,
    ) -> Self {
        METRICS.connected(Protocol::Fix, 1);
        let acknowledged = feed.acknowledged.clone();
        DropCopyConn {
            feed,
            session,
            name,
            conn_id: conn.id,
            version: conn.session.begin_string,
            pause_bytes: conn.listener.output_pause(),
            tail: None,
            acknowledged,
            wait: None,
            failed: None,
            sent_to: 0,
            last_event: None,
            saved: 0,
            saved_at: Instant::now(),
            decoder: Decoder::new(),
            scratch: Vec::with_capacity(64),
        }
    }

    /// Opens the journal at the session's cursor. Records compacted away since the session
    /// was last connected cannot be copied any more: it goes on at the first one left, loudly.
    fn open_tail(&mut self) -> Result<(), String> {
        let mut cursor = self.session.load()?;
        let end = *self.acknowledged.borrow();
        if cursor > end {
            // Past the journal's end: the cursor file belongs to another journal (a data dir
            // put together from two), and waiting for its number would copy nothing, silently.
            warn!(
                session = %self.name, cursor, journal_end = end,
                "drop copy: the session's cursor is past the end of the journal (not this journal's); it starts again at the journal's first record"
            );
            cursor = 0;
        }
        let ring = self.feed.keys.current();
        let dir = &self.feed.journal_dir;
        let tail = match JournalTail::open(dir, &ring, Seq(cursor)) {
            Ok(t) => t,
            Err(JournalError::Missing { first, .. }) => {
                warn!(
                    session = %self.name, cursor, first = first.0,
                    "drop copy: the journal no longer holds the records after the session's cursor (compacted while it was away); it goes on at the first record left"
                );
                JournalTail::open(dir, &ring, Seq(first.0.saturating_sub(1)))
                    .map_err(|e| format!("cannot follow the journal: {e}"))?
            }
            Err(e) => return Err(format!("cannot follow the journal: {e}")),
        };
        self.sent_to = tail.position().0;
        self.saved = self.sent_to;
        self.session.position.store(self.sent_to, Ordering::Release);
        self.tail = Some(tail);
        info!(session = %self.name, conn = self.conn_id, from = cursor, "drop copy: following the journal");
        Ok(())
    }

    /// True if the journal has acknowledged records this connection has not read.
    fn behind(&mut self) -> bool {
        let acknowledged = *self.acknowledged.borrow_and_update();
        self.tail.is_some() && self.sent_to < acknowledged
    }

    /// Writes the cursor of what the session store has committed: reports sent in an earlier
    /// step (the transport commits the store at the end of each step).
    fn save_cursor(&mut self, committed: u64, force: bool) {
        if committed != self.saved && (force || self.saved_at.elapsed() >= CURSOR_WRITE_INTERVAL) {
            self.session.save(committed);
            self.saved = committed;
            self.saved_at = Instant::now();
        }
    }
}

impl Drop for DropCopyConn {
    fn drop(&mut self) {
        METRICS.connected(Protocol::Fix, -1);
    }
}

impl ConnectionApp for DropCopyConn {
    fn on_logon(&mut self, _session: &mut Session, _now: UtcTimestamp) {
        if let Err(e) = self.open_tail() {
            warn!(session = %self.name, conn = self.conn_id, error = %e, "drop copy unavailable");
            self.failed = Some("drop copy unavailable".into());
        }
    }

    fn on_message(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        message: &[u8],
    ) {
        METRICS.received(Protocol::Fix);
        let mut decoder = std::mem::take(&mut self.decoder);
        if let Ok(msg) = decoder.decode(message) {
            let (reason, text) = if order_codec::is_order_entry(msg.msg_type()) {
                (
                    APPLICATION_NOT_AVAILABLE,
                    "drop copy session: no order entry",
                )
            } else {
                (UNSUPPORTED_MESSAGE_TYPE, "unsupported message type")
            };
            BusinessReject::of(seq, &msg, reason, text).send(session, now);
        }
        self.decoder = decoder;
    }

    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.failed.is_some() || self.behind() {
                return Poll::Ready(());
            }
            if self.tail.is_none() {
                // Not logged on yet: the Logon opens the tail, and the transport polls again.
                return Poll::Pending;
            }
            // A clone has seen what `behind` just read: it wakes at the next change.
            let wait = self.wait.get_or_insert_with(|| {
                let mut rx = self.acknowledged.clone();
                Box::pin(async move {
                    if rx.changed().await.is_err() {
                        // The journal thread has ended (shutdown): nothing more will come.
                        std::future::pending::<()>().await;
                    }
                })
            });
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => self.wait = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn write_output(&mut self, session: &mut Session, now: UtcTimestamp) -> Result<(), String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        // What earlier steps sent is committed by now.
        self.save_cursor(self.sent_to, false);
        let Some(tail) = self.tail.as_mut() else {
            return Ok(());
        };
        let acknowledged = *self.acknowledged.borrow();
        let p = &self.feed.pipeline;
        let dir = p.directory();
        let names = Names {
            directory: &dir,
            account_names: p.account_names(),
        };
        let v = self.version;
        let start = self.sent_to;
        let mut reopened = false;
        for _ in 0..RECORDS_PER_CALL {
            // Up to the journal thread's acknowledgement, and at the peer's pace.
            if tail.position().0 >= acknowledged || session.unsent_len() >= self.pause_bytes {
                break;
            }
            let (seq, record) = match tail.next_decoded() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                // A segment under a master key rotated since the tail was opened: follow the
                // journal again, from here, with the current keyring.
                Err(_) if !reopened => {
                    reopened = true;
                    let ring = self.feed.keys.current();
                    if let Ok(t) =
                        JournalTail::open(&self.feed.journal_dir, &ring, Seq(self.sent_to))
                    {
                        *tail = t;
                    }
                    continue;
                }
                Err(e) => {
                    warn!(session = %self.name, error = %e, "drop copy: cannot read the journal");
                    // The reports of this call may not be committed: not past them.
                    self.sent_to = start;
                    self.failed = Some("drop copy unavailable".into());
                    return Err("drop copy unavailable".into());
                }
            };
            let JournalRecord::Event(e) = record else {
                continue;
            };
            // The second view of one execution (a cancel or replace from another session is
            // reported to the requester, then to the order's own session, same ExecID): the
            // requester's view was copied.
            let second_view = self.last_event.is_some_and(|p| e.is_second_view_of(&p));
            self.last_event = Some(e);
            let copy = !second_view
                && !matches!(
                e.kind,
                EventKind::CancelRejected { .. }
                    | EventKind::MassCancelDone { .. }
                    | EventKind::Route(_)
            ) && (e.kind != EventKind::Triggered || v == BeginString::Fixt11)
                && self.session.copied.covers(e.account)
                // An event of an account this server no longer lists cannot be named.
                && (e.account.0 as usize) < names.account_names.len()
                && dir.get(e.instrument).is_some();
            if copy {
                let report = Report::Event(&e);
                let scratch = &mut self.scratch;
                match session.send_application(now, report.msg_type(), |enc| {
                    order_codec::encode_report(enc, v, report, &names, scratch)
                }) {
                    Ok(_) => METRICS.sent(Protocol::Fix),
                    Err(err) => {
                        warn!(session = %self.name, error = %err, "drop copy: cannot send a report");
                        self.sent_to = start;
                        return Err("drop copy unavailable".into());
                    }
                }
            }
            self.sent_to = seq.0;
        }
        self.session.position.store(self.sent_to, Ordering::Release);
        Ok(())
    }

    fn close(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        // The store has committed everything the connection sent.
        self.save_cursor(self.sent_to, true);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_read_back_as_written_and_a_bad_file_is_an_error_not_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drop-copy").join("FIX.4.4-A-B.cursor");
        // No file yet: from the journal's start.
        assert_eq!(read_cursor(&file), Ok(0));
        let s = DropCopySession::new("S".into(), Copied::All, file.clone());
        assert_eq!(s.load(), Ok(0));
        s.save(41);
        assert_eq!(read_cursor(&file), Ok(41));
        assert!(!file.with_extension("cursor.tmp").exists());
        // A new session object (a restart) reads it back; in memory it is not read again.
        let s = DropCopySession::new("S".into(), Copied::All, file.clone());
        assert_eq!(s.load(), Ok(41));
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(s.load(), Ok(41));
        let e = DropCopySession::new("S".into(), Copied::All, file.clone())
            .load()
            .unwrap_err();
        assert!(e.contains("not a journal sequence number"), "{e}");
    }

    #[test]
    fn only_the_listed_accounts_are_copied() {
        let some = Copied::Accounts(vec![AccountId(1), AccountId(3)]);
        assert!(some.covers(AccountId(1)) && some.covers(AccountId(3)));
        assert!(!some.covers(AccountId(0)) && !some.covers(AccountId(2)));
        assert!(Copied::All.covers(AccountId(2)));
    }
}
