//! One segment file: reading and verifying its batches, and writing new ones.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{corrupt, io_err, JournalError, Result};
use crate::format::{
    batch_aad, crc32, header_digest, le_u32, nonce, sync_dir, temp_path, BatchHeader, HeaderParse,
    SegmentHeader, BATCH_HEADER, MAX_BATCH_PLAINTEXT, MAX_RECORD, MAX_SEGMENT_HEADER,
    RECORD_HEADER, TAG_LEN,
};
use crate::keys::{random, FileCipher, KeySet, MasterRef, Purpose};

/// Reads and verifies the batches of one segment, in order.
pub(crate) struct SegmentReader {
    pub(crate) path: PathBuf,
    file: BufReader<File>,
    /// Bytes of the file that belong to the log (a read-only reader leaves a torn tail out).
    end: u64,
    /// Offset of the next batch.
    pub(crate) pos: u64,
    pub(crate) header: SegmentHeader,
    digest: [u8; 32],
    cipher: FileCipher,
    pub(crate) next_batch_no: u64,
    pub(crate) next_seq: u64,
    /// This is the log's last segment: an incomplete (or zero-filled) last batch is a torn
    /// tail, not corruption.
    tail: bool,
}

/// The outcome of opening a segment.
pub(crate) enum Opened {
    Reader(Box<SegmentReader>),
    /// The last segment ends inside its header, or is all zeros: it never held a batch.
    TornHeader {
        len: u64,
        detail: String,
    },
}

/// The outcome of reading one batch.
#[derive(Debug)]
pub(crate) enum BatchRead {
    /// A verified batch; its records are in the plaintext buffer.
    Batch {
        offset: u64,
        first_seq: u64,
        count: u32,
    },
    /// No more batches.
    End,
    /// The log's last batch is incomplete: a write cut by a crash.
    Torn { offset: u64, detail: String },
}

impl SegmentReader {
    /// Opens the segment `path` (named for `name_seq`) of log `prefix`, checking its header and
    /// its master key. `end` limits how much of the file is read.
    pub(crate) fn open(
        path: &Path,
        name_seq: u64,
        prefix: &str,
        keys: &KeySet,
        tail: bool,
        end: Option<u64>,
    ) -> Result<Opened> {
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let end = end.map_or(len, |e| e.min(len));
        let mut file = BufReader::with_capacity(256 * 1024, file);
        let mut head = vec![0u8; (end as usize).min(MAX_SEGMENT_HEADER)];
        file.read_exact(&mut head).map_err(io_err(path))?;
        let (header, header_len) = match SegmentHeader::parse(&head) {
            HeaderParse::Ok(h, n) => (h, n),
            HeaderParse::Incomplete if tail => {
                return Ok(Opened::TornHeader {
                    len,
                    detail: "the file ends inside the segment header".into(),
                })
            }
            HeaderParse::Incomplete => {
                return Err(corrupt(
                    path,
                    head.len() as u64,
                    "the file ends inside the segment header",
                ))
            }
            HeaderParse::Invalid(offset, detail) => {
                if tail && zero_from(&mut file, path, 0, end)? {
                    return Ok(Opened::TornHeader {
                        len,
                        detail: "zero-filled segment".into(),
                    });
                }
                return Err(corrupt(path, offset, detail));
            }
        };
        if header.prefix != prefix {
            return Err(corrupt(
                path,
                11,
                format!(
                    "a segment of the {:?} log, expected the {prefix:?} log",
                    header.prefix
                ),
            ));
        }
        if header.first_seq != name_seq {
            return Err(corrupt(
                path,
                header_len as u64 - 44,
                format!(
                    "the header's first sequence number {} does not match the file name",
                    header.first_seq
                ),
            ));
        }
        let mk = keys.for_file(path, &header.key_id, &header.key_check)?;
        let cipher = mk.file_cipher(
            Purpose::Segment,
            prefix,
            &header.salt,
            u64::from(header.number),
        );
        let digest = header_digest(&head[..header_len]);
        file.seek(SeekFrom::Start(header_len as u64))
            .map_err(io_err(path))?;
        Ok(Opened::Reader(Box::new(SegmentReader {
            path: path.to_path_buf(),
            file,
            end,
            pos: header_len as u64,
            next_seq: header.first_seq,
            header,
            digest,
            cipher,
            next_batch_no: 0,
            tail,
        })))
    }

