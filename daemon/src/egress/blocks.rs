//! The receiver's block store on disk: decoded blocks that must wait (an
//! earlier block, or the manifest, is still missing, perhaps until a
//! later send) go to one unlinked file per package in the state
//! directory instead of memory, so a package larger than
//! `max_buffer_bytes` is not failed for memory. The blocks are sealed
//! (encrypted) data, authenticated when they are opened; the files vanish
//! with the process, and each package's file goes once it completes or
//! fails.

use crate::egress::spool::unlinked_file;
use ferry_protocol::BlockStore;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

struct PackageFile {
    file: File,
    /// Block → (offset, length) in the file.
    blocks: HashMap<u64, (u64, usize)>,
    end: u64,
}

/// Block files under a directory, bounded in bytes.
pub(crate) struct FileBlockStore {
    dir: PathBuf,
    max_bytes: u64,
    used: u64,
    packages: HashMap<u64, PackageFile>,
}

impl FileBlockStore {
    /// A store in `dir` of at most `max_bytes` (the receiver keeps a block
    /// in memory when the store refuses it).
    pub(crate) fn new(dir: PathBuf, max_bytes: u64) -> FileBlockStore {
        FileBlockStore {
            dir,
            max_bytes,
            used: 0,
            packages: HashMap::new(),
        }
    }

    fn open(&self, seq: u64) -> std::io::Result<File> {
        unlinked_file(&self.dir, &format!("blocks-{}-{seq}", std::process::id()))
    }
}

impl BlockStore for FileBlockStore {
    fn put(&mut self, seq: u64, block: u64, bytes: &[u8]) -> std::io::Result<()> {
        if self.used + bytes.len() as u64 > self.max_bytes {
            return Err(std::io::Error::other(format!(
                "block store full ({} of {} bytes)",
                self.used, self.max_bytes
            )));
        }
        if !self.packages.contains_key(&seq) {
            let file = self.open(seq)?;
            self.packages.insert(
                seq,
                PackageFile {
                    file,
                    blocks: HashMap::new(),
                    end: 0,
                },
            );
        }
        let Some(p) = self.packages.get_mut(&seq) else {
            return Err(std::io::Error::other("package file vanished"));
        };
        p.file.write_all_at(bytes, p.end)?;
        p.blocks.insert(block, (p.end, bytes.len()));
        p.end += bytes.len() as u64;
        self.used += bytes.len() as u64;
        Ok(())
    }

    fn take(&mut self, seq: u64, block: u64) -> std::io::Result<Vec<u8>> {
        let Some(p) = self.packages.get_mut(&seq) else {
            return Err(std::io::Error::other(format!(
                "no blocks kept for package {seq}"
            )));
        };
        let Some((offset, len)) = p.blocks.remove(&block) else {
            return Err(std::io::Error::other(format!(
                "block {block} of package {seq} was not kept"
            )));
        };
        let mut buf = vec![0u8; len];
        p.file.read_exact_at(&mut buf, offset)?;
        if p.blocks.is_empty() {
            // The last one: the file (and its disk space) goes.
            self.used -= p.end;
            self.packages.remove(&seq);
        }
        Ok(buf)
    }

    fn forget(&mut self, seq: u64) {
        if let Some(p) = self.packages.remove(&seq) {
            self.used -= p.end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_back_whole_and_the_files_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = FileBlockStore::new(dir.path().to_path_buf(), 1 << 20);
        for b in 0..8u64 {
            s.put(3, b, &vec![b as u8; 1000 + b as usize]).expect("put");
        }
        s.put(4, 0, b"other").expect("put");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "unlinked"
        );
        for b in (0..8u64).rev() {
            assert_eq!(
                s.take(3, b).expect("take"),
                vec![b as u8; 1000 + b as usize]
            );
        }
        assert!(s.take(3, 0).is_err(), "taken once");
        assert_eq!(s.used, 5);
        s.forget(4);
        assert_eq!(s.used, 0);
        assert!(s.packages.is_empty());
    }

    #[test]
    fn a_full_store_refuses_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = FileBlockStore::new(dir.path().to_path_buf(), 2500);
        s.put(1, 0, &[0; 2000]).expect("fits");
        let e = s.put(1, 1, &[0; 1000]).expect_err("full");
        assert!(e.to_string().contains("block store full"), "{e}");
        s.forget(1);
        s.put(1, 1, &[0; 1000]).expect("room again");
    }
}
