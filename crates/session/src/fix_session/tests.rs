//! One test per session-layer rule, driven with a fake clock and a counterparty built from the
//! codec, in the spirit of the FIX session-level test cases.

use super::*;
use crate::store::MemoryStore;
use portcullis_fix::{Frame, SOH};

fn t0() -> UtcTimestamp {
    UtcTimestamp::parse(b"20261128-12:00:00").unwrap()
}

fn secs(t: UtcTimestamp, s: i64) -> UtcTimestamp {
    UtcTimestamp::from_nanos(t.nanos() + s * 1_000_000_000)
}

/// The counterparty (CompID TW) talking to us (ISLD).
struct Peer {
    begin: BeginString,
    seq: SeqNum,
    enc: Encoder,
}

impl Peer {
    fn new(begin: BeginString) -> Self {
        Self {
            begin,
            seq: 1,
            enc: Encoder::new(),
        }
    }

    /// A message with the next sequence number.
    fn msg(&mut self, now: UtcTimestamp, msg_type: &str, fields: &[(u32, &str)]) -> Vec<u8> {
        let seq = self.seq;
        self.seq += 1;
        self.msg_seq(now, msg_type, seq, fields)
    }

    /// A message with an explicit sequence number (does not advance the counter).
    fn msg_seq(
        &mut self,
        now: UtcTimestamp,
        msg_type: &str,
        seq: SeqNum,
        fields: &[(u32, &str)],
    ) -> Vec<u8> {
        self.raw(now, msg_type, seq, "TW", "ISLD", fields)
    }

    fn raw(
        &mut self,
        now: UtcTimestamp,
        msg_type: &str,
        seq: SeqNum,
        sender: &str,
        target: &str,
        fields: &[(u32, &str)],
    ) -> Vec<u8> {
        let e = &mut self.enc;
        e.start(self.begin.as_bytes(), msg_type.as_bytes());
        e.str(49, sender.as_bytes());
        e.str(56, target.as_bytes());
        e.uint(34, seq);
        if !fields.iter().any(|(t, _)| *t == 52) {
            e.timestamp(52, now, TimePrecision::Millis);
        }
        for (t, v) in fields {
            e.str(*t, v.as_bytes());
        }
        e.finish().to_vec()
    }

    fn logon(&mut self, now: UtcTimestamp, hb: u32, extra: &[(u32, &str)]) -> Vec<u8> {
        let hb = hb.to_string();
        let mut f = vec![(98, "0"), (108, hb.as_str())];
        if self.begin == BeginString::Fixt11 {
            f.push((1137, "9"));
        }
        f.extend_from_slice(extra);
        self.msg(now, "A", &f)
    }
}

/// A complete FIX 4.4 NewOrderSingle body after `head` (header extras and ClOrdID), then `tail`
/// (trailer fields such as the signature).
fn order<'a>(head: &[(u32, &'a str)], tail: &[(u32, &'a str)]) -> Vec<(u32, &'a str)> {
    let mut f = head.to_vec();
    f.extend_from_slice(&[
        (55, "BTC-PERP"),
        (54, "1"),
        (60, "20261128-12:00:00"),
        (38, "1"),
        (40, "2"),
        (44, "100"),
    ]);
    f.extend_from_slice(tail);
    f
}

/// A decoded copy of one message we sent.
#[derive(Debug, Clone)]
struct Sent(Vec<(u32, String)>);

impl Sent {
    fn get(&self, tag: u32) -> Option<&str> {
        self.0
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }
    fn msg_type(&self) -> &str {
        self.get(35).unwrap()
    }
    fn seq(&self) -> SeqNum {
        self.get(34).unwrap().parse().unwrap()
    }
}

fn config(begin: BeginString) -> SessionConfig {
    SessionConfig::new(begin, "ISLD", "TW")
}

fn new_session(begin: BeginString) -> Session {
    Session::new(config(begin), Box::new(MemoryStore::new(t0())), t0())
}

/// Everything the session has queued for sending, decoded, and consumed.
fn sent(s: &mut Session) -> Vec<Sent> {
    let mut out = Vec::new();
    let tx = s.transmit().to_vec();
    let mut pos = 0;
    while pos < tx.len() {
        let Frame::Complete { len } = portcullis_fix::frame(&tx[pos..], 1 << 20) else {
            panic!("session sent an invalid message: {:?}", &tx[pos..]);
        };
        let mut d = Decoder::new();
        let m = d.decode(&tx[pos..pos + len]).unwrap();
        out.push(Sent(
            m.fields()
                .map(|f| (f.tag, String::from_utf8_lossy(f.value).into_owned()))
                .collect(),
        ));
        pos += len;
    }
    s.consume_transmit(tx.len());
    out
}

fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn types(msgs: &[Sent]) -> Vec<&str> {
    msgs.iter().map(Sent::msg_type).collect()
}

/// A session logged on at t0 with a 30 s heartbeat; returns it and the peer.
fn logged_on(begin: BeginString) -> (Session, Peer) {
    let mut s = new_session(begin);
    let mut p = Peer::new(begin);
    let logon = p.logon(t0(), 30, &[]);
    s.handle_input(t0(), &logon);
    assert_eq!(types(&sent(&mut s)), ["A"]);
    events(&mut s);
    (s, p)
}

// ---- Logon ----

#[test]
fn logon_is_answered_with_logon_echoing_heartbeat_interval() {
    for v in [BeginString::Fix42, BeginString::Fix44, BeginString::Fixt11] {
        let mut s = new_session(v);
        let mut p = Peer::new(v);
        s.handle_input(t0(), &p.logon(t0(), 30, &[]));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["A"]);
        assert_eq!(out[0].get(8), Some(v.as_str()));
        assert_eq!(out[0].get(108), Some("30"));
        assert_eq!(out[0].get(98), Some("0"));
        assert_eq!(out[0].get(49), Some("ISLD"));
        assert_eq!(out[0].get(56), Some("TW"));
        assert_eq!(out[0].seq(), 1);
        assert_eq!(s.state(), SessionState::Active);
        assert_eq!(s.next_target_seq(), 2);
        assert_eq!(s.next_sender_seq(), 2);
        assert!(events(&mut s).contains(&SessionEvent::LoggedOn {
            heartbeat_secs: 30,
            reset: false
        }));
    }
}

#[test]
fn fixt_logon_reply_carries_default_appl_ver_id() {
    let mut s = new_session(BeginString::Fixt11);
    let mut p = Peer::new(BeginString::Fixt11);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(sent(&mut s)[0].get(1137), Some("9"));
}

#[test]
fn fixt_logon_without_default_appl_ver_id_is_refused() {
    let mut s = new_session(BeginString::Fixt11);
    let mut p = Peer::new(BeginString::Fixt11);
    let logon = p.msg(t0(), "A", &[(98, "0"), (108, "30")]);
    s.handle_input(t0(), &logon);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn first_message_not_logon_disconnects_without_reply() {
    let mut s = new_session(BeginString::Fix44);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.msg(t0(), "0", &[]));
    assert!(sent(&mut s).is_empty());
    assert!(events(&mut s).contains(&SessionEvent::Disconnect(
        DisconnectReason::FirstMessageNotLogon
    )));
    assert_eq!(s.next_target_seq(), 1);
}

#[test]
fn logon_with_reset_seq_num_flag_resets_both_numbers_and_echoes_the_flag() {
    let mut store = MemoryStore::new(t0());
    store.set_next_sender_seq(50).unwrap();
    store.set_next_target_seq(40).unwrap();
    let mut s = Session::new(config(BeginString::Fix44), Box::new(store), t0());
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[(141, "Y")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["A"]);
    assert_eq!(out[0].get(141), Some("Y"));
    assert_eq!(out[0].seq(), 1);
    assert_eq!(s.next_target_seq(), 2);
    assert_eq!(s.next_sender_seq(), 2);
}

