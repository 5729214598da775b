//! The transport: upgrade, timers (with tokio's paused clock), limits, TLS and shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsProtoError, Message};
use tokio_tungstenite::WebSocketStream;

use super::*;
use crate::transport::{shutdown_channel, ShutdownSignal, ShutdownTrigger};
use crate::ws::transport::{Connection, Shared};

/// Opens a [`FakeApp`] per connection and remembers the bearer tokens it was given.
#[derive(Default)]
struct Factory {
    bearers: Mutex<Vec<Option<String>>>,
}

impl WsAppFactory for Factory {
    fn open(&self, conn: &WsConnectionInfo<'_>) -> Box<dyn WsApplication> {
        self.bearers
            .lock()
            .unwrap()
            .push(conn.bearer_token.map(str::to_owned));
        Box::new(FakeApp::new())
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Server {
    factory: Arc<Factory>,
    auth: Arc<FakeAuth>,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

/// Serves one connection over an in-memory pipe of `capacity` bytes; returns the client end.
fn serve_duplex(config: WsListenerConfig, capacity: usize) -> (Server, DuplexStream) {
    let (client, server) = tokio::io::duplex(capacity);
    (serve_io(config, server), client)
}

/// Serves one connection over `io`, the server's end of a stream.
fn serve_io<S>(config: WsListenerConfig, io: S) -> Server
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let factory = Arc::new(Factory::default());
    let auth = Arc::new(FakeAuth::new());
    let shared = Arc::new(Shared {
        limiter: Arc::new(RateLimiter::new(config.rate_limits.clone())),
        config,
        factory: factory.clone(),
        auth: auth.clone(),
    });
    let (trigger, signal) = shutdown_channel();
    let conn = Connection {
        id: 0,
        peer: "192.0.2.7:4000".parse().unwrap(),
        shared: shared.clone(),
        shutdown: signal,
        accepted_at: Instant::now(),
    };
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let task = tokio::spawn(conn.serve_stream(io, deadline));
    Server {
        factory,
        auth,
        trigger,
        task,
    }
}

/// A stream that counts the writes that moved bytes.
struct CountingWrites<S> {
    inner: S,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingWrites<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingWrites<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connect<S: AsyncRead + AsyncWrite + Unpin>(url: &str, stream: S) -> WebSocketStream<S> {
    tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0
}

/// The next text frame, parsed (control frames are skipped).
async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        match ws.next().await.expect("a frame").expect("no error") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn config() -> WsListenerConfig {
    WsListenerConfig::new("ws", loopback())
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn the_api_path_is_upgraded_and_answers_requests() {
    let (server, io) = serve_duplex(config(), 64 * 1024);
    let mut req = "ws://localhost/ws-api/v3?returnRateLimits=false"
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer tok-123".parse().unwrap());
    // A client offering compression gets none.
    req.headers_mut().insert(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, io).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
    ws.send(Message::text(r#"{"id":"a","method":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        serde_json::json!({"id":"a","status":200,"result":{}})
    );
    // The URL's returnRateLimits=false is the connection's default; a request may override.
    ws.send(Message::text(
        r#"{"id":2,"method":"time","params":{"returnRateLimits":true}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["rateLimits"][0]["count"], 2);
    assert_eq!(
        server.factory.bearers.lock().unwrap().as_slice(),
        [Some("tok-123".to_owned())]
    );
    // The bearer token logged the connection on: a request needs no signature.
    ws.send(Message::text(r#"{"id":3,"method":"session.status"}"#))
        .await
        .unwrap();
    let status = next_json(&mut ws).await;
    assert_eq!(status["result"]["apiKey"], DOC_API_KEY, "{status}");
    // A binary frame is answered, not fatal.
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"]["code"], -1135);
    // The client closes; the server answers and ends.
    ws.close(None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_burst_of_requests_answered_at_once_gets_its_answers_in_one_write() {
    let (client, server_end) = tokio::io::duplex(64 * 1024);
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _server = serve_io(
        config(),
        CountingWrites {
            inner: server_end,
            writes: writes.clone(),
        },
    );
    let mut ws = connect("ws://localhost/ws-api/v3", client).await;
    let before = writes.load(std::sync::atomic::Ordering::Relaxed);
    // Twenty requests in one write of the client.
    for id in 0..20 {
        ws.feed(Message::text(format!(r#"{{"id":{id},"method":"ping"}}"#)))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    for id in 0..20 {
        let v = next_json(&mut ws).await;
        assert_eq!(v["id"], id, "answers in order: {v}");
        assert_eq!(v["status"], 200, "{v}");
    }
    let used = writes.load(std::sync::atomic::Ordering::Relaxed) - before;
    // They were read together: the answers leave once the input is drained, not one by one.
    assert!(used <= 2, "{used} writes for 20 answers");
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_with_a_close_frame() {
    let (server, io) = serve_duplex(config(), 64 * 1024);
    let mut ws = connect("ws://localhost/ws-api/v3", io).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    // RFC 6455 §5.5.1: the endpoint that receives a Close answers with a Close.
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => break f,
                Some(Ok(_)) => continue,
                other => panic!("no Close answer: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(reply.map(|f| f.code), Some(CloseCode::Normal));
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn other_paths_get_404_and_bad_query_values_400() {
    for (url, status) in [
        ("ws://localhost/", 404),
        ("ws://localhost/ws-api/v3/", 404),
        ("ws://localhost/ws", 404),
        ("ws://localhost/ws-api/v3?returnRateLimits=no", 400),
    ] {
        let (server, io) = serve_duplex(config(), 64 * 1024);
        match tokio_tungstenite::client_async(url, io).await {
            Err(WsProtoError::Http(resp)) => assert_eq!(resp.status(), status, "{url}"),
            other => panic!("{url}: refused expected, got {:?}", other.map(|_| ())),
        }
        server.task.await.unwrap();
        assert!(server.factory.bearers.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_invalid_bearer_token_gets_401_at_the_upgrade() {
    let (server, io) = serve_duplex(config(), 64 * 1024);
    let mut req = "ws://localhost/ws-api/v3".into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer forged".parse().unwrap());
    match tokio_tungstenite::client_async(req, io).await {
        Err(WsProtoError::Http(resp)) => {
            assert_eq!(resp.status(), 401);
            let challenge = resp.headers().get("www-authenticate").unwrap();
            assert_eq!(challenge, "Bearer error=\"invalid_token\"");
        }
        other => panic!("refused expected, got {:?}", other.map(|_| ())),
    }
    server.task.await.unwrap();
    assert!(server.factory.bearers.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_server_pings_every_20s_and_drops_a_peer_that_never_answers() {
    let (server, io) = serve_duplex(config(), 64 * 1024);
    let ws = connect("ws://localhost/ws-api/v3", io).await;
    let mut task = server.task;
    // The client reads nothing, so it answers no ping: the first went out at 20 s and the
    // connection ends 60 s later.
    assert!(tokio::time::timeout(Duration::from_secs(79), &mut task)
        .await
        .is_err());
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("closed at 80 s")
        .unwrap();
    // What the server sent, read raw (a WebSocket client would try to answer the pings):
    // three pings of 8 bytes, then a close frame with 1008.
    let mut raw = Vec::new();
    ws.into_inner().read_to_end(&mut raw).await.unwrap();
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while rest.len() >= 2 {
        let (op, len) = (rest[0], usize::from(rest[1]));
        frames.push((op, rest[2..2 + len].to_vec()));
        rest = &rest[2 + len..];
    }
    let pings: Vec<_> = frames.iter().filter(|(op, _)| *op == 0x89).collect();
    assert_eq!(pings.len(), 3, "at 20, 40 and 60 s: {frames:?}");
    let (op, close) = frames.last().unwrap();
    assert_eq!((*op, &close[..2]), (0x88, &1008u16.to_be_bytes()[..]));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_pings_stays_and_an_idle_anonymous_one_is_closed() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_secs(1_000);
    let (server, io) = serve_duplex(cfg, 64 * 1024);
    let ws = connect("ws://localhost/ws-api/v3", io).await;
    let (mut tx, mut rx) = ws.split();
    // Reading answers the pings (tungstenite sends the pongs).
    let reader = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(Ok(m)) = rx.next().await {
            frames.push(m);
        }
        frames
    });
    let mut task = server.task;
    assert!(tokio::time::timeout(Duration::from_secs(500), &mut task)
        .await
        .is_err());
    // A request keeps it from being idle; without one it goes at 1000 s.
    tx.send(Message::text(r#"{"id":1,"method":"ping"}"#))
        .await
        .unwrap();
    let at = Instant::now();
    tokio::time::timeout(Duration::from_secs(1_100), &mut task)
        .await
        .expect("closed when idle")
        .unwrap();
    let waited = at.elapsed();
    assert!(
        waited >= Duration::from_secs(999) && waited <= Duration::from_secs(1_001),
        "{waited:?}"
    );
    let frames = reader.await.unwrap();
    assert!(frames.len() > 70, "pings every 20 s: {}", frames.len());
    match frames.last() {
        Some(Message::Close(Some(f))) => {
            assert_eq!(
                (f.code, f.reason.as_str()),
                (CloseCode::Normal, "idle timeout")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_upgrades_is_closed_at_the_handshake_timeout() {
    let (server, _io) = serve_duplex(config(), 64 * 1024);
    let mut task = server.task;
    assert!(tokio::time::timeout(Duration::from_secs(9), &mut task)
        .await
        .is_err());
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("closed at 10 s")
        .unwrap();
}

#[tokio::test]
async fn oversized_messages_close_the_connection_with_1009() {
    let mut cfg = config();
    cfg.max_message_size = 1024;
    let (server, io) = serve_duplex(cfg, 64 * 1024);
    let mut ws = connect("ws://localhost/ws-api/v3", io).await;
    ws.send(Message::text(format!(
        r#"{{"id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(2_000)
    )))
    .await
    .unwrap();
    let close = loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => break f,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Size);
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_not_buffered_for() {
    let mut cfg = config();
    cfg.max_outbound_bytes = 16 * 1024;
    // The pipe holds 1 KiB: the server's answers (about 3 KiB each) pile up in its session.
    let (server, io) = serve_duplex(cfg, 1024);
    let mut ws = connect("ws://localhost/ws-api/v3", io).await;
    let mut task = server.task;
    let mut sent = 0;
    while !task.is_finished() && sent < 200 {
        let send = ws.send(Message::text(r#"{"id":1,"method":"exchangeInfo"}"#));
        match tokio::time::timeout(Duration::from_millis(200), send).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
        tokio::task::yield_now().await;
    }
    tokio::time::timeout(Duration::from_secs(5), &mut task)
        .await
        .expect("the slow reader is dropped")
        .unwrap();
    assert!(sent >= 6, "dropped too early, after {sent} requests");
}

#[tokio::test]
async fn shutdown_sends_the_dialects_notice_and_a_close_frame() {
    let (server, io) = serve_duplex(config(), 64 * 1024);
    let mut ws = connect("ws://localhost/ws-api/v3", io).await;
    ws.send(Message::text(r#"{"id":1,"method":"ping"}"#))
        .await
        .unwrap();
    next_json(&mut ws).await;
    server.trigger.trigger();
    let v = next_json(&mut ws).await;
    assert_eq!(v["event"]["e"], "serverShutdown");
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("{other:?}"),
    }
    server.task.await.unwrap();
}

#[tokio::test]
async fn the_revocation_signal_reaches_a_logged_on_connection_without_a_request() {
    let (server, io) = serve_duplex(config(), 64 * 1024);
    let mut ws = connect("ws://localhost/ws-api/v3", io).await;
    let params = signed::<&str>(DOC_API_KEY, DOC_SECRET, unix_ms(), &[]);
    ws.send(Message::text(request("1", "session.logon", &params)))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["result"]["apiKey"], DOC_API_KEY);
    server
        .auth
        .revoked
        .lock()
        .unwrap()
        .insert(DOC_API_KEY.into());
    server.auth.changes.send_modify(|n| *n += 1);
    let v = tokio::time::timeout(Duration::from_millis(500), next_json(&mut ws))
        .await
        .expect("told at once, not at the next periodic check");
    assert_eq!(
        v,
        serde_json::json!({"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}})
    );
    assert_eq!(server.auth.closed.lock().unwrap().as_slice(), [DOC_API_KEY]);
    drop(ws);
    server.task.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Real sockets

async fn listen(
    cfg: WsListenerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, ShutdownTrigger, tokio::task::JoinHandle<()>) {
    let listener = WsListener::bind(
        cfg,
        tls,
        Arc::new(Factory::default()),
        Arc::new(FakeAuth::new()),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, signal): (ShutdownTrigger, ShutdownSignal) = shutdown_channel();
    let task = tokio::spawn(listener.serve(signal));
    (addr, trigger, task)
}

async fn ws_over_tcp(addr: SocketAddr) -> Result<WebSocketStream<TcpStream>, WsProtoError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(format!("ws://{addr}/ws-api/v3"), tcp),
    )
    .await
    .expect("no hang")
    .map(|(ws, _)| ws)
}

#[tokio::test]
async fn connections_are_limited_per_address_and_in_total() {
    let mut cfg = config();
    cfg.rate_limits.connections_per_5min = 2;
    let (addr, trigger, task) = listen(cfg, None).await;
    let a = ws_over_tcp(addr).await.unwrap();
    drop(a);
    let mut b = ws_over_tcp(addr).await.unwrap();
    // The third attempt within 5 minutes is closed before the upgrade.
    assert!(ws_over_tcp(addr).await.is_err());
    // The second connection is unaffected.
    b.send(Message::text(r#"{"id":1,"method":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut b).await["status"], 200);
    trigger.trigger();
    task.await.unwrap();

    let mut cfg = config();
    cfg.max_connections = 1;
    let (addr, trigger, task) = listen(cfg, None).await;
    let mut a = ws_over_tcp(addr).await.unwrap();
    assert!(ws_over_tcp(addr).await.is_err(), "over max_connections");
    a.send(Message::text(r#"{"id":1,"method":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut a).await["status"], 200);
    drop(a);
    trigger.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn an_address_holds_at_most_max_connections_per_ip_open_at_once() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 2;
    let (addr, trigger, task) = listen(cfg, None).await;
    let mut a = ws_over_tcp(addr).await.unwrap();
    let b = ws_over_tcp(addr).await.unwrap();
    assert!(ws_over_tcp(addr).await.is_err(), "a third from the address");
    a.send(Message::text(r#"{"id":1,"method":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut a).await["status"], 200);
    // Once one has closed, its place is given back (the server sees the close shortly after).
    drop(b);
    let mut c = None;
    for _ in 0..100 {
        if let Ok(ws) = ws_over_tcp(addr).await {
            c = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = c.expect("a place given back is taken again");
    c.send(Message::text(r#"{"id":2,"method":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut c).await["status"], 200);
    trigger.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn plain_tcp_is_only_allowed_on_loopback() {
    let err = WsListener::bind(
        WsListenerConfig::new("ws", "0.0.0.0:0".parse().unwrap()),
        None,
        Arc::new(Factory::default()),
        Arc::new(FakeAuth::new()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, WsTransportError::PlainTcpNotLoopback { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn wss_over_tls13() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = ck.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let tls = crate::transport::tls13_server_config(vec![cert_der.clone()], key_der).unwrap();
    let (addr, trigger, task) = listen(config(), Some(tls)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls_stream = connector.connect(name, tcp).await.unwrap();
    let mut ws = connect("wss://localhost/ws-api/v3", tls_stream).await;
    ws.send(Message::text(r#"{"id":1,"method":"time"}"#))
        .await
        .unwrap();
    let v = next_json(&mut ws).await;
    assert!(v["result"]["serverTime"].as_i64().unwrap() > 1_600_000_000_000);
    trigger.trigger();
    task.await.unwrap();
}
