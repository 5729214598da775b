//! Interoperability with a third-party FIX implementation: the `simplefix` Python package
//! (installed by scripts/test.sh) drives logon, an order and logout.

use crate::fix_session::start;
use std::process::Command;

#[test]
fn simplefix_client_logs_on_sends_an_order_and_logs_out() {
    let (server, ports) = start(false);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/simplefix_client.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg("--port")
        .arg(ports[1].to_string())
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
        stdout.contains("order answered: no venue connected"),
        "{stdout}"
    );
    assert!(stdout.contains("logout ok"), "{stdout}");
}
