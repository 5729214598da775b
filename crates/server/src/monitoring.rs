//! Security monitoring (DESIGN.md §4): security events go to the audit log, to
//! `portcullis_security_events_total{kind}` and to the optional webhook.
//!
//! Where they come from:
//!
//! - the auth layer: every audit event it writes passes through [`MonitoredAudit`] on its way
//!   to the audit log; logons and signature failures are counted by outcome and reason, and
//!   its `lockout` and `anomaly` events (new IP for a key, several IPs at once, a burst of
//!   signature failures) are security events;
//! - reject-rate spikes: the socket tasks report each order their account had refused by the
//!   core thread ([`order_rejected`], read from the egress side, never on the core thread);
//!   `reject_spike_threshold` rejects of one account within a fixed window of
//!   `reject_spike_window_ms` raise one `reject_rate_spike` event for that window (written to
//!   the audit log as an `anomaly` with that reason);
//! - operator changes: a kill switch turned on or off and changed risk limits
//!   ([`operator_change`], called by the control socket after it audited the command).
//!
//! Nothing here blocks: counting is atomic, the webhook takes events with `try_send`, and the
//! spike detector is a few relaxed atomics per account (allocated once at start).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use portcullis_auth::{AuditEvent, AuditKind, AuditSink, Outcome};
use portcullis_types::AccountId;
use tracing::{error, warn};

use crate::config::MonitoringSettings;
use crate::metrics::{AuthKind, SecurityKind, METRICS};
use crate::webhook::WebhookSender;

/// The process's monitor, installed once at start-up; without it (unit tests, benches) the
/// counters still count and nothing else happens.
static MONITOR: OnceLock<Monitor> = OnceLock::new();

/// What the security events need at run time.
struct Monitor {
    webhook: Option<WebhookSender>,
    spikes: SpikeDetector,
    accounts: Vec<Box<str>>,
    audit: Arc<dyn AuditSink>,
}

/// Installs the monitor: the webhook task (if configured), the spike detector for `accounts`
/// (indexed by [`AccountId`]) and the audit log that spike events are written to. Fails only
/// on an unusable `webhook_ca_file`.
pub fn install(
    settings: &MonitoringSettings,
    accounts: &[String],
    audit: Arc<dyn AuditSink>,
) -> anyhow::Result<()> {
    let webhook = settings
        .webhook
        .as_ref()
        .map(crate::webhook::start)
        .transpose()?;
    let _ = MONITOR.set(Monitor {
        webhook,
        spikes: SpikeDetector::new(
            accounts.len(),
            settings.reject_spike_threshold,
            settings.reject_spike_window.as_millis() as u64,
        ),
        accounts: accounts.iter().map(|a| a.as_str().into()).collect(),
        audit,
    });
    Ok(())
}

/// The security kind of an audit event, if it is one.
fn security_kind(event: &AuditEvent) -> Option<SecurityKind> {
    match event.kind {
        AuditKind::Lockout => Some(SecurityKind::Lockout),
        AuditKind::Anomaly => Some(match event.reason.as_deref() {
            Some("new_ip") => SecurityKind::NewIp,
            Some("multiple_ips") => SecurityKind::MultipleIps,
            Some("signature_failure_burst") => SecurityKind::SignatureFailureBurst,
            Some("reject_rate_spike") => SecurityKind::RejectRateSpike,
            _ => SecurityKind::OtherAnomaly,
        }),
        _ => None,
    }
}

/// Counts an audit event of the auth layer and raises it if it is a security event.
fn observe(event: &AuditEvent) {
    let ok = event.outcome == Outcome::Ok;
    let reason = event.reason.as_deref().unwrap_or("");
    match event.kind {
        AuditKind::Logon => METRICS.auth_outcome(AuthKind::Logon, ok, reason),
        AuditKind::MessageSignature => METRICS.auth_outcome(AuthKind::MessageSignature, ok, reason),
        AuditKind::Lockout => METRICS.lockout(),
        _ => {}
    }
    if let Some(kind) = security_kind(event) {
        raise(kind, event);
    }
}

/// Counts a security event and hands it to the webhook (the caller has audited it).
fn raise(kind: SecurityKind, event: &AuditEvent) {
    METRICS.security_event(kind);
    if let Some(hook) = MONITOR.get().and_then(|m| m.webhook.as_ref()) {
        hook.send(webhook_json(kind, event));
    }
}

