//! One direction of one proxied connection: read a chunk, apply the fault due (if any) and the
//! slow windows still open, forward it. A half-close passes on; a cut, a truncation or an error
//! in either direction ends both (a cut is a cut of both streams).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::injector::Injector;
use super::plan::Fault;

/// Read size: big enough for a batch frame to cross in a few chunks.
const CHUNK: usize = 64 << 10;

/// Latency and bandwidth windows opened by earlier faults on this direction.
#[derive(Default)]
struct Slow {
    latency: Option<(Duration, Instant)>,
    bandwidth: Option<(u64, Instant)>,
}

impl Slow {
    /// How long to hold a chunk of `n` bytes.
    fn delay(&mut self, n: usize) -> Duration {
        let now = Instant::now();
        let mut d = Duration::ZERO;
        if let Some((per_chunk, until)) = self.latency {
            if now < until {
                d += per_chunk;
            } else {
                self.latency = None;
            }
        }
        if let Some((bps, until)) = self.bandwidth {
            if now < until {
                d += Duration::from_secs_f64(n as f64 / bps as f64);
            } else {
                self.bandwidth = None;
            }
        }
        d
    }
}

/// Forwards `rd` to `wr` until `rd` ends (then half-closes `wr`), or a fault or an error cuts
/// the connection (then fires `cut`, which ends the other direction too).
pub(super) async fn pump<R, W>(
    mut rd: R,
    mut wr: W,
    up: bool,
    inj: Arc<Injector>,
    cut: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut slow = Slow::default();
    // This connection's agent-to-target stream carried a corruption to the target already.
    let mut corrupted = false;
    loop {
        let n = tokio::select! {
            _ = cut.cancelled() => break,
            r = rd.read(&mut buf) => match r {
                // A half-close passes on; the other direction goes on until it ends too.
                Ok(0) => {
                    let _ = wr.shutdown().await;
                    return;
                }
                Ok(n) => n,
                Err(_) => break,
            },
        };
        let fault = inj.take(up, n);
        if let Some(Fault::Corrupt { flips }) = &fault {
            for &(at, x) in flips {
                buf[at] ^= x;
            }
        }
        let chunk = &buf[..n];
        let mut out: Vec<&[u8]> = vec![chunk];
        let mut cut_after = false;
        let mut hold = Duration::ZERO;
        match &fault {
            None | Some(Fault::Corrupt { .. }) => {}
            Some(Fault::Cut) => break,
            Some(Fault::Stall(d)) => hold = *d,
            Some(Fault::Latency { per_chunk, window }) => {
                slow.latency = Some((*per_chunk, Instant::now() + *window));
            }
            Some(Fault::Bandwidth {
                bytes_per_sec,
                window,
            }) => slow.bandwidth = Some((*bytes_per_sec, Instant::now() + *window)),
            Some(Fault::Truncate { keep }) => {
                out = vec![&chunk[..*keep]];
                cut_after = true;
            }
            Some(Fault::Duplicate { start, len }) => {
                out = vec![&chunk[..start + len], &chunk[*start..]];
            }
        }
        let corrupt = matches!(fault, Some(Fault::Corrupt { .. }));
        hold += slow.delay(n);
        if !hold.is_zero() {
            tokio::select! {
                _ = cut.cancelled() => break,
                _ = sleep(hold) => {}
            }
        }
        let mut failed = false;
        for part in out {
            let w = tokio::select! {
                _ = cut.cancelled() => Err(()),
                r = wr.write_all(part) => r.map_err(|_| ()),
            };
            if w.is_err() {
                failed = true;
                break;
            }
            inj.counters.forwarded(up, part.len());
        }
        if failed {
            break;
        }
        if corrupt && up && !corrupted {
            corrupted = true;
            inj.counters.corrupt_delivered_up();
        }
        if cut_after {
            break;
        }
    }
    cut.cancel();
}
