//! Metrics in the Prometheus text exposition format (version 0.0.4).
//!
//! One static registry ([`METRICS`]) of relaxed atomic counters with fixed label sets: every
//! label value is an index into a constant table, so counting is one atomic add on a slot
//! chosen by a `match` or an `as usize` — no map, no lock, no allocation, no system call. The
//! counters written by several threads at once (the socket tasks run on every tokio worker) are
//! cache-line padded so that two workers do not fight over one line.
//!
//! | family | type | labels | where it is counted |
//! |---|---|---|---|
//! | `portcullis_messages_received_total` | counter | `protocol` | FIX: application messages handed to the order entry; WebSocket: text and binary frames read |
//! | `portcullis_messages_sent_total` | counter | `protocol` | FIX: application messages sent (reports, rejects); WebSocket: text frames written |
//! | `portcullis_rejects_total` | counter | `protocol`, `reason` | every refusal answered to a client: FIX order rejects by [`RejectReason`], business rejects, session-level Rejects(3) by SessionRejectReason(373); WebSocket errors by the dialect's code |
//! | `portcullis_auth_outcomes_total` | counter | `kind`, `outcome`, `reason` | the auth layer's audit events: logons (FIX Logon, WebSocket signed requests) and per-message signature failures |
//! | `portcullis_auth_lockouts_total` | counter | | lockouts of a key id or a source address |
//! | `portcullis_sessions_connected` | gauge | `protocol` | FIX sessions with a connection, WebSocket connections |
//! | `portcullis_ingress_queue_depth` | gauge | | commands waiting for the core thread (sampled at scrape time) |
//! | `portcullis_egress_queue_depth` | gauge | | reports waiting in every session's egress queue, summed (sampled) |
//! | `portcullis_journal_queue_depth` | gauge | | items waiting for the journal thread (sampled) |
//! | `portcullis_parked_reports` | gauge | | reports held for configured sessions without a connection (sampled) |
//! | `portcullis_drop_copy_behind_records` | gauge | `session` | journal records a drop copy session has not read yet (sampled; only with drop copy sessions) |
//! | `portcullis_history_behind_records` | gauge | | journal records the order history has not read yet (sampled; only with a history) |
//! | `portcullis_venue_logged_on` | gauge | `venue` | 1 while the venue session is logged on (only with venues) |
//! | `portcullis_venue_logons_total` | counter | `venue` | Logons of the venue session (each reconnect counts) |
//! | `portcullis_venue_orders_sent_total` | counter | `venue` | orders sent to the venue |
//! | `portcullis_venue_reports_total` | counter | `venue` | the venue's reports handed to the core thread (acceptances, fills, cancels, rejects) |
//! | `portcullis_parked_reports_dropped_total` | counter | | reports lost because a session's parking queue was full |
//! | `portcullis_server_busy_total` | counter | | requests refused because the ingress queue was full |
//! | `portcullis_order_ack_latency_seconds` | histogram | `protocol` | from reading an order off the socket to writing its acknowledgement (ExecutionReport New or reject; WebSocket response) |
//! | `portcullis_journal_fsync_duration_seconds` | histogram | | each fdatasync of the journal |
//! | `portcullis_matching_events_total` | counter | `kind` | the core thread's execution events |
//! | `portcullis_matching_rejects_total` | counter | `reason` | the core thread's order and cancel rejects |
//! | `portcullis_security_events_total` | counter | `kind` | security events (see [`crate::monitoring`]) |
//! | `portcullis_webhook_events_total` | counter | `result` | security events posted to the webhook, failed after every retry, or dropped (queue full) |
//!
//! Histograms have fixed log-scale buckets (powers of two of nanoseconds from 256 ns to about
//! 17 s, then `+Inf`): finding the bucket is a `leading_zeros`, and recording is two atomic
//! adds. Label sets that can be large (reject reasons) show only the values seen so far.
//!
//! [`render`] writes the text format; the admin API and the optional plain-HTTP listener
//! ([`serve_http`], `[metrics] bind`) serve it as `GET /metrics`.

use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use portcullis_fix::SessionRejectReason;
use portcullis_types::RejectReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::drop_copy::DropCopySession;
use crate::history::OrderHistory;
use crate::journal_queue::JournalQueue;
use crate::pipeline::{Conn, Pipeline, EVENT_KIND_NAMES};
use crate::venue::VenueStatus;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's registry.
pub static METRICS: Metrics = Metrics::new();

// ---------------------------------------------------------------------------------------------
// Label tables

/// The two client protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// FIX (any version).
    Fix = 0,
    /// The WebSocket API.
    Ws = 1,
}

const PROTOCOL_NAMES: [&str; 2] = ["fix", "ws"];

/// [`RejectReason`] label values, indexed by `reason as usize` (checked by a unit test).
pub const REJECT_REASON_NAMES: [&str; 23] = [
    "kill_switch",
    "throttled",
    "unknown_instrument",
    "instrument_not_trading",
    "unknown_account",
    "bad_tick",
    "bad_lot",
    "qty_too_small",
    "qty_too_large",
    "notional_too_large",
    "price_band",
    "too_many_open_orders",
    "credit_limit",
    "position_limit",
    "duplicate_cl_ord_id",
    "post_only_would_trade",
    "unsupported",
    "unknown_order",
    "server_busy",
    "too_late_to_enter",
    "order_list_rejected",
    "venue_rejected",
    "cancel_pending",
];

/// The label slot of a [`RejectReason`].
pub fn reject_index(r: RejectReason) -> usize {
    r as usize
}

