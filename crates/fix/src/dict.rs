//! Dictionaries per FIX version and validation of decoded messages against them.
//!
//! The dictionaries are hand-written static tables (see `dict/fields.rs` and
//! `dict/messages.rs`), one set shared by the three versions, each entry marked with the versions
//! it belongs to. Lookup tables per version (tag → field, message → allowed and required fields as
//! bit sets) are computed at compile time, and any inconsistency in the tables (a message field
//! that its version does not define, a tag defined twice) fails the build. Validation allocates
//! nothing: one pass over the fields with a bit set on the stack for the tags seen.
//!
//! Versions: FIX.4.2, FIX.4.4, and FIXT.1.1 (its session header, trailer and admin messages)
//! with FIX 5.0 SP2 application messages. Messages covered: the session messages 0, 1, 2, 3, 4, 5,
//! A and the order-entry messages D, F, G, H, q, 8, 9, r, j (q and r from 4.4 on), the order lists E,
//! N, K and M (from 4.4 on), and the security, quote, position, trading session and market data (V, W, Y)
//! messages.
//!
//! Every problem maps to a SessionRejectReason(373) and, when it is about one field, a
//! RefTagID(371). Codes above 11 do not exist in FIX 4.2: validation still reports them (the
//! caller leaves 373 out of a 4.2 Reject, see [`SessionRejectReason::defined_in`]).
//!
//! Choices where the specification leaves room:
//! - Tags 5000–49999 (the user-defined ranges) are accepted in the body without checks, and may
//!   repeat, also inside a repeating group's entry (after its delimiter); undefined tags outside
//!   it are [`SessionRejectReason::InvalidTagNumber`].
//! - Username(553) and Password(554) are defined for every version but, on FIX 4.2, only on
//!   Logon, where venues accept them as extension fields (the logon signature uses 553).
//! - Body fields may come in any order; header fields must precede the body; SignatureLength(93)
//!   and Signature(89) must immediately precede CheckSum(10). Fields of a repeating group entry
//!   must follow the group's order, starting with its delimiter.
//! - A well-formed tag that the version does not define is reason 0 (Invalid tag number), as
//!   the FIX session-level test case 14a and QuickFIX/J answer it; reason 3 is not produced.
//! - On FIXT.1.1, application messages are validated as FIX 5.0 SP2 whatever their ApplVerID.
//! - A required component (e.g. Instrument on NewOrderSingle) makes its Symbol(55) required.
//! - Enumerations listed as "no longer used" in later versions are still accepted.
//! - TriggerPriceDirection(1109), from FIX 5.0 SP2's TriggeringInstruction, is accepted on
//!   NewOrderSingle and ExecutionReport in FIX 4.4 too, as an extension: it is how a
//!   take-profit limit order (limit if touched) is told from a stop-limit order.

use crate::decode::parse_u64;
use crate::{BeginString, FieldSpan, MessageRef, SessionRejectReason, UtcTimestamp};

mod fields;
mod messages;
#[cfg(test)]
mod tests;

use fields::{Domain, FieldDef, FIELDS};
use messages::{msg_index, Group, Item, HEADER, MSGS, N_MSGS};

/// Version bits used by the tables.
const V42: u8 = 1;
const V44: u8 = 2;
const V50: u8 = 4;
const V44UP: u8 = V44 | V50;
const ALL: u8 = V42 | V44 | V50;

/// Tags below this are looked up directly in a table; no dictionary tag is above it.
const TAG_LIMIT: usize = 1536;
/// Words of the per-message bit sets over field indices.
const WORDS: usize = 6;
/// The first and last user-defined tags accepted without a dictionary entry.
const USER_DEFINED: std::ops::RangeInclusive<u32> = 5000..=49_999;

