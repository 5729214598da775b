//! The risk state in a journal snapshot: everything a check depends on, so that a core
//! restored from a snapshot answers the next order exactly as the live one did (the same
//! throttle tokens, the same ClOrdIDs seen today, the same positions and usage).

use portcullis_types::snapshot::{stp_byte, SnapshotError, SnapshotReader, SnapshotWriter};
use portcullis_types::{InstrumentId, Price};

use super::RiskEngine;
use crate::config::AccountLimits;
use crate::decimal::Decimal;
use crate::tables::{PairState, PENDING};
use crate::throttle::{AbuseWindow, TokenBucket};

/// Format of this part of a snapshot; bumped on any change.
const VERSION: u8 = 1;

fn write_bucket(w: &mut SnapshotWriter<'_>, b: &TokenBucket) {
    let (tokens, cap, rate, last) = b.parts();
    w.u64(tokens);
    w.u64(cap);
    w.u64(rate);
    w.i64(last);
}

fn read_bucket(r: &mut SnapshotReader<'_>) -> Result<TokenBucket, SnapshotError> {
    Ok(TokenBucket::from_parts(
        r.u64("bucket tokens")?,
        r.u64("bucket cap")?,
        r.u64("bucket rate")?,
        r.i64("bucket refill time")?,
    ))
}

fn write_limits(w: &mut SnapshotWriter<'_>, l: &AccountLimits) {
    for d in [
        l.max_notional,
        l.price_band_pct,
        l.credit_limit,
        l.max_position_per_instrument,
        l.max_position_per_underlying,
    ] {
        w.i128(d.units());
    }
    w.u32(l.max_open_orders);
    w.u32(l.max_open_orders_per_instrument);
    w.u32(l.order_rate_per_sec);
    w.u32(l.order_burst);
    w.u8(stp_byte(Some(l.stp_mode)));
}

fn read_limits(r: &mut SnapshotReader<'_>) -> Result<AccountLimits, SnapshotError> {
    let mut d = || r.i128("limit").map(Decimal::from_units);
    let (max_notional, price_band_pct, credit_limit, pos_i, pos_u) = (d()?, d()?, d()?, d()?, d()?);
    Ok(AccountLimits {
        max_notional,
        price_band_pct,
        credit_limit,
        max_position_per_instrument: pos_i,
        max_position_per_underlying: pos_u,
        max_open_orders: r.u32("max_open_orders")?,
        max_open_orders_per_instrument: r.u32("max_open_orders_per_instrument")?,
        order_rate_per_sec: r.u32("order_rate_per_sec")?,
        order_burst: r.u32("order_burst")?,
        stp_mode: r.stp()?.ok_or_else(|| r.invalid(1, "stp mode"))?,
    })
}

