//! The start protocol's reading of the changelog (ARCHITECTURE §5.3–5.4), kept
//! free of I/O so it can be tested record by record.
//!
//! Records arrive in offset order. A record (epoch e, sequence s) is committed
//! once a marker of epoch e with sequence ≥ s has been read; until then it is
//! held back. Anything of a lower epoch that appears after a higher one is a
//! zombie's and is ignored. What is committed comes out, in order, through
//! [`Restorer::drain`]; at the end [`Restorer::finish`] tells the positions to
//! resume from and which keys must be written again because their newest
//! record was never committed.

use std::collections::{BTreeMap, HashMap};

use storefold_codec::{CommitMarker, StateKind, StateRecord};

use crate::records::{Fence, OUTBOX_PREFIX, outbox_sequence};

/// What the last accepted commit marker (or the local state) says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Highest epoch known.
    pub epoch: i64,
    /// Sequence of the newest committed batch; -1 when none.
    pub sequence: i64,
    /// Newest batch whose outputs were produced; -1 when none.
    pub flushed: i64,
    /// Next offset per raw topic.
    pub positions: BTreeMap<String, i64>,
    /// Projection generation.
    pub generation: i64,
}

/// A change to apply to the local state, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put (`Some`) or delete (`None`) a state key.
    Write(String, Option<Vec<u8>>),
    /// A replay's reset fence: everything before is void; clear the state.
    Reset,
}

/// Counters of one restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    pub records: u64,
    pub applied: u64,
    pub zombies: u64,
    pub orphans: u64,
    pub markers: u64,
}

/// The result of reading the changelog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub committed: Committed,
    /// Offset just after the last accepted marker (where the next start may
    /// begin reading), when one was read.
    pub resume_offset: Option<i64>,
    /// Keys whose newest changelog record was never committed: the first batch
    /// writes them again with their committed value.
    pub repair: Vec<String>,
    pub stats: RestoreStats,
}

/// A record waiting for its marker: (sequence, offset, key, value).
type Pending = (i64, i64, String, Option<Vec<u8>>);

/// Reads changelog records; see the module docs.
#[derive(Debug)]
pub struct Restorer {
    committed: Committed,
    /// Highest epoch seen so far in this scan (fences, records, markers).
    max_epoch: i64,
    /// Newest marker sequence per epoch.
    marker_seq: HashMap<i64, i64>,
    /// Records not yet committed, per epoch, in offset order.
    pending: BTreeMap<i64, Vec<Pending>>,
    /// Keys whose newest record is not committed (yet), with that record's offset.
    suspect: HashMap<String, i64>,
    ready: Vec<Op>,
    resume_offset: Option<i64>,
    stats: RestoreStats,
    /// What a first pass learned from the markers and fences: with it, no
    /// record is held back (see [`Plan`]).
    plan: Option<Plan>,
}

/// What a first pass over the changelog learns from its markers and fences
/// alone: which batches were committed. A compacted changelog keeps only the
/// newest marker of each epoch, which comes after all of the epoch's records,
/// so a single pass would hold back every record of a long epoch until its
/// end; with a plan from a first pass, [`Restorer::feed`] decides at each
/// record and holds nothing back.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    max_epoch: i64,
    /// Newest accepted marker sequence per epoch.
    markers: HashMap<i64, i64>,
    /// (offset, sequence) of every accepted fence, in offset order.
    fences: Vec<(i64, i64)>,
}

impl Plan {
    /// A plan for a scan that starts on a store of epoch `local_epoch`.
    pub fn new(local_epoch: i64) -> Plan {
        Plan {
            max_epoch: local_epoch,
            ..Plan::default()
        }
    }

    /// Notes the record at `offset` if it is a marker or a fence (the first
    /// pass reads nothing else).
    pub fn read(&mut self, offset: i64, rec: &StateRecord) {
        match rec.kind {
            StateKind::Marker => self.marker(rec.epoch, rec.sequence),
            StateKind::Fence => self.fence(offset, rec.epoch, rec.sequence),
            _ => {}
        }
    }