/// SessionRejectReason(373) label values: codes 0..=17, then 99, then a Reject without a
/// reason.
const SESSION_REJECT_NAMES: [&str; 20] = [
    "session_invalid_tag_number",
    "session_required_tag_missing",
    "session_tag_not_defined_for_message_type",
    "session_undefined_tag",
    "session_tag_specified_without_value",
    "session_value_is_incorrect",
    "session_incorrect_data_format",
    "session_decryption_problem",
    "session_signature_problem",
    "session_comp_id_problem",
    "session_sending_time_accuracy_problem",
    "session_invalid_msg_type",
    "session_xml_validation_error",
    "session_tag_appears_more_than_once",
    "session_tag_specified_out_of_required_order",
    "session_repeating_group_fields_out_of_order",
    "session_incorrect_num_in_group_count",
    "session_non_data_value_includes_field_delimiter",
    "session_other",
    "session_no_reason",
];

/// FIX reject slots: the order reasons, then business rejects, then the session reasons.
const FIX_BUSINESS_REJECT: usize = REJECT_REASON_NAMES.len();
const FIX_SESSION_BASE: usize = FIX_BUSINESS_REJECT + 1;
const FIX_REJECT_SLOTS: usize = FIX_SESSION_BASE + SESSION_REJECT_NAMES.len();

fn fix_reject_name(i: usize) -> &'static str {
    if i < FIX_BUSINESS_REJECT {
        REJECT_REASON_NAMES[i]
    } else if i == FIX_BUSINESS_REJECT {
        "business_reject"
    } else {
        SESSION_REJECT_NAMES[i - FIX_SESSION_BASE]
    }
}

/// The WebSocket dialect's error codes and their label values (the names of
/// `portcullis_session::ws::codes`); any other code counts as `other`.
const WS_CODES: [(i32, &str); 40] = [
    (-1000, "unknown"),
    (-1002, "unauthorized"),
    (-1003, "too_many_requests"),
    (-1007, "timeout"),
    (-1008, "server_busy"),
    (-1013, "invalid_message"),
    (-1015, "too_many_orders"),
    (-1016, "service_shutting_down"),
    (-1020, "unsupported_operation"),
    (-1021, "invalid_timestamp"),
    (-1022, "invalid_signature"),
    (-1100, "illegal_chars"),
    (-1101, "too_many_parameters"),
    (-1102, "mandatory_param_empty_or_malformed"),
    (-1103, "unknown_param"),
    (-1104, "unread_parameters"),
    (-1105, "param_empty"),
    (-1106, "param_not_required"),
    (-1108, "param_overflow"),
    (-1111, "bad_precision"),
    (-1114, "tif_not_required"),
    (-1115, "invalid_tif"),
    (-1116, "invalid_order_type"),
    (-1117, "invalid_side"),
    (-1118, "empty_new_cl_ord_id"),
    (-1119, "empty_org_cl_ord_id"),
    (-1121, "bad_symbol"),
    (-1122, "invalid_symbol_status"),
    (-1128, "optional_params_bad_combo"),
    (-1130, "invalid_parameter"),
    (-1135, "invalid_json"),
    (-1145, "invalid_cancel_restrictions"),
    (-1151, "duplicate_symbols"),
    (-2010, "new_order_rejected"),
    (-2011, "cancel_rejected"),
    (-2013, "no_such_order"),
    (-2014, "bad_api_key_fmt"),
    (-2015, "rejected_mbx_key"),
    (-2021, "cancel_replace_partial"),
    (-2022, "cancel_replace_failed"),
];
const WS_REJECT_SLOTS: usize = WS_CODES.len() + 1;

fn ws_reject_name(i: usize) -> &'static str {
    WS_CODES.get(i).map_or("other", |(_, name)| name)
}

fn ws_reject_index(code: i32) -> usize {
    WS_CODES
        .iter()
        .position(|(c, _)| *c == code)
        .unwrap_or(WS_CODES.len())
}

/// What an auth audit event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// A FIX Logon, a WebSocket `session.logon` or signed request.
    Logon = 0,
    /// A FIX per-message signature.
    MessageSignature = 1,
}

const AUTH_KIND_NAMES: [&str; 2] = ["logon", "message_signature"];

/// The auth layer's reasons (`Denied::reason`, `SigError::reason`, `authenticated`); any other
/// reason counts as `other`.
const AUTH_REASONS: [&str; 17] = [
    "authenticated",
    "locked",
    "unknown_key",
    "revoked",
    "expired",
    "ip_not_allowed",
    "stale_sending_time",
    "future_sending_time",
    "bad_sending_time",
    "replayed",
    "bad_signature",
    "missing_signature",
    "account_not_allowed",
    "missing_scope",
    "malformed_signature",
    "key_revoked",
    "other",
];
const AUTH_SLOTS: usize = 2 * 2 * AUTH_REASONS.len();

fn auth_reason_index(reason: &str) -> usize {
    AUTH_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(AUTH_REASONS.len() - 1)
}

/// Kinds of security events (the label of `portcullis_security_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityKind {
    /// A key logged on from an address it never used.
    NewIp = 0,
    /// A key logged on from several addresses within the window.
    MultipleIps = 1,
    /// A burst of per-message signature failures on a session.
    SignatureFailureBurst = 2,
    /// A key id or an address was locked out after repeated failures.
    Lockout = 3,
    /// An account's rejects reached the spike threshold within the window.
    RejectRateSpike = 4,
    /// A kill switch was turned on.
    KillSwitchOn = 5,
    /// A kill switch was turned off.
    KillSwitchOff = 6,
    /// An account's risk limits were changed.
    LimitsChanged = 7,
    /// Another anomaly of the auth layer.
    OtherAnomaly = 8,
}

