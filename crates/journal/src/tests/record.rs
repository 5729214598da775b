//! The record codec: round trips, strict decoding, no panics, no allocation.

use proptest::prelude::*;

use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, EventKind, InstrumentId, InstrumentStatus,
    MassCancel, NewOrder, OrdType, OrderDetails, OrderId, Price, Qty, RejectReason, ReplaceOrder,
    RouteRequest, SessionId, Side, StpMode, TimeInForce, TradeId, TrailingDelta, VenueReport,
    VenueReportKind,
};

use super::{fill, new_order};
use crate::{DecodeError, JournalRecord, RecordKind, Seq, CODEC_VERSION};

const REASONS: [RejectReason; 23] = [
    RejectReason::KillSwitch,
    RejectReason::Throttled,
    RejectReason::UnknownInstrument,
    RejectReason::InstrumentNotTrading,
    RejectReason::UnknownAccount,
    RejectReason::BadTick,
    RejectReason::BadLot,
    RejectReason::QtyTooSmall,
    RejectReason::QtyTooLarge,
    RejectReason::NotionalTooLarge,
    RejectReason::PriceBand,
    RejectReason::TooManyOpenOrders,
    RejectReason::CreditLimit,
    RejectReason::PositionLimit,
    RejectReason::DuplicateClOrdId,
    RejectReason::PostOnlyWouldTrade,
    RejectReason::Unsupported,
    RejectReason::UnknownOrder,
    RejectReason::ServerBusy,
    RejectReason::TooLateToEnter,
    RejectReason::OrderListRejected,
    RejectReason::VenueRejected,
    RejectReason::CancelPending,
];

