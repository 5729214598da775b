use super::*;
use crate::{Decoder, Encoder};
use BeginString::{Fix42, Fix44, Fixt11};
use SessionRejectReason as R;

const TS: &[u8] = b"20240102-03:04:05.678";
const VERSIONS: [BeginString; 3] = [Fix42, Fix44, Fixt11];

type Body = Vec<(u32, &'static [u8])>;
type Fields<'a> = &'a [(u32, &'a [u8])];

fn header(e: &mut Encoder) {
    e.str(49, b"TW").str(56, b"ISLD").uint(34, 2).str(52, TS);
}

/// A message with the standard header and the given body fields in order.
fn build(v: BeginString, mt: &[u8], body: &[(u32, &[u8])]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(v.as_bytes(), mt);
    header(&mut e);
    for (t, val) in body {
        e.str(*t, val);
    }
    e.finish().to_vec()
}

/// `|`-separated fields as raw bytes (validation does not look at BodyLength or CheckSum).
fn raw(s: &str) -> Vec<u8> {
    s.replace('|', "\x01").into_bytes()
}

fn check(v: BeginString, bytes: &[u8]) -> Result<(), Rejection> {
    let mut d = Decoder::new();
    let m = d.decode(bytes).expect("test message decodes");
    Dictionary::for_version(v).validate(&m)
}

fn rej(reason: SessionRejectReason, tag: u32) -> Result<(), Rejection> {
    Err(Rejection {
        reason,
        ref_tag: Some(tag),
    })
}

fn with(mut body: Body, extra: &[(u32, &'static [u8])]) -> Body {
    body.extend_from_slice(extra);
    body
}

fn without(body: Body, tag: u32) -> Body {
    body.into_iter().filter(|(t, _)| *t != tag).collect()
}

fn replace(body: Body, tag: u32, value: &'static [u8]) -> Body {
    body.into_iter()
        .map(|(t, v)| if t == tag { (t, value) } else { (t, v) })
        .collect()
}

const PARTIES: &[(u32, &[u8])] = &[
    (453, b"2"),
    (448, b"TRADER1"),
    (447, b"D"),
    (452, b"11"),
    (448, b"FIRM"),
    (447, b"D"),
    (452, b"1"),
];

/// A valid body of each message type for each version.
fn valid_body(v: BeginString, mt: &[u8]) -> Body {
    let v42 = v == Fix42;
    let mut b: Body = match mt {
        b"0" => vec![(112, b"T1")],
        b"1" => vec![(112, b"T1")],
        b"2" => vec![(7, b"1"), (16, b"0")],
        b"3" => vec![
            (45, b"2"),
            (371, b"55"),
            (372, b"D"),
            (373, b"1"),
            (58, b"Required tag missing"),
        ],
        b"4" => vec![(123, b"Y"), (36, b"10")],
        b"5" => vec![(58, b"bye")],
        b"A" => vec![
            (98, b"0"),
            (108, b"30"),
            (95, b"4"),
            (96, b"sig="),
            (141, b"Y"),
            (553, b"key-1"),
        ],
        b"D" => vec![
            (11, b"C1"),
            (1, b"ACC1"),
            (21, b"1"),
            (55, b"BTC-27DEC24-60000-C"),
            (167, b"OPT"),
            (200, b"202412"),
            (201, b"1"),
            (202, b"60000"),
            (54, b"1"),
            (60, TS),
            (38, b"1.5"),
            (40, b"2"),
            (44, b"1250.5"),
            (59, b"1"),
            (18, b"6"),
        ],
        b"F" => vec![
            (41, b"C1"),
            (37, b"O1"),
            (11, b"C2"),
            (55, b"BTC-PERP"),
            (54, b"2"),
            (60, TS),
            (38, b"1"),
        ],
        b"G" => vec![
            (37, b"O1"),
            (41, b"C1"),
            (11, b"C3"),
            (21, b"1"),
            (55, b"BTC-PERP"),
            (54, b"1"),
            (60, TS),
            (38, b"2"),
            (40, b"2"),
            (44, b"101.25"),
        ],
        b"H" => vec![(37, b"O1"), (11, b"C1"), (55, b"BTC-PERP"), (54, b"1")],
        b"q" => vec![(11, b"M1"), (530, b"7"), (60, TS)],
        b"AF" => vec![(584, b"S1"), (585, b"7")],
        b"8" => {
            let mut b: Body = vec![(37, b"O1"), (11, b"C1"), (17, b"E1")];
            if v42 {
                b.push((20, b"0"));
            }
            b.extend_from_slice(&[
                (150, b"0"),
                (39, b"0"),
                (55, b"BTC-PERP"),
                (54, b"1"),
                (38, b"1"),
                (40, b"2"),
                (44, b"1"),
                (151, b"1"),
                (14, b"0"),
                (6, b"0"),
                (60, TS),
            ]);
            b
        }
        b"9" => vec![
            (37, b"O1"),
            (11, b"C2"),
            (41, b"C1"),
            (39, b"8"),
            (434, b"1"),
            (102, b"1"),
            (58, b"Unknown order"),
        ],
        b"r" => vec![
            (11, b"M1"),
            (37, b"O1"),
            (530, b"7"),
            (531, b"7"),
            (533, b"2"),
            (534, b"2"),
            (41, b"C1"),
            (535, b"O1"),
            (41, b"C2"),
            (535, b"O2"),
            (60, TS),
        ],
        b"j" => vec![
            (45, b"3"),
            (372, b"D"),
            (379, b"C1"),
            (380, b"4"),
            (58, b"no venue connected"),
        ],
        _ => panic!("no test body for {mt:?}"),
    };
    match (mt, v) {
        (b"A", Fix44) => b.push((789, b"2")),
        (b"A", Fixt11) => b.extend_from_slice(&[(789, b"2"), (1137, b"9")]),
        (b"D" | b"F" | b"G" | b"8", Fix44 | Fixt11) => {
            // Parties right after ClOrdID/OrderID: body order is free, groups are not.
            let at = b.iter().position(|(t, _)| *t == 11).unwrap() + 1;
            for (k, f) in PARTIES.iter().enumerate() {
                b.insert(at + k, *f);
            }
        }
        _ => {}
    }
    b
}

const ALL_TYPES: [&[u8]; 16] = [
    b"0", b"1", b"2", b"3", b"4", b"5", b"A", b"D", b"F", b"G", b"H", b"q", b"8", b"9", b"r", b"j",
];

fn valid(v: BeginString, mt: &[u8]) -> Vec<u8> {
    build(v, mt, &valid_body(v, mt))
}

// ---- valid messages ----------------------------------------------------------------------

#[test]
fn every_message_type_validates_in_every_version_that_defines_it() {
    let mut n = 0;
    for v in VERSIONS {
        let d = Dictionary::for_version(v);
        for mt in ALL_TYPES {
            if !d.knows_msg_type(mt) {
                continue;
            }
            let m = valid(v, mt);
            assert_eq!(check(v, &m), Ok(()), "{v} {}", String::from_utf8_lossy(mt));
            n += 1;
        }
    }
    assert_eq!(n, 16 * 3 - 2);
}

#[test]
fn minimal_messages_with_only_required_fields_validate() {
    let cases: &[(BeginString, &[u8], Fields)] = &[
        (Fix42, b"0", &[]),
        (Fix44, b"A", &[(98, b"0"), (108, b"30")]),
        (Fixt11, b"A", &[(98, b"0"), (108, b"30"), (1137, b"9")]),
        (
            Fix42,
            b"D",
            &[
                (11, b"C"),
                (21, b"1"),
                (55, b"X"),
                (54, b"1"),
                (60, TS),
                (40, b"1"),
            ],
        ),
        (
            Fix44,
            b"D",
            &[(11, b"C"), (55, b"X"), (54, b"1"), (60, TS), (40, b"1")],
        ),
        (
            Fixt11,
            b"F",
            &[(11, b"C"), (55, b"X"), (54, b"1"), (60, TS)],
        ),
        (Fixt11, b"H", &[(55, b"X"), (54, b"1")]),
        (Fix44, b"q", &[(11, b"M"), (530, b"1"), (60, TS)]),
    ];
    for (v, mt, body) in cases {
        assert_eq!(check(*v, &build(*v, mt, body)), Ok(()), "{v} {mt:?}");
    }
}

#[test]
fn signature_trailer_right_before_checksum_is_accepted() {
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"0");
    header(&mut e);
    e.str(93, b"4").str(89, b"abcd");
    assert_eq!(check(Fix44, e.finish()), Ok(()));
}

#[test]
fn hops_header_group_is_accepted_from_fix44() {
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"0");
    header(&mut e);
    e.str(627, b"1")
        .str(628, b"HUB")
        .str(629, TS)
        .str(630, b"7");
    assert_eq!(check(Fix44, e.finish()), Ok(()));
}

#[test]
fn fixt_application_message_may_carry_appl_ver_id() {
    let mut e = Encoder::new();
    e.start(b"FIXT.1.1", b"D");
    e.str(1128, b"9");
    header(&mut e);
    for (t, v) in valid_body(Fixt11, b"D") {
        e.str(t, v);
    }
    assert_eq!(check(Fixt11, e.finish()), Ok(()));
}

#[test]
fn timestamps_with_seconds_millis_micros_and_nanos_are_accepted() {
    for ts in [
        &b"20240102-03:04:05"[..],
        b"20240102-03:04:05.678",
        b"20240102-03:04:05.678901",
        b"20240102-03:04:05.678901234",
    ] {
        let body = replace(valid_body(Fix44, b"D"), 60, ts);
        assert_eq!(check(Fix44, &build(Fix44, b"D", &body)), Ok(()));
    }
}

#[test]
fn timestamps_far_from_now_are_checked_without_overflow() {
    for (ts, ok) in [
        (&b"99991231-23:59:59.999"[..], true),
        (b"00010101-00:00:00", true),
        (b"24000229-00:00:00", true),
        (b"23000229-00:00:00", false),
    ] {
        let body = replace(valid_body(Fix44, b"D"), 60, ts);
        let want = if ok {
            Ok(())
        } else {
            rej(R::IncorrectDataFormat, 60)
        };
        assert_eq!(check(Fix44, &build(Fix44, b"D", &body)), want, "{ts:?}");
    }
    let body = with(valid_body(Fix44, b"D"), &[(432, b"99990228")]);
    assert_eq!(check(Fix44, &build(Fix44, b"D", &body)), Ok(()));
}

#[test]
fn decimal_forms_are_accepted() {
    for px in [
        &b"1"[..],
        b"-1",
        b"0.5",
        b".5",
        b"5.",
        b"0012.500",
        b"-0.000001",
    ] {
        let body = replace(valid_body(Fix44, b"D"), 44, px);
        assert_eq!(check(Fix44, &build(Fix44, b"D", &body)), Ok(()), "{px:?}");
    }
}

#[test]
fn user_defined_tags_are_accepted_anywhere_in_the_body() {
    let body = with(
        valid_body(Fix44, b"D"),
        &[(5000, b"x"), (9999, b"y"), (20001, b"z"), (49_999, b"w")],
    );
    assert_eq!(check(Fix44, &build(Fix44, b"D", &body)), Ok(()));
}

#[test]
fn fix42_logon_accepts_username_and_password_as_extension_fields() {
    let body = with(valid_body(Fix42, b"A"), &[(554, b"secret")]);
    assert_eq!(check(Fix42, &build(Fix42, b"A", &body)), Ok(()));
}

#[test]
fn raw_data_is_accepted_on_logon_in_every_version() {
    for v in VERSIONS {
        let body = valid_body(v, b"A");
        assert!(body.iter().any(|(t, _)| *t == 96));
        assert_eq!(check(v, &build(v, b"A", &body)), Ok(()), "{v}");
    }
}

#[test]
fn raw_data_may_contain_soh() {
    let body = replace(replace(valid_body(Fix44, b"A"), 95, b"5"), 96, b"ab\x01cd");
    assert_eq!(check(Fix44, &build(Fix44, b"A", &body)), Ok(()));
}

// ---- reason 14: order ----------------------------------------------------------------------

#[test]
fn begin_string_not_first_is_reason_14_with_ref_tag_8() {
    let m = raw("9=5|8=FIX.4.4|35=0|49=TW|56=ISLD|34=2|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedOutOfRequiredOrder, 8));
}

#[test]
fn body_length_not_second_is_reason_14_with_ref_tag_9() {
    let m = raw("8=FIX.4.4|35=0|9=5|49=TW|56=ISLD|34=2|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedOutOfRequiredOrder, 9));
}

#[test]
fn msg_type_not_third_is_reason_14_with_ref_tag_35() {
    let m = raw("8=FIX.4.4|9=5|49=TW|35=0|56=ISLD|34=2|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedOutOfRequiredOrder, 35));
}

#[test]
fn missing_msg_type_is_reason_1_with_ref_tag_35() {
    let m = raw("8=FIX.4.4|9=5|49=TW|56=ISLD|34=2|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::RequiredTagMissing, 35));
}

#[test]
fn header_field_after_a_body_field_is_reason_14() {
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"1");
    e.str(56, b"ISLD").uint(34, 2).str(52, TS);
    e.str(112, b"T1").str(49, b"TW");
    assert_eq!(
        check(Fix44, e.finish()),
        rej(R::TagSpecifiedOutOfRequiredOrder, 49)
    );
}

#[test]
fn checksum_not_last_is_reason_14() {
    let m = raw("8=FIX.4.4|9=5|35=0|49=TW|56=ISLD|34=2|52=20240102-03:04:05|10=000|112=X|");
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedOutOfRequiredOrder, 10));
}

#[test]
fn missing_checksum_is_reason_1() {
    let m = raw("8=FIX.4.4|9=5|35=0|49=TW|56=ISLD|34=2|52=20240102-03:04:05|");
    assert_eq!(check(Fix44, &m), rej(R::RequiredTagMissing, 10));
}

#[test]
fn body_field_after_signature_is_reason_14() {
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"5");
    header(&mut e);
    e.str(93, b"4").str(89, b"abcd").str(58, b"late");
    assert_eq!(
        check(Fix44, e.finish()),
        rej(R::TagSpecifiedOutOfRequiredOrder, 58)
    );
}

#[test]
fn signature_without_its_length_right_before_it_is_reason_1() {
    let mut e = Encoder::new();
    e.start(b"FIX.4.4", b"0");
    header(&mut e);
    e.str(89, b"abcd").str(93, b"4");
    assert_eq!(check(Fix44, e.finish()), rej(R::RequiredTagMissing, 93));
}

// ---- reason 11: MsgType --------------------------------------------------------------------

#[test]
fn unknown_msg_type_is_reason_11_with_ref_tag_35() {
    for mt in [&b"Z9"[..], b"~", b"DD"] {
        let m = build(Fix44, mt, &[]);
        assert_eq!(check(Fix44, &m), rej(R::InvalidMsgType, 35), "{mt:?}");
    }
}

#[test]
fn mass_cancel_is_an_invalid_msg_type_in_fix42() {
    let m = build(Fix42, b"q", &[(11, b"M1"), (530, b"7"), (60, TS)]);
    assert_eq!(check(Fix42, &m), rej(R::InvalidMsgType, 35));
    assert!(!Dictionary::for_version(Fix42).knows_msg_type(b"q"));
    assert!(Dictionary::for_version(Fix44).knows_msg_type(b"q"));
}

#[test]
fn unsupported_but_valid_msg_types_are_told_apart_from_invalid_ones() {
    let d44 = Dictionary::for_version(Fix44);
    assert!(d44.msg_type_in_spec(b"R")); // QuoteRequest: BusinessMessageReject, not Reject
    assert!(d44.msg_type_in_spec(b"AE"));
    assert!(!d44.msg_type_in_spec(b"Z9"));
    assert!(!d44.msg_type_in_spec(b"U"));
    let d42 = Dictionary::for_version(Fix42);
    assert!(d42.msg_type_in_spec(b"m"));
    assert!(!d42.msg_type_in_spec(b"q"));
    assert!(!d42.msg_type_in_spec(b"AE"));
    assert!(Dictionary::for_version(Fixt11).msg_type_in_spec(b"BZ"));
}

#[test]
fn empty_msg_type_is_reason_4() {
    let m = raw("8=FIX.4.4|9=5|35=|49=TW|56=ISLD|34=2|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedWithoutValue, 35));
}

// ---- reasons 3 and 2: tags -------------------------------------------------------------------

#[test]
fn tag_undefined_in_the_version_is_reason_0_invalid_tag_number() {
    for tag in [999u32, 4999, 50_000, 999_999] {
        let mut e = Encoder::new();
        e.start(b"FIX.4.4", b"0");
        header(&mut e);
        e.str(tag, b"x");
        assert_eq!(
            check(Fix44, e.finish()),
            rej(R::InvalidTagNumber, tag),
            "{tag}"
        );
    }
}

#[test]
fn parties_are_undefined_tags_in_fix42() {
    let body = with(valid_body(Fix42, b"D"), &[(453, b"1"), (448, b"X")]);
    assert_eq!(
        check(Fix42, &build(Fix42, b"D", &body)),
        rej(R::InvalidTagNumber, 453)
    );
}

#[test]
fn tag_defined_but_not_for_message_type_is_reason_2() {
    let m = build(Fix44, b"0", &[(55, b"BTC")]);
    assert_eq!(check(Fix44, &m), rej(R::TagNotDefinedForMessageType, 55));
}

#[test]
fn fix42_username_outside_logon_is_reason_2() {
    let body = with(valid_body(Fix42, b"D"), &[(553, b"key")]);
    assert_eq!(
        check(Fix42, &build(Fix42, b"D", &body)),
        rej(R::TagNotDefinedForMessageType, 553)
    );
}

#[test]
fn fixt_only_field_is_undefined_in_fix44() {
    let body = with(valid_body(Fix44, b"A"), &[(1137, b"9")]);
    assert_eq!(
        check(Fix44, &build(Fix44, b"A", &body)),
        rej(R::InvalidTagNumber, 1137)
    );
}

#[test]
fn group_field_outside_its_group_is_reason_2() {
    let body = with(valid_body(Fix44, b"H"), &[(448, b"X")]);
    assert_eq!(
        check(Fix44, &build(Fix44, b"H", &body)),
        rej(R::TagNotDefinedForMessageType, 448)
    );
}

// ---- reasons 4, 6, 5: values ---------------------------------------------------------------

#[test]
fn empty_value_is_reason_4() {
    let m = build(Fix44, b"5", &[(58, b"")]);
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedWithoutValue, 58));
    let body = replace(valid_body(Fix42, b"D"), 54, b"");
    assert_eq!(
        check(Fix42, &build(Fix42, b"D", &body)),
        rej(R::TagSpecifiedWithoutValue, 54)
    );
}

#[test]
fn empty_header_value_is_reason_4() {
    let m = raw("8=FIX.4.4|9=5|35=0|49=|56=ISLD|34=2|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedWithoutValue, 49));
}

#[test]
fn malformed_int_is_reason_6() {
    for bad in [&b"3x"[..], b"+30", b"3.0", b"-"] {
        let body = replace(valid_body(Fix44, b"A"), 108, bad);
        assert_eq!(
            check(Fix44, &build(Fix44, b"A", &body)),
            rej(R::IncorrectDataFormat, 108),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_seq_num_is_reason_6() {
    let m = build(Fix44, b"2", &[(7, b"-1"), (16, b"0")]);
    assert_eq!(check(Fix44, &m), rej(R::IncorrectDataFormat, 7));
    let m = raw("8=FIX.4.4|9=5|35=0|49=TW|56=ISLD|34=two|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::IncorrectDataFormat, 34));
}

#[test]
fn malformed_float_is_reason_6() {
    for bad in [&b"1e5"[..], b"1.2.3", b"+1", b"-", b".", b"1,5", b" 1"] {
        let body = replace(valid_body(Fix44, b"D"), 44, bad);
        assert_eq!(
            check(Fix44, &build(Fix44, b"D", &body)),
            rej(R::IncorrectDataFormat, 44),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_char_is_reason_6() {
    let body = replace(valid_body(Fix44, b"D"), 54, b"12");
    assert_eq!(
        check(Fix44, &build(Fix44, b"D", &body)),
        rej(R::IncorrectDataFormat, 54)
    );
}

#[test]
fn malformed_boolean_is_reason_6() {
    let body = replace(valid_body(Fix44, b"A"), 141, b"T");
    assert_eq!(
        check(Fix44, &build(Fix44, b"A", &body)),
        rej(R::IncorrectDataFormat, 141)
    );
    let mut e = Encoder::new();
    e.start(b"FIX.4.2", b"0");
    header(&mut e);
    e.str(43, b"y");
    assert_eq!(check(Fix42, e.finish()), rej(R::IncorrectDataFormat, 43));
}

#[test]
fn malformed_timestamp_is_reason_6() {
    for bad in [
        &b"20240102 03:04:05"[..],
        b"20240102-03:04:05.67",
        b"20240230-03:04:05",
        b"1704164645",
    ] {
        let body = replace(valid_body(Fix44, b"D"), 60, bad);
        assert_eq!(
            check(Fix44, &build(Fix44, b"D", &body)),
            rej(R::IncorrectDataFormat, 60),
            "{bad:?}"
        );
    }
    let m = raw("8=FIX.4.4|9=5|35=0|49=TW|56=ISLD|34=2|52=yesterday|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::IncorrectDataFormat, 52));
}

#[test]
fn malformed_dates_are_reason_6() {
    let cases: &[(u32, &[u8])] = &[
        (200, b"2024"),
        (200, b"202413"),
        (200, b"202412w9"),
        (432, b"20241301"),
    ];
    for (tag, bad) in cases {
        let body = with(valid_body(Fix44, b"D"), &[]);
        let body: Body = body
            .into_iter()
            .filter(|(t, _)| *t != *tag)
            .chain([(*tag, *bad)])
            .collect();
        assert_eq!(
            check(Fix44, &build(Fix44, b"D", &body)),
            rej(R::IncorrectDataFormat, *tag),
            "{tag}={bad:?}"
        );
    }
    for good in [&b"20241227"[..], b"202412w4"] {
        let body = replace(valid_body(Fix44, b"D"), 200, good);
        assert_eq!(check(Fix44, &build(Fix44, b"D", &body)), Ok(()));
    }
}

#[test]
fn malformed_currency_is_reason_6() {
    let body = with(valid_body(Fix44, b"D"), &[(15, b"usd")]);
    assert_eq!(
        check(Fix44, &build(Fix44, b"D", &body)),
        rej(R::IncorrectDataFormat, 15)
    );
    let body = with(valid_body(Fix44, b"D"), &[(15, b"USDT")]);
    assert_eq!(check(Fix44, &build(Fix44, b"D", &body)), Ok(()));
}

#[test]
fn value_outside_its_enumeration_is_reason_5() {
    let cases: &[(BeginString, &[u8], u32, &[u8])] = &[
        (Fix44, b"D", 54, b"Z"),
        (Fix44, b"D", 40, b"Z"),
        (Fix42, b"D", 59, b"7"),
        (Fix42, b"D", 21, b"4"),
        (Fix44, b"A", 98, b"7"),
        (Fix44, b"3", 373, b"18"),
        (Fix42, b"3", 373, b"12"),
        (Fix44, b"9", 434, b"3"),
        (Fix44, b"j", 380, b"9"),
        (Fix44, b"q", 530, b"8"),
        (Fixt11, b"A", 1137, b"10"),
        (Fixt11, b"A", 1137, b"X"),
    ];
    for (v, mt, tag, bad) in cases {
        let body = replace(valid_body(*v, mt), *tag, bad);
        assert!(body.iter().any(|(t, _)| t == tag));
        assert_eq!(
            check(*v, &build(*v, mt, &body)),
            rej(R::ValueIsIncorrect, *tag),
            "{v} {tag}={bad:?}"
        );
    }
}

#[test]
fn enumerations_follow_the_version() {
    // ExecType 1 (PartialFill) exists in 4.2 only; F (Trade) from 4.3 on.
    let b42 = replace(valid_body(Fix42, b"8"), 150, b"1");
    assert_eq!(check(Fix42, &build(Fix42, b"8", &b42)), Ok(()));
    let b44 = replace(valid_body(Fix44, b"8"), 150, b"1");
    assert_eq!(
        check(Fix44, &build(Fix44, b"8", &b44)),
        rej(R::ValueIsIncorrect, 150)
    );
    let b44 = replace(valid_body(Fix44, b"8"), 150, b"F");
    assert_eq!(check(Fix44, &build(Fix44, b"8", &b44)), Ok(()));
    let b42 = replace(valid_body(Fix42, b"8"), 150, b"F");
    assert_eq!(
        check(Fix42, &build(Fix42, b"8", &b42)),
        rej(R::ValueIsIncorrect, 150)
    );
    // SessionRejectReason 18 is FIXT only.
    let b = replace(valid_body(Fixt11, b"3"), 373, b"18");
    assert_eq!(check(Fixt11, &build(Fixt11, b"3", &b)), Ok(()));
}

#[test]
fn integer_enumerations_accept_leading_zeros() {
    let body = replace(valid_body(Fix44, b"A"), 98, b"00");
    assert_eq!(check(Fix44, &build(Fix44, b"A", &body)), Ok(()));
}

#[test]
fn begin_string_of_another_version_is_reason_5() {
    let m = valid(Fix42, b"0");
    assert_eq!(check(Fix44, &m), rej(R::ValueIsIncorrect, 8));
}

// ---- reason 1: required fields -------------------------------------------------------------

#[test]
fn required_tag_missing_is_reason_1_with_ref_tag() {
    for v in VERSIONS {
        let body = without(valid_body(v, b"D"), 54);
        assert_eq!(
            check(v, &build(v, b"D", &body)),
            rej(R::RequiredTagMissing, 54),
            "{v}"
        );
    }
}

#[test]
fn first_missing_tag_in_dictionary_order_is_reported() {
    let body = without(without(valid_body(Fix44, b"D"), 40), 11);
    assert_eq!(
        check(Fix44, &build(Fix44, b"D", &body)),
        rej(R::RequiredTagMissing, 11)
    );
    let body = without(without(valid_body(Fix44, b"8"), 14), 17);
    assert_eq!(
        check(Fix44, &build(Fix44, b"8", &body)),
        rej(R::RequiredTagMissing, 17)
    );
}

#[test]
fn missing_header_field_is_reported_before_missing_body_field() {
    let m = raw("8=FIX.4.4|9=5|35=1|49=TW|56=ISLD|34=2|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::RequiredTagMissing, 52));
    let m = raw("8=FIX.4.4|9=5|35=1|56=ISLD|34=2|52=20240102-03:04:05|112=X|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::RequiredTagMissing, 49));
}

#[test]
fn required_fields_follow_the_version() {
    // HandlInst: required in 4.2 only.
    let b = without(valid_body(Fix42, b"D"), 21);
    assert_eq!(
        check(Fix42, &build(Fix42, b"D", &b)),
        rej(R::RequiredTagMissing, 21)
    );
    let b = without(valid_body(Fix44, b"D"), 21);
    assert_eq!(check(Fix44, &build(Fix44, b"D", &b)), Ok(()));
    // OrigClOrdID on a cancel: required in 4.2; optional in 5.0 SP2 and, as a list may be
    // named instead (the application answers a cancel naming nothing), in 4.4.
    let b = without(valid_body(Fix42, b"F"), 41);
    assert_eq!(
        check(Fix42, &build(Fix42, b"F", &b)),
        rej(R::RequiredTagMissing, 41)
    );
    let b = without(valid_body(Fix44, b"F"), 41);
    assert_eq!(check(Fix44, &build(Fix44, b"F", &b)), Ok(()));
    let b = without(valid_body(Fixt11, b"F"), 41);
    assert_eq!(check(Fixt11, &build(Fixt11, b"F", &b)), Ok(()));
    // AvgPx on an ExecutionReport: required up to 4.4.
    let b = without(valid_body(Fix44, b"8"), 6);
    assert_eq!(
        check(Fix44, &build(Fix44, b"8", &b)),
        rej(R::RequiredTagMissing, 6)
    );
    let b = without(valid_body(Fixt11, b"8"), 6);
    assert_eq!(check(Fixt11, &build(Fixt11, b"8", &b)), Ok(()));
    // ExecTransType: 4.2 only.
    let b = without(valid_body(Fix42, b"8"), 20);
    assert_eq!(
        check(Fix42, &build(Fix42, b"8", &b)),
        rej(R::RequiredTagMissing, 20)
    );
}

#[test]
fn symbol_is_required_with_a_required_instrument_only() {
    for v in VERSIONS {
        let b = without(valid_body(v, b"D"), 55);
        assert_eq!(
            check(v, &build(v, b"D", &b)),
            rej(R::RequiredTagMissing, 55),
            "{v}"
        );
    }
    // The Instrument is optional on OrderMassCancelRequest.
    let b = valid_body(Fix44, b"q");
    assert!(!b.iter().any(|(t, _)| *t == 55));
    assert_eq!(check(Fix44, &build(Fix44, b"q", &b)), Ok(()));
}

#[test]
fn session_messages_require_their_fields() {
    let cases: &[(&[u8], u32)] = &[
        (b"1", 112),
        (b"2", 7),
        (b"3", 45),
        (b"4", 36),
        (b"A", 98),
        (b"A", 108),
    ];
    for v in VERSIONS {
        for (mt, tag) in cases {
            let b = without(valid_body(v, mt), *tag);
            assert_eq!(
                check(v, &build(v, mt, &b)),
                rej(R::RequiredTagMissing, *tag),
                "{v} {mt:?}"
            );
        }
    }
}

#[test]
fn fixt_logon_requires_default_appl_ver_id() {
    let b = without(valid_body(Fixt11, b"A"), 1137);
    assert_eq!(
        check(Fixt11, &build(Fixt11, b"A", &b)),
        rej(R::RequiredTagMissing, 1137)
    );
}

#[test]
fn data_field_without_its_length_is_reason_1() {
    let b = without(valid_body(Fix44, b"A"), 95);
    assert_eq!(
        check(Fix44, &build(Fix44, b"A", &b)),
        rej(R::RequiredTagMissing, 95)
    );
}

#[test]
fn data_length_without_its_data_is_reason_1() {
    let b = without(valid_body(Fix44, b"A"), 96);
    assert_eq!(
        check(Fix44, &build(Fix44, b"A", &b)),
        rej(R::RequiredTagMissing, 96)
    );
}

#[test]
fn data_length_not_a_number_is_reason_6() {
    let b = replace(valid_body(Fix44, b"A"), 95, b"four");
    assert_eq!(
        check(Fix44, &build(Fix44, b"A", &b)),
        rej(R::IncorrectDataFormat, 95)
    );
}

// ---- reason 13: repeated tags --------------------------------------------------------------

#[test]
fn same_tag_twice_outside_a_group_is_reason_13() {
    let b = with(valid_body(Fix44, b"D"), &[(44, b"2")]);
    assert_eq!(
        check(Fix44, &build(Fix44, b"D", &b)),
        rej(R::TagAppearsMoreThanOnce, 44)
    );
    let m = raw("8=FIX.4.4|9=5|35=0|49=TW|49=TW|56=ISLD|34=2|52=20240102-03:04:05|10=000|");
    assert_eq!(check(Fix44, &m), rej(R::TagAppearsMoreThanOnce, 49));
}

#[test]
fn repeated_group_count_is_reason_13() {
    let b = with(valid_body(Fix44, b"D"), &[(453, b"1"), (448, b"X")]);
    assert_eq!(
        check(Fix44, &build(Fix44, b"D", &b)),
        rej(R::TagAppearsMoreThanOnce, 453)
    );
}

// ---- reasons 16 and 15: repeating groups ---------------------------------------------------

fn nos_with_parties(parties: &[(u32, &'static [u8])]) -> Vec<u8> {
    let mut b: Body = vec![(11, b"C1")];
    b.extend_from_slice(parties);
    b.extend_from_slice(&[(55, b"X"), (54, b"1"), (60, TS), (38, b"1"), (40, b"1")]);
    build(Fix44, b"D", &b)
}

#[test]
fn group_count_larger_than_the_entries_is_reason_16() {
    let m = nos_with_parties(&[(453, b"2"), (448, b"A"), (452, b"1")]);
    assert_eq!(check(Fix44, &m), rej(R::IncorrectNumInGroupCount, 453));
}

#[test]
fn group_count_smaller_than_the_entries_is_reason_16() {
    let m = nos_with_parties(&[(453, b"1"), (448, b"A"), (448, b"B")]);
    assert_eq!(check(Fix44, &m), rej(R::IncorrectNumInGroupCount, 453));
}

#[test]
fn group_count_not_an_integer_is_reason_16() {
    for bad in [&b"one"[..], b"-1", b"1.0", b"99999999999999999999999"] {
        let m = nos_with_parties(&[(453, bad), (448, b"A")]);
        assert_eq!(
            check(Fix44, &m),
            rej(R::IncorrectNumInGroupCount, 453),
            "{bad:?}"
        );
    }
}

#[test]
fn empty_group_count_is_reason_4() {
    let m = nos_with_parties(&[(453, b""), (448, b"A")]);
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedWithoutValue, 453));
}

#[test]
fn group_count_zero_without_entries_is_accepted() {
    let m = nos_with_parties(&[(453, b"0")]);
    assert_eq!(check(Fix44, &m), Ok(()));
}

#[test]
fn group_entry_not_starting_with_the_delimiter_is_reason_15() {
    let m = nos_with_parties(&[(453, b"1"), (452, b"1"), (448, b"A")]);
    assert_eq!(
        check(Fix44, &m),
        rej(R::RepeatingGroupFieldsOutOfOrder, 452)
    );
}

#[test]
fn group_entry_fields_out_of_order_is_reason_15() {
    let m = nos_with_parties(&[(453, b"1"), (448, b"A"), (452, b"1"), (447, b"D")]);
    assert_eq!(
        check(Fix44, &m),
        rej(R::RepeatingGroupFieldsOutOfOrder, 447)
    );
}

#[test]
fn group_field_repeated_within_an_entry_is_reason_15() {
    let m = nos_with_parties(&[(453, b"1"), (448, b"A"), (452, b"1"), (452, b"3")]);
    assert_eq!(
        check(Fix44, &m),
        rej(R::RepeatingGroupFieldsOutOfOrder, 452)
    );
}

#[test]
fn group_field_values_are_checked() {
    let m = nos_with_parties(&[(453, b"1"), (448, b"A"), (452, b"x")]);
    assert_eq!(check(Fix44, &m), rej(R::IncorrectDataFormat, 452));
    let m = nos_with_parties(&[(453, b"1"), (448, b"A"), (447, b"Z")]);
    assert_eq!(check(Fix44, &m), rej(R::ValueIsIncorrect, 447));
    let m = nos_with_parties(&[(453, b"1"), (448, b"")]);
    assert_eq!(check(Fix44, &m), rej(R::TagSpecifiedWithoutValue, 448));
}

#[test]
fn nested_party_sub_ids_are_validated() {
    let ok = nos_with_parties(&[
        (453, b"2"),
        (448, b"A"),
        (452, b"3"),
        (802, b"2"),
        (523, b"desk1"),
        (803, b"1"),
        (523, b"desk2"),
        (448, b"B"),
        (447, b"D"),
    ]);
    assert_eq!(check(Fix44, &ok), Ok(()));
    let bad = nos_with_parties(&[
        (453, b"2"),
        (448, b"A"),
        (802, b"3"),
        (523, b"desk1"),
        (448, b"B"),
    ]);
    assert_eq!(check(Fix44, &bad), rej(R::IncorrectNumInGroupCount, 802));
}

#[test]
fn mass_cancel_report_affected_orders_group_is_counted() {
    let b = replace(valid_body(Fixt11, b"r"), 534, b"3");
    assert_eq!(
        check(Fixt11, &build(Fixt11, b"r", &b)),
        rej(R::IncorrectNumInGroupCount, 534)
    );
}

#[test]
fn group_members_do_not_count_as_repeated_tags() {
    // OrigClOrdID repeats inside NoAffectedOrders, once per entry.
    let b = valid_body(Fix44, b"r");
    assert_eq!(b.iter().filter(|(t, _)| *t == 41).count(), 2);
    assert_eq!(check(Fix44, &build(Fix44, b"r", &b)), Ok(()));
}

// ---- the rest of the API -----------------------------------------------------------------

#[test]
fn admin_message_types_are_the_session_messages() {
    for mt in [&b"0"[..], b"1", b"2", b"3", b"4", b"5", b"A"] {
        assert!(Dictionary::is_admin(mt));
    }
    for mt in [&b"D"[..], b"8", b"j", b"", b"AA"] {
        assert!(!Dictionary::is_admin(mt));
    }
}

#[test]
fn message_tables_agree_with_msg_index() {
    for (i, m) in MSGS.iter().enumerate() {
        assert_eq!(msg_index(m.msg_type), Some(i));
    }
    let d42: Vec<_> = Dictionary::for_version(Fix42).msg_types().collect();
    assert_eq!(d42.len(), 21);
    assert!(!d42.contains(&&b"q"[..]));
    assert!(d42.contains(&&b"e"[..]) && d42.contains(&&b"f"[..]));
    assert_eq!(Dictionary::for_version(Fixt11).msg_types().count(), 36);
    // Order lists from FIX 4.4 on (4.2's NewOrderList is program trading: unsupported).
    assert!(!d42.contains(&&b"E"[..]) && Dictionary::for_version(Fix42).msg_type_in_spec(b"E"));
    // Portcullis takes mass quotes from FIX 4.4 on; on 4.2 they are unsupported (a
    // BusinessMessageReject), not invalid.
    assert!(!d42.contains(&&b"i"[..]) && !d42.contains(&&b"Z"[..]));
    assert!(Dictionary::for_version(Fix42).msg_type_in_spec(b"i"));
    assert_eq!(
        Dictionary::for_version(Fix44).msg_name(b"b"),
        Some("MassQuoteAcknowledgement")
    );
    assert!(!d42.contains(&&b"AF"[..]));
    // SecurityListRequest and SecurityList came with FIX 4.3.
    assert!(!d42.contains(&&b"x"[..]) && !d42.contains(&&b"y"[..]));
    assert_eq!(
        Dictionary::for_version(Fixt11).msg_name(b"y"),
        Some("SecurityList")
    );
    assert_eq!(
        Dictionary::for_version(Fix44).msg_name(b"AF"),
        Some("OrderMassStatusRequest")
    );
}

#[test]
fn names_and_types_are_known_per_version() {
    let d = Dictionary::for_version(Fix44);
    assert_eq!(d.field_name(11), Some("ClOrdID"));
    assert_eq!(d.field_type(52), Some(FieldType::UtcTimestamp));
    assert_eq!(d.field_type(96), Some(FieldType::Data(95)));
    assert_eq!(d.msg_name(b"D"), Some("NewOrderSingle"));
    assert_eq!(d.field_name(20), None);
    assert_eq!(
        Dictionary::for_version(Fix42).field_name(20),
        Some("ExecTransType")
    );
    assert_eq!(Dictionary::for_version(Fix42).msg_name(b"r"), None);
    assert_eq!(Dictionary::for_version(Fixt11).begin_string, Fixt11);
}

#[test]
fn rejection_displays_reason_and_tag() {
    let r = Rejection {
        reason: R::RequiredTagMissing,
        ref_tag: Some(55),
    };
    assert_eq!(r.to_string(), "Required tag missing (55)");
}

/// A two-set MassQuote as an options market maker sends it: the sets per underlying, two
/// quote entries in the first, one in the second.
fn mass_quote_body() -> Body {
    vec![
        (117, b"MQ1"),
        (537, b"1"),
        (301, b"2"),
        (296, b"2"),
        (302, b"1"),
        (311, b"BTC"),
        (304, b"2"),
        (295, b"2"),
        (299, b"E1"),
        (55, b"BTC-261225-100000-C"),
        (132, b"1250.5"),
        (133, b"1300"),
        (134, b"2"),
        (135, b"2.5"),
        (299, b"E2"),
        (55, b"BTC-261225-100000-P"),
        (132, b"800"),
        (134, b"1"),
        (302, b"2"),
        (304, b"1"),
        (295, b"1"),
        (299, b"E3"),
        (55, b"BTC-PERP"),
        (133, b"101000"),
        (135, b"0"),
    ]
}

#[test]
fn mass_quote_with_nested_sets_and_entries_validates() {
    for v in [Fix44, Fixt11] {
        let m = build(v, b"i", &mass_quote_body());
        assert_eq!(check(v, &m), Ok(()), "{v}");
    }
    // An entry whose count is off is a group count error, as for any group.
    let mut b = mass_quote_body();
    let at = b.iter().position(|&(t, v)| t == 295 && v == b"2").unwrap();
    b[at].1 = b"3";
    assert_eq!(
        check(Fix44, &build(Fix44, b"i", &b)),
        rej(R::IncorrectNumInGroupCount, 295)
    );
    // QuoteSets are required.
    let m = build(Fix44, b"i", &[(117, b"MQ1")]);
    assert_eq!(check(Fix44, &m), rej(R::RequiredTagMissing, 296));
}

#[test]
fn quote_cancel_and_acknowledgement_follow_the_version() {
    let cancel: Body = vec![(117, b"QC1"), (298, b"1"), (295, b"1"), (55, b"BTC-PERP")];
    assert_eq!(check(Fix44, &build(Fix44, b"Z", &cancel)), Ok(()));
    // QuoteID(117) is required in 4.4, optional in 5.0 SP2, which also has more cancel types.
    let no_id = without(cancel.clone(), 117);
    assert_eq!(
        check(Fix44, &build(Fix44, b"Z", &no_id)),
        rej(R::RequiredTagMissing, 117)
    );
    assert_eq!(check(Fixt11, &build(Fixt11, b"Z", &no_id)), Ok(()));
    let type5 = replace(no_id, 298, b"5");
    assert_eq!(check(Fixt11, &build(Fixt11, b"Z", &type5)), Ok(()));
    assert_eq!(
        check(Fix44, &build(Fix44, b"Z", &with(type5, &[(117, b"Q")]))),
        rej(R::ValueIsIncorrect, 298)
    );
    let ack: Body = vec![
        (117, b"MQ1"),
        (297, b"0"),
        (301, b"1"),
        (58, b"E2: price band"),
        (296, b"1"),
        (302, b"1"),
        (295, b"1"),
        (299, b"E2"),
        (55, b"BTC-261225-100000-P"),
        (368, b"8"),
    ];
    for v in [Fix44, Fixt11] {
        assert_eq!(check(v, &build(v, b"b", &ack)), Ok(()), "{v}");
    }
    // 16 (Active) came with FIX 5.0.
    let active = replace(ack, 297, b"16");
    assert_eq!(check(Fixt11, &build(Fixt11, b"b", &active)), Ok(()));
    assert_eq!(
        check(Fix44, &build(Fix44, b"b", &active)),
        rej(R::ValueIsIncorrect, 297)
    );
}

/// An OTO list as venues with FIX order lists take it: each order's fields in the client's
/// order, the triggering instructions (user-defined tags) inside the pending order, the
/// contingency and the list's client id after the group.
fn order_list(first: &[(u32, &'static [u8])]) -> Body {
    let mut b: Body = vec![(73, b"2")];
    b.extend_from_slice(first);
    b.extend_from_slice(&[
        (11, b"p1"),
        (55, b"BTC-PERP"),
        (54, b"2"),
        (38, b"1"),
        (40, b"1"),
        (25010, b"1"),
        (25011, b"3"),
        (25012, b"0"),
        (25013, b"1"),
        (1385, b"2"),
        (25014, b"L1"),
    ]);
    b
}

const WORKING: &[(u32, &[u8])] = &[
    (11, b"w1"),
    (55, b"BTC-PERP"),
    (54, b"1"),
    (38, b"1"),
    (40, b"2"),
    (44, b"100"),
    (59, b"1"),
];

#[test]
fn an_order_lists_orders_take_their_fields_in_any_order_once_each() {
    for v in [Fix44, Fixt11] {
        let ok = order_list(WORKING);
        assert_eq!(check(v, &build(v, b"E", &ok)), Ok(()), "{v:?}");
        // The order of the dictionary, too.
        let sorted: Vec<(u32, &[u8])> = {
            let mut w = WORKING.to_vec();
            w[1..].sort_by_key(|(t, _)| *t);
            w
        };
        assert_eq!(check(v, &build(v, b"E", &order_list(&sorted))), Ok(()));
        // Twice in one order is refused, as is an order without its side.
        let twice = [WORKING, &[(54, &b"1"[..])]].concat();
        assert_eq!(
            check(v, &build(v, b"E", &order_list(&twice))),
            rej(R::TagAppearsMoreThanOnce, 54)
        );
        let no_side: Vec<(u32, &[u8])> = WORKING.iter().copied().filter(|f| f.0 != 54).collect();
        assert_eq!(
            check(v, &build(v, b"E", &order_list(&no_side))),
            rej(R::RequiredTagMissing, 54)
        );
        // The count must match the orders.
        let three = replace(order_list(WORKING), 73, b"3");
        assert_eq!(
            check(v, &build(v, b"E", &three)),
            rej(R::IncorrectNumInGroupCount, 73)
        );
        // Without orders it is no list.
        assert_eq!(
            check(v, &build(v, b"E", &[(1385, b"1")])),
            rej(R::RequiredTagMissing, 73)
        );
        assert_eq!(
            check(v, &build(v, b"E", &replace(ok, 1385, b"9"))),
            rej(R::ValueIsIncorrect, 1385)
        );
    }
    // Other groups keep their order.
    let parties_swapped = vec![(453, &b"1"[..]), (448, b"P1"), (452, b"3"), (447, b"D")];
    let body = with(
        vec![
            (11, &b"c1"[..]),
            (55, b"BTC-PERP"),
            (54, b"1"),
            (60, TS),
            (38, b"1"),
            (40, b"1"),
        ],
        &parties_swapped,
    );
    assert_eq!(
        check(Fix44, &build(Fix44, b"D", &body)),
        rej(R::RepeatingGroupFieldsOutOfOrder, 447)
    );
}

#[test]
fn a_list_status_carries_each_orders_state() {
    let body: Body = vec![
        (66, b"17"),
        (429, b"4"),
        (82, b"1"),
        (431, b"3"),
        (83, b"1"),
        (1385, b"1"),
        (55, b"BTC-PERP"),
        (60, TS),
        (68, b"2"),
        (73, b"2"),
        (11, b"a"),
        (37, b"17"),
        (55, b"BTC-PERP"),
        (14, b"0"),
        (39, b"0"),
        (151, b"1"),
        (84, b"0"),
        (6, b"0"),
        (11, b"b"),
        (37, b"18"),
        (55, b"BTC-PERP"),
        (14, b"0"),
        (39, b"0"),
        (151, b"1"),
        (84, b"0"),
        (6, b"0"),
        (25014, b"L1"),
    ];
    for v in [Fix44, Fixt11] {
        assert_eq!(check(v, &build(v, b"N", &body)), Ok(()));
        assert_eq!(
            check(v, &build(v, b"N", &without(body.clone(), 431))),
            rej(R::RequiredTagMissing, 431)
        );
    }
    assert_eq!(
        check(Fix42, &build(Fix42, b"N", &body)),
        rej(R::InvalidMsgType, 35)
    );
}
