//! The WebSocket API (Binance Spot WebSocket API v3 dialect) seen from a client: the real
//! binary, a real WebSocket over TCP and TLS, keys created with the CLI, requests signed as the
//! dialect's clients sign them (sorted `k=v&…`, hex HMAC-SHA256 keyed with the secret's text;
//! Ed25519 for `session.logon`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use crate::auth::{create_key, env, Key};
use crate::harness::{
    free_port, hostile_seed, test_cert, tls_client, tls_connect, FixClient, Rng, Server,
};

/// Any blocking byte stream (TCP or TLS over TCP).
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A server with one FIX listener (required), a plain WebSocket listener on `ws`, a TLS one on
/// `wss`, the test instruments and two accounts for WebSocket keys.
pub(crate) fn config(fix: u16, ws: u16, wss: u16, cert: &str, key: &str) -> String {
    format!(
        r#"
data_dir = "{{DATA_DIR}}"

[tls]
cert_file = "{cert}"
key_file = "{key}"

[[listeners]]
name = "fix44"
bind = "127.0.0.1:{fix}"
tls = false
begin_string = "FIX.4.4"

[[ws_listeners]]
name = "ws"
bind = "127.0.0.1:{ws}"
tls = false

[[ws_listeners]]
name = "wss"
bind = "127.0.0.1:{wss}"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
accounts = ["TW-ACC"]
store_sync = "never"
authentication = "none"

[core]
accounts = ["WS-A", "WS-B"]

[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.005"
min_qty = "0.01"
max_qty = "10"

[risk]
session_rate_per_sec = 1000
session_burst = 1000
max_sessions = 16

[risk.defaults]
max_notional = "50000"
price_band_pct = "10"
max_open_orders = 100
max_open_orders_per_instrument = 50
order_rate_per_sec = 1000
order_burst = 1000
"#
    )
}

/// Sends a GTC limit order on BTC-PERP over FIX (`side` "1" buy, "2" sell).
fn send_fix_limit(fix: &mut FixClient, cl: &str, side: &str, qty: &str, px: &str) {
    fix.send(
        "D",
        &[
            (11, cl),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, side),
            (60, "20260101-00:00:00"),
            (38, qty),
            (59, "1"),
            (40, "2"),
            (44, px),
        ],
    );
}

pub(crate) struct Ws {
    ws: WebSocket<Box<dyn Stream>>,
    /// Events received while waiting for answers.
    events: Vec<Value>,
}

fn now_ms() -> i64 {
    portcullis_auth::clock::now_ms()
}

/// hex(HMAC-SHA256(secret text, payload)).
fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(payload.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The dialect's signature payload: every param but `signature`, sorted by name, `k=v&…`, each
/// value as its JSON text without quotes for strings.
fn payload(params: &serde_json::Map<String, Value>) -> String {
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| {
            let v = match &params[*k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `params` with `apiKey`, `timestamp` and the HMAC `signature` added.
pub(crate) fn signed(params: Value, key: &Key) -> Value {
    signed_at(params, key, now_ms())
}

/// `params` with `timestamp` (requests on a logged-on connection carry no signature, but still
/// a timestamp).
pub(crate) fn t(params: Value) -> Value {
    let mut p = params.as_object().cloned().unwrap_or_default();
    p.insert("timestamp".into(), json!(now_ms()));
    Value::Object(p)
}

fn signed_at(params: Value, key: &Key, timestamp: i64) -> Value {
    let mut p = params.as_object().cloned().unwrap_or_default();
    p.insert("apiKey".into(), json!(key.id));
    p.insert("timestamp".into(), json!(timestamp));
    let sig = hmac_hex(&key.secret, &payload(&p));
    p.insert("signature".into(), json!(sig));
    Value::Object(p)
}

impl Ws {
    pub(crate) fn plain(port: u16) -> Ws {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self::over(Box::new(s), &format!("ws://127.0.0.1:{port}/ws-api/v3"))
    }

    fn over(stream: Box<dyn Stream>, url: &str) -> Ws {
        let (ws, resp) = tungstenite::client::client(url, stream)
            .map_err(|e| format!("{e}"))
            .unwrap();
        assert_eq!(resp.status(), 101);
        Ws {
            ws,
            events: Vec::new(),
        }
    }

    fn send(&mut self, req: Value) {
        self.ws.send(Message::text(req.to_string())).unwrap();
    }

    /// The next text frame as JSON.
    fn next(&mut self) -> Value {
        loop {
            match self.ws.read().unwrap() {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Sends a request and returns its answer (events that arrive first are kept).
    pub(crate) fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(json!({"id": id, "method": method, "params": params}));
        loop {
            let v = self.next();
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            assert_eq!(v["id"], id, "answer to another request: {v}");
            return v;
        }
    }

    /// Waits for an event matching `pred`.
    pub(crate) fn event(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.events.iter().position(&pred) {
            return self.events.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let v = self.next();
            if pred(&v) {
                return v;
            }
            self.events.push(v);
        }
        panic!("no such event; got {:?}", self.events);
    }
}

pub(crate) fn server() -> (Server, u16, u16, rustls::pki_types::CertificateDer<'static>) {
    let (s, ws, wss, der, _) = server_with_fix();
    (s, ws, wss, der)
}

/// [`server`], with the FIX listener's port (its session `TW` needs no signed Logon).
fn server_with_fix() -> (
    Server,
    u16,
    u16,
    rustls::pki_types::CertificateDer<'static>,
    u16,
) {
    let (fix, ws, wss) = (free_port(), free_port(), free_port());
    let cfg = config(fix, ws, wss, "{CERT}", "{KEY}");
    let (s, der) = configured_with_cert(&cfg, &[fix, ws, wss]);
    (s, ws, wss, der, fix)
}

/// A server configured with `cfg` (not started), its `{CERT}` and `{KEY}` a test certificate.
pub(crate) fn configured(cfg: &str, ports: &[u16]) -> Server {
    configured_with_cert(cfg, ports).0
}

/// [`configured`], with the certificate for the clients' trust store.
fn configured_with_cert(
    cfg: &str,
    ports: &[u16],
) -> (Server, rustls::pki_types::CertificateDer<'static>) {
    let s = Server::configure(cfg, ports, &env());
    // The certificate lives in the server's directory, as long as the server.
    let (cert, key, der) = test_cert(&s.dir);
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("{CERT}", &cert.display().to_string())
        .replace("{KEY}", &key.display().to_string());
    std::fs::write(&s.config, text).unwrap();
    (s, der)
}

#[test]
fn ws_orders_trade_between_accounts_with_signed_requests_and_user_data() {
    let (mut server, ws_port, _, _) = server();
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    server.launch();
    let out = server.log_text();
    assert!(
        out.contains(&format!("listening: ws tcp 127.0.0.1:{ws_port}/ws-api/v3")),
        "{out}"
    );

    let mut ca = Ws::plain(ws_port);
    // Public methods; ids echoed verbatim (string, number, null).
    let r = ca.call(json!("p-1"), "ping", json!({}));
    assert_eq!(r["status"], 200, "{r}");
    let r = ca.call(json!(7), "time", json!({}));
    assert!(r["result"]["serverTime"].as_i64().unwrap() > 0, "{r}");
    let r = ca.call(Value::Null, "exchangeInfo", json!({}));
    let sym = &r["result"]["symbols"][0];
    assert_eq!(sym["symbol"], "BTC-PERP", "{r}");
    let filters = sym["filters"].as_array().unwrap();
    let price = filters
        .iter()
        .find(|f| f["filterType"] == "PRICE_FILTER")
        .unwrap();
    assert_eq!(price["tickSize"], "0.5", "{price}");
    let lot = filters
        .iter()
        .find(|f| f["filterType"] == "LOT_SIZE")
        .unwrap();
    assert_eq!(lot["stepSize"], "0.005", "{lot}");

    // session.logon with an HMAC key (our extension), then unsigned requests.
    let r = ca.call(json!("logon"), "session.logon", signed(json!({}), &a));
    assert_eq!(r["status"], 200, "{r}");
    let r = ca.call(json!("uds"), "userDataStream.subscribe", json!({}));
    assert_eq!(r["status"], 200, "{r}");
    let r = ca.call(
        json!("sell"),
        "order.place",
        t(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
               "price": "100.0", "quantity": "1.000", "newClientOrderId": "a-sell-1",
               "newOrderRespType": "RESULT"}),
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["status"], "NEW", "{r}");
    assert_eq!(r["result"]["clientOrderId"], "a-sell-1", "{r}");
    let sell_id = r["result"]["orderId"].as_u64().unwrap();
    assert!(sell_id < (1 << 53), "ids stay exact in every JSON client");
    let e = ca.event(|v| v["event"]["e"] == "executionReport" && v["event"]["x"] == "NEW");
    assert_eq!(e["event"]["c"], "a-sell-1", "{e}");

    // Account B crosses it with a signed request (no logon), its events streamed by a
    // subscription made with a signature (as the dialect's HMAC-key clients do).
    let mut cb = Ws::plain(ws_port);
    let r = cb.call(
        json!("subb"),
        "userDataStream.subscribe.signature",
        signed(json!({}), &b),
    );
    assert_eq!(r["result"], json!({"subscriptionId": 0}), "{r}");
    // A second connection of B only listens: the stream carries the account's orders of
    // every connection.
    let mut listener = Ws::plain(ws_port);
    let r = listener.call(
        json!("subl"),
        "userDataStream.subscribe.signature",
        signed(json!({}), &b),
    );
    assert_eq!(r["status"], 200, "{r}");
    let r = cb.call(
        json!(1),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "100.0", "quantity": "0.400", "newOrderRespType": "FULL"}),
            &b,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["status"], "FILLED", "{r}");
    let fills = r["result"]["fills"].as_array().unwrap();
    assert_eq!(fills.len(), 1, "{r}");
    assert_eq!(fills[0]["price"], "100.0", "{r}");
    assert_eq!(fills[0]["qty"], "0.400", "{r}");
    // The maker's user data stream sees the trade.
    let e = ca.event(|v| v["event"]["x"] == "TRADE");
    assert_eq!(e["event"]["X"], "PARTIALLY_FILLED", "{e}");
    assert_eq!(e["event"]["l"], "0.400", "{e}");
    assert_eq!(e["subscriptionId"], 0, "{e}");
    // The taker's, subscribed by signature, too; and its connection now streams and trades
    // for B only.
    let e = cb.event(|v| v["event"]["x"] == "TRADE");
    assert_eq!(
        (&e["subscriptionId"], &e["event"]["X"]),
        (&json!(0), &json!("FILLED")),
        "{e}"
    );
    let taker_id = e["event"]["i"].clone();
    for (x, status) in [("NEW", "NEW"), ("TRADE", "FILLED")] {
        let e = listener.event(|v| v["event"]["x"] == x);
        assert_eq!(
            (&e["event"]["i"], &e["event"]["X"], &e["event"]["s"]),
            (&taker_id, &json!(status), &json!("BTC-PERP")),
            "{e}"
        );
    }
    let r = cb.call(
        json!("as-a"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "90.0", "quantity": "0.400"}),
            &a,
        ),
    );
    assert_eq!(r["error"]["code"], -2010, "{r}");
    let r = cb.call(json!("subs"), "session.subscriptions", json!({}));
    assert_eq!(r["result"], json!([{"subscriptionId": 0}]), "{r}");

    // Queries.
    let r = ca.call(
        json!(2),
        "order.status",
        t(json!({"symbol": "BTC-PERP", "orderId": sell_id})),
    );
    assert_eq!(r["result"]["status"], "PARTIALLY_FILLED", "{r}");
    assert_eq!(r["result"]["executedQty"], "0.400", "{r}");
    let r = ca.call(
        json!(3),
        "openOrders.status",
        t(json!({"symbol": "BTC-PERP"})),
    );
    assert_eq!(r["result"].as_array().unwrap().len(), 1, "{r}");
    let r = ca.call(json!(4), "account.status", t(json!({})));
    assert_eq!(r["status"], 200, "{r}");
    // Positions in the futures dialect: A sold 0.4 at 100, B bought it.
    let r = ca.call(json!("pos"), "account.position", t(json!({})));
    assert_eq!(
        r["result"],
        json!([{"symbol": "BTC-PERP", "positionSide": "BOTH", "positionAmt": "-0.400",
                "entryPrice": "100.0", "breakEvenPrice": "100.0",
                "markPrice": "100.0", "notional": "-40.0000"}]),
        "{r}"
    );
    let r = cb.call(
        json!("pos-b"),
        "v2/account.position",
        signed(json!({"symbol": "BTC-PERP"}), &b),
    );
    assert_eq!(r["result"][0]["positionAmt"], "0.400", "{r}");
    let r = cb.call(
        json!("pos-eth"),
        "v2/account.position",
        signed(json!({"symbol": "ETH-PERP"}), &b),
    );
    assert_eq!(r["error"]["code"], -1121, "not listed: {r}");
    // The book as the market sees it: A's rest of 0.6 at 100, nothing bid.
    let r = cb.call(
        json!("depth"),
        "depth",
        signed(json!({"symbol": "BTC-PERP", "limit": 5}), &b),
    );
    assert_eq!(r["result"]["asks"], json!([["100.0", "0.600"]]), "{r}");
    assert_eq!(r["result"]["bids"], json!([]), "{r}");
    assert!(r["result"]["lastUpdateId"].as_u64().unwrap() > 0, "{r}");
    let r = ca.call(
        json!("tick"),
        "ticker.book",
        t(json!({"symbol": "BTC-PERP"})),
    );
    assert_eq!(
        r["result"],
        json!({"symbol": "BTC-PERP", "bidPrice": "0.0", "bidQty": "0.000",
               "askPrice": "100.0", "askQty": "0.600"}),
        "{r}"
    );
    let r = ca.call(
        json!("last"),
        "ticker.price",
        t(json!({"symbol": "BTC-PERP"})),
    );
    assert_eq!(
        r["result"],
        json!({"symbol": "BTC-PERP", "price": "100.0"}),
        "{r}"
    );
    let r = listener.call(json!("depth-anon"), "depth", json!({"symbol": "BTC-PERP"}));
    assert_eq!(r["status"], 400, "an authenticated request: {r}");
    let r = ca.call(
        json!("depth-eth"),
        "depth",
        t(json!({"symbol": "ETH-PERP"})),
    );
    assert_eq!(r["error"]["code"], -1121, "not listed: {r}");
    let r = ca.call(
        json!("comm"),
        "account.commission",
        t(json!({"symbol": "BTC-PERP"})),
    );
    assert_eq!(
        r["result"]["standardCommission"]["taker"], "0.00000000",
        "{r}"
    );
    let r = ca.call(
        json!(5),
        "order.status",
        t(json!({"symbol": "BTC-PERP", "orderId": 999_999})),
    );
    assert_eq!(r["error"]["code"], -2013, "{r}");

    // Cancel by client id; a second cancel is refused.
    let r = ca.call(
        json!(6),
        "order.cancel",
        t(json!({"symbol": "BTC-PERP", "origClientOrderId": "a-sell-1"})),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["status"], "CANCELED", "{r}");
    assert_eq!(r["result"]["origClientOrderId"], "a-sell-1", "{r}");
    let r = ca.call(
        json!(8),
        "order.cancel",
        t(json!({"symbol": "BTC-PERP", "orderId": sell_id})),
    );
    assert_eq!(r["error"]["code"], -2011, "{r}");

    // A risk reject: -2010 with the reason (price band) or a filter failure.
    let r = cb.call(
        json!(9),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "1000.0", "quantity": "0.100"}),
            &b,
        ),
    );
    assert!(r["status"] != 200, "{r}");

    // Bad signature: -1022; stale timestamp: -1021.
    let mut bad = signed(json!({"symbol": "BTC-PERP"}), &b);
    bad["signature"] = json!("00".repeat(32));
    let r = cb.call(json!(10), "openOrders.status", bad);
    assert_eq!(r["error"]["code"], -1022, "{r}");
    let stale = signed_at(json!({"symbol": "BTC-PERP"}), &b, now_ms() - 60_000);
    let r = cb.call(json!(11), "openOrders.status", stale);
    assert_eq!(r["error"]["code"], -1021, "{r}");

    // The operator's kill switch on B: account.status says B cannot trade, until it is off.
    let can_trade = |cb: &mut Ws| {
        let r = cb.call(json!("st"), "account.status", signed(json!({}), &b));
        assert_eq!(r["status"], 200, "{r}");
        r["result"]["canTrade"].clone()
    };
    assert_eq!(can_trade(&mut cb), json!(true));
    for (args, want) in [
        (&["admin", "kill", "--account", "WS-B"][..], false),
        (&["admin", "kill", "--account", "WS-B", "--off"][..], true),
        (&["admin", "kill"][..], false),
        (&["admin", "kill", "--off"][..], true),
    ] {
        let (code, out) = server.cli(args);
        assert_eq!(code, 0, "{out}");
        assert_eq!(can_trade(&mut cb), json!(want), "after {args:?}");
    }

    // Revoked with the CLI: the logged-on connection is told (401 -2015) and loses its rights.
    let (code, out) = server.cli(&["keys", "revoke", &a.id]);
    assert_eq!(code, 0, "{out}");
    let e = ca.event(|v| v["error"]["code"] == -2015);
    assert_eq!(e["status"], 401, "{e}");
    let r = ca.call(json!(12), "openOrders.status", t(json!({})));
    assert!(r["status"] != 200, "{r}");
}

