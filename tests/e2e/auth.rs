//! Authentication seen from the outside: keys created with the CLI, signed Logons over TLS 1.3,
//! per-message signatures, every way a Logon can fail (the same Logout text for each, a precise
//! reason in the audit log), lockout, revocation of a live session, master-key rotation, and
//! the vault and master-key errors that stop the server with exit code 2.

use std::time::{Duration, Instant};

use portcullis_auth::fix_sig::{sign_logon, sign_message, LogonFields};
use portcullis_fix::{Encoder, TimePrecision, UtcTimestamp};
use serde_json::Value;

use crate::harness::{
    audit_export, files_containing, free_port, run_env, run_split, test_cert, tls_client,
    tls_connect, FixClient, Msg, Server, MASTER_KEY_ENV,
};

/// The master key of these tests (test-only, never a real one).
const MASTER: &str = "1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// Another one, to show that a wrong master key is refused.
const OTHER_MASTER: &str = "1:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

const AUTH_FAILED: &str = "Authentication failed";

/// An API key as `keys create --json` printed it.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) secret: String,
}

pub(crate) fn env() -> [(&'static str, &'static str); 1] {
    [(MASTER_KEY_ENV, MASTER)]
}

/// `portcullis keys create --config <server config> <args> --json`.
pub(crate) fn create_key(server: &Server, args: &[&str]) -> Key {
    let config = server.config.display().to_string();
    let mut all = vec!["keys", "create", "--config", config.as_str(), "--json"];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = server
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, stdout, stderr) = run_split(&all, &server.dir, &env);
    assert_eq!(code, 0, "keys create failed: {stdout}{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("keys create --json prints JSON");
    Key {
        id: v["key_id"].as_str().unwrap().to_owned(),
        secret: v["secret"].as_str().unwrap().to_owned(),
    }
}

fn revoke_key(server: &Server, key: &Key) {
    let (code, out) = server.cli(&["keys", "revoke", &key.id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("revoked {}", key.id)), "{out}");
}

/// Every audit event, oldest first (decrypted by `portcullis audit export`).
fn audit(server: &Server) -> Vec<Value> {
    server.audit_events(&[])
}

/// Waits (up to 5 s) until the audit log has a line matching `pred` after the first `from`
/// lines; returns it.
fn await_audit(server: &Server, from: usize, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = audit(server).into_iter().skip(from).find(&pred) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no such audit line after line {from}: {:#?}\nserver log:\n{}",
            audit(server),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A FIX UTCTimestamp `offset_ms` from now.
fn sending_time(offset_ms: i64) -> String {
    let t = UtcTimestamp::from_nanos(UtcTimestamp::now().nanos() + offset_ms * 1_000_000);
    let mut out = Vec::new();
    t.write(TimePrecision::Millis, &mut out);
    String::from_utf8(out).unwrap()
}

/// How a test Logon is made.
struct LogonSpec<'a> {
    key_id: &'a str,
    /// The secret it is signed with; `None` sends no RawData(96).
    secret: Option<&'a str>,
    sending_time: String,
    seq: u64,
    /// Sign as if SenderCompID(49) were this (the message still says the client's own).
    signed_sender: Option<&'a str>,
    extra: &'a [(u32, &'a str)],
}

impl<'a> LogonSpec<'a> {
    fn new(key: &'a Key) -> Self {
        Self {
            key_id: &key.id,
            secret: Some(&key.secret),
            sending_time: sending_time(0),
            seq: 1,
            signed_sender: None,
            extra: &[],
        }
    }
}

