//! Property tests of the codec: no input panics framing, decoding or validation; encoding then
//! framing and decoding gives back the fields; framing a stream split anywhere gives back the
//! messages.

use portcullis_fix::{frame, tag, BeginString, Decoder, Dictionary, Encoder, Frame};
use proptest::prelude::*;

const VERSIONS: [BeginString; 3] = [BeginString::Fix42, BeginString::Fix44, BeginString::Fixt11];
const MAX: usize = 64 * 1024;
const TS: &[u8] = b"20240102-03:04:05.678";

/// Runs everything that reads untrusted bytes; only panics matter.
fn exercise(bytes: &[u8]) {
    let _ = frame(bytes, MAX);
    let mut d = Decoder::new();
    if let Ok(m) = d.decode(bytes) {
        let _ = m.msg_type();
        let _ = m.seq_num();
        for v in VERSIONS {
            let _ = Dictionary::for_version(v).validate(&m);
        }
    }
}

fn encode(v: BeginString, msg_type: &[u8], fields: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(v.as_bytes(), msg_type);
    for (t, val) in fields {
        e.str(*t, val);
    }
    e.finish().to_vec()
}

/// Valid messages of several kinds and versions, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let hdr = |e: &mut Encoder| {
        e.str(49, b"TW").str(56, b"ISLD").uint(34, 7).str(52, TS);
    };
    let mut out = Vec::new();
    for v in VERSIONS {
        let mut e = Encoder::new();
        e.start(v.as_bytes(), b"A");
        hdr(&mut e);
        e.str(98, b"0")
            .str(108, b"30")
            .data(95, 96, b"a\x01b=c")
            .str(553, b"key");
        if v == BeginString::Fixt11 {
            e.str(1137, b"9");
        }
        out.push(e.finish().to_vec());

        let mut e = Encoder::new();
        e.start(v.as_bytes(), b"D");
        hdr(&mut e);
        e.str(11, b"C1");
        if v != BeginString::Fix42 {
            e.str(453, b"2")
                .str(448, b"A")
                .str(447, b"D")
                .str(452, b"3")
                .str(802, b"1")
                .str(523, b"x")
                .str(448, b"B")
                .str(452, b"1");
        }
        e.str(21, b"1")
            .str(55, b"BTC-PERP")
            .str(54, b"1")
            .str(60, TS)
            .str(38, b"1.5")
            .str(40, b"2")
            .str(44, b"100.25")
            .str(93, b"4")
            .str(89, b"sig=");
        out.push(e.finish().to_vec());

        let mut e = Encoder::new();
        e.start(v.as_bytes(), b"3");
        hdr(&mut e);
        e.str(45, b"3")
            .str(371, b"44")
            .str(373, b"5")
            .str(58, b"bad");
        out.push(e.finish().to_vec());
    }
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"r");
    hdr(&mut e);
    e.str(37, b"O")
        .str(530, b"7")
        .str(531, b"7")
        .str(534, b"1")
        .str(41, b"C")
        .str(535, b"O1");
    out.push(e.finish().to_vec());
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    SetByte(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    DuplicateField(usize),
    SwapFields(usize, usize),
    DropField(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = prop_oneof![
        any::<u8>(),
        Just(0x01u8),
        Just(b'='),
        Just(b'0'),
        Just(b'9'),
        Just(b'-'),
    ];
    prop_oneof![
        (any::<usize>(), bytes).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                Just(b"453=3\x01".to_vec()),
                Just(b"448=X\x01".to_vec()),
                Just(b"10=000\x01".to_vec()),
                Just(b"95=99\x01".to_vec()),
                Just(b"35=D\x01".to_vec()),
            ]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::DuplicateField),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::SwapFields(i, j)),
        any::<usize>().prop_map(Mutation::DropField),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Splits after each SOH (data values are not special here: mutations need not be valid).
fn split_fields(m: &[u8]) -> Vec<Vec<u8>> {
    m.split_inclusive(|&b| b == 0x01)
        .map(<[u8]>::to_vec)
        .collect()
}

fn apply(m: &mut Vec<u8>, mutation: &Mutation) {
    if m.is_empty() {
        return;
    }
    let n = m.len();
    match mutation {
        Mutation::SetByte(i, b) => m[i % n] = *b,
        Mutation::Insert(i, b) => {
            let at = i % (n + 1);
            m.splice(at..at, b.iter().copied());
        }
        Mutation::Delete(i, len) => {
            let at = i % n;
            let end = (at + len).min(n);
            m.drain(at..end);
        }
        Mutation::DuplicateField(i) | Mutation::DropField(i) => {
            let mut f = split_fields(m);
            let k = i % f.len();
            if matches!(mutation, Mutation::DuplicateField(_)) {
                let dup = f[k].clone();
                f.insert(k, dup);
            } else {
                f.remove(k);
            }
            *m = f.concat();
        }
        Mutation::SwapFields(i, j) => {
            let mut f = split_fields(m);
            let len = f.len();
            f.swap(i % len, j % len);
            *m = f.concat();
        }
        Mutation::Truncate(i) => m.truncate(i % n),
    }
}