#[test]
fn reset_on_logon_policy_starts_every_logon_at_one() {
    let mut store = MemoryStore::new(t0());
    store.set_next_sender_seq(9).unwrap();
    store.set_next_target_seq(9).unwrap();
    let mut c = config(BeginString::Fix44);
    c.reset.on_logon = true;
    let mut s = Session::new(c, Box::new(store), t0());
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(sent(&mut s)[0].seq(), 1);
    assert_eq!(s.next_target_seq(), 2);
}

#[test]
fn refused_logon_does_not_change_the_stored_sequence_numbers() {
    let mut store = MemoryStore::new(t0());
    store.set_next_sender_seq(7).unwrap();
    store.set_next_target_seq(5).unwrap();
    let mut s = Session::new(config(BeginString::Fix44), Box::new(store), t0());
    let mut p = Peer::new(BeginString::Fix44);
    // A reset request with a bad heartbeat: refused, and the reset must not happen.
    s.handle_input(t0(), &p.logon(t0(), 99_999, &[(141, "Y")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert_eq!(s.next_sender_seq(), 7);
    assert_eq!(s.next_target_seq(), 5);
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn logon_with_unsupported_encrypt_method_is_refused() {
    let mut s = new_session(BeginString::Fix44);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.msg(t0(), "A", &[(98, "1"), (108, "30")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert!(out[0].get(58).unwrap().contains("EncryptMethod"));
}

#[test]
fn logon_with_sending_time_out_of_tolerance_is_refused() {
    let mut s = new_session(BeginString::Fix44);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(secs(t0(), 121), &p.logon(t0(), 30, &[]));
    assert_eq!(types(&sent(&mut s)), ["5"]);
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn logon_timeout_disconnects_a_silent_connection() {
    let mut s = new_session(BeginString::Fix44);
    assert_eq!(s.poll_timeout(), Some(secs(t0(), 10)));
    s.handle_timeout(secs(t0(), 9));
    assert_eq!(s.state(), SessionState::AwaitingLogon);
    s.handle_timeout(secs(t0(), 10));
    assert!(events(&mut s).contains(&SessionEvent::Disconnect(DisconnectReason::LogonTimeout)));
    assert!(sent(&mut s).is_empty());
}

#[test]
fn logon_with_msg_seq_num_too_low_is_refused() {
    let mut store = MemoryStore::new(t0());
    store.set_next_target_seq(10).unwrap();
    let mut s = Session::new(config(BeginString::Fix44), Box::new(store), t0());
    let mut p = Peer::new(BeginString::Fix44);
    p.seq = 3;
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert!(out[0].get(58).unwrap().contains("MsgSeqNum too low"));
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn logon_with_msg_seq_num_too_high_is_accepted_then_the_gap_is_requested() {
    let mut s = new_session(BeginString::Fix44);
    let mut p = Peer::new(BeginString::Fix44);
    p.seq = 5;
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["A", "2"]);
    assert_eq!(out[1].get(7), Some("1"));
    assert_eq!(out[1].get(16), Some("0"));
    // The gap is filled by a SequenceReset-GapFill up to the Logon's number: the Logon counts.
    let gf = p.msg_seq(
        t0(),
        "4",
        1,
        &[(43, "Y"), (122, "20261128-12:00:00"), (123, "Y"), (36, "5")],
    );
    s.handle_input(t0(), &gf);
    assert_eq!(s.next_target_seq(), 6);
    assert!(sent(&mut s).is_empty());
}

#[test]
fn fix42_resend_request_uses_999999_for_infinity() {
    let mut s = new_session(BeginString::Fix42);
    let mut p = Peer::new(BeginString::Fix42);
    p.seq = 3;
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    let out = sent(&mut s);
    assert_eq!(out[1].get(16), Some("999999"));
}

// ---- Heartbeat and TestRequest ----

#[test]
fn heartbeat_is_sent_after_an_interval_without_sending() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    s.handle_input(secs(t0(), 20), &p.msg(secs(t0(), 20), "0", &[]));
    assert!(s.poll_timeout().unwrap() <= secs(t0(), 30));
    s.handle_timeout(secs(t0(), 29));
    assert!(sent(&mut s).is_empty());
    s.handle_timeout(secs(t0(), 30));
    assert_eq!(types(&sent(&mut s)), ["0"]);
}

#[test]
fn test_request_is_answered_with_heartbeat_carrying_its_test_req_id() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    s.handle_input(t0(), &p.msg(t0(), "1", &[(112, "ABC")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["0"]);
    assert_eq!(out[0].get(112), Some("ABC"));
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn silence_triggers_a_test_request_then_a_disconnect() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    // Keep our side busy so only the receive timer matters.
    s.handle_timeout(secs(t0(), 30));
    assert_eq!(types(&sent(&mut s)), ["0"]);
    s.handle_timeout(secs(t0(), 36));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["1"]);
    let id = out[0].get(112).unwrap().to_owned();
    // Answered: no disconnect.
    let hb = p.msg(secs(t0(), 37), "0", &[(112, &id)]);
    s.handle_input(secs(t0(), 37), &hb);
    s.handle_timeout(secs(t0(), 50));
    assert_eq!(s.state(), SessionState::Active);
    // Silence again: a second TestRequest, unanswered, ends the session.
    s.handle_timeout(secs(t0(), 73));
    assert!(types(&sent(&mut s)).contains(&"1"));
    s.handle_timeout(secs(t0(), 73 + 36));
    assert!(events(&mut s).contains(&SessionEvent::Disconnect(
        DisconnectReason::HeartbeatTimeout
    )));
}

#[test]
fn heartbeat_interval_zero_runs_no_heartbeat_timers() {
    let mut s = new_session(BeginString::Fix44);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 0, &[]));
    sent(&mut s);
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(secs(t0(), 10_000));
    assert!(sent(&mut s).is_empty());
}

// ---- ResendRequest served from the store ----

fn with_sent_messages() -> (Session, Peer) {
    let (mut s, p) = logged_on(BeginString::Fix44);
    // Our seq 2: an application message; 3: a heartbeat; 4: another application message.
    s.send_application(secs(t0(), 1), b"8", |e| {
        e.str(11, b"ORD-1").str(17, b"E1");
    })
    .unwrap();
    s.handle_timeout(secs(t0(), 31));
    s.send_application(secs(t0(), 32), b"8", |e| {
        e.str(11, b"ORD-2").str(17, b"E2");
    })
    .unwrap();
    let out = sent(&mut s);
    assert_eq!(types(&out), ["8", "0", "8"]);
    (s, p)
}

#[test]
fn resend_request_replays_application_messages_with_poss_dup_and_orig_sending_time() {
    let (mut s, mut p) = with_sent_messages();
    let now = secs(t0(), 40);
    s.handle_input(now, &p.msg(now, "2", &[(7, "2"), (16, "4")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["8", "4", "8"]);
    assert_eq!(out[0].seq(), 2);
    assert_eq!(out[0].get(43), Some("Y"));
    assert_eq!(out[0].get(122), Some("20261128-12:00:01.000"));
    assert_eq!(out[0].get(52), Some("20261128-12:00:40.000"));
    assert_eq!(out[0].get(11), Some("ORD-1"));
    // The heartbeat is replaced by a gap fill to the next application message.
    assert_eq!(out[1].seq(), 3);
    assert_eq!(out[1].get(123), Some("Y"));
    assert_eq!(out[1].get(36), Some("4"));
    assert_eq!(out[1].get(43), Some("Y"));
    assert_eq!(out[2].seq(), 4);
    assert_eq!(out[2].get(11), Some("ORD-2"));
    // Resending does not consume new sequence numbers.
    assert_eq!(s.next_sender_seq(), 5);
}

#[test]
fn resend_request_turns_session_messages_into_one_gap_fill() {
    let (mut s, mut p) = with_sent_messages();
    let now = secs(t0(), 40);
    // Seq 1 (Logon) .. 1: a gap fill to 2.
    s.handle_input(now, &p.msg(now, "2", &[(7, "1"), (16, "1")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["4"]);
    assert_eq!(out[0].seq(), 1);
    assert_eq!(out[0].get(36), Some("2"));
}

#[test]
fn resend_request_with_end_seq_no_zero_or_999999_means_all_sent() {
    for end in ["0", "999999"] {
        let (mut s, mut p) = with_sent_messages();
        let now = secs(t0(), 40);
        s.handle_input(now, &p.msg(now, "2", &[(7, "1"), (16, end)]));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["4", "8", "4", "8"], "EndSeqNo={end}");
        assert_eq!(out[0].get(36), Some("2"));
    }
}

#[test]
fn resend_request_past_the_last_sent_message_is_clamped() {
    let (mut s, mut p) = with_sent_messages();
    let now = secs(t0(), 40);
    s.handle_input(now, &p.msg(now, "2", &[(7, "4"), (16, "100")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["8"]);
    assert_eq!(out[0].seq(), 4);
}

// ---- SequenceReset ----

#[test]
fn sequence_reset_gap_fill_moves_the_expected_number_forward() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let gf = p.msg(t0(), "4", &[(123, "Y"), (36, "10")]);
    s.handle_input(t0(), &gf);
    assert_eq!(s.next_target_seq(), 10);
    assert!(sent(&mut s).is_empty());
}

#[test]
fn sequence_reset_gap_fill_with_new_seq_no_not_above_msg_seq_num_is_rejected() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let gf = p.msg(t0(), "4", &[(123, "Y"), (36, "2")]);
    s.handle_input(t0(), &gf);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3"]);
    assert_eq!(out[0].get(373), Some("5"));
    assert_eq!(out[0].get(371), Some("36"));
}

#[test]
fn sequence_reset_reset_mode_ignores_msg_seq_num_and_sets_the_expected_number() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    // MsgSeqNum far too high, but Reset mode ignores it: no ResendRequest.
    let sr = p.msg_seq(t0(), "4", 99, &[(36, "20")]);
    s.handle_input(t0(), &sr);
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.next_target_seq(), 20);
}

#[test]
fn sequence_reset_reset_mode_with_lower_new_seq_no_is_rejected_with_reason_5() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    for _ in 0..5 {
        let hb = p.msg(t0(), "0", &[]);
        s.handle_input(t0(), &hb);
    }
    assert_eq!(s.next_target_seq(), 7);
    let sr = p.msg_seq(t0(), "4", 7, &[(36, "3")]);
    s.handle_input(t0(), &sr);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3"]);
    assert_eq!(out[0].get(373), Some("5"));
    assert_eq!(out[0].get(371), Some("36"));
    assert_eq!(s.next_target_seq(), 7);
}

// ---- MsgSeqNum too high / too low, PossDup ----

#[test]
fn msg_seq_num_too_high_queues_the_message_and_requests_the_gap_once() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    // Expected 2; 4 and 5 arrive.
    let m4 = p.msg_seq(t0(), "D", 4, &order(&[(11, "C4")], &[]));
    let m5 = p.msg_seq(t0(), "D", 5, &order(&[(11, "C5")], &[]));
    s.handle_input(t0(), &m4);
    s.handle_input(t0(), &m5);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["2"]);
    assert_eq!(out[0].get(7), Some("2"));
    assert!(events(&mut s).is_empty());
    // The resend arrives: 2 and 3 with PossDup, then the queued 4 and 5 are processed in order.
    for seq in [2, 3] {
        let c = format!("C{seq}");
        let m = p.msg_seq(
            t0(),
            "D",
            seq,
            &order(&[(43, "Y"), (122, "20261128-11:59:59"), (11, &c)], &[]),
        );
        s.handle_input(t0(), &m);
    }
    let seqs: Vec<SeqNum> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Application { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    assert_eq!(s.next_target_seq(), 6);
}

#[test]
fn msg_seq_num_too_low_without_poss_dup_logs_out_and_disconnects() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg_seq(t0(), "0", 1, &[]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert_eq!(
        out[0].get(58),
        Some("MsgSeqNum too low, expecting 2 but received 1")
    );
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn poss_dup_already_received_is_ignored() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg_seq(
        t0(),
        "D",
        1,
        &[(43, "Y"), (122, "20261128-11:59:59"), (11, "X")],
    );
    s.handle_input(t0(), &m);
    assert!(sent(&mut s).is_empty());
    assert!(events(&mut s).is_empty());
    assert_eq!(s.state(), SessionState::Active);
    assert_eq!(s.next_target_seq(), 2);
}

#[test]
fn poss_dup_not_yet_received_is_processed() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(
        t0(),
        "D",
        &order(&[(43, "Y"), (122, "20261128-11:59:59"), (11, "X")], &[]),
    );
    s.handle_input(t0(), &m);
    assert!(matches!(
        events(&mut s).as_slice(),
        [SessionEvent::Application { seq: 2, .. }]
    ));
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn a_recycled_message_buffer_carries_the_next_application_message() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let first = p.msg(t0(), "D", &order(&[(11, "A")], &[]));
    s.handle_input(t0(), &first);
    let Some(SessionEvent::Application { seq: 2, message }) = s.poll_event() else {
        panic!("expected the order as an application event");
    };
    assert_eq!(message, first);
    let buffer = message.as_ptr();
    s.recycle_message(message);
    let second = p.msg(t0(), "D", &order(&[(11, "B")], &[]));
    s.handle_input(t0(), &second);
    let Some(SessionEvent::Application { seq: 3, message }) = s.poll_event() else {
        panic!("expected the second order as an application event");
    };
    // The second message's bytes, whole, in the buffer given back.
    assert_eq!(message, second);
    assert_eq!(message.as_ptr(), buffer);
    // A buffer grown past the limit by one huge message is not kept.
    s.recycle_message(Vec::with_capacity(1 << 20));
    let third = p.msg(t0(), "D", &order(&[(11, "C")], &[]));
    s.handle_input(t0(), &third);
    let Some(SessionEvent::Application { seq: 4, message }) = s.poll_event() else {
        panic!("expected the third order as an application event");
    };
    assert_eq!(message, third);
    assert!(message.capacity() < 1 << 20);
}

#[test]
fn poss_dup_without_orig_sending_time_is_rejected_with_reason_1() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(t0(), "D", &[(43, "Y"), (11, "X")]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3"]);
    assert_eq!(out[0].get(373), Some("1"));
    assert_eq!(out[0].get(371), Some("122"));
    assert_eq!(out[0].get(45), Some("2"));
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn orig_sending_time_after_sending_time_is_rejected_with_reason_10_and_logout() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(
        t0(),
        "D",
        &[(43, "Y"), (122, "20261128-12:00:05"), (11, "X")],
    );
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3", "5"]);
    assert_eq!(out[0].get(373), Some("10"));
    assert_eq!(s.state(), SessionState::Disconnected);
}

// ---- Validation of header fields ----

#[test]
fn sending_time_outside_tolerance_is_rejected_with_reason_10_then_logout() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(secs(t0(), -121), "0", &[]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3", "5"]);
    assert_eq!(out[0].get(373), Some("10"));
    assert_eq!(out[0].get(45), Some("2"));
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn sending_time_tolerance_is_configurable() {
    let mut c = config(BeginString::Fix44);
    c.sending_time_tolerance = Duration::from_secs(5);
    let mut s = Session::new(c, Box::new(MemoryStore::new(t0())), t0());
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    sent(&mut s);
    let m = p.msg(secs(t0(), -6), "0", &[]);
    s.handle_input(t0(), &m);
    assert_eq!(types(&sent(&mut s)), ["3", "5"]);
}

#[test]
fn wrong_comp_id_is_rejected_with_reason_9_then_logout() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.raw(t0(), "0", 2, "INTRUDER", "ISLD", &[]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3", "5"]);
    assert_eq!(out[0].get(373), Some("9"));
    assert_eq!(out[0].get(371), Some("49"));
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn wrong_begin_string_logs_out_and_disconnects() {
    let (mut s, _) = logged_on(BeginString::Fix44);
    let mut other = Peer::new(BeginString::Fix42);
    let m = other.msg_seq(t0(), "0", 2, &[]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert_eq!(out[0].get(58), Some("Incorrect BeginString"));
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn missing_msg_seq_num_logs_out_and_disconnects() {
    let (mut s, _) = logged_on(BeginString::Fix44);
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"0")
        .str(49, b"TW")
        .str(56, b"ISLD")
        .timestamp(52, t0(), TimePrecision::Millis);
    let m = e.finish().to_vec();
    s.handle_input(t0(), &m);
    assert_eq!(types(&sent(&mut s)), ["5"]);
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn garbled_message_is_ignored_and_does_not_consume_a_sequence_number() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let mut bad = p.msg_seq(t0(), "1", 2, &[(112, "X")]);
    let n = bad.len();
    bad[n - 3] = if bad[n - 3] == b'9' { b'8' } else { b'9' }; // break the checksum
    s.handle_input(t0(), &bad);
    assert!(sent(&mut s).is_empty());
    assert!(matches!(
        events(&mut s).as_slice(),
        [SessionEvent::Garbled { .. }]
    ));
    assert_eq!(s.next_target_seq(), 2);
    // The same number, sent properly, is processed.
    p.seq = 2;
    let good = p.msg(t0(), "1", &[(112, "X")]);
    s.handle_input(t0(), &good);
    assert_eq!(types(&sent(&mut s)), ["0"]);
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn bytes_split_anywhere_and_batched_are_processed_in_order() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let mut stream = Vec::new();
    for i in 0..3 {
        stream.extend(p.msg(t0(), "1", &[(112, &format!("T{i}"))]));
    }
    for chunk in stream.chunks(7) {
        s.handle_input(t0(), chunk);
    }
    let out = sent(&mut s);
    assert_eq!(types(&out), ["0", "0", "0"]);
    assert_eq!(out[2].get(112), Some("T2"));
}

#[test]
fn oversized_message_disconnects() {
    let (mut s, _) = logged_on(BeginString::Fix44);
    s.handle_input(t0(), b"8=FIX.4.4\x019=99999999\x01");
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        SessionEvent::Disconnect(DisconnectReason::MessageTooLarge(_))
    )));
}

// ---- Reject, application messages ----

#[test]
fn invalid_message_is_rejected_with_its_reason_and_counted() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(t0(), "1", &[]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3"]);
    assert_eq!(out[0].get(373), Some("1"));
    assert_eq!(out[0].get(371), Some("112"));
    assert_eq!(out[0].get(372), Some("1"));
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn unknown_msg_type_is_rejected_with_reason_11() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(t0(), "ZZ", &[]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3"]);
    assert_eq!(out[0].get(373), Some("11"));
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn fix_message_type_we_do_not_offer_gets_business_message_reject() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(t0(), "R", &[(131, "Q1")]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["j"]);
    assert_eq!(out[0].get(380), Some("3"));
    assert_eq!(out[0].get(372), Some("R"));
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn fix42_reject_leaves_out_reasons_the_version_does_not_define() {
    let (mut s, mut p) = logged_on(BeginString::Fix42);
    // A repeated tag is reason 13, which FIX 4.2 does not have.
    let m = p.msg(t0(), "3", &[(45, "1"), (58, "x"), (58, "y")]);
    s.handle_input(t0(), &m);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["3"]);
    assert_eq!(out[0].get(373), None);
    assert!(out[0].get(58).is_some());
}

#[test]
fn reject_from_the_counterparty_is_counted() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(t0(), "3", &[(45, "1")]);
    s.handle_input(t0(), &m);
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.next_target_seq(), 3);
}

#[test]
fn application_message_is_delivered_in_sequence() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(
        t0(),
        "D",
        &[
            (11, "ORD-1"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20261128-12:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "100"),
        ],
    );
    s.handle_input(t0(), &m);
    let ev = events(&mut s);
    assert_eq!(
        ev,
        [SessionEvent::Application {
            seq: 2,
            message: m.clone()
        }]
    );
}

