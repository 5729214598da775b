//! Signed requests, session.logon/status/logout, revocation, the user data stream and
//! requests the application answers late.

use serde_json::{json, Value};

use super::*;

/// The documented request of the dialect's "SIGNED request example (HMAC)", verbatim.
const DOC_REQUEST: &str = r#"{
  "id": "4885f793-e5ad-4c3b-8f6c-55d891472b71",
  "method": "order.place",
  "params": {
    "symbol":           "BTCUSDT",
    "side":             "SELL",
    "type":             "LIMIT",
    "timeInForce":      "GTC",
    "quantity":         "0.01000000",
    "price":            "52000.00",
    "newOrderRespType": "ACK",
    "recvWindow":       100,
    "timestamp":        1645423376532,
    "apiKey":           "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
    "signature":        "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"
  }
}"#;

#[test]
fn the_documented_signed_request_is_accepted_and_placed() {
    let mut h = Harness::new();
    let frames = h.send_raw(DOC_REQUEST);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].starts_with(r#"{"id":"4885f793-e5ad-4c3b-8f6c-55d891472b71","status":200,"result":{"symbol":"BTCUSDT","orderId":12569099453,"orderListId":-1,"clientOrderId":"auto12569099453","transactTime":1655716096505},"rateLimits":["#), "{}", frames[0]);
    let v: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(
        v["rateLimits"],
        json!([
            {"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":50,"count":1},
            {"rateLimitType":"ORDERS","interval":"DAY","intervalNum":1,"limit":160000,"count":1},
            {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000,"count":1}
        ])
    );
    let (_, account, order) = &h.app.placed[0];
    assert_eq!(account, "ACC1");
    assert_eq!(
        order,
        &WsOrder {
            symbol: "BTCUSDT".into(),
            side: Side::Sell,
            order_type: OrderType::Limit,
            time_in_force: Some(TimeInForce::Gtc),
            price: Some(d("52000.00")),
            quantity: Some(d("0.01000000")),
            quote_order_qty: None,
            stop_price: None,
            iceberg_qty: None,
            new_client_order_id: None,
            resp_type: RespType::Ack,
            stp: None,
            good_till_date: None,
            trailing_delta: None,
            strategy: Default::default(),
        }
    );
    // recvWindow is 100 ms: 101 ms later the same request is refused.
    h.now_ms = DOC_TS + 101;
    assert_eq!(code(&h.send(DOC_REQUEST)), -1021);
}

/// Python's `urlencode` of a value, as the official SDKs sign.
fn quote_plus(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_signature_may_cover_the_raw_or_the_percent_encoded_payload_and_nothing_else() {
    let mut h = Harness::new();
    let mut params: Vec<(String, Value)> = limit_order()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    params.push(("newClientOrderId".into(), "my:order/1".into()));
    params.push(("apiKey".into(), DOC_API_KEY.into()));
    params.push(("timestamp".into(), h.now_ms.into()));
    let raw = client_payload(&params);
    assert!(raw.contains("newClientOrderId=my:order/1"));
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
        .collect();
    sorted.sort();
    let encoded = sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", quote_plus(v)))
        .collect::<Vec<_>>()
        .join("&");
    assert!(encoded.contains("newClientOrderId=my%3Aorder%2F1"));
    let send = |h: &mut Harness, sig: String| {
        let mut p = params.clone();
        p.push(("signature".into(), sig.into()));
        h.call("order.place", &p)
    };
    ok(&send(&mut h, hmac_hex(DOC_SECRET, &raw)));
    ok(&send(&mut h, hmac_hex(DOC_SECRET, &encoded)));
    // Hex is case-insensitive (the dialect says so of its signatures).
    ok(&send(&mut h, hmac_hex(DOC_SECRET, &raw).to_uppercase()));
    let unsorted = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_owned)))
        .collect::<Vec<_>>()
        .join("&");
    for wrong in [
        unsorted,
        raw.replace("price=52000.00", "price=52000.01"),
        encoded.replace("%3A", "%3a"),
        format!("{raw}&"),
        raw.replace('&', "&amp;"),
        encoded.replace("%2F", "%252F"),
    ] {
        assert!(wrong != raw && wrong != encoded);
        let v = send(&mut h, hmac_hex(DOC_SECRET, &wrong));
        assert_eq!(code(&v), -1022, "{wrong}");
        assert_eq!(v["status"], 400);
        assert_eq!(
            v["error"]["msg"],
            "Signature for this request is not valid."
        );
    }
    assert_eq!(code(&send(&mut h, "zz".into())), -1022);
    assert_eq!(
        h.app.placed.len(),
        3,
        "nothing refused reached the application"
    );
}

