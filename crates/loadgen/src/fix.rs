//! The FIX side of the load generator: encoding the client's messages (Logon, NewOrderSingle,
//! OrderCancelRequest, Heartbeat, Logout), optionally signed as DESIGN.md §4 says, and telling
//! which of our orders a server message answers.
//!
//! ClOrdID(11) is `<prefix>-<n>` for order `n` of a run and `<prefix>-C<n>` for the cancel of
//! order `n`. The prefix is unique per run and session, so a server that rejects duplicate
//! ClOrdIDs within a trading day never sees one twice, and the index comes back in every
//! answer: matching an answer to its order is a parse, not a lookup.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use portcullis_auth::fix_sig::{sign_logon, HmacKey, LogonFields, TAG_B64_LEN};
use portcullis_fix::{checksum, MessageRef, TimePrecision, UtcTimestamp};

/// An API key for signed sessions: the id goes in Username(553), the secret (its ASCII text)
/// keys the HMACs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Key id.
    pub key_id: String,
    /// Secret, exactly as `portcullis keys create` prints it.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads `{"key_id": ..., "secret": ...}` as printed by `portcullis keys create --json`.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        let field = |name: &str| {
            v.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("key file has no string field {name:?}"))
        };
        Ok(Self {
            key_id: field("key_id")?,
            secret: field("secret")?,
        })
    }
}

/// What a FIX client of the load generator sends.
#[derive(Debug, Clone)]
pub struct FixOptions {
    /// BeginString(8): `FIX.4.2`, `FIX.4.4` or `FIXT.1.1`.
    pub begin_string: String,
    /// Our SenderCompID(49) (the server's target_comp_id).
    pub sender: String,
    /// Our TargetCompID(56) (the server's sender_comp_id).
    pub target: String,
    /// HeartBtInt(108) in seconds.
    pub heartbeat_secs: u32,
    /// Symbol(55).
    pub symbol: String,
    /// Side(54): b'1' buy, b'2' sell.
    pub side: u8,
    /// OrderQty(38), as written.
    pub qty: String,
    /// Price(44), as written.
    pub price: String,
    /// TimeInForce(59): b'0' Day, b'1' GTC, b'3' IOC, b'4' FOK.
    pub time_in_force: u8,
    /// Account(1), if any.
    pub account: Option<String>,
    /// Sign the Logon with this key (Username 553, RawData 95/96).
    pub credentials: Option<Credentials>,
    /// Sign every order and cancel (SignatureLength 93 / Signature 89).
    pub sign_messages: bool,
}

impl FixOptions {
    /// The same options for session number `n` (1-based): `{n}` in the CompIDs becomes `n`
    /// with two digits (`LG{n}` → `LG01`).
    pub fn for_session(&self, n: usize) -> Self {
        let num = format!("{n:02}");
        Self {
            sender: self.sender.replace("{n}", &num),
            target: self.target.replace("{n}", &num),
            ..self.clone()
        }
    }
}

/// Bytes of `93=44␁89=<44 characters>␁`.
const SIGNATURE_TRAILER: usize = 6 + 3 + TAG_B64_LEN + 1;
/// Bytes of `10=nnn␁`.
const CHECKSUM_TRAILER: usize = 7;

/// Encodes the messages of one client session, numbering them from 1 (every Logon resets).
pub struct FixEncoder {
    opts: FixOptions,
    enc: portcullis_fix::Encoder,
    seq: u64,
    /// ClOrdID prefix, without the `-`.
    prefix: Vec<u8>,
    hmac: Option<HmacKey>,
    ts: Vec<u8>,
    id: Vec<u8>,
}

impl std::fmt::Debug for FixEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixEncoder")
            .field("sender", &self.opts.sender)
            .field("seq", &self.seq)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

