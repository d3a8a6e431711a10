//! A simulated disk: what a file system keeps volatile until synced, and the faults disks and
//! kernels deliver, all decided by the schedule's seed.
//!
//! Per file, the contents a process sees (the page cache) and the contents on the medium;
//! a sync copies the dirty pages and the size across. Per directory, the entries a process
//! sees and the entries as of the directory's last sync. A power cut writes back a seeded
//! share of the dirty pages, each independently (torn and out of order), and the new size
//! with the same chance, then reverts every directory to its synced entries: a file or
//! directory no synced entry names is gone. The driver may also cut the power inside the next
//! sync, the commonest moment under load: the write before it torn, the sync never answered.
//! Faults, while switched on: `ENOSPC` (sometimes after a short write), `EIO` on write, read
//! and directory sync, and a failed fsync that either drops the dirty pages (reads show the
//! medium) or keeps them readable but clean, never to be written back (Linux after a failed
//! write-back: PostgreSQL's fsyncgate).
//! Bit flips on the medium are injected by the driver ([`SimDisk::flip_bit`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use webhooks::datadir::LockError;
use webhooks::disk::{Disk, DiskFile, Open};

use crate::rng::Rng;
use crate::trace::Trace;

/// The unit of write-back and of tearing.
const PAGE: usize = 512;

/// How often each fault strikes an operation while faults are on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub write_error: f64,
    pub short_write: f64,
    pub read_error: f64,
    pub sync_error: f64,
    /// Of failed syncs, the share that keeps the pages readable (the rest drops them).
    pub keep_pages: f64,
    pub dir_sync_error: f64,
}

#[derive(Debug, Default)]
struct Inode {
    name: String,
    /// What processes read.
    cache: Vec<u8>,
    /// What survives a power cut.
    medium: Vec<u8>,
    dirty: BTreeSet<usize>,
    /// Pages a failed sync left readable and clean: never written back unless rewritten.
    kept: BTreeSet<usize>,
    size_dirty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Default, Clone)]
struct Dir {
    live: BTreeMap<OsString, Entry>,
    synced: BTreeMap<OsString, Entry>,
}

#[derive(Debug)]
struct State {
    rng: Rng,
    faults: Faults,
    faults_on: bool,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    locks: BTreeMap<PathBuf, u64>,
    next_lock: u64,
    /// A short write happened: the next write finds the disk full.
    full: bool,
    /// The power goes while the next sync waits for the disk ([`SimDisk::cut_in_next_sync`]).
    cut_armed: bool,
    /// The power went in a sync: every operation fails until the driver's power cut.
    off: bool,
    trace: Trace,
}

/// The disk of one schedule; clones share it.
#[derive(Debug, Clone)]
pub struct SimDisk(Arc<Mutex<State>>);

fn err(kind: io::ErrorKind) -> io::Error {
    io::Error::from(kind)
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

/// A path's name for the trace, without the process id a temporary file's name carries.
fn traced(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".tmp").and_then(|n| n.rsplit_once('.')) {
        Some((stem, _pid)) => format!("{stem}.tmp"),
        None => name,
    }
}

