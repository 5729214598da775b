//! Trading status over FIX: a SecurityStatusRequest (e) is answered with a SecurityStatus (f)
//! for one instrument, and a subscription sends another whenever that instrument's status
//! changes (an operator halt or resume, an expiry), so a market maker's FIX engine stops
//! quoting a halted instrument without learning it from rejects.
//!
//! | SubscriptionRequestType(263) | answer |
//! |---|---|
//! | 0 (snapshot) | one SecurityStatus |
//! | 1 (snapshot + updates) | one now, then one with UnsolicitedIndicator(325) Y on each change |
//! | 2 (disable) | none: the subscriptions of that SecurityStatusReqID(324) end |
//!
//! SecurityTradingStatus(326): 17 (ready to trade), 2 (trading halt), 18 (not available for
//! trading: the contract expired, after which its subscription ends). An unknown symbol is
//! refused with a BusinessMessageReject, reason 2 (unknown security), as is a subscription
//! beyond [`MAX_SUBSCRIPTIONS`] (reason 0).
//!
//! Built on the socket task from the instrument directory the core thread publishes (the core
//! wakes every connection when it publishes a new one); it never reaches the core.

use portcullis_fix::{tag, Encoder, MessageRef, TimePrecision, UtcTimestamp};
use portcullis_types::{InstrumentId, InstrumentStatus};

use crate::pipeline::Directory;

/// SecurityStatusReqID(324).
pub const SECURITY_STATUS_REQ_ID: u32 = 324;
/// SecurityTradingStatus(326).
const SECURITY_TRADING_STATUS: u32 = 326;

/// Most status subscriptions one session keeps (each is checked when the directory changes).
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// What a SecurityStatusRequest asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusRequest {
    /// 263 = 0: the status now.
    Snapshot {
        /// SecurityStatusReqID(324).
        req_id: Box<[u8]>,
        /// Symbol(55).
        symbol: Box<[u8]>,
    },
    /// 263 = 1: the status now and on every change.
    Subscribe {
        /// SecurityStatusReqID(324).
        req_id: Box<[u8]>,
        /// Symbol(55).
        symbol: Box<[u8]>,
    },
    /// 263 = 2: end the subscriptions of this SecurityStatusReqID.
    Unsubscribe {
        /// SecurityStatusReqID(324).
        req_id: Box<[u8]>,
    },
}

/// Reads a SecurityStatusRequest the session validated against its dictionary (324, 55 and
/// 263 present, 263 one of 0, 1, 2).
pub fn decode(msg: &MessageRef<'_>) -> Option<StatusRequest> {
    let req_id: Box<[u8]> = msg.get(SECURITY_STATUS_REQ_ID)?.into();
    let symbol = || msg.get(tag::SYMBOL).map(Box::<[u8]>::from);
    Some(match msg.get(tag::SUBSCRIPTION_REQUEST_TYPE)? {
        b"0" => StatusRequest::Snapshot {
            req_id,
            symbol: symbol()?,
        },
        b"1" => StatusRequest::Subscribe {
            req_id,
            symbol: symbol()?,
        },
        b"2" => StatusRequest::Unsubscribe { req_id },
        _ => return None,
    })
}

/// SecurityTradingStatus(326) of an instrument status.
pub fn trading_status(status: InstrumentStatus) -> u32 {
    match status {
        InstrumentStatus::Trading => 17,
        InstrumentStatus::Halted => 2,
        InstrumentStatus::Expired => 18,
    }
}

/// One SecurityStatus to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// SecurityStatusReqID(324) of the request it answers.
    pub req_id: Box<[u8]>,
    /// Symbol(55).
    pub symbol: Box<str>,
    /// The instrument's status.
    pub status: InstrumentStatus,
    /// Sent because the status changed (UnsolicitedIndicator(325) Y), not to answer a request.
    pub unsolicited: bool,
}

impl StatusMessage {
    /// Appends the body fields, in the order of the specification's message layout.
    pub fn encode_body(&self, enc: &mut Encoder, now: UtcTimestamp) {
        enc.str(SECURITY_STATUS_REQ_ID, &self.req_id);
        enc.str(tag::SYMBOL, self.symbol.as_bytes());
        enc.str(
            tag::UNSOLICITED_INDICATOR,
            if self.unsolicited { b"Y" } else { b"N" },
        );
        enc.uint(SECURITY_TRADING_STATUS, trading_status(self.status).into());
        enc.timestamp(tag::TRANSACT_TIME, now, TimePrecision::Millis);
    }
}

