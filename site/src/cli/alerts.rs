//! `rewind-site alerts ...` (list, acknowledge, channels, deliveries) and `events --follow`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use http_body_util::BodyExt;

use super::print::{time, Printer};
use super::ConnArgs;
use crate::api::*;

/// `rewind-site alerts`: the firing alerts (`--all`: every state), or a subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsArgs {
    /// Every alert (resolved ones too), newest first.
    #[arg(long)]
    pub all: bool,
    #[command(subcommand)]
    pub cmd: Option<AlertsCmd>,
}

#[derive(Subcommand, Debug)]
pub enum AlertsCmd {
    /// Acknowledge an alert (operator or admin; audited).
    Ack { id: i64 },
    /// Send alerts as JSON POSTs to URL (admin); signed with HMAC-SHA256 under the secret in
    /// --secret-file, if given.
    Webhook {
        name: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Send alerts by email through an SMTP server (admin): smtp://HOST:PORT (plain),
    /// smtp+starttls://..., smtps://...
    Email {
        name: String,
        #[arg(long)]
        smtp: String,
        #[arg(long)]
        from: String,
        /// Recipients, comma-separated.
        #[arg(long)]
        to: String,
        /// The SMTP login, if the server asks for one (sent only over TLS or to this host).
        #[arg(long, requires = "password_file")]
        user: Option<String>,
        /// A file holding the SMTP password (its first line).
        #[arg(long, requires = "user")]
        password_file: Option<PathBuf>,
    },
    /// The notification channels.
    Channels,
    /// Remove a channel (admin); what was still to be sent to it is marked failed.
    RemoveChannel { name: String },
    /// Every delivery's state: pending (with its next attempt), delivered, failed.
    Deliveries {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

pub async fn run(c: &ConnArgs, p: &Printer, a: AlertsArgs) -> Result<()> {
    match a.cmd {
        None => {
            let path = format!("/v1/alerts?all={}", a.all);
            let list: Vec<Alert> = c.get(&path).await?;
            if p.json {
                return p.raw(&serde_json::to_value(&list)?);
            }
            println!(
                "{:>5} {:<9} {:<8} {:<15} {:<16} {:<20} {:<14} summary",
                "ID", "STATE", "SEVERITY", "KIND", "SUBJECT", "FIRED", "ACKED"
            );
            for x in &list {
                println!(
                    "{:>5} {:<9} {:<8} {:<15} {:<16} {:<20} {:<14} {}",
                    x.id,
                    x.state,
                    x.severity,
                    x.kind,
                    x.subject,
                    time(x.fired_ms),
                    if x.acked_by.is_empty() {
                        "-"
                    } else {
                        &x.acked_by
                    },
                    x.summary
                );
            }
            Ok(())
        }
        Some(AlertsCmd::Ack { id }) => {
            let x: Alert = c.send("POST", &format!("/v1/alerts/{id}/ack"), &()).await?;
            if p.json {
                return p.raw(&serde_json::to_value(&x)?);
            }
            println!(
                "alert {} ({} on {}) acknowledged by {}",
                x.id, x.kind, x.subject, x.acked_by
            );
            Ok(())
        }
        Some(AlertsCmd::Webhook {
            name,
            url,
            secret_file,
        }) => {
            let secret = match secret_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                None => None,
            };
            let req = ChannelRequest {
                name,
                kind: "webhook".into(),
                url,
                secret,
                ..Default::default()
            };
            p.done(&c.send("POST", "/v1/channels", &req).await?)
        }
        Some(AlertsCmd::Email {
            name,
            smtp,
            from,
            to,
            user,
            password_file,
        }) => {
            let password = match &password_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading the SMTP password from {}", f.display()))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                ),
                None => None,
            };
            let req = ChannelRequest {
                name,
                kind: "email".into(),
                url: smtp,
                mail_from: Some(from),
                mail_to: Some(to),
                smtp_user: user,
                secret: password,
            };
            p.done(&c.send("POST", "/v1/channels", &req).await?)
        }
        Some(AlertsCmd::Channels) => {
            let list: Vec<Channel> = c.get("/v1/channels").await?;
            if p.json {
                return p.raw(&serde_json::to_value(&list)?);
            }
            for ch in &list {
                println!(
                    "{:<16} {:<8} {}{}{}",
                    ch.name,
                    ch.kind,
                    ch.url,
                    if ch.signed { " (signed)" } else { "" },
                    if ch.kind == "email" {
                        format!(" from {} to {}", ch.mail_from, ch.mail_to)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
        Some(AlertsCmd::RemoveChannel { name }) => {
            p.done(&c.delete(&format!("/v1/channels/{name}")).await?)
        }
        Some(AlertsCmd::Deliveries { limit }) => {
            let list: Vec<Delivery> = c.get(&format!("/v1/deliveries?limit={limit}")).await?;
            if p.json {
                return p.raw(&serde_json::to_value(&list)?);
            }
            for d in &list {
                println!(
                    "{:>5} alert {:<5} {:<9} {:<16} {:<9} attempts {} {}{}",
                    d.id,
                    d.alert_id,
                    d.transition,
                    d.channel,
                    d.state,
                    d.attempts,
                    if d.state == "pending" {
                        format!("next {} ", time(d.next_ms))
                    } else {
                        String::new()
                    },
                    d.last_error
                );
            }
            Ok(())
        }
    }
}

fn print_event(p: &Printer, e: &Event) -> Result<()> {
    if p.json {
        // One object per line (JSON Lines): what a script reads line by line.
        println!("{}", serde_json::to_string(e)?);
    } else {
        println!("{}", super::print::event_line(e));
    }
    Ok(())
}

/// `events --follow`: the newest `limit` events, then every new one as it is written, until
/// interrupted. A dropped stream is reopened after the last event seen, so none is missed.
pub async fn follow(c: &ConnArgs, p: &Printer, limit: i64) -> Result<()> {
    use std::io::Write;
    let recent: Vec<Event> = c.get(&format!("/v1/events?limit={limit}")).await?;
    let mut last = 0;
    for e in &recent {
        print_event(p, e)?;
        last = e.id;
    }
    std::io::stdout().flush()?;
    let h = c.client()?;
    loop {
        match stream_once(&h, p, &mut last).await {
            Ok(()) => tracing::debug!("event stream ended; reopening"),
            // Refused (credentials, role, bad request): retrying will not help.
            Err(e) if e.to_string().contains("(HTTP 4") => return Err(e),
            // The site restarted or the network dropped: reopen after the last event seen.
            Err(e) => eprintln!("rewind-site: event stream: {e:#}; reopening"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn stream_once(h: &crate::https::Https, p: &Printer, last: &mut i64) -> Result<()> {
    use std::io::Write;
    let path = if *last > 0 {
        format!("/v1/events/follow?after={last}")
    } else {
        "/v1/events/follow".to_string()
    };
    let (status, mut body) = h.stream(&path).await?;
    if status != 200 {
        let b = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = serde_json::from_slice::<ErrorBody>(&b)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&b).into_owned());
        bail!("{msg} (HTTP {status})");
    }
    let mut sse = crate::sse::SseReader::default();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for json in sse.push(data)? {
            let e: Event =
                serde_json::from_str(&json).with_context(|| format!("event {json:?}"))?;
            print_event(p, &e)?;
            *last = e.id;
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}
