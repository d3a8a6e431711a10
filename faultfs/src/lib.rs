//! A fault-injecting filesystem for durability tests, in the model of LazyFS (the FUSE
//! filesystem Jepsen used to find lost writes in etcd and PostgreSQL).
//!
//! [`Mounted::mount`] serves a backing directory at a mount point. Every operation passes
//! through, except that:
//! - file data written but not yet fsync'd (or fdatasync'd) stays in this process's memory;
//!   [`Mounted::power_cut`] drops all of it, as a power cut drops the page cache;
//! - on command, `write` or `fsync` fail with `EIO` ([`Mounted::fail`]), or writes fail with
//!   `ENOSPC` past a byte budget ([`Mounted::limit_space`]), for one file or all. A failed fsync
//!   also drops that file's unsynced data, as Linux does ("fsyncgate"): retrying the fsync then
//!   succeeds over data that is gone.
//!
//! A SIGKILL test cannot tell synced data from unsynced: the kernel's page cache survives a killed
//! process. Here it does not survive a power cut.
//!
//! The mount needs `/dev/fuse` and `fusermount3` (Debian's `fuse3` package); without them,
//! mounting fails with [`Error::Unavailable`] saying what to install.

mod cache;
mod faults;
mod fs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use faults::{Op, Target};
pub use fs::PowerCut;
use fs::{lock, FaultFs, State};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("FUSE is not available here: {0}")]
    Unavailable(String),
    #[error("cannot mount faultfs at {path}: {source}")]
    Mount { path: PathBuf, source: std::io::Error },
    #[error("cannot unmount faultfs at {path}: {source}")]
    Unmount { path: PathBuf, source: std::io::Error },
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
    /// Serves `backing` at `mountpoint` (both existing directories) until dropped.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<Self, Error> {
        check_available()?;
        let state = Arc::new(Mutex::new(State::default()));
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

    /// Drops every write not yet fsync'd. Stop (kill) the processes using the mount first: their
    /// memory is gone in a power cut too. Pages they had mapped are written back first, so that
    /// nothing of theirs arrives after the cut.
    pub fn power_cut(&self) -> PowerCut {
        if let Ok(dir) = std::fs::File::open(&self.mountpoint) {
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
            unsafe { libc::syncfs(dir.as_raw_fd()) };
        }
        lock(&self.state).power_cut()
    }

    /// Makes `op` fail with EIO on matching files, `times` times or (with `None`) until cleared.
    pub fn fail(&self, op: Op, target: Target, times: Option<u32>) {
        lock(&self.state).faults.fail(op, target, times);
    }

    /// Writes to matching files get ENOSPC once `bytes` more have been written.
    pub fn limit_space(&self, target: Target, bytes: u64) {
        lock(&self.state).faults.limit_space(target, bytes);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// How many operations have been failed so far.
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
