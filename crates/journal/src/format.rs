//! The byte layout of segment headers and batch headers, file names, and the small file-system
//! helpers (directory fsync, listing, the directory lock) the rest of the crate builds on.
//! Every integer is little-endian.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io_err, JournalError, Result};
use crate::keys::KEY_CHECK_LEN;

/// Magic of a segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"PCLSLOG\0";
/// Magic of a snapshot file.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"PCLSSNP\0";
/// Version of the segment and snapshot formats.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Longest file name prefix (`journal`, `fixstore`, `audit`...).
pub(crate) const MAX_PREFIX_LEN: usize = 32;
/// Longest master-key id (as the auth crate allows).
pub(crate) const MAX_KEY_ID_LEN: usize = 32;
/// Longest segment header: magic, version, prefix, key id, key check, number, first seq, salt,
/// crc.
pub(crate) const MAX_SEGMENT_HEADER: usize =
    8 + 2 + 1 + MAX_PREFIX_LEN + 1 + MAX_KEY_ID_LEN + KEY_CHECK_LEN + 4 + 8 + 32 + 4;
/// Length of a batch header: len, first seq, count, batch number, nonce, crc.
pub(crate) const BATCH_HEADER: usize = 4 + 8 + 4 + 8 + 12 + 4;
/// The part of the batch header covered by its CRC and by the GCM associated data.
pub(crate) const BATCH_HEADER_SIGNED: usize = BATCH_HEADER - 4;
/// GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Length of a record's frame header: payload length and CRC-32.
pub(crate) const RECORD_HEADER: usize = 8;
/// Largest record payload.
pub(crate) const MAX_RECORD: usize = 16 * 1024 * 1024;
/// Largest batch plaintext a reader accepts (a writer seals far earlier, at
/// [`BATCH_SEAL_AT`]); bounds what a damaged length field can make a reader allocate.
pub(crate) const MAX_BATCH_PLAINTEXT: usize = 64 * 1024 * 1024;
/// A writer seals its batch once the plaintext reaches this size, without waiting for the
/// commit, so memory stays bounded whatever the drain size.
pub(crate) const BATCH_SEAL_AT: usize = 1024 * 1024;
/// Most batches under one segment key. Each segment has its own key and nonces count batches,
/// so this is the per-key invocation limit of GCM; a writer rolls to a new segment (new key)
/// before reaching it. 2^32 follows NIST SP 800-38D's bound for random-nonce use, far below
/// the 2^64 the deterministic construction would allow.
pub(crate) const MAX_BATCHES_PER_SEGMENT: u64 = 1 << 32;

/// CRC-32 (IEEE) of `bytes`.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// True for a prefix usable in file names: 1 to 32 of `a-z 0-9 _`.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    (1..=MAX_PREFIX_LEN).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if valid_prefix(prefix) {
        Ok(())
    } else {
        Err(JournalError::Config(format!(
            "log prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} characters of a-z, 0-9, '_'"
        )))
    }
}

fn valid_key_id(id: &[u8]) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The header at the start of every segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) prefix: String,
    pub(crate) key_id: String,
    pub(crate) key_check: [u8; KEY_CHECK_LEN],
    pub(crate) number: u32,
    pub(crate) first_seq: u64,
    pub(crate) salt: [u8; 32],
}

/// What the start of a segment file holds.
#[derive(Debug)]
pub(crate) enum HeaderParse {
    /// A valid header of this many bytes.
    Ok(SegmentHeader, usize),
    /// The file ends inside the header (everything present is consistent with one).
    Incomplete,
    /// Not a valid header: the offset of the bad field, and why.
    Invalid(u64, String),
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_SEGMENT_HEADER);
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(self.prefix.len() as u8);
        out.extend_from_slice(self.prefix.as_bytes());
        out.push(self.key_id.len() as u8);
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.key_check);
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.salt);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the header from the first bytes of a file (all of them, or at least
    /// [`MAX_SEGMENT_HEADER`]).
    pub(crate) fn parse(b: &[u8]) -> HeaderParse {
        let mut pos = 0usize;
        // Takes n bytes or reports the header incomplete.
        macro_rules! take {
            ($n:expr) => {{
                let n = $n;
                if b.len() < pos + n {
                    return HeaderParse::Incomplete;
                }
                let s = &b[pos..pos + n];
                pos += n;
                s
            }};
        }
        let magic_len = SEGMENT_MAGIC.len().min(b.len());
        if b[..magic_len] != SEGMENT_MAGIC[..magic_len] {
            return HeaderParse::Invalid(0, "not a segment file (bad magic)".into());
        }
        take!(8);
        let version = u16::from_le_bytes(take!(2).try_into().expect("2 bytes"));
        if version != FORMAT_VERSION {
            return HeaderParse::Invalid(8, format!("unsupported format version {version}"));
        }
        let at = pos as u64;
        let plen = usize::from(take!(1)[0]);
        if plen == 0 || plen > MAX_PREFIX_LEN {
            return HeaderParse::Invalid(at, format!("invalid prefix length {plen}"));
        }
        let prefix = take!(plen);
        let prefix = match std::str::from_utf8(prefix) {
            Ok(p) if valid_prefix(p) => p.to_owned(),
            _ => return HeaderParse::Invalid(at + 1, "invalid prefix".into()),
        };
        let at = pos as u64;
        let klen = usize::from(take!(1)[0]);
        if klen == 0 || klen > MAX_KEY_ID_LEN {
            return HeaderParse::Invalid(at, format!("invalid key id length {klen}"));
        }
        let key_id = take!(klen);
        if !valid_key_id(key_id) {
            return HeaderParse::Invalid(at + 1, "invalid master key id".into());
        }
        let key_id = String::from_utf8_lossy(key_id).into_owned();
        let key_check: [u8; KEY_CHECK_LEN] = take!(KEY_CHECK_LEN).try_into().expect("8 bytes");
        let number = u32::from_le_bytes(take!(4).try_into().expect("4 bytes"));
        let first_seq = u64::from_le_bytes(take!(8).try_into().expect("8 bytes"));
        let salt: [u8; 32] = take!(32).try_into().expect("32 bytes");
        let crc_at = pos;
        let crc = u32::from_le_bytes(take!(4).try_into().expect("4 bytes"));
        if crc32(&b[..crc_at]) != crc {
            return HeaderParse::Invalid(crc_at as u64, "segment header checksum mismatch".into());
        }
        if first_seq == 0 {
            return HeaderParse::Invalid(crc_at as u64 - 40, "first sequence number is 0".into());
        }
        HeaderParse::Ok(
            SegmentHeader {
                prefix,
                key_id,
                key_check,
                number,
                first_seq,
                salt,
            },
            pos,
        )
    }
}

