//! The load generator against a minimal fake FIX server: logon and logout, answers matched to
//! orders, cancels after acknowledgements, TestRequests answered, rejects reported.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_fix::{frame, Decoder, Encoder, Frame};
use portcullis_loadgen::fix::FixOptions;
use portcullis_loadgen::run::{flood, pingpong_fix, FloodParams, Target};

/// How the fake server answers a NewOrderSingle.
#[derive(Clone, Copy)]
enum Mode {
    /// ExecutionReport New for even ClOrdID numbers, BusinessMessageReject for odd ones.
    AckOrReject,
    /// A session-level Reject.
    SessionReject,
    /// Acknowledge, but drop the connection of session LG02 after this many orders.
    DropLg02After(u64),
}

#[derive(Default)]
struct Seen {
    orders: AtomicU64,
    cancels: AtomicU64,
    heartbeats_answering: AtomicU64,
    logouts: AtomicU64,
}

fn fake_server(mode: Mode) -> (String, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let seen = s2.clone();
            let c = c.unwrap();
            std::thread::spawn(move || serve(c, mode, &seen));
        }
    });
    (addr, seen)
}

fn serve(mut s: TcpStream, mode: Mode, seen: &Seen) {
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut enc = Encoder::new();
    let mut seq = 1u64;
    let (mut us, mut them) = (Vec::new(), Vec::new());
    let mut send =
        |s: &mut TcpStream, us: &[u8], them: &[u8], t: &[u8], body: &[(u32, Vec<u8>)]| {
            enc.start(b"FIX.4.4", t)
                .str(49, us)
                .str(56, them)
                .uint(34, seq)
                .str(52, b"20240102-10:00:00.000");
            seq += 1;
            for (tag, v) in body {
                enc.str(*tag, v);
            }
            s.write_all(enc.finish()).unwrap();
        };
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Frame::Complete { len } = frame(&buf, 1 << 16) {
            let m: Vec<u8> = buf.drain(..len).collect();
            let mut d = Decoder::new();
            let msg = d.decode(&m).unwrap();
            let get = |t| msg.get(t).unwrap_or_default().to_vec();
            match msg.msg_type() {
                b"A" => {
                    us = get(56);
                    them = get(49);
                    send(
                        &mut s,
                        &us,
                        &them,
                        b"A",
                        &[(98, b"0".to_vec()), (108, get(108))],
                    );
                    send(&mut s, &us, &them, b"1", &[(112, b"TEST-1".to_vec())]);
                }
                b"0" if get(112) == b"TEST-1" => {
                    seen.heartbeats_answering.fetch_add(1, Ordering::Relaxed);
                }
                b"D" => {
                    seen.orders.fetch_add(1, Ordering::Relaxed);
                    if let Mode::DropLg02After(n) = mode {
                        if them == b"LG02" && msg.seq_num().unwrap_or(0) > n {
                            return;
                        }
                    }
                    let id = get(11);
                    let odd = id.last().is_some_and(|d| (d - b'0') % 2 == 1);
                    match mode {
                        Mode::SessionReject => send(
                            &mut s,
                            &us,
                            &them,
                            b"3",
                            &[(45, get(34)), (58, b"Required tag missing".to_vec())],
                        ),
                        Mode::AckOrReject | Mode::DropLg02After(_) if odd => send(
                            &mut s,
                            &us,
                            &them,
                            b"j",
                            &[
                                (45, get(34)),
                                (372, b"D".to_vec()),
                                (379, id),
                                (380, b"4".to_vec()),
                            ],
                        ),
                        Mode::AckOrReject | Mode::DropLg02After(_) => send(
                            &mut s,
                            &us,
                            &them,
                            b"8",
                            &[
                                (37, b"O1".to_vec()),
                                (11, id),
                                (150, b"0".to_vec()),
                                (39, b"0".to_vec()),
                            ],
                        ),
                    }
                }
                b"F" => {
                    seen.cancels.fetch_add(1, Ordering::Relaxed);
                    send(
                        &mut s,
                        &us,
                        &them,
                        b"8",
                        &[
                            (11, get(11)),
                            (41, get(41)),
                            (150, b"4".to_vec()),
                            (39, b"4".to_vec()),
                        ],
                    );
                }
                b"5" => {
                    seen.logouts.fetch_add(1, Ordering::Relaxed);
                    send(&mut s, &us, &them, b"5", &[]);
                    return;
                }
                _ => {}
            }
        }
    }
}