#[test]
fn ws_over_tls_with_ed25519_logon() {
    let (mut server, _, wss_port, der) = server();
    let signing = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let public =
        base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().to_bytes());
    let (code, out) = server.cli(&[
        "keys",
        "create",
        "--account",
        "WS-A",
        "--scopes",
        "trade,read",
        "--ed25519-public-key",
        &public,
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let start = out.find('{').unwrap();
    let v: Value = serde_json::from_str(out[start..].trim()).unwrap();
    let key_id = v["key_id"].as_str().unwrap().to_owned();
    server.launch();

    let stream = tls_connect(wss_port, tls_client(der, &[&rustls::version::TLS13])).unwrap();
    let mut c = Ws::over(
        Box::new(stream),
        &format!("wss://localhost:{wss_port}/ws-api/v3"),
    );
    let r = c.call(json!(1), "ping", json!({}));
    assert_eq!(r["status"], 200, "{r}");

    let mut p = serde_json::Map::new();
    p.insert("apiKey".into(), json!(key_id));
    p.insert("timestamp".into(), json!(now_ms()));
    let sig = base64::engine::general_purpose::STANDARD
        .encode(signing.sign(payload(&p).as_bytes()).to_bytes());
    p.insert("signature".into(), json!(sig));
    let r = c.call(json!(2), "session.logon", Value::Object(p));
    assert_eq!(r["status"], 200, "{r}");
    let r = c.call(
        json!(3),
        "order.place",
        t(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
               "price": "100.0", "quantity": "0.100", "newOrderRespType": "ACK"}),
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert!(r["result"]["orderId"].as_u64().is_some(), "{r}");
    let r = c.call(
        json!(4),
        "openOrders.cancelAll",
        t(json!({"symbol": "BTC-PERP"})),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn ws_order_trades_against_a_fix_order() {
    let (mut server, ws_port, _, _, fix_port) = server_with_fix();
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    server.launch();

    let mut fix = FixClient::tcp(fix_port, "FIX.4.4");
    fix.logon(30, &[]);
    fix.expect("A");
    send_fix_limit(&mut fix, "fix-sell-1", "2", "0.500", "100.0");
    let ack = fix.expect("8");
    assert_eq!(ack.get(39), Some("0"), "{ack:?}");

    let mut ws = Ws::plain(ws_port);
    let r = ws.call(
        json!("x"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                   "price": "100.0", "quantity": "0.500", "newOrderRespType": "FULL"}),
            &b,
        ),
    );
    assert_eq!(r["result"]["status"], "FILLED", "{r}");
    assert_eq!(r["result"]["fills"][0]["qty"], "0.500", "{r}");
    let fill = fix.expect("8");
    assert_eq!(fill.get(39), Some("2"), "{fill:?}");
    assert_eq!(fill.get(32), Some("0.500"), "{fill:?}");
}

/// `order.status` by orderId sees every working order of the account, whichever connection
/// or FIX session entered it; clientOrderIds stay the connection's own, and other accounts'
/// orders stay unknown. A cancel by orderId of a FIX order is reported to its FIX session.
#[test]
fn ws_order_status_by_order_id_sees_the_accounts_orders_entered_elsewhere() {
    let (mut server, ws_port, _, _, fix_port) = server_with_fix();
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    let tw = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade,read"]);
    server.launch();

    let mut first = Ws::plain(ws_port);
    let r = first.call(
        json!(1),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "100.0", "quantity": "0.020", "newClientOrderId": "first-1"}),
            &a,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    let id = r["result"]["orderId"].as_u64().unwrap();

    // A second connection of the same account: by orderId the order is found.
    let mut second = Ws::plain(ws_port);
    let status = |ws: &mut Ws, n: i64, params: Value, key: &Key| {
        ws.call(json!(n), "order.status", signed(params, key))
    };
    let r = status(
        &mut second,
        2,
        json!({"symbol": "BTC-PERP", "orderId": id}),
        &a,
    );
    assert_eq!(r["status"], 200, "{r}");
    let o = &r["result"];
    assert_eq!(o["orderId"], id, "{r}");
    assert_eq!(o["clientOrderId"], "first-1", "{r}");
    assert_eq!(o["status"], "NEW", "{r}");
    assert_eq!(o["price"], "100.0", "{r}");
    assert_eq!(o["origQty"], "0.020", "{r}");
    assert_eq!(o["executedQty"], "0.000", "{r}");
    assert_eq!(o["side"], "BUY", "{r}");
    assert_eq!(o["type"], "LIMIT", "{r}");
    assert_eq!(o["timeInForce"], "GTC", "{r}");
    assert_eq!(o["isWorking"], true, "{r}");
    // Both ids given must name the same order.
    let r = status(
        &mut second,
        3,
        json!({"symbol": "BTC-PERP", "orderId": id, "origClientOrderId": "first-1"}),
        &a,
    );
    assert_eq!(r["status"], 200, "{r}");
    for (n, params) in [
        (
            4,
            json!({"symbol": "BTC-PERP", "orderId": id, "origClientOrderId": "other"}),
        ),
        (6, json!({"symbol": "BTC-PERP", "orderId": id + 1000})),
    ] {
        let r = status(&mut second, n, params, &a);
        assert_eq!(r["status"], 400, "{r}");
        assert_eq!(r["error"]["code"], -2013, "{r}");
    }
    // Another account's connection: unknown, as if it did not exist.
    let mut other = Ws::plain(ws_port);
    let r = status(
        &mut other,
        7,
        json!({"symbol": "BTC-PERP", "orderId": id}),
        &b,
    );
    assert_eq!(r["error"]["code"], -2013, "{r}");

    // Partly filled by another account's order: the second connection sees the new state.
    let r = other.call(
        json!(8),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "IOC",
                   "price": "100.0", "quantity": "0.010"}),
            &b,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    let r = status(
        &mut second,
        9,
        json!({"symbol": "BTC-PERP", "orderId": id}),
        &a,
    );
    let o = &r["result"];
    assert_eq!(o["status"], "PARTIALLY_FILLED", "{r}");
    assert_eq!(o["executedQty"], "0.010", "{r}");
    assert_eq!(o["cummulativeQuoteQty"], "1.0000", "{r}");
    // openOrders.status lists the account's working orders, whichever connection entered them.
    let open = |ws: &mut Ws, n: i64, key: &Key| {
        ws.call(
            json!(n),
            "openOrders.status",
            signed(json!({"symbol": "BTC-PERP"}), key),
        )
    };
    let r = open(&mut second, 91, &a);
    assert_eq!(r["status"], 200, "{r}");
    let list = r["result"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{r}");
    assert_eq!(list[0]["orderId"], id, "{r}");
    assert_eq!(list[0]["clientOrderId"], "first-1", "{r}");
    assert_eq!(list[0]["status"], "PARTIALLY_FILLED", "{r}");
    // The connection that entered it lists it the same (its own times are its table's).
    let mine = open(&mut first, 91, &a);
    let (mut theirs, mut own) = (list[0].clone(), mine["result"][0].clone());
    for v in [&mut theirs, &mut own] {
        for t in ["time", "updateTime", "workingTime"] {
            assert!(v[t].as_i64().unwrap() > 0, "{v}");
            v[t] = json!(0);
        }
    }
    assert_eq!(theirs, own);
    let r = open(&mut other, 92, &b);
    assert_eq!(r["result"], json!([]), "{r}");
    let r = second.call(
        json!(93),
        "openOrders.status",
        signed(json!({"symbol": "NOPE-PERP"}), &a),
    );
    assert_eq!(r["error"]["code"], -1121, "{r}");

    // An order entered over FIX, seen over the WebSocket API by its OrderID(37).
    let mut fix = FixClient::tcp(fix_port, "FIX.4.4");
    fix.logon(30, &[]);
    fix.expect("A");
    send_fix_limit(&mut fix, "fix-buy-7", "1", "0.020", "99.5");
    let ack = fix.expect("8");
    let fix_id: u64 = ack.get(37).unwrap().parse().unwrap();
    let mut desk = Ws::plain(ws_port);
    let r = status(
        &mut desk,
        10,
        json!({"symbol": "BTC-PERP", "orderId": fix_id}),
        &tw,
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["clientOrderId"], "fix-buy-7", "{r}");
    assert_eq!(r["result"]["price"], "99.5", "{r}");
    assert_eq!(r["result"]["origQty"], "0.020", "{r}");
    let r = desk.call(json!(13), "openOrders.status", signed(json!({}), &tw));
    assert_eq!(r["result"][0]["clientOrderId"], "fix-buy-7", "{r}");

    // Cancelled from the WebSocket connection: the FIX session that entered it is told
    // (an unsolicited ExecutionReport naming its ClOrdID), and the order is gone for both.
    let r = desk.call(
        json!(11),
        "order.cancel",
        signed(json!({"symbol": "BTC-PERP", "orderId": fix_id}), &tw),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["origClientOrderId"], "fix-buy-7", "{r}");
    let report = fix.expect("8");
    assert_eq!(report.get(150), Some("4"), "{report:?}");
    assert_eq!(report.get(39), Some("4"), "{report:?}");
    assert_eq!(report.get(11), Some("fix-buy-7"), "{report:?}");
    assert_eq!(
        report.get(37),
        Some(fix_id.to_string().as_str()),
        "{report:?}"
    );
    assert_eq!(report.get(151), Some("0.000"), "{report:?}");
    // Ended, it is answered from the account's history once the journal has it.
    let r = eventually(|| {
        let r = status(
            &mut desk,
            12,
            json!({"symbol": "BTC-PERP", "orderId": fix_id}),
            &tw,
        );
        (r["result"]["status"] == "CANCELED").then_some(r)
    });
    assert_eq!(r["result"]["clientOrderId"], "fix-buy-7", "{r}");
    assert_eq!(r["result"]["isWorking"], false, "{r}");
}

