//! Market data over FIX: a MarketDataRequest (V) for a snapshot of one instrument's book is
//! answered with a MarketDataSnapshotFullRefresh (W) of its best levels, as the WebSocket API's
//! `depth` lists them (the core thread walks the book off the order path; an iceberg counts
//! only its shown part). Every version.
//!
//! | field | accepted |
//! |---|---|
//! | MDReqID(262) | echoed |
//! | SubscriptionRequestType(263) | 0 (snapshot); 1 and 2: MDReqRejReason(281) 4 |
//! | MarketDepth(264) | levels a side: 0 (full book) or 1 to 5000, the full book listing up to 5000 |
//! | AggregatedBook(266) | Y or absent (levels); N: 281 = 7 |
//! | NoMDEntryTypes(267) | MDEntryType(269) 0 (bid), 1 (offer), 2 (trade: the last one); another: 281 = 8 |
//! | NoRelatedSym(146) | one instrument, Symbol(55); unknown: 281 = 0 |
//!
//! The snapshot carries MDReqID, Symbol and one NoMDEntries(268) entry per level: MDEntryType
//! 0 or 1, MDEntryPx(270), MDEntrySize(271) and MDEntryPositionNo(290) (1 for the best level
//! of its side), bids first; then, if asked for, the last trade's price (MDEntryType 2, no
//! size: the book keeps the price alone; none before the first trade).

use portcullis_engine::Depth;
use portcullis_fix::{tag, Encoder, MessageRef};
use portcullis_types::InstrumentId;

use crate::order_codec::fixed;
use crate::pipeline::Directory;

/// MDReqID(262), MarketDepth(264), AggregatedBook(266).
pub const MD_REQ_ID: u32 = 262;
const MARKET_DEPTH: u32 = 264;
const AGGREGATED_BOOK: u32 = 266;
/// NoMDEntryTypes(267), NoMDEntries(268), MDEntryType(269), MDEntryPx(270), MDEntrySize(271),
/// MDEntryPositionNo(290), MDReqRejReason(281), NoRelatedSym(146).
const NO_MD_ENTRY_TYPES: u32 = 267;
const NO_MD_ENTRIES: u32 = 268;
const MD_ENTRY_TYPE: u32 = 269;
const MD_ENTRY_PX: u32 = 270;
const MD_ENTRY_SIZE: u32 = 271;
const MD_ENTRY_POSITION_NO: u32 = 290;
const MD_REQ_REJ_REASON: u32 = 281;
const NO_RELATED_SYM: u32 = 146;

/// Most levels a side a snapshot lists (the full book, MarketDepth 0, too).
pub const MAX_LEVELS: usize = 5000;

/// A snapshot request, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The book.
    pub instrument: InstrumentId,
    /// Levels a side.
    pub levels: usize,
    /// Whether bids (MDEntryType 0) are asked for.
    pub bids: bool,
    /// Whether offers (MDEntryType 1) are asked for.
    pub offers: bool,
    /// Whether the last trade (MDEntryType 2) is asked for.
    pub trade: bool,
}

/// Why a MarketDataRequest is refused: MDReqRejReason(281), if one fits, and Text(58).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdRefusal {
    /// MDReqRejReason(281).
    pub reason: Option<u8>,
    /// Text(58).
    pub text: &'static str,
}

fn refuse(reason: Option<u8>, text: &'static str) -> MdRefusal {
    MdRefusal { reason, text }
}

/// Reads a MarketDataRequest (validated by the session against its dictionary).
pub fn decode(msg: &MessageRef<'_>, directory: &Directory) -> Result<SnapshotRequest, MdRefusal> {
    if msg.get(tag::SUBSCRIPTION_REQUEST_TYPE) != Some(b"0") {
        return Err(refuse(
            Some(b'4'),
            "snapshots only: SubscriptionRequestType(263) must be 0",
        ));
    }
    if msg.get(AGGREGATED_BOOK) == Some(b"N") {
        return Err(refuse(
            Some(b'7'),
            "the book is listed by price level: AggregatedBook(266) must be Y or absent",
        ));
    }
    let levels = match msg.get_u64(MARKET_DEPTH) {
        Some(0) => MAX_LEVELS,
        Some(n) if n as usize <= MAX_LEVELS => n as usize,
        _ => {
            return Err(refuse(
                Some(b'5'),
                "MarketDepth(264) must be 0 (full book) or 1 to 5000",
            ))
        }
    };
    let (mut bids, mut offers, mut trade) = (false, false, false);
    let mut symbols = 0;
    let mut symbol: &[u8] = b"";
    let mut group = 0u32;
    for f in msg.fields() {
        match f.tag {
            NO_MD_ENTRY_TYPES | NO_RELATED_SYM => group = f.tag,
            MD_ENTRY_TYPE if group == NO_MD_ENTRY_TYPES => match f.value {
                b"0" => bids = true,
                b"1" => offers = true,
                b"2" => trade = true,
                _ => {
                    return Err(refuse(
                        Some(b'8'),
                        "MDEntryType(269) must be 0 (bid), 1 (offer) or 2 (trade)",
                    ))
                }
            },
            tag::SYMBOL if group == NO_RELATED_SYM => {
                symbols += 1;
                symbol = f.value;
            }
            _ => {}
        }
    }
    if symbols != 1 {
        return Err(refuse(
            None,
            "one instrument a request: NoRelatedSym(146) must be 1",
        ));
    }
    let Some((instrument, _)) = directory.lookup(symbol) else {
        return Err(refuse(Some(b'0'), "unknown symbol"));
    };
    Ok(SnapshotRequest {
        instrument,
        levels,
        bids,
        offers,
        trade,
    })
}

