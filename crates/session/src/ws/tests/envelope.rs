//! The envelope: ids, methods, malformed input, rate-limit reporting and limits.

use serde_json::Value;

use super::*;

#[test]
fn the_id_is_echoed_verbatim_whatever_its_json_type() {
    let mut h = Harness::new();
    for id in [
        "1",
        "-42",
        "null",
        r#""e2a85d9f-07a5-4f94-8d5f-789dc3deb097""#,
        // Beyond 2^64 and 2^53: echoed as written, never through a float.
        "123456789012345678901234567890",
        // Escapes stay as the client wrote them.
        r#""a\u0041\"b""#,
        r#""""#,
    ] {
        let frames = h.send_raw(&format!(r#"{{"id":{id},"method":"ping"}}"#));
        assert_eq!(frames.len(), 1);
        assert!(
            frames[0].starts_with(&format!(r#"{{"id":{id},"status":200,"result":{{}}"#)),
            "{id}: {}",
            frames[0]
        );
    }
}

#[test]
fn ping_and_time_with_and_without_the_v3_prefix_and_params() {
    let mut h = Harness::new();
    assert_eq!(
        ok(&h.send(r#"{"id":1,"method":"ping"}"#)),
        &serde_json::json!({})
    );
    assert_eq!(
        ok(&h.send(r#"{"id":1,"method":"v3/ping","params":{}}"#)),
        &serde_json::json!({})
    );
    let t = h.send(r#"{"id":1,"method":"time","params":null}"#);
    assert_eq!(ok(&t)["serverTime"], h.now_ms);
    assert_eq!(code(&h.send(r#"{"id":1,"method":"v4/ping"}"#)), -1020);
    assert_eq!(code(&h.send(r#"{"id":1,"method":"PING"}"#)), -1020);
}

#[test]
fn malformed_input_gets_the_dialects_errors_and_the_connection_stays_usable() {
    let mut h = Harness::new();
    let cases: &[(&str, i64, Value)] = &[
        // Not JSON, or JSON that is not an object.
        ("{", -1135, Value::Null),
        ("", -1135, Value::Null),
        ("ping", -1135, Value::Null),
        (r#"{"id":1,"method":"ping"} trailing"#, -1135, Value::Null),
        ("[1,2]", -1135, Value::Null),
        ("\"ping\"", -1135, Value::Null),
        ("42", -1135, Value::Null),
        ("null", -1135, Value::Null),
        // id missing or of a type the dialect does not allow: answered with a null id.
        (r#"{"method":"ping"}"#, -1102, Value::Null),
        (r#"{"id":{"a":1},"method":"ping"}"#, -1102, Value::Null),
        (r#"{"id":[1],"method":"ping"}"#, -1102, Value::Null),
        (r#"{"id":true,"method":"ping"}"#, -1102, Value::Null),
        (r#"{"id":1.5,"method":"ping"}"#, -1102, Value::Null),
        // method missing, empty, or not a string.
        (r#"{"id":7}"#, -1102, Value::from(7)),
        (r#"{"id":7,"method":""}"#, -1102, Value::from(7)),
        (r#"{"id":7,"method":5}"#, -1102, Value::from(7)),
        (r#"{"id":7,"method":null}"#, -1102, Value::from(7)),
        // Unknown method.
        (
            r#"{"id":"x","method":"order.teleport"}"#,
            -1020,
            Value::from("x"),
        ),
        // params not an object.
        (
            r#"{"id":7,"method":"ping","params":[1]}"#,
            -1135,
            Value::from(7),
        ),
        (
            r#"{"id":7,"method":"ping","params":"a=b"}"#,
            -1135,
            Value::from(7),
        ),
        // Members besides id, method, params.
        (
            r#"{"id":7,"method":"ping","extra":1}"#,
            -1103,
            Value::from(7),
        ),
        // Duplicated members and parameters.
        (
            r#"{"id":7,"method":"ping","method":"time"}"#,
            -1135,
            Value::from(7),
        ),
        (
            r#"{"id":7,"method":"time","params":{"returnRateLimits":true,"returnRateLimits":false}}"#,
            -1101,
            Value::from(7),
        ),
        // A parameter the method does not read.
        (
            r#"{"id":7,"method":"ping","params":{"foo":1}}"#,
            -1104,
            Value::from(7),
        ),
        (
            r#"{"id":7,"method":"time","params":{"returnRateLimits":"maybe"}}"#,
            -1100,
            Value::from(7),
        ),
    ];
    for (text, expected, id) in cases {
        let v = h.send(text);
        assert_eq!(code(&v), *expected, "{text}: {v}");
        assert_eq!(v["status"], 400, "{text}: {v}");
        assert_eq!(&v["id"], id, "{text}: {v}");
        // Still usable.
        ok(&h.send(r#"{"id":1,"method":"ping"}"#));
    }
    let v = h.send(r#"{"id":7,"method":"ping","params":{"foo":1,"returnRateLimits":true}}"#);
    assert_eq!(
        v["error"]["msg"],
        "Not all sent parameters were read; read '1' parameter(s) but was sent '2'."
    );
    let v = h.send(r#"{"id":7}"#);
    assert_eq!(
        v["error"]["msg"],
        "Mandatory parameter 'method' was not sent, was empty/null, or malformed."
    );
    // A binary frame is refused in the same way.
    let now = h.now();
    h.session.handle_binary(now);
    let frames = h.drain();
    let v: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!((code(&v), &v["id"]), (-1135, &Value::Null));
    // Every refusal was reported for counting.
    let rejected = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, WsEvent::Rejected { .. }))
        .count();
    assert_eq!(rejected, cases.len() + 3);
}

#[test]
fn rate_limits_are_reported_unless_turned_off_per_request_or_per_connection() {
    let mut h = Harness::new();
    let v = h.send(r#"{"id":1,"method":"time"}"#);
    assert_eq!(
        v["rateLimits"],
        serde_json::json!([{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000,"count":1}])
    );
    let v = h.send(r#"{"id":2,"method":"time","params":{"returnRateLimits":false}}"#);
    assert!(v.get("rateLimits").is_none(), "{v}");
    // The exact shape of the dialect's example.
    let frames = h.send_raw(r#"{"id":2,"method":"time","params":{"returnRateLimits":false}}"#);
    assert_eq!(
        frames[0],
        format!(
            r#"{{"id":2,"status":200,"result":{{"serverTime":{}}}}}"#,
            h.now_ms
        )
    );
    // Errors carry them too; the count includes every request so far.
    let v = h.send(r#"{"id":3,"method":"nope"}"#);
    assert_eq!(v["rateLimits"][0]["count"], 4);

    // The connection URL's returnRateLimits=false, overridden per request.
    let mut h = Harness::with(
        WsSessionConfig {
            return_rate_limits: false,
            ..WsSessionConfig::default()
        },
        RateLimitConfig::default(),
    );
    assert!(h
        .send(r#"{"id":1,"method":"ping"}"#)
        .get("rateLimits")
        .is_none());
    let v = h.send(r#"{"id":1,"method":"ping","params":{"returnRateLimits":true}}"#);
    assert_eq!(v["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT");
    let v = h.send(r#"{"id":1,"method":"session.status"}"#);
    assert_eq!(ok(&v)["returnRateLimits"], false);
}

#[test]
fn request_weight_over_the_limit_is_429_and_a_client_that_keeps_going_is_banned() {
    let mut h = Harness::with(
        WsSessionConfig::default(),
        RateLimitConfig {
            request_weight_per_minute: 25,
            ban_after_violations: 3,
            ..RateLimitConfig::default()
        },
    );
    // exchangeInfo weighs 20, ping 1.
    ok(&h.send(r#"{"id":1,"method":"exchangeInfo"}"#));
    for _ in 0..5 {
        ok(&h.send(r#"{"id":1,"method":"ping"}"#));
    }
    let v = h.send(r#"{"id":9,"method":"ping"}"#);
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(429), -1003));
    assert_eq!(v["id"], 9);
    let next_minute = (h.now_ms / 60_000 + 1) * 60_000;
    assert_eq!(v["error"]["data"]["retryAfter"], next_minute);
    assert_eq!(v["error"]["data"]["serverTime"], h.now_ms);
    assert!(v["error"]["msg"].as_str().unwrap().starts_with(
        "Too much request weight used; current limit is 25 request weight per 1 MINUTE."
    ));
    assert_eq!(v["rateLimits"][0]["count"], 25);
    assert_eq!(code(&h.send(r#"{"id":9,"method":"ping"}"#)), -1003);
    let v = h.send(r#"{"id":9,"method":"ping"}"#);
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(418), -1003));
    let until = h.now_ms + 120_000;
    assert_eq!(v["error"]["data"]["retryAfter"], until);
    assert!(h
        .events()
        .contains(&WsEvent::Disconnect(WsDisconnect::Banned {
            until_ms: until
        })));
    // Nothing more is processed on this connection.
    assert!(h.send_raw(r#"{"id":1,"method":"ping"}"#).is_empty());
}

#[test]
fn exchange_info_lists_symbols_with_their_filters() {
    let mut h = Harness::new();
    let v = h.call::<&str>("exchangeInfo", &[]);
    let r = ok(&v);
    assert_eq!(r["timezone"], "UTC");
    assert_eq!(r["serverTime"], h.now_ms);
    assert_eq!(
        r["rateLimits"][3],
        serde_json::json!({"rateLimitType":"CONNECTIONS","interval":"MINUTE","intervalNum":5,"limit":300})
    );
    let symbols = r["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 3);
    let btc = &symbols[0];
    assert_eq!(btc["symbol"], "BTCUSDT");
    assert_eq!(btc["status"], "TRADING");
    assert_eq!(
        btc["orderTypes"],
        serde_json::json!([
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT"
        ])
    );
    assert_eq!(
        btc["filters"],
        serde_json::json!([
            {"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000.00","tickSize":"0.01"},
            {"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000.00000000","stepSize":"0.00001"},
            {"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,"maxNotional":"9000000.00000000","applyMaxToMarket":false,"avgPriceMins":5},
            {"filterType":"PERCENT_PRICE","multiplierUp":"5","multiplierDown":"0.2","avgPriceMins":5},
            {"filterType":"MAX_NUM_ORDERS","maxNumOrders":200},
            {"filterType":"ICEBERG_PARTS","limit":10},
            {"filterType":"TRAILING_DELTA","minTrailingAboveDelta":10,"maxTrailingAboveDelta":2000,"minTrailingBelowDelta":20,"maxTrailingBelowDelta":1000}
        ])
    );
    assert_eq!(btc["icebergAllowed"], true);
    assert_eq!(btc["allowTrailingStop"], true);
    assert_eq!(btc["ocoAllowed"], true);
    assert_eq!(btc["defaultSelfTradePreventionMode"], "NONE");

    let v = h.call(
        "exchangeInfo",
        &[("symbol", Value::from("BTC-261225-100000-C"))],
    );
    assert_eq!(ok(&v)["symbols"][0]["symbol"], "BTC-261225-100000-C");
    let v = h.call(
        "exchangeInfo",
        &[("symbols", serde_json::json!(["ETHUSDT", "BTCUSDT"]))],
    );
    let names: Vec<&str> = ok(&v)["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ETHUSDT", "BTCUSDT"]);
    // As REST clients send it: the list as a string.
    let v = h.call(
        "exchangeInfo",
        &[("symbols", Value::from(r#"["BTCUSDT"]"#))],
    );
    assert_eq!(ok(&v)["symbols"].as_array().unwrap().len(), 1);
    let v = h.call("exchangeInfo", &[("symbolStatus", Value::from("HALT"))]);
    assert_eq!(ok(&v)["symbols"][0]["symbol"], "ETHUSDT");

    let err = |h: &mut Harness, p: &[(&str, Value)]| code(&h.call("exchangeInfo", p));
    assert_eq!(err(&mut h, &[("symbol", "NOPE".into())]), -1121);
    assert_eq!(err(&mut h, &[("symbol", "btcusdt".into())]), -1100);
    assert_eq!(
        err(
            &mut h,
            &[("symbols", serde_json::json!(["BTCUSDT", "BTCUSDT"]))]
        ),
        -1151
    );
    assert_eq!(err(&mut h, &[("symbols", serde_json::json!([1]))]), -1100);
    assert_eq!(
        err(
            &mut h,
            &[
                ("symbol", "BTCUSDT".into()),
                ("symbols", serde_json::json!(["BTCUSDT"]))
            ]
        ),
        -1128
    );
    assert_eq!(err(&mut h, &[("symbolStatus", "OPEN".into())]), -1122);
}