impl SecurityKind {
    /// Every kind, in label order.
    pub const ALL: [SecurityKind; 9] = [
        SecurityKind::NewIp,
        SecurityKind::MultipleIps,
        SecurityKind::SignatureFailureBurst,
        SecurityKind::Lockout,
        SecurityKind::RejectRateSpike,
        SecurityKind::KillSwitchOn,
        SecurityKind::KillSwitchOff,
        SecurityKind::LimitsChanged,
        SecurityKind::OtherAnomaly,
    ];

    /// The label value, also the `kind` of the webhook's JSON event.
    pub const fn name(self) -> &'static str {
        match self {
            SecurityKind::NewIp => "new_ip",
            SecurityKind::MultipleIps => "multiple_ips",
            SecurityKind::SignatureFailureBurst => "signature_failure_burst",
            SecurityKind::Lockout => "lockout",
            SecurityKind::RejectRateSpike => "reject_rate_spike",
            SecurityKind::KillSwitchOn => "kill_switch_on",
            SecurityKind::KillSwitchOff => "kill_switch_off",
            SecurityKind::LimitsChanged => "limits_changed",
            SecurityKind::OtherAnomaly => "other_anomaly",
        }
    }
}

/// What became of a security event on its way to the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// The receiver answered 2xx.
    Delivered = 0,
    /// Every attempt failed.
    Failed = 1,
    /// The queue was full: dropped without an attempt.
    Dropped = 2,
}

const WEBHOOK_RESULT_NAMES: [&str; 3] = ["delivered", "failed", "dropped"];

// ---------------------------------------------------------------------------------------------
// Histogram

/// Smallest bucket bound: 2^8 ns = 256 ns.
const MIN_EXP: u32 = 8;
/// Largest finite bucket bound: 2^34 ns ≈ 17.2 s.
const MAX_EXP: u32 = 34;
/// Finite buckets; one more counts everything above (`+Inf`).
const FINITE_BUCKETS: usize = (MAX_EXP - MIN_EXP + 1) as usize;

