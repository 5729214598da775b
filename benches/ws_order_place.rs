//! The WebSocket API's request path for `order.place`: decoding a signed text frame and verifying
//! its signature through the protocol layer's public API. Target: ≤ 2 µs median.
//!
//! - `ws_order_place/decode_verify`: `WsSession::handle_text` on a signed `order.place` frame as
//!   the dialect's clients send it (the official Binance connector's parameters: symbol, side,
//!   type, timeInForce, price, quantity, newClientOrderId, apiKey, timestamp, signature; a UUID
//!   id). The session parses the JSON, validates the parameters and the symbol's filters, checks
//!   `timestamp`, charges the rate limits, builds the signature payload and asks the
//!   authenticator, here one that verifies the hex HMAC-SHA256 with a precomputed key (as the
//!   server's verifier does); the application answers `Pending`, so no answer is rendered.
//!
//! Pending requests are completed outside the measured time, in batches of 128 (the session
//! keeps at most 256 waiting). The allocator is mimalloc, as in the `portcullis` binary.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use portcullis_fix::UtcTimestamp;
use portcullis_session::ws::{
    AccountStatus, AppOutput, AuthError, CancelReplaceOutcome, CancelReplaceRequest, CancelRequest,
    CancelResult, Decimal, Dispatch, OrderInfo, OrderRef, OrderResult, Principal, RateLimitConfig,
    RateLimiter, RequestCtx, RequestToken, SignedRequest, SymbolFilter, SymbolInfo, SymbolTable,
    WsApplication, WsAuth, WsError, WsOrder, WsSession, WsSessionConfig,
};
use sha2::Sha256;

// The server binary's allocator: the request path allocates (JSON members, the payload), so
// measuring it under libc malloc would not measure what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const API_KEY: &str = "pk_0123456789abcdef0123456789abcdef";
const SECRET: &str = "6be74994ace9f116802204e5645a0cfe594ad0e535514092ec746f6f1f6e50ab";
const NOW_MS: i64 = 1_795_893_763_291;
const BATCH: u64 = 128;

/// Verifies hex HMAC-SHA256 signatures of one key, keyed once.
struct PrecomputedHmacAuth {
    mac: Hmac<Sha256>,
}

impl PrecomputedHmacAuth {
    fn check(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        if req.api_key != API_KEY {
            return Err(AuthError::Rejected);
        }
        let mut sig = [0u8; 32];
        hex::decode_to_slice(req.signature, &mut sig).map_err(|_| AuthError::InvalidSignature)?;
        let ok = req
            .payload
            .variants()
            .any(|p| self.mac.clone().chain_update(p).verify_slice(&sig).is_ok());
        if !ok {
            return Err(AuthError::InvalidSignature);
        }
        Ok(Principal {
            api_key: API_KEY.to_owned(),
            account: "WS-A".to_owned(),
            can_trade: true,
            can_read: true,
            credential: None,
        })
    }
}

impl WsAuth for PrecomputedHmacAuth {
    fn verify_request(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        self.check(req)
    }
    fn session_logon(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        self.check(req)
    }
    fn revoked(&self, _principal: &Principal, _now: UtcTimestamp) -> bool {
        false
    }
}

/// Answers every request `Pending` and remembers the tokens.
struct NoopApp {
    symbols: Arc<SymbolTable>,
    tokens: Vec<RequestToken>,
}

impl WsApplication for NoopApp {
    fn symbols(&self) -> Arc<SymbolTable> {
        self.symbols.clone()
    }
    fn order_place(&mut self, ctx: &RequestCtx<'_>, _order: &WsOrder) -> Dispatch<OrderResult> {
        self.tokens.push(ctx.token);
        Dispatch::Pending
    }
    fn order_status(&mut self, _: &RequestCtx<'_>, _: &OrderRef) -> Dispatch<OrderInfo> {
        Dispatch::Pending
    }
    fn order_cancel(&mut self, _: &RequestCtx<'_>, _: &CancelRequest) -> Dispatch<CancelResult> {
        Dispatch::Pending
    }
    fn order_cancel_replace(
        &mut self,
        _: &RequestCtx<'_>,
        _: &CancelReplaceRequest,
    ) -> Dispatch<CancelReplaceOutcome> {
        Dispatch::Pending
    }
    fn open_orders_status(
        &mut self,
        _: &RequestCtx<'_>,
        _: Option<&str>,
    ) -> Dispatch<Vec<OrderInfo>> {
        Dispatch::Pending
    }
    fn open_orders_cancel_all(
        &mut self,
        _: &RequestCtx<'_>,
        _: &str,
    ) -> Dispatch<Vec<CancelResult>> {
        Dispatch::Pending
    }
    fn account_status(&mut self, _: &RequestCtx<'_>, _: bool) -> Dispatch<AccountStatus> {
        Dispatch::Pending
    }
    fn user_data_stream(&mut self, _: Option<&Principal>) -> Result<(), WsError> {
        Ok(())
    }
}

