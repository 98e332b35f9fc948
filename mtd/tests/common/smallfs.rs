//! A small ext4 file system in an image file on a loop device, to fill on purpose: unmounted
//! and its loop device detached on drop (the harness's guards), even when a test fails.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use rewind_benches::harness::{run, run_ok, Loop, Mount};

pub struct SmallFs {
    pub dir: PathBuf,
    // Dropped in this order: unmounted first, then the loop device detached.
    _mount: Mount,
    _loop: Loop,
}

impl SmallFs {
    /// `size_mib` of ext4 with no blocks reserved for root (so "full" means full for the
    /// daemon too), and `mkfs_args` (e.g. `-N 64` for few inodes), its image in `work`,
    /// mounted at `at`.
    pub fn new(work: &Path, size_mib: u64, mkfs_args: &[&str], at: &Path) -> SmallFs {
        let image = work.join("small.img");
        File::create(&image)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        // Allocated up front: a sparse image on a host file system that fills meanwhile would
        // turn the loop device's writes into IO errors inside the small file system, a fault of
        // the machine the test would then blame on the daemon (seen once, on a 100% full host).
        run_ok(
            Command::new("fallocate")
                .args(["-l", &format!("{size_mib}MiB")])
                .arg(&image),
        );
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .args(mkfs_args)
                .arg(&image),
        );
        let lp = Loop::attach(&image, &[]);
        let dir = at.to_path_buf();
        let mount = Mount::new(lp.path(), &dir);
        SmallFs {
            dir,
            _mount: mount,
            _loop: lp,
        }
    }

    /// Bytes still free.
    pub fn avail(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.dir).unwrap();
        st.blocks_available() * st.fragment_size()
    }

    /// Inodes still free.
    pub fn free_inodes(&self) -> u64 {
        nix::sys::statvfs::statvfs(&self.dir)
            .unwrap()
            .files_available()
    }

    /// Take every free byte into `name` (fallocate most of it, then appends of 4 KiB, then of
    /// one file system block, until ENOSPC: 4 KiB steps alone leave up to three 1 KiB blocks
    /// free, room for a small file that a test expects to fail). Returns the filler's path.
    pub fn fill(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        // The daemon may allocate meanwhile (a segment, a merge): a fallocate that finds less
        // room than measured fails, and is tried again with a wider margin.
        for margin in [512u64 << 10, 4 << 20, 16 << 20] {
            let avail = self.avail();
            if avail <= margin + (1 << 20) {
                break;
            }
            let out = run(Command::new("fallocate")
                .args(["-l", &(avail - margin).to_string()])
                .arg(&p));
            if out.status.success() {
                break;
            }
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        let fs_block = nix::sys::statvfs::statvfs(&self.dir).unwrap().block_size() as usize;
        for step in [4096, fs_block.min(4096)] {
            let block = vec![0xa5u8; step];
            loop {
                match f.write_all(&block).and_then(|()| f.sync_data()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling {}: {e}", p.display()),
                }
            }
        }
        assert_eq!(self.avail(), 0, "{} is not full", self.dir.display());
        p
    }

    /// Take every free inode with empty files in `dir` (made here). Returns the files.
    pub fn use_all_inodes(&self, dir: &str) -> Vec<PathBuf> {
        let d = self.dir.join(dir);
        fs::create_dir(&d).unwrap();
        let mut made = Vec::new();
        for i in 0.. {
            let p = d.join(format!("f{i}"));
            match File::create(&p) {
                Ok(_) => made.push(p),
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("creating {}: {e}", p.display()),
            }
        }
        assert_eq!(self.free_inodes(), 0, "inodes left after filling them");
        made
    }
}
