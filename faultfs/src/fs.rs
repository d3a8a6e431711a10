//! The FUSE side: every operation passes through to the backing directory, except that file
//! data stays in [`Dirty`] until the file is fsync'd, directory entries are durable only as
//! [`Namespace`] says, and faults are injected where set.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::cache::{Backing, Dirty, PAGE};
use crate::chance::{name_key, Chance};
use crate::dirs::{Namespace, Undone};
use crate::faults::{Damage, Faults, Op};
use crate::{FailedFsync, Options, WriteBack};

/// Nothing is cached by the kernel: every lookup and size comes from here, so a power cut
/// is seen at once by the next process.
const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

impl Backing for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// What the test reads after a power cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerCut {
    /// Which cut of this mount it was, counting from 1: with the seed, it names the cut's choices.
    pub number: u64,
    /// Files that had unsynced data or an unsynced size.
    pub files: usize,
    /// Unsynced bytes lost, counted in whole pages.
    pub bytes: u64,
    /// Unsynced bytes that reached the disk anyway, in the write-back the cut interrupted,
    /// counted in whole pages.
    pub written_back: u64,
    /// Directory entries that vanished or came back because their directory was not synced.
    pub entries: Vec<Undone>,
}

pub(crate) struct State {
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    handles: HashMap<u64, (u64, Arc<File>)>,
    next_fh: u64,
    /// Unsynced data by inode, with a file to write it back through at a cut.
    dirty: HashMap<u64, (Arc<File>, Dirty)>,
    ns: Namespace,
    options: Options,
    cuts: u64,
    pub faults: Faults,
}

impl State {
    pub fn new(backing: &Path, options: Options) -> io::Result<Self> {
        Ok(Self {
            paths: HashMap::from([(ROOT, PathBuf::new())]),
            inos: HashMap::from([(PathBuf::new(), ROOT)]),
            next_ino: ROOT,
            handles: HashMap::new(),
            next_fh: 0,
            dirty: HashMap::new(),
            ns: Namespace::new(backing)?,
            options,
            cuts: 0,
            faults: Faults::default(),
        })
    }

    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    pub fn options(&self) -> Options {
        self.options
    }

    pub fn power_cut(&mut self) -> io::Result<PowerCut> {
        self.cuts += 1;
        let mut cut = PowerCut { number: self.cuts, ..PowerCut::default() };
        let chance = Chance::new(self.options.seed);
        // The share of the unsynced pages that reached the disk, drawn per cut: none (what
        // LazyFS does), all, or a torn mix.
        let quarters = match self.options.write_back {
            WriteBack::Lost => 0,
            WriteBack::Torn => chance.draw(&[cut.number]) % 5,
        };
        for (ino, (file, dirty)) in self.dirty.drain() {
            if !dirty.pending() {
                continue;
            }
            let unsynced = dirty.unsynced_bytes();
            let key = self.paths.get(&ino).map_or(ino, |p| name_key(p.as_os_str().as_bytes()));
            let reached = |page: u64| chance.quarters(quarters, &[cut.number, key, page]);
            let pages = dirty.write_back(file.as_ref(), reached, chance.quarters(quarters, &[cut.number, key, u64::MAX]))?;
            cut.files += 1;
            cut.written_back += pages * PAGE;
            cut.bytes += unsynced - pages * PAGE;
        }
        cut.entries = self.ns.power_cut()?;
        Ok(cut)
    }

    fn ino_for(&mut self, rel: PathBuf) -> u64 {
        if let Some(&ino) = self.inos.get(&rel) {
            return ino;
        }
        self.next_ino += 1;
        let ino = self.next_ino;
        self.paths.insert(ino, rel.clone());
        self.inos.insert(rel, ino);
        ino
    }

    fn forget_path(&mut self, rel: &Path) {
        if let Some(ino) = self.inos.remove(rel) {
            // A hard link may still name the same file.
            if let Some(other) = self.inos.iter().find(|(_, i)| **i == ino).map(|(p, _)| p.clone()) {
                self.paths.insert(ino, other);
                return;
            }
            self.paths.remove(&ino);
            if !self.handles.values().any(|(i, _)| *i == ino) {
                self.dirty.remove(&ino);
            }
        }
    }

