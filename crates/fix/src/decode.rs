//! Zero-copy decoding of one framed FIX message into tag/value views.

use crate::frame::SOH;
use crate::tag;

/// Where one field sits in the message buffer. Values are views into the buffer: decoding never
/// copies or allocates per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    /// Tag number.
    pub tag: u32,
    /// Start of the value (after `=`).
    pub start: u32,
    /// End of the value (the index of its SOH).
    pub end: u32,
}

/// A field of a decoded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Tag number.
    pub tag: u32,
    /// Raw value bytes, without the delimiter.
    pub value: &'a [u8],
}

/// A structural error that prevents splitting a framed message into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A tag is empty, not a number, zero, or too large (SessionRejectReason 0).
    #[error("invalid tag number at byte {offset}")]
    InvalidTagNumber {
        /// Byte offset of the field.
        offset: usize,
    },
    /// A field has no `=` or no terminating SOH.
    #[error("malformed field at byte {offset}")]
    MalformedField {
        /// Byte offset of the field.
        offset: usize,
    },
    /// A data field's declared length runs past the end of the message or is not followed by SOH
    /// (SessionRejectReason 6 on the length field).
    #[error("length of data field {tag} is wrong")]
    BadDataLength {
        /// The data field's tag.
        tag: u32,
    },
    /// The message has more fields than the decoder accepts.
    #[error("more than {max} fields")]
    TooManyFields {
        /// The limit.
        max: usize,
    },
}

/// Reusable decoder: owns the field index so that decoding a message allocates nothing once the
/// index has grown to the largest message seen.
#[derive(Debug, Clone)]
pub struct Decoder {
    spans: Vec<FieldSpan>,
    max_fields: usize,
}

/// Like [`Decoder::new`], but the field index is allocated at the first decode, so a
/// placeholder left by `std::mem::take` costs nothing.
impl Default for Decoder {
    fn default() -> Self {
        Self {
            spans: Vec::new(),
            max_fields: 1024,
        }
    }
}

/// Largest tag number accepted; user-defined tags go up to 49999 in the spec, with a margin.
pub const MAX_TAG: u32 = 999_999;

impl Decoder {
    /// A decoder accepting up to 1024 fields per message.
    pub fn new() -> Self {
        Self::with_max_fields(1024)
    }

    /// A decoder accepting up to `max_fields` fields per message.
    pub fn with_max_fields(max_fields: usize) -> Self {
        Self {
            spans: Vec::with_capacity(64.min(max_fields)),
            max_fields,
        }
    }

    /// Splits `bytes` (one whole message, e.g. as returned by [`crate::frame()`]) into fields.
    pub fn decode<'a>(&'a mut self, bytes: &'a [u8]) -> Result<MessageRef<'a>, DecodeError> {
        self.spans.clear();
        let mut pos = 0usize;
        let n = bytes.len();
        // Pending length of a data field announced by its length tag: (data tag, length).
        let mut pending_data: Option<(u32, usize)> = None;
        while pos < n {
            let field_start = pos;
            let mut tag_num: u32 = 0;
            let mut digits = 0usize;
            while pos < n && bytes[pos] != b'=' {
                let b = bytes[pos];
                if !b.is_ascii_digit() {
                    if b == SOH {
                        return Err(DecodeError::MalformedField {
                            offset: field_start,
                        });
                    }
                    return Err(DecodeError::InvalidTagNumber {
                        offset: field_start,
                    });
                }
                tag_num = tag_num
                    .saturating_mul(10)
                    .saturating_add(u32::from(b - b'0'));
                digits += 1;
                pos += 1;
            }
            if pos >= n {
                return Err(DecodeError::MalformedField {
                    offset: field_start,
                });
            }
            if digits == 0
                || tag_num == 0
                || tag_num > MAX_TAG
                || (bytes[field_start] == b'0' && digits > 1)
            {
                return Err(DecodeError::InvalidTagNumber {
                    offset: field_start,
                });
            }
            pos += 1; // '='
            let value_start = pos;
            let value_end = match pending_data.take() {
                Some((data_tag, len)) if data_tag == tag_num => value_start
                    .checked_add(len)
                    .filter(|&e| e < n && bytes[e] == SOH)
                    .ok_or(DecodeError::BadDataLength { tag: tag_num })?,
                _ => match memchr_soh(&bytes[value_start..]) {
                    Some(off) => value_start + off,
                    None => {
                        return Err(DecodeError::MalformedField {
                            offset: field_start,
                        })
                    }
                },
            };
            if self.spans.len() >= self.max_fields {
                return Err(DecodeError::TooManyFields {
                    max: self.max_fields,
                });
            }
            self.spans.push(FieldSpan {
                tag: tag_num,
                start: value_start as u32,
                end: value_end as u32,
            });
            if let Some(data_tag) = data_tag_of_length(tag_num) {
                if let Some(len) = parse_usize(&bytes[value_start..value_end]) {
                    pending_data = Some((data_tag, len));
                }
            }
            pos = value_end + 1;
        }
        Ok(MessageRef {
            bytes,
            spans: &self.spans,
        })
    }
}

