//! FIX over TLS 1.3; TLS 1.2 clients are refused.

use crate::harness::{free_port, test_cert, tls_client, tls_connect, FixClient, Server};

fn tls_server() -> (Server, u16, rustls::pki_types::CertificateDer<'static>) {
    let port = free_port();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, der) = test_cert(certs.path());
    let config = format!(
        r#"
data_dir = "{{DATA_DIR}}"

[tls]
cert_file = "{cert}"
key_file = "{key}"

[[listeners]]
name = "fix44-tls"
bind = "127.0.0.1:{port}"
tls = true
begin_string = "FIX.4.4"

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
reset_on_logon = true
# TLS itself is under test here (on loopback); signed logons over TLS are in auth.rs.
authentication = "none"
"#,
        cert = cert.display(),
        key = key.display(),
    );
    let server = Server::start(&config, &[port]);
    // The certificate files must outlive the start; keep the dir alive with the server.
    std::mem::forget(certs);
    (server, port, der)
}

#[test]
fn fix_session_over_tls13() {
    let (_server, port, cert) = tls_server();
    let stream = tls_connect(port, tls_client(cert, &[&rustls::version::TLS13])).unwrap();
    assert_eq!(
        stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut c = FixClient::over(Box::new(stream), "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    c.send("1", &[(112, "OVER-TLS")]);
    assert_eq!(c.expect("0").get(112), Some("OVER-TLS"));
    c.send("5", &[]);
    c.expect("5");
}

#[test]
fn tls12_client_is_refused() {
    let (_server, port, cert) = tls_server();
    let r = tls_connect(port, tls_client(cert, &[&rustls::version::TLS12]));
    assert!(r.is_err(), "a TLS 1.2 handshake must fail");
}

#[test]
fn plain_fix_on_a_tls_listener_gets_no_fix_reply() {
    use std::io::{Read, Write};
    let (_server, port, _) = tls_server();
    let mut c = FixClient::tcp(port, "FIX.4.4");
    let logon = c.encode("A", 1, &[(98, "0"), (108, "30")]);
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    sock.write_all(&logon).unwrap();
    let mut reply = Vec::new();
    let _ = sock.read_to_end(&mut reply);
    assert!(
        !reply.starts_with(b"8="),
        "a FIX reply came over a TLS listener"
    );
}