/// Asks `f` every 20 ms until it answers, for at most 10 s: what the account's history
/// answers follows the journal, a few milliseconds behind the order path.
pub(crate) fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "no answer in 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ws_all_orders_and_my_trades_list_the_accounts_past_across_connections_and_restarts() {
    let (mut server, ws_port, _, _, _) = server_with_fix();
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    server.launch();

    let place = |ws: &mut Ws, n: i64, params: Value, key: &Key| {
        let r = ws.call(json!(n), "order.place", signed(params, key));
        assert_eq!(r["status"], 200, "{r}");
        r["result"]["orderId"].as_u64().unwrap()
    };
    let buy = |price: &str, qty: &str, cl: &str| {
        json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
               "price": price, "quantity": qty, "newClientOrderId": cl})
    };
    // Two resting buys of A; B sells into both (best price first), then A cancels the rest.
    let mut first = Ws::plain(ws_port);
    let h1 = place(&mut first, 1, buy("100.0", "0.020", "h-1"), &a);
    let h2 = place(&mut first, 2, buy("101.0", "0.010", "h-2"), &a);
    let mut seller = Ws::plain(ws_port);
    place(
        &mut seller,
        3,
        json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "IOC",
               "price": "100.0", "quantity": "0.025"}),
        &b,
    );
    let r = first.call(
        json!(4),
        "order.cancel",
        signed(
            json!({"symbol": "BTC-PERP", "origClientOrderId": "h-1"}),
            &a,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");

    // A new connection of A sees both orders, oldest first, as they ended.
    let mut later = Ws::plain(ws_port);
    let all = |ws: &mut Ws, n: i64, params: Value, key: &Key| {
        let r = ws.call(json!(n), "allOrders", signed(params, key));
        assert_eq!(r["status"], 200, "{r}");
        r["result"].as_array().unwrap().clone()
    };
    let orders = eventually(|| {
        let v = all(&mut later, 5, json!({"symbol": "BTC-PERP"}), &a);
        (v.len() == 2 && v[0]["status"] == "CANCELED").then_some(v)
    });
    assert_eq!(orders[0]["orderId"], h1);
    assert_eq!(orders[0]["clientOrderId"], "h-1");
    assert_eq!(orders[0]["executedQty"], "0.015");
    assert_eq!(orders[0]["cummulativeQuoteQty"], "1.5000");
    assert_eq!(orders[0]["origQty"], "0.020");
    assert_eq!(orders[0]["isWorking"], false);
    assert_eq!(orders[1]["orderId"], h2);
    assert_eq!(orders[1]["status"], "FILLED");
    assert_eq!(orders[1]["executedQty"], "0.010");
    assert_eq!(orders[1]["cummulativeQuoteQty"], "1.0100");
    for o in &orders {
        assert!(
            o["time"].as_i64().unwrap() <= o["updateTime"].as_i64().unwrap(),
            "{o}"
        );
    }
    // Its trades: resting, so the maker of both; B's are the taker's, as the seller.
    let trades = |ws: &mut Ws, n: i64, params: Value, key: &Key| {
        let r = ws.call(json!(n), "myTrades", signed(params, key));
        assert_eq!(r["status"], 200, "{r}");
        r["result"].as_array().unwrap().clone()
    };
    let t = trades(&mut later, 6, json!({"symbol": "BTC-PERP"}), &a);
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(
        (
            &t[0]["orderId"],
            &t[0]["price"],
            &t[0]["qty"],
            &t[0]["quoteQty"]
        ),
        (
            &json!(h2),
            &json!("101.0"),
            &json!("0.010"),
            &json!("1.0100")
        )
    );
    assert_eq!(
        (&t[1]["orderId"], &t[1]["price"], &t[1]["qty"]),
        (&json!(h1), &json!("100.0"), &json!("0.015"))
    );
    assert!(
        t.iter()
            .all(|t| t["isBuyer"] == true && t["isMaker"] == true),
        "{t:?}"
    );
    let tb = trades(&mut seller, 7, json!({"symbol": "BTC-PERP"}), &b);
    assert_eq!(tb.len(), 2, "{tb:?}");
    assert!(
        tb.iter()
            .all(|t| t["isBuyer"] == false && t["isMaker"] == false),
        "{tb:?}"
    );
    assert_eq!(
        tb.iter().map(|t| &t["id"]).collect::<Vec<_>>(),
        t.iter().map(|t| &t["id"]).collect::<Vec<_>>()
    );
    // One order's trades; from a trade id.
    let one = trades(
        &mut later,
        8,
        json!({"symbol": "BTC-PERP", "orderId": h1}),
        &a,
    );
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["orderId"], h1);
    let from = trades(
        &mut later,
        9,
        json!({"symbol": "BTC-PERP", "fromId": t[1]["id"]}),
        &a,
    );
    assert_eq!(from, t[1..]);
    // order.status by the clientOrderId another connection chose, after the order ended.
    let r = later.call(
        json!(10),
        "order.status",
        signed(
            json!({"symbol": "BTC-PERP", "origClientOrderId": "h-1"}),
            &a,
        ),
    );
    assert_eq!(r["result"]["orderId"], h1, "{r}");
    assert_eq!(r["result"]["status"], "CANCELED", "{r}");

    // A working order of the first connection, cancelled from the later one by its
    // clientOrderId once the history has it.
    let h3 = place(&mut first, 11, buy("99.0", "0.010", "h-3"), &a);
    eventually(|| {
        let r = later.call(
            json!(12),
            "order.status",
            signed(
                json!({"symbol": "BTC-PERP", "origClientOrderId": "h-3"}),
                &a,
            ),
        );
        (r["status"] == 200).then_some(())
    });
    let r = later.call(
        json!(13),
        "order.cancel",
        signed(
            json!({"symbol": "BTC-PERP", "origClientOrderId": "h-3"}),
            &a,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["orderId"], h3, "{r}");
    assert_eq!(r["result"]["status"], "CANCELED", "{r}");
    // Another account's clientOrderIds are not looked up.
    let r = seller.call(
        json!(14),
        "order.cancel",
        signed(
            json!({"symbol": "BTC-PERP", "origClientOrderId": "h-2"}),
            &b,
        ),
    );
    assert_eq!(r["error"]["code"], -2011, "{r}");

    // The limit takes the latest; orderId starts the list there.
    let latest = all(
        &mut later,
        15,
        json!({"symbol": "BTC-PERP", "limit": 1}),
        &a,
    );
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0]["orderId"], h3);
    let from_h2 = all(
        &mut later,
        16,
        json!({"symbol": "BTC-PERP", "orderId": h2, "limit": 1}),
        &a,
    );
    assert_eq!(from_h2[0]["orderId"], h2);

    // After a restart the history is read back from the journal.
    let before = eventually(|| {
        let v = all(&mut later, 17, json!({"symbol": "BTC-PERP"}), &a);
        (v.len() == 3 && v[2]["status"] == "CANCELED").then_some(v)
    });
    drop((first, seller, later));
    server.restart();
    let mut again = Ws::plain(ws_port);
    let after = eventually(|| {
        let v = all(&mut again, 18, json!({"symbol": "BTC-PERP"}), &a);
        (v.len() == 3).then_some(v)
    });
    assert_eq!(after, before);
    assert_eq!(trades(&mut again, 19, json!({"symbol": "BTC-PERP"}), &a), t);
}

