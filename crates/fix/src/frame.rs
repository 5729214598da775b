//! Splitting a byte stream into FIX messages.
//!
//! A message is `8=<BeginString>␁9=<BodyLength>␁ ... 10=<CheckSum>␁`. [`frame`] looks at the
//! front of a receive buffer and says whether a whole, well-formed message is there, more bytes are
//! needed, or the front is garbled and must be skipped (the FIX rule: garbled messages are ignored
//! and do not consume a sequence number).

/// The field delimiter, SOH.
pub const SOH: u8 = 0x01;

/// Why the front of a buffer is not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Garbled {
    /// The buffer does not start with `8=`.
    #[error("message does not start with BeginString(8)")]
    NoBeginString,
    /// BeginString is not followed by a well-formed BodyLength(9).
    #[error("BodyLength(9) missing or malformed")]
    BadBodyLength,
    /// The bytes at BodyLength do not end in a `10=nnn␁` trailer.
    #[error("BodyLength(9) does not match the position of CheckSum(10)")]
    BodyLengthMismatch,
    /// CheckSum(10) is not three digits or does not match the sum of the bytes.
    #[error("CheckSum(10) is wrong")]
    BadCheckSum,
}

/// The outcome of [`frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of `len` bytes is at the front of the buffer.
    Complete {
        /// Length in bytes, from `8=` to the SOH after the checksum.
        len: usize,
    },
    /// More bytes are needed.
    Incomplete,
    /// The front is not a valid message: drop `skip` bytes (always ≥ 1) and try again.
    Garbled {
        /// Bytes to discard from the front of the buffer.
        skip: usize,
        /// What was wrong.
        reason: Garbled,
    },
    /// BodyLength announces a message larger than the configured maximum. A peer doing this is
    /// either broken or hostile; the session ends the connection rather than read the body.
    Oversized {
        /// The announced total length.
        len: usize,
    },
}

/// Longest accepted BeginString value (`FIXT.1.1`) plus slack for a garbled one.
const MAX_BEGIN_STRING: usize = 16;
/// Maximum BodyLength digits: 9 digits is up to ~1 GB, far above any sane maximum.
const MAX_LEN_DIGITS: usize = 9;
/// `10=nnn␁`
const TRAILER_LEN: usize = 7;

/// Examines the front of `buf` for one FIX message of at most `max_len` bytes.
pub fn frame(buf: &[u8], max_len: usize) -> Frame {
    if buf.is_empty() {
        return Frame::Incomplete;
    }
    // 8=
    let prefix = &buf[..buf.len().min(2)];
    if prefix != &b"8="[..prefix.len()] {
        return Frame::Garbled {
            skip: resync(buf),
            reason: Garbled::NoBeginString,
        };
    }
    let Some(bs_end) = find_soh(buf, 2, MAX_BEGIN_STRING) else {
        return if buf.len() < 2 + MAX_BEGIN_STRING {
            Frame::Incomplete
        } else {
            Frame::Garbled {
                skip: resync(buf),
                reason: Garbled::NoBeginString,
            }
        };
    };
    if bs_end == 2 {
        return Frame::Garbled {
            skip: resync(buf),
            reason: Garbled::NoBeginString,
        };
    }
    // 9=digits␁
    let len_start = bs_end + 1;
    let have = &buf[len_start..];
    let want = b"9=";
    let n = have.len().min(2);
    if have[..n] != want[..n] {
        return Frame::Garbled {
            skip: resync(buf),
            reason: Garbled::BadBodyLength,
        };
    }
    if have.len() < 3 {
        return Frame::Incomplete;
    }
    let mut body_len: usize = 0;
    let mut i = len_start + 2;
    loop {
        let Some(&b) = buf.get(i) else {
            return Frame::Incomplete;
        };
        if b == SOH {
            break;
        }
        if !b.is_ascii_digit() || i - (len_start + 2) >= MAX_LEN_DIGITS {
            return Frame::Garbled {
                skip: resync(buf),
                reason: Garbled::BadBodyLength,
            };
        }
        body_len = body_len * 10 + usize::from(b - b'0');
        i += 1;
    }
    if i == len_start + 2 {
        return Frame::Garbled {
            skip: resync(buf),
            reason: Garbled::BadBodyLength,
        };
    }
    let body_start = i + 1;
    let total = body_start + body_len + TRAILER_LEN;
    if total > max_len {
        return Frame::Oversized { len: total };
    }
    if buf.len() < total {
        return Frame::Incomplete;
    }
    let trailer = &buf[body_start + body_len..total];
    if &trailer[..3] != b"10=" || trailer[6] != SOH {
        return Frame::Garbled {
            skip: resync(buf),
            reason: Garbled::BodyLengthMismatch,
        };
    }
    // The byte before the trailer must end a field.
    if body_len == 0 || buf[body_start + body_len - 1] != SOH {
        return Frame::Garbled {
            skip: resync(buf),
            reason: Garbled::BodyLengthMismatch,
        };
    }
    let digits = &trailer[3..6];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Frame::Garbled {
            skip: total,
            reason: Garbled::BadCheckSum,
        };
    }
    let stated = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    if stated != u32::from(checksum(&buf[..body_start + body_len])) {
        return Frame::Garbled {
            skip: total,
            reason: Garbled::BadCheckSum,
        };
    }
    Frame::Complete { len: total }
}

