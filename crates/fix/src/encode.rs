//! Encoding FIX messages into a reusable buffer.

use crate::frame::{checksum, SOH};
use crate::time::{TimePrecision, UtcTimestamp};

/// Room kept in front of the body for `8=<BeginString>␁9=<BodyLength>␁`.
const HEADROOM: usize = 40;

/// Builds one message at a time into a buffer it keeps, then fills in BeginString, BodyLength and
/// CheckSum. After warm-up, encoding allocates nothing.
///
/// ```
/// use portcullis_fix::Encoder;
/// let mut enc = Encoder::new();
/// enc.start(b"FIX.4.4", b"0");
/// enc.uint(34, 2);
/// let msg = enc.finish();
/// assert!(msg.starts_with(b"8=FIX.4.4\x019=10\x0135=0\x0134=2\x01"));
/// ```
#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
    begin: &'static [u8],
    begin_owned: Vec<u8>,
    start: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(512),
            begin: b"",
            begin_owned: Vec::with_capacity(16),
            start: HEADROOM,
        }
    }

    /// Starts a message with the given BeginString and MsgType(35).
    pub fn start(&mut self, begin_string: &[u8], msg_type: &[u8]) -> &mut Self {
        self.buf.clear();
        self.buf.resize(HEADROOM, 0);
        self.begin = b"";
        self.begin_owned.clear();
        self.begin_owned.extend_from_slice(begin_string);
        self.start = HEADROOM;
        self.str(crate::tag::MSG_TYPE, msg_type)
    }

    fn tag(&mut self, tag: u32) {
        let mut b = itoa::Buffer::new();
        self.buf.extend_from_slice(b.format(tag).as_bytes());
        self.buf.push(b'=');
    }

    /// Appends a field with a raw byte value (the caller guarantees it has no SOH unless the
    /// field is a data field).
    pub fn str(&mut self, tag: u32, value: &[u8]) -> &mut Self {
        self.tag(tag);
        self.buf.extend_from_slice(value);
        self.buf.push(SOH);
        self
    }

    /// Appends an unsigned integer field.
    pub fn uint(&mut self, tag: u32, value: u64) -> &mut Self {
        self.tag(tag);
        let mut b = itoa::Buffer::new();
        self.buf.extend_from_slice(b.format(value).as_bytes());
        self.buf.push(SOH);
        self
    }

    /// Appends a signed integer field.
    pub fn int(&mut self, tag: u32, value: i64) -> &mut Self {
        self.tag(tag);
        let mut b = itoa::Buffer::new();
        self.buf.extend_from_slice(b.format(value).as_bytes());
        self.buf.push(SOH);
        self
    }

    /// Appends a single-character field.
    pub fn char(&mut self, tag: u32, value: u8) -> &mut Self {
        self.str(tag, &[value])
    }

    /// Appends a boolean field (`Y` / `N`).
    pub fn flag(&mut self, tag: u32, value: bool) -> &mut Self {
        self.char(tag, if value { b'Y' } else { b'N' })
    }

    /// Appends a UTCTimestamp field.
    pub fn timestamp(&mut self, tag: u32, t: UtcTimestamp, precision: TimePrecision) -> &mut Self {
        self.tag(tag);
        t.write(precision, &mut self.buf);
        self.buf.push(SOH);
        self
    }

    /// Appends a length-prefixed data field pair (e.g. RawDataLength(95) / RawData(96)).
    pub fn data(&mut self, len_tag: u32, data_tag: u32, value: &[u8]) -> &mut Self {
        self.uint(len_tag, value.len() as u64);
        self.str(data_tag, value)
    }

    /// Appends already-encoded `tag=value␁` fields.
    pub fn raw(&mut self, fields: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(fields);
        self
    }

    /// The body written so far (from MsgType, without BeginString/BodyLength/CheckSum).
    pub fn body(&self) -> &[u8] {
        &self.buf[HEADROOM..]
    }

    /// Writes BeginString, BodyLength and CheckSum and returns the whole message.
    pub fn finish(&mut self) -> &[u8] {
        let body_len = self.buf.len() - HEADROOM;
        let mut len_buf = itoa::Buffer::new();
        let len_txt = len_buf.format(body_len).as_bytes();
        let begin: &[u8] = if self.begin.is_empty() {
            &self.begin_owned
        } else {
            self.begin
        };
        let prefix_len = 2 + begin.len() + 1 + 2 + len_txt.len() + 1;
        assert!(prefix_len <= HEADROOM, "BeginString too long");
        let start = HEADROOM - prefix_len;
        let mut p = start;
        for part in [&b"8="[..], begin, &[SOH], b"9=", len_txt, &[SOH]] {
            self.buf[p..p + part.len()].copy_from_slice(part);
            p += part.len();
        }
        let cs = checksum(&self.buf[start..]);
        self.buf.extend_from_slice(b"10=");
        self.buf
            .extend_from_slice(&[b'0' + cs / 100, b'0' + (cs / 10) % 10, b'0' + cs % 10, SOH]);
        self.start = start;
        &self.buf[start..]
    }

    /// The last finished message.
    pub fn message(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{frame, Frame};

    #[test]
    fn finish_fills_body_length_and_checksum() {
        let mut e = Encoder::new();
        e.start(b"FIX.4.2", b"A")
            .uint(34, 1)
            .str(49, b"ISLD")
            .str(56, b"TW")
            .uint(108, 30);
        let m = e.finish().to_vec();
        assert_eq!(frame(&m, 1024), Frame::Complete { len: m.len() });
        assert!(m.starts_with(b"8=FIX.4.2\x019=31\x0135=A\x01"));
        // The buffer is reused for the next message.
        e.start(b"FIXT.1.1", b"0");
        let m2 = e.finish();
        assert_eq!(frame(m2, 1024), Frame::Complete { len: m2.len() });
    }
}
