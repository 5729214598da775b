//! The whole in-process order pipeline, per order (DESIGN.md §6: ≤ 2 µs median, ≤ 10 µs p99):
//!
//! NewOrderSingle bytes in → frame (CheckSum) → decode → dictionary validation → order decode
//! (symbol, account, exact price and quantity) → ingress queue → the core thread (a real
//! [`Core`] on its own std::thread: risk checks, matching) → event → the session's egress
//! queue → ExecutionReport bytes out (header, body, CheckSum).
//!
//! The bench thread plays the socket task but spins on the egress queue instead of being woken,
//! so the round trip excludes the wake; what the wake costs is measured on its own:
//!
//! - `wake/atomic_waker_idle_tokio_task`: the core thread's side of waking a tokio task that is
//!   waiting for reports (the task's worker thread is idle, so this includes unparking it);
//! - `wake/notify_one_idle_tokio_task`: the same with `tokio::sync::Notify`, for comparison;
//! - `wake/thread_unpark_parked`: a producer unparking a parked core thread.
//!
//! After criterion, a dedicated run records every round trip in an HDR histogram and prints
//! p50 / p99 / p99.9 / max (criterion reports means and medians, not tails).
//!
//! Run: `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`.

#[allow(dead_code)]
#[path = "../crates/server/src/pipeline.rs"]
mod pipeline;

#[allow(dead_code)]
#[path = "../crates/server/src/order_codec.rs"]
mod order_codec;

#[allow(dead_code)]
#[path = "../crates/server/src/journal_queue.rs"]
mod journal_queue;
#[allow(dead_code)]
#[path = "../crates/server/src/replay.rs"]
mod replay;

// The server binary's allocator, so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use portcullis_engine::{Core, EngineConfig, InstrumentConfig, Instruments};
use portcullis_fix::{
    frame, BeginString, Decoder, Dictionary, Encoder, Frame, TimePrecision, UtcTimestamp,
};
use portcullis_risk::RiskConfig;
use portcullis_types::{AccountId, Command, EventKind, SessionId};

use order_codec::{Ctx, Names, Report, Request};
use pipeline::{Conn, Ingress, Outbound, Pipeline, PipelineConfig};

const V: BeginString = BeginString::Fix44;

fn core() -> Core {
    let perp = InstrumentConfig {
        symbol: "BTC-PERP".into(),
        price_scale: 1,
        qty_scale: 3,
        tick: "0.5".into(),
        lot: "0.001".into(),
        min_qty: "0.001".into(),
        max_qty: "100".into(),
        multiplier: 1,
        status: Default::default(),
    };
    let now_ms = pipeline::now_ns() / 1_000_000;
    let instruments = Instruments::new(&[perp], &[], now_ms).unwrap();
    let mut risk = RiskConfig {
        session_rate_per_sec: 1 << 30,
        session_burst: 1 << 30,
        max_sessions: 16,
        // Every order of the run has its own ClOrdID and they are remembered for the day.
        max_cl_ord_ids_per_day: 1 << 24,
        ..RiskConfig::default()
    };
    risk.defaults.order_rate_per_sec = 1 << 30;
    risk.defaults.order_burst = 1 << 30;
    let engine = EngineConfig {
        max_resting_orders: 1 << 16,
        ..EngineConfig::default()
    };
    Core::new(&engine, &risk, &["BENCH-ACC"], instruments).unwrap()
}

/// The socket task's side of the pipeline, with a running core thread.
struct Bench {
    pipeline: Arc<Pipeline>,
    conn: Arc<Conn>,
    core: Option<std::thread::JoinHandle<()>>,
    decoder: Decoder,
    out: Encoder,
    client: Encoder,
    scratch: Vec<u8>,
    next_id: u64,
    out_seq: u64,
    msg: Vec<u8>,
}

impl Bench {
    fn new() -> Self {
        let core = core();
        let config = PipelineConfig {
            threading: pipeline::Threading::Dedicated,
            ingress_capacity: 65_536,
            egress_capacity: 1024,
            idle_spin: Duration::from_micros(50),
            pin_cpu: None,
            trading_day_end_secs: 0,
            max_sessions: 16,
            reserved_slots: 1,
        };
        order_codec::seed_local_ids(1);
        let pipeline = Pipeline::new(&config, &["BENCH-ACC".to_owned()], &core);
        let handle = pipeline::spawn_core(core, pipeline.clone(), &config).unwrap();
        let conn = pipeline.new_conn(SessionId(0), &[AccountId(0)], true);
        pipeline
            .submit(Ingress::Open(conn.clone()))
            .map_err(|_| ())
            .unwrap();
        Bench {
            pipeline,
            conn,
            core: Some(handle),
            decoder: Decoder::new(),
            out: Encoder::new(),
            client: Encoder::new(),
            scratch: Vec::with_capacity(64),
            next_id: 1,
            out_seq: 1,
            msg: Vec::with_capacity(512),
        }
    }

