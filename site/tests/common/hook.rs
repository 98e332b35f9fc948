//! A webhook receiver for tests: an axum server on a free loopback port, in its own thread and
//! runtime, that answers 500 to the first `fail_first` requests (to prove retries) and records
//! every request it accepts: its headers of interest and its body.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Whether it was answered 200 (else 500).
    pub accepted: bool,
    pub signature: Option<String>,
    /// `x-rewind-delivery`: the same for every attempt of one delivery.
    pub delivery: String,
    pub body: Bytes,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    fail_first: usize,
    hits: Vec<Hit>,
}

pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn hook(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut g = inner.lock().unwrap();
    let accepted = g.hits.len() >= g.fail_first;
    g.hits.push(Hit {
        accepted,
        signature: headers
            .get("x-rewind-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        delivery: headers
            .get("x-rewind-delivery")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body,
        at: std::time::Instant::now(),
    });
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            fail_first,
            hits: Vec::new(),
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(inner.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Receiver {
            url,
            inner,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.lock().unwrap().hits.clone()
    }

    /// Accepted notices, parsed.
    pub fn notices(&self) -> Vec<serde_json::Value> {
        self.hits()
            .iter()
            .filter(|h| h.accepted)
            .filter_map(|h| serde_json::from_slice(&h.body).ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
