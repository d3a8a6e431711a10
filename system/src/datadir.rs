//! One process per role in a data directory.
//!
//! Two servers appending to one embedded log, or two workers consuming it, would interleave
//! writes no test covers. Each role takes an exclusive `flock` on its own lock file at start-up:
//! the OS drops it when the process exits, however it exits, so a crash never leaves a
//! directory locked. One server and one worker may share a directory (split mode); standalone,
//! being both, takes both locks.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Worker => "worker",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data directory {dir} is already used by a {role} process (pid {pid}); stop it, or give this process another --data-dir")]
    Held { dir: PathBuf, role: &'static str, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Holds the roles' locks until dropped or the process ends.
#[derive(Debug)]
pub struct DirLock {
    _files: Vec<File>,
}

/// Locks `dir` for each role, creating it if needed; fails at once if another process holds one.
pub fn lock(dir: &Path, roles: &[Role]) -> Result<DirLock, LockError> {
    crate::durable_dir::create_all(&crate::disk::Os, dir).map_err(|source| LockError::Io { path: dir.to_owned(), source })?;
    let files = roles.iter().map(|role| lock_role(dir, *role)).collect::<Result<_, _>>()?;
    Ok(DirLock { _files: files })
}

fn lock_role(dir: &Path, role: Role) -> Result<File, LockError> {
    lock_exclusive(dir, &format!("{}.lock", role.name()), role.name())
}

/// Takes an exclusive `flock` on `dir/name` and writes this process's pid into it; `holder`
/// names the role in the error another process gets.
pub fn lock_exclusive(dir: &Path, name: &str, holder: &'static str) -> Result<File, LockError> {
    let path = dir.join(name);
    let io = |source| LockError::Io { path: path.clone(), source };
    // Not truncated on open: the file holds the current holder's pid, read when refused.
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let pid = match file.read_to_string(&mut pid) {
                Ok(_) if !pid.trim().is_empty() => pid.trim().to_owned(),
                _ => "unknown".to_owned(),
            };
            return Err(LockError::Held { dir: dir.to_owned(), role: holder, pid });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// Where a server serving the data directory can be reached: written at start so that
/// `webhooks dlq replay`, which may not append to a log another process writes, goes through it.
const SERVER_URL_FILE: &str = "server.url";

/// Records the server's address for commands run beside it (loopback for a wildcard address).
pub fn record_server_url(dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::fs::write(dir.join(SERVER_URL_FILE), format!("http://{}\n", SocketAddr::new(ip, addr.port())))
}

/// The address the last server in `dir` recorded, if any.
pub fn server_url(dir: &Path) -> Option<String> {
    let url = std::fs::read_to_string(dir.join(SERVER_URL_FILE)).ok()?;
    Some(url.trim().to_owned()).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    // flock locks belong to the open file, so a second open in the same process conflicts
    // just as another process would; the real-process test is in tests/datadir.rs.
    #[test]
    fn a_role_is_held_once_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), &[Role::Server]).unwrap();
        let worker = lock(dir.path(), &[Role::Worker]).expect("a worker may share the server's directory");
        match lock(dir.path(), &[Role::Worker, Role::Server]) {
            Err(LockError::Held { role, pid, .. }) => assert_eq!((role, pid), ("worker", std::process::id().to_string())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop((held, worker));
        lock(dir.path(), &[Role::Server, Role::Worker]).expect("released on drop");
    }
}