    /// What the client sends (not timed): a NewOrderSingle with a fresh ClOrdID, or a cancel
    /// of the order before it.
    fn client_message(&mut self, cancel: bool) {
        // A cancel names the order sent just before it.
        if !cancel {
            self.next_id += 1;
        }
        let id = self.next_id - 1;
        let mut cl = [0u8; 20];
        let cl = fmt_id(b"ORD-", id, &mut cl);
        let e = &mut self.client;
        e.start(b"FIX.4.4", if cancel { b"F" } else { b"D" });
        e.str(49, b"CLIENT")
            .str(56, b"PORTCULLIS")
            .uint(34, id * 2 + cancel as u64);
        e.timestamp(52, UtcTimestamp::now(), TimePrecision::Millis);
        if cancel {
            e.str(41, cl);
            let mut x = [0u8; 20];
            e.str(11, fmt_id(b"CXL-", id, &mut x));
        } else {
            e.str(11, cl);
            e.str(1, b"BENCH-ACC").str(21, b"1");
        }
        e.str(55, b"BTC-PERP").str(54, b"1");
        e.str(60, b"20260102-10:00:00.000");
        if !cancel {
            // A buy far below any seller: it rests (and the cancel takes it out again).
            e.str(38, b"0.250")
                .str(40, b"2")
                .str(44, b"50000.5")
                .str(59, b"1");
        }
        self.msg.clear();
        self.msg.extend_from_slice(e.finish());
    }

    /// One round trip: the message in `self.msg` through the pipeline to the bytes of its
    /// first report. Returns the report's length (so nothing is optimised away).
    fn round_trip(&mut self) -> usize {
        let bytes = &self.msg[..];
        let Frame::Complete { len } = frame(bytes, 65_536) else {
            panic!("bad frame")
        };
        let msg = self.decoder.decode(&bytes[..len]).unwrap();
        Dictionary::for_version(V).validate(&msg).unwrap();
        let dir = self.pipeline.directory();
        let allowed = [AccountId(0)];
        let ctx = Ctx {
            directory: &dir,
            allowed: &allowed,
            account_names: self.pipeline.account_names(),
            session: self.conn.slot(),
            now_ns: pipeline::now_ns(),
            trading_day_end_secs: self.pipeline.trading_day_end_secs(),
        };
        let item = match order_codec::decode(&msg, &ctx).unwrap() {
            Request::New(o) => Ingress::Cmd(Command::New(o)),
            Request::Cancel(c) => Ingress::Cmd(Command::Cancel(c)),
            other => panic!("{other:?}"),
        };
        self.pipeline.submit(item).map_err(|_| ()).unwrap();
        let out = loop {
            if let Some(o) = self.conn.pop() {
                break o;
            }
            std::hint::spin_loop();
        };
        let (Outbound::Event(e) | Outbound::Status(e)) = out;
        assert!(
            matches!(e.kind, EventKind::New | EventKind::Canceled),
            "{:?}",
            e.kind
        );
        let report = Report::Event(&e);
        let names = Names {
            directory: &dir,
            account_names: self.pipeline.account_names(),
        };
        let enc = &mut self.out;
        enc.start(b"FIX.4.4", report.msg_type());
        enc.str(49, b"PORTCULLIS")
            .str(56, b"CLIENT")
            .uint(34, self.out_seq);
        enc.timestamp(52, UtcTimestamp::now(), TimePrecision::Millis);
        self.out_seq += 1;
        order_codec::encode_report(enc, V, report, &names, &mut self.scratch);
        black_box(enc.finish()).len()
    }

    /// An order and its cancel; times the order's round trip only.
    fn timed_order(&mut self) -> Duration {
        self.client_message(false);
        let t0 = Instant::now();
        black_box(self.round_trip());
        let dt = t0.elapsed();
        self.client_message(true);
        black_box(self.round_trip());
        dt
    }

    /// An order and its cancel; times the cancel's round trip only.
    fn timed_cancel(&mut self) -> Duration {
        self.client_message(false);
        black_box(self.round_trip());
        self.client_message(true);
        let t0 = Instant::now();
        black_box(self.round_trip());
        t0.elapsed()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.pipeline.stop();
        if let Some(h) = self.core.take() {
            let _ = h.join();
        }
    }
}

fn fmt_id<'a>(prefix: &[u8], mut v: u64, buf: &'a mut [u8; 20]) -> &'a [u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i -= prefix.len();
    buf[i..i + prefix.len()].copy_from_slice(prefix);
    &buf[i..]
}

fn bench_round_trips(c: &mut Criterion) {
    let mut b = Bench::new();
    let mut g = c.benchmark_group("pipeline");
    g.bench_function("new_order_single_to_execution_report", |bench| {
        bench.iter_custom(|iters| (0..iters).map(|_| b.timed_order()).sum())
    });
    g.bench_function("cancel_to_execution_report", |bench| {
        bench.iter_custom(|iters| (0..iters).map(|_| b.timed_cancel()).sum())
    });
    g.finish();
}

