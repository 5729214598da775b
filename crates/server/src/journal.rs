//! Recovery from the journal at start-up and the `portcullis journal` tools.
//!
//! Start-up (before any listener accepts): open the journal (a torn tail from a crash is cut
//! and reported; corruption anywhere else stops the start-up, exit code 2, with the segment
//! file and byte offset), replay every record into the freshly built [`Core`] — commands at
//! their journaled clock, operator changes, timers, session opens — discarding the events the
//! replay regenerates (they are the journaled ones: the replay is deterministic), check the
//! state hash at every snapshot marker, log the final state hash, and continue the journal
//! with a writer that appends after the last record.
//!
//! Snapshots bound the replay: every `snapshot_every` records the journal thread writes a
//! full snapshot of the state (see [`crate::journal_queue::SnapshotReplica`]: taken on a
//! replica, never on the core thread). A start-up restores the latest snapshot, checks its
//! state hash, and replays only the records after it. A snapshot that cannot be used (the
//! config no longer fits it: accounts or session slots changed; or it does not reproduce its
//! hash) is reported and the journal is replayed from its first record instead, which is
//! always possible because segments are never deleted automatically.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use portcullis_auth::MasterKeyring;
use portcullis_engine::Core;
use portcullis_journal::{JournalError, JournalReader, JournalRecord, Seq};

use crate::config::{self, Settings};
use crate::journal_queue::state_hash;
pub use crate::replay::{encode_state, ReplayStats, Replayer, STATE_VERSION};

/// Rebuilds the core and the replay clock of a snapshot's state with the current config.
pub fn decode_state(settings: &Settings, state: &[u8]) -> Result<(Core, i64)> {
    let (&version, rest) = state
        .split_first()
        .ok_or_else(|| anyhow!("empty snapshot state"))?;
    if version != STATE_VERSION || rest.len() < 8 {
        bail!("snapshot state version {version} is not {STATE_VERSION}");
    }
    let (clock, core) = rest.split_at(8);
    let now = i64::from_le_bytes(clock.try_into().context("clock")?);
    let names: Vec<&str> = settings.accounts.iter().map(String::as_str).collect();
    let instruments = portcullis_engine::InstrumentsConfig {
        instruments: settings.instruments.clone(),
        option_series: settings.option_series.clone(),
    };
    let mut core = Core::restore_snapshot(
        &settings.engine,
        &settings.risk,
        &names,
        &instruments,
        now / 1_000_000,
        core,
    )?;
    crate::venue::apply_routes(&mut core, settings);
    Ok((core, now))
}

/// Replays every record of `reader` into `core`. With `check`, the state hash at the seq of
/// that snapshot is compared with the snapshot's (counted in `snapshots_ok` /
/// `snapshots_mismatched`): the snapshot and the records agree. Also returns the events the
/// replay regenerated that the journal lacks (see [`Replayer::finish`]).
pub fn replay(
    reader: &JournalReader,
    core: &mut Core,
    accounts: usize,
    check: Option<&portcullis_journal::Snapshot>,
) -> Result<(ReplayStats, Vec<portcullis_types::Event>)> {
    let mut r = Replayer::new(accounts);
    let check_snapshot = |r: &mut Replayer, core: &Core| {
        if let Some(s) = check {
            r.check_snapshot(core, s.seq, &s.state_hash);
        }
    };
    check_snapshot(&mut r, core);
    for item in reader.replay(Seq(0))? {
        let (seq, rec) = item.map_err(journal_error)?;
        r.apply(core, seq, rec)?;
        check_snapshot(&mut r, core);
    }
    Ok(r.finish(core))
}

/// A journal error as an operator reads it (the file and offset are in its text).
fn journal_error(e: JournalError) -> anyhow::Error {
    anyhow!("journal: {e}")
}