#[test]
fn ws_cancel_replace_malformed_input_and_rate_limit_answers() {
    let (fix, ws_port, wss) = (free_port(), free_port(), free_port());
    // A low request-weight budget on the plain listener, so the 429 answer is reachable.
    let cfg = config(fix, ws_port, wss, "{CERT}", "{KEY}").replacen(
        "tls = false\n\n[[ws_listeners]]",
        "tls = false\nrequest_weight_per_minute = 60\n\n[[ws_listeners]]",
        1,
    );
    let mut server = configured(&cfg, &[fix, ws_port, wss]);
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    server.launch();

    let mut c = Ws::plain(ws_port);
    let r = c.call(json!("logon"), "session.logon", signed(json!({}), &a));
    assert_eq!(r["status"], 200, "{r}");
    let r = c.call(
        json!("new"),
        "order.place",
        t(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                 "price": "90.0", "quantity": "1.000", "newClientOrderId": "r-1",
                 "newOrderRespType": "RESULT"}),
        ),
    );
    assert_eq!(r["result"]["status"], "NEW", "{r}");

    // Cancel-replace: the old order is cancelled and the new one placed.
    let r = c.call(
        json!("cr"),
        "order.cancelReplace",
        t(
            json!({"symbol": "BTC-PERP", "cancelReplaceMode": "STOP_ON_FAILURE",
                 "cancelOrigClientOrderId": "r-1", "side": "BUY", "type": "LIMIT",
                 "timeInForce": "GTC", "price": "91.0", "quantity": "1.000",
                 "newClientOrderId": "r-2", "newOrderRespType": "RESULT"}),
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["cancelResult"], "SUCCESS", "{r}");
    assert_eq!(r["result"]["newOrderResult"], "SUCCESS", "{r}");
    assert_eq!(
        r["result"]["newOrderResponse"]["clientOrderId"], "r-2",
        "{r}"
    );
    let r = c.call(
        json!("st"),
        "order.status",
        t(json!({"symbol": "BTC-PERP", "origClientOrderId": "r-2"})),
    );
    assert_eq!(r["result"]["price"], "91.0", "{r}");
    // Replacing an order that no longer exists: the cancel fails, nothing new is placed.
    let r = c.call(
        json!("cr2"),
        "order.cancelReplace",
        t(
            json!({"symbol": "BTC-PERP", "cancelReplaceMode": "STOP_ON_FAILURE",
                 "cancelOrigClientOrderId": "r-1", "side": "BUY", "type": "LIMIT",
                 "timeInForce": "GTC", "price": "92.0", "quantity": "1.000"}),
        ),
    );
    assert_eq!(r["status"], 400, "{r}");
    assert_eq!(r["error"]["data"]["newOrderResult"], "NOT_ATTEMPTED", "{r}");

    // Malformed input, each with the dialect's code; the connection stays usable.
    let order = |extra: Value| {
        let mut p = json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT",
                           "timeInForce": "GTC", "price": "90.0", "quantity": "1.000"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        t(p)
    };
    for (id, params, code) in [
        ("no-tif", order(json!({"timeInForce": null})), -1102),
        ("bad-side", order(json!({"side": "UP"})), 0),
        ("precision", order(json!({"price": "90.00001"})), -1111),
        ("symbol", order(json!({"symbol": "NOPE"})), -1121),
        ("lot", order(json!({"quantity": "1.001"})), -1013),
        ("unknown", order(json!({"colour": "blue"})), -1104),
    ] {
        let r = c.call(json!(id), "order.place", params);
        assert_ne!(r["status"], 200, "{id}: {r}");
        // An invalid enum value has several codes in the dialect; any error will do for it.
        if id != "bad-side" {
            assert_eq!(r["error"]["code"], code, "{id}: {r}");
        }
    }
    c.ws.send(Message::text("not json")).unwrap();
    let r = c.next();
    assert_eq!(r["status"], 400, "{r}");
    assert!(r["error"]["code"].as_i64().unwrap() < 0, "{r}");
    let r = c.call(json!("m"), "no.such.method", json!({}));
    assert_eq!(r["status"], 400, "{r}");
    let r = c.call(json!("p"), "ping", json!({}));
    assert_eq!(r["status"], 200, "still usable: {r}");

    // Rate limits: every answer reports the window; past the budget, 429 with -1003.
    assert_eq!(r["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT", "{r}");
    let mut limited = None;
    for i in 0..100 {
        let r = c.call(json!(format!("burst-{i}")), "ping", json!({}));
        if r["status"] == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the request-weight budget is enforced");
    assert_eq!(r["error"]["code"], -1003, "{r}");
}

/// JSON values that break a parameter's type, range, precision or meaning. No BTC-PERP: the
/// other account's book must stay its own.
/// A WebSocket upgrade on `port`: the answer, or why there was none.
fn try_upgrade(port: u16) -> Result<Ws, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws-api/v3");
    let stream: Box<dyn Stream> = Box::new(s);
    tungstenite::client::client(url, stream)
        .map(|(ws, _)| Ws {
            ws,
            events: Vec::new(),
        })
        .map_err(|e| e.to_string())
}

#[test]
fn ws_one_address_holds_at_most_max_connections_per_ip() {
    let (fix, ws_port, wss) = (free_port(), free_port(), free_port());
    let cfg = config(fix, ws_port, wss, "{CERT}", "{KEY}").replacen(
        "tls = false\n\n[[ws_listeners]]",
        "tls = false\nmax_connections_per_ip = 2\n\n[[ws_listeners]]",
        1,
    );
    let mut server = configured(&cfg, &[fix, ws_port, wss]);
    server.launch();
    // The start-up probe's connections have closed.
    std::thread::sleep(Duration::from_millis(300));
    let mut a = Ws::plain(ws_port);
    let b = Ws::plain(ws_port);
    // A third connection from the address is closed before its upgrade is answered.
    let third = try_upgrade(ws_port);
    assert!(third.is_err(), "a third connection was upgraded");
    // The two open ones are served.
    let r = a.call(json!(1), "ping", json!({}));
    assert_eq!(r["status"], 200, "{r}");
    // One closed: its place is given back.
    drop(b);
    let mut c = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(ws) = try_upgrade(ws_port) {
            c = Some(ws);
            break;
        }
    }
    let mut c = c.expect("the place of a closed connection is taken again");
    let r = c.call(json!(2), "ping", json!({}));
    assert_eq!(r["status"], 200, "{r}");
    // The FIX listener of the same server counts its own connections.
    let mut f = FixClient::tcp(fix, "FIX.4.4");
    f.logon(30, &[]);
    f.expect("A");
}

fn hostile_values() -> Vec<Value> {
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("0"),
        json!("-1"),
        json!("1e3"),
        json!("NaN"),
        json!("0.001"),
        json!("0.015"),
        json!("2000.01"),
        json!("2000.05"),
        json!("99999999999999999999999"),
        json!("x".repeat(300)),
        json!("ETH-USDT"),
        json!("BTC-261225-100000-C"),
        json!("ÿ\u{0}"),
        json!("BUY"),
        json!("SELL"),
        json!("LIMIT"),
        json!("MARKET"),
        json!("LIMIT_MAKER"),
        json!("GTC"),
        json!("IOC"),
        json!("FOK"),
        json!("EXPIRE_BOTH"),
        json!("ALLOW_FAILURE"),
        json!("e-1"),
        json!("e-2"),
        json!("a-keep"),
        json!([1, 2]),
        json!({"a": 1}),
        deep,
    ]
}

/// A valid request of each kind on ETH-PERP for `n`, before mutation.
fn hostile_template(rng: &mut Rng, n: usize) -> (String, serde_json::Map<String, Value>) {
    let cl = format!("e-{n}");
    let prev = format!("e-{}", n.saturating_sub(1 + rng.below(3)));
    let side = rng.pick(&["BUY", "SELL"]);
    let (method, params) = match rng.below(9) {
        0..=2 => (
            "order.place",
            json!({"symbol": "ETH-PERP", "side": side, "type": "LIMIT", "timeInForce": "GTC",
                   "price": "2000.00", "quantity": "1.00", "newClientOrderId": cl}),
        ),
        3 => (
            "order.cancel",
            json!({"symbol": "ETH-PERP", "origClientOrderId": prev}),
        ),
        4 => (
            "order.cancelReplace",
            json!({"symbol": "ETH-PERP", "cancelReplaceMode": "STOP_ON_FAILURE",
                   "cancelOrigClientOrderId": prev, "side": side, "type": "LIMIT",
                   "timeInForce": "GTC", "price": "2000.05", "quantity": "2.00",
                   "newClientOrderId": cl}),
        ),
        5 => (
            "order.status",
            json!({"symbol": "ETH-PERP", "origClientOrderId": prev}),
        ),
        // The other account's order, by its id and client id: never this session's to touch.
        6 => (
            rng.pick(&["order.cancel", "order.status", "order.cancelReplace"]),
            json!({"symbol": "BTC-PERP", "orderId": 1, "origClientOrderId": "a-keep",
                   "cancelOrigClientOrderId": "a-keep", "cancelReplaceMode": "ALLOW_FAILURE",
                   "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "price": "100.0",
                   "quantity": "1.000"}),
        ),
        // An amend of one of its own orders, or of the other account's.
        7 => (
            "order.amend.keepPriority",
            if rng.below(2) == 0 {
                json!({"symbol": "ETH-PERP", "origClientOrderId": prev, "newQty": "0.50"})
            } else {
                json!({"symbol": "BTC-PERP", "orderId": 1, "origClientOrderId": "a-keep",
                       "newQty": "0.500"})
            },
        ),
        _ => (
            rng.pick(&[
                "openOrders.status",
                "openOrders.cancelAll",
                "allOrders",
                "ping",
            ]),
            json!({"symbol": "ETH-PERP"}),
        ),
    };
    let mut params = params.as_object().unwrap().clone();
    params.insert("timestamp".into(), json!(now_ms()));
    (method.to_owned(), params)
}

/// What a hostile connection sends: a request mutated once or more, or bytes that are not a
/// request at all.
fn hostile_request(rng: &mut Rng, n: usize, values: &[Value]) -> String {
    if rng.below(12) == 0 {
        return rng
            .pick(&[
                "not json",
                "{",
                "[]",
                "{\"id\":",
                "null",
                "{\"id\": 1, \"method\": 7}",
                "{\"method\": \"ping\", \"params\": {}, \"id\": {\"x\": 1}}",
                "{\"id\": \"dup\", \"id\": \"dup\", \"method\": \"ping\"}",
            ])
            .to_owned();
    }
    let (mut method, mut params) = hostile_template(rng, n);
    let mut id = json!(format!("h-{n}"));
    let mut params_value = None;
    for _ in 0..rng.pick(&[1, 1, 1, 1, 1, 2, 2, 3]) {
        let keys: Vec<String> = params.keys().cloned().collect();
        match rng.below(9) {
            0..=3 if !keys.is_empty() => {
                params.insert(rng.pick(&keys), rng.pick(values));
            }
            4 if !keys.is_empty() => {
                params.remove(&rng.pick(&keys));
            }
            5 => {
                let key = rng.pick(&[
                    "apiKey",
                    "signature",
                    "account",
                    "orderId",
                    "stopPrice",
                    "icebergQty",
                    "recvWindow",
                    "newOrderRespType",
                    "selfTradePreventionMode",
                    "colour",
                ]);
                params.insert(key.to_owned(), rng.pick(values));
            }
            6 => {
                method = rng
                    .pick(&[
                        "order.place",
                        "order.cancel",
                        "order.status",
                        "order.cancelReplace",
                        "openOrders.status",
                        "openOrders.cancelAll",
                        "order.test",
                        "time",
                        "exchangeInfo",
                        "account.status",
                        "no.such.method",
                        "",
                        "ORDER.PLACE",
                    ])
                    .to_owned();
            }
            7 => id = rng.pick(values),
            _ => params_value = Some(rng.pick(values)),
        }
    }
    let params = params_value.unwrap_or(Value::Object(params));
    json!({"id": id, "method": method, "params": params}).to_string()
}

/// True if `v` holds, at any depth, an order whose `orderId` is `id`.
fn names_order(v: &Value, id: u64) -> bool {
    match v {
        Value::Object(m) => {
            m.get("orderId").and_then(Value::as_u64) == Some(id)
                || m.values().any(|x| names_order(x, id))
        }
        Value::Array(a) => a.iter().any(|x| names_order(x, id)),
        _ => false,
    }
}