/// The FIX checksum: sum of all bytes modulo 256.
#[inline]
pub fn checksum(bytes: &[u8]) -> u8 {
    // Summing in u32 lanes lets the compiler vectorise; wrapping is exact modulo 256.
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(1 << 16) {
        sum = sum.wrapping_add(chunk.iter().map(|&b| u32::from(b)).sum::<u32>());
    }
    (sum & 0xff) as u8
}

fn find_soh(buf: &[u8], from: usize, max: usize) -> Option<usize> {
    let end = buf.len().min(from + max + 1);
    buf.get(from..end)?
        .iter()
        .position(|&b| b == SOH)
        .map(|p| from + p)
}

/// Bytes to skip to reach the next plausible message start (`8=FIX` after index 0), keeping a
/// possibly partial start at the end of the buffer.
fn resync(buf: &[u8]) -> usize {
    const START: &[u8] = b"8=FIX";
    if let Some(p) = buf[1..].windows(START.len()).position(|w| w == START) {
        return p + 1;
    }
    // No full start marker: keep the tail that could be the beginning of one.
    let keep_from = (1..buf.len())
        .find(|&i| START.starts_with(&buf[i..]))
        .unwrap_or(buf.len());
    keep_from.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> Vec<u8> {
        let body = body.replace('|', "\x01");
        let mut m = format!("8=FIX.4.4\x019={}\x01{}", body.len(), body).into_bytes();
        let cs = checksum(&m);
        m.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
        m
    }

    #[test]
    fn complete_message_is_framed() {
        let m = msg("35=0|34=2|49=A|56=B|52=20240101-00:00:00|");
        assert_eq!(frame(&m, 4096), Frame::Complete { len: m.len() });
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let m = msg("35=0|34=2|49=A|56=B|52=20240101-00:00:00|");
        for i in 0..m.len() {
            assert_eq!(frame(&m[..i], 4096), Frame::Incomplete, "prefix {i}");
        }
    }

    #[test]
    fn two_messages_in_one_read_are_framed_one_after_the_other() {
        let a = msg("35=0|34=2|");
        let b = msg("35=1|34=3|112=X|");
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        assert_eq!(frame(&buf, 4096), Frame::Complete { len: a.len() });
        assert_eq!(
            frame(&buf[a.len()..], 4096),
            Frame::Complete { len: b.len() }
        );
    }

    #[test]
    fn bad_checksum_skips_the_whole_message() {
        let mut m = msg("35=0|34=2|");
        let n = m.len();
        m[n - 2] = if m[n - 2] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            frame(&m, 4096),
            Frame::Garbled {
                skip: n,
                reason: Garbled::BadCheckSum
            }
        );
    }

    #[test]
    fn wrong_body_length_resyncs_to_next_message() {
        let mut m = msg("35=0|34=2|").into_iter().collect::<Vec<_>>();
        // Corrupt BodyLength: 9=10 -> 9=13
        let s = String::from_utf8(m.clone())
            .unwrap()
            .replacen("9=10", "9=13", 1);
        m = s.into_bytes();
        let good = msg("35=0|34=3|");
        m.extend_from_slice(&good);
        let Frame::Garbled { skip, reason } = frame(&m, 4096) else {
            panic!("expected garbled")
        };
        assert_eq!(reason, Garbled::BodyLengthMismatch);
        assert_eq!(frame(&m[skip..], 4096), Frame::Complete { len: good.len() });
    }

    #[test]
    fn leading_junk_is_skipped() {
        let mut buf = b"junk\x01".to_vec();
        let good = msg("35=0|34=3|");
        buf.extend_from_slice(&good);
        let Frame::Garbled { skip, .. } = frame(&buf, 4096) else {
            panic!()
        };
        assert_eq!(skip, 5);
    }

    #[test]
    fn oversized_message_is_reported_before_reading_the_body() {
        assert_eq!(
            frame(b"8=FIX.4.4\x019=100000\x01", 4096),
            Frame::Oversized {
                len: 19 + 100000 + 7
            }
        );
    }

    #[test]
    fn non_digit_body_length_is_garbled() {
        assert!(matches!(
            frame(b"8=FIX.4.4\x019=1x\x01", 4096),
            Frame::Garbled {
                reason: Garbled::BadBodyLength,
                ..
            }
        ));
    }
}
