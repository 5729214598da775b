//! FIX tag=value codec and dictionary for Portcullis. No I/O.
//!
//! - [`frame()`] finds whole messages in a receive buffer (partial reads, several messages per
//!   read, a maximum size) and validates BeginString, BodyLength and CheckSum.
//! - [`Decoder`] splits a framed message into fields that are views into the buffer.
//! - [`dict`] holds a dictionary per FIX version and validates a message against it, mapping
//!   every problem to its SessionRejectReason(373).
//! - [`Encoder`] writes messages into a reusable buffer and fills BodyLength and CheckSum.
#![warn(missing_docs)]

pub mod decode;
pub mod dict;
pub mod encode;
pub mod frame;
pub mod tag;
pub mod time;

pub use decode::{DecodeError, Decoder, Field, FieldSpan, MessageRef};
pub use dict::{Dictionary, Rejection};
pub use encode::Encoder;
pub use frame::{checksum, frame, Frame, Garbled, SOH};
pub use time::{TimePrecision, UtcTimestamp};

/// A message sequence number (MsgSeqNum(34)); the first message of a session is 1.
pub type SeqNum = u64;

/// The FIX versions Portcullis speaks, as named by BeginString(8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BeginString {
    /// `FIX.4.2`
    Fix42,
    /// `FIX.4.4`
    Fix44,
    /// `FIXT.1.1` (session layer), with FIX 5.0 SP2 application messages.
    Fixt11,
}

impl BeginString {
    /// The BeginString(8) value.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Fix42 => b"FIX.4.2",
            Self::Fix44 => b"FIX.4.4",
            Self::Fixt11 => b"FIXT.1.1",
        }
    }

    /// The BeginString(8) value as text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fix42 => "FIX.4.2",
            Self::Fix44 => "FIX.4.4",
            Self::Fixt11 => "FIXT.1.1",
        }
    }

    /// Parses a BeginString(8) value.
    pub fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"FIX.4.2" => Some(Self::Fix42),
            b"FIX.4.4" => Some(Self::Fix44),
            b"FIXT.1.1" => Some(Self::Fixt11),
            _ => None,
        }
    }
}

impl std::fmt::Display for BeginString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BeginString {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes()).ok_or_else(|| {
            format!("unsupported BeginString {s:?} (expected FIX.4.2, FIX.4.4 or FIXT.1.1)")
        })
    }
}

/// SessionRejectReason(373) values, as numbered by the FIX specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum SessionRejectReason {
    /// 0
    InvalidTagNumber = 0,
    /// 1
    RequiredTagMissing = 1,
    /// 2
    TagNotDefinedForMessageType = 2,
    /// 3
    UndefinedTag = 3,
    /// 4
    TagSpecifiedWithoutValue = 4,
    /// 5
    ValueIsIncorrect = 5,
    /// 6
    IncorrectDataFormat = 6,
    /// 7
    DecryptionProblem = 7,
    /// 8
    SignatureProblem = 8,
    /// 9
    CompIdProblem = 9,
    /// 10
    SendingTimeAccuracyProblem = 10,
    /// 11
    InvalidMsgType = 11,
    /// 12 (FIX 4.3+)
    XmlValidationError = 12,
    /// 13 (FIX 4.3+)
    TagAppearsMoreThanOnce = 13,
    /// 14 (FIX 4.3+)
    TagSpecifiedOutOfRequiredOrder = 14,
    /// 15 (FIX 4.3+)
    RepeatingGroupFieldsOutOfOrder = 15,
    /// 16 (FIX 4.3+)
    IncorrectNumInGroupCount = 16,
    /// 17 (FIX 4.3+)
    NonDataValueIncludesFieldDelimiter = 17,
    /// 99 (FIX 4.4+)
    Other = 99,
}

impl SessionRejectReason {
    /// The numeric code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// True if this code exists in the given version's dictionary (FIX 4.2 stops at 11), so a
    /// Reject only carries 373 when the counterparty can read it.
    pub const fn defined_in(self, v: BeginString) -> bool {
        match v {
            BeginString::Fix42 => (self as u16) <= 11,
            _ => true,
        }
    }

    /// A short English description, used as Text(58) of the Reject.
    pub const fn description(self) -> &'static str {
        match self {
            Self::InvalidTagNumber => "Invalid tag number",
            Self::RequiredTagMissing => "Required tag missing",
            Self::TagNotDefinedForMessageType => "Tag not defined for this message type",
            Self::UndefinedTag => "Undefined tag",
            Self::TagSpecifiedWithoutValue => "Tag specified without a value",
            Self::ValueIsIncorrect => "Value is incorrect (out of range) for this tag",
            Self::IncorrectDataFormat => "Incorrect data format for value",
            Self::DecryptionProblem => "Decryption problem",
            Self::SignatureProblem => "Signature problem",
            Self::CompIdProblem => "CompID problem",
            Self::SendingTimeAccuracyProblem => "SendingTime accuracy problem",
            Self::InvalidMsgType => "Invalid MsgType",
            Self::XmlValidationError => "XML validation error",
            Self::TagAppearsMoreThanOnce => "Tag appears more than once",
            Self::TagSpecifiedOutOfRequiredOrder => "Tag specified out of required order",
            Self::RepeatingGroupFieldsOutOfOrder => "Repeating group fields out of order",
            Self::IncorrectNumInGroupCount => "Incorrect NumInGroup count for repeating group",
            Self::NonDataValueIncludesFieldDelimiter => {
                "Non-data value includes field delimiter (SOH character)"
            }
            Self::Other => "Other",
        }
    }
}
