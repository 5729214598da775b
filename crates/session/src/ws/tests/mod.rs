//! Tests of the WebSocket API session against a fake application and authenticator, with a
//! fake clock. Signatures are computed here independently of the production payload builder.

mod envelope;
mod orders;
mod properties;
mod sessions;
mod transport;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use portcullis_fix::UtcTimestamp;
use serde_json::Value;
use sha2::Sha256;

use super::*;

pub(crate) const DOC_API_KEY: &str =
    "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
pub(crate) const DOC_SECRET: &str =
    "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
/// The documented request's timestamp.
pub(crate) const DOC_TS: i64 = 1_645_423_376_532;

/// A read-only key of another account.
pub(crate) const READ_KEY: &str = "pk_read";
pub(crate) const READ_SECRET: &str = "read-secret";

pub(crate) fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The payload as a client builds it: pairs sorted by name, `k=v` joined with `&`, values as
/// their literal JSON text (a string's characters).
pub(crate) fn client_payload<K: AsRef<str>>(params: &[(K, Value)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.as_ref().to_owned(), text)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A request frame.
pub(crate) fn request<K: AsRef<str>>(id: &str, method: &str, params: &[(K, Value)]) -> String {
    let mut obj = serde_json::Map::new();
    for (k, v) in params {
        obj.insert(k.as_ref().to_owned(), v.clone());
    }
    format!(
        r#"{{"id":{id},"method":"{method}","params":{}}}"#,
        Value::Object(obj)
    )
}

/// `params` plus `apiKey`, `timestamp` and the signature over them.
pub(crate) fn signed<K: AsRef<str>>(
    api_key: &str,
    secret: &str,
    timestamp_ms: i64,
    params: &[(K, Value)],
) -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = params
        .iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.clone()))
        .collect();
    all.push(("apiKey".into(), Value::from(api_key)));
    all.push(("timestamp".into(), Value::from(timestamp_ms)));
    let sig = hmac_hex(secret, &client_payload(&all));
    all.push(("signature".into(), Value::from(sig)));
    all
}

// ---------------------------------------------------------------------------------------------
// Fake authenticator

pub(crate) struct FakeAuth {
    keys: HashMap<String, (String, String, bool, bool)>,
    pub revoked: Mutex<HashSet<String>>,
    pub locked: Mutex<HashSet<String>>,
    pub closed: Mutex<Vec<String>>,
    /// The revocation signal.
    pub changes: tokio::sync::watch::Sender<u64>,
}

/// The bearer token [`FakeAuth`] accepts at the upgrade.
pub(crate) const BEARER_TOKEN: &str = "tok-123";

impl FakeAuth {
    pub(crate) fn new() -> Self {
        let mut a = FakeAuth {
            keys: HashMap::new(),
            revoked: Mutex::default(),
            locked: Mutex::default(),
            closed: Mutex::default(),
            changes: tokio::sync::watch::channel(0).0,
        };
        a.keys.insert(
            DOC_API_KEY.into(),
            (DOC_SECRET.into(), "ACC1".into(), true, true),
        );
        a.keys.insert(
            READ_KEY.into(),
            (READ_SECRET.into(), "ACC2".into(), false, true),
        );
        a
    }

    fn check(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        if self.locked.lock().unwrap().contains(req.api_key) {
            return Err(AuthError::Locked {
                retry_after_ms: Some(1_700_000_000_000),
            });
        }
        let Some((secret, account, trade, read)) = self.keys.get(req.api_key) else {
            return Err(AuthError::Rejected);
        };
        if self.revoked.lock().unwrap().contains(req.api_key) {
            return Err(AuthError::Rejected);
        }
        // Hex is case-insensitive, as the dialect says of its signatures.
        let sig = req.signature.to_ascii_lowercase();
        if !req
            .payload
            .variants()
            .any(|p| hmac_hex(secret, std::str::from_utf8(p).unwrap()) == sig)
        {
            return Err(AuthError::InvalidSignature);
        }
        let allowed = match req.security {
            Security::Trade => *trade,
            Security::UserData => *read,
            _ => true,
        };
        if !allowed {
            return Err(AuthError::Rejected);
        }
        Ok(Principal {
            api_key: req.api_key.to_owned(),
            account: account.clone(),
            can_trade: *trade,
            can_read: *read,
            credential: None,
        })
    }
}

