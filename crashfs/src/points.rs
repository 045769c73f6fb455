//! Every crash point of a recipe, planned from its journal: for each `k` from 0 to one past
//! its last operation (the power failing after its `k`-th operation; past the last, after it
//! returned), in each names [`Model`], every way ([`Change::tears`]) the changes then pending
//! can be torn: the product over the pending changes, each of its own tears.
//!
//! A plan comes from one run of the recipe ([`crate::CrashFs::journal_since`]); a test then
//! replays the recipe once per point with [`crate::CrashFs::crash_after`] and cuts with
//! [`CrashPoint::cut`]. Or, to run the recipe once per `k` only (a real binary is slow to
//! start, and may do something else on a replay), it takes a [`crate::CrashFs::snapshot`]
//! after each run and cuts it each way [`every_cut`] lists. A cut checks that the changes
//! pending are the planned ones ([`crate::model::Mismatch`]), so a recipe that does something
//! else on the replay, or a change left pending from before the plan's first operation, fails
//! loudly instead of being cut some other way.

use std::{collections::BTreeMap, fmt};

use crate::{
    model::{Cut, Model, Op, Pending},
    tear::{Change, Tear},
};

/// One crash point: the power fails after `after` operations of the recipe, the names of
/// `names` survive, and each change pending then is torn as `tears` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashPoint {
    /// What to pass [`crate::CrashFs::crash_after`] just before the recipe runs.
    pub after: u64,
    pub names: Model,
    /// Each pending change, in the order made, with its tear.
    pub tears: Vec<(Change, Tear)>,
}

impl CrashPoint {
    /// The cut that makes this crash point.
    pub fn cut(&self) -> Cut {
        Cut::exactly(self.names, self.tears.clone())
    }
}

impl fmt::Display for CrashPoint {
    /// `Strict, after 1: write 3 B at 0 Prefix(1)`: what a failure message should name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}, after {}", self.names, self.after)?;
        let mut sep = ":";
        for (change, tear) in &self.tears {
            match change {
                Change::Write { offset, len } => {
                    write!(f, "{sep} write {len} B at {offset} {tear:?}")?;
                }
                Change::Truncate { size } => write!(f, "{sep} truncate to {size} {tear:?}")?,
            }
            sep = ",";
        }
        Ok(())
    }
}

/// The change an operation makes to a file's data, with the file's inode.
fn change(op: &Op) -> Option<(u64, Change)> {
    match *op {
        Op::Write { ino, offset, len } => Some((ino, Change::Write { offset, len })),
        Op::Truncate { ino, size } => Some((ino, Change::Truncate { size })),
        _ => None,
    }
}

/// The changes pending after the first `k` operations of `journal` (none pending before it),
/// in the order made.
pub fn pending_after(journal: &[Op], k: usize) -> Vec<Change> {
    // Per inode, the (index, change) not yet synced.
    let mut pending: BTreeMap<u64, Vec<(usize, Change)>> = BTreeMap::new();
    for (i, op) in journal.iter().take(k).enumerate() {
        if let Some((ino, change)) = change(op) {
            pending.entry(ino).or_default().push((i, change));
        } else if let Op::Sync { ino, .. } = op {
            pending.remove(ino);
        }
    }
    let mut all: Vec<(usize, Change)> = pending.into_values().flatten().collect();
    all.sort_by_key(|&(i, _)| i);
    all.into_iter().map(|(_, change)| change).collect()
}

/// Every combination of the changes' tears: the product of their [`Change::tears`].
pub fn every_tear(changes: &[Change]) -> Vec<Vec<(Change, Tear)>> {
    changes.iter().fold(vec![Vec::new()], |combos, &change| {
        let tears = change.tears();
        combos
            .iter()
            .flat_map(|combo| {
                tears.iter().map(move |&tear| {
                    let mut next = combo.clone();
                    next.push((change, tear));
                    next
                })
            })
            .collect()
    })
}