/// SHA-256 of a file header: bound into every batch's associated data, so a batch only
/// authenticates inside the file (prefix, segment number, key, salt) it was written for.
pub(crate) fn header_digest(header: &[u8]) -> [u8; 32] {
    Sha256::digest(header).into()
}

/// The GCM nonce of batch `batch_no` of segment `number`: `number (u32) ‖ batch_no (u64)`.
pub(crate) fn nonce(number: u32, batch_no: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&number.to_le_bytes());
    n[4..].copy_from_slice(&batch_no.to_le_bytes());
    n
}

/// A batch header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// Ciphertext length, tag included.
    pub(crate) ct_len: u32,
    pub(crate) first_seq: u64,
    pub(crate) count: u32,
    pub(crate) batch_no: u64,
    pub(crate) nonce: [u8; 12],
}

impl BatchHeader {
    pub(crate) fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.ct_len.to_le_bytes());
        out[4..12].copy_from_slice(&self.first_seq.to_le_bytes());
        out[12..16].copy_from_slice(&self.count.to_le_bytes());
        out[16..24].copy_from_slice(&self.batch_no.to_le_bytes());
        out[24..36].copy_from_slice(&self.nonce);
        let crc = crc32(&out[..BATCH_HEADER_SIGNED]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses 40 bytes; `None` if the header CRC does not match.
    pub(crate) fn parse(b: &[u8; BATCH_HEADER]) -> Option<BatchHeader> {
        if crc32(&b[..BATCH_HEADER_SIGNED]) != le_u32(b, 36) {
            return None;
        }
        Some(BatchHeader {
            ct_len: le_u32(b, 0),
            first_seq: le_u64(b, 4),
            count: le_u32(b, 12),
            batch_no: le_u64(b, 16),
            nonce: b[24..36].try_into().expect("12 bytes"),
        })
    }
}

/// The associated data of a batch: the file header's digest, then the signed batch header.
pub(crate) fn batch_aad(digest: &[u8; 32], header: &[u8]) -> [u8; 32 + BATCH_HEADER_SIGNED] {
    let mut aad = [0u8; 32 + BATCH_HEADER_SIGNED];
    aad[..32].copy_from_slice(digest);
    aad[32..].copy_from_slice(&header[..BATCH_HEADER_SIGNED]);
    aad
}

// ---------------------------------------------------------------------------------------------
// File names

/// `<prefix>-<first_seq:020>.seg`
pub(crate) fn segment_name(prefix: &str, first_seq: u64) -> String {
    format!("{prefix}-{first_seq:020}.seg")
}

/// `<prefix>-<seq:020>.snap`
pub(crate) fn snapshot_name(prefix: &str, seq: u64) -> String {
    format!("{prefix}-{seq:020}.snap")
}

/// The sequence number in a file name `<prefix>-<20 digits><ext>`.
pub(crate) fn parse_name(name: &str, prefix: &str, ext: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(ext)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The files `<prefix>-<seq>.<ext>` of `dir`, sorted by sequence number.
pub(crate) fn list(dir: &Path, prefix: &str, ext: &str) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_name(name, prefix, ext) {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Leftover temporary files of `prefix` (an interrupted segment creation, snapshot or
/// re-encryption): never the live copy, safe to delete under the lock.
pub(crate) fn temp_files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".tmp") {
            if parse_name(stem, prefix, ".seg").is_some()
                || parse_name(stem, prefix, ".snap").is_some()
            {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The temporary name a file is written under before its atomic rename.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Options creating a new log file: owner read/write only. The contents are ciphertext, but
/// nobody else needs to read or even copy them.
pub(crate) fn create_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// fsync of a directory, so a created, renamed or deleted entry is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes a new file under a temporary name, fsyncs it, renames it over `path` and fsyncs the
/// directory: after a crash, `path` holds either its old contents or all of `bytes`.
pub(crate) fn write_atomic(path: &Path, parts: &[&[u8]]) -> Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    let mut f = create_options().open(&tmp).map_err(io_err(&tmp))?;
    for p in parts {
        f.write_all(p).map_err(io_err(&tmp))?;
    }
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

// ---------------------------------------------------------------------------------------------
// Directory lock

/// An exclusive `flock` on `<dir>/<prefix>.lock`, held while a process appends to or repairs a
/// log, so two writers never interleave and a repair never cuts a batch another process is
/// still writing. Released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path, prefix: &str) -> Result<DirLock> {
        let path = dir.join(format!("{prefix}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a file descriptor this function owns; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(JournalError::Locked {
                        dir: dir.to_path_buf(),
                        prefix: prefix.to_owned(),
                    });
                }
                return Err(io_err(&path)(err));
            }
        }
        Ok(DirLock { _file: file })
    }
}