/// The webhook's JSON: the audit event's fields, `kind` the security kind, `audit_kind` the
/// audit log's kind, and `source`.
fn webhook_json(kind: SecurityKind, event: &AuditEvent) -> String {
    let mut v = match serde_json::to_value(event) {
        Ok(v) => v,
        Err(e) => {
            error!(error = %e, "cannot format a security event");
            serde_json::json!({})
        }
    };
    if let Some(obj) = v.as_object_mut() {
        let audit_kind = obj.remove("kind").unwrap_or(serde_json::Value::Null);
        obj.insert("audit_kind".into(), audit_kind);
        obj.insert("kind".into(), kind.name().into());
        obj.insert("source".into(), "portcullis".into());
    }
    v.to_string()
}

/// The auth layer's audit sink: forwards every event to the audit log, then counts it and
/// raises the security events among them.
pub struct MonitoredAudit {
    inner: Arc<dyn AuditSink>,
}

impl MonitoredAudit {
    /// Events go to `inner` (the server's audit log).
    pub fn new(inner: Arc<dyn AuditSink>) -> Self {
        Self { inner }
    }
}

impl AuditSink for MonitoredAudit {
    fn record(&self, event: &AuditEvent) -> std::io::Result<()> {
        let r = self.inner.record(event);
        observe(event);
        r
    }
}

/// An operator change the control socket carried out (and audited): a kill switch on or off
/// (`account` `None` = every account), or new risk limits.
pub fn operator_change(kind: SecurityKind, account: Option<&str>, actor: &str, detail: &str) {
    let mut event = AuditEvent::new(
        AuditKind::Anomaly,
        Outcome::Ok,
        portcullis_auth::clock::now_ms(),
    )
    .session(actor)
    .reason(kind.name())
    .detail(detail);
    if let Some(a) = account {
        event = event.account(a);
    }
    raise(kind, &event);
}

/// An order of `account` was refused by the core thread at `now_ms` (the event's time: no
/// clock read). Called by the socket task that reports the reject; raises a
/// `reject_rate_spike` at most once per window and account.
pub fn order_rejected(account: AccountId, now_ms: i64) {
    let Some(m) = MONITOR.get() else { return };
    let Some(count) = m.spikes.reject(account.0 as usize, now_ms) else {
        return;
    };
    let name = m.accounts.get(account.0 as usize).map_or("?", |a| &**a);
    warn!(account = %name, rejects = count, window_ms = m.spikes.window_ms, "reject-rate spike");
    let event = AuditEvent::new(AuditKind::Anomaly, Outcome::Denied, now_ms)
        .account(name)
        .reason("reject_rate_spike")
        .detail(format!(
            "{count} rejects within a {} ms window (threshold {})",
            m.spikes.window_ms, m.spikes.threshold
        ));
    if let Err(e) = m.audit.record(&event) {
        error!(error = %e, "could not write the reject-rate spike to the audit log");
    }
    raise(SecurityKind::RejectRateSpike, &event);
}

/// Rejects per account in fixed windows: one slot of three atomics per account.
#[derive(Debug)]
struct SpikeDetector {
    threshold: u64,
    window_ms: u64,
    slots: Box<[SpikeSlot]>,
}

#[derive(Debug, Default)]
struct SpikeSlot {
    /// The current window's number + 1 (0: none yet).
    window: AtomicU64,
    /// Rejects in it.
    count: AtomicU64,
    /// The window (number + 1) a spike was last raised for.
    alerted: AtomicU64,
}

impl SpikeDetector {
    fn new(accounts: usize, threshold: u64, window_ms: u64) -> Self {
        Self {
            threshold,
            window_ms: window_ms.max(1),
            slots: (0..accounts).map(|_| SpikeSlot::default()).collect(),
        }
    }