#[test]
fn send_application_is_refused_before_logon() {
    let mut s = new_session(BeginString::Fix44);
    assert!(matches!(
        s.send_application(t0(), b"8", |_| {}),
        Err(SendError::NotLoggedOn)
    ));
}

// ---- Logout ----

#[test]
fn logout_from_the_counterparty_is_answered_and_disconnects() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(t0(), "5", &[]);
    s.handle_input(t0(), &m);
    assert_eq!(types(&sent(&mut s)), ["5"]);
    let ev = events(&mut s);
    assert!(ev.contains(&SessionEvent::LoggedOut));
    assert!(ev.contains(&SessionEvent::Disconnect(DisconnectReason::LogoutComplete)));
}

#[test]
fn our_logout_waits_for_the_reply_then_disconnects() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    s.logout(t0(), "shutting down");
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert_eq!(out[0].get(58), Some("shutting down"));
    assert_eq!(s.state(), SessionState::LogoutSent);
    let m = p.msg(t0(), "5", &[]);
    s.handle_input(t0(), &m);
    assert!(sent(&mut s).is_empty(), "no second Logout");
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn unanswered_logout_times_out() {
    let (mut s, _) = logged_on(BeginString::Fix44);
    s.logout(t0(), "");
    sent(&mut s);
    s.handle_timeout(secs(t0(), 4));
    assert_eq!(s.state(), SessionState::LogoutSent);
    s.handle_timeout(secs(t0(), 5));
    assert!(events(&mut s).contains(&SessionEvent::Disconnect(DisconnectReason::LogoutTimeout)));
}

