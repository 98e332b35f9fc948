//! The fixed newstyle handshake: option haggling until the client picks an export (NBD_OPT_GO or
//! NBD_OPT_EXPORT_NAME), asks for TLS (NBD_OPT_STARTTLS), or leaves.
//!
//! Where TLS is required, every option but STARTTLS and ABORT is answered NBD_REP_ERR_TLS_REQD
//! (NBD_OPT_EXPORT_NAME, which has no error reply, is hung up on) until the client has upgraded;
//! only then do its grants come into play.
//!
//! Every option error is answered and the connection stays usable for the next option, except
//! where the protocol leaves no way to answer (a failed NBD_OPT_EXPORT_NAME, unknown client
//! flags, a bad option magic): then we hang up.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::store::StoreError;
use crate::views::exports::{ExportName, Exports, Volume};

use super::clients::Grants;
use super::conn::transmission_flags;
use super::proto::*;

/// Option data we read into memory; longer options are skipped and refused with ERR_TOO_BIG.
const MAX_OPT_DATA: u32 = 64 << 10;
/// Longer than this and we do not even skip it: hang up.
const MAX_OPT_SKIP: u32 = 16 << 20;

/// What the handshake agreed on.
pub struct Negotiated {
    pub export: String,
    pub volume: Volume,
    pub structured: bool,
    pub base_allocation: bool,
}

struct State {
    structured: bool,
    no_zeroes: bool,
    /// The export the last NBD_OPT_SET_META_CONTEXT selected `base:allocation` for.
    meta_export: Option<String>,
    /// The last export opened (by INFO, SET_META_CONTEXT or GO), kept so that the usual
    /// INFO/SET_META_CONTEXT -> GO sequence opens (and pins) one point, the one it described.
    opened: Option<(String, Volume)>,
}

/// How STARTTLS stands on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Not offered (the unix socket, `--nbd-insecure` TCP): STARTTLS is unsupported.
    Off,
    /// Required and not yet done: only STARTTLS and ABORT are served (NBD's "forced TLS").
    Required,
    /// Negotiated: the stream is encrypted now.
    Done,
}

/// What the option haggling ended with.
pub enum Outcome {
    /// The client chose an export.
    Go(Negotiated),
    /// NBD_OPT_STARTTLS was acknowledged: upgrade the stream, then haggle again with `Tls::Done`.
    StartTls,
    /// The client left or must be hung up on (logged here).
    Closed,
}

/// What a connection may see and do, for the option haggling.
pub struct Ctx<'a> {
    pub exports: &'a Arc<Exports>,
    pub grants: &'a Grants,
    pub peer: &'a str,
}

/// Send the greeting and read the client's flags. `Ok(None)`: unknown flags (hung up, logged);
/// `Ok(Some(no_zeroes))` otherwise.
pub async fn greet<S>(s: &mut S, peer: &str) -> std::io::Result<Option<bool>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello).await?;
    s.flush().await?;

    let client_flags = s.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        tracing::warn!(
            peer,
            client_flags,
            "nbd client sent unknown handshake flags; closing"
        );
        return Ok(None);
    }
    Ok(Some(client_flags & FLAG_C_NO_ZEROES != 0))
}