/// The bytes of a Logon from `c` (its BeginString and CompIDs), signed as DESIGN.md §4 says:
/// RawData(96) = base64(HMAC-SHA256(secret, 52 ␁ 35 ␁ 34 ␁ 49 ␁ 56 ␁ 553)).
fn logon_bytes(c: &FixClient, spec: &LogonSpec<'_>) -> Vec<u8> {
    let seq = spec.seq.to_string();
    let mut enc = Encoder::new();
    enc.start(c.begin.as_bytes(), b"A");
    enc.str(49, c.sender.as_bytes())
        .str(56, c.target.as_bytes())
        .uint(34, spec.seq)
        .str(52, spec.sending_time.as_bytes());
    enc.uint(98, 0).uint(108, 30);
    if c.begin == "FIXT.1.1" {
        enc.str(1137, b"9");
    }
    for (t, v) in spec.extra {
        enc.str(*t, v.as_bytes());
    }
    enc.str(553, spec.key_id.as_bytes());
    if let Some(secret) = spec.secret {
        let raw = sign_logon(
            secret.as_bytes(),
            &LogonFields {
                sending_time: spec.sending_time.as_bytes(),
                msg_type: b"A",
                msg_seq_num: seq.as_bytes(),
                sender_comp_id: spec.signed_sender.unwrap_or(&c.sender).as_bytes(),
                target_comp_id: c.target.as_bytes(),
                username: spec.key_id.as_bytes(),
            },
        );
        enc.data(95, 96, raw.as_bytes());
    }
    enc.finish().to_vec()
}

/// Sends a signed Logon with the client's next MsgSeqNum.
fn logon(c: &mut FixClient, key: &Key) -> Msg {
    let spec = LogonSpec {
        seq: c.seq,
        ..LogonSpec::new(key)
    };
    let bytes = logon_bytes(c, &spec);
    c.seq += 1;
    c.write(&bytes);
    c.recv()
}

/// A whole FIX message with a correct BodyLength and CheckSum. `body` is everything after
/// BodyLength up to and including the SOH before 93. With `secret`, SignatureLength(93) and
/// Signature(89) are appended, the signature computed over `signed_body` in place of `body`
/// (equal unless the test tampers with the message after signing).
fn message(begin: &str, body: &[u8], secret: Option<&str>, signed_body: Option<&[u8]>) -> Vec<u8> {
    const SIG_FIELDS: usize = "93=44\x0189=".len() + 44 + 1;
    let sig_len = if secret.is_some() { SIG_FIELDS } else { 0 };
    let head = format!("8={begin}\x019={}\x01", body.len() + sig_len).into_bytes();
    let mut m = head.clone();
    m.extend_from_slice(body);
    if let Some(secret) = secret {
        let mut signed = head;
        signed.extend_from_slice(signed_body.unwrap_or(body));
        let sig = sign_message(secret.as_bytes(), &signed);
        m.extend_from_slice(b"93=44\x0189=");
        m.extend_from_slice(sig.as_bytes());
        m.push(1);
    }
    let sum = m.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    m.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    m
}

/// The body of a NewOrderSingle from `c` with the client's next MsgSeqNum (taken).
fn order_body(c: &mut FixClient, cl_ord_id: &str, qty: &str) -> (u64, Vec<u8>) {
    let seq = c.seq;
    c.seq += 1;
    let body = format!(
        "35=D\x0149={}\x0156={}\x0134={seq}\x0152={}\x0111={cl_ord_id}\x011=TW-ACC\x0121=1\x01\
         55=BTC-28JUN24-70000-C\x0154=1\x0160={}\x0138={qty}\x0140=2\x0144=0.0550\x0159=0\x01",
        c.sender,
        c.target,
        sending_time(0),
        sending_time(0),
    );
    (seq, body.into_bytes())
}

/// Expects the Logout that refuses a Logon, with `text`, then the end of the connection and
/// nothing else.
fn expect_refusal(c: &mut FixClient, text: &str) -> Msg {
    let m = c.recv();
    assert_eq!(m.msg_type(), "5", "a refused Logon gets a Logout: {m:?}");
    assert_eq!(m.get(58), Some(text), "{m:?}");
    assert!(
        c.try_recv().is_none(),
        "nothing but the Logout before the disconnect"
    );
    m
}

/// The last `logon` audit event after line `from`.
fn logon_event(server: &Server, from: usize) -> Value {
    await_audit(server, from, |v| v["kind"] == "logon")
}