#[test]
fn reset_on_logout_policy_resets_after_the_handshake() {
    let mut c = config(BeginString::Fix44);
    c.reset.on_logout = true;
    let mut s = Session::new(c, Box::new(MemoryStore::new(t0())), t0());
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    let m = p.msg(t0(), "5", &[]);
    s.handle_input(t0(), &m);
    assert_eq!(s.next_sender_seq(), 1);
    assert_eq!(s.next_target_seq(), 1);
}

#[test]
fn reset_on_disconnect_policy_resets_when_the_connection_ends() {
    let mut c = config(BeginString::Fix44);
    c.reset.on_disconnect = true;
    let mut s = Session::new(c, Box::new(MemoryStore::new(t0())), t0());
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(s.next_sender_seq(), 2);
    s.on_disconnect(t0());
    assert_eq!(s.next_sender_seq(), 1);
}

#[test]
fn sequence_numbers_continue_on_the_next_connection() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let m = p.msg(t0(), "5", &[]);
    s.handle_input(t0(), &m);
    s.on_disconnect(t0());
    let store = s.into_store();
    let mut s2 = Session::new(config(BeginString::Fix44), store, t0());
    s2.handle_input(t0(), &p.logon(t0(), 30, &[]));
    let out = sent(&mut s2);
    assert_eq!(types(&out), ["A"]);
    assert_eq!(out[0].seq(), 3);
    assert_eq!(s2.next_target_seq(), 4);
}

// ---- NextExpectedMsgSeqNum(789) on Logon ----

/// [`with_sent_messages`] (ours: 1 Logon, 2 app, 3 heartbeat, 4 app), then the connection
/// ends and a new one starts on the same store.
fn reconnected_after_sent_messages() -> (Session, Peer) {
    let (mut s, p) = with_sent_messages();
    s.on_disconnect(secs(t0(), 35));
    let s2 = Session::new(config(BeginString::Fix44), s.into_store(), secs(t0(), 40));
    (s2, p)
}

