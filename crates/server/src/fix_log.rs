//! `portcullis fix-log`: what the server and a FIX session (or a venue, `--venue NAME`) sent
//! each other, read from the session's message store.
//!
//! The store keeps every outbound message of the current sequence for resends, and, for a
//! session with `log_inbound = true`, every message received once it is logged on; encrypted
//! at rest under the master key, so an operator answering "what did you send me?" needs the
//! key and this command, not a hex editor. It reads without taking the store (the server may
//! be running) and changes nothing:
//!
//! ```text
//! $ portcullis fix-log --config my.toml --session 'FIX.4.4:PORTCULLIS->DEMO' --from 2 --to 3
//! session FIX.4.4:PORTCULLIS->DEMO: sequence started 2026-11-29T10:00:00.000Z, next_sender_seq=4 next_target_seq=4
//! in 2 8=FIX.4.4|9=...|35=D|34=2|...|10=201|
//! out 2 8=FIX.4.4|9=...|35=8|34=2|...|10=123|
//! in 3 8=FIX.4.4|9=...|35=F|34=3|...|10=077|
//! out 3 8=FIX.4.4|9=...|35=3|34=3|...|58=Required tag missing|...|10=045|
//! ```
//!
//! One message per line after a header line, in the order they were stored: `in` or `out`,
//! its MsgSeqNum, then the message with SOH shown as `|` (`--soh` keeps SOH). A store without
//! a master key (plaintext) keeps outbound messages only and is read only while the server is
//! stopped: it is locked while open.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use portcullis_auth::clock::format_rfc3339_ms;
use portcullis_fix::{SeqNum, UtcTimestamp};
use portcullis_journal::{Direction, SealedFileStore, StoreContents, StoredMessage};
use portcullis_session::store::{FileStore, MessageStore, SyncPolicy};

use crate::config;

/// `portcullis fix-log`: the stored messages of one FIX session.
#[derive(Debug, Args)]
pub struct FixLogArgs {
    /// The server's TOML config (data dir, sessions, `auth.master_key_file`); without it the
    /// embedded default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The session, `FIX.4.4:OURS->THEIRS` as `portcullis admin sessions` lists it.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "venue",
        conflicts_with = "venue"
    )]
    session: Option<String>,
    /// Instead of a session: the session to a venue of `[[venues]]`, by its name (the orders
    /// routed there and, with a master key, every message the venue sent).
    #[arg(long, value_name = "NAME")]
    venue: Option<String>,
    /// The first MsgSeqNum to print.
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    from: SeqNum,
    /// The last MsgSeqNum to print (default: the last stored).
    #[arg(long, value_name = "SEQ")]
    to: Option<SeqNum>,
    /// Print SOH (0x01) as is instead of `|`.
    #[arg(long)]
    soh: bool,
}

/// Runs `portcullis fix-log`, printing to stdout.
pub fn run(args: FixLogArgs) -> Result<()> {
    let settings = match &args.config {
        Some(p) => config::load(p).map_err(|e| anyhow!("config error in {}: {e}", p.display()))?,
        None => config::embedded_default().map_err(|e| anyhow!("embedded config: {e}"))?,
    };
    let to = args.to.unwrap_or(SeqNum::MAX);
    if args.from > to {
        bail!("--from {} is after --to {to}", args.from);
    }
    let (label, dir) = match (&args.session, &args.venue) {
        (_, Some(venue)) => {
            if !settings.venues.iter().any(|v| v.name == *venue) {
                let names: Vec<&str> = settings.venues.iter().map(|v| v.name.as_str()).collect();
                bail!(
                    "no venue {venue:?} in the config; its venues: {}",
                    names.join(", ")
                );
            }
            (
                format!("venue {venue}"),
                settings.data_dir.join("venues").join(venue),
            )
        }
        (Some(name), None) => {
            let names: Vec<String> = settings
                .sessions
                .iter()
                .map(|s| crate::security::session_name(&s.config))
                .collect();
            let Some(session) = settings
                .sessions
                .iter()
                .find(|s| crate::security::session_name(&s.config) == *name)
            else {
                bail!(
                    "no session {name:?} in the config; its sessions: {}",
                    names.join(", ")
                );
            };
            let c = &session.config;
            let dir = settings
                .data_dir
                .join("sessions")
                .join(FileStore::session_dir_name(
                    c.begin_string.as_str(),
                    &c.sender_comp_id,
                    &c.target_comp_id,
                ));
            (format!("session {name}"), dir)
        }
        (None, None) => bail!("name a --session or a --venue"),
    };
    if !dir.is_dir() {
        bail!(
            "{label} has no message store yet ({} does not exist)",
            dir.display()
        );
    }
    let contents = if SealedFileStore::is_sealed(&dir)? {
        let keyring = crate::security::load_keyring(&settings, false)?.ring;
        SealedFileStore::read_messages(&dir, &keyring, args.from, to)
            .with_context(|| format!("reading the message store {}", dir.display()))?
            .ok_or_else(|| anyhow!("{} holds no message store", dir.display()))?
    } else {
        read_plain(&dir, args.from, to)?
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "{label}: sequence started {}, next_sender_seq={} next_target_seq={}",
        format_rfc3339_ms(contents.created.millis()),
        contents.next_sender_seq,
        contents.next_target_seq
    )?;
    for m in &contents.messages {
        let text: Vec<u8> = if args.soh {
            m.bytes.clone()
        } else {
            m.bytes
                .iter()
                .map(|&b| if b == 0x01 { b'|' } else { b })
                .collect()
        };
        let way = match m.direction {
            Direction::Sent => "out",
            Direction::Received => "in",
        };
        write!(out, "{way} {} ", m.seq)?;
        out.write_all(&text)?;
        writeln!(out)?;
    }
    if contents.torn_tail {
        eprintln!("note: a batch being written at the end of the store was left out");
    }
    Ok(())
}

/// A plaintext store (a server without a master key): opened, which takes its lock.
fn read_plain(dir: &std::path::Path, from: SeqNum, to: SeqNum) -> Result<StoreContents> {
    let mut store =
        FileStore::open(dir, UtcTimestamp::now(), SyncPolicy::Never).with_context(|| {
            format!(
                "opening the plaintext message store {} (stop the server first: it holds it)",
                dir.display()
            )
        })?;
    let mut messages = Vec::new();
    store.outbound_range(from, to, &mut messages)?;
    Ok(StoreContents {
        created: store.creation_time(),
        next_sender_seq: store.next_sender_seq(),
        next_target_seq: store.next_target_seq(),
        messages: messages
            .into_iter()
            .map(|(seq, bytes)| StoredMessage {
                direction: Direction::Sent,
                seq,
                bytes,
            })
            .collect(),
        torn_tail: false,
    })
}