/// Opens the journal at start-up, restores the latest usable snapshot (else starts from
/// `fresh`, the core built from the config) and replays the records after it. Events the
/// replay regenerated that the journal lacks (a crash made the last commands durable but not
/// their events: nobody was told) are journaled now. Returns the writer to continue with,
/// what the replay did, the recovered core and those events, for the sessions they belong
/// to. Any error here is fatal for the start-up (exit code 2).
pub fn recover(
    settings: &Settings,
    keyring: &MasterKeyring,
    fresh: Core,
) -> Result<(
    portcullis_journal::JournalWriter,
    ReplayStats,
    Core,
    Vec<portcullis_types::Event>,
)> {
    let config = &settings.journal;
    let accounts = settings.accounts.len();
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("cannot create the journal dir {}", config.dir.display()))?;
    let started = std::time::Instant::now();
    let reader = JournalReader::open(&config.dir, keyring).map_err(journal_error)?;
    if let Some(t) = &reader.report().torn_tail {
        tracing::warn!(
            segment = %t.segment.display(), offset = t.offset, bytes = t.truncated_bytes,
            detail = %t.detail, "journal: torn tail from a crash cut"
        );
        println!(
            "journal: torn tail cut: {} at byte {} ({} bytes: {})",
            t.segment.display(),
            t.offset,
            t.truncated_bytes,
            t.detail
        );
    }
    let (mut core, mut r) = match restore_latest(settings, &reader) {
        Some((core, replayer)) => (core, replayer),
        None => (fresh, Replayer::new(accounts)),
    };
    if r.last_seq() == Seq(0) && reader.first_seq() > Seq(1) {
        bail!(
            "journal {}: its first record is {} (older segments were removed) and no snapshot \
             can be restored: the state before it is lost",
            config.dir.display(),
            reader.first_seq()
        );
    }
    for item in reader.replay(r.last_seq())? {
        let (seq, rec) = item.map_err(journal_error)?;
        r.apply(&mut core, seq, rec)?;
    }
    let (mut stats, unjournaled) = r.finish(&core);
    let mut writer = reader.into_writer(config).map_err(journal_error)?;
    if !unjournaled.is_empty() {
        for e in &unjournaled {
            stats.last_seq = writer
                .append(&JournalRecord::Event(*e))
                .map_err(journal_error)?;
        }
        writer.sync().map_err(journal_error)?;
        tracing::warn!(
            events = unjournaled.len(),
            "journal: the last commands before the crash were durable but not their events: replayed, journaled now, and parked for their sessions' next logon"
        );
        println!(
            "journal: {} event(s) of the last command(s) before the crash journaled now",
            unjournaled.len()
        );
    }
    tracing::info!(
        records = stats.records, commands = stats.commands, events = stats.events,
        last_seq = stats.last_seq.0, snapshot = stats.snapshot_seq.map(|s| s.0),
        snapshots_ok = stats.snapshots_ok, snapshots_mismatched = stats.snapshots_mismatched,
        state_hash = %hex::encode(stats.state_hash),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "journal replayed"
    );
    Ok((writer, stats, core, unjournaled))
}