fn data_tag_of_length(len_tag: u32) -> Option<u32> {
    Some(match len_tag {
        tag::SIGNATURE_LENGTH => tag::SIGNATURE,
        tag::SECURE_DATA_LEN => tag::SECURE_DATA,
        tag::RAW_DATA_LENGTH => tag::RAW_DATA,
        tag::XML_DATA_LEN => tag::XML_DATA,
        348 | 350 | 352 | 354 | 356 | 358 | 360 | 362 | 364 => len_tag + 1,
        445 | 618 | 621 => len_tag + 1,
        _ => return None,
    })
}

#[inline]
fn memchr_soh(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == SOH)
}

/// Parses an unsigned decimal with no sign and no leading `+`; `None` on overflow or junk.
#[inline]
pub fn parse_usize(s: &[u8]) -> Option<usize> {
    parse_u64(s).and_then(|v| usize::try_from(v).ok())
}

/// Parses an unsigned decimal integer; `None` if empty, not all digits, or overflowing.
#[inline]
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses a signed decimal integer (optional leading `-`).
#[inline]
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A decoded message: the original bytes and the field index into them.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    bytes: &'a [u8],
    spans: &'a [FieldSpan],
}

impl<'a> MessageRef<'a> {
    /// The whole message as received.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of fields, including BeginString, BodyLength and CheckSum.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True if the message has no fields (never the case for a framed message).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The field at position `i`.
    pub fn field_at(&self, i: usize) -> Option<Field<'a>> {
        self.spans.get(i).map(|s| self.field(s))
    }

    /// The byte offset where the field at position `i` starts (its tag).
    pub fn offset_of(&self, i: usize) -> Option<usize> {
        let s = self.spans.get(i)?;
        // The tag's digits plus '=' precede the value.
        Some(s.start as usize - 1 - count_digits(s.tag))
    }

    #[inline]
    fn field(&self, s: &FieldSpan) -> Field<'a> {
        Field {
            tag: s.tag,
            value: &self.bytes[s.start as usize..s.end as usize],
        }
    }

    /// All fields in order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + '_ {
        self.spans.iter().map(|s| self.field(s))
    }

    /// The spans of all fields in order.
    pub fn spans(&self) -> &'a [FieldSpan] {
        self.spans
    }

    /// The fields at positions `range` as a message of their own (e.g. one entry of a
    /// repeating group, whose fields [`get`](Self::get) then finds); empty if out of range.
    pub fn part(&self, range: std::ops::Range<usize>) -> MessageRef<'a> {
        MessageRef {
            bytes: self.bytes,
            spans: self.spans.get(range).unwrap_or(&[]),
        }
    }

    /// The value of the first occurrence of `tag`.
    #[inline]
    pub fn get(&self, tag: u32) -> Option<&'a [u8]> {
        self.spans
            .iter()
            .find(|s| s.tag == tag)
            .map(|s| &self.bytes[s.start as usize..s.end as usize])
    }

    /// The value of `tag` as UTF-8 text, if present and valid UTF-8.
    pub fn get_str(&self, tag: u32) -> Option<&'a str> {
        self.get(tag).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value of `tag` as an unsigned integer, if present and well-formed.
    pub fn get_u64(&self, tag: u32) -> Option<u64> {
        self.get(tag).and_then(parse_u64)
    }

    /// True if `tag` is present with value `Y`.
    pub fn get_flag(&self, tag: u32) -> bool {
        self.get(tag) == Some(b"Y")
    }

    /// BeginString(8).
    pub fn begin_string(&self) -> &'a [u8] {
        self.field_at(0)
            .filter(|f| f.tag == tag::BEGIN_STRING)
            .map(|f| f.value)
            .unwrap_or(b"")
    }

    /// MsgType(35), or empty if absent.
    pub fn msg_type(&self) -> &'a [u8] {
        // MsgType is the third field in a well-formed message; fall back to a scan.
        match self.spans.get(2) {
            Some(s) if s.tag == tag::MSG_TYPE => &self.bytes[s.start as usize..s.end as usize],
            _ => self.get(tag::MSG_TYPE).unwrap_or(b""),
        }
    }

    /// MsgSeqNum(34), if present and numeric.
    pub fn seq_num(&self) -> Option<u64> {
        self.get_u64(tag::MSG_SEQ_NUM)
    }

    /// True if PossDupFlag(43)=Y.
    pub fn poss_dup(&self) -> bool {
        self.get_flag(tag::POSS_DUP_FLAG)
    }
}