#[test]
fn ws_hostile_requests_are_each_answered_and_harm_no_one() {
    let seed = hostile_seed();
    let (fix, ws_port, wss) = (free_port(), free_port(), free_port());
    let eth = "[[instruments]]\nsymbol = \"ETH-PERP\"\nprice_scale = 2\nqty_scale = 2\n\
               tick = \"0.05\"\nlot = \"0.01\"\nmin_qty = \"0.01\"\nmax_qty = \"100\"\n\n[risk]\n";
    let cfg = config(fix, ws_port, wss, "{CERT}", "{KEY}").replacen("[risk]\n", eth, 1);
    let mut server = configured(&cfg, &[fix, ws_port, wss]);
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    server.launch();

    let mut ca = Ws::plain(ws_port);
    let r = ca.call(json!("logon"), "session.logon", signed(json!({}), &a));
    assert_eq!(r["status"], 200, "{r}");
    let r = ca.call(
        json!("keep"),
        "order.place",
        t(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "100.0", "quantity": "1.000", "newClientOrderId": "a-keep"}),
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    let a_order_id = r["result"]["orderId"].as_u64().unwrap();

    let mut evil = Ws::plain(ws_port);
    let r = evil.call(json!("logon"), "session.logon", signed(json!({}), &b));
    assert_eq!(r["status"], 200, "{r}");
    let values = hostile_values();
    let mut rng = Rng::new(seed);
    let mut statuses = std::collections::BTreeMap::<i64, usize>::new();
    for n in 0..400 {
        let request = hostile_request(&mut rng, n, &values);
        if rng.below(25) == 0 {
            evil.ws
                .send(Message::binary(request.clone().into_bytes()))
                .unwrap();
        } else {
            evil.ws.send(Message::text(request.clone())).unwrap();
        }
        // A cancel of an unknown order after it: it goes through the core, behind anything
        // the request put there, so every answer to the request comes before it (order.status
        // would not do: it is answered at once from the connection's own table). Only the
        // second step of a cancel-replace is queued later: its answer may follow the fence.
        let fence = format!("fence-{n}");
        evil.send(json!({"id": fence, "method": "order.cancel",
                         "params": t(json!({"symbol": "ETH-PERP", "origClientOrderId": fence}))}));
        let what = format!("seed {seed}, request {n}: {request:.400}");
        let mut answers = Vec::new();
        let mut fenced = false;
        while !fenced || !answers.iter().any(|v: &Value| v.get("event").is_none()) {
            let v = match evil.ws.read() {
                Ok(Message::Text(t)) => serde_json::from_str::<Value>(t.as_str())
                    .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {t}")),
                Ok(Message::Close(c)) => panic!("{what}: the server closed: {c:?}"),
                Ok(_) => continue,
                Err(e) => panic!("{what}: no answer ({e}) after {answers:?}"),
            };
            if v["id"] == json!(fence) {
                assert_eq!(v["error"]["code"], -2011, "{what}: {v}");
                fenced = true;
                continue;
            }
            answers.push(v);
        }
        for v in answers {
            if v.get("event").is_some() {
                continue;
            }
            let status = v["status"]
                .as_i64()
                .unwrap_or_else(|| panic!("{what}: no status in {v}"));
            if status == 200 {
                assert!(v.get("result").is_some(), "{what}: {v}");
                // Nothing of the other account's is ever shown or done.
                assert!(!names_order(&v["result"], a_order_id), "{what}: {v}");
            } else {
                assert!((400..500).contains(&status), "{what}: {v}");
                let code = v["error"]["code"].as_i64().unwrap_or(0);
                assert!(code < 0, "{what}: error code {v}");
                let msg = v["error"]["msg"].as_str().unwrap_or("");
                assert!(!msg.is_empty(), "{what}: no message in {v}");
            }
            *statuses.entry(status).or_default() += 1;
        }
    }
    assert!(
        // Every seed's mix reaches both (at least 1 in 80 each).
        statuses.get(&200).is_some_and(|&n| n >= 5) && statuses.get(&400).is_some_and(|&n| n >= 5),
        "seed {seed}: the requests reached too few outcomes: {statuses:?}"
    );

    // The other account's order is untouched, and the hostile connection still trades.
    let r = ca.call(
        json!("st"),
        "order.status",
        t(json!({"symbol": "BTC-PERP", "origClientOrderId": "a-keep"})),
    );
    assert_eq!(r["result"]["status"], "NEW", "{r}");
    assert_eq!(r["result"]["executedQty"], "0.000", "{r}");
    let r = evil.call(
        json!("all"),
        "openOrders.cancelAll",
        t(json!({"symbol": "ETH-PERP"})),
    );
    assert!(r["status"] == 200 || r["status"] == 400, "{r}");
    let r = evil.call(
        json!("last"),
        "order.place",
        t(
            json!({"symbol": "ETH-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "1999.95", "quantity": "0.01", "newClientOrderId": "e-last"}),
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert!(server.is_running(), "the server exited");
    let log = server.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[test]
fn exchange_info_follows_an_operators_halt_and_resume() {
    let (mut server, ws_port, _, _) = server();
    server.launch();
    let mut c = Ws::plain(ws_port);
    let status = |c: &mut Ws| {
        let r = c.call(json!(1), "exchangeInfo", json!({"symbol": "BTC-PERP"}));
        r["result"]["symbols"][0]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status(&mut c), "TRADING");
    for (cmd, want) in [("halt", "HALT"), ("resume", "TRADING"), ("halt", "HALT")] {
        let (code, out) = server.cli(&["admin", cmd, "--instrument", "BTC-PERP"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(status(&mut c), want, "after {cmd}");
    }
}

#[test]
fn amend_keep_priority_reduces_an_order_in_place_and_it_still_trades_first() {
    let (mut server, ws_port, _, _, fix_port) = server_with_fix();
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    server.launch();
    let mut ca = Ws::plain(ws_port);
    let r = ca.call(json!("logon"), "session.logon", signed(json!({}), &a));
    assert_eq!(r["status"], 200, "{r}");
    let r = ca.call(json!("uds"), "userDataStream.subscribe", json!({}));
    assert_eq!(r["status"], 200, "{r}");
    let sell = |c: &mut Ws, key: Option<&Key>, id: &str, qty: &str| {
        let p = json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                       "price": "100.0", "quantity": qty, "newClientOrderId": id});
        let p = match key {
            Some(k) => signed(p, k),
            None => t(p),
        };
        let r = c.call(json!(id), "order.place", p);
        assert_eq!(r["result"]["status"], "NEW", "{r}");
        r["result"]["orderId"].as_u64().unwrap()
    };
    // A first at 100.0, then B behind it.
    let a_id = sell(&mut ca, None, "a-1", "1.000");
    let mut cb = Ws::plain(ws_port);
    sell(&mut cb, Some(&b), "b-1", "0.500");

    // A reduces its order: same orderId, new clientOrderId, new quantity, price kept.
    let r = ca.call(
        json!("amend"),
        "order.amend.keepPriority",
        t(
            json!({"symbol": "BTC-PERP", "origClientOrderId": "a-1", "newClientOrderId": "a-1b",
                 "newQty": "0.400"}),
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    let amended = &r["result"]["amendedOrder"];
    assert_eq!(amended["orderId"].as_u64(), Some(a_id), "{r}");
    assert_eq!(amended["origClientOrderId"], "a-1", "{r}");
    assert_eq!(amended["clientOrderId"], "a-1b", "{r}");
    assert_eq!(amended["qty"], "0.400", "{r}");
    assert_eq!(amended["price"], "100.0", "{r}");
    assert_eq!(amended["status"], "NEW", "{r}");
    assert!(r["result"]["executionId"].as_u64().is_some(), "{r}");
    let e = ca.event(|v| v["event"]["x"] == "REPLACED");
    assert_eq!(e["event"]["c"], "a-1b", "{e}");
    assert_eq!(e["event"]["q"], "0.400", "{e}");

    // Refused: not a reduction, an unknown order, a LOT_SIZE failure; the order is unchanged.
    for (p, code) in [
        (json!({"orderId": a_id, "newQty": "0.400"}), -2038),
        (json!({"orderId": a_id, "newQty": "2.000"}), -2038),
        (
            json!({"origClientOrderId": "a-1", "newQty": "0.100"}),
            -2013,
        ),
        (
            json!({"orderId": a_id, "newQty": "0.300", "newClientOrderId": "a-1b"}),
            -2038,
        ),
        (json!({"orderId": a_id, "newQty": "0.001"}), -1013),
    ] {
        let mut p = p;
        p["symbol"] = json!("BTC-PERP");
        let r = ca.call(json!("bad"), "order.amend.keepPriority", t(p.clone()));
        assert_eq!(r["error"]["code"], code, "{p}: {r}");
    }
    let r = ca.call(
        json!("st"),
        "order.status",
        t(json!({"symbol": "BTC-PERP", "orderId": a_id})),
    );
    assert_eq!(r["result"]["origQty"], "0.400", "{r}");
    assert_eq!(r["result"]["clientOrderId"], "a-1b", "{r}");

    // A FIX buyer of 0.5 takes A's 0.4 first (it kept its place ahead of B), then 0.1 of B's.
    let mut fix = FixClient::tcp(fix_port, "FIX.4.4");
    fix.logon(30, &[]);
    fix.expect("A");
    send_fix_limit(&mut fix, "fix-buy-1", "1", "0.500", "100.0");
    assert_eq!(fix.expect("8").get(39), Some("0"));
    let first = fix.expect("8");
    let second = fix.expect("8");
    assert_eq!(
        (first.get(32), second.get(32)),
        (Some("0.400"), Some("0.100")),
        "{first:?} {second:?}"
    );
    let e = ca.event(|v| v["event"]["x"] == "TRADE");
    assert_eq!(e["event"]["X"], "FILLED", "{e}");
    assert_eq!(e["event"]["c"], "a-1b", "{e}");
}

/// A STOP_LOSS_LIMIT order waits (NEW, its stopPrice shown) until another account's trade
/// reaches its stop price, then buys at its limit; its executionReports carry `P`.
/// A running server with a logged-on FIX 4.4 session and one plain WebSocket connection for
/// each of the accounts WS-A and WS-B, with their keys (scopes trade and read).
struct TwoWsAccounts {
    _server: Server,
    fix: FixClient,
    wa: Ws,
    wb: Ws,
    a: Key,
    b: Key,
    /// The WebSocket listener's port, for more connections.
    ws_port: u16,
}

fn two_ws_accounts() -> TwoWsAccounts {
    let (mut server, ws_port, _, _, fix_port) = server_with_fix();
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    server.launch();
    let mut fix = FixClient::tcp(fix_port, "FIX.4.4");
    fix.logon(30, &[]);
    fix.expect("A");
    TwoWsAccounts {
        _server: server,
        fix,
        wa: Ws::plain(ws_port),
        wb: Ws::plain(ws_port),
        ws_port,
        a,
        b,
    }
}

/// A signed BTC-PERP LIMIT IOC buy of `qty` at `px`; asserts it filled completely.
fn buy_ioc_filled(ws: &mut Ws, key: &Key, px: &str, qty: &str) {
    let r = ws.call(
        json!("ioc"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                   "price": px, "quantity": qty, "newOrderRespType": "RESULT"}),
            key,
        ),
    );
    assert_eq!(r["result"]["status"], "FILLED", "{r}");
}

/// A FIX limit order, once acknowledged (reports of earlier orders may come first).
fn fix_limit_acked(fix: &mut FixClient, cl: &str, side: &str, qty: &str, px: &str) {
    send_fix_limit(fix, cl, side, qty, px);
    loop {
        let m = fix.expect("8");
        if m.get(11) == Some(cl) && m.get(150) == Some("0") {
            break;
        }
    }
}

impl Ws {
    /// Logs the connection on with `key` and subscribes it to the user data stream (which
    /// needs a logged-on connection).
    fn logon_and_subscribe(&mut self, key: &Key) {
        let r = self.call(json!("logon"), "session.logon", signed(json!({}), key));
        assert_eq!(r["status"], 200, "{r}");
        let r = self.call(json!("sub"), "userDataStream.subscribe", json!({}));
        assert_eq!(r["status"], 200, "{r}");
    }
}

#[test]
fn ws_stop_loss_limit_waits_for_a_trade_at_its_stop_price_then_buys_at_its_limit() {
    let TwoWsAccounts {
        _server,
        mut fix,
        mut wa,
        mut wb,
        a,
        b,
        ..
    } = two_ws_accounts();
    let fix_limit =
        |fix: &mut FixClient, cl: &str, qty: &str, px: &str| fix_limit_acked(fix, cl, "2", qty, px);
    let buy_ioc = |ws: &mut Ws, key: &Key, px: &str, qty: &str| {
        ws.call(
            json!("ioc"),
            "order.place",
            signed(
                json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                       "price": px, "quantity": qty, "newOrderRespType": "RESULT"}),
                key,
            ),
        )
    };
    // The last trade: 100.
    fix_limit(&mut fix, "S1", "0.100", "100.0");
    assert_eq!(
        buy_ioc(&mut wa, &a, "100.0", "0.100")["result"]["status"],
        "FILLED"
    );

    // The user data stream needs a logged-on connection.
    wb.logon_and_subscribe(&b);
    let r = wb.call(
        json!("stop"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "STOP_LOSS_LIMIT",
                   "timeInForce": "GTC", "stopPrice": "105.0", "price": "106.0",
                   "quantity": "0.200", "newOrderRespType": "RESULT"}),
            &b,
        ),
    );
    let res = &r["result"];
    assert_eq!(
        (&res["status"], &res["type"], &res["price"]),
        (&json!("NEW"), &json!("STOP_LOSS_LIMIT"), &json!("106.0")),
        "{r}"
    );
    let stop_id = res["orderId"].as_u64().unwrap();
    let ack = wb.event(|v| v["event"]["x"] == "NEW");
    assert_eq!(ack["event"]["P"], "105.0", "{ack}");
    let status = |ws: &mut Ws| {
        ws.call(
            json!("st"),
            "order.status",
            signed(json!({"symbol": "BTC-PERP", "orderId": stop_id}), &b),
        )["result"]
            .clone()
    };
    let s = status(&mut wb);
    assert_eq!(
        (&s["status"], &s["stopPrice"]),
        (&json!("NEW"), &json!("105.0")),
        "{s}"
    );
    // A stop without its stopPrice is refused as the dialect does.
    let r = wb.call(
        json!("bad"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "STOP_LOSS", "quantity": "0.100"}),
            &b,
        ),
    );
    assert_eq!(r["error"]["code"], -1102, "{r}");

    // Liquidity at 106; a trade at 104.5 leaves the stop waiting, one at 105 triggers it.
    fix_limit(&mut fix, "S2", "0.200", "106.0");
    fix_limit(&mut fix, "S3", "0.100", "104.5");
    assert_eq!(
        buy_ioc(&mut wa, &a, "104.5", "0.100")["result"]["status"],
        "FILLED"
    );
    assert_eq!(status(&mut wb)["status"], "NEW");
    fix_limit(&mut fix, "S4", "0.100", "105.0");
    assert_eq!(
        buy_ioc(&mut wa, &a, "105.0", "0.100")["result"]["status"],
        "FILLED"
    );
    let fill = wb.event(|v| v["event"]["x"] == "TRADE");
    let e = &fill["event"];
    assert_eq!(
        (&e["i"], &e["o"], &e["X"], &e["L"], &e["l"], &e["P"]),
        (
            &json!(stop_id),
            &json!("STOP_LOSS_LIMIT"),
            &json!("FILLED"),
            &json!("106.0"),
            &json!("0.200"),
            &json!("105.0")
        ),
        "{fill}"
    );
    assert_eq!(status(&mut wb)["status"], "FILLED");
}