fn cl_ord_id() -> impl Strategy<Value = ClOrdId> {
    prop_oneof![
        Just(ClOrdId::EMPTY),
        proptest::collection::vec(0x21u8..=0x7e, 1..=64).prop_map(|b| ClOrdId::new(&b).unwrap()),
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn ord_type() -> impl Strategy<Value = OrdType> {
    prop_oneof![
        Just(OrdType::Limit),
        Just(OrdType::Market),
        any::<i64>().prop_map(|p| OrdType::Stop { stop_px: Price(p) }),
        any::<i64>().prop_map(|p| OrdType::StopLimit { stop_px: Price(p) }),
        any::<i64>().prop_map(|p| OrdType::TakeProfit { stop_px: Price(p) }),
        any::<i64>().prop_map(|p| OrdType::TakeProfitLimit { stop_px: Price(p) }),
    ]
}

fn tif() -> impl Strategy<Value = TimeInForce> {
    prop_oneof![
        Just(TimeInForce::Gtc),
        Just(TimeInForce::Ioc),
        Just(TimeInForce::Fok),
        Just(TimeInForce::Day),
        any::<i64>().prop_map(|expire_ns| TimeInForce::Gtd { expire_ns }),
    ]
}

fn reason() -> impl Strategy<Value = RejectReason> {
    (0..REASONS.len()).prop_map(|i| REASONS[i])
}

fn stp() -> impl Strategy<Value = Option<StpMode>> {
    prop_oneof![
        Just(None),
        Just(Some(StpMode::CancelResting)),
        Just(Some(StpMode::CancelIncoming)),
        Just(Some(StpMode::CancelBoth)),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let ids = (any::<u32>(), any::<u32>(), any::<u32>());
    prop_oneof![
        (
            ids,
            cl_ord_id(),
            side(),
            ord_type(),
            tif(),
            any::<i64>(),
            any::<i64>(),
            (
                any::<bool>(),
                prop_oneof![Just(0i64), any::<i64>()],
                proptest::option::of(TrailingDelta::MIN_BIPS..=TrailingDelta::MAX_BIPS),
                proptest::option::of(any::<u64>()),
                any::<bool>(),
                proptest::option::of(any::<u64>())
            ),
            stp(),
            any::<i64>()
        )
            .prop_map(
                |(
                    (s, a, i),
                    c,
                    side,
                    ot,
                    tif,
                    p,
                    q,
                    (po, display, trailing, oco, pending, triggers),
                    stp,
                    r,
                )| {
                    Command::New(NewOrder {
                        session: SessionId(s),
                        account: AccountId(a),
                        instrument: InstrumentId(i),
                        cl_ord_id: c,
                        side,
                        ord_type: ot,
                        tif,
                        price: Price(p),
                        qty: Qty(q),
                        post_only: po,
                        stp,
                        received_ns: r,
                        display_qty: Qty(display),
                        trailing: trailing.and_then(TrailingDelta::new),
                        oco_with: oco.map(OrderId),
                        pending,
                        triggers: triggers.map(OrderId),
                    })
                }
            ),
        (
            ids,
            cl_ord_id(),
            proptest::option::of(any::<u64>()),
            cl_ord_id(),
            any::<i64>()
        )
            .prop_map(|((s, a, i), c, o, oc, r)| Command::Cancel(CancelOrder {
                session: SessionId(s),
                account: AccountId(a),
                instrument: InstrumentId(i),
                cl_ord_id: c,
                order_id: o.map(OrderId),
                orig_cl_ord_id: oc,
                received_ns: r,
            })),
        (
            ids,
            cl_ord_id(),
            proptest::option::of(any::<u64>()),
            cl_ord_id(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            proptest::option::of(tif())
        )
            .prop_map(
                |((s, a, i), c, o, oc, p, q, r, t)| Command::Replace(ReplaceOrder {
                    session: SessionId(s),
                    account: AccountId(a),
                    instrument: InstrumentId(i),
                    cl_ord_id: c,
                    order_id: o.map(OrderId),
                    orig_cl_ord_id: oc,
                    price: Price(p),
                    qty: Qty(q),
                    received_ns: r,
                    tif: t,
                })
            ),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            cl_ord_id()
        )
            .prop_map(|(s, a, i, c)| Command::MassCancel(MassCancel {
                session: SessionId(s),
                account: AccountId(a),
                instrument: i.map(InstrumentId),
                cl_ord_id: c,
            })),
        any::<u32>().prop_map(|s| Command::SessionClosed(SessionId(s))),
        any::<u32>().prop_map(|s| Command::VenueSync(SessionId(s))),
        (
            any::<u32>(),
            any::<u64>(),
            0usize..8,
            proptest::array::uniform4(any::<i64>())
        )
            .prop_map(
                |(v, id, k, [px, qty, cum, at])| Command::Venue(VenueReport {
                    venue: SessionId(v),
                    order_id: OrderId(id),
                    kind: [
                        VenueReportKind::Accepted,
                        VenueReportKind::Fill,
                        VenueReportKind::Canceled,
                        VenueReportKind::Expired,
                        VenueReportKind::Rejected,
                        VenueReportKind::CancelRejected,
                        VenueReportKind::Replaced,
                        VenueReportKind::ReplaceRejected,
                    ][k],
                    last_px: Price(px),
                    last_qty: Qty(qty),
                    cum_qty: Qty(cum),
                    received_ns: at,
                })
            ),
    ]
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        Just(EventKind::New),
        Just(EventKind::PartialFill),
        Just(EventKind::Fill),
        Just(EventKind::Canceled),
        Just(EventKind::Replaced),
        reason().prop_map(EventKind::Rejected),
        Just(EventKind::Expired),
        (any::<bool>(), reason())
            .prop_map(|(replace, reason)| EventKind::CancelRejected { replace, reason }),
        any::<u32>().prop_map(|canceled| EventKind::MassCancelDone { canceled }),
        Just(EventKind::Triggered),
        Just(EventKind::Activated),
        Just(EventKind::Route(RouteRequest::New)),
        Just(EventKind::Route(RouteRequest::Cancel)),
        Just(EventKind::Route(RouteRequest::Replace)),
        Just(EventKind::Pending(RouteRequest::New)),
        Just(EventKind::Pending(RouteRequest::Cancel)),
        Just(EventKind::Pending(RouteRequest::Replace)),
    ]
}

fn details() -> impl Strategy<Value = OrderDetails> {
    (
        any::<bool>(),
        prop_oneof![Just(0i64), any::<i64>()],
        proptest::option::of(TrailingDelta::MIN_BIPS..=TrailingDelta::MAX_BIPS),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(post_only, display, trailing, waiting, pending)| OrderDetails {
                post_only,
                display_qty: Qty(display),
                trailing: trailing.and_then(TrailingDelta::new),
                waiting,
                pending,
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            event_kind(),
            any::<u64>(),
        ),
        (cl_ord_id(), cl_ord_id(), side(), ord_type(), tif()),
        proptest::array::uniform7(any::<i64>()),
        (any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>()),
        details(),
    )
        .prop_map(
            |((s, a, i, kind, o), (c, oc, side, ot, tif), v, (t, x, ts, r), details)| Event {
                session: SessionId(s),
                account: AccountId(a),
                instrument: InstrumentId(i),
                kind,
                order_id: OrderId(o),
                cl_ord_id: c,
                orig_cl_ord_id: oc,
                side,
                ord_type: ot,
                tif,
                price: Price(v[0]),
                qty: Qty(v[1]),
                cum_qty: Qty(v[2]),
                leaves_qty: Qty(v[3]),
                avg_px: Price(v[4]),
                last_px: Price(v[5]),
                last_qty: Qty(v[6]),
                trade_id: TradeId(t),
                exec_id: x,
                ts_ns: ts,
                received_ns: r,
                details,
            },
        )
}

pub(crate) fn record() -> impl Strategy<Value = JournalRecord> {
    prop_oneof![
        command().prop_map(JournalRecord::Command),
        event().prop_map(JournalRecord::Event),
        (proptest::option::of(any::<u32>()), any::<bool>()).prop_map(|(a, on)| {
            JournalRecord::KillSwitch {
                account: a.map(AccountId),
                on,
            }
        }),
        (
            any::<u32>(),
            prop_oneof![
                Just(InstrumentStatus::Trading),
                Just(InstrumentStatus::Halted),
                Just(InstrumentStatus::Expired)
            ]
        )
            .prop_map(|(i, status)| JournalRecord::InstrumentStatus {
                instrument: InstrumentId(i),
                status,
            }),
        (
            proptest::option::of(any::<u32>()),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(a, data)| JournalRecord::Limits {
                account: a.map(AccountId),
                data,
            }),
        (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(s, i, o)| {
            JournalRecord::SessionSeq {
                session: SessionId(s),
                next_in: i,
                next_out: o,
            }
        }),
        (any::<u64>(), any::<[u8; 32]>()).prop_map(|(s, h)| JournalRecord::Snapshot {
            seq: Seq(s),
            state_hash: h,
        }),
        any::<i64>().prop_map(|now_ns| JournalRecord::Clock { now_ns }),
    ]
}

fn encoded(r: &JournalRecord) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode(&mut v);
    v
}

proptest! {
    #[test]
    fn every_record_round_trips_through_its_encoding(r in record()) {
        let bytes = encoded(&r);
        prop_assert_eq!(bytes[0], CODEC_VERSION);
        prop_assert_eq!(JournalRecord::decode(&bytes), Ok(r));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = JournalRecord::decode(&b);
    }

    #[test]
    fn damaged_encodings_never_panic_and_never_decode_with_leftovers(
        r in record(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encoded(&r);
        for (i, v) in edits {
            let i = i.index(bytes.len());
            bytes[i] = v;
        }
        let _ = JournalRecord::decode(&bytes);
        // No strict prefix of a valid encoding decodes to its record: lengths are all
        // explicit, so a prefix is refused, except that one ending right before an optional
        // trailer (a replace's time in force, an event's order details, ...) is that record
        // without it. The segment's record length and CRC refuse a cut payload before this.
        let good = encoded(&r);
        let cut = cut.index(good.len());
        match JournalRecord::decode(&good[..cut]) {
            Err(_) => {}
            Ok(other) => prop_assert_ne!(other, r),
        }
    }
}

#[test]
fn decoding_refuses_trailing_bytes_unknown_tags_versions_and_enum_values() {
    let mut b = encoded(&new_order(1));
    b.push(0);
    assert_eq!(
        JournalRecord::decode(&b).unwrap_err().what,
        "trailing bytes after the record"
    );
    assert_eq!(
        JournalRecord::decode(&[CODEC_VERSION, 200]),
        Err(DecodeError {
            offset: 1,
            what: "unknown record tag"
        })
    );
    assert_eq!(
        JournalRecord::decode(&[2, 37, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap_err()
            .what,
        "unsupported record codec version"
    );
    // Side is the byte after session, account, instrument (12 bytes) and the id (1 + 5).
    let mut b = encoded(&new_order(1));
    let side_at = 2 + 12 + 1 + 5;
    b[side_at] = 9;
    assert_eq!(
        JournalRecord::decode(&b),
        Err(DecodeError {
            offset: side_at,
            what: "invalid side"
        })
    );
    // A client order id with a space (not printable ASCII without blanks).
    let mut b = encoded(&new_order(1));
    b[2 + 12 + 1] = b' ';
    assert_eq!(
        JournalRecord::decode(&b).unwrap_err().what,
        "invalid client order id"
    );
    // Booleans are 0 or 1.
    assert_eq!(
        JournalRecord::decode(&[CODEC_VERSION, 32, 0, 2])
            .unwrap_err()
            .what,
        "invalid boolean"
    );
}

#[test]
fn encoding_is_allocation_free_into_a_reused_buffer() {
    let mut buf = Vec::with_capacity(4096);
    let ptr = buf.as_ptr();
    for i in 0..10 {
        buf.clear();
        new_order(i).encode(&mut buf);
        JournalRecord::Event(fill(i)).encode(&mut buf);
    }
    assert_eq!(buf.as_ptr(), ptr, "the buffer was reallocated");
    assert_eq!(buf.capacity(), 4096);
}

#[test]
fn records_are_compact() {
    // Fixed-width fields, variable-length ids: a new order with a 5-byte id is 49 bytes.
    assert_eq!(encoded(&new_order(1)).len(), 49);
    assert!(encoded(&JournalRecord::Event(fill(1))).len() < 140);
    assert_eq!(encoded(&JournalRecord::Clock { now_ns: 1 }).len(), 10);
}

#[test]
fn over_long_limits_data_is_refused_not_truncated() {
    let r = JournalRecord::Limits {
        account: None,
        data: vec![0; crate::MAX_LIMITS_BYTES + 1],
    };
    assert!(r.check().is_err());
    let ok = JournalRecord::Limits {
        account: Some(AccountId(1)),
        data: vec![7; crate::MAX_LIMITS_BYTES],
    };
    assert!(ok.check().is_ok());
    assert_eq!(JournalRecord::decode(&encoded(&ok)), Ok(ok));
}

#[test]
fn display_is_one_readable_line_per_record() {
    let line = new_order(3).to_string();
    assert_eq!(
        line,
        "new_order session=1 account=7 instrument=3 cl_ord_id=ORD-3 side=sell type=limit tif=gtc price=10053 qty=5 post_only=false stp=account received_ns=1700000000000000003"
    );
    let mut e = fill(1);
    e.kind = EventKind::Rejected(RejectReason::CreditLimit);
    let line = JournalRecord::Event(e).to_string();
    assert!(line.starts_with("event rejected reason=\"credit limit exceeded\" session=1"));
    assert!(line.contains("orig_cl_ord_id=-"));
    assert_eq!(
        JournalRecord::KillSwitch {
            account: None,
            on: true
        }
        .to_string(),
        "kill_switch account=global on=true"
    );
    assert!(!line.contains('\n'));
    assert_eq!(new_order(1).kind(), RecordKind::Command);
    assert_eq!(
        JournalRecord::Clock { now_ns: 0 }.kind(),
        RecordKind::Control
    );
}
