//! The admin API and the OAuth authorization server seen from the outside: the real binary
//! over HTTPS (TLS 1.3), keys and TOTP enrolment from the CLI, TOTP codes computed by `pyotp`
//! (not by the project's code), OAuth driven by `authlib` and verified by PyJWT
//! (tests/interop/oauth_client.py), and the operator commands' effect on a live FIX session.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::auth::{create_key, env, Key};
use crate::harness::{free_port, test_cert, tls_client, tls_connect, FixClient, Server};

/// A FIX listener (plain TCP, loopback), a WebSocket listener, the admin listener on `admin`.
fn config(fix: u16, ws: u16, admin: u16, ttl: u64, max_failures: u32) -> String {
    format!(
        r#"
data_dir = "{{DATA_DIR}}"

[auth]
max_failures = {max_failures}

[tls]
cert_file = "{{CERT}}"
key_file = "{{KEY}}"

[admin]
bind = "127.0.0.1:{admin}"
access_token_ttl_secs = {ttl}

[[listeners]]
name = "fix44"
bind = "127.0.0.1:{fix}"
tls = false
begin_string = "FIX.4.4"

[[ws_listeners]]
name = "ws"
bind = "127.0.0.1:{ws}"
tls = false

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
accounts = ["TW-ACC"]
store_sync = "never"
authentication = "none"

[core]
accounts = ["WS-A", "OPS"]

[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.005"
min_qty = "0.01"
max_qty = "10"

[[instruments]]
symbol = "ETH-PERP"
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

struct Setup {
    server: Server,
    fix: u16,
    ws: u16,
    admin: u16,
    cert: rustls::pki_types::CertificateDer<'static>,
    cert_file: String,
}

/// A server (not started) with access tokens living `ttl` seconds; `max_failures` failed
/// attempts lock a key or an address out (the tests that are not about lockout raise it: their
/// deliberate failures all come from 127.0.0.1).
fn setup(ttl: u64, max_failures: u32) -> Setup {
    let (fix, ws, admin) = (free_port(), free_port(), free_port());
    let server = Server::configure(
        &config(fix, ws, admin, ttl, max_failures),
        &[fix, ws, admin],
        &env(),
    );
    let (cert_file, key_file, cert) = test_cert(&server.dir);
    let text = std::fs::read_to_string(&server.config)
        .unwrap()
        .replace("{CERT}", &cert_file.display().to_string())
        .replace("{KEY}", &key_file.display().to_string());
    std::fs::write(&server.config, text).unwrap();
    Setup {
        server,
        fix,
        ws,
        admin,
        cert,
        cert_file: cert_file.display().to_string(),
    }
}

/// An operator: an admin key with its TOTP secret (enrolled by the CLI), and the last TOTP
/// time step it used (each code is accepted once).
struct Operator {
    key: Key,
    totp_secret: String,
    last_step: u64,
}

fn operator(server: &Server) -> Operator {
    let key = create_key(server, &["--account", "OPS", "--scopes", "admin,read"]);
    let (code, out) = server.cli(&["admin", "totp-enroll", "--key", &key.id, "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(v["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/Portcullis:"));
    Operator {
        key,
        totp_secret: v["secret"].as_str().unwrap().to_owned(),
        last_step: 0,
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TOTP code of `secret` for time step `step`, computed by pyotp.
fn pyotp(secret: &str, step: u64) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, pyotp; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &(step * 30).to_string(),
        ])
        .output()
        .expect("python3 with pyotp (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Operator {
    /// A fresh code: the current step or the next one (both accepted), later than any used.
    fn code(&mut self) -> String {
        loop {
            let now = unix_secs() / 30;
            if let Some(step) = [now, now + 1].into_iter().find(|s| *s > self.last_step) {
                self.last_step = step;
                return pyotp(&self.totp_secret, step);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The code of the last step used (a replay).
    fn reused_code(&self) -> String {
        pyotp(&self.totp_secret, self.last_step)
    }
}

/// One HTTP/1.1 exchange over TLS 1.3: (status, lower-case headers, body as JSON or Null).
fn http(
    s: &Setup,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, Value) {
    let cfg = tls_client(s.cert.clone(), &[&rustls::version::TLS13]);
    let mut conn = tls_connect(s.admin, cfg).expect("TLS 1.3 handshake with the admin API");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    conn.write_all(req.as_bytes()).unwrap();
    conn.flush().unwrap();
    let mut raw = Vec::new();
    match conn.read_to_end(&mut raw) {
        Ok(_) => {}
        // The server may close without close_notify after Connection: close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("read: {e}"),
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
    };
    (status, headers, json)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Asserts an RFC 9457 problem document of `status` and kind `slug`.
fn assert_problem(r: &(u16, Vec<(String, String)>, Value), status: u16, slug: &str) {
    let (st, h, body) = r;
    assert_eq!(*st, status, "{body}");
    assert_eq!(
        header(h, "content-type"),
        Some("application/problem+json"),
        "{body}"
    );
    assert_eq!(
        body["type"],
        format!("urn:portcullis:problem:{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

/// A client-credentials token over HTTP Basic (the full OAuth interop is in the Python test).
fn token(s: &Setup, key: &Key, extra: &str) -> String {
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", key.id, key.secret));
    let (st, _, body) = http(
        s,
        "POST",
        "/oauth/token",
        &[
            ("Authorization", format!("Basic {basic}")),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ],
        Some(&format!("grant_type=client_credentials{extra}")),
    );
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn bearer(t: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {t}"))
}

fn json_ct() -> (&'static str, String) {
    ("Content-Type", "application/json".to_owned())
}

/// The headers of an HMAC-signed request (README.md, "Admin API").
fn signed(key: &Key, method: &str, target: &str, body: &str) -> Vec<(&'static str, String)> {
    let ts = portcullis_auth::clock::now_ms().to_string();
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.secret.as_bytes()).unwrap();
    m.update(format!("{ts}{method}{target}{body}").as_bytes());
    vec![
        ("X-PC-APIKEY", key.id.clone()),
        ("X-PC-TIMESTAMP", ts),
        ("X-PC-SIGNATURE", hex::encode(m.finalize().into_bytes())),
    ]
}

/// Operators with their tokens: each has two TOTP codes per 30-second step (the current and
/// the next step's), so a pool of them makes changes without waiting for the clock.
struct Pool {
    ops: Vec<(Operator, String)>,
}

impl Pool {
    /// A mutating call with a fresh code of an operator that has one now.
    fn change(
        &mut self,
        s: &Setup,
        method: &str,
        target: &str,
        body: &Value,
    ) -> (u16, Vec<(String, String)>, Value) {
        let now = unix_secs() / 30;
        let i = self
            .ops
            .iter()
            .position(|(o, _)| o.last_step < now + 1)
            .unwrap_or(0);
        let (op, tok) = &mut self.ops[i];
        let tok = tok.clone();
        change(s, op, &tok, method, target, body)
    }
}

/// A mutating call as `op` with a fresh TOTP code.
fn change(
    s: &Setup,
    op: &mut Operator,
    tok: &str,
    method: &str,
    target: &str,
    body: &Value,
) -> (u16, Vec<(String, String)>, Value) {
    let code = op.code();
    http(
        s,
        method,
        target,
        &[bearer(tok), json_ct(), ("X-PC-TOTP", code)],
        Some(&body.to_string()),
    )
}

fn fix_order(c: &mut FixClient, cl: &str, qty: &str, price: &str) -> crate::harness::Msg {
    c.send(
        "D",
        &[
            (11, cl),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (38, qty),
            (59, "1"),
            (40, "2"),
            (44, price),
        ],
    );
    c.expect("8")
}

#[test]
fn admin_api_endpoints_auth_problem_details_and_effect_on_a_live_fix_session() {
    let mut s = setup(600, 1000);
    let mut op = operator(&s.server);
    let operators: Vec<Operator> = (0..8).map(|_| operator(&s.server)).collect();
    let trader = create_key(&s.server, &["--account", "WS-A", "--scopes", "trade,read"]);
    s.server.launch();
    assert!(s
        .server
        .log_text()
        .contains(&format!("listening: admin https://127.0.0.1:{}", s.admin)));
    let mut pool = Pool {
        ops: operators
            .into_iter()
            .map(|o| {
                let t = token(&s, &o.key, "");
                (o, t)
            })
            .collect(),
    };

    // Health needs no credentials.
    let (st, _, body) = http(&s, "GET", "/healthz", &[], None);
    assert_eq!((st, body["status"].as_str()), (200, Some("ok")));
    let (st, _, body) = http(&s, "GET", "/readyz", &[], None);
    assert_eq!((st, body["status"].as_str()), (200, Some("ready")));

    // No credentials, a bad token, the wrong scope.
    let r = http(&s, "GET", "/v1/keys", &[], None);
    assert_problem(&r, 401, "authentication-required");
    assert!(header(&r.1, "www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    assert_problem(
        &http(&s, "GET", "/v1/keys", &[bearer("not.a.jwt")], None),
        401,
        "invalid-token",
    );
    let trader_token = token(&s, &trader, "");
    assert_problem(
        &http(&s, "GET", "/v1/keys", &[bearer(&trader_token)], None),
        403,
        "insufficient-scope",
    );
    assert_problem(
        &http(
            &s,
            "GET",
            "/v1/keys",
            &signed(&trader, "GET", "/v1/keys", ""),
            None,
        ),
        403,
        "insufficient-scope",
    );

    // Bearer and HMAC both work for reads.
    let tok = token(&s, &op.key, "");
    let (st, _, keys) = http(&s, "GET", "/v1/keys", &[bearer(&tok)], None);
    assert_eq!(st, 200, "{keys}");
    assert!(keys["keys"].as_array().unwrap().len() >= 10, "{keys}");
    assert!(!keys.to_string().contains(&trader.secret));
    let h = signed(&op.key, "GET", "/v1/accounts/WS-A", "");
    let (st, _, acc) = http(&s, "GET", "/v1/accounts/WS-A", &h, None);
    assert_eq!(st, 200, "{acc}");
    assert_eq!(acc["limits"]["max_notional"], "50000", "{acc}");
    // The same signed request again is a replay.
    assert_problem(
        &http(&s, "GET", "/v1/accounts/WS-A", &h, None),
        401,
        "replayed-request",
    );
    // A bad HMAC signature.
    let mut bad = signed(&op.key, "GET", "/v1/keys", "");
    bad[2].1 = "00".repeat(32);
    assert_problem(
        &http(&s, "GET", "/v1/keys", &bad, None),
        401,
        "invalid-signature",
    );
    assert_problem(
        &http(&s, "GET", "/v1/accounts/NOBODY", &[bearer(&tok)], None),
        404,
        "not-found",
    );
    assert_problem(
        &http(&s, "GET", "/v1/nothing", &[bearer(&tok)], None),
        404,
        "not-found",
    );
    let r = http(&s, "DELETE", "/v1/sessions", &[bearer(&tok)], None);
    assert_problem(&r, 405, "method-not-allowed");
    // No venue configured here (tests/e2e/venue.rs shows one through `admin venues`).
    let (st, _, v) = http(&s, "GET", "/v1/venues", &[bearer(&tok)], None);
    assert_eq!((st, v), (200, json!({"venues": []})));

    // TOTP: missing, wrong, then a good code, then that code again.
    let kill_off = json!({"on": false}).to_string();
    assert_problem(
        &http(
            &s,
            "PUT",
            "/v1/kill-switch",
            &[bearer(&tok), json_ct()],
            Some(&kill_off),
        ),
        401,
        "totp-required",
    );
    let wrong = {
        // Not this step's code: a valid code's digits shifted by one.
        let n: u32 = op.code().parse().unwrap();
        format!("{:06}", (n + 1) % 1_000_000)
    };
    assert_problem(
        &http(
            &s,
            "PUT",
            "/v1/kill-switch",
            &[bearer(&tok), json_ct(), ("X-PC-TOTP", wrong)],
            Some(&kill_off),
        ),
        401,
        "invalid-totp",
    );
    let (st, _, body) = change(
        &s,
        &mut op,
        &tok,
        "PUT",
        "/v1/kill-switch",
        &json!({"on": false}),
    );
    assert_eq!((st, &body["on"]), (200, &json!(false)), "{body}");
    assert_problem(
        &http(
            &s,
            "PUT",
            "/v1/kill-switch",
            &[bearer(&tok), json_ct(), ("X-PC-TOTP", op.reused_code())],
            Some(&kill_off),
        ),
        401,
        "totp-reused",
    );
    let (st, _, body) = http(&s, "GET", "/v1/kill-switch", &[bearer(&tok)], None);
    assert_eq!((st, &body["on"]), (200, &json!(false)), "{body}");

    // Malformed JSON, an unknown field, a wrong media type.
    let r = pool.change(&s, "PUT", "/v1/kill-switch", &json!("{\"on\": tru"));
    assert_problem(&r, 400, "invalid-request");
    let (op1, tok1) = &mut pool.ops[0];
    let tok1 = tok1.clone();
    let code = op1.code();
    assert_problem(
        &http(
            &s,
            "PUT",
            "/v1/kill-switch",
            &[bearer(&tok1), json_ct(), ("X-PC-TOTP", code)],
            Some("{\"on\": tru"),
        ),
        400,
        "malformed-json",
    );
    let r = pool.change(&s, "PUT", "/v1/kill-switch", &json!({"on": true, "why": 1}));
    assert_problem(&r, 400, "invalid-request");
    assert!(
        r.2["detail"].as_str().unwrap().contains("unknown field"),
        "{}",
        r.2
    );
    let (op1, tok1) = &mut pool.ops[1];
    let tok1 = tok1.clone();
    let code = op1.code();
    let r = http(
        &s,
        "PUT",
        "/v1/kill-switch",
        &[
            bearer(&tok1),
            ("Content-Type", "text/plain".into()),
            ("X-PC-TOTP", code),
        ],
        Some(&kill_off),
    );
    assert_problem(&r, 415, "unsupported-media-type");

    // A live FIX session: a resting order, then the account's kill switch through the API.
    let mut fix = FixClient::tcp(s.fix, "FIX.4.4");
    fix.logon(30, &[]);
    fix.expect("A");
    let m = fix_order(&mut fix, "K1", "1", "100");
    assert_eq!(m.get(39), Some("0"), "{m:?}");
    // The expected MsgSeqNum is stored once the request's answers are written: the client
    // can read the acknowledgement a moment before the view shows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let sessions = loop {
        let sessions = http(&s, "GET", "/v1/sessions", &[bearer(&tok)], None).2;
        if sessions["sessions"][0]["next_target_seq"] == 3 || std::time::Instant::now() > deadline {
            break sessions;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let tw = &sessions["sessions"][0];
    assert_eq!(tw["name"], "FIX.4.4:ISLD->TW", "{sessions}");
    assert_eq!(tw["state"], "logged_on", "{sessions}");
    assert_eq!(tw["peer_ip"], "127.0.0.1", "{sessions}");
    assert_eq!(tw["next_target_seq"], 3, "{sessions}");
    assert_eq!(tw["next_sender_seq"], 3, "{sessions}");

    let (st, _, body) = pool.change(
        &s,
        "PUT",
        "/v1/accounts/TW-ACC/kill-switch",
        &json!({"on": true}),
    );
    assert_eq!(st, 200, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("1 resting orders cancelled"),
        "{body}"
    );
    let m = fix.expect("8");
    assert_eq!((m.get(11), m.get(39)), (Some("K1"), Some("4")), "{m:?}");
    let m = fix_order(&mut fix, "K2", "1", "100");
    assert_eq!((m.get(39), m.get(103)), (Some("8"), Some("0")), "{m:?}");
    assert!(m.get(58).unwrap().contains("kill switch"), "{m:?}");
    let (st, _, body) = pool.change(
        &s,
        "PUT",
        "/v1/accounts/TW-ACC/kill-switch",
        &json!({"on": false}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(fix_order(&mut fix, "K3", "1", "100").get(39), Some("0"));

    // A limit changed through the API applies to the next order.
    let (st, _, body) = pool.change(
        &s,
        "PUT",
        "/v1/accounts/TW-ACC/limits",
        &json!({"max_notional": "50"}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["limits"]["max_notional"], "50", "{body}");
    let m = fix_order(&mut fix, "K4", "1", "100");
    assert_eq!(m.get(39), Some("8"), "{m:?}");
    let r = pool.change(
        &s,
        "PUT",
        "/v1/accounts/TW-ACC/limits",
        &json!({"no_such_limit": 1}),
    );
    assert_problem(&r, 400, "invalid-request");

    // Instruments: halt, mark, resume.
    let (st, _, body) = pool.change(&s, "POST", "/v1/instruments/ETH-PERP/halt", &json!({}));
    assert_eq!(st, 200, "{body}");
    let eth = |s: &Setup| {
        let list = http(s, "GET", "/v1/instruments", &[bearer(&tok)], None).2;
        list["instruments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["symbol"] == "ETH-PERP")
            .unwrap()
            .clone()
    };
    assert_eq!(eth(&s)["status"], "halted");
    let (st, _, body) = pool.change(
        &s,
        "PUT",
        "/v1/instruments/ETH-PERP/mark",
        &json!({"price": "200.5"}),
    );
    assert_eq!(st, 200, "{body}");
    let (st, _, body) = pool.change(&s, "POST", "/v1/instruments/ETH-PERP/resume", &json!({}));
    assert_eq!(st, 200, "{body}");
    let e = eth(&s);
    assert_eq!(e["status"], "trading", "{e}");
    assert_eq!(e["reference_price"], "200.5", "{e}");
    assert_problem(
        &pool.change(&s, "POST", "/v1/instruments/NOPE/halt", &json!({})),
        404,
        "not-found",
    );

    // Keys: create, rotate (the old key is revoked), revoke.
    let (st, _, created) = pool.change(
        &s,
        "POST",
        "/v1/keys",
        &json!({"account": "WS-A", "scopes": ["trade", "read"]}),
    );
    assert_eq!(st, 201, "{created}");
    let new_id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["secret"].as_str().map(str::len),
        Some(64),
        "{created}"
    );
    let (st, _, rotated) =
        pool.change(&s, "POST", &format!("/v1/keys/{new_id}/rotate"), &json!({}));
    assert_eq!(st, 201, "{rotated}");
    assert_eq!(rotated["replaces"], new_id.as_str());
    let rotated_id = rotated["key_id"].as_str().unwrap().to_owned();
    let keys = http(&s, "GET", "/v1/keys", &[bearer(&tok)], None).2;
    let status = |id: &str| {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == id)
            .map(|k| k["status"].clone())
    };
    assert_eq!(status(&new_id), Some(json!("revoked")), "{keys}");
    assert_eq!(status(&rotated_id), Some(json!("active")), "{keys}");
    let (st, _, body) = pool.change(
        &s,
        "POST",
        &format!("/v1/keys/{rotated_id}/revoke"),
        &json!({}),
    );
    assert_eq!((st, &body["revoked"]), (200, &json!(true)), "{body}");
    assert_problem(
        &pool.change(&s, "POST", "/v1/keys/pk_nope/revoke", &json!({})),
        404,
        "not-found",
    );
    assert_problem(
        &pool.change(
            &s,
            "POST",
            "/v1/keys",
            &json!({"account": "WS-A", "scopes": ["fly"]}),
        ),
        400,
        "invalid-request",
    );

    // Sessions: a forced logout.
    let (st, _, body) = pool.change(
        &s,
        "POST",
        "/v1/sessions/FIX.4.4:ISLD-%3ETW/logout",
        &json!({"text": "maintenance"}),
    );
    assert_eq!(st, 200, "{body}");
    let m = fix.expect("5");
    assert_eq!(m.get(58), Some("maintenance"), "{m:?}");
    fix.send("5", &[]);
    assert!(fix.closed());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sessions = http(&s, "GET", "/v1/sessions", &[bearer(&tok)], None).2;
        if sessions["sessions"][0]["state"] == "disconnected" {
            break;
        }
        assert!(Instant::now() < deadline, "{sessions}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_problem(
        &pool.change(
            &s,
            "POST",
            "/v1/sessions/FIX.4.4:ISLD-%3ETW/logout",
            &json!({}),
        ),
        409,
        "not-connected",
    );
    // Sequence numbers of the disconnected session: set, and refused with the reason.
    let (st, _, body) = pool.change(
        &s,
        "POST",
        "/v1/sessions/FIX.4.4:ISLD-%3ETW/sequence",
        &json!({"next_sender_seq": 50, "next_target_seq": 1}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        (&body["next_sender_seq"], &body["next_target_seq"]),
        (&json!(50), &json!(1)),
        "{body}"
    );
    let sessions = http(&s, "GET", "/v1/sessions", &[bearer(&tok)], None).2;
    assert_eq!(
        sessions["sessions"][0]["next_sender_seq"],
        json!(50),
        "{sessions}"
    );
    let refused = pool.change(
        &s,
        "POST",
        "/v1/sessions/FIX.4.4:ISLD-%3ETW/sequence",
        &json!({"next_sender_seq": 49}),
    );
    assert_problem(&refused, 409, "sequence-backwards");
    assert!(
        refused.2["detail"]
            .as_str()
            .unwrap()
            .contains("next_sender_seq 49 is below the next number to send, 50"),
        "{:?}",
        refused.2
    );

    // The audit log: every call is an event; queried by key, account and time.
    let q = format!("/v1/audit?key_id={}&limit=50", op.key.id);
    let (st, _, audit) = http(&s, "GET", &q, &[bearer(&tok)], None);
    assert_eq!(st, 200, "{audit}");
    let events = audit["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "admin"
            && e["reason"] == "PUT /v1/kill-switch"
            && e["outcome"] == "ok"),
        "{audit}"
    );
    assert!(
        events.iter().all(|e| e["key_id"] == op.key.id.as_str()),
        "{audit}"
    );
    let (st, _, by_account) = http(&s, "GET", "/v1/audit?account=TW-ACC", &[bearer(&tok)], None);
    assert_eq!(st, 200, "{by_account}");
    assert!(
        by_account["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "PUT /v1/accounts/TW-ACC/limits"),
        "{by_account}"
    );
    let all = http(
        &s,
        "GET",
        "/v1/audit?since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z",
        &[bearer(&tok)],
        None,
    )
    .2;
    let all = all["events"].as_array().unwrap();
    for reason in ["totp_missing", "totp_wrong", "totp_reused"] {
        assert!(
            all.iter()
                .any(|e| e["reason"] == reason && e["outcome"] == "denied"),
            "no {reason} event"
        );
    }
    assert!(
        all.iter().any(|e| e["reason"] == "GET /healthz"),
        "health calls are audited too"
    );
    assert!(all
        .iter()
        .any(|e| e["detail"].as_str().is_some_and(|d| d.starts_with("403"))));
    let (st, _, none) = http(
        &s,
        "GET",
        "/v1/audit?until=2020-01-01T00:00:00Z",
        &[bearer(&tok)],
        None,
    );
    assert_eq!((st, &none["count"]), (200, &json!(0)), "{none}");
    assert_problem(
        &http(
            &s,
            "GET",
            "/v1/audit?until=yesterday",
            &[bearer(&tok)],
            None,
        ),
        400,
        "invalid-request",
    );
    assert_problem(
        &http(&s, "GET", "/v1/audit?colour=red", &[bearer(&tok)], None),
        400,
        "invalid-request",
    );
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn oauth_with_authlib_pyjwt_and_a_delegated_websocket_token() {
    let mut s = setup(600, 1000);
    let client = create_key(&s.server, &["--account", "WS-A", "--scopes", "trade,read"]);
    let admin = create_key(&s.server, &["--account", "OPS", "--scopes", "admin,read"]);
    s.server.launch();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/oauth_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--base", &format!("https://127.0.0.1:{}", s.admin)])
        .args(["--ca", &s.cert_file])
        .args(["--client-id", &client.id, "--secret", &client.secret])
        .args(["--admin-id", &admin.id, "--admin-secret", &admin.secret])
        .args(["--ws-url", &format!("ws://127.0.0.1:{}/ws-api/v3", s.ws)])
        .args(["--symbol", "BTC-PERP", "--other-symbol", "ETH-PERP"])
        .output()
        .expect("python3 must be installed (scripts/test.sh installs authlib, pyjwt, pyotp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "oauth client failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        s.server.log_text()
    );
    for check in [
        "client_credentials with client_secret_basic",
        "access token verified by PyJWT against the JWKS",
        "refresh token reuse detected",
        "introspection and revocation",
        "client_secret_jwt",
        "another instrument and a quantity above max_qty are refused",
        "a revoked token ends the connection's rights at once",
    ] {
        assert!(stdout.contains(check), "missing {check:?}:\n{stdout}");
    }
    // Tokens survive a restart: the signing key is sealed under the master key.
    let before = token(&s, &admin, "");
    s.server.restart();
    let (st, _, body) = http(&s, "GET", "/v1/instruments", &[bearer(&before)], None);
    assert_eq!(st, 200, "{body}");
}

#[test]
fn expired_tokens_and_repeated_totp_failures_lock_out() {
    let mut s = setup(1, 5);
    let op = operator(&s.server);
    s.server.launch();
    let tok = token(&s, &op.key, "");
    assert_eq!(http(&s, "GET", "/v1/keys", &[bearer(&tok)], None).0, 200);
    // Lifetime 1 s plus the validation leeway (10 s).
    std::thread::sleep(Duration::from_millis(12_500));
    let r = http(&s, "GET", "/v1/keys", &[bearer(&tok)], None);
    assert_problem(&r, 401, "invalid-token");
    assert!(
        r.2["detail"].as_str().unwrap().contains("expired"),
        "{}",
        r.2
    );

    // Wrong TOTP codes, like failed logons, lock the key (and the address) out.
    let body = json!({"on": true}).to_string();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        // A signature covers a millisecond timestamp: two requests in one millisecond would
        // be one signature, and the second refused as a replay rather than for its code.
        std::thread::sleep(Duration::from_millis(2));
        let h = signed(&op.key, "PUT", "/v1/kill-switch", &body);
        let mut h: Vec<(&str, String)> = h;
        h.push(json_ct());
        h.push(("X-PC-TOTP", "000000".into()));
        statuses.push(http(&s, "PUT", "/v1/kill-switch", &h, Some(&body)));
    }
    // 000000 may, once in a million, be the right code: the check is on the later answers.
    let last = statuses.last().unwrap();
    assert_problem(last, 429, "locked-out");
    assert!(header(&last.1, "retry-after").is_some());
    let h = signed(&op.key, "GET", "/v1/keys", "");
    assert_problem(&http(&s, "GET", "/v1/keys", &h, None), 429, "locked-out");
}

#[test]
fn with_client_ca_only_clients_with_a_certificate_it_signed_are_served() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let s = setup(600, 1000);
    // A client CA and a client certificate it signs.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["operator".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let ca_file = s.server.dir.join("client-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let text = std::fs::read_to_string(&s.server.config).unwrap().replace(
        "access_token_ttl_secs",
        &format!(
            "client_ca = {:?}\naccess_token_ttl_secs",
            ca_file.display().to_string()
        ),
    );
    std::fs::write(&s.server.config, text).unwrap();
    let mut s = s;
    s.server.launch();

    let roots = {
        let mut r = rustls::RootCertStore::empty();
        r.add(s.cert.clone()).unwrap();
        std::sync::Arc::new(r)
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots.clone())
    };
    let get_health = |cfg: rustls::ClientConfig| -> std::io::Result<String> {
        let mut conn = tls_connect(s.admin, std::sync::Arc::new(cfg))?;
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut out = Vec::new();
        match conn.read_to_end(&mut out) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
            Err(e) => return Err(e),
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    // Without a client certificate: refused during the handshake, no HTTP at all.
    let refused = get_health(builder().with_no_client_auth());
    assert!(
        refused.as_ref().map_or(true, |t| !t.contains("200 OK")),
        "{refused:?}"
    );
    // With one the CA signed: served.
    let key = rustls::pki_types::PrivateKeyDer::try_from(client_key.serialize_der()).unwrap();
    let cfg = builder()
        .with_client_auth_cert(vec![client.der().clone()], key)
        .unwrap();
    let ok = get_health(cfg).unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn a_risk_desk_reads_an_accounts_orders_and_trades_from_the_history() {
    let mut s = setup(600, 1000);
    let op = operator(&s.server);
    let ws_key = create_key(&s.server, &["--account", "WS-A", "--scopes", "trade,read"]);
    s.server.launch();
    let tok = token(&s, &op.key, "");
    let get = |target: &str| http(&s, "GET", target, &[bearer(&tok)], None);

    // Two sells of the FIX session's account rest; another account buys into the first over
    // the WebSocket API.
    let mut c = FixClient::tcp(s.fix, "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    let ack = fix_order(&mut c, "DESK-1", "0.020", "100.0");
    let sell_id: u64 = ack.get(37).unwrap().parse().unwrap();
    fix_order(&mut c, "DESK-2", "0.010", "105.0");
    let mut ws = crate::ws::Ws::plain(s.ws);
    let r = ws.call(
        json!(1),
        "order.place",
        crate::ws::signed(
            json!({"symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                   "price": "100.0", "quantity": "0.015"}),
            &ws_key,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    let fill = c.expect("8");
    assert_eq!(fill.get(39), Some("1"), "{fill:?}");

    // The history follows the journal: ask until both orders and the trade are there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let orders = loop {
        let (st, _, body) = get("/v1/accounts/TW-ACC/orders");
        assert_eq!(st, 200, "{body}");
        let filled = body["orders"][0]["filled"] == "0.015";
        if filled || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let list = orders["orders"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{orders}");
    let o = &list[0];
    assert_eq!(o["order_id"], sell_id);
    assert_eq!(o["client_order_id"], "DESK-1");
    assert_eq!(o["session"], "FIX.4.4:ISLD->TW");
    assert_eq!(o["side"], "sell");
    assert_eq!(o["type"], "limit");
    assert_eq!(o["time_in_force"], "gtc");
    assert_eq!(o["price"], "100.0");
    assert_eq!(o["quantity"], "0.020");
    assert_eq!(o["filled"], "0.015");
    assert_eq!(o["average_price"], "100.0");
    assert_eq!(o["status"], "partially_filled");
    assert!(o["created"].as_str().unwrap().ends_with('Z'), "{o}");
    assert_eq!(list[1]["client_order_id"], "DESK-2");
    assert_eq!(list[1]["status"], "working");

    let (st, _, t) = get("/v1/accounts/TW-ACC/trades?symbol=BTC-PERP");
    assert_eq!(st, 200, "{t}");
    let trades = t["trades"].as_array().unwrap();
    assert_eq!(trades.len(), 1, "{t}");
    assert_eq!(trades[0]["order_id"], sell_id);
    assert_eq!(trades[0]["side"], "sell");
    assert_eq!(trades[0]["quantity"], "0.015");
    assert_eq!(trades[0]["price"], "100.0");
    assert_eq!(trades[0]["liquidity"], "maker");
    // The account view has the risk engine's figures: positions, open orders, credit used.
    let (st, _, acc) = get("/v1/accounts/TW-ACC");
    assert_eq!(st, 200, "{acc}");
    assert_eq!(acc["open_orders"], 2, "{acc}");
    assert_eq!(
        acc["positions"],
        json!([{"symbol": "BTC-PERP", "position": "-0.015", "entry_price": "100.0",
                 "reference_price": "100.0"}]),
        "{acc}"
    );
    assert!(acc["credit_used"].is_string(), "{acc}");
    assert_eq!(
        acc["underlyings"],
        json!([{"underlying": "BTC", "position": "-0.015"}]),
        "{acc}"
    );
    let (_, _, acc) = get("/v1/accounts/WS-A");
    assert_eq!(acc["positions"][0]["position"], "0.015", "{acc}");
    assert_eq!(acc["open_orders"], 0, "{acc}");
    let (_, _, w) = get("/v1/accounts/WS-A/trades");
    assert_eq!(w["trades"][0]["liquidity"], "taker", "{w}");
    assert_eq!(w["trades"][0]["side"], "buy", "{w}");
    assert_eq!(w["trades"][0]["trade_id"], trades[0]["trade_id"], "{w}");
    let (_, _, w) = get("/v1/accounts/WS-A/orders");
    assert_eq!(w["orders"][0]["session"], "websocket", "{w}");
    assert_eq!(w["orders"][0]["status"], "filled", "{w}");

    // Filters: one instrument, the latest, from an id; another instrument has none.
    let (_, _, one) = get("/v1/accounts/TW-ACC/orders?limit=1");
    assert_eq!(one["orders"].as_array().unwrap().len(), 1);
    assert_eq!(one["orders"][0]["client_order_id"], "DESK-2");
    let (_, _, from) = get(&format!(
        "/v1/accounts/TW-ACC/orders?from_order_id={sell_id}&limit=1"
    ));
    assert_eq!(from["orders"][0]["order_id"], sell_id);
    let (_, _, none) = get("/v1/accounts/TW-ACC/orders?symbol=ETH-PERP");
    assert_eq!(none["orders"], json!([]));
    // Bad input: precise problems.
    for (target, slug) in [
        ("/v1/accounts/NOPE/orders", "not-found"),
        ("/v1/accounts/TW-ACC/orders?symbol=NOPE", "invalid-request"),
        ("/v1/accounts/TW-ACC/orders?limit=0", "invalid-request"),
        (
            "/v1/accounts/TW-ACC/orders?from_trade_id=1",
            "invalid-request",
        ),
        (
            "/v1/accounts/TW-ACC/trades?since=yesterday",
            "invalid-request",
        ),
    ] {
        assert_problem(
            &get(target),
            if slug == "not-found" { 404 } else { 400 },
            slug,
        );
    }
    // Reads only: a change is refused with the methods allowed.
    let (st, _, _) = http(
        &s,
        "POST",
        "/v1/accounts/TW-ACC/orders",
        &[bearer(&tok)],
        None,
    );
    assert_eq!(st, 405);

    // A trailing stop and an iceberg show their distance and display quantity; the trailing
    // stop without an activation price shows no stop price.
    for (id, params) in [
        (
            "TRAIL",
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "STOP_LOSS", "trailingDelta": 150,
                   "quantity": "0.010", "newClientOrderId": "TRAIL"}),
        ),
        (
            "ICE",
            json!({"symbol": "BTC-PERP", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                   "price": "104.0", "quantity": "0.020", "icebergQty": "0.005",
                   "newClientOrderId": "ICE"}),
        ),
    ] {
        let r = ws.call(json!(id), "order.place", crate::ws::signed(params, &ws_key));
        assert_eq!(r["status"], 200, "{r}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (trail, ice) = loop {
        let (_, _, w) = get("/v1/accounts/WS-A/orders");
        let find = |cl: &str| {
            w["orders"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["client_order_id"] == cl)
                .cloned()
        };
        if let (Some(t), Some(i)) = (find("TRAIL"), find("ICE")) {
            break (t, i);
        }
        assert!(std::time::Instant::now() < deadline, "{w}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        (
            &trail["type"],
            &trail["stop_price"],
            &trail["trailing_delta_bips"],
            &trail["display_quantity"]
        ),
        (&json!("stop"), &Value::Null, &json!(150), &Value::Null),
        "{trail}"
    );
    assert_eq!(
        (&ice["display_quantity"], &ice["trailing_delta_bips"]),
        (&json!("0.005"), &Value::Null),
        "{ice}"
    );
}
