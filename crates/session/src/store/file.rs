//! [`FileStore`]: a crash-safe message store, one directory per session.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use portcullis_fix::{SeqNum, UtcTimestamp};

use super::{MessageStore, StoreError};

const MAGIC: [u8; 8] = *b"PCFXSTOR";
const FORMAT_VERSION: u32 = 1;

const LOG_FILE: &str = "store.log";
const TEMP_FILE: &str = "store.log.tmp";
const LOCK_FILE: &str = "store.lock";

/// `[u32 len][u32 crc]` before each record's body.
const RECORD_HEADER_LEN: u64 = 8;
const KIND_HEADER: u8 = 1;
const KIND_SEQS: u8 = 2;
const KIND_MESSAGE: u8 = 3;
const HEADER_PAYLOAD_LEN: usize = 12;
const SEQS_PAYLOAD_LEN: usize = 16;
/// Bytes of a Message record's body before the message itself: kind and seq.
const MESSAGE_PREFIX_LEN: u64 = 1 + 8;

/// Largest record body (kind + payload). A bound keeps a damaged length field from making open
/// allocate gigabytes, and lets such a length be recognised as damage.
const MAX_BODY_LEN: u32 = 16 << 20;

/// The largest outbound message [`FileStore`] stores (16 MiB less the record overhead); far above
/// any sane FIX message size limit.
pub const MAX_STORED_MESSAGE_LEN: usize = MAX_BODY_LEN as usize - MESSAGE_PREFIX_LEN as usize;

/// When [`FileStore`] forces its writes to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// fsync (`sync_data`) after every write: what a call acknowledged survives a power cut.
    #[default]
    Always,
    /// Write to the OS only: what a call acknowledged survives a process crash (even SIGKILL)
    /// but not a power cut or kernel crash. Call [`MessageStore::sync`] for an explicit fsync.
    Never,
}

/// Where a stored message's bytes are in the log.
#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: u64,
    len: u32,
}