/// The data type of a field, as named by the FIX specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Signed integer.
    Int,
    /// Non-negative integer: a length in bytes.
    Length,
    /// Length of the data field with the given tag, which must follow immediately.
    DataLength(u32),
    /// Non-negative integer: a sequence number.
    SeqNum,
    /// Non-negative integer: the number of entries of a repeating group.
    NumInGroup,
    /// Integer 1..=31.
    DayOfMonth,
    /// Decimal number: optional `-`, digits, optional `.` and digits; no exponent.
    Float,
    /// A quantity (decimal).
    Qty,
    /// A price (decimal).
    Price,
    /// A price offset (decimal).
    PriceOffset,
    /// An amount (decimal).
    Amt,
    /// A percentage (decimal).
    Percentage,
    /// One character.
    Char,
    /// `Y` or `N`.
    Boolean,
    /// Free text (no SOH).
    String,
    /// Space-separated single characters.
    MultipleCharValue,
    /// Space-separated strings.
    MultipleStringValue,
    /// Currency code: ISO 4217's three letters, or the longer codes crypto venues use (3–8
    /// uppercase letters or digits).
    Currency,
    /// Market identifier.
    Exchange,
    /// ISO 3166 country code (two uppercase letters).
    Country,
    /// `YYYYMMDD-HH:MM:SS[.sss[sss[sss]]]`.
    UtcTimestamp,
    /// `HH:MM:SS[.sss[sss[sss]]]`.
    UtcTimeOnly,
    /// `YYYYMMDD`.
    UtcDateOnly,
    /// `YYYYMMDD`, local to the market.
    LocalMktDate,
    /// `YYYYMM`, `YYYYMMDD` or `YYYYMMwN`.
    MonthYear,
    /// Raw bytes (may hold SOH), announced by the length field with the given tag.
    Data(u32),
}

/// Why a message fails validation: the reason, and the tag it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// SessionRejectReason(373).
    pub reason: SessionRejectReason,
    /// RefTagID(371), when the problem is about one tag.
    pub ref_tag: Option<u32>,
}

impl Rejection {
    #[inline]
    fn at(reason: SessionRejectReason, tag: u32) -> Self {
        Self {
            reason,
            ref_tag: Some(tag),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ref_tag {
            Some(t) => write!(f, "{} ({t})", self.reason.description()),
            None => f.write_str(self.reason.description()),
        }
    }
}

impl std::error::Error for Rejection {}

/// A set of field indices (positions in `FIELDS`).
#[derive(Debug, Clone, Copy)]
struct Bits([u64; WORDS]);

impl Bits {
    const EMPTY: Bits = Bits([0; WORDS]);

    const fn with(self, i: usize) -> Bits {
        let mut w = self.0;
        w[i / 64] |= 1 << (i % 64);
        Bits(w)
    }

    #[inline]
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    #[inline]
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// True if some index of `self` is not in `other`.
    #[inline]
    fn any_not_in(&self, other: &Bits) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & !b != 0)
    }
}

/// Which fields a message (or the header) allows and requires, for one version.
#[derive(Debug, Clone, Copy)]
struct MsgBits {
    allowed: Bits,
    required: Bits,
}

impl MsgBits {
    const EMPTY: MsgBits = MsgBits {
        allowed: Bits::EMPTY,
        required: Bits::EMPTY,
    };
}

const _: () = assert!(FIELDS.len() <= WORDS * 64, "grow WORDS");
const _: () = assert!(MSGS.len() == N_MSGS);

/// Tag → 1 + index in `FIELDS` for the entries of version `v` (0: not defined).
const fn build_index(v: u8) -> [u16; TAG_LIMIT] {
    let mut t = [0u16; TAG_LIMIT];
    let mut i = 0;
    while i < FIELDS.len() {
        let f = &FIELDS[i];
        if f.versions & v != 0 {
            assert!((f.tag as usize) < TAG_LIMIT, "tag above TAG_LIMIT");
            assert!(t[f.tag as usize] == 0, "tag defined twice for a version");
            t[f.tag as usize] = (i + 1) as u16;
        }
        if i > 0 {
            assert!(FIELDS[i - 1].tag <= f.tag, "FIELDS must be sorted by tag");
        }
        i += 1;
    }
    t
}

