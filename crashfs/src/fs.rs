//! The FUSE adapter: translates kernel requests into calls on the shared [`Tree`].
//!
//! What it promises the kernel, so that nothing stale survives a cut: entry and attribute
//! timeouts of zero and direct I/O on every open (the kernel caches neither names nor data), and
//! real `fsync`/`fsyncdir` answers (fuser's default answers ENOSYS, after which the kernel stops
//! asking and reports every later fsync as a success). `fdatasync` reaches `fsync` with its
//! `datasync` flag set; the journal keeps the flag, the model treats both alike. Direct I/O
//! also means one `pwrite` up to the kernel's size limit for one FUSE request (128 KiB or more)
//! is one WRITE request: one operation, one change a cut may tear. No lock operations are implemented, so
//! the kernel keeps `flock` and POSIX locks itself, across every process on the mount.

use std::{
    ffi::OsStr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, UNIX_EPOCH},
};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::{
    faults::Faults,
    model::{Attr, FsError, FsResult, Kind, Tree},
};

/// Nothing may be cached by the kernel: after a cut it must ask again.
const TTL: Duration = Duration::ZERO;

/// The filesystem the kernel talks to; the [`Tree`] is shared with the [`crate::CrashFs`] handle.
#[derive(Debug)]
pub(crate) struct Adapter {
    pub(crate) tree: Arc<Mutex<Tree>>,
    /// Files and directories opened and not yet released in this mount. A close(2) sends its
    /// RELEASE asynchronously, so a cut waits for this to reach zero before it unmounts.
    pub(crate) handles: Arc<AtomicU64>,
    /// A hung volume, failing flushes: see [`crate::faults`].
    pub(crate) faults: Arc<Faults>,
}

impl Adapter {
    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic while holding the lock leaves the tree as consistent as any single call does.
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `ino` durable and answers, after the delay of a slow disk if one is set
    /// ([`crate::CrashFs::delay_syncs`]). The delayed flush is answered from a thread of its
    /// own, so that the session goes on answering everything else meanwhile, as a disk whose
    /// flushes are slow still serves reads from the cache. What becomes durable is what was
    /// written when the flush is answered, as when a disk's flush completes.
    fn sync_after_delay(&self, ino: INodeNo, datasync: bool, reply: ReplyEmpty) {
        let delay = self.faults.sync_delay();
        if delay.is_zero() {
            return empty(reply, self.tree().fsync(ino.0, datasync));
        }
        let tree = self.tree.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let synced = tree
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fsync(ino.0, datasync);
            empty(reply, synced);
        });
    }
}

fn errno(e: FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::Invalid => Errno::EINVAL,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn file_attr(a: Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: UNIX_EPOCH,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: match a.kind {
            Kind::File => 1,
            Kind::Dir => 2,
        },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn entry(reply: ReplyEntry, result: FsResult<Attr>) {
    match result {
        Ok(a) => reply.entry(&TTL, &file_attr(a), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn empty(reply: ReplyEmpty, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    // Only the permission bits; the mask keeps the value within u16.
    u16::try_from(mode & !umask & 0o7777).unwrap_or(0o644)
}

impl Filesystem for Adapter {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.faults.wait_while_hung();
        entry(reply, self.tree().lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.faults.wait_while_hung();
        match self.tree().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.faults.wait_while_hung();
        let mut tree = self.tree();
        let result = (|| {
            if let Some(size) = size {
                tree.truncate(ino.0, size)?;
            }
            if let Some(mode) = mode {
                tree.chmod(ino.0, perm(mode, 0))?;
            }
            match mtime {
                Some(TimeOrNow::SpecificTime(t)) => tree.set_mtime(ino.0, t)?,
                Some(TimeOrNow::Now) => tree.set_mtime(ino.0, std::time::SystemTime::now())?,
                None => {}
            }
            tree.attr(ino.0)
        })();
        match result {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.faults.wait_while_hung();
        if mode & 0o170000 != 0o100000 {
            // Regular files only: nothing in the services makes anything else.
            return reply.error(Errno::EPERM);
        }
        let result = self.tree().create(
            parent.0,
            name,
            Kind::File,
            perm(mode, umask),
            req.uid(),
            req.gid(),
        );
        entry(reply, result);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.tree().create(
            parent.0,
            name,
            Kind::Dir,
            perm(mode, umask),
            req.uid(),
            req.gid(),
        );
        entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.faults.wait_while_hung();
        empty(reply, self.tree().remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.tree().remove(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.faults.wait_while_hung();
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let delay = self.faults.rename_delay();
        if delay.is_zero() {
            return empty(
                reply,
                self.tree()
                    .rename(parent.0, name, newparent.0, newname, noreplace),
            );
        }
        // A slow rename ([`crate::CrashFs::delay_renames`]), answered from a thread of its own
        // as a slow flush is: done when it is answered, and nothing else waits for it.
        let tree = self.tree.clone();
        let faults = self.faults.clone();
        let (name, newname) = (name.to_owned(), newname.to_owned());
        faults.renames_in_flight.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let renamed = tree.lock().unwrap_or_else(|e| e.into_inner()).rename(
                parent.0,
                &name,
                newparent.0,
                &newname,
                noreplace,
            );
            faults.renames_in_flight.fetch_sub(1, Ordering::SeqCst);
            empty(reply, renamed);
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.faults.wait_while_hung();
        match self.tree().attr(ino.0) {
            Ok(_) => {
                self.handles.fetch_add(1, Ordering::SeqCst);
                reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.faults.wait_while_hung();
        match self.tree().read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.faults.wait_while_hung();
        match self.tree().write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is no durability point.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.fetch_sub(1, Ordering::SeqCst);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.fetch_sub(1, Ordering::SeqCst);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync arrives here too, flagged (FUSE_FSYNC_FDATASYNC): the journal records which,
        // the model treats both alike for data (size goes with it); only fsync makes the
        // modification time durable.
        self.faults.wait_while_hung();
        if self.faults.sync_fails(false) {
            return reply.error(Errno::EIO);
        }
        self.sync_after_delay(ino, datasync, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.faults.wait_while_hung();
        match self.tree().list(ino.0) {
            Ok(_) => {
                self.handles.fetch_add(1, Ordering::SeqCst);
                reply.opened(FileHandle(0), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.faults.wait_while_hung();
        let listed = match self.tree().list(ino.0) {
            Ok(listed) => listed,
            Err(e) => return reply.error(errno(e)),
        };
        let dots = [
            (".".into(), ino.0, Kind::Dir),
            ("..".into(), ino.0, Kind::Dir),
        ];
        let all = dots.into_iter().chain(listed);
        for (i, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, file_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.faults.wait_while_hung();
        if self.faults.sync_fails(true) {
            return reply.error(Errno::EIO);
        }
        self.sync_after_delay(ino, datasync, reply);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.faults.wait_while_hung();
        let result = self.tree().create(
            parent.0,
            name,
            Kind::File,
            perm(mode, umask),
            req.uid(),
            req.gid(),
        );
        match result {
            Ok(a) => {
                self.handles.fetch_add(1, Ordering::SeqCst);
                reply.created(
                    &TTL,
                    &file_attr(a),
                    Generation(0),
                    FileHandle(0),
                    FopenFlags::FOPEN_DIRECT_IO,
                );
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}
