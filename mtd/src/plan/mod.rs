//! Recovery plans: boot a site's machines from their replicated disks, group after group, and
//! measure how long it took (the RTO).
//!
//! A plan is a TOML file of ordered boot groups. Machines of a boot group start in parallel; a
//! boot group starts once every machine of the one before is healthy, its post hooks have run and
//! its manual step (if any) was continued. A failure (prepare error, boot command exiting
//! non-zero, health check timing out, hook exiting non-zero) stops the run before the next boot
//! group and leaves everything in place for `cleanup`.
//!
//! # The file
//!
//! A complete example (also in `example.toml`, which a test parses):
//!
//! ```toml
//! name = "shop"                                  # required
//!
//! [[boot_group]]
//! name = "database"                              # required, unique
//! pre = ["sh /etc/rewind/hooks/dns-to-dr.sh"]    # shell commands, in order, before the machines
//! post = ["echo db up"]                          # in order, once every machine is healthy
//! manual = "Check replication of the license server, then run `rewind plan continue`"
//!
//! [[boot_group.machine]]
//! name = "db1"                                   # unique in the plan; [A-Za-z0-9._-]
//! group = "db1"                                  # protection group it boots from (one machine each)
//! boot = "qemu-system-x86_64 -m 2048 -nographic -serial stdio -drive file={nbd:root},format=raw,if=virtio"
//! health = { console = "login:" }                # a console line containing this text
//! timeout_secs = 120                             # start of boot to healthy; default 300
//!
//! [[boot_group]]
//! name = "web"
//!
//! [[boot_group.machine]]
//! name = "web1"
//! group = "web1"
//! boot = "sh /etc/rewind/boot-web.sh {machine} '{nbd:root}' {loop:data}"
//! health = { command = "curl -fsS http://10.0.0.21/health" }   # tried every second until it exits 0
//! timeout_secs = 60
//! ```
//!
//! Boot command placeholders (see `template.rs`): `{nbd:DISK}` the disk's NBD URI, `{loop:DISK}`
//! its loop device, `{group}`, `{machine}`; `{{` and `}}` are literal braces. The command runs as
//! `sh -c` in its own process group, with stdout and stderr in `LOG_DIR/MACHINE.console.log`.
//! A boot command exiting non-zero before its machine is healthy fails the machine; one exiting 0
//! (a launcher such as `virsh start`) does not, and the health check goes on. Hooks, boot commands
//! and health checks see `REWIND_PLAN`, `REWIND_MODE`, `REWIND_POINT`, `REWIND_BOOT_GROUP`, and the
//! last two also `REWIND_MACHINE` and `REWIND_GROUP`. Hook output goes to `LOG_DIR/hooks.log`,
//! health check output to `LOG_DIR/MACHINE.health.log`.
//!
//! Errors in the file are reported as `PATH:LINE:COL: message`: TOML syntax and types, unknown
//! keys, empty names, a plan without machines, duplicate boot group or machine names, a
//! protection group booted by two machines, a health table with both or neither of `console` and
//! `command`, `timeout_secs = 0`, an unknown placeholder, and (checked against the store) an
//! unknown protection group or a disk the group does not have.
//!
//! # Running
//!
//! [`PlanRun::start`] checks the plan against the store and runs it on std threads; the control
//! API calls the handle's methods from `spawn_blocking`. Every step (hook, prepare, boot, health,
//! manual, cleanup) is recorded with its start, end and outcome in [`RunStatus`], which is
//! replaced atomically in `LOG_DIR/status.json` after every change.

mod console;
mod file;
pub mod fuzzing;
mod hooks;
mod machine;
mod ops;
mod runner;
mod status;
pub mod template;

#[cfg(test)]
mod tests;

pub use file::{BootGroup, Health, Machine, Plan, PlanError, DEFAULT_TIMEOUT_SECS};
pub use ops::{Mode, PlanOps, PreparedDisk};
pub use runner::{console_log, health_log, hooks_log, PlanRun};
pub use status::{
    read_status, status_path, MachineState, MachineStatus, Outcome, RunState, RunStatus, Step,
    StepKind,
};
pub use template::BootCommand;
