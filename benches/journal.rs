//! The journal (issue 7): what the journal thread spends per drain, and the record codec.
//!
//! - `journal/append+commit_64/never`: one group commit of 64 `NewOrder` records with
//!   `fsync = "never"`: encode each into the batch buffer (with its CRC-32), seal the batch
//!   (AES-256-GCM over ~3.6 KiB), one `write(2)`. Segments of 64 MiB roll over with their
//!   fsync inside the timing, as in production; every 16,384 commits (~60 MB) the journal is
//!   reopened in a fresh directory outside the timing, so the run does not fill the disk.
//! - `journal/append+commit_64/always`: the same with `fsync = "always"` (one `fdatasync` per
//!   commit): the cost of an acknowledgement that waits for durability on this machine's disk.
//! - `journal/encode/new_order`, `journal/encode/event`: one record into a reused buffer
//!   (allocation-free); `journal/decode/new_order`: the reverse, as a replay does.
//! - `journal/replay_100k`: open (recovery, last segment verified) and replay of a 100,000
//!   record journal (50,000 new orders and 50,000 fills, in batches of 64): the recovery rate.
//!
//! Throughput is in records: criterion's element rate is records/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis_auth::MasterKeyring;
use portcullis_journal::{
    FsyncPolicy, JournalConfig, JournalReader, JournalRecord, JournalWriter, Seq,
};
use portcullis_types::{
    AccountId, ClOrdId, Command, Event, EventKind, InstrumentId, NewOrder, OrdType, OrderId, Price,
    Qty, SessionId, Side, TimeInForce, TradeId,
};

const BATCH: u64 = 64;
const REOPEN_EVERY: u64 = 16_384;

fn keyring() -> MasterKeyring {
    MasterKeyring::parse(&format!("bench:{}", "5a".repeat(32))).unwrap()
}

fn new_order(i: u64) -> JournalRecord {
    let mut id = [0u8; 20];
    let n = {
        use std::io::Write;
        let mut c = std::io::Cursor::new(&mut id[..]);
        write!(c, "C{i:012}").unwrap();
        c.position() as usize
    };
    JournalRecord::Command(Command::New(NewOrder {
        session: SessionId(3),
        account: AccountId(12),
        instrument: InstrumentId(7),
        cl_ord_id: ClOrdId::new(&id[..n]).unwrap(),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(6_512_350),
        qty: Qty(1_500),
        post_only: false,
        stp: None,
        received_ns: 1_700_000_000_000_000_000 + i as i64,
    }))
}

fn fill(i: u64) -> JournalRecord {
    JournalRecord::Event(Event {
        session: SessionId(3),
        account: AccountId(12),
        instrument: InstrumentId(7),
        kind: EventKind::PartialFill,
        order_id: OrderId(1_000_000 + i),
        cl_ord_id: ClOrdId::new(format!("C{i:012}").as_bytes()).unwrap(),
        orig_cl_ord_id: ClOrdId::EMPTY,
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(6_512_350),
        qty: Qty(1_500),
        cum_qty: Qty(500),
        leaves_qty: Qty(1_000),
        avg_px: Price(6_512_350),
        last_px: Price(6_512_350),
        last_qty: Qty(500),
        trade_id: TradeId(77 + i),
        exec_id: 9_000_000 + i,
        ts_ns: 1_700_000_000_123_456_789,
        received_ns: 1_700_000_000_000_000_000,
    })
}

fn open(fsync: FsyncPolicy) -> (tempfile::TempDir, JournalWriter) {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        dir: dir.path().to_path_buf(),
        fsync,
        segment_bytes: 64 << 20,
        snapshot_every: 0,
    };
    let (w, _) = JournalWriter::open(&config, &keyring()).unwrap();
    (dir, w)
}

fn append_commit(c: &mut Criterion) {
    // The records are built outside the timing, as the core thread hands them over.
    let records: Vec<JournalRecord> = (0..BATCH).map(new_order).collect();
    let mut g = c.benchmark_group("journal/append+commit_64");
    g.throughput(Throughput::Elements(BATCH));
    for (name, policy) in [
        ("never", FsyncPolicy::Never),
        ("always", FsyncPolicy::Always),
    ] {
        if name == "always" {
            g.sample_size(20).measurement_time(Duration::from_secs(5));
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (mut dir, mut w) = open(policy);
                let mut total = Duration::ZERO;
                for n in 0..iters {
                    if n > 0 && n % REOPEN_EVERY == 0 {
                        drop(w);
                        (dir, w) = open(policy);
                    }
                    let t = Instant::now();
                    for r in &records {
                        black_box(w.append(r).unwrap());
                    }
                    black_box(w.commit().unwrap());
                    total += t.elapsed();
                }
                drop(w);
                drop(dir);
                total
            })
        });
    }
    g.finish();
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal");
    let order = new_order(42);
    let event = fill(42);
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("encode/new_order", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&order).encode(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("encode/event", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&event).encode(&mut buf);
            black_box(buf.len())
        })
    });
    let mut bytes = Vec::new();
    order.encode(&mut bytes);
    g.bench_function("decode/new_order", |b| {
        b.iter(|| JournalRecord::decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    const N: u64 = 100_000;
    let (dir, mut w) = open(FsyncPolicy::Never);
    for i in (0..N).step_by(2) {
        w.append(&new_order(i)).unwrap();
        w.append(&fill(i)).unwrap();
        if (i + 2) % BATCH == 0 {
            w.commit().unwrap();
        }
    }
    w.close().unwrap();
    let keyring = keyring();
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("replay_100k", |b| {
        b.iter(|| {
            let reader = JournalReader::open(dir.path(), &keyring).unwrap();
            let mut n = 0u64;
            for item in reader.replay(Seq(0)).unwrap() {
                black_box(item.unwrap());
                n += 1;
            }
            assert_eq!(n, N);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, append_commit, codec, replay);
criterion_main!(benches);