const fn lookup(index: &[u16; TAG_LIMIT], tag: u32) -> usize {
    let e = index[tag as usize];
    assert!(e != 0, "a message uses a field its version does not define");
    (e - 1) as usize
}

/// Checks at compile time that a group's fields are defined for the version, that it has a
/// delimiter field, and that its entries fit the 64-bit "seen" mask.
const fn check_group(g: &Group, v: u8, index: &[u16; TAG_LIMIT]) {
    assert!(g.items.len() <= 64);
    assert!(
        matches!(g.items[0], Item::Field { .. }),
        "group without delimiter"
    );
    lookup(index, g.count_tag);
    let mut i = 0;
    while i < g.items.len() {
        match g.items[i] {
            Item::Field { tag, present, .. } => {
                if present & v != 0 {
                    lookup(index, tag);
                }
            }
            Item::Group { group, present, .. } => {
                if present & v != 0 {
                    check_group(group, v, index);
                }
            }
            Item::Component { .. } => panic!("components inside groups are not supported"),
        }
        i += 1;
    }
}

const fn add_items(
    mut b: MsgBits,
    items: &[Item],
    v: u8,
    in_required: bool,
    index: &[u16; TAG_LIMIT],
) -> MsgBits {
    let mut i = 0;
    while i < items.len() {
        match items[i] {
            Item::Field {
                tag,
                present,
                required,
            } => {
                if present & v != 0 {
                    let fi = lookup(index, tag);
                    b.allowed = b.allowed.with(fi);
                    if in_required && required & v != 0 {
                        b.required = b.required.with(fi);
                    }
                }
            }
            Item::Group {
                group,
                present,
                required,
            } => {
                if present & v != 0 {
                    check_group(group, v, index);
                    let fi = lookup(index, group.count_tag);
                    b.allowed = b.allowed.with(fi);
                    if in_required && required & v != 0 {
                        b.required = b.required.with(fi);
                    }
                }
            }
            Item::Component {
                items,
                present,
                required,
            } => {
                if present & v != 0 {
                    b = add_items(b, items, v, in_required && required & v != 0, index);
                }
            }
        }
        i += 1;
    }
    b
}

const fn build_msgs(v: u8, index: &[u16; TAG_LIMIT]) -> [MsgBits; N_MSGS] {
    let mut out = [MsgBits::EMPTY; N_MSGS];
    let mut i = 0;
    while i < N_MSGS {
        if MSGS[i].versions & v != 0 {
            out[i] = add_items(MsgBits::EMPTY, MSGS[i].items, v, true, index);
        }
        i += 1;
    }
    out
}

const INDEX_42: [u16; TAG_LIMIT] = build_index(V42);
const INDEX_44: [u16; TAG_LIMIT] = build_index(V44);
const INDEX_50: [u16; TAG_LIMIT] = build_index(V50);
const MSGS_42: [MsgBits; N_MSGS] = build_msgs(V42, &INDEX_42);
const MSGS_44: [MsgBits; N_MSGS] = build_msgs(V44, &INDEX_44);
const MSGS_50: [MsgBits; N_MSGS] = build_msgs(V50, &INDEX_50);

/// The messages and fields of one FIX version.
pub struct Dictionary {
    /// The version.
    pub begin_string: BeginString,
    version: u8,
    index: &'static [u16; TAG_LIMIT],
    header: MsgBits,
    msgs: &'static [MsgBits; N_MSGS],
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("begin_string", &self.begin_string)
            .finish_non_exhaustive()
    }
}