/// One subscription: the status last sent for an instrument under a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscription {
    req_id: Box<[u8]>,
    instrument: InstrumentId,
    sent: InstrumentStatus,
}

/// A session's status subscriptions, and the directory generation it last compared them with.
#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: Vec<Subscription>,
    seen: u64,
}

/// Why a request is refused (BusinessRejectReason(380) and Text(58)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// BusinessRejectReason(380).
    pub reason: u64,
    /// Text(58).
    pub text: &'static str,
}

impl Subscriptions {
    /// True if there is nothing to watch.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// True if the directory changed since the subscriptions were last compared with it
    /// (and there are any).
    pub fn stale(&self, dir: &Directory) -> bool {
        !self.subs.is_empty() && dir.generation() != self.seen
    }

    /// Carries out a request against `dir`: the SecurityStatus to send now, if any.
    pub fn request(
        &mut self,
        req: StatusRequest,
        dir: &Directory,
    ) -> Result<Option<StatusMessage>, Refusal> {
        let (req_id, symbol, subscribe) = match req {
            StatusRequest::Snapshot { req_id, symbol } => (req_id, symbol, false),
            StatusRequest::Subscribe { req_id, symbol } => (req_id, symbol, true),
            StatusRequest::Unsubscribe { req_id } => {
                self.subs.retain(|s| s.req_id != req_id);
                return Ok(None);
            }
        };
        let Some((id, entry)) = dir.lookup(&symbol) else {
            return Err(Refusal {
                reason: 2,
                text: "unknown security",
            });
        };
        let status = entry.rules.status;
        if subscribe && status != InstrumentStatus::Expired {
            let known = self
                .subs
                .iter()
                .any(|s| s.req_id == req_id && s.instrument == id);
            if !known && self.subs.len() >= MAX_SUBSCRIPTIONS {
                return Err(Refusal {
                    reason: 0,
                    text: "too many security status subscriptions",
                });
            }
            self.subs
                .retain(|s| !(s.req_id == req_id && s.instrument == id));
            if self.subs.is_empty() {
                self.seen = dir.generation();
            }
            self.subs.push(Subscription {
                req_id: req_id.clone(),
                instrument: id,
                sent: status,
            });
        }
        Ok(Some(StatusMessage {
            req_id,
            symbol: entry.symbol.clone(),
            status,
            unsolicited: false,
        }))
    }

