//! Interoperability with a third-party FIX implementation: the `simplefix` Python package
//! (installed by scripts/test.sh) signs its Logon as the README documents and drives logon, an
//! order (acknowledged with an ExecutionReport), an order list (NewOrderList answered with
//! ListStatus, then ListCancelRequest), a MassQuote and a QuoteCancel (acknowledged with
//! MassQuoteAcknowledgements) and logout.

use crate::auth::{create_key, env, plain_config};
use crate::harness::{free_port, Server};
use std::process::Command;

#[test]
fn simplefix_client_logs_on_sends_an_order_and_logs_out() {
    let (p44, p42) = (free_port(), free_port());
    let mut server = Server::configure(&plain_config(p44, p42, ""), &[p44, p42], &env());
    let key = create_key(&server, &["--account", "TW-ACC", "--scopes", "trade"]);
    server.launch();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/simplefix_client.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg("--port")
        .arg(p44.to_string())
        .arg("--key-id")
        .arg(&key.id)
        .arg("--secret")
        .arg(&key.secret)
        .output()
        .expect("python3 must be installed (scripts/test.sh installs simplefix)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "simplefix client failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log_text()
    );
    assert!(stdout.contains("logon ok"), "{stdout}");
    assert!(
        stdout.contains("order acknowledged: ExecType=0 OrdStatus=0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("order list placed and cancelled: ListID="),
        "{stdout}"
    );
    assert!(
        stdout.contains("mass quote acknowledged: QuoteStatus=0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("quote cancel acknowledged: QuoteStatus=4"),
        "{stdout}"
    );
    assert!(stdout.contains("logout ok"), "{stdout}");
}
