//! Starting the real `portcullis` binary and talking FIX to it over real sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_fix::{frame, Decoder, Encoder, Frame, TimePrecision, UtcTimestamp};

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")))
}

/// A free loopback port (bound then released; the server binds it right after). Never the same
/// port twice in one test run, so tests running in parallel cannot be handed the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The variable the server and the `keys` commands read the master key from.
pub const MASTER_KEY_ENV: &str = "PORTCULLIS_MASTER_KEY";

/// A running server process with its own data dir.
pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub config: PathBuf,
    pub log: PathBuf,
    ports: Vec<u16>,
    /// Environment of the server process (and of [`Server::cli`]); `PORTCULLIS_MASTER_KEY` is
    /// never inherited from the test's own environment.
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Writes `config` (with `{DATA_DIR}` replaced) into a fresh directory and starts the server.
    pub fn start(config: &str, ports: &[u16]) -> Server {
        let mut s = Self::configure(config, ports, &[]);
        s.spawn();
        s
    }

    /// Writes `config` (with `{DATA_DIR}` replaced) into a fresh directory without starting the
    /// server (e.g. to create keys first); [`Server::launch`] starts it with `env`.
    pub fn configure(config: &str, ports: &[u16], env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let s = Server {
            child: None,
            dir: dir.clone(),
            _tmp: Some(tmp),
            config: dir.join("portcullis.toml"),
            log: dir.join("server.log"),
            ports: ports.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        std::fs::write(
            &s.config,
            config.replace("{DATA_DIR}", &s.data_dir().display().to_string()),
        )
        .unwrap();
        s
    }

    /// The data dir `{DATA_DIR}` stands for.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("var")
    }

    /// Writes a new master key file at `{DATA_DIR}/master.key` with `portcullis keys
    /// new-master-key` (for configs with `auth.master_key_file` there); returns its path.
    pub fn create_master_key_file(&self) -> PathBuf {
        let key_file = self.data_dir().join("master.key");
        let (code, out) = run_env(
            &[
                "keys",
                "new-master-key",
                "--key-file",
                &key_file.display().to_string(),
            ],
            &self.dir,
            &[],
        );
        assert_eq!(code, 0, "{out}");
        key_file
    }

    /// Starts the configured server and waits until it listens on every port.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.spawn();
    }

    /// Runs `portcullis <args> --config <this config>` with the server's environment.
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let mut all: Vec<&str> = args.to_vec();
        let config = self.config.display().to_string();
        all.extend(["--config", config.as_str()]);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_env(&all, &self.dir, &env)
    }

    /// The security audit events, decrypted by `portcullis audit export <args>` (e.g.
    /// `--key KEY_ID`), oldest first: the audit log is encrypted at rest, so the CLI is the
    /// way to read it.
    pub fn audit_events(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let config = self.config.display().to_string();
        let mut all = vec!["audit", "export", "--config", config.as_str()];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        audit_export(&all, &self.dir, &env)
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the server process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let st = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .env_remove(MASTER_KEY_ENV)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start portcullis");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in &self.ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("server exited with {status}: {}", self.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "server did not listen on {port}: {}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The server's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop on SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same config and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the binary with arguments and returns (exit code, stdout+stderr).
pub fn run(args: &[&str], cwd: &Path) -> (i32, String) {
    run_env(args, cwd, &[])
}

/// Runs the binary with arguments and extra environment variables (`PORTCULLIS_MASTER_KEY` is
/// never inherited) and returns (exit code, stdout+stderr). A process still running after 20 s
/// (e.g. a `serve` that should have refused to start) is killed and the test fails.
pub fn run_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let stdout = out_dir.path().join("stdout");
    let stderr = out_dir.path().join("stderr");
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove(MASTER_KEY_ENV)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "portcullis {args:?} still running after 20 s: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut text = std::fs::read_to_string(&stdout).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(&stderr).unwrap_or_default());
    (status.code().unwrap_or(-1), text)
}

/// Runs `portcullis audit export ...` (`args` starting with `audit`, `export`) and returns
/// the events it prints, one JSON object per line.
pub fn audit_export(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let (code, stdout, stderr) = run_split(args, cwd, env);
    assert_eq!(code, 0, "portcullis {args:?} failed: {stdout}{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit export prints JSON lines"))
        .collect()
}

/// Every regular file under `dir`, recursively (sockets and other special files left out).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(files_under(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

/// The files under `dir` (recursively, raw bytes) that contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

