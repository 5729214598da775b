//! Interoperability of the WebSocket API with the official Binance connector for Python
//! (`binance-connector` on PyPI, installed by scripts/test.sh, used unmodified): its
//! `SpotWebsocketAPIClient` signs each request itself and places a LIMIT order resting far from
//! the market, queries it (`order.status`), cancels it (`order.cancel`), and lists the account's
//! orders and trades (`allOrders`, `myTrades`); then places and cancels a trailing stop
//! (`trailingDelta`).

use std::process::Command;

use serde_json::Value;

use crate::auth::create_key;

#[test]
fn binance_connector_places_queries_and_cancels_an_order() {
    let (mut server, ws_port, _, _) = crate::ws::server();
    let key = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    server.launch();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/binance_ws_client.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg("--url")
        .arg(format!("ws://127.0.0.1:{ws_port}/ws-api/v3"))
        .arg("--key-id")
        .arg(&key.id)
        .arg("--secret")
        .arg(&key.secret)
        .args([
            "--symbol",
            "BTC-PERP",
            "--price",
            "100",
            "--quantity",
            "0.01",
        ])
        .output()
        .expect("python3 must be installed (scripts/test.sh installs binance-connector)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "binance-connector client failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log_text()
    );
    // Each printed result: `<method> ok: <result JSON>`.
    let result = |method: &str| -> Value {
        let prefix = format!("{method} ok: ");
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {method} result:\n{stdout}\n{stderr}"));
        serde_json::from_str(line).unwrap()
    };
    let placed = result("order.place");
    assert_eq!(placed["symbol"], "BTC-PERP", "{placed}");
    assert_eq!(placed["clientOrderId"], "interop-1", "{placed}");
    assert_eq!(placed["status"], "NEW", "{placed}");
    assert_eq!(placed["side"], "BUY", "{placed}");
    assert_eq!(placed["type"], "LIMIT", "{placed}");
    assert_eq!(placed["price"], "100.0", "{placed}");
    assert_eq!(placed["origQty"], "0.010", "{placed}");
    let order_id = placed["orderId"].as_i64().expect("orderId");

    let status = result("order.status");
    assert_eq!(status["orderId"].as_i64(), Some(order_id), "{status}");
    assert_eq!(status["status"], "NEW", "{status}");
    assert_eq!(status["isWorking"], true, "{status}");

    let cancelled = result("order.cancel");
    assert_eq!(cancelled["orderId"].as_i64(), Some(order_id), "{cancelled}");
    assert_eq!(cancelled["origClientOrderId"], "interop-1", "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELED", "{cancelled}");

    let orders = result("allOrders");
    let listed = orders.as_array().expect("allOrders is a list");
    assert_eq!(listed.len(), 1, "{orders}");
    assert_eq!(listed[0]["orderId"].as_i64(), Some(order_id), "{orders}");
    assert_eq!(listed[0]["clientOrderId"], "interop-1", "{orders}");
    assert_eq!(listed[0]["isWorking"], false, "{orders}");
    // Nothing traded.
    assert_eq!(result("myTrades"), serde_json::json!([]));

    // A trailing stop-loss limit (trailingDelta 250, no stopPrice), then cancelled.
    let trailing = result("trailing order.place");
    assert_eq!(
        (
            &trailing["type"],
            &trailing["status"],
            &trailing["trailingDelta"]
        ),
        (
            &serde_json::json!("STOP_LOSS_LIMIT"),
            &serde_json::json!("NEW"),
            &serde_json::json!(250)
        ),
        "{trailing}"
    );
    let cancelled = result("trailing order.cancel");
    assert_eq!(
        cancelled["origClientOrderId"], "interop-trail",
        "{cancelled}"
    );
    assert_eq!(cancelled["status"], "CANCELED", "{cancelled}");

    // A bracket: the working buy rests, its sell pair waits pending; listed, then cancelled.
    let bracket = result("orderList.place.otoco");
    assert_eq!(
        (&bracket["contingencyType"], &bracket["listClientOrderId"]),
        (
            &serde_json::json!("OTO"),
            &serde_json::json!("interop-bracket")
        ),
        "{bracket}"
    );
    let statuses: Vec<&Value> = bracket["orderReports"]
        .as_array()
        .expect("orderReports")
        .iter()
        .map(|o| &o["status"])
        .collect();
    assert_eq!(statuses, ["NEW", "PENDING_NEW", "PENDING_NEW"], "{bracket}");
    let list_id = bracket["orderListId"].as_i64().expect("orderListId");
    let lists = result("openOrderLists.status");
    assert_eq!(lists[0]["orderListId"].as_i64(), Some(list_id), "{lists}");
    let cancelled = result("orderList.cancel");
    assert_eq!(cancelled["listOrderStatus"], "ALL_DONE", "{cancelled}");
    let reports = cancelled["orderReports"].as_array().expect("orderReports");
    assert_eq!(reports.len(), 3, "{cancelled}");
    assert!(
        reports.iter().all(|o| o["status"] == "CANCELED"),
        "{cancelled}"
    );
}
