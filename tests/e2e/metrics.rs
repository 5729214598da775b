//! Metrics and security monitoring seen from the outside: `/metrics` scraped from the real
//! binary and parsed by the reference Prometheus parser (`prometheus_client`, a Python package
//! installed by scripts/test.sh) while orders and rejects move the counters; and security
//! events (a kill switch, a reject-rate spike, a lockout) POSTed to a local HTTPS webhook
//! receiver that trusts nothing but a self-signed test certificate.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use portcullis_auth::fix_sig::{sign_logon, LogonFields};
use portcullis_fix::{Encoder, TimePrecision, UtcTimestamp};
use serde_json::Value;

use crate::auth::{create_key, env, Key};
use crate::harness::{free_port, test_cert, FixClient, Msg, Server};

/// One scrape, as the Python parser read it.
pub(crate) struct Scrape {
    families: HashMap<String, String>,
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Scrape {
    /// The sample `name` whose labels include `labels` (0 when there is none: a counter not
    /// yet moved).
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    pub(crate) fn family(&self, name: &str) -> Option<&str> {
        self.families.get(name).map(String::as_str)
    }
}

/// Scrapes `http://127.0.0.1:{port}/metrics` with tests/interop/prometheus_scrape.py.
pub(crate) fn scrape(port: u16, server: &Server) -> Scrape {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/prometheus_scrape.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("python3 must be installed (scripts/test.sh installs prometheus_client)");
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    Scrape {
        families: v["families"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, t)| (k.clone(), t.as_str().unwrap().to_owned()))
            .collect(),
        samples: v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                (
                    s[0].as_str().unwrap().to_owned(),
                    labels,
                    s[2].as_f64().unwrap(),
                )
            })
            .collect(),
    }
}

