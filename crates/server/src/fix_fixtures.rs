//! Fixtures of the FIX answers' unit tests: messages as a client sends them, answers as the
//! session sends them (checked against the version's dictionary), instruments from TOML.

use portcullis_engine::{Instruments, InstrumentsConfig};
use portcullis_fix::{BeginString, Decoder, Dictionary, Encoder, MessageRef, Rejection};

/// Two perpetuals: BTC-PERP (prices in tenths, quantities in thousandths) and ETH-PERP
/// (hundredths and thousandths).
pub const PERPETUALS: &str = r#"
[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.005"
min_qty = "0.01"
max_qty = "10"

[[instruments]]
symbol = "ETH-PERP"
price_scale = 2
qty_scale = 3
tick = "0.05"
lot = "0.001"
min_qty = "0.01"
max_qty = "100"
"#;

/// A client's message (TW to ISLD, MsgSeqNum 2) with the fields of `body` in order.
pub fn message(v: BeginString, msg_type: &[u8], body: &[(u32, &str)]) -> Vec<u8> {
    message_with(v, msg_type, |enc| {
        for (t, val) in body {
            enc.str(*t, val.as_bytes());
        }
    })
}

/// A client's message as the session takes it: `read` gets it once the version's dictionary
/// has accepted it; the dictionary's rejection otherwise (the session answers that with a
/// Reject, and the application never sees the message).
pub fn taken<R>(
    v: BeginString,
    msg_type: &[u8],
    body: &[(u32, &str)],
    read: impl FnOnce(&MessageRef<'_>) -> R,
) -> Result<R, Rejection> {
    let bytes = message(v, msg_type, body);
    let mut d = Decoder::new();
    let m = d.decode(&bytes).unwrap();
    Dictionary::for_version(v).validate(&m)?;
    Ok(read(&m))
}

/// A client's message whose body `body` writes.
pub fn message_with(v: BeginString, msg_type: &[u8], body: impl FnOnce(&mut Encoder)) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.start(v.as_bytes(), msg_type);
    enc.str(49, b"TW").str(56, b"ISLD").uint(34, 2);
    enc.str(52, b"20261128-10:00:00.000");
    body(&mut enc);
    enc.finish().to_vec()
}

/// An answer (ISLD to TW) whose body `body` writes, as the session would send it: its fields,
/// once the version's dictionary has accepted it (panics naming the problem otherwise).
pub fn answer(
    v: BeginString,
    msg_type: &[u8],
    body: impl FnOnce(&mut Encoder),
) -> Vec<(u32, String)> {
    let mut enc = Encoder::new();
    enc.start(v.as_bytes(), msg_type);
    enc.str(49, b"ISLD").str(56, b"TW").uint(34, 2);
    enc.str(52, b"20261128-10:00:00.000");
    body(&mut enc);
    let bytes = enc.finish().to_vec();
    let mut d = Decoder::new();
    let m = d.decode(&bytes).unwrap();
    let shown = String::from_utf8_lossy(&bytes).replace('\x01', "|");
    Dictionary::for_version(v)
        .validate(&m)
        .unwrap_or_else(|r| panic!("{v}: {r:?}: {shown}"));
    m.fields()
        .map(|f| (f.tag, String::from_utf8_lossy(f.value).into_owned()))
        .collect()
}

/// The instruments a TOML `[[instruments]]` / `[[option_series]]` list gives at `now_ms`.
pub fn instruments(toml_text: &str, now_ms: i64) -> Instruments {
    let cfg: InstrumentsConfig = toml::from_str(toml_text).unwrap();
    Instruments::new(&cfg.instruments, &cfg.option_series, now_ms).unwrap()
}