impl SimDisk {
    pub fn new(rng: Rng, faults: Faults, trace: Trace) -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::from("/"), Dir::default());
        let state = State { rng, faults, faults_on: false, inodes: BTreeMap::new(), next_inode: 1, dirs, locks: BTreeMap::new(), next_lock: 1, full: false, cut_armed: false, off: false, trace };
        Self(Arc::new(Mutex::new(state)))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere is the oracle's to report; the state stays usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, on: bool) {
        self.state().faults_on = on;
    }

    /// A power cut: every process is gone (the driver drops them first), a seeded share of
    /// what was not synced reaches the medium, and the rest is lost. After a cut that came
    /// in a sync ([`SimDisk::cut_in_next_sync`]) the power comes back on.
    pub fn power_cut(&self) {
        let mut s = self.state();
        s.cut_armed = false;
        match s.off {
            true => s.off = false,
            false => s.cut(),
        }
    }

    /// The power goes while the next sync (of a file or a directory) waits for the disk: what
    /// was written before it is torn like any unsynced write, the sync never returns success,
    /// and nothing after it reaches the disk. The commonest moment of a real power cut under
    /// load: a group written, its fsync in flight.
    pub fn cut_in_next_sync(&self) {
        self.state().cut_armed = true;
    }

    /// The kernel's periodic write-back: every dirty page and size reaches the medium (not
    /// the pages a failed sync left clean, and no directory entry).
    pub fn write_back(&self) {
        let mut s = self.state();
        for inode in s.inodes.values_mut() {
            let len = inode.cache.len();
            inode.medium.resize(len, 0);
            for page in std::mem::take(&mut inode.dirty) {
                let (start, end) = (page * PAGE, ((page + 1) * PAGE).min(len));
                if start < end {
                    inode.medium[start..end].copy_from_slice(&inode.cache[start..end]);
                }
            }
            inode.size_dirty = false;
        }
        s.trace.record("write-back", "", 0, 0);
    }

    /// Flips one bit on the medium of a file whose name ends in `suffix` (a latent sector
    /// error or bit rot); the page cache shows it too unless it holds a newer copy.
    /// `eligible` picks, from a file's name and medium, the bytes a flip may hit, if any.
    pub fn flip_bit(&self, suffix: &str, eligible: impl Fn(&str, &[u8]) -> Vec<std::ops::Range<usize>>) {
        let mut s = self.state();
        let candidates: Vec<(u64, std::ops::Range<usize>)> =
            s.inodes.iter().filter(|(_, i)| i.name.ends_with(suffix)).flat_map(|(id, i)| eligible(&i.name, &i.medium).into_iter().filter(|r| !r.is_empty()).map(|r| (*id, r))).collect();
        if candidates.is_empty() {
            return;
        }
        let (id, range) = candidates[s.rng.below(candidates.len() as u64) as usize].clone();
        let byte = range.start + s.rng.below((range.end - range.start) as u64) as usize;
        let bit = s.rng.below(8) as u8;
        let trace = s.trace.clone();
        let Some(inode) = s.inodes.get_mut(&id) else { return };
        inode.medium[byte] ^= 1 << bit;
        let page = byte / PAGE;
        if !inode.dirty.contains(&page) && !inode.kept.contains(&page) && byte < inode.cache.len() {
            inode.cache[byte] ^= 1 << bit;
        }
        trace.record("!flip-bit", &inode.name, byte as u64, bit as u64);
    }

    fn parent(path: &Path) -> io::Result<(PathBuf, OsString)> {
        match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => Ok((p.to_owned(), n.to_owned())),
            _ => Err(err(io::ErrorKind::InvalidInput)),
        }
    }
}

impl State {
    /// Write-back of a seeded share of the dirty pages, then directories back to their synced
    /// entries and what they no longer reach gone.
    fn cut(&mut self) {
        let share = [0.0, 0.25, 0.5, 0.75, 1.0][self.rng.below(5) as usize];
        self.trace.record("power-cut", "", (share * 4.0) as u64, 0);
        let ids: Vec<u64> = self.inodes.keys().copied().collect();
        for id in ids {
            let mut rng = self.rng.fork();
            let Some(inode) = self.inodes.get_mut(&id) else { continue };
            let old_len = inode.medium.len();
            for &page in &inode.dirty {
                if rng.chance(share) {
                    let start = page * PAGE;
                    let end = (start + PAGE).min(inode.cache.len());
                    if start >= end {
                        continue;
                    }
                    if inode.medium.len() < end {
                        inode.medium.resize(end, 0);
                    }
                    inode.medium[start..end].copy_from_slice(&inode.cache[start..end]);
                }
            }
            let len = if inode.size_dirty && rng.chance(share) { inode.cache.len() } else { old_len };
            inode.medium.resize(len, 0);
            inode.cache = inode.medium.clone();
            inode.dirty.clear();
            inode.kept.clear();
            inode.size_dirty = false;
        }
        for dir in self.dirs.values_mut() {
            dir.live = dir.synced.clone();
        }
        // Only what synced entries reach from the root is left.
        let mut reached = BTreeMap::new();
        let mut files = BTreeSet::new();
        let mut todo = vec![PathBuf::from("/")];
        while let Some(path) = todo.pop() {
            let Some(dir) = self.dirs.get(&path).cloned() else { continue };
            for (name, entry) in &dir.live {
                match entry {
                    Entry::Dir => todo.push(path.join(name)),
                    Entry::File(id) => {
                        files.insert(*id);
                    }
                }
            }
            reached.insert(path, dir);
        }
        self.dirs = reached;
        self.inodes.retain(|id, _| files.contains(id));
        self.locks.clear();
        self.full = false;
    }

    /// Fails every operation of the processes a power cut in a sync killed.
    fn on(&self) -> io::Result<()> {
        match self.off {
            true => Err(eio()),
            false => Ok(()),
        }
    }

    /// Whether the power goes in this sync: if it was armed, the cut happens now.
    fn power_goes(&mut self) -> bool {
        if !std::mem::take(&mut self.cut_armed) {
            return false;
        }
        self.off = true;
        self.cut();
        true
    }

