//! Directory entries as a disk keeps them: a create, link, rename, unlink, mkdir or rmdir shows
//! at once, and survives a power cut only once its directory has been synced (strict POSIX; ext4
//! and XFS often persist it sooner, but nothing promises it).
//!
//! The backing directory always shows the current entries. Beside it, [`Namespace`] keeps each
//! directory's entries as of its last sync (its durable view), naming inodes. An inode that a
//! durable view still names is not deleted when its last visible name goes: it waits in a
//! hidden stash in the backing root, so that a power cut can bring it back with its data. At
//! the cut, the backing directory is rebuilt from the durable views, from the root down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The hidden directory in the backing root where removed inodes that are still named durably wait.
pub const STASH: &str = ".faultfs-stash";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Node {
    ino: u64,
    dir: bool,
}

type Entries = BTreeMap<OsString, Node>;

pub(crate) struct Namespace {
    root: PathBuf,
    root_ino: u64,
    /// Each directory's entries as of its last sync, by the directory's inode.
    durable: HashMap<u64, Entries>,
    /// How many durable entries name each inode: while any does, the inode must not be deleted.
    refs: HashMap<u64, u32>,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn is_empty_dir(path: &Path) -> io::Result<bool> {
    Ok(std::fs::read_dir(path)?.next().is_none())
}

impl Namespace {
    /// Takes what `root` holds now as durable: a disk that was synced before the mount.
    pub fn new(root: &Path) -> io::Result<Self> {
        let root_ino = std::fs::symlink_metadata(root)?.ino();
        let mut ns = Self { root: root.to_owned(), root_ino, durable: HashMap::new(), refs: HashMap::new() };
        ns.adopt_all()?;
        Ok(ns)
    }

    pub fn is_stash(&self, dir: &Path, name: &std::ffi::OsStr) -> bool {
        dir.as_os_str().is_empty() && name == STASH
    }

    fn adopt_all(&mut self) -> io::Result<()> {
        self.durable.clear();
        self.refs.clear();
        for (rel, node) in self.walk()? {
            *self.refs.entry(node.ino).or_default() += 1;
            if node.dir {
                self.durable.insert(node.ino, self.entries(&self.root.join(rel))?);
            }
        }
        let root = self.entries(&self.root)?;
        self.durable.insert(self.root_ino, root);
        Ok(())
    }

    /// What `dir` shows now, the stash left out.
    fn entries(&self, dir: &Path) -> io::Result<Entries> {
        let mut out = Entries::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if dir == self.root && e.file_name() == STASH {
                continue;
            }
            // Not the entry's d_ino: overlay file systems may report one that is not st_ino.
            let meta = std::fs::symlink_metadata(e.path())?;
            out.insert(e.file_name(), Node { ino: meta.ino(), dir: meta.is_dir() });
        }
        Ok(out)
    }

    /// Every entry below the root now, by path relative to it, parents first.
    fn walk(&self) -> io::Result<Vec<(PathBuf, Node)>> {
        let mut out = Vec::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(rel) = todo.pop() {
            for (name, node) in self.entries(&self.root.join(&rel))? {
                let child = rel.join(name);
                if node.dir {
                    todo.push(child.clone());
                }
                out.push((child, node));
            }
        }
        Ok(out)
    }

