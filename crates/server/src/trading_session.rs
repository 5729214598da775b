//! The trading session over FIX: a TradingSessionStatusRequest (g) is answered with a
//! TradingSessionStatus (h), and a subscription sends another whenever the session halts or
//! opens again, so a FIX engine that asks at Logon, as exchange connections do, learns that
//! nothing trades while the global kill switch is on without learning it from rejects.
//!
//! There is one continuous session, TradingSessionID(336) `1`; a request may name it or none.
//!
//! | SubscriptionRequestType(263) | answer |
//! |---|---|
//! | 0 (snapshot) | one TradingSessionStatus |
//! | 1 (snapshot + updates) | one now, then one with UnsolicitedIndicator(325) Y on each change |
//! | 2 (disable) | none: the subscription of that TradSesReqID(335) ends |
//!
//! TradSesStatus(340): 2 (open), 1 (halted: the global kill switch is on). A request for another
//! TradingSessionID is answered with TradSesStatus 6 (request rejected) and
//! TradSesStatusRejReason(567) 1 (unknown or invalid TradingSessionID) from FIX 4.4 on, with a
//! BusinessMessageReject on FIX 4.2, which has neither.
//!
//! Built on the socket task from the directory the core thread publishes (and publishes again
//! when the global kill switch changes, waking every connection); it never reaches the core.

use portcullis_fix::{tag, BeginString, Encoder, MessageRef};

/// TradSesReqID(335).
pub const TRAD_SES_REQ_ID: u32 = 335;
/// TradingSessionID(336).
const TRADING_SESSION_ID: u32 = 336;
/// TradSesStatus(340).
const TRAD_SES_STATUS: u32 = 340;
/// TradSesStatusRejReason(567).
const TRAD_SES_STATUS_REJ_REASON: u32 = 567;

/// The one trading session's TradingSessionID(336).
pub const SESSION_ID: &[u8] = b"1";

/// Most trading session subscriptions one FIX session keeps.
pub const MAX_SUBSCRIPTIONS: usize = 16;

/// What a TradingSessionStatusRequest asks for (validated by the session's dictionary, which
/// requires 335 and a 263 of 0, 1 or 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRequest {
    /// 263 = 0: the status now.
    Snapshot(Box<[u8]>),
    /// 263 = 1: the status now and on every change.
    Subscribe(Box<[u8]>),
    /// 263 = 2: end the subscription of this TradSesReqID.
    Unsubscribe(Box<[u8]>),
    /// A TradingSessionID other than ours.
    UnknownSession(Box<[u8]>),
}

/// Reads a TradingSessionStatusRequest.
pub fn decode(msg: &MessageRef<'_>) -> SessionRequest {
    let req_id: Box<[u8]> = msg.get(TRAD_SES_REQ_ID).unwrap_or(b"").into();
    if msg.get(TRADING_SESSION_ID).is_some_and(|s| s != SESSION_ID) {
        return SessionRequest::UnknownSession(req_id);
    }
    match msg.get(tag::SUBSCRIPTION_REQUEST_TYPE) {
        Some(b"1") => SessionRequest::Subscribe(req_id),
        Some(b"2") => SessionRequest::Unsubscribe(req_id),
        _ => SessionRequest::Snapshot(req_id),
    }
}

/// One TradingSessionStatus to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// TradSesReqID(335) of the request or subscription.
    pub req_id: Box<[u8]>,
    /// `None`: the request is rejected (unknown TradingSessionID); else halted or open.
    pub halted: Option<bool>,
    /// UnsolicitedIndicator(325): a change, not an answer.
    pub unsolicited: bool,
}

