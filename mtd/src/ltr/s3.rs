//! The S3 requests Object Lock needs and `object_store` cannot make: a put that locks the object
//! it writes, PutObjectRetention (a reused chunk's lock extended), a delete of one version (the
//! data itself, not a delete marker) and the bucket's Object Lock configuration. Signed with the
//! AWS SDK's own SigV4 signer (`aws-sigv4`) and sent with reqwest, with the store's settings:
//! bucket, region, endpoint and credentials as `object_store` resolved them (the URL's query and
//! the `AWS_*` environment, see `Objects::open`).
//!
//! Why locked puts are not `object_store` puts with default headers: `object_store` adds its
//! default headers after signing, and S3 refuses a request with unsigned `x-amz-*` headers
//! ("There were headers present in the request which were not signed").

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use reqwest::Method;

use super::lock::Retain;

/// Attempts of a request that failed on the way or with a 5xx (S3's "slow down" among them).
const ATTEMPTS: u32 = 4;

pub struct SignedS3 {
    http: reqwest::Client,
    /// A key's URL is this, `/`, the key: `ENDPOINT/BUCKET` (path style) or the virtual host.
    base: String,
    pub bucket: String,
    region: String,
    creds: Credentials,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Failure {
    #[error("HTTP {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Request(String),
}

impl S3Failure {
    /// S3's answer to a delete or a shortened retention of a locked object version.
    pub fn is_locked(&self) -> bool {
        matches!(self, S3Failure::Refused { status: 403, code, .. } if code == "AccessDenied")
    }
}

impl SignedS3 {
    /// From the store's builder (with the URL's settings) and its bucket. Object Lock needs
    /// static credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
    /// `AWS_SESSION_TOKEN`, or the URL's `access_key_id` / `secret_access_key`).
    pub fn from_builder(b: &AmazonS3Builder, bucket: &str) -> Result<SignedS3, String> {
        let get = |k: AmazonS3ConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
        if bucket.is_empty() {
            return Err("the URL names no bucket".into());
        }
        let bucket = bucket.to_string();
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let (Some(key), Some(secret)) = (
            get(AmazonS3ConfigKey::AccessKeyId),
            get(AmazonS3ConfigKey::SecretAccessKey),
        ) else {
            return Err(
                "Object Lock needs static credentials: AWS_ACCESS_KEY_ID and \
                        AWS_SECRET_ACCESS_KEY (instance or web identity credentials are not \
                        supported for it)"
                    .into(),
            );
        };
        let token = get(AmazonS3ConfigKey::Token);
        let virtual_hosted =
            get(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let base = match get(AmazonS3ConfigKey::Endpoint) {
            // object_store's convention: a virtual-hosted endpoint already names the bucket.
            Some(e) if virtual_hosted => e.trim_end_matches('/').to_string(),
            Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        Ok(SignedS3 {
            http,
            base,
            bucket,
            region,
            creds: Credentials::new(key, secret, token, None, "rewind-ltr"),
        })
    }

    /// Whether the bucket has Object Lock enabled (GetObjectLockConfiguration).
    pub async fn lock_enabled(&self) -> Result<bool, S3Failure> {
        match self
            .send(Method::GET, "", "object-lock", vec![], vec![])
            .await
        {
            Ok((_, _, body)) => Ok(body.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>")),
            Err(S3Failure::Refused { code, .. })
                if code == "ObjectLockConfigurationNotFoundError" =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Store `bytes` under `key`, the new version locked as `retain` says.
    pub async fn put_locked(
        &self,
        key: &str,
        bytes: Vec<u8>,
        retain: Retain,
    ) -> Result<(), S3Failure> {
        let headers = vec![
            ("content-md5", content_md5(&bytes)),
            ("x-amz-object-lock-mode", retain.mode.s3_name().to_string()),
            ("x-amz-object-lock-retain-until-date", retain.date()),
        ];
        self.send(Method::PUT, key, "", headers, bytes).await?;
        Ok(())
    }

    /// Set the lock of `key`'s current version (PutObjectRetention): S3 lets a lock be
    /// lengthened, never shortened (unless a governance lock is bypassed, which this never does).
    pub async fn put_retention(&self, key: &str, retain: Retain) -> Result<(), S3Failure> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{}</RetainUntilDate></Retention>",
            retain.mode.s3_name(),
            retain.date()
        )
        .into_bytes();
        let headers = vec![
            ("content-md5", content_md5(&body)),
            ("content-type", "application/xml".to_string()),
        ];
        self.send(Method::PUT, key, "retention", headers, body)
            .await?;
        Ok(())
    }

    /// Lengthen the lock of `key`'s current version to `retain`. S3 refuses to shorten one: if
    /// it was already locked longer (its exact date was not known here, only a bound), that
    /// is no failure. Until when the version is locked.
    pub async fn extend_retention(&self, key: &str, retain: Retain) -> Result<u64, S3Failure> {
        match self.put_retention(key, retain).await {
            Ok(()) => Ok(retain.until_ms),
            Err(e) if e.is_locked() => match self.lock_until(key).await? {
                Some(t) if t >= retain.until_ms => Ok(t),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The retain-until date (ms) of `key`'s current version, if it is locked.
    pub async fn lock_until(&self, key: &str) -> Result<Option<u64>, S3Failure> {
        let (_, headers, _) = self.send(Method::HEAD, key, "", vec![], vec![]).await?;
        let Some(date) = headers.get("x-amz-object-lock-retain-until-date") else {
            return Ok(None);
        };
        let date = date.to_str().unwrap_or_default();
        let t = humantime::parse_rfc3339_weak(date)
            .map_err(|e| S3Failure::Request(format!("retain-until date {date:?}: {e}")))?;
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Some(ms))
    }

    /// Delete one version of `key` (the data, where a plain delete would only hide it behind a
    /// delete marker). A version still locked is refused ([`S3Failure::is_locked`]).
    pub async fn delete_version(&self, key: &str, version: &str) -> Result<(), S3Failure> {
        let query = format!("versionId={}", encode(version, false));
        match self.send(Method::DELETE, key, &query, vec![], vec![]).await {
            Ok(_) => Ok(()),
            Err(S3Failure::Refused { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sign and send one request, retrying transport errors and 5xx answers; the answer's
    /// status, headers and body, or why it failed.
    async fn send(
        &self,
        method: Method,
        key: &str,
        query: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), S3Failure> {
        let mut url = self.base.clone();
        if !key.is_empty() {
            url.push('/');
            url.push_str(&encode(key, true));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let req = self.signed(method.clone(), &url, &headers, &body)?;
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(S3Failure::Request(e.to_string()));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp
                .text()
                .await
                .map_err(|e| S3Failure::Request(e.to_string()))?;
            if (200..300).contains(&status) {
                return Ok((status, headers, text));
            }
            let refused = S3Failure::Refused {
                status,
                code: tag(&text, "Code").unwrap_or_default(),
                message: tag(&text, "Message").unwrap_or_default(),
            };
            if status < 500 {
                return Err(refused);
            }
            last = Some(refused);
        }
        Err(last.expect("at least one attempt"))
    }

    /// The request, signed now (a retry is signed again: a signature is valid for minutes).
    fn signed(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<reqwest::RequestBuilder, S3Failure> {
        let fail = |e: &dyn std::fmt::Display| S3Failure::Request(format!("signing: {e}"));
        let mut settings = SigningSettings::default();
        // S3's flavour of SigV4: the payload's hash in x-amz-content-sha256, the path as sent.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = self.creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| fail(&e))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| fail(&e))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| fail(&e))?.into_parts();
        let mut rb = self.http.request(method, url);
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        for (k, v) in instructions.headers() {
            rb = rb.header(k, v);
        }
        Ok(rb.body(body.to_vec()))
    }
}

fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

/// Percent-encode as SigV4 wants (RFC 3986 unreserved characters kept; `/` too in a path).
fn encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if path => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of the first `<name>` element of an S3 XML answer.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_keys_and_reads_error_codes() {
        assert_eq!(
            encode("points/g 1/d0/1.json", true),
            "points/g%201/d0/1.json"
        );
        assert_eq!(encode("a/b+c", false), "a%2Fb%2Bc");
        let xml = "<Error><Code>AccessDenied</Code><Message>locked</Message></Error>";
        assert_eq!(tag(xml, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(tag(xml, "Resource"), None);
    }

    /// S3 refuses a request with an `x-amz-*` (or Content-MD5 / Content-Type) header it was not
    /// signed with ("There were headers present in the request which were not signed"); no
    /// local server checks that (tests/ltr.rs `ltr_s3_sigv4_verified` checks the signatures
    /// themselves), so the signed header list is checked here against what is sent.
    #[test]
    fn signs_every_header_s3_requires_signed() {
        let b = AmazonS3Builder::new()
            .with_endpoint("http://127.0.0.1:9")
            .with_region("eu-west-3")
            .with_access_key_id("AKIDEXAMPLE")
            .with_secret_access_key("secret")
            .with_token("session-token");
        let s3 = SignedS3::from_builder(&b, "bucket").unwrap();
        let body = b"<Retention/>".to_vec();
        let headers = vec![
            ("content-md5", content_md5(&body)),
            ("content-type", "application/xml".to_string()),
            ("x-amz-object-lock-mode", "COMPLIANCE".to_string()),
            (
                "x-amz-object-lock-retain-until-date",
                "2030-01-01T00:00:00Z".to_string(),
            ),
        ];
        let url = "http://127.0.0.1:9/bucket/points/g%201/x?retention";
        let req = s3
            .signed(Method::PUT, url, &headers, &body)
            .unwrap()
            .build()
            .unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-3/s3/aws4_request"), "{auth}");
        let signed: Vec<&str> = auth
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap()
            .split(';')
            .collect();
        assert!(signed.contains(&"host"), "{auth}");
        for name in req.headers().keys().map(|k| k.as_str()) {
            let must =
                name.starts_with("x-amz-") || name == "content-md5" || name == "content-type";
            assert!(
                !must || signed.contains(&name),
                "{name} is sent but not signed: {auth}"
            );
        }
        for name in [
            "x-amz-date",
            "x-amz-content-sha256",
            "x-amz-security-token",
            "x-amz-object-lock-mode",
            "x-amz-object-lock-retain-until-date",
        ] {
            assert!(req.headers().contains_key(name), "{name} missing");
        }
        // The payload hash S3 checks the body against (`sha256sum` of the body).
        assert_eq!(
            req.headers()["x-amz-content-sha256"],
            "993160d405ef2d6249185c6034fb464230cea98d22f73e72e1575dbf969d3e9f"
        );
    }
}