/// A durable, crash-safe [`MessageStore`] for one session, kept in its own directory.
///
/// The store holds an exclusive lock on its directory while open: drop it before opening it
/// again.
///
/// # On-disk format
///
/// A session's directory holds:
///
/// - `store.log`: the store. It starts with the 8-byte magic `PCFXSTOR`, followed by records
///   `[u32 len LE][u32 crc32 LE][u8 kind][payload]`, where `len` counts `kind` and `payload` and
///   the CRC-32 covers the same bytes. All integers are little-endian.
///   - kind 1, Header `{u32 format_version, i64 creation_time_nanos}`: always the first record,
///     and only there. A new sequence starts at 1/1.
///   - kind 2, Seqs `{u64 next_sender, u64 next_target}`: written by every `set_*` that changes
///     a number.
///   - kind 3, Message `{u64 seq, bytes}`: an outbound message; it also sets next_sender to
///     `seq + 1`, so the message and the number change in one write.
///
///   The state is the header's followed by every record in order, the last one winning.
/// - `store.log.tmp`: exists only while `reset` or `compact` write a replacement log; left
///   behind by a crash, it is deleted on the next open.
/// - `store.lock`: held with `flock` while the store is open, so two processes (or two opens in
///   one process) never append to the same log.
///
/// # Crash safety
///
/// Each record is assembled in memory and written with one positioned write at the end of the
/// valid log, so a crash leaves at most one partial record, at the end. (No `BufWriter`: every
/// trait call must reach the OS before it returns, and one `pwrite` per record does that with a
/// single syscall.) On open, a record that is short, has an impossible length or fails its
/// checksum is:
/// - a torn tail when no valid record follows it: cut off, reported by
///   [`FileStore::recovered_tail`] and a warning;
/// - corruption when a valid record follows it: [`StoreError::Corrupt`], because cutting there
///   would silently lose acknowledged state (and with it sequence numbers would go backwards).
///
/// A damaged length field can point past the end of the file and so look like a torn tail; the
/// byte-by-byte search for a following valid record is what tells the two apart. It can only err
/// towards `Corrupt` (a torn message whose bytes embed a whole valid record), never towards
/// dropping acknowledged records.
///
/// `reset` and `compact` write a complete new log to `store.log.tmp`, fsync it, rename it over
/// `store.log` and fsync the directory, so a crash leaves either the old or the new store.
pub struct FileStore {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Never read: holding the open file keeps the `flock` on the directory.
    _lock: File,
    sync: SyncPolicy,
    /// Length of the valid log: where the next record goes.
    end: u64,
    sender: SeqNum,
    target: SeqNum,
    created: UtcTimestamp,
    index: BTreeMap<SeqNum, Slot>,
    recovered_tail: Option<u64>,
    /// Set when a write or fsync failed: what is on disk is then unknown, so no further write
    /// may be acknowledged until a reopen recovers from the log (or a reset/compact rewrites it).
    poisoned: bool,
    /// Reused record buffer, so a write allocates nothing in the steady state.
    buf: Vec<u8>,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The index can hold millions of entries: show its size only.
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("sync", &self.sync)
            .field("end", &self.end)
            .field("next_sender", &self.sender)
            .field("next_target", &self.target)
            .field("created", &self.created)
            .field("messages", &self.index.len())
            .field("recovered_tail", &self.recovered_tail)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl FileStore {
    /// Opens (or creates) the store for one session in `dir` (created if missing), recovering
    /// after a crash: a torn record at the end of the log is cut off (see
    /// [`recovered_tail`](Self::recovered_tail)); damage anywhere else is
    /// [`StoreError::Corrupt`]. A new store starts at 1/1 with creation time `now`.
    pub fn open(dir: &Path, now: UtcTimestamp, sync: SyncPolicy) -> Result<FileStore, StoreError> {
        create_dir_durably(dir)?;

        let lock_path = dir.join(LOCK_FILE);
        // The lock file is made on the first open and never removed: its presence means a store
        // was used here before.
        let used_before = lock_path.exists();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if !try_lock_exclusive(&lock).map_err(io_err(&lock_path))? {
            return Err(StoreError::Locked { path: lock_path });
        }

        let path = dir.join(LOG_FILE);
        let temp = dir.join(TEMP_FILE);
        // Only an interrupted reset/compact leaves the temp file, and it had not been renamed,
        // so the log is still the store.
        match fs::remove_file(&temp) {
            Ok(()) => tracing::warn!(
                path = %temp.display(),
                "removed the leftover of an interrupted message store rewrite"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&temp)(e)),
        }

        let (file, recovered) = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => {
                let recovered = recover(&file, &path)?;
                if let Some(dropped) = recovered.tail {
                    // Cut the torn record so the next append does not land after garbage, and
                    // make the cut durable before anything is appended.
                    file.set_len(recovered.end)
                        .and_then(|()| file.sync_all())
                        .map_err(io_err(&path))?;
                    tracing::warn!(
                        path = %path.display(),
                        offset = recovered.end,
                        dropped_bytes = dropped,
                        next_sender = recovered.sender,
                        next_target = recovered.target,
                        "message store: cut a torn or damaged record at the end of the log"
                    );
                }
                (file, recovered)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut w = Rewriter::create(&temp)?;
                w.header(now)?;
                w.seqs(1, 1)?;
                let committed = w.commit(&path, dir)?;
                committed.dir_sync?;
                if used_before {
                    // Either creation was interrupted, or the log was deleted: the numbers start
                    // again at 1, which must not go unnoticed.
                    tracing::warn!(
                        path = %path.display(),
                        "message store directory had no log; started a new sequence at 1"
                    );
                } else {
                    tracing::info!(path = %path.display(), "created a new message store");
                }
                let recovered = Recovered::new(now, committed.len);
                (committed.file, recovered)
            }
            Err(e) => return Err(io_err(&path)(e)),
        };

