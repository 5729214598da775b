//! Reference data over FIX: a SecurityListRequest (x) is answered with SecurityList (y)
//! messages listing the instruments that trade now (options, futures, perpetuals and spot
//! pairs, with their trading rules), so a market maker's FIX engine discovers the option series
//! the server lists from its rules without a file or another API.
//!
//! The answer is built on the socket task from the instrument directory the core thread
//! publishes (it never reaches the core), from one snapshot, so a list in fragments stays
//! consistent while series roll. It leaves in fragments of [`FRAGMENT`] instruments, each
//! carrying TotNoRelatedSym(393) and LastFragment(893), at the client's reading pace.
//!
//! | request | listed |
//! |---|---|
//! | SecurityListRequestType(559) 0 + Symbol(55) | that instrument |
//! | 559 = 1 + SecurityType(167) | every instrument of the type (`OPT`, `FUT` with perpetuals, `FXSPOT`) |
//! | 559 = 4 | every instrument (of SecurityType(167) if given) |
//!
//! Expired contracts are not listed. SubscriptionRequestType(263) must be 0 (snapshot) if
//! given. A refused request is answered with one SecurityList whose SecurityRequestResult(560)
//! says why (1: invalid or unsupported, 2: nothing matches, 4: too many answers in progress)
//! and Text(58) how.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use portcullis_engine::ExpiryDate;
use portcullis_fix::{tag, BeginString, Encoder, MessageRef};
use portcullis_types::{InstrumentId, InstrumentKind, InstrumentStatus};

use crate::order_codec::fixed;
use crate::pipeline::{DirEntry, Directory};

/// SecurityReqID(320).
pub const SECURITY_REQ_ID: u32 = 320;
/// SecurityResponseID(322).
const SECURITY_RESPONSE_ID: u32 = 322;
/// SecurityListRequestType(559).
const SECURITY_LIST_REQUEST_TYPE: u32 = 559;
/// SecurityRequestResult(560).
const SECURITY_REQUEST_RESULT: u32 = 560;
/// TotNoRelatedSym(393).
const TOT_NO_RELATED_SYM: u32 = 393;
/// LastFragment(893).
const LAST_FRAGMENT: u32 = 893;
/// NoRelatedSym(146).
const NO_RELATED_SYM: u32 = 146;
/// SecurityType(167), SecuritySubType(762).
const SECURITY_TYPE: u32 = 167;
const SECURITY_SUB_TYPE: u32 = 762;
/// MaturityMonthYear(200), MaturityDate(541).
const MATURITY_MONTH_YEAR: u32 = 200;
const MATURITY_DATE: u32 = 541;
/// PutOrCall(201), StrikePrice(202), ContractMultiplier(231).
const PUT_OR_CALL: u32 = 201;
const STRIKE_PRICE: u32 = 202;
const CONTRACT_MULTIPLIER: u32 = 231;
/// MinPriceIncrement(969), SecurityStatus(965).
const MIN_PRICE_INCREMENT: u32 = 969;
const SECURITY_STATUS: u32 = 965;
/// NoUnderlyings(711), UnderlyingSymbol(311).
const NO_UNDERLYINGS: u32 = 711;
const UNDERLYING_SYMBOL: u32 = 311;
/// Currency(15), RoundLot(561), MinTradeVol(562), MaxTradeVol(1140).
const CURRENCY: u32 = 15;
const ROUND_LOT: u32 = 561;
const MIN_TRADE_VOL: u32 = 562;
const MAX_TRADE_VOL: u32 = 1140;

/// Instruments per SecurityList message: about 6 KB, well inside the 64 KiB message bound of
/// common FIX engines.
pub const FRAGMENT: usize = 50;

/// Answers one connection may have in progress; a further request is refused with
/// SecurityRequestResult 4 (temporarily unavailable) until they have been read.
pub const MAX_IN_PROGRESS: usize = 4;

