//! Reading a request's `params` with the dialect's rules and error codes.
//!
//! Every parameter is read by name against the method's list; a name the method does not know
//! is -1104, a duplicated name -1101. Values keep their raw JSON text (for the signature) next
//! to their classified form. Types are read leniently where clients in the field differ and the
//! meaning is unambiguous: decimals as strings or JSON numbers, integers as JSON numbers or
//! digit strings, booleans as `true`/`false` or their strings.

use std::borrow::Cow;

use super::decimal::{Decimal, DecimalError};
use super::error::WsError;
use super::json::{Member, Scalar};

/// Most parameters a request may carry; more is -1101 before any other work.
pub(crate) const MAX_PARAMS: usize = 32;

/// The dialect's legal range of decimal parameters.
pub(crate) const DECIMAL_RANGE: &str = r"^([0-9]{1,20})(\.[0-9]{1,20})?$";
/// Legal range of symbols.
pub(crate) const SYMBOL_RANGE: &str = "^[A-Z0-9-_.]{1,32}$";
/// Legal range of client order ids.
pub(crate) const CLIENT_ID_RANGE: &str = r"^[\.A-Z\:/a-z0-9_-]{1,36}$";

/// One parameter: its name and classified value (which keeps a number's raw text).
pub(crate) struct Param<'a> {
    pub name: Cow<'a, str>,
    pub value: Scalar<'a>,
}

/// A request's parameters, in the order sent, names unique.
#[derive(Default)]
pub(crate) struct Params<'a> {
    items: Vec<Param<'a>>,
}

/// A parameter as found: absent, empty (`""` or `null`), or a value.
enum Found<T> {
    Absent,
    Empty,
    Value(T),
}

