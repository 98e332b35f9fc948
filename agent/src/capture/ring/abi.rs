//! The parts of the FUSE kernel ABI (`include/uapi/linux/fuse.h`, 7.42 and later) the capture
//! server speaks: opcodes, init flags, and the byte layouts it reads and writes, little-endian
//! at fixed offsets (the kernel and this server share one machine, and every layout here is a
//! plain sequence of integers).

/// FUSE opcodes the capture server answers (every other one gets ENOSYS).
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
}

/// The protocol version this server speaks (the kernel's, if older, wins).
pub const KERNEL_MAJOR: u32 = 7;
pub const KERNEL_MINOR: u32 = 42;

/// `fuse_init_in.flags` / `fuse_init_out.flags` bits.
pub const ASYNC_READ: u32 = 1 << 0;
pub const BIG_WRITES: u32 = 1 << 5;
pub const ASYNC_DIO: u32 = 1 << 15;
pub const MAX_PAGES: u32 = 1 << 22;
pub const INIT_EXT: u32 = 1 << 30;
/// `flags2` bit of `FUSE_OVER_IO_URING` (bit 41 of the 64-bit flags).
pub const OVER_IO_URING2: u32 = 1 << (41 - 32);

/// `fuse_open_out.open_flags`.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
pub const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;

/// `fuse_setattr_in.valid` bit: the size is being set.
pub const FATTR_SIZE: u32 = 1 << 3;

/// io_uring command ops on `/dev/fuse` (`enum fuse_uring_cmd`).
pub const URING_CMD_REGISTER: u32 = 1;
pub const URING_CMD_COMMIT_AND_FETCH: u32 = 2;

/// `struct fuse_in_header`.
pub const IN_HEADER_LEN: usize = 40;
/// `struct fuse_out_header`.
pub const OUT_HEADER_LEN: usize = 16;

/// `struct fuse_uring_req_header`: `in_out[128]`, `op_in[128]`, then `fuse_uring_ent_in_out`
/// (flags u64, commit_id u64, payload_sz u32, padding u32, reserved u64).
pub const RING_OP_IN: usize = 128;
pub const RING_OP_IN_LEN: usize = 128;
pub const RING_COMMIT_ID: usize = 256 + 8;
pub const RING_PAYLOAD_SZ: usize = 256 + 16;
pub const RING_HEADER_LEN: usize = 256 + 32;

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// `struct fuse_in_header`, the fields used.
#[derive(Clone, Copy, Debug)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> Option<InHeader> {
        (b.len() >= IN_HEADER_LEN).then(|| InHeader {
            len: u32_at(b, 0),
            opcode: u32_at(b, 4),
            unique: u64_at(b, 8),
            nodeid: u64_at(b, 16),
        })
    }
}

/// `struct fuse_out_header` for a reply of `args` bytes.
pub fn out_header(unique: u64, error: i32, args: usize) -> [u8; OUT_HEADER_LEN] {
    let mut h = [0u8; OUT_HEADER_LEN];
    h[0..4].copy_from_slice(&((OUT_HEADER_LEN + args) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&error.to_le_bytes());
    h[8..16].copy_from_slice(&unique.to_le_bytes());
    h
}

/// A little-endian writer for reply structs.
#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn u16(mut self, v: u16) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn zeros(mut self, n: usize) -> Out {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

/// The fields of `struct fuse_attr` the capture files have.
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch, for all three times.
    pub time: u64,
}

impl Attr {
    /// `struct fuse_attr` (88 bytes).
    pub fn put(&self, o: Out) -> Out {
        o.u64(self.ino)
            .u64(self.size)
            .u64(self.size.div_ceil(512))
            .u64(self.time)
            .u64(self.time)
            .u64(self.time)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(self.mode)
            .u32(self.nlink)
            .u32(self.uid)
            .u32(self.gid)
            .u32(0)
            .u32(4096)
            .u32(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_the_kernel_sizes() {
        let a = Attr {
            ino: 2,
            size: 1 << 20,
            mode: 0o100600,
            nlink: 1,
            uid: 0,
            gid: 0,
            time: 1,
        };
        assert_eq!(a.put(Out::default()).0.len(), 88, "struct fuse_attr");
        assert_eq!(out_header(7, -2, 8)[0..4], 24u32.to_le_bytes());
        let mut h = [0u8; 40];
        h[4..8].copy_from_slice(&16u32.to_le_bytes());
        h[8..16].copy_from_slice(&99u64.to_le_bytes());
        let p = InHeader::parse(&h).unwrap();
        assert_eq!((p.opcode, p.unique), (op::WRITE, 99));
        assert!(InHeader::parse(&h[..39]).is_none());
    }
}
