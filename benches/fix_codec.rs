//! FIX codec benchmarks: decoding and validating a NewOrderSingle, encoding an ExecutionReport,
//! framing a buffer of 100 messages. Target (DESIGN.md §6): decode ≤ 150 ns median.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_fix::{
    frame, tag, BeginString, Decoder, Dictionary, Encoder, Frame, TimePrecision, UtcTimestamp,
};

const MAX: usize = 64 * 1024;

/// A FIX 4.4 NewOrderSingle as a market maker sends it (about 200 bytes).
fn new_order_single(seq: u64) -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"D")
        .str(tag::SENDER_COMP_ID, b"MMFIRM01")
        .str(tag::TARGET_COMP_ID, b"PORTCULLIS")
        .uint(tag::MSG_SEQ_NUM, seq)
        .str(tag::SENDING_TIME, b"20240102-03:04:05.678901")
        .str(tag::CL_ORD_ID, b"ORD-20240102-000123456")
        .str(tag::ACCOUNT, b"ACC-7781")
        .str(tag::SYMBOL, b"BTC-27DEC24-60000-C")
        .str(tag::SIDE, b"1")
        .str(tag::TRANSACT_TIME, b"20240102-03:04:05.678812")
        .str(tag::ORDER_QTY, b"25")
        .str(tag::ORD_TYPE, b"2")
        .str(tag::PRICE, b"1234.50")
        .str(tag::TIME_IN_FORCE, b"1")
        .str(tag::EXEC_INST, b"6");
    e.finish().to_vec()
}

fn decode_new_order_single(c: &mut Criterion) {
    let msg = new_order_single(1_234_567);
    assert!(
        (180..=240).contains(&msg.len()),
        "message is {} bytes",
        msg.len()
    );
    let mut dec = Decoder::new();
    c.bench_function("decode_new_order_single", |b| {
        b.iter(|| {
            let m = dec.decode(black_box(&msg)).expect("decodes");
            black_box((
                m.msg_type(),
                m.seq_num(),
                m.get(tag::CL_ORD_ID),
                m.get(tag::SIDE),
                m.get(tag::PRICE),
                m.get(tag::ORDER_QTY),
            ));
        })
    });
}

fn validate_new_order_single(c: &mut Criterion) {
    let msg = new_order_single(1_234_567);
    let dict = Dictionary::for_version(BeginString::Fix44);
    let mut dec = Decoder::new();
    assert_eq!(dict.validate(&dec.decode(&msg).unwrap()), Ok(()));
    c.bench_function("validate_new_order_single", |b| {
        b.iter(|| {
            let m = dec.decode(black_box(&msg)).expect("decodes");
            black_box(dict.validate(&m)).expect("valid");
        })
    });
}

fn encode_execution_report(c: &mut Criterion) {
    let mut enc = Encoder::new();
    let now = UtcTimestamp::from_nanos(1_704_164_645_678_901_000);
    let mut seq = 1u64;
    c.bench_function("encode_execution_report", |b| {
        b.iter(|| {
            seq += 1;
            enc.start(b"FIX.4.4", b"8")
                .str(tag::SENDER_COMP_ID, b"PORTCULLIS")
                .str(tag::TARGET_COMP_ID, b"MMFIRM01")
                .uint(tag::MSG_SEQ_NUM, black_box(seq))
                .timestamp(tag::SENDING_TIME, black_box(now), TimePrecision::Micros)
                .uint(tag::ORDER_ID, black_box(9_000_001))
                .str(tag::CL_ORD_ID, black_box(b"ORD-20240102-000123456"))
                .uint(tag::EXEC_ID, black_box(77_000_123))
                .char(tag::EXEC_TYPE, b'F')
                .char(tag::ORD_STATUS, b'1')
                .str(tag::ACCOUNT, b"ACC-7781")
                .str(tag::SYMBOL, b"BTC-27DEC24-60000-C")
                .char(tag::SIDE, b'1')
                .str(tag::ORDER_QTY, b"25")
                .char(tag::ORD_TYPE, b'2')
                .str(tag::PRICE, b"1234.50")
                .str(tag::LAST_QTY, b"10")
                .str(tag::LAST_PX, b"1234.50")
                .str(tag::LEAVES_QTY, b"15")
                .str(tag::CUM_QTY, b"10")
                .str(tag::AVG_PX, b"1234.50")
                .timestamp(tag::TRANSACT_TIME, now, TimePrecision::Micros);
            black_box(enc.finish().len());
        })
    });
}

fn frame_split_100(c: &mut Criterion) {
    let buf: Vec<u8> = (0..100u64)
        .flat_map(|i| new_order_single(1000 + i))
        .collect();
    c.bench_function("frame_split_100", |b| {
        b.iter(|| {
            let buf = black_box(&buf[..]);
            let mut off = 0;
            let mut n = 0u32;
            while off < buf.len() {
                match frame(&buf[off..], MAX) {
                    Frame::Complete { len } => {
                        off += len;
                        n += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(black_box(n), 100);
        })
    });
}

criterion_group!(
    benches,
    decode_new_order_single,
    validate_new_order_single,
    encode_execution_report,
    frame_split_100
);
criterion_main!(benches);
