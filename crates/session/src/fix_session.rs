//! The FIX session layer as a sans-IO state machine.
//!
//! Feed it received bytes ([`Session::handle_input`]) and the passage of time
//! ([`Session::handle_timeout`]); take from it the bytes to send ([`Session::transmit`]) and
//! events ([`Session::poll_event`]): application messages to process, logon/logout, and the
//! request to disconnect. It never touches a socket or the system clock, so every rule of the
//! FIX session layer is a fast deterministic test.

use std::collections::VecDeque;
use std::time::Duration;

use std::collections::BTreeMap;

use portcullis_fix::{
    frame, tag, BeginString, Decoder, Dictionary, Encoder, Frame, MessageRef, SeqNum,
    SessionRejectReason, TimePrecision, UtcTimestamp,
};

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
    /// Every application message must carry a valid SignatureLength(93)/Signature(89),
    /// checked by the session's [`SessionAuth`].
    pub require_message_signature: bool,
    /// Keep every message received once the session is logged on in the store too
    /// ([`MessageStore::save_inbound`]), for operators reading what the counterparty sent.
    pub log_inbound: bool,
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
            require_message_signature: false,
            log_inbound: false,
        }
    }
}

/// Why an application message's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAuthError {
    /// SignatureLength(93)/Signature(89) absent.
    Missing,
    /// The signature does not match the message.
    Invalid,
}

/// Authentication on behalf of a session: the server plugs its key vault in here, so the
/// session layer stays free of key handling and every decision is made before state changes.
pub trait SessionAuth: Send {
    /// Called with a Logon that passed the session-level checks and before it changes anything
    /// (sequence numbers, store, state). `Err(text)` refuses it; `text` becomes the Logout's
    /// Text(58) and must not reveal which check failed.
    fn authenticate_logon(
        &mut self,
        logon: &MessageRef<'_>,
        now: UtcTimestamp,
    ) -> Result<(), String>;

    /// Called for every in-sequence application message when the session requires message
    /// signatures; a refused message is rejected and never passed on.
    fn verify_message(&mut self, message: &MessageRef<'_>) -> Result<(), MessageAuthError>;

    /// True once the credential the session logged on with has been revoked or has expired by
    /// `now`: the session ends.
    fn revoked(&self, _now: UtcTimestamp) -> bool {
        false
    }
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, no valid Logon yet.
    AwaitingLogon,
    /// Initiator: our Logon is sent, the counterparty's answer has not come yet.
    LogonSent,
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

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::LogonTimeout => f.write_str("no Logon in time"),
            DisconnectReason::FirstMessageNotLogon => {
                f.write_str("the first message was not a Logon")
            }
            DisconnectReason::LogonRejected(t) => write!(f, "Logon refused: {t}"),
            DisconnectReason::HeartbeatTimeout => {
                f.write_str("no message after a TestRequest (heartbeat timeout)")
            }
            DisconnectReason::LogoutComplete => f.write_str("logged out"),
            DisconnectReason::LogoutTimeout => f.write_str("no answer to our Logout in time"),
            DisconnectReason::ProtocolError(t) => write!(f, "session rule broken: {t}"),
            DisconnectReason::MessageTooLarge(n) => {
                write!(f, "a message of {n} bytes announced: too large")
            }
            DisconnectReason::StoreFailure(t) => write!(f, "message store failure: {t}"),
        }
    }
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
    /// Both sequences started again at 1 on a logged-on session (a Logon with
    /// ResetSeqNumFlag=Y): application messages delivered before this event were numbered in
    /// the old sequence, so the application forgets their numbers (see
    /// [`Session::set_unanswered`]).
    SequenceReset,
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
pub fn identify(buf: &[u8], max_message_size: usize) -> Identify {
    match frame(buf, max_message_size) {
        Frame::Incomplete => Identify::NeedMore,
        Frame::Oversized { len } => {
            Identify::Invalid(format!("message of {len} bytes is too large"))
        }
        Frame::Garbled { reason, .. } => Identify::Invalid(reason.to_string()),
        Frame::Complete { len } => {
            let mut dec = Decoder::with_max_fields(256);
            let msg = match dec.decode(&buf[..len]) {
                Ok(m) => m,
                Err(e) => return Identify::Invalid(e.to_string()),
            };
            let Some(begin_string) = BeginString::parse(msg.begin_string()) else {
                return Identify::Invalid("unsupported BeginString".into());
            };
            let (Some(sender), Some(target)) = (
                msg.get_str(tag::SENDER_COMP_ID),
                msg.get_str(tag::TARGET_COMP_ID),
            ) else {
                return Identify::Invalid("SenderCompID(49) or TargetCompID(56) missing".into());
            };
            Identify::Found {
                begin_string,
                sender_comp_id: sender.to_owned(),
                target_comp_id: target.to_owned(),
            }
        }
    }
}

/// The header values an initiator's Logon is signed over (DESIGN.md §4: SendingTime(52),
/// MsgType(35), MsgSeqNum(34), SenderCompID(49), TargetCompID(56), then Username(553)).
#[derive(Debug, Clone, Copy)]
pub struct LogonHeader<'a> {
    /// SendingTime(52) exactly as sent.
    pub sending_time: &'a [u8],
    /// MsgSeqNum(34).
    pub msg_seq_num: SeqNum,
    /// SenderCompID(49): ours.
    pub sender_comp_id: &'a str,
    /// TargetCompID(56): the counterparty's.
    pub target_comp_id: &'a str,
}

/// Fields an initiator adds to the body of its Logon, such as the Username(553) and
/// RawData(96) of a signed logon: the server plugs its keys in here, so the session layer
/// stays free of key handling.
pub trait LogonSigner: Send {
    /// Appends `(tag, value)` pairs for the Logon with `header`, in the order they are sent.
    fn logon_fields(&self, header: &LogonHeader<'_>, out: &mut Vec<(u32, Vec<u8>)>);
}

/// How an initiator logs on ([`Session::initiate`]).
pub struct InitiatorLogon {
    /// HeartBtInt(108) asked for, in seconds.
    pub heartbeat_secs: u32,
    /// Ask the counterparty to start both sequences again at 1 (ResetSeqNumFlag(141)=Y).
    pub reset_seq_num: bool,
    /// Extra Logon fields (credentials), if the counterparty wants them.
    pub signer: Option<Box<dyn LogonSigner>>,
}

impl std::fmt::Debug for InitiatorLogon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorLogon")
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("reset_seq_num", &self.reset_seq_num)
            .field("signer", &self.signer.is_some())
            .finish()
    }
}

/// A message received ahead of its turn (MsgSeqNum too high), kept until the gap is filled.
#[derive(Debug)]
struct Queued {
    bytes: Vec<u8>,
    /// Already acted upon when it arrived (a Logon or ResendRequest); only its number counts.
    handled: bool,
}

/// Most messages kept while waiting for a gap to be filled; beyond it the peer is misbehaving.
const MAX_QUEUED: usize = 10_000;

/// Buffers of processed application messages kept for the next ones (see
/// [`Session::recycle_message`]): enough for the messages of a busy read.
const MAX_SPARE_MESSAGES: usize = 64;
/// A recycled buffer larger than this (one huge message) is freed rather than kept.
const SPARE_MESSAGE_CAPACITY: usize = 4096;