#[test]
fn timestamps_outside_the_window_are_refused_and_microseconds_are_accepted() {
    let mut h = Harness::new();
    let now = h.now_ms;
    let place = |h: &mut Harness, ts: Value, extra: &[(&str, Value)]| {
        let mut p: Vec<(String, Value)> = limit_order()
            .into_iter()
            .chain(extra.iter().cloned())
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        p.push(("apiKey".into(), DOC_API_KEY.into()));
        p.push(("timestamp".into(), ts));
        let sig = hmac_hex(DOC_SECRET, &client_payload(&p));
        p.push(("signature".into(), sig.into()));
        h.call("order.place", &p)
    };
    ok(&place(&mut h, (now + 999).into(), &[]));
    let v = place(&mut h, (now + 1000).into(), &[]);
    assert_eq!(code(&v), -1021);
    assert_eq!(
        v["error"]["msg"],
        "Timestamp for this request was 1000ms ahead of the server's time."
    );
    ok(&place(&mut h, (now - 5000).into(), &[]));
    let v = place(&mut h, (now - 5001).into(), &[]);
    assert_eq!(
        (code(&v), v["error"]["msg"].as_str()),
        (
            -1021,
            Some("Timestamp for this request is outside of the recvWindow.")
        )
    );
    ok(&place(
        &mut h,
        (now - 60_000).into(),
        &[("recvWindow", 60_000.into())],
    ));
    let v = place(
        &mut h,
        (now - 60_000).into(),
        &[("recvWindow", 60_001.into())],
    );
    assert_eq!(code(&v), -1102);
    // Microseconds, and a recvWindow with microsecond precision.
    let now_us = now * 1_000;
    ok(&place(
        &mut h,
        (now_us - 100_500).into(),
        &[("recvWindow", "100.5".into())],
    ));
    assert_eq!(
        code(&place(
            &mut h,
            (now_us - 100_501).into(),
            &[("recvWindow", "100.5".into())]
        )),
        -1021
    );
    assert_eq!(code(&place(&mut h, "soon".into(), &[])), -1102);
}

#[test]
fn keys_are_checked_and_failures_reveal_nothing_more_than_the_dialects_codes() {
    let mut h = Harness::new();
    let order = limit_order();
    let v = h.call("order.place", &signed("bad key!", "x", h.now_ms, &order));
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(401), -2014));
    let v = h.call("order.place", &signed("pk_unknown", "x", h.now_ms, &order));
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(401), -2015));
    // The read-only key may read but not trade.
    let v = h.call(
        "order.place",
        &signed(READ_KEY, READ_SECRET, h.now_ms, &order),
    );
    assert_eq!(code(&v), -2015);
    let v = h.call(
        "account.status",
        &signed::<&str>(READ_KEY, READ_SECRET, h.now_ms, &[]),
    );
    ok(&v);
    assert_eq!(h.app.queries.last().unwrap(), "account ACC2 false");
    // Locked out: told to back off.
    h.auth.locked.lock().unwrap().insert(READ_KEY.into());
    let v = h.call(
        "account.status",
        &signed::<&str>(READ_KEY, READ_SECRET, h.now_ms, &[]),
    );
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(429), -1003));
    assert_eq!(v["error"]["data"]["retryAfter"], 1_700_000_000_000_i64);
    assert_eq!(v["error"]["data"]["serverTime"], h.now_ms);
    // A signature that is neither hex nor base64 never reaches the verifier.
    let mut p = signed(DOC_API_KEY, DOC_SECRET, h.now_ms, &order);
    p.retain(|(k, _)| k != "signature");
    p.push(("signature".into(), "not a signature!".into()));
    assert_eq!(code(&h.call("order.place", &p)), -1022);
    p.pop();
    p.push(("signature".into(), "a".repeat(300).into()));
    assert_eq!(code(&h.call("order.place", &p)), -1022);
    // Missing pieces.
    let mut p = signed(DOC_API_KEY, DOC_SECRET, h.now_ms, &order);
    p.retain(|(k, _)| k != "signature");
    let v = h.call("order.place", &p);
    assert_eq!(
        v["error"]["msg"],
        "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
    );
    let v = h.call(
        "order.place",
        &with(&order, "timestamp", Some(h.now_ms.into())),
    );
    assert_eq!(
        v["error"]["msg"],
        "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed."
    );
    assert!(h.app.placed.is_empty());
}