    fn rel(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    /// The path of `name` in directory `parent`; faultfs's own stash is not there to see.
    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        let dir = self.rel(parent)?;
        if self.ns.is_stash(&dir, name) {
            return Err(Errno::EACCES);
        }
        Ok(dir.join(name))
    }

    /// The name that fault targets match.
    fn name(&self, ino: INodeNo) -> String {
        self.paths.get(&ino.0).and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn handle(&self, fh: FileHandle) -> Result<(u64, Arc<File>), Errno> {
        self.handles.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_handle(&mut self, ino: u64, file: Arc<File>) -> u64 {
        self.next_fh += 1;
        self.handles.insert(self.next_fh, (ino, file));
        self.next_fh
    }

    fn dirty_for(&mut self, ino: u64, file: &Arc<File>) -> Result<&mut Dirty, Errno> {
        let entry = match self.dirty.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert((file.clone(), Dirty::new(file.as_ref()).map_err(Errno::from)?)),
        };
        Ok(&mut entry.1)
    }

    /// Applies the damage set on the disk to `data`, read at `offset`, where it came from the
    /// disk: a page held in memory reads as written.
    fn damage(&mut self, ino: u64, offset: u64, data: &mut [u8]) -> Result<(), Errno> {
        let name = self.name(INodeNo(ino));
        for (at, damage) in self.faults.damaged_in(&name, offset, offset + data.len() as u64) {
            if self.dirty.get(&ino).is_some_and(|(_, d)| !d.on_disk(at)) {
                continue;
            }
            self.faults.injected += 1;
            match damage {
                Damage::Eio => return Err(Errno::EIO),
                Damage::Flip(mask) => data[(at - offset) as usize] ^= mask,
            }
        }
        Ok(())
    }
}

pub(crate) struct FaultFs {
    backing: PathBuf,
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    pub fn new(backing: PathBuf, state: Arc<Mutex<State>>) -> Self {
        Self { backing, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    fn attr(&self, s: &State, ino: u64, rel: &Path) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.full(rel)).map_err(Errno::from)?;
        let size = s.dirty.get(&ino).map_or(meta.len(), |(_, d)| d.size());
        let time = |secs: i64, nanos: i64| UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entry(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut s = self.state();
        let rel = s.child(parent, name)?;
        std::fs::symlink_metadata(self.full(&rel)).map_err(Errno::from)?;
        let ino = s.ino_for(rel.clone());
        self.attr(&s, ino, &rel)
    }

    fn open_file(&self, rel: &Path, flags: i32, create: bool, mode: u32) -> io::Result<File> {
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(create).mode(mode);
        if create && flags & libc::O_EXCL != 0 {
            o.create_new(true);
        }
        match o.open(self.full(rel)) {
            // A file opened read-only by its user may be read-only on disk too.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !create => OpenOptions::new().read(true).open(self.full(rel)),
            other => other,
        }
    }

    fn do_write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let mut s = self.state();
        let (ino, file) = s.handle(fh)?;
        let name = s.name(INodeNo(ino));
        if let Some(errno) = s.faults.check(Op::Write, &name) {
            return Err(Errno::from_i32(errno));
        }
        let size = match s.dirty.get(&ino) {
            Some((_, d)) => d.size(),
            None => file.len().map_err(Errno::from)?,
        };
        let inside = size.saturating_sub(offset);
        let fits = s.faults.take_space(&name, data.len() as u64, inside).map_err(Errno::from_i32)? as usize;
        s.dirty_for(ino, &file)?.write(file.as_ref(), offset, &data[..fits]).map_err(Errno::from)?;
        Ok(fits as u32)
    }

    fn do_read(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut s = self.state();
        let (ino, file) = s.handle(fh)?;
        let mut data = Self::read_through(&s, ino, &file, offset, size)?;
        s.damage(ino, offset, &mut data)?;
        Ok(data)
    }

