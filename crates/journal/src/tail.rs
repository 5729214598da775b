//! Following the journal while it is written: a [`JournalTail`] returns the records after a
//! given sequence number as they become available, for a consumer that must see every record
//! in order (the FIX drop copy), without the writer's lock and without changing any file.
//!
//! The writer appends each batch with one `write` and starts a new segment only once the
//! previous one is complete, so a tail can read what is there: a batch found incomplete is
//! being written and is read again from its start on the next call; a segment is left for the
//! next only once the next exists (the old one then has all its batches).

use std::path::{Path, PathBuf};

use portcullis_auth::MasterKeyring;

use crate::error::{corrupt, JournalError, Result};
use crate::format::list;
use crate::keys::KeySet;
use crate::record::JournalRecord;
use crate::segment::{next_record, BatchRead, Opened, SegmentReader};
use crate::{Seq, JOURNAL_PREFIX};

/// A reader that follows the journal in `dir` as it grows. Each batch is authenticated and
/// its framing checked before any of its records is returned.
pub struct JournalTail {
    dir: PathBuf,
    keys: KeySet,
    seg: Option<Box<SegmentReader>>,
    plain: Vec<u8>,
    rec_at: usize,
    rec_left: u32,
    rec_seq: u64,
    /// The last record returned (or passed over as asked at the open).
    after: u64,
    /// The open segment was read to its end as it was then: look at its length again (once per
    /// call, not per batch, so a catch-up reads its batches with few system calls).
    at_end: bool,
}

impl std::fmt::Debug for JournalTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalTail")
            .field("dir", &self.dir)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Drop for JournalTail {
    fn drop(&mut self) {
        // Decrypted records do not outlive the reader in freed memory.
        zeroize::Zeroize::zeroize(&mut self.plain);
    }
}

impl JournalTail {
    /// A tail of the journal in `dir` returning the records after `after` (`Seq(0)`: from the
    /// first). [`JournalError::Missing`] if records after `after` have been compacted away.
    /// The keyring must hold the keys of the segments to read (after a master-key rotation,
    /// open a new tail with the new keyring).
    pub fn open(dir: impl AsRef<Path>, keyring: &MasterKeyring, after: Seq) -> Result<Self> {
        let mut tail = JournalTail {
            dir: dir.as_ref().to_path_buf(),
            keys: KeySet::from_keyring(keyring)?,
            seg: None,
            plain: Vec::new(),
            rec_at: 0,
            rec_left: 0,
            rec_seq: 0,
            after: after.0,
            at_end: false,
        };
        tail.open_segment()?;
        Ok(tail)
    }

    /// The last record returned.
    pub fn position(&self) -> Seq {
        Seq(self.after)
    }

    /// The next record and its sequence number, or `None` if no further record is complete
    /// yet (call again later). An error (corruption, a missing segment, an unknown key) is
    /// not transient.
    pub fn next_record(&mut self) -> Result<Option<(Seq, &[u8])>> {
        loop {
            if self.rec_left > 0 {
                let mut at = self.rec_at;
                let seq = self.rec_seq;
                // The batch's framing was checked when it was read.
                let Some(len) = next_record(&self.plain, &mut at).map(<[u8]>::len) else {
                    return Err(corrupt(&self.dir, 0, "record framing"));
                };
                let start = at - len;
                self.rec_at = at;
                self.rec_left -= 1;
                self.rec_seq += 1;
                if seq <= self.after {
                    continue;
                }
                self.after = seq;
                return Ok(Some((Seq(seq), &self.plain[start..at])));
            }
            if !self.advance()? {
                return Ok(None);
            }
        }
    }

    /// [`JournalTail::next_record`], decoded.
    pub fn next_decoded(&mut self) -> Result<Option<(Seq, JournalRecord)>> {
        let (seq, decoded) = match self.next_record()? {
            None => return Ok(None),
            Some((seq, payload)) => (seq, JournalRecord::decode(payload)),
        };
        match decoded {
            Ok(r) => Ok(Some((seq, r))),
            Err(e) => Err(corrupt(&self.dir, 0, format!("record seq {seq}: {e}"))),
        }
    }

    /// Reads the next batch; false if none is complete yet.
    fn advance(&mut self) -> Result<bool> {
        if self.seg.is_none() && !self.open_segment()? {
            return Ok(false);
        }
        let mut moved_on = false;
        loop {
            let seg = self.seg.as_mut().expect("a segment is open");
            if std::mem::take(&mut self.at_end) {
                seg.follow()?;
            }
            let read = seg.next_batch(&mut self.plain)?;
            if !matches!(read, BatchRead::Batch { .. }) {
                self.at_end = true;
            }
            match read {
                BatchRead::Batch {
                    first_seq, count, ..
                } => {
                    self.rec_at = 0;
                    self.rec_left = count;
                    self.rec_seq = first_seq;
                    return Ok(true);
                }
                // Being written: read again from its start next time.
                BatchRead::Torn { .. } if !moved_on => return Ok(false),
                BatchRead::Torn { offset, detail } => {
                    return Err(corrupt(&seg.path, offset, detail));
                }
                BatchRead::End => {
                    let first = seg.header.first_seq;
                    let next_seq = seg.next_seq;
                    let newer = list(&self.dir, JOURNAL_PREFIX, ".seg")?
                        .into_iter()
                        .find(|(s, _)| *s > first);
                    let Some((name_seq, path)) = newer else {
                        return Ok(false);
                    };
                    if !moved_on {
                        // A newer segment exists, so this one is complete: read it to its end
                        // once more (its last batch may have come after the read above).
                        moved_on = true;
                        continue;
                    }
                    if name_seq != next_seq {
                        return Err(corrupt(
                            &path,
                            0,
                            format!(
                                "segment starts at seq {name_seq} but the previous segment ends at seq {}: records are missing",
                                next_seq - 1
                            ),
                        ));
                    }
                    self.seg = Some(self.open_reader(&path, name_seq)?);
                    self.at_end = false;
                    moved_on = false;
                }
            }
        }
    }

    /// Opens the segment holding the record after `self.after`; false if there is none yet.
    fn open_segment(&mut self) -> Result<bool> {
        let segments = list(&self.dir, JOURNAL_PREFIX, ".seg")?;
        let want = self.after.saturating_add(1);
        let Some((name_seq, path)) = segments.iter().rev().find(|(s, _)| *s <= want).cloned()
        else {
            return match segments.first() {
                None => Ok(false),
                Some((first, _)) => Err(JournalError::Missing {
                    dir: self.dir.clone(),
                    after: Seq(self.after),
                    first: Seq(*first),
                }),
            };
        };
        self.seg = Some(self.open_reader(&path, name_seq)?);
        self.at_end = false;
        Ok(true)
    }

    fn open_reader(&self, path: &Path, name_seq: u64) -> Result<Box<SegmentReader>> {
        match SegmentReader::open(path, name_seq, JOURNAL_PREFIX, &self.keys, true, None)? {
            Opened::Reader(r) => Ok(r),
            // Segments appear under their name only once their header is durable.
            Opened::TornHeader { detail, .. } => Err(corrupt(path, 0, detail)),
        }
    }
}
