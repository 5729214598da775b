//! A counting allocator for the unit tests, and the proof that the core loop allocates nothing
//! per order once warmed up (DESIGN.md §3: no allocation on the hot path).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use portcullis_types::{AccountId, CancelOrder, ClOrdId, Command, InstrumentId, Side};

use crate::pipeline::tests::{open, order, setup};
use crate::pipeline::{now_ns, Ingress};

thread_local! {
    /// Allocations made by this thread (const-initialised: reading it never allocates).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The binary's allocator, counting allocations per thread.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded as is to the real allocator.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded as is; `ptr` came from this allocator with `layout`.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_core_loop_does_not_allocate_per_order() {
    let (mut lp, p) = setup(4096, 4096);
    let a = open(&mut lp, &p, 0);
    let b = open(&mut lp, &p, 1);
    // Orders that rest, cross (fills to both sessions), get cancelled: every path of an order.
    let round = |n: usize, tag: &str| -> Vec<Command> {
        let mut cmds = Vec::new();
        for i in 0..n {
            let price = 900 + (i % 16) as i64 * 2;
            cmds.push(order(
                a.slot().0,
                0,
                &format!("{tag}S{i}"),
                Side::Sell,
                price,
                2,
            ));
            cmds.push(order(
                b.slot().0,
                1,
                &format!("{tag}B{i}"),
                Side::Buy,
                price,
                1,
            ));
            cmds.push(order(
                b.slot().0,
                1,
                &format!("{tag}R{i}"),
                Side::Buy,
                100,
                1,
            ));
            cmds.push(Command::Cancel(CancelOrder {
                session: b.slot(),
                account: AccountId(1),
                instrument: InstrumentId(0),
                cl_ord_id: ClOrdId::new(format!("{tag}C{i}").as_bytes()).unwrap(),
                order_id: None,
                orig_cl_ord_id: ClOrdId::new(format!("{tag}R{i}").as_bytes()).unwrap(),
                received_ns: 0,
            }));
            cmds.push(Command::Cancel(CancelOrder {
                session: a.slot(),
                account: AccountId(0),
                instrument: InstrumentId(0),
                cl_ord_id: ClOrdId::new(format!("{tag}X{i}").as_bytes()).unwrap(),
                order_id: None,
                orig_cl_ord_id: ClOrdId::new(format!("{tag}S{i}").as_bytes()).unwrap(),
                received_ns: 0,
            }));
        }
        cmds
    };
    let now = now_ns();
    let mut run = |cmds: Vec<Command>| {
        let mut events = 0;
        for cmd in cmds {
            p.submit(Ingress::Cmd(cmd)).unwrap();
            lp.step(now);
            while a.pop().is_some() || b.pop().is_some() {
                events += 1;
            }
        }
        events
    };
    // Warm-up: the books' levels, the risk tables' slots.
    assert!(run(round(500, "W")) > 0);
    let cmds = round(500, "M");
    let before = allocations();
    let events = run(cmds);
    let after = allocations();
    assert!(events > 2000, "{events}");
    assert_eq!(after - before, 0, "allocations on the core loop's path");
    // The counter does count.
    let v: Vec<u8> = Vec::with_capacity(64);
    std::hint::black_box(&v);
    assert!(allocations() > after);
}