    fn read_through(s: &State, ino: u64, file: &File, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        match s.dirty.get(&ino) {
            Some((_, d)) => d.read(file, offset, size as usize).map_err(Errno::from),
            None => {
                let mut buf = vec![0u8; size as usize];
                let mut done = 0;
                while done < buf.len() {
                    let n = FileExt::read_at(file, &mut buf[done..], offset + done as u64).map_err(Errno::from)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                buf.truncate(done);
                Ok(buf)
            }
        }
    }

    fn do_fsync(&self, ino: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        let mut s = self.state();
        let (_, file) = s.handle(fh)?;
        let name = s.name(ino);
        if let Some(errno) = s.faults.check(Op::Fsync, &name) {
            // What Linux does after a failed writeback: the pages are marked clean, so a retried
            // fsync "succeeds" over data that never reached the disk (PostgreSQL's fsyncgate).
            // Whether the page cache still shows them depends on the file system.
            match s.options.failed_fsync {
                FailedFsync::DropPages => drop(s.dirty.remove(&ino.0)),
                FailedFsync::KeepPages => s.dirty.get_mut(&ino.0).into_iter().for_each(|(_, d)| d.fail_sync_keeping_pages()),
            }
            return Err(Errno::from_i32(errno));
        }
        match s.dirty.get_mut(&ino.0) {
            Some((_, d)) => d.sync(file.as_ref()).map_err(Errno::from),
            None => file.sync_data().map_err(Errno::from),
        }
    }

    fn do_fsyncdir(&self, ino: INodeNo) -> Result<(), Errno> {
        let mut s = self.state();
        let dir = self.full(&s.rel(ino)?);
        let name = s.name(ino);
        if let Some(errno) = s.faults.check(Op::SyncDir, &name) {
            return Err(Errno::from_i32(errno));
        }
        s.ns.sync_dir(&dir).map_err(Errno::from)
    }

    fn set_size(&self, ino: INodeNo, fh: Option<FileHandle>, size: u64) -> Result<(), Errno> {
        let mut s = self.state();
        let file = match fh.map(|fh| s.handle(fh)) {
            Some(Ok((_, f))) => f,
            _ => Arc::new(self.open_file(&s.rel(ino)?, 0, false, 0).map_err(Errno::from)?),
        };
        s.dirty_for(ino.0, &file)?.truncate(size);
        Ok(())
    }

    fn do_setattr(&self, ino: INodeNo, mode: Option<u32>, size: Option<u64>, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        if let Some(size) = size {
            self.set_size(ino, fh, size)?;
        }
        let s = self.state();
        let rel = s.rel(ino)?;
        if let Some(mode) = mode {
            std::fs::set_permissions(self.full(&rel), std::fs::Permissions::from_mode(mode & 0o7777)).map_err(Errno::from)?;
        }
        self.attr(&s, ino.0, &rel)
    }

    fn do_create(&self, parent: INodeNo, name: &OsStr, mode: u32, flags: i32) -> Result<(FileAttr, u64), Errno> {
        let mut s = self.state();
        let rel = s.child(parent, name)?;
        let file = Arc::new(self.open_file(&rel, flags, true, mode).map_err(Errno::from)?);
        let ino = s.ino_for(rel.clone());
        if flags & libc::O_TRUNC != 0 {
            s.dirty_for(ino, &file)?.truncate(0);
        }
        let fh = s.add_handle(ino, file);
        Ok((self.attr(&s, ino, &rel)?, fh))
    }

    fn do_open(&self, ino: INodeNo, flags: i32) -> Result<u64, Errno> {
        let mut s = self.state();
        let rel = s.rel(ino)?;
        let file = self.open_file(&rel, flags, false, 0).map_err(Errno::from)?;
        Ok(s.add_handle(ino.0, Arc::new(file)))
    }

    fn do_readdir(&self, ino: INodeNo, offset: u64, reply: &mut ReplyDirectory) -> Result<(), Errno> {
        let mut s = self.state();
        let rel = s.rel(ino)?;
        let mut entries = vec![(ino.0, FileType::Directory, ".".into()), (ino.0, FileType::Directory, "..".into())];
        for e in std::fs::read_dir(self.full(&rel)).map_err(Errno::from)? {
            let e = e.map_err(Errno::from)?;
            if s.ns.is_stash(&rel, &e.file_name()) {
                continue;
            }
            let kind = if e.file_type().map_err(Errno::from)?.is_dir() { FileType::Directory } else { FileType::RegularFile };
            let child = s.ino_for(rel.join(e.file_name()));
            entries.push((child, kind, e.file_name()));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        Ok(())
    }

    fn do_remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut s = self.state();
        let rel = s.child(parent, name)?;
        s.ns.remove(&self.full(&rel), dir).map_err(Errno::from)?;
        s.forget_path(&rel);
        Ok(())
    }

    fn do_rename(&self, parent: INodeNo, name: &OsStr, newparent: INodeNo, newname: &OsStr) -> Result<(), Errno> {
        let mut s = self.state();
        let from = s.child(parent, name)?;
        let to = s.child(newparent, newname)?;
        s.ns.rename(&self.full(&from), &self.full(&to)).map_err(Errno::from)?;
        s.forget_path(&to);
        // The renamed entry and everything under it keep their inodes under new paths.
        let moved: Vec<(PathBuf, u64)> = s.inos.iter().filter(|(p, _)| p.starts_with(&from)).map(|(p, i)| (p.clone(), *i)).collect();
        for (old, ino) in moved {
            let new = match old.strip_prefix(&from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                // `join("")` would add a trailing slash, naming a directory.
                _ => to.clone(),
            };
            s.inos.remove(&old);
            s.inos.insert(new.clone(), ino);
            s.paths.insert(ino, new);
        }
        Ok(())
    }

    fn do_link(&self, ino: INodeNo, newparent: INodeNo, newname: &OsStr) -> Result<FileAttr, Errno> {
        let mut s = self.state();
        let from = s.rel(ino)?;
        let to = s.child(newparent, newname)?;
        std::fs::hard_link(self.full(&from), self.full(&to)).map_err(Errno::from)?;
        // Both names are one inode, so unsynced data is shared as on a real file system.
        s.inos.insert(to, ino.0);
        self.attr(&s, ino.0, &from)
    }

    fn do_mkdir(&self, parent: INodeNo, name: &OsStr, mode: u32) -> Result<FileAttr, Errno> {
        let mut s = self.state();
        let rel = s.child(parent, name)?;
        std::fs::create_dir(self.full(&rel)).map_err(Errno::from)?;
        std::fs::set_permissions(self.full(&rel), std::fs::Permissions::from_mode(mode & 0o7777)).map_err(Errno::from)?;
        let ino = s.ino_for(rel.clone());
        self.attr(&s, ino, &rel)
    }
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic in one operation must not take the whole test's filesystem down.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.entry(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.state();
        match s.rel(ino).and_then(|rel| self.attr(&s, ino.0, &rel)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
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
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino, mode, size, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        match self.do_mkdir(parent, name, mode) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match self.do_link(ino, newparent, newname) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.do_remove(parent, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.do_remove(parent, name, true));
    }

    fn rename(&self, _req: &Request, parent: INodeNo, name: &OsStr, newparent: INodeNo, newname: &OsStr, _flags: RenameFlags, reply: ReplyEmpty) {
        reply_empty(reply, self.do_rename(parent, name, newparent, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(ino, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, flags: i32, reply: ReplyCreate) {
        match self.do_create(parent, name, mode, flags) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, size: u32, _flags: OpenFlags, _lock: Option<LockOwner>, reply: ReplyData) {
        match self.do_read(fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock: LockOwner, reply: ReplyEmpty) {
        // close() does not sync: the data stays as unsynced as before.
        reply.ok();
    }

    fn release(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, _lock: Option<LockOwner>, _flush: bool, reply: ReplyEmpty) {
        self.state().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(reply, self.do_fsync(ino, fh));
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.do_readdir(ino, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    // fsync(2) of a directory, however it was opened, arrives here.
    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(reply, self.do_fsyncdir(ino));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}