fn config(p44: u16, pm: u16, extra: &str) -> String {
    format!(
        r#"
data_dir = "{{DATA_DIR}}"

[[listeners]]
name = "fix44"
bind = "127.0.0.1:{p44}"
tls = false
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
accounts = ["TW-ACC"]
store_sync = "never"

[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.001"
min_qty = "0.001"
max_qty = "100"

[metrics]
bind = "127.0.0.1:{pm}"

{extra}
"#
    )
}

fn sending_time() -> String {
    let mut out = Vec::new();
    UtcTimestamp::now().write(TimePrecision::Millis, &mut out);
    String::from_utf8(out).unwrap()
}

/// Sends a Logon signed with `secret` (DESIGN.md §4) and returns the answer.
fn logon(c: &mut FixClient, key_id: &str, secret: &str) -> Msg {
    let seq = c.seq.to_string();
    c.seq += 1;
    let st = sending_time();
    let raw = sign_logon(
        secret.as_bytes(),
        &LogonFields {
            sending_time: st.as_bytes(),
            msg_type: b"A",
            msg_seq_num: seq.as_bytes(),
            sender_comp_id: c.sender.as_bytes(),
            target_comp_id: c.target.as_bytes(),
            username: key_id.as_bytes(),
        },
    );
    let mut enc = Encoder::new();
    enc.start(c.begin.as_bytes(), b"A");
    enc.str(49, c.sender.as_bytes())
        .str(56, c.target.as_bytes())
        .str(34, seq.as_bytes())
        .str(52, st.as_bytes());
    enc.uint(98, 0).uint(108, 30);
    enc.str(553, key_id.as_bytes());
    enc.data(95, 96, raw.as_bytes());
    let bytes = enc.finish().to_vec();
    c.write(&bytes);
    c.recv()
}

/// Sends a NewOrderSingle for BTC-PERP and returns its ExecutionReport.
fn order(c: &mut FixClient, cl: &str, side: &str, price: &str, qty: &str) -> Msg {
    order_in(c, "BTC-PERP", cl, side, price, qty)
}

/// Sends a NewOrderSingle and returns its ExecutionReport.
fn order_in(c: &mut FixClient, symbol: &str, cl: &str, side: &str, price: &str, qty: &str) -> Msg {
    let now = sending_time();
    c.send(
        "D",
        &[
            (11, cl),
            (1, "TW-ACC"),
            (21, "1"),
            (55, symbol),
            (54, side),
            (60, &now),
            (38, qty),
            (40, "2"),
            (44, price),
            (59, "1"),
        ],
    );
    c.expect("8")
}

#[test]
fn metrics_parse_with_the_prometheus_parser_and_move_with_orders_and_rejects() {
    let (p44, pm) = (free_port(), free_port());
    let mut server = Server::configure(&config(p44, pm, ""), &[p44, pm], &env());
    let key = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    server.launch();
    assert!(
        server
            .log_text()
            .contains(&format!("listening: metrics http://127.0.0.1:{pm}")),
        "{}",
        server.log_text()
    );

    let before = scrape(pm, &server);
    for (family, kind) in [
        ("portcullis_messages_received", "counter"),
        ("portcullis_messages_sent", "counter"),
        ("portcullis_rejects", "counter"),
        ("portcullis_auth_outcomes", "counter"),
        ("portcullis_auth_lockouts", "counter"),
        ("portcullis_sessions_connected", "gauge"),
        ("portcullis_ingress_queue_depth", "gauge"),
        ("portcullis_egress_queue_depth", "gauge"),
        ("portcullis_journal_queue_depth", "gauge"),
        ("portcullis_order_ack_latency_seconds", "histogram"),
        ("portcullis_journal_fsync_duration_seconds", "histogram"),
        ("portcullis_matching_events", "counter"),
        ("portcullis_matching_rejects", "counter"),
        ("portcullis_security_events", "counter"),
        ("portcullis_webhook_events", "counter"),
        ("portcullis_history_behind_records", "gauge"),
    ] {
        assert_eq!(before.family(family), Some(kind), "{family}");
    }
    let fix = [("protocol", "fix")];
    assert_eq!(before.value("portcullis_sessions_connected", &fix), 0.0);

    // A Logon with a wrong signature, then a good one.
    let mut bad = FixClient::tcp(p44, "FIX.4.4");
    let refused = logon(&mut bad, &key.id, "not-the-secret");
    assert_eq!(refused.msg_type(), "5", "{refused:?}");
    drop(bad);
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    let ack = logon(&mut c, &key.id, &key.secret);
    assert_eq!(ack.msg_type(), "A", "{ack:?}\n{}", server.log_text());

    // Two orders acknowledged, two refused by the core (the ClOrdID again, above the
    // instrument's maximum quantity), one refused on the socket task (unknown symbol).
    let er = order(&mut c, "M1", "1", "100", "1");
    assert_eq!(er.get(150), Some("0"), "{er:?}");
    let er = order(&mut c, "M2", "2", "200", "1");
    assert_eq!(er.get(150), Some("0"), "{er:?}");
    let er = order(&mut c, "M1", "1", "100", "1");
    assert_eq!(er.get(150), Some("8"), "{er:?}");
    let er = order(&mut c, "M3", "1", "100", "500");
    assert_eq!(er.get(150), Some("8"), "{er:?}");
    let er = order_in(&mut c, "NOPE-PERP", "M4", "1", "100", "1");
    assert_eq!(er.get(150), Some("8"), "{er:?}");

    let after = scrape(pm, &server);
    // The order history reads what the journal acknowledged: it catches up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while scrape(pm, &server).value("portcullis_history_behind_records", &[]) > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the history stays behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert!(moved("portcullis_messages_received_total", &fix) >= 5.0);
    assert!(moved("portcullis_messages_sent_total", &fix) >= 5.0);
    assert_eq!(
        moved(
            "portcullis_rejects_total",
            &[("protocol", "fix"), ("reason", "duplicate_cl_ord_id")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "portcullis_rejects_total",
            &[("protocol", "fix"), ("reason", "qty_too_large")]
        ),
        1.0
    );
    assert_eq!(
        moved("portcullis_matching_events_total", &[("kind", "new")]),
        2.0
    );
    assert_eq!(
        moved(
            "portcullis_rejects_total",
            &[("protocol", "fix"), ("reason", "unknown_instrument")]
        ),
        1.0
    );
    assert_eq!(
        moved("portcullis_matching_events_total", &[("kind", "rejected")]),
        2.0
    );
    assert_eq!(
        moved(
            "portcullis_matching_rejects_total",
            &[("reason", "qty_too_large")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "portcullis_matching_rejects_total",
            &[("reason", "duplicate_cl_ord_id")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "portcullis_auth_outcomes_total",
            &[
                ("kind", "logon"),
                ("outcome", "ok"),
                ("reason", "authenticated")
            ]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "portcullis_auth_outcomes_total",
            &[
                ("kind", "logon"),
                ("outcome", "denied"),
                ("reason", "bad_signature")
            ]
        ),
        1.0
    );
    assert_eq!(after.value("portcullis_sessions_connected", &fix), 1.0);
    // Two acknowledgements and the core's two rejects, each timed from socket read to write.
    assert_eq!(
        moved("portcullis_order_ack_latency_seconds_count", &fix),
        4.0
    );
    let sum = moved("portcullis_order_ack_latency_seconds_sum", &fix);
    assert!(sum > 0.0 && sum < 3.0, "{sum}");
    // The journal fsyncs every batch (fsync = "always", the default).
    assert!(after.value("portcullis_journal_fsync_duration_seconds_count", &[]) >= 1.0);

    // 404 for anything but /metrics.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", pm)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");

    c.send("5", &[]);
    assert_eq!(c.expect("5").msg_type(), "5");
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while scrape(pm, &server).value("portcullis_sessions_connected", &fix) != 0.0 {
        assert!(Instant::now() < deadline, "the session is still counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.stop(), Some(0));
}

/// A local HTTPS receiver (TLS 1.3, the test certificate): answers the first request 500 (so
/// the server retries) and every later one 204; hands each request's JSON body over.
fn https_receiver(dir: &std::path::Path) -> (u16, std::path::PathBuf, mpsc::Receiver<Value>) {
    let (cert_file, key_file, cert) = test_cert(dir);
    let key_pem = std::fs::read(&key_file).unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let served = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let Some(body) = read_request(&mut tls) else {
                continue;
            };
            let n = served.fetch_add(1, Ordering::SeqCst);
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "204 No Content"
            };
            let _ = write!(
                tls,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
            if n > 0 {
                if let Ok(v) = serde_json::from_slice(&body) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (port, cert_file, rx)
}

/// Reads one HTTP/1.1 request (a POST with Content-Length) and returns its body.
fn read_request(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("post /hook http/1.1"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}

/// Waits (up to 15 s) for a webhook event matching `pred`.
fn await_event(
    rx: &mpsc::Receiver<Value>,
    seen: &mut Vec<Value>,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    if let Some(v) = seen.iter().find(|v| pred(v)) {
        return v.clone();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => {
                seen.push(v.clone());
                if pred(&v) {
                    return v;
                }
            }
            Err(_) => panic!("no such webhook event; received: {seen:#?}"),
        }
    }
}

#[test]
fn security_events_reach_an_https_webhook_the_audit_log_and_the_counters() {
    let (p44, pm) = (free_port(), free_port());
    let tmp = tempfile::tempdir().unwrap();
    let (hook_port, ca, rx) = https_receiver(tmp.path());
    let extra = format!(
        r#"
[auth]
max_failures = 2

[monitoring]
webhook_url = "https://127.0.0.1:{hook_port}/hook"
webhook_ca_file = "{}"
webhook_retries = 3
webhook_timeout_ms = 3000
reject_spike_threshold = 3
reject_spike_window_ms = 60000
"#,
        ca.display()
    );
    let mut server = Server::configure(&config(p44, pm, &extra), &[p44, pm], &env());
    let key: Key = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    server.launch();
    let mut seen = Vec::new();

    // Kill switch on for the account: a security event.
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    assert_eq!(logon(&mut c, &key.id, &key.secret).msg_type(), "A");
    let (code, out) = server.cli(&["admin", "kill", "--account", "TW-ACC"]);
    assert_eq!(code, 0, "{out}");
    let kill = await_event(&rx, &mut seen, |v| v["kind"] == "kill_switch_on");
    assert_eq!(kill["source"], "portcullis");
    assert_eq!(kill["account"], "TW-ACC");
    assert_eq!(kill["audit_kind"], "anomaly");

    // Three orders refused by the kill switch within the window: a reject-rate spike.
    for i in 0..3 {
        let er = order(&mut c, &format!("K{i}"), "1", "100", "1");
        assert_eq!(er.get(150), Some("8"), "{er:?}");
    }
    let spike = await_event(&rx, &mut seen, |v| v["kind"] == "reject_rate_spike");
    assert_eq!(spike["account"], "TW-ACC");
    assert!(
        spike["detail"].as_str().unwrap().contains("3 rejects"),
        "{spike}"
    );
    c.send("5", &[]);
    c.expect("5");
    drop(c);

    // Two failed logons lock the key (and the address) out.
    for _ in 0..2 {
        let mut bad = FixClient::tcp(p44, "FIX.4.4");
        assert_eq!(logon(&mut bad, &key.id, "wrong").msg_type(), "5");
    }
    let lockout = await_event(&rx, &mut seen, |v| v["kind"] == "lockout");
    assert_eq!(lockout["audit_kind"], "lockout");
    assert_eq!(lockout["peer_ip"], "127.0.0.1");
    assert_eq!(lockout["reason"], "too_many_failures");

    // The audit log has the spike (the kill switch and the lockout were audited already).
    let events = server.audit_events(&[]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "anomaly" && e["reason"] == "reject_rate_spike"),
        "{events:#?}"
    );
    assert!(events
        .iter()
        .any(|e| e["kind"] == "admin" && e["reason"] == "kill"));

    let m = scrape(pm, &server);
    let kind = |k| m.value("portcullis_security_events_total", &[("kind", k)]);
    assert_eq!(kind("kill_switch_on"), 1.0);
    assert_eq!(kind("reject_rate_spike"), 1.0);
    assert!(kind("lockout") >= 1.0);
    assert!(m.value("portcullis_auth_lockouts_total", &[]) >= 1.0);
    assert_eq!(
        m.value(
            "portcullis_rejects_total",
            &[("protocol", "fix"), ("reason", "kill_switch")]
        ),
        3.0
    );
    // The first attempt got a 500 and was retried; every event got through.
    let delivered = m.value(
        "portcullis_webhook_events_total",
        &[("result", "delivered")],
    );
    assert!(delivered >= 3.0, "{delivered}");
    assert_eq!(
        m.value("portcullis_webhook_events_total", &[("result", "dropped")]),
        0.0
    );
    assert_eq!(server.stop(), Some(0));
}
