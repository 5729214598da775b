//! Routing to a venue: two real servers, the broker routing BTC-PERP over a FIX session it
//! initiates (signed Logon) to the venue, where a market maker trades against the routed
//! orders. The broker's client sees acknowledgements, fills and cancels as the venue reports
//! them; orders of other instruments still match on the broker's own book.

use std::time::{Duration, Instant};

use crate::auth::{create_key, env, Key};
use serde_json::json;

use crate::harness::{free_port, FixClient, Server};
use crate::pipeline::{assert_fields, config, connect, connect_at, limit, ports, S};

/// The venue: the broker's session (`BROKER`, account FIRM, signed Logons) and a market
/// maker's (`MM`, account MAKER).
fn venue(extra: &str) -> (Server, [u16; 3], Key) {
    let p = ports();
    let sessions = [
        S::signed("FIX.4.4", "BROKER", "FIRM"),
        S::plain("FIX.4.4", "MM", "MAKER"),
    ];
    let mut v = Server::configure(&config(p, &sessions, extra), &p, &env());
    let key = create_key(&v, &["--account", "FIRM", "--scopes", "trade"]);
    v.launch();
    (v, p, key)
}

/// The broker: one client session (`CLIENT`, account ALICE, signed) and BTC-PERP routed to
/// the venue at `venue_port`.
fn broker(venue_port: u16, key: &Key, extra: &str) -> (Server, [u16; 3], Key) {
    let p = ports();
    let sessions = [S::signed("FIX.4.4", "CLIENT", "ALICE")];
    let venues = venues_section(venue_port, key);
    let mut b = Server::configure(&config(p, &sessions, &(venues + extra)), &p, &env());
    let k = create_key(&b, &["--account", "ALICE", "--scopes", "trade"]);
    b.launch();
    (b, p, k)
}

/// The `[[venues]]` section routing BTC-PERP to the venue at `venue_port`, signed with `key`.
fn venues_section(venue_port: u16, key: &Key) -> String {
    let secret_file = std::env::temp_dir().join(format!("venue-secret-{}", free_port()));
    std::fs::write(&secret_file, format!("{}\n", key.secret)).unwrap();
    format!(
        r#"
[[venues]]
name = "upstream"
connect = "127.0.0.1:{venue_port}"
tls = false
begin_string = "FIX.4.4"
sender_comp_id = "BROKER"
target_comp_id = "ISLD"
instruments = ["BTC-PERP"]
username = "{}"
secret_file = "{}"
account = "FIRM"
heartbeat_secs = 5
reconnect_secs = 1
store_sync = "never"
"#,
        key.id,
        secret_file.display()
    )
}

fn wait_for_log(server: &Server, text: &str) {
    wait_for_logs(server, text, 1);
}