#[test]
fn a_logon_with_789_in_sync_is_answered_with_our_789_and_nothing_more() {
    let (mut s, mut p) = reconnected_after_sent_messages();
    let now = secs(t0(), 40);
    s.handle_input(now, &p.logon(now, 30, &[(789, "5")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["A"]);
    assert_eq!(out[0].seq(), 5);
    // The peer's Logon (its seq 2) is counted: we expect 3 next.
    assert_eq!(out[0].get(789), Some("3"));
    assert_eq!(s.next_target_seq(), 3);
    // Without 789 the answer has none.
    let (mut s, mut p) = reconnected_after_sent_messages();
    s.handle_input(now, &p.logon(now, 30, &[]));
    assert_eq!(sent(&mut s)[0].get(789), None);
}

#[test]
fn a_logon_with_789_below_our_next_number_gets_the_missed_messages_after_the_logon() {
    let (mut s, mut p) = reconnected_after_sent_messages();
    let now = secs(t0(), 40);
    // The peer saw our 1 and 2 only.
    s.handle_input(now, &p.logon(now, 30, &[(789, "3")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["A", "4", "8"]);
    assert_eq!(out[0].seq(), 5);
    assert_eq!(out[0].get(789), Some("3"));
    // Our heartbeat 3 becomes a gap fill to 4; application message 4 is sent again.
    assert_eq!(out[1].seq(), 3);
    assert_eq!(out[1].get(123), Some("Y"));
    assert_eq!(out[1].get(36), Some("4"));
    assert_eq!(out[2].seq(), 4);
    assert_eq!(out[2].get(43), Some("Y"));
    assert_eq!(out[2].get(122), Some("20261128-12:00:32.000"));
    assert_eq!(out[2].get(11), Some("ORD-2"));
    // No ResendRequest was needed and no number was used but the Logon's.
    assert_eq!(s.next_sender_seq(), 6);
    assert_eq!(s.state(), SessionState::Active);
}

#[test]
fn a_logon_with_789_above_our_next_number_is_refused_and_changes_nothing() {
    for (v, reset) in [("6", false), ("9", false), ("2", true)] {
        let (mut s, mut p) = reconnected_after_sent_messages();
        let now = secs(t0(), 40);
        let mut extra = vec![(789, v)];
        if reset {
            p.seq = 1;
            extra.push((141, "Y"));
        }
        s.handle_input(now, &p.logon(now, 30, &extra));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["5"], "789={v}");
        let ours = if reset { 1 } else { 5 };
        assert_eq!(
            out[0].get(58),
            Some(
                format!("NextExpectedMsgSeqNum too high, expecting {ours} but received {v}")
                    .as_str()
            )
        );
        assert_eq!(s.state(), SessionState::Disconnected);
        // The refusal is not stored: both numbers stay where they were.
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (5, 2));
    }
}

#[test]
fn a_logon_with_an_invalid_789_is_refused() {
    for v in ["0", "x"] {
        let mut s = new_session(BeginString::Fix44);
        s.config.validate = false;
        let mut p = Peer::new(BeginString::Fix44);
        s.handle_input(t0(), &p.logon(t0(), 30, &[(789, v)]));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["5"], "789={v}");
        assert_eq!(out[0].get(58), Some("NextExpectedMsgSeqNum(789) invalid"));
    }
    // Validated, a non-number is the dictionary's refusal; on FIX 4.2 the tag is not defined.
    for (v, begin) in [("x", BeginString::Fix44), ("1", BeginString::Fix42)] {
        let mut s = new_session(begin);
        let mut p = Peer::new(begin);
        s.handle_input(t0(), &p.logon(t0(), 30, &[(789, v)]));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["5"], "789={v} on {begin:?}");
        assert!(
            out[0].get(58).unwrap().starts_with("Invalid Logon"),
            "{:?}",
            out[0]
        );
    }
}

#[test]
fn a_logon_with_789_and_a_gap_asks_for_it_with_789_instead_of_a_resend_request() {
    let mut s = new_session(BeginString::Fixt11);
    let mut p = Peer::new(BeginString::Fixt11);
    p.seq = 4;
    s.handle_input(t0(), &p.logon(t0(), 30, &[(789, "1")]));
    let out = sent(&mut s);
    // Our 789 says 1: the peer resends 1..=3 unasked.
    assert_eq!(types(&out), ["A"]);
    assert_eq!(out[0].get(789), Some("1"));
    assert_eq!(s.next_target_seq(), 1);
    // A message after the Logon waits for the gap, still without a ResendRequest.
    let now = secs(t0(), 1);
    s.handle_input(now, &p.msg(now, "0", &[]));
    assert!(sent(&mut s).is_empty());
    // The resent messages close the gap; the Logon (4) and the heartbeat (5) are counted.
    let orig = "20261128-12:00:00";
    for seq in 1..=3 {
        let m = p.msg_seq(now, "0", seq, &[(43, "Y"), (122, orig)]);
        s.handle_input(now, &m);
    }
    assert_eq!(s.next_target_seq(), 6);
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.state(), SessionState::Active);
}

// ---- In-session sequence reset: a Logon with ResetSeqNumFlag=Y while logged on ----

