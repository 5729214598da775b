//! Portcullis's own load generator (DESIGN.md §6), as a library for its binary and tests.
//!
//! - [`run::pingpong_fix`] / [`run::pingpong_echo`]: one message at a time, round-trip times in
//!   an HDR histogram;
//! - [`flood::flood`] / [`run::find_max`]: open-loop load on a fixed schedule per session, each
//!   answer timed from its order's *intended* send time (coordinated-omission correction), and
//!   the highest rate that keeps p99 under 1 ms;
//! - [`ws`]: the WebSocket API (`session.logon`, then `order.place`) as a target;
//! - [`echo`]: the bare TCP echo server that is the floor;
//! - [`report`]: tables for people and the comparison table of `scripts/bench.sh`.
#![warn(missing_docs)]

pub mod echo;
pub mod fix;
pub mod flood;
pub mod hist;
pub mod net;
pub mod report;
pub mod run;
pub mod ws;