/// SecurityType(167) of an instrument: `OPT`, `FUT` (dated futures and perpetuals, the latter
/// with SecuritySubType(762) `PERP` and no maturity) or `FXSPOT`.
pub fn security_type(kind: &InstrumentKind) -> &'static str {
    match kind {
        InstrumentKind::Option { .. } => "OPT",
        InstrumentKind::Future { .. } | InstrumentKind::Perpetual { .. } => "FUT",
        InstrumentKind::Spot { .. } => "FXSPOT",
    }
}

/// SecurityRequestResult(560) of a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRefusal {
    /// 1: invalid or unsupported request, with what to send instead.
    Invalid(&'static str),
    /// 2: no instrument matches.
    NoMatch,
    /// 4: instrument data temporarily unavailable (too many answers in progress).
    Busy,
}

impl ListRefusal {
    fn result(self) -> u64 {
        match self {
            ListRefusal::Invalid(_) => 1,
            ListRefusal::NoMatch => 2,
            ListRefusal::Busy => 4,
        }
    }

    fn text(self) -> &'static str {
        match self {
            ListRefusal::Invalid(t) => t,
            ListRefusal::NoMatch => "no instrument matches the request",
            ListRefusal::Busy => {
                "too many security lists in progress on this session: read them first"
            }
        }
    }
}

/// What a SecurityListRequest selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One symbol (559 = 0).
    Symbol(Box<[u8]>),
    /// Every instrument, or those of one SecurityType (559 = 1, or 4 with 167).
    All {
        /// SecurityType(167), if given.
        security_type: Option<Box<[u8]>>,
    },
}

/// Reads a SecurityListRequest (validated by the session against its dictionary).
pub fn decode(msg: &MessageRef<'_>) -> Result<Selection, ListRefusal> {
    match msg.get(tag::SUBSCRIPTION_REQUEST_TYPE) {
        None | Some(b"0") => {}
        Some(_) => {
            return Err(ListRefusal::Invalid(
                "only snapshots are served: SubscriptionRequestType(263) must be 0",
            ))
        }
    }
    let security_type = msg.get(SECURITY_TYPE).map(Box::<[u8]>::from);
    match msg.get(SECURITY_LIST_REQUEST_TYPE) {
        Some(b"0") => match msg.get(tag::SYMBOL) {
            Some(s) => Ok(Selection::Symbol(s.into())),
            None => Err(ListRefusal::Invalid(
                "SecurityListRequestType(559) 0 needs Symbol(55)",
            )),
        },
        Some(b"1") if security_type.is_none() => Err(ListRefusal::Invalid(
            "SecurityListRequestType(559) 1 needs SecurityType(167) (CFICode is not supported)",
        )),
        Some(b"1") | Some(b"4") => Ok(Selection::All { security_type }),
        _ => Err(ListRefusal::Invalid(
            "SecurityListRequestType(559) must be 0 (symbol), 1 (security type) or 4 (all)",
        )),
    }
}

/// The instruments of `dir` a selection lists, in directory (listing) order; expired ones never.
pub fn select(dir: &Directory, selection: &Selection) -> Result<Vec<InstrumentId>, ListRefusal> {
    let live = |e: &DirEntry| e.rules.status != InstrumentStatus::Expired;
    let ids: Vec<InstrumentId> = match selection {
        Selection::Symbol(s) => dir
            .lookup(s)
            .filter(|(_, e)| live(e))
            .map(|(id, _)| id)
            .into_iter()
            .collect(),
        Selection::All { security_type } => (0..dir.len() as u32)
            .map(InstrumentId)
            .filter(|&id| {
                dir.get(id).is_some_and(|e| {
                    live(e)
                        && security_type
                            .as_deref()
                            .map_or(true, |t| security_type_matches(t, &e.rules.kind))
                })
            })
            .collect(),
    };
    if ids.is_empty() {
        Err(ListRefusal::NoMatch)
    } else {
        Ok(ids)
    }
}

