//! Positions over FIX: a RequestForPositions (AN) is answered with a RequestForPositionsAck (AO)
//! and one PositionReport (AP) per instrument the account is not flat in (FIX 4.4 and
//! FIXT.1.1 / 5.0 SP2; FIX 4.2 has no position messages).
//!
//! The positions are the risk engine's: net quantity per account and instrument from every
//! fill since the journal began, the same figure the position limits check. The core thread
//! lists them (a rare, rate-weighted request that never holds up an order); the socket task
//! encodes the answer and sends the reports at the client's reading pace.
//!
//! | field | value |
//! |---|---|
//! | PosReqType(724) | 0 (positions) only; other types: PosReqResult(728) 4 |
//! | SubscriptionRequestType(263) | 0 (snapshot) if given; 1 and 2: PosReqResult 4 |
//! | Account(1) | an account of the session (else PosReqResult 3); default its first |
//! | Symbol(55) | one instrument (unknown: PosReqResult 1); absent: every instrument |
//! | PosReqResult(728) | 0 with reports, 2 when the account is flat in what was asked for |
//! | PositionQty | one entry, PosType(703) `TQ`, LongQty(704) and ShortQty(705) (one is 0) |
//! | SettlPrice(730) / PriorSettlPrice(734) | the instrument's reference price (last trade or mark; 0 without one), SettlPriceType(731) 2 (theoretical): there is no settlement here |
//! | ClearingBusinessDate(715) | the trading day (the UTC date at which it ends) |
//!
//! Every report carries PosReqID(710), TotalNumPosReports(727) and PosMaintRptID(721) `PR<n>`
//! (unique, also across restarts); AccountType(581) echoes the request's (1 if absent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use portcullis_engine::Position;
use portcullis_fix::time::civil_from_days;
use portcullis_fix::{tag, Encoder, MessageRef};
use portcullis_types::{AccountId, InstrumentId};

use crate::order_codec::{self, fixed, Ctx};
use crate::pipeline::{Directory, PositionsReply};

/// PosReqID(710).
pub const POS_REQ_ID: u32 = 710;
/// PosReqType(724).
const POS_REQ_TYPE: u32 = 724;
/// AccountType(581).
const ACCOUNT_TYPE: u32 = 581;
/// PosMaintRptID(721).
const POS_MAINT_RPT_ID: u32 = 721;
/// TotalNumPosReports(727).
const TOTAL_NUM_POS_REPORTS: u32 = 727;
/// PosReqResult(728), PosReqStatus(729).
const POS_REQ_RESULT: u32 = 728;
const POS_REQ_STATUS: u32 = 729;
/// ClearingBusinessDate(715).
const CLEARING_BUSINESS_DATE: u32 = 715;
/// SettlPrice(730), SettlPriceType(731), PriorSettlPrice(734).
const SETTL_PRICE: u32 = 730;
const SETTL_PRICE_TYPE: u32 = 731;
const PRIOR_SETTL_PRICE: u32 = 734;
/// NoPositions(702), PosType(703), LongQty(704), ShortQty(705).
const NO_POSITIONS: u32 = 702;
const POS_TYPE: u32 = 703;
const LONG_QTY: u32 = 704;
const SHORT_QTY: u32 = 705;

/// Why a RequestForPositions is refused: its PosReqResult(728) and Text(58).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionsRefusal {
    /// 1: invalid request (an unknown symbol).
    Invalid(&'static str),
    /// 3: not authorized (not an account of the session).
    NotAuthorized,
    /// 4: a request for something this server does not report, with what to send instead.
    Unsupported(&'static str),
    /// 99: the server is busy (its queue to the core thread is full).
    Busy,
}

impl PositionsRefusal {
    fn result(self) -> u64 {
        match self {
            PositionsRefusal::Invalid(_) => 1,
            PositionsRefusal::NotAuthorized => 3,
            PositionsRefusal::Unsupported(_) => 4,
            PositionsRefusal::Busy => 99,
        }
    }

    fn text(self) -> &'static str {
        match self {
            PositionsRefusal::Invalid(t) | PositionsRefusal::Unsupported(t) => t,
            PositionsRefusal::NotAuthorized => {
                "unknown account: Account(1) must be an account of the session"
            }
            PositionsRefusal::Busy => "server busy: ask again shortly",
        }
    }
}