/// Writes the body of the MarketDataSnapshotFullRefresh (W) answering `req` (MDReqID
/// `req_id`) with `depth`.
pub fn encode_snapshot(
    enc: &mut Encoder,
    req_id: &[u8],
    req: &SnapshotRequest,
    depth: &Depth,
    directory: &Directory,
    scratch: &mut Vec<u8>,
) {
    let entry = directory.get(req.instrument);
    let (px_scale, qty_scale) = entry.map_or((0, 0), |e| (e.price_scale, e.qty_scale));
    enc.str(MD_REQ_ID, req_id);
    if let Some(e) = entry {
        enc.str(tag::SYMBOL, e.symbol.as_bytes());
    }
    let bids = if req.bids { &depth.bids[..] } else { &[] };
    let offers = if req.offers { &depth.asks[..] } else { &[] };
    let last = depth.last_trade.filter(|_| req.trade);
    enc.uint(
        NO_MD_ENTRIES,
        (bids.len() + offers.len() + usize::from(last.is_some())) as u64,
    );
    for (kind, levels) in [(b'0', bids), (b'1', offers)] {
        for (i, (px, qty)) in levels.iter().enumerate() {
            enc.char(MD_ENTRY_TYPE, kind);
            fixed(enc, MD_ENTRY_PX, px.0, px_scale, scratch);
            fixed(enc, MD_ENTRY_SIZE, qty.0, qty_scale, scratch);
            enc.uint(MD_ENTRY_POSITION_NO, i as u64 + 1);
        }
    }
    if let Some(px) = last {
        enc.char(MD_ENTRY_TYPE, b'2');
        fixed(enc, MD_ENTRY_PX, px.0, px_scale, scratch);
    }
}

