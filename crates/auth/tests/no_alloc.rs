//! The per-message verify path allocates nothing (DESIGN.md §3: no heap allocation on the hot
//! path), checked with a global allocator that counts the allocations of the testing thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use portcullis_auth::fix_sig::{self, LogonFields};
use portcullis_auth::HmacKey;

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
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SECRET: &[u8] = b"6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172";

#[test]
fn verifying_signatures_does_not_allocate() {
    // Setup allocates freely.
    let body = b"35=D\x0134=2\x0149=C\x0152=20240102-03:04:06.000\x0156=P\x0111=1\x0155=X\x0154=1\x0138=1\x0140=1\x01";
    let mut m = format!("8=FIX.4.4\x019={}\x01", body.len() + 55).into_bytes();
    m.extend_from_slice(body);
    let sig = fix_sig::sign_message(SECRET, &m);
    m.extend_from_slice(b"93=44\x0189=");
    m.extend_from_slice(sig.as_bytes());
    m.extend_from_slice(b"\x0110=000\x01");
    let mut tampered = m.clone();
    tampered[20] ^= 1;
    let unsigned = &m[..m.len() - 62];
    let fields = LogonFields {
        sending_time: b"20240102-03:04:05.678",
        msg_type: b"A",
        msg_seq_num: b"1",
        sender_comp_id: b"C",
        target_comp_id: b"P",
        username: b"pk_1",
    };
    let raw = fix_sig::sign_logon(SECRET, &fields);
    let hex_sig = fix_sig::sign_hmac_hex(SECRET, b"a=1&b=2");
    let key = HmacKey::new(SECRET);

    let before = allocs();
    for _ in 0..100 {
        assert_eq!(key.verify_message(&m), Ok(()));
        assert!(key.verify_message(&tampered).is_err());
        assert!(key.verify_message(unsigned).is_err());
        assert!(key.verify_message(b"garbage\x0193=44\x0189=zz").is_err());
        assert_eq!(fix_sig::verify_message(SECRET, &m), Ok(()));
        assert!(key.verify_logon(&fields, raw.as_bytes()));
        assert!(key.verify_hex(b"a=1&b=2", hex_sig.as_bytes()));
    }
    let after = allocs();
    assert_eq!(after - before, 0, "the verify path allocated");
}