impl RiskEngine {
    /// Appends the risk state to a snapshot: kill switches, per account its limits, throttle,
    /// open orders and usage, reference prices and statuses, per session its throttle, abuse
    /// window and generation, the ClOrdIDs seen today (as keyed hashes, with the key) and every
    /// position slot. Instrument rules are the engine's to write. Not for the hot path: it
    /// allocates `out`'s growth (call it off the core thread, on a replica).
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        let mut w = SnapshotWriter::new(out);
        w.u8(VERSION);
        w.bool(self.global_kill);
        w.u64(self.anomalies);
        w.u32(self.accounts.len() as u32);
        for a in &self.accounts {
            w.bytes(a.name.as_bytes());
            w.bool(a.kill);
            write_limits(&mut w, &a.config);
            write_bucket(&mut w, &a.bucket);
            w.u32(a.open_orders);
            w.i128(a.open_notional);
            w.i128(a.exposure);
        }
        w.u32(self.instruments.len() as u32);
        for i in &self.instruments {
            match i {
                None => w.u8(0),
                Some(i) => {
                    w.u8(1);
                    w.i64(i.reference.map_or(0, |p| p.0));
                }
            }
        }
        w.u32(self.sessions.len() as u32);
        w.u32(self.abuse_n as u32);
        for (n, s) in self.sessions.iter().enumerate() {
            write_bucket(&mut w, &s.bucket);
            let (head, len) = s.abuse.parts();
            w.u32(head);
            w.u32(len);
            w.bool(s.abuse.abusive);
            w.u32(s.generation);
            for &t in &self.abuse_ring[n * self.abuse_n..(n + 1) * self.abuse_n] {
                w.i64(t);
            }
        }
        let (keys, pending, next_pending, table) = self.cl_ord_ids.snapshot_parts();
        w.u64(keys.0);
        w.u64(keys.1);
        for h in pending {
            w.u64(h);
        }
        w.u32(next_pending as u32);
        w.u32(table.len() as u32);
        for h in table {
            w.u64(h);
        }
        let (seed, states) = self.pairs.snapshot_parts();
        w.u64(seed);
        w.u32(states.len() as u32);
        for s in states {
            w.u64(s.key);
            w.i128(s.position);
            w.i128(s.open_buy);
            w.i128(s.open_sell);
            w.i128(s.exposure);
            w.u32(s.open_orders);
        }
    }

    /// Restores what [`write_snapshot`](Self::write_snapshot) wrote into an engine freshly
    /// built from the config with the snapshot's instruments listed. Refuses a snapshot whose
    /// accounts (names, order) or sessions differ from the config's, or that does not fit the
    /// configured tables; limits changed at run time are the snapshot's (they were journaled).
    pub fn restore_snapshot(&mut self, r: &mut SnapshotReader<'_>) -> Result<(), SnapshotError> {
        if r.u8("risk snapshot version")? != VERSION {
            return Err(r.invalid(1, "risk snapshot version"));
        }
        self.global_kill = r.bool("global kill switch")?;
        self.anomalies = r.u64("anomalies")?;
        let n = r.count(16, "accounts")?;
        if n != self.accounts.len() {
            return Err(SnapshotError::Mismatch(format!(
                "{n} accounts in the snapshot, {} configured",
                self.accounts.len()
            )));
        }
        for a in &mut self.accounts {
            let name = r.bytes("account name")?;
            if name != a.name.as_bytes() {
                return Err(SnapshotError::Mismatch(format!(
                    "account {:?} in the snapshot where the config has {:?}",
                    String::from_utf8_lossy(name),
                    a.name
                )));
            }
            a.kill = r.bool("account kill switch")?;
            let config = read_limits(r)?;
            a.limits = config
                .resolve(&format!("accounts.{}", a.name))
                .map_err(|e| SnapshotError::Mismatch(e.to_string()))?;
            a.config = config;
            a.bucket = read_bucket(r)?;
            a.open_orders = r.u32("open orders")?;
            a.open_notional = r.i128("open notional")?;
            a.exposure = r.i128("exposure")?;
        }
        let n = r.count(1, "instruments")?;
        for i in 0..n {
            let listed = r.u8("instrument listed")?;
            match (listed, self.instruments.get_mut(i)) {
                (0, None | Some(None)) => {}
                (1, Some(Some(inst))) => {
                    let p = r.i64("reference price")?;
                    inst.reference = (p > 0).then_some(Price(p));
                }
                _ => {
                    return Err(SnapshotError::Mismatch(format!(
                    "instrument {} is listed in one of the snapshot and the instrument table only",
                    InstrumentId(i as u32).0
                )))
                }
            }
        }
        let n = r.count(40, "sessions")?;
        let abuse_n = r.u32("abuse window size")? as usize;
        if n != self.sessions.len() || abuse_n != self.abuse_n {
            return Err(SnapshotError::Mismatch(format!(
                "{n} sessions × {abuse_n} abuse slots in the snapshot, {} × {} configured",
                self.sessions.len(),
                self.abuse_n
            )));
        }
        for (s_i, s) in self.sessions.iter_mut().enumerate() {
            s.bucket = read_bucket(r)?;
            let (head, len) = (r.u32("abuse head")?, r.u32("abuse len")?);
            let abusive = r.bool("abusive")?;
            s.abuse = AbuseWindow::from_parts(head, len, abusive, abuse_n as u32)
                .ok_or_else(|| r.invalid(9, "abuse window"))?;
            s.generation = r.u32("session generation")?;
            for t in &mut self.abuse_ring[s_i * abuse_n..(s_i + 1) * abuse_n] {
                *t = r.i64("abuse time")?;
            }
        }
        let keys = (r.u64("clordid key")?, r.u64("clordid key")?);
        let mut pending = [0u64; PENDING];
        for h in &mut pending {
            *h = r.u64("pending clordid")?;
        }
        let next_pending = r.u32("pending position")? as usize;
        let n = r.count(8, "clordids")?;
        let mut table = Vec::with_capacity(n);
        for _ in 0..n {
            table.push(r.u64("clordid")?);
        }
        if !self.cl_ord_ids.restore(keys, pending, next_pending, &table) {
            return Err(SnapshotError::Mismatch(format!(
                "{n} ClOrdIDs of today do not fit risk.max_cl_ord_ids_per_day"
            )));
        }
        let seed = r.u64("position seed")?;
        let n = r.count(76, "position slots")?;
        let mut states = Vec::with_capacity(n);
        for _ in 0..n {
            states.push(PairState {
                key: r.u64("position key")?,
                position: r.i128("position")?,
                open_buy: r.i128("open buy")?,
                open_sell: r.i128("open sell")?,
                exposure: r.i128("exposure")?,
                open_orders: r.u32("open orders")?,
            });
        }
        if !self.pairs.restore(seed, states) {
            return Err(SnapshotError::Mismatch(format!(
                "{n} position slots do not fit risk.max_position_slots"
            )));
        }
        Ok(())
    }
}