impl WsAuth for FakeAuth {
    fn verify_request(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        self.check(req)
    }
    fn session_logon(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        assert_eq!(req.security, Security::Logon);
        self.check(req)
    }
    fn revoked(&self, principal: &Principal, _now: UtcTimestamp) -> bool {
        self.revoked.lock().unwrap().contains(&principal.api_key)
    }
    fn bearer_logon(
        &self,
        token: &str,
        _peer: std::net::IpAddr,
        _now: UtcTimestamp,
    ) -> Result<Principal, AuthError> {
        // One valid token, acting for the documented key.
        if token != BEARER_TOKEN {
            return Err(AuthError::Rejected);
        }
        Ok(Principal {
            api_key: DOC_API_KEY.to_owned(),
            account: "ACC1".into(),
            can_trade: true,
            can_read: true,
            credential: None,
        })
    }
    fn session_closed(&self, principal: &Principal) {
        self.closed.lock().unwrap().push(principal.api_key.clone());
    }
    fn revocations(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.subscribe())
    }
}

// ---------------------------------------------------------------------------------------------
// Fake application

pub(crate) fn d(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

pub(crate) fn symbol_table() -> SymbolTable {
    let mut btc = SymbolInfo::new("BTCUSDT", "BTC", "USDT", 8);
    btc.filters = vec![
        SymbolFilter::Price {
            min_price: d("0.01"),
            max_price: d("1000000.00"),
            tick_size: d("0.01"),
        },
        SymbolFilter::LotSize {
            min_qty: d("0.00001"),
            max_qty: d("9000.00000000"),
            step_size: d("0.00001"),
        },
        SymbolFilter::Notional {
            min_notional: d("5.00000000"),
            apply_min_to_market: true,
            max_notional: d("9000000.00000000"),
            apply_max_to_market: false,
            avg_price_mins: 5,
        },
        SymbolFilter::PercentPrice {
            multiplier_up: d("5"),
            multiplier_down: d("0.2"),
            avg_price_mins: 5,
        },
        SymbolFilter::MaxNumOrders {
            max_num_orders: 200,
        },
        SymbolFilter::IcebergParts { limit: 10 },
        SymbolFilter::TrailingDelta {
            min_above: 10,
            max_above: 2000,
            min_below: 20,
            max_below: 1000,
        },
    ];
    let mut option = SymbolInfo::new("BTC-261225-100000-C", "BTC", "USDT", 4);
    option.quote_order_qty_market_allowed = true;
    option.oco_allowed = false;
    option.oto_allowed = false;
    let mut halted = SymbolInfo::new("ETHUSDT", "ETH", "USDT", 8);
    halted.status = SymbolStatus::Halt;
    SymbolTable::new(vec![btc, option, halted])
}

/// What the fake application does with order requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Answer at once.
    Ready,
    /// Answer later.
    Pending,
}

pub(crate) struct FakeApp {
    pub symbols: Arc<SymbolTable>,
    pub mode: Mode,
    pub placed: Vec<(RequestToken, String, WsOrder)>,
    pub lists: Vec<OcoRequest>,
    pub otos: Vec<OtoRequest>,
    pub tested: Vec<WsOrder>,
    pub queries: Vec<String>,
    pub history: Vec<HistoryQuery>,
    pub cancels: Vec<CancelRequest>,
    pub amends: Vec<AmendRequest>,
    pub replace: Option<CancelReplaceOutcome>,
    pub replaces: Vec<CancelReplaceRequest>,
    pub stream: Option<String>,
    pub closed: bool,
}