#[test]
fn session_logon_authenticates_the_connection_until_logout() {
    let mut h = Harness::new();
    let connected = h.now_ms;
    h.now_ms += 5;
    let v = h.logon();
    assert_eq!(
        ok(&v),
        &json!({"apiKey":DOC_API_KEY,"authorizedSince":h.now_ms,"connectedSince":connected,
                "returnRateLimits":true,"serverTime":h.now_ms,"userDataStream":false})
    );
    assert!(h.events().contains(&WsEvent::LoggedOn {
        api_key: DOC_API_KEY.into()
    }));
    // Unsigned requests now act for the logged-on key; the timestamp is still required.
    let unsigned = with(&limit_order(), "timestamp", Some(h.now_ms.into()));
    ok(&h.call("order.place", &unsigned));
    assert_eq!(h.app.placed[0].1, "ACC1");
    assert_eq!(code(&h.call("order.place", &limit_order())), -1102);
    let v = h.call(
        "order.place",
        &with(&unsigned, "signature", Some("ab".into())),
    );
    assert_eq!(code(&v), -1106);
    // An explicit key still overrides the session's for one request.
    ok(&h.call(
        "account.status",
        &signed::<&str>(READ_KEY, READ_SECRET, h.now_ms, &[]),
    ));
    assert_eq!(h.app.queries.last().unwrap(), "account ACC2 false");
    // A failed logon changes nothing.
    let mut bad = signed::<&str>(READ_KEY, "wrong", h.now_ms, &[]);
    bad.retain(|(k, _)| k != "recvWindow");
    assert_eq!(code(&h.call("session.logon", &bad)), -1022);
    assert_eq!(
        ok(&h.call::<&str>("session.status", &[]))["apiKey"],
        DOC_API_KEY
    );
    // Logout: back to signing every request.
    let v = h.call::<&str>("session.logout", &[]);
    assert_eq!(ok(&v)["apiKey"], Value::Null);
    assert_eq!(ok(&v)["authorizedSince"], Value::Null);
    assert_eq!(h.auth.closed.lock().unwrap().as_slice(), [DOC_API_KEY]);
    let v = h.call("order.place", &unsigned);
    assert_eq!(code(&v), -1102);
    // Logging out twice is harmless.
    ok(&h.call::<&str>("session.logout", &[]));
    // Logon with a read-only key: it can read but not trade.
    ok(&h.call(
        "session.logon",
        &signed::<&str>(READ_KEY, READ_SECRET, h.now_ms, &[]),
    ));
    assert_eq!(code(&h.call("order.place", &unsigned)), -2015);
    ok(&h.call("account.status", &[("timestamp", Value::from(h.now_ms))]));
    // Logon parameters are checked like any signed request.
    let v = h.call(
        "session.logon",
        &signed::<&str>(DOC_API_KEY, DOC_SECRET, h.now_ms - 6000, &[]),
    );
    assert_eq!(code(&v), -1021);
    let v = h.call("session.logon", &[("apiKey", Value::from(DOC_API_KEY))]);
    assert_eq!(code(&v), -1102);
}

#[test]
fn a_revoked_key_loses_the_connections_rights_at_once() {
    let mut h = Harness::new();
    ok(&h.logon());
    ok(&h.call::<&str>("userDataStream.subscribe", &[]));
    assert_eq!(h.app.stream.as_deref(), Some("ACC1"));
    h.events();
    // The server's revocation signal.
    h.auth.revoked.lock().unwrap().insert(DOC_API_KEY.into());
    let now = h.now();
    h.session.check_revocation(now, &mut h.app);
    let frames = h.drain();
    assert_eq!(
        frames[0],
        r#"{"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}}"#
    );
    assert_eq!(
        frames[1],
        format!(
            r#"{{"subscriptionId":0,"event":{{"e":"eventStreamTerminated","E":{}}}}}"#,
            h.now_ms
        )
    );
    assert_eq!(frames.len(), 2);
    assert_eq!(h.app.stream, None);
    assert!(h.events().contains(&WsEvent::Revoked {
        api_key: DOC_API_KEY.into()
    }));
    assert_eq!(h.session.logged_on_key(), None);
    // Its rights are gone: unsigned requests need a key again, signed ones are refused.
    let unsigned = with(&limit_order(), "timestamp", Some(h.now_ms.into()));
    assert_eq!(code(&h.call("order.place", &unsigned)), -1102);
    let v = h.signed_call("order.place", &limit_order());
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(401), -2015));
    assert_eq!(
        ok(&h.call::<&str>("session.status", &[]))["apiKey"],
        Value::Null
    );
    assert!(h.app.placed.is_empty());
}