fn assert_denied(event: &Value, reason: &str, key: &str) {
    assert_eq!(event["outcome"], "denied", "{event}");
    assert_eq!(event["reason"], reason, "{event}");
    assert_eq!(event["key_id"], key, "{event}");
    assert_eq!(event["peer_ip"], "127.0.0.1", "{event}");
    assert_eq!(event["session"], "FIX.4.4:ISLD->TW", "{event}");
}

// ---------------------------------------------------------------------------------------------

#[test]
fn a_cli_key_logs_on_over_tls13_trades_with_signed_messages_and_is_revoked_live() {
    let port = free_port();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key_pem, der) = test_cert(certs.path());
    let config = format!(
        r#"
data_dir = "{{DATA_DIR}}"

[tls]
cert_file = "{cert}"
key_file = "{key_pem}"

[[listeners]]
name = "fix44-tls"
bind = "127.0.0.1:{port}"
tls = true
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
accounts = ["TW-ACC"]
require_message_signature = true
store_sync = "never"
"#,
        cert = cert.display(),
        key_pem = key_pem.display(),
    );
    let mut server = Server::configure(&config, &[port], &env());
    let key = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade,read"]);
    assert!(key.id.starts_with("pk_"), "{key:?}");
    assert_eq!(key.secret.len(), 64);
    server.launch();

    // Logon over TLS 1.3, signed.
    let stream = tls_connect(port, tls_client(der.clone(), &[&rustls::version::TLS13])).unwrap();
    assert_eq!(
        stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut c = FixClient::over(Box::new(stream), "FIX.4.4");
    let a = logon(&mut c, &key);
    assert_eq!(a.msg_type(), "A", "{a:?}\n{}", server.log_text());
    let ok = logon_event(&server, 0);
    assert_eq!(ok["outcome"], "ok", "{ok}");
    assert_eq!(ok["reason"], "authenticated");
    assert_eq!(ok["key_id"], key.id.as_str());
    assert_eq!(ok["account"], "TW-ACC");
    assert_eq!(ok["peer_ip"], "127.0.0.1");
    assert_eq!(ok["session"], "FIX.4.4:ISLD->TW");

    // A signed order reaches the order pipeline and is answered: this server lists no
    // instruments, so it is rejected as an unknown symbol (OrdRejReason 1).
    let (_, body) = order_body(&mut c, "ORD-1", "10");
    c.write(&message("FIX.4.4", &body, Some(&key.secret), None));
    let er = c.expect("8");
    assert_eq!(er.get(11), Some("ORD-1"), "{er:?}");
    assert_eq!(er.get(39), Some("8"), "{er:?}");
    assert_eq!(er.get(103), Some("1"), "{er:?}");
    assert_eq!(er.get(58), Some("unknown instrument"), "{er:?}");

    // Admin messages need no signature.
    c.send("1", &[(112, "ADMIN-UNSIGNED")]);
    assert_eq!(c.expect("0").get(112), Some("ADMIN-UNSIGNED"));

    // Without a signature: Reject 373=1 (required tag missing) on 371=93, never passed on.
    let before = audit(&server).len();
    let (seq, body) = order_body(&mut c, "ORD-UNSIGNED", "10");
    c.write(&message("FIX.4.4", &body, None, None));
    let r = c.expect("3");
    assert_eq!(r.get(45), Some(seq.to_string().as_str()));
    assert_eq!(r.get(373), Some("1"), "{r:?}");
    assert_eq!(r.get(371), Some("93"), "{r:?}");
    let e = await_audit(&server, before, |v| v["kind"] == "message_signature");
    assert_eq!(e["reason"], "missing_signature", "{e}");
    assert_eq!(e["outcome"], "denied");
    assert_eq!(e["key_id"], key.id.as_str());

    // Body changed after signing (quantity 10 -> 90): Reject 373=8 (signature problem).
    let before = audit(&server).len();
    let (seq, body) = order_body(&mut c, "ORD-TAMPERED", "10");
    let s = String::from_utf8(body.clone()).unwrap();
    let tampered = s.replace("\x0138=10\x01", "\x0138=90\x01").into_bytes();
    c.write(&message(
        "FIX.4.4",
        &tampered,
        Some(&key.secret),
        Some(&body),
    ));
    let r = c.expect("3");
    assert_eq!(r.get(45), Some(seq.to_string().as_str()));
    assert_eq!(r.get(373), Some("8"), "{r:?}");
    assert_eq!(r.get(371), Some("89"), "{r:?}");
    let e = await_audit(&server, before, |v| v["kind"] == "message_signature");
    assert_eq!(e["reason"], "bad_signature", "{e}");

    // The session goes on: the next signed order is answered.
    let (_, body) = order_body(&mut c, "ORD-2", "10");
    c.write(&message("FIX.4.4", &body, Some(&key.secret), None));
    assert_eq!(c.expect("8").get(11), Some("ORD-2"));

    // `keys list` never shows a secret.
    for args in [&["keys", "list"][..], &["keys", "list", "--json"][..]] {
        let (code, out) = server.cli(args);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&key.id), "{out}");
        assert!(out.contains("TW-ACC"), "{out}");
        assert!(!out.contains(&key.secret), "a secret in `keys list`: {out}");
    }

    // SIGHUP reloads the vault without ending the process or the session.
    let before = audit(&server).len();
    server.signal("HUP");
    let e = await_audit(&server, before, |v| v["kind"] == "keys_reloaded");
    assert_eq!(e["outcome"], "ok", "{e}");
    assert!(server.is_running());
    c.send("1", &[(112, "AFTER-HUP")]);
    assert_eq!(c.expect("0").get(112), Some("AFTER-HUP"));

    // Revoked with the CLI while logged on: the session ends at once.
    let before = audit(&server).len();
    let at = Instant::now();
    revoke_key(&server, &key);
    let logout = c.expect("5");
    assert_eq!(logout.get(58), Some("Credential revoked"), "{logout:?}");
    assert!(c.closed());
    assert!(
        at.elapsed() < Duration::from_secs(4),
        "revocation took {:?}",
        at.elapsed()
    );
    let e = await_audit(&server, before, |v| v["kind"] == "key_revoked");
    assert_eq!(e["key_id"], key.id.as_str());

    // The revoked key cannot log on again.
    let before = audit(&server).len();
    let stream = tls_connect(port, tls_client(der, &[&rustls::version::TLS13])).unwrap();
    let mut c = FixClient::over(Box::new(stream), "FIX.4.4");
    let bytes = logon_bytes(&c, &LogonSpec::new(&key));
    c.write(&bytes);
    expect_refusal(&mut c, AUTH_FAILED);
    assert_denied(&logon_event(&server, before), "revoked", &key.id);

    // A clean stop writes the key's last use into the vault.
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    let (code, out) = server.cli(&["keys", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let k = &list.as_array().unwrap()[0];
    assert_eq!(k["status"], "revoked");
    assert!(k["last_used_at"].is_string(), "{k}");
    drop(certs);
}

/// A server with a plain-TCP FIX.4.4 and FIX.4.2 listener (loopback), the ISLD/TW sessions
/// and the instrument BTC-PERP.
pub(crate) fn plain_config(p44: u16, p42: u16, auth: &str) -> String {
    format!(
        r#"
data_dir = "{{DATA_DIR}}"

[[listeners]]
name = "fix44"
bind = "127.0.0.1:{p44}"
tls = false
begin_string = "FIX.4.4"

[[listeners]]
name = "fix42"
bind = "127.0.0.1:{p42}"
tls = false
begin_string = "FIX.4.2"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
accounts = ["TW-ACC"]
store_sync = "never"

[[sessions]]
begin_string = "FIX.4.2"
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

[auth]
{auth}
"#
    )
}

#[test]
fn every_logon_failure_gets_the_same_logout_and_a_precise_audit_line() {
    let (p44, p42) = (free_port(), free_port());
    // Every attempt below comes from 127.0.0.1: a high failure limit keeps the address from
    // being locked out here (lockout has its own test).
    let mut server = Server::configure(
        &plain_config(p44, p42, "max_failures = 1000"),
        &[p44, p42],
        &env(),
    );
    let good = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    let revoked = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    revoke_key(&server, &revoked);
    let expires_at = portcullis_auth::clock::now_ms() + 4_000;
    let expiring = create_key(
        &server,
        &[
            "--account",
            "TW-ACC",
            "--scopes",
            "trade",
            "--expires",
            &portcullis_auth::clock::format_rfc3339_ms(expires_at),
        ],
    );
    let elsewhere = create_key(
        &server,
        &[
            "--account",
            "TW-ACC",
            "--scopes",
            "trade",
            "--ip",
            "10.0.0.0/8",
        ],
    );
    let other_account = create_key(&server, &["--account", "OTHER-ACC", "--scopes", "trade"]);
    let read_only = create_key(&server, &["--account", "TW-ACC", "--scopes", "read"]);
    server.launch();

    // One failing Logon: the Logout says only "Authentication failed", the audit log says why.
    let attempt = |spec: LogonSpec<'_>, reason: &str| {
        let before = audit(&server).len();
        let mut c = FixClient::tcp(p44, "FIX.4.4");
        let bytes = logon_bytes(&c, &spec);
        c.write(&bytes);
        expect_refusal(&mut c, AUTH_FAILED);
        assert_denied(&logon_event(&server, before), reason, spec.key_id);
    };

    let unknown = Key {
        id: "pk_00000000000000000000000000000000".into(),
        secret: good.secret.clone(),
    };
    attempt(LogonSpec::new(&unknown), "unknown_key");
    attempt(LogonSpec::new(&revoked), "revoked");
    attempt(LogonSpec::new(&elsewhere), "ip_not_allowed");
    attempt(
        LogonSpec {
            sending_time: sending_time(-10_000),
            ..LogonSpec::new(&good)
        },
        "stale_sending_time",
    );
    attempt(
        LogonSpec {
            sending_time: sending_time(10_000),
            ..LogonSpec::new(&good)
        },
        "future_sending_time",
    );
    attempt(
        LogonSpec {
            secret: Some(&other_account.secret),
            ..LogonSpec::new(&good)
        },
        "bad_signature",
    );
    attempt(
        LogonSpec {
            signed_sender: Some("EVE"),
            ..LogonSpec::new(&good)
        },
        "bad_signature",
    );
    attempt(
        LogonSpec {
            secret: None,
            ..LogonSpec::new(&good)
        },
        "missing_signature",
    );
    attempt(LogonSpec::new(&other_account), "account_not_allowed");
    attempt(LogonSpec::new(&read_only), "missing_scope");

    // Replay: the same bytes twice. The first logs on (and out), the second is refused.
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    let replayed = logon_bytes(&c, &LogonSpec::new(&good));
    c.write(&replayed);
    let a = c.expect("A");
    assert_eq!(a.seq(), 1);
    c.seq = 2;
    c.send("5", &[]);
    c.expect("5");
    assert!(c.closed());
    let before = audit(&server).len();
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    c.write(&replayed);
    expect_refusal(&mut c, AUTH_FAILED);
    assert_denied(&logon_event(&server, before), "replayed", &good.id);

    // ResetSeqNumFlag=Y with a bad signature resets nothing. The session is at 3 both ways
    // (Logon 1 and Logout 2 each way).
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    let bytes = logon_bytes(
        &c,
        &LogonSpec {
            secret: Some(&other_account.secret),
            extra: &[(141, "Y")],
            ..LogonSpec::new(&good)
        },
    );
    let before = audit(&server).len();
    c.write(&bytes);
    let refusal = expect_refusal(&mut c, AUTH_FAILED);
    assert_eq!(
        refusal.seq(),
        3,
        "the refusal is not sequenced: {refusal:?}"
    );
    assert_denied(&logon_event(&server, before), "bad_signature", &good.id);
    // A proper Logon continues at 3: neither side was reset.
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    c.seq = 3;
    let a = logon(&mut c, &good);
    assert_eq!(a.msg_type(), "A", "{a:?}");
    assert_eq!(a.seq(), 3, "our numbers were not reset: {a:?}");
    c.send("1", &[(112, "NO-GAP")]);
    let hb = c.expect("0");
    assert_eq!(hb.get(112), Some("NO-GAP"), "no ResendRequest: {hb:?}");
    assert_eq!(hb.seq(), 4);
    c.send("5", &[]);
    c.expect("5");

    // FIX 4.2 has no Username(553) in its Logon; it is accepted as an extension field.
    let mut c = FixClient::tcp(p42, "FIX.4.2");
    let a = logon(&mut c, &good);
    assert_eq!(a.msg_type(), "A", "{a:?}");
    c.send("5", &[]);
    c.expect("5");

    // A key that expires while its session is logged on ends the session when it expires.
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    c.seq = 6; // after Logon 3, TestRequest 4, Logout 5
    let a = logon(&mut c, &expiring);
    assert_eq!(a.msg_type(), "A", "logged on before the expiry: {a:?}");
    assert!(portcullis_auth::clock::now_ms() < expires_at);
    let logout = c.expect("5");
    assert_eq!(logout.get(58), Some("Credential revoked"), "{logout:?}");
    let late = portcullis_auth::clock::now_ms() - expires_at;
    assert!(
        (0..2_500).contains(&late),
        "ended {late} ms after the expiry"
    );
    assert!(c.closed());
    // And an expired key cannot log on.
    attempt(LogonSpec::new(&expiring), "expired");
    // `keys list` shows it as expired, in text and JSON.
    let (code, out) = server.cli(&["keys", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == expiring.id.as_str())
        .unwrap();
    assert_eq!(entry["status"], "expired", "{entry}");
}

#[test]
fn repeated_failures_lock_out_even_a_correct_logon_until_the_back_off_ends() {
    let (p44, p42) = (free_port(), free_port());
    let mut server = Server::configure(
        &plain_config(
            p44,
            p42,
            "max_failures = 5\nfailure_window_ms = 60000\nlockout_base_ms = 1500",
        ),
        &[p44, p42],
        &env(),
    );
    let key = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    let other = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    server.launch();

    for _ in 0..5 {
        let mut c = FixClient::tcp(p44, "FIX.4.4");
        let bytes = logon_bytes(
            &c,
            &LogonSpec {
                secret: Some(&other.secret),
                ..LogonSpec::new(&key)
            },
        );
        c.write(&bytes);
        expect_refusal(&mut c, AUTH_FAILED);
    }
    let locked_at = Instant::now();
    let lockout = await_audit(&server, 0, |v| v["kind"] == "lockout");
    assert_eq!(lockout["reason"], "too_many_failures", "{lockout}");
    assert_eq!(lockout["key_id"], key.id.as_str());

    // A correct Logon is refused while locked, before any signature check.
    let before = audit(&server).len();
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    let bytes = logon_bytes(&c, &LogonSpec::new(&key));
    c.write(&bytes);
    expect_refusal(&mut c, "Too many attempts, retry later");
    assert_denied(&logon_event(&server, before), "locked", &key.id);

    // After the back-off it logs on.
    std::thread::sleep(Duration::from_millis(1600).saturating_sub(locked_at.elapsed()));
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    let a = logon(&mut c, &key);
    assert_eq!(a.msg_type(), "A", "{a:?}\n{:#?}", audit(&server));
}

#[test]
fn rotating_the_master_key_keeps_every_key_usable_without_a_restart() {
    let (p44, p42) = (free_port(), free_port());
    let mut server = Server::configure(
        &plain_config(p44, p42, "master_key_file = \"{DATA_DIR}/master.key\""),
        &[p44, p42],
        &[],
    );
    let key_file = server.create_master_key_file();
    let key = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    server.launch();
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    assert_eq!(logon(&mut c, &key).msg_type(), "A");

    let before = audit(&server).len();
    let (code, out) = server.cli(&["keys", "rotate-master"]);
    assert_eq!(code, 0, "{out}");
    let ring = std::fs::read_to_string(&key_file).unwrap();
    assert!(ring.trim().starts_with("2:"), "new key first");
    assert!(ring.contains(",1:"), "old key kept");
    let e = await_audit(&server, before, |v| v["kind"] == "master_key_rotated");
    assert!(e["detail"].as_str().unwrap().contains("\"2\""), "{e}");
    // The server re-reads the key file and reloads the re-encrypted vault; the live session
    // is untouched.
    let e = await_audit(&server, before, |v| v["kind"] == "keys_reloaded");
    assert_eq!(e["outcome"], "ok", "{e}");
    c.send("1", &[(112, "STILL-ON")]);
    assert_eq!(c.expect("0").get(112), Some("STILL-ON"));
    c.send("5", &[]);
    c.expect("5");
    assert!(c.closed());

    // The old key is no longer needed: retire it. The key works on, also after a restart.
    let (code, out) = server.cli(&["keys", "retire-master", "1"]);
    assert_eq!(code, 0, "{out}");
    let ring = std::fs::read_to_string(&key_file).unwrap();
    assert!(!ring.contains("1:"), "{}", ring.len());
    let (code, out) = server.cli(&["keys", "retire-master", "2"]);
    assert_eq!(code, 2, "the current key cannot be retired: {out}");
    server.restart();
    let mut c = FixClient::tcp(p44, "FIX.4.4");
    c.seq = 4; // after Logon 1, TestRequest 2, Logout 3
    assert_eq!(logon(&mut c, &key).msg_type(), "A");
}

#[test]
fn master_key_and_vault_errors_stop_the_server_with_exit_code_2() {
    let (p44, p42) = (free_port(), free_port());
    let server = Server::configure(&plain_config(p44, p42, ""), &[p44, p42], &env());
    let config = server.config.display().to_string();
    let serve = |env: &[(&str, &str)]| run_env(&["serve", "--config", &config], &server.dir, env);

    // No master key anywhere: a config other than the embedded default never makes one.
    let (code, out) = serve(&[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no master key"), "{out}");
    assert!(!server.data_dir().join("vault.bin").exists());
    // A malformed one.
    let (code, out) = serve(&[(MASTER_KEY_ENV, "not-a-key")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("64 hex"), "{out}");

    let key = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    let vault = server.data_dir().join("vault.bin");
    let good = std::fs::read(&vault).unwrap();

    // The wrong master key: refused, for `serve` and for `keys`.
    let (code, out) = serve(&[(MASTER_KEY_ENV, OTHER_MASTER)]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("wrong master key"), "{out}");
    let (code, out) = run_env(
        &["keys", "list", "--config", &config],
        &server.dir,
        &[(MASTER_KEY_ENV, OTHER_MASTER)],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("wrong master key"), "{out}");

    // One byte changed in the ciphertext.
    let mut bad = good.clone();
    let last = bad.len() - 20;
    bad[last] ^= 0x01;
    std::fs::write(&vault, &bad).unwrap();
    let (code, out) = serve(&env());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tampered"), "{out}");
    let (code, out) = server.cli(&["keys", "list"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tampered"), "{out}");
    assert!(!out.contains(&key.id), "{out}");

    // Cut short.
    std::fs::write(&vault, &good[..good.len() / 2]).unwrap();
    let (code, out) = serve(&env());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("truncated"), "{out}");

    // Restored, the same key is listed again.
    std::fs::write(&vault, &good).unwrap();
    let (code, out) = server.cli(&["keys", "list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&key.id), "{out}");
}

#[test]
fn the_embedded_default_creates_a_dev_master_key_only_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_split(
        &[
            "keys",
            "create",
            "--account",
            "DEMO-ACC",
            "--scopes",
            "trade,read",
            "--json",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("DEVELOPMENT master key"), "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let id = v["key_id"].as_str().unwrap();
    let key_file = dir.path().join("var/master.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, out) = run_env(&["keys", "list"], dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(id), "{out}");
    // The audit log is encrypted at rest; the CLI reads it (embedded default, dev key).
    let events = audit_export(&["audit", "export"], dir.path(), &[]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "key_created" && e["key_id"] == id),
        "{events:#?}"
    );
    assert!(!dir.path().join("var/audit.jsonl").exists());
    assert!(files_containing(&dir.path().join("var"), id).is_empty());
}
