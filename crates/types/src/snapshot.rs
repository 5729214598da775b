//! The byte codec of state snapshots: what the engine and the risk crate use to write their
//! state into a journal snapshot and read it back at recovery.
//!
//! Little-endian fixed-width integers and length-prefixed byte strings, nothing else: the
//! snapshot is written by the same build that reads it back in the common case, and the
//! journal seals it (AES-256-GCM), so the codec only has to be exact and never panic on a
//! damaged or foreign input — every read is bounds-checked and reports where it failed.

use crate::{
    ClOrdId, InstrumentKind, InstrumentStatus, OrdType, Price, Qty, Side, StpMode, TimeInForce,
    UnderlyingId,
};

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes end inside a value.
    #[error("snapshot truncated at byte {offset} (reading {what})")]
    Truncated {
        /// Where the value started.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A value is out of its range (an enum tag, a count beyond the configured tables).
    #[error("snapshot byte {offset}: invalid {what}")]
    Invalid {
        /// Where the value started.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The snapshot does not fit the server's configuration (accounts, sessions or table
    /// sizes changed since it was taken).
    #[error("snapshot does not fit the configuration: {0}")]
    Mismatch(String),
}

/// Appends snapshot values to a buffer.
#[derive(Debug)]
pub struct SnapshotWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> SnapshotWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    /// A bool as one byte.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    /// A `u32`.
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    /// A `u64`.
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    /// An `i64`.
    pub fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    /// An `i128`.
    pub fn i128(&mut self, v: i128) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    /// An order type: one byte, then the stop price of a stop order.
    pub fn ord_type(&mut self, t: OrdType) {
        self.u8(t.code());
        if let Some(p) = t.stop_px() {
            self.i64(p.0);
        }
    }
    /// A time in force: one byte, then the expiry time of a GTD order.
    pub fn tif(&mut self, t: TimeInForce) {
        self.u8(t.code());
        if let Some(e) = t.expire_ns() {
            self.i64(e);
        }
    }
    /// A length (`u32`) then the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.out.extend_from_slice(v);
    }
    /// A client order id.
    pub fn cl_ord_id(&mut self, v: &ClOrdId) {
        self.u8(v.as_bytes().len() as u8);
        self.out.extend_from_slice(v.as_bytes());
    }
    /// An instrument kind.
    pub fn instrument_kind(&mut self, k: &InstrumentKind) {
        match *k {
            InstrumentKind::Option {
                underlying,
                expiry_ms,
                strike,
                call,
            } => {
                self.u8(0);
                self.u32(underlying.0);
                self.i64(expiry_ms);
                self.i64(strike.0);
                self.bool(call);
            }
            InstrumentKind::Future {
                underlying,
                expiry_ms,
            } => {
                self.u8(1);
                self.u32(underlying.0);
                self.i64(expiry_ms);
            }
            InstrumentKind::Perpetual { underlying } => {
                self.u8(2);
                self.u32(underlying.0);
            }
            InstrumentKind::Spot { underlying } => {
                self.u8(3);
                self.u32(underlying.0);
            }
        }
    }
}

/// Reads snapshot values, bounds-checked.
#[derive(Debug, Clone)]
pub struct SnapshotReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> SnapshotReader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.data.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(SnapshotError::Truncated {
                offset: self.pos,
                what,
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// An error for the value that starts `back` bytes before the current position.
    pub fn invalid(&self, back: usize, what: &'static str) -> SnapshotError {
        SnapshotError::Invalid {
            offset: self.pos.saturating_sub(back),
            what,
        }
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, SnapshotError> {
        Ok(self.take(1, what)?[0])
    }
    /// A bool (0 or 1).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, SnapshotError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid(1, what)),
        }
    }
    /// A `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// A `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// An `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    /// An `i128`.
    pub fn i128(&mut self, what: &'static str) -> Result<i128, SnapshotError> {
        Ok(i128::from_le_bytes(self.array(what)?))
    }
    /// A count of items that each take at least `min_item_bytes`: refused if the rest of the
    /// input cannot hold them, so a damaged count cannot make the reader allocate.
    pub fn count(
        &mut self,
        min_item_bytes: usize,
        what: &'static str,
    ) -> Result<usize, SnapshotError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.data.len() - self.pos {
            return Err(self.invalid(4, what));
        }
        Ok(n)
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    /// A client order id (may be empty).
    pub fn cl_ord_id(&mut self, what: &'static str) -> Result<ClOrdId, SnapshotError> {
        let n = self.u8(what)? as usize;
        let b = self.take(n, what)?;
        if b.is_empty() {
            return Ok(ClOrdId::EMPTY);
        }
        ClOrdId::new(b).map_err(|_| self.invalid(n + 1, what))
    }
    /// A side.
    pub fn side(&mut self) -> Result<Side, SnapshotError> {
        match self.u8("side")? {
            0 => Ok(Side::Buy),
            1 => Ok(Side::Sell),
            _ => Err(self.invalid(1, "side")),
        }
    }
    /// An order type (a stop price follows the byte of a stop order).
    pub fn ord_type(&mut self) -> Result<OrdType, SnapshotError> {
        let c = self.u8("order type")?;
        OrdType::from_code(c, || self.price("stop price"))
            .unwrap_or_else(|| Err(self.invalid(1, "order type")))
    }
    /// A time in force (a GTD order's expiry time follows its byte).
    pub fn tif(&mut self) -> Result<TimeInForce, SnapshotError> {
        let c = self.u8("time in force")?;
        TimeInForce::from_code(c, || self.i64("expire time"))
            .unwrap_or_else(|| Err(self.invalid(1, "time in force")))
    }
    /// An optional self-trade prevention mode (0xff = none).
    pub fn stp(&mut self) -> Result<Option<StpMode>, SnapshotError> {
        match self.u8("stp mode")? {
            0 => Ok(Some(StpMode::CancelResting)),
            1 => Ok(Some(StpMode::CancelIncoming)),
            2 => Ok(Some(StpMode::CancelBoth)),
            0xff => Ok(None),
            _ => Err(self.invalid(1, "stp mode")),
        }
    }
    /// An instrument status.
    pub fn status(&mut self) -> Result<InstrumentStatus, SnapshotError> {
        match self.u8("instrument status")? {
            0 => Ok(InstrumentStatus::Trading),
            1 => Ok(InstrumentStatus::Halted),
            2 => Ok(InstrumentStatus::Expired),
            _ => Err(self.invalid(1, "instrument status")),
        }
    }
    /// An instrument kind.
    pub fn instrument_kind(&mut self) -> Result<InstrumentKind, SnapshotError> {
        Ok(match self.u8("instrument kind")? {
            0 => InstrumentKind::Option {
                underlying: UnderlyingId(self.u32("underlying")?),
                expiry_ms: self.i64("expiry")?,
                strike: Price(self.i64("strike")?),
                call: self.bool("call")?,
            },
            1 => InstrumentKind::Future {
                underlying: UnderlyingId(self.u32("underlying")?),
                expiry_ms: self.i64("expiry")?,
            },
            2 => InstrumentKind::Perpetual {
                underlying: UnderlyingId(self.u32("underlying")?),
            },
            3 => InstrumentKind::Spot {
                underlying: UnderlyingId(self.u32("underlying")?),
            },
            _ => return Err(self.invalid(1, "instrument kind")),
        })
    }
    /// A quantity.
    pub fn qty(&mut self, what: &'static str) -> Result<Qty, SnapshotError> {
        Ok(Qty(self.i64(what)?))
    }
    /// A price.
    pub fn price(&mut self, what: &'static str) -> Result<Price, SnapshotError> {
        Ok(Price(self.i64(what)?))
    }
}

