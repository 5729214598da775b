//! Whatever a client sends, the session answers with well-formed JSON and never panics.

use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// JSON-ish values biased towards what the session looks at.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"\"".to_owned()),
        "-?[0-9]{1,25}(\\.[0-9]{0,25})?([eE][-+]?[0-9]{1,3})?",
        "\"[A-Z0-9_.:/ -]{0,40}\"",
        Just("\"BTCUSDT\"".to_owned()),
        Just("\"LIMIT\"".to_owned()),
        Just("\"GTC\"".to_owned()),
        Just("\"52000.00\"".to_owned()),
        Just("1645423376582".to_owned()),
        Just(format!("\"{DOC_API_KEY}\"")),
        "\"(\\\\u[0-9a-fA-F]{4}|[^\"\\\\])*\"",
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((name(), inner), 0..4).prop_map(|v| {
                let members: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "symbol",
            "side",
            "type",
            "timeInForce",
            "price",
            "quantity",
            "quoteOrderQty",
            "stopPrice",
            "icebergQty",
            "goodTillDate",
            "trailingDelta",
            "strategyId",
            "strategyType",
            "listClientOrderId",
            "aboveType",
            "abovePrice",
            "aboveStopPrice",
            "aboveTimeInForce",
            "belowType",
            "belowPrice",
            "belowStopPrice",
            "belowTrailingDelta",
            "workingType",
            "workingSide",
            "workingPrice",
            "workingQuantity",
            "workingTimeInForce",
            "pendingType",
            "pendingSide",
            "pendingQuantity",
            "pendingPrice",
            "pendingStopPrice",
            "pendingAboveType",
            "pendingAbovePrice",
            "pendingBelowType",
            "pendingBelowStopPrice",
            "newClientOrderId",
            "newOrderRespType",
            "selfTradePreventionMode",
            "apiKey",
            "signature",
            "timestamp",
            "recvWindow",
            "returnRateLimits",
            "orderId",
            "origClientOrderId",
            "cancelReplaceMode",
            "cancelOrderId",
            "symbols",
            "symbolStatus",
            "omitZeroBalances",
            "computeCommissionRates",
            "startTime",
            "endTime",
            "fromId",
            "limit",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{0,12}",
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(Method::ALL.to_vec()).prop_map(|m| m.name().to_owned()),
        prop::sample::select(Method::ALL.to_vec()).prop_map(|m| format!("v3/{}", m.name())),
        "[a-zA-Z./0-9]{0,24}",
    ]
}

fn request_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![value(), Just("1".to_owned())],
        method(),
        prop::collection::vec((name(), value()), 0..10),
        any::<bool>(),
    )
        .prop_map(|(id, method, params, with_params)| {
            let members: Vec<String> = params
                .into_iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            if with_params {
                format!(
                    r#"{{"id":{id},"method":"{method}","params":{{{}}}}}"#,
                    members.join(",")
                )
            } else {
                format!(r#"{{"id":{id},"method":"{method}"}}"#)
            }
        })
}

fn check_answers(frames: &[String]) {
    for f in frames {
        let v: Value = serde_json::from_str(f).unwrap_or_else(|e| panic!("{e}: {f}"));
        let o = v.as_object().expect("an object");
        if !o.contains_key("event") {
            assert!(o.contains_key("id") && o.contains_key("status"), "{f}");
            assert!(o.contains_key("result") ^ o.contains_key("error"), "{f}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_gets_one_json_answer(text in any::<String>()) {
        let mut h = Harness::new();
        let frames = h.send_raw(&text);
        prop_assert_eq!(frames.len(), 1);
        check_answers(&frames);
    }

    #[test]
    fn arbitrary_requests_never_panic_and_get_well_formed_answers(
        texts in prop::collection::vec(request_text(), 1..8),
        logon in any::<bool>(),
    ) {
        let mut h = Harness::new();
        h.app.mode = Mode::Pending;
        if logon {
            ok(&h.logon());
        }
        for text in &texts {
            let frames = h.send_raw(text);
            prop_assert!(frames.len() <= 2, "{:?}", frames);
            check_answers(&frames);
        }
        // Whatever was left pending times out cleanly.
        h.now_ms += 60_000;
        let now = h.now();
        h.session.handle_timeout(now, &mut h.app);
        check_answers(&h.drain());
        prop_assert_eq!(h.session.pending_requests(), 0);
    }
}
