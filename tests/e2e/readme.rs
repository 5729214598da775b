//! The worked signing examples of README.md ("Signing") are checked against the server's own
//! implementation (`portcullis_auth::fix_sig`), and the README's Python snippet is run on them,
//! so the documentation cannot drift from the code.

use std::collections::HashMap;
use std::process::Command;

use portcullis_auth::fix_sig::{logon_prehash, sign_logon, sign_message, verify_message};
use portcullis_auth::LogonFields;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The README's "## Signing" section.
fn signing_section(readme: &str) -> &str {
    let start = readme
        .find("\n## Signing\n")
        .expect("README.md has a \"## Signing\" section");
    let rest = &readme[start + 1..];
    match rest[3..].find("\n## ") {
        Some(end) => &rest[..end + 3],
        None => rest,
    }
}

/// The `name = value` lines of the section's `text` blocks, `|` turned into SOH.
fn values(section: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut in_text = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_text = line == "```text";
            continue;
        }
        if !in_text {
            continue;
        }
        if let Some((name, value)) = line.split_once(" = ") {
            let prev = out.insert(name.trim().to_owned(), value.trim().replace('|', "\x01"));
            assert!(prev.is_none(), "{} given twice", name.trim());
        }
    }
    out
}

/// A Python string literal of `s`.
fn py(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\x01', "\\x01");
    format!("\"{escaped}\"")
}

fn python_block(section: &str) -> &str {
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let len = section[start..].find("```").unwrap();
    &section[start..start + len]
}

#[test]
fn readme_signing_examples_match_the_implementation() {
    let text = readme();
    let section = signing_section(&text);
    let v = values(section);
    let get = |k: &str| {
        v.get(k)
            .unwrap_or_else(|| panic!("README example has no {k:?}: {v:?}"))
            .as_str()
    };
    let secret = get("secret");
    let fields = LogonFields {
        sending_time: get("SendingTime(52)").as_bytes(),
        msg_type: get("MsgType(35)").as_bytes(),
        msg_seq_num: get("MsgSeqNum(34)").as_bytes(),
        sender_comp_id: get("SenderCompID(49)").as_bytes(),
        target_comp_id: get("TargetCompID(56)").as_bytes(),
        username: get("Username(553)").as_bytes(),
    };
    assert_eq!(logon_prehash(&fields), get("prehash").as_bytes());
    assert_eq!(sign_logon(secret.as_bytes(), &fields), get("RawData(96)"));

    let signed = get("signed bytes");
    let sig = get("Signature(89)");
    assert_eq!(sign_message(secret.as_bytes(), signed.as_bytes()), sig);
    let message = get("message");
    assert!(
        message.starts_with(signed),
        "the message starts with the signed bytes"
    );
    assert_eq!(
        &message[signed.len()..message.len() - 7],
        format!("93=44\x0189={sig}\x01"),
        "93 and 89 follow the signed bytes"
    );
    assert_eq!(
        verify_message(secret.as_bytes(), message.as_bytes()),
        Ok(())
    );
    // BodyLength and CheckSum are those of the whole message, 93 and 89 included.
    let body_start = message.find("\x019=").unwrap() + 1;
    let body_start = body_start + message[body_start..].find('\x01').unwrap() + 1;
    let declared: usize = message[message.find("\x019=").unwrap() + 3..body_start - 1]
        .parse()
        .unwrap();
    assert_eq!(declared, message.len() - 7 - body_start, "BodyLength");
    let sum = message.as_bytes()[..message.len() - 7]
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b));
    assert!(
        message.ends_with(&format!("\x0110={sum:03}\x01")),
        "CheckSum"
    );
    assert_eq!(
        portcullis_fix::frame(message.as_bytes(), 1 << 16),
        portcullis_fix::Frame::Complete { len: message.len() }
    );

    // The Python snippet computes the same values.
    let script = format!(
        "{}\nprint(logon_raw_data({secret}, {st}, {mt}, {seq}, {s}, {t}, {u}))\n\
         print(message_signature({secret}, {signed}.encode()))\n",
        python_block(section),
        secret = py(secret),
        st = py(get("SendingTime(52)")),
        mt = py(get("MsgType(35)")),
        seq = get("MsgSeqNum(34)"),
        s = py(get("SenderCompID(49)")),
        t = py(get("TargetCompID(56)")),
        u = py(get("Username(553)")),
        signed = py(signed),
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs the README's snippet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, [get("RawData(96)"), sig]);
}