    /// A commit marker of batch `sequence` of `epoch` (ignored when a higher
    /// epoch came before it: a fenced-off owner's).
    fn marker(&mut self, epoch: i64, sequence: i64) {
        if epoch < self.max_epoch {
            return;
        }
        self.max_epoch = epoch;
        let seq = self.markers.entry(epoch).or_insert(sequence);
        *seq = (*seq).max(sequence);
    }

    /// A fence at `offset` of `epoch`, whose owner's next batch is `sequence`.
    fn fence(&mut self, offset: i64, epoch: i64, sequence: i64) {
        if epoch < self.max_epoch {
            return;
        }
        self.max_epoch = epoch;
        self.fences.push((offset, sequence));
    }

    /// Whether the record of batch `sequence` of `epoch` at `offset` was
    /// committed: a marker of its epoch covers it, or the first fence after
    /// it says its owner started past it (the rule [`Restorer::feed`]
    /// applies to held-back records at a fence).
    pub fn committed(&self, epoch: i64, sequence: i64, offset: i64) -> bool {
        if self.markers.get(&epoch).is_some_and(|m| *m >= sequence) {
            return true;
        }
        let next = self.fences.partition_point(|(o, _)| *o <= offset);
        self.fences.get(next).is_some_and(|(_, s)| sequence < *s)
    }
}

/// Why a changelog record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("changelog offset {offset}: unreadable {what}: {detail}")]
    Corrupt {
        offset: i64,
        what: &'static str,
        detail: String,
    },
}

impl Restorer {
    /// Starts from what the local state already holds (default for an empty disk).
    pub fn new(local: Committed) -> Self {
        Self {
            max_epoch: local.epoch,
            committed: local,
            marker_seq: HashMap::new(),
            pending: BTreeMap::new(),
            suspect: HashMap::new(),
            ready: Vec::new(),
            resume_offset: None,
            stats: RestoreStats::default(),
            plan: None,
        }
    }

    /// Follows `plan` (from a first pass over the same records): each record
    /// is applied or found uncommitted as it is fed, none held back.
    pub fn follow(&mut self, plan: Plan) {
        self.plan = Some(plan);
    }