#[test]
fn a_logon_with_reset_seq_num_flag_while_logged_on_starts_both_sequences_again() {
    let (mut s, mut p) = with_sent_messages();
    let now = secs(t0(), 40);
    s.handle_input(now, &p.msg(now, "0", &[]));
    assert_eq!((s.next_sender_seq(), s.next_target_seq()), (5, 3));
    // The peer's reset Logon is number 1; ours answers with 1 and the flag.
    p.seq = 1;
    s.handle_input(now, &p.logon(now, 20, &[(141, "Y"), (789, "1")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["A"]);
    assert_eq!(out[0].seq(), 1);
    assert_eq!(out[0].get(141), Some("Y"));
    assert_eq!(out[0].get(108), Some("20"));
    assert_eq!(out[0].get(789), Some("2"));
    assert_eq!((s.next_sender_seq(), s.next_target_seq()), (2, 2));
    assert_eq!(s.state(), SessionState::Active);
    assert_eq!(s.heartbeat_interval(), Some(Duration::from_secs(20)));
    // The session goes on in the new sequence; the old one can no longer be asked for.
    s.handle_input(now, &p.msg(now, "1", &[(112, "NEW-DAY")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["0"]);
    assert_eq!((out[0].seq(), out[0].get(112)), (2, Some("NEW-DAY")));
    s.handle_input(now, &p.msg(now, "2", &[(7, "1"), (16, "0")]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["4"]);
    assert_eq!((out[0].seq(), out[0].get(36)), (1, Some("3")));
}

#[test]
fn an_in_session_reset_logon_is_checked_as_a_first_logon() {
    // Not numbered 1, a heartbeat out of range, or a 789 other than 1: logged out.
    for (seq, hb, extra, text) in [
        (
            7,
            "30",
            None,
            "ResetSeqNumFlag(141)=Y requires MsgSeqNum(34)=1",
        ),
        (1, "99999999", None, "HeartBtInt(108) must be between"),
        (
            1,
            "30",
            Some("5"),
            "NextExpectedMsgSeqNum too high, expecting 1 but received 5",
        ),
    ] {
        let (mut s, mut p) = logged_on(BeginString::Fix44);
        p.seq = seq;
        let mut f = vec![(98, "0"), (108, hb), (141, "Y")];
        if let Some(v) = extra {
            f.push((789, v));
        }
        s.handle_input(t0(), &p.msg(t0(), "A", &f));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["5"], "{text}");
        assert!(out[0].get(58).unwrap().starts_with(text), "{:?}", out[0]);
        assert_eq!(s.state(), SessionState::Disconnected);
    }
    // Without the flag, a second Logon still ends the session.
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(types(&sent(&mut s)), ["5"]);
}

#[test]
fn an_in_session_reset_tells_the_application_between_the_old_and_the_new_messages() {
    let (mut s, mut p) = logged_on(BeginString::Fix44);
    let order_at = |p: &mut Peer, seq| p.msg_seq(t0(), "D", seq, &order(&[(11, "X")], &[]));
    // One read: an order of the old sequence, the reset Logon, an order of the new one.
    let mut bytes = order_at(&mut p, 2);
    p.seq = 1;
    bytes.extend(p.logon(t0(), 30, &[(141, "Y")]));
    bytes.extend(order_at(&mut p, 2));
    // The application still owes an answer to an older message of the old sequence.
    s.set_unanswered(Some(2));
    s.handle_input(t0(), &bytes);
    let kinds: Vec<String> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            SessionEvent::Application { seq, .. } => format!("app {seq}"),
            SessionEvent::SequenceReset => "reset".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["app 2", "reset", "app 2"]);
    // Until the application says otherwise, nothing of the old sequence holds back the new
    // one's stored number.
    s.commit_store();
    assert_eq!(s.into_store().next_target_seq(), 3);
}

// ---- identify ----

#[test]
fn identify_reads_the_session_of_the_first_message() {
    let mut p = Peer::new(BeginString::Fix42);
    let logon = p.logon(t0(), 30, &[]);
    assert_eq!(identify(&logon[..10], 4096), Identify::NeedMore);
    assert_eq!(
        identify(&logon, 4096),
        Identify::Found {
            begin_string: BeginString::Fix42,
            sender_comp_id: "TW".into(),
            target_comp_id: "ISLD".into()
        }
    );
    assert!(matches!(
        identify(b"GET / HTTP/1.1\r\n", 4096),
        Identify::Invalid(_)
    ));
    let _ = SOH;
}

// ---- Robustness: arbitrary input never panics the session ----

mod robustness {
    use super::*;
    use proptest::prelude::*;

    fn valid_stream() -> Vec<u8> {
        let mut p = Peer::new(BeginString::Fix44);
        let mut v = p.logon(t0(), 30, &[]);
        v.extend(p.msg(t0(), "1", &[(112, "A")]));
        v.extend(p.msg_seq(t0(), "D", 9, &[(11, "X")]));
        v.extend(p.msg(t0(), "2", &[(7, "1"), (16, "0")]));
        v.extend(p.msg(t0(), "4", &[(123, "Y"), (36, "12")]));
        v.extend(p.msg(t0(), "5", &[]));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic_the_session(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let mut s = new_session(BeginString::Fix44);
            for c in &chunks {
                s.handle_input(t0(), c);
                s.handle_timeout(secs(t0(), 1));
            }
            let _ = sent(&mut s);
        }

        #[test]
        fn mutated_valid_streams_never_panic_the_session(
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..6),
            split in any::<proptest::sample::Index>(),
        ) {
            let mut v = valid_stream();
            for (i, b) in flips {
                let i = i.index(v.len());
                v[i] = b;
            }
            let mut s = new_session(BeginString::Fix44);
            let at = split.index(v.len() + 1);
            s.handle_input(t0(), &v[..at]);
            s.handle_input(t0(), &v[at..]);
            for k in 0..5 {
                s.handle_timeout(secs(t0(), 40 * k));
            }
            let _ = sent(&mut s);
            let _ = events(&mut s);
        }

        #[test]
        fn the_stored_number_never_passes_an_unanswered_message(
            steps in proptest::collection::vec(0u8..5, 1..60),
        ) {
            // The application of a FIX connection: every order goes to it, and it answers them
            // later, oldest first. Whatever the interleaving, after each commit the store
            // expects exactly the oldest unanswered order, or the session's next number when
            // all are answered; a restart from it would ask for nothing answered, and lose
            // nothing unanswered.
            let store = crate::transport::SharedStore::new(Box::new(MemoryStore::new(t0())));
            let mut s = Session::new(config(BeginString::Fix44), Box::new(store.clone()), t0());
            let mut p = Peer::new(BeginString::Fix44);
            s.handle_input(t0(), &p.logon(t0(), 30, &[]));
            events(&mut s);
            let mut unanswered = std::collections::VecDeque::new();
            let mut n = 0;
            for step in steps {
                match step {
                    0 | 1 => {
                        n += 1;
                        let id = format!("O{n}");
                        s.handle_input(t0(), &p.msg(t0(), "D", &order(&[(11, id.as_str())], &[])));
                        // Not handed over yet: the number is held for it all the same.
                        prop_assert!(store.next_target_seq() < s.next_target_seq());
                        for e in events(&mut s) {
                            if let SessionEvent::Application { seq, .. } = e {
                                unanswered.push_back(seq);
                            }
                        }
                    }
                    2 => s.handle_input(t0(), &p.msg(t0(), "0", &[])),
                    3 => {
                        if unanswered.pop_front().is_some() {
                            s.send_application(t0(), b"8", |e| {
                                e.str(150, b"0");
                            })
                            .unwrap();
                        }
                    }
                    _ => {
                        s.set_unanswered(unanswered.front().copied());
                        s.commit_store();
                        let expect = unanswered.front().copied().unwrap_or(s.next_target_seq());
                        prop_assert_eq!(store.next_target_seq(), expect);
                        let _ = sent(&mut s);
                    }
                }
            }
        }
    }
}

// ---- Authentication hook ----

mod auth {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Accepts Logons whose Username(553) is "good"; messages whose 89 is "ok".
    struct FakeAuth {
        revoked: Arc<AtomicBool>,
    }

    impl SessionAuth for FakeAuth {
        fn authenticate_logon(
            &mut self,
            logon: &MessageRef<'_>,
            _now: UtcTimestamp,
        ) -> Result<(), String> {
            match logon.get(553) {
                Some(b"good") => Ok(()),
                _ => Err("Authentication failed".into()),
            }
        }
        fn verify_message(&mut self, m: &MessageRef<'_>) -> Result<(), MessageAuthError> {
            match m.get(89) {
                None => Err(MessageAuthError::Missing),
                Some(b"ok") => Ok(()),
                Some(_) => Err(MessageAuthError::Invalid),
            }
        }
        fn revoked(&self, _now: UtcTimestamp) -> bool {
            self.revoked.load(Ordering::Relaxed)
        }
    }

    fn authed(sign: bool, store: MemoryStore) -> (Session, Arc<AtomicBool>) {
        let mut c = config(BeginString::Fix44);
        c.require_message_signature = sign;
        let revoked = Arc::new(AtomicBool::new(false));
        let s = Session::new(c, Box::new(store), t0()).with_auth(Box::new(FakeAuth {
            revoked: revoked.clone(),
        }));
        (s, revoked)
    }

    #[test]
    fn failed_authentication_with_reset_flag_leaves_the_store_untouched() {
        let mut store = MemoryStore::new(t0());
        store.set_next_sender_seq(12).unwrap();
        store.set_next_target_seq(34).unwrap();
        let (mut s, _) = authed(false, store);
        let mut p = Peer::new(BeginString::Fix44);
        s.handle_input(t0(), &p.logon(t0(), 30, &[(141, "Y"), (553, "bad")]));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["5"], "only a Logout");
        assert_eq!(out[0].get(58), Some("Authentication failed"));
        assert_eq!(s.next_sender_seq(), 12);
        assert_eq!(s.next_target_seq(), 34);
        assert_eq!(s.state(), SessionState::Disconnected);
    }

    #[test]
    fn an_in_session_reset_logon_is_authenticated_too() {
        for (user, want) in [("bad", "5"), ("good", "A")] {
            let (mut s, _) = authed(false, MemoryStore::new(t0()));
            let mut p = Peer::new(BeginString::Fix44);
            s.handle_input(t0(), &p.logon(t0(), 30, &[(553, "good")]));
            s.handle_input(t0(), &p.msg(t0(), "0", &[]));
            sent(&mut s);
            p.seq = 1;
            s.handle_input(t0(), &p.logon(t0(), 30, &[(141, "Y"), (553, user)]));
            let out = sent(&mut s);
            assert_eq!(types(&out), [want], "{user}");
            if user == "bad" {
                assert_eq!(out[0].get(58), Some("Authentication failed"));
                assert_eq!(s.state(), SessionState::Disconnected);
            } else {
                assert_eq!((s.next_sender_seq(), s.next_target_seq()), (2, 2));
            }
        }
    }

    #[test]
    fn authenticated_logon_proceeds() {
        let (mut s, _) = authed(false, MemoryStore::new(t0()));
        let mut p = Peer::new(BeginString::Fix44);
        s.handle_input(t0(), &p.logon(t0(), 30, &[(553, "good")]));
        assert_eq!(types(&sent(&mut s)), ["A"]);
    }

    fn signed_session() -> (Session, Peer, Arc<AtomicBool>) {
        let (mut s, revoked) = authed(true, MemoryStore::new(t0()));
        let mut p = Peer::new(BeginString::Fix44);
        s.handle_input(t0(), &p.logon(t0(), 30, &[(553, "good")]));
        sent(&mut s);
        events(&mut s);
        (s, p, revoked)
    }

    #[test]
    fn unsigned_application_message_is_rejected_and_not_passed_on() {
        let (mut s, mut p, _) = signed_session();
        let m = p.msg(t0(), "D", &order(&[(11, "X")], &[]));
        s.handle_input(t0(), &m);
        let out = sent(&mut s);
        assert_eq!(types(&out), ["3"]);
        assert_eq!(out[0].get(373), Some("1"));
        assert_eq!(out[0].get(371), Some("93"));
        assert!(!events(&mut s)
            .iter()
            .any(|e| matches!(e, SessionEvent::Application { .. })));
        assert_eq!(s.next_target_seq(), 3, "the rejected message is counted");
    }

    #[test]
    fn badly_signed_application_message_is_rejected_with_signature_problem() {
        let (mut s, mut p, _) = signed_session();
        let m = p.msg(t0(), "D", &order(&[(11, "X")], &[(93, "3"), (89, "bad")]));
        s.handle_input(t0(), &m);
        let out = sent(&mut s);
        assert_eq!(out[0].get(373), Some("8"));
        assert_eq!(out[0].get(371), Some("89"));
        assert!(!events(&mut s)
            .iter()
            .any(|e| matches!(e, SessionEvent::Application { .. })));
    }

    #[test]
    fn signed_application_message_is_passed_on_and_admin_messages_need_no_signature() {
        let (mut s, mut p, _) = signed_session();
        let hb = p.msg(t0(), "0", &[]);
        s.handle_input(t0(), &hb);
        let m = p.msg(t0(), "D", &order(&[(11, "X")], &[(93, "2"), (89, "ok")]));
        s.handle_input(t0(), &m);
        assert!(sent(&mut s).is_empty());
        assert!(matches!(
            events(&mut s).as_slice(),
            [SessionEvent::Application { seq: 3, .. }]
        ));
    }

    #[test]
    fn revoked_credential_ends_the_session() {
        let (mut s, _p, revoked) = signed_session();
        revoked.store(true, Ordering::Relaxed);
        s.handle_timeout(secs(t0(), 1));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["5"]);
        assert_eq!(out[0].get(58), Some("Credential revoked"));
        assert_eq!(s.state(), SessionState::Disconnected);
    }
}