fn security_type_matches(requested: &[u8], kind: &InstrumentKind) -> bool {
    requested == security_type(kind).as_bytes()
}

/// Numbers SecurityResponseID(322) `SL<n>`: seeded from the clock at start, so they differ
/// across restarts too.
static RESPONSE_ID: AtomicU64 = AtomicU64::new(0);

/// Seeds the SecurityResponseID counter (once at start).
pub fn seed_response_ids(seed: u64) {
    RESPONSE_ID.store(seed, Ordering::Relaxed);
}

/// One answer to a SecurityListRequest being sent, fragment by fragment.
#[derive(Debug)]
pub struct SecurityListAnswer {
    req_id: Box<[u8]>,
    response_id: u64,
    dir: Arc<Directory>,
    outcome: Result<Vec<InstrumentId>, ListRefusal>,
    /// The next instrument to list (index into the outcome's list).
    next: usize,
    done: bool,
}

impl SecurityListAnswer {
    /// The answer to request `req_id` from the snapshot `dir`.
    pub fn new(
        req_id: &[u8],
        dir: Arc<Directory>,
        outcome: Result<Vec<InstrumentId>, ListRefusal>,
    ) -> Self {
        SecurityListAnswer {
            req_id: req_id.into(),
            response_id: RESPONSE_ID.fetch_add(1, Ordering::Relaxed),
            dir,
            outcome,
            next: 0,
            done: false,
        }
    }

    /// True once every fragment has been encoded (or the rest abandoned).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Gives up the fragments not sent yet (one could not be sent: the rest would leave out
    /// of order).
    pub fn abandon(&mut self) {
        self.done = true;
    }

    /// Encodes the body of the next SecurityList message (the session adds the header).
    pub fn encode_next(&mut self, enc: &mut Encoder, v: BeginString, scratch: &mut Vec<u8>) {
        enc.str(SECURITY_REQ_ID, &self.req_id);
        scratch.clear();
        scratch.extend_from_slice(b"SL");
        scratch.extend_from_slice(self.response_id.to_string().as_bytes());
        enc.str(SECURITY_RESPONSE_ID, scratch);
        let ids = match &self.outcome {
            Err(refusal) => {
                enc.uint(SECURITY_REQUEST_RESULT, refusal.result());
                enc.str(tag::TEXT, refusal.text().as_bytes());
                self.done = true;
                return;
            }
            Ok(ids) => ids,
        };
        let end = (self.next + FRAGMENT).min(ids.len());
        enc.uint(SECURITY_REQUEST_RESULT, 0);
        enc.uint(TOT_NO_RELATED_SYM, ids.len() as u64);
        enc.flag(LAST_FRAGMENT, end == ids.len());
        enc.uint(NO_RELATED_SYM, (end - self.next) as u64);
        for &id in &ids[self.next..end] {
            // Every id comes from this snapshot.
            if let Some(e) = self.dir.get(id) {
                encode_instrument(enc, v, e, scratch);
            }
        }
        self.next = end;
        self.done = end == ids.len();
    }
}