    /// fsync of directory `dir`: its entries as they are now become durable.
    pub fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        let entries = self.entries(dir)?;
        for node in entries.values() {
            *self.refs.entry(node.ino).or_default() += 1;
        }
        let ino = std::fs::symlink_metadata(dir)?.ino();
        if let Some(old) = self.durable.insert(ino, entries) {
            for node in old.into_values() {
                self.release(node)?;
            }
        }
        Ok(())
    }

    fn stashed(&self, ino: u64) -> PathBuf {
        self.root.join(STASH).join(ino.to_string())
    }

    fn named(&self, ino: u64) -> bool {
        self.refs.contains_key(&ino)
    }

    /// One durable name fewer for `node`; when none is left, the stash lets it go.
    fn release(&mut self, node: Node) -> io::Result<()> {
        let Some(n) = self.refs.get_mut(&node.ino) else { return Ok(()) };
        *n -= 1;
        if *n > 0 {
            return Ok(());
        }
        self.refs.remove(&node.ino);
        let stashed = self.stashed(node.ino);
        if !exists(&stashed) {
            return Ok(());
        }
        if node.dir {
            std::fs::remove_dir(&stashed)?;
            self.forget_dir(node.ino)
        } else {
            std::fs::remove_file(&stashed)
        }
    }

    /// A directory gone for good takes its durable view with it; its inode may be reused.
    fn forget_dir(&mut self, ino: u64) -> io::Result<()> {
        if let Some(entries) = self.durable.remove(&ino) {
            for node in entries.into_values() {
                self.release(node)?;
            }
        }
        Ok(())
    }

    /// unlink (`dir` false) or rmdir of `path`.
    pub fn remove(&mut self, path: &Path, dir: bool) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        let node = Node { ino: meta.ino(), dir: meta.is_dir() };
        match (dir, node.dir) {
            (true, false) => return Err(errno(libc::ENOTDIR)),
            (false, true) => return Err(errno(libc::EISDIR)),
            _ => {}
        }
        if dir && !is_empty_dir(path)? {
            return Err(errno(libc::ENOTEMPTY));
        }
        if self.named(node.ino) {
            return self.stash(path, node);
        }
        if dir {
            std::fs::remove_dir(path)?;
            self.forget_dir(node.ino)
        } else {
            std::fs::remove_file(path)
        }
    }

    /// Moves `path` into the stash; a file that waits there already under another name just
    /// loses this one.
    fn stash(&self, path: &Path, node: Node) -> io::Result<()> {
        let to = self.stashed(node.ino);
        if !node.dir && exists(&to) {
            return std::fs::remove_file(path);
        }
        std::fs::create_dir_all(self.root.join(STASH))?;
        std::fs::rename(path, to)
    }

    /// rename(2) of `from` to `to`: a target it replaces goes as by [`Self::remove`], if the
    /// rename happens.
    pub fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let moving = std::fs::symlink_metadata(from)?;
        let replaced = match std::fs::symlink_metadata(to) {
            // Two names of one inode: rename does nothing.
            Ok(m) if m.ino() == moving.ino() => None,
            Ok(m) => Some(Node { ino: m.ino(), dir: m.is_dir() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match replaced {
            Some(node) if self.named(node.ino) => self.rename_over_named(from, moving.is_dir(), to, node),
            _ => {
                std::fs::rename(from, to)?;
                match replaced {
                    Some(node) if node.dir => self.forget_dir(node.ino),
                    _ => Ok(()),
                }
            }
        }
    }

    /// The target is named durably, so it waits in the stash; put back if the rename fails.
    fn rename_over_named(&mut self, from: &Path, from_dir: bool, to: &Path, node: Node) -> io::Result<()> {
        if node.dir && !from_dir {
            return Err(errno(libc::EISDIR));
        }
        if node.dir && !is_empty_dir(to)? {
            return Err(errno(libc::ENOTEMPTY));
        }
        let aside = self.stashed(node.ino);
        let stashed_before = exists(&aside);
        std::fs::create_dir_all(self.root.join(STASH))?;
        if node.dir {
            std::fs::rename(to, &aside)?;
        } else if !stashed_before {
            std::fs::hard_link(to, &aside)?;
        }
        let Err(e) = std::fs::rename(from, to) else { return Ok(()) };
        if node.dir {
            std::fs::rename(&aside, to)?;
        } else if !stashed_before {
            std::fs::remove_file(&aside)?;
        }
        Err(e)
    }

    /// The power cut: the backing directory is rebuilt to show what the durable views name,
    /// with the inodes they name, and nothing else. Returns the entries the cut changed.
    pub fn power_cut(&mut self) -> io::Result<Vec<Undone>> {
        let before = self.walk()?;
        let modes = self.stash_everything(&before)?;
        for e in std::fs::read_dir(&self.root)? {
            let e = e?;
            if e.file_name() == STASH {
                continue;
            }
            if e.file_type()?.is_dir() { std::fs::remove_dir_all(e.path()) } else { std::fs::remove_file(e.path()) }?;
        }
        self.rebuild(&modes)?;
        std::fs::remove_dir_all(self.root.join(STASH))?;
        let after = self.walk()?;
        self.adopt_all()?;
        Ok(changes(&before, &after))
    }

    /// Links every file into the stash so the tree can be torn down, and returns every
    /// directory's permissions, as directories are made anew.
    fn stash_everything(&self, tree: &[(PathBuf, Node)]) -> io::Result<HashMap<u64, u32>> {
        std::fs::create_dir_all(self.root.join(STASH))?;
        let mut modes = HashMap::new();
        for (rel, node) in tree {
            let path = self.root.join(rel);
            if node.dir {
                modes.insert(node.ino, std::fs::symlink_metadata(&path)?.mode());
            } else if !exists(&self.stashed(node.ino)) {
                std::fs::hard_link(&path, self.stashed(node.ino))?;
            }
        }
        for e in std::fs::read_dir(self.root.join(STASH))? {
            let meta = std::fs::symlink_metadata(e?.path())?;
            if meta.is_dir() {
                modes.insert(meta.ino(), meta.mode());
            }
        }
        Ok(modes)
    }

    fn rebuild(&self, modes: &HashMap<u64, u32>) -> io::Result<()> {
        // A directory moved between two directories that were both synced, one before the move
        // and one after, is named by both: it is made once, where the walk meets it first.
        let mut made = HashSet::from([self.root_ino]);
        let mut todo = vec![(self.root.clone(), self.root_ino)];
        while let Some((dir, ino)) = todo.pop() {
            for (name, node) in self.durable.get(&ino).into_iter().flatten() {
                let path = dir.join(name);
                if !node.dir {
                    std::fs::hard_link(self.stashed(node.ino), &path).map_err(|e| lost(&path, node.ino, e))?;
                } else if made.insert(node.ino) {
                    std::fs::create_dir(&path)?;
                    let mode = modes.get(&node.ino).copied().unwrap_or(0o755);
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
                    todo.push((path, node.ino));
                }
            }
        }
        Ok(())
    }
}

fn lost(path: &Path, ino: u64, e: io::Error) -> io::Error {
    io::Error::other(format!("faultfs lost inode {ino}, named durably at {}: {e}", path.display()))
}

/// A directory entry that a power cut changed, by path relative to the mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Undone {
    /// Shown before the cut, gone after it (a create or link never made durable, or a rename's new name).
    Vanished(PathBuf),
    /// Back after the cut (an unlink never made durable, or a rename's old name).
    Reappeared(PathBuf),
}

