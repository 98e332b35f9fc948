//! The session's second thread: reads what the target sends (ACKs, HASHES answers, CONTROL,
//! ERROR) while the sender writes; it never blocks the sender.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rewind_formats::Message;

use super::Sender;
use crate::drain;
use crate::error::{Error, Result};
use crate::stream::seq::SeqBase;
use crate::stream::wire::{read_message, Conn};

impl Sender {
    /// The ACK reader: applies ACKs to the queue; returns why the session ended, if not cleanly.
    pub(super) fn spawn_reader(
        &self,
        conn: &Conn,
        base: SeqBase,
        dead: Arc<AtomicBool>,
    ) -> Result<JoinHandle<Option<Error>>> {
        let addr = self.targets.current().to_string();
        let mut rconn = conn.try_clone().map_err(|e| Error::Connection {
            addr: addr.clone(),
            why: format!("cloning the socket: {e}"),
        })?;
        let queue = Arc::clone(&self.queue);
        let hashes = Arc::clone(&self.hashes);
        let control = self.control.clone();
        let group = self.settings.group.to_string();
        std::thread::Builder::new()
            .name("ack-reader".into())
            .spawn(move || {
                let why = loop {
                    match read_message(&mut rconn, &addr) {
                        Ok(Some(Message::Ack(a))) if a.group == group => {
                            queue.peer_acked();
                            let ok = queue.ack(base.local(a.durable));
                            if !ok {
                                break Some(Error::Protocol(format!(
                                    "ACK for seq {} outside what was sent (base {base})",
                                    a.durable.0
                                )));
                            }
                        }
                        Ok(Some(Message::Hashes(h))) if h.group == group => {
                            if !hashes.answer(h) {
                                tracing::debug!("a HASHES answer nobody asked for: ignored");
                            }
                        }
                        Ok(Some(Message::Error(e))) => {
                            break Some(Error::Remote {
                                code: e.code,
                                message: e.message,
                            })
                        }
                        Ok(Some(Message::Control(c))) => {
                            drain::control(c, &group, &control, &queue)
                        }
                        Ok(Some(other)) => {
                            tracing::debug!(kind = other.kind().name(), "unexpected frame ignored");
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                };
                dead.store(true, Ordering::SeqCst);
                queue.poke();
                why
            })
            .map_err(Error::path("starting the ack reader thread", "-"))
    }
}
