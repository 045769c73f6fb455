//! The in-memory tree and what of it survives a power cut. Pure data, no FUSE: the FUSE adapter
//! ([`crate::fs`]) only translates requests into calls here.
//!
//! Every file holds its volatile data (what readers see now), its durable data (what an
//! `fsync`/`fdatasync` last made durable) and the changes made since (writes and truncations,
//! with their bytes: what a cut may keep in part). Every directory holds its volatile entries,
//! its entries as of its last `fsync` (the **strict** model's durable names) and its entries as
//! they would be if every name change were durable at once (the **names-durable** model, what
//! LazyFS does). [`Tree::cut`] keeps the durable part under the chosen [`Cut`]: two axes, which
//! names ([`Model`]) and which data ([`Data`]: only what was synced, or the pending changes torn
//! as [`crate::tear`] allows, drawn from a seed or given exactly). Every mutating operation is
//! also appended to a journal of [`Op`]s, from which [`crate::points`] plans every crash point.
//!
//! Limits, on purpose:
//! - a change covered by a sync of its file is durable whole: a completed sync is never torn;
//! - torn writes follow [`crate::tear`]: byte prefixes and suffixes, subsets of 512-byte
//!   sectors, never a byte outside the write (no garbled neighbours in a shared sector, no bit
//!   rot, no lying disk that acknowledges a flush it did not make);
//! - a torn write's file size follows the bytes kept (a write kept only in part grows the file
//!   only that far), a truncation is kept or not;
//! - the enumeration ([`crate::points`]) is exhaustive only where [`crate::tear`] says (bytes
//!   within one sector, sector subsets up to a 4 KiB page); the seeded cuts draw from the rest;
//! - `fsync` and `fdatasync` are the same here for data (size goes with data); the one
//!   timestamp kept, the modification time (set by writes, truncations and `utimensat`), is
//!   durable only once an `fsync` (not an `fdatasync`) of its file or directory covered it: a
//!   cut takes a node back to the time of its last `fsync`, or of its creation;
//! - metadata is not layered: an `fsync` of a directory makes *all* its pending name changes
//!   durable, unrelated ones included; a file's own `fsync` never makes its name durable in the
//!   strict model (ext4 often does); names and data are independent axes, so a name can be
//!   durable over data that is not (a rename before the file's fsync), as on a real disk;
//! - no `sync(2)`/`syncfs(2)`: they never reach a FUSE filesystem.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::{OsStr, OsString},
    time::SystemTime,
};

use crate::tear::{self, Change, Tear};

/// Which names survive a cut (the data are [`Data`]'s business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// A create, rename or unlink is durable only once its directory was fsynced. Catches a
    /// missing directory fsync.
    Strict,
    /// Every name change is durable at once, file data is not (LazyFS). Catches a missing file
    /// fsync even when a rename made the name durable.
    NamesDurable,
}

/// What of the files' data survives a cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Only what a sync made durable: every pending change is lost whole. The model before torn
    /// writes, and still the harshest one for a recipe that replaces a file.
    Synced,
    /// Each pending change torn one way, drawn from this seed (the same seed and the same
    /// pending changes give the same tears).
    Seeded(u64),
    /// Each pending change torn exactly this way, in the order of [`Tree::pending`]: the
    /// changes must be those pending (same count, same offsets and lengths), else
    /// [`Mismatch`].
    Exactly(Vec<(Change, Tear)>),
}

/// What a power cut keeps: the names of [`Model`] and the data of [`Data`]. A bare [`Model`]
/// is a cut with [`Data::Synced`], as before torn writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub names: Model,
    pub data: Data,
}

impl Cut {
    /// Every pending change torn a way drawn from `seed`.
    pub fn seeded(names: Model, seed: u64) -> Cut {
        Cut {
            names,
            data: Data::Seeded(seed),
        }
    }

    /// Every pending change torn exactly as given (see [`Data::Exactly`]).
    pub fn exactly(names: Model, tears: Vec<(Change, Tear)>) -> Cut {
        Cut {
            names,
            data: Data::Exactly(tears),
        }
    }
}

impl From<Model> for Cut {
    fn from(names: Model) -> Cut {
        Cut {
            names,
            data: Data::Synced,
        }
    }
}

/// A change pending at a cut: made (before any freeze) and not yet covered by a sync of its
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Its place in the journal: the number of mutating operations before it.
    pub op: u64,
    /// The file's inode.
    pub ino: u64,
    pub change: Change,
}

/// [`Data::Exactly`] named changes other than the pending ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the tears given do not match the pending changes: given {given:?}, pending {pending:?}")]
pub struct Mismatch {
    pub given: Vec<(Change, Tear)>,
    pub pending: Vec<Pending>,
}