    /// Records read but held back waiting for a marker.
    pub fn held_back(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Feeds the record at `offset`. `decode_marker` reads a marker's value.
    pub fn feed(
        &mut self,
        offset: i64,
        rec: StateRecord,
        decode_marker: impl Fn(&[u8]) -> Option<CommitMarker>,
    ) -> Result<(), RestoreError> {
        self.stats.records += 1;
        let e = rec.epoch;
        let data = !matches!(rec.kind, StateKind::Marker | StateKind::Fence);
        if e < self.max_epoch {
            // Written by a task that had already been fenced off.
            self.stats.zombies += 1;
            if data {
                self.suspect.insert(rec.key, offset);
            }
            return Ok(());
        }
        self.max_epoch = e;
        self.committed.epoch = self.committed.epoch.max(e);
        match rec.kind {
            StateKind::Fence => {
                let fence: Fence = rec
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice(v).ok())
                    .ok_or_else(|| RestoreError::Corrupt {
                        offset,
                        what: "fence",
                        detail: "no fence value".into(),
                    })?;
                if fence.reset {
                    self.pending.clear();
                    self.suspect.clear();
                    self.marker_seq.clear();
                    self.ready.clear();
                    self.ready.push(Op::Reset);
                    self.committed = Committed {
                        epoch: e,
                        sequence: self.committed.sequence,
                        flushed: self.committed.sequence,
                        positions: BTreeMap::new(),
                        generation: fence.generation,
                    };
                    self.resume_offset = Some(offset + 1);
                } else {
                    self.committed.generation = fence.generation;
                    // The fence's owner started from the batches committed
                    // up to the sequence before the fence's: older epochs'
                    // records up to it are committed even when compaction
                    // replaced their marker by a fenced-off owner's later
                    // one; those past it never will be (orphans, repaired).
                    let last = rec.sequence - 1;
                    let older: Vec<i64> = self.pending.range(..e).map(|(k, _)| *k).collect();
                    for epoch in older {
                        for (s, off, key, value) in self.pending.remove(&epoch).unwrap_or_default()
                        {
                            if s <= last {
                                if self.suspect.get(&key) == Some(&off) {
                                    self.suspect.remove(&key);
                                }
                                self.stats.applied += 1;
                                self.ready.push(Op::Write(key, value));
                            }
                        }
                    }
                    if let Some(c) = fence.committed
                        && c.sequence >= self.committed.sequence
                    {
                        self.committed.sequence = c.sequence;
                        self.committed.flushed = c.flushed;
                        self.committed.positions = c.positions;
                    }
                }
            }
            StateKind::Marker => {
                let m = rec
                    .value
                    .as_deref()
                    .and_then(&decode_marker)
                    .ok_or_else(|| RestoreError::Corrupt {
                        offset,
                        what: "commit marker",
                        detail: "undecodable value".into(),
                    })?;
                self.stats.markers += 1;
                let s = m.sequence;
                self.marker_seq.insert(e, s);
                if let Some(list) = self.pending.get_mut(&e) {
                    let keep = list.split_off(list.partition_point(|r| r.0 <= s));
                    let done = std::mem::replace(list, keep);
                    for (_seq, off, key, value) in done {
                        if self.suspect.get(&key) == Some(&off) {
                            self.suspect.remove(&key);
                        }
                        self.stats.applied += 1;
                        self.ready.push(Op::Write(key, value));
                    }
                }
                self.committed.sequence = s;
                self.committed.flushed = m.flushed_batch;
                self.committed.positions = m
                    .input_positions
                    .iter()
                    .map(|p| (p.topic.clone(), p.next_offset))
                    .collect();
                self.resume_offset = Some(offset + 1);
            }
            _ => {
                let s = rec.sequence;
                if let Some(plan) = &self.plan {
                    if plan.committed(e, s, offset) {
                        self.suspect.remove(&rec.key);
                        self.stats.applied += 1;
                        self.ready.push(Op::Write(rec.key, rec.value));
                    } else {
                        self.suspect.insert(rec.key, offset);
                    }
                    return Ok(());
                }
                if self.marker_seq.get(&e).is_some_and(|&m| m >= s) {
                    // A record after its own batch's marker cannot be written by
                    // the protocol; accept it as committed rather than lose it.
                    self.suspect.remove(&rec.key);
                    self.stats.applied += 1;
                    self.ready.push(Op::Write(rec.key, rec.value));
                } else {
                    self.suspect.insert(rec.key.clone(), offset);
                    // Pending records of one epoch are in sequence order
                    // (batches commit one after the other).
                    self.pending
                        .entry(e)
                        .or_default()
                        .push((s, offset, rec.key, rec.value));
                }
            }
        }
        Ok(())
    }

    /// Committed changes read so far, in order.
    pub fn drain(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.ready)
    }

    /// Ends the scan.
    pub fn finish(mut self) -> (Outcome, Vec<Op>) {
        let mut repair: Vec<String> = self.suspect.into_keys().collect();
        repair.sort();
        self.stats.orphans = repair.len() as u64;
        self.committed.epoch = self.committed.epoch.max(self.max_epoch);
        let ops = self.ready;
        (
            Outcome {
                committed: self.committed,
                resume_offset: self.resume_offset,
                repair,
                stats: self.stats,
            },
            ops,
        )
    }
}