#[test]
fn revocation_is_found_by_the_periodic_check_and_by_the_next_request() {
    let mut h = Harness::new();
    ok(&h.logon());
    let due = h
        .session
        .poll_timeout()
        .expect("a logged-on key is re-checked");
    assert_eq!(due.nanos(), (h.now_ms + 1_000) * 1_000_000);
    h.auth.revoked.lock().unwrap().insert(DOC_API_KEY.into());
    h.now_ms += 1_000;
    let now = h.now();
    h.session.handle_timeout(now, &mut h.app);
    let frames = h.drain();
    assert_eq!(frames.len(), 1);
    assert!(frames[0].contains("-2015"));
    assert_eq!(h.session.poll_timeout(), None);

    // Without the signal or the timer, the next request finds it first.
    let mut h = Harness::new();
    ok(&h.logon());
    h.auth.revoked.lock().unwrap().insert(DOC_API_KEY.into());
    let unsigned = with(&limit_order(), "timestamp", Some(h.now_ms.into()));
    let frames = h.send_raw(&request("5", "order.place", &unsigned));
    assert_eq!(frames.len(), 2);
    assert!(frames[0].starts_with(r#"{"id":null,"status":401"#));
    assert!(frames[1].starts_with(r#"{"id":5,"status":400,"error":{"code":-1102"#));
}

#[test]
fn the_user_data_stream_sends_execution_reports_in_the_dialects_shape() {
    let mut h = Harness::new();
    let v = h.call::<&str>("userDataStream.subscribe", &[]);
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(401), -1002));
    ok(&h.logon());
    assert_eq!(
        ok(&h.call::<&str>("userDataStream.subscribe", &[])),
        &json!({"subscriptionId": 0})
    );
    // Again: the same subscription.
    assert_eq!(
        ok(&h.call::<&str>("userDataStream.subscribe", &[])),
        &json!({"subscriptionId": 0})
    );
    assert_eq!(
        ok(&h.call::<&str>("session.subscriptions", &[])),
        &json!([{"subscriptionId": 0}])
    );
    assert_eq!(
        ok(&h.call::<&str>("session.status", &[]))["userDataStream"],
        true
    );
    let report = ExecutionReport {
        event_time: 1_499_405_658_658,
        symbol: "BTCUSDT".into(),
        client_order_id: "mUvoqJxFIILMdfAW5iGSOW".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        quantity: "1.00000000".into(),
        price: "0.10264410".into(),
        stop_price: "0.00000000".into(),
        iceberg_qty: "0.00000000".into(),
        trailing_delta: None,
        orig_client_order_id: String::new(),
        execution_type: ExecutionType::Trade,
        order_status: OrderStatus::PartiallyFilled,
        reject_reason: "NONE".into(),
        order_id: SafeId::new(4_293_153).unwrap(),
        last_qty: "0.50000000".into(),
        cum_qty: "0.50000000".into(),
        last_price: "0.10264410".into(),
        commission: "0".into(),
        commission_asset: None,
        transaction_time: 1_499_405_658_657,
        trade_id: Some(SafeId::new(7).unwrap()),
        execution_id: SafeId::new(8_641_984).unwrap(),
        is_working: true,
        is_maker: false,
        creation_time: 1_499_405_658_657,
        cum_quote_qty: "0.05132205".into(),
        last_quote_qty: "0.05132205".into(),
        quote_order_qty: "0.00000000".into(),
        working_time: Some(1_499_405_658_657),
        stp: StpMode::None,
        strategy: Default::default(),
        order_list_id: -1,
    };
    let now = h.now();
    h.session.push_execution_report(now, &report);
    let frames = h.drain();
    assert_eq!(
        frames,
        [concat!(
            r#"{"subscriptionId":0,"event":{"e":"executionReport","E":1499405658658,"s":"BTCUSDT","c":"mUvoqJxFIILMdfAW5iGSOW","#,
            r#""S":"BUY","o":"LIMIT","f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000","#,
            r#""F":"0.00000000","g":-1,"C":"","x":"TRADE","X":"PARTIALLY_FILLED","r":"NONE","i":4293153,"#,
            r#""l":"0.50000000","z":"0.50000000","L":"0.10264410","n":"0","N":null,"T":1499405658657,"#,
            r#""t":7,"I":8641984,"w":true,"m":false,"M":false,"O":1499405658657,"Z":"0.05132205","#,
            r#""Y":"0.05132205","Q":"0.00000000","W":1499405658657,"V":"NONE"}}"#
        )]
    );
    // Through the application's output as well; a report without a trade has t = -1.
    let mut no_trade = report.clone();
    no_trade.trade_id = None;
    no_trade.working_time = None;
    h.session
        .handle_app_output(now, AppOutput::ExecutionReport(no_trade));
    let frames = h.drain();
    let v: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(v["event"]["t"], -1);
    assert!(v["event"].get("W").is_none());
    // Unsubscribe: the stream ends with eventStreamTerminated, then the answer.
    let v = h.call(
        "userDataStream.unsubscribe",
        &[("subscriptionId", Value::from(3))],
    );
    assert_eq!(code(&v), -1130, "not this connection's subscription: {v}");
    let frames = h.send_raw(&request(
        "9",
        "userDataStream.unsubscribe",
        &[("subscriptionId", Value::from(0))],
    ));
    assert_eq!(
        frames[0],
        format!(
            r#"{{"subscriptionId":0,"event":{{"e":"eventStreamTerminated","E":{}}}}}"#,
            h.now_ms
        )
    );
    assert!(frames[1].starts_with(r#"{"id":9,"status":200,"result":{}"#));
    assert_eq!(h.app.stream, None);
    h.session.push_execution_report(now, &report);
    assert!(h.drain().is_empty(), "no stream, no reports");
    assert_eq!(
        ok(&h.call::<&str>("session.subscriptions", &[])),
        &json!([])
    );
    // Logout ends a running stream too; a new one has the next id.
    assert_eq!(
        ok(&h.call::<&str>("userDataStream.subscribe", &[])),
        &json!({"subscriptionId": 1})
    );
    let frames = h.send_raw(&request::<&str>("9", "session.logout", &[]));
    assert!(frames[0].contains("eventStreamTerminated"));
}

#[test]
fn a_signed_subscription_streams_without_a_logon_and_outlives_one() {
    let mut h = Harness::new();
    // Signed: no logon needed; unsigned without a logon: the key is missing.
    let v = h.call::<&str>("userDataStream.subscribe.signature", &[]);
    assert_eq!(code(&v), -1102, "{v}");
    let v = h.signed_call::<&str>("userDataStream.subscribe.signature", &[]);
    assert_eq!(ok(&v), &json!({"subscriptionId": 0}));
    assert_eq!(h.app.stream.as_deref(), Some("ACC1"));
    assert_eq!(
        ok(&h.call::<&str>("session.status", &[]))["userDataStream"],
        true
    );
    // A logon and logout of the same account leave it running.
    ok(&h.logon());
    h.drain();
    let frames = h.send_raw(&request::<&str>("9", "session.logout", &[]));
    assert!(
        frames.iter().all(|f| !f.contains("eventStreamTerminated")),
        "{frames:?}"
    );
    assert_eq!(h.app.stream.as_deref(), Some("ACC1"));
    // Unsubscribed: it ends.
    let frames = h.send_raw(&request::<&str>("10", "userDataStream.unsubscribe", &[]));
    assert!(frames[0].contains(r#""subscriptionId":0,"event":{"e":"eventStreamTerminated""#));
    assert_eq!(h.app.stream, None);
}

#[test]
fn requests_the_application_answers_later_are_completed_by_token_or_time_out() {
    let mut h = Harness::new();
    h.app.mode = Mode::Pending;
    ok(&h.logon());
    let unsigned = with(&limit_order(), "timestamp", Some(h.now_ms.into()));
    assert!(h
        .send_raw(&request(r#""abc""#, "order.place", &unsigned))
        .is_empty());
    assert!(h
        .send_raw(&request("2", "order.place", &unsigned))
        .is_empty());
    assert_eq!(h.session.pending_requests(), 2);
    let (t1, _, order) = h.app.placed[0].clone();
    let (t2, _, _) = h.app.placed[1].clone();
    assert_ne!(t1, t2);
    // The first is answered: with the request's id, in the FULL shape a LIMIT order defaults to.
    h.now_ms += 3;
    let now = h.now();
    h.session.handle_app_output(
        now,
        AppOutput::Complete {
            token: t1,
            result: Ok(Outcome::Placed(order_result(&order, 9))),
        },
    );
    let frames = h.drain();
    let v: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(v["id"], "abc");
    assert_eq!(ok(&v)["fills"][0]["tradeId"], 77);
    assert_eq!(ok(&v)["status"], "NEW");
    assert_eq!(v["rateLimits"][0]["rateLimitType"], "ORDERS");
    // The second never is: -1007 after pending_timeout (the session wakes for it: its next
    // timer is no later than the deadline).
    let deadline = (DOC_TS + 50 + 10_000) * 1_000_000;
    assert!(h.session.poll_timeout().unwrap().nanos() <= deadline);
    h.now_ms = DOC_TS + 50 + 9_999;
    let now = h.now();
    h.session.handle_timeout(now, &mut h.app);
    assert!(h.drain().is_empty());
    h.now_ms = DOC_TS + 50 + 10_000;
    let now = h.now();
    h.session.handle_timeout(now, &mut h.app);
    let frames = h.drain();
    let v: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(
        (v["id"].as_i64(), v["status"].as_i64(), code(&v)),
        (Some(2), Some(503), -1007)
    );
    assert_eq!(h.session.pending_requests(), 0);
    // A completion after the timeout is reported and dropped.
    h.events();
    h.session
        .complete(t2, now, Err(WsError::order_rejected("late")));
    assert!(h.drain().is_empty());
    assert_eq!(h.events(), [WsEvent::LateCompletion { token: t2 }]);
    // An outcome of the wrong kind is a server error, not a wrong answer.
    let fresh = with(&limit_order(), "timestamp", Some(h.now_ms.into()));
    assert!(h.send_raw(&request("3", "order.place", &fresh)).is_empty());
    let (t3, _, _) = h.app.placed[2].clone();
    h.session
        .complete(t3, now, Ok(Outcome::Canceled(cancel_result("BTCUSDT"))));
    let v: Value = serde_json::from_str(&h.drain()[0]).unwrap();
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(500), -1000));
}

#[test]
fn pending_requests_are_bounded() {
    let mut h = Harness::with(
        WsSessionConfig {
            max_pending: 2,
            ..WsSessionConfig::default()
        },
        RateLimitConfig::default(),
    );
    h.app.mode = Mode::Pending;
    ok(&h.logon());
    let unsigned = with(&limit_order(), "timestamp", Some(h.now_ms.into()));
    assert!(h
        .send_raw(&request("1", "order.place", &unsigned))
        .is_empty());
    assert!(h
        .send_raw(&request("2", "order.place", &unsigned))
        .is_empty());
    let v = h.send(&request("3", "order.place", &unsigned));
    assert_eq!((v["status"].as_i64(), code(&v)), (Some(429), -1003));
    assert_eq!(v["error"]["msg"], "Too many requests queued.");
    // Methods the session answers itself still work.
    ok(&h.call::<&str>("ping", &[]));
}

#[test]
fn the_application_can_end_the_connection_and_is_told_when_it_ends() {
    let mut h = Harness::new();
    ok(&h.logon());
    let now = h.now();
    h.session
        .handle_app_output(now, AppOutput::Close("account halted".into()));
    assert_eq!(
        h.events().last(),
        Some(&WsEvent::Disconnect(WsDisconnect::Application(
            "account halted".into()
        )))
    );
    assert!(h.send_raw(r#"{"id":1,"method":"ping"}"#).is_empty());
    h.session.on_disconnect(&mut h.app);
    assert!(h.app.closed);
    assert_eq!(h.auth.closed.lock().unwrap().as_slice(), [DOC_API_KEY]);
    // The shutdown notice has the dialect's event shape.
    let mut h = Harness::new();
    let now = h.now();
    h.session.server_shutdown(now);
    assert_eq!(
        h.drain(),
        [format!(
            r#"{{"event":{{"e":"serverShutdown","E":{}}}}}"#,
            h.now_ms
        )]
    );
}