    /// The SecurityStatus messages the changes from the last directory compared to `dir`
    /// call for, one per subscription whose instrument's status changed; a subscription to
    /// an instrument that expired ends with its message.
    pub fn changes(&mut self, dir: &Directory) -> Vec<StatusMessage> {
        self.seen = dir.generation();
        let mut out = Vec::new();
        for s in &mut self.subs {
            let Some(entry) = dir.get(s.instrument) else {
                continue;
            };
            if entry.rules.status != s.sent {
                s.sent = entry.rules.status;
                out.push(StatusMessage {
                    req_id: s.req_id.clone(),
                    symbol: entry.symbol.clone(),
                    status: s.sent,
                    unsolicited: true,
                });
            }
        }
        self.subs.retain(|s| s.sent != InstrumentStatus::Expired);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_engine::Instruments;
    use portcullis_fix::BeginString;

    use crate::fix_fixtures;

    const V: [BeginString; 3] = [BeginString::Fix42, BeginString::Fix44, BeginString::Fixt11];

    fn instruments() -> Instruments {
        fix_fixtures::instruments(fix_fixtures::PERPETUALS, 0)
    }

    /// Decodes a request as the session does (dictionary first), then as the app does.
    fn decode_request(v: BeginString, body: &[(u32, &str)]) -> Option<StatusRequest> {
        fix_fixtures::taken(v, b"e", body, decode).unwrap_or_else(|r| panic!("{v}: {r:?}"))
    }

    /// The message as sent, checked against the version's dictionary: (tag, value) pairs.
    fn sent(v: BeginString, m: &StatusMessage) -> Vec<(u32, String)> {
        fix_fixtures::answer(v, b"f", |enc| {
            m.encode_body(enc, UtcTimestamp::from_nanos(1_795_000_000_000_000_000))
        })
    }

    fn field(fields: &[(u32, String)], tag: u32) -> Option<&str> {
        fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn requests_decode_in_every_version_and_a_symbol_is_needed_to_ask() {
        for v in V {
            assert_eq!(
                decode_request(v, &[(324, "S1"), (55, "BTC-PERP"), (263, "1")]),
                Some(StatusRequest::Subscribe {
                    req_id: (*b"S1").into(),
                    symbol: (*b"BTC-PERP").into()
                })
            );
            assert_eq!(
                decode_request(v, &[(324, "S1"), (55, "BTC-PERP"), (263, "2")]),
                Some(StatusRequest::Unsubscribe {
                    req_id: (*b"S1").into()
                })
            );
        }
    }

    #[test]
    fn a_subscription_hears_of_each_change_of_its_instrument_once() {
        let mut inst = instruments();
        let btc = inst.by_symbol("BTC-PERP").unwrap();
        let mut subs = Subscriptions::default();
        let dir = Directory::of(&inst);
        let req = |kind: &str, id: &str| StatusRequest::Subscribe {
            req_id: id.as_bytes().into(),
            symbol: kind.as_bytes().into(),
        };
        let now = subs.request(req("BTC-PERP", "S1"), &dir).unwrap().unwrap();
        assert_eq!(
            (now.status, now.unsolicited),
            (InstrumentStatus::Trading, false)
        );
        for v in V {
            let f = sent(v, &now);
            assert_eq!(
                (
                    field(&f, 324),
                    field(&f, 55),
                    field(&f, 325),
                    field(&f, 326)
                ),
                (Some("S1"), Some("BTC-PERP"), Some("N"), Some("17")),
                "{v}"
            );
        }
        // Nothing changed: nothing to send, even when the directory is published again.
        assert!(!subs.stale(&dir));
        let again = Directory::of(&inst);
        assert!(subs.stale(&again));
        assert_eq!(subs.changes(&again), []);
        // A halt: one unsolicited message; the other instrument's halt: none.
        inst.set_status(btc, InstrumentStatus::Halted);
        inst.set_status(
            inst.by_symbol("ETH-PERP").unwrap(),
            InstrumentStatus::Halted,
        );
        let halted = Directory::of(&inst);
        let changes = subs.changes(&halted);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].status, changes[0].unsolicited),
            (InstrumentStatus::Halted, true)
        );
        for v in V {
            let f = sent(v, &changes[0]);
            assert_eq!(
                (field(&f, 325), field(&f, 326)),
                (Some("Y"), Some("2")),
                "{v}"
            );
        }
        assert!(!subs.stale(&halted));
        // Unsubscribed: a resume is not sent.
        subs.request(
            StatusRequest::Unsubscribe {
                req_id: (*b"S1").into(),
            },
            &halted,
        )
        .unwrap();
        assert!(subs.is_empty());
        inst.set_status(btc, InstrumentStatus::Trading);
        assert!(!subs.stale(&Directory::of(&inst)));
    }

    #[test]
    fn an_expiry_ends_its_subscription_and_unknown_symbols_and_too_many_are_refused() {
        let mut inst = instruments();
        let btc = inst.by_symbol("BTC-PERP").unwrap();
        let mut subs = Subscriptions::default();
        let dir = Directory::of(&inst);
        let sub = |id: String| StatusRequest::Subscribe {
            req_id: id.as_bytes().into(),
            symbol: (*b"BTC-PERP").into(),
        };
        subs.request(sub("S1".into()), &dir).unwrap();
        inst.set_status(btc, InstrumentStatus::Expired);
        let expired = Directory::of(&inst);
        let changes = subs.changes(&expired);
        assert_eq!(changes[0].status, InstrumentStatus::Expired);
        assert_eq!(trading_status(changes[0].status), 18);
        assert!(subs.is_empty());
        // A snapshot of an unknown symbol: reason 2.
        let unknown = StatusRequest::Snapshot {
            req_id: (*b"S2").into(),
            symbol: (*b"NOPE-PERP").into(),
        };
        assert_eq!(subs.request(unknown, &dir).unwrap_err().reason, 2);
        // Beyond the limit, a new subscription is refused; one renewed is not.
        for i in 0..MAX_SUBSCRIPTIONS {
            subs.request(sub(format!("R{i}")), &dir).unwrap();
        }
        assert_eq!(
            subs.request(sub("one more".into()), &dir)
                .unwrap_err()
                .reason,
            0
        );
        assert!(subs.request(sub("R7".into()), &dir).is_ok());
    }
}
