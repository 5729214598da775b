//! The WebSocket API (Binance WS API v3 dialect) as a load-generator target: the handshake with
//! the `tungstenite` client over a plain TCP socket, then masked client frames written and server
//! frames split by hand, so the open-loop engine drives a WebSocket connection as it drives a
//! FIX one (one pacing thread writes, one epoll thread reads).
//!
//! A connection logs on once (`session.logon`, HMAC-SHA256 over the sorted params, hex), then
//! sends unsigned `order.place` requests carrying a `timestamp`; request `id` = the order's
//! number in the session, and the answer with that `id` is its response.

use std::io::Write;
use std::net::TcpStream;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::fix::{AnswerKind, Credentials};
use crate::flood::{Recv, Rx, Tx};
use crate::hist::{now_ns, Recorder};
use crate::net::{connect, is_timeout, read_result, RecvBuf};
use crate::run::{cl_ord_prefix, run_token, Counts, PingPongResult};

/// The WebSocket API path of the dialect.
pub const PATH: &str = "/ws-api/v3";

/// What to send over the WebSocket API.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// `symbol`.
    pub symbol: String,
    /// `side`: `BUY` or `SELL`.
    pub side: &'static str,
    /// `quantity`.
    pub qty: String,
    /// `price`: far enough from the market that the order rests.
    pub price: String,
    /// `timeInForce`: `GTC`, `IOC` or `FOK`.
    pub tif: &'static str,
    /// The key `session.logon` is signed with.
    pub credentials: Credentials,
}

/// Milliseconds since the epoch (the dialect's `timestamp`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The dialect's signature payload: every param (none named `signature`) sorted by name,
/// `k=v&…`, values as sent without JSON quotes.
pub fn signature_payload(params: &[(&str, String)]) -> String {
    let mut p: Vec<&(&str, String)> = params.iter().collect();
    p.sort_by(|a, b| a.0.cmp(b.0));
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// hex(HMAC-SHA256(secret text, payload of `params`)).
pub fn sign(secret: &str, params: &[(&str, String)]) -> String {
    portcullis_auth::fix_sig::sign_hmac_hex(secret.as_bytes(), signature_payload(params).as_bytes())
}

/// The `session.logon` request (id `"logon"`) for `creds` at `timestamp_ms`.
pub fn logon_request(creds: &Credentials, timestamp_ms: i64) -> String {
    let mut params = vec![
        ("apiKey", creds.key_id.clone()),
        ("timestamp", timestamp_ms.to_string()),
    ];
    let sig = sign(&creds.secret, &params);
    params.push(("signature", sig));
    let body: serde_json::Map<String, serde_json::Value> = params
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "timestamp" {
                serde_json::json!(timestamp_ms)
            } else {
                serde_json::json!(v)
            };
            (k.to_owned(), v)
        })
        .collect();
    serde_json::json!({"id": "logon", "method": "session.logon", "params": body}).to_string()
}

/// Writes the `order.place` requests of one connection.
#[derive(Debug, Clone)]
pub struct WsEncoder {
    opts: WsOptions,
    prefix: String,
    json: Vec<u8>,
}

impl WsEncoder {
    /// Orders with `newClientOrderId` = `prefix` + `o` + the order's number.
    pub fn new(opts: WsOptions, prefix: &str) -> Self {
        Self {
            opts,
            prefix: prefix.to_owned(),
            json: Vec::with_capacity(512),
        }
    }

    /// The JSON text of order `index`'s request (id = `index`) at `timestamp_ms`, appended.
    pub fn order_json(&self, index: u64, timestamp_ms: i64, out: &mut Vec<u8>) {
        let o = &self.opts;
        // Params in name order: the server takes them in any order; this keeps it readable.
        let _ = write!(
            out,
            r#"{{"id":{index},"method":"order.place","params":{{"newClientOrderId":"{p}o{index}","newOrderRespType":"ACK","price":"{price}","quantity":"{qty}","side":"{side}","symbol":"{sym}","timeInForce":"{tif}","timestamp":{timestamp_ms},"type":"LIMIT"}}}}"#,
            p = self.prefix,
            price = o.price,
            qty = o.qty,
            side = o.side,
            sym = o.symbol,
            tif = o.tif,
        );
    }

    /// Order `index` as a masked text frame, appended.
    pub fn order(&mut self, index: u64, out: &mut Vec<u8>) {
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        self.order_json(index, now_ms(), &mut json);
        client_frame(OP_TEXT, &json, out);
        self.json = json;
    }
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// The client's masking key (RFC 6455 wants one per frame; the server only unmasks).
const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x2e];