#[test]
fn ws_take_profit_sells_at_market_once_a_trade_rises_to_its_stop_price() {
    let TwoWsAccounts {
        _server,
        mut fix,
        mut wa,
        mut wb,
        a,
        b,
        ..
    } = two_ws_accounts();
    let fix_limit = fix_limit_acked;
    let buy_ioc = |ws: &mut Ws, px: &str| {
        ws.call(
            json!("ioc"),
            "order.place",
            signed(
                json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                       "price": px, "quantity": "0.100", "newOrderRespType": "RESULT"}),
                &a,
            ),
        )["result"]["status"]
            .clone()
    };
    // The last trade: 100.
    fix_limit(&mut fix, "S1", "2", "0.100", "100.0");
    assert_eq!(buy_ioc(&mut wa, "100.0"), "FILLED");

    wb.logon_and_subscribe(&b);
    // A sell take-profit at 110: a market sell once a trade is at 110 or higher.
    let r = wb.call(
        json!("tp"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "TAKE_PROFIT",
                   "stopPrice": "110.0", "quantity": "0.200", "newOrderRespType": "RESULT"}),
            &b,
        ),
    );
    let res = &r["result"];
    assert_eq!(
        (&res["status"], &res["type"], &res["stopPrice"]),
        (&json!("NEW"), &json!("TAKE_PROFIT"), &json!("110.0")),
        "{r}"
    );
    let tp_id = res["orderId"].as_u64().unwrap();
    let status = |ws: &mut Ws| {
        ws.call(
            json!("st"),
            "order.status",
            signed(json!({"symbol": "BTC-PERP", "orderId": tp_id}), &b),
        )["result"]["status"]
            .clone()
    };
    // A bid at 108 for it to sell into; a trade at 109.5 leaves it waiting (a stop-loss sell
    // at 110 would have sold already), one at 110 triggers it.
    fix_limit(&mut fix, "B1", "1", "0.200", "108.0");
    fix_limit(&mut fix, "S2", "2", "0.100", "109.5");
    assert_eq!(buy_ioc(&mut wa, "109.5"), "FILLED");
    assert_eq!(status(&mut wb), "NEW");
    fix_limit(&mut fix, "S3", "2", "0.100", "110.0");
    assert_eq!(buy_ioc(&mut wa, "110.0"), "FILLED");
    let fill = wb.event(|v| v["event"]["x"] == "TRADE");
    let e = &fill["event"];
    assert_eq!(
        (&e["i"], &e["o"], &e["X"], &e["L"], &e["l"], &e["P"]),
        (
            &json!(tp_id),
            &json!("TAKE_PROFIT"),
            &json!("FILLED"),
            &json!("108.0"),
            &json!("0.200"),
            &json!("110.0")
        ),
        "{fill}"
    );
    assert_eq!(status(&mut wb), "FILLED");
    // The FIX bid it sold into was filled at its price.
    loop {
        let m = fix.expect("8");
        if m.get(11) == Some("B1") && m.get(39) == Some("2") {
            assert_eq!(m.get(31), Some("108.0"), "{m:?}");
            break;
        }
    }
}

#[test]
fn ws_iceberg_shows_its_iceberg_qty_and_its_next_part_waits_behind_the_level() {
    let TwoWsAccounts {
        _server,
        mut fix,
        mut wa,
        mut wb,
        a,
        b,
        ..
    } = two_ws_accounts();
    wa.logon_and_subscribe(&a);
    let info = wa.call(json!("info"), "exchangeInfo", json!({"symbol": "BTC-PERP"}));
    let sym = &info["result"]["symbols"][0];
    assert_eq!(sym["icebergAllowed"], true, "{info}");
    assert!(
        sym["filters"]
            .as_array()
            .unwrap()
            .contains(&json!({"filterType": "ICEBERG_PARTS", "limit": 100})),
        "{info}"
    );
    // A: sell 0.300 showing 0.100 at a time; then FIX sells 0.100 at the same price.
    let r = wa.call(
        json!("ice"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "100.0", "quantity": "0.300", "icebergQty": "0.100"}),
            &a,
        ),
    );
    assert_eq!(r["result"]["status"], "NEW", "{r}");
    let ice_id = r["result"]["orderId"].as_u64().unwrap();
    let ack = wa.event(|v| v["event"]["x"] == "NEW");
    assert_eq!(ack["event"]["F"], "0.100", "{ack}");
    send_fix_limit(&mut fix, "S1", "2", "0.100", "100.0");
    assert_eq!(fix.expect("8").get(39), Some("0"));
    // B buys 0.200: the iceberg's shown 0.100, then the FIX order (the iceberg's next part
    // waits behind it).
    let r = wb.call(
        json!("buy"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                   "price": "100.0", "quantity": "0.200", "newOrderRespType": "FULL"}),
            &b,
        ),
    );
    assert_eq!(r["result"]["status"], "FILLED", "{r}");
    assert_eq!(r["result"]["fills"].as_array().unwrap().len(), 2, "{r}");
    let fill = fix.expect("8");
    assert_eq!(
        (fill.get(11), fill.get(39)),
        (Some("S1"), Some("2")),
        "{fill:?}"
    );
    let st = wa.call(
        json!("st"),
        "order.status",
        signed(json!({"symbol": "BTC-PERP", "orderId": ice_id}), &a),
    );
    let s = &st["result"];
    assert_eq!(
        (&s["status"], &s["executedQty"], &s["icebergQty"]),
        (&json!("PARTIALLY_FILLED"), &json!("0.100"), &json!("0.100")),
        "{st}"
    );
    // 101 parts is one too many: the dialect's filter failure.
    let r = wa.call(
        json!("parts"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "100.0", "quantity": "5.050", "icebergQty": "0.050"}),
            &a,
        ),
    );
    assert_eq!(r["error"]["code"], -1013, "{r}");
    assert_eq!(r["error"]["msg"], "Filter failure: ICEBERG_PARTS", "{r}");
}

#[test]
fn ws_gtd_order_shows_its_good_till_date_and_expires_with_an_execution_report() {
    let TwoWsAccounts {
        _server,
        mut fix,
        mut wa,
        wb: _,
        a,
        b: _,
        ..
    } = two_ws_accounts();
    wa.logon_and_subscribe(&a);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // A GTD buy at 90 good for 1.5 s (the futures dialect's timeInForce and goodTillDate).
    let until = now_ms() + 1_500;
    let r = wa.call(
        json!("gtd"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTD",
                   "goodTillDate": until, "price": "90.0", "quantity": "0.100",
                   "newOrderRespType": "RESULT"}),
            &a,
        ),
    );
    let res = &r["result"];
    assert_eq!(
        (&res["status"], &res["timeInForce"], &res["goodTillDate"]),
        (&json!("NEW"), &json!("GTD"), &json!(until)),
        "{r}"
    );
    let id = res["orderId"].as_u64().unwrap();
    let ack = wa.event(|v| v["event"]["x"] == "NEW");
    assert_eq!(ack["event"]["f"], "GTD", "{ack}");
    // A goodTillDate already past is refused.
    let r = wa.call(
        json!("late"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTD",
                   "goodTillDate": now_ms() - 1_000, "price": "90.0", "quantity": "0.100"}),
            &a,
        ),
    );
    assert_eq!(
        (&r["error"]["code"], &r["error"]["msg"]),
        (&json!(-2010), &json!("goodTillDate is already past.")),
        "{r}"
    );
    // At its time it expires, told on the user data stream, and no longer trades: a FIX sell
    // at 90 rests.
    let exp = wa.event(|v| v["event"]["x"] == "EXPIRED");
    assert_eq!(
        (&exp["event"]["i"], &exp["event"]["X"], &exp["event"]["f"]),
        (&json!(id), &json!("EXPIRED"), &json!("GTD")),
        "{exp}"
    );
    assert!(now_ms() >= until, "expired {} ms early", until - now_ms());
    let st = wa.call(
        json!("st"),
        "order.status",
        signed(json!({"symbol": "BTC-PERP", "orderId": id}), &a),
    );
    assert_eq!(
        (&st["result"]["status"], &st["result"]["goodTillDate"]),
        (&json!("EXPIRED"), &json!(until)),
        "{st}"
    );
    send_fix_limit(&mut fix, "S1", "2", "0.100", "90.0");
    let m = fix.expect("8");
    assert_eq!((m.get(150), m.get(39)), (Some("0"), Some("0")), "{m:?}");
}