impl FakeApp {
    pub(crate) fn new() -> Self {
        Self {
            symbols: Arc::new(symbol_table()),
            mode: Mode::Ready,
            placed: Vec::new(),
            lists: Vec::new(),
            otos: Vec::new(),
            tested: Vec::new(),
            queries: Vec::new(),
            history: Vec::new(),
            cancels: Vec::new(),
            amends: Vec::new(),
            replace: None,
            replaces: Vec::new(),
            stream: None,
            closed: false,
        }
    }
}

pub(crate) fn order_result(order: &WsOrder, id: u64) -> OrderResult {
    OrderResult {
        symbol: order.symbol.clone(),
        order_id: SafeId::new(id).unwrap(),
        client_order_id: order
            .new_client_order_id
            .clone()
            .unwrap_or_else(|| format!("auto{id}")),
        transact_time: 1_655_716_096_505,
        price: order.price.map_or("0.00000000".into(), |p| p.to_string()),
        orig_qty: order.quantity.map_or("0".into(), |q| q.to_string()),
        executed_qty: "0.00000000".into(),
        orig_quote_order_qty: "0.000000".into(),
        cummulative_quote_qty: "0.00000000".into(),
        status: OrderStatus::New,
        time_in_force: order.time_in_force.unwrap_or(TimeInForce::Gtc),
        order_type: order.order_type,
        side: order.side,
        stop_price: order.stop_price.map(|p| p.to_string()),
        trailing_delta: order.trailing_delta.map(|d| d as u16),
        good_till_date: order.good_till_date,
        working_time: 1_655_716_096_505,
        stp: order.stp.unwrap_or(StpMode::None),
        fills: vec![Fill {
            price: "52000.00".into(),
            qty: "0.00500000".into(),
            commission: "0.00000000".into(),
            commission_asset: "BNB".into(),
            trade_id: SafeId::new(77).unwrap(),
        }],
        strategy: order.strategy,
        order_list_id: -1,
    }
}

pub(crate) fn cancel_result(symbol: &str) -> CancelResult {
    CancelResult {
        symbol: symbol.into(),
        orig_client_order_id: "c1".into(),
        order_id: SafeId::new(5).unwrap(),
        client_order_id: "c2".into(),
        transact_time: 1,
        price: "1.00".into(),
        orig_qty: "1".into(),
        executed_qty: "0".into(),
        orig_quote_order_qty: "0".into(),
        cummulative_quote_qty: "0".into(),
        status: OrderStatus::Canceled,
        time_in_force: TimeInForce::Gtc,
        order_type: OrderType::Limit,
        side: Side::Buy,
        stp: StpMode::None,
    }
}

impl WsApplication for FakeApp {
    fn symbols(&self) -> Arc<SymbolTable> {
        self.symbols.clone()
    }

    fn order_place(&mut self, ctx: &RequestCtx<'_>, order: &WsOrder) -> Dispatch<OrderResult> {
        self.placed
            .push((ctx.token, ctx.principal.account.clone(), order.clone()));
        if order.new_client_order_id.as_deref() == Some("reject-me") {
            return Dispatch::Ready(Err(WsError::order_rejected(
                "Account has insufficient balance for requested action.",
            )));
        }
        match self.mode {
            Mode::Ready => Dispatch::Ready(Ok(order_result(order, 12_569_099_453))),
            Mode::Pending => Dispatch::Pending,
        }
    }

    fn order_list_place_oco(
        &mut self,
        _ctx: &RequestCtx<'_>,
        list: &OcoRequest,
    ) -> Dispatch<OrderListResult> {
        self.lists.push(list.clone());
        Dispatch::Ready(Ok(OrderListResult {
            order_list_id: SafeId::new(7).unwrap(),
            list_client_order_id: list
                .list_client_order_id
                .clone()
                .unwrap_or_else(|| "auto-list".into()),
            transaction_time: 1_655_716_096_505,
            symbol: list.above.symbol.clone(),
            reports: vec![order_result(&list.above, 8), order_result(&list.below, 9)],
            contingency: Contingency::Oco,
        }))
    }

