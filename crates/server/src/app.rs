//! The application placeholder: until the order pipeline exists, every application message is
//! answered with a BusinessMessageReject(35=j), so a client sees a precise, standard answer
//! instead of silence.
//!
//! - order-entry messages (NewOrderSingle D, OrderCancelRequest F, OrderCancelReplaceRequest G,
//!   OrderStatusRequest H, OrderMassCancelRequest q): BusinessRejectReason(380) = 4
//!   (Application not available), Text "no venue connected";
//! - anything else a client may send (ExecutionReport 8, OrderCancelReject 9,
//!   OrderMassCancelReport r, BusinessMessageReject j, ...): 380 = 3 (Unsupported Message Type).

use portcullis_fix::{tag, Decoder, Encoder, SeqNum, UtcTimestamp};
use portcullis_session::transport::Application;
use portcullis_session::Session;
use tracing::{debug, warn};

/// BusinessRejectReason(380) = 3.
const UNSUPPORTED_MESSAGE_TYPE: u64 = 3;
/// BusinessRejectReason(380) = 4.
const APPLICATION_NOT_AVAILABLE: u64 = 4;

/// The fields of the BusinessMessageReject answering one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessReject {
    /// RefSeqNum(45): the rejected message's MsgSeqNum.
    pub ref_seq_num: SeqNum,
    /// RefMsgType(372).
    pub ref_msg_type: Vec<u8>,
    /// BusinessRejectRefID(379): the rejected message's ClOrdID(11), if it has one.
    pub ref_id: Option<Vec<u8>>,
    /// BusinessRejectReason(380).
    pub reason: u64,
    /// Text(58).
    pub text: &'static str,
}

impl BusinessReject {
    /// Appends the body fields, in the order of the specification's message layout.
    pub fn encode_body(&self, enc: &mut Encoder) {
        enc.uint(tag::REF_SEQ_NUM, self.ref_seq_num);
        enc.str(tag::REF_MSG_TYPE, &self.ref_msg_type);
        if let Some(id) = &self.ref_id {
            enc.str(tag::BUSINESS_REJECT_REF_ID, id);
        }
        enc.uint(tag::BUSINESS_REJECT_REASON, self.reason);
        enc.str(tag::TEXT, self.text.as_bytes());
    }
}

/// True for the order-entry messages the future pipeline will take.
fn is_order_entry(msg_type: &[u8]) -> bool {
    matches!(msg_type, b"D" | b"F" | b"G" | b"H" | b"q")
}

/// The reject for one application message (as validated and delivered by the session), or
/// `None` if the bytes do not even decode (the session never delivers such a message).
pub fn reject_for(seq: SeqNum, message: &[u8]) -> Option<BusinessReject> {
    let mut decoder = Decoder::new();
    let msg = decoder.decode(message).ok()?;
    let msg_type = msg.msg_type();
    if msg_type.is_empty() {
        return None;
    }
    let (reason, text) = if is_order_entry(msg_type) {
        (APPLICATION_NOT_AVAILABLE, "no venue connected")
    } else {
        (UNSUPPORTED_MESSAGE_TYPE, "unsupported message type")
    };
    Some(BusinessReject {
        ref_seq_num: seq,
        ref_msg_type: msg_type.to_vec(),
        ref_id: msg
            .get(tag::CL_ORD_ID)
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec),
        reason,
        text,
    })
}

/// The placeholder [`Application`].
#[derive(Debug, Default)]
pub struct PlaceholderApp;

impl Application for PlaceholderApp {
    fn on_message(&self, session: &mut Session, now: UtcTimestamp, seq: SeqNum, message: &[u8]) {
        let Some(reject) = reject_for(seq, message) else {
            warn!(seq, "application message does not decode; not answered");
            return;
        };
        debug!(
            seq,
            msg_type = %String::from_utf8_lossy(&reject.ref_msg_type),
            reason = reject.reason,
            "answering with BusinessMessageReject"
        );
        if let Err(e) = session.send_application(now, b"j", |enc| reject.encode_body(enc)) {
            warn!(seq, error = %e, "could not send BusinessMessageReject");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(msg_type: &str, seq: u64, body: &[(u32, &str)]) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.start(b"FIX.4.4", msg_type.as_bytes());
        enc.str(49, b"DEMO").str(56, b"PORTCULLIS").uint(34, seq);
        enc.str(52, b"20240102-10:00:00.000");
        for (t, v) in body {
            enc.str(*t, v.as_bytes());
        }
        enc.finish().to_vec()
    }

    fn body_of(r: &BusinessReject) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.start(b"FIX.4.4", b"j");
        r.encode_body(&mut enc);
        enc.body().to_vec()
    }

