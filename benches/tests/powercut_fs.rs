//! The power-cut file system through the kernel: what was fsynced survives a cut, what was not
//! is gone, and directory entries follow their directory's fsync.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use rewind_benches::harness::tempdir;
use rewind_benches::powercut::PowercutMount;

/// A mount in a fresh scratch directory, or `None` (said loudly) without root and /dev/fuse;
/// with REWIND_REQUIRE_TOOLS set (the suite) that fails instead.
fn mount() -> Option<(tempfile::TempDir, PowercutMount)> {
    let ok = nix::unistd::geteuid().is_root() && Path::new("/dev/fuse").exists();
    if !ok {
        assert!(
            std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(),
            "the power-cut fs tests need root and /dev/fuse"
        );
        eprintln!("SKIPPED: needs root and /dev/fuse");
        return None;
    }
    let work = tempdir();
    let backing = work.path().join("backing");
    fs::create_dir(&backing).unwrap();
    let m = PowercutMount::mount(&backing, &work.path().join("mnt")).expect("mount");
    Some((work, m))
}

fn sync_dir(p: &Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

fn rw(p: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

#[test]
fn fsynced_bytes_survive_a_cut_and_unsynced_ones_do_not() {
    let Some((_work, mut m)) = mount() else {
        return;
    };
    let dir = m.dir().to_path_buf();
    let p = dir.join("f");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    f.write_all_at(&[1u8; 8192], 0).unwrap();
    f.sync_data().unwrap();
    sync_dir(&dir);
    f.write_all_at(&[2u8; 4096], 4096).unwrap(); // overwrite, unsynced
    f.write_all_at(&[3u8; 4096], 8192).unwrap(); // extends, unsynced
    assert_eq!(fs::read(&p).unwrap().len(), 12288);
    let pending = m.unsynced();
    assert_eq!(pending.bytes, 8192);
    drop(f);
    let report = m.cut().unwrap();
    assert_eq!(report.bytes, 8192);
    assert_eq!(fs::read(&p).unwrap(), vec![1u8; 8192]);

    // ftruncate is undone too, and fsync makes it stick.
    let f = rw(&p);
    f.set_len(100).unwrap();
    drop(f);
    m.cut().unwrap();
    assert_eq!(fs::read(&p).unwrap(), vec![1u8; 8192]);
    let f = rw(&p);
    f.set_len(100).unwrap();
    f.sync_all().unwrap();
    drop(f);
    m.cut().unwrap();
    assert_eq!(fs::read(&p).unwrap(), vec![1u8; 100]);
}

#[test]
fn unsynced_creates_and_renames_are_gone_after_a_cut() {
    let Some((_work, mut m)) = mount() else {
        return;
    };
    let dir = m.dir().to_path_buf();
    // Created and fsynced, but its directory never was: gone.
    let a = dir.join("a");
    let f = File::create(&a).unwrap();
    f.write_all_at(b"a", 0).unwrap();
    f.sync_all().unwrap();
    fs::create_dir(dir.join("d")).unwrap();
    drop(f);
    let r = m.cut().unwrap();
    assert!(r.entries >= 2 && r.inodes >= 2, "{r:?}");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);

    // The publish pattern: tmp, fsync, rename, fsync the directory.
    let tmp = dir.join("x.tmp");
    let x = dir.join("x");
    fs::write(&tmp, b"old").unwrap();
    File::open(&tmp).unwrap().sync_all().unwrap();
    fs::rename(&tmp, &x).unwrap();
    sync_dir(&dir);
    // A second version renamed over it, without the directory fsync: the old one comes back.
    fs::write(&tmp, b"new").unwrap();
    File::open(&tmp).unwrap().sync_all().unwrap();
    fs::rename(&tmp, &x).unwrap();
    assert_eq!(fs::read(&x).unwrap(), b"new");
    m.cut().unwrap();
    assert_eq!(fs::read(&x).unwrap(), b"old");
    assert_eq!(fs::metadata(&tmp).unwrap_err().kind(), ErrorKind::NotFound);
    // With the directory fsync the rename survives.
    fs::write(&tmp, b"new").unwrap();
    File::open(&tmp).unwrap().sync_all().unwrap();
    fs::rename(&tmp, &x).unwrap();
    sync_dir(&dir);
    m.cut().unwrap();
    assert_eq!(fs::read(&x).unwrap(), b"new");

    // An unsynced unlink comes back; a synced one does not.
    fs::remove_file(&x).unwrap();
    m.cut().unwrap();
    assert_eq!(fs::read(&x).unwrap(), b"new");
    fs::remove_file(&x).unwrap();
    sync_dir(&dir);
    m.cut().unwrap();
    assert!(!x.exists());
}

#[test]
fn a_new_directory_needs_its_parent_synced() {
    let Some((_work, mut m)) = mount() else {
        return;
    };
    let root = m.dir().to_path_buf();
    let d = root.join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), b"f").unwrap();
    File::open(d.join("f")).unwrap().sync_all().unwrap();
    sync_dir(&d);
    m.cut().unwrap();
    assert!(!d.exists(), "d was never made durable in its parent");

    fs::create_dir(&d).unwrap();
    sync_dir(&root);
    fs::write(d.join("f"), b"f").unwrap();
    File::open(d.join("f")).unwrap().sync_all().unwrap();
    m.cut().unwrap();
    assert!(d.is_dir());
    assert!(!d.join("f").exists(), "f was never made durable in d");
}

#[test]
fn o_direct_excl_fallocate_and_holes_work() {
    let Some((_work, mut m)) = mount() else {
        return;
    };
    let dir = m.dir().to_path_buf();
    let p = dir.join("seg");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .unwrap();
    sync_dir(&dir);
    let again = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p);
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FallocateFlags::empty(),
        0,
        1 << 20,
    )
    .unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    f.write_all_at(&[7u8; 4096], 65536).unwrap();
    f.sync_data().unwrap();
    // SEEK_DATA finds the written block in the preallocated (unwritten) file.
    let data = nix::unistd::lseek(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        0,
        nix::unistd::Whence::SeekData,
    )
    .unwrap();
    assert!(data <= 65536, "SEEK_DATA gave {data}");
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        65536,
        4096,
    )
    .unwrap();
    drop(f);
    // The punch was not synced: the block comes back.
    m.cut().unwrap();
    let bytes = fs::read(&p).unwrap();
    assert_eq!(bytes.len(), 1 << 20);
    assert!(bytes[65536..69632].iter().all(|&b| b == 7));
    assert!(bytes[..65536].iter().all(|&b| b == 0));
    let st = nix::sys::statvfs::statvfs(&dir).unwrap();
    assert!(st.blocks() > 0);
}