/// Every cut of the changes pending now ([`crate::CrashFs::pending`]), in both models: for a
/// test that runs the recipe once per `k`, takes a [`crate::CrashFs::snapshot`] and cuts it
/// each way with [`crate::CrashFs::cut_power_from`]. The strict model's first.
pub fn every_cut(pending: &[Pending]) -> Vec<Cut> {
    let changes: Vec<Change> = pending.iter().map(|p| p.change).collect();
    let combos = every_tear(&changes);
    [Model::Strict, Model::NamesDurable]
        .into_iter()
        .flat_map(|names| {
            combos
                .iter()
                .map(move |tears| Cut::exactly(names, tears.clone()))
        })
        .collect()
}

/// Every crash point of the recipe whose operations are `journal` (run from a state with
/// nothing pending), in both models: the strict model's first, each by `after`, then the
/// names-durable model's in the same order.
pub fn every_crash_point(journal: &[Op]) -> Vec<CrashPoint> {
    let mut points = Vec::new();
    for names in [Model::Strict, Model::NamesDurable] {
        for k in 0..=journal.len() + 1 {
            for tears in every_tear(&pending_after(journal, k)) {
                points.push(CrashPoint {
                    after: k as u64,
                    names,
                    tears,
                });
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: u64 = 5;
    const TMP: u64 = 6;

    fn record_write() -> [Op; 2] {
        [
            Op::Write {
                ino: LOCK,
                offset: 4096,
                len: 32,
            },
            Op::Sync {
                ino: LOCK,
                datasync: true,
            },
        ]
    }

    #[test]
    fn a_record_write_has_64_crash_points_at_its_write_and_one_elsewhere() {
        let journal = record_write();
        let points = every_crash_point(&journal);
        let after = |k| points.iter().filter(|p| p.after == k).count() / 2;
        // Before the write, at it (every tear of 32 bytes), after the sync, after the return.
        assert_eq!((after(0), after(1), after(2), after(3)), (1, 64, 1, 1));
        assert_eq!(points.len(), 2 * 67);
        assert_eq!(
            points[3].to_string(),
            "Strict, after 1: write 32 B at 4096 Prefix(1)"
        );
        assert_eq!(points[0].tears, []);
        assert_eq!(points[0].cut(), Cut::exactly(Model::Strict, vec![]));
        assert_eq!(points[67].names, Model::NamesDurable);
    }

    #[test]
    fn changes_stay_pending_until_their_own_file_is_synced() {
        let w = |ino, len| Op::Write {
            ino,
            offset: 0,
            len,
        };
        let journal = [
            w(TMP, 2),
            Op::Sync {
                ino: 1,
                datasync: false,
            },
            w(LOCK, 3),
            Op::Truncate { ino: TMP, size: 0 },
            Op::Sync {
                ino: TMP,
                datasync: false,
            },
            Op::Rename { ino: TMP },
        ];
        let two = Change::Write { offset: 0, len: 2 };
        let three = Change::Write { offset: 0, len: 3 };
        assert_eq!(pending_after(&journal, 2), [two]);
        assert_eq!(
            pending_after(&journal, 4),
            [two, three, Change::Truncate { size: 0 }]
        );
        assert_eq!(pending_after(&journal, 6), [three]);
        // 4 tears of 2 bytes, 6 of 3 bytes, 2 of a truncation.
        assert_eq!(every_tear(&pending_after(&journal, 4)).len(), 4 * 6 * 2);
        assert_eq!(every_tear(&[]), [Vec::new()]);
    }

    #[test]
    fn every_cut_of_what_is_pending_now_in_both_models() {
        let record = Change::Write { offset: 0, len: 32 };
        let pending = [Pending {
            op: 41,
            ino: LOCK,
            change: record,
        }];
        let cuts = every_cut(&pending);
        assert_eq!(cuts.len(), 2 * 64);
        assert_eq!(
            cuts[64],
            Cut::exactly(Model::NamesDurable, vec![(record, Tear::Lost)])
        );
        assert_eq!(
            every_cut(&[]),
            [
                Cut::exactly(Model::Strict, vec![]),
                Cut::exactly(Model::NamesDurable, vec![])
            ]
        );
    }
}
