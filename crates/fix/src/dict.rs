//! Dictionaries per FIX version and validation (being written).
use crate::{BeginString, MessageRef, SessionRejectReason};

/// Why a message fails validation: the reason, and the tag it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// SessionRejectReason(373).
    pub reason: SessionRejectReason,
    /// RefTagID(371), when the problem is about one tag.
    pub ref_tag: Option<u32>,
}

/// The messages and fields of one FIX version.
#[derive(Debug)]
pub struct Dictionary {
    /// The version.
    pub begin_string: BeginString,
}

impl Dictionary {
    /// The dictionary for a BeginString.
    pub fn for_version(v: BeginString) -> &'static Dictionary {
        static D42: Dictionary = Dictionary {
            begin_string: BeginString::Fix42,
        };
        static D44: Dictionary = Dictionary {
            begin_string: BeginString::Fix44,
        };
        static DT: Dictionary = Dictionary {
            begin_string: BeginString::Fixt11,
        };
        match v {
            BeginString::Fix42 => &D42,
            BeginString::Fix44 => &D44,
            BeginString::Fixt11 => &DT,
        }
    }

    /// Validates a decoded message.
    pub fn validate(&self, _msg: &MessageRef<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    /// True for session-level (admin) message types: 0, 1, 2, 3, 4, 5, A.
    pub fn is_admin(msg_type: &[u8]) -> bool {
        matches!(msg_type, b"0" | b"1" | b"2" | b"3" | b"4" | b"5" | b"A")
    }

    /// True if the message type is defined in this dictionary.
    pub fn knows_msg_type(&self, msg_type: &[u8]) -> bool {
        Self::is_admin(msg_type)
            || matches!(
                msg_type,
                b"D" | b"F" | b"G" | b"H" | b"q" | b"8" | b"9" | b"r" | b"j"
            )
    }
}