impl<'a> Params<'a> {
    /// The parameters of one order of a list: the shared `names` as they are, and each
    /// `(prefixed, plain)` renamed to `plain` (e.g. `abovePrice` read as `price`).
    pub(crate) fn leg(&self, names: &[&str], renamed: &[(&str, &str)]) -> Params<'a> {
        let mut items = Vec::new();
        for p in &self.items {
            if names.contains(&&*p.name) {
                items.push(Param {
                    name: p.name.clone(),
                    value: p.value.clone(),
                });
            } else if let Some((_, plain)) = renamed.iter().find(|(pre, _)| *pre == p.name) {
                items.push(Param {
                    name: Cow::Owned((*plain).to_owned()),
                    value: p.value.clone(),
                });
            }
        }
        Params { items }
    }

    /// Takes the members of the `params` object; a name sent twice is -1101.
    pub(crate) fn from_members(members: Vec<Member<'a>>) -> Result<Self, WsError> {
        if members.len() > MAX_PARAMS {
            return Err(WsError::bad_request(
                super::error::codes::TOO_MANY_PARAMETERS,
                "Too many parameters sent for this endpoint.",
            ));
        }
        let mut items: Vec<Param<'a>> = Vec::with_capacity(members.len());
        for m in members {
            if items.iter().any(|p| p.name == m.name) {
                return Err(WsError::duplicate_param());
            }
            items.push(Param {
                value: Scalar::of(m.value),
                name: m.name,
            });
        }
        Ok(Params { items })
    }

    /// All parameters, in the order sent.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Param<'a>> {
        self.items.iter()
    }

    /// Number of parameters.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// True if the parameter was sent (even empty).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Param<'a>> {
        self.items.iter().find(|p| p.name == name)
    }

    fn find_str(&self, name: &str) -> Result<Found<&str>, WsError> {
        Ok(match self.get(name).map(|p| &p.value) {
            None => Found::Absent,
            Some(Scalar::Null) => Found::Empty,
            Some(Scalar::Str(s)) if s.is_empty() => Found::Empty,
            Some(Scalar::Str(s)) => Found::Value(s),
            Some(_) => return Err(WsError::invalid_value(name)),
        })
    }

    /// An optional string: `""` or `null` is -1105, another JSON type -1130.
    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<&str>, WsError> {
        match self.find_str(name)? {
            Found::Absent => Ok(None),
            Found::Empty => Err(WsError::empty(name)),
            Found::Value(s) => Ok(Some(s)),
        }
    }

    /// A mandatory string: absent, empty, `null` or not a string is -1102.
    pub(crate) fn req_str(&self, name: &str) -> Result<&str, WsError> {
        match self.find_str(name) {
            Ok(Found::Value(s)) => Ok(s),
            _ => Err(WsError::mandatory(name)),
        }
    }

    /// An optional enumeration value; `invalid` is the error for a value outside the set.
    pub(crate) fn opt_enum<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        invalid: impl FnOnce() -> WsError,
    ) -> Result<Option<T>, WsError> {
        match self.opt_str(name) {
            Ok(None) => Ok(None),
            Ok(Some(s)) => parse(s).map(Some).ok_or_else(invalid),
            Err(e) if e.code() == super::error::codes::PARAM_EMPTY => Err(e),
            Err(_) => Err(invalid()),
        }
    }

    /// A mandatory enumeration value: absent or empty is -1102, outside the set `invalid`.
    pub(crate) fn req_enum<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        invalid: impl FnOnce() -> WsError,
    ) -> Result<T, WsError> {
        match self.find_str(name) {
            Ok(Found::Absent | Found::Empty) => Err(WsError::mandatory(name)),
            Ok(Found::Value(s)) => parse(s).ok_or_else(invalid),
            Err(_) => Err(invalid()),
        }
    }

    fn find_decimal(&self, name: &str) -> Result<Found<Decimal>, WsError> {
        let text = match self.get(name).map(|p| &p.value) {
            None => return Ok(Found::Absent),
            Some(Scalar::Null) => return Ok(Found::Empty),
            Some(Scalar::Str(s)) if s.is_empty() => return Ok(Found::Empty),
            Some(Scalar::Str(s)) => &**s,
            Some(Scalar::Num(t)) => t,
            Some(_) => return Err(WsError::illegal_chars(name, DECIMAL_RANGE)),
        };
        match Decimal::parse(text) {
            Ok(d) => Ok(Found::Value(d)),
            Err(DecimalError::Overflow) => Err(WsError::overflow(name)),
            Err(_) => Err(WsError::illegal_chars(name, DECIMAL_RANGE)),
        }
    }

    /// An optional decimal (string or JSON number): malformed is -1100, too long -1108.
    pub(crate) fn opt_decimal(&self, name: &str) -> Result<Option<Decimal>, WsError> {
        match self.find_decimal(name)? {
            Found::Absent => Ok(None),
            Found::Empty => Err(WsError::empty(name)),
            Found::Value(d) => Ok(Some(d)),
        }
    }

    /// A mandatory decimal: absent or empty is -1102, malformed -1100.
    pub(crate) fn req_decimal(&self, name: &str) -> Result<Decimal, WsError> {
        match self.find_decimal(name)? {
            Found::Absent | Found::Empty => Err(WsError::mandatory(name)),
            Found::Value(d) => Ok(d),
        }
    }

    /// The digits of an integer parameter (JSON number or digit string), or why not.
    fn find_digits(&self, name: &str) -> Result<Found<&str>, WsError> {
        let text = match self.get(name).map(|p| &p.value) {
            None => return Ok(Found::Absent),
            Some(Scalar::Null) => return Ok(Found::Empty),
            Some(Scalar::Str(s)) if s.is_empty() => return Ok(Found::Empty),
            Some(Scalar::Str(s)) => &**s,
            Some(Scalar::Num(t)) => t,
            Some(_) => return Err(WsError::illegal_chars(name, "^[0-9]{1,20}$")),
        };
        if text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WsError::illegal_chars(name, "^[0-9]{1,20}$"));
        }
        Ok(Found::Value(text))
    }

    /// An optional unsigned integer no larger than `max`.
    pub(crate) fn opt_u64(&self, name: &str, max: u64) -> Result<Option<u64>, WsError> {
        match self.find_digits(name)? {
            Found::Absent => Ok(None),
            Found::Empty => Err(WsError::empty(name)),
            Found::Value(t) => match t.parse::<u64>() {
                Ok(v) if v <= max => Ok(Some(v)),
                _ => Err(WsError::overflow(name)),
            },
        }
    }

    /// The digits of a mandatory integer parameter: absent, empty or malformed is -1102.
    pub(crate) fn req_digits(&self, name: &str) -> Result<&str, WsError> {
        match self.find_digits(name) {
            Ok(Found::Value(t)) => Ok(t),
            _ => Err(WsError::mandatory(name)),
        }
    }

    /// An optional boolean: `true`/`false`, as JSON or as strings.
    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, WsError> {
        match self.get(name).map(|p| &p.value) {
            None => Ok(None),
            Some(Scalar::Bool(b)) => Ok(Some(*b)),
            Some(Scalar::Str(s)) if s == "true" => Ok(Some(true)),
            Some(Scalar::Str(s)) if s == "false" => Ok(Some(false)),
            Some(Scalar::Null) => Err(WsError::empty(name)),
            Some(Scalar::Str(s)) if s.is_empty() => Err(WsError::empty(name)),
            Some(_) => Err(WsError::illegal_chars(name, "true, false")),
        }
    }

    /// An optional client order id: `""` is `empty`, outside `^[.A-Z:/a-z0-9_-]{1,36}$` -1100.
    pub(crate) fn opt_client_id(
        &self,
        name: &str,
        empty: impl FnOnce() -> WsError,
    ) -> Result<Option<String>, WsError> {
        match self.find_str(name) {
            Ok(Found::Absent) => Ok(None),
            Ok(Found::Empty) => Err(empty()),
            Ok(Found::Value(s)) if is_client_id(s) => Ok(Some(s.to_owned())),
            _ => Err(WsError::illegal_chars(name, CLIENT_ID_RANGE)),
        }
    }
}

/// `^[.A-Z:/a-z0-9_-]{1,36}$`, the dialect's client order id.
pub(crate) fn is_client_id(s: &str) -> bool {
    (1..=36).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-'))
}

/// `^[A-Z0-9-_.]{1,32}$`: the dialect's symbols (upper case), and ours (options such as
/// `BTC-261225-100000-C`).
pub(crate) fn is_symbol(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// An API key's format: 1 to 64 characters of `A-Z a-z 0-9 _ -` (the key ids of the vault and
/// the dialect's 64-character keys).
pub(crate) fn is_api_key(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