    fn order_list_place_oto(
        &mut self,
        _ctx: &RequestCtx<'_>,
        list: &OtoRequest,
    ) -> Dispatch<OrderListResult> {
        self.otos.push(list.clone());
        let mut reports = vec![order_result(&list.working, 10)];
        reports.extend(list.pending.iter().map(|o| order_result(o, 11)));
        Dispatch::Ready(Ok(OrderListResult {
            order_list_id: SafeId::new(11).unwrap(),
            contingency: Contingency::Oto,
            list_client_order_id: "auto-list".into(),
            transaction_time: 1_655_716_096_505,
            symbol: list.working.symbol.clone(),
            reports,
        }))
    }

    fn commission_rates(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _symbol: &str,
    ) -> Result<CommissionRates, WsError> {
        Ok(CommissionRates {
            maker: "0.00010000".into(),
            taker: "0.00020000".into(),
            buyer: "0.00000000".into(),
            seller: "0.00000000".into(),
        })
    }

    fn order_test(&mut self, _ctx: &RequestCtx<'_>, order: &WsOrder) -> Result<(), WsError> {
        self.tested.push(order.clone());
        Ok(())
    }

    fn order_status(&mut self, _ctx: &RequestCtx<'_>, order: &OrderRef) -> Dispatch<OrderInfo> {
        self.queries.push(format!("status {order:?}"));
        Dispatch::Ready(Err(WsError::no_such_order()))
    }

    fn order_cancel(
        &mut self,
        _ctx: &RequestCtx<'_>,
        cancel: &CancelRequest,
    ) -> Dispatch<CancelResult> {
        self.cancels.push(cancel.clone());
        Dispatch::Ready(Ok(cancel_result(&cancel.target.symbol)))
    }

    fn order_amend_keep_priority(
        &mut self,
        _ctx: &RequestCtx<'_>,
        request: &AmendRequest,
    ) -> Dispatch<AmendOutcome> {
        self.amends.push(request.clone());
        let c = cancel_result(&request.target.symbol);
        Dispatch::Ready(Ok(AmendOutcome {
            transact_time: 7,
            execution_id: SafeId::new(16).unwrap(),
            orig_client_order_id: "c1".into(),
            order: OrderInfo {
                symbol: c.symbol,
                order_id: c.order_id,
                client_order_id: "c2".into(),
                price: c.price,
                orig_qty: request.new_qty.to_string(),
                executed_qty: c.executed_qty,
                cummulative_quote_qty: c.cummulative_quote_qty,
                status: OrderStatus::New,
                time_in_force: c.time_in_force,
                order_type: c.order_type,
                side: c.side,
                stop_price: "0.00000000".into(),
                iceberg_qty: "0.00000000".into(),
                trailing_delta: None,
                good_till_date: None,
                time: 1,
                update_time: 7,
                is_working: true,
                working_time: 1,
                orig_quote_order_qty: c.orig_quote_order_qty,
                stp: c.stp,
                strategy: Default::default(),
                order_list_id: -1,
            },
        }))
    }

    fn order_cancel_replace(
        &mut self,
        _ctx: &RequestCtx<'_>,
        request: &CancelReplaceRequest,
    ) -> Dispatch<CancelReplaceOutcome> {
        self.replaces.push(request.clone());
        match &self.replace {
            Some(o) => Dispatch::Ready(Ok(o.clone())),
            None => Dispatch::Pending,
        }
    }

    fn open_orders_status(
        &mut self,
        _ctx: &RequestCtx<'_>,
        symbol: Option<&str>,
    ) -> Dispatch<Vec<OrderInfo>> {
        self.queries.push(format!("open {symbol:?}"));
        Dispatch::Ready(Ok(Vec::new()))
    }

    fn all_orders(&mut self, _ctx: &RequestCtx<'_>, q: &HistoryQuery) -> Dispatch<Vec<OrderInfo>> {
        self.history.push(q.clone());
        Dispatch::Ready(Ok(Vec::new()))
    }