/// The byte a [`SnapshotReader`] reads back as this side.
pub fn side_byte(s: Side) -> u8 {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}
/// The byte of an optional STP mode.
pub fn stp_byte(m: Option<StpMode>) -> u8 {
    match m {
        Some(StpMode::CancelResting) => 0,
        Some(StpMode::CancelIncoming) => 1,
        Some(StpMode::CancelBoth) => 2,
        None => 0xff,
    }
}
/// The byte of an instrument status.
pub fn status_byte(s: InstrumentStatus) -> u8 {
    match s {
        InstrumentStatus::Trading => 0,
        InstrumentStatus::Halted => 1,
        InstrumentStatus::Expired => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_round_trip() {
        let mut buf = Vec::new();
        let mut w = SnapshotWriter::new(&mut buf);
        w.u8(7);
        w.bool(true);
        w.u32(0xdead_beef);
        w.i64(-5);
        w.i128(-(1 << 100));
        w.bytes(b"abc");
        w.cl_ord_id(&ClOrdId::new(b"C-1").unwrap());
        w.cl_ord_id(&ClOrdId::EMPTY);
        w.instrument_kind(&InstrumentKind::Option {
            underlying: UnderlyingId(3),
            expiry_ms: 99,
            strike: Price(100),
            call: false,
        });
        w.u8(stp_byte(None));
        w.tif(TimeInForce::Day);
        w.tif(TimeInForce::Gtd { expire_ns: -7 });
        let mut r = SnapshotReader::new(&buf);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert!(r.bool("b").unwrap());
        assert_eq!(r.u32("c").unwrap(), 0xdead_beef);
        assert_eq!(r.i64("d").unwrap(), -5);
        assert_eq!(r.i128("e").unwrap(), -(1 << 100));
        assert_eq!(r.bytes("f").unwrap(), b"abc");
        assert_eq!(r.cl_ord_id("g").unwrap().as_str(), "C-1");
        assert_eq!(r.cl_ord_id("g").unwrap(), ClOrdId::EMPTY);
        assert!(matches!(
            r.instrument_kind().unwrap(),
            InstrumentKind::Option {
                strike: Price(100),
                call: false,
                ..
            }
        ));
        assert_eq!(r.stp().unwrap(), None);
        assert_eq!(r.tif().unwrap(), TimeInForce::Day);
        assert_eq!(r.tif().unwrap(), TimeInForce::Gtd { expire_ns: -7 });
        assert!(r.is_empty());
    }

    #[test]
    fn truncation_and_bad_tags_are_errors_with_offsets() {
        let mut r = SnapshotReader::new(&[1, 2]);
        assert_eq!(
            r.u32("count"),
            Err(SnapshotError::Truncated {
                offset: 0,
                what: "count"
            })
        );
        let mut r = SnapshotReader::new(&[9]);
        assert_eq!(
            r.side(),
            Err(SnapshotError::Invalid {
                offset: 0,
                what: "side"
            })
        );
        // A count larger than the input can hold is refused before anything is allocated.
        let mut r = SnapshotReader::new(&[0xff, 0xff, 0xff, 0xff, 0]);
        assert!(matches!(
            r.count(8, "orders"),
            Err(SnapshotError::Invalid { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = SnapshotReader::new(&data);
            let _ = r.instrument_kind();
            let _ = r.cl_ord_id("id");
            let _ = r.bytes("b");
            let _ = r.count(4, "n");
        }
    }
}
