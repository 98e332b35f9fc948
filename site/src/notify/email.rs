//! Email through the configured SMTP server (lettre): one message per notice, to every
//! recipient of the channel. `smtp://` talks plain SMTP (a relay on the same host or network),
//! `smtp+starttls://` upgrades with STARTTLS, `smtps://` is TLS from the first byte.

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};

use crate::db::alerts::Notice;
use crate::db::channels::Due;

/// How a channel's `url` reaches its server.
#[derive(Debug, PartialEq, Eq)]
pub struct Smtp {
    pub tls: Tls,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Tls {
    None,
    StartTls,
    Implicit,
}

impl Smtp {
    /// Whether the connection is encrypted (STARTTLS or TLS from the first byte).
    pub fn encrypted(&self) -> bool {
        self.tls != Tls::None
    }

    /// Whether the server is on this host (`localhost` or a loopback address).
    pub fn loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Parse `smtp://HOST[:PORT]`, `smtp+starttls://...`, `smtps://...` (no user, path or query).
pub fn parse(url: &str) -> Result<Smtp> {
    let u = reqwest::Url::parse(url).with_context(|| format!("SMTP URL {url:?}"))?;
    let (tls, default_port) = match u.scheme() {
        "smtp" => (Tls::None, 25),
        "smtp+starttls" => (Tls::StartTls, 587),
        "smtps" => (Tls::Implicit, 465),
        s => anyhow::bail!(
            "SMTP URL {url:?}: scheme {s:?}; give smtp://, smtp+starttls:// or smtps://"
        ),
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .with_context(|| format!("SMTP URL {url:?}: no host"))?;
    if !u.username().is_empty() || u.password().is_some() {
        anyhow::bail!("SMTP URL {url:?}: credentials in the URL are not supported");
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() {
        anyhow::bail!("SMTP URL {url:?}: give only scheme, host and port");
    }
    Ok(Smtp {
        tls,
        host: host.trim_matches(['[', ']']).to_string(),
        port: u.port().unwrap_or(default_port),
    })
}

/// The recipients of a channel (`a@x, b@y`), each a valid mailbox.
pub fn recipients(to: &str) -> Result<Vec<Mailbox>> {
    let list: Vec<Mailbox> = to
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().with_context(|| format!("recipient {s:?}")))
        .collect::<Result<_>>()?;
    if list.is_empty() {
        anyhow::bail!("no recipient: give --to ADDRESS");
    }
    Ok(list)
}

fn message(d: &Due) -> Result<Message> {
    let n: Notice = serde_json::from_str(&d.payload).context("stored notice")?;
    let a = &n.alert;
    let subject = format!(
        "[rewind] {} {} {} {}",
        n.transition.to_uppercase(),
        a.severity,
        a.kind,
        a.subject
    );
    let body = format!(
        "{}\n\nalert #{} {} ({}), {} on {}\nfired at {} ms since the epoch{}\n\n{}\n",
        a.summary,
        a.id,
        a.kind,
        a.severity,
        n.transition,
        a.subject,
        a.fired_ms,
        if a.resolved_ms > 0 {
            format!(", resolved at {}", a.resolved_ms)
        } else {
            String::new()
        },
        serde_json::to_string_pretty(&n).unwrap_or_default()
    );
    let from: Mailbox = d
        .channel
        .mail_from
        .parse()
        .with_context(|| format!("sender {:?}", d.channel.mail_from))?;
    let mut m = Message::builder().from(from).subject(subject);
    for to in recipients(&d.channel.mail_to)? {
        m = m.to(to);
    }
    m.body(body).context("building the message")
}

pub async fn send(d: &Due) -> Result<()> {
    let smtp = parse(&d.channel.url)?;
    let builder = match smtp.tls {
        Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
        Tls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
    };
    let builder = if d.channel.smtp_user.is_empty() {
        builder
    } else {
        builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            d.channel.smtp_user.clone(),
            d.secret.clone(),
        ))
    };
    let mailer = builder
        .port(smtp.port)
        .timeout(Some(super::ATTEMPT_TIMEOUT))
        .build();
    // lettre's timeout bounds each read and write, not a server that stops answering mid-way
    // (one that refuses a login and then says nothing, say): the whole attempt is bounded too.
    match tokio::time::timeout(super::ATTEMPT_TIMEOUT, mailer.send(message(d)?)).await {
        Ok(r) => r.with_context(|| format!("sending mail through {}", d.channel.url))?,
        Err(_) => anyhow::bail!(
            "sending mail through {}: no answer within {} s",
            d.channel.url,
            super::ATTEMPT_TIMEOUT.as_secs()
        ),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_checked() {
        let s = parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (s.tls, s.host.as_str(), s.port),
            (Tls::None, "127.0.0.1", 2525)
        );
        assert_eq!(parse("smtps://mail.example").unwrap().port, 465);
        assert_eq!(
            parse("smtp+starttls://m.example").unwrap().tls,
            Tls::StartTls
        );
        for bad in ["http://x", "smtp://u:p@x", "smtp://x/path", "smtp://"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(recipients("a@x.example, b@y.example").unwrap().len(), 2);
        assert!(recipients("not an address").is_err());
        assert!(recipients(" , ").is_err());
    }
}