/// Writes the body of the MarketDataRequestReject (Y) refusing request `req_id`.
pub fn encode_reject(enc: &mut Encoder, req_id: &[u8], r: &MdRefusal) {
    enc.str(MD_REQ_ID, if req_id.is_empty() { b"NONE" } else { req_id });
    if let Some(reason) = r.reason {
        enc.char(MD_REQ_REJ_REASON, reason);
    }
    enc.str(tag::TEXT, r.text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_fix::BeginString;
    use portcullis_types::{Price, Qty};

    use crate::fix_fixtures::{answer, instruments, taken, PERPETUALS};

    const V: [BeginString; 3] = [BeginString::Fix42, BeginString::Fix44, BeginString::Fixt11];

    fn directory() -> Directory {
        Directory::of(&instruments(PERPETUALS, 0))
    }

    fn request(v: BeginString, body: &[(u32, &str)]) -> Result<SnapshotRequest, MdRefusal> {
        taken(v, b"V", body, |m| decode(m, &directory())).unwrap_or_else(|r| panic!("{v}: {r:?}"))
    }

    fn body<'a>(depth: &'a str, types: &[&'a str], symbols: &[&'a str]) -> Vec<(u32, &'a str)> {
        let counts = ["0", "1", "2", "3"];
        let mut b = vec![(262, "MD1"), (263, "0"), (264, depth)];
        b.push((267, counts[types.len()]));
        b.extend(types.iter().map(|t| (269, *t)));
        b.push((146, counts[symbols.len()]));
        b.extend(symbols.iter().map(|s| (55, *s)));
        b
    }

    #[test]
    fn snapshot_requests_are_read_and_refused_precisely() {
        let dir = directory();
        let btc = dir.lookup(b"BTC-PERP").unwrap().0;
        for v in V {
            assert_eq!(
                request(v, &body("10", &["0", "1"], &["BTC-PERP"])),
                Ok(SnapshotRequest {
                    instrument: btc,
                    levels: 10,
                    bids: true,
                    offers: true,
                    trade: false
                })
            );
            let r = request(v, &body("0", &["1"], &["BTC-PERP"])).unwrap();
            assert_eq!((r.levels, r.bids, r.offers), (MAX_LEVELS, false, true));
            let reason = |b: &[(u32, &str)]| request(v, b).unwrap_err().reason;
            assert_eq!(reason(&body("1", &["0"], &["NOPE"])), Some(b'0'));
            assert_eq!(reason(&body("5001", &["0"], &["BTC-PERP"])), Some(b'5'));
            assert_eq!(reason(&body("1", &["B"], &["BTC-PERP"])), Some(b'8'));
            assert!(request(v, &body("1", &["2"], &["BTC-PERP"])).unwrap().trade);
            assert_eq!(reason(&body("1", &["0"], &["BTC-PERP", "ETH-PERP"])), None);
            let mut sub = body("1", &["0"], &["BTC-PERP"]);
            sub[1] = (263, "1");
            assert_eq!(reason(&sub), Some(b'4'));
            let mut unaggregated = body("1", &["0"], &["BTC-PERP"]);
            unaggregated.push((266, "N"));
            assert_eq!(reason(&unaggregated), Some(b'7'));
        }
    }

    proptest::proptest! {
        /// Any MarketDataRequest the dictionary lets through is read or refused, and its
        /// answer (the snapshot of a book, or the reject) is valid for the version.
        #[test]
        fn any_request_is_answered_with_a_valid_message(
            sub in proptest::sample::select(vec!["0", "0", "0", "0", "0", "1", "2"]),
            depth in proptest::sample::select(vec!["0", "1", "5", "5000", "5001", "-1"]),
            types in proptest::collection::vec(proptest::sample::select(vec!["0", "1", "0", "1", "2", "B"]), 0..3),
            symbols in proptest::collection::vec(proptest::sample::select(vec!["BTC-PERP", "BTC-PERP", "ETH-PERP", "NOPE"]), 1..3),
            aggregated in proptest::option::weighted(0.3, proptest::sample::select(vec!["Y", "Y", "N"])),
            levels in proptest::collection::vec((1i64..1_000_000, 1i64..1_000_000), 0..4),
            v in proptest::sample::select(V.to_vec()),
        ) {
            let mut b = body(depth, &types, &symbols);
            b[1] = (263, sub);
            b.extend(aggregated.map(|a| (266, a)));
            let dir = directory();
            let Ok(read) = taken(v, b"V", &b, |m| decode(m, &dir)) else {
                // The session answers it with a Reject; the app never sees it.
                return Ok(());
            };
            match read {
                Ok(req) => {
                    proptest::prop_assert!(req.levels >= 1 && req.levels <= MAX_LEVELS);
                    let book = Depth {
                        bids: levels.iter().map(|&(p, q)| (Price(p), Qty(q))).collect(),
                        asks: levels.iter().map(|&(p, q)| (Price(p + 1), Qty(q))).collect(),
                        update_id: 1,
                        last_trade: None,
                    };
                    let a = answer(v, b"W", |enc| {
                        encode_snapshot(enc, b"MD1", &req, &book, &dir, &mut Vec::new())
                    });
                    let n = a.iter().filter(|(t, _)| *t == 269).count();
                    let want = levels.len() * (usize::from(req.bids) + usize::from(req.offers));
                    proptest::prop_assert_eq!(n, want);
                }
                Err(r) => {
                    let a = answer(v, b"Y", |enc| encode_reject(enc, b"MD1", &r));
                    proptest::prop_assert!(a.iter().any(|(t, x)| *t == 58 && x == r.text));
                }
            }
        }
    }

    #[test]
    fn snapshots_and_rejects_are_valid_in_every_version() {
        let dir = directory();
        let btc = dir.lookup(b"BTC-PERP").unwrap().0;
        let depth = Depth {
            bids: vec![(Price(995), Qty(2000)), (Price(990), Qty(500))],
            asks: vec![(Price(1000), Qty(1500))],
            update_id: 7,
            last_trade: Some(Price(1000)),
        };
        let req = SnapshotRequest {
            instrument: btc,
            levels: 10,
            bids: true,
            offers: true,
            trade: false,
        };
        for v in V {
            let m = answer(v, b"W", |enc| {
                encode_snapshot(enc, b"MD1", &req, &depth, &dir, &mut Vec::new())
            });
            let all = |t: u32| -> Vec<&str> {
                m.iter()
                    .filter(|(x, _)| *x == t)
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            assert_eq!(all(262), ["MD1"]);
            assert_eq!(all(268), ["3"]);
            assert_eq!(all(269), ["0", "0", "1"]);
            assert_eq!(all(270), ["99.5", "99.0", "100.0"]);
            assert_eq!(all(271), ["2.000", "0.500", "1.500"]);
            assert_eq!(all(290), ["1", "2", "1"]);
            // With the last trade.
            let traded = SnapshotRequest { trade: true, ..req };
            let m = answer(v, b"W", |enc| {
                encode_snapshot(enc, b"MD1", &traded, &depth, &dir, &mut Vec::new())
            });
            let types: Vec<&str> = m
                .iter()
                .filter(|(t, _)| *t == 269)
                .map(|(_, x)| x.as_str())
                .collect();
            assert_eq!(types, ["0", "0", "1", "2"]);
            assert!(m.contains(&(268, "4".to_owned())));
            // Offers only.
            let offers = SnapshotRequest { bids: false, ..req };
            let m = answer(v, b"W", |enc| {
                encode_snapshot(enc, b"MD2", &offers, &depth, &dir, &mut Vec::new())
            });
            assert!(m.contains(&(268, "1".to_owned())));
            let r = refuse(Some(b'0'), "unknown symbol");
            let m = answer(v, b"Y", |enc| encode_reject(enc, b"", &r));
            assert!(m.contains(&(262, "NONE".to_owned())) && m.contains(&(281, "0".to_owned())));
        }
    }
}
