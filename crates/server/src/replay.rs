//! The replay of journal records into a core, as a recovery does and as the journal thread's
//! snapshot replica does live: commands re-processed at their journaled clock, operator and
//! timer changes re-applied, journaled events counted (the replay regenerates them), snapshot
//! markers of older journals checked. Also the encoding of a snapshot's state.

use std::collections::{BTreeMap, HashSet};

use anyhow::{anyhow, Context, Result};
use portcullis_engine::Core;
use portcullis_journal::{JournalRecord, Seq};
use portcullis_risk::AccountLimits;
use portcullis_types::Event;

use crate::journal_queue::{state_hash, ServerControl};

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct ReplayStats {
    /// Records read.
    pub records: u64,
    /// Commands re-processed.
    pub commands: u64,
    /// Journaled events (compared by count only: the replay regenerates them).
    pub events: u64,
    /// Events the replay regenerated.
    pub regenerated_events: u64,
    /// Control records applied (clock, kill switch, status, limits, marks, timers, opens).
    pub controls: u64,
    /// Snapshot markers whose state hash the replay reproduced.
    pub snapshots_ok: u64,
    /// Snapshot markers it did not reproduce (a determinism bug: logged loudly).
    pub snapshots_mismatched: u64,
    /// The last record.
    pub last_seq: Seq,
    /// SHA-256 of the state after the replay.
    pub state_hash: [u8; 32],
    /// The snapshot the replay started from (`None`: from the first record).
    pub snapshot_seq: Option<Seq>,
    /// The last journaled clock (what the next command is replayed at).
    pub clock: i64,
}

/// Format of the server's snapshot state: `[u8 version][i64 replay clock][core snapshot]`.
pub const STATE_VERSION: u8 = 1;

/// Encodes the state of `core` (after records replayed up to clock `now`) for a snapshot.
pub fn encode_state(core: &Core, now: i64, out: &mut Vec<u8>) {
    out.push(STATE_VERSION);
    out.extend_from_slice(&now.to_le_bytes());
    core.write_snapshot(out);
}

/// Applies journal records to a core, one at a time, as the live core thread did.
#[derive(Debug)]
pub struct Replayer {
    now: i64,
    accounts: usize,
    stats: ReplayStats,
    /// Regenerated events no journaled event has matched yet, by ExecID (unique per event):
    /// a command's events follow it in the journal, so this holds a few entries, except
    /// after a crash that made a command durable but not its events.
    unjournaled: BTreeMap<u64, Event>,
    /// ExecIDs journaled before the replay regenerated them (an operator action's events go
    /// in before its record; a snapshot can fall between a command and its events).
    journaled_first: HashSet<u64>,
    /// Whether events are paired at all (see [`Replayer::without_event_pairing`]).
    pair_events: bool,
}

impl Replayer {
    /// A replay for a core of `accounts` accounts.
    pub fn new(accounts: usize) -> Self {
        Self {
            now: 0,
            accounts,
            stats: ReplayStats::default(),
            unjournaled: BTreeMap::new(),
            journaled_first: HashSet::new(),
            pair_events: true,
        }
    }

    /// A replay that continues from a snapshot taken after record `seq` at clock `now`.
    pub fn resume(accounts: usize, now: i64, seq: Seq) -> Self {
        Self {
            now,
            accounts,
            stats: ReplayStats {
                last_seq: seq,
                snapshot_seq: Some(seq),
                clock: now,
                ..ReplayStats::default()
            },
            unjournaled: BTreeMap::new(),
            journaled_first: HashSet::new(),
            pair_events: true,
        }
    }

    /// A replay that only follows the state (the journal thread's snapshot replica, fed
    /// what the journal thread just wrote): no pairing of regenerated with journaled events,
    /// so no map work per event on that thread; [`Replayer::finish`] then returns none.
    pub fn without_event_pairing(mut self) -> Self {
        self.pair_events = false;
        self
    }

    /// Compares the state after the last record with a snapshot's hash, when the snapshot
    /// was taken at that record (counted in `snapshots_ok` / `snapshots_mismatched`).
    pub fn check_snapshot(&mut self, core: &Core, at: Seq, hash: &[u8; 32]) {
        if at == self.stats.last_seq {
            self.compare_hash(core, hash);
        }
    }

    /// Counts whether the state's hash is `hash`; returns the replayed hash when it is not.
    fn compare_hash(&mut self, core: &Core, hash: &[u8; 32]) -> Option<[u8; 32]> {
        let mine = state_hash(core, self.accounts);
        if mine == *hash {
            self.stats.snapshots_ok += 1;
            None
        } else {
            self.stats.snapshots_mismatched += 1;
            Some(mine)
        }
    }

