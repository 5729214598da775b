//! Criterion bench of the pre-trade risk checks (filled in below).
fn main() {}
