//! JSON in and out without floats.
//!
//! Requests are split into object members whose values stay raw JSON text
//! ([`serde_json::value::RawValue`]): a number is kept exactly as written (the signature covers
//! its text, and a price must never pass through `f64`), a request `id` is echoed byte for byte.
//! Responses are written by hand into a `String`: the shapes are fixed, and writing them
//! directly costs one allocation per frame.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A string that borrows from the input when it has no escapes.
pub(crate) struct CowStr<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One member of a JSON object: its name (unescaped) and its value as raw JSON text.
pub(crate) struct Member<'a> {
    pub name: Cow<'a, str>,
    pub value: &'a RawValue,
}

/// The members of a JSON object in the order sent, duplicates included (the caller refuses
/// them: a duplicated name makes a request ambiguous, and a signature over it meaningless).
pub(crate) struct RawObject<'a>(pub Vec<Member<'a>>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8).min(32));
                while let Some(CowStr(name)) = map.next_key::<CowStr<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push(Member { name, value });
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a text is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectError {
    /// Not valid JSON at all.
    Syntax,
    /// Valid JSON, but not an object.
    NotObject,
}

/// Splits a JSON object into its members.
pub(crate) fn parse_object(text: &str) -> Result<RawObject<'_>, ObjectError> {
    serde_json::from_str::<RawObject<'_>>(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ObjectError::NotObject,
        _ => ObjectError::Syntax,
    })
}

/// A JSON value seen as the scalar the dialect's parameters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A string, unescaped.
    Str(Cow<'a, str>),
    /// A number, as written.
    Num(&'a str),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An array or object, as written.
    Composite(&'a str),
}

impl<'a> Scalar<'a> {
    /// Classifies a raw value by its first byte (a `RawValue` is always valid JSON).
    pub(crate) fn of(raw: &'a RawValue) -> Scalar<'a> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => match serde_json::from_str::<CowStr<'a>>(text) {
                Ok(CowStr(s)) => Scalar::Str(s),
                // Unreachable for a RawValue; a composite keeps it refused downstream.
                Err(_) => Scalar::Composite(text),
            },
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'n') => Scalar::Null,
            Some(b'-' | b'0'..=b'9') => Scalar::Num(text),
            _ => Scalar::Composite(text),
        }
    }

    /// The value's text in a signature payload: a string's characters, anything else as
    /// written (`true`, `10000`, `null`).
    pub(crate) fn payload_text(&self) -> &str {
        match self {
            Scalar::Str(s) => s,
            Scalar::Num(t) | Scalar::Composite(t) => t,
            Scalar::Bool(true) => "true",
            Scalar::Bool(false) => "false",
            Scalar::Null => "null",
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&s[start..i]);
                let _ = write!(out, "\\u{:04x}", c as u32);
                start = i + c.len_utf8();
                continue;
            }
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes one JSON object member by member.
pub(crate) struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object.
    pub(crate) fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        // Keys are the dialect's fixed names: plain ASCII, nothing to escape.
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
        self.out
    }

    /// A string member.
    pub(crate) fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let out = self.key(k);
        write_str(out, v);
        self
    }

    /// A string member, or `null`.
    pub(crate) fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }

    /// An integer member.
    pub(crate) fn int(&mut self, k: &str, v: impl fmt::Display) -> &mut Self {
        let out = self.key(k);
        let _ = write!(out, "{v}");
        self
    }

    /// A boolean member.
    pub(crate) fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.raw(k, if v { "true" } else { "false" })
    }

    /// A member whose value is already JSON text.
    pub(crate) fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k).push_str(json);
        self
    }

    /// A member whose value the closure writes (an object or an array).
    pub(crate) fn with(&mut self, k: &str, f: impl FnOnce(&mut String)) -> &mut Self {
        f(self.key(k));
        self
    }

    /// Closes the object.
    pub(crate) fn close(&mut self) {
        self.out.push('}');
    }
}

/// Writes a JSON array whose elements the closure writes, one call per item.
pub(crate) fn write_array<T>(out: &mut String, items: &[T], mut f: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        f(out, item);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_raw_text_and_order() {
        let o = parse_object(r#"{"b": 1.50 , "a":"x\u0041","b":[1, 2]}"#).unwrap();
        let v: Vec<(&str, &str)> = o.0.iter().map(|m| (&*m.name, m.value.get())).collect();
        assert_eq!(v, [("b", "1.50"), ("a", r#""x\u0041""#), ("b", "[1, 2]")]);
        assert_eq!(Scalar::of(o.0[1].value), Scalar::Str("xA".into()));
        assert_eq!(Scalar::of(o.0[0].value).payload_text(), "1.50");
    }

    #[test]
    fn syntax_and_type_errors_are_told_apart() {
        assert_eq!(parse_object("{").err(), Some(ObjectError::Syntax));
        assert_eq!(parse_object("{} x").err(), Some(ObjectError::Syntax));
        assert_eq!(parse_object("[1]").err(), Some(ObjectError::NotObject));
        assert_eq!(parse_object("\"x\"").err(), Some(ObjectError::NotObject));
        assert_eq!(parse_object("null").err(), Some(ObjectError::NotObject));
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\n\u{1}é\u{2028}");
        assert_eq!(s, r#""a\"b\\c\n\u0001é\u2028""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é\u{2028}");
    }
}