/// One mutating operation, as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A file or directory created (the new inode).
    Create {
        ino: u64,
    },
    Write {
        ino: u64,
        offset: u64,
        len: u64,
    },
    Truncate {
        ino: u64,
        size: u64,
    },
    /// `fsync` (`datasync: false`) or `fdatasync` of a file, or `fsync` of a directory, as the
    /// kernel sent it.
    Sync {
        ino: u64,
        datasync: bool,
    },
    /// An unlink or rmdir (the inode removed).
    Remove {
        ino: u64,
    },
    /// A rename (the inode moved).
    Rename {
        ino: u64,
    },
}

/// The root directory's inode number (FUSE's).
pub const ROOT: u64 = 1;

/// What a request can fail with; the adapter maps it to an errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    Invalid,
}

pub type FsResult<T> = Result<T, FsError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// The attributes the adapter reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// The modification time (volatile).
    pub mtime: SystemTime,
}

/// A change since the last sync, with the bytes a write wrote.
#[derive(Debug, Clone)]
struct Unsynced {
    op: u64,
    change: Change,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Content {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
        /// Changes since `synced`, in order; `data` is `synced` with all of them applied until
        /// the durable state freezes (later changes are not recorded: they never reach the disk).
        pending: Vec<Unsynced>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
        names: BTreeMap<OsString, u64>,
    },
}

#[derive(Debug, Clone)]
struct Node {
    perm: u16,
    /// The modification time, volatile and as of the last `fsync` (see the module docs).
    mtime: SystemTime,
    synced_mtime: SystemTime,
    uid: u32,
    gid: u32,
    content: Content,
}

/// The whole filesystem. Inode numbers only grow, never reused, not even across cuts.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Mutating operations so far (creates, writes, truncations, name changes, syncs).
    ops: u64,
    /// Every mutating operation, in order: `journal[i]` is operation `i` (`journal.len() == ops`).
    journal: Vec<Op>,
    /// The durable state stops changing after this many operations ([`Tree::crash_after`]).
    freeze_at: Option<u64>,
}

/// The files and directories of a [`Tree`] at one instant, volatile, durable and pending alike:
/// a state that can be cut many ways ([`Tree::restore`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    nodes: HashMap<u64, Node>,
}

impl Default for Tree {
    fn default() -> Self {
        let now = SystemTime::now();
        let root = Node {
            perm: 0o755,
            mtime: now,
            synced_mtime: now,
            uid: 0,
            gid: 0,
            content: Content::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
                names: BTreeMap::new(),
            },
        };
        Tree {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            ops: 0,
            journal: Vec::new(),
            freeze_at: None,
        }
    }
}

impl Tree {
    /// Mutating operations counted since the tree was made.
    pub fn mutating_ops(&self) -> u64 {
        self.ops
    }

    /// Freezes the durable state after `k` more mutating operations: whatever comes later only
    /// changes the volatile state, as if the power had failed right after the k-th. `k = 0`
    /// freezes it now.
    pub fn crash_after(&mut self, k: u64) {
        self.freeze_at = Some(self.ops + k);
    }

    /// Whether the durable state is frozen (the simulated power failure has happened).
    pub fn frozen(&self) -> bool {
        self.freeze_at.is_some_and(|k| self.ops >= k)
    }

    /// Counts one mutating operation and journals it; true when it may still change the
    /// durable state.
    fn tick(&mut self, op: Op) -> bool {
        let durable = !self.frozen();
        self.ops += 1;
        self.journal.push(op);
        durable
    }

    /// The operations from number `mark` on (`mark` as [`Tree::mutating_ops`] returned it).
    pub fn journal_since(&self, mark: u64) -> &[Op] {
        let start = usize::try_from(mark)
            .unwrap_or(usize::MAX)
            .min(self.journal.len());
        &self.journal[start..]
    }

    /// The changes a cut now may tear: made before the freeze (if any), not covered by a sync
    /// of their file, to a file some model could keep (a file unlinked for good, its directory
    /// synced since, is no longer anyone's business), in the order they were made.
    pub fn pending(&self) -> Vec<Pending> {
        let alive = self.reachable(true);
        let mut all: Vec<Pending> = self
            .nodes
            .iter()
            .filter(|(ino, _)| alive.contains(ino))
            .flat_map(|(&ino, node)| match &node.content {
                Content::File { pending, .. } => pending
                    .iter()
                    .map(|u| Pending {
                        op: u.op,
                        ino,
                        change: u.change,
                    })
                    .collect(),
                Content::Dir { .. } => Vec::new(),
            })
            .collect();
        all.sort_by_key(|p| p.op);
        all
    }

