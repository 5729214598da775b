//! Order methods: parameter validation, defaults, symbol filters, answers and order limits.

use serde_json::{json, Value};

use super::*;

/// Places `params` (signed with the documented key) and returns the answer.
fn place(h: &mut Harness, params: &[(&'static str, Value)]) -> Value {
    h.signed_call("order.place", params)
}

#[test]
fn order_place_parameters_are_validated_with_the_dialects_codes() {
    let mut h = Harness::new();
    let base = limit_order();
    let market: Vec<(&'static str, Value)> = vec![
        ("symbol", "BTCUSDT".into()),
        ("side", "BUY".into()),
        ("type", "MARKET".into()),
        ("quantity", "0.01".into()),
    ];
    let maker = with(
        &with(&base, "type", Some("LIMIT_MAKER".into())),
        "timeInForce",
        None,
    );
    let stop = with(
        &with(
            &with(&market, "type", Some("STOP_LOSS".into())),
            "side",
            Some("SELL".into()),
        ),
        "stopPrice",
        Some("51000.00".into()),
    );
    let stop_limit = with(
        &with(&base, "type", Some("STOP_LOSS_LIMIT".into())),
        "stopPrice",
        Some("51000.00".into()),
    );
    let take_profit = with(&stop, "type", Some("TAKE_PROFIT".into()));
    let take_profit_limit = with(&stop_limit, "type", Some("TAKE_PROFIT_LIMIT".into()));
    type Case = (
        &'static str,
        Vec<(&'static str, Value)>,
        i64,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        ("missing symbol", with(&base, "symbol", None), -1102, Some("Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")),
        ("empty symbol", with(&base, "symbol", Some("".into())), -1102, None),
        ("null side", with(&base, "side", Some(Value::Null)), -1102, None),
        ("lower-case symbol", with(&base, "symbol", Some("btcusdt".into())), -1100, Some("Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,32}$'.")),
        ("unknown symbol", with(&base, "symbol", Some("DOGEUSDT".into())), -1121, Some("Invalid symbol.")),
        ("bad side", with(&base, "side", Some("SHORT".into())), -1117, Some("Invalid side.")),
        ("side not a string", with(&base, "side", Some(1.into())), -1117, None),
        ("bad type", with(&base, "type", Some("TRAILING_STOP_MARKET".into())), -1116, Some("Invalid orderType.")),
        ("TAKE_PROFIT without stopPrice", with(&take_profit, "stopPrice", None), -1102, Some("Param 'stopPrice' or 'trailingDelta' must be sent, but both were empty/null!")),
        ("TAKE_PROFIT with timeInForce", with(&take_profit, "timeInForce", Some("GTC".into())), -1114, Some("TimeInForce parameter sent when not required.")),
        ("TAKE_PROFIT with price", with(&take_profit, "price", Some("50000.00".into())), -1106, Some("Parameter 'price' sent when not required.")),
        ("TAKE_PROFIT_LIMIT without timeInForce", with(&take_profit_limit, "timeInForce", None), -1102, Some("Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")),
        ("TAKE_PROFIT_LIMIT without price", with(&take_profit_limit, "price", None), -1102, None),
        ("TAKE_PROFIT_LIMIT stopPrice off the tick", with(&take_profit_limit, "stopPrice", Some("51000.005".into())), -1013, Some("Filter failure: PRICE_FILTER")),
        ("STOP_LOSS without stopPrice", with(&stop, "stopPrice", None), -1102, Some("Param 'stopPrice' or 'trailingDelta' must be sent, but both were empty/null!")),
        ("STOP_LOSS with an empty stopPrice", with(&stop, "stopPrice", Some("".into())), -1102, None),
        ("STOP_LOSS with timeInForce", with(&stop, "timeInForce", Some("GTC".into())), -1114, Some("TimeInForce parameter sent when not required.")),
        ("STOP_LOSS with price", with(&stop, "price", Some("50000.00".into())), -1106, Some("Parameter 'price' sent when not required.")),
        ("LIMIT with trailingDelta", with(&base, "trailingDelta", Some(100.into())), -1106, Some("Parameter 'trailingDelta' sent when not required.")),
        ("MARKET with trailingDelta", with(&market, "trailingDelta", Some(100.into())), -1106, None),
        // The test symbol's TRAILING_DELTA: 10–2000 above (a buy stop-loss, a sell
        // take-profit), 20–1000 below (a sell stop-loss, a buy take-profit).
        ("trailingDelta below the filter", with(&stop, "trailingDelta", Some(19.into())), -1013, Some("Filter failure: TRAILING_DELTA")),
        ("trailingDelta above the filter", with(&stop, "trailingDelta", Some(1001.into())), -1013, Some("Filter failure: TRAILING_DELTA")),
        ("take-profit trailingDelta above the filter", with(&take_profit, "trailingDelta", Some(2001.into())), -1013, Some("Filter failure: TRAILING_DELTA")),
        ("trailingDelta not a number", with(&stop, "trailingDelta", Some("far".into())), -1100, None),
        ("negative trailingDelta", with(&stop, "trailingDelta", Some((-5).into())), -1100, None),
        ("empty trailingDelta", with(&stop, "trailingDelta", Some("".into())), -1105, Some("Parameter 'trailingDelta' was empty.")),
        ("trailingDelta overflow", with(&stop, "trailingDelta", Some(5_000_000_000i64.into())), -1108, Some("Parameter 'trailingDelta' overflowed.")),
        ("trailing stopPrice off the tick", with(&with(&stop, "trailingDelta", Some(100.into())), "stopPrice", Some("51000.005".into())), -1013, Some("Filter failure: PRICE_FILTER")),
        ("STOP_LOSS_LIMIT without timeInForce", with(&stop_limit, "timeInForce", None), -1102, Some("Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")),
        ("STOP_LOSS_LIMIT without price", with(&stop_limit, "price", None), -1102, None),
        ("stopPrice off the tick", with(&stop_limit, "stopPrice", Some("51000.005".into())), -1013, Some("Filter failure: PRICE_FILTER")),
        ("stopPrice too precise", with(&stop, "stopPrice", Some("51000.123456789".into())), -1111, Some("Parameter 'stopPrice' has too much precision.")),
        ("LIMIT with stopPrice", with(&base, "stopPrice", Some("51000.00".into())), -1106, Some("Parameter 'stopPrice' sent when not required.")),
        ("bad tif", with(&base, "timeInForce", Some("GTX".into())), -1115, Some("Invalid timeInForce.")),
        ("GTD without goodTillDate", with(&base, "timeInForce", Some("GTD".into())), -1102, Some("Mandatory parameter 'goodTillDate' was not sent, was empty/null, or malformed.")),
        ("GTC with goodTillDate", with(&base, "goodTillDate", Some(1_800_000_000_000i64.into())), -1106, Some("Parameter 'goodTillDate' sent when not required.")),
        ("MARKET with goodTillDate", with(&market, "goodTillDate", Some(1_800_000_000_000i64.into())), -1106, None),
        ("goodTillDate not a number", with(&with(&base, "timeInForce", Some("GTD".into())), "goodTillDate", Some("soon".into())), -1100, None),
        ("goodTillDate beyond 2262", with(&with(&base, "timeInForce", Some("GTD".into())), "goodTillDate", Some(9_300_000_000_000i64.into())), -1108, Some("Parameter 'goodTillDate' overflowed.")),
        ("LIMIT without timeInForce", with(&base, "timeInForce", None), -1102, Some("Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")),
        ("LIMIT without price", with(&base, "price", None), -1102, None),
        ("LIMIT with an empty price", with(&base, "price", Some("".into())), -1102, None),
        ("LIMIT without quantity", with(&base, "quantity", None), -1102, None),
        ("LIMIT with quoteOrderQty", with(&base, "quoteOrderQty", Some("10".into())), -1106, Some("Parameter 'quoteOrderQty' sent when not required.")),
        ("LIMIT_MAKER with timeInForce", with(&maker, "timeInForce", Some("GTC".into())), -1114, Some("TimeInForce parameter sent when not required.")),
        ("MARKET with timeInForce", with(&market, "timeInForce", Some("IOC".into())), -1114, None),
        ("MARKET with price", with(&market, "price", Some("1.00".into())), -1106, Some("Parameter 'price' sent when not required.")),
        ("MARKET without quantity", with(&market, "quantity", None), -1102, Some("Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")),
        ("MARKET with both quantities", with(&market, "quoteOrderQty", Some("10".into())), -1106, None),
        ("price not a decimal", with(&base, "price", Some("52,000".into())), -1100, Some("Illegal characters found in parameter 'price'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")),
        ("negative quantity", with(&base, "quantity", Some("-1".into())), -1100, None),
        ("price too precise", with(&base, "price", Some("52000.123456789".into())), -1111, Some("Parameter 'price' has too much precision.")),
        ("quantity too precise", with(&base, "quantity", Some("0.000000001".into())), -1111, None),
        ("price off the tick", with(&base, "price", Some("52000.005".into())), -1013, Some("Filter failure: PRICE_FILTER")),
        ("price above max", with(&base, "price", Some("1000000.01".into())), -1013, Some("Filter failure: PRICE_FILTER")),
        ("quantity off the step", with(&base, "quantity", Some("0.010001".into())), -1013, Some("Filter failure: LOT_SIZE")),
        ("quantity above max", with(&base, "quantity", Some("9000.00001".into())), -1013, Some("Filter failure: LOT_SIZE")),
        ("notional too small", with(&base, "price", Some("100.00".into())), -1013, Some("Filter failure: NOTIONAL")),
        ("client id too long", with(&base, "newClientOrderId", Some("a".repeat(37).into())), -1100, Some("Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")),
        ("client id with a space", with(&base, "newClientOrderId", Some("a b".into())), -1100, None),
        ("empty client id", with(&base, "newClientOrderId", Some("".into())), -1118, Some("New client order ID was empty.")),
        ("bad response type", with(&base, "newOrderRespType", Some("ALL".into())), -1130, Some("Data sent for parameter 'newOrderRespType' is not valid.")),
        ("bad STP mode", with(&base, "selfTradePreventionMode", Some("EXPIRE_ALL".into())), -1130, None),
        ("STP mode not allowed on the symbol", with(&base, "selfTradePreventionMode", Some("DECREMENT".into())), -1130, None),
        ("unknown parameter", with(&base, "pegPriceType", Some("PRIMARY_PEG".into())), -1104, Some("Not all sent parameters were read; read '9' parameter(s) but was sent '10'.")),
        ("strategyType below 1000000", with(&base, "strategyType", Some(999_999.into())), -1134, Some("strategyType was less than 1000000.")),
        ("strategyType overflow", with(&base, "strategyType", Some(3_000_000_000i64.into())), -1108, Some("Parameter 'strategyType' overflowed.")),
        ("strategyId not a number", with(&base, "strategyId", Some("alpha".into())), -1100, None),
        ("negative strategyId", with(&base, "strategyId", Some((-1).into())), -1100, None),
        ("MARKET with icebergQty", with(&market, "icebergQty", Some("0.001".into())), -1106, Some("Parameter 'icebergQty' sent when not required.")),
        ("STOP_LOSS with icebergQty", with(&stop, "icebergQty", Some("0.001".into())), -1106, None),
        ("IOC iceberg", with(&with(&base, "icebergQty", Some("0.005".into())), "timeInForce", Some("IOC".into())), -2010, Some("Iceberg orders must be GTC.")),
        ("icebergQty too precise", with(&base, "icebergQty", Some("0.000000001".into())), -1111, Some("Parameter 'icebergQty' has too much precision.")),
        ("icebergQty off the step", with(&base, "icebergQty", Some("0.000015".into())), -1013, Some("Filter failure: LOT_SIZE")),
        ("icebergQty in too many parts", with(&base, "icebergQty", Some("0.00099".into())), -1013, Some("Filter failure: ICEBERG_PARTS")),
        ("empty icebergQty", with(&base, "icebergQty", Some("".into())), -1102, None),
        ("halted symbol", with(&base, "symbol", Some("ETHUSDT".into())), -2010, Some("Market is closed.")),
        ("quote quantity not allowed", with(&with(&market, "quantity", None), "quoteOrderQty", Some("10".into())), -2010, None),
        ("quantity overflow", with(&base, "quantity", Some("99999999999999999999.99999999999999999999".into())), -1108, Some("Parameter 'quantity' overflowed.")),
    ];
    for (what, params, expected, msg) in cases {
        let v = place(&mut h, &params);
        assert_eq!(code(&v), expected, "{what}: {v}");
        assert_eq!(v["status"], 400, "{what}");
        if let Some(msg) = msg {
            assert_eq!(v["error"]["msg"], msg, "{what}");
        }
    }
    // A number with an exponent is not a decimal of the dialect (raw text: Value would
    // rewrite it).
    let v = h.send(
        r#"{"id":1,"method":"order.place","params":{"symbol":"BTCUSDT","side":"SELL","type":"LIMIT","timeInForce":"GTC","quantity":1e-2,"price":"52000.00"}}"#,
    );
    assert_eq!(code(&v), -1100);
    assert!(
        h.app.placed.is_empty(),
        "nothing invalid reached the application"
    );
}

#[test]
fn valid_orders_reach_the_application_with_the_dialects_defaults() {
    let mut h = Harness::new();
    // LIMIT defaults to FULL: fills included.
    let v = place(&mut h, &limit_order());
    let r = ok(&v);
    assert_eq!(r["fills"][0]["price"], "52000.00");
    assert_eq!(r["status"], "NEW");
    assert_eq!(r["workingTime"], 1_655_716_096_505_i64);
    assert_eq!(h.app.placed[0].2.resp_type, RespType::Full);
    // LIMIT_MAKER defaults to ACK.
    let maker = with(
        &with(&limit_order(), "type", Some("LIMIT_MAKER".into())),
        "timeInForce",
        None,
    );
    let v = place(&mut h, &maker);
    assert_eq!(
        ok(&v).as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "clientOrderId",
            "orderId",
            "orderListId",
            "symbol",
            "transactTime"
        ]
    );
    assert_eq!(h.app.placed[1].2.time_in_force, None);
    // STOP_LOSS_LIMIT: the stop price reaches the application; ACK by default.
    let stop_limit = with(
        &with(&limit_order(), "type", Some("STOP_LOSS_LIMIT".into())),
        "stopPrice",
        Some("52500.00".into()),
    );
    let v = place(&mut h, &stop_limit);
    assert!(ok(&v).get("status").is_none(), "{v}");
    let placed = &h.app.placed.last().unwrap().2;
    assert_eq!(placed.order_type, OrderType::StopLossLimit);
    assert_eq!(placed.stop_price, Some(d("52500.00")));
    assert_eq!(placed.price, Some(d("52000.00")));
    assert_eq!(placed.resp_type, RespType::Ack);
    h.app.placed.pop();
    // TAKE_PROFIT: a market order once triggered, by quantity, ACK by default.
    let take_profit = [
        ("symbol", "BTCUSDT".into()),
        ("side", "SELL".into()),
        ("type", "TAKE_PROFIT".into()),
        ("quantity", "0.01".into()),
        ("stopPrice", "53000.00".into()),
    ];
    let v = place(&mut h, &take_profit);
    assert!(ok(&v).get("status").is_none(), "{v}");
    let placed = &h.app.placed.last().unwrap().2;
    assert_eq!(placed.order_type, OrderType::TakeProfit);
    assert_eq!(placed.stop_price, Some(d("53000.00")));
    assert_eq!((placed.price, placed.time_in_force), (None, None));
    assert_eq!(placed.resp_type, RespType::Ack);
    h.app.placed.pop();
    // Strategy tags reach the application and come back in the answer.
    let tagged = with(
        &with(&limit_order(), "strategyId", Some(42.into())),
        "strategyType",
        Some(1_000_000.into()),
    );
    let v = place(&mut h, &tagged);
    assert_eq!(
        (&ok(&v)["strategyId"], &ok(&v)["strategyType"]),
        (&Value::from(42), &Value::from(1_000_000)),
        "{v}"
    );
    assert_eq!(
        h.app.placed.last().unwrap().2.strategy,
        OrderStrategy {
            id: Some(42),
            kind: Some(1_000_000)
        }
    );
    h.app.placed.pop();
    // A trailing take-profit: its trailingDelta reaches the application, with or without the
    // stopPrice (its activation price), and the answer shows it.
    let trailing = with(&take_profit, "trailingDelta", Some(2000.into()));
    for (params, stop_price) in [
        (trailing.clone(), Some(d("53000.00"))),
        (with(&trailing, "stopPrice", None), None),
    ] {
        let v = place(
            &mut h,
            &with(&params, "newOrderRespType", Some("RESULT".into())),
        );
        assert_eq!(ok(&v)["trailingDelta"], 2000, "{v}");
        let placed = &h.app.placed.last().unwrap().2;
        assert_eq!(
            (placed.trailing_delta, placed.stop_price),
            (Some(2000), stop_price)
        );
        h.app.placed.pop();
    }
    // An iceberg LIMIT: its icebergQty reaches the application (0.001 of 0.01: 10 parts, the
    // symbol's ICEBERG_PARTS limit).
    let v = place(
        &mut h,
        &with(&limit_order(), "icebergQty", Some("0.00100".into())),
    );
    assert_eq!(ok(&v)["status"], "NEW", "{v}");
    assert_eq!(
        h.app.placed.last().unwrap().2.iceberg_qty,
        Some(d("0.00100"))
    );
    h.app.placed.pop();
    // A GTD LIMIT (the futures dialect's time in force): its goodTillDate reaches the
    // application, and a RESULT answer shows it; icebergs may be GTD.
    let gtd = with(
        &with(
            &with(&limit_order(), "timeInForce", Some("GTD".into())),
            "goodTillDate",
            Some(1_800_000_000_000i64.into()),
        ),
        "newOrderRespType",
        Some("RESULT".into()),
    );
    let v = place(&mut h, &with(&gtd, "icebergQty", Some("0.00100".into())));
    assert_eq!(ok(&v)["timeInForce"], "GTD", "{v}");
    assert_eq!(ok(&v)["goodTillDate"], 1_800_000_000_000i64, "{v}");
    let placed = &h.app.placed.last().unwrap().2;
    assert_eq!(
        (placed.time_in_force, placed.good_till_date),
        (Some(TimeInForce::Gtd), Some(1_800_000_000_000))
    );
    h.app.placed.pop();
    // A RESULT answer shows its trigger price (the dialect's conditional field).
    let v = place(
        &mut h,
        &with(&take_profit, "newOrderRespType", Some("RESULT".into())),
    );
    assert_eq!(ok(&v)["stopPrice"], "53000.00", "{v}");
    assert_eq!(ok(&v)["type"], "TAKE_PROFIT", "{v}");
    h.app.placed.pop();
    // RESULT: the order's state without fills.
    let v = place(
        &mut h,
        &with(&limit_order(), "newOrderRespType", Some("RESULT".into())),
    );
    assert!(ok(&v).get("fills").is_none());
    assert!(
        ok(&v).get("stopPrice").is_none(),
        "only trigger orders show one: {v}"
    );
    assert!(
        ok(&v).get("goodTillDate").is_none(),
        "only GTD orders show one: {v}"
    );
    assert_eq!(ok(&v)["selfTradePreventionMode"], "NONE");
    // MARKET by quantity (a JSON number is read exactly, not as a float), with an STP mode
    // and a client id.
    let v = place(
        &mut h,
        &[
            ("symbol", "BTCUSDT".into()),
            ("side", "BUY".into()),
            ("type", "MARKET".into()),
            ("quantity", json!(0.015)),
            ("selfTradePreventionMode", "EXPIRE_MAKER".into()),
            ("newClientOrderId", "x-AB:12/3.4_5-6".into()),
        ],
    );
    assert_eq!(ok(&v)["clientOrderId"], "x-AB:12/3.4_5-6");
    let order = &h.app.placed[3].2;
    assert_eq!(order.quantity, Some(d("0.015")));
    assert_eq!(order.stp, Some(StpMode::ExpireMaker));
    assert_eq!(order.resp_type, RespType::Full);
    // MARKET by quote quantity where the symbol allows it.
    ok(&place(
        &mut h,
        &[
            ("symbol", "BTC-261225-100000-C".into()),
            ("side", "SELL".into()),
            ("type", "MARKET".into()),
            ("quoteOrderQty", "250.5".into()),
        ],
    ));
    assert_eq!(h.app.placed[4].2.quote_order_qty, Some(d("250.5")));
    assert_eq!(h.app.placed[4].2.quantity, None);
    // The application's refusal goes to the client as it is.
    let v = place(
        &mut h,
        &with(&limit_order(), "newClientOrderId", Some("reject-me".into())),
    );
    assert_eq!(code(&v), -2010);
    assert_eq!(
        v["error"]["msg"],
        "Account has insufficient balance for requested action."
    );
}

#[test]
fn order_test_validates_without_placing() {
    let mut h = Harness::new();
    assert_eq!(ok(&h.signed_call("order.test", &limit_order())), &json!({}));
    assert_eq!(h.app.tested.len(), 1);
    assert!(h.app.placed.is_empty());
    assert_eq!(
        code(&h.signed_call(
            "order.test",
            &with(&limit_order(), "price", Some("1.001".into()))
        )),
        -1013
    );
    // With the rates (see commission_rates_are_answered_for_a_symbol_and_for_a_test_order).
    ok(&h.signed_call(
        "order.test",
        &with(&limit_order(), "computeCommissionRates", Some(true.into())),
    ));
    ok(&h.signed_call(
        "order.test",
        &with(&limit_order(), "computeCommissionRates", Some(false.into())),
    ));
    // order.test counts no order.
    let v = h.signed_call::<&str>("account.rateLimits.orders", &[]);
    assert_eq!(ok(&v)[0]["count"], 0);
}

#[test]
fn cancels_and_queries_name_the_order_by_id_or_client_id() {
    let mut h = Harness::new();
    let v = h.signed_call(
        "order.cancel",
        &[
            ("symbol", "BTCUSDT".into()),
            ("orderId", 12_569_099_453_u64.into()),
        ],
    );
    assert_eq!(
        ok(&v),
        &json!({"symbol":"BTCUSDT","origClientOrderId":"c1","orderId":5,"orderListId":-1,
                "clientOrderId":"c2","transactTime":1,"price":"1.00","origQty":"1","executedQty":"0",
                "origQuoteOrderQty":"0","cummulativeQuoteQty":"0","status":"CANCELED",
                "timeInForce":"GTC","type":"LIMIT","side":"BUY","selfTradePreventionMode":"NONE"})
    );
    ok(&h.signed_call(
        "order.cancel",
        &[
            ("symbol", "BTCUSDT".into()),
            ("origClientOrderId", "my:order/1".into()),
            ("newClientOrderId", "renamed".into()),
            ("cancelRestrictions", "ONLY_NEW".into()),
        ],
    ));
    assert_eq!(
        h.app.cancels,
        [
            CancelRequest {
                target: OrderRef {
                    symbol: "BTCUSDT".into(),
                    order_id: SafeId::new(12_569_099_453),
                    orig_client_order_id: None,
                },
                new_client_order_id: None,
                restrictions: None,
            },
            CancelRequest {
                target: OrderRef {
                    symbol: "BTCUSDT".into(),
                    order_id: None,
                    orig_client_order_id: Some("my:order/1".into()),
                },
                new_client_order_id: Some("renamed".into()),
                restrictions: Some(CancelRestrictions::OnlyNew),
            },
        ]
    );
    let err = |h: &mut Harness, method: &str, p: &[(&str, Value)]| code(&h.signed_call(method, p));
    let v = h.signed_call("order.cancel", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(
        v["error"]["msg"],
        "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!"
    );
    assert_eq!(
        err(
            &mut h,
            "order.cancel",
            &[("symbol", "BTCUSDT".into()), ("orderId", "12x".into())]
        ),
        -1100
    );
    // Ids stay within 2^53 - 1.
    assert_eq!(
        err(
            &mut h,
            "order.cancel",
            &[
                ("symbol", "BTCUSDT".into()),
                ("orderId", 9_007_199_254_740_992_u64.into())
            ]
        ),
        -1108
    );
    ok(&h.signed_call(
        "order.cancel",
        &[
            ("symbol", "BTCUSDT".into()),
            ("orderId", 9_007_199_254_740_991_u64.into()),
        ],
    ));
    assert_eq!(
        err(
            &mut h,
            "order.cancel",
            &[
                ("symbol", "BTCUSDT".into()),
                ("origClientOrderId", "".into())
            ]
        ),
        -1119
    );
    assert_eq!(
        err(
            &mut h,
            "order.cancel",
            &[
                ("symbol", "BTCUSDT".into()),
                ("orderId", 1.into()),
                ("cancelRestrictions", "ONLY_OLD".into())
            ]
        ),
        -1145
    );
    assert_eq!(
        err(
            &mut h,
            "order.cancel",
            &[("symbol", "NOPE".into()), ("orderId", 1.into())]
        ),
        -1121
    );
    // order.status: the application's -2013 goes through.
    assert_eq!(
        err(
            &mut h,
            "order.status",
            &[("symbol", "BTCUSDT".into()), ("orderId", 3.into())]
        ),
        -2013
    );
    // openOrders: with or without a symbol (weights 6 and 80), and cancelAll.
    let v = h.signed_call("openOrders.status", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(ok(&v), &json!([]));
    let before = v["rateLimits"][0]["count"].as_i64().unwrap();
    let v = h.signed_call::<&str>("openOrders.status", &[]);
    assert_eq!(v["rateLimits"][0]["count"].as_i64().unwrap(), before + 80);
    assert_eq!(h.app.queries[1..], ["open Some(\"BTCUSDT\")", "open None"]);
    let v = h.signed_call(
        "openOrders.cancelAll",
        &[("symbol", Value::from("BTCUSDT"))],
    );
    assert_eq!(ok(&v).as_array().unwrap().len(), 2);
    assert_eq!(err(&mut h, "openOrders.cancelAll", &[]), -1102);
    // account.status.
    let v = h.signed_call("account.status", &[("omitZeroBalances", Value::from(true))]);
    let a = ok(&v);
    assert_eq!(a["makerCommission"], 15);
    assert_eq!(
        a["balances"][0],
        json!({"asset":"USDT","free":"1021.21000000","locked":"0.00000000"})
    );
    assert_eq!(a["uid"], 354_937_868);
    assert_eq!(h.app.queries.last().unwrap(), "account ACC1 true");
    // account.position, also by the futures dialect's name: weight 5, one-way positions.
    let v = h.signed_call::<&str>("account.position", &[]);
    let before = v["rateLimits"][0]["count"].as_i64().unwrap();
    assert_eq!(
        ok(&v),
        &json!([
            {"symbol": "BTCUSDT", "positionSide": "BOTH", "positionAmt": "-0.500",
             "entryPrice": "29000.00", "breakEvenPrice": "29000.00",
             "markPrice": "30000.00", "notional": "-15000.00000"},
            {"symbol": "ETHUSDT", "positionSide": "BOTH", "positionAmt": "2",
             "entryPrice": "1800.5", "breakEvenPrice": "1800.5"}
        ])
    );
    let v = h.signed_call("v2/account.position", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(v["rateLimits"][0]["count"].as_i64().unwrap(), before + 5);
    assert_eq!(
        h.app.queries[h.app.queries.len() - 2..],
        ["positions ACC1 None", "positions ACC1 Some(\"BTCUSDT\")"]
    );
    assert_eq!(
        err(&mut h, "account.position", &[("symbol", "NOPE".into())]),
        -1121
    );
    assert_eq!(
        err(&mut h, "v2/order.place", &[("symbol", "BTCUSDT".into())]),
        -1020,
        "only account.position takes the v2 prefix"
    );
    // depth: the dialect's shape and weights by limit (default 100, at most 5000).
    let v = h.signed_call("depth", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(
        ok(&v),
        &json!({"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]],
                "asks": [["4.00000200", "12.00000000"], ["4.00000300", "7.50000000"]]})
    );
    let mut before = v["rateLimits"][0]["count"].as_i64().unwrap();
    for (limit, weight) in [(100, 5), (101, 25), (500, 25), (1000, 50), (5000, 250)] {
        let v = h.signed_call(
            "depth",
            &[
                ("symbol", Value::from("BTCUSDT")),
                ("limit", Value::from(limit)),
            ],
        );
        let count = v["rateLimits"][0]["count"].as_i64().unwrap();
        assert_eq!(count - before, weight, "limit {limit}");
        before = count;
    }
    assert_eq!(
        h.app.queries[h.app.queries.len() - 3..],
        [
            "depth ACC1 BTCUSDT 500",
            "depth ACC1 BTCUSDT 1000",
            "depth ACC1 BTCUSDT 5000"
        ]
    );
    for bad in [0, 5001] {
        let v = h.signed_call(
            "depth",
            &[
                ("symbol", Value::from("BTCUSDT")),
                ("limit", Value::from(bad)),
            ],
        );
        assert_eq!(code(&v), -1130, "{v}");
    }
    assert_eq!(err(&mut h, "depth", &[("symbol", "NOPE".into())]), -1121);
    assert_eq!(err(&mut h, "depth", &[]), -1102);
    // ticker.book: one symbol, weight 2.
    let v = h.signed_call("ticker.book", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(
        ok(&v),
        &json!({"symbol": "BTCUSDT", "bidPrice": "4.00000000", "bidQty": "431.00000000",
                "askPrice": "4.00000200", "askQty": "9.00000000"})
    );
    let before = v["rateLimits"][0]["count"].as_i64().unwrap();
    let v = h.signed_call("ticker.book", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(v["rateLimits"][0]["count"].as_i64().unwrap() - before, 2);
    assert_eq!(h.app.queries.last().unwrap(), "ticker ACC1 BTCUSDT");
    // ticker.price: one symbol, weight 2.
    let v = h.signed_call("ticker.price", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(ok(&v), &json!({"symbol": "BTCUSDT", "price": "4.00000100"}));
    let before = v["rateLimits"][0]["count"].as_i64().unwrap();
    let v = h.signed_call("ticker.price", &[("symbol", Value::from("BTCUSDT"))]);
    assert_eq!(v["rateLimits"][0]["count"].as_i64().unwrap() - before, 2);
    assert_eq!(err(&mut h, "ticker.price", &[]), -1102);
    assert_eq!(err(&mut h, "ticker.book", &[]), -1102);
    assert_eq!(
        err(&mut h, "ticker.book", &[("symbol", "NOPE".into())]),
        -1121
    );
}

#[test]
fn history_requests_are_read_with_the_dialects_rules() {
    let mut h = Harness::new();
    let err = |h: &mut Harness, method: &str, p: &[(&str, Value)]| code(&h.signed_call(method, p));
    let btc = || ("symbol", Value::from("BTCUSDT"));
    // allOrders: weight 20, defaults, every parameter passed on.
    let v = h.signed_call("allOrders", &[btc()]);
    assert_eq!(ok(&v), &json!([]));
    let before = v["rateLimits"][0]["count"].as_i64().unwrap();
    let v = h.signed_call(
        "allOrders",
        &[
            btc(),
            ("orderId", 7.into()),
            ("startTime", 1_000.into()),
            ("endTime", 2_000.into()),
            ("limit", 1000.into()),
        ],
    );
    assert_eq!(v["rateLimits"][0]["count"].as_i64().unwrap(), before + 20);
    assert_eq!(
        h.app.history,
        [
            HistoryQuery {
                symbol: "BTCUSDT".into(),
                order_id: None,
                from_id: None,
                start_time: None,
                end_time: None,
                limit: 500,
            },
            HistoryQuery {
                symbol: "BTCUSDT".into(),
                order_id: Some(7),
                from_id: None,
                start_time: Some(1_000),
                end_time: Some(2_000),
                limit: 1000,
            },
        ]
    );
    // myTrades renders the dialect's fields.
    let v = h.signed_call(
        "myTrades",
        &[btc(), ("fromId", 5.into()), ("limit", 1.into())],
    );
    assert_eq!(
        ok(&v),
        &json!([{"symbol":"BTCUSDT","id":28457,"orderId":100234,"orderListId":-1,
            "price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",
            "commission":"0.00000000","commissionAsset":"USD","time":1499865549590u64,
            "isBuyer":true,"isMaker":false,"isBestMatch":true}])
    );
    assert_eq!(h.app.history[2].from_id, Some(5));
    assert_eq!(h.app.history[2].limit, 1);
    let n = h.app.history.len();
    // Refused before the application: no symbol, an unknown one, a bad limit, fromId with a
    // time window, a window over 24 hours or backwards, fromId on allOrders.
    assert_eq!(err(&mut h, "allOrders", &[]), -1102);
    assert_eq!(err(&mut h, "myTrades", &[("symbol", "NOPE".into())]), -1121);
    assert_eq!(
        err(&mut h, "allOrders", &[btc(), ("limit", 0.into())]),
        -1130
    );
    assert_eq!(
        err(&mut h, "allOrders", &[btc(), ("limit", 1001.into())]),
        -1130
    );
    assert_eq!(
        err(
            &mut h,
            "myTrades",
            &[btc(), ("fromId", 1.into()), ("startTime", 1.into())]
        ),
        -1128
    );
    assert_eq!(
        err(
            &mut h,
            "myTrades",
            &[
                btc(),
                ("startTime", 0.into()),
                ("endTime", 86_400_001.into())
            ]
        ),
        -1127
    );
    assert_eq!(
        err(
            &mut h,
            "allOrders",
            &[btc(), ("startTime", 5.into()), ("endTime", 4.into())]
        ),
        -1130
    );
    assert_eq!(
        err(&mut h, "allOrders", &[btc(), ("fromId", 1.into())]),
        -1104
    );
    assert_eq!(h.app.history.len(), n);
}

#[test]
fn amend_keep_priority_is_read_with_the_dialects_rules() {
    let mut h = Harness::new();
    let v = h.signed_call(
        "order.amend.keepPriority",
        &[
            ("symbol", "BTCUSDT".into()),
            ("origClientOrderId", "c1".into()),
            ("newQty", "0.5".into()),
        ],
    );
    assert_eq!(
        ok(&v),
        &json!({"transactTime":7,"executionId":16,"amendedOrder":{
            "symbol":"BTCUSDT","orderId":5,"orderListId":-1,"origClientOrderId":"c1",
            "clientOrderId":"c2","price":"1.00","qty":"0.5","executedQty":"0",
            "preventedQty":"0.00000000","quoteOrderQty":"0","cumulativeQuoteQty":"0",
            "status":"NEW","timeInForce":"GTC","type":"LIMIT","side":"BUY","workingTime":1,
            "selfTradePreventionMode":"NONE"}})
    );
    assert_eq!(v["rateLimits"][0]["count"], 4, "weight 4");
    ok(&h.signed_call(
        "order.amend.keepPriority",
        &[
            ("symbol", "BTCUSDT".into()),
            ("orderId", 12u64.into()),
            ("newClientOrderId", "kept".into()),
            ("newQty", "1.25".into()),
        ],
    ));
    assert_eq!(
        h.app.amends,
        [
            AmendRequest {
                target: OrderRef {
                    symbol: "BTCUSDT".into(),
                    order_id: None,
                    orig_client_order_id: Some("c1".into()),
                },
                new_client_order_id: None,
                new_qty: d("0.5"),
            },
            AmendRequest {
                target: OrderRef {
                    symbol: "BTCUSDT".into(),
                    order_id: SafeId::new(12),
                    orig_client_order_id: None,
                },
                new_client_order_id: Some("kept".into()),
                new_qty: d("1.25"),
            },
        ]
    );
    let err =
        |h: &mut Harness, p: &[(&str, Value)]| code(&h.signed_call("order.amend.keepPriority", p));
    let sym = || ("symbol", Value::from("BTCUSDT"));
    // No order named, no newQty, a malformed or zero one, a LOT_SIZE failure, an unknown
    // symbol, an unknown parameter.
    assert_eq!(err(&mut h, &[sym(), ("newQty", "1".into())]), -1102);
    assert_eq!(err(&mut h, &[sym(), ("orderId", 1u64.into())]), -1102);
    assert_eq!(
        err(
            &mut h,
            &[sym(), ("orderId", 1u64.into()), ("newQty", "1x".into())]
        ),
        -1100
    );
    assert_eq!(
        err(
            &mut h,
            &[sym(), ("orderId", 1u64.into()), ("newQty", "0".into())]
        ),
        -2038
    );
    assert_eq!(
        err(
            &mut h,
            &[
                sym(),
                ("orderId", 1u64.into()),
                ("newQty", "0.000001".into())
            ]
        ),
        -1013
    );
    assert_eq!(
        err(
            &mut h,
            &[
                ("symbol", "NOPEUSDT".into()),
                ("orderId", 1u64.into()),
                ("newQty", "1".into())
            ]
        ),
        -1121
    );
    assert_eq!(
        err(
            &mut h,
            &[
                sym(),
                ("orderId", 1u64.into()),
                ("newQty", "1".into()),
                ("price", "1".into())
            ]
        ),
        -1104
    );
    assert_eq!(
        h.app.amends.len(),
        2,
        "refused requests never reach the application"
    );
    // A symbol that does not allow amends says so in exchangeInfo and refuses them.
    let v = h.call("exchangeInfo", &[("symbol", "BTCUSDT".into())]);
    assert_eq!(ok(&v)["symbols"][0]["allowAmend"], true);
    let mut symbols: Vec<SymbolInfo> = symbol_table().iter().cloned().collect();
    symbols[0].amend_allowed = false;
    h.app.symbols = Arc::new(SymbolTable::new(symbols));
    let v = h.call("exchangeInfo", &[("symbol", "BTCUSDT".into())]);
    assert_eq!(ok(&v)["symbols"][0]["allowAmend"], false);
    assert_eq!(
        err(
            &mut h,
            &[sym(), ("orderId", 1u64.into()), ("newQty", "1".into())]
        ),
        -2038
    );
    assert_eq!(h.app.amends.len(), 2);
}

#[test]
fn cancel_replace_answers_200_409_or_400_with_the_report() {
    let mut h = Harness::new();
    let params = with(
        &with(
            &limit_order(),
            "cancelReplaceMode",
            Some("STOP_ON_FAILURE".into()),
        ),
        "cancelOrderId",
        Some(5.into()),
    );
    let placed = |h: &Harness| {
        let order = h.app.replaces.last().unwrap().order.clone();
        order_result(&order, 6)
    };
    // Both succeed.
    h.app.replace = Some(CancelReplaceOutcome {
        cancel: Ok(cancel_result("BTCUSDT")),
        new_order: NewOrderOutcome::NotAttempted,
    });
    // (The fake answers with whatever is set; set the full success after the first request
    // told us the order.)
    h.signed_call("order.cancelReplace", &params);
    let request = h.app.replaces[0].clone();
    assert_eq!(request.mode, CancelReplaceMode::StopOnFailure);
    assert_eq!(request.cancel.target.order_id, SafeId::new(5));
    assert_eq!(request.order.price, Some(d("52000.00")));
    assert_eq!(
        request.rate_limit_exceeded_mode,
        RateLimitExceededMode::DoNothing
    );
    h.app.replace = Some(CancelReplaceOutcome {
        cancel: Ok(cancel_result("BTCUSDT")),
        new_order: NewOrderOutcome::Success(placed(&h)),
    });
    let v = h.signed_call("order.cancelReplace", &params);
    let r = ok(&v);
    assert_eq!(
        (r["cancelResult"].as_str(), r["newOrderResult"].as_str()),
        (Some("SUCCESS"), Some("SUCCESS"))
    );
    assert_eq!(r["cancelResponse"]["status"], "CANCELED");
    assert_eq!(r["newOrderResponse"]["orderId"], 6);
    assert_eq!(
        v["rateLimits"][0]["count"], 2,
        "each cancel-replace counts as an order"
    );
    // The cancel fails; the new order is placed: 409 -2021.
    h.app.replace = Some(CancelReplaceOutcome {
        cancel: Err(WsError::cancel_rejected("Unknown order sent.")),
        new_order: NewOrderOutcome::Success(placed(&h)),
    });
    let v = h.signed_call("order.cancelReplace", &params);
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(409), -2021));
    assert_eq!(v["error"]["msg"], "Order cancel-replace partially failed.");
    let data = &v["error"]["data"];
    assert_eq!(data["cancelResult"], "FAILURE");
    assert_eq!(
        data["cancelResponse"],
        json!({"code":-2011,"msg":"Unknown order sent."})
    );
    assert_eq!(data["newOrderResult"], "SUCCESS");
    // STOP_ON_FAILURE: not attempted, 400 -2022.
    h.app.replace = Some(CancelReplaceOutcome {
        cancel: Err(WsError::cancel_rejected("Unknown order sent.")),
        new_order: NewOrderOutcome::NotAttempted,
    });
    let v = h.signed_call("order.cancelReplace", &params);
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(400), -2022));
    assert_eq!(v["error"]["data"]["newOrderResult"], "NOT_ATTEMPTED");
    assert_eq!(v["error"]["data"]["newOrderResponse"], Value::Null);
    // Both fail: 400 -2022 with both reasons.
    h.app.replace = Some(CancelReplaceOutcome {
        cancel: Err(WsError::cancel_rejected("Unknown order sent.")),
        new_order: NewOrderOutcome::Failure(WsError::order_rejected(
            "Order would immediately match and take.",
        )),
    });
    let v = h.signed_call("order.cancelReplace", &params);
    assert_eq!(code(&v), -2022);
    assert_eq!(
        v["error"]["data"]["newOrderResponse"],
        json!({"code":-2010,"msg":"Order would immediately match and take."})
    );
    // Parameters of the cancel half.
    let err = |h: &mut Harness, p: &[(&'static str, Value)]| {
        code(&h.signed_call("order.cancelReplace", p))
    };
    assert_eq!(
        err(&mut h, &with(&params, "cancelReplaceMode", None)),
        -1102
    );
    assert_eq!(
        err(
            &mut h,
            &with(&params, "cancelReplaceMode", Some("MAYBE".into()))
        ),
        -1130
    );
    assert_eq!(err(&mut h, &with(&params, "cancelOrderId", None)), -1102);
    assert_eq!(
        err(
            &mut h,
            &with(&params, "orderRateLimitExceededMode", Some("PANIC".into()))
        ),
        -1130
    );
}

#[test]
fn the_accounts_order_rate_limits_are_enforced_and_reported() {
    let mut h = Harness::with(
        WsSessionConfig::default(),
        RateLimitConfig {
            orders_per_10s: 2,
            ..RateLimitConfig::default()
        },
    );
    ok(&place(&mut h, &limit_order()));
    ok(&place(&mut h, &limit_order()));
    let v = place(&mut h, &limit_order());
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(429), -1015));
    assert_eq!(
        v["error"]["msg"],
        "Too many new orders; current limit is 2 orders per 10 SECOND."
    );
    let window_end = (h.now_ms / 10_000 + 1) * 10_000;
    assert_eq!(v["error"]["data"]["retryAfter"], window_end);
    assert_eq!(
        v["rateLimits"][0],
        json!({"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":2,"count":2})
    );
    assert_eq!(h.app.placed.len(), 2);
    let v = h.signed_call::<&str>("account.rateLimits.orders", &[]);
    assert_eq!(
        ok(&v),
        &json!([
            {"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":2,"count":2},
            {"rateLimitType":"ORDERS","interval":"DAY","intervalNum":1,"limit":160000,"count":2}
        ])
    );
    // The next window takes orders again.
    h.now_ms = window_end;
    ok(&place(&mut h, &limit_order()));
}

/// A sell OCO: a LIMIT_MAKER above the market, a STOP_LOSS_LIMIT below.
fn sell_oco() -> Vec<(&'static str, Value)> {
    vec![
        ("symbol", "BTCUSDT".into()),
        ("side", "SELL".into()),
        ("quantity", "0.01".into()),
        ("aboveType", "LIMIT_MAKER".into()),
        ("abovePrice", "53000.00".into()),
        ("belowType", "STOP_LOSS_LIMIT".into()),
        ("belowStopPrice", "51000.00".into()),
        ("belowPrice", "50900.00".into()),
        ("belowTimeInForce", "GTC".into()),
    ]
}

#[test]
fn an_oco_reaches_the_application_as_two_orders_and_is_answered_as_a_list() {
    let mut h = Harness::new();
    let params = with(
        &with(&sell_oco(), "listClientOrderId", Some("L1".into())),
        "belowClientOrderId",
        Some("stop-1".into()),
    );
    let v = h.signed_call("orderList.place.oco", &params);
    let r = ok(&v);
    assert_eq!(
        (
            &r["orderListId"],
            &r["contingencyType"],
            &r["listStatusType"],
            &r["listOrderStatus"],
            &r["listClientOrderId"]
        ),
        (
            &Value::from(7),
            &Value::from("OCO"),
            &Value::from("EXEC_STARTED"),
            &Value::from("EXECUTING"),
            &Value::from("L1")
        ),
        "{v}"
    );
    assert_eq!(r["orders"].as_array().unwrap().len(), 2, "{v}");
    // ACK by default: each report in the short shape.
    assert!(r["orderReports"][0].get("status").is_none(), "{v}");
    let list = h.app.lists.pop().unwrap();
    assert_eq!(
        (
            list.above.order_type,
            list.above.price,
            list.above.quantity,
            list.above.side
        ),
        (
            OrderType::LimitMaker,
            Some(d("53000.00")),
            Some(d("0.01")),
            Side::Sell
        )
    );
    assert_eq!(
        (
            list.below.order_type,
            list.below.stop_price,
            list.below.price,
            list.below.time_in_force,
            list.below.new_client_order_id.as_deref()
        ),
        (
            OrderType::StopLossLimit,
            Some(d("51000.00")),
            Some(d("50900.00")),
            Some(TimeInForce::Gtc),
            Some("stop-1")
        )
    );
    // Two orders in the ORDERS windows.
    let limits = v["rateLimits"].as_array().unwrap();
    assert!(
        limits
            .iter()
            .any(|l| l["rateLimitType"] == "ORDERS" && l["count"] == 2),
        "{v}"
    );
}

#[test]
fn oco_parameters_are_validated_with_the_list_parameter_names() {
    let mut h = Harness::new();
    let base = sell_oco();
    let buy = with(
        &with(
            &with(
                &with(&base, "side", Some("BUY".into())),
                "aboveType",
                Some("STOP_LOSS".into()),
            ),
            "aboveStopPrice",
            Some("53000.00".into()),
        ),
        "abovePrice",
        None,
    );
    type Case = (
        &'static str,
        Vec<(&'static str, Value)>,
        i64,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        ("no aboveType", with(&base, "aboveType", None), -1102, Some("Mandatory parameter 'aboveType' was not sent, was empty/null, or malformed.")),
        ("a LIMIT above", with(&base, "aboveType", Some("LIMIT".into())), -1130, Some("Data sent for parameter 'aboveType' is not valid.")),
        ("a sell's stop-loss above", with(&with(&base, "aboveType", Some("STOP_LOSS".into())), "aboveStopPrice", Some("53000.00".into())), -1106, None),
        ("a sell without a stop-loss below", with(&with(&with(&with(&base, "belowType", Some("TAKE_PROFIT".into())), "belowPrice", None), "belowTimeInForce", None), "belowStopPrice", Some("51000.00".into())), -1130, Some("Data sent for parameter 'belowType' is not valid.")),
        ("a buy's stop-loss below", with(&with(&with(&with(&buy, "belowType", Some("STOP_LOSS".into())), "belowPrice", None), "belowTimeInForce", None), "aboveType", Some("TAKE_PROFIT".into())), -1130, Some("Data sent for parameter 'aboveType' is not valid.")),
        ("no belowTimeInForce", with(&base, "belowTimeInForce", None), -1102, Some("Mandatory parameter 'belowTimeInForce' was not sent, was empty/null, or malformed.")),
        ("no abovePrice", with(&base, "abovePrice", None), -1102, Some("Mandatory parameter 'abovePrice' was not sent, was empty/null, or malformed.")),
        ("no belowStopPrice", with(&base, "belowStopPrice", None), -1102, Some("Param 'belowStopPrice' or 'belowTrailingDelta' must be sent, but both were empty/null!")),
        ("abovePrice off the tick", with(&base, "abovePrice", Some("53000.005".into())), -1013, Some("Filter failure: PRICE_FILTER")),
        ("no quantity", with(&base, "quantity", None), -1102, Some("Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")),
        ("belowStrategyType reserved", with(&base, "belowStrategyType", Some(5.into())), -1134, None),
        ("an order's own parameter", with(&base, "price", Some("1.00".into())), -1104, None),
        ("a symbol without OCO", with(&base, "symbol", Some("BTC-261225-100000-C".into())), -2010, Some("OCO orders are not supported for this symbol.")),
    ];
    for (what, params, expected, msg) in cases {
        let v = h.signed_call("orderList.place.oco", &params);
        assert_eq!(code(&v), expected, "{what}: {v}");
        if let Some(msg) = msg {
            assert_eq!(v["error"]["msg"], msg, "{what}");
        }
    }
    assert!(h.app.lists.is_empty());
    // A buy: the stop-loss above, a LIMIT_MAKER below.
    let ok_buy = with(
        &with(
            &with(
                &with(&buy, "belowType", Some("LIMIT_MAKER".into())),
                "belowPrice",
                Some("50000.00".into()),
            ),
            "belowTimeInForce",
            None,
        ),
        "belowStopPrice",
        None,
    );
    let v = h.signed_call("orderList.place.oco", &ok_buy);
    assert_eq!(v["status"], 200, "{v}");
}

/// An OTO: buy 0.01 at 50000.00, then sell it at 53000.00.
fn buy_then_sell() -> Vec<(&'static str, Value)> {
    vec![
        ("symbol", "BTCUSDT".into()),
        ("workingType", "LIMIT".into()),
        ("workingSide", "BUY".into()),
        ("workingPrice", "50000.00".into()),
        ("workingQuantity", "0.01".into()),
        ("workingTimeInForce", "GTC".into()),
        ("pendingType", "LIMIT".into()),
        ("pendingSide", "SELL".into()),
        ("pendingPrice", "53000.00".into()),
        ("pendingQuantity", "0.01".into()),
        ("pendingTimeInForce", "GTC".into()),
    ]
}

/// An OTOCO: buy 0.01 at 50000.00, then sell it at 53000.00 or stop out at 49000.00.
fn buy_then_bracket() -> Vec<(&'static str, Value)> {
    vec![
        ("symbol", "BTCUSDT".into()),
        ("workingType", "LIMIT_MAKER".into()),
        ("workingSide", "BUY".into()),
        ("workingPrice", "50000.00".into()),
        ("workingQuantity", "0.01".into()),
        ("pendingSide", "SELL".into()),
        ("pendingQuantity", "0.01".into()),
        ("pendingAboveType", "LIMIT_MAKER".into()),
        ("pendingAbovePrice", "53000.00".into()),
        ("pendingBelowType", "STOP_LOSS".into()),
        ("pendingBelowStopPrice", "49000.00".into()),
    ]
}

#[test]
fn oto_and_otoco_reach_the_application_as_a_working_order_and_its_pending_orders() {
    let mut h = Harness::new();
    let params = with(
        &buy_then_sell(),
        "pendingClientOrderId",
        Some("tp-1".into()),
    );
    let v = h.signed_call("orderList.place.oto", &params);
    let r = ok(&v);
    assert_eq!(r["contingencyType"], "OTO", "{v}");
    assert_eq!(r["orders"].as_array().unwrap().len(), 2, "{v}");
    let list = h.app.otos.pop().unwrap();
    assert_eq!(
        (
            list.working.order_type,
            list.working.side,
            list.working.price
        ),
        (OrderType::Limit, Side::Buy, Some(d("50000.00")))
    );
    let p = &list.pending[0];
    assert_eq!(
        (
            p.order_type,
            p.side,
            p.price,
            p.quantity,
            p.new_client_order_id.as_deref()
        ),
        (
            OrderType::Limit,
            Side::Sell,
            Some(d("53000.00")),
            Some(d("0.01")),
            Some("tp-1")
        )
    );
    let count = |v: &Value| {
        v["rateLimits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rateLimitType"] == "ORDERS" && l["interval"] == "SECOND")
            .map(|l| l["count"].as_i64().unwrap())
    };
    assert_eq!(count(&v), Some(2), "{v}");
    let v = h.signed_call("orderList.place.otoco", &buy_then_bracket());
    let r = ok(&v);
    assert_eq!(r["orders"].as_array().unwrap().len(), 3, "{v}");
    // Three more orders in the ORDERS windows.
    assert_eq!(count(&v), Some(5), "{v}");
    let list = h.app.otos.pop().unwrap();
    assert_eq!(list.working.order_type, OrderType::LimitMaker);
    let (above, below) = (&list.pending[0], &list.pending[1]);
    // The pair shares pendingSide and pendingQuantity.
    assert_eq!(
        (above.order_type, above.side, above.quantity, above.price),
        (
            OrderType::LimitMaker,
            Side::Sell,
            Some(d("0.01")),
            Some(d("53000.00"))
        )
    );
    assert_eq!(
        (
            below.order_type,
            below.side,
            below.quantity,
            below.stop_price
        ),
        (
            OrderType::StopLoss,
            Side::Sell,
            Some(d("0.01")),
            Some(d("49000.00"))
        )
    );
}

#[test]
fn oto_parameters_are_validated_with_the_list_parameter_names() {
    let mut h = Harness::new();
    let oto = buy_then_sell();
    let otoco = buy_then_bracket();
    type Case = (
        &'static str,
        &'static str,
        Vec<(&'static str, Value)>,
        i64,
        Option<&'static str>,
    );
    let m = "orderList.place.oto";
    let mc = "orderList.place.otoco";
    let cases: Vec<Case> = vec![
        (m, "no workingType", with(&oto, "workingType", None), -1102, Some("Mandatory parameter 'workingType' was not sent, was empty/null, or malformed.")),
        (m, "a MARKET working order", with(&with(&oto, "workingType", Some("MARKET".into())), "workingPrice", None), -1130, Some("Data sent for parameter 'workingType' is not valid.")),
        (m, "no workingTimeInForce", with(&oto, "workingTimeInForce", None), -1102, Some("Mandatory parameter 'workingTimeInForce' was not sent, was empty/null, or malformed.")),
        (m, "no pendingSide", with(&oto, "pendingSide", None), -1102, Some("Mandatory parameter 'pendingSide' was not sent, was empty/null, or malformed.")),
        (m, "pendingPrice off the tick", with(&oto, "pendingPrice", Some("53000.005".into())), -1013, Some("Filter failure: PRICE_FILTER")),
        (m, "a pending stop without its price", with(&with(&with(&oto, "pendingType", Some("STOP_LOSS".into())), "pendingPrice", None), "pendingTimeInForce", None), -1102, Some("Param 'pendingStopPrice' or 'pendingTrailingDelta' must be sent, but both were empty/null!")),
        (m, "an order's own parameter", with(&oto, "price", Some("1.00".into())), -1104, None),
        (m, "a pair's parameter", with(&oto, "pendingAboveType", Some("LIMIT_MAKER".into())), -1104, None),
        (m, "a symbol without OTO", with(&oto, "symbol", Some("BTC-261225-100000-C".into())), -2010, Some("OTO orders are not supported for this symbol.")),
        (mc, "a LIMIT above", with(&otoco, "pendingAboveType", Some("LIMIT".into())), -1130, Some("Data sent for parameter 'pendingAboveType' is not valid.")),
        (mc, "a sell's stop-loss above", with(&with(&with(&otoco, "pendingAboveType", Some("STOP_LOSS".into())), "pendingAbovePrice", None), "pendingAboveStopPrice", Some("53000.00".into())), -1130, Some("Data sent for parameter 'pendingAboveType' is not valid.")),
        (mc, "no pendingQuantity", with(&otoco, "pendingQuantity", None), -1102, Some("Mandatory parameter 'pendingQuantity' was not sent, was empty/null, or malformed.")),
        (mc, "the single pending order's parameter", with(&otoco, "pendingType", Some("LIMIT".into())), -1104, None),
    ];
    for (method, what, params, expected, msg) in cases {
        let v = h.signed_call(method, &params);
        assert_eq!(code(&v), expected, "{what}: {v}");
        if let Some(msg) = msg {
            assert_eq!(v["error"]["msg"], msg, "{what}");
        }
    }
    assert!(h.app.otos.is_empty());
}

#[test]
fn order_list_queries_name_a_list_by_id_or_client_id() {
    let mut h = Harness::new();
    type Params = Vec<(&'static str, Value)>;
    let cases: [(&str, Params, i64); 5] = [
        ("orderList.status", vec![], -1102),
        ("orderList.status", vec![("orderListId", "x".into())], -1100),
        ("orderList.cancel", vec![("orderListId", 7.into())], -1102),
        (
            "orderList.cancel",
            vec![("symbol", "NOPE".into()), ("orderListId", 7.into())],
            -1121,
        ),
        (
            "orderList.cancel",
            vec![("symbol", "BTCUSDT".into()), ("orderId", 7.into())],
            -1104,
        ),
    ];
    for (method, params, expected) in cases {
        let v = h.signed_call(method, &params);
        assert_eq!(code(&v), expected, "{method} {params:?}: {v}");
    }
    let none: [(&str, Value); 0] = [];
    let v = h.signed_call("orderList.status", &none);
    assert_eq!(
        v["error"]["msg"],
        "Param 'orderListId' or 'origClientOrderId' must be sent, but both were empty/null!"
    );
    // Valid requests reach the application (this one keeps no lists: -1020).
    for (method, params) in [
        ("orderList.status", vec![("origClientOrderId", "L1".into())]),
        (
            "orderList.cancel",
            vec![
                ("symbol", "BTCUSDT".into()),
                ("listClientOrderId", "L1".into()),
            ],
        ),
        ("openOrderLists.status", vec![]),
    ] {
        let v = h.signed_call(method, &params);
        assert_eq!(code(&v), -1020, "{method}: {v}");
    }
}

#[test]
fn all_order_lists_takes_a_list_id_or_a_time_window_and_a_limit() {
    let mut h = Harness::new();
    type Params = Vec<(&'static str, Value)>;
    let cases: [(&str, Params, i64); 5] = [
        (
            "fromId with startTime",
            vec![("fromId", 7.into()), ("startTime", 1_000.into())],
            -1128,
        ),
        ("limit 0", vec![("limit", 0.into())], -1130),
        ("limit 1001", vec![("limit", 1001.into())], -1130),
        (
            "more than a day",
            vec![("startTime", 0.into()), ("endTime", 86_400_001.into())],
            -1127,
        ),
        ("a symbol", vec![("symbol", "BTCUSDT".into())], -1104),
    ];
    for (what, params, expected) in cases {
        let v = h.signed_call("allOrderLists", &params);
        assert_eq!(code(&v), expected, "{what}: {v}");
    }
    // Valid: it reaches the application (which here keeps no history: -1020).
    let v = h.signed_call("allOrderLists", &[("fromId", Value::from(7))]);
    assert_eq!(code(&v), -1020, "{v}");
}

#[test]
fn commission_rates_are_answered_for_a_symbol_and_for_a_test_order() {
    let mut h = Harness::new();
    let v = h.signed_call("account.commission", &[("symbol", Value::from("BTCUSDT"))]);
    let r = ok(&v);
    assert_eq!(r["symbol"], "BTCUSDT", "{v}");
    assert_eq!(
        (
            &r["standardCommission"]["maker"],
            &r["standardCommission"]["taker"]
        ),
        (&json!("0.00010000"), &json!("0.00020000")),
        "{v}"
    );
    assert_eq!(r["taxCommission"]["maker"], "0.00000000", "{v}");
    assert_eq!(r["discount"]["enabledForAccount"], false, "{v}");
    let v = h.signed_call("account.commission", &[("symbol", Value::from("NOPE"))]);
    assert_eq!(code(&v), -1121, "{v}");
    let none: [(&str, Value); 0] = [];
    let v = h.signed_call("account.commission", &none);
    assert_eq!(code(&v), -1102, "{v}");
    // order.test with computeCommissionRates: the order's maker and taker rates.
    let params = with(&limit_order(), "computeCommissionRates", Some(true.into()));
    let v = h.signed_call("order.test", &params);
    let r = ok(&v);
    assert_eq!(
        (
            &r["standardCommissionForOrder"]["maker"],
            &r["standardCommissionForOrder"]["taker"]
        ),
        (&json!("0.00010000"), &json!("0.00020000")),
        "{v}"
    );
}