/// Runs the binary and returns (exit code, stdout, stderr) separately.
pub fn run_split(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove(MASTER_KEY_ENV)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A received message, decoded.
#[derive(Debug, Clone)]
pub struct Msg(pub Vec<(u32, String)>);

impl Msg {
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.0
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }
    pub fn msg_type(&self) -> &str {
        self.get(35).unwrap_or("")
    }
    pub fn seq(&self) -> u64 {
        self.get(34).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

/// Anything a FIX client can talk over.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A minimal FIX initiator built on the project's codec, for driving the server in tests.
pub struct FixClient {
    stream: Box<dyn Stream>,
    pub begin: &'static str,
    pub sender: String,
    pub target: String,
    pub seq: u64,
    rx: Vec<u8>,
    enc: Encoder,
}

impl FixClient {
    /// Connects over plain TCP.
    pub fn tcp(port: u16, begin: &'static str) -> FixClient {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Self::over(Box::new(s), begin)
    }

    /// Uses an already connected stream.
    pub fn over(stream: Box<dyn Stream>, begin: &'static str) -> FixClient {
        FixClient {
            stream,
            begin,
            sender: "TW".into(),
            target: "ISLD".into(),
            seq: 1,
            rx: Vec::new(),
            enc: Encoder::new(),
        }
    }

    /// Encodes a message with an explicit MsgSeqNum.
    pub fn encode(&mut self, msg_type: &str, seq: u64, fields: &[(u32, &str)]) -> Vec<u8> {
        let e = &mut self.enc;
        e.start(self.begin.as_bytes(), msg_type.as_bytes());
        e.str(49, self.sender.as_bytes());
        e.str(56, self.target.as_bytes());
        e.uint(34, seq);
        e.timestamp(52, UtcTimestamp::now(), TimePrecision::Millis);
        for (t, v) in fields {
            e.str(*t, v.as_bytes());
        }
        e.finish().to_vec()
    }

    /// Sends a message with the next MsgSeqNum.
    pub fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        let m = self.encode(msg_type, seq, fields);
        self.write(&m);
        seq
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Sends a Logon.
    pub fn logon(&mut self, hb: u32, extra: &[(u32, &str)]) {
        let hb = hb.to_string();
        let mut f = vec![(98, "0"), (108, hb.as_str())];
        if self.begin == "FIXT.1.1" {
            f.push((1137, "9"));
        }
        f.extend_from_slice(extra);
        self.send("A", &f);
    }

    /// The next message from the server (panics after the read timeout).
    pub fn recv(&mut self) -> Msg {
        self.try_recv()
            .expect("connection closed while waiting for a message")
    }

    /// The next message, or `None` if the server closed the connection.
    pub fn try_recv(&mut self) -> Option<Msg> {
        loop {
            match frame(&self.rx, 1 << 20) {
                Frame::Complete { len } => {
                    let bytes: Vec<u8> = self.rx.drain(..len).collect();
                    let mut d = Decoder::new();
                    let m = d.decode(&bytes).unwrap();
                    return Some(Msg(m
                        .fields()
                        .map(|f| (f.tag, String::from_utf8_lossy(f.value).into_owned()))
                        .collect()));
                }
                Frame::Incomplete => {}
                other => panic!("server sent an invalid message: {other:?}"),
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                // A signal to this process (a child server ending) interrupts the read: again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next message, which must be of type `msg_type`.
    pub fn expect(&mut self, msg_type: &str) -> Msg {
        let m = self.recv();
        assert_eq!(m.msg_type(), msg_type, "unexpected message {m:?}");
        m
    }

    /// True once the server has closed the connection (skipping any messages before).
    pub fn closed(&mut self) -> bool {
        while self.try_recv().is_some() {}
        true
    }
}

/// A self-signed certificate for localhost written as PEM files into `dir`; returns the DER
/// certificate for the client's trust store.
pub fn test_cert(dir: &Path) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().clone())
}

/// A TLS client config trusting `cert`, restricted to the given protocol versions.
pub fn tls_client(
    cert: rustls::pki_types::CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Connects over TLS and completes the handshake, or returns the handshake error.
pub fn tls_connect(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, std::io::Error> {
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// xorshift64*: a deterministic stream for the hostile-client tests' mutations.
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed` (any value; zero is avoided).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// The seed of the hostile-client tests: `PORTCULLIS_HOSTILE_SEED` to replay another sequence,
/// else a fixed one.
pub fn hostile_seed() -> u64 {
    std::env::var("PORTCULLIS_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d)
}