/// Appends one final client frame (masked) with `opcode` and `payload`.
pub fn client_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
}

/// A whole server frame at the start of `buf`: (opcode, payload range, frame length), or `None`
/// if more bytes are needed. Server frames are unmasked; a masked one is an error.
pub fn server_frame(buf: &[u8]) -> Result<Option<(u8, Range<usize>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
        bail!("the server sent a masked frame");
    }
    let (len, head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > 1 << 24 {
        bail!("the server announced a {len}-byte frame");
    }
    if buf.len() < head + len {
        return Ok(None);
    }
    Ok(Some((buf[0] & 0x0f, head..head + len, head + len)))
}

/// A numeric `"id"` and the `"status"` of a response, by a scan of its text (the server writes
/// both as plain numbers); `None` for anything else (events, the logon's string id).
pub fn response_id_status(text: &[u8]) -> Option<(u64, u16)> {
    fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
        let at = text.windows(key.len()).position(|w| w == key)? + key.len();
        let digits: &[u8] = &text[at..];
        let end = digits
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(digits.len());
        std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
    }
    let id = number_after(text, br#""id":"#)?;
    let status = number_after(text, br#""status":"#)?;
    Some((id, status as u16))
}

/// What one server frame was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// The response to request `id` (an order's number) with this HTTP-like status.
    Answer(u64, u16),
    /// A text frame that answers no order (the logon response, an event).
    Text(String),
    /// A ping, to be answered with a pong of this payload.
    Ping(Vec<u8>),
    /// Anything else (pongs).
    Other,
}

/// The receiving side of a WebSocket connection.
pub struct WsReader {
    stream: TcpStream,
    rx: RecvBuf,
    /// Bytes of the last frame handed out, header included.
    last_len: usize,
    /// True once a refused order's answer was shown (the first one per connection).
    shown_refusal: bool,
}

impl WsReader {
    /// The next whole frame among those read.
    fn buffered(&mut self) -> Result<Option<WsEvent>> {
        let Some((op, payload, len)) = server_frame(self.rx.pending())? else {
            return Ok(None);
        };
        let r = self
            .rx
            .next_chunk(len)
            .ok_or_else(|| anyhow!("frame split"))?;
        self.last_len = len;
        let bytes = &self.rx.bytes(r)[payload];
        Ok(Some(match op {
            OP_TEXT => match response_id_status(bytes) {
                Some((id, status)) => {
                    if status != 200 && !self.shown_refusal {
                        // Why orders are refused, once per connection (the counts say how many).
                        self.shown_refusal = true;
                        eprintln!("ws: first refusal: {}", String::from_utf8_lossy(bytes));
                    }
                    WsEvent::Answer(id, status)
                }
                None => WsEvent::Text(String::from_utf8_lossy(bytes).into_owned()),
            },
            OP_PING => WsEvent::Ping(bytes.to_vec()),
            OP_CLOSE => bail!(
                "the server closed the WebSocket: {}",
                String::from_utf8_lossy(bytes.get(2..).unwrap_or_default())
            ),
            _ => WsEvent::Other,
        }))
    }

    /// The next frame, waiting up to the socket's read timeout (`None` when it passes).
    fn recv(&mut self) -> Result<Option<WsEvent>> {
        loop {
            if let Some(e) = self.buffered()? {
                return Ok(Some(e));
            }
            match self.rx.fill_from(&mut self.stream) {
                Ok(0) => bail!("the server closed the connection"),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e).context("reading from the server"),
            }
        }
    }
}

/// A WebSocket API connection that has logged on.
pub struct WsClient {
    /// Orders.
    pub enc: WsEncoder,
    /// Where requests go.
    pub writer: TcpStream,
    /// Where answers come from.
    pub reader: WsReader,
}