/// A lock-free histogram of durations with fixed power-of-two buckets (in nanoseconds): a
/// counter per bucket (not cumulative: the cumulative counts are summed at render time) and a
/// sum. A concurrent scrape may see a sample's bucket before its sum: the text format allows
/// it (the values are monotonic, and a scrape is a snapshot of moving counters).
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; FINITE_BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; FINITE_BUCKETS + 1],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// The bucket of `ns`: the first whose bound 2^k ns is ≥ `ns` (ceil(log2), by
    /// `leading_zeros`), or the `+Inf` bucket.
    pub fn bucket_index(ns: u64) -> usize {
        if ns <= 1 << MIN_EXP {
            return 0;
        }
        let exp = 64 - (ns - 1).leading_zeros();
        ((exp - MIN_EXP) as usize).min(FINITE_BUCKETS)
    }

    /// The upper bound of finite bucket `i`, in seconds.
    fn bound_secs(i: usize) -> f64 {
        (1u64 << (MIN_EXP as usize + i)) as f64 / 1e9
    }

    /// Records a duration in nanoseconds (negative ones, from a clock step, as 0).
    pub fn record_ns(&self, ns: i64) {
        let ns = u64::try_from(ns).unwrap_or(0);
        self.buckets[Self::bucket_index(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Records a [`Duration`].
    pub fn record(&self, d: Duration) {
        self.record_ns(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    }

    /// Samples recorded so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut Text<'_>, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0u64;
        let mut le = String::with_capacity(24);
        let bucket = format!("{name}_bucket");
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            le.clear();
            if i < FINITE_BUCKETS {
                let _ = write!(le, "{}", Self::bound_secs(i));
            } else {
                le.push_str("+Inf");
            }
            let mut all: Vec<(&str, &str)> = labels.to_vec();
            all.push(("le", &le));
            out.sample(&bucket, &all, cumulative);
        }
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        out.sample(&format!("{name}_sum"), labels, sum);
        out.sample(&format!("{name}_count"), labels, cumulative);
    }
}

// ---------------------------------------------------------------------------------------------
// The registry

/// A counter bumped by several threads: on a cache line of its own.
type Shared = CachePadded<AtomicU64>;

const fn shared() -> Shared {
    CachePadded::new(AtomicU64::new(0))
}

/// Every counter, gauge and histogram the server keeps (but the gauges sampled from the
/// queues at scrape time, see [`Sources`]).
#[derive(Debug)]
pub struct Metrics {
    /// `[protocol][0 = received, 1 = sent]`.
    wire: [[Shared; 2]; 2],
    fix_rejects: [AtomicU64; FIX_REJECT_SLOTS],
    ws_rejects: [AtomicU64; WS_REJECT_SLOTS],
    connected: [CachePadded<AtomicI64>; 2],
    ack_latency: [CachePadded<Histogram>; 2],
    fsync: Histogram,
    /// `[kind][outcome][reason]`, flattened.
    auth: [AtomicU64; AUTH_SLOTS],
    lockouts: AtomicU64,
    security: [AtomicU64; SecurityKind::ALL.len()],
    webhook: [AtomicU64; 3],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            wire: [const { [const { shared() }; 2] }; 2],
            fix_rejects: [const { AtomicU64::new(0) }; FIX_REJECT_SLOTS],
            ws_rejects: [const { AtomicU64::new(0) }; WS_REJECT_SLOTS],
            connected: [const { CachePadded::new(AtomicI64::new(0)) }; 2],
            ack_latency: [const { CachePadded::new(Histogram::new()) }; 2],
            fsync: Histogram::new(),
            auth: [const { AtomicU64::new(0) }; AUTH_SLOTS],
            lockouts: AtomicU64::new(0),
            security: [const { AtomicU64::new(0) }; SecurityKind::ALL.len()],
            webhook: [const { AtomicU64::new(0) }; 3],
        }
    }

    /// A message (FIX application message, WebSocket frame) read from a client.
    #[inline]
    pub fn received(&self, p: Protocol) {
        self.wire[p as usize][0].fetch_add(1, Relaxed);
    }

    /// A message written to a client.
    #[inline]
    pub fn sent(&self, p: Protocol) {
        self.wire[p as usize][1].fetch_add(1, Relaxed);
    }

    /// A FIX order, cancel or status request refused (on the socket task or by the core).
    pub fn fix_reject(&self, reason: RejectReason) {
        if let Some(c) = self.fix_rejects.get(reject_index(reason)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// A FIX BusinessMessageReject(j).
    pub fn fix_business_reject(&self) {
        self.fix_rejects[FIX_BUSINESS_REJECT].fetch_add(1, Relaxed);
    }

    /// A FIX session-level Reject(3).
    pub fn fix_session_reject(&self, reason: Option<SessionRejectReason>) {
        let i = match reason.map(|r| r as u32) {
            Some(code @ 0..=17) => code as usize,
            Some(_) => SESSION_REJECT_NAMES.len() - 2,
            None => SESSION_REJECT_NAMES.len() - 1,
        };
        self.fix_rejects[FIX_SESSION_BASE + i].fetch_add(1, Relaxed);
    }

    /// A WebSocket error answer with the dialect's `code`.
    pub fn ws_reject(&self, code: i32) {
        self.ws_rejects[ws_reject_index(code)].fetch_add(1, Relaxed);
    }

    /// A connection of `p` began (+1) or ended (-1).
    pub fn connected(&self, p: Protocol, delta: i64) {
        self.connected[p as usize].fetch_add(delta, Relaxed);
    }

    /// The order-to-ack latency histogram of `p`.
    pub fn ack_latency(&self, p: Protocol) -> &Histogram {
        &self.ack_latency[p as usize]
    }

    /// The journal's fsync duration histogram.
    pub fn fsync(&self) -> &Histogram {
        &self.fsync
    }

    /// An auth audit event of `kind`, allowed or not, for `reason`.
    pub fn auth_outcome(&self, kind: AuthKind, ok: bool, reason: &str) {
        let i =
            (kind as usize * 2 + usize::from(!ok)) * AUTH_REASONS.len() + auth_reason_index(reason);
        self.auth[i].fetch_add(1, Relaxed);
    }

    /// A lockout.
    pub fn lockout(&self) {
        self.lockouts.fetch_add(1, Relaxed);
    }

    /// A security event.
    pub fn security_event(&self, kind: SecurityKind) {
        self.security[kind as usize].fetch_add(1, Relaxed);
    }

    /// The fate of a security event on its way to the webhook.
    pub fn webhook(&self, r: WebhookResult) {
        self.webhook[r as usize].fetch_add(1, Relaxed);
    }

    /// The value of `portcullis_webhook_events_total{result}`.
    #[cfg(test)]
    pub fn webhook_count(&self, r: WebhookResult) -> u64 {
        self.webhook[r as usize].load(Relaxed)
    }

    /// The value of `portcullis_security_events_total{kind}`.
    pub fn security_events(&self, kind: SecurityKind) -> u64 {
        self.security[kind as usize].load(Relaxed)
    }

    /// Writes every family in the text format, with the gauges of `gauges`.
    pub fn render_into(&self, out: &mut String, gauges: &Gauges) {
        let mut t = Text(out);
        t.family(
            "portcullis_messages_received_total",
            "Messages read from clients: FIX application messages, WebSocket frames.",
            "counter",
        );
        for (p, name) in PROTOCOL_NAMES.iter().enumerate() {
            t.sample(
                "portcullis_messages_received_total",
                &[("protocol", name)],
                self.wire[p][0].load(Relaxed),
            );
        }
        t.family(
            "portcullis_messages_sent_total",
            "Messages written to clients: FIX application messages, WebSocket frames.",
            "counter",
        );
        for (p, name) in PROTOCOL_NAMES.iter().enumerate() {
            t.sample(
                "portcullis_messages_sent_total",
                &[("protocol", name)],
                self.wire[p][1].load(Relaxed),
            );
        }
        t.family(
            "portcullis_rejects_total",
            "Refusals answered to clients, by protocol and reason.",
            "counter",
        );
        // Always present, so the family has a sample before the first reject.
        t.sample(
            "portcullis_rejects_total",
            &[("protocol", "fix"), ("reason", "server_busy")],
            self.fix_rejects[reject_index(RejectReason::ServerBusy)].load(Relaxed),
        );
        for (i, c) in self.fix_rejects.iter().enumerate() {
            let v = c.load(Relaxed);
            if v > 0 && i != reject_index(RejectReason::ServerBusy) {
                t.sample(
                    "portcullis_rejects_total",
                    &[("protocol", "fix"), ("reason", fix_reject_name(i))],
                    v,
                );
            }
        }
        for (i, c) in self.ws_rejects.iter().enumerate() {
            let v = c.load(Relaxed);
            if v > 0 {
                t.sample(
                    "portcullis_rejects_total",
                    &[("protocol", "ws"), ("reason", ws_reject_name(i))],
                    v,
                );
            }
        }
        t.family(
            "portcullis_auth_outcomes_total",
            "Authentication outcomes: logons and signed requests, per-message signature failures.",
            "counter",
        );
        t.sample(
            "portcullis_auth_outcomes_total",
            &[
                ("kind", "logon"),
                ("outcome", "ok"),
                ("reason", "authenticated"),
            ],
            self.auth[0].load(Relaxed),
        );
        for (i, c) in self.auth.iter().enumerate().skip(1) {
            let v = c.load(Relaxed);
            if v > 0 {
                let reason = AUTH_REASONS[i % AUTH_REASONS.len()];
                let outcome = if (i / AUTH_REASONS.len()) % 2 == 0 {
                    "ok"
                } else {
                    "denied"
                };
                let kind = AUTH_KIND_NAMES[i / (2 * AUTH_REASONS.len())];
                t.sample(
                    "portcullis_auth_outcomes_total",
                    &[("kind", kind), ("outcome", outcome), ("reason", reason)],
                    v,
                );
            }
        }
        t.family(
            "portcullis_auth_lockouts_total",
            "Lockouts of a key id or a source address after repeated failures.",
            "counter",
        );
        t.sample(
            "portcullis_auth_lockouts_total",
            &[],
            self.lockouts.load(Relaxed),
        );
        t.family(
            "portcullis_sessions_connected",
            "Connected FIX sessions and WebSocket connections.",
            "gauge",
        );
        for (p, name) in PROTOCOL_NAMES.iter().enumerate() {
            t.sample(
                "portcullis_sessions_connected",
                &[("protocol", name)],
                self.connected[p].load(Relaxed).max(0),
            );
        }
        t.family(
            "portcullis_ingress_queue_depth",
            "Commands waiting for the core thread.",
            "gauge",
        );
        t.sample("portcullis_ingress_queue_depth", &[], gauges.ingress);
        t.family(
            "portcullis_egress_queue_depth",
            "Reports waiting in the sessions' egress queues, summed over the sessions.",
            "gauge",
        );
        t.sample("portcullis_egress_queue_depth", &[], gauges.egress);
        t.family(
            "portcullis_journal_queue_depth",
            "Items waiting for the journal thread.",
            "gauge",
        );
        t.sample("portcullis_journal_queue_depth", &[], gauges.journal);
        t.family(
            "portcullis_parked_reports",
            "Reports held for configured sessions without a connection, for their next one.",
            "gauge",
        );
        t.sample("portcullis_parked_reports", &[], gauges.parked);
        t.family(
            "portcullis_parked_reports_dropped_total",
            "Reports lost because a session's parking queue was full.",
            "counter",
        );
        t.sample(
            "portcullis_parked_reports_dropped_total",
            &[],
            gauges.parked_dropped,
        );
        t.family(
            "portcullis_server_busy_total",
            "Requests refused because the ingress queue was full.",
            "counter",
        );
        t.sample("portcullis_server_busy_total", &[], gauges.busy);
        if !gauges.drop_copy_behind.is_empty() {
            t.family(
                "portcullis_drop_copy_behind_records",
                "Journal records a drop copy session has not read yet (growing while it is away).",
                "gauge",
            );
            for (session, behind) in &gauges.drop_copy_behind {
                t.sample(
                    "portcullis_drop_copy_behind_records",
                    &[("session", session)],
                    *behind,
                );
            }
        }
        let venues = venues();
        if !venues.is_empty() {
            let families: [VenueFamily; 4] = [
                (
                    "portcullis_venue_logged_on",
                    "1 while the session to the venue is logged on.",
                    "gauge",
                    |v| u64::from(v.logged_on()),
                ),
                (
                    "portcullis_venue_logons_total",
                    "Logons of the session to the venue (each reconnect counts).",
                    "counter",
                    VenueStatus::logons,
                ),
                (
                    "portcullis_venue_orders_sent_total",
                    "Orders sent to the venue.",
                    "counter",
                    VenueStatus::orders_sent,
                ),
                (
                    "portcullis_venue_reports_total",
                    "Reports of the venue handed to the core thread.",
                    "counter",
                    VenueStatus::reports,
                ),
            ];
            for (name, help, kind, value) in families {
                t.family(name, help, kind);
                for v in &venues {
                    t.sample(name, &[("venue", v.name())], value(v));
                }
            }
        }
        if let Some(behind) = gauges.history_behind {
            t.family(
                "portcullis_history_behind_records",
                "Journal records the order history has not read yet (allOrders, myTrades and the admin API lag by as much).",
                "gauge",
            );
            t.sample("portcullis_history_behind_records", &[], behind);
        }
        t.family(
            "portcullis_order_ack_latency_seconds",
            "From reading an order off the socket to writing its acknowledgement or reject.",
            "histogram",
        );
        for (p, name) in PROTOCOL_NAMES.iter().enumerate() {
            self.ack_latency[p].render(
                &mut t,
                "portcullis_order_ack_latency_seconds",
                &[("protocol", name)],
            );
        }
        t.family(
            "portcullis_journal_fsync_duration_seconds",
            "Duration of each fdatasync of the journal.",
            "histogram",
        );
        self.fsync
            .render(&mut t, "portcullis_journal_fsync_duration_seconds", &[]);
        t.family(
            "portcullis_matching_events_total",
            "Execution events of the core thread, by kind.",
            "counter",
        );
        for (i, name) in EVENT_KIND_NAMES.iter().enumerate() {
            t.sample(
                "portcullis_matching_events_total",
                &[("kind", name)],
                gauges.event_kinds.get(i).copied().unwrap_or(0),
            );
        }
        t.family(
            "portcullis_matching_rejects_total",
            "Order and cancel rejects of the core thread, by reason.",
            "counter",
        );
        for (i, name) in REJECT_REASON_NAMES.iter().enumerate() {
            let v = gauges.event_rejects.get(i).copied().unwrap_or(0);
            if v > 0 {
                t.sample("portcullis_matching_rejects_total", &[("reason", name)], v);
            }
        }
        t.family(
            "portcullis_security_events_total",
            "Security events: auth anomalies, lockouts, reject-rate spikes, kill switch and limit changes.",
            "counter",
        );
        for k in SecurityKind::ALL {
            t.sample(
                "portcullis_security_events_total",
                &[("kind", k.name())],
                self.security_events(k),
            );
        }
        t.family(
            "portcullis_webhook_events_total",
            "Security events posted to the webhook, failed after every retry, or dropped.",
            "counter",
        );
        for (i, name) in WEBHOOK_RESULT_NAMES.iter().enumerate() {
            t.sample(
                "portcullis_webhook_events_total",
                &[("result", name)],
                self.webhook[i].load(Relaxed),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The text format

/// Appends the text format to a `String`.
struct Text<'a>(&'a mut String);

impl Text<'_> {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        self.0.push_str("# HELP ");
        self.0.push_str(name);
        self.0.push(' ');
        escape_help(help, self.0);
        let _ = writeln!(self.0, "\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(k);
                self.0.push_str("=\"");
                escape_label_value(v, self.0);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the text format writes it: `\`, `"` and line feed escaped.
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text as the text format writes it: `\` and line feed escaped.
pub fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gauges sampled at scrape time

/// Values read from the running server at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Ingress queue length.
    pub ingress: u64,
    /// Egress queue lengths, summed.
    pub egress: u64,
    /// Journal queue length.
    pub journal: u64,
    /// Reports parked for configured sessions without a connection.
    pub parked: u64,
    /// Parked reports dropped (a full parking queue).
    pub parked_dropped: u64,
    /// Requests refused "server busy".
    pub busy: u64,
    /// The core thread's event counts by kind (see [`EVENT_KIND_NAMES`]).
    pub event_kinds: Vec<u64>,
    /// The core thread's rejects by [`RejectReason`] index.
    pub event_rejects: Vec<u64>,
    /// Each drop copy session's name and how many journal records it is behind.
    pub drop_copy_behind: Vec<(String, u64)>,
    /// How many journal records the order history is behind, if there is one.
    pub history_behind: Option<u64>,
}

/// Where the scrape-time gauges come from: the pipeline, the journal queue and the live
/// connections' egress queues (tracked by weak reference: registered once per connection,
/// pruned at scrape time, never touched by the core thread).
#[derive(Debug)]
pub struct Sources {
    pipeline: Arc<Pipeline>,
    journal: Option<Arc<JournalQueue>>,
    conns: Mutex<Vec<Weak<Conn>>>,
}

static SOURCES: OnceLock<Sources> = OnceLock::new();

/// The configured drop copy sessions (registered at start-up, before the first scrape).
static DROP_COPY: Mutex<Vec<Arc<DropCopySession>>> = Mutex::new(Vec::new());

/// The configured venues' connectors (registered at start-up).
static VENUES: Mutex<Vec<Arc<VenueStatus>>> = Mutex::new(Vec::new());

/// One `portcullis_venue_*` family: name, help, type and its value of a venue.
type VenueFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&VenueStatus) -> u64,
);

/// Shows a venue connector's state in the `portcullis_venue_*` families.
pub fn track_venue(status: Arc<VenueStatus>) {
    VENUES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(status);
}

/// The configured venues' connectors, in configuration order (for the operator's views).
pub fn venues() -> Vec<Arc<VenueStatus>> {
    VENUES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The order history, if the server keeps one (set at start-up).
static HISTORY: OnceLock<Arc<OrderHistory>> = OnceLock::new();

/// Reports how far the order history is behind the journal in
/// `portcullis_history_behind_records`.
pub fn track_history(history: Arc<OrderHistory>) {
    let _ = HISTORY.set(history);
}

/// Reports how far `session` is behind the journal in `portcullis_drop_copy_behind_records`.
pub fn track_drop_copy(session: Arc<DropCopySession>) {
    DROP_COPY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(session);
}

/// Makes the running server's queues visible to [`render`] (once, at start-up).
pub fn install_sources(pipeline: Arc<Pipeline>, journal: Option<Arc<JournalQueue>>) {
    let _ = SOURCES.set(Sources {
        pipeline,
        journal,
        conns: Mutex::new(Vec::new()),
    });
}

/// Counts a connection's egress queue in `portcullis_egress_queue_depth` while it lives
/// (called once per connection route, on its socket task).
pub fn track_conn(conn: &Arc<Conn>) {
    if let Some(s) = SOURCES.get() {
        let mut conns = s.conns.lock().unwrap_or_else(|p| p.into_inner());
        // Dropped connections are pruned here too, so the list stays as long as the live ones.
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(conn));
    }
}

fn sample_gauges() -> Gauges {
    let Some(s) = SOURCES.get() else {
        return Gauges::default();
    };
    let egress = {
        let mut conns = s.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|w| w.strong_count() > 0);
        conns
            .iter()
            .filter_map(Weak::upgrade)
            .map(|c| c.queued() as u64)
            .sum()
    };
    let counts = s.pipeline.event_counts();
    Gauges {
        ingress: s.pipeline.queued() as u64,
        egress,
        journal: s.journal.as_ref().map_or(0, |j| j.queued() as u64),
        parked: s.pipeline.parked().len() as u64,
        parked_dropped: s.pipeline.parked().dropped(),
        busy: s.pipeline.busy_count(),
        event_kinds: (0..EVENT_KIND_NAMES.len())
            .map(|i| counts.kind(i))
            .collect(),
        event_rejects: (0..REJECT_REASON_NAMES.len())
            .map(|i| counts.reject(i))
            .collect(),
        history_behind: match (&s.journal, HISTORY.get()) {
            (Some(j), Some(h)) => Some(j.acknowledged_now().saturating_sub(h.position())),
            _ => None,
        },
        drop_copy_behind: match &s.journal {
            None => Vec::new(),
            Some(j) => {
                let acknowledged = j.acknowledged_now();
                DROP_COPY
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .filter_map(|d| {
                        let at = d.position()?;
                        Some((d.name().to_owned(), acknowledged.saturating_sub(at)))
                    })
                    .collect()
            }
        },
    }
}

/// Appends the whole exposition of this process to `out` (what `GET /metrics` answers).
pub fn render(out: &mut String) {
    METRICS.render_into(out, &sample_gauges());
}

// ---------------------------------------------------------------------------------------------
// The plain-HTTP listener (`[metrics] bind`, loopback only)

/// Longest request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until `shutdown`: one request per connection, answered
/// and closed. Anything else is a 404. Plain HTTP: the config allows only a loopback address
/// (a scraper on the same host, or a local agent that forwards).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    mut shutdown: portcullis_session::transport::ShutdownSignal,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream).await {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.wait() => break,
        }
    }
}

/// Binds the metrics listener.
pub async fn bind_http(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn answer(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read_head = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n")
                || head.windows(2).any(|w| w == b"\n\n")
                || head.len() >= MAX_REQUEST_HEAD
            {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read_head).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    let (status, content_type, body) = match (method, path) {
        (Some("GET"), Some("/metrics")) | (Some("HEAD"), Some("/metrics")) => {
            let mut body = String::with_capacity(16 * 1024);
            render(&mut body);
            ("200 OK", CONTENT_TYPE, body)
        }
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: GET /metrics\n".to_owned(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != Some("HEAD") {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(m: &Metrics) -> String {
        let mut s = String::new();
        m.render_into(
            &mut s,
            &Gauges {
                ingress: 3,
                egress: 4,
                journal: 5,
                busy: 6,
                event_kinds: vec![1; EVENT_KIND_NAMES.len()],
                event_rejects: vec![0; REJECT_REASON_NAMES.len()],
                ..Gauges::default()
            },
        );
        s
    }

    #[test]
    fn reject_reason_names_follow_the_enum() {
        use RejectReason::*;
        let all = [
            KillSwitch,
            Throttled,
            UnknownInstrument,
            InstrumentNotTrading,
            UnknownAccount,
            BadTick,
            BadLot,
            QtyTooSmall,
            QtyTooLarge,
            NotionalTooLarge,
            PriceBand,
            TooManyOpenOrders,
            CreditLimit,
            PositionLimit,
            DuplicateClOrdId,
            PostOnlyWouldTrade,
            Unsupported,
            UnknownOrder,
            ServerBusy,
            TooLateToEnter,
            OrderListRejected,
            VenueRejected,
            CancelPending,
        ];
        // Every variant is listed: a new one fails to compile here until it has a label.
        let listed = |r: RejectReason| match r {
            KillSwitch | Throttled | UnknownInstrument | InstrumentNotTrading | UnknownAccount
            | BadTick | BadLot | QtyTooSmall | QtyTooLarge | NotionalTooLarge | PriceBand
            | TooManyOpenOrders | CreditLimit | PositionLimit | DuplicateClOrdId
            | PostOnlyWouldTrade | Unsupported | UnknownOrder | ServerBusy | TooLateToEnter
            | OrderListRejected | VenueRejected | CancelPending => all.contains(&r),
        };
        assert!(all.iter().all(|&r| listed(r)));
        assert_eq!(all.len(), REJECT_REASON_NAMES.len());
        for (i, r) in all.iter().enumerate() {
            assert_eq!(reject_index(*r), i);
            // The label is the variant's name in snake case.
            let debug = format!("{r:?}");
            let snake: String = debug
                .chars()
                .enumerate()
                .flat_map(|(j, c)| {
                    let lower = c.to_ascii_lowercase();
                    if c.is_ascii_uppercase() && j > 0 {
                        vec!['_', lower]
                    } else {
                        vec![lower]
                    }
                })
                .collect();
            assert_eq!(REJECT_REASON_NAMES[i], snake);
        }
    }

    #[test]
    fn histogram_buckets_are_powers_of_two_of_nanoseconds() {
        assert_eq!(Histogram::bucket_index(0), 0);
        assert_eq!(Histogram::bucket_index(256), 0);
        assert_eq!(Histogram::bucket_index(257), 1);
        assert_eq!(Histogram::bucket_index(512), 1);
        assert_eq!(Histogram::bucket_index(513), 2);
        assert_eq!(Histogram::bucket_index(1 << MAX_EXP), FINITE_BUCKETS - 1);
        assert_eq!(Histogram::bucket_index((1 << MAX_EXP) + 1), FINITE_BUCKETS);
        assert_eq!(Histogram::bucket_index(u64::MAX), FINITE_BUCKETS);
        // Every value lands in the first bucket whose bound is not below it.
        for ns in [
            1u64,
            300,
            1000,
            1500,
            999_999,
            1_000_000_000,
            20_000_000_000,
        ] {
            let i = Histogram::bucket_index(ns);
            if i < FINITE_BUCKETS {
                assert!(ns as f64 <= Histogram::bound_secs(i) * 1e9, "{ns}");
            }
            if i > 0 {
                assert!(ns as f64 > Histogram::bound_secs(i - 1) * 1e9, "{ns}");
            }
        }
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let m = Metrics::new();
        let h = m.ack_latency(Protocol::Fix);
        h.record_ns(100);
        h.record_ns(1_000);
        h.record_ns(1_000);
        h.record_ns(-5);
        h.record(Duration::from_secs(60));
        assert_eq!(h.count(), 5);
        let s = rendered(&m);
        let lines: Vec<&str> = s
            .lines()
            .filter(|l| {
                l.starts_with("portcullis_order_ack_latency_seconds")
                    && l.contains("protocol=\"fix\"")
            })
            .collect();
        assert_eq!(lines.len(), FINITE_BUCKETS + 1 + 2, "{lines:#?}");
        assert_eq!(
            lines[0],
            "portcullis_order_ack_latency_seconds_bucket{protocol=\"fix\",le=\"0.000000256\"} 2"
        );
        // 1000 ns is in the 1024 ns bucket (index 2).
        assert!(lines[2].ends_with("le=\"0.000001024\"} 4"), "{}", lines[2]);
        assert!(
            lines[FINITE_BUCKETS - 1].ends_with("le=\"17.179869184\"} 4"),
            "{}",
            lines[FINITE_BUCKETS - 1]
        );
        assert_eq!(
            lines[FINITE_BUCKETS],
            "portcullis_order_ack_latency_seconds_bucket{protocol=\"fix\",le=\"+Inf\"} 5"
        );
        assert_eq!(
            lines[FINITE_BUCKETS + 1],
            "portcullis_order_ack_latency_seconds_sum{protocol=\"fix\"} 60.0000021"
        );
        assert_eq!(
            lines[FINITE_BUCKETS + 2],
            "portcullis_order_ack_latency_seconds_count{protocol=\"fix\"} 5"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut s = String::new();
        escape_label_value("a\\b\"c\nd", &mut s);
        assert_eq!(s, "a\\\\b\\\"c\\nd");
        let mut h = String::new();
        escape_help("x\\y\nz \"q\"", &mut h);
        assert_eq!(h, "x\\\\y\\nz \"q\"");
        let mut out = String::new();
        Text(&mut out).sample("m", &[("k", "v\"1")], 2);
        assert_eq!(out, "m{k=\"v\\\"1\"} 2\n");
    }

    #[test]
    fn every_family_has_help_and_type_once_and_samples_follow_it() {
        let m = Metrics::new();
        m.received(Protocol::Fix);
        m.sent(Protocol::Ws);
        m.fix_reject(RejectReason::BadTick);
        m.fix_business_reject();
        m.fix_session_reject(Some(SessionRejectReason::Other));
        m.fix_session_reject(None);
        m.ws_reject(-2010);
        m.ws_reject(-9999);
        m.auth_outcome(AuthKind::Logon, false, "bad_signature");
        m.auth_outcome(AuthKind::MessageSignature, false, "something new");
        m.lockout();
        m.security_event(SecurityKind::Lockout);
        m.webhook(WebhookResult::Dropped);
        m.connected(Protocol::Fix, 1);
        let s = rendered(&m);
        let mut families = Vec::new();
        let mut current = String::new();
        for line in s.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(!families.contains(&name), "{name} twice");
                families.push(name.clone());
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(rest.starts_with(&format!("{current} ")), "{line}");
            } else {
                assert!(line.starts_with(&current), "{line} outside {current}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(families.iter().all(|f| f.starts_with("portcullis_")));
        for f in &families {
            let t = s
                .lines()
                .find(|l| l.starts_with(&format!("# TYPE {f} ")))
                .unwrap();
            if t.ends_with(" counter") {
                assert!(f.ends_with("_total"), "{f}");
            }
        }
        for line in [
            "portcullis_messages_received_total{protocol=\"fix\"} 1",
            "portcullis_messages_sent_total{protocol=\"ws\"} 1",
            "portcullis_rejects_total{protocol=\"fix\",reason=\"bad_tick\"} 1",
            "portcullis_rejects_total{protocol=\"fix\",reason=\"business_reject\"} 1",
            "portcullis_rejects_total{protocol=\"fix\",reason=\"session_other\"} 1",
            "portcullis_rejects_total{protocol=\"fix\",reason=\"session_no_reason\"} 1",
            "portcullis_rejects_total{protocol=\"ws\",reason=\"new_order_rejected\"} 1",
            "portcullis_rejects_total{protocol=\"ws\",reason=\"other\"} 1",
            "portcullis_auth_outcomes_total{kind=\"logon\",outcome=\"denied\",reason=\"bad_signature\"} 1",
            "portcullis_auth_outcomes_total{kind=\"message_signature\",outcome=\"denied\",reason=\"other\"} 1",
            "portcullis_auth_lockouts_total 1",
            "portcullis_sessions_connected{protocol=\"fix\"} 1",
            "portcullis_ingress_queue_depth 3",
            "portcullis_egress_queue_depth 4",
            "portcullis_journal_queue_depth 5",
            "portcullis_matching_events_total{kind=\"new\"} 1",
            "portcullis_security_events_total{kind=\"lockout\"} 1",
            "portcullis_webhook_events_total{result=\"dropped\"} 1",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line}:\n{s}");
        }
    }

    #[test]
    fn ws_codes_have_distinct_labels() {
        let mut names: Vec<&str> = (0..WS_REJECT_SLOTS).map(ws_reject_name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WS_REJECT_SLOTS);
        assert_eq!(ws_reject_name(ws_reject_index(-2015)), "rejected_mbx_key");
        assert_eq!(ws_reject_name(ws_reject_index(-1022)), "invalid_signature");
    }
}
