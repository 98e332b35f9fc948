//! The site's HTTPS API called directly (bodies the CLIs do not send), with a bearer token.

use serde_json::Value;

use super::site::Site;

/// `METHOD path` with `body` as `token`: (status, JSON reply).
pub fn call(
    site: &Site,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let tls = rewind_site::tls::client_config(&site.state.join("ca/ca.crt")).expect("CA");
    let h = rewind_site::https::Https::new(
        rewind_site::endpoint::Endpoint::parse(&site.url).expect("site url"),
        tls,
        Some(format!("Bearer {token}")),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(h.request(method, path, body.map(|b| b.to_string().into_bytes())))
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}