/// A tokio task (on a one-worker runtime) that waits on `conn`-like wake-ups, counting them.
struct WakeTarget {
    rt: tokio::runtime::Runtime,
    woken: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl WakeTarget {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        WakeTarget {
            rt,
            woken: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Waits until the task has counted `n` wake-ups and is waiting again.
    fn wait_for(&self, n: u64) {
        while self.woken.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        // Let the task get back to waiting (its worker may then park).
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn bench_wakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("wake");
    g.sample_size(30);

    // AtomicWaker, as the core thread wakes a session's task.
    {
        let t = WakeTarget::new();
        let waker = Arc::new(atomic_waker::AtomicWaker::new());
        let (w, woken, stop) = (waker.clone(), t.woken.clone(), t.stop.clone());
        t.rt.spawn(async move {
            let mut seen = 0u64;
            std::future::poll_fn(|cx| {
                w.register(cx.waker());
                seen += 1;
                woken.store(seen, Ordering::Release);
                if stop.load(Ordering::Acquire) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await
        });
        let mut n = t.woken.load(Ordering::Acquire).max(1);
        t.wait_for(n);
        g.bench_function("atomic_waker_idle_tokio_task", |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    waker.wake();
                    total += t0.elapsed();
                    n += 1;
                    t.wait_for(n);
                }
                total
            })
        });
        t.stop.store(true, Ordering::Release);
        waker.wake();
    }

    // tokio::sync::Notify, for comparison.
    {
        let t = WakeTarget::new();
        let notify = Arc::new(tokio::sync::Notify::new());
        let (nf, woken, stop) = (notify.clone(), t.woken.clone(), t.stop.clone());
        t.rt.spawn(async move {
            let mut seen = 0u64;
            while !stop.load(Ordering::Acquire) {
                let notified = nf.notified();
                seen += 1;
                woken.store(seen, Ordering::Release);
                notified.await;
            }
        });
        let mut n = 1;
        t.wait_for(n);
        g.bench_function("notify_one_idle_tokio_task", |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    notify.notify_one();
                    total += t0.elapsed();
                    n += 1;
                    t.wait_for(n);
                }
                total
            })
        });
        t.stop.store(true, Ordering::Release);
        notify.notify_one();
    }

    // std::thread unpark of a parked thread, as a producer wakes the core thread.
    {
        let woken = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (woken.clone(), stop.clone());
        let h = std::thread::spawn(move || {
            let mut seen = 0;
            while !s.load(Ordering::Acquire) {
                seen += 1;
                w.store(seen, Ordering::Release);
                std::thread::park();
            }
        });
        let thread = h.thread().clone();
        let mut n = 1;
        let wait = |n: u64| {
            while woken.load(Ordering::Acquire) < n {
                std::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_micros(50));
        };
        wait(n);
        g.bench_function("thread_unpark_parked", |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    thread.unpark();
                    total += t0.elapsed();
                    n += 1;
                    wait(n);
                }
                total
            })
        });
        stop.store(true, Ordering::Release);
        thread.unpark();
        let _ = h.join();
    }
    g.finish();
}

/// Every round trip of a dedicated run in an HDR histogram: the tail criterion does not show.
///
/// Two runs on a fresh core: "cold", the first orders of the day, and "warm", after 600 000
/// more. They differ by the first touch of the risk crate's ClOrdID table (allocated zeroed,
/// so its pages fault in as ids land on them; here 2^24 ids, 256 MiB of slots): page faults
/// on the core thread's path until the table's pages are all mapped.
fn hdr_report() {
    const N: usize = 200_000;
    const WARM_AFTER: usize = 600_000;
    let mut b = Bench::new();
    let run = |b: &mut Bench, phase: &str| {
        let bounds = (1, 60_000_000_000, 3);
        let mut h =
            hdrhistogram::Histogram::<u64>::new_with_bounds(bounds.0, bounds.1, bounds.2).unwrap();
        let mut c = h.clone();
        for _ in 0..N {
            let _ = h.record(b.timed_order().as_nanos() as u64);
            let _ = c.record(b.timed_cancel().as_nanos() as u64);
        }
        // Microseconds with two decimals, in integers.
        let us = |ns: u64| format!("{}.{:02} µs", ns / 1000, ns % 1000 / 10);
        for (name, h) in [("new order -> New", &h), ("cancel -> Canceled", &c)] {
            println!(
                "pipeline round trip ({phase}), {name} ({} samples): p50 {}  p99 {}  p99.9 {}  max {}",
                h.len(),
                us(h.value_at_quantile(0.50)),
                us(h.value_at_quantile(0.99)),
                us(h.value_at_quantile(0.999)),
                us(h.max()),
            );
        }
    };
    run(&mut b, "cold");
    for _ in 0..WARM_AFTER {
        b.timed_order();
    }
    run(&mut b, "warm");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_round_trips(&mut c);
    bench_wakes(&mut c);
    c.final_summary();
    // `cargo test --benches` runs the bench binary in test mode: skip the long HDR run there.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        hdr_report();
    }
}