    fn my_trades(&mut self, _ctx: &RequestCtx<'_>, q: &HistoryQuery) -> Dispatch<Vec<TradeInfo>> {
        self.history.push(q.clone());
        Dispatch::Ready(Ok(vec![TradeInfo {
            symbol: q.symbol.clone(),
            id: SafeId::new(28457).unwrap(),
            order_id: SafeId::new(100234).unwrap(),
            price: "4.00000100".into(),
            qty: "12.00000000".into(),
            quote_qty: "48.000012".into(),
            commission: "0.00000000".into(),
            commission_asset: "USD".into(),
            time: 1_499_865_549_590,
            is_buyer: true,
            is_maker: false,
        }]))
    }

    fn open_orders_cancel_all(
        &mut self,
        _ctx: &RequestCtx<'_>,
        symbol: &str,
    ) -> Dispatch<Vec<CancelResult>> {
        Dispatch::Ready(Ok(vec![cancel_result(symbol), cancel_result(symbol)]))
    }

    fn ticker_price(&mut self, _ctx: &RequestCtx<'_>, symbol: &str) -> Dispatch<PriceTicker> {
        Dispatch::Ready(Ok(PriceTicker {
            symbol: symbol.into(),
            price: "4.00000100".into(),
        }))
    }

    fn ticker_book(&mut self, ctx: &RequestCtx<'_>, symbol: &str) -> Dispatch<BookTicker> {
        self.queries
            .push(format!("ticker {} {symbol}", ctx.principal.account));
        Dispatch::Ready(Ok(BookTicker {
            symbol: symbol.into(),
            bid_price: "4.00000000".into(),
            bid_qty: "431.00000000".into(),
            ask_price: "4.00000200".into(),
            ask_qty: "9.00000000".into(),
        }))
    }

    fn depth(&mut self, ctx: &RequestCtx<'_>, symbol: &str, limit: usize) -> Dispatch<DepthInfo> {
        self.queries
            .push(format!("depth {} {symbol} {limit}", ctx.principal.account));
        Dispatch::Ready(Ok(DepthInfo {
            last_update_id: 1027024,
            bids: vec![("4.00000000".into(), "431.00000000".into())],
            asks: vec![
                ("4.00000200".into(), "12.00000000".into()),
                ("4.00000300".into(), "7.50000000".into()),
            ],
        }))
    }

    fn account_positions(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: Option<&str>,
    ) -> Dispatch<Vec<PositionInfo>> {
        self.queries
            .push(format!("positions {} {symbol:?}", ctx.principal.account));
        Dispatch::Ready(Ok(vec![
            PositionInfo {
                symbol: "BTCUSDT".into(),
                position_amt: "-0.500".into(),
                entry_price: "29000.00".into(),
                mark_price: Some("30000.00".into()),
                notional: Some("-15000.00000".into()),
            },
            PositionInfo {
                symbol: "ETHUSDT".into(),
                position_amt: "2".into(),
                entry_price: "1800.5".into(),
                mark_price: None,
                notional: None,
            },
        ]))
    }

    fn account_status(
        &mut self,
        ctx: &RequestCtx<'_>,
        omit_zero_balances: bool,
    ) -> Dispatch<AccountStatus> {
        self.queries.push(format!(
            "account {} {omit_zero_balances}",
            ctx.principal.account
        ));
        Dispatch::Ready(Ok(AccountStatus {
            maker_commission: 15,
            taker_commission: 15,
            can_trade: ctx.principal.can_trade,
            commission_rates: CommissionRates {
                maker: "0.00150000".into(),
                taker: "0.00150000".into(),
                buyer: "0.00000000".into(),
                seller: "0.00000000".into(),
            },
            require_self_trade_prevention: false,
            update_time: 1,
            balances: vec![Balance {
                asset: "USDT".into(),
                free: "1021.21000000".into(),
                locked: "0.00000000".into(),
            }],
            uid: SafeId::new(354_937_868).unwrap(),
        }))
    }