impl FixEncoder {
    /// An encoder for `opts` whose ClOrdIDs start with `prefix` (letters and digits).
    pub fn new(opts: FixOptions, prefix: &str) -> Self {
        let hmac = match (&opts.credentials, opts.sign_messages) {
            (Some(c), true) => Some(HmacKey::new(c.secret.as_bytes())),
            _ => None,
        };
        Self {
            opts,
            enc: portcullis_fix::Encoder::new(),
            seq: 1,
            prefix: prefix.as_bytes().to_vec(),
            hmac,
            ts: Vec::with_capacity(32),
            id: Vec::with_capacity(64),
        }
    }

    /// The options.
    pub fn options(&self) -> &FixOptions {
        &self.opts
    }

    /// The ClOrdID prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The MsgSeqNum the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    fn header(&mut self, msg_type: &[u8]) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        self.ts.clear();
        UtcTimestamp::now().write(TimePrecision::Millis, &mut self.ts);
        let e = &mut self.enc;
        e.start(self.opts.begin_string.as_bytes(), msg_type)
            .str(49, self.opts.sender.as_bytes())
            .str(56, self.opts.target.as_bytes())
            .uint(34, seq)
            .str(52, &self.ts);
        seq
    }

    /// Appends a Logon with ResetSeqNumFlag=Y (MsgSeqNum 1), signed if there are credentials.
    pub fn logon(&mut self, out: &mut Vec<u8>) {
        self.seq = 1;
        let seq = self.header(b"A");
        let seq_txt = seq.to_string();
        let hb = u64::from(self.opts.heartbeat_secs);
        self.enc.uint(98, 0).uint(108, hb);
        if let Some(c) = &self.opts.credentials {
            let sig = sign_logon(
                c.secret.as_bytes(),
                &LogonFields {
                    sending_time: &self.ts,
                    msg_type: b"A",
                    msg_seq_num: seq_txt.as_bytes(),
                    sender_comp_id: self.opts.sender.as_bytes(),
                    target_comp_id: self.opts.target.as_bytes(),
                    username: c.key_id.as_bytes(),
                },
            );
            self.enc.data(95, 96, sig.as_bytes());
        }
        self.enc.flag(141, true);
        if let Some(c) = &self.opts.credentials {
            self.enc.str(553, c.key_id.as_bytes());
        }
        if self.opts.begin_string == "FIXT.1.1" {
            self.enc.str(1137, b"9");
        }
        out.extend_from_slice(self.enc.finish());
    }

    /// Appends NewOrderSingle number `index`: a limit order with ClOrdID `<prefix>-<index>`.
    pub fn order(&mut self, index: u64, out: &mut Vec<u8>) {
        self.header(b"D");
        cl_ord_id(&self.prefix, false, index, &mut self.id);
        let o = &self.opts;
        let e = &mut self.enc;
        e.str(11, &self.id);
        if let Some(a) = &o.account {
            e.str(1, a.as_bytes());
        }
        if o.begin_string == "FIX.4.2" {
            e.char(21, b'1'); // HandlInst: required in 4.2
        }
        e.str(55, o.symbol.as_bytes())
            .char(54, o.side)
            .str(60, &self.ts)
            .str(38, o.qty.as_bytes())
            .char(40, b'2')
            .str(44, o.price.as_bytes())
            .char(59, o.time_in_force);
        self.finish_application(out);
    }

    /// Appends the OrderCancelRequest of order `index` (ClOrdID `<prefix>-C<index>`).
    pub fn cancel(&mut self, index: u64, out: &mut Vec<u8>) {
        self.header(b"F");
        let o = &self.opts;
        let e = &mut self.enc;
        cl_ord_id(&self.prefix, false, index, &mut self.id);
        e.str(41, &self.id);
        cl_ord_id(&self.prefix, true, index, &mut self.id);
        e.str(11, &self.id);
        if let Some(a) = &o.account {
            e.str(1, a.as_bytes());
        }
        e.str(55, o.symbol.as_bytes())
            .char(54, o.side)
            .str(60, &self.ts)
            .str(38, o.qty.as_bytes());
        self.finish_application(out);
    }

    /// Appends a Heartbeat, answering a TestRequest if `test_req_id` is given.
    pub fn heartbeat(&mut self, test_req_id: Option<&[u8]>, out: &mut Vec<u8>) {
        self.header(b"0");
        if let Some(id) = test_req_id {
            self.enc.str(112, id);
        }
        out.extend_from_slice(self.enc.finish());
    }

    /// Appends a Logout.
    pub fn logout(&mut self, out: &mut Vec<u8>) {
        self.header(b"5");
        out.extend_from_slice(self.enc.finish());
    }

    /// Finishes an application message, with SignatureLength(93)/Signature(89) when signing.
    fn finish_application(&mut self, out: &mut Vec<u8>) {
        let Some(key) = &self.hmac else {
            out.extend_from_slice(self.enc.finish());
            return;
        };
        // BodyLength counts the signature fields, which have a fixed size: reserve them, then
        // sign the bytes before `93=` and fill in the signature and the checksum.
        self.enc.raw(b"93=44\x0189=");
        self.enc.raw(&[b'A'; TAG_B64_LEN]);
        self.enc.raw(b"\x01");
        let start = out.len();
        out.extend_from_slice(self.enc.finish());
        let msg = &mut out[start..];
        let n = msg.len();
        let sig_at = n - CHECKSUM_TRAILER - 1 - TAG_B64_LEN;
        let tag = key.tag(&msg[..n - CHECKSUM_TRAILER - SIGNATURE_TRAILER]);
        B64.encode_slice(tag, &mut msg[sig_at..sig_at + TAG_B64_LEN])
            .expect("a 32-byte tag is 44 base64 characters");
        let cs = checksum(&msg[..n - CHECKSUM_TRAILER]);
        msg[n - 4..n - 1].copy_from_slice(&[
            b'0' + cs / 100,
            b'0' + (cs / 10) % 10,
            b'0' + cs % 10,
        ]);
    }
}

