//! Unit tests, by behaviour. Shared helpers here.

mod audit;
mod corruption;
mod crypto;
mod fixstore;
mod log;
mod record;
mod snapshot;
mod tail;
mod tools;

use std::fs;
use std::path::{Path, PathBuf};

use portcullis_auth::MasterKeyring;
use portcullis_types::{
    AccountId, ClOrdId, Command, Event, EventKind, InstrumentId, NewOrder, OrdType, OrderId, Price,
    Qty, SessionId, Side, TimeInForce, TradeId,
};

use crate::format::{le_u32, HeaderParse, SegmentHeader, BATCH_HEADER};
use crate::{FsyncPolicy, JournalConfig, JournalReader, JournalRecord, JournalWriter, Seq};

/// A one-key keyring `id` whose key bytes are all `byte`.
pub(crate) fn ring(id: &str, byte: u8) -> MasterKeyring {
    MasterKeyring::parse(&format!("{id}:{}", hex::encode([byte; 32]))).unwrap()
}

pub(crate) fn config(dir: &Path) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        fsync: FsyncPolicy::Never,
        segment_bytes: crate::MIN_SEGMENT_BYTES,
        snapshot_every: 0,
    }
}

pub(crate) fn new_order(i: u64) -> JournalRecord {
    JournalRecord::Command(Command::New(NewOrder {
        session: SessionId(1),
        account: AccountId(7),
        instrument: InstrumentId(3),
        cl_ord_id: ClOrdId::new(format!("ORD-{i}").as_bytes()).unwrap(),
        side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
        ord_type: OrdType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(10_050 + i as i64),
        qty: Qty(5),
        post_only: false,
        stp: None,
        received_ns: 1_700_000_000_000_000_000 + i as i64,
        display_qty: Qty(0),
        trailing: None,
        oco_with: None,
        pending: false,
        triggers: None,
    }))
}

pub(crate) fn fill(i: u64) -> Event {
    Event {
        session: SessionId(1),
        account: AccountId(7),
        instrument: InstrumentId(3),
        kind: EventKind::Fill,
        order_id: OrderId(1000 + i),
        cl_ord_id: ClOrdId::new(format!("ORD-{i}").as_bytes()).unwrap(),
        orig_cl_ord_id: ClOrdId::EMPTY,
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(10_050),
        qty: Qty(5),
        cum_qty: Qty(5),
        leaves_qty: Qty(0),
        avg_px: Price(10_050),
        last_px: Price(10_050),
        last_qty: Qty(5),
        trade_id: TradeId(77 + i),
        exec_id: 5000 + i,
        ts_ns: 1_700_000_000_123_456_789,
        received_ns: 1_700_000_000_000_000_000,
        details: Default::default(),
    }
}

/// Writes `batches[i]` records per commit (records numbered from `start`), returns them.
pub(crate) fn write_batches(
    writer: &mut JournalWriter,
    start: u64,
    batches: &[usize],
) -> Vec<JournalRecord> {
    let mut out = Vec::new();
    let mut i = start;
    for &n in batches {
        for _ in 0..n {
            let r = new_order(i);
            writer.append(&r).unwrap();
            out.push(r);
            i += 1;
        }
        writer.commit().unwrap();
    }
    out
}

/// Opens (with recovery) and replays everything.
pub(crate) fn replay_all(
    dir: &Path,
    keyring: &MasterKeyring,
) -> crate::Result<Vec<(Seq, JournalRecord)>> {
    let reader = JournalReader::open(dir, keyring)?;
    let after = Seq(reader.first_seq().0 - 1);
    let v = reader.replay(after)?.collect::<crate::Result<Vec<_>>>();
    v
}

/// The segment files of the journal in `dir`, in order.
pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    crate::format::list(dir, "journal", ".seg")
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// A segment's header and the (offset, total length) of each of its batches, parsed from the
/// raw bytes.
pub(crate) fn layout(path: &Path) -> (SegmentHeader, usize, Vec<(usize, usize)>) {
    let bytes = fs::read(path).unwrap();
    let HeaderParse::Ok(h, hl) = SegmentHeader::parse(&bytes) else {
        panic!("bad header in {}", path.display())
    };
    let mut batches = Vec::new();
    let mut at = hl;
    while at + BATCH_HEADER <= bytes.len() {
        let len = BATCH_HEADER + le_u32(&bytes, at) as usize;
        batches.push((at, len));
        at += len;
    }
    (h, hl, batches)
}

pub(crate) fn flip(path: &Path, offset: usize, mask: u8) {
    let mut b = fs::read(path).unwrap();
    b[offset] ^= mask;
    fs::write(path, b).unwrap();
}
