//! The in-memory tree and what of it survives a power cut. Pure data, no FUSE: the FUSE adapter
//! ([`crate::fs`]) only translates requests into calls here.
//!
//! Every file holds its volatile data (what readers see now) and its durable data (what an
//! `fsync`/`fdatasync` last made durable). Every directory holds its volatile entries, its
//! entries as of its last `fsync` (the **strict** model's durable names) and its entries as they
//! would be if every name change were durable at once (the **names-durable** model, what LazyFS
//! does). [`Tree::cut`] keeps only the durable part under the chosen [`Model`].
//!
//! Limits, on purpose: no torn writes (a synced file is whole, an unsynced one is whatever was
//! last synced, never a mix of the two), no partial persistence of unsynced writes, no reordering
//! inside one `fsync`, and metadata is not layered (an `fsync` of a directory makes *all* its
//! pending name changes durable, unrelated ones included; a file's size and data go together).

use std::{
    collections::{BTreeMap, HashMap},
    ffi::{OsStr, OsString},
};

/// Which names survive a cut. File data is the same in both: only what was fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// A create, rename or unlink is durable only once its directory was fsynced. Catches a
    /// missing directory fsync.
    Strict,
    /// Every name change is durable at once, file data is not (LazyFS). Catches a missing file
    /// fsync even when a rename made the name durable.
    NamesDurable,
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
}

#[derive(Debug, Clone)]
enum Content {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
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
    uid: u32,
    gid: u32,
    content: Content,
}

/// The whole filesystem. Inode numbers only grow, never reused, not even across cuts.
#[derive(Debug)]
pub struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Mutating operations so far (creates, writes, truncations, name changes, syncs).
    ops: u64,
    /// The durable state stops changing after this many operations ([`Tree::crash_after`]).
    freeze_at: Option<u64>,
}

impl Default for Tree {
    fn default() -> Self {
        let root = Node {
            perm: 0o755,
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

    /// Counts one mutating operation; true when it may still change the durable state.
    fn tick(&mut self) -> bool {
        let durable = !self.frozen();
        self.ops += 1;
        durable
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
        let durable = self.tick();
        let ino = self.next_ino;
        self.next_ino += 1;
        let content = match kind {
            Kind::File => Content::File {
                data: Vec::new(),
                synced: Vec::new(),
            },
            Kind::Dir => Content::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
                names: BTreeMap::new(),
            },
        };
        self.nodes.insert(
            ino,
            Node {
                perm,
                uid,
                gid,
                content,
            },
        );
        self.set_name(dir, name, Some(ino), durable);
        self.attr(ino)
    }

    fn data_mut(&mut self, ino: u64) -> FsResult<&mut Vec<u8>> {
        match &mut self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.content {
            Content::File { data, .. } => Ok(data),
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
        self.data_mut(ino)?;
        self.tick();
        let data = self.data_mut(ino)?;
        let start = usize::try_from(offset).map_err(|_| FsError::Invalid)?;
        let end = start + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        u32::try_from(bytes.len()).map_err(|_| FsError::Invalid)
    }

    pub fn truncate(&mut self, ino: u64, size: u64) -> FsResult<()> {
        self.data_mut(ino)?;
        self.tick();
        let size = usize::try_from(size).map_err(|_| FsError::Invalid)?;
        self.data_mut(ino)?.resize(size, 0);
        Ok(())
    }

    pub fn chmod(&mut self, ino: u64, perm: u16) -> FsResult<()> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.perm = perm;
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory.
    pub fn fsync(&mut self, ino: u64) -> FsResult<()> {
        if !self.nodes.contains_key(&ino) {
            return Err(FsError::NotFound);
        }
        if !self.tick() {
            return Ok(());
        }
        match &mut self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.content {
            Content::File { data, synced } => synced.clone_from(data),
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
        let durable = self.tick();
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
        let durable = self.tick();
        self.set_name(dir, name, None, durable);
        self.set_name(new_dir, new_name, Some(moved.ino), durable);
        Ok(())
    }

    /// The power cut: only the durable state under `model` remains, and it becomes the volatile
    /// state too. Nodes no longer reachable from the root are forgotten. Unfreezes.
    pub fn cut(&mut self, model: Model) {
        for node in self.nodes.values_mut() {
            match &mut node.content {
                Content::File { data, synced } => data.clone_from(synced),
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
        let mut reachable = vec![ROOT];
        let mut seen = std::collections::HashSet::new();
        while let Some(ino) = reachable.pop() {
            if !seen.insert(ino) {
                continue;
            }
            if let Some(Node {
                content: Content::Dir { entries, .. },
                ..
            }) = self.nodes.get(&ino)
            {
                reachable.extend(entries.values().copied());
            }
        }
        // Every kept name points into `seen`: nodes are only ever forgotten here.
        self.nodes.retain(|ino, _| seen.contains(ino));
        self.freeze_at = None;
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
            tree.fsync(ino).expect("fsync");
        }
        tree.rename(ROOT, name("tmp"), ROOT, name("c"), false)
            .expect("rename");
        if dir_fsync {
            tree.fsync(ROOT).expect("fsync dir");
        }
    }

    #[test]
    fn unsynced_file_and_name_vanish_in_both_models() {
        for model in [Model::Strict, Model::NamesDurable] {
            let mut tree = Tree::default();
            new_file(&mut tree, "a", b"x");
            tree.cut(model);
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
            tree.cut(model);
            assert_eq!(content(&tree, "c"), Some(b"2\n".to_vec()), "{model:?}");
            assert_eq!(tree.lookup(ROOT, name("tmp")), Err(FsError::NotFound));
        }
    }

    #[test]
    fn missing_directory_fsync_loses_the_rename_only_in_the_strict_model() {
        let mut tree = Tree::default();
        replace(&mut tree, b"1\n", true, true);
        replace(&mut tree, b"2\n", true, false);
        tree.cut(Model::Strict);
        assert_eq!(content(&tree, "c"), Some(b"1\n".to_vec()));

        let mut tree = Tree::default();
        replace(&mut tree, b"1\n", true, true);
        replace(&mut tree, b"2\n", true, false);
        tree.cut(Model::NamesDurable);
        assert_eq!(content(&tree, "c"), Some(b"2\n".to_vec()));
    }

    #[test]
    fn missing_file_fsync_leaves_an_empty_file() {
        for model in [Model::Strict, Model::NamesDurable] {
            let mut tree = Tree::default();
            replace(&mut tree, b"1\n", true, true);
            replace(&mut tree, b"2\n", false, true);
            tree.cut(model);
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
            tree.cut(Model::Strict);
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
        tree.cut(Model::NamesDurable);
        assert!(content(&tree, "a").is_some());
        assert!(content(&tree, "b").is_none());
    }

    #[test]
    fn inode_numbers_are_never_reused() {
        let mut tree = Tree::default();
        let a = new_file(&mut tree, "a", b"");
        tree.cut(Model::Strict);
        let b = new_file(&mut tree, "a", b"");
        assert!(b > a);
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