/// Writes the ClOrdID of order `index` (or of its cancel) into `out`.
pub fn cl_ord_id(prefix: &[u8], cancel: bool, index: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(prefix);
    out.push(b'-');
    if cancel {
        out.push(b'C');
    }
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut v = index;
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

/// Reads a ClOrdID of ours: `Some((index, is_cancel))`, or `None` for anyone else's.
pub fn parse_cl_ord_id(prefix: &[u8], id: &[u8]) -> Option<(u64, bool)> {
    let rest = id.strip_prefix(prefix)?.strip_prefix(b"-")?;
    let (cancel, digits) = match rest.strip_prefix(b"C") {
        Some(d) => (true, d),
        None => (false, rest),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((n, cancel))
}

/// What an answer to one of our orders said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// ExecutionReport with ExecType(150) New (`0`).
    New,
    /// ExecutionReport with ExecType(150) Rejected (`8`).
    Rejected,
    /// Any other ExecutionReport (fill, cancel, expiry...), with its ExecType.
    OtherExec(u8),
    /// OrderCancelReject (35=9).
    CancelReject,
    /// BusinessMessageReject (35=j) naming the ClOrdID in BusinessRejectRefID(379).
    BusinessReject,
    /// The echo server's copy of our bytes.
    Echo,
}

impl AnswerKind {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "exec_new",
            Self::Rejected => "exec_rejected",
            Self::OtherExec(_) => "exec_other",
            Self::CancelReject => "cancel_reject",
            Self::BusinessReject => "business_reject",
            Self::Echo => "echo",
        }
    }
}

/// One message from the server, as the load generator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An answer to our order `index` (or to its cancel).
    Answer {
        /// Order number within the run.
        index: u64,
        /// True if it answers the cancel of that order.
        cancel: bool,
        /// What it said.
        kind: AnswerKind,
    },
    /// A TestRequest (answer with a Heartbeat carrying this TestReqID).
    TestRequest(Vec<u8>),
    /// A Heartbeat.
    Heartbeat,
    /// The Logon acknowledgement.
    Logon,
    /// A Logout, with its Text(58).
    Logout(String),
    /// A session-level Reject (35=3): RefSeqNum(45) and Text(58). Our messages are never
    /// supposed to earn one.
    SessionReject {
        /// RefSeqNum(45).
        ref_seq: Option<u64>,
        /// Text(58).
        text: String,
    },
    /// Anything else: its MsgType.
    Other(Vec<u8>),
}

