//! The journal (issue 7): what the journal thread spends per drain, and the record codec.
//!
//! - `journal/append+commit_64/never`: one group commit of 64 `NewOrder` records with
//!   `fsync = "never"`: encode each into the batch buffer (with its CRC-32), seal the batch
//!   (AES-256-GCM over ~3.6 KiB), one `write(2)`. Segments of 64 MiB roll over with their
//!   fsync inside the timing, as in production; every 16,384 commits (~60 MB) the journal is
//!   reopened in a fresh directory outside the timing, so the run does not fill the disk.
//! - `journal/append+commit_64/interval_5ms`: the same with `fsync = { interval_ms = 5 }`: a
//!   commit fsyncs when 5 ms have passed since the last fsync.
//! - `journal/append+commit_64/always`: the same with `fsync = "always"` (one `fdatasync` per
//!   commit): the cost of an acknowledgement that waits for durability on this machine's disk.
//! - `journal/encode/new_order`, `journal/encode/event`: one record into a reused buffer
//!   (allocation-free); `journal/decode/new_order`: the reverse, as a replay does.
//! - `journal/replay_100k`: open (recovery, last segment verified) and replay of a 100,000
//!   record journal (50,000 new orders and 50,000 fills, in batches of 64): the recovery rate.
//!
//! - `journal/recovery_1m/full` and `journal/recovery_1m/from_snapshot`: what a start-up
//!   does with a journal of 1,000,000 records written by a real core (clock, command and
//!   event records of 16 accounts trading one perpetual: orders resting, crossing, cancelled):
//!   open (recovery), build the core and replay every record into it — or restore the
//!   snapshot taken at record 900,000 and replay the 100,000 after it. The replay loop is the
//!   server's (`Replayer::apply`): commands re-processed at their journaled clock, events counted.
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
        display_qty: Qty(0),
        trailing: None,
        oco_with: None,
        pending: false,
        triggers: None,
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
        details: Default::default(),
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
        ("interval_5ms", FsyncPolicy::IntervalMs(5)),
        ("always", FsyncPolicy::Always),
    ] {
        if name != "never" {
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

/// A core like configs/bench.toml's: 16 accounts, one perpetual, limits no order reaches.
fn bench_core() -> (portcullis_engine::Core, BenchConfig) {
    let cfg = BenchConfig::new();
    let core = portcullis_engine::Core::new(
        &cfg.engine,
        &cfg.risk,
        &cfg.names(),
        portcullis_engine::Instruments::from_config(&cfg.instruments, NOW_MS).unwrap(),
    )
    .unwrap();
    (core, cfg)
}

const NOW_MS: i64 = 1_795_867_200_000;

struct BenchConfig {
    engine: portcullis_engine::EngineConfig,
    risk: portcullis_risk::RiskConfig,
    instruments: portcullis_engine::InstrumentsConfig,
    accounts: Vec<String>,
}

impl BenchConfig {
    fn new() -> Self {
        let instruments = toml::from_str(
            r#"
            [[instruments]]
            symbol = "BTC-PERP"
            price_scale = 1
            qty_scale = 3
            tick = "0.5"
            lot = "0.001"
            min_qty = "0.001"
            max_qty = "100"
            "#,
        )
        .unwrap();
        let mut risk = portcullis_risk::RiskConfig {
            max_sessions: 64,
            max_cl_ord_ids_per_day: 1 << 22,
            session_rate_per_sec: u32::MAX,
            session_burst: u32::MAX,
            ..Default::default()
        };
        let d = &mut risk.defaults;
        d.max_notional = portcullis_risk::Decimal::from_int(i64::MAX);
        d.credit_limit = portcullis_risk::Decimal::from_int(i64::MAX);
        d.max_position_per_instrument = portcullis_risk::Decimal::from_int(i64::MAX);
        d.max_position_per_underlying = portcullis_risk::Decimal::from_int(i64::MAX);
        d.max_open_orders = u32::MAX;
        d.max_open_orders_per_instrument = u32::MAX;
        d.order_rate_per_sec = u32::MAX;
        d.order_burst = u32::MAX;
        d.price_band_pct = portcullis_risk::Decimal::from_int(1000);
        Self {
            engine: portcullis_engine::EngineConfig {
                max_resting_orders: 1 << 20,
                ..Default::default()
            },
            risk,
            instruments,
            accounts: (0..16).map(|i| format!("ACC{i}")).collect(),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.accounts.iter().map(String::as_str).collect()
    }
}

/// The server's replay of one record (crates/server/src/journal.rs `Replayer::apply`, for the
/// record kinds this journal holds).
fn apply(core: &mut portcullis_engine::Core, now: &mut i64, rec: JournalRecord, events: &mut u64) {
    match rec {
        JournalRecord::Clock { now_ns } => *now = now_ns,
        JournalRecord::Command(cmd) => core.process(cmd, *now, &mut |_| {}),
        JournalRecord::Event(_) => *events += 1,
        other => panic!("unexpected record {other:?}"),
    }
}

fn recovery(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    const SNAPSHOT_AT: u64 = 900_000;
    let (dir, mut w) = open(FsyncPolicy::Never);
    let (mut core, cfg) = bench_core();
    let mut seq = 0u64;
    let mut now = NOW_MS * 1_000_000;
    let mut i = 0u64;
    let mut snapshotted = false;
    let mut resting: Vec<(AccountId, OrderId)> = Vec::new();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while seq < N {
        now += 1_000;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let account = AccountId((x % 16) as u32);
        let cmd = if x % 5 == 0 && !resting.is_empty() {
            let (account, id) = resting.swap_remove((x >> 8) as usize % resting.len());
            Command::Cancel(portcullis_types::CancelOrder {
                session: SessionId(account.0),
                account,
                instrument: InstrumentId(0),
                cl_ord_id: ClOrdId::new(format!("X{i}").as_bytes()).unwrap(),
                order_id: Some(id),
                orig_cl_ord_id: ClOrdId::EMPTY,
                received_ns: now,
            })
        } else {
            let side = if x & 1 == 0 { Side::Buy } else { Side::Sell };
            // Around 100,000.0: buys 99,990.0..100,010.0, sells likewise, so about half cross.
            let price = 1_000_000 + ((x >> 16) % 400) as i64 - 200;
            Command::New(NewOrder {
                session: SessionId(account.0),
                account,
                instrument: InstrumentId(0),
                cl_ord_id: ClOrdId::new(format!("O{i}").as_bytes()).unwrap(),
                side,
                ord_type: OrdType::Limit,
                tif: TimeInForce::Gtc,
                price: Price(price - price % 5),
                qty: Qty(1_000 + ((x >> 32) % 4) as i64 * 1_000),
                post_only: false,
                stp: Some(portcullis_types::StpMode::CancelIncoming),
                received_ns: now,
                display_qty: Qty(0),
                trailing: None,
                oco_with: None,
                pending: false,
                triggers: None,
            })
        };
        i += 1;
        let mut events = Vec::new();
        core.process(cmd, now, &mut |e| events.push(e));
        w.append(&JournalRecord::Clock { now_ns: now }).unwrap();
        w.append(&JournalRecord::Command(cmd)).unwrap();
        seq += 2;
        for e in events {
            if e.kind == EventKind::New && e.leaves_qty.0 > 0 {
                resting.push((e.account, e.order_id));
            }
            w.append(&JournalRecord::Event(e)).unwrap();
            seq += 1;
        }
        if i % 16 == 0 {
            w.commit().unwrap();
        }
        if !snapshotted && seq >= SNAPSHOT_AT {
            let mut state = Vec::new();
            state.extend_from_slice(&now.to_le_bytes());
            core.write_snapshot(&mut state);
            w.write_snapshot(Seq(seq), &[0; 32], &state).unwrap();
            snapshotted = true;
        }
    }
    w.close().unwrap();
    let keyring = keyring();
    let mut g = c.benchmark_group("journal/recovery_1m");
    g.throughput(Throughput::Elements(seq));
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    eprintln!(
        "recovery_1m: {seq} records, {} resting orders at the end",
        core.matcher().resting_orders()
    );
    g.bench_function("full", |b| {
        b.iter(|| {
            let reader = JournalReader::open(dir.path(), &keyring).unwrap();
            let (mut core, _) = bench_core();
            let (mut now, mut events) = (0i64, 0u64);
            for item in reader.replay(Seq(0)).unwrap() {
                let (_, rec) = item.unwrap();
                apply(&mut core, &mut now, rec, &mut events);
            }
            black_box((core.matcher().resting_orders(), events))
        })
    });
    g.bench_function("from_snapshot", |b| {
        b.iter(|| {
            let reader = JournalReader::open(dir.path(), &keyring).unwrap();
            let snap = reader.latest_snapshot().unwrap().unwrap();
            let (clock, state) = snap.state.split_at(8);
            let mut now = i64::from_le_bytes(clock.try_into().unwrap());
            let mut core = portcullis_engine::Core::restore_snapshot(
                &cfg.engine,
                &cfg.risk,
                &cfg.names(),
                &cfg.instruments,
                NOW_MS,
                state,
            )
            .unwrap();
            let mut events = 0u64;
            for item in reader.replay(snap.seq).unwrap() {
                let (_, rec) = item.unwrap();
                apply(&mut core, &mut now, rec, &mut events);
            }
            black_box((core.matcher().resting_orders(), events))
        })
    });
    g.finish();
}

criterion_group!(benches, append_commit, codec, replay, recovery);
criterion_main!(benches);