fn count_digits(mut v: u32) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_decoder_decodes_and_keeps_the_field_limit() {
        let m = b"8=FIX.4.4\x019=5\x0135=D\x0155=BTC-PERP\x0110=000\x01";
        let mut d = Decoder::default();
        assert_eq!(d.decode(m).unwrap().get(55), Some(&b"BTC-PERP"[..]));
        let mut big = b"8=FIX.4.4\x019=5\x0135=D\x01".to_vec();
        for t in 5000..6100 {
            big.extend_from_slice(format!("{t}=x\x01").as_bytes());
        }
        big.extend_from_slice(b"10=000\x01");
        assert_eq!(
            Decoder::default().decode(&big).unwrap_err(),
            DecodeError::TooManyFields { max: 1024 }
        );
    }

    #[test]
    fn a_part_of_a_message_finds_only_its_own_fields() {
        let m = b"8=FIX.4.4\x019=5\x0135=E\x0173=2\x0111=a\x0154=1\x0111=b\x0154=2\x0110=000\x01";
        let mut d = Decoder::new();
        let msg = d.decode(m).unwrap();
        let second = msg.part(6..8);
        assert_eq!(second.get(11), Some(&b"b"[..]));
        assert_eq!(second.get(54), Some(&b"2"[..]));
        assert_eq!(second.get(73), None);
        assert_eq!(msg.part(4..6).get(54), Some(&b"1"[..]));
        assert!(msg.part(8..99).is_empty());
    }

    #[test]
    fn fields_are_views_into_the_buffer() {
        let m = b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01";
        let mut d = Decoder::new();
        let msg = d.decode(m).unwrap();
        assert_eq!(msg.len(), 4);
        assert_eq!(msg.begin_string(), b"FIX.4.4");
        assert_eq!(msg.msg_type(), b"0");
        assert_eq!(msg.get(tag::CHECK_SUM), Some(&b"000"[..]));
        assert_eq!(msg.offset_of(2), Some(14));
        let v = msg.get(35).unwrap();
        assert!(std::ptr::eq(v.as_ptr(), m[17..].as_ptr()));
    }

    #[test]
    fn data_field_may_contain_soh() {
        let m = b"8=FIX.4.4\x019=20\x0135=A\x0195=3\x0196=a\x01b\x0110=000\x01";
        let mut d = Decoder::new();
        let msg = d.decode(m).unwrap();
        assert_eq!(msg.get(96), Some(&b"a\x01b"[..]));
        assert_eq!(msg.get(10), Some(&b"000"[..]));
    }

    #[test]
    fn data_length_past_the_end_is_an_error() {
        let m = b"8=FIX.4.4\x019=20\x0135=A\x0195=99\x0196=ab\x0110=000\x01";
        assert_eq!(
            Decoder::new().decode(m).unwrap_err(),
            DecodeError::BadDataLength { tag: 96 }
        );
    }

    #[test]
    fn non_numeric_tag_is_invalid_tag_number() {
        let m = b"8=FIX.4.4\x019=5\x01x5=0\x0110=000\x01";
        assert!(matches!(
            Decoder::new().decode(m),
            Err(DecodeError::InvalidTagNumber { offset: 14 })
        ));
    }

    #[test]
    fn tag_zero_and_leading_zero_are_invalid() {
        for m in [&b"8=A\x010=1\x01"[..], b"8=A\x01035=1\x01"] {
            assert!(matches!(
                Decoder::new().decode(m),
                Err(DecodeError::InvalidTagNumber { .. })
            ));
        }
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_u64(b"0012"), Some(12));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"+1"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
        assert_eq!(parse_i64(b"-5"), Some(-5));
    }
}
