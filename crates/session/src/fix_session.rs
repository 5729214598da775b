//! The FIX session layer as a sans-IO state machine.
//!
//! Feed it received bytes ([`Session::handle_input`]) and the passage of time
//! ([`Session::handle_timeout`]); take from it the bytes to send ([`Session::transmit`]) and
//! events ([`Session::poll_event`]): application messages to process, logon/logout, and the
//! request to disconnect. It never touches a socket or the system clock, so every rule of the
//! FIX session layer is a fast deterministic test.

use std::collections::VecDeque;
use std::time::Duration;

use portcullis_fix::{BeginString, Encoder, SeqNum, SessionRejectReason, UtcTimestamp};

use crate::store::MessageStore;

/// When a session's sequence numbers start again from 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetPolicy {
    /// At every Logon (the usual set-up for session-level test suites).
    pub on_logon: bool,
    /// After a completed Logout.
    pub on_logout: bool,
    /// When the connection ends for any reason.
    pub on_disconnect: bool,
}

/// Static settings of one FIX session (acceptor side).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// BeginString(8) of the session.
    pub begin_string: BeginString,
    /// Our CompID: SenderCompID(49) on what we send, TargetCompID(56) on what we receive.
    pub sender_comp_id: String,
    /// The counterparty's CompID.
    pub target_comp_id: String,
    /// DefaultApplVerID(1137) for FIXT.1.1 sessions (`9` = FIX 5.0 SP2).
    pub default_appl_ver_id: String,
    /// Maximum difference between SendingTime(52) and our clock.
    pub sending_time_tolerance: Duration,
    /// Time a connection has to complete its Logon.
    pub logon_timeout: Duration,
    /// Time the counterparty has to answer our Logout.
    pub logout_timeout: Duration,
    /// Accepted range of HeartBtInt(108), in seconds.
    pub heartbeat_range: (u32, u32),
    /// When sequence numbers are reset.
    pub reset: ResetPolicy,
    /// Largest accepted message in bytes.
    pub max_message_size: usize,
    /// Validate every message against the version's dictionary.
    pub validate: bool,
}

impl SessionConfig {
    /// A session with the defaults of the FIX specification and the common engines.
    pub fn new(begin_string: BeginString, sender_comp_id: &str, target_comp_id: &str) -> Self {
        Self {
            begin_string,
            sender_comp_id: sender_comp_id.to_owned(),
            target_comp_id: target_comp_id.to_owned(),
            default_appl_ver_id: "9".to_owned(),
            sending_time_tolerance: Duration::from_secs(120),
            logon_timeout: Duration::from_secs(10),
            logout_timeout: Duration::from_secs(5),
            heartbeat_range: (0, 3600),
            reset: ResetPolicy::default(),
            max_message_size: 64 * 1024,
            validate: true,
        }
    }
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, no valid Logon yet.
    AwaitingLogon,
    /// Logged on.
    Active,
    /// We sent a Logout and wait for the counterparty's.
    LogoutSent,
    /// The connection must be closed (after sending what is in [`Session::transmit`]).
    Disconnected,
}

/// Why the session asks for the connection to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// No valid Logon within the logon timeout.
    LogonTimeout,
    /// The first message was not a Logon.
    FirstMessageNotLogon,
    /// The Logon was refused (text says why).
    LogonRejected(String),
    /// No message received after a TestRequest.
    HeartbeatTimeout,
    /// The Logout handshake completed.
    LogoutComplete,
    /// The counterparty did not answer our Logout in time.
    LogoutTimeout,
    /// A session-level rule requires ending the session (text says which).
    ProtocolError(String),
    /// A message larger than the configured maximum was announced.
    MessageTooLarge(usize),
    /// The message store failed; continuing could lose or corrupt state.
    StoreFailure(String),
}

