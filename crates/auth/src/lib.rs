//! Authentication for Portcullis: who may send orders, proven cryptographically.
//!
//! - [`key`]: API keys (key id, HMAC secret and/or Ed25519 public key, account, scopes, IP
//!   allowlist, expiry, status).
//! - [`vault`]: the key vault, one file encrypted at rest with AES-256-GCM under a versioned,
//!   rotatable master key ([`MasterKeyring`]), written atomically.
//! - [`fix_sig`]: the FIX Logon signature (RawData(96)) and the per-message signature
//!   (Signature(89)), as DESIGN.md §4 defines them, plus the hex HMAC of the WebSocket dialect.
//! - [`authenticator`]: the [`Authenticator`] the server calls for every Logon: lockout, clock
//!   window, replay cache, key checks, constant-time signature check, one audit event per attempt;
//!   a successful Logon yields a [`Grant`] whose [`MessageVerifier`] checks per-message signatures
//!   without locking or allocating.
//! - [`audit`]: audit events as JSON lines, file and in-memory sinks.
//! - [`totp`]: the operators' TOTP second factor (RFC 6238), with replay protection; the vault
//!   keeps each operator's secret ([`Vault::enroll_totp`], [`Vault::verify_totp`]).
//! - [`oauth`]: the OAuth 2.0 authorization server core (client credentials and refresh-token
//!   grants, EdDSA-signed JWT access tokens, revocation, introspection, metadata), sans-IO.
//!
//! # The signing rule, with a worked example
//!
//! The HMAC key is the secret exactly as `keys create` prints it (its ASCII text), never a
//! decoding of it. With the secret
//! `6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172` and a Logon whose
//! SendingTime(52) is `20240102-03:04:05.678`, MsgType(35) `A`, MsgSeqNum(34) `1`,
//! SenderCompID(49) `CLIENT1`, TargetCompID(56) `PORTCULLIS` and Username(553)
//! `pk_0123456789abcdef0123456789abcdef`:
//!
//! ```
//! use portcullis_auth::fix_sig::{sign_logon, LogonFields};
//! let secret = b"6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172";
//! let fields = LogonFields {
//!     sending_time: b"20240102-03:04:05.678",
//!     msg_type: b"A",
//!     msg_seq_num: b"1",
//!     sender_comp_id: b"CLIENT1",
//!     target_comp_id: b"PORTCULLIS",
//!     username: b"pk_0123456789abcdef0123456789abcdef",
//! };
//! // prehash = "20240102-03:04:05.678\x01A\x011\x01CLIENT1\x01PORTCULLIS\x01pk_0123...cdef"
//! assert_eq!(sign_logon(secret, &fields), "9XdL99g8J5wfiOcnAqhlajz4rEvGrd9KSGQYaxXv81U=");
//! ```
//!
//! See [`fix_sig`] for the per-message signature's worked example.
#![warn(missing_docs)]

pub mod audit;
pub mod authenticator;
pub mod clock;
pub mod fix_sig;
pub mod key;
pub mod oauth;
pub mod totp;
pub mod vault;

pub use audit::{AuditEvent, AuditKind, AuditSink, FileAuditLog, MemoryAuditLog, Outcome};
pub use authenticator::{
    AuthConfig, AuthConfigError, Authenticator, Denied, Grant, LogonAttempt, MessageVerifier,
    ReloadStats, RequestAttempt, RequestCredential, RequestGrant, RequestKind, ANY_ACCOUNT,
};
pub use fix_sig::{HmacKey, LogonFields, SigError};
pub use key::{
    ApiKey, KeyError, KeyId, KeyInfo, KeySpec, KeyStatus, NewKey, Scope, Scopes, Secret,
};
pub use oauth::{AccessClaims, OAuthConfig, OAuthError, OAuthServer, TokenError, TokenSigningKey};
pub use totp::{TotpError, TotpSecret, TotpVerifier};
pub use vault::{
    KeyringError, MasterKey, MasterKeyring, OperatorTotp, Vault, VaultError, VaultLock,
};
