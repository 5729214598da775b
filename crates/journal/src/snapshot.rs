//! Snapshot files: the server's state after a given record, encrypted and authenticated,
//! written atomically.
//!
//! `<prefix>-<seq:020>.snap`, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `PCLSSNP\0` |
//! | 2 | format version, 1 |
//! | 1 + p | prefix length and prefix |
//! | 1 + k | master-key id length and id |
//! | 8 | key check |
//! | 8 | seq: the last record the state includes |
//! | 32 | state hash (the server's) |
//! | 32 | salt, random per file |
//! | 8 | ciphertext length `c` (tag included) |
//! | 4 | CRC-32 of the header bytes above |
//! | c | AES-256-GCM ciphertext of the state, then the 16-byte tag |
//!
//! The key is derived from the master key and the salt for this one file, so the nonce is
//! the constant zero; the associated data is the whole header.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{corrupt, io_err, Result};
use crate::format::{
    crc32, list, snapshot_name, valid_prefix, write_atomic, FORMAT_VERSION, SNAPSHOT_MAGIC, TAG_LEN,
};
use crate::keys::{random, KeySet, MasterRef, Purpose, KEY_CHECK_LEN};
use crate::Seq;

/// A decrypted snapshot.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last record the state includes: replay continues after it.
    pub seq: Seq,
    /// The server's hash of the state, to check a replay against.
    pub state_hash: [u8; 32],
    /// The state, as the server encoded it.
    pub state: Vec<u8>,
    /// The master key it was encrypted under.
    pub key_id: String,
    /// Its file.
    pub path: PathBuf,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seq", &self.seq)
            .field("state_hash", &hex::encode(self.state_hash))
            .field("state_len", &self.state.len())
            .field("key_id", &self.key_id)
            .field("path", &self.path)
            .finish()
    }
}