    /// The files and directories as they are now, to [`Tree::restore`] and cut again.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            nodes: self.nodes.clone(),
        }
    }

    /// Puts back the files and directories of `snapshot` (volatile, durable and pending), as
    /// if nothing had happened since it was taken; the operation count, the journal and the
    /// inode numbers keep going.
    pub fn restore(&mut self, snapshot: &Snapshot) {
        self.nodes.clone_from(&snapshot.nodes);
    }

    pub fn attr(&self, ino: u64) -> FsResult<Attr> {
        let node = self.nodes.get(&ino).ok_or(FsError::NotFound)?;
        let (kind, size) = match &node.content {
            Content::File { data, .. } => (Kind::File, data.len() as u64),
            Content::Dir { entries, .. } => (Kind::Dir, entries.len() as u64),
        };
        Ok(Attr {
            ino,
            kind,
            size,
            perm: node.perm,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
        })
    }

    fn entries(&self, dir: u64) -> FsResult<&BTreeMap<OsString, u64>> {
        match &self.nodes.get(&dir).ok_or(FsError::NotFound)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File { .. } => Err(FsError::NotDir),
        }
    }

    pub fn lookup(&self, dir: u64, name: &OsStr) -> FsResult<Attr> {
        let ino = *self.entries(dir)?.get(name).ok_or(FsError::NotFound)?;
        self.attr(ino)
    }

    /// `(name, inode, kind)` of every volatile entry, in name order.
    pub fn list(&self, dir: u64) -> FsResult<Vec<(OsString, u64, Kind)>> {
        self.entries(dir)?
            .iter()
            .map(|(name, &ino)| Ok((name.clone(), ino, self.attr(ino)?.kind)))
            .collect()
    }

    /// Sets a name in `dir` (volatile, and in the names-durable model unless frozen).
    fn set_name(&mut self, dir: u64, name: &OsStr, ino: Option<u64>, durable: bool) {
        if let Some(Node {
            content: Content::Dir { entries, names, .. },
            ..
        }) = self.nodes.get_mut(&dir)
        {
            match ino {
                Some(ino) => {
                    entries.insert(name.to_owned(), ino);
                    if durable {
                        names.insert(name.to_owned(), ino);
                    }
                }
                None => {
                    entries.remove(name);
                    if durable {
                        names.remove(name);
                    }
                }
            }
        }
    }

    pub fn create(
        &mut self,
        dir: u64,
        name: &OsStr,
        kind: Kind,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attr> {
        if self.entries(dir)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ino = self.next_ino;
        let durable = self.tick(Op::Create { ino });
        self.next_ino += 1;
        let content = match kind {
            Kind::File => Content::File {
                data: Vec::new(),
                synced: Vec::new(),
                pending: Vec::new(),
            },
            Kind::Dir => Content::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
                names: BTreeMap::new(),
            },
        };
        let now = SystemTime::now();
        self.nodes.insert(
            ino,
            Node {
                perm,
                mtime: now,
                synced_mtime: now,
                uid,
                gid,
                content,
            },
        );
        self.set_name(dir, name, Some(ino), durable);
        self.attr(ino)
    }

    /// A file's volatile data and its pending changes.
    fn file_mut(&mut self, ino: u64) -> FsResult<(&mut Vec<u8>, &mut Vec<Unsynced>)> {
        match &mut self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.content {
            Content::File { data, pending, .. } => Ok((data, pending)),
            Content::Dir { .. } => Err(FsError::IsDir),
        }
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        match &self.nodes.get(&ino).ok_or(FsError::NotFound)?.content {
            Content::File { data, .. } => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                Ok(data[start..end].to_vec())
            }
            Content::Dir { .. } => Err(FsError::IsDir),
        }
    }

    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> FsResult<u32> {
        self.file_mut(ino)?;
        let written = u32::try_from(bytes.len()).map_err(|_| FsError::Invalid)?;
        usize::try_from(offset)
            .ok()
            .and_then(|start| start.checked_add(bytes.len()))
            .ok_or(FsError::Invalid)?;
        let change = Change::Write {
            offset,
            len: bytes.len() as u64,
        };
        self.change(ino, change, bytes)?;
        Ok(written)
    }

    pub fn truncate(&mut self, ino: u64, size: u64) -> FsResult<()> {
        self.file_mut(ino)?;
        usize::try_from(size).map_err(|_| FsError::Invalid)?;
        self.change(ino, Change::Truncate { size }, &[])
    }

    /// Applies a write or truncation to the volatile data, and records it as pending unless
    /// the durable state is frozen.
    fn change(&mut self, ino: u64, change: Change, bytes: &[u8]) -> FsResult<()> {
        let op = self.ops;
        let journaled = match change {
            Change::Write { offset, len } => Op::Write { ino, offset, len },
            Change::Truncate { size } => Op::Truncate { ino, size },
        };
        let durable = self.tick(journaled);
        self.set_mtime(ino, SystemTime::now())?;
        let (data, pending) = self.file_mut(ino)?;
        // Everything kept: the volatile data is the durable data with every change applied.
        tear::apply(data, change, bytes, Tear::Whole);
        if durable {
            pending.push(Unsynced {
                op,
                change,
                bytes: bytes.to_vec(),
            });
        }
        Ok(())
    }

    pub fn chmod(&mut self, ino: u64, perm: u16) -> FsResult<()> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.perm = perm;
        Ok(())
    }

    /// Sets the modification time (`utimensat`, `futimens`): volatile until an `fsync` of the
    /// node. Not a mutating operation of the journal: it becomes durable only with that
    /// `fsync`, which is one.
    pub fn set_mtime(&mut self, ino: u64, mtime: SystemTime) -> FsResult<()> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.mtime = mtime;
        Ok(())
    }

    /// `fsync` (`datasync: false`) or `fdatasync` of a file, or `fsync` of a directory. The
    /// two are the same for data (a file's size goes with it); only `fsync` makes the
    /// modification time durable.
    pub fn fsync(&mut self, ino: u64, datasync: bool) -> FsResult<()> {
        if !self.nodes.contains_key(&ino) {
            return Err(FsError::NotFound);
        }
        if !self.tick(Op::Sync { ino, datasync }) {
            return Ok(());
        }
        let node = self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
        if !datasync {
            node.synced_mtime = node.mtime;
        }
        match &mut node.content {
            Content::File {
                data,
                synced,
                pending,
            } => {
                synced.clone_from(data);
                pending.clear();
            }
            Content::Dir {
                entries, synced, ..
            } => synced.clone_from(entries),
        }
        Ok(())
    }

    /// unlink (`dir_expected = false`) or rmdir (`true`).
    pub fn remove(&mut self, dir: u64, name: &OsStr, dir_expected: bool) -> FsResult<()> {
        let attr = self.lookup(dir, name)?;
        match (attr.kind, dir_expected) {
            (Kind::Dir, false) => return Err(FsError::IsDir),
            (Kind::File, true) => return Err(FsError::NotDir),
            (Kind::Dir, true) if !self.entries(attr.ino)?.is_empty() => {
                return Err(FsError::NotEmpty);
            }
            _ => {}
        }
        let durable = self.tick(Op::Remove { ino: attr.ino });
        self.set_name(dir, name, None, durable);
        Ok(())
    }

    /// rename(2); `noreplace` is `RENAME_NOREPLACE`.
    pub fn rename(
        &mut self,
        dir: u64,
        name: &OsStr,
        new_dir: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> FsResult<()> {
        let moved = self.lookup(dir, name)?;
        self.entries(new_dir)?;
        if let Ok(target) = self.lookup(new_dir, new_name) {
            if target.ino == moved.ino {
                return Ok(());
            }
            if noreplace {
                return Err(FsError::Exists);
            }
            match (moved.kind, target.kind) {
                (Kind::File, Kind::Dir) => return Err(FsError::IsDir),
                (Kind::Dir, Kind::File) => return Err(FsError::NotDir),
                (Kind::Dir, Kind::Dir) if !self.entries(target.ino)?.is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                _ => {}
            }
        }
        let durable = self.tick(Op::Rename { ino: moved.ino });
        self.set_name(dir, name, None, durable);
        self.set_name(new_dir, new_name, Some(moved.ino), durable);
        Ok(())
    }

    /// How `data` tears each of `pending`, or why it cannot.
    fn tears(data: Data, pending: &[Pending]) -> Result<Vec<Tear>, Mismatch> {
        match data {
            Data::Synced => Ok(vec![Tear::Lost; pending.len()]),
            Data::Seeded(seed) => {
                let mut rng = fastrand::Rng::with_seed(seed);
                Ok(pending.iter().map(|p| p.change.draw(&mut rng)).collect())
            }
            Data::Exactly(given) => {
                let fits = given.len() == pending.len()
                    && given
                        .iter()
                        .zip(pending)
                        .all(|(&(change, tear), p)| change == p.change && change.admits(tear));
                if fits {
                    Ok(given.into_iter().map(|(_, tear)| tear).collect())
                } else {
                    Err(Mismatch {
                        given,
                        pending: pending.to_vec(),
                    })
                }
            }
        }
    }

    /// The power cut: only the durable state under `cut` remains (the synced data with each
    /// pending change torn as `cut.data` says, the names of `cut.names`), and it becomes the
    /// volatile state too. Nodes no longer reachable from the root are forgotten. Unfreezes.
    /// Returns each pending change with the tear it got; on [`Mismatch`], changes nothing.
    pub fn cut(&mut self, cut: impl Into<Cut>) -> Result<Vec<(Pending, Tear)>, Mismatch> {
        let Cut { names: model, data } = cut.into();
        let pending = self.pending();
        let tears = Self::tears(data, &pending)?;
        let torn: HashMap<u64, Tear> = pending.iter().map(|p| p.op).zip(tears.clone()).collect();
        for node in self.nodes.values_mut() {
            node.mtime = node.synced_mtime;
            match &mut node.content {
                Content::File {
                    data,
                    synced,
                    pending,
                } => {
                    for u in pending.drain(..) {
                        // Not listed: a file no model keeps, forgotten below.
                        let tear = torn.get(&u.op).copied().unwrap_or(Tear::Lost);
                        tear::apply(synced, u.change, &u.bytes, tear);
                    }
                    data.clone_from(synced);
                }
                Content::Dir {
                    entries,
                    synced,
                    names,
                } => {
                    let kept = match model {
                        Model::Strict => synced.clone(),
                        Model::NamesDurable => names.clone(),
                    };
                    entries.clone_from(&kept);
                    synced.clone_from(&kept);
                    *names = kept;
                }
            }
        }
        let seen = self.reachable(false);
        // Every kept name points into `seen`: nodes are only ever forgotten here.
        self.nodes.retain(|ino, _| seen.contains(ino));
        self.freeze_at = None;
        Ok(pending.into_iter().zip(tears).collect())
    }

    /// The inodes reachable from the root through volatile entries, or with `any_model`
    /// through volatile, strict or names-durable ones.
    fn reachable(&self, any_model: bool) -> std::collections::HashSet<u64> {
        let mut reachable = vec![ROOT];
        let mut seen = std::collections::HashSet::new();
        while let Some(ino) = reachable.pop() {
            if !seen.insert(ino) {
                continue;
            }
            if let Some(Node {
                content:
                    Content::Dir {
                        entries,
                        synced,
                        names,
                    },
                ..
            }) = self.nodes.get(&ino)
            {
                reachable.extend(entries.values().copied());
                if any_model {
                    reachable.extend(synced.values().chain(names.values()).copied());
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn new_file(tree: &mut Tree, file: &str, bytes: &[u8]) -> u64 {
        let ino = tree
            .create(ROOT, name(file), Kind::File, 0o644, 0, 0)
            .expect("create")
            .ino;
        tree.write(ino, 0, bytes).expect("write");
        ino
    }

    fn content(tree: &Tree, file: &str) -> Option<Vec<u8>> {
        let ino = tree.lookup(ROOT, name(file)).ok()?.ino;
        Some(tree.read(ino, 0, u32::MAX).expect("read"))
    }

    /// The reference replace: temp file, fsync, rename, fsync of the directory.
    fn replace(tree: &mut Tree, bytes: &[u8], file_fsync: bool, dir_fsync: bool) {
        let ino = new_file(tree, "tmp", bytes);
        if file_fsync {
            tree.fsync(ino, false).expect("fsync");
        }
        tree.rename(ROOT, name("tmp"), ROOT, name("c"), false)
            .expect("rename");
        if dir_fsync {
            tree.fsync(ROOT, false).expect("fsync dir");
        }
    }

    #[test]
    fn unsynced_file_and_name_vanish_in_both_models() {
        for model in [Model::Strict, Model::NamesDurable] {
            let mut tree = Tree::default();
            new_file(&mut tree, "a", b"x");
            tree.cut(model).expect("cut");
            let expected = match model {
                Model::Strict => None,
                Model::NamesDurable => Some(Vec::new()),
            };
            assert_eq!(content(&tree, "a"), expected, "{model:?}");
        }
    }

    #[test]
    fn full_recipe_survives_in_both_models() {
        for model in [Model::Strict, Model::NamesDurable] {
            let mut tree = Tree::default();
            replace(&mut tree, b"1\n", true, true);
            replace(&mut tree, b"2\n", true, true);
            tree.cut(model).expect("cut");
            assert_eq!(content(&tree, "c"), Some(b"2\n".to_vec()), "{model:?}");
            assert_eq!(tree.lookup(ROOT, name("tmp")), Err(FsError::NotFound));
        }
    }

    #[test]
    fn missing_directory_fsync_loses_the_rename_only_in_the_strict_model() {
        let mut tree = Tree::default();
        replace(&mut tree, b"1\n", true, true);
        replace(&mut tree, b"2\n", true, false);
        tree.cut(Model::Strict).expect("cut");
        assert_eq!(content(&tree, "c"), Some(b"1\n".to_vec()));

        let mut tree = Tree::default();
        replace(&mut tree, b"1\n", true, true);
        replace(&mut tree, b"2\n", true, false);
        tree.cut(Model::NamesDurable).expect("cut");
        assert_eq!(content(&tree, "c"), Some(b"2\n".to_vec()));
    }

    #[test]
    fn missing_file_fsync_leaves_an_empty_file() {
        for model in [Model::Strict, Model::NamesDurable] {
            let mut tree = Tree::default();
            replace(&mut tree, b"1\n", true, true);
            replace(&mut tree, b"2\n", false, true);
            tree.cut(model).expect("cut");
            assert_eq!(content(&tree, "c"), Some(Vec::new()), "{model:?}");
        }
    }

    #[test]
    fn crash_after_freezes_the_durable_state_after_k_operations() {
        // create, write, fsync, rename, fsync dir: 5 operations; each prefix gives a known state.
        let expected: [&[u8]; 6] = [b"1\n", b"1\n", b"1\n", b"1\n", b"1\n", b"2\n"];
        for (k, want) in expected.iter().enumerate() {
            let mut tree = Tree::default();
            replace(&mut tree, b"1\n", true, true);
            let before = tree.mutating_ops();
            tree.crash_after(k as u64);
            replace(&mut tree, b"2\n", true, true);
            assert_eq!(tree.mutating_ops() - before, 5);
            // The power fails right after the k-th operation: frozen even when k = 5.
            assert!(tree.frozen(), "k={k}");
            assert_eq!(
                content(&tree, "c"),
                Some(b"2\n".to_vec()),
                "volatile, k={k}"
            );
            tree.cut(Model::Strict).expect("cut");
            assert_eq!(content(&tree, "c"), Some(want.to_vec()), "k={k}");
            assert!(!tree.frozen());
        }
        let mut tree = Tree::default();
        tree.crash_after(6);
        replace(&mut tree, b"2\n", true, true);
        assert!(!tree.frozen(), "the power has not failed yet");
    }

    #[test]
    fn names_durable_model_freezes_names_too() {
        let mut tree = Tree::default();
        tree.crash_after(1);
        new_file(&mut tree, "a", b"");
        new_file(&mut tree, "b", b"");
        tree.cut(Model::NamesDurable).expect("cut");
        assert!(content(&tree, "a").is_some());
        assert!(content(&tree, "b").is_none());
    }

    #[test]
    fn inode_numbers_are_never_reused() {
        let mut tree = Tree::default();
        let a = new_file(&mut tree, "a", b"");
        tree.cut(Model::Strict).expect("cut");
        let b = new_file(&mut tree, "a", b"");
        assert!(b > a);
    }

    fn pending_changes(tree: &Tree) -> Vec<Change> {
        tree.pending().into_iter().map(|p| p.change).collect()
    }

    fn write(offset: u64, len: usize) -> Change {
        Change::Write {
            offset,
            len: len as u64,
        }
    }

    #[test]
    fn an_unsynced_rewrite_in_place_tears_only_under_torn_data() {
        let rewrite = |tree: &mut Tree| {
            let ino = new_file(tree, "c", b"9\n");
            tree.fsync(ino, true).expect("fdatasync");
            tree.fsync(ROOT, false).expect("fsync dir");
            tree.write(ino, 0, b"10\n").expect("rewrite");
        };
        let mut tree = Tree::default();
        rewrite(&mut tree);
        assert_eq!(pending_changes(&tree), [write(0, 3)]);
        let kept = tree.cut(Model::Strict).expect("cut");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1, Tear::Lost);
        assert_eq!(content(&tree, "c"), Some(b"9\n".to_vec()));
        assert_eq!(tree.pending(), []);

        for (tear, left) in [
            (Tear::Prefix(1), b"1\n".as_slice()),
            (Tear::Prefix(2), b"10"),
            (Tear::Suffix(1), b"9\n\n"),
            (Tear::Suffix(2), b"90\n"),
            (Tear::Whole, b"10\n"),
        ] {
            let mut tree = Tree::default();
            rewrite(&mut tree);
            tree.cut(Cut::exactly(Model::Strict, vec![(write(0, 3), tear)]))
                .expect("cut");
            assert_eq!(content(&tree, "c"), Some(left.to_vec()), "{tear:?}");
        }
    }

    #[test]
    fn a_sector_written_twice_before_a_sync_ends_in_any_of_its_versions() {
        for (tears, left) in [
            ([Tear::Lost, Tear::Lost], b'o'),
            ([Tear::Whole, Tear::Lost], b'a'),
            ([Tear::Lost, Tear::Whole], b'b'),
            ([Tear::Whole, Tear::Whole], b'b'),
        ] {
            let mut tree = Tree::default();
            let ino = new_file(&mut tree, "f", &[b'o'; 512]);
            tree.fsync(ino, false).expect("fsync");
            tree.fsync(ROOT, false).expect("fsync dir");
            tree.write(ino, 0, &[b'a'; 512]).expect("write a");
            tree.write(ino, 0, &[b'b'; 512]).expect("write b");
            let given = vec![(write(0, 512), tears[0]), (write(0, 512), tears[1])];
            tree.cut(Cut::exactly(Model::NamesDurable, given))
                .expect("cut");
            assert_eq!(content(&tree, "f"), Some(vec![left; 512]), "{tears:?}");
        }
    }

    #[test]
    fn a_modification_time_is_durable_only_once_an_fsync_covered_it() {
        let mut tree = Tree::default();
        let attr = tree
            .create(ROOT, name("m"), Kind::File, 0o644, 0, 0)
            .expect("create");
        let (ino, created) = (attr.ino, attr.mtime);
        let mtime = |tree: &Tree| tree.attr(ino).expect("attr").mtime;
        tree.fsync(ROOT, false).expect("fsync the directory");
        let t = |secs| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        tree.set_mtime(ino, t(1)).expect("set");
        assert_eq!(mtime(&tree), t(1));
        tree.cut(Model::Strict).expect("cut");
        assert_eq!(mtime(&tree), created, "never synced: the creation time");
        tree.set_mtime(ino, t(2)).expect("set");
        tree.fsync(ino, true).expect("fdatasync");
        tree.cut(Model::Strict).expect("cut");
        assert_eq!(mtime(&tree), created, "an fdatasync leaves it");
        tree.set_mtime(ino, t(3)).expect("set");
        tree.fsync(ino, false).expect("fsync");
        tree.set_mtime(ino, t(4)).expect("set");
        tree.cut(Model::NamesDurable).expect("cut");
        assert_eq!(mtime(&tree), t(3), "as of the last fsync");
    }

    #[test]
    fn a_sync_makes_its_files_changes_durable_and_only_before_the_freeze() {
        let mut tree = Tree::default();
        let a = new_file(&mut tree, "a", b"a1");
        let b = new_file(&mut tree, "b", b"b1");
        tree.truncate(a, 1).expect("truncate");
        assert_eq!(
            pending_changes(&tree),
            [write(0, 2), write(0, 2), Change::Truncate { size: 1 }]
        );
        tree.fsync(a, true).expect("fdatasync a");
        let pending = tree.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].ino, pending[0].op), (b, 3));
        tree.crash_after(0);
        tree.write(a, 0, b"x").expect("after the power failed");
        tree.fsync(b, false).expect("too late");
        // Neither the write after the freeze nor the sync after it changes what is pending.
        assert_eq!(tree.pending(), pending);
        let kept = tree.cut(Cut::exactly(
            Model::NamesDurable,
            vec![(write(0, 2), Tear::Prefix(1))],
        ));
        assert_eq!(kept.map(|k| k.len()), Ok(1));
        assert_eq!(content(&tree, "a"), Some(b"a".to_vec()));
        assert_eq!(content(&tree, "b"), Some(b"b".to_vec()));
    }

    #[test]
    fn a_file_unlinked_for_good_has_nothing_pending() {
        let mut tree = Tree::default();
        let ino = new_file(&mut tree, "a", b"x");
        tree.fsync(ROOT, false).expect("fsync dir");
        tree.remove(ROOT, name("a"), false).expect("unlink");
        // The unlink is not durable in the strict model yet: the write still matters.
        assert_eq!(pending_changes(&tree), [write(0, 1)]);
        tree.fsync(ROOT, false).expect("fsync dir");
        assert_eq!(tree.pending(), []);
        tree.write(ino, 1, b"y")
            .expect("write to the open, unlinked file");
        assert_eq!(tree.cut(Model::Strict).expect("cut"), []);
        assert_eq!(tree.attr(ino), Err(FsError::NotFound));
    }

    #[test]
    fn an_exact_cut_naming_other_changes_is_refused_and_cuts_nothing() {
        let mut tree = Tree::default();
        let ino = new_file(&mut tree, "a", b"abc");
        for given in [
            vec![],
            vec![(write(0, 4), Tear::Whole)],
            vec![(write(0, 3), Tear::Prefix(3))],
            vec![(write(0, 3), Tear::Whole), (write(0, 3), Tear::Whole)],
        ] {
            let err = tree
                .cut(Cut::exactly(Model::NamesDurable, given.clone()))
                .expect_err("a mismatch");
            assert_eq!(err.given, given);
            assert_eq!(pending_changes(&tree), [write(0, 3)]);
        }
        tree.write(ino, 3, b"d")
            .expect("still mounted, still volatile");
        assert_eq!(content(&tree, "a"), Some(b"abcd".to_vec()));
    }

    #[test]
    fn keeping_every_pending_change_whole_keeps_what_readers_saw() {
        // Random writes, truncations and syncs on two files: a cut that keeps every pending
        // change whole leaves exactly the volatile data, and a seeded cut is reproducible.
        for seed in 0..50 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut tree = Tree::default();
            let files = [new_file(&mut tree, "a", b""), new_file(&mut tree, "b", b"")];
            tree.fsync(ROOT, false).expect("fsync dir");
            for _ in 0..20 {
                let ino = files[rng.usize(0..2)];
                match rng.u8(0..5) {
                    0 => tree.truncate(ino, rng.u64(0..3000)).expect("truncate"),
                    1 => tree.fsync(ino, rng.bool()).expect("fsync"),
                    _ => {
                        let bytes = vec![rng.u8(1..); rng.usize(1..1500)];
                        tree.write(ino, rng.u64(0..3000), &bytes).expect("write");
                    }
                }
            }
            let seen = (content(&tree, "a"), content(&tree, "b"));
            let mut seeded = tree.clone();
            let whole = tree.pending().into_iter().map(|p| (p.change, Tear::Whole));
            tree.cut(Cut::exactly(Model::Strict, whole.collect()))
                .expect("cut");
            assert_eq!((content(&tree, "a"), content(&tree, "b")), seen, "{seed}");

            let mut again = seeded.clone();
            let first = seeded.cut(Cut::seeded(Model::Strict, seed)).expect("cut");
            let second = again.cut(Cut::seeded(Model::Strict, seed)).expect("cut");
            assert_eq!(first, second);
            assert_eq!(content(&seeded, "a"), content(&again, "a"));
        }
    }

    #[test]
    fn a_snapshot_is_cut_many_ways() {
        let mut tree = Tree::default();
        let ino = new_file(&mut tree, "a", b"old");
        tree.fsync(ino, false).expect("fsync");
        tree.fsync(ROOT, false).expect("fsync dir");
        tree.write(ino, 0, b"NEW").expect("rewrite");
        let snapshot = tree.snapshot();
        let ops = tree.mutating_ops();
        for (tear, left) in [(Tear::Prefix(1), b"Nld"), (Tear::Suffix(1), b"olW")] {
            tree.restore(&snapshot);
            tree.cut(Cut::exactly(Model::Strict, vec![(write(0, 3), tear)]))
                .expect("cut");
            assert_eq!(content(&tree, "a"), Some(left.to_vec()));
            tree.write(ino, 0, b"zzz").expect("a check that writes");
        }
        assert_eq!(tree.mutating_ops(), ops + 2, "the count keeps going");
    }

    #[test]
    fn the_journal_records_each_operation_and_fdatasync_apart() {
        let mut tree = Tree::default();
        let mark = tree.mutating_ops();
        let ino = new_file(&mut tree, "a", b"xy");
        tree.fsync(ino, true).expect("fdatasync");
        tree.truncate(ino, 0).expect("truncate");
        tree.fsync(ino, false).expect("fsync");
        tree.rename(ROOT, name("a"), ROOT, name("b"), false)
            .expect("rename");
        tree.fsync(ROOT, false).expect("fsync dir");
        tree.remove(ROOT, name("b"), false).expect("unlink");
        assert_eq!(
            tree.journal_since(mark),
            [
                Op::Create { ino },
                Op::Write {
                    ino,
                    offset: 0,
                    len: 2
                },
                Op::Sync {
                    ino,
                    datasync: true
                },
                Op::Truncate { ino, size: 0 },
                Op::Sync {
                    ino,
                    datasync: false
                },
                Op::Rename { ino },
                Op::Sync {
                    ino: ROOT,
                    datasync: false
                },
                Op::Remove { ino },
            ]
        );
        assert_eq!(tree.journal_since(5).len(), 3);
        assert_eq!(tree.journal_since(100), []);
    }

    #[test]
    fn names_errors() {
        let mut tree = Tree::default();
        new_file(&mut tree, "a", b"");
        let d = tree
            .create(ROOT, name("d"), Kind::Dir, 0o755, 0, 0)
            .expect("mkdir")
            .ino;
        tree.create(d, name("x"), Kind::File, 0o644, 0, 0)
            .expect("create");
        assert_eq!(
            tree.create(ROOT, name("a"), Kind::File, 0o644, 0, 0),
            Err(FsError::Exists)
        );
        assert_eq!(tree.remove(ROOT, name("d"), true), Err(FsError::NotEmpty));
        assert_eq!(tree.remove(ROOT, name("a"), true), Err(FsError::NotDir));
        assert_eq!(tree.remove(ROOT, name("d"), false), Err(FsError::IsDir));
        assert_eq!(
            tree.rename(ROOT, name("a"), ROOT, name("d"), false),
            Err(FsError::IsDir)
        );
        assert_eq!(
            tree.rename(d, name("x"), ROOT, name("a"), true),
            Err(FsError::Exists)
        );
        tree.rename(d, name("x"), ROOT, name("a"), false)
            .expect("rename");
        tree.remove(ROOT, name("d"), true).expect("rmdir");
        let names: Vec<OsString> = tree
            .list(ROOT)
            .expect("list")
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, vec![OsString::from("a")]);
    }
}