/// Entries that vanished or reappeared, without those inside a directory that did; a
/// directory counts by name only, as it is made anew.
fn changes(before: &[(PathBuf, Node)], after: &[(PathBuf, Node)]) -> Vec<Undone> {
    let key = |(p, n): &(PathBuf, Node)| (p.clone(), n.dir, if n.dir { 0 } else { n.ino });
    let (b, a): (HashSet<_>, HashSet<_>) = (before.iter().map(key).collect(), after.iter().map(key).collect());
    let topmost = |only: &HashSet<(PathBuf, bool, u64)>, other: &HashSet<(PathBuf, bool, u64)>| -> Vec<PathBuf> {
        let dirs: HashSet<&PathBuf> = only.difference(other).filter(|k| k.1).map(|k| &k.0).collect();
        only.difference(other).map(|k| k.0.clone()).filter(|p| !p.ancestors().skip(1).any(|up| dirs.contains(&up.to_path_buf()))).collect()
    };
    let mut out: Vec<Undone> = topmost(&b, &a).into_iter().map(Undone::Vanished).chain(topmost(&a, &b).into_iter().map(Undone::Reappeared)).collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Namespace) {
        let root = tempfile::tempdir().unwrap();
        let ns = Namespace::new(root.path()).unwrap();
        (root, ns)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_survives_only_once_its_directory_is_synced() {
        let (root, mut ns) = setup();
        let r = root.path();
        std::fs::write(r.join("lost"), b"1").unwrap();
        assert_eq!(ns.power_cut().unwrap(), [Undone::Vanished("lost".into())]);
        assert_eq!(names(r), Vec::<String>::new());
        std::fs::write(r.join("kept"), b"2").unwrap();
        ns.sync_dir(r).unwrap();
        std::fs::write(r.join("lost"), b"3").unwrap();
        ns.power_cut().unwrap();
        assert_eq!(names(r), ["kept"]);
        assert_eq!(std::fs::read(r.join("kept")).unwrap(), b"2");
    }

    #[test]
    fn an_unsynced_rename_unlink_or_rmdir_is_undone_with_the_data() {
        let (root, mut ns) = setup();
        let r = root.path();
        std::fs::create_dir(r.join("d")).unwrap();
        std::fs::write(r.join("d/a.tmp"), b"a").unwrap();
        std::fs::write(r.join("d/b"), b"b").unwrap();
        std::fs::create_dir(r.join("d/empty")).unwrap();
        ns.sync_dir(&r.join("d")).unwrap();
        ns.sync_dir(r).unwrap();
        ns.rename(&r.join("d/a.tmp"), &r.join("d/a")).unwrap();
        ns.remove(&r.join("d/b"), false).unwrap();
        ns.remove(&r.join("d/empty"), true).unwrap();
        assert_eq!(names(&r.join("d")), ["a"]);
        let undone = ns.power_cut().unwrap();
        let vanished = |p: &str| Undone::Vanished(p.into());
        let back = |p: &str| Undone::Reappeared(p.into());
        assert_eq!(undone, [vanished("d/a"), back("d/a.tmp"), back("d/b"), back("d/empty")]);
        assert_eq!(names(&r.join("d")), ["a.tmp", "b", "empty"]);
        assert_eq!(std::fs::read(r.join("d/b")).unwrap(), b"b");
        assert!(!r.join(STASH).exists(), "nothing left in the stash after a cut");
    }

    #[test]
    fn a_rename_over_a_named_file_brings_the_old_one_back() {
        let (root, mut ns) = setup();
        let r = root.path();
        std::fs::write(r.join("current"), b"old").unwrap();
        ns.sync_dir(r).unwrap();
        std::fs::write(r.join("next"), b"new").unwrap();
        ns.rename(&r.join("next"), &r.join("current")).unwrap();
        assert_eq!(std::fs::read(r.join("current")).unwrap(), b"new");
        ns.power_cut().unwrap();
        assert_eq!(std::fs::read(r.join("current")).unwrap(), b"old");
        assert_eq!(names(r), ["current"]);
    }

    #[test]
    fn a_new_directory_needs_its_parent_synced_whatever_was_synced_inside_it() {
        let (root, mut ns) = setup();
        let r = root.path();
        std::fs::create_dir_all(r.join("data/log")).unwrap();
        std::fs::write(r.join("data/log/1.seg"), b"x").unwrap();
        ns.sync_dir(&r.join("data/log")).unwrap();
        ns.sync_dir(&r.join("data")).unwrap();
        assert_eq!(ns.power_cut().unwrap(), [Undone::Vanished("data".into())], "what was inside it is not listed");
        assert_eq!(names(r), Vec::<String>::new(), "the root never learnt of data/");
        std::fs::create_dir_all(r.join("data/log")).unwrap();
        std::fs::write(r.join("data/log/1.seg"), b"x").unwrap();
        for d in ["data/log", "data", ""] {
            ns.sync_dir(&r.join(d)).unwrap();
        }
        ns.power_cut().unwrap();
        assert_eq!(std::fs::read(r.join("data/log/1.seg")).unwrap(), b"x");
    }

    #[test]
    fn a_synced_removal_frees_the_stash() {
        let (root, mut ns) = setup();
        let r = root.path();
        std::fs::write(r.join("a"), b"a").unwrap();
        std::fs::hard_link(r.join("a"), r.join("b")).unwrap();
        ns.sync_dir(r).unwrap();
        ns.remove(&r.join("a"), false).unwrap();
        ns.remove(&r.join("b"), false).unwrap();
        assert_eq!(names(&r.join(STASH)).len(), 1, "one inode, stashed once");
        ns.sync_dir(r).unwrap();
        assert_eq!(names(&r.join(STASH)), Vec::<String>::new());
        ns.power_cut().unwrap();
        assert_eq!(names(r), Vec::<String>::new());
    }

    #[test]
    fn a_failed_rename_leaves_the_target_where_it_was() {
        let (root, mut ns) = setup();
        let r = root.path();
        std::fs::create_dir(r.join("d")).unwrap();
        std::fs::write(r.join("d/f"), b"f").unwrap();
        std::fs::write(r.join("file"), b"x").unwrap();
        ns.sync_dir(r).unwrap();
        let err = ns.rename(&r.join("file"), &r.join("d")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
        std::fs::create_dir(r.join("e")).unwrap();
        let err = ns.rename(&r.join("e"), &r.join("d")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
        assert_eq!(names(r), ["d", "e", "file"]);
        assert_eq!(names(&r.join("d")), ["f"]);
    }
}
