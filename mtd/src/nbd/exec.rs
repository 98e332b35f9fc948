//! Checking and carrying out one transmission request against the connection's `Volume`.
//!
//! `validate` is cheap and runs on the reader task, so a bad request is answered without a trip
//! to a blocking thread. `execute` does disk IO and must only run on a blocking thread.

use crate::store::StoreError;
use crate::views::exports::Volume;
use crate::views::view::Allocation;

use super::conn::{Conn, Stats};
use super::proto::*;
use super::reply::Body;
use rewind_linux::aligned::AlignedBuf as Buf;

/// An NBD error value and a message.
pub type Failure = (u32, String);

/// Most descriptors sent for one BLOCK_STATUS (the spec lets us answer for a prefix; the client
/// asks again from where we stopped). Bounds the reply to 512 KiB.
const MAX_DESCRIPTORS: usize = 1 << 16;

/// The command flags each command accepts. FUA is valid on every command once SEND_FUA is
/// advertised (and clients are known to set it on reads).
fn allowed_flags(cmd: u16, structured: bool) -> Option<u16> {
    Some(match cmd {
        CMD_READ if structured => CMD_FLAG_FUA | CMD_FLAG_DF,
        CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM => CMD_FLAG_FUA,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
        CMD_BLOCK_STATUS => CMD_FLAG_FUA | CMD_FLAG_REQ_ONE,
        _ => return None,
    })
}

/// Check a request before running it: flags, permissions, lengths and bounds.
pub fn validate(c: &Conn, r: &Request) -> Result<(), Failure> {
    let name = cmd_name(r.cmd);
    let Some(allowed) = allowed_flags(r.cmd, c.structured) else {
        return Err((EINVAL, format!("unknown command {}", r.cmd)));
    };
    if r.flags & !allowed != 0 {
        return Err((
            EINVAL,
            format!(
                "{name}: unsupported command flags {:#x}",
                r.flags & !allowed
            ),
        ));
    }
    let writes = matches!(r.cmd, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && !c.writable {
        return Err((
            EPERM,
            format!(
                "{name} on {}: recovery points are read-only; write to an overlay (`rewind overlay create`)",
                c.export
            ),
        ));
    }
    if matches!(r.cmd, CMD_READ | CMD_WRITE) && r.len > MAX_PAYLOAD {
        return Err((
            EINVAL,
            format!(
                "{name} of {} bytes is larger than the maximum block size ({MAX_PAYLOAD})",
                r.len
            ),
        ));
    }
    if r.cmd == CMD_BLOCK_STATUS {
        if !c.base_allocation {
            return Err((
                EINVAL,
                "block status without a negotiated metadata context (base:allocation)".into(),
            ));
        }
        if r.len == 0 {
            return Err((EINVAL, "block status of length 0".into()));
        }
    }
    if r.cmd == CMD_WRITE_ZEROES
        && r.flags & CMD_FLAG_FAST_ZERO != 0
        && r.flags & CMD_FLAG_NO_HOLE != 0
    {
        // Fully provisioned zeroes are written like data: not fast. Fail fast, as the client
        // asked (it falls back to its own plan, e.g. writing the zeroes itself).
        return Err((
            ENOTSUP,
            "fast zero with no-hole is not faster than a write".into(),
        ));
    }
    if r.cmd != CMD_FLUSH {
        let past_end = match r.offset.checked_add(r.len as u64) {
            Some(end) => end > c.size,
            None => true,
        };
        if past_end {
            // ENOSPC for writes is what the spec asks for; EINVAL for the rest.
            let errno = if matches!(r.cmd, CMD_WRITE | CMD_WRITE_ZEROES) {
                ENOSPC
            } else {
                EINVAL
            };
            return Err((
                errno,
                format!(
                    "{name} at offset {} length {} is past the end of {} ({} bytes)",
                    r.offset, r.len, c.export, c.size
                ),
            ));
        }
    }
    Ok(())
}

/// The NBD error value for a store error.
pub fn errno_of(e: &StoreError) -> u32 {
    match e {
        // EPERM: NBD has no EROFS; a write refused because the export is (now) read-only.
        StoreError::ReadOnly(_) => EPERM,
        StoreError::Invalid { .. } => EINVAL,
        StoreError::Io { source, .. } => match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => ENOSPC,
            _ => EIO,
        },
        _ => EIO,
    }
}

/// Run a validated request. Blocking: call from a blocking thread only.
pub fn execute(c: &Conn, r: &Request, payload: Option<Buf>) -> Body {
    let Some(v) = c.volume() else {
        // Logged once, when the point was released; every later request would flood the log.
        return refused(
            c,
            r,
            (
                EIO,
                format!(
                    "{}: this connection held its point past the server's maximum point age \
                     (--nbd-max-point-age); retention has moved on: reconnect for a newer point",
                    c.export
                ),
            ),
        );
    };
    let v = &*v;
    crate::metrics::nbd::request(&c.export, r.cmd, r.len);
    let fua = || {
        if r.flags & CMD_FLAG_FUA != 0 {
            v.flush()
        } else {
            Ok(())
        }
    };
    let res = match r.cmd {
        CMD_READ => {
            let mut buf = c.pool.get(r.len as usize);
            match v.read_at(&mut buf, r.offset) {
                Ok(()) => {
                    Stats::add(&c.stats.read_bytes, r.len as u64);
                    return Body::Data(buf);
                }
                Err(e) => Err(e),
            }
        }
        CMD_WRITE => {
            let data = payload.expect("the reader reads a WRITE's payload");
            v.write_at(&data, r.offset).and_then(|()| {
                Stats::add(&c.stats.written_bytes, r.len as u64);
                fua()
            })
        }
        CMD_FLUSH => v.flush(),
        // A trimmed overlay block reads as zeroes, which TRIM allows; punching the hole is what
        // frees the space.
        CMD_TRIM => v.write_zeroes(r.offset, r.len as u64).and_then(|()| fua()),
        CMD_WRITE_ZEROES => {
            if r.flags & CMD_FLAG_NO_HOLE != 0 {
                write_zero_bytes(v, r.offset, r.len as u64)
            } else {
                // Punching holes: fast, so FAST_ZERO requests take this path too.
                v.write_zeroes(r.offset, r.len as u64)
            }
            .and_then(|()| fua())
        }
        CMD_BLOCK_STATUS => {
            return match block_status(v, r) {
                Ok(d) => Body::Status(d),
                Err(e) => failure(c, r, (errno_of(&e), e.to_string())),
            }
        }
        _ => return failure(c, r, (EINVAL, format!("unknown command {}", r.cmd))),
    };
    match res {
        Ok(()) => Body::Ok,
        Err(e) => failure(c, r, (errno_of(&e), e.to_string())),
    }
}