    /// The last record applied.
    pub fn last_seq(&self) -> Seq {
        self.stats.last_seq
    }

    /// The journaled clock commands are applied at.
    pub fn clock(&self) -> i64 {
        self.now
    }

    /// Applies record `seq`: commands are re-processed at the last journaled clock, controls
    /// re-applied, journaled events counted, snapshot markers checked. The events the replay
    /// regenerates are discarded (they are the journaled ones).
    pub fn apply(&mut self, core: &mut Core, seq: Seq, rec: JournalRecord) -> Result<()> {
        let st = &mut self.stats;
        let now = self.now;
        let mut regenerated = 0u64;
        let (unjournaled, journaled_first) = (&mut self.unjournaled, &mut self.journaled_first);
        let pair = self.pair_events;
        // A regenerated event is the journaled one with its ExecID; until that comes it waits.
        let mut discard = |e: Event| {
            regenerated += 1;
            if pair && !journaled_first.remove(&e.exec_id) {
                unjournaled.insert(e.exec_id, e);
            }
        };
        let mut marker = None;
        st.records += 1;
        st.last_seq = seq;
        match rec {
            JournalRecord::Clock { now_ns } => {
                self.now = now_ns;
                st.controls += 1;
            }
            JournalRecord::Command(cmd) => {
                core.process(cmd, now, &mut discard);
                st.commands += 1;
            }
            JournalRecord::Event(e) => {
                st.events += 1;
                if pair && unjournaled.remove(&e.exec_id).is_none() {
                    journaled_first.insert(e.exec_id);
                }
            }
            JournalRecord::KillSwitch { account, on } => {
                if on {
                    core.kill(account, now, &mut discard)
                        .with_context(|| format!("record {seq}: kill switch"))?;
                } else {
                    core.release_kill(account)
                        .with_context(|| format!("record {seq}: kill switch release"))?;
                }
                st.controls += 1;
            }
            JournalRecord::InstrumentStatus { instrument, status } => {
                core.set_status(instrument, status, now, &mut discard)
                    .with_context(|| format!("record {seq}: instrument status"))?;
                st.controls += 1;
            }
            JournalRecord::Limits { account, data } => {
                apply_server_control(core, account, &data, now, &mut discard)
                    .with_context(|| format!("record {seq}"))?;
                st.controls += 1;
            }
            JournalRecord::SessionSeq { .. } => st.controls += 1,
            JournalRecord::Snapshot {
                seq: at,
                state_hash: h,
            } => marker = Some((at, h)),
        }
        st.regenerated_events += regenerated;
        // A snapshot marker of an older journal: the state hash journaled at that point.
        if let Some((at, h)) = marker {
            if let Some(mine) = self.compare_hash(core, &h) {
                tracing::error!(
                    record = seq.0, at = at.0, journaled = %hex::encode(h), replayed = %hex::encode(mine),
                    "journal replay: state hash differs from the one journaled at this point"
                );
            }
        }
        Ok(())
    }

    /// The statistics, with the final state hash, and the events the replay regenerated
    /// that the journal does not hold, in order: those of the last commands before a crash
    /// that made the commands durable but not their events (their reports never left). The
    /// state includes them, so the caller journals them and reports them.
    pub fn finish(mut self, core: &Core) -> (ReplayStats, Vec<Event>) {
        self.stats.state_hash = state_hash(core, self.accounts);
        self.stats.clock = self.now;
        (self.stats, self.unjournaled.into_values().collect())
    }
}

fn apply_server_control(
    core: &mut Core,
    account: Option<portcullis_types::AccountId>,
    data: &[u8],
    now: i64,
    out: &mut dyn FnMut(portcullis_types::Event),
) -> Result<()> {
    let c = ServerControl::decode(data).ok_or_else(|| anyhow!("unknown server control record"))?;
    match c {
        ServerControl::AccountLimits(json) => {
            let id = account.ok_or_else(|| anyhow!("limits without an account"))?;
            let limits: AccountLimits =
                serde_json::from_slice(&json).context("limits record: bad JSON")?;
            core.risk_mut()
                .set_limits(id, &limits)
                .map_err(|e| anyhow!("limits record: {e}"))?;
        }
        ServerControl::Mark(id, p) => core
            .risk_mut()
            .set_reference_price(id, p)
            .map_err(|e| anyhow!("mark record: {e}"))?,
        ServerControl::Roll => {
            core.roll(now, out).map_err(|e| anyhow!("roll: {e}"))?;
        }
        ServerControl::EndOfDay => {
            core.end_of_day(now, out);
        }
        ServerControl::Open(slot, cod) => core.set_cancel_on_disconnect(slot, cod),
        ServerControl::ExpireOrders => {
            core.expire_due(now, out);
        }
    }
    Ok(())
}
