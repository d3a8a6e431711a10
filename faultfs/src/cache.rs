//! The model of a page cache that a power cut empties: per file, the pages written since its
//! last fsync and the size it would have. At the cut, a write-back cut short may have taken any
//! of those pages to the disk, in any order. Pure logic over a `Backing` (the real file), so it
//! is tested without FUSE.

use std::collections::BTreeMap;
use std::io;

pub const PAGE: u64 = 4096;

/// The durable copy of a file: what survives a power cut.
pub trait Backing {
    fn len(&self) -> io::Result<u64>;
    /// Reads at `offset`; returns fewer bytes at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
}

/// What one file has that is not durable yet.
#[derive(Debug, Default)]
pub struct Dirty {
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Pages whose write-back failed, in the variant of fsyncgate where Linux keeps them: still
    /// read from memory and marked clean, so no later fsync writes them, and lost at the next
    /// power cut. Rewriting one makes it dirty again, whole.
    stale: BTreeMap<u64, Box<[u8]>>,
    /// The file's size as its users see it.
    size: u64,
    /// The smallest size it was truncated to since the last sync: backing bytes past it read as zeros.
    floor: u64,
    /// Its size on the disk as of the last sync.
    synced: u64,
}

impl Dirty {
    /// Starts tracking a file whose durable copy is `backing`.
    pub fn new(backing: &dyn Backing) -> io::Result<Self> {
        let size = backing.len()?;
        Ok(Self { pages: BTreeMap::new(), stale: BTreeMap::new(), size, floor: size, synced: size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held only in memory: what a power cut would lose.
    pub fn unsynced_bytes(&self) -> u64 {
        (self.pages.len() + self.stale.len()) as u64 * PAGE
    }

    /// Whether anything differs from the disk: pages, or a size not synced.
    pub fn pending(&self) -> bool {
        !self.pages.is_empty() || !self.stale.is_empty() || self.size != self.synced || self.floor != self.synced
    }

    /// Whether a read of byte `offset` goes to the disk, not to a page held in memory.
    pub fn on_disk(&self, offset: u64) -> bool {
        let index = offset / PAGE;
        offset < self.floor && !self.pages.contains_key(&index) && !self.stale.contains_key(&index)
    }

    fn cached(&self, index: u64) -> Option<&[u8]> {
        self.pages.get(&index).or_else(|| self.stale.get(&index)).map(|p| &p[..])
    }

    fn load(&self, backing: &dyn Backing, index: u64) -> io::Result<Box<[u8]>> {
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        let readable = self.floor.saturating_sub(start).min(PAGE) as usize;
        let mut done = 0;
        while done < readable {
            let n = backing.read_at(&mut page[done..readable], start + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(page)
    }

    pub fn read(&self, backing: &dyn Backing, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = (offset + len as u64).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let index = at / PAGE;
            let within = (at % PAGE) as usize;
            let take = ((PAGE as usize - within) as u64).min(end - at) as usize;
            match self.cached(index) {
                Some(page) => out.extend_from_slice(&page[within..within + take]),
                None => out.extend_from_slice(&self.load(backing, index)?[within..within + take]),
            }
            at += take as u64;
        }
        Ok(out)
    }

    pub fn write(&mut self, backing: &dyn Backing, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = at / PAGE;
            let within = (at % PAGE) as usize;
            let take = (PAGE as usize - within).min(rest.len());
            if !self.pages.contains_key(&index) {
                let page = match self.stale.remove(&index) {
                    Some(page) => page,
                    None => self.load(backing, index)?,
                };
                self.pages.insert(index, page);
            }
            if let Some(page) = self.pages.get_mut(&index) {
                page[within..within + take].copy_from_slice(&rest[..take]);
            }
            rest = &rest[take..];
            at += take as u64;
        }
        self.size = self.size.max(offset + data.len() as u64);
        Ok(())
    }

    pub fn truncate(&mut self, size: u64) {
        if size < self.size {
            // Cached bytes past the new end must read as zeros if the file grows again.
            let first_cut = size / PAGE;
            let within = (size % PAGE) as usize;
            for cache in [&mut self.pages, &mut self.stale] {
                if let Some(page) = cache.get_mut(&first_cut) {
                    page[within..].fill(0);
                }
                let drop_from = if within == 0 { first_cut } else { first_cut + 1 };
                cache.retain(|&i, _| i < drop_from);
            }
            self.floor = self.floor.min(size);
        }
        self.size = size;
    }

    /// Makes everything durable, as fsync would.
    pub fn sync(&mut self, backing: &dyn Backing) -> io::Result<()> {
        if backing.len()? > self.floor {
            backing.set_len(self.floor)?;
        }
        for (&index, page) in &self.pages {
            let start = index * PAGE;
            if start >= self.size {
                continue;
            }
            let len = (self.size - start).min(PAGE) as usize;
            backing.write_all_at(&page[..len], start)?;
        }
        backing.set_len(self.size)?;
        backing.sync_data()?;
        self.pages.clear();
        self.floor = self.size;
        self.synced = self.size;
        Ok(())
    }

    /// A failed fsync in the variant that keeps the pages: they stay readable, count as clean,
    /// and never reach the disk.
    pub fn fail_sync_keeping_pages(&mut self) {
        self.stale.append(&mut self.pages);
    }

    /// At a power cut, the write-back cut short: of the dirty pages, those `reached` picks made
    /// it to the disk, and the new size (truncation and growth) did if `size_reached`. Pages
    /// past the end the disk keeps are lost; so are stale ones. Returns the pages written.
    pub fn write_back(&self, backing: &dyn Backing, reached: impl Fn(u64) -> bool, size_reached: bool) -> io::Result<u64> {
        let end = if size_reached {
            if backing.len()? > self.floor {
                backing.set_len(self.floor)?;
            }
            backing.set_len(self.size)?;
            self.size
        } else {
            backing.len()?
        };
        let mut written = 0;
        for (&index, page) in self.pages.iter().filter(|(&i, _)| i * PAGE < end && reached(i)) {
            let start = index * PAGE;
            let len = (end - start).min(PAGE) as usize;
            backing.write_all_at(&page[..len], start)?;
            written += 1;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A durable copy in memory.
    #[derive(Default)]
    struct Mem(RefCell<Vec<u8>>);

    impl Backing for Mem {
        fn len(&self) -> io::Result<u64> {
            Ok(self.0.borrow().len() as u64)
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let data = self.0.borrow();
            let start = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            let mut data = self.0.borrow_mut();
            let end = offset as usize + buf.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset as usize..end].copy_from_slice(buf);
            Ok(())
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.borrow_mut().resize(len as usize, 0);
            Ok(())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_are_visible_at_once_and_durable_only_after_sync() {
        let disk = Mem(RefCell::new(b"hello".to_vec()));
        let mut d = Dirty::new(&disk).unwrap();
        d.write(&disk, 5000, b"world").unwrap();
        assert_eq!(d.size(), 5005);
        assert_eq!(d.read(&disk, 0, 5).unwrap(), b"hello");
        assert_eq!(d.read(&disk, 5000, 100).unwrap(), b"world");
        assert_eq!(disk.0.borrow().len(), 5, "nothing reached the disk before sync");
        d.sync(&disk).unwrap();
        assert_eq!(disk.0.borrow().len(), 5005);
        assert_eq!(&disk.0.borrow()[5000..], b"world");
        assert_eq!(d.unsynced_bytes(), 0);
    }

    #[test]
    fn truncation_then_growth_reads_zeros_not_old_bytes() {
        let disk = Mem(RefCell::new(vec![7u8; 10_000]));
        let mut d = Dirty::new(&disk).unwrap();
        d.truncate(100);
        d.write(&disk, 9_000, b"x").unwrap();
        let all = d.read(&disk, 0, 10_000).unwrap();
        assert_eq!(all.len(), 9_001);
        assert!(all[..100].iter().all(|&b| b == 7));
        assert!(all[100..9_000].iter().all(|&b| b == 0), "truncated bytes must not come back");
        d.sync(&disk).unwrap();
        assert_eq!(&disk.0.borrow()[..], &all[..]);
    }

    #[test]
    fn an_unsynced_truncation_leaves_the_disk_as_it_was_unless_the_cut_takes_it() {
        let disk = Mem(RefCell::new(vec![1u8; 3]));
        let mut d = Dirty::new(&disk).unwrap();
        assert!(!d.pending());
        d.truncate(0);
        assert!(d.pending(), "a size change alone is something to lose");
        assert_eq!(d.read(&disk, 0, 10).unwrap(), b"");
        assert_eq!(disk.0.borrow().len(), 3);
        d.write_back(&disk, |_| true, true).unwrap();
        assert_eq!(disk.0.borrow().len(), 0);
    }

    #[test]
    fn a_write_back_cut_short_keeps_the_pages_it_reached_and_zeros_past_the_old_end() {
        let disk = Mem(RefCell::new(vec![1u8; 2 * PAGE as usize]));
        let mut d = Dirty::new(&disk).unwrap();
        d.write(&disk, 0, &[2u8; 4 * PAGE as usize]).unwrap();
        let written = d.write_back(&disk, |page| page % 2 == 1, true).unwrap();
        assert_eq!(written, 2);
        let on_disk = disk.0.borrow().clone();
        assert_eq!(on_disk.len(), 4 * PAGE as usize, "the new size made it");
        let page = |i: usize| &on_disk[i * PAGE as usize..(i + 1) * PAGE as usize];
        assert!(page(0).iter().all(|&b| b == 1), "an old page not reached keeps its old bytes");
        assert!(page(1).iter().all(|&b| b == 2));
        assert!(page(2).iter().all(|&b| b == 0), "a new page not reached reads as zeros");
        assert!(page(3).iter().all(|&b| b == 2));
    }

    #[test]
    fn pages_reached_past_a_size_that_did_not_are_lost() {
        let disk = Mem(RefCell::new(vec![1u8; 10]));
        let mut d = Dirty::new(&disk).unwrap();
        d.write(&disk, 5, &[2u8; 2 * PAGE as usize]).unwrap();
        assert_eq!(d.write_back(&disk, |_| true, false).unwrap(), 1);
        assert_eq!(&disk.0.borrow()[..], &[1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn pages_of_a_failed_sync_stay_readable_but_no_sync_or_cut_writes_them() {
        let disk = Mem::default();
        let mut d = Dirty::new(&disk).unwrap();
        d.write(&disk, 0, b"lost").unwrap();
        d.fail_sync_keeping_pages();
        assert_eq!(d.read(&disk, 0, 4).unwrap(), b"lost", "still in memory");
        assert!(!d.on_disk(0));
        d.write(&disk, PAGE, b"kept").unwrap();
        d.sync(&disk).unwrap();
        assert_eq!(d.read(&disk, 0, 4).unwrap(), b"lost");
        assert_eq!(&disk.0.borrow()[..4], &[0; 4], "the retried sync wrote only the new page");
        assert_eq!(&disk.0.borrow()[PAGE as usize..], b"kept");
        assert_eq!(d.unsynced_bytes(), PAGE);
        assert_eq!(d.write_back(&disk, |_| true, true).unwrap(), 0, "nor does a cut");
    }

    #[test]
    fn rewriting_a_stale_page_makes_all_of_it_dirty_again() {
        let disk = Mem::default();
        let mut d = Dirty::new(&disk).unwrap();
        d.write(&disk, 0, b"abcd").unwrap();
        d.fail_sync_keeping_pages();
        d.write(&disk, 2, b"X").unwrap();
        d.sync(&disk).unwrap();
        assert_eq!(&disk.0.borrow()[..], b"abXd");
        assert_eq!(d.unsynced_bytes(), 0);
    }
}