/// True when an outbox key belongs to a batch already produced.
pub fn outbox_flushed(key: &str, flushed: i64) -> bool {
    key.starts_with(OUTBOX_PREFIX) && outbox_sequence(key).is_some_and(|s| s <= flushed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{fence_key, marker_key};

    fn rec(key: &str, epoch: i64, seq: i64, value: &str) -> StateRecord {
        StateRecord {
            key: key.into(),
            kind: StateKind::Aggregate,
            epoch,
            sequence: seq,
            value: Some(value.as_bytes().to_vec()),
        }
    }

    fn marker(epoch: i64, seq: i64, pos: i64) -> StateRecord {
        let m = CommitMarker {
            epoch,
            sequence: seq,
            record_count: 0,
            input_positions: vec![storefold_codec::InputPosition {
                topic: "raw.shopify".into(),
                partition: 0,
                next_offset: pos,
            }],
            flushed_batch: seq - 1,
        };
        StateRecord {
            key: marker_key(epoch),
            kind: StateKind::Marker,
            epoch,
            sequence: seq,
            value: Some(serde_json::to_vec(&m).unwrap()),
        }
    }

    /// The fence of `epoch` whose owner found batch `seq - 1` committed
    /// (a fence's sequence is the next batch's), carrying `committed` when
    /// written by this build.
    fn fence_at(
        epoch: i64,
        seq: i64,
        reset: bool,
        committed: Option<crate::records::FenceCommitted>,
    ) -> StateRecord {
        StateRecord {
            key: fence_key(epoch),
            kind: StateKind::Fence,
            epoch,
            sequence: seq,
            value: Some(
                serde_json::to_vec(&Fence {
                    generation: if reset { 2 } else { 1 },
                    reset,
                    committed,
                })
                .unwrap(),
            ),
        }
    }

    fn fence(epoch: i64, seq: i64, reset: bool) -> StateRecord {
        fence_at(epoch, seq, reset, None)
    }

    fn run(records: Vec<StateRecord>) -> (Outcome, Vec<Op>) {
        let mut r = Restorer::new(Committed {
            sequence: -1,
            flushed: -1,
            generation: 1,
            ..Committed::default()
        });
        let mut ops = Vec::new();
        for (i, x) in records.into_iter().enumerate() {
            r.feed(i as i64, x, |b| serde_json::from_slice(b).ok())
                .unwrap();
            ops.extend(r.drain());
        }
        let (out, rest) = r.finish();
        ops.extend(rest);
        (out, ops)
    }

    fn w(k: &str, v: &str) -> Op {
        Op::Write(k.into(), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn only_batches_with_a_marker_are_applied() {
        let (out, ops) = run(vec![
            fence(1, 0, false),
            rec("a", 1, 0, "a0"),
            rec("b", 1, 0, "b0"),
            marker(1, 0, 5),
            rec("a", 1, 1, "a1"), // orphan: the task died before its marker
        ]);
        assert_eq!(ops, vec![w("a", "a0"), w("b", "b0")]);
        assert_eq!(out.committed.positions["raw.shopify"], 5);
        assert_eq!(out.committed.sequence, 0);
        assert_eq!(out.repair, vec!["a".to_string()]);
        assert_eq!(out.resume_offset, Some(4));
    }

    #[test]
    fn zombies_after_a_higher_epoch_are_ignored() {
        let (out, ops) = run(vec![
            fence(1, 0, false),
            rec("a", 1, 0, "a0"),
            marker(1, 0, 3),
            fence(2, 1, false),
            rec("a", 1, 1, "zombie"),
            marker(1, 1, 9),
            rec("b", 2, 1, "b1"),
            marker(2, 1, 4),
        ]);
        assert_eq!(ops, vec![w("a", "a0"), w("b", "b1")]);
        assert_eq!(out.committed.epoch, 2);
        assert_eq!(out.committed.positions["raw.shopify"], 4);
        // The zombie's record is the newest of `a`: it is written again.
        assert_eq!(out.repair, vec!["a".to_string()]);
        assert_eq!(out.stats.zombies, 2);
    }

    #[test]
    fn a_compacted_log_commits_through_the_newest_marker_of_each_epoch() {
        // Markers of batches 0 and 1 were compacted away; the newest remains.
        let (out, ops) = run(vec![
            rec("a", 1, 0, "a0"),
            rec("b", 1, 1, "b1"),
            rec("c", 1, 2, "c2"),
            marker(1, 2, 7),
            fence(2, 3, false),
        ]);
        assert_eq!(ops, vec![w("a", "a0"), w("b", "b1"), w("c", "c2")]);
        assert!(out.repair.is_empty());
        assert_eq!(out.committed.positions["raw.shopify"], 7);
        assert_eq!(out.committed.epoch, 2);
    }

    #[test]
    fn a_later_committed_record_clears_an_orphan() {
        let (out, _) = run(vec![
            rec("a", 1, 0, "orphan"),
            fence(2, 0, false),
            rec("a", 2, 1, "a1"),
            marker(2, 1, 2),
        ]);
        assert!(out.repair.is_empty());
    }

    #[test]
    fn a_reset_fence_voids_everything_before_it() {
        let (out, ops) = run(vec![
            rec("a", 1, 0, "a0"),
            marker(1, 0, 50),
            fence(2, 1, true),
            rec("b", 2, 1, "b1"),
            marker(2, 1, 3),
        ]);
        assert_eq!(ops, vec![w("a", "a0"), Op::Reset, w("b", "b1")]);
        assert_eq!(out.committed.generation, 2);
        assert_eq!(out.committed.positions["raw.shopify"], 3);
    }

    /// Compaction keeps one marker per epoch: a fenced-off owner's late marker
    /// replaces the one that committed its epoch's last batch. The fence of
    /// the next owner still commits that batch, and carries its positions.
    #[test]
    fn a_fence_commits_the_batches_its_owner_started_from() {
        let committed = crate::records::FenceCommitted {
            sequence: 0,
            flushed: 0,
            positions: BTreeMap::from([("raw.shopify".to_string(), 3)]),
        };
        let uncompacted = vec![
            rec("a", 1, 0, "a0"),
            marker(1, 0, 3),
            fence_at(2, 1, false, Some(committed.clone())),
            rec("b", 1, 1, "zombie"),
            marker(1, 1, 9),
            rec("c", 2, 1, "c1"),
            marker(2, 1, 4),
        ];
        let (out, ops) = run(uncompacted);
        assert_eq!(ops, vec![w("a", "a0"), w("c", "c1")]);
        assert_eq!(out.committed.positions["raw.shopify"], 4);
        // Compacted: marker(1, 0) gone, the zombie's marker(1, 1) kept.
        let compacted = vec![
            rec("a", 1, 0, "a0"),
            fence_at(2, 1, false, Some(committed)),
            rec("b", 1, 1, "zombie"),
            marker(1, 1, 9),
        ];
        let (out, ops) = run(compacted);
        assert_eq!(
            ops,
            vec![w("a", "a0")],
            "batch 0 was committed before the fence"
        );
        assert_eq!(out.committed.sequence, 0);
        assert_eq!(
            out.committed.positions["raw.shopify"], 3,
            "the fence's positions, not the zombie's"
        );
        assert_eq!(out.repair, vec!["b".to_string()]);
    }

    /// An older epoch's batch the next owner did not find committed is never
    /// committed by a later fence, even once the sequence moved past it.
    #[test]
    fn a_fence_never_commits_an_orphan_of_an_older_epoch() {
        let (out, ops) = run(vec![
            rec("a", 1, 0, "a0"),
            marker(1, 0, 1),
            rec("x", 1, 1, "orphan"),
            fence(2, 1, false),
            rec("y", 2, 1, "y1"),
            marker(2, 1, 2),
            rec("z", 2, 2, "z2"),
            marker(2, 2, 3),
            fence(3, 3, false),
        ]);
        assert_eq!(ops, vec![w("a", "a0"), w("y", "y1"), w("z", "z2")]);
        assert_eq!(out.repair, vec!["x".to_string()]);
        assert_eq!(out.committed.positions["raw.shopify"], 3);
    }

    /// Plays owners, crashes, zombies and compactions at random, and checks
    /// that a restore following a plan from a first pass ends where the
    /// single pass ends: the same state, committed positions and repairs.
    #[test]
    fn a_restore_with_a_plan_ends_like_a_single_pass() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for case in 0..300 {
            let mut log: Vec<StateRecord> = Vec::new();
            let mut committed = -1;
            let mut pos = 0;
            let mut zombie: Option<(i64, i64)> = None;
            for epoch in 1..=(1 + next(5) as i64) {
                log.push(fence(epoch, committed + 1, false));
                if let Some((ze, zs)) = zombie.take()
                    && next(2) == 0
                {
                    // The previous owner, fenced off, goes on writing.
                    log.push(rec(&format!("k{}", next(6)), ze, zs, "zombie"));
                    log.push(marker(ze, zs, 999));
                }
                for _ in 0..next(4) {
                    let seq = committed + 1;
                    for _ in 0..=next(3) {
                        let v = format!("e{epoch}s{seq}");
                        log.push(rec(&format!("k{}", next(6)), epoch, seq, &v));
                    }
                    if next(5) == 0 {
                        break; // crashed before its marker: an orphan batch
                    }
                    pos += 1;
                    log.push(marker(epoch, seq, pos));
                    committed = seq;
                }
                zombie = Some((epoch, committed + 1));
            }
            if next(2) == 0 {
                // Compacted: the newest record of each key.
                let newest: HashMap<String, usize> = log
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.key.clone(), i))
                    .collect();
                log = log
                    .into_iter()
                    .enumerate()
                    .filter(|(i, r)| newest[&r.key] == *i)
                    .map(|(_, r)| r)
                    .collect();
            }
            let mut plan = Plan::new(0);
            for (offset, r) in log.iter().enumerate() {
                plan.read(offset as i64, r);
            }
            let state = |ops: &[Op]| {
                let mut m: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
                for op in ops {
                    if let Op::Write(k, v) = op {
                        m.insert(k.clone(), v.clone());
                    }
                }
                m
            };
            let (single, single_ops) = run(log.clone());
            let mut r = Restorer::new(Committed {
                sequence: -1,
                flushed: -1,
                generation: 1,
                ..Committed::default()
            });
            r.follow(plan);
            let mut ops = Vec::new();
            for (i, x) in log.iter().cloned().enumerate() {
                r.feed(i as i64, x, |b| serde_json::from_slice(b).ok())
                    .unwrap();
                assert_eq!(r.held_back(), 0, "case {case}");
                ops.extend(r.drain());
            }
            let (planned, rest) = r.finish();
            ops.extend(rest);
            assert_eq!(state(&ops), state(&single_ops), "case {case}: {log:?}");
            assert_eq!(planned.committed, single.committed, "case {case}");
            assert_eq!(planned.repair, single.repair, "case {case}: {log:?}");
        }
    }

    /// A million records of one epoch whose only marker is the last record
    /// (what compaction leaves of a long epoch): a single pass holds every one
    /// back until the end; with a plan none is held back.
    #[test]
    fn a_million_record_epoch_is_restored_without_holding_records_back() {
        const BATCHES: i64 = 1_000;
        const PER_BATCH: i64 = 1_000;
        let records = || {
            std::iter::once(fence(1, 0, false))
                .chain((0..BATCHES).flat_map(|seq| {
                    (0..PER_BATCH).map(move |i| rec(&format!("k{seq}/{i}"), 1, seq, "v"))
                }))
                .chain(std::iter::once(marker(1, BATCHES - 1, 7)))
        };
        let mut plan = Plan::new(0);
        for (offset, r) in records().enumerate() {
            plan.read(offset as i64, &r);
        }
        let mut r = Restorer::new(Committed {
            sequence: -1,
            flushed: -1,
            generation: 1,
            ..Committed::default()
        });
        r.follow(plan);
        let (mut applied, mut most_held) = (0usize, 0usize);
        for (offset, x) in records().enumerate() {
            r.feed(offset as i64, x, |b| serde_json::from_slice(b).ok())
                .unwrap();
            most_held = most_held.max(r.held_back());
            applied += r.drain().len();
        }
        let (out, rest) = r.finish();
        assert_eq!(most_held, 0);
        assert_eq!(applied + rest.len(), (BATCHES * PER_BATCH) as usize);
        assert_eq!(out.committed.sequence, BATCHES - 1);
        assert!(out.repair.is_empty());

        // The same epoch in one pass without a plan: everything waits.
        let mut single = Restorer::new(Committed::default());
        for (offset, x) in records().take(100_001).enumerate() {
            single
                .feed(offset as i64, x, |b| serde_json::from_slice(b).ok())
                .unwrap();
        }
        assert_eq!(single.held_back(), 100_000);
    }
}