static D42: Dictionary = Dictionary {
    begin_string: BeginString::Fix42,
    version: V42,
    index: &INDEX_42,
    header: add_items(MsgBits::EMPTY, HEADER, V42, true, &INDEX_42),
    msgs: &MSGS_42,
};
static D44: Dictionary = Dictionary {
    begin_string: BeginString::Fix44,
    version: V44,
    index: &INDEX_44,
    header: add_items(MsgBits::EMPTY, HEADER, V44, true, &INDEX_44),
    msgs: &MSGS_44,
};
static D50: Dictionary = Dictionary {
    begin_string: BeginString::Fixt11,
    version: V50,
    index: &INDEX_50,
    header: add_items(MsgBits::EMPTY, HEADER, V50, true, &INDEX_50),
    msgs: &MSGS_50,
};

/// Where the scan is: header fields may only come before the body, the trailer only at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    Header,
    Body,
    Trailer,
}

impl Dictionary {
    /// The dictionary for a BeginString.
    pub fn for_version(v: BeginString) -> &'static Dictionary {
        match v {
            BeginString::Fix42 => &D42,
            BeginString::Fix44 => &D44,
            BeginString::Fixt11 => &D50,
        }
    }

    /// True for session-level (admin) message types: 0, 1, 2, 3, 4, 5, A.
    pub fn is_admin(msg_type: &[u8]) -> bool {
        matches!(msg_type, b"0" | b"1" | b"2" | b"3" | b"4" | b"5" | b"A")
    }

    /// True if the message type is defined in this dictionary (and so can be validated).
    pub fn knows_msg_type(&self, msg_type: &[u8]) -> bool {
        msg_index(msg_type).is_some_and(|i| MSGS[i].versions & self.version != 0)
    }

    /// True if `msg_type` is a MsgType of this version's specification, supported here or not.
    /// A message whose type is in the specification but not [known](Self::knows_msg_type) calls
    /// for a BusinessMessageReject (BusinessRejectReason 3, unsupported message type) rather
    /// than the session Reject with reason 11 that [`validate`](Self::validate) reports.
    pub fn msg_type_in_spec(&self, msg_type: &[u8]) -> bool {
        messages::in_spec(msg_type, self.version)
    }

    /// The message types of this dictionary, session messages first.
    pub fn msg_types(&self) -> impl Iterator<Item = &'static [u8]> + '_ {
        MSGS.iter()
            .filter(|m| m.versions & self.version != 0)
            .map(|m| m.msg_type)
    }

    /// The name of a message type of this dictionary, e.g. `NewOrderSingle` for `D`.
    pub fn msg_name(&self, msg_type: &[u8]) -> Option<&'static str> {
        msg_index(msg_type)
            .filter(|&i| MSGS[i].versions & self.version != 0)
            .map(|i| MSGS[i].name)
    }

    #[inline]
    fn field_index(&self, tag: u32) -> Option<usize> {
        match self.index.get(tag as usize) {
            Some(&e) if e != 0 => Some(usize::from(e - 1)),
            _ => None,
        }
    }

    #[inline]
    fn def(&self, tag: u32) -> Option<&'static FieldDef> {
        self.field_index(tag).map(|i| &FIELDS[i])
    }

    /// The name of a field of this version, e.g. `ClOrdID` for 11.
    pub fn field_name(&self, tag: u32) -> Option<&'static str> {
        self.def(tag).map(|d| d.name)
    }

    /// The data type of a field of this version.
    pub fn field_type(&self, tag: u32) -> Option<FieldType> {
        self.def(tag).map(|d| d.ty)
    }

    /// Validates a decoded message: structure (8, 9, 35 first, 10 last, header before body,
    /// trailer at the end), MsgType, tags defined for the version and the message type, values
    /// (present, well formed, in their enumeration), repeated tags, repeating groups and required
    /// fields. Returns the first problem found.
    pub fn validate(&self, msg: &MessageRef<'_>) -> Result<(), Rejection> {
        use SessionRejectReason as R;
        let spans = msg.spans();
        let bytes = msg.bytes();
        let n = spans.len();
        for (pos, tag) in [(0, 8), (1, 9), (2, 35)] {
            if spans.get(pos).map(|s| s.tag) != Some(tag) {
                return Err(misplaced(spans, tag));
            }
        }
        if n < 4 || spans[n - 1].tag != 10 {
            return Err(misplaced(spans, 10));
        }
        let value = |i: usize| &bytes[spans[i].start as usize..spans[i].end as usize];

        // The positional fields' values.
        match value(0) {
            b"" => return Err(Rejection::at(R::TagSpecifiedWithoutValue, 8)),
            v if v != self.begin_string.as_bytes() => {
                return Err(Rejection::at(R::ValueIsIncorrect, 8))
            }
            _ => {}
        }
        check_unsigned(value(1)).map_err(|r| Rejection::at(r, 9))?;
        let msg_type = value(2);
        if msg_type.is_empty() {
            return Err(Rejection::at(R::TagSpecifiedWithoutValue, 35));
        }
        let Some(mi) = msg_index(msg_type).filter(|&i| MSGS[i].versions & self.version != 0) else {
            return Err(Rejection::at(R::InvalidMsgType, 35));
        };
        match value(n - 1) {
            b"" => return Err(Rejection::at(R::TagSpecifiedWithoutValue, 10)),
            v if v.len() != 3 || !v.iter().all(u8::is_ascii_digit) => {
                return Err(Rejection::at(R::IncorrectDataFormat, 10))
            }
            _ => {}
        }

        let spec = &MSGS[mi];
        let body = &self.msgs[mi];
        let mut seen = Bits::EMPTY;
        for t in [8, 9, 35] {
            if let Some(fi) = self.field_index(t) {
                seen.set(fi);
            }
        }
        let last = n - 1;
        let mut zone = Zone::Header;
        let mut i = 3;
        while i < last {
            let tag = spans[i].tag;
            let Some(fi) = self.field_index(tag) else {
                if USER_DEFINED.contains(&tag) {
                    // User-defined fields do not move the zone: some firms put them in the header.
                    if zone == Zone::Trailer {
                        return Err(Rejection::at(R::TagSpecifiedOutOfRequiredOrder, tag));
                    }
                    i += 1;
                    continue;
                }
                return Err(Rejection::at(R::InvalidTagNumber, tag));
            };
            let in_header = self.header.allowed.has(fi);
            if in_header {
                if zone != Zone::Header {
                    return Err(Rejection::at(R::TagSpecifiedOutOfRequiredOrder, tag));
                }
            } else if body.allowed.has(fi) {
                if zone == Zone::Trailer {
                    return Err(Rejection::at(R::TagSpecifiedOutOfRequiredOrder, tag));
                }
                zone = Zone::Body;
            } else if tag == 93 || tag == 89 {
                // 93 must come before 89 (and each right before the next: see data pairing).
                if tag == 93 && self.field_index(89).is_some_and(|s| seen.has(s)) {
                    return Err(Rejection::at(R::TagSpecifiedOutOfRequiredOrder, tag));
                }
                zone = Zone::Trailer;
            } else if tag == 10 {
                return Err(Rejection::at(R::TagSpecifiedOutOfRequiredOrder, tag));
            } else {
                return Err(Rejection::at(R::TagNotDefinedForMessageType, tag));
            }
            if seen.has(fi) {
                return Err(Rejection::at(R::TagAppearsMoreThanOnce, tag));
            }
            seen.set(fi);
            let def = &FIELDS[fi];
            check_field(def, spans, bytes, i)?;
            if def.ty == FieldType::NumInGroup {
                let items = if in_header { HEADER } else { spec.items };
                if let Some(g) = find_group(items, tag, self.version) {
                    i = self.scan_group(spans, bytes, i, g, last)?;
                    continue;
                }
            }
            i += 1;
        }

        if self.header.required.any_not_in(&seen) {
            if let Some(t) = self.first_missing(HEADER, &seen, true) {
                return Err(Rejection::at(R::RequiredTagMissing, t));
            }
        }
        if body.required.any_not_in(&seen) {
            if let Some(t) = self.first_missing(spec.items, &seen, true) {
                return Err(Rejection::at(R::RequiredTagMissing, t));
            }
        }
        Ok(())
    }

    /// Checks the entries of the repeating group whose NumInGroup field is at `at`; returns the
    /// index of the first field after the group.
    fn scan_group(
        &self,
        spans: &[FieldSpan],
        bytes: &[u8],
        at: usize,
        g: &Group,
        end: usize,
    ) -> Result<usize, Rejection> {
        use SessionRejectReason as R;
        let count_value = &bytes[spans[at].start as usize..spans[at].end as usize];
        let count = parse_u64(count_value)
            .ok_or_else(|| Rejection::at(R::IncorrectNumInGroupCount, g.count_tag))?;
        let v = self.version;
        let mut entries: u64 = 0;
        let mut last_pos = 0usize;
        let mut entry_seen = 0u64;
        let mut j = at + 1;
        while j < end {
            let tag = spans[j].tag;
            let Some(pos) = g.position(tag, v) else {
                if entries > 0 && USER_DEFINED.contains(&tag) {
                    // User-defined fields (and groups of them) may sit in an entry, unchecked.
                    j += 1;
                    continue;
                }
                break;
            };
            if pos == 0 {
                if entries > 0 {
                    self.check_entry(g, entry_seen)?;
                }
                entries += 1;
                entry_seen = 1;
                last_pos = 0;
            } else {
                // Before the first delimiter, or not after the previous field of the entry.
                if entries == 0 || (pos <= last_pos && !g.any_order) {
                    return Err(Rejection::at(R::RepeatingGroupFieldsOutOfOrder, tag));
                }
                if entry_seen & (1 << pos) != 0 {
                    return Err(Rejection::at(R::TagAppearsMoreThanOnce, tag));
                }
                last_pos = pos;
                entry_seen |= 1 << pos;
            }
            if let Some(def) = self.def(tag) {
                check_field(def, spans, bytes, j)?;
            }
            if let Item::Group { group, .. } = g.items[pos] {
                j = self.scan_group(spans, bytes, j, group, end)?;
                continue;
            }
            j += 1;
        }
        if entries > 0 {
            self.check_entry(g, entry_seen)?;
        }
        if entries != count {
            return Err(Rejection::at(R::IncorrectNumInGroupCount, g.count_tag));
        }
        Ok(j)
    }

    /// Required fields of one group entry.
    fn check_entry(&self, g: &Group, entry_seen: u64) -> Result<(), Rejection> {
        for (pos, it) in g.items.iter().enumerate() {
            let (tag, present, required) = match *it {
                Item::Field {
                    tag,
                    present,
                    required,
                } => (tag, present, required),
                Item::Group {
                    group,
                    present,
                    required,
                } => (group.count_tag, present, required),
                Item::Component { .. } => continue,
            };
            if present & required & self.version != 0 && entry_seen & (1 << pos) == 0 {
                return Err(Rejection::at(SessionRejectReason::RequiredTagMissing, tag));
            }
        }
        Ok(())
    }

    /// The first required field of `items` (in dictionary order) not in `seen`.
    fn first_missing(&self, items: &[Item], seen: &Bits, in_required: bool) -> Option<u32> {
        let v = self.version;
        for it in items {
            let (tag, present, required) = match *it {
                Item::Field {
                    tag,
                    present,
                    required,
                } => (tag, present, required),
                Item::Group {
                    group,
                    present,
                    required,
                } => (group.count_tag, present, required),
                Item::Component {
                    items,
                    present,
                    required,
                } => {
                    if present & v != 0 {
                        let r = in_required && required & v != 0;
                        if let Some(t) = self.first_missing(items, seen, r) {
                            return Some(t);
                        }
                    }
                    continue;
                }
            };
            if in_required && present & required & v != 0 {
                if let Some(fi) = self.field_index(tag) {
                    if !seen.has(fi) {
                        return Some(tag);
                    }
                }
            }
        }
        None
    }
}

