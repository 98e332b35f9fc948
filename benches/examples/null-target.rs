//! A target that acknowledges every batch without decompressing or storing it: the ceiling of
//! `rewind-loadgen` itself (socket + batch building), to show it is not the bottleneck.
//!
//! `cargo run --release -p rewind-benches --example null-target -- 127.0.0.1:0 [READY_FILE]`
//! prints (and writes to READY_FILE) the bound address, then serves until killed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use rewind_formats::frame::blocking::{read_header, read_message};
use rewind_formats::{Ack, FrameKind, Message, ResumeStatus, Seq, Welcome, WelcomeGroup};

fn serve(mut conn: TcpStream) -> std::io::Result<()> {
    let Ok(Some(Message::Hello(hello))) = read_message(&mut conn) else {
        return Ok(());
    };
    let welcome = Welcome {
        dedup_window: 0,
        // Batches are not decoded here: framed ones cost it nothing either.
        framed_records: hello.framed_records,
        groups: hello
            .groups
            .iter()
            .map(|g| WelcomeGroup {
                group: g.group.clone(),
                generation: g.generation,
                status: ResumeStatus::Resume,
                durable: Seq(0),
            })
            .collect(),
    };
    conn.write_all(&Message::Welcome(welcome).to_frame())?;
    let group = hello.groups[0].group.clone();
    let mut payload = Vec::new();
    loop {
        let Ok(Some(h)) = read_header(&mut conn) else {
            return Ok(());
        };
        // The payload's checksum is not verified: this target measures the loadgen, not crc32c.
        payload.resize(h.payload_len as usize, 0);
        conn.read_exact(&mut payload)?;
        if h.kind != FrameKind::Batch {
            continue;
        }
        // Batch payload: name (u8 len + bytes), generation u64, first_seq u64, record_count u32.
        let n = usize::from(payload[0]);
        let at = 1 + n + 8;
        let first = u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(payload[at + 8..at + 12].try_into().expect("4 bytes"));
        let ack = Ack {
            group: group.clone(),
            durable: Seq(first + u64::from(count) - 1),
        };
        conn.write_all(&Message::Ack(ack).to_frame())?;
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&listen)?;
    let addr = listener.local_addr()?.to_string();
    println!("{addr}");
    if let Some(ready) = args.next() {
        let tmp = format!("{ready}.tmp");
        std::fs::write(&tmp, format!("{addr}\n"))?;
        std::fs::rename(&tmp, &ready)?;
    }
    for conn in listener.incoming() {
        let conn = conn?;
        std::thread::spawn(move || serve(conn));
    }
    Ok(())
}