    /// For a reader following a log that is being written: takes in what was appended to the
    /// file since, and goes back to the start of the next batch (a batch found incomplete is
    /// read again from its start).
    pub(crate) fn follow(&mut self) -> Result<()> {
        let len = self
            .file
            .get_ref()
            .metadata()
            .map_err(io_err(&self.path))?
            .len();
        self.end = len.max(self.pos);
        self.file
            .seek(SeekFrom::Start(self.pos))
            .map_err(io_err(&self.path))?;
        Ok(())
    }

    fn torn_or_corrupt(&self, offset: u64, detail: String) -> Result<BatchRead> {
        if self.tail {
            Ok(BatchRead::Torn { offset, detail })
        } else {
            Err(corrupt(&self.path, offset, detail))
        }
    }

    /// Reads, authenticates and decrypts the next batch into `plain` and checks its record
    /// framing (count, lengths, CRCs), so a returned batch iterates without errors.
    pub(crate) fn next_batch(&mut self, plain: &mut Vec<u8>) -> Result<BatchRead> {
        let off = self.pos;
        let remaining = self.end - off;
        if remaining == 0 {
            return Ok(BatchRead::End);
        }
        if remaining < BATCH_HEADER as u64 {
            return self.torn_or_corrupt(
                off,
                format!("the file ends {remaining} bytes into a batch header"),
            );
        }
        let mut hb = [0u8; BATCH_HEADER];
        self.file.read_exact(&mut hb).map_err(io_err(&self.path))?;
        let Some(h) = BatchHeader::parse(&hb) else {
            if self.tail && zero_from(&mut self.file, &self.path, off, self.end)? {
                return Ok(BatchRead::Torn {
                    offset: off,
                    detail: "zero-filled tail".into(),
                });
            }
            return Err(corrupt(
                &self.path,
                off,
                format!(
                    "batch {}: batch header checksum mismatch",
                    self.next_batch_no
                ),
            ));
        };
        let ct_len = h.ct_len as usize;
        if !(TAG_LEN + RECORD_HEADER..=MAX_BATCH_PLAINTEXT + TAG_LEN).contains(&ct_len) {
            return Err(corrupt(
                &self.path,
                off,
                format!("invalid batch length {ct_len}"),
            ));
        }
        if (BATCH_HEADER + ct_len) as u64 > remaining {
            return self.torn_or_corrupt(
                off,
                format!(
                    "batch {} of {} bytes runs past the end of the file ({remaining} bytes left)",
                    h.batch_no,
                    BATCH_HEADER + ct_len
                ),
            );
        }
        if h.batch_no != self.next_batch_no {
            return Err(corrupt(
                &self.path,
                off + 16,
                format!(
                    "batch number {} where batch {} was expected: a batch is missing or out of order",
                    h.batch_no, self.next_batch_no
                ),
            ));
        }
        if h.first_seq != self.next_seq {
            return Err(corrupt(
                &self.path,
                off + 4,
                format!(
                    "batch {} starts at seq {}, expected seq {}: records are missing or repeated",
                    h.batch_no, h.first_seq, self.next_seq
                ),
            ));
        }
        if h.count == 0 {
            return Err(corrupt(
                &self.path,
                off + 12,
                format!("batch {} has no records", h.batch_no),
            ));
        }
        if h.nonce != nonce(self.header.number, h.batch_no) {
            return Err(corrupt(
                &self.path,
                off + 24,
                format!("batch {}: nonce does not match its position", h.batch_no),
            ));
        }
        plain.clear();
        plain.resize(ct_len, 0);
        self.file.read_exact(plain).map_err(io_err(&self.path))?;
        let (ct, tag) = plain.split_at_mut(ct_len - TAG_LEN);
        let aad = batch_aad(&self.digest, &hb);
        self.cipher.open(h.nonce, &aad, ct, tag).map_err(|_| {
            corrupt(
                &self.path,
                off,
                format!(
                    "batch {} (seq {}..): authentication failed, the batch was modified",
                    h.batch_no, h.first_seq
                ),
            )
        })?;
        plain.truncate(ct_len - TAG_LEN);
        if let Err((index, at, what)) = check_records(plain, h.count) {
            return Err(corrupt(
                &self.path,
                off,
                format!(
                    "batch {}, record {index} (plaintext byte {at}): {what}",
                    h.batch_no
                ),
            ));
        }
        let Some(next_seq) = h.first_seq.checked_add(u64::from(h.count)) else {
            return Err(corrupt(&self.path, off + 4, "sequence number overflow"));
        };
        self.pos = off + (BATCH_HEADER + ct_len) as u64;
        self.next_batch_no += 1;
        self.next_seq = next_seq;
        Ok(BatchRead::Batch {
            offset: off,
            first_seq: h.first_seq,
            count: h.count,
        })
    }
}