fn d(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

fn symbols() -> SymbolTable {
    let mut s = SymbolInfo::new("BTC-PERP", "BTC", "USD", 3);
    s.filters = vec![
        SymbolFilter::Price {
            min_price: d("0.5"),
            max_price: d("1000000"),
            tick_size: d("0.5"),
        },
        SymbolFilter::LotSize {
            min_qty: d("0.01"),
            max_qty: d("10"),
            step_size: d("0.005"),
        },
    ];
    SymbolTable::new(vec![s])
}

/// The frame the connector sends: params sorted by name, signed over `k=v&…`.
fn frame() -> String {
    let mut params = [
        ("apiKey", API_KEY.to_owned()),
        ("newClientOrderId", "interop-1".to_owned()),
        ("price", "100".to_owned()),
        ("quantity", "0.01".to_owned()),
        ("side", "BUY".to_owned()),
        ("symbol", "BTC-PERP".to_owned()),
        ("timeInForce", "GTC".to_owned()),
        ("timestamp", (NOW_MS - 3).to_string()),
        ("type", "LIMIT".to_owned()),
    ];
    params.sort();
    let payload = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sig = hex::encode(
        Hmac::<Sha256>::new_from_slice(SECRET.as_bytes())
            .unwrap()
            .chain_update(payload.as_bytes())
            .finalize()
            .into_bytes(),
    );
    let mut json = String::from(
        r#"{"id":"56374a46-3061-486b-a311-99ee972eb648","method":"order.place","params":{"#,
    );
    for (k, v) in &params {
        if *k == "timestamp" {
            json.push_str(&format!(r#""{k}":{v},"#));
        } else {
            json.push_str(&format!(r#""{k}":"{v}","#));
        }
    }
    json.push_str(&format!(r#""signature":"{sig}"}}}}"#));
    json
}

fn bench(c: &mut Criterion) {
    let now = UtcTimestamp::from_nanos(NOW_MS * 1_000_000);
    let auth = Arc::new(PrecomputedHmacAuth {
        mac: Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap(),
    });
    let limiter = Arc::new(RateLimiter::new(RateLimitConfig {
        request_weight_per_minute: u32::MAX,
        orders_per_10s: u32::MAX,
        orders_per_day: u32::MAX,
        ..RateLimitConfig::default()
    }));
    let mut session = WsSession::new(
        WsSessionConfig::default(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        now,
        auth,
        limiter,
    );
    let mut app = NoopApp {
        symbols: Arc::new(symbols()),
        tokens: Vec::with_capacity(BATCH as usize),
    };
    let text = frame();

    // The request is accepted and handed to the application (no answer yet), and a wrong
    // signature is refused: the bench measures the real path.
    session.handle_text(now, &text, &mut app);
    assert_eq!(app.tokens.len(), 1, "order.place not dispatched");
    assert!(
        session.poll_transmit().is_none(),
        "unexpected answer to a valid order.place"
    );
    let at = text.find(r#""signature":""#).unwrap() + r#""signature":""#.len();
    let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
    let bad = format!("{}{flipped}{}", &text[..at], &text[at + 1..]);
    session.handle_text(now, &bad, &mut app);
    let answer = session
        .poll_transmit()
        .expect("an invalid signature is answered");
    assert!(answer.contains("-1022"), "{answer}");
    let complete = |session: &mut WsSession, app: &mut NoopApp| {
        for token in app.tokens.drain(..) {
            session.handle_app_output(
                now,
                AppOutput::Complete {
                    token,
                    result: Err(WsError::order_rejected("bench")),
                },
            );
        }
        while session.poll_transmit().is_some() {}
    };
    complete(&mut session, &mut app);

    let mut g = c.benchmark_group("ws_order_place");
    g.bench_function("decode_verify", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    session.handle_text(now, black_box(&text), &mut app);
                }
                total += start.elapsed();
                left -= n;
                assert_eq!(app.tokens.len() as u64, n);
                complete(&mut session, &mut app);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