fn opts() -> FixOptions {
    FixOptions {
        begin_string: "FIX.4.4".into(),
        sender: "LG{n}".into(),
        target: "BENCH".into(),
        heartbeat_secs: 30,
        symbol: "BTC-PERP".into(),
        side: b'1',
        qty: "1".into(),
        price: "1000".into(),
        time_in_force: b'1',
        account: None,
        credentials: None,
        sign_messages: false,
    }
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn pingpong_matches_answers_cancels_acknowledged_orders_and_logs_out() {
    let (addr, seen) = fake_server(Mode::AckOrReject);
    let r = pingpong_fix(&addr, &opts(), 10, 100, true).unwrap();
    assert_eq!(r.latency.count, 100);
    // Orders 10..110: half acknowledged, half rejected.
    assert_eq!(r.counts.exec_new, 50);
    assert_eq!(r.counts.business_reject, 50);
    assert!(r.message_size > 100);
    assert_eq!(seen.orders.load(Ordering::Relaxed), 110);
    assert_eq!(
        seen.cancels.load(Ordering::Relaxed),
        55,
        "only acknowledged orders"
    );
    wait_for("the Logout", || seen.logouts.load(Ordering::Relaxed) == 1);
    assert_eq!(seen.heartbeats_answering.load(Ordering::Relaxed), 1);
}

#[test]
fn flood_collects_every_answer_over_several_sessions() {
    let (addr, seen) = fake_server(Mode::AckOrReject);
    let p = FloodParams {
        sessions: 3,
        rate: 3_000.0,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        drain: Duration::from_secs(2),
        cancel_after: true,
        tick: Duration::from_micros(100),
    };
    let r = flood(&addr, &Target::Fix(Box::new(opts())), &p).unwrap();
    assert_eq!(r.scheduled, 1_200);
    assert_eq!(r.answered, 1_200);
    assert_eq!(r.unanswered(), 0);
    assert_eq!(r.latency.count, 900, "warm-up answers are not timed");
    assert_eq!(r.counts.exec_new + r.counts.business_reject, 1_200);
    assert_eq!(seen.orders.load(Ordering::Relaxed), 1_200);
    assert_eq!(
        seen.cancels.load(Ordering::Relaxed),
        r.counts.exec_new,
        "each acknowledged order is cancelled"
    );
    wait_for("three Logouts", || {
        seen.logouts.load(Ordering::Relaxed) == 3
    });
    assert_eq!(seen.heartbeats_answering.load(Ordering::Relaxed), 3);
}

#[test]
fn a_session_the_server_drops_fails_the_run_but_not_the_others() {
    let (addr, _) = fake_server(Mode::DropLg02After(50));
    let p = FloodParams {
        sessions: 2,
        rate: 2_000.0,
        duration: Duration::from_millis(200),
        warmup: Duration::ZERO,
        drain: Duration::from_millis(500),
        cancel_after: false,
        tick: Duration::ZERO,
    };
    let r = flood(&addr, &Target::Fix(Box::new(opts())), &p).unwrap();
    assert_eq!(r.scheduled, 400);
    assert_eq!(r.lost.len(), 1, "{:?}", r.lost);
    assert!(r.lost[0].starts_with("session 2: "), "{:?}", r.lost);
    assert!(r.answered >= 200 + 45 && r.answered < 400, "{}", r.answered);
    assert!(!r.passed());
}

#[test]
fn a_session_level_reject_is_an_error_naming_it() {
    let (addr, _) = fake_server(Mode::SessionReject);
    let e = pingpong_fix(&addr, &opts(), 0, 10, false).unwrap_err();
    assert!(format!("{e:#}").contains("Required tag missing"), "{e:#}");
}
