//! Encryption at rest, seen from the outside: with the dev config, an order placed over FIX
//! with a distinctive ClOrdID and account leaves no trace of them, nor of the API key id, in
//! any file under the data dir — journal, message stores and audit log are ciphertext — while
//! the CLI (with the master key) reads them back and a restart resumes the session from its
//! encrypted store.

use std::path::Path;

use portcullis_auth::fix_sig::{sign_logon, LogonFields};
use portcullis_fix::{Encoder, TimePrecision, UtcTimestamp};

use crate::auth::{create_key, env, Key};
use crate::harness::{files_containing, files_under, free_port, test_cert, FixClient, Msg, Server};

const ACCOUNT: &str = "ZEBRA-ACCT-7731";
const CL_ORD_ID: &str = "CLORD-AT-REST-5X9Q";

/// The dev ports of configs/dev.toml, in the order of [`dev_like_config`]'s `ports`: FIX over
/// TLS, FIX 4.2 / 4.4 / FIXT.1.1 over TCP, WebSocket over TLS and TCP, admin, metrics.
pub(crate) const DEV_PORTS: [u16; 8] = [9878, 9880, 9881, 9882, 9443, 9444, 9445, 9464];

/// configs/dev.toml as is, but for: the data dir and the master key file under the test's
/// directory, free ports, `account` instead of DEMO-ACC, and a `[tls]` section with a test
/// certificate (only the embedded default generates one).
pub(crate) fn dev_like_config(ports: &[u16; 8], account: &str) -> String {
    let mut text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/dev.toml")).unwrap();
    text = text
        .replace("\"./var/master.key\"", "\"{DATA_DIR}/master.key\"")
        .replace("data_dir = \"./var\"", "data_dir = \"{DATA_DIR}\"")
        .replace("DEMO-ACC", account);
    for (dev, port) in DEV_PORTS.iter().zip(ports) {
        text = text.replace(&format!("127.0.0.1:{dev}"), &format!("127.0.0.1:{port}"));
    }
    text.push_str(
        "\n[tls]\ncert_file = \"{DATA_DIR}/../cert.pem\"\nkey_file = \"{DATA_DIR}/../key.pem\"\n",
    );
    text
}

fn sending_time() -> String {
    let mut out = Vec::new();
    UtcTimestamp::now().write(TimePrecision::Millis, &mut out);
    String::from_utf8(out).unwrap()
}

/// Connects to the FIX 4.4 TCP listener as the dev session's client (DEMO) and logs on with a
/// signed Logon of MsgSeqNum `seq`; returns the client and the server's Logon.
pub(crate) fn logon(port: u16, key: &Key, seq: u64) -> (FixClient, Msg) {
    let mut c = FixClient::tcp(port, "FIX.4.4");
    c.sender = "DEMO".into();
    c.target = "PORTCULLIS".into();
    c.seq = seq;
    let st = sending_time();
    let seq_text = seq.to_string();
    let mut enc = Encoder::new();
    enc.start(b"FIX.4.4", b"A");
    enc.str(49, c.sender.as_bytes())
        .str(56, c.target.as_bytes())
        .str(34, seq_text.as_bytes())
        .str(52, st.as_bytes());
    enc.uint(98, 0).uint(108, 30);
    enc.str(553, key.id.as_bytes());
    let raw = sign_logon(
        key.secret.as_bytes(),
        &LogonFields {
            sending_time: st.as_bytes(),
            msg_type: b"A",
            msg_seq_num: seq_text.as_bytes(),
            sender_comp_id: c.sender.as_bytes(),
            target_comp_id: c.target.as_bytes(),
            username: key.id.as_bytes(),
        },
    );
    enc.data(95, 96, raw.as_bytes());
    let bytes = enc.finish().to_vec();
    c.seq += 1;
    c.write(&bytes);
    let a = c.recv();
    assert_eq!(a.msg_type(), "A", "logon: {a:?}");
    (c, a)
}

/// No file under `dir` holds any of `needles` in its raw bytes.
fn assert_ciphertext(dir: &Path, needles: &[&str]) {
    assert!(!files_under(dir).is_empty(), "{} is empty", dir.display());
    for needle in needles {
        let found = files_containing(dir, needle);
        assert!(
            found.is_empty(),
            "{needle:?} is readable at rest in {found:#?}"
        );
    }
}

