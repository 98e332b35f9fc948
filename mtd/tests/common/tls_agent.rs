//! A blocking TLS agent client for the TLS and certificate tests: connect with a client
//! configuration, send frames, read frames, say HELLO.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::message::*;
use rewind_formats::Seq;

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connect to `addr` as server name `localhost` and finish the handshake now, so that a refused
/// certificate shows here.
pub fn connect(addr: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

pub fn send(s: &mut Tls, m: &Message) -> std::io::Result<()> {
    s.write_all(&m.to_frame())?;
    s.flush()
}

/// The next frame, or `None` once the connection is closed.
pub fn recv(s: &mut Tls) -> Option<Message> {
    rewind_benches::harness::recv_message(s)
}

/// HELLO for one group with one 1 MiB disk `sda`, at generation 1.
pub fn hello(agent: &str, group: &str) -> Message {
    Message::Hello(Hello {
        agent: agent.into(),
        software: None,
        dedup_window: 0,
        framed_records: false,
        groups: vec![HelloGroup {
            group: group.into(),
            generation: 1,
            last_acked: Seq(0),
            epoch: 0,
            disks: vec![DiskInfo {
                disk: "sda".into(),
                size_bytes: 1 << 20,
            }],
        }],
    })
}