// ---- Group commit ----

/// A store whose changes wait for `commit`, counting the commits that wrote something.
struct Grouping {
    inner: MemoryStore,
    pending: bool,
    commits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl MessageStore for Grouping {
    fn next_sender_seq(&self) -> SeqNum {
        self.inner.next_sender_seq()
    }
    fn next_target_seq(&self) -> SeqNum {
        self.inner.next_target_seq()
    }
    fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), crate::StoreError> {
        self.pending = true;
        self.inner.set_next_sender_seq(seq)
    }
    fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), crate::StoreError> {
        self.pending = true;
        self.inner.set_next_target_seq(seq)
    }
    fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), crate::StoreError> {
        self.pending = true;
        self.inner.save_outbound(seq, message)
    }
    fn outbound_range(
        &mut self,
        begin: SeqNum,
        end: SeqNum,
        out: &mut Vec<(SeqNum, Vec<u8>)>,
    ) -> Result<(), crate::StoreError> {
        self.inner.outbound_range(begin, end, out)
    }
    fn reset(&mut self, now: UtcTimestamp) -> Result<(), crate::StoreError> {
        self.inner.reset(now)
    }
    fn creation_time(&self) -> UtcTimestamp {
        self.inner.creation_time()
    }
    fn sync(&mut self) -> Result<(), crate::StoreError> {
        self.commit()
    }
    fn commit(&mut self) -> Result<(), crate::StoreError> {
        if std::mem::take(&mut self.pending) {
            self.commits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
    fn has_uncommitted(&self) -> bool {
        self.pending
    }
}

#[test]
fn the_numbers_of_application_messages_are_stored_with_their_answers() {
    let commits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = Grouping {
        inner: MemoryStore::new(t0()),
        pending: false,
        commits: commits.clone(),
    };
    let count = || commits.load(std::sync::atomic::Ordering::Relaxed);
    let mut s = Session::new(config(BeginString::Fix44), Box::new(store), t0());
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(count(), 1, "the logon's numbers and its answer: one commit");
    assert_eq!(types(&sent(&mut s)), ["A"]);
    events(&mut s);
    // Five orders in one read: the session expects 7 next, but nothing is stored yet: the
    // orders are unanswered, and a crash now must make the next Logon ask for them again.
    let mut burst = Vec::new();
    for i in 0..5 {
        let id = format!("C{i}");
        burst.extend(p.msg(t0(), "D", &order(&[(11, id.as_str())], &[])));
    }
    s.handle_input(t0(), &burst);
    assert_eq!(count(), 1, "no write for the numbers alone");
    assert_eq!(s.next_target_seq(), 7);
    let apps = events(&mut s)
        .into_iter()
        .filter(|e| matches!(e, SessionEvent::Application { .. }))
        .count();
    assert_eq!(apps, 5);
    // The application has them all, unanswered.
    s.set_unanswered(Some(2));
    s.commit_store();
    assert_eq!(count(), 1, "still nothing new to store");
    // It answers the first three: their numbers go with the answers, in one commit, and stop
    // before the fourth order (MsgSeqNum 5).
    for _ in 0..3 {
        s.send_application(t0(), b"8", |e| {
            e.str(150, b"0");
        })
        .unwrap();
    }
    s.set_unanswered(Some(5));
    assert_eq!(count(), 1);
    s.commit_store();
    assert_eq!(count(), 2);
    assert_eq!(types(&sent(&mut s)), ["8", "8", "8"]);
    // The other two answers: the number reaches 7 with them.
    for _ in 0..2 {
        s.send_application(t0(), b"8", |e| {
            e.str(150, b"0");
        })
        .unwrap();
    }
    s.set_unanswered(None);
    s.commit_store();
    assert_eq!(count(), 3);
    assert_eq!(types(&sent(&mut s)), ["8", "8"]);
    let store = s.into_store();
    assert_eq!(store.next_target_seq(), 7);
}

#[test]
fn a_message_not_yet_answered_is_asked_for_again_after_a_restart() {
    // The order (MsgSeqNum 2) reached the application, which had not answered when the
    // process stopped: the store still expects 2, so the next Logon (MsgSeqNum 3) is
    // answered with a ResendRequest from 2, and the order comes again as a PossDup.
    let mut s = Session::new(
        config(BeginString::Fix44),
        Box::new(MemoryStore::new(t0())),
        t0(),
    );
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    sent(&mut s);
    events(&mut s);
    s.handle_input(t0(), &p.msg(t0(), "D", &order(&[(11, "X1")], &[])));
    assert_eq!(events(&mut s).len(), 1);
    s.set_unanswered(Some(2));
    s.commit_store();
    s.on_disconnect(t0());
    let store = s.into_store();
    assert_eq!(store.next_target_seq(), 2);
    let mut s = Session::new(config(BeginString::Fix44), store, t0());
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    let out = sent(&mut s);
    assert_eq!(types(&out), ["A", "2"]);
    assert_eq!(out[1].get(7), Some("2"));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "output read before the store committed it")]