#[test]
fn an_order_leaves_no_clordid_account_or_key_id_readable_in_the_data_dir() {
    let ports: [u16; 8] = std::array::from_fn(|_| free_port());
    let mut server = Server::configure(&dev_like_config(&ports, ACCOUNT), &ports, &env());
    test_cert(&server.dir);
    let key = create_key(&server, &["--account", ACCOUNT, "--scopes", "trade,read"]);
    server.launch();
    let fix44 = ports[2];

    // A Logon with an unknown key is refused and leaves nothing in the store.
    let mut bad = FixClient::tcp(fix44, "FIX.4.4");
    bad.sender = "DEMO".into();
    bad.target = "PORTCULLIS".into();
    bad.logon(30, &[(553, "NOT-A-KEY"), (95, "4"), (96, "AAAA")]);
    assert!(bad.closed());
    let (mut c, _) = logon(fix44, &key, 1);
    c.send(
        "D",
        &[
            (11, CL_ORD_ID),
            (1, ACCOUNT),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "0.01"),
            (40, "2"),
            (44, "100"),
            (59, "1"),
        ],
    );
    let report = c.expect("8");
    assert_eq!(report.get(11), Some(CL_ORD_ID), "{report:?}");
    assert_eq!(report.get(39), Some("0"), "the order rests: {report:?}");
    c.send("5", &[]);
    c.expect("5");
    assert!(c.closed());

    // What the server and the client sent each other (the dev session has log_inbound),
    // decrypted by the CLI while the server runs; the refused Logon is not there.
    let (code, log) = server.cli(&["fix-log", "--session", "FIX.4.4:PORTCULLIS->DEMO"]);
    assert_eq!(code, 0, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].starts_with("session FIX.4.4:PORTCULLIS->DEMO: sequence started ")
            && lines[0].ends_with("next_sender_seq=4 next_target_seq=4"),
        "{log}"
    );
    let ours = |t: &str, n: u32| format!("|35={t}|49=PORTCULLIS|56=DEMO|34={n}|");
    let theirs = |t: &str, n: u32| format!("|35={t}|49=DEMO|56=PORTCULLIS|34={n}|");
    // An accepted Logon is kept once accepted, after its answer; the rest before theirs.
    let expected = [
        ("out 1 ", ours("A", 1)),
        ("in 1 ", theirs("A", 1)),
        ("in 2 ", theirs("D", 2)),
        ("out 2 ", ours("8", 2)),
        ("in 3 ", theirs("5", 3)),
        ("out 3 ", ours("5", 3)),
    ];
    assert_eq!(lines.len(), 1 + expected.len(), "{log}");
    for (line, (prefix, fields)) in lines[1..].iter().zip(&expected) {
        assert!(
            line.starts_with(&format!("{prefix}8=FIX.4.4|9=")) && line.contains(fields.as_str()),
            "{prefix}{fields} expected in {log}"
        );
        assert!(line.ends_with('|'), "{log}");
    }
    assert!(lines[3].contains(&format!("|11={CL_ORD_ID}|")), "{log}");
    assert!(lines[4].contains(&format!("|11={CL_ORD_ID}|")), "{log}");
    assert!(!log.contains("NOT-A-KEY"), "{log}");
    let (code, one) = server.cli(&[
        "fix-log",
        "--session",
        "FIX.4.4:PORTCULLIS->DEMO",
        "--from",
        "2",
        "--to",
        "2",
    ]);
    assert_eq!((code, one.lines().count()), (0, 3), "{one}");
    assert!(
        one.lines().nth(2).unwrap().starts_with("out 2 8=FIX.4.4|"),
        "{one}"
    );
    let (code, err) = server.cli(&["fix-log", "--session", "FIX.4.4:PORTCULLIS->NOBODY"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no session \"FIX.4.4:PORTCULLIS->NOBODY\" in the config; its sessions: ")
            && err.contains("FIX.4.4:PORTCULLIS->DEMO"),
        "{err}"
    );

    let data = server.data_dir();
    let needles = [CL_ORD_ID, ACCOUNT, key.id.as_str()];
    // While the server runs (the store fsyncs every write, the journal every commit)...
    assert_ciphertext(&data, &needles);
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    // ... and after it stopped.
    assert_ciphertext(&data, &needles);
    for plaintext in ["audit.jsonl", "sessions/FIX.4.4-PORTCULLIS-DEMO/store.log"] {
        assert!(!data.join(plaintext).exists(), "{plaintext} exists");
    }

    // The data is there, for whoever has the master key.
    let events = server.audit_events(&["--key", &key.id]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "logon" && e["outcome"] == "ok" && e["account"] == ACCOUNT),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e["kind"] == "key_created"),
        "{events:#?}"
    );
    assert!(server.audit_events(&["--account", "NOBODY"]).is_empty());
    assert!(server
        .audit_events(&["--since", "2999-01-01T00:00:00Z"])
        .is_empty());
    let (code, export) = server.cli(&["journal", "export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{export}");
    assert!(export.contains(CL_ORD_ID), "{export}");

    // The session resumes from its encrypted store: both sides' numbers go on after
    // Logon 1, NewOrderSingle / ExecutionReport 2, Logout 3.
    server.launch();
    let (mut c, a) = logon(fix44, &key, 4);
    assert_eq!(a.seq(), 4, "{a:?}");
    c.send("5", &[]);
    c.expect("5");
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    assert_ciphertext(&data, &needles);
}