    fn user_data_stream(&mut self, principal: Option<&Principal>) -> Result<(), WsError> {
        self.stream = principal.map(|p| p.account.clone());
        Ok(())
    }

    fn on_close(&mut self) {
        self.closed = true;
    }
}

// ---------------------------------------------------------------------------------------------
// Harness

pub(crate) const PEER: [u8; 4] = [192, 0, 2, 7];

pub(crate) struct Harness {
    pub session: WsSession,
    pub app: FakeApp,
    pub auth: Arc<FakeAuth>,
    /// The fake clock, Unix ms.
    pub now_ms: i64,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(WsSessionConfig::default(), RateLimitConfig::default())
    }

    pub(crate) fn with(config: WsSessionConfig, limits: RateLimitConfig) -> Self {
        let auth = Arc::new(FakeAuth::new());
        let limiter = Arc::new(RateLimiter::new(limits));
        let now_ms = DOC_TS + 50;
        let session = WsSession::new(
            config,
            IpAddr::from(PEER),
            UtcTimestamp::from_nanos(now_ms * 1_000_000),
            auth.clone(),
            limiter,
        );
        Self {
            session,
            app: FakeApp::new(),
            auth,
            now_ms,
        }
    }

    pub(crate) fn now(&self) -> UtcTimestamp {
        UtcTimestamp::from_nanos(self.now_ms * 1_000_000)
    }

    /// Sends one frame; returns the raw frames sent back.
    pub(crate) fn send_raw(&mut self, text: &str) -> Vec<String> {
        let now = self.now();
        self.session.handle_text(now, text, &mut self.app);
        self.drain()
    }

    pub(crate) fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.session.poll_transmit()).collect()
    }

    /// Sends one frame; expects exactly one answer, parsed.
    pub(crate) fn send(&mut self, text: &str) -> Value {
        let frames = self.send_raw(text);
        assert_eq!(frames.len(), 1, "one answer expected: {frames:?}");
        serde_json::from_str(&frames[0]).expect("answers are JSON")
    }

    pub(crate) fn call<K: AsRef<str>>(&mut self, method: &str, params: &[(K, Value)]) -> Value {
        self.send(&request("1", method, params))
    }

    /// A signed call with the documented key at the current time.
    pub(crate) fn signed_call<K: AsRef<str>>(
        &mut self,
        method: &str,
        params: &[(K, Value)],
    ) -> Value {
        let p = signed(DOC_API_KEY, DOC_SECRET, self.now_ms, params);
        self.call(method, &p)
    }

    pub(crate) fn logon(&mut self) -> Value {
        let p = signed::<&str>(DOC_API_KEY, DOC_SECRET, self.now_ms, &[]);
        self.call("session.logon", &p)
    }

    pub(crate) fn events(&mut self) -> Vec<WsEvent> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }
}

/// The error code of an answer (panics on success).
pub(crate) fn code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error expected: {v}"))
}

/// Asserts a successful answer and returns its result.
pub(crate) fn ok(v: &Value) -> &Value {
    assert_eq!(v["status"], 200, "success expected: {v}");
    &v["result"]
}

pub(crate) fn limit_order() -> Vec<(&'static str, Value)> {
    vec![
        ("symbol", "BTCUSDT".into()),
        ("side", "SELL".into()),
        ("type", "LIMIT".into()),
        ("timeInForce", "GTC".into()),
        ("quantity", "0.01000000".into()),
        ("price", "52000.00".into()),
    ]
}

/// `base` with `name` set to `value` (added if absent), or removed when `value` is None.
pub(crate) fn with(
    base: &[(&'static str, Value)],
    name: &'static str,
    value: Option<Value>,
) -> Vec<(&'static str, Value)> {
    let mut v: Vec<_> = base.iter().filter(|(k, _)| *k != name).cloned().collect();
    if let Some(value) = value {
        v.push((name, value));
    }
    v
}
