//! Store errors as the errno a FUSE reply carries.

use fuser::Errno;

use crate::store::StoreError;

pub fn errno(e: &StoreError) -> Errno {
    match e {
        StoreError::Io { source, .. } => match source.raw_os_error() {
            Some(code @ (libc::ENOSPC | libc::EDQUOT | libc::EROFS)) => Errno::from_i32(code),
            _ => Errno::EIO,
        },
        StoreError::Corrupt { .. }
        | StoreError::Manifest { .. }
        | StoreError::Failed(_)
        | StoreError::LongTerm(_) => Errno::EIO,
        StoreError::UnknownGroup(_)
        | StoreError::UnknownDisk { .. }
        | StoreError::BadPoint { .. }
        | StoreError::PointNotFound { .. }
        | StoreError::PointTooOld { .. }
        | StoreError::NotRecoverable { .. }
        | StoreError::UnknownOverlay(_) => Errno::ENOENT,
        StoreError::OverlayInUse { .. } => Errno::EBUSY,
        StoreError::Locked(_) => Errno::EBUSY,
        StoreError::ReadOnly(_) => Errno::EROFS,
        StoreError::Invalid { .. } => Errno::EINVAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_store_errors() {
        let io = |code| StoreError::Io {
            op: "read",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(code),
        };
        assert_eq!(errno(&io(libc::EIO)), Errno::EIO);
        assert_eq!(errno(&io(libc::EBADMSG)), Errno::EIO);
        assert_eq!(errno(&io(libc::ENOSPC)), Errno::ENOSPC);
        assert_eq!(errno(&StoreError::UnknownGroup("g".into())), Errno::ENOENT);
        assert_eq!(
            errno(&StoreError::PointTooOld {
                spec: "seq:1".into(),
                horizon: 5,
                detail: String::new()
            }),
            Errno::ENOENT
        );
        assert_eq!(errno(&StoreError::ReadOnly("x".into())), Errno::EROFS);
    }
}