/// The core and replay position of the latest snapshot, if there is one that decrypts,
/// fits the config and reproduces its state hash; otherwise `None`, with the reason logged.
fn restore_latest(settings: &Settings, reader: &JournalReader) -> Option<(Core, Replayer)> {
    let accounts = settings.accounts.len();
    let snap = match reader.latest_snapshot() {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "journal: the latest snapshot cannot be read: replaying the journal from its first record");
            return None;
        }
    };
    match decode_state(settings, &snap.state) {
        Ok((core, now)) => {
            let hash = state_hash(&core, accounts);
            if hash != snap.state_hash {
                tracing::error!(
                    snapshot = %snap.path.display(), journaled = %hex::encode(snap.state_hash),
                    restored = %hex::encode(hash),
                    "journal: the snapshot does not reproduce its state hash: replaying the journal from its first record"
                );
                return None;
            }
            tracing::info!(snapshot = %snap.path.display(), seq = snap.seq.0, "journal: state restored from a snapshot");
            Some((core, Replayer::resume(accounts, now, snap.seq)))
        }
        Err(e) => {
            tracing::warn!(
                snapshot = %snap.path.display(), error = %format!("{e:#}"),
                "journal: the snapshot does not fit this config: replaying the journal from its first record"
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tools

/// `portcullis journal ...`: operator tools on the journal (they need the master key).
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// TOML config file (journal dir, data dir, `auth.master_key_file`); without it the
    /// embedded default.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Check every segment, batch, record and snapshot (changes nothing), replay the journal
    /// into a fresh core and print the counts and the state hash.
    Verify,
    /// Print every record, decrypted, one per line.
    Dump,
    /// Export the execution events for the drop copy / clearing side.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Rewrite every segment encrypted under an older master key under the current one (run
    /// with the server stopped).
    Reencrypt,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// One JSON object per event and line.
    Jsonl,
}

/// Runs a `journal` command.
pub fn run(args: JournalArgs) -> Result<()> {
    let settings = match &args.config {
        Some(p) => config::load(p).map_err(|e| anyhow!("config error in {}: {e}", p.display()))?,
        None => config::embedded_default().map_err(|e| anyhow!("embedded config: {e}"))?,
    };
    let keyring = crate::security::load_keyring(&settings, false)?.ring;
    let dir = &settings.journal.dir;
    if !dir.is_dir() {
        bail!("no journal at {}", dir.display());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.command {
        JournalCommand::Verify => {
            let report = portcullis_journal::verify(dir, &keyring).map_err(journal_error)?;
            write!(out, "{report}")?;
            let mut core = build_core(&settings)?;
            let reader = JournalReader::open_read_only(dir, &keyring).map_err(journal_error)?;
            let latest = reader.latest_snapshot().map_err(journal_error)?;
            if let Some(s) = &latest {
                // The snapshot must restore with this config and reproduce its own hash.
                let (restored, _) = decode_state(&settings, &s.state)
                    .with_context(|| format!("snapshot {}", s.path.display()))?;
                if state_hash(&restored, settings.accounts.len()) != s.state_hash {
                    bail!(
                        "snapshot {} does not reproduce its state hash",
                        s.path.display()
                    );
                }
                writeln!(
                    out,
                    "snapshot: {} (after record {}) restores",
                    s.path.display(),
                    s.seq
                )?;
            }
            let (st, unjournaled) = if reader.first_seq() > Seq(1) {
                writeln!(
                    out,
                    "replay: skipped (the journal starts at record {})",
                    reader.first_seq()
                )?;
                (ReplayStats::default(), Vec::new())
            } else {
                replay(&reader, &mut core, settings.accounts.len(), latest.as_ref())?
            };
            if !unjournaled.is_empty() {
                writeln!(
                    out,
                    "replay: {} event(s) of the last command(s) are not journaled (a crash came before them): the server journals and reports them when it starts",
                    unjournaled.len()
                )?;
            }
            writeln!(
                out,
                "replay: {} command(s), {} journaled event(s), {} regenerated, {} snapshot(s) and marker(s) reproduced, {} mismatched",
                st.commands, st.events, st.regenerated_events, st.snapshots_ok, st.snapshots_mismatched
            )?;
            writeln!(out, "state hash: {}", hex::encode(st.state_hash))?;
            if st.snapshots_mismatched > 0 {
                bail!("the replay did not reproduce every journaled state hash");
            }
        }
        JournalCommand::Dump => {
            portcullis_journal::dump(dir, &keyring, &mut out).map_err(journal_error)?;
        }
        JournalCommand::Export {
            format: ExportFormat::Jsonl,
        } => {
            portcullis_journal::export_jsonl(dir, &keyring, &mut out).map_err(journal_error)?;
        }
        JournalCommand::Reencrypt => {
            let r = portcullis_journal::reencrypt(dir, &keyring).map_err(journal_error)?;
            writeln!(out, "{r:?}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A fresh core as `serve` builds it.
pub fn build_core(settings: &Settings) -> Result<Core> {
    let now_ms = crate::pipeline::now_ns() / 1_000_000;
    let instruments =
        portcullis_engine::Instruments::new(&settings.instruments, &settings.option_series, now_ms)
            .map_err(|e| anyhow!("instruments: {e}"))?;
    let names: Vec<&str> = settings.accounts.iter().map(String::as_str).collect();
    let mut core = Core::new(&settings.engine, &settings.risk, &names, instruments)
        .map_err(|e| anyhow!("engine: {e}"))?;
    crate::venue::apply_routes(&mut core, settings);
    Ok(core)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal_queue::{
        CoreJournal, JournalItem, JournalQueue, ServerControl, SnapshotReplica,
    };
    use crate::pipeline::tests::{open, order, place, setup, test_core, test_parts};

    /// The embedded config with the test core's accounts, instrument and limits.
    fn test_settings(accounts: &[&str]) -> Settings {
        let (engine, risk, inst) = test_parts();
        let mut s = config::embedded_default().unwrap();
        s.accounts = accounts.iter().map(|a| a.to_string()).collect();
        s.instruments = vec![inst];
        s.option_series = Vec::new();
        s.risk = risk;
        s.engine = engine;
        s
    }
    use crate::pipeline::{ControlAction, ControlRequest, Ingress, Outbound};
    use portcullis_types::Side;
    use portcullis_types::{InstrumentId, Price, SessionId};
    use std::sync::Arc;

    #[test]
    fn server_controls_round_trip_and_garbage_is_refused() {
        for c in [
            ServerControl::AccountLimits(b"{}".to_vec()),
            ServerControl::Mark(InstrumentId(3), Price(-5)),
            ServerControl::Roll,
            ServerControl::EndOfDay,
            ServerControl::Open(SessionId(7), true),
            ServerControl::Open(SessionId(0), false),
            ServerControl::ExpireOrders,
        ] {
            assert_eq!(ServerControl::decode(&c.encode()), Some(c));
        }
        for bad in [
            &[][..],
            &[0],
            &[2, 1, 2],
            &[3, 0],
            &[5, 1, 0, 0, 0, 2],
            &[6, 0],
            &[9],
        ] {
            assert_eq!(ServerControl::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn events_a_crash_kept_out_of_the_journal_are_found_by_the_replay() {
        // Live: A rests a sell, then B's buy crosses it.
        let (mut lp, p) = setup(64, 64);
        let q = JournalQueue::new(1 << 10, false);
        lp.set_journal(CoreJournal::new(q.clone(), Seq(0)));
        let a = open(&mut lp, &p, 0);
        let b = open(&mut lp, &p, 1);
        place(&p, &a, 0, "S1", Side::Sell, 1000, 2);
        lp.step(1_000);
        place(&p, &b, 1, "B1", Side::Buy, 1000, 1);
        lp.step(2_000);
        let mut records = Vec::new();
        while let Some(item) = q.pop() {
            match item {
                JournalItem::Record(r) => records.push(r),
                JournalItem::Deliver(..) | JournalItem::Answered(_) => panic!("not gated"),
            }
        }
        // The crash: B1's command record is durable, the records after it are not.
        let last_cmd = records
            .iter()
            .rposition(|r| matches!(r, JournalRecord::Command(_)))
            .unwrap();
        let lost: Vec<portcullis_types::Event> = records[last_cmd + 1..]
            .iter()
            .filter_map(|r| match r {
                JournalRecord::Event(e) => Some(*e),
                _ => None,
            })
            .collect();
        assert!(
            lost.iter()
                .any(|e| e.kind == portcullis_types::EventKind::Fill),
            "the cross filled: {lost:?}"
        );
        let mut core = test_core(&["A", "B"]);
        let mut r = Replayer::new(2);
        for (i, rec) in records[..=last_cmd].iter().enumerate() {
            r.apply(&mut core, Seq(i as u64 + 1), rec.clone()).unwrap();
        }
        let (st, unjournaled) = r.finish(&core);
        // The replayed state has the trade; the lost reports come back, in order, to be
        // journaled and delivered.
        assert_eq!(st.state_hash, state_hash(lp.core(), 2));
        assert_eq!(unjournaled, lost);
    }

    #[test]
    fn under_fsync_always_a_request_is_answered_behind_its_reports() {
        // The journal thread delivers the reports once durable: the count of answered
        // requests must come after them, not from the core thread at once.
        let (mut lp, p) = setup(64, 64);
        let q = JournalQueue::new(1 << 10, true);
        lp.set_journal(CoreJournal::new(q.clone(), Seq(0)));
        let a = open(&mut lp, &p, 0);
        place(&p, &a, 0, "S1", Side::Sell, 1000, 2);
        place(&p, &a, 0, "S2", Side::Sell, 1001, 2);
        lp.step(1_000);
        assert_eq!(a.answered(), 0, "nothing is answered before it is durable");
        assert!(a.pop().is_none());
        let mut order = Vec::new();
        while let Some(item) = q.pop() {
            match item {
                JournalItem::Record(_) => {}
                JournalItem::Deliver(Outbound::Event(e), Some(_)) => {
                    order.push(String::from_utf8_lossy(e.cl_ord_id.as_bytes()).into_owned())
                }
                JournalItem::Deliver(..) => panic!("a report without its connection"),
                JournalItem::Answered(c) => {
                    assert!(Arc::ptr_eq(&c, &a));
                    order.push("answered".to_owned());
                }
            }
        }
        assert_eq!(order, ["S1", "answered", "S2", "answered"]);
    }

    #[test]
    fn a_replay_of_the_journaled_records_reproduces_the_live_state() {
        let (mut lp, p) = setup(4096, 4096);
        let q = JournalQueue::new(1 << 16, false);
        lp.set_journal(CoreJournal::new(q.clone(), Seq(0)));
        let a = open(&mut lp, &p, 0);
        let b = open(&mut lp, &p, 1);
        let mut t = 1_000_000_000;
        for i in 0..60i64 {
            let (conn, acc, side, price) = if i % 2 == 0 {
                (&a, 0, Side::Sell, 1000 + i % 4)
            } else {
                (&b, 1, Side::Buy, 1000 + i % 5)
            };
            let cmd = order(conn.slot().0, acc, &format!("O{i}"), side, price, 1 + i % 3);
            p.submit(Ingress::Cmd(cmd)).unwrap();
            if i % 7 == 0 {
                t += 1_000;
                lp.step(t);
            }
            if i == 30 {
                for action in [
                    ControlAction::Kill {
                        account: Some("B".into()),
                        on: true,
                    },
                    ControlAction::Kill {
                        account: Some("B".into()),
                        on: false,
                    },
                    ControlAction::Limits {
                        account: "A".into(),
                        set: vec![("max_open_orders".into(), "500".into())],
                    },
                    ControlAction::Mark {
                        symbol: "BTC-PERP".into(),
                        price: "100.5".into(),
                    },
                ] {
                    let (tx, _rx) = tokio::sync::oneshot::channel();
                    p.control(ControlRequest { action, reply: tx }).unwrap();
                }
            }
        }
        t += 1_000;
        lp.step(t);
        // Cancel-on-disconnect of A (its session open was journaled with the flag).
        p.submit(Ingress::Close(a.clone())).unwrap();
        lp.step(t + 1);
        let mut records = Vec::new();
        while let Some(item) = q.pop() {
            match item {
                JournalItem::Record(r) => records.push(r),
                JournalItem::Deliver(..) | JournalItem::Answered(_) => panic!("not gated"),
            }
        }
        assert!(records
            .iter()
            .any(|r| matches!(r, JournalRecord::KillSwitch { on: true, .. })));
        let mut core = test_core(&["A", "B"]);
        let mut r = Replayer::new(2);
        // The journal thread's replica sees the same records and snapshots every 25; the
        // state of each snapshot restored and replayed from there ends in the live state too.
        let mut replica = SnapshotReplica::new(test_core(&["A", "B"]), 0, Seq(0), 2, 25);
        let mut snapshots = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            let seq = Seq(i as u64 + 1);
            r.apply(&mut core, seq, rec.clone()).unwrap();
            replica.push(seq, rec.clone());
            if replica.catch_up() {
                snapshots.push(replica.encode());
                replica.taken();
            }
        }
        let (st, unjournaled) = r.finish(&core);
        assert!(unjournaled.is_empty(), "{unjournaled:?}");
        assert_eq!(st.state_hash, state_hash(lp.core(), 2));
        assert_eq!(st.commands, 61, "60 orders and A's close");
        assert_eq!(st.regenerated_events, st.events);
        assert!(snapshots.len() >= 3, "{}", snapshots.len());
        let settings = test_settings(&["A", "B"]);
        for (at, hash, state) in snapshots {
            let (mut restored, now) = decode_state(&settings, &state).unwrap();
            assert_eq!(state_hash(&restored, 2), hash, "restored at {at}");
            let mut r = Replayer::resume(2, now, at);
            for (i, rec) in records.iter().enumerate().skip(at.0 as usize) {
                r.apply(&mut restored, Seq(i as u64 + 1), rec.clone())
                    .unwrap();
            }
            let (st, unjournaled) = r.finish(&restored);
            assert_eq!(
                st.state_hash,
                state_hash(lp.core(), 2),
                "replay from the snapshot at {at}"
            );
            assert!(unjournaled.is_empty(), "from {at}: {unjournaled:?}");
        }
        assert_eq!(
            core.risk()
                .limits(portcullis_types::AccountId(0))
                .unwrap()
                .max_open_orders,
            500
        );
    }
}