/// What the session reports to the code driving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A Logon was accepted and answered.
    LoggedOn {
        /// The HeartBtInt(108) agreed, in seconds.
        heartbeat_secs: u32,
        /// True if sequence numbers were reset by this Logon.
        reset: bool,
    },
    /// A validated application message, in sequence, to be processed.
    Application {
        /// Its MsgSeqNum(34).
        seq: SeqNum,
        /// The whole message as received.
        message: Vec<u8>,
    },
    /// We sent a session-level Reject(3).
    RejectSent {
        /// MsgSeqNum of the rejected message.
        ref_seq: SeqNum,
        /// SessionRejectReason(373), if one applies.
        reason: Option<SessionRejectReason>,
        /// Text(58) sent.
        text: String,
    },
    /// Bytes that were not a valid message were ignored.
    Garbled {
        /// What was wrong.
        reason: String,
    },
    /// The session logged out (either side initiated).
    LoggedOut,
    /// Close the connection after sending what is pending.
    Disconnect(DisconnectReason),
}

/// Error returned when an application message cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The session is not logged on.
    #[error("session is not logged on")]
    NotLoggedOn,
    /// The store failed to record the message.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Which session a connection's first message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identify {
    /// Not enough bytes yet.
    NeedMore,
    /// The bytes are not a FIX message (or it is too large): close the connection.
    Invalid(String),
    /// The first message's identity, as sent by the counterparty.
    Found {
        /// BeginString(8).
        begin_string: BeginString,
        /// Their SenderCompID(49): our session's `target_comp_id`.
        sender_comp_id: String,
        /// Their TargetCompID(56): our session's `sender_comp_id`.
        target_comp_id: String,
    },
}

/// Reads the identity of the first message in `buf` so the acceptor can pick the session.
pub fn identify(_buf: &[u8], _max_message_size: usize) -> Identify {
    todo!()
}

/// One FIX session on one connection (acceptor side).
pub struct Session {
    config: SessionConfig,
    store: Box<dyn MessageStore>,
    state: SessionState,
    tx: Vec<u8>,
    events: VecDeque<SessionEvent>,
    encoder: Encoder,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("begin_string", &self.config.begin_string)
            .field("sender_comp_id", &self.config.sender_comp_id)
            .field("target_comp_id", &self.config.target_comp_id)
            .field("state", &self.state)
            .finish()
    }
}

impl Session {
    /// A session for a new connection accepted at `now`, using `store` for its sequence numbers.
    pub fn new(config: SessionConfig, store: Box<dyn MessageStore>, now: UtcTimestamp) -> Self {
        let _ = now;
        Self {
            config,
            store,
            state: SessionState::AwaitingLogon,
            tx: Vec::new(),
            events: VecDeque::new(),
            encoder: Encoder::new(),
        }
    }

    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The MsgSeqNum of the next message we send.
    pub fn next_sender_seq(&self) -> SeqNum {
        self.store.next_sender_seq()
    }

    /// The MsgSeqNum expected on the next message received.
    pub fn next_target_seq(&self) -> SeqNum {
        self.store.next_target_seq()
    }

    /// Feeds bytes received from the counterparty at `now`.
    pub fn handle_input(&mut self, _now: UtcTimestamp, _bytes: &[u8]) {
        todo!()
    }

    /// Runs the timers (heartbeat, test request, logon and logout timeouts) at `now`.
    pub fn handle_timeout(&mut self, _now: UtcTimestamp) {
        todo!()
    }

    /// When [`Session::handle_timeout`] should next be called, if any timer is running.
    pub fn poll_timeout(&self) -> Option<UtcTimestamp> {
        todo!()
    }

    /// Bytes waiting to be sent to the counterparty.
    pub fn transmit(&self) -> &[u8] {
        &self.tx
    }

    /// Marks the first `n` bytes of [`Session::transmit`] as sent.
    pub fn consume_transmit(&mut self, n: usize) {
        self.tx.drain(..n.min(self.tx.len()));
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Sends an application message: the session writes the standard header, `body` appends the
    /// body fields, and the session stores and queues it. Returns its MsgSeqNum.
    pub fn send_application(
        &mut self,
        _now: UtcTimestamp,
        _msg_type: &[u8],
        _body: impl FnOnce(&mut Encoder),
    ) -> Result<SeqNum, SendError> {
        todo!()
    }

    /// Starts a Logout initiated by us (e.g. on server shutdown).
    pub fn logout(&mut self, _now: UtcTimestamp, _text: &str) {
        todo!()
    }

    /// Tells the session its connection has ended.
    pub fn on_disconnect(&mut self, _now: UtcTimestamp) {
        todo!()
    }
}
