//! A minimal in-memory target that speaks the daemon's side of the wire protocol, so the load
//! generator can be tested without `rewind-mtd`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rewind_benches::read_message;
use rewind_formats::{
    Ack, ErrorCode, ErrorMsg, Message, RecordKind, ResumeStatus, Seq, TagInfo, Welcome,
    WelcomeGroup,
};

#[derive(Default)]
pub struct Group {
    pub generation: u64,
    pub durable: u64,
    pub disks: Vec<(String, Vec<u8>)>,
    pub tags: Vec<TagInfo>,
}

#[derive(Default)]
pub struct TargetState {
    pub groups: HashMap<String, Group>,
    /// Connections accepted.
    pub sessions: u64,
    /// Crash (drop the connection, losing the batch) when this many batches have arrived in
    /// total, once.
    pub crash_at_batch: Option<u64>,
    pub batches: u64,
    /// Agent names seen in HELLOs.
    pub agents: Vec<String>,
}

pub struct FakeTarget {
    pub addr: String,
    pub state: Arc<Mutex<TargetState>>,
    _accept: JoinHandle<()>,
}

impl FakeTarget {
    pub fn start() -> FakeTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("tcp:{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(TargetState::default()));
        let st = Arc::clone(&state);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                st.lock().unwrap().sessions += 1;
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        FakeTarget {
            addr,
            state,
            _accept: accept,
        }
    }

    pub fn disk(&self, group: &str, disk: usize) -> Vec<u8> {
        self.state.lock().unwrap().groups[group].disks[disk]
            .1
            .clone()
    }

    pub fn durable(&self, group: &str) -> u64 {
        self.state.lock().unwrap().groups[group].durable
    }

    pub fn tags(&self, group: &str) -> Vec<TagInfo> {
        self.state.lock().unwrap().groups[group].tags.clone()
    }
}

fn send(conn: &mut TcpStream, msg: Message) {
    let _ = conn.write_all(&msg.to_frame());
}

fn refuse(conn: &mut TcpStream, code: ErrorCode, message: String) {
    send(conn, Message::Error(ErrorMsg { code, message }));
    let _ = conn.shutdown(Shutdown::Both);
}

fn serve(mut conn: TcpStream, st: &Mutex<TargetState>) {
    let hello = match read_message(&mut conn) {
        Ok(Some(Message::Hello(h))) => h,
        _ => return refuse(&mut conn, ErrorCode::Protocol, "expected HELLO".into()),
    };
    let mut welcome = Welcome {
        groups: Vec::new(),
        dedup_window: 0,
        framed_records: false,
    };
    {
        let mut s = st.lock().unwrap();
        s.agents.push(hello.agent.clone());
        for hg in &hello.groups {
            let g = s.groups.entry(hg.group.clone()).or_insert_with(|| Group {
                generation: hg.generation,
                durable: 0,
                disks: hg
                    .disks
                    .iter()
                    .map(|d| (d.disk.clone(), vec![0u8; d.size_bytes as usize]))
                    .collect(),
                tags: Vec::new(),
            });
            if hg.generation < g.generation {
                let m = format!("group {} is at generation {}", hg.group, g.generation);
                drop(s);
                return refuse(&mut conn, ErrorCode::StaleGeneration, m);
            }
            g.generation = hg.generation;
            welcome.groups.push(WelcomeGroup {
                group: hg.group.clone(),
                generation: hg.generation,
                status: ResumeStatus::Resume,
                durable: Seq(g.durable),
            });
        }
    }
    send(&mut conn, Message::Welcome(welcome));
    loop {
        let msg = match read_message(&mut conn) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return refuse(&mut conn, ErrorCode::Protocol, e.to_string()),
        };
        match msg {
            Message::Batch(b) => {
                let mut s = st.lock().unwrap();
                s.batches += 1;
                if s.crash_at_batch == Some(s.batches) {
                    s.crash_at_batch = None;
                    let _ = conn.shutdown(Shutdown::Both);
                    return;
                }
                let Some(g) = s.groups.get_mut(&b.group) else {
                    drop(s);
                    return refuse(&mut conn, ErrorCode::UnknownGroup, b.group.clone());
                };
                if b.first_seq.0 != g.durable + 1 {
                    let m = format!("batch starts at {} after {}", b.first_seq, g.durable);
                    drop(s);
                    return refuse(&mut conn, ErrorCode::SeqGap, m);
                }
                let recs = match b.decode_records() {
                    Ok(r) => r,
                    Err(e) => {
                        drop(s);
                        return refuse(&mut conn, ErrorCode::Protocol, e.to_string());
                    }
                };
                for r in recs.iter() {
                    let disk = &mut g.disks[usize::from(r.disk)].1;
                    let range = r.offset as usize..(r.offset + u64::from(r.len)) as usize;
                    match r.kind {
                        RecordKind::Data => disk[range].copy_from_slice(r.data),
                        _ => disk[range].fill(0),
                    }
                }
                g.durable = b.last_seq().0;
                let ack = Ack {
                    group: b.group.clone(),
                    durable: Seq(g.durable),
                };
                drop(s);
                send(&mut conn, Message::Ack(ack));
            }
            Message::Tag(t) => {
                let mut s = st.lock().unwrap();
                if let Some(g) = s.groups.get_mut(&t.group) {
                    g.tags.push(t.tag);
                }
            }
            other => {
                return refuse(
                    &mut conn,
                    ErrorCode::Protocol,
                    format!("unexpected {:?}", other.kind()),
                )
            }
        }
    }
}
