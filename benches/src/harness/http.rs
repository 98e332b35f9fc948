//! Plain-HTTP GETs to loopback servers (the daemons' `/metrics`, Prometheus's API), blocking.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// `GET http://ADDR PATH_AND_QUERY`: the status and the body as text. Panics when the server
/// cannot be reached within 10 s.
pub fn get(addr: &str, path_and_query: &str) -> (u16, String) {
    try_get(addr, path_and_query)
        .unwrap_or_else(|e| panic!("GET http://{addr}{path_and_query}: {e}"))
}

/// Like [`get`], returning what went wrong instead of panicking.
pub fn try_get(addr: &str, path_and_query: &str) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), fetch(addr, path_and_query))
            .await
            .map_err(|_| "timed out".to_string())?
    })
}

async fn fetch(addr: &str, path_and_query: &str) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path_and_query)
        .header("host", addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A free loopback TCP port (bound, read, released: a server started right after takes it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