    #[test]
    fn new_order_single_gets_application_not_available() {
        let m = message("D", 7, &[(11, "ord-1"), (55, "BTC-PERP"), (54, "1")]);
        let r = reject_for(7, &m).unwrap();
        assert_eq!(r.ref_seq_num, 7);
        assert_eq!(r.ref_msg_type, b"D");
        assert_eq!(r.ref_id.as_deref(), Some(&b"ord-1"[..]));
        assert_eq!(r.reason, 4);
        assert_eq!(r.text, "no venue connected");
        assert_eq!(
            body_of(&r),
            b"35=j\x0145=7\x01372=D\x01379=ord-1\x01380=4\x0158=no venue connected\x01"
        );
    }

    #[test]
    fn every_order_entry_type_gets_reason_4() {
        for t in ["D", "F", "G", "H", "q"] {
            let r = reject_for(3, &message(t, 3, &[(11, "x")])).unwrap();
            assert_eq!(r.reason, 4, "{t}");
            assert_eq!(r.ref_msg_type, t.as_bytes());
        }
    }

    #[test]
    fn without_cl_ord_id_no_ref_id_is_sent() {
        let r = reject_for(9, &message("q", 9, &[(530, "7")])).unwrap();
        assert_eq!(r.ref_id, None);
        assert_eq!(
            body_of(&r),
            b"35=j\x0145=9\x01372=q\x01380=4\x0158=no venue connected\x01"
        );
    }

    #[test]
    fn other_application_messages_get_unsupported_message_type() {
        for t in ["8", "9", "r", "j"] {
            let r = reject_for(4, &message(t, 4, &[(11, "c")])).unwrap();
            assert_eq!(r.reason, 3, "{t}");
            assert_eq!(r.text, "unsupported message type");
            assert_eq!(r.ref_msg_type, t.as_bytes());
        }
    }

    /// A logged-on FIX.4.4 session on a memory store, fed `messages` after the Logon; returns
    /// everything it sent.
    fn through_a_session(messages: &[Vec<u8>]) -> Vec<u8> {
        use portcullis_fix::BeginString;
        use portcullis_session::{MemoryStore, SessionConfig, SessionEvent};
        let now = UtcTimestamp::now();
        let config = SessionConfig::new(BeginString::Fix44, "PORTCULLIS", "DEMO");
        let mut session = Session::new(config, Box::new(MemoryStore::new(now)), now);
        let mut logon = Encoder::new();
        logon.start(b"FIX.4.4", b"A");
        logon.str(49, b"DEMO").str(56, b"PORTCULLIS").uint(34, 1);
        logon.timestamp(52, now, portcullis_fix::TimePrecision::Millis);
        logon.uint(98, 0).uint(108, 30);
        session.handle_input(now, logon.finish());
        for m in messages {
            session.handle_input(now, m);
        }
        let app = PlaceholderApp;
        while let Some(ev) = session.poll_event() {
            if let SessionEvent::Application { seq, message } = ev {
                app.on_message(&mut session, now, seq, &message);
            }
        }
        session.transmit().to_vec()
    }

    fn now_message(msg_type: &str, seq: u64, body: &[(u32, &str)]) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.start(b"FIX.4.4", msg_type.as_bytes());
        enc.str(49, b"DEMO").str(56, b"PORTCULLIS").uint(34, seq);
        enc.timestamp(
            52,
            UtcTimestamp::now(),
            portcullis_fix::TimePrecision::Millis,
        );
        for (t, v) in body {
            enc.str(*t, v.as_bytes());
        }
        enc.finish().to_vec()
    }

    fn has(out: &[u8], field: &[u8]) -> bool {
        out.windows(field.len()).any(|w| w == field)
    }

    #[test]
    fn a_session_answers_an_order_with_business_message_reject() {
        let order = now_message(
            "D",
            2,
            &[
                (11, "ord-9"),
                (21, "1"),
                (55, "BTC-PERP"),
                (54, "1"),
                (60, "20240102-10:00:00.000"),
                (38, "1"),
                (40, "1"),
            ],
        );
        let out = through_a_session(&[order]);
        assert!(
            has(
                &out,
                b"\x0145=2\x01372=D\x01379=ord-9\x01380=4\x0158=no venue connected\x01"
            ),
            "{}",
            String::from_utf8_lossy(&out).replace('\x01', "|")
        );
        assert!(has(&out, b"\x0135=j\x01"));
    }

    #[test]
    fn bytes_that_do_not_decode_get_no_answer() {
        assert!(reject_for(1, b"garbage").is_none());
        assert!(reject_for(1, b"").is_none());
    }
}