/// Classifies a decoded server message for a client whose ClOrdIDs start with `prefix`.
pub fn classify(msg: &MessageRef<'_>, prefix: &[u8]) -> Event {
    let text = || String::from_utf8_lossy(msg.get(58).unwrap_or_default()).into_owned();
    let ours = |tag: u32| msg.get(tag).and_then(|id| parse_cl_ord_id(prefix, id));
    let answer = |(index, cancel): (u64, bool), kind| Event::Answer {
        index,
        cancel,
        kind,
    };
    match msg.msg_type() {
        b"8" => match ours(11) {
            Some(id) => {
                let kind = match msg.get(150) {
                    Some(b"0") => AnswerKind::New,
                    Some(b"8") => AnswerKind::Rejected,
                    Some([c, ..]) => AnswerKind::OtherExec(*c),
                    _ => AnswerKind::OtherExec(b'?'),
                };
                answer(id, kind)
            }
            None => Event::Other(b"8".to_vec()),
        },
        b"9" => match ours(11) {
            Some(id) => answer(id, AnswerKind::CancelReject),
            None => Event::Other(b"9".to_vec()),
        },
        b"j" => match ours(379) {
            Some(id) => answer(id, AnswerKind::BusinessReject),
            None => Event::SessionReject {
                ref_seq: msg.get_u64(45),
                text: format!("BusinessMessageReject without our ClOrdID: {}", text()),
            },
        },
        b"0" => Event::Heartbeat,
        b"1" => Event::TestRequest(msg.get(112).unwrap_or_default().to_vec()),
        b"A" => Event::Logon,
        b"5" => Event::Logout(text()),
        b"3" => Event::SessionReject {
            ref_seq: msg.get_u64(45),
            text: text(),
        },
        other => Event::Other(other.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_fix::{frame, Decoder, Dictionary, Frame};

    fn opts() -> FixOptions {
        FixOptions {
            begin_string: "FIX.4.4".into(),
            sender: "LG{n}".into(),
            target: "BENCH".into(),
            heartbeat_secs: 30,
            symbol: "BTC-PERP".into(),
            side: b'1',
            qty: "1".into(),
            price: "1000".into(),
            time_in_force: b'1',
            account: Some("BENCH-ACC".into()),
            credentials: None,
            sign_messages: false,
        }
    }

    fn creds() -> Credentials {
        Credentials {
            key_id: "key-1".into(),
            secret: "6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172".into(),
        }
    }

    fn fields(m: &[u8]) -> Vec<(u32, String)> {
        assert_eq!(frame(m, 1 << 16), Frame::Complete { len: m.len() });
        let mut d = Decoder::new();
        let msg = d.decode(m).unwrap();
        msg.fields()
            .map(|f| (f.tag, String::from_utf8_lossy(f.value).into_owned()))
            .collect()
    }

    fn get(f: &[(u32, String)], tag: u32) -> Option<&str> {
        f.iter().find(|(t, _)| *t == tag).map(|(_, v)| v.as_str())
    }

    fn validate(m: &[u8]) {
        let mut d = Decoder::new();
        let msg = d.decode(m).unwrap();
        let dict = Dictionary::for_version(portcullis_fix::BeginString::Fix44);
        assert_eq!(
            dict.validate(&msg),
            Ok(()),
            "{}",
            String::from_utf8_lossy(m)
        );
    }

    #[test]
    fn session_numbers_fill_comp_ids() {
        let o = opts().for_session(7);
        assert_eq!(o.sender, "LG07");
        assert_eq!(o.target, "BENCH");
    }

    #[test]
    fn orders_are_valid_fix_with_unique_ids_and_increasing_seq() {
        let mut e = FixEncoder::new(opts().for_session(1), "r1s1");
        let mut out = Vec::new();
        e.logon(&mut out);
        let logon = fields(&out);
        assert_eq!(get(&logon, 35), Some("A"));
        assert_eq!(get(&logon, 34), Some("1"));
        assert_eq!(get(&logon, 141), Some("Y"));
        assert_eq!(get(&logon, 108), Some("30"));
        assert_eq!(get(&logon, 553), None, "unsigned without credentials");
        validate(&out);
        for i in [0u64, 1, 12_345] {
            out.clear();
            e.order(i, &mut out);
            validate(&out);
            let f = fields(&out);
            assert_eq!(get(&f, 35), Some("D"));
            assert_eq!(get(&f, 49), Some("LG01"));
            assert_eq!(get(&f, 56), Some("BENCH"));
            assert_eq!(get(&f, 11), Some(format!("r1s1-{i}").as_str()));
            assert_eq!(get(&f, 55), Some("BTC-PERP"));
            assert_eq!(get(&f, 40), Some("2"));
            assert_eq!(get(&f, 44), Some("1000"));
            assert_eq!(get(&f, 1), Some("BENCH-ACC"));
            assert_eq!(get(&f, 52), get(&f, 60));
        }
        assert_eq!(e.next_seq(), 5);
        out.clear();
        e.cancel(12_345, &mut out);
        validate(&out);
        let f = fields(&out);
        assert_eq!(get(&f, 41), Some("r1s1-12345"));
        assert_eq!(get(&f, 11), Some("r1s1-C12345"));
        // A batch: messages are appended back to back.
        out.clear();
        e.order(1, &mut out);
        let one = out.len();
        e.order(2, &mut out);
        assert_eq!(frame(&out, 1 << 16), Frame::Complete { len: one });
    }

    #[test]
    fn fix42_orders_carry_handl_inst() {
        let mut o = opts();
        o.begin_string = "FIX.4.2".into();
        let mut e = FixEncoder::new(o, "p");
        let mut out = Vec::new();
        e.order(3, &mut out);
        assert_eq!(get(&fields(&out), 21), Some("1"));
    }

    #[test]
    fn signed_logon_verifies() {
        let mut o = opts();
        o.credentials = Some(creds());
        let mut e = FixEncoder::new(o, "p");
        let mut out = Vec::new();
        e.logon(&mut out);
        validate(&out);
        let f = fields(&out);
        assert_eq!(get(&f, 553), Some("key-1"));
        assert_eq!(get(&f, 95), Some("44"));
        let lf = LogonFields {
            sending_time: get(&f, 52).unwrap().as_bytes(),
            msg_type: b"A",
            msg_seq_num: b"1",
            sender_comp_id: b"LG{n}",
            target_comp_id: b"BENCH",
            username: b"key-1",
        };
        assert!(portcullis_auth::fix_sig::verify_logon(
            creds().secret.as_bytes(),
            &lf,
            get(&f, 96).unwrap().as_bytes()
        ));
    }

    #[test]
    fn signed_orders_verify_and_unsigned_ones_do_not_carry_a_signature() {
        let mut o = opts();
        o.credentials = Some(creds());
        o.sign_messages = true;
        let mut e = FixEncoder::new(o.clone(), "p");
        let mut out = Vec::new();
        e.order(9, &mut out);
        validate(&out);
        assert_eq!(
            portcullis_auth::fix_sig::verify_message(creds().secret.as_bytes(), &out),
            Ok(())
        );
        out.clear();
        e.cancel(9, &mut out);
        assert_eq!(
            portcullis_auth::fix_sig::verify_message(creds().secret.as_bytes(), &out),
            Ok(())
        );
        o.sign_messages = false;
        let mut e = FixEncoder::new(o, "p");
        out.clear();
        e.order(9, &mut out);
        assert_eq!(get(&fields(&out), 93), None);
    }

    #[test]
    fn cl_ord_ids_round_trip() {
        let mut id = Vec::new();
        for (i, c) in [(0, false), (7, true), (u64::MAX, false)] {
            cl_ord_id(b"abc1", c, i, &mut id);
            assert_eq!(parse_cl_ord_id(b"abc1", &id), Some((i, c)));
        }
        assert_eq!(parse_cl_ord_id(b"abc1", b"abc2-5"), None);
        assert_eq!(parse_cl_ord_id(b"abc1", b"abc1-"), None);
        assert_eq!(parse_cl_ord_id(b"abc1", b"abc1-C"), None);
        assert_eq!(parse_cl_ord_id(b"abc1", b"abc1-5x"), None);
        assert_eq!(parse_cl_ord_id(b"abc1", b"abc15"), None);
        assert_eq!(parse_cl_ord_id(b"abc1", b"abc1-18446744073709551616"), None);
    }

    fn server_msg(msg_type: &str, body: &[(u32, &str)]) -> Vec<u8> {
        let mut e = portcullis_fix::Encoder::new();
        e.start(b"FIX.4.4", msg_type.as_bytes())
            .str(49, b"BENCH")
            .str(56, b"LG01")
            .uint(34, 2)
            .str(52, b"20240102-10:00:00.000");
        for (t, v) in body {
            e.str(*t, v.as_bytes());
        }
        e.finish().to_vec()
    }

    fn classified(msg_type: &str, body: &[(u32, &str)]) -> Event {
        let m = server_msg(msg_type, body);
        let mut d = Decoder::new();
        let msg = d.decode(&m).unwrap();
        classify(&msg, b"run")
    }

    #[test]
    fn answers_are_matched_by_cl_ord_id() {
        let ans = |index, cancel, kind| Event::Answer {
            index,
            cancel,
            kind,
        };
        assert_eq!(
            classified("8", &[(37, "O1"), (11, "run-42"), (150, "0"), (39, "0")]),
            ans(42, false, AnswerKind::New)
        );
        assert_eq!(
            classified("8", &[(11, "run-43"), (150, "8"), (103, "99")]),
            ans(43, false, AnswerKind::Rejected)
        );
        assert_eq!(
            classified("8", &[(11, "run-C43"), (41, "run-43"), (150, "4")]),
            ans(43, true, AnswerKind::OtherExec(b'4'))
        );
        assert_eq!(
            classified("9", &[(11, "run-C44"), (41, "run-44")]),
            ans(44, true, AnswerKind::CancelReject)
        );
        assert_eq!(
            classified(
                "j",
                &[
                    (45, "5"),
                    (372, "D"),
                    (379, "run-7"),
                    (380, "4"),
                    (58, "no venue")
                ]
            ),
            ans(7, false, AnswerKind::BusinessReject)
        );
        // Someone else's order is not ours.
        assert_eq!(
            classified("8", &[(11, "other-1"), (150, "0")]),
            Event::Other(b"8".to_vec())
        );
    }

    #[test]
    fn session_messages_are_told_apart() {
        assert_eq!(
            classified("1", &[(112, "T1")]),
            Event::TestRequest(b"T1".to_vec())
        );
        assert_eq!(classified("0", &[]), Event::Heartbeat);
        assert_eq!(classified("A", &[(98, "0"), (108, "30")]), Event::Logon);
        assert_eq!(classified("5", &[(58, "bye")]), Event::Logout("bye".into()));
        assert_eq!(
            classified("3", &[(45, "9"), (58, "Required tag missing")]),
            Event::SessionReject {
                ref_seq: Some(9),
                text: "Required tag missing".into()
            }
        );
        assert!(matches!(
            classified("j", &[(45, "9"), (372, "x"), (380, "3")]),
            Event::SessionReject {
                ref_seq: Some(9),
                ..
            }
        ));
        assert_eq!(classified("h", &[]), Event::Other(b"h".to_vec()));
    }

    #[test]
    fn key_files_are_read() {
        let c = Credentials::from_json(r#"{"key_id": "k1", "secret": "s3cr3t", "account": "A"}"#)
            .unwrap();
        assert_eq!(c.key_id, "k1");
        assert_eq!(c.secret, "s3cr3t");
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "Debug hides the secret"
        );
        assert!(Credentials::from_json(r#"{"key_id": "k1"}"#).is_err());
    }
}
