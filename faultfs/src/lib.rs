//! A fault-injecting filesystem for durability tests, in the model of LazyFS (the FUSE
//! filesystem Jepsen used to find lost writes in etcd and PostgreSQL).
//!
//! [`Mounted::mount`] serves a backing directory at a mount point. Every operation passes
//! through, except that:
//! - file data written but not yet fsync'd (or fdatasync'd) stays in this process's memory;
//!   at [`Mounted::power_cut`], a write-back cut short takes any seeded subset of those pages
//!   (and of the files' new sizes) to the disk, and the rest is lost;
//! - a created, linked, renamed or removed directory entry, and a new directory, is durable
//!   only once its directory has been fsync'd: a power cut undoes the others, and a file that
//!   vanishes takes its data with it, synced or not;
//! - on command, `write`, `fsync` or a directory's fsync fail with `EIO` ([`Mounted::fail`]);
//!   writes that grow files past a byte budget are short, then fail with `ENOSPC`
//!   ([`Mounted::limit_space`]);
//!   chosen bytes read back from the disk flipped or fail with `EIO` ([`Mounted::damage`]).
//!   A failed fsync leaves the pages it covered clean but not on the disk, as Linux does
//!   ("fsyncgate"), so a retried fsync succeeds over data that is gone: [`FailedFsync`] says
//!   whether they vanish at once or stay readable until the next power cut.
//!
//! Every random choice comes from [`Options::seed`], so a failing seed replays the same
//! choices. docs/faults.md says what each fault models and what is not modelled.
//!
//! A SIGKILL test cannot tell synced data from unsynced: the kernel's page cache survives a killed
//! process. Here it does not survive a power cut.
//!
//! The mount needs `/dev/fuse` and `fusermount3` (Debian's `fuse3` package); without them,
//! mounting fails with [`Error::Unavailable`] saying what to install.

mod cache;
mod chance;
mod dirs;
mod faults;
mod fs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use dirs::Undone;
pub use faults::{Damage, Op, Target};
pub use fs::PowerCut;
use fs::{lock, FaultFs, State};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("FUSE is not available here: {0}")]
    Unavailable(String),
    #[error("cannot mount faultfs at {path}: {source}")]
    Mount { path: PathBuf, source: std::io::Error },
    #[error("cannot read the backing directory {path}: {source}")]
    Backing { path: PathBuf, source: std::io::Error },
    #[error("power cut {number}: cannot make the backing directory match what was durable: {source}")]
    Cut { number: u64, source: std::io::Error },
    #[error("cannot unmount faultfs at {path}: {source}")]
    Unmount { path: PathBuf, source: std::io::Error },
}

/// How the disk behaves: fixed for a mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Decides every random choice; the same seed makes the same choices again.
    pub seed: u64,
    pub write_back: WriteBack,
    pub failed_fsync: FailedFsync,
}

/// What a power cut does to data written but not synced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteBack {
    /// Each cut, as the seed decides, takes none of it to the disk, all of it, or a torn mix:
    /// each 4 KiB page, and each file's new size, independently, in no particular order.
    #[default]
    Torn,
    /// None of it reaches the disk (LazyFS's model): the cut is the same whatever the seed.
    Lost,
}

/// What a failed fsync does to the pages it covered. Either way they are marked clean, so
/// the next fsync succeeds without writing them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailedFsync {
    /// Dropped at once: reads show what is on the disk.
    #[default]
    DropPages,
    /// Still read from memory, as if written, until the next power cut loses them.
    KeepPages,
}

/// A mounted faultfs; unmounted when dropped.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
}

fn check_available() -> Result<(), Error> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::Unavailable("/dev/fuse is missing (load the fuse kernel module)".into()));
    }
    if !on_path("fusermount3") && !on_path("fusermount") {
        return Err(Error::Unavailable("fusermount3 is not installed (apt-get install fuse3)".into()));
    }
    Ok(())
}

impl Mounted {
    /// Serves `backing` at `mountpoint` (both existing directories) until dropped, with
    /// default [`Options`].
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<Self, Error> {
        Self::mount_with(backing, mountpoint, Options::default())
    }

    /// Serves `backing` at `mountpoint` with these options. What `backing` holds already
    /// counts as durable.
    pub fn mount_with(backing: &Path, mountpoint: &Path, options: Options) -> Result<Self, Error> {
        check_available()?;
        let state = State::new(backing, options).map_err(|source| Error::Backing { path: backing.to_path_buf(), source })?;
        let state = Arc::new(Mutex::new(state));
        let fs = FaultFs::new(backing.to_path_buf(), state.clone());
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("faultfs".into()), fuser::MountOption::NoAtime];
        let session = fuser::spawn_mount(fs, mountpoint, &config)
            .map_err(|source| Error::Mount { path: mountpoint.to_path_buf(), source })?;
        Ok(Self { session: Some(session), state, mountpoint: mountpoint.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power: of the data not yet fsync'd, only what the seeded write-back reached
    /// stays, and every directory entry not made durable by its directory's fsync is undone.
    /// Stop (kill) the processes using the mount first: their memory is gone in a power cut
    /// too. Pages they had mapped are handed to faultfs first, so that nothing of theirs
    /// arrives after the cut.
    pub fn power_cut(&self) -> Result<PowerCut, Error> {
        if let Ok(dir) = std::fs::File::open(&self.mountpoint) {
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
            unsafe { libc::syncfs(dir.as_raw_fd()) };
        }
        let mut state = lock(&self.state);
        state.power_cut().map_err(|source| Error::Cut { number: state.cuts(), source })
    }

    pub fn seed(&self) -> u64 {
        lock(&self.state).options().seed
    }

    /// Makes `op` fail with EIO on matching files, `times` times or (with `None`) until cleared.
    pub fn fail(&self, op: Op, target: Target, times: Option<u32>) {
        lock(&self.state).faults.fail(op, target, times);
    }

    /// Matching files may grow by only `bytes` more: the write that crosses the limit writes
    /// the part that fits and returns its count, and later ones get ENOSPC. Overwriting bytes
    /// within a file's size needs no space, as its blocks are allocated already.
    pub fn limit_space(&self, target: Target, bytes: u64) {
        lock(&self.state).faults.limit_space(target, bytes);
    }

    /// Byte `offset` of matching files reads back from the disk damaged (a latent sector
    /// error, or a flipped bit), until cleared. Reads of a page still held in memory, written
    /// since the last fsync, are not affected.
    pub fn damage(&self, target: Target, offset: u64, damage: Damage) {
        lock(&self.state).faults.damage(target, offset, damage);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// How many operations have been failed, shortened or damaged so far.
    pub fn injected(&self) -> u64 {
        lock(&self.state).faults.injected
    }

    pub fn unmount(mut self) -> Result<(), Error> {
        self.take_down()
    }

    fn take_down(&mut self) -> Result<(), Error> {
        match self.session.take() {
            Some(s) => s.umount_and_join().map_err(|source| Error::Unmount { path: self.mountpoint.clone(), source }),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.take_down();
    }
}