/// True if every byte of the file from `from` to `end` is zero (a region the file system
/// extended but the crash never filled).
fn zero_from(file: &mut BufReader<File>, path: &Path, from: u64, end: u64) -> Result<bool> {
    file.seek(SeekFrom::Start(from)).map_err(io_err(path))?;
    let mut left = end.saturating_sub(from);
    let mut buf = [0u8; 8192];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        file.read_exact(&mut buf[..n]).map_err(io_err(path))?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

/// Checks the framing of `count` records filling `plain` exactly.
fn check_records(plain: &[u8], count: u32) -> Result<(), (u32, usize, &'static str)> {
    let mut at = 0usize;
    for i in 0..count {
        if plain.len() - at < RECORD_HEADER {
            return Err((i, at, "batch ends inside a record header"));
        }
        let len = le_u32(plain, at) as usize;
        let crc = le_u32(plain, at + 4);
        if len > MAX_RECORD || len > plain.len() - at - RECORD_HEADER {
            return Err((i, at, "record length runs past the batch"));
        }
        let payload = &plain[at + RECORD_HEADER..at + RECORD_HEADER + len];
        if crc32(payload) != crc {
            return Err((i, at, "record checksum mismatch"));
        }
        at += RECORD_HEADER + len;
    }
    if at != plain.len() {
        return Err((count, at, "bytes after the batch's last record"));
    }
    Ok(())
}

/// The next record of a checked batch plaintext at `*at`: advances `*at`.
pub(crate) fn next_record<'a>(plain: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = plain.get(*at..)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let payload = rest.get(RECORD_HEADER..RECORD_HEADER + len)?;
    *at += RECORD_HEADER + len;
    Some(payload)
}

/// Writes batches to a new segment.
pub(crate) struct SegmentWriter {
    /// The final path (the file is first written at its temporary path).
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) number: u32,
    pub(crate) key_id: String,
    pub(crate) size: u64,
    pub(crate) next_batch: u64,
    cipher: FileCipher,
    digest: [u8; 32],
    persisted: bool,
    /// File size up to which write-back was started (see [`SegmentWriter::start_writeback`]).
    written_back: u64,
}

/// Bytes written between two write-back starts of a log that does not fsync each commit.
const WRITEBACK_EVERY: u64 = 1 << 20;