/// Waits until `text` has been logged `n` times (the log spans restarts).
fn wait_for_logs(server: &Server, text: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.log_text().matches(text).count() < n {
        assert!(
            Instant::now() < deadline,
            "{text:?} not logged: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A GTC buy of 1 ETH-PERP at 3000 (an instrument the broker matches itself); its report.
fn eth_order(c: &mut FixClient, cl: &str) -> crate::harness::Msg {
    c.send(
        "D",
        &[
            (11, cl),
            (21, "1"),
            (55, "ETH-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "3000"),
            (59, "1"),
        ],
    );
    report(c)
}

/// An OrderCancelRequest `cl` of the buy order `orig` on BTC-PERP.
fn cancel(c: &mut FixClient, orig: &str, cl: &str) {
    c.send(
        "F",
        &[
            (41, orig),
            (11, cl),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
        ],
    );
}

/// A GTC limit order on BTC-PERP (routed): its PendingNew, then the venue's answer.
fn routed_limit(
    c: &mut FixClient,
    cl: &str,
    side: &str,
    qty: &str,
    price: &str,
) -> crate::harness::Msg {
    let pending = limit(c, cl, side, qty, price);
    assert_fields(&pending, &[(11, cl), (150, "A"), (39, "A"), (14, "0.000")]);
    report(c)
}

/// The report after the client's cancel or replace `cl` of `orig` is on its way to the venue
/// (its PendingCancel `6` or PendingReplace `E`, checked).
fn after_pending(c: &mut FixClient, code: &str, cl: &str, orig: &str) -> crate::harness::Msg {
    assert_fields(&report(c), &[(11, cl), (41, orig), (150, code), (39, code)]);
    report(c)
}

/// The next ExecutionReport, skipping heartbeats.
fn report(c: &mut FixClient) -> crate::harness::Msg {
    loop {
        let m = c.recv();
        if m.msg_type() != "0" {
            return m;
        }
    }
}

#[test]
fn routed_orders_are_acknowledged_filled_and_cancelled_as_the_venue_reports() {
    let (v, vp, firm_key) = venue("");
    let metrics_port = free_port();
    let (b, bp, alice_key) = broker(
        vp[1],
        &firm_key,
        &format!("\n[metrics]\nbind = \"127.0.0.1:{metrics_port}\"\n"),
    );
    wait_for_log(&b, "logged on to the venue");
    let mut mm = connect(vp, "FIX.4.4", "MM", None);
    let mut client = connect(bp, "FIX.4.4", "CLIENT", Some(&alice_key));

    // Acknowledged once the venue has accepted it.
    let m = routed_limit(&mut client, "C1", "1", "0.1", "100000");
    assert_fields(
        &m,
        &[(35, "8"), (11, "C1"), (150, "0"), (39, "0"), (151, "0.100")],
    );
    let order_id = m.get(37).unwrap().to_owned();

    // The market maker sells into it at the venue; the client sees the fill.
    assert_fields(&limit(&mut mm, "M1", "2", "0.1", "100000"), &[(150, "0")]);
    assert_fields(&report(&mut mm), &[(11, "M1"), (150, "F"), (39, "2")]);
    let fill = report(&mut client);
    assert_fields(
        &fill,
        &[
            (35, "8"),
            (11, "C1"),
            (37, &order_id),
            (150, "F"),
            (39, "2"),
            (31, "100000.0"),
            (32, "0.100"),
            (14, "0.100"),
            (151, "0.000"),
        ],
    );

    // A resting order is replaced at the venue (a new price), then cancelled there, each
    // reported as the venue confirms.
    let m = routed_limit(&mut client, "C2", "1", "0.05", "94000");
    assert_fields(&m, &[(11, "C2"), (150, "0")]);
    client.send(
        "G",
        &[
            (41, "C2"),
            (11, "C2b"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "0.05"),
            (40, "2"),
            (44, "95000"),
            (59, "1"),
        ],
    );
    let m = after_pending(&mut client, "E", "C2b", "C2");
    assert_fields(
        &m,
        &[
            (35, "8"),
            (11, "C2b"),
            (41, "C2"),
            (150, "5"),
            (44, "95000.0"),
        ],
    );
    cancel(&mut client, "C2b", "C3");
    let m = after_pending(&mut client, "6", "C3", "C2b");
    assert_fields(
        &m,
        &[(35, "8"), (11, "C3"), (41, "C2b"), (150, "4"), (39, "4")],
    );
    // Nothing of it is left at the venue: the maker's order there does not trade.
    let m = limit(&mut mm, "M2", "2", "0.05", "95000");
    assert_fields(&m, &[(11, "M2"), (150, "0")]);

    // Orders of other instruments match on the broker's own book.
    assert_fields(&eth_order(&mut client, "E1"), &[(11, "E1"), (150, "0")]);

    // The operator sees the venue session and its traffic.
    let m = crate::metrics::scrape(metrics_port, &b);
    let venue = [("venue", "upstream")];
    assert_eq!(m.family("portcullis_venue_logged_on"), Some("gauge"));
    assert_eq!(m.value("portcullis_venue_logged_on", &venue), 1.0);
    assert_eq!(m.value("portcullis_venue_logons_total", &venue), 1.0);
    assert_eq!(m.value("portcullis_venue_orders_sent_total", &venue), 2.0);
    // Two acceptances, a fill, a replace, a cancel.
    assert_eq!(m.value("portcullis_venue_reports_total", &venue), 5.0);
    let (code, out) = b.cli(&["admin", "venues"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "upstream logged_on connect=127.0.0.1:{} since=",
            vp[1]
        )) && out.contains("logons=1 orders_sent=2 reports=5 last_problem=-"),
        "{out}"
    );
    let (code, out) = b.cli(&["admin", "venues", "--json"]);
    assert_eq!(code, 0, "{out}");
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            &listed[0]["name"],
            &listed[0]["logged_on"],
            &listed[0]["reports"],
            &listed[0]["last_problem"]
        ),
        (
            &json!("upstream"),
            &json!(true),
            &json!(5),
            &serde_json::Value::Null
        ),
        "{listed}"
    );
    assert!(
        listed[0]["since"].as_str().unwrap().ends_with('Z'),
        "{listed}"
    );

    // And reads what went to the venue and what it answered, decrypted.
    let (code, log) = b.cli(&["fix-log", "--venue", "upstream"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.starts_with("venue upstream: sequence started"), "{log}");
    let sent = |t: &str| {
        log.lines()
            .filter(|l| l.starts_with("out ") && l.contains(t))
            .count()
    };
    let got = |t: &str| {
        log.lines()
            .filter(|l| l.starts_with("in ") && l.contains(t))
            .count()
    };
    assert_eq!(
        (sent("|35=D|"), sent("|35=G|"), sent("|35=F|")),
        (2, 1, 1),
        "{log}"
    );
    assert!(
        got("|35=8|") >= 5 && got("|150=F|") == 1 && got("|150=5|") == 1,
        "{log}"
    );
    let (code, err) = b.cli(&["fix-log", "--venue", "nowhere"]);
    assert_ne!(code, 0);
    assert!(err.contains("its venues: upstream"), "{err}");
    drop(v);
}

#[test]
fn without_the_venue_routed_orders_are_refused_and_others_still_trade() {
    // Nothing listens on the venue's port.
    let nobody = free_port();
    let key = Key {
        id: "k".into(),
        secret: "s".into(),
    };
    let (b, bp, alice_key) = broker(nobody, &key, "");
    wait_for_log(&b, "cannot connect to the venue");
    let mut client = connect(bp, "FIX.4.4", "CLIENT", Some(&alice_key));
    let m = routed_limit(&mut client, "C1", "1", "0.1", "100000");
    assert_fields(&m, &[(11, "C1"), (150, "8"), (39, "8"), (103, "0")]);
    assert!(
        m.get(58).unwrap_or("").contains("refused by the venue"),
        "{m:?}"
    );
    assert_fields(&eth_order(&mut client, "E1"), &[(11, "E1"), (150, "0")]);
    // The operator sees why.
    let (code, out) = b.cli(&["admin", "venues"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("upstream down") && out.contains("last_problem=cannot connect"),
        "{out}"
    );
}

#[test]
fn routed_orders_survive_a_broker_restart_and_fills_made_meanwhile_arrive() {
    // Orders outlive their sessions' connections on both servers.
    const KEEP: &str = "\n[engine]\ncancel_on_disconnect = false\n";
    let (_v, vp, firm_key) = venue(KEEP);
    let (mut b, bp, alice_key) = broker(vp[1], &firm_key, KEEP);
    wait_for_log(&b, "logged on to the venue");
    let mut mm = connect(vp, "FIX.4.4", "MM", None);
    let mut client = connect(bp, "FIX.4.4", "CLIENT", Some(&alice_key));
    let m = routed_limit(&mut client, "C1", "1", "0.1", "100000");
    assert_fields(&m, &[(11, "C1"), (150, "0")]);
    let m = routed_limit(&mut client, "C2", "1", "0.05", "95000");
    assert_fields(&m, &[(11, "C2"), (150, "0")]);
    let seq = client.seq;
    drop(client);

    // The broker is down while its order trades at the venue.
    b.stop();
    assert_fields(&limit(&mut mm, "M1", "2", "0.1", "100000"), &[(150, "0")]);
    assert_fields(&report(&mut mm), &[(11, "M1"), (150, "F")]);

    // Back up: the venue delivers the fill, and the client's next logon gets it.
    b.restart();
    wait_for_logs(&b, "logged on to the venue", 2);
    let mut client = connect_at(bp, "FIX.4.4", "CLIENT", Some(&alice_key), seq);
    let fill = report(&mut client);
    assert_fields(
        &fill,
        &[
            (11, "C1"),
            (150, "F"),
            (39, "2"),
            (32, "0.100"),
            (14, "0.100"),
        ],
    );

    // The other order is still known after the restart, and cancelled at the venue.
    cancel(&mut client, "C2", "C3");
    assert_fields(
        &after_pending(&mut client, "6", "C3", "C2"),
        &[(11, "C3"), (41, "C2"), (150, "4")],
    );
    let m = limit(&mut mm, "M2", "2", "0.05", "95000");
    assert_fields(&m, &[(11, "M2"), (150, "0")]);
}

#[test]
fn a_websocket_order_on_a_routed_instrument_is_answered_when_the_venue_accepts_it() {
    let (_v, vp, firm_key) = venue("");
    let (fix, ws, wss) = (free_port(), free_port(), free_port());
    let cfg =
        crate::ws::config(fix, ws, wss, "{CERT}", "{KEY}") + &venues_section(vp[1], &firm_key);
    let mut b = crate::ws::configured(&cfg, &[fix, ws, wss]);
    let key = create_key(&b, &["--account", "WS-A", "--scopes", "trade,read"]);
    b.launch();
    wait_for_log(&b, "logged on to the venue");
    let mut mm = connect(vp, "FIX.4.4", "MM", None);
    let mut c = crate::ws::Ws::plain(ws);
    let place = |c: &mut crate::ws::Ws, id: &str, price: &str| {
        c.call(
            json!(id),
            "order.place",
            crate::ws::signed(
                json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT",
                       "timeInForce": "GTC", "price": price, "quantity": "0.100",
                       "newOrderRespType": "RESULT"}),
                &key,
            ),
        )
    };
    let r = place(&mut c, "p1", "100000.0");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["status"], "NEW", "{r}");
    let order_id = r["result"]["orderId"].as_u64().unwrap();
    assert!(order_id > 0, "{r}");
    // Reduced at the venue, answered once it confirms.
    let r = c.call(
        json!("a1"),
        "order.amend.keepPriority",
        crate::ws::signed(
            json!({"symbol": "BTC-PERP", "orderId": order_id, "newQty": "0.050"}),
            &key,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["amendedOrder"]["qty"], "0.050", "{r}");
    // The venue's fill is the order's.
    assert_fields(&limit(&mut mm, "M1", "2", "0.1", "100000"), &[(150, "0")]);
    crate::ws::eventually(|| {
        let s = c.call(
            json!("s"),
            "order.status",
            crate::ws::signed(json!({"symbol": "BTC-PERP", "orderId": order_id}), &key),
        );
        (s["result"]["status"] == "FILLED").then_some(s)
    });
    drop(b);
    // Without the venue, the order is refused with the dialect's error.
    let nobody = free_port();
    let (fix, ws, wss) = (free_port(), free_port(), free_port());
    let cfg =
        crate::ws::config(fix, ws, wss, "{CERT}", "{KEY}") + &venues_section(nobody, &firm_key);
    let mut b = crate::ws::configured(&cfg, &[fix, ws, wss]);
    let key2 = create_key(&b, &["--account", "WS-A", "--scopes", "trade,read"]);
    b.launch();
    wait_for_log(&b, "cannot connect to the venue");
    let mut c = crate::ws::Ws::plain(ws);
    let r = c.call(
        json!("p2"),
        "order.place",
        crate::ws::signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "100000.0", "quantity": "0.100"}),
            &key2,
        ),
    );
    assert_eq!(r["status"], 400, "{r}");
    assert!(
        r["error"]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("refused by the venue"),
        "{r}"
    );
}

