//! Reading and writing whole frames on an async byte stream.

use rewind_formats::frame::{FrameHeader, FrameKind, FRAME_HEADER_LEN};
use rewind_formats::message::{ErrorCode, Message};
use rewind_formats::DecodeError;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("connection cut mid-frame after {got} of {want} bytes")]
    CutMidFrame { got: usize, want: usize },
    #[error("bad frame: {0}")]
    Bad(#[from] DecodeError),
    #[error("read failed: {0}")]
    Io(std::io::Error),
}

impl ReadError {
    /// The ERROR code to tell the peer, if the connection can still carry one.
    pub(crate) fn code(&self) -> Option<ErrorCode> {
        match self {
            ReadError::Bad(DecodeError::HeaderChecksum | DecodeError::PayloadChecksum) => {
                Some(ErrorCode::BadChecksum)
            }
            ReadError::Bad(_) => Some(ErrorCode::Protocol),
            _ => None,
        }
    }
}

/// Read into `buf` completely; distinguishes a clean close (nothing read) from a cut.
async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    before: usize,
    want: usize,
) -> Result<(), ReadError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]).await {
            Ok(0) if got == 0 && before == 0 => return Err(ReadError::Closed),
            Ok(0) => {
                return Err(ReadError::CutMidFrame {
                    got: before + got,
                    want,
                })
            }
            Ok(n) => got += n,
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(())
}

/// Read and verify one frame into `payload` (reused across frames, so a session does not allocate
/// and zero megabytes per batch); returns its kind and payload length. Every frame of a session
/// must carry `version`, the version of its HELLO.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    payload: &mut Vec<u8>,
    version: u16,
) -> Result<(FrameKind, usize), ReadError> {
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    fill(r, &mut hdr, 0, FRAME_HEADER_LEN).await?;
    let h = FrameHeader::decode(&hdr)?;
    if h.version != version {
        return Err(ReadError::Bad(DecodeError::Invalid {
            what: "frame version",
            why: format!(
                "a version {} {} frame in a session whose HELLO was version {version}",
                h.version,
                h.kind.name()
            ),
        }));
    }
    let len = h.payload_len as usize;
    let want = FRAME_HEADER_LEN + len;
    // payload_len is capped by FrameHeader::decode (MAX_FRAME_PAYLOAD), so this is bounded.
    if payload.len() < len {
        payload.resize(len, 0);
    }
    fill(r, &mut payload[..len], FRAME_HEADER_LEN, want).await?;
    h.verify_payload(&payload[..len])?;
    Ok((h.kind, len))
}

/// Read, verify and decode a session's first frame, which must be a HELLO of at most
/// [`rewind_formats::frame::MAX_HELLO_PAYLOAD`] bytes. Nothing is known of the peer yet, so the header is checked before
/// any payload is read, and the payload buffer grows with the bytes that actually arrive instead
/// of being sized from the header: a bare header costs the target 24 bytes, not megabytes.
/// Returns the message and the frame version the session then speaks.
pub(crate) async fn read_hello<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(Message, u16), ReadError> {
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    fill(r, &mut hdr, 0, FRAME_HEADER_LEN).await?;
    let h = FrameHeader::decode(&hdr)?;
    h.check_first()?;
    let len = h.payload_len as usize;
    let mut payload = Vec::new();
    let got = r
        .take(len as u64)
        .read_to_end(&mut payload)
        .await
        .map_err(ReadError::Io)?;
    if got < len {
        return Err(ReadError::CutMidFrame {
            got: FRAME_HEADER_LEN + got,
            want: FRAME_HEADER_LEN + len,
        });
    }
    h.verify_payload(&payload)?;
    let m = Message::decode_version(h.version, h.kind, &payload)?;
    Ok((m, h.version))
}