    fn strikes(&mut self, p: f64) -> bool {
        self.faults_on && self.rng.chance(p)
    }

    fn lookup(&self, path: &Path) -> io::Result<Option<Entry>> {
        let (parent, name) = SimDisk::parent(path)?;
        let dir = self.dirs.get(&parent).ok_or_else(|| err(io::ErrorKind::NotFound))?;
        Ok(dir.live.get(&name).copied())
    }

    fn link(&mut self, path: &Path, entry: Entry) -> io::Result<()> {
        let (parent, name) = SimDisk::parent(path)?;
        let dir = self.dirs.get_mut(&parent).ok_or_else(|| err(io::ErrorKind::NotFound))?;
        if dir.live.contains_key(&name) {
            return Err(err(io::ErrorKind::AlreadyExists));
        }
        dir.live.insert(name, entry);
        Ok(())
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn DiskFile>> {
        let mut s = self.state();
        s.on()?;
        let id = match (s.lookup(path)?, how) {
            (Some(Entry::Dir), _) => return Err(err(io::ErrorKind::IsADirectory)),
            (Some(Entry::File(_)), Open::CreateNew) => return Err(err(io::ErrorKind::AlreadyExists)),
            (Some(Entry::File(id)), _) => id,
            (None, Open::Read | Open::Write) => return Err(err(io::ErrorKind::NotFound)),
            (None, Open::Create | Open::CreateNew | Open::ReadWrite) => {
                let id = s.next_inode;
                s.next_inode += 1;
                s.link(path, Entry::File(id))?;
                s.inodes.insert(id, Inode { name: traced(path), ..Inode::default() });
                s.trace.record("create", &traced(path), id, 0);
                id
            }
        };
        Ok(Box::new(SimFile { disk: self.clone(), id }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let s = self.state();
        s.on()?;
        let d = s.dirs.get(dir).ok_or_else(|| err(io::ErrorKind::NotFound))?;
        Ok(d.live.keys().cloned().collect())
    }

    fn exists(&self, path: &Path) -> bool {
        path == Path::new("/") || self.state().lookup(path).ok().flatten().is_some()
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        s.link(dir, Entry::Dir)?;
        s.dirs.insert(dir.to_owned(), Dir::default());
        s.trace.record("mkdir", &traced(dir), 0, 0);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        let (parent, name) = SimDisk::parent(path)?;
        let dir = s.dirs.get_mut(&parent).ok_or_else(|| err(io::ErrorKind::NotFound))?;
        match dir.live.get(&name) {
            Some(Entry::File(_)) => {
                dir.live.remove(&name);
            }
            Some(Entry::Dir) => return Err(err(io::ErrorKind::IsADirectory)),
            None => return Err(err(io::ErrorKind::NotFound)),
        }
        s.trace.record("unlink", &traced(path), 0, 0);
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        let Some(Entry::File(id)) = s.lookup(from)? else { return Err(err(io::ErrorKind::NotFound)) };
        s.link(to, Entry::File(id))?;
        s.trace.record("link", &traced(to), id, 0);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        if s.power_goes() {
            return Err(eio());
        }
        let p = s.faults.dir_sync_error;
        if s.strikes(p) {
            s.trace.record("!fsyncdir-EIO", &traced(dir), 0, 0);
            return Err(eio());
        }
        let d = s.dirs.get_mut(dir).ok_or_else(|| err(io::ErrorKind::NotFound))?;
        d.synced = d.live.clone();
        s.trace.record("fsyncdir", &traced(dir), 0, 0);
        Ok(())
    }

    fn lock(&self, dir: &Path, name: &str, holder: &'static str) -> Result<Box<dyn Debug + Send + Sync>, LockError> {
        let path = dir.join(name);
        self.open(&path, Open::Create).map_err(|source| LockError::Io { path: path.clone(), source })?;
        let mut s = self.state();
        if let Some(owner) = s.locks.get(&path) {
            s.trace.record("lock-refused", name, *owner, 0);
            return Err(LockError::Held { dir: dir.to_owned(), role: holder, pid: format!("simulated process {owner}") });
        }
        let token = s.next_lock;
        s.next_lock += 1;
        s.locks.insert(path.clone(), token);
        s.trace.record("lock", name, token, 0);
        Ok(Box::new(LockGuard { disk: self.clone(), path, token }))
    }
}

#[derive(Debug)]
struct LockGuard {
    disk: SimDisk,
    path: PathBuf,
    token: u64,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut s = self.disk.state();
        // A power cut cleared it already; a later holder's lock is not ours to drop.
        if s.locks.get(&self.path) == Some(&self.token) {
            s.locks.remove(&self.path);
        }
    }
}

struct SimFile {
    disk: SimDisk,
    id: u64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.disk.state();
        // A file whose every name went at a power cut is still open in no process: the
        // driver drops every handle at a cut, so this is a stale handle of a killed one.
        if !s.inodes.contains_key(&self.id) {
            return Err(eio());
        }
        s.on()?;
        f(&mut s, self.id)
    }
}

fn pages(from: usize, to: usize) -> std::ops::Range<usize> {
    from / PAGE..to.div_ceil(PAGE)
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|s, id| {
            let p = s.faults.read_error;
            if s.strikes(p) {
                let name = s.inodes[&id].name.clone();
                s.trace.record("!read-EIO", &name, offset, 0);
                return Err(eio());
            }
            let inode = &s.inodes[&id];
            let start = (offset as usize).min(inode.cache.len());
            let n = buf.len().min(inode.cache.len() - start);
            buf[..n].copy_from_slice(&inode.cache[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.with(|s, id| {
            let (pw, ps) = (s.faults.write_error, s.faults.short_write);
            let name = s.inodes[&id].name.clone();
            if s.full {
                s.full = false;
                s.trace.record("!write-ENOSPC", &name, offset, buf.len() as u64);
                return Err(enospc());
            }
            if s.strikes(pw) {
                s.trace.record("!write-EIO", &name, offset, buf.len() as u64);
                return Err(if s.rng.chance(0.5) { enospc() } else { eio() });
            }
            let mut n = buf.len();
            if n > 1 && s.strikes(ps) {
                n = s.rng.range(1, n as u64 - 1) as usize;
                s.full = true;
                s.trace.record("!write-short", &name, offset, n as u64);
            } else {
                s.trace.record("write", &name, offset, n as u64);
            }
            let inode = s.inodes.get_mut(&id).ok_or_else(eio)?;
            let (start, end) = (offset as usize, offset as usize + n);
            if inode.cache.len() < end {
                inode.cache.resize(end, 0);
                inode.size_dirty = true;
            }
            inode.cache[start..end].copy_from_slice(&buf[..n]);
            for page in pages(start, end) {
                inode.dirty.insert(page);
                inode.kept.remove(&page);
            }
            Ok(n)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|s, id| {
            if s.power_goes() {
                return Err(eio());
            }
            let (p, keep) = (s.faults.sync_error, s.faults.keep_pages);
            let failed = s.strikes(p);
            let keeps = failed && s.rng.chance(keep);
            let inode = s.inodes.get_mut(&id).ok_or_else(eio)?;
            let name = inode.name.clone();
            if failed {
                let dirty = std::mem::take(&mut inode.dirty);
                if keeps {
                    inode.kept.extend(dirty);
                } else {
                    for page in dirty {
                        let start = page * PAGE;
                        let end = (start + PAGE).min(inode.cache.len());
                        for i in start..end {
                            inode.cache[i] = inode.medium.get(i).copied().unwrap_or(0);
                        }
                    }
                }
                s.trace.record(if keeps { "!fsync-EIO-kept" } else { "!fsync-EIO-dropped" }, &name, 0, 0);
                return Err(eio());
            }
            let dirty = std::mem::take(&mut inode.dirty);
            let len = inode.cache.len();
            if inode.medium.len() != len {
                inode.medium.resize(len, 0);
            }
            for page in dirty {
                let start = page * PAGE;
                let end = (start + PAGE).min(len);
                if start < end {
                    inode.medium[start..end].copy_from_slice(&inode.cache[start..end]);
                }
            }
            inode.size_dirty = false;
            s.trace.record("fsync", &name, len as u64, 0);
            Ok(())
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|s, id| {
            let inode = s.inodes.get_mut(&id).ok_or_else(eio)?;
            let len = len as usize;
            let old = inode.cache.len();
            inode.cache.resize(len, 0);
            if len != old {
                inode.size_dirty = true;
                if len % PAGE != 0 {
                    inode.dirty.insert(len / PAGE);
                    inode.kept.remove(&(len / PAGE));
                }
                if len > old {
                    inode.dirty.extend(pages(old, len));
                }
                let last = len.div_ceil(PAGE);
                inode.dirty.retain(|&p| p < last);
                inode.kept.retain(|&p| p < last);
            }
            let name = inode.name.clone();
            s.trace.record("set-len", &name, len as u64, 0);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|s, id| Ok(s.inodes[&id].cache.len() as u64))
    }
}