/// Encrypts and writes a snapshot atomically (temporary file, fsync, rename, directory
/// fsync). Returns its path.
pub(crate) fn write(
    dir: &Path,
    prefix: &str,
    mk: MasterRef<'_>,
    seq: u64,
    state_hash: &[u8; 32],
    state: &[u8],
) -> Result<PathBuf> {
    let mut salt = [0u8; 32];
    random(&mut salt)?;
    let ct_len = state.len() as u64 + TAG_LEN as u64;
    let mut header = Vec::with_capacity(200);
    header.extend_from_slice(SNAPSHOT_MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.push(prefix.len() as u8);
    header.extend_from_slice(prefix.as_bytes());
    header.push(mk.id.len() as u8);
    header.extend_from_slice(mk.id.as_bytes());
    header.extend_from_slice(&mk.check());
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(state_hash);
    header.extend_from_slice(&salt);
    header.extend_from_slice(&ct_len.to_le_bytes());
    let crc = crc32(&header);
    header.extend_from_slice(&crc.to_le_bytes());

    let cipher = mk.file_cipher(Purpose::Snapshot, prefix, &salt, seq);
    let mut body = Vec::with_capacity(state.len() + TAG_LEN);
    body.extend_from_slice(state);
    let path = dir.join(snapshot_name(prefix, seq));
    let tag =
        cipher
            .seal([0u8; 12], &header, &mut body)
            .map_err(|_| crate::JournalError::TooLarge {
                len: state.len(),
                max: 1 << 36,
            })?;
    body.extend_from_slice(&tag);
    write_atomic(&path, &[&header, &body])?;
    Ok(path)
}

/// Reads, authenticates and decrypts the snapshot file `path` (named for `name_seq`).
pub(crate) fn read(path: &Path, name_seq: u64, prefix: &str, keys: &KeySet) -> Result<Snapshot> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let file_len = f.metadata().map_err(io_err(path))?.len();
    let mut head = vec![0u8; (file_len as usize).min(256)];
    f.read_exact(&mut head).map_err(io_err(path))?;
    let mut pos = 0usize;
    macro_rules! take {
        ($n:expr, $what:literal) => {{
            let n = $n;
            if head.len() < pos + n {
                return Err(corrupt(
                    path,
                    pos as u64,
                    concat!("file ends inside the header (", $what, ")"),
                ));
            }
            let s = &head[pos..pos + n];
            pos += n;
            s
        }};
    }
    if take!(8, "magic") != SNAPSHOT_MAGIC {
        return Err(corrupt(path, 0, "not a snapshot file (bad magic)"));
    }
    let version = u16::from_le_bytes(take!(2, "version").try_into().expect("2"));
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            8,
            format!("unsupported format version {version}"),
        ));
    }
    let plen = usize::from(take!(1, "prefix")[0]);
    let p = take!(plen, "prefix");
    if !std::str::from_utf8(p).is_ok_and(|p| valid_prefix(p) && p == prefix) {
        return Err(corrupt(
            path,
            11,
            format!("not a snapshot of the {prefix:?} log"),
        ));
    }
    let klen = usize::from(take!(1, "key id")[0]);
    let key_at = pos as u64;
    let key_id = take!(klen, "key id");
    let key_id = match std::str::from_utf8(key_id) {
        Ok(k) if !k.is_empty() => k.to_owned(),
        _ => return Err(corrupt(path, key_at, "invalid master key id")),
    };
    let check: [u8; KEY_CHECK_LEN] = take!(KEY_CHECK_LEN, "key check").try_into().expect("8");
    let seq_at = pos as u64;
    let seq = u64::from_le_bytes(take!(8, "seq").try_into().expect("8"));
    let state_hash: [u8; 32] = take!(32, "state hash").try_into().expect("32");
    let salt: [u8; 32] = take!(32, "salt").try_into().expect("32");
    let len_at = pos as u64;
    let ct_len = u64::from_le_bytes(take!(8, "length").try_into().expect("8"));
    let crc_at = pos;
    let crc = u32::from_le_bytes(take!(4, "checksum").try_into().expect("4"));
    if crc32(&head[..crc_at]) != crc {
        return Err(corrupt(
            path,
            crc_at as u64,
            "snapshot header checksum mismatch",
        ));
    }
    if seq != name_seq {
        return Err(corrupt(
            path,
            seq_at,
            format!("the header's seq {seq} does not match the file name"),
        ));
    }
    let header_len = pos as u64;
    if ct_len < TAG_LEN as u64 || header_len.checked_add(ct_len) != Some(file_len) {
        return Err(corrupt(
            path,
            len_at,
            format!(
                "the header declares {ct_len} bytes of ciphertext but the file holds {}",
                file_len - header_len
            ),
        ));
    }
    let mk = keys.for_file(path, &key_id, &check)?;
    let mut body = Vec::with_capacity(ct_len as usize);
    body.extend_from_slice(&head[pos..]);
    f.read_to_end(&mut body).map_err(io_err(path))?;
    if body.len() as u64 != ct_len {
        return Err(corrupt(
            path,
            header_len,
            "the file changed while being read",
        ));
    }
    let (ct, tag) = body.split_at_mut(ct_len as usize - TAG_LEN);
    mk.file_cipher(Purpose::Snapshot, prefix, &salt, seq)
        .open([0u8; 12], &head[..header_len as usize], ct, tag)
        .map_err(|_| {
            corrupt(
                path,
                header_len,
                "authentication failed: the snapshot was modified",
            )
        })?;
    body.truncate(ct_len as usize - TAG_LEN);
    Ok(Snapshot {
        seq: Seq(seq),
        state_hash,
        state: body,
        key_id,
        path: path.to_path_buf(),
    })
}

/// The latest snapshot of `prefix` in `dir`, decrypted; `None` if there is none. A damaged
/// latest snapshot is an error (never a silent fall-back to an older one, whose records may
/// have been compacted away).
pub(crate) fn latest(dir: &Path, prefix: &str, keys: &KeySet) -> Result<Option<Snapshot>> {
    match list(dir, prefix, ".snap")?.pop() {
        None => Ok(None),
        Some((seq, path)) => read(&path, seq, prefix, keys).map(Some),
    }
}

/// Deletes the snapshots older than `keep`. Returns how many.
pub(crate) fn remove_older(dir: &Path, prefix: &str, keep: u64) -> Result<usize> {
    let mut n = 0;
    for (seq, path) in list(dir, prefix, ".snap")? {
        if seq < keep {
            fs::remove_file(&path).map_err(io_err(&path))?;
            n += 1;
        }
    }
    Ok(n)
}