/// One entry of NoRelatedSym(146), fields in the group's order.
fn encode_instrument(enc: &mut Encoder, v: BeginString, e: &DirEntry, scratch: &mut Vec<u8>) {
    let r = &e.rules;
    enc.str(tag::SYMBOL, e.symbol.as_bytes());
    enc.str(SECURITY_TYPE, security_type(&r.kind).as_bytes());
    if let InstrumentKind::Perpetual { .. } = r.kind {
        enc.str(SECURITY_SUB_TYPE, b"PERP");
    }
    if let Some(date) = r.kind.expiry_ms().and_then(ExpiryDate::of_instant_ms) {
        scratch.clear();
        let (y, m, d) = (date.year(), date.month(), date.day());
        scratch.extend_from_slice(format!("{y:04}{m:02}").as_bytes());
        enc.str(MATURITY_MONTH_YEAR, scratch);
        scratch.extend_from_slice(format!("{d:02}").as_bytes());
        enc.str(MATURITY_DATE, scratch);
    }
    if let InstrumentKind::Option { strike, call, .. } = r.kind {
        enc.uint(PUT_OR_CALL, u64::from(call));
        fixed(enc, STRIKE_PRICE, strike.0, e.price_scale, scratch);
    }
    enc.int(CONTRACT_MULTIPLIER, r.multiplier);
    fixed(enc, MIN_PRICE_INCREMENT, r.tick.0, e.price_scale, scratch);
    if v == BeginString::Fixt11 {
        let active = r.status == InstrumentStatus::Trading;
        enc.str(SECURITY_STATUS, if active { b"1" } else { b"2" });
    }
    let (base, quote) = e.assets();
    enc.uint(NO_UNDERLYINGS, 1);
    enc.str(UNDERLYING_SYMBOL, base.as_bytes());
    enc.str(CURRENCY, quote.as_bytes());
    fixed(enc, ROUND_LOT, r.lot.0, e.qty_scale, scratch);
    fixed(enc, MIN_TRADE_VOL, r.min_qty.0, e.qty_scale, scratch);
    if v == BeginString::Fixt11 {
        fixed(enc, MAX_TRADE_VOL, r.max_qty.0, e.qty_scale, scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_engine::{Instruments, InstrumentsConfig};
    use portcullis_fix::{Decoder, Dictionary};

    use crate::fix_fixtures;

    const V: [BeginString; 2] = [BeginString::Fix44, BeginString::Fixt11];

    /// An option (2026-12-25 expiry), a future, a perpetual, a spot pair and an option that
    /// expires before `NOW_MS`.
    fn directory(halted: &[&str]) -> Directory {
        let cfg: InstrumentsConfig = toml::from_str(
            r#"
            [[instruments]]
            symbol = "BTC-261225-100000-C"
            price_scale = 1
            qty_scale = 1
            tick = "5"
            lot = "0.1"
            min_qty = "0.1"
            max_qty = "1000"

            [[instruments]]
            symbol = "BTC-261225-95000.5-P"
            price_scale = 1
            qty_scale = 1
            tick = "5"
            lot = "0.1"
            min_qty = "0.1"
            max_qty = "1000"
            multiplier = 10

            [[instruments]]
            symbol = "ETH-270326"
            price_scale = 2
            qty_scale = 0
            tick = "0.05"
            lot = "1"
            min_qty = "1"
            max_qty = "5000"

            [[instruments]]
            symbol = "BTC-PERP"
            price_scale = 1
            qty_scale = 3
            tick = "0.5"
            lot = "0.005"
            min_qty = "0.01"
            max_qty = "10"

            [[instruments]]
            symbol = "BTC-USDT"
            price_scale = 2
            qty_scale = 6
            tick = "0.01"
            lot = "0.000001"
            min_qty = "0.00001"
            max_qty = "100"

            [[instruments]]
            symbol = "BTC-261127-90000-C"
            price_scale = 0
            qty_scale = 1
            tick = "5"
            lot = "0.1"
            min_qty = "0.1"
            max_qty = "1000"
            "#,
        )
        .unwrap();
        // 2026-11-28 00:00 UTC: the 27 November option has expired.
        let now_ms = ExpiryDate::new(2026, 11, 28).unwrap().days_since_epoch() * 86_400_000;
        let mut inst = Instruments::new(&cfg.instruments, &cfg.option_series, now_ms).unwrap();
        let _ = inst.roll(now_ms);
        for s in halted {
            let id = inst.by_symbol(s).unwrap();
            inst.set_status(id, InstrumentStatus::Halted);
        }
        Directory::of(&inst)
    }

    fn request(v: BeginString, body: &[(u32, &str)]) -> Vec<u8> {
        fix_fixtures::message(v, b"x", body)
    }

    /// Decodes a request as the session does (dictionary first), then as the app does.
    fn decode_request(v: BeginString, body: &[(u32, &str)]) -> Result<Selection, ListRefusal> {
        fix_fixtures::taken(v, b"x", body, decode).unwrap_or_else(|r| panic!("{v}: {r:?}"))
    }

    /// Every message of an answer, each checked against the version's dictionary, as
    /// (tag, value) lists.
    fn answer(
        v: BeginString,
        dir: Directory,
        sel: Result<Selection, ListRefusal>,
    ) -> Vec<Vec<(u32, String)>> {
        let dir = Arc::new(dir);
        let outcome = sel.and_then(|s| select(&dir, &s));
        let mut a = SecurityListAnswer::new(b"R1", dir, outcome);
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        while !a.is_done() {
            out.push(fix_fixtures::answer(v, b"y", |enc| {
                a.encode_next(enc, v, &mut scratch)
            }));
            assert!(out.len() < 1000, "the answer never ends");
        }
        out
    }

    fn get(m: &[(u32, String)], t: u32) -> Option<&str> {
        m.iter().find(|(x, _)| *x == t).map(|(_, v)| v.as_str())
    }

    /// The entries of NoRelatedSym(146): each starts at Symbol(55).
    fn entries(m: &[(u32, String)]) -> Vec<Vec<(u32, String)>> {
        let start = m.iter().position(|(t, _)| *t == NO_RELATED_SYM).unwrap() + 1;
        let mut out: Vec<Vec<(u32, String)>> = Vec::new();
        for f in &m[start..] {
            if f.0 == 10 {
                break;
            }
            if f.0 == tag::SYMBOL {
                out.push(Vec::new());
            }
            out.last_mut().unwrap().push(f.clone());
        }
        out
    }

    #[test]
    fn every_live_instrument_is_listed_with_its_contract_terms_and_rules() {
        for v in V {
            let msgs = answer(
                v,
                directory(&[]),
                decode_request(v, &[(320, "R1"), (559, "4")]),
            );
            assert_eq!(msgs.len(), 1);
            let m = &msgs[0];
            assert_eq!(get(m, 320), Some("R1"));
            assert!(get(m, 322).unwrap().starts_with("SL"));
            assert_eq!(get(m, 560), Some("0"));
            assert_eq!(get(m, 393), Some("5"), "the expired option is not listed");
            assert_eq!(get(m, 893), Some("Y"));
            assert_eq!(get(m, 146), Some("5"));
            let e = entries(m);
            let symbols: Vec<_> = e.iter().map(|x| get(x, 55).unwrap()).collect();
            assert_eq!(
                symbols,
                [
                    "BTC-261225-100000-C",
                    "BTC-261225-95000.5-P",
                    "ETH-270326",
                    "BTC-PERP",
                    "BTC-USDT"
                ]
            );
            let call = &e[0];
            assert_eq!(get(call, 167), Some("OPT"));
            assert_eq!(get(call, 200), Some("202612"));
            assert_eq!(get(call, 541), Some("20261225"));
            assert_eq!(get(call, 201), Some("1"));
            assert_eq!(get(call, 202), Some("100000.0"));
            assert_eq!(get(call, 231), Some("1"));
            assert_eq!(get(call, 969), Some("5.0"));
            assert_eq!(get(call, 311), Some("BTC"));
            assert_eq!(get(call, 15), Some("USD"));
            assert_eq!(get(call, 561), Some("0.1"));
            assert_eq!(get(call, 562), Some("0.1"));
            let put = &e[1];
            assert_eq!(get(put, 201), Some("0"));
            assert_eq!(get(put, 202), Some("95000.5"));
            assert_eq!(get(put, 231), Some("10"));
            let future = &e[2];
            assert_eq!(get(future, 167), Some("FUT"));
            assert_eq!(get(future, 541), Some("20270326"));
            assert_eq!(get(future, 762), None);
            assert_eq!(get(future, 202), None);
            let perp = &e[3];
            assert_eq!(get(perp, 167), Some("FUT"));
            assert_eq!(get(perp, 762), Some("PERP"));
            assert_eq!(get(perp, 541), None);
            assert_eq!(get(perp, 969), Some("0.5"));
            assert_eq!(get(perp, 561), Some("0.005"));
            let spot = &e[4];
            assert_eq!(get(spot, 167), Some("FXSPOT"));
            assert_eq!(get(spot, 311), Some("BTC"));
            assert_eq!(get(spot, 15), Some("USDT"));
            if v == BeginString::Fixt11 {
                assert_eq!(get(call, 965), Some("1"));
                assert_eq!(get(perp, 1140), Some("10.000"));
            } else {
                assert_eq!(get(call, 965), None, "SecurityStatus is 5.0's");
                assert_eq!(get(perp, 1140), None, "MaxTradeVol is 5.0's");
            }
        }
    }

    #[test]
    fn a_symbol_or_a_security_type_selects() {
        let v = BeginString::Fix44;
        let one = answer(
            v,
            directory(&[]),
            decode_request(v, &[(320, "R1"), (559, "0"), (55, "BTC-PERP")]),
        );
        assert_eq!(entries(&one[0]).len(), 1);
        assert_eq!(get(&one[0], 55), Some("BTC-PERP"));
        let opts = answer(
            v,
            directory(&[]),
            decode_request(v, &[(320, "R1"), (559, "1"), (167, "OPT")]),
        );
        assert_eq!(get(&opts[0], 393), Some("2"));
        let futs = answer(
            v,
            directory(&[]),
            decode_request(v, &[(320, "R1"), (559, "4"), (167, "FUT")]),
        );
        let symbols: Vec<_> = entries(&futs[0])
            .iter()
            .map(|e| get(e, 55).unwrap().to_owned())
            .collect();
        assert_eq!(symbols, ["ETH-270326", "BTC-PERP"]);
    }

    #[test]
    fn a_halted_instrument_is_listed_inactive_in_5_0() {
        let v = BeginString::Fixt11;
        let m = answer(
            v,
            directory(&["BTC-PERP"]),
            decode_request(v, &[(320, "R1"), (559, "0"), (55, "BTC-PERP")]),
        );
        assert_eq!(get(&m[0], 965), Some("2"));
    }

    #[test]
    fn refused_requests_say_why_with_the_standard_result() {
        let v = BeginString::Fix44;
        // (request fields, SecurityRequestResult, a word of the Text)
        type Case<'a> = (&'a [(u32, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (&[(559, "0")], "1", "Symbol(55)"),
            (&[(559, "1")], "1", "SecurityType(167)"),
            (&[(559, "2")], "1", "SecurityListRequestType(559)"),
            (
                &[(559, "4"), (263, "1")],
                "1",
                "SubscriptionRequestType(263)",
            ),
            (&[(559, "0"), (55, "NOPE-PERP")], "2", "no instrument"),
            (
                &[(559, "0"), (55, "BTC-261127-90000-C")],
                "2",
                "no instrument",
            ),
            (&[(559, "1"), (167, "CS")], "2", "no instrument"),
        ];
        for (body, result, text) in cases {
            let mut fields = vec![(320, "R1")];
            fields.extend_from_slice(body);
            let m = answer(v, directory(&[]), decode_request(v, &fields));
            assert_eq!(m.len(), 1, "{body:?}");
            assert_eq!(get(&m[0], 320), Some("R1"));
            assert_eq!(get(&m[0], 560), Some(*result), "{body:?}");
            assert!(get(&m[0], 58).unwrap().contains(text), "{body:?}: {m:?}");
            assert_eq!(get(&m[0], 146), None);
        }
        let busy = answer(v, directory(&[]), Err(ListRefusal::Busy));
        assert_eq!(get(&busy[0], 560), Some("4"));
    }

    #[test]
    fn a_long_list_leaves_in_fragments_that_add_up() {
        let series: InstrumentsConfig = toml::from_str(
            r#"
            [[option_series]]
            underlying = "BTC"
            expiries = "weekly"
            count = 4
            strikes = { reference = "100000", step = "1000", each_side = 10 }
            price_scale = 1
            qty_scale = 1
            tick = "5"
            lot = "0.1"
            min_qty = "0.1"
            max_qty = "1000"
            "#,
        )
        .unwrap();
        let now_ms = ExpiryDate::new(2026, 11, 28).unwrap().days_since_epoch() * 86_400_000;
        let mut inst = Instruments::new(&[], &series.option_series, now_ms).unwrap();
        let _ = inst.roll(now_ms);
        let dir = Directory::of(&inst);
        let total = dir.len();
        assert_eq!(total, 4 * 21 * 2, "4 expiries × 21 strikes × call and put");
        let v = BeginString::Fixt11;
        let msgs = answer(v, dir, decode_request(v, &[(320, "R1"), (559, "4")]));
        assert_eq!(msgs.len(), total.div_ceil(FRAGMENT));
        let mut seen = std::collections::HashSet::new();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(get(m, 393), Some(total.to_string().as_str()));
            assert_eq!(
                get(m, 893),
                Some(if i + 1 == msgs.len() { "Y" } else { "N" })
            );
            let e = entries(m);
            assert_eq!(get(m, 146), Some(e.len().to_string().as_str()));
            assert!(e.len() <= FRAGMENT);
            for x in e {
                assert!(seen.insert(get(&x, 55).unwrap().to_owned()), "listed twice");
            }
        }
        assert_eq!(seen.len(), total);
        // One response id for every fragment of one answer.
        let ids: std::collections::HashSet<_> = msgs.iter().map(|m| get(m, 322).unwrap()).collect();
        assert_eq!(ids.len(), 1);
    }
    proptest::proptest! {
        /// Any request the dictionary lets through is answered with SecurityList messages the
        /// dictionary accepts, ending with a last fragment or a refusal.
        #[test]
        fn any_request_is_answered_with_valid_messages(
            list_type in proptest::sample::select(vec!["0", "1", "2", "3", "4", "5", "9", "-1"]),
            symbol in proptest::option::of(proptest::sample::select(vec![
                "BTC-PERP", "BTC-USDT", "BTC-261225-100000-C", "BTC-261127-90000-C", "NOPE", "btc-perp", "BTC-",
            ])),
            security_type in proptest::option::of(proptest::sample::select(vec![
                "OPT", "FUT", "FXSPOT", "CS", "", "opt",
            ])),
            subscription in proptest::option::of(proptest::sample::select(vec!["0", "1", "2"])),
            v in proptest::sample::select(V.to_vec()),
        ) {
            let mut body = vec![(320, "P1"), (559, list_type)];
            body.extend(symbol.map(|s| (55, s)));
            body.extend(security_type.filter(|t| !t.is_empty()).map(|t| (167, t)));
            body.extend(subscription.map(|t| (263, t)));
            let bytes = request(v, &body);
            let mut d = Decoder::new();
            let m = d.decode(&bytes).unwrap();
            if Dictionary::for_version(v).validate(&m).is_err() {
                // The session answers it with a Reject; the app never sees it.
                return Ok(());
            }
            let sel = decode(&m);
            let msgs = answer(v, directory(&[]), sel);
            let last = msgs.last().unwrap();
            proptest::prop_assert!(
                get(last, 893) == Some("Y") || get(last, 560) != Some("0"),
                "{msgs:?}"
            );
        }
    }
}