impl SessionStatus {
    /// Encodes the body (the session adds the header).
    pub fn encode_body(&self, enc: &mut Encoder, v: BeginString) {
        enc.str(TRAD_SES_REQ_ID, &self.req_id);
        enc.str(TRADING_SESSION_ID, SESSION_ID);
        enc.str(
            tag::UNSOLICITED_INDICATOR,
            if self.unsolicited { b"Y" } else { b"N" },
        );
        match self.halted {
            Some(halted) => {
                enc.uint(TRAD_SES_STATUS, if halted { 1 } else { 2 });
                if halted {
                    enc.str(tag::TEXT, b"the venue's kill switch is on: nothing trades");
                }
            }
            None => {
                enc.uint(TRAD_SES_STATUS, 6);
                if v != BeginString::Fix42 {
                    enc.uint(TRAD_SES_STATUS_REJ_REASON, 1);
                }
                enc.str(tag::TEXT, b"unknown TradingSessionID: the one session is 1");
            }
        }
    }
}

/// A FIX session's trading session subscriptions and the state they last heard.
#[derive(Debug, Default)]
pub struct SessionSubscriptions {
    req_ids: Vec<Box<[u8]>>,
    /// The status the subscribers last heard.
    halted: bool,
}

/// Why a request cannot be served: BusinessRejectReason(380) and Text(58).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// BusinessRejectReason(380).
    pub reason: u64,
    /// Text(58).
    pub text: &'static str,
}

impl SessionSubscriptions {
    /// True if nobody subscribed (the directory need not be looked at).
    pub fn is_empty(&self) -> bool {
        self.req_ids.is_empty()
    }

    /// True if the subscribers have not heard `halted` yet.
    pub fn stale(&self, halted: bool) -> bool {
        !self.req_ids.is_empty() && self.halted != halted
    }

    /// Takes a request; the answer to send now, if any.
    pub fn request(
        &mut self,
        req: SessionRequest,
        halted: bool,
        v: BeginString,
    ) -> Result<Option<SessionStatus>, Refusal> {
        let status = |req_id: Box<[u8]>| SessionStatus {
            req_id,
            halted: Some(halted),
            unsolicited: false,
        };
        match req {
            SessionRequest::Snapshot(id) => Ok(Some(status(id))),
            SessionRequest::Subscribe(id) => {
                if !self.req_ids.contains(&id) {
                    if self.req_ids.len() >= MAX_SUBSCRIPTIONS {
                        return Err(Refusal {
                            reason: 0,
                            text: "too many trading session subscriptions on this session",
                        });
                    }
                    self.req_ids.push(id.clone());
                }
                self.halted = halted;
                Ok(Some(status(id)))
            }
            SessionRequest::Unsubscribe(id) => {
                self.req_ids.retain(|r| *r != id);
                Ok(None)
            }
            SessionRequest::UnknownSession(_) if v == BeginString::Fix42 => Err(Refusal {
                reason: 0,
                text: "unknown TradingSessionID: the one session is 1",
            }),
            SessionRequest::UnknownSession(id) => Ok(Some(SessionStatus {
                req_id: id,
                halted: None,
                unsolicited: false,
            })),
        }
    }

