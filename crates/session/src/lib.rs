//! The FIX session layer of Portcullis.
//!
//! - [`fix_session`]: the FIX session as a sans-IO state machine: fed bytes and the clock, it
//!   returns bytes to send, application messages and events.
//! - [`store`]: durable per-session sequence numbers and outbound messages.
//! - [`transport`]: the tokio/rustls edge that drives sessions over TCP and TLS 1.3.
#![warn(missing_docs)]

pub mod fix_session;
pub mod store;
pub mod transport;
pub mod ws;

pub use fix_session::{
    DisconnectReason, MessageAuthError, ResetPolicy, Session, SessionAuth, SessionConfig,
    SessionEvent, SessionState,
};
pub use store::{MemoryStore, MessageStore, StoreError};
