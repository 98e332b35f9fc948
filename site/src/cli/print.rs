//! What the CLI prints: a plain table per reply, or the JSON with `--json`.

use anyhow::Result;
use rewind_formats::policy::Policy;
use serde::Serialize;

use crate::api::*;

pub struct Printer {
    pub json: bool,
}

pub(crate) fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn bytes(n: i64) -> String {
    if n < 0 {
        return "?".into();
    }
    let mib = n as f64 / (1u64 << 20) as f64;
    format!("{mib:.1}MiB")
}

impl Printer {
    fn json<T: Serialize + ?Sized>(&self, v: &T) -> Result<bool> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v)?);
        }
        Ok(self.json)
    }

    /// Any reply, as JSON (pretty).
    pub fn raw(&self, v: &serde_json::Value) -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }

    pub fn done(&self, d: &Done) -> Result<()> {
        if !self.json(d)? {
            println!("{}", d.done);
        }
        Ok(())
    }

    pub fn status(&self, s: &Status) -> Result<()> {
        if !self.json(s)? {
            println!(
                "instance {} ({}), {} database at schema {:?}; you are {} ({})",
                s.instance,
                if s.leader { "leading" } else { "standby" },
                s.backend,
                s.schema_versions,
                s.caller,
                s.role
            );
        }
        Ok(())
    }

    pub fn users(&self, us: &[User]) -> Result<()> {
        if !self.json(us)? {
            for u in us {
                let login = if u.has_password {
                    "password, certificate"
                } else {
                    "certificate"
                };
                println!("{:<24} {:<9} {login}", u.name, u.role.to_string());
            }
        }
        Ok(())
    }

    pub fn tokens(&self, ts: &[Token]) -> Result<()> {
        if !self.json(ts)? {
            for t in ts {
                println!(
                    "{:<24} {:<9} by {} at {}",
                    t.name,
                    t.role.to_string(),
                    t.created_by,
                    time(t.created_ms)
                );
            }
        }
        Ok(())
    }

    pub fn targets(&self, ts: &[Target]) -> Result<()> {
        if !self.json(ts)? {
            println!(
                "{:<16} {:<8} {:<28} {:>12} {:>12} reason",
                "TARGET", "STATE", "URL", "JOURNAL", "FREE"
            );
            for t in ts {
                println!(
                    "{:<16} {:<8} {:<28} {:>12} {:>12} {}",
                    t.name,
                    t.state,
                    t.url,
                    bytes(t.journal_bytes),
                    bytes(t.free_bytes),
                    t.reason
                );
            }
        }
        Ok(())
    }

    pub fn groups(&self, gs: &[GroupView]) -> Result<()> {
        if !self.json(gs)? {
            println!(
                "{:<20} {:<10} {:<14} {:<13} {:<8} {:<16} {:<8} {:<8} labels",
                "GROUP", "STATE", "TARGET", "AGENT", "RPO", "POLICY", "WANT", "RUNS"
            );
            for g in gs {
                let labels: Vec<String> =
                    g.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                // The agent's own view, from its last report (`-`: none known).
                let (mode, rpo) = if g.agent_mode.is_empty() {
                    ("-", "-".to_string())
                } else {
                    (
                        g.agent_mode.as_str(),
                        format!("{:.1}s", g.agent_rpo_ms.max(0) as f64 / 1000.0),
                    )
                };
                println!(
                    "{:<20} {:<10} {:<14} {:<13} {:<8} {:<16} {:<8} {:<8} {}{}",
                    g.name,
                    g.state,
                    g.target,
                    mode,
                    rpo,
                    if g.policy.is_empty() { "-" } else { &g.policy },
                    g.policy_version,
                    format!(
                        "{}{}",
                        g.running_version,
                        if g.outdated { " OLD" } else { "" }
                    ),
                    labels.join(","),
                    if g.push_error.is_empty() {
                        String::new()
                    } else {
                        format!(" push failed: {}", g.push_error)
                    }
                );
            }
        }
        Ok(())
    }

    pub fn policy(&self, p: &Policy) -> Result<()> {
        if !self.json(p)? {
            println!("{}", serde_json::to_string_pretty(p)?);
        }
        Ok(())
    }

    pub fn policies(&self, ps: &[Policy]) -> Result<()> {
        if !self.json(ps)? {
            for p in ps {
                println!(
                    "{:<20} v{:<4} rpo {}s retention {}s level {} bandwidth {:?}",
                    p.name,
                    p.version,
                    p.rpo_target_secs,
                    p.retention_secs,
                    p.level,
                    p.bandwidth.to_string()
                );
            }
        }
        Ok(())
    }

    pub fn protected(&self, r: &ProtectReply) -> Result<()> {
        if !self.json(r)? {
            println!(
                "placed on target {}; bundle {} (rewind-agent run --config {})",
                r.target, r.bundle, r.config
            );
        }
        Ok(())
    }

    pub fn audit(&self, es: &[AuditEntry]) -> Result<()> {
        if !self.json(es)? {
            for e in es {
                println!(
                    "{} {:<20} {:<16} {:<16} {} [{}]",
                    time(e.at_ms),
                    e.who,
                    e.action,
                    e.subject,
                    e.result,
                    e.detail
                );
            }
        }
        Ok(())
    }

    pub fn events(&self, es: &[Event]) -> Result<()> {
        if !self.json(es)? {
            for e in es {
                println!("{}", event_line(e));
            }
        }
        Ok(())
    }

    pub fn jobs(&self, js: &[Job]) -> Result<()> {
        if !self.json(js)? {
            for j in js {
                println!(
                    "{:>5} {:<12} {:<16} {:<8} {}/{} {} ({})",
                    j.id, j.kind, j.subject, j.state, j.done, j.total, j.detail, j.owner
                );
            }
        }
        Ok(())
    }
}

/// An event as one line of text (`events`, and `events --follow`).
pub fn event_line(e: &Event) -> String {
    format!(
        "{} {:<16} {:<16} {}",
        time(e.at_ms),
        e.kind,
        e.subject,
        e.detail
    )
}