fn output_is_never_read_before_it_is_committed() {
    let store = Grouping {
        inner: MemoryStore::new(t0()),
        pending: false,
        commits: Default::default(),
    };
    let mut s = Session::new(config(BeginString::Fix44), Box::new(store), t0());
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    sent(&mut s);
    s.send_application(t0(), b"8", |e| {
        e.str(150, b"0");
    })
    .unwrap();
    let _ = s.transmit();
}

// ---- Initiator ----

/// Adds a Username(553) and a RawData(96) made of the header values, so a test can see what
/// the signer was given.
struct EchoSigner;

impl LogonSigner for EchoSigner {
    fn logon_fields(&self, h: &LogonHeader<'_>, out: &mut Vec<(u32, Vec<u8>)>) {
        out.push((553, b"key-1".to_vec()));
        let raw = format!(
            "{}|{}|{}|{}",
            String::from_utf8_lossy(h.sending_time),
            h.msg_seq_num,
            h.sender_comp_id,
            h.target_comp_id
        );
        out.push((95, raw.len().to_string().into_bytes()));
        out.push((96, raw.into_bytes()));
    }
}

fn initiate_with(store: MemoryStore, reset: bool) -> Session {
    Session::initiate(
        config(BeginString::Fix44),
        Box::new(store),
        t0(),
        InitiatorLogon {
            heartbeat_secs: 30,
            reset_seq_num: reset,
            signer: Some(Box::new(EchoSigner)),
        },
    )
}

#[test]
fn initiator_sends_its_logon_with_the_signers_fields_over_the_sent_header() {
    let mut s = initiate_with(MemoryStore::new(t0()), false);
    assert_eq!(s.state(), SessionState::LogonSent);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["A"]);
    let logon = &out[0];
    assert_eq!(logon.get(98), Some("0"));
    assert_eq!(logon.get(108), Some("30"));
    assert_eq!(logon.get(141), None);
    assert_eq!(logon.get(553), Some("key-1"));
    let expected = format!("{}|1|ISLD|TW", logon.get(52).unwrap());
    assert_eq!(logon.get(96), Some(expected.as_str()));
    assert_eq!(s.next_sender_seq(), 2);
    // Not active yet: application messages wait for the answer.
    assert!(matches!(
        s.send_application(t0(), b"D", |_| {}),
        Err(SendError::NotLoggedOn)
    ));
}

#[test]
fn initiator_becomes_active_on_the_answering_logon() {
    let mut s = initiate_with(MemoryStore::new(t0()), false);
    sent(&mut s);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(s.state(), SessionState::Active);
    assert_eq!(
        events(&mut s),
        [SessionEvent::LoggedOn {
            heartbeat_secs: 30,
            reset: false
        }]
    );
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.next_target_seq(), 2);
    s.send_application(t0(), b"D", |e| {
        e.str(11, b"1");
    })
    .unwrap();
    s.commit_store();
    assert_eq!(sent(&mut s)[0].seq(), 2);
    // Heartbeats run on the interval we asked for.
    s.handle_timeout(secs(t0(), 30));
    assert_eq!(types(&sent(&mut s)), ["0"]);
}

#[test]
fn initiator_asking_for_a_reset_starts_both_sequences_at_one() {
    let mut store = MemoryStore::new(t0());
    store.set_next_target_seq(7).unwrap();
    for _ in 0..4 {
        store.save_outbound(store.next_sender_seq(), b"x").unwrap();
    }
    store.commit().unwrap();
    let mut s = initiate_with(store, true);
    let out = sent(&mut s);
    assert_eq!(out[0].get(141), Some("Y"));
    assert_eq!(out[0].seq(), 1);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[(141, "Y")]));
    assert_eq!(s.state(), SessionState::Active);
    assert_eq!(s.next_target_seq(), 2);
    assert!(events(&mut s).contains(&SessionEvent::LoggedOn {
        heartbeat_secs: 30,
        reset: true
    }));
}

#[test]
fn initiator_refuses_a_reset_it_did_not_ask_for() {
    let mut s = initiate_with(MemoryStore::new(t0()), false);
    sent(&mut s);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[(141, "Y")]));
    assert_eq!(s.state(), SessionState::Disconnected);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["5"]);
    assert_eq!(out[0].get(58), Some("ResetSeqNumFlag(141)=Y not asked for"));
}

#[test]
fn initiator_answer_ahead_of_sequence_asks_for_the_gap() {
    let mut store = MemoryStore::new(t0());
    store.set_next_target_seq(3).unwrap();
    store.commit().unwrap();
    let mut s = initiate_with(store, false);
    sent(&mut s);
    let mut p = Peer::new(BeginString::Fix44);
    p.seq = 6;
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(s.state(), SessionState::Active);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["2"]);
    assert_eq!(out[0].get(7), Some("3"));
    assert_eq!(out[0].get(16), Some("0"));
    // The missed messages come back (a gap fill here) and the session is in sequence again.
    s.handle_input(
        t0(),
        &p.msg_seq(
            t0(),
            "4",
            3,
            &[(43, "Y"), (122, "20261128-12:00:00"), (123, "Y"), (36, "6")],
        ),
    );
    assert_eq!(s.next_target_seq(), 7);
}

#[test]
fn initiator_answer_below_the_expected_number_logs_out() {
    let mut store = MemoryStore::new(t0());
    store.set_next_target_seq(5).unwrap();
    store.commit().unwrap();
    let mut s = initiate_with(store, false);
    sent(&mut s);
    let mut p = Peer::new(BeginString::Fix44);
    p.seq = 2;
    s.handle_input(t0(), &p.logon(t0(), 30, &[]));
    assert_eq!(s.state(), SessionState::Disconnected);
    let out = sent(&mut s);
    assert_eq!(
        out[0].get(58),
        Some("MsgSeqNum too low, expecting 5 but received 2")
    );
}

#[test]
fn initiator_refused_with_a_logout_reports_its_text() {
    let mut s = initiate_with(MemoryStore::new(t0()), false);
    sent(&mut s);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.msg(t0(), "5", &[(58, "Authentication failed")]));
    assert_eq!(
        events(&mut s),
        [SessionEvent::Disconnect(DisconnectReason::LogonRejected(
            "Authentication failed".into()
        ))]
    );
}

#[test]
fn initiator_without_an_answer_times_out() {
    let mut s = initiate_with(MemoryStore::new(t0()), false);
    sent(&mut s);
    assert_eq!(s.poll_timeout(), Some(secs(t0(), 10)));
    s.handle_timeout(secs(t0(), 9));
    assert_eq!(s.state(), SessionState::LogonSent);
    s.handle_timeout(secs(t0(), 10));
    assert_eq!(
        events(&mut s),
        [SessionEvent::Disconnect(DisconnectReason::LogonTimeout)]
    );
}

#[test]
fn initiator_resends_what_the_answers_next_expected_number_says_was_missed() {
    let mut store = MemoryStore::new(t0());
    let mut p0 = Peer::new(BeginString::Fix44);
    for _ in 0..3 {
        let seq = store.next_sender_seq();
        let mut m = p0.raw(t0(), "D", seq, "ISLD", "TW", &order(&[(11, "A")], &[]));
        m.shrink_to_fit();
        store.save_outbound(seq, &m).unwrap();
    }
    store.commit().unwrap();
    let mut s = initiate_with(store, false);
    assert_eq!(sent(&mut s)[0].seq(), 4);
    let mut p = Peer::new(BeginString::Fix44);
    s.handle_input(t0(), &p.logon(t0(), 30, &[(789, "2")]));
    assert_eq!(s.state(), SessionState::Active);
    let out = sent(&mut s);
    assert_eq!(types(&out), ["D", "D"]);
    assert_eq!(out[0].seq(), 2);
    assert_eq!(out[0].get(43), Some("Y"));
    assert_eq!(out[1].seq(), 3);
}
