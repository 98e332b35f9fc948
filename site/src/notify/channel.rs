//! A channel request checked at the edge (API): name, URL, secret, addresses.

use crate::error::ApiError;

/// `POST /v1/channels`: a webhook (`url`, optional `secret`) or an email channel (`url`
/// smtp://..., `mail_from`, `mail_to`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub mail_from: Option<String>,
    #[serde(default)]
    pub mail_to: Option<String>,
    /// The SMTP login of an email channel (its password in `secret`).
    #[serde(default)]
    pub smtp_user: Option<String>,
}

/// A checked channel, as it is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub kind: String,
    pub url: String,
    pub secret: String,
    pub mail_from: String,
    pub mail_to: String,
    pub smtp_user: String,
}

/// A secret shorter than this is refused (it would be guessable).
pub const MIN_SECRET: usize = 16;
const MAX_URL: usize = 2048;

fn bad(m: String) -> ApiError {
    ApiError::bad_request(m)
}

/// The longest SMTP login and password taken.
const MAX_LOGIN: usize = 256;

/// The checked request.
pub fn check(r: &ChannelRequest) -> Result<Checked, ApiError> {
    crate::names::check("channel name", &r.name)?;
    if r.url.len() > MAX_URL {
        return Err(bad(format!("channel {}: URL over {MAX_URL} bytes", r.name)));
    }
    match r.kind.as_str() {
        "webhook" => {
            let u = reqwest::Url::parse(&r.url)
                .map_err(|e| bad(format!("webhook URL {:?}: {e}", r.url)))?;
            if !matches!(u.scheme(), "https" | "http") {
                return Err(bad(format!(
                    "webhook URL {:?}: scheme {:?}; give https:// (or http://)",
                    r.url,
                    u.scheme()
                )));
            }
            if u.host_str().is_none_or(str::is_empty) {
                return Err(bad(format!("webhook URL {:?}: no host", r.url)));
            }
            if !u.username().is_empty() || u.password().is_some() {
                return Err(bad(format!(
                    "webhook URL {:?}: no credentials in the URL; use --secret-file to sign",
                    r.url
                )));
            }
            let secret = r.secret.clone().unwrap_or_default();
            if !secret.is_empty() && secret.len() < MIN_SECRET {
                return Err(bad(format!(
                    "webhook {}: the secret has {} characters, give at least {MIN_SECRET}",
                    r.name,
                    secret.len()
                )));
            }
            if r.mail_from.is_some() || r.mail_to.is_some() || r.smtp_user.is_some() {
                return Err(bad(
                    "a webhook takes no mail_from, mail_to or smtp_user".into()
                ));
            }
            Ok(Checked {
                kind: "webhook".into(),
                url: u.to_string(),
                secret,
                ..Checked::default()
            })
        }
        "email" => {
            let smtp = super::email::parse(&r.url).map_err(|e| bad(format!("{e:#}")))?;
            let from = r.mail_from.clone().unwrap_or_default();
            from.parse::<lettre::message::Mailbox>()
                .map_err(|e| bad(format!("sender {from:?}: {e}")))?;
            let to = r.mail_to.clone().unwrap_or_default();
            super::email::recipients(&to).map_err(|e| bad(format!("{e:#}")))?;
            let user = r.smtp_user.clone().unwrap_or_default();
            let password = r.secret.clone().unwrap_or_default();
            if user.is_empty() != password.is_empty() {
                return Err(bad(format!(
                    "email channel {}: give both an SMTP user and its password, or neither",
                    r.name
                )));
            }
            if user.len() > MAX_LOGIN
                || password.len() > MAX_LOGIN
                || user.contains(char::is_control)
            {
                return Err(bad(format!(
                    "email channel {}: SMTP user or password over {MAX_LOGIN} bytes, or with \
                     control characters",
                    r.name
                )));
            }
            // A password never crosses a network in clear: only over TLS, or to a relay on
            // this host.
            if !user.is_empty() && !smtp.encrypted() && !smtp.loopback() {
                return Err(bad(format!(
                    "email channel {}: an SMTP login is sent only over TLS \
                     (smtp+starttls:// or smtps://) or to a relay on this host, not to {}",
                    r.name, r.url
                )));
            }
            Ok(Checked {
                kind: "email".into(),
                url: r.url.clone(),
                secret: password,
                mail_from: from,
                mail_to: to,
                smtp_user: user,
            })
        }
        k => Err(bad(format!("channel kind {k:?}: give webhook or email"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str, secret: Option<&str>) -> ChannelRequest {
        ChannelRequest {
            name: "ops".into(),
            kind: "webhook".into(),
            url: url.into(),
            secret: secret.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn urls_secrets_and_addresses_are_checked() {
        assert!(check(&hook("https://hooks.example/x", None)).is_ok());
        assert!(check(&hook("https://hooks.example/x", Some("0123456789abcdef"))).is_ok());
        for (r, says) in [
            (hook("ftp://x/", None), "scheme"),
            (hook("https://u:p@x/", None), "credentials"),
            (hook("not a url", None), "webhook URL"),
            (hook("https://x/", Some("short")), "at least 16"),
        ] {
            let e = check(&r).unwrap_err();
            assert!(e.message.contains(says), "{}", e.message);
        }
        let mut m = ChannelRequest {
            name: "mail".into(),
            kind: "email".into(),
            url: "smtp://127.0.0.1:2525".into(),
            mail_from: Some("rewind@site.example".into()),
            mail_to: Some("ops@example.com".into()),
            ..Default::default()
        };
        assert!(check(&m).is_ok());
        m.mail_to = Some("nobody".into());
        assert!(check(&m).unwrap_err().message.contains("recipient"));
    }

    #[test]
    fn an_smtp_login_travels_only_encrypted_or_on_this_host() {
        let mail = |url: &str, user: Option<&str>, password: Option<&str>| ChannelRequest {
            name: "mail".into(),
            kind: "email".into(),
            url: url.into(),
            mail_from: Some("rewind@site.example".into()),
            mail_to: Some("ops@example.com".into()),
            smtp_user: user.map(str::to_string),
            secret: password.map(str::to_string),
        };
        let pw = Some("s3cret-password");
        let c = check(&mail("smtp://127.0.0.1:2525", Some("rewind"), pw)).unwrap();
        assert_eq!(
            (c.smtp_user.as_str(), c.secret.as_str()),
            ("rewind", "s3cret-password")
        );
        assert!(check(&mail("smtp://localhost", Some("rewind"), pw)).is_ok());
        assert!(check(&mail("smtp+starttls://mail.example", Some("rewind"), pw)).is_ok());
        assert!(check(&mail("smtps://mail.example", Some("rewind"), pw)).is_ok());
        for (r, says) in [
            (
                mail("smtp://mail.example", Some("rewind"), pw),
                "only over TLS",
            ),
            (mail("smtps://mail.example", Some("rewind"), None), "both"),
            (mail("smtps://mail.example", None, pw), "both"),
            (mail("smtps://mail.example", Some("a\nb"), pw), "control"),
        ] {
            let e = check(&r).unwrap_err();
            assert!(e.message.contains(says), "{}", e.message);
        }
    }
}