#[test]
fn ws_trailing_stop_follows_the_best_price_and_sells_once_the_market_falls_its_distance() {
    let TwoWsAccounts {
        _server,
        mut fix,
        mut wa,
        mut wb,
        a,
        b,
        ..
    } = two_ws_accounts();
    let fix_limit = fix_limit_acked;
    let trade_at = |fix: &mut FixClient, wa: &mut Ws, cl: &str, px: &str| {
        fix_limit(fix, cl, "2", "0.100", px);
        buy_ioc_filled(wa, &a, px, "0.100");
    };
    // The last trade: 100.
    trade_at(&mut fix, &mut wa, "S1", "100.0");
    wb.logon_and_subscribe(&b);
    // A trailing stop-loss sell of 2 % (200 bips) without an activation price: it tracks from
    // the last trade, 100.
    let r = wb.call(
        json!("ts"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "STOP_LOSS",
                   "trailingDelta": 200, "quantity": "0.200", "newOrderRespType": "RESULT",
                   "strategyId": 7, "strategyType": 1000001}),
            &b,
        ),
    );
    let res = &r["result"];
    assert_eq!(
        (&res["status"], &res["type"], &res["trailingDelta"]),
        (&json!("NEW"), &json!("STOP_LOSS"), &json!(200)),
        "{r}"
    );
    // The client's strategy tags come back with it.
    assert_eq!(
        (&res["strategyId"], &res["strategyType"]),
        (&json!(7), &json!(1000001)),
        "{r}"
    );
    let id = res["orderId"].as_u64().unwrap();
    let status = |ws: &mut Ws| {
        let r = ws.call(
            json!("st"),
            "order.status",
            signed(json!({"symbol": "BTC-PERP", "orderId": id}), &b),
        );
        assert_eq!(r["result"]["trailingDelta"], 200, "{r}");
        r["result"].clone()
    };
    // Waiting for its trigger, it is not working yet: isWorking false, workingTime -1, as in
    // its executionReport.
    let s = status(&mut wb);
    assert_eq!(
        (&s["status"], &s["isWorking"], &s["workingTime"]),
        (&json!("NEW"), &json!(false), &json!(-1)),
        "{s}"
    );
    let new = wb.event(|v| v["event"]["x"] == "NEW");
    assert_eq!(
        (&new["event"]["w"], &new["event"]["d"]),
        (&json!(false), &json!(200)),
        "{new}"
    );
    // A bid at 101 for it to sell into. A rise to 104 moves its trigger to 101.92: 102 leaves
    // it waiting (a plain stop at 98 would too), 101.5 triggers it.
    fix_limit(&mut fix, "B1", "1", "0.200", "101.0");
    trade_at(&mut fix, &mut wa, "S2", "104.0");
    trade_at(&mut fix, &mut wa, "S3", "102.0");
    assert_eq!(status(&mut wb)["status"], "NEW");
    trade_at(&mut fix, &mut wa, "S4", "101.5");
    let fill = wb.event(|v| v["event"]["x"] == "TRADE");
    let e = &fill["event"];
    assert_eq!(
        (&e["i"], &e["o"], &e["X"], &e["L"], &e["l"], &e["d"]),
        (
            &json!(id),
            &json!("STOP_LOSS"),
            &json!("FILLED"),
            &json!("101.0"),
            &json!("0.200"),
            &json!(200)
        ),
        "{fill}"
    );
    assert_eq!((&e["j"], &e["J"]), (&json!(7), &json!(1000001)), "{fill}");
    let s = status(&mut wb);
    assert_eq!(s["status"], "FILLED", "{s}");
    assert!(s["workingTime"].as_i64().unwrap() > 0, "{s}");
    // Out of the TRAILING_DELTA filter's 10–2000 bips: -1013.
    let r = wb.call(
        json!("far"),
        "order.place",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "STOP_LOSS",
                   "trailingDelta": 2500, "quantity": "0.100"}),
            &b,
        ),
    );
    assert_eq!(
        (&r["error"]["code"], &r["error"]["msg"]),
        (&json!(-1013), &json!("Filter failure: TRAILING_DELTA")),
        "{r}"
    );
}

