//! Bad configuration is refused with exit code 2 and a message naming the key.

use crate::harness::run;

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    run(&["serve", "--config", path.to_str().unwrap()], dir.path())
}

#[test]
fn unknown_key_exits_2_naming_the_key() {
    let (code, out) = check(
        r#"
data_dir = "var"
colour = "blue"
"#,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("colour"), "{out}");
}

#[test]
fn plain_tcp_on_a_public_address_is_refused() {
    let (code, out) = check(
        r#"
data_dir = "var"

[[listeners]]
name = "fix44"
bind = "0.0.0.0:9999"
tls = false
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
"#,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("loopback"), "{out}");
}

#[test]
fn unsupported_begin_string_is_refused() {
    let (code, out) = check(
        r#"
data_dir = "var"

[[listeners]]
name = "fix40"
bind = "127.0.0.1:9999"
tls = false
begin_string = "FIX.4.0"
"#,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FIX.4.0"), "{out}");
}

#[test]
fn missing_config_file_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(
        &["serve", "--config", "/nonexistent/portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/portcullis.toml"), "{out}");
}

#[test]
fn a_session_without_authentication_on_a_public_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = crate::harness::test_cert(dir.path());
    let (code, out) = check(&format!(
        r#"
data_dir = "var"

[tls]
cert_file = "{}"
key_file = "{}"

[[listeners]]
name = "public"
bind = "0.0.0.0:9999"
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
authentication = "none"
"#,
        cert.display(),
        key.display()
    ));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("sessions[0].authentication"), "{out}");
    assert!(out.contains("loopback"), "{out}");
}

#[test]
fn an_authenticated_session_without_accounts_is_refused() {
    let (code, out) = check(
        r#"
data_dir = "var"

[[listeners]]
name = "fix44"
bind = "127.0.0.1:9999"
tls = false
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
"#,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("sessions[0].accounts"), "{out}");
}

#[test]
fn a_drop_copy_session_without_a_master_key_is_refused() {
    // `run` never passes PORTCULLIS_MASTER_KEY: no key, so no journal to copy from.
    let (code, out) = check(
        r#"
data_dir = "var"

[[listeners]]
name = "fix44"
bind = "127.0.0.1:0"
tls = false
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "DC"
accounts = ["CLEARING"]
access = "read"
authentication = "none"
drop_copy = ["*"]
"#,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("sessions[0].drop_copy"), "{out}");
    assert!(out.contains("master key"), "{out}");
}

#[test]
fn a_venue_whose_secret_file_is_missing_or_whose_connect_is_public_without_tls_is_refused() {
    let config = |venue_extra: &str| {
        format!(
            r#"
data_dir = "var"

[[listeners]]
name = "fix44"
bind = "127.0.0.1:{}"
tls = false
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
authentication = "none"
accounts = ["A"]

[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.001"
min_qty = "0.001"
max_qty = "10"

[[venues]]
name = "up"
begin_string = "FIX.4.4"
sender_comp_id = "BROKER"
target_comp_id = "VENUE"
instruments = ["BTC-PERP"]
{venue_extra}
"#,
            crate::harness::free_port()
        )
    };
    let (code, out) = check(&config(
        "connect = \"127.0.0.1:9\"\ntls = false\nusername = \"k\"\nsecret_file = \"/nonexistent/secret\"",
    ));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("venues[0].secret_file"), "{out}");
    let (code, out) = check(&config("connect = \"192.0.2.1:9878\"\ntls = false"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("venues[0].tls") && out.contains("loopback"),
        "{out}"
    );
}
