//! The plan file: its TOML schema (see the module docs of [`super`]), parsing, and validation.
//!
//! Every error is `PATH:LINE:COL: message`. Syntax and type errors carry toml's span; validation
//! errors point at the key or table at fault, which is why the raw schema keeps `Spanned` values.

use rewind_formats::NameKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::template::BootCommand;

/// Boot to healthy, when a machine does not say.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", path.display())]
pub struct PlanError {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

/// A parsed, validated plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub boot_groups: Vec<BootGroup>,
    source: Source,
}

#[derive(Clone, Debug)]
pub struct BootGroup {
    pub name: String,
    /// Shell commands run in order before the machines start.
    pub pre: Vec<String>,
    /// Shell commands run in order once every machine of the group is healthy.
    pub post: Vec<String>,
    /// An instruction shown while the run waits for `continue` (after `post`).
    pub manual: Option<String>,
    pub machines: Vec<Machine>,
}

#[derive(Clone, Debug)]
pub struct Machine {
    pub name: String,
    /// The protection group whose disks it boots from.
    pub group: String,
    pub boot: BootCommand,
    pub health: Health,
    pub timeout: Duration,
    name_span: Range<usize>,
    group_span: Range<usize>,
    boot_span: Range<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Healthy once a console line contains this text.
    Console(String),
    /// Healthy once this shell command exits 0 (tried every second).
    Command(String),
}

