//! Webhooks: the notice as a JSON POST. With a shared secret the body is signed:
//! `X-Rewind-Signature: sha256=HEX` is HMAC-SHA256 of the exact body bytes under the secret, so
//! a receiver can tell the site's messages from anyone else's.

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::channels::Due;

/// The header carrying the signature.
pub const SIGNATURE: &str = "x-rewind-signature";

/// The client every delivery shares (rustls, the webpki roots).
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(super::ATTEMPT_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(5))
        // A receiver that redirects is misconfigured: say so rather than follow it.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rewind-site/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the webhook HTTP client")
}

/// `sha256=HEX` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn send(http: &reqwest::Client, d: &Due) -> Result<()> {
    let body = d.payload.clone().into_bytes();
    let mut req = http
        .post(&d.channel.url)
        .header("content-type", "application/json")
        .header("x-rewind-delivery", d.delivery.id.to_string())
        .header("x-rewind-transition", &d.delivery.transition);
    if !d.secret.is_empty() {
        req = req.header(SIGNATURE, signature(&d.secret, &body));
    }
    let resp = req
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {}", d.channel.url))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        bail!(
            "POST {}: HTTP {} {}",
            d.channel.url,
            status.as_u16(),
            text.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