    /// The updates for the subscribers if the session is now `halted` and they heard otherwise.
    pub fn changes(&mut self, halted: bool) -> Vec<SessionStatus> {
        if !self.stale(halted) {
            return Vec::new();
        }
        self.halted = halted;
        self.req_ids
            .iter()
            .map(|id| SessionStatus {
                req_id: id.clone(),
                halted: Some(halted),
                unsolicited: true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_fix::{Decoder, Dictionary};

    use crate::fix_fixtures;

    const V: [BeginString; 3] = [BeginString::Fix42, BeginString::Fix44, BeginString::Fixt11];

    /// A request as the session validates it, then as the app reads it.
    fn request(v: BeginString, fields: &[(u32, &str)]) -> Result<SessionRequest, String> {
        let bytes = fix_fixtures::message(v, b"g", fields);
        let mut d = Decoder::new();
        let m = d.decode(&bytes).unwrap();
        Dictionary::for_version(v)
            .validate(&m)
            .map_err(|r| format!("{r:?}"))?;
        Ok(decode(&m))
    }

    /// The message as sent, checked against the version's dictionary, as `tag=value|...`.
    fn sent(v: BeginString, s: &SessionStatus) -> String {
        let bytes = fix_fixtures::message_with(v, b"h", |enc| s.encode_body(enc, v));
        let mut d = Decoder::new();
        let m = d.decode(&bytes).unwrap();
        let shown = String::from_utf8_lossy(&bytes).replace('\x01', "|");
        Dictionary::for_version(v)
            .validate(&m)
            .unwrap_or_else(|r| panic!("{v}: {r:?}: {shown}"));
        shown
    }

    #[test]
    fn requests_are_read_and_refused_as_the_dictionary_and_the_session_say() {
        for v in V {
            assert_eq!(
                request(v, &[(335, "T1"), (263, "0")]),
                Ok(SessionRequest::Snapshot((*b"T1").into()))
            );
            assert_eq!(
                request(v, &[(335, "T2"), (336, "1"), (263, "1")]),
                Ok(SessionRequest::Subscribe((*b"T2").into()))
            );
            assert_eq!(
                request(v, &[(335, "T2"), (263, "2")]),
                Ok(SessionRequest::Unsubscribe((*b"T2").into()))
            );
            assert_eq!(
                request(v, &[(335, "T3"), (336, "PRE"), (263, "0")]),
                Ok(SessionRequest::UnknownSession((*b"T3").into()))
            );
            assert!(request(v, &[(263, "0")]).is_err(), "335 is required");
            assert!(request(v, &[(335, "T4")]).is_err(), "263 is required");
            assert!(request(v, &[(335, "T5"), (263, "7")]).is_err());
        }
    }

    #[test]
    fn subscribers_hear_each_change_once_and_answers_are_valid_in_every_version() {
        for v in V {
            let mut subs = SessionSubscriptions::default();
            let now = subs
                .request(SessionRequest::Subscribe((*b"S1").into()), false, v)
                .unwrap()
                .unwrap();
            let text = sent(v, &now);
            assert!(text.contains("|335=S1|336=1|325=N|340=2|"), "{text}");
            assert!(!subs.stale(false));
            assert!(subs.changes(false).is_empty());
            // The kill switch goes on: one update, then nothing more until it changes again.
            assert!(subs.stale(true));
            let up = subs.changes(true);
            assert_eq!(up.len(), 1);
            let text = sent(v, &up[0]);
            assert!(text.contains("|335=S1|336=1|325=Y|340=1|58="), "{text}");
            assert!(subs.changes(true).is_empty());
            assert_eq!(subs.changes(false)[0].halted, Some(false));
            // A snapshot is not a subscription; an unsubscribe ends it.
            let snap = subs
                .request(SessionRequest::Snapshot((*b"S2").into()), true, v)
                .unwrap()
                .unwrap();
            assert!(sent(v, &snap).contains("|325=N|340=1|"));
            assert_eq!(
                subs.request(SessionRequest::Unsubscribe((*b"S1").into()), false, v),
                Ok(None)
            );
            assert!(subs.is_empty() && !subs.stale(true));
            // Another session: rejected in the answer from 4.4 on, a business reject on 4.2.
            let other = subs.request(SessionRequest::UnknownSession((*b"S3").into()), false, v);
            match v {
                BeginString::Fix42 => assert!(other.is_err()),
                _ => {
                    let text = sent(v, &other.unwrap().unwrap());
                    assert!(text.contains("|340=6|567=1|"), "{text}");
                }
            }
        }
    }

    #[test]
    fn subscriptions_are_bounded() {
        let mut subs = SessionSubscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            let id = format!("S{i}").into_bytes().into_boxed_slice();
            assert!(subs
                .request(SessionRequest::Subscribe(id), false, BeginString::Fix44)
                .is_ok());
        }
        // The same id again is the same subscription; a new one is refused.
        let again = SessionRequest::Subscribe((*b"S0").into());
        assert!(subs.request(again, false, BeginString::Fix44).is_ok());
        let more = SessionRequest::Subscribe((*b"X").into());
        assert_eq!(
            subs.request(more, false, BeginString::Fix44)
                .unwrap_err()
                .reason,
            0
        );
    }
}