impl SegmentWriter {
    /// Creates segment `number` starting at `first_seq` under its temporary name, with a fresh
    /// random salt (hence a fresh file key), and writes its header. Not yet durable: see
    /// [`SegmentWriter::persist`].
    pub(crate) fn create(
        dir: &Path,
        prefix: &str,
        mk: MasterRef<'_>,
        number: u32,
        first_seq: u64,
    ) -> Result<SegmentWriter> {
        let mut salt = [0u8; 32];
        random(&mut salt)?;
        let header = SegmentHeader {
            prefix: prefix.to_owned(),
            key_id: mk.id.to_owned(),
            key_check: mk.check(),
            number,
            first_seq,
            salt,
        };
        let bytes = header.encode();
        let path = dir.join(crate::format::segment_name(prefix, first_seq));
        let tmp = temp_path(&path);
        let mut file = crate::format::create_options()
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(&bytes).map_err(io_err(&tmp))?;
        Ok(SegmentWriter {
            path,
            file,
            number,
            key_id: mk.id.to_owned(),
            size: bytes.len() as u64,
            next_batch: 0,
            cipher: mk.file_cipher(Purpose::Segment, prefix, &salt, u64::from(number)),
            digest: header_digest(&bytes),
            persisted: false,
            written_back: 0,
        })
    }

    /// Makes the file durable under its final name: fsync, rename over any previous file of
    /// that name, fsync the directory. Writing can go on afterwards (same descriptor).
    pub(crate) fn persist(&mut self) -> Result<()> {
        let tmp = temp_path(&self.path);
        self.file.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))?;
        self.persisted = true;
        Ok(())
    }

    /// Seals `buf` (`BATCH_HEADER` reserved bytes, then the framed records) as the next batch
    /// and writes it with one `write`. The plaintext is encrypted in place, so no copy of it
    /// is left in the buffer; `buf` is reset to the reserved header afterwards.
    pub(crate) fn write_batch(
        &mut self,
        buf: &mut Vec<u8>,
        first_seq: u64,
        count: u32,
    ) -> Result<()> {
        let ct_len = buf.len() - BATCH_HEADER + TAG_LEN;
        let h = BatchHeader {
            ct_len: u32::try_from(ct_len).map_err(|_| JournalError::TooLarge {
                len: ct_len,
                max: MAX_BATCH_PLAINTEXT,
            })?,
            first_seq,
            count,
            batch_no: self.next_batch,
            nonce: nonce(self.number, self.next_batch),
        };
        h.write(&mut buf[..BATCH_HEADER]);
        let aad = batch_aad(&self.digest, &buf[..BATCH_HEADER]);
        let tag = self
            .cipher
            .seal(h.nonce, &aad, &mut buf[BATCH_HEADER..])
            .map_err(|_| JournalError::TooLarge {
                len: ct_len,
                max: MAX_BATCH_PLAINTEXT,
            })?;
        buf.extend_from_slice(&tag);
        let written = self.file.write_all(buf);
        buf.truncate(BATCH_HEADER);
        if let Err(e) = written {
            let path = if self.persisted {
                self.path.clone()
            } else {
                temp_path(&self.path)
            };
            return Err(io_err(&path)(e));
        }
        self.size += (BATCH_HEADER + ct_len) as u64;
        self.next_batch += 1;
        Ok(())
    }

    /// For a log that does not fsync each commit: every `WRITEBACK_EVERY` bytes, asks the
    /// kernel to start writing the new pages back, without waiting. The fsync at roll-over
    /// (which keeps torn data out of every segment but the last) then finds little left to
    /// write, instead of stalling its caller on a whole segment of dirty pages.
    pub(crate) fn start_writeback(&mut self) {
        if self.size < self.written_back + WRITEBACK_EVERY {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            let (from, len) = (self.written_back, self.size - self.written_back);
            // SAFETY: sync_file_range takes the descriptor of a file we own (open for the
            // lifetime of `self`) and plain integers; it reads no memory of ours. With only
            // SYNC_FILE_RANGE_WRITE it starts write-back and returns: a hint, whose failure
            // changes nothing the fsync at roll-over does not do anyway.
            #[allow(unsafe_code)]
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    from as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.written_back = self.size;
    }

    /// fdatasync: the batches written so far survive a power loss.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(io_err(&self.path))
    }
}