    /// Counts a reject; `Some(count)` when it makes the window a spike (once per window).
    /// Concurrent callers at a window's turn may count a reject into the neighbouring window:
    /// a spike is a rate, not an audit total.
    fn reject(&self, account: usize, now_ms: i64) -> Option<u64> {
        if self.threshold == 0 {
            return None;
        }
        let slot = self.slots.get(account)?;
        let w = u64::try_from(now_ms).unwrap_or(0) / self.window_ms + 1;
        let current = slot.window.load(Relaxed);
        if w > current
            && slot
                .window
                .compare_exchange(current, w, Relaxed, Relaxed)
                .is_ok()
        {
            slot.count.store(0, Relaxed);
        }
        let n = slot.count.fetch_add(1, Relaxed) + 1;
        if n >= self.threshold
            && slot.alerted.load(Relaxed) != w
            && slot.alerted.swap(w, Relaxed) != w
        {
            return Some(n);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_and_monitoring_sections_are_checked() {
        use crate::config::{parse, EMBEDDED_DEFAULT};
        let bind = "bind = \"127.0.0.1:9464\"";
        let hook = "# webhook_url = \"https://hooks.example.com/portcullis\"";
        assert!(EMBEDDED_DEFAULT.contains(bind) && EMBEDDED_DEFAULT.contains(hook));
        let s = parse(EMBEDDED_DEFAULT, true).unwrap();
        assert_eq!(s.metrics.bind, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(s.monitoring.webhook.is_none());
        assert_eq!(s.monitoring.reject_spike_threshold, 50);
        let err = |text: String| parse(&text, true).unwrap_err();
        let e = err(EMBEDDED_DEFAULT.replace(bind, "bind = \"0.0.0.0:9464\""));
        assert_eq!(e.key(), Some("metrics.bind"), "{e}");
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = err(EMBEDDED_DEFAULT.replace(bind, "bind = \"localhost\""));
        assert_eq!(e.key(), Some("metrics.bind"), "{e}");
        let e = err(EMBEDDED_DEFAULT.replace(hook, "webhook_url = \"http://x.example/h\""));
        assert_eq!(e.key(), Some("monitoring.webhook_url"), "{e}");
        let e = err(EMBEDDED_DEFAULT.replace(hook, "webhook_ca_file = \"ca.pem\""));
        assert_eq!(e.key(), Some("monitoring.webhook_ca_file"), "{e}");
        let e = err(EMBEDDED_DEFAULT.replace(hook, "webhook_retries = 99"));
        assert_eq!(e.key(), Some("monitoring.webhook_retries"), "{e}");
        let e = err(EMBEDDED_DEFAULT.replace(hook, "webhook_urls = \"https://x\""));
        assert!(e.to_string().contains("webhook_urls"), "{e}");
        let s = parse(
            &EMBEDDED_DEFAULT.replace(
                hook,
                "webhook_url = \"https://127.0.0.1:8443/hook\"\nwebhook_retries = 1",
            ),
            true,
        )
        .unwrap();
        let w = s.monitoring.webhook.unwrap();
        assert_eq!((w.target.port, w.retries, w.queue), (8443, 1, 1024));
    }

    #[test]
    fn a_spike_is_raised_once_per_window_and_account() {
        let d = SpikeDetector::new(2, 3, 1000);
        let t = 10_000;
        assert_eq!(d.reject(0, t), None);
        assert_eq!(d.reject(0, t + 1), None);
        assert_eq!(d.reject(1, t + 2), None, "accounts count apart");
        assert_eq!(d.reject(0, t + 3), Some(3));
        assert_eq!(d.reject(0, t + 4), None, "once per window");
        // The next window starts over.
        assert_eq!(d.reject(0, t + 1000), None);
        assert_eq!(d.reject(0, t + 1001), None);
        assert_eq!(d.reject(0, t + 1002), Some(3));
        // Unknown accounts and a threshold of 0 raise nothing.
        assert_eq!(d.reject(7, t), None);
        let off = SpikeDetector::new(1, 0, 1000);
        assert!((0..100).all(|i| off.reject(0, t + i).is_none()));
    }

    #[test]
    fn auth_anomalies_and_lockouts_are_security_events() {
        let now = 1_700_000_000_000;
        let e = |kind, reason: &str| AuditEvent::new(kind, Outcome::Denied, now).reason(reason);
        assert_eq!(
            security_kind(&e(AuditKind::Lockout, "too_many_failures")),
            Some(SecurityKind::Lockout)
        );
        assert_eq!(
            security_kind(&e(AuditKind::Anomaly, "new_ip")),
            Some(SecurityKind::NewIp)
        );
        assert_eq!(
            security_kind(&e(AuditKind::Anomaly, "signature_failure_burst")),
            Some(SecurityKind::SignatureFailureBurst)
        );
        assert_eq!(
            security_kind(&e(AuditKind::Anomaly, "something")),
            Some(SecurityKind::OtherAnomaly)
        );
        assert_eq!(security_kind(&e(AuditKind::Logon, "bad_signature")), None);
    }

    #[test]
    fn the_webhook_json_names_the_security_kind_and_keeps_the_audit_fields() {
        let e = AuditEvent::new(AuditKind::Lockout, Outcome::Denied, 1_700_000_000_000)
            .key_id("k1")
            .account("ACC")
            .reason("too_many_failures")
            .detail("locked");
        let v: serde_json::Value =
            serde_json::from_str(&webhook_json(SecurityKind::Lockout, &e)).unwrap();
        assert_eq!(v["kind"], "lockout");
        assert_eq!(v["audit_kind"], "lockout");
        assert_eq!(v["source"], "portcullis");
        assert_eq!(v["key_id"], "k1");
        assert_eq!(v["account"], "ACC");
        assert_eq!(v["reason"], "too_many_failures");
        assert_eq!(v["outcome"], "denied");
        assert!(v["time"].as_str().unwrap().starts_with("2023-11-14T"));
    }
}