        Ok(FileStore {
            dir: dir.to_owned(),
            path,
            file,
            _lock: lock,
            sync,
            end: recovered.end,
            sender: recovered.sender,
            target: recovered.target,
            created: recovered.created,
            index: recovered.index,
            recovered_tail: recovered.tail,
            poisoned: false,
            buf: Vec::new(),
        })
    }

    /// A stable directory name for a session, safe on any filesystem, e.g. `FIX.4.4-ISLD-TW`.
    ///
    /// Bytes outside `[A-Za-z0-9._]` are percent-escaped (`%2F`), including `-` inside a value:
    /// `-` only separates the three values, so different sessions never share a name (unescaped,
    /// `A-B`/`C` and `A`/`B-C` would collide). CompIDs differing only in letter case do collide
    /// on case-insensitive filesystems (not the Linux default).
    pub fn session_dir_name(
        begin_string: &str,
        sender_comp_id: &str,
        target_comp_id: &str,
    ) -> String {
        let mut name = String::with_capacity(
            begin_string.len() + sender_comp_id.len() + target_comp_id.len() + 2,
        );
        for (i, part) in [begin_string, sender_comp_id, target_comp_id]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                name.push('-');
            }
            for b in part.bytes() {
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' {
                    name.push(char::from(b));
                } else {
                    name.push('%');
                    name.push(char::from(HEX[usize::from(b >> 4)]));
                    name.push(char::from(HEX[usize::from(b & 0xf)]));
                }
            }
        }
        name
    }

    /// Bytes cut from the end of the log when it was opened (a record torn by a crash, or
    /// damaged), or `None` if the log was intact.
    pub fn recovered_tail(&self) -> Option<u64> {
        self.recovered_tail
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the log keeping only the stored messages and the current sequence numbers, so
    /// it stops growing with every `set_*`. Atomic: a crash leaves the old or the new log.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        let mut w = Rewriter::create(&self.dir.join(TEMP_FILE))?;
        w.header(self.created)?;
        let mut index = BTreeMap::new();
        let mut body = Vec::new();
        for (&seq, slot) in &self.index {
            body.resize(slot.len as usize, 0);
            self.file
                .read_exact_at(&mut body, slot.offset)
                .map_err(io_err(&self.path))?;
            let at = w.record(KIND_MESSAGE, &[&seq.to_le_bytes(), &body])?;
            index.insert(
                seq,
                Slot {
                    offset: at + RECORD_HEADER_LEN + MESSAGE_PREFIX_LEN,
                    len: slot.len,
                },
            );
        }
        w.seqs(self.sender, self.target)?;
        let committed = w.commit(&self.path, &self.dir)?;
        self.install(committed.file, committed.len);
        self.index = index;
        self.check_dir_sync(committed.dir_sync)
    }

    /// Switches to a freshly renamed log. Must happen once the rename is done, whatever else
    /// fails: the old handle's file is no longer the store.
    fn install(&mut self, file: File, len: u64) {
        self.file = file;
        self.end = len;
        // The new log was written whole and fsynced: it is sound again.
        self.poisoned = false;
    }

    fn check_dir_sync(&mut self, dir_sync: Result<(), StoreError>) -> Result<(), StoreError> {
        // Without a durable rename a power cut may bring the old log back; do not build on it.
        if dir_sync.is_err() {
            self.poisoned = true;
        }
        dir_sync
    }

    /// Appends one record at the end of the valid log; returns its offset.
    fn append(&mut self, kind: u8, parts: &[&[u8]]) -> Result<u64, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned {
                path: self.path.clone(),
            });
        }
        self.buf.clear();
        encode_record(&mut self.buf, kind, parts);
        let at = self.end;
        // Positioned at `end` (not O_APPEND) so the log never depends on the file cursor.
        let written = self.file.write_all_at(&self.buf, at).and_then(|()| {
            if self.sync == SyncPolicy::Always {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            self.poisoned = true;
            return Err(io_err(&self.path)(e));
        }
        self.end += self.buf.len() as u64;
        Ok(at)
    }

    fn write_seqs(&mut self, sender: SeqNum, target: SeqNum) -> Result<(), StoreError> {
        self.append(KIND_SEQS, &[&sender.to_le_bytes(), &target.to_le_bytes()])?;
        self.sender = sender;
        self.target = target;
        Ok(())
    }
}

impl MessageStore for FileStore {
    fn next_sender_seq(&self) -> SeqNum {
        self.sender
    }

    fn next_target_seq(&self) -> SeqNum {
        self.target
    }

    fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        if seq == self.sender {
            return Ok(());
        }
        self.write_seqs(seq, self.target)
    }

    fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        if seq == self.target {
            return Ok(());
        }
        self.write_seqs(self.sender, seq)
    }

    fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        if message.len() > MAX_STORED_MESSAGE_LEN {
            return Err(StoreError::MessageTooLarge {
                len: message.len(),
                max: MAX_STORED_MESSAGE_LEN,
            });
        }
        let at = self.append(KIND_MESSAGE, &[&seq.to_le_bytes(), message])?;
        self.index.insert(
            seq,
            Slot {
                offset: at + RECORD_HEADER_LEN + MESSAGE_PREFIX_LEN,
                len: message.len() as u32,
            },
        );
        self.sender = seq.saturating_add(1);
        Ok(())
    }

    fn outbound_range(
        &mut self,
        begin: SeqNum,
        end: SeqNum,
        out: &mut Vec<(SeqNum, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        if begin > end {
            return Ok(());
        }
        for (&seq, slot) in self.index.range(begin..=end) {
            let mut message = vec![0; slot.len as usize];
            self.file
                .read_exact_at(&mut message, slot.offset)
                .map_err(io_err(&self.path))?;
            out.push((seq, message));
        }
        Ok(())
    }

    fn reset(&mut self, now: UtcTimestamp) -> Result<(), StoreError> {
        let mut w = Rewriter::create(&self.dir.join(TEMP_FILE))?;
        w.header(now)?;
        w.seqs(1, 1)?;
        let committed = w.commit(&self.path, &self.dir)?;
        self.install(committed.file, committed.len);
        self.index.clear();
        self.sender = 1;
        self.target = 1;
        self.created = now;
        self.check_dir_sync(committed.dir_sync)
    }

    fn creation_time(&self) -> UtcTimestamp {
        self.created
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned {
                path: self.path.clone(),
            });
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: state unknown.
            self.poisoned = true;
            return Err(io_err(&self.path)(e));
        }
        Ok(())
    }

    /// Every write fsyncs under [`SyncPolicy::Always`].
    fn may_wait_for_disk(&self) -> bool {
        self.sync == SyncPolicy::Always
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn io_err(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Appends `[len][crc][kind][parts...]` to `out`.
fn encode_record(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    let start = out.len();
    let body_len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    debug_assert!(body_len <= MAX_BODY_LEN as usize);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    for part in parts {
        out.extend_from_slice(part);
    }
    let crc = crc32fast::hash(&out[start + RECORD_HEADER_LEN as usize..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn is_known_kind(kind: u8) -> bool {
    matches!(kind, KIND_HEADER | KIND_SEQS | KIND_MESSAGE)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Creates `dir` and fsyncs the parent of every directory it had to create, so a store made
/// durable inside it cannot vanish with its directory on a power cut.
fn create_dir_durably(dir: &Path) -> Result<(), StoreError> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_owned)
        .collect();
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    for created in &missing {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` if someone else holds the lock.
fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Writes a complete replacement log to the temp file, then renames it over the log.
struct Rewriter {
    temp: PathBuf,
    /// `None` once committed; a dropped uncommitted rewriter deletes its temp file.
    out: Option<BufWriter<File>>,
    pos: u64,
    buf: Vec<u8>,
}

/// A replacement log now in place.
struct Committed {
    file: File,
    len: u64,
    /// Whether the rename was made durable; the caller must switch to `file` either way.
    dir_sync: Result<(), StoreError>,
}

impl Rewriter {
    fn create(temp: &Path) -> Result<Rewriter, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(temp)
            .map_err(io_err(temp))?;
        let mut w = Rewriter {
            temp: temp.to_owned(),
            // Buffering is safe here: nothing is acknowledged before the fsync and rename.
            out: Some(BufWriter::with_capacity(256 << 10, file)),
            pos: 0,
            buf: Vec::new(),
        };
        w.write(&MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let out = self.out.as_mut().expect("not committed");
        out.write_all(bytes).map_err(io_err(&self.temp))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Writes one record; returns its offset.
    fn record(&mut self, kind: u8, parts: &[&[u8]]) -> Result<u64, StoreError> {
        let at = self.pos;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_record(&mut buf, kind, parts);
        let r = self.write(&buf);
        self.buf = buf;
        r.map(|()| at)
    }

    fn header(&mut self, created: UtcTimestamp) -> Result<u64, StoreError> {
        self.record(
            KIND_HEADER,
            &[
                &FORMAT_VERSION.to_le_bytes(),
                &created.nanos().to_le_bytes(),
            ],
        )
    }

    fn seqs(&mut self, sender: SeqNum, target: SeqNum) -> Result<u64, StoreError> {
        self.record(KIND_SEQS, &[&sender.to_le_bytes(), &target.to_le_bytes()])
    }

    /// Flushes and fsyncs the temp file, renames it to `log` and fsyncs `dir`.
    fn commit(mut self, log: &Path, dir: &Path) -> Result<Committed, StoreError> {
        let out = self.out.take().expect("not committed");
        let file = match out.into_inner() {
            Ok(file) => file,
            Err(e) => return Err(self.fail(e.into_error())),
        };
        if let Err(e) = file.sync_all() {
            return Err(self.fail(e));
        }
        if let Err(e) = fs::rename(&self.temp, log) {
            return Err(self.fail(e));
        }
        Ok(Committed {
            file,
            len: self.pos,
            dir_sync: sync_dir(dir),
        })
    }

    fn fail(&self, e: io::Error) -> StoreError {
        let _ = fs::remove_file(&self.temp);
        io_err(&self.temp)(e)
    }
}

impl Drop for Rewriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Abandoned after an error: the log is untouched, the temp file is garbage.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The state read back from a log.
struct Recovered {
    end: u64,
    sender: SeqNum,
    target: SeqNum,
    created: UtcTimestamp,
    index: BTreeMap<SeqNum, Slot>,
    tail: Option<u64>,
}

impl Recovered {
    fn new(created: UtcTimestamp, end: u64) -> Self {
        Recovered {
            end,
            sender: 1,
            target: 1,
            created,
            index: BTreeMap::new(),
            tail: None,
        }
    }

    /// Applies one valid record (`body` = kind + payload) found at `at`.
    fn apply(&mut self, at: u64, body: &[u8]) -> Result<(), String> {
        let payload = &body[1..];
        match body[0] {
            KIND_SEQS => {
                if payload.len() != SEQS_PAYLOAD_LEN {
                    return Err(format!("Seqs record of {} bytes", payload.len()));
                }
                self.sender = u64_at(payload, 0);
                self.target = u64_at(payload, 8);
            }
            KIND_MESSAGE => {
                if payload.len() < 8 {
                    return Err(format!("Message record of {} bytes", payload.len()));
                }
                let seq = u64_at(payload, 0);
                self.index.insert(
                    seq,
                    Slot {
                        offset: at + RECORD_HEADER_LEN + MESSAGE_PREFIX_LEN,
                        len: (payload.len() - 8) as u32,
                    },
                );
                self.sender = seq.saturating_add(1);
            }
            KIND_HEADER => return Err("a second Header record".into()),
            kind => return Err(format!("unknown record kind {kind}")),
        }
        Ok(())
    }
}

/// What [`read_next`] found.
enum Next {
    /// The end of the file, exactly at a record boundary.
    End,
    /// A whole record with a good checksum; its body is in the caller's buffer.
    Record,
    /// A record that is short, impossible or fails its checksum.
    Bad(String),
}

/// Reads the record at `pos` (the reader's position) into `body`.
fn read_next(
    reader: &mut impl Read,
    pos: u64,
    file_len: u64,
    body: &mut Vec<u8>,
) -> io::Result<Next> {
    let remaining = file_len - pos;
    if remaining == 0 {
        return Ok(Next::End);
    }
    if remaining < RECORD_HEADER_LEN {
        return Ok(Next::Bad(format!(
            "{remaining} bytes, too few for a record header"
        )));
    }
    let mut header = [0u8; RECORD_HEADER_LEN as usize];
    reader.read_exact(&mut header)?;
    let len = u32_at(&header, 0);
    let crc = u32_at(&header, 4);
    if len == 0 || len > MAX_BODY_LEN {
        return Ok(Next::Bad(format!("impossible record length {len}")));
    }
    if u64::from(len) > remaining - RECORD_HEADER_LEN {
        return Ok(Next::Bad(format!(
            "record of {len} bytes runs past the end of the file"
        )));
    }
    body.resize(len as usize, 0);
    reader.read_exact(body)?;
    if crc32fast::hash(body) != crc {
        return Ok(Next::Bad("checksum mismatch".into()));
    }
    Ok(Next::Record)
}

/// Reads the whole log, checking every record.
fn recover(file: &File, path: &Path) -> Result<Recovered, StoreError> {
    let io = io_err(path);
    let corrupt = |offset: u64, detail: String| StoreError::Corrupt {
        path: path.to_owned(),
        offset,
        detail,
    };
    let file_len = file.metadata().map_err(&io)?.len();
    if file_len < MAGIC.len() as u64 {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            detail: format!("only {file_len} bytes long"),
        });
    }
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut magic = [0u8; MAGIC.len()];
    reader.read_exact(&mut magic).map_err(&io)?;
    if magic != MAGIC {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            detail: "bad magic".into(),
        });
    }

    // The log is only ever created whole (write, fsync, rename), so its header is never torn:
    // a bad one is damage.
    let mut pos = MAGIC.len() as u64;
    let mut body = Vec::new();
    match read_next(&mut reader, pos, file_len, &mut body).map_err(&io)? {
        Next::Record => {}
        Next::End => return Err(corrupt(pos, "no Header record".into())),
        Next::Bad(why) => return Err(corrupt(pos, format!("Header record: {why}"))),
    }
    if body[0] != KIND_HEADER || body.len() != 1 + HEADER_PAYLOAD_LEN {
        return Err(corrupt(pos, "the first record is not a Header".into()));
    }
    let version = u32_at(&body, 1);
    if version != FORMAT_VERSION {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            detail: format!("format version {version}; this build reads {FORMAT_VERSION}"),
        });
    }
    let created =
        UtcTimestamp::from_nanos(i64::from_le_bytes(body[5..13].try_into().expect("8 bytes")));
    pos += RECORD_HEADER_LEN + body.len() as u64;

    let mut state = Recovered::new(created, pos);
    loop {
        match read_next(&mut reader, pos, file_len, &mut body).map_err(&io)? {
            Next::End => break,
            Next::Record => {
                state.apply(pos, &body).map_err(|d| corrupt(pos, d))?;
                pos += RECORD_HEADER_LEN + body.len() as u64;
            }
            Next::Bad(why) => {
                if let Some(next) = find_valid_record(file, pos + 1, file_len).map_err(&io)? {
                    return Err(corrupt(
                        pos,
                        format!("{why}, yet a valid record follows at byte {next}"),
                    ));
                }
                state.tail = Some(file_len - pos);
                break;
            }
        }
    }
    state.end = pos;
    Ok(state)
}

/// The first offset at or after `from` where a whole record of a known kind with a good
/// checksum starts, if any. Only runs after a bad record, over what follows it: usually less
/// than one record (a torn tail), or up to the next intact record (damage).
fn find_valid_record(file: &File, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    const WINDOW: usize = 64 << 10;
    let header_len = RECORD_HEADER_LEN as usize;
    // Each window also holds the header of a record starting at its last position.
    let mut window = vec![0u8; WINDOW + header_len];
    let mut scratch = Vec::new();
    let mut base = from;
    while base < file_len {
        let n = (window.len() as u64).min(file_len - base) as usize;
        file.read_exact_at(&mut window[..n], base)?;
        for i in 0..WINDOW.min(n) {
            if i + header_len >= n {
                break; // not even a header and one body byte left
            }
            let at = base + i as u64;
            let len = u32_at(&window, i);
            if len == 0 || len > MAX_BODY_LEN || at + RECORD_HEADER_LEN + u64::from(len) > file_len
            {
                continue;
            }
            let start = i + header_len;
            if !is_known_kind(window[start]) {
                continue;
            }
            let end = start + len as usize;
            let body = if end <= n {
                &window[start..end]
            } else {
                scratch.resize(len as usize, 0);
                file.read_exact_at(&mut scratch, at + RECORD_HEADER_LEN)?;
                &scratch[..]
            };
            if crc32fast::hash(body) == u32_at(&window, i + 4) {
                return Ok(Some(at));
            }
        }
        base += WINDOW as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