/// Tags the round trip may use: no header/trailer positional fields, no data or length fields
/// (their values are read by length, which changes what a value may contain).
fn plain_tags() -> Vec<u32> {
    let length_tags: Vec<u32> = (1..=9999).filter_map(tag::length_tag_of_data).collect();
    (1..=9999)
        .filter(|&t| {
            !matches!(t, 8 | 9 | 10 | 35)
                && tag::length_tag_of_data(t).is_none()
                && !length_tags.contains(&t)
        })
        .collect()
}

fn field_list() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    let tags = plain_tags();
    prop::collection::vec(
        (
            prop::sample::select(tags),
            "[ -~]{1,24}".prop_map(String::into_bytes),
        ),
        0..40,
    )
}

fn msg_type() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec!["0", "A", "D", "8", "j", "AE"])
            .prop_map(|s| s.as_bytes().to_vec()),
        "[0-9A-Za-z]{1,3}".prop_map(String::into_bytes),
    ]
}

fn version() -> impl Strategy<Value = BeginString> {
    prop::sample::select(VERSIONS.to_vec())
}

/// Tags that steer validation into its interesting paths, and odd values for them.
fn soup_field() -> impl Strategy<Value = (u32, Vec<u8>)> {
    let tags = prop_oneof![
        prop::sample::select(vec![
            11u32, 21, 34, 35, 38, 40, 41, 44, 49, 52, 54, 55, 56, 60, 89, 93, 95, 96, 98, 108,
            112, 141, 150, 373, 382, 384, 386, 448, 447, 452, 453, 523, 534, 535, 553, 627, 628,
            802, 803, 1128, 1137, 5001, 50_000,
        ]),
        1u32..2000,
    ];
    let values = prop_oneof![
        "[ -~]{0,12}".prop_map(String::into_bytes),
        prop::sample::select(vec![
            "0",
            "1",
            "2",
            "3",
            "Y",
            "N",
            "-1",
            "1.5",
            "20240102-03:04:05"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    (tags, values)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_fieldish_bytes_never_panic(
        fields in prop::collection::vec(("[0-9]{0,4}", "[ -~\\x01]{0,10}"), 0..30)
    ) {
        let mut bytes = b"8=FIX.4.4\x019=10\x0135=D\x01".to_vec();
        for (t, v) in &fields {
            bytes.extend_from_slice(t.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0x01);
        }
        bytes.extend_from_slice(b"10=000\x01");
        exercise(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        seed in prop::sample::select(seeds()),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut m = seed;
        for mu in &mutations {
            apply(&mut m, mu);
        }
        exercise(&m);
    }

    #[test]
    fn well_framed_field_soup_never_panics(
        v in version(),
        mt in msg_type(),
        fields in prop::collection::vec(soup_field(), 0..40),
    ) {
        let m = encode(v, &mt, &fields);
        exercise(&m);
    }

    #[test]
    fn encode_frame_decode_round_trips(
        v in version(),
        mt in msg_type(),
        fields in field_list(),
    ) {
        let m = encode(v, &mt, &fields);
        prop_assert_eq!(frame(&m, MAX), Frame::Complete { len: m.len() });
        let mut d = Decoder::new();
        let msg = d.decode(&m).expect("encoded message decodes");
        prop_assert_eq!(msg.begin_string(), v.as_bytes());
        prop_assert_eq!(msg.msg_type(), &mt[..]);
        prop_assert_eq!(msg.len(), fields.len() + 4);
        let got: Vec<(u32, Vec<u8>)> = msg
            .fields()
            .skip(3)
            .take(fields.len())
            .map(|f| (f.tag, f.value.to_vec()))
            .collect();
        prop_assert_eq!(got, fields);
        prop_assert_eq!(msg.field_at(msg.len() - 1).map(|f| f.tag), Some(10));
    }

    #[test]
    fn a_stream_split_anywhere_frames_into_the_same_messages(
        msgs in prop::collection::vec((version(), msg_type(), field_list()), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let encoded: Vec<Vec<u8>> = msgs.iter().map(|(v, mt, f)| encode(*v, mt, f)).collect();
        let stream = encoded.concat();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        points.dedup();

        let mut buf: Vec<u8> = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut from = 0;
        for p in points {
            buf.extend_from_slice(&stream[from..p]);
            from = p;
            loop {
                match frame(&buf, MAX) {
                    Frame::Complete { len } => {
                        got.push(buf.drain(..len).collect());
                    }
                    Frame::Incomplete => break,
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, encoded);
    }
}

#[test]
fn seeds_are_valid() {
    let mut d = Decoder::new();
    for s in seeds() {
        assert_eq!(frame(&s, MAX), Frame::Complete { len: s.len() });
        let m = d.decode(&s).unwrap();
        let v = BeginString::parse(m.begin_string()).unwrap();
        assert_eq!(Dictionary::for_version(v).validate(&m), Ok(()));
    }
}