/// Header tags the session writes itself; everything else of a stored message is resent as is.
fn is_rewritten_header_tag(t: u32) -> bool {
    matches!(
        t,
        tag::BEGIN_STRING
            | tag::BODY_LENGTH
            | tag::MSG_TYPE
            | tag::MSG_SEQ_NUM
            | tag::SENDER_COMP_ID
            | tag::TARGET_COMP_ID
            | tag::SENDING_TIME
            | tag::POSS_DUP_FLAG
            | tag::POSS_RESEND
            | tag::ORIG_SENDING_TIME
            | tag::CHECK_SUM
    )
}

fn since(now: UtcTimestamp, then: UtcTimestamp) -> Duration {
    Duration::from_nanos(u64::try_from(now.nanos() - then.nanos()).unwrap_or(0))
}

fn after(t: UtcTimestamp, d: Duration) -> UtcTimestamp {
    UtcTimestamp::from_nanos(t.nanos().saturating_add(d.as_nanos() as i64))
}

/// One FIX session on one connection (acceptor side).
pub struct Session {
    config: SessionConfig,
    store: Box<dyn MessageStore>,
    dict: &'static Dictionary,
    state: SessionState,
    rx: Vec<u8>,
    tx: Vec<u8>,
    events: VecDeque<SessionEvent>,
    /// Buffers given back by [`Session::recycle_message`].
    spare_messages: Vec<Vec<u8>>,
    encoder: Encoder,
    decoder: Decoder,
    resend_decoder: Decoder,
    connected_at: UtcTimestamp,
    heartbeat: Option<Duration>,
    last_received: UtcTimestamp,
    last_sent: UtcTimestamp,
    test_request_sent: Option<UtcTimestamp>,
    test_request_count: u64,
    logout_sent_at: Option<UtcTimestamp>,
    queue: BTreeMap<SeqNum, Queued>,
    /// Highest MsgSeqNum seen while a ResendRequest of ours is outstanding.
    resend_pending: Option<SeqNum>,
    resend_buf: Vec<(SeqNum, Vec<u8>)>,
    auth: Option<Box<dyn SessionAuth>>,
    /// The MsgSeqNum expected next. The store keeps it too, but only up to the oldest
    /// application message not answered yet (see [`Session::commit_store`]).
    target: SeqNum,
    /// The oldest application message the application has not answered yet, as it last said
    /// ([`Session::set_unanswered`]).
    unanswered: Option<SeqNum>,
    /// `Some(asked for a reset)` on an initiator ([`Session::initiate`]).
    initiator: Option<bool>,
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
        let dict = Dictionary::for_version(config.begin_string);
        Self {
            config,
            dict,
            state: SessionState::AwaitingLogon,
            rx: Vec::with_capacity(4096),
            tx: Vec::with_capacity(4096),
            events: VecDeque::new(),
            spare_messages: Vec::new(),
            encoder: Encoder::new(),
            decoder: Decoder::new(),
            resend_decoder: Decoder::new(),
            connected_at: now,
            heartbeat: None,
            last_received: now,
            last_sent: now,
            test_request_sent: None,
            test_request_count: 0,
            logout_sent_at: None,
            queue: BTreeMap::new(),
            resend_pending: None,
            resend_buf: Vec::new(),
            auth: None,
            target: store.next_target_seq(),
            unanswered: None,
            initiator: None,
            store,
        }
    }

    /// A session that initiates a connection made at `now`: its Logon is sent at once
    /// ([`Session::transmit`]); the counterparty's answering Logon makes it active. The answer
    /// must come within the logon timeout, in sequence or ahead (a gap is asked for with a
    /// ResendRequest, as on an acceptor); a Logout instead of it ends the session with its text.
    pub fn initiate(
        config: SessionConfig,
        store: Box<dyn MessageStore>,
        now: UtcTimestamp,
        logon: InitiatorLogon,
    ) -> Self {
        let mut s = Self::new(config, store, now);
        s.state = SessionState::LogonSent;
        if logon.reset_seq_num {
            if let Err(e) = s.store.reset(now) {
                s.disconnect(DisconnectReason::StoreFailure(e.to_string()));
                return s;
            }
            s.target = s.store.next_target_seq();
        }
        s.heartbeat =
            (logon.heartbeat_secs > 0).then(|| Duration::from_secs(logon.heartbeat_secs.into()));
        s.initiator = Some(logon.reset_seq_num);
        let mut extra = Vec::new();
        if let Some(signer) = &logon.signer {
            let mut sending_time = Vec::with_capacity(24);
            now.write(TimePrecision::Millis, &mut sending_time);
            let header = LogonHeader {
                sending_time: &sending_time,
                msg_seq_num: s.store.next_sender_seq(),
                sender_comp_id: &s.config.sender_comp_id,
                target_comp_id: &s.config.target_comp_id,
            };
            signer.logon_fields(&header, &mut extra);
        }
        let begin = s.config.begin_string;
        let appl_ver = s.config.default_appl_ver_id.clone();
        s.send_session_message(now, b"A", |enc| {
            enc.uint(tag::ENCRYPT_METHOD, 0);
            enc.uint(tag::HEART_BT_INT, logon.heartbeat_secs.into());
            if logon.reset_seq_num {
                enc.flag(tag::RESET_SEQ_NUM_FLAG, true);
            }
            if begin == BeginString::Fixt11 {
                enc.str(tag::DEFAULT_APPL_VER_ID, appl_ver.as_bytes());
            }
            for (t, v) in &extra {
                enc.str(*t, v);
            }
        });
        s.commit_store();
        s
    }

    /// Authenticates Logons (and, if configured, every application message) with `auth`.
    pub fn with_auth(mut self, auth: Box<dyn SessionAuth>) -> Self {
        self.auth = Some(auth);
        self
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
        self.target
    }

    /// Tells the session the MsgSeqNum of the oldest application message it delivered whose
    /// answers the application has not handed back yet (`None`: all answered). The stored
    /// expected MsgSeqNum never passes it, so a crash before the answers are stored makes the
    /// next Logon ask for that message again (a ResendRequest) instead of losing it; the
    /// answers, when they come, are stored in the same commit as the number.
    pub fn set_unanswered(&mut self, oldest: Option<SeqNum>) {
        self.unanswered = oldest;
    }

    /// The agreed heartbeat interval, once logged on (`None` if 0 or not logged on).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// Gives back the store (e.g. to keep it open across connections).
    pub fn into_store(self) -> Box<dyn MessageStore> {
        self.store
    }

    /// Feeds bytes received from the counterparty at `now`.
    pub fn handle_input(&mut self, now: UtcTimestamp, bytes: &[u8]) {
        if self.state == SessionState::Disconnected {
            return;
        }
        self.rx.extend_from_slice(bytes);
        // Take the buffers out of `self` so messages can borrow them while the session mutates.
        let mut rx = std::mem::take(&mut self.rx);
        let mut dec = std::mem::take(&mut self.decoder);
        let mut pos = 0;
        while self.state != SessionState::Disconnected {
            match frame(&rx[pos..], self.config.max_message_size) {
                Frame::Complete { len } => {
                    let bytes = &rx[pos..pos + len];
                    pos += len;
                    self.last_received = now;
                    self.test_request_sent = None;
                    self.on_frame(now, bytes, &mut dec);
                }
                Frame::Incomplete => break,
                Frame::Garbled { skip, reason } => {
                    pos += skip;
                    self.events.push_back(SessionEvent::Garbled {
                        reason: reason.to_string(),
                    });
                }
                Frame::Oversized { len } => {
                    pos = rx.len();
                    if self.state == SessionState::Active {
                        self.send_logout(now, "Message too large");
                    }
                    self.disconnect(DisconnectReason::MessageTooLarge(len));
                }
            }
        }
        rx.drain(..pos);
        self.rx = rx;
        self.decoder = dec;
        // The session's own answers, and the numbers of what was read, in one commit (held
        // back at the first application message: it goes with that message's answers).
        self.commit_store();
    }

    /// Commits the store's pending changes (see [`MessageStore::commit`]); a failure ends
    /// the session like any store failure. Call it after [`Session::send_application`]s,
    /// before writing [`Session::transmit`]; the session's own entry points commit
    /// themselves.
    pub fn commit_store(&mut self) {
        let keep = self.storable_target();
        if keep != self.store.next_target_seq() {
            if let Err(e) = self.store.set_next_target_seq(keep) {
                self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
                return;
            }
        }
        if let Err(e) = self.store.commit() {
            self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
        }
    }

    /// The expected MsgSeqNum the store may keep: the session's, held back to the oldest
    /// application message that is not answered yet (still queued for the application, or
    /// with it, as [`Session::set_unanswered`] said).
    fn storable_target(&self) -> SeqNum {
        let queued = self.events.iter().find_map(|e| match e {
            SessionEvent::Application { seq, .. } => Some(*seq),
            _ => None,
        });
        [queued, self.unanswered]
            .into_iter()
            .flatten()
            .fold(self.target, SeqNum::min)
    }

    fn on_frame(&mut self, now: UtcTimestamp, bytes: &[u8], dec: &mut Decoder) {
        // Only what an established session received, before its answers; a Logon once it is
        // accepted (after its answer): a refused one never writes the store.
        let established =
            |s: SessionState| matches!(s, SessionState::Active | SessionState::LogoutSent);
        let log = self.config.log_inbound;
        if log && established(self.state) {
            self.log_inbound(bytes);
        }
        let was_established = established(self.state);
        match dec.decode(bytes) {
            Ok(msg) => self.on_message(now, &msg),
            Err(e) => self.on_undecodable(now, bytes, e),
        }
        if log && !was_established && established(self.state) {
            self.log_inbound(bytes);
        }
        self.drain_queue(now, dec);
    }

    fn log_inbound(&mut self, bytes: &[u8]) {
        let seq = find_field(bytes, b"\x0134=")
            .and_then(portcullis_fix::decode::parse_u64)
            .unwrap_or(0);
        if let Err(e) = self.store.save_inbound(seq, bytes) {
            self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
        }
    }

    /// A framed message whose fields cannot be split: reject it if it is the expected one.
    fn on_undecodable(&mut self, now: UtcTimestamp, bytes: &[u8], e: portcullis_fix::DecodeError) {
        if matches!(
            self.state,
            SessionState::AwaitingLogon | SessionState::LogonSent
        ) {
            self.disconnect(DisconnectReason::LogonRejected(e.to_string()));
            return;
        }
        let seq = find_field(bytes, b"\x0134=").and_then(portcullis_fix::decode::parse_u64);
        let msg_type = find_field(bytes, b"\x0135=").unwrap_or(b"");
        let (reason, ref_tag) = match e {
            portcullis_fix::DecodeError::BadDataLength { tag } => {
                (SessionRejectReason::IncorrectDataFormat, Some(tag))
            }
            _ => (SessionRejectReason::InvalidTagNumber, None),
        };
        match seq {
            Some(seq) if seq == self.target => {
                let msg_type = msg_type.to_vec();
                self.send_reject(now, seq, &msg_type, reason, ref_tag, &e.to_string());
                self.advance_target(seq + 1);
            }
            _ => self.events.push_back(SessionEvent::Garbled {
                reason: e.to_string(),
            }),
        }
    }

    fn on_message(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>) {
        match self.state {
            SessionState::AwaitingLogon => self.on_first_message(now, msg),
            SessionState::LogonSent => self.on_logon_answer(now, msg),
            SessionState::Active | SessionState::LogoutSent => self.on_session_message(now, msg),
            SessionState::Disconnected => {}
        }
    }

    fn comp_ids_match(&self, msg: &MessageRef<'_>) -> Result<(), u32> {
        if msg.get(tag::SENDER_COMP_ID) != Some(self.config.target_comp_id.as_bytes()) {
            return Err(tag::SENDER_COMP_ID);
        }
        if msg.get(tag::TARGET_COMP_ID) != Some(self.config.sender_comp_id.as_bytes()) {
            return Err(tag::TARGET_COMP_ID);
        }
        Ok(())
    }

    fn check_sending_time(
        &self,
        now: UtcTimestamp,
        msg: &MessageRef<'_>,
    ) -> Result<UtcTimestamp, SessionRejectReason> {
        let raw = msg
            .get(tag::SENDING_TIME)
            .ok_or(SessionRejectReason::RequiredTagMissing)?;
        let t = UtcTimestamp::parse(raw).ok_or(SessionRejectReason::IncorrectDataFormat)?;
        let diff = (now.nanos() - t.nanos()).unsigned_abs();
        if diff > self.config.sending_time_tolerance.as_nanos() as u64 {
            return Err(SessionRejectReason::SendingTimeAccuracyProblem);
        }
        Ok(t)
    }

    /// The header checks of a connection's first message, either side: a Logon of this
    /// session's BeginString and CompIDs with a MsgSeqNum; its MsgSeqNum, or `None` after
    /// disconnecting (nothing answered: the peer is not known to be the counterparty).
    fn logon_header(&mut self, msg: &MessageRef<'_>) -> Option<SeqNum> {
        let refused = if msg.msg_type() != b"A" {
            DisconnectReason::FirstMessageNotLogon
        } else if msg.begin_string() != self.config.begin_string.as_bytes() {
            DisconnectReason::LogonRejected("wrong BeginString".into())
        } else if self.comp_ids_match(msg).is_err() {
            DisconnectReason::LogonRejected("unknown CompID".into())
        } else if let Some(seq) = msg.seq_num().filter(|&s| s > 0) {
            return Some(seq);
        } else {
            DisconnectReason::LogonRejected("MsgSeqNum(34) missing or invalid".into())
        };
        self.disconnect(refused);
        None
    }

    /// The first message of a connection: it must be a valid, acceptable Logon. Nothing here
    /// changes the session's stored state until the Logon has passed every check.
    fn on_first_message(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>) {
        let Some(seq) = self.logon_header(msg) else {
            return;
        };
        if let Err(text) = self.check_logon(now, msg, seq) {
            self.refuse_logon(now, &text);
            return;
        }
        if let Some(auth) = self.auth.as_mut() {
            if let Err(text) = auth.authenticate_logon(msg, now) {
                self.refuse_logon(now, &text);
                return;
            }
        } else if self.config.require_message_signature {
            // Signatures need a key: a session configured for them cannot run without one.
            self.refuse_logon(now, "Authentication failed");
            return;
        }
        let heartbeat_secs = msg
            .get_u64(tag::HEART_BT_INT)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        let reset_requested = msg.get_flag(tag::RESET_SEQ_NUM_FLAG);
        let reset = reset_requested || self.config.reset.on_logon;
        // NextExpectedMsgSeqNum(789): the number of ours the peer expects next. Higher than the
        // number we send next means it holds messages we never sent: no session can go on.
        let next_expected = match msg.get(tag::NEXT_EXPECTED_MSG_SEQ_NUM) {
            None => None,
            Some(v) => match portcullis_fix::decode::parse_u64(v).filter(|&n| n > 0) {
                Some(n) => Some(n),
                None => {
                    self.refuse_logon(now, "NextExpectedMsgSeqNum(789) invalid");
                    return;
                }
            },
        };
        if let Some(x) = next_expected {
            let ours = if reset {
                1
            } else {
                self.store.next_sender_seq()
            };
            if x > ours {
                let text =
                    format!("NextExpectedMsgSeqNum too high, expecting {ours} but received {x}");
                self.refuse_logon(now, &text);
                return;
            }
        }

        // Accepted: from here on the Logon may change the session.
        if reset {
            if let Err(e) = self.store.reset(now) {
                self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
                return;
            }
            self.target = self.store.next_target_seq();
        }
        let expected = self.target;
        if seq < expected {
            let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
            self.refuse_logon(now, &text);
            return;
        }
        self.heartbeat = (heartbeat_secs > 0).then(|| Duration::from_secs(heartbeat_secs.into()));
        self.state = SessionState::Active;
        // A peer that sent 789 gets ours: the next of its numbers we expect (the Logon's own,
        // if it was in sequence, counts as received).
        let our_next_expected = if seq > expected { expected } else { seq + 1 };
        let Some(logon_seq) = self.send_logon_answer(
            now,
            heartbeat_secs,
            reset_requested,
            next_expected.map(|_| our_next_expected),
        ) else {
            return;
        };
        self.events.push_back(SessionEvent::LoggedOn {
            heartbeat_secs,
            reset,
        });
        if let Some(x) = next_expected.filter(|&x| x < logon_seq) {
            // The peer missed our messages from `x`: they follow the Logon at once, as a
            // ResendRequest would have them.
            self.retransmit(now, x, logon_seq - 1);
            if self.state == SessionState::Disconnected {
                return;
            }
        }
        if seq > expected {
            // Logon accepted, but messages are missing before it: they come first.
            self.queue.insert(
                seq,
                Queued {
                    bytes: Vec::new(),
                    handled: true,
                },
            );
            if next_expected.is_some() {
                // Our 789 asks for them: a peer that sends 789 resends from it unasked.
                self.resend_pending = Some(seq);
            } else {
                self.request_resend(now, expected, seq);
            }
        } else {
            self.advance_target(seq + 1);
        }
    }

    /// Initiator: the counterparty's first message, which must be the Logon answering ours.
    fn on_logon_answer(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>) {
        if msg.msg_type() == b"5" {
            let text = msg.get_str(tag::TEXT).unwrap_or("Logout").to_owned();
            self.disconnect(DisconnectReason::LogonRejected(text));
            return;
        }
        let Some(seq) = self.logon_header(msg) else {
            return;
        };
        if let Err(text) = self.check_logon(now, msg, seq) {
            self.logout_and_disconnect(now, &text);
            return;
        }
        let asked_reset = self.initiator == Some(true);
        if msg.get_flag(tag::RESET_SEQ_NUM_FLAG) && !asked_reset {
            // Our Logon went out in the old sequence: a reset only the peer wants cannot apply.
            self.logout_and_disconnect(now, "ResetSeqNumFlag(141)=Y not asked for");
            return;
        }
        let expected = self.target;
        if seq < expected {
            let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
            self.logout_and_disconnect(now, &text);
            return;
        }
        // NextExpectedMsgSeqNum(789): the peer missed our messages from it; they follow at once.
        let ours = self.store.next_sender_seq();
        let next_expected = match msg.get(tag::NEXT_EXPECTED_MSG_SEQ_NUM) {
            None => None,
            Some(v) => match portcullis_fix::decode::parse_u64(v).filter(|&n| n > 0 && n <= ours) {
                Some(n) => Some(n),
                None => {
                    self.logout_and_disconnect(now, "NextExpectedMsgSeqNum(789) invalid");
                    return;
                }
            },
        };
        self.state = SessionState::Active;
        let heartbeat_secs = self.heartbeat.map_or(0, |d| d.as_secs() as u32);
        self.events.push_back(SessionEvent::LoggedOn {
            heartbeat_secs,
            reset: asked_reset,
        });
        // Our Logon itself needs no resend: the answer shows it arrived.
        if let Some(x) = next_expected.filter(|&x| x + 1 < ours) {
            self.retransmit(now, x, ours - 2);
            if self.state == SessionState::Disconnected {
                return;
            }
        }
        if seq > expected {
            self.queue.insert(
                seq,
                Queued {
                    bytes: Vec::new(),
                    handled: true,
                },
            );
            self.request_resend(now, expected, seq);
        } else {
            self.advance_target(seq + 1);
        }
    }

    /// Our Logon answering the peer's: HeartBtInt echoed, ResetSeqNumFlag echoed when it asked
    /// for a reset, our NextExpectedMsgSeqNum(789) when it sent its own, DefaultApplVerID on
    /// FIXT.1.1. Returns its MsgSeqNum.
    fn send_logon_answer(
        &mut self,
        now: UtcTimestamp,
        heartbeat_secs: u32,
        reset: bool,
        next_expected: Option<SeqNum>,
    ) -> Option<SeqNum> {
        let begin = self.config.begin_string;
        let appl_ver = self.config.default_appl_ver_id.clone();
        self.send_session_message(now, b"A", |enc| {
            enc.uint(tag::ENCRYPT_METHOD, 0);
            enc.uint(tag::HEART_BT_INT, heartbeat_secs.into());
            if reset {
                enc.flag(tag::RESET_SEQ_NUM_FLAG, true);
            }
            if let Some(n) = next_expected {
                enc.uint(tag::NEXT_EXPECTED_MSG_SEQ_NUM, n);
            }
            if begin == BeginString::Fixt11 {
                enc.str(tag::DEFAULT_APPL_VER_ID, appl_ver.as_bytes());
            }
        })
    }

    /// A Logon with ResetSeqNumFlag(141)=Y on a logged-on session: the FIX session protocol's
    /// in-session sequence reset (a session that runs through the night starting a new day
    /// without disconnecting). Checked and authenticated as a first Logon is; then both sides
    /// start again at 1: its MsgSeqNum is 1, and so is our answering Logon's. What either side
    /// sent before can no longer be asked for.
    fn on_in_session_reset(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>, seq: SeqNum) {
        if let Err(text) = self.check_logon(now, msg, seq) {
            self.logout_and_disconnect(now, &text);
            return;
        }
        let next_expected = msg.get(tag::NEXT_EXPECTED_MSG_SEQ_NUM);
        if let Some(v) = next_expected {
            // Our next number after the reset is 1.
            if portcullis_fix::decode::parse_u64(v) != Some(1) {
                let text = format!(
                    "NextExpectedMsgSeqNum too high, expecting 1 but received {}",
                    String::from_utf8_lossy(v)
                );
                self.logout_and_disconnect(now, &text);
                return;
            }
        }
        if let Some(auth) = self.auth.as_mut() {
            if let Err(text) = auth.authenticate_logon(msg, now) {
                self.logout_and_disconnect(now, &text);
                return;
            }
        }
        if let Err(e) = self.store.reset(now) {
            self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
            return;
        }
        let heartbeat_secs = msg
            .get_u64(tag::HEART_BT_INT)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        self.heartbeat = (heartbeat_secs > 0).then(|| Duration::from_secs(heartbeat_secs.into()));
        self.queue.clear();
        self.resend_pending = None;
        // The application's unanswered messages are numbered in the old sequence: it forgets
        // their numbers at this event, so they do not hold back the new one's stored number.
        self.unanswered = None;
        self.events.push_back(SessionEvent::SequenceReset);
        self.target = self.store.next_target_seq();
        if self
            .send_logon_answer(now, heartbeat_secs, true, next_expected.map(|_| seq + 1))
            .is_some()
        {
            self.advance_target(seq + 1);
        }
    }

    /// Checks of a Logon's content; the error is the Logout text.
    fn check_logon(
        &self,
        now: UtcTimestamp,
        msg: &MessageRef<'_>,
        seq: SeqNum,
    ) -> Result<(), String> {
        if self.config.validate {
            if let Err(r) = self.dict.validate(msg) {
                return Err(match r.ref_tag {
                    Some(t) => format!("Invalid Logon: {} ({t})", r.reason.description()),
                    None => format!("Invalid Logon: {}", r.reason.description()),
                });
            }
        }
        match self.check_sending_time(now, msg) {
            Ok(_) => {}
            Err(r) => return Err(format!("Invalid Logon: {}", r.description())),
        }
        if msg.get(tag::ENCRYPT_METHOD) != Some(b"0") {
            return Err("Unsupported EncryptMethod(98): only 0 (none) is accepted".into());
        }
        let hb = msg
            .get(tag::HEART_BT_INT)
            .and_then(portcullis_fix::decode::parse_u64)
            .ok_or_else(|| "HeartBtInt(108) missing or invalid".to_string())?;
        let (lo, hi) = self.config.heartbeat_range;
        if hb < u64::from(lo) || hb > u64::from(hi) {
            return Err(format!(
                "HeartBtInt(108) must be between {lo} and {hi} seconds"
            ));
        }
        if self.config.begin_string == BeginString::Fixt11
            && msg.get(tag::DEFAULT_APPL_VER_ID) != Some(self.config.default_appl_ver_id.as_bytes())
        {
            return Err(format!(
                "DefaultApplVerID(1137) must be {}",
                self.config.default_appl_ver_id
            ));
        }
        if msg.get_flag(tag::RESET_SEQ_NUM_FLAG) && seq != 1 {
            return Err("ResetSeqNumFlag(141)=Y requires MsgSeqNum(34)=1".into());
        }
        Ok(())
    }

    /// Answers a refused Logon with a Logout that is neither stored nor counted: a peer that
    /// has not logged on must not be able to change the session's sequence numbers.
    fn refuse_logon(&mut self, now: UtcTimestamp, text: &str) {
        let seq = self.store.next_sender_seq();
        let c = &self.config;
        let enc = &mut self.encoder;
        enc.start(c.begin_string.as_bytes(), b"5");
        write_header(enc, c, seq, now);
        enc.str(tag::TEXT, text.as_bytes());
        self.tx.extend_from_slice(enc.finish());
        self.disconnect(DisconnectReason::LogonRejected(text.to_owned()));
    }

    fn on_session_message(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>) {
        let msg_type = msg.msg_type();
        if msg.begin_string() != self.config.begin_string.as_bytes() {
            self.logout_and_disconnect(now, "Incorrect BeginString");
            return;
        }
        let Some(seq) = msg.seq_num().filter(|&s| s > 0) else {
            self.logout_and_disconnect(now, "MsgSeqNum(34) missing or invalid");
            return;
        };
        if let Err(ref_tag) = self.comp_ids_match(msg) {
            let t = msg_type.to_vec();
            self.send_reject(
                now,
                seq,
                &t,
                SessionRejectReason::CompIdProblem,
                Some(ref_tag),
                "CompID problem",
            );
            self.logout_and_disconnect(now, "CompID problem");
            return;
        }
        let sending_time = match self.check_sending_time(now, msg) {
            Ok(t) => t,
            Err(SessionRejectReason::SendingTimeAccuracyProblem) => {
                let t = msg_type.to_vec();
                self.send_reject(
                    now,
                    seq,
                    &t,
                    SessionRejectReason::SendingTimeAccuracyProblem,
                    Some(tag::SENDING_TIME),
                    "SendingTime accuracy problem",
                );
                self.logout_and_disconnect(now, "SendingTime accuracy problem");
                return;
            }
            Err(reason) => {
                self.reject_and_count(now, msg, seq, reason, Some(tag::SENDING_TIME));
                return;
            }
        };

        // A Logon with ResetSeqNumFlag=Y starts both sequences again: its number is 1.
        if msg_type == b"A" && msg.get_flag(tag::RESET_SEQ_NUM_FLAG) {
            if self.state == SessionState::Active {
                self.on_in_session_reset(now, msg, seq);
            }
            return;
        }

        // SequenceReset-Reset ignores MsgSeqNum: it exists to recover from lost numbers.
        if msg_type == b"4" && !msg.get_flag(tag::GAP_FILL_FLAG) {
            self.on_sequence_reset_reset(now, msg, seq);
            return;
        }

        let expected = self.target;
        if seq > expected {
            match msg_type {
                // A Logout is honoured at once, whatever the gap.
                b"5" => {
                    self.on_logout(now);
                    return;
                }
                // A ResendRequest is served first, then the gap is requested.
                b"2" => {
                    self.on_resend_request(now, msg, seq);
                    if self.state == SessionState::Disconnected {
                        return;
                    }
                    self.enqueue(now, seq, Vec::new(), true);
                }
                _ => self.enqueue(now, seq, msg.bytes().to_vec(), false),
            }
            if self.state != SessionState::Disconnected {
                self.request_resend(now, expected, seq);
            }
            return;
        }
        if seq < expected {
            if msg.poss_dup() {
                // Already received: a duplicate from a resend, ignored.
                return;
            }
            let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
            self.logout_and_disconnect(now, &text);
            return;
        }

        // seq == expected
        if msg.poss_dup() && msg_type != b"4" {
            match msg.get(tag::ORIG_SENDING_TIME).map(UtcTimestamp::parse) {
                None => {
                    self.reject_and_count(
                        now,
                        msg,
                        seq,
                        SessionRejectReason::RequiredTagMissing,
                        Some(tag::ORIG_SENDING_TIME),
                    );
                    return;
                }
                Some(None) => {
                    self.reject_and_count(
                        now,
                        msg,
                        seq,
                        SessionRejectReason::IncorrectDataFormat,
                        Some(tag::ORIG_SENDING_TIME),
                    );
                    return;
                }
                Some(Some(orig)) if orig > sending_time => {
                    let t = msg_type.to_vec();
                    self.send_reject(
                        now,
                        seq,
                        &t,
                        SessionRejectReason::SendingTimeAccuracyProblem,
                        Some(tag::ORIG_SENDING_TIME),
                        "OrigSendingTime(122) later than SendingTime(52)",
                    );
                    self.advance_target(seq + 1);
                    self.logout_and_disconnect(now, "SendingTime accuracy problem");
                    return;
                }
                Some(Some(_)) => {}
            }
        }
        if self.config.validate {
            if let Err(r) = self.dict.validate(msg) {
                if r.reason == SessionRejectReason::InvalidMsgType
                    && self.dict.msg_type_in_spec(msg_type)
                {
                    // A real FIX message we do not offer: a business-level refusal.
                    self.send_business_reject(now, seq, msg_type, 3, "Unsupported Message Type");
                    self.advance_target(seq + 1);
                } else {
                    self.reject_and_count(now, msg, seq, r.reason, r.ref_tag);
                }
                return;
            }
        }
        if self.config.require_message_signature && !Dictionary::is_admin(msg_type) {
            let verdict = match self.auth.as_mut() {
                Some(auth) => auth.verify_message(msg),
                None => Err(MessageAuthError::Invalid),
            };
            if let Err(e) = verdict {
                let (reason, ref_tag) = match e {
                    MessageAuthError::Missing => (
                        SessionRejectReason::RequiredTagMissing,
                        tag::SIGNATURE_LENGTH,
                    ),
                    MessageAuthError::Invalid => {
                        (SessionRejectReason::SignatureProblem, tag::SIGNATURE)
                    }
                };
                self.reject_and_count(now, msg, seq, reason, Some(ref_tag));
                return;
            }
        }
        if self.auth.as_ref().is_some_and(|a| a.revoked(now)) {
            self.logout_and_disconnect(now, "Credential revoked");
            return;
        }
        self.advance_target(seq + 1);
        self.dispatch(now, msg, seq);
    }

    fn dispatch(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>, seq: SeqNum) {
        match msg.msg_type() {
            b"0" => {}
            b"1" => {
                let id = msg.get(tag::TEST_REQ_ID).unwrap_or(b"").to_vec();
                self.send_session_message(now, b"0", |enc| {
                    enc.str(tag::TEST_REQ_ID, &id);
                });
            }
            b"2" => self.on_resend_request(now, msg, seq),
            b"3" => {}
            b"4" => {
                // SequenceReset-GapFill, in sequence.
                match msg.get_u64(tag::NEW_SEQ_NO) {
                    Some(new) if new > seq => self.advance_target(new),
                    _ => {
                        let t = msg.msg_type().to_vec();
                        self.send_reject(
                            now,
                            seq,
                            &t,
                            SessionRejectReason::ValueIsIncorrect,
                            Some(tag::NEW_SEQ_NO),
                            "NewSeqNo(36) must be greater than MsgSeqNum(34)",
                        );
                    }
                }
            }
            b"5" => self.on_logout(now),
            b"A" => self.logout_and_disconnect(now, "Logon received while already logged on"),
            _ => {
                let mut message = self.spare_messages.pop().unwrap_or_default();
                message.clear();
                message.extend_from_slice(msg.bytes());
                self.events
                    .push_back(SessionEvent::Application { seq, message });
            }
        }
    }

    fn on_sequence_reset_reset(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>, seq: SeqNum) {
        let expected = self.target;
        match msg.get_u64(tag::NEW_SEQ_NO) {
            Some(new) if new > expected => {
                self.advance_target(new);
                // Messages queued below the new number will never be needed.
                self.queue = self.queue.split_off(&new);
            }
            Some(new) if new == expected => {}
            Some(_) => {
                let t = msg.msg_type().to_vec();
                self.send_reject(
                    now,
                    seq,
                    &t,
                    SessionRejectReason::ValueIsIncorrect,
                    Some(tag::NEW_SEQ_NO),
                    "NewSeqNo(36) lower than the expected MsgSeqNum",
                );
            }
            None => {
                let t = msg.msg_type().to_vec();
                self.send_reject(
                    now,
                    seq,
                    &t,
                    SessionRejectReason::RequiredTagMissing,
                    Some(tag::NEW_SEQ_NO),
                    "NewSeqNo(36) missing",
                );
            }
        }
    }

    fn on_logout(&mut self, now: UtcTimestamp) {
        if self.state != SessionState::LogoutSent {
            self.send_logout(now, "");
        }
        self.events.push_back(SessionEvent::LoggedOut);
        if self.config.reset.on_logout {
            if let Err(e) = self.store.reset(now) {
                self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
                return;
            }
            self.target = self.store.next_target_seq();
        }
        self.disconnect(DisconnectReason::LogoutComplete);
    }

    fn enqueue(&mut self, now: UtcTimestamp, seq: SeqNum, bytes: Vec<u8>, handled: bool) {
        if self.queue.len() >= MAX_QUEUED {
            self.logout_and_disconnect(now, "Too many messages received out of sequence");
            return;
        }
        self.queue.insert(seq, Queued { bytes, handled });
    }

    fn request_resend(&mut self, now: UtcTimestamp, from: SeqNum, seen: SeqNum) {
        if let Some(pending) = self.resend_pending {
            // Our open-ended request already covers everything after `from`.
            self.resend_pending = Some(pending.max(seen));
            return;
        }
        self.resend_pending = Some(seen);
        let infinity = if self.config.begin_string == BeginString::Fix42 {
            999_999
        } else {
            0
        };
        self.send_session_message(now, b"2", |enc| {
            enc.uint(tag::BEGIN_SEQ_NO, from);
            enc.uint(tag::END_SEQ_NO, infinity);
        });
    }

    fn drain_queue(&mut self, now: UtcTimestamp, dec: &mut Decoder) {
        while self.state == SessionState::Active || self.state == SessionState::LogoutSent {
            let expected = self.target;
            while let Some(entry) = self.queue.first_entry() {
                if *entry.key() < expected {
                    entry.remove();
                } else {
                    break;
                }
            }
            let Some(q) = self.queue.remove(&expected) else {
                break;
            };
            if q.handled {
                self.advance_target(expected + 1);
                continue;
            }
            match dec.decode(&q.bytes) {
                Ok(msg) => self.on_session_message(now, &msg),
                Err(_) => self.advance_target(expected + 1),
            }
        }
        if let Some(pending) = self.resend_pending {
            if self.target > pending {
                self.resend_pending = None;
            }
        }
    }

    /// Serves a ResendRequest from the store: application messages again with PossDupFlag=Y
    /// and OrigSendingTime, session messages (and numbers we no longer hold) as SequenceReset-GapFill.
    fn on_resend_request(&mut self, now: UtcTimestamp, msg: &MessageRef<'_>, seq: SeqNum) {
        let (Some(begin), Some(end)) =
            (msg.get_u64(tag::BEGIN_SEQ_NO), msg.get_u64(tag::END_SEQ_NO))
        else {
            let t = msg.msg_type().to_vec();
            self.send_reject(
                now,
                seq,
                &t,
                SessionRejectReason::RequiredTagMissing,
                Some(tag::BEGIN_SEQ_NO),
                "BeginSeqNo(7) and EndSeqNo(16) are required",
            );
            return;
        };
        let last_sent = self.store.next_sender_seq().saturating_sub(1);
        let end = if end == 0 || end == 999_999 || end > last_sent {
            last_sent
        } else {
            end
        };
        self.retransmit(now, begin, end);
    }

    /// Sends our messages `begin..=end` again from the store: application messages with
    /// PossDupFlag=Y and OrigSendingTime, session messages (and numbers we no longer hold) as
    /// SequenceReset-GapFill.
    fn retransmit(&mut self, now: UtcTimestamp, begin: SeqNum, end: SeqNum) {
        if begin == 0 || begin > end {
            return;
        }
        let mut stored = std::mem::take(&mut self.resend_buf);
        stored.clear();
        if let Err(e) = self.store.outbound_range(begin, end, &mut stored) {
            self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
            return;
        }
        let mut gap_start: Option<SeqNum> = None;
        let mut next = begin;
        for (s, bytes) in stored.drain(..) {
            if s > next && gap_start.is_none() {
                gap_start = Some(next);
            }
            let resend = match self.resend_decoder.decode(&bytes) {
                Ok(m) => !Dictionary::is_admin(m.msg_type()) || m.msg_type() == b"3",
                Err(_) => false,
            };
            if resend {
                if let Some(g) = gap_start.take() {
                    self.send_gap_fill(now, g, s);
                }
                self.resend_stored(now, &bytes);
            } else if gap_start.is_none() {
                gap_start = Some(s);
            }
            next = s + 1;
        }
        self.resend_buf = stored;
        if next <= end && gap_start.is_none() {
            gap_start = Some(next);
        }
        if let Some(g) = gap_start {
            self.send_gap_fill(now, g, end + 1);
        }
    }

    fn send_gap_fill(&mut self, now: UtcTimestamp, seq: SeqNum, new_seq: SeqNum) {
        let c = &self.config;
        let enc = &mut self.encoder;
        enc.start(c.begin_string.as_bytes(), b"4");
        write_header(enc, c, seq, now);
        enc.flag(tag::POSS_DUP_FLAG, true);
        enc.timestamp(tag::ORIG_SENDING_TIME, now, TimePrecision::Millis);
        enc.flag(tag::GAP_FILL_FLAG, true);
        enc.uint(tag::NEW_SEQ_NO, new_seq);
        self.tx.extend_from_slice(enc.finish());
        self.last_sent = now;
    }

    fn resend_stored(&mut self, now: UtcTimestamp, bytes: &[u8]) {
        let Ok(m) = self.resend_decoder.decode(bytes) else {
            return;
        };
        let (Some(seq), Some(orig)) = (m.seq_num(), m.get(tag::SENDING_TIME)) else {
            return;
        };
        let c = &self.config;
        let enc = &mut self.encoder;
        enc.start(c.begin_string.as_bytes(), m.msg_type());
        write_header(enc, c, seq, now);
        enc.flag(tag::POSS_DUP_FLAG, true);
        enc.str(tag::ORIG_SENDING_TIME, orig);
        for f in m.fields() {
            if !is_rewritten_header_tag(f.tag) {
                enc.str(f.tag, f.value);
            }
        }
        self.tx.extend_from_slice(enc.finish());
        self.last_sent = now;
    }

    fn reject_and_count(
        &mut self,
        now: UtcTimestamp,
        msg: &MessageRef<'_>,
        seq: SeqNum,
        reason: SessionRejectReason,
        ref_tag: Option<u32>,
    ) {
        let t = msg.msg_type().to_vec();
        let text = reason.description();
        self.send_reject(now, seq, &t, reason, ref_tag, text);
        if seq == self.target {
            self.advance_target(seq + 1);
        }
    }

    fn send_reject(
        &mut self,
        now: UtcTimestamp,
        ref_seq: SeqNum,
        ref_msg_type: &[u8],
        reason: SessionRejectReason,
        ref_tag: Option<u32>,
        text: &str,
    ) {
        let version = self.config.begin_string;
        let code = reason.defined_in(version).then_some(reason);
        self.send_session_message(now, b"3", |enc| {
            enc.uint(tag::REF_SEQ_NUM, ref_seq);
            if let Some(t) = ref_tag {
                enc.uint(tag::REF_TAG_ID, t.into());
            }
            if !ref_msg_type.is_empty() {
                enc.str(tag::REF_MSG_TYPE, ref_msg_type);
            }
            if let Some(r) = code {
                enc.uint(tag::SESSION_REJECT_REASON, r.code().into());
            }
            enc.str(tag::TEXT, text.as_bytes());
        });
        self.events.push_back(SessionEvent::RejectSent {
            ref_seq,
            reason: Some(reason),
            text: text.to_owned(),
        });
    }

    fn send_business_reject(
        &mut self,
        now: UtcTimestamp,
        ref_seq: SeqNum,
        ref_msg_type: &[u8],
        reason: u64,
        text: &str,
    ) {
        self.send_session_message(now, b"j", |enc| {
            enc.uint(tag::REF_SEQ_NUM, ref_seq);
            enc.str(tag::REF_MSG_TYPE, ref_msg_type);
            enc.uint(tag::BUSINESS_REJECT_REASON, reason);
            enc.str(tag::TEXT, text.as_bytes());
        });
    }

    fn send_logout(&mut self, now: UtcTimestamp, text: &str) {
        self.send_session_message(now, b"5", |enc| {
            if !text.is_empty() {
                enc.str(tag::TEXT, text.as_bytes());
            }
        });
    }

    fn logout_and_disconnect(&mut self, now: UtcTimestamp, text: &str) {
        self.send_logout(now, text);
        self.disconnect(DisconnectReason::ProtocolError(text.to_owned()));
    }

    fn disconnect(&mut self, reason: DisconnectReason) {
        if self.state != SessionState::Disconnected {
            self.state = SessionState::Disconnected;
            self.events.push_back(SessionEvent::Disconnect(reason));
        }
    }

    /// The next expected MsgSeqNum is `next`; the store gets it at the next commit.
    fn advance_target(&mut self, next: SeqNum) {
        self.target = next;
    }

    /// Encodes, stores and queues a session-level message with the next outbound MsgSeqNum.
    fn send_session_message(
        &mut self,
        now: UtcTimestamp,
        msg_type: &[u8],
        body: impl FnOnce(&mut Encoder),
    ) -> Option<SeqNum> {
        if self.state == SessionState::Disconnected {
            return None;
        }
        self.send_sequenced(now, msg_type, body).ok()
    }

    /// Encodes a message with the next outbound MsgSeqNum, stores it, then queues it: a message
    /// is never on the wire before it can be resent.
    fn send_sequenced(
        &mut self,
        now: UtcTimestamp,
        msg_type: &[u8],
        body: impl FnOnce(&mut Encoder),
    ) -> Result<SeqNum, crate::store::StoreError> {
        let seq = self.store.next_sender_seq();
        let c = &self.config;
        let enc = &mut self.encoder;
        enc.start(c.begin_string.as_bytes(), msg_type);
        write_header(enc, c, seq, now);
        body(enc);
        let bytes = enc.finish();
        if let Err(e) = self.store.save_outbound(seq, bytes) {
            self.disconnect(DisconnectReason::StoreFailure(e.to_string()));
            return Err(e);
        }
        self.tx.extend_from_slice(bytes);
        self.last_sent = now;
        Ok(seq)
    }

    /// Runs the timers (heartbeat, test request, logon and logout timeouts) at `now`.
    pub fn handle_timeout(&mut self, now: UtcTimestamp) {
        self.run_timers(now);
        self.commit_store();
    }

    fn run_timers(&mut self, now: UtcTimestamp) {
        match self.state {
            SessionState::Disconnected => {}
            SessionState::AwaitingLogon | SessionState::LogonSent => {
                if since(now, self.connected_at) >= self.config.logon_timeout {
                    self.disconnect(DisconnectReason::LogonTimeout);
                }
            }
            SessionState::Active | SessionState::LogoutSent => {
                if self.state == SessionState::Active
                    && self.auth.as_ref().is_some_and(|a| a.revoked(now))
                {
                    self.logout_and_disconnect(now, "Credential revoked");
                    return;
                }
                if let Some(at) = self.logout_sent_at {
                    if since(now, at) >= self.config.logout_timeout {
                        self.disconnect(DisconnectReason::LogoutTimeout);
                        return;
                    }
                }
                let Some(hb) = self.heartbeat else { return };
                let grace = hb + hb / 5;
                match self.test_request_sent {
                    Some(at) if since(now, at) >= grace => {
                        self.disconnect(DisconnectReason::HeartbeatTimeout);
                        return;
                    }
                    None if since(now, self.last_received) >= grace => {
                        self.test_request_count += 1;
                        let id = format!("TEST-{}", self.test_request_count);
                        self.send_session_message(now, b"1", |enc| {
                            enc.str(tag::TEST_REQ_ID, id.as_bytes());
                        });
                        self.test_request_sent = Some(now);
                    }
                    _ => {}
                }
                if since(now, self.last_sent) >= hb {
                    self.send_session_message(now, b"0", |_| {});
                }
            }
        }
    }

    /// When [`Session::handle_timeout`] should next be called, if any timer is running.
    pub fn poll_timeout(&self) -> Option<UtcTimestamp> {
        match self.state {
            SessionState::Disconnected => None,
            SessionState::AwaitingLogon | SessionState::LogonSent => {
                Some(after(self.connected_at, self.config.logon_timeout))
            }
            SessionState::Active | SessionState::LogoutSent => {
                let logout = self
                    .logout_sent_at
                    .map(|at| after(at, self.config.logout_timeout));
                let hb = self.heartbeat.map(|hb| {
                    let grace = hb + hb / 5;
                    let liveness = match self.test_request_sent {
                        Some(at) => after(at, grace),
                        None => after(self.last_received, grace),
                    };
                    liveness.min(after(self.last_sent, hb))
                });
                match (logout, hb) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Bytes waiting to be sent to the counterparty (stored first: after
    /// [`Session::send_application`], call [`Session::commit_store`] before sending them).
    pub fn transmit(&self) -> &[u8] {
        debug_assert!(
            self.tx.is_empty() || !self.store.has_uncommitted(),
            "output read before the store committed it"
        );
        &self.tx
    }

    /// How many bytes wait to be sent, committed to the store or not (for a handler pacing
    /// its output to the peer's reading).
    pub fn unsent_len(&self) -> usize {
        self.tx.len()
    }

    /// Marks the first `n` bytes of [`Session::transmit`] as sent.
    pub fn consume_transmit(&mut self, n: usize) {
        self.tx.drain(..n.min(self.tx.len()));
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Gives back the buffer of a processed [`SessionEvent::Application`], for the next
    /// application message: in the steady state, receiving one allocates nothing.
    pub fn recycle_message(&mut self, message: Vec<u8>) {
        // Enough for the messages of one read; an oversized buffer is not kept.
        if self.spare_messages.len() < MAX_SPARE_MESSAGES
            && message.capacity() <= SPARE_MESSAGE_CAPACITY
        {
            self.spare_messages.push(message);
        }
    }

    /// Sends an application message: the session writes the standard header, `body` appends the
    /// body fields, and the session stores and queues it. Returns its MsgSeqNum.
    pub fn send_application(
        &mut self,
        now: UtcTimestamp,
        msg_type: &[u8],
        body: impl FnOnce(&mut Encoder),
    ) -> Result<SeqNum, SendError> {
        if self.state != SessionState::Active && self.state != SessionState::LogoutSent {
            return Err(SendError::NotLoggedOn);
        }
        Ok(self.send_sequenced(now, msg_type, body)?)
    }

    /// Starts a Logout initiated by us (e.g. on server shutdown).
    pub fn logout(&mut self, now: UtcTimestamp, text: &str) {
        self.start_logout(now, text);
        self.commit_store();
    }

    fn start_logout(&mut self, now: UtcTimestamp, text: &str) {
        match self.state {
            SessionState::Active => {
                self.send_logout(now, text);
                self.state = SessionState::LogoutSent;
                self.logout_sent_at = Some(now);
            }
            SessionState::AwaitingLogon | SessionState::LogonSent => {
                self.disconnect(DisconnectReason::ProtocolError(text.to_owned()))
            }
            SessionState::LogoutSent | SessionState::Disconnected => {}
        }
    }

    /// Tells the session its connection has ended.
    pub fn on_disconnect(&mut self, now: UtcTimestamp) {
        let was_logged_on = !matches!(
            self.state,
            SessionState::AwaitingLogon | SessionState::LogonSent
        );
        self.state = SessionState::Disconnected;
        if self.config.reset.on_disconnect && was_logged_on {
            // Best effort: the connection is gone; a failing store shows up at the next logon.
            let _ = self.store.reset(now);
            self.target = self.store.next_target_seq();
        }
        let _ = self.store.sync();
    }
}

fn write_header(enc: &mut Encoder, c: &SessionConfig, seq: SeqNum, now: UtcTimestamp) {
    enc.str(tag::SENDER_COMP_ID, c.sender_comp_id.as_bytes());
    enc.str(tag::TARGET_COMP_ID, c.target_comp_id.as_bytes());
    enc.uint(tag::MSG_SEQ_NUM, seq);
    enc.timestamp(tag::SENDING_TIME, now, TimePrecision::Millis);
}

/// Finds the value after `needle` (`␁34=`) in raw bytes, for messages that do not decode.
fn find_field<'a>(bytes: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
    let start = bytes.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let len = bytes[start..]
        .iter()
        .position(|&b| b == portcullis_fix::SOH)?;
    Some(&bytes[start..start + len])
}

#[cfg(test)]
mod tests;
