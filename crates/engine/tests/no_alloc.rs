//! The steady state of the core allocates nothing (DESIGN.md §3): adding, cancelling,
//! replacing and matching orders through `Core::process` — risk checks, books, indexes,
//! reports and risk feedback — and the periodic expiry check (`Core::roll`), with a global
//! allocator that counts the test thread's allocations.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use portcullis_engine::EngineConfig;
use portcullis_types::{Command, EventKind, MassCancel, SessionId, Side, TimeInForce};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: `ptr` was allocated by `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_add_cancel_replace_match_does_not_allocate() {
    let mut r = Run::with(
        EngineConfig {
            max_resting_orders: 1 << 14,
            levels_per_side: 256,
            cancel_on_disconnect: true,
        },
        open_risk(),
    );
    let perp = r.perp();
    let mut n = 0u64;
    let mut events = 0usize;
    let mut fills = 0usize;
    let mut sink = |e: portcullis_types::Event| {
        events += 1;
        if matches!(e.kind, EventKind::Fill | EventKind::PartialFill) {
            fills += 1;
        }
    };
    // One round: a resting sell, cancelled by ClOrdID; a resting sell replaced to a new price
    // level and taken by a buy; a deep book kept in between; a mass cancel of an account
    // without orders; a closed session without orders.
    let round = |r: &mut Run, n: &mut u64, sink: &mut dyn FnMut(portcullis_types::Event)| {
        let p = 1_010_000 + 5 * (*n as i64 % 100);
        *n += 1;
        let o = r.order(BOB, perp, Side::Sell, p, 2);
        r.now += 1_000;
        r.core.process(Command::New(o), r.now, &mut *sink);
        let c = r.cancel_req(BOB, perp, None, o.cl_ord_id);
        r.core.process(Command::Cancel(c), r.now, &mut *sink);

        let o = r.order(CAROL, perp, Side::Sell, p, 3);
        r.core.process(Command::New(o), r.now, &mut *sink);
        let rep = r.replace_req(CAROL, perp, o.cl_ord_id, p - 5, 2);
        r.core.process(Command::Replace(rep), r.now, &mut *sink);
        let mut b = r.order(ALICE, perp, Side::Buy, p, 2);
        b.tif = TimeInForce::Ioc;
        r.core.process(Command::New(b), r.now, &mut *sink);

        let m = MassCancel {
            session: SessionId(0),
            account: ALICE,
            instrument: None,
            cl_ord_id: r.next_cl(),
        };
        r.core.process(Command::MassCancel(m), r.now, &mut *sink);
        r.core
            .process(Command::SessionClosed(SessionId(3)), r.now, &mut *sink);
        // The core thread's periodic expiry check: nothing is due.
        let roll = r.core.roll(r.now, &mut *sink).unwrap();
        assert!(roll.expired.is_empty() && roll.listed.is_empty());
    };
    // A deep book on both sides that stays: the 10 000 resting orders of the benches.
    for i in 0..5_000i64 {
        let o = r.order(BOB, perp, Side::Buy, 990_000 - 5 * (i % 200), 1);
        r.core.process(Command::New(o), r.now, &mut sink);
        let o = r.order(BOB, perp, Side::Sell, 1_020_000 + 5 * (i % 200), 1);
        r.core.process(Command::New(o), r.now, &mut sink);
    }
    // Warm-up: every level and table the rounds touch exists once.
    for _ in 0..200 {
        round(&mut r, &mut n, &mut sink);
    }
    let before = allocs();
    for _ in 0..5_000 {
        round(&mut r, &mut n, &mut sink);
    }
    let during = allocs() - before;
    assert_eq!(during, 0, "allocations in the steady state");
    assert!(
        fills >= 2 * 5_000,
        "the rounds traded: {fills} fill reports"
    );
    assert!(events > 5_000 * 6);
    assert_eq!(r.core.matcher().resting_orders(), 10_000);
    r.assert_consistent();
}
