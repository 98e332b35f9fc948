//! The server's edge: a refusal is a wire error code and a message for the peer and the log.
//! The store's typed errors become codes here, and only here.

use rewind_formats::message::ErrorCode;

use crate::store::admit::AdmitError;
use crate::store::epoch::{EpochRefused, StaleEpoch};
use crate::store::fence::Fenced;
use crate::store::StoreError;

/// Why something an agent sent was refused: the code for the ERROR frame and its text.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

pub(crate) fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// A fenced agent hears its own code, Fenced, with the reason (see [`Fenced`]).
impl From<Fenced> for Refusal {
    fn from(f: Fenced) -> Refusal {
        refuse(ErrorCode::Fenced, f.to_string())
    }
}

/// A session through a path the agent has left (an older epoch): what it carries is stale. Its
/// own code, not Fenced: an agent that hears it (through a relay) must not stop for good.
impl From<StaleEpoch> for Refusal {
    fn from(s: StaleEpoch) -> Refusal {
        refuse(ErrorCode::StaleEpoch, s.to_string())
    }
}

impl From<EpochRefused> for Refusal {
    fn from(e: EpochRefused) -> Refusal {
        match e {
            EpochRefused::Stale(s) => s.into(),
            EpochRefused::Failed(e) => refuse(
                ErrorCode::StoreFailed,
                format!("recording the session's epoch: {e}"),
            ),
        }
    }
}

impl From<AdmitError> for Refusal {
    fn from(e: AdmitError) -> Refusal {
        let code = match &e {
            AdmitError::ReadOnly => ErrorCode::Internal,
            AdmitError::NotOwner { .. } | AdmitError::GroupQuota { .. } => ErrorCode::Forbidden,
            AdmitError::DiskCount { .. } | AdmitError::NoSuchDisk { .. } => ErrorCode::UnknownDisk,
            AdmitError::DiskSize { .. } => ErrorCode::WrongDiskSize,
            AdmitError::Fenced(f) => return f.clone().into(),
            AdmitError::UnknownGeneration { .. } => ErrorCode::StaleGeneration,
            AdmitError::Failed { .. } => ErrorCode::StoreFailed,
        };
        refuse(code, e.to_string())
    }
}

/// The store could not take what was admitted (its writer failed or stopped).
impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        refuse(ErrorCode::StoreFailed, e.to_string())
    }
}