impl WsClient {
    /// Connects to `addr` (TCP_NODELAY), upgrades to the WebSocket API and logs on.
    pub fn logon(addr: &str, enc: WsEncoder) -> Result<Self> {
        let s = connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let url = format!("ws://{addr}{PATH}");
        // The handshake only: tungstenite reads exactly the 101 answer (the server sends
        // nothing more until asked), then frames go over the same socket by hand.
        let (ws, resp) = tungstenite::client::client(url.as_str(), s.try_clone()?)
            .map_err(|e| anyhow!("WebSocket handshake with {url}: {e}"))?;
        if resp.status() != 101 {
            bail!("WebSocket handshake with {url}: status {}", resp.status());
        }
        drop(ws);
        let mut c = Self {
            enc,
            writer: s.try_clone()?,
            reader: WsReader {
                stream: s,
                rx: RecvBuf::new(),
                last_len: 0,
                shown_refusal: false,
            },
        };
        let mut out = Vec::new();
        client_frame(
            OP_TEXT,
            logon_request(&c.enc.opts.credentials, now_ms()).as_bytes(),
            &mut out,
        );
        c.writer.write_all(&out)?;
        loop {
            match c.reader.recv()? {
                Some(WsEvent::Text(t)) if t.contains(r#""status":200"#) => return Ok(c),
                Some(WsEvent::Text(t)) => bail!("session.logon refused: {t}"),
                Some(WsEvent::Ping(p)) => c.pong(&p)?,
                Some(_) => {}
                None => bail!("no answer to session.logon within 10 s"),
            }
        }
    }

    fn pong(&mut self, payload: &[u8]) -> Result<()> {
        let mut out = Vec::new();
        client_frame(OP_PONG, payload, &mut out);
        Ok(self.writer.write_all(&out)?)
    }

    /// Waits for the answer to order `index`, answering pings.
    fn wait_answer(&mut self, index: u64) -> Result<(AnswerKind, usize)> {
        loop {
            match self.reader.recv()? {
                Some(WsEvent::Answer(id, status)) if id == index => {
                    return Ok((kind(status), self.reader.last_len));
                }
                Some(WsEvent::Ping(p)) => self.pong(&p)?,
                Some(_) => {}
                None => bail!("no answer to order {index} within 10 s"),
            }
        }
    }
}

fn kind(status: u16) -> AnswerKind {
    if status == 200 {
        AnswerKind::New
    } else {
        AnswerKind::Rejected
    }
}

/// One `order.place` at a time over one logged-on connection, timing request → response.
pub fn pingpong_ws(
    addr: &str,
    opts: &WsOptions,
    warmup: u64,
    count: u64,
) -> Result<PingPongResult> {
    let enc = WsEncoder::new(opts.clone(), &cl_ord_prefix(&run_token(), 1));
    let mut c = WsClient::logon(addr, enc)?;
    let mut rec = Recorder::new();
    let mut counts = Counts::default();
    let mut out = Vec::with_capacity(1024);
    let (mut size, mut answer_bytes) = (0, 0u64);
    for i in 0..warmup + count {
        out.clear();
        c.enc.order(i, &mut out);
        size = out.len();
        let t0 = now_ns();
        c.writer.write_all(&out)?;
        let (k, len) = c.wait_answer(i)?;
        let t1 = now_ns();
        if i >= warmup {
            rec.record(t1 - t0);
            counts.add(k);
            answer_bytes += len as u64;
        }
    }
    Ok(PingPongResult {
        target: "ws",
        message_size: size,
        answer_size: answer_bytes as f64 / count.max(1) as f64,
        warmup,
        latency: rec.summary(),
        counts,
    })
}

/// The sending side of a WebSocket connection in a flood.
pub struct WsTx {
    enc: WsEncoder,
    pongs: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Tx for WsTx {
    fn queued(&mut self, out: &mut Vec<u8>) {
        if let Ok(mut q) = self.pongs.lock() {
            for p in q.drain(..) {
                client_frame(OP_PONG, &p, out);
            }
        }
    }

    fn order(&mut self, i: u64, out: &mut Vec<u8>) {
        self.enc.order(i, out);
    }

    fn logout(&mut self, out: &mut Vec<u8>) {
        client_frame(OP_CLOSE, &1000u16.to_be_bytes(), out);
    }
}

/// The receiving side of a WebSocket connection in a flood.
pub struct WsRx {
    reader: WsReader,
    pongs: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Rx for WsRx {
    fn fd(&self) -> RawFd {
        self.reader.stream.as_raw_fd()
    }

    fn read_once(&mut self) -> Result<bool> {
        read_result(self.reader.rx.fill_dontwait(self.fd()), "the server")
    }

    fn next(&mut self) -> Result<Option<Recv>> {
        Ok(self.reader.buffered()?.map(|e| match e {
            WsEvent::Answer(id, status) => Recv::Answer(id, kind(status)),
            WsEvent::Ping(p) => {
                if let Ok(mut q) = self.pongs.lock() {
                    q.push(p);
                }
                Recv::Nothing
            }
            _ => Recv::Nothing,
        }))
    }
}

/// One flood session: its writer, sender and receiver.
pub type FloodSession = (TcpStream, Box<dyn Tx>, Box<dyn Rx>);

/// Connects and logs on session `k` of a flood: its writer, sender and receiver.
pub fn flood_session(addr: &str, opts: &WsOptions, token: &str, k: usize) -> Result<FloodSession> {
    let c = WsClient::logon(addr, WsEncoder::new(opts.clone(), &cl_ord_prefix(token, k)))?;
    let pongs = Arc::new(Mutex::new(Vec::new()));
    Ok((
        c.writer,
        Box::new(WsTx {
            enc: c.enc,
            pongs: pongs.clone(),
        }),
        Box::new(WsRx {
            reader: c.reader,
            pongs,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            key_id: "pk_bench01".into(),
            secret: "s3cr3t-0123456789abcdef".into(),
        }
    }

    #[test]
    fn the_logon_is_signed_over_the_sorted_params() {
        // Independently: python3 -c 'import hmac,hashlib; print(hmac.new(
        //   b"s3cr3t-0123456789abcdef",
        //   b"apiKey=pk_bench01&timestamp=1764355200000", hashlib.sha256).hexdigest())'
        let expected = "b4f36de9ba1c0d771b47188dd11a87d7658418864bec9d8e2a9adcc619165c5c";
        let params = [
            ("timestamp", "1764355200000".to_owned()),
            ("apiKey", "pk_bench01".to_owned()),
        ];
        assert_eq!(
            signature_payload(&params),
            "apiKey=pk_bench01&timestamp=1764355200000"
        );
        assert_eq!(sign("s3cr3t-0123456789abcdef", &params), expected);
        let r: serde_json::Value =
            serde_json::from_str(&logon_request(&creds(), 1_764_355_200_000)).unwrap();
        assert_eq!(r["method"], "session.logon");
        assert_eq!(r["id"], "logon");
        assert_eq!(r["params"]["apiKey"], "pk_bench01");
        assert_eq!(r["params"]["timestamp"], 1_764_355_200_000i64);
        assert_eq!(r["params"]["signature"], expected);
    }

    #[test]
    fn orders_are_masked_text_frames_of_order_place() {
        let opts = WsOptions {
            symbol: "BTC-PERP".into(),
            side: "BUY",
            qty: "1".into(),
            price: "1000".into(),
            tif: "GTC",
            credentials: creds(),
        };
        let enc = WsEncoder::new(opts, "abcs1");
        let mut json = Vec::new();
        enc.order_json(42, 1_764_355_200_000, &mut json);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["method"], "order.place");
        let p = &v["params"];
        assert_eq!(p["newClientOrderId"], "abcs1o42");
        assert_eq!(p["newOrderRespType"], "ACK");
        assert_eq!(p["type"], "LIMIT");
        assert_eq!(p["timeInForce"], "GTC");
        assert_eq!(p["side"], "BUY");
        assert_eq!(p["price"], "1000");
        assert_eq!(p["timestamp"], 1_764_355_200_000i64);
        assert!(p.get("signature").is_none(), "unsigned after session.logon");

        // Frame it, unmask it, get the JSON back; sizes past 125 take the 16-bit length.
        let mut f = Vec::new();
        client_frame(OP_TEXT, &json, &mut f);
        assert_eq!(f[0], 0x81);
        assert!(json.len() >= 126);
        assert_eq!(f[1], 0x80 | 126);
        let len = u16::from_be_bytes([f[2], f[3]]) as usize;
        assert_eq!(len, json.len());
        let mask = &f[4..8];
        let unmasked: Vec<u8> = f[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        assert_eq!(unmasked, json);
    }

    #[test]
    fn server_frames_and_responses() {
        let text = br#"{"id":17,"status":200,"result":{"orderId":5}}"#;
        let mut buf = vec![0x81, text.len() as u8];
        buf.extend_from_slice(text);
        assert_eq!(server_frame(&buf[..5]).unwrap(), None);
        let (op, r, len) = server_frame(&buf).unwrap().unwrap();
        assert_eq!((op, len), (OP_TEXT, buf.len()));
        assert_eq!(response_id_status(&buf[r]), Some((17, 200)));
        assert_eq!(response_id_status(br#"{"id":"logon","status":200}"#), None);
        assert_eq!(
            response_id_status(br#"{"id":3,"status":400,"error":{"code":-1102}}"#),
            Some((3, 400))
        );
        assert!(
            server_frame(&[0x81, 0x81, 0, 0, 0, 0, b'x']).is_err(),
            "masked"
        );
    }
}