/// What a RequestForPositions asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionsQuery {
    /// The account (Account(1), or the session's first).
    pub account: AccountId,
    /// One instrument (Symbol(55)), or all.
    pub instrument: Option<InstrumentId>,
}

/// Reads a RequestForPositions (validated by the session against its dictionary).
pub fn decode(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<PositionsQuery, PositionsRefusal> {
    if msg.get(POS_REQ_TYPE) != Some(b"0") {
        return Err(PositionsRefusal::Unsupported(
            "only positions are reported: PosReqType(724) must be 0",
        ));
    }
    if !matches!(msg.get(tag::SUBSCRIPTION_REQUEST_TYPE), None | Some(b"0")) {
        return Err(PositionsRefusal::Unsupported(
            "only snapshots are served: SubscriptionRequestType(263) must be 0",
        ));
    }
    let account = order_codec::account(msg, ctx).map_err(|_| PositionsRefusal::NotAuthorized)?;
    let instrument = match msg.get(tag::SYMBOL) {
        None => None,
        Some(s) => match ctx.directory.lookup(s) {
            Some((id, _)) => Some(id),
            None => return Err(PositionsRefusal::Invalid("unknown symbol")),
        },
    };
    Ok(PositionsQuery {
        account,
        instrument,
    })
}

/// Numbers PosMaintRptID(721) `PR<n>`: seeded from the clock at start, so they differ across
/// restarts too.
static REPORT_ID: AtomicU64 = AtomicU64::new(0);

/// Seeds the PosMaintRptID counter (once at start).
pub fn seed_report_ids(seed: u64) {
    REPORT_ID.store(seed, Ordering::Relaxed);
}

fn report_id(enc: &mut Encoder, scratch: &mut Vec<u8>) {
    let n = REPORT_ID.fetch_add(1, Ordering::Relaxed);
    scratch.clear();
    scratch.extend_from_slice(b"PR");
    scratch.extend_from_slice(n.to_string().as_bytes());
    enc.str(POS_MAINT_RPT_ID, scratch);
}

/// ClearingBusinessDate(715) at `now_ns`: the UTC date on which the trading day in progress
/// ends (`day_end_secs` after midnight UTC; 0: the UTC date).
pub fn clearing_business_date(now_ns: i64, day_end_secs: u32) -> [u8; 8] {
    let shifted = now_ns.div_euclid(1_000_000_000) + i64::from((86_400 - day_end_secs) % 86_400);
    let (y, m, d) = civil_from_days(shifted.div_euclid(86_400));
    let mut out = [b'0'; 8];
    let digits = format!("{:04}{m:02}{d:02}", y.clamp(0, 9999));
    out.copy_from_slice(digits.as_bytes());
    out
}

/// One answer to a RequestForPositions being sent: the acknowledgement, then the reports as
/// the client reads them.
#[derive(Debug)]
pub struct PositionsAnswer {
    req_id: Box<[u8]>,
    /// Account(1) of the reports.
    account: Box<[u8]>,
    /// AccountType(581) as the request gave it.
    account_type: Option<Box<[u8]>>,
    clearing_date: [u8; 8],
    outcome: Result<Vec<Position>, PositionsRefusal>,
    dir: Arc<Directory>,
    /// Messages sent so far: the acknowledgement, then the reports.
    sent: usize,
}

impl PositionsAnswer {
    /// The answer to `msg` for `account`: `outcome` is the refusal, or the positions (see
    /// [`PositionsAnswer::fill`]).
    pub fn new(
        msg: &MessageRef<'_>,
        account: &[u8],
        clearing_date: [u8; 8],
        dir: Arc<Directory>,
        outcome: Result<Vec<Position>, PositionsRefusal>,
    ) -> Self {
        PositionsAnswer {
            req_id: msg.get(POS_REQ_ID).unwrap_or(b"").into(),
            account: account.into(),
            account_type: msg.get(ACCOUNT_TYPE).map(Into::into),
            clearing_date,
            outcome,
            dir,
            sent: 0,
        }
    }

    /// Takes the positions the core thread listed into `reply`, with the instrument directory
    /// as it is now (which lists every instrument the core knew when it made the list).
    pub fn fill(&mut self, reply: &PositionsReply, dir: Arc<Directory>) {
        self.outcome = Ok(reply.get().map(<[Position]>::to_vec).unwrap_or_default());
        self.dir = dir;
    }

    /// The messages the answer has in all.
    fn total(&self) -> usize {
        1 + self.outcome.as_ref().map_or(0, Vec::len)
    }

    /// True once every message has been sent (or the rest abandoned).
    pub fn is_done(&self) -> bool {
        self.sent >= self.total()
    }

    /// Gives up what is not sent yet (a message could not be sent: the rest would leave out
    /// of order).
    pub fn abandon(&mut self) {
        self.sent = self.total();
    }

    /// The MsgType of the next message.
    pub fn next_msg_type(&self) -> &'static [u8] {
        if self.sent == 0 {
            b"AO"
        } else {
            b"AP"
        }
    }

    /// Encodes the body of the next message (the session adds the header).
    pub fn encode_next(&mut self, enc: &mut Encoder, scratch: &mut Vec<u8>) {
        let n = self.sent;
        self.sent += 1;
        report_id(enc, scratch);
        enc.str(POS_REQ_ID, &self.req_id);
        let reports = self.outcome.as_ref().map_or(0, Vec::len);
        let (result, status, text) = match &self.outcome {
            Err(r) => (r.result(), 2, Some(r.text())),
            Ok(list) if list.is_empty() => (
                2,
                0,
                Some("no positions: the account is flat in what was asked for"),
            ),
            Ok(_) => (0, 0, None),
        };
        if n == 0 {
            enc.uint(TOTAL_NUM_POS_REPORTS, reports as u64);
            enc.str(tag::UNSOLICITED_INDICATOR, b"N");
            enc.uint(POS_REQ_RESULT, result);
            enc.uint(POS_REQ_STATUS, status);
            self.account_fields(enc);
            if let Some(t) = text {
                enc.str(tag::TEXT, t.as_bytes());
            }
            return;
        }
        let Ok(list) = &self.outcome else { return };
        let p = list[n - 1];
        enc.uint(POS_REQ_TYPE, 0);
        enc.uint(tag::SUBSCRIPTION_REQUEST_TYPE, 0);
        enc.uint(TOTAL_NUM_POS_REPORTS, reports as u64);
        enc.str(tag::UNSOLICITED_INDICATOR, b"N");
        enc.uint(POS_REQ_RESULT, 0);
        enc.str(CLEARING_BUSINESS_DATE, &self.clearing_date);
        self.account_fields(enc);
        let Some(e) = self.dir.get(p.instrument) else {
            // Instruments are never removed from the directory; an answer built from it always
            // finds its own.
            return;
        };
        enc.str(tag::SYMBOL, e.symbol.as_bytes());
        let px = p.reference_price.map_or(0, |p| p.0);
        fixed(enc, SETTL_PRICE, px, e.price_scale, scratch);
        enc.uint(SETTL_PRICE_TYPE, 2);
        fixed(enc, PRIOR_SETTL_PRICE, px, e.price_scale, scratch);
        enc.uint(NO_POSITIONS, 1);
        enc.str(POS_TYPE, b"TQ");
        let q = p.qty.0;
        fixed(enc, LONG_QTY, q.max(0), e.qty_scale, scratch);
        fixed(
            enc,
            SHORT_QTY,
            q.min(0).saturating_neg(),
            e.qty_scale,
            scratch,
        );
    }

    fn account_fields(&self, enc: &mut Encoder) {
        enc.str(tag::ACCOUNT, &self.account);
        enc.str(ACCOUNT_TYPE, self.account_type.as_deref().unwrap_or(b"1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_fix::{BeginString, Decoder, Dictionary};

    use crate::fix_fixtures::{self, instruments, message};
    use portcullis_types::{Price, Qty, SessionId};

    const V: [BeginString; 2] = [BeginString::Fix44, BeginString::Fixt11];

    /// 2026-11-28 10:00 UTC.
    const NOW_NS: i64 = (20_785 * 86_400 + 36_000) * 1_000_000_000;

    fn directory() -> Arc<Directory> {
        let inst = instruments(
            r#"
            [[instruments]]
            symbol = "BTC-PERP"
            price_scale = 1
            qty_scale = 3
            tick = "0.5"
            lot = "0.005"
            min_qty = "0.01"
            max_qty = "10"

            [[instruments]]
            symbol = "BTC-261225-100000-C"
            price_scale = 1
            qty_scale = 1
            tick = "5"
            lot = "0.1"
            min_qty = "0.1"
            max_qty = "1000"
            "#,
            NOW_NS / 1_000_000,
        );
        Arc::new(Directory::of(&inst))
    }

    fn names() -> Vec<Box<str>> {
        vec!["ACC-A".into(), "ACC-B".into(), "ACC-C".into()]
    }

    /// Decodes a request as the session does (dictionary first), then as the app does, for a
    /// session trading for ACC-A and ACC-B.
    fn query(v: BeginString, body: &[(u32, &str)]) -> Result<PositionsQuery, PositionsRefusal> {
        let dir = directory();
        let names = names();
        let ctx = Ctx {
            directory: &dir,
            allowed: &[AccountId(0), AccountId(1)],
            account_names: &names,
            session: SessionId(0),
            now_ns: NOW_NS,
            trading_day_end_secs: 0,
        };
        fix_fixtures::taken(v, b"AN", body, |m| decode(m, &ctx))
            .unwrap_or_else(|r| panic!("{v}: {r:?}"))
    }

    /// Every message of an answer, each checked against the version's dictionary.
    fn answer(
        v: BeginString,
        request: &[(u32, &str)],
        outcome: Result<Vec<Position>, PositionsRefusal>,
    ) -> Vec<Vec<(u32, String)>> {
        let bytes = message(v, b"AN", request);
        let mut d = Decoder::new();
        let req = d.decode(&bytes).unwrap();
        let mut a = PositionsAnswer::new(&req, b"ACC-A", *b"20261128", directory(), outcome);
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        while !a.is_done() {
            let msg_type = a.next_msg_type();
            out.push(fix_fixtures::answer(v, msg_type, |enc| {
                a.encode_next(enc, &mut scratch)
            }));
            assert!(out.len() < 100, "the answer never ends");
        }
        out
    }

    fn get(m: &[(u32, String)], t: u32) -> Option<&str> {
        m.iter().find(|(x, _)| *x == t).map(|(_, v)| v.as_str())
    }

    fn has(m: &[(u32, String)], fields: &[(u32, &str)]) {
        for (t, val) in fields {
            assert_eq!(get(m, *t), Some(*val), "{t} in {m:?}");
        }
    }

    #[test]
    fn requests_name_the_account_and_the_instrument_or_are_refused_precisely() {
        for v in V {
            let minimal = [(710, "P1"), (724, "0")];
            assert_eq!(
                query(v, &minimal),
                Ok(PositionsQuery {
                    account: AccountId(0),
                    instrument: None
                })
            );
            // What FIX 4.4 lists as required is accepted too.
            let full = [
                (710, "P2"),
                (724, "0"),
                (263, "0"),
                (453, "1"),
                (448, "TW"),
                (447, "D"),
                (452, "3"),
                (1, "ACC-B"),
                (581, "1"),
                (55, "BTC-PERP"),
                (715, "20261128"),
                (60, "20261128-10:00:00.000"),
            ];
            assert_eq!(
                query(v, &full),
                Ok(PositionsQuery {
                    account: AccountId(1),
                    instrument: Some(InstrumentId(0))
                })
            );
            assert_eq!(
                query(v, &[(710, "P3"), (724, "0"), (1, "ACC-C")]),
                Err(PositionsRefusal::NotAuthorized),
                "not an account of the session"
            );
            assert_eq!(
                query(v, &[(710, "P4"), (724, "0"), (55, "ETH-PERP")]),
                Err(PositionsRefusal::Invalid("unknown symbol"))
            );
            for other in [[(710, "P5"), (724, "1")], [(710, "P6"), (263, "1")]] {
                let mut body = other.to_vec();
                if !body.iter().any(|(t, _)| *t == 724) {
                    body.push((724, "0"));
                }
                assert!(
                    matches!(query(v, &body), Err(PositionsRefusal::Unsupported(_))),
                    "{body:?}"
                );
            }
        }
    }

    #[test]
    fn a_request_without_its_id_is_invalid_fix() {
        let bytes = message(BeginString::Fix44, b"AN", &[(724, "0")]);
        let mut d = Decoder::new();
        let m = d.decode(&bytes).unwrap();
        assert!(Dictionary::for_version(BeginString::Fix44)
            .validate(&m)
            .is_err());
        // FIX 4.2 has no position messages.
        let bytes = message(BeginString::Fix42, b"AN", &[(710, "P1"), (724, "0")]);
        let m = d.decode(&bytes).unwrap();
        assert!(Dictionary::for_version(BeginString::Fix42)
            .validate(&m)
            .is_err());
    }

    #[test]
    fn positions_are_acknowledged_then_reported_one_instrument_each() {
        let long_perp = Position {
            instrument: InstrumentId(0),
            qty: Qty(2_500),
            reference_price: Some(Price(1_000_005)),
            entry_price: Some(Price(990_000)),
        };
        let short_call = Position {
            instrument: InstrumentId(1),
            qty: Qty(-40),
            reference_price: None,
            entry_price: Some(Price(50)),
        };
        for v in V {
            let req = [(710, "P1"), (724, "0"), (581, "3")];
            let msgs = answer(v, &req, Ok(vec![long_perp, short_call]));
            assert_eq!(msgs.len(), 3);
            has(
                &msgs[0],
                &[
                    (35, "AO"),
                    (710, "P1"),
                    (727, "2"),
                    (728, "0"),
                    (729, "0"),
                    (1, "ACC-A"),
                    (581, "3"),
                ],
            );
            assert_eq!(get(&msgs[0], 58), None);
            has(
                &msgs[1],
                &[
                    (35, "AP"),
                    (710, "P1"),
                    (727, "2"),
                    (728, "0"),
                    (715, "20261128"),
                    (1, "ACC-A"),
                    (55, "BTC-PERP"),
                    (730, "100000.5"),
                    (731, "2"),
                    (734, "100000.5"),
                    (702, "1"),
                    (703, "TQ"),
                    (704, "2.500"),
                    (705, "0.000"),
                ],
            );
            has(
                &msgs[2],
                &[
                    (55, "BTC-261225-100000-C"),
                    (704, "0.0"),
                    (705, "4.0"),
                    (730, "0.0"),
                ],
            );
            let ids: Vec<_> = msgs.iter().map(|m| get(m, 721).unwrap()).collect();
            assert!(ids.iter().all(|i| i.starts_with("PR")), "{ids:?}");
            assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
        }
    }

    #[test]
    fn a_flat_account_and_a_refusal_are_one_acknowledgement() {
        for v in V {
            let msgs = answer(v, &[(710, "P1"), (724, "0")], Ok(Vec::new()));
            assert_eq!(msgs.len(), 1);
            has(
                &msgs[0],
                &[(35, "AO"), (727, "0"), (728, "2"), (729, "0"), (581, "1")],
            );
            assert!(get(&msgs[0], 58).unwrap().contains("flat"));
            for (refusal, result) in [
                (PositionsRefusal::Invalid("unknown symbol"), "1"),
                (PositionsRefusal::NotAuthorized, "3"),
                (PositionsRefusal::Unsupported("only snapshots"), "4"),
                (PositionsRefusal::Busy, "99"),
            ] {
                let msgs = answer(v, &[(710, "P9"), (724, "0")], Err(refusal));
                assert_eq!(msgs.len(), 1);
                has(
                    &msgs[0],
                    &[
                        (35, "AO"),
                        (710, "P9"),
                        (727, "0"),
                        (728, result),
                        (729, "2"),
                    ],
                );
                assert_eq!(get(&msgs[0], 58), Some(refusal.text()));
            }
        }
    }

    #[test]
    fn the_clearing_business_date_is_the_trading_days_end() {
        assert_eq!(&clearing_business_date(NOW_NS, 0), b"20261128");
        // A day ending at 21:00 UTC: at 10:00 it is still the 28th's, at 22:00 the 29th's.
        let day_end = 21 * 3600;
        assert_eq!(&clearing_business_date(NOW_NS, day_end), b"20261128");
        let late = NOW_NS + 12 * 3_600_000_000_000;
        assert_eq!(&clearing_business_date(late, day_end), b"20261129");
        assert_eq!(&clearing_business_date(late, 0), b"20261128");
    }

    proptest::proptest! {
        /// Any request the dictionary lets through is answered with an acknowledgement and
        /// as many reports as it announces, every message valid for the version.
        #[test]
        fn any_request_is_answered_with_valid_messages(
            req_type in proptest::sample::select(vec!["0", "1", "2", "3", "4", "5", "9", "-1", "x"]),
            subscription in proptest::option::of(proptest::sample::select(vec!["0", "1", "2", "3"])),
            account in proptest::option::of(proptest::sample::select(vec![
                "ACC-A", "ACC-B", "ACC-C", "", "acc-a",
            ])),
            symbol in proptest::option::of(proptest::sample::select(vec![
                "BTC-PERP", "BTC-261225-100000-C", "NOPE", "", "btc-perp",
            ])),
            qty in proptest::collection::vec(-1_000_000_000i64..1_000_000_000, 0..3),
            v in proptest::sample::select(V.to_vec()),
        ) {
            let mut body = vec![(710, "P1"), (724, req_type)];
            body.extend(subscription.map(|t| (263, t)));
            body.extend(account.map(|a| (1, a)));
            body.extend(symbol.map(|s| (55, s)));
            if fix_fixtures::taken(v, b"AN", &body, |_| ()).is_err() {
                // The session answers it with a Reject; the app never sees it.
                return Ok(());
            }
            let outcome = query(v, &body).map(|_| {
                qty.iter()
                    .enumerate()
                    .map(|(i, &q)| Position {
                        instrument: InstrumentId(i as u32),
                        qty: Qty(q),
                        reference_price: (q % 2 == 0).then_some(Price(q)),
                        entry_price: Some(Price(q.abs())),
                    })
                    .filter(|p| p.qty.0 != 0)
                    .collect()
            });
            let msgs = answer(v, &body, outcome);
            let announced: usize = get(&msgs[0], 727).unwrap().parse().unwrap();
            proptest::prop_assert_eq!(msgs.len(), 1 + announced);
            proptest::prop_assert_eq!(get(&msgs[0], 35), Some("AO"));
        }
    }
}