#[test]
fn ws_oco_one_order_trading_cancels_the_other_and_the_list_reports_its_status() {
    let TwoWsAccounts {
        _server,
        mut fix,
        mut wa,
        mut wb,
        a,
        b,
        ..
    } = two_ws_accounts();
    let fix_limit = fix_limit_acked;
    // The last trade: 100.
    fix_limit(&mut fix, "S1", "2", "0.100", "100.0");
    buy_ioc_filled(&mut wa, &a, "100.0", "0.100");
    wb.logon_and_subscribe(&b);
    // B sells 0.200: a LIMIT_MAKER at 104 or, if the market falls to 96, at market.
    let place = |ws: &mut Ws, id: &str, stop: &str| {
        ws.call(
            json!(id),
            "orderList.place.oco",
            signed(
                json!({"symbol": "BTC-PERP", "side": "SELL", "quantity": "0.200",
                       "aboveType": "LIMIT_MAKER", "abovePrice": "104.0",
                       "belowType": "STOP_LOSS", "belowStopPrice": stop,
                       "listClientOrderId": id, "newOrderRespType": "RESULT"}),
                &b,
            ),
        )
    };
    let r = place(&mut wb, "L1", "96.0");
    let res = &r["result"];
    assert_eq!(
        (
            &res["contingencyType"],
            &res["listClientOrderId"],
            &res["listOrderStatus"]
        ),
        (&json!("OCO"), &json!("L1"), &json!("EXECUTING")),
        "{r}"
    );
    let list_id = res["orderListId"].as_u64().unwrap();
    let reports = res["orderReports"].as_array().unwrap();
    let (limit, stop) = (&reports[0], &reports[1]);
    assert_eq!(
        (&limit["type"], &limit["orderListId"], &limit["status"]),
        (&json!("LIMIT_MAKER"), &json!(list_id), &json!("NEW")),
        "{r}"
    );
    assert_eq!(
        (&stop["type"], &stop["orderListId"], &stop["stopPrice"]),
        (&json!("STOP_LOSS"), &json!(list_id), &json!("96.0")),
        "{r}"
    );
    let (limit_id, stop_id) = (
        limit["orderId"].as_u64().unwrap(),
        stop["orderId"].as_u64().unwrap(),
    );
    let started = wb.event(|v| v["event"]["e"] == "listStatus");
    assert_eq!(
        (&started["event"]["g"], &started["event"]["l"]),
        (&json!(list_id), &json!("EXEC_STARTED")),
        "{started}"
    );
    // Asked for by its client id, and among the open lists.
    let status = wb.call(
        json!("ls"),
        "orderList.status",
        signed(json!({"origClientOrderId": "L1"}), &b),
    );
    assert_eq!(
        (
            &status["result"]["orderListId"],
            &status["result"]["listOrderStatus"],
            status["result"]["orders"].as_array().map(Vec::len)
        ),
        (&json!(list_id), &json!("EXECUTING"), Some(2)),
        "{status}"
    );
    let open = wb.call(json!("ol"), "openOrderLists.status", signed(json!({}), &b));
    assert_eq!(open["result"][0]["orderListId"], json!(list_id), "{open}");
    // A buys 0.100 at 104: half the limit trades, and the stop is cancelled.
    buy_ioc_filled(&mut wa, &a, "104.0", "0.100");
    let fill = wb.event(|v| v["event"]["x"] == "TRADE");
    assert_eq!(
        (
            &fill["event"]["i"],
            &fill["event"]["g"],
            &fill["event"]["X"]
        ),
        (
            &json!(limit_id),
            &json!(list_id),
            &json!("PARTIALLY_FILLED")
        ),
        "{fill}"
    );
    let gone = wb.event(|v| v["event"]["x"] == "CANCELED");
    assert_eq!(
        (&gone["event"]["i"], &gone["event"]["g"]),
        (&json!(stop_id), &json!(list_id)),
        "{gone}"
    );
    // The rest of the limit trades: the list is all done.
    buy_ioc_filled(&mut wa, &a, "104.0", "0.100");
    let done = wb.event(|v| v["event"]["e"] == "listStatus");
    assert_eq!(
        (
            &done["event"]["g"],
            &done["event"]["l"],
            &done["event"]["L"]
        ),
        (&json!(list_id), &json!("ALL_DONE"), &json!("ALL_DONE")),
        "{done}"
    );
    // A list whose stop the market has already passed is refused whole: its limit, placed
    // first, is cancelled.
    let r = place(&mut wb, "L2", "105.0");
    assert_eq!(r["error"]["code"], -2010, "{r}");
    assert!(
        r["error"]["msg"]
            .as_str()
            .unwrap()
            .contains("order list rejected"),
        "{r}"
    );
    let cancelled = wb.event(|v| v["event"]["x"] == "CANCELED");
    assert_eq!(cancelled["event"]["o"], "LIMIT_MAKER", "{cancelled}");
    let open = wb.call(
        json!("open"),
        "openOrders.status",
        signed(json!({"symbol": "BTC-PERP"}), &b),
    );
    assert_eq!(open["result"], json!([]), "{open}");
    // orderList.cancel cancels both orders and answers with their reports.
    let r = place(&mut wb, "L3", "96.0");
    let l3 = r["result"]["orderListId"].as_u64().unwrap();
    let r = wb.call(
        json!("lc"),
        "orderList.cancel",
        signed(json!({"symbol": "BTC-PERP", "orderListId": l3}), &b),
    );
    let res = &r["result"];
    assert_eq!(
        (
            &res["listStatusType"],
            &res["listOrderStatus"],
            &res["listClientOrderId"]
        ),
        (&json!("ALL_DONE"), &json!("ALL_DONE"), &json!("L3")),
        "{r}"
    );
    let reports = res["orderReports"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{r}");
    assert!(reports.iter().all(|o| o["status"] == "CANCELED"), "{r}");
    let open = wb.call(json!("ol2"), "openOrderLists.status", signed(json!({}), &b));
    assert_eq!(open["result"], json!([]), "{open}");
    // Again, or an unknown list: -2011.
    let again = wb.call(
        json!("lc2"),
        "orderList.cancel",
        signed(json!({"symbol": "BTC-PERP", "orderListId": l3}), &b),
    );
    assert_eq!(again["error"]["code"], -2011, "{again}");
}

/// Two WebSocket accounts whose orders outlive their connections (`cancel_on_disconnect` off),
/// a FIX session, and a last trade at 100.0 (A bought from the FIX session): for tests that crash the server and recover it
/// from its journal.
struct Lasting {
    server: Server,
    fix_port: u16,
    ws: u16,
    /// Kept open with the server (its session's orders and logon).
    #[allow(dead_code)]
    fix: FixClient,
    wb: Ws,
    a: Key,
    b: Key,
}

fn lasting_ws_accounts() -> Lasting {
    let (fix_port, ws, wss) = (free_port(), free_port(), free_port());
    let cfg = config(fix_port, ws, wss, "{CERT}", "{KEY}").replace(
        "name = \"ws\"\nbind = \"127.0.0.1:",
        "name = \"ws\"\ncancel_on_disconnect = false\nbind = \"127.0.0.1:",
    );
    let (mut server, _) = configured_with_cert(&cfg, &[fix_port, ws, wss]);
    let a = create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let b = create_key(&server, &["--account", "WS-B", "--scopes", "trade,read"]);
    server.launch();
    let mut fix = FixClient::tcp(fix_port, "FIX.4.4");
    fix.logon(30, &[]);
    fix.expect("A");
    let (mut wa, wb) = (Ws::plain(ws), Ws::plain(ws));
    fix_limit_acked(&mut fix, "S1", "2", "0.100", "100.0");
    buy_ioc_filled(&mut wa, &a, "100.0", "0.100");
    Lasting {
        server,
        fix_port,
        ws,
        fix,
        wb,
        a,
        b,
    }
}

/// Kills the server with SIGKILL and starts it again on its data directory.
fn kill_and_restart(server: &mut Server) {
    server.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.is_running() {
        assert!(Instant::now() < deadline, "SIGKILL did not end the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.restart();
}

#[test]
fn ws_oco_pair_survives_a_crash_and_still_cancels_its_other_order() {
    let Lasting {
        mut server,
        ws,
        mut wb,
        a,
        b,
        ..
    } = lasting_ws_accounts();
    let r = wb.call(
        json!("oco"),
        "orderList.place.oco",
        signed(
            json!({"symbol": "BTC-PERP", "side": "SELL", "quantity": "0.200",
                   "aboveType": "LIMIT_MAKER", "abovePrice": "104.0",
                   "belowType": "STOP_LOSS", "belowStopPrice": "96.0",
                   "newOrderRespType": "RESULT"}),
            &b,
        ),
    );
    let reports = r["result"]["orderReports"]
        .as_array()
        .expect("placed")
        .clone();
    let (limit_id, stop_id) = (
        reports[0]["orderId"].as_u64().unwrap(),
        reports[1]["orderId"].as_u64().unwrap(),
    );
    // Killed: the pair comes back from the journal, still joined.
    kill_and_restart(&mut server);
    let (mut wa, mut wb) = (Ws::plain(ws), Ws::plain(ws));
    let open_ids = |wb: &mut Ws| {
        let open = wb.call(
            json!("open"),
            "openOrders.status",
            signed(json!({"symbol": "BTC-PERP"}), &b),
        );
        let mut ids: Vec<u64> = open["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{open}"))
            .iter()
            .map(|o| o["orderId"].as_u64().unwrap())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(open_ids(&mut wb), [limit_id, stop_id]);
    // Half the limit trades: the stop is cancelled, as before the crash.
    buy_ioc_filled(&mut wa, &a, "104.0", "0.100");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ids = open_ids(&mut wb);
        if ids == [limit_id] {
            break;
        }
        assert!(Instant::now() < deadline, "still open: {ids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log_text();
    assert!(!log.contains("state hash differs"), "{log}");
}

/// B's bracket on BTC-PERP: buy 0.200 at 100.0; once bought, sell it at 110.0 (LIMIT_MAKER)
/// or stop out at 95.0. Returns the answer.
fn place_bracket(ws: &mut Ws, key: &Key, id: &str) -> Value {
    ws.call(
        json!(id),
        "orderList.place.otoco",
        signed(
            json!({"symbol": "BTC-PERP", "listClientOrderId": id, "newOrderRespType": "RESULT",
                   "workingType": "LIMIT", "workingSide": "BUY", "workingPrice": "100.0",
                   "workingQuantity": "0.200", "workingTimeInForce": "GTC",
                   "pendingSide": "SELL", "pendingQuantity": "0.200",
                   "pendingAboveType": "LIMIT_MAKER", "pendingAbovePrice": "110.0",
                   "pendingBelowType": "STOP_LOSS", "pendingBelowStopPrice": "95.0"}),
            key,
        ),
    )
}

#[test]
fn ws_otoco_places_its_pair_when_the_working_order_fills_and_the_pair_cancels_each_other() {
    let TwoWsAccounts {
        _server,
        mut fix,
        mut wa,
        mut wb,
        a,
        b,
        ws_port,
    } = two_ws_accounts();
    // The last trade: 100.
    fix_limit_acked(&mut fix, "S1", "2", "0.100", "100.0");
    buy_ioc_filled(&mut wa, &a, "100.0", "0.100");
    wb.logon_and_subscribe(&b);
    let r = place_bracket(&mut wb, &b, "B1");
    let res = &r["result"];
    assert_eq!(
        (&res["contingencyType"], &res["listClientOrderId"]),
        (&json!("OTO"), &json!("B1")),
        "{r}"
    );
    let list_id = res["orderListId"].as_u64().unwrap();
    let reports = res["orderReports"].as_array().unwrap();
    let shown: Vec<(&Value, &Value)> = reports.iter().map(|o| (&o["type"], &o["status"])).collect();
    assert_eq!(
        shown,
        [
            (&json!("LIMIT"), &json!("NEW")),
            (&json!("LIMIT_MAKER"), &json!("PENDING_NEW")),
            (&json!("STOP_LOSS"), &json!("PENDING_NEW")),
        ],
        "{r}"
    );
    assert!(
        reports.iter().all(|o| o["orderListId"] == json!(list_id)),
        "{r}"
    );
    let id = |k: usize| reports[k]["orderId"].as_u64().unwrap();
    let (working, above, below) = (id(0), id(1), id(2));
    let pending = wb.event(|v| v["event"]["i"] == json!(above) && v["event"]["x"] == "NEW");
    assert_eq!(
        (
            &pending["event"]["X"],
            &pending["event"]["g"],
            &pending["event"]["w"]
        ),
        (&json!("PENDING_NEW"), &json!(list_id), &json!(false)),
        "{pending}"
    );
    let started = wb.event(|v| v["event"]["e"] == "listStatus");
    assert_eq!(
        (
            &started["event"]["c"],
            &started["event"]["l"],
            started["event"]["O"].as_array().map(Vec::len)
        ),
        (&json!("OTO"), &json!("EXEC_STARTED"), Some(3)),
        "{started}"
    );
    // The pending orders are open but off the book: a trade at 95 does not trigger the stop.
    let status = wb.call(
        json!("st"),
        "order.status",
        signed(json!({"symbol": "BTC-PERP", "orderId": below}), &b),
    );
    assert_eq!(status["result"]["status"], "PENDING_NEW", "{status}");
    let open = wb.call(json!("ol"), "openOrderLists.status", signed(json!({}), &b));
    assert_eq!(open["result"][0]["orderListId"], json!(list_id), "{open}");
    // A sells 0.200 at 100: the working order fills, and the pair is placed: the limit rests
    // at 110, the stop waits for 95.
    fix_limit_acked(&mut fix, "S2", "2", "0.200", "100.0");
    let filled = wb.event(|v| v["event"]["i"] == json!(working) && v["event"]["X"] == "FILLED");
    assert_eq!(filled["event"]["g"], json!(list_id), "{filled}");
    for (order, working_now) in [(above, true), (below, false)] {
        let placed = wb.event(|v| v["event"]["i"] == json!(order) && v["event"]["X"] == "NEW");
        assert_eq!(
            (&placed["event"]["x"], &placed["event"]["w"]),
            (&json!("NEW"), &json!(working_now)),
            "{placed}"
        );
    }
    let status = wb.call(
        json!("st2"),
        "order.status",
        signed(json!({"symbol": "BTC-PERP", "orderId": below}), &b),
    );
    assert_eq!(status["result"]["status"], "NEW", "{status}");
    // A buys 0.100 at 110: half the limit trades and the stop is cancelled; then the rest.
    buy_ioc_filled(&mut wa, &a, "110.0", "0.100");
    let gone = wb.event(|v| v["event"]["x"] == "CANCELED");
    assert_eq!(gone["event"]["i"], json!(below), "{gone}");
    buy_ioc_filled(&mut wa, &a, "110.0", "0.100");
    let done = wb.event(|v| v["event"]["e"] == "listStatus");
    assert_eq!(
        (
            &done["event"]["g"],
            &done["event"]["l"],
            &done["event"]["c"]
        ),
        (&json!(list_id), &json!("ALL_DONE"), &json!("OTO")),
        "{done}"
    );
    // orderList.cancel of a list still waiting: the working order and both pending orders.
    let r = place_bracket(&mut wb, &b, "B2");
    let b2 = r["result"]["orderListId"].as_u64().unwrap();
    // Another connection of the account sees it open, and by its id (from the history,
    // without the client id only its own connection knows).
    let mut other = Ws::plain(ws_port);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = other.call(json!("ol3"), "openOrderLists.status", signed(json!({}), &b));
        let open = r["result"].as_array().unwrap_or_else(|| panic!("{r}"));
        // The history follows the journal: the pending pair is in it before its working order.
        // (and an earlier list's end reaches it a moment after its own connection's).
        if open.len() == 1
            && open[0]["orderListId"] == json!(b2)
            && open[0]["orders"].as_array().map(Vec::len) == Some(3)
        {
            assert_eq!(
                (&open[0]["orderListId"], &open[0]["listClientOrderId"]),
                (&json!(b2), &json!("")),
                "{r}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = other.call(
        json!("ls3"),
        "orderList.status",
        signed(json!({"orderListId": b2}), &b),
    );
    assert_eq!(
        (
            &r["result"]["listOrderStatus"],
            r["result"]["orders"].as_array().map(Vec::len)
        ),
        (&json!("EXECUTING"), Some(3)),
        "{r}"
    );
    let r = wb.call(
        json!("lc"),
        "orderList.cancel",
        signed(json!({"symbol": "BTC-PERP", "orderListId": b2}), &b),
    );
    let reports = r["result"]["orderReports"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(reports.len(), 3, "{r}");
    assert!(reports.iter().all(|o| o["status"] == "CANCELED"), "{r}");
    // An OTO whose working order cannot be placed is refused whole: its pending order,
    // placed first, is cancelled.
    let r = wb.call(
        json!("oto"),
        "orderList.place.oto",
        signed(
            json!({"symbol": "BTC-PERP",
                   "workingType": "LIMIT", "workingSide": "BUY", "workingPrice": "100.0",
                   "workingQuantity": "0.200", "workingTimeInForce": "GTC",
                   "workingClientOrderId": "dup",
                   "pendingType": "MARKET", "pendingSide": "SELL", "pendingQuantity": "0.200",
                   "pendingClientOrderId": "dup"}),
            &b,
        ),
    );
    assert_eq!(r["error"]["code"], -2010, "{r}");
    let open = wb.call(
        json!("open"),
        "openOrders.status",
        signed(json!({"symbol": "BTC-PERP"}), &b),
    );
    assert_eq!(open["result"], json!([]), "{open}");
    // allOrderLists, from the history: both brackets, the working order listed first, all
    // done; another connection of the account sees them too, without their client ids.
    for (ws, client_ids) in [(&mut wb, ["B1", "B2"]), (&mut other, ["", ""])] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let lists = loop {
            let r = ws.call(json!("all"), "allOrderLists", signed(json!({}), &b));
            let lists = r["result"]
                .as_array()
                .unwrap_or_else(|| panic!("{r}"))
                .clone();
            if lists.len() == 2 && lists.iter().all(|l| l["listOrderStatus"] == "ALL_DONE") {
                break lists;
            }
            assert!(Instant::now() < deadline, "{r}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(lists[0]["orderListId"], json!(list_id), "{lists:?}");
        assert_eq!(lists[1]["orderListId"], json!(b2), "{lists:?}");
        for (l, cl) in lists.iter().zip(client_ids) {
            assert_eq!(
                (&l["contingencyType"], &l["listClientOrderId"]),
                (&json!("OTO"), &json!(cl)),
                "{l}"
            );
            assert_eq!(l["orders"].as_array().map(Vec::len), Some(3), "{l}");
        }
        assert_eq!(
            lists[0]["orders"][0]["orderId"],
            json!(working),
            "{lists:?}"
        );
    }
    // A bracket whose working order fills on entry: the RESULT answer shows it filled and
    // its pair placed (the answer waits for the command's matching).
    fix_limit_acked(&mut fix, "S3", "2", "0.200", "100.0");
    let r = place_bracket(&mut wb, &b, "B3");
    let shown: Vec<&Value> = r["result"]["orderReports"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|o| &o["status"])
        .collect();
    assert_eq!(shown, ["FILLED", "NEW", "NEW"], "{r}");
}

#[test]
fn ws_otoco_survives_a_crash_and_still_places_its_pair_when_the_working_order_fills() {
    let Lasting {
        mut server,
        fix_port,
        ws,
        mut wb,
        b,
        ..
    } = lasting_ws_accounts();
    let r = place_bracket(&mut wb, &b, "B1");
    let reports = r["result"]["orderReports"]
        .as_array()
        .expect("placed")
        .clone();
    let id = |k: usize| reports[k]["orderId"].as_u64().unwrap();
    let (working, above, below) = (id(0), id(1), id(2));
    // Killed: the list comes back from the journal, its pair still pending.
    kill_and_restart(&mut server);
    let mut wb = Ws::plain(ws);
    let open = |wb: &mut Ws| {
        let open = wb.call(
            json!("open"),
            "openOrders.status",
            signed(json!({"symbol": "BTC-PERP"}), &b),
        );
        let mut orders: Vec<(u64, String)> = open["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{open}"))
            .iter()
            .map(|o| {
                (
                    o["orderId"].as_u64().unwrap(),
                    o["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        orders.sort();
        orders
    };
    let pending = |id| (id, "PENDING_NEW".to_owned());
    // Sorted by id: the pending orders were placed before the working order.
    assert_eq!(
        open(&mut wb),
        [pending(above), pending(below), (working, "NEW".to_owned())]
    );
    // The working order fills after the restart: the pair is placed.
    let mut fix = FixClient::tcp(fix_port, "FIX.4.4");
    fix.logon(30, &[(141, "Y")]);
    fix.expect("A");
    fix_limit_acked(&mut fix, "S2", "2", "0.200", "100.0");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let orders = open(&mut wb);
        if orders == [(above, "NEW".to_owned()), (below, "NEW".to_owned())] {
            break;
        }
        assert!(Instant::now() < deadline, "open: {orders:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log_text();
    assert!(!log.contains("state hash differs"), "{log}");
}
