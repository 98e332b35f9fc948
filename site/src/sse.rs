//! Reading a server-sent event stream as it arrives: bytes in, the `data:` payloads of every
//! complete event out. Both the site (following its targets) and the CLI (`events --follow`)
//! read one.

use anyhow::{bail, Result};

/// The most bytes of one event kept while waiting for its end.
const MAX_EVENT: usize = 1 << 20;

/// Bytes received but not yet a complete event (events end with a blank line).
#[derive(Default)]
pub struct SseReader {
    buf: String,
}

impl SseReader {
    /// Takes a chunk of the stream; the `data:` payloads (trimmed) of the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let event: String = self.buf.drain(..end + 2).collect();
            out.extend(
                event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.trim().to_string()),
            );
        }
        if self.buf.len() > MAX_EVENT {
            bail!("event stream: an event over 1 MiB");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut r = SseReader::default();
        assert!(r.push(b"event: x\ndata: {\"a\"").unwrap().is_empty());
        assert_eq!(
            r.push(b":1}\n\ndata: 2\n\ndata: 3").unwrap(),
            vec!["{\"a\":1}".to_string(), "2".to_string()]
        );
        assert_eq!(r.push(b"\n\n").unwrap(), vec!["3".to_string()]);
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut r = SseReader::default();
        assert!(r.push(&vec![b'a'; MAX_EVENT + 1]).is_err());
    }
}