#[test]
fn a_cancel_asked_for_while_the_venue_is_down_reaches_it_once_it_is_back() {
    const KEEP: &str = "\n[engine]\ncancel_on_disconnect = false\n";
    let (mut v, vp, firm_key) = venue(KEEP);
    let (b, bp, alice_key) = broker(vp[1], &firm_key, "");
    wait_for_log(&b, "logged on to the venue");
    let mut client = connect(bp, "FIX.4.4", "CLIENT", Some(&alice_key));
    assert_fields(
        &routed_limit(&mut client, "C1", "1", "0.1", "100000"),
        &[(11, "C1"), (150, "0")],
    );
    v.stop();
    cancel(&mut client, "C1", "C2");
    // The venue is back: the cancel goes to it after the Logon, and the order ends.
    v.restart();
    let m = after_pending(&mut client, "6", "C2", "C1");
    assert_fields(&m, &[(11, "C2"), (41, "C1"), (150, "4"), (39, "4")]);
    assert_eq!(b.log_text().matches("logged on to the venue").count(), 2);
}

#[test]
fn the_venue_session_runs_over_tls_and_checks_the_venues_certificate() {
    // The venue also listens with TLS 1.3, its certificate for localhost and 127.0.0.1.
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, _) = crate::harness::test_cert(certs.path());
    let tls_port = free_port();
    let tls = format!(
        "\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n[[listeners]]\nname = \"fix44-tls\"\nbind = \"127.0.0.1:{tls_port}\"\ntls = true\nbegin_string = \"FIX.4.4\"\n",
        cert.display(),
        key.display()
    );
    let (_v, _, firm_key) = venue(&tls);
    let over_tls =
        |extra: &str| venues_section(tls_port, &firm_key).replace("tls = false\n", extra);
    // Trusting the venue's certificate: logged on, orders go through.
    let p = ports();
    let sessions = [S::signed("FIX.4.4", "CLIENT", "ALICE")];
    let trusted = over_tls(&format!(
        "ca_file = \"{}\"\nserver_name = \"localhost\"\n",
        cert.display()
    ));
    let mut b = Server::configure(&config(p, &sessions, &trusted), &p, &env());
    let alice = create_key(&b, &["--account", "ALICE", "--scopes", "trade"]);
    b.launch();
    wait_for_log(&b, "logged on to the venue");
    let mut client = connect(p, "FIX.4.4", "CLIENT", Some(&alice));
    assert_fields(
        &routed_limit(&mut client, "C1", "1", "0.1", "100000"),
        &[(11, "C1"), (150, "0")],
    );
    drop(client);
    drop(b);
    // Trusting only the web PKI roots: the self-signed venue is refused, never logged on to.
    let p = ports();
    let untrusted = over_tls("");
    let mut b = Server::configure(&config(p, &sessions, &untrusted), &p, &env());
    let _ = create_key(&b, &["--account", "ALICE", "--scopes", "trade"]);
    b.launch();
    wait_for_log(&b, "TLS handshake with");
    assert!(!b.log_text().contains("logged on to the venue"));
    let (_, out) = b.cli(&["admin", "venues"]);
    assert!(
        out.contains("upstream down") && out.contains("last_problem=cannot connect: TLS handshake"),
        "{out}"
    );
}

#[test]
fn a_venue_refusing_the_logon_shows_why() {
    let (_v, vp, firm_key) = venue("");
    let wrong = Key {
        id: firm_key.id.clone(),
        secret: "not-the-secret".into(),
    };
    let (b, _, _) = broker(vp[1], &wrong, "");
    wait_for_log(&b, "venue session ended");
    let (code, out) = b.cli(&["admin", "venues"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("upstream down") && out.contains("last_problem=session ended: Logon refused"),
        "{out}"
    );
}