/// The group announced by `count_tag` among `items` (components included).
fn find_group(items: &[Item], count_tag: u32, v: u8) -> Option<&'static Group> {
    for it in items {
        match *it {
            Item::Group { group, present, .. }
                if group.count_tag == count_tag && present & v != 0 =>
            {
                return Some(group)
            }
            Item::Component { items, present, .. } if present & v != 0 => {
                if let Some(g) = find_group(items, count_tag, v) {
                    return Some(g);
                }
            }
            _ => {}
        }
    }
    None
}

/// A positional field (8, 9, 35, 10) is not where it must be: out of order if it is elsewhere,
/// missing if it is nowhere.
fn misplaced(spans: &[FieldSpan], tag: u32) -> Rejection {
    let reason = if spans.iter().any(|s| s.tag == tag) {
        SessionRejectReason::TagSpecifiedOutOfRequiredOrder
    } else {
        SessionRejectReason::RequiredTagMissing
    };
    Rejection::at(reason, tag)
}

/// Checks the value of the field at `i`, and for data fields their length field.
#[inline]
fn check_field(
    def: &FieldDef,
    spans: &[FieldSpan],
    bytes: &[u8],
    i: usize,
) -> Result<(), Rejection> {
    use SessionRejectReason as R;
    let value = &bytes[spans[i].start as usize..spans[i].end as usize];
    check_value(def, value).map_err(|r| Rejection::at(r, def.tag))?;
    match def.ty {
        FieldType::DataLength(data_tag) if spans.get(i + 1).map(|s| s.tag) != Some(data_tag) => {
            return Err(Rejection::at(R::RequiredTagMissing, data_tag));
        }
        FieldType::Data(len_tag) => {
            let prev = i.checked_sub(1).map(|p| spans[p]);
            let Some(prev) = prev.filter(|p| p.tag == len_tag) else {
                return Err(Rejection::at(R::RequiredTagMissing, len_tag));
            };
            let declared = parse_u64(&bytes[prev.start as usize..prev.end as usize]);
            if declared != Some(value.len() as u64) {
                return Err(Rejection::at(R::IncorrectDataFormat, len_tag));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks one value against its field's type and enumeration.
#[inline]
fn check_value(def: &FieldDef, v: &[u8]) -> Result<(), SessionRejectReason> {
    use SessionRejectReason as R;
    if v.is_empty() {
        return Err(R::TagSpecifiedWithoutValue);
    }
    let ok = match def.ty {
        FieldType::Int => is_int(v),
        FieldType::Length | FieldType::DataLength(_) | FieldType::SeqNum => is_digits(v),
        // A count that is not a number is a wrong count.
        FieldType::NumInGroup => {
            if !is_digits(v) {
                return Err(R::IncorrectNumInGroupCount);
            }
            true
        }
        FieldType::DayOfMonth => is_digits(v) && matches!(parse_u64(v), Some(1..=31)),
        FieldType::Float
        | FieldType::Qty
        | FieldType::Price
        | FieldType::PriceOffset
        | FieldType::Amt
        | FieldType::Percentage => is_decimal(v),
        FieldType::Char => v.len() == 1,
        FieldType::Boolean => v == b"Y" || v == b"N",
        FieldType::String
        | FieldType::MultipleStringValue
        | FieldType::Exchange
        | FieldType::Data(_) => true,
        FieldType::MultipleCharValue => is_multiple_char(v),
        FieldType::Currency => {
            (3..=8).contains(&v.len())
                && v.iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        }
        FieldType::Country => v.len() == 2 && v.iter().all(u8::is_ascii_uppercase),
        FieldType::UtcTimestamp => is_timestamp(v),
        FieldType::UtcTimeOnly => is_time_only(v),
        FieldType::UtcDateOnly | FieldType::LocalMktDate => is_date(v),
        FieldType::MonthYear => is_month_year(v),
    };
    if !ok {
        return Err(R::IncorrectDataFormat);
    }
    match def.domain {
        Domain::Any => Ok(()),
        Domain::Chars(set) => match *v {
            [c] if c < 128 && set & (1u128 << c) != 0 => Ok(()),
            _ => Err(R::ValueIsIncorrect),
        },
        Domain::Ints(set) => match parse_i64_lenient(v) {
            Some(n) if (0..128).contains(&n) && set & (1u128 << n) != 0 => Ok(()),
            _ => Err(R::ValueIsIncorrect),
        },
    }
}

/// Validates an unsigned length field's value (for BodyLength).
fn check_unsigned(v: &[u8]) -> Result<(), SessionRejectReason> {
    if v.is_empty() {
        Err(SessionRejectReason::TagSpecifiedWithoutValue)
    } else if !is_digits(v) {
        Err(SessionRejectReason::IncorrectDataFormat)
    } else {
        Ok(())
    }
}

#[inline]
fn is_digits(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(u8::is_ascii_digit)
}

#[inline]
fn is_int(v: &[u8]) -> bool {
    match v {
        [b'-', rest @ ..] => is_digits(rest),
        _ => is_digits(v),
    }
}

/// An integer with leading zeros allowed (FIX permits them), saturating on overflow.
fn parse_i64_lenient(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, v),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    Some(if neg { -n } else { n })
}

/// `-`? digits* (`.` digits*)? with at least one digit; no exponent, no `+`.
#[inline]
fn is_decimal(v: &[u8]) -> bool {
    let v = match v {
        [b'-', rest @ ..] => rest,
        _ => v,
    };
    let mut digits = 0usize;
    let mut dot = false;
    for &b in v {
        if b.is_ascii_digit() {
            digits += 1;
        } else if b == b'.' && !dot {
            dot = true;
        } else {
            return false;
        }
    }
    digits > 0
}

fn is_multiple_char(v: &[u8]) -> bool {
    // "A B C": single characters separated by single spaces.
    v.len() % 2 == 1
        && v.iter()
            .enumerate()
            .all(|(i, &b)| if i % 2 == 0 { b != b' ' } else { b == b' ' })
}

fn two_digits(v: &[u8]) -> Option<u32> {
    match *v {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

/// A well-formed UTCTimestamp. `UtcTimestamp::parse` holds nanoseconds in an `i64` and so
/// overflows outside 1678..=2261; other years are checked with a year of the same leap-ness, as
/// the format does not depend on the year.
fn is_timestamp(v: &[u8]) -> bool {
    let year = match v.get(..4) {
        Some(y) if y.iter().all(u8::is_ascii_digit) => {
            y.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))
        }
        _ => return false,
    };
    if (1678..=2261).contains(&year) {
        return UtcTimestamp::parse(v).is_some();
    }
    if v.len() > 27 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let mut t = [0u8; 27];
    t[..v.len()].copy_from_slice(v);
    t[..4].copy_from_slice(if leap { b"2000" } else { b"2001" });
    UtcTimestamp::parse(&t[..v.len()]).is_some()
}

fn is_date(v: &[u8]) -> bool {
    if v.len() != 8 || !v.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Reuse the timestamp parser's calendar rules.
    let mut ts = [0u8; 17];
    ts[..8].copy_from_slice(v);
    ts[8..].copy_from_slice(b"-00:00:00");
    is_timestamp(&ts)
}

fn is_time_only(v: &[u8]) -> bool {
    if v.len() < 8 || v.len() > 18 {
        return false;
    }
    let mut ts = [0u8; 27];
    ts[..9].copy_from_slice(b"20000101-");
    ts[9..9 + v.len()].copy_from_slice(v);
    UtcTimestamp::parse(&ts[..9 + v.len()]).is_some()
}

fn is_month_year(v: &[u8]) -> bool {
    if v.len() < 6 || !v[..6].iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !matches!(two_digits(&v[4..6]), Some(1..=12)) {
        return false;
    }
    match &v[6..] {
        [] => true,
        [b'w', n] => (b'1'..=b'5').contains(n),
        [_, _] => is_date(v),
        _ => false,
    }
}