/// Zeroes written as data (NO_HOLE: the client wants the range provisioned).
fn write_zero_bytes(v: &Volume, offset: u64, len: u64) -> crate::store::Result<()> {
    let chunk = len.min(1 << 20) as usize;
    let zeroes = vec![0u8; chunk];
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let n = ((end - pos) as usize).min(chunk);
        v.write_at(&zeroes[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// `base:allocation` descriptors for the request: Data -> 0, Zero -> HOLE|ZERO.
fn block_status(v: &Volume, r: &Request) -> crate::store::Result<Vec<(u32, u32)>> {
    if r.flags & CMD_FLAG_REQ_ONE != 0 {
        return Ok(vec![first_extent(v, r.offset, r.len as u64)?]);
    }
    let mut out = Vec::new();
    describe(v, r.offset, r.len as u64, MAX_DESCRIPTORS, &mut out)?;
    Ok(out)
}

/// Descriptors for `[offset, offset + len)`, at most `max`, appended to `out` (merged with its
/// last one when the status is the same).
fn describe(
    v: &Volume,
    offset: u64,
    len: u64,
    max: usize,
    out: &mut Vec<(u32, u32)>,
) -> crate::store::Result<()> {
    let extents = v.extents(offset, len)?;
    let end = offset + len;
    let mut pos = offset;
    for e in extents {
        if out.len() >= max {
            break;
        }
        if e.offset > pos {
            // Not described (should not happen): status 0 is always a safe answer.
            let to = e.offset.min(end);
            push(out, to - pos, 0);
            pos = to;
        }
        let e_end = (e.offset + e.len).min(end);
        if e_end > pos {
            let flags = match e.allocation {
                Allocation::Data => 0,
                Allocation::Zero => STATE_HOLE | STATE_ZERO,
            };
            push(out, e_end - pos, flags);
            pos = e_end;
        }
        if pos >= end {
            break;
        }
    }
    if pos == offset {
        push(out, len, 0);
    }
    Ok(())
}

/// The one extent at `offset` (NBD_CMD_FLAG_REQ_ONE, which qemu always sets). The cost of
/// `extents` grows with the range, and qemu asks about everything up to the end of the disk one
/// extent at a time, so look through a small window first and widen it only while the first
/// extent runs on.
fn first_extent(v: &Volume, offset: u64, len: u64) -> crate::store::Result<(u32, u32)> {
    let mut window = 256u64 << 10;
    let mut run: Option<(u64, u32)> = None;
    loop {
        let from = offset + run.map_or(0, |r| r.0);
        let w = window.min(offset + len - from);
        let mut d = Vec::with_capacity(2);
        describe(v, from, w, 2, &mut d)?;
        let (first_len, flags) = (d[0].0 as u64, d[0].1);
        match &mut run {
            None => run = Some((first_len, flags)),
            Some(r) if r.1 == flags => r.0 += first_len,
            Some(_) => break,
        }
        let covered = run.expect("set").0;
        if first_len < w || covered >= len {
            break;
        }
        window = (window * 4).min(1 << 30);
    }
    let (l, f) = run.expect("at least one window");
    Ok((l as u32, f))
}

/// Append a descriptor, merging it into the previous one when the status is the same. Lengths
/// fit: the total never exceeds the request's 32-bit length.
fn push(out: &mut Vec<(u32, u32)>, len: u64, flags: u32) {
    match out.last_mut() {
        Some(last) if last.1 == flags => last.0 += len as u32,
        _ => out.push((len as u32, flags)),
    }
}

/// Count, log and wrap a failed request.
fn failure(c: &Conn, r: &Request, (errno, msg): Failure) -> Body {
    Stats::add(&c.stats.errors, 1);
    if matches!(errno, EIO | ENOSPC) {
        tracing::warn!(
            peer = %c.peer,
            export = %c.export,
            cmd = cmd_name(r.cmd),
            offset = r.offset,
            len = r.len,
            errno,
            error = %msg,
            "nbd request failed"
        );
    } else {
        tracing::debug!(
            peer = %c.peer,
            export = %c.export,
            cmd = cmd_name(r.cmd),
            errno,
            error = %msg,
            "nbd request failed"
        );
    }
    Body::Err { errno, msg }
}

/// A request `validate` refused: the client's mistake, so only a debug line.
pub fn refused(c: &Conn, r: &Request, (errno, msg): Failure) -> Body {
    Stats::add(&c.stats.errors, 1);
    tracing::debug!(
        peer = %c.peer,
        export = %c.export,
        cmd = cmd_name(r.cmd),
        offset = r.offset,
        len = r.len,
        errno,
        error = %msg,
        "nbd request refused"
    );
    Body::Err { errno, msg }
}
