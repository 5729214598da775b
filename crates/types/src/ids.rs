//! Identifiers: small integers for what the server assigns, a fixed-size byte string for what
//! clients choose.

use std::fmt;

macro_rules! id {
    ($name:ident, $int:ty, $what:literal) => {
        #[doc = $what]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    AccountId,
    u32,
    "An account, by its index in the server's account table."
);
id!(
    InstrumentId,
    u32,
    "An instrument, by its index in the instrument table."
);
id!(
    SessionId,
    u32,
    "A connected session (FIX or WebSocket), by its slot."
);
id!(
    OrderId,
    u64,
    "An order id assigned by the engine; always ≤ 2^53−1 so JSON clients read it exactly."
);
id!(
    TradeId,
    u64,
    "A trade (or execution) id assigned by the engine; always ≤ 2^53−1."
);

/// Why a client order id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClOrdIdError {
    /// Longer than [`ClOrdId::MAX_LEN`].
    #[error("client order id longer than {} bytes", ClOrdId::MAX_LEN)]
    TooLong,
    /// Empty or containing bytes outside printable ASCII.
    #[error("client order id must be 1 or more printable ASCII characters")]
    Invalid,
}

/// A client-chosen order id (FIX ClOrdID(11), WebSocket `newClientOrderId`), stored inline so
/// commands stay fixed-size and allocation-free.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClOrdId {
    len: u8,
    bytes: [u8; ClOrdId::MAX_LEN],
}

impl ClOrdId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// The empty id (for "none given").
    pub const EMPTY: ClOrdId = ClOrdId {
        len: 0,
        bytes: [0; ClOrdId::MAX_LEN],
    };

    /// Validates and copies an id.
    pub fn new(id: &[u8]) -> Result<Self, ClOrdIdError> {
        if id.len() > Self::MAX_LEN {
            return Err(ClOrdIdError::TooLong);
        }
        if id.is_empty() || !id.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(ClOrdIdError::Invalid);
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..id.len()].copy_from_slice(id);
        Ok(Self {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The id as text (always ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// True for [`ClOrdId::EMPTY`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for ClOrdId {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for ClOrdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClOrdId({:?})", self.as_str())
    }
}

impl fmt::Display for ClOrdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_order_ids_are_validated() {
        assert_eq!(ClOrdId::new(b"ORD-1").unwrap().as_str(), "ORD-1");
        assert_eq!(ClOrdId::new(b""), Err(ClOrdIdError::Invalid));
        assert_eq!(ClOrdId::new(b"a b"), Err(ClOrdIdError::Invalid));
        assert_eq!(ClOrdId::new(&[b'x'; 65]), Err(ClOrdIdError::TooLong));
        assert!(ClOrdId::new(&[b'x'; 64]).is_ok());
    }
}