/// Haggle over options on `s` until the client picks an export, asks for TLS, or leaves.
pub async fn options<S>(
    s: &mut S,
    ctx: &Ctx<'_>,
    no_zeroes: bool,
    tls: Tls,
) -> std::io::Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (exports, peer) = (ctx.exports, ctx.peer);
    let mut st = State {
        structured: false,
        no_zeroes,
        meta_export: None,
        opened: None,
    };
    let mut out = Vec::with_capacity(4096);
    loop {
        let magic = s.read_u64().await?;
        if magic != IHAVEOPT {
            tracing::warn!(peer, magic, "nbd option with a bad magic; closing");
            return Ok(Outcome::Closed);
        }
        let opt = s.read_u32().await?;
        let len = s.read_u32().await?;
        if len > MAX_OPT_DATA {
            if len > MAX_OPT_SKIP || opt == OPT_EXPORT_NAME {
                tracing::warn!(peer, opt, len, "nbd option too large; closing");
                return Ok(Outcome::Closed);
            }
            tokio::io::copy(&mut (&mut *s).take(len as u64), &mut tokio::io::sink()).await?;
            put_error(&mut out, opt, REP_ERR_TOO_BIG, "option data too large");
            send(s, &mut out).await?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;
        out.clear();
        if tls == Tls::Required && !matches!(opt, OPT_STARTTLS | OPT_ABORT) {
            if opt == OPT_EXPORT_NAME {
                // No error reply exists for it: the protocol says hang up.
                tracing::info!(
                    peer,
                    "nbd client asked for an export before STARTTLS; closing"
                );
                return Ok(Outcome::Closed);
            }
            put_error(
                &mut out,
                opt,
                REP_ERR_TLS_REQD,
                "this server requires TLS: negotiate NBD_OPT_STARTTLS first",
            );
            send(s, &mut out).await?;
            continue;
        }
        match opt {
            OPT_EXPORT_NAME => {
                let Ok(name) = String::from_utf8(data) else {
                    tracing::warn!(peer, "nbd export name is not UTF-8; closing");
                    return Ok(Outcome::Closed);
                };
                match st.open(ctx, &name).await {
                    Ok(()) => {}
                    Err(e) => {
                        // NBD_OPT_EXPORT_NAME has no error reply: hanging up is all we can do.
                        tracing::warn!(peer, who = %ctx.grants.who, export = %name, error = %e, "nbd export unavailable; closing");
                        return Ok(Outcome::Closed);
                    }
                }
                let (_, volume) = st.opened.take().expect("just opened");
                let flags = transmission_flags(volume.writable(), st.structured);
                out.extend_from_slice(&volume.size_bytes().to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
                if !st.no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                send(s, &mut out).await?;
                let base_allocation = st.meta_export.as_deref() == Some(name.as_str());
                return Ok(Outcome::Go(Negotiated {
                    export: name,
                    volume,
                    structured: st.structured,
                    base_allocation,
                }));
            }
            OPT_ABORT => {
                put_opt_reply(&mut out, opt, REP_ACK, &[]);
                // The client may already have closed its end; that is fine.
                let _ = send(s, &mut out).await;
                tracing::debug!(peer, "nbd client aborted the handshake");
                return Ok(Outcome::Closed);
            }
            OPT_LIST => {
                if len != 0 {
                    put_error(&mut out, opt, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
                } else {
                    list(exports, ctx.grants, &mut out, opt);
                }
            }
            OPT_STARTTLS => match tls {
                Tls::Required if len == 0 => {
                    put_opt_reply(&mut out, opt, REP_ACK, &[]);
                    send(s, &mut out).await?;
                    return Ok(Outcome::StartTls);
                }
                Tls::Required => {
                    put_error(&mut out, opt, REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data")
                }
                Tls::Done => put_error(&mut out, opt, REP_ERR_INVALID, "TLS is already on"),
                Tls::Off => put_error(
                    &mut out,
                    opt,
                    REP_ERR_UNSUP,
                    "TLS is not offered on this listener (the unix socket checks the peer's uid instead)",
                ),
            },
            OPT_INFO | OPT_GO => {
                if let Some(n) = st.info_or_go(ctx, opt, &data, &mut out).await {
                    send(s, &mut out).await?;
                    return Ok(Outcome::Go(n));
                }
            }
            OPT_STRUCTURED_REPLY => {
                if len != 0 {
                    put_error(
                        &mut out,
                        opt,
                        REP_ERR_INVALID,
                        "NBD_OPT_STRUCTURED_REPLY takes no data",
                    );
                } else {
                    st.structured = true;
                    put_opt_reply(&mut out, opt, REP_ACK, &[]);
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                st.meta_context(ctx, opt, &data, &mut out).await;
            }
            _ => {
                put_error(
                    &mut out,
                    opt,
                    REP_ERR_UNSUP,
                    &format!("option {opt} is not supported"),
                );
            }
        }
        send(s, &mut out).await?;
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    s.write_all(out).await?;
    s.flush().await?;
    out.clear();
    Ok(())
}

fn put_error(out: &mut Vec<u8>, opt: u32, kind: u32, msg: &str) {
    put_opt_reply(out, opt, kind, clip_str(msg).as_bytes());
}

/// NBD_OPT_LIST: the latest export of every disk, and every overlay, of the groups the client
/// may read (others do not exist, as far as it can tell).
fn list(exports: &Exports, grants: &Grants, out: &mut Vec<u8>, opt: u32) {
    let mut entries: Vec<(String, String)> = exports
        .list()
        .into_iter()
        .filter(|(g, _, _)| grants.may_read(g))
        .map(|(g, d, size)| {
            (
                format!("{g}/{d}"),
                format!("{g}/{d} latest ({size} bytes, read-only; GROUP/DISK@POINT for others)"),
            )
        })
        .collect();
    for o in exports.overlays.list() {
        let m = &o.meta;
        if !grants.may_read(&m.group) {
            continue;
        }
        let rw = if grants.may_write(&m.group) {
            "writable"
        } else {
            "read-only for you"
        };
        entries.push((
            format!("{}/{}@overlay:{}", m.group, m.disk, m.name),
            format!(
                "overlay {} over {}/{} at seq {} ({} bytes, {rw})",
                m.name, m.group, m.disk, m.seq, m.size_bytes
            ),
        ));
    }
    for (name, desc) in entries {
        let mut p = Vec::with_capacity(4 + name.len() + desc.len());
        p.extend_from_slice(&(name.len() as u32).to_be_bytes());
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(clip_str(&desc).as_bytes());
        put_opt_reply(out, opt, REP_SERVER, &p);
    }
    put_opt_reply(out, opt, REP_ACK, &[]);
}

/// A little reader over option data; every getter fails cleanly past the end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.bytes(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.bytes(4)?.try_into().ok()?))
    }
    /// A string with a 32-bit length before it.
    fn string(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        if n > MAX_STRING {
            return None;
        }
        std::str::from_utf8(self.bytes(n)?).ok()
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// A description of an opened export (NBD_INFO_DESCRIPTION).
fn describe(name: &str, v: &Volume) -> String {
    if v.writable() {
        format!("{name}: writable overlay over seq {}", v.seq())
    } else {
        format!("{name}: read-only, frozen at seq {}", v.seq())
    }
}

impl State {
    /// Open `name` unless it is the export already open. A group the client may not read is
    /// unknown to it, with the very error a group that does not exist gets; an overlay it may
    /// read but not write opens read-only.
    async fn open(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<(), StoreError> {
        if matches!(&self.opened, Some((n, _)) if n == name) {
            return Ok(());
        }
        // Drop the previous one first: it may pin a point we no longer need.
        self.opened = None;
        let parsed = ExportName::parse(name)?;
        if !ctx.grants.may_read(&parsed.group) {
            return Err(StoreError::UnknownGroup(parsed.group));
        }
        let may_write = ctx.grants.may_write(&parsed.group);
        let exports = ctx.exports.clone();
        // Opening resolves points and reads the store: not on a tokio worker.
        let v = tokio::task::spawn_blocking(move || {
            exports.open_parsed(&parsed).map(|v| v.for_nbd(may_write))
        })
        .await
        .map_err(|e| StoreError::Failed(format!("opening export: {e}")))??;
        self.opened = Some((name.to_string(), v));
        Ok(())
    }

    /// NBD_OPT_INFO and NBD_OPT_GO. Returns the negotiated export for a successful GO.
    async fn info_or_go(
        &mut self,
        ctx: &Ctx<'_>,
        opt: u32,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Negotiated> {
        let peer = ctx.peer;
        let mut c = Cursor(data);
        let parsed = (|| {
            let name = c.string()?;
            let n = c.u16()?;
            let mut infos = Vec::with_capacity(n as usize);
            for _ in 0..n {
                infos.push(c.u16()?);
            }
            c.done().then_some((name.to_string(), infos))
        })();
        let Some((name, infos)) = parsed else {
            put_error(
                out,
                opt,
                REP_ERR_INVALID,
                "malformed NBD_OPT_INFO/NBD_OPT_GO data",
            );
            return None;
        };
        if let Err(e) = self.open(ctx, &name).await {
            tracing::info!(peer, who = %ctx.grants.who, export = %name, error = %e, "nbd client asked for an unavailable export");
            put_error(out, opt, REP_ERR_UNKNOWN, &format!("export {name:?}: {e}"));
            return None;
        }
        let v = &self.opened.as_ref().expect("just opened").1;
        let flags = transmission_flags(v.writable(), self.structured);
        let mut p = Vec::with_capacity(16);
        p.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        p.extend_from_slice(&v.size_bytes().to_be_bytes());
        p.extend_from_slice(&flags.to_be_bytes());
        put_opt_reply(out, opt, REP_INFO, &p);
        // Block sizes are sent whether asked for or not: they are the protocol's defaults with a
        // concrete maximum, so a client that did not ask loses nothing.
        p.clear();
        p.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        p.extend_from_slice(&MIN_BLOCK.to_be_bytes());
        p.extend_from_slice(&PREFERRED_BLOCK.to_be_bytes());
        p.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
        put_opt_reply(out, opt, REP_INFO, &p);
        if infos.contains(&INFO_NAME) {
            p.clear();
            p.extend_from_slice(&INFO_NAME.to_be_bytes());
            p.extend_from_slice(clip_str(&name).as_bytes());
            put_opt_reply(out, opt, REP_INFO, &p);
        }
        if infos.contains(&INFO_DESCRIPTION) {
            p.clear();
            p.extend_from_slice(&INFO_DESCRIPTION.to_be_bytes());
            p.extend_from_slice(clip_str(&describe(&name, v)).as_bytes());
            put_opt_reply(out, opt, REP_INFO, &p);
        }
        put_opt_reply(out, opt, REP_ACK, &[]);
        if opt != OPT_GO {
            return None;
        }
        let (export, volume) = self.opened.take().expect("opened");
        // Block status is only for the export the contexts were negotiated on.
        let base_allocation = self.meta_export.as_deref() == Some(export.as_str());
        Some(Negotiated {
            export,
            volume,
            structured: self.structured,
            base_allocation,
        })
    }

    /// NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: we know `base:allocation`.
    async fn meta_context(&mut self, ctx: &Ctx<'_>, opt: u32, data: &[u8], out: &mut Vec<u8>) {
        let set = opt == OPT_SET_META_CONTEXT;
        if set {
            // A SET replaces the selection, even when it fails.
            self.meta_export = None;
        }
        if !self.structured {
            put_error(
                out,
                opt,
                REP_ERR_INVALID,
                "negotiate structured replies (NBD_OPT_STRUCTURED_REPLY) first",
            );
            return;
        }
        let mut c = Cursor(data);
        let parsed = (|| {
            let name = c.string()?.to_string();
            let n = c.u32()?;
            let mut queries = Vec::new();
            for _ in 0..n {
                queries.push(c.string()?.to_string());
            }
            c.done().then_some((name, queries))
        })();
        let Some((name, queries)) = parsed else {
            put_error(
                out,
                opt,
                REP_ERR_INVALID,
                "malformed meta context option data",
            );
            return;
        };
        if let Err(e) = self.open(ctx, &name).await {
            put_error(out, opt, REP_ERR_UNKNOWN, &format!("export {name:?}: {e}"));
            return;
        }
        // LIST with no queries lists everything; `base:` is a wildcard for the namespace there.
        // SET selects only exact names. Queries in other namespaces are ignored.
        let matched = if set {
            queries.iter().any(|q| q == BASE_ALLOCATION)
        } else {
            queries.is_empty() || queries.iter().any(|q| q == BASE_ALLOCATION || q == "base:")
        };
        if matched {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            let mut p = Vec::with_capacity(4 + BASE_ALLOCATION.len());
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(BASE_ALLOCATION.as_bytes());
            put_opt_reply(out, opt, REP_META_CONTEXT, &p);
            if set {
                self.meta_export = Some(name);
            }
        }
        put_opt_reply(out, opt, REP_ACK, &[]);
    }
}