/// The file's text and name, to turn byte offsets into `PATH:LINE:COL`.
#[derive(Clone, Debug)]
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn error(&self, at: usize, message: impl Into<String>) -> PlanError {
        let at = at.min(self.text.len());
        let before = &self.text[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        PlanError {
            path: self.path.clone(),
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }
}

// The raw schema, as serde reads it. Unknown keys are errors: a misspelt `timout_secs` must not
// silently become the default.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Spanned<String>,
    #[serde(default)]
    boot_group: Vec<RawBootGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBootGroup {
    name: Spanned<String>,
    #[serde(default)]
    pre: Vec<String>,
    #[serde(default)]
    post: Vec<String>,
    manual: Option<String>,
    #[serde(default)]
    machine: Vec<Spanned<RawMachine>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    name: Spanned<String>,
    group: Spanned<String>,
    boot: Spanned<String>,
    health: Option<Spanned<RawHealth>>,
    timeout_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    console: Option<String>,
    command: Option<String>,
}

impl Plan {
    /// Parse and validate a plan file's text; `path` only names it in errors. Checks that need
    /// the store are in [`Plan::check_groups`].
    pub fn parse(path: &Path, text: &str) -> Result<Plan, PlanError> {
        let source = Source {
            path: path.to_path_buf(),
            text: text.to_string(),
        };
        let raw: RawPlan = toml::from_str(text)
            .map_err(|e| source.error(e.span().map_or(0, |s| s.start), e.message().trim_end()))?;
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(source.error(raw.name.span().start, "the plan's name is empty"));
        }
        // The name makes the run's log directory name.
        rewind_formats::validate_name_of(NameKind::Plan, &name)
            .map_err(|e| source.error(raw.name.span().start, format!("plan name {name:?}: {e}")))?;
        let mut boot_groups: Vec<BootGroup> = Vec::new();
        for g in raw.boot_group {
            let name_at = g.name.span().start;
            let bg = boot_group(&source, g)?;
            if boot_groups.iter().any(|o| o.name == bg.name) {
                return Err(source.error(
                    name_at,
                    format!("boot group {:?} is defined twice", bg.name),
                ));
            }
            unique_machines(&source, &boot_groups, &bg)?;
            boot_groups.push(bg);
        }
        if boot_groups.iter().all(|g| g.machines.is_empty()) {
            return Err(source.error(0, "the plan has no machines ([[boot_group.machine]])"));
        }
        Ok(Plan {
            name,
            boot_groups,
            source,
        })
    }

    /// Check every machine's protection group against the store: it must exist (`disks` errs
    /// for an unknown group) and have every disk the boot command names.
    pub fn check_groups(
        &self,
        disks: &dyn Fn(&str) -> anyhow::Result<Vec<String>>,
    ) -> Result<(), PlanError> {
        for m in self.machines() {
            let have = disks(&m.group).map_err(|e| {
                self.source.error(
                    m.group_span.start,
                    format!(
                        "machine {:?}: unknown protection group {:?}: {e:#}",
                        m.name, m.group
                    ),
                )
            })?;
            for d in m.boot.disks() {
                if !have.iter().any(|h| h == d) {
                    return Err(self.source.error(
                        m.boot_span.start,
                        format!(
                            "machine {:?}: protection group {:?} has no disk {d:?} (it has: {})",
                            m.name,
                            m.group,
                            have.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every machine, in boot order.
    pub fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.boot_groups.iter().flat_map(|g| &g.machines)
    }

    /// Where the plan was read from.
    pub fn path(&self) -> &Path {
        &self.source.path
    }
}

/// A machine name is used once in a plan (it names the console log), and a protection group is
/// booted by one machine only (two would share, or promote twice, the same disks).
fn unique_machines(source: &Source, before: &[BootGroup], bg: &BootGroup) -> Result<(), PlanError> {
    for (i, m) in bg.machines.iter().enumerate() {
        let mut earlier = before
            .iter()
            .flat_map(|o| &o.machines)
            .chain(&bg.machines[..i]);
        if let Some(o) = earlier.clone().find(|o| o.name == m.name) {
            return Err(source.error(
                m.name_span.start,
                format!("machine {:?} is defined twice", o.name),
            ));
        }
        if let Some(o) = earlier.find(|o| o.group == m.group) {
            return Err(source.error(
                m.group_span.start,
                format!(
                    "protection group {:?} is already booted by machine {:?}",
                    m.group, o.name
                ),
            ));
        }
    }
    Ok(())
}

fn boot_group(source: &Source, g: RawBootGroup) -> Result<BootGroup, PlanError> {
    let name = g.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(source.error(g.name.span().start, "the boot group's name is empty"));
    }
    let mut machines = Vec::new();
    for m in g.machine {
        machines.push(machine(source, m)?);
    }
    Ok(BootGroup {
        name,
        pre: g.pre,
        post: g.post,
        manual: g.manual,
        machines,
    })
}

fn machine(source: &Source, m: Spanned<RawMachine>) -> Result<Machine, PlanError> {
    let table = m.span();
    let m = m.into_inner();
    let name = m.name.get_ref().clone();
    // The name makes the console log's file name, so keep it to a safe alphabet.
    let name_ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(source.error(
            m.name.span().start,
            format!(
                "machine name {name:?} must be letters, digits, '.', '_' or '-' (not first '.')"
            ),
        ));
    }
    if let Err(e) = rewind_formats::validate_name_of(NameKind::Plan, &name) {
        return Err(source.error(m.name.span().start, format!("machine name {name:?}: {e}")));
    }
    if m.group.get_ref().trim().is_empty() {
        return Err(source.error(
            m.group.span().start,
            format!("machine {name:?}: empty group"),
        ));
    }
    if let Err(e) = rewind_formats::validate_name_of(NameKind::Group, m.group.get_ref()) {
        return Err(source.error(
            m.group.span().start,
            format!("machine {name:?}: group {:?}: {e}", m.group.get_ref()),
        ));
    }
    let boot_span = m.boot.span();
    // The value's span includes its opening quote; offsets inside it are only exact without
    // escapes, so point at the value itself.
    let boot = BootCommand::parse(m.boot.get_ref())
        .map_err(|(_, msg)| source.error(boot_span.start, format!("machine {name:?}: {msg}")))?;
    let health = match m.health {
        None => {
            return Err(source.error(
                table.start,
                format!(
                    "machine {name:?} has no health check: add health = {{ console = \"...\" }} \
                     or health = {{ command = \"...\" }}"
                ),
            ))
        }
        Some(h) => {
            let at = h.span().start;
            match h.into_inner() {
                RawHealth {
                    console: Some(c),
                    command: None,
                } if !c.is_empty() => Health::Console(c),
                RawHealth {
                    console: None,
                    command: Some(c),
                } if !c.trim().is_empty() => Health::Command(c),
                RawHealth {
                    console: Some(_),
                    command: Some(_),
                } => {
                    return Err(source.error(
                        at,
                        format!("machine {name:?}: health has both console and command; give one"),
                    ))
                }
                _ => {
                    return Err(source.error(
                        at,
                        format!("machine {name:?}: health needs a non-empty console or command"),
                    ))
                }
            }
        }
    };
    let timeout_secs = match &m.timeout_secs {
        Some(t) if *t.get_ref() == 0 => {
            return Err(source.error(
                t.span().start,
                format!("machine {name:?}: timeout_secs must be at least 1"),
            ))
        }
        Some(t) if *t.get_ref() > crate::limits::MAX_TIMEOUT.as_secs() => {
            return Err(source.error(
                t.span().start,
                format!(
                    "machine {name:?}: timeout_secs must be at most {}",
                    crate::limits::MAX_TIMEOUT.as_secs()
                ),
            ))
        }
        Some(t) => *t.get_ref(),
        None => DEFAULT_TIMEOUT_SECS,
    };
    Ok(Machine {
        name,
        group: m.group.get_ref().clone(),
        boot,
        health,
        timeout: Duration::from_secs(timeout_secs),
        name_span: m.name.span(),
        group_span: m.group.span(),
        boot_span,
    })
}
